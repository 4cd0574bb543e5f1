//! Turning a directory into stored shards on local disk, in one streaming pass:
//! pack, Reed-Solomon encode, hash each shard's Merkle tree as it is written,
//! then append each shard's manifest unit and trailer
//! ([`cairn_core::dataset`]).
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use cairn_core::erasure::{ErasureParams, DEFAULT_STRIPE_UNIT, STRIPE_UNIT_ALIGN};
use cairn_core::manifest::fs::{pack_dir, scan_dir};
use cairn_core::{DatasetId, Manifest};
use cairn_proof::TreeBuilder;

use crate::error::CliError;

/// One stored shard written to local disk.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LocalShard {
    pub index: u16,
    pub path: PathBuf,
    pub bytes: u64,
    /// SHA-256 segment Merkle root (what the deal pins and proofs answer to).
    #[serde(with = "hex32")]
    pub root: [u8; 32],
}

#[derive(Debug)]
pub struct Prepared {
    pub manifest: Manifest,
    pub id: DatasetId,
    pub shards: Vec<LocalShard>,
}

/// A stripe unit that does not pad a small dataset to megabytes: the packed
/// size split over `k`, rounded up to 64 bytes, at most the default unit.
pub fn stripe_unit_for(total: u64, k: u16) -> u32 {
    let per_shard = total.div_ceil(u64::from(k.max(1))).max(1);
    let aligned = per_shard.div_ceil(u64::from(STRIPE_UNIT_ALIGN)) * u64::from(STRIPE_UNIT_ALIGN);
    aligned.min(u64::from(DEFAULT_STRIPE_UNIT)) as u32
}

/// A shard file that also feeds every byte to the shard's Merkle tree. The
/// tree is built on a thread of its own, so hashing (the slowest stage of
/// encoding) runs beside packing and Reed-Solomon instead of after them.
pub(crate) struct ShardSink {
    file: BufWriter<File>,
    tree: Option<TreeThread>,
    /// Written bytes not yet handed to the tree thread.
    pending: Vec<u8>,
    bytes: u64,
}

/// The thread building one shard's tree, and the queue of bytes it hashes.
struct TreeThread {
    queue: std::sync::mpsc::SyncSender<Vec<u8>>,
    thread: std::thread::JoinHandle<[u8; 32]>,
}

/// Bytes handed to the tree thread at a time.
const TREE_CHUNK: usize = 1 << 20;
/// Chunks queued per tree thread (bounds the memory a slow hasher holds).
const TREE_QUEUE: usize = 4;

impl ShardSink {
    /// Creates (truncates) the shard file at `path`.
    pub(crate) fn create(path: &Path) -> Result<Self, CliError> {
        let file = File::create(path).map_err(CliError::io(path))?;
        let (queue, chunks) = std::sync::mpsc::sync_channel::<Vec<u8>>(TREE_QUEUE);
        let thread = std::thread::Builder::new()
            .name("cairn-tree".into())
            .spawn(move || {
                let mut tree = TreeBuilder::new();
                for chunk in chunks {
                    tree.update(&chunk);
                }
                tree.finish().root()
            })
            .map_err(CliError::io(path))?;
        Ok(ShardSink {
            file: BufWriter::with_capacity(1 << 20, file),
            tree: Some(TreeThread { queue, thread }),
            pending: Vec::with_capacity(TREE_CHUNK),
            bytes: 0,
        })
    }

    /// Hands the pending bytes to the tree thread.
    fn hash_pending(&mut self) -> io::Result<()> {
        let chunk = std::mem::replace(&mut self.pending, Vec::with_capacity(TREE_CHUNK));
        let tree = self.tree.as_ref().expect("not finished");
        tree.queue
            .send(chunk)
            .map_err(|_| io::Error::other("the shard's Merkle tree thread stopped"))
    }

    /// Appends the shard's `tail` (manifest unit and trailer), fsyncs the
    /// file and returns the stored shard.
    pub(crate) fn finish(
        mut self,
        index: u16,
        path: PathBuf,
        tail: &[u8],
    ) -> Result<LocalShard, CliError> {
        self.write_all(tail).map_err(CliError::io(&path))?;
        self.hash_pending().map_err(CliError::io(&path))?;
        self.file.flush().map_err(CliError::io(&path))?;
        let TreeThread { queue, thread } = self.tree.take().expect("finished once");
        drop(queue);
        let root = thread.join().expect("the tree thread does not panic");
        let file = self
            .file
            .into_inner()
            .map_err(|e| CliError::io(&path)(e.into_error()))?;
        file.sync_all().map_err(CliError::io(&path))?;
        Ok(LocalShard {
            index,
            path,
            bytes: self.bytes,
            root,
        })
    }
}

