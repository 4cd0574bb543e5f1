//! The indexer binary against the local network: it ingests while deals are
//! proposed and accepted, providers prove (or fail) their epochs in proof
//! sessions, an epoch goes void, a client ends a deal after a failure and repairs
//! the shard on another provider (a new deal, generation 1), a provider is jailed,
//! and deals are settled, finished, removed from their sets and closed. It is
//! SIGKILLed mid-ingest and restarted; at the end its numbers equal the chain's
//! accounts and epoch bits, and a fresh indexer's.
use cairn_chain::{
    challenge_pda, deal_pda, deal_set_page_pda, deal_set_pda, epoch_log_pda, proof_log_pda,
    provider_pda, proving, Instruction, Pubkey,
};
use cairn_localnet::{Localnet, LocalnetConfig, LocalnetInfo};
use cairn_tests::rpc::{one_validator_at_a_time, poll, TestChain, SOL};
use cairn_tests::TestShard;
use serde_json::Value;
use solana_commitment_config::CommitmentConfig;
use solana_keypair::Keypair;
use solana_message::AddressLookupTableAccount;
use solana_rpc_client::rpc_client::GetConfirmedSignaturesForAddress2Config;
use solana_signer::Signer;
use solana_transaction::{versioned::VersionedTransaction, VersionedMessage};
use std::{
    ops::Range,
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};
use storage_market::{
    constants::{log_page, LOG_PAGE_BYTES, SEED_SLOT_OFFSET},
    instructions::{ProposeDealArgs, RegisterProviderArgs},
    state::{get_bit, Challenge, Deal, DealSet, DealState, EpochLog, ProofLog, Provider},
};

const SLOT_MS: u64 = 300;
/// 6 s epochs: room for a loaded machine to open and prove an epoch inside it.
const EPOCH_SLOTS: u64 = 20;

/// The shared test client plus what this test needs: transfers from the
/// faucet, epochs, proof sessions and the program's newest signature.
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

/// A provider of this test: its operator, its account and the address lookup
/// table its proof transactions read.
struct TestProvider {
    operator: Keypair,
    pda: Pubkey,
    table: Option<AddressLookupTableAccount>,
}

impl Client {
    fn fund(&self, to: &Pubkey) -> Instruction {
        solana_system_interface::instruction::transfer(&self.faucet.pubkey(), to, SOL)
    }

    fn wait_for_slot(&self, slot: u64) {
        self.chain.wait_for_slot(slot, SLOT_MS);
    }

    /// Waits until the chain is in `epoch` (or later).
    fn wait_for_epoch(&self, epoch: u64) {
        self.wait_for_slot(epoch * EPOCH_SLOTS);
    }

