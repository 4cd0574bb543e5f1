//! `cairn repair ID`: replaces every shard whose provider failed an epoch within
//! its deal (the first failure is enough), whose provider is jailed, or whose
//! deal has ended. The client ends a failed deal (`end_deal`: it runs to the end
//! of the current epoch, the escrow of later epochs comes back, and the
//! collateral left goes to the client when it is settled); the shard is rebuilt
//! from `k` healthy ones and proposed at once, as the next generation of its
//! deal, to a provider the dataset does not use. Old deals are settled, leave
//! their provider's deal set and are closed (paying the client what they owe)
//! as soon as they can: an ended deal finishes after its last epoch, so a later
//! run closes it. An interrupted repair continues from its record.
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anchor_lang::prelude::Pubkey;
use cairn_core::dataset::{shard_tails, stored_shard_len};
use cairn_core::DatasetId;
use clap::Args;
use serde::Serialize;
use solana_keypair::Keypair;
use solana_signer::Signer;
use storage_market::constants::{log_page, INDEX_GROUP};
use storage_market::instructions::billable_mib;
use storage_market::state::{Deal, DealSet, DealState};

use crate::context::{Ctx, MarketView};
use crate::dataset::download::{
    connect_all, describe, open_dataset, read_manifest, shard_of, RemoteShard, Shard,
};
use crate::dataset::onchain::{self, state_name, trouble, DealAt, DealsView, Trouble};
use crate::dataset::prepare::{LocalShard, ShardSink};
use crate::dataset::state::{default_root, work_dir, Stage, UploadState};
use crate::dataset::transport::Connector;
use crate::dataset::upload::place;
use crate::error::CliError;
use crate::output::Progress;
use crate::units::parse_tokens;

#[derive(Args, Debug)]
pub struct RepairArgs {
    /// Dataset id (64 hex characters); the keypair must be its client.
    pub dataset: String,
    /// Most to pay per MiB per epoch for a new provider, in tokens.
    #[arg(long)]
    pub max_price: Option<String>,
    /// Where repair work (rebuilt shards, the placement record) is kept.
    #[arg(long, env = "CAIRN_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Seconds to wait for a node to accept its deal once it holds the shard.
    #[arg(long, default_value_t = 60)]
    pub accept_timeout: u64,
    /// Epochs to wait, when a shard's provider does not answer but has not
    /// failed an epoch yet, for its first failed epoch (the shard is then
    /// replaced in this run). 0: such shards are reported and left to a later run.
    #[arg(long, default_value_t = 0)]
    pub wait_epochs: u64,
}

#[derive(Serialize, Debug, Clone)]
pub struct RepairedShard {
    /// The data group (absent: the index group).
    pub group: Option<usize>,
    pub shard_index: u16,
    /// Why it was replaced: `failed epoch E`, `provider jailed from epoch E`,
    /// `ended by the client`, `terminated`, `cancelled`, `no deal`.
    pub reason: String,
    /// The deal it replaces and that deal's provider.
    pub old_deal: Option<String>,
    pub old_provider: Option<String>,
    /// Set when this run ended the old deal (`end_deal`): its new end epoch.
    pub old_deal_ends: Option<u64>,
    /// The new placement.
    pub generation: u16,
    pub provider: String,
    pub deal: String,
    pub bytes: u64,
    pub root: String,
}

/// An earlier placement of a shard, and what this run did with it.
#[derive(Serialize, Debug, Clone)]
pub struct OldDeal {
    pub shard_index: u16,
    pub generation: u16,
    pub deal: String,
    pub provider: String,
    /// Its state after this run, or `closed`.
    pub state: String,
    /// `settled`, `left its provider's deal set`, `cancelled`, `closed`.
    pub done: Vec<String>,
    /// Paid to the client when it was closed.
    pub refunded: u64,
    /// Why it is not closed yet.
    pub waiting: Option<String>,
}

#[derive(Serialize, Debug)]
pub struct RepairReport {
    /// The group's id.
    pub dataset_id: String,
    /// The data group (absent: the index group).
    pub group: Option<usize>,
    pub k: u16,
    pub n: u16,
    /// Shards rebuilt from (their indices).
    pub rebuilt_from: Vec<u16>,
    pub repaired: Vec<RepairedShard>,
    /// Shards whose provider does not answer but has not failed an epoch yet
    /// (replaced by a later run once it has).
    pub still_failing: Vec<u16>,
    pub old_deals: Vec<OldDeal>,
    pub bytes_fetched: u64,
    pub epochs: u64,
    pub escrow: u64,
    pub decimals: u8,
    pub replaced_providers: usize,
    pub seconds: f64,
}

