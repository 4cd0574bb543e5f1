//! Streaming tree construction, the kept upper levels, and path extraction.

use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

use crate::{
    depth, empty_subtree, leaf_hash, node_hash, segment_count, Hash, KEPT_LEVEL, SEGMENT_BYTES,
};

/// Enough pending levels for any tree over a `u64` byte count (at most 2^58 segments).
const MAX_LEVELS: usize = 64;

/// Why a [`Tree`] could not be loaded or could not produce a path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TreeError {
    /// The requested segment index is not a data segment of the shard.
    IndexOutOfRange {
        /// The index that was requested.
        index: u64,
        /// Number of data segments in the shard; valid indices are below it.
        segments: u64,
    },
    /// The chunk passed to [`Tree::path`] is not exactly the bytes of
    /// [`Tree::chunk_range`] for the index.
    WrongChunkLength {
        /// The segment index whose path was requested.
        index: u64,
        /// Length of `chunk_range(index)`.
        expected: u64,
        /// Length of the chunk that was given.
        got: usize,
    },
    /// The chunk's bytes do not hash to the kept node above them: the stored shard
    /// bytes differ from the bytes the tree was built from (disk corruption, or the
    /// wrong file or offset was read).
    ChunkMismatch {
        /// Index of the chunk (byte offset / chunk size) that did not match.
        chunk: u64,
    },
    /// [`Tree::from_parts`] got a different number of kept levels than the shard's
    /// tree has.
    WrongLevelCount {
        /// Levels a tree over the given shard size keeps.
        expected: usize,
        /// Levels that were given.
        got: usize,
    },
    /// [`Tree::from_parts`] got a kept level with the wrong number of nodes.
    WrongLevelWidth {
        /// Tree level (0 = leaves) of the offending kept level.
        level: u32,
        /// Nodes a level this high has over the given shard size.
        expected: u64,
        /// Nodes that were given.
        got: usize,
    },
    /// [`Tree::from_parts`] found a node that is not the hash of its two children in
    /// the kept level below: the stored levels are corrupt.
    InconsistentLevel {
        /// Tree level (0 = leaves) of the node that does not match.
        level: u32,
        /// Position of that node within its level.
        position: u64,
    },
}

impl fmt::Display for TreeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::IndexOutOfRange { index, segments } => write!(
                f,
                "segment index {index} is out of range: the shard has {segments} data segments \
                 (valid indices are 0..{segments})"
            ),
            Self::WrongChunkLength {
                index,
                expected,
                got,
            } => write!(
                f,
                "chunk for segment {index} is {got} bytes but chunk_range({index}) is \
                 {expected} bytes; pass exactly the shard bytes in that range"
            ),
            Self::ChunkMismatch { chunk } => write!(
                f,
                "chunk {chunk} of the shard does not hash to the stored tree node; \
                 the shard bytes on disk are corrupt or were read from the wrong place"
            ),
            Self::WrongLevelCount { expected, got } => write!(
                f,
                "{got} kept tree levels given but a shard of this size keeps {expected}; \
                 the stored levels belong to a different shard size"
            ),
            Self::WrongLevelWidth {
                level,
                expected,
                got,
            } => write!(
                f,
                "kept tree level {level} has {got} nodes but a shard of this size has \
                 {expected}; the stored levels are truncated or belong to another shard"
            ),
            Self::InconsistentLevel { level, position } => write!(
                f,
                "kept tree node {position} at level {level} is not the hash of its children; \
                 the stored levels are corrupt, rebuild the tree from the shard bytes"
            ),
        }
    }
}

impl core::error::Error for TreeError {}

/// Lowest kept level of a tree of depth `depth`: [`KEPT_LEVEL`], or the root's level
/// for trees shallower than that.
fn base_level(depth: u32) -> u32 {
    depth.min(KEPT_LEVEL)
}

/// Number of nodes covering at least one data segment at `level` (`ceil(segments / 2^level)`).
fn level_width(segments: u64, level: u32) -> u64 {
    ((segments - 1) >> level) + 1
}

