//! The QUIC shard server: one task per connection, one per stream, each request
//! answered through the core codec; every refusal is a typed [`WireError`].

use crate::{
    chain::ChainView,
    metrics::Metrics,
    store::{append, DealId, RecordState, Store, StoreError},
};
use cairn_chain::Pubkey;
use cairn_core::{
    codec::DecodeError,
    wire::{
        Codec, ErrorCode, NodeInfo, Proof, PutShard, Request, Response, ShardData, ShardState,
        ShardStatus, WireError, LEN_PREFIX,
    },
};
use cairn_proof::{Tree, TreeBuilder};
use std::{
    collections::HashMap,
    fs::File,
    sync::{atomic::Ordering::Relaxed, Arc, Mutex},
    time::Duration,
};
use storage_market::state::DealState;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, info_span, warn, Instrument};

/// Limits the server enforces.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Total shard bytes accepted.
    pub capacity_bytes: u64,
    /// Largest header frame.
    pub max_header_bytes: usize,
    /// Most simultaneous connections.
    pub max_connections: u32,
    /// Wait for a header, and between two pieces of a body.
    pub request_timeout: Duration,
    /// Fsync and record the resume offset every this many bytes.
    pub checkpoint_bytes: u64,
}

struct Upload {
    file: File,
    builder: TreeBuilder,
    received: u64,
    since_checkpoint: u64,
}

/// The node's request handling state, shared by every connection.
///
/// File reads, writes and fsyncs run under `tokio::task::block_in_place`, so
/// the node needs a multi-thread tokio runtime.
pub struct Node<C> {
    /// The shard store.
    pub store: Arc<Store>,
    /// The chain.
    pub chain: Arc<C>,
    /// Metrics.
    pub metrics: Arc<Metrics>,
    /// The operator key (TLS identity).
    pub operator: Pubkey,
    /// Limits.
    pub limits: Limits,
    codec: Codec,
    uploads: Mutex<HashMap<DealId, Arc<tokio::sync::Mutex<Option<Upload>>>>>,
    trees: Mutex<HashMap<DealId, Arc<Tree>>>,
    accepting: Mutex<std::collections::HashSet<Pubkey>>,
}

/// Trees kept in memory for proofs before the cache is emptied.
const TREE_CACHE: usize = 4096;
/// Largest piece read from a stream or a file at once.
const PIECE: usize = 256 * 1024;

fn refuse(code: ErrorCode, message: impl Into<String>) -> WireError {
    WireError::new(code, message)
}

fn internal(e: impl std::fmt::Display) -> WireError {
    WireError::new(ErrorCode::Internal, e.to_string())
}

fn decode_refusal(e: &DecodeError) -> WireError {
    match e {
        DecodeError::HeaderTooLarge { .. } => refuse(ErrorCode::TooLarge, e.to_string()),
        DecodeError::BadVersion(_) => refuse(ErrorCode::UnsupportedVersion, e.to_string()),
        _ => refuse(ErrorCode::BadRequest, e.to_string()),
    }
}

/// Runs blocking file work on the current worker without stalling the others.
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    tokio::task::block_in_place(f)
}

impl<C: ChainView> Node<C> {
    /// A node over `store` and `chain`.
    pub fn new(
        store: Arc<Store>,
        chain: Arc<C>,
        operator: Pubkey,
        limits: Limits,
        metrics: Arc<Metrics>,
    ) -> Self {
        let node = Node {
            codec: Codec::new(limits.max_header_bytes),
            store,
            chain,
            metrics,
            operator,
            limits,
            uploads: Mutex::new(HashMap::new()),
            trees: Mutex::new(HashMap::new()),
            accepting: Mutex::new(Default::default()),
        };
        node.refresh_store_metrics();
        node
    }

