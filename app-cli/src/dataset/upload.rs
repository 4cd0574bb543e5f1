//! `cairn upload DIR`: encode, choose providers, propose deals, send shards in
//! parallel, wait for acceptance; failing providers are replaced.
use std::fmt;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{Duration, Instant};

use anchor_lang::prelude::Pubkey;
use clap::Args;
use serde::Serialize;
use solana_keypair::Keypair;
use solana_signer::Signer;
use storage_market::errors::MarketError;
use storage_market::instructions::{billable_mib, ProposeDealArgs};
use storage_market::state::{Deal, DealState, Provider};

use crate::context::{Ctx, MarketView};
use crate::dataset::prepare::prepare;
use crate::dataset::select::candidates;
use crate::dataset::state::{default_root, work_dir, ShardUpload, Stage, UploadState};
use crate::dataset::transport::{Connector, TransportError};
use crate::error::CliError;
use crate::output::Progress;
use crate::units::parse_tokens;

/// Bytes per `PutShard` request (each waits for the node's answer, so larger
/// requests spend less time waiting; `cairn bench` at 512 MiB sent in 10.8 s
/// with 32 MiB against 13.1 s with 4 MiB, one run each). One buffer per shard
/// in flight; a node keeps what arrived of a broken request.
pub const PUT_CHUNK: usize = 16 << 20;
/// Attempts with one provider (each resumes) before it is replaced.
const ATTEMPTS_PER_PROVIDER: usize = 3;
/// Providers tried per shard before the upload gives up.
const PROVIDERS_PER_SHARD: usize = 4;

#[derive(Args, Debug)]
pub struct UploadArgs {
    /// The directory to upload.
    pub dir: PathBuf,
    /// Shards needed to rebuild the dataset (k).
    #[arg(long, default_value_t = 4)]
    pub data_shards: u16,
    /// Extra shards that may be lost (m).
    #[arg(long, default_value_t = 2)]
    pub parity_shards: u16,
    /// Epochs to store for.
    #[arg(long, default_value_t = 30)]
    pub epochs: u64,
    /// Most to pay per MiB per epoch, in tokens. Default: any price (cheapest
    /// reliable providers are chosen first).
    #[arg(long)]
    pub max_price: Option<String>,
    /// Finish an interrupted upload of DIR without re-encoding or resending
    /// what is done.
    #[arg(long)]
    pub resume: bool,
    /// Where upload work (encoded shards, the upload record) is kept.
    #[arg(long, env = "CAIRN_STATE_DIR")]
    pub state_dir: Option<PathBuf>,
    /// Seconds to wait for a node to accept its deal once it holds the shard.
    #[arg(long, default_value_t = 60)]
    pub accept_timeout: u64,
}

#[derive(Serialize, Debug, PartialEq, Eq)]
pub struct ShardPlaced {
    pub shard_index: u16,
    pub deal: String,
    pub provider: String,
    pub bytes: u64,
    pub root: String,
}

#[derive(Serialize, Debug)]
pub struct UploadReport {
    pub dataset_id: String,
    pub k: u16,
    pub m: u16,
    pub files: usize,
    pub dataset_bytes: u64,
    pub shard_bytes: u64,
    pub epochs: u64,
    pub escrow: u64,
    pub decimals: u8,
    pub shards: Vec<ShardPlaced>,
    pub resumed: bool,
    pub replaced_providers: usize,
}

impl fmt::Display for UploadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = crate::units::Tokens {
            base_units: self.escrow,
            decimals: self.decimals,
        };
        writeln!(
            f,
            "uploaded {} files ({}) as {} + {} shards of {} for {} epochs, escrow {}",
            self.files,
            crate::units::human_bytes(self.dataset_bytes),
            self.k,
            self.m,
            crate::units::human_bytes(self.shard_bytes),
            self.epochs,
            t
        )?;
        for s in &self.shards {
            writeln!(
                f,
                "  shard {:>3}  provider {}  deal {}",
                s.shard_index, s.provider, s.deal
            )?;
        }
        if self.replaced_providers > 0 {
            writeln!(
                f,
                "{} failing provider(s) were replaced",
                self.replaced_providers
            )?;
        }
        writeln!(f, "dataset id {}", self.dataset_id)
    }
}

