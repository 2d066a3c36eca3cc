//! Linear probes: L2-regularised logistic regression equal to scikit-learn's, and the PRoBERTa
//! paper's binary family classification protocol built on it.
//!
//! # Logistic regression
//!
//! [`LogisticRegression`] minimises the objective of scikit-learn 1.9's
//! `LogisticRegression(penalty="l2", C=c, fit_intercept=True)` (read in
//! `sklearn/linear_model/_logistic.py` and `_linear_loss.py`):
//!
//! ```text
//! f(W, b) = (1/n) Σᵢ loss(xᵢ W + b, yᵢ) + ‖W‖² / (2·C·n)
//! ```
//!
//! which is scikit-learn's `C·Σᵢ loss + ½‖W‖²` divided by `C·n` (same minimiser). The loss is
//! summed over samples (averaged here, with the penalty scaled to match), and the intercept `b` is
//! **not** penalised.
//!
//! * **Binary** (K = 2): one weight vector and intercept for class 1, the logistic (half-binomial)
//!   loss `log(1 + e^z) − y·z`. [`FittedLogistic::coefficients`] is then 1 × p and
//!   [`FittedLogistic::decision_function`] n × 1, like scikit-learn's `coef_` and `intercept_`.
//! * **Multiclass** (K > 2): multinomial (softmax) loss over K weight vectors, scikit-learn's
//!   default with lbfgs. The softmax is unchanged by adding a constant to all intercepts; the
//!   penalty fixes the coefficients (they sum to zero over classes), and the intercepts are
//!   reported centred to sum to zero, which is where scikit-learn's lbfgs ends (it starts at zero
//!   and every gradient step keeps their sum at zero).
//! * Classes are `0..K` with K = max label + 1; every class must occur in `y` (an absent class has
//!   no finite optimum), otherwise [`Error::InvalidArgument`] names it.
//! * **Solver**: L-BFGS (memory 10, like scipy's) in f64 from zero, with a backtracking line search
//!   that accepts a step on the Armijo condition or, once the objective stops changing within
//!   rounding, on the approximate Wolfe condition of Hager and Zhang (the directional derivative
//!   shrank), so the gradient can be driven far below what the objective's precision alone allows.
//!   It stops when the largest gradient entry of `f` is at most `tol` (scipy's `gtol`, on the same
//!   scaled objective), or after `max_iter` iterations, or when no step decreases `f` any more;
//!   [`FittedLogistic::converged`] tells which. Defaults: `C = 1`, `tol = 1e-8`, `max_iter = 10000`.
//!
//! # Feature standardisation
//!
//! [`StandardScaler`] equals scikit-learn's: column means and population (ddof = 0) standard
//! deviations, a zero-variance column scaled by 1. Not applied automatically.
//!
//! # Binary family probe (PRoBERTa, §2.4.1 and §3.2)
//!
//! "A separate logistic regression classifier for each protein family with greater than 50
//! proteins … a balanced training dataset … all the positive samples and the same number of
//! negative samples drawn uniformly at random without replacement from outside the family …
//! randomly withheld 30 % of the proteins from each family to be used as the test set", reported
//! as a weighted mean accuracy. [`binary_family_probe`] does this, with these choices:
//!
//! * A family is probed when it has at least `min_family_size` members (the paper's "greater than
//!   50" is `min_family_size = 51`). Families are probed in ascending label order.
//! * For a family of n members, n negatives are drawn uniformly without replacement from all
//!   samples outside it. If fewer than n exist, the family is reported as
//!   [`FamilyOutcome::InsufficientNegatives`], not skipped and not fitted.
//! * Held out: `ceil(test_fraction · n)` positives and the same number of negatives, each chosen
//!   uniformly at random (so the test set is balanced too); at least one positive and one negative
//!   must remain for training, otherwise the family is reported as
//!   [`FamilyOutcome::TooSmallToSplit`].
//! * The classifier is [`LogisticRegression`] with the given `c` on the raw embeddings (no
//!   standardisation, as scikit-learn's default). Class 1 is "in the family"; a test sample is
//!   predicted in the family when its decision value is > 0 (scikit-learn's `predict`).
//! * Accuracy is on the held-out positives and negatives together. The weighted mean accuracy
//!   weights each evaluated family by its size n; it is `None` if no family was evaluated.
//! * Randomness: one [`Rng`] passed in, drawn in family order (negatives, then the positive and
//!   negative test picks), so a seed fixes the whole result.
//!
//! ```
//! use protein_lm::analysis::probe::{LogisticRegression, StandardScaler};
//! use protein_lm::ndarray::array;
//! let x = array![[1.0, 200.0], [2.0, 180.0], [3.0, 20.0], [4.0, 10.0]];
//! let y = [0, 0, 1, 1];
//! // Standardised first, as a notebook does for embeddings whose columns differ in scale.
//! let (scaler, xs) = StandardScaler::fit_transform(&x)?;
//! let fit = LogisticRegression::new(1.0).fit(&xs, &y)?;
//! assert!(fit.converged());
//! assert_eq!(fit.predict(&scaler.transform(&array![[3.5, 15.0]])?)?, [1]);
//! # Ok::<(), protein_lm::Error>(())
//! ```

