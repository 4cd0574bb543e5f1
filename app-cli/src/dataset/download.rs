//! `cairn download ID -o DIR [--file PATH [--range A-B]]`: find the index
//! group's deals on chain by the dataset id, rebuild the dataset manifest from
//! them, then read only the data groups that hold the wanted bytes, each from
//! any `k` of its providers, routing around dead or lying ones. Every unit is
//! checked against its BLAKE3.
use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anchor_lang::prelude::Pubkey;
use cairn_core::crypt::DatasetKey;
use cairn_core::dataset::{recover_group, trailer_range, Trailer};
use cairn_core::erasure::{DecodeReport, UnitSource};
use cairn_core::group::{GroupKind, GroupManifest};
use cairn_core::manifest::fs::Unpacker;
use cairn_core::manifest::sealed::{plaintext_files, IndexContent, OpenError, StreamDecryptor};
use cairn_core::{DatasetId, Hash, Manifest};
use clap::Args;
use serde::Serialize;
use storage_market::constants::INDEX_GROUP;
use storage_market::state::{Deal, DealState, Provider};

use crate::commands::key::KeyArg;
use crate::context::Ctx;
use crate::dataset::onchain::{self, DealAt};
use crate::dataset::reader::DatasetReader;
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
    /// With --file: only these bytes of it, `START-END` (end exclusive, e.g.
    /// `1048576-2097152`), written to the file at their own offsets.
    #[arg(long, requires = "file")]
    pub range: Option<String>,
    #[command(flatten)]
    pub key: KeyArg,
}

/// What a read made of one shard's source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceStatus {
    /// Readable (and, after a read, every unit it served verified).
    Ok,
    /// Its provider account is gone.
    Deregistered,
    /// Could not be reached, or refused to say what it holds.
    Unreachable(String),
    /// The node does not hold the complete, verified shard.
    Missing { received: u64, size: u64 },
    /// Served bytes that failed their checksum.
    BadData,
    /// The node says its own stored copy failed its check
    /// (`ErrorCode::CorruptCopy`): the shard needs repair.
    CorruptCopy,
    /// A read failed in the middle of the download.
    Failed(String),
}

/// [`SourceStatus`] without its details, as JSON reports it (`kind`).
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum SourceKind {
    Ok,
    Deregistered,
    Unreachable,
    Missing,
    BadData,
    CorruptCopy,
    Failed,
}

impl SourceStatus {
    pub fn kind(&self) -> SourceKind {
        match self {
            SourceStatus::Ok => SourceKind::Ok,
            SourceStatus::Deregistered => SourceKind::Deregistered,
            SourceStatus::Unreachable(_) => SourceKind::Unreachable,
            SourceStatus::Missing { .. } => SourceKind::Missing,
            SourceStatus::BadData => SourceKind::BadData,
            SourceStatus::CorruptCopy => SourceKind::CorruptCopy,
            SourceStatus::Failed(_) => SourceKind::Failed,
        }
    }

    pub fn is_ok(&self) -> bool {
        *self == SourceStatus::Ok
    }
}

impl fmt::Display for SourceStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SourceStatus::Ok => f.write_str("ok"),
            SourceStatus::Deregistered => f.write_str("provider deregistered"),
            SourceStatus::Unreachable(why) => write!(f, "unreachable: {why}"),
            SourceStatus::Missing { received, size } => {
                write!(f, "missing shard (holds {received} of {size} bytes)")
            }
            SourceStatus::BadData => f.write_str("bad data: served bytes that failed their checksum"),
            SourceStatus::CorruptCopy => f.write_str(
                "corrupt copy: the node says its stored copy failed its check (the shard needs repair)",
            ),
            SourceStatus::Failed(why) => write!(f, "failed mid-download: {why}"),
        }
    }
}

