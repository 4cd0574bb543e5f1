//! The RocksDB store: one column family per entity and per secondary index,
//! big-endian ordered keys, JSON values, a schema version checked at open.
//!
//! Every change goes through a [`Change`]: reads see the change's own writes,
//! and [`Change::commit`] writes them with the cursor and the totals in one
//! `WriteBatch`, so a crash at any point leaves either all of it or none.
use crate::model::*;
use rocksdb::{
    ColumnFamily, ColumnFamilyDescriptor, Direction, IteratorMode, Options, WriteBatch, DB,
};
use serde::{de::DeserializeOwned, Serialize};
use std::{collections::BTreeMap, path::Path};

/// Column families (created on open when missing).
pub mod cf {
    /// Schema version, cursor, totals, the market.
    pub const META: &str = "meta";
    /// provider address (32) → `ProviderRecord`
    pub const PROVIDERS: &str = "providers";
    /// deal address (32) → `DealRecord`
    pub const DEALS: &str = "deals";
    /// epoch (u64 BE) → `EpochRecord`
    pub const EPOCHS: &str = "epochs";
    /// deal (32) ‖ first epoch settled (u64 BE) → `SettlementRecord`
    pub const SETTLEMENTS: &str = "settlements";
    /// provider (32) ‖ epoch (u64 BE) → `ProviderEpochRecord`
    pub const OUTCOMES: &str = "outcomes";
    /// sequence number (u64 BE) → `EventRecord`
    pub const EVENTS: &str = "events";
    /// client (32) ‖ deal (32) → ()
    pub const DEALS_BY_CLIENT: &str = "deals_by_client";
    /// provider (32) ‖ deal (32) → ()
    pub const DEALS_BY_PROVIDER: &str = "deals_by_provider";
    /// state (1) ‖ deal (32) → ()
    pub const DEALS_BY_STATE: &str = "deals_by_state";
    /// dataset id (32) ‖ shard index (u16 BE) ‖ deal (32) → ()
    pub const DEALS_BY_DATASET: &str = "deals_by_dataset";
    /// epoch (u64 BE) ‖ outcome (1) ‖ provider (32) → ()
    pub const OUTCOMES_BY_EPOCH: &str = "outcomes_by_epoch";
    /// epoch (u64 BE) ‖ provider (32) → change (i64) in the provider's deals owed
    /// from that epoch on; consumed when the epoch closes.
    pub const LOAD_CHANGES: &str = "load_changes";
    /// provider (32) → deals (u64) the provider owed proofs for in the last closed
    /// epoch (absent: none).
    pub const PROVIDER_LOAD: &str = "provider_load";
    /// epoch (u64 BE) → `SeriesPoint`: the totals at the epoch's end, and what
    /// it added (the explorer's charts).
    pub const SERIES: &str = "series";
    /// signature (base58 text) → `TxRecord`
    pub const TXS: &str = "txs";
    /// deal (32) ‖ event sequence number (u64 BE) → (): a deal's timeline.
    pub const DEAL_EVENTS: &str = "deal_events";

    pub const ALL: [&str; 17] = [
        META,
        PROVIDERS,
        DEALS,
        EPOCHS,
        SETTLEMENTS,
        OUTCOMES,
        EVENTS,
        DEALS_BY_CLIENT,
        DEALS_BY_PROVIDER,
        DEALS_BY_STATE,
        DEALS_BY_DATASET,
        OUTCOMES_BY_EPOCH,
        LOAD_CHANGES,
        PROVIDER_LOAD,
        SERIES,
        TXS,
        DEAL_EVENTS,
    ];
}

/// Keys of the `meta` column family.
pub mod meta {
    pub const SCHEMA_VERSION: &[u8] = b"schema_version";
    pub const CURSOR: &[u8] = b"cursor";
    pub const STATS: &[u8] = b"stats";
    /// `MarketRecord`.
    pub const MARKET: &[u8] = b"market";
    /// `SkippedTx` records, under this prefix and their number (big-endian).
    pub const SKIPPED: &[u8] = b"skipped/";
}

/// Version of the layout above; a store written by another version is refused.
/// Version 2: Proving v2 (sessions, outcomes, settlements, generations).
/// Version 3: datasets in groups (deals carry their group id and number).
/// Version 4: the explorer's keys (per-epoch series, transactions by signature,
/// deal timelines; events carry their subjects and block time).
pub const SCHEMA_VERSION: u32 = 4;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("RocksDB: {0}")]
    Db(#[from] rocksdb::Error),
    #[error(
        "the store at {path} has schema version {found}, this indexer writes version {expected}; \
         delete the directory and index again"
    )]
    Schema {
        path: String,
        found: u32,
        expected: u32,
    },
    #[error("corrupt value in column family {cf}: {source}")]
    Corrupt {
        cf: &'static str,
        source: serde_json::Error,
    },
}

