//! How a group sits in its stored shards, so that its id alone is enough to
//! read it (and the dataset id alone to read the dataset: it is the id of the
//! index group, whose content lists the data groups' ids).
//!
//! Stored shard `i` of a group (the bytes a provider holds, proves and is paid
//! for) is:
//!
//! ```text
//! | erasure-coded content (GroupManifest::shard_len) | group manifest unit i | trailer (64 B) |
//! ```
//!
//! The canonical group manifest is Reed-Solomon coded with the group's own
//! `k + m` into one unit per shard, so any `k` shards rebuild it, exactly like
//! the content. The trailer, last in the shard like a Parquet footer, says where
//! the parts are. A reader knows each shard's stored size from its deal on
//! chain, reads the trailer, then the manifest units of `k` shards, and checks
//! the rebuilt manifest against the group id (its BLAKE3). A corrupted trailer
//! or unit cannot pass that check; [`recover_group`] tries other shards' units
//! until one combination does.
//!
//! The data region starts at offset 0, so an [`erasure::Decoder`] reads a
//! stored shard unchanged.
//!
//! [`erasure::Decoder`]: crate::erasure::Decoder
use std::ops::Range;

use crate::codec::{DecodeError, Reader};
use crate::erasure::{ErasureParams, Layout, ParamsError};
use crate::group::{encoded_len, params_for, GroupManifest};
use crate::hash::DatasetId;

/// Size of the trailer at the end of every stored shard.
pub const TRAILER_LEN: u64 = 64;

/// First bytes of a trailer; the last byte is the format version.
pub const TRAILER_MAGIC: [u8; 8] = *b"cairnds\x02";

/// Largest group manifest a trailer may announce (64 MiB of unit checksums
/// covers far more stripes than a group of 4 GiB shards holds).
pub const MAX_MANIFEST_LEN: u64 = 64 << 20;

/// The 64-byte trailer of a stored shard. All integers little-endian:
/// magic (8) · shard index (u16) · k (u16) · m (u16) · zero (u16) · data length
/// (u64) · manifest length (u64) · manifest unit length (u64) · zero (24).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trailer {
    /// Which shard this is (`0..k + m`).
    pub shard_index: u16,
    /// Data shards.
    pub k: u16,
    /// Parity shards.
    pub m: u16,
    /// Length of the erasure-coded content ([`GroupManifest::shard_len`]).
    pub data_len: u64,
    /// Length of the canonical group manifest.
    pub manifest_len: u64,
    /// Length of each shard's manifest unit ([`manifest_unit_len`]).
    pub manifest_unit: u64,
}

/// Length of each shard's unit of a `manifest_len`-byte manifest split over `k`
/// data shards (at least 1, so an empty input still has a unit).
pub fn manifest_unit_len(manifest_len: u64, k: u16) -> u64 {
    manifest_len.div_ceil(u64::from(k.max(1))).max(1)
}

impl Trailer {
    /// The trailer's bytes.
    pub fn encode(&self) -> [u8; TRAILER_LEN as usize] {
        let mut out = [0u8; TRAILER_LEN as usize];
        out[..8].copy_from_slice(&TRAILER_MAGIC);
        out[8..10].copy_from_slice(&self.shard_index.to_le_bytes());
        out[10..12].copy_from_slice(&self.k.to_le_bytes());
        out[12..14].copy_from_slice(&self.m.to_le_bytes());
        out[16..24].copy_from_slice(&self.data_len.to_le_bytes());
        out[24..32].copy_from_slice(&self.manifest_len.to_le_bytes());
        out[32..40].copy_from_slice(&self.manifest_unit.to_le_bytes());
        out
    }

