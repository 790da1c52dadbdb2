//! Plots as self-contained SVG (plotters' SVG backend: text stays `<text>`, no fonts are
//! read): grouped bars (ours beside the paper's), stacked bars (energy by component),
//! lines (a metric against a swept value) and scatter plots with a Pareto front.
//!
//! Every plot carries its axis descriptions with units; series whose `paper` flag is set are
//! drawn lighter with a dark outline so the paper's values read apart from ours.

use plotters::coord::Shift;
use plotters::coord::ranged1d::{KeyPointHint, NoDefaultFormatting, ValueFormatter};
use plotters::coord::types::RangedCoordf64;
use plotters::prelude::*;

use crate::error::{ReportError, Result};

/// Width and height of every plot, pixels.
pub const SIZE_PX: (u32, u32) = (960, 560);

/// One bar series: a value (or none) per category.
#[derive(Clone, Debug, PartialEq)]
pub struct BarSeries {
    /// Legend name.
    pub name: String,
    /// One value per category; `None` leaves a gap.
    pub values: Vec<Option<f64>>,
    /// The paper's values (drawn lighter, outlined).
    pub paper: bool,
}

/// Grouped bars: one group per category, one bar per series.
#[derive(Clone, Debug, PartialEq)]
pub struct Bars {
    /// File stem.
    pub id: String,
    /// Caption.
    pub title: String,
    /// Description of the categories.
    pub x_label: String,
    /// Description of the values, with the unit.
    pub y_label: String,
    /// Category names.
    pub categories: Vec<String>,
    /// Series.
    pub series: Vec<BarSeries>,
}

/// Stacked bars: one bar per category, split into components.
#[derive(Clone, Debug, PartialEq)]
pub struct Stacked {
    /// File stem.
    pub id: String,
    /// Caption.
    pub title: String,
    /// Description of the categories.
    pub x_label: String,
    /// Description of the values, with the unit.
    pub y_label: String,
    /// Category (bar) names.
    pub categories: Vec<String>,
    /// Components: name and one value per category.
    pub components: Vec<(String, Vec<f64>)>,
}

/// One line: points in x order.
#[derive(Clone, Debug, PartialEq)]
pub struct Line {
    /// Legend name.
    pub name: String,
    /// Points (x, y).
    pub points: Vec<(f64, f64)>,
    /// The paper's values (dashed).
    pub paper: bool,
    /// Vertical error bars `(x, low, high)` in y units (e.g. a 95 % interval), drawn in the
    /// line's colour; empty for none.
    pub errors: Vec<(f64, f64, f64)>,
}

/// Lines of a metric against a swept value, with optional horizontal reference lines.
#[derive(Clone, Debug, PartialEq)]
pub struct Lines {
    /// File stem.
    pub id: String,
    /// Caption.
    pub title: String,
    /// Description of x, with the unit.
    pub x_label: String,
    /// Description of y, with the unit.
    pub y_label: String,
    /// Lines.
    pub lines: Vec<Line>,
    /// Horizontal references (name, y), e.g. the dense model.
    pub references: Vec<(String, f64)>,
}

/// Points with a highlighted Pareto front.
#[derive(Clone, Debug, PartialEq)]
pub struct Scatter {
    /// File stem.
    pub id: String,
    /// Caption.
    pub title: String,
    /// Description of x, with the unit.
    pub x_label: String,
    /// Description of y, with the unit.
    pub y_label: String,
    /// All points.
    pub points: Vec<(f64, f64)>,
    /// The Pareto front, in x order.
    pub front: Vec<(f64, f64)>,
}

/// A plot of one of the kinds above.
#[derive(Clone, Debug, PartialEq)]
pub enum Plot {
    /// Grouped bars.
    Bars(Bars),
    /// Stacked bars.
    Stacked(Stacked),
    /// Lines.
    Lines(Lines),
    /// Scatter with a Pareto front.
    Scatter(Scatter),
}

impl Plot {
    /// File stem.
    pub fn id(&self) -> &str {
        match self {
            Plot::Bars(p) => &p.id,
            Plot::Stacked(p) => &p.id,
            Plot::Lines(p) => &p.id,
            Plot::Scatter(p) => &p.id,
        }
    }

    /// Caption.
    pub fn title(&self) -> &str {
        match self {
            Plot::Bars(p) => &p.title,
            Plot::Stacked(p) => &p.title,
            Plot::Lines(p) => &p.title,
            Plot::Scatter(p) => &p.title,
        }
    }

