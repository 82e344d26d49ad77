//! The suite's report: summary.json, summary.md and the figures (SVG).

use std::path::Path;

use trainer::plot::{Chart, Series};
use trainer::read_metrics;

use crate::ExperimentError;
use crate::summary::{Spread, SummaryRow, groups, markdown, write_json, write_text};

/// Files of a report, relative to the suite's directory.
pub const REPORT_FILES: [&str; 7] = [
    "summary.json",
    "summary.md",
    "recall_vs_flops.svg",
    "recall_vs_params.svg",
    "qa_vs_flops.svg",
    "qa_vs_params.svg",
    "loss.svg",
];

/// A metric of a row, for the y axis.
type Metric = fn(&SummaryRow) -> Option<f64>;

/// Writes `summary.json`, `summary.md` and the figures of `rows` under `dir`; loss curves come
/// from `dir/runs/<run>/metrics.jsonl`.
pub fn write_report(dir: &Path, title: &str, rows: &[SummaryRow]) -> Result<(), ExperimentError> {
    write_json(&dir.join("summary.json"), &rows)?;
    write_text(
        &dir.join("summary.md"),
        &format!("# {title}\n\n{}", markdown(rows)),
    )?;
    let recall: Metric = |r| r.fact_recall;
    let qa: Metric = |r| Some(r.qa_exact_match);
    let flops = |r: &SummaryRow| r.flops_per_token as f64;
    let params = |r: &SummaryRow| r.total_params as f64;
    let figures: [(&str, &str, Metric, &str, &dyn Fn(&SummaryRow) -> f64, bool); 4] = [
        (
            "recall_vs_flops.svg",
            "fact recall (%)",
            recall,
            "forward FLOPs per token",
            &flops,
            false,
        ),
        (
            "recall_vs_params.svg",
            "fact recall (%)",
            recall,
            "total parameters",
            &params,
            true,
        ),
        (
            "qa_vs_flops.svg",
            "held-out QA exact match (%)",
            qa,
            "forward FLOPs per token",
            &flops,
            false,
        ),
        (
            "qa_vs_params.svg",
            "held-out QA exact match (%)",
            qa,
            "total parameters",
            &params,
            true,
        ),
    ];
    for (file, y_label, metric, x_label, x, log_x) in figures {
        let mut chart = Chart::new(format!("{title}: {y_label}"), x_label, y_label);
        chart.log_x = log_x;
        chart.series = scatter(rows, metric, x);
        write_text(&dir.join(file), &chart.svg()?)?;
    }
    write_text(
        &dir.join("loss.svg"),
        &loss_curves(dir, title, rows)?.svg()?,
    )
}

/// One series per configuration: the mean over seeds with the min–max as an error bar.
fn scatter(rows: &[SummaryRow], metric: Metric, x: &dyn Fn(&SummaryRow) -> f64) -> Vec<Series> {
    groups(rows)
        .into_iter()
        .filter_map(|group| {
            let spread = Spread::of(group.rows.iter().filter_map(|r| metric(r)))?;
            let at = x(group.rows[0]);
            Some(Series::points(
                group.label,
                vec![(at, spread.mean)],
                vec![(spread.min, spread.max)],
            ))
        })
        .collect()
}

/// Validation loss against training tokens, the first seed of every configuration.
fn loss_curves(dir: &Path, title: &str, rows: &[SummaryRow]) -> Result<Chart, ExperimentError> {
    let mut chart = Chart::new(
        format!("{title}: validation loss"),
        "training tokens",
        "validation loss (nats/token)",
    );
    for group in groups(rows) {
        let run = group.rows[0];
        let lines = read_metrics(&dir.join("runs").join(&run.run).join("metrics.jsonl"))?;
        let points = lines
            .iter()
            .filter_map(|l| l.val_loss.map(|v| (l.tokens as f64, v)))
            .collect();
        chart.series.push(Series::line(group.label, points));
    }
    Ok(chart)
}
