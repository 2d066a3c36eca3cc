//! Train/validation/test splits, exact-duplicate removal, nested training fractions and a report of
//! sequences shared between splits.
//!
//! PRoBERTa's scripts removed exact duplicate lines (`sort | uniq`), shuffled with an unseeded `shuf`
//! and cut 80/10/10; `percentage_splits.sh` then wrote nested 10 %, 20 %, … prefixes of the training
//! file for the data-size experiment (Figure 7). Here every shuffle draws from the crate's seeded
//! [`Rng`], so a seed reproduces a split.
//!
//! ```
//! use protein_lm::data::splits::{dedup_by_sequence, random_split, DEFAULT_FRACTIONS};
//! use protein_lm::Rng;
//! let sequences = ["MKV", "ACDE", "MKV", "WWY", "LLA", "GGS", "PPR", "TTK", "NNQ", "HHE", "FFI"];
//! let (kept, report) = dedup_by_sequence(&sequences);
//! assert_eq!((kept.len(), report.total_dropped()), (10, 1));
//! let parts = random_split(kept.len(), &DEFAULT_FRACTIONS, &mut Rng::new(42))?;
//! assert_eq!(parts.iter().map(Vec::len).collect::<Vec<_>>(), [8, 1, 1]);
//! // A seed fixes the split.
//! assert_eq!(parts, random_split(kept.len(), &DEFAULT_FRACTIONS, &mut Rng::new(42))?);
//! # Ok::<(), protein_lm::Error>(())
//! ```

use std::collections::HashMap;
use std::fmt;

use crate::data::{FilterReport, Protein};
use crate::error::{Error, Result};
use crate::rng::Rng;

/// Train 80 %, validation 10 %, test 10 %, as in PRoBERTa.
pub const DEFAULT_FRACTIONS: [f64; 3] = [0.8, 0.1, 0.1];

/// How far the fractions may sum away from 1 (they are usually written as decimals).
const FRACTION_SUM_TOLERANCE: f64 = 1e-9;

/// The number of items each split gets: `floor(n · f_i)` each, then the items left over by the
/// flooring go one each to the splits with the largest remainders `n · f_i − floor(n · f_i)`, ties to
/// the earlier split (largest-remainder rounding). The sizes therefore sum to `n` exactly and each is
/// within one item of `n · f_i`. Fractions must be finite, non-negative and sum to 1 within 1e-9.
pub fn split_sizes(n: usize, fractions: &[f64]) -> Result<Vec<usize>> {
    if fractions.is_empty() {
        return Err(Error::invalid("no split fractions given"));
    }
    if let Some(f) = fractions.iter().find(|f| !f.is_finite() || **f < 0.0) {
        return Err(Error::invalid(format!("split fraction {f} is not a finite non-negative number")));
    }
    let sum: f64 = fractions.iter().sum();
    if (sum - 1.0).abs() > FRACTION_SUM_TOLERANCE {
        return Err(Error::invalid(format!("split fractions {fractions:?} sum to {sum}, not 1")));
    }
    let exact: Vec<f64> = fractions.iter().map(|f| f * n as f64).collect();
    let mut sizes: Vec<usize> = exact.iter().map(|x| x.floor() as usize).collect();
    let assigned: usize = sizes.iter().sum();
    // A sum of 1 − 1e-9 could floor everything one short too many; never hand out more than n.
    let mut left = n.saturating_sub(assigned);
    let mut by_remainder: Vec<usize> = (0..fractions.len()).collect();
    by_remainder.sort_by(|&a, &b| {
        let ra = exact[a] - exact[a].floor();
        let rb = exact[b] - exact[b].floor();
        rb.total_cmp(&ra).then(a.cmp(&b))
    });
    for &i in by_remainder.iter().cycle() {
        if left == 0 {
            break;
        }
        sizes[i] += 1;
        left -= 1;
    }
    Ok(sizes)
}

