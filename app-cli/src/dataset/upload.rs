//! `cairn upload DIR`: check the whole dataset against the market and the
//! balance, then code it group by group (one group on local disk at a time):
//! choose providers, propose deals, send shards in parallel, wait for
//! acceptance, replacing failing providers; last, the index group holding the
//! dataset manifest, whose id is the dataset id.
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
use crate::dataset::prepare::{prepare_group, prepare_index, Prepared};
use crate::dataset::select::candidates;
use crate::dataset::state::{
    default_root, group_dir, load_json, save_json, work_dir, DatasetUpload, EntryRecord,
    ShardUpload, Stage, UploadState,
};
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
    /// Packed bytes per erasure group (e.g. 64MiB). Default: what makes
    /// shards of about 1 GiB, within the market's largest shard.
    #[arg(long)]
    pub group_size: Option<String>,
    /// Private dataset: encrypt file contents and the manifest (names,
    /// sizes, directories) on this machine with the dataset key (--key) before
    /// anything leaves it. Providers, the indexer and the chain see only
    /// encrypted sizes; download and ls need the key, repair does not.
    #[arg(long)]
    pub encrypt: bool,
    #[command(flatten)]
    pub key: crate::commands::key::KeyArg,
}

/// Shard size the default group length aims at.
pub const TARGET_SHARD_BYTES: u64 = 1 << 30;

#[derive(Serialize, Debug, PartialEq, Eq)]
pub struct ShardPlaced {
    /// The data group (absent: the index group).
    pub group: Option<u64>,
    pub shard_index: u16,
    pub deal: String,
    pub provider: String,
    pub bytes: u64,
    pub root: String,
}

