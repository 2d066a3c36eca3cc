//! Lines with markers: a metric against training fraction (PRoBERTa Fig. 7), training curves
//! (ProteinBERT Fig. 2, log x), a score against the amount of pretraining (ProteinBERT Fig. 3).

use plotters::coord::ranged1d::{AsRangedCoord, ValueFormatter};
use plotters::prelude::*;

use super::theme::{
    check_finite, class_color, draw_legend, min_max, padded, plot_err, render, style_mesh, tick_label,
    with_legend_panel, Area, Figure, Swatch,
};
use crate::error::{Error, Result};
use crate::notebook::Svg;

/// One line with circle markers per series `(name, points)`, a legend beside the plot when there
/// are several named series. With `log_x` the x axis is logarithmic (every x must be positive).
pub fn line_series(fig: &Figure, series: &[(&str, &[(f64, f64)])], log_x: bool) -> Result<Svg> {
    if series.is_empty() || series.iter().any(|(_, p)| p.is_empty()) {
        return Err(Error::invalid("line_series needs at least one series, each with at least one point"));
    }
    for (name, pts) in series {
        check_finite(&format!("line_series `{name}` x"), pts.iter().map(|p| &p.0))?;
        check_finite(&format!("line_series `{name}` y"), pts.iter().map(|p| &p.1))?;
        if log_x && pts.iter().any(|p| p.0 <= 0.0) {
            return Err(Error::invalid(format!("line_series `{name}`: a log x axis needs positive x")));
        }
    }
    let all = || series.iter().flat_map(|(_, p)| p.iter());
    let (x0, x1) = min_max(all().map(|p| p.0));
    let (y0, y1) = padded(min_max(all().map(|p| p.1)).0, min_max(all().map(|p| p.1)).1, 0.05);
    let legend = series.len() > 1 || !series[0].0.is_empty();
    let names: Vec<String> = if legend { series.iter().map(|(n, _)| n.to_string()).collect() } else { Vec::new() };
    render(fig, |area| {
        let (plot, side) = with_legend_panel(area, &names);
        if log_x {
            let (x0, x1) = if x1 / x0 < 1.0 + 1e-9 { (x0 / 2.0, x1 * 2.0) } else { (x0 / 1.15, x1 * 1.15) };
            match few_distinct(all().map(|p| p.0)) {
                // A handful of x values (length buckets 512, 1,024, …): a tick on each of them,
                // where plotters' own log ticks would label at most one.
                Some(ticks) => {
                    draw(&plot, fig, series, (x0..x1).log_scale().with_key_points(ticks), y0..y1, &axis_label)?
                }
                None => draw(&plot, fig, series, (x0..x1).log_scale(), y0..y1, &log_label)?,
            }
        } else {
            let (x0, x1) = padded(x0, x1, 0.03);
            draw(&plot, fig, series, x0..x1, y0..y1, &axis_label)?;
        }
        if legend {
            let n = series.len();
            let entries: Vec<(String, RGBColor)> =
                names.iter().enumerate().map(|(i, s)| (s.clone(), class_color(i, n))).collect();
            draw_legend(&side.margin(12, 0, 0, 0), &entries, Swatch::Line)?;
        }
        Ok(())
    })
}

fn draw<X>(
    plot: &Area<'_>,
    fig: &Figure,
    series: &[(&str, &[(f64, f64)])],
    x: X,
    y: std::ops::Range<f64>,
    x_label: &dyn Fn(&f64) -> String,
) -> Result<()>
where
    X: AsRangedCoord<Value = f64>,
    X::CoordDescType: ValueFormatter<f64>,
{
    let mut chart = ChartBuilder::on(plot)
        .margin(12)
        .x_label_area_size(40)
        .y_label_area_size(60)
        .build_cartesian_2d(x, y)
        .map_err(plot_err)?;
    let mut mesh = chart.configure_mesh();
    style_mesh(&mut mesh, fig);
    mesh.x_label_formatter(x_label).y_label_formatter(&tick_label).draw().map_err(plot_err)?;
    let n = series.len();
    let marker = if series.iter().map(|(_, p)| p.len()).max().unwrap_or(0) > 60 { 2 } else { 3 };
    for (k, (_, pts)) in series.iter().enumerate() {
        let color = class_color(k, n);
        chart.draw_series(LineSeries::new(pts.iter().copied(), color.stroke_width(2))).map_err(plot_err)?;
        chart.draw_series(pts.iter().map(|&p| Circle::new(p, marker, color.filled()))).map_err(plot_err)?;
    }
    Ok(())
}

