//! The content of an encrypted dataset's index group: a clear header with what
//! a key-less repair needs (erasure parameters, group length, stored length,
//! the data groups' ids, which deals on chain name anyway) and the key id,
//! then the [`Manifest`] sealed with ChaCha20-Poly1305.
//!
//! All integers little-endian. Layout (format version 1):
//!
//! | field      | type              | notes                                          |
//! |------------|-------------------|------------------------------------------------|
//! | magic      | `[u8; 4]`         | `b"CRNE"`                                      |
//! | version    | `u8`              | [`SEALED_VERSION`]                             |
//! | k, m       | `u16`, `u16`      |                                                |
//! | group_len  | `u64`             | stored bytes per data group                    |
//! | total_len  | `u64`             | stored (encrypted) stream length               |
//! | key_id     | `[u8; 16]`        | [`KeyId`] of the key that sealed it            |
//! | groups     | `G` × `[u8; 32]`  | `G = ceil(total_len / group_len)`              |
//! | nonce      | `[u8; 12]`        | synthetic: keyed BLAKE3 of the sealed bytes    |
//! | sealed     | rest              | the [`Manifest`] encoding, encrypted, + tag    |
//!
//! The associated data is the dataset's salt (its nonce on chain, from which
//! the dataset id derives, and which every group manifest of the dataset
//! carries) followed by the header up to the nonce, so neither the header nor
//! the sealed manifest can be swapped for another dataset's. The sealed
//! manifest describes the stored stream: each file's `size` and `offset` are
//! those of its encrypted bytes (the plaintext size is
//! [`crate::crypt::plain_len`] of it), its `blake3` is the plaintext's.
use super::FileEntry;
use super::{Manifest, ManifestError};
use crate::codec::{DecodeError, PutExt, Reader};
use crate::crypt::{
    open, seal, synthetic_nonce, ChunkDecryptor, CryptError, DatasetKey, KeyId, NONCE_LEN, TAG_LEN,
};
use crate::erasure::ErasureParams;
use crate::hash::{DatasetId, Hash};

/// The first four bytes of a sealed manifest.
pub const SEALED_MAGIC: [u8; 4] = *b"CRNE";
/// Version of the sealed format written by this build.
pub const SEALED_VERSION: u8 = 1;

/// Why a sealed manifest could not be opened.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpenError {
    /// The key given is not the one that sealed the manifest.
    #[error("the dataset was encrypted with key {expected}, the key given is {given}")]
    WrongKey {
        /// The id in the manifest's header.
        expected: KeyId,
        /// The id of the key given.
        given: KeyId,
    },
    /// The right key, but the sealed bytes do not authenticate: altered.
    #[error("the encrypted manifest does not authenticate: it was altered")]
    Tampered,
    /// It authenticates, but the manifest inside is invalid, or disagrees
    /// with the clear header.
    #[error("the encrypted manifest is invalid: {0}")]
    Invalid(#[from] ManifestError),
}

/// An encrypted dataset's index group content (see the [module docs](self)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedManifest {
    params: ErasureParams,
    group_len: u64,
    total_len: u64,
    key_id: KeyId,
    groups: Vec<DatasetId>,
    nonce: [u8; NONCE_LEN],
    sealed: Vec<u8>,
}

/// What the index group of a dataset holds: a manifest in the clear, or a
/// sealed one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IndexContent {
    /// A public dataset.
    Plain(Manifest),
    /// A private dataset.
    Sealed(SealedManifest),
}

impl IndexContent {
    /// Decodes an index group's content by its magic.
    pub fn decode(bytes: &[u8]) -> Result<Self, ManifestError> {
        if bytes.starts_with(&SEALED_MAGIC) {
            SealedManifest::decode(bytes).map(IndexContent::Sealed)
        } else {
            Manifest::decode(bytes).map(IndexContent::Plain)
        }
    }

