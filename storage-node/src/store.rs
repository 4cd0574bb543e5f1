//! Durable shard store: shard bytes in files, records and kept Merkle levels in
//! RocksDB.
//!
//! Layout under the data directory:
//! - `partial/<deal>`: an upload in progress, valid up to the record's `received`;
//! - `shards/<deal>`: a complete shard whose root matched the deal's;
//! - `db/`: RocksDB with the column families [`CF_META`], [`CF_SHARDS`], [`CF_TREES`]
//!   and [`CF_SUMS`].
//!
//! A shard is finished by fsyncing its partial file, renaming it into `shards/`,
//! fsyncing the directory, then writing the `Stored` record and its tree in one
//! `WriteBatch`. A crash between the rename and the batch leaves a `Receiving`
//! record with its file in `shards/`, which [`Store::reconcile`] re-hashes and
//! either finishes or discards: never a torn shard.
//!
//! The `Stored` record (with its tree and sums) is written synced (the WAL is
//! fsynced before the write returns): it precedes the `Stored` answer and
//! `accept_deal`, after which the bytes must survive a power loss. Other record
//! writes are not: losing one loses nothing acknowledged (a resume offset goes back
//! to an earlier checkpoint the client still holds the bytes for; an acceptance is
//! re-sent by the prover; a discarded upload is discarded again). A shard file in
//! `shards/` that has no record at all
//! (a record lost with the machine's power) is not deleted at start: it is kept as
//! [`ReconcileReport::unclaimed`] until the chain says whose it is, and adopted
//! with [`Store::adopt`] when its bytes hash to that deal's root.
//!
//! Capacity is held as bytes arrive, not when an upload begins: a stored shard
//! holds its size, a partial upload the bytes reserved for it so far
//! ([`Store::reserve`]). An upload that is announced and never sent holds nothing.

use cairn_proof::{Tree, TreeBuilder, CHUNK_BYTES};
use rocksdb::{ColumnFamilyDescriptor, Options, WriteBatch, WriteOptions, DB};
use std::{
    fs::{self, File, OpenOptions},
    io::Read,
    os::unix::fs::FileExt,
    path::{Path, PathBuf},
    sync::Mutex,
};

/// Column family with the schema version and the node's own small values (such
/// as [`LOOKUP_TABLE_KEY`]).
pub const CF_META: &str = "meta";
/// Column family: deal address (32 bytes) -> [`ShardRecord`].
pub const CF_SHARDS: &str = "shards";
/// Column family: deal address (32 bytes) -> kept Merkle levels.
pub const CF_TREES: &str = "trees";
/// Column family: deal address (32 bytes) -> a BLAKE3 sum of every [`SUM_BLOCK`]
/// bytes of the stored shard ([`BlockSums`]), what reads are checked against.
pub const CF_SUMS: &str = "sums";
/// Bytes of a stored shard under one [`BlockSums`] entry.
pub const SUM_BLOCK: u64 = 256 * 1024;
/// Key of the schema version in [`CF_META`].
pub const SCHEMA_KEY: &[u8] = b"schema_version";
/// Key in [`CF_META`] of the operator's address lookup table for proof
/// transactions: the table's address, then the operator that owns it (64 bytes).
pub const LOOKUP_TABLE_KEY: &[u8] = b"lookup_table";
/// The layout this code reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// A deal address.
pub type DealId = [u8; 32];

/// A 64-byte segment and its Merkle path, leaf to root.
pub type SegmentPath = ([u8; 64], Vec<[u8; 32]>);

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// RocksDB failed.
    #[error("database: {0}")]
    Db(#[from] rocksdb::Error),
    /// A file operation failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The database was written by another version of the node.
    #[error("database schema version {found} at {path}; this node reads version {SCHEMA_VERSION}: migrate or use a new data_dir")]
    Schema {
        /// Version found.
        found: u32,
        /// The database.
        path: PathBuf,
    },
    /// A stored value does not decode.
    #[error("corrupt {what} for deal {deal}")]
    Corrupt {
        /// Which value.
        what: &'static str,
        /// The deal (base58).
        deal: String,
    },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> StoreError {
    let path = path.to_path_buf();
    move |source| StoreError::Io { what, path, source }
}

/// Where a shard stands in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordState {
    /// Upload in progress in `partial/`; `received` bytes are durable.
    Receiving = 0,
    /// Complete, root verified, in `shards/`.
    Stored = 1,
}

/// What the store knows about one deal's shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShardRecord {
    /// Where the shard stands.
    pub state: RecordState,
    /// The deal's shard size.
    pub size: u64,
    /// Durable bytes (equal to `size` when stored).
    pub received: u64,
    /// The deal's shard root.
    pub root: [u8; 32],
    /// Whether `accept_deal` was confirmed on chain.
    pub accepted: bool,
}

const RECORD_LEN: usize = 1 + 8 + 8 + 32 + 1;

