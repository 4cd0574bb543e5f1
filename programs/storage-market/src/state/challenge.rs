use anchor_lang::prelude::*;

use crate::errors::MarketError;

/// The challenge of the epoch being proven: `["challenge"]`, one account that
/// `open_epoch` overwrites each epoch. Proofs of an epoch are accepted only before
/// its response deadline, which is inside the epoch, so no older seed is ever
/// needed; the seeds of past epochs stay in the `EpochOpened` events. One fixed
/// address also lets a provider's address lookup table hold it.
#[account]
#[derive(InitSpace, Debug)]
pub struct Challenge {
    /// The epoch this challenge is for (meaningful once `next_epoch > 0`).
    pub epoch: u64,
    /// Lowest epoch that may still be opened: epochs are opened in order.
    pub next_epoch: u64,
    /// `cairn_proof::epoch_seed(slot_hash(seed_slot), epoch)`.
    pub seed: [u8; 32],
    /// The slot whose SlotHashes entry the seed came from.
    pub seed_slot: u64,
    pub opened_slot: u64,
    pub opener: Pubkey,
    /// Proofs of `epoch` are accepted before this slot (copied from the market's
    /// `response_slots` at opening).
    pub deadline_slot: u64,
    /// Samples per provider this epoch (copied from the market at opening).
    pub samples_per_epoch: u16,
    pub bump: u8,
}

impl Challenge {
    pub fn invariant(&self) -> Result<()> {
        require!(
            self.next_epoch == 0
                || (self.next_epoch == self.epoch + 1
                    && self.seed_slot < self.opened_slot
                    && self.opened_slot < self.deadline_slot
                    && self.samples_per_epoch > 0),
            MarketError::InvariantViolated
        );
        Ok(())
    }
}