use std::collections::BTreeMap;

use ndarray::{Array1, Array2, Axis};

use crate::error::{Error, Result};
use crate::rng::Rng;

/// L2-regularised logistic regression with scikit-learn's objective (see the module docs).
///
/// ```
/// use protein_lm::analysis::probe::LogisticRegression;
/// use protein_lm::ndarray::array;
/// let x = array![[-2.0], [-1.0], [1.0], [2.0]];
/// let fit = LogisticRegression::new(1.0).fit(&x, &[0, 0, 1, 1])?;
/// assert_eq!(fit.coefficients().dim(), (1, 1)); // two classes: one weight row, class 1's
/// assert!(fit.coefficients()[[0, 0]] > 0.0);
/// assert_eq!(fit.accuracy(&x, &[0, 0, 1, 1])?, 1.0);
/// let p = fit.predict_proba(&x)?;
/// assert!((p[[0, 0]] + p[[0, 1]] - 1.0).abs() < 1e-12);
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct LogisticRegression {
    /// Inverse regularisation strength, scikit-learn's `C` (> 0; larger = weaker penalty).
    pub c: f64,
    /// Most L-BFGS iterations.
    pub max_iter: usize,
    /// Stop when every entry of the objective's gradient is at most this in absolute value.
    pub tol: f64,
}

impl Default for LogisticRegression {
    fn default() -> Self {
        Self { c: 1.0, max_iter: 10_000, tol: 1e-8 }
    }
}

/// A fitted model: K = 2 has one weight row (class 1), K > 2 one row per class.
#[derive(Debug, Clone)]
pub struct FittedLogistic {
    coef: Array2<f64>,
    intercept: Array1<f64>,
    n_classes: usize,
    n_iter: usize,
    converged: bool,
    objective: f64,
    grad_max: f64,
}

impl LogisticRegression {
    /// A model with inverse regularisation `c` and the default tolerance and iteration limit.
    pub fn new(c: f64) -> Self {
        Self { c, ..Self::default() }
    }

    /// Fits on `x` (n × p, one row per sample) and labels `y` in `0..K`, every class present.
    pub fn fit(&self, x: &Array2<f64>, y: &[usize]) -> Result<FittedLogistic> {
        let (n, p) = x.dim();
        if !(self.c.is_finite() && self.c > 0.0) {
            return Err(Error::invalid(format!("logistic regression: C must be finite and > 0, got {}", self.c)));
        }
        if !(self.tol.is_finite() && self.tol >= 0.0) {
            return Err(Error::invalid(format!("logistic regression: tol must be finite and >= 0, got {}", self.tol)));
        }
        if n == 0 || p == 0 {
            return Err(Error::invalid(format!("logistic regression: empty data ({n} samples × {p} features)")));
        }
        if y.len() != n {
            return Err(Error::invalid(format!("logistic regression: {n} rows in x but {} labels", y.len())));
        }
        if let Some((i, _)) = x.indexed_iter().find(|(_, v)| !v.is_finite()) {
            return Err(Error::invalid(format!("logistic regression: x[{}, {}] is not finite", i.0, i.1)));
        }
        let n_classes = y.iter().max().map_or(0, |m| m + 1);
        let mut counts = vec![0usize; n_classes];
        for &label in y {
            counts[label] += 1;
        }
        let absent: Vec<usize> = (0..n_classes).filter(|&k| counts[k] == 0).collect();
        if !absent.is_empty() {
            return Err(Error::invalid(format!(
                "logistic regression: labels must cover 0..{n_classes} but class(es) {absent:?} never occur in y"
            )));
        }
        if n_classes < 2 {
            return Err(Error::invalid("logistic regression: y has a single class; need at least two"));
        }
        let problem = Problem { x, y, n_rows: if n_classes == 2 { 1 } else { n_classes }, c: self.c };
        let result = lbfgs(&problem, self.max_iter, self.tol);
        let (mut coef, mut intercept) = problem.unpack(&result.theta);
        if n_classes > 2 {
            let mean = intercept.mean().unwrap_or(0.0);
            intercept -= mean;
        } else {
            coef = coef.into_shape_with_order((1, p)).map_err(|e| Error::invalid(e.to_string()))?;
            intercept = intercept.into_shape_with_order(1).map_err(|e| Error::invalid(e.to_string()))?;
        }
        Ok(FittedLogistic {
            coef,
            intercept,
            n_classes,
            n_iter: result.n_iter,
            converged: result.converged,
            objective: result.f,
            grad_max: result.grad_max,
        })
    }
}