    /// The data groups' ids, in order.
    pub fn groups(&self) -> &[DatasetId] {
        match self {
            IndexContent::Plain(m) => m.groups(),
            IndexContent::Sealed(s) => &s.groups,
        }
    }

    /// Data shards per group.
    pub fn k(&self) -> u16 {
        match self {
            IndexContent::Plain(m) => m.k(),
            IndexContent::Sealed(s) => s.params.k() as u16,
        }
    }

    /// Parity shards per group.
    pub fn m(&self) -> u16 {
        match self {
            IndexContent::Plain(m) => m.m(),
            IndexContent::Sealed(s) => s.params.m() as u16,
        }
    }

    /// Stored bytes per data group.
    pub fn group_len(&self) -> u64 {
        match self {
            IndexContent::Plain(m) => m.group_len(),
            IndexContent::Sealed(s) => s.group_len,
        }
    }

    /// Stored bytes of the packed stream.
    pub fn total_len(&self) -> u64 {
        match self {
            IndexContent::Plain(m) => m.total_len(),
            IndexContent::Sealed(s) => s.total_len,
        }
    }
}

/// The clear header (everything before the nonce).
fn header(
    k: u16,
    m: u16,
    group_len: u64,
    total_len: u64,
    key_id: &KeyId,
    groups: &[DatasetId],
) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + 1 + 4 + 16 + 16 + groups.len() * 32);
    out.extend_from_slice(&SEALED_MAGIC);
    out.push(SEALED_VERSION);
    out.put_u16(k);
    out.put_u16(m);
    out.put_u64(group_len);
    out.put_u64(total_len);
    out.extend_from_slice(&key_id.0);
    for g in groups {
        out.extend_from_slice(g.as_bytes());
    }
    out
}

impl SealedManifest {
    /// Seals `manifest` (of the stored stream) with `key` for the dataset whose
    /// salt is `salt`; returns the index group content.
    pub fn seal(manifest: &Manifest, key: &DatasetKey, salt: &Hash) -> Vec<u8> {
        let mut out = header(
            manifest.k(),
            manifest.m(),
            manifest.group_len(),
            manifest.total_len(),
            &key.id(),
            manifest.groups(),
        );
        let mut ad = salt.to_vec();
        ad.extend_from_slice(&out);
        let mut body = manifest.encode();
        let (aead, nonce_key) = key.manifest_keys(salt);
        let nonce = synthetic_nonce(&nonce_key, &[&ad, &body]);
        let tag = seal(&aead, nonce, &ad, &mut body);
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&body);
        out.extend_from_slice(&tag);
        out
    }

    /// Decodes the clear part (no key needed).
    pub fn decode(bytes: &[u8]) -> Result<Self, ManifestError> {
        let mut r = Reader::new(bytes);
        r.header(
            SEALED_MAGIC,
            SEALED_VERSION,
            "magic",
            "not a sealed Cairn manifest (expected \"CRNE\")",
        )?;
        let (k, m) = (r.u16()?, r.u16()?);
        let params = ErasureParams::with_default_unit(k, m)?;
        let group_len = r.u64()?;
        let total_len = r.u64()?;
        let key_id = KeyId(r.array()?);
        if group_len == 0 {
            return Err(ManifestError::ZeroGroupLength);
        }
        let count = Manifest::group_count(total_len, group_len);
        if (r.remaining() as u64) < count.saturating_mul(32) {
            return Err(DecodeError::Truncated {
                needed: usize::try_from(count.saturating_mul(32))
                    .unwrap_or(usize::MAX)
                    .saturating_add(bytes.len() - r.remaining()),
                have: bytes.len(),
            }
            .into());
        }
        let groups = (0..count)
            .map(|_| r.array().map(DatasetId))
            .collect::<Result<Vec<_>, _>>()?;
        let nonce = r.array()?;
        if r.remaining() < TAG_LEN {
            return Err(DecodeError::Truncated {
                needed: bytes.len() - r.remaining() + TAG_LEN,
                have: bytes.len(),
            }
            .into());
        }
        let sealed = r.take(r.remaining())?.to_vec();
        Ok(SealedManifest {
            params,
            group_len,
            total_len,
            key_id,
            groups,
            nonce,
            sealed,
        })
    }

    /// The id of the key that sealed it.
    pub fn key_id(&self) -> KeyId {
        self.key_id
    }

    /// The data groups' ids.
    pub fn groups(&self) -> &[DatasetId] {
        &self.groups
    }

    /// Opens it with `key` for the dataset whose salt is `salt`.
    pub fn open(&self, key: &DatasetKey, salt: &Hash) -> Result<Manifest, OpenError> {
        if key.id() != self.key_id {
            return Err(OpenError::WrongKey {
                expected: self.key_id,
                given: key.id(),
            });
        }
        let k = self.params.k() as u16;
        let m = self.params.m() as u16;
        let mut ad = salt.to_vec();
        ad.extend_from_slice(&header(
            k,
            m,
            self.group_len,
            self.total_len,
            &self.key_id,
            &self.groups,
        ));
        let (aead, _) = key.manifest_keys(salt);
        let mut body = self.sealed.clone();
        let len = open(&aead, &self.nonce, &ad, &mut body).ok_or(OpenError::Tampered)?;
        let manifest = Manifest::decode(&body[..len])?;
        if (
            manifest.k(),
            manifest.m(),
            manifest.group_len(),
            manifest.total_len(),
        ) != (k, m, self.group_len, self.total_len)
            || manifest.groups() != self.groups.as_slice()
        {
            return Err(OpenError::Invalid(ManifestError::Decode(
                DecodeError::Invalid {
                    field: "header",
                    reason: "the clear header disagrees with the sealed manifest",
                },
            )));
        }
        Ok(manifest)
    }
}

