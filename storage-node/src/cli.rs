//! `cairn-node`: `init` writes a documented config file; `run` serves.

use crate::config::Config;
use anyhow::Context;
use clap::{Parser, Subcommand};
use std::{net::SocketAddr, path::PathBuf, process::ExitCode};

#[derive(Parser)]
#[command(name = "cairn-node", version, about = "Cairn storage provider node")]
struct Cli {
    /// Config file.
    #[arg(
        long,
        short,
        global = true,
        env = "CAIRN_NODE_CONFIG",
        default_value = "cairn-node.toml"
    )]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write a config file with every field, documented, set to its default.
    Init {
        /// The provider's authority public key.
        #[arg(long)]
        provider_authority: Option<String>,
        /// Overwrite an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Serve shards, accept deals and prove.
    Run(Overrides),
    /// Measure upload throughput (next to raw quinn), proof generation and one
    /// epoch's proof session (planned, samples built, transactions counted) on
    /// this machine, chain excluded.
    Bench(crate::bench::BenchOptions),
}

/// Values that override the config file (flags, or environment variables).
#[derive(clap::Args)]
struct Overrides {
    /// Data directory.
    #[arg(long, env = "CAIRN_NODE_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// QUIC listen address.
    #[arg(long, env = "CAIRN_NODE_LISTEN")]
    listen: Option<SocketAddr>,
    /// Metrics listen address.
    #[arg(long, env = "CAIRN_NODE_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Solana RPC URL (`--url`, as in the other binaries).
    #[arg(long, visible_alias = "url", env = "CAIRN_NODE_RPC_URL")]
    rpc_url: Option<String>,
    /// Provider authority public key.
    #[arg(long, env = "CAIRN_NODE_PROVIDER_AUTHORITY")]
    provider_authority: Option<String>,
    /// Operator keypair file.
    #[arg(long, env = "CAIRN_NODE_OPERATOR_KEYPAIR")]
    operator_keypair: Option<PathBuf>,
    /// Capacity in bytes.
    #[arg(long, env = "CAIRN_NODE_CAPACITY_BYTES")]
    capacity_bytes: Option<u64>,
    /// Priority fee of proof transactions (micro-lamports per compute unit).
    #[arg(long, env = "CAIRN_NODE_PRIORITY_FEE_MICRO_LAMPORTS")]
    priority_fee_micro_lamports: Option<u64>,
    /// Disable the prover.
    #[arg(long, env = "CAIRN_NODE_NO_PROVER")]
    no_prover: bool,
}

impl Overrides {
    fn apply(self, c: &mut Config) {
        if let Some(v) = self.data_dir {
            c.data_dir = v;
        }
        if let Some(v) = self.listen {
            c.listen = v;
        }
        if let Some(v) = self.metrics_listen {
            c.metrics_listen = v.to_string();
        }
        if let Some(v) = self.rpc_url {
            c.rpc_url = v;
        }
        if let Some(v) = self.provider_authority {
            c.provider_authority = v;
        }
        if let Some(v) = self.operator_keypair {
            c.operator_keypair = v;
        }
        if let Some(v) = self.capacity_bytes {
            c.capacity_bytes = v;
        }
        if let Some(v) = self.priority_fee_micro_lamports {
            c.priority_fee_micro_lamports = v;
        }
        if self.no_prover {
            c.prover = false;
        }
    }
}

/// The binary's entry point, also run by `cairn` (the demo starts this
/// service as a child process of itself).
pub fn main(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    // `RUST_LOG` filters (default `info`); events and spans go to stderr.
    let filter = tracing_subscriber::EnvFilter::builder()
        .with_default_directive(tracing_subscriber::filter::LevelFilter::INFO.into())
        .from_env_lossy();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    match real_main(Cli::parse_from(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn real_main(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Init {
            provider_authority,
            force,
        } => {
            if cli.config.exists() && !force {
                anyhow::bail!(
                    "{} exists; pass --force to overwrite it",
                    cli.config.display()
                );
            }
            let config = Config {
                provider_authority: provider_authority.unwrap_or_default(),
                ..Config::default()
            };
            std::fs::write(&cli.config, config.documented_toml())
                .with_context(|| format!("writing {}", cli.config.display()))?;
            println!("wrote {}", cli.config.display());
            if config.provider_authority.is_empty() {
                println!("set provider_authority in it before `cairn-node run`");
            }
            Ok(())
        }
        Command::Bench(options) => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            print!("{}", runtime.block_on(crate::bench::run(options))?);
            Ok(())
        }
        Command::Run(overrides) => {
            let mut config = if cli.config.exists() {
                let text = std::fs::read_to_string(&cli.config)
                    .with_context(|| format!("reading {}", cli.config.display()))?;
                let mut config: Config = toml::from_str(&text)
                    .with_context(|| format!("in {}", cli.config.display()))?;
                if let Some(dir) = cli.config.parent() {
                    config.resolve_paths(dir);
                }
                config
            } else {
                Config::default()
            };
            overrides.apply(&mut config);
            config.validate()?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async {
                let node = crate::node::start(config).await?;
                println!("cairn-node listening on {} (QUIC, cairn/1)", node.quic_addr);
                let mut term =
                    tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
                node.stop().await;
                Ok(())
            })
        }
    }
}
