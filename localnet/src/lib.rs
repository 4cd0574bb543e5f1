//! `cairn-localnet`: the embedded default chain that runs Cairn on one machine.
//!
//! It is agave's own validator (`solana-test-validator`): real slots, a real
//! ledger on disk, the full JSON-RPC and websocket APIs, a faucet behind
//! `requestAirdrop`. Every other part of Cairn talks to it through
//! `solana-client` exactly as it talks to devnet or mainnet-beta.
//!
//! The storage-market program cannot be compiled to SBF where the Solana
//! toolchain is missing, so it runs natively: its account is in genesis (owned
//! by the native loader) and its entry point is registered as a builtin in the
//! validator's banks ([`builtin`]) before anything can send it a transaction,
//! including the replay of an existing ledger at restart ([`catchup`]). The
//! runtime around it (accounts, rent, fees, signatures, CPIs into the real SPL
//! Token programs, sysvars, history) is the validator's.
//!
//! [`Localnet::start`] creates the chain on first use: a funded faucet keypair,
//! an SPL mint for payments (the faucet is its mint authority) and the market
//! initialised with local parameters. It writes [`LocalnetInfo`] to
//! `<ledger>/localnet.json`; dropping the handle stops the validator.
pub mod builtin;
pub mod catchup;
pub mod cli;

use anchor_lang::AccountDeserialize;
use cairn_chain::{market_pda, token, vault_pda, MarketIx, Pubkey, PROGRAM_ID};
use serde::{Deserialize, Serialize};
use solana_commitment_config::CommitmentConfig;
use solana_keypair::{read_keypair_file, write_keypair_file, Keypair};
use solana_rpc::{rpc::JsonRpcConfig, rpc_pubsub_service::PubSubConfig};
use solana_rpc_client::rpc_client::RpcClient;
use solana_runtime::bank_forks::BankForks;
use solana_signer::Signer;
use solana_test_validator::{TestValidator, TestValidatorGenesis};
use solana_transaction::Transaction;
use std::{
    fmt,
    net::{Ipv4Addr, SocketAddr, TcpListener, UdpSocket},
    path::{Path, PathBuf},
    sync::{Arc, Mutex, RwLock},
    time::{Duration, Instant},
};
use storage_market::state::{Market, MarketParams};

pub use builtin::Registration;
pub use catchup::CatchUp;

/// File in the ledger directory with the [`LocalnetInfo`] of the running chain.
pub const INFO_FILE: &str = "localnet.json";
/// Log file of the command-line localnet, in the ledger directory (kept by
/// `--reset`).
pub const LOG_FILE: &str = "validator.log";
/// File in the ledger directory with the faucet keypair (also the mint and
/// market authority).
pub const FAUCET_FILE: &str = "faucet.json";
/// Shortest slot the local validator keeps up with (see [`defaults::SLOT_MS`]).
pub const MIN_SLOT_MS: u64 = 300;
/// Width of the port range for the validator's own sockets (gossip, TPU, TVU,
/// repair; agave needs at least 26).
const PORT_RANGE_WIDTH: u16 = 64;

/// Defaults of [`LocalnetConfig`] and of the market's local parameters.
pub mod defaults {
    /// Slot duration in milliseconds: agave 4.2's genesis default (64 PoH
    /// ticks of 4.6875 ms). Shorter slots would make local epochs pass faster,
    /// but agave 4.2.2's leader then panics within a minute on a loaded 2-core
    /// machine (broadcast: "All banks frozen ... must have a block id",
    /// measured at 37.5, 75 and 150 ms), so local epochs are kept short with
    /// [`EPOCH_SLOTS`] instead and [`super::MIN_SLOT_MS`] is this value.
    pub const SLOT_MS: u64 = 300;
    /// Market epoch length in slots (6 s at [`SLOT_MS`]).
    pub const EPOCH_SLOTS: u64 = 20;
    /// Samples per provider per epoch on a local network: few, so a 6-second epoch
    /// has room for every node's proof transactions on a loaded 2-core machine (the
    /// market default for real networks is in `docs/DESIGN.md`).
    pub const SAMPLES_PER_EPOCH: u16 = 4;
    /// Decimals of the payment mint (like USDC).
    pub const DECIMALS: u8 = 6;
    /// JSON-RPC port of the command-line localnet (`solana-test-validator`'s);
    /// the websocket is on the next port.
    pub const RPC_PORT: u16 = 8899;
    /// How long registering the program may take after the validator started.
    pub const REGISTRATION_TIMEOUT_SECS: u64 = 30;
    /// How long stopping the validator may take before the handle gives up
    /// waiting (its threads are then left to the process's exit).
    pub const STOP_TIMEOUT_SECS: u64 = 60;
}

