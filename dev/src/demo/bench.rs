//! `cairn-dev bench`: upload and download of a generated dataset (1 GiB by
//! default) through a whole local network of 6 storage nodes, next to the
//! bound set by the slowest stage each direction needs, measured in the same
//! run on the same machine: Merkle tree build (SHA-256 segments), RS encode
//! (with unit checksums), BLAKE3 unit verification and raw QUIC on loopback.
//! It also reports the client's peak resident memory and peak work-directory
//! bytes for each direction (the nodes run in processes of their own), and
//! the time to read one 1 MiB file from the middle of the dataset next to a
//! whole 1 MiB one-group dataset's download.
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use cairn_core::erasure::{encode_bytes, ErasureParams};
use clap::Args;
use serde::Serialize;

use crate::demo::launch::Launcher;
use crate::demo::network::{Network, NetworkConfig};
use crate::demo::sample::random_bytes;
use crate::demo::{K, M};
use cairn_cli::dataset::download::{self, DownloadArgs};
use cairn_cli::dataset::quic::QuicConnector;
use cairn_cli::dataset::upload::{self, UploadArgs};
use cairn_cli::error::CliError;
use cairn_cli::output::Progress;

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
    /// Packed bytes per erasure group (as `cairn upload --group-size`).
    #[arg(long)]
    pub group_size: Option<String>,
    /// Largest generated file, MiB (`--size-mib 1024 --max-file-mib 1024`:
    /// one 1 GiB file).
    #[arg(long, default_value_t = 64)]
    pub max_file_mib: u64,
    /// Also measure `cairn gateway` (in this process, anonymous): a GET of
    /// the largest file next to `cairn download --file` of it, and the
    /// latency of random 64 KiB range reads.
    #[arg(long)]
    pub gateway: bool,
    /// Range reads of the gateway mode.
    #[arg(long, default_value_t = 500)]
    pub range_reads: usize,
    /// Also upload and download the same dataset encrypted (`cairn upload
    /// --encrypt`), and report both next to each other.
    #[arg(long)]
    pub encrypt: bool,
}

/// The encrypted run of the same dataset (`--encrypt`).
#[derive(Serialize, Debug)]
pub struct EncryptedRun {
    pub upload_seconds: f64,
    pub upload_mb_s: f64,
    pub download_seconds: f64,
    pub download_mb_s: f64,
    /// Stored (encrypted) bytes of the packed stream.
    pub stored_bytes: u64,
    /// ChaCha20-Poly1305 alone, MB/s of plaintext: sealing (with the
    /// synthetic nonce's keyed BLAKE3) and opening 64 KiB chunks.
    pub encrypt_stage_mb_s: f64,
    pub decrypt_stage_mb_s: f64,
}

/// The generated file read alone from the middle of the dataset.
const MIDDLE_FILE: &str = "part-mid.bin";

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
    /// Data groups of the dataset, and packed bytes per group.
    pub groups: u64,
    pub group_bytes: u64,
    /// This process's (the client's) peak resident bytes while uploading and
    /// while downloading.
    pub upload_peak_rss: u64,
    pub download_peak_rss: u64,
    /// Most bytes the upload's work directory held at once (sampled every
    /// 100 ms), next to what one group's shards take.
    pub upload_peak_work_bytes: u64,
    pub group_stored_bytes: u64,
    /// Seconds to download the 1 MiB file in the middle of the dataset alone,
    /// and a whole one-group 1 MiB dataset, in the same run.
    pub middle_file_seconds: f64,
    pub one_group_mib_seconds: f64,
    /// With `--encrypt`: the same dataset encrypted.
    pub encrypted: Option<EncryptedRun>,
    /// `--gateway`: the gateway's figures.
    pub gateway: Option<GatewayBench>,
}