/// Builds a shard's tree from its bytes as they stream in, in any chunk sizes.
///
/// Memory is one partial segment, one pending hash per level (a binary counter of
/// complete subtrees) and the nodes at [`KEPT_LEVEL`] and above (1/64 hash per
/// segment: 32 MiB for a 4 GiB shard). Each segment is hashed as soon as it is
/// complete and each node as soon as both children exist.
///
/// ```
/// use cairn_proof::{root_of, TreeBuilder};
/// let data = vec![7u8; 10_000];
/// let mut builder = TreeBuilder::new();
/// for piece in data.chunks(999) {
///     builder.update(piece);
/// }
/// let tree = builder.finish();
/// assert_eq!(tree.root(), root_of(&data));
/// assert_eq!(tree.shard_bytes(), 10_000);
/// ```
#[derive(Clone, Debug)]
pub struct TreeBuilder {
    /// Bytes of the current, incomplete segment.
    partial: [u8; SEGMENT_BYTES],
    /// How many bytes of `partial` are filled (always below 64 between calls).
    partial_len: usize,
    /// Total bytes fed so far.
    shard_bytes: u64,
    /// Complete segments hashed so far.
    leaves: u64,
    /// `pending[l]` is the root of a complete, still unpaired subtree at level `l`; it
    /// is valid exactly when bit `l` of `leaves` is set.
    pending: [Hash; MAX_LEVELS],
    /// Every node formed at level `KEPT_LEVEL + i`, in order, in `kept[i]`.
    kept: Vec<Vec<Hash>>,
}

impl Default for TreeBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl TreeBuilder {
    /// An empty builder. Finishing it right away gives the tree of a 0-byte shard.
    pub fn new() -> Self {
        Self {
            partial: [0; SEGMENT_BYTES],
            partial_len: 0,
            shard_bytes: 0,
            leaves: 0,
            pending: [[0; 32]; MAX_LEVELS],
            kept: Vec::new(),
        }
    }

    /// Bytes fed to the builder so far.
    pub fn shard_bytes(&self) -> u64 {
        self.shard_bytes
    }

    /// Feeds the next bytes of the shard. Any split of the shard into calls gives the
    /// same tree.
    pub fn update(&mut self, bytes: &[u8]) {
        self.shard_bytes += bytes.len() as u64;
        let mut rest = bytes;
        if self.partial_len > 0 {
            let take = (SEGMENT_BYTES - self.partial_len).min(rest.len());
            self.partial[self.partial_len..self.partial_len + take].copy_from_slice(&rest[..take]);
            self.partial_len += take;
            rest = &rest[take..];
            if self.partial_len < SEGMENT_BYTES {
                return;
            }
            let leaf = leaf_hash(&self.partial);
            self.push_leaf(leaf);
            self.partial_len = 0;
        }
        let mut segments = rest.chunks_exact(SEGMENT_BYTES);
        for segment in &mut segments {
            let segment: &[u8; SEGMENT_BYTES] = segment.try_into().expect("chunks_exact(64)");
            self.push_leaf(leaf_hash(segment));
        }
        let tail = segments.remainder();
        self.partial[..tail.len()].copy_from_slice(tail);
        self.partial_len = tail.len();
    }

    /// Adds the next leaf and hashes every subtree it completes.
    #[inline]
    fn push_leaf(&mut self, leaf: Hash) {
        let mut node = leaf;
        let mut level = 0;
        while (self.leaves >> level) & 1 == 1 {
            node = node_hash(&self.pending[level], &node);
            level += 1;
            self.keep(level as u32, node);
        }
        self.pending[level] = node;
        self.leaves += 1;
    }

    /// Records `node`, the next node at `level`, if that level is kept.
    #[inline]
    fn keep(&mut self, level: u32, node: Hash) {
        if let Some(index) = level.checked_sub(KEPT_LEVEL) {
            let index = index as usize;
            if index == self.kept.len() {
                self.kept.push(Vec::new());
            }
            self.kept[index].push(node);
        }
    }

