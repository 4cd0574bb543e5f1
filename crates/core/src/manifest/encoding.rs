//! The canonical binary encoding of a [`Manifest`].
//!
//! All integers are little-endian. Layout (format version 1):
//!
//! | field          | type                | notes                                      |
//! |----------------|---------------------|--------------------------------------------|
//! | magic          | `[u8; 4]`           | `b"CRNM"`                                  |
//! | version        | `u8`                | [`super::FORMAT_VERSION`]                |
//! | k              | `u16`               | data shards                                |
//! | m              | `u16`               | parity shards                              |
//! | stripe_unit    | `u32`               | bytes                                      |
//! | total_len      | `u64`               | packed stream length                       |
//! | file_count     | `u32`               |                                            |
//! | files          | `file_count` × file | sorted by path bytes, strictly             |
//! | unit checksums | `S × (k+m)` × `[u8; 32]` | stripe-major; `S` = stripe count, derived from the header |
//!
//! A file is `path_len: u16`, `path: [u8; path_len]` (UTF-8), `size: u64`,
//! `offset: u64`, `blake3: [u8; 32]`.
//!
//! The encoding is canonical: the decoder accepts exactly the outputs of
//! [`encode`], so `encode(decode(b)) == b` for every accepted `b`. Files must be
//! sorted and contiguous (each offset is the previous file's end), the checksum
//! count is implied, and no byte may trail.

use super::{FileEntry, Manifest, ManifestError, FORMAT_VERSION, MAX_PATH_LEN};
use crate::codec::{DecodeError, PutExt, Reader};
use crate::erasure::{ErasureParams, Layout, UnitChecksums};
use crate::hash::Hash;

/// The first four bytes of every encoded manifest.
pub const MAGIC: [u8; 4] = *b"CRNM";

/// Smallest possible encoded file entry (empty path): length, size, offset, hash.
const MIN_FILE_LEN: usize = 2 + 8 + 8 + 32;

/// Encodes `manifest` canonically.
pub fn encode(manifest: &Manifest) -> Vec<u8> {
    let (k, m, unit) = manifest.params().raw();
    let paths: usize = manifest.files.iter().map(|f| f.path.len()).sum();
    let mut out = Vec::with_capacity(
        25 + manifest.files.len() * MIN_FILE_LEN + paths + manifest.checksums.as_slice().len() * 32,
    );
    out.extend_from_slice(&MAGIC);
    out.push(FORMAT_VERSION);
    out.put_u16(k);
    out.put_u16(m);
    out.put_u32(unit);
    out.put_u64(manifest.total_len());
    out.put_u32(u32::try_from(manifest.files.len()).expect("fewer than 2^32 files"));
    for f in &manifest.files {
        // Paths are at most MAX_PATH_LEN bytes (validated), so they fit a u16.
        out.put_str(&f.path);
        out.put_u64(f.size);
        out.put_u64(f.offset);
        out.extend_from_slice(&f.blake3);
    }
    for sum in manifest.checksums.as_slice() {
        out.extend_from_slice(sum);
    }
    out
}

