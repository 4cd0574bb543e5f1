//! Cost: transactions per provider per epoch and what they cost per TB-month.
//!
//! # Rules
//! - Proofs: `ceil(min(samples_per_epoch, D) / samples_per_tx)` transactions, where
//!   `samples_per_tx` is 1 for shards whose Merkle path is deeper than 10 levels (a
//!   4 GiB shard has 2^26 segments: depth 26) and 2 up to 10 levels (64 KiB shards)
//!   ([`default_samples_per_tx`]), unless overridden.
//! - Opening the epoch: 1 transaction per provider per epoch (the node opens every
//!   epoch; when another provider opened it first the transaction fails harmlessly,
//!   but is still paid for).
//! - Settlement is lazy: one `settle` transaction settles up to `settle_deals_per_tx`
//!   (20) deals and each deal needs `settles_per_deal_month` (1) a month:
//!   `ceil(D * settles_per_deal_month / 20)` a month, amortised over the month's epochs.
//! - Acceptance: one transaction per deal per lifetime of `deal_epochs` (30) epochs,
//!   amortised: `D / deal_epochs` per epoch.
//! - Every transaction carries `signatures_per_tx` (1) signatures at
//!   `lamports_per_signature` (5,000) lamports; SOL at `sol_usd` ($150). Priority fees
//!   and rent are not counted.
//! - Old design, for comparison: one proof transaction per deal per epoch.
//! - Per TB-month figures divide by the bytes stored, `D * shard_bytes`, in TB (10^12
//!   bytes). "Proving" counts proofs and the open, "recurring" adds settlement, "all-in"
//!   adds acceptance.

use serde::Serialize;

use crate::detection::{samples_asked, SEGMENT_BYTES};
use crate::{ensure, SimError, GIB, TB};

/// Deepest Merkle path for which two samples fit in one proof transaction.
pub const MAX_DEPTH_FOR_TWO_SAMPLES: u32 = 10;

/// Lamports in one SOL.
pub const LAMPORTS_PER_SOL: f64 = 1e9;

/// Fees and transaction shapes.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Fees {
    /// Fee per signature, lamports.
    pub lamports_per_signature: u64,
    /// Signatures per transaction.
    pub signatures_per_tx: u32,
    /// Price of SOL, USD.
    pub sol_usd: f64,
    /// Deals one `settle` transaction settles at most.
    pub settle_deals_per_tx: u64,
    /// Settlements each deal needs a month.
    pub settles_per_deal_month: f64,
    /// Deal lifetime in epochs (one acceptance transaction each).
    pub deal_epochs: u32,
    /// Epochs per month.
    pub epochs_per_month: u32,
    /// Samples per proof transaction; `None` = by shard depth
    /// ([`default_samples_per_tx`]).
    pub samples_per_tx: Option<u32>,
}

impl Default for Fees {
    fn default() -> Self {
        Fees {
            lamports_per_signature: 5_000,
            signatures_per_tx: 1,
            sol_usd: 150.0,
            settle_deals_per_tx: 20,
            settles_per_deal_month: 1.0,
            deal_epochs: 30,
            epochs_per_month: 30,
            samples_per_tx: None,
        }
    }
}

impl Fees {
    /// Checks every field's range.
    pub fn validate(&self) -> Result<(), SimError> {
        ensure(self.sol_usd >= 0.0, "SOL price", self.sol_usd, ">= 0")?;
        ensure(
            self.settle_deals_per_tx >= 1,
            "deals per settle",
            self.settle_deals_per_tx,
            ">= 1",
        )?;
        ensure(
            self.settles_per_deal_month >= 0.0,
            "settles per deal-month",
            self.settles_per_deal_month,
            ">= 0",
        )?;
        ensure(
            self.deal_epochs >= 1,
            "deal epochs",
            self.deal_epochs,
            ">= 1",
        )?;
        ensure(
            self.epochs_per_month >= 1,
            "epochs per month",
            self.epochs_per_month,
            ">= 1",
        )?;
        if let Some(spt) = self.samples_per_tx {
            ensure(spt >= 1, "samples per tx", spt, ">= 1")?;
        }
        Ok(())
    }

    /// What one transaction costs, USD.
    pub fn usd_per_tx(&self) -> f64 {
        (self.lamports_per_signature as f64 * f64::from(self.signatures_per_tx)) / LAMPORTS_PER_SOL
            * self.sol_usd
    }

    /// Samples per proof transaction for shards of `shard_bytes`.
    pub fn samples_per_tx_for(&self, shard_bytes: u64) -> u32 {
        self.samples_per_tx
            .unwrap_or_else(|| default_samples_per_tx(shard_bytes))
    }
}

/// Levels of a shard's Merkle path: `ceil(log2(segments))`, 64-byte segments.
pub fn tree_depth(shard_bytes: u64) -> u32 {
    let segments = shard_bytes.div_ceil(SEGMENT_BYTES).max(1);
    if segments == 1 {
        0
    } else {
        u64::BITS - (segments - 1).leading_zeros()
    }
}