    /// Recomputes the stored-shard gauges from the store.
    pub fn refresh_store_metrics(&self) {
        if let Ok(records) = self.store.records() {
            let stored: Vec<_> = records
                .iter()
                .filter(|(_, r)| r.state == RecordState::Stored)
                .collect();
            self.metrics
                .shards_stored
                .store(stored.len() as u64, Relaxed);
            self.metrics
                .stored_bytes
                .store(stored.iter().map(|(_, r)| r.size).sum(), Relaxed);
        }
    }

    /// Bytes the node can still accept.
    pub fn free_capacity(&self) -> u64 {
        self.limits
            .capacity_bytes
            .saturating_sub(self.store.used_bytes())
            .min(disk_free(&self.store.shard_path(&[0; 32])).unwrap_or(u64::MAX))
    }

    /// Accepts connections until `cancel`.
    pub async fn serve(self: Arc<Self>, endpoint: quinn::Endpoint, cancel: CancellationToken) {
        info!(addr = ?endpoint.local_addr().ok(), "QUIC server listening");
        loop {
            let incoming = tokio::select! {
                _ = cancel.cancelled() => break,
                incoming = endpoint.accept() => match incoming {
                    Some(i) => i,
                    None => break,
                },
            };
            if self.metrics.connections.load(Relaxed) >= u64::from(self.limits.max_connections) {
                warn!(remote = %incoming.remote_address(), "connection limit reached; refusing");
                incoming.refuse();
                continue;
            }
            let node = self.clone();
            let cancel = cancel.clone();
            let remote = incoming.remote_address();
            node.metrics.connections.fetch_add(1, Relaxed);
            tokio::spawn(
                async move {
                    match incoming.await {
                        Ok(connection) => node.clone().connection(connection, cancel).await,
                        Err(e) => debug!(error = %e, "handshake failed"),
                    }
                    node.metrics.connections.fetch_sub(1, Relaxed);
                }
                .instrument(info_span!("connection", %remote)),
            );
        }
        endpoint.close(0u32.into(), b"shutting down");
    }

    async fn connection(self: Arc<Self>, connection: quinn::Connection, cancel: CancellationToken) {
        loop {
            let (send, recv) = tokio::select! {
                _ = cancel.cancelled() => {
                    connection.close(0u32.into(), b"shutting down");
                    return;
                }
                stream = connection.accept_bi() => match stream {
                    Ok(s) => s,
                    Err(e) => {
                        debug!(error = %e, "connection ended");
                        return;
                    }
                },
            };
            let node = self.clone();
            let id = send.id().index();
            tokio::spawn(node.stream(send, recv).instrument(info_span!("stream", id)));
        }
    }

    async fn stream(self: Arc<Self>, mut send: quinn::SendStream, mut recv: quinn::RecvStream) {
        let answer =
            match tokio::time::timeout(self.limits.request_timeout, self.read_request(&mut recv))
                .await
            {
                Err(_) => Err(refuse(
                    ErrorCode::BadRequest,
                    "no complete request header before the request timeout",
                )),
                Ok(Err(e)) => Err(e),
                Ok(Ok(request)) => self.handle(request, &mut send, &mut recv).await,
            };
        let frame = match answer {
            Ok(None) => {
                let _ = send.finish();
                return;
            }
            Ok(Some(response)) => response,
            Err(e) => {
                self.metrics.requests_refused.fetch_add(1, Relaxed);
                debug!(code = ?e.code, message = %e.message, "refused");
                let _ = recv.stop(0u32.into());
                Response::Error(e)
            }
        };
        match self.codec.encode_response(&frame) {
            Ok(bytes) => {
                let _ = send.write_all(&bytes).await;
            }
            Err(e) => warn!(error = %e, "cannot encode a response"),
        }
        let _ = send.finish();
        // Let the peer read the answer before the stream is dropped.
        let _ = tokio::time::timeout(Duration::from_secs(5), send.stopped()).await;
    }