    fn epoch(&self) -> u64 {
        self.slot() / EPOCH_SLOTS
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

    /// A provider registered with `stake`, its deal set's first page and the
    /// proof-log page of the coming epochs.
    fn provider(&self, n: usize, stake: u64) -> TestProvider {
        let authority = Keypair::new();
        let operator = Keypair::new();
        let pda = provider_pda(&authority.pubkey());
        self.send(
            &[
                self.fund(&authority.pubkey()),
                self.fund(&operator.pubkey()),
                self.ix.register_provider_ix(
                    &authority.pubkey(),
                    RegisterProviderArgs {
                        operator: operator.pubkey(),
                        endpoint: format!("127.0.0.1:{}", 7000 + n),
                        capacity_bytes: 1 << 30,
                        price_per_mib_epoch: 100,
                    },
                ),
            ],
            &[&authority],
        );
        let token = self.token_account(&authority.pubkey(), stake);
        let log = log_page(self.epoch() + 1);
        self.send(
            &[
                self.ix.deposit_stake_ix(&authority.pubkey(), &token, stake),
                self.ix.extend_deal_set_ix(&operator.pubkey(), &pda, 0),
                self.ix.open_proof_log_ix(&operator.pubkey(), &pda, log),
            ],
            &[&authority, &operator],
        );
        TestProvider {
            operator,
            pda,
            table: None,
        }
    }

    /// Creates `p`'s address lookup table for the proof sessions of epochs on the
    /// log page of `epoch`, and waits until it is usable: until the slot that
    /// filled it is rooted, because agave's leader resolves lookup tables in its
    /// root bank and drops a transaction whose table is not there yet (it then
    /// lands about 30 slots late, after the proof window; see
    /// `cairn_chain::proving`).
    fn create_table(&self, p: &mut TestProvider, epoch: u64) {
        let pages = self.fetch::<DealSet>(&deal_set_pda(&p.pda)).pages;
        let addresses = proving::lookup_table_addresses(&p.pda, epoch, pages);
        let recent_slot = self
            .rpc
            .get_slot_with_commitment(CommitmentConfig::finalized())
            .expect("getSlot");
        let (table, ixs) =
            proving::create_lookup_table_ixs(&p.operator.pubkey(), recent_slot, &addresses);
        self.send(&ixs, &[&p.operator]);
        let filled_in = self.slot();
        poll(
            "the lookup table in the root bank",
            Duration::from_secs(120),
            || {
                self.rpc
                    .get_slot_with_commitment(CommitmentConfig::finalized())
                    .ok()
                    .filter(|root| *root > filled_in)
            },
        );
        let data = self.rpc.get_account_data(&table).expect("lookup table");
        assert_eq!(
            proving::lookup_table_contents(&data).as_ref(),
            Some(&addresses)
        );
        p.table = Some(AddressLookupTableAccount {
            key: table,
            addresses,
        });
    }

    /// Opens `epoch` (the faucet pays) as soon as its seed slot has a hash.
    fn open_epoch(&self, epoch: u64) {
        self.wait_for_slot(epoch * EPOCH_SLOTS + SEED_SLOT_OFFSET + 1);
        poll(
            &format!("epoch {epoch} opened"),
            Duration::from_secs(60),
            || {
                self.try_send(&[self.ix.open_epoch_ix(&self.faucet.pubkey(), epoch)], &[])
                    .ok()
            },
        );
        assert_eq!(self.fetch::<Challenge>(&challenge_pda()).epoch, epoch);
    }

    /// `p`'s proof session of `epoch` (opened, the current one), planned from the
    /// challenge and its deal set as of `epoch` exactly as the program walks it,
    /// sent as v0 transactions through its lookup table. `shards` are the shards
    /// it holds.
    ///
    /// (This belongs in the shared test crate next to `TestChain`, for every
    /// RPC-driven test that proves.)
    fn prove(&self, p: &TestProvider, epoch: u64, shards: &[&TestShard]) {
        let challenge: Challenge = self.fetch(&challenge_pda());
        assert_eq!(
            challenge.epoch, epoch,
            "the challenge is of the epoch proven"
        );
        let set: DealSet = self.fetch(&deal_set_pda(&p.pda));
        let pages: Vec<_> = (0..set.pages)
            .map(|page| {
                let data = self
                    .rpc
                    .get_account_data(&deal_set_page_pda(&p.pda, page))
                    .expect("deal-set page");
                proving::decode_deal_set_page(&data).expect("a deal-set page")
            })
            .collect();
        let entries =
            proving::entries_at(set.len_at(epoch), &pages, epoch).expect("every entry's page");
        let plan = proving::plan_session(
            &challenge.seed,
            &p.pda,
            epoch,
            challenge.samples_per_epoch,
            &entries,
        );
        let table = p.table.as_ref().expect("the provider's lookup table");
        for tx in proving::pack_session(&plan) {
            let samples = tx
                .live
                .iter()
                .map(|i| {
                    let draw = &plan[*i];
                    let root = entries[draw.entry as usize].shard_root;
                    let shard = shards
                        .iter()
                        .find(|s| s.root() == root)
                        .expect("a shard the provider holds");
                    shard.sample_at(draw.segment)
                })
                .collect();
            let prove = self
                .ix
                .prove_ix(&p.operator.pubkey(), &p.pda, epoch, samples, &tx.pages);
            let blockhash = self.rpc.get_latest_blockhash().expect("blockhash");
            let message =
                proving::proof_message(&p.operator.pubkey(), prove, 1_000, table, blockhash)
                    .expect("proof message compiles");
            let signed =
                VersionedTransaction::try_new(VersionedMessage::V0(message), &[&p.operator])
                    .expect("operator signs");
            self.rpc
                .send_and_confirm_transaction(&signed)
                .unwrap_or_else(|e| panic!("proof of epoch {epoch}: {e}"));
        }
        assert!(self.proven(&p.pda, epoch), "{} proved {epoch}", p.pda);
    }

    /// `epoch`'s bit in a log page account (absent: unset).
    fn log_bit(&self, page: &Pubkey, bits_offset: usize, epoch: u64) -> bool {
        let Ok(data) = self.rpc.get_account_data(page) else {
            return false;
        };
        let bits: &[u8; LOG_PAGE_BYTES] = data[bits_offset..bits_offset + LOG_PAGE_BYTES]
            .try_into()
            .expect("a whole page of bits");
        get_bit(bits, u64::from(log_page(epoch)), epoch).expect("the epoch is on this page")
    }

    fn opened(&self, epoch: u64) -> bool {
        self.log_bit(
            &epoch_log_pda(log_page(epoch)),
            EpochLog::BITS_OFFSET,
            epoch,
        )
    }

    fn proven(&self, provider: &Pubkey, epoch: u64) -> bool {
        self.log_bit(
            &proof_log_pda(provider, log_page(epoch)),
            ProofLog::BITS_OFFSET,
            epoch,
        )
    }

    /// What each epoch of `epochs` was for `provider` by the chain's bits, for the
    /// epochs it proved or owed a proof in (a deal of it ran: `start <= e <
    /// min(end, jailed_from)`).
    fn outcomes(
        &self,
        provider: &Pubkey,
        deals: &[&Deal],
        jailed_from: u64,
        epochs: Range<u64>,
    ) -> Vec<(u64, &'static str)> {
        epochs
            .filter_map(|e| {
                let owed = deals.iter().any(|d| {
                    d.state != DealState::Proposed
                        && d.start_epoch <= e
                        && e < d.end_epoch.min(jailed_from)
                });
                let outcome = if self.proven(provider, e) {
                    "proven"
                } else if !owed {
                    return None;
                } else if self.opened(e) {
                    "failed"
                } else {
                    "void"
                };
                Some((e, outcome))
            })
            .collect()
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

    fn get(&self, path: &str) -> Value {
        api(self.port, path)
    }

    fn stats(&self) -> Value {
        self.get("/v1/stats")
    }

    fn sigkill(mut self) {
        // SAFETY: signalling our own child by its pid.
        let rc = unsafe { libc::kill(self.child.id() as i32, libc::SIGKILL) };
        assert_eq!(rc, 0);
        self.child.wait().expect("reaped");
    }

    /// Waits until the cursor is at `signature` and two more reconciliations ran.
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

    /// Every page of a listing.
    fn all(&self, list: &str) -> Vec<Value> {
        let sep = if list.contains('?') { '&' } else { '?' };
        let mut items = Vec::new();
        let mut cursor = String::new();
        loop {
            let page = self.get(&format!("{list}{sep}limit=2{cursor}"));
            items.extend(page["items"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = format!("&cursor={c}"),
                None => return items,
            }
        }
    }

    /// A provider's outcomes of `epochs`, oldest first.
    fn outcomes(&self, provider: &Pubkey, epochs: Range<u64>) -> Vec<(u64, String)> {
        let mut out: Vec<(u64, String)> = self
            .all(&format!("/v1/providers/{provider}/epochs"))
            .iter()
            .map(|o| {
                (
                    o["epoch"].as_u64().unwrap(),
                    o["outcome"].as_str().unwrap().to_string(),
                )
            })
            .filter(|(e, _)| epochs.contains(e))
            .collect();
        out.reverse();
        out
    }

    /// Everything the API lists, without the per-process `synced_slot`, and
    /// without `k` and `n` of closed deals (known only from an account snapshot,
    /// which a fresh indexer never saw).
    fn everything(&self) -> Value {
        let mut out = serde_json::Map::new();
        for list in ["/v1/providers", "/v1/deals", "/v1/epochs"] {
            let items = self
                .all(list)
                .into_iter()
                .map(|mut v| {
                    let closed = v["closed"] == true;
                    let o = v.as_object_mut().unwrap();
                    o.remove("synced_slot");
                    if closed {
                        o.remove("k");
                        o.remove("n");
                    }
                    v
                })
                .collect();
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
fn ingests_proof_sessions_live_survives_sigkill_and_matches_the_chain_and_a_fresh_indexer() {
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
    for n in 0..12 {
        let authority = Keypair::new();
        c.send(
            &[
                c.fund(&authority.pubkey()),
                ix.register_provider_ix(
                    &authority.pubkey(),
                    RegisterProviderArgs {
                        operator: Keypair::new().pubkey(),
                        endpoint: format!("127.0.0.1:{}", 7000 + n),
                        capacity_bytes: 1 << 30,
                        price_per_mib_epoch: 100,
                    },
                ),
            ],
            &[&authority],
        );
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

    // Restarted on the same store, it ingests the rest live. Provider A holds
    // shards 0 and 1 of a dataset, C one shard of another; B takes the repair.
    let indexer = Indexer::spawn(&info, &db, &[]);
    let stake = 1_000_000;
    let mut a = c.provider(100, stake);
    let mut b = c.provider(101, stake);
    let c_provider = c.provider(102, stake);
    // The proof transactions' lookup tables, made (and rooted) before the deals
    // so that no epoch's proof window is spent on them.
    let first_epoch = c.epoch() + 1;
    c.create_table(&mut a, first_epoch);
    c.create_table(&mut b, first_epoch);
    let client = Keypair::new();
    c.send(&[c.fund(&client.pubkey())], &[]);
    let client_token = c.token_account(&client.pubkey(), 10_000_000);

    let dataset_id = [7u8; 32];
    let other_dataset = [8u8; 32];
    let shards: Vec<TestShard> = (0..3).map(|i| TestShard::random(100_000, i)).collect();
    let propose = |provider: &Pubkey,
                   dataset_id: [u8; 32],
                   shard_index: u16,
                   generation: u16,
                   shard: &TestShard| {
        let args = ProposeDealArgs {
            dataset_id: cairn_chain::dataset_id(&client.pubkey(), &dataset_id),
            dataset_nonce: dataset_id,
            group_id: dataset_id,
            group: 0,
            shard_index,
            generation,
            k: 1,
            n: 2,
            shard_root: shard.root(),
            shard_bytes: shard.data.len() as u64,
            duration_epochs: 6,
            max_price_per_epoch: u64::MAX,
        };
        ix.propose_deal_ix(&client.pubkey(), provider, &client_token, args)
    };
    let deal0 = deal_pda(&client.pubkey(), &dataset_id, 0, 0);
    let deal1 = deal_pda(&client.pubkey(), &dataset_id, 1, 0);
    let repaired = deal_pda(&client.pubkey(), &dataset_id, 1, 1);
    let deal_c = deal_pda(&client.pubkey(), &other_dataset, 0, 0);
    assert_ne!(deal1, repaired, "a repair is a new deal address");
    c.send(
        &[
            propose(&a.pda, dataset_id, 0, 0, &shards[0]),
            propose(&a.pda, dataset_id, 1, 0, &shards[1]),
            propose(&c_provider.pda, other_dataset, 0, 0, &shards[2]),
        ],
        &[&client],
    );
    // Accepted in one transaction, so the three start in the same epoch however
    // slowly the machine confirms transactions.
    c.send(
        &[
            ix.accept_deal_ix(&a.operator.pubkey(), &a.pda, &deal0, 0),
            ix.accept_deal_ix(&a.operator.pubkey(), &a.pda, &deal1, 1),
            ix.accept_deal_ix(&c_provider.operator.pubkey(), &c_provider.pda, &deal_c, 0),
        ],
        &[&a.operator, &c_provider.operator],
    );
    let start = c.fetch::<Deal>(&deal0).start_epoch;
    assert_eq!(c.fetch::<Deal>(&deal_c).start_epoch, start);
    assert_eq!(
        log_page(start),
        log_page(first_epoch),
        "the tables hold the proof-log page"
    );
    let held_by_a = [&shards[0], &shards[1]];

    // Epoch `start`: A proves; C fails.
    c.open_epoch(start);
    c.prove(&a, start, &held_by_a);
    // Epoch `start + 1`: A and C fail.
    c.open_epoch(start + 1);
    // Epoch `start + 2`: nobody opens it (void). The client ends shard 1's deal
    // after A's failure (it runs to the end of this epoch) and places the shard
    // again on B, generation 1.
    c.wait_for_epoch(start + 2);
    let set_index = c.fetch::<Deal>(&deal1).set_index;
    c.send(
        &[ix.end_deal_ix(&client.pubkey(), &a.pda, &deal1, set_index, start + 1)],
        &[&client],
    );
    c.send(
        &[
            propose(&b.pda, dataset_id, 1, 1, &shards[1]),
            ix.accept_deal_ix(&b.operator.pubkey(), &b.pda, &repaired, 0),
        ],
        &[&client, &b.operator],
    );
    // Epoch `start + 3`: A proves (shard 1's entry has ended: it is skipped), B
    // proves the repaired shard; C fails again.
    c.open_epoch(start + 3);
    c.prove(&a, start + 3, &held_by_a);
    if c.fetch::<Deal>(&repaired).start_epoch <= start + 3 {
        c.prove(&b, start + 3, &[&shards[1]]);
    }
    // Epoch `start + 4`: C is jailed for its three failures; every deal is
    // settled; the ended deals leave their sets, and shard 1's old deal is closed.
    c.wait_for_epoch(start + 4);
    let jail_epochs = vec![start, start + 1, start + 3];
    c.send(
        &[ix.jail_provider_ix(
            &c.faucet.pubkey(),
            &c_provider.pda,
            log_page(start),
            jail_epochs.clone(),
            &[deal_c, deal_c, deal_c],
        )],
        &[],
    );
    let page = log_page(start);
    c.send(
        &[
            ix.settle_ix(&a.pda, page, &[deal0, deal1]),
            ix.settle_ix(&b.pda, page, &[repaired]),
            ix.settle_ix(&c_provider.pda, page, &[deal_c]),
        ],
        &[],
    );
    let ended: Deal = c.fetch(&deal1);
    assert_eq!(
        (ended.state, ended.end_epoch, ended.forfeit),
        (DealState::Terminated, start + 3, true)
    );
    assert_eq!(c.fetch::<Deal>(&deal_c).state, DealState::Terminated);
    c.send(
        &[
            ix.leave_deal_set_ix(&a.pda, &deal1, ended.set_index, None),
            ix.leave_deal_set_ix(&c_provider.pda, &deal_c, 0, None),
        ],
        &[],
    );
    let ended: Deal = c.fetch(&deal1);
    assert!(!ended.in_set);
    c.send(
        &[ix.close_deal_ix(&client.pubkey(), &deal1, &client_token)],
        &[&client],
    );
    assert!(c.rpc.get_account_data(&deal1).is_err(), "closed");

    let newest = c.newest_signature();
    indexer.caught_up(&newest);
    let stats = indexer.stats();
    let closed_until = stats["closed_until"].as_u64().expect("epochs closed");
    assert!(closed_until >= start + 4, "{stats}");

    // Providers: the API's numbers are the chain's.
    let chain_a: Provider = c.fetch(&a.pda);
    let chain_b: Provider = c.fetch(&b.pda);
    let chain_c: Provider = c.fetch(&c_provider.pda);
    for (p, chain) in [(&a, &chain_a), (&b, &chain_b), (&c_provider, &chain_c)] {
        let got = indexer.get(&format!("/v1/providers/{}", p.pda));
        for (field, value) in [
            ("proofs", chain.proofs),
            ("faults", chain.faults),
            ("slashed", chain.slashed),
            ("forfeited", chain.forfeited),
            ("active_deals", chain.active_deals),
            ("used_bytes", chain.used_bytes),
            ("stake_free", chain.stake_free),
            ("stake_locked", chain.stake_locked),
            ("earnings", chain.earnings),
        ] {
            assert_eq!(got[field], value, "provider {field}: {got}");
        }
        let jailed = (chain.jailed_from != u64::MAX).then_some(chain.jailed_from);
        assert_eq!(got["jailed_from"].as_u64(), jailed, "{got}");
    }
    assert!(
        chain_c.jailed_from >= start + 4,
        "jailed after its third failure"
    );
    let c_json = indexer.get(&format!("/v1/providers/{}", c_provider.pda));
    assert_eq!(
        c_json["jail"]["failed_epochs"],
        serde_json::json!(jail_epochs)
    );

    // Deals: mirrored fields are the chain's (the closed one's as it was before
    // closing); the settlements add up to them.
    let chain_deal0: Deal = c.fetch(&deal0);
    let chain_repaired: Deal = c.fetch(&repaired);
    let chain_deal_c: Deal = c.fetch(&deal_c);
    for (address, chain) in [
        (deal0, &chain_deal0),
        (deal1, &ended),
        (repaired, &chain_repaired),
        (deal_c, &chain_deal_c),
    ] {
        let d = indexer.get(&format!("/v1/deals/{address}"));
        for (field, value) in [
            ("proven_epochs", chain.proven_epochs),
            ("failed_epochs", chain.failed_epochs),
            ("void_epochs", chain.void_epochs),
            ("settled_until", chain.settled_until),
            ("escrow", chain.escrow),
            ("collateral_left", chain.collateral_left),
            ("start_epoch", chain.start_epoch),
            ("end_epoch", chain.end_epoch),
            ("generation", u64::from(chain.generation)),
        ] {
            assert_eq!(d[field], value, "deal {address} {field}: {d}");
        }
        assert_eq!(
            (d["in_set"].as_bool(), d["forfeit"].as_bool()),
            (Some(chain.in_set), Some(chain.forfeit)),
            "{d}"
        );
        if address != deal1 {
            assert_eq!(d["client_refund"], chain.client_refund, "{d}");
        }
        let settled = |field: &str| -> u64 {
            d["settlements"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s[field].as_u64().unwrap())
                .sum()
        };
        assert_eq!(
            (settled("proven"), settled("failed"), settled("void")),
            (chain.proven_epochs, chain.failed_epochs, chain.void_epochs),
            "{d}"
        );
        assert_eq!(
            (settled("paid"), settled("penalty")),
            (d["paid"].as_u64().unwrap(), d["penalty"].as_u64().unwrap())
        );
        // The deal's settled epochs are its provider's outcomes in them.
        let outcomes = d["epochs"].as_array().unwrap();
        let count = |o: &str| -> u64 {
            outcomes
                .iter()
                .filter(|e| {
                    e["epoch"].as_u64().unwrap() < chain.settled_until
                        && e["outcome"].as_str() == Some(o)
                })
                .count() as u64
        };
        assert_eq!(
            (count("proven"), count("failed"), count("void")),
            (chain.proven_epochs, chain.failed_epochs, chain.void_epochs),
            "deal {address}: {d}"
        );
    }
    // Event-only sums (never overwritten by reconciliation) agree with the
    // providers' accounts: nothing was lost or counted twice across the SIGKILL.
    let sum = |deals: &[Pubkey], field: &str| -> u64 {
        deals
            .iter()
            .map(|d| {
                indexer.get(&format!("/v1/deals/{d}"))[field]
                    .as_u64()
                    .unwrap()
            })
            .sum()
    };
    assert_eq!(sum(&[deal0, deal1], "paid"), chain_a.earnings);
    assert_eq!(sum(&[deal0, deal1], "penalty"), chain_a.slashed);
    assert_eq!(sum(&[deal_c], "penalty"), chain_c.slashed);

    // The repair: the closed generation-0 deal keeps its record, the new deal
    // is its own.
    let old = indexer.get(&format!("/v1/deals/{deal1}"));
    assert_eq!(
        (
            old["closed"].as_bool(),
            old["state"].as_str(),
            old["provider"].as_str(),
            old["ending"]["failed_epoch"].as_u64(),
            old["finish"]["terminated"].as_bool(),
        ),
        (
            Some(true),
            Some("terminated"),
            Some(a.pda.to_string().as_str()),
            Some(start + 1),
            Some(true)
        ),
        "{old}"
    );
    let new = indexer.get(&format!("/v1/deals/{repaired}"));
    assert_eq!(
        (
            new["provider"].as_str(),
            new["generation"].as_u64(),
            new["state"].as_str()
        ),
        (Some(b.pda.to_string().as_str()), Some(1), Some("active")),
        "{new}"
    );
    // The dataset's id is derived from its client and nonce (`dataset_id`
    // here is the nonce and the one group's id).
    let dataset = indexer.get(&format!(
        "/v1/datasets/{}",
        hex::encode(cairn_chain::dataset_id(&client.pubkey(), &dataset_id))
    ));
    assert_eq!(
        (
            dataset["shards"].as_u64(),
            dataset["active_shards"].as_u64(),
            dataset["deals"].as_array().map(Vec::len)
        ),
        (Some(2), Some(2), Some(3)),
        "{dataset}"
    );

    // Epoch outcomes: what the chain's bits say, for every closed epoch since the
    // deals started.
    let epochs = start..closed_until;
    let jailed = |p: &Provider| p.jailed_from;
    let expected_a = c.outcomes(
        &a.pda,
        &[&chain_deal0, &ended],
        jailed(&chain_a),
        epochs.clone(),
    );
    let expected_b = c.outcomes(&b.pda, &[&chain_repaired], jailed(&chain_b), epochs.clone());
    let expected_c = c.outcomes(
        &c_provider.pda,
        &[&chain_deal_c],
        jailed(&chain_c),
        epochs.clone(),
    );
    let strings = |v: Vec<(u64, &str)>| -> Vec<(u64, String)> {
        v.into_iter().map(|(e, o)| (e, o.to_string())).collect()
    };
    assert_eq!(
        indexer.outcomes(&a.pda, epochs.clone()),
        strings(expected_a.clone())
    );
    assert_eq!(
        indexer.outcomes(&b.pda, epochs.clone()),
        strings(expected_b.clone())
    );
    assert_eq!(
        indexer.outcomes(&c_provider.pda, epochs.clone()),
        strings(expected_c.clone())
    );
    // The scenario as planned: A proved, failed, was void, proved; C failed
    // around the void epoch until it was jailed.
    assert_eq!(
        expected_a[..4],
        [
            (start, "proven"),
            (start + 1, "failed"),
            (start + 2, "void"),
            (start + 3, "proven")
        ]
    );
    assert_eq!(
        expected_c[..4],
        [
            (start, "failed"),
            (start + 1, "failed"),
            (start + 2, "void"),
            (start + 3, "failed")
        ]
    );
    for e in epochs.clone() {
        let epoch = indexer.get(&format!("/v1/epochs/{e}"));
        assert_eq!(epoch["opened"].as_bool(), Some(c.opened(e)), "{epoch}");
        let listed = |list: &str| -> Vec<String> {
            let mut v: Vec<String> = epoch[list]
                .as_array()
                .unwrap()
                .iter()
                .map(|o| o["provider"].as_str().unwrap().to_string())
                .collect();
            v.sort();
            v
        };
        let want = |outcome: &str| -> Vec<String> {
            let mut v: Vec<String> = [
                (&a.pda, &expected_a),
                (&b.pda, &expected_b),
                (&c_provider.pda, &expected_c),
            ]
            .iter()
            .filter(|(_, o)| o.contains(&(e, outcome)))
            .map(|(p, _)| p.to_string())
            .collect();
            v.sort();
            v
        };
        assert_eq!(listed("proven_list"), want("proven"), "{epoch}");
        assert_eq!(listed("failed_list"), want("failed"), "{epoch}");
        assert_eq!(listed("void_list"), want("void"), "{epoch}");
    }
    let count = |outcome: &str| {
        [&expected_a, &expected_b, &expected_c]
            .iter()
            .map(|o| o.iter().filter(|(_, x)| *x == outcome).count() as u64)
            .sum::<u64>()
    };
    assert_eq!(stats["sessions"], count("proven"));
    assert_eq!(stats["failed_epochs"], count("failed"));
    // Void epochs: `start + 2`, and `start + 4` if the last transactions ran
    // into the next epoch (nobody opens it).
    let void: std::collections::BTreeSet<u64> = [&expected_a, &expected_b, &expected_c]
        .iter()
        .flat_map(|o| o.iter().filter(|(_, x)| *x == "void").map(|(e, _)| *e))
        .collect();
    assert!(void.contains(&(start + 2)));
    assert_eq!(stats["void_epochs"], void.len() as u64);
    assert_eq!(stats["jailings"], 1);
    assert_eq!(
        stats["penalties"],
        chain_a.slashed + chain_b.slashed + chain_c.slashed
    );
    assert_eq!(stats["providers"], 15);
    assert_eq!(stats["active_deals"], 2, "shard 0 on A and the repair on B");

    // A fresh indexer over the same chain ends identical.
    let fresh_db = dir.path().join("fresh");
    let fresh = Indexer::spawn(&info, &fresh_db, &[]);
    fresh.caught_up(&newest);
    indexer.caught_up(&newest);
    assert_eq!(indexer.everything(), fresh.everything());
    for p in [&a.pda, &b.pda, &c_provider.pda] {
        assert_eq!(
            indexer.get(&format!("/v1/providers/{p}"))["epoch_map"],
            fresh.get(&format!("/v1/providers/{p}"))["epoch_map"]
        );
        let epochs = format!("/v1/providers/{p}/epochs");
        assert_eq!(indexer.all(&epochs), fresh.all(&epochs));
    }
    for deal in [deal0, deal1, repaired, deal_c] {
        let detail = |i: &Indexer| {
            let mut d = i.get(&format!("/v1/deals/{deal}"));
            let o = d.as_object_mut().unwrap();
            for field in ["synced_slot", "k", "n"] {
                o.remove(field);
            }
            d
        };
        assert_eq!(detail(&indexer), detail(&fresh));
    }
    eprintln!(
        "killed after {indexed_at_kill} transactions; final {}",
        indexer.stats()
    );
}