impl ShardRecord {
    fn encode(&self) -> [u8; RECORD_LEN] {
        let mut out = [0u8; RECORD_LEN];
        out[0] = self.state as u8;
        out[1..9].copy_from_slice(&self.size.to_be_bytes());
        out[9..17].copy_from_slice(&self.received.to_be_bytes());
        out[17..49].copy_from_slice(&self.root);
        out[49] = u8::from(self.accepted);
        out
    }

    fn decode(b: &[u8]) -> Option<ShardRecord> {
        if b.len() != RECORD_LEN {
            return None;
        }
        let state = match b[0] {
            0 => RecordState::Receiving,
            1 => RecordState::Stored,
            _ => return None,
        };
        let size = u64::from_be_bytes(b[1..9].try_into().ok()?);
        let received = u64::from_be_bytes(b[9..17].try_into().ok()?);
        if received > size || (state == RecordState::Stored && received != size) {
            return None;
        }
        Some(ShardRecord {
            state,
            size,
            received,
            root: b[17..49].try_into().ok()?,
            accepted: b[49] != 0,
        })
    }
}

fn encode_tree(tree: &Tree) -> Vec<u8> {
    let levels = tree.kept_levels();
    let mut out = Vec::with_capacity(9 + levels.iter().map(|l| 4 + 32 * l.len()).sum::<usize>());
    out.extend_from_slice(&tree.shard_bytes().to_be_bytes());
    out.push(levels.len() as u8);
    for level in levels {
        out.extend_from_slice(&(level.len() as u32).to_be_bytes());
        for node in level {
            out.extend_from_slice(node);
        }
    }
    out
}

fn decode_tree(mut b: &[u8]) -> Option<Tree> {
    fn take<'a>(b: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if b.len() < n {
            return None;
        }
        let (head, tail) = b.split_at(n);
        *b = tail;
        Some(head)
    }
    let shard_bytes = u64::from_be_bytes(take(&mut b, 8)?.try_into().ok()?);
    let count = take(&mut b, 1)?[0];
    let mut levels = Vec::with_capacity(usize::from(count));
    for _ in 0..count {
        let n = u32::from_be_bytes(take(&mut b, 4)?.try_into().ok()?) as usize;
        let nodes = take(&mut b, n.checked_mul(32)?)?;
        levels.push(
            nodes
                .chunks_exact(32)
                .map(|c| c.try_into().expect("32 bytes"))
                .collect(),
        );
    }
    if !b.is_empty() {
        return None;
    }
    Tree::from_parts(shard_bytes, levels).ok()
}

/// What [`Store::reconcile`] found on disk.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Partial uploads kept, with the offset they resume from.
    pub resumable: Vec<(DealId, u64)>,
    /// Shards renamed before the crash whose record was finished now.
    pub finished: Vec<DealId>,
    /// Shards renamed before the crash whose bytes did not match and were removed.
    pub discarded: Vec<DealId>,
    /// Stored shards whose sampled chunks matched their tree.
    pub verified: usize,
    /// Stored shards missing, short or failing a sampled chunk (removed).
    pub corrupt: Vec<DealId>,
    /// Files without any record (removed).
    pub orphans: Vec<PathBuf>,
    /// Complete shard files without a record, kept until the chain says whose they
    /// are ([`Store::adopt`] or [`Store::discard`]).
    pub unclaimed: Vec<DealId>,
}

impl std::fmt::Display for ReconcileReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} stored shards verified, {} corrupt or missing removed, {} partial uploads resumable, \
             {} interrupted finishes completed, {} discarded, {} orphan files removed, \
             {} unrecorded shard files kept for the chain to claim",
            self.verified,
            self.corrupt.len(),
            self.resumable.len(),
            self.finished.len(),
            self.discarded.len(),
            self.orphans.len(),
            self.unclaimed.len()
        )
    }
}

/// The shard store.
pub struct Store {
    db: DB,
    dir: PathBuf,
    used: Mutex<Usage>,
}

/// Bytes held: every stored shard's size, plus what each partial upload reserved.
#[derive(Default)]
struct Usage {
    total: u64,
    partial: std::collections::HashMap<DealId, u64>,
}

/// Why [`Store::reserve`] refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{needed} more bytes needed, {free} bytes of capacity free")]
pub struct Full {
    /// Bytes the reservation needed beyond what the deal held.
    pub needed: u64,
    /// Capacity left.
    pub free: u64,
}

/// Writes that precede an answer to a client or a transaction: synced.
fn synced() -> WriteOptions {
    let mut o = WriteOptions::default();
    o.set_sync(true);
    o
}

/// A deal address as a file name (base58).
pub fn deal_name(deal: &DealId) -> String {
    bs58::encode(deal).into_string()
}

