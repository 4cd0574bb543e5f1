//! The node against the local network: uploads accepted on chain; every epoch
//! opened and proven in one session per provider, of v0 transactions through the
//! operator's lookup table, as many as the planner says whatever the number of
//! deals; ended deals settled (the provider earns price × proven epochs), removed
//! from the deal set and their shards deleted; and a SIGKILL in the middle of an
//! upload of the `cairn-node` binary.

use anchor_lang::{AccountDeserialize, Discriminator};
use cairn_chain::{
    deal_set_pda,
    proving::{self, PlannedDraw},
    Pubkey,
};
use cairn_core::wire::{Codec, PutShard, Request, ShardState};
use cairn_localnet::{Localnet, LocalnetConfig};
use cairn_storage_node::{client::NodeClient, node::RunningNode, store};
use cairn_tests::rpc::{one_validator_at_a_time, poll, SOL};
use cairn_tests::TestShard;
use support::chain::{node_config, operator_key, Chain};

mod support;
use solana_commitment_config::CommitmentConfig;
use solana_keypair::Keypair;
use solana_rpc_client::rpc_client::GetConfirmedSignaturesForAddress2Config;
use solana_rpc_client_api::config::RpcTransactionConfig;
use solana_signer::Signer;
use solana_transaction::VersionedMessage;
use solana_transaction_status_client_types::UiTransactionEncoding;
use std::{
    collections::BTreeMap,
    path::Path,
    process::{Child, Command, Stdio},
    sync::atomic::Ordering::Relaxed,
    time::{Duration, Instant},
};
use storage_market::state::{Deal, DealState, Provider};

impl Chain {
    /// Every confirmed `prove` transaction of `provider` (they write its deal set):
    /// checked to be a v0 transaction reading its accounts through `table` (or, while
    /// the table's newest addresses were not rooted yet, a legacy transaction that
    /// fits; at least one goes through the table), and counted per proven epoch.
    fn proof_transactions(&self, provider: &Pubkey, table: &Pubkey) -> BTreeMap<u64, usize> {
        let mut per_epoch = BTreeMap::new();
        let (mut legacy, mut through_table) = (0usize, 0usize);
        // At confirmed commitment: the default, finalized, lags the last epochs.
        let signatures = self
            .rpc
            .get_signatures_for_address_with_config(
                &deal_set_pda(provider),
                GetConfirmedSignaturesForAddress2Config {
                    commitment: Some(CommitmentConfig::confirmed()),
                    ..GetConfirmedSignaturesForAddress2Config::default()
                },
            )
            .expect("getSignaturesForAddress");
        for status in signatures.iter().filter(|s| s.err.is_none()) {
            let signature = status.signature.parse().expect("a signature");
            let config = RpcTransactionConfig {
                encoding: Some(UiTransactionEncoding::Base64),
                commitment: Some(CommitmentConfig::confirmed()),
                max_supported_transaction_version: Some(0),
            };
            let got = poll("getTransaction", Duration::from_secs(60), || {
                self.rpc
                    .get_transaction_with_config(&signature, config)
                    .ok()
            });
            let tx = got.transaction.transaction.decode().expect("a transaction");
            let keys = tx.message.static_account_keys().to_vec();
            let prove = tx.message.instructions().iter().find(|ix| {
                keys[usize::from(ix.program_id_index)] == cairn_chain::PROGRAM_ID
                    && ix
                        .data
                        .starts_with(storage_market::instruction::Prove::DISCRIMINATOR)
            });
            let Some(prove) = prove else { continue };
            let VersionedMessage::V0(message) = &tx.message else {
                // While the table's newest addresses are not rooted, a proof that
                // fits goes as a legacy transaction (the leader would hold a v0 one).
                assert!(
                    1 + 64 + tx.message.serialize().len() <= cairn_chain::proving::PACKET_BYTES,
                    "{signature}"
                );
                let epoch = u64::from_le_bytes(prove.data[8..16].try_into().unwrap());
                *per_epoch.entry(epoch).or_default() += 1;
                legacy += 1;
                continue;
            };
            assert_eq!(
                message
                    .address_table_lookups
                    .iter()
                    .map(|l| l.account_key)
                    .collect::<Vec<_>>(),
                vec![*table],
                "proof transaction {signature} reads the operator's lookup table"
            );
            // Everything but the operator and the two programs comes from the table.
            assert_eq!(keys.len(), 3, "{signature}: {keys:?}");
            let epoch = u64::from_le_bytes(prove.data[8..16].try_into().unwrap());
            *per_epoch.entry(epoch).or_default() += 1;
            through_table += 1;
        }
        assert!(
            through_table > 0,
            "no proof went through the lookup table ({legacy} legacy)"
        );
        per_epoch
    }
}

