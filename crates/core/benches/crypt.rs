//! Private datasets' encryption next to BLAKE3 of the same bytes, in one run.
//!
//! Run: `cargo bench -p cairn-core --bench crypt`. Throughput is in plaintext
//! bytes per second:
//! - `blake3`: BLAKE3 of the bytes (one thread), the unit checksums' cost.
//! - `seal`: [`FileCipher::encrypt_all`], 64 KiB chunks, each with its
//!   synthetic nonce (keyed BLAKE3 of the chunk) and ChaCha20-Poly1305.
//! - `open`: [`FileCipher::decrypt_span`] of the whole file.
//! - `open_1mib_range`: a 1 MiB range from the middle, fetching and opening
//!   only the chunks that cover it.
use cairn_core::crypt::{span, DatasetKey};
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use std::hint::black_box;
use std::time::Duration;

mod common;
use common::pseudo_random;

fn crypt(c: &mut Criterion) {
    let len = 64 << 20;
    let data = pseudo_random(len);
    let cipher = DatasetKey::from_bytes([7; 32]).file(&[1; 32], "bench/file.bin");
    let stored = cipher.encrypt_all(&data);
    let whole = span(len as u64, 0..len as u64).unwrap();
    let mut g = c.benchmark_group("crypt_64MiB");
    g.sample_size(10).measurement_time(Duration::from_secs(5));
    g.throughput(Throughput::Bytes(len as u64));
    g.bench_function("blake3", |b| b.iter(|| black_box(blake3::hash(&data))));
    g.bench_function("seal", |b| b.iter(|| black_box(cipher.encrypt_all(&data))));
    g.bench_function("open", |b| {
        b.iter(|| black_box(cipher.decrypt_span(&whole, &stored).unwrap()))
    });
    g.finish();
    let mut g = c.benchmark_group("crypt_range");
    g.throughput(Throughput::Bytes(1 << 20));
    let mid = len as u64 / 2 + 12_345;
    let s = span(len as u64, mid..mid + (1 << 20)).unwrap();
    g.bench_function("open_1mib_range", |b| {
        b.iter(|| {
            let part = &stored[s.stored.start as usize..s.stored.end as usize];
            black_box(cipher.decrypt_span(&s, part).unwrap())
        })
    });
    g.finish();
}

criterion_group!(benches, crypt);
criterion_main!(benches);
