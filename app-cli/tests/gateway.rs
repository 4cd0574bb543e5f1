//! `cairn gateway` end to end: a dataset uploaded to six real storage nodes
//! (k = 4, m = 2) on a local validator, served over S3 by the `cairn`
//! binary, and read by real clients installed from PyPI (boto3, pyarrow,
//! the aws CLI when it installs) in a venv cached under the target directory:
//! listings, heads, full and ranged GETs byte for byte, a Parquet table,
//! the errors S3 clients expect, the metrics page, reads with two nodes
//! down, and an anonymous gateway.
mod common;

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{Fixture, TOKEN};
use serde_json::{json, Value};

const ACCESS_KEY: &str = "test-access";
const SECRET_KEY: &str = "test-secret-of-the-gateway";
const ALIAS: &str = "my-data";

/// A venv with boto3 and pyarrow (and the aws CLI if it installs), made
/// once under `<target>/python-venv`; its python.
fn python() -> PathBuf {
    let target = cairn_tests::python::target_dir(env!("CARGO_BIN_EXE_cairn"));
    let python = cairn_tests::python::venv(
        &target,
        "python-venv",
        &["boto3", "pyarrow"],
        "boto3, pyarrow",
    );
    let aws = target.join("python-venv/bin/aws");
    if !cairn_tests::python::try_install(&python, "awscli", &aws) {
        println!("awscli did not install; its part of the test is skipped");
    }
    python
}

fn free_tcp_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `gateway_clients.py MODE` with `env`; panics with its output unless it
/// passes.
fn clients(python: &Path, mode: &str, env: &[(&str, String)]) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/gateway_clients.py");
    let out = Command::new(python)
        .arg(script)
        .arg(mode)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .output()
        .expect("run python");
    let stdout = String::from_utf8_lossy(&out.stdout);
    print!("{stdout}");
    assert!(
        out.status.success(),
        "clients {mode} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A running `cairn gateway`, stopped on drop.
struct Gateway(Child);

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_gateway(f: &Fixture, key: &Path, port: u16, extra: &[&str]) -> Gateway {
    let child = f
        .command(key)
        .args(["gateway", "--listen", &format!("127.0.0.1:{port}")])
        .args(extra)
        .stdin(Stdio::null())
        .spawn()
        .expect("start cairn gateway");
    let mut gateway = Gateway(child);
    let started = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = gateway.0.try_wait().unwrap() {
            panic!("cairn gateway exited: {status}");
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "gateway not up"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    gateway
}

/// The files of the dataset (the Parquet one is written by pyarrow).
fn write_tree(root: &Path) {
    let mut files: Vec<(String, Vec<u8>)> = vec![
        ("a.txt".into(), b"hello, gateway\n".to_vec()),
        // Three stripes and more: ranges cross stripe and group ends.
        (
            "data/big.bin".into(),
            (0..3_500_000u32)
                .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
                .collect(),
        ),
        ("data/empty".into(), Vec::new()),
        ("data/sub/deep/x.bin".into(), vec![7u8; 70_000]),
        ("notes/ünï 名前.md".into(), "non-ASCII key".into()),
    ];
    for i in 0..7 {
        files.push((format!("small/{i:02}.txt"), vec![b'a' + i as u8; 10 * i]));
    }
    for (path, bytes) in &files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
}

/// Every file under `root`: key -> {size, blake3}.
fn expected(root: &Path) -> Value {
    fn walk(root: &Path, dir: &Path, out: &mut serde_json::Map<String, Value>) {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                let bytes = std::fs::read(&p).unwrap();
                let key = p.strip_prefix(root).unwrap().to_str().unwrap().to_string();
                out.insert(
                    key,
                    json!({"size": bytes.len(), "blake3": blake3::hash(&bytes).to_hex().to_string()}),
                );
            }
        }
    }
    let mut out = serde_json::Map::new();
    walk(root, root, &mut out);
    Value::Object(out)
}

