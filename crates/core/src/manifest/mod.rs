//! Dataset manifests: what a dataset holds and where every byte of it lives.
//!
//! A dataset is packed into one byte stream: its files, sorted by path bytes, one
//! after the other with no padding. The [`Manifest`] records each file (relative
//! `/`-separated path, size, BLAKE3, offset in the packed stream), the erasure
//! parameters, the packed length and the BLAKE3 checksum of every stripe unit of
//! every shard. Its canonical encoding ([`Manifest::encode`], see [`encoding`])
//! is unique, and the dataset id is its BLAKE3 ([`Manifest::id`]).
//!
//! Every `Manifest` value is valid: [`Manifest::new`] and [`Manifest::decode`]
//! reject unsafe paths, duplicates, a file that is also a directory, overlapping or
//! gapped offsets, and checksums that do not match the layout, with an error naming
//! the entry.
//!
//! [`fs`] packs a directory and unpacks to one; it is the only code here that
//! touches the filesystem.

pub mod encoding;
pub mod fs;
mod path;

pub use path::{check_path, PathProblem, MAX_COMPONENT_LEN, MAX_PATH_LEN};

use crate::codec::DecodeError;
use crate::erasure::{
    Decoder, ErasureParams, Layout, ParamsError, RecoverError, UnitChecksums, UnitSource,
};
use crate::hash::{DatasetId, Hash};
use std::collections::HashSet;
use std::ops::Range;

/// Version of the manifest format written by this build.
pub const FORMAT_VERSION: u8 = 1;

/// One file of a dataset.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FileEntry {
    /// Path relative to the dataset root, `/`-separated (see [`check_path`]).
    pub path: String,
    /// Size in bytes.
    pub size: u64,
    /// BLAKE3 of the file's content.
    pub blake3: Hash,
    /// Offset of the file's first byte in the packed stream.
    pub offset: u64,
}

impl FileEntry {
    /// The file's bytes in the packed stream, to pass to
    /// [`Decoder::read_range`](crate::erasure::Decoder::read_range).
    pub fn range(&self) -> Range<u64> {
        self.offset..self.offset + self.size
    }
}

/// Why a manifest is invalid. Each variant names the offending entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManifestError {
    /// A path could escape the dataset root or is otherwise not portable.
    #[error("unsafe path {path:?} in manifest: {reason}")]
    UnsafePath {
        /// The path as found.
        path: String,
        /// What is wrong with it.
        reason: PathProblem,
    },
    /// A path's bytes are not UTF-8 (shown lossily).
    #[error("path of file #{index} is not valid UTF-8: {lossy:?}")]
    NonUtf8Path {
        /// Position of the entry in the encoding.
        index: usize,
        /// The path with invalid bytes replaced.
        lossy: String,
    },
    /// The same path appears twice.
    #[error("duplicate path {path:?} in manifest")]
    Duplicate {
        /// The repeated path.
        path: String,
    },
    /// Entries are not sorted by path bytes (the canonical order).
    #[error(
        "path {path:?} comes after {previous:?}, but manifest entries are sorted by path bytes"
    )]
    Unsorted {
        /// The entry out of order.
        path: String,
        /// The entry before it.
        previous: String,
    },
    /// A file is also used as a directory of another entry.
    #[error("{path:?} is a file, but {child:?} uses it as a directory")]
    FileIsDirectory {
        /// The file.
        path: String,
        /// An entry inside it.
        child: String,
    },
    /// A file's bytes overlap the previous file's in the packed stream.
    #[error(
        "file {path:?} at offset {offset} overlaps {previous:?}, which ends at offset {previous_end}"
    )]
    Overlap {
        /// The overlapping file.
        path: String,
        /// Its offset.
        offset: u64,
        /// The file it overlaps.
        previous: String,
        /// Where that file ends.
        previous_end: u64,
    },
    /// A file does not start right where the previous one ends.
    #[error("file {path:?} starts at offset {offset}, leaving a gap: expected offset {expected}")]
    Gap {
        /// The file after the gap.
        path: String,
        /// Its offset.
        offset: u64,
        /// Where it should start.
        expected: u64,
    },
    /// `offset + size` overflows.
    #[error("file {path:?}: offset {offset} + size {size} overflows")]
    SizeOverflow {
        /// The file.
        path: String,
        /// Its offset.
        offset: u64,
        /// Its size.
        size: u64,
    },
    /// The files do not add up to the declared packed length.
    #[error("files end at byte {files_end}, but the manifest declares {total_len} packed bytes")]
    LengthMismatch {
        /// Where the last file ends.
        files_end: u64,
        /// Declared packed length.
        total_len: u64,
    },
    /// The unit checksums do not cover exactly every unit of the layout.
    #[error(
        "manifest has checksums for {found_stripes} stripes of {found_shards} shards, its layout \
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
    /// Invalid erasure parameters.
    #[error("invalid erasure parameters: {0}")]
    Params(#[from] ParamsError),
    /// The bytes are not a manifest encoding.
    #[error("malformed manifest encoding: {0}")]
    Decode(#[from] DecodeError),
}

/// A validated dataset manifest. See the [module docs](self).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    layout: Layout,
    files: Vec<FileEntry>,
    checksums: UnitChecksums,
}

