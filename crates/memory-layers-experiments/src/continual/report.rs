//! The continual suite's rows, its tables (the methods at matched learning of facts B, and
//! the whole sweep) and its figure (forgetting of facts A against learning of facts B).

use std::collections::BTreeMap;

use memory_layers_plot::{Chart, Series};
use memory_layers_train::FinetuneMethod;
use serde::{Deserialize, Serialize};

use crate::summary::{Spread, write_json, write_text};
use crate::{ExperimentError, SuiteDir};

/// One finetuned checkpoint, scored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContinualRow {
    /// `{run}-at{steps}`.
    pub id: String,
    /// The setting and length it stands for, over seeds.
    pub label: String,
    /// The setting, over seeds and lengths.
    pub setting: String,
    /// The base's model kind.
    pub base: String,
    /// Method.
    pub method: FinetuneMethod,
    /// Learning rate.
    pub lr: f64,
    /// Rows per step (sparse-memory).
    pub top_t: Option<usize>,
    /// Finetuning steps done.
    pub steps: usize,
    /// Seed.
    pub seed: u64,
    /// Recall of facts B, percent: learned.
    pub learned: f64,
    /// Bits of facts B held.
    pub learned_bits: Option<f64>,
    /// Recall of facts A, percent: kept.
    pub kept: f64,
    /// Bits of facts A held.
    pub kept_bits: Option<f64>,
    /// Loss on the held-out plays (nats per byte-token).
    pub text_loss: Option<f64>,
    /// The base's recall of facts B before finetuning.
    pub base_learned: f64,
    /// The base's recall of facts A.
    pub base_kept: f64,
    /// The base's bits of facts A.
    pub base_kept_bits: Option<f64>,
    /// The base's loss on the held-out plays.
    pub base_text_loss: Option<f64>,
    /// Training seconds of the whole finetuning run.
    pub train_seconds: f64,
}

impl ContinualRow {
    /// Recall of facts A lost, points.
    pub fn forgetting(&self) -> f64 {
        self.base_kept - self.kept
    }

    /// Share of the base's recall of facts A kept, percent.
    pub fn kept_share(&self) -> f64 {
        100.0 * self.kept / self.base_kept.max(1e-9)
    }

    /// Change of the held-out text loss.
    pub fn text_change(&self) -> Option<f64> {
        Some(self.text_loss? - self.base_text_loss?)
    }
}

/// The rows of one label (every seed), with their means.
#[derive(Debug, Clone)]
pub struct Point<'a> {
    /// The rows.
    pub rows: Vec<&'a ContinualRow>,
    /// Mean recall of B.
    pub learned: Spread,
    /// Mean share of A's recall kept.
    pub kept_share: Spread,
    /// Mean recall of A lost.
    pub forgetting: Spread,
}

/// The labels of `rows` in order, each with its seeds' means.
fn points(rows: &[ContinualRow]) -> Vec<Point<'_>> {
    let mut order: Vec<&str> = Vec::new();
    let mut by: BTreeMap<&str, Vec<&ContinualRow>> = BTreeMap::new();
    for row in rows {
        if !by.contains_key(row.label.as_str()) {
            order.push(&row.label);
        }
        by.entry(&row.label).or_default().push(row);
    }
    order
        .into_iter()
        .filter_map(|label| {
            let rows = by.remove(label)?;
            Some(Point {
                learned: Spread::of(rows.iter().map(|r| r.learned))?,
                kept_share: Spread::of(rows.iter().map(|r| r.kept_share()))?,
                forgetting: Spread::of(rows.iter().map(|r| r.forgetting()))?,
                rows,
            })
        })
        .collect()
}

