//! The QUIC shard server: one task per connection, one per stream, each request
//! answered through the core codec; every refusal is a typed [`WireError`].

use crate::{
    chain::ChainView,
    disk::disk_free,
    metrics::Metrics,
    store::{
        crash_point, write_at, BlockSums, DealId, RecordState, ShardHasher, Store, StoreError,
        SUM_BLOCK,
    },
};
use cairn_chain::Pubkey;
use cairn_core::{
    codec::DecodeError,
    wire::{
        Codec, ErrorCode, NodeInfo, Proof, PutShard, Request, Response, ShardData, ShardState,
        ShardStatus, WireError, LEN_PREFIX,
    },
};
use cairn_proof::{Tree, SEGMENT_BYTES};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use lru::LruCache;
use std::{
    collections::HashMap,
    fs::File,
    net::IpAddr,
    num::NonZeroUsize,
    sync::{atomic::Ordering::Relaxed, Arc, Mutex},
    time::{Duration, Instant},
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
    /// Most simultaneous connections from one IP address.
    pub max_connections_per_ip: u32,
    /// Requests naming a deal the node does not have that one IP address may make
    /// per second (each costs a chain lookup); past it the address is answered
    /// `Busy` for a second.
    pub unknown_deals_per_sec_per_ip: u32,
    /// Disk space the node always leaves free (for its database and the system).
    pub min_free_disk_bytes: u64,
    /// How often idle uploads are closed and uploads of deals that are no longer
    /// Proposed are dropped.
    pub sweep_interval: Duration,
    /// Wait for a header, and between two pieces of a body.
    pub request_timeout: Duration,
    /// Fsync and record the resume offset every this many bytes.
    pub checkpoint_bytes: u64,
}

impl Default for Limits {
    /// The defaults of a node's config file.
    fn default() -> Limits {
        crate::config::Config::default().limits()
    }
}

struct Upload {
    file: File,
    builder: ShardHasher,
    received: u64,
    since_checkpoint: u64,
}

/// One deal's upload slot: the open upload between requests, and when it was
/// last used (idle ones are closed by [`Node::sweep`]).
#[derive(Default)]
struct UploadSlot {
    upload: Option<Upload>,
    used: Option<Instant>,
}

/// How many unknown deals the node remembers, and for how long.
const UNKNOWN_DEALS: usize = 4096;
const UNKNOWN_DEAL_TTL: Duration = Duration::from_secs(1);
/// An upload reads the disk's free space again after at most this many bytes.
const ROOM_RECHECK: u64 = 4 << 20;
/// Chain lookups in flight at once, whoever asks.
const LOOKUPS_IN_FLIGHT: usize = 8;

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
    uploads: Mutex<HashMap<DealId, Arc<tokio::sync::Mutex<UploadSlot>>>>,
    trees: Mutex<LruCache<DealId, Arc<Tree>>>,
    sums: Mutex<LruCache<DealId, Arc<BlockSums>>>,
    accepting: Mutex<std::collections::HashSet<Pubkey>>,
    per_ip: Mutex<HashMap<IpAddr, u32>>,
    unknown: Mutex<LruCache<DealId, Instant>>,
    misses: DefaultKeyedRateLimiter<IpAddr>,
    throttled: Mutex<LruCache<IpAddr, Instant>>,
    lookups: tokio::sync::Semaphore,
}

/// Trees kept in memory for proofs (least recently used go first).
const TREE_CACHE: usize = 4096;
/// Block sums kept in memory for reads (a 4 GiB shard's are 512 KiB).
const SUMS_CACHE: usize = 64;

/// What a read is checked against.
enum ReadCheck {
    Sums(Arc<BlockSums>),
    Tree(Arc<Tree>),
}
/// Largest piece read from a stream or a file at once.
const PIECE: usize = 256 * 1024;

fn refuse(code: ErrorCode, message: impl Into<String>) -> WireError {
    WireError::new(code, message)
}