/// Most samples of `shard_bytes` one proof transaction carries (one deal-set page),
/// from the planner's exact transaction size.
fn samples_per_transaction(shard_bytes: u64) -> usize {
    let depth = cairn_proof::depth(shard_bytes);
    (1..)
        .take_while(|k| proving::proof_tx_len(&vec![depth; *k], 1) <= proving::PACKET_BYTES)
        .last()
        .unwrap()
}

/// Proof transactions the planner packs `samples` live draws of `shard_bytes` on
/// one deal-set page into.
fn packed(samples: usize, shard_bytes: u64) -> usize {
    let plan: Vec<PlannedDraw> = (0..samples as u32)
        .map(|j| PlannedDraw {
            draw: j,
            entry: j,
            live: true,
            segment: 0,
            depth: cairn_proof::depth(shard_bytes),
        })
        .collect();
    proving::pack_session(&plan).len()
}

/// The lookup table a running node recorded in its store.
fn lookup_table(node: &RunningNode) -> Pubkey {
    let value = node
        .node
        .store
        .meta(store::LOOKUP_TABLE_KEY)
        .unwrap()
        .expect("the node recorded its lookup table");
    Pubkey::new_from_array(value[..32].try_into().unwrap())
}

fn metrics_text(node: &RunningNode) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(node.metrics_addr.unwrap()).unwrap();
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200 OK"), "{out}");
    out
}

