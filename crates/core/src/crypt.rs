//! Private datasets: the client-side encryption of file contents and of the
//! dataset manifest, without I/O (see docs/DESIGN.md, "Private datasets").
//!
//! A [`DatasetKey`] is 32 random bytes the user keeps. From it, BLAKE3's key
//! derivation (`derive_key`, one context string per purpose) makes:
//!
//! - a 16-byte [`KeyId`], stored in the clear in an encrypted manifest so a
//!   wrong key is told apart from a tampered manifest;
//! - per file (dataset salt and path as key material) a [`FileCipher`]: a
//!   ChaCha20-Poly1305 key (RFC 8439, `ring`) and a nonce key;
//! - the manifest's ChaCha20-Poly1305 key and nonce key
//!   ([`crate::manifest::sealed`]).
//!
//! A file's contents are cut into chunks of [`CHUNK_LEN`] plaintext bytes (the
//! last one shorter; an empty file has no chunk). Stored chunk `i` is
//!
//! ```text
//! | nonce (12) | ciphertext (plaintext length) | Poly1305 tag (16) |
//! ```
//!
//! with associated data `i` (u64 LE) and a last-chunk flag (u8), so a chunk
//! moved, dropped, or cut at the end fails to open. The nonce is synthetic:
//! the keyed BLAKE3 of (`i`, flag, plaintext) under the file's nonce key,
//! truncated to 12 bytes. The same key and nonce therefore never seal two
//! different plaintexts, whatever is re-encrypted (a resumed upload re-reads
//! files that may have changed), and re-encrypting an unchanged chunk gives
//! the same bytes, so a resumed upload re-codes a group byte for byte. What it
//! reveals beyond randomized encryption: that the same chunk of the same file
//! (same dataset, path and position) holds the same bytes in two encryptions.
//!
//! Stored chunks are fixed-size, so any plaintext byte range maps to the range
//! of whole stored chunks that covers it ([`span`]), and those chunks alone
//! decrypt it ([`FileCipher::decrypt_span`], or [`ChunkDecryptor`] as the bytes
//! stream in).
use std::ops::Range;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305};

use crate::hash::Hash;

/// Plaintext bytes per chunk (the last chunk of a file holds the rest).
pub const CHUNK_LEN: u64 = 64 * 1024;
/// Nonce bytes in front of each stored chunk.
pub const NONCE_LEN: usize = 12;
/// Poly1305 tag bytes after each stored chunk.
pub const TAG_LEN: usize = 16;
/// Stored bytes per chunk beyond its plaintext.
pub const CHUNK_OVERHEAD: u64 = (NONCE_LEN + TAG_LEN) as u64;
/// Stored bytes of a full chunk.
pub const STORED_CHUNK_LEN: u64 = CHUNK_LEN + CHUNK_OVERHEAD;

/// Key-derivation contexts (BLAKE3 `derive_key`), one per purpose.
const CTX_KEY_ID: &str = "cairn 2026-12-01 dataset key id";
const CTX_FILE_KEY: &str = "cairn 2026-12-01 file content key";
const CTX_FILE_NONCE: &str = "cairn 2026-12-01 file nonce key";
pub(crate) const CTX_MANIFEST_KEY: &str = "cairn 2026-12-01 manifest key";
pub(crate) const CTX_MANIFEST_NONCE: &str = "cairn 2026-12-01 manifest nonce key";

