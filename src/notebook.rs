//! What notebooks need beyond the library calls: the scale switch and inline display.
//!
//! Every notebook runs at three scales chosen by `PROTEIN_LM_SCALE`: `tiny` (CI: seconds to a
//! minute or two), `demo` (a laptop CPU: meaningful results in minutes) and `paper` (the papers'
//! hyperparameters, for a GPU). Values that evcxr shows inline implement `evcxr_display`, which
//! prints a MIME bundle between `EVCXR_BEGIN_CONTENT` and `EVCXR_END_CONTENT`.

use std::fmt::Write as _;
use std::path::Path;

use crate::error::{Error, Result};

pub const SCALE_VAR: &str = "PROTEIN_LM_SCALE";

/// How much a notebook computes: `Tiny` (CI), `Demo` (a laptop CPU) or `Paper` (a GPU).
///
/// ```
/// use protein_lm::notebook::Scale;
/// let scale: Scale = "tiny".parse()?;
/// // One value per scale: CI in seconds, a laptop in minutes, the paper's on a GPU.
/// let epochs = scale.pick(1, 10, 100);
/// assert_eq!((epochs, scale.to_string()), (1, "tiny".to_string()));
/// // A notebook reads PROTEIN_LM_SCALE (demo when unset).
/// let _ = Scale::from_env();
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum Scale {
    Tiny,
    Demo,
    Paper,
}

impl Scale {
    /// From `PROTEIN_LM_SCALE` (tiny | demo | paper); `demo` when unset. An unknown value panics on
    /// purpose: a notebook must not silently run at a scale nobody asked for.
    pub fn from_env() -> Scale {
        match std::env::var(SCALE_VAR) {
            Err(_) => Scale::Demo,
            Ok(v) => v.parse().unwrap_or_else(|e: Error| panic!("{e}")),
        }
    }

    /// Choose a value by scale.
    pub fn pick<T>(self, tiny: T, demo: T, paper: T) -> T {
        match self {
            Scale::Tiny => tiny,
            Scale::Demo => demo,
            Scale::Paper => paper,
        }
    }

    pub fn name(self) -> &'static str {
        self.pick("tiny", "demo", "paper")
    }
}

impl std::str::FromStr for Scale {
    type Err = Error;
    fn from_str(s: &str) -> Result<Scale> {
        match s.trim().to_ascii_lowercase().as_str() {
            "tiny" => Ok(Scale::Tiny),
            "demo" => Ok(Scale::Demo),
            "paper" => Ok(Scale::Paper),
            other => Err(Error::invalid(format!("{SCALE_VAR}=`{other}`: expected tiny, demo or paper"))),
        }
    }
}

impl std::fmt::Display for Scale {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

fn emit(mime: &str, content: &str) {
    println!("EVCXR_BEGIN_CONTENT {mime}\n{content}\nEVCXR_END_CONTENT");
}

/// An SVG figure: shown inline in evcxr, savable as a file.
///
/// ```
/// use protein_lm::notebook::Svg;
/// let dir = tempfile::tempdir()?;
/// let svg = Svg(r#"<svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>"#.to_string());
/// // Parent folders are made as needed.
/// svg.save(dir.path().join("figures/empty.svg"))?;
/// assert!(dir.path().join("figures/empty.svg").is_file());
/// // In evcxr, `svg` as a cell's last expression (or `svg.evcxr_display()`) shows it inline.
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Svg(pub String);

impl Svg {
    pub fn evcxr_display(&self) {
        emit("image/svg+xml", &self.0);
    }
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        std::fs::write(path, &self.0).map_err(|e| Error::io(path, e))
    }
}

/// HTML shown inline.
///
/// ```
/// use protein_lm::notebook::{Html, Table};
/// let html = Html(Table::new(["id", "length"]).row(["P1", "10"]).to_html());
/// assert!(html.0.contains("<td>P1</td>"));
/// // Printed between evcxr's content markers, so the kernel shows it rendered.
/// html.evcxr_display();
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Html(pub String);

