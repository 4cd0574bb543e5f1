//! Private datasets end to end (docs/DESIGN.md, "Private datasets"): a local
//! validator and real storage nodes (QUIC, RocksDB, shard files on disk);
//! `cairn key new`, `cairn upload --encrypt`, then what the nodes store holds
//! no plaintext name or content, the key reads the dataset byte-exact (whole,
//! one file, a byte range), no key or a wrong key is a typed error, and a
//! repair without the key rebuilds shards the key still reads.
mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use cairn_cli::commands::key::KeyArg;
use cairn_cli::context::Ctx;
use cairn_cli::dataset::download::{download, DownloadArgs};
use cairn_cli::dataset::quic::QuicConnector;
use cairn_cli::error::CliError;
use cairn_cli::output::Progress;
use common::{wait, Fixture, TOKEN};
use serde_json::Value;

/// Distinctive names and contents, to search the nodes' bytes for.
const SECRET_DIR: &str = "zanzibar-acquisition";
const SECRET_NAME: &str = "quarterly-forecast-otter.csv";
const SECRET_TEXT: &[u8] = b"CANARY-PLAINTEXT-7f3a9c ";
const EMPTY_DIR: &str = "walrus-empty-folder";

fn write_tree(root: &Path) -> Vec<(String, Vec<u8>)> {
    let big: Vec<u8> = SECRET_TEXT
        .iter()
        .copied()
        .cycle()
        .take(1_300_000)
        .collect();
    let files = vec![
        (format!("{SECRET_DIR}/{SECRET_NAME}"), big),
        ("empty-pelican.txt".to_string(), Vec::new()),
        (
            "notes/ünï 名前.md".to_string(),
            b"CANARY-PLAINTEXT-7f3a9c short note".to_vec(),
        ),
    ];
    for (path, bytes) in &files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
    std::fs::create_dir_all(root.join(EMPTY_DIR)).unwrap();
    files
}

