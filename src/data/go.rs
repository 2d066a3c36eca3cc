//! The Gene Ontology: the term graph, ancestor propagation of annotations, and the fixed term
//! vocabulary that ProteinBERT's second pretraining objective predicts.
//!
//! The 2014 graph file is `parent<TAB>child<TAB>depth<TAB>relation` without a header: the parent comes
//! FIRST (the dataset manifest says `child, parent`, but e.g. `GO:0043231 GO:0005739 is_a` states that
//! mitochondrion is an intracellular membrane-bounded organelle, and `GO:0008150` biological_process
//! appears only in the first column). [`EdgeColumns`] selects the order for other files. The depth
//! column is 1 on every line and is only checked to be an integer. Besides GO ids the file holds three
//! placeholder nodes, `obsolete_biological_process` etc., as parents of the obsolete terms; they are
//! kept in the graph but never added to an annotation. Relations present: `is_a`, `part_of`,
//! `regulates`, `positively_regulates` and `negatively_regulates`. The true-path
//! rule holds for `is_a` and `part_of`, so those are the default relations to propagate through;
//! `regulates` edges do not imply that a protein annotated to the child performs the parent.
//!
//! ProteinBERT's reference code computed the propagated set and then returned the raw terms
//! (`_get_complete_go_annotation_indices`), so its released model was trained on raw annotations.
//! [`AnnotationMode::Raw`] reproduces that; [`AnnotationMode::Propagated`] (the default) is what the
//! reference computed and evidently meant to use.
//!
//! ```
//! use protein_lm::data::go::{AnnotationMode, AnnotationReport, EdgeColumns, GoGraph};
//! // parent, child, depth, relation: mitochondrion is_a intracellular organelle, part_of the cell.
//! let edges = "GO:0043229\tGO:0005739\t1\tis_a\nGO:0005623\tGO:0043229\t1\tpart_of\n";
//! let graph = GoGraph::from_edge_reader(edges.as_bytes(), "go_graph.txt", EdgeColumns::ParentFirst)?;
//! let ancestry = graph.default_ancestry();
//! let mut report = AnnotationReport::default();
//! let propagated = ancestry.annotate(&["GO:0005739"], AnnotationMode::Propagated, &mut report);
//! assert_eq!(propagated, ["GO:0005623", "GO:0005739", "GO:0043229"]);
//! // The released ProteinBERT was trained on the raw terms.
//! assert_eq!(ancestry.annotate(&["GO:0005739"], AnnotationMode::Raw, &mut report), ["GO:0005739"]);
//! # Ok::<(), protein_lm::Error>(())
//! ```

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use crate::data::{numbered_lines, FilterReport};
use crate::error::{Error, Location, Result};

/// Relations that GO's true-path rule propagates annotations through.
pub const DEFAULT_RELATIONS: [&str; 2] = ["is_a", "part_of"];

/// Relation names that GO uses; naming one that a small graph happens to lack is not an error, but a
/// misspelt name is, because it would silently propagate through nothing.
const KNOWN_RELATIONS: [&str; 7] =
    ["is_a", "part_of", "regulates", "positively_regulates", "negatively_regulates", "has_part", "occurs_in"];

/// The GO term graph. Terms are interned; edges point from child to parent with a relation.
///
/// ```
/// use protein_lm::data::go::{EdgeColumns, GoGraph};
/// let edges = "GO:0043229\tGO:0005739\t1\tis_a\nGO:0005623\tGO:0043229\t1\tpart_of\n";
/// let graph = GoGraph::from_edge_reader(edges.as_bytes(), "go_graph.txt", EdgeColumns::ParentFirst)?;
/// assert_eq!((graph.n_terms(), graph.n_edges()), (3, 2));
/// assert_eq!(graph.parents("GO:0005739"), [("GO:0043229", "is_a")]);
/// assert_eq!(graph.default_ancestry().ancestors("GO:0005739").unwrap(), ["GO:0005623", "GO:0043229"]);
/// # Ok::<(), protein_lm::Error>(())
/// ```
///
/// ```no_run
/// use protein_lm::data::go::GoGraph;
/// use protein_lm::data::resolver::{self, files};
/// // The 2014 graph shipped with the project's data, with the term names.
/// let names = resolver::resolve(files::GO_NAMES)?;
/// let graph = GoGraph::read(resolver::resolve(files::GO_GRAPH)?, Some(names.as_path()))?;
/// println!("{} terms, {} edges: {:?}", graph.n_terms(), graph.n_edges(), graph.relation_counts());
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Debug, Clone, Default)]
pub struct GoGraph {
    terms: Vec<String>,
    index: HashMap<String, u32>,
    names: HashMap<u32, String>,
    /// `parents[child] = [(parent, relation index)]`.
    parents: Vec<Vec<(u32, u8)>>,
    relations: Vec<String>,
    relation_counts: Vec<usize>,
    n_edges: usize,
}

