//! `cairn-indexer bench`: ingest rate of the decode+store path fed with
//! recorded transactions, and API latency over a store with many deals.
use crate::api::{self, Api, Metrics};
use crate::ingest;
use crate::store::{Store, StoreError};
use crate::synthetic::{self, Shape};
use axum::{body::Body, http::Request};
use serde::Serialize;
use std::{fmt, path::Path, sync::Arc, time::Instant};
use tower::ServiceExt;

#[derive(Debug, Serialize)]
pub struct Latency {
    pub endpoint: String,
    pub requests: usize,
    pub p50_ms: f64,
    pub p99_ms: f64,
}

#[derive(Debug, Serialize)]
pub struct BenchReport {
    pub ingest_transactions: u64,
    pub ingest_events: u64,
    pub ingest_seconds: f64,
    pub ingest_events_per_second: f64,
    pub deals_in_store: u64,
    pub fill_seconds: f64,
    /// Epochs in the same store (a series point each).
    pub epochs_in_store: u64,
    pub epochs_seconds: f64,
    pub latency: Vec<Latency>,
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "ingest: {} events in {} transactions in {:.2} s: {:.0} events/s",
            self.ingest_events,
            self.ingest_transactions,
            self.ingest_seconds,
            self.ingest_events_per_second
        )?;
        writeln!(
            f,
            "API over {} deals (filled in {:.1} s) and {} epochs (in {:.1} s):",
            self.deals_in_store, self.fill_seconds, self.epochs_in_store, self.epochs_seconds
        )?;
        writeln!(
            f,
            "  (goal: p99 < {P99_GOAL_MS} ms on every endpoint; ingest >= 5,000 events/s)"
        )?;
        for l in &self.latency {
            writeln!(
                f,
                "  {:<40} {:>6} requests  p50 {:>7.3} ms  p99 {:>7.3} ms{}",
                l.endpoint,
                l.requests,
                l.p50_ms,
                l.p99_ms,
                if l.p99_ms < P99_GOAL_MS {
                    ""
                } else {
                    "  (over the goal)"
                }
            )?;
        }
        Ok(())
    }
}

/// Applies `txs` in write batches of `batch`; returns events and seconds.
fn ingest_all(
    store: &Store,
    txs: &[crate::model::RecordedTx],
    batch: usize,
) -> Result<(u64, f64), StoreError> {
    let started = Instant::now();
    let mut events = 0;
    for chunk in txs.chunks(batch) {
        events += ingest::apply(store, chunk)?.events;
    }
    Ok((events, started.elapsed().as_secs_f64()))
}

/// The goal every endpoint's p99 is compared with.
pub const P99_GOAL_MS: f64 = 5.0;

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