/// One shard's provider as the download saw it.
#[derive(Serialize, Debug, Clone)]
pub struct ProviderUsed {
    /// The data group (absent: the index group).
    pub group: Option<usize>,
    pub shard_index: u16,
    pub provider: String,
    pub endpoint: String,
    /// What became of it: `ok`, `unreachable`, `missing`, `bad_data` (served
    /// bytes that failed their checksum), `corrupt_copy` (the node said its
    /// copy is corrupt), `failed` (mid-download), `deregistered`.
    pub kind: SourceKind,
    /// The same for people, with the details.
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
    /// The data groups read.
    pub groups_read: Vec<usize>,
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
            if p.kind != SourceKind::Ok {
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
    /// Set when the node says its stored copy is corrupt.
    pub corrupt: &'a AtomicBool,
}

impl<'a> RemoteShard<'a> {
    /// Shard `s` (connected) as a source.
    pub(crate) fn of(s: &'a Shard, bar: &'a Bar) -> Option<Self> {
        Some(RemoteShard {
            node: s.node.as_deref()?,
            deal: s.deal,
            bar,
            corrupt: &s.corrupt,
        })
    }
}

impl UnitSource for RemoteShard<'_> {
    fn read_unit(&mut self, stripe: u64, unit: &mut [u8]) -> std::io::Result<()> {
        let offset = stripe * unit.len() as u64;
        let bytes = get_noting(
            self.node,
            &self.deal,
            self.corrupt,
            offset,
            unit.len() as u64,
        )
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
    /// `Ok`, or why the shard cannot be read.
    pub status: SourceStatus,
    pub connect_ms: Option<u64>,
    /// The node answered that its stored copy of the shard is corrupt
    /// (`ErrorCode::CorruptCopy`): read elsewhere; the shard needs repair.
    pub corrupt: AtomicBool,
}

impl Shard {
    pub(crate) fn is_corrupt(&self) -> bool {
        self.corrupt.load(Ordering::Relaxed)
    }
}

/// `node.get`, noting in `corrupt` a node that says its copy is corrupt.
fn get_noting(
    node: &dyn Node,
    deal: &Pubkey,
    corrupt: &AtomicBool,
    offset: u64,
    len: u64,
) -> Result<Vec<u8>, crate::dataset::transport::TransportError> {
    node.get(deal, offset, len).inspect_err(|e| {
        if e.is_corrupt_copy() {
            corrupt.store(true, Ordering::Relaxed);
        }
    })
}

/// A group opened for reading: its manifest and its shards, connected where
/// their node holds them.
pub(crate) struct OpenGroup {
    /// The data group (`None`: the index group).
    pub index: Option<usize>,
    pub id: DatasetId,
    pub group: GroupManifest,
    pub shards: Vec<Shard>,
}

impl OpenGroup {
    /// Connects to the nodes of group `id`'s `deals` (its deals numbered as
    /// group `index`, see [`DatasetDeals::of`]) and rebuilds its manifest.
    /// Deals that do not fit the manifest (a shard index not below its
    /// `k + m`) are left out.
    pub(crate) fn open(
        ctx: &Ctx,
        connector: &dyn Connector,
        index: Option<usize>,
        id: &DatasetId,
        deals: &[DealAt],
    ) -> Result<OpenGroup, CliError> {
        if deals.is_empty() {
            return Err(CliError::Refused(format!(
                "group {id} has no deals on {}",
                ctx.url
            )));
        }
        let mut shards = find_shards(ctx, deals)?;
        connect_all(connector, &mut shards);
        let mut shards = one_per_index(shards);
        // Fastest first: the trailer and manifest come from them.
        shards.sort_by_key(|s| (s.node.is_none(), s.connect_ms, s.index));
        let group = read_manifest(id, &shards)?;
        shards.retain(|s| usize::from(s.index) < group.params().n());
        shards.sort_by_key(|s| s.index);
        let kind = match index {
            Some(_) => GroupKind::Data,
            None => GroupKind::Index,
        };
        if group.kind() != kind || index.is_some_and(|g| group.index() as usize != g) {
            return Err(CliError::Refused(format!(
                "group {id}: its manifest describes {:?} group {}, its deals say {}",
                group.kind(),
                group.index(),
                match index {
                    Some(g) => format!("data group {g}"),
                    None => "the index group".into(),
                }
            )));
        }
        Ok(OpenGroup {
            index,
            id: *id,
            group,
            shards,
        })
    }