    async fn read_request(&self, recv: &mut quinn::RecvStream) -> Result<Request, WireError> {
        let mut prefix = [0u8; LEN_PREFIX];
        recv.read_exact(&mut prefix)
            .await
            .map_err(|e| refuse(ErrorCode::BadRequest, format!("reading the header: {e}")))?;
        let len = self
            .codec
            .header_len(prefix)
            .map_err(|e| decode_refusal(&e))?;
        let mut header = vec![0u8; len];
        recv.read_exact(&mut header)
            .await
            .map_err(|e| refuse(ErrorCode::BadRequest, format!("reading the header: {e}")))?;
        self.codec
            .decode_request(&header)
            .map_err(|e| decode_refusal(&e))
    }

    /// Answers one request; `Ok(None)` when the answer was already written.
    async fn handle(
        &self,
        request: Request,
        send: &mut quinn::SendStream,
        recv: &mut quinn::RecvStream,
    ) -> Result<Option<Response>, WireError> {
        match request {
            Request::Info => Ok(Some(Response::Info(NodeInfo {
                version: env!("CARGO_PKG_VERSION").to_string(),
                operator: self.operator.to_bytes(),
                free_capacity: self.free_capacity(),
            }))),
            Request::ShardStatus(s) => self
                .status(&s.deal)
                .await
                .map(|s| Some(Response::ShardStatus(s))),
            Request::PutShard(p) => self.put(p, recv).await.map(|s| Some(Response::PutShard(s))),
            Request::GetShard(g) => self
                .get(&g.deal, g.offset, g.len, send)
                .await
                .map(|()| None),
            Request::GetProof(g) => self
                .proof(&g.deal, g.index)
                .map(|p| Some(Response::Proof(p))),
        }
    }

    async fn status(&self, deal: &DealId) -> Result<ShardStatus, WireError> {
        if let Some(r) = self.store.record(deal).map_err(internal)? {
            return Ok(ShardStatus {
                state: match r.state {
                    RecordState::Receiving => ShardState::Receiving,
                    RecordState::Stored => ShardState::Stored,
                },
                received: r.received,
                size: r.size,
            });
        }
        let on_chain = self.our_deal(deal).await?;
        Ok(ShardStatus {
            state: ShardState::Receiving,
            received: 0,
            size: on_chain.shard_bytes,
        })
    }

    async fn our_deal(&self, deal: &DealId) -> Result<storage_market::state::Deal, WireError> {
        let key = Pubkey::new_from_array(*deal);
        let found = self.chain.deal(&key).await.map_err(|e| {
            refuse(
                ErrorCode::Internal,
                format!("reading deal {key} from chain: {e}"),
            )
        })?;
        match found {
            Some(d) if d.provider == self.chain.provider() => Ok(d),
            Some(d) => Err(refuse(
                ErrorCode::UnknownDeal,
                format!(
                    "deal {key} belongs to provider {}, not {}",
                    d.provider,
                    self.chain.provider()
                ),
            )),
            None => Err(refuse(
                ErrorCode::UnknownDeal,
                format!("no deal account {key} on chain"),
            )),
        }
    }

