//! The prover: follows slots over RPC, opens each epoch if nobody has, submits
//! one proof per active deal per epoch (in parallel, retried with backoff, never
//! a second one once the chain has settled the epoch), accepts stored deals whose
//! acceptance failed earlier, and reports faults of other providers' deals.
//! It withdraws nothing.

use crate::{chain::RpcChain, server::Node, store::RecordState};
use cairn_chain::Pubkey;
use solana_signer::Signer;
use std::{
    collections::{HashMap, HashSet},
    sync::{atomic::Ordering::Relaxed, Arc, Mutex},
    time::Duration,
};
use storage_market::{
    errors::MarketError,
    instructions::ProofSample,
    state::{Challenge, Deal, DealState},
};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn, Instrument};

/// Prover settings.
#[derive(Debug, Clone)]
pub struct ProverConfig {
    /// Poll interval.
    pub poll: Duration,
    /// Proof transactions in flight at once.
    pub parallelism: usize,
    /// Token account for fault bounties; `None` disables fault reports.
    pub bounty_account: Option<Pubkey>,
}

fn code(e: MarketError) -> u32 {
    anchor_lang::error::ERROR_CODE_OFFSET + e as u32
}

/// The prover task.
pub struct Prover {
    chain: RpcChain,
    node: Arc<Node<RpcChain>>,
    config: ProverConfig,
    /// (deal, epoch) proofs in flight or done.
    claimed: Arc<Mutex<HashSet<(Pubkey, u64)>>>,
    /// (deal, through-epoch) fault reports already sent.
    reported: HashMap<Pubkey, u64>,
    /// Epochs this node already tried to open.
    opened: HashSet<u64>,
    permits: Arc<Semaphore>,
    /// Stops the proof tasks with the prover.
    cancel: CancellationToken,
}

impl Prover {
    /// A prover for `node`'s deals.
    pub fn new(chain: RpcChain, node: Arc<Node<RpcChain>>, config: ProverConfig) -> Prover {
        Prover {
            permits: Arc::new(Semaphore::new(config.parallelism)),
            chain,
            node,
            config,
            claimed: Arc::default(),
            reported: HashMap::new(),
            opened: HashSet::new(),
            cancel: CancellationToken::new(),
        }
    }

    /// Runs until `cancel`.
    pub async fn run(mut self, cancel: CancellationToken) {
        self.cancel = cancel.clone();
        info!(provider = %self.chain.provider, "prover started");
        loop {
            if let Err(e) = self.tick().await {
                debug!(error = %e, "prover round failed; retrying");
            }
            tokio::select! {
                _ = cancel.cancelled() => break,
                _ = tokio::time::sleep(self.config.poll) => {}
            }
        }
        info!("prover stopped");
    }

    async fn tick(&mut self) -> Result<(), crate::chain::ChainError> {
        let slot = self.chain.slot().await?;
        let market = self.chain.market.clone();
        let epoch = market.epoch_at(slot);
        // Epochs whose proof window is open: the previous one during its grace
        // slots, and the current one (opened here if nobody has).
        let mut windows: Vec<(u64, Challenge)> = Vec::with_capacity(2);
        if epoch > 0 {
            if let Some(c) = self.chain.challenge(epoch - 1).await? {
                if slot < c.deadline_slot {
                    windows.push((epoch - 1, c));
                }
            }
        }
        if let Some(c) = self.open(epoch).await? {
            windows.push((epoch, c));
        }

        let ours = self.chain.deals(true).await?;
        for (key, deal) in ours {
            let Ok(Some(record)) = self.node.store.record(&key.to_bytes()) else {
                continue;
            };
            if record.state != RecordState::Stored {
                continue;
            }
            match deal.state {
                DealState::Proposed if !record.accepted => self.node.accept(&key).await,
                DealState::Active => {
                    if !record.accepted {
                        let _ = self.node.store.mark_accepted(&key.to_bytes());
                    }
                    // The oldest unsettled epoch first: a proof for a later
                    // epoch would settle the earlier one as a fault.
                    for (e, challenge) in &windows {
                        let e = *e;
                        if e < deal.start_epoch || e >= deal.end_epoch || e <= deal.settled_through
                        {
                            continue;
                        }
                        if self.claimed.lock().expect("claimed").insert((key, e)) {
                            self.spawn_proof(key, deal.clone(), e, challenge.clone());
                        }
                        break;
                    }
                }
                _ => {}
            }
        }
        self.claimed
            .lock()
            .expect("claimed")
            .retain(|(_, e)| e + 2 >= epoch);

        if let Some(bounty) = self.config.bounty_account {
            if let Some(closed) = market.last_closed_epoch(slot) {
                self.report_faults(closed, bounty).await?;
            }
        }
        Ok(())
    }

