//! `--backend flex|wgpu|cuda`: the one place that turns a backend name into a Burn backend
//! (with autodiff) and its devices, for every command of `memory-layers` and `cargo xtask`.

use burn::backend::Autodiff;
use clap::ValueEnum;
use trainer::TrainBackend;

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
    let n = job.devices();
    match kind {
        BackendKind::Flex => job.run::<Autodiff<burn::backend::Flex>>(&vec![Default::default(); n]),
        #[cfg(feature = "wgpu")]
        BackendKind::Wgpu => job.run::<Autodiff<burn::backend::Wgpu>>(&vec![Default::default(); n]),
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => {
            probe_cuda_driver()?;
            let devices: Vec<_> = (0..n).map(burn::backend::cuda::CudaDevice::new).collect();
            job.run::<Autodiff<burn::backend::Cuda>>(&devices)
        }
        #[allow(unreachable_patterns)]
        other => {
            let name = other.to_possible_value().expect("no backend is skipped");
            let name = name.get_name();
            anyhow::bail!(
                "this binary was built without the {name} backend: \
                 cargo run --release -p memory-layers-cli --features {name} -- ... \
                 (or -p xtask)"
            )
        }
    }
}

/// Fails clearly when no CUDA driver library can be found (Burn would panic on a background
/// thread at the first tensor operation instead).
#[cfg(feature = "cuda")]
fn probe_cuda_driver() -> anyhow::Result<()> {
    let mut dirs: Vec<std::path::PathBuf> = std::env::var_os("LD_LIBRARY_PATH")
        .map(|paths| std::env::split_paths(&paths).collect())
        .unwrap_or_default();
    dirs.extend(
        [
            "/usr/lib/x86_64-linux-gnu",
            "/usr/lib64",
            "/usr/lib",
            "/usr/local/cuda/lib64",
            "/usr/local/cuda/compat",
            "/usr/lib/wsl/lib",
            "/lib/x86_64-linux-gnu",
        ]
        .map(Into::into),
    );
    if dirs
        .iter()
        .any(|d| d.join("libcuda.so.1").exists() || d.join("libcuda.so").exists())
    {
        Ok(())
    } else {
        anyhow::bail!(
            "no CUDA driver found (libcuda.so.1 in LD_LIBRARY_PATH or the system library folders); \
             use --backend flex or wgpu on this machine"
        )
    }
}