fn pubkey(text: &str) -> Pubkey {
    Pubkey::from_str(text).expect("pubkeys in the upload record are written by cairn")
}

pub fn upload(
    ctx: &Ctx,
    a: UploadArgs,
    connector: &dyn Connector,
    progress: &Progress,
) -> Result<UploadReport, CliError> {
    let dir = std::path::absolute(&a.dir).map_err(|e| CliError::bad("DIR", e.to_string()))?;
    if !dir.is_dir() {
        return Err(CliError::bad(
            "DIR",
            format!("{} is not a directory", dir.display()),
        ));
    }
    let client = ctx.payer()?;
    let market = ctx.market()?;
    let work = work_dir(
        &a.state_dir.clone().unwrap_or_else(default_root),
        &client.pubkey().to_string(),
        &dir,
    );
    let existing = UploadState::load(&work)?;
    // Unfinished with something on chain (a deal holds escrow): only
    // --resume may go on. An upload that never proposed starts over.
    let unfinished = |s: &UploadState| {
        s.shards.iter().any(|x| x.stage != Stage::Accepted)
            && s.shards.iter().any(|x| x.stage != Stage::Prepared)
    };
    let resumed = a.resume;
    let mut state = match existing {
        Some(s) if a.resume => {
            if s.client != client.pubkey().to_string() {
                return Err(CliError::Refused(format!(
                    "the interrupted upload of {} was made by {}; resume it with that keypair",
                    dir.display(),
                    s.client
                )));
            }
            s
        }
        None if a.resume => {
            return Err(CliError::Refused(format!(
                "no interrupted upload of {} to resume (looked in {})",
                dir.display(),
                work.display()
            )))
        }
        Some(s) if unfinished(&s) => {
            return Err(CliError::Refused(format!(
                "an upload of {} (dataset {}) is unfinished; finish it with `cairn upload --resume {}`, or delete {} to start over",
                dir.display(),
                s.dataset_id,
                a.dir.display(),
                work.display()
            )))
        }
        _ => {
            let _ = std::fs::remove_dir_all(&work);
            progress.note(&format!("encoding {} into {} + {} shards", dir.display(), a.data_shards, a.parity_shards));
            let prepared = prepare(&dir, a.data_shards, a.parity_shards, &work)?;
            let shard_bytes = prepared.shards[0].bytes;
            let max_price_per_epoch = match &a.max_price {
                Some(p) => parse_tokens(p, market.decimals)
                    .map_err(|e| CliError::bad("--max-price", e))?
                    .saturating_mul(billable_mib(shard_bytes)),
                None => u64::MAX,
            };
            let s = UploadState::new(
                dir.clone(),
                prepared.id.to_string(),
                client.pubkey().to_string(),
                a.data_shards,
                a.parity_shards,
                a.epochs,
                max_price_per_epoch,
                prepared.shards,
            );
            s.save(&work)?;
            s
        }
    };
    let dataset_id =
        cairn_core::DatasetId::from_str(&state.dataset_id).expect("id written by cairn");
    let replaced = place(
        ctx,
        &market,
        client,
        &mut state,
        &work,
        connector,
        progress,
        Duration::from_secs(a.accept_timeout),
    )?;
    if let Some(s) = state.shards.iter().find(|s| s.stage != Stage::Accepted) {
        return Err(CliError::Refused(format!(
            "shard {} could not be placed after trying {} providers; run `cairn upload --resume {}` to try again",
            s.local.index,
            s.failed.len(),
            a.dir.display()
        )));
    }

    let deals: Vec<Deal> = state
        .shards
        .iter()
        .map(|s| ctx.fetch_existing::<Deal>("deal", &s.deal(&client.pubkey(), &dataset_id.0)))
        .collect::<Result<_, _>>()?;
    let manifest_files = count_files(&state.dir);
    Ok(UploadReport {
        dataset_id: state.dataset_id.clone(),
        k: state.k,
        m: state.m,
        files: manifest_files.0,
        dataset_bytes: manifest_files.1,
        shard_bytes: state.shards[0].local.bytes,
        epochs: state.epochs,
        escrow: deals.iter().map(|d| d.escrow).sum(),
        decimals: market.decimals,
        shards: state
            .shards
            .iter()
            .map(|s| ShardPlaced {
                shard_index: s.local.index,
                deal: s.deal(&client.pubkey(), &dataset_id.0).to_string(),
                provider: s.provider.clone().unwrap_or_default(),
                bytes: s.local.bytes,
                root: cairn_core::hash::to_hex(&s.local.root),
            })
            .collect(),
        resumed,
        replaced_providers: replaced,
    })
}

