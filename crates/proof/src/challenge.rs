//! Derivation of the segment indices a provider must prove.

use solana_sha256_hasher::hashv;

use crate::Hash;

/// Index of the data segment that sample `sample` of deal `deal` must reveal for the
/// epoch whose challenge seed is `seed`:
/// `u64_le(sha256(seed || deal || sample_le)[0..8]) % segments`.
///
/// `segments` is the number of data segments of the shard
/// ([`crate::segment_count`]), not the padded leaf count, so the index never lands on
/// padding. `segments == 0` is treated as 1 (index 0) instead of panicking.
pub fn challenge_index(seed: &Hash, deal: &[u8; 32], sample: u32, segments: u64) -> u64 {
    let digest = hashv(&[seed, deal, &sample.to_le_bytes()]).to_bytes();
    let mut word = [0u8; 8];
    word.copy_from_slice(&digest[..8]);
    u64::from_le_bytes(word) % segments.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::collections::BTreeSet;

    #[test]
    fn matches_the_formula() {
        let seed = [1u8; 32];
        let deal = [2u8; 32];
        let mut input = [0u8; 68];
        input[..32].copy_from_slice(&seed);
        input[32..64].copy_from_slice(&deal);
        input[64..].copy_from_slice(&7u32.to_le_bytes());
        let digest = hashv(&[&input]).to_bytes();
        let word = u64::from_le_bytes(digest[..8].try_into().unwrap());
        assert_eq!(challenge_index(&seed, &deal, 7, u64::MAX), word % u64::MAX);
        assert_eq!(challenge_index(&seed, &deal, 7, 1000), word % 1000);
    }

    #[test]
    fn deterministic_and_in_range() {
        let seed = [9u8; 32];
        let deal = [3u8; 32];
        for segments in [1, 2, 3, 1000, 1 << 26] {
            for sample in 0..100 {
                let index = challenge_index(&seed, &deal, sample, segments);
                assert!(index < segments);
                assert_eq!(index, challenge_index(&seed, &deal, sample, segments));
            }
        }
    }

    #[test]
    fn zero_segments_does_not_panic() {
        assert_eq!(challenge_index(&[5; 32], &[6; 32], 0, 0), 0);
    }

    #[test]
    fn indices_spread_over_samples_deals_and_seeds() {
        let segments = 1000;
        let distinct = |f: &dyn Fn(u32) -> u64| (0..1000).map(f).collect::<BTreeSet<u64>>().len();
        let by_sample = distinct(&|i| challenge_index(&[1; 32], &[2; 32], i, segments));
        let by_deal = distinct(&|i| {
            let mut deal = [0u8; 32];
            deal[..4].copy_from_slice(&i.to_le_bytes());
            challenge_index(&[1; 32], &deal, 0, segments)
        });
        let by_seed = distinct(&|i| {
            let mut seed = [0u8; 32];
            seed[28..].copy_from_slice(&i.to_be_bytes());
            challenge_index(&seed, &[2; 32], 0, segments)
        });
        // 1000 uniform draws over 1000 values give about 632 distinct ones.
        for (what, count) in [("sample", by_sample), ("deal", by_deal), ("seed", by_seed)] {
            assert!(
                count > 500,
                "varying the {what} hit only {count} distinct indices"
            );
        }
    }
}
