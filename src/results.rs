//! Where the notebooks keep what later notebooks reuse: one layout per scale.
//!
//! ```text
//! results/<scale>/                      ($PROTEIN_LM_RESULTS overrides the whole path)
//!   figures/                            every SVG a notebook shows
//!   tables/                             claims tables and other numbers (JSON)
//!   runs/proberta-bpe/                  tokenizer.json + dict.txt          (proberta/01_pretraining)
//!   runs/proberta-pretrain/             pretraining run, model/ inside     (proberta/01_pretraining)
//!   runs/proberta-family/               family fine-tuning run             (proberta/02_family_classification)
//!   runs/proberta-ppi-<neg>-<pct>/      PPI fine-tuning, e.g. ppi-conservative-20 (proberta/03_ppi)
//!   runs/proberta-ppi-yeast/            the PIPR yeast set                 (proberta/03_ppi)
//!   runs/proteinbert-pretrain/          denoising + GO pretraining, model/ and the kept
//!                                       checkpoints; snapshots/step-N/ model directories made
//!                                       from them on demand       (proteinbert/02_pretraining)
//!   runs/proteinbert-<benchmark>-<start>/  three-stage fine-tuning; <start> is `scratch`,
//!                                       `pretrained` or `step-N`, `-seed-K` for repeats
//!                                                                      (proteinbert/03_benchmarks)
//!   runs/proteinbert-ppi-<neg>-<pct>/  PPI fine-tuning from the pretrained model, beside
//!                                       runs/proberta-ppi-<neg>-<pct>/ on the same split
//!                                                          (proteinbert/04_attention_and_pairs)
//!   runs/proteinbert-ppi-yeast/         the PIPR yeast set (proteinbert/04_attention_and_pairs)
//!   <notebook path>.ipynb               executed notebooks (scripts/run_notebooks.py)
//! ```
//!
//! A run directory is the CLI's (`protein-lm pretrain|finetune --out DIR`): it is complete when
//! its `model/` (pretraining) or `results.json` (fine-tuning) exists, and resumable while only
//! `checkpoints/` does. [`RunSpec::require`] names the notebook and command that make a missing one.

use std::path::{Path, PathBuf};

use crate::data::ppi::NegativeScheme;
use crate::error::{Error, Result};
use crate::notebook::Scale;

pub const RESULTS_VAR: &str = "PROTEIN_LM_RESULTS";

/// The results folder of one scale.
///
/// ```
/// use protein_lm::data::ppi::NegativeScheme;
/// use protein_lm::notebook::Scale;
/// use protein_lm::results::Results;
/// let dir = tempfile::tempdir()?;
/// let results = Results::at(Scale::Demo, dir.path());
/// let run = results.proberta_ppi(NegativeScheme::Aggressive, 0.2);
/// assert_eq!(run.dir, dir.path().join("runs/proberta-ppi-aggressive-20"));
/// // A notebook asks for the runs it reads; a missing one names the notebook and command that make it.
/// let message = results.proberta_pretrain().require().unwrap_err().to_string();
/// assert!(message.contains("proberta/01_pretraining.ipynb"), "{message}");
/// // In a notebook: `Results::for_scale(Scale::from_env())`.
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Results {
    pub scale: Scale,
    pub root: PathBuf,
}

/// One run a notebook makes and later ones read.
///
/// ```
/// use protein_lm::notebook::Scale;
/// use protein_lm::results::Results;
/// let dir = tempfile::tempdir()?;
/// let run = Results::at(Scale::Tiny, dir.path()).proteinbert_benchmark("stability", "pretrained", 0);
/// assert!(!run.is_done() && !run.can_resume());
/// std::fs::create_dir_all(run.dir.join("checkpoints"))?;
/// assert!(run.can_resume()); // started, not finished
/// std::fs::write(run.dir.join(run.done_marker), "{}")?;
/// // Finished: the weights it tested are `model/` unless it kept a `best/`.
/// assert_eq!(run.tested_model()?, run.dir.join("model"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct RunSpec {
    pub dir: PathBuf,
    /// What proves the run finished (relative to `dir`).
    pub done_marker: &'static str,
    /// The notebook that makes it.
    pub notebook: &'static str,
    /// The command that makes it from the repository root.
    pub command: String,
}

impl RunSpec {
    pub fn is_done(&self) -> bool {
        self.dir.join(self.done_marker).exists()
    }

    /// Whether a started run left a checkpoint to resume from.
    pub fn can_resume(&self) -> bool {
        self.dir.join("checkpoints").is_dir() && !self.is_done()
    }

    /// The weights a finished fine-tuning run tested: `best/` (best validation) when it kept one,
    /// else `model/` (the last update); for a pretraining run, `model/`.
    pub fn tested_model(&self) -> Result<PathBuf> {
        let dir = self.require()?;
        let best = dir.join("best");
        Ok(if best.join("config.json").exists() { best } else { dir.join("model") })
    }

