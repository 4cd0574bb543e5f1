//! The read layer: a dataset opened once (its deals, its manifest, its
//! providers) that then serves any number of verified byte-range reads, as
//! `cairn download` and `cairn gateway` need them.
//!
//! A read fetches, group by group, only the stripes that hold the wanted
//! bytes, each from any `k` providers of its group, every unit checked
//! against its BLAKE3 (the decoder falls back to parity on a bad or missing
//! unit; see [`OpenGroup::read`]). Opened groups (their QUIC connections and
//! group manifests) are kept in a pool and reused by later reads; concurrent
//! reads of one group each take their own opened copy. A read that fails
//! re-resolves the group (its deals reloaded from the chain, so a repaired
//! shard's new provider is found, its nodes reconnected) and is tried once
//! more. Reads go in chunks of whole stripes, each written to the output only
//! once it is complete and verified, so a retried chunk is never written
//! twice and memory stays one chunk plus the decoder's stripe.
//!
//! [`DatasetReader::read_file`] is the one place where a file's byte range
//! becomes stored bytes ([`DatasetReader::stored_range`]): a private
//! dataset's plaintext range maps to the encrypted chunks that cover it, and
//! those are decrypted and trimmed on their way out.
use std::ops::Range;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use std::path::Path;

use cairn_core::crypt::{ChunkDecryptor, DatasetKey};
use cairn_core::manifest::FileEntry;
use cairn_core::{DatasetId, Hash, Manifest};

use crate::context::Ctx;
use crate::dataset::download::{
    decrypt_failed, open_dataset, readable, DatasetDeals, OpenGroup, ProviderUsed,
};
use crate::dataset::transport::Connector;
use crate::error::CliError;
use crate::output::{Bar, Progress};

/// Bytes a read fetches and verifies before writing them out (rounded down
/// to whole stripes, at least one): what one read holds besides the
/// decoder's stripe buffer.
pub const CHUNK_BYTES: u64 = 4 << 20;

/// How long an opened group is reused before it is opened afresh (its deals
/// reloaded and its nodes reconnected), so a provider that came back or a
/// repaired shard's new provider is used again.
pub const REOPEN_AFTER: Duration = Duration::from_secs(300);

/// What a read fetched.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ReadStats {
    /// Shard bytes fetched from providers (whole units, parity included).
    pub bytes_fetched: u64,
}

/// Where a read's verified bytes go, in order.
pub type Sink<'s> = dyn FnMut(&[u8]) -> Result<(), CliError> + 's;

/// An opened group waiting in the pool, and when it was opened.
struct Idle {
    group: OpenGroup,
    opened: Instant,
}

/// A dataset opened for reading.
pub struct DatasetReader<'a> {
    ctx: &'a Ctx,
    connector: &'a dyn Connector,
    id: DatasetId,
    /// The manifest (a private dataset's as opened with its key: plaintext
    /// names, stored sizes).
    manifest: Manifest,
    /// A private dataset's key and index salt, which decrypt its files.
    private: Option<(DatasetKey, Hash)>,
    deals: Mutex<DatasetDeals>,
    /// Opened data groups not in use, by group number.
    idle: Vec<Mutex<Vec<Idle>>>,
    /// Providers of the groups closed so far (the index group's first), as
    /// the reads saw them.
    seen: Mutex<Vec<ProviderUsed>>,
    /// Close a group once a read moves past it (a download reads each group
    /// once) instead of keeping it for later reads.
    close_behind: bool,
}

impl<'a> DatasetReader<'a> {
    /// Opens dataset `id`: finds its deals, reads its manifest from the index
    /// group (whose connections then close), a private dataset's opened with
    /// the key in `key_file`. Data groups open on first read.
    pub fn open(
        ctx: &'a Ctx,
        connector: &'a dyn Connector,
        id: &DatasetId,
        key_file: &Path,
        progress: &Progress,
    ) -> Result<Self, CliError> {
        let (content, index, deals) = open_dataset(ctx, connector, id, progress)?;
        let opened = readable(id, content, index.group.salt(), key_file)?;
        let manifest = opened.manifest;
        let idle = (0..manifest.groups().len())
            .map(|_| Mutex::new(Vec::new()))
            .collect();
        Ok(DatasetReader {
            ctx,
            connector,
            id: *id,
            manifest,
            private: opened.private,
            deals: Mutex::new(deals),
            idle,
            seen: Mutex::new(index.providers_used().collect()),
            close_behind: false,
        })
    }

