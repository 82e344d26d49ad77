//! `metrics.jsonl` (one object per logged step) and `loss.svg`.

use std::io::Write;
use std::path::{Path, PathBuf};

use memory_layers_data::{DataError, write_atomic};
use memory_layers_plot::{Chart, Series};
use serde::{Deserialize, Serialize};

use crate::{LayerUsage, RunDir, TrainError};

/// One metrics line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsLine {
    /// Optimizer step (1-based: the step just done).
    pub step: usize,
    /// Training tokens consumed.
    pub tokens: u64,
    /// Training loss (mean over the step's micro-batches).
    pub loss: f64,
    /// Learning rate.
    pub lr: f64,
    /// Value learning rate.
    pub value_lr: f64,
    /// Global gradient norm of all parameters but the values, before clipping.
    pub grad_norm: f64,
    /// Global gradient norm of the values, before clipping.
    pub value_grad_norm: f64,
    /// Training throughput since the previous line.
    pub tokens_per_s: f64,
    /// Validation loss, on evaluation steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<f64>,
    /// Bits of the probed facts the model holds, on evaluation steps of runs whose probes
    /// say how many values each fact could take.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub knowledge_bits: Option<f64>,
    /// Percent of memory values used by the first product-key layer on the step's last
    /// micro-batch, where the model has memory (every layer: `memory_layers`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_pct: Option<f64>,
    /// KL of the first product-key layer's access distribution to uniform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kl_uniform: Option<f64>,
    /// Usage of every product-key layer on the step's last micro-batch.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub memory_layers: Vec<LayerUsage>,
}

/// Appends metrics lines to `metrics.jsonl`.
pub struct MetricsLog {
    path: PathBuf,
}

impl MetricsLog {
    /// Opens the log of run directory `out`, keeping only lines up to `step` (a resumed run
    /// logs the later steps again).
    pub fn open(out: &RunDir, step: usize) -> Result<Self, TrainError> {
        let path = out.metrics();
        let kept: Vec<MetricsLine> = read_metrics(&path)?
            .into_iter()
            .filter(|l| l.step <= step)
            .collect();
        let text: String = kept
            .iter()
            .map(|l| serde_json::to_string(l).expect("serialises") + "\n")
            .collect();
        write_atomic(&path, text.as_bytes())?;
        Ok(Self { path })
    }

    /// Appends a line.
    pub fn append(&mut self, line: &MetricsLine) -> Result<(), TrainError> {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(&self.path)
            .map_err(TrainError::io(&self.path))?;
        writeln!(file, "{}", serde_json::to_string(line).expect("serialises"))
            .map_err(TrainError::io(&self.path))
    }
}

/// Reads `metrics.jsonl` (missing: empty).
pub fn read_metrics(path: &Path) -> Result<Vec<MetricsLine>, TrainError> {
    if !path.exists() {
        return Ok(Vec::new());
    }
    let text = std::fs::read_to_string(path).map_err(TrainError::io(path))?;
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
        .map(|(i, l)| {
            serde_json::from_str(l)
                .map_err(|e| DataError::input(path, Some(i + 1), e.to_string()).into())
        })
        .collect()
}

/// Training and validation loss against steps, as an SVG chart.
pub fn loss_svg(lines: &[MetricsLine]) -> Result<String, TrainError> {
    let mut chart = Chart::new("loss", "step", "loss (nats/token)");
    chart.series.push(Series::line(
        "train",
        lines.iter().map(|l| (l.step as f64, l.loss)).collect(),
    ));
    let val: Vec<(f64, f64)> = lines
        .iter()
        .filter_map(|l| l.val_loss.map(|v| (l.step as f64, v)))
        .collect();
    if !val.is_empty() {
        chart.series.push(Series::line("validation", val));
    }
    Ok(chart.svg()?)
}
