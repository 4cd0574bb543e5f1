//! Reed-Solomon erasure coding of a packed dataset into `k + m` shards.
//!
//! The packed byte stream is cut into stripes of `k × stripe_unit` bytes (the last
//! one zero-padded). Each stripe is split into `k` data units and Reed-Solomon
//! (GF(2^8), `reed-solomon-erasure` with SIMD) adds `m` parity units. Shard `i` is
//! unit `i` of every stripe, concatenated, so every shard is exactly
//! [`Layout::shard_len`] bytes. Every unit's BLAKE3 checksum is recorded
//! ([`UnitChecksums`]) so a reader verifies each unit it fetches.
//!
//! - [`Encoder`] streams: push bytes (or let it pull from a `Read`) and it writes
//!   each stripe's units to per-shard `Write` sinks; memory is one stripe.
//!   Hashing dominates the cost (BLAKE3 runs at about half the speed of
//!   Reed-Solomon here), so with large units helper threads hash the data units
//!   while the parity is computed, then all threads share the parity units
//!   ([`default_threads`]).
//! - [`Decoder`] reads a byte range from per-shard [`UnitSource`]s (any may be
//!   missing), fetching only the stripes, and when the data shards are healthy only
//!   the units, that the range touches; a corrupted or unreadable unit is detected
//!   and rebuilt from the others.

mod decode;
mod encode;
mod source;

pub use decode::{DecodeReport, Decoder, ReadFault, RecoverError, UnitLocation, MAX_DECODE_STRIPE};
pub use encode::{encode_bytes, EncodeError, Encoded, Encoder};
pub use source::{FnSource, SeekSource, StreamSource, UnitSource};

use crate::hash::Hash;
use std::ops::Range;

/// Default stripe unit: 1 MiB. Large enough that per-unit overheads (a checksum,
/// a sink write, one QUIC range request) vanish, small enough that a stripe of
/// `k + m` units stays a few tens of MiB.
pub const DEFAULT_STRIPE_UNIT: u32 = 1 << 20;

/// Largest accepted stripe unit (64 MiB), which bounds encoder/decoder memory to
/// `(k + m) × 64 MiB`.
pub const MAX_STRIPE_UNIT: u32 = 64 << 20;

/// A stripe unit must be a multiple of this, so a shard is a whole number of the
/// 64-byte segments that storage proofs sample.
pub const STRIPE_UNIT_ALIGN: u32 = 64;

/// Most shards (`k + m`) a GF(2^8) Reed-Solomon code supports.
pub const MAX_SHARDS: usize = 256;

/// Units smaller than this are hashed on the calling thread: below it, starting a
/// thread costs more than it saves.
pub const PARALLEL_MIN_UNIT: usize = 64 * 1024;

/// Most threads an encoder or decoder uses by default.
pub const MAX_DEFAULT_THREADS: usize = 4;

/// The default number of threads: the available parallelism, at most
/// [`MAX_DEFAULT_THREADS`].
pub fn default_threads() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
        .clamp(1, MAX_DEFAULT_THREADS)
}

/// BLAKE3 of each unit into `out`.
pub(crate) fn hash_into(units: &[&[u8]], out: &mut [Hash]) {
    for (unit, sum) in units.iter().zip(out) {
        *sum = *blake3::hash(unit).as_bytes();
    }
}

/// Invalid erasure-coding parameters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamsError {
    /// `k` is zero.
    #[error("the number of data shards (k) must be at least 1")]
    NoDataShards,
    /// `m` is zero.
    #[error("the number of parity shards (m) must be at least 1")]
    NoParityShards,
    /// `k + m` exceeds [`MAX_SHARDS`].
    #[error("k + m = {k} + {m} exceeds the maximum of {MAX_SHARDS} shards")]
    TooManyShards {
        /// Data shards requested.
        k: u16,
        /// Parity shards requested.
        m: u16,
    },
    /// The stripe unit is zero, not a multiple of [`STRIPE_UNIT_ALIGN`], or above
    /// [`MAX_STRIPE_UNIT`].
    #[error(
        "stripe unit {unit} is invalid: it must be a non-zero multiple of {STRIPE_UNIT_ALIGN} \
         bytes, at most {MAX_STRIPE_UNIT}"
    )]
    StripeUnit {
        /// The unit requested.
        unit: u32,
    },
    /// The dataset is too large for the shard length to fit in a `u64`.
    #[error("a dataset of {total_len} bytes is too large for these parameters")]
    DatasetTooLarge {
        /// Length of the packed dataset.
        total_len: u64,
    },
}

