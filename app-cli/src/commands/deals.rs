//! `cairn ls`, `cairn ls ID` and `cairn status ID`: a client's datasets as the
//! chain records them, group by group (every deal names its dataset, its group
//! and the group's number), and a dataset's files from its manifest. Each
//! deal's epochs come from the chain's bits (proven, failed, void), settled or
//! not yet, with what they owe the client; a group's health is how many of its
//! shards are still stored as agreed, and how many more may be lost; a
//! dataset's is its weakest group's.
use std::collections::BTreeMap;
use std::fmt;

use anchor_lang::prelude::Pubkey;
use cairn_core::DatasetId;
use clap::Args;
use serde::Serialize;
use solana_signer::Signer;
use storage_market::constants::NOT_JAILED;
use storage_market::state::{Deal, DealState};

use crate::context::{Ctx, MarketView};
use crate::dataset::onchain::{self, state_name, DealAt, DealsView, Trouble};
use crate::epochs::{self, DealEpochs};
use crate::error::CliError;
use crate::output::{pubkey, Report};
use crate::units::{human_bytes, Tokens};

#[derive(Args, Debug)]
pub struct StatusArgs {
    /// Dataset id (64 hex characters, printed by `cairn upload`).
    pub dataset: String,
    /// Only this client's deals (a dataset's deals are all its client's).
    #[arg(long)]
    pub client: Option<Pubkey>,
}

#[derive(Args, Debug)]
pub struct LsArgs {
    /// A dataset id: list its files and empty directories (from its manifest,
    /// without downloading any data). Without it: the client's datasets.
    pub dataset: Option<String>,
    /// Whose datasets. Default: the keypair's pubkey.
    #[arg(long)]
    pub client: Option<Pubkey>,
    #[command(flatten)]
    pub key: crate::commands::key::KeyArg,
}

/// One deal of a dataset (a shard may have several, one per placement).
#[derive(Serialize, Debug, Clone)]
pub struct DealReport {
    pub shard_index: u16,
    pub generation: u16,
    /// The shard's live placement (highest generation neither terminated nor
    /// cancelled).
    pub live: bool,
    #[serde(with = "pubkey")]
    pub deal: Pubkey,
    #[serde(with = "pubkey")]
    pub provider: Pubkey,
    /// The epoch the provider is jailed from, if it is.
    pub provider_jailed_from: Option<u64>,
    pub state: &'static str,
    /// Active, running, no failed epoch, provider not jailed, not ended.
    pub healthy: bool,
    /// The client ended the deal after a failed epoch.
    pub ended_by_client: bool,
    /// It ran its agreed term (completed, or past its end epoch).
    pub term_over: bool,
    /// Why `cairn repair` would replace it (its shard's live deal only).
    pub trouble: Option<String>,
    pub shard_bytes: u64,
    pub start_epoch: u64,
    pub end_epoch: u64,
    /// First epoch not settled yet.
    pub settled_until: u64,
    pub price_per_epoch: u64,
    /// Escrow not yet paid out or refunded.
    pub escrow_left: u64,
    pub collateral: u64,
    /// Collateral still locked by the provider for this deal.
    pub collateral_left: u64,
    /// Owed to the client now (refunded prices, penalties, forfeited
    /// collateral), paid when the deal is closed.
    pub client_refund: u64,
    /// The epochs from the chain's bits, and what they owe the client.
    pub epochs: DealEpochs,
}

/// One erasure group's deals and health.
#[derive(Serialize, Debug)]
pub struct DatasetReport {
    /// The group's id (BLAKE3 of its group manifest).
    pub group_id: String,
    /// The group's number; absent for the index group.
    pub group: Option<u32>,
    #[serde(with = "pubkey")]
    pub client: Pubkey,
    pub k: u16,
    pub n: u16,
    /// Shards whose live deal is healthy.
    pub healthy: u16,
    /// Healthy shards beyond the k needed: how many more may be lost.
    pub can_lose: u16,
    /// `healthy` (all n), `degraded` (at least k) or `at risk`.
    pub health: &'static str,
    /// Shards with a live deal to repair: its provider failed an epoch or is
    /// jailed, the client ended it, or its proposal lapsed.
    pub to_repair: Vec<u16>,
    /// Shards whose live deal ran its agreed term.
    pub term_over: Vec<u16>,
    /// Shards with no live deal (`cairn repair` places them).
    pub missing: Vec<u16>,
    /// Shards still waiting for their provider to accept.
    pub proposed: Vec<u16>,
    #[serde(flatten)]
    pub totals: Totals,
    pub epoch: u64,
    pub decimals: u8,
    pub deals: Vec<DealReport>,
}

