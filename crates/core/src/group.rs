//! Erasure groups: the unit in which a dataset is coded, stored and repaired.
//!
//! A dataset's packed stream is cut into consecutive **data groups** of
//! `group_len` bytes (the last one shorter). Each group is Reed-Solomon coded on
//! its own into `k + m` shards, and each shard is one storage deal. The
//! dataset's [`Manifest`](crate::Manifest) (files, empty directories, the group
//! list) is the content of one more, small **index group**.
//!
//! A group is described by its [`GroupManifest`]: kind, the upload's salt, its
//! position, its erasure layout and the BLAKE3 of every stripe unit. The
//! manifest's canonical encoding is stored in the group's own shards (see
//! [`crate::dataset`]) and its BLAKE3 is the group id, the id its deals carry on
//! chain. The index group's id is the dataset id; the dataset manifest lists
//! every data group's id, so the dataset id alone verifies every byte.
//!
//! The salt is drawn at random when an upload starts, so two uploads never share
//! a group id even when a group's bytes are equal (deal addresses are derived
//! from the group id and would otherwise collide).
//!
//! Canonical encoding (integers little-endian):
//!
//! | field          | type          | notes                                      |
//! |----------------|---------------|--------------------------------------------|
//! | magic          | `[u8; 4]`     | `b"CRNG"`                                  |
//! | version        | `u8`          | [`GROUP_FORMAT`]                           |
//! | kind           | `u8`          | 0 index, 1 data                            |
//! | salt           | `[u8; 32]`    |                                            |
//! | index          | `u32`         | data group number (0 for the index group)  |
//! | offset         | `u64`         | first packed byte (0 for the index group)  |
//! | k, m           | `u16`, `u16`  |                                            |
//! | stripe_unit    | `u32`         |                                            |
//! | len            | `u64`         | content bytes                              |
//! | unit checksums | `S × (k+m) × [u8; 32]` | stripe-major, `S` from the header |
use std::io::{Read, Write};

use crate::codec::{DecodeError, PutExt, Reader};
use crate::erasure::{
    Decoder, EncodeError, Encoder, ErasureParams, Layout, ParamsError, RecoverError, UnitChecksums,
    UnitSource, DEFAULT_STRIPE_UNIT, STRIPE_UNIT_ALIGN,
};
use crate::hash::{DatasetId, Hash};

/// First bytes of every encoded group manifest.
pub const GROUP_MAGIC: [u8; 4] = *b"CRNG";

/// Version of the group manifest format written by this build.
pub const GROUP_FORMAT: u8 = 1;

/// Bytes of an encoded group manifest before its checksums.
pub const GROUP_HEADER_LEN: usize = 4 + 1 + 1 + 32 + 4 + 8 + 2 + 2 + 4 + 8;

/// What a group holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum GroupKind {
    /// The dataset manifest; its group id is the dataset id.
    Index,
    /// A slice of the packed stream.
    Data,
}

/// Why a group manifest is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GroupError {
    /// The checksums do not cover exactly every unit of the layout.
    #[error(
        "group has checksums for {found_stripes} stripes of {found_shards} shards, its layout \
         has {expected_stripes} stripes of {expected_shards}"
    )]
    ChecksumCount {
        /// Stripes of the layout.
        expected_stripes: u64,
        /// Shards of the layout.
        expected_shards: usize,
        /// Stripes covered.
        found_stripes: u64,
        /// Shards covered.
        found_shards: usize,
    },
    /// An index group names a position other than 0.
    #[error("an index group has index 0 and offset 0, this one {index} and {offset}")]
    IndexPosition {
        /// Its index.
        index: u32,
        /// Its offset.
        offset: u64,
    },
    /// `offset + len` overflows.
    #[error("group at offset {offset} of {len} bytes runs past 2^64")]
    Overflow {
        /// Its offset.
        offset: u64,
        /// Its length.
        len: u64,
    },
    /// Invalid erasure parameters.
    #[error("invalid erasure parameters: {0}")]
    Params(#[from] ParamsError),
    /// The bytes are not a group manifest encoding.
    #[error("malformed group manifest: {0}")]
    Decode(#[from] DecodeError),
}

/// A validated group manifest. See the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupManifest {
    kind: GroupKind,
    salt: Hash,
    index: u32,
    offset: u64,
    layout: Layout,
    checksums: UnitChecksums,
}