    /// Reads the group's content bytes `range` into `out`, every unit
    /// verified, and notes shards that failed.
    pub(crate) fn read(
        &mut self,
        range: std::ops::Range<u64>,
        bar: &Bar,
        out: &mut dyn Write,
        progress: &Progress,
    ) -> Result<DecodeReport, CliError> {
        let k = self.group.params().k();
        let available = self.shards.iter().filter(|s| s.node.is_some()).count();
        if available < k {
            return Err(CliError::Refused(format!(
                "{}: only {available} of its {} shards are reachable, {k} needed; {}",
                self.name(),
                self.shards.len(),
                describe(&self.shards)
            )));
        }
        // `open` kept only shards with an index below k + m.
        let mut sources: Vec<Option<RemoteShard>> =
            (0..self.group.params().n()).map(|_| None).collect();
        for s in &self.shards {
            sources[usize::from(s.index)] = RemoteShard::of(s, bar);
        }
        let mut decoder = self
            .group
            .decoder(sources)
            .map_err(|e| CliError::Refused(format!("{}: {e}", self.name())))?;
        let read = decoder.read_range(range, out);
        let report = decoder.report().clone();
        drop(decoder);
        let name = self.name();
        for bad in report.bad_shards() {
            if let Some(s) = self.shards.iter_mut().find(|s| usize::from(s.index) == bad) {
                s.status = if s.is_corrupt() {
                    SourceStatus::CorruptCopy
                } else if report.corrupt_units.iter().any(|u| u.shard == bad) {
                    SourceStatus::BadData
                } else {
                    let why = report
                        .failed_reads
                        .iter()
                        .find(|f| f.at.shard == bad)
                        .map(|f| f.error.clone())
                        .unwrap_or_default();
                    SourceStatus::Failed(why)
                };
                progress.note(&format!(
                    "{name} shard {} provider {} ({}): {}",
                    s.index, s.provider, s.endpoint, s.status
                ));
            }
        }
        read.map_err(|e| {
            CliError::Refused(format!("{}: {e}; {}", self.name(), describe(&self.shards)))
        })?;
        Ok(report)
    }

    /// Each shard's provider as this download saw it.
    pub(crate) fn providers_used(&self) -> impl Iterator<Item = ProviderUsed> + '_ {
        self.shards.iter().map(|s| ProviderUsed {
            group: self.index,
            shard_index: s.index,
            provider: s.provider.to_string(),
            endpoint: s.endpoint.clone(),
            kind: s.status.kind(),
            status: s.status.to_string(),
            connect_ms: s.connect_ms,
        })
    }

    /// "group 3" or "the index group", for messages.
    pub(crate) fn name(&self) -> String {
        match self.index {
            Some(g) => format!("group {g} ({})", self.id),
            None => format!("the index group ({})", self.id),
        }
    }
}

/// A dataset's manifest as a reader needs it, and for a private dataset the
/// key and salt that decrypt its files.
pub(crate) struct Readable {
    pub manifest: Manifest,
    pub private: Option<(DatasetKey, Hash)>,
}

impl Readable {
    /// A file's plaintext length (its manifest entry counts stored bytes in
    /// a private dataset).
    pub(crate) fn plain_len(&self, entry: &cairn_core::FileEntry) -> u64 {
        match self.private {
            Some(_) => cairn_core::crypt::plain_len(entry.size).unwrap_or(entry.size),
            None => entry.size,
        }
    }
}

