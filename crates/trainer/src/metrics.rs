//! `metrics.jsonl` (one object per logged step) and `loss.svg`.

use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::TrainError;

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
    /// Percent of memory values used (first product-key layer), where the model has memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub used_pct: Option<f64>,
    /// KL of the access distribution to uniform (first product-key layer).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kl_uniform: Option<f64>,
}

/// Appends metrics lines to `metrics.jsonl`.
pub struct MetricsLog {
    path: PathBuf,
}

impl MetricsLog {
    /// Opens the log of run directory `out`, keeping only lines up to `step` (a resumed run
    /// logs the later steps again).
    pub fn open(out: &Path, step: usize) -> Result<Self, TrainError> {
        let path = out.join("metrics.jsonl");
        let kept: Vec<MetricsLine> = read_metrics(&path)?
            .into_iter()
            .filter(|l| l.step <= step)
            .collect();
        let text: String = kept
            .iter()
            .map(|l| serde_json::to_string(l).expect("serialises") + "\n")
            .collect();
        crate::atomic::write_atomic(&path, text.as_bytes())?;
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
            serde_json::from_str(l).map_err(|e| TrainError::data(path, Some(i + 1), e.to_string()))
        })
        .collect()
}

/// Draws training and validation loss against steps as an SVG.
pub fn loss_svg(lines: &[MetricsLine]) -> String {
    let (w, h, pad) = (720.0, 420.0, 50.0);
    let train: Vec<(f64, f64)> = lines.iter().map(|l| (l.step as f64, l.loss)).collect();
    let val: Vec<(f64, f64)> = lines
        .iter()
        .filter_map(|l| l.val_loss.map(|v| (l.step as f64, v)))
        .collect();
    let all = train.iter().chain(&val);
    let max_step = all.clone().map(|p| p.0).fold(1.0, f64::max);
    let (lo, hi) = all.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), p| {
        (lo.min(p.1), hi.max(p.1))
    });
    let (lo, hi) = if lo.is_finite() {
        (lo, hi.max(lo + 1e-9))
    } else {
        (0.0, 1.0)
    };
    let x = |s: f64| pad + (w - 2.0 * pad) * s / max_step;
    let y = |v: f64| h - pad - (h - 2.0 * pad) * (v - lo) / (hi - lo);
    let path = |points: &[(f64, f64)]| -> String {
        points
            .iter()
            .map(|&(s, v)| format!("{:.1},{:.1}", x(s), y(v)))
            .collect::<Vec<_>>()
            .join(" ")
    };
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <line x1=\"{pad}\" y1=\"{b}\" x2=\"{r}\" y2=\"{b}\" stroke=\"black\"/>\n\
         <line x1=\"{pad}\" y1=\"{pad}\" x2=\"{pad}\" y2=\"{b}\" stroke=\"black\"/>\n\
         <text x=\"{cx}\" y=\"{ty}\" text-anchor=\"middle\">step (0 to {max_step})</text>\n\
         <text x=\"10\" y=\"{pad}\">{hi:.3}</text><text x=\"10\" y=\"{b}\">{lo:.3}</text>\n\
         <text x=\"{cx}\" y=\"30\" text-anchor=\"middle\" font-size=\"14\">loss (nats/token): train (blue), validation (orange)</text>\n",
        b = h - pad,
        r = w - pad,
        cx = w / 2.0,
        ty = h - 15.0,
    );
    svg += &format!(
        "<polyline fill=\"none\" stroke=\"#1f77b4\" stroke-width=\"1.5\" points=\"{}\"/>\n",
        path(&train)
    );
    svg += &format!(
        "<polyline fill=\"none\" stroke=\"#ff7f0e\" stroke-width=\"2\" points=\"{}\"/>\n",
        path(&val)
    );
    for &(s, v) in &val {
        svg += &format!(
            "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"#ff7f0e\"/>\n",
            x(s),
            y(v)
        );
    }
    svg + "</svg>\n"
}
