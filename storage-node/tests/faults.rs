//! Faults for real: a write that fails part way with ENOSPC (a failpoint, compiled
//! only into test builds), and a genuinely full file system (a tmpfs the test
//! mounts; skipped with a message when the test cannot mount). Real quinn, RocksDB
//! and files; the chain is the in-memory one of `support`.
//!
//! Failpoints are process-wide, so every test here holds a `fail::FailScenario`.

use cairn_chain::Pubkey;
use cairn_core::wire::{ErrorCode, ShardState};
use cairn_storage_node::{client::NodeClient, server::Limits};
use cairn_tests::TestShard;
use solana_keypair::Keypair;
use std::{path::Path, process::Command, time::Duration};
use support::{start_in, start_with, Fixture};

mod support;

async fn byte_exact(f: &Fixture, c: &NodeClient, key: &Pubkey, shard: &TestShard) {
    let back = c.get_shard(key, 0, shard.data.len() as u64).await.unwrap();
    assert!(back == shard.data, "the downloaded shard differs");
    let on_disk = std::fs::read(f.node.store.shard_path(&key.to_bytes())).unwrap();
    assert!(on_disk == shard.data, "the stored file differs");
    for index in [0, shard.data.len() as u64 / 64 / 2] {
        let p = c.get_proof(key, index).await.unwrap();
        cairn_proof::verify_for_shard(
            &shard.root(),
            shard.data.len() as u64,
            &p.segment,
            index,
            &p.path,
        )
        .expect("the proof verifies");
    }
}

/// The third write of an upload lands half its bytes, then fails with ENOSPC. The
/// client is told `CapacityExceeded` and where to resume; the resumed upload gives
/// a byte-exact shard (a write through the file cursor would have put the retried
/// bytes after the torn half).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enospc_part_way_through_a_write_loses_and_misplaces_nothing() {
    let scenario = fail::FailScenario::setup();
    let f = start_with(Limits {
        checkpoint_bytes: 64 * 1024,
        min_free_disk_bytes: 0,
        ..Limits::default()
    })
    .await;
    let client = Keypair::new();
    let shard = TestShard::random(3_000_000, 11);
    let key = f.propose(&client, &shard);
    let c = NodeClient::connect(f.addr, f.operator).await.unwrap();
    fail::cfg("shard-write", "2*off->1*return->off").unwrap();
    let err = c
        .put_shard(&key, &client, 0, &shard.data)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::CapacityExceeded), "{err}");
    let status = c.status(&key).await.unwrap();
    assert_eq!(status.state, ShardState::Receiving);
    assert!(status.received > 0 && status.received < 3_000_000);
    let done = c.upload(&key, &client, &shard.data).await.unwrap();
    assert_eq!(done.state, ShardState::Stored);
    byte_exact(&f, &c, &key, &shard).await;
    c.close().await;
    f.cancel.cancel();
    scenario.teardown();
}

struct Tmpfs(std::path::PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, bytes: u64) -> Option<Tmpfs> {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={bytes}"), "tmpfs"])
            .arg(dir)
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

/// Fills `dir`'s file system until `leave` bytes are free.
fn fill(dir: &Path, leave: u64) -> std::path::PathBuf {
    let path = dir.join("filler");
    let free = cairn_storage_node::disk::disk_free(&path).unwrap();
    let len = free.saturating_sub(leave);
    std::fs::write(&path, vec![0xAB; len as usize]).unwrap();
    path
}

/// A real full disk: a 96 MiB tmpfs holds the node's data directory. A stored
/// shard, then another file fills the disk while a second upload is under way.
/// The upload is refused cleanly with `CapacityExceeded` (the node keeps its
/// headroom free for RocksDB), the stored shard is still served and proven, and
/// once space is back the upload resumes to a byte-exact shard.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_really_full_disk_refuses_uploads_and_keeps_serving_what_it_holds() {
    let _scenario = fail::FailScenario::setup();
    let root = tempfile::tempdir().unwrap();
    let Some(_mount) = Tmpfs::mount(root.path(), 96 << 20) else {
        println!("skipped: cannot mount a tmpfs here (needs root)");
        return;
    };
    let data = root.path().join("data");
    let mut f = start_in(
        &data,
        Limits {
            min_free_disk_bytes: 4 << 20,
            checkpoint_bytes: 256 * 1024,
            ..Limits::default()
        },
    )
    .await;
    f._dir = None;
    let client = Keypair::new();
    let held = TestShard::random(8 << 20, 12);
    let held_key = f.propose(&client, &held);
    let c = NodeClient::connect(f.addr, f.operator).await.unwrap();
    c.upload(&held_key, &client, &held.data).await.unwrap();

    let next = TestShard::random(16 << 20, 13);
    let next_key = f.propose(&client, &next);
    let s = c
        .put_shard(&next_key, &client, 0, &next.data[..2 << 20])
        .await
        .unwrap();
    assert_eq!(s.received, 2 << 20);
    // Something else takes the disk: 5 MiB left, 4 MiB of it headroom.
    let filler = fill(root.path(), 5 << 20);
    let err = c
        .put_shard(&next_key, &client, 2 << 20, &next.data[2 << 20..])
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::CapacityExceeded), "{err}");
    let status = c.status(&next_key).await.unwrap();
    assert!(status.received >= 2 << 20 && status.received < 16 << 20);
    assert!(c.info().await.unwrap().free_capacity < 2 << 20);
    // What the node holds is intact, served and proven.
    byte_exact(&f, &c, &held_key, &held).await;

    std::fs::remove_file(filler).unwrap();
    let done = c.upload(&next_key, &client, &next.data).await.unwrap();
    assert_eq!(done.state, ShardState::Stored);
    byte_exact(&f, &c, &next_key, &next).await;
    c.close().await;
    f.cancel.cancel();
    tokio::time::sleep(Duration::from_millis(200)).await;
}