impl Store {
    /// Opens (creating if needed) the store in `dir`, checking the schema version.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        for sub in ["shards", "partial"] {
            let p = dir.join(sub);
            fs::create_dir_all(&p).map_err(io("create", &p))?;
        }
        let path = dir.join("db");
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        let cfs = [CF_META, CF_SHARDS, CF_TREES, CF_SUMS]
            .map(|name| ColumnFamilyDescriptor::new(name, Options::default()));
        let db = DB::open_cf_descriptors(&opts, &path, cfs)?;
        let meta = db.cf_handle(CF_META).expect("created");
        match db.get_cf(meta, SCHEMA_KEY)? {
            None => db.put_cf(meta, SCHEMA_KEY, SCHEMA_VERSION.to_be_bytes())?,
            Some(v) => {
                let found = v
                    .as_slice()
                    .try_into()
                    .map(u32::from_be_bytes)
                    .unwrap_or(u32::MAX);
                if found != SCHEMA_VERSION {
                    return Err(StoreError::Schema { found, path });
                }
            }
        }
        let store = Store {
            db,
            dir: dir.to_path_buf(),
            used: Mutex::new(Usage::default()),
        };
        {
            let mut usage = store.usage();
            for (deal, r) in store.records()? {
                match r.state {
                    RecordState::Stored => usage.total += r.size,
                    RecordState::Receiving => {
                        usage.total += r.received;
                        usage.partial.insert(deal, r.received);
                    }
                }
            }
        }
        Ok(store)
    }

    fn usage(&self) -> std::sync::MutexGuard<'_, Usage> {
        self.used.lock().expect("usage lock")
    }

    fn cf(&self, name: &str) -> &rocksdb::ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("opened with every column family")
    }

    /// A value of [`CF_META`].
    pub fn meta(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(self.cf(CF_META), key)?)
    }

    /// Writes a value of [`CF_META`] (not [`SCHEMA_KEY`]).
    pub fn put_meta(&self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        assert_ne!(key, SCHEMA_KEY, "the schema version is the store's own");
        self.db
            .put_cf_opt(self.cf(CF_META), key, value, &synced())?;
        Ok(())
    }

    /// Path of a stored shard.
    pub fn shard_path(&self, deal: &DealId) -> PathBuf {
        self.dir.join("shards").join(deal_name(deal))
    }

    /// Path of an upload in progress.
    pub fn partial_path(&self, deal: &DealId) -> PathBuf {
        self.dir.join("partial").join(deal_name(deal))
    }

    /// Bytes held: stored shards' sizes and partial uploads' reservations.
    pub fn used_bytes(&self) -> u64 {
        self.usage().total
    }

    /// Makes deal's partial upload hold at least `upto` bytes, if that keeps the
    /// total within `capacity`. Called before bytes are written.
    pub fn reserve(&self, deal: &DealId, upto: u64, capacity: u64) -> Result<(), Full> {
        let mut usage = self.usage();
        let held = usage.partial.get(deal).copied().unwrap_or(0);
        if upto <= held {
            return Ok(());
        }
        let needed = upto - held;
        let free = capacity.saturating_sub(usage.total);
        if needed > free {
            return Err(Full { needed, free });
        }
        usage.total += needed;
        usage.partial.insert(*deal, upto);
        Ok(())
    }

    /// Lowers a partial upload's reservation to `upto` (its durable bytes after a
    /// failed write or a truncation).
    fn release_to(&self, deal: &DealId, upto: u64) {
        let mut usage = self.usage();
        if let Some(held) = usage.partial.get(deal).copied() {
            if held > upto {
                usage.total -= held - upto;
                usage.partial.insert(*deal, upto);
            }
        }
    }

    /// The record of a deal, if any.
    pub fn record(&self, deal: &DealId) -> Result<Option<ShardRecord>, StoreError> {
        match self.db.get_cf(self.cf(CF_SHARDS), deal)? {
            None => Ok(None),
            Some(v) => ShardRecord::decode(&v)
                .map(Some)
                .ok_or(StoreError::Corrupt {
                    what: "record",
                    deal: deal_name(deal),
                }),
        }
    }

    /// Every record, in deal order.
    pub fn records(&self) -> Result<Vec<(DealId, ShardRecord)>, StoreError> {
        let mut out = Vec::new();
        for item in self
            .db
            .iterator_cf(self.cf(CF_SHARDS), rocksdb::IteratorMode::Start)
        {
            let (k, v) = item?;
            let deal: DealId = k.as_ref().try_into().map_err(|_| StoreError::Corrupt {
                what: "record key",
                deal: bs58::encode(&k).into_string(),
            })?;
            let record = ShardRecord::decode(&v).ok_or(StoreError::Corrupt {
                what: "record",
                deal: deal_name(&deal),
            })?;
            out.push((deal, record));
        }
        Ok(out)
    }

    /// Starts an upload: an empty partial file and a `Receiving` record (holding no
    /// capacity until bytes arrive).
    pub fn begin(
        &self,
        deal: &DealId,
        size: u64,
        root: [u8; 32],
    ) -> Result<ShardRecord, StoreError> {
        let path = self.partial_path(deal);
        let file = File::create(&path).map_err(io("create", &path))?;
        file.sync_all().map_err(io("fsync", &path))?;
        let record = ShardRecord {
            state: RecordState::Receiving,
            size,
            received: 0,
            root,
            accepted: false,
        };
        // Not synced: losing it loses nothing acknowledged (the client resumes
        // from an earlier offset, or from 0).
        self.db.put_cf(self.cf(CF_SHARDS), deal, record.encode())?;
        self.usage().partial.entry(*deal).or_insert(0);
        Ok(record)
    }

    /// Opens a partial upload for appending at `received` (truncating anything
    /// past it).
    pub fn open_partial(&self, deal: &DealId, received: u64) -> Result<File, StoreError> {
        let path = self.partial_path(deal);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(io("open", &path))?;
        file.set_len(received).map_err(io("truncate", &path))?;
        self.release_to(deal, received);
        Ok(file)
    }

    /// Re-hashes the first `received` bytes of a partial upload, to continue
    /// its tree after a restart.
    pub fn rehash_partial(&self, deal: &DealId, received: u64) -> Result<ShardHasher, StoreError> {
        let path = self.partial_path(deal);
        let mut builder = ShardHasher::default();
        hash_file(&path, received, &mut builder)?;
        Ok(builder)
    }

    /// Records that `received` bytes of `file` are durable (fsyncs it first).
    pub fn checkpoint(&self, deal: &DealId, file: &File, received: u64) -> Result<(), StoreError> {
        file.sync_data()
            .map_err(io("fsync", &self.partial_path(deal)))?;
        let mut record = self.record(deal)?.ok_or(StoreError::Corrupt {
            what: "missing record",
            deal: deal_name(deal),
        })?;
        record.received = received;
        self.db.put_cf(self.cf(CF_SHARDS), deal, record.encode())?;
        self.release_to(deal, received);
        Ok(())
    }

    /// Moves a complete upload whose tree matched into `shards/` and records it
    /// with its tree in one batch.
    pub fn finish(
        &self,
        deal: &DealId,
        file: &File,
        hashed: &Hashed,
    ) -> Result<ShardRecord, StoreError> {
        let from = self.partial_path(deal);
        file.sync_all().map_err(io("fsync", &from))?;
        let to = self.shard_path(deal);
        fs::rename(&from, &to).map_err(io("rename", &from))?;
        sync_dir(&self.dir.join("shards"))?;
        crash_point("shard-renamed-before-record");
        self.commit_stored(deal, hashed)
    }

    /// Records a complete shard file in `shards/` that had no record (see
    /// [`ReconcileReport::unclaimed`]) for a deal whose root is `root` and size
    /// `size`: it is hashed, and recorded as stored only if it matches. Returns
    /// whether it was adopted; a file that does not match is deleted.
    pub fn adopt(&self, deal: &DealId, size: u64, root: [u8; 32]) -> Result<bool, StoreError> {
        let path = self.shard_path(deal);
        let len = fs::metadata(&path).map_err(io("stat", &path))?.len();
        if len == size {
            let mut builder = ShardHasher::default();
            hash_file(&path, len, &mut builder)?;
            let hashed = builder.finish();
            if hashed.tree.root() == root {
                self.commit_stored(deal, &hashed)?;
                return Ok(true);
            }
        }
        self.discard(deal)?;
        Ok(false)
    }

    fn commit_stored(&self, deal: &DealId, hashed: &Hashed) -> Result<ShardRecord, StoreError> {
        let tree = &hashed.tree;
        let record = ShardRecord {
            state: RecordState::Stored,
            size: tree.shard_bytes(),
            received: tree.shard_bytes(),
            root: tree.root(),
            accepted: false,
        };
        let mut batch = WriteBatch::default();
        batch.put_cf(self.cf(CF_SHARDS), deal, record.encode());
        batch.put_cf(self.cf(CF_TREES), deal, encode_tree(tree));
        batch.put_cf(self.cf(CF_SUMS), deal, hashed.sums.encode());
        self.db.write_opt(batch, &synced())?;
        let mut usage = self.usage();
        let held = usage.partial.remove(deal).unwrap_or(0);
        usage.total = usage.total - held + record.size;
        Ok(record)
    }

    /// Notes that the deal was accepted on chain.
    pub fn mark_accepted(&self, deal: &DealId) -> Result<(), StoreError> {
        if let Some(mut record) = self.record(deal)? {
            record.accepted = true;
            self.db.put_cf(self.cf(CF_SHARDS), deal, record.encode())?;
        }
        Ok(())
    }

    /// Removes a deal's files, record and tree, releasing its reservation.
    pub fn discard(&self, deal: &DealId) -> Result<(), StoreError> {
        let record = self.record(deal)?;
        for path in [self.partial_path(deal), self.shard_path(deal)] {
            match fs::remove_file(&path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(io("remove", &path)(e)),
            }
        }
        let mut batch = WriteBatch::default();
        batch.delete_cf(self.cf(CF_SHARDS), deal);
        batch.delete_cf(self.cf(CF_TREES), deal);
        batch.delete_cf(self.cf(CF_SUMS), deal);
        self.db.write(batch)?;
        let mut usage = self.usage();
        let held = match record {
            Some(r) if r.state == RecordState::Stored => r.size,
            _ => usage.partial.remove(deal).unwrap_or(0),
        };
        usage.total -= held;
        Ok(())
    }

    /// The kept Merkle levels of a stored shard.
    pub fn tree(&self, deal: &DealId) -> Result<Option<Tree>, StoreError> {
        match self.db.get_cf(self.cf(CF_TREES), deal)? {
            None => Ok(None),
            Some(v) => decode_tree(&v).map(Some).ok_or(StoreError::Corrupt {
                what: "tree",
                deal: deal_name(deal),
            }),
        }
    }

    /// The block sums of a stored shard (none for shards stored before they
    /// existed: their reads are checked against the tree).
    pub fn sums(&self, deal: &DealId) -> Result<Option<BlockSums>, StoreError> {
        match self.db.get_cf(self.cf(CF_SUMS), deal)? {
            None => Ok(None),
            Some(v) => BlockSums::decode(&v).map(Some).ok_or(StoreError::Corrupt {
                what: "block sums",
                deal: deal_name(deal),
            }),
        }
    }

    /// Reads `buf.len()` bytes of a stored shard at `offset`.
    pub fn read_at(&self, deal: &DealId, offset: u64, buf: &mut [u8]) -> Result<(), StoreError> {
        let path = self.shard_path(deal);
        let file = File::open(&path).map_err(io("open", &path))?;
        file.read_exact_at(buf, offset).map_err(io("read", &path))
    }

    /// Segment `index` of a stored shard and its Merkle path: one chunk read.
    pub fn proof(
        &self,
        deal: &DealId,
        tree: &Tree,
        index: u64,
    ) -> Result<Result<SegmentPath, cairn_proof::TreeError>, StoreError> {
        if index >= tree.segments() {
            return Ok(Err(cairn_proof::TreeError::IndexOutOfRange {
                index,
                segments: tree.segments(),
            }));
        }
        let range = tree.chunk_range(index);
        let mut chunk = [0u8; CHUNK_BYTES];
        let chunk = &mut chunk[..(range.end - range.start) as usize];
        self.read_at(deal, range.start, chunk)?;
        Ok(tree.path(index, chunk))
    }

    /// Brings disk and database into agreement after a start or a crash, and
    /// checks `samples` chunks of every stored shard against its tree.
    pub fn reconcile(&self, samples: u32) -> Result<ReconcileReport, StoreError> {
        let mut report = ReconcileReport::default();
        let records = self.records()?;
        for (deal, record) in &records {
            match record.state {
                RecordState::Receiving => {
                    let done = self.shard_path(deal);
                    if done.exists() {
                        // Renamed, but the crash came before the batch.
                        let mut builder = ShardHasher::default();
                        let len = fs::metadata(&done).map_err(io("stat", &done))?.len();
                        if len == record.size {
                            hash_file(&done, len, &mut builder)?;
                            let hashed = builder.finish();
                            if hashed.tree.root() == record.root {
                                self.commit_stored(deal, &hashed)?;
                                report.finished.push(*deal);
                                continue;
                            }
                        }
                        self.discard(deal)?;
                        report.discarded.push(*deal);
                        continue;
                    }
                    let path = self.partial_path(deal);
                    let len = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
                    let resume = len.min(record.received);
                    self.open_partial(deal, resume)?
                        .sync_all()
                        .map_err(io("fsync", &path))?;
                    if resume != record.received {
                        let file = File::open(&path).map_err(io("open", &path))?;
                        self.checkpoint(deal, &file, resume)?;
                    }
                    report.resumable.push((*deal, resume));
                }
                RecordState::Stored => {
                    if self.verify_stored(deal, record, samples)? {
                        report.verified += 1;
                    } else {
                        self.discard(deal)?;
                        report.corrupt.push(*deal);
                    }
                }
            }
        }
        // Which file each record owns: `shards/` for stored, `partial/` otherwise.
        let owned: std::collections::HashSet<(bool, String)> = self
            .records()?
            .iter()
            .map(|(d, r)| (r.state == RecordState::Stored, deal_name(d)))
            .collect();
        for sub in ["shards", "partial"] {
            let dir = self.dir.join(sub);
            for entry in fs::read_dir(&dir).map_err(io("list", &dir))? {
                let entry = entry.map_err(io("list", &dir))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                if owned.contains(&(sub == "shards", name.clone())) {
                    continue;
                }
                // A whole shard without a record: the chain decides (see `adopt`).
                let unrecorded = (sub == "shards")
                    .then(|| deal_from_name(&name))
                    .flatten()
                    .filter(|d| !owned.contains(&(false, deal_name(d))));
                match unrecorded {
                    Some(deal) => report.unclaimed.push(deal),
                    None => {
                        fs::remove_file(entry.path()).map_err(io("remove", &entry.path()))?;
                        report.orphans.push(entry.path());
                    }
                }
            }
        }
        Ok(report)
    }

    fn verify_stored(
        &self,
        deal: &DealId,
        record: &ShardRecord,
        samples: u32,
    ) -> Result<bool, StoreError> {
        let path = self.shard_path(deal);
        match fs::metadata(&path) {
            Ok(m) if m.len() == record.size => {}
            _ => return Ok(false),
        }
        let Ok(Some(tree)) = self.tree(deal) else {
            return Ok(false);
        };
        if tree.root() != record.root {
            return Ok(false);
        }
        let segments = tree.segments();
        if segments == 0 {
            return Ok(true);
        }
        // A different sample at every start.
        let nonce = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        for j in 0..samples {
            let mut h = blake3::Hasher::new();
            h.update(deal);
            h.update(&nonce.to_le_bytes());
            h.update(&j.to_le_bytes());
            let pick = u64::from_le_bytes(h.finalize().as_bytes()[..8].try_into().expect("8"));
            match self.proof(deal, &tree, pick % segments) {
                Ok(Ok(_)) => {}
                Ok(Err(_)) | Err(_) => return Ok(false),
            }
        }
        Ok(true)
    }
}

