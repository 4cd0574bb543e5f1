//! `cairn demo [DIR]`: the whole network on one machine, under failure. Starts
//! the local chain, 6 storage nodes and the indexer (separate processes),
//! uploads DIR (or a generated sample) with k = 4, m = 2, shows proofs epoch by
//! epoch, SIGKILLs two nodes and shows their faults and slashes, downloads from
//! the survivors, repairs onto two fresh nodes, corrupts a byte on disk and
//! shows the download name the provider. Every claim it prints is checked
//! against the chain and the indexer; a mismatch ends the demo with an error.
//! The end-to-end test runs this same scenario.
pub mod bench;
pub mod launch;
pub mod network;
pub mod sample;

use std::collections::BTreeMap;
use std::fmt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anchor_lang::prelude::Pubkey;
use cairn_core::DatasetId;
use clap::Args;
use serde::Serialize;
use solana_signer::Signer;
use storage_market::state::{Deal, DealState, Provider};

use crate::context::{Ctx, MarketView};
use crate::dataset::download::{self, DownloadArgs};
use crate::dataset::quic::QuicConnector;
use crate::dataset::repair::{self, RepairArgs};
use crate::dataset::upload::{self, UploadArgs};
use crate::error::CliError;
use crate::output::Progress;
use launch::Launcher;
use network::{Network, NetworkConfig};

#[derive(Args, Debug, Clone)]
pub struct DemoArgs {
    /// Directory to upload. Default: a generated sample dataset.
    pub dir: Option<PathBuf>,
    /// Size of the generated sample's big file, in MiB.
    #[arg(long, default_value_t = 64)]
    pub sample_mib: u64,
    /// Keep the network's files (ledger, node data, logs, downloads) here.
    /// Default: a temporary directory, removed at the end.
    #[arg(long)]
    pub work_dir: Option<PathBuf>,
    /// Epochs of proofs to watch before nodes fail.
    #[arg(long, default_value_t = 3)]
    pub watch_epochs: u64,
    /// JSON-RPC port of the local chain. Default: 8899 if free.
    #[arg(long)]
    pub rpc_port: Option<u16>,
    /// At the end, keep everything running until Ctrl-C.
    #[arg(long)]
    pub stay: bool,
}

/// Data shards and parity shards of the demo's (and bench's) upload.
pub(crate) const K: u16 = 4;
pub(crate) const M: u16 = 2;

/// One failed node's reckoning, chain and indexer side by side.
#[derive(Serialize, Debug, Clone)]
pub struct Slashing {
    pub provider: String,
    pub deal: String,
    pub shard_index: u16,
    pub killed_in_epoch: u64,
    pub first_fault_settled_in_epoch: u64,
    pub faults: u64,
    pub collateral: u64,
    pub slash_bps: u16,
    pub bounty_bps: u16,
    pub price_per_epoch: u64,
    /// Chain: collateral slashed from the deal.
    pub slashed: u64,
    /// Chain: the provider account's slashed total.
    pub provider_slashed: u64,
    /// Indexer: sums over the deal's fault settlements.
    pub indexer_slashed: u64,
    pub indexer_bounty: u64,
    pub indexer_refunded_to_client: u64,
    /// Who reported the faults (from the indexer), and whether each is a
    /// surviving node's operator.
    pub reporters: Vec<String>,
    pub reported_by_survivors: bool,
    /// Chain: the client's refund owed by the deal.
    pub client_refund: u64,
    pub state: String,
}

#[derive(Serialize, Debug)]
pub struct DemoReport {
    pub dataset_id: String,
    pub files: usize,
    pub dataset_bytes: u64,
    pub work_dir: PathBuf,
    /// Per watched epoch: proofs on chain (deals proven) and in the indexer.
    pub epochs: Vec<EpochProofs>,
    pub slashings: Vec<Slashing>,
    /// Files compared by SHA-256 after the download from the survivors.
    pub verified_files: usize,
    pub single_file: String,
    pub repaired: Vec<repair::RepairedShard>,
    pub repaired_first_proof_epoch: Vec<u64>,
    pub corrupted: Corruption,
    pub explorer: Option<String>,
    /// Whether `work_dir` is kept (`--work-dir`) or was a removed temporary.
    pub kept: bool,
    pub seconds: f64,
}