impl Html {
    pub fn evcxr_display(&self) {
        emit("text/html", &self.0);
    }
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// A small table for notebooks: a header and rows of cells, shown as HTML (and as aligned text by
/// `Display`, so it reads in logs too).
///
/// ```
/// use protein_lm::notebook::Table;
/// let table = Table::new(["name", "value"]).row(["<a>", "1"]).entry("bb", 22);
/// // HTML for the notebook (escaped), aligned text for logs.
/// assert!(table.to_html().contains("<td>&lt;a&gt;</td>"));
/// assert_eq!(table.to_string(), "name  value\n<a>   1\nbb    22\n");
/// ```
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Table {
    pub header: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new<S: Into<String>>(header: impl IntoIterator<Item = S>) -> Self {
        Self { header: header.into_iter().map(Into::into).collect(), rows: Vec::new() }
    }
    pub fn row<S: ToString>(mut self, cells: impl IntoIterator<Item = S>) -> Self {
        self.push(cells);
        self
    }
    /// A two-cell row, label and value, for "quantity | value" tables of mixed types.
    pub fn entry(self, label: impl ToString, value: impl ToString) -> Self {
        self.row([label.to_string(), value.to_string()])
    }
    pub fn push<S: ToString>(&mut self, cells: impl IntoIterator<Item = S>) {
        self.rows.push(cells.into_iter().map(|c| c.to_string()).collect());
    }
    pub fn to_html(&self) -> String {
        let mut h = String::from("<table>\n<thead><tr>");
        for c in &self.header {
            let _ = write!(h, "<th>{}</th>", escape(c));
        }
        h.push_str("</tr></thead>\n<tbody>\n");
        for r in &self.rows {
            h.push_str("<tr>");
            for c in r {
                let _ = write!(h, "<td>{}</td>", escape(c));
            }
            h.push_str("</tr>\n");
        }
        h.push_str("</tbody>\n</table>");
        h
    }
    pub fn evcxr_display(&self) {
        emit("text/html", &self.to_html());
    }
}

impl std::fmt::Display for Table {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let n = self.header.len();
        let widths: Vec<usize> = (0..n)
            .map(|i| {
                std::iter::once(&self.header)
                    .chain(&self.rows)
                    .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        for r in std::iter::once(&self.header).chain(&self.rows) {
            let cells: Vec<String> =
                (0..n).map(|i| format!("{:<w$}", r.get(i).map_or("", String::as_str), w = widths[i])).collect();
            writeln!(f, "{}", cells.join("  ").trim_end())?;
        }
        Ok(())
    }
}

/// A polars DataFrame as a [`Table`] (first `max_rows` rows, then a "… N more rows" line), so it
/// shows as HTML inline. Feature `polars`.
#[cfg(feature = "polars")]
pub fn dataframe_table(df: &polars::prelude::DataFrame, max_rows: usize) -> Table {
    let columns = df.columns();
    let mut table = Table::new(columns.iter().map(|c| c.name().to_string()));
    let shown = df.height().min(max_rows);
    for i in 0..shown {
        table.push(columns.iter().map(|c| match c.get(i) {
            Ok(polars::prelude::AnyValue::String(s)) => s.to_string(),
            Ok(v) => v.to_string(),
            Err(_) => String::new(),
        }));
    }
    if df.height() > shown {
        let mut more = vec![format!("… {} more rows", df.height() - shown)];
        more.resize(columns.len(), String::new());
        table.push(more);
    }
    table
}

/// Our numbers beside the paper's: columns metric | ours | paper | difference | scale, where
/// `rows` are `(metric, ours, paper, scale)` and scale says at which scale ours was measured. Each
/// row prints ours, paper and the signed difference with the same number of decimals (three below
/// 10, two below 100, one below 1000, none above, by the larger of the two magnitudes); a value
/// that is not finite (not measured) prints as "n/a", and so does the difference then.
///
/// ```
/// use protein_lm::notebook::ours_vs_paper;
/// let table = ours_vs_paper(&[("PPI accuracy", 0.9612, 0.98, "demo"), ("AUC", f64::NAN, 0.99, "tiny")]);
/// assert_eq!(table.rows[0], ["PPI accuracy", "0.961", "0.980", "-0.019", "demo"]);
/// assert_eq!(table.rows[1][1], "n/a"); // not measured at this scale
/// ```
pub fn ours_vs_paper(rows: &[(&str, f64, f64, &str)]) -> Table {
    let mut t = Table::new(["metric", "ours", "paper", "difference", "scale"]);
    for &(metric, ours, paper, scale) in rows {
        let big = [ours, paper].iter().filter(|v| v.is_finite()).fold(0.0f64, |m, v| m.max(v.abs()));
        let d = match big {
            b if b < 10.0 => 3,
            b if b < 100.0 => 2,
            b if b < 1000.0 => 1,
            _ => 0,
        };
        let num = |v: f64| if v.is_finite() { format!("{v:.d$}") } else { "n/a".to_string() };
        let diff = ours - paper;
        let diff = if diff.is_finite() { format!("{diff:+.d$}") } else { "n/a".to_string() };
        t.push([metric.to_string(), num(ours), num(paper), diff, scale.to_string()]);
    }
    t
}

/// One claim of a paper checked against our run: the paper's value, ours, the scale ours came
/// from, whether the paper's direction holds here, and why not where it does not.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Claim {
    pub claim: String,
    pub paper: String,
    pub ours: String,
    pub scale: String,
    /// `None`: not measured at this scale (the note says why).
    pub holds: Option<bool>,
    pub note: String,
}

/// The claims table that ends every paper notebook.
///
/// ```
/// use protein_lm::notebook::{Claims, Scale};
/// let mut claims = Claims::new(Scale::Demo);
/// claims.add("pretrained NMI above random", "0.798 vs 0.58", "0.41 vs 0.30", Some(true), "");
/// claims.add("yeast over-fits", "0.98 / 0.77", "n/a", None, "not run at demo");
/// claims.add("conservative easier", "0.96 > 0.76", "0.70 < 0.72", Some(false), "20 % of the pairs");
/// assert_eq!(claims.misses().len(), 1);
/// assert_eq!(claims.table().rows[1][4], "not measured");
/// let dir = tempfile::tempdir()?;
/// claims.save(dir.path().join("tables/03_ppi.claims.json"))?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Default, serde::Serialize, serde::Deserialize)]
pub struct Claims {
    pub scale: String,
    pub claims: Vec<Claim>,
}

impl Claims {
    pub fn new(scale: Scale) -> Self {
        Claims { scale: scale.name().to_string(), claims: Vec::new() }
    }

