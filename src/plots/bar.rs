//! Bar charts, one bar per category.

use plotters::prelude::*;

use super::theme::{check_finite, plot_err, render, style_mesh, tick_label, Figure};
use crate::error::{Error, Result};
use crate::notebook::Svg;

/// Vertical bars, one per category.
pub fn bar_chart(fig: &Figure, categories: &[String], values: &[f64]) -> Result<Svg> {
    if categories.len() != values.len() || values.is_empty() {
        return Err(Error::invalid("bar_chart needs as many values as categories, at least one"));
    }
    check_finite("bar_chart", values)?;
    let y_max = values.iter().copied().fold(0.0, f64::max).max(1e-12) * 1.1;
    let y_min = values.iter().copied().fold(0.0, f64::min) * 1.1;
    render(fig, |area| {
        let n = values.len();
        let mut chart = ChartBuilder::on(area)
            .margin(12)
            .x_label_area_size(50)
            .y_label_area_size(60)
            // A discrete range is inclusive in plotters: 0..n − 1 gives n segments (0..n gave an
            // empty one at the right).
            .build_cartesian_2d((0..n - 1).into_segmented(), y_min..y_max)
            .map_err(plot_err)?;
        let mut mesh = chart.configure_mesh();
        style_mesh(&mut mesh, fig);
        mesh.x_labels(n.min(30))
            .y_label_formatter(&tick_label)
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(i) => categories.get(*i).cloned().unwrap_or_default(),
                _ => String::new(),
            })
            .draw()
            .map_err(plot_err)?;
        chart
            .draw_series(values.iter().enumerate().map(|(i, &v)| {
                let mut bar = Rectangle::new(
                    [(SegmentValue::Exact(i), 0.0), (SegmentValue::Exact(i + 1), v)],
                    super::palette(0).filled(),
                );
                // A gap between neighbouring bars, narrower when there are many.
                let gap = if n <= 30 { 6 } else { 1 };
                bar.set_margin(0, 0, gap, gap);
                bar
            }))
            .map_err(plot_err)?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_chart_checks_lengths() {
        let fig = Figure::new("Counts", "family", "proteins");
        assert!(bar_chart(&fig, &["a".into()], &[1.0, 2.0]).is_err());
        assert!(bar_chart(&fig, &["a".into()], &[f64::NAN]).is_err());
        let svg = bar_chart(&fig, &["kinase".into(), "b".into()], &[1.0, 2.0]).unwrap();
        assert!(svg.0.contains("<svg") && svg.0.contains("Counts") && svg.0.contains("family"));
        assert!(svg.0.contains("proteins") && svg.0.contains("kinase"));
        assert_eq!(svg, bar_chart(&fig, &["kinase".into(), "b".into()], &[1.0, 2.0]).unwrap());
    }
}