    /// Zero-pads the last segment, pads the leaves to a power of two with
    /// [`empty_subtree`] (a few hashes, whatever the amount of padding) and returns the
    /// tree.
    pub fn finish(mut self) -> Tree {
        if self.partial_len > 0 || self.leaves == 0 {
            self.partial[self.partial_len..].fill(0);
            let leaf = leaf_hash(&self.partial);
            self.push_leaf(leaf);
        }
        let depth = depth(self.shard_bytes);
        debug_assert_eq!(self.leaves, segment_count(self.shard_bytes));

        // Close the open subtrees from the right: `right` is the root of the partial
        // subtree made of the leaves after the last complete pending subtree.
        let mut right: Option<Hash> = None;
        for level in 0..depth {
            let pending = (self.leaves >> level) & 1 == 1;
            let parent = match (pending, right) {
                (true, Some(right)) => node_hash(&self.pending[level as usize], &right),
                (true, None) => node_hash(&self.pending[level as usize], &empty_subtree(level)),
                (false, Some(left)) => node_hash(&left, &empty_subtree(level)),
                (false, None) => continue,
            };
            right = Some(parent);
            self.keep(level + 1, parent);
        }
        let root = right.unwrap_or(self.pending[depth as usize]);

        if depth < KEPT_LEVEL {
            self.kept = vec![vec![root]];
        }
        debug_assert_eq!(self.kept.len() as u32, depth - base_level(depth) + 1);
        debug_assert_eq!(
            self.kept.last().map(|top| top[..].to_vec()),
            Some(vec![root])
        );
        Tree {
            shard_bytes: self.shard_bytes,
            depth,
            root,
            kept: self.kept,
        }
    }
}

/// A shard's Merkle tree as a storage node keeps it: the root and the levels from
/// [`KEPT_LEVEL`] up, from which [`Tree::path`] proves any segment given the one 4 KiB
/// chunk of shard bytes below it.
///
/// The kept levels run from level `min(depth, KEPT_LEVEL)` up to the root, so the last
/// one is always `[root]`; a tree over at most 4 KiB keeps only `[[root]]`, and its
/// chunk is the whole shard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tree {
    shard_bytes: u64,
    depth: u32,
    root: Hash,
    kept: Vec<Vec<Hash>>,
}

impl Tree {
    /// Reloads a tree from what [`Tree::kept_levels`] returned, e.g. after reading it
    /// from a database.
    ///
    /// Checks the number of levels and the width of each against `shard_bytes`, and
    /// re-hashes every kept node from the level below it (about one hash per 4 KiB of
    /// shard), so a corrupted level is rejected. The root is the single node of the
    /// last level; compare it with the deal's root. For shards of at most 4 KiB the
    /// only kept level is the root itself, which [`Tree::path`] then checks against
    /// the shard bytes.
    pub fn from_parts(shard_bytes: u64, kept_levels: Vec<Vec<Hash>>) -> Result<Tree, TreeError> {
        let depth = depth(shard_bytes);
        let base = base_level(depth);
        let expected = (depth - base + 1) as usize;
        if kept_levels.len() != expected {
            return Err(TreeError::WrongLevelCount {
                expected,
                got: kept_levels.len(),
            });
        }
        let segments = segment_count(shard_bytes);
        for (offset, nodes) in kept_levels.iter().enumerate() {
            let level = base + offset as u32;
            let expected = level_width(segments, level);
            if nodes.len() as u64 != expected {
                return Err(TreeError::WrongLevelWidth {
                    level,
                    expected,
                    got: nodes.len(),
                });
            }
        }
        for (offset, pair) in kept_levels.windows(2).enumerate() {
            let level = base + offset as u32;
            let (children, parents) = (&pair[0], &pair[1]);
            let empty = empty_subtree(level);
            for (position, (parent, siblings)) in parents.iter().zip(children.chunks(2)).enumerate()
            {
                let right = siblings.get(1).unwrap_or(&empty);
                if node_hash(&siblings[0], right) != *parent {
                    return Err(TreeError::InconsistentLevel {
                        level: level + 1,
                        position: position as u64,
                    });
                }
            }
        }
        let root = kept_levels[expected - 1][0];
        Ok(Tree {
            shard_bytes,
            depth,
            root,
            kept: kept_levels,
        })
    }

