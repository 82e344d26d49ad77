//! The CubeCL selection kernel on wgpu (Mesa lavapipe in CI) against the brute force:
//! `cargo test -p memory-layers-keys --features wgpu --test cube`.
#![cfg(feature = "wgpu")]

type B = burn::backend::Wgpu;

include!("cube/kernels.rs");