/// Reads through `cairn gateway` (plain HTTP GETs of the anonymous gateway,
/// in this process) next to `cairn download --file` of the same bytes.
#[derive(Serialize, Debug)]
pub struct GatewayBench {
    pub object: String,
    pub object_bytes: u64,
    pub download_file_seconds: f64,
    pub download_file_mb_s: f64,
    pub gateway_get_seconds: f64,
    pub gateway_get_mb_s: f64,
    pub range_bytes: u64,
    pub range_reads: usize,
    pub range_p50_ms: f64,
    pub range_p99_ms: f64,
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
            "cairn-dev bench ({}): {} through {} local nodes, k = {}, m = {}",
            self.build,
            cairn_cli::units::human_bytes(self.dataset_bytes),
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
        let h = cairn_cli::units::human_bytes;
        writeln!(
            f,
            "  {} group(s) of {}, {} stored per group",
            self.groups,
            h(self.group_bytes),
            h(self.group_stored_bytes)
        )?;
        writeln!(
            f,
            "  client peak memory: upload {}, download {}; upload work directory peak {} (bound: two groups, {})",
            h(self.upload_peak_rss),
            h(self.download_peak_rss),
            h(self.upload_peak_work_bytes),
            h(2 * self.group_stored_bytes)
        )?;
        writeln!(
            f,
            "  1 MiB file from the middle: {:.2} s; a 1 MiB one-group dataset: {:.2} s -> {:.2}x (goal: within 2x)",
            self.middle_file_seconds,
            self.one_group_mib_seconds,
            self.middle_file_seconds / self.one_group_mib_seconds
        )?;
        if let Some(e) = &self.encrypted {
            writeln!(
                f,
                "  encrypted: upload {:.1} MB/s ({:.1} s, {:.2}x plain), download {:.1} MB/s ({:.1} s, {:.2}x plain); {} stored",
                e.upload_mb_s,
                e.upload_seconds,
                e.upload_mb_s / self.upload_mb_s,
                e.download_mb_s,
                e.download_seconds,
                e.download_mb_s / self.download_mb_s,
                h(e.stored_bytes)
            )?;
            writeln!(
                f,
                "             stage {:<24} {:>8.1} MB/s; {:<10} {:>8.1} MB/s",
                "ChaCha20-Poly1305 seal", e.encrypt_stage_mb_s, "open", e.decrypt_stage_mb_s
            )?;
        }
        if let Some(g) = &self.gateway {
            writeln!(
                f,
                "  gateway: GET {} ({}) {:.1} MB/s ({:.1} s); cairn download --file {:.1} MB/s ({:.1} s)",
                g.object,
                h(g.object_bytes),
                g.gateway_get_mb_s,
                g.gateway_get_seconds,
                g.download_file_mb_s,
                g.download_file_seconds
            )?;
            writeln!(
                f,
                "  gateway: {} random {} range reads: p50 {:.1} ms, p99 {:.1} ms",
                g.range_reads,
                h(g.range_bytes),
                g.range_p50_ms,
                g.range_p99_ms
            )?;
        }
        Ok(())
    }
}

/// Sealing and opening [`STAGE_BYTES`] of random bytes in 64 KiB chunks, MB/s
/// of plaintext each.
fn measure_crypt() -> (f64, f64) {
    use cairn_core::crypt::{span, DatasetKey};
    let data = random_bytes(STAGE_BYTES, 11);
    let cipher = DatasetKey::from_bytes([1; 32]).file(&[2; 32], "bench");
    let t = Instant::now();
    let stored = cipher.encrypt_all(&data);
    let seal = mb_s(data.len() as u64, t.elapsed());
    let whole = span(data.len() as u64, 0..data.len() as u64).expect("the whole file");
    let t = Instant::now();
    let plain = cipher
        .decrypt_span(&whole, &stored)
        .expect("what was sealed opens");
    let open = mb_s(data.len() as u64, t.elapsed());
    assert_eq!(plain.len(), data.len());
    (seal, open)
}

/// Forgets this process's peak resident size so far (Linux `clear_refs` 5).
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// This process's peak resident bytes since the last [`reset_peak_rss`]
/// (`VmHWM`), 0 where `/proc` does not say.
fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

