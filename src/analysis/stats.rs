//! Descriptive statistics, correlations, t-tests and t-based confidence intervals, each equal to
//! scipy 1.17's / numpy's on the same inputs (fixture `tests/fixtures/analysis/metrics_stats.json`).
//!
//! | here | scipy / numpy | options |
//! |---|---|---|
//! | [`mean`] | `numpy.mean` | |
//! | [`std_dev`] | `numpy.std` | `ddof` (0: population, 1: sample) |
//! | [`sem`] | `scipy.stats.sem` | `ddof=1` |
//! | [`pearson`] | `scipy.stats.pearsonr(x, y).statistic` | |
//! | [`spearman`] | `scipy.stats.spearmanr(x, y).statistic` | ties get average ranks (`scipy.stats.rankdata(method="average")`) |
//! | [`rank_average`] | `scipy.stats.rankdata` | `method="average"` |
//! | [`ttest_ind`] | `scipy.stats.ttest_ind(a, b, equal_var=True)` | two-sided |
//! | [`welch_ttest`] | `scipy.stats.ttest_ind(a, b, equal_var=False)` | two-sided |
//! | [`t_sf`], [`t_cdf`] | `scipy.stats.t.sf`, `scipy.stats.t.cdf` | real `df > 0` |
//! | [`t_quantile`] | `scipy.stats.t.ppf` | |
//! | [`mean_ci`] | `scipy.stats.t.interval(level, n - 1, loc=mean, scale=sem)` | |
//!
//! The t distribution goes through the regularized incomplete beta function
//! `sf(t) = I_{ν/(ν+t²)}(ν/2, 1/2) / 2`, evaluated by its continued fraction (modified Lentz) with the
//! symmetry `I_x(a, b) = 1 − I_{1−x}(b, a)` where the fraction converges slowly; `1 − x` is passed in
//! exactly (`t²/(ν+t²)`), so small p-values keep their relative precision. `ln B(a, b)` comes from
//! Stirling's series, with the difference of the two large `ln Γ` taken term by term. Measured against
//! scipy on the fixture grid (ν from 1 to 1234.5, |t| up to 40, p down to 1e-6): survival function and
//! p-values within 5e-14 relative, quantiles within 1e-14 relative.
//!
//! Degenerate inputs that scipy answers with NaN and a warning (constant input to a correlation, zero
//! variance in both t-test samples) are errors here, as are empty, mismatched or non-finite inputs.
//!
//! ```
//! use protein_lm::analysis::stats::{mean_ci, ttest_rel};
//! // One metric of two models over the same five seeds.
//! let ours = [0.81, 0.79, 0.84, 0.80, 0.82];
//! let baseline = [0.78, 0.77, 0.80, 0.79, 0.78];
//! let ci = mean_ci(&ours, 0.95)?;
//! assert!(ci.lower < ci.mean && ci.mean < ci.upper);
//! let t = ttest_rel(&ours, &baseline)?;
//! assert!(t.statistic > 0.0 && t.p_value < 0.05);
//! # Ok::<(), protein_lm::Error>(())
//! ```

use crate::error::{Error, Result};

fn check_finite(name: &str, v: &[f64], min_len: usize) -> Result<()> {
    if v.len() < min_len {
        return Err(Error::invalid(format!("{name} needs at least {min_len} values, got {}", v.len())));
    }
    if let Some(i) = v.iter().position(|x| !x.is_finite()) {
        return Err(Error::invalid(format!("{name}: value {i} is {} (values must be finite)", v[i])));
    }
    Ok(())
}

/// Arithmetic mean (`numpy.mean`). Errors on empty or non-finite input.
pub fn mean(values: &[f64]) -> Result<f64> {
    check_finite("mean", values, 1)?;
    Ok(values.iter().sum::<f64>() / values.len() as f64)
}

fn sum_sq_dev(values: &[f64], m: f64) -> f64 {
    values.iter().map(|x| (x - m) * (x - m)).sum()
}

/// Standard deviation with `ddof` delta degrees of freedom (`numpy.std(values, ddof=ddof)`): divides
/// by `n - ddof`, so `ddof = 1` is the sample standard deviation. Errors when `n <= ddof`.
pub fn std_dev(values: &[f64], ddof: usize) -> Result<f64> {
    check_finite("std_dev", values, ddof + 1)?;
    let m = mean(values)?;
    Ok((sum_sq_dev(values, m) / (values.len() - ddof) as f64).sqrt())
}