impl fmt::Display for RepairReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = |base_units| crate::units::Tokens {
            base_units,
            decimals: self.decimals,
        };
        if self.repaired.is_empty() {
            writeln!(
                f,
                "dataset {}: nothing to repair (every shard's provider is proving)",
                self.dataset_id
            )?;
        } else {
            writeln!(
                f,
                "repaired {} of {} shards of dataset {} from shards {:?} ({} fetched) in {:.1} s; new deals for {} epochs, escrow {}",
                self.repaired.len(),
                self.n,
                self.dataset_id,
                self.rebuilt_from,
                crate::units::human_bytes(self.bytes_fetched),
                self.seconds,
                self.epochs,
                t(self.escrow)
            )?;
            for r in &self.repaired {
                writeln!(
                    f,
                    "  shard {:>3}  {} ({}){} -> provider {}  deal {} (generation {})",
                    r.shard_index,
                    r.old_provider.as_deref().unwrap_or("-"),
                    r.reason,
                    r.old_deal_ends
                        .map(|e| format!(", ended: runs to epoch {e}"))
                        .unwrap_or_default(),
                    r.provider,
                    r.deal,
                    r.generation
                )?;
            }
        }
        for o in &self.old_deals {
            let done = if o.done.is_empty() {
                String::new()
            } else {
                format!(": {}", o.done.join(", "))
            };
            let refunded = if o.refunded > 0 {
                format!(", {} refunded to you", t(o.refunded))
            } else {
                String::new()
            };
            writeln!(
                f,
                "  old deal {} (shard {}, generation {}) {}{done}{refunded}{}",
                o.deal,
                o.shard_index,
                o.generation,
                o.state,
                o.waiting
                    .as_deref()
                    .map(|w| format!("; {w}"))
                    .unwrap_or_default()
            )?;
        }
        if !self.still_failing.is_empty() {
            writeln!(
                f,
                "shards {:?}: their providers do not answer but have not failed an epoch yet; run `cairn repair {}` again once an epoch has closed (or pass --wait-epochs)",
                self.still_failing, self.dataset_id
            )?;
        }
        Ok(())
    }
}

/// What `cairn repair ID` did to each group of the dataset.
#[derive(Serialize, Debug)]
pub struct DatasetRepairReport {
    pub dataset_id: String,
    /// Every shard replaced, in any group (each names its group).
    pub repaired: Vec<RepairedShard>,
    /// Shards whose provider does not answer but has not failed an epoch yet.
    pub still_failing: Vec<(Option<usize>, u16)>,
    pub escrow: u64,
    pub decimals: u8,
    pub seconds: f64,
    /// Per group: the index group first, then the data groups in order.
    pub groups: Vec<RepairReport>,
}

impl fmt::Display for DatasetRepairReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for g in self.groups.iter().filter(|g| {
            !g.repaired.is_empty() || !g.old_deals.is_empty() || !g.still_failing.is_empty()
        }) {
            write!(f, "{g}")?;
        }
        writeln!(
            f,
            "dataset {}: {} shard(s) replaced over {} group(s) in {:.1} s",
            self.dataset_id,
            self.repaired.len(),
            self.groups.len(),
            self.seconds
        )
    }
}

/// `cairn repair ID`: the index group first (its manifest lists the data
/// groups), then each data group; a lost provider costs a rebuild of only the
/// groups it held.
pub fn repair(
    ctx: &Ctx,
    a: RepairArgs,
    connector: &dyn Connector,
    progress: &Progress,
) -> Result<DatasetRepairReport, CliError> {
    let started = Instant::now();
    let id = crate::context::parse_dataset_id(&a.dataset)?;
    // The dataset manifest says which groups are the dataset's and how each
    // is coded; deals that do not fit it are left alone.
    let (manifest, index, deals) = open_dataset(ctx, connector, &id, progress)?;
    if deals.client != ctx.payer()?.pubkey() {
        return Err(CliError::Refused(format!(
            "dataset {id} is client {}'s; repair it with that keypair",
            deals.client
        )));
    }
    let index_fit = Fit {
        k: index.group.params().k() as u16,
        n: index.group.params().n() as u16,
        number: INDEX_GROUP,
    };
    let index_id = index.id;
    drop(index);
    let mut groups = vec![repair_group(
        ctx, &a, index_id, None, index_fit, connector, progress,
    )?];
    for (g, group) in manifest.groups().iter().enumerate() {
        let fit = Fit {
            k: manifest.k(),
            n: manifest.k() + manifest.m(),
            number: g as u32,
        };
        groups.push(repair_group(
            ctx,
            &a,
            *group,
            Some(g),
            fit,
            connector,
            progress,
        )?);
    }
    Ok(DatasetRepairReport {
        dataset_id: id.to_string(),
        repaired: groups.iter().flat_map(|g| g.repaired.clone()).collect(),
        still_failing: groups
            .iter()
            .flat_map(|g| g.still_failing.iter().map(|i| (g.group, *i)))
            .collect(),
        escrow: groups.iter().map(|g| g.escrow).sum(),
        decimals: groups[0].decimals,
        seconds: started.elapsed().as_secs_f64(),
        groups,
    })
}

