//! Fixtures shared by the CLI's tests: a local validator with the shared test
//! client (`cairn_tests::rpc::TestChain`), funded keypair files, and running
//! the `cairn` binary.
#![allow(dead_code)]
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use anchor_lang::prelude::Pubkey;
use cairn_chain::token;
use cairn_localnet::{Localnet, LocalnetConfig};
use cairn_tests::rpc::{TestChain, SOL};
use serde_json::Value;
use solana_keypair::Keypair;
use solana_signer::Signer;

/// The localnet mint has 6 decimals: one token is 10^6 base units.
pub const TOKEN: u64 = 1_000_000;
/// Slots per market epoch of the fixture's chain.
pub const EPOCH_SLOTS: u64 = 20;
/// Milliseconds per slot of the fixture's chain.
pub const SLOT_MS: u64 = 300;

pub struct Fixture {
    pub localnet: Localnet,
    pub chain: TestChain,
    pub dir: tempfile::TempDir,
}

impl std::ops::Deref for Fixture {
    type Target = TestChain;
    fn deref(&self) -> &TestChain {
        &self.chain
    }
}

impl Fixture {
    pub fn start() -> Fixture {
        let localnet = Localnet::start(LocalnetConfig {
            slot_ms: Some(SLOT_MS),
            epoch_slots: Some(EPOCH_SLOTS),
            ..LocalnetConfig::default()
        })
        .expect("localnet starts");
        let info = localnet.info();
        let chain = TestChain::connect(&info.rpc_url, &info.faucet_keypair, info.market_ix());
        Fixture {
            localnet,
            chain,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A new keypair file with SOL for fees and `tokens` in its associated
    /// token account.
    pub fn user(&self, name: &str, tokens: u64) -> (Keypair, PathBuf) {
        let k = Keypair::new();
        let path = self.dir.path().join(format!("{name}.json"));
        cairn_cli::context::write_keypair(&path, &k).unwrap();
        self.airdrop(&k.pubkey(), 10 * SOL);
        self.associated_token_account(&k.pubkey(), tokens);
        (k, path)
    }

    /// `owner`'s associated token account of the market's mint.
    pub fn ata(&self, owner: &Pubkey) -> Pubkey {
        token::associated_token_address(owner, &self.ix.mint, &self.ix.token_program)
    }

    /// `cairn --url <localnet> --keypair <keypair>`, for the caller to add
    /// its arguments (and environment) to.
    pub fn command(&self, keypair: &Path) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cairn"));
        command.args([
            "--url",
            self.localnet.rpc_url(),
            "--keypair",
            keypair.to_str().unwrap(),
        ]);
        command
    }

    /// Runs `cairn --url <localnet> --keypair <keypair> args…`.
    pub fn cairn(&self, keypair: &Path, args: &[&str]) -> Output {
        self.command(keypair)
            .args(args)
            .output()
            .expect("run cairn")
    }

    /// `cairn … --json`, which must succeed; its JSON result.
    pub fn json(&self, keypair: &Path, args: &[&str]) -> Value {
        let out = self.cairn(keypair, &[args, &["--json"]].concat());
        assert!(
            out.status.success(),
            "cairn {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON result")
    }
}

/// Polls `f` for up to a minute.
pub fn wait<T>(what: &str, f: impl FnMut() -> Option<T>) -> T {
    cairn_tests::rpc::poll(what, Duration::from_secs(60), f)
}

/// Asserts a failed run: exit `code`, exactly one line on stderr, containing
/// `needle`.
pub fn assert_fails(out: &Output, code: i32, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line expected: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
}

/// The pubkey of a keypair file.
pub fn pubkey_of(path: &Path) -> Pubkey {
    cairn_cli::context::read_keypair(path).unwrap().pubkey()
}

/// Opens `epoch` once its seed slot has a hash (nothing else opens epochs on a
/// chain without storage nodes).
pub fn open_epoch(f: &Fixture, epoch: u64) {
    use cairn_cli::error::CliError;
    use storage_market::errors::MarketError;
    f.wait_for_slot(
        epoch * EPOCH_SLOTS + storage_market::constants::SEED_SLOT_OFFSET + 1,
        SLOT_MS,
    );
    wait(&format!("epoch {epoch} opened"), || {
        match f.try_send(&[f.ix.open_epoch_ix(&f.faucet.pubkey(), epoch)], &[]) {
            Ok(_) => Some(()),
            Err(e) => match CliError::from_send("", "open_epoch", e) {
                CliError::Program {
                    error: MarketError::SeedSlotNotReached,
                    ..
                } => None,
                other => panic!("open_epoch {epoch}: {other}"),
            },
        }
    });
}

/// The current epoch (processed slot).
pub fn epoch_now(f: &Fixture) -> u64 {
    f.slot() / EPOCH_SLOTS
}

pub fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Registers provider `i` (1 GiB at 0.0001 a MiB-epoch, stake 5) and starts
/// its storage node (real QUIC, RocksDB and files) in `rt`; returns the
/// provider account and the node.
pub fn start_node(
    f: &Fixture,
    rt: &tokio::runtime::Runtime,
    i: usize,
) -> (Pubkey, cairn_storage_node::node::RunningNode) {
    let info = f.localnet.info().clone();
    let (authority, key) = f.user(&format!("provider-{i}"), 10 * TOKEN);
    let port = free_udp_port();
    f.json(
        &key,
        &[
            "provider",
            "register",
            "--endpoint",
            &format!("127.0.0.1:{port}"),
            "--capacity",
            "1GiB",
            "--price",
            "0.0001",
            "--stake",
            "5",
        ],
    );
    let dir = f.dir.path().join(format!("node-{i}"));
    let config = cairn_storage_node::config::Config {
        data_dir: dir.join("data"),
        listen: format!("127.0.0.1:{port}").parse().unwrap(),
        metrics_listen: String::new(),
        rpc_url: info.rpc_url.clone(),
        provider_authority: authority.pubkey().to_string(),
        operator_keypair: key.clone(),
        price_per_mib_epoch: 100,
        ..cairn_storage_node::config::Config::default()
    };
    let node = rt
        .block_on(cairn_storage_node::node::start(config))
        .expect("node starts");
    (cairn_chain::provider_pda(&authority.pubkey()), node)
}