impl FittedLogistic {
    /// Weights: 1 × p for two classes (class 1's), K × p otherwise (scikit-learn's `coef_`).
    pub fn coefficients(&self) -> &Array2<f64> {
        &self.coef
    }

    /// Intercepts: length 1 for two classes, K otherwise (scikit-learn's `intercept_`).
    pub fn intercepts(&self) -> &Array1<f64> {
        &self.intercept
    }

    pub fn n_classes(&self) -> usize {
        self.n_classes
    }

    /// L-BFGS iterations taken.
    pub fn n_iter(&self) -> usize {
        self.n_iter
    }

    /// Whether the gradient reached `tol` (false: stopped at `max_iter` or when no step helped).
    pub fn converged(&self) -> bool {
        self.converged
    }

    /// The objective `f` (module docs) at the solution.
    pub fn objective(&self) -> f64 {
        self.objective
    }

    /// Largest absolute gradient entry of `f` at the solution.
    pub fn gradient_max(&self) -> f64 {
        self.grad_max
    }

    fn check(&self, x: &Array2<f64>) -> Result<()> {
        if x.ncols() != self.coef.ncols() {
            return Err(Error::invalid(format!(
                "logistic regression: fitted on {} features but x has {}",
                self.coef.ncols(),
                x.ncols()
            )));
        }
        Ok(())
    }

    /// `x·Wᵀ + b`: n × 1 for two classes (class 1's score), n × K otherwise.
    pub fn decision_function(&self, x: &Array2<f64>) -> Result<Array2<f64>> {
        self.check(x)?;
        Ok(x.dot(&self.coef.t()) + &self.intercept)
    }

    /// Class probabilities, n × K (for two classes the columns are P(0), P(1)); rows sum to 1.
    pub fn predict_proba(&self, x: &Array2<f64>) -> Result<Array2<f64>> {
        let z = self.decision_function(x)?;
        let n = x.nrows();
        if self.n_classes == 2 {
            let mut out = Array2::zeros((n, 2));
            for i in 0..n {
                let p1 = sigmoid(z[[i, 0]]);
                out[[i, 0]] = sigmoid(-z[[i, 0]]);
                out[[i, 1]] = p1;
            }
            Ok(out)
        } else {
            let mut out = z;
            for mut row in out.rows_mut() {
                softmax_in_place(row.as_slice_mut().expect("row of a standard-layout array"));
            }
            Ok(out)
        }
    }

    /// Most probable class per row (two classes: 1 when the decision value is > 0, as scikit-learn).
    pub fn predict(&self, x: &Array2<f64>) -> Result<Vec<usize>> {
        let z = self.decision_function(x)?;
        Ok(if self.n_classes == 2 {
            z.column(0).iter().map(|&v| usize::from(v > 0.0)).collect()
        } else {
            z.rows()
                .into_iter()
                .map(|row| {
                    // First maximum, as numpy's argmax.
                    let mut best = 0;
                    for (k, &v) in row.iter().enumerate() {
                        if v > row[best] {
                            best = k;
                        }
                    }
                    best
                })
                .collect()
        })
    }

    /// Fraction of rows of `x` whose predicted class equals `y`.
    pub fn accuracy(&self, x: &Array2<f64>, y: &[usize]) -> Result<f64> {
        if y.len() != x.nrows() {
            return Err(Error::invalid(format!("accuracy: {} rows but {} labels", x.nrows(), y.len())));
        }
        if y.is_empty() {
            return Err(Error::invalid("accuracy: no samples"));
        }
        let pred = self.predict(x)?;
        Ok(pred.iter().zip(y).filter(|(a, b)| a == b).count() as f64 / y.len() as f64)
    }
}

fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// log(1 + e^z) without overflow.
fn softplus(z: f64) -> f64 {
    if z > 0.0 {
        z + (-z).exp().ln_1p()
    } else {
        z.exp().ln_1p()
    }
}

/// Replaces `v` by its softmax; returns log Σ e^v (of the input).
fn softmax_in_place(v: &mut [f64]) -> f64 {
    let max = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for e in v.iter_mut() {
        *e = (*e - max).exp();
        sum += *e;
    }
    for e in v.iter_mut() {
        *e /= sum;
    }
    max + sum.ln()
}

/// The optimisation problem; parameters are `n_rows` blocks of p weights followed by the
/// `n_rows` intercepts.
struct Problem<'a> {
    x: &'a Array2<f64>,
    y: &'a [usize],
    n_rows: usize,
    c: f64,
}

