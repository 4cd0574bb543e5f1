//! `cairn-localnet`: starts a single-machine Solana validator running the
//! storage-market program, prints where to reach it, and runs until Ctrl-C.
use crate::{defaults, Localnet, LocalnetConfig, INFO_FILE, LOG_FILE};
use anyhow::Context;
use clap::Parser;
use std::{fs::File, io::Write, path::PathBuf, process::ExitCode};

/// Run Cairn's local chain: agave's validator with the storage-market program,
/// a funded faucet (also behind `requestAirdrop`), an SPL mint and the market.
///
/// Other binaries reach it with `--url http://127.0.0.1:8899` (the default
/// port); everything they need is also written to `<ledger>/localnet.json`.
#[derive(Parser, Debug)]
#[command(name = "cairn-localnet", version)]
struct Args {
    /// Ledger directory; the chain's state is kept there across restarts.
    #[arg(long, env = "CAIRN_LOCALNET_LEDGER", default_value = ".cairn/localnet")]
    ledger: PathBuf,
    /// Delete the ledger first and start a new chain.
    #[arg(long)]
    reset: bool,
    /// Slot duration in ms (at least 300, a multiple of 75). Fixed when the
    /// chain is created [new chains: 300].
    #[arg(long, env = "CAIRN_LOCALNET_SLOT_MS")]
    slot_ms: Option<u64>,
    /// Market epoch length in slots. Fixed when the chain is created
    /// [new chains: 20].
    #[arg(long, env = "CAIRN_LOCALNET_EPOCH_SLOTS")]
    epoch_slots: Option<u64>,
    /// JSON-RPC port; the websocket listens on the next port.
    #[arg(long, env = "CAIRN_LOCALNET_RPC_PORT", default_value_t = defaults::RPC_PORT)]
    rpc_port: u16,
    /// Print the connection information as JSON (the content of localnet.json).
    #[arg(long)]
    json: bool,
    /// Print nothing but errors (localnet.json is still written).
    #[arg(short, long)]
    quiet: bool,
}

/// The binary's entry point, also run by `cairn` (the demo starts this
/// service as a child process of itself).
pub fn main(args: impl IntoIterator<Item = std::ffi::OsString>) -> ExitCode {
    let args = Args::parse_from(args);
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("cairn-localnet: {err:#}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.ledger)
        .with_context(|| format!("creating {}", args.ledger.display()))?;
    let log = log_to_file(&args.ledger.join(LOG_FILE))?;
    let mut out = redirect_stdout(&log)?;
    let config = LocalnetConfig {
        ledger: Some(args.ledger.clone()),
        reset: args.reset,
        slot_ms: args.slot_ms,
        epoch_slots: args.epoch_slots,
        rpc_port: Some(args.rpc_port),
    };
    if !args.quiet && !args.json {
        eprintln!("starting the local chain in {} ...", args.ledger.display());
    }
    let localnet = Localnet::start(config)?;
    let info = localnet.info();
    if args.json {
        writeln!(out, "{}", serde_json::to_string_pretty(info)?)?;
    } else if !args.quiet {
        writeln!(out, "{info}")?;
        writeln!(
            out,
            "ready in {:.1} s; written to {}; validator log: {}; Ctrl-C stops",
            localnet.started_in().as_secs_f64(),
            info.ledger.join(INFO_FILE).display(),
            info.ledger.join(LOG_FILE).display(),
        )?;
    }
    out.flush()?;
    wait_for_shutdown_signal()?;
    if !args.quiet && !args.json {
        eprintln!("stopping ...");
    }
    drop(localnet);
    if !args.quiet && !args.json {
        eprintln!("stopped; the ledger stays in {}", args.ledger.display());
    }
    Ok(())
}

/// The validator logs a lot; it goes to `<ledger>/validator.log` (filter with
/// `RUST_LOG`, default `solana=info,agave=info`). Returns the open log file.
fn log_to_file(path: &std::path::Path) -> anyhow::Result<File> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("opening {}", path.display()))?;
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or("solana=info,agave=info"),
    )
    .format_timestamp_millis()
    .target(env_logger::Target::Pipe(Box::new(file.try_clone()?)))
    .try_init()
    .context("installing the logger")?;
    Ok(file)
}

/// The program runs natively, so its `msg!` output (and the validator's own
/// prints) would land on the terminal: send the process's stdout to the log
/// file and return a handle on the original stdout for this binary's output.
fn redirect_stdout(log: &File) -> anyhow::Result<File> {
    use std::os::fd::{AsRawFd, FromRawFd};
    std::io::stdout().flush()?;
    // SAFETY: plain descriptor duplication; `terminal` is a fresh descriptor
    // owned by the returned File, and fd 1 stays open (now on the log file).
    unsafe {
        let terminal = libc::dup(libc::STDOUT_FILENO);
        if terminal < 0 || libc::dup2(log.as_raw_fd(), libc::STDOUT_FILENO) < 0 {
            return Err(std::io::Error::last_os_error()).context("redirecting stdout to the log");
        }
        Ok(File::from_raw_fd(terminal))
    }
}

/// Blocks until SIGINT (Ctrl-C) or SIGTERM.
fn wait_for_shutdown_signal() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("signal runtime")?;
    runtime
        .block_on(async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                r = tokio::signal::ctrl_c() => r?,
                _ = term.recv() => {}
            }
            Ok::<(), std::io::Error>(())
        })
        .context("waiting for Ctrl-C")
}