impl GroupManifest {
    /// A group manifest from an encoder's `layout` and `checksums`, validated.
    pub fn new(
        kind: GroupKind,
        salt: Hash,
        index: u32,
        offset: u64,
        layout: Layout,
        checksums: UnitChecksums,
    ) -> Result<Self, GroupError> {
        let group = GroupManifest {
            kind,
            salt,
            index,
            offset,
            layout,
            checksums,
        };
        group.validate()?;
        Ok(group)
    }

    fn validate(&self) -> Result<(), GroupError> {
        let n = self.layout.params().n();
        if self.checksums.shard_count() != n
            || self.checksums.stripe_count() != self.layout.stripe_count()
        {
            return Err(GroupError::ChecksumCount {
                expected_stripes: self.layout.stripe_count(),
                expected_shards: n,
                found_stripes: self.checksums.stripe_count(),
                found_shards: self.checksums.shard_count(),
            });
        }
        if self.kind == GroupKind::Index && (self.index != 0 || self.offset != 0) {
            return Err(GroupError::IndexPosition {
                index: self.index,
                offset: self.offset,
            });
        }
        if self.offset.checked_add(self.layout.total_len()).is_none() {
            return Err(GroupError::Overflow {
                offset: self.offset,
                len: self.layout.total_len(),
            });
        }
        Ok(())
    }

    /// The group id: BLAKE3 of [`GroupManifest::encode`]. For the index group
    /// this is the dataset id.
    pub fn id(&self) -> DatasetId {
        DatasetId::of_canonical_bytes(&self.encode())
    }

    /// Index or data.
    pub fn kind(&self) -> GroupKind {
        self.kind
    }

    /// The upload's salt.
    pub fn salt(&self) -> &Hash {
        &self.salt
    }

    /// Data group number (0 for the index group).
    pub fn index(&self) -> u32 {
        self.index
    }

    /// The packed bytes of the dataset this group holds (`0..len` for the
    /// index group, whose content is the dataset manifest).
    pub fn range(&self) -> std::ops::Range<u64> {
        self.offset..self.offset + self.layout.total_len()
    }

    /// Content bytes.
    pub fn len(&self) -> u64 {
        self.layout.total_len()
    }

    /// Whether the group holds no content bytes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Where every content byte lives in the group's shards.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The erasure parameters.
    pub fn params(&self) -> ErasureParams {
        self.layout.params()
    }

    /// Length of each shard's coded data (before its tail).
    pub fn shard_len(&self) -> u64 {
        self.layout.shard_len()
    }

    /// BLAKE3 of every stripe unit.
    pub fn checksums(&self) -> &UnitChecksums {
        &self.checksums
    }

    /// A decoder over this group's shards (`sources[i]` for shard `i`, `None`
    /// when unavailable). Offsets it reads are group content offsets.
    pub fn decoder<S: UnitSource + Send>(
        &self,
        sources: Vec<Option<S>>,
    ) -> Result<Decoder<'_, S>, RecoverError> {
        Decoder::new(self.layout, &self.checksums, sources)
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Vec<u8> {
        let (k, m, unit) = self.params().raw();
        let mut out = Vec::with_capacity(encoded_len(&self.layout));
        out.extend_from_slice(&GROUP_MAGIC);
        out.push(GROUP_FORMAT);
        out.push(match self.kind {
            GroupKind::Index => 0,
            GroupKind::Data => 1,
        });
        out.extend_from_slice(&self.salt);
        out.put_u32(self.index);
        out.put_u64(self.offset);
        out.put_u16(k);
        out.put_u16(m);
        out.put_u32(unit);
        out.put_u64(self.layout.total_len());
        for sum in self.checksums.as_slice() {
            out.extend_from_slice(sum);
        }
        out
    }