    /// The Merkle root, as recorded in the deal.
    pub fn root(&self) -> Hash {
        self.root
    }

    /// Tree depth, which is the length of every path ([`crate::depth`] of the size).
    pub fn depth(&self) -> u32 {
        self.depth
    }

    /// Size of the shard in bytes, before padding.
    pub fn shard_bytes(&self) -> u64 {
        self.shard_bytes
    }

    /// Number of data segments ([`segment_count`] of the size); valid indices for
    /// [`Tree::path`] are below it.
    pub fn segments(&self) -> u64 {
        segment_count(self.shard_bytes)
    }

    /// The kept levels, lowest first: level `min(depth, KEPT_LEVEL) + i` is
    /// `kept_levels()[i]`, holding the nodes that cover at least one data segment, left
    /// to right. The last level is `[root]`. Persist these with
    /// [`Tree::shard_bytes`] and reload them with [`Tree::from_parts`].
    pub fn kept_levels(&self) -> &[Vec<Hash>] {
        &self.kept
    }

    /// Consumes the tree and returns its kept levels (see [`Tree::kept_levels`]).
    pub fn into_kept_levels(self) -> Vec<Vec<Hash>> {
        self.kept
    }

    /// Byte range of the shard that [`Tree::path`] needs for segment `index`: the 4 KiB
    /// subtree holding it, clamped to the shard size (shorter at the tail; the whole
    /// shard for shards of at most 4 KiB; empty for a 0-byte shard). An index past the
    /// last segment gets the clamped range of the subtree that would hold it, possibly
    /// empty; [`Tree::path`] rejects such an index.
    pub fn chunk_range(&self, index: u64) -> Range<u64> {
        let base = base_level(self.depth);
        let span = (SEGMENT_BYTES as u64) << base;
        let start = (index >> base).saturating_mul(span).min(self.shard_bytes);
        let end = start.saturating_add(span).min(self.shard_bytes);
        start..end
    }

    /// Segment `index` (zero-padded) and its path, siblings from the leaf level up, as
    /// [`crate::verify_for_shard`] checks them.
    ///
    /// `chunk` must be the shard bytes of [`Tree::chunk_range`]`(index)`. The lower
    /// levels are rebuilt from it (at most 64 leaf and 63 node hashes) and checked
    /// against the kept node above it, so corrupt data gives
    /// [`TreeError::ChunkMismatch`] rather than a proof that would fail on chain. The
    /// upper siblings come from the kept levels, with [`empty_subtree`] where a level
    /// has no right sibling.
    pub fn path(
        &self,
        index: u64,
        chunk: &[u8],
    ) -> Result<([u8; SEGMENT_BYTES], Vec<Hash>), TreeError> {
        let segments = self.segments();
        if index >= segments {
            return Err(TreeError::IndexOutOfRange { index, segments });
        }
        let range = self.chunk_range(index);
        let expected = range.end - range.start;
        if chunk.len() as u64 != expected {
            return Err(TreeError::WrongChunkLength {
                index,
                expected,
                got: chunk.len(),
            });
        }
        let base = base_level(self.depth);
        let chunk_index = index >> base;
        let local = (index - (chunk_index << base)) as usize;

        // Leaves of the chunk's data segments; the rest of the subtree is padding.
        let mut nodes = [[0u8; 32]; 1 << KEPT_LEVEL];
        let mut width = chunk.len().div_ceil(SEGMENT_BYTES).max(1);
        let mut segment = [0u8; SEGMENT_BYTES];
        for (position, node) in nodes[..width].iter_mut().enumerate() {
            let start = position * SEGMENT_BYTES;
            let bytes = &chunk[start.min(chunk.len())..(start + SEGMENT_BYTES).min(chunk.len())];
            let mut padded = [0u8; SEGMENT_BYTES];
            padded[..bytes.len()].copy_from_slice(bytes);
            *node = leaf_hash(&padded);
            if position == local {
                segment = padded;
            }
        }

        let mut path = Vec::with_capacity(self.depth as usize);
        for level in 0..base {
            let sibling = (local >> level) ^ 1;
            path.push(if sibling < width {
                nodes[sibling]
            } else {
                empty_subtree(level)
            });
            let parents = width.div_ceil(2);
            for parent in 0..parents {
                let left = nodes[2 * parent];
                let right = if 2 * parent + 1 < width {
                    nodes[2 * parent + 1]
                } else {
                    empty_subtree(level)
                };
                nodes[parent] = node_hash(&left, &right);
            }
            width = parents;
        }
        if nodes[0] != self.kept[0][chunk_index as usize] {
            return Err(TreeError::ChunkMismatch { chunk: chunk_index });
        }

        for level in base..self.depth {
            let sibling = ((index >> level) ^ 1) as usize;
            let kept = &self.kept[(level - base) as usize];
            path.push(
                kept.get(sibling)
                    .copied()
                    .unwrap_or_else(|| empty_subtree(level)),
            );
        }
        Ok((segment, path))
    }
}