    /// Closes each group once a read has moved past it (for one pass over
    /// the dataset, as a download makes).
    pub fn close_behind(mut self) -> Self {
        self.close_behind = true;
        self
    }

    pub fn id(&self) -> &DatasetId {
        &self.id
    }

    pub fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// A private dataset's key and index salt.
    pub fn private(&self) -> Option<&(DatasetKey, Hash)> {
        self.private.as_ref()
    }

    /// The client whose deals hold the dataset.
    pub fn client(&self) -> anchor_lang::prelude::Pubkey {
        self.deals.lock().expect("deals lock").client
    }

    /// The earliest epoch a deal of the dataset was proposed in.
    pub fn proposed_epoch(&self) -> Option<u64> {
        let deals = self.deals.lock().expect("deals lock");
        deals
            .groups
            .values()
            .flatten()
            .map(|(_, d)| d.proposed_epoch)
            .min()
    }

    /// A file's length as a reader sees it (a private dataset's entries
    /// count stored bytes; its files are shorter).
    pub fn file_len(&self, entry: &FileEntry) -> u64 {
        match self.private {
            Some(_) => cairn_core::crypt::plain_len(entry.size).expect("checked when opened"),
            None => entry.size,
        }
    }

    /// Where file bytes `range` are stored in the packed stream: at the
    /// file's offset as they are, or for a private dataset the encrypted
    /// chunks that cover them.
    pub fn stored_range(&self, entry: &FileEntry, range: Range<u64>) -> Range<u64> {
        let stored = match self.private {
            Some(_) => {
                cairn_core::crypt::span(self.file_len(entry), range)
                    .expect("a range within the file")
                    .stored
            }
            None => range,
        };
        entry.offset + stored.start..entry.offset + stored.end
    }

    /// Writes bytes `range` of file `entry` to `out`, verified (and for a
    /// private dataset decrypted and authenticated).
    pub fn read_file(
        &self,
        entry: &FileEntry,
        range: Range<u64>,
        out: &mut Sink<'_>,
        bar: &Bar,
        progress: &Progress,
    ) -> Result<ReadStats, CliError> {
        let len = self.file_len(entry);
        if range.start > range.end || range.end > len {
            return Err(CliError::bad(
                "--range",
                format!(
                    "{}-{} is not within {:?}'s {len} bytes",
                    range.start, range.end, entry.path
                ),
            ));
        }
        let Some((key, salt)) = &self.private else {
            return self.read_packed(self.stored_range(entry, range), out, bar, progress);
        };
        let span = cairn_core::crypt::span(len, range).expect("checked above");
        let stored = entry.offset + span.stored.start..entry.offset + span.stored.end;
        let failed = |e| decrypt_failed(&self.id.to_string(), &entry.path, e);
        let mut decrypt = ChunkDecryptor::new(key.file(salt, &entry.path), span);
        let mut plain = Vec::new();
        let stats = self.read_packed(
            stored,
            &mut |bytes: &[u8]| {
                plain.clear();
                decrypt.push(bytes, &mut plain).map_err(failed)?;
                out(&plain)
            },
            bar,
            progress,
        )?;
        decrypt.finish().map_err(failed)?;
        Ok(stats)
    }

    /// Writes packed-stream bytes `range` to `out`, verified, a chunk at a
    /// time.
    pub fn read_packed(
        &self,
        range: Range<u64>,
        out: &mut Sink<'_>,
        bar: &Bar,
        progress: &Progress,
    ) -> Result<ReadStats, CliError> {
        let total = self.manifest.total_len();
        if range.start > range.end || range.end > total {
            return Err(CliError::Refused(format!(
                "dataset {}: bytes {range:?} are outside its {total} bytes",
                self.id
            )));
        }
        let mut stats = ReadStats::default();
        let mut at = range.start;
        let mut last_group = None;
        while at < range.end {
            let g = self.manifest.groups_for(at..at + 1).start;
            if self.close_behind {
                if let Some(prev) = last_group.filter(|&p| p != g) {
                    self.close_group(prev);
                }
            }
            last_group = Some(g);
            let held = self.manifest.group_range(g);
            let local = at - held.start..range.end.min(held.end) - held.start;
            let (chunk, fetched) = self.read_chunk(g, local, bar, progress)?;
            out(&chunk)?;
            stats.bytes_fetched += fetched;
            at += chunk.len() as u64;
        }
        if self.close_behind {
            if let Some(g) = last_group {
                self.close_group(g);
            }
        }
        Ok(stats)
    }

