//! The HTTP API (axum): JSON, paginated with opaque cursors, 400s naming the
//! bad parameter. Handlers are generic over [`IndexRead`] so tests drive them
//! without a socket.
use crate::model::{DealStatus, Stats};
use crate::query::{DealFilter, IndexRead, PageReq, DEFAULT_PAGE, MAX_PAGE};
use crate::store::StoreError;
use axum::{
    extract::{Path, Query, State},
    http::{header, StatusCode},
    response::{Html, IntoResponse, Response},
    routing::get,
    Json, Router,
};
use serde::Serialize;
use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc,
    },
};

/// Route paths. Every `/v1` answer is JSON; listings are pages
/// (`{"items": [...], "next_cursor": "..." | null}`) taking `limit` (1–500,
/// default 50) and `cursor` (a `next_cursor` this API returned).
pub mod routes {
    /// The explorer page (HTML).
    pub const EXPLORER: &str = "/";
    /// `{status, indexed_slot, chain_slot, cursor}`.
    pub const HEALTH: &str = "/health";
    /// Prometheus text.
    pub const METRICS: &str = "/metrics";
    /// `Stats`: totals, and `closed_until` (outcomes of earlier epochs are final).
    pub const STATS: &str = "/v1/stats";
    /// `MarketRecord`: the market's authority, mint, epoch length and parameters.
    pub const MARKET: &str = "/v1/market";
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
    /// `DealRecord` with its `settlements`, and its epochs as its provider's
    /// outcomes (`epoch_outcomes` counts, `epochs` the most recent).
    pub const DEAL: &str = "/v1/deals/{id}";
    /// The dataset's deals (every generation of every shard) and totals.
    pub const DATASET: &str = "/v1/datasets/{id}";
    /// Page of `EpochRecord`, newest first.
    pub const EPOCHS: &str = "/v1/epochs";
    /// `EpochRecord` with `proven_list`, `failed_list` and `void_list`: the
    /// providers that proved it (with their sessions), failed it, or owed a proof
    /// in it while it was void.
    pub const EPOCH: &str = "/v1/epochs/{n}";
}

/// Counters exported at `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    pub http_requests: AtomicU64,
    pub ingested_transactions: AtomicU64,
    pub ingested_events: AtomicU64,
    pub undecodable_events: AtomicU64,
    pub rpc_errors: AtomicU64,
    pub reconciliations: AtomicU64,
    /// Newest slot the chain reported (confirmed), for the ingest lag.
    pub chain_slot: AtomicU64,
}

impl Metrics {
    fn render(&self, stats: &Stats) -> String {
        let mut out = String::new();
        let mut metric = |name: &str, kind: &str, help: &str, value: u64| {
            out.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}\n"
            ));
        };
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        metric(
            "cairn_indexer_http_requests_total",
            "counter",
            "HTTP requests served.",
            load(&self.http_requests),
        );
        metric(
            "cairn_indexer_ingested_transactions_total",
            "counter",
            "Transactions applied by this process.",
            load(&self.ingested_transactions),
        );
        metric(
            "cairn_indexer_ingested_events_total",
            "counter",
            "Events applied by this process.",
            load(&self.ingested_events),
        );
        metric(
            "cairn_indexer_undecodable_events_total",
            "counter",
            "Event instructions that did not decode.",
            load(&self.undecodable_events),
        );
        metric(
            "cairn_indexer_rpc_errors_total",
            "counter",
            "RPC calls that failed (retried).",
            load(&self.rpc_errors),
        );
        metric(
            "cairn_indexer_reconciliations_total",
            "counter",
            "Account reconciliations done.",
            load(&self.reconciliations),
        );
        metric(
            "cairn_indexer_chain_slot",
            "gauge",
            "Newest confirmed slot seen.",
            load(&self.chain_slot),
        );
        metric(
            "cairn_indexer_indexed_slot",
            "gauge",
            "Slot of the newest transaction indexed.",
            stats.last_slot,
        );
        metric(
            "cairn_indexer_transactions",
            "gauge",
            "Transactions in the store.",
            stats.transactions,
        );
        metric(
            "cairn_indexer_events",
            "gauge",
            "Events in the store.",
            stats.events,
        );
        metric(
            "cairn_indexer_providers",
            "gauge",
            "Providers known.",
            stats.providers,
        );
        metric("cairn_indexer_deals", "gauge", "Deals known.", stats.deals);
        metric(
            "cairn_indexer_active_deals",
            "gauge",
            "Active deals.",
            stats.active_deals,
        );
        metric(
            "cairn_indexer_stored_bytes",
            "gauge",
            "Shard bytes under active deals.",
            stats.stored_bytes,
        );
        metric(
            "cairn_indexer_sessions",
            "gauge",
            "Proof sessions completed (proven provider-epochs).",
            stats.sessions,
        );
        metric(
            "cairn_indexer_failed_epochs",
            "gauge",
            "Provider-epochs failed.",
            stats.failed_epochs,
        );
        metric(
            "cairn_indexer_void_epochs",
            "gauge",
            "Epochs nobody opened while proofs were owed.",
            stats.void_epochs,
        );
        metric(
            "cairn_indexer_penalties",
            "gauge",
            "Collateral paid to clients for failed deal-epochs.",
            stats.penalties,
        );
        metric(
            "cairn_indexer_closed_until",
            "gauge",
            "First epoch whose outcomes are not final yet.",
            stats.closed_until.unwrap_or(0),
        );
        out
    }
}

