//! `cairn-node bench`: the data path of one node measured on this machine, with
//! the chain left out. Deals live in a [`LocalDeals`] table owned by the
//! benchmark (there is no validator); everything else is the real server, store,
//! client and QUIC stack, in a temporary directory.
//!
//! The proof session is the prover's own code ([`Session`]) over a deal set of
//! `--epoch-deals` stored shards: planned from a seed, its transactions packed and
//! every sample read from the store and verified. Beside it, the planner's number of
//! proof transactions per epoch at 1 to 100,000 deals, against the one transaction
//! per deal per epoch of the design before Proving v2.

use crate::{
    chain::{ChainError, ChainView},
    client::NodeClient,
    metrics::Metrics,
    server::{Limits, Node},
    session::{Session, ShardsByRoot},
    store::{write_at, ShardHasher, Store, SUM_BLOCK},
};
use cairn_chain::proving;
use cairn_chain::Pubkey;
use cairn_proof::TreeBuilder;
use solana_keypair::Keypair;
use solana_signer::Signer;
use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};
use storage_market::state::{Deal, DealState, SetEntry};
use tokio_util::sync::CancellationToken;

/// Deals known only to the benchmark: the chain is not part of what it measures.
#[derive(Default)]
pub struct LocalDeals {
    deals: Mutex<HashMap<Pubkey, Deal>>,
    provider: Pubkey,
}

impl LocalDeals {
    fn add(&self, client: &Keypair, data: &[u8]) -> Pubkey {
        let mut b = TreeBuilder::new();
        b.update(data);
        let key = Pubkey::new_unique();
        let deal = Deal {
            client: Pubkey::new_from_array(client.pubkey().to_bytes()),
            provider: self.provider,
            dataset_id: [0; 32],
            group_id: [0; 32],
            group: 0,
            shard_index: 0,
            generation: 0,
            k: 1,
            n: 1,
            shard_root: b.finish().root(),
            shard_bytes: data.len() as u64,
            price_per_epoch: 0,
            duration_epochs: 1,
            escrow: 0,
            collateral: 0,
            collateral_left: 0,
            client_refund: 0,
            state: DealState::Proposed,
            proposed_epoch: 0,
            start_epoch: 0,
            end_epoch: 1,
            settled_until: 0,
            proven_epochs: 0,
            failed_epochs: 0,
            void_epochs: 0,
            forfeit: false,
            in_set: false,
            set_index: 0,
            slash_bps: 0,
            accept_timeout_epochs: 1,
            bump: 0,
        };
        self.deals.lock().expect("deals").insert(key, deal);
        key
    }
}

impl ChainView for LocalDeals {
    async fn deal(&self, deal: &Pubkey) -> Result<Option<Deal>, ChainError> {
        Ok(self.deals.lock().expect("deals").get(deal).cloned())
    }
    async fn accept_deal(&self, deal: &Pubkey) -> Result<String, ChainError> {
        if let Some(d) = self.deals.lock().expect("deals").get_mut(deal) {
            d.state = DealState::Active;
        }
        Ok(String::from("local"))
    }
    fn provider(&self) -> Pubkey {
        self.provider
    }
}

/// What to measure.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchOptions {
    /// Shards uploaded.
    #[arg(long, default_value_t = 4)]
    pub shards: usize,
    /// Size of each shard, MiB.
    #[arg(long, default_value_t = 64)]
    pub shard_mib: usize,
    /// Proofs generated from the uploaded shards.
    #[arg(long, default_value_t = 10_000)]
    pub proofs: usize,
    /// Deals in the deal set of the proof session built (distinct 16 KiB shards
    /// written straight to the store).
    #[arg(long, default_value_t = 10_000)]
    pub epoch_deals: usize,
    /// Samples per epoch of the session (the market's `samples_per_epoch`).
    #[arg(long, default_value_t = 32)]
    pub samples_per_epoch: u16,
}

/// Shard size of the proof-session benchmark.
const SESSION_SHARD_BYTES: usize = 16 * 1024;

/// Deal counts of the proof-transaction table.
const TABLE_DEALS: [u64; 4] = [1, 100, 10_000, 100_000];

