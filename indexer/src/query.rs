//! Reads for the API: paginated listings and details, over the store's keys.
use crate::model::*;
use crate::store::{cf, decode, key, Store, StoreError};
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};

/// Largest page the API serves.
pub const MAX_PAGE: usize = 500;
/// Page size when none is asked for.
pub const DEFAULT_PAGE: usize = 50;
/// Epochs an epoch map covers: the most recent ones.
pub const EPOCH_MAP_LEN: u64 = 64;
/// Index entries one `/v1/deals` page reads at most: a filter that matches
/// few of them ends the page early, with a `next_cursor` to go on from.
pub const MAX_SCAN: usize = 10 * MAX_PAGE;
/// Epochs of a deal whose outcomes `/v1/deals/{id}` counts at most: the most
/// recent ones (`counted_from_epoch` says where the count starts).
pub const MAX_DEAL_EPOCHS: u64 = 4096;
/// Deals of a dataset whose totals `/v1/datasets/{id}` adds up at most
/// (`totals_complete` says whether that was all of them).
pub const MAX_DATASET_DEALS: usize = 4096;

/// Epochs one `/v1/series` answer covers at most (p99 2.6 ms in a release
/// build over 10,000 epochs; 1,000 took 5.4 ms).
pub const MAX_SERIES: u64 = 500;
/// Epochs `/v1/series` covers when not asked: the most recent ones.
pub const DEFAULT_SERIES: u64 = 500;

/// One page of a listing. `next_cursor` is opaque; `None` on the last page.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// Where a page starts: after the key an earlier page ended on.
#[derive(Clone, Debug, Default)]
pub struct PageReq {
    pub after: Option<Vec<u8>>,
    pub limit: usize,
}