/// Standard error of the mean, `std_dev(values, 1) / sqrt(n)` (`scipy.stats.sem`, `ddof=1`).
pub fn sem(values: &[f64]) -> Result<f64> {
    Ok(std_dev(values, 1)? / (values.len() as f64).sqrt())
}

fn check_pair(x: &[f64], y: &[f64]) -> Result<()> {
    if x.len() != y.len() {
        return Err(Error::invalid(format!("x has {} values but y has {}", x.len(), y.len())));
    }
    check_finite("x", x, 2)?;
    check_finite("y", y, 2)
}

fn pearson_unchecked(x: &[f64], y: &[f64]) -> Result<f64> {
    let n = x.len() as f64;
    let mx = x.iter().sum::<f64>() / n;
    let my = y.iter().sum::<f64>() / n;
    let (mut sxy, mut sxx, mut syy) = (0.0, 0.0, 0.0);
    for (a, b) in x.iter().zip(y) {
        let (da, db) = (a - mx, b - my);
        sxy += da * db;
        sxx += da * da;
        syy += db * db;
    }
    if sxx == 0.0 || syy == 0.0 {
        return Err(Error::invalid("correlation is undefined for constant input"));
    }
    Ok((sxy / (sxx.sqrt() * syy.sqrt())).clamp(-1.0, 1.0))
}

/// Pearson's correlation coefficient r (`scipy.stats.pearsonr(x, y).statistic`). Errors on constant
/// input (scipy: NaN with a warning), fewer than 2 points, mismatched lengths, non-finite values.
pub fn pearson(x: &[f64], y: &[f64]) -> Result<f64> {
    check_pair(x, y)?;
    pearson_unchecked(x, y)
}

/// 1-based ranks, ties sharing the average of their positions (`scipy.stats.rankdata`,
/// `method="average"`). Values must be finite.
pub fn rank_average(values: &[f64]) -> Result<Vec<f64>> {
    check_finite("rank_average", values, 1)?;
    let mut idx: Vec<usize> = (0..values.len()).collect();
    idx.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < idx.len() {
        let mut end = start + 1;
        while end < idx.len() && values[idx[end]] == values[idx[start]] {
            end += 1;
        }
        // Positions start+1 ..= end, averaged.
        let r = (start + 1 + end) as f64 / 2.0;
        for &i in &idx[start..end] {
            ranks[i] = r;
        }
        start = end;
    }
    Ok(ranks)
}

/// Spearman's rank correlation ρ: Pearson's r of the average ranks
/// (`scipy.stats.spearmanr(x, y).statistic`). Same errors as [`pearson`].
///
/// ```
/// use protein_lm::analysis::stats::spearman;
/// // Any increasing relation has ρ = 1, even a non-linear one.
/// assert!((spearman(&[1.0, 2.0, 3.0, 4.0], &[1.0, 8.0, 27.0, 64.0])? - 1.0).abs() < 1e-12);
/// assert!((spearman(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0])? + 1.0).abs() < 1e-12);
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn spearman(x: &[f64], y: &[f64]) -> Result<f64> {
    check_pair(x, y)?;
    pearson_unchecked(&rank_average(x)?, &rank_average(y)?)
}

/// A two-sample t-test: the statistic (positive when `a`'s mean is larger), degrees of freedom and
/// two-sided p-value.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TTest {
    pub statistic: f64,
    pub df: f64,
    pub p_value: f64,
}

fn two_sided(statistic: f64, df: f64) -> TTest {
    TTest { statistic, df, p_value: (2.0 * t_sf(statistic.abs(), df)).min(1.0) }
}

/// Student's t-test for two independent samples with equal variances (pooled):
/// `scipy.stats.ttest_ind(a, b, equal_var=True)`, two-sided. Each sample needs 2 values; errors when
/// both samples are constant (scipy: NaN).
pub fn ttest_ind(a: &[f64], b: &[f64]) -> Result<TTest> {
    check_finite("a", a, 2)?;
    check_finite("b", b, 2)?;
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (ma, mb) = (mean(a)?, mean(b)?);
    let df = na + nb - 2.0;
    let pooled = (sum_sq_dev(a, ma) + sum_sq_dev(b, mb)) / df;
    let denom = (pooled * (1.0 / na + 1.0 / nb)).sqrt();
    if denom == 0.0 {
        return Err(Error::invalid("t-test is undefined when both samples are constant"));
    }
    Ok(two_sided((ma - mb) / denom, df))
}

