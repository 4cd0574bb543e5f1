//! The QUIC server through the real client: real quinn, real RocksDB, real files.
//! The chain is an in-memory [`ChainView`] here (deal states set by the test);
//! `localnet.rs` runs the same paths against the local network.

use cairn_chain::Pubkey;
use cairn_core::wire::{Codec, ErrorCode, PutShard, Request, Response, ShardState};
use cairn_storage_node::{client::NodeClient, server::Limits};
use cairn_tests::TestShard;
use support::{deal, start, start_with};

mod support;
use solana_keypair::Keypair;
use solana_signer::Signer;
use std::{
    sync::{atomic::Ordering::Relaxed, Arc},
    time::{Duration, Instant},
};
use storage_market::state::DealState;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_download_range_and_proof_through_the_real_client() {
    let f = start(1 << 30).await;
    let client = Keypair::new();
    let shard = TestShard::random(1_000_003, 1);
    let key = f.propose(&client, &shard);
    let c = NodeClient::connect(f.addr, f.operator).await.unwrap();

    let info = c.info().await.unwrap();
    assert_eq!(info.operator, f.operator.to_bytes());
    assert_eq!(info.free_capacity, 1 << 30);

    // In two pieces, the second resuming from the reported offset.
    let s = c
        .put_shard(&key, &client, 0, &shard.data[..300_000])
        .await
        .unwrap();
    assert_eq!((s.state, s.received), (ShardState::Receiving, 300_000));
    let s = c.upload(&key, &client, &shard.data).await.unwrap();
    assert_eq!(
        (s.state, s.received, s.size),
        (ShardState::Stored, 1_000_003, 1_000_003)
    );
    assert_eq!(
        *f.chain.accepted.lock().unwrap(),
        vec![key],
        "accept_deal sent once"
    );
    assert_eq!(c.status(&key).await.unwrap().state, ShardState::Stored);

    let all = c.get_shard(&key, 0, shard.data.len() as u64).await.unwrap();
    assert!(all == shard.data, "downloaded bytes differ");
    let range = c.get_shard(&key, 123_457, 70_001).await.unwrap();
    assert_eq!(range, shard.data[123_457..193_458]);
    let err = c.get_shard(&key, 1_000_000, 4).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::OutOfRange), "{err}");

    for index in [0, 4095, 15_625] {
        let p = c.get_proof(&key, index).await.unwrap();
        assert!(cairn_proof::verify_for_shard(
            &shard.root(),
            1_000_003,
            &p.segment,
            index,
            &p.path
        )
        .is_ok());
    }
    let err = c.get_proof(&key, 15_626).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::OutOfRange), "{err}");

    let text = f.node.metrics.render();
    assert!(text.contains("cairn_node_shards_stored 1\n"), "{text}");
    assert!(
        text.contains("cairn_node_upload_bytes_total 1000003\n"),
        "{text}"
    );
    c.close().await;
    f.cancel.cancel();
}