/// Filters of `/v1/deals`.
#[derive(Clone, Debug, Default)]
pub struct DealFilter {
    pub client: Option<[u8; 32]>,
    pub provider: Option<[u8; 32]>,
    pub state: Option<DealStatus>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ProviderDetail {
    #[serde(flatten)]
    pub provider: ProviderRecord,
    /// Proven share of the epochs it owed a proof for or proved
    /// (`sessions / (sessions + failed_epochs)`), if any.
    pub reliability: Option<f64>,
    /// Its recent epochs, one character each.
    pub epoch_map: EpochMap,
}

/// A provider's epochs `from_epoch .. until_epoch`, oldest first, one character
/// each: `P` proven, `F` failed, `V` void, `.` nothing owed nor proven, `?` not
/// over and not proven (yet). `until_epoch` is the first epoch not over
/// (`closed_until`), or one past the newest proven epoch if that is later.
#[derive(Clone, Debug, Default, Serialize, PartialEq)]
pub struct EpochMap {
    pub from_epoch: u64,
    pub until_epoch: u64,
    pub outcomes: String,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct DealDetail {
    #[serde(flatten)]
    pub deal: DealRecord,
    /// A page of its settlements, oldest first (`limit` and `cursor` of the
    /// request page them).
    pub settlements: Vec<SettlementRecord>,
    /// Where the next page of settlements starts (`cursor`), `null` on the last.
    pub settlements_next_cursor: Option<String>,
    /// The epochs its provider owed a proof for it (`counted_from_epoch ..
    /// owed_until`, at most [`MAX_DEAL_EPOCHS`] of the most recent ones),
    /// counted by the provider's outcome in each.
    pub epoch_outcomes: OutcomeCounts,
    /// The first epoch `epoch_outcomes` counts: its `start_epoch`, or a later
    /// one for a deal longer than [`MAX_DEAL_EPOCHS`] epochs.
    pub counted_from_epoch: u64,
    /// The most recent of those epochs (at most [`MAX_PAGE`]) up to the first
    /// not over; `outcome` is `null` for an epoch not over and not proven.
    pub epochs: Vec<DealEpoch>,
}

#[derive(Clone, Copy, Debug, Default, Serialize, PartialEq, Eq)]
pub struct OutcomeCounts {
    pub proven: u64,
    pub failed: u64,
    pub void: u64,
    /// Not over yet, and not proven.
    pub pending: u64,
}

#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct DealEpoch {
    pub epoch: u64,
    pub outcome: Option<Outcome>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct DatasetDetail {
    pub dataset_id: String,
    /// Erasure groups with at least one deal (the index group included).
    pub groups: usize,
    /// Shards (of any group) with at least one deal.
    pub shards: usize,
    /// Shards with an active deal.
    pub active_shards: usize,
    pub k: Option<u16>,
    pub n: Option<u16>,
    pub stored_bytes: u64,
    /// Escrow left in the dataset's active deals (to be paid or refunded).
    pub escrow_left: u64,
    /// The client that proposed its deals.
    pub client: Option<String>,
    /// Providers of its active deals.
    pub providers: Vec<String>,
    /// Its groups, by number, with their health.
    pub group_health: Vec<GroupHealth>,
    /// Shards the dataset can still lose: the least `can_lose` of its groups.
    pub can_lose: Option<i64>,
    /// The first epoch after its earliest-ending active deal (`None`: none active).
    pub ends_epoch: Option<u64>,
    /// Epochs from the current one to `ends_epoch`.
    pub epochs_remaining: Option<u64>,
    /// Whether the totals above cover every deal of the dataset (they add up
    /// at most [`MAX_DATASET_DEALS`], by shard).
    pub totals_complete: bool,
    /// A page of the dataset's deals, by shard: every generation of each
    /// shard (`limit` and `cursor` of the request page them).
    pub deals: Vec<DealRecord>,
    /// Where the next page of deals starts (`cursor`), `null` on the last.
    pub next_cursor: Option<String>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct EpochDetail {
    #[serde(flatten)]
    pub epoch: EpochRecord,
    /// Providers that proved the epoch, with their sessions (at most [`MAX_PAGE`]).
    pub proven_list: Vec<ProviderEpochRecord>,
    /// Providers that failed it (at most [`MAX_PAGE`]).
    pub failed_list: Vec<ProviderEpochRecord>,
    /// Providers that owed a proof in it, void (at most [`MAX_PAGE`]).
    pub void_list: Vec<ProviderEpochRecord>,
}

/// The network over epochs `from_epoch .. until_epoch` (`/v1/series`), one
/// point per epoch, oldest first.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Series {
    pub from_epoch: u64,
    pub until_epoch: u64,
    /// The epoch of the newest indexed transaction.
    pub current_epoch: Option<u64>,
    /// The first epoch with a point (charts start there).
    pub first_epoch: Option<u64>,
    pub points: Vec<SeriesPoint>,
}

/// A transaction with its events (`/v1/tx/{signature}`).
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct TxDetail {
    #[serde(flatten)]
    pub tx: TxRecord,
    pub event_list: Vec<EventRecord>,
}

/// What a search string names (`/v1/search`).
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct SearchMatch {
    /// `provider`, `deal`, `client`, `dataset`, `epoch` or `transaction`.
    pub kind: &'static str,
    pub id: String,
    /// The API path of the entity (for a client, its deals).
    pub path: String,
}

/// A dataset's erasure group, and how many more of its shards can be lost.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct GroupHealth {
    /// The group's number (`u32::MAX`: the index group).
    pub group: u32,
    pub group_id: String,
    pub k: Option<u16>,
    pub n: Option<u16>,
    /// Shards with an active deal.
    pub active_shards: usize,
    /// Active shards beyond the `k` needed: how many more can be lost
    /// (negative: the group cannot be read).
    pub can_lose: Option<i64>,
}

/// Builds a page from scanned keys: `next_cursor` is the hex of the last key
/// when the page is full.
fn page<T>(rows: Vec<(Vec<u8>, T)>, limit: usize) -> Page<T> {
    let next_cursor = (rows.len() == limit)
        .then(|| rows.last().map(|(k, _)| hex::encode(k)))
        .flatten();
    Page {
        items: rows.into_iter().map(|(_, v)| v).collect(),
        next_cursor,
    }
}

/// Reads the store serves to the API.
pub trait IndexRead: Send + Sync + 'static {
    fn stats(&self) -> Result<Stats, StoreError>;
    fn cursor(&self) -> Result<Option<Cursor>, StoreError>;
    fn market(&self) -> Result<Option<MarketRecord>, StoreError>;
    fn providers(&self, req: &PageReq) -> Result<Page<ProviderRecord>, StoreError>;
    fn provider(&self, id: &[u8; 32]) -> Result<Option<ProviderDetail>, StoreError>;
    /// A provider's epoch outcomes, newest first.
    fn provider_epochs(
        &self,
        id: &[u8; 32],
        req: &PageReq,
    ) -> Result<Page<ProviderEpochRecord>, StoreError>;
    fn deals(&self, filter: &DealFilter, req: &PageReq) -> Result<Page<DealRecord>, StoreError>;
    /// A deal, with a page of its settlements.
    fn deal(&self, id: &[u8; 32], req: &PageReq) -> Result<Option<DealDetail>, StoreError>;
    /// A dataset's totals, with a page of its deals.
    fn dataset(&self, id: &[u8; 32], req: &PageReq) -> Result<Option<DatasetDetail>, StoreError>;
    /// Epochs, newest first.
    fn epochs(&self, req: &PageReq) -> Result<Page<EpochRecord>, StoreError>;
    fn epoch(&self, n: u64) -> Result<Option<EpochDetail>, StoreError>;
    /// Transactions the follower skipped, oldest first.
    fn skipped(&self, req: &PageReq) -> Result<Page<SkippedTx>, StoreError>;
    /// The network over epochs `from .. until` (defaults: the most recent
    /// [`DEFAULT_SERIES`]); at most [`MAX_SERIES`] epochs.
    fn series(&self, from: Option<u64>, until: Option<u64>) -> Result<Series, StoreError>;
    fn tx(&self, signature: &str) -> Result<Option<TxDetail>, StoreError>;
    /// A deal's events, oldest first.
    fn deal_events(&self, id: &[u8; 32], req: &PageReq) -> Result<Page<EventRecord>, StoreError>;
    /// Everything `query` names (a provider, deal, client, dataset, epoch or
    /// transaction signature), best first.
    fn search(&self, query: &str) -> Result<Vec<SearchMatch>, StoreError>;
}