    /// Decodes and checks a trailer: magic and version, zero padding, shard
    /// index below `k + m`, valid erasure parameters, and a manifest unit
    /// length that matches the manifest length.
    pub fn decode(bytes: &[u8]) -> Result<Trailer, DecodeError> {
        let mut r = Reader::new(bytes);
        let magic: [u8; 8] = r.array()?;
        if magic[..7] != TRAILER_MAGIC[..7] {
            return Err(DecodeError::Invalid {
                field: "trailer.magic",
                reason: "not a Cairn shard trailer",
            });
        }
        if magic[7] != TRAILER_MAGIC[7] {
            return Err(DecodeError::BadVersion(magic[7]));
        }
        let le16 = |b: [u8; 2]| u16::from_le_bytes(b);
        let le64 = |b: [u8; 8]| u64::from_le_bytes(b);
        let shard_index = le16(r.array()?);
        let k = le16(r.array()?);
        let m = le16(r.array()?);
        let pad: [u8; 2] = r.array()?;
        let data_len = le64(r.array()?);
        let manifest_len = le64(r.array()?);
        let manifest_unit = le64(r.array()?);
        let tail: [u8; 24] = r.array()?;
        r.finish()?;
        if pad != [0; 2] || tail != [0; 24] {
            return Err(DecodeError::Invalid {
                field: "trailer.padding",
                reason: "reserved bytes are not zero",
            });
        }
        if ErasureParams::with_default_unit(k, m).is_err() {
            return Err(DecodeError::Invalid {
                field: "trailer.k",
                reason: "not valid erasure parameters",
            });
        }
        if u32::from(shard_index) >= u32::from(k) + u32::from(m) {
            return Err(DecodeError::Invalid {
                field: "trailer.shard_index",
                reason: "shard index is not below k + m",
            });
        }
        if manifest_len == 0 || manifest_len > MAX_MANIFEST_LEN {
            return Err(DecodeError::Invalid {
                field: "trailer.manifest_len",
                reason: "manifest length out of range",
            });
        }
        if manifest_unit != manifest_unit_len(manifest_len, k) {
            return Err(DecodeError::Invalid {
                field: "trailer.manifest_unit",
                reason: "does not match the manifest length and k",
            });
        }
        if data_len.checked_add(manifest_unit + TRAILER_LEN).is_none() {
            return Err(DecodeError::Invalid {
                field: "trailer.data_len",
                reason: "stored shard length overflows",
            });
        }
        Ok(Trailer {
            shard_index,
            k,
            m,
            data_len,
            manifest_len,
            manifest_unit,
        })
    }

    /// Total stored shard length: data, manifest unit, trailer.
    pub fn stored_len(&self) -> u64 {
        self.data_len + self.manifest_unit + TRAILER_LEN
    }

    /// Where this shard's manifest unit is.
    pub fn manifest_unit_range(&self) -> Range<u64> {
        self.data_len..self.data_len + self.manifest_unit
    }
}

/// Where the trailer of a stored shard of `stored_len` bytes is (`None` if the
/// shard is too short to have one).
pub fn trailer_range(stored_len: u64) -> Option<Range<u64>> {
    Some(stored_len.checked_sub(TRAILER_LEN)?..stored_len)
}

/// Size of every stored shard of a group: each shard's storage deal size.
pub fn stored_shard_len(group: &GroupManifest) -> u64 {
    let k = group.params().k() as u16;
    group.shard_len() + manifest_unit_len(encoded_len(&group.layout()) as u64, k) + TRAILER_LEN
}

/// Size of every stored shard of a group of `len` content bytes coded with
/// `k + m`, known before coding it (to plan groups against the market's
/// largest shard).
pub fn stored_shard_len_for(k: u16, m: u16, len: u64) -> Result<u64, ParamsError> {
    let layout = Layout::new(params_for(k, m, len)?, len)?;
    Ok(layout.shard_len() + manifest_unit_len(encoded_len(&layout) as u64, k) + TRAILER_LEN)
}

/// The group manifest encodes to more than [`MAX_MANIFEST_LEN`]: use larger
/// stripe units or smaller groups.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the group manifest encodes to {len} bytes, over the {MAX_MANIFEST_LEN}-byte limit")]
pub struct ManifestTooLarge {
    /// Canonical length.
    pub len: u64,
}

/// The bytes that follow each shard's content: `tails[i]` is the group
/// manifest unit of shard `i` followed by its trailer.
pub fn shard_tails(group: &GroupManifest) -> Result<Vec<Vec<u8>>, ManifestTooLarge> {
    let params = group.params();
    let (k, m) = (params.k() as u16, params.m() as u16);
    let canonical = group.encode();
    if canonical.len() as u64 > MAX_MANIFEST_LEN {
        return Err(ManifestTooLarge {
            len: canonical.len() as u64,
        });
    }
    let unit = manifest_unit_len(canonical.len() as u64, k) as usize;
    let mut units: Vec<Vec<u8>> = (0..params.n()).map(|_| vec![0u8; unit]).collect();
    for (i, chunk) in canonical.chunks(unit).enumerate() {
        units[i][..chunk.len()].copy_from_slice(chunk);
    }
    params
        .reed_solomon()
        .encode(&mut units)
        .expect("k + m units of one length");
    Ok(units
        .into_iter()
        .enumerate()
        .map(|(i, mut tail)| {
            let trailer = Trailer {
                shard_index: i as u16,
                k,
                m,
                data_len: group.shard_len(),
                manifest_len: canonical.len() as u64,
                manifest_unit: unit as u64,
            };
            tail.extend_from_slice(&trailer.encode());
            tail
        })
        .collect())
}