#[test]
fn s3_clients_read_a_dataset_through_the_gateway() {
    let python = python();
    let f = Fixture::start();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut nodes: Vec<Option<_>> = (0..6)
        .map(|i| Some(common::start_node(&f, &rt, i).1))
        .collect();

    let (_client, client_key) = f.user("client", 100 * TOKEN);
    let data = tempfile::tempdir().unwrap();
    write_tree(data.path());
    let data_dir = data.path().to_str().unwrap().to_string();
    clients(&python, "write-parquet", &[("DATA_DIR", data_dir.clone())]);
    let expected_path = f.dir.path().join("expected.json");
    std::fs::write(&expected_path, expected(data.path()).to_string()).unwrap();
    // Groups of 2 MiB: big.bin spans two data groups.
    let report = f.json(
        &client_key,
        &[
            "upload",
            &data_dir,
            "--epochs",
            "40",
            "--group-size",
            "2MiB",
            "--state-dir",
            f.dir.path().join("state").to_str().unwrap(),
        ],
    );
    let id = report["dataset_id"].as_str().unwrap().to_string();
    assert_eq!(
        (report["k"].as_u64(), report["m"].as_u64()),
        (Some(4), Some(2))
    );
    assert!(report["groups"].as_u64().unwrap() >= 2, "{report}");

    // The same tree uploaded private (`--encrypt`).
    let key_file = f.dir.path().join("dataset-key.json");
    f.json(
        &client_key,
        &["key", "new", "--out", key_file.to_str().unwrap()],
    );
    let private = f.json(
        &client_key,
        &[
            "upload",
            &data_dir,
            "--encrypt",
            "--key",
            key_file.to_str().unwrap(),
            "--epochs",
            "40",
            "--group-size",
            "2MiB",
            "--state-dir",
            f.dir.path().join("state-private").to_str().unwrap(),
        ],
    )["dataset_id"]
        .as_str()
        .unwrap()
        .to_string();

    let config = f.dir.path().join("gateway.toml");
    std::fs::write(
        &config,
        format!(
            "[[credentials]]\naccess_key = \"{ACCESS_KEY}\"\nsecret_key = \"{SECRET_KEY}\"\n\
             [aliases]\n{ALIAS} = \"{id}\"\n"
        ),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
        let out = f.cairn(
            &client_key,
            &["gateway", "--config", config.to_str().unwrap()],
        );
        common::assert_fails(&out, 2, "chmod 600");
        std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let (port, metrics_port) = (free_tcp_port(), free_tcp_port());
    let gateway = start_gateway(
        &f,
        &client_key,
        port,
        &[
            "--config",
            config.to_str().unwrap(),
            "--metrics-listen",
            &format!("127.0.0.1:{metrics_port}"),
        ],
    );
    let env = vec![
        ("ENDPOINT", format!("http://127.0.0.1:{port}")),
        ("BUCKET", id.clone()),
        ("ALIAS", ALIAS.to_string()),
        ("ACCESS_KEY", ACCESS_KEY.to_string()),
        ("SECRET_KEY", SECRET_KEY.to_string()),
        ("DATA_DIR", data_dir.clone()),
        ("EXPECTED", expected_path.to_str().unwrap().to_string()),
        (
            "METRICS",
            format!("http://127.0.0.1:{metrics_port}/metrics"),
        ),
    ];
    clients(&python, "full", &env);

    // m = 2 nodes down: the same gateway (its connections to them now
    // broken) still serves every byte.
    for i in [1, 4] {
        rt.block_on(nodes[i].take().unwrap().stop());
    }
    clients(&python, "degraded", &env);
    drop(gateway);

    // An anonymous gateway answers unsigned requests; without the dataset
    // key it refuses the private dataset, with it it serves the plaintext.
    let anonymous = |key: &Path| {
        let port = free_tcp_port();
        let gateway = start_gateway(
            &f,
            &client_key,
            port,
            &["--anonymous", "--key", key.to_str().unwrap()],
        );
        let mut env: Vec<(&str, String)> = env
            .iter()
            .map(|(k, v)| match *k {
                "ENDPOINT" => (*k, format!("http://127.0.0.1:{port}")),
                _ => (*k, v.clone()),
            })
            .collect();
        env.push(("PRIVATE_BUCKET", private.clone()));
        (gateway, env)
    };
    let (without_key, env_without) = anonymous(&f.dir.path().join("no-such-key.json"));
    clients(&python, "anonymous", &env_without);
    drop(without_key);
    let (_with_key, env_with) = anonymous(&key_file);
    clients(&python, "private", &env_with);
}
