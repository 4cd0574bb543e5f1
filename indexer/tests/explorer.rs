//! The explorer in a real browser (Debian's headless Chromium, driven by
//! Playwright from PyPI), over the real API serving a store built by the real
//! ingest path from a synthetic market: every page loads with no console error
//! and no request leaving the server, shows the API's numbers in human units
//! (the exact value kept for the hover), charts one point per epoch, searches
//! land on each kind of entity, and the overview redraws in place while more
//! transactions are indexed. Screenshots of every page are saved under
//! `<target>/tmp/explorer-screenshots/`. (The same pages over a real chain are
//! checked at the end of the whole-network scenario, `tests/tests/scenario.rs`.)
use cairn_indexer::{
    api::{self, Api, Metrics},
    ingest::{self, Snapshot},
    store::Store,
    synthetic::{self, Shape},
};
use serde_json::{json, Value};
use std::{
    io::{Read, Write},
    path::{Path, PathBuf},
    sync::Arc,
};

const SHAPE: Shape = Shape {
    providers: 6,
    clients: 4,
    deals_per_provider: 12,
    epochs: 8,
    fail_every: 3,
    void_every: 5,
};
/// Decimals of the synthetic mint, as a snapshot of its account gives them.
const DECIMALS: u8 = 6;

/// `GET path` on the API, as JSON.
fn get(port: u16, path: &str) -> Value {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let (head, body) = out.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{path}: {out}");
    serde_json::from_str(body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"))
}

/// Bytes as the explorer shows them (binary units, three significant digits).
fn human_bytes(n: u64) -> String {
    if n < 1024 {
        return format!("{n} bytes");
    }
    let units = ["bytes", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    let (mut x, mut u) = (n as f64, 0);
    while x >= 1024.0 && u < units.len() - 1 {
        x /= 1024.0;
        u += 1;
    }
    let digits = if x >= 100.0 {
        0
    } else if x >= 10.0 {
        1
    } else {
        2
    };
    format!("{x:.digits$} {}", units[u])
}

fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// A token amount as the explorer shows it: whole tokens with the mint's
/// decimals (at most 4 once there is a whole token), then the symbol.
fn human_token(n: u64) -> String {
    let scale = 10u64.pow(u32::from(DECIMALS));
    let whole = n / scale;
    let mut frac = format!("{:0width$}", n % scale, width = usize::from(DECIMALS));
    while frac.ends_with('0') {
        frac.pop();
    }
    if frac.len() > 4 && whole >= 1 {
        frac.truncate(4);
        while frac.ends_with('0') {
            frac.pop();
        }
    }
    if frac.is_empty() {
        frac.push('0');
    }
    format!("{}.{frac} {}", thousands(whole), api::DEFAULT_TOKEN_SYMBOL)
}

/// Runs `explorer_pages.py` with `config`; its report.
fn browse(python: &Path, config: &Value) -> Value {
    let dir = tempfile::tempdir().unwrap();
    cairn_tests::python::explore(python, config, dir.path())
}

fn field<'a>(page: &'a Value, name: &str) -> (&'a str, &'a str) {
    let f = &page["fields"][name];
    assert!(f.is_object(), "no field {name} on the page: {page}");
    (f["exact"].as_str().unwrap(), f["text"].as_str().unwrap())
}

/// The field shows `text` and keeps `exact` for the hover.
fn assert_shows(page: &Value, name: &str, exact: u64, text: &str) {
    assert_eq!(
        field(page, name),
        (exact.to_string().as_str(), text),
        "{name}"
    );
}

fn screenshots() -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("explorer-screenshots");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn every_explorer_page_shows_the_apis_numbers_in_human_units_in_headless_chromium() {
    let python = cairn_tests::python::playwright(&cairn_tests::python::target_dir(env!(
        "CARGO_BIN_EXE_cairn-indexer"
    )));
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path()).unwrap());
    let (txs, _) = synthetic::market(SHAPE);
    // The last epoch's transactions arrive while the overview is open.
    let last_epoch = txs.last().unwrap().slot / synthetic::EPOCH_SLOTS;
    let split = txs
        .iter()
        .position(|t| t.slot / synthetic::EPOCH_SLOTS == last_epoch)
        .unwrap();
    ingest::apply(&store, &txs[..split]).unwrap();
    ingest::reconcile(
        &store,
        &Snapshot {
            slot: 1,
            market: Some(synthetic::market_account(synthetic::EPOCH_SLOTS)),
            mint_decimals: Some(DECIMALS),
            ..Snapshot::default()
        },
    )
    .unwrap();

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    listener.set_nonblocking(true).unwrap();
    let api = Api::new(store.clone(), Arc::new(Metrics::default()));
    let server = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener).unwrap();
                api::serve(listener, api, std::future::pending()).await
            })
    });
    let base = format!("http://127.0.0.1:{port}/");

    let provider = synthetic::key(1, 0).to_string();
    let deal = synthetic::deal_key(0, 0).to_string();
    let client = synthetic::key(5, 0).to_string();
    let dataset = hex::encode(synthetic::dataset_id(0, 0));
    let timeline = get(port, &format!("/v1/deals/{deal}/events?limit=500"));
    let signature = timeline["items"][0]["signature"]
        .as_str()
        .unwrap()
        .to_string();
    let shots = screenshots();
    let pages = [
        ("overview", String::new()),
        ("providers", "providers".into()),
        ("epochs", "epochs".into()),
        ("provider", format!("provider/{provider}")),
        ("deal", format!("deal/{deal}")),
        ("dataset", format!("dataset/{dataset}")),
        ("epoch", "epoch/1".into()),
        ("transaction", format!("tx/{signature}")),
        ("client", format!("client/{client}")),
    ];
    let searches = [
        (
            "provider",
            provider.clone(),
            format!("#/provider/{provider}"),
        ),
        ("deal", deal.clone(), format!("#/deal/{deal}")),
        ("client", client.clone(), format!("#/client/{client}")),
        ("dataset", dataset.clone(), format!("#/dataset/{dataset}")),
        ("epoch", "3".into(), "#/epoch/3".into()),
        (
            "transaction",
            signature.clone(),
            format!("#/tx/{signature}"),
        ),
    ];
    let report = browse(
        &python,
        &json!({
            "base": base,
            "shots": shots,
            "pages": pages.iter().map(|(name, hash)| json!({"name": name, "hash": hash})).collect::<Vec<_>>(),
            "searches": searches.iter().map(|(name, q, _)| json!({"name": name, "query": q}))
                .chain([json!({"name": "nothing", "query": "no-such-thing"})]).collect::<Vec<_>>(),
            "live_timeout": null,
        }),
    );
    assert_eq!(
        report["problems"],
        json!([]),
        "console errors, failed or external requests"
    );
    let page = |name: &str| {
        let p = &report["pages"][name];
        assert!(p["error"].is_null(), "{name} shows an error: {p}");
        p.clone()
    };

    // The overview: the totals of /v1/stats, in human units.
    let stats = get(port, "/v1/stats");
    let n = |v: &Value, f: &str| v[f].as_u64().unwrap_or_else(|| panic!("{f} in {v}"));
    let overview = page("overview");
    assert_shows(
        &overview,
        "stored_bytes",
        n(&stats, "stored_bytes"),
        &human_bytes(n(&stats, "stored_bytes")),
    );
    assert_shows(
        &overview,
        "providers",
        n(&stats, "providers"),
        &thousands(n(&stats, "providers")),
    );
    assert_shows(
        &overview,
        "active_deals",
        n(&stats, "active_deals"),
        &thousands(n(&stats, "active_deals")),
    );
    let slashed = n(&stats, "penalties") + n(&stats, "forfeited");
    assert!(slashed > 0, "providers fail in this market");
    assert_shows(&overview, "slashed", slashed, &human_token(slashed));
    assert_shows(
        &overview,
        "paid",
        n(&stats, "paid"),
        &human_token(n(&stats, "paid")),
    );
    let owed = n(&stats, "sessions") + n(&stats, "failed_epochs");
    assert_eq!(
        field(&overview, "proof_success").0,
        format!("{}/{owed}", n(&stats, "sessions"))
    );
    // One chart point per epoch, with the series' values.
    let series = get(port, "/v1/series");
    let points = series["points"].as_array().unwrap();
    let epochs = n(&series, "current_epoch") - n(&series, "first_epoch") + 1;
    assert_eq!(points.len() as u64, epochs);
    for chart in ["stored-bytes", "proofs", "new-deals"] {
        let drawn: Vec<u64> = overview["charts"][chart]
            .as_array()
            .unwrap_or_else(|| panic!("no {chart} chart"))
            .iter()
            .map(|p| n(p, "epoch"))
            .collect();
        assert_eq!(drawn.len() as u64, epochs, "{chart}");
        assert_eq!(
            drawn,
            points.iter().map(|p| n(p, "epoch")).collect::<Vec<_>>(),
            "{chart}"
        );
    }
    let drawn = |chart: &str| -> Vec<String> {
        overview["charts"][chart]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["value"].as_str().unwrap().to_string())
            .collect()
    };
    let from_api = |f: &dyn Fn(&Value) -> String| points.iter().map(f).collect::<Vec<_>>();
    assert_eq!(
        drawn("stored-bytes"),
        from_api(&|p| n(p, "stored_bytes").to_string())
    );
    assert_eq!(
        drawn("proofs"),
        from_api(&|p| format!("{}/{}/{}", n(p, "proven"), n(p, "failed"), n(p, "void")))
    );
    assert_eq!(
        drawn("new-deals"),
        from_api(&|p| n(p, "new_deals").to_string())
    );
    assert!(
        points.iter().any(|p| n(p, "failed") > 0) && points.iter().any(|p| n(p, "void") > 0),
        "the chart shows failures and void epochs"
    );
    // Page weight: the page and what it reads, nothing from elsewhere.
    let weight = n(&overview, "transferred_bytes");
    assert!(weight < 200 << 10, "the overview weighs {weight} bytes");
    assert_eq!(
        overview["tables"]["providers"].as_array().unwrap().len() as u64,
        SHAPE.providers
    );
    assert_eq!(
        page("providers")["tables"]["providers"]
            .as_array()
            .unwrap()
            .len() as u64,
        SHAPE.providers
    );
    let listed_epochs = get(port, "/v1/epochs?limit=50");
    assert_eq!(
        page("epochs")["tables"]["epochs"].as_array().unwrap().len(),
        listed_epochs["items"].as_array().unwrap().len()
    );

    // A provider: stake, earnings, slashing, capacity; one strip cell per epoch.
    let p = get(port, &format!("/v1/providers/{provider}"));
    let shown = page("provider");
    let stake = n(&p, "stake_free") + n(&p, "stake_locked");
    assert_shows(&shown, "stake", stake, &human_token(stake));
    assert_shows(
        &shown,
        "earnings",
        n(&p, "earnings"),
        &human_token(n(&p, "earnings")),
    );
    let lost = n(&p, "slashed") + n(&p, "forfeited");
    assert_shows(&shown, "slashed", lost, &human_token(lost));
    assert_shows(
        &shown,
        "capacity_bytes",
        n(&p, "capacity_bytes"),
        &human_bytes(n(&p, "capacity_bytes")),
    );
    assert_eq!(shown["fields"]["capacity_bytes"]["text"], "1.00 TiB");
    let strip: String = shown["strip"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["outcome"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(strip, p["epoch_map"]["outcomes"].as_str().unwrap());
    assert!(
        strip.contains('F') && strip.contains('P') && strip.contains('V'),
        "{strip}"
    );
    assert_eq!(
        shown["strip"][0]["epoch"], p["epoch_map"]["from_epoch"],
        "cells start at the map's first epoch"
    );
    assert_eq!(
        shown["tables"]["deals"].as_array().unwrap().len() as u64,
        SHAPE.deals_per_provider.min(20)
    );

    // A deal: its whole timeline, each event with its transaction.
    let d = get(port, &format!("/v1/deals/{deal}"));
    let shown = page("deal");
    assert_shows(
        &shown,
        "escrow",
        n(&d, "escrow"),
        &human_token(n(&d, "escrow")),
    );
    assert_shows(
        &shown,
        "shard_bytes",
        n(&d, "shard_bytes"),
        &human_bytes(n(&d, "shard_bytes")),
    );
    let rows = shown["tables"]["timeline"].as_array().unwrap();
    let events = timeline["items"].as_array().unwrap();
    assert_eq!(rows.len(), events.len());
    assert_eq!(rows[0][1], "Deal proposed");
    assert_eq!(
        shown["tables"]["settlements"].as_array().unwrap().len(),
        d["settlements"].as_array().unwrap().len()
    );

    // A dataset: its health, escrow left and remaining epochs.
    let ds = get(port, &format!("/v1/datasets/{dataset}"));
    let shown = page("dataset");
    assert_shows(
        &shown,
        "escrow_left",
        n(&ds, "escrow_left"),
        &human_token(n(&ds, "escrow_left")),
    );
    assert_shows(
        &shown,
        "stored_bytes",
        n(&ds, "stored_bytes"),
        &human_bytes(n(&ds, "stored_bytes")),
    );
    assert_shows(
        &shown,
        "epochs_remaining",
        n(&ds, "epochs_remaining"),
        &thousands(n(&ds, "epochs_remaining")),
    );

    // An epoch: who proved it and who failed it.
    let e = get(port, "/v1/epochs/1");
    let shown = page("epoch");
    for (f, list) in [("proven", "proven_list"), ("failed", "failed_list")] {
        assert_shows(&shown, f, n(&e, f), &thousands(n(&e, f)));
        assert_eq!(
            shown["tables"][f].as_array().unwrap().len(),
            e[list].as_array().unwrap().len(),
            "{f}"
        );
    }
    assert!(n(&e, "failed") > 0, "providers 0 and 3 fail odd epochs");

    let t = get(port, &format!("/v1/tx/{signature}"));
    assert_eq!(
        page("transaction")["tables"]["events"]
            .as_array()
            .unwrap()
            .len(),
        t["event_list"].as_array().unwrap().len()
    );
    let by_client = get(port, &format!("/v1/deals?client={client}&limit=50"));
    assert_eq!(
        page("client")["tables"]["deals"].as_array().unwrap().len(),
        by_client["items"].as_array().unwrap().len()
    );

    // Search: each kind lands on its page; nothing matching says so.
    for (name, _, hash) in &searches {
        let s = &report["searches"][name];
        assert_eq!(s["hash"].as_str().unwrap(), hash, "search {name}: {s}");
        assert!(s["error"].is_null(), "search {name}: {s}");
    }
    let nothing = &report["searches"]["nothing"];
    assert!(
        nothing["error"]
            .as_str()
            .unwrap()
            .starts_with("Nothing matches “no-such-thing”"),
        "{nothing}"
    );
    for (name, _) in &pages {
        assert!(shots.join(format!("{name}.png")).exists(), "{name}.png");
    }

    // Live: the last epoch's transactions are indexed while the overview is
    // open; it redraws without a reload, with one more chart point.
    let rest = txs[split..].to_vec();
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_secs(4));
            ingest::apply(&store, &rest).unwrap();
        })
    };
    let live = browse(
        &python,
        &json!({"base": base, "shots": shots, "live_timeout": 60}),
    );
    writer.join().unwrap();
    assert_eq!(live["problems"], json!([]));
    let live = &live["live"];
    assert_eq!(
        (&live["refreshed"], &live["same_document"]),
        (&json!(true), &json!(true)),
        "{live}"
    );
    let before = live["first"]["charts"]["stored-bytes"]
        .as_array()
        .unwrap()
        .len();
    let after = live["later"]["charts"]["stored-bytes"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(after, before + 1, "the new epoch is charted");
    assert_eq!(after as u64, n(live, "series_points"));
    let stats = get(port, "/v1/stats");
    assert_eq!(
        field(&live["later"], "last_slot").0,
        n(&stats, "last_slot").to_string()
    );
    eprintln!("screenshots in {}", shots.display());
    drop(server);
}
