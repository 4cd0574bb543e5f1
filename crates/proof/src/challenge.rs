//! Derivation of the epoch seed and of the samples a provider must prove.
//!
//! Proving v2 (see `docs/DESIGN.md`, "Seeds no caller can choose" and "Samples"):
//! - the seed of epoch `e` is [`epoch_seed`]`(slot_hash(S_e), e)`;
//! - draw `j` of provider `P` is [`draw`]`(seed, P, j)`: one 64-bit word picks the
//!   entry of `P`'s deal set, the other the segment inside that deal.

use solana_sha256_hasher::hashv;

use crate::Hash;

/// Domain tag of [`epoch_seed`].
pub const EPOCH_SEED_DOMAIN: &[u8] = b"cairn/epoch-seed/v1";

/// Domain tag of [`draw`].
pub const SAMPLE_DOMAIN: &[u8] = b"cairn/sample/v1";

/// The challenge seed of `epoch`: `sha256("cairn/epoch-seed/v1" || slot_hash || epoch_le)`,
/// where `slot_hash` is the SlotHashes entry of the epoch's seed slot. Hashing the epoch
/// makes two epochs' seeds differ even if they were given the same slot hash.
pub fn epoch_seed(slot_hash: &Hash, epoch: u64) -> Hash {
    hashv(&[EPOCH_SEED_DOMAIN, slot_hash, &epoch.to_le_bytes()]).to_bytes()
}

/// One draw of a provider's proof session: which deal-set entry and which segment of
/// that deal's shard it challenges.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Draw {
    word_entry: u64,
    word_segment: u64,
}

impl Draw {
    /// Index of the deal-set entry, for a set of `entries` entries (0 if empty).
    pub fn entry(&self, entries: u64) -> u64 {
        self.word_entry % entries.max(1)
    }

    /// Index of the data segment, for a shard of `segments` segments (0 if none).
    pub fn segment(&self, segments: u64) -> u64 {
        self.word_segment % segments.max(1)
    }
}

/// Draw `draw` of `provider`'s session under `seed`:
/// `h = sha256("cairn/sample/v1" || seed || provider || draw_le)`, the entry word is
/// `u64_le(h[0..8])` and the segment word `u64_le(h[8..16])`. Hashing the provider
/// gives each provider its own challenges from one seed.
pub fn draw(seed: &Hash, provider: &[u8; 32], draw: u32) -> Draw {
    let digest = hashv(&[SAMPLE_DOMAIN, seed, provider, &draw.to_le_bytes()]).to_bytes();
    let mut entry = [0u8; 8];
    entry.copy_from_slice(&digest[..8]);
    let mut segment = [0u8; 8];
    segment.copy_from_slice(&digest[8..16]);
    Draw {
        word_entry: u64::from_le_bytes(entry),
        word_segment: u64::from_le_bytes(segment),
    }
}

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
    fn epoch_seed_matches_the_formula_and_hashes_the_epoch() {
        let slot_hash = [4u8; 32];
        let mut input = EPOCH_SEED_DOMAIN.to_vec();
        input.extend_from_slice(&slot_hash);
        input.extend_from_slice(&9u64.to_le_bytes());
        assert_eq!(epoch_seed(&slot_hash, 9), hashv(&[&input]).to_bytes());
        assert_ne!(epoch_seed(&slot_hash, 9), epoch_seed(&slot_hash, 10));
    }

    #[test]
    fn draw_matches_the_formula_and_differs_by_provider_and_draw() {
        let seed = [1u8; 32];
        let provider = [2u8; 32];
        let mut input = SAMPLE_DOMAIN.to_vec();
        input.extend_from_slice(&seed);
        input.extend_from_slice(&provider);
        input.extend_from_slice(&5u32.to_le_bytes());
        let digest = hashv(&[&input]).to_bytes();
        let entry = u64::from_le_bytes(digest[..8].try_into().unwrap());
        let segment = u64::from_le_bytes(digest[8..16].try_into().unwrap());
        let d = draw(&seed, &provider, 5);
        assert_eq!(d.entry(1000), entry % 1000);
        assert_eq!(d.segment(77), segment % 77);
        assert_eq!(d.entry(0), 0);
        assert_eq!(d.segment(0), 0);
        let spread = |f: &dyn Fn(u32) -> u64| (0..1000).map(f).collect::<BTreeSet<u64>>().len();
        assert!(spread(&|j| draw(&seed, &provider, j).entry(1000)) > 500);
        assert!(
            spread(&|i| {
                let mut p = [0u8; 32];
                p[..4].copy_from_slice(&i.to_le_bytes());
                draw(&seed, &p, 0).entry(1000)
            }) > 500
        );
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