/// Which of the first two columns of an edge file is the parent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum EdgeColumns {
    /// `parent, child, depth, relation`: the 2014 GO file shipped with the project's data.
    #[default]
    ParentFirst,
    /// `child, parent, depth, relation`.
    ChildFirst,
}

/// Graph nodes may be GO ids or the file's placeholder nodes; either is one token without whitespace.
fn looks_like_node_id(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(char::is_whitespace)
}

fn looks_like_go_id(s: &str) -> bool {
    s.strip_prefix("GO:").is_some_and(|digits| !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()))
}

impl GoGraph {
    /// Read the edge file (parent first, as in the 2014 file) and, optionally, the `GO id<TAB>name` file.
    pub fn read(graph_path: impl AsRef<Path>, names_path: Option<&Path>) -> Result<Self> {
        Self::read_with_columns(graph_path, names_path, EdgeColumns::ParentFirst)
    }

    pub fn read_with_columns(
        graph_path: impl AsRef<Path>,
        names_path: Option<&Path>,
        columns: EdgeColumns,
    ) -> Result<Self> {
        let graph_path = graph_path.as_ref();
        let mut graph = Self::default();
        for line in numbered_lines(graph_path)? {
            let (line_no, line) = line?;
            graph.parse_edge_line(&line, graph_path, line_no, columns)?;
        }
        if let Some(names_path) = names_path {
            for line in numbered_lines(names_path)? {
                let (line_no, line) = line?;
                graph.parse_name_line(&line, names_path, line_no)?;
            }
        }
        Ok(graph)
    }

    /// Parse edges from any reader; `source` only names the input in error messages.
    pub fn from_edge_reader(reader: impl BufRead, source: impl AsRef<Path>, columns: EdgeColumns) -> Result<Self> {
        let source = source.as_ref();
        let mut graph = Self::default();
        for (i, line) in reader.lines().enumerate() {
            let line = line.map_err(|e| Error::io(source, e))?;
            graph.parse_edge_line(line.trim_end_matches('\r'), source, i + 1, columns)?;
        }
        Ok(graph)
    }

    fn parse_edge_line(&mut self, line: &str, path: &Path, line_no: usize, columns: EdgeColumns) -> Result<()> {
        if line.trim().is_empty() {
            return Ok(());
        }
        let fields: Vec<&str> = line.split('\t').collect();
        let here = || Location::line(path, line_no);
        if fields.len() != 4 {
            return Err(Error::data(
                here(),
                format!("expected 4 tab-separated fields (two terms, depth, relation), found {}", fields.len()),
            ));
        }
        let (child, parent) = match columns {
            EdgeColumns::ParentFirst => (fields[1], fields[0]),
            EdgeColumns::ChildFirst => (fields[0], fields[1]),
        };
        let (depth, relation) = (fields[2], fields[3]);
        for term in [child, parent] {
            if !looks_like_node_id(term) {
                return Err(Error::data(here(), format!("`{term}` is not a term id (empty or contains whitespace)")));
            }
        }
        if depth.parse::<u32>().is_err() {
            return Err(Error::data(
                here().with_record(child),
                format!("depth `{depth}` is not a non-negative integer"),
            ));
        }
        if relation.is_empty() || !relation.bytes().all(|b| b.is_ascii_alphabetic() || b == b'_') {
            return Err(Error::data(
                here().with_record(child),
                format!("relation `{relation}` is not a relation name"),
            ));
        }
        let relation_index = match self.relations.iter().position(|r| r == relation) {
            Some(i) => i,
            None => {
                if self.relations.len() == u8::MAX as usize {
                    return Err(Error::data(here(), "more than 255 distinct relations"));
                }
                self.relations.push(relation.to_string());
                self.relation_counts.push(0);
                self.relations.len() - 1
            }
        };
        let child = self.intern(child);
        let parent = self.intern(parent);
        self.parents[child as usize].push((parent, relation_index as u8));
        self.relation_counts[relation_index] += 1;
        self.n_edges += 1;
        Ok(())
    }