/// The manifest of dataset `id` from its index group content: in the clear,
/// or opened with the key in `key_file` (the index group's salt is `salt`).
pub(crate) fn readable(
    id: &DatasetId,
    content: IndexContent,
    salt: &Hash,
    key_file: &Path,
) -> Result<Readable, CliError> {
    let sealed = match content {
        IndexContent::Plain(manifest) => {
            return Ok(Readable {
                manifest,
                private: None,
            })
        }
        IndexContent::Sealed(sealed) => sealed,
    };
    let Some(key) = crate::context::read_dataset_key(key_file)? else {
        return Err(CliError::DatasetKeyRequired {
            dataset: id.to_string(),
            key_file: key_file.to_path_buf(),
        });
    };
    match sealed.open(&key, salt) {
        Ok(manifest) => {
            if let Some(bad) = manifest
                .files()
                .iter()
                .find(|f| cairn_core::crypt::plain_len(f.size).is_err())
            {
                return Err(CliError::ManifestTampered {
                    dataset: id.to_string(),
                    reason: format!("{:?} has no valid encrypted size", bad.path),
                });
            }
            Ok(Readable {
                manifest,
                private: Some((key, *salt)),
            })
        }
        Err(OpenError::WrongKey { expected, given }) => Err(CliError::WrongDatasetKey {
            dataset: id.to_string(),
            key_file: key_file.to_path_buf(),
            expected: expected.to_string(),
            given: given.to_string(),
        }),
        Err(e @ (OpenError::Tampered | OpenError::Invalid(_))) => Err(CliError::ManifestTampered {
            dataset: id.to_string(),
            reason: e.to_string(),
        }),
    }
}

/// Opens dataset `id`: its deals, its index group, and the content it holds
/// (a manifest, or a private dataset's sealed one: see [`readable`]).
/// The index group is the one whose salt (the dataset's nonce) and client
/// derive `id` (`cairn_chain::dataset_id`); the deals used are that client's.
pub(crate) fn open_dataset(
    ctx: &Ctx,
    connector: &dyn Connector,
    id: &DatasetId,
    progress: &Progress,
) -> Result<(IndexContent, OpenGroup, DatasetDeals), CliError> {
    let mut why = Vec::new();
    for deals in DatasetDeals::load(ctx, id)? {
        for index_id in deals.index_groups() {
            match open_index(ctx, connector, id, &deals, &index_id, progress) {
                Ok((manifest, index)) => return Ok((manifest, index, deals)),
                Err(e) => why.push(e),
            }
        }
    }
    match why.len() {
        0 => Err(CliError::Refused(format!(
            "dataset {id} has no index group on chain: its upload did not finish"
        ))),
        1 => Err(why.remove(0)),
        _ => Err(CliError::Refused(format!(
            "dataset {id}: no index group on chain opens: {}",
            why.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; ")
        ))),
    }
}

/// Opens `index_id` as dataset `id`'s index group of `deals.client` and
/// reads the dataset manifest from it.
fn open_index(
    ctx: &Ctx,
    connector: &dyn Connector,
    id: &DatasetId,
    deals: &DatasetDeals,
    index_id: &DatasetId,
    progress: &Progress,
) -> Result<(IndexContent, OpenGroup), CliError> {
    let mut index = OpenGroup::open(ctx, connector, None, index_id, &deals.of(index_id, None))?;
    if cairn_chain::dataset_id(&deals.client, index.group.salt()) != id.0 {
        return Err(CliError::Refused(format!(
            "group {index_id}, filed as dataset {id}'s index by client {}, is not its index: \
             that client and the group's nonce derive another dataset id",
            deals.client
        )));
    }
    let bar = progress.bar("manifest", index.group.len());
    let mut content = Vec::new();
    index.read(0..index.group.len(), &bar, &mut content, progress)?;
    bar.finish(true);
    let manifest = IndexContent::decode(&content)
        .map_err(|e| CliError::Refused(format!("dataset {id}: its manifest is invalid: {e}")))?;
    Ok((manifest, index))
}

