//! Path verification, as the program runs it for every submitted sample. Never allocates.

use core::fmt;

use crate::{depth, leaf_hash, node_hash, segment_count, Hash, MAX_DEPTH, SEGMENT_BYTES};

/// Why a segment and its path are not a valid proof for a shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProofError {
    /// The path does not have one sibling per tree level of the shard.
    WrongPathLength {
        /// Tree depth of the shard, the only valid path length.
        expected: usize,
        /// Length of the path that was given.
        got: usize,
    },
    /// The index is not that of a data segment of the shard (it is padding or beyond).
    IndexOutOfRange {
        /// The index that was given.
        index: u64,
        /// Number of data segments in the shard; valid indices are below it.
        segments: u64,
    },
    /// Hashing the segment up the path does not give the shard's root: the segment,
    /// the index or a sibling hash is wrong.
    RootMismatch,
}

impl fmt::Display for ProofError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::WrongPathLength { expected, got } => write!(
                f,
                "Merkle path has {got} hashes but the shard's tree is {expected} levels deep; \
                 a path needs exactly one sibling per level"
            ),
            Self::IndexOutOfRange { index, segments } => write!(
                f,
                "segment index {index} is out of range: the shard has {segments} data segments \
                 (valid indices are 0..{segments})"
            ),
            Self::RootMismatch => f.write_str(
                "segment and Merkle path do not hash to the shard root; \
                 the stored data, the index or the path is wrong",
            ),
        }
    }
}

impl core::error::Error for ProofError {}

/// Checks that `segment` is leaf `index` of the tree with root `root`, given its path
/// (siblings from the leaf level up, as [`crate::Tree::path`] returns them).
///
/// Bit `k` of `index` is 0 when the node at level `k` is a left child. Returns `false`
/// for a path longer than [`MAX_DEPTH`] or an index that does not fit in `path.len()`
/// bits. The path length itself is not tied to a shard size here; use
/// [`verify_for_shard`] for that.
pub fn verify(root: &Hash, segment: &[u8; SEGMENT_BYTES], index: u64, path: &[Hash]) -> bool {
    if path.len() > MAX_DEPTH as usize || index >> path.len() != 0 {
        return false;
    }
    let mut node = leaf_hash(segment);
    for (level, sibling) in path.iter().enumerate() {
        node = if (index >> level) & 1 == 0 {
            node_hash(&node, sibling)
        } else {
            node_hash(sibling, &node)
        };
    }
    node == *root
}