/// Erasure-coding parameters: `k` data shards, `m` parity shards, unit size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ErasureParams {
    k: u16,
    m: u16,
    stripe_unit: u32,
}

impl ErasureParams {
    /// Validated parameters: `k >= 1`, `m >= 1`, `k + m <= 256`, and a stripe unit
    /// that is a non-zero multiple of 64 bytes up to [`MAX_STRIPE_UNIT`].
    pub fn new(k: u16, m: u16, stripe_unit: u32) -> Result<Self, ParamsError> {
        if k == 0 {
            return Err(ParamsError::NoDataShards);
        }
        if m == 0 {
            return Err(ParamsError::NoParityShards);
        }
        if k as usize + m as usize > MAX_SHARDS {
            return Err(ParamsError::TooManyShards { k, m });
        }
        if stripe_unit == 0
            || !stripe_unit.is_multiple_of(STRIPE_UNIT_ALIGN)
            || stripe_unit > MAX_STRIPE_UNIT
        {
            return Err(ParamsError::StripeUnit { unit: stripe_unit });
        }
        Ok(ErasureParams { k, m, stripe_unit })
    }

    /// `k` and `m` with the [`DEFAULT_STRIPE_UNIT`].
    pub fn with_default_unit(k: u16, m: u16) -> Result<Self, ParamsError> {
        Self::new(k, m, DEFAULT_STRIPE_UNIT)
    }

    /// Number of data shards.
    pub fn k(&self) -> usize {
        self.k as usize
    }

    /// Number of parity shards.
    pub fn m(&self) -> usize {
        self.m as usize
    }

    /// Total number of shards, `k + m`.
    pub fn n(&self) -> usize {
        self.k() + self.m()
    }

    /// Bytes per stripe unit.
    pub fn stripe_unit(&self) -> usize {
        self.stripe_unit as usize
    }

    /// Bytes of packed data per stripe, `k × stripe_unit`.
    pub fn stripe_bytes(&self) -> u64 {
        self.k as u64 * self.stripe_unit as u64
    }

    /// The raw `(k, m, stripe_unit)` triple, as encoded in manifests.
    pub fn raw(&self) -> (u16, u16, u32) {
        (self.k, self.m, self.stripe_unit)
    }

    pub(crate) fn reed_solomon(&self) -> reed_solomon_erasure::galois_8::ReedSolomon {
        reed_solomon_erasure::galois_8::ReedSolomon::new(self.k(), self.m())
            .expect("parameters validated in ErasureParams::new")
    }
}

/// Where every byte of a dataset of `total_len` packed bytes lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Layout {
    params: ErasureParams,
    total_len: u64,
}

impl Layout {
    /// The layout of `total_len` packed bytes under `params`.
    pub fn new(params: ErasureParams, total_len: u64) -> Result<Self, ParamsError> {
        let stripes = total_len.div_ceil(params.stripe_bytes()).max(1);
        if stripes.checked_mul(params.stripe_unit as u64).is_none() {
            return Err(ParamsError::DatasetTooLarge { total_len });
        }
        Ok(Layout { params, total_len })
    }

    /// The erasure parameters.
    pub fn params(&self) -> ErasureParams {
        self.params
    }

    /// Length of the packed dataset in bytes.
    pub fn total_len(&self) -> u64 {
        self.total_len
    }

    /// Number of stripes. At least 1, even for an empty dataset, so that every
    /// shard is non-empty and can be stored and proved like any other.
    pub fn stripe_count(&self) -> u64 {
        self.total_len.div_ceil(self.params.stripe_bytes()).max(1)
    }

    /// Length of every shard in bytes: `stripe_count × stripe_unit`. This is the
    /// exact size to propose in each shard's storage deal.
    pub fn shard_len(&self) -> u64 {
        self.stripe_count() * self.params.stripe_unit as u64
    }

    /// The byte range of stripe `stripe`'s unit inside any shard.
    pub fn unit_range_in_shard(&self, stripe: u64) -> Range<u64> {
        let unit = self.params.stripe_unit as u64;
        stripe * unit..(stripe + 1) * unit
    }

    /// The stripes that hold the packed bytes `range` (empty for an empty range).
    pub fn stripes_for_range(&self, range: Range<u64>) -> Range<u64> {
        if range.start >= range.end {
            return 0..0;
        }
        let sb = self.params.stripe_bytes();
        range.start / sb..(range.end - 1) / sb + 1
    }

    /// The byte range to request from each shard to read the packed bytes `range`
    /// (for example a single file): the units of [`Layout::stripes_for_range`].
    pub fn shard_range_for(&self, range: Range<u64>) -> Range<u64> {
        let stripes = self.stripes_for_range(range);
        let unit = self.params.stripe_unit as u64;
        stripes.start * unit..stripes.end * unit
    }
}