impl Manifest {
    /// Builds a manifest from the encoder's `layout` and `checksums` and the
    /// packed `files` (in any order: they are sorted by path bytes), validating it.
    pub fn new(
        layout: Layout,
        mut files: Vec<FileEntry>,
        checksums: UnitChecksums,
    ) -> Result<Self, ManifestError> {
        files.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
        let manifest = Manifest {
            layout,
            files,
            checksums,
        };
        manifest.validate()?;
        Ok(manifest)
    }

    /// The canonical encoding (see [`encoding`]).
    pub fn encode(&self) -> Vec<u8> {
        encoding::encode(self)
    }

    /// Decodes and validates a canonical encoding; any malformed or non-canonical
    /// input is an error.
    pub fn decode(bytes: &[u8]) -> Result<Self, ManifestError> {
        encoding::decode(bytes)
    }

    /// The dataset id: BLAKE3 of [`Manifest::encode`].
    pub fn id(&self) -> DatasetId {
        DatasetId::of_canonical_bytes(&self.encode())
    }

    /// Where every byte lives.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// The erasure parameters.
    pub fn params(&self) -> ErasureParams {
        self.layout.params()
    }

    /// Length of the packed stream.
    pub fn total_len(&self) -> u64 {
        self.layout.total_len()
    }

    /// Size of every shard in bytes: the size of each shard's storage deal.
    pub fn shard_len(&self) -> u64 {
        self.layout.shard_len()
    }

    /// The files, sorted by path bytes.
    pub fn files(&self) -> &[FileEntry] {
        &self.files
    }

    /// The file at `path`, if any.
    pub fn file(&self, path: &str) -> Option<&FileEntry> {
        self.files
            .binary_search_by(|f| f.path.as_bytes().cmp(path.as_bytes()))
            .ok()
            .map(|i| &self.files[i])
    }

    /// BLAKE3 of every stripe unit.
    pub fn checksums(&self) -> &UnitChecksums {
        &self.checksums
    }

