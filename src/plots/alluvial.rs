//! Parallel sets: how two labellings of the same items correspond, e.g. clusters against protein
//! families (PRoBERTa Fig. 3).

use std::collections::BTreeMap;

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::scatter::labels_by_count;
use super::theme::{class_color, plot_err, render, shorten, Figure, FONT};
use crate::error::{Error, Result};
use crate::notebook::Svg;

/// Two columns of stacked blocks, `left` categories (most frequent on top) and `right` categories
/// (ordered to follow the left ones, which keeps ribbons from crossing), each sized by its count,
/// joined by ribbons as wide as the number of items in both. Ribbons take the colour of their right
/// category. `left[i]` and `right[i]` label the same item; `fig.x_label` and `fig.y_label` head the
/// left and right columns. Blocks too thin for text go unlabelled.
pub fn alluvial(fig: &Figure, left: &[String], right: &[String]) -> Result<Svg> {
    if left.is_empty() || left.len() != right.len() {
        return Err(Error::invalid(format!(
            "alluvial needs one right label per left label and at least one item ({} left, {} right)",
            left.len(),
            right.len()
        )));
    }
    let lc = labels_by_count(left);
    let li: BTreeMap<&str, usize> = lc.iter().enumerate().map(|(i, (l, _))| (l.as_str(), i)).collect();
    let mut flows: BTreeMap<(usize, &str), usize> = BTreeMap::new();
    for (l, r) in left.iter().zip(right) {
        *flows.entry((li[l.as_str()], r.as_str())).or_default() += 1;
    }
    // Right categories by the mean position of their items on the left, then by size and name.
    let mut rc: Vec<(String, usize, f64)> = labels_by_count(right)
        .into_iter()
        .map(|(r, c)| {
            let s: usize = flows.iter().filter(|((_, rr), _)| *rr == r).map(|((i, _), n)| i * n).sum();
            let centre = s as f64 / c as f64;
            (r, c, centre)
        })
        .collect();
    rc.sort_by(|a, b| a.2.total_cmp(&b.2).then_with(|| b.1.cmp(&a.1)).then_with(|| a.0.cmp(&b.0)));
    let ri: BTreeMap<&str, usize> = rc.iter().enumerate().map(|(i, (r, _, _))| (r.as_str(), i)).collect();
    let mut co = vec![vec![0usize; rc.len()]; lc.len()];
    for ((i, r), n) in &flows {
        co[*i][ri[r]] = *n;
    }
    let total = left.len() as f64;
    let nr = rc.len();

    // Layout in unit coordinates, y up: blocks between y = 0 and 1, headers above.
    let layout = |counts: &[usize]| -> Vec<(f64, f64)> {
        let k = counts.len();
        let gap = if k > 1 { (0.25 / (k - 1) as f64).min(0.025) } else { 0.0 };
        let scale = (1.0 - gap * (k.saturating_sub(1)) as f64) / total;
        let mut top = 1.0;
        counts
            .iter()
            .map(|&c| {
                let b = (top, top - c as f64 * scale);
                top = b.1 - gap;
                b
            })
            .collect()
    };
    let lblocks = layout(&lc.iter().map(|c| c.1).collect::<Vec<_>>());
    let rblocks = layout(&rc.iter().map(|c| c.1).collect::<Vec<_>>());
    let lscale = |i: usize| (lblocks[i].0 - lblocks[i].1) / lc[i].1 as f64;
    let rscale = |j: usize| (rblocks[j].0 - rblocks[j].1) / rc[j].1 as f64;
    let (xl0, xl1, xr0, xr1) = (0.31, 0.345, 0.655, 0.69);

    render(fig, |area| {
        let (w, h) = area.dim_in_pixel();
        let mut chart = ChartBuilder::on(area).margin(10).build_cartesian_2d(0.0..1.0, -0.02..1.1).map_err(plot_err)?;
        // Ribbons: stacked inside each left block in right order, inside each right block in left order.
        let mut rtop: Vec<f64> = rblocks.iter().map(|b| b.0).collect();
        for (i, row) in co.iter().enumerate() {
            let mut ltop = lblocks[i].0;
            for (j, &c) in row.iter().enumerate() {
                if c == 0 {
                    continue;
                }
                let (lh, rh) = (c as f64 * lscale(i), c as f64 * rscale(j));
                let (a, b) = (ltop, rtop[j]);
                let steps = 32;
                let curve = |t: f64| t * t * (3.0 - 2.0 * t);
                let mut poly: Vec<(f64, f64)> = (0..=steps)
                    .map(|s| {
                        let t = s as f64 / steps as f64;
                        (xl1 + t * (xr0 - xl1), a + curve(t) * (b - a))
                    })
                    .collect();
                poly.extend((0..=steps).rev().map(|s| {
                    let t = s as f64 / steps as f64;
                    (xl1 + t * (xr0 - xl1), a - lh + curve(t) * (b - rh - (a - lh)))
                }));
                chart.draw_series([Polygon::new(poly, class_color(j, nr).mix(0.45).filled())]).map_err(plot_err)?;
                ltop -= lh;
                rtop[j] -= rh;
            }
        }
        let dark = RGBColor(70, 70, 70);
        chart
            .draw_series(lblocks.iter().map(|&(t, b)| Rectangle::new([(xl0, b), (xl1, t)], dark.filled())))
            .map_err(plot_err)?;
        chart
            .draw_series(
                rblocks
                    .iter()
                    .enumerate()
                    .map(|(j, &(t, b))| Rectangle::new([(xr0, b), (xr1, t)], class_color(j, nr).filled())),
            )
            .map_err(plot_err)?;
        // Labels where a block is tall enough for a line of text (smaller text on thin blocks).
        let px_per_unit = (h as f64 - 20.0) / 1.12;
        let max_chars = ((xl0 - 0.02) * w as f64 / (0.55 * 12.0)) as usize;
        let font = |px: f64, h: HPos| {
            let size = if px >= 12.0 { 12 } else { 10 };
            TextStyle::from((FONT, size).into_font()).pos(Pos::new(h, VPos::Center))
        };
        let mut labels = Vec::new();
        for (i, &(t, b)) in lblocks.iter().enumerate() {
            let px = (t - b) * px_per_unit;
            if px >= 9.0 {
                let text = shorten(&format!("{} ({})", lc[i].0, lc[i].1), max_chars);
                labels.push(Text::new(text, (xl0 - 0.01, (t + b) / 2.0), font(px, HPos::Right)));
            }
        }
        for (j, &(t, b)) in rblocks.iter().enumerate() {
            let px = (t - b) * px_per_unit;
            if px >= 9.0 {
                let text = shorten(&format!("{} ({})", rc[j].0, rc[j].1), max_chars);
                labels.push(Text::new(text, (xr1 + 0.01, (t + b) / 2.0), font(px, HPos::Left)));
            }
        }
        let head = TextStyle::from((FONT, 14).into_font()).pos(Pos::new(HPos::Center, VPos::Center));
        labels.push(Text::new(fig.x_label.clone(), ((xl0 + xl1) / 2.0, 1.06), head.clone()));
        labels.push(Text::new(fig.y_label.clone(), ((xr0 + xr1) / 2.0, 1.06), head));
        chart.draw_series(labels).map_err(plot_err)?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items() -> (Vec<String>, Vec<String>) {
        let mut l = Vec::new();
        let mut r = Vec::new();
        for k in 0..60usize {
            l.push(format!("cluster {}", k % 5));
            r.push(if k % 5 == 0 && k % 2 == 0 { "kinase".to_string() } else { format!("family {}", k % 4) });
        }
        (l, r)
    }

    #[test]
    fn alluvial_renders_columns_and_labels() {
        let (l, r) = items();
        let fig = Figure::new("Clusters vs families", "cluster", "family");
        let svg = alluvial(&fig, &l, &r).unwrap();
        for s in ["Clusters vs families", "cluster", "family", "cluster 0 (12)", "kinase (6)", "<polygon"] {
            assert!(svg.0.contains(s), "{s}");
        }
        assert_eq!(svg, alluvial(&fig, &l, &r).unwrap());
    }

    #[test]
    fn alluvial_rejects_bad_input() {
        let fig = Figure::new("t", "x", "y");
        assert!(alluvial(&fig, &[], &[]).is_err());
        assert!(alluvial(&fig, &["a".into()], &[]).is_err());
        assert!(alluvial(&fig, &["a".into()], &["b".into()]).is_ok());
    }
}
