//! `cairn ls` and `cairn status ID`: a client's datasets as the chain records
//! them (deals, states, proven epochs, faults, escrow, health).
use std::collections::BTreeMap;
use std::fmt;

use anchor_lang::prelude::Pubkey;
use cairn_core::DatasetId;
use clap::Args;
use serde::Serialize;
use solana_signer::Signer;
use storage_market::state::{Deal, DealState, Market};

use crate::context::{Ctx, MarketView};
use crate::error::CliError;
use crate::output::{pubkey, Report};
use crate::units::{human_bytes, Tokens};

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Dataset id (64 hex characters, printed by `cairn upload`).
    pub dataset: String,
    /// The dataset's client. Default: the keypair's pubkey.
    #[arg(long)]
    pub client: Option<Pubkey>,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    /// Whose datasets. Default: the keypair's pubkey.
    #[arg(long)]
    pub client: Option<Pubkey>,
}

/// Whether a deal is proving: active, and every epoch whose proof window has
/// closed is proven or settled, with no fault in a row at the end.
pub fn is_proving(deal: &Deal, market: &Market, slot: u64) -> bool {
    if deal.state != DealState::Active || deal.consecutive_faults > 0 {
        return false;
    }
    let p = &market.params;
    // Epoch e's window closes at (e + 1) * epoch_slots + grace_slots.
    let closed_through = slot
        .checked_sub(p.grace_slots)
        .map(|s| s / p.epoch_slots)
        .and_then(|e| e.checked_sub(1));
    match closed_through {
        Some(e) if e >= deal.start_epoch => deal.settled_through >= e.min(deal.end_epoch - 1),
        _ => true,
    }
}

/// Collateral slashed from `deal` so far. Each missed epoch slashes
/// `collateral * slash_bps / 10000`, capped by what is left; termination
/// releases the rest, so the total is computed from the fault count.
fn slashed(deal: &Deal) -> u64 {
    storage_market::settlement::slash_per_epoch(deal)
        .unwrap_or(deal.collateral)
        .saturating_mul(deal.total_faults)
        .min(deal.collateral)
}

#[derive(Serialize, Debug)]
pub struct ShardReport {
    pub shard_index: u16,
    #[serde(with = "pubkey")]
    pub deal: Pubkey,
    #[serde(with = "pubkey")]
    pub provider: Pubkey,
    pub state: &'static str,
    pub proving: bool,
    pub shard_bytes: u64,
    pub start_epoch: u64,
    pub end_epoch: u64,
    pub proven_epochs: u64,
    pub faults: u64,
    /// Collateral slashed so far (collateral minus what is still locked,
    /// once the deal is active).
    pub slashed: u64,
    pub escrow_left: u64,
    pub refund_owed: u64,
}

#[derive(Serialize, Debug)]
pub struct DatasetReport {
    pub dataset_id: String,
    #[serde(with = "pubkey")]
    pub client: Pubkey,
    pub k: u16,
    pub n: u16,
    /// Shards whose deal is proving.
    pub proving: u16,
    /// `healthy` (all n proving), `degraded` (at least k) or `at risk`.
    pub health: &'static str,
    pub bytes: u64,
    pub escrow_left: u64,
    pub epoch: u64,
    pub decimals: u8,
    pub shards: Vec<ShardReport>,
}

pub(crate) fn state_name(state: DealState) -> &'static str {
    match state {
        DealState::Proposed => "proposed",
        DealState::Active => "active",
        DealState::Completed => "completed",
        DealState::Terminated => "terminated",
        DealState::Cancelled => "cancelled",
    }
}

fn report(
    m: &MarketView,
    slot: u64,
    dataset: [u8; 32],
    client: Pubkey,
    mut deals: Vec<(Pubkey, Deal)>,
) -> DatasetReport {
    deals.sort_by_key(|(_, d)| d.shard_index);
    let (k, n) = deals.first().map(|(_, d)| (d.k, d.n)).unwrap_or((0, 0));
    let shards: Vec<ShardReport> = deals
        .iter()
        .map(|(address, d)| ShardReport {
            shard_index: d.shard_index,
            deal: *address,
            provider: d.provider,
            state: state_name(d.state),
            proving: is_proving(d, &m.account, slot),
            shard_bytes: d.shard_bytes,
            start_epoch: d.start_epoch,
            end_epoch: d.end_epoch,
            proven_epochs: d.proven_epochs,
            faults: d.total_faults,
            slashed: slashed(d),
            escrow_left: d.escrow,
            refund_owed: d.client_refund,
        })
        .collect();
    let proving = shards.iter().filter(|s| s.proving).count() as u16;
    DatasetReport {
        dataset_id: DatasetId(dataset).to_string(),
        client,
        k,
        n,
        proving,
        health: if proving >= n && n > 0 {
            "healthy"
        } else if proving >= k && k > 0 {
            "degraded"
        } else {
            "at risk"
        },
        bytes: shards.iter().map(|s| s.shard_bytes).sum(),
        escrow_left: shards.iter().map(|s| s.escrow_left).sum(),
        epoch: m.account.epoch_at(slot),
        decimals: m.decimals,
        shards,
    }
}

