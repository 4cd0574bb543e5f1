//! The node against the local network: uploads accepted on chain, the prover
//! over several epochs, fault reports for another provider's missed epochs, and a
//! SIGKILL in the middle of an upload of the `cairn-node` binary.

use anchor_lang::AccountDeserialize;
use cairn_chain::{deal_pda, provider_pda, Pubkey};
use cairn_core::wire::{Codec, PutShard, Request, ShardState};
use cairn_localnet::{Localnet, LocalnetConfig, LocalnetInfo};
use cairn_storage_node::{client::NodeClient, config::Config};
use cairn_tests::rpc::{one_validator_at_a_time, poll, TestChain, SOL};
use cairn_tests::TestShard;
use solana_keypair::Keypair;
use solana_signer::Signer;
use std::{
    path::Path,
    process::{Child, Command, Stdio},
    sync::atomic::Ordering::Relaxed,
    time::{Duration, Instant},
};
use storage_market::{
    instructions::{ProposeDealArgs, RegisterProviderArgs},
    state::{Deal, DealState},
};

/// The local network's market, funded by its faucet (the shared test client)
/// and what these tests add: deals, providers and proposals.
struct Chain {
    chain: TestChain,
    info: LocalnetInfo,
}

impl std::ops::Deref for Chain {
    type Target = TestChain;
    fn deref(&self) -> &TestChain {
        &self.chain
    }
}

impl Chain {
    fn new(localnet: &Localnet) -> Chain {
        let info = localnet.info().clone();
        Chain {
            chain: TestChain::connect(&info.rpc_url, &info.faucet_keypair, info.market_ix()),
            info,
        }
    }

    fn deal(&self, key: &Pubkey) -> Deal {
        self.fetch(key)
    }

    /// A registered, staked provider whose operator is funded.
    fn provider(&self, operator: &Keypair) -> (Keypair, Pubkey) {
        let authority = Keypair::new();
        self.airdrop(&authority.pubkey(), 10 * SOL);
        self.airdrop(&operator.pubkey(), 10 * SOL);
        let stake = 10_000_000;
        let authority_token = self.token_account(&authority.pubkey(), stake);
        let register = self.ix.register_provider_ix(
            &authority.pubkey(),
            RegisterProviderArgs {
                operator: operator.pubkey(),
                endpoint: "127.0.0.1:7000".into(),
                capacity_bytes: 1 << 30,
                price_per_mib_epoch: 100,
            },
        );
        let deposit = self
            .ix
            .deposit_stake_ix(&authority.pubkey(), &authority_token, stake);
        self.send(&[register, deposit], &[&authority]);
        let provider = provider_pda(&authority.pubkey());
        (authority, provider)
    }

    /// A funded client proposing `shard` to `provider` for `epochs` epochs.
    fn propose(
        &self,
        client: &Keypair,
        provider: &Pubkey,
        shard: &TestShard,
        index: u16,
        epochs: u64,
    ) -> Pubkey {
        let client_token = self.token_account(&client.pubkey(), 100_000_000);
        let dataset_id = [7u8; 32];
        let args = ProposeDealArgs {
            dataset_id,
            shard_index: index,
            k: 4,
            n: 6,
            shard_root: shard.root(),
            shard_bytes: shard.data.len() as u64,
            duration_epochs: epochs,
            max_price_per_epoch: u64::MAX,
        };
        self.send(
            &[self
                .ix
                .propose_deal_ix(&client.pubkey(), provider, &client_token, args)],
            &[client],
        );
        deal_pda(&client.pubkey(), &dataset_id, index)
    }
}

fn write_keypair(kp: &Keypair, path: &Path) {
    std::fs::write(path, format!("{:?}", kp.to_bytes().to_vec())).unwrap();
}

fn node_config(dir: &Path, chain: &Chain, authority: &Pubkey, operator: &Keypair) -> Config {
    std::fs::create_dir_all(dir).unwrap();
    let keypair = dir.join("operator.json");
    write_keypair(operator, &keypair);
    Config {
        data_dir: dir.join("data"),
        listen: "127.0.0.1:0".parse().unwrap(),
        metrics_listen: "127.0.0.1:0".into(),
        rpc_url: chain.info.rpc_url.clone(),
        provider_authority: authority.to_string(),
        operator_keypair: keypair,
        checkpoint_bytes: 1 << 20,
        poll_ms: 200,
        ..Config::default()
    }
}

fn operator_key(kp: &Keypair) -> Pubkey {
    Pubkey::new_from_array(kp.pubkey().to_bytes())
}

