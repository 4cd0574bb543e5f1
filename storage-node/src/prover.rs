//! The prover: follows slots over RPC (one `getSlot` a round, every
//! [`ProverConfig::poll`]) and
//! 1. opens the current epoch as soon as its seed slot has a hash, unless someone
//!    has (creating the market's epoch-log page first if nobody has);
//! 2. proves the provider's one proof session of the epoch, once, whatever its
//!    number of deals: planned from the challenge's seed and the deal set as
//!    visible at the epoch ([`Session`]), sent as the planner's v0 transactions in
//!    order through the operator's address lookup table, retried with backoff,
//!    re-reading the session's progress on chain before a retry so that no draw
//!    is sent twice, until the epoch's response deadline;
//!
//! Steps 1 and 2 read the chain only until the epoch is done (proven, owed nothing,
//! or void). The upkeep, steps 3 to 5, scans the provider's deals
//! (`getProgramAccounts`), so it runs once an epoch, after the epoch's session, and
//! every [`ProverConfig::reconcile`] besides (an acceptance that failed on the upload
//! path is retried then). A failed round is retried after an exponential backoff
//! with jitter, the upkeep on its own schedule, so that a failing upkeep never
//! delays a proof; within a round, a failed step does not stop the others unless
//! the RPC endpoint itself is down or rate limiting ([`ChainError::is_rpc_outage`]).
//!
//! 3. accepts stored deals whose acceptance failed earlier (not while jailed);
//! 4. settles its Active deals when they end and whenever
//!    [`ProverConfig::settle_interval_epochs`] epochs are unsettled, many deals per
//!    transaction; removes ended deals from its deal set; deletes the shards of
//!    finished deals;
//! 5. keeps ready, ahead of need, what the next session needs: its proof-log pages
//!    and a lookup table holding every account its proof transactions read
//!    (created at the first round, its address kept in the store's meta column
//!    family, extended a page ahead of the deal set and a proof-log page ahead of
//!    the epochs: a leader resolves lookup tables from its root bank, so fresh
//!    addresses are usable by proofs only a root's depth, about 32 slots, later).
//!
//! It withdraws nothing.

use crate::{
    chain::{pages_for, ChainError, RpcChain, MAX_SET_PAGES},
    metrics::Metrics,
    server::Node,
    session::{Session, ShardsByRoot},
    store::{RecordState, LOOKUP_TABLE_KEY},
};
use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};
use cairn_chain::{epoch_log_pda, proof_log_pda, proving, Pubkey};
use solana_message::AddressLookupTableAccount;
use solana_transaction::{versioned::VersionedTransaction, VersionedMessage};
use std::{
    collections::{BTreeMap, HashMap, HashSet},
    sync::{atomic::Ordering::Relaxed, Arc},
    time::{Duration, Instant},
};
use storage_market::{
    constants::{log_page, SEED_SLOT_OFFSET},
    errors::MarketError,
    state::{Challenge, Deal, DealSet, DealState, Provider},
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

/// Prover settings.
#[derive(Debug, Clone)]
pub struct ProverConfig {
    /// How often the slot is read (and, until the epoch is done, its challenge).
    pub poll: Duration,
    /// Longest time between two upkeeps (deal scans); one also runs every epoch.
    pub reconcile: Duration,
    /// Priority fee of proof transactions (micro-lamports per compute unit).
    pub priority_fee_micro_lamports: u64,
    /// Settle a running deal once this many of its epochs are unsettled.
    pub settle_interval_epochs: u64,
}

/// Deals settled per `settle` transaction: each is one writable account, and
/// 20 of them with the instruction's six fixed accounts fit a legacy transaction.
pub const SETTLE_BATCH: usize = 20;

/// Slots after which an extension of the lookup table is surely rooted (a root
/// trails the tip by about 32 slots).
const ROOTING_SLOTS: u64 = 48;

/// Most addresses one lookup table holds.
const TABLE_CAPACITY: usize = 256;

/// Longest wait between two failed rounds, before jitter (which adds up to as much
/// again): short enough that a node back from an RPC outage proves within an epoch.
pub const MAX_BACKOFF: Duration = Duration::from_secs(4);

/// Waits between retries: exponential from `first`, at most `max`, each with up to
/// as much again of random jitter (so that nodes behind one RPC endpoint spread out).
fn backoff(first: Duration, max: Duration) -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(first)
        .with_max_delay(max.max(first))
        .with_factor(2.0)
        .with_jitter()
        .without_max_times()
        .build()
}

