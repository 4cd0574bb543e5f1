//! The follower against a real validator:
//! - through a fault-injecting JSON-RPC proxy (a small HTTP server in this
//!   test, in front of the validator's RPC) that refuses `getTransaction` for
//!   one signature for good, strips the status metadata of another (so it
//!   does not decode) and answers HTTP 503 to the first requests for a third:
//!   the follower skips and records the first two, retries the third, and
//!   indexes everything else;
//! - at finalized commitment: nothing is shown before it is finalized.
use axum::{
    body::Bytes,
    extract::State,
    http::{header, StatusCode},
    response::{IntoResponse, Response},
    routing::post,
    Router,
};
use cairn_chain::{provider_pda, Pubkey};
use cairn_localnet::{Localnet, LocalnetConfig, LocalnetInfo};
use cairn_tests::rpc::{one_validator_at_a_time, poll, TestChain, SOL};
use serde_json::{json, Value};
use solana_commitment_config::CommitmentConfig;
use solana_keypair::Keypair;
use solana_rpc_client::rpc_client::GetConfirmedSignaturesForAddress2Config;
use solana_signer::Signer;
use std::{
    path::Path,
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};
use storage_market::instructions::RegisterProviderArgs;

const SLOT_MS: u64 = 300;

fn start_localnet() -> (Localnet, LocalnetInfo, TestChain) {
    let localnet = Localnet::start(LocalnetConfig {
        slot_ms: Some(SLOT_MS),
        ..LocalnetConfig::default()
    })
    .expect("localnet starts");
    let info = localnet.info().clone();
    let chain = TestChain::connect(&info.rpc_url, &info.faucet_keypair, info.market_ix());
    (localnet, info, chain)
}

/// Registers a new provider in one transaction; its signature and account.
fn register(chain: &TestChain, n: usize) -> (String, Pubkey) {
    let authority = Keypair::new();
    let sig = chain.send(
        &[
            solana_system_interface::instruction::transfer(
                &chain.faucet.pubkey(),
                &authority.pubkey(),
                SOL,
            ),
            chain.ix.register_provider_ix(
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
    (sig, provider_pda(&authority.pubkey()))
}

/// The program's signatures at `commitment`, newest first.
fn program_signatures(
    chain: &TestChain,
    info: &LocalnetInfo,
    commitment: CommitmentConfig,
) -> Vec<String> {
    chain
        .rpc
        .get_signatures_for_address_with_config(
            &info.program_id,
            GetConfirmedSignaturesForAddress2Config {
                commitment: Some(commitment),
                ..Default::default()
            },
        )
        .expect("getSignaturesForAddress")
        .into_iter()
        .map(|s| s.signature)
        .collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn http_get(port: u16, path: &str) -> Option<(u16, Value)> {
    cairn_indexer::client::get_json(([127, 0, 0, 1], port).into(), path).ok()
}

struct Indexer {
    child: Child,
    port: u16,
}

impl Indexer {
    fn spawn(rpc_url: &str, info: &LocalnetInfo, db: &Path) -> Indexer {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_cairn-indexer"))
            .args(["--url", rpc_url])
            .args(["--program-id", &info.program_id.to_string()])
            .args(["--db", db.to_str().unwrap()])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--poll-ms", "100", "--reconcile-secs", "1"])
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

    fn get(&self, path: &str) -> (u16, Value) {
        poll(&format!("GET {path}"), Duration::from_secs(60), || {
            http_get(self.port, path)
        })
    }

    fn ok(&self, path: &str) -> Value {
        let (status, body) = self.get(path);
        assert_eq!(status, 200, "{path}: {body}");
        body
    }

    fn cursor(&self) -> Option<String> {
        self.ok("/health")["cursor"]["signature"]
            .as_str()
            .map(str::to_string)
    }

    fn metric(&self, name: &str) -> Option<u64> {
        let (_, body) =
            cairn_indexer::client::get(([127, 0, 0, 1], self.port).into(), "/metrics").ok()?;
        String::from_utf8_lossy(&body)
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
    }
}

impl Drop for Indexer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What the proxy does to `getTransaction` of given signatures.
#[derive(Default)]
struct Faults {
    /// Answered with JSON-RPC error -32015 (unsupported transaction version).
    refuse: Option<String>,
    /// Answered with the transaction, its status metadata removed.
    strip_meta: Option<String>,
    /// Answered HTTP 503 this many more times.
    unavailable: Option<(String, u32)>,
    /// `getTransaction` requests seen, by signature.
    seen: Vec<String>,
}

struct Proxy {
    upstream: String,
    http: reqwest::Client,
    faults: Mutex<Faults>,
}

async fn proxy(State(p): State<Arc<Proxy>>, body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut strip = false;
    if request["method"] == "getTransaction" {
        let sig = request["params"][0]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut f = p.faults.lock().unwrap();
        f.seen.push(sig.clone());
        if f.refuse.as_deref() == Some(&sig) {
            let answer = json!({
                "jsonrpc": "2.0",
                "id": request["id"],
                "error": {
                    "code": -32015,
                    "message": "Transaction version (1) is not supported by the requesting client (injected)",
                },
            });
            return (
                [(header::CONTENT_TYPE, "application/json")],
                answer.to_string(),
            )
                .into_response();
        }
        if let Some((s, left)) = &mut f.unavailable {
            if *s == sig && *left > 0 {
                *left -= 1;
                return (StatusCode::SERVICE_UNAVAILABLE, "injected").into_response();
            }
        }
        strip = f.strip_meta.as_deref() == Some(&sig);
    }
    let answer = p
        .http
        .post(&p.upstream)
        .header(header::CONTENT_TYPE, "application/json")
        .body(body)
        .send()
        .await
        .expect("the validator answers");
    let status = answer.status();
    let mut bytes = answer.bytes().await.expect("the answer's body").to_vec();
    if strip {
        let mut v: Value = serde_json::from_slice(&bytes).unwrap();
        assert!(v["result"].is_object(), "{v}");
        v["result"]["meta"] = Value::Null;
        bytes = v.to_string().into_bytes();
    }
    (
        StatusCode::from_u16(status.as_u16()).unwrap(),
        [(header::CONTENT_TYPE, "application/json")],
        bytes,
    )
        .into_response()
}

/// Starts the proxy in front of `upstream` on its own thread; its URL.
fn start_proxy(upstream: &str, faults: Faults) -> (String, Arc<Proxy>) {
    let p = Arc::new(Proxy {
        upstream: upstream.to_string(),
        http: reqwest::Client::new(),
        faults: Mutex::new(faults),
    });
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let app = Router::new().route("/", post(proxy)).with_state(p.clone());
    std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).unwrap();
            axum::serve(listener, app).await.unwrap();
        });
    });
    (url, p)
}