/// Why encrypted bytes could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptError {
    /// A chunk did not authenticate: its bytes were altered, it was moved from
    /// another position or file, or the file was cut short at a chunk boundary.
    #[error("encrypted chunk {index} failed authentication (altered, moved or cut short), or the key is not this dataset's")]
    Chunk {
        /// The chunk's index in its file.
        index: u64,
    },
    /// The stored bytes ended inside (or before) a chunk that should be there.
    #[error("the encrypted bytes ended inside chunk {index}")]
    Truncated {
        /// The chunk that is incomplete.
        index: u64,
    },
    /// More stored bytes arrived than the chunks read hold.
    #[error("{extra} encrypted bytes follow the last chunk read")]
    TooLong {
        /// Bytes beyond the end.
        extra: u64,
    },
    /// The plaintext range asked for is not within the file.
    #[error("bytes {start}..{end} are not a range within the file's {len} bytes")]
    Range {
        /// Range start.
        start: u64,
        /// Range end (exclusive).
        end: u64,
        /// The file's plaintext length.
        len: u64,
    },
    /// No plaintext length encrypts to this many stored bytes.
    #[error("{0} bytes is not the length of an encrypted file")]
    StoredLen(u64),
}

/// The user's dataset key: 32 secret bytes (see the [module docs](self)).
#[derive(Clone, PartialEq, Eq)]
pub struct DatasetKey([u8; 32]);

impl std::fmt::Debug for DatasetKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DatasetKey(id {})", self.id())
    }
}

impl std::fmt::Debug for FileCipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("FileCipher")
    }
}

/// A short public name of a [`DatasetKey`] (not secret: a one-way derivation).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(pub [u8; 16]);

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for b in self.0 {
            write!(f, "{b:02x}")?;
        }
        Ok(())
    }
}

/// BLAKE3 `derive_key(context, parts…)`.
pub(crate) fn derive(context: &str, parts: &[&[u8]]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key(context);
    for p in parts {
        h.update(p);
    }
    *h.finalize().as_bytes()
}

/// The synthetic nonce: keyed BLAKE3 of `parts`, first 12 bytes.
pub(crate) fn synthetic_nonce(nonce_key: &[u8; 32], parts: &[&[u8]]) -> [u8; NONCE_LEN] {
    let mut h = blake3::Hasher::new_keyed(nonce_key);
    for p in parts {
        h.update(p);
    }
    let mut nonce = [0u8; NONCE_LEN];
    h.finalize_xof().fill(&mut nonce);
    nonce
}

impl DatasetKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        DatasetKey(bytes)
    }

    /// The key's bytes (to write the key file).
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The key's public id.
    pub fn id(&self) -> KeyId {
        let full = derive(CTX_KEY_ID, &[&self.0]);
        let mut id = [0u8; 16];
        id.copy_from_slice(&full[..16]);
        KeyId(id)
    }

    /// The cipher of file `path` of the dataset whose salt (nonce) is `salt`.
    pub fn file(&self, salt: &Hash, path: &str) -> FileCipher {
        let len = (path.len() as u64).to_le_bytes();
        let parts: [&[u8]; 4] = [&self.0, salt, &len, path.as_bytes()];
        let key = derive(CTX_FILE_KEY, &parts);
        FileCipher {
            aead: aead_key(&key),
            key,
            nonce_key: derive(CTX_FILE_NONCE, &parts),
        }
    }

    /// Key material for the manifest's AEAD key and nonce key.
    pub(crate) fn manifest_keys(&self, salt: &Hash) -> (LessSafeKey, [u8; 32]) {
        let parts: [&[u8]; 2] = [&self.0, salt];
        (
            aead_key(&derive(CTX_MANIFEST_KEY, &parts)),
            derive(CTX_MANIFEST_NONCE, &parts),
        )
    }
}

/// A ChaCha20-Poly1305 key. (`LessSafeKey`: ring's name for a key whose
/// caller supplies the nonces; ours are synthetic, see the module docs.)
fn aead_key(bytes: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&CHACHA20_POLY1305, bytes).expect("a 32-byte key"))
}

/// Seals `buf` in place; returns the tag.
pub(crate) fn seal(
    key: &LessSafeKey,
    nonce: [u8; NONCE_LEN],
    ad: &[u8],
    buf: &mut [u8],
) -> [u8; TAG_LEN] {
    let tag = key
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(ad), buf)
        .expect("a chunk or manifest is far below ChaCha20's length limit");
    tag.as_ref().try_into().expect("a 16-byte tag")
}