fn code<T>(r: Result<T, cairn_storage_node::client::ClientError>) -> ErrorCode {
    match r {
        Err(e) => e.code().unwrap_or_else(|| panic!("not a refusal: {e}")),
        Ok(_) => panic!("accepted"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_are_typed_errors() {
    let f = start(2_000_000).await;
    let client = Keypair::new();
    let shard = TestShard::random(100_000, 2);
    let key = f.propose(&client, &shard);
    let c = NodeClient::connect(f.addr, f.operator).await.unwrap();

    // Unknown deal; a deal of another provider.
    assert_eq!(
        code(c.put_shard(&Pubkey::new_unique(), &client, 0, b"abc").await),
        ErrorCode::UnknownDeal
    );
    let other = Pubkey::new_unique();
    f.chain.deals.lock().unwrap().insert(
        other,
        deal(&client, Pubkey::new_unique(), shard.root(), 100_000),
    );
    assert_eq!(code(c.status(&other).await), ErrorCode::UnknownDeal);
    // Signed by someone else; claiming the client but signed by someone else.
    assert_eq!(
        code(c.put_shard(&key, &Keypair::new(), 0, &shard.data).await),
        ErrorCode::BadSignature
    );
    let forged = Request::PutShard(PutShard {
        deal: key.to_bytes(),
        offset: 0,
        len: 10,
        client: client.pubkey().to_bytes(),
        signature: Keypair::new()
            .sign_message(&PutShard::signing_message(&key.to_bytes(), 0, 10))
            .into(),
    });
    assert_eq!(
        code(c.put_raw(forged, &shard.data[..10]).await),
        ErrorCode::BadSignature
    );
    // Past the deal's size; not at the resume offset.
    let mut long = shard.data.clone();
    long.push(0);
    assert_eq!(
        code(c.put_shard(&key, &client, 0, &long).await),
        ErrorCode::WrongSize
    );
    assert_eq!(
        code(c.put_shard(&key, &client, 10, &shard.data[10..]).await),
        ErrorCode::OffsetMismatch
    );
    // Too large for the node's capacity.
    let big = TestShard::random(3_000_000, 3);
    let big_key = f.propose(&client, &big);
    assert_eq!(
        code(c.put_shard(&big_key, &client, 0, &big.data[..1000]).await),
        ErrorCode::CapacityExceeded
    );

    // Root mismatch: the bytes are discarded, the partial file is gone.
    let mut wrong = shard.data.clone();
    wrong[50_000] ^= 1;
    assert_eq!(
        code(c.put_shard(&key, &client, 0, &wrong).await),
        ErrorCode::RootMismatch
    );
    assert!(!f.node.store.partial_path(&key.to_bytes()).exists());
    assert!(f.node.store.record(&key.to_bytes()).unwrap().is_none());
    assert_eq!(c.status(&key).await.unwrap().received, 0);
    assert!(f.chain.accepted.lock().unwrap().is_empty());
    // Not yet stored.
    assert_eq!(code(c.get_shard(&key, 0, 10).await), ErrorCode::NotStored);
    assert_eq!(code(c.get_proof(&key, 0).await), ErrorCode::NotStored);
    // Not Proposed anymore.
    f.chain.deals.lock().unwrap().get_mut(&key).unwrap().state = DealState::Cancelled;
    assert_eq!(
        code(c.put_shard(&key, &client, 0, &shard.data).await),
        ErrorCode::NotProposed
    );

    // Frame garbage, an unknown type, a wrong version, an oversized header.
    let refusal = |r: Response| match r {
        Response::Error(e) => e.code,
        other => panic!("answered {other:?}"),
    };
    assert_eq!(
        refusal(c.raw(&[3, 0, 0, 0, 1, 0x7f, 9]).await.unwrap()),
        ErrorCode::BadRequest
    );
    assert_eq!(
        refusal(c.raw(&[2, 0, 0, 0, 9, 0x01]).await.unwrap()),
        ErrorCode::UnsupportedVersion
    );
    assert_eq!(
        refusal(c.raw(&[5, 0, 0, 0, 1, 0x03, 1, 2, 3]).await.unwrap()),
        ErrorCode::BadRequest
    );
    let huge = (1_000_000u32).to_le_bytes();
    assert_eq!(refusal(c.raw(&huge).await.unwrap()), ErrorCode::TooLarge);
    // An encodable request whose header exceeds the node's 1 KiB bound.
    let frame = Codec::new(1 << 16).encode_request(&Request::Info).unwrap();
    let mut padded = frame.clone();
    padded[..4].copy_from_slice(&2000u32.to_le_bytes());
    padded.resize(4 + 2000, 0);
    assert_eq!(refusal(c.raw(&padded).await.unwrap()), ErrorCode::TooLarge);
    // The connection still serves after all that.
    assert_eq!(c.info().await.unwrap().operator, f.operator.to_bytes());
    c.close().await;

    // A client pinned to another operator key cannot connect.
    match NodeClient::connect(f.addr, Pubkey::new_unique()).await {
        Err(e) => assert!(e.is_wrong_identity(), "{e}"),
        Ok(_) => panic!("connected to a node with the wrong identity"),
    }
    f.cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_beyond_the_limit_wait_for_a_free_one() {
    let f = start(1 << 20).await;
    let c = NodeClient::connect(f.addr, f.operator).await.unwrap();
    // The server allows 4 concurrent streams: hold 4 open without a request.
    let mut held = Vec::new();
    for _ in 0..4 {
        let (mut send, recv) = c.connection().open_bi().await.unwrap();
        send.write_all(&[1]).await.unwrap(); // the stream exists once it carries data
        held.push((send, recv));
    }
    let fifth = tokio::time::timeout(Duration::from_millis(500), c.connection().open_bi()).await;
    assert!(fifth.is_err(), "a fifth concurrent stream was opened");
    // Held streams time out (request timeout) and free their slots.
    drop(held);
    let info = tokio::time::timeout(Duration::from_secs(15), c.info()).await;
    assert!(info.expect("a stream frees up").is_ok());
    f.cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bench_command_measures_every_number() {
    use cairn_storage_node::bench;
    let report = bench::run(bench::BenchOptions {
        shards: 1,
        shard_mib: 1,
        proofs: 50,
        epoch_deals: 20,
        samples_per_epoch: 8,
    })
    .await
    .unwrap();
    assert!(report.contains("MB/s, raw quinn"), "{report}");
    assert!(
        report.contains("proof session over 20 deals of 16 KiB (8 samples per epoch"),
        "{report}"
    );
    assert!(
        report.contains("8 samples planned, read and verified"),
        "{report}"
    );
    assert!(
        report.contains("before Proving v2: 20 transactions"),
        "{report}"
    );
    // The planner's transactions per epoch, next to one per deal before.
    let large = cairn_proof::MAX_SHARD_BYTES;
    for n in [1u64, 100, 10_000, 100_000] {
        let small = bench::proof_transactions(n, 16 * 1024, 8);
        let row = format!(
            "{n:>9} {small:>14} {:>14} {n:>18}\n",
            bench::proof_transactions(n, large, 8)
        );
        assert!(report.contains(&row), "{row:?} in {report}");
        // Never more than one per sample, whatever the number of deals.
        assert!((1..=8).contains(&small), "{n}: {small}");
    }
    // A 4 GiB sample fills a transaction: one per sample.
    assert_eq!(bench::samples_per_transaction(large), 1);
    assert_eq!(bench::proof_transactions(100_000, large, 8), 8);
    assert_eq!(bench::proof_transactions(1, large, 8), 1);
}

/// The prover's sessions without a chain: planned over deal-set entries, packed,
/// and every sample read from the node's store by the entry's root and verified.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_takes_its_samples_from_the_shard_with_the_drawn_roots() {
    use cairn_chain::proving;
    use cairn_storage_node::session::{Session, SessionError, ShardsByRoot};
    use storage_market::state::SetEntry;

    let f = start(1 << 30).await;
    let client = Keypair::new();
    let shards: Vec<TestShard> = (0..5)
        .map(|i| TestShard::random(40_000 + i * 1000, 20 + i as u64))
        .collect();
    let c = NodeClient::connect(f.addr, f.operator).await.unwrap();
    for shard in &shards {
        let key = f.propose(&client, shard);
        c.upload(&key, &client, &shard.data).await.unwrap();
    }
    c.close().await;
    let entry = |s: &TestShard, end| SetEntry {
        end_epoch: end,
        shard_bytes: s.data.len() as u64,
        shard_root: s.root(),
    };
    // Entries in another order than the uploads, one ended at the epoch.
    let mut entries: Vec<SetEntry> = shards.iter().rev().map(|s| entry(s, 50)).collect();
    entries[1].end_epoch = 10;
    let index = ShardsByRoot::from_store(&f.node.store).unwrap();
    let session = Session::plan(&[7; 32], &Pubkey::new_unique(), 10, 4, entries.clone());
    assert!(session.owed());
    assert_eq!(session.samples_needed(), 4);
    assert!(session.plan.iter().all(|d| d.live == (d.entry != 1)));
    let txs = session.transactions(0);
    assert_eq!(txs, proving::pack_session(&session.plan));
    let mut built = 0;
    for tx in &txs {
        let samples = session.samples(&f.node, &index, &tx.live).unwrap();
        for (i, sample) in tx.live.iter().zip(&samples) {
            let d = &session.plan[*i];
            let e = &entries[d.entry as usize];
            cairn_proof::verify_for_shard(
                &e.shard_root,
                e.shard_bytes,
                &sample.segment,
                d.segment,
                &sample.path,
            )
            .expect("the sample proves the drawn entry");
        }
        built += samples.len();
    }
    assert_eq!(built, 4);

    // An entry whose shard this node does not hold cannot be proven.
    let stranger = TestShard::random(30_000, 99);
    let only = Session::plan(
        &[7; 32],
        &Pubkey::new_unique(),
        10,
        4,
        vec![entry(&stranger, 50)],
    );
    let live: Vec<usize> = (0..only.plan.len()).collect();
    match only.samples(&f.node, &index, &live) {
        Err(SessionError::NoShard { entry: 0, .. }) => {}
        other => panic!("{other:?}"),
    }
    // A shard deleted once its deal is finished is gone from the store and the index.
    let (first, _) = f.node.store.records().unwrap()[0];
    f.node.remove_shard(&first).unwrap();
    assert!(f.node.store.record(&first).unwrap().is_none());
    assert!(!f.node.store.shard_path(&first).exists());
    let after = ShardsByRoot::from_store(&f.node.store).unwrap();
    let held = shards
        .iter()
        .filter(|s| after.get(&s.root()).is_some())
        .count();
    assert_eq!(held, 4, "one of five shards removed");
    assert!(f
        .node
        .metrics
        .render()
        .contains("cairn_node_shards_stored 4\n"));
    f.cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_limit_are_refused_until_one_closes() {
    let f = start(1 << 20).await;
    // The fixture allows 8 connections.
    let mut open = Vec::new();
    for _ in 0..8 {
        let c = NodeClient::connect(f.addr, f.operator).await.unwrap();
        c.info().await.unwrap();
        open.push(c);
    }
    match NodeClient::connect(f.addr, f.operator).await {
        Err(e) => assert!(e.to_string().contains("cannot connect"), "{e}"),
        Ok(_) => panic!("a ninth connection was accepted"),
    }
    open.pop().unwrap().close().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        match NodeClient::connect(f.addr, f.operator).await {
            Ok(c) => {
                c.info().await.unwrap();
                break;
            }
            Err(e) => assert!(std::time::Instant::now() < deadline, "{e}"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    f.cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streaming_upload_from_a_file_and_download_into_a_file() {
    let f = start(1 << 30).await;
    let client = Keypair::new();
    let shard = TestShard::random(3_000_000, 9);
    let key = f.propose(&client, &shard);
    let dir = tempfile::tempdir().unwrap();
    let source = dir.path().join("shard");
    std::fs::write(&source, &shard.data).unwrap();
    let c = NodeClient::connect(f.addr, f.operator).await.unwrap();
    let file = tokio::fs::File::open(&source).await.unwrap();
    let status = c
        .put_shard_from(&key, &client, 0, shard.data.len() as u64, file)
        .await
        .unwrap();
    assert_eq!(status.state, ShardState::Stored);
    let target = dir.path().join("back");
    let sink = tokio::fs::File::create(&target).await.unwrap();
    c.get_shard_into(&key, 0, shard.data.len() as u64, sink)
        .await
        .unwrap();
    assert!(std::fs::read(&target).unwrap() == shard.data);
    // A source shorter than announced is a client-side error, and the node
    // keeps nothing past what arrived.
    let short = TestShard::random(100_000, 10);
    let short_key = f.propose(&client, &short);
    let err = c
        .put_shard_from(&short_key, &client, 0, 100_000, &short.data[..50_000])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("shard source"), "{err}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let status = c.status(&short_key).await.unwrap();
    assert_eq!(status.state, ShardState::Receiving);
    assert!(status.received <= 50_000, "{status:?}");
    c.close().await;
    f.cancel.cancel();
}

/// The capacity attack: propose a deal, announce its upload with no bytes (or a
/// few), cancel the deal for a full refund, repeat. The node's free capacity must
/// end where it started, and an honest upload of nearly all of it must fit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn announced_and_cancelled_uploads_leave_free_capacity_where_it_started() {
    let f = start(10_000_000).await;
    let attacker = Keypair::new();
    let c = NodeClient::connect(f.addr, f.operator).await.unwrap();
    let start = c.info().await.unwrap().free_capacity;
    assert_eq!(start, 10_000_000);
    for round in 0..20 {
        let shard = TestShard::random(8_000_000, 40 + round);
        let key = f.propose(&attacker, &shard);
        // An upload announced, and (every other round) 1 MB sent, then cancelled.
        let sent = if round % 2 == 0 { 0 } else { 1_000_000 };
        let s = c
            .put_shard(&key, &attacker, 0, &shard.data[..sent])
            .await
            .unwrap();
        assert_eq!(s.received, sent as u64);
        // Only the bytes that arrived are held.
        assert_eq!(
            c.info().await.unwrap().free_capacity,
            start - sent as u64,
            "round {round}"
        );
        f.chain.deals.lock().unwrap().get_mut(&key).unwrap().state = DealState::Cancelled;
        f.node.sweep().await;
        assert!(
            f.node.store.record(&key.to_bytes()).unwrap().is_none(),
            "round {round}: the cancelled deal's upload is still held"
        );
        assert_eq!(
            c.info().await.unwrap().free_capacity,
            start,
            "round {round}"
        );
    }
    let honest = Keypair::new();
    let shard = TestShard::random(9_900_000, 99);
    let key = f.propose(&honest, &shard);
    let s = c.upload(&key, &honest, &shard.data).await.unwrap();
    assert_eq!(s.state, ShardState::Stored);
    assert_eq!(c.info().await.unwrap().free_capacity, 100_000);
    c.close().await;
    f.cancel.cancel();
}

/// A node that finds its own stored copy corrupt answers `CorruptCopy`, before or
/// in the middle of an answer, and still serves the chunks that are intact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_finds_its_copy_corrupt_says_so_with_its_own_code() {
    let f = start(1 << 30).await;
    let client = Keypair::new();
    let shard = TestShard::random(1_000_000, 7);
    let key = f.propose(&client, &shard);
    let c = NodeClient::connect(f.addr, f.operator).await.unwrap();
    c.upload(&key, &client, &shard.data).await.unwrap();
    // The disk flips a byte at 600,000 (segment 9375).
    let path = f.node.store.shard_path(&key.to_bytes());
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[600_000] ^= 0x40;
    std::fs::write(&path, bytes).unwrap();

    let err = c.get_shard(&key, 0, 1_000_000).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::CorruptCopy), "{err}");
    let err = c.get_shard(&key, 599_000, 2000).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::CorruptCopy), "{err}");
    let err = c.get_proof(&key, 600_000 / 64).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::CorruptCopy), "{err}");
    // The intact chunks are served.
    let head = c.get_shard(&key, 0, 500_000).await.unwrap();
    assert!(head == shard.data[..500_000]);
    c.get_proof(&key, 0).await.unwrap();
    assert!(f.node.metrics.corrupt_reads.load(Relaxed) >= 3);
    c.close().await;
    f.cancel.cancel();
}

