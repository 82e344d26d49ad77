//! Charts as SVG (plotters): axes with ticks, a light grid, a legend, optional log scales.
//! Training writes its loss curve with it; experiment reports draw their figures with it.
//!
//! ```
//! use memory_layers_plot::{Chart, Series};
//!
//! let mut chart = Chart::new("loss", "step", "loss (nats/token)");
//! chart.series.push(Series::line("train", vec![(1.0, 3.2), (2.0, 2.9), (3.0, 2.7)]));
//! let svg = chart.svg().unwrap();
//! assert!(svg.starts_with("<svg"));
//! ```

use plotters::coord::Shift;
use plotters::coord::ranged1d::ValueFormatter;
use plotters::prelude::*;

/// A chart plotters could not draw (the message is plotters' own).
#[derive(Debug, thiserror::Error)]
#[error("the chart could not be drawn: {0}")]
pub struct PlotError(String);

/// How a series is drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mark {
    /// Points joined by a line.
    Line,
    /// Points only, with vertical error bars where the series has them.
    Points,
    /// Points joined by a line, with vertical error bars where the series has them.
    LinePoints,
}

/// One named series of `(x, y)` points.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Legend entry.
    pub label: String,
    /// The points, in drawing order.
    pub points: Vec<(f64, f64)>,
    /// Per point `(low, high)` of `y` (for example the spread over seeds); empty: none.
    pub errors: Vec<(f64, f64)>,
    /// How it is drawn.
    pub mark: Mark,
}

impl Series {
    /// A line through `points`.
    pub fn line(label: impl Into<String>, points: Vec<(f64, f64)>) -> Self {
        Self {
            label: label.into(),
            points,
            errors: Vec::new(),
            mark: Mark::Line,
        }
    }

    /// A line through points with error bars `errors` (one `(low, high)` per point, or none).
    pub fn line_with_errors(
        label: impl Into<String>,
        points: Vec<(f64, f64)>,
        errors: Vec<(f64, f64)>,
    ) -> Self {
        Self {
            mark: Mark::LinePoints,
            ..Self::points(label, points, errors)
        }
    }

    /// Points with error bars `errors` (one `(low, high)` per point, or none).
    pub fn points(
        label: impl Into<String>,
        points: Vec<(f64, f64)>,
        errors: Vec<(f64, f64)>,
    ) -> Self {
        Self {
            label: label.into(),
            points,
            errors,
            mark: Mark::Points,
        }
    }
}

/// A chart: title, axis labels and scales, series.
#[derive(Debug, Clone, PartialEq)]
pub struct Chart {
    /// Title above the plot.
    pub title: String,
    /// X axis label.
    pub x_label: String,
    /// Y axis label.
    pub y_label: String,
    /// Logarithmic x axis (positive values only).
    pub log_x: bool,
    /// Logarithmic y axis (positive values only).
    pub log_y: bool,
    /// What is drawn.
    pub series: Vec<Series>,
}

/// Series colours (the Tableau 10 palette: distinct, readable on white).
const COLORS: [RGBColor; 10] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
    RGBColor(188, 189, 34),
    RGBColor(23, 190, 207),
];

/// A tick label: `1.5M`, `250k`, `0.25`, `12`.
fn short(v: f64) -> String {
    let a = v.abs();
    let trim = |s: String| {
        if s.contains('.') {
            s.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            s
        }
    };
    match a {
        _ if a >= 1e9 => format!("{}G", trim(format!("{:.2}", v / 1e9))),
        _ if a >= 1e6 => format!("{}M", trim(format!("{:.2}", v / 1e6))),
        _ if a >= 1e4 => format!("{}k", trim(format!("{:.1}", v / 1e3))),
        _ if a >= 10.0 || a == 0.0 => trim(format!("{v:.1}")),
        _ => trim(format!("{v:.3}")),
    }
}

/// A tick label: on a logarithmic axis only at 1, 2 and 5 times a power of ten (the others
/// crowd each other towards the top of a decade), elsewhere every tick.
fn tick(v: f64, log: bool) -> String {
    if log && v > 0.0 {
        let mantissa = v / 10f64.powf(v.log10().floor());
        if ![1.0, 2.0, 5.0].iter().any(|m| (mantissa - m).abs() < 1e-6) {
            return String::new();
        }
    }
    short(v)
}

/// Width and height of every chart, in pixels.
const SIZE: (u32, u32) = (800, 480);

impl Chart {
    /// A chart with linear axes and no series yet.
    pub fn new(
        title: impl Into<String>,
        x_label: impl Into<String>,
        y_label: impl Into<String>,
    ) -> Self {
        Self {
            title: title.into(),
            x_label: x_label.into(),
            y_label: y_label.into(),
            log_x: false,
            log_y: false,
            series: Vec::new(),
        }
    }