    async fn put(
        &self,
        p: PutShard,
        recv: &mut quinn::RecvStream,
    ) -> Result<ShardStatus, WireError> {
        let key = Pubkey::new_from_array(p.deal);
        let deal = self.our_deal(&p.deal).await?;
        if deal.state != DealState::Proposed {
            return Err(refuse(
                ErrorCode::NotProposed,
                format!("deal {key} is {:?}", deal.state),
            ));
        }
        if p.client != deal.client.to_bytes() {
            return Err(refuse(
                ErrorCode::BadSignature,
                format!(
                    "the request names client {}, the deal's client is {}",
                    Pubkey::new_from_array(p.client),
                    deal.client
                ),
            ));
        }
        let verifying = ed25519_dalek::VerifyingKey::from_bytes(&p.client).map_err(|_| {
            refuse(
                ErrorCode::BadSignature,
                "the client key is not a valid ed25519 point",
            )
        })?;
        let signature = ed25519_dalek::Signature::from_bytes(&p.signature);
        verifying
            .verify_strict(&p.message(), &signature)
            .map_err(|_| {
                refuse(
                    ErrorCode::BadSignature,
                    format!(
                        "signature over deal {key} bytes {}+{} does not verify",
                        p.offset, p.len
                    ),
                )
            })?;
        let end = p
            .offset
            .checked_add(p.len)
            .ok_or_else(|| refuse(ErrorCode::WrongSize, "offset + len overflows"))?;
        if end > deal.shard_bytes {
            return Err(refuse(
                ErrorCode::WrongSize,
                format!(
                    "bytes {}..{end} run past the deal's shard size {}",
                    p.offset, deal.shard_bytes
                ),
            ));
        }

        // One upload per deal at a time.
        let slot = self
            .uploads
            .lock()
            .expect("uploads lock")
            .entry(p.deal)
            .or_default()
            .clone();
        let Ok(mut guard) = slot.try_lock() else {
            return Err(refuse(
                ErrorCode::Busy,
                format!("another upload of deal {key} is in progress"),
            ));
        };

        let record = match self.store.record(&p.deal).map_err(internal)? {
            Some(r) if r.state == RecordState::Stored => {
                return Err(refuse(
                    ErrorCode::NotProposed,
                    format!("the node already stores deal {key}'s shard"),
                ));
            }
            Some(r) => r,
            None => {
                if deal.shard_bytes > self.free_capacity() {
                    return Err(refuse(
                        ErrorCode::CapacityExceeded,
                        format!(
                            "shard of {} bytes, {} bytes free",
                            deal.shard_bytes,
                            self.free_capacity()
                        ),
                    ));
                }
                *guard = None;
                blocking(|| self.store.begin(&p.deal, deal.shard_bytes, deal.shard_root))
                    .map_err(internal)?
            }
        };
        if record.size != deal.shard_bytes || record.root != deal.shard_root {
            // The deal account was replaced since the upload began.
            blocking(|| self.store.discard(&p.deal)).map_err(internal)?;
            *guard = None;
            return Err(refuse(
                ErrorCode::OffsetMismatch,
                "the deal changed; upload again from offset 0",
            ));
        }
        if p.offset != record.received {
            return Err(refuse(
                ErrorCode::OffsetMismatch,
                format!(
                    "the node holds {} bytes of deal {key}; resume from there",
                    record.received
                ),
            ));
        }
        if guard.as_ref().is_none_or(|u| u.received != record.received) {
            let received = record.received;
            let (file, builder) = blocking(|| {
                let builder = self.store.rehash_partial(&p.deal, received)?;
                let mut file = self.store.open_partial(&p.deal, received)?;
                std::io::Seek::seek(&mut file, std::io::SeekFrom::Start(received)).map_err(
                    |e| StoreError::Io {
                        what: "seek",
                        path: self.store.partial_path(&p.deal),
                        source: e,
                    },
                )?;
                Ok::<_, StoreError>((file, builder))
            })
            .map_err(internal)?;
            *guard = Some(Upload {
                file,
                builder,
                received,
                since_checkpoint: 0,
            });
        }
        let upload = guard.as_mut().expect("set above");

        // Stream the body to disk, hashing as it arrives.
        let path = self.store.partial_path(&p.deal);
        let mut left = p.len;
        let mut failure = None;
        while left > 0 {
            let piece = tokio::time::timeout(
                self.limits.request_timeout,
                recv.read_chunk((left.min(PIECE as u64)) as usize, true),
            )
            .await;
            let chunk = match piece {
                Ok(Ok(Some(c))) => c.bytes,
                Ok(Ok(None)) => {
                    failure = Some(refuse(
                        ErrorCode::WrongSize,
                        format!(
                            "the stream ended {left} bytes short of the announced {}",
                            p.len
                        ),
                    ));
                    break;
                }
                Ok(Err(e)) => {
                    failure = Some(refuse(
                        ErrorCode::BadRequest,
                        format!("reading the body: {e}"),
                    ));
                    break;
                }
                Err(_) => {
                    failure = Some(refuse(
                        ErrorCode::BadRequest,
                        "no body bytes before the request timeout",
                    ));
                    break;
                }
            };
            if let Err(e) = blocking(|| append(&mut upload.file, &path, &chunk)) {
                failure = Some(internal(e));
                break;
            }
            upload.builder.update(&chunk);
            upload.received += chunk.len() as u64;
            upload.since_checkpoint += chunk.len() as u64;
            left -= chunk.len() as u64;
            self.metrics
                .upload_bytes
                .fetch_add(chunk.len() as u64, Relaxed);
            if upload.since_checkpoint >= self.limits.checkpoint_bytes {
                blocking(|| {
                    self.store
                        .checkpoint(&p.deal, &upload.file, upload.received)
                })
                .map_err(internal)?;
                upload.since_checkpoint = 0;
            }
        }
        if let Some(e) = failure {
            // Keep what arrived: the client resumes from the reported offset.
            blocking(|| {
                self.store
                    .checkpoint(&p.deal, &upload.file, upload.received)
            })
            .map_err(internal)?;
            return Err(e);
        }
        if upload.received < deal.shard_bytes {
            blocking(|| {
                self.store
                    .checkpoint(&p.deal, &upload.file, upload.received)
            })
            .map_err(internal)?;
            upload.since_checkpoint = 0;
            return Ok(ShardStatus {
                state: ShardState::Receiving,
                received: upload.received,
                size: deal.shard_bytes,
            });
        }

        // Complete: keep it only if the root matches the deal's.
        let done = guard.take().expect("set above");
        let tree = done.builder.finish();
        self.uploads.lock().expect("uploads lock").remove(&p.deal);
        if tree.root() != deal.shard_root {
            blocking(|| self.store.discard(&p.deal)).map_err(internal)?;
            warn!(deal = %key, "uploaded shard does not match the deal's root; discarded");
            return Err(refuse(
                ErrorCode::RootMismatch,
                format!(
                    "computed root {} but deal {key} has {}",
                    bs58::encode(tree.root()).into_string(),
                    bs58::encode(deal.shard_root).into_string()
                ),
            ));
        }
        blocking(|| self.store.finish(&p.deal, &done.file, &tree)).map_err(internal)?;
        self.refresh_store_metrics();
        info!(deal = %key, bytes = deal.shard_bytes, "shard stored");
        self.accept(&key).await;
        Ok(ShardStatus {
            state: ShardState::Stored,
            received: deal.shard_bytes,
            size: deal.shard_bytes,
        })
    }