#[derive(Serialize, Debug, Clone)]
pub struct EpochProofs {
    pub epoch: u64,
    pub deals: usize,
    pub proven_on_chain: usize,
    pub proofs_in_indexer: u64,
}

#[derive(Serialize, Debug, Clone, Default)]
pub struct Corruption {
    pub shard_index: u16,
    pub provider: String,
    pub offset: u64,
    /// The download's status for that provider.
    pub download_status: String,
    /// The node's proof of the corrupted segment checked against the deal's
    /// root as the program checks it: the refusal.
    pub proof_of_corrupted_segment: String,
    /// A proof of an untouched segment of the same shard: still valid.
    pub proof_of_other_segment: String,
}

impl fmt::Display for DemoReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "demo complete in {:.0} s: dataset {} ({} files, {})",
            self.seconds,
            self.dataset_id,
            self.files,
            crate::units::human_bytes(self.dataset_bytes)
        )?;
        for e in &self.epochs {
            writeln!(
                f,
                "  epoch {}: {}/{} deals proven on chain, {} proofs in the indexer",
                e.epoch, e.proven_on_chain, e.deals, e.proofs_in_indexer
            )?;
        }
        for s in &self.slashings {
            writeln!(
                f,
                "  provider {}: {} fault(s), slashed {} base units (= {} x {} x {}/10000), deal {}",
                s.provider, s.faults, s.slashed, s.faults, s.collateral, s.slash_bps, s.state
            )?;
        }
        writeln!(
            f,
            "  downloads from the survivors: {} files byte-exact (SHA-256), and {}",
            self.verified_files, self.single_file
        )?;
        for r in &self.repaired {
            writeln!(
                f,
                "  repaired shard {} onto provider {}",
                r.shard_index, r.provider
            )?;
        }
        writeln!(
            f,
            "  corrupted byte {} of shard {}: download said \"{}\"; proof of that segment: {}",
            self.corrupted.offset,
            self.corrupted.shard_index,
            self.corrupted.download_status,
            self.corrupted.proof_of_corrupted_segment
        )?;
        if self.kept {
            writeln!(f, "  files kept in {}", self.work_dir.display())
        } else {
            writeln!(
                f,
                "  the network is stopped and its temporary files removed"
            )
        }
    }
}

fn check(ok: bool, what: impl FnOnce() -> String) -> Result<(), CliError> {
    if ok {
        Ok(())
    } else {
        Err(CliError::Refused(format!("demo check failed: {}", what())))
    }
}

/// Polls `f` every 300 ms for up to `secs` seconds.
fn poll<T>(
    what: &str,
    secs: u64,
    mut f: impl FnMut() -> Result<Option<T>, CliError>,
) -> Result<T, CliError> {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = f()? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            return Err(CliError::Refused(format!(
                "demo: timed out after {secs} s waiting for {what}"
            )));
        }
        std::thread::sleep(Duration::from_millis(300));
    }
}

struct Story<'a> {
    net: Network,
    ctx: Ctx,
    market: MarketView,
    client: Pubkey,
    id: DatasetId,
    connector: QuicConnector,
    progress: Progress,
    say: &'a dyn Fn(&str),
}