fn pubkey_bytes(s: &str) -> Vec<u8> {
    s.parse::<cairn_chain::Pubkey>()
        .map(|k| k.to_bytes().to_vec())
        .unwrap_or_default()
}

impl Store {
    fn deal_by_key(&self, deal: &[u8]) -> Result<Option<DealRecord>, StoreError> {
        self.get(cf::DEALS, deal)
    }

    /// The epoch of the newest indexed transaction.
    fn current_epoch(&self) -> Result<Option<u64>, StoreError> {
        let slots = self
            .get::<MarketRecord>(cf::META, crate::store::meta::MARKET)?
            .map(|m| m.epoch_slots)
            .filter(|&s| s > 0);
        slots
            .map(|slots| Store::stats(self).map(|s| s.last_slot / slots))
            .transpose()
    }

    fn closed_until(&self) -> Result<u64, StoreError> {
        Ok(Store::stats(self)?.closed_until.unwrap_or(0))
    }

    /// A provider's outcome records of epochs `from .. until`, in order.
    fn outcomes(
        &self,
        provider: &[u8],
        from: u64,
        until: u64,
    ) -> Result<Vec<ProviderEpochRecord>, StoreError> {
        if from >= until {
            return Ok(Vec::new());
        }
        self.range(
            cf::OUTCOMES,
            &key::cat(&[provider, &key::u64(from)]),
            Some(&key::cat(&[provider, &key::u64(until)])),
        )?
        .into_iter()
        .map(|(_, v)| decode(cf::OUTCOMES, &v))
        .collect()
    }

