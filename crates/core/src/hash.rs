//! BLAKE3 content names: the [`Hash`](type@Hash) type and the [`DatasetId`].

use std::fmt;
use std::str::FromStr;

/// A 32-byte BLAKE3 digest (file hashes, stripe unit checksums, dataset ids).
pub type Hash = [u8; 32];

/// BLAKE3 of `bytes`.
pub fn blake3(bytes: &[u8]) -> Hash {
    *blake3::hash(bytes).as_bytes()
}

/// A 32-byte id as deals name it on chain: a dataset id (derived from its
/// client and a nonce, see docs/DESIGN.md) or a group id (BLAKE3 of a group
/// manifest's canonical encoding, [`crate::group::GroupManifest::id`]).
///
/// Displayed and parsed as 64 lowercase hexadecimal characters (parsing also
/// accepts uppercase). Hex rather than base58 because it is what `b3sum` prints, so
/// anyone can check a group id with standard tools: `b3sum group-manifest.bin`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct DatasetId(pub Hash);

impl DatasetId {
    /// The id of a group manifest given its canonical bytes.
    pub fn of_canonical_bytes(canonical: &[u8]) -> Self {
        DatasetId(blake3(canonical))
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &Hash {
        &self.0
    }
}

impl fmt::Display for DatasetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_hex(f, &self.0)
    }
}

impl fmt::Debug for DatasetId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatasetId({self})")
    }
}

/// Why a string is not a [`DatasetId`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseIdError {
    /// The string does not have exactly 64 characters.
    #[error("a dataset id has 64 hex characters, this one has {len}")]
    Length {
        /// Number of characters found.
        len: usize,
    },
    /// A character is not a hexadecimal digit.
    #[error("a dataset id is hexadecimal; character {index} ({ch:?}) is not")]
    NotHex {
        /// Position of the offending character.
        index: usize,
        /// The offending character.
        ch: char,
    },
}

impl FromStr for DatasetId {
    type Err = ParseIdError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let len = s.chars().count();
        if len != 64 || s.len() != 64 {
            return Err(ParseIdError::Length { len });
        }
        let mut out = [0u8; 32];
        for (index, ch) in s.chars().enumerate() {
            let digit = ch.to_digit(16).ok_or(ParseIdError::NotHex { index, ch })? as u8;
            let byte = &mut out[index / 2];
            *byte = if index % 2 == 0 {
                digit << 4
            } else {
                *byte | digit
            };
        }
        Ok(DatasetId(out))
    }
}

/// Writes `bytes` as lowercase hex.
pub(crate) fn write_hex(f: &mut impl fmt::Write, bytes: &[u8]) -> fmt::Result {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for b in bytes {
        f.write_char(DIGITS[(b >> 4) as usize] as char)?;
        f.write_char(DIGITS[(b & 0xf) as usize] as char)?;
    }
    Ok(())
}

/// Lowercase hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    write_hex(&mut s, bytes).expect("writing to a String cannot fail");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_display_matches_b3sum_hex_and_parses_back() {
        let id = DatasetId::of_canonical_bytes(b"abc");
        let hex = id.to_string();
        // Known BLAKE3("abc").
        assert_eq!(
            hex,
            "6437b3ac38465133ffb63b75273a8db548c558465d79db03fd359c6cd5bd9d85"
        );
        assert_eq!(hex.parse::<DatasetId>().unwrap(), id);
        assert_eq!(hex.to_uppercase().parse::<DatasetId>().unwrap(), id);
    }

    #[test]
    fn bad_ids_are_rejected_with_the_reason() {
        assert_eq!(
            "abc".parse::<DatasetId>(),
            Err(ParseIdError::Length { len: 3 })
        );
        let mut s = "0".repeat(63);
        s.push('g');
        assert_eq!(
            s.parse::<DatasetId>(),
            Err(ParseIdError::NotHex { index: 63, ch: 'g' })
        );
        // 64 bytes but fewer characters: multi-byte UTF-8 must not panic.
        let s = format!("{}é", "0".repeat(62));
        assert!(s.parse::<DatasetId>().is_err());
    }
}