/// `START-END` (end exclusive) within a file of `size` bytes.
fn parse_range(text: &str, size: u64) -> Result<std::ops::Range<u64>, CliError> {
    let bad = |why: String| CliError::bad("--range", why);
    let (a, b) = text
        .split_once('-')
        .ok_or_else(|| bad(format!("{text:?} is not START-END")))?;
    let start: u64 = a
        .trim()
        .parse()
        .map_err(|_| bad(format!("{a:?} is not a byte offset")))?;
    let end: u64 = b
        .trim()
        .parse()
        .map_err(|_| bad(format!("{b:?} is not a byte offset")))?;
    if start >= end || end > size {
        return Err(bad(format!(
            "{start}-{end} is not a non-empty range within the file's {size} bytes"
        )));
    }
    Ok(start..end)
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
    let reader = DatasetReader::open(ctx, connector, &id, &a.key.key, progress)?.close_behind();
    let manifest = reader.manifest();
    // The file (if one), and the bytes of it (or of the packed stream) to read.
    let entry = match &a.file {
        Some(path) => Some(manifest.file(path).ok_or_else(|| {
            CliError::Refused(format!(
                "dataset {id} has no file {path:?} ({} files)",
                manifest.files().len()
            ))
        })?),
        None => None,
    };
    // The file's bytes to write (plaintext), or the whole stored stream.
    let (range, files) = match entry {
        Some(entry) => match &a.range {
            Some(r) => (parse_range(r, reader.file_len(entry))?, 1),
            None => (0..reader.file_len(entry), 1),
        },
        None => (0..manifest.total_len(), manifest.files().len()),
    };
    let (stored, bytes) = match entry {
        Some(entry) => (
            reader.stored_range(entry, range.clone()),
            range.end - range.start,
        ),
        None => (
            range.clone(),
            manifest.files().iter().map(|f| reader.file_len(f)).sum(),
        ),
    };
    let groups = manifest.groups_for(stored.clone());
    let bar = progress.bar("download", stored.end - stored.start);
    let partial = partial_dir(&a.out)?;
    let mut fetched = 0;
    let written = (|| -> Result<(), CliError> {
        let mut out: Box<dyn WritePacked + '_> = match (entry, &a.range) {
            (Some(entry), None) => Box::new(OneFile::create(&partial, &entry.path, entry.blake3)?),
            (Some(entry), Some(_)) => Box::new(OneFile::create_unchecked(
                &partial,
                &entry.path,
                range.start,
            )?),
            (None, _) => {
                let unpacker = match reader.private() {
                    Some(_) => {
                        let files = plaintext_files(manifest).expect("checked when opened");
                        let total = files.iter().map(|f| f.size).sum();
                        Unpacker::of_files(files, manifest.dirs().to_vec(), total, &partial)
                    }
                    None => Unpacker::new(manifest, &partial),
                };
                let all = Box::new(UnpackAll(Some(
                    unpacker.map_err(|e| CliError::Refused(e.to_string()))?,
                )));
                match reader.private() {
                    // The whole stored stream decrypts file after file.
                    Some((key, salt)) => Box::new(DecryptAll {
                        dataset: id.to_string(),
                        decrypt: Some(StreamDecryptor::new(manifest, key.clone(), *salt)),
                        inner: all,
                        plain: Vec::new(),
                    }),
                    None => all,
                }
            }
        };
        let mut sink = |bytes: &[u8]| out.write_packed(bytes);
        let stats = match entry {
            Some(entry) => reader.read_file(entry, range.clone(), &mut sink, &bar, progress)?,
            None => reader.read_packed(range.clone(), &mut sink, &bar, progress)?,
        };
        fetched = stats.bytes_fetched;
        out.finish()
    })();
    bar.finish(written.is_ok());
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(&partial);
        return Err(e);
    }
    std::fs::rename(&partial, &a.out).map_err(CliError::io(&a.out))?;
    Ok(DownloadReport {
        dataset_id: id.to_string(),
        out: a.out,
        files,
        bytes,
        bytes_fetched: fetched,
        seconds: started.elapsed().as_secs_f64(),
        groups_read: groups.collect(),
        providers: reader.providers_used(),
    })
}

