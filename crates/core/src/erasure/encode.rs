//! Streaming encoder: packed bytes in, `k + m` shard streams and unit checksums out.

use super::{
    default_threads, hash_into, ErasureParams, Layout, ParamsError, UnitChecksums,
    PARALLEL_MIN_UNIT,
};
use crate::hash::Hash;
use reed_solomon_erasure::galois_8::ReedSolomon;
use std::collections::VecDeque;
use std::io::{self, Read, Write};
use std::sync::{Condvar, Mutex};

/// Why encoding failed.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    /// The number of sinks is not `k + m`.
    #[error("expected {expected} shard sinks (k + m), got {got}")]
    SinkCount {
        /// `k + m`.
        expected: usize,
        /// Sinks given.
        got: usize,
    },
    /// Writing to a shard's sink failed.
    #[error("writing shard {shard} failed: {source}")]
    Sink {
        /// Index of the shard whose sink failed.
        shard: usize,
        /// The sink's error.
        #[source]
        source: io::Error,
    },
    /// Reading the packed input failed.
    #[error("reading the packed input failed: {0}")]
    Input(#[source] io::Error),
    /// The dataset grew too large for the parameters.
    #[error(transparent)]
    Params(#[from] ParamsError),
    /// An earlier call failed part-way through a stripe; the shard streams are
    /// incomplete and this encoder cannot go on.
    #[error("the encoder failed earlier and cannot continue")]
    Poisoned,
}

/// The result of a finished encoding.
#[derive(Debug)]
pub struct Encoded<W> {
    /// Where every byte went (parameters and packed length).
    pub layout: Layout,
    /// BLAKE3 of every unit written, stripe-major.
    pub checksums: UnitChecksums,
    /// The sinks, handed back (flushed) in shard order.
    pub sinks: Vec<W>,
}

/// Streaming Reed-Solomon encoder.
///
/// Bytes arrive through [`Encoder::push`], [`Encoder::read_from`] or the
/// [`Write`] impl; each time a stripe of `k × stripe_unit` bytes is complete it is
/// encoded, every unit is hashed, and unit `i` is written to `sinks[i]`.
/// [`Encoder::finish`] zero-pads and writes the last stripe. Memory is one stripe
/// of `(k + m) × stripe_unit` bytes plus 32 bytes of checksum per unit written.
///
/// ```
/// use cairn_core::erasure::{Encoder, ErasureParams};
/// let params = ErasureParams::new(2, 1, 64).unwrap();
/// let mut enc = Encoder::new(params, vec![Vec::new(); 3]).unwrap();
/// enc.push(&[7u8; 200]).unwrap();
/// let encoded = enc.finish().unwrap();
/// assert_eq!(encoded.layout.shard_len(), 128); // 2 stripes of 2 × 64 bytes
/// assert!(encoded.sinks.iter().all(|s| s.len() == 128));
/// ```
pub struct Encoder<W: Write> {
    params: ErasureParams,
    rs: ReedSolomon,
    /// `k` data units then `m` parity units of the stripe being filled.
    buf: Vec<u8>,
    /// Data bytes currently in `buf`.
    filled: usize,
    total: u64,
    sums: Vec<Hash>,
    sinks: Vec<W>,
    threads: usize,
    poisoned: bool,
}

impl<W: Write> Encoder<W> {
    /// An encoder writing shard `i` to `sinks[i]`; there must be exactly `k + m`.
    pub fn new(params: ErasureParams, sinks: Vec<W>) -> Result<Self, EncodeError> {
        if sinks.len() != params.n() {
            return Err(EncodeError::SinkCount {
                expected: params.n(),
                got: sinks.len(),
            });
        }
        Ok(Encoder {
            params,
            rs: params.reed_solomon(),
            buf: vec![0; params.n() * params.stripe_unit()],
            filled: 0,
            total: 0,
            sums: Vec::new(),
            sinks,
            threads: default_threads(),
            poisoned: false,
        })
    }

    /// Sets how many threads may hash units (1: only the calling thread). The
    /// default is [`default_threads`](super::default_threads). Output does not
    /// depend on it.
    pub fn set_threads(&mut self, threads: usize) {
        self.threads = threads.max(1);
    }

    /// Packed bytes received so far.
    pub fn total_len(&self) -> u64 {
        self.total
    }

    /// The parameters in use.
    pub fn params(&self) -> ErasureParams {
        self.params
    }

    /// Adds `data` to the packed stream, writing every stripe it completes.
    ///
    /// Whole stripes found in `data` are encoded in place, without a copy.
    pub fn push(&mut self, mut data: &[u8]) -> Result<(), EncodeError> {
        self.check()?;
        let stripe = self.stripe_data_len();
        while !data.is_empty() {
            if self.filled == 0 && data.len() >= stripe {
                let (whole, rest) = data.split_at(stripe);
                self.total += stripe as u64;
                let parity = &mut self.buf[stripe..];
                self.poisoned = true;
                encode_stripe(
                    &self.rs,
                    self.params,
                    whole,
                    parity,
                    self.threads,
                    &mut self.sums,
                );
                write_units(self.params, whole, &self.buf[stripe..], &mut self.sinks)?;
                self.poisoned = false;
                data = rest;
                continue;
            }
            let n = (stripe - self.filled).min(data.len());
            self.buf[self.filled..self.filled + n].copy_from_slice(&data[..n]);
            self.filled += n;
            self.total += n as u64;
            data = &data[n..];
            if self.filled == stripe {
                self.flush_stripe()?;
            }
        }
        Ok(())
    }

    /// Reads `reader` to its end into the packed stream (straight into the stripe
    /// buffer), returning the number of bytes read.
    pub fn read_from<R: Read + ?Sized>(&mut self, reader: &mut R) -> Result<u64, EncodeError> {
        self.check()?;
        let stripe = self.stripe_data_len();
        let mut read = 0u64;
        loop {
            match reader.read(&mut self.buf[self.filled..stripe]) {
                Ok(0) => return Ok(read),
                Ok(n) => {
                    self.filled += n;
                    self.total += n as u64;
                    read += n as u64;
                    if self.filled == stripe {
                        self.flush_stripe()?;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.poisoned = true;
                    return Err(EncodeError::Input(e));
                }
            }
        }
    }

    /// Pads and writes the last stripe, flushes the sinks and returns them with the
    /// layout and the unit checksums.
    pub fn finish(mut self) -> Result<Encoded<W>, EncodeError> {
        self.check()?;
        if self.filled > 0 || self.sums.is_empty() {
            let stripe = self.stripe_data_len();
            self.buf[self.filled..stripe].fill(0);
            self.filled = stripe;
            self.flush_stripe()?;
        }
        for (shard, sink) in self.sinks.iter_mut().enumerate() {
            sink.flush()
                .map_err(|source| EncodeError::Sink { shard, source })?;
        }
        let layout = Layout::new(self.params, self.total)?;
        debug_assert_eq!(
            layout.stripe_count() as usize * self.params.n(),
            self.sums.len()
        );
        let checksums = UnitChecksums::from_stripe_major(self.params.n(), self.sums)
            .expect("at least one stripe written");
        Ok(Encoded {
            layout,
            checksums,
            sinks: self.sinks,
        })
    }

    fn stripe_data_len(&self) -> usize {
        self.params.k() * self.params.stripe_unit()
    }

    fn check(&self) -> Result<(), EncodeError> {
        if self.poisoned {
            Err(EncodeError::Poisoned)
        } else {
            Ok(())
        }
    }

    /// Encodes and writes the full stripe held in `buf`.
    fn flush_stripe(&mut self) -> Result<(), EncodeError> {
        let (data, parity) = self
            .buf
            .split_at_mut(self.params.k() * self.params.stripe_unit());
        encode_stripe(
            &self.rs,
            self.params,
            data,
            parity,
            self.threads,
            &mut self.sums,
        );
        self.poisoned = true;
        write_units(self.params, data, parity, &mut self.sinks)?;
        self.poisoned = false;
        self.filled = 0;
        Ok(())
    }
}

impl<W: Write> Write for Encoder<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.push(buf).map_err(io::Error::other)?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        // Partial stripes cannot be written before `finish`; nothing to flush.
        Ok(())
    }
}

