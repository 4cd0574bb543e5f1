//! Property tests: the streaming tree against a naive reference, paths against
//! verification, and tampering against rejection.

use cairn_proof::{
    path_of, segment_count, verify, verify_for_shard, Hash, ProofError, Tree, TreeBuilder,
    TreeError, MAX_DEPTH,
};
use proptest::prelude::*;
use solana_sha256_hasher::hashv;

/// Naive reference: every level of the padded tree, written from the format alone.
/// `levels[0]` are the leaves (padded to a power of two), the last level is `[root]`.
fn reference_levels(bytes: &[u8]) -> Vec<Vec<Hash>> {
    let mut leaves: Vec<Hash> = if bytes.is_empty() {
        vec![hashv(&[&[0u8], &[0u8; 64]]).to_bytes()]
    } else {
        bytes
            .chunks(64)
            .map(|piece| {
                let mut segment = [0u8; 64];
                segment[..piece.len()].copy_from_slice(piece);
                hashv(&[&[0u8], &segment]).to_bytes()
            })
            .collect()
    };
    let zero_leaf = hashv(&[&[0u8], &[0u8; 64]]).to_bytes();
    leaves.resize(leaves.len().next_power_of_two(), zero_leaf);
    let mut levels = vec![leaves];
    while levels.last().unwrap().len() > 1 {
        let next = levels
            .last()
            .unwrap()
            .chunks(2)
            .map(|pair| hashv(&[&[1u8], &pair[0], &pair[1]]).to_bytes())
            .collect();
        levels.push(next);
    }
    levels
}

/// Recursive reference root over a power-of-two slice of leaves.
fn reference_root(leaves: &[Hash]) -> Hash {
    if leaves.len() == 1 {
        return leaves[0];
    }
    let (left, right) = leaves.split_at(leaves.len() / 2);
    hashv(&[&[1u8], &reference_root(left), &reference_root(right)]).to_bytes()
}

fn reference_path(levels: &[Vec<Hash>], index: u64) -> Vec<Hash> {
    levels[..levels.len() - 1]
        .iter()
        .enumerate()
        .map(|(level, nodes)| nodes[((index >> level) ^ 1) as usize])
        .collect()
}

/// Deterministic pseudo-random bytes (SplitMix64), so proptest need not hold a value
/// tree per byte.
fn bytes_from(seed: u64, len: usize, kind: u8) -> Vec<u8> {
    match kind {
        0 => vec![0; len],
        1 => vec![0x5a; len],
        _ => {
            let mut state = seed;
            let mut out = Vec::with_capacity(len + 8);
            while out.len() < len {
                state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
            }
            out.truncate(len);
            out
        }
    }
}

/// Lengths from 0 to 20 000, and lengths within 130 bytes of a multiple of 4096.
fn length() -> impl Strategy<Value = usize> {
    prop_oneof![
        0usize..20_000,
        (0usize..5, -130i64..130).prop_map(|(k, delta)| (k as i64 * 4096 + delta).max(0) as usize),
    ]
}

/// Data: mostly random, sometimes constant (symmetric trees with repeated subtrees).
fn shard() -> impl Strategy<Value = Vec<u8>> {
    (
        length(),
        any::<u64>(),
        prop_oneof![1 => Just(0u8), 1 => Just(1u8), 6 => Just(2u8)],
    )
        .prop_map(|(len, seed, kind)| bytes_from(seed, len, kind))
}

/// How to split the data into `update` calls: sizes cycled until the data runs out
/// (an empty list means one call with everything, `[1]` means byte by byte).
fn chunking() -> impl Strategy<Value = Vec<usize>> {
    prop_oneof![
        1 => Just(vec![]),
        1 => Just(vec![1]),
        4 => proptest::collection::vec(1usize..6000, 1..6),
        2 => proptest::collection::vec(0usize..130, 1..6),
    ]
}

