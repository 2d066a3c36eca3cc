//! Ridge regression (scikit-learn's `Ridge(alpha, fit_intercept=True)`): the linear baseline of a
//! regression head, on embeddings, k-mer frequencies or one-hot residues.
//!
//! The coefficients minimise `‖y − Xw − b‖² + α‖w‖²` with the intercept unpenalised: `X` and `y`
//! are centred, then `w = (XᵀX + αI)⁻¹Xᵀy`, solved by Cholesky in the smaller of the two forms —
//! the `d × d` primal, or the `n × n` dual `w = Xᵀ(XXᵀ + αI)⁻¹y` when there are more features than
//! samples (8,000 3-mer frequencies on a few thousand proteins) — and `b = ȳ − x̄·w`.
//!
//! ```
//! use ndarray::array;
//! use protein_lm::analysis::regression::Ridge;
//! let x = array![[0.0], [1.0], [2.0], [3.0]];
//! let y = [1.0, 3.0, 5.0, 7.0];
//! let fit = Ridge::new(1e-9).fit(&x, &y)?;
//! assert!((fit.coefficients()[0] - 2.0).abs() < 1e-6 && (fit.intercept() - 1.0).abs() < 1e-6);
//! # Ok::<(), protein_lm::Error>(())
//! ```

use ndarray::{Array1, Array2, Axis};

use crate::{Error, Result};

/// The regulariser strength `alpha` (> 0).
///
/// ```
/// use protein_lm::analysis::regression::Ridge;
/// use protein_lm::ndarray::array;
/// let x = array![[0.0], [1.0], [2.0], [3.0]];
/// let y = [1.0, 3.0, 5.0, 7.0];
/// // The penalty shrinks the slope (2 without it) but not the intercept: w = Σx̃ỹ / (Σx̃² + α) = 10 / (5 + 5).
/// let fit = Ridge::new(5.0).fit(&x, &y)?;
/// assert!((fit.coefficients()[0] - 1.0).abs() < 1e-12 && (fit.intercept() - 2.5).abs() < 1e-12);
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Ridge {
    pub alpha: f64,
}

/// A fitted ridge regression.
#[derive(Debug, Clone, PartialEq)]
pub struct FittedRidge {
    coefficients: Array1<f64>,
    intercept: f64,
}

impl Ridge {
    pub fn new(alpha: f64) -> Self {
        Self { alpha }
    }

    /// Fits `y` (one value per row of `x`).
    pub fn fit(&self, x: &Array2<f64>, y: &[f64]) -> Result<FittedRidge> {
        let (n, d) = x.dim();
        if n == 0 || n != y.len() {
            return Err(Error::invalid(format!("ridge: {n} rows of features and {} targets", y.len())));
        }
        if !(self.alpha > 0.0 && self.alpha.is_finite()) {
            return Err(Error::invalid(format!("ridge: alpha must be positive and finite, got {}", self.alpha)));
        }
        if x.iter().chain(y).any(|v| !v.is_finite()) {
            return Err(Error::invalid("ridge: the features or targets hold NaN or infinite values"));
        }
        let x_mean = x.mean_axis(Axis(0)).expect("n > 0");
        let y_mean = y.iter().sum::<f64>() / n as f64;
        let xc = x - &x_mean;
        let yc = Array1::from_iter(y.iter().map(|v| v - y_mean));
        let coefficients = if d <= n {
            let mut gram = xc.t().dot(&xc);
            gram.diag_mut().mapv_inplace(|v| v + self.alpha);
            cholesky_solve(gram, xc.t().dot(&yc))?
        } else {
            let mut gram = xc.dot(&xc.t());
            gram.diag_mut().mapv_inplace(|v| v + self.alpha);
            xc.t().dot(&cholesky_solve(gram, yc)?)
        };
        let intercept = y_mean - x_mean.dot(&coefficients);
        Ok(FittedRidge { coefficients, intercept })
    }
}

impl FittedRidge {
    pub fn coefficients(&self) -> &Array1<f64> {
        &self.coefficients
    }

    pub fn intercept(&self) -> f64 {
        self.intercept
    }

