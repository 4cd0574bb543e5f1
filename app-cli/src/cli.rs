//! The command line: global flags and the command tree.
use std::path::PathBuf;

use clap::{Parser, Subcommand};

use crate::commands::{deals, key, market, provider};
use crate::context::Ctx;
use crate::dataset::{download, quic::QuicConnector, repair, upload};
use crate::error::CliError;
use crate::output::{Progress, Report};

#[derive(Parser, Debug)]
#[command(
    name = "cairn",
    version,
    about = "Cairn: verifiable decentralized storage on Solana"
)]
pub struct Cli {
    #[command(flatten)]
    pub global: Global,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(clap::Args, Debug)]
pub struct Global {
    /// RPC URL, or a cluster moniker: localnet, devnet, testnet, mainnet-beta.
    #[arg(
        long,
        short = 'u',
        global = true,
        env = "CAIRN_URL",
        default_value = "localnet"
    )]
    pub url: String,
    /// Signing keypair (a Solana CLI keypair file).
    #[arg(long, short = 'k', global = true, env = "CAIRN_KEYPAIR", default_value_os_t = default_keypair())]
    pub keypair: PathBuf,
    /// The storage-market program. This build speaks to the program it was
    /// compiled with; another id is refused rather than silently misused.
    #[arg(long, global = true, env = "CAIRN_PROGRAM_ID")]
    pub program_id: Option<anchor_lang::prelude::Pubkey>,
    /// Print the result as JSON on stdout.
    #[arg(long, global = true)]
    pub json: bool,
    /// Print nothing but errors.
    #[arg(long, short = 'q', global = true)]
    pub quiet: bool,
    /// More detail on stderr (repeat for more).
    #[arg(long, short = 'v', global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// No progress bars.
    #[arg(long, global = true)]
    pub no_progress: bool,
}

/// `~/.config/solana/id.json`, the Solana CLI's default.
fn default_keypair() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
        .join(".config/solana/id.json")
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Uploads a directory: erasure-coded shards placed with k + m providers.
    Upload(upload::UploadArgs),
    /// Downloads a dataset (or one file of it) from any k of its providers.
    Download(download::DownloadArgs),
    /// Replaces shards whose provider failed an epoch or is jailed, or whose
    /// deal ended: ends the failed deals, rebuilds the shards from k healthy
    /// ones, places them with new providers at once, and closes old deals.
    Repair(repair::RepairArgs),
    /// Your datasets (groups, health, size); with a dataset id, its files and
    /// empty directories, from its manifest, without downloading any data.
    Ls(deals::LsArgs),
    /// One dataset's deals, group by group: epochs proven, failed and void
    /// (settled or not), penalties, escrow, providers' jailing, and how many
    /// shards each group can still lose.
    Status(deals::StatusArgs),
    /// The dataset key of private datasets (`upload --encrypt`).
    #[command(subcommand)]
    Key(key::KeyCommand),
    /// Serves datasets over S3 (read-only): bucket = dataset id or alias,
    /// key = file path; range reads fetch only the stripes they need.
    Gateway(crate::gateway::GatewayArgs),
    /// A storage provider's account.
    #[command(subcommand)]
    Provider(provider::ProviderCommand),
    /// The market.
    #[command(subcommand)]
    Market(market::MarketCommand),
}

/// Runs a parsed command line.
pub fn run(cli: Cli) -> Result<Box<dyn Report>, CliError> {
    if let Some(id) = cli.global.program_id {
        if id != cairn_chain::PROGRAM_ID {
            return Err(CliError::bad(
                "--program-id",
                format!(
                    "this build of cairn speaks to program {}; {id} needs a cairn built with that id (declare_id! in programs/storage-market)",
                    cairn_chain::PROGRAM_ID
                ),
            ));
        }
    }
    let ctx = Ctx::new(&cli.global.url, cli.global.keypair.clone());
    let g = &cli.global;
    let progress = Progress::new(
        !(g.no_progress || g.quiet || g.json),
        !(g.quiet || g.json),
        g.verbose > 0,
    );
    let connector = || {
        QuicConnector::new().map_err(|e| CliError::Io {
            path: "tokio runtime".into(),
            reason: e.to_string(),
        })
    };
    match cli.command {
        Command::Upload(a) => Ok(Box::new(upload::upload(&ctx, a, &connector()?, &progress)?)),
        Command::Download(a) => Ok(Box::new(download::download(
            &ctx,
            a,
            &connector()?,
            &progress,
        )?)),
        Command::Repair(a) => Ok(Box::new(repair::repair(&ctx, a, &connector()?, &progress)?)),
        Command::Ls(a) => deals::ls(&ctx, a, &connector()?, &progress),
        Command::Status(a) => deals::status(&ctx, a),
        Command::Key(c) => Ok(Box::new(key::run(c)?)),
        Command::Gateway(a) => Ok(Box::new(crate::gateway::run(ctx, a, &progress)?)),
        Command::Provider(c) => provider::run(&ctx, c),
        Command::Market(c) => market::run(&ctx, c),
    }
}
