//! The HTTP API (axum): JSON, paginated with opaque cursors, 400s naming the
//! bad parameter. Handlers are generic over [`IndexRead`] so tests drive them
//! without a socket.
use crate::model::{DealStatus, Stats};
use crate::query::{DealFilter, IndexRead, PageReq, DEFAULT_PAGE, MAX_PAGE};
use crate::store::StoreError;
use axum::error_handling::HandleErrorLayer;
use axum::{
    extract::{Path, Query, State},
    http::{header, StatusCode},
    response::{Html, IntoResponse, Response},
    routing::get,
    Json, Router,
};
use prometheus_client::{
    encoding::text::encode,
    metrics::{counter::Counter, gauge::Gauge},
    registry::Registry,
};
use serde::Serialize;
use std::{
    collections::HashMap,
    sync::{atomic::AtomicU64, Arc},
    time::Duration,
};
use tower::{limit::GlobalConcurrencyLimitLayer, BoxError, ServiceBuilder};

/// Route paths. Every `/v1` answer is JSON; listings are pages
/// (`{"items": [...], "next_cursor": "..." | null}`) taking `limit` (1–500,
/// default 50) and `cursor` (a `next_cursor` this API returned). Every read is
/// bounded: a filtered `/v1/deals` page reads at most `MAX_SCAN` index entries,
/// so it can hold fewer than `limit` items and still have a `next_cursor`;
/// list until `next_cursor` is `null`. A request taking longer than
/// [`REQUEST_TIMEOUT`] (the server busy) is answered 503.
pub mod routes {
    /// The explorer page (HTML).
    pub const EXPLORER: &str = "/";
    /// `{status, indexed_slot, chain_slot, cursor, skipped_transactions}`.
    pub const HEALTH: &str = "/health";
    /// OpenMetrics text (`prometheus-client`), names prefixed `cairn_indexer_`.
    pub const METRICS: &str = "/metrics";
    /// `Stats`: totals, and `closed_until` (outcomes of earlier epochs are final).
    pub const STATS: &str = "/v1/stats";
    /// `MarketRecord`: the market's authority, mint (with its `decimals`), epoch
    /// length and parameters, and `token_symbol` (the indexer's
    /// `--token-symbol`: mints carry no name on chain).
    pub const MARKET: &str = "/v1/market";
    /// The network per epoch, for charts: `{from_epoch, until_epoch,
    /// current_epoch, first_epoch, points}`, one point per epoch `from ..
    /// until` (parameters `from` and `until`; default the last 500 epochs, at
    /// most 500). A point holds the totals at the epoch's end (`stored_bytes`,
    /// `active_deals`, `providers`, `deals`, `slashed`, `paid`), what the epoch
    /// added (`new_deals`, `new_slashed`, `new_paid`) and what it was for the
    /// providers (`opened`, `closed`, `proven`, `failed`, `void`). Read from one
    /// pre-aggregated key per epoch.
    pub const SERIES: &str = "/v1/series";
    /// `{query, matches: [{kind, id, path}]}`: what `q` names: a provider, deal
    /// or client address, a dataset id (64 hex digits), an epoch number or a
    /// transaction signature. No match is an empty list.
    pub const SEARCH: &str = "/v1/search";
    /// A transaction: `{signature, slot, block_time, failed, first_event,
    /// events, event_list}`.
    pub const TX: &str = "/v1/tx/{signature}";
    /// Page of the deal's events (its timeline), oldest first, each with its
    /// transaction's signature.
    pub const DEAL_EVENTS: &str = "/v1/deals/{id}/events";
    /// Page of `ProviderRecord`, by address.
    pub const PROVIDERS: &str = "/v1/providers";
    /// `ProviderRecord` with `reliability` and `epoch_map` (its last 64 epochs, one
    /// character each: `P` proven, `F` failed, `V` void, `.` nothing owed, `?` not
    /// over); its jailing in `jailed_from` and `jail`.
    pub const PROVIDER: &str = "/v1/providers/{id}";
    /// Page of the provider's `ProviderEpochRecord`s (what each epoch was for it,
    /// with the proof session of a proven one), newest first.
    pub const PROVIDER_EPOCHS: &str = "/v1/providers/{id}/epochs";
    /// Page of `DealRecord`, filtered by `client`, `provider` and `state`.
    pub const DEALS: &str = "/v1/deals";
    /// `DealRecord` with a page of its `settlements` (`limit`, default 500, and
    /// `cursor`: `settlements_next_cursor`), and its epochs as its provider's
    /// outcomes (`epoch_outcomes` counts the most recent 4096 from
    /// `counted_from_epoch`, `epochs` lists the most recent 500).
    pub const DEAL: &str = "/v1/deals/{id}";
    /// The dataset's totals (over at most 4096 deals: `totals_complete`) and a
    /// page of its deals, every generation of every shard (`limit`, default 500,
    /// and `cursor`: `next_cursor`).
    pub const DATASET: &str = "/v1/datasets/{id}";
    /// Page of `EpochRecord`, newest first.
    pub const EPOCHS: &str = "/v1/epochs";
    /// Page of `SkippedTx`, oldest first: transactions the follower could not
    /// index (undecodable, or refused by the RPC for good), with the reason.
    pub const SKIPPED: &str = "/v1/skipped";
    /// `EpochRecord` with `proven_list`, `failed_list` and `void_list`: the
    /// providers that proved it (with their sessions), failed it, or owed a proof
    /// in it while it was void.
    pub const EPOCH: &str = "/v1/epochs/{n}";
}

