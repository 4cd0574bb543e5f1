//! `cairn-dev demo [DIR]`: the whole network on one machine, under failure. Starts
//! the local chain, 6 storage nodes and the indexer (separate processes),
//! uploads DIR (or a generated sample) with k = 4, m = 2, shows each epoch
//! opened and proven by every provider (one proof session each), SIGKILLs two
//! nodes and shows their first failed epoch, downloads from the survivors,
//! repairs at once onto two fresh nodes (the client ends each failed deal and
//! proposes the shard's next generation), settles the failed deals (a penalty
//! per failed epoch, the collateral left to the client) and closes them, then
//! corrupts a byte on disk and shows the download name the provider. Every
//! claim it prints is checked against the chain and the indexer; a mismatch
//! ends the demo with an error. The end-to-end test runs this same scenario.
//!
//! The nodes behave as docs/DESIGN.md says: each opens every epoch and proves it
//! once for all its deals, and settles its own deals. A dead node settles
//! nothing: its client (here the demo; anyone may) settles its deals.
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
use storage_market::constants::NOT_JAILED;
use storage_market::settlement::bps_of;
use storage_market::state::{Deal, DealState, Provider};

use cairn_cli::commands::deals::ShardRef;
use cairn_cli::commands::deals::{status_report, StatusArgs};
use cairn_cli::context::{Ctx, MarketView};
use cairn_cli::dataset::download::{self, DownloadArgs};
use cairn_cli::dataset::onchain::{self, state_name, DealAt, DealsView};
use cairn_cli::dataset::quic::QuicConnector;
use cairn_cli::dataset::repair::{self, DatasetRepairReport, RepairArgs};
use cairn_cli::dataset::upload::{self, UploadArgs};
use cairn_cli::error::CliError;
use cairn_cli::output::Progress;
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
pub const K: u16 = 4;
pub const M: u16 = 2;

/// One watched epoch: opened, and proven by every provider of the dataset.
#[derive(Serialize, Debug, Clone)]
pub struct EpochProofs {
    pub epoch: u64,
    /// The dataset's deals running in the epoch.
    pub deals: usize,
    /// The providers holding them.
    pub providers: usize,
    /// Providers whose bit for the epoch is set on chain.
    pub proven_on_chain: usize,
    /// Providers the indexer counts as having proved the epoch.
    pub proofs_in_indexer: u64,
}

/// A killed node's deal's first failed epoch.
#[derive(Serialize, Debug, Clone)]
pub struct Failure {
    pub provider: String,
    pub deal: String,
    /// The deal's data group (absent: the index group).
    pub group: Option<u32>,
    pub shard_index: u16,
    pub killed_in_epoch: u64,
    /// First epoch opened without the provider's proof.
    pub first_failed_epoch: u64,
    /// Surviving providers that proved that epoch (all of them).
    pub survivors_proved: usize,
}

/// A failed deal's settlement, chain and indexer side by side.
#[derive(Serialize, Debug, Clone)]
pub struct Slashing {
    pub provider: String,
    pub deal: String,
    /// The deal's data group (absent: the index group).
    pub group: Option<u32>,
    pub shard_index: u16,
    pub first_failed_epoch: u64,
    /// The end the client's `end_deal` gave the deal.
    pub end_epoch: u64,
    /// The provider's jailing, if someone jailed it meanwhile.
    pub jailed_from: Option<u64>,
    pub proven_epochs: u64,
    pub failed_epochs: u64,
    pub void_epochs: u64,
    pub price_per_epoch: u64,
    pub duration_epochs: u64,
    pub collateral: u64,
    pub slash_bps: u16,
    /// `collateral × slash_bps / 10⁴`.
    pub penalty_per_epoch: u64,
    /// This deal's penalties, `min(failed × penalty_per_epoch, collateral)`.
    pub penalties: u64,
    /// Its collateral left, forfeited to the client.
    pub forfeited: u64,
    /// Chain: the provider's `slashed` over all its deals (one per group it
    /// held): the sum of their penalties.
    pub provider_slashed: u64,
    /// Chain: the provider's `forfeited` over all its deals.
    pub provider_forfeited: u64,
    /// Chain: what the deal owes the client: every unproven epoch's price and
    /// the whole collateral.
    pub client_refund: u64,
    /// Indexer: the deal's settled failed epochs.
    pub indexer_failed_epochs: u64,
    pub state: String,
}