impl Problem<'_> {
    fn dim(&self) -> usize {
        self.n_rows * (self.x.ncols() + 1)
    }

    fn unpack(&self, theta: &[f64]) -> (Array2<f64>, Array1<f64>) {
        let p = self.x.ncols();
        let k = self.n_rows;
        let w = Array2::from_shape_vec((k, p), theta[..k * p].to_vec()).expect("k·p weights");
        let b = Array1::from_vec(theta[k * p..].to_vec());
        (w, b)
    }

    /// Objective and gradient.
    fn eval(&self, theta: &[f64], grad: &mut [f64]) -> f64 {
        let (n, p) = self.x.dim();
        let k = self.n_rows;
        let (w, b) = self.unpack(theta);
        let mut z = self.x.dot(&w.t()) + &b; // n × k, becomes the residual
        let mut loss = 0.0;
        if k == 1 {
            for (i, zi) in z.column_mut(0).iter_mut().enumerate() {
                let yi = if self.y[i] == 1 { 1.0 } else { 0.0 };
                loss += softplus(*zi) - yi * *zi;
                *zi = sigmoid(*zi) - yi;
            }
        } else {
            for (i, mut row) in z.rows_mut().into_iter().enumerate() {
                let yi = self.y[i];
                let zy = row[yi];
                let lse = softmax_in_place(row.as_slice_mut().expect("standard layout"));
                loss += lse - zy;
                row[yi] -= 1.0;
            }
        }
        let inv_n = 1.0 / n as f64;
        let reg = 1.0 / (self.c * n as f64);
        let gw = z.t().dot(self.x); // k × p
        let norm2: f64 = w.iter().map(|v| v * v).sum();
        for r in 0..k {
            for j in 0..p {
                grad[r * p + j] = gw[[r, j]] * inv_n + reg * w[[r, j]];
            }
        }
        let gb = z.sum_axis(Axis(0));
        for r in 0..k {
            grad[k * p + r] = gb[r] * inv_n;
        }
        loss * inv_n + 0.5 * reg * norm2
    }
}

