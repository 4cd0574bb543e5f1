//! `cairn-indexer --url RPC --program-id ID --db DIR --listen ADDR`
use crate::{
    api::{self, Api, Metrics},
    follower::{Follower, FollowerConfig},
    store::Store,
};
use anyhow::Context;
use clap::Parser;
use std::{net::SocketAddr, path::PathBuf, process::ExitCode, sync::Arc, time::Duration};
use tokio_util::sync::CancellationToken;

#[derive(Parser, Debug)]
#[command(
    name = "cairn-indexer",
    version,
    about = "Follows the Cairn storage market into RocksDB and serves an HTTP API and explorer"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
    /// JSON-RPC endpoint of the cluster.
    #[arg(long, env = "CAIRN_RPC_URL", default_value = "http://127.0.0.1:8899")]
    url: String,
    /// The storage-market program.
    #[arg(long, env = "CAIRN_PROGRAM_ID", default_value_t = cairn_chain::PROGRAM_ID.to_string())]
    program_id: String,
    /// RocksDB directory (created if missing).
    #[arg(long, env = "CAIRN_INDEXER_DB")]
    db: Option<PathBuf>,
    /// Address the HTTP API listens on.
    #[arg(long, env = "CAIRN_INDEXER_LISTEN", default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Milliseconds between polls once caught up.
    #[arg(long, env = "CAIRN_INDEXER_POLL_MS", default_value_t = 400)]
    poll_ms: u64,
    /// Seconds between reconciliations with getProgramAccounts.
    #[arg(long, env = "CAIRN_INDEXER_RECONCILE_SECS", default_value_t = 60)]
    reconcile_secs: u64,
    /// At most this many RPC requests per second (public endpoints rate-limit).
    #[arg(long, env = "CAIRN_INDEXER_MAX_RPS")]
    max_rps: Option<f64>,
    /// What the explorer calls the market's token (a mint has no name on chain).
    #[arg(long, env = "CAIRN_TOKEN_SYMBOL", default_value = api::DEFAULT_TOKEN_SYMBOL)]
    token_symbol: String,
    /// Transactions applied per write batch.
    #[arg(long, env = "CAIRN_INDEXER_BATCH", default_value_t = 64)]
    batch: usize,
}

#[derive(clap::Subcommand, Debug)]
enum Cmd {
    /// Measures the ingest rate (events/s) from recorded transactions and the
    /// API's p50/p99 latency over a store with many deals, and prints them.
    Bench {
        /// Deals in the store the API is measured on.
        #[arg(long, default_value_t = 1_000_000)]
        deals: u64,
        /// Epochs added on top of those deals (one series point each).
        #[arg(long, default_value_t = 10_000)]
        epochs: u64,
        /// Requests per measured endpoint.
        #[arg(long, default_value_t = 2_000)]
        requests: usize,
        /// Directory for the two scratch stores (default: a temporary one).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
}

/// The binary's entry point, also run by `cairn` (the demo starts this
/// service as a child process of itself).
pub fn main(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse_from(args);
    let result = match cli.command {
        Some(Cmd::Bench {
            deals,
            epochs,
            requests,
            dir,
            json,
        }) => bench(deals, epochs, requests, dir, json),
        None => run(cli),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn bench(
    deals: u64,
    epochs: u64,
    requests: usize,
    dir: Option<PathBuf>,
    json: bool,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        deals > 0 && requests > 0,
        "--deals and --requests must be at least 1"
    );
    let temp = tempfile::tempdir()?;
    let dir = dir.unwrap_or_else(|| temp.path().to_path_buf());
    let report = crate::bench::run(&dir, deals, epochs, requests)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let db = cli
        .db
        .clone()
        .context("--db (or CAIRN_INDEXER_DB) is required: the RocksDB directory of the index")?;
    let program_id = cli
        .program_id
        .parse()
        .with_context(|| format!("--program-id {} is not a base58 address", cli.program_id))?;
    anyhow::ensure!(cli.batch > 0, "--batch must be at least 1");
    anyhow::ensure!(
        cli.max_rps.is_none_or(|r| r > 0.0),
        "--max-rps must be positive"
    );
    let store =
        Arc::new(Store::open(&db).with_context(|| format!("opening the store {}", db.display()))?);
    let metrics = Arc::new(Metrics::default());
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let cancel = CancellationToken::new();
        let listener = tokio::net::TcpListener::bind(cli.listen)
            .await
            .with_context(|| format!("listening on {}", cli.listen))?;
        tracing::info!("API on http://{}", listener.local_addr()?);
        let follower = Follower::new(
            cli.url.clone(),
            store.clone(),
            metrics.clone(),
            FollowerConfig {
                program_id,
                poll_interval: Duration::from_millis(cli.poll_ms),
                reconcile_interval: Duration::from_secs(cli.reconcile_secs.max(1)),
                max_rps: cli.max_rps,
                batch: cli.batch,
            },
        );
        let follow = tokio::spawn(follower.run(cancel.clone()));
        let shutdown = cancel.clone();
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            tracing::info!("stopping");
            shutdown.cancel();
        });
        api::serve(
            listener,
            Api {
                store,
                metrics,
                token_symbol: cli.token_symbol.as_str().into(),
            },
            cancel.clone().cancelled_owned(),
        )
        .await?;
        follow.await?;
        Ok(())
    })
}