#[derive(Serialize, Debug)]
pub struct DemoReport {
    pub dataset_id: String,
    /// Data groups (the index group comes on top).
    pub groups: u64,
    pub files: usize,
    pub dataset_bytes: u64,
    pub work_dir: PathBuf,
    /// Per watched epoch: opened, proven by every provider, on chain and in
    /// the indexer.
    pub epochs: Vec<EpochProofs>,
    pub failures: Vec<Failure>,
    /// Files compared by SHA-256 after the download from the survivors.
    pub verified_files: usize,
    pub single_file: String,
    pub repaired: Vec<repair::RepairedShard>,
    pub repaired_first_proof_epoch: Vec<u64>,
    pub slashings: Vec<Slashing>,
    /// The failed deals closed by a second `cairn repair`, and what closing them
    /// paid the client.
    pub closed_old_deals: usize,
    pub refunded_to_client: u64,
    pub corrupted: Corruption,
    pub explorer: Option<String>,
    /// Whether `work_dir` is kept (`--work-dir`) or was a removed temporary.
    pub kept: bool,
    pub seconds: f64,
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
            cairn_cli::units::human_bytes(self.dataset_bytes)
        )?;
        for e in &self.epochs {
            writeln!(
                f,
                "  epoch {}: {}/{} providers proved it on chain ({} deals), {} proof sessions in the indexer",
                e.epoch, e.proven_on_chain, e.providers, e.deals, e.proofs_in_indexer
            )?;
        }
        for x in &self.failures {
            writeln!(
                f,
                "  provider {} ({} shard {}): killed in epoch {}, first failed epoch {}",
                x.provider,
                group_name(x.group),
                x.shard_index,
                x.killed_in_epoch,
                x.first_failed_epoch
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
                "  repaired shard {} ({}) onto provider {} as generation {}",
                r.shard_index, r.reason, r.provider, r.generation
            )?;
        }
        for s in &self.slashings {
            writeln!(
                f,
                "  provider {} ({} shard {}): {} failed epoch(s), penalties {} (= {} x {} x {}/10000), collateral left {} forfeited, deal {}",
                s.provider,
                group_name(s.group),
                s.shard_index,
                s.failed_epochs,
                s.penalties,
                s.failed_epochs,
                s.collateral,
                s.slash_bps,
                s.forfeited,
                s.state
            )?;
        }
        writeln!(
            f,
            "  {} old deals closed, {} base units paid to the client",
            self.closed_old_deals, self.refunded_to_client
        )?;
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

/// "group 0", or "index group".
fn group_name(group: Option<u32>) -> String {
    group.map_or("index group".into(), |g| format!("group {g}"))
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
    state_dir: PathBuf,
    say: &'a dyn Fn(&str),
}

