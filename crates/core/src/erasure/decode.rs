//! Verified decoding from any `k` healthy shards.

use super::{
    default_threads, Layout, UnitChecksums, UnitSource, DEFAULT_STRIPE_UNIT, MAX_SHARDS,
    PARALLEL_MIN_UNIT,
};
use reed_solomon_erasure::galois_8::ReedSolomon;
use std::collections::BTreeSet;
use std::io::{self, Write};
use std::ops::Range;

/// Most memory a [`Decoder`] allocates for its stripe buffer (`(k + m) ×
/// stripe_unit`): 256 MiB, what the widest code (`k + m` = [`MAX_SHARDS`]) takes
/// at the [`DEFAULT_STRIPE_UNIT`] every upload uses. A manifest is checked
/// against its id, but whoever made it chose its parameters: a larger stripe
/// is refused before anything is allocated.
pub const MAX_DECODE_STRIPE: u64 = MAX_SHARDS as u64 * DEFAULT_STRIPE_UNIT as u64;

/// Why a range could not be recovered.
#[derive(Debug, thiserror::Error)]
pub enum RecoverError {
    /// Decoding needs a stripe buffer larger than [`MAX_DECODE_STRIPE`].
    #[error(
        "a stripe of {n} shards × {unit}-byte units needs {bytes} bytes of memory, over the \
         decoder's limit of {MAX_DECODE_STRIPE}"
    )]
    StripeTooLarge {
        /// `k + m`.
        n: usize,
        /// The stripe unit.
        unit: usize,
        /// `n × unit`.
        bytes: u64,
    },
    /// The number of sources is not `k + m`.
    #[error("expected {expected} shard sources (k + m, `None` for a missing one), got {got}")]
    SourceCount {
        /// `k + m`.
        expected: usize,
        /// Sources given.
        got: usize,
    },
    /// The checksums do not describe this layout.
    #[error(
        "the unit checksums cover {got_stripes} stripes of {got_shards} shards, the layout has \
         {expected_stripes} stripes of {expected_shards}"
    )]
    ChecksumShape {
        /// Stripes in the layout.
        expected_stripes: u64,
        /// Shards in the layout.
        expected_shards: usize,
        /// Stripes covered by the checksums.
        got_stripes: u64,
        /// Shards covered by the checksums.
        got_shards: usize,
    },
    /// The requested range extends past the dataset.
    #[error("range {start}..{end} is outside the dataset of {len} bytes")]
    OutOfRange {
        /// Start of the requested range.
        start: u64,
        /// End of the requested range.
        end: u64,
        /// Dataset length.
        len: u64,
    },
    /// A shard index is not below `k + m`.
    #[error("shard index {index} is out of range (there are {n} shards)")]
    BadShardIndex {
        /// The index given.
        index: usize,
        /// `k + m`.
        n: usize,
    },
    /// Fewer than `k` units of a stripe could be read and verified.
    #[error(
        "stripe {stripe}: only {verified} of the {needed} units needed could be read and verified \
         ({corrupt} corrupted, {unavailable} shards missing or failing)"
    )]
    NotEnoughShards {
        /// The stripe that could not be rebuilt.
        stripe: u64,
        /// Units that passed their checksum.
        verified: usize,
        /// `k`.
        needed: usize,
        /// Units of this stripe whose checksum failed.
        corrupt: usize,
        /// Shards absent or whose reads failed.
        unavailable: usize,
    },
    /// A rebuilt unit does not match its recorded checksum: the checksums are not
    /// those of one Reed-Solomon encoding (a corrupt or forged manifest).
    #[error("rebuilt unit of shard {shard} in stripe {stripe} does not match its checksum")]
    Inconsistent {
        /// Shard of the rebuilt unit.
        shard: usize,
        /// Stripe of the rebuilt unit.
        stripe: u64,
    },
    /// Writing the output failed.
    #[error("writing the output failed: {0}")]
    Output(#[source] io::Error),
}

