//! Collectives between peers sharing one CubeCL device (wgpu; Mesa lavapipe in CI):
//! `cargo test -p memory-layers-parallel --features wgpu --test cube`.
//!
//! burn-collective gives every peer on a device the same result buffer, and each thread queues
//! its work on its own stream: without a private copy per peer, one peer's in-place op could
//! change the buffer before another's queued read (a mean divided twice, about once in a
//! thousand all-reduces on lavapipe).
#![cfg(feature = "wgpu")]

type G = burn::backend::Wgpu;

include!("cube/kernels.rs");
