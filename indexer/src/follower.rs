//! Follows the program over RPC: new signatures oldest first from the stored
//! cursor, each transaction with `getTransaction`, applied in batches (cursor
//! and data in one write); account state reconciled at start and periodically.
use crate::api::Metrics;
use crate::ingest::{self, Snapshot};
use crate::model::{RecordedTx, SkippedTx};
use crate::store::Store;
use anchor_lang::{AccountDeserialize, Discriminator};
use base64::Engine;
use cairn_chain::Pubkey;
use serde_json::{json, Value};
use solana_commitment_config::CommitmentConfig;
use solana_rpc_client::{
    nonblocking::rpc_client::RpcClient, rpc_client::GetConfirmedSignaturesForAddress2Config,
};
use solana_rpc_client_api::{
    client_error::ErrorKind,
    config::RpcTransactionConfig,
    custom_error,
    request::{RpcError, RpcRequest},
};
use solana_signature::Signature;
use solana_transaction_status_client_types::{
    EncodedConfirmedTransactionWithStatusMeta, UiTransactionEncoding,
};
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
    #[error("unexpected RPC answer: {0}")]
    Answer(String),
}

/// The commitment everything is read at: finalized data is never rolled
/// back, so what is indexed never has to be undone (see docs/DESIGN.md).
pub const COMMITMENT: CommitmentConfig = CommitmentConfig::finalized();

/// Signatures per `getSignaturesForAddress` page (the RPC's maximum).
const SIGNATURE_PAGE: usize = 1000;

/// Polls a finalized transaction may be unreadable (`null`, or one of
/// [`NOT_YET_CODES`]) before it is skipped and recorded; and for at least
/// [`NOT_YET_PATIENCE`].
pub const NOT_YET_ATTEMPTS: u32 = 20;
pub const NOT_YET_PATIENCE: Duration = Duration::from_secs(120);

/// JSON-RPC errors meaning "not readable from this node yet".
const NOT_YET_CODES: [i64; 6] = [
    custom_error::JSON_RPC_SERVER_ERROR_BLOCK_NOT_AVAILABLE,
    custom_error::JSON_RPC_SERVER_ERROR_NODE_UNHEALTHY,
    custom_error::JSON_RPC_SERVER_ERROR_SLOT_SKIPPED,
    custom_error::JSON_RPC_SERVER_ERROR_LONG_TERM_STORAGE_SLOT_SKIPPED,
    custom_error::JSON_RPC_SERVER_ERROR_TRANSACTION_HISTORY_NOT_AVAILABLE,
    custom_error::JSON_RPC_SERVER_ERROR_BLOCK_STATUS_NOT_AVAILABLE_YET,
];

/// What [`Follower::fetch`] got for one signature.
enum Fetched {
    Tx(RecordedTx),
    /// Not readable yet: stop here, try again on the next poll.
    NotYet,
    /// Cannot be indexed: record it and go on.
    Skip(SkippedTx),
}

pub struct Follower {
    rpc: RpcClient,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    config: FollowerConfig,
    next_request: Instant,
    /// The signature fetch stopped at as not readable yet, how many times,
    /// and since when.
    stuck: Option<(Signature, u32, Instant)>,
}

