//! The API under a flood: 500 concurrent clients on real sockets, half of
//! them asking for listings whose filter matches nothing (each a long scan),
//! half of them asking for the biggest pages and reading the answers slowly,
//! while an honest client reads point answers and gets each one in time.
//! (Listings beyond the scan limit are shed with 503, the honest client's as
//! well as the flood's: the limits are global, not per client.)
use cairn_indexer::{
    api::{self, Api, Metrics},
    ingest,
    store::Store,
    synthetic::{self, Shape},
};
use std::{
    net::SocketAddr,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Provider 0's 20,000 deals are all active; provider 1's stay proposed.
const SHAPE: Shape = Shape {
    providers: 2,
    clients: 50,
    deals_per_provider: 20_000,
    epochs: 0,
    fail_every: 0,
    void_every: 0,
};

const CLIENTS: usize = 500;

/// One request on `stream` (kept alive), its answer read `chunk` bytes at a
/// time with `pause` between reads; the status code.
async fn request(
    stream: &mut tokio::net::TcpStream,
    path: &str,
    chunk: usize,
    pause: Duration,
) -> std::io::Result<u16> {
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: indexer\r\n\r\n").as_bytes())
        .await?;
    let mut head = Vec::new();
    let mut buf = vec![0u8; chunk];
    // The head, then `content-length` bytes of body.
    let (status, mut left) = loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            let text = String::from_utf8_lossy(&head[..end]).to_ascii_lowercase();
            let status: u16 = text.split(' ').nth(1).unwrap().parse().unwrap();
            let len: usize = text
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .map(|v| v.trim().parse().unwrap())
                .expect("a JSON answer has a content-length");
            break (status, len - (head.len() - end - 4));
        }
    };
    while left > 0 {
        tokio::time::sleep(pause).await;
        let n = stream.read(&mut buf[..chunk.min(left)]).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        left -= n;
    }
    Ok(status)
}

/// `GET path`, retried while it is answered 503; the JSON of its 200.
fn poll_ok(addr: SocketAddr, path: &str) -> serde_json::Value {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = cairn_indexer::client::get_json(addr, path).unwrap();
        match status {
            200 => return body,
            503 if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(50)),
            _ => panic!("{path}: {status} {body}"),
        }
    }
}

