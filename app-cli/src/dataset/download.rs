//! `cairn download ID -o DIR [--file PATH]`: find the dataset's deals on chain,
//! rebuild its manifest from the shards' trailers, and read verified bytes
//! from any `k` providers, routing around dead or lying ones.
use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anchor_lang::prelude::Pubkey;
use cairn_core::dataset::{recover_manifest, trailer_range, Trailer};
use cairn_core::erasure::UnitSource;
use cairn_core::manifest::fs::Unpacker;
use cairn_core::{DatasetId, Manifest};
use clap::Args;
use serde::Serialize;
use solana_signer::Signer;
use storage_market::state::{Deal, DealState, Provider};

use crate::context::Ctx;
use crate::dataset::onchain;
use crate::dataset::transport::{Connector, Node};
use crate::error::CliError;
use crate::output::{Bar, Progress};

#[derive(Args, Debug)]
pub struct DownloadArgs {
    /// Dataset id (64 hex characters).
    pub dataset: String,
    /// Output directory (created; must be empty if it exists).
    #[arg(short, long)]
    pub out: PathBuf,
    /// Download only this file (its path inside the dataset).
    #[arg(long)]
    pub file: Option<String>,
    /// The client whose deals hold the dataset. Default: the keypair's if it
    /// has them, else the client with the most active shards.
    #[arg(long)]
    pub client: Option<Pubkey>,
}

/// One shard's provider as the download saw it.
#[derive(Serialize, Debug, Clone)]
pub struct ProviderUsed {
    pub shard_index: u16,
    pub provider: String,
    pub endpoint: String,
    /// `ok`, `unreachable: …`, `missing shard`, or `bad data` (served bytes
    /// that failed their checksum).
    pub status: String,
    pub connect_ms: Option<u64>,
}

#[derive(Serialize, Debug)]
pub struct DownloadReport {
    pub dataset_id: String,
    pub out: PathBuf,
    pub files: usize,
    pub bytes: u64,
    pub bytes_fetched: u64,
    pub seconds: f64,
    pub providers: Vec<ProviderUsed>,
}

impl fmt::Display for DownloadReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "downloaded {} file(s), {} into {} in {:.1} s ({} fetched, every unit verified)",
            self.files,
            crate::units::human_bytes(self.bytes),
            self.out.display(),
            self.seconds,
            crate::units::human_bytes(self.bytes_fetched)
        )?;
        for p in &self.providers {
            if p.status != "ok" {
                writeln!(
                    f,
                    "  shard {} provider {} ({}): {}",
                    p.shard_index, p.provider, p.endpoint, p.status
                )?;
            }
        }
        Ok(())
    }
}

/// A shard source reading units from a node (what the decoder pulls from).
pub(crate) struct RemoteShard<'a> {
    pub node: &'a dyn Node,
    pub deal: Pubkey,
    pub bar: &'a Bar,
}

impl UnitSource for RemoteShard<'_> {
    fn read_unit(&mut self, stripe: u64, unit: &mut [u8]) -> std::io::Result<()> {
        let offset = stripe * unit.len() as u64;
        let bytes = self
            .node
            .get(&self.deal, offset, unit.len() as u64)
            .map_err(|e| std::io::Error::other(e.message))?;
        if bytes.len() != unit.len() {
            return Err(std::io::Error::other(format!(
                "{} bytes for a {}-byte unit",
                bytes.len(),
                unit.len()
            )));
        }
        unit.copy_from_slice(&bytes);
        self.bar.inc(bytes.len() as u64);
        Ok(())
    }
}

/// One shard's deal and, once connected, its provider's node.
pub(crate) struct Shard {
    pub index: u16,
    pub deal: Pubkey,
    pub deal_bytes: u64,
    pub provider: Pubkey,
    pub operator: Pubkey,
    pub endpoint: String,
    pub node: Option<Box<dyn Node>>,
    /// `ok`, or why the shard cannot be read.
    pub status: String,
    pub connect_ms: Option<u64>,
}

