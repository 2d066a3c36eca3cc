//! Principal component analysis with scikit-learn 1.9's `PCA(svd_solver='full')` results: centred,
//! not whitened, `explained_variance_` with the `n - 1` denominator, ratios over the total variance,
//! and its sign convention, `svd_flip(U, Vt, u_based_decision=False)`: in each component the entry
//! of largest absolute value (first one on ties) is positive. Equal to sklearn within 1e-6 on
//! `tests/fixtures/analysis/pca.json`.
//!
//! How: the covariance matrix `Xcᵀ Xc / (n - 1)` is formed from its blocks on and above the diagonal
//! (column blocks of 128, one GEMM each, in parallel with rayon; each entry comes from one GEMM, so
//! results do not depend on the thread count), then a symmetric eigendecomposition of that `d × d`
//! matrix. For small `d` (or many components) that is a full Householder tridiagonalisation +
//! implicit QL (the EISPACK `tred2`/`tql2` pair, written here); otherwise a restarted block Krylov
//! method (block Lanczos with full reorthogonalisation, blocks of `k + 8` vectors, 8 blocks per
//! restart, Rayleigh–Ritz on the whole basis) run until every wanted Ritz pair has residual
//! `‖C v - λ v‖ ≤ 1e-11 λ₁`, falling back to the full solver after 200 restarts. The start block
//! is drawn from the crate's [`Rng`] with a fixed seed, so the result is deterministic. A unit test
//! checks it against the full solver on a spectrum spanning 14 orders of magnitude, a cluster of
//! near-equal eigenvalues at the cut and a rank-deficient matrix.
//!
//! Why not linfa-reduction: its PCA has no sign convention (spec `rust-ecosystem.md` §1), so its
//! components could not equal sklearn's. Why not nalgebra: a ~150-line eigensolver here avoids a new
//! dependency tree, and only a 768 × 768 (or smaller) matrix is ever decomposed.
//!
//! Speed (`benches/run_all.sh`, 9,700 × 768 → 20, 2 cores): 0.176 s, against sklearn 1.9 with 2
//! threads 0.751 s for `svd_solver='full'` (4.3×) and 0.549 s for 'randomized' (3.1×); sklearn's
//! 'covariance_eigh' (the same covariance approach on OpenBLAS/LAPACK, not its default) takes
//! 0.146 s, 0.83× our time. The transformed data agree with 'full' on that input to the 13 digits
//! printed.

use ndarray::{s, Array1, Array2, ArrayView2, Axis};
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::rng::Rng;

/// A fitted PCA: `components` is `k × d` (one component per row, sklearn's `components_`).
///
/// ```
/// use protein_lm::analysis::reduce::Pca;
/// use protein_lm::ndarray::array;
/// let x = array![[0.0, 0.0], [1.0, 1.0], [2.0, 2.0], [3.0, 3.0]];
/// let (pca, projected) = Pca::fit_transform(x.view(), 1)?;
/// // All variance lies along the diagonal; the largest entry of a component is positive.
/// let h = 0.5f64.sqrt();
/// assert!((pca.components[[0, 0]] - h).abs() < 1e-9 && (pca.components[[0, 1]] - h).abs() < 1e-9);
/// assert!((pca.explained_variance_ratio[0] - 1.0).abs() < 1e-9);
/// assert_eq!(projected.dim(), (4, 1));
/// # Ok::<(), protein_lm::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Pca {
    pub components: Array2<f64>,
    pub explained_variance: Array1<f64>,
    pub explained_variance_ratio: Array1<f64>,
    pub singular_values: Array1<f64>,
    pub mean: Array1<f64>,
}

impl Pca {
    /// Fits `n_components` principal components of `x` (one row per sample).
    pub fn fit(x: ArrayView2<f64>, n_components: usize) -> Result<Self> {
        Ok(Self::fit_centred(x, n_components)?.0)
    }

