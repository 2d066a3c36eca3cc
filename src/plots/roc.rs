//! ROC curves of several models with the chance diagonal (PRoBERTa Figs. 5–6).

use plotters::prelude::*;

use super::theme::{check_finite, draw_series_labels, palette, plot_err, render, style_mesh, tick_label, Figure};
use crate::error::{Error, Result};
use crate::notebook::Svg;

/// One ROC curve per model: `(name, false-positive rates, true-positive rates, AUC)`, the legend
/// reading "name (AUC 0.975)", the chance diagonal dashed. Rates must lie in 0..=1.
pub fn roc_curves(fig: &Figure, curves: &[(&str, &[f64], &[f64], f64)]) -> Result<Svg> {
    if curves.is_empty() {
        return Err(Error::invalid("roc_curves needs at least one curve"));
    }
    for (name, fpr, tpr, auc) in curves {
        if fpr.is_empty() || fpr.len() != tpr.len() {
            return Err(Error::invalid(format!(
                "roc_curves `{name}`: {} false-positive and {} true-positive rates (need as many, at least one)",
                fpr.len(),
                tpr.len()
            )));
        }
        check_finite(&format!("roc_curves `{name}` fpr"), fpr.iter())?;
        check_finite(&format!("roc_curves `{name}` tpr"), tpr.iter())?;
        check_finite(&format!("roc_curves `{name}` auc"), [auc])?;
        if fpr.iter().chain(tpr.iter()).any(|v| !(0.0..=1.0).contains(v)) {
            return Err(Error::invalid(format!("roc_curves `{name}`: rates must lie in 0..=1")));
        }
    }
    render(fig, |area| {
        let mut chart = ChartBuilder::on(area)
            .margin(12)
            .margin_right(24)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..1.0, 0.0..1.0)
            .map_err(plot_err)?;
        let mut mesh = chart.configure_mesh();
        style_mesh(&mut mesh, fig);
        mesh.x_label_formatter(&tick_label).y_label_formatter(&tick_label).draw().map_err(plot_err)?;
        let grey = RGBColor(150, 150, 150);
        chart.draw_series(DashedLineSeries::new([(0.0, 0.0), (1.0, 1.0)], 6, 4, grey.into())).map_err(plot_err)?;
        for (k, (name, fpr, tpr, auc)) in curves.iter().enumerate() {
            let color = palette(k);
            let pts: Vec<(f64, f64)> = fpr.iter().copied().zip(tpr.iter().copied()).collect();
            chart
                .draw_series(LineSeries::new(pts, color.stroke_width(2)))
                .map_err(plot_err)?
                .label(format!("{name} (AUC {auc:.3})"))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
        }
        chart
            .draw_series(std::iter::once(PathElement::new(vec![(0.0, 0.0)], grey)))
            .map_err(plot_err)?
            .label("chance")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 6, y), (x + 10, y), (x + 18, y)], grey));
        draw_series_labels(&mut chart, SeriesLabelPosition::LowerRight)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roc_renders_auc_in_legend() {
        let fpr = [0.0, 0.05, 0.2, 1.0];
        let good = [0.0, 0.8, 0.95, 1.0];
        let weak = [0.0, 0.3, 0.6, 1.0];
        let fig = Figure::new("Conservative PPI", "false positive rate", "true positive rate");
        let curves = [("PRoBERTa", &fpr[..], &good[..], 0.9751), ("baseline", &fpr[..], &weak[..], 0.7)];
        let svg = roc_curves(&fig, &curves).unwrap();
        for s in ["Conservative PPI", "false positive rate", "true positive rate", "PRoBERTa (AUC 0.975)"] {
            assert!(svg.0.contains(s), "{s}");
        }
        assert!(svg.0.contains("baseline (AUC 0.700)") && svg.0.contains("chance"));
        assert_eq!(svg, roc_curves(&fig, &curves).unwrap());
    }

    #[test]
    fn roc_rejects_bad_input() {
        let fig = Figure::new("t", "x", "y");
        assert!(roc_curves(&fig, &[]).is_err());
        assert!(roc_curves(&fig, &[("a", &[0.0, 1.0], &[1.0], 0.5)]).is_err());
        assert!(roc_curves(&fig, &[("a", &[0.0, f64::NAN], &[0.0, 1.0], 0.5)]).is_err());
        assert!(roc_curves(&fig, &[("a", &[0.0, 1.0], &[0.0, 1.0], f64::NAN)]).is_err());
        assert!(roc_curves(&fig, &[("a", &[0.0, 2.0], &[0.0, 1.0], 0.5)]).is_err());
    }
}