/// The independent steps of a round: keeps the first failure, and says whether the
/// round should stop (the RPC endpoint is down or rate limiting, so the next steps
/// would fail too).
#[derive(Default)]
struct Steps {
    failed: Option<ChainError>,
}

impl Steps {
    /// The step's value, or `None` after keeping its failure.
    fn step<T>(&mut self, result: Result<T, ChainError>) -> Option<T> {
        match result {
            Ok(value) => Some(value),
            Err(e) => {
                debug!(error = %e, "upkeep step failed");
                self.failed.get_or_insert(e);
                None
            }
        }
    }

    fn outage(&self) -> bool {
        self.failed.as_ref().is_some_and(ChainError::is_rpc_outage)
    }

    fn finish(self) -> Result<(), ChainError> {
        self.failed.map_or(Ok(()), Err)
    }
}

/// When the upkeep runs: once an epoch after its session, at the latest every
/// `reconcile`, once more at the next round after it settled deals or removed some
/// from the set, and after a failure on its own backoff (from the poll interval up
/// to `reconcile`, jitter included).
struct UpkeepSchedule {
    /// The epoch of the last upkeep (successful or not).
    epoch: Option<u64>,
    /// No upkeep before this (a reconciliation or a retry).
    next: Instant,
    retry: ExponentialBackoff,
}
/// How a session ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SessionEnd {
    /// The provider's bit is set: by this session's transactions, or by an earlier
    /// attempt of it whose confirmation was lost.
    Proven,
    /// The response deadline passed first.
    WindowClosed,
    /// A sample could not be built from the stored shards.
    CannotBuild,
}

/// The prover task.
pub struct Prover {
    chain: RpcChain,
    node: Arc<Node<RpcChain>>,
    config: ProverConfig,
    /// The last epoch this node is done opening (opened it, saw it opened, or its
    /// window passed).
    opened: Option<u64>,
    /// The last epoch whose session this node is done with (proven, nothing owed,
    /// or given up).
    proven: Option<u64>,
    /// Market epoch-log pages known to exist.
    epoch_logs: HashSet<u32>,
    /// The provider's proof-log pages known to exist.
    proof_logs: HashSet<u32>,
    /// The operator's lookup table and the addresses it holds on chain.
    table: Option<AddressLookupTableAccount>,
    /// After an extension: how many of the table's addresses were there before it,
    /// and the slot from which the extension is surely rooted. Until then a proof
    /// reading a newer address goes as a legacy transaction when it fits.
    unrooted: Option<(usize, u64)>,
    /// The slot that first filled a new lookup table: the node accepts no deal until
    /// it is finalized, so its first proofs never wait for the table to root.
    first_fill: Option<u64>,
    upkeep: UpkeepSchedule,
}

impl Prover {
    /// A prover for `node`'s deals.
    pub fn new(chain: RpcChain, node: Arc<Node<RpcChain>>, config: ProverConfig) -> Prover {
        Prover {
            chain,
            node,
            opened: None,
            proven: None,
            epoch_logs: HashSet::new(),
            proof_logs: HashSet::new(),
            table: None,
            unrooted: None,
            first_fill: None,
            upkeep: UpkeepSchedule {
                epoch: None,
                next: Instant::now(),
                retry: backoff(config.poll, config.reconcile / 2),
            },
            config,
        }
    }

    fn metrics(&self) -> &Metrics {
        &self.node.metrics
    }