fn hash_file(path: &Path, len: u64, builder: &mut ShardHasher) -> Result<(), StoreError> {
    let mut file = File::open(path).map_err(io("open", path))?;
    let mut left = len;
    let mut buf = vec![0u8; 1 << 20];
    while left > 0 {
        let n = (left.min(buf.len() as u64)) as usize;
        file.read_exact(&mut buf[..n]).map_err(io("read", path))?;
        builder.update(&buf[..n]);
        left -= n as u64;
    }
    Ok(())
}

/// What a shard's bytes are checked against, built as they arrive: its Merkle tree
/// (for proofs) and a BLAKE3 sum of every [`SUM_BLOCK`] bytes (for reads: BLAKE3
/// checks a read many times faster than rebuilding the tree's 4 KiB subtrees).
#[derive(Default)]
pub struct ShardHasher {
    tree: TreeBuilder,
    /// The current block's bytes, hashed in one call when it is full (BLAKE3 is
    /// several times faster over a whole block than over many small updates).
    block: Vec<u8>,
    sums: Vec<[u8; 32]>,
}

/// A finished [`ShardHasher`].
pub struct Hashed {
    /// The shard's Merkle tree (kept levels).
    pub tree: Tree,
    /// A sum per [`SUM_BLOCK`].
    pub sums: BlockSums,
}