    fn parse_name_line(&mut self, line: &str, path: &Path, line_no: usize) -> Result<()> {
        if line.trim().is_empty() {
            return Ok(());
        }
        let Some((id, name)) = line.split_once('\t') else {
            return Err(Error::data(Location::line(path, line_no), "expected `GO id<TAB>name`"));
        };
        if !looks_like_node_id(id) {
            return Err(Error::data(
                Location::line(path, line_no),
                format!("`{id}` is not a term id (empty or contains whitespace)"),
            ));
        }
        // Names also cover terms without edges (e.g. obsolete ones), so they are interned too.
        let id = self.intern(id);
        self.names.insert(id, name.to_string());
        Ok(())
    }

    fn intern(&mut self, term: &str) -> u32 {
        if let Some(&i) = self.index.get(term) {
            return i;
        }
        let i = self.terms.len() as u32;
        self.terms.push(term.to_string());
        self.index.insert(term.to_string(), i);
        self.parents.push(Vec::new());
        i
    }

    pub fn n_edges(&self) -> usize {
        self.n_edges
    }

    /// Terms seen in the edge or the name file.
    pub fn n_terms(&self) -> usize {
        self.terms.len()
    }

    pub fn contains(&self, term: &str) -> bool {
        self.index.contains_key(term)
    }

    pub fn name(&self, term: &str) -> Option<&str> {
        let i = self.index.get(term)?;
        self.names.get(i).map(String::as_str)
    }

    /// Relations present in the graph with their edge counts, in the order first met.
    pub fn relation_counts(&self) -> Vec<(String, usize)> {
        self.relations.iter().cloned().zip(self.relation_counts.iter().copied()).collect()
    }

    /// Direct parents of a term through any relation, as `(parent, relation)`.
    pub fn parents(&self, term: &str) -> Vec<(&str, &str)> {
        let Some(&i) = self.index.get(term) else {
            return Vec::new();
        };
        self.parents[i as usize]
            .iter()
            .map(|&(p, r)| (self.terms[p as usize].as_str(), self.relations[r as usize].as_str()))
            .collect()
    }

    /// Precompute every term's ancestors through the given relations (see [`DEFAULT_RELATIONS`]).
    /// One breadth-first walk per term, so cycles (possible through `regulates`) cannot loop.
    pub fn ancestry(&self, relations: &[&str]) -> Result<GoAncestry<'_>> {
        for r in relations {
            if !KNOWN_RELATIONS.contains(r) && !self.relations.iter().any(|g| g == r) {
                return Err(Error::invalid(format!(
                    "relation `{r}` is neither in the GO graph ({}) nor a GO relation",
                    self.relations.join(", ")
                )));
            }
        }
        let followed: Vec<bool> = self.relations.iter().map(|r| relations.contains(&r.as_str())).collect();
        let n = self.terms.len();
        let mut ancestors: Vec<Vec<u32>> = Vec::with_capacity(n);
        let mut seen = vec![false; n];
        let mut queue: Vec<u32> = Vec::new();
        for start in 0..n as u32 {
            let mut found = Vec::new();
            queue.clear();
            queue.push(start);
            seen[start as usize] = true;
            while let Some(t) = queue.pop() {
                for &(p, r) in &self.parents[t as usize] {
                    if followed[r as usize] && !seen[p as usize] {
                        seen[p as usize] = true;
                        found.push(p);
                        queue.push(p);
                    }
                }
            }
            seen[start as usize] = false;
            for &a in &found {
                seen[a as usize] = false;
            }
            found.sort_unstable_by(|a, b| self.terms[*a as usize].cmp(&self.terms[*b as usize]));
            ancestors.push(found);
        }
        Ok(GoAncestry { graph: self, relations: relations.iter().map(|r| r.to_string()).collect(), ancestors })
    }

    /// [`Self::ancestry`] through `is_a` and `part_of`.
    pub fn default_ancestry(&self) -> GoAncestry<'_> {
        self.ancestry(&DEFAULT_RELATIONS).expect("default relations are known GO relations")
    }
}