/// Codes the dataset manifest as the content of the index group (coded
/// content only; append [`shard_tails`] to store it). Its id is the dataset id.
pub fn index_group(
    manifest: &crate::Manifest,
    salt: crate::Hash,
) -> Result<(GroupManifest, Vec<Vec<u8>>), crate::group::EncodeGroupError> {
    crate::group::encode_group_bytes(
        crate::group::GroupKind::Index,
        salt,
        0,
        0,
        manifest.k(),
        manifest.m(),
        &manifest.encode(),
    )
}

/// Why a group manifest could not be rebuilt.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecoverManifestError {
    /// Fewer than `k` manifest units were supplied.
    #[error("{have} manifest units of the {need} needed to rebuild the manifest")]
    TooFewUnits {
        /// Units supplied.
        have: usize,
        /// `k`.
        need: usize,
    },
    /// `units` does not have one entry per shard.
    #[error("expected {expected} unit slots (k + m), got {got}")]
    SlotCount {
        /// `k + m`.
        expected: usize,
        /// Supplied.
        got: usize,
    },
    /// No combination of `k` units tried rebuilds a group manifest with this
    /// id: units or the trailer are corrupted, or the shards belong to another
    /// group.
    #[error(
        "none of {attempts} combinations of {k} of the {have} manifest units rebuilds a group \
         manifest with id {id}"
    )]
    NoMatch {
        /// The group id sought.
        id: DatasetId,
        /// `k`.
        k: usize,
        /// Units supplied.
        have: usize,
        /// Combinations tried (every one, or [`MAX_RECOVERY_ATTEMPTS`]).
        attempts: u64,
    },
}

/// Most `k`-subsets [`recover_group`] tries before giving up. Subsets are
/// tried by the units they leave out, in lexicographic order, so with `b` bad
/// units among those present the first subset that avoids them all comes
/// after at most `C(k + b, b)` tries: any one bad unit within 17 tries at
/// `k = 16`, any three within 969. Each try is one Reed-Solomon decode and one
/// BLAKE3 of at most [`MAX_MANIFEST_LEN`] bytes, so recovery costs at most this
/// many of them (trying every subset would cost `C(present, k)`: about 3×10⁸
/// at `k = 16` with one bad unit).
pub const MAX_RECOVERY_ATTEMPTS: u64 = 1024;

/// Rebuilds the manifest of group `id` from the manifest units of at least
/// `k` shards (`units[i]` for shard `i`, `None` if unavailable), described by
/// `trailer`. Tries `k`-subsets of the units, leaving out the data shards'
/// units last, until the rebuilt bytes hash to `id` and decode as a group
/// manifest of that shard size, at most [`MAX_RECOVERY_ATTEMPTS`] of them;
/// returns it and the shards whose units were used.
pub fn recover_group(
    id: &DatasetId,
    trailer: &Trailer,
    units: &[Option<Vec<u8>>],
) -> Result<(GroupManifest, Vec<usize>), RecoverManifestError> {
    let params = ErasureParams::with_default_unit(trailer.k, trailer.m)
        .expect("a decoded trailer has valid parameters");
    let (k, n) = (params.k(), params.n());
    if units.len() != n {
        return Err(RecoverManifestError::SlotCount {
            expected: n,
            got: units.len(),
        });
    }
    let unit_len = trailer.manifest_unit as usize;
    let present: Vec<usize> = (0..n)
        .filter(|&i| units[i].as_ref().is_some_and(|u| u.len() == unit_len))
        .collect();
    if present.len() < k {
        return Err(RecoverManifestError::TooFewUnits {
            have: present.len(),
            need: k,
        });
    }
    let rs = params.reed_solomon();
    // The present units left out of the subset tried, as positions in
    // `present` counted from its end (so the parity units go first).
    let mut left_out: Vec<usize> = (0..present.len() - k).collect();
    let mut attempts = 0u64;
    loop {
        attempts += 1;
        let skipped = |i: usize| left_out.contains(&(present.len() - 1 - i));
        let used: Vec<usize> = (0..present.len())
            .filter(|&i| !skipped(i))
            .map(|i| present[i])
            .collect();
        let mut shards: Vec<Option<Vec<u8>>> = vec![None; n];
        for &i in &used {
            shards[i] = units[i].clone();
        }
        if rs.reconstruct_data(&mut shards).is_ok() {
            let mut canonical: Vec<u8> = shards[..k]
                .iter()
                .flat_map(|u| u.as_deref().expect("reconstructed").iter().copied())
                .collect();
            canonical.truncate(trailer.manifest_len as usize);
            if DatasetId::of_canonical_bytes(&canonical) == *id {
                if let Ok(group) = GroupManifest::decode(&canonical) {
                    if group.shard_len() == trailer.data_len {
                        return Ok((group, used));
                    }
                }
            }
        }
        if attempts >= MAX_RECOVERY_ATTEMPTS || !next_combination(&mut left_out, present.len()) {
            return Err(RecoverManifestError::NoMatch {
                id: *id,
                k,
                have: present.len(),
                attempts,
            });
        }
    }
}