/// Merkle root of `bytes` as one whole shard.
pub fn root_of(bytes: &[u8]) -> Hash {
    let mut builder = TreeBuilder::new();
    builder.update(bytes);
    builder.finish().root()
}

/// Segment `index` of `bytes` (zero-padded) and its path, building the whole tree first.
/// For tests and small data; a node keeps a [`Tree`] and calls [`Tree::path`].
///
/// # Panics
/// If `index >= segment_count(bytes.len())`.
pub fn path_of(bytes: &[u8], index: u64) -> ([u8; SEGMENT_BYTES], Vec<Hash>) {
    let mut builder = TreeBuilder::new();
    builder.update(bytes);
    let tree = builder.finish();
    let range = tree.chunk_range(index);
    match tree.path(index, &bytes[range.start as usize..range.end as usize]) {
        Ok(proof) => proof,
        Err(error) => panic!("path_of: {error}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{verify_for_shard, MAX_DEPTH};
    use alloc::string::ToString;
    use solana_sha256_hasher::hashv;

    /// SHA-256 written out against the format, independent of `leaf_hash`/`node_hash`.
    fn sha256(parts: &[&[u8]]) -> Hash {
        hashv(parts).to_bytes()
    }

    fn leaf(bytes: &[u8]) -> Hash {
        let mut segment = [0u8; 64];
        segment[..bytes.len()].copy_from_slice(bytes);
        sha256(&[&[0x00], &segment])
    }

    fn node(left: &Hash, right: &Hash) -> Hash {
        sha256(&[&[0x01], left, right])
    }

    fn data(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 + 7) as u8).collect()
    }

    fn build(bytes: &[u8]) -> Tree {
        let mut builder = TreeBuilder::new();
        builder.update(bytes);
        builder.finish()
    }

    #[test]
    fn hand_checked_roots() {
        // 0 bytes: one all-zero segment.
        assert_eq!(root_of(&[]), sha256(&[&[0u8; 65]]));
        // 1 byte: zero-padded to one segment.
        let mut one = [0u8; 65];
        one[1] = 0xab;
        assert_eq!(root_of(&[0xab]), sha256(&[&one]));
        // 64 bytes: exactly one segment, depth 0.
        let d = data(64);
        assert_eq!(root_of(&d), sha256(&[&[0], &d]));
        // 65 bytes: two leaves, the second holding one byte.
        let d = data(65);
        let second = leaf(&d[64..]);
        let root = sha256(&[&[1], &sha256(&[&[0], &d[..64]]), &second]);
        assert_eq!(root_of(&d), root);
        // 128 bytes: two full leaves.
        let d = data(128);
        let root = sha256(&[&[1], &sha256(&[&[0], &d[..64]]), &sha256(&[&[0], &d[64..]])]);
        assert_eq!(root_of(&d), root);
        // 129 bytes: three leaves padded to four with the all-zero leaf.
        let d = data(129);
        let zero = sha256(&[&[0u8; 65]]);
        let root = node(
            &node(&leaf(&d[..64]), &leaf(&d[64..128])),
            &node(&leaf(&d[128..]), &zero),
        );
        assert_eq!(root_of(&d), root);
    }

    #[test]
    fn tree_metadata() {
        let tree = build(&data(4097));
        assert_eq!(tree.shard_bytes(), 4097);
        assert_eq!(tree.segments(), 65);
        assert_eq!(tree.depth(), 7);
        // Levels 6 and 7: two 4 KiB subtrees (the second holds 1 byte), then the root.
        assert_eq!(tree.kept_levels().len(), 2);
        assert_eq!(tree.kept_levels()[0].len(), 2);
        assert_eq!(tree.kept_levels()[1], vec![tree.root()]);
        assert_eq!(tree.chunk_range(0), 0..4096);
        assert_eq!(tree.chunk_range(63), 0..4096);
        assert_eq!(tree.chunk_range(64), 4096..4097);
        assert_eq!(tree.chunk_range(65), 4096..4097);
        assert_eq!(tree.chunk_range(128), 4097..4097);
        assert_eq!(tree.chunk_range(u64::MAX), 4097..4097);

        let small = build(&data(100));
        assert_eq!(small.depth(), 1);
        assert_eq!(small.kept_levels(), &[vec![small.root()]]);
        assert_eq!(small.chunk_range(1), 0..100);

        let empty = build(&[]);
        assert_eq!(empty.segments(), 1);
        assert_eq!(empty.chunk_range(0), 0..0);
        let (segment, path) = empty.path(0, &[]).unwrap();
        assert_eq!(segment, [0; 64]);
        assert!(path.is_empty());
        assert_eq!(
            verify_for_shard(&empty.root(), 0, &segment, 0, &path),
            Ok(())
        );
    }

    #[test]
    fn chunking_does_not_change_the_tree() {
        let d = data(3 * 4096 + 100);
        let whole = build(&d);
        for step in [1, 3, 63, 64, 65, 4095, 4096, 5000] {
            let mut builder = TreeBuilder::new();
            for piece in d.chunks(step) {
                builder.update(piece);
                builder.update(&[]);
            }
            assert_eq!(builder.shard_bytes(), d.len() as u64);
            assert_eq!(builder.finish(), whole, "step {step}");
        }
    }

    #[test]
    fn path_errors() {
        let d = data(5000);
        let tree = build(&d);
        let range = tree.chunk_range(70);
        assert_eq!(range, 4096..5000);
        let chunk = &d[range.start as usize..range.end as usize];
        assert!(tree.path(70, chunk).is_ok());
        assert_eq!(
            tree.path(79, chunk),
            Err(TreeError::IndexOutOfRange {
                index: 79,
                segments: 79
            })
        );
        assert_eq!(
            tree.path(70, &chunk[1..]),
            Err(TreeError::WrongChunkLength {
                index: 70,
                expected: 904,
                got: 903
            })
        );
        let mut corrupt = chunk.to_vec();
        corrupt[900] ^= 1;
        assert_eq!(
            tree.path(70, &corrupt),
            Err(TreeError::ChunkMismatch { chunk: 1 })
        );
        // The chunk of another subtree has the right length but the wrong contents.
        assert_eq!(
            tree.path(3, &d[904..4096 + 904]),
            Err(TreeError::ChunkMismatch { chunk: 0 })
        );
        let text = TreeError::WrongChunkLength {
            index: 70,
            expected: 904,
            got: 903,
        }
        .to_string();
        assert!(
            text.contains("903 bytes") && text.contains("904 bytes"),
            "{text}"
        );
    }

    #[test]
    fn from_parts_round_trips_and_rejects_corruption() {
        let d = data(9 * 4096 + 1);
        let tree = build(&d);
        assert_eq!(tree.depth(), 10);
        let levels = tree.kept_levels().to_vec();
        assert_eq!(levels.len(), 5);
        let loaded = Tree::from_parts(tree.shard_bytes(), levels.clone()).unwrap();
        assert_eq!(loaded, tree);
        assert_eq!(loaded.root(), root_of(&d));

        for level in 0..levels.len() {
            for position in 0..levels[level].len() {
                let mut corrupt = levels.clone();
                corrupt[level][position][17] ^= 0x40;
                let error = Tree::from_parts(tree.shard_bytes(), corrupt).unwrap_err();
                assert!(
                    matches!(error, TreeError::InconsistentLevel { .. }),
                    "level {level} position {position}: {error:?}"
                );
            }
        }
        let mut short = levels.clone();
        short[0].pop();
        assert_eq!(
            Tree::from_parts(tree.shard_bytes(), short),
            Err(TreeError::WrongLevelWidth {
                level: 6,
                expected: 10,
                got: 9
            })
        );
        assert_eq!(
            Tree::from_parts(tree.shard_bytes(), levels[1..].to_vec()),
            Err(TreeError::WrongLevelCount {
                expected: 5,
                got: 4
            })
        );
        assert_eq!(
            Tree::from_parts(tree.shard_bytes() + 4096, levels.clone()),
            Err(TreeError::WrongLevelWidth {
                level: 6,
                expected: 11,
                got: 10
            })
        );
    }

    #[test]
    fn shallow_tree_with_wrong_root_cannot_prove() {
        let d = data(300);
        let tree = build(&d);
        let mut levels = tree.kept_levels().to_vec();
        levels[0][0][0] ^= 1;
        let loaded = Tree::from_parts(300, levels).unwrap();
        assert_ne!(loaded.root(), tree.root());
        assert_eq!(
            loaded.path(2, &d),
            Err(TreeError::ChunkMismatch { chunk: 0 })
        );
    }

    #[test]
    fn kept_levels_pad_with_empty_subtrees() {
        // 2 full chunks + 1 byte: levels 6..=8 are [c0, c1, c2], [n(c0,c1), n(c2,e6)],
        // [root].
        let d = data(2 * 4096 + 1);
        let tree = build(&d);
        let chunk_root = |bytes: &[u8]| {
            let mut builder = TreeBuilder::new();
            builder.update(bytes);
            let mut node = builder.finish().root();
            let mut level = crate::depth(bytes.len() as u64);
            while level < KEPT_LEVEL {
                node = node_hash(&node, &empty_subtree(level));
                level += 1;
            }
            node
        };
        let c = [
            chunk_root(&d[..4096]),
            chunk_root(&d[4096..8192]),
            chunk_root(&d[8192..]),
        ];
        let upper = [node(&c[0], &c[1]), node(&c[2], &empty_subtree(6))];
        assert_eq!(
            tree.kept_levels(),
            &[c.to_vec(), upper.to_vec(), vec![node(&upper[0], &upper[1])]]
        );
        assert_eq!(tree.root(), node(&upper[0], &upper[1]));
        let (_, path) = tree.path(128, &d[8192..]).unwrap();
        assert_eq!(path.len(), 8);
        assert_eq!(path[6], empty_subtree(6));
        assert_eq!(path[7], upper[0]);
    }

    #[test]
    fn path_of_agrees_with_tree_path() {
        let d = data(4096 * 2 + 640);
        let tree = build(&d);
        for index in [0, 1, 63, 64, 127, 128, 137] {
            let range = tree.chunk_range(index);
            let chunk = &d[range.start as usize..range.end as usize];
            let proof = tree.path(index, chunk).unwrap();
            assert_eq!(path_of(&d, index), proof);
            assert_eq!(
                verify_for_shard(&tree.root(), d.len() as u64, &proof.0, index, &proof.1),
                Ok(())
            );
            assert!(proof.1.len() as u32 <= MAX_DEPTH);
        }
    }
}
