//! The textbook statistics of the insights (SPEC section 5), on statrs'
//! distributions: no special function is written here, only the formulas
//! that combine them. Every figure is pinned against scipy in the tests
//! below (the command that computed each expected value is beside it), so
//! an analyst can check any answer with scipy or R.

use statrs::distribution::{Beta, Binomial, ContinuousCDF, DiscreteCDF, Gamma, Normal, Poisson};

/// Two-sided confidence of every interval: 95 %.
pub const CONFIDENCE: f64 = 0.95;

/// The normal quantile of a two-sided 95 % interval (1.959963984540054).
fn z() -> f64 {
    static Z: std::sync::LazyLock<f64> = std::sync::LazyLock::new(|| {
        // Never fails: mean 0 and standard deviation 1 are valid.
        Normal::new(0.0, 1.0)
            .map(|n| n.inverse_cdf(1.0 - (1.0 - CONFIDENCE) / 2.0))
            .unwrap_or(1.959_963_984_540_054)
    });
    *Z
}

/// Wilson score interval of a proportion `x`/`n` (no continuity
/// correction), clamped to [0, 1]; `None` when `n` is 0.
pub fn wilson(x: u64, n: u64) -> Option<(f64, f64)> {
    if n == 0 || x > n {
        return None;
    }
    let (x, n) = (x as f64, n as f64);
    let z = z();
    let z2 = z * z;
    let centre = (x + z2 / 2.0) / (n + z2);
    let half = z / (n + z2) * (x * (n - x) / n + z2 / 4.0).sqrt();
    // The exact ends: 0 successes have 0 as the low end, n the high one 1.
    let low = if x == 0.0 {
        0.0
    } else {
        (centre - half).max(0.0)
    };
    let high = if x == n {
        1.0
    } else {
        (centre + half).min(1.0)
    };
    Some((low, high))
}

/// A quantile of Gamma(`shape`, 1): Newton steps on statrs' cdf and
/// density from the Wilson–Hilferty start, kept inside a bracket (a step
/// that leaves it bisects instead). statrs' own `inverse_cdf` is not used:
/// it steps on its `pdf`, which overflows to infinity from a shape of about
/// 150 (the result is then 0.2 % off, and far off for large shapes); its
/// `ln_pdf` does not overflow.
fn gamma_quantile(shape: f64, p: f64) -> Option<f64> {
    let gamma = Gamma::new(shape, 1.0).ok()?;
    let z = Normal::new(0.0, 1.0).ok()?.inverse_cdf(p);
    let c = 1.0 / (9.0 * shape);
    let mut x = shape * (1.0 - c + z * c.sqrt()).powi(3);
    if !(x > 0.0 && x.is_finite()) {
        x = shape.min(1.0) * 1e-3;
    }
    let (mut low, mut high) = (0.0_f64, f64::INFINITY);
    for _ in 0..200 {
        let miss = gamma.cdf(x) - p;
        if miss == 0.0 {
            break;
        }
        if miss < 0.0 {
            low = x;
        } else {
            high = x;
        }
        let density = statrs::distribution::Continuous::ln_pdf(&gamma, x).exp();
        let mut next = x - miss / density;
        if !(next > low && next < high) {
            next = if high.is_finite() {
                (low + high) / 2.0
            } else {
                2.0 * x
            };
        }
        let done = (next - x).abs() <= 4.0 * f64::EPSILON * x;
        x = next;
        if done {
            break;
        }
    }
    x.is_finite().then_some(x)
}

/// Exact (Garwood) 95 % interval of a Poisson mean from one count `x`:
/// `[chi2(α/2, 2x)/2, chi2(1-α/2, 2x+2)/2]`, the chi-squared quantiles
/// taken as the equal gamma quantiles (shape `x` and `x + 1`).
pub fn garwood(x: u64) -> (f64, f64) {
    let alpha = 1.0 - CONFIDENCE;
    let low = if x == 0 {
        0.0
    } else {
        gamma_quantile(x as f64, alpha / 2.0).unwrap_or(0.0)
    };
    let high = gamma_quantile(x as f64 + 1.0, 1.0 - alpha / 2.0).unwrap_or(f64::INFINITY);
    (low, high)
}

