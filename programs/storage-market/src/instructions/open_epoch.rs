use anchor_lang::prelude::*;

use crate::constants::*;
use crate::errors::MarketError;
use crate::events::EpochOpened;
use crate::state::{set_bit, Challenge, EpochLog, Market};

/// Address of the SlotHashes sysvar.
pub const SLOT_HASHES_ID: Pubkey = pubkey!("SysvarS1otHashes111111111111111111111111111");

#[event_cpi]
#[derive(Accounts)]
#[instruction(epoch: u64)]
pub struct OpenEpoch<'info> {
    pub opener: Signer<'info>,
    #[account(seeds = [SEED_MARKET], bump = market.bump)]
    pub market: Account<'info, Market>,
    #[account(mut, seeds = [SEED_CHALLENGE], bump = challenge.bump)]
    pub challenge: Account<'info, Challenge>,
    /// The page holding `epoch`'s opened bit (`open_epoch_log` creates it, with its
    /// page number, at its address).
    #[account(
        mut,
        constraint = epoch_log.load()?.page == u64::from(log_page(epoch)) @ MarketError::WrongLogPage,
    )]
    pub epoch_log: AccountLoader<'info, EpochLog>,
    /// CHECK: the SlotHashes sysvar, read as an account (the sysvar syscall is
    /// not available natively); its address is checked.
    #[account(address = SLOT_HASHES_ID @ MarketError::WrongSlotHashes)]
    pub slot_hashes: UncheckedAccount<'info>,
}

/// Finds the seed slot of an epoch in SlotHashes account data (entries newest
/// first): the first slot at or after `target` that has an entry. The answer is fixed
/// by the chain alone, so it is the same whoever asks and whenever, as long as the
/// sysvar still reaches back to `target` (its oldest entry is at or before it);
/// otherwise the epoch can no longer be opened. Returns `(slot, hash)`.
pub fn seed_slot_entry(data: &[u8], target: u64) -> Result<(u64, [u8; 32])> {
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
    let slot_of = |i: usize| -> u64 {
        let at = 8 + i * ENTRY;
        let mut slot = [0u8; 8];
        slot.copy_from_slice(&data[at..at + 8]);
        u64::from_le_bytes(slot)
    };
    require!(slot_of(0) >= target, MarketError::SeedSlotNotReached);
    require!(
        slot_of(declared - 1) <= target,
        MarketError::SeedSlotRolledOut
    );
    // Newest first: the entries at or after `target` form a prefix; its last is the
    // first slot at or after `target`. Entries are sorted, so search.
    let (mut lo, mut hi) = (0usize, declared - 1);
    // Invariant: slot_of(lo) >= target; answer in lo..=hi.
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if slot_of(mid) >= target {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let at = 8 + lo * ENTRY;
    let mut hash = [0u8; 32];
    hash.copy_from_slice(&data[at + 8..at + ENTRY]);
    Ok((slot_of(lo), hash))
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
    fn the_seed_slot_is_the_same_from_its_first_to_its_last_chance() {
        // Target 101; slot 101 was skipped, 102 is the seed slot.
        let first = slot_hashes(&[102, 100, 99]);
        let middle = slot_hashes(&[300, 299, 150, 104, 102, 100]);
        let last = slot_hashes(&[612, 611, 102, 101 - 1]);
        for data in [first, middle, last] {
            assert_eq!(seed_slot_entry(&data, 101).unwrap(), (102, [102; 32]));
        }
        // The target itself when it has a hash, even as the oldest entry.
        assert_eq!(
            seed_slot_entry(&slot_hashes(&[105, 101]), 101).unwrap(),
            (101, [101; 32])
        );
    }

    #[test]
    fn refuses_before_the_seed_slot_and_after_it_rolled_out() {
        let code = |r: Result<(u64, [u8; 32])>| match r.unwrap_err() {
            anchor_lang::error::Error::AnchorError(e) => e.error_code_number,
            other => panic!("{other:?}"),
        };
        assert_eq!(
            code(seed_slot_entry(&slot_hashes(&[100, 99]), 101)),
            u32::from(MarketError::SeedSlotNotReached)
        );
        assert_eq!(
            code(seed_slot_entry(&slot_hashes(&[700, 699, 102]), 101)),
            u32::from(MarketError::SeedSlotRolledOut)
        );
    }

    #[test]
    fn rejects_malformed_sysvar_data() {
        assert!(seed_slot_entry(&[], 0).is_err());
        assert!(seed_slot_entry(&slot_hashes(&[]), 0).is_err());
        // Declares two entries but holds one.
        let mut data = slot_hashes(&[5]);
        data[0] = 2;
        assert!(seed_slot_entry(&data, 0).is_err());
    }
}

impl OpenEpoch<'_> {
    pub fn validate(&self, epoch: u64) -> Result<()> {
        require!(
            epoch >= self.challenge.next_epoch,
            MarketError::EpochAlreadyOpened
        );
        let deadline = self
            .market
            .epoch_start_slot(epoch)?
            .checked_add(self.market.params.response_slots)
            .ok_or(MarketError::ArithmeticOverflow)?;
        require!(Clock::get()?.slot < deadline, MarketError::EpochClosed);
        Ok(())
    }
}

/// Records the challenge of `epoch`. Anyone may call it from the slot after the
/// epoch's seed slot until the seed slot leaves SlotHashes or the response deadline
/// passes; every caller gets the same seed. Honest nodes call it as soon as they can.
#[access_control(ctx.accounts.validate(epoch))]
pub fn handler(ctx: Context<OpenEpoch>, epoch: u64) -> Result<()> {
    let slot = Clock::get()?.slot;
    let params = ctx.accounts.market.params;
    let start = ctx.accounts.market.epoch_start_slot(epoch)?;
    let target = start + SEED_SLOT_OFFSET;
    let (seed_slot, slot_hash) = {
        let data = ctx.accounts.slot_hashes.try_borrow_data()?;
        seed_slot_entry(&data, target)?
    };
    let seed = cairn_proof::epoch_seed(&slot_hash, epoch);
    let challenge = &mut ctx.accounts.challenge;
    challenge.epoch = epoch;
    challenge.next_epoch = epoch + 1;
    challenge.seed = seed;
    challenge.seed_slot = seed_slot;
    challenge.opened_slot = slot;
    challenge.opener = ctx.accounts.opener.key();
    challenge.deadline_slot = start + params.response_slots;
    challenge.samples_per_epoch = params.samples_per_epoch;
    challenge.invariant()?;
    {
        let mut log = ctx.accounts.epoch_log.load_mut()?;
        let page = log.page;
        set_bit(&mut log.bits, page, epoch)?;
    }
    let event = EpochOpened {
        epoch,
        seed,
        seed_slot,
        opened_slot: slot,
        opener: challenge.opener,
        deadline_slot: challenge.deadline_slot,
        samples_per_epoch: challenge.samples_per_epoch,
    };
    emit_cpi!(event);
    Ok(())
}
