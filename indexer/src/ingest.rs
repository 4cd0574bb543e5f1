//! Decode and apply: recorded transactions and account snapshots into the
//! store. No RPC here, so it is tested and benchmarked from recorded data.
//!
//! Epoch outcomes (see [`crate::model`]): a proven epoch is recorded when its
//! `EpochProven` is applied. Failed and void epochs are decided when an epoch
//! closes, which happens when a transaction of a later epoch is applied: by then
//! every event that can change the epoch's outcome is applied too, because
//! transactions are applied in chain order, proofs of an epoch are accepted only
//! inside it, and every change to who owes proofs (accept, end, jail) takes effect
//! from a later epoch than the one it is made in. Who owes proofs in an epoch is
//! kept as per-provider counts of deals owed ([`cf::PROVIDER_LOAD`]) and their
//! changes by epoch ([`cf::LOAD_CHANGES`]), from `DealAccepted` (the deal's epochs),
//! `DealEnded` (an earlier end) and `ProviderJailed` (every deal ends at the jail
//! epoch). All of it is history, built from events only, so an indexer that
//! reconciles before it ingests history ends with the same outcomes as one that
//! followed live.
use crate::model::*;
use crate::store::{cf, key, meta, Change, Store, StoreError};
use cairn_chain::events::{event_instructions, EventDecodeError, MarketEvent};
use cairn_chain::Pubkey;
use solana_transaction_status_client_types::EncodedConfirmedTransactionWithStatusMeta;
use storage_market::constants::{LOG_PAGE_BYTES, LOG_PAGE_EPOCHS, NOT_JAILED};
use storage_market::state::{Challenge, Deal, EpochLog, Market, ProofLog, Provider};

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
        block_time: tx.block_time,
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
    // Never changes once known.
    let mut epoch_slots = epoch_slots(&change)?;
    for tx in txs {
        applied.transactions += 1;
        let before = change.stats.clone();
        change.stats.transactions += 1;
        change.stats.last_slot = change.stats.last_slot.max(tx.slot);
        if tx.failed {
            change.stats.failed_transactions += 1;
        }
        if let Some(time) = tx.block_time {
            if change.stats.first_timed_slot.is_none() {
                change.stats.first_timed_slot = Some(tx.slot);
                change.stats.first_block_time = Some(time);
            }
            change.stats.last_timed_slot = Some(tx.slot);
            change.stats.last_block_time = Some(time);
        }
        // The chain is in a later epoch: the epochs before it are over.
        if let (Some(slots), Some(from)) = (epoch_slots, change.stats.closed_until) {
            close_epochs(&mut change, from, tx.slot / slots)?;
        }
        let first_event = change.stats.events;
        for (index, data) in tx.events.iter().enumerate() {
            let decoded = MarketEvent::decode(data);
            let (name, subjects) = match &decoded {
                Ok(event) => (event.name().to_string(), Subjects::of(event)),
                Err(e) => {
                    applied.undecodable += 1;
                    tracing::warn!(signature = %tx.signature, "undecodable event: {e}");
                    (format!("undecodable: {e}"), Subjects::default())
                }
            };
            let seq = change.stats.events;
            for deal in subjects.deals.iter().flatten() {
                change.put_raw(
                    cf::DEAL_EVENTS,
                    key::cat(&[deal.as_ref(), &key::u64(seq)]),
                    Vec::new(),
                );
            }
            change.put(
                cf::EVENTS,
                key::u64(seq).to_vec(),
                &EventRecord {
                    seq,
                    name,
                    slot: tx.slot,
                    signature: tx.signature.clone(),
                    index: index as u32,
                    block_time: tx.block_time,
                    deal: subjects.deals[0].as_ref().map(b58),
                    provider: subjects.provider.as_ref().map(b58),
                    epoch: subjects.epoch,
                },
            );
            change.stats.events += 1;
            applied.events += 1;
            if let Ok(event) = decoded {
                apply_event(&mut change, tx, event)?;
            }
        }
        change.put(
            cf::TXS,
            tx.signature.as_bytes().to_vec(),
            &TxRecord {
                signature: tx.signature.clone(),
                slot: tx.slot,
                block_time: tx.block_time,
                failed: tx.failed,
                first_event,
                events: tx.events.len() as u32,
            },
        );
        // Outcomes are decided from the first transaction whose epoch is known
        // (no deal is owed before the market's first transactions).
        if epoch_slots.is_none() {
            epoch_slots = self::epoch_slots(&change)?;
        }
        if change.stats.closed_until.is_none() {
            change.stats.closed_until = epoch_slots.map(|slots| tx.slot / slots);
        }
        if let Some(slots) = epoch_slots {
            add_to_series(&mut change, tx.slot / slots, &before, tx.block_time)?;
        }
    }
    change.commit(Some(&Cursor {
        signature: last.signature.clone(),
        slot: last.slot,
    }))?;
    Ok(applied)
}

/// What an event is about: up to two deals (`DealLeftSet` moves a second
/// deal in its provider's set), a provider, an epoch.
#[derive(Default)]
struct Subjects {
    deals: [Option<Pubkey>; 2],
    provider: Option<Pubkey>,
    epoch: Option<u64>,
}

impl Subjects {
    fn of(event: &MarketEvent) -> Subjects {
        use MarketEvent as E;
        let deal = |deal: &Pubkey, provider: Option<&Pubkey>| Subjects {
            deals: [Some(*deal), None],
            provider: provider.copied(),
            epoch: None,
        };
        let provider = |provider: &Pubkey, epoch: Option<u64>| Subjects {
            deals: [None, None],
            provider: Some(*provider),
            epoch,
        };
        match event {
            E::MarketInitialized(_) | E::MarketUpdated(_) => Subjects::default(),
            E::ProviderRegistered(e) => provider(&e.provider, None),
            E::ProviderUpdated(e) => provider(&e.provider, None),
            E::ProviderDeregistered(e) => provider(&e.provider, None),
            E::StakeChanged(e) => provider(&e.provider, None),
            E::EarningsWithdrawn(e) => provider(&e.provider, None),
            E::EpochProven(e) => provider(&e.provider, Some(e.epoch)),
            E::ProviderJailed(e) => provider(&e.provider, Some(e.epoch)),
            E::EpochOpened(e) => Subjects {
                epoch: Some(e.epoch),
                ..Subjects::default()
            },
            E::DealProposed(e) => deal(&e.deal, Some(&e.provider)),
            E::DealAccepted(e) => deal(&e.deal, Some(&e.provider)),
            E::DealCancelled(e) => deal(&e.deal, None),
            E::DealSettled(e) => deal(&e.deal, Some(&e.provider)),
            E::DealFinished(e) => deal(&e.deal, Some(&e.provider)),
            E::DealEnded(e) => Subjects {
                epoch: Some(e.failed_epoch),
                ..deal(&e.deal, Some(&e.provider))
            },
            E::DealLeftSet(e) => Subjects {
                deals: [Some(e.deal), (e.moved != e.deal).then_some(e.moved)],
                provider: Some(e.provider),
                epoch: None,
            },
            E::DealClosed(e) => deal(&e.deal, None),
        }
    }
}

/// Adds what a transaction (or a reconciliation) changed since `before` to
/// the series point of `epoch`: the totals as they are now, and the epoch's
/// new deals, collateral slashed and payments.
fn add_to_series(
    c: &mut Change,
    epoch: u64,
    before: &Stats,
    block_time: Option<i64>,
) -> Result<(), StoreError> {
    let k = key::u64(epoch).to_vec();
    let mut point: SeriesPoint = c.get(cf::SERIES, &k)?.unwrap_or(SeriesPoint {
        epoch,
        ..SeriesPoint::default()
    });
    let s = &c.stats;
    let slashed = |s: &Stats| s.penalties + s.forfeited;
    point.has_totals = true;
    point.stored_bytes = s.stored_bytes;
    point.active_deals = s.active_deals;
    point.providers = s.providers;
    point.deals = s.deals;
    point.new_deals += s.deals.saturating_sub(before.deals);
    point.slashed = slashed(s);
    point.new_slashed += slashed(s).saturating_sub(slashed(before));
    point.paid = s.paid;
    point.new_paid += s.paid.saturating_sub(before.paid);
    point.last_slot = point.last_slot.max(s.last_slot);
    if block_time.is_some() {
        point.last_block_time = block_time;
    }
    c.put(cf::SERIES, k, &point);
    Ok(())
}