/// A seeded random split of the indices `0..n` into `fractions.len()` disjoint parts that cover
/// `0..n`, with [`split_sizes`] sizes. Each part lists its indices in ascending order, so the split is
/// a set assignment and the caller's order within a split is kept.
pub fn random_split(n: usize, fractions: &[f64], rng: &mut Rng) -> Result<Vec<Vec<usize>>> {
    let sizes = split_sizes(n, fractions)?;
    let order = rng.permutation(n);
    let mut parts = Vec::with_capacity(sizes.len());
    let mut start = 0;
    for size in sizes {
        // Fractions summing to 1 + 1e-9 could over-assign by one item at n ≥ 1e9; never slice past n.
        let size = size.min(n - start);
        let mut part = order[start..start + size].to_vec();
        part.sort_unstable();
        parts.push(part);
        start += size;
    }
    Ok(parts)
}

/// Remove exact duplicate sequences, keeping the first occurrence. Returns the kept indices (in input
/// order) and a report of how many were removed.
pub fn dedup_by_sequence<S: AsRef<str>>(sequences: &[S]) -> (Vec<usize>, FilterReport) {
    let mut first_seen: HashMap<&str, usize> = HashMap::with_capacity(sequences.len());
    let mut kept = Vec::with_capacity(sequences.len());
    let mut report = FilterReport::default();
    for (i, s) in sequences.iter().enumerate() {
        if first_seen.insert(s.as_ref(), i).is_none() {
            kept.push(i);
        } else {
            report.drop("exact duplicate of an earlier sequence");
        }
    }
    report.kept = kept.len();
    (kept, report)
}

/// Nested subsets of `items` for data-size experiments: the items are shuffled once with `rng`, and
/// the subset for fraction `f` is the first `round(f · n)` of that order, so each subset contains
/// every smaller one. Fractions must be strictly increasing within (0, 1].
pub fn nested_fractions(items: &[usize], fractions: &[f64], rng: &mut Rng) -> Result<Vec<Vec<usize>>> {
    if fractions.is_empty() {
        return Err(Error::invalid("no training fractions given"));
    }
    let mut previous = 0.0;
    for &f in fractions {
        if !(f > previous && f <= 1.0) {
            return Err(Error::invalid(format!(
                "training fractions {fractions:?} must increase strictly within (0, 1]"
            )));
        }
        previous = f;
    }
    let mut order = items.to_vec();
    rng.shuffle(&mut order);
    let n = order.len();
    Ok(fractions.iter().map(|f| order[..((f * n as f64).round() as usize).min(n)].to_vec()).collect())
}

/// The fractions PRoBERTa's Figure 7 used: 10 %, 20 %, …, 100 %.
pub fn tenths() -> Vec<f64> {
    (1..=10).map(|i| i as f64 / 10.0).collect()
}

/// Identical sequences found in two splits.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct SplitPairLeakage {
    pub first: String,
    pub second: String,
    /// Distinct sequences present in both splits.
    pub shared_sequences: usize,
    /// A few `(id in first, id in second)` examples.
    pub examples: Vec<(String, String)>,
}

/// Sequences identical across splits, one entry per pair of splits (in split order).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LeakageReport {
    pub splits: Vec<String>,
    pub pairs: Vec<SplitPairLeakage>,
}

impl LeakageReport {
    pub fn total_shared(&self) -> usize {
        self.pairs.iter().map(|p| p.shared_sequences).sum()
    }

    pub fn is_clean(&self) -> bool {
        self.total_shared() == 0
    }
}

impl fmt::Display for LeakageReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "identical sequences across splits ({}):", self.splits.join(", "))?;
        for p in &self.pairs {
            write!(f, "  {} / {}: {}", p.first, p.second, p.shared_sequences)?;
            if !p.examples.is_empty() {
                let shown: Vec<String> =
                    p.examples.iter().map(|(a, b)| if a == b { a.clone() } else { format!("{a}={b}") }).collect();
                write!(f, " (e.g. {})", shown.join(", "))?;
            }
            writeln!(f)?;
        }
        Ok(())
    }
}