    /// The finished run's directory, or an error naming the notebook and command that make it.
    pub fn require(&self) -> Result<&Path> {
        if self.is_done() {
            Ok(&self.dir)
        } else {
            Err(Error::invalid(format!(
                "{} is missing or unfinished (no {}): run notebooks/{} first, or from the repository root: {}",
                shown(&self.dir),
                self.done_marker,
                self.notebook,
                self.command
            )))
        }
    }
}

impl Results {
    /// `$PROTEIN_LM_RESULTS` when set (the notebook runner sets it), else `results/<scale>` of the
    /// repository: `../results/<scale>` from a notebook folder, found by walking up to `Cargo.toml`.
    pub fn for_scale(scale: Scale) -> Results {
        let root = match std::env::var_os(RESULTS_VAR) {
            Some(p) => PathBuf::from(p),
            None => repository_root().join("results").join(scale.name()),
        };
        Results { scale, root }
    }

    pub fn at(scale: Scale, root: impl Into<PathBuf>) -> Results {
        Results { scale, root: root.into() }
    }

    pub fn figures(&self) -> PathBuf {
        self.root.join("figures")
    }

    pub fn tables(&self) -> PathBuf {
        self.root.join("tables")
    }

    pub fn runs(&self) -> PathBuf {
        self.root.join("runs")
    }

    fn scale_flag(&self) -> String {
        format!("PROTEIN_LM_SCALE={}", self.scale)
    }

    /// PRoBERTa's BPE tokenizer trained on the Swiss-Prot sample.
    pub fn proberta_bpe(&self) -> RunSpec {
        let dir = self.runs().join("proberta-bpe");
        RunSpec {
            command: format!(
                "protein-lm tokenizer train --input swissprot_201401_go_sample50k.tsv.gz --limit 50000 --out {}",
                shown(&dir)
            ),
            dir,
            done_marker: "tokenizer.json",
            notebook: "proberta/01_pretraining.ipynb",
        }
    }

    /// PRoBERTa's masked-LM pretraining run (`model/` inside).
    pub fn proberta_pretrain(&self) -> RunSpec {
        let dir = self.runs().join("proberta-pretrain");
        RunSpec {
            command: format!(
                "protein-lm pretrain --model proberta --config configs/proberta-pretrain-{}.json --tokenizer {} --out {} [--resume]",
                self.scale,
                shown(&self.proberta_bpe().dir),
                shown(&dir)
            ),
            dir,
            done_marker: "model/config.json",
            notebook: "proberta/01_pretraining.ipynb",
        }
    }

    fn finetune(&self, name: &str, task: &str, notebook: &'static str) -> RunSpec {
        let dir = self.runs().join(format!("proberta-{name}"));
        RunSpec {
            command: format!(
                "{} scripts/run_notebooks.py --scale {} notebooks/{notebook}   (or: protein-lm finetune --model proberta --task {task} --from {}/model --config configs/proberta-finetune-{}.json --out {})",
                self.scale_flag(),
                self.scale,
                shown(&self.proberta_pretrain().dir),
                self.scale,
                shown(&dir)
            ),
            dir,
            done_marker: "results.json",
            notebook,
        }
    }

    /// Family fine-tuning (Table 2).
    pub fn proberta_family(&self) -> RunSpec {
        self.finetune("family", "family", "proberta/02_family_classification.ipynb")
    }

    /// PPI fine-tuning with `negatives` on `train_fraction` of the training pairs (Table 3).
    pub fn proberta_ppi(&self, negatives: NegativeScheme, train_fraction: f64) -> RunSpec {
        let name = format!("ppi-{}-{}", negative_name(negatives), (train_fraction * 100.0).round() as u32);
        self.finetune(&name, "ppi", "proberta/03_ppi.ipynb")
    }

    /// Fine-tuning on the PIPR yeast pairs.
    pub fn proberta_ppi_yeast(&self) -> RunSpec {
        self.finetune("ppi-yeast", "ppi", "proberta/03_ppi.ipynb")
    }
}

impl Results {
    /// ProteinBERT's denoising + GO pretraining on the Swiss-Prot sample (`model/` inside, and
    /// the checkpoints Fig. 3 fine-tunes from).
    pub fn proteinbert_pretrain(&self) -> RunSpec {
        let dir = self.runs().join("proteinbert-pretrain");
        RunSpec {
            command: format!(
                "protein-lm pretrain --model proteinbert --config configs/proteinbert-pretrain-{}.json --out {} [--resume]",
                self.scale,
                shown(&dir)
            ),
            dir,
            done_marker: "model/config.json",
            notebook: "proteinbert/02_pretraining.ipynb",
        }
    }