/// Checks a proof against a shard of `shard_bytes` bytes with root `root`: the path has
/// exactly [`depth`]`(shard_bytes)` siblings, `index` is below
/// [`segment_count`]`(shard_bytes)` (a proof must reveal a data segment, never padding),
/// and [`verify`] holds.
///
/// A shard larger than [`crate::MAX_SHARD_BYTES`] has no valid proof: its paths are
/// longer than [`MAX_DEPTH`], so every proof is rejected.
pub fn verify_for_shard(
    root: &Hash,
    shard_bytes: u64,
    segment: &[u8; SEGMENT_BYTES],
    index: u64,
    path: &[Hash],
) -> Result<(), ProofError> {
    let expected = depth(shard_bytes) as usize;
    if path.len() != expected {
        return Err(ProofError::WrongPathLength {
            expected,
            got: path.len(),
        });
    }
    let segments = segment_count(shard_bytes);
    if index >= segments {
        return Err(ProofError::IndexOutOfRange { index, segments });
    }
    if verify(root, segment, index, path) {
        Ok(())
    } else {
        Err(ProofError::RootMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{empty_subtree, MAX_SHARD_BYTES};
    use alloc::string::ToString;
    use alloc::vec::Vec;

    /// Path of any leaf in an all-zero shard of `1 << depth` segments.
    fn zero_path(depth: u32) -> Vec<Hash> {
        (0..depth).map(empty_subtree).collect()
    }

    #[test]
    fn depth_26_zero_shard_path_verifies() {
        let root = empty_subtree(MAX_DEPTH);
        let path = zero_path(MAX_DEPTH);
        assert_eq!(path.len(), 26);
        for index in [0, 1, 12_345_678, (1 << 26) - 1] {
            assert_eq!(
                verify_for_shard(&root, MAX_SHARD_BYTES, &[0; 64], index, &path),
                Ok(())
            );
        }
        assert_eq!(
            verify_for_shard(&root, MAX_SHARD_BYTES, &[0; 64], 1 << 26, &path),
            Err(ProofError::IndexOutOfRange {
                index: 1 << 26,
                segments: 1 << 26
            })
        );
        assert_eq!(
            verify_for_shard(&root, MAX_SHARD_BYTES, &[1; 64], 5, &path),
            Err(ProofError::RootMismatch)
        );
    }

    #[test]
    fn oversized_paths_and_indices_are_rejected() {
        let root = empty_subtree(MAX_DEPTH + 1);
        let path = zero_path(MAX_DEPTH + 1);
        assert!(!verify(&root, &[0; 64], 0, &path));
        assert_eq!(
            verify_for_shard(&root, MAX_SHARD_BYTES * 2, &[0; 64], 0, &path),
            Err(ProofError::RootMismatch)
        );
        // Index 4 does not fit in a 2-level path, although it folds to the same root.
        let root = empty_subtree(2);
        let path = zero_path(2);
        assert!(verify(&root, &[0; 64], 3, &path));
        assert!(!verify(&root, &[0; 64], 4, &path));
    }

    #[test]
    fn index_on_padding_is_rejected_for_shard() {
        // 3 segments, padded to 4 leaves: the fourth leaf is padding.
        let segments: Vec<[u8; 64]> = (0..3u8).map(|i| [i + 1; 64]).collect();
        let leaves: Vec<Hash> = segments.iter().map(leaf_hash).collect();
        let pad = empty_subtree(0);
        let left = node_hash(&leaves[0], &leaves[1]);
        let right = node_hash(&leaves[2], &pad);
        let root = node_hash(&left, &right);
        let path = [leaves[2], left];
        assert!(verify(&root, &[0; 64], 3, &path));
        assert_eq!(
            verify_for_shard(&root, 3 * 64, &[0; 64], 3, &path),
            Err(ProofError::IndexOutOfRange {
                index: 3,
                segments: 3
            })
        );
        assert_eq!(
            verify_for_shard(&root, 3 * 64, &segments[2], 2, &[pad, left]),
            Ok(())
        );
        assert_eq!(
            verify_for_shard(&root, 3 * 64, &segments[2], 2, &[pad]),
            Err(ProofError::WrongPathLength {
                expected: 2,
                got: 1
            })
        );
    }

    #[test]
    fn every_single_bit_flip_is_rejected() {
        // Depth-3 tree over 8 distinct segments; prove leaf 5.
        let segments: Vec<[u8; 64]> = (0..8u8).map(|i| [i.wrapping_mul(37) ^ 0x5c; 64]).collect();
        let mut level: Vec<Hash> = segments.iter().map(leaf_hash).collect();
        let mut path = Vec::new();
        let index = 5u64;
        let mut position = index as usize;
        while level.len() > 1 {
            path.push(level[position ^ 1]);
            level = level
                .chunks(2)
                .map(|pair| node_hash(&pair[0], &pair[1]))
                .collect();
            position /= 2;
        }
        let root = level[0];
        let segment = segments[index as usize];
        assert_eq!(
            verify_for_shard(&root, 8 * 64, &segment, index, &path),
            Ok(())
        );
        for bit in 0..512 {
            let mut bad = segment;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(!verify(&root, &bad, index, &path), "segment bit {bit}");
        }
        for element in 0..path.len() {
            for bit in 0..256 {
                let mut bad = path.clone();
                bad[element][bit / 8] ^= 1 << (bit % 8);
                assert!(
                    !verify(&root, &segment, index, &bad),
                    "path {element} bit {bit}"
                );
            }
        }
        for bit in 0..256 {
            let mut bad = root;
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(!verify(&bad, &segment, index, &path), "root bit {bit}");
        }
        for other in (0..8).filter(|&other| other != index) {
            assert!(!verify(&root, &segment, other, &path), "index {other}");
        }
    }

    #[test]
    fn errors_name_the_problem() {
        let text = ProofError::WrongPathLength {
            expected: 26,
            got: 25,
        }
        .to_string();
        assert!(
            text.contains("25 hashes") && text.contains("26 levels"),
            "{text}"
        );
        let text = ProofError::IndexOutOfRange {
            index: 9,
            segments: 4,
        }
        .to_string();
        assert!(
            text.contains("index 9") && text.contains("4 data segments"),
            "{text}"
        );
        assert!(ProofError::RootMismatch.to_string().contains("root"));
    }
}