/// Longest a request may take, waiting for a slot included; then it is
/// answered 503 (the client may retry).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Point reads handled at once (each a store read on the blocking pool); more
/// wait, in order, within [`REQUEST_TIMEOUT`].
pub const MAX_CONCURRENT_REQUESTS: usize = 32;
/// Scanning reads handled at once (each bounded, on the blocking pool); more
/// are answered 503 at once.
pub const MAX_CONCURRENT_SCANS: usize = 4;

/// What `/metrics` exports (Prometheus / OpenMetrics text through
/// `prometheus-client`), every name prefixed `cairn_indexer_`. Counters are
/// updated where things happen; the store's totals are read at each scrape.
pub struct Metrics {
    registry: Registry,
    pub http_requests: Counter,
    /// Requests answered 503: timed out, waiting for a slot or in a handler.
    pub http_unavailable: Counter,
    pub ingested_transactions: Counter,
    pub ingested_events: Counter,
    pub undecodable_events: Counter,
    /// Transactions skipped (recorded at `/v1/skipped`): not decodable, or
    /// refused by the RPC for good.
    pub skipped_transactions: Counter,
    pub rpc_errors: Counter,
    pub reconciliations: Counter,
    /// Newest slot the chain reported (finalized), for the ingest lag.
    pub chain_slot: Gauge<u64, AtomicU64>,
    store: StoreGauges,
}

