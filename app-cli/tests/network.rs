//! The `cairn` binary end to end against a local validator and six real
//! storage nodes (cairn-storage-node started in this process: real QUIC,
//! RocksDB and files): register, upload, status, download byte-exact, with
//! nodes down, a resumed upload after the CLI is killed, repair on the first
//! failed epoch, and the errors a user can hit. The nodes open, prove and
//! settle epochs themselves (docs/DESIGN.md, "Proving v2").
mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use common::{assert_fails, wait, Fixture, TOKEN};
use serde_json::Value;

fn write_tree(root: &Path, seed: u8, big: usize) -> Vec<(String, Vec<u8>)> {
    let mut files = vec![
        (
            "data/big.bin".to_string(),
            (0..big)
                .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
                .collect::<Vec<u8>>(),
        ),
        ("empty".to_string(), Vec::new()),
        (
            "notes/ünï 名前.md".to_string(),
            format!("seed {seed}").into_bytes(),
        ),
    ];
    for i in 0..25 {
        files.push((
            format!("small/{i:02}.txt"),
            vec![b'a' + (i as u8 % 26); i * 11],
        ));
    }
    for (path, bytes) in &files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
    files
}

/// Every deal of a `cairn status --json` report, over its groups, each with
/// its group number (`null` for the index group).
fn status_deals(status: &Value) -> Vec<Value> {
    status["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| {
            g["deals"].as_array().unwrap().iter().map(move |d| {
                let mut d = d.clone();
                d["group"] = g["group"].clone();
                d
            })
        })
        .collect()
}

fn assert_tree(dir: &Path, files: &[(String, Vec<u8>)]) {
    for (path, bytes) in files {
        assert_eq!(&std::fs::read(dir.join(path)).unwrap(), bytes, "{path}");
    }
}

