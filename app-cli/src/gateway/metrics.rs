//! The gateway's Prometheus metrics (through `prometheus-client`, like the
//! node's and the indexer's): requests by S3 operation and HTTP status,
//! object bytes served, and the latency of ranged GETs. Served at
//! [`METRICS_PATH`] on `--metrics-listen`, apart from the S3 endpoint (where
//! `/metrics` would be a bucket's path).
use std::sync::Arc;

use axum::{http::header, response::IntoResponse, routing::get, Router};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Route of the metrics page.
pub const METRICS_PATH: &str = "/metrics";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// The S3 operation (`GetObject`, `ListObjectsV2`, …), or `unknown` for
    /// a request refused before it was routed.
    pub operation: String,
    /// The HTTP status answered.
    pub status: u16,
}

/// Every metric the gateway exports.
pub struct Metrics {
    pub requests: Family<RequestLabels, Counter>,
    pub bytes_served: Counter,
    /// Seconds from a ranged GET's start to its last byte handed to HTTP.
    pub range_read_seconds: Histogram,
    registry: Registry,
}

impl Default for Metrics {
    fn default() -> Self {
        let requests = Family::<RequestLabels, Counter>::default();
        let bytes_served = Counter::default();
        // 1 ms to ~65 s.
        let range_read_seconds = Histogram::new(exponential_buckets(0.001, 2.0, 17));
        let mut registry = Registry::with_prefix("cairn_gateway");
        registry.register(
            "requests",
            "S3 requests by operation and HTTP status",
            requests.clone(),
        );
        registry.register(
            "bytes_served",
            "Object bytes sent in GetObject bodies",
            bytes_served.clone(),
        );
        registry.register(
            "range_read_seconds",
            "Latency of ranged GetObject reads, start to last byte",
            range_read_seconds.clone(),
        );
        Metrics {
            requests,
            bytes_served,
            range_read_seconds,
            registry,
        }
    }
}

impl Metrics {
    /// The exposition text.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)
            .expect("writing to a String cannot fail");
        out
    }

    /// The metrics page as an axum router.
    pub fn router(self: Arc<Self>) -> Router {
        Router::new().route(
            METRICS_PATH,
            get(move || {
                let metrics = self.clone();
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        metrics.encode(),
                    )
                        .into_response()
                }
            }),
        )
    }
}