    /// Adds a claim; `holds` is whether the paper's direction holds in our run.
    pub fn add(&mut self, claim: &str, paper: impl ToString, ours: impl ToString, holds: Option<bool>, note: &str) {
        self.claims.push(Claim {
            claim: claim.to_string(),
            paper: paper.to_string(),
            ours: ours.to_string(),
            scale: self.scale.clone(),
            holds,
            note: note.to_string(),
        });
    }

    pub fn table(&self) -> Table {
        let mut t = Table::new(["claim", "paper", "ours", "scale", "direction holds", "why not / note"]);
        for c in &self.claims {
            let holds = match c.holds {
                Some(true) => "yes",
                Some(false) => "no",
                None => "not measured",
            };
            t.push([c.claim.as_str(), c.paper.as_str(), c.ours.as_str(), c.scale.as_str(), holds, c.note.as_str()]);
        }
        t
    }

    /// Claims whose direction does not hold (`holds == Some(false)`).
    pub fn misses(&self) -> Vec<&Claim> {
        self.claims.iter().filter(|c| c.holds == Some(false)).collect()
    }

    /// Writes the claims as JSON (e.g. `results/<scale>/tables/<notebook>.claims.json`).
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let json = serde_json::to_vec_pretty(self).map_err(|e| Error::invalid(format!("claims: {e}")))?;
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        crate::output::write_file_atomic(path, &json)
    }

    pub fn evcxr_display(&self) {
        self.table().evcxr_display()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "polars")]
    #[test]
    fn dataframes_render_as_tables() {
        use polars::prelude::*;
        let df = DataFrame::new_infer_height(vec![
            Column::new("id".into(), ["P1", "P2", "P3"]),
            Column::new("length".into(), [10u32, 20, 30]),
        ])
        .unwrap();
        let t = dataframe_table(&df, 2);
        assert_eq!(t.header, ["id", "length"]);
        assert_eq!(t.rows[0], ["P1", "10"]);
        assert_eq!(t.rows[2][0], "… 1 more rows");
    }

    #[test]
    fn scale_parsing_and_pick() {
        assert_eq!("tiny".parse::<Scale>().unwrap(), Scale::Tiny);
        assert_eq!(" Paper ".parse::<Scale>().unwrap(), Scale::Paper);
        assert!("huge".parse::<Scale>().unwrap_err().to_string().contains("tiny, demo or paper"));
        assert_eq!(Scale::Demo.pick(1, 2, 3), 2);
    }

    #[test]
    fn table_renders_and_escapes() {
        let t = Table::new(["name", "value"]).row(["<a>", "1"]).entry("bb", 22);
        assert!(t.to_html().contains("<td>&lt;a&gt;</td>"));
        assert_eq!(t.to_string(), "name  value\n<a>   1\nbb    22\n");
    }

    #[test]
    fn ours_vs_paper_formats_each_row_alike() {
        let t = ours_vs_paper(&[
            ("PPI accuracy", 0.9612, 0.98, "demo"),
            ("perplexity", 12.5, 11.0, "paper"),
            ("samples", 4500.0, 6800.0, "tiny"),
            ("AUC", f64::NAN, 0.99, "tiny"),
        ]);
        assert_eq!(t.header, ["metric", "ours", "paper", "difference", "scale"]);
        assert_eq!(t.rows[0], ["PPI accuracy", "0.961", "0.980", "-0.019", "demo"]);
        assert_eq!(t.rows[1], ["perplexity", "12.50", "11.00", "+1.50", "paper"]);
        assert_eq!(t.rows[2], ["samples", "4500", "6800", "-2300", "tiny"]);
        assert_eq!(t.rows[3], ["AUC", "n/a", "0.990", "n/a", "tiny"]);
        assert!(t.to_html().contains("<th>difference</th>"));
    }

    #[test]
    fn claims_table_says_which_directions_hold() {
        let mut c = Claims::new(Scale::Demo);
        c.add("pretrained NMI above random", "0.798 vs 0.58", "0.41 vs 0.30", Some(true), "");
        c.add("conservative easier than aggressive", "0.96 > 0.76", "0.70 < 0.72", Some(false), "20 % of 7,495 pairs");
        c.add("yeast over-fits", "0.98 / 0.77", "n/a", None, "not run at tiny");
        let t = c.table();
        assert_eq!(t.rows.len(), 3);
        assert_eq!(t.rows[1][4], "no");
        assert_eq!(t.rows[2][4], "not measured");
        assert_eq!(t.rows[0][3], "demo");
        assert_eq!(c.misses().len(), 1);
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("tables/x.claims.json");
        c.save(&path).unwrap();
        let back: Claims = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(back, c);
    }
}
