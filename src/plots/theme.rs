//! What every figure shares: the [`Figure`] labels and size, the colours, tick labels, the quiet grid,
//! input checks and a legend panel drawn beside the plot so that it never covers data.

use plotters::chart::MeshStyle;
use plotters::coord::Shift;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use crate::error::{Error, Result};
use crate::notebook::Svg;

/// Labels and size of a figure.
///
/// ```
/// use protein_lm::plots::{bar_chart, Figure};
/// let fig = Figure::new("Proteins per family", "family", "proteins").size(800, 300);
/// assert_eq!((fig.width, fig.height), (800, 300));
/// let families = ["kinase".to_string(), "globin".to_string()];
/// let svg = bar_chart(&fig, &families, &[120.0, 33.0])?;
/// assert!(svg.0.contains(r#"width="800""#));
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct Figure {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub width: u32,
    pub height: u32,
}

impl Figure {
    pub fn new(title: &str, x_label: &str, y_label: &str) -> Self {
        Self { title: title.into(), x_label: x_label.into(), y_label: y_label.into(), width: 640, height: 400 }
    }

    /// The same labels at another size.
    pub fn size(mut self, width: u32, height: u32) -> Self {
        self.width = width;
        self.height = height;
        self
    }
}

/// A colour palette that stays distinguishable for many classes (Tableau 10, then darker and lighter
/// variants).
pub fn palette(i: usize) -> RGBColor {
    const BASE: [(u8, u8, u8); 10] = [
        (31, 119, 180),
        (255, 127, 14),
        (44, 160, 44),
        (214, 39, 40),
        (148, 103, 189),
        (140, 86, 75),
        (227, 119, 194),
        (127, 127, 127),
        (188, 189, 34),
        (23, 190, 207),
    ];
    let (r, g, b) = BASE[i % 10];
    let shade = match (i / 10) % 3 {
        0 => 1.0,
        1 => 0.6,
        _ => 1.3,
    };
    let f = |c: u8| ((c as f64 * shade).min(255.0)) as u8;
    RGBColor(f(r), f(g), f(b))
}

/// Most classes a figure colours from [`palette`]; with more, [`class_color`] walks a hue wheel.
pub const PALETTE_CLASSES: usize = 30;

/// The colour of class `i` of `n`: [`palette`] up to [`PALETTE_CLASSES`] classes, beyond that a
/// continuous hue wheel stepped by the golden angle (so the first classes, usually the largest and
/// the ones in a capped legend, are far apart in hue), three lightness levels in turn.
pub fn class_color(i: usize, n: usize) -> RGBColor {
    if n <= PALETTE_CLASSES {
        return palette(i);
    }
    const GOLDEN: f64 = 0.618_033_988_749_895;
    let light = [0.45, 0.62, 0.35][i % 3];
    hsl((i as f64 * GOLDEN).fract(), 0.72, light)
}

/// HSL (all in 0..1) to RGB.
pub fn hsl(h: f64, s: f64, l: f64) -> RGBColor {
    let c = (1.0 - (2.0 * l - 1.0).abs()) * s;
    let hp = (h.rem_euclid(1.0)) * 6.0;
    let x = c * (1.0 - (hp % 2.0 - 1.0).abs());
    let (r, g, b) = match hp as u32 {
        0 => (c, x, 0.0),
        1 => (x, c, 0.0),
        2 => (0.0, c, x),
        3 => (0.0, x, c),
        4 => (x, 0.0, c),
        _ => (c, 0.0, x),
    };
    let m = l - c / 2.0;
    let f = |v: f64| ((v + m) * 255.0).round().clamp(0.0, 255.0) as u8;
    RGBColor(f(r), f(g), f(b))
}

/// Grid lines: light grey at labelled ticks, none in between.
pub const GRID: RGBColor = RGBColor(225, 225, 225);

/// Font family of every text.
pub const FONT: &str = "sans-serif";

/// Tick labels without a spurious ".0": integers as integers, other values with up to three
/// significant decimals.
pub fn tick_label(v: &f64) -> String {
    if (v - v.round()).abs() < 1e-9 * v.abs().max(1.0) {
        format!("{}", v.round() as i64)
    } else {
        let s = format!("{v:.3}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// The axis descriptions and the quiet grid every chart uses.
pub fn style_mesh<X: Ranged, Y: Ranged, DB: DrawingBackend>(mesh: &mut MeshStyle<'_, '_, X, Y, DB>, fig: &Figure) {
    mesh.x_desc(fig.x_label.as_str())
        .y_desc(fig.y_label.as_str())
        .bold_line_style(GRID)
        .light_line_style(WHITE)
        .axis_desc_style((FONT, 14));
}

pub(crate) fn plot_err(e: impl std::fmt::Display) -> Error {
    Error::invalid(format!("plot: {e}"))
}

pub(crate) type Area<'a> = DrawingArea<SVGBackend<'a>, Shift>;

/// Draws on a white canvas of the figure's size; `draw` gets the area below the title.
pub(crate) fn render(fig: &Figure, draw: impl FnOnce(&Area<'_>) -> Result<()>) -> Result<Svg> {
    if fig.width < 200 || fig.height < 150 {
        return Err(Error::invalid(format!("figure {}x{} is too small (at least 200x150)", fig.width, fig.height)));
    }
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (fig.width, fig.height)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let area = root.titled(&fig.title, (FONT, 20)).map_err(plot_err)?;
        draw(&area)?;
        root.present().map_err(plot_err)?;
    }
    Ok(Svg(without_default_attributes(&svg)))
}

/// Plotters writes `opacity="1"` and `stroke="none"` on every shape, and both are SVG's defaults:
/// dropping them takes a third off a heatmap's bytes (one rectangle per cell), and notebooks store
/// their figures.
fn without_default_attributes(svg: &str) -> String {
    svg.replace(" opacity=\"1\"", "").replace(" stroke=\"none\"", "")
}

/// An error unless every value is finite.
pub(crate) fn check_finite<'a>(what: &str, values: impl IntoIterator<Item = &'a f64>) -> Result<()> {
    match values.into_iter().position(|v| !v.is_finite()) {
        Some(i) => Err(Error::invalid(format!("{what}: value {i} is not finite"))),
        None => Ok(()),
    }
}

/// `lo..hi` widened by `pad` of its span on each side (a unit span around a single value).
pub(crate) fn padded(lo: f64, hi: f64, pad: f64) -> (f64, f64) {
    if hi - lo <= 1e-12 * lo.abs().max(1.0) {
        return (lo - 1.0, hi + 1.0);
    }
    let d = (hi - lo) * pad;
    (lo - d, hi + d)
}

pub(crate) fn min_max(values: impl IntoIterator<Item = f64>) -> (f64, f64) {
    values.into_iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)))
}