/// What a set of deals stores, holds and owes (base units).
#[derive(Serialize, Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Totals {
    /// Bytes of the live deals' shards.
    pub bytes: u64,
    pub escrow_left: u64,
    pub client_refund: u64,
    /// Collateral owed to the client for failed epochs, settled or not.
    pub penalties: u64,
    /// Collateral that goes to the client because deals ended early.
    pub forfeit: u64,
}

impl std::iter::Sum for Totals {
    fn sum<I: Iterator<Item = Totals>>(iter: I) -> Totals {
        iter.fold(Totals::default(), |a, b| Totals {
            bytes: a.bytes + b.bytes,
            escrow_left: a.escrow_left + b.escrow_left,
            client_refund: a.client_refund + b.client_refund,
            penalties: a.penalties + b.penalties,
            forfeit: a.forfeit + b.forfeit,
        })
    }
}

/// The report of one dataset's deals (all of one client and dataset id).
fn report(
    m: &MarketView,
    chain: &DealsView,
    group_id: [u8; 32],
    client: Pubkey,
    mut deals: Vec<DealAt>,
) -> DatasetReport {
    onchain::sort(&mut deals);
    let now = chain.now;
    // The group's coding as its first shard's deal has it; a deal of another
    // coding or a shard index not below n does not fit the group and is left
    // out (only the dataset's client can file one).
    let (k, n) = deals.first().map(|(_, d)| (d.k, d.n)).unwrap_or((0, 0));
    deals.retain(|(_, d)| d.k == k && d.n == n && d.shard_index < n);
    let live: Vec<Pubkey> = onchain::live_deals(&deals)
        .values()
        .map(|(address, _)| *address)
        .collect();
    let troubles: BTreeMap<u16, Trouble> = (0..n)
        .filter_map(|i| onchain::trouble(&deals, chain, i).1.map(|t| (i, t)))
        .collect();
    let shards: Vec<DealReport> = deals
        .iter()
        .map(|(address, d)| {
            let jailed_from = chain.jailed_from(&d.provider);
            let epochs = chain.epochs(d);
            DealReport {
                shard_index: d.shard_index,
                generation: d.generation,
                live: live.contains(address),
                deal: *address,
                provider: d.provider,
                provider_jailed_from: (jailed_from != NOT_JAILED).then_some(jailed_from),
                state: state_name(d.state),
                healthy: epochs::is_healthy(d, &epochs, jailed_from, now),
                ended_by_client: d.forfeit,
                term_over: d.state == DealState::Completed
                    || (d.state == DealState::Active
                        && !d.forfeit
                        && jailed_from == NOT_JAILED
                        && d.end_epoch <= now),
                trouble: troubles
                    .get(&d.shard_index)
                    .filter(|_| live.contains(address))
                    .map(|t| t.reason(Some(d))),
                shard_bytes: d.shard_bytes,
                start_epoch: d.start_epoch,
                end_epoch: d.end_epoch,
                settled_until: d.settled_until,
                price_per_epoch: d.price_per_epoch,
                escrow_left: d.escrow,
                collateral: d.collateral,
                collateral_left: d.collateral_left,
                client_refund: d.client_refund,
                epochs,
            }
        })
        .collect();
    let lives = || shards.iter().filter(|s| s.live);
    let healthy = lives().filter(|s| s.healthy).count() as u16;
    let missing: Vec<u16> = (0..n)
        .filter(|i| !lives().any(|s| s.shard_index == *i))
        .collect();
    let proposed: Vec<u16> = lives()
        .filter(|s| s.state == "proposed")
        .map(|s| s.shard_index)
        .collect();
    let to_repair: Vec<u16> = lives()
        .filter(|s| s.trouble.is_some())
        .map(|s| s.shard_index)
        .collect();
    let term_over: Vec<u16> = lives()
        .filter(|s| s.term_over)
        .map(|s| s.shard_index)
        .collect();
    let sum = |f: fn(&DealReport) -> u64| shards.iter().map(f).sum::<u64>();
    DatasetReport {
        group_id: DatasetId(group_id).to_string(),
        group: deals.first().and_then(|(_, d)| onchain::group_number(d)),
        client,
        k,
        n,
        healthy,
        can_lose: healthy.saturating_sub(k),
        health: if healthy >= n && n > 0 {
            "healthy"
        } else if healthy >= k && k > 0 {
            "degraded"
        } else {
            "at risk"
        },
        to_repair,
        term_over,
        missing,
        proposed,
        totals: Totals {
            bytes: lives().map(|s| s.shard_bytes).sum(),
            escrow_left: sum(|s| s.escrow_left),
            client_refund: sum(|s| s.client_refund),
            penalties: sum(|s| s.epochs.penalties),
            forfeit: sum(|s| s.epochs.forfeit),
        },
        epoch: now,
        decimals: m.decimals,
        deals: shards,
    }
}