/// Compare every pair of named splits for identical sequences, keeping up to `max_examples` id
/// pairs per pair of splits.
pub fn leakage_report(splits: &[(&str, &[Protein])], max_examples: usize) -> LeakageReport {
    // First id of each distinct sequence, per split.
    let firsts: Vec<HashMap<&str, &str>> = splits
        .iter()
        .map(|(_, proteins)| {
            let mut m = HashMap::new();
            for p in proteins.iter() {
                m.entry(p.sequence.as_str()).or_insert(p.id.as_str());
            }
            m
        })
        .collect();
    let mut pairs = Vec::new();
    for i in 0..splits.len() {
        for j in i + 1..splits.len() {
            let (small, large, swapped) = if firsts[i].len() <= firsts[j].len() {
                (&firsts[i], &firsts[j], false)
            } else {
                (&firsts[j], &firsts[i], true)
            };
            let mut shared: Vec<(&str, &str)> = small
                .iter()
                .filter_map(|(seq, id)| large.get(seq).map(|other| if swapped { (*other, *id) } else { (*id, *other) }))
                .collect();
            // Hash order is arbitrary; sorting keeps the examples stable between runs.
            shared.sort_unstable();
            pairs.push(SplitPairLeakage {
                first: splits[i].0.to_string(),
                second: splits[j].0.to_string(),
                shared_sequences: shared.len(),
                examples: shared.iter().take(max_examples).map(|(a, b)| (a.to_string(), b.to_string())).collect(),
            });
        }
    }
    LeakageReport { splits: splits.iter().map(|(name, _)| name.to_string()).collect(), pairs }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_sum_to_n_and_round_by_largest_remainder() {
        assert_eq!(split_sizes(100, &DEFAULT_FRACTIONS).unwrap(), vec![80, 10, 10]);
        // 0.8·7 = 5.6, 0.1·7 = 0.7 twice: floors 5, 0, 0; two left go to the 0.7s.
        assert_eq!(split_sizes(7, &DEFAULT_FRACTIONS).unwrap(), vec![5, 1, 1]);
        // Equal remainders go to the earlier split.
        assert_eq!(split_sizes(2, &[1.0 / 3.0; 3]).unwrap(), vec![1, 1, 0]);
        assert_eq!(split_sizes(0, &DEFAULT_FRACTIONS).unwrap(), vec![0, 0, 0]);
        for n in 0..200 {
            let sizes = split_sizes(n, &[0.7, 0.2, 0.1]).unwrap();
            assert_eq!(sizes.iter().sum::<usize>(), n);
            for (s, f) in sizes.iter().zip([0.7, 0.2, 0.1]) {
                assert!((*s as f64 - f * n as f64).abs() < 1.0, "{n} {sizes:?}");
            }
        }
    }

    #[test]
    fn fractions_are_checked() {
        assert!(split_sizes(10, &[0.8, 0.1]).is_err());
        assert!(split_sizes(10, &[0.8, 0.3, -0.1]).is_err());
        assert!(split_sizes(10, &[]).is_err());
        assert!(split_sizes(10, &[f64::NAN, 1.0]).is_err());
        assert!(split_sizes(10, &[0.8, 0.1, 0.1 + 1e-8]).is_err());
        assert!(split_sizes(10, &[0.8, 0.1, 0.1 + 1e-12]).is_ok());
        assert!(random_split(10, &[0.5, 0.6], &mut Rng::new(0)).is_err());
    }

    #[test]
    fn random_split_is_a_deterministic_partition() {
        let n = 1003;
        let parts = random_split(n, &DEFAULT_FRACTIONS, &mut Rng::new(11)).unwrap();
        let sizes: Vec<usize> = parts.iter().map(Vec::len).collect();
        assert_eq!(sizes, split_sizes(n, &DEFAULT_FRACTIONS).unwrap());
        let mut all: Vec<usize> = parts.concat();
        all.sort_unstable();
        assert_eq!(all, (0..n).collect::<Vec<_>>(), "disjoint and covering");
        assert_eq!(parts, random_split(n, &DEFAULT_FRACTIONS, &mut Rng::new(11)).unwrap());
        let other = random_split(n, &DEFAULT_FRACTIONS, &mut Rng::new(12)).unwrap();
        assert_ne!(parts, other);
        // Not just the identity cut: the test split is spread over the whole range.
        assert!(parts[2].iter().any(|&i| i < n / 2));
    }

    #[test]
    fn dedup_keeps_first_occurrence_and_reports() {
        let seqs = ["MKT", "AAA", "MKT", "mkt", "AAA", "W"];
        let (kept, report) = dedup_by_sequence(&seqs);
        assert_eq!(kept, vec![0, 1, 3, 5]);
        assert_eq!(report.kept, 4);
        assert_eq!(report.total_dropped(), 2);
        assert!(report.to_string().contains("dropped 2"), "{report}");
    }

    #[test]
    fn nested_fractions_are_supersets() {
        let items: Vec<usize> = (100..353).collect();
        let subsets = nested_fractions(&items, &tenths(), &mut Rng::new(5)).unwrap();
        assert_eq!(subsets.len(), 10);
        for w in subsets.windows(2) {
            assert!(w[0].len() < w[1].len());
            assert_eq!(&w[1][..w[0].len()], &w[0][..], "prefix, hence subset");
        }
        assert_eq!(subsets[0].len(), 25); // round(25.3)
        let mut full = subsets[9].clone();
        full.sort_unstable();
        assert_eq!(full, items);
        assert_eq!(subsets, nested_fractions(&items, &tenths(), &mut Rng::new(5)).unwrap());
        assert_ne!(subsets[0], nested_fractions(&items, &tenths(), &mut Rng::new(6)).unwrap()[0]);
        let fig7 = nested_fractions(&items, &[0.2, 0.4, 0.6, 0.8, 1.0], &mut Rng::new(5)).unwrap();
        assert_eq!(fig7[0], subsets[1], "same seed, same order, same prefix");
        assert!(nested_fractions(&items, &[0.5, 0.5], &mut Rng::new(0)).is_err());
        assert!(nested_fractions(&items, &[0.0, 0.5], &mut Rng::new(0)).is_err());
        assert!(nested_fractions(&items, &[0.5, 1.5], &mut Rng::new(0)).is_err());
    }

    fn p(id: &str, sequence: &str) -> Protein {
        Protein { id: id.into(), sequence: sequence.into() }
    }

    #[test]
    fn leakage_report_counts_shared_sequences_per_pair() {
        let train = vec![p("t1", "MKV"), p("t2", "AAA"), p("t3", "CCC"), p("t4", "MKV")];
        let valid = vec![p("v1", "AAA"), p("v2", "GGG")];
        let test = vec![p("x1", "MKV"), p("x2", "AAA"), p("x3", "AAA"), p("x4", "WWW")];
        let report = leakage_report(&[("train", &train), ("valid", &valid), ("test", &test)], 1);
        let counts: Vec<(&str, &str, usize)> =
            report.pairs.iter().map(|p| (p.first.as_str(), p.second.as_str(), p.shared_sequences)).collect();
        assert_eq!(counts, vec![("train", "valid", 1), ("train", "test", 2), ("valid", "test", 1)]);
        assert_eq!(report.pairs[0].examples, vec![("t2".to_string(), "v1".to_string())]);
        assert_eq!(report.pairs[1].examples.len(), 1);
        assert_eq!(report.total_shared(), 4);
        assert!(!report.is_clean());
        let text = report.to_string();
        assert!(text.contains("train / test: 2"), "{text}");
        assert!(text.contains("t2=v1"), "{text}");
        let json = serde_json::to_string(&report).unwrap();
        assert!(json.contains("\"shared_sequences\":2"), "{json}");

        let clean = leakage_report(&[("train", &train[2..3]), ("test", &test[3..])], 3);
        assert!(clean.is_clean());
    }
}
