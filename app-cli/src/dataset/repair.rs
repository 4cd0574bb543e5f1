//! `cairn repair ID`: rebuild the shards whose deals terminated (or whose
//! providers stopped proving, once the chain terminates their deals) from `k`
//! healthy ones, and place them with new providers.
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
use storage_market::instructions::billable_mib;
use storage_market::state::{Deal, DealState};

use crate::commands::deals::state_name;
use crate::context::{Ctx, MarketView};
use crate::dataset::download::{connect_all, describe, read_manifest, shard_of, RemoteShard};
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
    /// Epochs to wait for the deals of providers that stopped proving to be
    /// terminated (their missed epochs reported) before repairing without
    /// them. Default: the market's `max_consecutive_faults` + 2.
    #[arg(long)]
    pub wait_epochs: Option<u64>,
}

#[derive(Serialize, Debug, Clone)]
pub struct RepairedShard {
    pub shard_index: u16,
    /// The provider that lost it, and the state its deal ended in.
    pub old_provider: String,
    pub old_state: String,
    pub provider: String,
    pub deal: String,
    pub bytes: u64,
    pub root: String,
}

#[derive(Serialize, Debug)]
pub struct RepairReport {
    pub dataset_id: String,
    pub k: u16,
    pub n: u16,
    /// Shards rebuilt from (their indices).
    pub rebuilt_from: Vec<u16>,
    pub repaired: Vec<RepairedShard>,
    /// Shards whose providers are failing but whose deals are still active
    /// (not replaceable until the chain terminates them).
    pub still_failing: Vec<u16>,
    pub bytes_fetched: u64,
    pub epochs: u64,
    pub escrow: u64,
    pub decimals: u8,
    pub replaced_providers: usize,
    pub seconds: f64,
}

impl fmt::Display for RepairReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.repaired.is_empty() {
            writeln!(
                f,
                "dataset {}: nothing to repair (no shard's deal has terminated)",
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
                crate::units::Tokens {
                    base_units: self.escrow,
                    decimals: self.decimals
                }
            )?;
            for r in &self.repaired {
                writeln!(
                    f,
                    "  shard {:>3}  {} ({}) -> provider {}  deal {}",
                    r.shard_index, r.old_provider, r.old_state, r.provider, r.deal
                )?;
            }
        }
        if !self.still_failing.is_empty() {
            writeln!(
                f,
                "shards {:?}: their providers stopped proving but the deals are still active; run `cairn repair {}` again once they terminate",
                self.still_failing, self.dataset_id
            )?;
        }
        Ok(())
    }
}

/// The client's deals for `id`, by shard index.
fn client_deals(
    ctx: &Ctx,
    client: &Pubkey,
    id: &DatasetId,
) -> Result<Vec<(Pubkey, Deal)>, CliError> {
    let mut deals = ctx.program_accounts::<Deal>(&[
        (cairn_chain::layout::DEAL_CLIENT, client.as_ref()),
        (cairn_chain::layout::DEAL_DATASET_ID, id.as_bytes()),
    ])?;
    deals.sort_by_key(|(_, d)| d.shard_index);
    Ok(deals)
}

/// Active deals with closed, unsettled epochs: the provider did not prove them.
fn unsettled(deal: &Deal, market: &MarketView, slot: u64) -> bool {
    deal.state == DealState::Active
        && market
            .account
            .last_closed_epoch(slot)
            .is_some_and(|closed| {
                closed >= deal.start_epoch && deal.settled_through < closed.min(deal.end_epoch - 1)
            })
}

fn slot(ctx: &Ctx) -> Result<u64, CliError> {
    ctx.rpc.get_slot().map_err(|e| ctx.rpc_err(e))
}