/// A shard of a group: `group` absent for the index group.
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardRef {
    pub group: Option<u32>,
    pub shard_index: u16,
}

/// `cairn status ID`: a dataset's health over all its groups.
#[derive(Serialize, Debug)]
pub struct StatusReport {
    pub dataset_id: String,
    #[serde(with = "pubkey")]
    pub client: Pubkey,
    pub k: u16,
    pub n: u16,
    /// Data groups (the index group comes on top).
    pub data_groups: usize,
    /// The weakest group's: `healthy`, `degraded` or `at risk`.
    pub health: &'static str,
    /// Shards any one group can still lose (the least over all groups).
    pub can_lose: u16,
    pub to_repair: Vec<ShardRef>,
    pub missing: Vec<ShardRef>,
    #[serde(flatten)]
    pub totals: Totals,
    pub epoch: u64,
    pub decimals: u8,
    /// The index group first, then the data groups in order.
    pub groups: Vec<DatasetReport>,
}

/// A dataset's status from its deals (every group's) on chain.
fn dataset_status(
    m: &MarketView,
    chain: &DealsView,
    dataset: [u8; 32],
    client: Pubkey,
    deals: Vec<DealAt>,
) -> StatusReport {
    let mut by_group: BTreeMap<(u32, [u8; 32]), Vec<DealAt>> = BTreeMap::new();
    for d in deals {
        // The index group (numbered u32::MAX) sorts first.
        by_group
            .entry((d.1.group.wrapping_add(1), d.1.group_id))
            .or_default()
            .push(d);
    }
    let groups: Vec<DatasetReport> = by_group
        .into_iter()
        .map(|((_, id), deals)| report(m, chain, id, client, deals))
        .collect();
    let refs = |f: fn(&DatasetReport) -> &Vec<u16>| -> Vec<ShardRef> {
        groups
            .iter()
            .flat_map(|g| {
                f(g).iter().map(|i| ShardRef {
                    group: g.group,
                    shard_index: *i,
                })
            })
            .collect()
    };
    let worst = |h: &str| groups.iter().any(|g| g.health == h);
    StatusReport {
        dataset_id: DatasetId(dataset).to_string(),
        client,
        k: groups.first().map_or(0, |g| g.k),
        n: groups.first().map_or(0, |g| g.n),
        data_groups: groups.iter().filter(|g| g.group.is_some()).count(),
        health: if worst("at risk") {
            "at risk"
        } else if worst("degraded") {
            "degraded"
        } else {
            "healthy"
        },
        can_lose: groups.iter().map(|g| g.can_lose).min().unwrap_or(0),
        to_repair: refs(|g| &g.to_repair),
        missing: refs(|g| &g.missing),
        totals: groups.iter().map(|g| g.totals).sum(),
        epoch: chain.now,
        decimals: m.decimals,
        groups,
    }
}

