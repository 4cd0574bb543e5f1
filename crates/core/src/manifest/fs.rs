//! Packing a directory into a dataset and unpacking one: the only filesystem code
//! in this crate.
//!
//! What is recorded: regular files, with their relative paths and contents, and
//! empty folders (other folders are implied by the paths). Permissions and
//! timestamps are not recorded. Symbolic links and special files are
//! refused, so nothing outside the root can be read. Unpacking refuses unsafe
//! paths, never follows a symbolic link it finds in the destination, and never
//! overwrites an existing file.

use super::{check_path, FileEntry, Manifest, ManifestError, PathProblem};
use crate::crypt::DatasetKey;
use crate::erasure::EncodeError;
use crate::group::{encode_group, params_for, EncodeGroupError, GroupKind, GroupManifest};
use crate::hash::Hash;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

/// Why a directory could not be packed.
#[derive(Debug, thiserror::Error)]
pub enum PackError {
    /// The root is not a directory.
    #[error("{path} is not a directory")]
    NotADirectory {
        /// The root given.
        path: PathBuf,
    },
    /// A symbolic link was found; datasets hold regular files only.
    #[error("{path:?} is a symbolic link; replace it with the file it points to, or remove it")]
    Symlink {
        /// Path relative to the root.
        path: String,
    },
    /// A FIFO, socket or device was found.
    #[error("{path:?} is not a regular file or directory")]
    NotRegularFile {
        /// Path relative to the root.
        path: String,
    },
    /// A file name is not valid UTF-8.
    #[error("the name of {path:?} is not valid UTF-8; rename it")]
    NonUtf8Name {
        /// Path relative to the root, invalid bytes replaced.
        path: String,
    },
    /// A name cannot be stored safely (for example it contains a backslash).
    #[error("{path:?} cannot be stored: {reason}")]
    UnsafeName {
        /// Path relative to the root.
        path: String,
        /// What is wrong with it.
        reason: PathProblem,
    },
    /// A file changed size while it was being packed.
    #[error("{path:?} changed while it was being packed (expected {expected} bytes)")]
    Changed {
        /// Path relative to the root.
        path: String,
        /// Size seen when the directory was scanned.
        expected: u64,
    },
    /// Reading the filesystem failed.
    #[error("{path}: {source}")]
    Io {
        /// The path being read.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Encoding failed (a shard sink failed).
    #[error(transparent)]
    Encode(#[from] EncodeError),
    /// Coding a group failed.
    #[error(transparent)]
    Group(#[from] EncodeGroupError),
    /// The result is not a valid manifest.
    #[error(transparent)]
    Manifest(#[from] ManifestError),
}

/// Why a dataset could not be unpacked.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// A manifest path is unsafe (checked again, as defence in depth).
    #[error("refusing to unpack unsafe path {path:?}: {reason}")]
    UnsafePath {
        /// The path.
        path: String,
        /// What is wrong with it.
        reason: PathProblem,
    },
    /// Something in the destination that should be a folder is not one (a file,
    /// or a symbolic link that would lead outside the destination).
    #[error("{path} exists and is not a directory (symbolic links are not followed)")]
    NotADirectory {
        /// The path in the destination.
        path: PathBuf,
    },
    /// The file already exists in the destination.
    #[error("{path} already exists; unpack into an empty directory")]
    Exists {
        /// The path in the destination.
        path: PathBuf,
    },
    /// A file's content does not match its BLAKE3 in the manifest (the file is
    /// removed).
    #[error("content of {path:?} does not match its hash in the manifest")]
    HashMismatch {
        /// The file's manifest path.
        path: String,
    },
    /// The packed stream ended early.
    #[error("the packed stream ended after {got} of {expected} bytes")]
    Truncated {
        /// Bytes expected.
        expected: u64,
        /// Bytes received.
        got: u64,
    },
    /// The packed stream is longer than the manifest says.
    #[error("the packed stream is longer than the {expected} bytes of the manifest")]
    TooLong {
        /// Bytes expected.
        expected: u64,
    },
    /// Writing failed.
    #[error("{path}: {source}")]
    Io {
        /// The path being written.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// Reading the packed stream failed.
    #[error("reading the packed stream failed: {0}")]
    Read(#[source] io::Error),
    /// An earlier write failed; the unpacker cannot continue.
    #[error("unpacking failed earlier: {0}")]
    Failed(String),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> PackError + '_ {
    move |source| PackError::Io {
        path: path.to_owned(),
        source,
    }
}

/// A regular file found by [`scan_dir`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScannedFile {
    /// Path relative to the root, `/`-separated.
    pub path: String,
    /// Size when scanned.
    pub size: u64,
}

/// What [`scan_dir`] found: the regular files, sorted by path bytes (the
/// packing order), and the empty directories, sorted likewise.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scan {
    /// Regular files.
    pub files: Vec<ScannedFile>,
    /// Directories with nothing in them.
    pub dirs: Vec<String>,
}

impl Scan {
    /// Length of the packed stream.
    pub fn total_len(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    /// Length of the packed stream of the files encrypted
    /// ([`crate::crypt::stored_len`] of each).
    pub fn encrypted_len(&self) -> u64 {
        self.files
            .iter()
            .map(|f| crate::crypt::stored_len(f.size))
            .sum()
    }
}

/// Lists the regular files and empty directories under `root`, refusing
/// symbolic links, special files and unsafe names.
pub fn scan_dir(root: &Path) -> Result<Scan, PackError> {
    let meta = fs::metadata(root).map_err(io_err(root))?;
    if !meta.is_dir() {
        return Err(PackError::NotADirectory {
            path: root.to_owned(),
        });
    }
    let mut scan = Scan::default();
    scan_into(root, "", &mut scan)?;
    scan.files
        .sort_by(|a, b| a.path.as_bytes().cmp(b.path.as_bytes()));
    scan.dirs.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    Ok(scan)
}

fn scan_into(dir: &Path, prefix: &str, out: &mut Scan) -> Result<(), PackError> {
    for entry in fs::read_dir(dir).map_err(io_err(dir))? {
        let entry = entry.map_err(io_err(dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            return Err(PackError::NonUtf8Name {
                path: format!("{prefix}{}", name.to_string_lossy()),
            });
        };
        let rel = format!("{prefix}{name}");
        check_path(&rel).map_err(|reason| PackError::UnsafeName {
            path: rel.clone(),
            reason,
        })?;
        let full = entry.path();
        let meta = fs::symlink_metadata(&full).map_err(io_err(&full))?;
        let kind = meta.file_type();
        if kind.is_symlink() {
            return Err(PackError::Symlink { path: rel });
        } else if kind.is_dir() {
            let before = (out.files.len(), out.dirs.len());
            scan_into(&full, &format!("{rel}/"), out)?;
            if (out.files.len(), out.dirs.len()) == before {
                out.dirs.push(rel);
            }
        } else if kind.is_file() {
            out.files.push(ScannedFile {
                path: rel,
                size: meta.len(),
            });
        } else {
            return Err(PackError::NotRegularFile { path: rel });
        }
    }
    Ok(())
}

/// Reads the files of a scanned directory as one packed stream, hashing each
/// file as it goes.
///
/// As an [`io::Read`] it reports failures as `io::Error`s; the typed error is
/// kept and returned by [`PackReader::finish`].
pub struct PackReader {
    root: PathBuf,
    files: std::vec::IntoIter<ScannedFile>,
    current: Option<Current>,
    entries: Vec<FileEntry>,
    offset: u64,
    error: Option<PackError>,
    /// Private datasets: the key, and the dataset's salt.
    encrypt: Option<(DatasetKey, Hash)>,
}

struct Current {
    file: File,
    scanned: ScannedFile,
    hasher: blake3::Hasher,
    /// Plaintext bytes not read from the file yet.
    remaining: u64,
    /// Encrypting: the file's cipher and its stored chunks not handed out.
    sealing: Option<Sealing>,
}

/// The encryption of the file being read, chunk by chunk.
struct Sealing {
    cipher: crate::crypt::FileCipher,
    /// The next chunk's index.
    next: u64,
    chunks: u64,
    plain: Vec<u8>,
    /// Stored bytes of the last chunk sealed, from `out_pos` on not read yet.
    out: Vec<u8>,
    out_pos: usize,
}

impl PackReader {
    /// A stream of the `files` (from [`scan_dir`]) under `root`.
    pub fn new(root: &Path, files: Vec<ScannedFile>) -> Self {
        PackReader {
            root: root.to_owned(),
            files: files.into_iter(),
            current: None,
            entries: Vec::new(),
            offset: 0,
            error: None,
            encrypt: None,
        }
    }

    /// A stream of the `files` under `root`, each file encrypted with `key`
    /// for the dataset whose salt is `salt` ([`crate::crypt`]): the packed
    /// stream holds the stored (encrypted) bytes, and each entry's `size` and
    /// `offset` are those of the file's stored bytes, its `blake3` the
    /// plaintext's.
    pub fn encrypted(root: &Path, files: Vec<ScannedFile>, key: DatasetKey, salt: Hash) -> Self {
        PackReader {
            encrypt: Some((key, salt)),
            ..PackReader::new(root, files)
        }
    }

    /// Packed (stored) length of a file of `size` bytes.
    fn packed_len(&self, size: u64) -> u64 {
        match self.encrypt {
            Some(_) => crate::crypt::stored_len(size),
            None => size,
        }
    }

    /// A stream of the `files` under `root` from packed byte `offset` on. Files
    /// that end before `offset` are not read (nor listed by
    /// [`PackReader::take_entries`]); the prefix of the file holding `offset` is
    /// read and hashed, so its entry is complete.
    pub fn starting_at(
        root: &Path,
        files: Vec<ScannedFile>,
        offset: u64,
    ) -> Result<Self, PackError> {
        Self::new(root, Vec::new()).skip_to(files, offset)
    }

    /// Like [`PackReader::starting_at`], for [`PackReader::encrypted`]
    /// (`offset` counts stored bytes). Encryption is deterministic, so the
    /// bytes from `offset` on are those a reader from 0 would give there.
    pub fn encrypted_starting_at(
        root: &Path,
        files: Vec<ScannedFile>,
        offset: u64,
        key: DatasetKey,
        salt: Hash,
    ) -> Result<Self, PackError> {
        Self::encrypted(root, Vec::new(), key, salt).skip_to(files, offset)
    }

    fn skip_to(mut self, mut files: Vec<ScannedFile>, offset: u64) -> Result<Self, PackError> {
        // Files wholly before `offset` are skipped; empty files at `offset`
        // were not reached before it and are kept.
        let mut start = 0u64;
        let mut skip = 0;
        for f in &files {
            let len = self.packed_len(f.size);
            if start + len > offset || (len == 0 && start == offset) {
                break;
            }
            start += len;
            skip += 1;
        }
        let rest = files.split_off(skip);
        self.files = rest.into_iter();
        let mut reader = self;
        reader.offset = start;
        let mut prefix = offset - start;
        let mut buf = vec![0u8; 64 * 1024];
        while prefix > 0 {
            let want = buf.len().min(usize::try_from(prefix).unwrap_or(usize::MAX));
            let n = reader.read_inner(&mut buf[..want])?;
            if n == 0 {
                break;
            }
            prefix -= n as u64;
        }
        Ok(reader)
    }

    /// The entries of the files completed since the last call, in packing order.
    pub fn take_entries(&mut self) -> Vec<FileEntry> {
        std::mem::take(&mut self.entries)
    }

    /// Reads past the empty files left at the end and returns the entries not
    /// taken yet; an error if packed bytes remain.
    pub fn finish(mut self) -> Result<Vec<FileEntry>, PackError> {
        if let Some(e) = self.error {
            return Err(e);
        }
        let mut probe = [0u8; 1];
        if self.read_inner(&mut probe)? > 0 {
            return Err(PackError::Io {
                path: self.root,
                source: io::Error::other("the packed stream was not read to its end"),
            });
        }
        Ok(self.entries)
    }

    fn fail(&mut self, e: PackError) -> io::Error {
        let err = io::Error::other(e.to_string());
        self.error = Some(e);
        err
    }

    /// Completes the current file: checks it did not grow, records its entry.
    fn close_current(&mut self) -> Result<(), PackError> {
        let Some(mut cur) = self.current.take() else {
            return Ok(());
        };
        let mut probe = [0u8; 1];
        let grew = loop {
            match cur.file.read(&mut probe) {
                Ok(n) => break n > 0,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(PackError::Io {
                        path: self.root.join(&cur.scanned.path),
                        source,
                    })
                }
            }
        };
        if grew {
            return Err(PackError::Changed {
                path: cur.scanned.path,
                expected: cur.scanned.size,
            });
        }
        let size = self.packed_len(cur.scanned.size);
        self.entries.push(FileEntry {
            blake3: *cur.hasher.finalize().as_bytes(),
            offset: self.offset,
            size,
            path: cur.scanned.path,
        });
        self.offset += size;
        Ok(())
    }

    /// Reads the current file's next chunk and seals it into `out`.
    fn seal_next(&mut self) -> Result<(), PackError> {
        let cur = self.current.as_mut().expect("a file is open");
        let sealing = cur.sealing.as_mut().expect("encrypting");
        let want = usize::try_from(cur.remaining.min(crate::crypt::CHUNK_LEN)).expect("small");
        sealing.plain.resize(want, 0);
        let mut got = 0;
        while got < want {
            match cur.file.read(&mut sealing.plain[got..]) {
                Ok(0) => {
                    return Err(PackError::Changed {
                        path: cur.scanned.path.clone(),
                        expected: cur.scanned.size,
                    })
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(source) => {
                    return Err(PackError::Io {
                        path: self.root.join(&cur.scanned.path),
                        source,
                    })
                }
            }
        }
        cur.hasher.update(&sealing.plain);
        cur.remaining -= want as u64;
        sealing.out.clear();
        sealing.out_pos = 0;
        let index = sealing.next;
        sealing.cipher.encrypt_chunk(
            index,
            index + 1 == sealing.chunks,
            &sealing.plain,
            &mut sealing.out,
        );
        sealing.next += 1;
        Ok(())
    }

    /// Hands out sealed bytes of the current file; 0 once it is all handed out.
    fn read_sealed(&mut self, buf: &mut [u8]) -> Result<usize, PackError> {
        loop {
            let cur = self.current.as_mut().expect("a file is open");
            let sealing = cur.sealing.as_mut().expect("encrypting");
            if sealing.out_pos < sealing.out.len() {
                let n = buf.len().min(sealing.out.len() - sealing.out_pos);
                buf[..n].copy_from_slice(&sealing.out[sealing.out_pos..sealing.out_pos + n]);
                sealing.out_pos += n;
                return Ok(n);
            }
            if cur.remaining == 0 {
                return Ok(0);
            }
            self.seal_next()?;
        }
    }

    fn read_inner(&mut self, buf: &mut [u8]) -> Result<usize, PackError> {
        loop {
            if self
                .current
                .as_ref()
                .is_some_and(|cur| cur.sealing.is_some())
            {
                let n = self.read_sealed(buf)?;
                if n == 0 {
                    self.close_current()?;
                    continue;
                }
                let cur = self.current.as_ref().expect("open");
                let sealing = cur.sealing.as_ref().expect("encrypting");
                if cur.remaining == 0 && sealing.out_pos == sealing.out.len() {
                    // Closed at once, so its entry is listed with this read.
                    self.close_current()?;
                }
                return Ok(n);
            }
            if let Some(cur) = &mut self.current {
                if cur.remaining == 0 {
                    self.close_current()?;
                    continue;
                }
                let want = buf
                    .len()
                    .min(usize::try_from(cur.remaining).unwrap_or(usize::MAX));
                let n = loop {
                    match cur.file.read(&mut buf[..want]) {
                        Ok(n) => break n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(source) => {
                            return Err(PackError::Io {
                                path: self.root.join(&cur.scanned.path),
                                source,
                            })
                        }
                    }
                };
                if n == 0 {
                    return Err(PackError::Changed {
                        path: cur.scanned.path.clone(),
                        expected: cur.scanned.size,
                    });
                }
                cur.hasher.update(&buf[..n]);
                cur.remaining -= n as u64;
                if cur.remaining == 0 {
                    // Closed at once, so its entry is listed with this read.
                    self.close_current()?;
                }
                return Ok(n);
            }
            let Some(scanned) = self.files.next() else {
                return Ok(0);
            };
            let full = self.root.join(&scanned.path);
            // O_NOFOLLOW semantics by check: the entry was a regular file at scan
            // time; refuse it if it has been swapped for a link since.
            let meta = fs::symlink_metadata(&full).map_err(io_err(&full))?;
            if meta.file_type().is_symlink() {
                return Err(PackError::Symlink { path: scanned.path });
            }
            let file = File::open(&full).map_err(io_err(&full))?;
            let sealing = self.encrypt.as_ref().map(|(key, salt)| Sealing {
                cipher: key.file(salt, &scanned.path),
                next: 0,
                chunks: crate::crypt::chunk_count(scanned.size),
                plain: Vec::new(),
                out: Vec::new(),
                out_pos: 0,
            });
            self.current = Some(Current {
                file,
                hasher: blake3::Hasher::new(),
                remaining: scanned.size,
                scanned,
                sealing,
            });
        }
    }
}

impl Read for PackReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.error.is_some() {
            return Err(io::Error::other("packing failed earlier"));
        }
        if buf.is_empty() {
            return Ok(0);
        }
        self.read_inner(buf).map_err(|e| self.fail(e))
    }
}

/// Packs a scanned directory and codes it group by group, reading every file
/// once: data group `g` holds packed bytes `g × group_len ..` (see
/// [`Manifest::group_range`]).
pub struct GroupPacker {
    reader: PackReader,
    k: u16,
    m: u16,
    group_len: u64,
    total_len: u64,
    salt: Hash,
    next: u64,
}

/// One coded data group.
pub struct PackedGroup<W> {
    /// Its manifest (the tails come from [`crate::dataset::shard_tails`]).
    pub group: GroupManifest,
    /// The sinks, handed back with the group's coded content.
    pub sinks: Vec<W>,
    /// The files that ended in this group (or before it, if empty).
    pub entries: Vec<FileEntry>,
}

impl GroupPacker {
    /// A packer of `scan` (from [`scan_dir`] of `root`) into groups of
    /// `group_len` packed bytes coded with `k + m`, starting at data group
    /// `first` (0 for a new upload, later to resume one).
    pub fn new(
        root: &Path,
        scan: &Scan,
        k: u16,
        m: u16,
        group_len: u64,
        salt: Hash,
        first: u64,
    ) -> Result<Self, PackError> {
        Self::with_key(root, scan, k, m, group_len, salt, first, None)
    }

    /// Like [`GroupPacker::new`], each file encrypted with `key` when there
    /// is one ([`PackReader::encrypted`]; `group_len` then counts stored
    /// bytes).
    #[allow(clippy::too_many_arguments, reason = "new's, and the key")]
    pub fn with_key(
        root: &Path,
        scan: &Scan,
        k: u16,
        m: u16,
        group_len: u64,
        salt: Hash,
        first: u64,
        key: Option<DatasetKey>,
    ) -> Result<Self, PackError> {
        let group_len = group_len.max(1);
        let total_len = match key {
            Some(_) => scan.encrypted_len(),
            None => scan.total_len(),
        };
        let start = first.saturating_mul(group_len).min(total_len);
        let files = scan.files.clone();
        let reader = match key {
            Some(key) => PackReader::encrypted_starting_at(root, files, start, key, salt)?,
            None => PackReader::starting_at(root, files, start)?,
        };
        Ok(GroupPacker {
            reader,
            k,
            m,
            group_len,
            total_len,
            salt,
            next: first,
        })
    }

    /// Number of data groups.
    pub fn group_count(&self) -> u64 {
        Manifest::group_count(self.total_len, self.group_len)
    }

    /// Codes the next data group into `sinks` (exactly `k + m`); `None` once
    /// every group is coded.
    pub fn next_group<W: Write>(
        &mut self,
        sinks: Vec<W>,
    ) -> Result<Option<PackedGroup<W>>, PackError> {
        if self.next >= self.group_count() {
            return Ok(None);
        }
        let start = self.next * self.group_len;
        let len = self.group_len.min(self.total_len - start);
        let params = params_for(self.k, self.m, len).map_err(EncodeError::from)?;
        let index = u32::try_from(self.next).map_err(|_| {
            PackError::Encode(EncodeError::Params(
                crate::erasure::ParamsError::DatasetTooLarge {
                    total_len: self.total_len,
                },
            ))
        })?;
        let coded = encode_group(
            GroupKind::Data,
            self.salt,
            index,
            start,
            params,
            len,
            &mut self.reader,
            sinks,
        );
        let (group, sinks) = match coded {
            Ok(done) => done,
            // A typed error from the reader beats the generic one it returned.
            Err(e) => return Err(self.reader.error.take().unwrap_or(PackError::Group(e))),
        };
        self.next += 1;
        Ok(Some(PackedGroup {
            group,
            sinks,
            entries: self.reader.take_entries(),
        }))
    }

    /// After the last group: the entries of the empty files at the end.
    pub fn finish(self) -> Result<Vec<FileEntry>, PackError> {
        self.reader.finish()
    }
}

/// A dataset coded in memory: its manifest, its index group and its data
/// groups, each with its `k + m` stored shards (coded content and tail). For
/// tests and small tools; `cairn upload` streams groups to disk instead.
#[derive(Debug, Clone)]
pub struct CodedDataset {
    /// The dataset manifest.
    pub manifest: Manifest,
    /// The index group (its id is the dataset id) and its stored shards.
    pub index: (GroupManifest, Vec<Vec<u8>>),
    /// Every data group and its stored shards.
    pub groups: Vec<(GroupManifest, Vec<Vec<u8>>)>,
}

impl CodedDataset {
    /// The dataset id.
    pub fn id(&self) -> crate::DatasetId {
        self.index.0.id()
    }
}

/// Packs and codes the directory `root` in memory (see [`CodedDataset`]).
pub fn code_dir(
    root: &Path,
    k: u16,
    m: u16,
    group_len: u64,
    salt: Hash,
) -> Result<CodedDataset, PackError> {
    let scan = scan_dir(root)?;
    let mut packer = GroupPacker::new(root, &scan, k, m, group_len, salt, 0)?;
    let n = usize::from(k) + usize::from(m);
    let mut entries = Vec::new();
    let mut groups = Vec::new();
    while let Some(done) = packer.next_group(vec![Vec::new(); n])? {
        entries.extend(done.entries);
        groups.push((done.group, done.sinks));
    }
    entries.extend(packer.finish()?);
    let ids = groups.iter().map(|(g, _)| g.id()).collect();
    let manifest = Manifest::new(k, m, group_len, entries, scan.dirs, ids)?;
    let index = crate::dataset::index_group(&manifest, salt)?;
    let stored = |(group, mut shards): (GroupManifest, Vec<Vec<u8>>)| {
        let tails = crate::dataset::shard_tails(&group).expect("small test groups");
        for (s, t) in shards.iter_mut().zip(tails) {
            s.extend_from_slice(&t);
        }
        (group, shards)
    };
    Ok(CodedDataset {
        manifest,
        index: stored(index),
        groups: groups.into_iter().map(stored).collect(),
    })
}

/// Writes a packed stream into a directory as the manifest's files, checking each
/// file's BLAKE3.
///
/// Feed it the packed bytes in order ([`Unpacker::write_packed`], or the
/// [`Write`] impl, e.g. as the output of
/// [`Decoder::read_all`](crate::erasure::Decoder::read_all)), then call
/// [`Unpacker::finish`]. If a write fails through the `Write` impl, `finish`
/// returns the typed error.
pub struct Unpacker {
    dest: PathBuf,
    files: Vec<FileEntry>,
    dirs: Vec<String>,
    total_len: u64,
    next: usize,
    current: Option<(File, blake3::Hasher, u64)>,
    written: u64,
    error: Option<String>,
    typed_error: Option<UnpackError>,
}

impl Unpacker {
    /// An unpacker of `manifest`'s files into `dest` (created if missing). Every
    /// path is checked again before anything is written.
    pub fn new(manifest: &Manifest, dest: &Path) -> Result<Self, UnpackError> {
        Self::of_files(
            manifest.files().to_vec(),
            manifest.dirs().to_vec(),
            manifest.total_len(),
            dest,
        )
    }

    /// An unpacker of `files` (packed back to back from offset 0 in this
    /// order, `total_len` bytes in all) and empty `dirs` into `dest`: for a
    /// private dataset, its files' plaintext entries
    /// ([`crate::manifest::sealed::plaintext_files`]).
    pub fn of_files(
        files: Vec<FileEntry>,
        dirs: Vec<String>,
        total_len: u64,
        dest: &Path,
    ) -> Result<Self, UnpackError> {
        for path in files.iter().map(|f| &f.path).chain(&dirs) {
            check_path(path).map_err(|reason| UnpackError::UnsafePath {
                path: path.clone(),
                reason,
            })?;
        }
        fs::create_dir_all(dest).map_err(|source| UnpackError::Io {
            path: dest.to_owned(),
            source,
        })?;
        Ok(Unpacker {
            dest: dest.to_owned(),
            files,
            dirs,
            total_len,
            next: 0,
            current: None,
            written: 0,
            error: None,
            typed_error: None,
        })
    }

    /// Writes the next packed bytes.
    pub fn write_packed(&mut self, mut buf: &[u8]) -> Result<(), UnpackError> {
        if let Some(e) = &self.error {
            return Err(UnpackError::Failed(e.clone()));
        }
        let result = (|| {
            while !buf.is_empty() {
                if self.written + buf.len() as u64 > self.total_len {
                    return Err(UnpackError::TooLong {
                        expected: self.total_len,
                    });
                }
                self.open_next_if_needed()?;
                let (file, hasher, remaining) = self
                    .current
                    .as_mut()
                    .expect("bytes remain, so a file is open");
                let n = buf
                    .len()
                    .min(usize::try_from(*remaining).unwrap_or(usize::MAX));
                let path = &self.files[self.next - 1].path;
                file.write_all(&buf[..n])
                    .map_err(|source| UnpackError::Io {
                        path: self.dest.join(path),
                        source,
                    })?;
                hasher.update(&buf[..n]);
                *remaining -= n as u64;
                self.written += n as u64;
                buf = &buf[n..];
                if *remaining == 0 {
                    self.close_current()?;
                }
            }
            Ok(())
        })();
        if let Err(e) = &result {
            self.error = Some(e.to_string());
        }
        result
    }

    /// Creates the remaining (empty) files and the empty directories, and
    /// checks that the whole stream arrived.
    pub fn finish(mut self) -> Result<(), UnpackError> {
        if let Some(e) = self.typed_error.take() {
            return Err(e);
        }
        if let Some(e) = self.error.take() {
            return Err(UnpackError::Failed(e));
        }
        if self.written != self.total_len {
            return Err(UnpackError::Truncated {
                expected: self.total_len,
                got: self.written,
            });
        }
        // Only empty files can remain.
        while self.next < self.files.len() || self.current.is_some() {
            self.open_next_if_needed()?;
            self.close_current()?;
        }
        for dir in std::mem::take(&mut self.dirs) {
            let mut path = self.dest.clone();
            for part in dir.split('/') {
                path.push(part);
                ensure_dir(&path)?;
            }
        }
        Ok(())
    }

    /// Opens the next file if none is open, creating (and closing) empty files
    /// on the way.
    fn open_next_if_needed(&mut self) -> Result<(), UnpackError> {
        while self.current.is_none() {
            let Some(entry) = self.files.get(self.next) else {
                return Ok(());
            };
            let file = create_file(&self.dest, &entry.path)?;
            self.next += 1;
            self.current = Some((file, blake3::Hasher::new(), entry.size));
            if entry.size == 0 {
                self.close_current()?;
            }
        }
        Ok(())
    }

    fn close_current(&mut self) -> Result<(), UnpackError> {
        let Some((file, hasher, _)) = self.current.take() else {
            return Ok(());
        };
        let entry = &self.files[self.next - 1];
        // Not fsynced: an interrupted unpack is simply run again, and syncing
        // each of many small files would dominate the time.
        drop(file);
        if *hasher.finalize().as_bytes() != entry.blake3 {
            let _ = fs::remove_file(self.dest.join(&entry.path));
            return Err(UnpackError::HashMismatch {
                path: entry.path.clone(),
            });
        }
        Ok(())
    }
}

impl Write for Unpacker {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self.write_packed(buf) {
            Ok(()) => Ok(buf.len()),
            Err(e) => {
                let err = io::Error::other(e.to_string());
                if self.typed_error.is_none() {
                    self.typed_error = Some(e);
                }
                Err(err)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// Creates `dest/rel` as a new file, creating parent folders without following
/// any symbolic link and without overwriting anything.
fn create_file(dest: &Path, rel: &str) -> Result<File, UnpackError> {
    let mut dir = dest.to_owned();
    let mut parts = rel.split('/').peekable();
    while let Some(part) = parts.next() {
        if parts.peek().is_none() {
            let path = dir.join(part);
            return OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&path)
                .map_err(|source| {
                    if source.kind() == io::ErrorKind::AlreadyExists {
                        UnpackError::Exists { path }
                    } else {
                        UnpackError::Io { path, source }
                    }
                });
        }
        dir.push(part);
        ensure_dir(&dir)?;
    }
    unreachable!("split always yields at least one part")
}

/// Makes `dir` a directory: keeps an existing one, creates a missing one, and
/// refuses anything else (a file, or a symbolic link, which is not followed).
fn ensure_dir(dir: &Path) -> Result<(), UnpackError> {
    match fs::symlink_metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(UnpackError::NotADirectory {
            path: dir.to_owned(),
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            fs::create_dir(dir).map_err(|source| UnpackError::Io {
                path: dir.to_owned(),
                source,
            })
        }
        Err(source) => Err(UnpackError::Io {
            path: dir.to_owned(),
            source,
        }),
    }
}

/// Unpacks the packed stream `packed` of `manifest` into `dest`.
pub fn unpack<R: Read>(manifest: &Manifest, mut packed: R, dest: &Path) -> Result<(), UnpackError> {
    let mut unpacker = Unpacker::new(manifest, dest)?;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match packed.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(UnpackError::Read(e)),
        };
        unpacker.write_packed(&buf[..n])?;
    }
    unpacker.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DatasetId;
    use std::sync::atomic::{AtomicU32, Ordering};

    /// A fresh directory under the system temp dir, removed on drop.
    pub(crate) struct TempDir(PathBuf);

    impl TempDir {
        pub(crate) fn new(tag: &str) -> Self {
            static N: AtomicU32 = AtomicU32::new(0);
            let path = std::env::temp_dir().join(format!(
                "cairn-core-{tag}-{}-{}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = fs::remove_dir_all(&path);
            fs::create_dir_all(&path).unwrap();
            TempDir(path)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    /// A manifest of in-memory files, with made-up group ids.
    fn manifest_of(files: &[(&str, &[u8])]) -> (Manifest, Vec<u8>) {
        let (entries, packed) = crate::manifest::pack_bytes(files.iter().copied()).unwrap();
        let groups = (0..Manifest::group_count(packed.len() as u64, 1024))
            .map(|g| DatasetId([g as u8; 32]))
            .collect();
        (
            Manifest::new(3, 2, 1024, entries, vec![], groups).unwrap(),
            packed,
        )
    }

    fn write(root: &Path, rel: &str, bytes: &[u8]) {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, bytes).unwrap();
    }

    #[test]
    fn directory_round_trips_through_groups_with_empty_dirs() {
        let src = TempDir::new("src");
        write(&src.0, "a/b/c.txt", b"nested");
        write(&src.0, "empty", b"");
        write(&src.0, "dir with space/ünïcødé 文件.bin", &[7u8; 1000]);
        write(&src.0, "z", &(0..=255).collect::<Vec<u8>>());
        fs::create_dir_all(src.0.join("only/empty/dirs")).unwrap();
        fs::create_dir_all(src.0.join("a/also-empty")).unwrap();

        let coded = code_dir(&src.0, 3, 2, 300, [4; 32]).unwrap();
        let manifest = &coded.manifest;
        let paths: Vec<&str> = manifest.files().iter().map(|f| f.path.as_str()).collect();
        assert_eq!(
            paths,
            ["a/b/c.txt", "dir with space/ünïcødé 文件.bin", "empty", "z"]
        );
        assert_eq!(manifest.dirs(), ["a/also-empty", "only/empty/dirs"]);
        // 1262 bytes in groups of 300: the 1000-byte file spans 4 groups.
        assert_eq!(coded.groups.len(), 5);
        assert_eq!(
            manifest.groups().to_vec(),
            coded.groups.iter().map(|(g, _)| g.id()).collect::<Vec<_>>()
        );
        let big = manifest.file("dir with space/ünïcødé 文件.bin").unwrap();
        assert_eq!(manifest.groups_for(big.range()), 0..4);

        // The index group holds the manifest and its id is the dataset id.
        let (index, shards) = &coded.index;
        assert_eq!(coded.id(), index.id());
        let sources = shards.iter().map(|s| Some(&s[..])).collect();
        let mut content = Vec::new();
        index
            .decoder(sources)
            .unwrap()
            .read_all(&mut content)
            .unwrap();
        assert_eq!(Manifest::decode(&content).unwrap(), *manifest);

        // Decode each group from a parity-heavy subset, in order, and unpack.
        let dst = TempDir::new("dst");
        let mut unpacker = Unpacker::new(manifest, &dst.0).unwrap();
        for (group, shards) in &coded.groups {
            let sources = vec![
                None,
                Some(&shards[1][..]),
                None,
                Some(&shards[3][..]),
                Some(&shards[4][..]),
            ];
            group
                .decoder(sources)
                .unwrap()
                .read_all(&mut unpacker)
                .unwrap();
        }
        unpacker.finish().unwrap();
        for f in manifest.files() {
            assert_eq!(
                fs::read(dst.0.join(&f.path)).unwrap(),
                fs::read(src.0.join(&f.path)).unwrap(),
                "{}",
                f.path
            );
        }
        assert!(dst.0.join("only/empty/dirs").is_dir());
        assert!(dst.0.join("a/also-empty").is_dir());
    }

    /// A group's manifest and its coded data shards (content only).
    type PackedGroup = (GroupManifest, Vec<Vec<u8>>);

    /// Packs `src` encrypted from data group `first` on: the groups and the
    /// entries.
    fn pack_encrypted(src: &Path, first: u64) -> (Vec<PackedGroup>, Vec<FileEntry>) {
        let scan = scan_dir(src).unwrap();
        let key = DatasetKey::from_bytes([3; 32]);
        let mut packer =
            GroupPacker::with_key(src, &scan, 2, 1, 70_000, [5; 32], first, Some(key)).unwrap();
        let mut groups = Vec::new();
        let mut entries = Vec::new();
        while let Some(done) = packer.next_group(vec![Vec::new(); 3]).unwrap() {
            entries.extend(done.entries);
            groups.push((done.group, done.sinks));
        }
        entries.extend(packer.finish().unwrap());
        (groups, entries)
    }

    #[test]
    fn encrypted_packing_hides_contents_resumes_identically_and_decrypts() {
        let src = TempDir::new("enc");
        let secret: Vec<u8> = b"TOP-SECRET-PAYLOAD "
            .iter()
            .copied()
            .cycle()
            .take(150_000)
            .collect();
        write(&src.0, "big", &secret);
        write(&src.0, "e", b"");
        write(&src.0, "small", b"TOP-SECRET-SMALL");
        let (groups, entries) = pack_encrypted(&src.0, 0);
        let stored: u64 = [150_000u64, 0, 16]
            .iter()
            .map(|p| crate::crypt::stored_len(*p))
            .sum();
        assert_eq!(groups.len() as u64, stored.div_ceil(70_000));
        assert_eq!(entries.iter().map(|e| e.size).sum::<u64>(), stored);
        assert_eq!(entries[0].blake3, crate::hash::blake3(&secret));
        let mut packed = Vec::new();
        for (group, shards) in &groups {
            let sources = shards.iter().map(|s| Some(&s[..])).collect();
            group
                .decoder(sources)
                .unwrap()
                .read_all(&mut packed)
                .unwrap();
            for s in shards {
                assert!(!s.windows(10).any(|w| w == b"TOP-SECRET"));
            }
        }
        // A resumed upload codes the same groups (encryption is deterministic).
        for first in 1..groups.len() as u64 {
            let (later, _) = pack_encrypted(&src.0, first);
            assert_eq!(later[0].0, groups[first as usize].0, "from group {first}");
        }
        // The stored stream decrypts into the files.
        let groups_ids = groups.iter().map(|(g, _)| g.id()).collect();
        let manifest = Manifest::new(2, 1, 70_000, entries, vec![], groups_ids).unwrap();
        let mut dec = crate::manifest::sealed::StreamDecryptor::new(
            &manifest,
            DatasetKey::from_bytes([3; 32]),
            [5; 32],
        );
        let mut plain = Vec::new();
        for piece in packed.chunks(10_000) {
            dec.push(piece, &mut plain).unwrap();
        }
        dec.finish().unwrap();
        let files = crate::manifest::sealed::plaintext_files(&manifest).unwrap();
        let dst = TempDir::new("enc-dst");
        let total = files.iter().map(|f| f.size).sum();
        let mut unpacker = Unpacker::of_files(files, vec![], total, &dst.0).unwrap();
        unpacker.write_packed(&plain).unwrap();
        unpacker.finish().unwrap();
        assert_eq!(fs::read(dst.0.join("big")).unwrap(), secret);
        assert_eq!(fs::read(dst.0.join("small")).unwrap(), b"TOP-SECRET-SMALL");
        assert_eq!(fs::read(dst.0.join("e")).unwrap(), b"");
    }

    #[test]
    fn packing_resumes_at_any_group_with_the_same_groups_and_entries() {
        let src = TempDir::new("resume");
        write(&src.0, "a", &[1u8; 700]);
        write(&src.0, "b", b"");
        write(&src.0, "c", &[2u8; 100]);
        write(&src.0, "d", b"");
        let whole = code_dir(&src.0, 2, 1, 200, [0; 32]).unwrap();
        let scan = scan_dir(&src.0).unwrap();
        for first in 0..whole.groups.len() as u64 {
            let mut packer = GroupPacker::new(&src.0, &scan, 2, 1, 200, [0; 32], first).unwrap();
            let mut entries = Vec::new();
            let mut g = first as usize;
            while let Some(done) = packer.next_group(vec![Vec::new(); 3]).unwrap() {
                assert_eq!(done.group, whole.groups[g].0);
                entries.extend(done.entries);
                g += 1;
            }
            entries.extend(packer.finish().unwrap());
            let later: Vec<_> = whole
                .manifest
                .files()
                .iter()
                .filter(|f| {
                    f.offset + f.size > first * 200 || (f.size == 0 && f.offset >= first * 200)
                })
                .cloned()
                .collect();
            assert_eq!(entries, later, "from group {first}");
        }
    }

    #[cfg(unix)]
    #[test]
    fn symlinks_are_refused_by_name() {
        let src = TempDir::new("link");
        write(&src.0, "sub/real", b"x");
        std::os::unix::fs::symlink("/etc/passwd", src.0.join("sub/evil")).unwrap();
        let err = code_dir(&src.0, 3, 2, 1024, [0; 32]).unwrap_err();
        assert!(
            matches!(err, PackError::Symlink { ref path } if path == "sub/evil"),
            "{err}"
        );
        assert!(err.to_string().contains("sub/evil"));

        // A symlinked directory is refused too.
        let src = TempDir::new("dirlink");
        std::os::unix::fs::symlink("/etc", src.0.join("etc")).unwrap();
        let err = scan_dir(&src.0).unwrap_err();
        assert!(
            matches!(err, PackError::Symlink { ref path } if path == "etc"),
            "{err}"
        );
    }

    #[test]
    fn backslash_names_are_refused() {
        let src = TempDir::new("bs");
        write(&src.0, "a\\b", b"x");
        let err = scan_dir(&src.0).unwrap_err();
        assert!(
            matches!(err, PackError::UnsafeName { ref path, reason: PathProblem::Backslash } if path == "a\\b"),
            "{err}"
        );
    }

    #[cfg(unix)]
    #[test]
    fn unpack_never_follows_a_symlink_in_the_destination() {
        let (manifest, packed) = manifest_of(&[("sub/file", b"data")]);
        let dst = TempDir::new("dstlink");
        let outside = TempDir::new("outside");
        std::os::unix::fs::symlink(&outside.0, dst.0.join("sub")).unwrap();
        let err = unpack(&manifest, &packed[..], &dst.0).unwrap_err();
        assert!(
            matches!(err, UnpackError::NotADirectory { ref path } if path.ends_with("sub")),
            "{err}"
        );
        assert!(!outside.0.join("file").exists());

        // An existing file is not overwritten.
        let dst = TempDir::new("exists");
        write(&dst.0, "sub/file", b"keep");
        let err = unpack(&manifest, &packed[..], &dst.0).unwrap_err();
        assert!(matches!(err, UnpackError::Exists { .. }), "{err}");
        assert_eq!(fs::read(dst.0.join("sub/file")).unwrap(), b"keep");
    }

    #[test]
    fn unpack_checks_hashes_and_length() {
        let (manifest, packed) = manifest_of(&[("a", b"hello"), ("b", b""), ("c", b"world")]);

        let dst = TempDir::new("ok");
        unpack(&manifest, &packed[..], &dst.0).unwrap();
        assert_eq!(fs::read(dst.0.join("b")).unwrap(), b"");
        assert_eq!(fs::read(dst.0.join("c")).unwrap(), b"world");

        let mut bad = packed.clone();
        bad[7] ^= 1;
        let dst = TempDir::new("bad");
        let err = unpack(&manifest, &bad[..], &dst.0).unwrap_err();
        assert!(
            matches!(err, UnpackError::HashMismatch { ref path } if path == "c"),
            "{err}"
        );
        assert!(!dst.0.join("c").exists(), "a corrupt file is removed");

        let dst = TempDir::new("short");
        let err = unpack(&manifest, &packed[..8], &dst.0).unwrap_err();
        assert!(
            matches!(
                err,
                UnpackError::Truncated {
                    expected: 10,
                    got: 8
                }
            ),
            "{err}"
        );

        let dst = TempDir::new("long");
        let mut long = packed.clone();
        long.push(0);
        let err = unpack(&manifest, &long[..], &dst.0).unwrap_err();
        assert!(
            matches!(err, UnpackError::TooLong { expected: 10 }),
            "{err}"
        );
    }

    #[test]
    fn root_must_be_a_directory() {
        let dir = TempDir::new("file-root");
        write(&dir.0, "f", b"x");
        assert!(matches!(
            scan_dir(&dir.0.join("f")),
            Err(PackError::NotADirectory { .. })
        ));
    }
}