#[test]
fn five_hundred_flooding_and_slow_reading_clients_leave_an_honest_client_answered() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let (txs, expected) = synthetic::market(SHAPE);
    for chunk in txs.chunks(2_000) {
        ingest::apply(&store, chunk).unwrap();
    }
    drop(txs);
    assert_eq!(store.stats().unwrap().deals, expected.deals);

    // The server as the binary runs it: two async workers.
    let server = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = server
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let api = Api::new(Arc::new(store), Arc::new(Metrics::default()));
    server.spawn(api::serve(listener, api, std::future::pending()));

    let provider = synthetic::key(1, 0);
    let honest_paths = [
        "/health".to_string(),
        "/v1/stats".to_string(),
        format!("/v1/providers/{provider}"),
    ];
    // Unloaded, for the record.
    let started = Instant::now();
    for path in &honest_paths {
        let (status, _) = cairn_indexer::client::get(addr, path).unwrap();
        assert_eq!(status, 200, "{path}");
    }
    let unloaded = started.elapsed() / honest_paths.len() as u32;

    // The flood, from its own runtime (its own threads).
    let flood = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicU64::new(0));
    let shed = Arc::new(AtomicU64::new(0));
    let connected = Arc::new(AtomicU64::new(0));
    for i in 0..CLIENTS {
        let (stop, answered, shed, connected) = (
            stop.clone(),
            answered.clone(),
            shed.clone(),
            connected.clone(),
        );
        // A filter that matches none of provider 0's deals: the whole index
        // of its deals is read for an empty page, or a bounded part of it.
        let scan = format!("/v1/deals?provider={provider}&state=proposed&limit=500");
        flood.spawn(async move {
            let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
                return;
            };
            connected.fetch_add(1, Ordering::Relaxed);
            while !stop.load(Ordering::Relaxed) {
                let result = if i % 2 == 0 {
                    request(&mut stream, &scan, 4096, Duration::ZERO).await
                } else {
                    // The biggest page, read 1 KiB at a time every 20 ms.
                    request(
                        &mut stream,
                        "/v1/deals?limit=500",
                        1024,
                        Duration::from_millis(20),
                    )
                    .await
                };
                match result {
                    Ok(200) => answered.fetch_add(1, Ordering::Relaxed),
                    Ok(503) => shed.fetch_add(1, Ordering::Relaxed),
                    Ok(other) => panic!("flood: status {other}"),
                    Err(_) => return,
                };
            }
        });
    }
    // Let the flood build up.
    std::thread::sleep(Duration::from_secs(3));
    let at_start = answered.load(Ordering::Relaxed) + shed.load(Ordering::Relaxed);

    let mut worst = Duration::ZERO;
    for round in 0..10 {
        for path in &honest_paths {
            let started = Instant::now();
            let (status, body) = cairn_indexer::client::get(addr, path)
                .unwrap_or_else(|e| panic!("round {round}: {path}: {e}"));
            let took = started.elapsed();
            assert_eq!(
                status,
                200,
                "round {round}: {path}: {}",
                String::from_utf8_lossy(&body)
            );
            // Within the request timeout (10 s, then 503) with room to spare;
            // without the limits the flood's scans left it unanswered for 30 s.
            assert!(
                took < Duration::from_secs(8),
                "round {round}: {path} took {took:?} under the flood"
            );
            worst = worst.max(took);
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let during = answered.load(Ordering::Relaxed) + shed.load(Ordering::Relaxed) - at_start;
    stop.store(true, Ordering::Relaxed);
    eprintln!(
        "{} flood clients connected; {} flood answers ({} shed with 503) while the honest \
         client was served; its worst point read {worst:?} (unloaded {unloaded:?})",
        connected.load(Ordering::Relaxed),
        during,
        shed.load(Ordering::Relaxed),
    );
    assert_eq!(connected.load(Ordering::Relaxed), CLIENTS as u64);
    assert!(
        during > 0,
        "the flood went on while the honest client was served"
    );
    assert!(
        shed.load(Ordering::Relaxed) > 0,
        "listings beyond the limit were shed"
    );
    flood.shutdown_timeout(Duration::from_secs(1));

    // Bounded scans: a filter that matches none of provider 0's 20,000 deals
    // is read in pages of at most MAX_SCAN index entries, each ending with a
    // cursor to go on from; one that matches them all pages to every one.
    let pages = |path: &str| -> (usize, Vec<String>) {
        let mut cursor = String::new();
        let (mut pages, mut items) = (0, Vec::new());
        loop {
            // Scans still running for the flood's last requests may shed
            // this one: retried, as a client of the API does.
            let body = poll_ok(addr, &format!("{path}{cursor}"));
            pages += 1;
            for d in body["items"].as_array().unwrap() {
                items.push(d["address"].as_str().unwrap().to_string());
            }
            match body["next_cursor"].as_str() {
                Some(c) => cursor = format!("&cursor={c}"),
                None => return (pages, items),
            }
        }
    };
    let per_provider = SHAPE.deals_per_provider as usize;
    let (n, none) = pages(&format!(
        "/v1/deals?provider={provider}&state=proposed&limit=500"
    ));
    assert!(none.is_empty());
    assert!(
        n >= per_provider / cairn_indexer::query::MAX_SCAN,
        "{n} pages: each reads at most {} entries",
        cairn_indexer::query::MAX_SCAN
    );
    let (_, all) = pages(&format!(
        "/v1/deals?provider={provider}&state=active&limit=500"
    ));
    let unique: std::collections::HashSet<&String> = all.iter().collect();
    assert_eq!((all.len(), unique.len()), (per_provider, per_provider));
    server.shutdown_timeout(Duration::from_secs(1));
}