/// The store's totals, set from `Stats` at each scrape.
#[derive(Default)]
struct StoreGauges {
    indexed_slot: Gauge<u64, AtomicU64>,
    transactions: Gauge<u64, AtomicU64>,
    events: Gauge<u64, AtomicU64>,
    providers: Gauge<u64, AtomicU64>,
    deals: Gauge<u64, AtomicU64>,
    active_deals: Gauge<u64, AtomicU64>,
    stored_bytes: Gauge<u64, AtomicU64>,
    sessions: Gauge<u64, AtomicU64>,
    failed_epochs: Gauge<u64, AtomicU64>,
    void_epochs: Gauge<u64, AtomicU64>,
    penalties: Gauge<u64, AtomicU64>,
    closed_until: Gauge<u64, AtomicU64>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("cairn_indexer");
        let m = Metrics {
            http_requests: Counter::default(),
            http_unavailable: Counter::default(),
            ingested_transactions: Counter::default(),
            ingested_events: Counter::default(),
            undecodable_events: Counter::default(),
            skipped_transactions: Counter::default(),
            rpc_errors: Counter::default(),
            reconciliations: Counter::default(),
            chain_slot: Gauge::default(),
            store: StoreGauges::default(),
            registry: Registry::default(),
        };
        let counters = [
            ("http_requests", "HTTP requests served.", &m.http_requests),
            (
                "http_unavailable",
                "HTTP requests answered 503 (busy or timed out).",
                &m.http_unavailable,
            ),
            (
                "ingested_transactions",
                "Transactions applied by this process.",
                &m.ingested_transactions,
            ),
            (
                "ingested_events",
                "Events applied by this process.",
                &m.ingested_events,
            ),
            (
                "undecodable_events",
                "Event instructions that did not decode.",
                &m.undecodable_events,
            ),
            (
                "skipped_transactions",
                "Transactions skipped and recorded: undecodable, or refused by the RPC for good.",
                &m.skipped_transactions,
            ),
            ("rpc_errors", "RPC calls that failed.", &m.rpc_errors),
            (
                "reconciliations",
                "Account reconciliations done.",
                &m.reconciliations,
            ),
        ];
        for (name, help, counter) in counters {
            registry.register(name, help, counter.clone());
        }
        let g = &m.store;
        let gauges = [
            ("chain_slot", "Newest finalized slot seen.", &m.chain_slot),
            (
                "indexed_slot",
                "Slot of the newest transaction indexed.",
                &g.indexed_slot,
            ),
            (
                "transactions",
                "Transactions in the store.",
                &g.transactions,
            ),
            ("events", "Events in the store.", &g.events),
            ("providers", "Providers known.", &g.providers),
            ("deals", "Deals known.", &g.deals),
            ("active_deals", "Active deals.", &g.active_deals),
            (
                "stored_bytes",
                "Shard bytes under active deals.",
                &g.stored_bytes,
            ),
            (
                "sessions",
                "Proof sessions completed (proven provider-epochs).",
                &g.sessions,
            ),
            ("failed_epochs", "Provider-epochs failed.", &g.failed_epochs),
            (
                "void_epochs",
                "Epochs nobody opened while proofs were owed.",
                &g.void_epochs,
            ),
            (
                "penalties",
                "Collateral paid to clients for failed deal-epochs.",
                &g.penalties,
            ),
            (
                "closed_until",
                "First epoch whose outcomes are not final yet.",
                &g.closed_until,
            ),
        ];
        for (name, help, gauge) in gauges {
            registry.register(name, help, gauge.clone());
        }
        Metrics { registry, ..m }
    }
}

impl Metrics {
    /// The OpenMetrics text of every metric, the store's totals from `stats`.
    pub fn render(&self, stats: &Stats) -> String {
        let g = &self.store;
        g.indexed_slot.set(stats.last_slot);
        g.transactions.set(stats.transactions);
        g.events.set(stats.events);
        g.providers.set(stats.providers);
        g.deals.set(stats.deals);
        g.active_deals.set(stats.active_deals);
        g.stored_bytes.set(stats.stored_bytes);
        g.sessions.set(stats.sessions);
        g.failed_epochs.set(stats.failed_epochs);
        g.void_epochs.set(stats.void_epochs);
        g.penalties.set(stats.penalties);
        g.closed_until.set(stats.closed_until.unwrap_or(0));
        let mut out = String::new();
        encode(&mut out, &self.registry).expect("writing to a String does not fail");
        out
    }
}

pub struct Api<S> {
    pub store: Arc<S>,
    pub metrics: Arc<Metrics>,
    /// What the market's token is called on the explorer (`/v1/market`'s
    /// `token_symbol`).
    pub token_symbol: Arc<str>,
}

/// The token symbol when none is configured.
pub const DEFAULT_TOKEN_SYMBOL: &str = "CAIRN";

impl<S> Api<S> {
    pub fn new(store: Arc<S>, metrics: Arc<Metrics>) -> Self {
        Api {
            store,
            metrics,
            token_symbol: DEFAULT_TOKEN_SYMBOL.into(),
        }
    }
}

impl<S> Clone for Api<S> {
    fn clone(&self) -> Self {
        Api {
            store: self.store.clone(),
            metrics: self.metrics.clone(),
            token_symbol: self.token_symbol.clone(),
        }
    }
}

