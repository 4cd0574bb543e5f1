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
    /// Proofs accepted on chain.
    pub proofs_ok: AtomicU64,
    /// Proof attempts that failed.
    pub proofs_failed: AtomicU64,
    /// Epochs this node opened.
    pub epochs_opened: AtomicU64,
    /// Fault reports this node sent.
    pub faults_reported: AtomicU64,
    /// Deals accepted on chain.
    pub deals_accepted: AtomicU64,
    /// Requests refused with an error frame.
    pub requests_refused: AtomicU64,
    /// Open QUIC connections.
    pub connections: AtomicU64,
}

impl Metrics {
    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        let rows: [(&str, &str, &str, &AtomicU64); 11] = [
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
                "cairn_node_proofs_ok_total",
                "counter",
                "Proofs accepted on chain.",
                &self.proofs_ok,
            ),
            (
                "cairn_node_proofs_failed_total",
                "counter",
                "Proof attempts that failed.",
                &self.proofs_failed,
            ),
            (
                "cairn_node_epochs_opened_total",
                "counter",
                "Epochs opened by this node.",
                &self.epochs_opened,
            ),
            (
                "cairn_node_faults_reported_total",
                "counter",
                "Fault reports sent for other providers' deals.",
                &self.faults_reported,
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
        m.proofs_ok.fetch_add(3, Relaxed);
        let text = m.render();
        assert!(text
            .contains("# TYPE cairn_node_proofs_ok_total counter\ncairn_node_proofs_ok_total 3\n"));
    }
}