/// One unit of one shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UnitLocation {
    /// Shard index (`0..k` data, `k..k+m` parity).
    pub shard: usize,
    /// Stripe index.
    pub stripe: u64,
}

/// A failed read from a shard source (after which the source is not used again).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadFault {
    /// Where the read failed.
    pub at: UnitLocation,
    /// The source's error, as text.
    pub error: String,
}

/// What a decoder saw: every corrupted unit and failed source, and how much it
/// read. Use it to tell the user which providers to avoid.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecodeReport {
    /// Units whose bytes did not match their checksum.
    pub corrupt_units: Vec<UnitLocation>,
    /// Sources that failed to deliver a unit.
    pub failed_reads: Vec<ReadFault>,
    /// Units fetched from sources.
    pub units_read: u64,
    /// Bytes fetched from sources.
    pub bytes_read: u64,
}

impl DecodeReport {
    /// Shards that delivered at least one corrupted unit or failed a read.
    pub fn bad_shards(&self) -> BTreeSet<usize> {
        self.corrupt_units
            .iter()
            .map(|u| u.shard)
            .chain(self.failed_reads.iter().map(|f| f.at.shard))
            .collect()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unit {
    /// Not fetched for the current stripe.
    Unknown,
    /// In the buffer and correct (checked, or rebuilt from checked units).
    Good,
    /// Missing, unreadable or corrupted for the current stripe.
    Bad,
}

/// Reads verified byte ranges of a dataset from its shards.
///
/// Given the [`Layout`], the [`UnitChecksums`] and one optional source per shard,
/// [`Decoder::read_range`] fetches, for each stripe the range touches, only the
/// data units it covers; if one of them is missing, fails or fails its checksum,
/// it fetches further units (data first, then parity) until `k` are verified and
/// rebuilds the rest. Memory is one stripe of `(k + m) × stripe_unit` bytes.
///
/// ```
/// use cairn_core::erasure::{encode_bytes, Decoder, ErasureParams};
/// let params = ErasureParams::new(2, 2, 64).unwrap();
/// let data = b"hello, erasure coding".repeat(20);
/// let enc = encode_bytes(params, &data).unwrap();
/// // Lose both data shards: the two parity shards are enough.
/// let sources = vec![None, None, Some(&enc.sinks[2][..]), Some(&enc.sinks[3][..])];
/// let mut dec = Decoder::new(enc.layout, &enc.checksums, sources).unwrap();
/// let mut out = Vec::new();
/// dec.read_range(7..12, &mut out).unwrap();
/// assert_eq!(&out, b"erasu");
/// ```
pub struct Decoder<'a, S> {
    layout: Layout,
    checksums: &'a UnitChecksums,
    sources: Vec<Option<S>>,
    dead: Vec<bool>,
    rs: ReedSolomon,
    /// `k + m` units of `current`.
    buf: Vec<u8>,
    state: Vec<Unit>,
    current: Option<u64>,
    report: DecodeReport,
    threads: usize,
}

impl<'a, S: UnitSource + Send> Decoder<'a, S> {
    /// A decoder over `sources[i]` for shard `i` (`None` when that shard is not
    /// available); there must be exactly `k + m` entries.
    pub fn new(
        layout: Layout,
        checksums: &'a UnitChecksums,
        sources: Vec<Option<S>>,
    ) -> Result<Self, RecoverError> {
        let params = layout.params();
        let n = params.n();
        let bytes = n as u64 * params.stripe_unit() as u64;
        if bytes > MAX_DECODE_STRIPE {
            return Err(RecoverError::StripeTooLarge {
                n,
                unit: params.stripe_unit(),
                bytes,
            });
        }
        if sources.len() != n {
            return Err(RecoverError::SourceCount {
                expected: n,
                got: sources.len(),
            });
        }
        if checksums.shard_count() != n || checksums.stripe_count() != layout.stripe_count() {
            return Err(RecoverError::ChecksumShape {
                expected_stripes: layout.stripe_count(),
                expected_shards: n,
                got_stripes: checksums.stripe_count(),
                got_shards: checksums.shard_count(),
            });
        }
        Ok(Decoder {
            layout,
            checksums,
            dead: sources.iter().map(Option::is_none).collect(),
            sources,
            rs: params.reed_solomon(),
            buf: vec![0; n * params.stripe_unit()],
            state: vec![Unit::Unknown; n],
            current: None,
            report: DecodeReport::default(),
            threads: default_threads(),
        })
    }

