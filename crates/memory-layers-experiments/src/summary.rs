//! `summary.json` (one row per run) and its markdown table, with the spread over seeds.

use std::collections::BTreeMap;
use std::path::Path;

use memory_layers_train::{EvalReport, TrainConfig};
use memory_layers_zoo::account;
use serde::{Deserialize, Serialize};

use crate::ExperimentError;

/// How one memory layer was used over the validation set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerRow {
    /// Block index.
    pub layer: usize,
    /// Percent of values selected at least once.
    pub used_pct: f64,
    /// KL of the selection counts to uniform.
    pub kl_uniform: f64,
}

/// One finished run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SummaryRow {
    /// The run's directory name (`{label}-s{seed}`).
    pub run: String,
    /// The configuration it stands for.
    pub label: String,
    /// Model kind.
    pub model: String,
    /// Base size it was made from.
    pub size: String,
    /// Model dimension.
    pub dim: usize,
    /// Blocks.
    pub layers: usize,
    /// Sub-keys per half of its product-key layers (`None` without them).
    pub n_keys: Option<usize>,
    /// Seed.
    pub seed: u64,
    /// All parameters.
    pub total_params: u64,
    /// Parameters a token uses.
    pub active_params: u64,
    /// Forward FLOPs per token (memory-layers-zoo accounting).
    pub flops_per_token: u64,
    /// Training tokens.
    pub tokens: u64,
    /// Wall time of the training steps, seconds (not the final evaluation).
    pub wall_s: f64,
    /// Validation loss (nats per token).
    pub val_loss: f64,
    /// Validation perplexity.
    pub val_ppl: f64,
    /// Loss on natural text never trained on (`None` with a user's corpus).
    pub text_val_loss: Option<f64>,
    /// QA exact match, percent.
    pub qa_exact_match: f64,
    /// QA token F1, percent.
    pub qa_f1: f64,
    /// Mean NLL of the QA answers.
    pub qa_answer_nll: f64,
    /// Questions asked, of `qa_total`.
    pub qa_count: usize,
    /// Questions in the QA set.
    pub qa_total: usize,
    /// Fact recall, percent (`None` without probes).
    pub fact_recall: Option<f64>,
    /// Recall probes asked, of `recall_total`.
    pub recall_count: usize,
    /// Recall probes in the set.
    pub recall_total: usize,
    /// Bits of the probed facts the model holds (`None` without probes that say how many
    /// values their fact could take).
    #[serde(default)]
    pub knowledge_bits: Option<f64>,
    /// Bits the probed facts hold: the most a model could hold.
    #[serde(default)]
    pub knowledge_total_bits: Option<f64>,
    /// Parameters of the token embeddings and the output head.
    #[serde(default)]
    pub embedding_params: u64,
    /// Parameters of the value tables (memory pool, PEER experts).
    #[serde(default)]
    pub value_params: u64,
    /// Usage of every memory layer.
    pub memory_layers: Vec<LayerRow>,
}

impl SummaryRow {
    /// The row of run `run` (`label`, `config`) trained for `tokens` in `wall_s` seconds.
    pub fn new(
        run: &str,
        label: &str,
        config: &TrainConfig,
        tokens: u64,
        wall_s: f64,
        eval: &EvalReport,
        size: &str,
    ) -> Self {
        let counts = account(&config.model);
        let model = &config.model;
        Self {
            run: run.to_string(),
            label: label.to_string(),
            model: model.kind.to_string(),
            size: size.to_string(),
            dim: model.dim,
            layers: model.layers,
            n_keys: model
                .kind
                .has_product_keys()
                .then_some(model.product_keys.n_keys),
            seed: config.run.seed,
            total_params: counts.total_params,
            active_params: counts.active_params,
            flops_per_token: counts.flops_per_token,
            tokens,
            wall_s,
            val_loss: eval.val_loss,
            val_ppl: eval.val_ppl,
            text_val_loss: eval.text_val_loss,
            qa_exact_match: eval.qa_exact_match,
            qa_f1: eval.qa_f1,
            qa_answer_nll: eval.qa_answer_nll,
            qa_count: eval.qa_count,
            qa_total: eval.qa_total,
            fact_recall: eval.fact_recall,
            recall_count: eval.recall_count,
            recall_total: eval.recall_total,
            knowledge_bits: eval.knowledge.map(|k| k.bits),
            knowledge_total_bits: eval.knowledge.map(|k| k.total_bits),
            embedding_params: counts.embedding_params,
            value_params: counts.value_params,
            memory_layers: eval
                .memory_layers
                .iter()
                .map(|l| LayerRow {
                    layer: l.layer,
                    used_pct: l.usage.used_pct,
                    kl_uniform: l.usage.kl_uniform,
                })
                .collect(),
        }
    }