/// Runs both benchmarks in `dir` (two stores are created there).
pub fn run(
    dir: &Path,
    deals: u64,
    epochs: u64,
    requests: usize,
) -> Result<BenchReport, StoreError> {
    // 1. Ingest: a market with proof sessions, failed and void epochs and a
    // settlement of every deal every epoch, 64 transactions per batch (the
    // follower's default).
    let (txs, _) = synthetic::market(Shape {
        providers: 20,
        clients: 100,
        deals_per_provider: 250,
        epochs: 12,
        fail_every: 10,
        void_every: 5,
    });
    let ingest_transactions = txs.len() as u64;
    let store = Store::open(&dir.join("ingest"))?;
    let (ingest_events, ingest_seconds) = ingest_all(&store, &txs, 64)?;
    drop(store);

    // 2. A store with `deals` deals (no epochs), filled in large batches.
    let providers = 100u64;
    let (txs, _) = synthetic::market(Shape {
        providers,
        clients: 10_000,
        deals_per_provider: deals.div_ceil(providers),
        epochs: 0,
        fail_every: 0,
        void_every: 0,
    });
    let store = Store::open(&dir.join("api"))?;
    let (_, fill_seconds) = ingest_all(&store, &txs, 2_000)?;
    drop(txs);
    // Then `epochs` epochs, each opened and proven by 10 providers: the
    // series the charts read has a point per epoch.
    let first_epoch = store.stats()?.last_slot / synthetic::EPOCH_SLOTS + 1;
    let stream = synthetic::epoch_stream(first_epoch, epochs, 10);
    let (_, epochs_seconds) = ingest_all(&store, &stream, 2_000)?;
    let stats = store.stats()?;
    let deals_in_store = stats.deals;
    let epochs_in_store = stats.last_slot / synthetic::EPOCH_SLOTS + 1;
    let signatures: Vec<String> = stream.iter().map(|t| t.signature.clone()).collect();
    drop(stream);
    let app = api::router(Api::new(Arc::new(store), Arc::new(Metrics::default())));
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let per_provider = deals.div_ceil(providers);
    let mut latency = Vec::new();
    let state = std::cell::Cell::new(0x9e3779b97f4a7c15u64);
    let rand = |n: u64| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        x % n.max(1)
    };
    type UriFn<'a> = Box<dyn FnMut() -> String + 'a>;
    let cases: Vec<(&str, UriFn)> = vec![
        (
            "GET /v1/deals/{id}",
            Box::new(|| {
                format!(
                    "/v1/deals/{}",
                    synthetic::deal_key(rand(providers), rand(per_provider))
                )
            }),
        ),
        (
            "GET /v1/deals?limit=50&cursor=…",
            Box::new(|| {
                let after = synthetic::deal_key(rand(providers), rand(per_provider));
                format!(
                    "/v1/deals?limit=50&cursor={}",
                    hex::encode(after.to_bytes())
                )
            }),
        ),
        (
            "GET /v1/deals?provider=…&limit=50",
            Box::new(|| {
                format!(
                    "/v1/deals?provider={}&limit=50",
                    synthetic::key(1, rand(providers))
                )
            }),
        ),
        (
            "GET /v1/deals?client=…&state=active",
            Box::new(|| {
                format!(
                    "/v1/deals?client={}&state=active&limit=50",
                    synthetic::key(5, rand(10_000))
                )
            }),
        ),
        (
            "GET /v1/providers/{id}",
            Box::new(|| format!("/v1/providers/{}", synthetic::key(1, rand(providers)))),
        ),
        (
            "GET /v1/providers?limit=100",
            Box::new(|| "/v1/providers?limit=100".to_string()),
        ),
        ("GET /v1/stats", Box::new(|| "/v1/stats".to_string())),
        (
            "GET /v1/series (last 500 epochs)",
            Box::new(|| "/v1/series".to_string()),
        ),
        (
            "GET /v1/series?from=…&until=… (500)",
            Box::new(|| {
                let from = rand(epochs_in_store.saturating_sub(500).max(1));
                format!("/v1/series?from={from}&until={}", from + 500)
            }),
        ),
        (
            "GET /v1/search?q={deal}",
            Box::new(|| {
                format!(
                    "/v1/search?q={}",
                    synthetic::deal_key(rand(providers), rand(per_provider))
                )
            }),
        ),
        (
            "GET /v1/search?q={signature}",
            Box::new(|| {
                format!(
                    "/v1/search?q={}",
                    signatures[rand(signatures.len() as u64) as usize]
                )
            }),
        ),
        (
            "GET /v1/deals/{id}/events",
            Box::new(|| {
                format!(
                    "/v1/deals/{}/events",
                    synthetic::deal_key(rand(providers), rand(per_provider))
                )
            }),
        ),
        (
            "GET /v1/datasets/{id}",
            Box::new(|| {
                format!(
                    "/v1/datasets/{}",
                    hex::encode(synthetic::dataset_id(rand(providers), rand(per_provider)))
                )
            }),
        ),
    ];
    for (name, mut uri) in cases {
        let mut times = Vec::with_capacity(requests);
        for _ in 0..requests {
            let uri = uri();
            let started = Instant::now();
            let status = rt.block_on(async {
                let res = app
                    .clone()
                    .oneshot(Request::get(&uri).body(Body::empty()).expect("request"))
                    .await
                    .expect("infallible");
                let status = res.status();
                axum::body::to_bytes(res.into_body(), usize::MAX)
                    .await
                    .expect("body");
                status
            });
            times.push(started.elapsed().as_secs_f64() * 1e3);
            assert!(status.is_success(), "{uri}: {status}");
        }
        times.sort_by(f64::total_cmp);
        latency.push(Latency {
            endpoint: name.to_string(),
            requests,
            p50_ms: percentile(&times, 0.5),
            p99_ms: percentile(&times, 0.99),
        });
    }
    Ok(BenchReport {
        ingest_transactions,
        ingest_events,
        ingest_seconds,
        ingest_events_per_second: ingest_events as f64 / ingest_seconds,
        deals_in_store,
        fill_seconds,
        epochs_in_store,
        epochs_seconds,
        latency,
    })
}