    /// Reads the first chunk of group `g`'s content bytes `local` (up to the
    /// next chunk boundary), re-resolving the group and trying once more if
    /// the read fails.
    fn read_chunk(
        &self,
        g: usize,
        local: Range<u64>,
        bar: &Bar,
        progress: &Progress,
    ) -> Result<(Vec<u8>, u64), CliError> {
        let mut group = self.take_group(g)?;
        let range = chunk_of(&group, local);
        let mut buf = Vec::with_capacity((range.end - range.start) as usize);
        match group.group.read(range.clone(), bar, &mut buf, progress) {
            Ok(report) => {
                self.put_back(g, group);
                Ok((buf, report.bytes_read))
            }
            Err(first) => {
                progress.note(&format!("{first}; opening {} afresh", group.group.name()));
                self.retire(group);
                self.reload_deals()?;
                let mut group = self.open_group(g)?;
                buf.clear();
                let report = group.group.read(range, bar, &mut buf, progress)?;
                self.put_back(g, group);
                Ok((buf, report.bytes_read))
            }
        }
    }

    /// An opened group `g` from the pool, or a newly opened one.
    fn take_group(&self, g: usize) -> Result<Idle, CliError> {
        let mut pool = self.idle[g].lock().expect("pool lock");
        while let Some(idle) = pool.pop() {
            if idle.opened.elapsed() < REOPEN_AFTER {
                return Ok(idle);
            }
            self.retire(idle);
        }
        drop(pool);
        self.open_group(g)
    }

    fn open_group(&self, g: usize) -> Result<Idle, CliError> {
        let gid = self.manifest.groups()[g];
        let deals = self.deals.lock().expect("deals lock").of(&gid, Some(g));
        let group = OpenGroup::open(self.ctx, self.connector, Some(g), &gid, &deals)?;
        let held = self.manifest.group_range(g);
        if group.group.range() != held {
            return Err(CliError::Refused(format!(
                "{} holds bytes {:?}, the manifest says {held:?}",
                group.name(),
                group.group.range()
            )));
        }
        Ok(Idle {
            group,
            opened: Instant::now(),
        })
    }

    /// Returns an opened group to the pool, without the connections of
    /// shards that failed a read (later reads go to the others, parity
    /// included, until the group is reopened).
    fn put_back(&self, g: usize, mut idle: Idle) {
        for s in &mut idle.group.shards {
            if !s.status.is_ok() {
                s.node = None;
            }
        }
        self.idle[g].lock().expect("pool lock").push(idle);
    }

    /// Drops an opened group, noting its providers as the reads saw them.
    fn retire(&self, idle: Idle) {
        self.seen
            .lock()
            .expect("seen lock")
            .extend(idle.group.providers_used());
    }

    /// Closes every opened copy of group `g` (its connections).
    pub fn close_group(&self, g: usize) {
        let closed: Vec<Idle> = std::mem::take(&mut *self.idle[g].lock().expect("pool lock"));
        for idle in closed {
            self.retire(idle);
        }
    }

    /// Reloads the dataset's deals from the chain (after a read failed: a
    /// shard may have moved to a new provider).
    fn reload_deals(&self) -> Result<(), CliError> {
        let mut deals = self.deals.lock().expect("deals lock");
        if let Some(fresh) = DatasetDeals::load(self.ctx, &self.id)?
            .into_iter()
            .find(|d| d.client == deals.client)
        {
            *deals = fresh;
        }
        Ok(())
    }

    /// Every shard's provider as the reads saw it: the index group's, then
    /// each closed group's (call [`Self::close_group`] first).
    pub fn providers_used(&self) -> Vec<ProviderUsed> {
        self.seen.lock().expect("seen lock").clone()
    }
}

/// The part of `local` (group content bytes) up to the next chunk boundary:
/// chunks are whole stripes of the group, [`CHUNK_BYTES`] or one stripe.
fn chunk_of(group: &Idle, local: Range<u64>) -> Range<u64> {
    let stripe = group.group.group.params().stripe_bytes();
    let chunk = (CHUNK_BYTES / stripe).max(1) * stripe;
    let boundary = (local.start / chunk + 1) * chunk;
    local.start..local.end.min(boundary)
}