/// Places every shard not yet accepted: proposes deals with providers not
/// used by another shard (nor failed for this one), sends the shards in
/// parallel, waits for acceptance, and replaces failing providers, for up to
/// [`PROVIDERS_PER_SHARD`] rounds. Returns how many providers were replaced;
/// the caller checks that every shard ended `Accepted`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn place(
    ctx: &Ctx,
    market: &MarketView,
    client: &Keypair,
    state: &mut UploadState,
    work: &Path,
    connector: &dyn Connector,
    progress: &Progress,
    accept_timeout: Duration,
) -> Result<usize, CliError> {
    let dataset_id =
        cairn_core::DatasetId::from_str(&state.dataset_id).expect("id written by cairn");
    let mut replaced = 0;
    for _round in 0..PROVIDERS_PER_SHARD {
        propose_missing(ctx, market, client, state, work, dataset_id.0)?;
        let outcomes = send_all(ctx, state, connector, client, progress)?;
        for (i, outcome) in outcomes {
            match outcome {
                Ok(()) => state.shards[i].stage = Stage::Sent,
                Err(e) => {
                    progress.note(&format!(
                        "shard {i}: provider {} failed ({e}); choosing another",
                        state.shards[i].provider.as_deref().unwrap_or("?")
                    ));
                    release(ctx, market, client, state, i, dataset_id.0)?;
                    replaced += 1;
                }
            }
        }
        state.save(work)?;
        // Nodes accept on chain once they verified the root.
        let deadline = Instant::now() + accept_timeout;
        for i in 0..state.shards.len() {
            if state.shards[i].stage != Stage::Sent {
                continue;
            }
            let deal = state.shards[i].deal(&client.pubkey(), &dataset_id.0);
            if wait_accepted(ctx, &deal, deadline)? {
                state.shards[i].stage = Stage::Accepted;
            } else {
                progress.note(&format!(
                    "shard {i}: the provider did not accept its deal in time; choosing another"
                ));
                release(ctx, market, client, state, i, dataset_id.0)?;
                replaced += 1;
            }
        }
        state.save(work)?;
        if state.shards.iter().all(|s| s.stage == Stage::Accepted) {
            break;
        }
    }
    Ok(replaced)
}

/// Files and bytes under `dir` (for the report).
fn count_files(dir: &Path) -> (usize, u64) {
    cairn_core::manifest::fs::scan_dir(dir)
        .map(|files| (files.len(), files.iter().map(|f| f.size).sum()))
        .unwrap_or((0, 0))
}

