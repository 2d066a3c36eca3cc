//! Heatmaps with a colour bar, e.g. attention of each head over sequence positions (ProteinBERT
//! Fig. 5).

use plotters::prelude::*;

use super::theme::{check_finite, min_max, plot_err, render, shorten, style_mesh, tick_label, Figure, FONT, GRID};
use crate::error::{Error, Result};
use crate::notebook::Svg;

/// Viridis, from dark purple (0) to yellow (1), interpolated between nine of its colours.
pub fn viridis(t: f64) -> RGBColor {
    const STOPS: [(u8, u8, u8); 9] = [
        (68, 1, 84),
        (71, 45, 123),
        (59, 82, 139),
        (44, 114, 142),
        (33, 145, 140),
        (40, 174, 128),
        (94, 201, 98),
        (173, 220, 48),
        (253, 231, 37),
    ];
    let t = if t.is_finite() { t.clamp(0.0, 1.0) } else { 0.0 };
    let pos = t * (STOPS.len() - 1) as f64;
    let i = (pos.floor() as usize).min(STOPS.len() - 2);
    let f = pos - i as f64;
    let mix = |a: u8, b: u8| (a as f64 + f * (b as f64 - a as f64)).round() as u8;
    let (a, b) = (STOPS[i], STOPS[i + 1]);
    RGBColor(mix(a.0, b.0), mix(a.1, b.1), mix(a.2, b.2))
}

/// Maximal runs `[start, end)` of equal colours.
fn colour_runs(colours: impl Iterator<Item = RGBColor>) -> Vec<(usize, usize, RGBColor)> {
    let mut runs: Vec<(usize, usize, RGBColor)> = Vec::new();
    for (j, c) in colours.enumerate() {
        match runs.last_mut() {
            Some(last) if last.2 == c => last.1 = j + 1,
            _ => runs.push((j, j + 1, c)),
        }
    }
    runs
}