/// How a group is coded and numbered, from the dataset manifest: the deals
/// of the group that fit it are its shards; any other (a shard index not
/// below `n`, another coding or number) is not the dataset's and is left alone.
#[derive(Debug, Clone, Copy)]
struct Fit {
    k: u16,
    n: u16,
    number: u32,
}

impl Fit {
    fn fits(&self, d: &Deal) -> bool {
        d.k == self.k && d.n == self.n && d.group == self.number && d.shard_index < self.n
    }
}

/// Repairs one group (`group`: its number, `None` for the index group).
fn repair_group(
    ctx: &Ctx,
    a: &RepairArgs,
    id: DatasetId,
    group: Option<usize>,
    fit: Fit,
    connector: &dyn Connector,
    progress: &Progress,
) -> Result<RepairReport, CliError> {
    let started = Instant::now();
    let client = ctx.payer()?;
    let market = ctx.market()?;
    let work = work_dir(
        &a.state_dir.clone().unwrap_or_else(default_root),
        &client.pubkey().to_string(),
        Path::new(&format!("repair:{id}")),
    );
    let accept_timeout = Duration::from_secs(a.accept_timeout);

    // An interrupted repair: its shards are rebuilt and their old deals ended;
    // placement is left, then the old deals are closed where they can be.
    if let Some(mut state) = UploadState::load(&work)? {
        if state.group_id == id.to_string()
            && state.shards.iter().any(|s| s.stage != Stage::Accepted)
        {
            progress.note(&format!(
                "continuing the interrupted repair in {}",
                work.display()
            ));
            let replaced = place(
                ctx,
                &market,
                client,
                &mut state,
                &work,
                connector,
                progress,
                accept_timeout,
            )?;
            let repaired: Vec<RepairedShard> = state
                .shards
                .iter()
                .filter(|s| !s.local.path.as_os_str().is_empty())
                .map(|s| RepairedShard {
                    group,
                    shard_index: s.local.index,
                    reason: "an interrupted repair, continued".into(),
                    old_deal: None,
                    old_provider: None,
                    old_deal_ends: None,
                    generation: s.generation,
                    provider: String::new(),
                    deal: String::new(),
                    bytes: s.local.bytes,
                    root: cairn_core::hash::to_hex(&s.local.root),
                })
                .collect();
            let old_deals = clean_up(ctx, &market, client, &id, progress)?;
            return finish(
                ctx,
                &market,
                client,
                &id,
                group,
                &state,
                repaired,
                Outcome {
                    old_deals,
                    replaced,
                    ..Outcome::default()
                },
                started,
            );
        }
    }

    // Earlier placements first: settled, out of their providers' sets and
    // closed where the chain allows. A deal this run ends is closed by a later
    // run, once its last epoch is over.
    let old_deals = clean_up(ctx, &market, client, &id, progress)?;
    let group_deals = || -> Result<Vec<DealAt>, CliError> {
        let mut deals = onchain::group_deals(ctx, &client.pubkey(), &id.0)?;
        deals.retain(|(_, d)| fit.fits(d));
        Ok(deals)
    };
    let mut deals = group_deals()?;
    if deals.is_empty() {
        return Err(CliError::Refused(format!(
            "unknown group {id}: client {} has no deals for it on {}",
            client.pubkey(),
            ctx.url
        )));
    }
    let (k, n, group_number) = (fit.k, fit.n, fit.number);
    let mut view = DealsView::load(ctx, &market, &deals)?;

    // Which live, active shards can be read now; those that cannot are suspects
    // until their provider fails an epoch.
    let mut shards = onchain::live_deals(&deals)
        .values()
        .filter(|(_, d)| d.state == DealState::Active)
        .map(|(address, d)| shard_of(ctx, *address, d))
        .collect::<Result<Vec<_>, _>>()?;
    connect_all(connector, &mut shards);
    // The group manifest, while the shards are read for it: a node that says
    // its stored copy is corrupt (at connection or on this read) marks its
    // shard for repair.
    let manifest = read_manifest(&id, &shards);
    let corrupt: Vec<u16> = shards
        .iter()
        .filter(|s| s.is_corrupt())
        .map(|s| s.index)
        .collect();
    for s in shards.iter().filter(|s| s.node.is_none()) {
        progress.note(&format!(
            "shard {} provider {} ({}): {}",
            s.index, s.provider, s.endpoint, s.status
        ));
    }
    let unreachable: Vec<u16> = shards
        .iter()
        .filter(|s| s.node.is_none() && !s.is_corrupt())
        .map(|s| s.index)
        .collect();
    let troubled = |deals: &[DealAt], view: &DealsView| -> Vec<u16> {
        (0..n)
            .filter(|i| trouble(deals, view, *i).1.is_some())
            .collect()
    };
    let waiting = |deals: &[DealAt], view: &DealsView| -> Vec<u16> {
        let troubled = troubled(deals, view);
        unreachable
            .iter()
            .copied()
            .filter(|i| !troubled.contains(i))
            .collect()
    };
    if a.wait_epochs > 0 && !waiting(&deals, &view).is_empty() {
        let epoch_slots = market.account.params.epoch_slots;
        let deadline = ctx.slot()? + a.wait_epochs * epoch_slots;
        progress.note(&format!(
            "shards {:?}: waiting up to {} epoch(s) for their providers' first failed epoch",
            waiting(&deals, &view),
            a.wait_epochs
        ));
        while !waiting(&deals, &view).is_empty() && ctx.slot()? < deadline {
            std::thread::sleep(Duration::from_secs(1));
            deals = group_deals()?;
            view = DealsView::load(ctx, &market, &deals)?;
        }
    }
    let still_failing = waiting(&deals, &view);
    let lost: Vec<(u16, Option<DealAt>, Trouble)> = (0..n)
        .filter_map(|i| {
            let (live, found) = trouble(&deals, &view, i);
            let found = found.or_else(|| corrupt.contains(&i).then_some(Trouble::CorruptCopy));
            found.map(|t| (i, live.cloned(), t))
        })
        .collect();
    // What the lost shards come from: the live, active, untroubled shards whose
    // node holds them (and, when fewer than k, replaced shards whose node still
    // serves them: every unit read is checked against its BLAKE3 either way). A
    // replaced shard whose own node still serves it is copied from there, its
    // Merkle root checked against its deal's.
    let unread = describe(&shards);
    shards.retain(|s| s.node.is_some());
    let is_lost = |index: u16| lost.iter().any(|(i, _, _)| *i == index);
    let healthy = shards.iter().filter(|s| !is_lost(s.index)).count();
    if lost.is_empty() {
        // Nothing to place: a record only for the report.
        let state = UploadState::new(
            work.clone(),
            id.to_string(),
            group_number,
            [0; 32],
            client.pubkey().to_string(),
            k,
            n - k,
            0,
            0,
            Vec::new(),
        );
        return finish(
            ctx,
            &market,
            client,
            &id,
            group,
            &state,
            Vec::new(),
            Outcome {
                rebuilt_from: shards.iter().map(|s| s.index).collect(),
                still_failing,
                old_deals,
                ..Outcome::default()
            },
            started,
        );
    }
    let own_copy = |index: u16| shards.iter().find(|s| s.index == index && !s.is_corrupt());
    if shards.len() < usize::from(k) && lost.iter().any(|(i, _, _)| own_copy(*i).is_none()) {
        return Err(CliError::Refused(format!(
            "dataset {id} cannot be rebuilt: {healthy} healthy shards of the {k} needed ({} to repair); {unread}",
            lost.len(),
        )));
    }
    // The new deals end when the dataset's deals were to end. A new deal
    // starts the epoch after it is accepted.
    let end_epoch = deals
        .iter()
        .filter(|(_, d)| !matches!(d.state, DealState::Proposed | DealState::Cancelled))
        .map(|(_, d)| d.start_epoch + d.duration_epochs)
        .max()
        .unwrap_or(0);
    let epochs = end_epoch.saturating_sub(view.now + 1);
    if epochs == 0 {
        return Err(CliError::Refused(format!(
            "dataset {id}: its deals end at epoch {end_epoch} (now {}); nothing is left to store it for",
            view.now
        )));
    }

    // Rebuild (or copy) every lost shard into the work dir.
    let manifest = manifest?;
    if (manifest.params().k(), manifest.params().n()) != (usize::from(k), usize::from(n)) {
        return Err(CliError::Refused(format!(
            "group {id}: its manifest codes {} + {} shards, the dataset's {k} + {}",
            manifest.params().k(),
            manifest.params().m(),
            n - k
        )));
    }
    let tails = shard_tails(&manifest).map_err(|e| CliError::Refused(e.to_string()))?;
    let stored_len = stored_shard_len(&manifest);
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(CliError::io(&work))?;
    let bar = progress.bar(
        "rebuild",
        lost.len() as u64 * u64::from(k) * manifest.shard_len(),
    );
    let sources_of: Vec<&Shard> = shards
        .iter()
        .filter(|s| !is_lost(s.index) || healthy < usize::from(k))
        .collect();
    let mut sources: Vec<Option<RemoteShard>> = (0..usize::from(n)).map(|_| None).collect();
    for s in &sources_of {
        sources[usize::from(s.index)] = RemoteShard::of(s, &bar);
    }
    let mut decoder = manifest
        .decoder(sources)
        .map_err(|e| CliError::Refused(format!("dataset {id}: {e}")))?;
    let mut rebuilt = Vec::with_capacity(lost.len());
    let mut copied_bytes = 0;
    for (i, _, _) in &lost {
        let path = work.join(format!("shard-{i}.bin"));
        // Every placement of a shard pins the same bytes.
        let pinned = deals
            .iter()
            .find(|(_, d)| d.shard_index == *i)
            .map(|(_, d)| (d.shard_root, d.shard_bytes));
        let matches = |shard: &LocalShard| {
            pinned.is_none_or(|(root, bytes)| shard.root == root && shard.bytes == bytes)
        };
        if let Some(own) = own_copy(*i) {
            match copy_shard(own, &path, &bar) {
                Ok(shard) if matches(&shard) => {
                    copied_bytes += shard.bytes;
                    rebuilt.push(shard);
                    continue;
                }
                Ok(_) => progress.note(&format!(
                    "shard {i}: the copy from provider {} does not match its deal's root; rebuilding it",
                    own.provider
                )),
                Err(e) => progress.note(&format!("shard {i}: {e}; rebuilding it")),
            }
        }
        let mut sink = ShardSink::create(&path)?;
        decoder
            .rebuild_shard(usize::from(*i), &mut sink)
            .map_err(|e| {
                CliError::Refused(format!(
                    "dataset {id}: rebuilding shard {i} failed: {e}; {unread}"
                ))
            })?;
        let shard = sink.finish(*i, path, &tails[usize::from(*i)])?;
        if !matches(&shard) {
            return Err(CliError::Refused(format!(
                "dataset {id}: rebuilt shard {i} does not match its deal's root and size; not placed"
            )));
        }
        debug_assert_eq!(shard.bytes, stored_len);
        rebuilt.push(shard);
    }
    let report = decoder.report().clone();
    drop(decoder);
    bar.finish(true);
    for bad in report.bad_shards() {
        if let Some(s) = shards.iter().find(|s| usize::from(s.index) == bad) {
            progress.note(&format!(
                "shard {} provider {} ({}): served bytes that failed their checksum",
                s.index, s.provider, s.endpoint
            ));
        }
    }

    // With the shards in hand, the client ends each deal its provider failed: it
    // runs to the end of this epoch, and its collateral left comes to the client
    // at settlement.
    let mut ended: Vec<(u16, u64)> = Vec::new();
    for (i, live, trouble) in &lost {
        if let (Some((address, d)), Trouble::Failed(epoch)) = (live, trouble) {
            ctx.send(
                &format!("end_deal for shard {i} (its provider failed epoch {epoch})"),
                &[market.ix.end_deal_ix(
                    &client.pubkey(),
                    &d.provider,
                    address,
                    d.set_index,
                    *epoch,
                )],
                &[],
            )?;
            let now_ends = ctx
                .fetch::<Deal>("deal", address)?
                .map_or(d.end_epoch, |d| d.end_epoch);
            progress.note(&format!(
                "shard {i}: ended deal {address} (provider {} failed epoch {epoch}); it runs to epoch {now_ends}",
                d.provider
            ));
            ended.push((*i, now_ends));
        }
    }

    // The placement record: healthy shards as placed, lost ones as the next
    // generation of their deal, with none of the providers the dataset uses or
    // used.
    let live = onchain::live_deals(&deals);
    let locals: Vec<LocalShard> = (0..n)
        .map(|i| {
            rebuilt
                .iter()
                .find(|s| s.index == i)
                .cloned()
                .unwrap_or_else(|| {
                    let d = live.get(&i).map(|(_, d)| d);
                    LocalShard {
                        index: i,
                        path: PathBuf::new(),
                        bytes: d.map_or(stored_len, |d| d.shard_bytes),
                        root: d.map_or([0; 32], |d| d.shard_root),
                    }
                })
        })
        .collect();
    let max_price_per_epoch = match &a.max_price {
        Some(p) => parse_tokens(p, market.decimals)
            .map_err(|e| CliError::bad("--max-price", e))?
            .saturating_mul(billable_mib(stored_len)),
        None => u64::MAX,
    };
    let mut state = UploadState::new(
        work.clone(),
        id.to_string(),
        deals[0].1.group,
        *manifest.salt(),
        client.pubkey().to_string(),
        k,
        n - k,
        epochs,
        max_price_per_epoch,
        locals,
    );
    let mut used: Vec<String> = deals.iter().map(|(_, d)| d.provider.to_string()).collect();
    used.sort();
    used.dedup();
    state.avoid = used;
    for s in state.shards.iter_mut() {
        let i = s.local.index;
        if lost.iter().any(|(l, _, _)| *l == i) {
            s.generation = onchain::next_generation(&deals, i);
            s.failed = deals
                .iter()
                .filter(|(_, d)| d.shard_index == i)
                .map(|(_, d)| d.provider.to_string())
                .collect();
        } else if let Some((_, d)) = live.get(&i) {
            s.stage = Stage::Accepted;
            s.generation = d.generation;
            s.provider = Some(d.provider.to_string());
        }
    }
    state.save(&work)?;
    let replaced = place(
        ctx,
        &market,
        client,
        &mut state,
        &work,
        connector,
        progress,
        accept_timeout,
    )?;
    let repaired = lost
        .iter()
        .map(|(i, live, trouble)| RepairedShard {
            group,
            shard_index: *i,
            reason: trouble.reason(live.as_ref().map(|(_, d)| d).or_else(|| {
                deals
                    .iter()
                    .rev()
                    .find(|(_, d)| d.shard_index == *i)
                    .map(|(_, d)| d)
            })),
            old_deal: live.as_ref().map(|(address, _)| address.to_string()),
            old_provider: live.as_ref().map(|(_, d)| d.provider.to_string()),
            old_deal_ends: ended.iter().find(|(e, _)| e == i).map(|(_, end)| *end),
            generation: 0,
            provider: String::new(),
            deal: String::new(),
            bytes: 0,
            root: String::new(),
        })
        .collect();
    finish(
        ctx,
        &market,
        client,
        &id,
        group,
        &state,
        repaired,
        Outcome {
            rebuilt_from: sources_of.iter().map(|s| s.index).collect(),
            still_failing,
            old_deals,
            bytes_fetched: report.bytes_read + copied_bytes,
            replaced,
        },
        started,
    )
}

