//! Decode and apply: recorded transactions and account snapshots into the
//! store. No RPC here, so it is tested and benchmarked from recorded data.
use crate::model::*;
use crate::store::{cf, key, Change, Store, StoreError};
use cairn_chain::events::{event_instructions, EventDecodeError, MarketEvent};
use cairn_chain::Pubkey;
use solana_transaction_status_client_types::EncodedConfirmedTransactionWithStatusMeta;
use storage_market::state::{Challenge, Deal, Provider};

/// Records a transaction fetched with `getTransaction` (JSON encoding).
pub fn record(
    signature: &str,
    tx: &EncodedConfirmedTransactionWithStatusMeta,
) -> Result<RecordedTx, EventDecodeError> {
    let failed = tx
        .transaction
        .meta
        .as_ref()
        .ok_or(EventDecodeError::NoMeta)?
        .err
        .is_some();
    Ok(RecordedTx {
        signature: signature.to_string(),
        slot: tx.slot,
        failed,
        events: if failed {
            Vec::new()
        } else {
            event_instructions(&tx.transaction)?
        },
    })
}

/// What one [`apply`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Applied {
    pub transactions: u64,
    pub events: u64,
    /// Event instructions that did not decode (another program version).
    pub undecodable: u64,
}

/// Applies `txs` (oldest first) and moves the cursor to the last one, all in
/// one write batch.
pub fn apply(store: &Store, txs: &[RecordedTx]) -> Result<Applied, StoreError> {
    let Some(last) = txs.last() else {
        return Ok(Applied::default());
    };
    let mut change = store.change()?;
    let mut applied = Applied::default();
    for tx in txs {
        applied.transactions += 1;
        change.stats.transactions += 1;
        change.stats.last_slot = change.stats.last_slot.max(tx.slot);
        if tx.failed {
            change.stats.failed_transactions += 1;
        }
        for (index, data) in tx.events.iter().enumerate() {
            let decoded = MarketEvent::decode(data);
            let name = match &decoded {
                Ok(event) => event.name().to_string(),
                Err(e) => {
                    applied.undecodable += 1;
                    tracing::warn!(signature = %tx.signature, "undecodable event: {e}");
                    format!("undecodable: {e}")
                }
            };
            let seq = change.stats.events;
            change.put(
                cf::EVENTS,
                key::u64(seq).to_vec(),
                &EventRecord {
                    seq,
                    name,
                    slot: tx.slot,
                    signature: tx.signature.clone(),
                    index: index as u32,
                },
            );
            change.stats.events += 1;
            applied.events += 1;
            if let Ok(event) = decoded {
                apply_event(&mut change, tx, event)?;
            }
        }
    }
    change.commit(Some(&Cursor {
        signature: last.signature.clone(),
        slot: last.slot,
    }))?;
    Ok(applied)
}

fn b58(key: &Pubkey) -> String {
    key.to_string()
}

fn load_deal(c: &Change, deal: &Pubkey) -> Result<Option<DealRecord>, StoreError> {
    c.get(cf::DEALS, deal.as_ref())
}

fn load_provider(c: &Change, provider: &Pubkey) -> Result<Option<ProviderRecord>, StoreError> {
    c.get(cf::PROVIDERS, provider.as_ref())
}

fn pubkey_bytes(s: &str) -> Vec<u8> {
    s.parse::<Pubkey>()
        .map(|k| k.to_bytes().to_vec())
        .unwrap_or_default()
}

fn active_contribution(d: &DealRecord) -> (u64, u64) {
    if d.state == DealStatus::Active {
        (1, d.shard_bytes)
    } else {
        (0, 0)
    }
}

