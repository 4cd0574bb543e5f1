//! The canonical binary encoding of a [`Manifest`].
//!
//! All integers are little-endian. Layout (format version 2):
//!
//! | field       | type                 | notes                                      |
//! |-------------|----------------------|--------------------------------------------|
//! | magic       | `[u8; 4]`            | `b"CRNM"`                                  |
//! | version     | `u8`                 | [`super::FORMAT_VERSION`]                  |
//! | k           | `u16`                | data shards per group                      |
//! | m           | `u16`                | parity shards per group                    |
//! | group_len   | `u64`                | packed bytes per data group                |
//! | total_len   | `u64`                | packed stream length                       |
//! | file_count  | `u32`                |                                            |
//! | files       | `file_count` × file  | sorted by path bytes, strictly             |
//! | dir_count   | `u32`                |                                            |
//! | dirs        | `dir_count` × path   | empty directories, sorted, strictly        |
//! | groups      | `G` × `[u8; 32]`     | data group ids; `G = ceil(total_len / group_len)` |
//!
//! A file is `path_len: u16`, `path: [u8; path_len]` (UTF-8), `size: u64`,
//! `offset: u64`, `blake3: [u8; 32]`; a directory is `path_len: u16`, `path`.
//!
//! The encoding is canonical: the decoder accepts exactly the outputs of
//! [`encode`], so `encode(decode(b)) == b` for every accepted `b`. Files must be
//! sorted and contiguous (each offset is the previous file's end), the group
//! count is implied, and no byte may trail.

use super::{FileEntry, Manifest, ManifestError, FORMAT_VERSION, MAX_PATH_LEN};
use crate::codec::{DecodeError, PutExt, Reader};
use crate::erasure::ErasureParams;
use crate::hash::{DatasetId, Hash};

/// The first four bytes of every encoded manifest.
pub const MAGIC: [u8; 4] = *b"CRNM";

/// Smallest possible encoded file entry (empty path): length, size, offset, hash.
const MIN_FILE_LEN: usize = 2 + 8 + 8 + 32;

/// Encodes `manifest` canonically.
pub fn encode(manifest: &Manifest) -> Vec<u8> {
    let paths: usize = manifest.files.iter().map(|f| f.path.len()).sum::<usize>()
        + manifest.dirs.iter().map(|d| 2 + d.len()).sum::<usize>();
    let mut out = Vec::with_capacity(
        33 + manifest.files.len() * MIN_FILE_LEN + paths + manifest.groups.len() * 32,
    );
    out.extend_from_slice(&MAGIC);
    out.push(FORMAT_VERSION);
    out.put_u16(manifest.k());
    out.put_u16(manifest.m());
    out.put_u64(manifest.group_len);
    out.put_u64(manifest.total_len);
    out.put_u32(u32::try_from(manifest.files.len()).expect("fewer than 2^32 files"));
    for f in &manifest.files {
        // Paths are at most MAX_PATH_LEN bytes (validated), so they fit a u16.
        out.put_str(&f.path);
        out.put_u64(f.size);
        out.put_u64(f.offset);
        out.extend_from_slice(&f.blake3);
    }
    out.put_u32(u32::try_from(manifest.dirs.len()).expect("fewer than 2^32 directories"));
    for d in &manifest.dirs {
        out.put_str(d);
    }
    for g in &manifest.groups {
        out.extend_from_slice(g.as_bytes());
    }
    out
}

/// Reads a length-prefixed UTF-8 path; `index` names the entry in errors.
fn path(r: &mut Reader<'_>, index: usize) -> Result<String, ManifestError> {
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
    Ok(path)
}