    /// Bits held per parameter of the model.
    pub fn bits_per_param(&self) -> Option<f64> {
        self.knowledge_bits.map(|b| b / self.total_params as f64)
    }

    /// Bits held per parameter outside the embeddings and output head (tables indexed by a
    /// single token, which cannot store a fact about a pair of them).
    pub fn bits_per_inner_param(&self) -> Option<f64> {
        let inner = self.total_params.saturating_sub(self.embedding_params);
        self.knowledge_bits.map(|b| b / inner.max(1) as f64)
    }

    /// Bits held per parameter of the value tables (`None` without them).
    pub fn bits_per_value_param(&self) -> Option<f64> {
        let values = self.value_params;
        self.knowledge_bits
            .filter(|_| values > 0)
            .map(|b| b / values as f64)
    }

    /// Mean used % over the memory layers (`None` without them).
    pub fn mean_used_pct(&self) -> Option<f64> {
        let layers = &self.memory_layers;
        (!layers.is_empty())
            .then(|| layers.iter().map(|l| l.used_pct).sum::<f64>() / layers.len() as f64)
    }
}

/// Reads a JSON file of type `T`.
pub fn read_json<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, ExperimentError> {
    let text = std::fs::read_to_string(path).map_err(|e| ExperimentError::file(path, e))?;
    serde_json::from_str(&text).map_err(|e| ExperimentError::file(path, e))
}

/// Writes `value` as pretty JSON (atomically: a temporary file, then a rename).
pub fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), ExperimentError> {
    let text = serde_json::to_string_pretty(value).expect("summaries serialise");
    write_text(path, &text)
}

/// Writes `text` atomically.
pub fn write_text(path: &Path, text: &str) -> Result<(), ExperimentError> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, text).map_err(|e| ExperimentError::file(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| ExperimentError::file(path, e))
}

/// The runs of one configuration, over its seeds.
#[derive(Debug, Clone, PartialEq)]
pub struct Group<'a> {
    /// The configuration's label.
    pub label: &'a str,
    /// Its runs, by seed.
    pub rows: Vec<&'a SummaryRow>,
}

/// Mean, minimum and maximum of some values (`None` for none).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    /// Mean.
    pub mean: f64,
    /// Smallest.
    pub min: f64,
    /// Largest.
    pub max: f64,
}

impl Spread {
    /// The spread of `values`, `None` when empty.
    pub fn of(values: impl IntoIterator<Item = f64>) -> Option<Self> {
        let values: Vec<f64> = values.into_iter().collect();
        if values.is_empty() {
            return None;
        }
        Some(Self {
            mean: values.iter().sum::<f64>() / values.len() as f64,
            min: values.iter().copied().fold(f64::INFINITY, f64::min),
            max: values.iter().copied().fold(f64::NEG_INFINITY, f64::max),
        })
    }

    /// `mean (min–max)` with `digits` decimals; just the mean for a single value.
    pub(crate) fn show(&self, digits: usize) -> String {
        if self.min == self.max {
            format!("{:.digits$}", self.mean)
        } else {
            format!(
                "{:.digits$} ({:.digits$}–{:.digits$})",
                self.mean, self.min, self.max
            )
        }
    }
}

