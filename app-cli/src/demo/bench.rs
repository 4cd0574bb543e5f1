//! `cairn bench`: upload and download of a generated dataset (1 GiB by
//! default) through a whole local network of 6 storage nodes, next to the
//! bound set by the slowest stage each direction needs, measured in the same
//! run on the same machine: Merkle tree build (SHA-256 segments), RS encode
//! (with unit checksums), BLAKE3 unit verification and raw QUIC on loopback.
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cairn_core::erasure::{encode_bytes, ErasureParams};
use clap::Args;
use serde::Serialize;

use crate::dataset::download::{self, DownloadArgs};
use crate::dataset::quic::QuicConnector;
use crate::dataset::upload::{self, UploadArgs};
use crate::demo::launch::Launcher;
use crate::demo::network::{Network, NetworkConfig};
use crate::demo::sample::random_bytes;
use crate::demo::{K, M};
use crate::error::CliError;
use crate::output::Progress;

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// Size of the generated dataset, MiB (files of up to 64 MiB).
    #[arg(long, default_value_t = 1024)]
    pub size_mib: u64,
    /// Keep the network's files here. Default: a temporary directory.
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// JSON-RPC port of the local chain. Default: 8899 if free.
    #[arg(long)]
    pub rpc_port: Option<u16>,
}

/// Bytes each stage measurement processes.
const STAGE_BYTES: usize = 64 << 20;

#[derive(Serialize, Debug, Clone)]
pub struct Stage {
    pub name: &'static str,
    /// Throughput of the stage on its own input, MB/s (10^6 bytes).
    pub mb_s: f64,
    /// The same expressed in dataset bytes per second: the most the whole
    /// transfer could reach if this stage were the only cost.
    pub dataset_mb_s: f64,
}

#[derive(Serialize, Debug)]
pub struct BenchReport {
    /// `release build`, or a debug build (where the workspace's `[profile.dev.package]`
    /// overrides optimize the hashing, erasure, ed25519 and QUIC crates).
    pub build: &'static str,
    pub dataset_bytes: u64,
    pub nodes: usize,
    pub k: u16,
    pub m: u16,
    pub upload_seconds: f64,
    pub upload_mb_s: f64,
    pub upload_stages: Vec<Stage>,
    pub download_seconds: f64,
    pub download_mb_s: f64,
    pub download_stages: Vec<Stage>,
}

fn slowest(stages: &[Stage]) -> &Stage {
    stages
        .iter()
        .min_by(|a, b| a.dataset_mb_s.total_cmp(&b.dataset_mb_s))
        .expect("stages")
}

impl fmt::Display for BenchReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "cairn bench ({}): {} through {} local nodes, k = {}, m = {}",
            self.build,
            crate::units::human_bytes(self.dataset_bytes),
            self.nodes,
            self.k,
            self.m
        )?;
        for (what, secs, rate, stages) in [
            (
                "upload",
                self.upload_seconds,
                self.upload_mb_s,
                &self.upload_stages,
            ),
            (
                "download",
                self.download_seconds,
                self.download_mb_s,
                &self.download_stages,
            ),
        ] {
            let bound = slowest(stages);
            writeln!(
                f,
                "  {what:<8} {rate:>8.1} MB/s ({secs:.1} s); bound {:.1} MB/s from {} -> {:.2} of the bound",
                bound.dataset_mb_s,
                bound.name,
                rate / bound.dataset_mb_s
            )?;
            for s in stages {
                writeln!(
                    f,
                    "             stage {:<24} {:>8.1} MB/s of its input = {:>8.1} MB/s of dataset",
                    s.name, s.mb_s, s.dataset_mb_s
                )?;
            }
        }
        Ok(())
    }
}

fn mb_s(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / 1e6 / took.as_secs_f64()
}