/// Reports the missed epochs of every deal in `suspects` (anyone may; the
/// bounty comes to the client) and waits, up to `wait_epochs`, until none of
/// them is an Active deal whose provider is failing. Returns the deals then.
fn settle_failing(
    ctx: &Ctx,
    market: &MarketView,
    client: &Keypair,
    id: &DatasetId,
    suspects: &[u16],
    wait_epochs: u64,
    progress: &Progress,
) -> Result<Vec<(Pubkey, Deal)>, CliError> {
    let epoch_slots = market.account.params.epoch_slots;
    let deadline = slot(ctx)? + wait_epochs * epoch_slots;
    let bounty_to = market.token_account_of(&client.pubkey());
    let mut noted = std::collections::BTreeMap::new();
    loop {
        let now = slot(ctx)?;
        let mut deals = client_deals(ctx, &client.pubkey(), id)?;
        let mut reported = false;
        for (address, deal) in &deals {
            if unsettled(deal, market, now) {
                let ix = market.ix.report_faults_ix(
                    &client.pubkey(),
                    &deal.provider,
                    address,
                    &bounty_to,
                );
                // A node may have reported the same epochs first; the deals
                // are read again below either way.
                reported |= ctx
                    .send(
                        &format!("report_faults for shard {}", deal.shard_index),
                        &[ix],
                        &[],
                    )
                    .is_ok();
            }
        }
        if reported {
            deals = client_deals(ctx, &client.pubkey(), id)?;
        }
        let waiting: Vec<&Deal> = deals
            .iter()
            .map(|(_, d)| d)
            .filter(|d| {
                d.state == DealState::Active
                    && (d.consecutive_faults > 0 || suspects.contains(&d.shard_index))
            })
            .collect();
        if waiting.is_empty() || now >= deadline {
            return Ok(deals);
        }
        for d in waiting {
            let seen = (d.consecutive_faults, d.state);
            if noted.insert(d.shard_index, seen) != Some(seen) {
                progress.note(&format!(
                    "shard {}: provider {} has missed {} epoch(s) in a row; its deal terminates at {}, waiting",
                    d.shard_index, d.provider, d.consecutive_faults, d.max_consecutive_faults
                ));
            }
        }
        std::thread::sleep(Duration::from_millis(1000));
    }
}

