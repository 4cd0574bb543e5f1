//! Turning a group into stored shards on local disk, in one streaming pass:
//! Reed-Solomon encode, hash each shard's Merkle tree as it is written, then
//! append each shard's group manifest unit and trailer
//! ([`cairn_core::dataset`]).
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use cairn_core::group::GroupManifest;
use cairn_core::manifest::fs::{GroupPacker, PackedGroup};
use cairn_core::FileEntry;
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

/// A group coded to local disk.
#[derive(Debug)]
pub struct Prepared {
    pub group: GroupManifest,
    pub shards: Vec<LocalShard>,
    /// The files that ended in this group.
    pub entries: Vec<FileEntry>,
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

/// `n` shard files `shard-<i>.bin` under `dir` (created).
fn sinks(dir: &Path, n: usize) -> Result<(Vec<ShardSink>, Vec<PathBuf>), CliError> {
    std::fs::create_dir_all(dir).map_err(CliError::io(dir))?;
    let mut sinks = Vec::with_capacity(n);
    let mut paths = Vec::with_capacity(n);
    for i in 0..n {
        let path = dir.join(format!("shard-{i}.bin"));
        sinks.push(ShardSink::create(&path)?);
        paths.push(path);
    }
    Ok((sinks, paths))
}

/// Appends each shard's tail, fsyncs it, and returns the stored shards.
fn store(
    group: &GroupManifest,
    sinks: Vec<ShardSink>,
    paths: Vec<PathBuf>,
) -> Result<Vec<LocalShard>, CliError> {
    let tails =
        cairn_core::dataset::shard_tails(group).map_err(|e| CliError::Refused(e.to_string()))?;
    let mut shards = Vec::with_capacity(sinks.len());
    for (i, ((sink, tail), path)) in sinks.into_iter().zip(tails).zip(paths).enumerate() {
        shards.push(sink.finish(i as u16, path, &tail)?);
    }
    debug_assert!(shards
        .iter()
        .all(|s| s.bytes == cairn_core::dataset::stored_shard_len(group)));
    Ok(shards)
}

/// Codes the packer's next data group into stored shards under `dir`; `None`
/// once every group is coded.
pub fn prepare_group(
    packer: &mut GroupPacker,
    n: usize,
    dir: &Path,
) -> Result<Option<Prepared>, CliError> {
    let (sinks, paths) = sinks(dir, n)?;
    match packer
        .next_group(sinks)
        .map_err(|e| CliError::bad("DIR", e.to_string()))?
    {
        Some(PackedGroup {
            group,
            sinks,
            entries,
        }) => Ok(Some(Prepared {
            shards: store(&group, sinks, paths)?,
            group,
            entries,
        })),
        None => {
            let _ = std::fs::remove_dir_all(dir);
            Ok(None)
        }
    }
}

/// Codes the index group's `content` (the dataset manifest, or a private
/// dataset's sealed one) with `k + m` as its stored shards under `dir`.
pub fn prepare_index(
    content: &[u8],
    k: u16,
    m: u16,
    salt: [u8; 32],
    dir: &Path,
) -> Result<Prepared, CliError> {
    let (group, coded) = cairn_core::group::encode_group_bytes(
        cairn_core::group::GroupKind::Index,
        salt,
        0,
        0,
        k,
        m,
        content,
    )
    .map_err(|e| CliError::Refused(format!("coding the dataset manifest: {e}")))?;
    let (mut sinks, paths) = sinks(dir, coded.len())?;
    for (sink, content) in sinks.iter_mut().zip(&coded) {
        sink.write_all(content).map_err(CliError::io(dir))?;
    }
    Ok(Prepared {
        shards: store(&group, sinks, paths)?,
        group,
        entries: Vec::new(),
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
    use cairn_core::manifest::fs::scan_dir;
    use cairn_core::Manifest;

    #[test]
    fn prepared_shards_are_stored_shards_whose_roots_match_their_bytes() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("a/b")).unwrap();
        std::fs::write(dir.path().join("a/b/x.bin"), vec![7u8; 300_000]).unwrap();
        std::fs::write(dir.path().join("empty"), b"").unwrap();
        std::fs::write(dir.path().join("héllo.txt"), b"hello").unwrap();
        let work = tempfile::tempdir().unwrap();
        let scan = scan_dir(dir.path()).unwrap();
        let mut packer = GroupPacker::new(dir.path(), &scan, 4, 2, 200_000, [3; 32], 0).unwrap();
        let mut groups = Vec::new();
        while let Some(p) = prepare_group(
            &mut packer,
            6,
            &work.path().join(format!("g{}", groups.len())),
        )
        .unwrap()
        {
            groups.push(p);
        }
        assert_eq!(groups.len(), 2);
        for p in &groups {
            assert_eq!(p.shards.len(), 6);
            let mut stored = Vec::new();
            for s in &p.shards {
                let bytes = std::fs::read(&s.path).unwrap();
                assert_eq!(bytes.len() as u64, s.bytes);
                assert_eq!(cairn_proof::root_of(&bytes), s.root);
                stored.push(bytes);
            }
            // The group id alone rebuilds its manifest from 4 of the stored shards.
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
            let (group, _) = cairn_core::dataset::recover_group(&p.group.id(), &t, &units).unwrap();
            assert_eq!(group, p.group);
        }
        let mut entries: Vec<_> = groups.iter().flat_map(|p| p.entries.clone()).collect();
        entries.extend(packer.finish().unwrap());
        assert_eq!(entries.len(), 3);
        let ids = groups.iter().map(|p| p.group.id()).collect();
        let manifest = Manifest::new(4, 2, 200_000, entries, scan.dirs, ids).unwrap();
        let index = prepare_index(
            &manifest.encode(),
            4,
            2,
            [3; 32],
            &work.path().join("index"),
        )
        .unwrap();
        assert_eq!(index.shards.len(), 6);
        assert_eq!(index.group.kind(), cairn_core::group::GroupKind::Index);
    }
}