/// Opens `body_and_tag` in place (ciphertext then tag); the plaintext length
/// on success.
pub(crate) fn open(
    key: &LessSafeKey,
    nonce: &[u8],
    ad: &[u8],
    body_and_tag: &mut [u8],
) -> Option<usize> {
    let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
    key.open_in_place(nonce, Aad::from(ad), body_and_tag)
        .ok()
        .map(|plain| plain.len())
}

/// Stored (encrypted) length of a file of `plain_len` bytes.
pub fn stored_len(plain_len: u64) -> u64 {
    plain_len + chunk_count(plain_len) * CHUNK_OVERHEAD
}

/// The plaintext length whose encryption is `stored` bytes long.
pub fn plain_len(stored: u64) -> Result<u64, CryptError> {
    let chunks = stored.div_ceil(STORED_CHUNK_LEN);
    let plain = stored
        .checked_sub(chunks * CHUNK_OVERHEAD)
        .ok_or(CryptError::StoredLen(stored))?;
    if chunk_count(plain) != chunks {
        return Err(CryptError::StoredLen(stored));
    }
    Ok(plain)
}

/// Chunks of a file of `plain_len` bytes (none for an empty file).
pub fn chunk_count(plain_len: u64) -> u64 {
    plain_len.div_ceil(CHUNK_LEN)
}

/// Plaintext length of chunk `index` of a file of `plain_len` bytes.
fn chunk_plain_len(plain_len: u64, index: u64) -> u64 {
    (plain_len - index * CHUNK_LEN).min(CHUNK_LEN)
}

/// The stored chunks that cover a plaintext range of one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Span {
    /// The chunks' indexes.
    pub chunks: Range<u64>,
    /// Their stored bytes, counted from the file's first stored byte (add the
    /// file's offset in the packed stream to fetch them).
    pub stored: Range<u64>,
    /// The plaintext range asked for.
    pub plain: Range<u64>,
    /// The file's plaintext length.
    pub plain_len: u64,
}

impl Span {
    /// Plaintext bytes of the first chunk before the range.
    pub fn skip(&self) -> u64 {
        self.plain.start - self.chunks.start * CHUNK_LEN
    }
}

/// The whole stored chunks covering plaintext bytes `range` of a file of
/// `plain_len` bytes. An empty range inside the file covers no chunk.
pub fn span(plain_len: u64, range: Range<u64>) -> Result<Span, CryptError> {
    if range.start > range.end || range.end > plain_len {
        return Err(CryptError::Range {
            start: range.start,
            end: range.end,
            len: plain_len,
        });
    }
    let chunks = if range.is_empty() {
        0..0
    } else {
        range.start / CHUNK_LEN..range.end.div_ceil(CHUNK_LEN)
    };
    let start = chunks.start * STORED_CHUNK_LEN;
    let end = if chunks.is_empty() {
        start
    } else {
        let last = chunks.end - 1;
        last * STORED_CHUNK_LEN + chunk_plain_len(plain_len, last) + CHUNK_OVERHEAD
    };
    Ok(Span {
        chunks,
        stored: start..end,
        plain: range,
        plain_len,
    })
}

/// Encrypts and decrypts the chunks of one file ([`DatasetKey::file`]).
pub struct FileCipher {
    aead: LessSafeKey,
    /// The AEAD key's bytes, to clone the cipher (ring's keys are not `Clone`).
    key: [u8; 32],
    nonce_key: [u8; 32],
}

impl Clone for FileCipher {
    fn clone(&self) -> Self {
        FileCipher {
            aead: aead_key(&self.key),
            key: self.key,
            nonce_key: self.nonce_key,
        }
    }
}

/// Associated data of chunk `index`.
fn chunk_ad(index: u64, last: bool) -> [u8; 9] {
    let mut ad = [0u8; 9];
    ad[..8].copy_from_slice(&index.to_le_bytes());
    ad[8] = u8::from(last);
    ad
}