#[test]
fn injected_rpc_faults_one_refused_one_undecodable_one_flaky_transaction_are_skipped_or_retried() {
    let _serial = one_validator_at_a_time();
    let (_localnet, info, chain) = start_localnet();
    let sigs: Vec<String> = (0..6).map(|n| register(&chain, n).0).collect();
    let newest = sigs.last().unwrap().clone();
    poll("the history finalized", Duration::from_secs(120), || {
        program_signatures(&chain, &info, CommitmentConfig::finalized())
            .first()
            .filter(|s| **s == newest)
            .map(|_| ())
    });
    let history = program_signatures(&chain, &info, CommitmentConfig::finalized());

    let (url, proxy) = start_proxy(
        &info.rpc_url,
        Faults {
            refuse: Some(sigs[1].clone()),
            strip_meta: Some(sigs[3].clone()),
            unavailable: Some((sigs[4].clone(), 3)),
            ..Faults::default()
        },
    );
    let dir = tempfile::tempdir().unwrap();
    let indexer = Indexer::spawn(&url, &info, &dir.path().join("db"));
    poll(
        "the indexer past the faulty transactions",
        Duration::from_secs(120),
        || (indexer.cursor()? == newest).then_some(()),
    );

    let stats = indexer.ok("/v1/stats");
    assert_eq!(stats["skipped_transactions"], 2, "{stats}");
    assert_eq!(
        stats["transactions"].as_u64().unwrap(),
        history.len() as u64 - 2,
        "every other transaction is indexed: {stats}"
    );
    let skipped = indexer.ok("/v1/skipped");
    let items = skipped["items"].as_array().unwrap();
    let listed: Vec<&str> = items
        .iter()
        .map(|s| s["signature"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [sigs[1].as_str(), sigs[3].as_str()], "{skipped}");
    assert!(items
        .iter()
        .all(|s| s["slot"].as_u64().unwrap() > 0 && !s["reason"].as_str().unwrap().is_empty()));
    assert_eq!(
        indexer.metric("cairn_indexer_skipped_transactions_total"),
        Some(2)
    );
    let f = proxy.faults.lock().unwrap();
    // The flaky one was asked for again after each 503, and not skipped.
    assert_eq!(f.unavailable.as_ref().unwrap().1, 0);
    assert!(f.seen.iter().filter(|s| **s == sigs[4]).count() >= 4);
    // The refused one was given up at once, not retried.
    assert_eq!(f.seen.iter().filter(|s| **s == sigs[1]).count(), 1);
}

#[test]
fn shows_nothing_before_it_is_finalized() {
    let _serial = one_validator_at_a_time();
    let (_localnet, info, chain) = start_localnet();
    let dir = tempfile::tempdir().unwrap();
    let indexer = Indexer::spawn(&info.rpc_url, &info, &dir.path().join("db"));
    // A first transaction, indexed once finalized.
    let (first, _) = register(&chain, 1);
    poll("the indexer caught up", Duration::from_secs(120), || {
        (indexer.cursor()? == first).then_some(())
    });

    // Confirmed now; finalized some 32 slots later.
    let (sig, provider) = register(&chain, 2);
    let slot = chain
        .rpc
        .get_signature_statuses(&[sig.parse().unwrap()])
        .unwrap()
        .value[0]
        .as_ref()
        .expect("a status")
        .slot;
    let mut checks = 0;
    loop {
        let finalized = chain
            .rpc
            .get_slot_with_commitment(CommitmentConfig::finalized())
            .unwrap();
        // The indexer's answers are read after the finalized slot: anything
        // shown must have been final when read.
        let cursor = indexer.cursor();
        let (status, _) = indexer.get(&format!("/v1/providers/{provider}"));
        let now_finalized = chain
            .rpc
            .get_slot_with_commitment(CommitmentConfig::finalized())
            .unwrap();
        if now_finalized >= slot {
            break;
        }
        assert_ne!(
            cursor.as_deref(),
            Some(sig.as_str()),
            "the transaction of slot {slot} is indexed while slot {finalized} is finalized"
        );
        assert_eq!(
            status, 404,
            "the provider registered in slot {slot} is shown while slot {finalized} is finalized"
        );
        checks += 1;
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        checks >= 5,
        "checked only {checks} times before finalization"
    );
    poll("the finalized transaction", Duration::from_secs(60), || {
        (indexer.cursor()? == sig).then_some(())
    });
    assert_eq!(indexer.get(&format!("/v1/providers/{provider}")).0, 200);
}