    /// Projects `x` onto the components: `(x - mean) · componentsᵀ`.
    pub fn transform(&self, x: ArrayView2<f64>) -> Result<Array2<f64>> {
        if x.ncols() != self.mean.len() {
            return Err(Error::invalid(format!("PCA was fitted on {} features, got {}", self.mean.len(), x.ncols())));
        }
        Ok(centre(x, &self.mean).dot(&self.components.t()))
    }

    /// `fit` then `transform` on the same data (centring it once).
    pub fn fit_transform(x: ArrayView2<f64>, n_components: usize) -> Result<(Self, Array2<f64>)> {
        let (pca, xc) = Self::fit_centred(x, n_components)?;
        let y = xc.dot(&pca.components.t());
        Ok((pca, y))
    }

    fn fit_centred(x: ArrayView2<f64>, n_components: usize) -> Result<(Self, Array2<f64>)> {
        let (n, d) = x.dim();
        if n < 2 {
            return Err(Error::invalid(format!("PCA needs at least 2 samples, got {n}")));
        }
        if n_components == 0 || n_components > n.min(d) {
            return Err(Error::invalid(format!(
                "n_components = {n_components} must be between 1 and min(n_samples, n_features) = {}",
                n.min(d)
            )));
        }
        if x.iter().any(|v| !v.is_finite()) {
            return Err(Error::invalid("PCA input contains NaN or infinite values"));
        }
        let mean = x.mean_axis(Axis(0)).expect("n >= 2");
        let xc = centre(x, &mean);
        let cov = covariance(xc.view(), n);
        let total_var: f64 = cov.diag().sum();
        let (values, vectors) = top_eigen(&cov, n_components);
        let mut components = vectors;
        for mut row in components.rows_mut() {
            let mut best = 0;
            for (j, v) in row.iter().enumerate() {
                if v.abs() > row[best].abs() {
                    best = j;
                }
            }
            if row[best] < 0.0 {
                row.mapv_inplace(|v| -v);
            }
        }
        let explained_variance = values.mapv(|v| v.max(0.0));
        let explained_variance_ratio = explained_variance.mapv(|v| v / total_var);
        let singular_values = explained_variance.mapv(|v| (v * (n - 1) as f64).sqrt());
        Ok((Self { components, explained_variance, explained_variance_ratio, singular_values, mean }, xc))
    }
}

/// `x - mean` row by row (ndarray's broadcasting subtraction is several times slower).
fn centre(x: ArrayView2<f64>, mean: &Array1<f64>) -> Array2<f64> {
    let mut xc = x.as_standard_layout().into_owned();
    let m = mean.as_slice().expect("owned 1-D array is contiguous");
    xc.as_slice_mut().expect("standard layout").par_chunks_mut(m.len().max(1) * 64).for_each(|rows| {
        for row in rows.chunks_mut(m.len().max(1)) {
            for (v, &mu) in row.iter_mut().zip(m) {
                *v -= mu;
            }
        }
    });
    xc
}

/// `xcᵀ xc / (n - 1)`. The matrix is symmetric, so only the blocks on and above the diagonal are
/// multiplied (column blocks of 128, one GEMM each, in parallel) and mirrored: each entry comes
/// from a single GEMM, so the result does not depend on the thread count.
fn covariance(xc: ArrayView2<f64>, n: usize) -> Array2<f64> {
    const BLOCK: usize = 128;
    let d = xc.ncols();
    let starts: Vec<usize> = (0..d).step_by(BLOCK).collect();
    let pairs: Vec<(usize, usize)> =
        starts.iter().enumerate().flat_map(|(a, &i)| starts[a..].iter().map(move |&j| (i, j))).collect();
    let blocks: Vec<Array2<f64>> = pairs
        .par_iter()
        .map(|&(i, j)| {
            let a = xc.slice(s![.., i..(i + BLOCK).min(d)]);
            let b = xc.slice(s![.., j..(j + BLOCK).min(d)]);
            a.t().dot(&b)
        })
        .collect();
    let mut cov = Array2::<f64>::zeros((d, d));
    let scale = 1.0 / (n - 1) as f64;
    for (&(i, j), block) in pairs.iter().zip(&blocks) {
        for ((r, c), &v) in block.indexed_iter() {
            cov[[i + r, j + c]] = v * scale;
            cov[[j + c, i + r]] = v * scale;
        }
    }
    cov
}