/// Proof transactions of one session over `deals` entries of `shard_bytes`, from
/// the planner (`plan_session` + `pack_session`), all deals running.
pub fn proof_transactions(deals: u64, shard_bytes: u64, samples_per_epoch: u16) -> usize {
    let entries: Vec<SetEntry> = (0..deals)
        .map(|i| SetEntry {
            end_epoch: u64::MAX,
            shard_bytes,
            shard_root: [(i % 251) as u8; 32],
        })
        .collect();
    let provider = Pubkey::new_from_array([9; 32]);
    let plan = proving::plan_session(&[42; 32], &provider, 7, samples_per_epoch, &entries);
    proving::pack_session(&plan).len()
}

/// Most samples of a shard of `shard_bytes` that one proof transaction carries
/// (with one deal-set page).
pub fn samples_per_transaction(shard_bytes: u64) -> usize {
    let depth = cairn_proof::depth(shard_bytes);
    (1..)
        .take_while(|k| proving::proof_tx_len(&vec![depth; *k], 1) <= proving::PACKET_BYTES)
        .last()
        .unwrap_or(0)
}

fn random_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 32);
    let mut counter = 0u64;
    while out.len() < len {
        let mut h = blake3::Hasher::new();
        h.update(&seed.to_le_bytes());
        h.update(&counter.to_le_bytes());
        let mut reader = h.finalize_xof();
        let mut block = [0u8; 4096];
        reader.fill(&mut block);
        out.extend_from_slice(&block);
        counter += 1;
    }
    out.truncate(len);
    out
}

fn mbps(bytes: usize, took: Duration) -> f64 {
    bytes as f64 / (1 << 20) as f64 / took.as_secs_f64()
}

/// Sends each of `shards` over its own stream of one loopback QUIC connection
/// (the node's TLS setup) to a server that discards the bytes; the time taken.
/// The ceiling for anything that moves those bytes through a node.
pub async fn raw_quinn(shards: &[Vec<u8>]) -> anyhow::Result<Duration> {
    let operator = Keypair::new();
    let operator_key = Pubkey::new_from_array(operator.pubkey().to_bytes());
    let config = crate::tls::server_config(&operator, 16, Duration::from_secs(30))?;
    let raw_endpoint = quinn::Endpoint::server(config, "127.0.0.1:0".parse()?)?;
    let raw_addr = raw_endpoint.local_addr()?;
    let server = tokio::spawn(async move {
        while let Some(incoming) = raw_endpoint.accept().await {
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                while let Ok((mut send, mut recv)) = conn.accept_bi().await {
                    while let Ok(Some(_)) = recv.read_chunk(1 << 20, false).await {}
                    let _ = send.write_all(&[1]).await;
                    let _ = send.finish();
                    let _ = send.stopped().await;
                }
            });
        }
    });
    let raw = NodeClient::connect(raw_addr, operator_key).await?;
    let start = Instant::now();
    for shard in shards {
        let (mut send, mut recv) = raw.connection().open_bi().await?;
        for piece in shard.chunks(256 * 1024) {
            send.write_all(piece).await?;
        }
        send.finish()?;
        let mut ack = [0u8; 1];
        recv.read_exact(&mut ack).await?;
    }
    let took = start.elapsed();
    raw.close().await;
    server.abort();
    Ok(took)
}