impl FileCipher {
    /// Appends stored chunk `index` (the file's last chunk if `last`) of
    /// `plain` (at most [`CHUNK_LEN`] bytes) to `out`.
    pub fn encrypt_chunk(&self, index: u64, last: bool, plain: &[u8], out: &mut Vec<u8>) {
        debug_assert!(plain.len() as u64 <= CHUNK_LEN);
        let ad = chunk_ad(index, last);
        let nonce = synthetic_nonce(&self.nonce_key, &[&ad, plain]);
        out.extend_from_slice(&nonce);
        let at = out.len();
        out.extend_from_slice(plain);
        let tag = seal(&self.aead, nonce, &ad, &mut out[at..]);
        out.extend_from_slice(&tag);
    }

    /// Appends the plaintext of stored chunk `index` to `out`.
    pub fn decrypt_chunk(
        &self,
        index: u64,
        last: bool,
        stored: &[u8],
        out: &mut Vec<u8>,
    ) -> Result<(), CryptError> {
        if stored.len() < NONCE_LEN + TAG_LEN {
            return Err(CryptError::Truncated { index });
        }
        let (nonce, body_and_tag) = stored.split_at(NONCE_LEN);
        let at = out.len();
        out.extend_from_slice(body_and_tag);
        match open(&self.aead, nonce, &chunk_ad(index, last), &mut out[at..]) {
            Some(len) => {
                out.truncate(at + len);
                Ok(())
            }
            None => {
                out.truncate(at);
                Err(CryptError::Chunk { index })
            }
        }
    }

    /// Encrypts a whole file held in memory (tests, small tools; uploads stream
    /// through [`crate::manifest::fs::PackReader`]).
    pub fn encrypt_all(&self, plain: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(stored_len(plain.len() as u64) as usize);
        let n = chunk_count(plain.len() as u64);
        for (i, chunk) in plain.chunks(CHUNK_LEN as usize).enumerate() {
            self.encrypt_chunk(i as u64, i as u64 + 1 == n, chunk, &mut out);
        }
        out
    }

    /// The plaintext of `span` from exactly its stored bytes (`span.stored` of
    /// the file).
    pub fn decrypt_span(&self, span: &Span, stored: &[u8]) -> Result<Vec<u8>, CryptError> {
        let mut d = ChunkDecryptor::new(self.clone(), span.clone());
        let mut out = Vec::with_capacity((span.plain.end - span.plain.start) as usize);
        d.push(stored, &mut out)?;
        d.finish()?;
        Ok(out)
    }
}

/// Decrypts a span's stored chunks as they arrive, in pieces of any size.
pub struct ChunkDecryptor {
    cipher: FileCipher,
    span: Span,
    /// The next chunk to open.
    next: u64,
    /// Stored bytes of `next` received so far.
    pending: Vec<u8>,
    scratch: Vec<u8>,
}

