//! `--backend flex|wgpu|cuda`: the one place that turns a backend name into a Burn backend
//! (with autodiff) and its devices, for every command of `memory-layers` and `cargo xtask`.

use burn::backend::Autodiff;
use burn::backend::autodiff::checkpoint::strategy::{
    BalancedCheckpointing, CheckpointStrategy, NoCheckpointing,
};
use clap::ValueEnum;
use memory_layers_train::TrainBackend;

/// A backend to run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    /// The CPU (Burn Flex).
    Flex,
    /// wgpu (Vulkan, Metal, DX12; lavapipe on machines without a GPU). Needs `--features wgpu`.
    Wgpu,
    /// CUDA. Needs `--features cuda` and an NVIDIA driver.
    Cuda,
}

/// Work that runs on any autodiff backend with the memory-layer extensions.
pub trait Job {
    /// What the job returns.
    type Output;

    /// How many devices the job runs on: one, unless it trains on several peers.
    fn devices(&self) -> usize {
        1
    }

    /// Runs on backend `B`, on [`Job::devices`] devices: the CPU's one device repeated, GPUs
    /// `0..N` with CUDA, the default adapter repeated with wgpu.
    fn run<B: TrainBackend>(self, devices: &[B::Device]) -> anyhow::Result<Self::Output>;
}

/// Runs `job` on `kind`; a backend not compiled in, or CUDA without a driver, is an error.
pub fn dispatch<J: Job>(kind: BackendKind, job: J) -> anyhow::Result<J::Output> {
    dispatch_with::<NoCheckpointing, J>(kind, job)
}

/// [`dispatch`] with activation checkpointing: Burn's autodiff recomputes the results of
/// element-wise operations in the backward pass instead of keeping them (its balanced
/// strategy). Only training calls it, so that other commands compile one autodiff backend
/// per device kind, not two.
pub fn dispatch_checkpointed<J: Job>(kind: BackendKind, job: J) -> anyhow::Result<J::Output> {
    dispatch_with::<BalancedCheckpointing, J>(kind, job)
}

fn dispatch_with<C: CheckpointStrategy, J: Job>(
    kind: BackendKind,
    job: J,
) -> anyhow::Result<J::Output> {
    let n = job.devices();
    match kind {
        BackendKind::Flex => {
            job.run::<Autodiff<burn::backend::Flex, C>>(&vec![Default::default(); n])
        }
        #[cfg(feature = "wgpu")]
        BackendKind::Wgpu => {
            job.run::<Autodiff<burn::backend::Wgpu, C>>(&vec![Default::default(); n])
        }
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => {
            probe_cuda_driver()?;
            let devices: Vec<_> = (0..n).map(burn::backend::cuda::CudaDevice::new).collect();
            job.run::<Autodiff<burn::backend::Cuda, C>>(&devices)
        }
        #[allow(unreachable_patterns)]
        other => {
            let name = other.to_possible_value().expect("no backend is skipped");
            let name = name.get_name();
            anyhow::bail!(
                "this binary was built without the {name} backend: \
                 cargo xtask-{name} ... (or cargo run --release -p memory-layers-cli \
                 --features {name} -- ...)"
            )
        }
    }
}

/// Fails clearly when the dynamic loader cannot load the CUDA driver (Burn would panic on a
/// background thread at the first tensor operation instead). The loader searches what it
/// searches for cudarc too: LD_LIBRARY_PATH, its cache and the platform's folders (x86_64,
/// aarch64 on GH200, WSL).
#[cfg(feature = "cuda")]
#[allow(unsafe_code)]
fn probe_cuda_driver() -> anyhow::Result<()> {
    let loads = |name: &str| {
        // SAFETY: loading the driver runs its initialisers, exactly as cudarc's own load does
        // a moment later; no symbol of it is called here.
        unsafe { libloading::Library::new(name) }.is_ok()
    };
    if ["libcuda.so.1", "libcuda.so", "nvcuda.dll"]
        .into_iter()
        .any(loads)
    {
        Ok(())
    } else {
        anyhow::bail!(
            "no CUDA driver found (the dynamic loader cannot load libcuda.so.1); \
             use --backend flex or wgpu on this machine"
        )
    }
}
