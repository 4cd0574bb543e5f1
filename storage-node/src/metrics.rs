//! Prometheus metrics: counters and gauges in atomics, rendered in the text
//! exposition format at [`METRICS_PATH`] by a minimal HTTP/1.1 responder.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// Route of the metrics page.
pub const METRICS_PATH: &str = "/metrics";

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

impl Metrics {
    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let rows: [(&str, &str, &str, &AtomicU64); 20] = [
            (
                "cairn_node_shards_stored",
                "gauge",
                "Shards stored with a verified root.",
                &self.shards_stored,
            ),
            (
                "cairn_node_stored_bytes",
                "gauge",
                "Bytes of stored shards.",
                &self.stored_bytes,
            ),
            (
                "cairn_node_upload_bytes_total",
                "counter",
                "Shard bytes received by uploads.",
                &self.upload_bytes,
            ),
            (
                "cairn_node_download_bytes_total",
                "counter",
                "Shard bytes served by downloads.",
                &self.download_bytes,
            ),
            (
                "cairn_node_sessions_proven_total",
                "counter",
                "Proof sessions completed (the provider's bit set for an epoch).",
                &self.sessions_proven,
            ),
            (
                "cairn_node_proof_transactions_total",
                "counter",
                "Proof transactions confirmed.",
                &self.proof_transactions,
            ),
            (
                "cairn_node_proofs_failed_total",
                "counter",
                "Proof transactions that failed (retried) and sessions whose samples could not be built.",
                &self.proofs_failed,
            ),
            (
                "cairn_node_epochs_opened_total",
                "counter",
                "Epochs opened by this node.",
                &self.epochs_opened,
            ),
            (
                "cairn_node_settlements_total",
                "counter",
                "Deal settlements confirmed (one per deal per settle transaction).",
                &self.settlements,
            ),
            (
                "cairn_node_deals_left_set_total",
                "counter",
                "Ended deals removed from the provider's deal set.",
                &self.deals_left_set,
            ),
            (
                "cairn_node_shards_removed_total",
                "counter",
                "Shards of finished deals deleted.",
                &self.shards_removed,
            ),
            (
                "cairn_node_deals_accepted_total",
                "counter",
                "Deals accepted on chain.",
                &self.deals_accepted,
            ),
            (
                "cairn_node_requests_refused_total",
                "counter",
                "Requests answered with an error frame.",
                &self.requests_refused,
            ),
            (
                "cairn_node_connections",
                "gauge",
                "Open QUIC connections.",
                &self.connections,
            ),
            (
                "cairn_node_connections_refused_total",
                "counter",
                "Connections refused because their address had too many open.",
                &self.connections_refused,
            ),
            (
                "cairn_node_chain_lookups_total",
                "counter",
                "Deal lookups sent to the chain for requests.",
                &self.chain_lookups,
            ),
            (
                "cairn_node_lookups_throttled_total",
                "counter",
                "Requests answered Busy because their address named too many unknown deals.",
                &self.lookups_throttled,
            ),
            (
                "cairn_node_writes_timed_out_total",
                "counter",
                "Answers abandoned because the peer granted no flow-control credit in time.",
                &self.writes_timed_out,
            ),
            (
                "cairn_node_uploads_dropped_total",
                "counter",
                "Partial uploads dropped because their deal is no longer proposed.",
                &self.uploads_dropped,
            ),
            (
                "cairn_node_corrupt_reads_total",
                "counter",
                "Reads that found the node's stored copy of a shard corrupt.",
                &self.corrupt_reads,
            ),
        ];
        let mut out = String::new();
        for (name, kind, help, value) in rows {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {}\n",
                value.load(Relaxed)
            ));
        }
        out
    }

    /// Serves [`METRICS_PATH`] on `listener` until `cancel`.
    pub async fn serve(
        self: std::sync::Arc<Self>,
        listener: tokio::net::TcpListener,
        cancel: CancellationToken,
    ) {
        loop {
            let (mut socket, _) = tokio::select! {
                _ = cancel.cancelled() => return,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        tracing::warn!(error = %e, "metrics accept failed");
                        continue;
                    }
                },
            };
            let metrics = self.clone();
            tokio::spawn(async move {
                let mut buf = [0u8; 2048];
                let read =
                    tokio::time::timeout(std::time::Duration::from_secs(5), socket.read(&mut buf))
                        .await;
                let Ok(Ok(n)) = read else { return };
                let request = String::from_utf8_lossy(&buf[..n]);
                let target = request.split_whitespace().nth(1).unwrap_or("");
                let (status, body) = if request.starts_with("GET ") && target == METRICS_PATH {
                    ("200 OK", metrics.render())
                } else {
                    ("404 Not Found", format!("try GET {METRICS_PATH}\n"))
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_prometheus_text() {
        let m = Metrics::default();
        m.sessions_proven.fetch_add(3, Relaxed);
        let text = m.render();
        assert!(text.contains(
            "# TYPE cairn_node_sessions_proven_total counter\ncairn_node_sessions_proven_total 3\n"
        ));
        assert_eq!(text.matches("# TYPE ").count(), 20);
    }
}