    /// Predictions for the rows of `x`.
    pub fn predict(&self, x: &Array2<f64>) -> Result<Vec<f64>> {
        if x.ncols() != self.coefficients.len() {
            return Err(Error::invalid(format!(
                "ridge: fitted on {} features, given {}",
                self.coefficients.len(),
                x.ncols()
            )));
        }
        Ok(x.dot(&self.coefficients).iter().map(|v| v + self.intercept).collect())
    }
}

/// Solves `a z = b` for a symmetric positive definite `a` (consumed: it holds the factor after).
fn cholesky_solve(mut a: Array2<f64>, b: Array1<f64>) -> Result<Array1<f64>> {
    let n = a.nrows();
    for j in 0..n {
        let mut diag = a[[j, j]];
        for k in 0..j {
            diag -= a[[j, k]] * a[[j, k]];
        }
        if diag <= 0.0 {
            return Err(Error::invalid("ridge: the system is not positive definite (alpha too small?)"));
        }
        let diag = diag.sqrt();
        a[[j, j]] = diag;
        for i in j + 1..n {
            let mut v = a[[i, j]];
            for k in 0..j {
                v -= a[[i, k]] * a[[j, k]];
            }
            a[[i, j]] = v / diag;
        }
    }
    // L z' = b, then Lᵀ z = z'.
    let mut z = b.to_vec();
    for i in 0..n {
        for k in 0..i {
            z[i] -= a[[i, k]] * z[k];
        }
        z[i] /= a[[i, i]];
    }
    for i in (0..n).rev() {
        for k in i + 1..n {
            z[i] -= a[[k, i]] * z[k];
        }
        z[i] /= a[[i, i]];
    }
    Ok(Array1::from(z))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn primal_and_dual_forms_agree_and_match_the_closed_form() -> Result<()> {
        // Two features, three samples: the primal form. Hand-computed with centred data:
        // xc = [[-1, -1], [0, 2], [1, -1]], yc = [-1, 0, 1]; XᵀX + I = [[3, 0], [0, 7]], Xᵀy = [2, 0].
        let x = array![[0.0, 1.0], [1.0, 4.0], [2.0, 1.0]];
        let y = [1.0, 2.0, 3.0];
        let fit = Ridge::new(1.0).fit(&x, &y)?;
        assert!((fit.coefficients()[0] - 2.0 / 3.0).abs() < 1e-12 && fit.coefficients()[1].abs() < 1e-12);
        assert!((fit.intercept() - (2.0 - 2.0 / 3.0)).abs() < 1e-12);
        // More features than samples: the dual form gives the primal's answer.
        let mut rng = crate::Rng::new(1);
        let wide = Array2::from_shape_fn((6, 9), |_| rng.uniform() - 0.5);
        let targets: Vec<f64> = (0..6).map(|i| i as f64 * 0.3 - 1.0).collect();
        let dual = Ridge::new(0.5).fit(&wide, &targets)?;
        let xc = &wide - &wide.mean_axis(Axis(0)).unwrap();
        let mut gram = xc.t().dot(&xc);
        gram.diag_mut().mapv_inplace(|v| v + 0.5);
        let ym = targets.iter().sum::<f64>() / 6.0;
        let primal = cholesky_solve(gram, xc.t().dot(&Array1::from_iter(targets.iter().map(|v| v - ym))))?;
        for (a, b) in dual.coefficients().iter().zip(&primal) {
            assert!((a - b).abs() < 1e-10, "{a} vs {b}");
        }
        assert_eq!(dual.predict(&wide)?.len(), 6);
        Ok(())
    }

    #[test]
    fn bad_input_is_named() {
        let x = array![[1.0], [2.0]];
        assert!(Ridge::new(1.0).fit(&x, &[1.0]).unwrap_err().to_string().contains("2 rows"));
        assert!(Ridge::new(0.0).fit(&x, &[1.0, 2.0]).unwrap_err().to_string().contains("alpha"));
        assert!(Ridge::new(1.0).fit(&x, &[1.0, f64::NAN]).unwrap_err().to_string().contains("NaN"));
        let fit = Ridge::new(1.0).fit(&x, &[1.0, 2.0]).unwrap();
        assert!(fit.predict(&array![[1.0, 2.0]]).unwrap_err().to_string().contains("1 features"));
    }
}