    /// The outcome records of `epoch` that were `outcome` (at most [`MAX_PAGE`]).
    fn epoch_outcomes(
        &self,
        epoch: u64,
        outcome: Outcome,
    ) -> Result<Vec<ProviderEpochRecord>, StoreError> {
        let prefix = key::cat(&[&key::u64(epoch), &[outcome.code()]]);
        let mut out = Vec::new();
        for (k, _) in self.scan(cf::OUTCOMES_BY_EPOCH, &prefix, None, false, MAX_PAGE)? {
            let provider = &k[prefix.len()..];
            if let Some(r) = self.get(cf::OUTCOMES, &key::cat(&[provider, &key::u64(epoch)]))? {
                out.push(r);
            }
        }
        Ok(out)
    }

    fn epoch_map(&self, provider: &[u8], closed_until: u64) -> Result<EpochMap, StoreError> {
        // The newest outcome, which may be a proof of an epoch not over yet.
        let newest = self
            .scan(cf::OUTCOMES, provider, None, true, 1)?
            .first()
            .and_then(|(k, _)| k.get(32..40))
            .map(|e| u64::from_be_bytes(e.try_into().expect("8 bytes")));
        let until = closed_until.max(newest.map_or(0, |e| e + 1));
        let from = until.saturating_sub(EPOCH_MAP_LEN);
        let known: HashMap<u64, Outcome> = self
            .outcomes(provider, from, until)?
            .into_iter()
            .map(|r| (r.epoch, r.outcome))
            .collect();
        let outcomes = (from..until)
            .map(|e| match known.get(&e) {
                Some(o) => o.letter(),
                None if e < closed_until => '.',
                None => '?',
            })
            .collect();
        Ok(EpochMap {
            from_epoch: from,
            until_epoch: until,
            outcomes,
        })
    }
}

impl IndexRead for Store {
    fn stats(&self) -> Result<Stats, StoreError> {
        Store::stats(self)
    }

    fn cursor(&self) -> Result<Option<Cursor>, StoreError> {
        Store::cursor(self)
    }

    fn market(&self) -> Result<Option<MarketRecord>, StoreError> {
        self.get(cf::META, crate::store::meta::MARKET)
    }

    fn providers(&self, req: &PageReq) -> Result<Page<ProviderRecord>, StoreError> {
        let rows = self.scan(cf::PROVIDERS, &[], req.after.as_deref(), false, req.limit)?;
        let rows = rows
            .into_iter()
            .map(|(k, v)| Ok((k, decode(cf::PROVIDERS, &v)?)))
            .collect::<Result<_, StoreError>>()?;
        Ok(page(rows, req.limit))
    }

    fn provider(&self, id: &[u8; 32]) -> Result<Option<ProviderDetail>, StoreError> {
        let Some(provider) = self.get::<ProviderRecord>(cf::PROVIDERS, id)? else {
            return Ok(None);
        };
        let owed = provider.sessions + provider.failed_epochs;
        Ok(Some(ProviderDetail {
            reliability: (owed > 0).then(|| provider.sessions as f64 / owed as f64),
            epoch_map: self.epoch_map(id, self.closed_until()?)?,
            provider,
        }))
    }

    fn provider_epochs(
        &self,
        id: &[u8; 32],
        req: &PageReq,
    ) -> Result<Page<ProviderEpochRecord>, StoreError> {
        // A cursor from another provider starts at the newest instead.
        let after = req.after.as_deref().filter(|a| a.starts_with(id));
        let rows = self.scan(cf::OUTCOMES, id, after, true, req.limit)?;
        let rows = rows
            .into_iter()
            .map(|(k, v)| Ok((k, decode(cf::OUTCOMES, &v)?)))
            .collect::<Result<_, StoreError>>()?;
        Ok(page(rows, req.limit))
    }