/// Where downloaded packed bytes go: every file, one file, or part of one.
trait WritePacked {
    fn write_packed(&mut self, buf: &[u8]) -> Result<(), CliError>;
    /// After the last byte: checks and closes.
    fn finish(&mut self) -> Result<(), CliError>;
}

/// Decrypts a private dataset's whole stored stream, then hands the
/// plaintext to `inner`.
struct DecryptAll<'a> {
    dataset: String,
    decrypt: Option<StreamDecryptor>,
    inner: Box<dyn WritePacked + 'a>,
    plain: Vec<u8>,
}

impl WritePacked for DecryptAll<'_> {
    fn write_packed(&mut self, buf: &[u8]) -> Result<(), CliError> {
        self.plain.clear();
        let decrypt = self.decrypt.as_mut().expect("not finished");
        decrypt
            .push(buf, &mut self.plain)
            .map_err(|e| decrypt_failed(&self.dataset, "", e))?;
        self.inner.write_packed(&self.plain)
    }

    fn finish(&mut self) -> Result<(), CliError> {
        let decrypt = self.decrypt.take().expect("finished once");
        decrypt
            .finish()
            .map_err(|e| decrypt_failed(&self.dataset, "", e))?;
        self.inner.finish()
    }
}

/// A private dataset's stored bytes that did not decrypt (`path` empty:
/// the whole stream).
pub(crate) fn decrypt_failed(
    dataset: &str,
    path: &str,
    e: cairn_core::crypt::CryptError,
) -> CliError {
    CliError::Decrypt {
        dataset: dataset.to_string(),
        path: path.to_string(),
        reason: e.to_string(),
    }
}

/// Every file, unpacked as its bytes arrive; each checked against its BLAKE3.
struct UnpackAll(Option<Unpacker>);

impl WritePacked for UnpackAll {
    fn write_packed(&mut self, buf: &[u8]) -> Result<(), CliError> {
        self.0
            .as_mut()
            .expect("not finished")
            .write_packed(buf)
            .map_err(|e| CliError::Refused(e.to_string()))
    }

    fn finish(&mut self) -> Result<(), CliError> {
        self.0
            .take()
            .expect("finished once")
            .finish()
            .map_err(|e| CliError::Refused(e.to_string()))
    }
}

/// One file (or a range of it, written at its own offset), hashed as it
/// arrives when it is whole.
struct OneFile {
    path: String,
    file: std::io::BufWriter<std::fs::File>,
    hasher: Option<(blake3::Hasher, [u8; 32])>,
}

impl OneFile {
    fn open(dest: &Path, path: &str) -> Result<std::fs::File, CliError> {
        let target = dest.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent).map_err(CliError::io(parent))?;
        }
        std::fs::File::create(&target).map_err(CliError::io(&target))
    }

    fn create(dest: &Path, path: &str, blake3: [u8; 32]) -> Result<Self, CliError> {
        Ok(OneFile {
            path: path.into(),
            file: std::io::BufWriter::new(Self::open(dest, path)?),
            hasher: Some((blake3::Hasher::new(), blake3)),
        })
    }

    fn create_unchecked(dest: &Path, path: &str, at: u64) -> Result<Self, CliError> {
        use std::io::Seek;
        let mut file = Self::open(dest, path)?;
        file.seek(std::io::SeekFrom::Start(at))
            .map_err(CliError::io(&dest.join(path)))?;
        Ok(OneFile {
            path: path.into(),
            file: std::io::BufWriter::new(file),
            hasher: None,
        })
    }
}

impl WritePacked for OneFile {
    fn write_packed(&mut self, buf: &[u8]) -> Result<(), CliError> {
        self.file
            .write_all(buf)
            .map_err(|e| CliError::Refused(format!("{}: {e}", self.path)))?;
        if let Some((h, _)) = &mut self.hasher {
            h.update(buf);
        }
        Ok(())
    }

