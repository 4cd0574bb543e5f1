//! Detection: how quickly per-provider sampling catches a provider that dropped data.
//!
//! # Rules
//! - Each sample hits dropped data with probability `q`: `q = f` when a fraction `f`
//!   of every (equal-size) deal's segments is dropped, `q = 1/D` when one whole deal
//!   out of `D` is dropped ([`DropPattern::hit_probability`]).
//! - An epoch asks `s = min(samples_per_epoch, D)` independent samples and catches the
//!   provider if any one hits: `P = 1 - (1 - q)^s` ([`catch_probability`]).
//! - Epochs are independent, so the epoch in which the provider is first caught is
//!   geometric on `{1, 2, ...}` with success probability `P`; its quantiles are
//!   `ceil(ln(1 - alpha) / ln(1 - P))` ([`geometric_quantile`]).
//! - [`monte_carlo`] checks this by playing the protocol: it lays out the dropped
//!   segments ([`Layout`]), draws each sample's deal and segment with a seeded RNG, and
//!   records the epoch of the first miss.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::{ensure, SimError};

/// Bytes in one proof segment.
pub const SEGMENT_BYTES: u64 = 64;

/// What a cheating provider dropped.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DropPattern {
    /// A fraction `f` of every deal's segments, evenly spread over each deal.
    Fraction {
        /// The fraction dropped, in `(0, 1]`.
        f: f64,
    },
    /// One whole deal out of the provider's `D`.
    OneDeal,
}

impl DropPattern {
    /// Checks that a fraction lies in `(0, 1]`.
    pub fn validate(&self) -> Result<(), SimError> {
        match *self {
            DropPattern::Fraction { f } => {
                ensure(f > 0.0 && f <= 1.0, "drop fraction", f, "in (0, 1]")
            }
            DropPattern::OneDeal => Ok(()),
        }
    }

    /// Probability that one sample hits dropped data, for a provider with `deals` deals.
    pub fn hit_probability(&self, deals: u64) -> Result<f64, SimError> {
        self.validate()?;
        ensure(deals >= 1, "deals", deals, "at least 1")?;
        Ok(match *self {
            DropPattern::Fraction { f } => f,
            DropPattern::OneDeal => 1.0 / deals as f64,
        })
    }

    /// Deals' worth of data dropped (what the provider saves storing).
    pub fn deals_dropped(&self, deals: u64) -> f64 {
        match *self {
            DropPattern::Fraction { f } => f * deals as f64,
            DropPattern::OneDeal => 1.0,
        }
    }

    /// A short label: `f=1%` or `1 deal of 1000`.
    pub fn label(&self, deals: u64) -> String {
        match *self {
            DropPattern::Fraction { f } => format!("f={}%", f * 100.0),
            DropPattern::OneDeal => format!("1 deal of {deals}"),
        }
    }
}

/// Samples asked per epoch: `min(samples_per_epoch, deals)`.
pub fn samples_asked(samples_per_epoch: u32, deals: u64) -> u64 {
    u64::from(samples_per_epoch).min(deals)
}

/// Probability that an epoch of `s` samples, each hitting dropped data with
/// probability `q`, catches the provider: `1 - (1 - q)^s`.
pub fn catch_probability(q: f64, s: u64) -> f64 {
    if s == 0 || q <= 0.0 {
        return 0.0;
    }
    if q >= 1.0 {
        return 1.0;
    }
    -(s as f64 * (-q).ln_1p()).exp_m1()
}

/// Probability that a provider caught with probability `p` per epoch is caught
/// within its first `n` epochs: `1 - (1 - p)^n`.
pub fn caught_within(p: f64, n: u64) -> f64 {
    catch_probability(p, n)
}

/// The `alpha` quantile of the epoch of first catch: the smallest `n >= 1` with
/// [`caught_within`]`(p, n) >= alpha`. `None` if `p == 0` (never caught).
pub fn geometric_quantile(p: f64, alpha: f64) -> Option<u64> {
    if p <= 0.0 || !(alpha > 0.0 && alpha < 1.0) {
        return None;
    }
    if p >= 1.0 {
        return Some(1);
    }
    let guess = ((-alpha).ln_1p() / (-p).ln_1p()).ceil();
    let mut n = if guess.is_finite() && guess >= 1.0 {
        guess as u64
    } else {
        1
    };
    // The closed form can be one off in floating point; settle on the exact rule.
    while n > 1 && caught_within(p, n - 1) >= alpha {
        n -= 1;
    }
    while caught_within(p, n) < alpha {
        n += 1;
    }
    Some(n)
}