    fn deals(&self, f: &DealFilter, req: &PageReq) -> Result<Page<DealRecord>, StoreError> {
        // The most selective index leads; the other filters are checked per deal.
        let (index, prefix): (&'static str, Vec<u8>) = match (&f.client, &f.provider, &f.state) {
            (Some(c), _, _) => (cf::DEALS_BY_CLIENT, c.to_vec()),
            (None, Some(p), _) => (cf::DEALS_BY_PROVIDER, p.to_vec()),
            (None, None, Some(s)) => (cf::DEALS_BY_STATE, vec![s.code()]),
            (None, None, None) => (cf::DEALS, Vec::new()),
        };
        let mut after = req.after.clone();
        if let Some(a) = &after {
            if !a.starts_with(&prefix) {
                // A cursor from another filter: start at the prefix instead of skipping it.
                after = None;
            }
        }
        let mut rows = Vec::new();
        let mut scanned = 0;
        loop {
            if scanned >= MAX_SCAN {
                // Bounded work per request: the page ends early, and the
                // cursor goes on after the last entry read.
                return Ok(Page {
                    items: rows.into_iter().map(|(_, v)| v).collect(),
                    next_cursor: after.map(hex::encode),
                });
            }
            let want = (req.limit - rows.len()).max(64).min(MAX_SCAN - scanned);
            let batch = self.scan(index, &prefix, after.as_deref(), false, want)?;
            let done = batch.len() < want;
            scanned += batch.len();
            for (k, v) in batch {
                after = Some(k.clone());
                let deal = if index == cf::DEALS {
                    decode::<DealRecord>(cf::DEALS, &v)?
                } else {
                    match self.deal_by_key(&k[prefix.len()..])? {
                        Some(d) => d,
                        None => continue,
                    }
                };
                let keep = f
                    .client
                    .is_none_or(|c| deal.client == cairn_chain::Pubkey::from(c).to_string())
                    && f.provider
                        .is_none_or(|p| deal.provider == cairn_chain::Pubkey::from(p).to_string())
                    && f.state.is_none_or(|s| deal.state == s);
                if keep {
                    rows.push((k, deal));
                    if rows.len() == req.limit {
                        return Ok(page(rows, req.limit));
                    }
                }
            }
            if done {
                return Ok(Page {
                    items: rows.into_iter().map(|(_, v)| v).collect(),
                    next_cursor: None,
                });
            }
        }
    }

    fn deal(&self, id: &[u8; 32], req: &PageReq) -> Result<Option<DealDetail>, StoreError> {
        let Some(deal) = self.deal_by_key(id)? else {
            return Ok(None);
        };
        // Only this deal's settlements: a client may propose again at a closed
        // deal's address (the same generation), after that deal's settlements.
        // A cursor of another deal starts at the first instead.
        let after = req.after.as_deref().filter(|a| a.starts_with(id));
        let rows = self.scan(cf::SETTLEMENTS, id, after, false, req.limit)?;
        let settlements_next_cursor = (rows.len() == req.limit)
            .then(|| rows.last().map(|(k, _)| hex::encode(k)))
            .flatten();
        let settlements = rows
            .into_iter()
            .map(|(_, v)| decode::<SettlementRecord>(cf::SETTLEMENTS, &v))
            .filter(|s| s.as_ref().map_or(true, |s| s.slot >= deal.proposed_slot))
            .collect::<Result<_, _>>()?;
        // The epochs its provider owed for it, as that provider's outcomes.
        let owed_until = match deal.owed_until {
            0 if deal.state == DealStatus::Active => deal.end_epoch,
            0 => deal.start_epoch,
            n => n,
        };
        // The most recent epochs only: the read is bounded however long the deal.
        let start = deal
            .start_epoch
            .min(owed_until)
            .max(owed_until.saturating_sub(MAX_DEAL_EPOCHS));
        let records = self.outcomes(&pubkey_bytes(&deal.provider), start, owed_until)?;
        let mut counts = OutcomeCounts::default();
        for r in &records {
            match r.outcome {
                Outcome::Proven => counts.proven += 1,
                Outcome::Failed => counts.failed += 1,
                Outcome::Void => counts.void += 1,
            }
        }
        counts.pending = (owed_until - start) - records.len() as u64;
        let newest = records.last().map_or(0, |r| r.epoch + 1);
        let until = owed_until.min(self.closed_until()?.max(newest)).max(start);
        let from = until.saturating_sub(MAX_PAGE as u64).max(start);
        let known: HashMap<u64, Outcome> = records.iter().map(|r| (r.epoch, r.outcome)).collect();
        let epochs = (from..until)
            .map(|epoch| DealEpoch {
                epoch,
                outcome: known.get(&epoch).copied(),
            })
            .collect();
        Ok(Some(DealDetail {
            deal,
            settlements,
            settlements_next_cursor,
            epoch_outcomes: counts,
            counted_from_epoch: start,
            epochs,
        }))
    }