/// Rows grouped by label, in the order the labels first appear.
pub fn groups(rows: &[SummaryRow]) -> Vec<Group<'_>> {
    let mut order: Vec<&str> = Vec::new();
    let mut by_label: BTreeMap<&str, Vec<&SummaryRow>> = BTreeMap::new();
    for row in rows {
        if !by_label.contains_key(row.label.as_str()) {
            order.push(&row.label);
        }
        by_label.entry(&row.label).or_default().push(row);
    }
    order
        .into_iter()
        .map(|label| Group {
            label,
            rows: by_label.remove(label).unwrap_or_default(),
        })
        .collect()
}

/// `1234567` as `1.23M`.
pub fn si(value: f64) -> String {
    let (scale, unit) = [(1e9, "G"), (1e6, "M"), (1e3, "k")]
        .into_iter()
        .find(|(scale, _)| value.abs() >= *scale)
        .unwrap_or((1.0, ""));
    format!("{:.3}{unit}", value / scale)
        .replace(".000", "")
        .to_string()
}

/// A column of a table: its header and its cell for a group of runs.
type Column = (&'static str, fn(&Group<'_>) -> String);

/// The spread over a group's seeds of `f`, with `digits` decimals (`—` where no run has it).
fn spread_of(group: &Group<'_>, f: impl Fn(&SummaryRow) -> Option<f64>, digits: usize) -> String {
    Spread::of(group.rows.iter().filter_map(|r| f(r)))
        .map_or_else(|| "—".to_string(), |s| s.show(digits))
}

/// ` [count of total]` where a limit left some probes out.
fn asked(count: usize, total: usize) -> String {
    if count < total {
        format!(" [{count} of {total}]")
    } else {
        String::new()
    }
}

/// A markdown table, one line per configuration.
fn table(rows: &[SummaryRow], columns: &[Column]) -> String {
    let headers: Vec<&str> = columns.iter().map(|(h, _)| *h).collect();
    let mut out = format!(
        "| {} |\n|{}\n",
        headers.join(" | "),
        "---|".repeat(columns.len())
    );
    for group in groups(rows) {
        let cells: Vec<String> = columns.iter().map(|(_, cell)| cell(&group)).collect();
        out += &format!("| {} |\n", cells.join(" | "));
    }
    out
}

/// The columns every table starts with.
const HEAD: [Column; 3] = [
    ("run", |g| g.label.to_string()),
    ("seeds", |g| g.rows.len().to_string()),
    ("total params", |g| si(g.rows[0].total_params as f64)),
];

/// The markdown table of a summary: one line per configuration, mean (min–max) over seeds.
/// With knowledge probes, the bits the models hold of the facts too.
pub fn markdown(rows: &[SummaryRow]) -> String {
    let mut columns: Vec<Column> = HEAD.to_vec();
    columns.extend::<[Column; 11]>([
        ("active params", |g| si(g.rows[0].active_params as f64)),
        ("FLOPs/token", |g| si(g.rows[0].flops_per_token as f64)),
        ("tokens", |g| si(g.rows[0].tokens as f64)),
        ("train s", |g| spread_of(g, |r| Some(r.wall_s), 0)),
        ("val loss", |g| spread_of(g, |r| Some(r.val_loss), 3)),
        ("text loss", |g| spread_of(g, |r| r.text_val_loss, 3)),
        ("fact recall %", |g| {
            let first = g.rows[0];
            spread_of(g, |r| r.fact_recall, 1) + &asked(first.recall_count, first.recall_total)
        }),
        ("QA EM %", |g| {
            let first = g.rows[0];
            spread_of(g, |r| Some(r.qa_exact_match), 1) + &asked(first.qa_count, first.qa_total)
        }),
        ("QA F1 %", |g| spread_of(g, |r| Some(r.qa_f1), 1)),
        ("answer NLL", |g| spread_of(g, |r| Some(r.qa_answer_nll), 3)),
        ("memory used %", |g| {
            spread_of(g, SummaryRow::mean_used_pct, 1)
        }),
    ]);
    if rows.iter().any(|r| r.knowledge_bits.is_some()) {
        columns.insert(
            columns.len() - 1,
            ("facts known (bits)", |g| {
                spread_of(g, |r| r.knowledge_bits, 0)
            }),
        );
    }
    table(rows, &columns)
}

