//! Upload, download and repair of a dataset of several erasure groups through
//! the CLI's orchestration against the real program on a local validator, with
//! in-memory storage nodes as a TEST DOUBLE
//! of `cairn-node` (which speaks QUIC and is tested in storage-node/): the
//! double checks what the node checks (deal on chain, size, Merkle root),
//! accepts the deal on chain with its operator key, and proves an epoch when
//! the test asks (one proof session for all its deals, as a node does).
mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use anchor_lang::prelude::Pubkey;
use anchor_lang::AccountDeserialize;
use cairn_chain::proving;
use cairn_chain::MarketIx;
use cairn_cli::context::Ctx;
use cairn_cli::dataset::download::{download, DownloadArgs, SourceKind};
use cairn_cli::dataset::repair::{repair, RepairArgs};
use cairn_cli::dataset::transport::{Connector, Held, Node, TransportError};
use cairn_cli::dataset::upload::{upload, UploadArgs};
use cairn_cli::output::Progress;
use cairn_core::wire::{ErrorCode, WireError};
use common::{open_epoch, Fixture, TOKEN};
use solana_commitment_config::CommitmentConfig;
use solana_keypair::Keypair;
use solana_rpc_client::rpc_client::RpcClient;
use solana_signer::Signer;
use solana_transaction::Transaction;
use storage_market::constants::{deal_set_page, log_page};
use storage_market::instructions::{ProofSample, RegisterProviderArgs};
use storage_market::state::{Challenge, Deal, DealSet, DealState};

struct MemoryNodeTestDouble {
    rpc: RpcClient,
    ix: MarketIx,
    operator: Keypair,
    provider: Pubkey,
    shards: Mutex<HashMap<Pubkey, Vec<u8>>>,
    down: AtomicBool,
    /// `get` requests served, per deal.
    reads: Mutex<HashMap<Pubkey, usize>>,
    /// Milliseconds each `held` answer takes (a slower node is asked last).
    latency_ms: AtomicU64,
    /// Answers every read with `CorruptCopy`, as a node whose stored copies
    /// failed their check does.
    corrupt_copy: AtomicBool,
}

