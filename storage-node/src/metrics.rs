//! Prometheus metrics: counters and gauges in atomics (updated by the server and
//! the prover), exported through a `prometheus-client` registry at
//! [`METRICS_PATH`] by axum, with bounded connections and requests.

use axum::{
    extract::State,
    http::{header, StatusCode},
    response::IntoResponse,
    routing::get,
    Router,
};
use prometheus_client::{
    collector::Collector,
    encoding::{DescriptorEncoder, EncodeMetric},
    metrics::{counter::ConstCounter, gauge::ConstGauge},
    registry::Registry,
};
use std::{
    future::Future as _,
    io,
    pin::Pin,
    sync::{
        atomic::{AtomicU64, Ordering::Relaxed},
        Arc,
    },
    task::{Context, Poll},
    time::Duration,
};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::{TcpListener, TcpStream},
    sync::{OwnedSemaphorePermit, Semaphore},
    time::Sleep,
};
use tokio_util::sync::CancellationToken;

/// Route of the metrics page.
pub const METRICS_PATH: &str = "/metrics";

/// Prefix of every metric name.
pub const PREFIX: &str = "cairn_node";

/// Every metric the node exports.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Shards stored (root verified).
    pub shards_stored: AtomicU64,
    /// Bytes of stored shards.
    pub stored_bytes: AtomicU64,
    /// Shard bytes received by uploads.
    pub upload_bytes: AtomicU64,
    /// Shard bytes served by downloads.
    pub download_bytes: AtomicU64,
    /// Proof sessions completed: the provider's bit set for an epoch.
    pub sessions_proven: AtomicU64,
    /// Proof transactions confirmed.
    pub proof_transactions: AtomicU64,
    /// Proof transactions that failed (each is retried), and sessions whose
    /// samples could not be built from the stored shards.
    pub proofs_failed: AtomicU64,
    /// Epochs this node opened.
    pub epochs_opened: AtomicU64,
    /// Deal settlements confirmed (one per deal per `settle` transaction).
    pub settlements: AtomicU64,
    /// Ended deals this node removed from its deal set.
    pub deals_left_set: AtomicU64,
    /// Shards of finished deals deleted.
    pub shards_removed: AtomicU64,
    /// Deals accepted on chain.
    pub deals_accepted: AtomicU64,
    /// Requests refused with an error frame.
    pub requests_refused: AtomicU64,
    /// Open QUIC connections.
    pub connections: AtomicU64,
    /// Prover rounds that failed (each is retried after a backoff).
    pub prover_rounds_failed: AtomicU64,
    /// Full scans of the provider's deals (`getProgramAccounts`).
    pub deal_scans: AtomicU64,
    /// Connections refused because their address had too many open.
    pub connections_refused: AtomicU64,
    /// Deal lookups sent to the chain for requests.
    pub chain_lookups: AtomicU64,
    /// Requests answered `Busy` because their address named too many unknown deals.
    pub lookups_throttled: AtomicU64,
    /// Answers abandoned because the peer granted no flow-control credit in time.
    pub writes_timed_out: AtomicU64,
    /// Partial uploads dropped because their deal is no longer proposed.
    pub uploads_dropped: AtomicU64,
    /// Reads that found the node's stored copy corrupt.
    pub corrupt_reads: AtomicU64,
}

/// A counter or a gauge.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Counter,
    Gauge,
}

/// One exported metric: its name after [`PREFIX`] (a counter's gets `_total`), its
/// help, its kind and its field.
type Row = (&'static str, &'static str, Kind, fn(&Metrics) -> &AtomicU64);

