//! Statistics and metrics the two papers' analyses use, each equal to scikit-learn's or scipy's on
//! the same inputs within a stated tolerance (fixtures in `tests/fixtures/analysis/`, with the
//! Python script that produced them).
//!
//! Matrices are `ndarray` 0.16 arrays (`Array2<f64>`, one row per sample), the version linfa uses.
//! This module knows nothing of models or files: it takes numbers and labels.
//!
//! | module | what | equal to | written here because |
//! |---|---|---|---|
//! | [`reduce`] | PCA (components, explained variance, `svd_flip` signs) | sklearn `PCA(svd_solver='full')`, 1e-12 on fixtures | linfa's PCA has no sign convention; a symmetric covariance GEMM + own block Krylov eigensolver (4.3× faster than 'full', 3.1× than 'randomized': `benches/cluster.rs`) |
//! | [`cluster`] | k-means++ and Lloyd, `n_init`, `tol`, empty-cluster relocation; row L2 normalisation | sklearn `KMeans(algorithm='lloyd')`, identical labels from given centres | linfa needs its own rand 0.8 RNG and hides the loop details that decide labels; 3.0× faster than sklearn at k = 4,000 |
//! | [`information`] | NMI (arithmetic), ARI, contingency | sklearn, 1e-16 | linfa has neither |
//! | [`metrics`] | ROC/PR curves, AUC, AP, accuracy, P/R/F1, confusion matrix | sklearn, 1e-16 | linfa's ROC takes f32 only, drops negative scores and returns the curve flipped |
//! | [`stats`] | Pearson, Spearman, Student/Welch t-tests, mean ± t CI | scipy, 1e-14 relative | not in linfa |
//! | [`probe`] | L2 logistic regression (binary, multinomial), the paper's per-family probe | sklearn `LogisticRegression(lbfgs)`, 4e-6 on coefficients | linfa-logistic picks the "positive" class by frequency |
//! | [`regression`] | ridge regression (intercept unpenalised; primal or dual Cholesky) | sklearn `Ridge`'s closed form, checked on hand-computed cases (no fixture yet) | the linear baseline of a regression head |
//! | [`baselines`] | 3-mer frequency vectors (ProtFreqVec) | — | — |
//! | [`ppi`] | the paper's PPI scores per set of pairs and per protein-overlap class; pair → feature-row index | [`metrics`] | — |
//!
//! linfa is therefore not a dependency: every piece above had a reason to be written here, and each
//! is tested against the Python reference (`tests/analysis_*.rs`).

pub mod attention;
pub mod baselines;
pub mod cluster;
pub mod information;
pub mod metrics;
pub mod ppi;
pub mod probe;
pub mod reduce;
pub mod regression;
pub mod stats;
