//! Upload and download through the CLI's orchestration against the real
//! program on a local validator, with in-memory storage nodes as a TEST DOUBLE
//! of `cairn-node` (which speaks QUIC and is tested in storage-node/): the
//! double checks what the node checks (deal on chain, size, Merkle root) and
//! accepts the deal on chain with its operator key.
mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use anchor_lang::prelude::Pubkey;
use anchor_lang::AccountDeserialize;
use cairn_chain::MarketIx;
use cairn_cli::context::Ctx;
use cairn_cli::dataset::download::{download, DownloadArgs};
use cairn_cli::dataset::transport::{Connector, Held, Node, TransportError};
use cairn_cli::dataset::upload::{upload, UploadArgs};
use cairn_cli::output::Progress;
use common::{Fixture, TOKEN};
use solana_commitment_config::CommitmentConfig;
use solana_keypair::Keypair;
use solana_rpc_client::rpc_client::RpcClient;
use solana_signer::Signer;
use solana_transaction::Transaction;
use storage_market::instructions::RegisterProviderArgs;
use storage_market::state::{Deal, DealState};

struct MemoryNodeTestDouble {
    rpc: RpcClient,
    ix: MarketIx,
    operator: Keypair,
    provider: Pubkey,
    shards: Mutex<HashMap<Pubkey, Vec<u8>>>,
    down: AtomicBool,
}

impl MemoryNodeTestDouble {
    fn deal(&self, deal: &Pubkey) -> Result<Deal, TransportError> {
        let data = self
            .rpc
            .get_account_data(deal)
            .map_err(|_| TransportError::refused(format!("unknown deal {deal}")))?;
        Deal::try_deserialize(&mut data.as_slice())
            .map_err(|e| TransportError::refused(e.to_string()))
    }

    fn check_up(&self) -> Result<(), TransportError> {
        if self.down.load(Ordering::SeqCst) {
            return Err(TransportError::unreachable(
                "connection refused (node down)",
            ));
        }
        Ok(())
    }
}

impl Node for MemoryNodeTestDouble {
    fn held(&self, deal: &Pubkey) -> Result<Held, TransportError> {
        self.check_up()?;
        let shards = self.shards.lock().unwrap();
        let received = shards.get(deal).map_or(0, |s| s.len() as u64);
        let expected = self.deal(deal).map(|d| d.shard_bytes).unwrap_or(u64::MAX);
        Ok(Held {
            received,
            complete: received == expected,
        })
    }

    fn put(
        &self,
        deal_key: &Pubkey,
        client: &Keypair,
        offset: u64,
        bytes: &[u8],
    ) -> Result<Held, TransportError> {
        self.check_up()?;
        let deal = self.deal(deal_key)?;
        if deal.provider != self.provider
            || deal.state != DealState::Proposed
            || deal.client != client.pubkey()
        {
            return Err(TransportError::refused(
                "deal is not a proposal of this client to this node",
            ));
        }
        let mut shards = self.shards.lock().unwrap();
        let shard = shards.entry(*deal_key).or_default();
        if offset != shard.len() as u64 || offset + bytes.len() as u64 > deal.shard_bytes {
            return Err(TransportError::refused(format!(
                "bad offset {offset}, have {}",
                shard.len()
            )));
        }
        shard.extend_from_slice(bytes);
        if (shard.len() as u64) < deal.shard_bytes {
            return Ok(Held {
                received: shard.len() as u64,
                complete: false,
            });
        }
        if cairn_proof::root_of(shard) != deal.shard_root {
            shards.remove(deal_key);
            return Err(TransportError::refused("root mismatch"));
        }
        drop(shards);
        let blockhash = self.rpc.get_latest_blockhash().unwrap();
        let tx = Transaction::new_signed_with_payer(
            &[self
                .ix
                .accept_deal_ix(&self.operator.pubkey(), &self.provider, deal_key)],
            Some(&self.operator.pubkey()),
            &[&self.operator],
            blockhash,
        );
        self.rpc
            .send_and_confirm_transaction(&tx)
            .map_err(|e| TransportError::refused(format!("accept_deal: {e}")))?;
        Ok(Held {
            received: deal.shard_bytes,
            complete: true,
        })
    }

    fn get(&self, deal: &Pubkey, offset: u64, len: u64) -> Result<Vec<u8>, TransportError> {
        self.check_up()?;
        let shards = self.shards.lock().unwrap();
        let shard = shards
            .get(deal)
            .ok_or_else(|| TransportError::refused("no such shard"))?;
        shard
            .get(offset as usize..(offset + len) as usize)
            .map(<[u8]>::to_vec)
            .ok_or_else(|| TransportError::refused("range out of bounds"))
    }
}

