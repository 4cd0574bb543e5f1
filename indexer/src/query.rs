//! Reads for the API: paginated listings and details, over the store's keys.
use crate::model::*;
use crate::store::{cf, decode, key, Store, StoreError};
use serde::Serialize;
use std::collections::HashMap;

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
        Ok(Some(DatasetDetail {
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
}