/// The plaintext entries of a private dataset's files (from its opened
/// manifest, which describes the stored stream): plaintext sizes, and offsets
/// in the plaintext files laid back to back, for
/// [`crate::manifest::fs::Unpacker::of_files`].
pub fn plaintext_files(manifest: &Manifest) -> Result<Vec<FileEntry>, CryptError> {
    let mut offset = 0;
    manifest
        .files()
        .iter()
        .map(|f| {
            let size = crate::crypt::plain_len(f.size)?;
            let entry = FileEntry {
                path: f.path.clone(),
                size,
                blake3: f.blake3,
                offset,
            };
            offset += size;
            Ok(entry)
        })
        .collect()
}

/// Decrypts a private dataset's stored stream, from its first byte, into its
/// files' plaintexts back to back (what [`plaintext_files`] describes).
pub struct StreamDecryptor {
    key: DatasetKey,
    salt: Hash,
    files: Vec<FileEntry>,
    /// The next file to open.
    next: usize,
    /// The file being decrypted, and its stored bytes still to come.
    current: Option<(ChunkDecryptor, u64)>,
}

impl StreamDecryptor {
    /// A decryptor of the stored stream `manifest` describes.
    pub fn new(manifest: &Manifest, key: DatasetKey, salt: Hash) -> Self {
        StreamDecryptor {
            key,
            salt,
            files: manifest.files().to_vec(),
            next: 0,
            current: None,
        }
    }

    /// Takes the next stored bytes; appends the plaintext they complete.
    pub fn push(&mut self, mut stored: &[u8], out: &mut Vec<u8>) -> Result<(), CryptError> {
        while !stored.is_empty() {
            if self.current.is_none() {
                let Some(entry) = self.files.get(self.next) else {
                    return Err(CryptError::TooLong {
                        extra: stored.len() as u64,
                    });
                };
                self.next += 1;
                if entry.size == 0 {
                    continue;
                }
                let plain = crate::crypt::plain_len(entry.size)?;
                let span = crate::crypt::span(plain, 0..plain)?;
                let cipher = self.key.file(&self.salt, &entry.path);
                self.current = Some((ChunkDecryptor::new(cipher, span), entry.size));
            }
            let (dec, left) = self.current.as_mut().expect("opened above");
            let n = usize::try_from(*left)
                .unwrap_or(usize::MAX)
                .min(stored.len());
            dec.push(&stored[..n], out)?;
            *left -= n as u64;
            stored = &stored[n..];
            if *left == 0 {
                let (dec, _) = self.current.take().expect("open");
                dec.finish()?;
            }
        }
        Ok(())
    }