    fn dataset(&self, id: &[u8; 32], req: &PageReq) -> Result<Option<DatasetDetail>, StoreError> {
        // The totals, over at most MAX_DATASET_DEALS deals (one more is read to
        // tell whether that was all).
        let keys = self.scan(cf::DEALS_BY_DATASET, id, None, false, MAX_DATASET_DEALS + 1)?;
        let totals_complete = keys.len() <= MAX_DATASET_DEALS;
        let mut deals = Vec::new();
        for (k, _) in keys.iter().take(MAX_DATASET_DEALS) {
            if let Some(d) = self.deal_by_key(&k[32 + 2..])? {
                deals.push(d);
            }
        }
        if deals.is_empty() {
            return Ok(None);
        }
        // The page of deals asked for (a cursor of another dataset starts at
        // the first).
        let after = req.after.as_deref().filter(|a| a.starts_with(id));
        let rows = self.scan(cf::DEALS_BY_DATASET, id, after, false, req.limit)?;
        let next_cursor = (rows.len() == req.limit)
            .then(|| rows.last().map(|(k, _)| hex::encode(k)))
            .flatten();
        let mut listed = Vec::with_capacity(rows.len());
        for (k, _) in &rows {
            if let Some(d) = self.deal_by_key(&k[32 + 2..])? {
                listed.push(d);
            }
        }
        let active: Vec<&DealRecord> = deals
            .iter()
            .filter(|d| d.state == DealStatus::Active)
            .collect();
        let shards: std::collections::BTreeSet<(&str, u16)> = deals
            .iter()
            .map(|d| (d.group_id.as_str(), d.shard_index))
            .collect();
        let active_shards: std::collections::BTreeSet<(&str, u16)> = active
            .iter()
            .map(|d| (d.group_id.as_str(), d.shard_index))
            .collect();
        let groups: std::collections::BTreeSet<&str> =
            deals.iter().map(|d| d.group_id.as_str()).collect();
        let mut group_health: BTreeMap<u32, GroupHealth> = BTreeMap::new();
        for d in &deals {
            let g = group_health.entry(d.group).or_insert_with(|| GroupHealth {
                group: d.group,
                group_id: d.group_id.clone(),
                k: None,
                n: None,
                active_shards: 0,
                can_lose: None,
            });
            g.k = g.k.or(d.k);
            g.n = g.n.or(d.n);
        }
        // Shards with an active deal, by group number (a shard's group number
        // and group id go together).
        let active_by_group: std::collections::BTreeSet<(u32, u16)> =
            active.iter().map(|d| (d.group, d.shard_index)).collect();
        for (group, _) in &active_by_group {
            if let Some(g) = group_health.get_mut(group) {
                g.active_shards += 1;
            }
        }
        for g in group_health.values_mut() {
            g.can_lose = g.k.map(|k| g.active_shards as i64 - i64::from(k));
        }
        let current = self.current_epoch()?;
        let ends_epoch = active.iter().map(|d| d.end_epoch).min();
        let providers: std::collections::BTreeSet<&str> =
            active.iter().map(|d| d.provider.as_str()).collect();
        Ok(Some(DatasetDetail {
            escrow_left: active.iter().map(|d| d.escrow).sum(),
            client: deals.first().map(|d| d.client.clone()),
            providers: providers.into_iter().map(str::to_string).collect(),
            can_lose: group_health.values().filter_map(|g| g.can_lose).min(),
            group_health: group_health.into_values().collect(),
            ends_epoch,
            epochs_remaining: ends_epoch
                .zip(current)
                .map(|(end, now)| end.saturating_sub(now)),
            dataset_id: hex::encode(id),
            groups: groups.len(),
            shards: shards.len(),
            active_shards: active_shards.len(),
            k: deals.iter().find_map(|d| d.k),
            n: deals.iter().find_map(|d| d.n),
            stored_bytes: active.iter().map(|d| d.shard_bytes).sum(),
            totals_complete,
            deals: listed,
            next_cursor,
        }))
    }

