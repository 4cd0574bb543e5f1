//! The explorer page in headless Chromium (Debian's `chromium` package): it
//! loads from the binary, renders the providers table from the API, and a
//! screenshot is taken.
use cairn_indexer::{ingest, store::Store, synthetic};
use std::{
    io::{Read, Write},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

const CHROMIUM: &str = "chromium";

fn chromium(args: &[&str]) -> std::process::Output {
    Command::new(CHROMIUM)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
        ])
        .args(["--window-size=1280,900", "--virtual-time-budget=15000"])
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {CHROMIUM} (install Debian's `chromium` package): {e}"))
}

fn wait_http(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
            let _ = write!(
                s,
                "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            );
            let mut out = String::new();
            if s.read_to_string(&mut out).is_ok() && out.starts_with("HTTP/1.1 200") {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "the indexer's API did not come up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn the_explorer_page_shows_the_providers_table_in_headless_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("db");
    let shape = synthetic::Shape {
        providers: 6,
        clients: 4,
        deals_per_provider: 8,
        epochs: 3,
        fail_every: 3,
        void_every: 2,
    };
    {
        let store = Store::open(&db).unwrap();
        ingest::apply(&store, &synthetic::market(shape).0).unwrap();
    }
    // Serve the store; the RPC URL points nowhere, so the follower only
    // retries in the background and the page shows what is stored.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_cairn-indexer"))
        .args(["--url", "http://127.0.0.1:9", "--db", db.to_str().unwrap()])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn cairn-indexer");
    wait_http(port);
    let url = format!("http://127.0.0.1:{port}/");

    let dom = chromium(&["--dump-dom", &url]);
    let dom = String::from_utf8_lossy(&dom.stdout).to_string();
    let table = dom
        .split("<table id=\"providers\">")
        .nth(1)
        .unwrap_or_else(|| panic!("no providers table in the rendered page:\n{dom}"))
        .split("</table>")
        .next()
        .unwrap();
    assert_eq!(
        table.matches("<tr>").count(),
        1 + shape.providers as usize,
        "header + one row per provider"
    );
    let first = synthetic::key(1, 0).to_string();
    assert!(table.contains(&format!("#provider/{first}")), "{table}");
    assert!(dom.contains("<table id=\"epochs\">"));

    // The pages built from the changed JSON: a provider's epoch map, a deal's
    // settlements and epochs, an epoch's proven and failed providers.
    let provider = synthetic::key(1, 0);
    let dom = chromium(&["--dump-dom", &format!("{url}#provider/{provider}")]);
    let dom = String::from_utf8_lossy(&dom.stdout).to_string();
    assert!(
        dom.contains("<code id=\"epoch-map\">.FVF</code>"),
        "provider 0 fails odd epochs, epoch 2 is void:\n{dom}"
    );
    let deal = synthetic::deal_key(0, 0);
    let dom = chromium(&["--dump-dom", &format!("{url}#deal/{deal}")]);
    let dom = String::from_utf8_lossy(&dom.stdout).to_string();
    let settlements = dom
        .split("<table id=\"settlements\">")
        .nth(1)
        .unwrap_or_else(|| panic!("no settlements table on the deal page:\n{dom}"));
    assert_eq!(
        settlements
            .split("</table>")
            .next()
            .unwrap()
            .matches("<tr>")
            .count(),
        1 + 3
    );
    assert!(dom.contains("<table id=\"deal-epochs\">"), "{dom}");
    let dom = chromium(&["--dump-dom", &format!("{url}#epoch/1")]);
    let dom = String::from_utf8_lossy(&dom.stdout).to_string();
    for table in ["proven", "failed"] {
        assert!(dom.contains(&format!("<table id=\"{table}\">")), "{dom}");
    }

    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("explorer.png");
    let _ = std::fs::remove_file(&shot);
    let out = chromium(&[&format!("--screenshot={}", shot.display()), &url]);
    let png = std::fs::read(&shot).unwrap_or_else(|e| {
        panic!(
            "no screenshot at {}: {e}; {}",
            shot.display(),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(png.len() > 10_000, "a blank page? {} bytes", png.len());
    eprintln!("screenshot: {}", shot.display());
    let _ = child.kill();
    let _ = child.wait();
}
