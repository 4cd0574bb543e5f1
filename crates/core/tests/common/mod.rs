//! Shared strategies and helpers for the integration tests.
#![allow(dead_code)]

use cairn_core::erasure::{encode_bytes, Encoded, ErasureParams};
use cairn_core::group::{GroupKind, GroupManifest};
use cairn_core::manifest::{pack_bytes, Manifest};
use proptest::prelude::*;
use std::collections::BTreeMap;

/// A dataset: relative path → content.
pub type Dataset = BTreeMap<String, Vec<u8>>;

/// Path components with spaces, unicode and dots, never `.`/`..` or empty.
fn component(prefix: &'static str) -> impl Strategy<Value = String> {
    "[a-z0-9 ._ñé日本🚀-]{0,12}".prop_map(move |s| format!("{prefix}{s}"))
}

/// A relative path of 1 to 3 components. Folders start with `d`, files with `f`,
/// so a file never shares a name with a folder.
fn path() -> impl Strategy<Value = String> {
    (prop::collection::vec(component("d"), 0..3), component("f")).prop_map(|(dirs, file)| {
        let mut p = dirs.join("/");
        if !p.is_empty() {
            p.push('/');
        }
        p.push_str(&file);
        p
    })
}

fn content(max: usize) -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..=max)
}

/// Datasets of the shapes that break layouts: none, one empty file, many tiny
/// files, one file larger than several stripes, and mixed sizes that are
/// multiples of nothing.
pub fn dataset() -> impl Strategy<Value = Dataset> {
    prop_oneof![
        Just(Dataset::new()),
        Just(Dataset::from([("empty".to_string(), Vec::new())])),
        prop::collection::btree_map(path(), content(3), 1..40),
        (path(), 700usize..3000).prop_flat_map(|(p, n)| {
            prop::collection::vec(any::<u8>(), n).prop_map(move |c| Dataset::from([(p.clone(), c)]))
        }),
        prop::collection::btree_map(path(), content(700), 1..6),
    ]
}

/// Small erasure parameters: k + m <= 7, units of 64 to 256 bytes.
pub fn small_params() -> impl Strategy<Value = ErasureParams> {
    (1u16..=4, 1u16..=3, 1u32..=4).prop_map(|(k, m, u)| ErasureParams::new(k, m, u * 64).unwrap())
}

/// Packs and encodes a dataset in memory as one data group: its manifest, the
/// group, the packed stream and the coded shards.
pub fn build(
    params: ErasureParams,
    data: &Dataset,
) -> (Manifest, GroupManifest, Vec<u8>, Encoded<Vec<u8>>) {
    let (files, packed) = pack_bytes(data.iter().map(|(p, c)| (p.clone(), c.clone()))).unwrap();
    let encoded = encode_bytes(params, &packed).unwrap();
    let group = GroupManifest::new(
        GroupKind::Data,
        [0; 32],
        0,
        0,
        encoded.layout,
        encoded.checksums.clone(),
    )
    .unwrap();
    let (k, m, _) = params.raw();
    let groups = if packed.is_empty() {
        vec![]
    } else {
        vec![group.id()]
    };
    let manifest = Manifest::new(k, m, packed.len().max(1) as u64, files, vec![], groups).unwrap();
    (manifest, group, packed, encoded)
}

/// Every `k`-subset of `0..n`, as sorted index lists.
pub fn subsets(n: usize, k: usize) -> Vec<Vec<usize>> {
    fn go(start: usize, n: usize, k: usize, cur: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
        if cur.len() == k {
            out.push(cur.clone());
            return;
        }
        for i in start..n {
            cur.push(i);
            go(i + 1, n, k, cur, out);
            cur.pop();
        }
    }
    let mut out = Vec::new();
    go(0, n, k, &mut Vec::new(), &mut out);
    out
}

/// Sources for a decoder: shard `i` present iff `i` is in `keep`.
pub fn sources<'a>(shards: &'a [Vec<u8>], keep: &[usize]) -> Vec<Option<&'a [u8]>> {
    (0..shards.len())
        .map(|i| keep.contains(&i).then(|| shards[i].as_slice()))
        .collect()
}