/// An error answer: `{"error": "...", "parameter": "limit"}`.
#[derive(Debug, Serialize)]
pub struct ApiError {
    #[serde(skip)]
    pub status: StatusCode,
    pub error: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parameter: Option<&'static str>,
}

impl ApiError {
    fn bad(parameter: &'static str, error: String) -> Self {
        ApiError {
            status: StatusCode::BAD_REQUEST,
            error,
            parameter: Some(parameter),
        }
    }

    fn not_found(what: String) -> Self {
        ApiError {
            status: StatusCode::NOT_FOUND,
            error: format!("{what} is not indexed"),
            parameter: None,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        tracing::error!("store: {e}");
        ApiError {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            error: e.to_string(),
            parameter: None,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(&self)).into_response()
    }
}

type Params = Query<HashMap<String, String>>;

/// Refuses parameters the endpoint does not take.
fn only(params: &HashMap<String, String>, allowed: &[&'static str]) -> Result<(), ApiError> {
    let mut names: Vec<&String> = params.keys().collect();
    names.sort();
    match names.into_iter().find(|k| !allowed.contains(&k.as_str())) {
        None => Ok(()),
        Some(unknown) => Err(ApiError {
            status: StatusCode::BAD_REQUEST,
            error: format!(
                "unknown parameter {unknown:?}; this endpoint takes {}",
                if allowed.is_empty() {
                    "none".to_string()
                } else {
                    allowed.join(", ")
                }
            ),
            parameter: allowed
                .iter()
                .find(|a| **a == unknown.as_str())
                .copied()
                .or(Some("query")),
        }),
    }
}

fn page_req(params: &HashMap<String, String>) -> Result<PageReq, ApiError> {
    let limit = match params.get("limit") {
        None => DEFAULT_PAGE,
        Some(s) => match s.parse::<usize>() {
            Ok(n) if (1..=MAX_PAGE).contains(&n) => n,
            _ => {
                return Err(ApiError::bad(
                    "limit",
                    format!("limit {s:?} must be a whole number from 1 to {MAX_PAGE}"),
                ))
            }
        },
    };
    let after = match params.get("cursor") {
        None => None,
        Some(c) => Some(
            hex::decode(c)
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= 128)
                .ok_or_else(|| {
                    ApiError::bad(
                        "cursor",
                        format!("cursor {c:?} is not one this API returned (use next_cursor)"),
                    )
                })?,
        ),
    };
    Ok(PageReq { after, limit })
}

fn pubkey(parameter: &'static str, s: &str) -> Result<[u8; 32], ApiError> {
    bs58::decode(s)
        .into_vec()
        .ok()
        .and_then(|v| <[u8; 32]>::try_from(v).ok())
        .ok_or_else(|| {
            ApiError::bad(
                parameter,
                format!("{parameter} {s:?} is not a base58 address"),
            )
        })
}

fn hex32(parameter: &'static str, s: &str) -> Result<[u8; 32], ApiError> {
    hex::decode(s)
        .ok()
        .and_then(|v| <[u8; 32]>::try_from(v).ok())
        .ok_or_else(|| {
            ApiError::bad(
                parameter,
                format!("{parameter} {s:?} is not 64 hex digits (a dataset id)"),
            )
        })
}

/// The API's routes. Every request is limited to [`REQUEST_TIMEOUT`]
/// (waiting for a slot included; then 503), and store reads run on tokio's
/// blocking pool, off the async workers (the follower's). Two kinds of routes
/// get their own slots, so that a flood of one cannot starve the other:
/// - point reads (health, metrics, totals, the market, a provider): at most
///   [`MAX_CONCURRENT_REQUESTS`] at once, more wait in order;
/// - reads that scan (listings, and the details that list: a deal, a dataset,
///   an epoch): at most [`MAX_CONCURRENT_SCANS`] at once, more are answered 503
///   at once (load shedding) instead of queueing behind them.
pub fn router<S: IndexRead>(api: Api<S>) -> Router {
    let points = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(unavailable))
        .timeout(REQUEST_TIMEOUT)
        // Global: one semaphore for all these routes (`Router::layer` wraps
        // each route on its own).
        .layer(GlobalConcurrencyLimitLayer::new(MAX_CONCURRENT_REQUESTS));
    let scans = ServiceBuilder::new()
        .layer(HandleErrorLayer::new(unavailable))
        .timeout(REQUEST_TIMEOUT)
        .load_shed()
        .layer(GlobalConcurrencyLimitLayer::new(MAX_CONCURRENT_SCANS));
    let point_routes = Router::new()
        .route(routes::EXPLORER, get(explorer))
        .route(routes::HEALTH, get(health::<S>))
        .route(routes::METRICS, get(metrics::<S>))
        .route(routes::STATS, get(stats::<S>))
        .route(routes::MARKET, get(market::<S>))
        .route(routes::PROVIDER, get(provider::<S>))
        .route(routes::SERIES, get(series::<S>))
        .route(routes::SEARCH, get(search::<S>))
        .route(routes::TX, get(tx::<S>))
        .layer(points);
    let scan_routes = Router::new()
        .route(routes::PROVIDERS, get(providers::<S>))
        .route(routes::PROVIDER_EPOCHS, get(provider_epochs::<S>))
        .route(routes::DEALS, get(deals::<S>))
        .route(routes::DEAL, get(deal::<S>))
        .route(routes::DEAL_EVENTS, get(deal_events::<S>))
        .route(routes::DATASET, get(dataset::<S>))
        .route(routes::EPOCHS, get(epochs::<S>))
        .route(routes::EPOCH, get(epoch::<S>))
        .route(routes::SKIPPED, get(skipped::<S>))
        .layer(scans);
    point_routes
        .merge(scan_routes)
        .fallback(|| async {
            ApiError {
                status: StatusCode::NOT_FOUND,
                error: "no such endpoint".into(),
                parameter: None,
            }
        })
        .layer(axum::middleware::from_fn_with_state(
            api.metrics.clone(),
            count_requests,
        ))
        .with_state(api)
}