/// The distinct values, ascending, when there are at most 12 of them, each at least 1.5 times the
/// one before (so that their labels do not crowd on a log axis).
fn few_distinct(values: impl Iterator<Item = f64>) -> Option<Vec<f64>> {
    let mut v: Vec<f64> = values.collect();
    v.sort_by(f64::total_cmp);
    v.dedup();
    (v.len() <= 12 && v.windows(2).all(|w| w[1] >= 1.5 * w[0])).then_some(v)
}

/// Tick labels for x: large values in engineering style (6.8e8), the rest as [`tick_label`].
fn axis_label(v: &f64) -> String {
    if v.abs() >= 1e5 {
        let e = v.abs().log10().floor() as i32;
        let m = v / 10f64.powi(e);
        format!("{}e{e}", tick_label(&((m * 100.0).round() / 100.0)))
    } else {
        tick_label(v)
    }
}

/// Log-axis tick labels only at 1, 2 and 5 times a power of ten, so they never crowd.
fn log_label(v: &f64) -> String {
    let m = v / 10f64.powf(v.log10().floor());
    if [1.0, 2.0, 5.0, 10.0].iter().any(|k| (m - k).abs() < 1e-6) {
        axis_label(v)
    } else {
        String::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_render_names_and_labels() {
        let a: Vec<(f64, f64)> = (1..=10).map(|i| (i as f64 * 1e7, 3.0 / i as f64)).collect();
        let b: Vec<(f64, f64)> = (1..=10).map(|i| (i as f64 * 1e7, 2.5 / i as f64)).collect();
        let fig = Figure::new("Pretraining loss", "samples", "token loss");
        for log_x in [false, true] {
            let svg = line_series(&fig, &[("length 128", &a), ("length 512", &b)], log_x).unwrap();
            for s in ["Pretraining loss", "samples", "token loss", "length 128", "length 512"] {
                assert!(svg.0.contains(s), "{s}");
            }
            assert_eq!(svg, line_series(&fig, &[("length 128", &a), ("length 512", &b)], log_x).unwrap());
        }
        assert_eq!(axis_label(&68e7), "6.8e8");
        // Length buckets on a log axis: every bucket is labelled.
        let buckets: Vec<(f64, f64)> = [512.0, 1024.0, 2048.0, 4096.0].iter().map(|&x| (x, 0.7)).collect();
        let svg = line_series(&fig, &[("", &buckets)], true).unwrap().0;
        for label in ["\n512\n", "\n1024\n", "\n2048\n", "\n4096\n"] {
            assert!(svg.contains(label), "{label}");
        }
        assert_eq!(few_distinct([3.0, 1.0, 3.0].into_iter()), Some(vec![1.0, 3.0]));
        assert_eq!(few_distinct((0..13).map(|k| 2f64.powi(k))), None, "too many");
        assert_eq!(few_distinct([1e7, 2e7, 2.5e7].into_iter()), None, "too close on a log axis");
        assert_eq!(log_label(&2e8), "2e8");
        assert_eq!(log_label(&3e8), "");
    }

    #[test]
    fn lines_reject_bad_input() {
        let fig = Figure::new("t", "x", "y");
        assert!(line_series(&fig, &[], false).is_err());
        assert!(line_series(&fig, &[("a", &[])], false).is_err());
        assert!(line_series(&fig, &[("a", &[(0.0, f64::NAN)])], false).is_err());
        assert!(line_series(&fig, &[("a", &[(0.0, 1.0)])], true).is_err());
        assert!(line_series(&fig, &[("a", &[(1.0, 1.0)])], true).is_ok());
    }
}