fn fetch<T: AccountDeserialize>(rpc: &RpcClient, address: &Pubkey) -> T {
    T::try_deserialize(&mut rpc.get_account_data(address).unwrap().as_slice()).unwrap()
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

    /// Proves the opened `epoch` as a node does: plans the session from the
    /// challenge's seed and the deal set visible at `epoch`, and answers each
    /// live draw from the shard whose root the drawn entry pins.
    fn prove(&self, epoch: u64) {
        let challenge: Challenge = fetch(&self.rpc, &cairn_chain::challenge_pda());
        assert_eq!(challenge.epoch, epoch);
        let set: DealSet = fetch(&self.rpc, &cairn_chain::deal_set_pda(&self.provider));
        let pages: Vec<_> = (0..set.pages)
            .map(|page| {
                let address = cairn_chain::deal_set_page_pda(&self.provider, page);
                proving::decode_deal_set_page(&self.rpc.get_account_data(&address).unwrap())
                    .unwrap()
            })
            .collect();
        let entries = proving::entries_at(set.len_at(epoch), &pages, epoch).unwrap();
        let plan = proving::plan_session(
            &challenge.seed,
            &self.provider,
            epoch,
            challenge.samples_per_epoch,
            &entries,
        );
        // One live draw per (legacy) transaction, with the ended draws before
        // it, which the program walks through.
        let mut start = 0;
        for (k, d) in plan.iter().enumerate().filter(|(_, d)| d.live) {
            let root = entries[d.entry as usize].shard_root;
            let sample = {
                let shards = self.shards.lock().unwrap();
                let bytes = shards
                    .values()
                    .find(|b| cairn_proof::root_of(b) == root)
                    .expect("the node holds every shard of its deal set");
                let (segment, path) = cairn_proof::path_of(bytes, d.segment);
                ProofSample { segment, path }
            };
            let mut pages: Vec<u32> = plan[start..=k]
                .iter()
                .map(|d| deal_set_page(d.entry))
                .collect();
            pages.sort();
            pages.dedup();
            start = k + 1;
            let ix = self.ix.prove_ix(
                &self.operator.pubkey(),
                &self.provider,
                epoch,
                vec![sample],
                &pages,
            );
            let blockhash = self.rpc.get_latest_blockhash().unwrap();
            let tx = Transaction::new_signed_with_payer(
                &[ix],
                Some(&self.operator.pubkey()),
                &[&self.operator],
                blockhash,
            );
            self.rpc.send_and_confirm_transaction(&tx).expect("prove");
        }
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
        std::thread::sleep(std::time::Duration::from_millis(
            self.latency_ms.load(Ordering::SeqCst),
        ));
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
        let set: DealSet = fetch(&self.rpc, &cairn_chain::deal_set_pda(&self.provider));
        let blockhash = self.rpc.get_latest_blockhash().unwrap();
        let tx = Transaction::new_signed_with_payer(
            &[self
                .ix
                .accept_deal_ix(&self.operator.pubkey(), &self.provider, deal_key, set.len)],
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
        if self.corrupt_copy.load(Ordering::SeqCst) {
            return Err(TransportError::answer(&WireError::new(
                ErrorCode::CorruptCopy,
                "the stored shard failed its check",
            )));
        }
        *self.reads.lock().unwrap().entry(*deal).or_default() += 1;
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

/// `count` registered providers (provider `i` at price 100 + i), each with
/// an in-memory node test double.
fn start_nodes(f: &Fixture, count: usize) -> Nodes {
    let info = f.localnet.info().clone();
    let mut nodes = HashMap::new();
    for i in 0..count {
        let (authority, _) = f.user(&format!("provider-{i}"), 10 * TOKEN);
        let endpoint = format!("node-{i}.test:7000");
        let args = RegisterProviderArgs {
            operator: authority.pubkey(),
            endpoint: endpoint.clone(),
            capacity_bytes: 1 << 30,
            price_per_mib_epoch: 100 + i as u64,
        };
        let ix = f.localnet.market_ix();
        let provider = cairn_chain::provider_pda(&authority.pubkey());
        // With its deal set's first page and its proof log (a node makes them).
        f.send(
            &[
                ix.register_provider_ix(&authority.pubkey(), args),
                ix.deposit_stake_ix(&authority.pubkey(), &f.ata(&authority.pubkey()), TOKEN),
                ix.extend_deal_set_ix(&authority.pubkey(), &provider, 0),
                ix.open_proof_log_ix(&authority.pubkey(), &provider, log_page(0)),
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
                reads: Mutex::default(),
                latency_ms: AtomicU64::new(0),
                corrupt_copy: AtomicBool::new(false),
            }),
        );
    }
    Nodes(nodes)
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
    files.push((
        "mid/span.bin".to_string(),
        (0..140_000u32).map(|i| (i * 13 + 5) as u8).collect(),
    ));
    for (path, bytes) in &files {
        let p = root.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, bytes).unwrap();
    }
    std::fs::create_dir_all(root.join("empty/nested/dir")).unwrap();
    files
}

/// Packed bytes per group: the 447 kB dataset makes 7 data groups, and
/// `mid/span.bin` spans 3 of them.
const GROUP: u64 = 64 << 10;

fn assert_same_files(dir: &Path, files: &[(String, Vec<u8>)]) {
    for (path, bytes) in files {
        assert_eq!(&std::fs::read(dir.join(path)).unwrap(), bytes, "{path}");
    }
}

#[test]
fn upload_download_with_dead_and_lying_nodes_then_repair() {
    let f = Fixture::start();
    let info = f.localnet.info().clone();
    // Eight providers; the upload takes the six cheapest, the repair the rest.
    let nodes = start_nodes(&f, 8);
    let (client, client_key) = f.user("client", 10 * TOKEN);
    let data = tempfile::tempdir().unwrap();
    let files = write_dataset(data.path());
    let state = tempfile::tempdir().unwrap();
    let ctx = Ctx::new(&info.rpc_url, client_key.clone());

    let args = |resume: bool, state: &Path| UploadArgs {
        group_size: Some(GROUP.to_string()),
        dir: data.path().to_path_buf(),
        data_shards: 4,
        parity_shards: 2,
        epochs: 100,
        max_price: None,
        resume,
        state_dir: Some(state.to_path_buf()),
        accept_timeout: 60,
        encrypt: false,
        key: cairn_cli::commands::key::KeyArg {
            key: "/nonexistent/dataset-key.json".into(),
        },
    };
    let up = |resume: bool| {
        upload(
            &ctx,
            args(resume, state.path()),
            &nodes,
            &Progress::hidden(),
        )
    };
    // Too little to pay for the whole dataset: refused with the numbers, before
    // anything is coded (no work directory).
    let (_, poor_key) = f.user("poor", 1_000);
    let poor_state = tempfile::tempdir().unwrap();
    let err = upload(
        &Ctx::new(&info.rpc_url, poor_key),
        args(false, poor_state.path()),
        &nodes,
        &Progress::hidden(),
    )
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("insufficient funds")
            && text.contains("8 group(s)")
            && text.contains("short"),
        "{text}"
    );
    assert_eq!(std::fs::read_dir(poor_state.path()).unwrap().count(), 0);

    let report = up(false).expect("upload");
    assert_eq!(report.groups, 7);
    assert_eq!(
        report.shards.len(),
        6 * 8,
        "7 data groups and the index group"
    );
    assert_eq!(report.files, files.len());
    assert_eq!(report.dirs, 1);
    let id: cairn_core::DatasetId = report.dataset_id.parse().unwrap();
    let group_of = |g: Option<u64>| -> Vec<&cairn_cli::dataset::upload::ShardPlaced> {
        report.shards.iter().filter(|s| s.group == g).collect()
    };
    for g in (0..7).map(Some).chain([None]) {
        let mut providers: Vec<&str> = group_of(g).iter().map(|s| s.provider.as_str()).collect();
        providers.sort();
        providers.dedup();
        assert_eq!(providers.len(), 6, "one provider per shard of group {g:?}");
    }
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
    // Escrow: 100 epochs at each provider's price (shards under 1 MiB), for
    // each of the 8 groups.
    assert_eq!(
        report.escrow,
        8 * (0..6).map(|i| 100 * (100 + i)).sum::<u64>()
    );

    let dl_range = |out: &Path, file: Option<&str>, range: Option<&str>| {
        download(
            &ctx,
            DownloadArgs {
                range: range.map(str::to_string),
                dataset: id.to_string(),
                out: out.to_path_buf(),
                file: file.map(str::to_string),
                key: cairn_cli::commands::key::KeyArg {
                    key: "/nonexistent/dataset-key.json".into(),
                },
            },
            &nodes,
            &Progress::hidden(),
        )
    };
    let dl = |out: &Path, file: Option<&str>| dl_range(out, file, None);
    let outs = tempfile::tempdir().unwrap();
    let all = dl(&outs.path().join("all"), None).expect("download");
    assert_same_files(&outs.path().join("all"), &files);
    assert!(
        outs.path().join("all/empty/nested/dir").is_dir(),
        "empty directories survive"
    );
    assert_eq!(all.files, files.len());
    assert_eq!(all.groups_read, (0..7).collect::<Vec<_>>());
    assert!(all.providers.iter().all(|p| p.kind == SourceKind::Ok));

    // One file only: just it is written.
    let one = outs.path().join("one");
    dl(&one, Some("ünïcode/名前.txt")).expect("single file");
    assert_eq!(
        std::fs::read(one.join("ünïcode/名前.txt")).unwrap(),
        "héllo wörld".as_bytes()
    );
    assert_eq!(std::fs::read_dir(&one).unwrap().count(), 1);

    // The file spanning groups 4, 5 and 6, alone and a range inside it: the
    // nodes serve reads of those groups' deals (and the index group's) only.
    let deals_of = |groups: &[Option<u64>]| -> Vec<Pubkey> {
        report
            .shards
            .iter()
            .filter(|s| groups.contains(&s.group))
            .map(|s| s.deal.parse().unwrap())
            .collect()
    };
    let reads = || -> HashMap<Pubkey, usize> {
        let mut all = HashMap::new();
        for n in nodes.0.values() {
            for (deal, count) in std::mem::take(&mut *n.reads.lock().unwrap()) {
                *all.entry(deal).or_default() += count;
            }
        }
        all
    };
    let span = files.iter().find(|(p, _)| p == "mid/span.bin").unwrap();
    reads();
    let got = dl(&outs.path().join("span"), Some("mid/span.bin")).expect("spanning file");
    assert_eq!(got.groups_read, [4, 5, 6]);
    assert_eq!(
        std::fs::read(outs.path().join("span/mid/span.bin")).unwrap(),
        span.1
    );
    let allowed = deals_of(&[None, Some(4), Some(5), Some(6)]);
    let read = reads();
    assert!(read.keys().all(|d| allowed.contains(d)), "read {read:?}");
    assert!(deals_of(&[Some(5)]).iter().any(|d| read.contains_key(d)));
    let got = dl_range(
        &outs.path().join("range"),
        Some("mid/span.bin"),
        Some("70000-70100"),
    )
    .expect("range");
    let part = std::fs::read(outs.path().join("range/mid/span.bin")).unwrap();
    assert_eq!(&part[70_000..], &span.1[70_000..70_100]);
    assert_eq!(got.bytes, 100);
    assert_eq!(got.groups_read.len(), 1);
    let read = reads();
    let group = Some(got.groups_read[0] as u64);
    let allowed = deals_of(&[None, group]);
    assert!(read.keys().all(|d| allowed.contains(d)), "read {read:?}");

    // Two nodes dead (m = 2): still byte-exact, and the report says which.
    // Shard i of every group went to the same provider (the i-th best).
    let by_shard = |i: usize| {
        nodes
            .0
            .values()
            .find(|n| n.provider.to_string() == group_of(Some(0))[i].provider)
            .unwrap()
            .clone()
    };
    by_shard(0).down.store(true, Ordering::SeqCst);
    by_shard(3).down.store(true, Ordering::SeqCst);
    let degraded = dl(&outs.path().join("degraded"), None).expect("download with 2 dead");
    assert_same_files(&outs.path().join("degraded"), &files);
    let mut unreachable: Vec<u16> = degraded
        .providers
        .iter()
        .filter(|p| p.kind == SourceKind::Unreachable)
        .map(|p| p.shard_index)
        .collect();
    unreachable.sort();
    unreachable.dedup();
    assert_eq!(unreachable, [0, 3]);

    // A lying node: one flipped byte in shard 1's data; still byte-exact, and
    // the provider is named.
    by_shard(3).down.store(false, Ordering::SeqCst);
    let deal1: Pubkey = group_of(Some(0))[1].deal.parse().unwrap();
    by_shard(1).shards.lock().unwrap().get_mut(&deal1).unwrap()[10] ^= 0x40;
    let lied = dl(&outs.path().join("lied"), None).expect("download around a liar");
    assert_same_files(&outs.path().join("lied"), &files);
    let named: Vec<&str> = lied
        .providers
        .iter()
        .filter(|p| p.kind == SourceKind::BadData)
        .map(|p| p.provider.as_str())
        .collect();
    assert_eq!(named, [group_of(Some(0))[1].provider.as_str()]);

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
            range: None,
            dataset: "00".repeat(32),
            out: outs.path().join("x"),
            file: None,
            key: cairn_cli::commands::key::KeyArg {
                key: "/nonexistent/dataset-key.json".into(),
            },
        },
        &nodes,
        &Progress::hidden(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("unknown dataset"), "{err}");

    // Interrupted after the last data group's and the index group's proposals
    // landed but before their records were saved: the records say "prepared",
    // the chain holds the deals. `--resume` codes the last group again (the
    // same bytes: the same group id) and adopts its deals and the index's
    // instead of proposing again (no second escrow).
    let work = cairn_cli::dataset::state::work_dir(
        state.path(),
        &client.pubkey().to_string(),
        &std::fs::canonicalize(data.path()).unwrap(),
    );
    let dataset_record = work.join(cairn_cli::dataset::state::DATASET_FILE);
    let mut saved: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&dataset_record).unwrap()).unwrap();
    saved["placed"].as_array_mut().unwrap().pop();
    std::fs::write(&dataset_record, serde_json::to_vec(&saved).unwrap()).unwrap();
    for group in ["g6", "index"] {
        let record = work.join(group).join(cairn_cli::dataset::state::STATE_FILE);
        let mut saved: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&record).unwrap()).unwrap();
        for shard in saved["shards"].as_array_mut().unwrap() {
            shard["stage"] = "prepared".into();
            shard["provider"] = serde_json::Value::Null;
        }
        std::fs::write(&record, serde_json::to_vec(&saved).unwrap()).unwrap();
    }
    let client_tokens = f.ata(&client.pubkey());
    let balance = || ctx.token_balance(&client_tokens).unwrap();
    let before = balance();
    let resumed = up(true).expect("resume adopts the landed proposals");
    assert_eq!(resumed.shards, report.shards);
    assert_eq!(resumed.replaced_providers, 0);
    assert_eq!(balance(), before, "no deal proposed twice");

    // Repair. Every node is up and honest again, but the nodes of shards 2 and
    // 5 go down; epoch `e` is opened and proven by the other four providers.
    for node in nodes.0.values() {
        node.down.store(false, Ordering::SeqCst);
    }
    by_shard(1).shards.lock().unwrap().get_mut(&deal1).unwrap()[10] ^= 0x40;
    by_shard(2).down.store(true, Ordering::SeqCst);
    by_shard(5).down.store(true, Ordering::SeqCst);
    let e = common::epoch_now(&f) + 1;
    open_epoch(&f, e);
    std::thread::scope(|scope| {
        for i in [0, 1, 3, 4] {
            let node = by_shard(i);
            scope.spawn(move || node.prove(e));
        }
    });
    f.wait_for_slot((e + 1) * common::EPOCH_SLOTS, common::SLOT_MS);
    let fix = || {
        repair(
            &ctx,
            RepairArgs {
                dataset: id.to_string(),
                max_price: None,
                state_dir: Some(state.path().to_path_buf()),
                accept_timeout: 60,
                wait_epochs: 0,
            },
            &nodes,
            &Progress::hidden(),
        )
    };
    // In every group, the client ends the two failed deals at their first
    // failed epoch and places both shards at once, as generation 1, on the two
    // unused providers; each group is rebuilt from its own four survivors.
    let failed: HashMap<Pubkey, Deal> = report
        .shards
        .iter()
        .filter(|s| [2, 5].contains(&s.shard_index))
        .map(|s| {
            let address: Pubkey = s.deal.parse().unwrap();
            (address, fetch(&f.rpc, &address))
        })
        .collect();
    let fixed = fix().expect("repair");
    assert_eq!(fixed.groups.len(), 8);
    let olds = |r: &cairn_cli::dataset::repair::DatasetRepairReport| {
        r.groups
            .iter()
            .flat_map(|g| g.old_deals.clone())
            .collect::<Vec<_>>()
    };
    for g in &fixed.groups {
        assert_eq!(g.rebuilt_from, [0, 1, 3, 4], "group {:?}", g.group);
    }
    assert_eq!(fixed.repaired.len(), 16);
    let used: Vec<&str> = report.shards.iter().map(|s| s.provider.as_str()).collect();
    let mut old_deals = Vec::new();
    for r in &fixed.repaired {
        assert!([2, 5].contains(&r.shard_index), "{r:?}");
        let before = report
            .shards
            .iter()
            .find(|s| s.group == r.group.map(|g| g as u64) && s.shard_index == r.shard_index)
            .unwrap();
        assert_eq!(r.reason, format!("failed epoch {e}"), "{r:?}");
        assert_eq!(r.generation, 1);
        assert!(!used.contains(&r.provider.as_str()), "{r:?}");
        assert_eq!(r.old_deal.as_deref(), Some(before.deal.as_str()));
        let old_address: Pubkey = before.deal.parse().unwrap();
        let old = failed[&old_address].clone();
        let ends = r.old_deal_ends.expect("the client ended it");
        assert!(ends > e, "{r:?}");
        // Ended, it runs to the end of the epoch of its group's repair; a later
        // group's repair may have seen that end already, and this group's
        // clean-up then closed it at once.
        match f.rpc.get_account_data(&old_address) {
            Ok(data) => {
                let now = Deal::try_deserialize(&mut data.as_slice()).unwrap();
                assert!(now.forfeit && now.end_epoch == ends, "{now:?}");
            }
            Err(_) => assert!(
                olds(&fixed)
                    .iter()
                    .any(|o| o.deal == before.deal && o.state == "closed"),
                "{:?}",
                olds(&fixed)
            ),
        }
        let new: Deal = fetch(&f.rpc, &r.deal.parse().unwrap());
        assert_eq!(
            (new.state, new.generation, new.shard_index),
            (DealState::Active, 1, r.shard_index)
        );
        assert_eq!(
            (new.shard_root, new.group_id, new.dataset_id),
            (old.shard_root, old.group_id, id.0)
        );
        assert_eq!(
            r.deal,
            cairn_chain::deal_pda(&client.pubkey(), &old.group_id, r.shard_index, 1).to_string()
        );
        old_deals.push((old_address, old));
    }
    let closed_first: Vec<String> = olds(&fixed)
        .iter()
        .filter(|o| o.state == "closed")
        .map(|o| o.deal.clone())
        .collect();
    // Downloads read the new placements (the old nodes are still down).
    let after = dl(&outs.path().join("repaired"), None).expect("download after repair");
    assert_same_files(&outs.path().join("repaired"), &files);
    assert!(
        after.providers.iter().all(|p| p.kind == SourceKind::Ok),
        "{:?}",
        after.providers
    );
    for r in &fixed.repaired {
        let used = after
            .providers
            .iter()
            .find(|p| p.group == r.group && p.shard_index == r.shard_index)
            .unwrap();
        assert_eq!(used.provider, r.provider);
    }
    // With two more original nodes down, every group reads from its rebuilt
    // shards: their group manifest units and data are the group's.
    by_shard(0).down.store(true, Ordering::SeqCst);
    by_shard(1).down.store(true, Ordering::SeqCst);
    dl(&outs.path().join("rebuilt"), None).expect("download from the rebuilt shards");
    assert_same_files(&outs.path().join("rebuilt"), &files);
    by_shard(0).down.store(false, Ordering::SeqCst);
    by_shard(1).down.store(false, Ordering::SeqCst);

    // Once their last epoch is over, a second repair has nothing to replace; it
    // settles the old deals (the one opened epoch failed, the rest were never
    // opened: void), takes them out of their providers' deal sets and closes
    // them: every epoch's price and the whole collateral return to the client.
    let end = fixed
        .repaired
        .iter()
        .filter_map(|r| r.old_deal_ends)
        .max()
        .unwrap();
    f.wait_for_slot(end * common::EPOCH_SLOTS + 1, common::SLOT_MS);
    let before = balance();
    let second = fix().expect("second repair");
    assert!(second.repaired.is_empty(), "{:?}", second.repaired);
    let closed_deals = olds(&second);
    assert_eq!(
        closed_deals.len() + closed_first.len(),
        16,
        "{closed_deals:?}"
    );
    let mut refunded = 0;
    for (address, old) in &old_deals {
        if closed_first.contains(&address.to_string()) {
            continue;
        }
        let closed = closed_deals
            .iter()
            .find(|o| o.deal == address.to_string())
            .unwrap();
        assert_eq!(closed.state, "closed", "{closed:?}");
        assert_eq!(
            closed.refunded,
            old.price_per_epoch * old.duration_epochs + old.collateral,
            "{closed:?}"
        );
        assert!(
            f.rpc.get_account_data(address).is_err(),
            "deal {address} is closed"
        );
        refunded += closed.refunded;
    }
    assert_eq!(balance() - before, refunded);
    // The failed providers paid, for each of their deals (one per group): 10%
    // of its collateral for the failed epoch, the rest forfeited because the
    // client ended the deal.
    let mut failed_providers: Vec<Pubkey> = old_deals.iter().map(|(_, d)| d.provider).collect();
    failed_providers.sort();
    failed_providers.dedup();
    assert_eq!(failed_providers.len(), 2);
    for provider in failed_providers {
        let theirs: Vec<&Deal> = old_deals
            .iter()
            .map(|(_, d)| d)
            .filter(|d| d.provider == provider)
            .collect();
        assert_eq!(theirs.len(), 8);
        let p: storage_market::state::Provider = fetch(&f.rpc, &provider);
        assert_eq!(
            p.slashed,
            theirs.iter().map(|d| d.collateral / 10).sum::<u64>()
        );
        assert_eq!(
            p.forfeited,
            theirs
                .iter()
                .map(|d| d.collateral - d.collateral / 10)
                .sum::<u64>()
        );
        assert_eq!((p.active_deals, p.stake_locked), (0, 0));
    }
}