/// Closed-form detection figures for one drop pattern and sample count.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Analytic {
    /// Probability of being caught in any one epoch.
    pub catch_per_epoch: f64,
    /// Mean epochs until caught (`1 / P`), `None` if never caught.
    pub mean_epochs: Option<f64>,
    /// Median epoch of first catch.
    pub median_epochs: Option<u64>,
    /// 99th percentile epoch of first catch.
    pub p99_epochs: Option<u64>,
}

/// Closed-form figures for a per-sample hit probability `q` and `s` samples per epoch.
pub fn analytic(q: f64, s: u64) -> Result<Analytic, SimError> {
    ensure((0.0..=1.0).contains(&q), "hit probability", q, "in [0, 1]")?;
    let p = catch_probability(q, s);
    Ok(Analytic {
        catch_per_epoch: p,
        mean_epochs: (p > 0.0).then(|| 1.0 / p),
        median_epochs: geometric_quantile(p, 0.5),
        p99_epochs: geometric_quantile(p, 0.99),
    })
}

/// The provider's data as the Monte Carlo sees it: `deals` deals of
/// `segments_per_deal` segments each, some of them dropped.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Layout {
    deals: u64,
    segments_per_deal: u64,
    dropped: Dropped,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Dropped {
    /// `count` segments of every deal, evenly spread (Bresenham): segment `i` is
    /// dropped iff `floor((i + 1) * count / n) > floor(i * count / n)`.
    Spread { count: u64 },
    /// Every segment of this deal.
    Deal { index: u64 },
}

impl Layout {
    /// Lays out `pattern` over `deals` deals of `shard_bytes` bytes. A fraction drops
    /// `round(f * segments)` segments of every deal (at least one); one deal drops the
    /// last deal.
    pub fn new(pattern: DropPattern, deals: u64, shard_bytes: u64) -> Result<Layout, SimError> {
        pattern.validate()?;
        ensure(deals >= 1, "deals", deals, "at least 1")?;
        ensure(shard_bytes >= 1, "shard bytes", shard_bytes, "at least 1")?;
        let segments_per_deal = shard_bytes.div_ceil(SEGMENT_BYTES);
        let dropped = match pattern {
            DropPattern::Fraction { f } => {
                let count = (f * segments_per_deal as f64).round() as u64;
                Dropped::Spread {
                    count: count.clamp(1, segments_per_deal),
                }
            }
            DropPattern::OneDeal => Dropped::Deal { index: deals - 1 },
        };
        Ok(Layout {
            deals,
            segments_per_deal,
            dropped,
        })
    }

    /// Deals in the layout.
    pub fn deals(&self) -> u64 {
        self.deals
    }

    /// Segments in each deal.
    pub fn segments_per_deal(&self) -> u64 {
        self.segments_per_deal
    }

    /// Whether segment `segment` of deal `deal` was dropped.
    pub fn is_dropped(&self, deal: u64, segment: u64) -> bool {
        match self.dropped {
            Dropped::Spread { count } => {
                let n = u128::from(self.segments_per_deal);
                let c = u128::from(count);
                let i = u128::from(segment);
                (i + 1) * c / n > i * c / n
            }
            Dropped::Deal { index } => deal == index,
        }
    }

    /// The exact per-sample hit probability of this layout.
    pub fn hit_probability(&self) -> f64 {
        match self.dropped {
            Dropped::Spread { count } => count as f64 / self.segments_per_deal as f64,
            Dropped::Deal { .. } => 1.0 / self.deals as f64,
        }
    }
}

/// Settings of a Monte Carlo run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct MonteCarloConfig {
    /// Independent providers simulated.
    pub trials: u64,
    /// Epochs after which a provider not yet caught is recorded as censored.
    pub max_epochs: u64,
    /// RNG seed.
    pub seed: u64,
}