/// Runs every measurement and returns a printable report.
pub async fn run(opts: BenchOptions) -> anyhow::Result<String> {
    let dir = tempfile_dir()?;
    let operator = Keypair::new();
    let operator_key = Pubkey::new_from_array(operator.pubkey().to_bytes());
    let chain = Arc::new(LocalDeals {
        provider: Pubkey::new_unique(),
        ..LocalDeals::default()
    });
    let store = Arc::new(Store::open(&dir)?);
    let node = Arc::new(Node::new(
        store.clone(),
        chain.clone(),
        operator_key,
        Limits {
            capacity_bytes: u64::MAX,
            max_connections: 16,
            min_free_disk_bytes: 0,
            ..Limits::default()
        },
        Arc::new(Metrics::default()),
    ));
    let cancel = CancellationToken::new();
    let config = crate::tls::server_config(&operator, 16, Duration::from_secs(30))?;
    let endpoint = quinn::Endpoint::server(config, "127.0.0.1:0".parse()?)?;
    let addr = endpoint.local_addr()?;
    tokio::spawn(node.clone().serve(endpoint, cancel.clone()));

    let client = Keypair::new();
    let shard_len = opts.shard_mib << 20;
    let shards: Vec<Vec<u8>> = (0..opts.shards)
        .map(|i| random_bytes(shard_len, i as u64))
        .collect();
    let keys: Vec<Pubkey> = shards.iter().map(|s| chain.add(&client, s)).collect();
    let total = shard_len * opts.shards;
    let mut out = String::new();

    // Uploads through the node (stream to disk, hash, fsync, rename, RocksDB).
    let c = NodeClient::connect(addr, operator_key).await?;
    let start = Instant::now();
    for (key, shard) in keys.iter().zip(&shards) {
        c.put_shard(key, &client, 0, shard).await?;
    }
    let upload = start.elapsed();
    // Downloads through the node: every 4 KiB chunk checked against the shard's
    // kept Merkle levels before it is sent.
    let start = Instant::now();
    for (key, shard) in keys.iter().zip(&shards) {
        c.get_shard_into(key, 0, shard.len() as u64, tokio::io::sink())
            .await?;
    }
    let download = start.elapsed();
    c.close().await;

    // Raw quinn: the same bytes into a stream that discards them.
    let raw_took = raw_quinn(&shards).await?;
    out.push_str(&format!(
        "upload {} x {} MiB: node {:.1} MB/s, raw quinn {:.1} MB/s (same bytes, same run)\n",
        opts.shards,
        opts.shard_mib,
        mbps(total, upload),
        mbps(total, raw_took)
    ));
    // The check alone, in memory: what it costs the node's CPU.
    let check = match (keys.first(), shards.first()) {
        (Some(key), Some(shard)) => {
            let tree = store
                .tree(&key.to_bytes())?
                .ok_or_else(|| anyhow::anyhow!("no tree"))?;
            let start = Instant::now();
            let mut at = 0u64;
            while at < shard.len() as u64 {
                let range = tree.chunk_range(at / cairn_proof::SEGMENT_BYTES as u64);
                tree.path(
                    range.start / cairn_proof::SEGMENT_BYTES as u64,
                    &shard[range.start as usize..range.end as usize],
                )
                .map_err(|e| anyhow::anyhow!("{e}"))?;
                at = range.end;
            }
            let by_tree = mbps(shard.len(), start.elapsed());
            let sums = store
                .sums(&key.to_bytes())?
                .ok_or_else(|| anyhow::anyhow!("no block sums"))?;
            let start = Instant::now();
            for (i, block) in shard.chunks(SUM_BLOCK as usize).enumerate() {
                anyhow::ensure!(sums.check(i as u64, block), "block {i} fails its sum");
            }
            (mbps(shard.len(), start.elapsed()), by_tree)
        }
        _ => (0.0, 0.0),
    };
    out.push_str(&format!(
        "download {} x {} MiB: node {:.1} MB/s with every byte checked (the check alone, one core: {:.1} MB/s by BLAKE3 block sums, {:.1} MB/s by the Merkle tree's 4 KiB subtrees), raw quinn upload {:.1} MB/s\n",
        opts.shards,
        opts.shard_mib,
        mbps(total, download),
        check.0,
        check.1,
        mbps(total, raw_took)
    ));

    // Proof generation from the kept levels: one 4 KiB read + hashing.
    if let Some(key) = keys.first() {
        let deal = key.to_bytes();
        let segments = cairn_proof::segment_count(shard_len as u64);
        let tree = store
            .tree(&deal)?
            .ok_or_else(|| anyhow::anyhow!("no tree"))?;
        let _ = node.proof(&deal, 0); // warm the tree cache
        let start = Instant::now();
        for j in 0..opts.proofs {
            let index = cairn_proof::challenge_index(&[7; 32], &deal, j as u32, segments);
            node.proof(&deal, index)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        let with_read = start.elapsed() / opts.proofs.max(1) as u32;
        let start = Instant::now();
        for j in 0..opts.proofs {
            let index = cairn_proof::challenge_index(&[7; 32], &deal, j as u32, segments);
            let range = tree.chunk_range(index);
            let chunk = &shards[0][range.start as usize..range.end as usize];
            tree.path(index, chunk)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
        let hashing = start.elapsed() / opts.proofs.max(1) as u32;
        out.push_str(&format!(
            "proof from kept levels ({} MiB shard, {} proofs): {:.1} us each with the 4 KiB read, {:.1} us hashing only (target < 50 us)\n",
            opts.shard_mib,
            opts.proofs,
            with_read.as_secs_f64() * 1e6,
            hashing.as_secs_f64() * 1e6
        ));
    }

    // One proof session over a set of many deals, chain excluded: the prover's
    // planning, packing and sample building, every sample verified.
    let deals = opts.epoch_deals.max(1);
    let mut entries = Vec::with_capacity(deals);
    tokio::task::block_in_place(|| -> anyhow::Result<()> {
        for i in 0..deals {
            let data = random_bytes(SESSION_SHARD_BYTES, 1_000_000 + i as u64);
            let mut builder = ShardHasher::default();
            builder.update(&data);
            let hashed = builder.finish();
            let root = hashed.tree.root();
            let deal = Pubkey::new_unique().to_bytes();
            store.begin(&deal, data.len() as u64, root)?;
            let file = store.open_partial(&deal, 0)?;
            write_at(&file, &store.partial_path(&deal), 0, &data)?;
            store.finish(&deal, &file, &hashed)?;
            entries.push(SetEntry {
                end_epoch: u64::MAX,
                shard_bytes: data.len() as u64,
                shard_root: root,
            });
        }
        Ok(())
    })?;
    let provider = Pubkey::new_unique();
    let start = Instant::now();
    let shards = ShardsByRoot::from_store(&store)?;
    let indexed = start.elapsed();
    let session = Session::plan(&[42; 32], &provider, 7, opts.samples_per_epoch, entries);
    let txs = session.transactions(0);
    let mut samples = 0;
    for tx in &txs {
        samples += session
            .samples(node.as_ref(), &shards, &tx.live)
            .map_err(|e| anyhow::anyhow!("{e}"))?
            .len();
    }
    let took = start.elapsed();
    out.push_str(&format!(
        "proof session over {deals} deals of {} KiB ({} samples per epoch, chain excluded): {:.2} ms \
         ({:.2} ms indexing stored shards by root, then {samples} samples planned, read and verified \
         into {} proof transactions); before Proving v2: {deals} transactions\n",
        SESSION_SHARD_BYTES / 1024,
        opts.samples_per_epoch,
        took.as_secs_f64() * 1e3,
        indexed.as_secs_f64() * 1e3,
        txs.len(),
    ));

    // Proof transactions per epoch from the planner, whatever the number of deals.
    let small = SESSION_SHARD_BYTES as u64;
    let large = cairn_proof::MAX_SHARD_BYTES;
    out.push_str(&format!(
        "proof transactions per epoch at {s} samples per epoch (planner: plan_session + pack_session; \
         bound: at most {s}, one per sample, whatever the deals; before Proving v2: one per deal)\n\
         {:>9} {:>14} {:>14} {:>18}\n",
        "deals",
        format!("{} KiB shards", small / 1024),
        "4 GiB shards",
        "before (per deal)",
        s = opts.samples_per_epoch,
    ));
    for n in TABLE_DEALS {
        out.push_str(&format!(
            "{n:>9} {:>14} {:>14} {n:>18}\n",
            proof_transactions(n, small, opts.samples_per_epoch),
            proof_transactions(n, large, opts.samples_per_epoch),
        ));
    }
    out.push_str(&format!(
        "samples per proof transaction (one deal-set page): {} at {} KiB shards, {} at 4 GiB\n",
        samples_per_transaction(small),
        small / 1024,
        samples_per_transaction(large),
    ));
    cancel.cancel();
    drop(node);
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(out)
}

fn tempfile_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::temp_dir().join(format!("cairn-node-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