/// `values[row][column]` as coloured cells (viridis, low to high), row 0 at the top, with a colour
/// bar on the right. Rows and columns are named by `row_labels` and `col_labels`; when there are
/// more columns than fit, only every few get a label.
pub fn heatmap(fig: &Figure, values: &[Vec<f64>], row_labels: &[String], col_labels: &[String]) -> Result<Svg> {
    let rows = values.len();
    let cols = values.first().map_or(0, Vec::len);
    if rows == 0 || cols == 0 {
        return Err(Error::invalid("heatmap needs at least one row and one column"));
    }
    if let Some(r) = values.iter().position(|r| r.len() != cols) {
        return Err(Error::invalid(format!("heatmap: row {r} has {} values, row 0 has {cols}", values[r].len())));
    }
    if row_labels.len() != rows || col_labels.len() != cols {
        return Err(Error::invalid(format!(
            "heatmap: {rows}x{cols} values but {} row and {} column labels",
            row_labels.len(),
            col_labels.len()
        )));
    }
    check_finite("heatmap", values.iter().flatten())?;
    let (lo, hi) = min_max(values.iter().flatten().copied());
    let (lo, hi) = if hi > lo { (lo, hi) } else { (lo - 0.5, hi + 0.5) };
    let norm = |v: f64| (v - lo) / (hi - lo);
    let row_chars = row_labels.iter().map(|l| l.chars().count()).max().unwrap_or(0).min(16);
    let col_chars = col_labels.iter().map(|l| l.chars().count()).max().unwrap_or(1).clamp(1, 12);
    render(fig, |area| {
        let (w, _) = area.dim_in_pixel();
        let (plot, bar) = area.split_horizontally(w - 90);
        let y_area = (row_chars as f64 * 0.55 * 12.0) as u32 + 14;
        let mut chart = ChartBuilder::on(&plot)
            .margin(12)
            .x_label_area_size(44)
            .y_label_area_size(y_area.max(40) + 24)
            .build_cartesian_2d((0..cols - 1).into_segmented(), (0..rows - 1).into_segmented())
            .map_err(plot_err)?;
        let plot_w = plot.dim_in_pixel().0.saturating_sub(y_area + 60);
        let x_labels = cols.min((plot_w as usize / (col_chars * 7 + 10)).max(2));
        let y_labels = rows.min(24);
        let mut mesh = chart.configure_mesh();
        style_mesh(&mut mesh, fig);
        mesh.disable_mesh()
            .x_labels(x_labels)
            .y_labels(y_labels)
            .x_label_formatter(&|v| match v {
                SegmentValue::CenterOf(j) => col_labels.get(*j).map(|l| shorten(l, 12)).unwrap_or_default(),
                _ => String::new(),
            })
            .y_label_formatter(&|v| match v {
                SegmentValue::CenterOf(k) if *k < rows => shorten(&row_labels[rows - 1 - k], 16),
                _ => String::new(),
            })
            .draw()
            .map_err(plot_err)?;
        // Neighbouring cells of one colour are drawn as one rectangle: near-uniform rows (an
        // attention head spread evenly) then cost a few shapes instead of one per cell.
        chart
            .draw_series(values.iter().enumerate().flat_map(|(i, row)| {
                let k = rows - 1 - i;
                colour_runs(row.iter().map(|&v| viridis(norm(v)))).into_iter().map(move |(start, end, colour)| {
                    Rectangle::new(
                        [
                            (SegmentValue::Exact(start), SegmentValue::Exact(k)),
                            (SegmentValue::Exact(end), SegmentValue::Exact(k + 1)),
                        ],
                        colour.filled(),
                    )
                })
            }))
            .map_err(plot_err)?;
        // Colour bar, aligned with the plot's top and bottom.
        let mut cb = ChartBuilder::on(&bar)
            .margin_top(12)
            .margin_bottom(12 + 44)
            .margin_left(8)
            .margin_right(4)
            .set_label_area_size(LabelAreaPosition::Right, 50)
            .build_cartesian_2d(0.0..1.0, lo..hi)
            .map_err(plot_err)?;
        cb.configure_mesh()
            .disable_mesh()
            .disable_x_axis()
            .y_labels(6)
            .y_label_formatter(&tick_label)
            .label_style((FONT, 11))
            .axis_style(GRID)
            .draw()
            .map_err(plot_err)?;
        let steps = 64;
        cb.draw_series((0..steps).map(|s| {
            let a = lo + (hi - lo) * s as f64 / steps as f64;
            let b = lo + (hi - lo) * (s + 1) as f64 / steps as f64;
            Rectangle::new([(0.0, a), (1.0, b)], viridis((s as f64 + 0.5) / steps as f64).filled())
        }))
        .map_err(plot_err)?;
        Ok(())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(rows: usize, cols: usize) -> (Vec<Vec<f64>>, Vec<String>, Vec<String>) {
        let v = (0..rows).map(|i| (0..cols).map(|j| ((i * 7 + j * 3) % 11) as f64 / 11.0).collect()).collect();
        ((v), (0..rows).map(|i| format!("head {i}")).collect(), (0..cols).map(|j| format!("{}", j + 1)).collect())
    }

    #[test]
    fn heatmap_renders_labels() {
        let (v, r, c) = data(4, 30);
        let fig = Figure::new("Global attention", "position", "head");
        let svg = heatmap(&fig, &v, &r, &c).unwrap();
        for s in ["Global attention", "position", "\nhead\n", "head 0", "head 3"] {
            assert!(svg.0.contains(s), "{s}");
        }
        assert_eq!(svg, heatmap(&fig, &v, &r, &c).unwrap());
        assert_eq!(viridis(0.0), RGBColor(68, 1, 84));
        assert_eq!(viridis(1.0), RGBColor(253, 231, 37));
    }

    #[test]
    fn runs_of_one_colour_are_one_rectangle() {
        let (a, b) = (viridis(0.0), viridis(1.0));
        assert_eq!(colour_runs([a, a, b, a].into_iter()), vec![(0, 2, a), (2, 3, b), (3, 4, a)]);
        assert!(colour_runs(std::iter::empty()).is_empty());
        let labels = |n: usize| (0..n).map(|i| i.to_string()).collect::<Vec<_>>();
        let shapes = |v: &[Vec<f64>]| {
            heatmap(&Figure::new("t", "x", "y"), v, &labels(2), &labels(200)).unwrap().0.matches("<rect").count()
        };
        let uniform = vec![vec![0.0; 200], vec![1.0; 200]];
        let alternating: Vec<Vec<f64>> = (0..2).map(|i| (0..200).map(|j| ((i + j) % 2) as f64).collect()).collect();
        assert_eq!(shapes(&alternating) - shapes(&uniform), 400 - 2, "a uniform row is one rectangle");
    }

    #[test]
    fn cells_carry_no_default_attributes() {
        let (v, r, c) = data(16, 80);
        let svg = heatmap(&Figure::new("t", "x", "y"), &v, &r, &c).unwrap().0;
        // `data` repeats no value in neighbouring cells, so every cell is a rectangle.
        let cells = svg.matches("<rect").count();
        assert!(cells >= 16 * 80, "one rectangle per cell: {cells}");
        assert!(!svg.contains(" opacity=\"1\"") && !svg.contains(" stroke=\"none\""));
        // The fill is what is left of a cell besides its geometry.
        assert!(svg.contains(&format!("fill=\"#{:02X}{:02X}{:02X}\"", 68, 1, 84)), "viridis(0) drawn");
        assert!(svg.len() < 70 * cells + 20_000, "{} bytes for {cells} cells", svg.len());
    }

    #[test]
    fn heatmap_rejects_bad_input() {
        let fig = Figure::new("t", "x", "y");
        let (mut v, r, c) = data(3, 5);
        assert!(heatmap(&fig, &[], &[], &[]).is_err());
        assert!(heatmap(&fig, &[vec![1.0]], &["a".into()], &["b".into()]).is_ok());
        assert!(heatmap(&fig, &v, &r[..2], &c).is_err());
        assert!(heatmap(&fig, &v, &r, &c[..4]).is_err());
        v[1].pop();
        assert!(heatmap(&fig, &v, &r, &c).is_err());
        v[1].push(f64::NAN);
        assert!(heatmap(&fig, &v, &r, &c).is_err());
    }
}
