//! The indexer binary against the local network: it ingests while a deal is
//! proposed, proved and faulted; it is SIGKILLed mid-ingest and restarted; at
//! the end its numbers equal the chain's accounts and a fresh indexer's.
use cairn_chain::{challenge_pda, deal_pda, provider_pda, Instruction, Pubkey};
use cairn_localnet::{Localnet, LocalnetConfig, LocalnetInfo};
use cairn_tests::rpc::{one_validator_at_a_time, poll, TestChain, SOL};
use cairn_tests::TestShard;
use serde_json::Value;
use solana_commitment_config::CommitmentConfig;
use solana_keypair::Keypair;
use solana_rpc_client::rpc_client::GetConfirmedSignaturesForAddress2Config;
use solana_signer::Signer;
use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};
use storage_market::{
    instructions::{ProposeDealArgs, RegisterProviderArgs},
    state::{Challenge, Deal, DealState, Provider},
};

const SLOT_MS: u64 = 300;
/// 6 s epochs: a loaded CI machine reports a fault inside the epoch it meant.
const EPOCH_SLOTS: u64 = 20;

/// The shared test client plus what this test needs: transfers from the
/// faucet and the program's newest signature.
struct Client {
    chain: TestChain,
    info: LocalnetInfo,
}

impl std::ops::Deref for Client {
    type Target = TestChain;
    fn deref(&self) -> &TestChain {
        &self.chain
    }
}

impl Client {
    fn fund(&self, to: &Pubkey) -> Instruction {
        solana_system_interface::instruction::transfer(&self.faucet.pubkey(), to, SOL)
    }

    fn wait_for_slot(&self, slot: u64) {
        self.chain.wait_for_slot(slot, SLOT_MS);
    }

    /// The newest signature of the program (confirmed).
    fn newest_signature(&self) -> String {
        let config = GetConfirmedSignaturesForAddress2Config {
            limit: Some(1),
            commitment: Some(CommitmentConfig::confirmed()),
            ..Default::default()
        };
        self.rpc
            .get_signatures_for_address_with_config(&self.info.program_id, config)
            .expect("getSignaturesForAddress")[0]
            .signature
            .clone()
    }
}

/// `GET path` from the indexer on `port` (`None` while it is not answering).
fn http_get(port: u16, path: &str) -> Option<(u16, Value)> {
    cairn_indexer::client::get_json(([127, 0, 0, 1], port).into(), path).ok()
}