impl Story<'_> {
    /// Every deal of the dataset, all groups and generations.
    fn deals(&self) -> Result<Vec<DealAt>, CliError> {
        onchain::dataset_deals(&self.ctx, &self.client, &self.id.0)
    }

    /// Each shard's live deal, group by group.
    fn live(&self) -> Result<Vec<DealAt>, CliError> {
        let mut by_group: BTreeMap<[u8; 32], Vec<DealAt>> = BTreeMap::new();
        for d in self.deals()? {
            by_group.entry(d.1.group_id).or_default().push(d);
        }
        Ok(by_group
            .values()
            .flat_map(|deals| {
                onchain::live_deals(deals)
                    .into_values()
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .collect())
    }

    fn view(&self, deals: &[DealAt]) -> Result<DealsView, CliError> {
        DealsView::load(&self.ctx, &self.market, deals)
    }

    fn deal(&self, address: &Pubkey) -> Result<Deal, CliError> {
        self.ctx.fetch_existing("deal", address)
    }

    fn epoch(&self) -> Result<u64, CliError> {
        Ok(self.market.account.epoch_at(self.ctx.slot()?))
    }

    /// Waits until epoch `e` is over (its proofs were due within it).
    fn wait_closed(&self, e: u64) -> Result<(), CliError> {
        poll(&format!("epoch {e} to close"), 600, || {
            Ok((self.epoch()? > e).then_some(()))
        })
    }

    fn indexer_deals(&self) -> Result<Vec<serde_json::Value>, CliError> {
        let v = self.net.indexer_get(&format!("/v1/datasets/{}", self.id))?;
        Ok(v["deals"].as_array().cloned().unwrap_or_default())
    }

    /// Waits until the indexer shows the chain's provider and settled proven
    /// and failed epochs for every deal of the dataset (read fresh from both
    /// each time).
    fn indexer_agrees(&self) -> Result<(), CliError> {
        poll(
            "the indexer to show the chain's settled epochs",
            120,
            || {
                let chain = self.deals()?;
                let indexed = self.indexer_deals()?;
                Ok(chain
                    .iter()
                    .all(|(address, d)| {
                        indexed.iter().any(|x| {
                            x["address"] == address.to_string()
                                && x["provider"] == d.provider.to_string()
                                && x["proven_epochs"] == d.proven_epochs
                                && x["failed_epochs"] == d.failed_epochs
                        })
                    })
                    .then_some(()))
            },
        )
    }

    fn repair(&self) -> Result<DatasetRepairReport, CliError> {
        repair::repair(
            &self.ctx,
            RepairArgs {
                dataset: self.id.to_string(),
                max_price: None,
                state_dir: Some(self.state_dir.clone()),
                accept_timeout: 120,
                wait_epochs: 0,
            },
            &self.connector,
            &self.progress,
        )
    }

    /// Step 3: each epoch opened, and proven by every provider of the dataset
    /// in one proof session, on chain and in the indexer.
    fn watch_proofs(&self, epochs: u64) -> Result<Vec<EpochProofs>, CliError> {
        let deals = self.live()?;
        let first = deals.iter().map(|(_, d)| d.start_epoch).max().unwrap_or(0);
        let mut providers: Vec<Pubkey> = deals.iter().map(|(_, d)| d.provider).collect();
        providers.sort();
        providers.dedup();
        let mut out = Vec::new();
        for e in first..first + epochs {
            self.wait_closed(e)?;
            let view = self.view(&deals)?;
            check(view.bits.opened(e), || format!("epoch {e} was not opened"))?;
            let proven = providers.iter().filter(|p| view.bits.proven(p, e)).count();
            check(proven == providers.len(), || {
                format!(
                    "epoch {e}: {proven} of {} providers proved it",
                    providers.len()
                )
            })?;
            for (address, d) in &deals {
                let epochs = view.epochs(d);
                check(epochs.closed.failed == 0, || {
                    format!(
                        "deal {address} (shard {}): failed epoch {:?}",
                        d.shard_index, epochs.first_failed
                    )
                })?;
            }
            let proofs = poll(&format!("the indexer's epoch {e}"), 120, || {
                let v = self.net.indexer_get(&format!("/v1/epochs/{e}"));
                Ok(v.ok()
                    .and_then(|v| v["proven"].as_u64())
                    .filter(|p| *p >= proven as u64))
            })?;
            check(proofs == proven as u64, || {
                format!("epoch {e}: the indexer counts {proofs} proof sessions, the chain {proven}")
            })?;
            (self.say)(&format!(
                "epoch {e}: opened; {proven}/{} providers proved it on chain, one proof session each for all its deals; the indexer counts {proofs}",
                providers.len()
            ));
            out.push(EpochProofs {
                epoch: e,
                deals: deals.len(),
                providers: providers.len(),
                proven_on_chain: proven,
                proofs_in_indexer: proofs,
            });
        }
        self.indexer_agrees()?;
        let settled: u64 = self.deals()?.iter().map(|(_, d)| d.proven_epochs).sum();
        (self.say)(&format!(
            "settlement is lazy: {settled} deal-epochs settled as proven (paid) so far; chain and indexer agree on every deal"
        ));
        Ok(out)
    }

    /// Step 4: SIGKILL the nodes holding data group 0's `shards`; the first
    /// epoch opened without their proof is failed for every deal they held (one
    /// per group), on chain at once, before anyone settles.
    fn fail_nodes(&mut self, shards: &[u16]) -> Result<Vec<Failure>, CliError> {
        let deals = self.live()?;
        let mut killed = Vec::new();
        for &s in shards {
            let (_, deal) = deals
                .iter()
                .find(|(_, d)| d.group == 0 && d.shard_index == s)
                .cloned()
                .ok_or_else(|| CliError::Refused(format!("no deal for shard {s} of group 0")))?;
            let node = self
                .net
                .nodes
                .iter()
                .position(|n| n.provider == deal.provider)
                .ok_or_else(|| {
                    CliError::Refused(format!("no local node runs provider {}", deal.provider))
                })?;
            killed.push((deal.provider, node));
        }
        let victims: Vec<(Pubkey, Deal, usize)> = deals
            .iter()
            .filter_map(|(a, d)| {
                killed
                    .iter()
                    .find(|(p, _)| *p == d.provider)
                    .map(|(_, node)| (*a, d.clone(), *node))
            })
            .collect();
        let killed_in = self.epoch()?;
        for (provider, node) in &killed {
            self.net.kill_node(*node);
            let held: Vec<String> = victims
                .iter()
                .filter(|(_, d, _)| d.provider == *provider)
                .map(|(_, d, _)| {
                    format!(
                        "{} shard {}",
                        group_name(onchain::group_number(d)),
                        d.shard_index
                    )
                })
                .collect();
            (self.say)(&format!(
                "SIGKILL node {node} (provider {provider}, holding {}) in epoch {killed_in}",
                held.join(", ")
            ));
        }
        let first_failed: BTreeMap<Pubkey, u64> =
            poll("the killed providers' first failed epoch", 600, || {
                let view = self.view(&deals)?;
                let found: BTreeMap<Pubkey, u64> = victims
                    .iter()
                    .filter_map(|(a, d, _)| view.epochs(d).first_failed.map(|e| (*a, e)))
                    .collect();
                Ok((found.len() == victims.len()).then_some(found))
            })?;
        let view = self.view(&deals)?;
        let mut survivors: Vec<Pubkey> = deals
            .iter()
            .map(|(_, d)| d.provider)
            .filter(|p| !victims.iter().any(|(_, d, _)| d.provider == *p))
            .collect();
        survivors.sort();
        survivors.dedup();
        let mut out = Vec::new();
        for (address, deal, _) in &victims {
            let e = first_failed[address];
            // The node may have proved the epoch it was killed in.
            check(e == killed_in || e == killed_in + 1, || {
                format!("deal {address}: first failed epoch {e}, killed in {killed_in}")
            })?;
            let proved = survivors.iter().filter(|p| view.bits.proven(p, e)).count();
            check(view.bits.opened(e) && proved == survivors.len(), || {
                format!(
                    "epoch {e}: opened {}, proven by {proved} of {} survivors",
                    view.bits.opened(e),
                    survivors.len()
                )
            })?;
            (self.say)(&format!(
                "epoch {e}: opened and proven by the {proved} survivors, not by provider {} ({} shard {}): failed",
                deal.provider,
                group_name(onchain::group_number(deal)),
                deal.shard_index
            ));
            out.push(Failure {
                provider: deal.provider.to_string(),
                deal: address.to_string(),
                group: onchain::group_number(deal),
                shard_index: deal.shard_index,
                killed_in_epoch: killed_in,
                first_failed_epoch: e,
                survivors_proved: proved,
            });
        }
        let status = status_report(
            &self.ctx,
            StatusArgs {
                dataset: self.id.to_string(),
                client: Some(self.client),
            },
        )?;
        let mut expected: Vec<ShardRef> = victims
            .iter()
            .map(|(_, d, _)| ShardRef {
                group: onchain::group_number(d),
                shard_index: d.shard_index,
            })
            .collect();
        let mut to_repair = status.to_repair.clone();
        let key = |r: &ShardRef| (r.group.map_or(0, |g| g + 1), r.shard_index);
        expected.sort_by_key(key);
        to_repair.sort_by_key(key);
        check(
            to_repair == expected
                && status.can_lose == K + M - K - shards.len() as u16
                && status.health == "degraded",
            || {
                format!(
                    "cairn status says {}, each group can lose {} more, {:?} to repair; expected {expected:?}",
                    status.health, status.can_lose, status.to_repair
                )
            },
        )?;
        (self.say)(&format!(
            "cairn status: {} in each of its {} group(s) (index and data), {} more can be lost; {} shards failed an epoch (penalties owed {}, not settled yet)",
            status.health,
            status.groups.len(),
            status.can_lose,
            status.to_repair.len(),
            self.market.tokens(status.totals.penalties)
        ));
        Ok(out)
    }

    /// Step 6: the client's repair ends each failed deal and places its shard
    /// at once on a fresh provider, as generation 1; the new deals prove from
    /// their first epoch.
    fn repair_onto_fresh_nodes(
        &mut self,
        failures: &[Failure],
    ) -> Result<(DatasetRepairReport, Vec<u64>), CliError> {
        let before = self.net.nodes.len();
        for _ in 0..2 {
            self.net.add_node(self.say)?;
        }
        (self.say)(
            "cairn repair: the client ends each failed deal (its first failed epoch is enough), rebuilds the shard from 4 others and proposes it at once",
        );
        let fixed = self.repair()?;
        let fresh: Vec<String> = self.net.nodes[before..]
            .iter()
            .map(|n| n.provider.to_string())
            .collect();
        check(
            fixed.repaired.len() == failures.len()
                && fixed
                    .repaired
                    .iter()
                    .all(|r| fresh.contains(&r.provider) && r.generation == 1),
            || {
                format!(
                    "repair placed {:?}, fresh providers are {fresh:?}",
                    fixed.repaired
                )
            },
        )?;
        for r in &fixed.repaired {
            let failure = failures
                .iter()
                .find(|x| r.old_deal.as_deref() == Some(x.deal.as_str()))
                .ok_or_else(|| {
                    CliError::Refused(format!(
                        "{} shard {}: repair replaced {:?}, which had not failed",
                        group_name(r.group.map(|g| g as u32)),
                        r.shard_index,
                        r.old_deal
                    ))
                })?;
            let old = self.deal(&failure.deal.parse().expect("an address"))?;
            let ended = match r.old_deal_ends {
                // Ended by the client: it runs to the end of the repair's epoch.
                Some(end) => old.forfeit && old.end_epoch == end,
                // Unless someone jailed the provider first: its deals end there.
                None => self
                    .ctx
                    .fetch::<Provider>("provider", &old.provider)?
                    .is_some_and(|p| p.jailed_from != NOT_JAILED),
            };
            check(ended, || {
                format!(
                    "shard {}: old deal {} did not end ({old:?})",
                    r.shard_index, failure.deal
                )
            })?;
            (self.say)(&format!(
                "{} shard {} ({}): the client ended deal {} (it runs to epoch {}, its later escrow returned); generation 1 proposed to provider {} (deal {}) at once",
                group_name(failure.group),
                r.shard_index,
                r.reason,
                failure.deal,
                old.end_epoch,
                r.provider,
                r.deal
            ));
        }
        let repaired_deals: Vec<Pubkey> = fixed
            .repaired
            .iter()
            .map(|r| r.deal.parse().expect("an address"))
            .collect();
        let accepted_in = self.epoch()?;
        let first_proofs = poll("the repaired shards' first epoch to close", 600, || {
            let deals = repaired_deals
                .iter()
                .map(|a| self.deal(a).map(|d| (*a, d)))
                .collect::<Result<Vec<_>, _>>()?;
            let now = self.epoch()?;
            Ok(deals
                .iter()
                .all(|(_, d)| d.state == DealState::Active && d.start_epoch < now)
                .then_some(deals))
        })?;
        let view = self.view(&first_proofs)?;
        let mut starts = Vec::new();
        for ((address, d), r) in first_proofs.iter().zip(&fixed.repaired) {
            check(
                view.bits.proven(&d.provider, d.start_epoch) && d.start_epoch <= accepted_in + 1,
                || {
                    format!(
                        "repaired deal {address} starts in epoch {} (accepted by epoch {accepted_in}), proven then: {}",
                        d.start_epoch,
                        view.bits.proven(&d.provider, d.start_epoch)
                    )
                },
            )?;
            let from = fixed
                .groups
                .iter()
                .find(|g| g.group == r.group)
                .map(|g| g.rebuilt_from.clone())
                .unwrap_or_default();
            (self.say)(&format!(
                "{} shard {} rebuilt from shards {from:?} and placed on provider {}: proven in its first epoch, {}",
                group_name(r.group.map(|g| g as u32)),
                r.shard_index,
                r.provider,
                d.start_epoch
            ));
            starts.push(d.start_epoch);
        }
        Ok((fixed, starts))
    }

    /// Step 6b: once the ended deals' last epoch is over, the client settles
    /// them (their dead providers cannot): each failed epoch's penalty and the
    /// collateral left go to the client; the bits, the deal, the provider and
    /// the indexer agree.
    fn settle_failed(&self, failures: &[Failure]) -> Result<Vec<Slashing>, CliError> {
        // Settle every failed deal once its last epoch is over.
        for f in failures {
            let address: Pubkey = f.deal.parse().expect("an address");
            let d = self.deal(&address)?;
            let jailed_from = self
                .ctx
                .fetch::<Provider>("provider", &d.provider)?
                .map_or(NOT_JAILED, |p| p.jailed_from);
            let owed_until = d.end_epoch.min(jailed_from);
            poll(&format!("deal {address}'s last epoch to end"), 600, || {
                Ok((self.epoch()? >= owed_until).then_some(()))
            })?;
            repair::settle_deal(
                &self.ctx,
                &self.market,
                &address,
                self.deal(&address)?,
                jailed_from,
                self.epoch()?,
            )?;
        }
        // Then check each deal, and each provider's totals over its deals.
        let mut out = Vec::new();
        for f in failures {
            let address: Pubkey = f.deal.parse().expect("an address");
            let d = self.deal(&address)?;
            let p: Provider = self
                .ctx
                .fetch("provider", &d.provider)?
                .ok_or_else(|| CliError::Refused(format!("provider {} is gone", d.provider)))?;
            let view = self.view(&[(address, d.clone())])?;
            let bits = view.epochs(&d);
            let per_epoch = bps_of(d.collateral, d.slash_bps).expect("collateral fits");
            let penalties = (d.failed_epochs * per_epoch).min(d.collateral);
            let indexer_failed = poll("the indexer to hold the deal's settlement", 120, || {
                let v = self.net.indexer_get(&format!("/v1/deals/{address}"))?;
                Ok(v["failed_epochs"]
                    .as_u64()
                    .filter(|n| *n == d.failed_epochs))
            })?;
            let s = Slashing {
                provider: d.provider.to_string(),
                deal: address.to_string(),
                group: f.group,
                shard_index: d.shard_index,
                first_failed_epoch: f.first_failed_epoch,
                end_epoch: d.end_epoch,
                jailed_from: (p.jailed_from != NOT_JAILED).then_some(p.jailed_from),
                proven_epochs: d.proven_epochs,
                failed_epochs: d.failed_epochs,
                void_epochs: d.void_epochs,
                price_per_epoch: d.price_per_epoch,
                duration_epochs: d.duration_epochs,
                collateral: d.collateral,
                slash_bps: d.slash_bps,
                penalty_per_epoch: per_epoch,
                penalties,
                forfeited: d.collateral - penalties,
                provider_slashed: p.slashed,
                provider_forfeited: p.forfeited,
                client_refund: d.client_refund,
                indexer_failed_epochs: indexer_failed,
                state: state_name(d.state).to_string(),
            };
            check(d.state == DealState::Terminated, || {
                format!("deal {address} is {} after settlement", s.state)
            })?;
            check(
                (d.proven_epochs, d.failed_epochs, d.void_epochs)
                    == (bits.closed.proven, bits.closed.failed, bits.closed.void)
                    && d.failed_epochs >= 1,
                || {
                    format!(
                        "deal {address}: settled {:?}, the bits say {:?}",
                        s, bits.closed
                    )
                },
            )?;
            let owed = d.price_per_epoch * (d.duration_epochs - d.proven_epochs) + d.collateral;
            check(d.client_refund == owed, || {
                format!(
                    "deal {address}: owes the client {}, expected {owed}",
                    d.client_refund
                )
            })?;
            (self.say)(&format!(
                "provider {} ({} shard {}): settled {} proven, {} failed, {} void epochs (the bits agree); penalties {} = {} x {} x {}/10000, collateral left {} to the client; the deal owes the client {} = every unproven epoch's price + the whole collateral (indexer agrees: {} failed)",
                d.provider,
                group_name(f.group),
                d.shard_index,
                d.proven_epochs,
                d.failed_epochs,
                d.void_epochs,
                self.market.tokens(penalties),
                d.failed_epochs,
                self.market.tokens(d.collateral),
                d.slash_bps,
                self.market.tokens(s.forfeited),
                self.market.tokens(d.client_refund),
                indexer_failed
            ));
            out.push(s);
        }
        // A provider's totals are the sums over its deals (all of them failed
        // here: one per group it held).
        let mut providers: Vec<&str> = out.iter().map(|s| s.provider.as_str()).collect();
        providers.sort_unstable();
        providers.dedup();
        for provider in providers {
            let mine: Vec<&Slashing> = out.iter().filter(|s| s.provider == provider).collect();
            let (slashed, forfeited) = (mine[0].provider_slashed, mine[0].provider_forfeited);
            let penalties: u64 = mine.iter().map(|s| s.penalties).sum();
            let left: u64 = mine.iter().map(|s| s.forfeited).sum();
            check(slashed == penalties && forfeited == left, || {
                format!(
                    "provider {provider}: slashed {slashed} and forfeited {forfeited}; its {} deals' penalties sum to {penalties} and their collateral left to {left}",
                    mine.len()
                )
            })?;
            (self.say)(&format!(
                "provider {provider}: slashed {} and forfeited {} in all, the sums over its {} failed deals",
                self.market.tokens(slashed),
                self.market.tokens(forfeited),
                mine.len()
            ));
        }
        Ok(out)
    }

    /// Step 6c: a second `cairn repair` finds nothing to repair and closes the
    /// settled deals; the client's balance grows by exactly what they owed.
    fn close_failed(&self, slashings: &[Slashing]) -> Result<(usize, u64), CliError> {
        let account = self.market.token_account_of(&self.client);
        let before = self.ctx.token_balance(&account)?;
        let again = self.repair()?;
        let after = self.ctx.token_balance(&account)?;
        let old_deals: Vec<&repair::OldDeal> =
            again.groups.iter().flat_map(|g| &g.old_deals).collect();
        let closed: Vec<&repair::OldDeal> = old_deals
            .iter()
            .copied()
            .filter(|o| o.state == "closed")
            .collect();
        let refunded: u64 = closed.iter().map(|o| o.refunded).sum();
        check(again.repaired.is_empty(), || {
            format!("the second repair replaced {:?}", again.repaired)
        })?;
        for s in slashings {
            check(
                closed
                    .iter()
                    .any(|o| o.deal == s.deal && o.refunded == s.client_refund),
                || {
                    format!(
                        "deal {} was not closed with its refund: {:?}",
                        s.deal, old_deals
                    )
                },
            )?;
        }
        check(after.checked_sub(before) == Some(refunded), || {
            format!("the client's balance went from {before} to {after}, the closed deals paid {refunded}")
        })?;
        (self.say)(&format!(
            "cairn repair again: nothing to repair; the {} ended deals left their providers' deal sets and were closed, paying the client {} (its balance grew by exactly that)",
            closed.len(),
            self.market.tokens(refunded)
        ));
        // The indexer shows the new generation on its new provider.
        self.indexer_agrees()?;
        Ok((closed.len(), refunded))
    }

    fn download(
        &self,
        out: PathBuf,
        file: Option<String>,
    ) -> Result<download::DownloadReport, CliError> {
        download::download(
            &self.ctx,
            DownloadArgs {
                range: None,
                dataset: self.id.to_string(),
                out,
                file,
                key: cairn_cli::commands::key::KeyArg {
                    key: cairn_cli::context::default_dataset_key(),
                },
            },
            &self.connector,
            &self.progress,
        )
    }
}

/// Runs the demo scenario; `say` hears each step. Services are started from
/// `launcher` (`cairn` itself, or the end-to-end test binary).
pub fn run(a: DemoArgs, launcher: Launcher, say: &dyn Fn(&str)) -> Result<DemoReport, CliError> {
    run_with(a, launcher, say, &mut |_, _| Ok(()))
}

/// [`run`], then `while_up` with the network still running (the chain going
/// on, the indexer following it) and the report, before everything stops.
pub fn run_with(
    a: DemoArgs,
    launcher: Launcher,
    say: &dyn Fn(&str),
    while_up: &mut dyn FnMut(&Network, &DemoReport) -> Result<(), CliError>,
) -> Result<DemoReport, CliError> {
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
            node_capacity: network::DEMO_NODE_CAPACITY,
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
    let state_dir = work.join("state");
    let up = upload::upload(
        &ctx,
        UploadArgs {
            group_size: None,
            dir: data.clone(),
            data_shards: K,
            parity_shards: M,
            epochs: 60,
            max_price: None,
            resume: false,
            state_dir: Some(state_dir.clone()),
            accept_timeout: 120,
            encrypt: false,
            key: cairn_cli::commands::key::KeyArg {
                key: cairn_cli::context::default_dataset_key(),
            },
        },
        &connector,
        &progress,
    )?;
    say(&format!(
        "uploaded: dataset {} ({} files, {}) in {} data group(s) and an index group (the dataset manifest), {} deals accepted",
        up.dataset_id,
        up.files,
        cairn_cli::units::human_bytes(up.dataset_bytes),
        up.groups,
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
        state_dir,
        say,
    };

    let epochs = story.watch_proofs(a.watch_epochs)?;
    let failures = story.fail_nodes(&[1, 4])?;

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

    // Step 6: repair at once onto two fresh nodes; settle and close the
    // failed deals once they have ended.
    let (fixed, first_proofs) = story.repair_onto_fresh_nodes(&failures)?;
    let slashings = story.settle_failed(&failures)?;
    let (closed_old_deals, refunded_to_client) = story.close_failed(&slashings)?;
    for r in &fixed.repaired {
        let v = story.net.indexer_get(&format!("/v1/deals/{}", r.deal))?;
        check(
            v["provider"] == r.provider.as_str() && v["failed_epochs"] == 0,
            || format!("the indexer's repaired deal {}: {v}", r.deal),
        )?;
    }
    say("the indexer shows each repaired shard's new deal on its new provider, with no failed epoch");

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
    let report = DemoReport {
        dataset_id: id.to_string(),
        groups: up.groups,
        files: up.files,
        dataset_bytes: up.dataset_bytes,
        work_dir: work.clone(),
        epochs,
        failures,
        verified_files: original.len(),
        single_file: single,
        repaired: fixed.repaired,
        repaired_first_proof_epoch: first_proofs,
        slashings,
        closed_old_deals,
        refunded_to_client,
        corrupted,
        explorer,
        kept: a.work_dir.is_some(),
        seconds: started.elapsed().as_secs_f64(),
    };
    while_up(&story.net, &report)?;
    if a.stay {
        say("everything keeps running; Ctrl-C stops it and removes the temporary files");
        loop {
            std::thread::sleep(Duration::from_secs(3600));
        }
    }
    Ok(report)
}

/// Flips one byte of a surviving data shard on its node's disk, downloads
/// again (it must succeed and name the provider), and asks the node to prove
/// the damaged segment: the proof fails the program's check.
fn corrupt_and_check(
    story: &mut Story,
    work: &std::path::Path,
    original: &BTreeMap<String, [u8; 32]>,
) -> Result<Corruption, CliError> {
    let deals = story.live()?;
    let (address, deal) = deals
        .iter()
        .find(|(_, d)| {
            d.state == DealState::Active
                && d.group == 0
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
    let used = got
        .providers
        .iter()
        .find(|p| p.group == Some(0) && p.shard_index == deal.shard_index);
    let status = used.map(|p| p.status.clone()).unwrap_or_default();
    // The node serves the flipped byte (the reader's checksum catches it), or
    // finds its own copy corrupt and says so.
    let named = used.is_some_and(|p| {
        matches!(
            p.kind,
            cairn_cli::dataset::download::SourceKind::BadData
                | cairn_cli::dataset::download::SourceKind::CorruptCopy
        )
    });
    check(named, || {
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