/// Which GO terms a protein's annotation vector holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum AnnotationMode {
    /// Each annotated term plus all its ancestors (the true-path rule; what the reference computed).
    #[default]
    Propagated,
    /// The annotated terms only (what ProteinBERT's reference code actually returned).
    Raw,
}

/// What annotating a set of proteins met: how many terms went in and came out, and which annotated
/// terms the graph does not know (kept as themselves, since the graph may simply be older).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct AnnotationReport {
    pub proteins: usize,
    pub input_terms: usize,
    pub output_terms: usize,
    /// Occurrences of terms absent from the graph.
    pub unknown_occurrences: usize,
    /// Distinct unknown terms with their occurrence counts.
    pub unknown_terms: BTreeMap<String, usize>,
}

impl std::fmt::Display for AnnotationReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} proteins, {} annotated terms -> {} terms; {} occurrences of {} terms not in the GO graph (kept as themselves)",
            self.proteins,
            self.input_terms,
            self.output_terms,
            self.unknown_occurrences,
            self.unknown_terms.len()
        )?;
        let examples: Vec<&str> = self.unknown_terms.keys().take(5).map(String::as_str).collect();
        if !examples.is_empty() {
            write!(f, ", e.g. {}", examples.join(", "))?;
        }
        Ok(())
    }
}

/// Every term's ancestors through a fixed set of relations, precomputed so that annotating a large
/// protein set costs one lookup per term.
#[derive(Debug, Clone)]
pub struct GoAncestry<'g> {
    graph: &'g GoGraph,
    relations: Vec<String>,
    ancestors: Vec<Vec<u32>>,
}

impl<'g> GoAncestry<'g> {
    pub fn relations(&self) -> &[String] {
        &self.relations
    }

    /// Proper ancestors of a term, sorted by GO id; `None` when the graph does not know the term.
    pub fn ancestors(&self, term: &str) -> Option<Vec<&'g str>> {
        let &i = self.graph.index.get(term)?;
        Some(self.ancestors[i as usize].iter().map(|&a| self.graph.terms[a as usize].as_str()).collect())
    }

    /// The terms plus all their ancestors, deduplicated and sorted by GO id. Unknown terms are kept.
    pub fn propagate<S: AsRef<str>>(&self, terms: &[S]) -> Vec<String> {
        self.annotate(terms, AnnotationMode::Propagated, &mut AnnotationReport::default())
    }

    /// One protein's annotation under `mode`, deduplicated and sorted by GO id, counted in `report`.
    pub fn annotate<S: AsRef<str>>(
        &self,
        terms: &[S],
        mode: AnnotationMode,
        report: &mut AnnotationReport,
    ) -> Vec<String> {
        let mut out: HashSet<&str> = HashSet::new();
        report.proteins += 1;
        report.input_terms += terms.len();
        for term in terms {
            let term = term.as_ref();
            match self.graph.index.get(term) {
                Some(&i) => {
                    out.insert(self.graph.terms[i as usize].as_str());
                    if mode == AnnotationMode::Propagated {
                        for &a in &self.ancestors[i as usize] {
                            let ancestor = self.graph.terms[a as usize].as_str();
                            // Placeholder parents of obsolete terms are bookkeeping, not GO terms.
                            if looks_like_go_id(ancestor) {
                                out.insert(ancestor);
                            }
                        }
                    }
                }
                None => {
                    report.unknown_occurrences += 1;
                    *report.unknown_terms.entry(term.to_string()).or_default() += 1;
                    out.insert(term);
                }
            }
        }
        let mut out: Vec<String> = out.into_iter().map(str::to_string).collect();
        out.sort_unstable();
        report.output_terms += out.len();
        out
    }
}