#[derive(Serialize, Debug)]
pub struct UploadReport {
    pub dataset_id: String,
    /// The id of the dataset key the dataset is encrypted with (absent: a
    /// public dataset).
    pub key_id: Option<String>,
    pub k: u16,
    pub m: u16,
    pub files: usize,
    pub dirs: usize,
    pub dataset_bytes: u64,
    /// Packed bytes per data group.
    pub group_bytes: u64,
    /// Data groups (the index group comes on top).
    pub groups: u64,
    /// Stored bytes over every shard of every group.
    pub stored_bytes: u64,
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
            "uploaded {} files ({}) in {} group(s) of {} + {} shards ({} stored) for {} epochs, escrow {}",
            self.files,
            crate::units::human_bytes(self.dataset_bytes),
            self.groups,
            self.k,
            self.m,
            crate::units::human_bytes(self.stored_bytes),
            self.epochs,
            t
        )?;
        if self.replaced_providers > 0 {
            writeln!(
                f,
                "{} failing provider(s) were replaced",
                self.replaced_providers
            )?;
        }
        if let Some(key) = &self.key_id {
            writeln!(
                f,
                "encrypted with dataset key {key}; download and ls need it"
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
    let dir = std::fs::canonicalize(&a.dir).map_err(CliError::io(&a.dir))?;
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
    let scan = cairn_core::manifest::fs::scan_dir(&dir)
        .map_err(|e| CliError::bad("DIR", e.to_string()))?;
    let fingerprint = fingerprint(&dir, &scan)?;
    let existing = DatasetUpload::load(&work)?;
    let resumed = a.resume;
    let read_key = || -> Result<cairn_core::crypt::DatasetKey, CliError> {
        crate::context::read_dataset_key(&a.key.key)?.ok_or_else(|| CliError::DatasetKeyFile {
            path: a.key.key.clone(),
            reason: "not found; create a dataset key with `cairn key new`, or pass --key".into(),
        })
    };
    let mut record = match existing {
        Some(r) if a.resume => {
            if r.client != client.pubkey().to_string() {
                return Err(CliError::Refused(format!(
                    "the interrupted upload of {} was made by {}; resume it with that keypair",
                    dir.display(),
                    r.client
                )));
            }
            if a.encrypt && r.encrypted_with.is_none() {
                return Err(CliError::Refused(format!(
                    "the interrupted upload of {} is not encrypted; resume it without --encrypt, or delete {} to upload it anew",
                    dir.display(),
                    work.display()
                )));
            }
            if r.fingerprint != fingerprint {
                return Err(CliError::Refused(format!(
                    "{} changed since its upload began (a file was added, removed, resized or modified); delete {} to upload it anew",
                    dir.display(),
                    work.display()
                )));
            }
            r
        }
        None if a.resume => {
            return Err(CliError::Refused(format!(
                "no interrupted upload of {} to resume (looked in {})",
                dir.display(),
                work.display()
            )))
        }
        Some(r) if started(&work, &r) => {
            return Err(CliError::Refused(format!(
                "an upload of {} is unfinished ({} of {} groups placed); finish it with `cairn upload --resume {}`, or delete {} to start over",
                dir.display(),
                r.placed.len(),
                r.groups,
                a.dir.display(),
                work.display()
            )))
        }
        _ => {
            let key_id = match a.encrypt {
                true => Some(read_key()?.id().to_string()),
                false => None,
            };
            let _ = std::fs::remove_dir_all(&work);
            let group_len = group_len(&a, &market)?;
            let max_price_per_mib = match &a.max_price {
                Some(p) => parse_tokens(p, market.decimals)
                    .map_err(|e| CliError::bad("--max-price", e))?,
                None => u64::MAX,
            };
            let total = match key_id {
                Some(_) => scan.encrypted_len(),
                None => scan.total_len(),
            };
            let mut record = DatasetUpload::new(
                dir.clone(),
                client.pubkey().to_string(),
                a.data_shards,
                a.parity_shards,
                group_len,
                a.epochs,
                max_price_per_mib,
                rand::random(),
                fingerprint,
                cairn_core::Manifest::group_count(total, group_len),
            );
            record.encrypted_with = key_id;
            check_affordable(ctx, &market, client, &record, &scan, total)?;
            std::fs::create_dir_all(&work).map_err(CliError::io(&work))?;
            record.save(&work)?;
            record
        }
    };
    // A private dataset: the key its record names (a resumed upload must use
    // the key it began with).
    let key = match &record.encrypted_with {
        Some(id) => {
            let key = crate::context::read_dataset_key(&a.key.key)?.ok_or_else(|| {
                CliError::DatasetKeyRequired {
                    dataset: record.dataset_id.clone(),
                    key_file: a.key.key.clone(),
                }
            })?;
            if key.id().to_string() != *id {
                return Err(CliError::WrongDatasetKey {
                    dataset: record.dataset_id.clone(),
                    key_file: a.key.key.clone(),
                    expected: id.clone(),
                    given: key.id().to_string(),
                });
            }
            Some(key)
        }
        None => None,
    };
    // Packed bytes: each file's stored (encrypted) bytes in a private dataset.
    let total = match key {
        Some(_) => scan.encrypted_len(),
        None => scan.total_len(),
    };
    progress.note(&format!(
        "dataset {}{}: {} in {} group(s) of {} + {} shards",
        record.dataset_id,
        if key.is_some() { " (encrypted)" } else { "" },
        crate::units::human_bytes(total),
        record.groups,
        record.k,
        record.m
    ));
    let accept_timeout = Duration::from_secs(a.accept_timeout);
    let mut replaced = 0;
    let bytes_bar = progress.bar("dataset", total);
    let first = record.placed.len() as u64;
    bytes_bar.set((first * record.group_len).min(total));
    bytes_bar.message(format!("{first} of {} groups placed", record.groups));
    let packer = cairn_core::manifest::fs::GroupPacker::with_key(
        &dir,
        &scan,
        record.k,
        record.m,
        record.group_len,
        record.salt,
        first,
        key.clone(),
    );
    let mut packer = packer.map_err(|e| CliError::bad("DIR", e.to_string()))?;
    let n = usize::from(record.k + record.m);
    // Two groups in flight: this thread codes group g + 1 while a placer
    // thread places group g; the hand-over waits for the placer, so at most two
    // groups of shards are on local disk.
    let (record_after, placed) = std::thread::scope(|scope| {
        let (hand, take) = std::sync::mpsc::sync_channel::<(u64, Prepared)>(0);
        let market = &market;
        let work = &work;
        let bytes_bar = &bytes_bar;
        let mut placing = record.clone();
        let placer = scope.spawn(move || -> Result<(DatasetUpload, usize), CliError> {
            let mut replaced = 0;
            for (g, prepared) in take {
                let gdir = group_dir(work, Some(g));
                let number = u32::try_from(g).expect("the packer numbers groups in u32");
                replaced += place_group(
                    ctx,
                    market,
                    client,
                    &mut placing,
                    number,
                    &gdir,
                    prepared,
                    connector,
                    progress,
                    accept_timeout,
                )?;
                placing
                    .placed
                    .push(UploadState::load(&gdir)?.expect("placed above").group_id);
                placing.save(work)?;
                bytes_bar.set(((g + 1) * placing.group_len).min(total));
                bytes_bar.message(format!("{} of {} groups placed", g + 1, placing.groups));
            }
            Ok((placing, replaced))
        });
        let mut coded: Result<(), CliError> = Ok(());
        for g in first..record.groups {
            let gdir = group_dir(work, Some(g));
            // A group coded but not placed before an interruption is coded
            // again: the packer reads its bytes anyway, and the result is the same.
            let prepared = match prepare_group(&mut packer, n, &gdir) {
                Ok(p) => p.expect("g < groups"),
                Err(e) => {
                    coded = Err(e);
                    break;
                }
            };
            let entries: Vec<EntryRecord> =
                prepared.entries.iter().map(EntryRecord::from).collect();
            if let Err(e) = save_json(&gdir.join("entries.json"), &entries) {
                coded = Err(e);
                break;
            }
            // The placer stopped on an error: it says which.
            if hand.send((g, prepared)).is_err() {
                break;
            }
        }
        drop(hand);
        let placed = placer.join().expect("the placer thread does not panic");
        coded.and(placed)
    })?;
    record = record_after;
    replaced += placed;
    bytes_bar.finish(true);

    // The dataset manifest, from every group's entries, as the index group.
    let mut entries = Vec::new();
    for g in 0..record.groups {
        let path = group_dir(&work, Some(g)).join("entries.json");
        let group: Vec<EntryRecord> = load_json(&path)?.ok_or_else(|| CliError::Io {
            path: path.clone(),
            reason:
                "missing: the upload record is incomplete; delete the work directory to start over"
                    .into(),
        })?;
        entries.extend(group.into_iter().map(cairn_core::FileEntry::from));
    }
    entries.extend(
        packer
            .finish()
            .map_err(|e| CliError::bad("DIR", e.to_string()))?,
    );
    let ids = record
        .placed
        .iter()
        .map(|id| cairn_core::DatasetId::from_str(id).expect("ids written by cairn"))
        .collect();
    let manifest = cairn_core::Manifest::new(
        record.k,
        record.m,
        record.group_len,
        entries,
        scan.dirs.clone(),
        ids,
    )
    .map_err(|e| CliError::bad("DIR", e.to_string()))?;
    let idir = group_dir(&work, None);
    let index = match UploadState::load(&idir)? {
        Some(state) if state.shards.iter().all(|s| s.stage == Stage::Accepted) => None,
        _ => {
            // A private dataset's manifest is sealed (deterministically, so a
            // resumed upload codes the same index group).
            let content = match &key {
                Some(key) => {
                    cairn_core::manifest::sealed::SealedManifest::seal(&manifest, key, &record.salt)
                }
                None => manifest.encode(),
            };
            Some(prepare_index(
                &content,
                record.k,
                record.m,
                record.salt,
                &idir,
            )?)
        }
    };
    if let Some(prepared) = index {
        progress.note("placing the index group (the dataset manifest)");
        replaced += place_group(
            ctx,
            &market,
            client,
            &mut record,
            storage_market::constants::INDEX_GROUP,
            &idir,
            prepared,
            connector,
            progress,
            accept_timeout,
        )?;
    }

    // The report, from the deals on chain.
    let mut shards = Vec::new();
    let mut escrow = 0;
    let mut stored_bytes = 0;
    for g in (0..record.groups).map(Some).chain([None]) {
        let state = UploadState::load(&group_dir(&work, g))?.expect("placed above");
        let group_id =
            cairn_core::DatasetId::from_str(&state.group_id).expect("id written by cairn");
        for s in &state.shards {
            let deal = s.deal(&client.pubkey(), &group_id.0);
            let d: Deal = ctx.fetch_existing("deal", &deal)?;
            escrow += d.escrow;
            stored_bytes += s.local.bytes;
            shards.push(ShardPlaced {
                group: g,
                shard_index: s.local.index,
                deal: deal.to_string(),
                provider: s.provider.clone().unwrap_or_default(),
                bytes: s.local.bytes,
                root: cairn_core::hash::to_hex(&s.local.root),
            });
        }
    }
    Ok(UploadReport {
        dataset_id: record.dataset_id.clone(),
        key_id: record.encrypted_with.clone(),
        k: record.k,
        m: record.m,
        files: manifest.files().len(),
        dirs: manifest.dirs().len(),
        dataset_bytes: scan.total_len(),
        group_bytes: record.group_len,
        groups: record.groups,
        stored_bytes,
        epochs: record.epochs,
        escrow,
        decimals: market.decimals,
        shards,
        resumed,
        replaced_providers: replaced,
    })
}

/// Whether an upload recorded in `work` has anything on chain (a deal holds
/// escrow): then only `--resume` may go on.
fn started(work: &Path, record: &DatasetUpload) -> bool {
    if !record.placed.is_empty() {
        return true;
    }
    let proposed = |g| matches!(UploadState::load(&group_dir(work, g)), Ok(Some(s)) if s.shards.iter().any(|x| x.stage != Stage::Prepared));
    proposed(Some(0)) || proposed(None)
}

/// BLAKE3 over the scanned paths, sizes and modification times.
fn fingerprint(dir: &Path, scan: &cairn_core::manifest::fs::Scan) -> Result<String, CliError> {
    let mut h = blake3::Hasher::new();
    for f in &scan.files {
        let path = dir.join(&f.path);
        let modified = std::fs::metadata(&path)
            .and_then(|m| m.modified())
            .map_err(CliError::io(&path))?
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        h.update(f.path.as_bytes());
        h.update(&[0]);
        h.update(&f.size.to_le_bytes());
        h.update(&modified.to_le_bytes());
    }
    for d in &scan.dirs {
        h.update(d.as_bytes());
        h.update(&[1]);
    }
    Ok(h.finalize().to_hex().to_string())
}

/// Packed bytes per group: `--group-size`, else what makes shards of about
/// [`TARGET_SHARD_BYTES`]; either way every stored shard fits the market's
/// largest.
fn group_len(a: &UploadArgs, market: &MarketView) -> Result<u64, CliError> {
    let (k, m) = (a.data_shards, a.parity_shards);
    cairn_core::group::params_for(k, m, 0)
        .map_err(|e| CliError::bad("--data-shards/--parity-shards", e.to_string()))?;
    let max_shard = market.account.params.max_shard_bytes;
    let fits = |len: u64| {
        cairn_core::dataset::stored_shard_len_for(k, m, len).is_ok_and(|s| s <= max_shard)
    };
    match &a.group_size {
        Some(text) => {
            let len =
                crate::units::parse_bytes(text).map_err(|e| CliError::bad("--group-size", e))?;
            if len == 0 {
                return Err(CliError::bad(
                    "--group-size",
                    "a group holds at least one byte",
                ));
            }
            if !fits(len) {
                return Err(CliError::bad(
                    "--group-size",
                    format!(
                        "groups of {} make shards of {} bytes, over the market's largest shard of {max_shard} bytes",
                        crate::units::human_bytes(len),
                        cairn_core::dataset::stored_shard_len_for(k, m, len).unwrap_or(u64::MAX)
                    ),
                ));
            }
            Ok(len)
        }
        None => {
            // The largest multiple of k MiB whose shards fit, at most the target.
            let step = u64::from(k) << 20;
            let mut len = (u64::from(k) * TARGET_SHARD_BYTES / step) * step;
            while len > step && !fits(len) {
                len -= step;
            }
            if !fits(len) {
                return Err(CliError::Refused(format!(
                    "the market's largest shard ({max_shard} bytes) is too small for {k} + {m} shards of 1 MiB; pass a smaller --group-size"
                )));
            }
            Ok(len)
        }
    }
}

/// Refuses, before anything is coded, a dataset the client cannot pay for:
/// every group's shards at the cheapest prices the market offers now, for the
/// whole term.
fn check_affordable(
    ctx: &Ctx,
    market: &MarketView,
    client: &Keypair,
    record: &DatasetUpload,
    scan: &cairn_core::manifest::fs::Scan,
    total: u64,
) -> Result<(), CliError> {
    let providers = ctx.program_accounts::<Provider>(&[])?;
    let n = usize::from(record.k + record.m);
    let full = record
        .groups
        .saturating_sub(u64::from(!total.is_multiple_of(record.group_len)));
    let last = total - full * record.group_len;
    // The index group is small; its shards cost what a 1-byte group's do at most
    // one billable MiB each, unless the manifest is large.
    let index_len = (scan
        .files
        .iter()
        .map(|f| 90 + f.path.len() as u64)
        .sum::<u64>()
        + 64 * record.groups)
        .max(1);
    let mut escrow: u64 = 0;
    for (count, len) in [
        (full, record.group_len),
        (u64::from(last > 0), last),
        (1, index_len),
    ] {
        if count == 0 {
            continue;
        }
        let shard = cairn_core::dataset::stored_shard_len_for(record.k, record.m, len)
            .map_err(|e| CliError::Refused(e.to_string()))?;
        let max = record.max_price_per_mib.saturating_mul(billable_mib(shard));
        let (found, short) = candidates(&providers, &market.account.params, shard, max, &[]);
        if found.len() < n {
            return Err(CliError::Refused(format!(
                "no provider can take shard of {shard} bytes for all {n} shards of a group: {} can, {} registered, {short}",
                found.len(),
                providers.len()
            )));
        }
        let mut prices: Vec<u64> = found.iter().map(|c| c.price_per_epoch).collect();
        prices.sort_unstable();
        let group: u64 = prices[..n].iter().fold(0, |a, p| a.saturating_add(*p));
        escrow = escrow.saturating_add(group.saturating_mul(record.epochs).saturating_mul(count));
    }
    let from = market.token_account_of(&client.pubkey());
    let balance = ctx.token_balance(&from)?;
    if balance < escrow {
        return Err(CliError::Refused(format!(
            "insufficient funds: {} in {} group(s) of {} + {} shards for {} epochs needs an escrow of at least {}, token account {from} holds {} ({} short)",
            crate::units::human_bytes(total),
            record.groups + 1,
            record.k,
            record.m,
            record.epochs,
            market.tokens(escrow),
            market.tokens(balance),
            market.tokens(escrow - balance)
        )));
    }
    Ok(())
}

/// Places one coded group: its record (made from `prepared` unless one is
/// already in `dir`), proposals, transfers and acceptance, replacing failing
/// providers; then deletes its shard files. Errors if a shard stays unplaced.
#[allow(clippy::too_many_arguments)]
fn place_group(
    ctx: &Ctx,
    market: &MarketView,
    client: &Keypair,
    record: &mut DatasetUpload,
    group: u32,
    dir: &Path,
    prepared: Prepared,
    connector: &dyn Connector,
    progress: &Progress,
    accept_timeout: Duration,
) -> Result<usize, CliError> {
    let id = prepared.group.id().to_string();
    let mut state = match UploadState::load(dir)? {
        // The same group coded again after an interruption: its record goes on.
        Some(s) if s.group_id == id => s,
        _ => {
            let bytes = prepared.shards[0].bytes;
            let mut s = UploadState::new(
                record.dir.clone(),
                id,
                group,
                record.salt,
                record.client.clone(),
                record.k,
                record.m,
                record.epochs,
                record.max_price_per_mib.saturating_mul(billable_mib(bytes)),
                prepared.shards,
            );
            s.avoid = record.avoid.clone();
            s.save(dir)?;
            s
        }
    };
    let replaced = place(
        ctx,
        market,
        client,
        &mut state,
        dir,
        connector,
        progress,
        accept_timeout,
    );
    // Whoever failed a shard here is not chosen for the next groups.
    for failed in state.shards.iter().flat_map(|s| &s.failed) {
        if !record.avoid.contains(failed) {
            record.avoid.push(failed.clone());
        }
    }
    let replaced = replaced?;
    if let Some(s) = state.shards.iter().find(|s| s.stage != Stage::Accepted) {
        return Err(CliError::Refused(format!(
            "shard {} could not be placed after trying {} providers; run `cairn upload --resume {}` to try again",
            s.local.index,
            s.failed.len(),
            record.dir.display()
        )));
    }
    for s in &state.shards {
        let _ = std::fs::remove_file(&s.local.path);
    }
    Ok(replaced)
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
    let group_id = cairn_core::DatasetId::from_str(&state.group_id).expect("id written by cairn");
    let mut replaced = 0;
    for _round in 0..PROVIDERS_PER_SHARD {
        propose_missing(ctx, market, client, state, work, group_id.0)?;
        let outcomes = send_all(ctx, state, connector, client, progress)?;
        for (i, outcome) in outcomes {
            match outcome {
                Ok(()) => state.shards[i].stage = Stage::Sent,
                Err(e) => {
                    progress.note(&format!(
                        "shard {i}: provider {} failed ({e}); choosing another",
                        state.shards[i].provider.as_deref().unwrap_or("?")
                    ));
                    release(ctx, market, client, state, i, group_id.0)?;
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
            let deal = state.shards[i].deal(&client.pubkey(), &group_id.0);
            if wait_accepted(ctx, &deal, deadline)? {
                state.shards[i].stage = Stage::Accepted;
            } else {
                progress.note(&format!(
                    "shard {i}: the provider did not accept its deal in time; choosing another"
                ));
                release(ctx, market, client, state, i, group_id.0)?;
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

/// Proposes a deal for every shard that has none, each with a provider not
/// used by another shard of the dataset, not failed for this one and not one
/// the record avoids.
fn propose_missing(
    ctx: &Ctx,
    market: &MarketView,
    client: &Keypair,
    state: &mut UploadState,
    work: &Path,
    group_id: [u8; 32],
) -> Result<(), CliError> {
    if state.shards.iter().all(|s| s.stage != Stage::Prepared) {
        return Ok(());
    }
    adopt_landed_proposals(ctx, market, client, state, work, group_id)?;
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
                dataset_id: cairn_chain::dataset_id(&client.pubkey(), &state.nonce),
                dataset_nonce: state.nonce,
                group_id,
                group: state.group,
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
    group_id: [u8; 32],
) -> Result<(), CliError> {
    let on_chain = ctx.program_accounts::<Deal>(&[
        (cairn_chain::layout::DEAL_CLIENT, client.pubkey().as_ref()),
        (cairn_chain::layout::DEAL_GROUP_ID, group_id.as_ref()),
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
    group_id: [u8; 32],
) -> Result<(), CliError> {
    let shard = &mut state.shards[i];
    let address = shard.deal(&client.pubkey(), &group_id);
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
    let group_id = cairn_core::DatasetId::from_str(&state.group_id).expect("id written by cairn");
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
        let deal = s.deal(&client.pubkey(), &group_id.0);
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