/// Writes a deal with its index entries and keeps the totals right.
fn put_deal(c: &mut Change, old: Option<&DealRecord>, new: &DealRecord) {
    let deal = pubkey_bytes(&new.address);
    let (old_active, old_bytes) = old.map(active_contribution).unwrap_or((0, 0));
    let (new_active, new_bytes) = active_contribution(new);
    c.stats.active_deals = c.stats.active_deals + new_active - old_active;
    c.stats.stored_bytes = c.stats.stored_bytes + new_bytes - old_bytes;
    match old {
        None => {
            c.stats.deals += 1;
            let client = pubkey_bytes(&new.client);
            let provider = pubkey_bytes(&new.provider);
            let dataset = hex::decode(&new.dataset_id).unwrap_or_default();
            c.put_raw(cf::DEALS_BY_CLIENT, key::cat(&[&client, &deal]), Vec::new());
            c.put_raw(
                cf::DEALS_BY_PROVIDER,
                key::cat(&[&provider, &deal]),
                Vec::new(),
            );
            c.put_raw(
                cf::DEALS_BY_DATASET,
                key::cat(&[&dataset, &new.shard_index.to_be_bytes(), &deal]),
                Vec::new(),
            );
        }
        Some(old) => {
            if old.state != new.state {
                c.delete(cf::DEALS_BY_STATE, key::cat(&[&[old.state.code()], &deal]));
            }
            // A repaired shard's new deal reuses the address (its seeds are
            // client, dataset and shard) with another provider.
            if old.provider != new.provider {
                let (was, now) = (pubkey_bytes(&old.provider), pubkey_bytes(&new.provider));
                c.delete(cf::DEALS_BY_PROVIDER, key::cat(&[&was, &deal]));
                c.put_raw(cf::DEALS_BY_PROVIDER, key::cat(&[&now, &deal]), Vec::new());
            }
        }
    }
    c.put_raw(
        cf::DEALS_BY_STATE,
        key::cat(&[&[new.state.code()], &deal]),
        Vec::new(),
    );
    c.put(cf::DEALS, deal, new);
}

fn put_provider(c: &mut Change, old: Option<&ProviderRecord>, new: &ProviderRecord) {
    if old.is_none() {
        c.stats.providers += 1;
    }
    c.put(cf::PROVIDERS, pubkey_bytes(&new.address), new);
}

fn load_epoch(c: &mut Change, epoch: u64) -> Result<EpochRecord, StoreError> {
    Ok(match c.get(cf::EPOCHS, &key::u64(epoch))? {
        Some(e) => e,
        None => {
            c.stats.epochs += 1;
            EpochRecord {
                epoch,
                ..EpochRecord::default()
            }
        }
    })
}

/// Updates a deal: `f` gets the record and whether the event is newer than
/// its last account snapshot (then mirrored fields may change).
fn update_deal(
    c: &mut Change,
    deal: &Pubkey,
    slot: u64,
    f: impl FnOnce(&mut DealRecord, bool),
) -> Result<(), StoreError> {
    if let Some(old) = load_deal(c, deal)? {
        let mut new = old.clone();
        f(&mut new, slot > old.synced_slot);
        if new != old {
            put_deal(c, Some(&old), &new);
        }
    }
    Ok(())
}

fn update_provider(
    c: &mut Change,
    provider: &Pubkey,
    slot: u64,
    f: impl FnOnce(&mut ProviderRecord),
) -> Result<(), StoreError> {
    if let Some(old) = load_provider(c, provider)? {
        if slot > old.synced_slot {
            let mut new = old.clone();
            f(&mut new);
            if new != old {
                put_provider(c, Some(&old), &new);
            }
        }
    }
    Ok(())
}