/// The GO terms a model predicts, in a fixed order. Saved next to anything trained on it, because
/// the order is part of the model (ProteinBERT's authors lost theirs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GoVocabulary {
    terms: Vec<String>,
    names: Vec<Option<String>>,
    index: HashMap<String, usize>,
}

impl GoVocabulary {
    /// Count each term once per protein and keep those seen in at least `min_proteins` proteins
    /// (ProteinBERT used 100). Order: descending protein count, ties by GO id ascending, so the same
    /// annotations give the same order whatever order the proteins came in. The report counts the
    /// distinct terms left out.
    pub fn build<P, S>(proteins: P, min_proteins: usize) -> (Self, FilterReport)
    where
        P: IntoIterator,
        P::Item: AsRef<[S]>,
        S: AsRef<str>,
    {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for terms in proteins {
            let distinct: HashSet<&str> = terms.as_ref().iter().map(|t| t.as_ref()).collect();
            for t in distinct {
                *counts.entry(t.to_string()).or_default() += 1;
            }
        }
        let mut report = FilterReport::default();
        let mut kept: Vec<(String, usize)> = Vec::new();
        for (term, n) in counts {
            if n >= min_proteins {
                kept.push((term, n));
            } else {
                report.drop(&format!("term seen in fewer than {min_proteins} proteins"));
            }
        }
        kept.sort_unstable_by(|(ta, na), (tb, nb)| nb.cmp(na).then_with(|| ta.cmp(tb)));
        report.kept = kept.len();
        let terms: Vec<String> = kept.into_iter().map(|(t, _)| t).collect();
        (Self::from_terms(terms, None), report)
    }

    fn from_terms(terms: Vec<String>, names: Option<Vec<Option<String>>>) -> Self {
        let index = terms.iter().enumerate().map(|(i, t)| (t.clone(), i)).collect();
        let names = names.unwrap_or_else(|| vec![None; terms.len()]);
        Self { terms, names, index }
    }

    /// Attach term names from the graph, so the saved file is readable.
    pub fn with_names(mut self, graph: &GoGraph) -> Self {
        self.names = self.terms.iter().map(|t| graph.name(t).map(str::to_string)).collect();
        self
    }