impl ShardHasher {
    /// Adds the next bytes of the shard.
    pub fn update(&mut self, mut bytes: &[u8]) {
        self.tree.update(bytes);
        while !bytes.is_empty() {
            let take = (SUM_BLOCK as usize - self.block.len()).min(bytes.len());
            self.block.extend_from_slice(&bytes[..take]);
            bytes = &bytes[take..];
            if self.block.len() == SUM_BLOCK as usize {
                self.sums.push(*blake3::hash(&self.block).as_bytes());
                self.block.clear();
            }
        }
    }

    /// Bytes added so far.
    pub fn shard_bytes(&self) -> u64 {
        self.tree.shard_bytes()
    }

    /// The tree and the sums (the last block may be short).
    pub fn finish(mut self) -> Hashed {
        if !self.block.is_empty() {
            self.sums.push(*blake3::hash(&self.block).as_bytes());
        }
        Hashed {
            tree: self.tree.finish(),
            sums: BlockSums(self.sums),
        }
    }
}

/// A BLAKE3 sum of every [`SUM_BLOCK`] bytes of a stored shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockSums(Vec<[u8; 32]>);

impl BlockSums {
    /// Whether `bytes` are block `index` of the shard.
    pub fn check(&self, index: u64, bytes: &[u8]) -> bool {
        usize::try_from(index)
            .ok()
            .and_then(|i| self.0.get(i))
            .is_some_and(|sum| blake3::hash(bytes).as_bytes() == sum)
    }