/// The `k` largest eigenvalues (descending) of symmetric `c` and their eigenvectors as rows.
fn top_eigen(c: &Array2<f64>, k: usize) -> (Array1<f64>, Array2<f64>) {
    let d = c.nrows();
    let b = k + KRYLOV_PAD;
    if d <= 128 || 4 * b > d {
        return full_top(c, k);
    }
    let steps = KRYLOV_STEPS.min(d / (2 * b)).max(2);
    block_krylov(c, k, b, steps).unwrap_or_else(|| full_top(c, k))
}

/// Extra vectors in the Krylov block beyond the `k` wanted.
const KRYLOV_PAD: usize = 8;
/// Blocks per restart (the basis holds `steps × b` vectors).
const KRYLOV_STEPS: usize = 8;
/// Restarts before giving up on the Krylov solver and using the full one.
const KRYLOV_RESTARTS: usize = 200;

fn full_top(c: &Array2<f64>, k: usize) -> (Array1<f64>, Array2<f64>) {
    let (values, vectors) = symmetric_eigen(c);
    let d = c.nrows();
    let idx: Vec<usize> = (0..k).map(|i| d - 1 - i).collect();
    (Array1::from_iter(idx.iter().map(|&i| values[i])), vectors.select(Axis(0), &idx))
}

/// Makes the rows of `block` orthonormal and orthogonal to the (orthonormal) rows of `basis`:
/// block classical Gram–Schmidt against the basis then modified Gram–Schmidt within the block, each
/// twice. A row with nothing left after projection (the Krylov space became invariant) is replaced
/// by a random direction, so the basis keeps its size.
fn orthonormalize_against(basis: ArrayView2<f64>, block: &mut Array2<f64>, rng: &mut Rng) {
    let d = block.ncols();
    for _ in 0..2 {
        if basis.nrows() > 0 {
            let coef = block.dot(&basis.t());
            *block -= &coef.dot(&basis);
        }
        for i in 0..block.nrows() {
            let (done, mut rest) = block.view_mut().split_at(Axis(0), i);
            let mut row = rest.row_mut(0);
            for prev in done.rows() {
                let dot = row.dot(&prev);
                row.scaled_add(-dot, &prev);
            }
            let norm = row.dot(&row).sqrt();
            if norm > 1e-300 {
                row /= norm;
            } else {
                row.assign(&Array1::from_shape_fn(d, |_| rng.normal() / (d as f64).sqrt()));
            }
        }
    }
}

/// `q · c` in fixed column blocks of 128 run in parallel (each block packs only its columns of
/// `c`, and the result does not depend on the thread count).
fn block_times_matrix(q: ArrayView2<f64>, c: &Array2<f64>) -> Array2<f64> {
    const COLS: usize = 128;
    let n = c.ncols();
    let starts: Vec<usize> = (0..n).step_by(COLS).collect();
    let parts: Vec<Array2<f64>> = starts.par_iter().map(|&j| q.dot(&c.slice(s![.., j..(j + COLS).min(n)]))).collect();
    let mut z = Array2::<f64>::zeros((q.nrows(), n));
    for (&j, part) in starts.iter().zip(&parts) {
        z.slice_mut(s![.., j..j + part.ncols()]).assign(part);
    }
    z
}

