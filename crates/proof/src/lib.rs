//! Segment SHA-256 Merkle tree and challenge derivation for Cairn's proof of spacetime.
//!
//! The same code runs inside the `storage-market` program (SBF, where SHA-256 is the
//! `sol_sha256` syscall) and in storage nodes and clients (natively, where it is the
//! `sha2` crate), so every side hashes identically.
//!
//! # Format
//! - A shard is zero-padded to a multiple of [`SEGMENT_BYTES`] (64) bytes; each segment
//!   is a leaf. A 0-byte shard is one all-zero segment ([`segment_count`]).
//! - Leaf hash `sha256(0x00 || segment)` ([`leaf_hash`]), node hash
//!   `sha256(0x01 || left || right)` ([`node_hash`]).
//! - The leaves are padded to a power of two with the leaf hash of an all-zero segment,
//!   so a subtree made only of padding at level `l` is [`empty_subtree`]`(l)`.
//! - A path lists the [`depth`] sibling hashes from the leaf level up to just below the
//!   root; bit `k` of the leaf index says whether the node at level `k` is a left (0)
//!   or right (1) child ([`verify`], [`verify_for_shard`]).
//! - Challenged indices come from [`challenge_index`] and always hit a real data
//!   segment, never padding.
//!
//! # Building and proving
//! [`TreeBuilder`] hashes a shard as it streams in and keeps only the levels from
//! [`KEPT_LEVEL`] (4 KiB subtrees) up. A [`Tree`] turns one 4 KiB chunk read from disk
//! ([`Tree::chunk_range`]) into a path ([`Tree::path`]) with 127 hashes at most.
//!
//! The crate is `#![no_std]` and needs `alloc` only for the tree's kept levels and the
//! returned paths; verification never allocates.

#![no_std]
#![warn(missing_docs)]

extern crate alloc;

mod challenge;
pub mod cost;
mod hash;
mod ids;
mod tree;
mod verify;

pub use challenge::{challenge_index, draw, epoch_seed, Draw, EPOCH_SEED_DOMAIN, SAMPLE_DOMAIN};
pub use hash::{empty_subtree, leaf_hash, node_hash, Hash};
pub use ids::{dataset_id, DATASET_ID_DOMAIN};
pub use tree::{path_of, root_of, Tree, TreeBuilder, TreeError};
pub use verify::{verify, verify_for_shard, ProofError};

/// Bytes in one segment, the unit a leaf hashes and a proof reveals.
pub const SEGMENT_BYTES: usize = 64;

/// Deepest tree a proof may have: a path of 26 siblings plus a 64-byte segment is
/// 896 bytes, which fits in one transaction with its accounts.
pub const MAX_DEPTH: u32 = 26;

/// Largest shard whose tree is at most [`MAX_DEPTH`] deep: 2^26 segments, 4 GiB.
pub const MAX_SHARD_BYTES: u64 = (SEGMENT_BYTES as u64) << MAX_DEPTH;

/// Lowest tree level a [`Tree`] keeps in memory (and a node persists): level 6 nodes
/// are the roots of 64-segment (4 KiB) subtrees. Levels below it are rebuilt from one
/// chunk of shard bytes when a path is needed.
pub const KEPT_LEVEL: u32 = 6;

/// Bytes under one node at [`KEPT_LEVEL`]: the most a [`Tree::path`] call reads (4 KiB).
pub const CHUNK_BYTES: usize = SEGMENT_BYTES << KEPT_LEVEL;

/// Number of 64-byte segments (leaves holding data) in a shard of `shard_bytes` bytes:
/// `ceil(shard_bytes / 64)`, and at least 1 because an empty shard is one zero segment.
pub const fn segment_count(shard_bytes: u64) -> u64 {
    let segments = shard_bytes.div_ceil(SEGMENT_BYTES as u64);
    if segments == 0 {
        1
    } else {
        segments
    }
}

/// Depth of the tree over a shard of `shard_bytes` bytes, which is also the length of
/// every path: `log2(next_power_of_two(segment_count))`. A single segment has depth 0
/// (its leaf hash is the root); a 4 GiB shard has depth [`MAX_DEPTH`].
pub const fn depth(shard_bytes: u64) -> u32 {
    segment_count(shard_bytes)
        .next_power_of_two()
        .trailing_zeros()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segment_count_rounds_up_and_is_never_zero() {
        assert_eq!(segment_count(0), 1);
        assert_eq!(segment_count(1), 1);
        assert_eq!(segment_count(64), 1);
        assert_eq!(segment_count(65), 2);
        assert_eq!(segment_count(128), 2);
        assert_eq!(segment_count(129), 3);
        assert_eq!(segment_count(MAX_SHARD_BYTES), 1 << 26);
        assert_eq!(segment_count(u64::MAX), (u64::MAX >> 6) + 1);
    }

    #[test]
    fn depth_is_log2_of_padded_leaves() {
        assert_eq!(depth(0), 0);
        assert_eq!(depth(64), 0);
        assert_eq!(depth(65), 1);
        assert_eq!(depth(128), 1);
        assert_eq!(depth(129), 2);
        assert_eq!(depth(256), 2);
        assert_eq!(depth(257), 3);
        assert_eq!(depth(CHUNK_BYTES as u64), KEPT_LEVEL);
        assert_eq!(depth(CHUNK_BYTES as u64 + 1), KEPT_LEVEL + 1);
        assert_eq!(depth(MAX_SHARD_BYTES), MAX_DEPTH);
        assert_eq!(depth(MAX_SHARD_BYTES + 1), MAX_DEPTH + 1);
    }

    #[test]
    fn constants_agree() {
        assert_eq!(MAX_SHARD_BYTES, 4 << 30);
        assert_eq!(CHUNK_BYTES, 4096);
    }
}