/// Decodes and validates a canonical manifest encoding.
pub fn decode(bytes: &[u8]) -> Result<Manifest, ManifestError> {
    let mut r = Reader::new(bytes);
    r.header(
        MAGIC,
        FORMAT_VERSION,
        "magic",
        "not a Cairn manifest (expected \"CRNM\")",
    )?;
    let (k, m) = (r.u16()?, r.u16()?);
    let params = ErasureParams::with_default_unit(k, m)?;
    let group_len = r.u64()?;
    let total_len = r.u64()?;

    let count = r.u32()? as usize;
    // Never trust a count for allocation beyond what the input can hold.
    let mut files = Vec::with_capacity(count.min(r.remaining() / MIN_FILE_LEN));
    for index in 0..count {
        let path = path(&mut r, index)?;
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
    let count = r.u32()? as usize;
    let mut dirs = Vec::with_capacity(count.min(r.remaining() / 2));
    for index in 0..count {
        dirs.push(path(&mut r, index)?);
    }
    if group_len == 0 {
        return Err(ManifestError::ZeroGroupLength);
    }
    let groups = Manifest::group_count(total_len, group_len);
    if (r.remaining() as u64) < groups.saturating_mul(32) {
        return Err(DecodeError::Truncated {
            needed: usize::try_from(groups.saturating_mul(32))
                .unwrap_or(usize::MAX)
                .saturating_add(bytes.len() - r.remaining()),
            have: bytes.len(),
        }
        .into());
    }
    let mut ids = Vec::with_capacity(groups as usize);
    for _ in 0..groups {
        ids.push(DatasetId(r.array()?));
    }
    r.finish()?;
    let manifest = Manifest {
        params,
        group_len,
        total_len,
        files,
        dirs,
        groups: ids,
    };
    manifest.validate()?;
    Ok(manifest)
}

#[cfg(test)]
mod tests {
    use super::super::pack_bytes;
    use super::*;

    fn sample() -> Manifest {
        let (files, _) = pack_bytes([
            ("data/train 1.bin", &[1u8; 300][..]),
            ("data/ünïcode", &b"x"[..]),
            ("empty", &b""[..]),
        ])
        .unwrap();
        let groups = (0..3).map(|g| DatasetId([g; 32])).collect();
        Manifest::new(3, 2, 128, files, vec!["logs/none".into()], groups).unwrap()
    }

    #[test]
    fn round_trips_canonically() {
        let m = sample();
        let bytes = m.encode();
        assert_eq!(&bytes[..4], b"CRNM");
        let back = Manifest::decode(&bytes).unwrap();
        assert_eq!(back, m);
        assert_eq!(back.encode(), bytes);
        assert_eq!(back.groups()[2], DatasetId([2; 32]));
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
        b[4] = 1;
        assert_eq!(
            Manifest::decode(&b),
            Err(ManifestError::Decode(DecodeError::BadVersion(1)))
        );
        let mut b = bytes.clone();
        b[5..7].copy_from_slice(&0u16.to_le_bytes());
        assert!(matches!(
            Manifest::decode(&b),
            Err(ManifestError::Params(_))
        ));
        let mut b = bytes.clone();
        b[9..17].copy_from_slice(&0u64.to_le_bytes());
        assert_eq!(Manifest::decode(&b), Err(ManifestError::ZeroGroupLength));
    }

    #[test]
    fn absurd_counts_fail_without_allocating() {
        // 2^32-1 files, then 2^63 bytes in groups of one byte.
        for files in [u32::MAX, 0] {
            let mut b = MAGIC.to_vec();
            b.push(FORMAT_VERSION);
            b.put_u16(1);
            b.put_u16(1);
            b.put_u64(1);
            b.put_u64(1 << 63);
            b.put_u32(files);
            b.put_u32(0);
            assert!(matches!(
                Manifest::decode(&b),
                Err(ManifestError::Decode(DecodeError::Truncated { .. }))
            ));
        }
    }

    /// Re-encodes a manifest with its files replaced, bypassing validation.
    fn with_files(m: &Manifest, files: Vec<FileEntry>) -> Vec<u8> {
        encode(&Manifest { files, ..m.clone() })
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
        // The first path starts after the 29-byte header and its 2-byte length.
        bytes[31] = 0xff;
        assert!(matches!(
            Manifest::decode(&bytes),
            Err(ManifestError::NonUtf8Path { index: 0, .. })
        ));

        let evil_dir = encode(&Manifest {
            dirs: vec!["../up".into()],
            ..m.clone()
        });
        assert!(matches!(
            Manifest::decode(&evil_dir),
            Err(ManifestError::UnsafePath { ref path, .. }) if path == "../up"
        ));
    }
}