    fn finish(&mut self) -> Result<(), CliError> {
        self.file
            .flush()
            .map_err(|e| CliError::Refused(format!("{}: {e}", self.path)))?;
        if let Some((h, want)) = &self.hasher {
            if *h.finalize().as_bytes() != *want {
                return Err(CliError::Refused(format!(
                    "{}: BLAKE3 does not match the manifest",
                    self.path
                )));
            }
        }
        Ok(())
    }
}

pub(crate) fn describe(shards: &[Shard]) -> String {
    shards
        .iter()
        .filter(|s| !s.status.is_ok())
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

/// One client's deals of a dataset, by group id. The program files deals of
/// dataset `d` only for a client and nonce that derive `d`, so every deal of a
/// dataset is its client's; [`open_dataset`] checks that against the nonce
/// its index group carries, and uses only that client's deals.
pub(crate) struct DatasetDeals {
    pub client: Pubkey,
    pub groups: BTreeMap<[u8; 32], Vec<DealAt>>,
}

impl DatasetDeals {
    /// Every deal filed under dataset id `id`, one set per client.
    pub(crate) fn load(ctx: &Ctx, id: &DatasetId) -> Result<Vec<DatasetDeals>, CliError> {
        let deals =
            ctx.program_accounts::<Deal>(&[(cairn_chain::layout::DEAL_DATASET_ID, id.as_bytes())])?;
        if deals.is_empty() {
            return Err(CliError::UnknownDataset {
                id: id.to_string(),
                url: ctx.url.clone(),
            });
        }
        let mut by_client: BTreeMap<Pubkey, BTreeMap<[u8; 32], Vec<DealAt>>> = BTreeMap::new();
        for (address, deal) in deals {
            by_client
                .entry(deal.client)
                .or_default()
                .entry(deal.group_id)
                .or_default()
                .push((address, deal));
        }
        Ok(by_client
            .into_iter()
            .map(|(client, groups)| DatasetDeals { client, groups })
            .collect())
    }

    /// The ids of the groups filed as the index group (numbered
    /// `INDEX_GROUP`), those with the most deals not cancelled first (an
    /// upload proposes one index group).
    pub(crate) fn index_groups(&self) -> Vec<DatasetId> {
        let live = |deals: &[DealAt]| {
            deals
                .iter()
                .filter(|(_, d)| d.group == INDEX_GROUP && d.state != DealState::Cancelled)
                .count()
        };
        let mut found: Vec<(&[u8; 32], usize)> = self
            .groups
            .iter()
            .filter(|(_, deals)| deals.iter().any(|(_, d)| d.group == INDEX_GROUP))
            .map(|(g, deals)| (g, live(deals)))
            .collect();
        found.sort_by_key(|(_, live)| std::cmp::Reverse(*live));
        found.into_iter().map(|(g, _)| DatasetId(*g)).collect()
    }

    /// Group `group`'s deals filed as data group `number` (`None`: as the
    /// index group); none if the chain has no such deal.
    pub(crate) fn of(&self, group: &DatasetId, number: Option<usize>) -> Vec<DealAt> {
        let number = number.map_or(INDEX_GROUP, |g| g as u32);
        self.groups
            .get(&group.0)
            .into_iter()
            .flatten()
            .filter(|(_, d)| d.group == number)
            .cloned()
            .collect()
    }
}

/// A group's shards from its deals, with each provider's endpoint: for each
/// shard index its live deal first, then its earlier placements (whose
/// providers may still hold the shard), newest first.
fn find_shards(ctx: &Ctx, deals: &[DealAt]) -> Result<Vec<Shard>, CliError> {
    let mut deals: Vec<DealAt> = deals
        .iter()
        .filter(|(_, d)| d.state != DealState::Cancelled)
        .cloned()
        .collect();
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
            SourceStatus::Ok
        } else {
            SourceStatus::Deregistered
        },
        connect_ms: None,
        corrupt: AtomicBool::new(false),
    })
}