pub fn status(ctx: &Ctx, a: StatusArgs) -> Result<Box<dyn Report>, CliError> {
    let dataset = crate::context::parse_dataset_id(&a.dataset)?;
    let client = match a.client {
        Some(c) => c,
        None => ctx.payer()?.pubkey(),
    };
    let m = ctx.market()?;
    let slot = ctx.rpc.get_slot().map_err(|e| ctx.rpc_err(e))?;
    let deals = ctx.program_accounts::<Deal>(&[
        (cairn_chain::layout::DEAL_CLIENT, client.as_ref()),
        (cairn_chain::layout::DEAL_DATASET_ID, dataset.as_bytes()),
    ])?;
    if deals.is_empty() {
        return Err(CliError::Refused(format!(
            "unknown dataset {dataset}: client {client} has no deals for it on {}",
            ctx.url
        )));
    }
    Ok(Box::new(report(&m, slot, dataset.0, client, deals)))
}

impl fmt::Display for DatasetReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = |base_units| Tokens {
            base_units,
            decimals: self.decimals,
        };
        writeln!(f, "dataset  {}", self.dataset_id)?;
        writeln!(
            f,
            "health   {}: {} of {} shards proving ({} needed to rebuild), epoch {}",
            self.health, self.proving, self.n, self.k, self.epoch
        )?;
        writeln!(
            f,
            "stored   {} in shards, escrow left {}",
            human_bytes(self.bytes),
            t(self.escrow_left)
        )?;
        writeln!(
            f,
            "{:>5}  {:<11} {:<8} {:>6} {:>6} {:>12}  provider",
            "shard", "state", "proving", "proven", "faults", "slashed"
        )?;
        for s in &self.shards {
            writeln!(
                f,
                "{:>5}  {:<11} {:<8} {:>6} {:>6} {:>12}  {}",
                s.shard_index,
                s.state,
                if s.proving { "yes" } else { "no" },
                s.proven_epochs,
                s.faults,
                t(s.slashed).to_string(),
                s.provider
            )?;
        }
        Ok(())
    }
}

#[derive(Serialize, Debug)]
pub struct Listing {
    #[serde(with = "pubkey")]
    pub client: Pubkey,
    pub datasets: Vec<DatasetReport>,
}

pub fn ls(ctx: &Ctx, a: LsArgs) -> Result<Box<dyn Report>, CliError> {
    let client = match a.client {
        Some(c) => c,
        None => ctx.payer()?.pubkey(),
    };
    let m = ctx.market()?;
    let slot = ctx.rpc.get_slot().map_err(|e| ctx.rpc_err(e))?;
    let mut by_dataset: BTreeMap<[u8; 32], Vec<(Pubkey, Deal)>> = BTreeMap::new();
    for (address, deal) in
        ctx.program_accounts::<Deal>(&[(cairn_chain::layout::DEAL_CLIENT, client.as_ref())])?
    {
        by_dataset
            .entry(deal.dataset_id)
            .or_default()
            .push((address, deal));
    }
    let datasets = by_dataset
        .into_iter()
        .map(|(id, deals)| report(&m, slot, id, client, deals))
        .collect();
    Ok(Box::new(Listing { client, datasets }))
}

impl fmt::Display for Listing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.datasets.is_empty() {
            return writeln!(f, "client {} has no datasets", self.client);
        }
        writeln!(
            f,
            "{:<64}  {:>5}  {:<9} {:>10}",
            "dataset", "k/n", "health", "size"
        )?;
        for d in &self.datasets {
            writeln!(
                f,
                "{:<64}  {:>5}  {:<9} {:>10}",
                d.dataset_id,
                format!("{}/{}", d.k, d.n),
                d.health,
                human_bytes(d.bytes)
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deal(state: DealState, faults: u64, collateral_left: u64) -> Deal {
        Deal {
            client: Pubkey::new_unique(),
            provider: Pubkey::new_unique(),
            dataset_id: [1; 32],
            shard_index: 0,
            k: 4,
            n: 6,
            shard_root: [2; 32],
            shard_bytes: 1 << 20,
            price_per_epoch: 100,
            duration_epochs: 10,
            escrow: 0,
            collateral: 90_000,
            collateral_left,
            client_refund: 0,
            state,
            proposed_epoch: 0,
            start_epoch: 1,
            end_epoch: 11,
            settled_through: 0,
            proven_epochs: 0,
            total_faults: faults,
            consecutive_faults: 0,
            slash_bps: 1_000,
            bounty_bps: 2_000,
            max_consecutive_faults: 3,
            bump: 255,
        }
    }

    #[test]
    fn slashed_counts_missed_epochs_even_after_termination_released_the_rest() {
        assert_eq!(slashed(&deal(DealState::Active, 2, 72_000)), 18_000);
        // Terminated: collateral_left is 0 (released, not slashed).
        assert_eq!(slashed(&deal(DealState::Terminated, 3, 0)), 27_000);
        // Capped at the collateral.
        assert_eq!(slashed(&deal(DealState::Terminated, 12, 0)), 90_000);
        assert_eq!(slashed(&deal(DealState::Proposed, 0, 0)), 0);
    }
}