struct LbfgsResult {
    theta: Vec<f64>,
    f: f64,
    grad_max: f64,
    n_iter: usize,
    converged: bool,
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

fn max_abs(a: &[f64]) -> f64 {
    a.iter().fold(0.0, |m, v| m.max(v.abs()))
}

fn lbfgs(problem: &Problem<'_>, max_iter: usize, tol: f64) -> LbfgsResult {
    const MEMORY: usize = 10;
    const C1: f64 = 1e-4;
    let m = problem.dim();
    let mut theta = vec![0.0; m];
    let mut grad = vec![0.0; m];
    let mut f = problem.eval(&theta, &mut grad);
    let mut s_hist: Vec<Vec<f64>> = Vec::new();
    let mut y_hist: Vec<Vec<f64>> = Vec::new();
    let mut rho_hist: Vec<f64> = Vec::new();
    let mut new_theta = vec![0.0; m];
    let mut new_grad = vec![0.0; m];
    let mut dir = vec![0.0; m];
    let mut alpha_buf = [0.0; MEMORY];
    let mut n_iter = 0;
    let mut converged = max_abs(&grad) <= tol;
    while !converged && n_iter < max_iter {
        // Two-loop recursion: dir = −H·grad.
        dir.copy_from_slice(&grad);
        for i in (0..s_hist.len()).rev() {
            let a = rho_hist[i] * dot(&s_hist[i], &dir);
            alpha_buf[i] = a;
            for (d, yv) in dir.iter_mut().zip(&y_hist[i]) {
                *d -= a * yv;
            }
        }
        let gamma = match (s_hist.last(), y_hist.last()) {
            (Some(s), Some(yv)) => dot(s, yv) / dot(yv, yv),
            _ => 1.0 / dot(&grad, &grad).sqrt().max(1.0),
        };
        for d in dir.iter_mut() {
            *d *= gamma;
        }
        for i in 0..s_hist.len() {
            let beta = rho_hist[i] * dot(&y_hist[i], &dir);
            for (d, sv) in dir.iter_mut().zip(&s_hist[i]) {
                *d += (alpha_buf[i] - beta) * sv;
            }
        }
        for d in dir.iter_mut() {
            *d = -*d;
        }
        let mut slope0 = dot(&grad, &dir);
        if slope0 >= 0.0 {
            // Not a descent direction (numerical trouble): restart from steepest descent.
            s_hist.clear();
            y_hist.clear();
            rho_hist.clear();
            let scale = 1.0 / dot(&grad, &grad).sqrt().max(1.0);
            for (d, g) in dir.iter_mut().zip(&grad) {
                *d = -g * scale;
            }
            slope0 = dot(&grad, &dir);
        }
        // Backtracking line search: Armijo, or approximate Wolfe once f is flat within rounding.
        let mut step = 1.0;
        let mut accepted = None;
        for _ in 0..60 {
            for ((t, th), d) in new_theta.iter_mut().zip(&theta).zip(&dir) {
                *t = th + step * d;
            }
            let f_new = problem.eval(&new_theta, &mut new_grad);
            let slope = dot(&new_grad, &dir);
            let armijo = f_new <= f + C1 * step * slope0;
            let flat = f_new <= f + 1e-12 * f.abs().max(1e-300);
            let approx_wolfe = flat && slope >= 0.9 * slope0 && slope <= -0.8 * slope0;
            if f_new.is_finite() && (armijo || approx_wolfe) {
                accepted = Some(f_new);
                break;
            }
            step *= 0.5;
        }
        n_iter += 1;
        let Some(f_new) = accepted else {
            break;
        };
        let s: Vec<f64> = new_theta.iter().zip(&theta).map(|(a, b)| a - b).collect();
        let yv: Vec<f64> = new_grad.iter().zip(&grad).map(|(a, b)| a - b).collect();
        let sy = dot(&s, &yv);
        std::mem::swap(&mut theta, &mut new_theta);
        std::mem::swap(&mut grad, &mut new_grad);
        f = f_new;
        if sy > 1e-300 && sy > 1e-12 * dot(&yv, &yv).sqrt() * dot(&s, &s).sqrt() {
            if s_hist.len() == MEMORY {
                s_hist.remove(0);
                y_hist.remove(0);
                rho_hist.remove(0);
            }
            s_hist.push(s);
            y_hist.push(yv);
            rho_hist.push(1.0 / sy);
        }
        converged = max_abs(&grad) <= tol;
    }
    let grad_max = max_abs(&grad);
    LbfgsResult { theta, f, grad_max, n_iter, converged }
}

/// Column standardisation equal to scikit-learn's `StandardScaler` (population std, zero-variance
/// columns scaled by 1).
///
/// ```
/// use protein_lm::analysis::probe::StandardScaler;
/// use protein_lm::ndarray::array;
/// let train = array![[1.0, 10.0], [3.0, 10.0], [5.0, 10.0]];
/// let scaler = StandardScaler::fit(&train)?;
/// assert_eq!(scaler.mean, array![3.0, 10.0]);
/// // Column 1 is constant: scale 1, so it is only shifted.
/// assert_eq!(scaler.scale[1], 1.0);
/// let test = scaler.transform(&array![[3.0, 12.0]])?;
/// assert_eq!(test, array![[0.0, 2.0]]);
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct StandardScaler {
    pub mean: Array1<f64>,
    pub scale: Array1<f64>,
}

impl StandardScaler {
    pub fn fit(x: &Array2<f64>) -> Result<Self> {
        let n = x.nrows();
        if n == 0 {
            return Err(Error::invalid("standard scaler: no samples"));
        }
        if x.iter().any(|v| !v.is_finite()) {
            return Err(Error::invalid("standard scaler: x has non-finite values"));
        }
        let mean = x.mean_axis(Axis(0)).expect("n > 0");
        let var = (x - &mean).mapv(|v| v * v).mean_axis(Axis(0)).expect("n > 0");
        // scikit-learn's `_is_constant_feature` and `_handle_zeros_in_scale`: a variance within
        // rounding of zero, or a scale below 10·eps, gives scale 1.
        let eps = f64::EPSILON;
        let nf = n as f64;
        let scale = var
            .iter()
            .zip(mean.iter())
            .map(|(&v, &m)| {
                let upper = nf * eps * v + (nf * m * eps).powi(2);
                let s = v.sqrt();
                if v <= upper || s < 10.0 * eps {
                    1.0
                } else {
                    s
                }
            })
            .collect();
        Ok(Self { mean, scale })
    }

    pub fn transform(&self, x: &Array2<f64>) -> Result<Array2<f64>> {
        if x.ncols() != self.mean.len() {
            return Err(Error::invalid(format!(
                "standard scaler: fitted on {} features but x has {}",
                self.mean.len(),
                x.ncols()
            )));
        }
        Ok((x - &self.mean) / &self.scale)
    }