impl ChunkDecryptor {
    /// A decryptor of `span`'s chunks (from [`span`]).
    pub fn new(cipher: FileCipher, span: Span) -> Self {
        ChunkDecryptor {
            cipher,
            next: span.chunks.start,
            span,
            pending: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Stored length of chunk `index`.
    fn stored_chunk_len(&self, index: u64) -> usize {
        (chunk_plain_len(self.span.plain_len, index) + CHUNK_OVERHEAD) as usize
    }

    /// Takes the next stored bytes; appends to `out` the plaintext of the
    /// range that the chunks completed hold.
    pub fn push(&mut self, mut stored: &[u8], out: &mut Vec<u8>) -> Result<(), CryptError> {
        while !stored.is_empty() {
            if self.next >= self.span.chunks.end {
                return Err(CryptError::TooLong {
                    extra: stored.len() as u64,
                });
            }
            let want = self.stored_chunk_len(self.next);
            let n = (want - self.pending.len()).min(stored.len());
            self.pending.extend_from_slice(&stored[..n]);
            stored = &stored[n..];
            if self.pending.len() == want {
                let index = self.next;
                let last = index + 1 == chunk_count(self.span.plain_len);
                self.scratch.clear();
                self.cipher
                    .decrypt_chunk(index, last, &self.pending, &mut self.scratch)?;
                self.pending.clear();
                // The part of this chunk inside the range.
                let chunk_start = index * CHUNK_LEN;
                let from = self.span.plain.start.max(chunk_start) - chunk_start;
                let to = self
                    .span
                    .plain
                    .end
                    .min(chunk_start + self.scratch.len() as u64)
                    - chunk_start;
                out.extend_from_slice(&self.scratch[from as usize..to as usize]);
                self.next += 1;
            }
        }
        Ok(())
    }

    /// After the last stored byte: an error unless every chunk arrived.
    pub fn finish(self) -> Result<(), CryptError> {
        if self.next < self.span.chunks.end {
            return Err(CryptError::Truncated { index: self.next });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SALT: Hash = [9; 32];

    fn cipher() -> FileCipher {
        DatasetKey::from_bytes([7; 32]).file(&SALT, "data/train.bin")
    }

    fn plain(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    /// Reads `range` of `stored` the way a gateway would: only the span's bytes.
    fn read(c: &FileCipher, plain_len: u64, stored: &[u8], range: Range<u64>) -> Vec<u8> {
        let s = span(plain_len, range).unwrap();
        c.decrypt_span(&s, &stored[s.stored.start as usize..s.stored.end as usize])
            .unwrap()
    }

    #[test]
    fn lengths_round_trip_and_only_real_stored_lengths_are_accepted() {
        let c = CHUNK_LEN;
        for p in [0, 1, c - 1, c, c + 1, 2 * c, 5 * c + 17] {
            assert_eq!(plain_len(stored_len(p)), Ok(p), "{p}");
        }
        assert_eq!(stored_len(0), 0);
        assert_eq!(stored_len(1), 29);
        assert_eq!(stored_len(c), STORED_CHUNK_LEN);
        for s in [1, 27, 28, STORED_CHUNK_LEN + 28] {
            assert_eq!(plain_len(s), Err(CryptError::StoredLen(s)), "{s}");
        }
    }

    #[test]
    fn every_range_boundary_reads_exactly_its_bytes() {
        let c = CHUNK_LEN;
        for len in [0, 1, c - 1, c, c + 1, 3 * c, 3 * c + 5] {
            let data = plain(len as usize);
            let cp = cipher();
            let stored = cp.encrypt_all(&data);
            assert_eq!(stored.len() as u64, stored_len(len));
            let mut points = vec![
                0,
                1,
                c - 1,
                c,
                c + 1,
                2 * c,
                2 * c + 1,
                3 * c,
                len - len.min(1),
                len,
            ];
            points.retain(|p| *p <= len);
            for &a in &points {
                for &b in &points {
                    if a <= b {
                        assert_eq!(
                            read(&cp, len, &stored, a..b),
                            &data[a as usize..b as usize],
                            "len {len} range {a}..{b}"
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn a_span_covers_only_the_chunks_it_needs() {
        let c = CHUNK_LEN;
        let s = span(3 * c + 5, c + 1..2 * c + 1).unwrap();
        assert_eq!(s.chunks, 1..3);
        assert_eq!(s.stored, STORED_CHUNK_LEN..3 * STORED_CHUNK_LEN);
        assert_eq!(s.skip(), 1);
        let s = span(3 * c + 5, 3 * c..3 * c + 5).unwrap();
        assert_eq!(
            s.stored,
            3 * STORED_CHUNK_LEN..3 * STORED_CHUNK_LEN + 5 + CHUNK_OVERHEAD
        );
        assert_eq!(
            span(10, 5..11),
            Err(CryptError::Range {
                start: 5,
                end: 11,
                len: 10
            })
        );
    }

    #[test]
    fn altered_moved_cut_or_foreign_chunks_are_rejected() {
        let c = CHUNK_LEN as usize;
        let len = 3 * c + 100;
        let data = plain(len);
        let cp = cipher();
        let stored = cp.encrypt_all(&data);
        let sc = STORED_CHUNK_LEN as usize;
        let whole = span(len as u64, 0..len as u64).unwrap();
        // Any flipped byte: nonce, body or tag.
        for at in [
            0,
            NONCE_LEN - 1,
            NONCE_LEN,
            1000,
            sc - 1,
            sc,
            3 * sc + 50,
            stored.len() - 1,
        ] {
            let mut bad = stored.clone();
            bad[at] ^= 1;
            assert!(
                matches!(cp.decrypt_span(&whole, &bad), Err(CryptError::Chunk { .. })),
                "flip at {at}"
            );
        }
        // Two chunks swapped.
        let mut swapped = stored.clone();
        swapped[..sc].copy_from_slice(&stored[sc..2 * sc]);
        swapped[sc..2 * sc].copy_from_slice(&stored[..sc]);
        assert_eq!(
            cp.decrypt_span(&whole, &swapped),
            Err(CryptError::Chunk { index: 0 })
        );
        // Cut at a chunk boundary: the new last chunk is not flagged last.
        let cut = &stored[..3 * sc];
        let shorter = span(3 * c as u64, 0..3 * c as u64).unwrap();
        assert_eq!(
            cp.decrypt_span(&shorter, cut),
            Err(CryptError::Chunk { index: 2 })
        );
        // Cut inside a chunk, or too long.
        assert_eq!(
            cp.decrypt_span(&whole, &stored[..stored.len() - 1]),
            Err(CryptError::Truncated { index: 3 })
        );
        let mut long = stored.clone();
        long.push(0);
        assert_eq!(
            cp.decrypt_span(&whole, &long),
            Err(CryptError::TooLong { extra: 1 })
        );
        // Another file's chunk, another dataset, another key.
        let key = DatasetKey::from_bytes([7; 32]);
        for other in [
            key.file(&SALT, "data/other.bin"),
            key.file(&[8; 32], "data/train.bin"),
            DatasetKey::from_bytes([6; 32]).file(&SALT, "data/train.bin"),
        ] {
            assert_eq!(
                other.decrypt_span(&whole, &stored),
                Err(CryptError::Chunk { index: 0 })
            );
        }
    }

    #[test]
    fn nonces_are_synthetic_same_plaintext_same_bytes_other_plaintext_other_nonce() {
        let cp = cipher();
        let a = cp.encrypt_all(&plain(1000));
        assert_eq!(a, cp.encrypt_all(&plain(1000)));
        let mut changed = plain(1000);
        changed[999] ^= 1;
        let b = cp.encrypt_all(&changed);
        assert_ne!(a[..NONCE_LEN], b[..NONCE_LEN]);
        assert!(!a.windows(8).any(|w| w == &plain(1000)[100..108]));
        assert_ne!(
            DatasetKey::from_bytes([1; 32]).id(),
            DatasetKey::from_bytes([2; 32]).id()
        );
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn any_range_round_trips_in_pieces(
            len in 0u64..(3 * CHUNK_LEN + 300),
            a in any::<u64>(),
            b in any::<u64>(),
            piece in 1usize..100_000,
        ) {
            let data = plain(len as usize);
            let cp = cipher();
            let stored = cp.encrypt_all(&data);
            let (a, b) = (a % (len + 1), b % (len + 1));
            let range = a.min(b)..a.max(b);
            let s = span(len, range.clone()).unwrap();
            let mut d = ChunkDecryptor::new(cp, s.clone());
            let mut out = Vec::new();
            for p in stored[s.stored.start as usize..s.stored.end as usize].chunks(piece) {
                d.push(p, &mut out).unwrap();
            }
            d.finish().unwrap();
            prop_assert_eq!(&out[..], &data[range.start as usize..range.end as usize]);
        }
    }
}
