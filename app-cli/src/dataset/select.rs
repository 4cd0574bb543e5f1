//! Choosing providers for a dataset's shards from what the chain says about
//! them: not jailed, room, stake for the collateral, price, and record.
use anchor_lang::prelude::Pubkey;
use storage_market::instructions::propose_deal::billable_mib;
use storage_market::state::{MarketParams, Provider};

/// Why a provider was passed over (counted for the error message).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Shortfall {
    pub jailed: usize,
    pub no_room: usize,
    pub no_stake: usize,
    pub too_expensive: usize,
    pub excluded: usize,
}

impl std::fmt::Display for Shortfall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} jailed, {} without room for the shard, {} without free stake for its collateral, {} above --max-price, {} excluded",
            self.jailed, self.no_room, self.no_stake, self.too_expensive, self.excluded
        )
    }
}

/// A provider able to take one shard, with what it would cost per epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub address: Pubkey,
    pub price_per_epoch: u64,
    /// Failed deal-epochs per 1,000 settled (lower is better).
    pub fault_rate: u64,
}

/// Every provider that can take a `shard_bytes` shard at no more than
/// `max_price_per_epoch`, best first: lowest fault rate, then price, then the
/// most free room. `exclude` are providers already used or known to fail; a
/// jailed provider takes no new deals.
pub fn candidates(
    providers: &[(Pubkey, Provider)],
    params: &MarketParams,
    shard_bytes: u64,
    max_price_per_epoch: u64,
    exclude: &[Pubkey],
) -> (Vec<Candidate>, Shortfall) {
    let mib = billable_mib(shard_bytes);
    let collateral = params.collateral_per_mib.saturating_mul(mib);
    let mut short = Shortfall::default();
    let mut out: Vec<(Candidate, u64)> = Vec::new();
    for (address, p) in providers {
        if exclude.contains(address) {
            short.excluded += 1;
            continue;
        }
        if p.is_jailed() {
            short.jailed += 1;
            continue;
        }
        let free = p.capacity_bytes.saturating_sub(p.used_bytes);
        if free < shard_bytes {
            short.no_room += 1;
            continue;
        }
        if p.stake_free < collateral {
            short.no_stake += 1;
            continue;
        }
        let price = p.price_per_mib_epoch.saturating_mul(mib);
        if price > max_price_per_epoch {
            short.too_expensive += 1;
            continue;
        }
        let settled = p.proofs + p.faults;
        let fault_rate = (p.faults * 1000).checked_div(settled).unwrap_or(0);
        out.push((
            Candidate {
                address: *address,
                price_per_epoch: price,
                fault_rate,
            },
            free,
        ));
    }
    out.sort_by(|(a, a_free), (b, b_free)| {
        (
            a.fault_rate,
            a.price_per_epoch,
            std::cmp::Reverse(*a_free),
            a.address,
        )
            .cmp(&(
                b.fault_rate,
                b.price_per_epoch,
                std::cmp::Reverse(*b_free),
                b.address,
            ))
    });
    (out.into_iter().map(|(c, _)| c).collect(), short)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(
        capacity: u64,
        used: u64,
        stake: u64,
        price: u64,
        proofs: u64,
        faults: u64,
    ) -> Provider {
        Provider {
            capacity_bytes: capacity,
            used_bytes: used,
            price_per_mib_epoch: price,
            stake_free: stake,
            proofs,
            faults,
            ..crate::test_support::provider()
        }
    }

    fn params() -> MarketParams {
        MarketParams {
            epoch_slots: 10,
            collateral_per_mib: 100,
            slash_bps: 1000,
            accept_timeout_epochs: 2,
            response_slots: 10,
            max_shard_bytes: 1 << 32,
            samples_per_epoch: 16,
            jail_failures: 3,
            jail_window: 30,
        }
    }

    #[test]
    fn reliable_then_cheap_providers_come_first_and_unfit_ones_are_counted() {
        let mib = 1 << 20;
        let list: Vec<(Pubkey, Provider)> = vec![
            provider(10 * mib, 0, 1_000, 5, 100, 10),    // 100‰ faults
            provider(10 * mib, 0, 1_000, 9, 100, 0),     // reliable, pricier
            provider(10 * mib, 0, 1_000, 3, 0, 0),       // new: no record, cheapest
            provider(10 * mib, 9 * mib, 1_000, 1, 0, 0), // full
            provider(10 * mib, 0, 100, 1, 0, 0),         // stake below 2 MiB of collateral
            provider(10 * mib, 0, 1_000, 50, 0, 0),      // too expensive
            Provider {
                jailed_from: 7,
                ..provider(10 * mib, 0, 1_000, 1, 0, 0) // jailed: cheapest, no record
            },
        ]
        .into_iter()
        .map(|p| (Pubkey::new_unique(), p))
        .collect();
        let excluded = list[1].0;
        let (c, short) = candidates(&list, &params(), 2 * mib - 1, 2 * 20, &[]);
        let order: Vec<Pubkey> = c.iter().map(|c| c.address).collect();
        assert_eq!(order, [list[2].0, list[1].0, list[0].0]);
        assert_eq!(c[0].price_per_epoch, 6);
        assert_eq!(c[2].fault_rate, 90);
        assert_eq!(
            short,
            Shortfall {
                jailed: 1,
                no_room: 1,
                no_stake: 1,
                too_expensive: 1,
                excluded: 0
            }
        );
        let (c, short) = candidates(&list, &params(), 2 * mib - 1, 2 * 20, &[excluded]);
        assert_eq!(c.len(), 2);
        assert_eq!(short.excluded, 1);
    }
}