/// The table of the capacity suite: bits held, per parameter of each kind, and the facts'
/// share known.
pub fn capacity_markdown(rows: &[SummaryRow]) -> String {
    let mut columns: Vec<Column> = HEAD.to_vec();
    columns.extend::<[Column; 11]>([
        ("inner params", |g| {
            let r = g.rows[0];
            si(r.total_params.saturating_sub(r.embedding_params) as f64)
        }),
        ("value params", |g| si(g.rows[0].value_params as f64)),
        ("FLOPs/token", |g| si(g.rows[0].flops_per_token as f64)),
        ("tokens", |g| si(g.rows[0].tokens as f64)),
        ("train s", |g| spread_of(g, |r| Some(r.wall_s), 0)),
        ("bits held", |g| spread_of(g, |r| r.knowledge_bits, 0)),
        ("% of the facts' bits", |g| {
            spread_of(
                g,
                |r| Some(100.0 * r.knowledge_bits? / r.knowledge_total_bits?),
                1,
            )
        }),
        ("bits / param", |g| {
            spread_of(g, SummaryRow::bits_per_param, 3)
        }),
        ("bits / inner param", |g| {
            spread_of(g, SummaryRow::bits_per_inner_param, 3)
        }),
        ("bits / value param", |g| {
            spread_of(g, SummaryRow::bits_per_value_param, 3)
        }),
        ("memory used %", |g| {
            spread_of(g, SummaryRow::mean_used_pct, 1)
        }),
    ]);
    table(rows, &columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(label: &str, seed: u64, recall: f64) -> SummaryRow {
        SummaryRow {
            run: format!("{label}-s{seed}"),
            label: label.into(),
            model: "dense".into(),
            size: "tiny".into(),
            dim: 64,
            layers: 6,
            n_keys: None,
            seed,
            total_params: 1_234_567,
            active_params: 1_000_000,
            flops_per_token: 2_500_000,
            tokens: 1000,
            wall_s: 10.0,
            val_loss: 2.0 + seed as f64,
            val_ppl: 7.0,
            text_val_loss: None,
            qa_exact_match: 0.0,
            qa_f1: 1.0,
            qa_answer_nll: 3.0,
            qa_count: 10,
            qa_total: 20,
            fact_recall: Some(recall),
            recall_count: 30,
            recall_total: 30,
            knowledge_bits: None,
            knowledge_total_bits: None,
            embedding_params: 0,
            value_params: 0,
            memory_layers: Vec::new(),
        }
    }

    #[test]
    fn table_shows_the_spread_over_seeds_and_what_was_asked() {
        let rows = [row("a", 0, 10.0), row("b", 0, 5.0), row("a", 1, 20.0)];
        let table = markdown(&rows);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 4, "header, rule, one line per label");
        assert!(lines[2].starts_with("| a | 2 | 1.235M | 1M | 2.500M | 1k |"));
        assert!(lines[2].contains("| 2.500 (2.000–3.000) |"), "{}", lines[2]);
        assert!(lines[2].contains("| 15.0 (10.0–20.0) |"), "{}", lines[2]);
        assert!(lines[2].contains("0.0 [10 of 20]"), "QA asked of total");
        assert!(lines[3].starts_with("| b | 1 |"));
        assert_eq!(si(999.0), "999");
        assert_eq!(si(12_000.0), "12k");
    }
}