pub fn repair(
    ctx: &Ctx,
    a: RepairArgs,
    connector: &dyn Connector,
    progress: &Progress,
) -> Result<RepairReport, CliError> {
    let started = Instant::now();
    let id = crate::context::parse_dataset_id(&a.dataset)?;
    let client = ctx.payer()?;
    let market = ctx.market()?;
    let work = work_dir(
        &a.state_dir.clone().unwrap_or_else(default_root),
        &client.pubkey().to_string(),
        Path::new(&format!("repair:{id}")),
    );
    let accept_timeout = Duration::from_secs(a.accept_timeout);

    // An interrupted repair: its shards are rebuilt and the old deals closed;
    // only placement is left.
    if let Some(mut state) = UploadState::load(&work)? {
        if state.dataset_id == id.to_string()
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
            let repaired: Vec<u16> = state
                .shards
                .iter()
                .filter(|s| !s.local.path.as_os_str().is_empty())
                .map(|s| s.local.index)
                .collect();
            return finish(
                ctx,
                &market,
                client,
                &id,
                &state,
                &repaired,
                Vec::new(),
                Vec::new(),
                0,
                replaced,
                started,
            );
        }
    }

    let deals = client_deals(ctx, &client.pubkey(), &id)?;
    let Some((_, first)) = deals.first() else {
        return Err(CliError::Refused(format!(
            "unknown dataset {id}: client {} has no deals for it on {}",
            client.pubkey(),
            ctx.url
        )));
    };
    let (k, n) = (first.k, first.n);

    // Which active shards can be read now; unreachable ones are suspects.
    let mut shards = deals
        .iter()
        .filter(|(_, d)| d.state == DealState::Active)
        .map(|(address, d)| shard_of(ctx, *address, d))
        .collect::<Result<Vec<_>, _>>()?;
    connect_all(connector, &mut shards);
    let suspects: Vec<u16> = shards
        .iter()
        .filter(|s| s.node.is_none())
        .map(|s| s.index)
        .collect();
    for s in shards.iter().filter(|s| s.node.is_none()) {
        progress.note(&format!(
            "shard {} provider {} ({}): {}",
            s.index, s.provider, s.endpoint, s.status
        ));
    }
    let wait_epochs = a
        .wait_epochs
        .unwrap_or(u64::from(market.account.params.max_consecutive_faults) + 2);
    let deals = settle_failing(ctx, &market, client, &id, &suspects, wait_epochs, progress)?;

    let lost: Vec<(Pubkey, Option<Deal>, u16)> = (0..n)
        .filter_map(|i| match deals.iter().find(|(_, d)| d.shard_index == i) {
            None => Some((cairn_chain::deal_pda(&client.pubkey(), &id.0, i), None, i)),
            Some((address, d))
                if matches!(d.state, DealState::Terminated | DealState::Cancelled) =>
            {
                Some((*address, Some(d.clone()), i))
            }
            Some(_) => None,
        })
        .collect();
    let still_failing: Vec<u16> = deals
        .iter()
        .filter(|(_, d)| {
            d.state == DealState::Active
                && (d.consecutive_faults > 0 || suspects.contains(&d.shard_index))
        })
        .map(|(_, d)| d.shard_index)
        .collect();
    // Healthy: active, not failing, and its node answered with the shard.
    shards.retain(|s| s.node.is_some() && !still_failing.contains(&s.index));
    if lost.is_empty() {
        let state = UploadState::new(
            work.clone(),
            id.to_string(),
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
            &state,
            &[],
            shards.iter().map(|s| s.index).collect(),
            still_failing,
            0,
            0,
            started,
        );
    }
    if shards.len() < usize::from(k) {
        return Err(CliError::Refused(format!(
            "dataset {id} cannot be rebuilt: {} healthy shards of the {k} needed ({} lost); {}",
            shards.len(),
            lost.len(),
            describe(&shards)
        )));
    }
    let current_epoch = market.account.epoch_at(slot(ctx)?);
    let end_epoch = deals
        .iter()
        .filter(|(_, d)| d.state == DealState::Active)
        .map(|(_, d)| d.end_epoch)
        .max()
        .unwrap_or(0);
    // A new deal starts the epoch after it is accepted.
    let epochs = end_epoch.saturating_sub(current_epoch + 1);
    if epochs == 0 {
        return Err(CliError::Refused(format!(
            "dataset {id}: its deals end at epoch {end_epoch} (now {current_epoch}); nothing is left to store it for"
        )));
    }

    // Rebuild every lost shard from the healthy ones, into the work dir.
    let manifest = read_manifest(&id, &shards)?;
    let tails = shard_tails(&manifest).map_err(|e| CliError::Refused(e.to_string()))?;
    let stored_len = stored_shard_len(&manifest);
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).map_err(CliError::io(&work))?;
    let bar = progress.bar(
        "rebuild",
        lost.len() as u64 * u64::from(k) * manifest.shard_len(),
    );
    let mut sources: Vec<Option<RemoteShard>> = (0..usize::from(n)).map(|_| None).collect();
    for s in &shards {
        sources[usize::from(s.index)] = Some(RemoteShard {
            node: s.node.as_deref().expect("retained: connected"),
            deal: s.deal,
            bar: &bar,
        });
    }
    let mut decoder = manifest
        .decoder(sources)
        .map_err(|e| CliError::Refused(format!("dataset {id}: {e}")))?;
    let mut rebuilt = Vec::with_capacity(lost.len());
    for (_, old, i) in &lost {
        let path = work.join(format!("shard-{i}.bin"));
        let mut sink = ShardSink::create(&path)?;
        decoder
            .rebuild_shard(usize::from(*i), &mut sink)
            .map_err(|e| {
                CliError::Refused(format!(
                    "dataset {id}: rebuilding shard {i} failed: {e}; {}",
                    describe(&shards)
                ))
            })?;
        let shard = sink.finish(*i, path, &tails[usize::from(*i)])?;
        if let Some(old) = old {
            if shard.root != old.shard_root || shard.bytes != old.shard_bytes {
                return Err(CliError::Refused(format!(
                    "dataset {id}: rebuilt shard {i} does not match its deal's root and size; not placed"
                )));
            }
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

    // The placement record: healthy shards as placed, lost ones to place with
    // a provider other than the one that lost them.
    let mut locals: Vec<LocalShard> = (0..n)
        .map(|i| {
            rebuilt
                .iter()
                .find(|s| s.index == i)
                .cloned()
                .unwrap_or_else(|| {
                    let d = deals
                        .iter()
                        .find(|(_, d)| d.shard_index == i)
                        .map(|(_, d)| d);
                    LocalShard {
                        index: i,
                        path: PathBuf::new(),
                        bytes: d.map_or(stored_len, |d| d.shard_bytes),
                        root: d.map_or([0; 32], |d| d.shard_root),
                    }
                })
        })
        .collect();
    locals.sort_by_key(|s| s.index);
    let max_price_per_epoch = match &a.max_price {
        Some(p) => parse_tokens(p, market.decimals)
            .map_err(|e| CliError::bad("--max-price", e))?
            .saturating_mul(billable_mib(stored_len)),
        None => u64::MAX,
    };
    let mut state = UploadState::new(
        work.clone(),
        id.to_string(),
        client.pubkey().to_string(),
        k,
        n - k,
        epochs,
        max_price_per_epoch,
        locals,
    );
    for s in state.shards.iter_mut() {
        match lost.iter().find(|(_, _, i)| *i == s.local.index) {
            Some((_, old, _)) => s
                .failed
                .extend(old.as_ref().map(|d| d.provider.to_string())),
            None => {
                s.stage = Stage::Accepted;
                s.provider = deals
                    .iter()
                    .find(|(_, d)| d.shard_index == s.local.index)
                    .map(|(_, d)| d.provider.to_string());
            }
        }
    }
    // The old deals give way (the client's refund is paid) so the shard's
    // deal address is free for the new one.
    let to = market.token_account_of(&client.pubkey());
    for (address, old, i) in &lost {
        if old.is_some() {
            ctx.send(
                &format!("close_deal for shard {i}"),
                &[market.ix.close_deal_ix(&client.pubkey(), address, &to)],
                &[],
            )?;
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
    let old: Vec<(u16, String, String)> = lost
        .iter()
        .map(|(_, d, i)| {
            (
                *i,
                d.as_ref().map_or(String::new(), |d| d.provider.to_string()),
                d.as_ref()
                    .map_or("closed", |d| state_name(d.state))
                    .to_string(),
            )
        })
        .collect();
    let indices: Vec<u16> = lost.iter().map(|(_, _, i)| *i).collect();
    let mut out = finish(
        ctx,
        &market,
        client,
        &id,
        &state,
        &indices,
        shards.iter().map(|s| s.index).collect(),
        still_failing,
        report.bytes_read,
        replaced,
        started,
    )?;
    for r in out.repaired.iter_mut() {
        if let Some((_, p, st)) = old.iter().find(|(i, _, _)| *i == r.shard_index) {
            r.old_provider = p.clone();
            r.old_state = st.clone();
        }
    }
    Ok(out)
}

/// Checks that every shard is placed and builds the report.
#[allow(clippy::too_many_arguments)]
fn finish(
    ctx: &Ctx,
    market: &MarketView,
    client: &Keypair,
    id: &DatasetId,
    state: &UploadState,
    repaired: &[u16],
    rebuilt_from: Vec<u16>,
    still_failing: Vec<u16>,
    bytes_fetched: u64,
    replaced: usize,
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
    let mut out = Vec::new();
    for s in state
        .shards
        .iter()
        .filter(|s| repaired.contains(&s.local.index))
    {
        let deal = cairn_chain::deal_pda(&client.pubkey(), &id.0, s.local.index);
        if let Some(d) = ctx.fetch::<Deal>("deal", &deal)? {
            escrow += d.escrow;
        }
        out.push(RepairedShard {
            shard_index: s.local.index,
            old_provider: s.failed.first().cloned().unwrap_or_default(),
            old_state: "terminated".into(),
            provider: s.provider.clone().unwrap_or_default(),
            deal: deal.to_string(),
            bytes: s.local.bytes,
            root: cairn_core::hash::to_hex(&s.local.root),
        });
    }
    Ok(RepairReport {
        dataset_id: id.to_string(),
        k: state.k,
        n: state.k + state.m,
        rebuilt_from,
        repaired: out,
        still_failing,
        bytes_fetched,
        epochs: state.epochs,
        escrow,
        decimals: market.decimals,
        replaced_providers: replaced,
        seconds: started.elapsed().as_secs_f64(),
    })
}