struct Nodes(HashMap<String, Arc<MemoryNodeTestDouble>>);

impl Connector for Nodes {
    fn connect(&self, endpoint: &str, operator: &Pubkey) -> Result<Box<dyn Node>, TransportError> {
        let node = self
            .0
            .get(endpoint)
            .ok_or_else(|| TransportError::unreachable("no such host"))?;
        node.check_up()?;
        if node.operator.pubkey() != *operator {
            return Err(TransportError::refused(
                "certificate is not the operator's key",
            ));
        }
        Ok(Box::new(node.clone()))
    }
}

fn write_dataset(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files = vec![
        (
            "a/b/big.bin".to_string(),
            (0..300_000u32)
                .map(|i| (i * 7 + i / 13) as u8)
                .collect::<Vec<u8>>(),
        ),
        ("empty.txt".to_string(), Vec::new()),
        (
            "ünïcode/名前.txt".to_string(),
            "héllo wörld".as_bytes().to_vec(),
        ),
    ];
    for i in 0..40 {
        files.push((
            format!("many/small-{i:02}.txt"),
            format!("file {i}\n").repeat(i + 1).into_bytes(),
        ));
    }
    for (path, bytes) in &files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
    files
}

fn assert_same_files(dir: &Path, files: &[(String, Vec<u8>)]) {
    for (path, bytes) in files {
        assert_eq!(&std::fs::read(dir.join(path)).unwrap(), bytes, "{path}");
    }
}