    /// Sets how many threads may read and verify units (1: only the calling
    /// thread). With more, the units of a stripe of at least
    /// [`PARALLEL_MIN_UNIT`] bytes are each read and verified on their own
    /// thread.
    pub fn set_threads(&mut self, threads: usize) {
        self.threads = threads.max(1);
    }

    /// The layout being decoded.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// What was read, corrupted or failed so far.
    pub fn report(&self) -> &DecodeReport {
        &self.report
    }

    /// The sources, handed back.
    pub fn into_sources(self) -> Vec<Option<S>> {
        self.sources
    }

    /// Writes the packed bytes `range` to `out`, verified.
    pub fn read_range<W: Write + ?Sized>(
        &mut self,
        range: Range<u64>,
        out: &mut W,
    ) -> Result<(), RecoverError> {
        let len = self.layout.total_len();
        if range.start > range.end || range.end > len {
            return Err(RecoverError::OutOfRange {
                start: range.start,
                end: range.end,
                len,
            });
        }
        let unit = self.layout.params().stripe_unit();
        let stripe_bytes = self.layout.params().stripe_bytes();
        for stripe in self.layout.stripes_for_range(range.clone()) {
            let stripe_start = stripe * stripe_bytes;
            let lo = (range.start.max(stripe_start) - stripe_start) as usize;
            let hi = (range.end.min(stripe_start + stripe_bytes) - stripe_start) as usize;
            self.load_data(stripe, lo / unit..(hi - 1) / unit + 1)?;
            // Data units sit side by side at the front of `buf`, so stripe bytes
            // lo..hi are buffer bytes lo..hi.
            out.write_all(&self.buf[lo..hi])
                .map_err(RecoverError::Output)?;
        }
        Ok(())
    }

    /// Writes the whole packed dataset to `out`.
    pub fn read_all<W: Write + ?Sized>(&mut self, out: &mut W) -> Result<(), RecoverError> {
        self.read_range(0..self.layout.total_len(), out)
    }

    /// Rebuilds shard `shard` in full (every unit, including the zero padding of
    /// the last stripe) from the other shards and writes it to `out`, for example
    /// to re-upload a lost shard to a new provider. The shard's own source is not
    /// read. Each rebuilt unit is checked against its checksum.
    pub fn rebuild_shard<W: Write + ?Sized>(
        &mut self,
        shard: usize,
        out: &mut W,
    ) -> Result<(), RecoverError> {
        let params = self.layout.params();
        let (k, n, unit) = (params.k(), params.n(), params.stripe_unit());
        if shard >= n {
            return Err(RecoverError::BadShardIndex { index: shard, n });
        }
        for stripe in 0..self.layout.stripe_count() {
            self.begin(stripe);
            self.state[shard] = Unit::Bad;
            self.gather(stripe, k)?;
            let mut units = present_units(&mut self.buf, &self.state, unit);
            self.rs
                .reconstruct(&mut units)
                .expect("k verified units of equal length");
            let rebuilt = &self.buf[shard * unit..(shard + 1) * unit];
            if !self.checksums.verify(shard, stripe, rebuilt) {
                self.current = None;
                return Err(RecoverError::Inconsistent { shard, stripe });
            }
            out.write_all(rebuilt).map_err(RecoverError::Output)?;
        }
        // The buffer now holds rebuilt parity that was never fetched; forget it.
        self.current = None;
        Ok(())
    }

