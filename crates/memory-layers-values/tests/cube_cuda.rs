//! The CubeCL value kernels against the plain-tensor reference on Flex, on CUDA: the same tests as `cube.rs`
//! on wgpu. They need a CUDA device, so CI (no GPU) does not run them; the GPU check
//! (tools/gpu-check/gpu-check.sh) does: `cargo test -p memory-layers-values --features cuda --test cube_cuda`.
#![cfg(feature = "cuda")]

type G = burn::backend::Cuda;

include!("cube/kernels.rs");
