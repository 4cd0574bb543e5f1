//! Follows the program over RPC: new signatures oldest first from the stored
//! cursor, each transaction with `getTransaction`, applied in batches (cursor
//! and data in one write); account state reconciled at start and periodically.
use crate::api::Metrics;
use crate::ingest::{self, Snapshot};
use crate::model::RecordedTx;
use crate::store::Store;
use anchor_lang::{AccountDeserialize, Discriminator};
use base64::Engine;
use cairn_chain::Pubkey;
use serde_json::{json, Value};
use solana_commitment_config::CommitmentConfig;
use solana_rpc_client::{
    nonblocking::rpc_client::RpcClient, rpc_client::GetConfirmedSignaturesForAddress2Config,
};
use solana_rpc_client_api::{config::RpcTransactionConfig, request::RpcRequest};
use solana_signature::Signature;
use solana_transaction_status_client_types::UiTransactionEncoding;
use std::{
    sync::{atomic::Ordering, Arc},
    time::Duration,
};
use storage_market::state::{Challenge, Deal, EpochLog, Market, ProofLog, Provider};
use tokio::time::{sleep, Instant};
use tokio_util::sync::CancellationToken;

/// How the follower paces itself.
#[derive(Clone, Debug)]
pub struct FollowerConfig {
    pub program_id: Pubkey,
    /// Wait between polls once caught up.
    pub poll_interval: Duration,
    /// Reconcile account state this often.
    pub reconcile_interval: Duration,
    /// At most this many RPC requests per second (public endpoints limit them).
    pub max_rps: Option<f64>,
    /// Transactions applied per write batch.
    pub batch: usize,
}