    /// ProteinBERT fine-tuned on `benchmark` from `start`: `scratch` (no pretraining),
    /// `pretrained` (the end of [`Self::proteinbert_pretrain`]) or `step-N` (its checkpoint at
    /// update N); `seed` > 0 names a repeat (`-seed-K`).
    pub fn proteinbert_benchmark(&self, benchmark: &str, start: &str, seed: u64) -> RunSpec {
        let name = match seed {
            0 => format!("proteinbert-{benchmark}-{start}"),
            k => format!("proteinbert-{benchmark}-{start}-seed-{k}"),
        };
        let dir = self.runs().join(name);
        let pretrain = self.proteinbert_pretrain().dir;
        let from = match start {
            "scratch" => String::new(),
            "pretrained" => format!(" --from {}/model", shown(&pretrain)),
            step => format!(" --from {}/snapshots/{step}", shown(&pretrain)),
        };
        RunSpec {
            command: format!(
                "{} scripts/run_notebooks.py --scale {} notebooks/proteinbert/03_benchmarks.ipynb   (or, with the config the notebook fitted to the task: protein-lm finetune --model proteinbert --task {benchmark}{from} --config {}/finetune-config.json --out {} --resume)",
                self.scale_flag(),
                self.scale,
                shown(&dir),
                shown(&dir)
            ),
            dir,
            done_marker: "results.json",
            notebook: "proteinbert/03_benchmarks.ipynb",
        }
    }
}

impl Results {
    fn proteinbert_finetune_ppi(&self, name: &str, data: &str) -> RunSpec {
        let dir = self.runs().join(format!("proteinbert-{name}"));
        let notebook = "proteinbert/04_attention_and_pairs.ipynb";
        RunSpec {
            command: format!(
                "{} scripts/run_notebooks.py --scale {} notebooks/{notebook}   (or, with the config the notebook wrote: protein-lm finetune --model proteinbert --task ppi{data} --from {}/model --config {}/finetune-config.json --out {} --resume){}",
                self.scale_flag(),
                self.scale,
                shown(&self.proteinbert_pretrain().dir),
                shown(&dir),
                shown(&dir),
                if data.is_empty() { "" } else { "; DATA: the data folder `protein-lm data stats` names" }
            ),
            dir,
            done_marker: "results.json",
            notebook,
        }
    }

    /// ProteinBERT fine-tuned on HIPPIE pairs with `negatives` on `train_fraction` of the training
    /// pairs, the split of [`Self::proberta_ppi`] with the same arguments.
    pub fn proteinbert_ppi(&self, negatives: NegativeScheme, train_fraction: f64) -> RunSpec {
        let name = format!("ppi-{}-{}", negative_name(negatives), (train_fraction * 100.0).round() as u32);
        self.proteinbert_finetune_ppi(&name, "")
    }

    /// ProteinBERT fine-tuned on the PIPR yeast pairs (their own negatives: `ppi.negatives` null).
    pub fn proteinbert_ppi_yeast(&self) -> RunSpec {
        self.proteinbert_finetune_ppi(
            "ppi-yeast",
            " --data DATA/ppi/pipr-yeast/protein.actions.tsv --sequences DATA/ppi/pipr-yeast/protein.dictionary.tsv",
        )
    }
}

fn negative_name(n: NegativeScheme) -> &'static str {
    match n {
        NegativeScheme::Conservative => "conservative",
        NegativeScheme::Aggressive => "aggressive",
    }
}

/// `path` as a reader should see it: relative to the repository root when inside it (notebooks
/// print results paths, and stored notebook outputs must not carry one machine's absolute paths).
///
/// ```
/// use protein_lm::results::{repository_root, shown};
/// let run = repository_root().join("results/demo/runs/proberta-family");
/// assert_eq!(shown(&run), "results/demo/runs/proberta-family");
/// assert_eq!(shown(std::path::Path::new("/elsewhere/x")), "/elsewhere/x");
/// ```
pub fn shown(path: &Path) -> String {
    shown_from(&repository_root(), path)
}

fn shown_from(root: &Path, path: &Path) -> String {
    match path.strip_prefix(root) {
        Ok(rel) if !rel.as_os_str().is_empty() => rel.display().to_string(),
        _ => path.display().to_string(),
    }
}

