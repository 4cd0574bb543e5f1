//! Economics: what a provider that dropped data saves against what it expects to lose.
//!
//! # Rules
//! - Per deal per epoch the client pays `p = price_usd_per_tb_month * shard_tb /
//!   epochs_per_month` and the provider spends `c = storage_cost_usd_per_tb_month *
//!   shard_tb / epochs_per_month` storing the shard. Each deal holds collateral
//!   `C = collateral_epochs * p`; a failed epoch moves `penalty = slash_bps / 10000 * C`
//!   of it to the client.
//! - Dropping data saves `deals_dropped * c` per epoch: `f * D * c` for a fraction `f`
//!   of every deal, `c` for one whole deal.
//! - A caught epoch fails all `D` deals: the provider forgoes `D * p` pay and pays
//!   `D * penalty` ([`Market::loss_per_failed_epoch`]). An optional extra rule forfeits
//!   the pay of the previous `forfeit_epochs` epochs too (`W`; 0 by default).
//! - Clients end: after the first catch `end_fraction` of the clients end their deals
//!   and take the collateral left in them, `C - penalty` each.
//! - Chain rules only: no client ends a deal; the provider keeps cheating until it is
//!   jailed (`jail_failures` failures within `jail_window` epochs) or `horizon_epochs`
//!   pass. At jail every deal's remaining collateral, taken as `max(0, C -
//!   jail_failures * penalty)`, goes to the clients. Simulated with a seeded RNG
//!   ([`chain_only`]).
//! - Ratios are expected loss over expected savings: above 1, cheating does not pay.
//!   Lost future business (the margin `p - c` of ended deals) is not counted, so the
//!   ratios are lower bounds.
//!
//! Because `P = 1 - (1 - q)^s >= q` and the savings are `q * D * c` per epoch in both
//! patterns, the expected loss per epoch `P * D * (p + penalty)` is at least
//! `(p + penalty) / c` times the savings, whatever `s` is ([`Market::ratio_floor`]).

use std::collections::VecDeque;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;

use crate::detection::{catch_probability, samples_asked, DropPattern};
use crate::{ensure, SimError, GIB, TB};

/// Prices, collateral and penalty rules of the market.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Market {
    /// Shard (deal) size in GiB.
    pub shard_gib: f64,
    /// What the client pays per TB-month of shard bytes, USD.
    pub price_usd_per_tb_month: f64,
    /// What storing a TB for a month costs the provider, USD.
    pub storage_cost_usd_per_tb_month: f64,
    /// Collateral per deal, in epochs of that deal's price.
    pub collateral_epochs: f64,
    /// Share of the collateral moved to the client per failed epoch, basis points.
    pub slash_bps: u32,
    /// Failed epochs within the window that jail the provider (`M`).
    pub jail_failures: u32,
    /// The jail window, epochs.
    pub jail_window: u32,
    /// Fraction of clients that end their deal after the first caught failure.
    pub end_fraction: f64,
    /// Extra rule under study: a failure also forfeits the pay of the previous `W`
    /// epochs (0 = no such rule).
    pub forfeit_epochs: u32,
    /// Epochs per month.
    pub epochs_per_month: u32,
}

impl Default for Market {
    fn default() -> Self {
        Market {
            shard_gib: 4.0,
            price_usd_per_tb_month: 2.0,
            storage_cost_usd_per_tb_month: 1.0,
            collateral_epochs: 30.0,
            slash_bps: 1000,
            jail_failures: 3,
            jail_window: 30,
            end_fraction: 1.0,
            forfeit_epochs: 0,
            epochs_per_month: 30,
        }
    }
}