/// Bytes of the files under `dir` (0 if it is gone).
fn dir_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
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
            // Room for a node's share of the dataset (one shard of each group,
            // up to 1 GiB of slack in the last group and the index).
            node_capacity: ((a.size_mib << 20) / u64::from(K) * 5 / 4).max(1 << 30) + (1 << 30),
        },
        say,
    )?;
    let (_, key) = net.user("client", 100_000 * 10u64.pow(6))?;
    let ctx = net.ctx(&key);

    let data = work.join("dataset");
    std::fs::create_dir_all(&data).map_err(CliError::io(&data))?;
    let mut left = (a.size_mib << 20).saturating_sub(1 << 20);
    let mut i = 0;
    while left > 0 {
        let len = left.min(a.max_file_mib.max(1) << 20);
        let path = data.join(format!("part-{i:03}.bin"));
        std::fs::write(&path, random_bytes(len as usize, i + 1)).map_err(CliError::io(&path))?;
        left -= len;
        i += 1;
    }
    // A 1 MiB file whose name sorts just before the middle part, so it lies in
    // the middle of the packed stream.
    let middle = data.join(format!("part-{:03}-{MIDDLE_FILE}", i / 2));
    std::fs::write(&middle, random_bytes(1 << 20, 999)).map_err(CliError::io(&middle))?;
    let middle_name = middle
        .file_name()
        .expect("a file name")
        .to_string_lossy()
        .into_owned();
    say(&format!("generated {} MiB in {} files", a.size_mib, i + 1));

    let connector = QuicConnector::new().map_err(|e| CliError::Refused(e.to_string()))?;
    let progress = Progress::new(true, true, false);
    let upload_args = |dir: PathBuf, state: &str| UploadArgs {
        group_size: a.group_size.clone(),
        dir,
        data_shards: K,
        parity_shards: M,
        epochs: 10,
        max_price: None,
        resume: false,
        state_dir: Some(work.join(state)),
        accept_timeout: 300,
        encrypt: false,
        key: cairn_cli::commands::key::KeyArg {
            key: work.join("dataset-key.json"),
        },
    };
    let download_args = |dataset: &str, out: &str, file: Option<String>| DownloadArgs {
        range: None,
        dataset: dataset.to_string(),
        out: work.join(out),
        file,
        key: cairn_cli::commands::key::KeyArg {
            key: work.join("dataset-key.json"),
        },
    };
    say("uploading");
    reset_peak_rss();
    let state_dir = work.join("state");
    let sampling = std::sync::atomic::AtomicBool::new(true);
    let (up, upload_seconds, upload_peak_work_bytes) = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut peak = 0;
            while sampling.load(std::sync::atomic::Ordering::Relaxed) {
                peak = peak.max(dir_bytes(&state_dir));
                std::thread::sleep(Duration::from_millis(100));
            }
            peak
        });
        let t = Instant::now();
        let up = upload::upload(
            &ctx,
            upload_args(data.clone(), "state"),
            &connector,
            &progress,
        );
        let took = t.elapsed().as_secs_f64();
        sampling.store(false, std::sync::atomic::Ordering::Relaxed);
        let peak = sampler.join().expect("the sampler does not panic");
        up.map(|up| (up, took, peak))
    })?;
    let upload_peak_rss = peak_rss();
    say("downloading");
    reset_peak_rss();
    let t = Instant::now();
    download::download(
        &ctx,
        download_args(&up.dataset_id, "download", None),
        &connector,
        &progress,
    )?;
    let download_seconds = t.elapsed().as_secs_f64();
    let download_peak_rss = peak_rss();

    say("reading the 1 MiB file in the middle alone, and a 1 MiB one-group dataset");
    let t = Instant::now();
    download::download(
        &ctx,
        download_args(&up.dataset_id, "download-middle", Some(middle_name)),
        &connector,
        &progress,
    )?;
    let middle_file_seconds = t.elapsed().as_secs_f64();
    let small = work.join("one-mib");
    std::fs::create_dir_all(&small).map_err(CliError::io(&small))?;
    std::fs::copy(&middle, small.join(MIDDLE_FILE)).map_err(CliError::io(&small))?;
    let small_up = upload::upload(
        &ctx,
        upload_args(small, "state-small"),
        &connector,
        &progress,
    )?;
    let t = Instant::now();
    download::download(
        &ctx,
        download_args(&small_up.dataset_id, "download-small", None),
        &connector,
        &progress,
    )?;
    let one_group_mib_seconds = t.elapsed().as_secs_f64();
    let encrypted = if a.encrypt {
        say("uploading the same dataset encrypted");
        // A bench's key: any 32 bytes do.
        let key_bytes: [u8; 32] = random_bytes(32, 4242).try_into().expect("32 bytes");
        let key = cairn_core::crypt::DatasetKey::from_bytes(key_bytes);
        cairn_cli::context::write_dataset_key(&work.join("dataset-key.json"), &key)?;
        let t = Instant::now();
        let up = upload::upload(
            &ctx,
            UploadArgs {
                encrypt: true,
                ..upload_args(data.clone(), "state-encrypted")
            },
            &connector,
            &progress,
        )?;
        let upload_seconds = t.elapsed().as_secs_f64();
        say("downloading it");
        let t = Instant::now();
        let down = download::download(
            &ctx,
            download_args(&up.dataset_id, "download-encrypted", None),
            &connector,
            &progress,
        )?;
        let download_seconds = t.elapsed().as_secs_f64();
        let (encrypt_stage_mb_s, decrypt_stage_mb_s) = measure_crypt();
        Some(EncryptedRun {
            upload_seconds,
            upload_mb_s: up.dataset_bytes as f64 / 1e6 / upload_seconds,
            download_seconds,
            download_mb_s: down.bytes as f64 / 1e6 / download_seconds,
            stored_bytes: cairn_core::manifest::fs::scan_dir(&data)
                .map_err(|e| CliError::Refused(e.to_string()))?
                .encrypted_len(),
            encrypt_stage_mb_s,
            decrypt_stage_mb_s,
        })
    } else {
        None
    };
    let gateway = if a.gateway {
        say("measuring the gateway");
        Some(gateway_bench(
            &net,
            &key,
            &up.dataset_id,
            &data,
            a.range_reads,
            &connector,
            &progress,
            &work,
        )?)
    } else {
        None
    };
    say("measuring each stage");
    let (upload_stages, download_stages) = measure_stages()?;
    let group_stored_bytes = up
        .shards
        .iter()
        .filter(|s| s.group == Some(0))
        .map(|s| s.bytes)
        .sum();
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
        groups: up.groups,
        group_bytes: up.group_bytes,
        upload_peak_rss,
        download_peak_rss,
        upload_peak_work_bytes,
        group_stored_bytes,
        middle_file_seconds,
        one_group_mib_seconds,
        encrypted,
        gateway,
    })
}