/// Every exported metric.
const ROWS: [Row; 22] = [
    (
        "shards_stored",
        "Shards stored with a verified root.",
        Kind::Gauge,
        |m| &m.shards_stored,
    ),
    (
        "stored_bytes",
        "Bytes of stored shards.",
        Kind::Gauge,
        |m| &m.stored_bytes,
    ),
    (
        "upload_bytes",
        "Shard bytes received by uploads.",
        Kind::Counter,
        |m| &m.upload_bytes,
    ),
    (
        "download_bytes",
        "Shard bytes served by downloads.",
        Kind::Counter,
        |m| &m.download_bytes,
    ),
    (
        "sessions_proven",
        "Proof sessions completed (the provider's bit set for an epoch).",
        Kind::Counter,
        |m| &m.sessions_proven,
    ),
    (
        "proof_transactions",
        "Proof transactions confirmed.",
        Kind::Counter,
        |m| &m.proof_transactions,
    ),
    (
        "proofs_failed",
        "Proof transactions that failed (retried) and sessions whose samples could not be built.",
        Kind::Counter,
        |m| &m.proofs_failed,
    ),
    (
        "epochs_opened",
        "Epochs opened by this node.",
        Kind::Counter,
        |m| &m.epochs_opened,
    ),
    (
        "settlements",
        "Deal settlements confirmed (one per deal per settle transaction).",
        Kind::Counter,
        |m| &m.settlements,
    ),
    (
        "deals_left_set",
        "Ended deals removed from the provider's deal set.",
        Kind::Counter,
        |m| &m.deals_left_set,
    ),
    (
        "shards_removed",
        "Shards of finished deals deleted.",
        Kind::Counter,
        |m| &m.shards_removed,
    ),
    (
        "deals_accepted",
        "Deals accepted on chain.",
        Kind::Counter,
        |m| &m.deals_accepted,
    ),
    (
        "requests_refused",
        "Requests answered with an error frame.",
        Kind::Counter,
        |m| &m.requests_refused,
    ),
    ("connections", "Open QUIC connections.", Kind::Gauge, |m| {
        &m.connections
    }),
    (
        "prover_rounds_failed",
        "Prover rounds that failed (retried after a backoff with jitter).",
        Kind::Counter,
        |m| &m.prover_rounds_failed,
    ),
    (
        "deal_scans",
        "Full scans of the provider's deals (getProgramAccounts).",
        Kind::Counter,
        |m| &m.deal_scans,
    ),
    (
        "connections_refused",
        "Connections refused because their address had too many open.",
        Kind::Counter,
        |m| &m.connections_refused,
    ),
    (
        "chain_lookups",
        "Deal lookups sent to the chain for requests.",
        Kind::Counter,
        |m| &m.chain_lookups,
    ),
    (
        "lookups_throttled",
        "Requests answered Busy because their address named too many unknown deals.",
        Kind::Counter,
        |m| &m.lookups_throttled,
    ),
    (
        "writes_timed_out",
        "Answers abandoned because the peer granted no flow-control credit in time.",
        Kind::Counter,
        |m| &m.writes_timed_out,
    ),
    (
        "uploads_dropped",
        "Partial uploads dropped because their deal is no longer proposed.",
        Kind::Counter,
        |m| &m.uploads_dropped,
    ),
    (
        "corrupt_reads",
        "Reads that found the node's stored copy of a shard corrupt.",
        Kind::Counter,
        |m| &m.corrupt_reads,
    ),
];

/// Reads the atomics at each scrape.
#[derive(Debug)]
struct Atomics(Arc<Metrics>);

impl Collector for Atomics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        for (name, help, kind, field) in ROWS {
            let value = field(&self.0).load(Relaxed);
            match kind {
                Kind::Counter => {
                    let metric = ConstCounter::new(value);
                    metric.encode(encoder.encode_descriptor(
                        name,
                        help,
                        None,
                        metric.metric_type(),
                    )?)?;
                }
                Kind::Gauge => {
                    let metric = ConstGauge::new(value);
                    metric.encode(encoder.encode_descriptor(
                        name,
                        help,
                        None,
                        metric.metric_type(),
                    )?)?;
                }
            }
        }
        Ok(())
    }
}

/// Limits of the metrics endpoint.
#[derive(Debug, Clone, Copy)]
pub struct ServeLimits {
    /// Most open connections; more wait in the listen backlog.
    pub connections: usize,
    /// Most requests answered at once; more wait.
    pub requests: usize,
    /// Longest life of a connection, idle or not (a scraper reconnects).
    pub connection_lifetime: Duration,
}

impl Default for ServeLimits {
    fn default() -> Self {
        ServeLimits {
            connections: 32,
            requests: 8,
            connection_lifetime: Duration::from_secs(10),
        }
    }
}

impl Metrics {
    /// A registry exporting these metrics.
    pub fn registry(self: &Arc<Self>) -> Registry {
        let mut registry = Registry::with_prefix(PREFIX);
        registry.register_collector(Box::new(Atomics(self.clone())));
        registry
    }

    /// The OpenMetrics text exposition.
    pub fn render(self: &Arc<Self>) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry())
            .expect("writing to a String");
        out
    }

    /// Serves [`METRICS_PATH`] on `listener` until `cancel`, within the default
    /// [`ServeLimits`].
    pub async fn serve(self: Arc<Self>, listener: TcpListener, cancel: CancellationToken) {
        self.serve_with(listener, ServeLimits::default(), cancel)
            .await
    }

    /// Serves [`METRICS_PATH`] on `listener` until `cancel`, within `limits`.
    pub async fn serve_with(
        self: Arc<Self>,
        listener: TcpListener,
        limits: ServeLimits,
        cancel: CancellationToken,
    ) {
        let registry = Arc::new(self.registry());
        let app = Router::new()
            .route(METRICS_PATH, get(scrape))
            .with_state(registry)
            .layer(tower::limit::ConcurrencyLimitLayer::new(limits.requests));
        let listener = Bounded {
            listener,
            permits: Arc::new(Semaphore::new(limits.connections)),
            lifetime: limits.connection_lifetime,
        };
        // axum's accept loop waits a second after an accept error (such as running
        // out of file descriptors) rather than spinning.
        tokio::select! {
            _ = cancel.cancelled() => {}
            served = axum::serve(listener, app) => {
                if let Err(e) = served {
                    tracing::error!(error = %e, "the metrics endpoint stopped");
                }
            }
        }
    }
}