    fn epochs(&self, req: &PageReq) -> Result<Page<EpochRecord>, StoreError> {
        let rows = self.scan(cf::EPOCHS, &[], req.after.as_deref(), true, req.limit)?;
        let rows = rows
            .into_iter()
            .map(|(k, v)| Ok((k, decode(cf::EPOCHS, &v)?)))
            .collect::<Result<_, StoreError>>()?;
        Ok(page(rows, req.limit))
    }

    fn skipped(&self, req: &PageReq) -> Result<Page<SkippedTx>, StoreError> {
        let prefix = crate::store::meta::SKIPPED;
        let after = req.after.as_deref().filter(|a| a.starts_with(prefix));
        let rows = self.scan(cf::META, prefix, after, false, req.limit)?;
        let rows = rows
            .into_iter()
            .map(|(k, v)| Ok((k, decode(cf::META, &v)?)))
            .collect::<Result<_, StoreError>>()?;
        Ok(page(rows, req.limit))
    }

    fn epoch(&self, n: u64) -> Result<Option<EpochDetail>, StoreError> {
        let Some(epoch) = self.get::<EpochRecord>(cf::EPOCHS, &key::u64(n))? else {
            return Ok(None);
        };
        Ok(Some(EpochDetail {
            epoch,
            proven_list: self.epoch_outcomes(n, Outcome::Proven)?,
            failed_list: self.epoch_outcomes(n, Outcome::Failed)?,
            void_list: self.epoch_outcomes(n, Outcome::Void)?,
        }))
    }

    fn series(&self, from: Option<u64>, until: Option<u64>) -> Result<Series, StoreError> {
        let current = self.current_epoch()?;
        let first = self
            .scan(cf::SERIES, &[], None, false, 1)?
            .first()
            .map(|(k, _)| key::be_u64(k));
        // Nothing past the newest indexed epoch.
        let newest = current.map_or(0, |c| c + 1);
        let until = until.unwrap_or(newest).min(newest);
        let from = from
            .unwrap_or(until.saturating_sub(DEFAULT_SERIES))
            .max(first.unwrap_or(until))
            .min(until);
        let until = until.min(from + MAX_SERIES);
        let mut points = Vec::with_capacity((until - from) as usize);
        if from < until {
            // The totals carried into the first epoch, if it has none: the
            // newest earlier point that has them (a point without them is an
            // epoch no transaction was in; a few in a row at most).
            let mut carried = SeriesPoint::default();
            for (_, v) in self.scan(cf::SERIES, &[], Some(&key::u64(from)), true, 64)? {
                let p: SeriesPoint = decode(cf::SERIES, &v)?;
                if p.has_totals {
                    carried = p;
                    break;
                }
            }
            let stored: Vec<SeriesPoint> = self
                .range(cf::SERIES, &key::u64(from), Some(&key::u64(until)))?
                .into_iter()
                .map(|(_, v)| decode(cf::SERIES, &v))
                .collect::<Result<_, _>>()?;
            let mut stored = stored.into_iter().peekable();
            for epoch in from..until {
                let here = stored.next_if(|p| p.epoch == epoch);
                let mut point = match here {
                    Some(p) if p.has_totals => p,
                    // No transaction in this epoch: the totals carry on.
                    other => {
                        let outcomes = other.unwrap_or_default();
                        SeriesPoint {
                            epoch,
                            new_deals: 0,
                            new_slashed: 0,
                            new_paid: 0,
                            has_totals: false,
                            opened: outcomes.opened,
                            closed: outcomes.closed,
                            proven: outcomes.proven,
                            failed: outcomes.failed,
                            void: outcomes.void,
                            ..carried.clone()
                        }
                    }
                };
                point.epoch = epoch;
                carried = point.clone();
                points.push(point);
            }
        }
        Ok(Series {
            from_epoch: from,
            until_epoch: until,
            current_epoch: current,
            first_epoch: first,
            points,
        })
    }