/// Advances `c` (a strictly increasing subset of `0..n`) to the next one of
/// its size in lexicographic order; false after the last.
fn next_combination(c: &mut [usize], n: usize) -> bool {
    let k = c.len();
    for i in (0..k).rev() {
        if c[i] < n - k + i {
            c[i] += 1;
            for j in i + 1..k {
                c[j] = c[j - 1] + 1;
            }
            return true;
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::{encode_group_bytes, GroupKind};

    fn manifest(k: u16, m: u16) -> (GroupManifest, Vec<Vec<u8>>) {
        let content: Vec<u8> = (0..120_000u32).map(|i| (i % 241) as u8).collect();
        encode_group_bytes(GroupKind::Data, [5; 32], 2, 1 << 20, k, m, &content).unwrap()
    }

    /// Stored shards: data then tail.
    fn stored(manifest: &GroupManifest, data: &[Vec<u8>]) -> Vec<Vec<u8>> {
        data.iter()
            .zip(shard_tails(manifest).unwrap())
            .map(|(d, t)| [d.as_slice(), &t].concat())
            .collect()
    }

    fn units_of(stored: &[Vec<u8>], t: &Trailer) -> Vec<Option<Vec<u8>>> {
        let r = t.manifest_unit_range();
        stored
            .iter()
            .map(|s| Some(s[r.start as usize..r.end as usize].to_vec()))
            .collect()
    }

    #[test]
    fn any_k_stored_shards_rebuild_the_manifest_from_the_id_alone() {
        let (manifest, data) = manifest(4, 2);
        let shards = stored(&manifest, &data);
        let len = stored_shard_len(&manifest);
        assert!(shards.iter().all(|s| s.len() as u64 == len));
        assert_eq!(stored_shard_len_for(4, 2, manifest.len()), Ok(len));
        for lost in [[0, 1], [2, 5], [4, 5], [0, 3]] {
            let t = Trailer::decode(
                &shards[3 - lost[0].min(3)][trailer_range(len).unwrap().start as usize..],
            )
            .unwrap();
            assert_eq!(t.stored_len(), len);
            let mut units = units_of(&shards, &t);
            for i in lost {
                units[i] = None;
            }
            let (got, used) = recover_group(&manifest.id(), &t, &units).unwrap();
            assert_eq!(got, manifest);
            assert_eq!(used.len(), 4);
            assert!(used.iter().all(|u| !lost.contains(u)));
        }
    }

    #[test]
    fn a_corrupted_unit_is_routed_around_and_too_few_is_an_error() {
        let (manifest, data) = manifest(4, 2);
        let shards = stored(&manifest, &data);
        let t = Trailer::decode(
            &shards[0][trailer_range(shards[0].len() as u64).unwrap().start as usize..],
        )
        .unwrap();
        let mut units = units_of(&shards, &t);
        units[1].as_mut().unwrap()[5] ^= 1;
        let (got, used) = recover_group(&manifest.id(), &t, &units).unwrap();
        assert_eq!(got, manifest);
        assert!(!used.contains(&1));
        // Two corrupted and one missing: only 3 good of 5 present.
        units[2].as_mut().unwrap()[0] ^= 1;
        units[5] = None;
        assert_eq!(
            recover_group(&manifest.id(), &t, &units).unwrap_err(),
            RecoverManifestError::NoMatch {
                id: manifest.id(),
                k: 4,
                have: 5,
                attempts: 5
            }
        );
        units[0] = None;
        units[3] = None;
        assert_eq!(
            recover_group(&manifest.id(), &t, &units).unwrap_err(),
            RecoverManifestError::TooFewUnits { have: 3, need: 4 }
        );
        // Another dataset's id never matches.
        let units = units_of(&shards, &t);
        assert!(matches!(
            recover_group(&DatasetId([0; 32]), &t, &units),
            Err(RecoverManifestError::NoMatch { .. })
        ));
    }

    #[test]
    fn trailers_round_trip_and_malformed_ones_are_typed_errors() {
        let t = Trailer {
            shard_index: 5,
            k: 4,
            m: 2,
            data_len: 1 << 30,
            manifest_len: 1000,
            manifest_unit: 250,
        };
        let bytes = t.encode();
        assert_eq!(Trailer::decode(&bytes), Ok(t));
        assert!(matches!(
            Trailer::decode(&bytes[..63]),
            Err(DecodeError::Truncated { .. })
        ));
        let mut long = bytes.to_vec();
        long.push(0);
        assert!(matches!(
            Trailer::decode(&long),
            Err(DecodeError::TrailingBytes { .. })
        ));
        let bad = |at: usize, value: u8| {
            let mut b = bytes;
            b[at] = value;
            Trailer::decode(&b).unwrap_err()
        };
        assert!(matches!(
            bad(0, b'X'),
            DecodeError::Invalid {
                field: "trailer.magic",
                ..
            }
        ));
        assert_eq!(bad(7, 1), DecodeError::BadVersion(1));
        assert!(matches!(
            bad(8, 6),
            DecodeError::Invalid {
                field: "trailer.shard_index",
                ..
            }
        ));
        assert!(matches!(
            bad(10, 0),
            DecodeError::Invalid {
                field: "trailer.k",
                ..
            }
        ));
        assert!(matches!(
            bad(14, 1),
            DecodeError::Invalid {
                field: "trailer.padding",
                ..
            }
        ));
        assert!(matches!(
            bad(63, 1),
            DecodeError::Invalid {
                field: "trailer.padding",
                ..
            }
        ));
        assert!(matches!(
            bad(32, 7),
            DecodeError::Invalid {
                field: "trailer.manifest_unit",
                ..
            }
        ));
        assert!(matches!(
            bad(31, 0xff),
            DecodeError::Invalid {
                field: "trailer.manifest_len",
                ..
            }
        ));
        let huge = Trailer {
            data_len: u64::MAX - 100,
            ..t
        }
        .encode();
        assert!(matches!(
            Trailer::decode(&huge),
            Err(DecodeError::Invalid {
                field: "trailer.data_len",
                ..
            })
        ));
        assert_eq!(trailer_range(63), None);
        assert_eq!(trailer_range(64), Some(0..64));
    }

    #[test]
    fn recovery_is_bounded_and_finds_few_bad_units_quickly() {
        let (manifest, data) = manifest(16, 8);
        let shards = stored(&manifest, &data);
        let t = Trailer::decode(
            &shards[0][trailer_range(shards[0].len() as u64).unwrap().start as usize..],
        )
        .unwrap();
        let good = units_of(&shards, &t);
        // One bad unit anywhere, or three: found (within C(k + b, b) tries).
        for bad in [vec![0], vec![15], vec![23], vec![0, 7, 15]] {
            let mut units = good.clone();
            for &i in &bad {
                units[i].as_mut().unwrap()[0] ^= 1;
            }
            let (got, used) = recover_group(&manifest.id(), &t, &units).unwrap();
            assert_eq!(got, manifest);
            assert!(used.iter().all(|u| !bad.contains(u)), "{bad:?}: {used:?}");
        }
        // Nine bad of 24 (15 good, 16 needed): C(24, 16) = 735471 subsets,
        // but only MAX_RECOVERY_ATTEMPTS are tried.
        let mut units = good.clone();
        for i in [0, 1, 3, 6, 9, 12, 15, 18, 21] {
            units[i].as_mut().unwrap()[1] ^= 1;
        }
        let started = std::time::Instant::now();
        assert_eq!(
            recover_group(&manifest.id(), &t, &units).unwrap_err(),
            RecoverManifestError::NoMatch {
                id: manifest.id(),
                k: 16,
                have: 24,
                attempts: MAX_RECOVERY_ATTEMPTS
            }
        );
        assert!(started.elapsed() < std::time::Duration::from_secs(30));
    }

    #[test]
    fn combinations_cover_every_k_subset_once() {
        let mut c = vec![0, 1, 2, 3];
        let mut seen = 1;
        while next_combination(&mut c, 6) {
            assert!(c.windows(2).all(|w| w[0] < w[1]) && c[3] < 6);
            seen += 1;
        }
        assert_eq!(seen, 15);
    }
}
