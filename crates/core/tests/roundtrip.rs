//! Random datasets round-trip byte-exact through manifest + encode + decode.

mod common;

use cairn_core::erasure::ErasureParams;
use cairn_core::hash::blake3;
use cairn_core::manifest::Manifest;
use common::{build, dataset, small_params, sources, subsets};
use proptest::prelude::*;

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Small codes: decode the whole dataset from every one of the C(k+m, k)
    /// subsets of exactly k shards.
    #[test]
    fn every_k_subset_decodes_the_exact_dataset(params in small_params(), data in dataset()) {
        let (manifest, group, packed, encoded) = build(params, &data);

        // The manifest survives its canonical encoding, and so does the id.
        let bytes = manifest.encode();
        let back = Manifest::decode(&bytes).unwrap();
        prop_assert_eq!(&back, &manifest);
        prop_assert_eq!(back.encode(), bytes);
        prop_assert_eq!(back.files().len(), data.len());

        for shard in &encoded.sinks {
            prop_assert_eq!(shard.len() as u64, group.shard_len());
        }
        for keep in subsets(params.n(), params.k()) {
            let mut dec = group.decoder(sources(&encoded.sinks, &keep)).unwrap();
            let mut out = Vec::new();
            dec.read_all(&mut out).unwrap();
            prop_assert!(out == packed, "subset {:?} decoded wrong bytes", keep);
            prop_assert!(dec.report().corrupt_units.is_empty());
        }
    }

    /// Every file, read alone through its range from a k-subset, equals the
    /// original file and its recorded BLAKE3.
    #[test]
    fn single_files_read_by_range(
        params in small_params(),
        data in dataset(),
        seed in any::<u64>(),
    ) {
        let (manifest, group, _, encoded) = build(params, &data);
        let n = params.n();
        // Drop m shards, chosen from the seed.
        let mut keep: Vec<usize> = (0..n).collect();
        let mut s = seed;
        for _ in 0..params.m() {
            keep.remove((s % keep.len() as u64) as usize);
            s = s.rotate_left(17) ^ 0x9E37_79B9_7F4A_7C15;
        }
        let mut dec = group.decoder(sources(&encoded.sinks, &keep)).unwrap();
        for (path, content) in &data {
            let entry = manifest.file(path).expect("every file is in the manifest");
            let mut out = Vec::new();
            dec.read_range(entry.range(), &mut out).unwrap();
            prop_assert_eq!(&out, content, "file {}", path);
            prop_assert_eq!(entry.blake3, blake3(content));
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(32))]

    /// (10, 4): decode from random 10-of-14 subsets.
    #[test]
    fn ten_four_random_subsets(
        data in dataset(),
        unit in 1u32..=3,
        picks in prop::collection::vec(prop::sample::subsequence((0..14).collect::<Vec<usize>>(), 10), 6),
    ) {
        let params = ErasureParams::new(10, 4, unit * 64).unwrap();
        let (_, group, packed, encoded) = build(params, &data);
        for keep in picks {
            let mut dec = group.decoder(sources(&encoded.sinks, &keep)).unwrap();
            let mut out = Vec::new();
            dec.read_all(&mut out).unwrap();
            prop_assert!(out == packed, "subset {:?} decoded wrong bytes", keep);
        }
    }

    /// Any lost shard is rebuilt bit for bit from the others.
    #[test]
    fn lost_shards_are_rebuilt_exactly(params in small_params(), data in dataset(), lost in 0usize..7) {
        let (_, group, _, encoded) = build(params, &data);
        let lost = lost % params.n();
        let keep: Vec<usize> = (0..params.n()).filter(|&i| i != lost).collect();
        let mut dec = group.decoder(sources(&encoded.sinks, &keep)).unwrap();
        let mut rebuilt = Vec::new();
        dec.rebuild_shard(lost, &mut rebuilt).unwrap();
        prop_assert_eq!(&rebuilt, &encoded.sinks[lost]);
    }
}

#[test]
fn fewer_than_k_shards_is_an_error_not_wrong_bytes() {
    let params = ErasureParams::new(3, 2, 64).unwrap();
    let data = common::Dataset::from([("a".to_string(), vec![5u8; 1000])]);
    let (_, group, _, encoded) = build(params, &data);
    for keep in subsets(5, 2) {
        let mut dec = group.decoder(sources(&encoded.sinks, &keep)).unwrap();
        let mut out = Vec::new();
        let err = dec.read_all(&mut out).unwrap_err();
        assert!(err.to_string().contains("stripe 0"), "{err}");
        assert!(out.is_empty());
    }
}