/// 2 samples per transaction when the path has at most
/// [`MAX_DEPTH_FOR_TWO_SAMPLES`] levels, else 1.
pub fn default_samples_per_tx(shard_bytes: u64) -> u32 {
    if tree_depth(shard_bytes) <= MAX_DEPTH_FOR_TWO_SAMPLES {
        2
    } else {
        1
    }
}

/// Shard bytes for a size in GiB.
pub fn shard_bytes(shard_gib: f64) -> u64 {
    (shard_gib * GIB).round() as u64
}

/// Transactions per provider per epoch under Proving v2.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TxPerEpoch {
    /// Proof transactions.
    pub proofs: u64,
    /// Epoch-open transactions.
    pub open: u64,
    /// Settle transactions, amortised.
    pub settle: f64,
    /// Acceptance transactions, amortised.
    pub accept: f64,
}

impl TxPerEpoch {
    /// Proofs and the open.
    pub fn proving(&self) -> f64 {
        (self.proofs + self.open) as f64
    }

    /// Proofs, open and settlement.
    pub fn recurring(&self) -> f64 {
        self.proving() + self.settle
    }

    /// Everything, acceptance included.
    pub fn total(&self) -> f64 {
        self.recurring() + self.accept
    }
}

/// Transactions per epoch for a provider with `deals` deals.
pub fn v2_tx_per_epoch(
    fees: &Fees,
    deals: u64,
    samples_per_epoch: u32,
    samples_per_tx: u32,
) -> Result<TxPerEpoch, SimError> {
    fees.validate()?;
    ensure(deals >= 1, "deals", deals, ">= 1")?;
    ensure(
        samples_per_tx >= 1,
        "samples per tx",
        samples_per_tx,
        ">= 1",
    )?;
    let s = samples_asked(samples_per_epoch, deals);
    let settles_per_month =
        (deals as f64 * fees.settles_per_deal_month / fees.settle_deals_per_tx as f64).ceil();
    Ok(TxPerEpoch {
        proofs: s.div_ceil(u64::from(samples_per_tx)),
        open: 1,
        settle: settles_per_month / f64::from(fees.epochs_per_month),
        accept: deals as f64 / f64::from(fees.deal_epochs),
    })
}

/// One line of the cost table.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CostRow {
    /// Deals the provider holds.
    pub deals: u64,
    /// Shard size, GiB.
    pub shard_gib: f64,
    /// Merkle path levels of one shard.
    pub tree_depth: u32,
    /// Samples per proof transaction.
    pub samples_per_tx: u32,
    /// `samples_per_epoch` parameter.
    pub samples_per_epoch: u32,
    /// Proving v2 transactions per epoch.
    pub tx: TxPerEpoch,
    /// Bytes stored, TB.
    pub stored_tb: f64,
    /// v2 proofs and open, USD per TB-month.
    pub proving_usd_per_tb_month: f64,
    /// v2 proofs, open and settle, USD per TB-month.
    pub recurring_usd_per_tb_month: f64,
    /// v2 everything, acceptance included, USD per TB-month.
    pub all_in_usd_per_tb_month: f64,
    /// Old design: proof transactions per epoch (one per deal).
    pub old_proof_tx_per_epoch: u64,
    /// Old design's proofs, USD per TB-month.
    pub old_proving_usd_per_tb_month: f64,
}

/// Computes one cost row.
pub fn cost_row(
    fees: &Fees,
    deals: u64,
    shard_gib: f64,
    samples_per_epoch: u32,
) -> Result<CostRow, SimError> {
    ensure(shard_gib > 0.0, "shard GiB", shard_gib, "> 0")?;
    let bytes = shard_bytes(shard_gib);
    let spt = fees.samples_per_tx_for(bytes);
    let tx = v2_tx_per_epoch(fees, deals, samples_per_epoch, spt)?;
    let stored_tb = deals as f64 * bytes as f64 / TB;
    let per_tb_month =
        |txs: f64| txs * fees.usd_per_tx() * f64::from(fees.epochs_per_month) / stored_tb;
    Ok(CostRow {
        deals,
        shard_gib,
        tree_depth: tree_depth(bytes),
        samples_per_tx: spt,
        samples_per_epoch,
        tx,
        stored_tb,
        proving_usd_per_tb_month: per_tb_month(tx.proving()),
        recurring_usd_per_tb_month: per_tb_month(tx.recurring()),
        all_in_usd_per_tb_month: per_tb_month(tx.total()),
        old_proof_tx_per_epoch: deals,
        old_proving_usd_per_tb_month: per_tb_month(deals as f64),
    })
}

/// Which transactions a cost target counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    /// Proofs, open and settlement.
    Recurring,
    /// Everything, acceptance included.
    AllIn,
}

/// The smallest provider meeting a cost target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BreakEven {
    /// Shard size, GiB.
    pub shard_gib: f64,
    /// `samples_per_epoch` parameter.
    pub samples_per_epoch: u32,
    /// What is counted.
    pub scope: Scope,
    /// Target, USD per TB-month.
    pub target_usd_per_tb_month: f64,
    /// Smallest deal count from which on (up to `search_limit`) the cost is at most the
    /// target; `None` if it is above the target at `search_limit`.
    pub min_deals: Option<u64>,
    /// `min_deals` in TB stored.
    pub min_tb: Option<f64>,
    /// What the counted transactions cost per TB-month as `D` grows without bound
    /// (the per-deal settle and accept share).
    pub floor_usd_per_tb_month: f64,
    /// Largest deal count searched.
    pub search_limit: u64,
}