#[test]
fn uploads_are_accepted_every_epoch_proven_once_and_a_stopped_nodes_epochs_reported() {
    let _serial = one_validator_at_a_time();
    let localnet = Localnet::start(LocalnetConfig {
        slot_ms: Some(300),
        // 6 s epochs: room for a loaded CI machine to prove every epoch.
        epoch_slots: Some(20),
        ..LocalnetConfig::default()
    })
    .expect("localnet starts");
    let chain = Chain::new(&localnet);
    let dir = tempfile::tempdir().unwrap();

    // Provider A runs a node; provider B runs one that proves an epoch, then stops.
    let operator_a = Keypair::new();
    let (authority_a, provider_a) = chain.provider(&operator_a);
    let operator_b = Keypair::new();
    let (authority_b, provider_b) = chain.provider(&operator_b);
    let bounty = chain.token_account(&operator_a.pubkey(), 0);

    let client = Keypair::new();
    chain.airdrop(&client.pubkey(), 10 * SOL);
    let shards = [TestShard::random(300_000, 1), TestShard::random(70_000, 2)];
    let deals: Vec<Pubkey> = shards
        .iter()
        .enumerate()
        .map(|(i, s)| chain.propose(&client, &provider_a, s, i as u16, 3))
        .collect();
    let lazy_shard = TestShard::random(10_000, 3);
    let lazy = chain.propose(&client, &provider_b, &lazy_shard, 5, 3);

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

    let mut config = node_config(dir.path(), &chain, &authority_a.pubkey(), &operator_a);
    config.bounty_token_account = bounty.to_string();
    let node = rt
        .block_on(cairn_storage_node::node::start(config))
        .expect("node starts");

    // Upload both shards through the QUIC client; the node accepts on chain.
    rt.block_on(async {
        let c = NodeClient::connect(node.quic_addr, operator_key(&operator_a))
            .await
            .unwrap();
        for (deal, shard) in deals.iter().zip(&shards) {
            let status = c.upload(deal, &client, &shard.data).await.expect("upload");
            assert_eq!(status.state, ShardState::Stored);
            assert_eq!(
                c.get_shard(deal, 0, shard.data.len() as u64).await.unwrap(),
                shard.data
            );
        }
        c.close().await;
    });
    // Node B stores its shard, proves its first epoch, and is stopped.
    let config_b = node_config(
        &dir.path().join("b"),
        &chain,
        &authority_b.pubkey(),
        &operator_b,
    );
    let node_b = rt
        .block_on(cairn_storage_node::node::start(config_b))
        .expect("node B starts");
    rt.block_on(async {
        let c = NodeClient::connect(node_b.quic_addr, operator_key(&operator_b))
            .await
            .unwrap();
        let status = c
            .upload(&lazy, &client, &lazy_shard.data)
            .await
            .expect("upload to B");
        assert_eq!(status.state, ShardState::Stored);
        c.close().await;
    });
    poll("node B's first proof", Duration::from_secs(180), || {
        (chain.deal(&lazy).proven_epochs >= 1).then_some(())
    });
    rt.block_on(node_b.stop());
    let lazy_proven = chain.deal(&lazy).proven_epochs;

    let accepted: Vec<Deal> = deals.iter().map(|d| chain.deal(d)).collect();
    for d in &accepted {
        assert_eq!(d.state, DealState::Active);
    }

    // Wait until every epoch of both deals has closed.
    let params = localnet_params(&chain);
    let end = accepted.iter().map(|d| d.end_epoch).max().unwrap();
    let done_slot = end * params.epoch_slots + params.grace_slots + 2;
    let timeout = Duration::from_millis(4 * 300 * (done_slot.saturating_sub(chain.slot()) + 30));
    poll("the deals' last proof window to close", timeout, || {
        (chain.slot() >= done_slot).then_some(())
    });

    let mut proofs = 0;
    for (key, before) in deals.iter().zip(&accepted) {
        let d = chain.deal(key);
        let epochs = d.end_epoch - d.start_epoch;
        assert_eq!(
            (d.proven_epochs, d.total_faults, d.settled_through),
            (epochs, 0, d.end_epoch - 1),
            "deal {key} (start {}, end {})",
            before.start_epoch,
            before.end_epoch
        );
        proofs += epochs;
    }
    let metrics = &node.node.metrics;
    assert_eq!(
        metrics.proofs_ok.load(Relaxed),
        proofs,
        "one accepted proof per deal per epoch"
    );
    assert_eq!(metrics.deals_accepted.load(Relaxed), 2);

    // Provider B's missed epochs were reported by A's node, which earned the bounty.
    // Node B's epochs after it stopped were reported by A's node, which earned
    // the bounty; its proven epoch stays proven.
    let lazy_now = chain.deal(&lazy);
    assert!(lazy_now.total_faults >= 1, "{lazy_now:?}");
    assert_eq!(lazy_now.proven_epochs, lazy_proven, "{lazy_now:?}");
    assert_eq!(
        lazy_now.proven_epochs + lazy_now.total_faults,
        lazy_now.settled_through - lazy_now.start_epoch + 1,
        "every settled epoch is a proof or a fault: {lazy_now:?}"
    );
    assert!(metrics.faults_reported.load(Relaxed) >= 1);
    assert!(chain.token_balance(&bounty) > 0);

    // /metrics over HTTP.
    let addr = node.metrics_addr.unwrap();
    let text = {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(
        text.contains(&format!("cairn_node_proofs_ok_total {proofs}\n")),
        "{text}"
    );
    assert!(text.contains("cairn_node_shards_stored 2\n"), "{text}");
    rt.block_on(node.stop());
}

fn localnet_params(chain: &Chain) -> storage_market::state::MarketParams {
    let data = chain.rpc.get_account_data(&chain.info.market).unwrap();
    storage_market::state::Market::try_deserialize(&mut data.as_slice())
        .unwrap()
        .params
}

struct NodeProcess(Child);

impl NodeProcess {
    fn spawn(config: &Path) -> NodeProcess {
        let child = Command::new(env!("CARGO_BIN_EXE_cairn-node"))
            .args(["--config", config.to_str().unwrap(), "run", "--no-prover"])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("cairn-node starts");
        NodeProcess(child)
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
    let deal = chain.propose(&client, &provider, &shard, 0, 2);

    let port = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap().port()
    };
    let mut config = node_config(dir.path(), &chain, &authority.pubkey(), &operator);
    config.listen = format!("127.0.0.1:{port}").parse().unwrap();
    config.metrics_listen = String::new();
    let config_path = dir.path().join("cairn-node.toml");
    std::fs::write(&config_path, config.documented_toml()).unwrap();
    let addr = config.listen;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let connect = || {
        rt.block_on(async {
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                match NodeClient::connect(addr, operator_key(&operator)).await {
                    Ok(c) => return c,
                    Err(e) if Instant::now() > deadline => panic!("{e}"),
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        })
    };

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