/// [`garwood`] remembered per count: the rows of one answer share few
/// counts, and each interval costs two gamma quantiles.
#[derive(Debug, Default)]
pub struct Garwood(std::collections::HashMap<u64, (f64, f64)>);

impl Garwood {
    pub fn get(&mut self, x: u64) -> (f64, f64) {
        *self.0.entry(x).or_insert_with(|| garwood(x))
    }
}

/// Two-sided exact Poisson p of observing `x` when `expected` was expected:
/// `min(1, 2·min(P(X ≤ x), P(X ≥ x)))`, X ~ Poisson(expected). `None`
/// when nothing was expected (no rate to compare with).
pub fn poisson_p(x: u64, expected: f64) -> Option<f64> {
    if expected.is_nan() || expected <= 0.0 || expected.is_infinite() {
        return None;
    }
    let poisson = Poisson::new(expected).ok()?;
    let at_most = poisson.cdf(x);
    let at_least = if x == 0 { 1.0 } else { poisson.sf(x - 1) };
    Some((2.0 * at_most.min(at_least)).min(1.0))
}

/// Exact (Clopper–Pearson) 95 % interval of a proportion `x`/`n`, from
/// the beta quantiles; `None` when `n` is 0.
pub fn clopper_pearson(x: u64, n: u64) -> Option<(f64, f64)> {
    if n == 0 || x > n {
        return None;
    }
    let alpha = 1.0 - CONFIDENCE;
    let (xf, nf) = (x as f64, n as f64);
    let low = if x == 0 {
        0.0
    } else {
        Beta::new(xf, nf - xf + 1.0).ok()?.inverse_cdf(alpha / 2.0)
    };
    let high = if x == n {
        1.0
    } else {
        Beta::new(xf + 1.0, nf - xf)
            .ok()?
            .inverse_cdf(1.0 - alpha / 2.0)
    };
    Some((low, high))
}

/// One-sided exact binomial p: `P(X ≥ x)` for X ~ Binomial(`n`, `pi`).
pub fn binomial_p_greater(x: u64, n: u64, pi: f64) -> Option<f64> {
    if x > n || !(0.0..=1.0).contains(&pi) {
        return None;
    }
    if x == 0 {
        return Some(1.0);
    }
    let binomial = Binomial::new(pi, n).ok()?;
    Some(binomial.sf(x - 1).clamp(0.0, 1.0))
}

