//! The whole network on one machine, under failure (the `cairn demo` story):
//! a local validator, 6 storage nodes and the indexer as separate processes
//! (this binary re-run as each service); a dataset with nested directories,
//! empty files, unicode names, a 64 MiB file and many small files uploaded
//! with k = 4, m = 2 (one data group and the index group holding the
//! manifest, each on the 6 nodes); three epochs in which every provider's one proof session
//! sets its bit, on chain and in the indexer; two nodes SIGKILLed, their first
//! failed epoch seen while the survivors proved it; downloads from the 4
//! survivors; `cairn repair` at the first failure (the client ends the failed
//! deals and places the next generation on two fresh nodes); the failed deals
//! settled with every penalty and the collateral left paid to the client; one
//! corrupted byte on disk named by the download and failing that segment's proof.
//!
//! `harness = false`: `main` first checks whether it was started as a service
//! (`__serve`), then runs the scenario once.
use std::ffi::OsString;
use std::path::Path;
use std::process::ExitCode;

use cairn_dev::demo::{launch, DemoArgs, DemoReport};
use std::time::Duration;

/// The dataset: (path, bytes) of every file, written under `root`.
fn write_dataset(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    let mut files: Vec<(String, Vec<u8>)> = vec![
        (
            "model/weights.bin".into(),
            (0..64 << 20).map(|_| next() as u8).collect(),
        ),
        ("empty".into(), Vec::new()),
        ("a/b/c/d/also-empty".into(), Vec::new()),
        (
            "données/ünï 名前 🚀.txt".into(),
            "bonjour 世界".as_bytes().to_vec(),
        ),
    ];
    for i in 0..300u64 {
        let len = (next() % 5000) as usize;
        files.push((
            format!("small/{:02}/{i:03}.jsonl", i % 12),
            (0..len).map(|_| next() as u8).collect(),
        ));
    }
    for (path, bytes) in &files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
    files
}

fn assert_same_tree(dir: &Path, files: &[(String, Vec<u8>)]) {
    for (path, bytes) in files {
        let got = std::fs::read(dir.join(path)).unwrap_or_else(|e| panic!("{path}: {e}"));
        assert!(got == *bytes, "{path} differs in {}", dir.display());
    }
    let count = walk(dir);
    assert_eq!(count, files.len(), "extra files in {}", dir.display());
}

fn walk(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                walk(&e.path())
            } else {
                1
            }
        })
        .sum()
}