impl Default for MonteCarloConfig {
    fn default() -> Self {
        MonteCarloConfig {
            trials: 100_000,
            max_epochs: 1_000_000,
            seed: 0xC41E_2025,
        }
    }
}

/// Monte Carlo detection figures.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct MonteCarlo {
    /// Providers simulated.
    pub trials: u64,
    /// Providers not caught within `max_epochs`.
    pub censored: u64,
    /// Catches per simulated epoch (the estimate of `P`).
    pub catch_per_epoch: f64,
    /// Mean epoch of first catch (censored trials count as `max_epochs`).
    pub mean_epochs: f64,
    /// Empirical median epoch of first catch, `None` if it fell among censored trials.
    pub median_epochs: Option<u64>,
    /// Empirical 99th percentile epoch of first catch.
    pub p99_epochs: Option<u64>,
}

/// Plays the protocol against `layout` with `s` samples per epoch: each trial is one
/// provider, each epoch draws `s` samples (a deal, then a segment, uniformly), and the
/// trial ends at the first epoch with a sample on dropped data.
pub fn monte_carlo(
    layout: &Layout,
    s: u64,
    config: MonteCarloConfig,
) -> Result<MonteCarlo, SimError> {
    ensure(s >= 1, "samples per epoch", s, "at least 1")?;
    ensure(config.trials >= 1, "trials", config.trials, "at least 1")?;
    ensure(
        config.max_epochs >= 1,
        "max epochs",
        config.max_epochs,
        "at least 1",
    )?;
    let mut rng = StdRng::seed_from_u64(config.seed);
    let mut first_catch = Vec::with_capacity(usize::try_from(config.trials).unwrap_or(0));
    let mut total_epochs: u64 = 0;
    let mut censored: u64 = 0;
    for _ in 0..config.trials {
        let mut caught_at = None;
        for epoch in 1..=config.max_epochs {
            let missed = (0..s).any(|_| {
                let deal = rng.random_range(0..layout.deals);
                let segment = rng.random_range(0..layout.segments_per_deal);
                layout.is_dropped(deal, segment)
            });
            if missed {
                caught_at = Some(epoch);
                break;
            }
        }
        match caught_at {
            Some(epoch) => {
                total_epochs += epoch;
                first_catch.push(epoch);
            }
            None => {
                total_epochs += config.max_epochs;
                censored += 1;
                first_catch.push(u64::MAX);
            }
        }
    }
    first_catch.sort_unstable();
    let caught = config.trials - censored;
    let uncensored_sum: u64 = first_catch.iter().filter(|&&e| e != u64::MAX).sum();
    let mean = (uncensored_sum + censored * config.max_epochs) as f64 / config.trials as f64;
    Ok(MonteCarlo {
        trials: config.trials,
        censored,
        catch_per_epoch: caught as f64 / total_epochs as f64,
        mean_epochs: mean,
        median_epochs: empirical_quantile(&first_catch, 0.5),
        p99_epochs: empirical_quantile(&first_catch, 0.99),
    })
}

/// The smallest recorded value whose empirical CDF reaches `alpha`; `None` if that is a
/// censored trial (recorded as `u64::MAX`).
fn empirical_quantile(sorted: &[u64], alpha: f64) -> Option<u64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let rank = ((alpha * n as f64).ceil() as usize).clamp(1, n);
    sorted.get(rank - 1).copied().filter(|&v| v != u64::MAX)
}

/// One line of the detection table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DetectionRow {
    /// `samples_per_epoch` parameter.
    pub samples_per_epoch: u32,
    /// Samples actually asked, `min(samples_per_epoch, D)`.
    pub samples_asked: u64,
    /// Deals the provider holds.
    pub deals: u64,
    /// What was dropped.
    pub pattern: DropPattern,
    /// Human label of `pattern`.
    pub label: String,
    /// Per-sample hit probability `q`.
    pub hit_probability: f64,
    /// Closed-form figures.
    pub analytic: Analytic,
    /// Simulated figures.
    pub monte_carlo: MonteCarlo,
    /// Relative difference between the analytic and the simulated `P`.
    pub catch_relative_difference: f64,
    /// Whether the simulation agrees with the closed form: `P` within
    /// [`AGREEMENT_TOLERANCE`], median and p99 within it or within one epoch (the
    /// quantiles are whole epochs).
    pub agrees: bool,
}

