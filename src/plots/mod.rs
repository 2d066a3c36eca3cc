//! Figures as plain functions of plain data, rendered with plotters to SVG ([`Svg`] shows inline in
//! notebooks and saves to files).

use plotters::prelude::*;

use crate::error::{Error, Result};
use crate::notebook::Svg;

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

fn plot_err(e: impl std::fmt::Display) -> Error {
    Error::invalid(format!("plot: {e}"))
}

/// Labels and size of a figure.
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
}

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

/// Histogram of one or more series over shared, equal-width bins, drawn as overlaid step outlines
/// with a legend (the first series also filled lightly). Integer data spanning at most 200 values
/// (lengths, counts) gets one bin per integer, centred on it, whatever `bins` says.
pub fn histogram(fig: &Figure, series: &[(&str, &[f64])], bins: usize) -> Result<Svg> {
    let all: Vec<f64> = series.iter().flat_map(|(_, v)| v.iter().copied()).filter(|v| v.is_finite()).collect();
    if all.is_empty() || bins == 0 {
        return Err(Error::invalid("histogram needs finite values and at least one bin"));
    }
    let mut lo = all.iter().copied().fold(f64::INFINITY, f64::min);
    let mut hi = all.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let integers = all.iter().all(|v| v.fract() == 0.0) && hi - lo <= 200.0;
    let bins = if integers {
        lo -= 0.5;
        hi += 0.5;
        (hi - lo).round() as usize
    } else {
        if hi <= lo {
            hi = lo + 1.0;
        }
        bins
    };
    let width = (hi - lo) / bins as f64;
    let counts: Vec<Vec<usize>> = series
        .iter()
        .map(|(_, values)| {
            let mut c = vec![0usize; bins];
            for v in values.iter().filter(|v| v.is_finite()) {
                c[(((v - lo) / width) as usize).min(bins - 1)] += 1;
            }
            c
        })
        .collect();
    let y_max = counts.iter().flatten().copied().max().unwrap_or(1).max(1) as f64 * 1.05;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (fig.width, fig.height)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let mut chart = ChartBuilder::on(&root)
            .caption(&fig.title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(lo..hi, 0.0..y_max)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc(&fig.x_label)
            .y_desc(&fig.y_label)
            .x_label_formatter(&tick_label)
            .y_label_formatter(&tick_label)
            .bold_line_style(RGBColor(225, 225, 225))
            .light_line_style(WHITE)
            .draw()
            .map_err(plot_err)?;
        for (k, ((name, _), c)) in series.iter().zip(&counts).enumerate() {
            let color = palette(k);
            if k == 0 {
                chart
                    .draw_series(c.iter().enumerate().map(|(i, &n)| {
                        let x0 = lo + i as f64 * width;
                        Rectangle::new([(x0, 0.0), (x0 + width, n as f64)], color.mix(0.25).filled())
                    }))
                    .map_err(plot_err)?;
            }
            let steps: Vec<(f64, f64)> = c
                .iter()
                .enumerate()
                .flat_map(|(i, &n)| {
                    let x0 = lo + i as f64 * width;
                    [(x0, n as f64), (x0 + width, n as f64)]
                })
                .collect();
            chart
                .draw_series(LineSeries::new(steps, color.stroke_width(2)))
                .map_err(plot_err)?
                .label(name.to_string())
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        }
        if series.len() > 1 || !series[0].0.is_empty() {
            chart
                .configure_series_labels()
                .background_style(WHITE.mix(0.85))
                .border_style(BLACK)
                .draw()
                .map_err(plot_err)?;
        }
        root.present().map_err(plot_err)?;
    }
    Ok(Svg(svg))
}

/// Vertical bars, one per category.
pub fn bar_chart(fig: &Figure, categories: &[String], values: &[f64]) -> Result<Svg> {
    if categories.len() != values.len() || values.is_empty() {
        return Err(Error::invalid("bar_chart needs as many values as categories, at least one"));
    }
    let y_max = values.iter().copied().fold(0.0, f64::max).max(1e-12) * 1.1;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (fig.width, fig.height)).into_drawing_area();
        root.fill(&WHITE).map_err(plot_err)?;
        let n = values.len();
        let mut chart = ChartBuilder::on(&root)
            .caption(&fig.title, ("sans-serif", 20))
            .margin(12)
            .x_label_area_size(50)
            .y_label_area_size(60)
            .build_cartesian_2d((0..n).into_segmented(), 0.0..y_max)
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc(&fig.x_label)
            .y_desc(&fig.y_label)
            .x_labels(n.min(30))
            .y_label_formatter(&tick_label)
            .bold_line_style(RGBColor(225, 225, 225))
            .light_line_style(WHITE)
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => categories.get(*i).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .draw()
            .map_err(plot_err)?;
        chart
            .draw_series(values.iter().enumerate().map(|(i, &v)| {
                Rectangle::new([(SegmentValue::Exact(i), 0.0), (SegmentValue::Exact(i + 1), v)], palette(0).filled())
            }))
            .map_err(plot_err)?;
        root.present().map_err(plot_err)?;
    }
    Ok(Svg(svg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_renders_svg_with_labels() {
        let a: Vec<f64> = (0..100).map(|i| i as f64).collect();
        let b: Vec<f64> = (0..50).map(|i| 2.0 * i as f64).collect();
        let svg = histogram(&Figure::new("Lengths", "residues", "proteins"), &[("a", &a), ("b", &b)], 10).unwrap();
        assert!(svg.0.starts_with("<svg") && svg.0.contains("Lengths") && svg.0.contains("residues"));
        assert!(histogram(&Figure::new("", "", ""), &[("a", &[])], 10).is_err());
    }

    #[test]
    fn tick_labels_drop_spurious_decimals() {
        assert_eq!(tick_label(&4500.0), "4500");
        assert_eq!(tick_label(&0.25), "0.25");
        assert_eq!(tick_label(&-2.0), "-2");
    }

    #[test]
    fn bar_chart_checks_lengths() {
        let fig = Figure::new("t", "x", "y");
        assert!(bar_chart(&fig, &["a".into()], &[1.0, 2.0]).is_err());
        assert!(bar_chart(&fig, &["a".into(), "b".into()], &[1.0, 2.0]).unwrap().0.contains("<svg"));
    }
}