/// Restarted block Krylov (block Lanczos with full reorthogonalisation): the basis
/// `[Q, CQ, C²Q, …]` of `steps` blocks of `b` vectors, Rayleigh–Ritz on it, and a restart from the
/// best `b` Ritz vectors until the `k` wanted pairs have residual `‖C v − λ v‖ ≤ 1e-11 λ₁`.
/// A Krylov space converges like a Chebyshev filter of the same degree, without its loss of
/// accuracy on wide spectra, and each step is one pass over `C` — which, at 768 × 768, is read from
/// memory rather than cache, so passes are what costs.
fn block_krylov(c: &Array2<f64>, k: usize, b: usize, steps: usize) -> Option<(Array1<f64>, Array2<f64>)> {
    let d = c.nrows();
    let m = b * steps;
    let mut rng = Rng::new(0x9CA);
    let mut start = Array2::from_shape_fn((b, d), |_| rng.normal());
    orthonormalize_against(ArrayView2::from_shape((0, d), &[]).expect("empty"), &mut start, &mut rng);
    for _ in 0..KRYLOV_RESTARTS {
        let mut basis = Array2::<f64>::zeros((m, d)); // rows: orthonormal basis
        let mut image = Array2::<f64>::zeros((m, d)); // rows: C times the basis rows
        basis.slice_mut(s![..b, ..]).assign(&start);
        for j in 0..steps {
            let rows = j * b..(j + 1) * b;
            let cz = block_times_matrix(basis.slice(s![rows.clone(), ..]), c);
            image.slice_mut(s![rows.clone(), ..]).assign(&cz);
            if j + 1 < steps {
                let mut next = cz;
                orthonormalize_against(basis.slice(s![..rows.end, ..]), &mut next, &mut rng);
                basis.slice_mut(s![rows.end..rows.end + b, ..]).assign(&next);
            }
        }
        let h = image.dot(&basis.t()); // Vᵀ C V
        let h = (&h + &h.t()) * 0.5;
        let (theta, s) = symmetric_eigen(&h); // ascending; rows of s are eigenvectors
        let order: Vec<usize> = (0..m).rev().take(b).collect();
        let theta = Array1::from_iter(order.iter().map(|&i| theta[i]));
        let s = s.select(Axis(0), &order);
        let y = s.dot(&basis); // Ritz vectors as rows
        let cy = s.dot(&image); // C y_i
        let scale = theta[0].abs().max(f64::MIN_POSITIVE);
        let converged = (0..k).all(|i| {
            let r = &cy.row(i) - &(&y.row(i) * theta[i]);
            r.dot(&r).sqrt() <= 1e-11 * scale
        });
        if converged {
            return Some((theta.slice(s![..k]).to_owned(), y.slice(s![..k, ..]).to_owned()));
        }
        start = y;
        orthonormalize_against(ArrayView2::from_shape((0, d), &[]).expect("empty"), &mut start, &mut rng);
    }
    None
}

