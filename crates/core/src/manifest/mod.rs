//! Dataset manifests: what a dataset holds and which group holds each byte.
//!
//! A dataset is packed into one byte stream: its files, sorted by path bytes, one
//! after the other with no padding. The stream is cut into data groups of
//! `group_len` bytes (see [`crate::group`]). The [`Manifest`] records each file
//! (relative `/`-separated path, size, BLAKE3, offset in the packed stream), the
//! empty directories, the erasure parameters, the group length and the id of every
//! data group. Its canonical encoding ([`Manifest::encode`], see [`encoding`]) is
//! unique; it is the content of the dataset's index group, whose id is the
//! dataset id.
//!
//! Every `Manifest` value is valid: [`Manifest::new`] and [`Manifest::decode`]
//! reject unsafe paths, duplicates, a file that is also a directory, overlapping or
//! gapped offsets, directories that are not empty, and a group list that does not
//! match the length, with an error naming the entry.
//!
//! [`fs`] packs a directory and unpacks to one; it is the only code here that
//! touches the filesystem.

pub mod encoding;
pub mod fs;
mod path;
pub mod sealed;

pub use path::{check_path, PathProblem, MAX_COMPONENT_LEN, MAX_PATH_LEN};

use crate::codec::DecodeError;
use crate::erasure::{ErasureParams, ParamsError};
use crate::hash::DatasetId;
use crate::hash::Hash;
use std::collections::HashSet;
use std::ops::Range;