    /// Opens `epoch` unless someone has; returns its challenge once visible.
    async fn open(&mut self, epoch: u64) -> Result<Option<Challenge>, crate::chain::ChainError> {
        if let Some(c) = self.chain.challenge(epoch).await? {
            return Ok(Some(c));
        }
        if self.opened.insert(epoch) {
            let ix = self
                .chain
                .ix
                .open_epoch_ix(&self.chain.operator.pubkey(), epoch);
            match self.chain.send(&[ix]).await {
                Ok(sig) => {
                    info!(epoch, %sig, "opened epoch");
                    self.node.metrics.epochs_opened.fetch_add(1, Relaxed);
                }
                // Most often someone else opened it first.
                Err(e) => {
                    self.opened.remove(&epoch);
                    debug!(epoch, error = %e, "open_epoch failed")
                }
            }
        }
        self.opened.retain(|e| *e + 4 >= epoch);
        self.chain.challenge(epoch).await
    }

    fn spawn_proof(&self, key: Pubkey, deal: Deal, epoch: u64, challenge: Challenge) {
        let chain = self.chain.clone();
        let node = self.node.clone();
        let permits = self.permits.clone();
        let claimed = self.claimed.clone();
        let cancel = self.cancel.clone();
        tokio::spawn(
            async move {
                let Ok(_permit) = permits.acquire_owned().await else {
                    return;
                };
                let done = tokio::select! {
                    _ = cancel.cancelled() => return,
                    done = prove(&chain, &node, &key, &deal, epoch, &challenge) => done,
                };
                if !done {
                    // Give a later round a chance while the window is open.
                    claimed.lock().expect("claimed").remove(&(key, epoch));
                }
            }
            .instrument(tracing::info_span!("proof", deal = %key, epoch)),
        );
    }

    async fn report_faults(
        &mut self,
        closed: u64,
        bounty: Pubkey,
    ) -> Result<(), crate::chain::ChainError> {
        let provider = self.chain.provider;
        for (key, deal) in self.chain.deals(false).await? {
            if deal.provider == provider
                || deal.state != DealState::Active
                || closed < deal.start_epoch
            {
                continue;
            }
            let through = closed.min(deal.end_epoch.saturating_sub(1));
            if through <= deal.settled_through || self.reported.get(&key) == Some(&through) {
                continue;
            }
            self.reported.insert(key, through);
            let ix = self.chain.ix.report_faults_ix(
                &self.chain.operator.pubkey(),
                &deal.provider,
                &key,
                &bounty,
            );
            match self.chain.send(&[ix]).await {
                Ok(sig) => {
                    info!(deal = %key, through, %sig, "reported faults");
                    self.node.metrics.faults_reported.fetch_add(1, Relaxed);
                }
                Err(e) if e.custom_code() == Some(code(MarketError::NothingToReport)) => {}
                Err(e) => warn!(deal = %key, error = %e, "report_faults failed"),
            }
        }
        Ok(())
    }
}

/// Proves `deal` for `epoch`, retrying with backoff until the window closes.
/// Returns whether the epoch is settled (by this proof or an earlier one).
async fn prove(
    chain: &RpcChain,
    node: &Node<RpcChain>,
    key: &Pubkey,
    deal: &Deal,
    epoch: u64,
    challenge: &Challenge,
) -> bool {
    let segments = cairn_proof::segment_count(deal.shard_bytes);
    let mut samples = Vec::with_capacity(usize::from(challenge.samples_per_proof));
    for j in 0..u32::from(challenge.samples_per_proof) {
        let index = cairn_proof::challenge_index(&challenge.seed, &key.to_bytes(), j, segments);
        match node.proof(&key.to_bytes(), index) {
            Ok(p) => samples.push(ProofSample {
                segment: p.segment,
                path: p.path,
            }),
            Err(e) => {
                warn!(error = %e, "cannot build a proof from the stored shard");
                node.metrics.proofs_failed.fetch_add(1, Relaxed);
                return false;
            }
        }
    }
    let mut backoff = Duration::from_millis(250);
    let mut attempt = 0u32;
    loop {
        if attempt > 0 {
            // A timed-out send may have landed: never send a second proof.
            match chain.fetch::<Deal>(key).await {
                Ok(Some(d)) if d.settled_through >= epoch => return true,
                Ok(Some(d)) if d.state != DealState::Active => return true,
                _ => {}
            }
            match chain.slot().await {
                Ok(slot) if slot >= challenge.deadline_slot => {
                    warn!("proof window closed before a proof landed");
                    return true;
                }
                _ => {}
            }
        }
        let ix = chain.ix.submit_proof_ix(
            &chain.operator.pubkey(),
            &chain.provider,
            key,
            epoch,
            samples.clone(),
        );
        match chain.send(&[ix]).await {
            Ok(sig) => {
                info!(%sig, attempt, "proof accepted");
                node.metrics.proofs_ok.fetch_add(1, Relaxed);
                return true;
            }
            Err(e) if e.custom_code() == Some(code(MarketError::EpochAlreadySettled)) => {
                return true
            }
            Err(e) => {
                node.metrics.proofs_failed.fetch_add(1, Relaxed);
                warn!(error = %e, attempt, "proof failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(4));
            }
        }
        attempt += 1;
    }
}