#[test]
fn upload_status_download_resume_and_errors_with_six_real_nodes() {
    let f = Fixture::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let start_node = |i: usize| common::start_node(&f, &rt, i);
    let mut nodes: Vec<Option<_>> = (0..6).map(|i| Some(start_node(i).1)).collect();

    // Upload: every shard placed with a distinct provider and accepted.
    let (_client, client_key) = f.user("client", 100 * TOKEN);
    let data = tempfile::tempdir().unwrap();
    let files = write_tree(data.path(), 1, 1_500_000);
    let state_dir = f.dir.path().join("state");
    let upload = |dir: &Path, extra: &[&str]| -> std::process::Output {
        let mut args = vec![
            "upload",
            dir.to_str().unwrap(),
            "--epochs",
            "40",
            "--state-dir",
            state_dir.to_str().unwrap(),
            "--json",
        ];
        args.extend_from_slice(extra);
        f.cairn(&client_key, &args)
    };
    // Groups of 512 KiB: the 1.5 MB dataset is 3 data groups and the index.
    let out = upload(data.path(), &["--group-size", "512KiB"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = report["dataset_id"].as_str().unwrap().to_string();
    assert_eq!(report["groups"], 3);
    assert_eq!(report["shards"].as_array().unwrap().len(), 6 * 4);
    assert_eq!(report["files"], files.len());

    let status = f.json(&client_key, &["status", &id]);
    assert_eq!(status["health"], "healthy");
    assert_eq!(status["can_lose"], 2);
    assert_eq!(status["data_groups"], 3);
    assert!(status_deals(&status)
        .iter()
        .all(|s| s["state"] == "active" && s["generation"] == 0));

    let outs = tempfile::tempdir().unwrap();
    let dl = |name: &str, extra: &[&str]| -> (PathBuf, std::process::Output) {
        let dest = outs.path().join(name);
        let mut args = vec![
            "download",
            id.as_str(),
            "-o",
            dest.to_str().unwrap(),
            "--json",
        ];
        args.extend_from_slice(extra);
        (dest.clone(), f.cairn(&client_key, &args))
    };
    let (dest, out) = dl("all", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_tree(&dest, &files);
    let (dest, out) = dl("one", &["--file", "notes/ünï 名前.md"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read(dest.join("notes/ünï 名前.md")).unwrap(),
        b"seed 1"
    );

    // m = 2 nodes stopped: still byte-exact, and the two are named.
    for i in [1, 4] {
        rt.block_on(nodes[i].take().unwrap().stop());
    }
    let (dest, out) = dl("degraded", &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_tree(&dest, &files);
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    // Two providers down, one shard of each of the 4 groups each.
    let down = report["providers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["kind"] == "unreachable")
        .count();
    assert_eq!(down, 2 * 4);

    // Errors a user can hit: one line each, exit 1 or 2.
    let (_, out) = dl("nope", &[]);
    assert!(
        out.status.success(),
        "a second download into a new directory works"
    );
    let (_, out) = dl("nope", &[]);
    assert_fails(&out, 2, "exists and is not empty");
    assert_fails(
        &f.cairn(
            &client_key,
            &[
                "download",
                &"0".repeat(64),
                "-o",
                outs.path().join("z").to_str().unwrap(),
            ],
        ),
        1,
        "unknown dataset",
    );
    let small = tempfile::tempdir().unwrap();
    write_tree(small.path(), 2, 1000);
    assert_fails(
        &upload(
            small.path(),
            &["--data-shards", "8", "--parity-shards", "4"],
        ),
        1,
        "no provider can take shard",
    );
    let (_, poor_key) = f.user("poor", 0);
    assert_fails(
        &f.cairn(
            &poor_key,
            &[
                "upload",
                small.path().to_str().unwrap(),
                "--state-dir",
                state_dir.to_str().unwrap(),
            ],
        ),
        1,
        "insufficient funds",
    );

    // Resume: kill the CLI once some shards are proposed, then finish with
    // --resume; no shard is proposed twice (escrow paid once per shard).
    let nodes_up: Vec<usize> = (0..6).filter(|i| nodes[*i].is_some()).collect();
    assert_eq!(nodes_up.len(), 4);
    let second = tempfile::tempdir().unwrap();
    let files2 = write_tree(second.path(), 3, 3_000_000);
    let ata = f.ata(&common::pubkey_of(&client_key));
    let before = f.token_balance(&ata);
    let mut child = f
        .command(&client_key)
        .args([
            "upload",
            second.path().to_str().unwrap(),
            "--data-shards",
            "2",
            "--parity-shards",
            "2",
            // Long enough to outlive the test: nodes delete the shards of
            // finished deals.
            "--epochs",
            "40",
            "--group-size",
            "1MiB",
            "--state-dir",
            state_dir.to_str().unwrap(),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let record = cairn_cli::dataset::state::work_dir(
        &state_dir,
        &common::pubkey_of(&client_key).to_string(),
        second.path(),
    )
    .join("g0")
    .join("upload.json");
    wait("a proposed shard in the upload record", || {
        let text = std::fs::read_to_string(&record).ok()?;
        text.contains("\"stage\": \"proposed\"").then_some(())
    });
    child.kill().unwrap();
    child.wait().unwrap();
    let out = upload(second.path(), &["--resume"]);
    // (The resumed upload keeps its recorded group size: 3 groups of 1 MiB.)
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["resumed"], true);
    let paid: u64 = report["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let deal: storage_market::state::Deal =
                anchor_lang::AccountDeserialize::try_deserialize(
                    &mut f
                        .rpc
                        .get_account_data(&s["deal"].as_str().unwrap().parse().unwrap())
                        .unwrap()
                        .as_slice(),
                )
                .unwrap();
            deal.price_per_epoch * deal.duration_epochs
        })
        .sum();
    assert_eq!(
        before - f.token_balance(&ata),
        paid,
        "each shard's escrow paid once"
    );
    let id2 = report["dataset_id"].as_str().unwrap();
    let dest = outs.path().join("resumed");
    let out = f.cairn(
        &client_key,
        &["download", id2, "-o", dest.to_str().unwrap()],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_tree(&dest, &files2);

    // The stopped nodes' providers fail the first epoch opened without them;
    // status shows it from the chain's bits, before anything is settled. (Any
    // other provider that missed an epoch is to be repaired as well: repair
    // acts on the first failure.)
    let provider_of = |i: usize| {
        cairn_chain::provider_pda(&common::pubkey_of(
            &f.dir.path().join(format!("provider-{i}.json")),
        ))
    };
    let stopped: Vec<String> = [1, 4].iter().map(|i| provider_of(*i).to_string()).collect();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let status = loop {
        let status = f.json(&client_key, &["status", &id]);
        let to_repair = status["to_repair"].as_array().unwrap();
        let stopped_shards: Vec<Value> = status_deals(&status)
            .iter()
            .filter(|d| stopped.iter().any(|p| d["provider"] == p.as_str()))
            .map(|d| serde_json::json!({"group": d["group"], "shard_index": d["shard_index"]}))
            .collect();
        // One shard of each of the 4 groups per stopped provider.
        if stopped_shards.len() == 2 * 4 && stopped_shards.iter().all(|i| to_repair.contains(i)) {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the stopped providers' failed epochs: {status:#}"
        );
        std::thread::sleep(Duration::from_millis(500));
    };
    let to_repair: Vec<Value> = status["to_repair"].as_array().unwrap().clone();
    for g in status["groups"].as_array().unwrap() {
        let failing = to_repair
            .iter()
            .filter(|r| r["group"] == g["group"])
            .count() as u64;
        assert_eq!(g["healthy"].as_u64().unwrap(), 6 - failing, "{g}");
    }
    eprintln!("dataset 1 before repair: {status}");
    let status2 = f.json(&client_key, &["status", id2]);
    eprintln!("dataset 2 before repair: {status2}");
    let to_repair2: Vec<Value> = status2["to_repair"].as_array().unwrap().clone();

    // Repair places every shard to repair with a provider its group does not
    // use: fresh ones here (each takes one shard of every group), one spare in
    // case a provider misses an epoch meanwhile.
    let fresh: Vec<_> = (6..9).map(start_node).collect();
    let fresh_providers: Vec<String> = fresh.iter().map(|(p, _)| p.to_string()).collect();
    let repair = |id: &str, expected: &[Value]| {
        let out = f.json(
            &client_key,
            &["repair", id, "--state-dir", state_dir.to_str().unwrap()],
        );
        let repaired = out["repaired"].as_array().unwrap().clone();
        let shards: Vec<Value> = repaired
            .iter()
            .map(|r| serde_json::json!({"group": r["group"], "shard_index": r["shard_index"]}))
            .collect();
        assert!(expected.iter().all(|i| shards.contains(i)), "{out}");
        for r in &repaired {
            assert!(
                fresh_providers.contains(&r["provider"].as_str().unwrap().to_string()),
                "{r}"
            );
            assert_eq!(r["generation"], 1, "{r}");
            let reason = r["reason"].as_str().unwrap();
            assert!(
                reason.starts_with("failed epoch") || reason.starts_with("provider jailed"),
                "{r}"
            );
        }
        (out, repaired)
    };
    // The second dataset: whatever its providers failed (normally nothing).
    repair(id2, &to_repair2);
    // The first: the client ends the failed deals, and their shards are rebuilt
    // from four others and placed at once, as generation 1.
    let (out, repaired) = repair(&id, &to_repair);
    for g in out["groups"].as_array().unwrap() {
        if !g["repaired"].as_array().unwrap().is_empty() {
            assert_eq!(g["rebuilt_from"].as_array().unwrap().len(), 4, "{g}");
        }
    }
    // The new providers prove their shards, and the dataset reads back
    // byte-exact with two of the original survivors stopped as well.
    let repaired_deals: Vec<String> = repaired
        .iter()
        .map(|r| r["deal"].as_str().unwrap().to_string())
        .collect();
    wait("a proven epoch from each new provider", || {
        let status = f.json(&client_key, &["status", &id]);
        let deals = status_deals(&status);
        deals
            .iter()
            .filter(|s| repaired_deals.contains(&s["deal"].as_str().unwrap().to_string()))
            .all(|s| s["epochs"]["closed"]["proven"].as_u64().unwrap() >= 1)
            .then_some(())
    });
    let status = f.json(&client_key, &["status", &id]);
    assert_eq!(status["missing"], serde_json::json!([]), "{status}");
    let live: Vec<Value> = status_deals(&status)
        .into_iter()
        .filter(|s| s["live"] == true)
        .collect();
    assert_eq!(live.len(), 6 * 4);
    for d in live
        .iter()
        .filter(|d| repaired_deals.contains(&d["deal"].as_str().unwrap().to_string()))
    {
        assert_eq!(
            (d["healthy"].as_bool(), d["generation"].as_u64()),
            (Some(true), Some(1)),
            "{d}"
        );
    }
    let survivors: Vec<usize> = nodes_up
        .iter()
        .copied()
        .filter(|i| {
            let provider = provider_of(*i).to_string();
            live.iter().any(|s| s["provider"] == provider)
        })
        .take(2)
        .collect();
    assert_eq!(survivors.len(), 2);
    for i in survivors {
        rt.block_on(nodes[i].take().unwrap().stop());
    }
    let dest = outs.path().join("repaired");
    let out = f.cairn(
        &client_key,
        &[
            "download",
            &id,
            "-o",
            dest.to_str().unwrap(),
            "-v",
            "--no-progress",
        ],
    );
    assert!(
        out.status.success(),
        "{}\nstatus: {}",
        String::from_utf8_lossy(&out.stderr),
        f.json(&client_key, &["status", &id])
    );
    assert_tree(&dest, &files);
    for (_, node) in fresh {
        rt.block_on(node.stop());
    }

    for node in nodes.into_iter().flatten() {
        rt.block_on(node.stop());
    }
    std::thread::sleep(Duration::from_millis(10));
}