async fn scrape(State(registry): State<Arc<Registry>>) -> impl IntoResponse {
    let mut body = String::new();
    match prometheus_client::encoding::text::encode(&mut body, &registry) {
        Ok(()) => (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            body,
        )
            .into_response(),
        Err(_) => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
    }
}

/// A TCP listener that holds at most `permits` connections open, each for at most
/// `lifetime`.
struct Bounded {
    listener: TcpListener,
    permits: Arc<Semaphore>,
    lifetime: Duration,
}

impl axum::serve::Listener for Bounded {
    type Io = Limited;
    type Addr = std::net::SocketAddr;

    async fn accept(&mut self) -> (Limited, std::net::SocketAddr) {
        let permit = self
            .permits
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let (io, addr) = axum::serve::Listener::accept(&mut self.listener).await;
        let io = Limited {
            io,
            deadline: Box::pin(tokio::time::sleep(self.lifetime)),
            _permit: permit,
        };
        (io, addr)
    }

    fn local_addr(&self) -> io::Result<std::net::SocketAddr> {
        self.listener.local_addr()
    }
}

/// A connection that fails its reads and writes once its deadline passes (so the
/// server closes it), and frees its permit when dropped.
struct Limited {
    io: TcpStream,
    deadline: Pin<Box<Sleep>>,
    _permit: OwnedSemaphorePermit,
}

impl Limited {
    fn expired(&mut self, cx: &mut Context<'_>) -> Option<io::Error> {
        self.deadline.as_mut().poll(cx).is_ready().then(|| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                "the metrics connection's lifetime ended",
            )
        })
    }
}

impl AsyncRead for Limited {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Some(e) = self.expired(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Limited {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        if let Some(e) = self.expired(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if let Some(e) = self.expired(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn renders_every_metric_under_its_name() {
        let m = Arc::new(Metrics::default());
        m.sessions_proven.fetch_add(3, Relaxed);
        m.connections.fetch_add(2, Relaxed);
        let text = m.render();
        assert!(
            text.contains(
                "# TYPE cairn_node_sessions_proven counter\ncairn_node_sessions_proven_total 3\n"
            ),
            "{text}"
        );
        assert!(text.contains("\ncairn_node_connections 2\n"), "{text}");
        assert!(text.ends_with("# EOF\n"), "{text}");
        assert_eq!(text.matches("# TYPE ").count(), ROWS.len());
        // The names the node exported before the registry, kept.
        for name in [
            "cairn_node_shards_stored ",
            "cairn_node_stored_bytes ",
            "cairn_node_upload_bytes_total ",
            "cairn_node_download_bytes_total ",
            "cairn_node_sessions_proven_total ",
            "cairn_node_proof_transactions_total ",
            "cairn_node_proofs_failed_total ",
            "cairn_node_epochs_opened_total ",
            "cairn_node_settlements_total ",
            "cairn_node_deals_left_set_total ",
            "cairn_node_shards_removed_total ",
            "cairn_node_deals_accepted_total ",
            "cairn_node_requests_refused_total ",
            "cairn_node_connections ",
        ] {
            assert!(text.contains(&format!("\n{name}")), "{name} in {text}");
        }
    }

    async fn get(addr: std::net::SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes(),
        )
        .await
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn idle_connections_are_bounded_and_closed_when_their_lifetime_ends() {
        let m = Arc::new(Metrics::default());
        m.deals_accepted.fetch_add(5, Relaxed);
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cancel = CancellationToken::new();
        let limits = ServeLimits {
            connections: 4,
            requests: 2,
            connection_lifetime: Duration::from_secs(2),
        };
        let server = tokio::spawn(m.clone().serve_with(listener, limits, cancel.clone()));

        let page = get(addr, METRICS_PATH).await;
        assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
        assert!(
            page.contains("\ncairn_node_deals_accepted_total 5\n"),
            "{page}"
        );
        assert!(get(addr, "/other").await.starts_with("HTTP/1.1 404"));

        // Twice as many silent connections as the endpoint holds: the first four
        // are accepted and closed by the server when their lifetime ends, the rest
        // wait in the backlog and get their turn; a scrape gets through after them.
        let started = std::time::Instant::now();
        let mut idle = Vec::new();
        for _ in 0..2 * limits.connections {
            idle.push(TcpStream::connect(addr).await.unwrap());
        }
        for mut s in idle {
            let mut byte = [0u8; 1];
            let read = tokio::time::timeout(Duration::from_secs(10), s.read(&mut byte)).await;
            assert!(
                matches!(read, Ok(Ok(0)) | Ok(Err(_))),
                "the server closes a silent connection: {read:?}"
            );
        }
        assert!(started.elapsed() >= limits.connection_lifetime);
        let page = tokio::time::timeout(Duration::from_secs(10), get(addr, METRICS_PATH))
            .await
            .expect("a scrape after the silent connections");
        assert!(page.starts_with("HTTP/1.1 200 OK"), "{page}");
        cancel.cancel();
        server.await.unwrap();
    }
}
