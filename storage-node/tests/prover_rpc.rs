//! The prover's RPC load, counted through a small HTTP proxy between the node and
//! the real local validator: deal scans (`getProgramAccounts`) stay within a small
//! bound per epoch while the node proves every epoch; and when the proxy answers
//! HTTP 429, then 503, for a while, the node backs off (few requests) and proves
//! again once the endpoint is back.

use axum::{body::Bytes, extract::State, http::StatusCode, response::IntoResponse};
use cairn_chain::Pubkey;
use cairn_core::wire::ShardState;
use cairn_localnet::{Localnet, LocalnetConfig};
use cairn_storage_node::{client::NodeClient, config::Config};
use cairn_tests::rpc::{one_validator_at_a_time, poll, SOL};
use cairn_tests::TestShard;
use support::chain::{write_keypair, Chain};

mod support;
use solana_keypair::Keypair;
use solana_signer::Signer;
use std::{
    collections::BTreeMap,
    sync::{
        atomic::{AtomicU16, Ordering::Relaxed},
        Arc, Mutex,
    },
    time::Duration,
};
use storage_market::state::{Deal, DealState};

/// An HTTP proxy in front of the validator's JSON-RPC endpoint that counts the
/// requests by method, and answers with an error status instead while told to.
#[derive(Default)]
struct CountingProxy {
    /// Requests by JSON-RPC method.
    counts: Mutex<BTreeMap<String, u64>>,
    /// 0: forward; otherwise the HTTP status every request gets.
    failing_with: AtomicU16,
}

impl CountingProxy {
    fn snapshot(&self) -> BTreeMap<String, u64> {
        self.counts.lock().unwrap().clone()
    }
}

type ProxyState = (Arc<CountingProxy>, reqwest::Client, String);

async fn forward(
    State((proxy, client, upstream)): State<ProxyState>,
    body: Bytes,
) -> impl IntoResponse {
    let request: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let calls = match &request {
        serde_json::Value::Array(calls) => calls.clone(),
        call => vec![call.clone()],
    };
    {
        let mut counts = proxy.counts.lock().unwrap();
        for call in calls {
            let method = call["method"].as_str().unwrap_or("?").to_string();
            *counts.entry(method).or_default() += 1;
        }
    }
    let failing = proxy.failing_with.load(Relaxed);
    if failing != 0 {
        let status = StatusCode::from_u16(failing).unwrap();
        return (status, Bytes::new()).into_response();
    }
    let answer = client
        .post(&upstream)
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await;
    match answer {
        Ok(answer) => {
            let status = StatusCode::from_u16(answer.status().as_u16()).unwrap();
            match answer.bytes().await {
                Ok(bytes) => (status, bytes).into_response(),
                Err(_) => StatusCode::BAD_GATEWAY.into_response(),
            }
        }
        Err(_) => StatusCode::BAD_GATEWAY.into_response(),
    }
}

/// Starts the proxy on a free port; returns its URL.
async fn start_proxy(proxy: Arc<CountingProxy>, upstream: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = axum::Router::new()
        .route("/", axum::routing::post(forward))
        .with_state((proxy, reqwest::Client::new(), upstream));
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}")
}