/// `cairn status ID`.
pub fn status_report(ctx: &Ctx, a: StatusArgs) -> Result<StatusReport, CliError> {
    let dataset = crate::context::parse_dataset_id(&a.dataset)?;
    let m = ctx.market()?;
    let mut deals = ctx
        .program_accounts::<Deal>(&[(cairn_chain::layout::DEAL_DATASET_ID, dataset.as_bytes())])?;
    if let Some(client) = a.client {
        deals.retain(|(_, d)| d.client == client);
    }
    let Some(client) = deals.first().map(|(_, d)| d.client) else {
        return Err(CliError::UnknownDataset {
            id: dataset.to_string(),
            url: ctx.url.clone(),
        });
    };
    let chain = DealsView::load(ctx, &m, &deals)?;
    Ok(dataset_status(&m, &chain, dataset.0, client, deals))
}

pub fn status(ctx: &Ctx, a: StatusArgs) -> Result<Box<dyn Report>, CliError> {
    Ok(Box::new(status_report(ctx, a)?))
}

impl fmt::Display for StatusReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = |base_units| Tokens {
            base_units,
            decimals: self.decimals,
        };
        writeln!(f, "dataset  {}", self.dataset_id)?;
        writeln!(
            f,
            "health   {}: {} data group(s) and the index group of {} + {} shards; each can lose {} more, epoch {}",
            self.health,
            self.data_groups,
            self.k,
            self.n - self.k,
            self.can_lose,
            self.epoch
        )?;
        writeln!(
            f,
            "stored   {} in shards, escrow left {}; owed {} to you now, penalties {}, forfeited collateral {}",
            human_bytes(self.totals.bytes),
            t(self.totals.escrow_left),
            t(self.totals.client_refund),
            t(self.totals.penalties),
            t(self.totals.forfeit)
        )?;
        if !self.to_repair.is_empty() || !self.missing.is_empty() {
            writeln!(
                f,
                "         {} shard(s) to repair in {} group(s); `cairn repair {}` replaces them",
                self.to_repair.len() + self.missing.len(),
                self.groups
                    .iter()
                    .filter(|g| !g.to_repair.is_empty() || !g.missing.is_empty())
                    .count(),
                self.dataset_id
            )?;
        }
        for g in &self.groups {
            writeln!(f)?;
            write!(f, "{g}")?;
        }
        Ok(())
    }
}

impl fmt::Display for DatasetReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = |base_units| Tokens {
            base_units,
            decimals: self.decimals,
        };
        match self.group {
            Some(g) => writeln!(f, "group {g}  {}", self.group_id)?,
            None => writeln!(f, "index group  {}", self.group_id)?,
        }
        writeln!(
            f,
            "health   {}: {} of {} shards healthy, {} more can be lost ({} needed to rebuild)",
            self.health, self.healthy, self.n, self.can_lose, self.k
        )?;
        for s in self.deals.iter().filter(|s| s.live) {
            if let Some(why) = &s.trouble {
                writeln!(
                    f,
                    "         shard {}: {why} (provider {})",
                    s.shard_index, s.provider
                )?;
            }
        }
        if !self.missing.is_empty() {
            writeln!(f, "         shards {:?} have no live deal", self.missing)?;
        }
        if !self.term_over.is_empty() {
            writeln!(
                f,
                "         shards {:?} ran their agreed term",
                self.term_over
            )?;
        }
        if !self.proposed.is_empty() {
            writeln!(
                f,
                "         shards {:?} are waiting for their provider to accept",
                self.proposed
            )?;
        }
        writeln!(
            f,
            "stored   {} in shards, escrow left {}",
            human_bytes(self.totals.bytes),
            t(self.totals.escrow_left)
        )?;
        writeln!(
            f,
            "owed     {} to you now (paid when the deals are closed); penalties {}, forfeited collateral {}",
            t(self.totals.client_refund),
            t(self.totals.penalties),
            t(self.totals.forfeit)
        )?;
        writeln!(
            f,
            "{:>5} {:>3}  {:<11} {:<7} {:>6} {:>6} {:>4} {:>9} {:>12}  provider",
            "shard",
            "gen",
            "state",
            "healthy",
            "proven",
            "failed",
            "void",
            "unsettled",
            "penalties"
        )?;
        for s in &self.deals {
            writeln!(
                f,
                "{:>5} {:>3}  {:<11} {:<7} {:>6} {:>6} {:>4} {:>9} {:>12}  {}{}",
                s.shard_index,
                s.generation,
                s.state,
                if s.healthy { "yes" } else { "no" },
                s.epochs.closed.proven,
                s.epochs.closed.failed,
                s.epochs.closed.void,
                s.epochs.unsettled,
                t(s.epochs.penalties).to_string(),
                s.provider,
                match s.provider_jailed_from {
                    Some(e) => format!(" (jailed from epoch {e})"),
                    None => String::new(),
                }
            )?;
        }
        Ok(())
    }
}

