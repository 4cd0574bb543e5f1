//! Shared binary decoding: the typed [`DecodeError`] and a bounds-checked reader.
//!
//! Every decoder in this crate (wire frames, manifests) reads through
//! a bounds-checked reader, which checks what remains before each read, so a short or malformed
//! input is a [`DecodeError`], never a panic, and a length prefix is checked
//! against both its bound and the bytes actually present before anything is
//! allocated.

/// Why a byte string could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// The input ended early: decoding needed at least `needed` bytes, the input
    /// has `have`.
    #[error("input truncated: needed at least {needed} bytes, have {have}")]
    Truncated {
        /// Minimum total input length needed to go on.
        needed: usize,
        /// Length of the input.
        have: usize,
    },
    /// The message type byte names no known message.
    #[error("unknown message type 0x{0:02x}")]
    UnknownType(u8),
    /// The version (or magic) byte is not one this build speaks.
    #[error("unsupported version byte 0x{0:02x}")]
    BadVersion(u8),
    /// A header length prefix exceeds the codec's bound; nothing was allocated.
    #[error("header of {len} bytes exceeds the limit of {max} bytes")]
    HeaderTooLarge {
        /// Declared length.
        len: u64,
        /// The bound in force.
        max: usize,
    },
    /// Bytes remain after a complete message.
    #[error("{extra} unexpected trailing bytes after the message")]
    TrailingBytes {
        /// Number of bytes left over.
        extra: usize,
    },
    /// A field holds a value that is not allowed (or not canonical).
    #[error("invalid field `{field}`: {reason}")]
    Invalid {
        /// Name of the field, e.g. `error.message` or `file.path`.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// A cursor over a byte slice whose every read is bounds-checked.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// Starts reading at the beginning of `buf`.
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// Takes the next `n` bytes.
    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::Truncated {
                needed: self.pos.saturating_add(n),
                have: self.buf.len(),
            });
        }
        let out = &self.buf[self.pos..self.pos + n];
        self.pos += n;
        Ok(out)
    }

    /// Takes a fixed-size array.
    pub(crate) fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    /// Reads one byte.
    pub(crate) fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    /// Reads a little-endian `u16`.
    pub(crate) fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array()?))
    }

    /// Reads a little-endian `u32`.
    pub(crate) fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    /// Reads a little-endian `u64`.
    pub(crate) fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// Reads a `u16`-length-prefixed UTF-8 string of at most `max` bytes.
    ///
    /// The bound and the bytes present are checked before allocating.
    pub(crate) fn string(
        &mut self,
        field: &'static str,
        max: usize,
    ) -> Result<String, DecodeError> {
        let len = self.u16()? as usize;
        if len > max {
            return Err(DecodeError::Invalid {
                field,
                reason: "string longer than its limit",
            });
        }
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes)
            .map(str::to_owned)
            .map_err(|_| DecodeError::Invalid {
                field,
                reason: "not valid UTF-8",
            })
    }

    /// Reads a 4-byte magic and a version byte: `field`/`reason` name a wrong
    /// magic, [`DecodeError::BadVersion`] a version other than `version`.
    pub(crate) fn header(
        &mut self,
        magic: [u8; 4],
        version: u8,
        field: &'static str,
        reason: &'static str,
    ) -> Result<(), DecodeError> {
        if self.array::<4>()? != magic {
            return Err(DecodeError::Invalid { field, reason });
        }
        match self.u8()? {
            v if v == version => Ok(()),
            v => Err(DecodeError::BadVersion(v)),
        }
    }

    /// Succeeds only if every byte was consumed.
    pub(crate) fn finish(self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            extra => Err(DecodeError::TrailingBytes { extra }),
        }
    }
}

/// Appends little-endian fields to a buffer (the encoding side of [`Reader`]).
pub(crate) trait PutExt {
    /// Appends a little-endian `u16`.
    fn put_u16(&mut self, v: u16);
    /// Appends a little-endian `u32`.
    fn put_u32(&mut self, v: u32);
    /// Appends a little-endian `u64`.
    fn put_u64(&mut self, v: u64);
    /// Appends a `u16`-length-prefixed string (caller guarantees it fits).
    fn put_str(&mut self, s: &str);
}

impl PutExt for Vec<u8> {
    fn put_u16(&mut self, v: u16) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u32(&mut self, v: u32) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_u64(&mut self, v: u64) {
        self.extend_from_slice(&v.to_le_bytes());
    }
    fn put_str(&mut self, s: &str) {
        let len = u16::try_from(s.len()).expect("string length checked by the caller");
        self.put_u16(len);
        self.extend_from_slice(s.as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_past_the_end_report_needed_and_have() {
        let mut r = Reader::new(&[1, 2, 3]);
        assert_eq!(r.u16().unwrap(), 0x0201);
        assert_eq!(r.u32(), Err(DecodeError::Truncated { needed: 6, have: 3 }));
    }

    #[test]
    fn huge_string_prefix_is_rejected_before_allocating() {
        let mut r = Reader::new(&[0xff, 0xff, b'a']);
        assert_eq!(
            r.string("s", 100),
            Err(DecodeError::Invalid {
                field: "s",
                reason: "string longer than its limit"
            })
        );
        let mut r = Reader::new(&[5, 0, b'a']);
        assert_eq!(
            r.string("s", 100),
            Err(DecodeError::Truncated { needed: 7, have: 3 })
        );
    }

    #[test]
    fn trailing_bytes_are_counted() {
        let mut r = Reader::new(&[1, 2, 9]);
        assert_eq!(r.u8().unwrap(), 1);
        assert_eq!(r.finish(), Err(DecodeError::TrailingBytes { extra: 2 }));
    }
}