    /// Fits on `x` and returns the scaler with `x` standardised (scikit-learn's `fit_transform`).
    ///
    /// ```
    /// use protein_lm::analysis::probe::StandardScaler;
    /// use protein_lm::ndarray::array;
    /// let (scaler, x) = StandardScaler::fit_transform(&array![[1.0], [3.0], [5.0]])?;
    /// assert_eq!(scaler.mean[0], 3.0);
    /// // Population spread √(8/3), as scikit-learn.
    /// assert!((x[[2, 0]] - 2.0 / (8.0f64 / 3.0).sqrt()).abs() < 1e-12);
    /// # Ok::<(), protein_lm::Error>(())
    /// ```
    pub fn fit_transform(x: &Array2<f64>) -> Result<(Self, Array2<f64>)> {
        let s = Self::fit(x)?;
        let t = s.transform(x)?;
        Ok((s, t))
    }
}

/// What happened to one family in [`binary_family_probe`].
///
/// ```
/// use protein_lm::analysis::probe::{binary_family_probe, FamilyOutcome};
/// use protein_lm::ndarray::Array2;
/// use protein_lm::Rng;
/// let labels = ["a", "a", "a", "a", "a", "a", "b", "b"];
/// let x = Array2::from_shape_fn((8, 1), |(i, _)| if i < 6 { 1.0 + i as f64 } else { -1.0 - i as f64 });
/// let probe = binary_family_probe(&x, &labels, 1, 0.3, &mut Rng::new(0), 1.0)?;
/// // Six members of `a` but only two proteins outside it: no balanced set.
/// assert_eq!(probe.families[0].outcome, FamilyOutcome::InsufficientNegatives { needed: 6, available: 2 });
/// assert!(matches!(probe.families[1].outcome, FamilyOutcome::Evaluated { n_train: 2, n_test: 2, .. }));
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum FamilyOutcome {
    /// Fitted and scored on its held-out set.
    Evaluated { n_train: usize, n_test: usize, accuracy: f64 },
    /// Fewer samples outside the family than members: no balanced set possible.
    InsufficientNegatives { needed: usize, available: usize },
    /// Holding out `test_fraction` would leave no training sample of a class.
    TooSmallToSplit { n_test_per_class: usize },
}

/// One family's line of the probe.
#[derive(Debug, Clone, PartialEq)]
pub struct FamilyProbe<T> {
    pub family: T,
    /// Members of the family.
    pub n: usize,
    pub outcome: FamilyOutcome,
}

impl<T> FamilyProbe<T> {
    pub fn accuracy(&self) -> Option<f64> {
        match self.outcome {
            FamilyOutcome::Evaluated { accuracy, .. } => Some(accuracy),
            _ => None,
        }
    }
}

/// The whole probe: every family of at least `min_family_size` members, in label order.
#[derive(Debug, Clone, PartialEq)]
pub struct BinaryFamilyProbe<T> {
    pub families: Vec<FamilyProbe<T>>,
    /// Mean held-out accuracy over evaluated families, weighted by family size.
    pub weighted_mean_accuracy: Option<f64>,
    /// Families below `min_family_size` (not probed).
    pub n_families_below_min: usize,
}

/// PRoBERTa's binary family classification (see the module docs for every choice).
///
/// ```
/// use protein_lm::analysis::probe::binary_family_probe;
/// use protein_lm::ndarray::Array2;
/// use protein_lm::Rng;
/// // Ten proteins per family; the first coordinate tells the families apart.
/// let labels: Vec<&str> = (0..20).map(|i| if i < 10 { "globin" } else { "kinase" }).collect();
/// let x = Array2::from_shape_fn((20, 2), |(i, j)| match j {
///     0 => if i < 10 { 1.0 } else { -1.0 },
///     _ => i as f64 * 0.01,
/// });
/// let probe = binary_family_probe(&x, &labels, 5, 0.3, &mut Rng::new(0), 1.0)?;
/// assert_eq!(probe.n_evaluated(), 2);
/// assert_eq!(probe.weighted_mean_accuracy, Some(1.0));
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn binary_family_probe<T: Ord + Clone>(
    embeddings: &Array2<f64>,
    family_labels: &[T],
    min_family_size: usize,
    test_fraction: f64,
    rng: &mut Rng,
    c: f64,
) -> Result<BinaryFamilyProbe<T>> {
    let n = embeddings.nrows();
    if family_labels.len() != n {
        return Err(Error::invalid(format!(
            "binary family probe: {n} embeddings but {} family labels",
            family_labels.len()
        )));
    }
    if !(test_fraction > 0.0 && test_fraction < 1.0) {
        return Err(Error::invalid(format!(
            "binary family probe: test_fraction must be in (0, 1), got {test_fraction}"
        )));
    }
    if !(c.is_finite() && c > 0.0) {
        return Err(Error::invalid(format!("binary family probe: C must be finite and > 0, got {c}")));
    }
    let mut members: BTreeMap<&T, Vec<usize>> = BTreeMap::new();
    for (i, label) in family_labels.iter().enumerate() {
        members.entry(label).or_default().push(i);
    }
    let model = LogisticRegression::new(c);
    let mut families = Vec::new();
    let mut n_below = 0;
    let (mut weighted, mut total) = (0.0, 0usize);
    for (family, pos) in &members {
        let n_pos = pos.len();
        if n_pos < min_family_size.max(1) {
            n_below += 1;
            continue;
        }
        let outside: Vec<usize> = (0..n).filter(|&i| family_labels[i] != **family).collect();
        let outcome = if outside.len() < n_pos {
            FamilyOutcome::InsufficientNegatives { needed: n_pos, available: outside.len() }
        } else {
            let neg: Vec<usize> =
                rng.sample_without_replacement(outside.len(), n_pos).into_iter().map(|j| outside[j]).collect();
            let n_test = (test_fraction * n_pos as f64).ceil() as usize;
            if n_test >= n_pos {
                FamilyOutcome::TooSmallToSplit { n_test_per_class: n_test }
            } else {
                let pos_order = rng.permutation(n_pos);
                let neg_order = rng.permutation(n_pos);
                let mut train = Vec::new();
                let mut test = Vec::new();
                for (rank, &j) in pos_order.iter().enumerate() {
                    let sample = (pos[j], 1usize);
                    if rank < n_test {
                        test.push(sample)
                    } else {
                        train.push(sample)
                    }
                }
                for (rank, &j) in neg_order.iter().enumerate() {
                    let sample = (neg[j], 0usize);
                    if rank < n_test {
                        test.push(sample)
                    } else {
                        train.push(sample)
                    }
                }
                let rows = |set: &[(usize, usize)]| {
                    let idx: Vec<usize> = set.iter().map(|s| s.0).collect();
                    let labels: Vec<usize> = set.iter().map(|s| s.1).collect();
                    (embeddings.select(Axis(0), &idx), labels)
                };
                let (x_train, y_train) = rows(&train);
                let (x_test, y_test) = rows(&test);
                let fitted = model.fit(&x_train, &y_train)?;
                let accuracy = fitted.accuracy(&x_test, &y_test)?;
                weighted += accuracy * n_pos as f64;
                total += n_pos;
                FamilyOutcome::Evaluated { n_train: train.len(), n_test: test.len(), accuracy }
            }
        };
        families.push(FamilyProbe { family: (*family).clone(), n: n_pos, outcome });
    }
    let weighted_mean_accuracy = (total > 0).then(|| weighted / total as f64);
    Ok(BinaryFamilyProbe { families, weighted_mean_accuracy, n_families_below_min: n_below })
}

impl<T> BinaryFamilyProbe<T> {
    /// Families fitted and scored.
    pub fn n_evaluated(&self) -> usize {
        self.families.iter().filter(|f| f.accuracy().is_some()).count()
    }