#[test]
fn upload_then_download_with_dead_and_lying_nodes() {
    let f = Fixture::start();
    let info = f.localnet.info().clone();
    let mut nodes = HashMap::new();
    for i in 0..6 {
        let (authority, _) = f.user(&format!("provider-{i}"), 10 * TOKEN);
        let endpoint = format!("node-{i}.test:7000");
        let args = RegisterProviderArgs {
            operator: authority.pubkey(),
            endpoint: endpoint.clone(),
            capacity_bytes: 1 << 30,
            price_per_mib_epoch: 100 + i as u64,
        };
        let ix = f.localnet.market_ix();
        f.send(
            &[
                ix.register_provider_ix(&authority.pubkey(), args),
                ix.deposit_stake_ix(&authority.pubkey(), &f.ata(&authority.pubkey()), TOKEN),
            ],
            &[&authority],
        );
        nodes.insert(
            endpoint,
            Arc::new(MemoryNodeTestDouble {
                rpc: RpcClient::new_with_commitment(
                    info.rpc_url.clone(),
                    CommitmentConfig::confirmed(),
                ),
                ix,
                provider: cairn_chain::provider_pda(&authority.pubkey()),
                operator: authority,
                shards: Mutex::default(),
                down: AtomicBool::new(false),
            }),
        );
    }
    let nodes = Nodes(nodes);
    let (client, client_key) = f.user("client", 10 * TOKEN);
    let data = tempfile::tempdir().unwrap();
    let files = write_dataset(data.path());
    let state = tempfile::tempdir().unwrap();
    let ctx = Ctx::new(&info.rpc_url, client_key.clone());

    let up = |resume: bool| {
        upload(
            &ctx,
            UploadArgs {
                dir: data.path().to_path_buf(),
                data_shards: 4,
                parity_shards: 2,
                epochs: 5,
                max_price: None,
                resume,
                state_dir: Some(state.path().to_path_buf()),
                accept_timeout: 60,
            },
            &nodes,
            &Progress::hidden(),
        )
    };
    let report = up(false).expect("upload");
    assert_eq!(report.shards.len(), 6);
    assert_eq!(report.files, files.len());
    let id: cairn_core::DatasetId = report.dataset_id.parse().unwrap();
    let mut providers: Vec<&str> = report.shards.iter().map(|s| s.provider.as_str()).collect();
    providers.sort();
    providers.dedup();
    assert_eq!(providers.len(), 6, "one provider per shard");
    for s in &report.shards {
        let deal: Deal = Deal::try_deserialize(
            &mut f
                .rpc
                .get_account_data(&s.deal.parse().unwrap())
                .unwrap()
                .as_slice(),
        )
        .unwrap();
        assert_eq!(deal.state, DealState::Active);
        assert_eq!(deal.client, client.pubkey());
    }
    // Escrow: 5 epochs at each provider's price (shards under 1 MiB).
    assert_eq!(report.escrow, (0..6).map(|i| 5 * (100 + i)).sum::<u64>());

    let dl = |out: &Path, file: Option<&str>| {
        download(
            &ctx,
            DownloadArgs {
                dataset: id.to_string(),
                out: out.to_path_buf(),
                file: file.map(str::to_string),
                client: None,
            },
            &nodes,
            &Progress::hidden(),
        )
    };
    let outs = tempfile::tempdir().unwrap();
    let all = dl(&outs.path().join("all"), None).expect("download");
    assert_same_files(&outs.path().join("all"), &files);
    assert_eq!(all.files, files.len());
    assert!(all.providers.iter().all(|p| p.status == "ok"));

    // One file only: just it is written.
    let one = outs.path().join("one");
    dl(&one, Some("ünïcode/名前.txt")).expect("single file");
    assert_eq!(
        std::fs::read(one.join("ünïcode/名前.txt")).unwrap(),
        "héllo wörld".as_bytes()
    );
    assert_eq!(std::fs::read_dir(&one).unwrap().count(), 1);

    // Two nodes dead (m = 2): still byte-exact, and the report says which.
    let by_shard = |i: usize| {
        nodes
            .0
            .values()
            .find(|n| n.provider.to_string() == report.shards[i].provider)
            .unwrap()
            .clone()
    };
    by_shard(0).down.store(true, Ordering::SeqCst);
    by_shard(3).down.store(true, Ordering::SeqCst);
    let degraded = dl(&outs.path().join("degraded"), None).expect("download with 2 dead");
    assert_same_files(&outs.path().join("degraded"), &files);
    let unreachable: Vec<u16> = degraded
        .providers
        .iter()
        .filter(|p| p.status.starts_with("unreachable"))
        .map(|p| p.shard_index)
        .collect();
    assert_eq!(unreachable, [0, 3]);

    // A lying node: one flipped byte in shard 1's data; still byte-exact, and
    // the provider is named.
    by_shard(3).down.store(false, Ordering::SeqCst);
    let deal1: Pubkey = report.shards[1].deal.parse().unwrap();
    by_shard(1).shards.lock().unwrap().get_mut(&deal1).unwrap()[10] ^= 0x40;
    let lied = dl(&outs.path().join("lied"), None).expect("download around a liar");
    assert_same_files(&outs.path().join("lied"), &files);
    let named: Vec<&str> = lied
        .providers
        .iter()
        .filter(|p| p.status.starts_with("bad data"))
        .map(|p| p.provider.as_str())
        .collect();
    assert_eq!(named, [report.shards[1].provider.as_str()]);

    // Three of six gone: a clear refusal, nothing written.
    by_shard(3).down.store(true, Ordering::SeqCst);
    by_shard(4).down.store(true, Ordering::SeqCst);
    let err = dl(&outs.path().join("lost"), None).unwrap_err();
    assert!(err.to_string().contains("reachable"), "{err}");
    assert!(!outs.path().join("lost").exists());

    // An unknown dataset.
    let err = download(
        &ctx,
        DownloadArgs {
            dataset: "00".repeat(32),
            out: outs.path().join("x"),
            file: None,
            client: None,
        },
        &nodes,
        &Progress::hidden(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("unknown dataset"), "{err}");

    // Interrupted after the proposals landed but before the upload record
    // was saved: the record says "prepared", the chain holds the deals.
    // `--resume` adopts them instead of proposing again (no second escrow).
    let work = cairn_cli::dataset::state::work_dir(
        state.path(),
        &client.pubkey().to_string(),
        &std::path::absolute(data.path()).unwrap(),
    );
    let record = work.join(cairn_cli::dataset::state::STATE_FILE);
    let mut saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
    for shard in saved["shards"].as_array_mut().unwrap() {
        shard["stage"] = "prepared".into();
        shard["provider"] = serde_json::Value::Null;
    }
    std::fs::write(&record, serde_json::to_vec(&saved).unwrap()).unwrap();
    let client_tokens = f.ata(&client.pubkey());
    let balance = || ctx.token_balance(&client_tokens).unwrap();
    let before = balance();
    let resumed = up(true).expect("resume adopts the landed proposals");
    assert_eq!(resumed.shards, report.shards);
    assert_eq!(resumed.replaced_providers, 0);
    assert_eq!(balance(), before, "no deal proposed twice");
}