pub fn download(
    ctx: &Ctx,
    a: DownloadArgs,
    connector: &dyn Connector,
    progress: &Progress,
) -> Result<DownloadReport, CliError> {
    let started = Instant::now();
    let id = crate::context::parse_dataset_id(&a.dataset)?;
    check_out_dir(&a.out)?;
    let mut shards = find_shards(ctx, &id, a.client)?;
    connect_all(connector, &mut shards);
    let mut shards = one_per_index(shards);
    // Fastest first: the trailer and manifest come from them.
    shards.sort_by_key(|s| (s.node.is_none(), s.connect_ms, s.index));
    let available = shards.iter().filter(|s| s.node.is_some()).count();
    let manifest = read_manifest(&id, &shards)?;
    let k = manifest.params().k();
    if available < k {
        return Err(CliError::Refused(format!(
            "dataset {id}: only {available} of its {} shards are reachable, {k} needed; {}",
            shards.len(),
            describe(&shards)
        )));
    }
    shards.sort_by_key(|s| s.index);

    let (range, files) = match &a.file {
        Some(path) => {
            let entry = manifest.file(path).ok_or_else(|| {
                CliError::Refused(format!(
                    "dataset {id} has no file {path:?} ({} files)",
                    manifest.files().len()
                ))
            })?;
            (entry.range(), 1)
        }
        None => (0..manifest.total_len(), manifest.files().len()),
    };
    let bar = progress.bar("download", range.end - range.start);
    let mut sources: Vec<Option<RemoteShard>> = (0..manifest.params().n()).map(|_| None).collect();
    for s in &shards {
        if let Some(node) = &s.node {
            sources[usize::from(s.index)] = Some(RemoteShard {
                node: node.as_ref(),
                deal: s.deal,
                bar: &bar,
            });
        }
    }
    let mut decoder = manifest
        .decoder(sources)
        .map_err(|e| CliError::Refused(format!("dataset {id}: {e}")))?;
    let partial = partial_dir(&a.out)?;
    let written = match &a.file {
        Some(path) => write_one_file(&manifest, path, &mut decoder, &partial),
        None => write_all_files(&manifest, &mut decoder, &partial),
    };
    let report = decoder.report().clone();
    drop(decoder);
    bar.finish(written.is_ok());
    for bad in report.bad_shards() {
        if let Some(s) = shards.iter_mut().find(|s| usize::from(s.index) == bad) {
            s.status = if report.corrupt_units.iter().any(|u| u.shard == bad) {
                "bad data: served bytes that failed their checksum".into()
            } else {
                let why = report
                    .failed_reads
                    .iter()
                    .find(|f| f.at.shard == bad)
                    .map(|f| f.error.clone())
                    .unwrap_or_default();
                format!("failed mid-download: {why}")
            };
            progress.note(&format!(
                "shard {} provider {} ({}): {}",
                s.index, s.provider, s.endpoint, s.status
            ));
        }
    }
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&partial);
        return Err(CliError::Refused(format!(
            "dataset {id}: {e}; {}",
            describe(&shards)
        )));
    }
    std::fs::rename(&partial, &a.out).map_err(CliError::io(&a.out))?;
    Ok(DownloadReport {
        dataset_id: id.to_string(),
        out: a.out,
        files,
        bytes: range.end - range.start,
        bytes_fetched: report.bytes_read,
        seconds: started.elapsed().as_secs_f64(),
        providers: shards
            .iter()
            .map(|s| ProviderUsed {
                shard_index: s.index,
                provider: s.provider.to_string(),
                endpoint: s.endpoint.clone(),
                status: s.status.clone(),
                connect_ms: s.connect_ms,
            })
            .collect(),
    })
}

pub(crate) fn describe(shards: &[Shard]) -> String {
    shards
        .iter()
        .filter(|s| s.status != "ok")
        .map(|s| format!("shard {} ({}): {}", s.index, s.endpoint, s.status))
        .collect::<Vec<_>>()
        .join("; ")
}

/// The output directory must not exist or be empty.
fn check_out_dir(out: &Path) -> Result<(), CliError> {
    match std::fs::read_dir(out) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(CliError::bad(
                    "--out",
                    format!("{} exists and is not empty", out.display()),
                ));
            }
            std::fs::remove_dir(out).map_err(CliError::io(out))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(CliError::Io {
            path: out.to_path_buf(),
            reason: e.to_string(),
        }),
    }
}