impl Story<'_> {
    fn deals(&self) -> Result<Vec<(Pubkey, Deal)>, CliError> {
        let mut deals = self.ctx.program_accounts::<Deal>(&[
            (cairn_chain::layout::DEAL_CLIENT, self.client.as_ref()),
            (cairn_chain::layout::DEAL_DATASET_ID, self.id.as_bytes()),
        ])?;
        deals.sort_by_key(|(_, d)| d.shard_index);
        Ok(deals)
    }

    fn slot(&self) -> Result<u64, CliError> {
        self.ctx.rpc.get_slot().map_err(|e| self.ctx.rpc_err(e))
    }

    fn epoch(&self) -> Result<u64, CliError> {
        Ok(self.market.account.epoch_at(self.slot()?))
    }

    /// Waits until epoch `e`'s proof window has closed.
    fn wait_closed(&self, e: u64) -> Result<(), CliError> {
        poll(&format!("epoch {e} to close"), 600, || {
            Ok(self
                .market
                .account
                .last_closed_epoch(self.slot()?)
                .is_some_and(|c| c >= e)
                .then_some(()))
        })
    }

    fn indexer_deals(&self) -> Result<Vec<serde_json::Value>, CliError> {
        let v = self.net.indexer_get(&format!("/v1/datasets/{}", self.id))?;
        Ok(v["deals"].as_array().cloned().unwrap_or_default())
    }

    /// Waits until the indexer shows the chain's proven and fault counts for
    /// every deal of the dataset (read fresh from both each time).
    fn indexer_agrees(&self) -> Result<(), CliError> {
        poll("the indexer to show the chain's counts", 120, || {
            let chain = self.deals()?;
            let indexed = self.indexer_deals()?;
            Ok(chain
                .iter()
                .all(|(address, d)| {
                    indexed.iter().any(|x| {
                        x["address"] == address.to_string()
                            && x["provider"] == d.provider.to_string()
                            && x["proven_epochs"] == d.proven_epochs
                            && x["total_faults"] == d.total_faults
                    })
                })
                .then_some(()))
        })
    }

    /// Step 3: proofs arriving epoch by epoch, exactly one per active deal per
    /// epoch, on chain and in the indexer.
    fn watch_proofs(&self, epochs: u64) -> Result<Vec<EpochProofs>, CliError> {
        let deals = self.deals()?;
        let first = deals.iter().map(|(_, d)| d.start_epoch).max().unwrap_or(0);
        let mut out = Vec::new();
        for e in first..first + epochs {
            self.wait_closed(e)?;
            let deals = poll(&format!("every deal settled through epoch {e}"), 60, || {
                let deals = self.deals()?;
                Ok(deals
                    .iter()
                    .all(|(_, d)| d.settled_through >= e)
                    .then_some(deals))
            })?;
            for (address, d) in &deals {
                check(
                    d.total_faults == 0 && d.proven_epochs == d.settled_through + 1 - d.start_epoch,
                    || {
                        format!(
                            "deal {address} (shard {}): {} proven, {} faults through epoch {}",
                            d.shard_index, d.proven_epochs, d.total_faults, d.settled_through
                        )
                    },
                )?;
            }
            let proofs = poll(&format!("the indexer's epoch {e}"), 120, || {
                let v = self.net.indexer_get(&format!("/v1/epochs/{e}"));
                Ok(v.ok()
                    .and_then(|v| v["proofs"].as_u64())
                    .filter(|p| *p >= deals.len() as u64))
            })?;
            check(proofs == deals.len() as u64, || {
                format!(
                    "epoch {e}: the indexer counts {proofs} proofs for {} deals",
                    deals.len()
                )
            })?;
            (self.say)(&format!(
                "epoch {e}: {}/{} shards proven on chain (one proof each), indexer counts {proofs}",
                deals.len(),
                deals.len()
            ));
            out.push(EpochProofs {
                epoch: e,
                deals: deals.len(),
                proven_on_chain: deals.len(),
                proofs_in_indexer: proofs,
            });
        }
        self.indexer_agrees()?;
        (self.say)("chain and indexer agree on every deal's proven epochs");
        Ok(out)
    }

    /// Step 4: SIGKILL the nodes holding `shards`; their missed epochs are
    /// reported by the survivors within two epochs, slashed by the formula.
    fn fail_nodes(&mut self, shards: &[u16]) -> Result<Vec<Slashing>, CliError> {
        let deals = self.deals()?;
        let mut victims = Vec::new();
        for &s in shards {
            let (address, deal) = deals
                .iter()
                .find(|(_, d)| d.shard_index == s)
                .cloned()
                .ok_or_else(|| CliError::Refused(format!("no deal for shard {s}")))?;
            let node = self
                .net
                .nodes
                .iter()
                .position(|n| n.provider == deal.provider)
                .ok_or_else(|| {
                    CliError::Refused(format!("no local node runs provider {}", deal.provider))
                })?;
            victims.push((address, deal, node));
        }
        let killed_in = self.epoch()?;
        for (_, deal, node) in &victims {
            self.net.kill_node(*node);
            (self.say)(&format!(
                "SIGKILL node {node} (provider {}, shard {}) in epoch {killed_in}",
                deal.provider, deal.shard_index
            ));
        }
        // Faults are reported by the surviving nodes once each missed
        // epoch's window closes.
        let mut first_settled = BTreeMap::new();
        poll("the survivors to report the missed epochs", 600, || {
            let now = self.epoch()?;
            for (address, d) in self.deals()? {
                if victims.iter().any(|(a, _, _)| *a == address) && d.total_faults > 0 {
                    first_settled.entry(address).or_insert(now);
                }
            }
            Ok((first_settled.len() == victims.len()).then_some(()))
        })?;
        let operators: Vec<String> = self
            .net
            .nodes
            .iter()
            .filter(|n| n.service.is_some())
            .map(|n| n.authority.to_string())
            .collect();
        let mut out = Vec::new();
        for (address, _, _) in &victims {
            // One consistent snapshot: the indexer holds exactly the chain's
            // settlements of this deal (a later one may land meanwhile).
            let (d, faults, p) = poll(
                "the indexer to hold the chain's fault settlements",
                120,
                || {
                    let Some(d) = self.ctx.fetch::<Deal>("deal", address)? else {
                        return Ok(None);
                    };
                    let Some(p) = self.ctx.fetch::<Provider>("provider", &d.provider)? else {
                        return Ok(None);
                    };
                    let faults: Vec<serde_json::Value> =
                        self.net.indexer_get(&format!("/v1/deals/{address}"))?["faults"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default();
                    let epochs: u64 = faults.iter().filter_map(|f| f["epochs"].as_u64()).sum();
                    // Each failed provider holds only this deal of the network.
                    Ok((epochs == d.total_faults && p.faults == d.total_faults)
                        .then_some((d, faults, p)))
                },
            )?;
            let d = &d;
            let sum = |key: &str| faults.iter().filter_map(|f| f[key].as_u64()).sum::<u64>();
            let reporters: Vec<String> = faults
                .iter()
                .filter_map(|f| f["settled_by"].as_str().map(str::to_string))
                .collect();
            // The provider's counter (its only deal here); a terminated
            // deal's collateral_left is released, so it no longer shows it.
            let slashed = p.slashed;
            let settled_in = first_settled[address];
            let s = Slashing {
                provider: d.provider.to_string(),
                deal: address.to_string(),
                shard_index: d.shard_index,
                killed_in_epoch: killed_in,
                first_fault_settled_in_epoch: settled_in,
                faults: d.total_faults,
                collateral: d.collateral,
                slash_bps: d.slash_bps,
                bounty_bps: d.bounty_bps,
                price_per_epoch: d.price_per_epoch,
                slashed,
                provider_slashed: p.slashed,
                indexer_slashed: sum("slashed"),
                indexer_bounty: sum("bounty"),
                indexer_refunded_to_client: sum("refunded_to_client"),
                reported_by_survivors: !reporters.is_empty()
                    && reporters.iter().all(|r| operators.contains(r)),
                reporters,
                client_refund: d.client_refund,
                state: crate::commands::deals::state_name(d.state).to_string(),
            };
            let per_epoch = storage_market::settlement::bps_of(d.collateral, d.slash_bps)
                .expect("collateral fits");
            check(slashed == d.total_faults * per_epoch, || {
                format!(
                    "deal {address}: slashed {slashed}, formula {} x {per_epoch}",
                    d.total_faults
                )
            })?;
            check(s.indexer_slashed == slashed, || {
                format!(
                    "deal {address}: chain {slashed}, indexer {}",
                    s.indexer_slashed
                )
            })?;
            check(s.reported_by_survivors, || {
                format!(
                    "deal {address}: reported by {:?}, survivors are {operators:?}",
                    s.reporters
                )
            })?;
            check(settled_in <= killed_in + 2, || {
                format!("deal {address}: first fault settled in epoch {settled_in}, killed in {killed_in}")
            })?;
            (self.say)(&format!(
                "provider {} (shard {}): {} missed epoch(s) reported by {}, slashed {} = {} x {} x {}/10000; bounty {}, client refund {} (indexer agrees)",
                d.provider,
                d.shard_index,
                d.total_faults,
                s.reporters.first().map(String::as_str).unwrap_or("?"),
                self.market.tokens(slashed),
                d.total_faults,
                self.market.tokens(d.collateral),
                d.slash_bps,
                self.market.tokens(s.indexer_bounty),
                self.market.tokens(d.client_refund)
            ));
            out.push(s);
        }
        Ok(out)
    }

    fn download(
        &self,
        out: PathBuf,
        file: Option<String>,
    ) -> Result<download::DownloadReport, CliError> {
        download::download(
            &self.ctx,
            DownloadArgs {
                dataset: self.id.to_string(),
                out,
                file,
                client: None,
            },
            &self.connector,
            &self.progress,
        )
    }
}