/// BLAKE3 checksum of every unit of every stripe, stripe-major: the `k + m`
/// checksums of stripe 0 (shard 0 first), then stripe 1, and so on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UnitChecksums {
    shards: usize,
    sums: Vec<Hash>,
}

impl UnitChecksums {
    /// Wraps `sums` (stripe-major, `shards` per stripe). `sums.len()` must be a
    /// non-zero multiple of `shards`.
    pub fn from_stripe_major(shards: usize, sums: Vec<Hash>) -> Option<Self> {
        (shards > 0 && !sums.is_empty() && sums.len().is_multiple_of(shards))
            .then_some(UnitChecksums { shards, sums })
    }

    /// Number of shards per stripe (`k + m`).
    pub fn shard_count(&self) -> usize {
        self.shards
    }

    /// Number of stripes covered.
    pub fn stripe_count(&self) -> u64 {
        (self.sums.len() / self.shards) as u64
    }

    /// The checksum of `shard`'s unit in `stripe`, if both are in range.
    pub fn get(&self, shard: usize, stripe: u64) -> Option<&Hash> {
        if shard >= self.shards {
            return None;
        }
        let idx = usize::try_from(stripe).ok()?.checked_mul(self.shards)?;
        self.sums.get(idx.checked_add(shard)?)
    }

    /// The checksums of `shard`'s units, in stripe order.
    pub fn for_shard(&self, shard: usize) -> impl Iterator<Item = &Hash> + '_ {
        self.sums.iter().skip(shard).step_by(self.shards)
    }

    /// Whether `unit` is `shard`'s unit of `stripe` according to its checksum.
    pub fn verify(&self, shard: usize, stripe: u64, unit: &[u8]) -> bool {
        self.get(shard, stripe)
            .is_some_and(|sum| blake3::hash(unit) == blake3::Hash::from_bytes(*sum))
    }

    /// All checksums, stripe-major.
    pub fn as_slice(&self) -> &[Hash] {
        &self.sums
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_reject_each_bad_value() {
        assert_eq!(ErasureParams::new(0, 2, 64), Err(ParamsError::NoDataShards));
        assert_eq!(
            ErasureParams::new(4, 0, 64),
            Err(ParamsError::NoParityShards)
        );
        assert_eq!(
            ErasureParams::new(200, 57, 64),
            Err(ParamsError::TooManyShards { k: 200, m: 57 })
        );
        assert!(ErasureParams::new(200, 56, 64).is_ok());
        for unit in [0, 63, 100, MAX_STRIPE_UNIT + 64] {
            assert_eq!(
                ErasureParams::new(4, 2, unit),
                Err(ParamsError::StripeUnit { unit })
            );
        }
    }

    #[test]
    fn layout_counts_stripes_and_shard_len() {
        let p = ErasureParams::new(4, 2, 64).unwrap();
        let l = |len| Layout::new(p, len).unwrap();
        assert_eq!(l(0).stripe_count(), 1);
        assert_eq!(l(0).shard_len(), 64);
        assert_eq!(l(256).stripe_count(), 1);
        assert_eq!(l(257).stripe_count(), 2);
        assert_eq!(l(257).shard_len(), 128);
        assert_eq!(l(1000).stripes_for_range(256..512), 1..2);
        assert_eq!(l(1000).stripes_for_range(255..257), 0..2);
        assert_eq!(l(1000).stripes_for_range(5..5), 0..0);
        assert_eq!(l(1000).shard_range_for(300..700), 64..192);
        assert_eq!(
            Layout::new(ErasureParams::new(1, 1, 128).unwrap(), u64::MAX),
            Err(ParamsError::DatasetTooLarge {
                total_len: u64::MAX
            })
        );
    }

    #[test]
    fn checksums_index_stripe_major() {
        let sums: Vec<Hash> = (0..6u8).map(|i| [i; 32]).collect();
        let c = UnitChecksums::from_stripe_major(3, sums).unwrap();
        assert_eq!(c.stripe_count(), 2);
        assert_eq!(c.get(1, 1), Some(&[4u8; 32]));
        assert_eq!(c.get(3, 0), None);
        assert_eq!(c.get(0, 2), None);
        assert_eq!(
            c.for_shard(2).copied().collect::<Vec<_>>(),
            vec![[2u8; 32], [5u8; 32]]
        );
        assert!(UnitChecksums::from_stripe_major(4, vec![[0; 32]; 6]).is_none());
    }
}