#[derive(Serialize, Debug)]
pub struct Listing {
    #[serde(with = "pubkey")]
    pub client: Pubkey,
    pub datasets: Vec<StatusReport>,
}

/// One file of `cairn ls ID`.
#[derive(Serialize, Debug)]
pub struct FileListed {
    pub path: String,
    pub size: u64,
    pub blake3: String,
    /// The data groups holding its bytes.
    pub groups: std::ops::Range<usize>,
}

/// `cairn ls ID`: a dataset's files and empty directories, from its manifest.
#[derive(Serialize, Debug)]
pub struct FileListing {
    pub dataset_id: String,
    /// Encrypted on the client (`upload --encrypt`); sizes are the plaintext's.
    pub encrypted: bool,
    pub bytes: u64,
    pub data_groups: usize,
    pub group_bytes: u64,
    pub files: Vec<FileListed>,
    pub empty_dirs: Vec<String>,
}

impl fmt::Display for FileListing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for file in &self.files {
            writeln!(f, "{:>10}  {}", human_bytes(file.size), file.path)?;
        }
        for d in &self.empty_dirs {
            writeln!(f, "{:>10}  {d}/", "dir")?;
        }
        writeln!(
            f,
            "{} file(s), {} empty director(ies), {} in {} group(s) of {}",
            self.files.len(),
            self.empty_dirs.len(),
            human_bytes(self.bytes),
            self.data_groups,
            human_bytes(self.group_bytes)
        )
    }
}

