//! Points coloured by label, e.g. the first two principal components of embeddings coloured by
//! protein family (PRoBERTa Fig. 2).

use std::collections::BTreeMap;

use plotters::prelude::*;

use super::theme::{
    check_finite, class_color, draw_legend, min_max, padded, plot_err, render, style_mesh, tick_label,
    with_legend_panel, Figure, Swatch,
};
use crate::error::{Error, Result};
use crate::notebook::Svg;

/// Labels ordered by how many points carry them (most first, then by name): the order of colours
/// and of legend entries.
pub(crate) fn labels_by_count(labels: &[String]) -> Vec<(String, usize)> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for l in labels {
        *counts.entry(l.as_str()).or_default() += 1;
    }
    let mut v: Vec<(String, usize)> = counts.into_iter().map(|(l, n)| (l.to_string(), n)).collect();
    v.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    v
}

/// Scatter plot of `points`, each coloured by its label, with a legend beside the plot (largest
/// classes first, at most [`LEGEND_CAP`](super::LEGEND_CAP) entries then "+N more"). Beyond 30
/// labels the colours walk a hue wheel.
pub fn scatter_by_label(fig: &Figure, points: &[(f64, f64)], labels: &[String]) -> Result<Svg> {
    if points.is_empty() || points.len() != labels.len() {
        return Err(Error::invalid(format!(
            "scatter_by_label needs one label per point and at least one point ({} points, {} labels)",
            points.len(),
            labels.len()
        )));
    }
    check_finite("scatter_by_label x", points.iter().map(|p| &p.0))?;
    check_finite("scatter_by_label y", points.iter().map(|p| &p.1))?;
    let classes = labels_by_count(labels);
    let n = classes.len();
    let index: BTreeMap<&str, usize> = classes.iter().enumerate().map(|(i, (l, _))| (l.as_str(), i)).collect();
    let (x0, x1) = min_max(points.iter().map(|p| p.0));
    let (y0, y1) = min_max(points.iter().map(|p| p.1));
    let (x0, x1) = padded(x0, x1, 0.05);
    let (y0, y1) = padded(y0, y1, 0.05);
    let show_legend = n > 1 || !classes[0].0.is_empty();
    let entries: Vec<(String, RGBColor)> = if show_legend {
        // Counts say how large each class is; with one point per label (one per task) they say nothing.
        let counted = classes.iter().any(|(_, c)| *c > 1);
        classes
            .iter()
            .enumerate()
            .map(|(i, (l, c))| (if counted { format!("{l} ({c})") } else { l.clone() }, class_color(i, n)))
            .collect()
    } else {
        Vec::new()
    };
    let names: Vec<String> = entries.iter().map(|e| e.0.clone()).collect();
    render(fig, |area| {
        let (plot, side) = with_legend_panel(area, &names);
        let mut chart = ChartBuilder::on(&plot)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(x0..x1, y0..y1)
            .map_err(plot_err)?;
        let mut mesh = chart.configure_mesh();
        style_mesh(&mut mesh, fig);
        mesh.x_label_formatter(&tick_label).y_label_formatter(&tick_label).draw().map_err(plot_err)?;
        let radius = if points.len() > 2000 { 2 } else { 3 };
        chart
            .draw_series(
                points.iter().zip(labels).map(|(&(x, y), l)| {
                    Circle::new((x, y), radius, class_color(index[l.as_str()], n).mix(0.75).filled())
                }),
            )
            .map_err(plot_err)?;
        if show_legend {
            draw_legend(&side.margin(12, 0, 0, 0), &entries, Swatch::Dot)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n_classes: usize, per: usize) -> (Vec<(f64, f64)>, Vec<String>) {
        let mut pts = Vec::new();
        let mut labels = Vec::new();
        for c in 0..n_classes {
            for k in 0..per {
                let a = c as f64 * 0.7 + k as f64 * 0.05;
                pts.push((a.cos() * (1.0 + c as f64), a.sin() * (1.0 + k as f64 * 0.1)));
                labels.push(format!("family {c}"));
            }
        }
        (pts, labels)
    }

    #[test]
    fn scatter_renders_labels_and_legend() {
        let (pts, labels) = data(7, 30);
        let fig = Figure::new("PCA of embeddings", "PC 1", "PC 2");
        let svg = scatter_by_label(&fig, &pts, &labels).unwrap();
        for s in ["PCA of embeddings", "PC 1", "PC 2", "family 0 (30)", "family 6 (30)"] {
            assert!(svg.0.contains(s), "{s}");
        }
        assert_eq!(svg, scatter_by_label(&fig, &pts, &labels).unwrap());
    }

    #[test]
    fn one_point_per_label_is_named_without_a_count() {
        let (pts, labels) = data(4, 1);
        let svg = scatter_by_label(&Figure::new("t", "x", "y"), &pts, &labels).unwrap().0;
        assert!(svg.contains("family 3") && !svg.contains("family 3 (1)"), "no count of one");
    }

    #[test]
    fn scatter_caps_the_legend() {
        let (pts, labels) = data(45, 3);
        let svg = scatter_by_label(&Figure::new("t", "x", "y"), &pts, &labels).unwrap();
        assert!(svg.0.contains("+25 more"));
        assert!(!svg.0.contains("family 44 ("));
    }

    #[test]
    fn scatter_rejects_bad_input() {
        let fig = Figure::new("t", "x", "y");
        assert!(scatter_by_label(&fig, &[], &[]).is_err());
        assert!(scatter_by_label(&fig, &[(0.0, 1.0)], &[]).is_err());
        assert!(scatter_by_label(&fig, &[(f64::NAN, 1.0)], &["a".into()]).is_err());
        assert!(scatter_by_label(&fig, &[(0.0, 1.0)], &["a".into()]).is_ok());
    }
}