/// All eigenpairs of a symmetric matrix: eigenvalues ascending and eigenvectors as the rows of the
/// second result (Householder tridiagonalisation then implicit QL, EISPACK `tred2` + `tql2`).
pub(crate) fn symmetric_eigen(a: &Array2<f64>) -> (Vec<f64>, Array2<f64>) {
    let n = a.nrows();
    if n == 0 {
        return (Vec::new(), Array2::zeros((0, 0)));
    }
    let mut v: Vec<f64> = a.iter().copied().collect();
    let at = |i: usize, j: usize| i * n + j;
    let mut d = vec![0.0; n];
    let mut e = vec![0.0; n];
    // tred2
    for j in 0..n {
        d[j] = v[at(n - 1, j)];
    }
    for i in (1..n).rev() {
        let mut scale = 0.0;
        let mut h = 0.0;
        for dk in d.iter().take(i) {
            scale += dk.abs();
        }
        if scale == 0.0 {
            e[i] = d[i - 1];
            for j in 0..i {
                d[j] = v[at(i - 1, j)];
                v[at(i, j)] = 0.0;
                v[at(j, i)] = 0.0;
            }
        } else {
            for dk in d.iter_mut().take(i) {
                *dk /= scale;
                h += *dk * *dk;
            }
            let mut f = d[i - 1];
            let mut g = h.sqrt();
            if f > 0.0 {
                g = -g;
            }
            e[i] = scale * g;
            h -= f * g;
            d[i - 1] = f - g;
            for ej in e.iter_mut().take(i) {
                *ej = 0.0;
            }
            for j in 0..i {
                f = d[j];
                v[at(j, i)] = f;
                g = e[j] + v[at(j, j)] * f;
                for kk in (j + 1)..i {
                    g += v[at(kk, j)] * d[kk];
                    e[kk] += v[at(kk, j)] * f;
                }
                e[j] = g;
            }
            f = 0.0;
            for j in 0..i {
                e[j] /= h;
                f += e[j] * d[j];
            }
            let hh = f / (h + h);
            for j in 0..i {
                e[j] -= hh * d[j];
            }
            for j in 0..i {
                f = d[j];
                g = e[j];
                for kk in j..i {
                    v[at(kk, j)] -= f * e[kk] + g * d[kk];
                }
                d[j] = v[at(i - 1, j)];
                v[at(i, j)] = 0.0;
            }
        }
        d[i] = h;
    }
    for i in 0..n - 1 {
        v[at(n - 1, i)] = v[at(i, i)];
        v[at(i, i)] = 1.0;
        let h = d[i + 1];
        if h != 0.0 {
            for kk in 0..=i {
                d[kk] = v[at(kk, i + 1)] / h;
            }
            for j in 0..=i {
                let mut g = 0.0;
                for kk in 0..=i {
                    g += v[at(kk, i + 1)] * v[at(kk, j)];
                }
                for kk in 0..=i {
                    v[at(kk, j)] -= g * d[kk];
                }
            }
        }
        for kk in 0..=i {
            v[at(kk, i + 1)] = 0.0;
        }
    }
    for j in 0..n {
        d[j] = v[at(n - 1, j)];
        v[at(n - 1, j)] = 0.0;
    }
    v[at(n - 1, n - 1)] = 1.0;
    e[0] = 0.0;
    // tql2 on w = vᵀ (eigenvectors as rows, so each rotation touches two contiguous rows)
    let mut w = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            w[j * n + i] = v[at(i, j)];
        }
    }
    for i in 1..n {
        e[i - 1] = e[i];
    }
    e[n - 1] = 0.0;
    let mut f = 0.0;
    let mut tst1: f64 = 0.0;
    let eps = f64::EPSILON;
    for l in 0..n {
        tst1 = tst1.max(d[l].abs() + e[l].abs());
        let mut m = l;
        while m < n - 1 && e[m].abs() > eps * tst1 {
            m += 1;
        }
        if m > l {
            for _iter in 0..200 {
                let mut g = d[l];
                let mut p = (d[l + 1] - g) / (2.0 * e[l]);
                let mut r = p.hypot(1.0);
                if p < 0.0 {
                    r = -r;
                }
                d[l] = e[l] / (p + r);
                d[l + 1] = e[l] * (p + r);
                let dl1 = d[l + 1];
                let mut h = g - d[l];
                for di in d.iter_mut().skip(l + 2) {
                    *di -= h;
                }
                f += h;
                p = d[m];
                let (mut c, mut c2, mut c3) = (1.0, 1.0, 1.0);
                let el1 = e[l + 1];
                let (mut s, mut s2) = (0.0, 0.0);
                for i in (l..m).rev() {
                    c3 = c2;
                    c2 = c;
                    s2 = s;
                    g = c * e[i];
                    h = c * p;
                    r = p.hypot(e[i]);
                    e[i + 1] = s * r;
                    s = e[i] / r;
                    c = p / r;
                    p = c * d[i] - s * g;
                    d[i + 1] = h + s * (c * g + s * d[i]);
                    let (lo, hi) = w.split_at_mut((i + 1) * n);
                    let wi = &mut lo[i * n..];
                    let wi1 = &mut hi[..n];
                    for (a0, a1) in wi.iter_mut().zip(wi1.iter_mut()) {
                        let t = *a1;
                        *a1 = s * *a0 + c * t;
                        *a0 = c * *a0 - s * t;
                    }
                }
                p = -s * s2 * c3 * el1 * e[l] / dl1;
                e[l] = s * p;
                d[l] = c * p;
                if e[l].abs() <= eps * tst1 {
                    break;
                }
            }
        }
        d[l] += f;
        e[l] = 0.0;
    }
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| d[i].total_cmp(&d[j]));
    let values = order.iter().map(|&i| d[i]).collect();
    let w = Array2::from_shape_vec((n, n), w).expect("n x n");
    (values, w.select(Axis(0), &order))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eigen_reconstructs_a_symmetric_matrix() {
        let mut rng = Rng::new(3);
        let m = Array2::from_shape_fn((30, 30), |_| rng.normal());
        let a = &m + &m.t();
        let (vals, vecs) = symmetric_eigen(&a);
        let recon = vecs.t().dot(&Array2::from_diag(&Array1::from(vals))).dot(&vecs);
        let err = (&recon - &a).iter().fold(0.0f64, |acc, v| acc.max(v.abs()));
        assert!(err < 1e-12, "{err}");
        let ortho = vecs.dot(&vecs.t()) - Array2::<f64>::eye(30);
        assert!(ortho.iter().all(|v| v.abs() < 1e-12));
    }

    /// The Krylov solver against the full one on spectra that are hard for it: eigenvalues over 14
    /// orders of magnitude, a cluster of near-equal ones at the cut, and a rank-deficient matrix.
    #[test]
    fn krylov_top_eigenpairs_equal_the_full_solver() {
        let d = 300;
        let mut rng = Rng::new(11);
        let mut q = Array2::from_shape_fn((d, d), |_| rng.normal());
        orthonormalize_against(ArrayView2::from_shape((0, d), &[]).unwrap(), &mut q, &mut rng);
        let spectra: [Vec<f64>; 3] = [
            (0..d).map(|i| 1e4 * 10f64.powf(-(i as f64) * 14.0 / d as f64)).collect(),
            (0..d)
                .map(|i| {
                    if i < 10 {
                        100.0 - i as f64
                    } else if i < 30 {
                        50.0 + 1e-3 * i as f64
                    } else {
                        1.0
                    }
                })
                .collect(),
            (0..d).map(|i| if i < 7 { (7 - i) as f64 } else { 0.0 }).collect(),
        ];
        for (case, lambda) in spectra.iter().enumerate() {
            let c = q.t().dot(&Array2::from_diag(&Array1::from(lambda.clone()))).dot(&q);
            let c = (&c + &c.t()) * 0.5;
            let k = 12;
            let (kv, kvec) = block_krylov(&c, k, k + KRYLOV_PAD, 8).expect("converges");
            let (fv, fvec) = full_top(&c, k + 1);
            for i in 0..k {
                assert!((kv[i] - fv[i]).abs() <= 1e-10 * fv[0], "case {case} value {i}: {} vs {}", kv[i], fv[i]);
                // Vectors are defined up to sign, and only where the eigenvalue is simple.
                let simple = (i == 0 || fv[i - 1] - fv[i] > 1e-6 * fv[0]) && fv[i] - fv[i + 1] > 1e-6 * fv[0];
                if simple && fv[i] > 1e-9 * fv[0] {
                    let dot = kvec.row(i).dot(&fvec.row(i)).abs();
                    assert!((1.0 - dot).abs() < 1e-9, "case {case} vector {i}: |cos| = {dot}");
                }
            }
        }
    }

    #[test]
    fn rejects_bad_input() {
        let x = Array2::<f64>::zeros((5, 3));
        assert!(Pca::fit(x.view(), 0).is_err());
        assert!(Pca::fit(x.view(), 4).is_err());
        let mut y = Array2::<f64>::ones((5, 3));
        y[(1, 1)] = f64::NAN;
        assert!(Pca::fit(y.view(), 2).is_err());
        let pca = Pca::fit(Array2::from_shape_fn((5, 3), |(i, j)| (i * j) as f64 + (i % 2) as f64).view(), 2).unwrap();
        assert!(pca.transform(Array2::<f64>::zeros((2, 4)).view()).is_err());
    }
}