    fn encode(&self) -> Vec<u8> {
        self.0.concat()
    }

    fn decode(b: &[u8]) -> Option<BlockSums> {
        b.len().is_multiple_of(32).then(|| {
            BlockSums(
                b.chunks_exact(32)
                    .map(|c| c.try_into().expect("32 bytes"))
                    .collect(),
            )
        })
    }
}

/// The deal a file in `shards/` or `partial/` is named after.
fn deal_from_name(name: &str) -> Option<DealId> {
    bs58::decode(name).into_vec().ok()?.try_into().ok()
}

/// A named point where tests kill the node (`SIGKILL`, as `kill -9` would) to check
/// what survives; compiled only with the `failpoints` feature and triggered by
/// `FAILPOINTS=<name>=return`.
pub fn crash_point(name: &str) {
    #[cfg(feature = "failpoints")]
    {
        let kill = || {
            // SAFETY: raising a signal has no memory-safety preconditions.
            unsafe { libc::raise(libc::SIGKILL) };
        };
        fail::fail_point!(name, |_| kill());
    }
    let _ = name;
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync", dir))
}

/// Writes `bytes` of an upload at `offset` of its file. An explicit offset, not the
/// file cursor: after a failed write (a full disk) the next attempt writes at the
/// same place, never after the torn bytes.
pub fn write_at(file: &File, path: &Path, offset: u64, bytes: &[u8]) -> Result<(), StoreError> {
    #[cfg(feature = "failpoints")]
    fail::fail_point!("shard-write", |_| {
        // A full disk part way through: half the bytes land, then ENOSPC.
        let _ = file.write_all_at(&bytes[..bytes.len() / 2], offset);
        Err(io("write", path)(std::io::Error::from_raw_os_error(
            libc::ENOSPC,
        )))
    });
    file.write_all_at(bytes, offset).map_err(io("write", path))
}

