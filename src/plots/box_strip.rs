//! Box plots with the points jittered on top: NMI over repeated runs against a random baseline
//! (PRoBERTa Fig. 4), a score per length bucket (ProteinBERT Fig. 4).
//!
//! ```
//! use protein_lm::plots::BoxStats;
//! // matplotlib's numbers: quartiles by linear interpolation, whiskers within 1.5 IQR.
//! let stats = BoxStats::of(&[1.0, 2.0, 3.0, 4.0, 100.0]).unwrap();
//! assert_eq!((stats.q1, stats.median, stats.q3), (2.0, 3.0, 4.0));
//! assert_eq!((stats.whisker_low, stats.whisker_high), (1.0, 4.0)); // 100 is an outlier
//! ```

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::theme::{
    check_finite, min_max, padded, palette, plot_err, render, shorten, style_mesh, tick_label, Figure, FONT,
};
use crate::error::{Error, Result};
use crate::notebook::Svg;
use crate::rng::Rng;

/// The numbers a box plot draws, as matplotlib's `boxplot` computes them: quartiles by linear
/// interpolation (numpy's default percentile), whiskers at the most extreme data within 1.5 IQR of
/// the box.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BoxStats {
    pub q1: f64,
    pub median: f64,
    pub q3: f64,
    pub whisker_low: f64,
    pub whisker_high: f64,
}

impl BoxStats {
    /// `None` for no values.
    pub fn of(values: &[f64]) -> Option<BoxStats> {
        if values.is_empty() {
            return None;
        }
        let mut v = values.to_vec();
        v.sort_by(f64::total_cmp);
        let q = |p: f64| {
            let pos = p * (v.len() - 1) as f64;
            let (i, f) = (pos.floor() as usize, pos.fract());
            if i + 1 < v.len() {
                v[i] + f * (v[i + 1] - v[i])
            } else {
                v[i]
            }
        };
        let (q1, median, q3) = (q(0.25), q(0.5), q(0.75));
        let iqr = q3 - q1;
        let whisker_low = v.iter().copied().find(|&x| x >= q1 - 1.5 * iqr).unwrap_or(q1).min(q1);
        let whisker_high = v.iter().rev().copied().find(|&x| x <= q3 + 1.5 * iqr).unwrap_or(q3).max(q3);
        Some(BoxStats { q1, median, q3, whisker_low, whisker_high })
    }
}

/// One box per group `(name, values)` (median, quartiles, 1.5 IQR whiskers) with every value drawn
/// as a point jittered sideways; the jitter is seeded, so the same data gives the same figure.
///
/// ```
/// use protein_lm::plots::{box_strip, Figure};
/// let pretrained = [0.61, 0.63, 0.60, 0.64];
/// let random = [0.11, 0.13, 0.12, 0.10];
/// let fig = Figure::new("Clustering of embeddings vs families", "embeddings", "NMI");
/// let svg = box_strip(&fig, &[("pre-trained", &pretrained[..]), ("random", &random[..])])?;
/// // The jitter is seeded: the same data draws the same figure.
/// assert_eq!(svg, box_strip(&fig, &[("pre-trained", &pretrained[..]), ("random", &random[..])])?);
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn box_strip(fig: &Figure, groups: &[(&str, &[f64])]) -> Result<Svg> {
    if groups.is_empty() {
        return Err(Error::invalid("box_strip needs at least one group"));
    }
    let mut stats = Vec::with_capacity(groups.len());
    for (name, values) in groups {
        check_finite(&format!("box_strip `{name}`"), values.iter())?;
        stats.push(BoxStats::of(values).ok_or_else(|| Error::invalid(format!("box_strip: group `{name}` is empty")))?);
    }
    let n = groups.len();
    let (y0, y1) = min_max(groups.iter().flat_map(|(_, v)| v.iter().copied()));
    let (y0, y1) = padded(y0, y1, 0.06);
    render(fig, |area| {
        let mut chart = ChartBuilder::on(area)
            .margin(12)
            .x_label_area_size(56)
            .y_label_area_size(60)
            .build_cartesian_2d(-0.5..n as f64 - 0.5, y0..y1)
            .map_err(plot_err)?;
        let mut mesh = chart.configure_mesh();
        style_mesh(&mut mesh, fig);
        mesh.disable_x_mesh().x_labels(0).y_label_formatter(&tick_label).draw().map_err(plot_err)?;
        let half = 0.25;
        for (i, ((_, values), s)) in groups.iter().zip(&stats).enumerate() {
            let color = palette(i);
            let x = i as f64;
            let line = color.stroke_width(2);
            chart
                .draw_series([
                    PathElement::new(vec![(x, s.whisker_low), (x, s.q1)], line),
                    PathElement::new(vec![(x, s.q3), (x, s.whisker_high)], line),
                    PathElement::new(vec![(x - half / 2.0, s.whisker_low), (x + half / 2.0, s.whisker_low)], line),
                    PathElement::new(vec![(x - half / 2.0, s.whisker_high), (x + half / 2.0, s.whisker_high)], line),
                ])
                .map_err(plot_err)?;
            chart
                .draw_series([
                    Rectangle::new([(x - half, s.q1), (x + half, s.q3)], color.mix(0.18).filled()),
                    Rectangle::new([(x - half, s.q1), (x + half, s.q3)], line),
                ])
                .map_err(plot_err)?;
            let mut rng = Rng::new(0x00B0_5EED ^ i as u64);
            chart
                .draw_series(values.iter().map(|&v| {
                    let dx = (rng.uniform() - 0.5) * 2.0 * 0.6 * half;
                    Circle::new((x + dx, v), 3, color.mix(0.6).filled())
                }))
                .map_err(plot_err)?;
            chart
                .draw_series([PathElement::new(
                    vec![(x - half, s.median), (x + half, s.median)],
                    BLACK.stroke_width(2),
                )])
                .map_err(plot_err)?;
        }
        // Group names under their boxes, placed from the chart's own pixel mapping so each sits
        // exactly at its box; names wider than a group's space wrap onto a second line, then are cut.
        let base = area.get_base_pixel();
        let (px0, _) = chart.backend_coord(&(0.0, y0));
        let spacing = if n > 1 { (chart.backend_coord(&(1.0, y0)).0 - px0) as f64 } else { 200.0 };
        let max_chars = ((spacing - 6.0) / (0.55 * 12.0)).max(3.0) as usize;
        let style = TextStyle::from((FONT, 12).into_font()).pos(Pos::new(HPos::Center, VPos::Top));
        for (i, (name, _)) in groups.iter().enumerate() {
            let (px, py) = chart.backend_coord(&(i as f64, y0));
            for (k, line) in wrap(name, max_chars, 2).into_iter().enumerate() {
                let at = (px - base.0, py - base.1 + 6 + 14 * k as i32);
                area.draw(&Text::new(line, at, style.clone())).map_err(plot_err)?;
            }
        }
        Ok(())
    })
}

