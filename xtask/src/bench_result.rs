//! Measured benchmark cases, as `cargo xtask bench --json` writes them and `--report` reads
//! them (also the format of tools/bench/torch_bench.py and torch_train.py): a JSON object
//! `{host, results: [{name, config, median_s, throughput, unit}]}`. Files from before the host
//! was recorded (a bare array) still load, their host unknown.

use memory_layers_benches::Host;
use serde::{Deserialize, Serialize};

/// One measured case.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchResult {
    /// Case name (a contract).
    pub name: String,
    /// Sizes and settings.
    pub config: serde_json::Value,
    /// Median seconds per iteration (`null` when skipped).
    pub median_s: Option<f64>,
    /// Work per second in `unit` (`null` when skipped).
    pub throughput: Option<f64>,
    /// Unit of the throughput.
    pub unit: String,
}

/// A benchmark file: the host and what was measured on it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct BenchFile {
    /// The machine (`None`: a file from before hosts were recorded).
    pub host: Option<Host>,
    /// The cases.
    pub results: Vec<BenchResult>,
}

/// Either format on disk.
#[derive(Deserialize)]
#[serde(untagged)]
enum OnDisk {
    File(BenchFile),
    Legacy(Vec<BenchResult>),
}

impl BenchFile {
    /// Parses a benchmark file of either format.
    pub fn parse(text: &str) -> serde_json::Result<Self> {
        Ok(match serde_json::from_str(text)? {
            OnDisk::File(file) => file,
            OnDisk::Legacy(results) => Self {
                host: None,
                results,
            },
        })
    }
}
