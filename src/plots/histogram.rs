//! Histograms of one or more series over shared bins.

use plotters::prelude::*;

use super::theme::{draw_series_labels, plot_err, render, style_mesh, tick_label, Figure};
use crate::error::{Error, Result};
use crate::notebook::Svg;

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
    render(fig, |area| {
        let mut chart = ChartBuilder::on(area)
            .margin(12)
            .x_label_area_size(40)
            .y_label_area_size(60)
            .build_cartesian_2d(lo..hi, 0.0..y_max)
            .map_err(plot_err)?;
        let mut mesh = chart.configure_mesh();
        style_mesh(&mut mesh, fig);
        mesh.x_label_formatter(&tick_label).y_label_formatter(&tick_label).draw().map_err(plot_err)?;
        for (k, ((name, _), c)) in series.iter().zip(&counts).enumerate() {
            let color = super::palette(k);
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
            draw_series_labels(&mut chart, SeriesLabelPosition::UpperRight)?;
        }
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_renders_svg_with_labels() {
        let a: Vec<f64> = (0..100).map(|i| i as f64).collect();
        let b: Vec<f64> = (0..50).map(|i| 2.0 * i as f64).collect();
        let fig = Figure::new("Lengths", "residues", "proteins");
        let svg = histogram(&fig, &[("ours", &a), ("paper", &b)], 10).unwrap();
        assert!(svg.0.starts_with("<svg") && svg.0.contains("Lengths") && svg.0.contains("residues"));
        assert!(svg.0.contains("proteins") && svg.0.contains("ours") && svg.0.contains("paper"));
        assert_eq!(svg, histogram(&fig, &[("ours", &a), ("paper", &b)], 10).unwrap());
        assert!(histogram(&Figure::new("", "", ""), &[("a", &[])], 10).is_err());
    }
}