/// Records a transaction the follower cannot index and moves the cursor past
/// it, in one write: it is counted (`skipped_transactions`) and listed at
/// `/v1/skipped` with `reason`, instead of being retried forever.
pub fn skip(store: &Store, skipped: &SkippedTx) -> Result<(), StoreError> {
    let mut change = store.change()?;
    let n = change.stats.skipped_transactions;
    change.stats.skipped_transactions += 1;
    change.stats.last_slot = change.stats.last_slot.max(skipped.slot);
    change.put(cf::META, key::cat(&[meta::SKIPPED, &key::u64(n)]), skipped);
    change.commit(Some(&Cursor {
        signature: skipped.signature.clone(),
        slot: skipped.slot,
    }))
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

fn load_market(c: &Change) -> Result<Option<MarketRecord>, StoreError> {
    c.get(cf::META, meta::MARKET)
}

/// The market's epoch length, once known.
fn epoch_slots(c: &Change) -> Result<Option<u64>, StoreError> {
    Ok(load_market(c)?
        .map(|m| m.epoch_slots)
        .filter(|slots| *slots > 0))
}

fn pubkey_bytes(s: &str) -> Vec<u8> {
    s.parse::<Pubkey>()
        .map(|k| k.to_bytes().to_vec())
        .unwrap_or_default()
}

/// `n + 1` or `n - 1` (never below zero).
fn bump(n: &mut u64, up: bool) {
    *n = if up { *n + 1 } else { n.saturating_sub(1) };
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
            // A client may propose again at a closed deal's address (the same
            // generation), to another provider.
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

/// A new epoch record (counted; the caller writes it).
fn new_epoch(c: &mut Change, epoch: u64) -> EpochRecord {
    c.stats.epochs += 1;
    EpochRecord {
        epoch,
        ..EpochRecord::default()
    }
}

fn get_epoch(c: &Change, epoch: u64) -> Result<Option<EpochRecord>, StoreError> {
    c.get(cf::EPOCHS, &key::u64(epoch))
}

/// Writes an epoch record, and its provider outcomes into the epoch's series
/// point (so a chart reads one key per epoch).
fn put_epoch(c: &mut Change, epoch: &EpochRecord) -> Result<(), StoreError> {
    let k = key::u64(epoch.epoch).to_vec();
    c.put(cf::EPOCHS, k.clone(), epoch);
    let mut point: SeriesPoint = c.get(cf::SERIES, &k)?.unwrap_or(SeriesPoint {
        epoch: epoch.epoch,
        ..SeriesPoint::default()
    });
    let outcomes = (
        epoch.opened,
        epoch.closed,
        epoch.proven,
        epoch.failed,
        epoch.void,
    );
    if (
        point.opened,
        point.closed,
        point.proven,
        point.failed,
        point.void,
    ) != outcomes
    {
        (
            point.opened,
            point.closed,
            point.proven,
            point.failed,
            point.void,
        ) = outcomes;
        c.put(cf::SERIES, k, &point);
    }
    Ok(())
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

/// Updates a provider's mirrored fields, if the event is newer than its last
/// account snapshot.
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

/// Updates a provider's history fields (whatever its last snapshot).
fn update_provider_history(
    c: &mut Change,
    provider: &Pubkey,
    f: impl FnOnce(&mut ProviderRecord),
) -> Result<(), StoreError> {
    if let Some(old) = load_provider(c, provider)? {
        let mut new = old.clone();
        f(&mut new);
        if new != old {
            put_provider(c, Some(&old), &new);
        }
    }
    Ok(())
}

// ------------------------------------------------------------ who owes proofs

/// From `epoch` on, `provider` owes proofs for `delta` more deals.
fn add_load(c: &mut Change, provider: &Pubkey, epoch: u64, delta: i64) -> Result<(), StoreError> {
    if delta == 0 {
        return Ok(());
    }
    if c.stats.closed_until.is_some_and(|closed| epoch < closed) {
        // Cannot happen in chain order (changes apply from a later epoch than
        // the one they are made in); keep the count right from here on.
        tracing::warn!(%provider, epoch, "a change to the deals owed in a closed epoch");
        return fold_load(c, provider.as_ref(), delta);
    }
    let k = key::cat(&[&key::u64(epoch), provider.as_ref()]);
    let change = c.get::<i64>(cf::LOAD_CHANGES, &k)?.unwrap_or(0) + delta;
    if change == 0 {
        c.delete(cf::LOAD_CHANGES, k);
    } else {
        c.put(cf::LOAD_CHANGES, k, &change);
    }
    Ok(())
}

fn fold_load(c: &mut Change, provider: &[u8], delta: i64) -> Result<(), StoreError> {
    let load = c.get::<u64>(cf::PROVIDER_LOAD, provider)?.unwrap_or(0) as i64 + delta;
    if load < 0 {
        tracing::warn!(
            "provider {} owes {load} deals",
            bs58::encode(provider).into_string()
        );
    }
    if load <= 0 {
        c.delete(cf::PROVIDER_LOAD, provider.to_vec());
    } else {
        c.put(cf::PROVIDER_LOAD, provider.to_vec(), &(load as u64));
    }
    Ok(())
}

/// A deal of `provider` that was owed `start .. old_end` is now owed
/// `start .. new_end` (`new_end < old_end`); returns the new end.
fn shorten(
    c: &mut Change,
    provider: &Pubkey,
    start: u64,
    old_end: u64,
    new_end: u64,
) -> Result<u64, StoreError> {
    let new_end = new_end.max(start);
    if new_end < old_end {
        add_load(c, provider, old_end, 1)?;
        add_load(c, provider, new_end, -1)?;
        Ok(new_end)
    } else {
        Ok(old_end)
    }
}

// ------------------------------------------------------------ epoch outcomes

/// Closes the epochs `from .. until`: each provider that owed a proof in an epoch
/// and did not prove it failed it (opened) or had it void (not opened).
fn close_epochs(c: &mut Change, from: u64, until: u64) -> Result<(), StoreError> {
    if until <= from {
        return Ok(());
    }
    let mut epoch = from;
    while epoch < until {
        let nobody_owes = c.range(cf::PROVIDER_LOAD, &[], None)?.is_empty();
        if nobody_owes {
            // Nothing owed until the next change: only mark opened epochs closed.
            let next = c
                .range(cf::LOAD_CHANGES, &key::u64(epoch), Some(&key::u64(until)))?
                .first()
                .map(|(k, _)| key::be_u64(k));
            let stop = next.unwrap_or(until);
            if stop > epoch {
                for (_, v) in c.range(cf::EPOCHS, &key::u64(epoch), Some(&key::u64(stop)))? {
                    let mut record: EpochRecord = crate::store::decode(cf::EPOCHS, &v)?;
                    if !record.closed {
                        record.closed = true;
                        if !record.opened {
                            c.stats.void_epochs += 1;
                        }
                        put_epoch(c, &record)?;
                    }
                }
                epoch = stop;
                continue;
            }
        }
        close_epoch(c, epoch)?;
        epoch += 1;
    }
    c.stats.closed_until = Some(until);
    Ok(())
}

fn close_epoch(c: &mut Change, epoch: u64) -> Result<(), StoreError> {
    let changes = c.range(
        cf::LOAD_CHANGES,
        &key::u64(epoch),
        Some(&key::u64(epoch + 1)),
    )?;
    for (k, v) in changes {
        let delta: i64 = crate::store::decode(cf::LOAD_CHANGES, &v)?;
        fold_load(c, &k[8..], delta)?;
        c.delete(cf::LOAD_CHANGES, k);
    }
    let owing: Vec<Pubkey> = c
        .range(cf::PROVIDER_LOAD, &[], None)?
        .into_iter()
        .filter_map(|(k, _)| <[u8; 32]>::try_from(k.as_slice()).ok())
        .map(Pubkey::new_from_array)
        .collect();
    let existing = get_epoch(c, epoch)?;
    if existing.as_ref().is_some_and(|e| e.closed) {
        return Ok(());
    }
    if existing.is_none() && owing.is_empty() {
        return Ok(());
    }
    let mut record = match existing {
        Some(e) => e,
        None => new_epoch(c, epoch),
    };
    record.closed = true;
    if !record.opened {
        c.stats.void_epochs += 1;
    }
    put_epoch(c, &record)?;
    let outcome = if record.opened {
        Outcome::Failed
    } else {
        Outcome::Void
    };
    for provider in owing {
        let k = key::cat(&[provider.as_ref(), &key::u64(epoch)]);
        let proven = c
            .get::<ProviderEpochRecord>(cf::OUTCOMES, &k)?
            .is_some_and(|r| r.outcome == Outcome::Proven);
        if !proven {
            set_outcome(c, &provider, epoch, outcome, None)?;
        }
    }
    Ok(())
}

/// What `EpochProven` says of a session.
struct Session {
    samples: u16,
    draws: u32,
    set_len: u32,
    slot: u64,
    signature: String,
}

/// Records what `epoch` was for `provider`, keeping every count right if it was
/// recorded as something else before.
fn set_outcome(
    c: &mut Change,
    provider: &Pubkey,
    epoch: u64,
    outcome: Outcome,
    session: Option<Session>,
) -> Result<(), StoreError> {
    if outcome == Outcome::Proven {
        mark_opened(c, epoch)?;
    }
    let k = key::cat(&[provider.as_ref(), &key::u64(epoch)]);
    let old: Option<ProviderEpochRecord> = c.get(cf::OUTCOMES, &k)?;
    let mut new = old.clone().unwrap_or(ProviderEpochRecord {
        provider: b58(provider),
        epoch,
        outcome,
        samples: None,
        draws: None,
        set_len: None,
        slot: None,
        signature: None,
    });
    new.outcome = outcome;
    if let Some(s) = session {
        new.samples = Some(s.samples);
        new.draws = Some(s.draws);
        new.set_len = Some(s.set_len);
        new.slot = Some(s.slot);
        new.signature = Some(s.signature);
    }
    let was = old.as_ref().map(|o| o.outcome);
    if was != Some(outcome) {
        if let Some(was) = was {
            count_outcome(c, provider, epoch, was, false)?;
        }
        count_outcome(c, provider, epoch, outcome, true)?;
    }
    if old.as_ref() != Some(&new) {
        c.put(cf::OUTCOMES, k, &new);
    }
    Ok(())
}

fn count_outcome(
    c: &mut Change,
    provider: &Pubkey,
    epoch: u64,
    outcome: Outcome,
    up: bool,
) -> Result<(), StoreError> {
    let index = key::cat(&[&key::u64(epoch), &[outcome.code()], provider.as_ref()]);
    if up {
        c.put_raw(cf::OUTCOMES_BY_EPOCH, index, Vec::new());
    } else {
        c.delete(cf::OUTCOMES_BY_EPOCH, index);
    }
    let mut record = match get_epoch(c, epoch)? {
        Some(e) => e,
        None => new_epoch(c, epoch),
    };
    match outcome {
        Outcome::Proven => {
            bump(&mut record.proven, up);
            bump(&mut c.stats.sessions, up);
        }
        Outcome::Failed => {
            bump(&mut record.failed, up);
            bump(&mut c.stats.failed_epochs, up);
        }
        Outcome::Void => bump(&mut record.void, up),
    }
    put_epoch(c, &record)?;
    update_provider_history(c, provider, |p| match outcome {
        Outcome::Proven => bump(&mut p.sessions, up),
        Outcome::Failed => bump(&mut p.failed_epochs, up),
        Outcome::Void => bump(&mut p.void_epochs, up),
    })
}

/// Records that `epoch` was opened; returns whether that is news. An epoch
/// closed as void is not void after all: its void outcomes become failures.
fn mark_opened(c: &mut Change, epoch: u64) -> Result<bool, StoreError> {
    let mut record = match get_epoch(c, epoch)? {
        Some(e) if e.opened => return Ok(false),
        Some(e) => e,
        None => new_epoch(c, epoch),
    };
    record.opened = true;
    let was_void = record.closed;
    if was_void {
        c.stats.void_epochs = c.stats.void_epochs.saturating_sub(1);
    }
    put_epoch(c, &record)?;
    if was_void {
        let prefix = key::cat(&[&key::u64(epoch), &[Outcome::Void.code()]]);
        for (k, _) in c.scan_prefix(cf::OUTCOMES_BY_EPOCH, &prefix)? {
            if let Ok(provider) = <[u8; 32]>::try_from(&k[9..]) {
                set_outcome(
                    c,
                    &Pubkey::new_from_array(provider),
                    epoch,
                    Outcome::Failed,
                    None,
                )?;
            }
        }
    }
    Ok(true)
}

/// A provider's outcome counts from its outcome records.
fn counted_history(c: &Change, provider: &Pubkey) -> Result<ProviderRecord, StoreError> {
    let mut p = ProviderRecord::default();
    for (_, v) in c.scan_prefix(cf::OUTCOMES, provider.as_ref())? {
        let r: ProviderEpochRecord = crate::store::decode(cf::OUTCOMES, &v)?;
        match r.outcome {
            Outcome::Proven => p.sessions += 1,
            Outcome::Failed => p.failed_epochs += 1,
            Outcome::Void => p.void_epochs += 1,
        }
    }
    Ok(p)
}

// ------------------------------------------------------------------- events

fn apply_event(c: &mut Change, tx: &RecordedTx, event: MarketEvent) -> Result<(), StoreError> {
    let slot = tx.slot;
    match event {
        MarketEvent::MarketInitialized(e) => {
            let old = load_market(c)?.unwrap_or_default();
            let mut new = old.clone();
            if slot > old.synced_slot {
                new.address = b58(&e.market);
                new.authority = b58(&e.authority);
                new.mint = b58(&e.mint);
            }
            new.epoch_slots = e.epoch_slots;
            if new != old {
                c.put(cf::META, meta::MARKET.to_vec(), &new);
            }
        }
        MarketEvent::MarketUpdated(e) => {
            let old = load_market(c)?.unwrap_or_default();
            if slot > old.synced_slot {
                let mut new = old.clone();
                new.address = b58(&e.market);
                new.params = Some(e.params.into());
                new.epoch_slots = e.params.epoch_slots;
                c.put(cf::META, meta::MARKET.to_vec(), &new);
            }
        }
        MarketEvent::ProviderRegistered(e) => {
            let old = load_provider(c, &e.provider)?;
            if old.as_ref().is_none_or(|o| slot > o.synced_slot) {
                // A provider registered again at its address keeps the history
                // recorded under that address; a new record counts the outcomes
                // already recorded for it (a snapshot's proof-log bits).
                let history = match &old {
                    Some(o) => o.clone(),
                    None => counted_history(c, &e.provider)?,
                };
                let new = ProviderRecord {
                    address: b58(&e.provider),
                    authority: b58(&e.authority),
                    operator: b58(&e.operator),
                    endpoint: e.endpoint,
                    capacity_bytes: e.capacity_bytes,
                    price_per_mib_epoch: e.price_per_mib_epoch,
                    registered_slot: slot,
                    sessions: history.sessions,
                    failed_epochs: history.failed_epochs,
                    void_epochs: history.void_epochs,
                    jail: history.jail,
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
                    group_id: hex::encode(e.group_id),
                    group: e.group,
                    shard_index: e.shard_index,
                    generation: e.generation,
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
                d.owed_until = e.end_epoch;
                if live {
                    d.state = DealStatus::Active;
                    d.start_epoch = e.start_epoch;
                    d.end_epoch = e.end_epoch;
                    d.settled_until = e.start_epoch;
                    d.collateral = e.collateral;
                    d.collateral_left = e.collateral;
                    d.in_set = true;
                    d.set_index = e.set_index;
                }
            })?;
            add_load(c, &e.provider, e.start_epoch, 1)?;
            add_load(c, &e.provider, e.end_epoch, -1)?;
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
            mark_opened(c, e.epoch)?;
            let mut epoch = get_epoch(c, e.epoch)?.unwrap_or_default();
            epoch.epoch = e.epoch;
            epoch.seed = hex::encode(e.seed);
            epoch.seed_slot = e.seed_slot;
            epoch.opened_slot = e.opened_slot;
            epoch.opener = b58(&e.opener);
            epoch.deadline_slot = e.deadline_slot;
            epoch.samples_per_epoch = e.samples_per_epoch;
            put_epoch(c, &epoch)?;
        }
        MarketEvent::EpochProven(e) => set_outcome(
            c,
            &e.provider,
            e.epoch,
            Outcome::Proven,
            Some(Session {
                samples: e.samples,
                draws: e.draws,
                set_len: e.set_len,
                slot,
                signature: tx.signature.clone(),
            }),
        )?,
        MarketEvent::DealSettled(e) => {
            let settlement_key = key::cat(&[e.deal.as_ref(), &key::u64(e.from_epoch)]);
            if c.exists(cf::SETTLEMENTS, &settlement_key)? {
                return Ok(());
            }
            c.put(
                cf::SETTLEMENTS,
                settlement_key,
                &SettlementRecord {
                    deal: b58(&e.deal),
                    provider: b58(&e.provider),
                    from_epoch: e.from_epoch,
                    until_epoch: e.until_epoch,
                    proven: e.proven,
                    failed: e.failed,
                    void: e.void,
                    paid: e.paid,
                    refunded: e.refunded,
                    penalty: e.penalty,
                    slot,
                    signature: tx.signature.clone(),
                },
            );
            let s = &mut c.stats;
            s.settled_proven += e.proven;
            s.settled_failed += e.failed;
            s.settled_void += e.void;
            s.paid += e.paid;
            s.refunded += e.refunded;
            s.penalties += e.penalty;
            update_deal(c, &e.deal, slot, |d, live| {
                d.paid += e.paid;
                d.refunded += e.refunded;
                d.penalty += e.penalty;
                if live {
                    let epochs = e.proven + e.failed + e.void;
                    d.settled_until = e.until_epoch;
                    d.proven_epochs += e.proven;
                    d.failed_epochs += e.failed;
                    d.void_epochs += e.void;
                    d.escrow = d.escrow.saturating_sub(d.price_per_epoch * epochs);
                    d.collateral_left = d.collateral_left.saturating_sub(e.penalty);
                    d.client_refund += e.refunded + e.penalty;
                }
            })?;
            update_provider(c, &e.provider, slot, |p| {
                p.proofs += e.proven;
                p.faults += e.failed;
                p.slashed += e.penalty;
                p.earnings += e.paid;
                p.stake_locked = p.stake_locked.saturating_sub(e.penalty);
            })?;
        }
        MarketEvent::DealFinished(e) => {
            let mut shard_bytes = 0;
            let mut first = false;
            update_deal(c, &e.deal, slot, |d, live| {
                shard_bytes = d.shard_bytes;
                first = d.finish.is_none();
                d.finish = Some(DealFinish {
                    terminated: e.terminated,
                    collateral_released: e.collateral_released,
                    collateral_forfeited: e.collateral_forfeited,
                    escrow_refunded: e.escrow_refunded,
                    slot,
                    signature: tx.signature.clone(),
                });
                if live {
                    d.state = if e.terminated {
                        DealStatus::Terminated
                    } else {
                        DealStatus::Completed
                    };
                    d.escrow = 0;
                    d.collateral_left = 0;
                    d.client_refund += e.escrow_refunded + e.collateral_forfeited;
                    d.proven_epochs = e.proven_epochs;
                    d.failed_epochs = e.failed_epochs;
                    d.void_epochs = e.void_epochs;
                }
            })?;
            if first {
                c.stats.forfeited += e.collateral_forfeited;
            }
            update_provider(c, &e.provider, slot, |p| {
                p.active_deals = p.active_deals.saturating_sub(1);
                p.used_bytes = p.used_bytes.saturating_sub(shard_bytes);
                p.stake_locked = p
                    .stake_locked
                    .saturating_sub(e.collateral_released + e.collateral_forfeited);
                p.stake_free += e.collateral_released;
                p.forfeited += e.collateral_forfeited;
            })?;
        }
        MarketEvent::DealEnded(e) => {
            let mut owed = None;
            update_deal(c, &e.deal, slot, |d, live| {
                owed = Some((d.start_epoch, d.owed_until));
                d.ending = Some(DealEnding {
                    failed_epoch: e.failed_epoch,
                    end_epoch: e.end_epoch,
                    escrow_refunded: e.escrow_refunded,
                    slot,
                    signature: tx.signature.clone(),
                });
                if live {
                    d.end_epoch = e.end_epoch;
                    d.escrow = d.escrow.saturating_sub(e.escrow_refunded);
                    d.client_refund += e.escrow_refunded;
                    d.forfeit = true;
                }
            })?;
            if let Some((start, old_end)) = owed.filter(|(_, end)| *end > 0) {
                let new_end = shorten(c, &e.provider, start, old_end, e.end_epoch)?;
                update_deal(c, &e.deal, slot, |d, _| d.owed_until = new_end)?;
            }
        }
        MarketEvent::DealLeftSet(e) => {
            update_deal(c, &e.deal, slot, |d, live| {
                if live {
                    d.in_set = false;
                }
            })?;
            if e.moved != Pubkey::default() {
                update_deal(c, &e.moved, slot, |d, live| {
                    if live {
                        d.set_index = e.set_index;
                    }
                })?;
            }
        }
        MarketEvent::ProviderJailed(e) => {
            update_provider(c, &e.provider, slot, |p| p.jailed_from = Some(e.epoch))?;
            let mut first = false;
            update_provider_history(c, &e.provider, |p| {
                first = p.jail.is_none();
                p.jail = Some(JailRecord {
                    epoch: e.epoch,
                    failed_epochs: e.failed_epochs.clone(),
                    jailed_by: b58(&e.jailed_by),
                    slot,
                    signature: tx.signature.clone(),
                });
            })?;
            if first {
                c.stats.jailings += 1;
            }
            // Every deal of the provider ends at the jail epoch.
            for (k, _) in c.scan_prefix(cf::DEALS_BY_PROVIDER, e.provider.as_ref())? {
                let Some(old) = c.get::<DealRecord>(cf::DEALS, &k[32..])? else {
                    continue;
                };
                if old.owed_until > e.epoch {
                    let mut new = old.clone();
                    new.owed_until =
                        shorten(c, &e.provider, old.start_epoch, old.owed_until, e.epoch)?;
                    put_deal(c, Some(&old), &new);
                }
            }
        }
        MarketEvent::DealClosed(e) => update_deal(c, &e.deal, slot, |d, live| {
            if live {
                d.closed = true;
                d.client_refund = 0;
            } else {
                // The record holds a snapshot newer than this close, so the
                // account was proposed again at this address: what the events
                // added so far belonged to the closed deal.
                d.paid = 0;
                d.refunded = 0;
                d.penalty = 0;
                d.ending = None;
                d.finish = None;
                d.owed_until = 0;
                d.proposed_slot = 0;
            }
        })?,
        MarketEvent::EarningsWithdrawn(e) => update_provider(c, &e.provider, slot, |p| {
            p.earnings = e.earnings_left;
        })?,
    }
    Ok(())
}

// ------------------------------------------------------------- reconciliation

/// One page of epoch bits: the market's `EpochLog` (opened epochs) or a
/// provider's `ProofLog` (proven epochs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LogPage {
    /// The provider of a `ProofLog`; `None` for the `EpochLog`.
    pub provider: Option<Pubkey>,
    pub page: u64,
    pub bits: Vec<u8>,
}

impl LogPage {
    /// Decodes an `EpochLog` account's data (discriminator checked).
    pub fn epoch_log(data: &[u8]) -> Option<LogPage> {
        use anchor_lang::Discriminator;
        let page_at = EpochLog::BITS_OFFSET - 8;
        if data.get(..8)? != EpochLog::DISCRIMINATOR {
            return None;
        }
        Some(LogPage {
            provider: None,
            page: le_u64(data.get(page_at..page_at + 8)?),
            bits: data
                .get(EpochLog::BITS_OFFSET..EpochLog::BITS_OFFSET + LOG_PAGE_BYTES)?
                .to_vec(),
        })
    }

    /// Decodes a `ProofLog` account's data (discriminator checked).
    pub fn proof_log(data: &[u8]) -> Option<LogPage> {
        use anchor_lang::Discriminator;
        let page_at = ProofLog::BITS_OFFSET - 8;
        if data.get(..8)? != ProofLog::DISCRIMINATOR {
            return None;
        }
        let provider = <[u8; 32]>::try_from(data.get(8..40)?).ok()?;
        Some(LogPage {
            provider: Some(Pubkey::new_from_array(provider)),
            page: le_u64(data.get(page_at..page_at + 8)?),
            bits: data
                .get(ProofLog::BITS_OFFSET..ProofLog::BITS_OFFSET + LOG_PAGE_BYTES)?
                .to_vec(),
        })
    }

    /// The epochs whose bit is set, in order.
    pub fn epochs(&self) -> impl Iterator<Item = u64> + '_ {
        let first = self.page * LOG_PAGE_EPOCHS;
        self.bits
            .iter()
            .enumerate()
            .filter(|(_, b)| **b != 0)
            .flat_map(move |(i, b)| {
                (0..8)
                    .filter(move |bit| b & (1 << bit) != 0)
                    .map(move |bit| first + i as u64 * 8 + bit)
            })
    }
}

fn le_u64(bytes: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(bytes);
    u64::from_le_bytes(b)
}

/// Current account state read with `getProgramAccounts` at `slot`.
#[derive(Default)]
pub struct Snapshot {
    pub slot: u64,
    pub market: Option<(Pubkey, Market)>,
    /// Decimals of the market's mint (read with the market).
    pub mint_decimals: Option<u8>,
    pub providers: Vec<(Pubkey, Provider)>,
    pub deals: Vec<(Pubkey, Deal)>,
    /// The challenge of the epoch being proven.
    pub challenge: Option<Challenge>,
    /// The market's `EpochLog` pages.
    pub epoch_logs: Vec<LogPage>,
    /// Every provider's `ProofLog` pages.
    pub proof_logs: Vec<LogPage>,
}

/// What [`reconcile`] changed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Reconciled {
    pub providers_changed: u64,
    pub deals_changed: u64,
    /// Epochs learnt to be opened from the epoch log.
    pub epochs_changed: u64,
    /// Provider-epochs learnt to be proven from the proof logs.
    pub outcomes_changed: u64,
}