#[test]
fn every_epoch_is_proven_in_one_session_per_provider_and_settled_to_the_provider() {
    let _serial = one_validator_at_a_time();
    let localnet = Localnet::start(LocalnetConfig {
        slot_ms: Some(300),
        // 6 s epochs: room for a loaded CI machine to prove every epoch.
        epoch_slots: Some(20),
        ..LocalnetConfig::default()
    })
    .expect("localnet starts");
    let chain = Chain::new(&localnet);
    let params = localnet_params(&chain);
    let dir = tempfile::tempdir().unwrap();

    // Provider A holds one deal of a 300 kB shard; provider B twelve deals of 10 kB
    // shards. Each runs a node.
    let operator_a = Keypair::new();
    let (authority_a, provider_a) = chain.provider(&operator_a);
    let operator_b = Keypair::new();
    let (authority_b, provider_b) = chain.provider(&operator_b);
    let client = Keypair::new();
    chain.airdrop(&client.pubkey(), 10 * SOL);
    const DURATION: u64 = 4;
    let shard_a = TestShard::random(300_000, 1);
    const SMALL: usize = 10_000;
    let shards_b: Vec<TestShard> = (0..12).map(|i| TestShard::random(SMALL, 10 + i)).collect();

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    // A node started with a key that is not the provider's operator refuses to run.
    let impostor = node_config(
        &dir.path().join("impostor"),
        &chain,
        &authority_a.pubkey(),
        &Keypair::new(),
    );
    let err = rt
        .block_on(cairn_storage_node::node::start(impostor))
        .err()
        .expect("impostor refused");
    assert!(err.to_string().contains("operator_keypair"), "{err:#}");

    let start_node = |name: &str, authority: &Keypair, operator: &Keypair| {
        let config = node_config(
            &dir.path().join(name),
            &chain,
            &authority.pubkey(),
            operator,
        );
        rt.block_on(cairn_storage_node::node::start(config))
            .expect("node starts")
    };
    let node_a = start_node("a", &authority_a, &operator_a);
    let node_b = start_node("b", &authority_b, &operator_b);
    // A node prepares its lookup table at its first round, before it has deals: a
    // leader resolves lookup tables from its root bank, so the table serves proofs
    // once it is rooted (here, before the first deal's first epoch).
    for (node, provider) in [(&node_a, &provider_a), (&node_b, &provider_b)] {
        chain.wait_lookup_table_rooted(node, provider);
    }

    // Upload through the QUIC client; each node accepts on chain as a shard lands
    // (B's first acceptance also creates the first page of its deal set).
    let upload =
        |node: &RunningNode, operator: &Keypair, deals: &[Pubkey], shards: &[&TestShard]| {
            rt.block_on(async {
                let c = NodeClient::connect(node.quic_addr, operator_key(operator))
                    .await
                    .unwrap();
                for (deal, shard) in deals.iter().zip(shards) {
                    let status = c.upload(deal, &client, &shard.data).await.expect("upload");
                    assert_eq!(status.state, ShardState::Stored);
                    assert_eq!(
                        c.get_shard(deal, 0, shard.data.len() as u64).await.unwrap(),
                        shard.data
                    );
                }
                c.close().await;
            })
        };
    let deal_a = chain.propose(&client, &provider_a, &shard_a, DURATION);
    upload(&node_a, &operator_a, &[deal_a], &[&shard_a]);
    let mut deals_b = Vec::new();
    for (i, chunk) in shards_b.chunks(4).enumerate() {
        // Proposed in turn: a deal is accepted within two epochs of its proposal.
        let chunk: Vec<&TestShard> = chunk.iter().collect();
        let deals = chain.propose_all(&client, &provider_b, [8 + i as u8; 32], &chunk, DURATION);
        upload(&node_b, &operator_b, &deals, &chunk);
        deals_b.extend(deals);
    }
    // Accepted as they were stored (an acceptance that failed is retried).
    let accepted = |deals: &[Pubkey]| -> Vec<(Pubkey, Deal)> {
        deals
            .iter()
            .map(|key| {
                let deal = poll("the deal accepted", Duration::from_secs(60), || {
                    Some(chain.deal(key)).filter(|d| d.state == DealState::Active)
                });
                assert!(deal.in_set, "{key}");
                (*key, deal)
            })
            .collect()
    };
    let accepted_a = accepted(&[deal_a]);
    let accepted_b = accepted(&deals_b);
    let mut indices: Vec<u32> = accepted_b.iter().map(|(_, d)| d.set_index).collect();
    indices.sort();
    assert_eq!(
        indices,
        (0..12).collect::<Vec<u32>>(),
        "B's deals fill its set densely"
    );

    // Wait until both providers' deals are over, settled (by the nodes, when they
    // end), out of the deal sets, and their shards deleted.
    let all: Vec<(Pubkey, Deal)> = accepted_a.iter().chain(&accepted_b).cloned().collect();
    let end = all.iter().map(|(_, d)| d.end_epoch).max().unwrap();
    let timeout = Duration::from_millis(
        4 * 300 * ((end + 2) * params.epoch_slots).saturating_sub(chain.slot()) + 120_000,
    );
    poll(
        "every deal settled and out of its deal set",
        timeout,
        || {
            all.iter()
                .all(|(key, _)| {
                    let d = chain.deal(key);
                    d.state == DealState::Completed && !d.in_set
                })
                .then_some(())
        },
    );
    poll(
        "the finished deals' shards deleted",
        Duration::from_secs(60),
        || {
            (node_a.node.metrics.shards_removed.load(Relaxed) == 1
                && node_b.node.metrics.shards_removed.load(Relaxed) == 12)
                .then_some(())
        },
    );

    // Every epoch of every deal was proven: the provider's bit is set, and
    // settlement paid it, the price of each proven epoch to the provider.
    let samples_per_epoch = usize::from(params.samples_per_epoch);
    for (provider, deals, node, shard_bytes) in [
        (provider_a, &accepted_a, &node_a, shard_a.data.len() as u64),
        (provider_b, &accepted_b, &node_b, SMALL as u64),
    ] {
        let first = deals.iter().map(|(_, d)| d.start_epoch).min().unwrap();
        let last = deals.iter().map(|(_, d)| d.end_epoch).max().unwrap();
        for epoch in first..last {
            assert!(
                chain.proven(&provider, epoch),
                "{provider}: epoch {epoch} proven"
            );
        }
        let mut earned = 0;
        for (key, _) in deals.iter() {
            let d = chain.deal(key);
            assert_eq!(
                (
                    d.proven_epochs,
                    d.failed_epochs,
                    d.void_epochs,
                    d.settled_until
                ),
                (DURATION, 0, 0, d.end_epoch),
                "deal {key} (start {}, end {})",
                d.start_epoch,
                d.end_epoch
            );
            earned += d.price_per_epoch * d.proven_epochs;
        }
        let p: Provider = chain.fetch(&provider);
        assert_eq!(
            p.earnings, earned,
            "{provider} earned the price of every proven epoch"
        );
        assert_eq!((p.active_deals, p.stake_locked, p.used_bytes), (0, 0, 0));

        // One session per epoch, of v0 transactions through the operator's lookup
        // table, as many as ceil(s / samples per transaction), not one per deal: in
        // the epochs where all of the provider's deals ran.
        let per_epoch = chain.proof_transactions(&provider, &lookup_table(node));
        assert_eq!(
            per_epoch.keys().copied().collect::<Vec<u64>>(),
            (first..last).collect::<Vec<u64>>(),
            "{provider}: proof transactions in exactly the epochs it owed"
        );
        let s = samples_per_epoch.min(deals.len());
        let expected = s.div_ceil(samples_per_transaction(shard_bytes));
        assert_eq!(
            expected,
            packed(s, shard_bytes),
            "the planner packs them so"
        );
        let all_running = deals.iter().map(|(_, d)| d.start_epoch).max().unwrap()
            ..deals.iter().map(|(_, d)| d.end_epoch).min().unwrap();
        assert!(
            !all_running.is_empty(),
            "{provider}: no epoch had every deal running"
        );
        for epoch in all_running {
            assert_eq!(
                per_epoch[&epoch],
                expected,
                "{provider}: epoch {epoch} of {} deals, {s} samples",
                deals.len()
            );
        }
        let metrics = &node.node.metrics;
        assert_eq!(
            metrics.proof_transactions.load(Relaxed),
            per_epoch.values().sum::<usize>() as u64
        );
        assert_eq!(metrics.sessions_proven.load(Relaxed), last - first);
        assert_eq!(metrics.deals_left_set.load(Relaxed), deals.len() as u64);
        assert!(metrics.settlements.load(Relaxed) >= deals.len() as u64);
        assert_eq!(metrics.deals_accepted.load(Relaxed), deals.len() as u64);
        let text = metrics_text(node);
        for line in [
            format!("cairn_node_sessions_proven_total {}\n", last - first),
            format!("cairn_node_deals_left_set_total {}\n", deals.len()),
            format!("cairn_node_shards_removed_total {}\n", deals.len()),
            "cairn_node_shards_stored 0\n".to_string(),
        ] {
            assert!(text.contains(&line), "{line} in {text}");
        }
    }
    // Twelve deals, yet fewer proof transactions per epoch than B's deals.
    assert_eq!(
        samples_per_epoch
            .min(12)
            .div_ceil(samples_per_transaction(SMALL as u64)),
        2,
        "4 samples of 10 kB shards, 2 per transaction"
    );
    // Every epoch was opened by one of the nodes.
    let first = all.iter().map(|(_, d)| d.start_epoch).min().unwrap();
    let opened = node_a.node.metrics.epochs_opened.load(Relaxed)
        + node_b.node.metrics.epochs_opened.load(Relaxed);
    assert!(opened >= end - first, "{opened} epochs opened");
    rt.block_on(node_a.stop());
    rt.block_on(node_b.stop());
}