    /// Makes `stripe` current, forgetting what was loaded for another stripe.
    fn begin(&mut self, stripe: u64) {
        if self.current != Some(stripe) {
            self.current = Some(stripe);
            self.state.fill(Unit::Unknown);
        }
    }

    /// Ensures data units `wanted` of `stripe` are in the buffer and correct.
    fn load_data(&mut self, stripe: u64, wanted: Range<usize>) -> Result<(), RecoverError> {
        self.begin(stripe);
        let missing: Vec<usize> = wanted
            .clone()
            .filter(|&i| self.state[i] == Unit::Unknown)
            .collect();
        self.fetch(stripe, &missing);
        if wanted.clone().all(|i| self.state[i] == Unit::Good) {
            return Ok(());
        }
        let (k, unit) = (self.layout.params().k(), self.layout.params().stripe_unit());
        self.gather(stripe, k)?;
        let mut units = present_units(&mut self.buf, &self.state, unit);
        self.rs
            .reconstruct_data(&mut units)
            .expect("k verified units of equal length");
        for s in &mut self.state[..k] {
            *s = Unit::Good;
        }
        Ok(())
    }

    /// Fetches units of `stripe` not tried yet (data first, then parity), as
    /// many at a time as are still missing, until `need` are good.
    fn gather(&mut self, stripe: u64, need: usize) -> Result<(), RecoverError> {
        loop {
            let good = self.state.iter().filter(|s| **s == Unit::Good).count();
            if good >= need {
                return Ok(());
            }
            let next: Vec<usize> = (0..self.state.len())
                .filter(|&i| self.state[i] == Unit::Unknown && self.available(i))
                .take(need - good)
                .collect();
            if next.is_empty() {
                let corrupt = self
                    .report
                    .corrupt_units
                    .iter()
                    .filter(|u| u.stripe == stripe)
                    .count();
                return Err(RecoverError::NotEnoughShards {
                    stripe,
                    verified: good,
                    needed: need,
                    corrupt,
                    unavailable: (0..self.state.len())
                        .filter(|&i| !self.available(i))
                        .count(),
                });
            }
            self.fetch(stripe, &next);
        }
    }

    fn available(&self, i: usize) -> bool {
        !self.dead[i] && self.sources[i].is_some()
    }