fn scenario() {
    let _validator = cairn_tests::rpc::one_validator_at_a_time();
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("dataset");
    let files = write_dataset(&data);
    let work = root.path().join("network");
    let say = |line: &str| println!("[scenario] {line}");
    let report = cairn_dev::demo::run_with(
        DemoArgs {
            dir: Some(data.clone()),
            sample_mib: 0,
            work_dir: Some(work.clone()),
            watch_epochs: 3,
            rpc_port: None,
            stay: false,
        },
        launch::Launcher::this_exe().unwrap(),
        &say,
        &mut |net, report| {
            explorer_over_the_chain(net, report);
            Ok(())
        },
    )
    .unwrap_or_else(|e| panic!("scenario failed: {e}\nlogs in {}", work.display()));

    // 3. Three epochs: the 12 deals' (6 shards of each of the 2 groups)
    // providers each prove their session for both (their bit set on chain), and
    // the indexer counts the same sessions.
    assert_eq!(report.groups, 1);
    assert_eq!(report.epochs.len(), 3);
    for e in &report.epochs {
        assert_eq!(
            (e.deals, e.providers, e.proven_on_chain, e.proofs_in_indexer),
            (12, 6, 6, 6),
            "{e:?}"
        );
    }

    // 4. Two nodes killed: for each of their deals (one per group), the first
    // failed epoch is within two epochs of the kill, while every survivor
    // proved it.
    assert_eq!(report.failures.len(), 4);
    for f in &report.failures {
        assert!(
            f.first_failed_epoch >= f.killed_in_epoch
                && f.first_failed_epoch <= f.killed_in_epoch + 2,
            "{f:?}"
        );
        assert_eq!(f.survivors_proved, 4, "{f:?}");
    }
    // The clients ended the failed deals at the first failure and were paid, by
    // settlement, every failed epoch's price and penalty and the collateral left;
    // the indexer counts the same failed epochs.
    assert_eq!(report.slashings.len(), 4);
    for s in &report.slashings {
        let per_epoch = s.collateral * u64::from(s.slash_bps) / 10_000;
        assert_eq!(s.penalty_per_epoch, per_epoch, "{s:?}");
        assert!(s.failed_epochs >= 1, "{s:?}");
        assert_eq!(
            s.penalties,
            (s.failed_epochs * per_epoch).min(s.collateral),
            "{s:?}"
        );
        assert_eq!(s.forfeited, s.collateral - s.penalties, "{s:?}");
        assert_eq!(
            s.client_refund,
            (s.duration_epochs - s.proven_epochs) * s.price_per_epoch + s.collateral,
            "{s:?}"
        );
        assert_eq!(s.indexer_failed_epochs, s.failed_epochs, "{s:?}");
        assert_eq!(s.state, "terminated", "{s:?}");
        // The provider's totals are the sums over its two deals.
        let theirs = report.slashings.iter().filter(|x| x.provider == s.provider);
        assert_eq!(
            s.provider_slashed,
            theirs.clone().map(|x| x.penalties).sum::<u64>(),
            "{s:?}"
        );
        assert_eq!(
            s.provider_forfeited,
            theirs.map(|x| x.forfeited).sum::<u64>(),
            "{s:?}"
        );
    }

    // 5. Everything, and one file, from the 4 survivors: byte-exact.
    assert_eq!(report.verified_files, files.len());
    assert_same_tree(&work.join("download-all"), &files);
    let (path, bytes) = files
        .iter()
        .find(|(p, _)| *p == report.single_file)
        .expect("the single file is one of the dataset's");
    assert_eq!(
        &std::fs::read(work.join("download-one").join(path)).unwrap(),
        bytes
    );
    assert_eq!(walk(&work.join("download-one")), 1);

    // 6. Repair: both lost shards on the two fresh nodes, proving.
    let killed: Vec<&str> = report
        .slashings
        .iter()
        .map(|s| s.provider.as_str())
        .collect();
    assert_eq!(report.repaired.len(), 4);
    for r in &report.repaired {
        assert!(!killed.contains(&r.provider.as_str()), "{r:?}");
        assert!(
            killed.contains(&r.old_provider.as_deref().unwrap_or_default()),
            "{r:?}"
        );
        // Repair acted on the first failed epoch: it ended the old deal and
        // placed the next generation at once.
        assert_eq!(r.generation, 1, "{r:?}");
        let first_failure = report
            .failures
            .iter()
            .find(|f| Some(f.provider.as_str()) == r.old_provider.as_deref())
            .expect("the old provider failed");
        assert_eq!(
            r.reason,
            format!("failed epoch {}", first_failure.first_failed_epoch),
            "{r:?}"
        );
        assert!(r.old_deal_ends.is_some(), "{r:?}");
    }
    assert_eq!(report.repaired_first_proof_epoch.len(), 4);
    // The ended deals were settled and closed, their refunds paid.
    assert_eq!(report.closed_old_deals, 4);
    assert_eq!(
        report.refunded_to_client,
        report
            .slashings
            .iter()
            .map(|s| s.client_refund)
            .sum::<u64>()
    );

    // 7. A corrupted byte: the download is still exact and names the provider,
    // whose node finds its own copy corrupt (it checks every read) and refuses to
    // prove that segment.
    assert_same_tree(&work.join("download-after-corruption"), &files);
    let c = &report.corrupted;
    assert!(c.download_status.starts_with("corrupt copy"), "{c:?}");
    assert_ne!(c.proof_of_corrupted_segment, "valid", "{c:?}");
    assert_eq!(c.proof_of_other_segment, "valid", "{c:?}");
    println!("[scenario] passed in {:.0} s", report.seconds);
}