/// Serves [`router`] on `listener` until `shutdown` completes.
pub async fn serve<S: IndexRead>(
    listener: tokio::net::TcpListener,
    api: Api<S>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(api))
        .with_graceful_shutdown(shutdown)
        .await
}

/// The answer to a request the limits refused: timed out (waiting for a slot
/// or in its handler).
async fn unavailable(e: BoxError) -> ApiError {
    let error = if e.is::<tower::timeout::error::Elapsed>() {
        format!(
            "the request took longer than {}s; the indexer is busy, try again",
            REQUEST_TIMEOUT.as_secs()
        )
    } else if e.is::<tower::load_shed::error::Overloaded>() {
        format!("the indexer is serving {MAX_CONCURRENT_SCANS} listings already; try again")
    } else {
        format!("the indexer could not take the request: {e}")
    };
    ApiError {
        status: StatusCode::SERVICE_UNAVAILABLE,
        error,
        parameter: None,
    }
}

async fn count_requests(
    State(metrics): State<Arc<Metrics>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    metrics.http_requests.inc();
    let response = next.run(req).await;
    if response.status() == StatusCode::SERVICE_UNAVAILABLE {
        metrics.http_unavailable.inc();
    }
    response
}

/// Runs a (bounded) store read on the blocking pool, so that the async workers
/// (the follower's too) keep running.
async fn read<S: IndexRead, T: Send + 'static>(
    api: &Api<S>,
    f: impl FnOnce(&S) -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    let store = api.store.clone();
    tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| {
            tracing::error!("store read: {e}");
            ApiError {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                error: format!("store read: {e}"),
                parameter: None,
            }
        })?
}

/// The explorer page: plain HTML and a little inline script.
pub const EXPLORER_HTML: &str = include_str!("explorer.html");

async fn explorer() -> Html<&'static str> {
    Html(EXPLORER_HTML)
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    indexed_slot: u64,
    chain_slot: u64,
    cursor: Option<crate::model::Cursor>,
    skipped_transactions: u64,
}

async fn health<S: IndexRead>(State(api): State<Api<S>>) -> Result<Json<Health>, ApiError> {
    let chain_slot = api.metrics.chain_slot.get();
    read(&api, move |s| {
        let stats = s.stats()?;
        Ok(Json(Health {
            status: "ok",
            indexed_slot: stats.last_slot,
            chain_slot,
            cursor: s.cursor()?,
            skipped_transactions: stats.skipped_transactions,
        }))
    })
    .await
}