    /// Runs until `cancel`.
    pub async fn run(mut self, cancel: CancellationToken) {
        info!(provider = %self.chain.provider, "prover started");
        let mut failing = 0u32;
        let mut retry = backoff(self.config.poll, MAX_BACKOFF);
        loop {
            let wait = tokio::select! {
                _ = cancel.cancelled() => break,
                result = self.tick() => match result {
                    Ok(()) => {
                        failing = 0;
                        retry = backoff(self.config.poll, MAX_BACKOFF);
                        self.config.poll
                    }
                    Err(e) => {
                        failing += 1;
                        self.metrics().prover_rounds_failed.fetch_add(1, Relaxed);
                        let wait = retry.next().unwrap_or(MAX_BACKOFF);
                        // An RPC hiccup is retried quietly; a lasting failure (an
                        // unreachable RPC, an operator out of SOL) is reported.
                        if failing % 25 == 4 {
                            warn!(error = %e, kind = ?e.kind, rounds = failing, ?wait, "prover rounds keep failing; retrying");
                        } else {
                            debug!(error = %e, kind = ?e.kind, ?wait, "prover round failed; retrying");
                        }
                        wait
                    }
                },
            };
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(wait) => {}
            }
        }
        info!("prover stopped");
    }

    /// One round: the slot; the epoch's opening and session until it is done; the
    /// upkeep when due. Fails if the opening or the session failed (the round is
    /// retried after a backoff); the upkeep retries on its own schedule.
    async fn tick(&mut self) -> Result<(), ChainError> {
        let slot = self.chain.slot().await?;
        let epoch = self.chain.market.epoch_at(slot);
        let done = self.opened == Some(epoch) && self.proven == Some(epoch);
        let proved = if done {
            Ok(())
        } else {
            match self.open(epoch, slot).await {
                Ok(Some(c)) if c.next_epoch == epoch + 1 && c.epoch == epoch => {
                    self.prove(epoch, &c).await
                }
                Ok(_) => Ok(()),
                Err(e) => Err(e),
            }
        };
        if proved.as_ref().is_err_and(ChainError::is_rpc_outage) {
            return proved;
        }
        // Settlement and the rest go on even while proving fails.
        let now = Instant::now();
        let schedule = &self.upkeep;
        let epoch_due = schedule.epoch != Some(epoch) && self.proven == Some(epoch);
        if epoch_due || now >= schedule.next {
            let upkept = self.upkeep(epoch).await;
            let schedule = &mut self.upkeep;
            schedule.epoch = Some(epoch);
            match upkept {
                Ok(acted) => {
                    // After settling or leaving the set, once more at the next round
                    // (the finished deals' shards are deleted then).
                    schedule.next = if acted {
                        now
                    } else {
                        now + self.config.reconcile
                    };
                    schedule.retry = backoff(self.config.poll, self.config.reconcile / 2);
                }
                Err(e) => {
                    let wait = schedule.retry.next().unwrap_or(self.config.reconcile);
                    schedule.next = now + wait;
                    self.node.metrics.prover_rounds_failed.fetch_add(1, Relaxed);
                    debug!(error = %e, kind = ?e.kind, ?wait, "upkeep failed; retrying");
                }
            }
        }
        proved
    }

    // ------------------------------------------------------------------ opening

    /// Opens `epoch` unless someone has or it cannot be opened yet; returns the
    /// challenge account as it is now.
    async fn open(&mut self, epoch: u64, slot: u64) -> Result<Option<Challenge>, ChainError> {
        let params = self.chain.market.params;
        let start = epoch * params.epoch_slots;
        // The seed slot (at or after start + 1) has a SlotHashes entry from the
        // slot after it on: nobody can have opened the epoch before.
        if slot <= start + SEED_SLOT_OFFSET {
            return Ok(None);
        }
        let challenge = self.chain.challenge().await?;
        let next = challenge.as_ref().map_or(0, |c| c.next_epoch);
        if next > epoch || self.opened == Some(epoch) {
            self.opened = Some(epoch);
            return Ok(challenge);
        }
        if slot >= start + params.response_slots {
            warn!(
                epoch,
                "nobody opened the epoch before its response deadline: it is void"
            );
            self.void(epoch);
            return Ok(challenge);
        }
        let operator = self.chain.operator_key();
        let page = log_page(epoch);
        let mut ixs = Vec::with_capacity(2);
        if !self.epoch_logs.contains(&page) {
            if self
                .chain
                .account_data(&epoch_log_pda(page))
                .await?
                .is_some()
            {
                self.epoch_logs.insert(page);
            } else {
                ixs.push(self.chain.ix.open_epoch_log_ix(&operator, page));
            }
        }
        ixs.push(self.chain.ix.open_epoch_ix(&operator, epoch));
        match self.chain.send(&ixs).await {
            Ok(sig) => {
                info!(epoch, %sig, "opened epoch");
                self.node.metrics.epochs_opened.fetch_add(1, Relaxed);
                self.epoch_logs.insert(page);
                self.opened = Some(epoch);
            }
            Err(e) => match e.market_error() {
                Some(MarketError::EpochAlreadyOpened) => self.opened = Some(epoch),
                // Its seed slot's hash is not in the confirmed bank yet.
                Some(MarketError::SeedSlotNotReached) => {
                    debug!(epoch, "seed slot not reached; opening next round")
                }
                Some(MarketError::SeedSlotRolledOut | MarketError::EpochClosed) => {
                    warn!(epoch, error = %e, "the epoch can no longer be opened: it is void");
                    self.void(epoch);
                }
                // Often another node's open_epoch_log of the same page; retried.
                _ => debug!(epoch, error = %e, "open_epoch failed; retrying next round"),
            },
        }
        self.chain.challenge().await
    }

    /// Done with a void epoch: nothing to open or prove in it.
    fn void(&mut self, epoch: u64) {
        self.opened = Some(epoch);
        self.proven = Some(epoch);
    }

    // ------------------------------------------------------------------ proving

    /// Proves the provider's session of `epoch` (opened: `challenge` is its), once.
    async fn prove(&mut self, epoch: u64, challenge: &Challenge) -> Result<(), ChainError> {
        if self.proven == Some(epoch) {
            return Ok(());
        }
        let provider = self.chain.provider_account().await?;
        let set = self.chain.deal_set().await?;
        let len = set.len_at(epoch);
        if provider.jailed_from <= epoch || len == 0 {
            // No deal is owed at this epoch (jailing ends every deal).
            self.proven = Some(epoch);
            return Ok(());
        }
        let pages = self.chain.deal_set_pages(pages_for(len)).await?;
        let entries = proving::entries_at(len, &pages, epoch).ok_or_else(|| {
            ChainError::new(format!("deal-set entries of epoch {epoch} do not decode"))
        })?;
        let session = Session::plan(
            &challenge.seed,
            &self.chain.provider,
            epoch,
            challenge.samples_per_epoch,
            entries,
        );
        if !session.owed() {
            // Every entry visible at the epoch has ended: nothing to prove.
            self.proven = Some(epoch);
            return Ok(());
        }
        self.ensure_proof_log(log_page(epoch)).await?;
        if self.chain.proven(epoch).await? == Some(true) {
            self.proven = Some(epoch);
            return Ok(());
        }
        let table = self
            .lookup_table(epoch, pages_for(len.max(set.len)))
            .await?;
        let shards = ShardsByRoot::from_store(&self.node.store)
            .map_err(|e| ChainError::new(format!("reading the store: {e}")))?;
        let next = if set.session_epoch == epoch {
            set.session_next_draw as usize
        } else {
            0
        };
        let (end, txs) = self
            .run_session(&session, challenge, &table, &shards, next)
            .await;
        self.proven = Some(epoch);
        match end {
            SessionEnd::Proven => {
                self.node.metrics.sessions_proven.fetch_add(1, Relaxed);
                info!(
                    epoch,
                    entries = session.entries.len(),
                    samples = session.samples_needed(),
                    draws = session.plan.len(),
                    transactions = txs,
                    "epoch proven"
                );
            }
            SessionEnd::WindowClosed => {
                warn!(
                    epoch,
                    transactions = txs,
                    "the response deadline passed before the session completed"
                );
            }
            SessionEnd::CannotBuild => {}
        }
        Ok(())
    }

    /// Sends the session's transactions from draw `next` on, in order; on a failure
    /// waits, re-reads the session's progress on chain and continues from there.
    /// Returns how it ended and how many proof transactions were confirmed.
    async fn run_session(
        &self,
        session: &Session,
        challenge: &Challenge,
        table: &AddressLookupTableAccount,
        shards: &ShardsByRoot,
        mut next: usize,
    ) -> (SessionEnd, usize) {
        let epoch = session.epoch;
        let metrics = &self.node.metrics;
        let mut sent = 0;
        let first_wait = Duration::from_millis(250);
        let mut retry = backoff(first_wait, Duration::from_secs(2));
        'session: loop {
            for tx in session.transactions(next) {
                let samples = match session.samples(&self.node, shards, &tx.live) {
                    Ok(samples) => samples,
                    Err(e) => {
                        metrics.proofs_failed.fetch_add(1, Relaxed);
                        error!(error = %e, "cannot build the session's samples: this epoch fails");
                        return (SessionEnd::CannotBuild, sent);
                    }
                };
                let prove = self.chain.ix.prove_ix(
                    &self.chain.operator_key(),
                    &self.chain.provider,
                    epoch,
                    samples,
                    &tx.pages,
                );
                match self.send_proof(prove, table).await {
                    Ok(sig) => {
                        metrics.proof_transactions.fetch_add(1, Relaxed);
                        sent += 1;
                        next = tx.draws.end;
                        retry = backoff(first_wait, Duration::from_secs(2));
                        debug!(%sig, draws = ?tx.draws, samples = tx.live.len(), "proof transaction confirmed");
                    }
                    Err(e) if matches!(e.market_error(), Some(MarketError::EpochAlreadyProven)) => {
                        return (SessionEnd::Proven, sent);
                    }
                    Err(e)
                        if matches!(
                            e.market_error(),
                            Some(MarketError::OutsideProofWindow | MarketError::EpochNotOpened)
                        ) =>
                    {
                        return (SessionEnd::WindowClosed, sent);
                    }
                    Err(e) => {
                        metrics.proofs_failed.fetch_add(1, Relaxed);
                        warn!(error = %e, draws = ?tx.draws, "proof transaction failed; retrying");
                        tokio::time::sleep(retry.next().unwrap_or(first_wait)).await;
                        match self.chain.slot().await {
                            Ok(slot) if slot >= challenge.deadline_slot => {
                                return (SessionEnd::WindowClosed, sent)
                            }
                            _ => {}
                        }
                        // A send whose confirmation was lost may have landed: go on
                        // from the session's progress as the chain has it.
                        match self.progress(epoch).await {
                            Ok(None) => return (SessionEnd::Proven, sent),
                            Ok(Some(draw)) => next = draw,
                            Err(e) => debug!(error = %e, "cannot read the session's progress"),
                        }
                        continue 'session;
                    }
                }
            }
            return match self.chain.proven(epoch).await {
                Ok(Some(true)) => (SessionEnd::Proven, sent),
                // The last transaction completes the session; a plan that does not
                // match the chain would be a planner bug.
                Ok(_) => {
                    error!(
                        next,
                        "every planned transaction landed but the epoch's bit is not set"
                    );
                    (SessionEnd::CannotBuild, sent)
                }
                // Confirmed, so complete; the read failed, not the session.
                Err(_) => (SessionEnd::Proven, sent),
            };
        }
    }

    /// The session's next draw on chain, `None` once the epoch's bit is set.
    async fn progress(&self, epoch: u64) -> Result<Option<usize>, ChainError> {
        if self.chain.proven(epoch).await? == Some(true) {
            return Ok(None);
        }
        let set = self.chain.deal_set().await?;
        Ok(Some(if set.session_epoch == epoch {
            set.session_next_draw as usize
        } else {
            0
        }))
    }

    /// Sends one `prove` as the operator's v0 transaction through its lookup table,
    /// with the configured priority fee; while the table's newest addresses that it
    /// reads may not be rooted yet, as a legacy transaction instead if it fits (a
    /// leader resolves tables in its root bank and would hold the transaction).
    async fn send_proof(
        &self,
        prove: cairn_chain::Instruction,
        table: &AddressLookupTableAccount,
    ) -> Result<String, ChainError> {
        if let Some((rooted, ready)) = self.unrooted {
            let reads_new = prove.accounts.iter().any(|meta| {
                table
                    .addresses
                    .iter()
                    .position(|a| *a == meta.pubkey)
                    .is_some_and(|at| at >= rooted)
            });
            if reads_new && self.chain.slot().await? < ready {
                let ixs = proving::proof_instructions(
                    prove.clone(),
                    self.config.priority_fee_micro_lamports,
                );
                if proving::legacy_tx_len(&self.chain.operator_key(), &ixs) <= proving::PACKET_BYTES
                {
                    return self.chain.send(&ixs).await;
                }
            }
        }
        let blockhash = self.chain.blockhash().await?;
        let message = proving::proof_message(
            &self.chain.operator_key(),
            prove,
            self.config.priority_fee_micro_lamports,
            table,
            blockhash,
        )
        .map_err(|e| ChainError::new(format!("compiling the proof message: {e}")))?;
        let tx = VersionedTransaction::try_new(
            VersionedMessage::V0(message),
            &[self.chain.operator.as_ref()],
        )
        .map_err(|e| ChainError::new(format!("signing the proof transaction: {e}")))?;
        self.chain.send_versioned(&tx).await
    }

    // ---------------------------------------------------------------- readiness

    /// Creates the provider's proof-log page `page` if it does not exist.
    async fn ensure_proof_log(&mut self, page: u32) -> Result<(), ChainError> {
        if self.proof_logs.contains(&page) {
            return Ok(());
        }
        let key = proof_log_pda(&self.chain.provider, page);
        if self.chain.account_data(&key).await?.is_none() {
            let ix = self.chain.ix.open_proof_log_ix(
                &self.chain.operator_key(),
                &self.chain.provider,
                page,
            );
            match self.chain.send(&[ix]).await {
                Ok(sig) => info!(page, %sig, "created the proof-log page"),
                // Anyone may create it: fine if it exists now.
                Err(e) if self.chain.account_data(&key).await?.is_some() => {
                    debug!(page, error = %e, "the proof-log page was created by someone else")
                }
                Err(e) => return Err(e),
            }
        }
        self.proof_logs.insert(page);
        Ok(())
    }

    /// The operator's lookup table holding every account the proof transactions of
    /// `epoch` read with `pages` deal-set pages in use (pages past the set's entries,
    /// which anyone may add, are never drawn), and ahead of need the next page and
    /// the next proof-log page: loaded from the store, created if there is none,
    /// extended with what it lacks.
    ///
    /// A validator's banking stage resolves lookup tables from its *root* bank, so a
    /// transaction reading an address added less than a root's depth ago (about 32
    /// slots) passes preflight but is held by the leader until the extension is
    /// rooted. Adding addresses ahead of need keeps that off the proof path; the one
    /// slot this waits after an extension is what preflight (the confirmed bank)
    /// needs.
    async fn lookup_table(
        &mut self,
        epoch: u64,
        pages: u32,
    ) -> Result<AddressLookupTableAccount, ChainError> {
        let provider = self.chain.provider;
        let pages = (pages + 1).min(MAX_SET_PAGES).max(pages);
        let mut wanted = proving::lookup_table_addresses(&provider, epoch, pages);
        wanted.push(proof_log_pda(&provider, log_page(epoch) + 1));
        if self.table.is_none() {
            self.table = self.load_table().await?;
        }
        let table = match self.table.clone() {
            Some(table) => table,
            None => self.create_table().await?,
        };
        let missing: Vec<Pubkey> = wanted
            .iter()
            .filter(|a| !table.addresses.contains(a))
            .copied()
            .collect();
        if missing.is_empty() {
            return Ok(table);
        }
        if table.addresses.len() + missing.len() > TABLE_CAPACITY {
            return Err(ChainError::new(format!(
                "lookup table {} holds {} addresses and needs {} more: more than one table holds",
                table.key,
                table.addresses.len(),
                missing.len()
            )));
        }
        let operator = self.chain.operator_key();
        for ix in proving::extend_lookup_table_ixs(&table.key, &operator, &missing) {
            if let Err(e) = self.chain.send(&[ix]).await {
                // Read it again next time: part of the extension may have landed.
                self.table = None;
                return Err(e);
            }
        }
        let addresses = self
            .chain
            .account_data(&table.key)
            .await?
            .as_deref()
            .and_then(proving::lookup_table_contents)
            .ok_or_else(|| ChainError::new(format!("lookup table {} unreadable", table.key)))?;
        info!(table = %table.key, added = missing.len(), holds = addresses.len(), "extended the lookup table");
        let before = table.addresses.len();
        let slot = self.chain.slot().await?;
        // Addresses from the oldest extension that may still be unrooted on.
        let before = match self.unrooted {
            Some((earlier, ready)) if slot < ready => earlier.min(before),
            _ => before,
        };
        self.unrooted = Some((before, slot + ROOTING_SLOTS));
        if before == 0 {
            self.first_fill = Some(slot);
        }
        let table = AddressLookupTableAccount {
            key: table.key,
            addresses,
        };
        self.table = Some(table.clone());
        // Addresses are usable from the slot after the one that added them.
        self.wait_for_next_slot().await?;
        Ok(table)
    }

    /// The table recorded in the store, if it is this operator's and exists.
    async fn load_table(&self) -> Result<Option<AddressLookupTableAccount>, ChainError> {
        let stored = self
            .node
            .store
            .meta(LOOKUP_TABLE_KEY)
            .map_err(|e| ChainError::new(format!("reading the store: {e}")))?;
        let Some(stored) = stored.filter(|v| v.len() == 64) else {
            return Ok(None);
        };
        if stored[32..] != self.chain.operator_key().to_bytes() {
            return Ok(None);
        }
        let key = Pubkey::new_from_array(stored[..32].try_into().expect("32 bytes"));
        let addresses = self
            .chain
            .account_data(&key)
            .await?
            .as_deref()
            .and_then(proving::lookup_table_contents);
        Ok(addresses.map(|addresses| AddressLookupTableAccount { key, addresses }))
    }

    /// Creates an empty table owned and paid by the operator and records it.
    async fn create_table(&mut self) -> Result<AddressLookupTableAccount, ChainError> {
        let operator = self.chain.operator_key();
        // A slot every bank's SlotHashes still holds.
        let recent = self.chain.finalized_slot().await?;
        let (key, ixs) = proving::create_lookup_table_ixs(&operator, recent, &[]);
        if let Err(e) = self.chain.send(&ixs).await {
            if self.chain.account_data(&key).await?.is_none() {
                return Err(e);
            }
        }
        let mut value = key.to_bytes().to_vec();
        value.extend_from_slice(&operator.to_bytes());
        self.node
            .store
            .put_meta(LOOKUP_TABLE_KEY, &value)
            .map_err(|e| ChainError::new(format!("recording the lookup table: {e}")))?;
        info!(table = %key, "created the operator's lookup table");
        let table = AddressLookupTableAccount {
            key,
            addresses: Vec::new(),
        };
        self.table = Some(table.clone());
        Ok(table)
    }

    async fn wait_for_next_slot(&self) -> Result<(), ChainError> {
        let now = self.chain.slot().await?;
        for _ in 0..600 {
            tokio::time::sleep(Duration::from_millis(100)).await;
            if self.chain.slot().await? > now {
                return Ok(());
            }
        }
        Err(ChainError::new(format!("the chain stayed at slot {now}")))
    }

    // ------------------------------------------------------------------- upkeep

    /// Acceptances, settlement, leaving the deal set, deleting finished shards,
    /// and readiness for the next session: each step goes on when another fails,
    /// unless the RPC endpoint is out; the first failure is returned. `Ok(true)` if
    /// it settled deals or removed some from the set.
    async fn upkeep(&mut self, epoch: u64) -> Result<bool, ChainError> {
        let mut acted = false;
        let mut steps = Steps::default();
        let provider = steps.step(self.chain.provider_account().await);
        let deals = if steps.outage() {
            None
        } else {
            self.metrics().deal_scans.fetch_add(1, Relaxed);
            steps.step(self.chain.deals().await)
        };
        if let (Some(deals), Some(provider)) = (&deals, &provider) {
            // Take on deals only once the table their proofs read is usable.
            let table_ready = match self.first_fill {
                _ if self.table.is_none() => Some(false),
                None => Some(true),
                Some(slot) => steps
                    .step(self.chain.finalized_slot().await)
                    .map(|finalized| {
                        let rooted = finalized > slot;
                        if rooted {
                            self.first_fill = None;
                        }
                        rooted
                    }),
            };
            if table_ready == Some(true) {
                self.accept_stored(epoch, deals, provider).await;
            }
            self.remove_finished(deals).await;
            acted |= steps
                .step(self.settle(epoch, deals, provider).await)
                .unwrap_or(false);
        }
        if steps.outage() {
            return steps.finish().map(|()| acted);
        }
        let set = steps.step(self.chain.deal_set().await);
        if let (Some(deals), Some(provider), Some(set)) = (&deals, &provider, &set) {
            acted |= steps
                .step(self.leave(epoch, deals, provider, set).await)
                .unwrap_or(false);
        }
        // Ready before the deals: the proof-log pages of this epoch and the next,
        // and the lookup table (created at the node's first round).
        for page in [log_page(epoch), log_page(epoch + 1)] {
            if !steps.outage() {
                steps.step(self.ensure_proof_log(page).await);
            }
        }
        if let Some(set) = set.filter(|_| !steps.outage()) {
            steps.step(
                self.lookup_table(epoch, pages_for(set.len.max(set.len_at(epoch))))
                    .await,
            );
        }
        steps.finish().map(|()| acted)
    }

    /// Sends `accept_deal` again for stored shards of Proposed deals, while they can
    /// still be accepted.
    async fn accept_stored(&self, epoch: u64, deals: &[(Pubkey, Deal)], provider: &Provider) {
        for (key, deal) in deals {
            let Ok(Some(record)) = self.node.store.record(&key.to_bytes()) else {
                continue;
            };
            if record.state != RecordState::Stored || record.accepted {
                continue;
            }
            match deal.state {
                DealState::Proposed
                    if !provider.is_jailed()
                        && epoch <= deal.proposed_epoch + deal.accept_timeout_epochs =>
                {
                    self.node.accept(key).await
                }
                DealState::Proposed => {}
                _ => {
                    let _ = self.node.store.mark_accepted(&key.to_bytes());
                }
            }
        }
    }

    /// Settles Active deals whose epochs are all closed (which finishes them) or
    /// that have `settle_interval_epochs` unsettled, grouped by the log page of their
    /// first unsettled epoch, [`SETTLE_BATCH`] per transaction. Whether it settled
    /// any; a failed batch does not stop the others, and the first failure is
    /// returned.
    async fn settle(
        &self,
        now: u64,
        deals: &[(Pubkey, Deal)],
        provider: &Provider,
    ) -> Result<bool, ChainError> {
        let mut by_page: BTreeMap<u32, Vec<Pubkey>> = BTreeMap::new();
        for (key, deal) in deals {
            if deal.state != DealState::Active {
                continue;
            }
            let owed_until = deal.end_epoch.min(provider.jailed_from);
            let ended = owed_until <= now;
            let due = deal.settled_until < owed_until.min(now)
                && now.saturating_sub(deal.settled_until) >= self.config.settle_interval_epochs;
            if ended || due {
                by_page
                    .entry(log_page(deal.settled_until))
                    .or_default()
                    .push(*key);
            }
        }
        let mut steps = Steps::default();
        let mut settled = false;
        for (page, keys) in by_page {
            for batch in keys.chunks(SETTLE_BATCH) {
                if steps.outage() {
                    return steps.finish().map(|()| settled);
                }
                let ix = self.chain.ix.settle_ix(&self.chain.provider, page, batch);
                match self.chain.send(&[ix]).await {
                    Ok(sig) => {
                        self.node
                            .metrics
                            .settlements
                            .fetch_add(batch.len() as u64, Relaxed);
                        info!(page, deals = batch.len(), %sig, "settled deals");
                        settled = true;
                    }
                    Err(e) => {
                        warn!(page, deals = batch.len(), error = %e, "settle failed; retrying");
                        steps.step::<()>(Err(e));
                    }
                }
            }
        }
        steps.finish().map(|()| settled)
    }

    /// Removes the deals that owe nothing from the next epoch on from the deal set,
    /// highest index first (the last entry leaving moves nothing), tracking the
    /// entries each removal moves. Whether any left.
    async fn leave(
        &self,
        now: u64,
        deals: &[(Pubkey, Deal)],
        provider: &Provider,
        set: &DealSet,
    ) -> Result<bool, ChainError> {
        let mut left = false;
        let mut at: HashMap<u32, Pubkey> = HashMap::new();
        let mut index_of: HashMap<Pubkey, u32> = HashMap::new();
        let mut leaving = Vec::new();
        for (key, deal) in deals.iter().filter(|(_, d)| d.in_set) {
            at.insert(deal.set_index, *key);
            index_of.insert(*key, deal.set_index);
            let owed_until = deal.end_epoch.min(provider.jailed_from);
            if deal.state != DealState::Active || owed_until <= now + 1 {
                leaving.push(*key);
            }
        }
        let mut len = set.len;
        while let Some(pos) = (0..leaving.len()).max_by_key(|i| index_of[&leaving[*i]]) {
            let key = leaving.swap_remove(pos);
            let index = index_of[&key];
            let Some(last) = len.checked_sub(1).filter(|last| index <= *last) else {
                return Err(ChainError::new(format!(
                    "deal {key} at {index} is past the set's {len} entries: the set changed meanwhile"
                )));
            };
            let moved = if index == last {
                None
            } else {
                match at.get(&last) {
                    Some(moved) => Some((*moved, last)),
                    None => {
                        return Err(ChainError::new(format!(
                            "the set's last entry {last} is not among the deals read: the set changed meanwhile"
                        )))
                    }
                }
            };
            let ix = self
                .chain
                .ix
                .leave_deal_set_ix(&self.chain.provider, &key, index, moved);
            match self.chain.send(&[ix]).await {
                Ok(sig) => {
                    self.node.metrics.deals_left_set.fetch_add(1, Relaxed);
                    info!(deal = %key, index, %sig, "deal left the deal set");
                    at.remove(&last);
                    index_of.remove(&key);
                    if let Some((moved, _)) = moved {
                        at.insert(index, moved);
                        index_of.insert(moved, index);
                    }
                    len = last;
                    left = true;
                }
                Err(e) => {
                    warn!(deal = %key, error = %e, "leave_deal_set failed; retrying");
                    return Err(e);
                }
            }
        }
        Ok(left)
    }

    /// Deletes stored shards of deals that are finished and out of the deal set, or
    /// whose account is gone (closed by the client).
    async fn remove_finished(&self, deals: &[(Pubkey, Deal)]) {
        let Ok(records) = self.node.store.records() else {
            return;
        };
        let known: HashMap<&Pubkey, &Deal> = deals.iter().map(|(k, d)| (k, d)).collect();
        let finished = |d: &Deal| {
            !d.in_set
                && matches!(
                    d.state,
                    DealState::Completed | DealState::Terminated | DealState::Cancelled
                )
        };
        for (id, record) in records {
            if record.state != RecordState::Stored {
                continue;
            }
            let key = Pubkey::new_from_array(id);
            let done = match known.get(&key) {
                Some(deal) => finished(deal),
                None => match self.chain.fetch::<Deal>(&key).await {
                    Ok(None) => true,
                    Ok(Some(deal)) => finished(&deal),
                    Err(_) => false,
                },
            };
            if !done {
                continue;
            }
            match self.node.remove_shard(&id) {
                Ok(()) => {
                    self.node.metrics.shards_removed.fetch_add(1, Relaxed);
                    info!(deal = %key, bytes = record.size, "deleted the shard of a finished deal");
                }
                Err(e) => warn!(deal = %key, error = %e, "cannot delete a finished deal's shard"),
            }
        }
    }
}
