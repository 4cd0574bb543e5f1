//! Fixtures shared by the CLI's tests: a local validator, funded keypair
//! files, and running the `cairn` binary.
#![allow(dead_code)]
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use anchor_lang::prelude::Pubkey;
use cairn_chain::token;
use cairn_localnet::{Localnet, LocalnetConfig};
use serde_json::Value;
use solana_commitment_config::CommitmentConfig;
use solana_keypair::Keypair;
use solana_rpc_client::rpc_client::RpcClient;
use solana_signer::Signer;
use solana_transaction::Transaction;

pub const SOL: u64 = 1_000_000_000;
/// The localnet mint has 6 decimals: one token is 10^6 base units.
pub const TOKEN: u64 = 1_000_000;

pub struct Fixture {
    pub localnet: Localnet,
    pub rpc: RpcClient,
    pub dir: tempfile::TempDir,
}

impl Fixture {
    pub fn start() -> Fixture {
        let localnet = Localnet::start(LocalnetConfig {
            slot_ms: Some(300),
            epoch_slots: Some(20),
            ..LocalnetConfig::default()
        })
        .expect("localnet starts");
        let rpc = RpcClient::new_with_commitment(
            localnet.rpc_url().to_string(),
            CommitmentConfig::confirmed(),
        );
        Fixture {
            localnet,
            rpc,
            dir: tempfile::tempdir().unwrap(),
        }
    }

    /// A new keypair file with SOL for fees and `tokens` in its associated
    /// token account.
    pub fn user(&self, name: &str, tokens: u64) -> (Keypair, PathBuf) {
        let k = Keypair::new();
        let path = self.dir.path().join(format!("{name}.json"));
        std::fs::write(&path, serde_json::to_string(&k.to_bytes().to_vec()).unwrap()).unwrap();
        let sig = self.rpc.request_airdrop(&k.pubkey(), 10 * SOL).expect("airdrop");
        wait("airdrop", || self.rpc.confirm_transaction(&sig).ok().filter(|ok| *ok));
        let info = self.localnet.info();
        let faucet = self.localnet.faucet();
        let ixs = [
            token::create_associated_token_account_ix(&info.token_program, &faucet.pubkey(), &k.pubkey(), &info.mint)
                .unwrap(),
            token::mint_to_ix(
                &info.token_program,
                &info.mint,
                &self.ata(&k.pubkey()),
                &faucet.pubkey(),
                tokens,
            )
            .unwrap(),
        ];
        self.send(&ixs, &[faucet]);
        (k, path)
    }

    pub fn ata(&self, owner: &Pubkey) -> Pubkey {
        let info = self.localnet.info();
        token::associated_token_address(owner, &info.mint, &info.token_program)
    }

    pub fn balance(&self, account: &Pubkey) -> u64 {
        token::token_account_amount(&self.rpc.get_account_data(account).unwrap()).unwrap()
    }

    pub fn send(&self, ixs: &[anchor_lang::solana_program::instruction::Instruction], signers: &[&Keypair]) {
        let blockhash = self.rpc.get_latest_blockhash().unwrap();
        let tx = Transaction::new_signed_with_payer(ixs, Some(&signers[0].pubkey()), signers, blockhash);
        self.rpc.send_and_confirm_transaction(&tx).expect("transaction");
    }

    /// Runs `cairn --url <localnet> --keypair <keypair> args…`.
    pub fn cairn(&self, keypair: &Path, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(["--url", self.localnet.rpc_url(), "--keypair", keypair.to_str().unwrap()])
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

pub fn wait<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
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
