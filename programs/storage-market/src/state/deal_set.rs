//! A provider's deal set: one dense list of its deals, holding only what sampling
//! and verification need, in pages of [`DEAL_SET_PAGE_ENTRIES`].
//!
//! Changes apply at epoch boundaries, copy-on-write: the set's length and every
//! entry keep their current value, the value before it, and the epoch from which the
//! current value is visible. A change made in epoch `c` is visible from `c + 1`; a
//! sample of epoch `e` reads the value visible at `e`. So the set that epoch `e`
//! samples is fixed before `e`'s seed exists, although deals join (accept), leave
//! (the last entry moves into the hole) and end early at any slot. Proofs of `e` are
//! accepted only during `e`, so one previous value is all a sample can need.
use anchor_lang::prelude::*;

use crate::constants::*;
use crate::errors::MarketError;

/// What a sample needs of a deal.
#[zero_copy]
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SetEntry {
    /// First epoch the deal no longer has to be proven (a draw landing on an entry
    /// with `epoch >= end_epoch` proves nothing and is skipped).
    pub end_epoch: u64,
    pub shard_bytes: u64,
    pub shard_root: [u8; 32],
}

/// One entry position with its copy-on-write history.
#[zero_copy]
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SetSlot {
    pub current: SetEntry,
    pub previous: SetEntry,
    /// First epoch at which `current` is visible.
    pub current_from: u64,
}

impl SetSlot {
    /// The entry a sample of `epoch` reads.
    pub fn at(&self, epoch: u64) -> SetEntry {
        if epoch >= self.current_from {
            self.current
        } else {
            self.previous
        }
    }

    /// Writes `entry` in epoch `now`: visible from `now + 1`.
    pub fn write(&mut self, entry: SetEntry, now: u64) {
        if self.current_from <= now {
            self.previous = self.current;
        }
        self.current = entry;
        self.current_from = now + 1;
    }
}

/// `["deal_set_page", provider, page u32 LE]`.
#[account(zero_copy)]
#[derive(Debug)]
pub struct DealSetPage {
    pub provider: Pubkey,
    pub page: u64,
    pub slots: [SetSlot; DEAL_SET_PAGE_ENTRIES],
}

impl DealSetPage {
    /// Space of the account, discriminator included.
    pub const SPACE: usize = 8 + core::mem::size_of::<DealSetPage>();

    /// The slot of set entry `index`, which must be on this page.
    pub fn slot_mut(&mut self, index: u32) -> Result<&mut SetSlot> {
        require!(
            u64::from(deal_set_page(index)) == self.page,
            MarketError::WrongDealSetPage
        );
        Ok(&mut self.slots[index as usize % DEAL_SET_PAGE_ENTRIES])
    }

    /// The slot of set entry `index`, which must be on this page.
    pub fn slot(&self, index: u32) -> Result<&SetSlot> {
        require!(
            u64::from(deal_set_page(index)) == self.page,
            MarketError::WrongDealSetPage
        );
        Ok(&self.slots[index as usize % DEAL_SET_PAGE_ENTRIES])
    }
}

/// `["deal_set", provider]`: the set's length, its pages and the provider's proof
/// session of the current epoch.
#[account]
#[derive(InitSpace, Debug)]
pub struct DealSet {
    pub provider: Pubkey,
    /// Entries, as visible from `len_from`.
    pub len: u32,
    /// Entries before the last change.
    pub len_previous: u32,
    pub len_from: u64,
    /// Pages created (`extend_deal_set`).
    pub pages: u32,
    /// Epoch of the session below.
    pub session_epoch: u64,
    /// Next draw of the session.
    pub session_next_draw: u32,
    /// Samples proven so far.
    pub session_proven: u16,
    /// Samples the session needs: `min(samples_per_epoch, entries at that epoch)`.
    pub session_target: u16,
    /// Epochs whose session completed.
    pub epochs_proven: u64,
    pub bump: u8,
}

impl DealSet {
    /// Entries a sample of `epoch` draws from.
    pub fn len_at(&self, epoch: u64) -> u32 {
        if epoch >= self.len_from {
            self.len
        } else {
            self.len_previous
        }
    }

    /// Sets the length in epoch `now`: visible from `now + 1`.
    pub fn set_len(&mut self, len: u32, now: u64) {
        if self.len_from <= now {
            self.len_previous = self.len;
        }
        self.len = len;
        self.len_from = now + 1;
    }

    /// Starts the session of `epoch` if it is not the current one.
    pub fn start_session(&mut self, epoch: u64, samples_per_epoch: u16) -> Result<()> {
        if self.session_epoch == epoch && self.session_next_draw > 0 {
            // Under way: keep its progress.
            return Ok(());
        }
        require!(epoch >= self.session_epoch, MarketError::OutsideProofWindow);
        let entries = self.len_at(epoch);
        self.session_epoch = epoch;
        self.session_next_draw = 0;
        self.session_proven = 0;
        self.session_target = u16::try_from(entries)
            .unwrap_or(u16::MAX)
            .min(samples_per_epoch);
        Ok(())
    }

    /// Whether the current session has proven enough or drawn its last draw.
    pub fn session_complete(&self) -> bool {
        self.session_proven >= self.session_target
            || self.session_next_draw >= DRAW_FACTOR * u32::from(self.session_target)
    }

    pub fn invariant(&self) -> Result<()> {
        let capacity = u64::from(self.pages) * DEAL_SET_PAGE_ENTRIES as u64;
        require!(
            u64::from(self.len) <= capacity
                && u64::from(self.len_previous) <= capacity
                && self.session_proven <= self.session_target,
            MarketError::InvariantViolated
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(end: u64) -> SetEntry {
        SetEntry {
            end_epoch: end,
            shard_bytes: 64,
            shard_root: [end as u8; 32],
        }
    }

    #[test]
    fn a_write_is_visible_from_the_next_epoch_and_the_old_value_stays_for_this_one() {
        let mut slot = SetSlot::default();
        slot.write(entry(10), 5);
        assert_eq!(slot.at(5), SetEntry::default());
        assert_eq!(slot.at(6), entry(10));
        // A second write in the same epoch replaces the pending value only.
        slot.write(entry(11), 5);
        assert_eq!(slot.at(5), SetEntry::default());
        assert_eq!(slot.at(6), entry(11));
        // A write in a later epoch keeps the value visible then.
        slot.write(entry(12), 8);
        assert_eq!(slot.at(8), entry(11));
        assert_eq!(slot.at(9), entry(12));
    }

    #[test]
    fn the_length_changes_at_the_next_epoch() {
        let mut set = DealSet {
            provider: Pubkey::default(),
            len: 0,
            len_previous: 0,
            len_from: 0,
            pages: 1,
            session_epoch: 0,
            session_next_draw: 0,
            session_proven: 0,
            session_target: 0,
            epochs_proven: 0,
            bump: 0,
        };
        set.set_len(1, 3);
        set.set_len(2, 3);
        assert_eq!(set.len_at(3), 0);
        assert_eq!(set.len_at(4), 2);
        set.set_len(1, 4);
        assert_eq!(set.len_at(4), 2);
        assert_eq!(set.len_at(5), 1);
        set.start_session(4, 16).unwrap();
        assert_eq!(set.session_target, 2);
        set.start_session(5, 16).unwrap();
        assert_eq!(set.session_target, 1);
        assert!(set.start_session(4, 16).is_err());
    }
}