/// Benjamini–Hochberg adjusted p-values (q), in the order of `p`:
/// `q(i) = min over j ≥ rank(i) of m·p(j)/j`, at most 1. As scipy's
/// `false_discovery_control(p, method='bh')`.
pub fn benjamini_hochberg(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|a, b| p[*a].total_cmp(&p[*b]).then(a.cmp(b)));
    let mut q = vec![1.0; m];
    let mut running = 1.0_f64;
    for (rank, &i) in order.iter().enumerate().rev() {
        let adjusted = p[i] * m as f64 / (rank + 1) as f64;
        running = running.min(adjusted);
        // At least p: m/rank ≥ 1, but m·p/m may round below p.
        q[i] = running.min(1.0).max(p[i]);
    }
    q
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Equal to 1e-9 relative (the printed scipy value is exact to ~1e-16).
    fn close(actual: f64, expected: f64) {
        let scale = expected.abs().max(1e-300);
        assert!(
            (actual - expected).abs() / scale < 1e-9,
            "{actual} is not {expected}"
        );
    }

    #[test]
    fn the_normal_quantile_is_scipys() {
        // python3 -c "from scipy.stats import norm; print(repr(norm.ppf(0.975)))"
        close(z(), 1.959963984540054);
    }

    #[test]
    fn wilson_intervals_equal_scipys() {
        // python3 -c "from scipy.stats import binomtest; r=binomtest(3,10).proportion_ci(method='wilson'); print(r.low, r.high)"
        let (low, high) = wilson(3, 10).unwrap();
        close(low, 0.10779126740630102);
        close(high, 0.6032218525388546);
        // python3 -c "from scipy.stats import binomtest; r=binomtest(3,3).proportion_ci(method='wilson'); print(r.low, r.high)"
        let (low, high) = wilson(3, 3).unwrap();
        close(low, 0.4385029682449546);
        assert_eq!(high, 1.0);
        // python3 -c "from scipy.stats import binomtest; r=binomtest(0,25).proportion_ci(method='wilson'); print(r.low, r.high)"
        let (low, high) = wilson(0, 25).unwrap();
        assert_eq!(low, 0.0);
        close(high, 0.1331922509390485);
        // python3 -c "from scipy.stats import binomtest; r=binomtest(263,5000).proportion_ci(method='wilson'); print(r.low, r.high)"
        let (low, high) = wilson(263, 5000).unwrap();
        close(low, 0.04674871022497823);
        close(high, 0.05913822947545888);
        assert_eq!(wilson(0, 0), None);
    }

    #[test]
    fn garwood_intervals_equal_scipys() {
        // python3 -c "from scipy.stats import chi2; x=X; print(chi2.ppf(0.025, 2*x)/2, chi2.ppf(0.975, 2*(x+1))/2)"
        let expected = [
            (0, 0.0, 3.6888794541139354),
            (1, 0.025317807984289876, 5.571643390938898),
            (3, 0.6186721228956014, 8.767273069742323),
            (12, 6.200575108722218, 20.96158504817696),
            (150, 126.95616130124488, 176.0171660970745),
            (5000, 4862.359188694899, 5140.5489485350045),
        ];
        for (x, low, high) in expected {
            let (l, h) = garwood(x);
            if low == 0.0 {
                assert_eq!(l, 0.0);
            } else {
                close(l, low);
            }
            close(h, high);
        }
    }

    #[test]
    fn poisson_p_equals_scipys() {
        // python3 -c "from scipy.stats import poisson; mu=4.2; x=X; print(min(1, 2*min(poisson.cdf(x, mu), poisson.sf(x-1, mu))))"
        let expected = [
            (0, 0.029991153640955413),
            (1, 0.15595399893296813),
            (4, 1.0),
            (9, 0.05586438191604848),
            (20, 4.4831979703877197e-08),
        ];
        for (x, p) in expected {
            close(poisson_p(x, 4.2).unwrap(), p);
        }
        // python3 -c "from scipy.stats import poisson; print(min(1, 2*min(poisson.cdf(150, 100.5), poisson.sf(149, 100.5))))"
        close(poisson_p(150, 100.5).unwrap(), 4.874410195210711e-06);
        assert_eq!(poisson_p(3, 0.0), None);
    }

    #[test]
    fn clopper_pearson_intervals_equal_scipys() {
        // python3 -c "from scipy.stats import binomtest; r=binomtest(X,N).proportion_ci(method='exact'); print(r.low, r.high)"
        let expected = [
            (7, 40, 0.07338272935208498, 0.32779013336159446),
            (0, 12, 0.0, 0.26464846939705117),
            (12, 12, 0.7353515306029488, 1.0),
            (180, 260, 0.6323177021669243, 0.7478503679122079),
        ];
        for (x, n, low, high) in expected {
            let (l, h) = clopper_pearson(x, n).unwrap();
            for (actual, wanted) in [(l, low), (h, high)] {
                if wanted == 0.0 || wanted == 1.0 {
                    assert_eq!(actual, wanted);
                } else {
                    close(actual, wanted);
                }
            }
        }
    }

    #[test]
    fn binomial_p_equals_scipys() {
        // python3 -c "from scipy.stats import binomtest; print(binomtest(30, 40, 0.5, alternative='greater').pvalue)"
        close(
            binomial_p_greater(30, 40, 0.5).unwrap(),
            0.0011107168866146822,
        );
        // python3 -c "from scipy.stats import binomtest; print(binomtest(180, 260, 0.52, alternative='greater').pvalue)"
        close(
            binomial_p_greater(180, 260, 0.52).unwrap(),
            1.2087315240541156e-08,
        );
        assert_eq!(binomial_p_greater(0, 10, 0.3), Some(1.0));
    }

    #[test]
    fn benjamini_hochberg_equals_scipys() {
        // python3 -c "from scipy.stats import false_discovery_control as f; print(f([0.01,0.04,0.03,0.5,0.001,0.04]))"
        let q = benjamini_hochberg(&[0.01, 0.04, 0.03, 0.5, 0.001, 0.04]);
        let expected = [0.03, 0.048, 0.048, 0.5, 0.006, 0.048];
        for (q, e) in q.iter().zip(expected) {
            close(*q, e);
        }
        assert!(benjamini_hochberg(&[]).is_empty());
    }

    proptest! {
        #[test]
        fn wilson_holds_the_rate_within_zero_and_one(n in 1u64..5000, share in 0.0f64..=1.0) {
            let x = ((n as f64) * share).round() as u64;
            let (low, high) = wilson(x, n).unwrap();
            let rate = x as f64 / n as f64;
            prop_assert!((0.0..=1.0).contains(&low) && (0.0..=1.0).contains(&high));
            prop_assert!(low <= rate + 1e-12 && rate <= high + 1e-12, "{low} {rate} {high}");
        }

        #[test]
        fn intervals_widen_as_groups_shrink(n in 2u64..2000, share in 0.0f64..=1.0) {
            // The same rate from a group ten times the size is surer.
            let x = ((n as f64) * share).round() as u64;
            let (low, high) = wilson(x, n).unwrap();
            let (big_low, big_high) = wilson(10 * x, 10 * n).unwrap();
            prop_assert!(high - low >= big_high - big_low);
            let (low, high) = clopper_pearson(x, n).unwrap();
            let (big_low, big_high) = clopper_pearson(10 * x, 10 * n).unwrap();
            prop_assert!(high - low >= big_high - big_low);
            // A count's relative interval narrows as it grows.
            let (low, high) = garwood(x + 1);
            let (big_low, big_high) = garwood(10 * (x + 1));
            prop_assert!((high - low) / (x + 1) as f64 >= (big_high - big_low) / (10 * (x + 1)) as f64);
        }

        #[test]
        fn garwood_holds_its_count(x in 0u64..100_000) {
            let (low, high) = garwood(x);
            prop_assert!(low <= x as f64 && (x as f64) <= high, "{low} {x} {high}");
        }

        #[test]
        fn q_is_at_least_p_and_monotone_in_p(p in proptest::collection::vec(0.0f64..=1.0, 0..60)) {
            let q = benjamini_hochberg(&p);
            for i in 0..p.len() {
                prop_assert!(q[i] >= p[i] && q[i] <= 1.0);
                for j in 0..p.len() {
                    if p[i] <= p[j] {
                        prop_assert!(q[i] <= q[j], "p {} <= {} but q {} > {}", p[i], p[j], q[i], q[j]);
                    }
                }
            }
        }

        #[test]
        fn p_values_are_probabilities(x in 0u64..500, expected in 0.01f64..500.0, n_extra in 0u64..500, pi in 0.0f64..=1.0) {
            let p = poisson_p(x, expected).unwrap();
            prop_assert!((0.0..=1.0).contains(&p));
            let p = binomial_p_greater(x, x + n_extra, pi).unwrap();
            prop_assert!((0.0..=1.0).contains(&p));
        }
    }
}