/// Runs the demo scenario; `say` hears each step. Services are started from
/// `launcher` (`cairn` itself, or the end-to-end test binary).
pub fn run(a: DemoArgs, launcher: Launcher, say: &dyn Fn(&str)) -> Result<DemoReport, CliError> {
    let started = Instant::now();
    let (work, _temp) = launch::work_dir(a.work_dir.as_deref(), "cairn-demo-")?;
    let n = usize::from(K + M);
    let net = Network::start(
        launcher,
        &NetworkConfig {
            dir: work.clone(),
            nodes: n,
            indexer: true,
            rpc_port: a.rpc_port,
        },
        say,
    )?;
    let (client, client_key) = net.user("client", 1_000 * 10u64.pow(6))?;
    let ctx = net.ctx(&client_key);
    let market = ctx.market()?;
    let data = match &a.dir {
        Some(dir) => dir.clone(),
        None => {
            let dir = work.join("sample");
            let files = sample::write_sample(&dir, a.sample_mib)?;
            say(&format!(
                "generated a sample dataset: {files} files in {}",
                dir.display()
            ));
            dir
        }
    };
    let original = sample::sha256_tree(&data)?;
    let progress = Progress::new(true, true, false);
    let connector = QuicConnector::new().map_err(|e| CliError::Io {
        path: "tokio runtime".into(),
        reason: e.to_string(),
    })?;
    say(&format!(
        "uploading {} with k = {K}, m = {M}",
        data.display()
    ));
    let up = upload::upload(
        &ctx,
        UploadArgs {
            dir: data.clone(),
            data_shards: K,
            parity_shards: M,
            epochs: 60,
            max_price: None,
            resume: false,
            state_dir: Some(work.join("state")),
            accept_timeout: 120,
        },
        &connector,
        &progress,
    )?;
    say(&format!(
        "uploaded: dataset {} ({} files, {}), {} deals accepted",
        up.dataset_id,
        up.files,
        crate::units::human_bytes(up.dataset_bytes),
        up.shards.len()
    ));
    let id: DatasetId = up.dataset_id.parse().expect("cairn writes ids");
    let mut story = Story {
        net,
        ctx,
        market,
        client: client.pubkey(),
        id,
        connector,
        progress,
        say,
    };

    let epochs = story.watch_proofs(a.watch_epochs)?;
    let slashings = story.fail_nodes(&[1, 4])?;

    // Step 5: everything, and one file, from the 4 survivors.
    let all = work.join("download-all");
    let _ = std::fs::remove_dir_all(&all);
    let got = story.download(all.clone(), None)?;
    let diff = sample::differences(&original, &sample::sha256_tree(&all)?);
    check(diff.is_empty(), || {
        format!("downloaded files differ: {diff:?}")
    })?;
    say(&format!(
        "downloaded {} files from the 4 survivors in {:.1} s: SHA-256 of every file matches",
        original.len(),
        got.seconds
    ));
    let single = original
        .keys()
        .find(|k| k.contains('/') && !k.is_ascii())
        .or_else(|| original.keys().next())
        .cloned()
        .unwrap_or_default();
    let one = work.join("download-one");
    let _ = std::fs::remove_dir_all(&one);
    story.download(one.clone(), Some(single.clone()))?;
    let got_one = sample::sha256_tree(&one)?;
    check(
        got_one.len() == 1 && got_one.get(&single) == original.get(&single),
        || format!("single-file download of {single:?} differs"),
    )?;
    say(&format!(
        "downloaded the single file {single:?}: SHA-256 matches"
    ));

    // Step 6: two fresh nodes; repair onto them.
    for _ in 0..2 {
        story.net.add_node(say)?;
    }
    say("cairn repair: waiting for the chain to terminate the failed deals, then rebuilding");
    let fixed = repair::repair(
        &story.ctx,
        RepairArgs {
            dataset: id.to_string(),
            max_price: None,
            state_dir: Some(work.join("state")),
            accept_timeout: 120,
            wait_epochs: None,
        },
        &story.connector,
        &story.progress,
    )?;
    let fresh: Vec<String> = story.net.nodes[n..]
        .iter()
        .map(|n| n.provider.to_string())
        .collect();
    check(
        fixed.repaired.len() == 2 && fixed.repaired.iter().all(|r| fresh.contains(&r.provider)),
        || {
            format!(
                "repair placed {:?}, fresh providers are {fresh:?}",
                fixed.repaired
            )
        },
    )?;
    let repaired_deals: Vec<String> = fixed.repaired.iter().map(|r| r.deal.clone()).collect();
    let accepted_in = story.epoch()?;
    let first_proofs = poll("the repaired shards' first proofs", 600, || {
        let deals = story.deals()?;
        let new: Vec<&Deal> = deals
            .iter()
            .filter(|(a, _)| repaired_deals.contains(&a.to_string()))
            .map(|(_, d)| d)
            .collect();
        // No fault before the first proof: the first proven epoch is the
        // deal's start epoch.
        Ok((new.len() == 2
            && new
                .iter()
                .all(|d| d.proven_epochs >= 1 && d.total_faults == 0))
        .then(|| {
            // In the order of `fixed.repaired`.
            fixed
                .repaired
                .iter()
                .filter_map(|r| new.iter().find(|d| d.shard_index == r.shard_index))
                .map(|d| d.start_epoch)
                .collect::<Vec<u64>>()
        }))
    })?;
    check(first_proofs.iter().all(|e| *e <= accepted_in + 1), || {
        format!("repaired deals start in epochs {first_proofs:?}, accepted in {accepted_in}")
    })?;
    for (r, epoch) in fixed.repaired.iter().zip(&first_proofs) {
        say(&format!(
            "shard {} rebuilt from {:?} and placed on provider {}: proven in epoch {epoch}",
            r.shard_index, fixed.rebuilt_from, r.provider
        ));
    }
    // The new deals reuse the old deals' addresses: the indexer shows the new
    // provider and only the new deal's proofs, none of the old one's faults.
    story.indexer_agrees()?;
    for address in &repaired_deals {
        let v = story.net.indexer_get(&format!("/v1/deals/{address}"))?;
        let faults = v["faults"].as_array().map_or(0, Vec::len);
        let old_proofs = v["proofs"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["provider"] != v["provider"]);
        check(faults == 0 && old_proofs.count() == 0, || {
            format!("the indexer mixes the closed deal's history into repaired deal {address}: {v}")
        })?;
    }
    say("the indexer shows the repaired deals on their new providers, with only their own proofs");

    // Step 7: one corrupted byte on a surviving data shard's disk.
    let corrupted = corrupt_and_check(&mut story, &work, &original)?;

    let explorer = story.net.explorer_url();
    if let Some(url) = &explorer {
        say(&format!(
            "explorer: {url}{}",
            if a.stay {
                ""
            } else {
                " (open while the demo runs; --stay keeps it up)"
            }
        ));
    }
    if a.stay {
        say("everything keeps running; Ctrl-C stops it and removes the temporary files");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    Ok(DemoReport {
        dataset_id: id.to_string(),
        files: up.files,
        dataset_bytes: up.dataset_bytes,
        work_dir: work.clone(),
        epochs,
        slashings,
        verified_files: original.len(),
        single_file: single,
        repaired: fixed.repaired,
        repaired_first_proof_epoch: first_proofs,
        corrupted,
        explorer,
        kept: a.work_dir.is_some(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Flips one byte of a surviving data shard on its node's disk, downloads
/// again (it must succeed and name the provider), and asks the node to prove
/// the damaged segment: the proof fails the program's check.
fn corrupt_and_check(
    story: &mut Story,
    work: &std::path::Path,
    original: &BTreeMap<String, [u8; 32]>,
) -> Result<Corruption, CliError> {
    let deals = story.deals()?;
    let (address, deal) = deals
        .iter()
        .find(|(_, d)| {
            d.state == DealState::Active
                && d.shard_index < K
                && story
                    .net
                    .node_of(&d.provider)
                    .is_some_and(|n| n.service.is_some())
        })
        .cloned()
        .ok_or_else(|| CliError::Refused("no surviving data shard to corrupt".into()))?;
    let node = story.net.node_of(&deal.provider).expect("found above");
    let path = node.data_dir.join("data/shards").join(bs58_name(&address));
    let offset = 100u64;
    let mut bytes = std::fs::read(&path).map_err(CliError::io(&path))?;
    bytes[offset as usize] ^= 0x01;
    std::fs::write(&path, &bytes).map_err(CliError::io(&path))?;
    (story.say)(&format!(
        "flipped byte {offset} of shard {} on node {}'s disk ({})",
        deal.shard_index,
        node.index,
        path.display()
    ));
    let out = work.join("download-after-corruption");
    let _ = std::fs::remove_dir_all(&out);
    let got = story.download(out.clone(), None)?;
    let diff = sample::differences(original, &sample::sha256_tree(&out)?);
    check(diff.is_empty(), || {
        format!("download after corruption differs: {diff:?}")
    })?;
    let status = got
        .providers
        .iter()
        .find(|p| p.shard_index == deal.shard_index)
        .map(|p| p.status.clone())
        .unwrap_or_default();
    check(status.starts_with("bad data"), || {
        format!(
            "the download did not name provider {} (status {status:?})",
            deal.provider
        )
    })?;
    (story.say)(&format!(
        "download still byte-exact; it names provider {} (shard {}): {status}",
        deal.provider, deal.shard_index
    ));
    let provider: Provider = story
        .ctx
        .fetch("provider", &deal.provider)?
        .ok_or_else(|| CliError::Refused("provider gone".into()))?;
    let verdict = |segment: u64| -> Result<String, CliError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| CliError::Refused(e.to_string()))?;
        let endpoint: std::net::SocketAddr = provider
            .endpoint
            .parse()
            .map_err(|e| CliError::Refused(format!("endpoint {}: {e}", provider.endpoint)))?;
        runtime.block_on(async {
            let client =
                cairn_storage_node::client::NodeClient::connect(endpoint, provider.operator)
                    .await
                    .map_err(|e| CliError::Refused(e.to_string()))?;
            Ok(match client.get_proof(&address, segment).await {
                Ok(proof) => match cairn_proof::verify_for_shard(
                    &deal.shard_root,
                    deal.shard_bytes,
                    &proof.segment,
                    segment,
                    &proof.path,
                ) {
                    Ok(()) => "valid".to_string(),
                    Err(e) => format!("rejected: {e}"),
                },
                Err(e) => format!("refused by the node: {e}"),
            })
        })
    };
    let segments = deal.shard_bytes.div_ceil(64);
    let other = (offset / 64 + segments / 2) % segments;
    let bad = verdict(offset / 64)?;
    let good = verdict(other)?;
    check(bad != "valid" && good == "valid", || {
        format!("proof of the corrupted segment: {bad}; of another: {good}")
    })?;
    (story.say)(&format!(
        "the node's proof of segment {} (the corrupted one) is {bad}; segment {other} still proves",
        offset / 64
    ));
    Ok(Corruption {
        shard_index: deal.shard_index,
        provider: deal.provider.to_string(),
        offset,
        download_status: status,
        proof_of_corrupted_segment: bad,
        proof_of_other_segment: good,
    })
}

/// The node's file name for a deal (base58 of its address).
fn bs58_name(deal: &Pubkey) -> String {
    cairn_storage_node::store::deal_name(&deal.to_bytes())
}