/// How to start a local network. Every field has a default; see [`defaults`].
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LocalnetConfig {
    /// Ledger directory, kept across restarts. `None`: a temporary directory,
    /// deleted when the [`Localnet`] is dropped.
    pub ledger: Option<PathBuf>,
    /// Delete the ledger first and start a new chain.
    pub reset: bool,
    /// Slot duration in ms: at least [`MIN_SLOT_MS`] and a whole number of PoH
    /// ticks (a multiple of 75 ms). Fixed when the ledger is created; `None`
    /// keeps the ledger's, or [`defaults::SLOT_MS`].
    pub slot_ms: Option<u64>,
    /// Market epoch length in slots. Fixed when the market is created; `None`
    /// keeps the ledger's, or [`defaults::EPOCH_SLOTS`].
    pub epoch_slots: Option<u64>,
    /// JSON-RPC port; the websocket listens on the next one. `None`: free ports.
    pub rpc_port: Option<u16>,
}

impl LocalnetConfig {
    /// Checks every field's range.
    pub fn validate(&self) -> Result<(), LocalnetError> {
        if let Some(ms) = self.slot_ms {
            let step = slot_step_ms();
            if ms < MIN_SLOT_MS || ms % step != 0 {
                return Err(LocalnetError::Config(format!(
                    "slot duration {ms} ms must be at least {MIN_SLOT_MS} ms and a whole number of \
                     PoH ticks ({:?} each): a multiple of {step} ms",
                    tick()
                )));
            }
        }
        let min = storage_market::constants::MIN_EPOCH_SLOTS;
        if self.epoch_slots.is_some_and(|slots| slots < min) {
            return Err(LocalnetError::Config(format!(
                "epoch length must be at least {min} slots (the seed slot, a slot to open the \
                 epoch in and one to prove in)"
            )));
        }
        if self.rpc_port.is_some_and(|p| p == 0 || p == u16::MAX) {
            return Err(LocalnetError::Config(
                "RPC port must be between 1 and 65534 (the websocket takes the next one)".into(),
            ));
        }
        Ok(())
    }
}

/// Duration of one PoH tick in a local genesis (agave's default).
fn tick() -> Duration {
    solana_poh_config::PohConfig::default().target_tick_duration
}

/// Slot durations are whole numbers of ticks; in whole milliseconds that is a
/// multiple of this.
fn slot_step_ms() -> u64 {
    fn gcd(a: u64, b: u64) -> u64 {
        if b == 0 {
            a
        } else {
            gcd(b, a % b)
        }
    }
    let tick_ns = tick().as_nanos() as u64;
    tick_ns / gcd(tick_ns, 1_000_000)
}

/// The market parameters of a local network with `epoch_slots`-slot epochs: proofs
/// accepted until the epoch ends, [`defaults::SAMPLES_PER_EPOCH`] samples per
/// provider, 10% of a deal's collateral to the client per failed epoch, jail after 3
/// failed epochs in 10, 2 epochs for a provider to accept.
pub fn local_market_params(epoch_slots: u64) -> MarketParams {
    MarketParams {
        epoch_slots,
        collateral_per_mib: 5_000,
        slash_bps: 1_000,
        accept_timeout_epochs: 2,
        response_slots: epoch_slots,
        max_shard_bytes: storage_market::constants::MAX_SHARD_BYTES_LIMIT,
        samples_per_epoch: defaults::SAMPLES_PER_EPOCH,
        jail_failures: 3,
        jail_window: 10,
    }
}