    pub fn len(&self) -> usize {
        self.terms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    pub fn terms(&self) -> &[String] {
        &self.terms
    }

    pub fn index_of(&self, term: &str) -> Option<usize> {
        self.index.get(term).copied()
    }

    /// Sorted vocabulary indices of the terms; terms outside the vocabulary are skipped, which is the
    /// point of a minimum count (they are too rare to learn).
    pub fn indices<S: AsRef<str>>(&self, terms: &[S]) -> Vec<usize> {
        let mut out: Vec<usize> = terms.iter().filter_map(|t| self.index_of(t.as_ref())).collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// A 0/1 vector of vocabulary length.
    pub fn multi_hot<S: AsRef<str>>(&self, terms: &[S]) -> Vec<f32> {
        let mut v = vec![0.0; self.terms.len()];
        for i in self.indices(terms) {
            v[i] = 1.0;
        }
        v
    }

    /// One term a line, in vocabulary order: `GO id` or `GO id<TAB>name`.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let path = path.as_ref();
        let file = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
        let mut w = std::io::BufWriter::new(file);
        for (term, name) in self.terms.iter().zip(&self.names) {
            match name {
                Some(name) => writeln!(w, "{term}\t{name}"),
                None => writeln!(w, "{term}"),
            }
            .map_err(|e| Error::io(path, e))?;
        }
        w.flush().map_err(|e| Error::io(path, e))
    }

    /// Read a file written by [`Self::save`]; the line order is the vocabulary order.
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path: PathBuf = path.as_ref().to_path_buf();
        let mut terms = Vec::new();
        let mut names = Vec::new();
        let mut first_line: HashMap<String, usize> = HashMap::new();
        for line in numbered_lines(&path)? {
            let (line_no, line) = line?;
            let (term, name) = match line.split_once('\t') {
                Some((t, n)) => (t, Some(n.to_string())),
                None => (line.as_str(), None),
            };
            if !looks_like_go_id(term) {
                return Err(Error::data(
                    Location::line(&path, line_no),
                    format!("`{term}` is not a GO id (GO:digits); a vocabulary has one term a line, no blank lines"),
                ));
            }
            if let Some(first) = first_line.insert(term.to_string(), line_no) {
                return Err(Error::data(
                    Location::line(&path, line_no).with_record(term),
                    format!("term already listed on line {first}"),
                ));
            }
            terms.push(term.to_string());
            names.push(name);
        }
        Ok(Self::from_terms(terms, Some(names)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Written child first for readability (read with EdgeColumns::ChildFirst):
    //   GO:0000010 is_a GO:0000001 (root)
    //   GO:0000011 is_a GO:0000010
    //   GO:0000012 part_of GO:0000011
    //   GO:0000013 regulates GO:0000012   (must not propagate by default)
    //   GO:0000013 is_a GO:0000001
    //   GO:0000020 is_a GO:0000002 (second root)
    const SMALL: &str = "GO:0000010\tGO:0000001\t1\tis_a\n\
GO:0000011\tGO:0000010\t1\tis_a\n\
GO:0000012\tGO:0000011\t1\tpart_of\n\
GO:0000013\tGO:0000012\t1\tregulates\n\
GO:0000013\tGO:0000001\t1\tis_a\n\
GO:0000020\tGO:0000002\t1\tis_a\n";

    fn small() -> GoGraph {
        GoGraph::from_edge_reader(SMALL.as_bytes(), "small.txt", EdgeColumns::ChildFirst).unwrap()
    }

    #[test]
    fn reads_edges_and_relations() {
        let g = small();
        assert_eq!(g.n_edges(), 6);
        assert_eq!(g.n_terms(), 7);
        assert_eq!(
            g.relation_counts(),
            vec![("is_a".to_string(), 4), ("part_of".to_string(), 1), ("regulates".to_string(), 1)]
        );
        assert_eq!(g.parents("GO:0000012"), vec![("GO:0000011", "part_of")]);
    }

    #[test]
    fn ancestors_follow_is_a_and_part_of_but_not_regulates() {
        let g = small();
        let anc = g.default_ancestry();
        assert_eq!(anc.ancestors("GO:0000012").unwrap(), vec!["GO:0000001", "GO:0000010", "GO:0000011"]);
        assert_eq!(anc.ancestors("GO:0000013").unwrap(), vec!["GO:0000001"]);
        assert_eq!(anc.ancestors("GO:0000001").unwrap(), Vec::<&str>::new());
        assert!(anc.ancestors("GO:9999999").is_none());

        let with_regulates = g.ancestry(&["is_a", "part_of", "regulates"]).unwrap();
        assert_eq!(
            with_regulates.ancestors("GO:0000013").unwrap(),
            vec!["GO:0000001", "GO:0000010", "GO:0000011", "GO:0000012"]
        );
        let is_a_only = g.ancestry(&["is_a"]).unwrap();
        assert_eq!(is_a_only.ancestors("GO:0000012").unwrap(), Vec::<&str>::new());
        assert!(g.ancestry(&["is-a"]).is_err());
    }

    #[test]
    fn propagation_modes_and_unknown_terms() {
        let g = small();
        let anc = g.default_ancestry();
        let mut report = AnnotationReport::default();
        let terms = ["GO:0000011", "GO:0000020", "GO:7777777", "GO:0000011"];
        let propagated = anc.annotate(&terms, AnnotationMode::Propagated, &mut report);
        assert_eq!(
            propagated,
            vec!["GO:0000001", "GO:0000002", "GO:0000010", "GO:0000011", "GO:0000020", "GO:7777777"]
        );
        let raw = anc.annotate(&terms, AnnotationMode::Raw, &mut report);
        assert_eq!(raw, vec!["GO:0000011", "GO:0000020", "GO:7777777"]);
        assert_eq!(report.proteins, 2);
        assert_eq!(report.input_terms, 8);
        assert_eq!(report.output_terms, 9);
        assert_eq!(report.unknown_occurrences, 2);
        assert_eq!(report.unknown_terms.get("GO:7777777"), Some(&2));
        assert!(report.to_string().contains("GO:7777777"), "{report}");
        assert_eq!(anc.propagate(&["GO:0000013"]), vec!["GO:0000001", "GO:0000013"]);
    }

    #[test]
    fn cycles_through_a_followed_relation_terminate() {
        let text = "GO:0000001\tGO:0000002\t1\tis_a\nGO:0000002\tGO:0000001\t1\tis_a\n";
        let g = GoGraph::from_edge_reader(text.as_bytes(), "cycle.txt", EdgeColumns::ParentFirst).unwrap();
        let anc = g.default_ancestry();
        assert_eq!(anc.ancestors("GO:0000001").unwrap(), vec!["GO:0000002"]);
    }

    #[test]
    fn malformed_lines_name_file_and_line() {
        let cases = [
            ("GO:0000010\tGO:0000001\t1\n", "expected 4"),
            ("GO:0000010\tGO 1\t1\tis_a\n", "not a term id"),
            ("GO:0000010\tGO:0000001\tdeep\tis_a\n", "depth"),
            ("GO:0000010\tGO:0000001\t1\t\n", "relation"),
        ];
        for (text, expected) in cases {
            let input = format!("GO:0000011\tGO:0000010\t1\tis_a\n{text}");
            let err =
                GoGraph::from_edge_reader(input.as_bytes(), "g.txt", EdgeColumns::ChildFirst).unwrap_err().to_string();
            assert!(err.contains("g.txt:2") && err.contains(expected), "{err}");
        }
        let dir = tempfile::tempdir().unwrap();
        let edges = dir.path().join("edges.txt");
        let names = dir.path().join("names.txt");
        std::fs::write(&edges, SMALL).unwrap();
        std::fs::write(&names, "GO:0000001\troot\nGO:0000010 no tab\n").unwrap();
        let err = GoGraph::read(&edges, Some(&names)).unwrap_err().to_string();
        assert!(err.contains("names.txt:2"), "{err}");
        std::fs::write(&names, "GO:0000001\troot\n").unwrap();
        let g = GoGraph::read_with_columns(&edges, Some(&names), EdgeColumns::ChildFirst).unwrap();
        assert_eq!(g.default_ancestry().ancestors("GO:0000010").unwrap(), vec!["GO:0000001"]);
        // The same file read parent-first turns the graph upside down.
        let flipped = GoGraph::read(&edges, None).unwrap();
        assert_eq!(flipped.default_ancestry().ancestors("GO:0000001").unwrap().len(), 4);
        assert_eq!(g.name("GO:0000001"), Some("root"));
        assert_eq!(g.name("GO:0000010"), None);
    }

    #[test]
    fn vocabulary_counts_once_per_protein_orders_and_round_trips() {
        let proteins = vec![
            vec!["GO:0000003", "GO:0000003", "GO:0000002"],
            vec!["GO:0000002", "GO:0000001"],
            vec!["GO:0000003", "GO:0000004"],
            vec!["GO:0000001"],
        ];
        let (vocab, report) = GoVocabulary::build(&proteins, 2);
        // GO:0000003 appears twice in protein 0 but counts once: 1, 2, 3 all have 2 proteins.
        assert_eq!(vocab.terms(), &["GO:0000001", "GO:0000002", "GO:0000003"]);
        assert_eq!(report.kept, 3);
        assert_eq!(report.total_dropped(), 1);

        let reversed: Vec<_> = proteins.iter().rev().cloned().collect();
        assert_eq!(GoVocabulary::build(&reversed, 2).0, vocab);

        let (by_count, _) = GoVocabulary::build(&[vec!["GO:0000009"], vec!["GO:0000009"], vec!["GO:0000001"]], 1);
        assert_eq!(by_count.terms(), &["GO:0000009", "GO:0000001"]);

        assert_eq!(vocab.multi_hot(&["GO:0000003", "GO:0000005"]), vec![0.0, 0.0, 1.0]);
        assert_eq!(vocab.indices(&["GO:0000003", "GO:0000001"]), vec![0, 2]);

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("go_vocab.txt");
        let names = "GO:0000001\tGO:0000002\t1\tis_a\n";
        let mut g = GoGraph::from_edge_reader(names.as_bytes(), "x", EdgeColumns::ParentFirst).unwrap();
        g.parse_name_line("GO:0000002\tsecond term", Path::new("n"), 1).unwrap();
        let named = vocab.clone().with_names(&g);
        named.save(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text, "GO:0000001\nGO:0000002\tsecond term\nGO:0000003\n");
        let loaded = GoVocabulary::load(&path).unwrap();
        assert_eq!(loaded.terms(), vocab.terms());
        assert_eq!(loaded, named);

        std::fs::write(&path, "GO:0000001\nGO:0000002\nGO:0000001\n").unwrap();
        let err = GoVocabulary::load(&path).unwrap_err().to_string();
        assert!(err.contains(":3") && err.contains("line 1"), "{err}");
        std::fs::write(&path, "GO:0000001\n\n").unwrap();
        assert!(GoVocabulary::load(&path).unwrap_err().to_string().contains(":2"));
    }

    fn shared_go_dir() -> Option<PathBuf> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets/swissprot-2014-go");
        if dir.join("go_graph_201401.txt").exists() {
            Some(dir)
        } else {
            crate::testing::skip(&format!("{} not present", dir.display()));
            None
        }
    }

    #[test]
    fn real_go_2014_graph() {
        let Some(dir) = shared_go_dir() else { return };
        let g = GoGraph::read(dir.join("go_graph_201401.txt"), Some(&dir.join("go_term_names_201401.txt"))).unwrap();
        assert_eq!(g.n_edges(), 79_118);
        let relations: BTreeMap<String, usize> = g.relation_counts().into_iter().collect();
        eprintln!("GO 2014: {} terms, relations {relations:?}", g.n_terms());
        assert_eq!(relations["is_a"], 65_928);
        assert_eq!(relations["part_of"], 6_399);
        assert_eq!(relations["regulates"], 2_531);
        assert_eq!(relations.len(), 5);
        assert_eq!(g.name("GO:0008150"), Some("biological_process"));

        let anc = g.default_ancestry();
        let bp = anc.ancestors("GO:0007005").unwrap(); // mitochondrion organization
        assert!(bp.contains(&"GO:0008150") && !bp.contains(&"GO:0003674"), "{bp:?}");
        let mf = anc.ancestors("GO:0015078").unwrap(); // hydrogen ion transmembrane transporter activity
        assert!(mf.contains(&"GO:0003674") && !mf.contains(&"GO:0008150"), "{mf:?}");
        let cc = anc.ancestors("GO:0005739").unwrap(); // mitochondrion
        assert!(cc.contains(&"GO:0005575") && cc.contains(&"GO:0043231"), "{cc:?}");
        assert!(cc.contains(&"GO:0005737"), "part_of cytoplasm: {cc:?}");

        // Obsolete terms hang under placeholder nodes, which propagation leaves out.
        assert_eq!(anc.ancestors("GO:0000005").unwrap(), vec!["obsolete_molecular_function"]);
        assert_eq!(anc.propagate(&["GO:0000005"]), vec!["GO:0000005"]);

        // All 50,000 sampled proteins, as pretraining would annotate them.
        let table = dir.join("swissprot_201401_go_sample50k.tsv.gz");
        let reader = crate::data::fasta::open_maybe_gzip(&table).unwrap();
        let mut raw_report = AnnotationReport::default();
        let mut report = AnnotationReport::default();
        let mut propagated = Vec::new();
        for line in reader.lines().skip(1) {
            let line = line.unwrap();
            let fields: Vec<&str> = line.split('\t').collect();
            let terms: Vec<&str> = fields[2..5].iter().flat_map(|f| f.split(';')).filter(|t| !t.is_empty()).collect();
            anc.annotate(&terms, AnnotationMode::Raw, &mut raw_report);
            propagated.push(anc.annotate(&terms, AnnotationMode::Propagated, &mut report));
        }
        eprintln!("raw: {raw_report}\npropagated: {report}");
        assert_eq!(report.proteins, 50_000);
        assert!(report.output_terms > 2 * raw_report.output_terms);
        let (vocab, dropped) = GoVocabulary::build(&propagated, 100);
        eprintln!("vocabulary (>= 100 proteins): {}; {dropped}", vocab.len());
        assert_eq!(vocab.terms()[0], "GO:0008150");
        for root in ["GO:0008150", "GO:0003674", "GO:0005575"] {
            assert!(anc.ancestors(root).unwrap().is_empty());
        }
    }
}