/// Why one follower step stopped.
#[derive(Debug, thiserror::Error)]
pub enum FollowError {
    #[error("RPC: {0}")]
    Rpc(#[from] solana_rpc_client_api::client_error::Error),
    #[error("store: {0}")]
    Store(#[from] crate::store::StoreError),
    #[error("decoding transaction {signature}: {source}")]
    Decode {
        signature: String,
        source: cairn_chain::events::EventDecodeError,
    },
    #[error("unexpected RPC answer: {0}")]
    Answer(String),
}

pub struct Follower {
    rpc: RpcClient,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    config: FollowerConfig,
    next_request: Instant,
}

impl Follower {
    pub fn new(
        url: String,
        store: Arc<Store>,
        metrics: Arc<Metrics>,
        config: FollowerConfig,
    ) -> Self {
        Follower {
            rpc: RpcClient::new_with_commitment(url, CommitmentConfig::confirmed()),
            store,
            metrics,
            config,
            next_request: Instant::now(),
        }
    }

    /// Waits for the request budget (`max_rps`).
    async fn pace(&mut self) {
        if let Some(rps) = self.config.max_rps {
            let now = Instant::now();
            if self.next_request > now {
                sleep(self.next_request - now).await;
            }
            self.next_request = Instant::now() + Duration::from_secs_f64(1.0 / rps);
        }
    }

    /// Runs until cancelled; RPC errors back off (up to 30 s) and retry.
    pub async fn run(mut self, cancel: CancellationToken) {
        let mut next_reconcile = Instant::now();
        let mut backoff = Duration::from_millis(250);
        loop {
            let step = async {
                if Instant::now() >= next_reconcile {
                    self.reconcile().await?;
                    next_reconcile = Instant::now() + self.config.reconcile_interval;
                }
                self.catch_up().await
            };
            let result = tokio::select! {
                _ = cancel.cancelled() => return,
                r = step => r,
            };
            let wait = match result {
                Ok(applied) => {
                    backoff = Duration::from_millis(250);
                    if applied == 0 {
                        self.config.poll_interval
                    } else {
                        Duration::ZERO
                    }
                }
                Err(e) => {
                    self.metrics.rpc_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!("follower: {e}; retrying in {backoff:?}");
                    let wait = backoff;
                    backoff = (backoff * 2).min(Duration::from_secs(30));
                    wait
                }
            };
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = sleep(wait) => {}
            }
        }
    }

    /// Signatures of the program newer than the cursor, oldest first.
    ///
    /// Asks with `until = cursor`; a node that cannot look the cursor up
    /// (agave answers -32020 for a transaction only confirmed, not rooted) is
    /// asked again without it, and the listing is cut at the cursor.
    async fn new_signatures(&mut self) -> Result<Vec<(String, u64)>, FollowError> {
        let cursor = self.store.cursor()?;
        let until =
            match &cursor {
                Some(c) => Some(c.signature.parse::<Signature>().map_err(|e| {
                    FollowError::Answer(format!("stored cursor {}: {e}", c.signature))
                })?),
                None => None,
            };
        match self.signatures(until).await {
            Ok(sigs) => Ok(sigs),
            Err(e) if until.is_some() => {
                tracing::debug!("getSignaturesForAddress until the cursor: {e}; listing instead");
                let cursor = cursor.map(|c| c.signature).unwrap_or_default();
                let mut sigs = self.signatures_down_to(&cursor).await?;
                sigs.reverse();
                Ok(sigs)
            }
            Err(e) => Err(e),
        }
    }

    /// Pages `getSignaturesForAddress` (newest first) down to `until`
    /// (exclusive), then returns them oldest first.
    async fn signatures(
        &mut self,
        until: Option<Signature>,
    ) -> Result<Vec<(String, u64)>, FollowError> {
        let mut out = self.pages(until, None).await?;
        out.reverse();
        Ok(out)
    }

    /// Newest first, down to `cursor` (exclusive). A recently confirmed
    /// cursor can be missing from the node's listing for a while (measured on
    /// agave 4.2.2 under load): then nothing is returned and the next poll
    /// asks again, rather than re-applying history below the cursor.
    async fn signatures_down_to(
        &mut self,
        cursor: &str,
    ) -> Result<Vec<(String, u64)>, FollowError> {
        let mut out = self.pages(None, Some(cursor)).await?;
        match out.iter().position(|(s, _)| s == cursor) {
            Some(i) => {
                out.truncate(i);
                Ok(out)
            }
            None => {
                tracing::debug!(
                    "the indexed transaction {cursor} is not listed yet; polling again"
                );
                Ok(Vec::new())
            }
        }
    }

    async fn pages(
        &mut self,
        until: Option<Signature>,
        stop_at: Option<&str>,
    ) -> Result<Vec<(String, u64)>, FollowError> {
        let mut before = None;
        let mut out = Vec::new();
        loop {
            self.pace().await;
            let page = self
                .rpc
                .get_signatures_for_address_with_config(
                    &self.config.program_id,
                    GetConfirmedSignaturesForAddress2Config {
                        before,
                        until,
                        limit: Some(1000),
                        commitment: Some(CommitmentConfig::confirmed()),
                    },
                )
                .await?;
            let Some(last) = page.last() else { break };
            before =
                Some(last.signature.parse().map_err(|e| {
                    FollowError::Answer(format!("signature {}: {e}", last.signature))
                })?);
            let full = page.len() == 1000;
            let reached = stop_at.is_some_and(|s| page.iter().any(|p| p.signature == s));
            out.extend(page.into_iter().map(|s| (s.signature, s.slot)));
            if !full || reached {
                break;
            }
        }
        Ok(out)
    }

    /// Fetches and applies every new transaction; returns how many were applied.
    /// Stops (without skipping) at a transaction not yet in history: the next
    /// call starts there, so no gap is left.
    pub async fn catch_up(&mut self) -> Result<u64, FollowError> {
        self.pace().await;
        if let Ok(slot) = self.rpc.get_slot().await {
            self.metrics.chain_slot.fetch_max(slot, Ordering::Relaxed);
        }
        let sigs = self.new_signatures().await?;
        let mut applied = 0;
        for chunk in sigs.chunks(self.config.batch.max(1)) {
            let mut txs = Vec::with_capacity(chunk.len());
            let mut complete = true;
            for (signature, _) in chunk {
                match self.fetch(signature).await? {
                    Some(tx) => txs.push(tx),
                    None => {
                        complete = false;
                        break;
                    }
                }
            }
            let done = ingest::apply(&self.store, &txs)?;
            applied += done.transactions;
            self.metrics
                .ingested_transactions
                .fetch_add(done.transactions, Ordering::Relaxed);
            self.metrics
                .ingested_events
                .fetch_add(done.events, Ordering::Relaxed);
            self.metrics
                .undecodable_events
                .fetch_add(done.undecodable, Ordering::Relaxed);
            if !complete {
                break;
            }
        }
        Ok(applied)
    }

    /// `getTransaction`; `None` while a confirmed transaction is not yet in history.
    async fn fetch(&mut self, signature: &str) -> Result<Option<RecordedTx>, FollowError> {
        let sig: Signature = signature
            .parse()
            .map_err(|e| FollowError::Answer(format!("signature {signature}: {e}")))?;
        let config = RpcTransactionConfig {
            encoding: Some(UiTransactionEncoding::Json),
            commitment: Some(CommitmentConfig::confirmed()),
            max_supported_transaction_version: Some(0),
        };
        self.pace().await;
        match self.rpc.get_transaction_with_config(&sig, config).await {
            Ok(tx) => {
                ingest::record(signature, &tx)
                    .map(Some)
                    .map_err(|source| FollowError::Decode {
                        signature: signature.to_string(),
                        source,
                    })
            }
            // Confirmed but not yet readable from history: `null` (a
            // deserialization error in the client) or -32011 / -32009.
            Err(e) => {
                tracing::debug!("getTransaction {signature}: {e}; retrying later");
                self.metrics.rpc_errors.fetch_add(1, Ordering::Relaxed);
                Ok(None)
            }
        }
    }

    /// Reads the market, every provider, deal and challenge account and every
    /// epoch-log and proof-log page, with the slot they were read at, and
    /// reconciles the store with them.
    pub async fn reconcile(&mut self) -> Result<(), FollowError> {
        let (slot_m, market) = self.accounts::<Market>().await?;
        let (slot_p, providers) = self.accounts::<Provider>().await?;
        let (slot_d, deals) = self.accounts::<Deal>().await?;
        let (slot_c, challenge) = self.accounts::<Challenge>().await?;
        let (slot_e, epoch_logs) = self.raw_accounts(EpochLog::DISCRIMINATOR).await?;
        let (slot_l, proof_logs) = self.raw_accounts(ProofLog::DISCRIMINATOR).await?;
        let pages = |accounts: Vec<(Pubkey, Vec<u8>)>,
                     decode: fn(&[u8]) -> Option<ingest::LogPage>| {
            accounts
                .into_iter()
                .filter_map(|(key, data)| {
                    let page = decode(&data);
                    if page.is_none() {
                        tracing::warn!("log page {key} does not decode");
                    }
                    page
                })
                .collect::<Vec<_>>()
        };
        // Each list is exact at its own slot; reconcile each at that slot (the
        // providers before the proof logs that count their sessions).
        for snap in [
            Snapshot {
                slot: slot_m,
                market: market.into_iter().next(),
                ..Snapshot::default()
            },
            Snapshot {
                slot: slot_p,
                providers,
                ..Snapshot::default()
            },
            Snapshot {
                slot: slot_d,
                deals,
                ..Snapshot::default()
            },
            Snapshot {
                slot: slot_c,
                challenge: challenge.into_iter().next().map(|(_, c)| c),
                ..Snapshot::default()
            },
            Snapshot {
                slot: slot_e,
                epoch_logs: pages(epoch_logs, ingest::LogPage::epoch_log),
                ..Snapshot::default()
            },
            Snapshot {
                slot: slot_l,
                proof_logs: pages(proof_logs, ingest::LogPage::proof_log),
                ..Snapshot::default()
            },
        ] {
            let r = ingest::reconcile(&self.store, &snap)?;
            if r != ingest::Reconciled::default() {
                tracing::info!(slot = snap.slot, "reconciled: {r:?}");
            }
        }
        self.metrics.reconciliations.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    async fn accounts<T: AccountDeserialize + Discriminator>(
        &mut self,
    ) -> Result<(u64, Vec<(Pubkey, T)>), FollowError> {
        let (slot, raw) = self.raw_accounts(T::DISCRIMINATOR).await?;
        let mut out = Vec::new();
        for (key, data) in raw {
            match T::try_deserialize(&mut data.as_slice()) {
                Ok(account) => out.push((key, account)),
                Err(e) => tracing::warn!("account {key} does not decode: {e}"),
            }
        }
        Ok((slot, out))
    }

    /// Every account of the program whose data starts with `discriminator`, and
    /// the slot they were read at.
    async fn raw_accounts(
        &mut self,
        discriminator: &[u8],
    ) -> Result<(u64, Vec<(Pubkey, Vec<u8>)>), FollowError> {
        self.pace().await;
        let params = json!([
            self.config.program_id.to_string(),
            {
                "encoding": "base64",
                "commitment": "confirmed",
                "withContext": true,
                "filters": [{ "memcmp": { "offset": 0, "bytes": bs58::encode(discriminator).into_string(), "encoding": "base58" } }],
            }
        ]);
        let answer: Value = self
            .rpc
            .send(RpcRequest::GetProgramAccounts, params)
            .await?;
        let bad = |what: &str| FollowError::Answer(format!("getProgramAccounts: {what}"));
        let slot = answer["context"]["slot"]
            .as_u64()
            .ok_or_else(|| bad("no context slot"))?;
        let mut out = Vec::new();
        for item in answer["value"].as_array().ok_or_else(|| bad("no value"))? {
            let key: Pubkey = item["pubkey"]
                .as_str()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| bad("bad pubkey"))?;
            let data = item["account"]["data"][0]
                .as_str()
                .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
                .ok_or_else(|| bad("bad account data"))?;
            out.push((key, data));
        }
        Ok((slot, out))
    }
}
