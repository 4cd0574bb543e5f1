//! The `cairn` binary against a real local validator (cairn-localnet): market
//! and provider commands, `status`/`ls` over a real deal, and every error a
//! user can hit printing one line with the right exit code.
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
use storage_market::instructions::ProposeDealArgs;

const SOL: u64 = 1_000_000_000;
/// The localnet mint has 6 decimals: one token is 10^6 base units.
const TOKEN: u64 = 1_000_000;

struct Fixture {
    localnet: Localnet,
    rpc: RpcClient,
    dir: tempfile::TempDir,
}

impl Fixture {
    fn start() -> Fixture {
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
    fn user(&self, name: &str, tokens: u64) -> (Keypair, PathBuf) {
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

    fn ata(&self, owner: &Pubkey) -> Pubkey {
        let info = self.localnet.info();
        token::associated_token_address(owner, &info.mint, &info.token_program)
    }

    fn balance(&self, account: &Pubkey) -> u64 {
        token::token_account_amount(&self.rpc.get_account_data(account).unwrap()).unwrap()
    }

    fn send(&self, ixs: &[anchor_lang::solana_program::instruction::Instruction], signers: &[&Keypair]) {
        let blockhash = self.rpc.get_latest_blockhash().unwrap();
        let tx = Transaction::new_signed_with_payer(ixs, Some(&signers[0].pubkey()), signers, blockhash);
        self.rpc.send_and_confirm_transaction(&tx).expect("transaction");
    }

    /// Runs `cairn --url <localnet> --keypair <keypair> args…`.
    fn cairn(&self, keypair: &Path, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_cairn"))
            .args(["--url", self.localnet.rpc_url(), "--keypair", keypair.to_str().unwrap()])
            .args(args)
            .output()
            .expect("run cairn")
    }

    /// `cairn … --json`, which must succeed; its JSON result.
    fn json(&self, keypair: &Path, args: &[&str]) -> Value {
        let out = self.cairn(keypair, &[args, &["--json"]].concat());
        assert!(
            out.status.success(),
            "cairn {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("JSON result")
    }
}

fn wait<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
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
fn assert_fails(out: &Output, code: i32, needle: &str) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line expected: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains(needle), "{needle:?} not in: {stderr}");
}

#[test]
fn provider_and_market_commands_and_dataset_status_against_a_local_validator() {
    let f = Fixture::start();
    let (authority, key) = f.user("provider", 10 * TOKEN);

    // market info reads the market the localnet created.
    let market = f.json(&key, &["market", "info"]);
    assert_eq!(market["mint"], f.localnet.info().mint.to_string());
    assert_eq!(market["epoch_slots"], 20);
    assert_eq!(market["decimals"], 6);

    // register with stake in one transaction; info shows exactly that.
    f.json(
        &key,
        &["provider", "register", "--endpoint", "127.0.0.1:7000", "--capacity", "1GiB", "--price", "0.0001", "--stake", "2.5"],
    );
    let info = f.json(&key, &["provider", "info"]);
    assert_eq!(info["stake_free"], 2_500_000);
    assert_eq!(info["capacity_bytes"], 1u64 << 30);
    assert_eq!(info["price_per_mib_epoch"], 100);
    assert_eq!(info["operator"], authority.pubkey().to_string());
    assert_eq!(f.balance(&f.ata(&authority.pubkey())), 10 * TOKEN - 2_500_000);

    // stake more, withdraw some, update the price.
    f.json(&key, &["provider", "stake", "0.5"]);
    f.json(&key, &["provider", "withdraw", "--stake", "1"]);
    f.json(&key, &["provider", "update", "--price", "0.0002", "--endpoint", "127.0.0.1:7001"]);
    let info = f.json(&key, &["provider", "info"]);
    assert_eq!(info["stake_free"], 2_000_000);
    assert_eq!(info["price_per_mib_epoch"], 200);
    assert_eq!(info["endpoint"], "127.0.0.1:7001");
    assert_eq!(f.balance(&f.ata(&authority.pubkey())), 8 * TOKEN);

    // Refusals a provider can hit: one line, exit 1 (expected) or 2 (error).
    assert_fails(&f.cairn(&key, &["provider", "withdraw", "--stake", "100"]), 1, "insufficient free stake");
    assert_fails(&f.cairn(&key, &["provider", "stake", "1000"]), 1, "insufficient funds");
    assert_fails(&f.cairn(&key, &["provider", "stake", "0.0000001"]), 2, "7 decimals");
    assert_fails(&f.cairn(&key, &["provider", "withdraw", "--earnings"]), 1, "earnings available: 0");
    assert_fails(
        &f.cairn(&key, &["provider", "register", "--endpoint", "nowhere", "--capacity", "1GiB", "--price", "1"]),
        2,
        "--endpoint",
    );
    assert_fails(&f.cairn(&key, &["provider", "update"]), 2, "nothing to change");

    // A client proposes a 3-shard deal set directly; status and ls show it.
    let (client, client_key) = f.user("client", 10 * TOKEN);
    let dataset_id = [7u8; 32];
    let provider = cairn_chain::provider_pda(&authority.pubkey());
    let ix = f.localnet.market_ix();
    for shard_index in 0..3u16 {
        let args = ProposeDealArgs {
            dataset_id,
            shard_index,
            k: 2,
            n: 3,
            shard_root: cairn_proof::root_of(&[shard_index as u8; 4096]),
            shard_bytes: 4096,
            duration_epochs: 4,
            max_price_per_epoch: u64::MAX,
        };
        f.send(&[ix.propose_deal_ix(&client.pubkey(), &provider, &f.ata(&client.pubkey()), args)], &[&client]);
    }
    let id = cairn_core::DatasetId(dataset_id).to_string();
    let status = f.json(&client_key, &["status", &id]);
    assert_eq!(status["dataset_id"], id);
    assert_eq!((status["k"].as_u64(), status["n"].as_u64()), (Some(2), Some(3)));
    let shards = status["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 3);
    assert!(shards.iter().all(|s| s["state"] == "proposed" && s["proving"] == false));
    assert_eq!(status["health"], "at risk");
    // Escrow: 4 epochs at the provider's price for a shard under 1 MiB.
    assert_eq!(status["escrow_left"], 3 * 4 * 200);
    let text = String::from_utf8(f.cairn(&client_key, &["status", &id]).stdout).unwrap();
    assert!(text.contains("at risk: 0 of 3 shards proving (2 needed to rebuild)"), "{text}");

    // The provider accepts two shards: they are active and proving.
    for shard_index in 0..2u16 {
        let deal = cairn_chain::deal_pda(&client.pubkey(), &dataset_id, shard_index);
        f.send(&[ix.accept_deal_ix(&authority.pubkey(), &provider, &deal)], &[&authority]);
    }
    let status = f.json(&client_key, &["status", &id]);
    assert_eq!(status["proving"], 2);
    assert_eq!(status["health"], "degraded");
    let listing = f.json(&client_key, &["ls"]);
    assert_eq!(listing["datasets"].as_array().unwrap().len(), 1);
    assert_eq!(listing["datasets"][0]["dataset_id"], id);
    let info = f.json(&key, &["provider", "info"]);
    assert_eq!((info["deals"]["active"].as_u64(), info["deals"]["proposed"].as_u64()), (Some(2), Some(1)));

    // Errors any user can hit.
    let unknown = "ab".repeat(32);
    assert_fails(&f.cairn(&client_key, &["status", &unknown]), 1, "unknown dataset");
    assert_fails(&f.cairn(&client_key, &["status", "xyz"]), 2, "64 hex characters");
    let bad = f.dir.path().join("bad.json");
    std::fs::write(&bad, "not a keypair").unwrap();
    assert_fails(&f.cairn(&bad, &["ls"]), 2, "not a JSON array of bytes");
    assert_fails(&f.cairn(&f.dir.path().join("missing.json"), &["ls"]), 2, "missing.json");
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args(["--url", "http://127.0.0.1:9", "--keypair", key.to_str().unwrap(), "market", "info"])
        .output()
        .unwrap();
    assert_fails(&out, 2, "cannot reach the RPC endpoint http://127.0.0.1:9");
    let broke = f.dir.path().join("broke.json");
    std::fs::write(&broke, serde_json::to_string(&Keypair::new().to_bytes().to_vec()).unwrap()).unwrap();
    assert_fails(
        &f.cairn(&broke, &["provider", "register", "--endpoint", "h:1", "--capacity", "1GiB", "--price", "1"]),
        1,
        "no SOL for the fee",
    );
    assert_fails(
        &f.cairn(&key, &["--program-id", &Pubkey::new_unique().to_string(), "market", "info"]),
        2,
        "--program-id",
    );
    assert_fails(&f.cairn(&key, &["provider", "deregister"]), 1, "2 active deal(s)");
    assert_fails(&f.cairn(&client_key, &["provider", "info"]), 1, "register it with `cairn provider register`");
}