    /// The SVG document.
    pub fn svg(&self) -> Result<String> {
        let mut s = String::new();
        {
            let root = SVGBackend::with_string(&mut s, SIZE_PX).into_drawing_area();
            let err = |e: &dyn std::fmt::Display| ReportError::Plot {
                plot: self.id().to_string(),
                reason: e.to_string(),
            };
            root.fill(&WHITE).map_err(|e| err(&e))?;
            match self {
                Plot::Bars(p) => draw_bars(&root, p),
                Plot::Stacked(p) => draw_stacked(&root, p),
                Plot::Lines(p) => draw_lines(&root, p),
                Plot::Scatter(p) => draw_scatter(&root, p),
            }
            .map_err(|e| err(&e))?;
            root.present().map_err(|e| err(&e))?;
        }
        Ok(s)
    }
}

type Draw = std::result::Result<(), String>;

fn e2s(e: impl std::fmt::Display) -> String {
    e.to_string()
}

fn color(i: usize) -> RGBColor {
    // Colour-blind-safe qualitative palette (Okabe-Ito), then plotters' palette.
    const OI: [(u8, u8, u8); 7] = [
        (0, 114, 178),
        (230, 159, 0),
        (0, 158, 115),
        (204, 121, 167),
        (86, 180, 233),
        (213, 94, 0),
        (240, 228, 66),
    ];
    match OI.get(i) {
        Some(&(r, g, b)) => RGBColor(r, g, b),
        None => {
            let c = Palette99::pick(i);
            let (r, g, b) = c.rgb();
            RGBColor(r, g, b)
        }
    }
}

/// The y range covering `ys` (and 0 when `from_zero`), padded by 5%.
fn y_range(ys: impl Iterator<Item = f64>, from_zero: bool) -> std::ops::Range<f64> {
    let (mut lo, mut hi) = ys
        .filter(|y| y.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), y| {
            (a.min(y), b.max(y))
        });
    if !lo.is_finite() {
        (lo, hi) = (0.0, 1.0);
    }
    if from_zero {
        lo = lo.min(0.0);
        hi = hi.max(0.0);
    }
    let pad = ((hi - lo) * 0.05).max(1e-9);
    let lo = if from_zero && lo >= 0.0 {
        0.0
    } else {
        lo - pad
    };
    lo..hi + pad
}

/// A category axis: category `i` spans `[i, i + 1)` and is labelled at its centre.
struct CategoryAxis {
    names: Vec<String>,
    inner: RangedCoordf64,
}

impl CategoryAxis {
    fn new(names: &[String]) -> Self {
        Self {
            names: names.to_vec(),
            inner: (0.0..names.len().max(1) as f64).into(),
        }
    }
}

impl Ranged for CategoryAxis {
    type FormatOption = NoDefaultFormatting;
    type ValueType = f64;

    fn map(&self, value: &f64, limit: (i32, i32)) -> i32 {
        self.inner.map(value, limit)
    }

    fn key_points<Hint: KeyPointHint>(&self, _hint: Hint) -> Vec<f64> {
        (0..self.names.len()).map(|i| i as f64 + 0.5).collect()
    }

    fn range(&self) -> std::ops::Range<f64> {
        self.inner.range()
    }
}

impl ValueFormatter<f64> for CategoryAxis {
    fn format(_value: &f64) -> String {
        String::new()
    }

    fn format_ext(&self, value: &f64) -> String {
        let i = (value - 0.5).round();
        if i >= 0.0 && (value - 0.5 - i).abs() < 1e-6 {
            self.names.get(i as usize).cloned().unwrap_or_default()
        } else {
            String::new()
        }
    }
}

type CategoryChart<'a> =
    ChartContext<'a, SVGBackend<'a>, Cartesian2d<CategoryAxis, RangedCoordf64>>;

/// A chart with one x slot per category (labelled at its centre) and the y range `yr`,
/// its mesh drawn with the axis descriptions; `label_px` is the category label size.
fn category_chart<'a>(
    root: &DrawingArea<SVGBackend<'a>, Shift>,
    title: &str,
    x_label: &str,
    y_label: &str,
    categories: &[String],
    yr: std::ops::Range<f64>,
    label_px: u32,
) -> std::result::Result<CategoryChart<'a>, String> {
    let mut chart = ChartBuilder::on(root)
        .caption(title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(CategoryAxis::new(categories), yr)
        .map_err(e2s)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_desc(x_label)
        .y_desc(y_label)
        .x_label_style(("sans-serif", label_px))
        .draw()
        .map_err(e2s)?;
    Ok(chart)
}