/// `text` in at most `lines` lines of at most `width` characters, broken at spaces or hyphens where
/// possible; what does not fit is cut with an ellipsis.
fn wrap(text: &str, width: usize, lines: usize) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut rest = text.trim();
    while !rest.is_empty() && out.len() + 1 < lines && rest.chars().count() > width {
        let head: String = rest.chars().take(width + 1).collect();
        let cut = head.rfind(' ').filter(|&c| c > 0).or_else(|| head[..head.len() - 1].rfind('-').map(|c| c + 1));
        let Some(cut) = cut else { break };
        out.push(rest[..cut].trim_end().to_string());
        rest = rest[cut..].trim_start();
    }
    if !rest.is_empty() {
        out.push(shorten(rest, width));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quartiles_and_whiskers_match_matplotlib() {
        // numpy.percentile([1..=9, 100], [25, 50, 75]) = 3.25, 5.5, 7.75; whiskers 1 and 9 (100 is a flier).
        let v = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 100.0];
        let s = BoxStats::of(&v).unwrap();
        assert_eq!((s.q1, s.median, s.q3), (3.25, 5.5, 7.75));
        assert_eq!((s.whisker_low, s.whisker_high), (1.0, 9.0));
        assert_eq!(BoxStats::of(&[2.0]).unwrap().median, 2.0);
        assert!(BoxStats::of(&[]).is_none());
    }

    #[test]
    fn long_names_wrap_then_cut() {
        assert_eq!(wrap("64-128 residues", 7, 2), ["64-128", "residu…"]);
        assert_eq!(wrap("random", 7, 2), ["random"]);
        assert_eq!(wrap("fine-tuned (conservative)", 12, 2), ["fine-tuned", "(conservati…"]);
    }

    #[test]
    fn box_strip_renders_and_is_deterministic() {
        let a: Vec<f64> = (0..20).map(|i| 0.6 + 0.01 * (i % 7) as f64).collect();
        let b: Vec<f64> = (0..20).map(|i| 0.1 + 0.005 * (i % 5) as f64).collect();
        let fig = Figure::new("NMI with families", "embeddings", "NMI");
        let svg = box_strip(&fig, &[("pre-trained", &a), ("random", &b)]).unwrap();
        for s in ["NMI with families", "embeddings", "NMI", "pre-trained", "random"] {
            assert!(svg.0.contains(s), "{s}");
        }
        assert_eq!(svg, box_strip(&fig, &[("pre-trained", &a), ("random", &b)]).unwrap());
    }

    #[test]
    fn box_strip_rejects_bad_input() {
        let fig = Figure::new("t", "x", "y");
        assert!(box_strip(&fig, &[]).is_err());
        assert!(box_strip(&fig, &[("a", &[1.0]), ("b", &[])]).is_err());
        assert!(box_strip(&fig, &[("a", &[1.0, f64::NAN])]).is_err());
    }
}