fn apply_event(c: &mut Change, tx: &RecordedTx, event: MarketEvent) -> Result<(), StoreError> {
    let slot = tx.slot;
    match event {
        MarketEvent::MarketInitialized(_) | MarketEvent::MarketUpdated(_) => {}
        MarketEvent::ProviderRegistered(e) => {
            let old = load_provider(c, &e.provider)?;
            if old.as_ref().is_none_or(|o| slot > o.synced_slot) {
                let new = ProviderRecord {
                    address: b58(&e.provider),
                    authority: b58(&e.authority),
                    operator: b58(&e.operator),
                    endpoint: e.endpoint,
                    capacity_bytes: e.capacity_bytes,
                    price_per_mib_epoch: e.price_per_mib_epoch,
                    registered_slot: slot,
                    ..ProviderRecord::default()
                };
                put_provider(c, old.as_ref(), &new);
            }
        }
        MarketEvent::ProviderUpdated(e) => update_provider(c, &e.provider, slot, |p| {
            p.operator = b58(&e.operator);
            p.endpoint = e.endpoint;
            p.capacity_bytes = e.capacity_bytes;
            p.price_per_mib_epoch = e.price_per_mib_epoch;
        })?,
        MarketEvent::ProviderDeregistered(e) => update_provider(c, &e.provider, slot, |p| {
            p.deregistered = true;
            p.stake_free = 0;
            p.earnings = 0;
        })?,
        MarketEvent::StakeChanged(e) => update_provider(c, &e.provider, slot, |p| {
            p.stake_free = e.stake_free;
            p.stake_locked = e.stake_locked;
        })?,
        MarketEvent::DealProposed(e) => {
            let old = load_deal(c, &e.deal)?;
            if let Some(o) = old
                .as_ref()
                .filter(|o| slot <= o.synced_slot && o.proposed_slot == 0)
            {
                // A snapshot newer than this event holds the deal's state, but
                // only the event knows the slot it was proposed in.
                let mut new = o.clone();
                new.proposed_slot = slot;
                put_deal(c, old.as_ref(), &new);
            } else if old.as_ref().is_none_or(|o| slot > o.synced_slot) {
                let new = DealRecord {
                    address: b58(&e.deal),
                    client: b58(&e.client),
                    provider: b58(&e.provider),
                    dataset_id: hex::encode(e.dataset_id),
                    shard_index: e.shard_index,
                    k: None,
                    n: None,
                    shard_root: hex::encode(e.shard_root),
                    shard_bytes: e.shard_bytes,
                    price_per_epoch: e.price_per_epoch,
                    duration_epochs: e.duration_epochs,
                    escrow: e.escrow,
                    collateral: e.collateral,
                    proposed_slot: slot,
                    ..DealRecord::default()
                };
                put_deal(c, old.as_ref(), &new);
            }
        }
        MarketEvent::DealAccepted(e) => {
            let mut shard_bytes = 0;
            update_deal(c, &e.deal, slot, |d, live| {
                shard_bytes = d.shard_bytes;
                if live {
                    d.state = DealStatus::Active;
                    d.start_epoch = e.start_epoch;
                    d.end_epoch = e.end_epoch;
                    d.collateral = e.collateral;
                }
            })?;
            update_provider(c, &e.provider, slot, |p| {
                p.active_deals += 1;
                p.used_bytes += shard_bytes;
                p.stake_free = p.stake_free.saturating_sub(e.collateral);
                p.stake_locked += e.collateral;
            })?;
        }
        MarketEvent::DealCancelled(e) => update_deal(c, &e.deal, slot, |d, live| {
            if live {
                d.state = DealStatus::Cancelled;
                d.escrow = 0;
            }
        })?,
        MarketEvent::EpochOpened(e) => {
            let mut epoch = load_epoch(c, e.epoch)?;
            epoch.seed = hex::encode(e.seed);
            epoch.seed_slot = e.seed_slot;
            epoch.opened_slot = e.opened_slot;
            epoch.opener = b58(&e.opener);
            c.put(cf::EPOCHS, key::u64(e.epoch).to_vec(), &epoch);
        }
        MarketEvent::ProofAccepted(e) => {
            let proof_key = key::cat(&[e.deal.as_ref(), &key::u64(e.epoch)]);
            if c.exists(cf::PROOFS, &proof_key)? {
                return Ok(());
            }
            c.put(
                cf::PROOFS,
                proof_key,
                &ProofRecord {
                    deal: b58(&e.deal),
                    provider: b58(&e.provider),
                    epoch: e.epoch,
                    paid: e.paid,
                    slot,
                    signature: tx.signature.clone(),
                },
            );
            c.put_raw(
                cf::PROOFS_BY_EPOCH,
                key::cat(&[&key::u64(e.epoch), e.deal.as_ref()]),
                Vec::new(),
            );
            let mut epoch = load_epoch(c, e.epoch)?;
            epoch.proofs += 1;
            c.put(cf::EPOCHS, key::u64(e.epoch).to_vec(), &epoch);
            c.stats.proofs += 1;
            update_deal(c, &e.deal, slot, |d, live| {
                d.paid += e.paid;
                if live {
                    d.proven_epochs += 1;
                    d.escrow = d.escrow.saturating_sub(e.paid);
                }
            })?;
            update_provider(c, &e.provider, slot, |p| {
                p.proofs += 1;
                p.earnings += e.paid;
            })?;
        }
        MarketEvent::FaultsSettled(e) => {
            let first = key::u64(e.first_epoch);
            let fault_key = key::cat(&[e.deal.as_ref(), &first]);
            if c.exists(cf::FAULTS, &fault_key)? {
                return Ok(());
            }
            c.put(
                cf::FAULTS,
                fault_key,
                &FaultRecord {
                    deal: b58(&e.deal),
                    provider: b58(&e.provider),
                    settled_by: b58(&e.settled_by),
                    first_epoch: e.first_epoch,
                    last_epoch: e.last_epoch,
                    epochs: e.epochs,
                    slashed: e.slashed,
                    bounty: e.bounty,
                    refunded_to_client: e.refunded_to_client,
                    slot,
                    signature: tx.signature.clone(),
                },
            );
            for n in e.first_epoch..=e.last_epoch {
                c.put_raw(
                    cf::FAULTS_BY_EPOCH,
                    key::cat(&[&key::u64(n), e.deal.as_ref()]),
                    first.to_vec(),
                );
                let mut epoch = load_epoch(c, n)?;
                epoch.faults += 1;
                c.put(cf::EPOCHS, key::u64(n).to_vec(), &epoch);
            }
            c.stats.faults += e.epochs;
            c.stats.slashed += e.slashed;
            update_deal(c, &e.deal, slot, |d, live| {
                d.slashed += e.slashed;
                if live {
                    d.total_faults += e.epochs;
                    d.escrow = d.escrow.saturating_sub(d.price_per_epoch * e.epochs);
                }
            })?;
            update_provider(c, &e.provider, slot, |p| {
                p.faults += e.epochs;
                p.slashed += e.slashed;
                p.stake_locked = p.stake_locked.saturating_sub(e.slashed);
            })?;
        }
        MarketEvent::DealCompleted(e) => {
            let mut shard_bytes = 0;
            update_deal(c, &e.deal, slot, |d, live| {
                shard_bytes = d.shard_bytes;
                if live {
                    d.state = DealStatus::Completed;
                    d.escrow = 0;
                }
            })?;
            finish(c, &e.provider, slot, shard_bytes, e.collateral_released)?;
        }
        MarketEvent::DealTerminated(e) => {
            let mut shard_bytes = 0;
            update_deal(c, &e.deal, slot, |d, live| {
                shard_bytes = d.shard_bytes;
                if live {
                    d.state = DealStatus::Terminated;
                    d.escrow = 0;
                }
            })?;
            finish(c, &e.provider, slot, shard_bytes, e.collateral_released)?;
        }
        MarketEvent::DealClosed(e) => update_deal(c, &e.deal, slot, |d, live| {
            if live {
                d.closed = true;
            } else {
                // The record holds a snapshot newer than this close, so the
                // account was proposed again at this address (a repair): what
                // the events added so far belonged to the closed deal.
                d.paid = 0;
                d.slashed = 0;
                d.proposed_slot = 0;
            }
        })?,
        MarketEvent::EarningsWithdrawn(e) => update_provider(c, &e.provider, slot, |p| {
            p.earnings = e.earnings_left;
        })?,
    }
    Ok(())
}