#[test]
fn prover_rpc_counted_through_a_proxy_scans_deals_a_few_times_an_epoch_and_recovers_from_429_and_503(
) {
    let _serial = one_validator_at_a_time();
    const SLOT_MS: u64 = 300;
    const EPOCH_SLOTS: u64 = 20;
    let localnet = Localnet::start(LocalnetConfig {
        slot_ms: Some(SLOT_MS),
        epoch_slots: Some(EPOCH_SLOTS),
        ..LocalnetConfig::default()
    })
    .expect("localnet starts");
    let chain = Chain::new(&localnet);
    let info = chain.info.clone();
    let epoch_of = |slot: u64| slot / EPOCH_SLOTS;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let proxy = Arc::new(CountingProxy::default());
    let proxy_url = rt.block_on(start_proxy(proxy.clone(), info.rpc_url.clone()));

    // A registered, staked provider whose operator is funded.
    let operator = Keypair::new();
    let (authority, provider) = chain.provider(&operator);

    // Its node, reading the chain through the proxy.
    let dir = tempfile::tempdir().unwrap();
    let keypair = dir.path().join("operator.json");
    write_keypair(&operator, &keypair);
    let config = Config {
        data_dir: dir.path().join("data"),
        listen: "127.0.0.1:0".parse().unwrap(),
        metrics_listen: String::new(),
        rpc_url: proxy_url,
        provider_authority: authority.pubkey().to_string(),
        operator_keypair: keypair,
        poll_ms: 200,
        ..Config::default()
    };
    let reconcile = Duration::from_secs(config.reconcile_secs);
    let node = rt
        .block_on(cairn_storage_node::node::start(config))
        .expect("node starts");
    chain.wait_lookup_table_rooted(&node, &provider);

    // Two deals, long enough for both phases, proposed and uploaded.
    const DURATION: u64 = 16;
    let client = Keypair::new();
    chain.airdrop(&client.pubkey(), 10 * SOL);
    let shards: Vec<TestShard> = (0..2).map(|i| TestShard::random(20_000, 40 + i)).collect();
    let deals = chain.propose_all(
        &client,
        &provider,
        [9u8; 32],
        &shards.iter().collect::<Vec<_>>(),
        DURATION,
    );
    rt.block_on(async {
        let operator_key = Pubkey::new_from_array(operator.pubkey().to_bytes());
        let c = NodeClient::connect(node.quic_addr, operator_key)
            .await
            .unwrap();
        for (deal, shard) in deals.iter().zip(&shards) {
            let status = c.upload(deal, &client, &shard.data).await.expect("upload");
            assert_eq!(status.state, ShardState::Stored);
        }
        c.close().await;
    });
    let start = deals
        .iter()
        .map(|key| {
            poll("the deal accepted", Duration::from_secs(60), || {
                Some(chain.fetch::<Deal>(key)).filter(|d| d.state == DealState::Active)
            })
            .start_epoch
        })
        .max()
        .unwrap();
    let epoch_time = Duration::from_millis(4 * SLOT_MS * EPOCH_SLOTS);
    let wait_proven = |epoch: u64, epochs: u64| {
        poll(
            &format!("epoch {epoch} proven"),
            epoch_time * (epochs as u32 + 2),
            || chain.proven(&provider, epoch).then_some(()),
        )
    };

    // Steady state: from the first proven epoch on, count N epochs' requests.
    wait_proven(start, start.saturating_sub(epoch_of(chain.slot())) + 1);
    const N: u64 = 4;
    let first = epoch_of(chain.slot()) + 1;
    poll("the next epoch", epoch_time * 2, || {
        (epoch_of(chain.slot()) >= first).then_some(())
    });
    let before = proxy.snapshot();
    let scans_before = node.node.metrics.deal_scans.load(Relaxed);
    let timer = std::time::Instant::now();
    wait_proven(first + N - 1, N);
    poll("the epoch after them", epoch_time * 2, || {
        (epoch_of(chain.slot()) >= first + N).then_some(())
    });
    let after = proxy.snapshot();
    let elapsed = timer.elapsed();
    let delta: BTreeMap<&String, u64> = after
        .iter()
        .map(|(method, n)| (method, n - before.get(method).copied().unwrap_or(0)))
        .collect();
    eprintln!("requests over {N} epochs ({elapsed:?}): {delta:?}");
    for epoch in first..first + N {
        assert!(chain.proven(&provider, epoch), "epoch {epoch} proven");
    }
    // One scan an epoch (after its session), one every `reconcile_secs`, and one
    // for an epoch boundary the window straddles.
    let scans = after.get("getProgramAccounts").copied().unwrap_or(0)
        - before.get("getProgramAccounts").copied().unwrap_or(0);
    let bound = N + 1 + elapsed.as_secs() / reconcile.as_secs() + 1;
    assert!(
        scans <= bound,
        "{scans} getProgramAccounts in {N} epochs (at most {bound}): {delta:?}"
    );
    assert_eq!(
        scans,
        node.node.metrics.deal_scans.load(Relaxed) - scans_before,
        "every scan counted by the node went through the proxy"
    );

    // Faults: as soon as the node has proven an epoch (read from the node itself,
    // so that no session is in flight: a session retries on its own until its
    // deadline), the endpoint rate limits (HTTP 429: the RPC client itself retries
    // those a few times), then fails (HTTP 503) for two epochs' worth of time.
    let sessions = node.node.metrics.sessions_proven.load(Relaxed);
    poll("the node's next session", epoch_time * 2, || {
        (node.node.metrics.sessions_proven.load(Relaxed) > sessions).then_some(())
    });
    let failed_before = node.node.metrics.prover_rounds_failed.load(Relaxed);
    proxy.failing_with.store(429, Relaxed);
    std::thread::sleep(Duration::from_millis(SLOT_MS * EPOCH_SLOTS));
    proxy.failing_with.store(503, Relaxed);
    let during = proxy.snapshot();
    let outage = Duration::from_millis(2 * SLOT_MS * EPOCH_SLOTS);
    std::thread::sleep(outage);
    let ended = proxy.snapshot();
    proxy.failing_with.store(0, Relaxed);
    let back = epoch_of(chain.slot());
    let requests = ended.values().sum::<u64>() - during.values().sum::<u64>();
    eprintln!("{requests} requests during a {outage:?} outage: {ended:?} after {during:?}");
    // Backed off: a round every 200 ms would make one request each; the backoff
    // doubles up to 4 s (plus jitter).
    let every_poll = outage.as_millis() as u64 / 200;
    assert!(
        requests <= every_poll / 4,
        "{requests} requests in {outage:?} of HTTP 503 (a round every poll: {every_poll})"
    );
    assert!(node.node.metrics.prover_rounds_failed.load(Relaxed) > failed_before);
    // Back: the node proves again (its last backoff may have taken most of the
    // epoch it came back in, and the next), every epoch from then on.
    assert!(back + 4 < start + DURATION, "the deals run past the faults");
    for epoch in back + 2..back + 4 {
        wait_proven(epoch, epoch.saturating_sub(epoch_of(chain.slot())) + 1);
    }
    rt.block_on(node.stop());
}