fn build(bytes: &[u8], sizes: &[usize]) -> Tree {
    let mut builder = TreeBuilder::new();
    if sizes.is_empty() {
        builder.update(bytes);
    } else {
        let mut rest = bytes;
        for &size in sizes.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (head, tail) = rest.split_at(size.min(rest.len()));
            builder.update(head);
            rest = tail;
        }
    }
    builder.finish()
}

fn chunk<'a>(tree: &Tree, bytes: &'a [u8], index: u64) -> &'a [u8] {
    let range = tree.chunk_range(index);
    &bytes[range.start as usize..range.end as usize]
}

fn flip(bytes: &mut [u8], bit: usize) {
    bytes[bit / 8] ^= 1 << (bit % 8);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn root_matches_reference(bytes in shard(), sizes in chunking()) {
        let tree = build(&bytes, &sizes);
        let levels = reference_levels(&bytes);
        prop_assert_eq!(tree.root(), reference_root(&levels[0]));
        prop_assert_eq!(tree.root(), levels.last().unwrap()[0]);
        prop_assert_eq!(tree.depth() as usize, levels.len() - 1);
        prop_assert_eq!(tree.shard_bytes(), bytes.len() as u64);
        prop_assert_eq!(tree.segments(), segment_count(bytes.len() as u64));
        prop_assert_eq!(cairn_proof::root_of(&bytes), tree.root());
    }

    #[test]
    fn every_leaf_path_verifies(bytes in shard(), sizes in chunking(), pick in any::<u64>()) {
        let tree = build(&bytes, &sizes);
        let levels = reference_levels(&bytes);
        let shard_bytes = bytes.len() as u64;
        let root = tree.root();
        let segments = tree.segments();
        for index in 0..segments {
            let (segment, path) = tree.path(index, chunk(&tree, &bytes, index)).unwrap();
            let start = index as usize * 64;
            let data = &bytes[start.min(bytes.len())..(start + 64).min(bytes.len())];
            prop_assert_eq!(&segment[..data.len()], data);
            prop_assert!(segment[data.len()..].iter().all(|&b| b == 0));
            prop_assert_eq!(&path, &reference_path(&levels, index));
            prop_assert_eq!(verify_for_shard(&root, shard_bytes, &segment, index, &path), Ok(()));
            prop_assert!(verify(&root, &segment, index, &path));
        }
        // path_of rebuilds the whole tree per call: check it on a sample of leaves.
        let mut sample = vec![0, segments - 1, pick % segments, segments / 2];
        sample.extend((64..segments).step_by(64).flat_map(|i| [i - 1, i]));
        for index in sample {
            let proof = path_of(&bytes, index);
            prop_assert_eq!(&proof, &tree.path(index, chunk(&tree, &bytes, index)).unwrap());
        }
        // Indices on padding or past the tree are never provable.
        for index in [segments, segments + 1, (1u64 << tree.depth()) - 1, u64::MAX] {
            if index < segments {
                continue;
            }
            prop_assert_eq!(
                tree.path(index, chunk(&tree, &bytes, index)),
                Err(TreeError::IndexOutOfRange { index, segments })
            );
        }
    }

    #[test]
    fn tampering_is_rejected(
        bytes in shard(),
        pick in any::<u64>(),
        bits in proptest::collection::vec(any::<u16>(), 64),
    ) {
        let tree = build(&bytes, &[]);
        let levels = reference_levels(&bytes);
        let shard_bytes = bytes.len() as u64;
        let root = tree.root();
        let segments = tree.segments();
        let index = pick % segments;
        let (segment, path) = tree.path(index, chunk(&tree, &bytes, index)).unwrap();

        // Single-bit flips at random positions (64 per case, exhaustive in the unit
        // tests): in the segment, in each path element, in the root.
        for &bit in &bits {
            let mut bad = segment;
            flip(&mut bad, bit as usize % 512);
            prop_assert_eq!(
                verify_for_shard(&root, shard_bytes, &bad, index, &path),
                Err(ProofError::RootMismatch)
            );
            let mut bad_root = root;
            flip(&mut bad_root, bit as usize % 256);
            prop_assert!(!verify(&bad_root, &segment, index, &path));
        }
        for level in 0..path.len() {
            for &bit in &bits[..16] {
                let mut bad = path.clone();
                flip(&mut bad[level], bit as usize % 256);
                prop_assert_eq!(
                    verify_for_shard(&root, shard_bytes, &segment, index, &bad),
                    Err(ProofError::RootMismatch)
                );
            }
        }
        // Another index: it can only verify if that leaf has the same segment and path
        // (repeated data, e.g. all zeros), which the reference tree tells us.
        for other in 0..segments {
            if other == index {
                continue;
            }
            let same = levels[0][other as usize] == levels[0][index as usize]
                && reference_path(&levels, other) == path;
            let result = verify_for_shard(&root, shard_bytes, &segment, other, &path);
            prop_assert_eq!(result.is_ok(), same, "index {} proven as {}", index, other);
            if !same {
                prop_assert_eq!(result, Err(ProofError::RootMismatch));
            }
        }
        for other in [segments, 1 << tree.depth(), u64::MAX] {
            prop_assert!(verify_for_shard(&root, shard_bytes, &segment, other, &path).is_err());
        }
        // A path one level too short or too long is rejected before hashing.
        let expected = path.len();
        let mut long = path.clone();
        long.push([0; 32]);
        prop_assert_eq!(
            verify_for_shard(&root, shard_bytes, &segment, index, &long),
            Err(ProofError::WrongPathLength { expected, got: expected + 1 })
        );
        if let Some((_, short)) = path.split_last() {
            prop_assert_eq!(
                verify_for_shard(&root, shard_bytes, &segment, index, short),
                Err(ProofError::WrongPathLength { expected, got: expected - 1 })
            );
        }
        prop_assert!(path.len() as u32 <= MAX_DEPTH);
    }

    #[test]
    fn from_parts_round_trips(bytes in shard(), sizes in chunking(), pick in any::<(usize, usize, u8)>()) {
        let tree = build(&bytes, &sizes);
        let levels = tree.kept_levels().to_vec();
        prop_assert_eq!(&levels, &tree.clone().into_kept_levels());
        let loaded = Tree::from_parts(tree.shard_bytes(), levels.clone()).unwrap();
        prop_assert_eq!(&loaded, &tree);
        let index = pick.0 as u64 % tree.segments();
        prop_assert_eq!(
            loaded.path(index, chunk(&tree, &bytes, index)),
            tree.path(index, chunk(&tree, &bytes, index))
        );

        // Corrupt one kept node.
        let mut corrupt = levels.clone();
        let level = pick.0 % corrupt.len();
        let position = pick.1 % corrupt[level].len();
        corrupt[level][position][pick.2 as usize % 32] ^= 1 << (pick.2 % 8);
        if corrupt.len() > 1 {
            let rejected = matches!(
                Tree::from_parts(tree.shard_bytes(), corrupt),
                Err(TreeError::InconsistentLevel { .. })
            );
            prop_assert!(rejected);
        } else {
            // Only the root is kept: nothing to check it against until the data is read.
            let loaded = Tree::from_parts(tree.shard_bytes(), corrupt).unwrap();
            prop_assert_eq!(
                loaded.path(index, chunk(&tree, &bytes, index)),
                Err(TreeError::ChunkMismatch { chunk: 0 })
            );
        }
    }

    #[test]
    fn corrupt_chunk_is_detected(bytes in shard(), pick in any::<(u64, usize)>()) {
        prop_assume!(!bytes.is_empty());
        let tree = build(&bytes, &[]);
        let index = pick.0 % tree.segments();
        let mut data = chunk(&tree, &bytes, index).to_vec();
        let bit = pick.1 % (data.len() * 8);
        flip(&mut data, bit);
        let chunk_index = tree.chunk_range(index).start / 4096;
        prop_assert_eq!(tree.path(index, &data), Err(TreeError::ChunkMismatch { chunk: chunk_index }));
    }
}