/// Version of the manifest format written by this build (2: groups and
/// directories).
pub const FORMAT_VERSION: u8 = 2;

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
    /// A directory entry is unsafe, repeated, out of order, or not empty.
    #[error("directory {path:?}: {reason}")]
    BadDirectory {
        /// The directory.
        path: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The group length is zero.
    #[error("the group length is zero")]
    ZeroGroupLength,
    /// The group list does not cover the packed stream.
    #[error("{total_len} packed bytes in groups of {group_len} need {expected} groups, the manifest lists {found}")]
    GroupCount {
        /// Packed length.
        total_len: u64,
        /// Bytes per group.
        group_len: u64,
        /// Groups needed.
        expected: u64,
        /// Groups listed.
        found: u64,
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
    params: ErasureParams,
    group_len: u64,
    total_len: u64,
    files: Vec<FileEntry>,
    dirs: Vec<String>,
    groups: Vec<DatasetId>,
}

impl Manifest {
    /// Builds a manifest of `files` (in any order: they are sorted by path
    /// bytes) and empty `dirs` (likewise), coded with `k + m` in groups of
    /// `group_len` packed bytes whose ids are `groups`, validating it.
    pub fn new(
        k: u16,
        m: u16,
        group_len: u64,
        mut files: Vec<FileEntry>,
        mut dirs: Vec<String>,
        groups: Vec<DatasetId>,
    ) -> Result<Self, ManifestError> {
        files.sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
        dirs.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        let total_len = files.last().map_or(0, |f| f.offset.saturating_add(f.size));
        let manifest = Manifest {
            params: ErasureParams::with_default_unit(k, m)?,
            group_len,
            total_len,
            files,
            dirs,
            groups,
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

    /// Data shards per group.
    pub fn k(&self) -> u16 {
        self.params.raw().0
    }

    /// Parity shards per group.
    pub fn m(&self) -> u16 {
        self.params.raw().1
    }

    /// Shards per group, `k + m`.
    pub fn n(&self) -> usize {
        self.params.n()
    }

    /// Packed bytes per data group (the last one may hold fewer).
    pub fn group_len(&self) -> u64 {
        self.group_len
    }

    /// Length of the packed stream.
    pub fn total_len(&self) -> u64 {
        self.total_len
    }

    /// The files, sorted by path bytes.
    pub fn files(&self) -> &[FileEntry] {
        &self.files
    }

    /// Directories with nothing in them, sorted by path bytes.
    pub fn dirs(&self) -> &[String] {
        &self.dirs
    }

    /// The data groups' ids, in stream order.
    pub fn groups(&self) -> &[DatasetId] {
        &self.groups
    }

    /// The file at `path`, if any.
    pub fn file(&self, path: &str) -> Option<&FileEntry> {
        self.files
            .binary_search_by(|f| f.path.as_bytes().cmp(path.as_bytes()))
            .ok()
            .map(|i| &self.files[i])
    }

    /// The packed bytes data group `g` holds.
    pub fn group_range(&self, g: usize) -> Range<u64> {
        let start = (g as u64)
            .saturating_mul(self.group_len)
            .min(self.total_len);
        start..start.saturating_add(self.group_len).min(self.total_len)
    }

    /// The data groups that hold the packed bytes `range` (empty for an empty
    /// range).
    pub fn groups_for(&self, range: Range<u64>) -> Range<usize> {
        let end = range.end.min(self.total_len);
        if range.start >= end {
            return 0..0;
        }
        (range.start / self.group_len) as usize..((end - 1) / self.group_len) as usize + 1
    }

    /// Number of data groups `total_len` packed bytes need in groups of `group_len`.
    pub fn group_count(total_len: u64, group_len: u64) -> u64 {
        total_len.div_ceil(group_len.max(1))
    }

    /// Checks every invariant; used by [`Manifest::new`] and [`Manifest::decode`].
    fn validate(&self) -> Result<(), ManifestError> {
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
        if end != self.total_len {
            return Err(ManifestError::LengthMismatch {
                files_end: end,
                total_len: self.total_len,
            });
        }
        check_no_file_is_a_directory(&self.files)?;
        self.check_dirs()?;
        if self.group_len == 0 {
            return Err(ManifestError::ZeroGroupLength);
        }
        let expected = Self::group_count(self.total_len, self.group_len);
        if self.groups.len() as u64 != expected {
            return Err(ManifestError::GroupCount {
                total_len: self.total_len,
                group_len: self.group_len,
                expected,
                found: self.groups.len() as u64,
            });
        }
        Ok(())
    }

    /// Directories: safe, sorted, unique, and empty: no file or other directory
    /// inside one, and none is a file or inside a file.
    fn check_dirs(&self) -> Result<(), ManifestError> {
        let bad = |path: &str, reason| ManifestError::BadDirectory {
            path: path.to_owned(),
            reason,
        };
        let files: HashSet<&str> = self.files.iter().map(|f| f.path.as_str()).collect();
        let mut parents: HashSet<&str> = HashSet::new();
        for path in self
            .files
            .iter()
            .map(|f| f.path.as_str())
            .chain(self.dirs.iter().map(String::as_str))
        {
            for (i, _) in path.match_indices('/') {
                parents.insert(&path[..i]);
            }
        }
        for (i, dir) in self.dirs.iter().enumerate() {
            if let Err(reason) = check_path(dir) {
                return Err(ManifestError::UnsafePath {
                    path: dir.clone(),
                    reason,
                });
            }
            if i > 0 && self.dirs[i - 1].as_bytes() >= dir.as_bytes() {
                return Err(bad(dir, "directories are unique and sorted by path bytes"));
            }
            if files.contains(dir.as_str()) {
                return Err(bad(dir, "it is also a file"));
            }
            if parents.contains(dir.as_str()) {
                return Err(bad(
                    dir,
                    "it is not empty; only empty directories are listed",
                ));
            }
            for (i, _) in dir.match_indices('/') {
                if files.contains(&dir[..i]) {
                    return Err(bad(dir, "it is inside a file"));
                }
            }
        }
        Ok(())
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

    fn entry(path: &str, offset: u64, size: u64) -> FileEntry {
        FileEntry {
            path: path.into(),
            size,
            blake3: [0; 32],
            offset,
        }
    }

    fn groups(total: u64, group_len: u64) -> Vec<DatasetId> {
        (0..Manifest::group_count(total, group_len))
            .map(|g| DatasetId([g as u8; 32]))
            .collect()
    }

    fn build(files: Vec<FileEntry>, dirs: &[&str]) -> Result<Manifest, ManifestError> {
        let total = files
            .iter()
            .map(|f| f.offset.saturating_add(f.size))
            .max()
            .unwrap_or(0)
            .min(1 << 20);
        Manifest::new(
            2,
            1,
            4,
            files,
            dirs.iter().map(|d| d.to_string()).collect(),
            groups(total, 4),
        )
    }

    #[test]
    fn valid_manifest_is_sorted_and_files_and_groups_are_found() {
        let (files, packed) =
            pack_bytes([("b", &b"bee"[..]), ("a/x y", b"ay"), ("a/e", b"")]).unwrap();
        let m = Manifest::new(2, 1, 2, files, vec!["z/empty".into()], groups(5, 2)).unwrap();
        let paths: Vec<&str> = m.files().iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["a/e", "a/x y", "b"]);
        let b = m.file("b").unwrap();
        assert_eq!(
            &packed[b.range().start as usize..b.range().end as usize],
            b"bee"
        );
        assert_eq!(b.blake3, crate::hash::blake3(b"bee"));
        assert!(m.file("a").is_none());
        assert_eq!(m.dirs(), ["z/empty"]);
        assert_eq!(m.total_len(), 5);
        assert_eq!(m.groups().len(), 3);
        assert_eq!(m.group_range(2), 4..5);
        assert_eq!(m.groups_for(b.range()), 1..3);
        assert_eq!(m.groups_for(0..0), 0..0);
        assert_eq!(m.groups_for(4..100), 2..3);
        assert_eq!(Manifest::decode(&m.encode()).unwrap(), m);
    }

    #[test]
    fn each_bad_entry_is_named() {
        let e = build(vec![entry("../x", 0, 4)], &[]).unwrap_err();
        assert_eq!(
            e,
            ManifestError::UnsafePath {
                path: "../x".into(),
                reason: PathProblem::ParentComponent
            }
        );
        assert!(e.to_string().contains("\"../x\""), "{e}");

        let e = build(vec![entry("/etc/passwd", 0, 4)], &[]).unwrap_err();
        assert!(
            matches!(e, ManifestError::UnsafePath { ref path, reason: PathProblem::Absolute } if path == "/etc/passwd")
        );

        let e = build(vec![entry("a", 0, 4), entry("a", 4, 4)], &[]).unwrap_err();
        assert_eq!(e, ManifestError::Duplicate { path: "a".into() });

        let e = build(vec![entry("a", 0, 4), entry("b", 2, 2)], &[]).unwrap_err();
        assert_eq!(
            e,
            ManifestError::Overlap {
                path: "b".into(),
                offset: 2,
                previous: "a".into(),
                previous_end: 4
            }
        );

        let e = build(vec![entry("a", 0, 4), entry("b", 5, 2)], &[]).unwrap_err();
        assert!(
            matches!(e, ManifestError::Gap { ref path, offset: 5, expected: 4 } if path == "b")
        );

        let e = build(vec![entry("a", 0, 4), entry("a/b", 4, 2)], &[]).unwrap_err();
        assert_eq!(
            e,
            ManifestError::FileIsDirectory {
                path: "a".into(),
                child: "a/b".into()
            }
        );

        let e = build(vec![entry("a", 0, 1), entry("b", 1, u64::MAX)], &[]).unwrap_err();
        assert!(matches!(e, ManifestError::SizeOverflow { ref path, .. } if path == "b"));
    }

    #[test]
    fn directories_must_be_empty_safe_and_unique() {
        let files = || vec![entry("a/f", 0, 4)];
        assert!(build(files(), &["b", "c/d"]).is_ok());
        let reason = |dirs: &[&str]| match build(files(), dirs).unwrap_err() {
            ManifestError::BadDirectory { reason, .. } => reason,
            e => panic!("{e}"),
        };
        assert_eq!(
            reason(&["a"]),
            "it is not empty; only empty directories are listed"
        );
        assert_eq!(reason(&["a/f"]), "it is also a file");
        assert_eq!(reason(&["a/f/g"]), "it is inside a file");
        assert_eq!(
            reason(&["c", "c/d"]),
            "it is not empty; only empty directories are listed"
        );
        assert!(matches!(
            build(files(), &["x/../y"]).unwrap_err(),
            ManifestError::UnsafePath { .. }
        ));
        let mut m = build(files(), &["b"]).unwrap();
        m.dirs = vec!["b".into(), "b".into()];
        assert_eq!(
            m.validate().unwrap_err(),
            ManifestError::BadDirectory {
                path: "b".into(),
                reason: "directories are unique and sorted by path bytes"
            }
        );
    }

    #[test]
    fn the_group_list_must_cover_the_stream() {
        let e = Manifest::new(2, 1, 4, vec![entry("a", 0, 9)], vec![], groups(8, 4)).unwrap_err();
        assert_eq!(
            e,
            ManifestError::GroupCount {
                total_len: 9,
                group_len: 4,
                expected: 3,
                found: 2
            }
        );
        assert_eq!(
            Manifest::new(2, 1, 0, vec![], vec![], vec![]).unwrap_err(),
            ManifestError::ZeroGroupLength
        );
        // An empty dataset has no data group.
        let empty = Manifest::new(2, 1, 4, vec![entry("e", 0, 0)], vec![], vec![]).unwrap();
        assert_eq!(empty.groups_for(0..1), 0..0);
        assert!(matches!(
            Manifest::new(0, 1, 4, vec![], vec![], vec![]).unwrap_err(),
            ManifestError::Params(_)
        ));
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