/// Welch's t-test (unequal variances, Welch–Satterthwaite degrees of freedom):
/// `scipy.stats.ttest_ind(a, b, equal_var=False)`, two-sided. Same errors as [`ttest_ind`].
///
/// ```
/// use protein_lm::analysis::stats::welch_ttest;
/// let t = welch_ttest(&[1.0, 2.0, 3.0], &[4.0, 5.0, 6.0])?;
/// // Means 2 and 5, both variances 1: t = −3 / √(2/3), and Welch's df is 4 for equal variances and sizes.
/// assert!((t.statistic + 3.0 / (2.0f64 / 3.0).sqrt()).abs() < 1e-12);
/// assert!((t.df - 4.0).abs() < 1e-12);
/// assert!(t.p_value > 0.02 && t.p_value < 0.025); // scipy: 0.0213
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn welch_ttest(a: &[f64], b: &[f64]) -> Result<TTest> {
    check_finite("a", a, 2)?;
    check_finite("b", b, 2)?;
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (ma, mb) = (mean(a)?, mean(b)?);
    let va = sum_sq_dev(a, ma) / (na - 1.0) / na;
    let vb = sum_sq_dev(b, mb) / (nb - 1.0) / nb;
    if va + vb == 0.0 {
        return Err(Error::invalid("t-test is undefined when both samples are constant"));
    }
    let df = (va + vb) * (va + vb) / (va * va / (na - 1.0) + vb * vb / (nb - 1.0));
    Ok(two_sided((ma - mb) / (va + vb).sqrt(), df))
}

/// The paired t-test: `scipy.stats.ttest_rel(a, b)`, two-sided — a one-sample t-test of the
/// differences `a[i] − b[i]` (e.g. two models scored on the same splits with the same seeds). Needs
/// 2 pairs of finite values; errors when the lengths differ or every difference is the same.
///
/// ```
/// use protein_lm::analysis::stats::ttest_rel;
/// // Differences 1, 1, 2, 1: mean 1.25, standard error 0.25, so t = 5 on 3 degrees of freedom.
/// let t = ttest_rel(&[1.0, 2.0, 3.0, 4.0], &[0.0, 1.0, 1.0, 3.0])?;
/// assert!((t.statistic - 5.0).abs() < 1e-12 && t.df == 3.0);
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn ttest_rel(a: &[f64], b: &[f64]) -> Result<TTest> {
    if a.len() != b.len() {
        return Err(Error::invalid(format!("paired t-test: {} values against {}", a.len(), b.len())));
    }
    check_finite("a", a, 2)?;
    check_finite("b", b, 2)?;
    let d: Vec<f64> = a.iter().zip(b).map(|(x, y)| x - y).collect();
    let s = sem(&d)?;
    if s == 0.0 {
        return Err(Error::invalid("paired t-test is undefined when every difference is the same"));
    }
    Ok(two_sided(mean(&d)? / s, (d.len() - 1) as f64))
}

/// A t-based confidence interval for a mean.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeanCi {
    pub mean: f64,
    pub lower: f64,
    pub upper: f64,
    /// Standard error of the mean (`ddof = 1`).
    pub sem: f64,
    /// Degrees of freedom, `n - 1`.
    pub df: f64,
}

/// The two-sided `level` confidence interval for the mean of `values` (e.g. one metric over repeated
/// runs): `mean ± t_quantile((1 + level) / 2, n - 1) · sem`, which is
/// `scipy.stats.t.interval(level, n - 1, loc=mean, scale=sem)`. Needs 2 values and `0 < level < 1`.
/// Constant values give the zero-width interval `[mean, mean]` (scipy returns NaN for `scale=0`).
///
/// ```
/// use protein_lm::analysis::stats::mean_ci;
/// let ci = mean_ci(&[1.0, 2.0, 3.0], 0.95)?;
/// // Mean 2, standard error 1/√3, t quantile 4.3027 on 2 degrees of freedom.
/// assert_eq!(ci.mean, 2.0);
/// assert!((ci.upper - (2.0 + 4.302652729911275 / 3f64.sqrt())).abs() < 1e-9);
/// assert!((ci.mean - ci.lower - (ci.upper - ci.mean)).abs() < 1e-12);
/// # Ok::<(), protein_lm::Error>(())
/// ```
pub fn mean_ci(values: &[f64], level: f64) -> Result<MeanCi> {
    if !(level > 0.0 && level < 1.0) {
        return Err(Error::invalid(format!("confidence level must be in (0, 1), got {level}")));
    }
    check_finite("mean_ci", values, 2)?;
    let m = mean(values)?;
    let s = sem(values)?;
    let df = (values.len() - 1) as f64;
    let half = t_isf((1.0 - level) / 2.0, df) * s;
    Ok(MeanCi { mean: m, lower: m - half, upper: m + half, sem: s, df })
}