    /// Decodes and validates a canonical encoding; anything else is an error.
    pub fn decode(bytes: &[u8]) -> Result<Self, GroupError> {
        let mut r = Reader::new(bytes);
        r.header(
            GROUP_MAGIC,
            GROUP_FORMAT,
            "group.magic",
            "not a Cairn group manifest (expected \"CRNG\")",
        )?;
        let kind = match r.u8()? {
            0 => GroupKind::Index,
            1 => GroupKind::Data,
            _ => {
                return Err(DecodeError::Invalid {
                    field: "group.kind",
                    reason: "neither index (0) nor data (1)",
                }
                .into())
            }
        };
        let salt: Hash = r.array()?;
        let index = r.u32()?;
        let offset = r.u64()?;
        let (k, m, unit) = (r.u16()?, r.u16()?, r.u32()?);
        let len = r.u64()?;
        let params = ErasureParams::new(k, m, unit)?;
        let layout = Layout::new(params, len)?;
        let n = params.n();
        let units = usize::try_from(layout.stripe_count())
            .ok()
            .and_then(|s| s.checked_mul(n))
            .filter(|u| u.checked_mul(32).is_some());
        let Some(units) = units else {
            return Err(DecodeError::Truncated {
                needed: usize::MAX,
                have: bytes.len(),
            }
            .into());
        };
        if r.remaining() < units * 32 {
            // Reports the length needed without allocating for it.
            r.take(units * 32)?;
        }
        let mut sums = Vec::with_capacity(units);
        for _ in 0..units {
            sums.push(r.array::<32>()?);
        }
        r.finish()?;
        let checksums = UnitChecksums::from_stripe_major(n, sums).expect("at least one stripe");
        GroupManifest::new(kind, salt, index, offset, layout, checksums)
    }
}

/// Length of the canonical encoding of a group manifest with `layout`.
pub fn encoded_len(layout: &Layout) -> usize {
    let n = layout.params().n() as u64;
    GROUP_HEADER_LEN + (layout.stripe_count() * n * 32) as usize
}

/// A stripe unit that does not pad a small group to megabytes: its content
/// split over `k`, rounded up to 64 bytes, at most [`DEFAULT_STRIPE_UNIT`].
pub fn stripe_unit_for(len: u64, k: u16) -> u32 {
    let per_shard = len.div_ceil(u64::from(k.max(1))).max(1);
    let aligned = per_shard.div_ceil(u64::from(STRIPE_UNIT_ALIGN)) * u64::from(STRIPE_UNIT_ALIGN);
    aligned.min(u64::from(DEFAULT_STRIPE_UNIT)) as u32
}

/// The erasure parameters a group of `len` content bytes is coded with.
pub fn params_for(k: u16, m: u16, len: u64) -> Result<ErasureParams, ParamsError> {
    ErasureParams::new(k, m, stripe_unit_for(len, k))
}

/// Codes `len` content bytes read from `reader` into `sinks` (exactly `k + m`,
/// shard `i` to `sinks[i]`) and returns the group's manifest and the sinks.
/// The reader must yield at least `len` bytes; only `len` are read.
#[allow(clippy::too_many_arguments, reason = "one field of the manifest each")]
pub fn encode_group<R: Read + ?Sized, W: Write>(
    kind: GroupKind,
    salt: Hash,
    index: u32,
    offset: u64,
    params: ErasureParams,
    len: u64,
    reader: &mut R,
    sinks: Vec<W>,
) -> Result<(GroupManifest, Vec<W>), EncodeGroupError> {
    let mut encoder = Encoder::new(params, sinks)?;
    let read = encoder.read_from(&mut reader.take(len))?;
    if read != len {
        return Err(EncodeGroupError::Short {
            expected: len,
            got: read,
        });
    }
    let encoded = encoder.finish()?;
    let group = GroupManifest::new(kind, salt, index, offset, encoded.layout, encoded.checksums)?;
    Ok((group, encoded.sinks))
}