fn honest_addr() -> std::net::SocketAddr {
    // Another loopback address: the honest client is not the attacker's address.
    "127.0.0.2:0".parse().unwrap()
}

/// One address opens 200 connections: it gets its share, and a client from
/// another address still connects and is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_address_cannot_take_every_connection() {
    let f = start_with(Limits {
        max_connections: 64,
        max_connections_per_ip: 8,
        min_free_disk_bytes: 0,
        ..Limits::default()
    })
    .await;
    let mut held = Vec::new();
    let mut refused = 0;
    for _ in 0..200 {
        match NodeClient::connect(f.addr, f.operator).await {
            Ok(c) => match c.info().await {
                Ok(_) => held.push(c),
                Err(_) => refused += 1,
            },
            Err(_) => refused += 1,
        }
    }
    assert_eq!(held.len(), 8, "{refused} refused");
    let honest = NodeClient::connect_from(honest_addr(), f.addr, f.operator)
        .await
        .expect("a client from another address connects");
    honest.info().await.unwrap();
    assert!(f.node.metrics.connections_refused.load(Relaxed) >= 192);
    f.cancel.cancel();
}

/// Streams that send 3 bytes and stall, and a reader that grants no flow-control
/// credit, are cut off by the request timeout; the node goes on serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_streams_and_a_reader_without_credit_are_cut_off() {
    let f = start_with(Limits {
        request_timeout: Duration::from_millis(800),
        min_free_disk_bytes: 0,
        ..Limits::default()
    })
    .await;
    let client = Keypair::new();
    let shard = TestShard::random(16 << 20, 8);
    let key = f.propose(&client, &shard);
    let c = NodeClient::connect(f.addr, f.operator).await.unwrap();
    c.upload(&key, &client, &shard.data).await.unwrap();

    // 3 bytes of a header, then nothing: answered BadRequest after the timeout.
    let mut stalled = Vec::new();
    for _ in 0..3 {
        let (mut send, recv) = c.connection().open_bi().await.unwrap();
        send.write_all(&[9, 0, 0]).await.unwrap();
        stalled.push((send, recv));
    }
    // A download whose reader never reads: the node's writes get no credit.
    let request = Codec::default()
        .encode_request(&Request::GetShard(cairn_core::wire::GetShard {
            deal: key.to_bytes(),
            offset: 0,
            len: 16 << 20,
        }))
        .unwrap();
    let (mut send, _unread) = c.connection().open_bi().await.unwrap();
    send.write_all(&request).await.unwrap();
    send.finish().unwrap();

    let honest = NodeClient::connect_from(honest_addr(), f.addr, f.operator)
        .await
        .unwrap();
    honest.info().await.unwrap();
    for (_, mut recv) in stalled {
        match cairn_storage_node::client::read_response(&Codec::default(), &mut recv).await {
            Ok(Response::Error(e)) => assert_eq!(e.code, ErrorCode::BadRequest),
            other => panic!("a stalled stream got {other:?}"),
        }
    }
    let deadline = Instant::now() + Duration::from_secs(10);
    while f.node.metrics.writes_timed_out.load(Relaxed) == 0 {
        assert!(
            Instant::now() < deadline,
            "the unread download still holds the node"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let back = honest.get_shard(&key, 0, 1 << 20).await.unwrap();
    assert!(back == shard.data[..1 << 20]);
    f.cancel.cancel();
}

/// 10,000 `ShardStatus` requests for deals the node does not have, from one
/// address: a bounded number of chain lookups (the in-memory chain counts them),
/// and an honest client from another address keeps its latency.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_unknown_deal_requests_cost_a_bounded_number_of_lookups() {
    let f = start_with(Limits {
        unknown_deals_per_sec_per_ip: 20,
        min_free_disk_bytes: 0,
        ..Limits::default()
    })
    .await;
    let client = Keypair::new();
    let shard = TestShard::random(100_000, 9);
    let key = f.propose(&client, &shard);
    let honest = NodeClient::connect_from(honest_addr(), f.addr, f.operator)
        .await
        .unwrap();
    honest.upload(&key, &client, &shard.data).await.unwrap();
    let median = |mut v: Vec<Duration>| {
        v.sort();
        v[v.len() / 2]
    };
    let mut quiet = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        honest.get_shard(&key, 0, 4096).await.unwrap();
        quiet.push(t.elapsed());
    }
    let quiet = median(quiet);

    let before = f.chain.lookups.load(Relaxed);
    let started = Instant::now();
    let attacker = Arc::new(NodeClient::connect(f.addr, f.operator).await.unwrap());
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let a = attacker.clone();
        tasks.push(tokio::spawn(async move {
            let mut answered = 0;
            for _ in 0..1250 {
                match a.status(&Pubkey::new_unique()).await {
                    Err(e) => {
                        let code = e.code().expect("a typed refusal");
                        assert!(matches!(code, ErrorCode::UnknownDeal | ErrorCode::Busy));
                        answered += 1;
                    }
                    Ok(s) => panic!("an unknown deal has a status: {s:?}"),
                }
            }
            answered
        }));
    }
    let mut loaded = Vec::new();
    while tasks.iter().any(|t| !t.is_finished()) {
        let t = Instant::now();
        honest.get_shard(&key, 0, 4096).await.unwrap();
        loaded.push(t.elapsed());
    }
    let mut answered = 0;
    for t in tasks {
        answered += t.await.unwrap();
    }
    assert_eq!(answered, 10_000);
    let secs = started.elapsed().as_secs_f64();
    let lookups = f.chain.lookups.load(Relaxed) - before;
    // A burst of 20, then 20 a second (plus the one in flight when a second ends).
    let bound = 20 + (secs.ceil() as u64 + 1) * 21;
    println!(
        "10,000 unknown-deal requests in {secs:.2} s: {lookups} chain lookups (bound {bound}); \
         honest 4 KiB read p50 {quiet:?} quiet, {:?} under attack ({} reads)",
        median(loaded.clone()),
        loaded.len()
    );
    assert!(lookups <= bound, "{lookups} lookups > {bound}");
    let loaded = median(loaded);
    assert!(
        loaded <= quiet * 2 + Duration::from_millis(2),
        "honest p50 {loaded:?} under attack vs {quiet:?} quiet"
    );
    f.cancel.cancel();
}