impl Follower {
    pub fn new(
        url: String,
        store: Arc<Store>,
        metrics: Arc<Metrics>,
        config: FollowerConfig,
    ) -> Self {
        Follower {
            rpc: RpcClient::new_with_commitment(url, COMMITMENT),
            store,
            metrics,
            config,
            next_request: Instant::now(),
            stuck: None,
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

    /// One page (at most [`SIGNATURE_PAGE`], newest first) of the program's
    /// finalized signatures older than `before` and newer than `until`.
    async fn signature_page(
        &mut self,
        before: Option<Signature>,
        until: Option<Signature>,
    ) -> Result<Vec<(Signature, u64)>, FollowError> {
        self.pace().await;
        let page = self
            .rpc
            .get_signatures_for_address_with_config(
                &self.config.program_id,
                GetConfirmedSignaturesForAddress2Config {
                    before,
                    until,
                    limit: Some(SIGNATURE_PAGE),
                    commitment: Some(COMMITMENT),
                },
            )
            .await
            .inspect_err(|_| {
                self.metrics.rpc_errors.inc();
            })?;
        page.into_iter()
            .map(|s| {
                let sig = s.signature.parse().map_err(|e| {
                    FollowError::Answer(format!("getSignaturesForAddress: {}: {e}", s.signature))
                })?;
                Ok((sig, s.slot))
            })
            .collect()
    }

    fn cursor(&self) -> Result<Option<Signature>, FollowError> {
        match self.store.cursor()? {
            Some(c) => Ok(Some(c.signature.parse::<Signature>().map_err(|e| {
                FollowError::Answer(format!("stored cursor {}: {e}", c.signature))
            })?)),
            None => Ok(None),
        }
    }

    /// Fetches and applies every transaction newer than the cursor, oldest
    /// first, one signature page at a time in write batches of `batch`; returns
    /// how many were applied or skipped.
    ///
    /// `getSignaturesForAddress` lists newest first, so the history is paged
    /// down first keeping one signature per page (where the next older page
    /// starts), then read back up one page at a time: memory is one page and
    /// a few signatures per thousand, however long the history.
    ///
    /// Stops, without skipping, at a transaction not readable yet (or on an
    /// RPC failure) so that no gap is left, unless it cannot be indexed for
    /// good (see [`Follower::fetch`]): then it is recorded as skipped and the
    /// cursor moves past it.
    pub async fn catch_up(&mut self) -> Result<u64, FollowError> {
        self.pace().await;
        match self.rpc.get_slot_with_commitment(COMMITMENT).await {
            Ok(slot) => {
                self.metrics
                    .chain_slot
                    .inner()
                    .fetch_max(slot, Ordering::Relaxed);
            }
            Err(e) => {
                self.metrics.rpc_errors.inc();
                return Err(e.into());
            }
        }
        // Where each page to read starts (`before`), newest first; the
        // oldest page's start is last.
        let until = self.cursor()?;
        let mut starts = vec![None];
        loop {
            let page = self
                .signature_page(*starts.last().expect("one"), until)
                .await?;
            match page.last() {
                Some((oldest, _)) if page.len() == SIGNATURE_PAGE => {
                    starts.push(Some(*oldest));
                }
                _ => break,
            }
        }
        let mut done = 0;
        while let Some(before) = starts.pop() {
            // Until the cursor as it is now: the pages below are applied.
            let until = self.cursor()?;
            let mut page = self.signature_page(before, until).await?;
            page.reverse();
            match self.apply_page(&page, &mut done).await? {
                true => {}
                false => break,
            }
        }
        Ok(done)
    }

    /// Fetches and applies `sigs` (oldest first) in write batches; `false`
    /// when it stopped at a transaction not readable yet.
    async fn apply_page(
        &mut self,
        sigs: &[(Signature, u64)],
        done: &mut u64,
    ) -> Result<bool, FollowError> {
        for chunk in sigs.chunks(self.config.batch.max(1)) {
            let mut txs = Vec::with_capacity(chunk.len());
            let mut stop = None;
            for (signature, slot) in chunk {
                match self.fetch(signature, *slot).await {
                    Ok(Fetched::Tx(tx)) => txs.push(tx),
                    Ok(Fetched::Skip(skipped)) => {
                        *done += self.apply(&txs)?;
                        txs.clear();
                        tracing::error!(
                            signature = %skipped.signature,
                            slot = skipped.slot,
                            "skipping a transaction that cannot be indexed: {}",
                            skipped.reason
                        );
                        ingest::skip(&self.store, &skipped)?;
                        self.metrics.skipped_transactions.inc();
                        self.stuck = None;
                        *done += 1;
                    }
                    Ok(Fetched::NotYet) => {
                        stop = Some(Ok(()));
                        break;
                    }
                    Err(e) => {
                        stop = Some(Err(e));
                        break;
                    }
                }
            }
            *done += self.apply(&txs)?;
            match stop {
                None => {}
                Some(Ok(())) => return Ok(false),
                // What was fetched before the failure is applied; the step fails.
                Some(Err(e)) => return Err(e),
            }
        }
        Ok(true)
    }

    fn apply(&mut self, txs: &[RecordedTx]) -> Result<u64, FollowError> {
        let done = ingest::apply(&self.store, txs)?;
        if !txs.is_empty() {
            self.stuck = None;
        }
        self.metrics.ingested_transactions.inc_by(done.transactions);
        self.metrics.ingested_events.inc_by(done.events);
        self.metrics.undecodable_events.inc_by(done.undecodable);
        Ok(done.transactions)
    }

    /// `getTransaction` at finalized commitment, its failure classified by
    /// the client's typed error kinds (never by message text):
    /// - a transport failure (connection, HTTP status, timeout) is the
    ///   endpoint's, not the transaction's: the step fails and is retried with
    ///   backoff, without limit;
    /// - `null`, or an answer that the transaction is not readable yet (block
    ///   not available, slot skipped, history not available, status not
    ///   available yet, node behind) is retried on the next polls; after
    ///   [`NOT_YET_ATTEMPTS`] of them over [`NOT_YET_PATIENCE`] the
    ///   transaction is skipped;
    /// - any other JSON-RPC error for it (such as an unsupported transaction
    ///   version or invalid parameters), an answer that is not a transaction,
    ///   or a transaction that does not decode, is skipped at once.
    async fn fetch(&mut self, sig: &Signature, slot: u64) -> Result<Fetched, FollowError> {
        let config = RpcTransactionConfig {
            encoding: Some(UiTransactionEncoding::Json),
            commitment: Some(COMMITMENT),
            max_supported_transaction_version: Some(0),
        };
        let signature = sig.to_string();
        let skip = |reason: String| {
            Fetched::Skip(SkippedTx {
                signature: signature.clone(),
                slot,
                reason,
            })
        };
        self.pace().await;
        let answer = self
            .rpc
            .send::<Option<EncodedConfirmedTransactionWithStatusMeta>>(
                RpcRequest::GetTransaction,
                json!([signature, config]),
            )
            .await;
        let not_yet = match answer {
            Ok(Some(tx)) => {
                return Ok(match ingest::record(&signature, &tx) {
                    Ok(tx) => Fetched::Tx(tx),
                    Err(e) => {
                        self.metrics.undecodable_events.inc();
                        skip(format!("the transaction does not decode: {e}"))
                    }
                })
            }
            Ok(None) => "getTransaction answered null".to_string(),
            Err(e) => {
                self.metrics.rpc_errors.inc();
                match e.kind() {
                    ErrorKind::Io(_) | ErrorKind::Reqwest(_) | ErrorKind::Middleware(_) => {
                        return Err(e.into())
                    }
                    ErrorKind::RpcError(RpcError::RpcResponseError { code, .. })
                        if NOT_YET_CODES.contains(code) =>
                    {
                        format!("getTransaction: {e}")
                    }
                    ErrorKind::RpcError(RpcError::RpcResponseError { .. })
                    | ErrorKind::RpcError(RpcError::ParseError(_))
                    | ErrorKind::SerdeJson(_) => {
                        return Ok(skip(format!("getTransaction refused it: {e}")))
                    }
                    // Not produced by `send` (request-building and signing
                    // errors): the endpoint's, retried like transport ones.
                    _ => return Err(e.into()),
                }
            }
        };
        let (attempts, since) = match &self.stuck {
            Some((s, n, since)) if s == sig => (n + 1, *since),
            _ => (1, Instant::now()),
        };
        self.stuck = Some((*sig, attempts, since));
        if attempts >= NOT_YET_ATTEMPTS && since.elapsed() >= NOT_YET_PATIENCE {
            return Ok(skip(format!(
                "not readable after {attempts} attempts: {not_yet}"
            )));
        }
        tracing::debug!("{signature}: {not_yet}; attempt {attempts}, retrying later");
        Ok(Fetched::NotYet)
    }

    /// Reads the market, every provider, deal and challenge account and every
    /// epoch-log and proof-log page, with the slot they were read at, and
    /// reconciles the store with them.
    pub async fn reconcile(&mut self) -> Result<(), FollowError> {
        let (slot_m, market) = self.accounts::<Market>().await?;
        let mint_decimals = match market.first() {
            Some((_, m)) => self.mint_decimals(&m.mint).await?,
            None => None,
        };
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
                mint_decimals,
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
        self.metrics.reconciliations.inc();
        Ok(())
    }

    /// The decimals of an SPL mint (Token or Token-2022: the same base
    /// layout, decimals at byte 44); `None` if the account is not a mint.
    async fn mint_decimals(&mut self, mint: &Pubkey) -> Result<Option<u8>, FollowError> {
        /// `COption<Pubkey>` mint authority (36 bytes), then the supply (8).
        const DECIMALS_OFFSET: usize = 44;
        self.pace().await;
        let params = json!([
            mint.to_string(),
            { "encoding": "base64", "commitment": COMMITMENT.commitment }
        ]);
        let answer: Value = match self.rpc.send(RpcRequest::GetAccountInfo, params).await {
            Ok(a) => a,
            Err(e) => {
                self.metrics.rpc_errors.inc();
                return Err(e.into());
            }
        };
        let decimals = answer["value"]["data"][0]
            .as_str()
            .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
            .and_then(|data| data.get(DECIMALS_OFFSET).copied());
        if decimals.is_none() {
            tracing::warn!("mint {mint} is not readable as an SPL mint");
        }
        Ok(decimals)
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
                "commitment": COMMITMENT.commitment,
                "withContext": true,
                "filters": [{ "memcmp": { "offset": 0, "bytes": bs58::encode(discriminator).into_string(), "encoding": "base58" } }],
            }
        ]);
        let answer: Value = match self.rpc.send(RpcRequest::GetProgramAccounts, params).await {
            Ok(a) => a,
            Err(e) => {
                self.metrics.rpc_errors.inc();
                return Err(e.into());
            }
        };
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