/// Why a group could not be coded.
#[derive(Debug, thiserror::Error)]
pub enum EncodeGroupError {
    /// The encoder failed (a sink or the reader).
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// The reader ended before the group's length.
    #[error("the packed stream ended after {got} of the group's {expected} bytes")]
    Short {
        /// Bytes the group should hold.
        expected: u64,
        /// Bytes read.
        got: u64,
    },
    /// The coded group is not valid (cannot happen with an encoder's output).
    #[error(transparent)]
    Group(#[from] GroupError),
}

/// Codes in-memory `content` as one group (tests and the index group).
pub fn encode_group_bytes(
    kind: GroupKind,
    salt: Hash,
    index: u32,
    offset: u64,
    k: u16,
    m: u16,
    content: &[u8],
) -> Result<(GroupManifest, Vec<Vec<u8>>), EncodeGroupError> {
    let params = params_for(k, m, content.len() as u64).map_err(EncodeError::from)?;
    let mut reader = content;
    encode_group(
        kind,
        salt,
        index,
        offset,
        params,
        content.len() as u64,
        &mut reader,
        vec![Vec::new(); params.n()],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> (GroupManifest, Vec<Vec<u8>>) {
        let content: Vec<u8> = (0..5000u32).map(|i| (i * 7) as u8).collect();
        encode_group_bytes(GroupKind::Data, [9; 32], 3, 12_000, 3, 2, &content).unwrap()
    }

    #[test]
    fn round_trips_and_the_id_is_blake3_of_the_bytes() {
        let (g, shards) = sample();
        let bytes = g.encode();
        assert_eq!(bytes.len(), encoded_len(&g.layout()));
        assert_eq!(GroupManifest::decode(&bytes).unwrap(), g);
        assert_eq!(g.id().0, *blake3::hash(&bytes).as_bytes());
        assert_eq!(g.range(), 12_000..17_000);
        assert_eq!(shards.len(), 5);
        assert!(shards.iter().all(|s| s.len() as u64 == g.shard_len()));
        // Salt, index, offset and kind all change the id.
        let other = |kind, salt, index, offset| {
            GroupManifest::new(kind, salt, index, offset, g.layout(), g.checksums().clone())
                .unwrap()
                .id()
        };
        let ids = [
            other(GroupKind::Data, [8; 32], 3, 12_000),
            other(GroupKind::Data, [9; 32], 4, 12_000),
            other(GroupKind::Data, [9; 32], 3, 12_001),
            other(GroupKind::Index, [9; 32], 0, 0),
        ];
        assert!(ids.iter().all(|id| *id != g.id()));
    }

    #[test]
    fn decoding_any_prefix_or_a_changed_header_is_a_typed_error() {
        let bytes = sample().0.encode();
        for len in 0..bytes.len() {
            assert!(GroupManifest::decode(&bytes[..len]).is_err(), "{len}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert!(matches!(
            GroupManifest::decode(&long),
            Err(GroupError::Decode(DecodeError::TrailingBytes { extra: 1 }))
        ));
        let with = |at: usize, v: u8| {
            let mut b = bytes.clone();
            b[at] = v;
            GroupManifest::decode(&b)
        };
        assert!(matches!(
            with(0, b'X'),
            Err(GroupError::Decode(DecodeError::Invalid {
                field: "group.magic",
                ..
            }))
        ));
        assert!(matches!(
            with(4, 9),
            Err(GroupError::Decode(DecodeError::BadVersion(9)))
        ));
        assert!(matches!(
            with(5, 7),
            Err(GroupError::Decode(DecodeError::Invalid {
                field: "group.kind",
                ..
            }))
        ));
        // An index group elsewhere than at the start.
        assert!(matches!(
            with(5, 0),
            Err(GroupError::IndexPosition { index: 3, .. })
        ));
        // k = 0.
        assert!(matches!(with(50, 0), Err(GroupError::Params(_))));
    }

    #[test]
    fn a_group_reads_back_from_any_k_shards() {
        let content: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let (g, shards) =
            encode_group_bytes(GroupKind::Data, [1; 32], 0, 0, 4, 2, &content).unwrap();
        let sources: Vec<Option<&[u8]>> = shards
            .iter()
            .enumerate()
            .map(|(i, s)| (i != 1 && i != 4).then_some(s.as_slice()))
            .collect();
        let mut dec = g.decoder(sources).unwrap();
        let mut out = Vec::new();
        dec.read_range(1234..56_789, &mut out).unwrap();
        assert_eq!(out, &content[1234..56_789]);
    }

    #[test]
    fn stripe_units_fit_small_groups_and_cap_large_ones() {
        assert_eq!(stripe_unit_for(0, 4), 64);
        assert_eq!(stripe_unit_for(1000, 4), 256);
        assert_eq!(stripe_unit_for(1025, 4), 256 + 64);
        assert_eq!(stripe_unit_for(1 << 40, 4), DEFAULT_STRIPE_UNIT);
    }

    #[test]
    fn a_short_reader_is_an_error() {
        let params = params_for(2, 1, 100).unwrap();
        let mut r: &[u8] = &[1; 60];
        let e = encode_group(
            GroupKind::Data,
            [0; 32],
            0,
            0,
            params,
            100,
            &mut r,
            vec![Vec::new(); 3],
        )
        .unwrap_err();
        assert!(matches!(
            e,
            EncodeGroupError::Short {
                expected: 100,
                got: 60
            }
        ));
    }
}