/// Proposes a deal for every shard that has none, each with a provider not
/// used by another shard of the dataset, not failed for this one and not one
/// the record avoids.
fn propose_missing(
    ctx: &Ctx,
    market: &MarketView,
    client: &Keypair,
    state: &mut UploadState,
    work: &Path,
    dataset_id: [u8; 32],
) -> Result<(), CliError> {
    if state.shards.iter().all(|s| s.stage != Stage::Prepared) {
        return Ok(());
    }
    adopt_landed_proposals(ctx, market, client, state, work, dataset_id)?;
    if state.shards.iter().all(|s| s.stage != Stage::Prepared) {
        return Ok(());
    }
    let providers = ctx.program_accounts::<Provider>(&[])?;
    let shard_bytes = state.shards[0].local.bytes;
    let from = market.token_account_of(&client.pubkey());
    // Choose every missing shard's provider first, so the escrow of all of
    // them is checked before anything is proposed.
    let mut taken: Vec<Pubkey> = state
        .shards
        .iter()
        .filter_map(|s| s.provider.as_deref().map(pubkey))
        .collect();
    let mut plan = Vec::new();
    for i in 0..state.shards.len() {
        if state.shards[i].stage != Stage::Prepared {
            continue;
        }
        let mut exclude = taken.clone();
        exclude.extend(state.shards[i].failed.iter().map(|p| pubkey(p)));
        exclude.extend(state.avoid.iter().map(|p| pubkey(p)));
        let (found, short) = candidates(
            &providers,
            &market.account.params,
            shard_bytes,
            state.max_price_per_epoch,
            &exclude,
        );
        let Some(choice) = found.into_iter().next() else {
            return Err(CliError::Refused(format!(
                "no provider can take shard {i} ({shard_bytes} bytes): {} registered, {short}; {} shards need {} distinct providers",
                providers.len(),
                state.shards.len(),
                state.shards.len()
            )));
        };
        taken.push(choice.address);
        plan.push((i, choice));
    }
    let escrow: u64 = plan
        .iter()
        .map(|(_, c)| c.price_per_epoch.saturating_mul(state.epochs))
        .fold(0, u64::saturating_add);
    let balance = ctx.token_balance(&from)?;
    if balance < escrow {
        return Err(CliError::Refused(format!(
            "insufficient funds: the escrow of {} shard(s) is {}, token account {from} holds {}",
            plan.len(),
            market.tokens(escrow),
            market.tokens(balance)
        )));
    }
    // All proposals in flight at once (one confirmation wait, not one per
    // shard). A proposal that lands while its record is not yet saved is
    // adopted by `adopt_landed_proposals` on resume.
    let proposals: Vec<_> = plan
        .iter()
        .map(|(i, choice)| {
            let shard = &state.shards[*i].local;
            let args = ProposeDealArgs {
                dataset_id,
                shard_index: shard.index,
                generation: state.shards[*i].generation,
                k: state.k,
                n: state.k + state.m,
                shard_root: shard.root,
                shard_bytes: shard.bytes,
                duration_epochs: state.epochs,
                max_price_per_epoch: state.max_price_per_epoch,
            };
            let ix = market
                .ix
                .propose_deal_ix(&client.pubkey(), &choice.address, &from, args);
            (*i, choice.address, ix)
        })
        .collect();
    let results: Vec<_> = std::thread::scope(|scope| {
        let handles: Vec<_> = proposals
            .into_iter()
            .map(|(i, provider, ix)| {
                scope.spawn(move || {
                    let sent = ctx.send(&format!("propose_deal for shard {i}"), &[ix], &[]);
                    (i, provider, sent)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("propose thread"))
            .collect()
    });
    let mut failed = None;
    for (i, provider, sent) in results {
        match sent {
            Ok(_) => {
                state.shards[i].stage = Stage::Proposed;
                state.shards[i].provider = Some(provider.to_string());
            }
            // Jailed since it was chosen: another provider, next round.
            Err(CliError::Program {
                error: MarketError::ProviderJailed,
                ..
            }) => state.shards[i].failed.push(provider.to_string()),
            Err(e) => {
                failed.get_or_insert(e);
            }
        }
    }
    state.save(work)?;
    failed.map_or(Ok(()), Err)
}

/// Shards recorded as only prepared whose deal is nevertheless on chain (the
/// upload was interrupted between a proposal landing and its record being
/// saved) continue from the chain's state instead of proposing again.
fn adopt_landed_proposals(
    ctx: &Ctx,
    market: &MarketView,
    client: &Keypair,
    state: &mut UploadState,
    work: &Path,
    dataset_id: [u8; 32],
) -> Result<(), CliError> {
    let on_chain = ctx.program_accounts::<Deal>(&[
        (cairn_chain::layout::DEAL_CLIENT, client.pubkey().as_ref()),
        (cairn_chain::layout::DEAL_DATASET_ID, dataset_id.as_ref()),
    ])?;
    let mut adopted = false;
    for s in state
        .shards
        .iter_mut()
        .filter(|s| s.stage == Stage::Prepared)
    {
        let Some((address, deal)) = on_chain
            .iter()
            .find(|(_, d)| d.shard_index == s.local.index && d.generation == s.generation)
        else {
            continue;
        };
        if deal.shard_root != s.local.root || deal.shard_bytes != s.local.bytes {
            return Err(CliError::Refused(format!(
                "deal {address} of shard {} pins another shard (root {}, {} bytes; this one is {}, {} bytes)",
                s.local.index,
                cairn_core::hash::to_hex(&deal.shard_root),
                deal.shard_bytes,
                cairn_core::hash::to_hex(&s.local.root),
                s.local.bytes
            )));
        }
        s.stage = match deal.state {
            DealState::Proposed => Stage::Proposed,
            DealState::Active => Stage::Sent,
            // Over (cancelled, terminated, completed): the shard is proposed
            // anew, at this address once it is closed, else at the next one.
            _ => {
                give_way(ctx, market, client, s, address, deal)?;
                adopted = true;
                continue;
            }
        };
        s.provider = Some(deal.provider.to_string());
        adopted = true;
    }
    if adopted {
        state.save(work)?;
    }
    Ok(())
}

/// Withdraws shard `i`'s deal (cancel + close: the escrow comes back) and
/// marks its provider failed, so the next round proposes to another.
fn release(
    ctx: &Ctx,
    market: &MarketView,
    client: &Keypair,
    state: &mut UploadState,
    i: usize,
    dataset_id: [u8; 32],
) -> Result<(), CliError> {
    let shard = &mut state.shards[i];
    let address = shard.deal(&client.pubkey(), &dataset_id);
    if let Some(deal) = ctx.fetch::<Deal>("deal", &address)? {
        if deal.state == DealState::Active {
            // Accepted after all: keep it.
            shard.stage = Stage::Accepted;
            return Ok(());
        }
        give_way(ctx, market, client, shard, &address, &deal)?;
    }
    if let Some(p) = shard.provider.take() {
        shard.failed.push(p);
    }
    shard.stage = Stage::Prepared;
    Ok(())
}

/// Makes room for a new proposal of `shard`, whose deal at `address` is not
/// active: a proposal is cancelled and closed (the escrow comes back) and a
/// finished deal out of its provider's set closed, freeing the address; a deal
/// that cannot be closed now keeps its address, and the shard moves on to the
/// next generation (`cairn repair` closes the old deal later).
fn give_way(
    ctx: &Ctx,
    market: &MarketView,
    client: &Keypair,
    shard: &mut ShardUpload,
    address: &Pubkey,
    deal: &Deal,
) -> Result<(), CliError> {
    let to = market.token_account_of(&client.pubkey());
    let index = shard.local.index;
    let close = market.ix.close_deal_ix(&client.pubkey(), address, &to);
    match deal.state {
        DealState::Proposed => {
            let cancel = market.ix.cancel_deal_ix(&client.pubkey(), address, &to);
            ctx.send(
                &format!("cancel_deal for shard {index}"),
                &[cancel, close],
                &[],
            )?;
        }
        DealState::Active => {
            return Err(CliError::Refused(format!(
                "deal {address} of shard {index} is active; it cannot give way"
            )))
        }
        DealState::Cancelled | DealState::Completed | DealState::Terminated if !deal.in_set => {
            ctx.send(&format!("close_deal for shard {index}"), &[close], &[])?;
        }
        _ => shard.generation += 1,
    }
    Ok(())
}

/// A shard's index and how its transfer ended.
type Outcome = (usize, Result<(), TransportError>);

/// Sends every proposed shard to its provider's node in parallel; returns
/// each shard's outcome.
fn send_all(
    ctx: &Ctx,
    state: &UploadState,
    connector: &dyn Connector,
    client: &Keypair,
    progress: &Progress,
) -> Result<Vec<Outcome>, CliError> {
    let dataset_id =
        cairn_core::DatasetId::from_str(&state.dataset_id).expect("id written by cairn");
    let mut jobs = Vec::new();
    for (i, s) in state.shards.iter().enumerate() {
        if s.stage != Stage::Proposed {
            continue;
        }
        let provider_address = pubkey(
            s.provider
                .as_deref()
                .expect("a proposed shard has a provider"),
        );
        let provider: Provider = ctx.fetch_existing("provider", &provider_address)?;
        let deal = s.deal(&client.pubkey(), &dataset_id.0);
        jobs.push((
            i,
            provider.endpoint,
            provider.operator,
            deal,
            s.local.path.clone(),
            s.local.bytes,
        ));
    }
    let results = std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .into_iter()
            .map(|(i, endpoint, operator, deal, path, bytes)| {
                let bar = progress.bar(&format!("shard {i}"), bytes);
                scope.spawn(move || {
                    let outcome = send_one(
                        connector, &endpoint, &operator, &deal, client, &path, bytes, &bar,
                    );
                    bar.finish(outcome.is_ok());
                    (i, outcome)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("upload thread"))
            .collect()
    });
    Ok(results)
}

/// Sends one stored shard, resuming from what the node reports; retries a
/// broken transfer a few times before giving up on the provider.
#[allow(clippy::too_many_arguments)]
fn send_one(
    connector: &dyn Connector,
    endpoint: &str,
    operator: &Pubkey,
    deal: &Pubkey,
    client: &Keypair,
    path: &Path,
    bytes: u64,
    bar: &crate::output::Bar,
) -> Result<(), TransportError> {
    let mut last = None;
    for attempt in 0..ATTEMPTS_PER_PROVIDER {
        if attempt > 0 {
            std::thread::sleep(Duration::from_millis(500 << attempt));
        }
        let result = (|| {
            let node = connector.connect(endpoint, operator)?;
            let mut held = node.held(deal)?;
            let mut file = std::fs::File::open(path)
                .map_err(|e| TransportError::refused(format!("{}: {e}", path.display())))?;
            let mut buf = vec![0u8; PUT_CHUNK];
            while !held.complete {
                let offset = held.received;
                if offset >= bytes {
                    return Err(TransportError::refused(format!(
                        "node holds {offset} bytes of a {bytes}-byte shard but not a verified one"
                    )));
                }
                bar.set(offset);
                let len = (bytes - offset).min(PUT_CHUNK as u64) as usize;
                file.seek(SeekFrom::Start(offset))
                    .and_then(|_| file.read_exact(&mut buf[..len]))
                    .map_err(|e| TransportError::refused(format!("{}: {e}", path.display())))?;
                held = node.put(deal, client, offset, &buf[..len])?;
                if held.received <= offset && !held.complete {
                    return Err(TransportError::unreachable("the node made no progress"));
                }
            }
            bar.set(bytes);
            Ok(())
        })();
        match result {
            Ok(()) => return Ok(()),
            // The node said no (wrong size, root mismatch, full): retrying
            // the same bytes cannot help.
            Err(e) if e.refused => return Err(e),
            Err(e) => last = Some(e),
        }
    }
    Err(last.expect("at least one attempt"))
}

/// Polls until `deal` is Active (true) or the deadline passes (false).
fn wait_accepted(ctx: &Ctx, deal: &Pubkey, deadline: Instant) -> Result<bool, CliError> {
    loop {
        if let Some(d) = ctx.fetch::<Deal>("deal", deal)? {
            if d.state == DealState::Active {
                return Ok(true);
            }
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}