/// Units waiting to be hashed: the data units at first, the parity units once
/// they are computed (`closed` then).
struct HashQueue<'a> {
    units: VecDeque<(usize, &'a [u8])>,
    closed: bool,
}

/// Hashes units from the queue until it is empty and closed.
fn hash_from_queue(queue: &Mutex<HashQueue<'_>>, ready: &Condvar) -> Vec<(usize, Hash)> {
    let mut out = Vec::new();
    loop {
        let next = {
            let mut q = queue.lock().expect("no panic while the queue is locked");
            loop {
                if let Some(unit) = q.units.pop_front() {
                    break Some(unit);
                }
                if q.closed {
                    break None;
                }
                q = ready.wait(q).expect("no panic while the queue is locked");
            }
        };
        match next {
            Some((i, unit)) => out.push((i, *blake3::hash(unit).as_bytes())),
            None => return out,
        }
    }
}

/// Computes the parity of one stripe and appends the `k + m` unit checksums.
///
/// With `threads >= 2` and large units, helper threads start hashing the data
/// units while this thread computes the parity; then the parity units join the
/// queue and every thread, this one included, hashes until it is empty. The work
/// is shared dynamically, so a helper the OS does not schedule in time costs
/// little.
fn encode_stripe(
    rs: &ReedSolomon,
    params: ErasureParams,
    data: &[u8],
    parity: &mut [u8],
    threads: usize,
    sums: &mut Vec<Hash>,
) {
    let (k, n, unit) = (params.k(), params.n(), params.stripe_unit());
    let data_units: Vec<&[u8]> = data.chunks_exact(unit).collect();
    let mut parity_units: Vec<&mut [u8]> = parity.chunks_exact_mut(unit).collect();
    let start = sums.len();
    sums.resize(start + n, [0; 32]);
    let stripe_sums = &mut sums[start..];
    if threads < 2 || unit < PARALLEL_MIN_UNIT {
        rs.encode_sep(&data_units, &mut parity_units)
            .expect("unit counts and lengths match the codec");
        let parity: Vec<&[u8]> = parity_units.iter().map(|u| &**u).collect();
        hash_into(&data_units, &mut stripe_sums[..k]);
        hash_into(&parity, &mut stripe_sums[k..]);
        return;
    }
    let queue = Mutex::new(HashQueue {
        units: data_units.iter().copied().enumerate().collect(),
        closed: false,
    });
    let ready = Condvar::new();
    let (queue, ready) = (&queue, &ready);
    std::thread::scope(|scope| {
        let helpers: Vec<_> = (1..threads.min(n))
            .map(|_| scope.spawn(move || hash_from_queue(queue, ready)))
            .collect();
        rs.encode_sep(&data_units, &mut parity_units)
            .expect("unit counts and lengths match the codec");
        {
            let mut q = queue.lock().expect("no panic while the queue is locked");
            q.units.extend(
                parity_units
                    .into_iter()
                    .enumerate()
                    .map(|(j, p)| (k + j, &*p)),
            );
            q.closed = true;
        }
        ready.notify_all();
        let mine = hash_from_queue(queue, ready);
        let theirs = helpers
            .into_iter()
            .flat_map(|h| h.join().expect("hashing does not panic"));
        for (i, sum) in mine.into_iter().chain(theirs) {
            stripe_sums[i] = sum;
        }
    });
}