    /// The chart as an SVG document.
    pub fn svg(&self) -> Result<String, PlotError> {
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, SIZE).into_drawing_area();
            self.draw(&root).map_err(|e| PlotError(e.to_string()))?;
            root.present().map_err(|e| PlotError(e.to_string()))?;
        }
        Ok(svg)
    }

    /// The range of every value on one axis, padded, or `(0, 1)` without finite values.
    fn range(&self, log: bool, value: impl Fn(&Series) -> Vec<f64>) -> (f64, f64) {
        let values: Vec<f64> = self
            .series
            .iter()
            .flat_map(value)
            .filter(|v| v.is_finite() && (!log || *v > 0.0))
            .collect();
        let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if !lo.is_finite() {
            return if log { (1.0, 10.0) } else { (0.0, 1.0) };
        }
        if log {
            (lo / 1.25, hi * 1.25)
        } else {
            let pad = ((hi - lo) * 0.05).max(lo.abs().max(hi.abs()).max(1.0) * 0.02);
            (lo - pad, hi + pad)
        }
    }

    /// Whether an axis asked to be logarithmic spans enough (a decade) to show its ticks.
    fn use_log(&self, log: bool, value: impl Fn(&Series) -> Vec<f64>) -> bool {
        let (lo, hi) = self.range(log, value);
        log && hi / lo >= 10.0
    }

    /// The corner of the plot area that the legend covers least data in (upper right when
    /// several are free): each corner's box is about the legend's size.
    fn legend_corner(
        &self,
        (x, log_x): ((f64, f64), bool),
        (y, log_y): ((f64, f64), bool),
    ) -> SeriesLabelPosition {
        let unit = |v: f64, (lo, hi): (f64, f64), log: bool| {
            if log {
                (v.ln() - lo.ln()) / (hi.ln() - lo.ln())
            } else {
                (v - lo) / (hi - lo)
            }
        };
        let marks: Vec<(f64, f64)> = self
            .series
            .iter()
            .flat_map(|s| {
                let ends = s
                    .errors
                    .iter()
                    .zip(&s.points)
                    .flat_map(|(e, p)| [(p.0, e.0), (p.0, e.1)]);
                s.points.iter().copied().chain(ends).collect::<Vec<_>>()
            })
            .map(|(px, py)| (unit(px, x, log_x), unit(py, y, log_y)))
            .collect();
        let (width, height) = (0.3, 0.1 + 0.06 * self.series.len() as f64);
        let corners = [
            (SeriesLabelPosition::UpperRight, true, true),
            (SeriesLabelPosition::UpperLeft, false, true),
            (SeriesLabelPosition::LowerRight, true, false),
            (SeriesLabelPosition::LowerLeft, false, false),
        ];
        let covered = |right: bool, upper: bool| {
            marks
                .iter()
                .filter(|&&(u, v)| {
                    (if right { u >= 1.0 - width } else { u <= width })
                        && (if upper {
                            v >= 1.0 - height
                        } else {
                            v <= height
                        })
                })
                .count()
        };
        corners
            .into_iter()
            .min_by_key(|&(_, right, upper)| covered(right, upper))
            .map_or(SeriesLabelPosition::UpperRight, |(corner, _, _)| corner)
    }

    fn draw<DB: DrawingBackend>(
        &self,
        root: &DrawingArea<DB, Shift>,
    ) -> Result<(), Box<dyn std::error::Error + 'static>>
    where
        DB::ErrorType: 'static,
    {
        root.fill(&WHITE)?;
        let xs = |s: &Series| s.points.iter().map(|p| p.0).collect();
        let ys = |s: &Series| {
            let ends = s.errors.iter().flat_map(|&(lo, hi)| [lo, hi]);
            s.points.iter().map(|p| p.1).chain(ends).collect()
        };
        let (log_x, log_y) = (self.use_log(self.log_x, xs), self.use_log(self.log_y, ys));
        let (x, y) = (self.range(log_x, xs), self.range(log_y, ys));
        let legend = self.legend_corner((x, log_x), (y, log_y));
        let mut builder = ChartBuilder::on(root);
        builder
            .caption(&self.title, ("sans-serif", 20))
            .margin(14)
            .x_label_area_size(44)
            .y_label_area_size(64);
        // Four coordinate types (linear or log per axis) share one drawing routine.
        match (log_x, log_y) {
            (false, false) => self.draw_on(
                builder.build_cartesian_2d(x.0..x.1, y.0..y.1)?,
                legend,
                (log_x, log_y),
            ),
            (true, false) => self.draw_on(
                builder.build_cartesian_2d((x.0..x.1).log_scale(), y.0..y.1)?,
                legend,
                (log_x, log_y),
            ),
            (false, true) => self.draw_on(
                builder.build_cartesian_2d(x.0..x.1, (y.0..y.1).log_scale())?,
                legend,
                (log_x, log_y),
            ),
            (true, true) => self.draw_on(
                builder.build_cartesian_2d((x.0..x.1).log_scale(), (y.0..y.1).log_scale())?,
                legend,
                (log_x, log_y),
            ),
        }
    }

    fn draw_on<'a, DB, X, Y>(
        &self,
        mut chart: ChartContext<'a, DB, Cartesian2d<X, Y>>,
        legend: SeriesLabelPosition,
        log: (bool, bool),
    ) -> Result<(), Box<dyn std::error::Error + 'static>>
    where
        DB: DrawingBackend + 'a,
        DB::ErrorType: 'static,
        X: Ranged<ValueType = f64> + ValueFormatter<f64>,
        Y: Ranged<ValueType = f64> + ValueFormatter<f64>,
    {
        chart
            .configure_mesh()
            .x_desc(&self.x_label)
            .y_desc(&self.y_label)
            .x_label_formatter(&|v| tick(*v, log.0))
            .y_label_formatter(&|v| tick(*v, log.1))
            .light_line_style(BLACK.mix(0.05))
            .bold_line_style(BLACK.mix(0.15))
            .draw()?;
        for (i, series) in self.series.iter().enumerate() {
            let color = COLORS[i % COLORS.len()].to_rgba();
            let style = ShapeStyle::from(color).stroke_width(2);
            let bars =
                series.errors.iter().zip(&series.points).map(|(e, p)| {
                    ErrorBar::new_vertical(p.0, e.0, p.1, e.1, color.stroke_width(1), 8)
                });
            chart.draw_series(bars)?;
            let circles = || {
                series
                    .points
                    .iter()
                    .map(|&p| Circle::new(p, 4, color.filled()))
            };
            let drawn = match series.mark {
                Mark::Line => chart.draw_series(LineSeries::new(series.points.clone(), style))?,
                Mark::Points => chart.draw_series(circles())?,
                Mark::LinePoints => {
                    chart.draw_series(circles())?;
                    chart.draw_series(LineSeries::new(series.points.clone(), style))?
                }
            };
            drawn.label(&series.label).legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(3))
            });
        }
        chart
            .configure_series_labels()
            .position(legend)
            .border_style(BLACK.mix(0.4))
            .background_style(WHITE.mix(0.85))
            .draw()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_legend_avoids_the_points() {
        let mut chart = Chart::new("recall", "FLOPs", "%");
        // Points in the upper right and upper left corners: the legend goes below.
        chart.series = vec![
            Series::points("a", vec![(10.0, 10.0), (0.0, 10.0)], vec![]),
            Series::points("b", vec![(9.5, 9.5), (0.5, 9.0)], vec![]),
            Series::points("c", vec![(5.0, 0.0)], vec![]),
        ];
        let (x, y) = (
            chart.range(false, |s| s.points.iter().map(|p| p.0).collect()),
            chart.range(false, |s| s.points.iter().map(|p| p.1).collect()),
        );
        let corner = chart.legend_corner((x, false), (y, false));
        assert!(
            matches!(corner, SeriesLabelPosition::LowerRight),
            "upper corners are taken, lower right is free"
        );
        chart.series.truncate(1);
        chart.series[0].points = vec![(0.0, 0.0), (10.0, 0.0)];
        let corner = chart.legend_corner((x, false), (y, false));
        assert!(
            matches!(corner, SeriesLabelPosition::UpperRight),
            "the default when free"
        );
    }

    #[test]
    fn charts_have_ticks_legend_and_every_series() {
        let mut chart = Chart::new("loss", "step", "nats/token");
        chart.series.push(Series::line(
            "train",
            vec![(1.0, 3.0), (10.0, 2.0), (100.0, 1.5)],
        ));
        chart
            .series
            .push(Series::points("val", vec![(10.0, 2.2)], vec![(2.1, 2.3)]));
        chart.series.push(Series::line_with_errors(
            "family",
            vec![(2.0, 2.5), (20.0, 2.4)],
            vec![(2.4, 2.6), (2.3, 2.5)],
        ));
        for (log_x, log_y) in [(false, false), (true, false), (false, true), (true, true)] {
            chart.log_x = log_x;
            chart.log_y = log_y;
            let svg = chart.svg().unwrap();
            assert!(svg.starts_with("<svg"));
            for text in ["loss", "step", "nats/token", "train", "val", "family"] {
                assert!(svg.contains(&format!("\n{text}\n")), "{text} is drawn");
            }
            assert!(svg.matches("<text").count() > 10, "tick labels");
            assert!(svg.contains("<polyline"), "the line");
            assert!(svg.contains("<circle"), "the points");
        }
        let empty = Chart::new("nothing", "x", "y").svg().unwrap();
        assert!(empty.contains("nothing"));
    }
}