impl Market {
    /// Checks every field's range.
    pub fn validate(&self) -> Result<(), SimError> {
        ensure(self.shard_gib > 0.0, "shard GiB", self.shard_gib, "> 0")?;
        ensure(
            self.price_usd_per_tb_month >= 0.0,
            "price per TB-month",
            self.price_usd_per_tb_month,
            ">= 0",
        )?;
        ensure(
            self.storage_cost_usd_per_tb_month > 0.0,
            "storage cost per TB-month",
            self.storage_cost_usd_per_tb_month,
            "> 0",
        )?;
        ensure(
            self.collateral_epochs >= 0.0,
            "collateral epochs",
            self.collateral_epochs,
            ">= 0",
        )?;
        ensure(
            self.slash_bps <= 10_000,
            "slash bps",
            self.slash_bps,
            "<= 10000",
        )?;
        ensure(
            self.jail_failures >= 1,
            "jail failures",
            self.jail_failures,
            ">= 1",
        )?;
        ensure(
            self.jail_window >= 1,
            "jail window",
            self.jail_window,
            ">= 1",
        )?;
        ensure(
            (0.0..=1.0).contains(&self.end_fraction),
            "end fraction",
            self.end_fraction,
            "in [0, 1]",
        )?;
        ensure(
            self.epochs_per_month >= 1,
            "epochs per month",
            self.epochs_per_month,
            ">= 1",
        )
    }

    /// One shard in TB.
    pub fn shard_tb(&self) -> f64 {
        self.shard_gib * GIB / TB
    }

    /// `p`: the client's price per deal per epoch, USD.
    pub fn price_per_deal_epoch(&self) -> f64 {
        self.price_usd_per_tb_month * self.shard_tb() / f64::from(self.epochs_per_month)
    }

    /// `c`: the provider's storage cost per deal per epoch, USD.
    pub fn cost_per_deal_epoch(&self) -> f64 {
        self.storage_cost_usd_per_tb_month * self.shard_tb() / f64::from(self.epochs_per_month)
    }

    /// `C`: collateral per deal, USD.
    pub fn collateral_per_deal(&self) -> f64 {
        self.collateral_epochs * self.price_per_deal_epoch()
    }

    /// Collateral moved to the client per deal per failed epoch, USD.
    pub fn penalty_per_deal(&self) -> f64 {
        f64::from(self.slash_bps) / 10_000.0 * self.collateral_per_deal()
    }

    /// What one failed epoch costs a provider with `deals` deals: every deal's pay
    /// (plus `forfeit_epochs` earlier epochs' pay if that rule is on) and penalty.
    pub fn loss_per_failed_epoch(&self, deals: u64) -> f64 {
        let pay = self.price_per_deal_epoch() * (1.0 + f64::from(self.forfeit_epochs));
        deals as f64 * (pay + self.penalty_per_deal())
    }

    /// Collateral per deal left when the provider is jailed, USD.
    pub fn collateral_left_at_jail(&self) -> f64 {
        (self.collateral_per_deal() - f64::from(self.jail_failures) * self.penalty_per_deal())
            .max(0.0)
    }

    /// The lowest possible loss/savings ratio under the chain rules, for any drop and
    /// any sample count: `(p (1 + W) + penalty) / c`.
    pub fn ratio_floor(&self) -> f64 {
        self.loss_per_failed_epoch(1) / self.cost_per_deal_epoch()
    }
}

/// Settings of the chain-rules-only simulation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ChainOnlyConfig {
    /// Epochs simulated per cheating provider at most.
    pub horizon_epochs: u64,
    /// Providers simulated.
    pub trials: u64,
    /// RNG seed.
    pub seed: u64,
}

impl Default for ChainOnlyConfig {
    fn default() -> Self {
        ChainOnlyConfig {
            horizon_epochs: 365,
            trials: 20_000,
            seed: 0x0E0C_2025,
        }
    }
}

/// A persistent cheater under the chain rules only, over the horizon.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ChainOnly {
    /// Epochs simulated at most.
    pub horizon_epochs: u64,
    /// Share of providers jailed within the horizon.
    pub jailed_share: f64,
    /// Mean epochs spent cheating (until jailed or the horizon).
    pub mean_epochs_cheating: f64,
    /// Mean failed epochs.
    pub mean_failures: f64,
    /// Mean storage savings, USD.
    pub expected_savings: f64,
    /// Mean loss (pay, penalties, collateral at jail), USD.
    pub expected_loss: f64,
    /// `expected_loss / expected_savings`.
    pub ratio: f64,
}