/// `ln Γ(x)` for `x > 0`: Stirling's series after shifting `x` to at least 10.
fn ln_gamma(x: f64) -> f64 {
    let mut shift = 0.0;
    let mut z = x;
    let mut prod = 1.0;
    while z < 10.0 {
        prod *= z;
        z += 1.0;
    }
    if prod != 1.0 {
        shift = prod.ln();
    }
    (z - 0.5) * z.ln() - z + 0.5 * (2.0 * std::f64::consts::PI).ln() + stirling_tail(z) - shift
}

/// Stirling's series part of `ln Γ(z)` beyond `(z − ½) ln z − z + ½ ln 2π`, for `z >= 10`.
fn stirling_tail(z: f64) -> f64 {
    let z2 = 1.0 / (z * z);
    (1.0 / 12.0
        + z2 * (-1.0 / 360.0
            + z2 * (1.0 / 1260.0
                + z2 * (-1.0 / 1680.0 + z2 * (1.0 / 1188.0 + z2 * (-691.0 / 360360.0 + z2 * (1.0 / 156.0)))))))
        / z
}

/// `ln B(a, b) = ln Γ(a) + ln Γ(b) − ln Γ(a + b)`. When the larger argument is at least 10, the
/// difference `ln Γ(big + small) − ln Γ(big)` is taken from Stirling's series term by term, so the large
/// `ln Γ` values never cancel (that cancellation cost ~1e-12 relative at a thousand degrees of freedom).
fn ln_beta(a: f64, b: f64) -> f64 {
    let (small, big) = if a < b { (a, b) } else { (b, a) };
    if big < 10.0 {
        return ln_gamma(a) + ln_gamma(b) - ln_gamma(a + b);
    }
    let s = small;
    let diff = (big - 0.5) * (s / big).ln_1p() + s * (big + s).ln() - s + stirling_tail(big + s) - stirling_tail(big);
    ln_gamma(small) - diff
}

/// Continued fraction for `I_x(a, b)` (modified Lentz), converging for `x < (a + 1) / (a + b + 2)`.
fn beta_cf(a: f64, b: f64, x: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let (qab, qap, qam) = (a + b, a + 1.0, a - 1.0);
    let mut c = 1.0;
    let mut d = 1.0 - qab * x / qap;
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut h = d;
    for m in 1..10_000 {
        let m = m as f64;
        let m2 = 2.0 * m;
        for aa in [m * (b - m) * x / ((qam + m2) * (a + m2)), -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))] {
            d = 1.0 + aa * d;
            if d.abs() < TINY {
                d = TINY;
            }
            c = 1.0 + aa / c;
            if c.abs() < TINY {
                c = TINY;
            }
            d = 1.0 / d;
            h *= d * c;
        }
        if (d * c - 1.0).abs() < 1e-16 {
            break;
        }
    }
    h
}

/// Regularized incomplete beta `I_x(a, b)`, with `y = 1 − x` given exactly by the caller.
fn inc_beta(a: f64, b: f64, x: f64, y: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if y <= 0.0 {
        return 1.0;
    }
    // ln x and ln(1 − x) through ln_1p of the smaller one, so neither loses digits near 1.
    let (ln_x, ln_y) = if x < y { (x.ln(), (-x).ln_1p()) } else { ((-y).ln_1p(), y.ln()) };
    let ln_front = a * ln_x + b * ln_y - ln_beta(a, b);
    if x < (a + 1.0) / (a + b + 2.0) {
        ln_front.exp() * beta_cf(a, b, x) / a
    } else {
        1.0 - ln_front.exp() * beta_cf(b, a, y) / b
    }
}

/// Survival function `P(T > t)` of Student's t with `df > 0` degrees of freedom (`scipy.stats.t.sf`).
/// NaN for `df <= 0` or NaN arguments.
pub fn t_sf(t: f64, df: f64) -> f64 {
    if t.is_nan() || df.is_nan() || df <= 0.0 {
        return f64::NAN;
    }
    if t.is_infinite() {
        return if t > 0.0 { 0.0 } else { 1.0 };
    }
    let t2 = t * t;
    let (x, y) = (df / (df + t2), t2 / (df + t2));
    let tail = 0.5 * inc_beta(df / 2.0, 0.5, x, y);
    if t >= 0.0 {
        tail
    } else {
        1.0 - tail
    }
}

