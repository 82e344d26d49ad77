//! Causal attention on CUDA against Flex's kernel: the same tests as `cube.rs` on wgpu. They
//! need a CUDA device, so CI (no GPU) does not run them; the GPU check
//! (tools/gpu-check/gpu-check.sh) does: `cargo test -p memory-layers-zoo --features cuda --test cube_cuda`.
#![cfg(feature = "cuda")]

type B = burn::backend::Cuda;

include!("cube/attention.rs");
