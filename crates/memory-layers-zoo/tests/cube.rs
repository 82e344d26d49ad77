//! Causal attention on wgpu (Mesa lavapipe in CI) against Flex's kernel, values and gradients:
//! `cargo test -p memory-layers-zoo --features wgpu --test cube`.
#![cfg(feature = "wgpu")]

type B = burn::backend::Wgpu;

include!("cube/attention.rs");