    /// After the last stored byte: an error unless every file arrived whole.
    pub fn finish(self) -> Result<(), CryptError> {
        match self.current {
            Some((dec, _)) => dec.finish(),
            None => match self.files[self.next..].iter().find(|f| f.size > 0) {
                Some(_) => Err(CryptError::Truncated { index: 0 }),
                None => Ok(()),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::pack_bytes;

    fn sample() -> Manifest {
        let (files, _) = pack_bytes([
            ("secret-plans/merger.txt", &[1u8; 300][..]),
            ("empty", &b""[..]),
        ])
        .unwrap();
        let groups = (0..3).map(|g| DatasetId([g; 32])).collect();
        Manifest::new(3, 2, 128, files, vec!["hidden-dir".into()], groups).unwrap()
    }

    #[test]
    fn seals_and_opens_and_hides_names() {
        let m = sample();
        let key = DatasetKey::from_bytes([5; 32]);
        let bytes = SealedManifest::seal(&m, &key, &[1; 32]);
        for secret in [&b"secret-plans"[..], b"merger", b"hidden-dir", b"empty"] {
            assert!(!bytes.windows(secret.len()).any(|w| w == secret));
        }
        let IndexContent::Sealed(s) = IndexContent::decode(&bytes).unwrap() else {
            panic!("sealed")
        };
        let content = IndexContent::Sealed(s.clone());
        assert_eq!(
            (content.k(), content.m(), content.groups()),
            (3, 2, m.groups())
        );
        assert_eq!(content.total_len(), 300);
        assert_eq!(s.open(&key, &[1; 32]).unwrap(), m);
        // Deterministic: sealing again (a resumed upload) gives the same bytes.
        assert_eq!(SealedManifest::seal(&m, &key, &[1; 32]), bytes);
        assert!(matches!(
            IndexContent::decode(&m.encode()).unwrap(),
            IndexContent::Plain(_)
        ));
    }

    #[test]
    fn wrong_key_and_tampering_are_told_apart() {
        let m = sample();
        let key = DatasetKey::from_bytes([5; 32]);
        let bytes = SealedManifest::seal(&m, &key, &[1; 32]);
        let s = SealedManifest::decode(&bytes).unwrap();
        let other = DatasetKey::from_bytes([6; 32]);
        assert_eq!(
            s.open(&other, &[1; 32]),
            Err(OpenError::WrongKey {
                expected: key.id(),
                given: other.id()
            })
        );
        // Another dataset's salt, a flipped byte of the sealed part or of a
        // group id in the header.
        assert_eq!(s.open(&key, &[2; 32]), Err(OpenError::Tampered));
        let header_len = 4 + 1 + 4 + 16 + 16;
        for at in [
            bytes.len() - 1,
            bytes.len() - 20,
            header_len + 3 * 32 + 30,
            header_len + 5,
        ] {
            let mut bad = bytes.clone();
            bad[at] ^= 1;
            let s = SealedManifest::decode(&bad).unwrap();
            assert_eq!(
                s.open(&key, &[1; 32]),
                Err(OpenError::Tampered),
                "byte {at}"
            );
        }
        for len in 0..header_len + 3 * 32 + NONCE_LEN + TAG_LEN {
            assert!(
                SealedManifest::decode(&bytes[..len]).is_err(),
                "prefix {len}"
            );
        }
    }
}