/// What a repair did besides the placements.
#[derive(Default)]
struct Outcome {
    rebuilt_from: Vec<u16>,
    still_failing: Vec<u16>,
    old_deals: Vec<OldDeal>,
    bytes_fetched: u64,
    replaced: usize,
}

/// Checks that every shard is placed and builds the report; `repaired` are the
/// replaced shards, completed here from the placement record.
#[allow(clippy::too_many_arguments)]
fn finish(
    ctx: &Ctx,
    market: &MarketView,
    client: &Keypair,
    id: &DatasetId,
    group: Option<usize>,
    state: &UploadState,
    mut repaired: Vec<RepairedShard>,
    outcome: Outcome,
    started: Instant,
) -> Result<RepairReport, CliError> {
    if let Some(s) = state.shards.iter().find(|s| s.stage != Stage::Accepted) {
        return Err(CliError::Refused(format!(
            "rebuilt shard {} could not be placed after trying {} providers; run `cairn repair {id}` again",
            s.local.index,
            s.failed.len()
        )));
    }
    let mut escrow = 0;
    for r in repaired.iter_mut() {
        let Some(s) = state.shards.iter().find(|s| s.local.index == r.shard_index) else {
            continue;
        };
        let deal = s.deal(&client.pubkey(), &id.0);
        if let Some(d) = ctx.fetch::<Deal>("deal", &deal)? {
            escrow += d.escrow;
        }
        r.generation = s.generation;
        r.provider = s.provider.clone().unwrap_or_default();
        r.deal = deal.to_string();
        r.bytes = s.local.bytes;
        r.root = cairn_core::hash::to_hex(&s.local.root);
    }
    Ok(RepairReport {
        dataset_id: id.to_string(),
        group,
        k: state.k,
        n: state.k + state.m,
        rebuilt_from: outcome.rebuilt_from,
        repaired,
        still_failing: outcome.still_failing,
        old_deals: outcome.old_deals,
        bytes_fetched: outcome.bytes_fetched,
        epochs: state.epochs,
        escrow,
        decimals: market.decimals,
        replaced_providers: outcome.replaced,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Moves every earlier placement of the dataset's shards towards closing, as far
/// as the chain allows now: an abandoned proposal is cancelled; an active deal's
/// closed epochs are settled (which finishes it once all are); an ended deal
/// leaves its provider's deal set; a finished one out of the set is closed and
/// pays the client what it owes. Failures are reported, not fatal: a later run
/// goes on from the chain's state.
pub fn clean_up(
    ctx: &Ctx,
    market: &MarketView,
    client: &Keypair,
    id: &DatasetId,
    progress: &Progress,
) -> Result<Vec<OldDeal>, CliError> {
    let deals = onchain::group_deals(ctx, &client.pubkey(), &id.0)?;
    let live: Vec<Pubkey> = onchain::live_deals(&deals)
        .values()
        .map(|(address, _)| *address)
        .collect();
    let old: Vec<&DealAt> = deals.iter().filter(|(a, _)| !live.contains(a)).collect();
    if old.is_empty() {
        return Ok(Vec::new());
    }
    let view = DealsView::load(ctx, market, &deals)?;
    let to = market.token_account_of(&client.pubkey());
    let mut out = Vec::new();
    for (address, deal) in old {
        let mut o = OldDeal {
            shard_index: deal.shard_index,
            generation: deal.generation,
            deal: address.to_string(),
            provider: deal.provider.to_string(),
            state: state_name(deal.state).into(),
            done: Vec::new(),
            refunded: 0,
            waiting: None,
        };
        if let Err(e) = close_old(ctx, market, client, &view, address, deal, &to, &mut o) {
            progress.note(&format!(
                "old deal {address} of shard {}: {e}; a later `cairn repair` goes on",
                deal.shard_index
            ));
            o.waiting = Some(e.to_string());
        }
        out.push(o);
    }
    Ok(out)
}

/// One old deal's steps towards closing (see [`clean_up`]), recorded in `o`.
#[allow(clippy::too_many_arguments)]
fn close_old(
    ctx: &Ctx,
    market: &MarketView,
    client: &Keypair,
    view: &DealsView,
    address: &Pubkey,
    deal: &Deal,
    to: &Pubkey,
    o: &mut OldDeal,
) -> Result<(), CliError> {
    let shard = deal.shard_index;
    let fetch = || ctx.fetch_existing::<Deal>("deal", address);
    let mut deal = deal.clone();
    if deal.state == DealState::Proposed {
        ctx.send(
            &format!("cancel_deal of an old placement of shard {shard}"),
            &[market.ix.cancel_deal_ix(&client.pubkey(), address, to)],
            &[],
        )?;
        o.done.push("cancelled".into());
        deal = fetch()?;
    }
    if deal.state == DealState::Active {
        let jailed_from = view.jailed_from(&deal.provider);
        let calls;
        (deal, calls) = settle_deal(ctx, market, address, deal, jailed_from, view.now)?;
        if calls > 0 {
            o.done.push("settled".into());
        }
    }
    // An ended deal leaves the set in its last epoch at the earliest.
    let ended = deal.state != DealState::Active
        || deal.end_epoch.min(view.jailed_from(&deal.provider)) <= view.now + 1;
    if deal.in_set && ended {
        leave_set(ctx, market, address, &deal)?;
        o.done.push("left its provider's deal set".into());
        deal = fetch()?;
    }
    o.state = state_name(deal.state).into();
    match deal.state {
        DealState::Completed | DealState::Terminated | DealState::Cancelled if !deal.in_set => {
            ctx.send(
                &format!("close_deal of an old placement of shard {shard}"),
                &[market.ix.close_deal_ix(&client.pubkey(), address, to)],
                &[],
            )?;
            o.done.push("closed".into());
            o.refunded = deal.client_refund;
            o.state = "closed".into();
        }
        DealState::Active => {
            o.waiting = Some(format!(
                "runs to epoch {}; a later `cairn repair` settles and closes it",
                deal.end_epoch.min(view.jailed_from(&deal.provider))
            ));
        }
        _ => {}
    }
    Ok(())
}

/// Settles the closed epochs of the active `deal` at `address` (anyone may), page
/// by page, in epoch `now`; the call that reaches the end of what its provider
/// owes (its end, or `jailed_from`) finishes it. Returns the deal as it is then,
/// and how many `settle` transactions were sent.
pub fn settle_deal(
    ctx: &Ctx,
    market: &MarketView,
    address: &Pubkey,
    mut deal: Deal,
    jailed_from: u64,
    now: u64,
) -> Result<(Deal, usize), CliError> {
    let owed_until = deal.end_epoch.min(jailed_from);
    let mut calls = 0;
    while deal.state == DealState::Active
        && (deal.settled_until < owed_until.min(now) || owed_until <= now)
        && calls < 16
    {
        ctx.send(
            &format!("settle of shard {}'s deal {address}", deal.shard_index),
            &[market
                .ix
                .settle_ix(&deal.provider, log_page(deal.settled_until), &[*address])],
            &[],
        )?;
        calls += 1;
        deal = ctx.fetch_existing("deal", address)?;
    }
    Ok((deal, calls))
}

/// Removes an ended `deal` from its provider's deal set: the deal at the set's
/// last index moves into its place.
fn leave_set(
    ctx: &Ctx,
    market: &MarketView,
    address: &Pubkey,
    deal: &Deal,
) -> Result<(), CliError> {
    let provider = deal.provider;
    let set: DealSet = ctx.fetch_existing("deal set", &cairn_chain::deal_set_pda(&provider))?;
    let last_index = set.len.checked_sub(1).ok_or_else(|| {
        CliError::Refused(format!("the deal set of provider {provider} is empty"))
    })?;
    let last = if deal.set_index == last_index {
        None
    } else {
        let at_last = ctx
            .program_accounts::<Deal>(&[(cairn_chain::layout::DEAL_PROVIDER, provider.as_ref())])?
            .into_iter()
            .find(|(_, d)| d.in_set && d.set_index == last_index)
            .ok_or_else(|| {
                CliError::Refused(format!(
                    "no deal holds entry {last_index} of provider {provider}'s deal set"
                ))
            })?;
        Some((at_last.0, last_index))
    };
    ctx.send(
        &format!(
            "leave_deal_set of an old deal of shard {}",
            deal.shard_index
        ),
        &[market
            .ix
            .leave_deal_set_ix(&provider, address, deal.set_index, last)],
        &[],
    )?;
    Ok(())
}

/// Copies a stored shard from the node that holds it into `path`, computing
/// its Merkle root as it is written.
fn copy_shard(
    shard: &Shard,
    path: &Path,
    bar: &crate::output::Bar,
) -> Result<LocalShard, CliError> {
    use std::io::Write;
    let node = shard.node.as_deref().expect("connected");
    let chunk = u64::from(cairn_core::erasure::DEFAULT_STRIPE_UNIT);
    let mut sink = ShardSink::create(path)?;
    let mut offset = 0;
    while offset < shard.deal_bytes {
        let len = (shard.deal_bytes - offset).min(chunk);
        let bytes = node
            .get(&shard.deal, offset, len)
            .map_err(|e| CliError::Refused(format!("reading its own copy failed: {e}")))?;
        if bytes.len() as u64 != len {
            return Err(CliError::Refused(format!(
                "its own copy gave {} bytes for {len}",
                bytes.len()
            )));
        }
        sink.write_all(&bytes).map_err(CliError::io(path))?;
        bar.inc(len);
        offset += len;
    }
    sink.finish(shard.index, path.to_path_buf(), &[])
}