/// A sibling of `out` to write into, renamed to `out` only when every file
/// is complete and verified.
fn partial_dir(out: &Path) -> Result<PathBuf, CliError> {
    let name = out.file_name().ok_or_else(|| {
        CliError::bad("--out", format!("{} has no directory name", out.display()))
    })?;
    let mut partial = name.to_os_string();
    partial.push(".cairn-partial");
    let partial = out.with_file_name(partial);
    let _ = std::fs::remove_dir_all(&partial);
    std::fs::create_dir_all(&partial).map_err(CliError::io(&partial))?;
    Ok(partial)
}

fn write_all_files(
    manifest: &Manifest,
    decoder: &mut cairn_core::erasure::Decoder<'_, RemoteShard<'_>>,
    dest: &Path,
) -> Result<(), String> {
    let mut unpacker = Unpacker::new(manifest, dest).map_err(|e| e.to_string())?;
    decoder.read_all(&mut unpacker).map_err(|e| e.to_string())?;
    unpacker.finish().map_err(|e| e.to_string())
}

fn write_one_file(
    manifest: &Manifest,
    path: &str,
    decoder: &mut cairn_core::erasure::Decoder<'_, RemoteShard<'_>>,
    dest: &Path,
) -> Result<(), String> {
    let entry = manifest.file(path).expect("checked above");
    let target = dest.join(path);
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent).map_err(|e| e.to_string())?;
    }
    let mut file = HashingFile {
        file: std::io::BufWriter::new(std::fs::File::create(&target).map_err(|e| e.to_string())?),
        hasher: blake3::Hasher::new(),
    };
    decoder
        .read_range(entry.range(), &mut file)
        .map_err(|e| e.to_string())?;
    file.file.flush().map_err(|e| e.to_string())?;
    if *file.hasher.finalize().as_bytes() != entry.blake3 {
        return Err(format!("{path}: BLAKE3 does not match the manifest"));
    }
    Ok(())
}

struct HashingFile {
    file: std::io::BufWriter<std::fs::File>,
    hasher: blake3::Hasher,
}

impl Write for HashingFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.write_all(buf)?;
        self.hasher.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.flush()
    }
}

/// The dataset's deals with each provider's endpoint: for each shard index its
/// live deal first, then its earlier placements (whose providers may still hold
/// the shard), newest first.
fn find_shards(ctx: &Ctx, id: &DatasetId, client: Option<Pubkey>) -> Result<Vec<Shard>, CliError> {
    let deals =
        ctx.program_accounts::<Deal>(&[(cairn_chain::layout::DEAL_DATASET_ID, id.as_bytes())])?;
    let mut by_client: BTreeMap<Pubkey, Vec<(Pubkey, Deal)>> = BTreeMap::new();
    for (address, deal) in deals {
        if deal.state != DealState::Cancelled {
            by_client
                .entry(deal.client)
                .or_default()
                .push((address, deal));
        }
    }
    let own = ctx.payer().ok().map(|k| k.pubkey());
    let chosen = client
        .or(own.filter(|o| by_client.contains_key(o)))
        .or_else(|| {
            by_client
                .iter()
                .max_by_key(|(_, deals)| {
                    deals
                        .iter()
                        .filter(|(_, d)| d.state == DealState::Active)
                        .count()
                })
                .map(|(c, _)| *c)
        });
    let Some(mut deals) = chosen.and_then(|c| by_client.remove(&c)) else {
        return Err(CliError::Refused(format!(
            "unknown dataset {id}: no deals hold it on {}",
            ctx.url
        )));
    };
    let live: Vec<Pubkey> = onchain::live_deals(&deals)
        .values()
        .map(|(address, _)| *address)
        .collect();
    deals.sort_by_key(|(address, d)| {
        (
            d.shard_index,
            !live.contains(address),
            std::cmp::Reverse(d.generation),
        )
    });
    deals
        .into_iter()
        .map(|(address, deal)| shard_of(ctx, address, &deal))
        .collect()
}