/// Each stage on [`STAGE_BYTES`] of random bytes, on this machine now.
fn measure_stages() -> Result<(Vec<Stage>, Vec<Stage>), CliError> {
    let data = random_bytes(STAGE_BYTES, 7);
    let expansion = f64::from(K + M) / f64::from(K);

    let t = Instant::now();
    let mut tree = cairn_proof::TreeBuilder::new();
    for chunk in data.chunks(1 << 20) {
        tree.update(chunk);
    }
    std::hint::black_box(tree.finish().root());
    let tree_rate = mb_s(data.len() as u64, t.elapsed());

    let params = ErasureParams::with_default_unit(K, M).expect("4 + 2 is valid");
    let t = Instant::now();
    let encoded = encode_bytes(params, &data).map_err(|e| CliError::Refused(e.to_string()))?;
    let rs_rate = mb_s(data.len() as u64, t.elapsed());
    std::hint::black_box(&encoded.sinks);

    let t = Instant::now();
    for unit in data.chunks(params.stripe_unit()) {
        std::hint::black_box(cairn_core::hash::blake3(unit));
    }
    let blake3_rate = mb_s(data.len() as u64, t.elapsed());

    let shards: Vec<Vec<u8>> = data.chunks(16 << 20).map(<[u8]>::to_vec).collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| CliError::Refused(e.to_string()))?;
    let took = runtime
        .block_on(cairn_storage_node::bench::raw_quinn(&shards))
        .map_err(|e| CliError::Refused(format!("raw QUIC measurement: {e}")))?;
    let quic_rate = mb_s(data.len() as u64, took);

    // Upload: every dataset byte is RS-encoded once; expansion x as many
    // stored bytes are tree-hashed and sent. Download: k/k of the dataset is
    // fetched and every unit's BLAKE3 checked.
    let upload = vec![
        Stage {
            name: "Merkle tree build",
            mb_s: tree_rate,
            dataset_mb_s: tree_rate / expansion,
        },
        Stage {
            name: "RS encode + checksums",
            mb_s: rs_rate,
            dataset_mb_s: rs_rate,
        },
        Stage {
            name: "QUIC (raw, loopback)",
            mb_s: quic_rate,
            dataset_mb_s: quic_rate / expansion,
        },
    ];
    let download = vec![
        Stage {
            name: "BLAKE3 unit checks",
            mb_s: blake3_rate,
            dataset_mb_s: blake3_rate,
        },
        Stage {
            name: "QUIC (raw, loopback)",
            mb_s: quic_rate,
            dataset_mb_s: quic_rate,
        },
    ];
    Ok((upload, download))
}

pub fn run(a: BenchArgs, launcher: Launcher, say: &dyn Fn(&str)) -> Result<BenchReport, CliError> {
    let (work, _temp) = crate::demo::launch::work_dir(a.work_dir.as_deref(), "cairn-bench-")?;
    let nodes = usize::from(K + M);
    let net = Network::start(
        launcher,
        &NetworkConfig {
            dir: work.clone(),
            nodes,
            indexer: false,
            rpc_port: a.rpc_port,
        },
        say,
    )?;
    let (_, key) = net.user("client", 100_000 * 10u64.pow(6))?;
    let ctx = net.ctx(&key);

    let data = work.join("dataset");
    std::fs::create_dir_all(&data).map_err(CliError::io(&data))?;
    let mut left = a.size_mib << 20;
    let mut i = 0;
    while left > 0 {
        let len = left.min(64 << 20);
        let path = data.join(format!("part-{i:03}.bin"));
        std::fs::write(&path, random_bytes(len as usize, i + 1)).map_err(CliError::io(&path))?;
        left -= len;
        i += 1;
    }
    say(&format!(
        "generated {} MiB in {} files; measuring each stage",
        a.size_mib, i
    ));
    let (upload_stages, download_stages) = measure_stages()?;

    let connector = QuicConnector::new().map_err(|e| CliError::Refused(e.to_string()))?;
    let progress = Progress::new(true, true, false);
    say("uploading");
    let t = Instant::now();
    let up = upload::upload(
        &ctx,
        UploadArgs {
            group_size: None,
            dir: data.clone(),
            data_shards: K,
            parity_shards: M,
            epochs: 10,
            max_price: None,
            resume: false,
            state_dir: Some(work.join("state")),
            accept_timeout: 300,
        },
        &connector,
        &progress,
    )?;
    let upload_seconds = t.elapsed().as_secs_f64();
    say("downloading");
    let t = Instant::now();
    download::download(
        &ctx,
        DownloadArgs {
            range: None,
            dataset: up.dataset_id.clone(),
            out: work.join("download"),
            file: None,
            
        },
        &connector,
        &progress,
    )?;
    let download_seconds = t.elapsed().as_secs_f64();
    Ok(BenchReport {
        build: if cfg!(debug_assertions) {
            "debug build, its SHA-256, BLAKE3, RS and QUIC crates optimized"
        } else {
            "release build"
        },
        dataset_bytes: up.dataset_bytes,
        nodes,
        k: K,
        m: M,
        upload_seconds,
        upload_mb_s: up.dataset_bytes as f64 / 1e6 / upload_seconds,
        upload_stages,
        download_seconds,
        download_mb_s: up.dataset_bytes as f64 / 1e6 / download_seconds,
        download_stages,
    })
}