    /// The evaluated family with the lowest held-out accuracy (the paper's "lowest scoring family";
    /// ties: the first in label order), `None` if none was evaluated.
    pub fn lowest(&self) -> Option<&FamilyProbe<T>> {
        let mut lowest: Option<&FamilyProbe<T>> = None;
        for f in &self.families {
            if let Some(a) = f.accuracy() {
                if lowest.and_then(FamilyProbe::accuracy).is_none_or(|low| a < low) {
                    lowest = Some(f);
                }
            }
        }
        lowest
    }
}

/// A logistic regression fitted on whichever classes occur in its training labels, which may be any
/// subset of `0..K` (a small training fraction misses rare families). It predicts only the classes
/// it saw, in the caller's labels; with a single class seen it predicts that class.
#[derive(Debug, Clone)]
pub struct PresentClassLogistic {
    /// The classes seen in training, ascending; the model's class `i` is `classes[i]`.
    pub classes: Vec<usize>,
    /// Fitted on standardised features when a scaler is kept.
    pub scaler: Option<StandardScaler>,
    fitted: Option<FittedLogistic>,
}

impl PresentClassLogistic {
    /// Fits `model` on `x`, `y` (any labels), relabelling the classes present to `0..K'`. With
    /// `standardize`, a [`StandardScaler`] is fitted on `x` first and applied to every later input.
    pub fn fit(model: &LogisticRegression, x: &Array2<f64>, y: &[usize], standardize: bool) -> Result<Self> {
        if y.len() != x.nrows() || y.is_empty() {
            return Err(Error::invalid(format!(
                "logistic regression: {} rows in x but {} labels (need at least one)",
                x.nrows(),
                y.len()
            )));
        }
        let mut classes: Vec<usize> = y.to_vec();
        classes.sort_unstable();
        classes.dedup();
        let (scaler, xs) = if standardize {
            let (s, t) = StandardScaler::fit_transform(x)?;
            (Some(s), Some(t))
        } else {
            (None, None)
        };
        let fitted = if classes.len() < 2 {
            None
        } else {
            let index: BTreeMap<usize, usize> = classes.iter().enumerate().map(|(i, &c)| (c, i)).collect();
            let local: Vec<usize> = y.iter().map(|c| index[c]).collect();
            Some(model.fit(xs.as_ref().unwrap_or(x), &local)?)
        };
        Ok(Self { classes, scaler, fitted })
    }

    /// The fitted model on the seen classes (`None` when only one class was seen).
    pub fn model(&self) -> Option<&FittedLogistic> {
        self.fitted.as_ref()
    }

    /// Predicted class per row, in the caller's labels.
    pub fn predict(&self, x: &Array2<f64>) -> Result<Vec<usize>> {
        match &self.fitted {
            None => Ok(vec![self.classes[0]; x.nrows()]),
            Some(f) => {
                let pred = match &self.scaler {
                    Some(s) => f.predict(&s.transform(x)?)?,
                    None => f.predict(x)?,
                };
                Ok(pred.into_iter().map(|i| self.classes[i]).collect())
            }
        }
    }

