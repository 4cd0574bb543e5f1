//! `cairn gateway`: an S3-compatible HTTP endpoint over Cairn datasets, for
//! tools that read S3 (boto3, pyarrow, the aws CLI, training data loaders).
//! A bucket is a dataset (its id, or an alias from the config file), a key is
//! a file path of its manifest. Reads go through the read layer
//! (`dataset::reader`): a range read fetches only the stripes that hold its
//! bytes, from any `k` providers, every unit verified. The protocol (routing,
//! XML, SigV4) is the `s3s` crate's; this module answers the read-only
//! operations (see `s3`) and serves `/metrics` on its own listener.
pub mod config;
pub mod metrics;
pub mod s3;

use std::collections::HashMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::Response;
use clap::Args;
use serde::Serialize;
use solana_signer::Signer;

use self::config::GatewayConfig;
use self::metrics::{Metrics, RequestLabels};
use self::s3::{Access, BucketNames, Gateway, Keys, OpSlot, Shared};
use crate::context::Ctx;
use crate::dataset::quic::QuicConnector;
use crate::error::CliError;
use crate::output::Progress;

#[derive(Args, Debug)]
pub struct GatewayArgs {
    /// Address to serve S3 on.
    #[arg(long, default_value = "127.0.0.1:9000")]
    pub listen: SocketAddr,
    /// Config file (TOML): `[[credentials]]` access_key/secret_key pairs for
    /// SigV4, and `[aliases]` bucket names for dataset ids. Must be readable
    /// by its owner only.
    #[arg(long, env = "CAIRN_GATEWAY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Serve unsigned requests (public datasets) instead of requiring SigV4
    /// with the config's credentials.
    #[arg(long)]
    pub anonymous: bool,
    /// Address to serve Prometheus metrics on (`/metrics`); none if absent.
    #[arg(long)]
    pub metrics_listen: Option<SocketAddr>,
    /// Requests doing blocking work (chain lookups, reads from nodes) at
    /// once; each GetObject holds at most ~3 chunks of 4 MiB and one stripe.
    #[arg(long, default_value_t = 16)]
    pub max_requests: usize,
    /// Private datasets are read with this key (a bucket of another key's
    /// dataset answers AccessDenied).
    #[command(flatten)]
    pub key: crate::commands::key::KeyArg,
}

/// What the gateway did, printed when it stops.
#[derive(Serialize, Debug)]
pub struct GatewayReport {
    pub listen: SocketAddr,
    pub bytes_served: u64,
}

impl fmt::Display for GatewayReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "gateway on {} stopped after serving {}",
            self.listen,
            crate::units::human_bytes(self.bytes_served)
        )
    }
}

/// Why the gateway cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(
        "no credentials: pass --config with [[credentials]] access_key/secret_key pairs, or \
         --anonymous to serve unsigned requests"
    )]
    NoCredentials,
    #[error("--anonymous serves unsigned requests only; the config's [[credentials]] would be unused: remove them or drop --anonymous")]
    AnonymousWithCredentials,
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: SocketAddr, reason: String },
    #[error("tokio runtime: {0}")]
    Runtime(String),
}

impl From<StartError> for CliError {
    fn from(e: StartError) -> Self {
        match e {
            StartError::Listen { .. } | StartError::Runtime(_) => CliError::Io {
                path: "gateway".into(),
                reason: e.to_string(),
            },
            _ => CliError::bad("--config", e.to_string()),
        }
    }
}

/// Serves until Ctrl-C or SIGTERM.
pub fn run(ctx: Ctx, a: GatewayArgs, progress: &Progress) -> Result<GatewayReport, CliError> {
    serve(ctx, a, progress, stopped())
}

