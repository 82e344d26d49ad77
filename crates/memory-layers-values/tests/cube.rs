//! The CubeCL value kernels on wgpu (Mesa lavapipe in CI) against the plain-tensor reference
//! on Flex: `cargo test -p memory-layers-values --features wgpu --test cube`.
#![cfg(feature = "wgpu")]

type G = burn::backend::Wgpu;

include!("cube/kernels.rs");
