//! Restarting on an existing ledger without replaying the program's
//! transactions in banks that lack it.
//!
//! At startup the validator loads its newest snapshot and replays every later
//! slot of the blockstore *inside* `Validator::new`, before the caller can reach
//! its banks. A native builtin is not part of a snapshot, so that replay would
//! execute the storage-market transactions of those slots without the program:
//! they would fail, and the restarted chain would silently differ from the one
//! that was stopped.
//!
//! So before the validator starts, [`catch_up`] does that replay itself, the
//! way `agave-ledger-tool create-snapshot` does: it loads the newest snapshot
//! archive (or genesis), registers the program in the root bank (every replayed
//! bank descends from it), replays the blockstore with agave's own
//! `process_blockstore_from_root`, marks the replayed chain as rooted and writes
//! a full snapshot archive of its last bank. The validator then starts from that
//! archive and has nothing left to replay. Bank hashes are unchanged: the
//! program ran in every one of those banks the first time too.
use crate::builtin;
use agave_snapshots::{
    paths::get_highest_full_snapshot_archive_slot, snapshot_config::SnapshotConfig,
};
use solana_accounts_db::{
    accounts_db::{AccountsDbConfig, ACCOUNTS_DB_CONFIG_FOR_TESTING},
    accounts_index::{AccountsIndexConfig, ScanFilter},
    utils::create_accounts_run_and_snapshot_dirs,
};
use solana_genesis_utils::{open_genesis_config, MAX_GENESIS_ARCHIVE_UNPACKED_SIZE};
use solana_ledger::{
    bank_forks_utils,
    blockstore::Blockstore,
    blockstore_processor::{self, ProcessOptions},
    leader_schedule_cache::LeaderScheduleCache,
    use_snapshot_archives_at_startup::UseSnapshotArchivesAtStartup,
};
use solana_runtime::snapshot_bank_utils;
use std::{
    path::Path,
    sync::{atomic::AtomicBool, Arc},
};

/// What [`catch_up`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CatchUp {
    /// The newest snapshot already covers the blockstore.
    UpToDate { snapshot_slot: u64 },
    /// Slots after `from` were replayed and a snapshot written at `to`.
    Replayed { from: u64, to: u64 },
}

/// Replays the slots of `ledger` that no snapshot covers, with the program
/// registered, and writes a snapshot of the result (see the module docs).
pub fn catch_up(ledger: &Path) -> Result<CatchUp, String> {
    let genesis = open_genesis_config(ledger, MAX_GENESIS_ARCHIVE_UNPACKED_SIZE)
        .map_err(|e| format!("reading genesis: {e}"))?;
    let blockstore = Blockstore::open(ledger).map_err(|e| format!("opening blockstore: {e}"))?;
    let snapshot_slot = get_highest_full_snapshot_archive_slot(ledger).unwrap_or(0);
    let highest_slot = blockstore
        .highest_slot()
        .map_err(|e| format!("reading blockstore: {e}"))?
        .unwrap_or(0);
    if highest_slot <= snapshot_slot {
        return Ok(CatchUp::UpToDate { snapshot_slot });
    }

    // Accounts and bank snapshots of this replay live in their own directory,
    // so the validator's state is untouched until the new archive exists.
    let work = ledger.join("catch-up");
    if work.exists() {
        std::fs::remove_dir_all(&work).map_err(|e| format!("removing {}: {e}", work.display()))?;
    }
    let (accounts, _) = create_accounts_run_and_snapshot_dirs(work.join("accounts"))
        .map_err(|e| format!("creating accounts dir: {e}"))?;
    let bank_snapshots_dir = work.join("snapshots");
    std::fs::create_dir_all(&bank_snapshots_dir)
        .map_err(|e| format!("creating {}: {e}", bank_snapshots_dir.display()))?;
    let snapshot_config = SnapshotConfig {
        full_snapshot_archives_dir: ledger.to_path_buf(),
        incremental_snapshot_archives_dir: ledger.to_path_buf(),
        bank_snapshots_dir,
        ..SnapshotConfig::default()
    };
    let options = ProcessOptions {
        run_verification: false,
        halt_at_slot: Some(highest_slot),
        accounts_db_config: AccountsDbConfig {
            index: Some(AccountsIndexConfig::default()),
            scan_filter_for_shrinking: ScanFilter::All,
            ..ACCOUNTS_DB_CONFIG_FOR_TESTING
        },
        use_snapshot_archives_at_startup: UseSnapshotArchivesAtStartup::Always,
        ..ProcessOptions::default()
    };
    let exit = Arc::new(AtomicBool::new(false));
    let loaded = bank_forks_utils::try_load_bank_forks_from_snapshot(
        &genesis,
        std::slice::from_ref(&accounts),
        &snapshot_config,
        &options,
        None,
        exit.clone(),
    )
    .map_err(|e| format!("loading snapshot: {e}"))?;
    let (bank_forks, _) = match loaded {
        Some(loaded) => loaded,
        None => bank_forks_utils::load_bank_forks_from_genesis(
            &genesis,
            &blockstore,
            vec![accounts],
            &options,
            None,
            None,
            None,
            exit.clone(),
        )
        .map_err(|e| format!("loading genesis: {e}"))?,
    };

    let root = bank_forks.read().expect("bank forks lock").root_bank();
    builtin::add_to(&root);
    let leader_schedule_cache = LeaderScheduleCache::new_from_bank(&root);
    let shred_version =
        solana_shred_version::compute_shred_version(&genesis.hash(), Some(&root.hard_forks()));
    blockstore_processor::process_blockstore_from_root(
        &blockstore,
        &bank_forks,
        shred_version,
        &leader_schedule_cache,
        &options,
        None,
        None,
        None,
    )
    .map_err(|e| format!("replaying the ledger: {e:?}"))?;

    let tip = bank_forks
        .read()
        .expect("bank forks lock")
        .highest_frozen_bank()
        .ok_or("no frozen bank after replay")?;
    let from = root.slot();
    if tip.slot() <= from {
        std::fs::remove_dir_all(&work).ok();
        return Ok(CatchUp::UpToDate {
            snapshot_slot: from,
        });
    }
    // The replayed chain becomes the ledger's history: root it in the
    // blockstore so `getTransaction` and `getSignaturesForAddress` keep finding
    // its transactions once the validator starts past it.
    let mut chain: Vec<u64> = tip
        .parents()
        .iter()
        .map(|bank| bank.slot())
        .filter(|slot| *slot > from)
        .collect();
    chain.push(tip.slot());
    blockstore
        .set_roots(chain.iter())
        .map_err(|e| format!("rooting replayed slots: {e}"))?;
    snapshot_bank_utils::bank_to_full_snapshot_archive(&snapshot_config, &tip)
        .map_err(|e| format!("writing snapshot at slot {}: {e}", tip.slot()))?;
    let to = tip.slot();
    drop(tip);
    drop(root);
    drop(bank_forks);
    drop(blockstore);
    std::fs::remove_dir_all(&work).ok();
    Ok(CatchUp::Replayed { from, to })
}