/// Cumulative distribution `P(T <= t)` of Student's t (`scipy.stats.t.cdf`).
pub fn t_cdf(t: f64, df: f64) -> f64 {
    t_sf(-t, df)
}

/// The `t` with `t_sf(t, df) = q`, for `0 < q <= 1/2`, by bisection to the last bit.
fn t_isf(q: f64, df: f64) -> f64 {
    let mut lo = 0.0;
    let mut hi = 1.0;
    while t_sf(hi, df) > q {
        lo = hi;
        hi *= 2.0;
        if hi > 1e300 {
            return f64::INFINITY;
        }
    }
    loop {
        let mid = 0.5 * (lo + hi);
        if mid <= lo || mid >= hi {
            break;
        }
        if t_sf(mid, df) > q {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    // The side whose survival is nearer q.
    if (t_sf(lo, df) - q).abs() <= (t_sf(hi, df) - q).abs() {
        lo
    } else {
        hi
    }
}

/// Quantile (inverse CDF) of Student's t: the `t` with `t_cdf(t, df) = p` (`scipy.stats.t.ppf`),
/// found by bisection on the survival function to the last bit. Errors unless `0 < p < 1`, `df > 0`.
pub fn t_quantile(p: f64, df: f64) -> Result<f64> {
    if !(p > 0.0 && p < 1.0) {
        return Err(Error::invalid(format!("probability must be in (0, 1), got {p}")));
    }
    if !(df > 0.0 && df.is_finite()) {
        return Err(Error::invalid(format!("degrees of freedom must be positive and finite, got {df}")));
    }
    Ok(if p == 0.5 {
        0.0
    } else if p > 0.5 {
        t_isf(1.0 - p, df)
    } else {
        -t_isf(p, df)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paired_t_test_is_the_one_sample_test_of_the_differences() -> Result<()> {
        // scipy.stats.ttest_rel([1, 2, 3, 4, 5], [2, 2, 4, 4, 7]): t = −2.1380899352993947, p = 0.0993.
        let t = ttest_rel(&[1.0, 2.0, 3.0, 4.0, 5.0], &[2.0, 2.0, 4.0, 4.0, 7.0])?;
        assert!((t.statistic - -2.1380899352993947).abs() < 1e-12, "{t:?}");
        assert_eq!(t.df, 4.0);
        assert!((t.p_value - 0.0993).abs() < 5e-4, "{t:?}");
        assert!(ttest_rel(&[1.0, 2.0], &[1.0]).unwrap_err().to_string().contains("2 values against 1"));
        assert!(ttest_rel(&[1.0, 2.0], &[0.0, 1.0]).is_err(), "constant differences");
        Ok(())
    }

    #[test]
    fn ln_gamma_known_values() {
        assert!((ln_gamma(1.0)).abs() < 1e-14, "{}", ln_gamma(1.0));
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-14);
        assert!((ln_gamma(10.0) - 362880f64.ln()).abs() < 1e-13);
    }

    #[test]
    fn t_sf_closed_forms() {
        // df = 1 is Cauchy: sf(t) = 1/2 - atan(t)/pi.
        for t in [0.1f64, 1.0, 3.0, 30.0] {
            let want = 0.5 - t.atan() / std::f64::consts::PI;
            assert!((t_sf(t, 1.0) - want).abs() / want < 1e-13, "t={t}");
        }
        // df = 2: sf(t) = (1 - t / sqrt(2 + t^2)) / 2.
        for t in [0.5f64, 2.0] {
            let want = 0.5 * (1.0 - t / (2.0 + t * t).sqrt());
            assert!((t_sf(t, 2.0) - want).abs() / want < 1e-13);
        }
        assert_eq!(t_sf(0.0, 5.0), 0.5);
    }

    #[test]
    fn quantile_inverts_cdf() {
        for df in [1.0, 2.5, 9.0, 100.0] {
            for p in [0.025, 0.3, 0.975] {
                let t = t_quantile(p, df).unwrap();
                assert!((t_cdf(t, df) - p).abs() < 1e-14, "df={df} p={p}");
            }
        }
    }
}