/// A forged upload costs no chain lookup (the signature is checked first), and an
/// upload left half way has its file closed once idle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_uploads_cost_no_lookup_and_idle_uploads_are_closed() {
    let f = start_with(Limits {
        request_timeout: Duration::from_millis(300),
        min_free_disk_bytes: 0,
        ..Limits::default()
    })
    .await;
    let c = NodeClient::connect(f.addr, f.operator).await.unwrap();
    let client = Keypair::new();
    let before = f.chain.lookups.load(Relaxed);
    for _ in 0..100 {
        let deal = Pubkey::new_unique();
        let forged = Request::PutShard(PutShard {
            deal: deal.to_bytes(),
            offset: 0,
            len: 3,
            client: client.pubkey().to_bytes(),
            signature: Keypair::new()
                .sign_message(&PutShard::signing_message(&deal.to_bytes(), 0, 3))
                .into(),
        });
        assert_eq!(
            code(c.put_raw(forged, b"abc").await),
            ErrorCode::BadSignature
        );
    }
    assert_eq!(
        f.chain.lookups.load(Relaxed),
        before,
        "forged uploads read the chain"
    );

    let shard = TestShard::random(1_000_000, 14);
    let key = f.propose(&client, &shard);
    c.put_shard(&key, &client, 0, &shard.data[..400_000])
        .await
        .unwrap();
    assert_eq!(f.node.open_uploads(), 1);
    tokio::time::sleep(Duration::from_millis(700)).await;
    f.node.sweep().await;
    assert_eq!(
        f.node.open_uploads(),
        0,
        "an idle upload keeps its file open"
    );
    // It resumes from its durable offset all the same.
    let done = c.upload(&key, &client, &shard.data).await.unwrap();
    assert_eq!(done.state, ShardState::Stored);
    assert!(c.get_shard(&key, 0, 1_000_000).await.unwrap() == shard.data);
    c.close().await;
    f.cancel.cancel();
}