/// Serves until `stop` completes (in-process use: benchmarks).
pub fn serve(
    ctx: Ctx,
    a: GatewayArgs,
    progress: &Progress,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<GatewayReport, CliError> {
    let config = match &a.config {
        Some(path) => GatewayConfig::load(path).map_err(StartError::from)?,
        None => GatewayConfig::default(),
    };
    match (a.anonymous, config.credentials.is_empty()) {
        (false, true) => return Err(StartError::NoCredentials.into()),
        (true, false) => return Err(StartError::AnonymousWithCredentials.into()),
        _ => {}
    }
    // ListBuckets lists the keypair's datasets; a gateway without a keypair
    // lists its aliases.
    let lister = match ctx.payer() {
        Ok(k) => Some(k.pubkey()),
        Err(CliError::Keypair { path, reason }) => {
            progress.note(&format!(
                "keypair {}: {reason}; ListBuckets lists only the config's aliases",
                path.display()
            ));
            None
        }
        Err(e) => return Err(e),
    };
    let connector = QuicConnector::new().map_err(|e| StartError::Runtime(e.to_string()))?;
    // Both live as long as the process: every request's blocking read
    // borrows them. `cairn gateway` serves once per process; a caller that
    // serves repeatedly in one process (the bench) keeps one of each per
    // call.
    let ctx: &'static Ctx = Box::leak(Box::new(ctx));
    let connector: &'static QuicConnector = Box::leak(Box::new(connector));
    let metrics = Arc::new(Metrics::default());
    let shared = Arc::new(Shared::new(
        ctx,
        connector,
        config.aliases.clone(),
        a.key.key.clone(),
        lister,
        a.max_requests,
        metrics.clone(),
    ));
    let service = {
        let mut b = s3s::service::S3ServiceBuilder::new(Gateway(shared));
        let keys: HashMap<String, String> = config
            .credentials
            .iter()
            .map(|c| (c.access_key.clone(), c.secret_key.clone()))
            .collect();
        b.set_auth(Keys(keys));
        b.set_access(Access {
            anonymous: a.anonymous,
        });
        b.set_validation(BucketNames);
        b.build()
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("cairnGateway")
        .enable_all()
        .build()
        .map_err(|e| StartError::Runtime(e.to_string()))?;
    runtime.block_on(async {
        let listener =
            tokio::net::TcpListener::bind(a.listen)
                .await
                .map_err(|e| StartError::Listen {
                    addr: a.listen,
                    reason: e.to_string(),
                })?;
        let metrics_listener =
            match a.metrics_listen {
                Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.map_err(|e| {
                    StartError::Listen {
                        addr,
                        reason: e.to_string(),
                    }
                })?),
                None => None,
            };
        let app = axum::Router::new()
            .fallback_service(axum::error_handling::HandleError::new(
                service,
                |e: s3s::HttpError| async move {
                    eprintln!("cairn gateway: a request failed: {e:?}");
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR
                },
            ))
            .layer(axum::middleware::from_fn_with_state(
                metrics.clone(),
                count_request,
            ));
        progress.note(&format!(
            "cairn gateway: S3 on http://{} ({}){}",
            listener.local_addr().unwrap_or(a.listen),
            if a.anonymous { "anonymous" } else { "SigV4" },
            match &metrics_listener {
                Some(l) => format!(
                    ", metrics on http://{}{}",
                    l.local_addr().unwrap_or(a.listen),
                    metrics::METRICS_PATH
                ),
                None => String::new(),
            }
        ));
        if let Some(l) = metrics_listener {
            let router = metrics.clone().router();
            tokio::spawn(async move {
                if let Err(e) = axum::serve(l, router).await {
                    eprintln!("cairn gateway: the metrics endpoint stopped: {e}");
                }
            });
        }
        axum::serve(listener, app)
            .with_graceful_shutdown(stop)
            .await
            .map_err(|e| StartError::Listen {
                addr: a.listen,
                reason: e.to_string(),
            })
    })?;
    // Requests still streaming end with the runtime.
    drop(runtime);
    Ok(GatewayReport {
        listen: a.listen,
        bytes_served: metrics.bytes_served.get(),
    })
}

/// Ctrl-C or SIGTERM.
async fn stopped() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
        let term = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            () = term => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Counts each request by its S3 operation (noted by [`Access`]) and status.
async fn count_request(
    axum::extract::State(metrics): axum::extract::State<Arc<Metrics>>,
    mut req: Request,
    next: Next,
) -> Response {
    let slot = OpSlot::default();
    req.extensions_mut().insert(slot.clone());
    let response = next.run(req).await;
    metrics
        .requests
        .get_or_create(&RequestLabels {
            operation: slot.0.get().cloned().unwrap_or_else(|| "unknown".into()),
            status: response.status().as_u16(),
        })
        .inc();
    response
}