fn finish(
    c: &mut Change,
    provider: &Pubkey,
    slot: u64,
    shard_bytes: u64,
    released: u64,
) -> Result<(), StoreError> {
    update_provider(c, provider, slot, |p| {
        p.active_deals = p.active_deals.saturating_sub(1);
        p.used_bytes = p.used_bytes.saturating_sub(shard_bytes);
        p.stake_locked = p.stake_locked.saturating_sub(released);
        p.stake_free += released;
    })
}

/// Current account state read with `getProgramAccounts` at `slot`.
#[derive(Default)]
pub struct Snapshot {
    pub slot: u64,
    pub providers: Vec<(Pubkey, Provider)>,
    pub deals: Vec<(Pubkey, Deal)>,
    pub challenges: Vec<Challenge>,
}

/// What [`reconcile`] changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    pub providers_changed: u64,
    pub deals_changed: u64,
}

/// Overwrites mirrored fields from account state; records newer than the
/// snapshot (events already past it) are left alone.
pub fn reconcile(store: &Store, snap: &Snapshot) -> Result<Reconciled, StoreError> {
    let mut c = store.change()?;
    let mut out = Reconciled::default();
    for (address, p) in &snap.providers {
        let old = load_provider(&c, address)?;
        if old.as_ref().is_some_and(|o| o.synced_slot > snap.slot) {
            continue;
        }
        let mut new = old.clone().unwrap_or_default();
        new.address = b58(address);
        new.authority = b58(&p.authority);
        new.operator = b58(&p.operator);
        new.endpoint = p.endpoint.clone();
        new.capacity_bytes = p.capacity_bytes;
        new.used_bytes = p.used_bytes;
        new.price_per_mib_epoch = p.price_per_mib_epoch;
        new.stake_free = p.stake_free;
        new.stake_locked = p.stake_locked;
        new.earnings = p.earnings;
        new.active_deals = p.active_deals;
        new.proofs = p.proofs;
        new.faults = p.faults;
        new.slashed = p.slashed;
        new.registered_slot = p.registered_slot;
        new.deregistered = false;
        let mut compare = new.clone();
        compare.synced_slot = old.as_ref().map_or(0, |o| o.synced_slot);
        if old.as_ref() != Some(&compare) {
            out.providers_changed += 1;
        }
        new.synced_slot = snap.slot;
        put_provider(&mut c, old.as_ref(), &new);
    }
    for (address, d) in &snap.deals {
        let old = load_deal(&c, address)?;
        if old.as_ref().is_some_and(|o| o.synced_slot > snap.slot) {
            continue;
        }
        // A closed deal's record describes an earlier deal at this address:
        // the account the chain holds now starts a fresh record.
        let mut new = old.clone().filter(|o| !o.closed).unwrap_or_default();
        new.address = b58(address);
        new.client = b58(&d.client);
        new.provider = b58(&d.provider);
        new.dataset_id = hex::encode(d.dataset_id);
        new.shard_index = d.shard_index;
        new.k = Some(d.k);
        new.n = Some(d.n);
        new.shard_root = hex::encode(d.shard_root);
        new.shard_bytes = d.shard_bytes;
        new.price_per_epoch = d.price_per_epoch;
        new.duration_epochs = d.duration_epochs;
        new.escrow = d.escrow;
        new.collateral = d.collateral;
        new.state = d.state.into();
        new.start_epoch = d.start_epoch;
        new.end_epoch = d.end_epoch;
        new.proven_epochs = d.proven_epochs;
        new.total_faults = d.total_faults;
        new.closed = false;
        let mut compare = new.clone();
        compare.synced_slot = old.as_ref().map_or(0, |o| o.synced_slot);
        if old.as_ref() != Some(&compare) {
            out.deals_changed += 1;
        }
        new.synced_slot = snap.slot;
        put_deal(&mut c, old.as_ref(), &new);
    }
    for ch in &snap.challenges {
        let mut epoch = load_epoch(&mut c, ch.epoch)?;
        epoch.seed = hex::encode(ch.seed);
        epoch.seed_slot = ch.seed_slot;
        epoch.opened_slot = ch.opened_slot;
        epoch.opener = b58(&ch.opener);
        c.put(cf::EPOCHS, key::u64(ch.epoch).to_vec(), &epoch);
    }
    c.commit(None)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::{deal_key, key};
    use anchor_lang::Event;
    use storage_market::{events as ev, state::DealState};

    fn tx(n: u64, slot: u64, events: &[&dyn Fn() -> Vec<u8>]) -> RecordedTx {
        RecordedTx {
            signature: format!("sig{n}"),
            slot,
            failed: false,
            events: events.iter().map(|e| e()).collect(),
        }
    }

    fn tagged(e: impl Event) -> Vec<u8> {
        let mut out = cairn_chain::events::EVENT_IX_TAG.to_vec();
        out.extend(e.data());
        out
    }

    fn chain_deal(proven: u64) -> Deal {
        Deal {
            client: key(5, 0),
            provider: key(1, 0),
            dataset_id: [1; 32],
            shard_index: 0,
            k: 2,
            n: 3,
            shard_root: [0; 32],
            shard_bytes: 10,
            price_per_epoch: 100,
            duration_epochs: 5,
            escrow: 100 * (5 - proven),
            collateral: 50,
            collateral_left: 50,
            client_refund: 0,
            state: DealState::Active,
            proposed_epoch: 0,
            start_epoch: 1,
            end_epoch: 6,
            settled_through: proven,
            proven_epochs: proven,
            total_faults: 0,
            consecutive_faults: 0,
            slash_bps: 0,
            bounty_bps: 0,
            max_consecutive_faults: 3,
            bump: 255,
        }
    }

    /// A proposal of deal (0, 0) to provider `key(1, provider)`: 10 bytes,
    /// 100 per epoch for `epochs` epochs.
    fn proposal(provider: u64, epochs: u64) -> Vec<u8> {
        tagged(ev::DealProposed {
            deal: deal_key(0, 0),
            client: key(5, 0),
            provider: key(1, provider),
            dataset_id: [1; 32],
            shard_index: 0,
            shard_bytes: 10,
            shard_root: [0; 32],
            price_per_epoch: 100,
            duration_epochs: epochs,
            escrow: 100 * epochs,
            collateral: 50,
        })
    }

    /// The proposal of deal (0, 0): 10 bytes, 100 per epoch for 5 epochs.
    fn proposed() -> Vec<u8> {
        proposal(0, 5)
    }

    /// Provider `key(1, provider)` accepts deal (0, 0) for `epochs`.
    fn acceptance(provider: u64, epochs: std::ops::Range<u64>) -> Vec<u8> {
        tagged(ev::DealAccepted {
            deal: deal_key(0, 0),
            provider: key(1, provider),
            start_epoch: epochs.start,
            end_epoch: epochs.end,
            collateral: 50,
        })
    }

    /// Provider `key(1, provider)`'s proof of `epoch` for deal (0, 0), paid 100.
    fn proof(provider: u64, epoch: u64) -> impl Fn() -> Vec<u8> {
        move || {
            tagged(ev::ProofAccepted {
                deal: deal_key(0, 0),
                provider: key(1, provider),
                epoch,
                paid: 100,
            })
        }
    }

    #[test]
    fn events_already_in_a_snapshot_do_not_count_twice_and_later_ones_do() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let deal = deal_key(0, 0);
        let accepted = || acceptance(0, 1..6);
        apply(&store, &[tx(0, 1, &[&proposed, &accepted])]).unwrap();
        // The chain at slot 5 already holds the proof of epoch 1 (slot 4).
        reconcile(
            &store,
            &Snapshot {
                slot: 5,
                deals: vec![(deal, chain_deal(1))],
                ..Snapshot::default()
            },
        )
        .unwrap();
        let get = |s: &Store| {
            s.get::<DealRecord>(cf::DEALS, deal.as_ref())
                .unwrap()
                .unwrap()
        };
        assert_eq!((get(&store).proven_epochs, get(&store).k), (1, Some(2)));
        apply(&store, &[tx(1, 4, &[&proof(0, 1)])]).unwrap();
        let d = get(&store);
        assert_eq!(
            (d.proven_epochs, d.escrow, d.paid),
            (1, 400, 100),
            "not counted twice"
        );
        apply(&store, &[tx(2, 6, &[&proof(0, 2)])]).unwrap();
        let d = get(&store);
        assert_eq!(
            (d.proven_epochs, d.escrow, d.paid),
            (2, 300, 200),
            "a later proof counts"
        );
        let stats = store.stats().unwrap();
        assert_eq!(
            (
                stats.proofs,
                stats.deals,
                stats.active_deals,
                stats.stored_bytes
            ),
            (2, 1, 1, 10)
        );
        assert_eq!(store.cursor().unwrap().unwrap().signature, "sig2");
    }

    #[test]
    fn a_fresh_indexer_takes_the_proposal_slot_from_an_event_older_than_its_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let deal = deal_key(0, 0);
        // A fresh indexer reconciles first (the chain at slot 9)...
        reconcile(
            &store,
            &Snapshot {
                slot: 9,
                deals: vec![(deal, chain_deal(1))],
                ..Snapshot::default()
            },
        )
        .unwrap();
        let before: DealRecord = store.get(cf::DEALS, deal.as_ref()).unwrap().unwrap();
        assert_eq!(before.proposed_slot, 0);
        // ...then ingests history: the proposal at slot 3 only adds its slot.
        apply(&store, &[tx(0, 3, &[&proposed])]).unwrap();
        let after: DealRecord = store.get(cf::DEALS, deal.as_ref()).unwrap().unwrap();
        assert_eq!(after.proposed_slot, 3);
        assert_eq!(
            DealRecord {
                proposed_slot: 0,
                ..after
            },
            before
        );
    }

    /// A repair closes a terminated deal and proposes the shard again at the
    /// same address with another provider. Live, after a restart across the
    /// repair, and fresh from a snapshot, the record is the new deal alone.
    #[test]
    fn a_deal_address_reused_by_a_repair_shows_only_the_new_deal() {
        use crate::query::{DealFilter, IndexRead, PageReq};
        let deal = deal_key(0, 0);
        let (old_provider, new_provider) = (key(1, 0), key(1, 1));
        let old_accepted = || acceptance(0, 1..6);
        let faults = || {
            tagged(ev::FaultsSettled {
                deal: deal_key(0, 0),
                provider: key(1, 0),
                settled_by: key(7, 0),
                first_epoch: 2,
                last_epoch: 4,
                epochs: 3,
                slashed: 15,
                bounty: 3,
                refunded_to_client: 312,
            })
        };
        let terminated = || {
            tagged(ev::DealTerminated {
                deal: deal_key(0, 0),
                provider: key(1, 0),
                epoch: 4,
                escrow_refunded: 100,
                collateral_released: 35,
            })
        };
        let closed = || {
            tagged(ev::DealClosed {
                deal: deal_key(0, 0),
                refunded: 0,
            })
        };
        let new_proposed = || proposal(1, 2);
        let new_accepted = || acceptance(1, 5..7);
        let (p1, p5) = (proof(0, 1), proof(1, 5));
        let before_repair = [
            tx(0, 1, &[&proposed, &old_accepted]),
            tx(1, 4, &[&p1]),
            tx(2, 8, &[&faults, &terminated]),
            tx(3, 9, &[&closed]),
        ];
        let after_repair = [
            tx(4, 11, &[&new_proposed, &new_accepted]),
            tx(5, 14, &[&p5]),
        ];
        // The chain at slot 15: the new deal, proven in epoch 5.
        let snapshot = Snapshot {
            slot: 15,
            deals: vec![(
                deal,
                Deal {
                    provider: new_provider,
                    duration_epochs: 2,
                    escrow: 100,
                    start_epoch: 5,
                    end_epoch: 7,
                    settled_through: 5,
                    ..chain_deal(1)
                },
            )],
            ..Snapshot::default()
        };

        let live = tempfile::tempdir().unwrap();
        let live = Store::open(live.path()).unwrap();
        apply(&live, &before_repair).unwrap();
        apply(&live, &after_repair).unwrap();

        let restarted = tempfile::tempdir().unwrap();
        let restarted = Store::open(restarted.path()).unwrap();
        apply(&restarted, &before_repair).unwrap();
        reconcile(&restarted, &snapshot).unwrap();
        apply(&restarted, &after_repair).unwrap();

        let fresh = tempfile::tempdir().unwrap();
        let fresh = Store::open(fresh.path()).unwrap();
        reconcile(&fresh, &snapshot).unwrap();
        apply(&fresh, &before_repair).unwrap();
        apply(&fresh, &after_repair).unwrap();

        let by = |store: &Store, provider: Pubkey| {
            let filter = DealFilter {
                provider: Some(provider.to_bytes()),
                ..DealFilter::default()
            };
            let req = PageReq {
                after: None,
                limit: 10,
            };
            let page = store.deals(&filter, &req).unwrap();
            page.items
                .into_iter()
                .map(|d| d.address)
                .collect::<Vec<_>>()
        };
        for (name, store) in [
            ("live", &live),
            ("restarted", &restarted),
            ("fresh", &fresh),
        ] {
            let d = store.deal(&deal.to_bytes()).unwrap().unwrap();
            assert_eq!(
                (
                    d.deal.provider.as_str(),
                    d.deal.state,
                    d.deal.start_epoch,
                    d.deal.proven_epochs,
                    d.deal.total_faults,
                    d.deal.paid,
                    d.deal.slashed,
                    d.deal.escrow,
                    d.deal.proposed_slot,
                    d.deal.closed
                ),
                (
                    new_provider.to_string().as_str(),
                    DealStatus::Active,
                    5,
                    1,
                    0,
                    100,
                    0,
                    100,
                    11,
                    false
                ),
                "{name}"
            );
            let proofs: Vec<u64> = d.proofs.iter().map(|p| p.epoch).collect();
            assert_eq!((proofs, d.faults.len()), (vec![5], 0), "{name}");
            assert_eq!(by(store, new_provider), vec![deal.to_string()], "{name}");
            assert!(by(store, old_provider).is_empty(), "{name}");
        }
    }
}