/// Per base and method, the setting compared at matched learning: the target is the least,
/// over the base's methods, of the best mean recall of B each reaches, so every method has a
/// setting that reaches it; each method's point is the one reaching the target that keeps the
/// most of A. Returns `(base, method, target, point)`.
pub fn matched(rows: &[ContinualRow]) -> Vec<(String, FinetuneMethod, f64, Point<'_>)> {
    let points = points(rows);
    let mut bases: Vec<&str> = rows.iter().map(|r| r.base.as_str()).collect();
    bases.sort_unstable();
    bases.dedup();
    let mut out = Vec::new();
    for base in bases {
        let of = |method: FinetuneMethod| {
            points
                .iter()
                .filter(move |p| p.rows[0].base == base && p.rows[0].method == method)
        };
        let methods: Vec<FinetuneMethod> = FinetuneMethod::ALL
            .into_iter()
            .filter(|&m| of(m).next().is_some())
            .collect();
        let target = methods
            .iter()
            .map(|&m| {
                of(m)
                    .map(|p| p.learned.mean)
                    .fold(f64::NEG_INFINITY, f64::max)
            })
            .fold(f64::INFINITY, f64::min);
        for method in methods {
            let best = of(method)
                .filter(|p| p.learned.mean >= target)
                .max_by(|a, b| a.kept_share.mean.total_cmp(&b.kept_share.mean));
            if let Some(point) = best {
                out.push((base.to_string(), method, target, point.clone()));
            }
        }
    }
    out
}

/// The mean bits of a point's rows, `of` each, with the seeds' range.
fn bits(point: &Point<'_>, of: fn(&ContinualRow) -> Option<f64>) -> String {
    Spread::of(point.rows.iter().filter_map(|r| of(r))).map_or("—".into(), |s| s.show(0))
}

/// `value` signed, with three decimals, or a dash.
fn opt(value: Option<f64>) -> String {
    value.map_or_else(|| "—".into(), |v| format!("{v:+.3}"))
}

/// The suite's tables: the methods at matched learning of B, then every setting and length.
pub fn continual_markdown(rows: &[ContinualRow]) -> String {
    let mut md = String::from(
        "At matched learning of facts B (per base, the target is the recall of B that every \
         method reaches; each method's setting that reaches it keeping the most of A):\n\n\
         | base | method | setting | steps | recall of B (%) | bits of B | recall of A kept (% of \
         base) | recall of A (%) | bits of A (base) | held-out text loss change |\n\
         |---|---|---|---|---|---|---|---|---|---|\n",
    );
    for (base, method, target, point) in matched(rows) {
        let first = point.rows[0];
        let text = Spread::of(point.rows.iter().filter_map(|r| r.text_change()));
        md += &format!(
            "| {base} | {method} | {} | {} | {} (target {target:.1}) | {} | {} | {} | {} ({}) | \
             {} |\n",
            first.setting,
            first.steps,
            point.learned.show(1),
            bits(&point, |r| r.learned_bits),
            point.kept_share.show(1),
            Spread::of(point.rows.iter().map(|r| r.kept)).map_or("—".into(), |s| s.show(1)),
            bits(&point, |r| r.kept_bits),
            bits(&point, |r| r.base_kept_bits),
            opt(text.map(|s| s.mean)),
        );
    }
    md += "\nEvery setting and length (mean over seeds, lowest–highest):\n\n\
           | setting | steps | recall of B (%) | bits of B | recall of A kept (% of base) | \
           bits of A | held-out text loss change | seconds |\n|---|---|---|---|---|---|---|---|\n";
    for point in points(rows) {
        let first = point.rows[0];
        let text = Spread::of(point.rows.iter().filter_map(|r| r.text_change()));
        let seconds = Spread::of(point.rows.iter().map(|r| r.train_seconds));
        md += &format!(
            "| {} | {} | {} | {} | {} | {} | {} | {:.0} |\n",
            first.setting,
            first.steps,
            point.learned.show(1),
            bits(&point, |r| r.learned_bits),
            point.kept_share.show(1),
            bits(&point, |r| r.kept_bits),
            opt(text.map(|s| s.mean)),
            seconds.map_or(0.0, |s| s.mean),
        );
    }
    md
}