/// Simulates a provider with `deals` deals, caught with probability `p_catch` per
/// epoch and saving `savings_per_epoch`, that cheats until jailed or the horizon.
pub fn chain_only(
    market: &Market,
    deals: u64,
    p_catch: f64,
    savings_per_epoch: f64,
    config: ChainOnlyConfig,
) -> Result<ChainOnly, SimError> {
    market.validate()?;
    ensure(
        (0.0..=1.0).contains(&p_catch),
        "catch probability",
        p_catch,
        "in [0, 1]",
    )?;
    ensure(config.trials >= 1, "trials", config.trials, ">= 1")?;
    let loss_per_failure = market.loss_per_failed_epoch(deals);
    let loss_at_jail = deals as f64 * market.collateral_left_at_jail();
    let window = u64::from(market.jail_window);
    let jail_at = usize::try_from(market.jail_failures).unwrap_or(usize::MAX);
    let mut rng = StdRng::seed_from_u64(config.seed);
    let (mut jailed, mut epochs, mut failures) = (0u64, 0u64, 0u64);
    let mut recent: VecDeque<u64> = VecDeque::new();
    for _ in 0..config.trials {
        recent.clear();
        for epoch in 1..=config.horizon_epochs {
            epochs += 1;
            if rng.random::<f64>() < p_catch {
                failures += 1;
                recent.push_back(epoch);
                while recent.front().is_some_and(|&e| e + window <= epoch) {
                    recent.pop_front();
                }
                if recent.len() >= jail_at {
                    jailed += 1;
                    break;
                }
            }
        }
    }
    let n = config.trials as f64;
    let mean_epochs = epochs as f64 / n;
    let mean_failures = failures as f64 / n;
    let jailed_share = jailed as f64 / n;
    let expected_savings = mean_epochs * savings_per_epoch;
    let expected_loss = mean_failures * loss_per_failure + jailed_share * loss_at_jail;
    Ok(ChainOnly {
        horizon_epochs: config.horizon_epochs,
        jailed_share,
        mean_epochs_cheating: mean_epochs,
        mean_failures,
        expected_savings,
        expected_loss,
        ratio: ratio(expected_loss, expected_savings),
    })
}

fn ratio(loss: f64, savings: f64) -> f64 {
    if savings > 0.0 {
        loss / savings
    } else {
        f64::INFINITY
    }
}

/// One line of the economics table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EconomicsRow {
    /// `samples_per_epoch` parameter.
    pub samples_per_epoch: u32,
    /// Deals the provider holds.
    pub deals: u64,
    /// What was dropped.
    pub pattern: DropPattern,
    /// Human label of `pattern`.
    pub label: String,
    /// Probability of being caught in any one epoch.
    pub catch_per_epoch: f64,
    /// Storage cost saved per epoch, USD.
    pub savings_per_epoch: f64,
    /// Expected loss per epoch under the chain rules (`P * loss_one_failure`), USD.
    pub expected_loss_per_epoch: f64,
    /// Mean epochs until the first catch, `1 / P`.
    pub expected_epochs_to_catch: f64,
    /// Expected savings until the first catch (that epoch included), USD.
    pub expected_savings_until_caught: f64,
    /// Loss from one caught epoch: every deal's pay and penalty, USD.
    pub loss_one_failure: f64,
    /// `loss_one_failure / expected_savings_until_caught`.
    pub ratio_one_failure: f64,
    /// Loss at the first catch when `end_fraction` of the clients end their deals, USD.
    pub loss_clients_end: f64,
    /// `loss_clients_end / expected_savings_until_caught`.
    pub ratio_clients_end: f64,
    /// A persistent cheater under the chain rules only.
    pub chain_only: ChainOnly,
}