    /// Reads units `shards` of `stripe` and verifies their checksums,
    /// recording each outcome. With more than one thread and units of at
    /// least [`PARALLEL_MIN_UNIT`] bytes, every unit is read and hashed on its
    /// own thread (remote sources answer concurrently instead of one after
    /// another); otherwise in shard order on this thread.
    fn fetch(&mut self, stripe: u64, shards: &[usize]) {
        let unit_len = self.layout.params().stripe_unit();
        for &i in shards {
            self.state[i] = Unit::Bad;
        }
        let dead = &self.dead;
        let jobs: Vec<(usize, &mut S, &mut [u8])> = self
            .sources
            .iter_mut()
            .zip(self.buf.chunks_exact_mut(unit_len))
            .enumerate()
            .filter(|(i, _)| shards.contains(i) && !dead[*i])
            .filter_map(|(i, (source, unit))| Some((i, source.as_mut()?, unit)))
            .collect();
        let read = |(i, source, unit): (usize, &mut S, &mut [u8])| {
            let sum = source
                .read_unit(stripe, unit)
                .map(|()| *blake3::hash(unit).as_bytes());
            (i, sum)
        };
        let results: Vec<(usize, io::Result<[u8; 32]>)> =
            if self.threads > 1 && jobs.len() > 1 && unit_len >= PARALLEL_MIN_UNIT {
                std::thread::scope(|scope| {
                    let readers: Vec<_> = jobs
                        .into_iter()
                        .map(|job| scope.spawn(move || read(job)))
                        .collect();
                    readers
                        .into_iter()
                        .map(|r| r.join().expect("unit reader thread"))
                        .collect()
                })
            } else {
                jobs.into_iter().map(read).collect()
            };
        for (i, sum) in results {
            match sum {
                Err(e) => {
                    self.dead[i] = true;
                    self.report.failed_reads.push(ReadFault {
                        at: UnitLocation { shard: i, stripe },
                        error: e.to_string(),
                    });
                }
                Ok(sum) => {
                    self.report.units_read += 1;
                    self.report.bytes_read += unit_len as u64;
                    if Some(&sum) == self.checksums.get(i, stripe) {
                        self.state[i] = Unit::Good;
                    } else {
                        self.report
                            .corrupt_units
                            .push(UnitLocation { shard: i, stripe });
                    }
                }
            }
        }
    }
}

/// The stripe buffer as Reed-Solomon takes it: each unit with whether it holds
/// verified bytes.
fn present_units<'a>(buf: &'a mut [u8], state: &[Unit], unit: usize) -> Vec<(&'a mut [u8], bool)> {
    buf.chunks_exact_mut(unit)
        .zip(state)
        .map(|(u, s)| (u, *s == Unit::Good))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::{encode_bytes, ErasureParams, FnSource};
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    fn data(len: usize) -> Vec<u8> {
        (0..len as u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect()
    }

    #[test]
    fn a_stripe_over_the_memory_bound_is_refused_before_allocating() {
        // Checksums of one stripe of six shards fit both layouts.
        let enc = encode_bytes(ErasureParams::new(4, 2, 64).unwrap(), b"tiny").unwrap();
        let huge = Layout::new(ErasureParams::new(4, 2, 64 << 20).unwrap(), 4).unwrap();
        let sources: Vec<Option<&[u8]>> = vec![None; 6];
        match Decoder::new(huge, &enc.checksums, sources) {
            Err(RecoverError::StripeTooLarge { n, unit, bytes }) => {
                assert_eq!((n, unit, bytes), (6, 64 << 20, 6 * (64 << 20)));
            }
            Err(e) => panic!("{e}"),
            Ok(_) => panic!("a 384 MiB stripe was accepted"),
        }
        // The widest code at the default unit is within the bound.
        let wide =
            Layout::new(ErasureParams::new(200, 56, DEFAULT_STRIPE_UNIT).unwrap(), 1).unwrap();
        assert_eq!(
            wide.params().n() as u64 * DEFAULT_STRIPE_UNIT as u64,
            MAX_DECODE_STRIPE
        );
    }

    #[test]
    fn reads_only_the_units_a_range_touches() {
        let p = ErasureParams::new(4, 2, 64).unwrap();
        let bytes = data(2000);
        let enc = encode_bytes(p, &bytes).unwrap();
        let reads: Arc<Mutex<Vec<UnitLocation>>> = Arc::default();
        let sources: Vec<Option<FnSource<_>>> = (0..6)
            .map(|shard| {
                let reads = reads.clone();
                let shard_bytes = enc.sinks[shard].clone();
                Some(FnSource(move |stripe: u64, unit: &mut [u8]| {
                    reads.lock().unwrap().push(UnitLocation { shard, stripe });
                    shard_bytes.as_slice().read_unit(stripe, unit)
                }))
            })
            .collect();
        let mut dec = Decoder::new(enc.layout, &enc.checksums, sources).unwrap();
        // Bytes 600..700 lie in stripe 2 (512..768), units 1 (576..640) and 2.
        let mut out = Vec::new();
        dec.read_range(600..700, &mut out).unwrap();
        assert_eq!(out, &bytes[600..700]);
        assert_eq!(
            *reads.lock().unwrap(),
            vec![
                UnitLocation {
                    shard: 1,
                    stripe: 2
                },
                UnitLocation {
                    shard: 2,
                    stripe: 2
                }
            ]
        );
        // A second range in the same stripe reuses what was loaded.
        out.clear();
        dec.read_range(640..650, &mut out).unwrap();
        assert_eq!(out, &bytes[640..650]);
        assert_eq!(reads.lock().unwrap().len(), 2);
    }

    #[test]
    fn corrupted_and_failing_units_are_reported_and_routed_around() {
        let p = ErasureParams::new(3, 2, 64).unwrap();
        let bytes = data(1000);
        let mut enc = encode_bytes(p, &bytes).unwrap();
        enc.sinks[1][64 + 5] ^= 0x40; // shard 1, stripe 1
        let sources: Vec<Option<Box<dyn UnitSource + Send>>> = vec![
            Some(Box::new(enc.sinks[0].clone())),
            Some(Box::new(enc.sinks[1].clone())),
            Some(Box::new(FnSource(|_, _: &mut [u8]| {
                Err(io::Error::other("connection reset"))
            }))),
            Some(Box::new(enc.sinks[3].clone())),
            Some(Box::new(enc.sinks[4].clone())),
        ];
        let mut dec = Decoder::new(enc.layout, &enc.checksums, sources).unwrap();
        let mut out = Vec::new();
        dec.read_all(&mut out).unwrap();
        assert_eq!(out, bytes);
        let report = dec.report();
        assert_eq!(
            report.corrupt_units,
            vec![UnitLocation {
                shard: 1,
                stripe: 1
            }]
        );
        assert_eq!(report.failed_reads.len(), 1);
        assert_eq!(report.failed_reads[0].at.shard, 2);
        assert!(report.failed_reads[0].error.contains("connection reset"));
        assert_eq!(report.bad_shards(), BTreeSet::from([1, 2]));
    }

    #[test]
    fn too_few_shards_names_the_stripe() {
        let p = ErasureParams::new(2, 1, 64).unwrap();
        let enc = encode_bytes(p, &data(300)).unwrap();
        let mut bad = enc.sinks[0].clone();
        bad[70] ^= 1; // stripe 1 of shard 0
        let sources = vec![Some(bad), None, Some(enc.sinks[2].clone())];
        let mut dec = Decoder::new(enc.layout, &enc.checksums, sources).unwrap();
        let mut out = Vec::new();
        let err = dec.read_all(&mut out).unwrap_err();
        assert!(
            matches!(
                err,
                RecoverError::NotEnoughShards {
                    stripe: 1,
                    verified: 1,
                    needed: 2,
                    corrupt: 1,
                    unavailable: 1
                }
            ),
            "{err}"
        );
        // Stripe 0 was written before the failure and is correct.
        assert_eq!(out, &data(300)[..128]);
    }

    #[test]
    fn rebuilds_any_lost_shard_exactly() {
        let p = ErasureParams::new(3, 2, 64).unwrap();
        let enc = encode_bytes(p, &data(700)).unwrap();
        for lost in 0..5 {
            let sources: Vec<Option<&[u8]>> = (0..5)
                .map(|i| (i != lost).then(|| enc.sinks[i].as_slice()))
                .collect();
            let mut dec = Decoder::new(enc.layout, &enc.checksums, sources).unwrap();
            let mut rebuilt = Vec::new();
            dec.rebuild_shard(lost, &mut rebuilt).unwrap();
            assert_eq!(rebuilt, enc.sinks[lost], "shard {lost}");
            // Reads after a rebuild are still right.
            let mut out = Vec::new();
            dec.read_all(&mut out).unwrap();
            assert_eq!(out, data(700));
        }
    }

    /// Remote sources answer one unit per request: the `k` units of a stripe
    /// are requested together, not one after another. Each source here waits
    /// (up to 10 s) until all `k` of the stripe's reads have started, and
    /// fails if they never do, which is what reading in turn would cause.
    #[test]
    fn the_units_of_a_stripe_are_read_concurrently() {
        let unit = super::super::PARALLEL_MIN_UNIT;
        let p = ErasureParams::new(4, 2, unit as u32).unwrap();
        let bytes = data(3 * 4 * unit);
        let enc = encode_bytes(p, &bytes).unwrap();
        let started: Arc<Vec<AtomicUsize>> =
            Arc::new((0..3).map(|_| AtomicUsize::new(0)).collect());
        let sources: Vec<Option<FnSource<_>>> = (0..6)
            .map(|shard| {
                let started = started.clone();
                let shard_bytes = enc.sinks[shard].clone();
                Some(FnSource(move |stripe: u64, out: &mut [u8]| {
                    let count = &started[stripe as usize];
                    count.fetch_add(1, Ordering::SeqCst);
                    let deadline = Instant::now() + Duration::from_secs(10);
                    while count.load(Ordering::SeqCst) < 4 {
                        if Instant::now() > deadline {
                            return Err(io::Error::other(
                                "the other units of the stripe were not requested",
                            ));
                        }
                        std::thread::sleep(Duration::from_millis(1));
                    }
                    shard_bytes.as_slice().read_unit(stripe, out)
                }))
            })
            .collect();
        let mut dec = Decoder::new(enc.layout, &enc.checksums, sources).unwrap();
        dec.set_threads(2);
        let mut out = Vec::new();
        dec.read_all(&mut out).unwrap();
        assert!(out == bytes);
        assert_eq!(dec.report().failed_reads, vec![]);
        assert_eq!(dec.report().units_read, 3 * 4, "data units only");
    }

    #[test]
    fn threads_do_not_change_results_or_reports() {
        let unit = super::super::PARALLEL_MIN_UNIT;
        let p = ErasureParams::new(4, 2, unit as u32).unwrap();
        let bytes = data(3 * 4 * unit + 1234);
        let mut enc = encode_bytes(p, &bytes).unwrap();
        enc.sinks[2][unit + 17] ^= 1; // shard 2, stripe 1
        for threads in [1, 2, 3] {
            let sources: Vec<Option<&[u8]>> = (0..6)
                .map(|i| (i != 0).then(|| enc.sinks[i].as_slice()))
                .collect();
            let mut dec = Decoder::new(enc.layout, &enc.checksums, sources).unwrap();
            dec.set_threads(threads);
            let mut out = Vec::new();
            dec.read_all(&mut out).unwrap();
            assert!(out == bytes, "threads {threads}");
            assert_eq!(
                dec.report().corrupt_units,
                vec![UnitLocation {
                    shard: 2,
                    stripe: 1
                }],
                "threads {threads}"
            );
        }
    }

    #[test]
    fn bad_arguments_are_typed_errors() {
        let p = ErasureParams::new(2, 1, 64).unwrap();
        let enc = encode_bytes(p, &data(100)).unwrap();
        assert!(matches!(
            Decoder::<&[u8]>::new(enc.layout, &enc.checksums, vec![None, None]),
            Err(RecoverError::SourceCount {
                expected: 3,
                got: 2
            })
        ));
        let other = encode_bytes(p, &data(1000)).unwrap();
        assert!(matches!(
            Decoder::<&[u8]>::new(other.layout, &enc.checksums, vec![None, None, None]),
            Err(RecoverError::ChecksumShape { .. })
        ));
        let mut dec =
            Decoder::<&[u8]>::new(enc.layout, &enc.checksums, vec![None, None, None]).unwrap();
        assert!(matches!(
            dec.read_range(50..101, &mut Vec::new()),
            Err(RecoverError::OutOfRange {
                start: 50,
                end: 101,
                len: 100
            })
        ));
        assert!(matches!(
            dec.rebuild_shard(3, &mut Vec::new()),
            Err(RecoverError::BadShardIndex { index: 3, n: 3 })
        ));
        // An empty range needs no shard at all.
        dec.read_range(10..10, &mut Vec::new()).unwrap();
    }
}