/// Everything a client needs to use a running local network; written to
/// `<ledger>/localnet.json`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LocalnetInfo {
    /// JSON-RPC endpoint (`--url` of the other binaries).
    pub rpc_url: String,
    /// Websocket (PubSub) endpoint.
    pub websocket_url: String,
    /// The storage-market program.
    #[serde(with = "pubkey_string")]
    pub program_id: Pubkey,
    /// Payment and stake mint.
    #[serde(with = "pubkey_string")]
    pub mint: Pubkey,
    /// Token program of the mint.
    #[serde(with = "pubkey_string")]
    pub token_program: Pubkey,
    /// The market account (`["market"]`).
    #[serde(with = "pubkey_string")]
    pub market: Pubkey,
    /// The market's vault token account (`["vault"]`).
    #[serde(with = "pubkey_string")]
    pub vault: Pubkey,
    /// The faucet: holds the genesis lamports, is the mint authority and the
    /// market authority.
    #[serde(with = "pubkey_string")]
    pub faucet: Pubkey,
    /// Keypair file of the faucet.
    pub faucet_keypair: PathBuf,
    /// Ledger directory.
    pub ledger: PathBuf,
    /// Slot duration in ms.
    pub slot_ms: u64,
    /// Market epoch length in slots.
    pub epoch_slots: u64,
}

impl LocalnetInfo {
    /// Reads `<ledger>/localnet.json`.
    pub fn read(ledger: &Path) -> Result<Self, LocalnetError> {
        let path = ledger.join(INFO_FILE);
        let json = std::fs::read_to_string(&path).map_err(|e| io(&path, e))?;
        serde_json::from_str(&json)
            .map_err(|e| LocalnetError::Config(format!("{}: {e}", path.display())))
    }

    /// Instruction builders for this market.
    pub fn market_ix(&self) -> MarketIx {
        MarketIx {
            mint: self.mint,
            token_program: self.token_program,
        }
    }

    fn write(&self) -> Result<(), LocalnetError> {
        let path = self.ledger.join(INFO_FILE);
        let tmp = self.ledger.join(format!("{INFO_FILE}.tmp"));
        let json = serde_json::to_string_pretty(self).expect("info serializes");
        std::fs::write(&tmp, json + "\n").map_err(|e| io(&tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| io(&path, e))
    }
}

impl fmt::Display for LocalnetInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "rpc        {}", self.rpc_url)?;
        writeln!(f, "websocket  {}", self.websocket_url)?;
        writeln!(f, "program    {}", self.program_id)?;
        writeln!(f, "mint       {} ({})", self.mint, self.token_program)?;
        writeln!(f, "market     {}", self.market)?;
        writeln!(
            f,
            "faucet     {} ({})",
            self.faucet,
            self.faucet_keypair.display()
        )?;
        writeln!(f, "ledger     {}", self.ledger.display())?;
        write!(
            f,
            "epochs     {} slots of {} ms",
            self.epoch_slots, self.slot_ms
        )
    }
}

mod pubkey_string {
    use super::Pubkey;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};
    use std::str::FromStr;

    pub fn serialize<S: Serializer>(key: &Pubkey, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(key)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Pubkey, D::Error> {
        let s = String::deserialize(d)?;
        Pubkey::from_str(&s).map_err(|e| D::Error::custom(format!("{s}: {e}")))
    }
}

/// Why a local network could not start.
#[derive(Debug, thiserror::Error)]
pub enum LocalnetError {
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{0} is not empty and is not a cairn-localnet ledger; choose another --ledger directory"
    )]
    NotALocalnetLedger(PathBuf),
    #[error(
        "this ledger's {what} is {ledger}, not {requested}: it is fixed when the chain is created; \
         omit the option, or pass --reset to start a new chain"
    )]
    Fixed {
        what: &'static str,
        ledger: u64,
        requested: u64,
    },
    #[error("replaying the existing ledger failed: {0}; pass --reset to start a new chain")]
    CatchUp(String),
    #[error("the validator failed to start: {0}")]
    Validator(String),
    #[error("registering the program in the validator's banks: {0}")]
    Registration(String),
    #[error("creating the mint and the market: {0}")]
    Init(String),
    #[error(
        "the market account {0} is missing or not a market; pass --reset to start a new chain"
    )]
    Market(Pubkey),
}