/// Size of each range read of the gateway mode.
const RANGE_BYTES: u64 = 64 << 10;

/// BLAKE3 of what is written.
struct Hashing(blake3::Hasher);

impl std::io::Write for Hashing {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The largest file of `data` through an in-process anonymous gateway: one
/// whole GET (its BLAKE3 checked) next to `cairn download --file` of it,
/// then `reads` random 64 KiB range GETs (each compared with the file).
#[allow(clippy::too_many_arguments)]
fn gateway_bench(
    net: &Network,
    key: &std::path::Path,
    dataset: &str,
    data: &std::path::Path,
    reads: usize,
    connector: &QuicConnector,
    progress: &Progress,
    work: &std::path::Path,
) -> Result<GatewayBench, CliError> {
    use std::io::{Read, Seek};
    let fail =
        |what: &str, e: &dyn fmt::Display| CliError::Refused(format!("gateway bench: {what}: {e}"));
    let mut largest: Option<(u64, String)> = None;
    for e in std::fs::read_dir(data).map_err(CliError::io(data))? {
        let e = e.map_err(CliError::io(data))?;
        let len = e.metadata().map_err(CliError::io(&e.path()))?.len();
        if largest.as_ref().is_none_or(|(l, _)| len > *l) {
            largest = Some((len, e.file_name().to_string_lossy().into_owned()));
        }
    }
    let (len, name) = largest.ok_or_else(|| CliError::Refused("no file to read".into()))?;
    let local = data.join(&name);
    let mut want = Hashing(blake3::Hasher::new());
    std::io::copy(
        &mut std::fs::File::open(&local).map_err(CliError::io(&local))?,
        &mut want,
    )
    .map_err(CliError::io(&local))?;

    let t = Instant::now();
    download::download(
        &net.ctx(key),
        DownloadArgs {
            range: None,
            dataset: dataset.to_string(),
            out: work.join("download-largest"),
            file: Some(name.clone()),
            key: cairn_cli::commands::key::KeyArg {
                key: work.join("dataset-key.json"),
            },
        },
        connector,
        progress,
    )?;
    let download_file_seconds = t.elapsed().as_secs_f64();

    let port = crate::demo::network::free_port(false);
    let args = cairn_cli::gateway::GatewayArgs {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        config: None,
        anonymous: true,
        metrics_listen: None,
        max_requests: 16,
        key: cairn_cli::commands::key::KeyArg {
            key: work.join("dataset-key.json"),
        },
    };
    let ctx = net.ctx(key);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = std::thread::spawn(move || {
        cairn_cli::gateway::serve(ctx, args, &Progress::hidden(), async move {
            let _ = stopped.await;
        })
    });
    let started = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if server.is_finished() || started.elapsed() > Duration::from_secs(30) {
            return Err(CliError::Refused(
                "gateway bench: the gateway did not start".into(),
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let http = reqwest::blocking::Client::builder()
        .timeout(None)
        .build()
        .map_err(|e| fail("HTTP client", &e))?;
    let url = format!("http://127.0.0.1:{port}/{dataset}/{name}");
    // The first request opens the dataset (its manifest); not timed.
    http.head(&url)
        .send()
        .and_then(|r| r.error_for_status())
        .map_err(|e| fail("HEAD", &e))?;
    let t = Instant::now();
    let mut got = Hashing(blake3::Hasher::new());
    let mut response = http
        .get(&url)
        .send()
        .and_then(|r| r.error_for_status())
        .map_err(|e| fail("GET", &e))?;
    let n = response
        .copy_to(&mut got)
        .map_err(|e| fail("GET body", &e))?;
    let gateway_get_seconds = t.elapsed().as_secs_f64();
    if n != len || got.0.finalize() != want.0.finalize() {
        return Err(CliError::Refused(format!(
            "gateway bench: GET {name} returned {n} bytes that differ from the file's {len}"
        )));
    }

    let mut file = std::fs::File::open(&local).map_err(CliError::io(&local))?;
    let span = len.saturating_sub(RANGE_BYTES).max(1);
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut latencies = Vec::with_capacity(reads);
    let mut expect = vec![0u8; RANGE_BYTES.min(len) as usize];
    for _ in 0..reads {
        // xorshift64: offsets spread over the file, the same every run.
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        let at = state % span;
        let end = (at + RANGE_BYTES).min(len);
        let t = Instant::now();
        let body = http
            .get(&url)
            .header("Range", format!("bytes={at}-{}", end - 1))
            .send()
            .and_then(|r| r.error_for_status())
            .and_then(|r| r.bytes())
            .map_err(|e| fail("range GET", &e))?;
        latencies.push(t.elapsed().as_secs_f64() * 1e3);
        let expect = &mut expect[..(end - at) as usize];
        file.seek(std::io::SeekFrom::Start(at))
            .and_then(|_| file.read_exact(expect))
            .map_err(CliError::io(&local))?;
        if body.as_ref() != &expect[..] {
            return Err(CliError::Refused(format!(
                "gateway bench: bytes {at}-{end} of {name} differ from the file"
            )));
        }
    }
    let _ = stop.send(());
    server
        .join()
        .map_err(|_| CliError::Refused("gateway bench: the gateway panicked".into()))??;
    latencies.sort_by(f64::total_cmp);
    let pct = |p: usize| {
        latencies
            .get((latencies.len() * p / 100).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    Ok(GatewayBench {
        object: name,
        object_bytes: len,
        download_file_seconds,
        download_file_mb_s: len as f64 / 1e6 / download_file_seconds,
        gateway_get_seconds,
        gateway_get_mb_s: len as f64 / 1e6 / gateway_get_seconds,
        range_bytes: RANGE_BYTES,
        range_reads: reads,
        range_p50_ms: pct(50),
        range_p99_ms: pct(99),
    })
}