fn draw_bars(root: &DrawingArea<SVGBackend, Shift>, p: &Bars) -> Draw {
    if p.categories.is_empty() || p.series.is_empty() {
        return Err("nothing to draw".into());
    }
    if let Some(s) = p
        .series
        .iter()
        .find(|s| s.values.len() != p.categories.len())
    {
        return Err(format!(
            "series `{}` has {} values for {} categories",
            s.name,
            s.values.len(),
            p.categories.len()
        ));
    }
    let yr = y_range(
        p.series
            .iter()
            .flat_map(|s| s.values.iter().flatten().map(|v| v * 1.3)),
        true,
    );
    let mut chart = category_chart(
        root,
        &p.title,
        &p.x_label,
        &p.y_label,
        &p.categories,
        yr,
        12,
    )?;
    let k = p.series.len() as f64;
    let width = 0.8 / k;
    for (si, s) in p.series.iter().enumerate() {
        let c = color(if s.paper { si.saturating_sub(1) } else { si });
        let fill = if s.paper {
            c.mix(0.35).filled()
        } else {
            c.filled()
        };
        let x0 = 0.1 + si as f64 * width;
        let bars = s.values.iter().enumerate().filter_map(|(ci, v)| {
            v.map(|v| {
                let x = ci as f64 + x0;
                Rectangle::new([(x, 0.0), (x + width * 0.92, v)], fill)
            })
        });
        chart
            .draw_series(bars)
            .map_err(e2s)?
            .label(&s.name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], fill));
        if s.paper {
            let outline = s.values.iter().enumerate().filter_map(|(ci, v)| {
                v.map(|v| {
                    let x = ci as f64 + x0;
                    Rectangle::new([(x, 0.0), (x + width * 0.92, v)], c.stroke_width(1))
                })
            });
            chart.draw_series(outline).map_err(e2s)?;
        }
    }
    legend(&mut chart)
}

fn draw_stacked(root: &DrawingArea<SVGBackend, Shift>, p: &Stacked) -> Draw {
    if p.categories.is_empty() || p.components.is_empty() {
        return Err("nothing to draw".into());
    }
    if let Some((n, v)) = p
        .components
        .iter()
        .find(|(_, v)| v.len() != p.categories.len())
    {
        return Err(format!(
            "component `{n}` has {} values for {} bars",
            v.len(),
            p.categories.len()
        ));
    }
    let totals: Vec<f64> = (0..p.categories.len())
        .map(|i| p.components.iter().map(|(_, v)| v[i].max(0.0)).sum())
        .collect();
    // Headroom above the tallest bar for the legend.
    let yr = y_range(totals.iter().map(|t| t * 1.45), true);
    let mut chart = category_chart(
        root,
        &p.title,
        &p.x_label,
        &p.y_label,
        &p.categories,
        yr,
        11,
    )?;
    let mut base = vec![0.0; p.categories.len()];
    for (k, (name, vals)) in p.components.iter().enumerate() {
        let fill = color(k).filled();
        let rects: Vec<_> = vals
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let (lo, hi) = (base[i], base[i] + v.max(0.0));
                base[i] = hi;
                Rectangle::new([(i as f64 + 0.15, lo), (i as f64 + 0.85, hi)], fill)
            })
            .collect();
        chart
            .draw_series(rects)
            .map_err(e2s)?
            .label(name)
            .legend(move |(x, y)| Rectangle::new([(x, y - 5), (x + 14, y + 5)], fill));
    }
    legend(&mut chart)
}

fn draw_lines(root: &DrawingArea<SVGBackend, Shift>, p: &Lines) -> Draw {
    let pts = || p.lines.iter().flat_map(|l| l.points.iter().copied());
    if pts().next().is_none() {
        return Err("nothing to draw".into());
    }
    let xs = y_range(pts().map(|q| q.0), false);
    let bars = || {
        p.lines
            .iter()
            .flat_map(|l| l.errors.iter().flat_map(|e| [e.1, e.2]))
    };
    let ys = y_range(
        pts()
            .map(|q| q.1)
            .chain(p.references.iter().map(|r| r.1))
            .chain(bars()),
        false,
    );
    let mut chart = ChartBuilder::on(root)
        .caption(&p.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(xs.clone(), ys)
        .map_err(e2s)?;
    chart
        .configure_mesh()
        .x_desc(&p.x_label)
        .y_desc(&p.y_label)
        .draw()
        .map_err(e2s)?;
    for (name, y) in &p.references {
        chart
            .draw_series(DashedLineSeries::new(
                [(xs.start, *y), (xs.end, *y)],
                6,
                4,
                BLACK.stroke_width(1),
            ))
            .map_err(e2s)?
            .label(name)
            .legend(|(x, y)| PathElement::new([(x, y), (x + 18, y)], BLACK));
    }
    for (i, l) in p.lines.iter().enumerate() {
        let c = color(i);
        let mut pts = l.points.clone();
        pts.sort_by(|a, b| a.0.total_cmp(&b.0));
        let style = c.stroke_width(if l.paper { 1 } else { 2 });
        if l.paper {
            chart
                .draw_series(DashedLineSeries::new(pts.clone(), 8, 4, style))
                .map_err(e2s)?
                .label(&l.name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], style));
        } else {
            chart
                .draw_series(LineSeries::new(pts.clone(), style))
                .map_err(e2s)?
                .label(&l.name)
                .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], style));
        }
        chart
            .draw_series(pts.iter().map(|&q| Circle::new(q, 3, c.filled())))
            .map_err(e2s)?;
        // Error bars: a vertical segment with short caps (0.6 % of the x range each side).
        let cap = 0.006 * (xs.end - xs.start);
        chart
            .draw_series(l.errors.iter().flat_map(|&(x, lo, hi)| {
                [
                    PathElement::new([(x, lo), (x, hi)], c.stroke_width(1)),
                    PathElement::new([(x - cap, lo), (x + cap, lo)], c.stroke_width(1)),
                    PathElement::new([(x - cap, hi), (x + cap, hi)], c.stroke_width(1)),
                ]
            }))
            .map_err(e2s)?;
    }
    legend(&mut chart)
}

