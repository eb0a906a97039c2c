//! PNG plots of the benchmark's scaling curves and of the HTTP comparison (plotters, with
//! Debian's DejaVu Sans for the text).

use std::{path::Path, sync::Once};

use anyhow::{Context, Result, anyhow};
use plotters::prelude::*;

/// The font the plots are lettered with (Debian's fonts-dejavu-core).
const FONT: &str = "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf";
const SIZE: (u32, u32) = (900, 560);

/// One line of a chart.
#[derive(Clone, Debug)]
pub struct Curve {
    /// Legend text.
    pub label: String,
    /// (x, y) points in x order.
    pub points: Vec<(f64, f64)>,
}

/// Axes of a line chart: both logarithmic when asked.
pub struct Axes<'a> {
    /// Chart title.
    pub title: &'a str,
    /// X axis description.
    pub x: &'a str,
    /// Y axis description.
    pub y: &'a str,
    /// Logarithmic y axis (x is always logarithmic).
    pub log_y: bool,
}

fn register_font() -> Result<()> {
    static ONCE: Once = Once::new();
    let mut result = Ok(());
    ONCE.call_once(|| {
        result = std::fs::read(FONT)
            .with_context(|| format!("reading {FONT} (fonts-dejavu-core)"))
            .and_then(|bytes| {
                plotters::style::register_font(
                    "sans-serif",
                    FontStyle::Normal,
                    Box::leak(bytes.into_boxed_slice()),
                )
                .map_err(|_| anyhow!("{FONT} is not a usable font"))
            });
    });
    result
}

/// The smallest and largest of `values`, widened by `margin` (a factor) on each side.
fn span(values: impl Iterator<Item = f64>, margin: f64) -> (f64, f64) {
    let (lo, hi) = values.fold((f64::MAX, f64::MIN), |(lo, hi), v| (lo.min(v), hi.max(v)));
    (lo / margin, hi * margin)
}

fn plot_err<E: std::fmt::Debug>(e: E) -> anyhow::Error {
    anyhow!("plotting: {e:?}")
}

/// Draws the chart's legend at `position`.
fn legend<'a, DB: DrawingBackend + 'a, CT: CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> Result<()> {
    chart
        .configure_series_labels()
        .background_style(WHITE.mix(0.85))
        .border_style(BLACK)
        .position(position)
        .draw()
        .map_err(plot_err)
}

/// Draws `curves` over a logarithmic x axis into the PNG at `path`.
pub fn lines(path: &Path, axes: &Axes, curves: &[Curve]) -> Result<()> {
    register_font()?;
    let points = || curves.iter().flat_map(|c| c.points.iter());
    let (x0, x1) = span(points().map(|p| p.0), 1.5);
    let (y0, y1) = if axes.log_y {
        span(points().map(|p| p.1), 1.5)
    } else {
        (0.0, span(points().map(|p| p.1), 1.15).1)
    };
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let mut builder = ChartBuilder::on(&root);
    builder
        .caption(axes.title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(44)
        .y_label_area_size(70);
    let style = |i: usize| Palette99::pick(i).stroke_width(2);
    macro_rules! draw {
        ($chart:expr) => {{
            let mut chart = $chart.map_err(plot_err)?;
            chart
                .configure_mesh()
                .x_desc(axes.x)
                .y_desc(axes.y)
                .draw()
                .map_err(plot_err)?;
            for (i, c) in curves.iter().enumerate() {
                chart
                    .draw_series(LineSeries::new(c.points.iter().copied(), style(i)))
                    .map_err(plot_err)?
                    .label(&c.label)
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 18, y)], style(i)));
                chart
                    .draw_series(
                        c.points
                            .iter()
                            .map(|&p| Circle::new(p, 3, Palette99::pick(i).filled())),
                    )
                    .map_err(plot_err)?;
            }
            legend(&mut chart, SeriesLabelPosition::UpperLeft)?;
        }};
    }
    if axes.log_y {
        draw!(builder.build_cartesian_2d((x0..x1).log_scale(), (y0..y1).log_scale()));
    } else {
        draw!(builder.build_cartesian_2d((x0..x1).log_scale(), y0..y1));
    }
    root.present().map_err(plot_err)?;
    Ok(())
}

/// Draws groups of bars (one colour per bar name, shared by the groups) into `path`.
pub fn bars(
    path: &Path,
    title: &str,
    y: &str,
    groups: &[(&str, Vec<(String, f64)>)],
) -> Result<()> {
    register_font()?;
    let per_group = groups.iter().map(|g| g.1.len()).max().unwrap_or(1);
    let width = (per_group + 1) as f64;
    let top = span(groups.iter().flat_map(|g| g.1.iter().map(|b| b.1)), 1.2).1;
    let root = BitMapBackend::new(path, SIZE).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 22))
        .margin(12)
        .x_label_area_size(30)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..width * groups.len() as f64, 0.0..top)
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .disable_x_mesh()
        .x_labels(0)
        .y_desc(y)
        .draw()
        .map_err(plot_err)?;
    for (g, (name, bars)) in groups.iter().enumerate() {
        let left = g as f64 * width + 0.5;
        for (i, (label, value)) in bars.iter().enumerate() {
            let x = left + i as f64;
            let series = chart
                .draw_series(std::iter::once(Rectangle::new(
                    [(x, 0.0), (x + 0.9, *value)],
                    Palette99::pick(i).filled(),
                )))
                .map_err(plot_err)?;
            if g == 0 {
                series.label(label).legend(move |(x, y)| {
                    Rectangle::new([(x, y - 6), (x + 14, y + 6)], Palette99::pick(i).filled())
                });
            }
            chart
                .draw_series(std::iter::once(Text::new(
                    format!("{value:.0}"),
                    (x + 0.1, *value + top * 0.01),
                    ("sans-serif", 14),
                )))
                .map_err(plot_err)?;
        }
        let highest = bars.iter().map(|b| b.1).fold(0.0, f64::max);
        chart
            .draw_series(std::iter::once(Text::new(
                name.to_string(),
                (left, highest + top * 0.07),
                ("sans-serif", 16),
            )))
            .map_err(plot_err)?;
    }
    legend(&mut chart, SeriesLabelPosition::UpperRight)?;
    root.present().map_err(plot_err)?;
    Ok(())
}