    /// Fraction of rows whose predicted class equals `y` (a class never seen in training is
    /// always wrong).
    pub fn accuracy(&self, x: &Array2<f64>, y: &[usize]) -> Result<f64> {
        if y.len() != x.nrows() || y.is_empty() {
            return Err(Error::invalid(format!("accuracy: {} rows but {} labels", x.nrows(), y.len())));
        }
        let pred = self.predict(x)?;
        Ok(pred.iter().zip(y).filter(|(a, b)| a == b).count() as f64 / y.len() as f64)
    }
}

/// One point of a training-fraction curve.
///
/// ```
/// use protein_lm::analysis::probe::{training_fraction_curve, CurvePoint, LogisticRegression};
/// use protein_lm::ndarray::array;
/// use protein_lm::Rng;
/// let x = array![[-2.0], [-1.0], [1.0], [2.0]];
/// let y = [0, 0, 1, 1];
/// let points: Vec<CurvePoint> =
///     training_fraction_curve(&LogisticRegression::default(), &x, &y, &x, &y, &[1.0], &mut Rng::new(0), false)?;
/// assert_eq!((points[0].n_train, points[0].n_classes, points[0].test_covered), (4, 2, 1.0));
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CurvePoint {
    /// Share of the training rows used.
    pub fraction: f64,
    /// Training rows used (`round(fraction · n)`).
    pub n_train: usize,
    /// Classes among them.
    pub n_classes: usize,
    /// Accuracy on the whole test set.
    pub accuracy: f64,
    /// Share of test rows whose class occurs in this training subset (the best accuracy possible).
    pub test_covered: f64,
}

/// Test accuracy of `model` trained on nested fractions of the training rows (PRoBERTa's Fig. 7
/// protocol, here with a linear model): the rows of `x_train` are shuffled once with `rng`
/// ([`crate::data::splits::nested_fractions`]), fraction `f` trains on the first `round(f · n)`, so
/// each subset holds every smaller one, and every subset is scored on the same test set. Classes
/// absent from a subset cannot be predicted ([`PresentClassLogistic`]); with `standardize` each
/// fit standardises its own training rows.
///
/// ```
/// use protein_lm::analysis::probe::{training_fraction_curve, LogisticRegression};
/// use protein_lm::ndarray::Array2;
/// use protein_lm::Rng;
/// // Class = sign of the only feature.
/// let x = Array2::from_shape_fn((20, 1), |(i, _)| i as f64 - 9.5);
/// let y: Vec<usize> = (0..20).map(|i| usize::from(i >= 10)).collect();
/// let curve = training_fraction_curve(&LogisticRegression::new(1.0), &x, &y, &x, &y, &[0.25, 1.0], &mut Rng::new(3), true)?;
/// assert_eq!((curve[0].n_train, curve[1].n_train), (5, 20));
/// assert_eq!(curve[1].accuracy, 1.0);
/// // A subset may miss a class; `test_covered` is then the best accuracy it could reach.
/// assert!(curve[0].accuracy <= curve[0].test_covered);
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[allow(clippy::too_many_arguments)]
pub fn training_fraction_curve(
    model: &LogisticRegression,
    x_train: &Array2<f64>,
    y_train: &[usize],
    x_test: &Array2<f64>,
    y_test: &[usize],
    fractions: &[f64],
    rng: &mut Rng,
    standardize: bool,
) -> Result<Vec<CurvePoint>> {
    if y_train.len() != x_train.nrows() || y_test.len() != x_test.nrows() {
        return Err(Error::invalid(format!(
            "training fraction curve: {} / {} training rows / labels, {} / {} test rows / labels",
            x_train.nrows(),
            y_train.len(),
            x_test.nrows(),
            y_test.len()
        )));
    }
    if y_test.is_empty() {
        return Err(Error::invalid("training fraction curve: no test rows"));
    }
    let all: Vec<usize> = (0..x_train.nrows()).collect();
    let subsets = crate::data::splits::nested_fractions(&all, fractions, rng)?;
    let mut points = Vec::with_capacity(subsets.len());
    for (&fraction, rows) in fractions.iter().zip(&subsets) {
        if rows.is_empty() {
            return Err(Error::invalid(format!("training fraction {fraction} of {} rows keeps none", x_train.nrows())));
        }
        let y: Vec<usize> = rows.iter().map(|&i| y_train[i]).collect();
        let fit = PresentClassLogistic::fit(model, &x_train.select(Axis(0), rows), &y, standardize)?;
        let covered = y_test.iter().filter(|c| fit.classes.binary_search(c).is_ok()).count();
        points.push(CurvePoint {
            fraction,
            n_train: rows.len(),
            n_classes: fit.classes.len(),
            accuracy: fit.accuracy(x_test, y_test)?,
            test_covered: covered as f64 / y_test.len() as f64,
        });
    }
    Ok(points)
}