pub struct Store {
    db: DB,
}

/// Key and value of one stored entry.
pub type Entry = (Vec<u8>, Vec<u8>);

/// Big-endian key helpers: byte order is numeric order.
pub mod key {
    pub fn u64(n: u64) -> [u8; 8] {
        n.to_be_bytes()
    }
    /// The big-endian `u64` a key starts with (an epoch or a sequence number).
    pub fn be_u64(key: &[u8]) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&key[..8]);
        u64::from_be_bytes(b)
    }
    pub fn cat(parts: &[&[u8]]) -> Vec<u8> {
        parts.concat()
    }
    /// The first key after every key starting with `prefix` (`None`: no such key,
    /// the prefix is all `0xff`).
    pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
        let mut end = prefix.to_vec();
        loop {
            match end.pop() {
                None => return None,
                Some(0xff) => continue,
                Some(b) => {
                    end.push(b + 1);
                    return Some(end);
                }
            }
        }
    }
}

impl Store {
    /// Opens (or creates) the store at `path`, creating missing column
    /// families, and checks the schema version.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let mut opts = Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        opts.set_compression_type(rocksdb::DBCompressionType::Lz4);
        // Column families of another schema version are opened too (RocksDB
        // refuses to open a store without all of its column families), so that
        // such a store gets the schema error below.
        let mut names: Vec<String> = cf::ALL.iter().map(|name| name.to_string()).collect();
        for existing in DB::list_cf(&opts, path).unwrap_or_default() {
            if !names.contains(&existing) {
                names.push(existing);
            }
        }
        let cfs = names
            .iter()
            .map(|name| ColumnFamilyDescriptor::new(name, opts.clone()));
        let db = DB::open_cf_descriptors(&opts, path, cfs)?;
        let store = Store { db };
        let meta = store.cf(cf::META);
        match store.db.get_cf(meta, meta::SCHEMA_VERSION)? {
            None => store
                .db
                .put_cf(meta, meta::SCHEMA_VERSION, SCHEMA_VERSION.to_be_bytes())?,
            Some(v) => {
                let found = v
                    .as_slice()
                    .try_into()
                    .map(u32::from_be_bytes)
                    .unwrap_or(u32::MAX);
                if found != SCHEMA_VERSION {
                    return Err(StoreError::Schema {
                        path: path.display().to_string(),
                        found,
                        expected: SCHEMA_VERSION,
                    });
                }
            }
        }
        Ok(store)
    }

    pub(crate) fn cf(&self, name: &str) -> &ColumnFamily {
        self.db
            .cf_handle(name)
            .expect("every column family is created at open")
    }

    pub fn get_raw(&self, cf: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.db.get_cf(self.cf(cf), key)?)
    }

    pub fn get<T: DeserializeOwned>(
        &self,
        cf: &'static str,
        key: &[u8],
    ) -> Result<Option<T>, StoreError> {
        self.get_raw(cf, key)?.map(|v| decode(cf, &v)).transpose()
    }

    pub fn cursor(&self) -> Result<Option<Cursor>, StoreError> {
        self.get(cf::META, meta::CURSOR)
    }

    pub fn stats(&self) -> Result<Stats, StoreError> {
        Ok(self.get(cf::META, meta::STATS)?.unwrap_or_default())
    }

    /// Up to `limit` entries of `cf` whose key starts with `prefix`, in key
    /// order (or reverse), strictly after `after` when given.
    pub fn scan(
        &self,
        cf: &'static str,
        prefix: &[u8],
        after: Option<&[u8]>,
        reverse: bool,
        limit: usize,
    ) -> Result<Vec<Entry>, StoreError> {
        let handle = self.cf(cf);
        // The first key after every key with this prefix (for a reverse scan).
        let upper_bound = key::prefix_end(prefix);
        let mode = match (reverse, after) {
            (false, Some(a)) => IteratorMode::From(a, Direction::Forward),
            (false, None) => IteratorMode::From(prefix, Direction::Forward),
            (true, Some(a)) => IteratorMode::From(a, Direction::Reverse),
            (true, None) => match &upper_bound {
                Some(u) => IteratorMode::From(u, Direction::Reverse),
                None => IteratorMode::End,
            },
        };
        let mut out = Vec::new();
        for item in self.db.iterator_cf(handle, mode) {
            let (k, v) = item?;
            if Some(&*k) == after
                || (reverse && after.is_none() && Some(&*k) == upper_bound.as_deref())
            {
                continue;
            }
            if !k.starts_with(prefix) {
                if reverse && upper_bound.as_deref().is_some_and(|u| *k >= *u) {
                    continue;
                }
                break;
            }
            out.push((k.into_vec(), v.into_vec()));
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    /// Every entry of `cf` with `start <= key < end` (`end` `None`: to the last).
    pub fn range(
        &self,
        cf: &'static str,
        start: &[u8],
        end: Option<&[u8]>,
    ) -> Result<Vec<Entry>, StoreError> {
        let mut out = Vec::new();
        let mode = IteratorMode::From(start, Direction::Forward);
        for item in self.db.iterator_cf(self.cf(cf), mode) {
            let (k, v) = item?;
            if end.is_some_and(|end| *k >= *end) {
                break;
            }
            out.push((k.into_vec(), v.into_vec()));
        }
        Ok(out)
    }

    pub fn change(&self) -> Result<Change<'_>, StoreError> {
        Ok(Change {
            stats: self.stats()?,
            store: self,
            writes: BTreeMap::new(),
        })
    }
}

