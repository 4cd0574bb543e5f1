//! Corrupted units are detected by their checksums and routed around.

mod common;

use cairn_core::erasure::{RecoverError, UnitLocation};
use common::{build, dataset, small_params, sources};
use proptest::prelude::*;
use std::collections::BTreeSet;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// A flipped byte in any unit of any shard is detected: a decoder that must
    /// use that unit (k sources, one of them corrupted) reports it and refuses to
    /// return bytes for that stripe, never wrong bytes; with every shard available
    /// it decodes the exact dataset.
    #[test]
    fn any_flipped_byte_is_detected(
        params in small_params(),
        data in dataset(),
        shard in 0usize..7,
        stripe_pick in any::<u64>(),
        byte_pick in any::<usize>(),
        others_pick in any::<u64>(),
    ) {
        let (_, manifest, packed, encoded) = build(params, &data);
        let (n, k, unit) = (params.n(), params.k(), params.stripe_unit());
        let shard = shard % n;
        let stripe = stripe_pick % manifest.layout().stripe_count();
        let mut shards = encoded.sinks.clone();
        shards[shard][stripe as usize * unit + byte_pick % unit] ^= 1 << (byte_pick % 8);
        prop_assert!(!manifest.checksums().verify(shard, stripe, &shards[shard][stripe as usize * unit..][..unit]));

        // Exactly k sources including the corrupted one.
        let mut keep = vec![shard];
        let mut rest: Vec<usize> = (0..n).filter(|&i| i != shard).collect();
        let mut s = others_pick;
        while keep.len() < k {
            keep.push(rest.remove((s % rest.len() as u64) as usize));
            s = s.rotate_left(13).wrapping_add(0x9E37_79B9);
        }
        // Rebuilding a shard outside the subset needs every unit of the subset:
        // the corrupted unit is found and named, and nothing wrong is written.
        let target = rest[0];
        let mut dec = manifest.decoder(sources(&shards, &keep)).unwrap();
        let mut rebuilt = Vec::new();
        match dec.rebuild_shard(target, &mut rebuilt) {
            Err(RecoverError::NotEnoughShards { stripe: s, .. }) => prop_assert_eq!(s, stripe),
            other => prop_assert!(false, "expected NotEnoughShards at stripe {}, got {:?}", stripe, other),
        }
        prop_assert_eq!(&dec.report().corrupt_units, &vec![UnitLocation { shard, stripe }]);
        prop_assert_eq!(&rebuilt[..], &encoded.sinks[target][..stripe as usize * unit]);

        // Reading the dataset from the same k shards gives the exact bytes or
        // stops at the bad stripe (when it needs the unit), never wrong bytes.
        let mut dec = manifest.decoder(sources(&shards, &keep)).unwrap();
        let mut out = Vec::new();
        match dec.read_all(&mut out) {
            Ok(()) => prop_assert!(out == packed),
            Err(RecoverError::NotEnoughShards { stripe: s, .. }) => {
                prop_assert_eq!(s, stripe);
                let stripe_bytes = params.stripe_bytes() as usize;
                prop_assert_eq!(&out[..], &packed[..stripe as usize * stripe_bytes]);
            }
            Err(other) => prop_assert!(false, "unexpected error {}", other),
        }

        // All shards available: exact bytes.
        let all: Vec<usize> = (0..n).collect();
        let mut dec = manifest.decoder(sources(&shards, &all)).unwrap();
        let mut out = Vec::new();
        dec.read_all(&mut out).unwrap();
        prop_assert!(out == packed);
    }

    /// Up to m shards corrupted in many units: the decoded dataset is exact, every
    /// reported unit was really corrupted, and every corrupted data unit is
    /// reported (data units holding dataset bytes are always read).
    #[test]
    fn up_to_m_bad_shards_still_decode_exactly(
        params in small_params(),
        data in dataset(),
        bad in prop::collection::btree_set(0usize..7, 1..=3),
        flips in prop::collection::vec((any::<u64>(), any::<usize>()), 1..12),
    ) {
        let (_, manifest, packed, encoded) = build(params, &data);
        let (n, m, unit) = (params.n(), params.m(), params.stripe_unit());
        let bad: Vec<usize> = bad.into_iter().map(|b| b % n).collect::<BTreeSet<_>>().into_iter().take(m).collect();
        let stripes = manifest.layout().stripe_count();
        let mut shards = encoded.sinks.clone();
        let mut flipped = BTreeSet::new();
        for (i, (stripe_pick, byte)) in flips.into_iter().enumerate() {
            let shard = bad[i % bad.len()];
            let stripe = stripe_pick % stripes;
            shards[shard][stripe as usize * unit + byte % unit] ^= 0x80;
            flipped.insert(UnitLocation { shard, stripe });
        }
        // Flipping a bit twice restores it; keep only units that really differ.
        flipped.retain(|u| {
            let r = u.stripe as usize * unit..(u.stripe as usize + 1) * unit;
            shards[u.shard][r.clone()] != encoded.sinks[u.shard][r]
        });

        let all: Vec<usize> = (0..n).collect();
        let mut dec = manifest.decoder(sources(&shards, &all)).unwrap();
        let mut out = Vec::new();
        dec.read_all(&mut out).unwrap();
        prop_assert!(out == packed, "decoded bytes differ with bad shards {:?}", bad);

        let reported: BTreeSet<UnitLocation> = dec.report().corrupt_units.iter().copied().collect();
        prop_assert!(reported.is_subset(&flipped), "false positives: {:?}", reported.difference(&flipped).collect::<Vec<_>>());
        // Data units that hold dataset bytes (not only padding) are always read.
        let stripe_bytes = params.stripe_bytes() as usize;
        let data_flips: BTreeSet<UnitLocation> = flipped
            .iter()
            .copied()
            .filter(|u| u.shard < params.k() && u.stripe as usize * stripe_bytes + u.shard * unit < packed.len())
            .collect();
        prop_assert!(data_flips.is_subset(&reported), "missed: {:?}", data_flips.difference(&reported).collect::<Vec<_>>());
    }
}