/// The explorer in headless Chromium (Playwright from PyPI, Debian's
/// Chromium) over the indexer following this chain, after deals, proofs, two
/// killed nodes and a repair: every page loads with no console error, the
/// numbers shown are the API's, the API's provider figures are the chain's
/// accounts', search lands on each kind of entity, the charts have a point
/// per epoch, and the overview redraws while the chain goes on. Screenshots:
/// `<target>/tmp/scenario-explorer/`.
fn explorer_over_the_chain(net: &cairn_dev::demo::network::Network, report: &DemoReport) {
    use cairn_chain::Pubkey;
    use serde_json::{json, Value};
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let python = cairn_tests::python::playwright(tmp.parent().expect("<target>/tmp"));
    let shots = tmp.join("scenario-explorer");
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap();
    let get = |path: &str| {
        net.indexer_get(path)
            .unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    let n = |v: &Value, f: &str| v[f].as_u64().unwrap_or_else(|| panic!("{f} in {v}"));

    // The API's providers are the chain's accounts (polled: settlement goes on).
    let rpc = solana_rpc_client::rpc_client::RpcClient::new_with_commitment(
        net.info.rpc_url.clone(),
        solana_commitment_config::CommitmentConfig::confirmed(),
    );
    cairn_tests::rpc::poll(
        "the indexer's providers to equal the chain's",
        Duration::from_secs(90),
        || {
            let listed = get("/v1/providers?limit=500");
            let providers = listed["items"].as_array().unwrap();
            (providers.len() == net.nodes.len()
            && providers.iter().all(|p| {
                let key: Pubkey = p["address"].as_str().unwrap().parse().unwrap();
                let data = rpc.get_account_data(&key).expect("provider account");
                let chain = <storage_market::state::Provider as anchor_lang::AccountDeserialize>::try_deserialize(
                    &mut data.as_slice(),
                )
                .unwrap();
                (n(p, "stake_free"), n(p, "stake_locked"), n(p, "earnings"), n(p, "slashed"), n(p, "forfeited"), n(p, "capacity_bytes"), n(p, "active_deals"))
                    == (chain.stake_free, chain.stake_locked, chain.earnings, chain.slashed, chain.forfeited, chain.capacity_bytes, chain.active_deals)
            }))
        .then_some(())
        },
    );

    let killed = &report.slashings[0];
    let repaired = &report.repaired[0];
    let failed_epoch = report.failures[0].first_failed_epoch;
    let timeline = get(&format!("/v1/deals/{}/events", killed.deal));
    let signature = timeline["items"][0]["signature"]
        .as_str()
        .unwrap()
        .to_string();
    let client = get(&format!("/v1/deals/{}", killed.deal))["client"]
        .as_str()
        .unwrap()
        .to_string();
    let pages = [
        ("overview", String::new()),
        ("killed-provider", format!("provider/{}", killed.provider)),
        (
            "repairing-provider",
            format!("provider/{}", repaired.provider),
        ),
        ("failed-deal", format!("deal/{}", killed.deal)),
        ("repaired-deal", format!("deal/{}", repaired.deal)),
        ("dataset", format!("dataset/{}", report.dataset_id)),
        ("failed-epoch", format!("epoch/{failed_epoch}")),
        ("transaction", format!("tx/{signature}")),
        ("client", format!("client/{client}")),
        ("providers", "providers".into()),
        ("epochs", "epochs".into()),
    ];
    let searches = [
        (
            "provider",
            killed.provider.clone(),
            format!("#/provider/{}", killed.provider),
        ),
        (
            "deal",
            repaired.deal.clone(),
            format!("#/deal/{}", repaired.deal),
        ),
        (
            "dataset",
            report.dataset_id.clone(),
            format!("#/dataset/{}", report.dataset_id),
        ),
        (
            "epoch",
            failed_epoch.to_string(),
            format!("#/epoch/{failed_epoch}"),
        ),
        (
            "transaction",
            signature.clone(),
            format!("#/tx/{signature}"),
        ),
        ("client", client.clone(), format!("#/client/{client}")),
    ];
    let config = json!({
        "base": net.explorer_url().expect("the demo runs an indexer"),
        "shots": shots,
        "pages": pages.iter().map(|(name, hash)| json!({"name": name, "hash": hash})).collect::<Vec<_>>(),
        "searches": searches.iter().map(|(name, q, _)| json!({"name": name, "query": q})).collect::<Vec<_>>(),
        "live_timeout": 60,
    });
    let seen = cairn_tests::python::explore(&python, &config, &shots);
    assert_eq!(
        seen["problems"],
        json!([]),
        "console errors, failed or external requests"
    );
    for (name, _) in &pages {
        assert!(
            seen["pages"][name]["error"].is_null(),
            "{name}: {}",
            seen["pages"][name]
        );
    }
    let shown = |page: &str, field: &str| -> u64 {
        let f = &seen["pages"][page]["fields"][field];
        f["exact"]
            .as_str()
            .unwrap_or_else(|| panic!("{page} has no {field}: {}", seen["pages"][page]))
            .parse()
            .unwrap()
    };

    // Numbers that no longer move once the story is over: shown = API.
    let stats = get("/v1/stats");
    for f in ["stored_bytes", "providers", "active_deals"] {
        assert_eq!(shown("overview", f), n(&stats, f), "overview {f}");
    }
    let p = get(&format!("/v1/providers/{}", killed.provider));
    assert_eq!(
        shown("killed-provider", "slashed"),
        n(&p, "slashed") + n(&p, "forfeited")
    );
    assert_eq!(n(&p, "slashed"), killed.provider_slashed);
    assert_eq!(n(&p, "forfeited"), killed.provider_forfeited);
    assert_eq!(
        shown("killed-provider", "capacity_bytes"),
        n(&p, "capacity_bytes")
    );
    let strip = seen["pages"]["killed-provider"]["strip"]
        .as_array()
        .unwrap();
    let failed_cell = strip
        .iter()
        .find(|c| n(c, "epoch") == failed_epoch)
        .expect("the failed epoch in the strip");
    assert_eq!(failed_cell["outcome"], "F");
    // After the repair every group has all 6 shards again: 2 more can be lost.
    let ds = get(&format!("/v1/datasets/{}", report.dataset_id));
    assert_eq!(n(&ds, "can_lose"), u64::from(cairn_dev::demo::M));
    assert_eq!(shown("dataset", "can_lose"), n(&ds, "can_lose"));
    assert_eq!(shown("dataset", "stored_bytes"), n(&ds, "stored_bytes"));
    let e = get(&format!("/v1/epochs/{failed_epoch}"));
    assert!(n(&e, "failed") >= 1, "{e}");
    assert_eq!(shown("failed-epoch", "failed"), n(&e, "failed"));
    let failed_rows = seen["pages"]["failed-epoch"]["tables"]["failed"]
        .as_array()
        .unwrap();
    assert!(failed_rows.iter().any(|r| r[0].as_str().unwrap().len() > 3));
    // The failed deal's timeline, every event shown with its transaction.
    let rows = seen["pages"]["failed-deal"]["tables"]["timeline"]
        .as_array()
        .unwrap();
    let events = timeline["items"].as_array().unwrap();
    assert_eq!(rows.len(), events.len().min(50));
    let names: Vec<&str> = events.iter().map(|e| e["name"].as_str().unwrap()).collect();
    for expected in ["DealProposed", "DealAccepted", "DealEnded", "DealFinished"] {
        assert!(names.contains(&expected), "{expected} in {names:?}");
    }
    // One chart point per epoch from the first indexed one.
    let charts = &seen["pages"]["overview"]["charts"];
    let drawn = charts["stored-bytes"].as_array().unwrap();
    let first = n(&get("/v1/series"), "first_epoch");
    assert_eq!(n(&drawn[0], "epoch"), first);
    for (i, point) in drawn.iter().enumerate() {
        assert_eq!(n(point, "epoch"), first + i as u64);
    }
    // The chain goes on while the pages are visited: the live overview's
    // charts, redrawn at most 2 s before the series was read, reach its last
    // epoch (or the one before, if an epoch began in between).
    let later = seen["live"]["later"]["charts"]["stored-bytes"]
        .as_array()
        .unwrap()
        .len() as u64;
    let points = n(&seen["live"], "series_points");
    assert!(
        later == points || later + 1 == points,
        "{later} points drawn, {points} in the series"
    );
    for chart in ["proofs", "new-deals"] {
        assert_eq!(
            charts[chart].as_array().unwrap().len(),
            drawn.len(),
            "{chart}"
        );
    }
    // Search.
    for (name, _, hash) in &searches {
        assert_eq!(
            seen["searches"][name]["hash"].as_str().unwrap(),
            hash,
            "search {name}"
        );
    }
    // Live: the chain goes on (nodes prove every epoch); the overview follows it.
    let live = &seen["live"];
    assert_eq!(
        (&live["refreshed"], &live["same_document"]),
        (&json!(true), &json!(true)),
        "{live}"
    );
    let slot = |v: &Value| -> u64 {
        v["fields"]["last_slot"]["exact"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap()
    };
    assert!(slot(&live["later"]) > slot(&live["first"]), "{live}");
    let weight = n(&seen["pages"]["overview"], "transferred_bytes");
    println!(
        "[scenario] explorer: {} pages and {} searches in Chromium, no console error; overview {} bytes, ready in {} ms; screenshots in {}",
        pages.len(),
        searches.len(),
        weight,
        seen["pages"]["overview"]["ready_ms"],
        shots.display()
    );
    assert!(weight < 200 << 10, "the overview weighs {weight} bytes");
}

fn main() -> ExitCode {
    let argv: Vec<OsString> = std::env::args_os().collect();
    if let Some(code) = launch::serve_if_asked(&argv) {
        return code;
    }
    // libtest-style arguments: `--list` lists the one test; a name filter
    // that does not match it skips it.
    let args: Vec<String> = argv[1..]
        .iter()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    if args.iter().any(|a| a == "--list") {
        println!("scenario: test");
        return ExitCode::SUCCESS;
    }
    let filters: Vec<&String> = args.iter().filter(|a| !a.starts_with('-')).collect();
    if !filters.is_empty() && !filters.iter().any(|f| "scenario".contains(f.as_str())) {
        return ExitCode::SUCCESS;
    }
    scenario();
    ExitCode::SUCCESS
}