pub(crate) fn decode<T: DeserializeOwned>(cf: &'static str, v: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(v).map_err(|source| StoreError::Corrupt { cf, source })
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("records serialize")
}

/// Writes in preparation: read-your-writes over the store, committed at once.
pub struct Change<'a> {
    store: &'a Store,
    writes: BTreeMap<(&'static str, Vec<u8>), Option<Vec<u8>>>,
    pub stats: Stats,
}

impl Change<'_> {
    pub fn get<T: DeserializeOwned>(
        &self,
        cf: &'static str,
        key: &[u8],
    ) -> Result<Option<T>, StoreError> {
        match self.writes.get(&(cf, key.to_vec())) {
            Some(Some(v)) => decode(cf, v).map(Some),
            Some(None) => Ok(None),
            None => self.store.get(cf, key),
        }
    }

    pub fn exists(&self, cf: &'static str, key: &[u8]) -> Result<bool, StoreError> {
        match self.writes.get(&(cf, key.to_vec())) {
            Some(v) => Ok(v.is_some()),
            None => Ok(self.store.get_raw(cf, key)?.is_some()),
        }
    }

    /// Every entry of `cf` with `start <= key < end` (`end` `None`: to the last),
    /// this change's writes included, in key order.
    pub fn range(
        &self,
        cf: &'static str,
        start: &[u8],
        end: Option<&[u8]>,
    ) -> Result<Vec<Entry>, StoreError> {
        let mut merged: BTreeMap<Vec<u8>, Vec<u8>> =
            self.store.range(cf, start, end)?.into_iter().collect();
        let from = (cf, start.to_vec());
        let pending = match end {
            Some(end) => self.writes.range(from..(cf, end.to_vec())),
            None => self.writes.range(from..),
        };
        for ((written_cf, k), v) in pending {
            if *written_cf != cf {
                break;
            }
            match v {
                Some(v) => merged.insert(k.clone(), v.clone()),
                None => merged.remove(k),
            };
        }
        Ok(merged.into_iter().collect())
    }

    /// Every entry of `cf` whose key starts with `prefix`, this change's writes
    /// included, in key order.
    pub fn scan_prefix(&self, cf: &'static str, prefix: &[u8]) -> Result<Vec<Entry>, StoreError> {
        self.range(cf, prefix, key::prefix_end(prefix).as_deref())
    }

    pub fn put<T: Serialize>(&mut self, cf: &'static str, key: Vec<u8>, value: &T) {
        self.writes.insert((cf, key), Some(encode(value)));
    }

    pub fn put_raw(&mut self, cf: &'static str, key: Vec<u8>, value: Vec<u8>) {
        self.writes.insert((cf, key), Some(value));
    }

    pub fn delete(&mut self, cf: &'static str, key: Vec<u8>) {
        self.writes.insert((cf, key), None);
    }

    /// Writes everything, the totals and (when given) the new cursor in one batch.
    pub fn commit(self, cursor: Option<&Cursor>) -> Result<(), StoreError> {
        let mut batch = WriteBatch::default();
        for ((cf, key), value) in &self.writes {
            let handle = self.store.cf(cf);
            match value {
                Some(v) => batch.put_cf(handle, key, v),
                None => batch.delete_cf(handle, key),
            }
        }
        let meta = self.store.cf(cf::META);
        batch.put_cf(meta, meta::STATS, encode(&self.stats));
        if let Some(cursor) = cursor {
            batch.put_cf(meta, meta::CURSOR, encode(cursor));
        }
        self.store.db.write(batch)?;
        Ok(())
    }
}