impl StoreError {
    /// Whether the file system is out of space (or quota).
    pub fn is_disk_full(&self) -> bool {
        matches!(self, StoreError::Io { source, .. }
            if matches!(source.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shard(len: usize, seed: u8) -> (Vec<u8>, Hashed) {
        let data: Vec<u8> = (0..len)
            .map(|i| (i as u8).wrapping_mul(31) ^ seed)
            .collect();
        let mut b = ShardHasher::default();
        b.update(&data);
        (data, b.finish())
    }

    fn upload(store: &Store, deal: &DealId, data: &[u8], hashed: &Hashed) -> File {
        store
            .begin(deal, data.len() as u64, hashed.tree.root())
            .unwrap();
        let file = store.open_partial(deal, 0).unwrap();
        write_at(&file, &store.partial_path(deal), 0, data).unwrap();
        file
    }

    #[test]
    fn stored_shard_survives_reopen_and_proves() {
        let dir = tempfile::tempdir().unwrap();
        let (data, tree) = shard(100_000, 1);
        let deal = [7u8; 32];
        {
            let store = Store::open(dir.path()).unwrap();
            let file = upload(&store, &deal, &data, &tree);
            store.finish(&deal, &file, &tree).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.used_bytes(), 100_000);
        let report = store.reconcile(8).unwrap();
        assert_eq!(report.verified, 1, "{report}");
        let tree2 = store.tree(&deal).unwrap().unwrap();
        assert_eq!(tree2.root(), tree.tree.root());
        let (segment, path) = store.proof(&deal, &tree2, 777).unwrap().unwrap();
        assert!(cairn_proof::verify(&tree.tree.root(), &segment, 777, &path));
        let mut buf = vec![0u8; 1000];
        store.read_at(&deal, 5000, &mut buf).unwrap();
        assert_eq!(buf, data[5000..6000]);
    }

    #[test]
    fn crash_between_rename_and_batch_is_finished_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let (data, tree) = shard(50_000, 2);
        let (bad, _) = shard(50_000, 3);
        let (good, bad_deal) = ([1u8; 32], [2u8; 32]);
        {
            let store = Store::open(dir.path()).unwrap();
            for (deal, bytes) in [(good, &data), (bad_deal, &bad)] {
                let file = upload(&store, &deal, bytes, &tree);
                file.sync_all().unwrap();
                // The crash: renamed, no batch.
                fs::rename(store.partial_path(&deal), store.shard_path(&deal)).unwrap();
            }
        }
        let store = Store::open(dir.path()).unwrap();
        let report = store.reconcile(4).unwrap();
        assert_eq!(report.finished, vec![good]);
        assert_eq!(report.discarded, vec![bad_deal]);
        assert_eq!(
            store.record(&good).unwrap().unwrap().state,
            RecordState::Stored
        );
        assert!(store.record(&bad_deal).unwrap().is_none());
        assert!(!store.shard_path(&bad_deal).exists());
        assert_eq!(store.used_bytes(), 50_000);
    }

    #[test]
    fn partial_upload_resumes_from_its_checkpoint_and_corruption_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let (data, tree) = shard(40_000, 4);
        let (partial, stored) = ([3u8; 32], [4u8; 32]);
        {
            let store = Store::open(dir.path()).unwrap();
            store.begin(&partial, 40_000, tree.tree.root()).unwrap();
            let file = store.open_partial(&partial, 0).unwrap();
            write_at(&file, &store.partial_path(&partial), 0, &data[..10_000]).unwrap();
            store.checkpoint(&partial, &file, 10_000).unwrap();
            // Written after the checkpoint, then the crash.
            write_at(
                &file,
                &store.partial_path(&partial),
                10_000,
                &data[10_000..12_000],
            )
            .unwrap();
            let f2 = upload(&store, &stored, &data, &tree);
            store.finish(&stored, &f2, &tree).unwrap();
            // Flip a byte of the stored shard.
            let mut bytes = fs::read(store.shard_path(&stored)).unwrap();
            for b in bytes.iter_mut() {
                *b ^= 0xFF;
            }
            fs::write(store.shard_path(&stored), bytes).unwrap();
            fs::write(dir.path().join("shards").join("stray"), b"x").unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let report = store.reconcile(2).unwrap();
        assert_eq!(report.resumable, vec![(partial, 10_000)]);
        assert_eq!(report.corrupt, vec![stored]);
        assert_eq!(report.orphans.len(), 1);
        assert_eq!(
            fs::metadata(store.partial_path(&partial)).unwrap().len(),
            10_000
        );
        let builder = store.rehash_partial(&partial, 10_000).unwrap();
        assert_eq!(builder.shard_bytes(), 10_000);
    }

    #[test]
    fn capacity_is_held_as_bytes_arrive_and_released_with_the_upload() {
        let dir = tempfile::tempdir().unwrap();
        let (data, tree) = shard(30_000, 5);
        let (a, b) = ([5u8; 32], [6u8; 32]);
        let store = Store::open(dir.path()).unwrap();
        // Announced uploads hold nothing.
        store.begin(&a, 1 << 40, [0; 32]).unwrap();
        store.begin(&b, 30_000, tree.tree.root()).unwrap();
        assert_eq!(store.used_bytes(), 0);
        store.reserve(&a, 20_000, 50_000).unwrap();
        store.reserve(&a, 10_000, 50_000).unwrap(); // already held
        assert_eq!(store.used_bytes(), 20_000);
        assert_eq!(
            store.reserve(&b, 30_001, 50_000),
            Err(Full {
                needed: 30_001,
                free: 30_000
            })
        );
        store.reserve(&b, 30_000, 50_000).unwrap();
        assert_eq!(store.used_bytes(), 50_000);
        // A dropped upload gives its bytes back; a finished one holds its size.
        store.discard(&a).unwrap();
        assert_eq!(store.used_bytes(), 30_000);
        let file = store.open_partial(&b, 0).unwrap();
        write_at(&file, &store.partial_path(&b), 0, &data).unwrap();
        store.finish(&b, &file, &tree).unwrap();
        assert_eq!(store.used_bytes(), 30_000);
        // A reopened store counts a partial upload's durable bytes.
        store.begin(&a, 1 << 20, [0; 32]).unwrap();
        store.reserve(&a, 8192, u64::MAX).unwrap();
        let file = store.open_partial(&a, 0).unwrap();
        write_at(&file, &store.partial_path(&a), 0, &[1; 4096]).unwrap();
        store.checkpoint(&a, &file, 4096).unwrap();
        drop((store, file));
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.used_bytes(), 30_000 + 4096);
    }

    #[test]
    fn a_shard_file_whose_record_was_lost_waits_for_the_chain_then_is_adopted() {
        let dir = tempfile::tempdir().unwrap();
        let (data, tree) = shard(20_000, 6);
        let (kept, wrong) = ([8u8; 32], [9u8; 32]);
        {
            let store = Store::open(dir.path()).unwrap();
            for deal in [kept, wrong] {
                let file = upload(&store, &deal, &data, &tree);
                store.finish(&deal, &file, &tree).unwrap();
            }
        }
        // The records are lost (a test double for a power loss that took the
        // database's tail): only the files remain.
        {
            let store = Store::open(dir.path()).unwrap();
            for deal in [kept, wrong] {
                let path = store.shard_path(&deal);
                let keep = dir.path().join("keep");
                fs::rename(&path, &keep).unwrap();
                store.discard(&deal).unwrap();
                fs::rename(&keep, &path).unwrap();
            }
        }
        let store = Store::open(dir.path()).unwrap();
        let report = store.reconcile(2).unwrap();
        let mut unclaimed = report.unclaimed.clone();
        unclaimed.sort();
        assert_eq!(unclaimed, vec![kept, wrong], "{report}");
        assert!(report.orphans.is_empty());
        assert_eq!(store.used_bytes(), 0);
        assert!(store.adopt(&kept, 20_000, tree.tree.root()).unwrap());
        assert!(!store.adopt(&wrong, 20_000, [1; 32]).unwrap());
        assert_eq!(
            store.record(&kept).unwrap().unwrap().state,
            RecordState::Stored
        );
        assert!(!store.shard_path(&wrong).exists());
        assert_eq!(store.used_bytes(), 20_000);
        let t = store.tree(&kept).unwrap().unwrap();
        let (segment, path) = store.proof(&kept, &t, 3).unwrap().unwrap();
        assert!(cairn_proof::verify(&tree.tree.root(), &segment, 3, &path));
    }

    #[test]
    fn meta_values_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            assert_eq!(store.meta(LOOKUP_TABLE_KEY).unwrap(), None);
            store.put_meta(LOOKUP_TABLE_KEY, &[5; 64]).unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(store.meta(LOOKUP_TABLE_KEY).unwrap(), Some(vec![5; 64]));
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store
                .db
                .put_cf(store.cf(CF_META), SCHEMA_KEY, 2u32.to_be_bytes())
                .unwrap();
        }
        match Store::open(dir.path()) {
            Err(StoreError::Schema { found: 2, .. }) => {}
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("opened a newer schema"),
        }
    }
}
