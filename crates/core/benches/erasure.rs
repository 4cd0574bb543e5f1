//! Erasure coding throughput next to memcpy and BLAKE3 of the same bytes, at
//! (4,2) and (10,4) with the default 1 MiB stripe unit, all in one run.
//!
//! Run: `cargo bench -p cairn-core --bench erasure`.
//! Throughput is in dataset bytes per second for every line, so lines compare
//! directly:
//! - `memcpy`: copy the dataset into another buffer.
//! - `blake3`: BLAKE3 of the dataset (one thread).
//! - `rs_encode_raw`: `ReedSolomon::encode_sep` over each stripe's whole units
//!   (parity only, no checksums), the library used as documented.
//! - `encode_full`: [`Encoder::push`] (RS + BLAKE3 of all `k + m` units + unit
//!   writes to `io::sink()` shard sinks), default threads (units hashed by a
//!   helper thread too); `encode_full_1thread`: the same on one thread.
//! - `encode_full_read`: the same fed through [`Encoder::read_from`], which adds
//!   a copy into the stripe buffer (how files are fed).
//! - `decode_m_missing`: [`Decoder::read_all`] with the first `m` data shards
//!   missing: fetch (copy) `k` units per stripe, verify their checksums,
//!   reconstruct `m` data units, write the dataset into a buffer (default
//!   threads verify checksums; `_1thread`: one thread).

use cairn_core::erasure::{
    default_threads, encode_bytes, Decoder, Encoder, ErasureParams, DEFAULT_STRIPE_UNIT,
};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use reed_solomon_erasure::galois_8::ReedSolomon;
use std::hint::black_box;
use std::io;
use std::time::Duration;

mod common;
use common::pseudo_random;

fn bench_code(c: &mut Criterion, k: u16, m: u16, stripes: usize) {
    let params = ErasureParams::new(k, m, DEFAULT_STRIPE_UNIT).unwrap();
    let unit = params.stripe_unit();
    let (k, m) = (params.k(), params.m());
    let len = stripes * k * unit;
    let data = pseudo_random(len);

    let mut group = c.benchmark_group(format!("erasure_{k}_{m}"));
    group.sample_size(10);
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    group.throughput(Throughput::Bytes(len as u64));
    let id = |name: &str| BenchmarkId::new(name, format!("{}MiB", len >> 20));

    let mut dst = vec![0u8; len];
    group.bench_function(id("memcpy"), |b| {
        b.iter(|| {
            dst.copy_from_slice(black_box(&data));
            black_box(&dst);
        })
    });

    group.bench_function(id("blake3"), |b| {
        b.iter(|| black_box(blake3::hash(black_box(&data))))
    });

    let rs = ReedSolomon::new(k, m).unwrap();
    let mut parity = vec![vec![0u8; unit]; m];
    group.bench_function(id("rs_encode_raw"), |b| {
        b.iter(|| {
            for stripe in data.chunks_exact(k * unit) {
                let units: Vec<&[u8]> = stripe.chunks_exact(unit).collect();
                rs.encode_sep(&units, &mut parity).unwrap();
            }
            black_box(&parity);
        })
    });

    for (name, threads) in [
        ("encode_full", default_threads()),
        ("encode_full_1thread", 1),
    ] {
        group.bench_function(id(name), |b| {
            b.iter(|| {
                let mut enc = Encoder::new(params, vec![io::sink(); k + m]).unwrap();
                enc.set_threads(threads);
                enc.push(black_box(&data)).unwrap();
                black_box(enc.finish().unwrap().checksums)
            })
        });
    }

    group.bench_function(id("encode_full_read"), |b| {
        b.iter(|| {
            let mut enc = Encoder::new(params, vec![io::sink(); k + m]).unwrap();
            enc.read_from(&mut black_box(&data[..])).unwrap();
            black_box(enc.finish().unwrap().checksums)
        })
    });

    let encoded = encode_bytes(params, &data).unwrap();
    let mut out = Vec::with_capacity(len);
    for (name, threads) in [
        ("decode_m_missing", default_threads()),
        ("decode_m_missing_1thread", 1),
    ] {
        group.bench_function(id(name), |b| {
            b.iter(|| {
                let sources: Vec<Option<&[u8]>> = (0..k + m)
                    .map(|i| (i >= m).then(|| encoded.sinks[i].as_slice()))
                    .collect();
                let mut dec = Decoder::new(encoded.layout, &encoded.checksums, sources).unwrap();
                dec.set_threads(threads);
                out.clear();
                dec.read_all(&mut out).unwrap();
                assert_eq!(out.len(), len);
            })
        });
    }
    assert_eq!(out, data, "decode is exact");
    group.finish();
}

fn benches(c: &mut Criterion) {
    // 64 MiB and 80 MiB: larger than the L3 cache, so memcpy is not flattered.
    bench_code(c, 4, 2, 16);
    bench_code(c, 10, 4, 8);
}

criterion_group!(erasure, benches);
criterion_main!(erasure);