fn internal(e: impl std::fmt::Display) -> WireError {
    WireError::new(ErrorCode::Internal, e.to_string())
}

/// A store error as a refusal: a full disk is the node's capacity, not a crash.
fn store_refusal(e: StoreError) -> WireError {
    if e.is_disk_full() {
        refuse(
            ErrorCode::CapacityExceeded,
            format!("the node's disk is full: {e}"),
        )
    } else {
        internal(e)
    }
}

fn corrupt(deal: &DealId, what: impl std::fmt::Display) -> WireError {
    refuse(
        ErrorCode::CorruptCopy,
        format!("deal {}: {what}", Pubkey::new_from_array(*deal)),
    )
}

fn cache(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).expect("non-zero cache size")
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
        let per_sec = std::num::NonZeroU32::new(limits.unknown_deals_per_sec_per_ip.max(1))
            .expect("at least 1");
        let node = Node {
            codec: Codec::new(limits.max_header_bytes),
            store,
            chain,
            metrics,
            operator,
            misses: RateLimiter::keyed(Quota::per_second(per_sec)),
            limits,
            uploads: Mutex::new(HashMap::new()),
            trees: Mutex::new(LruCache::new(cache(TREE_CACHE))),
            sums: Mutex::new(LruCache::new(cache(SUMS_CACHE))),
            accepting: Mutex::new(Default::default()),
            per_ip: Mutex::new(HashMap::new()),
            unknown: Mutex::new(LruCache::new(cache(UNKNOWN_DEALS))),
            throttled: Mutex::new(LruCache::new(cache(UNKNOWN_DEALS))),
            lookups: tokio::sync::Semaphore::new(LOOKUPS_IN_FLIGHT),
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

    /// Bytes the node can still accept: its capacity left, and the disk's free
    /// space less [`Limits::min_free_disk_bytes`].
    pub fn free_capacity(&self) -> u64 {
        self.limits
            .capacity_bytes
            .saturating_sub(self.store.used_bytes())
            .min(self.disk_room())
    }

    fn disk_room(&self) -> u64 {
        disk_free(&self.store.shard_path(&[0; 32]))
            .unwrap_or(u64::MAX)
            .saturating_sub(self.limits.min_free_disk_bytes)
    }

    /// Uploads with an open file between requests.
    pub fn open_uploads(&self) -> usize {
        self.uploads.lock().expect("uploads lock").len()
    }

    /// Closes uploads idle for longer than twice the request timeout, and drops the
    /// partial uploads (and the capacity they hold) of deals that are no longer
    /// Proposed for this provider: cancelled, closed or accepted elsewhere.
    pub async fn sweep(&self) {
        let idle = self.limits.request_timeout * 2;
        let slots: Vec<_> = self
            .uploads
            .lock()
            .expect("uploads lock")
            .iter()
            .map(|(d, s)| (*d, s.clone()))
            .collect();
        for (deal, slot) in slots {
            let Ok(mut slot) = slot.try_lock() else {
                continue;
            };
            if slot.used.is_none_or(|t| t.elapsed() >= idle) {
                slot.upload = None;
                self.uploads.lock().expect("uploads lock").remove(&deal);
            }
        }
        let Ok(records) = self.store.records() else {
            return;
        };
        for (deal, record) in records {
            if record.state != RecordState::Receiving {
                continue;
            }
            let key = Pubkey::new_from_array(deal);
            let proposed = match self.chain.deal(&key).await {
                Ok(Some(d)) => {
                    d.state == DealState::Proposed && d.provider == self.chain.provider()
                }
                Ok(None) => false,
                Err(e) => {
                    debug!(deal = %key, error = %e, "cannot check a partial upload on chain; kept");
                    continue;
                }
            };
            if proposed {
                continue;
            }
            let slot = self
                .uploads
                .lock()
                .expect("uploads lock")
                .get(&deal)
                .cloned();
            let _busy = match &slot {
                Some(s) => match s.try_lock() {
                    Ok(guard) => Some(guard),
                    Err(_) => continue, // a request is using it; next sweep
                },
                None => None,
            };
            match blocking(|| self.store.discard(&deal)) {
                Ok(()) => {
                    self.uploads.lock().expect("uploads lock").remove(&deal);
                    self.metrics.uploads_dropped.fetch_add(1, Relaxed);
                    info!(deal = %key, held = record.received, "dropped the upload of a deal that is no longer proposed");
                }
                Err(e) => warn!(deal = %key, error = %e, "cannot drop a stale upload"),
            }
        }
        self.misses.retain_recent();
    }

    /// Records complete shard files that lost their record (see
    /// [`crate::store::ReconcileReport::unclaimed`]) for deals of this provider that
    /// still need them, when their bytes hash to the deal's root; deletes the others.
    /// Files whose deal cannot be read now are kept for the next start.
    pub async fn adopt_unclaimed(&self, deals: &[DealId]) {
        for deal in deals {
            let key = Pubkey::new_from_array(*deal);
            let wanted = match self.chain.deal(&key).await {
                Ok(Some(d))
                    if d.provider == self.chain.provider()
                        && matches!(d.state, DealState::Proposed | DealState::Active) =>
                {
                    Some(d)
                }
                Ok(_) => None,
                Err(e) => {
                    warn!(deal = %key, error = %e, "cannot read the deal of an unrecorded shard file; kept for the next start");
                    continue;
                }
            };
            let result = blocking(|| match &wanted {
                Some(d) => self.store.adopt(deal, d.shard_bytes, d.shard_root),
                None => self.store.discard(deal).map(|()| false),
            });
            match result {
                Ok(true) => info!(deal = %key, "adopted a stored shard whose record was lost"),
                Ok(false) => info!(deal = %key, "deleted an unrecorded shard file no deal needs"),
                Err(e) => warn!(deal = %key, error = %e, "cannot adopt an unrecorded shard file"),
            }
        }
        self.refresh_store_metrics();
    }

    /// Accepts connections until `cancel`.
    pub async fn serve(self: Arc<Self>, endpoint: quinn::Endpoint, cancel: CancellationToken) {
        info!(addr = ?endpoint.local_addr().ok(), "QUIC server listening");
        let mut sweep = tokio::time::interval(self.limits.sweep_interval);
        sweep.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let incoming = tokio::select! {
                _ = cancel.cancelled() => break,
                _ = sweep.tick() => {
                    let node = self.clone();
                    tokio::spawn(async move { node.sweep().await });
                    continue;
                }
                incoming = endpoint.accept() => match incoming {
                    Some(i) => i,
                    None => break,
                },
            };
            let remote = incoming.remote_address();
            if self.metrics.connections.load(Relaxed) >= u64::from(self.limits.max_connections) {
                warn!(%remote, "connection limit reached; refusing");
                incoming.refuse();
                continue;
            }
            let ip = remote.ip().to_canonical();
            {
                let mut per_ip = self.per_ip.lock().expect("per-ip lock");
                let n = per_ip.entry(ip).or_insert(0);
                if *n >= self.limits.max_connections_per_ip {
                    drop(per_ip);
                    debug!(%remote, "per-address connection limit reached; refusing");
                    self.metrics.connections_refused.fetch_add(1, Relaxed);
                    incoming.refuse();
                    continue;
                }
                *n += 1;
            }
            let node = self.clone();
            let cancel = cancel.clone();
            node.metrics.connections.fetch_add(1, Relaxed);
            tokio::spawn(
                async move {
                    match incoming.await {
                        Ok(connection) => node.clone().connection(connection, ip, cancel).await,
                        Err(e) => debug!(error = %e, "handshake failed"),
                    }
                    node.metrics.connections.fetch_sub(1, Relaxed);
                    let mut per_ip = node.per_ip.lock().expect("per-ip lock");
                    if let Some(n) = per_ip.get_mut(&ip) {
                        *n -= 1;
                        if *n == 0 {
                            per_ip.remove(&ip);
                        }
                    }
                }
                .instrument(info_span!("connection", %remote)),
            );
        }
        endpoint.close(0u32.into(), b"shutting down");
    }

    async fn connection(
        self: Arc<Self>,
        connection: quinn::Connection,
        peer: IpAddr,
        cancel: CancellationToken,
    ) {
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
            tokio::spawn(
                node.stream(send, recv, peer)
                    .instrument(info_span!("stream", id)),
            );
        }
    }

    async fn stream(
        self: Arc<Self>,
        mut send: quinn::SendStream,
        mut recv: quinn::RecvStream,
        peer: IpAddr,
    ) {
        let answer =
            match tokio::time::timeout(self.limits.request_timeout, self.read_request(&mut recv))
                .await
            {
                Err(_) => Err(refuse(
                    ErrorCode::BadRequest,
                    "no complete request header before the request timeout",
                )),
                Ok(Err(e)) => Err(e),
                Ok(Ok(request)) => self.handle(request, peer, &mut send, &mut recv).await,
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
                // A peer that grants no flow-control credit does not hold the task.
                let written =
                    tokio::time::timeout(self.limits.request_timeout, send.write_all(&bytes)).await;
                if written.is_err() {
                    self.metrics.writes_timed_out.fetch_add(1, Relaxed);
                    let _ = send.reset(0u32.into());
                    return;
                }
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
        peer: IpAddr,
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
                .status(&s.deal, peer)
                .await
                .map(|s| Some(Response::ShardStatus(s))),
            Request::PutShard(p) => self
                .put(p, peer, recv)
                .await
                .map(|s| Some(Response::PutShard(s))),
            Request::GetShard(g) => self
                .get(&g.deal, g.offset, g.len, send)
                .await
                .map(|()| None),
            Request::GetProof(g) => self
                .proof(&g.deal, g.index)
                .map(|p| Some(Response::Proof(p))),
        }
    }

    async fn status(&self, deal: &DealId, peer: IpAddr) -> Result<ShardStatus, WireError> {
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
        let on_chain = self.our_deal(deal, peer).await?;
        Ok(ShardStatus {
            state: ShardState::Receiving,
            received: 0,
            size: on_chain.shard_bytes,
        })
    }

    /// The deal account of a deal of this provider. Lookups are bounded: a deal
    /// found unknown is answered from memory for a second, an address that names
    /// too many unknown deals is answered `Busy` for a second, and at most
    /// [`LOOKUPS_IN_FLIGHT`] lookups run at once.
    async fn our_deal(
        &self,
        deal: &DealId,
        peer: IpAddr,
    ) -> Result<storage_market::state::Deal, WireError> {
        let key = Pubkey::new_from_array(*deal);
        let now = Instant::now();
        if self
            .unknown
            .lock()
            .expect("unknown lock")
            .get(deal)
            .is_some_and(|until| *until > now)
        {
            return Err(refuse(
                ErrorCode::UnknownDeal,
                format!("no deal account {key} for this provider on chain"),
            ));
        }
        if self
            .throttled
            .lock()
            .expect("throttled lock")
            .get(&peer)
            .is_some_and(|until| *until > now)
        {
            self.metrics.lookups_throttled.fetch_add(1, Relaxed);
            return Err(refuse(
                ErrorCode::Busy,
                format!("too many requests for unknown deals from {peer}; retry in a second"),
            ));
        }
        let found = {
            let _permit = self.lookups.acquire().await.expect("never closed");
            self.metrics.chain_lookups.fetch_add(1, Relaxed);
            self.chain.deal(&key).await.map_err(|e| {
                refuse(
                    ErrorCode::Internal,
                    format!("reading deal {key} from chain: {e}"),
                )
            })?
        };
        if found
            .as_ref()
            .is_none_or(|d| d.provider != self.chain.provider())
        {
            self.unknown
                .lock()
                .expect("unknown lock")
                .put(*deal, now + UNKNOWN_DEAL_TTL);
            if self.misses.check_key(&peer).is_err() {
                self.throttled
                    .lock()
                    .expect("throttled lock")
                    .put(peer, now + Duration::from_secs(1));
            }
        }
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
        peer: IpAddr,
        recv: &mut quinn::RecvStream,
    ) -> Result<ShardStatus, WireError> {
        let key = Pubkey::new_from_array(p.deal);
        // The signature first: a forged request costs no chain lookup.
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
        let deal = self.our_deal(&p.deal, peer).await?;
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
        let Ok(mut slot) = slot.try_lock() else {
            return Err(refuse(
                ErrorCode::Busy,
                format!("another upload of deal {key} is in progress"),
            ));
        };
        slot.used = Some(Instant::now());
        let guard = &mut slot.upload;

        let record = match self.store.record(&p.deal).map_err(internal)? {
            Some(r) if r.state == RecordState::Stored => {
                return Err(refuse(
                    ErrorCode::NotProposed,
                    format!("the node already stores deal {key}'s shard"),
                ));
            }
            Some(r) => r,
            None => {
                let free = self.free_capacity();
                if deal.shard_bytes > free {
                    return Err(refuse(
                        ErrorCode::CapacityExceeded,
                        format!("shard of {} bytes, {free} bytes free", deal.shard_bytes),
                    ));
                }
                *guard = None;
                blocking(|| self.store.begin(&p.deal, deal.shard_bytes, deal.shard_root))
                    .map_err(store_refusal)?
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
                let file = self.store.open_partial(&p.deal, received)?;
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

        // Stream the body to disk, hashing as it arrives; capacity is taken
        // piece by piece, before each write.
        let path = self.store.partial_path(&p.deal);
        let mut left = p.len;
        let mut failure = None;
        // The disk's spare room, read again (statvfs) whenever it may not cover the
        // next piece, and at least every ROOM_RECHECK bytes.
        let mut room = 0u64;
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
            let n = chunk.len() as u64;
            let upto = upload.received + n;
            if room < n.max(ROOM_RECHECK) {
                room = self.disk_room().min(ROOM_RECHECK * 2);
            }
            let reserved = if room < n {
                Err(format!("the disk has {room} bytes to spare"))
            } else {
                self.store
                    .reserve(&p.deal, upto, self.limits.capacity_bytes)
                    .map_err(|e| e.to_string())
            };
            room = room.saturating_sub(n);
            if let Err(why) = reserved {
                failure = Some(refuse(
                    ErrorCode::CapacityExceeded,
                    format!("after {} bytes of deal {key}: {why}", upload.received),
                ));
                break;
            }
            if let Err(e) = blocking(|| write_at(&upload.file, &path, upload.received, &chunk)) {
                warn!(deal = %key, error = %e, "cannot write an upload's bytes");
                failure = Some(store_refusal(e));
                // Reopened (truncated to what is durable) by the next request.
                upload.since_checkpoint = u64::MAX;
                break;
            }
            upload.builder.update(&chunk);
            upload.received = upto;
            upload.since_checkpoint += n;
            left -= n;
            self.metrics.upload_bytes.fetch_add(n, Relaxed);
            if upload.since_checkpoint >= self.limits.checkpoint_bytes {
                blocking(|| {
                    self.store
                        .checkpoint(&p.deal, &upload.file, upload.received)
                })
                .map_err(store_refusal)?;
                upload.since_checkpoint = 0;
            }
        }
        if let Some(e) = failure {
            // Keep what arrived: the client resumes from the reported offset.
            let torn = upload.since_checkpoint == u64::MAX;
            let kept = blocking(|| {
                self.store
                    .checkpoint(&p.deal, &upload.file, upload.received)
            });
            if torn || kept.is_err() {
                *guard = None;
            }
            kept.map_err(store_refusal)?;
            return Err(e);
        }
        if upload.received < deal.shard_bytes {
            blocking(|| {
                self.store
                    .checkpoint(&p.deal, &upload.file, upload.received)
            })
            .map_err(store_refusal)?;
            upload.since_checkpoint = 0;
            return Ok(ShardStatus {
                state: ShardState::Receiving,
                received: upload.received,
                size: deal.shard_bytes,
            });
        }

        // Complete: keep it only if the root matches the deal's.
        let done = guard.take().expect("set above");
        let hashed = done.builder.finish();
        self.uploads.lock().expect("uploads lock").remove(&p.deal);
        if hashed.tree.root() != deal.shard_root {
            blocking(|| self.store.discard(&p.deal)).map_err(internal)?;
            warn!(deal = %key, "uploaded shard does not match the deal's root; discarded");
            return Err(refuse(
                ErrorCode::RootMismatch,
                format!(
                    "computed root {} but deal {key} has {}",
                    bs58::encode(hashed.tree.root()).into_string(),
                    bs58::encode(deal.shard_root).into_string()
                ),
            ));
        }
        blocking(|| self.store.finish(&p.deal, &done.file, &hashed)).map_err(store_refusal)?;
        self.refresh_store_metrics();
        info!(deal = %key, bytes = deal.shard_bytes, "shard stored");
        crash_point("shard-recorded-before-accept");
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
        self.trees.lock().expect("trees lock").pop(deal);
        self.sums.lock().expect("sums lock").pop(deal);
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
        self.trees
            .lock()
            .expect("trees lock")
            .put(*deal, tree.clone());
        Ok(tree)
    }

    /// The node found its own copy of a shard corrupt: counted and logged; the
    /// deal fails its proofs until the client repairs it elsewhere.
    fn found_corrupt(&self, deal: &DealId, what: impl std::fmt::Display) -> WireError {
        self.metrics.corrupt_reads.fetch_add(1, Relaxed);
        warn!(deal = %Pubkey::new_from_array(*deal), %what, "the stored copy of a shard is corrupt");
        corrupt(deal, format!("the node's stored copy is corrupt: {what}"))
    }

    /// Segment `index` of a stored shard with its path (also used by the prover).
    pub fn proof(&self, deal: &DealId, index: u64) -> Result<Proof, WireError> {
        let tree = self.stored_tree(deal)?;
        match blocking(|| self.store.proof(deal, &tree, index)) {
            Ok(Ok((segment, path))) => Ok(Proof { segment, path }),
            Ok(Err(cairn_proof::TreeError::IndexOutOfRange { index, segments })) => Err(refuse(
                ErrorCode::OutOfRange,
                format!("segment {index} of a shard with {segments} segments"),
            )),
            Ok(Err(e)) => Err(self.found_corrupt(deal, e)),
            Err(StoreError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::UnexpectedEof =>
            {
                Err(self.found_corrupt(deal, "the shard file is short"))
            }
            Err(e) => Err(internal(e)),
        }
    }

    /// What a stored shard's reads are checked against: its block sums, or, for a
    /// shard stored before sums existed, its tree.
    fn read_check(&self, deal: &DealId) -> Result<ReadCheck, WireError> {
        if let Some(sums) = self.sums.lock().expect("sums lock").get(deal) {
            return Ok(ReadCheck::Sums(sums.clone()));
        }
        match self.store.sums(deal).map_err(internal)? {
            Some(sums) => {
                let sums = Arc::new(sums);
                self.sums
                    .lock()
                    .expect("sums lock")
                    .put(*deal, sums.clone());
                Ok(ReadCheck::Sums(sums))
            }
            None => Ok(ReadCheck::Tree(self.stored_tree(deal)?)),
        }
    }

    /// Reads shard bytes `window` (whole blocks of `check`) and checks them: the
    /// node never serves bytes it knows are wrong.
    fn read_verified(
        &self,
        deal: &DealId,
        check: &ReadCheck,
        file: &File,
        window: std::ops::Range<u64>,
        buf: &mut Vec<u8>,
    ) -> Result<(), WireError> {
        buf.resize((window.end - window.start) as usize, 0);
        blocking(|| std::os::unix::fs::FileExt::read_exact_at(file, buf, window.start)).map_err(
            |e| match e.kind() {
                std::io::ErrorKind::UnexpectedEof => {
                    self.found_corrupt(deal, "the shard file is short")
                }
                _ => internal(e),
            },
        )?;
        match check {
            ReadCheck::Sums(sums) => {
                let first = window.start / SUM_BLOCK;
                for (i, block) in buf.chunks(SUM_BLOCK as usize).enumerate() {
                    if !sums.check(first + i as u64, block) {
                        let at = (first + i as u64) * SUM_BLOCK;
                        return Err(
                            self.found_corrupt(deal, format!("bytes {at}.. fail their block sum"))
                        );
                    }
                }
            }
            ReadCheck::Tree(tree) => {
                let mut at = window.start;
                while at < window.end {
                    let range = tree.chunk_range(at / SEGMENT_BYTES as u64);
                    let chunk = &buf[(range.start - window.start) as usize
                        ..(range.end - window.start) as usize];
                    if let Err(e) = tree.path(range.start / SEGMENT_BYTES as u64, chunk) {
                        return Err(self.found_corrupt(deal, e));
                    }
                    at = range.end;
                }
            }
        }
        Ok(())
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
        let check = self.read_check(deal)?;
        let path = self.store.shard_path(deal);
        let file = blocking(|| File::open(&path)).map_err(internal)?;
        let end = offset + len;
        let size = record.size;
        // Whole blocks (or tree chunks) around the range, about PIECE at a time;
        // the first is checked before the answer starts.
        let window_at = |at: u64| match &check {
            ReadCheck::Sums(_) => {
                let start = at / SUM_BLOCK * SUM_BLOCK;
                start..(start + SUM_BLOCK).min(size)
            }
            ReadCheck::Tree(tree) => {
                let start = tree.chunk_range(at / SEGMENT_BYTES as u64).start;
                let last = (start + PIECE as u64).min(end.max(start + 1)) - 1;
                start..tree.chunk_range(last / SEGMENT_BYTES as u64).end
            }
        };
        let mut buf = Vec::with_capacity(PIECE);
        let mut window = window_at(offset);
        if len > 0 {
            self.read_verified(deal, &check, &file, window.clone(), &mut buf)?;
        }
        let header = self
            .codec
            .encode_response(&Response::ShardData(ShardData { offset, len }))
            .map_err(internal)?;
        let timeout = self.limits.request_timeout;
        if tokio::time::timeout(timeout, send.write_all(&header))
            .await
            .map_or(true, |r| r.is_err())
        {
            return Ok(()); // gone, or granting no credit
        }
        let mut at = offset;
        while at < end {
            if at >= window.end {
                window = window_at(at);
                if let Err(e) = self.read_verified(deal, &check, &file, window.clone(), &mut buf) {
                    // The answer has started: the typed code goes in the reset.
                    let _ = send.reset(quinn::VarInt::from_u32(u32::from(e.code as u16)));
                    return Ok(());
                }
            }
            let to = end.min(window.end);
            let bytes = &buf[(at - window.start) as usize..(to - window.start) as usize];
            match tokio::time::timeout(timeout, send.write_all(bytes)).await {
                Ok(Ok(())) => {}
                Ok(Err(_)) => return Ok(()), // the client went away
                Err(_) => {
                    self.metrics.writes_timed_out.fetch_add(1, Relaxed);
                    let _ = send.reset(0u32.into());
                    return Ok(());
                }
            }
            self.metrics.download_bytes.fetch_add(to - at, Relaxed);
            at = to;
        }
        Ok(())
    }
}