    /// Sends `accept_deal`; on failure the prover retries it.
    pub async fn accept(&self, key: &Pubkey) {
        // One acceptance in flight per deal (the upload path and the prover).
        if !self.accepting.lock().expect("accepting lock").insert(*key) {
            return;
        }
        if matches!(self.store.record(&key.to_bytes()), Ok(Some(r)) if r.accepted) {
            self.accepting.lock().expect("accepting lock").remove(key);
            return;
        }
        let result = self.chain.accept_deal(key).await;
        self.accepting.lock().expect("accepting lock").remove(key);
        match result {
            Ok(sig) => {
                info!(deal = %key, %sig, "deal accepted on chain");
                self.metrics.deals_accepted.fetch_add(1, Relaxed);
                if let Err(e) = self.store.mark_accepted(&key.to_bytes()) {
                    warn!(deal = %key, error = %e, "cannot record the acceptance");
                }
            }
            Err(e) => warn!(deal = %key, error = %e, "accept_deal failed; the prover retries"),
        }
    }

    /// Deletes a stored shard (its deal is finished): files, record, kept levels
    /// and the cached tree.
    pub fn remove_shard(&self, deal: &DealId) -> Result<(), StoreError> {
        self.trees.lock().expect("trees lock").remove(deal);
        blocking(|| self.store.discard(deal))?;
        self.refresh_store_metrics();
        Ok(())
    }

