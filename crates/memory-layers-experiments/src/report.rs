//! The suite's report: summary.json, summary.md and the figures (SVG).

use memory_layers_plot::{Chart, Series};
use memory_layers_train::read_metrics;

use crate::summary::{Spread, SummaryRow, groups, markdown, write_json, write_text};
use crate::{ExperimentError, Figure, SuiteDir};

/// A metric of a row, for the y axis.
type Metric = fn(&SummaryRow) -> Option<f64>;

/// The x axis of a figure: what it measures of a row, and whether it is logarithmic.
struct Axis {
    label: &'static str,
    of: fn(&SummaryRow) -> f64,
    log: bool,
}

/// Writes `summary.json`, `summary.md` and the figures of `rows` into `dir`; loss curves come
/// from each run's metrics.
pub fn write_report(
    dir: &SuiteDir,
    title: &str,
    rows: &[SummaryRow],
) -> Result<(), ExperimentError> {
    write_json(&dir.summary_json(), &rows)?;
    write_text(
        &dir.summary_md(),
        &format!("# {title}\n\n{}", markdown(rows)),
    )?;
    let recall: Metric = |r| r.fact_recall;
    let qa: Metric = |r| Some(r.qa_exact_match);
    let flops = Axis {
        label: "forward FLOPs per token",
        of: |r| r.flops_per_token as f64,
        log: false,
    };
    let params = Axis {
        label: "total parameters",
        of: |r| r.total_params as f64,
        log: true,
    };
    let figures = [
        (Figure::RecallVsFlops, "fact recall (%)", recall, &flops),
        (Figure::RecallVsParams, "fact recall (%)", recall, &params),
        (Figure::QaVsFlops, "held-out QA exact match (%)", qa, &flops),
        (
            Figure::QaVsParams,
            "held-out QA exact match (%)",
            qa,
            &params,
        ),
    ];
    for (figure, y_label, metric, x) in figures {
        let mut chart = Chart::new(format!("{title}: {y_label}"), x.label, y_label);
        chart.log_x = x.log;
        chart.series = scatter(rows, metric, x.of);
        write_text(&dir.figure(figure), &chart.svg()?)?;
    }
    write_text(
        &dir.figure(Figure::Loss),
        &loss_curves(dir, title, rows)?.svg()?,
    )
}

/// One series per configuration: the mean over seeds with the min–max as an error bar.
fn scatter(rows: &[SummaryRow], metric: Metric, x: fn(&SummaryRow) -> f64) -> Vec<Series> {
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

/// Training loss against training tokens, the first seed of every configuration.
fn loss_curves(dir: &SuiteDir, title: &str, rows: &[SummaryRow]) -> Result<Chart, ExperimentError> {
    let mut chart = Chart::new(
        format!("{title}: training loss"),
        "training tokens",
        "training loss (nats/token)",
    );
    for group in groups(rows) {
        let run = group.rows[0];
        let lines = read_metrics(&dir.run(&run.run).metrics())?;
        let points = lines.iter().map(|l| (l.tokens as f64, l.loss)).collect();
        chart.series.push(Series::line(group.label, points));
    }
    Ok(chart)
}