fn write_units<W: Write>(
    params: ErasureParams,
    data: &[u8],
    parity: &[u8],
    sinks: &mut [W],
) -> Result<(), EncodeError> {
    let unit = params.stripe_unit();
    let units = data.chunks_exact(unit).chain(parity.chunks_exact(unit));
    for (shard, (sink, unit)) in sinks.iter_mut().zip(units).enumerate() {
        sink.write_all(unit)
            .map_err(|source| EncodeError::Sink { shard, source })?;
    }
    Ok(())
}

/// Encodes `data` in memory into `k + m` shard buffers.
pub fn encode_bytes(params: ErasureParams, data: &[u8]) -> Result<Encoded<Vec<u8>>, EncodeError> {
    let shard_len = Layout::new(params, data.len() as u64)?.shard_len() as usize;
    let mut enc = Encoder::new(params, vec![Vec::with_capacity(shard_len); params.n()])?;
    enc.push(data)?;
    enc.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(k: u16, m: u16, unit: u32) -> ErasureParams {
        ErasureParams::new(k, m, unit).unwrap()
    }

    #[test]
    fn shards_are_units_of_every_stripe_and_data_shards_hold_the_data() {
        let p = params(3, 2, 64);
        let data: Vec<u8> = (0..500u32).map(|i| (i * 7 + 3) as u8).collect();
        let enc = encode_bytes(p, &data).unwrap();
        // 500 bytes / 192 per stripe = 3 stripes.
        assert_eq!(enc.layout.stripe_count(), 3);
        for shard in &enc.sinks {
            assert_eq!(shard.len() as u64, enc.layout.shard_len());
        }
        // Reassemble data from the data shards: stripe s, unit i.
        let mut joined = Vec::new();
        for s in 0..3 {
            for i in 0..3 {
                joined.extend_from_slice(&enc.sinks[i][s * 64..(s + 1) * 64]);
            }
        }
        assert_eq!(&joined[..500], &data[..]);
        assert!(joined[500..].iter().all(|&b| b == 0), "padding is zeros");
        // Every unit's checksum is recorded.
        for s in 0..3u64 {
            for (i, shard) in enc.sinks.iter().enumerate() {
                let unit = &shard[s as usize * 64..(s as usize + 1) * 64];
                assert!(enc.checksums.verify(i, s, unit), "shard {i} stripe {s}");
            }
        }
    }

    #[test]
    fn push_sizes_read_from_and_write_agree() {
        let p = params(4, 2, 128);
        let data: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let whole = encode_bytes(p, &data).unwrap();

        let mut enc = Encoder::new(p, vec![Vec::new(); 6]).unwrap();
        for chunk in data.chunks(37) {
            enc.push(chunk).unwrap();
        }
        let chunked = enc.finish().unwrap();

        let mut enc = Encoder::new(p, vec![Vec::new(); 6]).unwrap();
        enc.read_from(&mut &data[..]).unwrap();
        let read = enc.finish().unwrap();

        let mut enc = Encoder::new(p, vec![Vec::new(); 6]).unwrap();
        io::copy(&mut &data[..], &mut enc).unwrap();
        let copied = enc.finish().unwrap();

        for other in [&chunked, &read, &copied] {
            assert_eq!(other.sinks, whole.sinks);
            assert_eq!(other.checksums, whole.checksums);
            assert_eq!(other.layout, whole.layout);
        }
    }

    #[test]
    fn threads_do_not_change_the_output() {
        let p = params(3, 2, PARALLEL_MIN_UNIT as u32);
        let data: Vec<u8> = (0..500_000u32).map(|i| ((i * 31) >> 3) as u8).collect();
        let mut outputs = Vec::new();
        for threads in [1, 2, 4] {
            let mut enc = Encoder::new(p, vec![Vec::new(); 5]).unwrap();
            enc.set_threads(threads);
            enc.push(&data[..1000]).unwrap();
            enc.push(&data[1000..]).unwrap();
            outputs.push(enc.finish().unwrap());
        }
        for o in &outputs[1..] {
            assert_eq!(o.sinks, outputs[0].sinks);
            assert_eq!(o.checksums, outputs[0].checksums);
        }
        for (i, shard) in outputs[0].sinks.iter().enumerate() {
            for (s, unit) in shard.chunks_exact(PARALLEL_MIN_UNIT).enumerate() {
                assert!(outputs[0].checksums.verify(i, s as u64, unit));
            }
        }
    }

    /// Memory stays bounded by one stripe: each stripe's units reach the sinks
    /// before the reader has produced more than one further stripe of input.
    #[test]
    fn units_are_emitted_as_input_streams_in() {
        use std::cell::Cell;
        use std::rc::Rc;

        struct Source {
            produced: Rc<Cell<u64>>,
            left: u64,
        }
        impl Read for Source {
            fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
                let n = buf.len().min(self.left as usize).min(1000);
                buf[..n].fill(0xA5);
                self.left -= n as u64;
                self.produced.set(self.produced.get() + n as u64);
                Ok(n)
            }
        }
        struct Sink {
            produced: Rc<Cell<u64>>,
            written: u64,
            stripe_bytes: u64,
            unit: u64,
        }
        impl Write for Sink {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                self.written += buf.len() as u64;
                let stripes_out = self.written / self.unit;
                assert!(
                    self.produced.get() <= (stripes_out + 1) * self.stripe_bytes,
                    "stripe {stripes_out} written only after {} input bytes",
                    self.produced.get()
                );
                Ok(buf.len())
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }

        let p = params(4, 2, 4096);
        let produced = Rc::new(Cell::new(0));
        let sinks: Vec<Sink> = (0..6)
            .map(|_| Sink {
                produced: produced.clone(),
                written: 0,
                stripe_bytes: p.stripe_bytes(),
                unit: 4096,
            })
            .collect();
        let total = 100 * p.stripe_bytes() + 123;
        let mut enc = Encoder::new(p, sinks).unwrap();
        let mut source = Source {
            produced: produced.clone(),
            left: total,
        };
        assert_eq!(enc.read_from(&mut source).unwrap(), total);
        let done = enc.finish().unwrap();
        assert_eq!(done.layout.stripe_count(), 101);
        assert!(done.sinks.iter().all(|s| s.written == 101 * 4096));
    }

    #[test]
    fn empty_input_still_yields_one_stripe() {
        let enc = encode_bytes(params(2, 1, 64), &[]).unwrap();
        assert_eq!(enc.layout.stripe_count(), 1);
        assert!(enc.sinks.iter().all(|s| s == &vec![0u8; 64]));
    }

    #[test]
    fn wrong_sink_count_and_failing_sink_are_reported() {
        let p = params(2, 1, 64);
        assert!(matches!(
            Encoder::new(p, vec![Vec::<u8>::new(); 2]),
            Err(EncodeError::SinkCount {
                expected: 3,
                got: 2
            })
        ));

        struct Failing;
        impl Write for Failing {
            fn write(&mut self, _: &[u8]) -> io::Result<usize> {
                Err(io::Error::other("disk full"))
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let sinks: Vec<Box<dyn Write>> = vec![
            Box::new(Vec::new()),
            Box::new(Failing),
            Box::new(Vec::new()),
        ];
        let mut enc = Encoder::new(p, sinks).unwrap();
        let err = enc.push(&[1; 128]).unwrap_err();
        assert!(matches!(err, EncodeError::Sink { shard: 1, .. }), "{err}");
        assert!(matches!(enc.push(&[1]), Err(EncodeError::Poisoned)));
    }
}
