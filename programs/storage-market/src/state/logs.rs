//! One bit per epoch, in pages of `LOG_PAGE_EPOCHS` that are never overwritten:
//! the market's `EpochLog` (epoch opened) and each provider's `ProofLog` (epoch
//! proven). Settlement reads them long after the epoch, so the bits must not roll
//! out of a ring.
use anchor_lang::prelude::*;

use crate::constants::*;
use crate::errors::MarketError;

/// `["epoch_log", page u32 LE]`: bit `e % LOG_PAGE_EPOCHS` is set when epoch `e` was
/// opened in time. An epoch whose bit is unset once it is over is void.
#[account(zero_copy)]
#[derive(Debug)]
pub struct EpochLog {
    pub page: u64,
    pub bits: [u8; LOG_PAGE_BYTES],
}

/// `["proof_log", provider, page u32 LE]`: bit `e % LOG_PAGE_EPOCHS` is set when the
/// provider completed its proof session of epoch `e` before the deadline.
#[account(zero_copy)]
#[derive(Debug)]
pub struct ProofLog {
    pub provider: Pubkey,
    pub page: u64,
    pub bits: [u8; LOG_PAGE_BYTES],
}

impl EpochLog {
    pub const SPACE: usize = 8 + core::mem::size_of::<EpochLog>();
    /// Offset of `bits` in the account data.
    pub const BITS_OFFSET: usize = 8 + 8;
}

impl ProofLog {
    pub const SPACE: usize = 8 + core::mem::size_of::<ProofLog>();
    /// Offset of `bits` in the account data.
    pub const BITS_OFFSET: usize = 8 + 32 + 8;
}

/// Position of `epoch`'s bit in page `page`'s bytes.
fn bit_of(page: u64, epoch: u64) -> Result<(usize, u8)> {
    require!(epoch / LOG_PAGE_EPOCHS == page, MarketError::WrongLogPage);
    let offset = epoch % LOG_PAGE_EPOCHS;
    Ok(((offset / 8) as usize, 1u8 << (offset % 8)))
}

/// Reads `epoch`'s bit of page `page`.
pub fn get_bit(bits: &[u8; LOG_PAGE_BYTES], page: u64, epoch: u64) -> Result<bool> {
    let (byte, mask) = bit_of(page, epoch)?;
    Ok(bits[byte] & mask != 0)
}

/// Sets `epoch`'s bit of page `page`.
pub fn set_bit(bits: &mut [u8; LOG_PAGE_BYTES], page: u64, epoch: u64) -> Result<()> {
    let (byte, mask) = bit_of(page, epoch)?;
    bits[byte] |= mask;
    Ok(())
}

/// The bits of a log page passed as an unchecked account at its PDA address: a page
/// that was never created reads as all zero (nothing opened, nothing proven).
pub enum LogBits {
    Absent,
    Present(Box<[u8; LOG_PAGE_BYTES]>),
}

impl LogBits {
    /// Reads the bits of a log page of type `T` (owner and discriminator checked),
    /// whose bits start `bits_offset` bytes into its data; an absent account reads as
    /// all zero. The caller checks the account's address.
    pub fn read<T: anchor_lang::Discriminator>(
        info: &AccountInfo,
        bits_offset: usize,
    ) -> Result<LogBits> {
        if info.data_is_empty() {
            return Ok(LogBits::Absent);
        }
        require_keys_eq!(*info.owner, crate::ID, MarketError::WrongLogPage);
        let data = info.try_borrow_data()?;
        let bits = data
            .get(bits_offset..bits_offset + LOG_PAGE_BYTES)
            .filter(|_| data[..8] == *T::DISCRIMINATOR)
            .ok_or(MarketError::WrongLogPage)?;
        let mut out = Box::new([0u8; LOG_PAGE_BYTES]);
        out.copy_from_slice(bits);
        Ok(LogBits::Present(out))
    }

    pub fn get(&self, page: u64, epoch: u64) -> Result<bool> {
        match self {
            LogBits::Absent => {
                bit_of(page, epoch)?;
                Ok(false)
            }
            LogBits::Present(bits) => get_bit(bits, page, epoch),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bits_are_per_epoch_and_pages_do_not_alias() {
        let mut bits = [0u8; LOG_PAGE_BYTES];
        set_bit(&mut bits, 1, LOG_PAGE_EPOCHS + 9).unwrap();
        assert!(get_bit(&bits, 1, LOG_PAGE_EPOCHS + 9).unwrap());
        assert!(!get_bit(&bits, 1, LOG_PAGE_EPOCHS + 8).unwrap());
        assert!(!get_bit(&bits, 1, LOG_PAGE_EPOCHS + 10).unwrap());
        // Epoch 9 lives on page 0, not on page 1.
        assert!(get_bit(&bits, 1, 9).is_err());
        assert!(!LogBits::Absent.get(0, 9).unwrap());
        assert!(LogBits::Absent.get(0, LOG_PAGE_EPOCHS).is_err());
    }
}