fn io(path: &Path, source: std::io::Error) -> LocalnetError {
    LocalnetError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A running local network. Dropping it stops the validator and removes
/// `localnet.json` (the ledger stays, unless it is the temporary one).
pub struct Localnet {
    validator: Option<TestValidator>,
    bank_forks: Arc<RwLock<BankForks>>,
    info: LocalnetInfo,
    faucet: Keypair,
    registration: Registration,
    catch_up: Option<CatchUp>,
    faucet_service: Option<tokio::runtime::Runtime>,
    started_in: Duration,
    _temp: Option<tempfile::TempDir>,
}

impl Localnet {
    /// Starts a validator with the program, creating the chain if the ledger is
    /// new, and returns once the program answers. Blocking; may be called from
    /// inside a tokio runtime (the work runs on its own thread).
    pub fn start(config: LocalnetConfig) -> Result<Localnet, LocalnetError> {
        config.validate()?;
        std::thread::Builder::new()
            .name("cairnLocalnet".into())
            .spawn(move || start_blocking(config))
            .expect("spawn localnet start thread")
            .join()
            .map_err(|_| LocalnetError::Validator("the start thread panicked".into()))?
    }

    pub fn info(&self) -> &LocalnetInfo {
        &self.info
    }

    pub fn rpc_url(&self) -> &str {
        &self.info.rpc_url
    }

    pub fn websocket_url(&self) -> &str {
        &self.info.websocket_url
    }

    /// The faucet keypair: genesis lamports, mint authority, market authority.
    pub fn faucet(&self) -> &Keypair {
        &self.faucet
    }

    /// Instruction builders for this market.
    pub fn market_ix(&self) -> MarketIx {
        self.info.market_ix()
    }

    /// A blocking RPC client at `confirmed` commitment.
    pub fn rpc_client(&self) -> RpcClient {
        RpcClient::new_with_commitment(self.info.rpc_url.clone(), CommitmentConfig::confirmed())
    }

    /// How the program was registered in this run's banks.
    pub fn registration(&self) -> &Registration {
        &self.registration
    }

    /// The replay done before the validator started, on an existing ledger.
    pub fn catch_up(&self) -> Option<CatchUp> {
        self.catch_up
    }

    /// Time from [`Localnet::start`] to the program answering.
    pub fn started_in(&self) -> Duration {
        self.started_in
    }

    /// Slots of the validator's current banks in which the program does not
    /// run (empty unless something is wrong).
    pub fn banks_without_program(&self) -> Vec<u64> {
        builtin::banks_without_program(&self.bank_forks, &self.faucet)
    }

    /// Stops the validator (same as dropping the handle).
    pub fn stop(self) {}
}

impl Drop for Localnet {
    fn drop(&mut self) {
        if let Some(runtime) = self.faucet_service.take() {
            runtime.shutdown_background();
        }
        if let Some(validator) = self.validator.take() {
            // Closing joins the validator's threads and drops its runtimes,
            // which tokio forbids from inside another runtime: use a plain
            // thread. A validator whose service thread panicked can block in
            // that join forever; don't take the caller down with it.
            let (done, stopped) = crossbeam_channel::bounded(1);
            std::thread::spawn(move || {
                drop(validator);
                let _ = done.send(());
            });
            let timeout = Duration::from_secs(defaults::STOP_TIMEOUT_SECS);
            if stopped.recv_timeout(timeout).is_err() {
                eprintln!(
                    "cairn-localnet: the validator did not stop within {timeout:?}; leaving its threads behind"
                );
            }
        }
        // localnet.json exists while the chain runs.
        let _ = std::fs::remove_file(self.info.ledger.join(INFO_FILE));
    }
}

fn start_blocking(config: LocalnetConfig) -> Result<Localnet, LocalnetError> {
    let started = Instant::now();
    // Before any bank can run the program (the catch-up replays it). The first
    // call starts a throwaway program-test, which installs agave's logger at
    // debug level for every executed instruction: put back the level of a
    // logger the embedding program installed, or else quiet agave's to
    // warnings (RUST_LOG still wins).
    let level = log::max_level();
    cairn_native_host::install_syscall_forwarding();
    if level == log::LevelFilter::Off {
        agave_logger::setup_with_default("warn");
    } else {
        log::set_max_level(level);
    }

    let (ledger, temp) = match &config.ledger {
        Some(dir) => (std::path::absolute(dir).map_err(|e| io(dir, e))?, None),
        None => {
            let temp = tempfile::Builder::new()
                .prefix("cairn-localnet-")
                .tempdir()
                .map_err(|e| io(&std::env::temp_dir(), e))?;
            (temp.path().to_path_buf(), Some(temp))
        }
    };
    prepare_ledger_dir(&ledger, config.reset)?;
    let fresh = !TestValidatorGenesis::ledger_exists(&ledger);
    let faucet_path = ledger.join(FAUCET_FILE);
    let faucet = if fresh {
        let faucet = Keypair::new();
        write_keypair_file(&faucet, &faucet_path).map_err(|e| LocalnetError::Io {
            path: faucet_path.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        faucet
    } else {
        read_keypair_file(&faucet_path)
            .map_err(|_| LocalnetError::NotALocalnetLedger(ledger.clone()))?
    };

    let slot_ms = if fresh {
        config.slot_ms.unwrap_or(defaults::SLOT_MS)
    } else {
        let genesis = solana_genesis_utils::open_genesis_config(
            &ledger,
            solana_genesis_utils::MAX_GENESIS_ARCHIVE_UNPACKED_SIZE,
        )
        .map_err(|e| LocalnetError::CatchUp(format!("reading genesis: {e}")))?;
        let ms = (genesis.poh_config.target_tick_duration * genesis.ticks_per_slot as u32)
            .as_micros()
            .div_ceil(1_000) as u64;
        if let Some(requested) = config.slot_ms.filter(|r| *r != ms) {
            return Err(LocalnetError::Fixed {
                what: "slot duration (ms)",
                ledger: ms,
                requested,
            });
        }
        ms
    };

    let catch_up = if fresh {
        None
    } else {
        Some(catchup::catch_up(&ledger).map_err(LocalnetError::CatchUp)?)
    };

    let (faucet_service, faucet_addr) = start_faucet(faucet.insecure_clone())?;
    let port_range = free_port_range(PORT_RANGE_WIDTH, config.rpc_port)?;
    let mut genesis = TestValidatorGenesis::default();
    let program_lamports = genesis
        .rent
        .minimum_balance(builtin::PROGRAM_NAME.len())
        .max(1);
    genesis
        .ledger_path(&ledger)
        .ticks_per_slot(slot_ms * 1_000_000 / tick().as_nanos() as u64)
        .rpc_config(JsonRpcConfig {
            enable_rpc_transaction_history: true,
            enable_extended_tx_metadata_storage: true,
            faucet_addr: Some(faucet_addr),
            ..JsonRpcConfig::default_for_test()
        })
        .pubsub_config(PubSubConfig::default_for_tests())
        .port_range(port_range)
        .gossip_port(port_range.0)
        .add_account(PROGRAM_ID, builtin::program_account(program_lamports));
    if let Some(port) = config.rpc_port {
        genesis.rpc_port(port);
    }
    let validator = genesis
        .start_with_mint_address(
            faucet.pubkey(),
            solana_net_utils::SocketAddrSpace::new(true),
        )
        .map_err(|e| LocalnetError::Validator(e.to_string()))?;
    let bank_forks = validator.bank_forks();
    let registration = builtin::register(
        &bank_forks,
        &faucet,
        Duration::from_secs(defaults::REGISTRATION_TIMEOUT_SECS),
    )
    .map_err(LocalnetError::Registration)?;

    let mut localnet = Localnet {
        validator: Some(validator),
        bank_forks,
        info: LocalnetInfo {
            rpc_url: String::new(),
            websocket_url: String::new(),
            program_id: PROGRAM_ID,
            mint: Pubkey::default(),
            token_program: Pubkey::default(),
            market: market_pda(),
            vault: vault_pda(),
            faucet: faucet.pubkey(),
            faucet_keypair: faucet_path,
            ledger,
            slot_ms,
            epoch_slots: 0,
        },
        faucet,
        registration,
        catch_up,
        faucet_service: Some(faucet_service),
        started_in: Duration::ZERO,
        _temp: temp,
    };
    let validator = localnet.validator.as_ref().expect("just set");
    localnet.info.rpc_url = validator.rpc_url();
    localnet.info.websocket_url = validator.rpc_pubsub_url();
    let rpc = localnet.rpc_client();
    let market = match fetch_market(&rpc)? {
        Some(market) => market,
        None => {
            let epoch_slots = config.epoch_slots.unwrap_or(defaults::EPOCH_SLOTS);
            // Programs in genesis (SPL Token) are usable from slot 1 on;
            // preflight simulates at `confirmed`.
            wait_for_confirmed_slot(&rpc, 2, Duration::from_secs(30))?;
            init_market(&rpc, &localnet.faucet, local_market_params(epoch_slots))?;
            fetch_market(&rpc)?.ok_or(LocalnetError::Market(market_pda()))?
        }
    };
    if let Some(requested) = config
        .epoch_slots
        .filter(|e| *e != market.params.epoch_slots)
    {
        return Err(LocalnetError::Fixed {
            what: "market epoch length (slots)",
            ledger: market.params.epoch_slots,
            requested,
        });
    }
    localnet.info.mint = market.mint;
    localnet.info.token_program = market.token_program;
    localnet.info.vault = market.vault;
    localnet.info.epoch_slots = market.params.epoch_slots;
    localnet.info.write()?;
    localnet.started_in = started.elapsed();
    Ok(localnet)
}

/// Creates `ledger` if needed; with `reset`, empties it first, but only if it
/// is a ledger (or empty), never an unrelated directory. [`LOG_FILE`] is kept:
/// the command line has it open already.
fn prepare_ledger_dir(ledger: &Path, reset: bool) -> Result<(), LocalnetError> {
    let is_ours = |dir: &Path| dir.join(FAUCET_FILE).exists() || dir.join("genesis.bin").exists();
    if ledger.exists() {
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(ledger).map_err(|e| io(ledger, e))? {
            let entry = entry.map_err(|e| io(ledger, e))?;
            if entry.file_name() != LOG_FILE {
                entries.push(entry.path());
            }
        }
        if !entries.is_empty() && !is_ours(ledger) {
            return Err(LocalnetError::NotALocalnetLedger(ledger.to_path_buf()));
        }
        // A ledger whose creation was interrupted (no vote keypair yet) is redone.
        let incomplete = !entries.is_empty() && !TestValidatorGenesis::ledger_exists(ledger);
        if reset || incomplete {
            for path in entries {
                let removed = if path.is_dir() {
                    std::fs::remove_dir_all(&path)
                } else {
                    std::fs::remove_file(&path)
                };
                removed.map_err(|e| io(&path, e))?;
            }
        }
    }
    std::fs::create_dir_all(ledger).map_err(|e| io(ledger, e))?;
    // A stale file from the previous run must not be mistaken for this one's.
    let info = ledger.join(INFO_FILE);
    if info.exists() {
        std::fs::remove_file(&info).map_err(|e| io(&info, e))?;
    }
    Ok(())
}

fn fetch_market(rpc: &RpcClient) -> Result<Option<Market>, LocalnetError> {
    let account = rpc
        .get_account_with_commitment(&market_pda(), CommitmentConfig::confirmed())
        .map_err(|e| LocalnetError::Init(e.to_string()))?
        .value;
    match account {
        None => Ok(None),
        Some(account) => Market::try_deserialize(&mut account.data.as_slice())
            .map(Some)
            .map_err(|_| LocalnetError::Market(market_pda())),
    }
}

fn wait_for_confirmed_slot(
    rpc: &RpcClient,
    slot: u64,
    timeout: Duration,
) -> Result<(), LocalnetError> {
    let deadline = Instant::now() + timeout;
    loop {
        match rpc.get_slot_with_commitment(CommitmentConfig::confirmed()) {
            Ok(confirmed) if confirmed >= slot => return Ok(()),
            _ if Instant::now() > deadline => {
                return Err(LocalnetError::Init(format!(
                    "slot {slot} was not confirmed within {timeout:?}"
                )))
            }
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

/// One transaction: a new SPL Token mint (authority: the faucet) and the market.
fn init_market(
    rpc: &RpcClient,
    faucet: &Keypair,
    params: MarketParams,
) -> Result<(), LocalnetError> {
    let err = |e: &dyn fmt::Display| LocalnetError::Init(e.to_string());
    let mint = Keypair::new();
    let token_program = anchor_spl::token::ID;
    let rent = rpc
        .get_minimum_balance_for_rent_exemption(token::MINT_LEN)
        .map_err(|e| err(&e))?;
    let mut ixs = token::create_mint_ixs(
        &token_program,
        &faucet.pubkey(),
        &mint.pubkey(),
        &faucet.pubkey(),
        defaults::DECIMALS,
        rent,
    )
    .map_err(|e| err(&e))?
    .to_vec();
    let market = MarketIx {
        mint: mint.pubkey(),
        token_program,
    };
    ixs.push(market.init_market_ix(&faucet.pubkey(), mint.pubkey(), params));
    // The opened-epoch bits of the first 8,192 epochs (nodes create later pages).
    ixs.push(market.open_epoch_log_ix(&faucet.pubkey(), 0));
    let blockhash = rpc.get_latest_blockhash().map_err(|e| err(&e))?;
    let tx = Transaction::new_signed_with_payer(
        &ixs,
        Some(&faucet.pubkey()),
        &[faucet, &mint],
        blockhash,
    );
    rpc.send_and_confirm_transaction(&tx).map_err(|e| err(&e))?;
    Ok(())
}

/// Serves `requestAirdrop` from the faucet keypair on a free local port.
fn start_faucet(faucet: Keypair) -> Result<(tokio::runtime::Runtime, SocketAddr), LocalnetError> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("cairnFaucet")
        .enable_all()
        .build()
        .map_err(|e| LocalnetError::Validator(format!("faucet runtime: {e}")))?;
    let (sender, receiver) = crossbeam_channel::bounded(1);
    let service = Arc::new(std::sync::Mutex::new(solana_faucet::faucet::Faucet::new(
        faucet, None, None, None,
    )));
    runtime.spawn(solana_faucet::faucet::run_faucet(
        service,
        SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
        Some(sender),
    ));
    let addr = receiver
        .recv_timeout(Duration::from_secs(10))
        .map_err(|e| LocalnetError::Validator(format!("faucet did not start: {e}")))?
        .map_err(|e| LocalnetError::Validator(format!("faucet: {e}")))?;
    Ok((runtime, addr))
}

/// A range of `width` local ports, free for UDP and TCP right now, for the
/// validator's sockets. Ranges handed out by this process are not reused, so
/// several local networks can start side by side.
fn free_port_range(width: u16, avoid: Option<u16>) -> Result<(u16, u16), LocalnetError> {
    static HANDED_OUT: Mutex<Vec<u16>> = Mutex::new(Vec::new());
    const LOW: u16 = 10_000;
    const HIGH: u16 = 30_000; // below Linux's ephemeral ports
    let mut handed_out = HANDED_OUT.lock().expect("port lock");
    for _ in 0..500 {
        let start = rand::random_range(LOW..HIGH - width);
        let range = start..start + width;
        if handed_out.iter().any(|s| s.abs_diff(start) < width)
            || avoid.is_some_and(|p| range.contains(&p) || range.contains(&(p + 1)))
        {
            continue;
        }
        let free = range.clone().all(|port| {
            UdpSocket::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
                && TcpListener::bind((Ipv4Addr::LOCALHOST, port)).is_ok()
        });
        if free {
            handed_out.push(start);
            return Ok((range.start, range.end));
        }
    }
    Err(LocalnetError::Validator(format!(
        "no {width} consecutive free local ports between {LOW} and {HIGH}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_rejects_bad_slot_duration_epoch_and_port() {
        let ok = LocalnetConfig::default();
        ok.validate().unwrap();
        for bad in [
            LocalnetConfig {
                slot_ms: Some(0),
                ..ok.clone()
            },
            LocalnetConfig {
                slot_ms: Some(150),
                ..ok.clone()
            },
            LocalnetConfig {
                slot_ms: Some(400),
                ..ok.clone()
            },
            LocalnetConfig {
                epoch_slots: Some(0),
                ..ok.clone()
            },
            LocalnetConfig {
                rpc_port: Some(u16::MAX),
                ..ok.clone()
            },
        ] {
            assert!(
                matches!(bad.validate(), Err(LocalnetError::Config(_))),
                "{bad:?}"
            );
        }
        for ms in [300, 375, 450, 600] {
            LocalnetConfig {
                slot_ms: Some(ms),
                ..ok.clone()
            }
            .validate()
            .unwrap();
        }
        // The default is agave's genesis default: 64 ticks.
        assert_eq!(tick() * 64, Duration::from_millis(defaults::SLOT_MS));
        assert_eq!(slot_step_ms(), 75);
    }

    #[test]
    fn local_params_are_valid_market_params() {
        for epoch_slots in [storage_market::constants::MIN_EPOCH_SLOTS, 5, 50, 432_000] {
            let params = local_market_params(epoch_slots);
            assert!(params.validate().is_ok(), "{params:?}");
            assert_eq!(params.response_slots, epoch_slots);
        }
    }

    #[test]
    fn info_round_trips_through_json() {
        let info = LocalnetInfo {
            rpc_url: "http://127.0.0.1:8899".into(),
            websocket_url: "ws://127.0.0.1:8900/".into(),
            program_id: PROGRAM_ID,
            mint: Pubkey::new_unique(),
            token_program: anchor_spl::token::ID,
            market: market_pda(),
            vault: vault_pda(),
            faucet: Pubkey::new_unique(),
            faucet_keypair: "/tmp/l/faucet.json".into(),
            ledger: "/tmp/l".into(),
            slot_ms: 100,
            epoch_slots: 50,
        };
        let json = serde_json::to_string(&info).unwrap();
        assert!(json.contains(&PROGRAM_ID.to_string()));
        assert_eq!(serde_json::from_str::<LocalnetInfo>(&json).unwrap(), info);
    }

    #[test]
    fn ranges_handed_out_do_not_overlap() {
        let a = free_port_range(PORT_RANGE_WIDTH, None).unwrap();
        let b = free_port_range(PORT_RANGE_WIDTH, None).unwrap();
        assert!(a.1 <= b.0 || b.1 <= a.0, "{a:?} {b:?}");
        assert_eq!(a.1 - a.0, PORT_RANGE_WIDTH);
    }

    #[test]
    fn reset_empties_a_ledger_but_keeps_the_log() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(LOG_FILE), "log").unwrap();
        prepare_ledger_dir(dir.path(), false).unwrap();
        std::fs::write(dir.path().join(FAUCET_FILE), "[]").unwrap();
        std::fs::create_dir(dir.path().join("rocksdb")).unwrap();
        prepare_ledger_dir(dir.path(), true).unwrap();
        let left: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(left, [LOG_FILE]);
    }

    #[test]
    fn an_unrelated_directory_is_never_reset() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("precious.txt"), "keep").unwrap();
        assert!(matches!(
            prepare_ledger_dir(dir.path(), true),
            Err(LocalnetError::NotALocalnetLedger(_))
        ));
        assert!(dir.path().join("precious.txt").exists());
    }
}