    fn stored_tree(&self, deal: &DealId) -> Result<Arc<Tree>, WireError> {
        if let Some(t) = self.trees.lock().expect("trees lock").get(deal) {
            return Ok(t.clone());
        }
        let record = self.store.record(deal).map_err(internal)?;
        if record.is_none_or(|r| r.state != RecordState::Stored) {
            return Err(refuse(
                ErrorCode::NotStored,
                format!("deal {}", Pubkey::new_from_array(*deal)),
            ));
        }
        let tree = Arc::new(
            self.store
                .tree(deal)
                .map_err(internal)?
                .ok_or_else(|| internal("stored shard without a tree"))?,
        );
        let mut trees = self.trees.lock().expect("trees lock");
        if trees.len() >= TREE_CACHE {
            trees.clear();
        }
        trees.insert(*deal, tree.clone());
        Ok(tree)
    }

    /// Segment `index` of a stored shard with its path (also used by the prover).
    pub fn proof(&self, deal: &DealId, index: u64) -> Result<Proof, WireError> {
        let tree = self.stored_tree(deal)?;
        match blocking(|| self.store.proof(deal, &tree, index)).map_err(internal)? {
            Ok((segment, path)) => Ok(Proof { segment, path }),
            Err(cairn_proof::TreeError::IndexOutOfRange { index, segments }) => Err(refuse(
                ErrorCode::OutOfRange,
                format!("segment {index} of a shard with {segments} segments"),
            )),
            Err(e) => Err(internal(format!("stored shard fails its tree: {e}"))),
        }
    }

    async fn get(
        &self,
        deal: &DealId,
        offset: u64,
        len: u64,
        send: &mut quinn::SendStream,
    ) -> Result<(), WireError> {
        let record = self.store.record(deal).map_err(internal)?;
        let Some(record) = record.filter(|r| r.state == RecordState::Stored) else {
            return Err(refuse(
                ErrorCode::NotStored,
                format!("deal {}", Pubkey::new_from_array(*deal)),
            ));
        };
        if offset.checked_add(len).is_none_or(|end| end > record.size) {
            return Err(refuse(
                ErrorCode::OutOfRange,
                format!("bytes {offset}+{len} of a {}-byte shard", record.size),
            ));
        }
        let header = self
            .codec
            .encode_response(&Response::ShardData(ShardData { offset, len }))
            .map_err(internal)?;
        send.write_all(&header).await.map_err(internal)?;
        let path = self.store.shard_path(deal);
        let file = blocking(|| File::open(&path)).map_err(internal)?;
        let mut buf = vec![0u8; PIECE];
        let mut at = offset;
        let end = offset + len;
        while at < end {
            let n = ((end - at).min(PIECE as u64)) as usize;
            blocking(|| std::os::unix::fs::FileExt::read_exact_at(&file, &mut buf[..n], at))
                .map_err(internal)?;
            if send.write_all(&buf[..n]).await.is_err() {
                return Ok(()); // the client went away
            }
            at += n as u64;
            self.metrics.download_bytes.fetch_add(n as u64, Relaxed);
        }
        Ok(())
    }
}

/// Free bytes on the file system holding `path`'s directory.
fn disk_free(path: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let dir = path.parent()?;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut stat: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `c` is a valid NUL-terminated path and `stat` a valid out pointer.
    let rc = unsafe { libc::statvfs(c.as_ptr(), &mut stat) };
    (rc == 0).then(|| stat.f_bavail as u64 * stat.f_frsize as u64)
}
