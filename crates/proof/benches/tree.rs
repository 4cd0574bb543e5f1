//! Throughput of building a shard's tree next to plain streaming SHA-256 of the same
//! bytes, and the cost of one path extraction and one depth-26 verification.

use std::hint::black_box;
use std::time::Duration;

use cairn_proof::{empty_subtree, verify, Hash, TreeBuilder, MAX_DEPTH};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use solana_sha256_hasher::Hasher;

const SHARD_BYTES: usize = 64 << 20;
const FEED_BYTES: usize = 1 << 20;

/// Pseudo-random bytes (SplitMix64), deterministic across runs.
fn pseudo_random(len: usize) -> Vec<u8> {
    let mut state = 0x00c0_ffee_u64;
    let mut out = Vec::with_capacity(len);
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

fn tree_build(c: &mut Criterion) {
    let data = pseudo_random(SHARD_BYTES);
    let mut group = c.benchmark_group("tree_build");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Bytes(SHARD_BYTES as u64));
    group.bench_function("merkle_tree_64MiB", |b| {
        b.iter(|| {
            let mut builder = TreeBuilder::new();
            for piece in data.chunks(FEED_BYTES) {
                builder.update(black_box(piece));
            }
            builder.finish().root()
        })
    });
    group.bench_function("sha256_stream_64MiB", |b| {
        b.iter(|| {
            let mut hasher = Hasher::default();
            for piece in data.chunks(FEED_BYTES) {
                hasher.hash(black_box(piece));
            }
            hasher.result()
        })
    });
    group.finish();
}

fn path_and_verify(c: &mut Criterion) {
    let data = pseudo_random(SHARD_BYTES);
    let mut builder = TreeBuilder::new();
    builder.update(&data);
    let tree = builder.finish();
    let index = 123_457;
    let range = tree.chunk_range(index);
    let chunk = &data[range.start as usize..range.end as usize];

    let mut group = c.benchmark_group("proof");
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(2));
    group.bench_function("tree_path_depth20", |b| {
        b.iter(|| tree.path(black_box(index), black_box(chunk)).unwrap())
    });

    // A 4 GiB all-zero shard: root and every path come from the empty subtrees.
    let root = empty_subtree(MAX_DEPTH);
    let path: Vec<Hash> = (0..MAX_DEPTH).map(empty_subtree).collect();
    let segment = [0u8; 64];
    group.bench_function("verify_depth26", |b| {
        b.iter(|| {
            verify(
                black_box(&root),
                black_box(&segment),
                black_box(0x2ab_cdef),
                black_box(&path),
            )
        })
    });
    assert!(verify(&root, &segment, 0x2ab_cdef, &path));
    group.finish();
}

criterion_group!(benches, tree_build, path_and_verify);
criterion_main!(benches);