/// The repository holding this crate's `Cargo.toml`, searched upwards from the working directory
/// (notebooks run in `notebooks/` or `notebooks/proberta/`); the working directory when none.
///
/// ```
/// use protein_lm::results::repository_root;
/// // Found from the working directory, e.g. `notebooks/proberta/` inside the checkout.
/// assert!(repository_root().join("Cargo.toml").is_file());
/// ```
pub fn repository_root() -> PathBuf {
    let cwd = std::env::current_dir().unwrap_or_else(|_| PathBuf::from("."));
    cwd.ancestors()
        .find(|d| d.join("Cargo.toml").is_file() && d.join("notebooks").is_dir())
        .map(Path::to_path_buf)
        .unwrap_or(cwd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_names_and_completion() {
        let tmp = tempfile::tempdir().unwrap();
        let r = Results::at(Scale::Demo, tmp.path());
        let ppi = r.proberta_ppi(NegativeScheme::Aggressive, 0.2);
        assert_eq!(ppi.dir, tmp.path().join("runs/proberta-ppi-aggressive-20"));
        assert_eq!(
            r.proberta_ppi(NegativeScheme::Conservative, 1.0).dir,
            tmp.path().join("runs/proberta-ppi-conservative-100")
        );
        let pre = r.proberta_pretrain();
        let err = pre.require().unwrap_err().to_string();
        assert!(
            err.contains("proberta/01_pretraining.ipynb") && err.contains("configs/proberta-pretrain-demo.json"),
            "{err}"
        );
        assert!(!pre.can_resume());
        std::fs::create_dir_all(pre.dir.join("checkpoints")).unwrap();
        assert!(pre.can_resume() && !pre.is_done());
        std::fs::create_dir_all(pre.dir.join("model")).unwrap();
        std::fs::write(pre.dir.join("model/config.json"), "{}").unwrap();
        assert!(pre.is_done() && !pre.can_resume());
        assert_eq!(pre.require().unwrap(), pre.dir.as_path());
        assert_eq!(pre.tested_model().unwrap(), pre.dir.join("model"));
        let fam = r.proberta_family();
        std::fs::create_dir_all(fam.dir.join("best")).unwrap();
        std::fs::write(fam.dir.join("results.json"), "{}").unwrap();
        assert_eq!(fam.tested_model().unwrap(), fam.dir.join("model"), "best/ without a model in it is not a model");
        std::fs::write(fam.dir.join("best/config.json"), "{}").unwrap();
        assert_eq!(fam.tested_model().unwrap(), fam.dir.join("best"));

        let pb = r.proteinbert_pretrain();
        assert_eq!(pb.dir, tmp.path().join("runs/proteinbert-pretrain"));
        assert!(pb.require().unwrap_err().to_string().contains("configs/proteinbert-pretrain-demo.json"));
        let scratch = r.proteinbert_benchmark("signalP_binary", "scratch", 0);
        assert_eq!(scratch.dir, tmp.path().join("runs/proteinbert-signalP_binary-scratch"));
        assert!(!scratch.command.contains("--from"), "{}", scratch.command);
        let repeat = r.proteinbert_benchmark("stability", "pretrained", 2);
        assert_eq!(repeat.dir, tmp.path().join("runs/proteinbert-stability-pretrained-seed-2"));
        assert!(repeat.command.contains("proteinbert-pretrain/model"), "{}", repeat.command);
        let step = r.proteinbert_benchmark("scop", "step-600", 0);
        assert!(step.command.contains("proteinbert-pretrain/snapshots/step-600"), "{}", step.command);

        // ProteinBERT's PPI runs sit beside PRoBERTa's, named alike.
        let pb_ppi = r.proteinbert_ppi(NegativeScheme::Conservative, 1.0);
        assert_eq!(pb_ppi.dir, tmp.path().join("runs/proteinbert-ppi-conservative-100"));
        assert_eq!(
            r.proteinbert_ppi(NegativeScheme::Aggressive, 0.2).dir,
            tmp.path().join("runs/proteinbert-ppi-aggressive-20")
        );
        let err = pb_ppi.require().unwrap_err().to_string();
        assert!(err.contains("proteinbert/04_attention_and_pairs.ipynb") && err.contains("--task ppi"), "{err}");
        assert!(pb_ppi.command.contains("proteinbert-pretrain/model") && !pb_ppi.command.contains("--data"));
        let yeast = r.proteinbert_ppi_yeast();
        assert_eq!(yeast.dir, tmp.path().join("runs/proteinbert-ppi-yeast"));
        assert!(yeast.command.contains("--data DATA/ppi/pipr-yeast/protein.actions.tsv"), "{}", yeast.command);
        std::fs::create_dir_all(&yeast.dir).unwrap();
        std::fs::write(yeast.dir.join("results.json"), "{}").unwrap();
        assert!(yeast.is_done());
        assert_eq!(yeast.tested_model().unwrap(), yeast.dir.join("model"));
    }

    #[test]
    fn paths_are_shown_relative_to_the_repository() {
        let root = Path::new("checkout");
        assert_eq!(
            shown_from(root, &root.join("results/demo/runs/proberta-family")),
            "results/demo/runs/proberta-family"
        );
        assert_eq!(shown_from(root, Path::new("elsewhere/x")), "elsewhere/x");
        assert_eq!(shown_from(root, root), root.display().to_string());
    }
}