fn draw_scatter(root: &DrawingArea<SVGBackend, Shift>, p: &Scatter) -> Draw {
    if p.points.is_empty() {
        return Err("nothing to draw".into());
    }
    let xs = y_range(p.points.iter().map(|q| q.0), false);
    let ys = y_range(p.points.iter().map(|q| q.1), false);
    let mut chart = ChartBuilder::on(root)
        .caption(&p.title, ("sans-serif", 20))
        .margin(12)
        .x_label_area_size(50)
        .y_label_area_size(70)
        .build_cartesian_2d(xs, ys)
        .map_err(e2s)?;
    chart
        .configure_mesh()
        .x_desc(&p.x_label)
        .y_desc(&p.y_label)
        .draw()
        .map_err(e2s)?;
    let c = color(0);
    chart
        .draw_series(
            p.points
                .iter()
                .map(|&q| Circle::new(q, 3, c.mix(0.6).filled())),
        )
        .map_err(e2s)?
        .label("design points")
        .legend(move |(x, y)| Circle::new((x + 7, y), 3, c.filled()));
    let f = color(5);
    chart
        .draw_series(LineSeries::new(p.front.clone(), f.stroke_width(2)))
        .map_err(e2s)?
        .label("Pareto front")
        .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], f.stroke_width(2)));
    legend(&mut chart)
}

fn legend<'a, X: Ranged, Y: Ranged>(
    chart: &mut ChartContext<'a, SVGBackend<'a>, Cartesian2d<X, Y>>,
) -> Draw {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(SeriesLabelPosition::UpperRight)
        .draw()
        .map_err(e2s)
}

/// The Pareto front of `points` when both coordinates are better larger (`maximise`) or
/// smaller, per axis: the points no other point beats on both, in x order.
pub fn pareto_front(points: &[(f64, f64)], maximise: (bool, bool)) -> Vec<(f64, f64)> {
    let better = |a: f64, b: f64, max: bool| if max { a >= b } else { a <= b };
    let mut front: Vec<(f64, f64)> = points
        .iter()
        .copied()
        .filter(|&p| {
            !points.iter().any(|&q| {
                q != p
                    && better(q.0, p.0, maximise.0)
                    && better(q.1, p.1, maximise.1)
                    && (q.0 != p.0 || q.1 != p.1)
            })
        })
        .collect();
    front.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.total_cmp(&b.1)));
    front.dedup();
    front
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pareto_front_of_a_small_set() {
        let pts = [(1.0, 1.0), (2.0, 0.5), (0.5, 2.0), (0.9, 0.9), (2.0, 0.4)];
        assert_eq!(
            pareto_front(&pts, (true, true)),
            vec![(0.5, 2.0), (1.0, 1.0), (2.0, 0.5)]
        );
        assert_eq!(
            pareto_front(&pts, (false, false)),
            vec![(0.5, 2.0), (0.9, 0.9), (2.0, 0.4)]
        );
    }

    #[test]
    fn mismatched_series_are_an_error_naming_the_plot() {
        let p = Plot::Bars(Bars {
            id: "b".into(),
            title: "t".into(),
            x_label: "model".into(),
            y_label: "speedup (x)".into(),
            categories: vec!["a".into(), "b".into()],
            series: vec![BarSeries {
                name: "ours".into(),
                values: vec![Some(1.0)],
                paper: false,
            }],
        });
        let e = p.svg().unwrap_err().to_string();
        assert!(
            e.contains("plot `b`") && e.contains("1 values for 2"),
            "{e}"
        );
    }
}