/// Overwrites mirrored fields from account state; records newer than the
/// snapshot (events already past it) are left alone. The epoch bits only add
/// what they prove (an epoch opened, a provider's epoch proven): bits are never
/// cleared, so they hold whatever the snapshot's slot.
pub fn reconcile(store: &Store, snap: &Snapshot) -> Result<Reconciled, StoreError> {
    let mut c = store.change()?;
    let before = c.stats.clone();
    let mut out = Reconciled::default();
    if let Some((address, m)) = &snap.market {
        let old = load_market(&c)?.unwrap_or_default();
        if old.synced_slot <= snap.slot {
            let new = MarketRecord {
                address: b58(address),
                authority: b58(&m.authority),
                mint: b58(&m.mint),
                epoch_slots: m.params.epoch_slots,
                params: Some(m.params.into()),
                decimals: snap.mint_decimals.or(old.decimals),
                synced_slot: snap.slot,
            };
            c.put(cf::META, meta::MARKET.to_vec(), &new);
        }
    }
    for (address, p) in &snap.providers {
        let old = load_provider(&c, address)?;
        if old.as_ref().is_some_and(|o| o.synced_slot > snap.slot) {
            continue;
        }
        let mut new = match old.clone() {
            Some(o) => o,
            None => counted_history(&c, address)?,
        };
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
        new.forfeited = p.forfeited;
        new.jailed_from = (p.jailed_from != NOT_JAILED).then_some(p.jailed_from);
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
        // A closed deal's record describes an earlier deal at this address (the
        // client proposed the same generation again): the account the chain
        // holds now starts a fresh record.
        let mut new = old.clone().filter(|o| !o.closed).unwrap_or_default();
        new.address = b58(address);
        new.client = b58(&d.client);
        new.provider = b58(&d.provider);
        new.dataset_id = hex::encode(d.dataset_id);
        new.group_id = hex::encode(d.group_id);
        new.group = d.group;
        new.shard_index = d.shard_index;
        new.generation = d.generation;
        new.k = Some(d.k);
        new.n = Some(d.n);
        new.shard_root = hex::encode(d.shard_root);
        new.shard_bytes = d.shard_bytes;
        new.price_per_epoch = d.price_per_epoch;
        new.duration_epochs = d.duration_epochs;
        new.escrow = d.escrow;
        new.collateral = d.collateral;
        new.collateral_left = d.collateral_left;
        new.client_refund = d.client_refund;
        new.state = d.state.into();
        new.start_epoch = d.start_epoch;
        new.end_epoch = d.end_epoch;
        new.settled_until = d.settled_until;
        new.proven_epochs = d.proven_epochs;
        new.failed_epochs = d.failed_epochs;
        new.void_epochs = d.void_epochs;
        new.forfeit = d.forfeit;
        new.in_set = d.in_set;
        new.set_index = d.set_index;
        new.closed = false;
        let mut compare = new.clone();
        compare.synced_slot = old.as_ref().map_or(0, |o| o.synced_slot);
        if old.as_ref() != Some(&compare) {
            out.deals_changed += 1;
        }
        new.synced_slot = snap.slot;
        put_deal(&mut c, old.as_ref(), &new);
    }
    if let Some(ch) = snap.challenge.as_ref().filter(|ch| ch.next_epoch > 0) {
        if mark_opened(&mut c, ch.epoch)? {
            out.epochs_changed += 1;
        }
        let mut epoch = get_epoch(&c, ch.epoch)?.unwrap_or_default();
        epoch.epoch = ch.epoch;
        epoch.seed = hex::encode(ch.seed);
        epoch.seed_slot = ch.seed_slot;
        epoch.opened_slot = ch.opened_slot;
        epoch.opener = b58(&ch.opener);
        epoch.deadline_slot = ch.deadline_slot;
        epoch.samples_per_epoch = ch.samples_per_epoch;
        put_epoch(&mut c, &epoch)?;
    }
    for page in &snap.epoch_logs {
        for epoch in page.epochs() {
            if mark_opened(&mut c, epoch)? {
                out.epochs_changed += 1;
            }
        }
    }
    for page in &snap.proof_logs {
        let Some(provider) = page.provider else {
            continue;
        };
        for epoch in page.epochs() {
            let k = key::cat(&[provider.as_ref(), &key::u64(epoch)]);
            let proven = c
                .get::<ProviderEpochRecord>(cf::OUTCOMES, &k)?
                .is_some_and(|r| r.outcome == Outcome::Proven);
            if !proven {
                set_outcome(&mut c, &provider, epoch, Outcome::Proven, None)?;
                out.outcomes_changed += 1;
            }
        }
    }
    // Totals a snapshot corrected count in the epoch it was read in.
    if let (Some(slots), true) = (epoch_slots(&c)?, c.stats != before) {
        add_to_series(&mut c, snap.slot / slots, &before, None)?;
    }
    c.commit(None)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::query::{DealFilter, IndexRead, PageReq};
    use crate::synthetic::{data, deal_key, key};

    fn first_page() -> PageReq {
        PageReq {
            after: None,
            limit: crate::query::MAX_PAGE,
        }
    }
    use storage_market::{events as ev, state::DealState};

    /// Slots per epoch of these tests: epoch `e` is slots `10 e .. 10 e + 10`.
    const EPOCH: u64 = 10;

    fn tx(n: u64, slot: u64, events: Vec<Vec<u8>>) -> RecordedTx {
        RecordedTx {
            signature: format!("sig{n}"),
            slot,
            failed: false,
            block_time: None,
            events,
        }
    }

    fn market() -> Vec<u8> {
        data(&ev::MarketInitialized {
            market: key(10, 0),
            authority: key(10, 1),
            mint: key(10, 2),
            epoch_slots: EPOCH,
        })
    }

    fn chain_market() -> (Pubkey, Market) {
        crate::synthetic::market_account(EPOCH)
    }

    fn registered(provider: u64) -> Vec<u8> {
        data(&ev::ProviderRegistered {
            provider: key(1, provider),
            authority: key(2, provider),
            operator: key(4, provider),
            endpoint: "127.0.0.1:7000".into(),
            capacity_bytes: 1 << 30,
            price_per_mib_epoch: 100,
        })
    }

    /// Deal `(provider, i)` of generation `generation` (shard 0 of dataset [1; 32]):
    /// 10 bytes, 100 per epoch for `epochs` epochs, collateral 50.
    fn proposal(provider: u64, i: u64, generation: u16, epochs: u64) -> Vec<u8> {
        data(&ev::DealProposed {
            deal: deal_key(provider, i),
            client: key(5, 0),
            provider: key(1, provider),
            dataset_id: [1; 32],
            group_id: [1; 32],
            group: 0,
            shard_index: 0,
            generation,
            shard_bytes: 10,
            shard_root: [0; 32],
            price_per_epoch: 100,
            duration_epochs: epochs,
            escrow: 100 * epochs,
            collateral: 50,
        })
    }

    fn acceptance(provider: u64, i: u64, epochs: std::ops::Range<u64>) -> Vec<u8> {
        data(&ev::DealAccepted {
            deal: deal_key(provider, i),
            provider: key(1, provider),
            start_epoch: epochs.start,
            end_epoch: epochs.end,
            collateral: 50,
            set_index: i as u32,
        })
    }

    fn opened(epoch: u64) -> Vec<u8> {
        data(&ev::EpochOpened {
            epoch,
            seed: [epoch as u8; 32],
            seed_slot: epoch * EPOCH + 1,
            opened_slot: epoch * EPOCH + 2,
            opener: key(6, 0),
            deadline_slot: epoch * EPOCH + EPOCH,
            samples_per_epoch: 4,
        })
    }

    fn proven(provider: u64, epoch: u64) -> Vec<u8> {
        data(&ev::EpochProven {
            provider: key(1, provider),
            epoch,
            samples: 1,
            draws: 1,
            set_len: 1,
        })
    }

    /// Deal `(provider, i)` settled for `epochs`, each proven (`P`), failed (`F`)
    /// or void (`V`) as `outcomes` says; penalty 5 per failure.
    fn settled(provider: u64, i: u64, from: u64, outcomes: &str) -> Vec<u8> {
        let count = |c: char| outcomes.chars().filter(|o| *o == c).count() as u64;
        let (p, f, v) = (count('P'), count('F'), count('V'));
        data(&ev::DealSettled {
            deal: deal_key(provider, i),
            provider: key(1, provider),
            from_epoch: from,
            until_epoch: from + outcomes.len() as u64,
            proven: p,
            failed: f,
            void: v,
            paid: 100 * p,
            refunded: 100 * (f + v),
            penalty: 5 * f,
        })
    }

    fn chain_deal(settled_until: u64, proven: u64) -> Deal {
        Deal {
            client: key(5, 0),
            provider: key(1, 0),
            dataset_id: [1; 32],
            group_id: [1; 32],
            group: 0,
            shard_index: 0,
            generation: 0,
            k: 2,
            n: 3,
            shard_root: [0; 32],
            shard_bytes: 10,
            price_per_epoch: 100,
            duration_epochs: 5,
            escrow: 100 * (6 - settled_until),
            collateral: 50,
            collateral_left: 50,
            client_refund: 0,
            state: DealState::Active,
            proposed_epoch: 0,
            start_epoch: 1,
            end_epoch: 6,
            settled_until,
            proven_epochs: proven,
            failed_epochs: 0,
            void_epochs: 0,
            forfeit: false,
            in_set: true,
            set_index: 0,
            slash_bps: 1_000,
            accept_timeout_epochs: 2,
            bump: 255,
        }
    }

    fn get_deal(store: &Store, deal: &Pubkey) -> DealRecord {
        store.get(cf::DEALS, deal.as_ref()).unwrap().unwrap()
    }

    #[test]
    fn events_already_in_a_snapshot_do_not_count_twice_and_later_ones_do() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let deal = deal_key(0, 0);
        apply(
            &store,
            &[tx(0, 1, vec![proposal(0, 0, 0, 5), acceptance(0, 0, 1..6)])],
        )
        .unwrap();
        // The chain at slot 25 already holds the settlement of epoch 1 (slot 24).
        reconcile(
            &store,
            &Snapshot {
                slot: 25,
                deals: vec![(deal, chain_deal(2, 1))],
                ..Snapshot::default()
            },
        )
        .unwrap();
        let d = get_deal(&store, &deal);
        assert_eq!((d.proven_epochs, d.settled_until, d.k), (1, 2, Some(2)));
        apply(&store, &[tx(1, 24, vec![settled(0, 0, 1, "P")])]).unwrap();
        let d = get_deal(&store, &deal);
        assert_eq!(
            (d.proven_epochs, d.escrow, d.paid, d.settled_until),
            (1, 400, 100, 2),
            "not counted twice"
        );
        apply(&store, &[tx(2, 34, vec![settled(0, 0, 2, "F")])]).unwrap();
        let d = get_deal(&store, &deal);
        assert_eq!(
            (
                d.proven_epochs,
                d.failed_epochs,
                d.escrow,
                d.paid,
                d.refunded,
                d.penalty,
                d.collateral_left,
                d.client_refund,
                d.settled_until
            ),
            (1, 1, 300, 100, 100, 5, 45, 105, 3),
            "a later settlement counts"
        );
        let stats = store.stats().unwrap();
        assert_eq!(
            (
                stats.settled_proven,
                stats.settled_failed,
                stats.paid,
                stats.penalties,
                stats.deals,
                stats.active_deals,
                stats.stored_bytes
            ),
            (1, 1, 100, 5, 1, 1, 10)
        );
        assert_eq!(store.cursor().unwrap().unwrap().signature, "sig2");
    }

    #[test]
    fn a_fresh_indexer_takes_the_proposal_slot_from_an_event_older_than_its_snapshot() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let deal = deal_key(0, 0);
        // A fresh indexer reconciles first (the chain at slot 90)...
        reconcile(
            &store,
            &Snapshot {
                slot: 90,
                deals: vec![(deal, chain_deal(2, 1))],
                ..Snapshot::default()
            },
        )
        .unwrap();
        let before = get_deal(&store, &deal);
        assert_eq!(before.proposed_slot, 0);
        // ...then ingests history: the proposal at slot 3 only adds its slot.
        apply(&store, &[tx(0, 3, vec![proposal(0, 0, 0, 5)])]).unwrap();
        let after = get_deal(&store, &deal);
        assert_eq!(after.proposed_slot, 3);
        assert_eq!(
            DealRecord {
                proposed_slot: 0,
                ..after
            },
            before
        );
    }

    /// Every entry of the column families built from epoch outcomes.
    fn outcome_state(store: &Store) -> Vec<(&'static str, Vec<u8>, Vec<u8>)> {
        let mut out = Vec::new();
        for family in [
            cf::EPOCHS,
            cf::OUTCOMES,
            cf::OUTCOMES_BY_EPOCH,
            cf::LOAD_CHANGES,
            cf::PROVIDER_LOAD,
        ] {
            for (k, v) in store.range(family, &[], None).unwrap() {
                out.push((family, k, v));
            }
        }
        out
    }

    fn outcomes(store: &Store, provider: u64) -> Vec<(u64, Outcome)> {
        let req = PageReq {
            after: None,
            limit: 100,
        };
        let mut out: Vec<(u64, Outcome)> = store
            .provider_epochs(&key(1, provider).to_bytes(), &req)
            .unwrap()
            .items
            .into_iter()
            .map(|r| (r.epoch, r.outcome))
            .collect();
        out.reverse();
        out
    }

    /// Provider 0 holds deals running epochs 1..7 and 2..4; provider 1 holds none
    /// and proves anyway; provider 2 holds one from epoch 3 and is jailed in 4.
    /// Epoch 1: proven by 0. Epoch 2: opened, 0 fails. Epoch 3: nobody opens it.
    /// Epoch 4: opened, proven by 0, not by the jailed 2. Epoch 5: opened, the
    /// client of 0's first deal ended it after epoch 2 (it ends at 5), so 0 owes
    /// nothing and fails nothing.
    fn history() -> Vec<RecordedTx> {
        vec![
            tx(0, 1, vec![market()]),
            tx(1, 2, vec![registered(0), registered(1), registered(2)]),
            tx(
                2,
                3,
                vec![
                    proposal(0, 0, 0, 6),
                    acceptance(0, 0, 1..7),
                    proposal(2, 0, 0, 6),
                ],
            ),
            tx(3, 12, vec![opened(1), proven(0, 1), proven(1, 1)]),
            tx(4, 14, vec![proposal(0, 1, 0, 2), acceptance(0, 1, 2..4)]),
            tx(5, 21, vec![opened(2), acceptance(2, 0, 3..9)]),
            tx(6, 33, vec![settled(0, 0, 1, "PF")]),
            tx(
                7,
                41,
                vec![
                    opened(4),
                    proven(0, 4),
                    data(&ev::ProviderJailed {
                        provider: key(1, 2),
                        epoch: 4,
                        failed_epochs: vec![3],
                        jailed_by: key(7, 0),
                    }),
                    data(&ev::DealEnded {
                        deal: deal_key(0, 0),
                        provider: key(1, 0),
                        failed_epoch: 2,
                        end_epoch: 5,
                        escrow_refunded: 200,
                    }),
                ],
            ),
            tx(8, 51, vec![opened(5)]),
            tx(9, 61, vec![]),
        ]
    }

    #[test]
    fn epochs_are_proven_failed_or_void_for_the_providers_that_owed_them_once_over() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let txs = history();
        // Before epoch 2 is over, its failure is not known; epoch 1's proofs are.
        apply(&store, &txs[..6]).unwrap();
        assert_eq!(store.stats().unwrap().closed_until, Some(2));
        assert_eq!(outcomes(&store, 0), [(1, Outcome::Proven)]);
        apply(&store, &txs[6..]).unwrap();
        let stats = store.stats().unwrap();
        assert_eq!(stats.closed_until, Some(6));
        use Outcome::*;
        assert_eq!(
            outcomes(&store, 0),
            [(1, Proven), (2, Failed), (3, Void), (4, Proven)]
        );
        assert_eq!(
            outcomes(&store, 1),
            [(1, Proven)],
            "proved with nothing owed"
        );
        assert_eq!(
            outcomes(&store, 2),
            [(3, Void)],
            "jailed from 4: owes nothing after"
        );
        assert_eq!(
            (
                stats.sessions,
                stats.failed_epochs,
                stats.void_epochs,
                stats.epochs,
                stats.jailings
            ),
            (3, 1, 1, 5, 1)
        );
        let e2 = store.epoch(2).unwrap().unwrap();
        assert_eq!(
            (e2.epoch.proven, e2.epoch.failed, e2.epoch.closed),
            (0, 1, true)
        );
        assert_eq!(e2.failed_list[0].provider, key(1, 0).to_string());
        let e3 = store.epoch(3).unwrap().unwrap();
        assert_eq!(
            (e3.epoch.opened, e3.epoch.closed, e3.epoch.void),
            (false, true, 2)
        );
        assert_eq!(e3.void_list.len(), 2);
        let e5 = store.epoch(5).unwrap().unwrap();
        assert_eq!(
            (e5.epoch.opened, e5.epoch.failed, e5.epoch.closed),
            (true, 0, true)
        );

        let p0 = store.provider(&key(1, 0).to_bytes()).unwrap().unwrap();
        assert_eq!(p0.epoch_map.outcomes, ".PFVP.");
        assert_eq!((p0.epoch_map.from_epoch, p0.epoch_map.until_epoch), (0, 6));
        assert_eq!(
            (
                p0.provider.sessions,
                p0.provider.failed_epochs,
                p0.provider.void_epochs
            ),
            (2, 1, 1)
        );
        assert_eq!(p0.reliability, Some(2.0 / 3.0));
        let p2 = store.provider(&key(1, 2).to_bytes()).unwrap().unwrap();
        assert_eq!(p2.provider.jailed_from, Some(4));
        assert_eq!(p2.provider.jail.as_ref().unwrap().failed_epochs, vec![3]);

        // Deal (0, 0): owed 1..5 after it was ended; its epochs are its
        // provider's, and its settlement agrees.
        let d = store
            .deal(&deal_key(0, 0).to_bytes(), &first_page())
            .unwrap()
            .unwrap();
        assert_eq!(d.deal.owed_until, 5);
        assert_eq!(d.deal.ending.as_ref().unwrap().failed_epoch, 2);
        assert_eq!(
            d.epochs
                .iter()
                .map(|e| (e.epoch, e.outcome))
                .collect::<Vec<_>>(),
            [
                (1, Some(Proven)),
                (2, Some(Failed)),
                (3, Some(Void)),
                (4, Some(Proven))
            ]
        );
        assert_eq!(
            (
                d.epoch_outcomes.proven,
                d.epoch_outcomes.failed,
                d.epoch_outcomes.void
            ),
            (2, 1, 1)
        );
        assert_eq!(d.settlements.len(), 1);
        assert_eq!((d.settlements[0].proven, d.settlements[0].failed), (1, 1));
        let d2 = store
            .deal(&deal_key(2, 0).to_bytes(), &first_page())
            .unwrap()
            .unwrap();
        assert_eq!(d2.deal.owed_until, 4, "ends at its provider's jailing");
        assert_eq!(
            d2.epochs
                .iter()
                .map(|e| (e.epoch, e.outcome))
                .collect::<Vec<_>>(),
            [(3, Some(Void))]
        );
    }

    #[test]
    fn a_fresh_indexer_reconciled_from_the_bits_first_ends_with_the_same_outcomes() {
        let txs = history();
        let live = tempfile::tempdir().unwrap();
        let live = Store::open(live.path()).unwrap();
        for t in &txs {
            apply(&live, std::slice::from_ref(t)).unwrap();
        }
        // The chain at slot 62: opened epochs 1, 2, 4, 5; provider 0 proved 1 and
        // 4, provider 1 proved 1; the challenge is epoch 5's.
        let bits = |epochs: &[u64]| {
            let mut bits = vec![0u8; LOG_PAGE_BYTES];
            for e in epochs {
                bits[(*e / 8) as usize] |= 1 << (e % 8);
            }
            bits
        };
        let snapshot = Snapshot {
            slot: 62,
            market: Some(chain_market()),
            epoch_logs: vec![LogPage {
                provider: None,
                page: 0,
                bits: bits(&[1, 2, 4, 5]),
            }],
            proof_logs: vec![
                LogPage {
                    provider: Some(key(1, 0)),
                    page: 0,
                    bits: bits(&[1, 4]),
                },
                LogPage {
                    provider: Some(key(1, 1)),
                    page: 0,
                    bits: bits(&[1]),
                },
            ],
            ..Snapshot::default()
        };
        let fresh = tempfile::tempdir().unwrap();
        let fresh = Store::open(fresh.path()).unwrap();
        let r = reconcile(&fresh, &snapshot).unwrap();
        assert_eq!((r.epochs_changed, r.outcomes_changed), (4, 3));
        apply(&fresh, &txs).unwrap();
        assert_eq!(outcome_state(&fresh), outcome_state(&live));
        let (f, l) = (fresh.stats().unwrap(), live.stats().unwrap());
        assert_eq!(f, l);
        // Reconciling the live one with the same bits changes nothing.
        let r = reconcile(&live, &snapshot).unwrap();
        assert_eq!((r.epochs_changed, r.outcomes_changed), (0, 0));
        assert_eq!(outcome_state(&fresh), outcome_state(&live));
        // A proof the events missed is taken from the bits, and the counts follow.
        let mut missed = snapshot;
        missed.proof_logs[0].bits = bits(&[1, 2, 4]);
        let r = reconcile(&live, &missed).unwrap();
        assert_eq!(r.outcomes_changed, 1);
        let stats = live.stats().unwrap();
        assert_eq!((stats.sessions, stats.failed_epochs), (4, 0));
        let e2 = live.epoch(2).unwrap().unwrap();
        assert_eq!((e2.epoch.proven, e2.epoch.failed), (1, 0));
    }

    #[test]
    fn log_pages_decode_from_account_data() {
        use anchor_lang::Discriminator;
        let mut data = EpochLog::DISCRIMINATOR.to_vec();
        data.extend(2u64.to_le_bytes());
        let mut bits = vec![0u8; LOG_PAGE_BYTES];
        bits[0] = 0b1000_0010;
        bits[LOG_PAGE_BYTES - 1] = 0x80;
        data.extend(&bits);
        let page = LogPage::epoch_log(&data).unwrap();
        let first = 2 * LOG_PAGE_EPOCHS;
        assert_eq!(
            page.epochs().collect::<Vec<_>>(),
            [first + 1, first + 7, first + LOG_PAGE_EPOCHS - 1]
        );
        assert!(LogPage::proof_log(&data).is_none(), "another account type");
        let mut data = ProofLog::DISCRIMINATOR.to_vec();
        data.extend(key(1, 3).to_bytes());
        data.extend(0u64.to_le_bytes());
        data.extend(&bits);
        let page = LogPage::proof_log(&data).unwrap();
        assert_eq!((page.provider, page.page), (Some(key(1, 3)), 0));
        assert!(LogPage::proof_log(&data[..data.len() - 1]).is_none());
    }

    /// A client ends a deal after a failed epoch and repairs the shard with a new
    /// deal of the next generation, on another provider. The new deal has its own
    /// address and record; the old one stays as it ended (terminated, settled,
    /// closed). Live, after a restart across the repair, and fresh from a
    /// snapshot, the records are the same.
    #[test]
    fn a_repair_is_a_new_deal_and_the_old_deal_keeps_its_record() {
        let (old, new) = (deal_key(0, 0), deal_key(1, 0));
        let (old_provider, new_provider) = (key(1, 0), key(1, 1));
        let before_repair = vec![
            tx(0, 1, vec![market(), registered(0), registered(1)]),
            tx(1, 2, vec![proposal(0, 0, 0, 5), acceptance(0, 0, 1..6)]),
            tx(2, 11, vec![opened(1), proven(0, 1)]),
            tx(3, 21, vec![opened(2)]),
            // Epoch 2 failed: the client ends the deal (it runs to the end of 3).
            tx(
                4,
                31,
                vec![
                    opened(3),
                    proven(0, 3),
                    data(&ev::DealEnded {
                        deal: old,
                        provider: old_provider,
                        failed_epoch: 2,
                        end_epoch: 4,
                        escrow_refunded: 200,
                    }),
                ],
            ),
        ];
        let repair = vec![
            tx(5, 32, vec![proposal(1, 0, 1, 2), acceptance(1, 0, 4..6)]),
            tx(
                6,
                41,
                vec![
                    opened(4),
                    proven(1, 4),
                    settled(0, 0, 1, "PFP"),
                    data(&ev::DealFinished {
                        deal: old,
                        provider: old_provider,
                        terminated: true,
                        proven_epochs: 2,
                        failed_epochs: 1,
                        void_epochs: 0,
                        collateral_released: 0,
                        collateral_forfeited: 45,
                        escrow_refunded: 0,
                    }),
                    data(&ev::DealLeftSet {
                        deal: old,
                        provider: old_provider,
                        set_index: 0,
                        moved: Pubkey::default(),
                    }),
                ],
            ),
            tx(
                7,
                42,
                vec![data(&ev::DealClosed {
                    deal: old,
                    refunded: 345,
                })],
            ),
            tx(8, 51, vec![opened(5), settled(1, 0, 4, "P")]),
        ];
        // The chain at slot 52: the old deal is closed (gone); the new one is
        // settled through epoch 4.
        let snapshot = Snapshot {
            slot: 52,
            market: Some(chain_market()),
            deals: vec![(
                new,
                Deal {
                    provider: new_provider,
                    generation: 1,
                    duration_epochs: 2,
                    escrow: 100,
                    start_epoch: 4,
                    end_epoch: 6,
                    settled_until: 5,
                    ..chain_deal(5, 1)
                },
            )],
            ..Snapshot::default()
        };
        let all: Vec<RecordedTx> = before_repair.iter().chain(&repair).cloned().collect();

        let live = tempfile::tempdir().unwrap();
        let live = Store::open(live.path()).unwrap();
        apply(&live, &before_repair).unwrap();
        apply(&live, &repair).unwrap();

        let restarted = tempfile::tempdir().unwrap();
        let restarted = Store::open(restarted.path()).unwrap();
        apply(&restarted, &before_repair).unwrap();
        reconcile(&restarted, &snapshot).unwrap();
        apply(&restarted, &repair).unwrap();

        let fresh = tempfile::tempdir().unwrap();
        let fresh = Store::open(fresh.path()).unwrap();
        reconcile(&fresh, &snapshot).unwrap();
        apply(&fresh, &all).unwrap();

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
        let without_sync = |mut d: DealRecord| {
            d.synced_slot = 0;
            d.k = None;
            d.n = None;
            d
        };
        let live_old = live.deal(&old.to_bytes(), &first_page()).unwrap().unwrap();
        for (name, store) in [
            ("live", &live),
            ("restarted", &restarted),
            ("fresh", &fresh),
        ] {
            let o = store.deal(&old.to_bytes(), &first_page()).unwrap().unwrap();
            assert_eq!(
                (
                    o.deal.provider.as_str(),
                    o.deal.generation,
                    o.deal.state,
                    o.deal.closed,
                    o.deal.end_epoch,
                    o.deal.owed_until,
                    (o.deal.proven_epochs, o.deal.failed_epochs),
                    (o.deal.paid, o.deal.refunded, o.deal.penalty),
                    o.deal.finish.as_ref().map(|f| f.collateral_forfeited),
                    o.deal.proposed_slot,
                ),
                (
                    old_provider.to_string().as_str(),
                    0,
                    DealStatus::Terminated,
                    true,
                    4,
                    4,
                    (2, 1),
                    (200, 100, 5),
                    Some(45),
                    2
                ),
                "{name}: the old deal's record"
            );
            assert_eq!(o, live_old, "{name}");
            use Outcome::*;
            assert_eq!(
                o.epochs.iter().map(|e| e.outcome).collect::<Vec<_>>(),
                [Some(Proven), Some(Failed), Some(Proven)],
                "{name}"
            );
            let n = store.deal(&new.to_bytes(), &first_page()).unwrap().unwrap();
            assert_eq!(
                (
                    n.deal.provider.as_str(),
                    n.deal.generation,
                    n.deal.state,
                    n.deal.start_epoch,
                    n.deal.proven_epochs,
                    n.deal.paid,
                    n.deal.escrow,
                    n.deal.proposed_slot,
                    n.deal.closed,
                    n.settlements.len(),
                ),
                (
                    new_provider.to_string().as_str(),
                    1,
                    DealStatus::Active,
                    4,
                    1,
                    100,
                    100,
                    32,
                    false,
                    1
                ),
                "{name}: the new deal's record"
            );
            assert_eq!(
                n.epochs.iter().map(|e| e.outcome).collect::<Vec<_>>(),
                [Some(Proven)],
                "{name}: epoch 5 is not over"
            );
            assert_eq!(by(store, new_provider), vec![new.to_string()], "{name}");
            assert_eq!(by(store, old_provider), vec![old.to_string()], "{name}");
            let dataset = store.dataset(&[1; 32], &first_page()).unwrap().unwrap();
            assert_eq!(
                (dataset.shards, dataset.active_shards, dataset.deals.len()),
                (1, 1, 2),
                "{name}"
            );
        }
        // Every record is the same, whichever way it was built.
        for deal in [old, new] {
            let l = without_sync(get_deal(&live, &deal));
            assert_eq!(without_sync(get_deal(&restarted, &deal)), l);
            assert_eq!(without_sync(get_deal(&fresh, &deal)), l);
        }
        assert_eq!(outcome_state(&fresh), outcome_state(&live));
        assert_eq!(outcome_state(&restarted), outcome_state(&live));
    }
}
