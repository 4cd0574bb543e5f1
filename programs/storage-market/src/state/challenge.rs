use anchor_lang::prelude::*;

use crate::errors::MarketError;

/// The challenge of one epoch: `["challenge", epoch]`. Its seed, with the deal's
/// address and the sample number, fixes which segments a proof must reveal.
#[account]
#[derive(InitSpace, Debug)]
pub struct Challenge {
    pub epoch: u64,
    /// SlotHashes entry the seed was taken from.
    pub seed: [u8; 32],
    pub seed_slot: u64,
    pub opened_slot: u64,
    pub opener: Pubkey,
    /// First slot of the epoch: proofs are accepted from here…
    pub start_slot: u64,
    /// …until this slot (exclusive): end of the epoch plus the grace period.
    pub deadline_slot: u64,
    pub samples_per_proof: u8,
    pub bump: u8,
}

impl Challenge {
    pub fn invariant(&self) -> Result<()> {
        require!(
            self.start_slot < self.deadline_slot
                && self.seed_slot <= self.opened_slot
                && self.samples_per_proof > 0,
            MarketError::InvariantViolated
        );
        Ok(())
    }
}