pub fn ls(
    ctx: &Ctx,
    a: LsArgs,
    connector: &dyn crate::dataset::transport::Connector,
    progress: &crate::output::Progress,
) -> Result<Box<dyn Report>, CliError> {
    if let Some(text) = &a.dataset {
        let id = crate::context::parse_dataset_id(text)?;
        let (content, index, _) =
            crate::dataset::download::open_dataset(ctx, connector, &id, progress)?;
        let readable =
            crate::dataset::download::readable(&id, content, index.group.salt(), &a.key.key)?;
        let manifest = &readable.manifest;
        return Ok(Box::new(FileListing {
            dataset_id: id.to_string(),
            encrypted: readable.private.is_some(),
            bytes: manifest.files().iter().map(|e| readable.plain_len(e)).sum(),
            data_groups: manifest.groups().len(),
            group_bytes: manifest.group_len(),
            files: manifest
                .files()
                .iter()
                .map(|e| FileListed {
                    path: e.path.clone(),
                    size: readable.plain_len(e),
                    blake3: cairn_core::hash::to_hex(&e.blake3),
                    groups: manifest.groups_for(e.range()),
                })
                .collect(),
            empty_dirs: manifest.dirs().to_vec(),
        }));
    }
    let client = match a.client {
        Some(c) => c,
        None => ctx.payer()?.pubkey(),
    };
    let m = ctx.market()?;
    let all =
        ctx.program_accounts::<Deal>(&[(cairn_chain::layout::DEAL_CLIENT, client.as_ref())])?;
    let chain = DealsView::load(ctx, &m, &all)?;
    let mut by_dataset: BTreeMap<[u8; 32], Vec<DealAt>> = BTreeMap::new();
    for (address, deal) in all {
        by_dataset
            .entry(deal.dataset_id)
            .or_default()
            .push((address, deal));
    }
    let datasets = by_dataset
        .into_iter()
        .map(|(id, deals)| dataset_status(&m, &chain, id, client, deals))
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
            "{:<64}  {:>5}  {:>6}  {:<9} {:>8} {:>10}",
            "dataset", "k/n", "groups", "health", "can lose", "stored"
        )?;
        for d in &self.datasets {
            writeln!(
                f,
                "{:<64}  {:>5}  {:>6}  {:<9} {:>8} {:>10}",
                d.dataset_id,
                format!("{}/{}", d.k, d.n),
                d.data_groups,
                d.health,
                d.can_lose,
                human_bytes(d.totals.bytes)
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::epochs::Bits;

    fn market() -> MarketView {
        MarketView {
            address: Pubkey::new_unique(),
            account: storage_market::state::Market {
                authority: Pubkey::new_unique(),
                mint: Pubkey::new_unique(),
                token_program: Pubkey::new_unique(),
                vault: Pubkey::new_unique(),
                params: storage_market::state::MarketParams {
                    epoch_slots: 10,
                    collateral_per_mib: 90_000,
                    slash_bps: 1_000,
                    accept_timeout_epochs: 2,
                    response_slots: 10,
                    max_shard_bytes: 1 << 30,
                    samples_per_epoch: 4,
                    jail_failures: 3,
                    jail_window: 10,
                },
                bump: 255,
                vault_bump: 255,
            },
            ix: cairn_chain::MarketIx {
                mint: Pubkey::new_unique(),
                token_program: Pubkey::new_unique(),
            },
            decimals: 6,
        }
    }

    #[test]
    fn health_counts_live_healthy_shards_and_names_what_to_repair() {
        // Six shards of a 4 + 2 dataset, epochs 10..30, now 14, every epoch opened.
        let mut bits = Bits::default();
        for e in 10..14 {
            bits.mark_opened(e);
        }
        let mut providers = BTreeMap::new();
        let mut deals = Vec::new();
        for i in 0..6u16 {
            let mut d = crate::test_support::deal();
            d.shard_index = i;
            let mut p = crate::test_support::provider();
            // Shard 1's provider failed epoch 12; shard 2's is jailed from 13.
            for e in 10..14 {
                if !(i == 1 && e == 12) {
                    bits.mark_proven(&d.provider, e);
                }
            }
            if i == 2 {
                p.jailed_from = 13;
            }
            providers.insert(d.provider, p);
            deals.push((Pubkey::new_unique(), d));
        }
        // Shard 3 was replaced: generation 0 terminated, generation 1 proposed.
        deals[3].1.state = DealState::Terminated;
        deals[3].1.settled_until = 12;
        let mut g1 = crate::test_support::deal();
        (g1.shard_index, g1.generation, g1.state, g1.proposed_epoch) =
            (3, 1, DealState::Proposed, 13);
        deals.push((Pubkey::new_unique(), g1));
        let chain = DealsView {
            now: 14,
            providers,
            bits,
        };
        let r = report(&market(), &chain, [1; 32], Pubkey::new_unique(), deals);
        assert_eq!((r.healthy, r.can_lose, r.health), (3, 0, "at risk"));
        assert_eq!(r.to_repair, [1, 2]);
        assert_eq!(r.proposed, [3]);
        assert!(r.missing.is_empty());
        assert_eq!(r.deals.len(), 7);
        let shard1 = &r.deals[1];
        assert_eq!(shard1.epochs.first_failed, Some(12));
        assert_eq!(shard1.epochs.closed.failed, 1);
        assert_eq!(shard1.epochs.penalties, 9_000);
        assert_eq!(shard1.trouble.as_deref(), Some("failed epoch 12"));
        let shard2 = &r.deals[2];
        assert_eq!(shard2.provider_jailed_from, Some(13));
        assert_eq!(shard2.epochs.closed.total(), 3);
        assert_eq!(shard2.epochs.forfeit, 90_000);
        let old = r
            .deals
            .iter()
            .find(|d| d.shard_index == 3 && d.generation == 0)
            .unwrap();
        assert!(!old.live);
        assert_eq!(r.totals.penalties, 9_000);
        let text = r.to_string();
        assert!(
            text.contains("at risk: 3 of 6 shards healthy, 0 more can be lost"),
            "{text}"
        );
        assert!(
            text.contains("shard 2: provider jailed from epoch 13"),
            "{text}"
        );
    }
}
