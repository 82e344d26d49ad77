//! One measured benchmark case, as `cargo xtask bench --json` writes it and `--report` reads it
//! (also the format of tools/bench/torch_bench.py): a JSON array of
//! `{name, config, median_s, throughput, unit}`.

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