/// Decodes and validates a canonical manifest encoding.
pub fn decode(bytes: &[u8]) -> Result<Manifest, ManifestError> {
    let mut r = Reader::new(bytes);
    if r.array::<4>()? != MAGIC {
        return Err(DecodeError::Invalid {
            field: "magic",
            reason: "not a Cairn manifest (expected \"CRNM\")",
        }
        .into());
    }
    let version = r.u8()?;
    if version != FORMAT_VERSION {
        return Err(DecodeError::BadVersion(version).into());
    }
    let (k, m, unit) = (r.u16()?, r.u16()?, r.u32()?);
    let total_len = r.u64()?;
    let params = ErasureParams::new(k, m, unit)?;
    let layout = Layout::new(params, total_len)?;

    let count = r.u32()? as usize;
    // Never trust the count for allocation beyond what the input can hold.
    let mut files = Vec::with_capacity(count.min(r.remaining() / MIN_FILE_LEN));
    for index in 0..count {
        let path_len = r.u16()? as usize;
        let path_bytes = r.take(path_len)?;
        let path = std::str::from_utf8(path_bytes)
            .map_err(|_| ManifestError::NonUtf8Path {
                index,
                lossy: String::from_utf8_lossy(path_bytes).into_owned(),
            })?
            .to_owned();
        if path.len() > MAX_PATH_LEN {
            return Err(ManifestError::UnsafePath {
                path,
                reason: super::PathProblem::TooLong,
            });
        }
        let size = r.u64()?;
        let offset = r.u64()?;
        let blake3: Hash = r.array()?;
        files.push(FileEntry {
            path,
            size,
            blake3,
            offset,
        });
    }

    let n = params.n();
    let stripes = layout.stripe_count();
    let units = usize::try_from(stripes)
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
        // Reports the total length needed without allocating for it.
        r.take(units * 32)?;
    }
    let mut sums = Vec::with_capacity(units);
    for _ in 0..units {
        sums.push(r.array::<32>()?);
    }
    r.finish()?;
    let checksums = UnitChecksums::from_stripe_major(n, sums).expect("at least one stripe");

    let manifest = Manifest {
        layout,
        files,
        checksums,
    };
    manifest.validate()?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::super::pack_bytes;
    use super::*;
    use crate::erasure::encode_bytes;

    fn sample() -> Manifest {
        let (files, packed) = pack_bytes([
            ("data/train 1.bin", &[1u8; 300][..]),
            ("data/ünïcode", &b"x"[..]),
            ("empty", &b""[..]),
        ])
        .unwrap();
        let enc = encode_bytes(ErasureParams::new(3, 2, 64).unwrap(), &packed).unwrap();
        Manifest::new(enc.layout, files, enc.checksums).unwrap()
    }

    #[test]
    fn round_trips_and_the_id_is_blake3_of_the_bytes() {
        let m = sample();
        let bytes = m.encode();
        assert_eq!(&bytes[..4], b"CRNM");
        let back = Manifest::decode(&bytes).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.encode(), bytes);
        assert_eq!(m.id().0, *blake3::hash(&bytes).as_bytes());
        // 301 bytes / 192 per stripe = 2 stripes × 5 shards of checksums.
        assert_eq!(m.checksums().as_slice().len(), 10);
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = sample().encode();
        for len in 0..bytes.len() {
            assert!(
                Manifest::decode(&bytes[..len]).is_err(),
                "prefix {len} accepted"
            );
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(
            Manifest::decode(&long),
            Err(ManifestError::Decode(DecodeError::TrailingBytes {
                extra: 1
            }))
        );
    }

    #[test]
    fn header_fields_are_checked() {
        let bytes = sample().encode();
        let mut b = bytes.clone();
        b[0] = b'X';
        assert!(matches!(
            Manifest::decode(&b),
            Err(ManifestError::Decode(DecodeError::Invalid {
                field: "magic",
                ..
            }))
        ));
        let mut b = bytes.clone();
        b[4] = 2;
        assert_eq!(
            Manifest::decode(&b),
            Err(ManifestError::Decode(DecodeError::BadVersion(2)))
        );
        let mut b = bytes.clone();
        b[5..7].copy_from_slice(&0u16.to_le_bytes());
        assert!(matches!(
            Manifest::decode(&b),
            Err(ManifestError::Params(_))
        ));
    }

    #[test]
    fn absurd_counts_fail_without_allocating() {
        // A header claiming 2^32-1 files and a dataset of 2^63 bytes.
        let mut b = MAGIC.to_vec();
        b.push(FORMAT_VERSION);
        b.put_u16(1);
        b.put_u16(1);
        b.put_u32(64);
        b.put_u64(1 << 63);
        b.put_u32(u32::MAX);
        assert!(matches!(
            Manifest::decode(&b),
            Err(ManifestError::Decode(DecodeError::Truncated { .. }))
        ));
        let mut b = MAGIC.to_vec();
        b.push(FORMAT_VERSION);
        b.put_u16(1);
        b.put_u16(1);
        b.put_u32(64);
        b.put_u64(1 << 63);
        b.put_u32(0);
        assert!(matches!(
            Manifest::decode(&b),
            Err(ManifestError::Decode(DecodeError::Truncated { .. }))
        ));
    }

    /// Re-encodes a manifest with its files replaced, bypassing validation.
    fn with_files(m: &Manifest, files: Vec<FileEntry>) -> Vec<u8> {
        encode(&Manifest {
            layout: m.layout,
            files,
            checksums: m.checksums.clone(),
        })
    }

    #[test]
    fn non_canonical_and_unsafe_encodings_are_rejected_naming_the_entry() {
        let m = sample();
        let mut swapped = m.files().to_vec();
        swapped.swap(0, 1);
        assert!(matches!(
            Manifest::decode(&with_files(&m, swapped)),
            Err(ManifestError::Unsorted { ref path, .. }) if path == "data/train 1.bin"
        ));

        let mut dup = m.files().to_vec();
        dup[1].path = dup[0].path.clone();
        assert!(matches!(
            Manifest::decode(&with_files(&m, dup)),
            Err(ManifestError::Duplicate { ref path }) if path == "data/train 1.bin"
        ));

        let mut evil = m.files().to_vec();
        evil[2].path = "../../etc/cron.d/x".into();
        assert!(matches!(
            Manifest::decode(&with_files(&m, evil)),
            Err(ManifestError::UnsafePath { ref path, .. }) if path == "../../etc/cron.d/x"
        ));

        let mut abs = m.files().to_vec();
        abs[2].path = "/abs".into();
        assert!(matches!(
            Manifest::decode(&with_files(&m, abs)),
            Err(ManifestError::UnsafePath { ref path, .. }) if path == "/abs"
        ));

        let mut overlap = m.files().to_vec();
        overlap[1].offset -= 1;
        assert!(matches!(
            Manifest::decode(&with_files(&m, overlap)),
            Err(ManifestError::Overlap { ref path, .. }) if path == "data/ünïcode"
        ));

        let mut bytes = m.encode();
        // First path starts after the 25-byte header and its 2-byte length.
        bytes[27] = 0xff;
        assert!(matches!(
            Manifest::decode(&bytes),
            Err(ManifestError::NonUtf8Path { index: 0, .. })
        ));
    }
}
