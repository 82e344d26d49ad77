//! The machine a benchmark ran on, written beside its results: a ratio of our time to
//! PyTorch's means something only when both ran on the same host, and an absolute time only
//! with the CPU named (the same binary ran twice as fast on one 2-core host as on another).

use serde::{Deserialize, Serialize};

/// A benchmark's host.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Host {
    /// CPU model name (`/proc/cpuinfo`).
    pub cpu: String,
    /// CPU vendor id.
    pub vendor: String,
    /// CPU family, model and stepping.
    pub family: Option<u32>,
    /// See `family`.
    pub model: Option<u32>,
    /// See `family`.
    pub stepping: Option<u32>,
    /// The widest SIMD level our kernels dispatch to here (`x86-v4`: AVX-512, `x86-v3`: AVX2
    /// with FMA, `scalar`).
    pub simd: String,
    /// Physical cores of the CPU (`cpu cores`), when known.
    pub cores: Option<usize>,
    /// Hardware threads this process may run on.
    pub threads: usize,
    /// Physical memory in bytes, when known.
    pub memory_bytes: Option<u64>,
    /// GPU name and driver, where a GPU ran the benchmark.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu: Option<String>,
    /// `git describe --always --dirty` of the tree that was built, when known.
    pub commit: Option<String>,
}

impl Host {
    /// The host this process runs on.
    pub fn detect() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let field = |name: &str| -> Option<String> {
            cpuinfo.lines().find_map(|line| {
                let (key, value) = line.split_once(':')?;
                (key.trim() == name).then(|| value.trim().to_string())
            })
        };
        let number = |name: &str| field(name).and_then(|v| v.parse().ok());
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        let memory_bytes = meminfo
            .lines()
            .find(|l| l.starts_with("MemTotal:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
            .map(|kb| kb * 1024);
        let commit = std::process::Command::new("git")
            .args(["describe", "--always", "--dirty"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string());
        Self {
            cpu: field("model name").unwrap_or_else(|| std::env::consts::ARCH.to_string()),
            vendor: field("vendor_id").unwrap_or_default(),
            family: number("cpu family"),
            model: number("model"),
            stepping: number("stepping"),
            simd: simd_level().to_string(),
            cores: number("cpu cores").map(|n| n as usize),
            threads: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_bytes,
            gpu: None,
            commit,
        }
    }

    /// What identifies the host for comparisons: the CPU (model name, family/model/stepping)
    /// and the threads used. Results with different keys are never divided by each other.
    pub fn key(&self) -> String {
        let id = |v: Option<u32>| v.map_or("?".to_string(), |v| v.to_string());
        format!(
            "{} (family {}, model {}, stepping {}), {} threads{}",
            self.cpu,
            id(self.family),
            id(self.model),
            id(self.stepping),
            self.threads,
            self.gpu
                .as_ref()
                .map_or(String::new(), |g| format!(", {g}"))
        )
    }
}

/// The SIMD level [`pulp::Arch`] dispatches to on this CPU.
pub fn simd_level() -> &'static str {
    #[cfg(target_arch = "x86_64")]
    {
        if pulp::x86::V4::try_new().is_some() {
            return "x86-v4";
        }
        if pulp::x86::V3::try_new().is_some() {
            return "x86-v3";
        }
    }
    "scalar"
}