fn localnet_params(chain: &Chain) -> storage_market::state::MarketParams {
    let data = chain.rpc.get_account_data(&chain.info.market).unwrap();
    storage_market::state::Market::try_deserialize(&mut data.as_slice())
        .unwrap()
        .params
}

/// The config file of a node run as a `cairn-node` process, on a fixed free port
/// (the same after a restart), metrics off; and its QUIC address.
fn process_config(
    dir: &Path,
    chain: &Chain,
    authority: &Pubkey,
    operator: &Keypair,
) -> (std::path::PathBuf, std::net::SocketAddr) {
    let port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let mut config = node_config(dir, chain, authority, operator);
    config.listen = format!("127.0.0.1:{port}").parse().unwrap();
    config.metrics_listen = String::new();
    // A restarted prover retries acceptances soon, well inside their window.
    config.reconcile_secs = 3;
    let config_path = dir.join("cairn-node.toml");
    std::fs::write(&config_path, config.documented_toml()).unwrap();
    (config_path, config.listen)
}

/// A client of the node at `addr`, retrying while it starts.
fn connect_within(
    rt: &tokio::runtime::Runtime,
    addr: std::net::SocketAddr,
    operator: &Keypair,
    within: Duration,
) -> NodeClient {
    rt.block_on(async {
        let deadline = Instant::now() + within;
        loop {
            match NodeClient::connect(addr, operator_key(operator)).await {
                Ok(c) => return c,
                Err(e) if Instant::now() > deadline => panic!("{e}"),
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    })
}

struct NodeProcess(Child);

impl NodeProcess {
    fn spawn(config: &Path) -> NodeProcess {
        Self::spawn_with(config, false, None)
    }

    /// The node with or without its prover, killing itself (SIGKILL) at the named
    /// failpoint if one is given (`store::crash_point`).
    fn spawn_with(config: &Path, prover: bool, crash_at: Option<&str>) -> NodeProcess {
        let mut command = Command::new(env!("CARGO_BIN_EXE_cairn-node"));
        command.args(["--config", config.to_str().unwrap(), "run"]);
        if !prover {
            command.arg("--no-prover");
        }
        if let Some(point) = crash_at {
            command.env("FAILPOINTS", format!("{point}=return"));
        }
        let child = command
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cairn-node starts");
        NodeProcess(child)
    }

    /// Waits for the process to end by itself.
    fn wait_for_exit(&mut self, within: Duration) -> std::process::ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(status) = self.0.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "the node did not stop at its failpoint"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn sigkill(&mut self) {
        self.0.kill().unwrap(); // SIGKILL on unix
        self.0.wait().unwrap();
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn sigkill_in_the_middle_of_an_upload_then_resume_to_a_byte_exact_shard() {
    let _serial = one_validator_at_a_time();
    // Longer epochs: the deal must be accepted within 2 epochs of its proposal.
    let localnet = Localnet::start(LocalnetConfig {
        slot_ms: Some(300),
        epoch_slots: Some(60),
        ..LocalnetConfig::default()
    })
    .expect("localnet starts");
    let chain = Chain::new(&localnet);
    let dir = tempfile::tempdir().unwrap();
    let operator = Keypair::new();
    let (authority, provider) = chain.provider(&operator);
    let client = Keypair::new();
    chain.airdrop(&client.pubkey(), 10 * SOL);
    let shard = TestShard::random(6 << 20, 4);
    let deal = chain.propose(&client, &provider, &shard, 2);

    let (config_path, addr) = process_config(dir.path(), &chain, &authority.pubkey(), &operator);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let connect = || connect_within(&rt, addr, &operator, Duration::from_secs(60));

    let mut process = NodeProcess::spawn(&config_path);
    let c = connect();
    // Announce the whole shard, send 3 MiB, and wait until the node has
    // checkpointed at least 2 MiB of it; then SIGKILL mid-body.
    let (mut send, _recv) = rt.block_on(async {
        let len = shard.data.len() as u64;
        let request = Request::PutShard(PutShard {
            deal: deal.to_bytes(),
            offset: 0,
            len,
            client: client.pubkey().to_bytes(),
            signature: client
                .sign_message(&PutShard::signing_message(&deal.to_bytes(), 0, len))
                .into(),
        });
        let (mut send, recv) = c.connection().open_bi().await.unwrap();
        send.write_all(&Codec::default().encode_request(&request).unwrap())
            .await
            .unwrap();
        send.write_all(&shard.data[..3 << 20]).await.unwrap();
        (send, recv)
    });
    let observer = connect();
    poll(
        "a checkpoint of at least 2 MiB",
        Duration::from_secs(60),
        || {
            let s = rt.block_on(observer.status(&deal)).ok()?;
            (s.received >= 2 << 20).then_some(())
        },
    );
    process.sigkill();
    let _ = rt.block_on(send.write_all(&shard.data[3 << 20..(4 << 20)]));
    drop((c, observer));

    // Restart: the node reports where to resume and the upload completes.
    let _process = NodeProcess::spawn(&config_path);
    let c = connect();
    let status = rt.block_on(c.status(&deal)).unwrap();
    assert_eq!(status.state, ShardState::Receiving);
    assert!(
        (2 << 20..=3 << 20).contains(&status.received),
        "resume offset {} after sending 3 MiB",
        status.received
    );
    let done = rt
        .block_on(c.upload(&deal, &client, &shard.data))
        .expect("resumed upload");
    assert_eq!(done.state, ShardState::Stored);
    let back = rt
        .block_on(c.get_shard(&deal, 0, shard.data.len() as u64))
        .unwrap();
    assert!(back == shard.data, "the shard is not byte-exact");
    let stored = std::fs::read(
        dir.path()
            .join("data/shards")
            .join(bs58::encode(deal.to_bytes()).into_string()),
    )
    .unwrap();
    assert!(stored == shard.data);
    assert_eq!(chain.deal(&deal).state, DealState::Active);
}

/// `kill -9` at the two named points around a finished upload: after the shard
/// file is renamed into place but before its record is written, and after the
/// record but before `accept_deal`. After each restart the node holds every
/// acknowledged byte, the deal is accepted, and the provider proves its epochs.
#[test]
fn sigkill_between_the_file_and_its_record_and_before_accept_loses_nothing() {
    use std::os::unix::process::ExitStatusExt;
    let _serial = one_validator_at_a_time();
    // Long epochs: after the two kills, the restarted prover builds its lookup
    // table and waits for it to root before it accepts, all within the deals'
    // acceptance window (2 epochs from the proposal).
    let localnet = Localnet::start(LocalnetConfig {
        slot_ms: Some(300),
        epoch_slots: Some(150),
        ..LocalnetConfig::default()
    })
    .expect("localnet starts");
    let chain = Chain::new(&localnet);
    let dir = tempfile::tempdir().unwrap();
    let operator = Keypair::new();
    let (authority, provider) = chain.provider(&operator);
    let client = Keypair::new();
    chain.airdrop(&client.pubkey(), 10 * SOL);
    let (config_path, addr) = process_config(dir.path(), &chain, &authority.pubkey(), &operator);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let connect = || connect_within(&rt, addr, &operator, Duration::from_secs(60));

    let mut shards = Vec::new();
    for (i, point) in [
        "shard-renamed-before-record",
        "shard-recorded-before-accept",
    ]
    .into_iter()
    .enumerate()
    {
        let shard = TestShard::random(3 << 20, 20 + i as u64);
        let deal = chain.propose_all(&client, &provider, [30 + i as u8; 32], &[&shard], 40)[0];
        let mut process = NodeProcess::spawn_with(&config_path, false, Some(point));
        let c = connect();
        // The last byte arrives, then the node dies at the point: no answer.
        let answer = rt.block_on(c.upload(&deal, &client, &shard.data));
        assert!(answer.is_err(), "{point}: the node answered {answer:?}");
        let status = process.wait_for_exit(Duration::from_secs(30));
        assert_eq!(status.signal(), Some(9), "{point}: killed by SIGKILL");
        drop(c);
        shards.push((deal, shard));
    }

    // Restarted with its prover: both shards stored and served byte-exact, both
    // deals accepted, and the provider proves an epoch in which both run.
    let _process = NodeProcess::spawn_with(&config_path, true, None);
    let c = connect();
    for (deal, shard) in &shards {
        let status = rt.block_on(c.status(deal)).unwrap();
        assert_eq!(status.state, ShardState::Stored);
        let back = rt
            .block_on(c.get_shard(deal, 0, shard.data.len() as u64))
            .unwrap();
        assert!(back == shard.data, "the shard is not byte-exact");
    }
    let started = poll("both deals accepted", Duration::from_secs(120), || {
        let states: Vec<_> = shards.iter().map(|(d, _)| chain.deal(d)).collect();
        states
            .iter()
            .all(|d| d.state == DealState::Active)
            .then(|| states.iter().map(|d| d.start_epoch).max().unwrap())
    });
    poll(
        "an epoch of both deals proven",
        Duration::from_secs(240),
        || (chain.proven(&provider, started) || chain.proven(&provider, started + 1)).then_some(()),
    );
}