/// Text cut to `max` characters, with an ellipsis when cut.
pub(crate) fn shorten(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        s.to_string()
    } else {
        let mut t: String = s.chars().take(max.saturating_sub(1)).collect();
        t.push('…');
        t
    }
}

/// The in-plot legend of a chart with few series (the crate's one style: translucent white box,
/// light grey border), at `position`.
pub(crate) fn draw_series_labels<'a, DB: DrawingBackend + 'a, CT: plotters::coord::CoordTranslate>(
    chart: &mut ChartContext<'a, DB, CT>,
    position: SeriesLabelPosition,
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    chart
        .configure_series_labels()
        .position(position)
        .label_font((FONT, 12))
        .background_style(WHITE.mix(0.9))
        .border_style(RGBColor(180, 180, 180))
        .draw()
        .map_err(plot_err)
}

/// How a legend entry shows its series.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Swatch {
    Dot,
    Line,
}

/// Legend entries at most; the rest are summarised as "+N more".
pub const LEGEND_CAP: usize = 20;
const LEGEND_FONT: u32 = 12;
const LEGEND_CHARS: usize = 30;

/// Width in pixels of a legend panel for these names (an estimate: about 0.6 em a character).
pub(crate) fn legend_width(names: &[String]) -> u32 {
    let chars = names.iter().take(LEGEND_CAP).map(|n| n.chars().count().min(LEGEND_CHARS)).max().unwrap_or(0);
    let chars = if names.len() > LEGEND_CAP { chars.max(10) } else { chars };
    (chars as f64 * 0.55 * LEGEND_FONT as f64) as u32 + 40
}

/// Splits `area` into the plot and, when `names` is not empty, a legend panel on the right of at
/// most 40% of the width.
pub(crate) fn with_legend_panel<'a>(area: &Area<'a>, names: &[String]) -> (Area<'a>, Area<'a>) {
    let w = area.dim_in_pixel().0;
    let side = if names.is_empty() { 0 } else { legend_width(names).min(w * 2 / 5) };
    area.split_horizontally(w - side)
}

/// A legend down the left edge of `area` (a panel beside the chart), capped at [`LEGEND_CAP`]
/// entries plus a "+N more" line.
pub(crate) fn draw_legend(area: &Area<'_>, entries: &[(String, RGBColor)], swatch: Swatch) -> Result<()> {
    let (_, h) = area.dim_in_pixel();
    let shown = entries.len().min(LEGEND_CAP);
    let lines = shown + usize::from(entries.len() > shown);
    let row = ((h as i32 - 20) / lines.max(1) as i32).clamp(8, 18);
    let style = TextStyle::from((FONT, LEGEND_FONT).into_font()).pos(Pos::new(HPos::Left, VPos::Center));
    let x0 = 8;
    let mut y = 14;
    for (name, color) in &entries[..shown] {
        match swatch {
            Swatch::Dot => area.draw(&Circle::new((x0 + 7, y), 4, color.filled())),
            Swatch::Line => area.draw(&PathElement::new(vec![(x0, y), (x0 + 16, y)], color.stroke_width(2))),
        }
        .map_err(plot_err)?;
        area.draw(&Text::new(shorten(name, LEGEND_CHARS), (x0 + 22, y), style.clone())).map_err(plot_err)?;
        y += row;
    }
    if entries.len() > shown {
        let more = format!("+{} more", entries.len() - shown);
        area.draw(&Text::new(more, (x0 + 22, y), style.color(&RGBColor(90, 90, 90)))).map_err(plot_err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_labels_drop_spurious_decimals() {
        assert_eq!(tick_label(&4500.0), "4500");
        assert_eq!(tick_label(&0.25), "0.25");
        assert_eq!(tick_label(&-2.0), "-2");
    }

    #[test]
    fn many_classes_get_distinct_colours() {
        for n in [10, 30, 64, 200] {
            let mut seen: Vec<RGBColor> = (0..n).map(|i| class_color(i, n)).collect();
            seen.sort_by_key(|c| (c.0, c.1, c.2));
            seen.dedup();
            assert_eq!(seen.len(), n, "{n} classes");
        }
        assert_eq!(hsl(0.0, 1.0, 0.5), RGBColor(255, 0, 0));
    }

    #[test]
    fn shorten_marks_cuts() {
        assert_eq!(shorten("abc", 5), "abc");
        assert_eq!(shorten("abcdef", 4), "abc…");
    }
}