    fn tx(&self, signature: &str) -> Result<Option<TxDetail>, StoreError> {
        let Some(tx) = self.get::<TxRecord>(cf::TXS, signature.as_bytes())? else {
            return Ok(None);
        };
        let event_list = self
            .range(
                cf::EVENTS,
                &key::u64(tx.first_event),
                Some(&key::u64(tx.first_event + u64::from(tx.events))),
            )?
            .into_iter()
            .map(|(_, v)| decode(cf::EVENTS, &v))
            .collect::<Result<_, _>>()?;
        Ok(Some(TxDetail { tx, event_list }))
    }

    fn deal_events(&self, id: &[u8; 32], req: &PageReq) -> Result<Page<EventRecord>, StoreError> {
        let after = req.after.as_deref().filter(|a| a.starts_with(id));
        let rows = self.scan(cf::DEAL_EVENTS, id, after, false, req.limit)?;
        let mut out = Vec::with_capacity(rows.len());
        for (k, _) in rows {
            if let Some(e) = self.get::<EventRecord>(cf::EVENTS, &k[32..])? {
                out.push((k, e));
            }
        }
        Ok(page(out, req.limit))
    }

    fn search(&self, query: &str) -> Result<Vec<SearchMatch>, StoreError> {
        let q = query.trim();
        let mut out = Vec::new();
        let mut found =
            |kind: &'static str, id: String, path: String| out.push(SearchMatch { kind, id, path });
        if let Ok(n) = q.parse::<u64>() {
            if self.get_raw(cf::EPOCHS, &key::u64(n))?.is_some() {
                found("epoch", n.to_string(), format!("/v1/epochs/{n}"));
            }
        }
        if let Some(id) = hex::decode(q).ok().filter(|b| b.len() == 32) {
            if !self
                .scan(cf::DEALS_BY_DATASET, &id, None, false, 1)?
                .is_empty()
            {
                let id = hex::encode(id);
                found("dataset", id.clone(), format!("/v1/datasets/{id}"));
            }
        }
        match bs58::decode(q).into_vec() {
            Ok(bytes) if bytes.len() == 32 => {
                let id = bs58::encode(&bytes).into_string();
                if self.get_raw(cf::PROVIDERS, &bytes)?.is_some() {
                    found("provider", id.clone(), format!("/v1/providers/{id}"));
                }
                if self.get_raw(cf::DEALS, &bytes)?.is_some() {
                    found("deal", id.clone(), format!("/v1/deals/{id}"));
                }
                if !self
                    .scan(cf::DEALS_BY_CLIENT, &bytes, None, false, 1)?
                    .is_empty()
                {
                    found("client", id.clone(), format!("/v1/deals?client={id}"));
                }
            }
            Ok(bytes) if bytes.len() == 64 && self.get_raw(cf::TXS, q.as_bytes())?.is_some() => {
                found("transaction", q.to_string(), format!("/v1/tx/{q}"));
            }
            _ => {}
        }
        Ok(out)
    }
}