pub struct Api<S> {
    pub store: Arc<S>,
    pub metrics: Arc<Metrics>,
}

impl<S> Clone for Api<S> {
    fn clone(&self) -> Self {
        Api {
            store: self.store.clone(),
            metrics: self.metrics.clone(),
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

pub fn router<S: IndexRead>(api: Api<S>) -> Router {
    Router::new()
        .route(routes::EXPLORER, get(explorer))
        .route(routes::HEALTH, get(health::<S>))
        .route(routes::METRICS, get(metrics::<S>))
        .route(routes::STATS, get(stats::<S>))
        .route(routes::MARKET, get(market::<S>))
        .route(routes::PROVIDERS, get(providers::<S>))
        .route(routes::PROVIDER, get(provider::<S>))
        .route(routes::PROVIDER_EPOCHS, get(provider_epochs::<S>))
        .route(routes::DEALS, get(deals::<S>))
        .route(routes::DEAL, get(deal::<S>))
        .route(routes::DATASET, get(dataset::<S>))
        .route(routes::EPOCHS, get(epochs::<S>))
        .route(routes::EPOCH, get(epoch::<S>))
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

async fn count_requests(
    State(metrics): State<Arc<Metrics>>,
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    metrics.http_requests.fetch_add(1, Ordering::Relaxed);
    next.run(req).await
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
}

async fn health<S: IndexRead>(State(api): State<Api<S>>) -> Result<Json<Health>, ApiError> {
    Ok(Json(Health {
        status: "ok",
        indexed_slot: api.store.stats()?.last_slot,
        chain_slot: api.metrics.chain_slot.load(Ordering::Relaxed),
        cursor: api.store.cursor()?,
    }))
}

async fn metrics<S: IndexRead>(State(api): State<Api<S>>) -> Result<Response, ApiError> {
    let text = api.metrics.render(&api.store.stats()?);
    Ok(([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response())
}

async fn stats<S: IndexRead>(
    State(api): State<Api<S>>,
    Query(params): Params,
) -> Result<Json<Stats>, ApiError> {
    only(&params, &[])?;
    Ok(Json(api.store.stats()?))
}

async fn market<S: IndexRead>(
    State(api): State<Api<S>>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    only(&params, &[])?;
    match api.store.market()? {
        Some(m) => Ok(Json(m).into_response()),
        None => Err(ApiError::not_found("the market".into())),
    }
}

async fn providers<S: IndexRead>(
    State(api): State<Api<S>>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    only(&params, &["cursor", "limit"])?;
    Ok(Json(api.store.providers(&page_req(&params)?)?).into_response())
}

async fn provider<S: IndexRead>(
    State(api): State<Api<S>>,
    Path(id): Path<String>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    only(&params, &[])?;
    let key = pubkey("id", &id)?;
    match api.store.provider(&key)? {
        Some(p) => Ok(Json(p).into_response()),
        None => Err(ApiError::not_found(format!("provider {id}"))),
    }
}

async fn provider_epochs<S: IndexRead>(
    State(api): State<Api<S>>,
    Path(id): Path<String>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    only(&params, &["cursor", "limit"])?;
    let key = pubkey("id", &id)?;
    let req = page_req(&params)?;
    if api.store.provider(&key)?.is_none() {
        return Err(ApiError::not_found(format!("provider {id}")));
    }
    Ok(Json(api.store.provider_epochs(&key, &req)?).into_response())
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
    Ok(Json(api.store.deals(&filter, &page_req(&params)?)?).into_response())
}

async fn deal<S: IndexRead>(
    State(api): State<Api<S>>,
    Path(id): Path<String>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    only(&params, &[])?;
    let key = pubkey("id", &id)?;
    match api.store.deal(&key)? {
        Some(d) => Ok(Json(d).into_response()),
        None => Err(ApiError::not_found(format!("deal {id}"))),
    }
}

async fn dataset<S: IndexRead>(
    State(api): State<Api<S>>,
    Path(id): Path<String>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    only(&params, &[])?;
    let key = hex32("id", &id)?;
    match api.store.dataset(&key)? {
        Some(d) => Ok(Json(d).into_response()),
        None => Err(ApiError::not_found(format!("dataset {id}"))),
    }
}

async fn epochs<S: IndexRead>(
    State(api): State<Api<S>>,
    Query(params): Params,
) -> Result<Response, ApiError> {
    only(&params, &["cursor", "limit"])?;
    Ok(Json(api.store.epochs(&page_req(&params)?)?).into_response())
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
    match api.store.epoch(n)? {
        Some(e) => Ok(Json(e).into_response()),
        None => Err(ApiError::not_found(format!("epoch {n}"))),
    }
}