/// Finds the smallest provider (in deals) whose cost in `scope` stays at or under
/// `target` for every larger size up to `search_limit` deals.
pub fn break_even(
    fees: &Fees,
    shard_gib: f64,
    samples_per_epoch: u32,
    scope: Scope,
    target: f64,
    search_limit: u64,
) -> Result<BreakEven, SimError> {
    ensure(search_limit >= 1, "search limit", search_limit, ">= 1")?;
    let mut last_over = 0u64;
    for deals in 1..=search_limit {
        let row = cost_row(fees, deals, shard_gib, samples_per_epoch)?;
        let cost = match scope {
            Scope::Recurring => row.recurring_usd_per_tb_month,
            Scope::AllIn => row.all_in_usd_per_tb_month,
        };
        if cost > target {
            last_over = deals;
        }
    }
    let min_deals = (last_over < search_limit).then_some(last_over + 1);
    let bytes = shard_bytes(shard_gib) as f64;
    let settle_per_deal_epoch = fees.settles_per_deal_month
        / fees.settle_deals_per_tx as f64
        / f64::from(fees.epochs_per_month);
    let accept_per_deal_epoch = match scope {
        Scope::Recurring => 0.0,
        Scope::AllIn => 1.0 / f64::from(fees.deal_epochs),
    };
    let floor = (settle_per_deal_epoch + accept_per_deal_epoch)
        * fees.usd_per_tx()
        * f64::from(fees.epochs_per_month)
        / (bytes / TB);
    Ok(BreakEven {
        shard_gib,
        samples_per_epoch,
        scope,
        target_usd_per_tb_month: target,
        min_deals,
        min_tb: min_deals.map(|d| d as f64 * bytes / TB),
        floor_usd_per_tb_month: floor,
        search_limit,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depths_and_samples_per_tx() {
        assert_eq!(tree_depth(4 << 30), 26);
        assert_eq!(tree_depth(1 << 30), 24);
        assert_eq!(tree_depth(64 << 10), 10);
        assert_eq!(tree_depth((64 << 10) + 1), 11);
        assert_eq!(tree_depth(64), 0);
        assert_eq!(default_samples_per_tx(4 << 30), 1);
        assert_eq!(default_samples_per_tx(64 << 10), 2);
        assert_eq!(default_samples_per_tx(128 << 10), 1);
    }

    #[test]
    fn one_tx_costs_three_quarters_of_a_tenth_of_a_cent() {
        assert!((Fees::default().usd_per_tx() - 0.00075).abs() < 1e-15);
    }

    #[test]
    fn transactions_per_epoch() {
        let fees = Fees::default();
        let one = v2_tx_per_epoch(&fees, 1, 32, 1).unwrap();
        assert_eq!((one.proofs, one.open), (1, 1));
        assert!((one.settle - 1.0 / 30.0).abs() < 1e-12);
        assert!((one.accept - 1.0 / 30.0).abs() < 1e-12);
        let big = v2_tx_per_epoch(&fees, 100_000, 16, 1).unwrap();
        assert_eq!((big.proofs, big.open), (16, 1));
        assert!((big.settle - 5000.0 / 30.0).abs() < 1e-9);
        assert!((big.accept - 100_000.0 / 30.0).abs() < 1e-9);
        let two = v2_tx_per_epoch(&fees, 1000, 31, 2).unwrap();
        assert_eq!(two.proofs, 16);
    }

    #[test]
    fn old_design_pays_per_deal() {
        let row = cost_row(&Fees::default(), 10_000, 4.0, 16).unwrap();
        assert_eq!(row.old_proof_tx_per_epoch, 10_000);
        // 10,000 tx/day * 30 * $0.00075 over 42.95 TB.
        let expected = 10_000.0 * 30.0 * 0.00075 / (10_000.0 * 4.0 * GIB / TB);
        assert!((row.old_proving_usd_per_tb_month - expected).abs() < 1e-9);
        assert!(row.recurring_usd_per_tb_month < row.old_proving_usd_per_tb_month / 100.0);
    }

    #[test]
    fn break_even_is_the_first_size_under_target() {
        let fees = Fees::default();
        let b = break_even(&fees, 4.0, 16, Scope::Recurring, 0.10, 20_000).unwrap();
        let d = b.min_deals.unwrap();
        let cost = |d| {
            cost_row(&fees, d, 4.0, 16)
                .unwrap()
                .recurring_usd_per_tb_month
        };
        assert!(cost(d) <= 0.10);
        assert!(cost(d - 1) > 0.10);
        // Acceptance alone costs more than $0.10/TB-month at 4 GiB, 30-day deals.
        let all = break_even(&fees, 4.0, 16, Scope::AllIn, 0.10, 20_000).unwrap();
        assert_eq!(all.min_deals, None);
        assert!(all.floor_usd_per_tb_month > 0.10);
    }
}
