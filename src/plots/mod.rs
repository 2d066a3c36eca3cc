//! Figures as plain functions of plain data (slices, no model types), rendered with plotters to
//! SVG ([`Svg`](crate::notebook::Svg) shows inline in notebooks and saves to files). One file per
//! kind of figure; [`theme`] holds what they share. Bad input (mismatched lengths, empty data,
//! non-finite values) is an [`Error::invalid`](crate::error::Error::invalid), never a panic.
//!
//! ```
//! use protein_lm::plots::{line_series, Figure};
//! let loss = [(1.0, 3.1), (2.0, 2.6), (3.0, 2.4)];
//! let fig = Figure::new("Pretraining loss", "epoch", "loss");
//! let svg = line_series(&fig, &[("train", &loss[..])], false)?;
//! assert!(svg.0.starts_with("<svg") && svg.0.contains("Pretraining loss"));
//! // Bad input is an error, not a panic.
//! assert!(line_series(&fig, &[("train", &[(1.0, f64::NAN)][..])], false).is_err());
//! # Ok::<(), protein_lm::Error>(())
//! ```

pub mod alluvial;
pub mod bar;
pub mod box_strip;
pub mod heatmap;
pub mod histogram;
pub mod lines;
pub mod roc;
pub mod scatter;
pub mod theme;

pub use alluvial::alluvial;
pub use bar::bar_chart;
pub use box_strip::{box_strip, BoxStats};
pub use heatmap::{heatmap, viridis};
pub use histogram::histogram;
pub use lines::line_series;
pub use roc::roc_curves;
pub use scatter::scatter_by_label;
pub use theme::{class_color, hsl, palette, style_mesh, tick_label, Figure, GRID, LEGEND_CAP, PALETTE_CLASSES};

/// Renders every kind of figure from synthetic data into `$PROTEIN_LM_PLOT_DIR` for looking at them
/// (`PROTEIN_LM_PLOT_DIR=figs cargo test --lib plots::gallery -- --ignored`).
#[cfg(test)]
mod gallery {
    use super::*;
    use crate::rng::Rng;

