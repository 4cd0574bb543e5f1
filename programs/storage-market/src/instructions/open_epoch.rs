use anchor_lang::prelude::*;

use crate::constants::*;
use crate::errors::MarketError;
use crate::events::EpochOpened;
use crate::state::{Challenge, Market};

/// Address of the SlotHashes sysvar.
pub const SLOT_HASHES_ID: Pubkey = pubkey!("SysvarS1otHashes111111111111111111111111111");

#[event_cpi]
#[derive(Accounts)]
#[instruction(epoch: u64)]
pub struct OpenEpoch<'info> {
    #[account(mut)]
    pub opener: Signer<'info>,
    #[account(seeds = [SEED_MARKET], bump = market.bump)]
    pub market: Account<'info, Market>,
    #[account(
        init,
        payer = opener,
        space = 8 + Challenge::INIT_SPACE,
        seeds = [SEED_CHALLENGE, epoch.to_le_bytes().as_ref()],
        bump,
    )]
    pub challenge: Account<'info, Challenge>,
    /// CHECK: the SlotHashes sysvar, read as an account (the sysvar syscall is
    /// not available natively); its address is checked.
    #[account(address = SLOT_HASHES_ID @ MarketError::WrongSlotHashes)]
    pub slot_hashes: UncheckedAccount<'info>,
    pub system_program: Program<'info, System>,
}

/// Picks the seed of an epoch starting at `start_slot` from SlotHashes account
/// data (entries newest first). While the sysvar still reaches back to the
/// epoch's start, the seed is the entry of the first slot at or after
/// `start_slot`; once that entry has rolled out of the sysvar (or no slot of the
/// epoch has a hash yet), it is the newest entry. Returns `(slot, hash)`.
pub fn seed_from_slot_hashes(data: &[u8], start_slot: u64) -> Result<(u64, [u8; 32])> {
    const ENTRY: usize = 8 + 32;
    let len_bytes: [u8; 8] = data
        .get(..8)
        .and_then(|b| b.try_into().ok())
        .ok_or(MarketError::MalformedSlotHashes)?;
    let declared = usize::try_from(u64::from_le_bytes(len_bytes))
        .map_err(|_| error!(MarketError::MalformedSlotHashes))?;
    let available = (data.len() - 8) / ENTRY;
    require!(
        declared > 0 && declared <= available,
        MarketError::MalformedSlotHashes
    );
    let entry = |i: usize| -> (u64, [u8; 32]) {
        let at = 8 + i * ENTRY;
        let mut slot = [0u8; 8];
        slot.copy_from_slice(&data[at..at + 8]);
        let mut hash = [0u8; 32];
        hash.copy_from_slice(&data[at + 8..at + ENTRY]);
        (u64::from_le_bytes(slot), hash)
    };
    let newest = entry(0);
    let (oldest_slot, _) = entry(declared - 1);
    if oldest_slot > start_slot {
        // The entries around the epoch's start have rolled out.
        return Ok(newest);
    }
    // Newest first: the last entry at or after the start is the first slot.
    let first_in_epoch = (0..declared)
        .map(entry)
        .take_while(|(slot, _)| *slot >= start_slot)
        .last();
    Ok(first_in_epoch.unwrap_or(newest))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn slot_hashes(slots: &[u64]) -> Vec<u8> {
        let mut data = (slots.len() as u64).to_le_bytes().to_vec();
        for slot in slots {
            data.extend_from_slice(&slot.to_le_bytes());
            data.extend_from_slice(&[*slot as u8; 32]);
        }
        data
    }

    #[test]
    fn takes_the_first_slot_of_the_epoch_while_it_is_present() {
        let data = slot_hashes(&[105, 104, 102, 99, 98]);
        assert_eq!(seed_from_slot_hashes(&data, 100).unwrap(), (102, [102; 32]));
        // The start slot itself, when it has a hash.
        let data = slot_hashes(&[101, 100, 99]);
        assert_eq!(seed_from_slot_hashes(&data, 100).unwrap(), (100, [100; 32]));
    }

    #[test]
    fn falls_back_to_the_newest_entry_when_no_slot_of_the_epoch_has_a_hash() {
        let data = slot_hashes(&[99, 98, 97]);
        assert_eq!(seed_from_slot_hashes(&data, 100).unwrap(), (99, [99; 32]));
    }

    #[test]
    fn falls_back_to_the_newest_entry_once_the_start_rolled_out() {
        let data = slot_hashes(&[700, 699, 650, 190]);
        assert_eq!(seed_from_slot_hashes(&data, 100).unwrap(), (700, [188; 32]));
    }

    #[test]
    fn rejects_malformed_sysvar_data() {
        assert!(seed_from_slot_hashes(&[], 0).is_err());
        assert!(seed_from_slot_hashes(&slot_hashes(&[]), 0).is_err());
        // Declares two entries but holds one.
        let mut data = slot_hashes(&[5]);
        data[0] = 2;
        assert!(seed_from_slot_hashes(&data, 0).is_err());
    }
}

impl OpenEpoch<'_> {
    pub fn validate(&self, epoch: u64) -> Result<()> {
        let slot = Clock::get()?.slot;
        require!(
            slot >= self.market.epoch_start_slot(epoch)?,
            MarketError::EpochNotStarted
        );
        require!(
            slot < self.market.proof_deadline_slot(epoch)?,
            MarketError::EpochClosed
        );
        Ok(())
    }
}

/// Records the challenge seed of `epoch`. Anyone may call it once the epoch has
/// started; honest nodes call it at the start.
#[access_control(ctx.accounts.validate(epoch))]
pub fn handler(ctx: Context<OpenEpoch>, epoch: u64) -> Result<()> {
    let slot = Clock::get()?.slot;
    let start_slot = ctx.accounts.market.epoch_start_slot(epoch)?;
    let deadline_slot = ctx.accounts.market.proof_deadline_slot(epoch)?;
    let (seed_slot, seed) = {
        let data = ctx.accounts.slot_hashes.try_borrow_data()?;
        seed_from_slot_hashes(&data, start_slot)?
    };
    let challenge = &mut ctx.accounts.challenge;
    challenge.epoch = epoch;
    challenge.seed = seed;
    challenge.seed_slot = seed_slot;
    challenge.opened_slot = slot;
    challenge.opener = ctx.accounts.opener.key();
    challenge.start_slot = start_slot;
    challenge.deadline_slot = deadline_slot;
    challenge.samples_per_proof = ctx.accounts.market.params.samples_per_proof;
    challenge.bump = ctx.bumps.challenge;
    challenge.invariant()?;
    let event = EpochOpened {
        epoch,
        seed,
        seed_slot,
        opened_slot: slot,
        opener: challenge.opener,
    };
    emit_cpi!(event);
    Ok(())
}