async fn metrics<S: IndexRead>(State(api): State<Api<S>>) -> Result<Response, ApiError> {
    let stats = read(&api, |s| Ok(s.stats()?)).await?;
    let text = api.metrics.render(&stats);
    Ok((
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response())
}

async fn stats<S: IndexRead>(
    State(api): State<Api<S>>,
    Query(params): Params,
) -> Result<Json<Stats>, ApiError> {
    only(&params, &[])?;
    read(&api, |s| Ok(Json(s.stats()?))).await
}

async fn market<S: IndexRead>(
    State(api): State<Api<S>>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    only(&params, &[])?;
    #[derive(Serialize)]
    struct MarketAnswer {
        #[serde(flatten)]
        market: crate::model::MarketRecord,
        token_symbol: Arc<str>,
    }
    let token_symbol = api.token_symbol.clone();
    read(&api, move |s| match s.market()? {
        Some(market) => Ok(Json(MarketAnswer {
            market,
            token_symbol,
        })
        .into_response()),
        None => Err(ApiError::not_found("the market".into())),
    })
    .await
}

fn epoch_param(
    params: &HashMap<String, String>,
    name: &'static str,
) -> Result<Option<u64>, ApiError> {
    params
        .get(name)
        .map(|s| {
            s.parse::<u64>()
                .map_err(|_| ApiError::bad(name, format!("{name} {s:?} is not an epoch number")))
        })
        .transpose()
}

async fn series<S: IndexRead>(
    State(api): State<Api<S>>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    only(&params, &["from", "until"])?;
    let from = epoch_param(&params, "from")?;
    let until = epoch_param(&params, "until")?;
    if let (Some(f), Some(u)) = (from, until) {
        if u < f {
            return Err(ApiError::bad(
                "until",
                format!("until {u} is before from {f}"),
            ));
        }
    }
    read(&api, move |s| {
        Ok(Json(s.series(from, until)?).into_response())
    })
    .await
}

/// Longest search string: a transaction signature is at most 88 characters.
const MAX_QUERY: usize = 128;

async fn search<S: IndexRead>(
    State(api): State<Api<S>>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    only(&params, &["q"])?;
    let q = params.get("q").cloned().unwrap_or_default();
    if q.trim().is_empty() || q.len() > MAX_QUERY {
        return Err(ApiError::bad(
            "q",
            format!(
                "q must name a provider, deal or client address, a dataset id, an epoch or a \
                 transaction signature (1 to {MAX_QUERY} characters)"
            ),
        ));
    }
    read(&api, move |s| {
        let matches = s.search(&q)?;
        Ok(Json(serde_json::json!({ "query": q.trim(), "matches": matches })).into_response())
    })
    .await
}

async fn tx<S: IndexRead>(
    State(api): State<Api<S>>,
    Path(signature): Path<String>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    only(&params, &[])?;
    if signature.len() > MAX_QUERY {
        return Err(ApiError::bad(
            "signature",
            "signature is longer than any transaction signature".into(),
        ));
    }
    read(&api, move |s| match s.tx(&signature)? {
        Some(t) => Ok(Json(t).into_response()),
        None => Err(ApiError::not_found(format!("transaction {signature}"))),
    })
    .await
}

async fn deal_events<S: IndexRead>(
    State(api): State<Api<S>>,
    Path(id): Path<String>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    only(&params, &["cursor", "limit"])?;
    let key = pubkey("id", &id)?;
    let req = page_req(&params)?;
    read(&api, move |s| {
        let page = s.deal_events(&key, &req)?;
        if page.items.is_empty() && req.after.is_none() {
            return Err(ApiError::not_found(format!("deal {id}")));
        }
        Ok(Json(page).into_response())
    })
    .await
}

async fn providers<S: IndexRead>(
    State(api): State<Api<S>>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    only(&params, &["cursor", "limit"])?;
    let req = page_req(&params)?;
    read(&api, move |s| Ok(Json(s.providers(&req)?).into_response())).await
}

async fn provider<S: IndexRead>(
    State(api): State<Api<S>>,
    Path(id): Path<String>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    only(&params, &[])?;
    let key = pubkey("id", &id)?;
    read(&api, move |s| match s.provider(&key)? {
        Some(p) => Ok(Json(p).into_response()),
        None => Err(ApiError::not_found(format!("provider {id}"))),
    })
    .await
}

async fn provider_epochs<S: IndexRead>(
    State(api): State<Api<S>>,
    Path(id): Path<String>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    only(&params, &["cursor", "limit"])?;
    let key = pubkey("id", &id)?;
    let req = page_req(&params)?;
    read(&api, move |s| {
        if s.provider(&key)?.is_none() {
            return Err(ApiError::not_found(format!("provider {id}")));
        }
        Ok(Json(s.provider_epochs(&key, &req)?).into_response())
    })
    .await
}

async fn deals<S: IndexRead>(
    State(api): State<Api<S>>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    only(&params, &["client", "provider", "state", "cursor", "limit"])?;
    let filter = DealFilter {
        client: params
            .get("client")
            .map(|s| pubkey("client", s))
            .transpose()?,
        provider: params
            .get("provider")
            .map(|s| pubkey("provider", s))
            .transpose()?,
        state: params
            .get("state")
            .map(|s| {
                DealStatus::parse(s).ok_or_else(|| {
                    let names: Vec<&str> = DealStatus::ALL.iter().map(|s| s.name()).collect();
                    ApiError::bad(
                        "state",
                        format!("state {s:?} is not one of {}", names.join(", ")),
                    )
                })
            })
            .transpose()?,
    };
    let req = page_req(&params)?;
    read(&api, move |s| {
        Ok(Json(s.deals(&filter, &req)?).into_response())
    })
    .await
}

/// A page request whose `limit` defaults to [`MAX_PAGE`] (details that list
/// a page of something, and listed it all before pages).
fn detail_page_req(params: &HashMap<String, String>) -> Result<PageReq, ApiError> {
    let mut req = page_req(params)?;
    if !params.contains_key("limit") {
        req.limit = MAX_PAGE;
    }
    Ok(req)
}

async fn deal<S: IndexRead>(
    State(api): State<Api<S>>,
    Path(id): Path<String>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    only(&params, &["cursor", "limit"])?;
    let key = pubkey("id", &id)?;
    let req = detail_page_req(&params)?;
    read(&api, move |s| match s.deal(&key, &req)? {
        Some(d) => Ok(Json(d).into_response()),
        None => Err(ApiError::not_found(format!("deal {id}"))),
    })
    .await
}

async fn dataset<S: IndexRead>(
    State(api): State<Api<S>>,
    Path(id): Path<String>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    only(&params, &["cursor", "limit"])?;
    let key = hex32("id", &id)?;
    let req = detail_page_req(&params)?;
    read(&api, move |s| match s.dataset(&key, &req)? {
        Some(d) => Ok(Json(d).into_response()),
        None => Err(ApiError::not_found(format!("dataset {id}"))),
    })
    .await
}

async fn epochs<S: IndexRead>(
    State(api): State<Api<S>>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    only(&params, &["cursor", "limit"])?;
    let req = page_req(&params)?;
    read(&api, move |s| Ok(Json(s.epochs(&req)?).into_response())).await
}

async fn epoch<S: IndexRead>(
    State(api): State<Api<S>>,
    Path(n): Path<String>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    only(&params, &[])?;
    let n: u64 = n
        .parse()
        .map_err(|_| ApiError::bad("n", format!("epoch {n:?} is not a whole number")))?;
    read(&api, move |s| match s.epoch(n)? {
        Some(e) => Ok(Json(e).into_response()),
        None => Err(ApiError::not_found(format!("epoch {n}"))),
    })
    .await
}

async fn skipped<S: IndexRead>(
    State(api): State<Api<S>>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    only(&params, &["cursor", "limit"])?;
    let req = page_req(&params)?;
    read(&api, move |s| Ok(Json(s.skipped(&req)?).into_response())).await
}