/// Relative tolerance of [`DetectionRow::agrees`].
pub const AGREEMENT_TOLERANCE: f64 = 0.03;

/// Whether two quantiles (whole epochs) agree: within [`AGREEMENT_TOLERANCE`] or one
/// epoch.
pub fn quantiles_agree(analytic: Option<u64>, simulated: Option<u64>) -> bool {
    match (analytic, simulated) {
        (Some(a), Some(b)) => {
            let gap = a.abs_diff(b) as f64;
            gap <= 1.0 || gap <= AGREEMENT_TOLERANCE * a as f64
        }
        (None, None) => true,
        _ => false,
    }
}

/// Computes one detection row: analytic figures from the pattern's `q`, Monte Carlo on
/// a layout of `deals` deals of `shard_bytes` bytes.
pub fn detection_row(
    pattern: DropPattern,
    deals: u64,
    shard_bytes: u64,
    samples_per_epoch: u32,
    mc: MonteCarloConfig,
) -> Result<DetectionRow, SimError> {
    ensure(
        samples_per_epoch >= 1,
        "samples per epoch",
        samples_per_epoch,
        "at least 1",
    )?;
    let q = pattern.hit_probability(deals)?;
    let s = samples_asked(samples_per_epoch, deals);
    let analytic = analytic(q, s)?;
    let layout = Layout::new(pattern, deals, shard_bytes)?;
    let monte_carlo = monte_carlo(&layout, s, mc)?;
    let (a, m) = (analytic.catch_per_epoch, monte_carlo.catch_per_epoch);
    let catch_relative_difference = if a == 0.0 { m } else { (a - m).abs() / a };
    let agrees = catch_relative_difference <= AGREEMENT_TOLERANCE
        && quantiles_agree(analytic.median_epochs, monte_carlo.median_epochs)
        && quantiles_agree(analytic.p99_epochs, monte_carlo.p99_epochs);
    Ok(DetectionRow {
        samples_per_epoch,
        samples_asked: s,
        deals,
        pattern,
        label: pattern.label(deals),
        hit_probability: q,
        analytic,
        monte_carlo,
        catch_relative_difference,
        agrees,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn certain_hit_is_caught_in_the_first_epoch() {
        assert_eq!(catch_probability(1.0, 1), 1.0);
        assert_eq!(geometric_quantile(1.0, 0.5), Some(1));
        assert_eq!(geometric_quantile(1.0, 0.99), Some(1));
        let a = analytic(1.0, 1).unwrap();
        assert_eq!(a.mean_epochs, Some(1.0));
        assert_eq!((a.median_epochs, a.p99_epochs), (Some(1), Some(1)));
    }

    #[test]
    fn coin_flip_quantiles() {
        // P = 1/2: CDF(1) = 0.5 exactly, so the median is 1; CDF(6) = 0.984, CDF(7) = 0.992.
        assert_eq!(geometric_quantile(0.5, 0.5), Some(1));
        assert_eq!(geometric_quantile(0.5, 0.99), Some(7));
    }

    #[test]
    fn one_percent_with_four_samples() {
        // P = 1 - 0.99^4 = 0.03940399; ln 0.5 / ln 0.99^4 = 17.24, ln 0.01 / ln 0.99^4 = 114.55.
        let a = analytic(0.01, 4).unwrap();
        assert!((a.catch_per_epoch - 0.039_403_99).abs() < 1e-10);
        assert_eq!(a.median_epochs, Some(18));
        assert_eq!(a.p99_epochs, Some(115));
    }

    #[test]
    fn never_caught_without_dropped_data() {
        let a = analytic(0.0, 16).unwrap();
        assert_eq!(a.catch_per_epoch, 0.0);
        assert_eq!(
            (a.mean_epochs, a.median_epochs, a.p99_epochs),
            (None, None, None)
        );
        assert!(analytic(1.5, 1).is_err());
    }

    #[test]
    fn samples_are_capped_by_deals() {
        assert_eq!(samples_asked(32, 1), 1);
        assert_eq!(samples_asked(32, 100), 32);
    }

    #[test]
    fn spread_layout_drops_exactly_count_segments() {
        for (segments, f) in [(1000u64, 0.01), (1024, 0.1), (97, 0.5), (64, 1.0)] {
            let layout =
                Layout::new(DropPattern::Fraction { f }, 3, segments * SEGMENT_BYTES).unwrap();
            let dropped = (0..segments).filter(|&i| layout.is_dropped(1, i)).count() as u64;
            assert_eq!(dropped, (f * segments as f64).round() as u64);
            assert!((layout.hit_probability() - dropped as f64 / segments as f64).abs() < 1e-12);
        }
    }

    #[test]
    fn one_deal_layout_drops_one_deal() {
        let layout = Layout::new(DropPattern::OneDeal, 10, 4096).unwrap();
        assert!(layout.is_dropped(9, 0));
        assert!(!layout.is_dropped(0, 63));
        assert_eq!(layout.hit_probability(), 0.1);
    }

    fn assert_agrees(row: &DetectionRow) {
        let (a, m) = (&row.analytic, &row.monte_carlo);
        assert_eq!(m.censored, 0);
        assert!(row.agrees, "{row:?}");
        let rel = (a.catch_per_epoch - m.catch_per_epoch).abs() / a.catch_per_epoch;
        assert!(
            rel < 0.03,
            "P {} vs {}",
            a.catch_per_epoch,
            m.catch_per_epoch
        );
        for (x, y) in [
            (a.median_epochs, m.median_epochs),
            (a.p99_epochs, m.p99_epochs),
        ] {
            let (x, y) = (x.unwrap() as f64, y.unwrap() as f64);
            assert!((x - y).abs() <= (0.05 * x).max(1.0), "{x} vs {y}");
        }
    }

    #[test]
    fn monte_carlo_agrees_with_analytic_for_a_fraction() {
        let mc = MonteCarloConfig {
            trials: 20_000,
            max_epochs: 100_000,
            seed: 7,
        };
        let row = detection_row(DropPattern::Fraction { f: 0.1 }, 50, 1 << 20, 4, mc).unwrap();
        assert_eq!(row.analytic.median_epochs, Some(2));
        assert_eq!(row.analytic.p99_epochs, Some(11));
        assert_agrees(&row);
    }

    #[test]
    fn monte_carlo_agrees_with_analytic_for_one_deal() {
        let mc = MonteCarloConfig {
            trials: 20_000,
            max_epochs: 100_000,
            seed: 11,
        };
        let row = detection_row(DropPattern::OneDeal, 40, 1 << 16, 8, mc).unwrap();
        assert_agrees(&row);
    }

    #[test]
    fn quantile_agreement_allows_one_epoch() {
        assert!(quantiles_agree(Some(11), Some(12)));
        assert!(quantiles_agree(Some(1151), Some(1161)));
        assert!(!quantiles_agree(Some(100), Some(104)));
        assert!(!quantiles_agree(Some(3), None));
    }

    #[test]
    fn monte_carlo_is_reproducible() {
        let mc = MonteCarloConfig {
            trials: 2_000,
            max_epochs: 1_000,
            seed: 3,
        };
        let layout = Layout::new(DropPattern::Fraction { f: 0.05 }, 20, 1 << 12).unwrap();
        assert_eq!(
            monte_carlo(&layout, 4, mc).unwrap(),
            monte_carlo(&layout, 4, mc).unwrap()
        );
    }

    #[test]
    fn censored_trials_are_counted() {
        let mc = MonteCarloConfig {
            trials: 100,
            max_epochs: 2,
            seed: 5,
        };
        // q = 1/1000 with 1 sample: almost every trial survives 2 epochs.
        let layout = Layout::new(DropPattern::OneDeal, 1000, 64).unwrap();
        let m = monte_carlo(&layout, 1, mc).unwrap();
        assert!(m.censored > 90);
        assert_eq!(m.median_epochs, None);
    }
}