/// One shard per index: the first of its deals (in preference order) whose node
/// holds it, else the first.
fn one_per_index(shards: Vec<Shard>) -> Vec<Shard> {
    let mut out: Vec<Shard> = Vec::new();
    for s in shards {
        match out.last_mut() {
            Some(last) if last.index == s.index => {
                if last.node.is_none() && s.node.is_some() {
                    *last = s;
                }
            }
            _ => out.push(s),
        }
    }
    out
}

/// Shard `deal` (at `address`) with its provider's endpoint, not connected.
pub(crate) fn shard_of(ctx: &Ctx, address: Pubkey, deal: &Deal) -> Result<Shard, CliError> {
    let provider: Option<Provider> = ctx.fetch("provider", &deal.provider)?;
    let (endpoint, operator) = match &provider {
        Some(p) => (p.endpoint.clone(), p.operator),
        None => ("(deregistered)".to_string(), Pubkey::default()),
    };
    Ok(Shard {
        index: deal.shard_index,
        deal: address,
        deal_bytes: deal.shard_bytes,
        provider: deal.provider,
        operator,
        endpoint,
        node: None,
        status: if provider.is_some() {
            "ok".into()
        } else {
            "provider deregistered".into()
        },
        connect_ms: None,
    })
}

/// Connects to every provider in parallel; a node that is unreachable or does
/// not hold its complete shard is left out.
pub(crate) fn connect_all(connector: &dyn Connector, shards: &mut [Shard]) {
    std::thread::scope(|scope| {
        let handles: Vec<_> = shards
            .iter_mut()
            .filter(|s| s.status == "ok")
            .map(|s| {
                scope.spawn(move || {
                    let t = Instant::now();
                    let result = connector
                        .connect(&s.endpoint, &s.operator)
                        .and_then(|node| node.held(&s.deal).map(|held| (node, held)));
                    match result {
                        Ok((node, held)) if held.complete => {
                            s.connect_ms = Some(t.elapsed().as_millis() as u64);
                            s.node = Some(node);
                        }
                        Ok((_, held)) => {
                            s.status = format!(
                                "missing shard (holds {} of {} bytes)",
                                held.received, s.deal_bytes
                            )
                        }
                        Err(e) => s.status = format!("unreachable: {e}"),
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("connect thread");
        }
    });
}

/// Reads a trailer from the fastest node that gives a valid one, then the
/// manifest units of every reachable node, and rebuilds the manifest.
pub(crate) fn read_manifest(id: &DatasetId, shards: &[Shard]) -> Result<Manifest, CliError> {
    let mut trailer = None;
    for s in shards.iter().filter(|s| s.node.is_some()) {
        let Some(range) = trailer_range(s.deal_bytes) else {
            continue;
        };
        let node = s.node.as_ref().expect("filtered");
        if let Ok(bytes) = node.get(&s.deal, range.start, range.end - range.start) {
            if let Ok(t) = Trailer::decode(&bytes) {
                if t.stored_len() == s.deal_bytes {
                    trailer = Some(t);
                    break;
                }
            }
        }
    }
    let trailer = trailer.ok_or_else(|| {
        CliError::Refused(format!(
            "dataset {id}: no reachable provider served a valid shard trailer; {}",
            describe(shards)
        ))
    })?;
    let n = usize::from(trailer.k) + usize::from(trailer.m);
    let mut units: Vec<Option<Vec<u8>>> = vec![None; n];
    let range = trailer.manifest_unit_range();
    std::thread::scope(|scope| {
        let handles: Vec<_> = shards
            .iter()
            .filter(|s| s.node.is_some() && usize::from(s.index) < n)
            .map(|s| {
                let range = range.clone();
                scope.spawn(move || {
                    let node = s.node.as_ref().expect("filtered");
                    (
                        s.index,
                        node.get(&s.deal, range.start, range.end - range.start).ok(),
                    )
                })
            })
            .collect();
        for h in handles {
            let (index, unit) = h.join().expect("manifest thread");
            units[usize::from(index)] = unit;
        }
    });
    let (manifest, _) = recover_manifest(id, &trailer, &units)
        .map_err(|e| CliError::Refused(format!("dataset {id}: {e}; {}", describe(shards))))?;
    Ok(manifest)
}