/// Every byte of every file under `dir`.
fn all_bytes(dir: &Path, out: &mut Vec<(PathBuf, Vec<u8>)>) {
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if entry.file_type().unwrap().is_dir() {
            all_bytes(&path, out);
        } else if let Ok(bytes) = std::fs::read(&path) {
            out.push((path, bytes));
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn encrypted_upload_hides_names_and_contents_reads_with_the_key_and_repairs_without_it() {
    let f = Fixture::start();
    let info = f.localnet.info().clone();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let start_node = |i: usize| common::start_node(&f, &rt, i);
    let mut nodes: Vec<Option<_>> = (0..6).map(|i| Some(start_node(i).1)).collect();
    let (_client, client_key) = f.user("client", 100 * TOKEN);

    // The dataset key: created once, owner-only, never overwritten.
    let key_file = f.dir.path().join("keys/dataset-key.json");
    let created = f.json(
        &client_key,
        &["key", "new", "--out", key_file.to_str().unwrap()],
    );
    assert_eq!(created["path"], key_file.to_str().unwrap());
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let key_bytes = std::fs::read(&key_file).unwrap();
    let again = f.cairn(
        &client_key,
        &["key", "new", "--out", key_file.to_str().unwrap()],
    );
    assert_eq!(again.status.code(), Some(2));
    assert_eq!(
        std::fs::read(&key_file).unwrap(),
        key_bytes,
        "not overwritten"
    );

    // Upload encrypted: 1.3 MB in groups of 512 KiB, 3 data groups.
    let data = tempfile::tempdir().unwrap();
    let files = write_tree(data.path());
    let state_dir = f.dir.path().join("state");
    let report = f.json(
        &client_key,
        &[
            "upload",
            data.path().to_str().unwrap(),
            "--encrypt",
            "--key",
            key_file.to_str().unwrap(),
            "--epochs",
            "40",
            "--group-size",
            "512KiB",
            "--state-dir",
            state_dir.to_str().unwrap(),
        ],
    );
    let id = report["dataset_id"].as_str().unwrap().to_string();
    assert_eq!(report["key_id"], created["key_id"]);
    assert_eq!(report["groups"], 3);

    // Nothing the nodes hold (shard files, their databases) holds a name or a
    // byte of content; the chain's deals carry only stored sizes.
    let mut stored = Vec::new();
    for i in 0..6 {
        all_bytes(&f.dir.path().join(format!("node-{i}/data")), &mut stored);
    }
    let total: usize = stored.iter().map(|(_, b)| b.len()).sum();
    assert!(
        total > 1_300_000 * 6 / 4,
        "the nodes hold the shards: {total} bytes"
    );
    for needle in [
        SECRET_DIR.as_bytes(),
        SECRET_NAME.as_bytes(),
        EMPTY_DIR.as_bytes(),
        b"pelican",
        "ünï 名前".as_bytes(),
        &SECRET_TEXT[..16],
    ] {
        for (path, bytes) in &stored {
            assert!(
                !contains(bytes, needle),
                "{} holds {:?}",
                path.display(),
                String::from_utf8_lossy(needle)
            );
        }
    }

    // With the key: the whole dataset, one file, and a byte range across a
    // chunk boundary, byte-exact.
    let outs = tempfile::tempdir().unwrap();
    let dl = |name: &str, extra: &[&str]| -> PathBuf {
        let dest = outs.path().join(name);
        let mut args = vec![
            "download",
            id.as_str(),
            "-o",
            dest.to_str().unwrap(),
            "--key",
            key_file.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        f.json(&client_key, &args);
        dest
    };
    let assert_tree = |dir: &Path| {
        for (path, bytes) in &files {
            assert_eq!(&std::fs::read(dir.join(path)).unwrap(), bytes, "{path}");
        }
        assert!(dir.join(EMPTY_DIR).is_dir());
    };
    assert_tree(&dl("all", &[]));
    let big_path = format!("{SECRET_DIR}/{SECRET_NAME}");
    let dest = dl("one", &["--file", "notes/ünï 名前.md"]);
    assert_eq!(
        std::fs::read(dest.join("notes/ünï 名前.md")).unwrap(),
        files[2].1
    );
    let (a, b) = (65_000u64, 200_123u64);
    let dest = dl(
        "range",
        &["--file", &big_path, "--range", &format!("{a}-{b}")],
    );
    let got = std::fs::read(dest.join(&big_path)).unwrap();
    assert_eq!(&got[a as usize..], &files[0].1[a as usize..b as usize]);

    // `ls` with the key: plaintext names and sizes.
    let listing = f.json(
        &client_key,
        &["ls", &id, "--key", key_file.to_str().unwrap()],
    );
    assert_eq!(listing["encrypted"], true);
    let listed: Vec<(String, u64)> = listing["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            (
                f["path"].as_str().unwrap().to_string(),
                f["size"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut want: Vec<(String, u64)> = files
        .iter()
        .map(|(p, b)| (p.clone(), b.len() as u64))
        .collect();
    want.sort();
    assert_eq!(listed, want);

    // Without the key, or with another: one typed error each, no bytes.
    let ctx = Ctx::new(&info.rpc_url, client_key.clone());
    let connector = QuicConnector::new().unwrap();
    let try_download = |key: &Path, name: &str| {
        download(
            &ctx,
            DownloadArgs {
                dataset: id.clone(),
                out: outs.path().join(name),
                file: None,
                range: None,
                key: KeyArg { key: key.into() },
            },
            &connector,
            &Progress::hidden(),
        )
    };
    let missing = f.dir.path().join("no-such-key.json");
    match try_download(&missing, "nokey") {
        Err(CliError::DatasetKeyRequired { dataset, key_file }) => {
            assert_eq!(
                (dataset.as_str(), key_file.as_path()),
                (id.as_str(), missing.as_path())
            );
        }
        other => panic!("expected DatasetKeyRequired: {other:?}"),
    }
    let other_key = f.dir.path().join("other-key.json");
    f.json(
        &client_key,
        &["key", "new", "--out", other_key.to_str().unwrap()],
    );
    match try_download(&other_key, "wrongkey") {
        Err(CliError::WrongDatasetKey {
            dataset, key_file, ..
        }) => {
            assert_eq!(
                (dataset.as_str(), key_file.as_path()),
                (id.as_str(), other_key.as_path())
            );
        }
        other => panic!("expected WrongDatasetKey: {other:?}"),
    }
    assert!(!outs.path().join("nokey").exists() && !outs.path().join("wrongkey").exists());
    let out = f.cairn(
        &client_key,
        &["ls", &id, "--key", missing.to_str().unwrap()],
    );
    assert_eq!(out.status.code(), Some(1));

    // Two providers stop: their shards fail an epoch, and a repair with no
    // dataset key anywhere rebuilds them onto fresh providers.
    for i in [1, 4] {
        rt.block_on(nodes[i].take().unwrap().stop());
    }
    let provider_of = |i: usize| {
        cairn_chain::provider_pda(&common::pubkey_of(
            &f.dir.path().join(format!("provider-{i}.json")),
        ))
        .to_string()
    };
    let stopped = [provider_of(1), provider_of(4)];
    wait("the stopped providers' shards to repair", || {
        let status = f.json(&client_key, &["status", &id]);
        let to_repair = status["to_repair"].as_array().unwrap().len();
        (to_repair >= 2 * 4).then_some(())
    });
    let fresh: Vec<_> = (6..9).map(start_node).collect();
    let fresh_providers: Vec<String> = fresh.iter().map(|(p, _)| p.to_string()).collect();
    let repaired = {
        let out = f
            .command(&client_key)
            .args([
                "repair",
                &id,
                "--state-dir",
                state_dir.to_str().unwrap(),
                "--json",
            ])
            .env("CAIRN_DATASET_KEY", &missing)
            .env("HOME", f.dir.path().join("empty-home"))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        report["repaired"].as_array().unwrap().clone()
    };
    assert!(repaired.len() >= 2 * 4, "{repaired:?}");
    for r in &repaired {
        assert!(
            fresh_providers.contains(&r["provider"].as_str().unwrap().to_string()),
            "{r}"
        );
    }
    // The rebuilt shards are needed now: two more original providers stop,
    // and the key still reads the dataset byte-exact.
    let survivors: Vec<usize> = (0..6)
        .filter(|i| nodes[*i].is_some() && !stopped.contains(&provider_of(*i)))
        .take(2)
        .collect();
    for i in survivors {
        rt.block_on(nodes[i].take().unwrap().stop());
    }
    assert_tree(&dl("repaired", &[]));

    for (_, node) in fresh {
        rt.block_on(node.stop());
    }
    for node in nodes.into_iter().flatten() {
        rt.block_on(node.stop());
    }
    std::thread::sleep(Duration::from_millis(10));
}