impl Write for ShardSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file.write_all(buf)?;
        self.pending.extend_from_slice(buf);
        self.bytes += buf.len() as u64;
        if self.pending.len() >= TREE_CHUNK {
            self.hash_pending()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// Packs and encodes `dir` into `k + m` stored shards under `work`
/// (`shard-<i>.bin`), fsynced.
pub fn prepare(dir: &Path, k: u16, m: u16, work: &Path) -> Result<Prepared, CliError> {
    let files = scan_dir(dir).map_err(|e| CliError::bad("DIR", e.to_string()))?;
    let total: u64 = files.iter().map(|f| f.size).sum();
    let params = ErasureParams::new(k, m, stripe_unit_for(total, k))
        .map_err(|e| CliError::bad("--data-shards/--parity-shards", e.to_string()))?;
    std::fs::create_dir_all(work).map_err(CliError::io(work))?;
    let mut sinks = Vec::with_capacity(params.n());
    let mut paths = Vec::with_capacity(params.n());
    for i in 0..params.n() {
        let path = work.join(format!("shard-{i}.bin"));
        sinks.push(ShardSink::create(&path)?);
        paths.push(path);
    }
    let (manifest, sinks) =
        pack_dir(dir, params, sinks).map_err(|e| CliError::bad("DIR", e.to_string()))?;
    let tails = cairn_core::dataset::shard_tails(&manifest)
        .map_err(|e| CliError::Refused(e.to_string()))?;
    let mut shards = Vec::with_capacity(sinks.len());
    for (i, ((sink, tail), path)) in sinks.into_iter().zip(tails).zip(paths).enumerate() {
        shards.push(sink.finish(i as u16, path, &tail)?);
    }
    debug_assert!(shards
        .iter()
        .all(|s| s.bytes == cairn_core::dataset::stored_shard_len(&manifest)));
    Ok(Prepared {
        id: manifest.id(),
        manifest,
        shards,
    })
}

/// Serializes `[u8; 32]` as hex.
pub mod hex32 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(bytes: &[u8; 32], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&cairn_core::hash::to_hex(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<[u8; 32], D::Error> {
        let text = String::deserialize(d)?;
        let id: cairn_core::DatasetId = text.parse().map_err(serde::de::Error::custom)?;
        Ok(id.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stripe_units_fit_small_datasets_and_cap_large_ones() {
        assert_eq!(stripe_unit_for(0, 4), 64);
        assert_eq!(stripe_unit_for(1000, 4), 256);
        assert_eq!(stripe_unit_for(1025, 4), 256 + 64);
        assert_eq!(stripe_unit_for(1 << 40, 4), DEFAULT_STRIPE_UNIT);
    }

    #[test]
    fn prepared_shards_are_stored_shards_whose_roots_match_their_bytes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/x.bin"), vec![7u8; 300_000]).unwrap();
        std::fs::write(dir.path().join("empty"), b"").unwrap();
        std::fs::write(dir.path().join("héllo.txt"), b"hello").unwrap();
        let work = tempfile::tempdir().unwrap();
        let p = prepare(dir.path(), 4, 2, work.path()).unwrap();
        assert_eq!(p.shards.len(), 6);
        assert_eq!(p.manifest.files().len(), 3);
        let mut stored = Vec::new();
        for s in &p.shards {
            let bytes = std::fs::read(&s.path).unwrap();
            assert_eq!(bytes.len() as u64, s.bytes);
            assert_eq!(cairn_proof::root_of(&bytes), s.root);
            stored.push(bytes);
        }
        // The id alone rebuilds the manifest from 4 of the stored shards.
        let len = stored[0].len() as u64;
        let t = cairn_core::dataset::Trailer::decode(
            &stored[5][cairn_core::dataset::trailer_range(len).unwrap().start as usize..],
        )
        .unwrap();
        let r = t.manifest_unit_range();
        let units: Vec<Option<Vec<u8>>> = stored
            .iter()
            .enumerate()
            .map(|(i, s)| (i >= 2).then(|| s[r.start as usize..r.end as usize].to_vec()))
            .collect();
        let (manifest, _) = cairn_core::dataset::recover_manifest(&p.id, &t, &units).unwrap();
        assert_eq!(manifest, p.manifest);
    }
}
