//! Reads for the API: paginated listings and details, over the store's keys.
use crate::model::*;
use crate::store::{cf, decode, key, Store, StoreError};
use serde::Serialize;

/// Largest page the API serves.
pub const MAX_PAGE: usize = 500;
/// Page size when none is asked for.
pub const DEFAULT_PAGE: usize = 50;

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
    /// Proven share of settled epochs (`proofs / (proofs + faults)`), if any settled.
    pub reliability: Option<f64>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct DealDetail {
    #[serde(flatten)]
    pub deal: DealRecord,
    pub proofs: Vec<ProofRecord>,
    pub faults: Vec<FaultRecord>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct DatasetDetail {
    pub dataset_id: String,
    pub shards: usize,
    pub active_shards: usize,
    pub k: Option<u16>,
    pub n: Option<u16>,
    pub stored_bytes: u64,
    pub deals: Vec<DealRecord>,
}

#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct EpochDetail {
    #[serde(flatten)]
    pub epoch: EpochRecord,
    /// The epoch's proofs (at most [`MAX_PAGE`]).
    pub proof_list: Vec<ProofRecord>,
    /// Settlements covering the epoch (at most [`MAX_PAGE`]).
    pub fault_list: Vec<FaultRecord>,
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
    fn providers(&self, req: &PageReq) -> Result<Page<ProviderRecord>, StoreError>;
    fn provider(&self, id: &[u8; 32]) -> Result<Option<ProviderDetail>, StoreError>;
    fn deals(&self, filter: &DealFilter, req: &PageReq) -> Result<Page<DealRecord>, StoreError>;
    fn deal(&self, id: &[u8; 32]) -> Result<Option<DealDetail>, StoreError>;
    fn dataset(&self, id: &[u8; 32]) -> Result<Option<DatasetDetail>, StoreError>;
    /// Epochs, newest first.
    fn epochs(&self, req: &PageReq) -> Result<Page<EpochRecord>, StoreError>;
    fn epoch(&self, n: u64) -> Result<Option<EpochDetail>, StoreError>;
}

impl Store {
    fn deal_by_key(&self, deal: &[u8]) -> Result<Option<DealRecord>, StoreError> {
        self.get(cf::DEALS, deal)
    }
}

impl IndexRead for Store {
    fn stats(&self) -> Result<Stats, StoreError> {
        Store::stats(self)
    }

    fn cursor(&self) -> Result<Option<Cursor>, StoreError> {
        Store::cursor(self)
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
        Ok(self
            .get::<ProviderRecord>(cf::PROVIDERS, id)?
            .map(|provider| {
                let settled = provider.proofs + provider.faults;
                ProviderDetail {
                    reliability: (settled > 0).then(|| provider.proofs as f64 / settled as f64),
                    provider,
                }
            }))
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
        loop {
            let want = req.limit - rows.len();
            let batch = self.scan(index, &prefix, after.as_deref(), false, want.max(64))?;
            let done = batch.len() < want.max(64);
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

    fn deal(&self, id: &[u8; 32]) -> Result<Option<DealDetail>, StoreError> {
        let Some(deal) = self.deal_by_key(id)? else {
            return Ok(None);
        };
        // Only this deal's history: an address reused by a repair also keys
        // the closed deal's proofs and faults, all from before this proposal.
        let proofs = self
            .scan(cf::PROOFS, id, None, false, usize::MAX)?
            .into_iter()
            .map(|(_, v)| decode::<ProofRecord>(cf::PROOFS, &v))
            .filter(|p| p.as_ref().map_or(true, |p| p.slot >= deal.proposed_slot))
            .collect::<Result<_, _>>()?;
        let faults = self
            .scan(cf::FAULTS, id, None, false, usize::MAX)?
            .into_iter()
            .map(|(_, v)| decode::<FaultRecord>(cf::FAULTS, &v))
            .filter(|f| f.as_ref().map_or(true, |f| f.slot >= deal.proposed_slot))
            .collect::<Result<_, _>>()?;
        Ok(Some(DealDetail {
            deal,
            proofs,
            faults,
        }))
    }

    fn dataset(&self, id: &[u8; 32]) -> Result<Option<DatasetDetail>, StoreError> {
        let mut deals = Vec::new();
        for (k, _) in self.scan(cf::DEALS_BY_DATASET, id, None, false, usize::MAX)? {
            if let Some(d) = self.deal_by_key(&k[32 + 2..])? {
                deals.push(d);
            }
        }
        if deals.is_empty() {
            return Ok(None);
        }
        let active: Vec<&DealRecord> = deals
            .iter()
            .filter(|d| d.state == DealStatus::Active)
            .collect();
        let mut shards: Vec<u16> = deals.iter().map(|d| d.shard_index).collect();
        shards.dedup();
        let mut active_shards: Vec<u16> = active.iter().map(|d| d.shard_index).collect();
        active_shards.dedup();
        Ok(Some(DatasetDetail {
            dataset_id: hex::encode(id),
            shards: shards.len(),
            active_shards: active_shards.len(),
            k: deals.iter().find_map(|d| d.k),
            n: deals.iter().find_map(|d| d.n),
            stored_bytes: active.iter().map(|d| d.shard_bytes).sum(),
            deals,
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

    fn epoch(&self, n: u64) -> Result<Option<EpochDetail>, StoreError> {
        let Some(epoch) = self.get::<EpochRecord>(cf::EPOCHS, &key::u64(n))? else {
            return Ok(None);
        };
        let mut proof_list = Vec::new();
        for (k, _) in self.scan(cf::PROOFS_BY_EPOCH, &key::u64(n), None, false, MAX_PAGE)? {
            let deal = &k[8..];
            if let Some(p) = self.get(cf::PROOFS, &key::cat(&[deal, &key::u64(n)]))? {
                proof_list.push(p);
            }
        }
        let mut fault_list = Vec::new();
        for (k, first) in self.scan(cf::FAULTS_BY_EPOCH, &key::u64(n), None, false, MAX_PAGE)? {
            let deal = &k[8..];
            if let Some(f) = self.get(cf::FAULTS, &key::cat(&[deal, &first]))? {
                fault_list.push(f);
            }
        }
        Ok(Some(EpochDetail {
            epoch,
            proof_list,
            fault_list,
        }))
    }
}