/// Connects to every provider in parallel; a node that is unreachable or does
/// not hold its complete shard is left out.
pub(crate) fn connect_all(connector: &dyn Connector, shards: &mut [Shard]) {
    std::thread::scope(|scope| {
        let handles: Vec<_> = shards
            .iter_mut()
            .filter(|s| s.status.is_ok())
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
                            s.status = SourceStatus::Missing {
                                received: held.received,
                                size: s.deal_bytes,
                            }
                        }
                        Err(e) if e.is_corrupt_copy() => {
                            s.corrupt.store(true, Ordering::Relaxed);
                            s.status = SourceStatus::CorruptCopy;
                        }
                        Err(e) => s.status = SourceStatus::Unreachable(e.to_string()),
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().expect("connect thread");
        }
    });
}

/// Rebuilds a group's manifest from its shards' trailers and manifest units.
/// A trailer is only a claim of where the manifest units are: each distinct
/// one (fastest node first) is tried until the units it points to rebuild a
/// manifest with id `id`, so a lying trailer costs one more try, not the
/// download. Every try is bounded (`cairn_core::dataset::MAX_RECOVERY_ATTEMPTS`),
/// and there are at most as many as shards.
pub(crate) fn read_manifest(id: &DatasetId, shards: &[Shard]) -> Result<GroupManifest, CliError> {
    let mut tried: Vec<Trailer> = Vec::new();
    let mut failed: Vec<String> = Vec::new();
    for s in shards.iter().filter(|s| s.node.is_some()) {
        let Some(trailer) = trailer_of(s) else {
            continue;
        };
        // Shards' trailers differ only in their shard index.
        let claim = Trailer {
            shard_index: 0,
            ..trailer
        };
        if tried.contains(&claim) {
            continue;
        }
        tried.push(claim);
        match recover_group(id, &trailer, &manifest_units(&trailer, shards)) {
            Ok((group, _)) => return Ok(group),
            Err(e) => failed.push(format!("with shard {}'s trailer: {e}", s.index)),
        }
    }
    if failed.is_empty() {
        return Err(CliError::Refused(format!(
            "group {id}: no reachable provider served a valid shard trailer; {}",
            describe(shards)
        )));
    }
    Err(CliError::Refused(format!(
        "group {id}: {}; {}",
        failed.join("; "),
        describe(shards)
    )))
}

/// Shard `s`'s trailer, if its node serves one that fits its deal (its size
/// and shard index).
fn trailer_of(s: &Shard) -> Option<Trailer> {
    let range = trailer_range(s.deal_bytes)?;
    let node = s.node.as_deref()?;
    let bytes = get_noting(
        node,
        &s.deal,
        &s.corrupt,
        range.start,
        range.end - range.start,
    )
    .ok()?;
    let t = Trailer::decode(&bytes).ok()?;
    (t.stored_len() == s.deal_bytes && t.shard_index == s.index).then_some(t)
}

/// The manifest unit `trailer` points to, of every reachable shard (`None`
/// where it could not be read).
fn manifest_units(trailer: &Trailer, shards: &[Shard]) -> Vec<Option<Vec<u8>>> {
    let n = usize::from(trailer.k) + usize::from(trailer.m);
    let mut units: Vec<Option<Vec<u8>>> = vec![None; n];
    let range = trailer.manifest_unit_range();
    std::thread::scope(|scope| {
        let handles: Vec<_> = shards
            .iter()
            .filter(|s| usize::from(s.index) < n)
            .filter_map(|s| Some((s, s.node.as_deref()?)))
            .map(|(s, node)| {
                let range = range.clone();
                scope.spawn(move || {
                    let read = || {
                        get_noting(
                            node,
                            &s.deal,
                            &s.corrupt,
                            range.start,
                            range.end - range.start,
                        )
                        .ok()
                    };
                    // One retry: a node that answered the connection may drop
                    // one request under load.
                    (s.index, read().or_else(read))
                })
            })
            .collect();
        for h in handles {
            let (index, unit) = h.join().expect("manifest thread");
            units[usize::from(index)] = unit;
        }
    });
    units
}
