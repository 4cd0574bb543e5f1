//! Where a decoder gets a shard's units from.

use std::io::{self, Read, Seek, SeekFrom};

/// A source of one shard's stripe units.
///
/// `read_unit(stripe, unit)` fills `unit` (exactly one stripe unit long) with the
/// bytes at `stripe × unit.len()` in the shard. An error makes the decoder stop
/// using this source and rebuild from the others; wrong bytes are caught by the
/// unit checksum.
pub trait UnitSource {
    /// Fills `unit` with the shard's unit of stripe `stripe`.
    fn read_unit(&mut self, stripe: u64, unit: &mut [u8]) -> io::Result<()>;
}

impl<S: UnitSource + ?Sized> UnitSource for &mut S {
    fn read_unit(&mut self, stripe: u64, unit: &mut [u8]) -> io::Result<()> {
        (**self).read_unit(stripe, unit)
    }
}

impl<S: UnitSource + ?Sized> UnitSource for Box<S> {
    fn read_unit(&mut self, stripe: u64, unit: &mut [u8]) -> io::Result<()> {
        (**self).read_unit(stripe, unit)
    }
}

/// A whole shard in memory.
impl UnitSource for &[u8] {
    fn read_unit(&mut self, stripe: u64, unit: &mut [u8]) -> io::Result<()> {
        let start = stripe
            .checked_mul(unit.len() as u64)
            .and_then(|s| usize::try_from(s).ok());
        let bytes = start
            .and_then(|s| Some(s..s.checked_add(unit.len())?))
            .and_then(|r| self.get(r))
            .ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!(
                        "shard of {} bytes has no unit for stripe {stripe}",
                        self.len()
                    ),
                )
            })?;
        unit.copy_from_slice(bytes);
        Ok(())
    }
}

/// A whole shard in memory.
impl UnitSource for Vec<u8> {
    fn read_unit(&mut self, stripe: u64, unit: &mut [u8]) -> io::Result<()> {
        self.as_slice().read_unit(stripe, unit)
    }
}

/// A shard in a seekable reader (a file): each unit is read at its offset.
#[derive(Debug)]
pub struct SeekSource<R> {
    inner: R,
    pos: Option<u64>,
}

impl<R: Read + Seek> SeekSource<R> {
    /// Reads units from `inner`, which holds the whole shard from offset 0.
    pub fn new(inner: R) -> Self {
        SeekSource { inner, pos: None }
    }

    /// The wrapped reader.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read + Seek> UnitSource for SeekSource<R> {
    fn read_unit(&mut self, stripe: u64, unit: &mut [u8]) -> io::Result<()> {
        let offset = stripe
            .checked_mul(unit.len() as u64)
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "unit offset overflows"))?;
        if self.pos != Some(offset) {
            self.pos = None;
            self.inner.seek(SeekFrom::Start(offset))?;
        }
        self.inner.read_exact(unit)?;
        self.pos = Some(offset + unit.len() as u64);
        Ok(())
    }
}

/// A shard (or a contiguous range of it) arriving as a stream, such as the body of
/// a `GetShard` response: units can only be read in increasing stripe order;
/// stripes that are skipped are read and discarded.
#[derive(Debug)]
pub struct StreamSource<R> {
    inner: R,
    next_stripe: u64,
}

impl<R: Read> StreamSource<R> {
    /// A stream whose first byte is the start of stripe `first_stripe`'s unit.
    pub fn new(inner: R, first_stripe: u64) -> Self {
        StreamSource {
            inner,
            next_stripe: first_stripe,
        }
    }

    /// The wrapped reader.
    pub fn into_inner(self) -> R {
        self.inner
    }
}

impl<R: Read> UnitSource for StreamSource<R> {
    fn read_unit(&mut self, stripe: u64, unit: &mut [u8]) -> io::Result<()> {
        if stripe < self.next_stripe {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "stream source is at stripe {}, cannot go back to stripe {stripe}",
                    self.next_stripe
                ),
            ));
        }
        let skip = (stripe - self.next_stripe).saturating_mul(unit.len() as u64);
        if skip > 0 {
            let skipped = io::copy(&mut (&mut self.inner).take(skip), &mut io::sink())?;
            if skipped < skip {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
        // A failed read leaves the stream at an unknown position.
        self.next_stripe = u64::MAX;
        self.inner.read_exact(unit)?;
        self.next_stripe = stripe + 1;
        Ok(())
    }
}

/// A source backed by a closure `FnMut(stripe, unit) -> io::Result<()>`.
pub struct FnSource<F>(pub F);

impl<F: FnMut(u64, &mut [u8]) -> io::Result<()>> UnitSource for FnSource<F> {
    fn read_unit(&mut self, stripe: u64, unit: &mut [u8]) -> io::Result<()> {
        (self.0)(stripe, unit)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_seek_and_stream_sources_return_the_same_units() {
        let shard: Vec<u8> = (0..=255u8).collect();
        let mut unit = [0u8; 64];
        let mut mem = shard.as_slice();
        mem.read_unit(2, &mut unit).unwrap();
        assert_eq!(&unit[..], &shard[128..192]);
        assert_eq!(
            mem.read_unit(4, &mut unit).unwrap_err().kind(),
            io::ErrorKind::UnexpectedEof
        );

        let mut seek = SeekSource::new(io::Cursor::new(shard.clone()));
        for s in [3, 1, 2, 2] {
            seek.read_unit(s, &mut unit).unwrap();
            assert_eq!(&unit[..], &shard[s as usize * 64..][..64]);
        }

        // A stream of stripes 1.. (as a GetShard range would return).
        let mut stream = StreamSource::new(&shard[64..], 1);
        stream.read_unit(1, &mut unit).unwrap();
        assert_eq!(&unit[..], &shard[64..128]);
        stream.read_unit(3, &mut unit).unwrap();
        assert_eq!(&unit[..], &shard[192..256]);
        assert_eq!(
            stream.read_unit(2, &mut unit).unwrap_err().kind(),
            io::ErrorKind::InvalidInput
        );
    }
}