    /// A decoder over this dataset's shards (`sources[i]` for shard `i`, `None`
    /// when unavailable).
    pub fn decoder<S: UnitSource + Send>(
        &self,
        sources: Vec<Option<S>>,
    ) -> Result<Decoder<'_, S>, RecoverError> {
        Decoder::new(self.layout, &self.checksums, sources)
    }

    /// Checks every invariant; used by [`Manifest::new`] and [`Manifest::decode`].
    fn validate(&self) -> Result<(), ManifestError> {
        let n = self.layout.params().n();
        if self.checksums.shard_count() != n
            || self.checksums.stripe_count() != self.layout.stripe_count()
        {
            return Err(ManifestError::ChecksumCount {
                expected_stripes: self.layout.stripe_count(),
                expected_shards: n,
                found_stripes: self.checksums.stripe_count(),
                found_shards: self.checksums.shard_count(),
            });
        }
        for (i, file) in self.files.iter().enumerate() {
            check_path(&file.path).map_err(|reason| ManifestError::UnsafePath {
                path: file.path.clone(),
                reason,
            })?;
            let Some(prev) = i.checked_sub(1).map(|p| &self.files[p]) else {
                continue;
            };
            match prev.path.as_bytes().cmp(file.path.as_bytes()) {
                std::cmp::Ordering::Less => {}
                std::cmp::Ordering::Equal => {
                    return Err(ManifestError::Duplicate {
                        path: file.path.clone(),
                    })
                }
                std::cmp::Ordering::Greater => {
                    return Err(ManifestError::Unsorted {
                        path: file.path.clone(),
                        previous: prev.path.clone(),
                    })
                }
            }
        }
        let mut end = 0u64;
        let mut previous: Option<&FileEntry> = None;
        for file in &self.files {
            if file.offset < end {
                let prev = previous.expect("end > 0 only after a file");
                return Err(ManifestError::Overlap {
                    path: file.path.clone(),
                    offset: file.offset,
                    previous: prev.path.clone(),
                    previous_end: end,
                });
            }
            if file.offset > end {
                return Err(ManifestError::Gap {
                    path: file.path.clone(),
                    offset: file.offset,
                    expected: end,
                });
            }
            end =
                file.offset
                    .checked_add(file.size)
                    .ok_or_else(|| ManifestError::SizeOverflow {
                        path: file.path.clone(),
                        offset: file.offset,
                        size: file.size,
                    })?;
            previous = Some(file);
        }
        if end != self.layout.total_len() {
            return Err(ManifestError::LengthMismatch {
                files_end: end,
                total_len: self.layout.total_len(),
            });
        }
        check_no_file_is_a_directory(&self.files)
    }
}

/// Rejects `a` next to `a/b`: unpacking would need `a` to be a file and a folder.
fn check_no_file_is_a_directory(files: &[FileEntry]) -> Result<(), ManifestError> {
    let paths: HashSet<&str> = files.iter().map(|f| f.path.as_str()).collect();
    for file in files {
        for (i, _) in file.path.match_indices('/') {
            let parent = &file.path[..i];
            if paths.contains(parent) {
                return Err(ManifestError::FileIsDirectory {
                    path: parent.to_owned(),
                    child: file.path.clone(),
                });
            }
        }
    }
    Ok(())
}

