//! The suite's report: summary.json, summary.md and the figures (SVG).

use memory_layers_plot::{Chart, Series};
use memory_layers_train::read_metrics;

use crate::summary::{Spread, SummaryRow, groups, write_json, write_text};
use crate::{ExperimentError, Figure, Suite, SuiteDir};

/// A metric of a row, for the y axis.
type Metric = fn(&SummaryRow) -> Option<f64>;

/// The x axis of a figure: what it measures of a row, and whether it is logarithmic.
struct Axis {
    label: &'static str,
    of: fn(&SummaryRow) -> f64,
    log: bool,
}

const FLOPS: Axis = Axis {
    label: "forward FLOPs per token",
    of: |r| r.flops_per_token as f64,
    log: false,
};

const PARAMS: Axis = Axis {
    label: "total parameters",
    of: |r| r.total_params as f64,
    log: true,
};

/// Writes `summary.json`, `summary.md` and the figures of `suite`'s `rows` into `dir`; loss
/// curves come from each run's metrics.
pub fn write_report(
    dir: &SuiteDir,
    suite: Suite,
    rows: &[SummaryRow],
) -> Result<(), ExperimentError> {
    write_json(&dir.summary_json(), &rows)?;
    write_text(
        &dir.summary_md(),
        &format!("# {suite}\n\n{}", suite.table(rows)),
    )?;
    for figure in suite.figures() {
        let chart = match figure {
            Figure::RecallVsFlops => {
                scatter_chart(suite, rows, "fact recall (%)", |r| r.fact_recall, &FLOPS)
            }
            Figure::RecallVsParams => {
                scatter_chart(suite, rows, "fact recall (%)", |r| r.fact_recall, &PARAMS)
            }
            Figure::QaVsFlops => scatter_chart(
                suite,
                rows,
                "held-out QA exact match (%)",
                |r| Some(r.qa_exact_match),
                &FLOPS,
            ),
            Figure::QaVsParams => scatter_chart(
                suite,
                rows,
                "held-out QA exact match (%)",
                |r| Some(r.qa_exact_match),
                &PARAMS,
            ),
            Figure::BitsVsParams => family_chart(suite, rows, &PARAMS),
            Figure::BitsVsFlops => family_chart(suite, rows, &Axis { log: true, ..FLOPS }),
            Figure::BitsOverTraining => bits_curves(dir, suite, rows)?,
            Figure::Loss => loss_curves(dir, suite, rows)?,
            // Drawn from the finetuning rows, by the continual report.
            Figure::ForgettingVsLearning => continue,
        };
        write_text(&dir.figure(*figure), &chart.svg()?)?;
    }
    Ok(())
}

/// One point per configuration: the mean over seeds with the min–max as an error bar.
fn scatter_chart(
    suite: Suite,
    rows: &[SummaryRow],
    y_label: &str,
    metric: Metric,
    x: &Axis,
) -> Chart {
    let mut chart = Chart::new(format!("{suite}: {y_label}"), x.label, y_label);
    chart.log_x = x.log;
    chart.series = groups(rows)
        .into_iter()
        .filter_map(|group| {
            let spread = Spread::of(group.rows.iter().filter_map(|r| metric(r)))?;
            let at = (x.of)(group.rows[0]);
            Some(Series::points(
                group.label,
                vec![(at, spread.mean)],
                vec![(spread.min, spread.max)],
            ))
        })
        .collect();
    chart
}

/// Bits held against `x`, on log axes, one line per model family through its sizes (the mean
/// over seeds, the min–max as an error bar).
fn family_chart(suite: Suite, rows: &[SummaryRow], x: &Axis) -> Chart {
    let mut chart = Chart::new(
        format!("{suite}: bits of facts held"),
        x.label,
        "bits held (knowledge measure)",
    );
    (chart.log_x, chart.log_y) = (x.log, true);
    // (family, x, spread) of every configuration, each family's sizes by x.
    let mut points: Vec<(String, f64, Spread)> = groups(rows)
        .into_iter()
        .filter_map(|group| {
            let spread = Spread::of(group.rows.iter().filter_map(|r| r.knowledge_bits))?;
            Some((group.rows[0].model.clone(), (x.of)(group.rows[0]), spread))
        })
        .collect();
    points.sort_by(|a, b| a.1.total_cmp(&b.1));
    let mut families: Vec<String> = points.iter().map(|p| p.0.clone()).collect();
    families.dedup();
    families.sort();
    families.dedup();
    for family in families {
        let of: Vec<&(String, f64, Spread)> = points.iter().filter(|p| p.0 == family).collect();
        chart.series.push(Series::line_with_errors(
            family,
            of.iter().map(|p| (p.1, p.2.mean)).collect(),
            of.iter().map(|p| (p.2.min, p.2.max)).collect(),
        ));
    }
    chart
}

/// Bits held against training tokens, the first seed of every configuration (the evaluations
/// during training).
fn bits_curves(
    dir: &SuiteDir,
    suite: Suite,
    rows: &[SummaryRow],
) -> Result<Chart, ExperimentError> {
    let mut chart = Chart::new(
        format!("{suite}: bits held during training"),
        "training tokens",
        "bits held (knowledge measure)",
    );
    for group in groups(rows) {
        let lines = read_metrics(&dir.run(&group.rows[0].run).metrics())?;
        let points = lines
            .iter()
            .filter_map(|l| Some((l.tokens as f64, l.knowledge_bits?)))
            .collect();
        chart.series.push(Series::line(group.label, points));
    }
    Ok(chart)
}

/// Training loss against training tokens, the first seed of every configuration.
fn loss_curves(
    dir: &SuiteDir,
    suite: Suite,
    rows: &[SummaryRow],
) -> Result<Chart, ExperimentError> {
    let mut chart = Chart::new(
        format!("{suite}: training loss"),
        "training tokens",
        "training loss (nats/token)",
    );
    for group in groups(rows) {
        let lines = read_metrics(&dir.run(&group.rows[0].run).metrics())?;
        let points = lines.iter().map(|l| (l.tokens as f64, l.loss)).collect();
        chart.series.push(Series::line(group.label, points));
    }
    Ok(chart)
}