fn api(port: u16, path: &str) -> Value {
    let (status, body) = poll(&format!("GET {path}"), Duration::from_secs(60), || {
        http_get(port, path)
    });
    assert_eq!(status, 200, "{path}: {body}");
    body
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Indexer {
    child: Child,
    port: u16,
}

impl Indexer {
    fn spawn(info: &LocalnetInfo, db: &Path, extra: &[&str]) -> Indexer {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_cairn-indexer"))
            .args([
                "--url",
                &info.rpc_url,
                "--program-id",
                &info.program_id.to_string(),
            ])
            .args([
                "--db",
                db.to_str().unwrap(),
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .args(["--poll-ms", "100", "--reconcile-secs", "2"])
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn cairn-indexer");
        let indexer = Indexer { child, port };
        poll("the indexer's API", Duration::from_secs(60), || {
            http_get(port, "/health")
        });
        indexer
    }

    fn stats(&self) -> Value {
        api(self.port, "/v1/stats")
    }

    fn sigkill(mut self) {
        // SAFETY: signalling our own child by its pid.
        let rc = unsafe { libc::kill(self.child.id() as i32, libc::SIGKILL) };
        assert_eq!(rc, 0);
        self.child.wait().expect("reaped");
    }

    /// Waits until the cursor is at `signature` and `n` more reconciliations ran.
    fn caught_up(&self, signature: &str) {
        poll(
            "the indexer to reach the newest transaction",
            Duration::from_secs(180),
            || {
                let health = http_get(self.port, "/health")?.1;
                (health["cursor"]["signature"] == signature).then_some(())
            },
        );
        let reconciled = || -> u64 {
            let res = cairn_indexer::client::get(([127, 0, 0, 1], self.port).into(), "/metrics")
                .ok()
                .and_then(|(_, body)| {
                    String::from_utf8_lossy(&body)
                        .lines()
                        .find_map(|l| l.strip_prefix("cairn_indexer_reconciliations_total "))
                        .and_then(|v| v.trim().parse().ok())
                });
            res.unwrap_or(0)
        };
        let start = reconciled();
        poll("two reconciliations", Duration::from_secs(120), || {
            (reconciled() >= start + 2).then_some(())
        });
    }

    /// Everything the API lists, without the per-process `synced_slot`.
    fn everything(&self) -> Value {
        let mut out = serde_json::Map::new();
        for list in ["/v1/providers", "/v1/deals", "/v1/epochs"] {
            let mut items = Vec::new();
            let mut cursor = String::new();
            loop {
                let page = api(self.port, &format!("{list}?limit=2{cursor}"));
                items.extend(
                    page["items"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .cloned()
                        .map(|mut v| {
                            v.as_object_mut().unwrap().remove("synced_slot");
                            v
                        }),
                );
                match page["next_cursor"].as_str() {
                    Some(c) => cursor = format!("&cursor={c}"),
                    None => break,
                }
            }
            out.insert(list.into(), Value::Array(items));
        }
        let mut stats = self.stats();
        stats.as_object_mut().unwrap().remove("last_slot");
        out.insert("stats".into(), stats);
        Value::Object(out)
    }
}

impl Drop for Indexer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn ingests_a_deal_live_survives_sigkill_and_matches_the_chain_and_a_fresh_indexer() {
    let _serial = one_validator_at_a_time();
    let localnet = Localnet::start(LocalnetConfig {
        slot_ms: Some(SLOT_MS),
        epoch_slots: Some(EPOCH_SLOTS),
        ..LocalnetConfig::default()
    })
    .expect("localnet starts");
    let info = localnet.info().clone();
    let c = Client {
        chain: TestChain::connect(&info.rpc_url, &info.faucet_keypair, info.market_ix()),
        info: info.clone(),
    };
    let ix = info.market_ix();

    // History first: twelve providers, one transaction each.
    let register = |authority: &Keypair, operator: &Pubkey, n: usize| {
        c.send(
            &[
                c.fund(&authority.pubkey()),
                ix.register_provider_ix(
                    &authority.pubkey(),
                    RegisterProviderArgs {
                        operator: *operator,
                        endpoint: format!("127.0.0.1:{}", 7000 + n),
                        capacity_bytes: 1 << 30,
                        price_per_mib_epoch: 100,
                    },
                ),
            ],
            &[authority],
        )
    };
    for n in 0..12 {
        register(&Keypair::new(), &Keypair::new().pubkey(), n);
    }

    // The indexer starts, throttled to 4 requests/s and writing each
    // transaction on its own (not 64 to a batch), so it is still ingesting
    // when it is killed.
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let first = Indexer::spawn(&info, &db, &["--max-rps", "4", "--batch", "1"]);
    let at_kill = poll(
        "the first transactions indexed",
        Duration::from_secs(120),
        || {
            let stats = first.stats();
            (stats["transactions"].as_u64()? >= 3).then_some(stats)
        },
    );
    first.sigkill();
    let indexed_at_kill = at_kill["transactions"].as_u64().unwrap();
    assert!(indexed_at_kill < 13, "killed mid-ingest: {at_kill}");

    // Restarted on the same store, it ingests while a deal is proposed,
    // accepted, proved and faulted.
    let indexer = Indexer::spawn(&info, &db, &[]);
    let authority = Keypair::new();
    let operator = Keypair::new();
    let client = Keypair::new();
    let reporter = Keypair::new();
    c.send(
        &[
            c.fund(&operator.pubkey()),
            c.fund(&client.pubkey()),
            c.fund(&reporter.pubkey()),
        ],
        &[],
    );
    register(&authority, &operator.pubkey(), 99);
    let stake = 1_000_000;
    let authority_token = c.token_account(&authority.pubkey(), stake);
    let client_token = c.token_account(&client.pubkey(), 10_000_000);
    let reporter_token = c.token_account(&reporter.pubkey(), 0);
    let provider = provider_pda(&authority.pubkey());
    c.send(
        &[ix.deposit_stake_ix(&authority.pubkey(), &authority_token, stake)],
        &[&authority],
    );

    let dataset_id = [7u8; 32];
    let shards: Vec<TestShard> = (0..2).map(|i| TestShard::random(100_000, i)).collect();
    let deals: Vec<Pubkey> = (0..2u16)
        .map(|i| deal_pda(&client.pubkey(), &dataset_id, i))
        .collect();
    for (i, shard) in shards.iter().enumerate() {
        let args = ProposeDealArgs {
            dataset_id,
            shard_index: i as u16,
            k: 1,
            n: 2,
            shard_root: shard.root(),
            shard_bytes: shard.data.len() as u64,
            duration_epochs: 4,
            max_price_per_epoch: u64::MAX,
        };
        c.send(
            &[ix.propose_deal_ix(&client.pubkey(), &provider, &client_token, args)],
            &[&client],
        );
    }
    // Both accepted in one transaction, so they start in the same epoch
    // however slowly the machine confirms transactions.
    let accepts: Vec<_> = deals
        .iter()
        .map(|deal| ix.accept_deal_ix(&operator.pubkey(), &provider, deal))
        .collect();
    c.send(&accepts, &[&operator]);
    let start = c.fetch::<Deal>(&deals[0]).start_epoch;
    assert_eq!(c.fetch::<Deal>(&deals[1]).start_epoch, start);
    // Epoch `start`: both deals proved. Epoch `start + 1`: only deal 0.
    for (epoch, proving) in [(start, &deals[..]), (start + 1, &deals[..1])] {
        c.wait_for_slot(epoch * EPOCH_SLOTS + 1);
        c.send(&[ix.open_epoch_ix(&c.faucet.pubkey(), epoch)], &[]);
        let challenge: Challenge = c.fetch(&challenge_pda(epoch));
        for deal in proving {
            let i = deals.iter().position(|d| d == deal).unwrap();
            let proof = shards[i].proof(deal, &challenge);
            c.send(
                &[ix.submit_proof_ix(&operator.pubkey(), &provider, deal, epoch, proof)],
                &[&operator],
            );
        }
    }
    // Deal 1 missed `start + 1`: reported once its proof window closed.
    let grace = (EPOCH_SLOTS / 5).max(1);
    c.wait_for_slot((start + 2) * EPOCH_SLOTS + grace);
    c.send(
        &[ix.report_faults_ix(&reporter.pubkey(), &provider, &deals[1], &reporter_token)],
        &[&reporter],
    );

    let newest = c.newest_signature();
    indexer.caught_up(&newest);

    // The API's numbers are the chain's.
    let chain_provider: Provider = c.fetch(&provider);
    let p = api(indexer.port, &format!("/v1/providers/{provider}"));
    for field in [
        "proofs",
        "faults",
        "slashed",
        "active_deals",
        "used_bytes",
        "stake_free",
        "stake_locked",
        "earnings",
    ] {
        let chain = match field {
            "proofs" => chain_provider.proofs,
            "faults" => chain_provider.faults,
            "slashed" => chain_provider.slashed,
            "active_deals" => chain_provider.active_deals,
            "used_bytes" => chain_provider.used_bytes,
            "stake_free" => chain_provider.stake_free,
            "stake_locked" => chain_provider.stake_locked,
            _ => chain_provider.earnings,
        };
        assert_eq!(p[field], chain, "provider {field}: {p}");
    }
    assert_eq!((chain_provider.proofs, chain_provider.faults), (3, 1));
    let mut paid = 0;
    let mut slashed = 0;
    for deal in &deals {
        let chain: Deal = c.fetch(deal);
        assert_eq!(chain.state, DealState::Active);
        let d = api(indexer.port, &format!("/v1/deals/{deal}"));
        assert_eq!(d["state"], "active");
        assert_eq!(d["proven_epochs"], chain.proven_epochs, "{d}");
        assert_eq!(d["total_faults"], chain.total_faults, "{d}");
        assert_eq!(d["escrow"], chain.escrow, "{d}");
        assert_eq!((d["k"].as_u64(), d["n"].as_u64()), (Some(1), Some(2)));
        assert_eq!(
            d["proofs"].as_array().unwrap().len() as u64,
            chain.proven_epochs
        );
        // Event-only sums (never overwritten by reconciliation) agree too:
        // nothing was lost or counted twice across the SIGKILL.
        paid += d["paid"].as_u64().unwrap();
        slashed += d["slashed"].as_u64().unwrap();
    }
    assert_eq!(paid, chain_provider.earnings);
    assert_eq!(slashed, chain_provider.slashed);
    let stats = indexer.stats();
    assert_eq!(stats["providers"], 13);
    assert_eq!(stats["active_deals"], 2);
    assert_eq!(stats["stored_bytes"], 200_000);
    assert_eq!(stats["proofs"], chain_provider.proofs);
    assert_eq!(stats["faults"], chain_provider.faults);
    let epoch = api(indexer.port, &format!("/v1/epochs/{}", start + 1));
    assert_eq!(
        (epoch["proofs"].as_u64(), epoch["faults"].as_u64()),
        (Some(1), Some(1))
    );
    let dataset = api(
        indexer.port,
        &format!("/v1/datasets/{}", hex::encode(dataset_id)),
    );
    assert_eq!(
        (
            dataset["shards"].as_u64(),
            dataset["active_shards"].as_u64()
        ),
        (Some(2), Some(2))
    );

    // A fresh indexer over the same chain ends identical.
    let fresh_db = dir.path().join("fresh");
    let fresh = Indexer::spawn(&info, &fresh_db, &[]);
    fresh.caught_up(&newest);
    indexer.caught_up(&newest);
    assert_eq!(indexer.everything(), fresh.everything());
    eprintln!(
        "killed after {indexed_at_kill} transactions; final {}",
        indexer.stats()
    );
}