/// Packs in-memory files: sorts them by path bytes, lays them out back to back and
/// hashes each. Returns the entries and the packed stream, ready for
/// [`crate::erasure::encode_bytes`] and [`Manifest::new`]. Paths are checked.
pub fn pack_bytes<P: Into<String>, B: AsRef<[u8]>>(
    files: impl IntoIterator<Item = (P, B)>,
) -> Result<(Vec<FileEntry>, Vec<u8>), ManifestError> {
    let mut files: Vec<(String, B)> = files.into_iter().map(|(p, b)| (p.into(), b)).collect();
    files.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let mut packed = Vec::new();
    let mut entries = Vec::with_capacity(files.len());
    for (path, bytes) in files {
        check_path(&path).map_err(|reason| ManifestError::UnsafePath {
            path: path.clone(),
            reason,
        })?;
        if entries.last().is_some_and(|e: &FileEntry| e.path == path) {
            return Err(ManifestError::Duplicate { path });
        }
        let bytes = bytes.as_ref();
        entries.push(FileEntry {
            path,
            size: bytes.len() as u64,
            blake3: crate::hash::blake3(bytes),
            offset: packed.len() as u64,
        });
        packed.extend_from_slice(bytes);
    }
    Ok((entries, packed))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::erasure::encode_bytes;

    fn params() -> ErasureParams {
        ErasureParams::new(2, 1, 64).unwrap()
    }

    fn entry(path: &str, offset: u64, size: u64) -> FileEntry {
        FileEntry {
            path: path.into(),
            size,
            blake3: [0; 32],
            offset,
        }
    }

    fn build(files: Vec<FileEntry>, total: u64) -> Result<Manifest, ManifestError> {
        let enc = encode_bytes(params(), &vec![0; total as usize]).unwrap();
        Manifest::new(enc.layout, files, enc.checksums)
    }

    #[test]
    fn valid_manifest_is_sorted_and_files_are_found() {
        let (files, packed) =
            pack_bytes([("b", &b"bee"[..]), ("a/x y", b"ay"), ("a/e", b"")]).unwrap();
        let enc = encode_bytes(params(), &packed).unwrap();
        let m = Manifest::new(enc.layout, files, enc.checksums).unwrap();
        let paths: Vec<&str> = m.files().iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["a/e", "a/x y", "b"]);
        let b = m.file("b").unwrap();
        assert_eq!(
            &packed[b.range().start as usize..b.range().end as usize],
            b"bee"
        );
        assert_eq!(b.blake3, crate::hash::blake3(b"bee"));
        assert!(m.file("a").is_none());
        assert_eq!(m.shard_len(), 64);
    }

    #[test]
    fn each_bad_entry_is_named() {
        let e = build(vec![entry("../x", 0, 4)], 4).unwrap_err();
        assert_eq!(
            e,
            ManifestError::UnsafePath {
                path: "../x".into(),
                reason: PathProblem::ParentComponent
            }
        );
        assert!(e.to_string().contains("\"../x\""), "{e}");

        let e = build(vec![entry("/etc/passwd", 0, 4)], 4).unwrap_err();
        assert!(
            matches!(e, ManifestError::UnsafePath { ref path, reason: PathProblem::Absolute } if path == "/etc/passwd")
        );

        let e = build(vec![entry("a", 0, 4), entry("a", 4, 4)], 8).unwrap_err();
        assert_eq!(e, ManifestError::Duplicate { path: "a".into() });

        let e = build(vec![entry("a", 0, 4), entry("b", 2, 2)], 4).unwrap_err();
        assert_eq!(
            e,
            ManifestError::Overlap {
                path: "b".into(),
                offset: 2,
                previous: "a".into(),
                previous_end: 4
            }
        );

        let e = build(vec![entry("a", 0, 4), entry("b", 5, 2)], 7).unwrap_err();
        assert!(
            matches!(e, ManifestError::Gap { ref path, offset: 5, expected: 4 } if path == "b")
        );

        let e = build(vec![entry("a", 0, 4), entry("a/b", 4, 2)], 6).unwrap_err();
        assert_eq!(
            e,
            ManifestError::FileIsDirectory {
                path: "a".into(),
                child: "a/b".into()
            }
        );

        let e = build(vec![entry("a", 0, 4)], 5).unwrap_err();
        assert_eq!(
            e,
            ManifestError::LengthMismatch {
                files_end: 4,
                total_len: 5
            }
        );

        let e = build(vec![entry("a", 0, 1), entry("b", 1, u64::MAX)], 1).unwrap_err();
        assert!(matches!(e, ManifestError::SizeOverflow { ref path, .. } if path == "b"));
    }

    #[test]
    fn checksums_must_cover_the_layout() {
        let small = encode_bytes(params(), &[1; 10]).unwrap();
        let big = encode_bytes(params(), &[1; 1000]).unwrap();
        let e = Manifest::new(big.layout, vec![entry("a", 0, 1000)], small.checksums).unwrap_err();
        assert!(
            matches!(
                e,
                ManifestError::ChecksumCount {
                    expected_stripes: 8,
                    found_stripes: 1,
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn pack_bytes_rejects_duplicates_and_unsafe_paths() {
        assert_eq!(
            pack_bytes([("x", b"1"), ("x", b"2")]).unwrap_err(),
            ManifestError::Duplicate { path: "x".into() }
        );
        assert!(matches!(
            pack_bytes([("a/../../b", b"1")]).unwrap_err(),
            ManifestError::UnsafePath { ref path, .. } if path == "a/../../b"
        ));
    }
}