    #[test]
    #[ignore]
    fn gallery() {
        let dir = std::path::PathBuf::from(std::env::var("PROTEIN_LM_PLOT_DIR").unwrap_or_else(|_| "figs".into()));
        let mut rng = Rng::new(7);
        // Scatter: 7 families, and 45 to see the capped legend and hue wheel.
        for (n, per) in [(7usize, 30usize), (45, 8)] {
            let mut pts = Vec::new();
            let mut labels = Vec::new();
            for c in 0..n {
                let (cx, cy) = ((c as f64 * 1.3).cos() * 4.0, (c as f64 * 1.3).sin() * 3.0);
                for _ in 0..per {
                    pts.push((cx + rng.normal(), cy + rng.normal() * 0.7));
                    labels.push(format!("{} family {c}", ["Protein kinase", "Importin beta", "GPCR"][c % 3]));
                }
            }
            let fig = Figure::new("Pre-trained embeddings (PCA)", "PC 1", "PC 2");
            scatter_by_label(&fig, &pts, &labels).unwrap().save(dir.join(format!("scatter_{n}.svg"))).unwrap();
        }
        let fpr: Vec<f64> = (0..=50).map(|i| i as f64 / 50.0).collect();
        let tprs: Vec<Vec<f64>> = [0.08, 0.25, 0.6].iter().map(|&k| fpr.iter().map(|f| f.powf(k)).collect()).collect();
        let curves: Vec<(&str, &[f64], &[f64], f64)> = vec![
            ("PRoBERTa", &fpr, &tprs[0], 0.975),
            ("DeepInteract (one-hot)", &fpr, &tprs[1], 0.81),
            ("ProtFreqVec + logistic", &fpr, &tprs[2], 0.63),
        ];
        let fig = Figure::new("PPI, conservative scenario", "false positive rate", "true positive rate");
        roc_curves(&fig, &curves).unwrap().save(dir.join("roc.svg")).unwrap();
        let loss: Vec<Vec<(f64, f64)>> = [128.0, 512.0, 1024.0]
            .iter()
            .map(|&l| (1..=40).map(|i| (i as f64 * 1.7e7, 2.0 + 1.0 / (i as f64).sqrt() + l / 4096.0)).collect())
            .collect();
        let series: Vec<(&str, &[(f64, f64)])> =
            vec![("length 128", &loss[0]), ("length 512", &loss[1]), ("length 1024", &loss[2])];
        let fig = Figure::new("Pretraining token loss", "processed samples", "loss");
        line_series(&fig, &series, false).unwrap().save(dir.join("lines.svg")).unwrap();
        line_series(&fig, &series, true).unwrap().save(dir.join("lines_log.svg")).unwrap();
        let runs: Vec<Vec<f64>> =
            [0.62, 0.71, 0.12].iter().map(|&m| (0..20).map(|_| m + 0.02 * rng.normal()).collect()).collect();
        let groups: Vec<(&str, &[f64])> =
            vec![("pre-trained", &runs[0]), ("fine-tuned (conservative)", &runs[1]), ("random", &runs[2])];
        let fig = Figure::new("Clustering of embeddings vs families", "embeddings", "NMI");
        box_strip(&fig, &groups).unwrap().save(dir.join("box_strip.svg")).unwrap();
        let (mut left, mut right) = (Vec::new(), Vec::new());
        for k in 0..300usize {
            let c = rng.index(5);
            left.push(format!("cluster {}", [17, 42, 88, 103, 150][c]));
            let f = if rng.uniform() < 0.7 { c } else { rng.index(9) };
            right.push(
                [
                    "Protein kinase",
                    "GPCR 1",
                    "ABC transporter",
                    "Importin beta",
                    "Globin",
                    "Cytochrome P450",
                    "Histone H2A",
                    "Ferredoxin",
                    "Tubulin",
                ][f]
                    .to_string(),
            );
            let _ = k;
        }
        let fig = Figure::new("Five of the 200 largest clusters", "cluster", "family");
        alluvial(&fig, &left, &right).unwrap().save(dir.join("alluvial.svg")).unwrap();
        let att: Vec<Vec<f64>> = (0..24)
            .map(|h| {
                (0..80).map(|p| (-((p as f64 - (h * 3) as f64).powi(2)) / 40.0).exp() + 0.05 * rng.uniform()).collect()
            })
            .collect();
        let rows: Vec<String> = (0..24).map(|h| format!("block {} head {}", h / 4 + 1, h % 4 + 1)).collect();
        let cols: Vec<String> = (1..=80).map(|p| p.to_string()).collect();
        let fig = Figure::new("Global attention, signal peptide", "position", "attention head").size(720, 520);
        heatmap(&fig, &att, &rows, &cols).unwrap().save(dir.join("heatmap.svg")).unwrap();
        let buckets: Vec<(String, Vec<f64>)> = (0..12)
            .map(|b| {
                (
                    format!("{}-{} residues", 64 << (b / 3), 128 << (b / 3)),
                    (0..8).map(|_| 0.7 + 0.03 * rng.normal()).collect(),
                )
            })
            .collect();
        let groups: Vec<(&str, &[f64])> = buckets.iter().map(|(n, v)| (n.as_str(), v.as_slice())).collect();
        let fig = Figure::new("Secondary structure by length", "length bucket", "accuracy");
        box_strip(&fig, &groups).unwrap().save(dir.join("box_many.svg")).unwrap();
        let left: Vec<String> = (0..400).map(|_| format!("cluster {}", rng.index(12))).collect();
        let right: Vec<String> = (0..400).map(|_| format!("family {}", rng.index(40))).collect();
        let fig = Figure::new("Many families", "cluster", "family");
        alluvial(&fig, &left, &right).unwrap().save(dir.join("alluvial_many.svg")).unwrap();
        let lengths: Vec<f64> = (0..500).map(|_| (300.0 + 120.0 * rng.normal()).max(20.0).round()).collect();
        let fig = Figure::new("Sequence lengths", "residues", "proteins");
        histogram(&fig, &[("", &lengths)], 40).unwrap().save(dir.join("histogram.svg")).unwrap();
        let cats: Vec<String> = ["kinase", "GPCR", "globin", "tubulin"].iter().map(|s| s.to_string()).collect();
        let fig = Figure::new("Proteins per family", "family", "proteins");
        bar_chart(&fig, &cats, &[120.0, 80.0, 33.0, 7.0]).unwrap().save(dir.join("bar.svg")).unwrap();
    }
}