/// Computes one economics row.
pub fn economics_row(
    market: &Market,
    deals: u64,
    pattern: DropPattern,
    samples_per_epoch: u32,
    chain: ChainOnlyConfig,
) -> Result<EconomicsRow, SimError> {
    market.validate()?;
    let q = pattern.hit_probability(deals)?;
    let p_catch = catch_probability(q, samples_asked(samples_per_epoch, deals));
    let savings_per_epoch = pattern.deals_dropped(deals) * market.cost_per_deal_epoch();
    let loss_one_failure = market.loss_per_failed_epoch(deals);
    let ended_collateral = market.end_fraction
        * deals as f64
        * (market.collateral_per_deal() - market.penalty_per_deal()).max(0.0);
    let loss_clients_end = loss_one_failure + ended_collateral;
    let expected_epochs_to_catch = if p_catch > 0.0 {
        1.0 / p_catch
    } else {
        f64::INFINITY
    };
    let expected_savings_until_caught = savings_per_epoch * expected_epochs_to_catch;
    Ok(EconomicsRow {
        samples_per_epoch,
        deals,
        pattern,
        label: pattern.label(deals),
        catch_per_epoch: p_catch,
        savings_per_epoch,
        expected_loss_per_epoch: p_catch * loss_one_failure,
        expected_epochs_to_catch,
        expected_savings_until_caught,
        loss_one_failure,
        ratio_one_failure: ratio(loss_one_failure, expected_savings_until_caught),
        loss_clients_end,
        ratio_clients_end: ratio(loss_clients_end, expected_savings_until_caught),
        chain_only: chain_only(market, deals, p_catch, savings_per_epoch, chain)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1e-12)
    }

    #[test]
    fn default_per_deal_figures() {
        let m = Market::default();
        let shard_tb = 4.0 * GIB / TB;
        assert!(close(m.price_per_deal_epoch(), 2.0 * shard_tb / 30.0));
        assert!(close(m.cost_per_deal_epoch(), shard_tb / 30.0));
        assert!(close(
            m.collateral_per_deal(),
            30.0 * m.price_per_deal_epoch()
        ));
        assert!(close(m.penalty_per_deal(), 3.0 * m.price_per_deal_epoch()));
        // (p + 3p) / (p / 2) = 8.
        assert!(close(m.ratio_floor(), 8.0));
        assert!(close(
            m.collateral_left_at_jail(),
            0.7 * m.collateral_per_deal()
        ));
    }

    #[test]
    fn dropping_everything_is_caught_at_once() {
        let m = Market::default();
        let row = economics_row(
            &m,
            100,
            DropPattern::Fraction { f: 1.0 },
            4,
            ChainOnlyConfig {
                trials: 10,
                ..ChainOnlyConfig::default()
            },
        )
        .unwrap();
        assert_eq!(row.catch_per_epoch, 1.0);
        assert!(close(row.ratio_one_failure, 8.0));
        // Caught every epoch: jailed at the third.
        assert_eq!(row.chain_only.jailed_share, 1.0);
        assert!(close(row.chain_only.mean_epochs_cheating, 3.0));
        assert!(close(row.chain_only.mean_failures, 3.0));
    }

    #[test]
    fn ratio_is_never_below_the_floor() {
        let m = Market::default();
        let cfg = ChainOnlyConfig {
            trials: 200,
            ..ChainOnlyConfig::default()
        };
        for s in [1, 4, 32] {
            for pattern in [
                DropPattern::Fraction { f: 0.001 },
                DropPattern::Fraction { f: 0.5 },
                DropPattern::OneDeal,
            ] {
                let row = economics_row(&m, 1000, pattern, s, cfg).unwrap();
                assert!(row.ratio_one_failure >= m.ratio_floor() * (1.0 - 1e-12));
                assert!(row.ratio_clients_end > row.ratio_one_failure);
                assert!(close(
                    row.ratio_one_failure,
                    row.expected_loss_per_epoch / row.savings_per_epoch
                ));
            }
        }
    }

    #[test]
    fn forfeiting_earlier_pay_adds_to_each_failure() {
        let m = Market {
            forfeit_epochs: 7,
            ..Market::default()
        };
        let p = m.price_per_deal_epoch();
        assert!(close(
            m.loss_per_failed_epoch(10),
            10.0 * (8.0 * p + 3.0 * p)
        ));
    }

    #[test]
    fn rare_catches_rarely_jail() {
        let m = Market::default();
        let c = chain_only(
            &m,
            1000,
            0.004,
            1.0,
            ChainOnlyConfig {
                trials: 2000,
                horizon_epochs: 365,
                seed: 1,
            },
        )
        .unwrap();
        assert!(c.jailed_share < 0.01);
        assert!((c.mean_failures - 0.004 * 365.0).abs() < 0.2);
    }

    #[test]
    fn invalid_market_is_rejected() {
        let m = Market {
            end_fraction: 1.5,
            ..Market::default()
        };
        assert!(m.validate().is_err());
    }
}