/// Issue 15: a download is byte-exact when one provider lies in every shard
/// trailer it serves (its stored bytes altered after it accepted them; the
/// node is the in-memory TEST DOUBLE above, the chain a real validator) and
/// answers first, and when the dataset's client filed a stray deal under the
/// dataset id (shard index 6 of a group coded 4 + 2), whose node holds a
/// complete, valid shard.
#[test]
fn download_is_byte_exact_with_a_lying_trailer_on_a_test_double_node_and_a_stray_deal() {
    use cairn_core::dataset::{Trailer, TRAILER_LEN};
    use storage_market::constants::INDEX_GROUP;
    use storage_market::instructions::ProposeDealArgs;

    let f = Fixture::start();
    let info = f.localnet.info().clone();
    // Seven providers: the upload takes the six cheapest, the stray deal the
    // seventh.
    let nodes = start_nodes(&f, 7);
    let (client, client_key) = f.user("client", 10 * TOKEN);
    let data = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for i in 0..6u32 {
        let bytes: Vec<u8> = (0..20_000u32).map(|j| (j * 31 + i * 7) as u8).collect();
        let path = format!("part-{i}.bin");
        std::fs::write(data.path().join(&path), &bytes).unwrap();
        files.push((path, bytes));
    }
    let state = tempfile::tempdir().unwrap();
    let ctx = Ctx::new(&info.rpc_url, client_key);
    let report = upload(
        &ctx,
        UploadArgs {
            group_size: Some(GROUP.to_string()),
            dir: data.path().to_path_buf(),
            data_shards: 4,
            parity_shards: 2,
            epochs: 100,
            max_price: None,
            resume: false,
            state_dir: Some(state.path().to_path_buf()),
            accept_timeout: 60,
            encrypt: false,
            key: cairn_cli::commands::key::KeyArg {
                key: "/nonexistent/dataset-key.json".into(),
            },
        },
        &nodes,
        &Progress::hidden(),
    )
    .expect("upload");
    assert_eq!(report.groups, 2);
    let id: cairn_core::DatasetId = report.dataset_id.parse().unwrap();
    let node_of = |provider: &str| {
        nodes
            .0
            .values()
            .find(|n| n.provider.to_string() == provider)
            .unwrap()
            .clone()
    };
    let index_shard = |i: u16| {
        report
            .shards
            .iter()
            .find(|s| s.group.is_none() && s.shard_index == i)
            .unwrap()
    };

    // The liar: shard 0's provider. In every shard it holds, its trailer
    // moves the manifest unit 64 bytes earlier and makes it 64 bytes longer:
    // it still decodes and fits the deal's size, but points at the wrong bytes.
    let liar = node_of(&index_shard(0).provider);
    for shard in liar.shards.lock().unwrap().values_mut() {
        let at = shard.len() - TRAILER_LEN as usize;
        let honest = Trailer::decode(&shard[at..]).unwrap();
        let unit = honest.manifest_unit + 64;
        let lie = Trailer {
            data_len: honest.data_len - 64,
            manifest_unit: unit,
            manifest_len: unit * u64::from(honest.k),
            ..honest
        };
        let decoded = Trailer::decode(&lie.encode()).expect("the lie is a valid trailer");
        assert_eq!(decoded.stored_len(), honest.stored_len());
        shard[at..].copy_from_slice(&lie.encode());
    }
    // It answers first: every other node is slower.
    for node in nodes.0.values() {
        if !Arc::ptr_eq(node, &liar) {
            node.latency_ms.store(50, Ordering::SeqCst);
        }
    }

    // The stray deal: the client's own, under the dataset id and the index
    // group's id, shard index 6 of "8" (the group has 6), holding a copy of
    // index shard 1's bytes, stored and accepted by the seventh provider.
    let used: Vec<&str> = report.shards.iter().map(|s| s.provider.as_str()).collect();
    let stray_node = nodes
        .0
        .values()
        .find(|n| !used.contains(&n.provider.to_string().as_str()))
        .unwrap()
        .clone();
    let copied: Pubkey = index_shard(1).deal.parse().unwrap();
    let copied_deal: Deal = fetch(&f.rpc, &copied);
    let bytes = node_of(&index_shard(1).provider).shards.lock().unwrap()[&copied].clone();
    let work = cairn_cli::dataset::state::work_dir(
        state.path(),
        &client.pubkey().to_string(),
        &std::fs::canonicalize(data.path()).unwrap(),
    );
    let nonce = cairn_cli::dataset::state::DatasetUpload::load(&work)
        .unwrap()
        .unwrap()
        .salt;
    let args = ProposeDealArgs {
        dataset_id: id.0,
        dataset_nonce: nonce,
        group_id: copied_deal.group_id,
        group: INDEX_GROUP,
        shard_index: 6,
        generation: 0,
        k: 4,
        n: 8,
        shard_root: copied_deal.shard_root,
        shard_bytes: copied_deal.shard_bytes,
        duration_epochs: 100,
        max_price_per_epoch: u64::MAX,
    };
    let ix = f.localnet.market_ix().propose_deal_ix(
        &client.pubkey(),
        &stray_node.provider,
        &f.ata(&client.pubkey()),
        args,
    );
    f.send(&[ix], &[&client]);
    let stray = cairn_chain::deal_pda(&client.pubkey(), &copied_deal.group_id, 6, 0);
    let held = stray_node.put(&stray, &client, 0, &bytes).unwrap();
    assert!(held.complete);
    let stray_deal: Deal = fetch(&f.rpc, &stray);
    assert_eq!(
        (stray_deal.state, stray_deal.dataset_id),
        (DealState::Active, id.0)
    );

    let out = tempfile::tempdir().unwrap();
    let got = download(
        &ctx,
        DownloadArgs {
            range: None,
            dataset: id.to_string(),
            out: out.path().join("all"),
            file: None,
            key: cairn_cli::commands::key::KeyArg {
                key: "/nonexistent/dataset-key.json".into(),
            },
        },
        &nodes,
        &Progress::hidden(),
    )
    .expect("download around the liar and the stray deal");
    assert_same_files(&out.path().join("all"), &files);
    assert_eq!(got.files, files.len());
    // The stray deal is not one of the dataset's shards.
    assert!(
        got.providers
            .iter()
            .all(|p| p.shard_index < 6 && p.provider != stray_node.provider.to_string()),
        "{:?}",
        got.providers
    );

    // A node that finds its own copies corrupt says so (`CorruptCopy`): the
    // download reads around it and names it, and repair replaces its shard in
    // every group although its provider failed no epoch.
    let corrupt = node_of(&index_shard(3).provider);
    corrupt.corrupt_copy.store(true, Ordering::SeqCst);
    let got = download(
        &ctx,
        DownloadArgs {
            range: None,
            dataset: id.to_string(),
            out: out.path().join("around-corrupt"),
            file: None,
            key: cairn_cli::commands::key::KeyArg {
                key: "/nonexistent/dataset-key.json".into(),
            },
        },
        &nodes,
        &Progress::hidden(),
    )
    .expect("download around a corrupt copy");
    assert_same_files(&out.path().join("around-corrupt"), &files);
    let named: Vec<(Option<usize>, u16)> = got
        .providers
        .iter()
        .filter(|p| p.kind == SourceKind::CorruptCopy)
        .map(|p| (p.group, p.shard_index))
        .collect();
    assert!(
        !named.is_empty() && named.iter().all(|(_, i)| *i == 3),
        "{:?}",
        got.providers
    );
    let fixed = repair(
        &ctx,
        RepairArgs {
            dataset: id.to_string(),
            max_price: None,
            state_dir: Some(state.path().to_path_buf()),
            accept_timeout: 60,
            wait_epochs: 0,
        },
        &nodes,
        &Progress::hidden(),
    )
    .expect("repair");
    let replaced: Vec<(Option<usize>, u16, &str)> = fixed
        .repaired
        .iter()
        .map(|r| (r.group, r.shard_index, r.reason.as_str()))
        .collect();
    let reason = "its node's stored copy is corrupt";
    assert_eq!(
        replaced,
        [
            (None, 3, reason),
            (Some(0), 3, reason),
            (Some(1), 3, reason)
        ]
    );
    let after = download(
        &ctx,
        DownloadArgs {
            range: None,
            dataset: id.to_string(),
            out: out.path().join("repaired"),
            file: None,
            key: cairn_cli::commands::key::KeyArg {
                key: "/nonexistent/dataset-key.json".into(),
            },
        },
        &nodes,
        &Progress::hidden(),
    )
    .expect("download after the repair");
    assert_same_files(&out.path().join("repaired"), &files);
    assert!(
        after.providers.iter().all(|p| p.kind == SourceKind::Ok
            && (p.shard_index != 3 || p.provider != corrupt.provider.to_string())),
        "{:?}",
        after.providers
    );
}