/// Forgetting of A against learning of B: per base and method, the line through the settings
/// no other of its settings beats on both (the Pareto front), min–max over seeds as bars.
fn pareto_chart(rows: &[ContinualRow]) -> Chart {
    let mut chart = Chart::new(
        "continual: forgetting of facts A against learning of facts B",
        "recall of facts B after finetuning (%)",
        "recall of facts A lost (points)",
    );
    let points = points(rows);
    let mut curves: Vec<(String, FinetuneMethod)> = points
        .iter()
        .map(|p| (p.rows[0].base.clone(), p.rows[0].method))
        .collect();
    let rank = |m: &FinetuneMethod| FinetuneMethod::ALL.iter().position(|x| x == m);
    curves.sort_by(|a, b| a.0.cmp(&b.0).then(rank(&a.1).cmp(&rank(&b.1))));
    curves.dedup();
    for (base, method) in curves {
        let of: Vec<&Point> = points
            .iter()
            .filter(|p| p.rows[0].base == base && p.rows[0].method == method)
            .collect();
        let mut front: Vec<&Point> = of
            .iter()
            .copied()
            .filter(|p| {
                !of.iter().any(|q| {
                    q.learned.mean >= p.learned.mean
                        && q.forgetting.mean <= p.forgetting.mean
                        && (q.learned.mean > p.learned.mean
                            || q.forgetting.mean < p.forgetting.mean)
                })
            })
            .collect();
        front.sort_by(|a, b| a.learned.mean.total_cmp(&b.learned.mean));
        chart.series.push(Series::line_with_errors(
            format!("{base} {method}"),
            front
                .iter()
                .map(|p| (p.learned.mean, p.forgetting.mean))
                .collect(),
            front
                .iter()
                .map(|p| (p.forgetting.min, p.forgetting.max))
                .collect(),
        ));
    }
    chart
}

/// Writes `continual.json`, `continual.md` and the figure into `dir`.
pub(crate) fn write(dir: &SuiteDir, rows: &[ContinualRow]) -> Result<(), ExperimentError> {
    write_json(&dir.continual_json(), &rows)?;
    write_text(
        &dir.continual_md(),
        &format!("# continual\n\n{}", continual_markdown(rows)),
    )?;
    write_text(
        &dir.figure(crate::Figure::ForgettingVsLearning),
        &pareto_chart(rows).svg()?,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(method: FinetuneMethod, label: &str, learned: f64, kept: f64) -> ContinualRow {
        ContinualRow {
            id: format!("{label}-s0"),
            label: label.into(),
            setting: label.into(),
            base: "memory-plus".into(),
            method,
            lr: 1.0,
            top_t: None,
            steps: 300,
            seed: 0,
            learned,
            learned_bits: None,
            kept,
            kept_bits: None,
            text_loss: None,
            base_learned: 5.0,
            base_kept: 20.0,
            base_kept_bits: None,
            base_text_loss: None,
            train_seconds: 1.0,
        }
    }

    #[test]
    fn each_method_is_compared_where_it_reaches_what_every_method_reaches() {
        use FinetuneMethod::*;
        let rows = vec![
            row(Full, "full-a", 30.0, 8.0),
            row(Full, "full-b", 16.0, 12.0),
            // Keeps everything, learns nothing: never the matched point.
            row(Full, "full-c", 5.0, 20.0),
            row(Memory, "memory-a", 15.0, 16.0),
            row(Memory, "memory-b", 10.0, 19.0),
        ];
        let matched = matched(&rows);
        let chosen: Vec<(FinetuneMethod, f64, &str)> = matched
            .iter()
            .map(|(_, m, target, p)| (*m, *target, p.rows[0].label.as_str()))
            .collect();
        // The target is memory's best, 15: full's best point at or above it is full-b.
        assert_eq!(
            chosen,
            vec![(Full, 15.0, "full-b"), (Memory, 15.0, "memory-a")]
        );
    }
}
