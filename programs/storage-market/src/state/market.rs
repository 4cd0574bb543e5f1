use anchor_lang::prelude::*;

use crate::constants::*;
use crate::errors::MarketError;

/// Market-wide parameters. `epoch_slots` is fixed at creation; the rest can be
/// changed by the authority and apply to deals proposed afterwards (a deal keeps
/// the economic terms it was proposed under).
#[derive(AnchorSerialize, AnchorDeserialize, Clone, Copy, Debug, PartialEq, Eq, InitSpace)]
pub struct MarketParams {
    /// Slots per epoch: `epoch = slot / epoch_slots`.
    pub epoch_slots: u64,
    /// Collateral a provider locks per started MiB of an accepted shard.
    pub collateral_per_mib: u64,
    /// Share of a deal's collateral slashed per missed epoch, in basis points.
    pub slash_bps: u16,
    /// Reporter's share of a slash, in basis points.
    pub bounty_bps: u16,
    /// Consecutive missed epochs that terminate a deal.
    pub max_consecutive_faults: u16,
    /// Epochs after proposal during which the provider may accept.
    pub accept_timeout_epochs: u64,
    /// Slots after an epoch ends during which proofs for it are still accepted.
    pub grace_slots: u64,
    /// Largest shard a deal may cover (at most 4 GiB).
    pub max_shard_bytes: u64,
    /// Segments sampled per proof (1: see `MAX_SAMPLES_PER_PROOF`).
    pub samples_per_proof: u8,
}

impl MarketParams {
    /// Checks every parameter's range.
    pub fn validate(&self) -> Result<()> {
        require!(self.epoch_slots > 0, MarketError::InvalidEpochSlots);
        require!(
            u64::from(self.slash_bps) <= BPS_DENOMINATOR
                && u64::from(self.bounty_bps) <= BPS_DENOMINATOR,
            MarketError::InvalidBps
        );
        require!(
            (1..=MAX_CONSECUTIVE_FAULTS_LIMIT).contains(&self.max_consecutive_faults),
            MarketError::InvalidMaxConsecutiveFaults
        );
        require!(
            (1..=MAX_SAMPLES_PER_PROOF).contains(&self.samples_per_proof),
            MarketError::InvalidSamplesPerProof
        );
        require!(
            (cairn_proof::SEGMENT_BYTES as u64..=MAX_SHARD_BYTES_LIMIT)
                .contains(&self.max_shard_bytes),
            MarketError::InvalidMaxShardBytes
        );
        // The proof window of epoch e ends at (e + 1) * epoch_slots + grace_slots.
        self.epoch_slots
            .checked_add(self.grace_slots)
            .ok_or(MarketError::ArithmeticOverflow)?;
        Ok(())
    }
}

/// The one market of this program: `["market"]`. Only `init_market` and
/// `update_market` write it, so no other instruction takes a write lock on it.
#[account]
#[derive(InitSpace, Debug)]
pub struct Market {
    pub authority: Pubkey,
    /// Payment and stake mint (SPL Token or Token-2022).
    pub mint: Pubkey,
    /// Token program that owns `mint`.
    pub token_program: Pubkey,
    /// Vault token account (`["vault"]`) holding all escrow and stake.
    pub vault: Pubkey,
    pub params: MarketParams,
    pub bump: u8,
    pub vault_bump: u8,
}

impl Market {
    /// Epoch containing `slot`.
    pub fn epoch_at(&self, slot: u64) -> u64 {
        slot / self.params.epoch_slots
    }

    /// First slot of `epoch`.
    pub fn epoch_start_slot(&self, epoch: u64) -> Result<u64> {
        epoch
            .checked_mul(self.params.epoch_slots)
            .ok_or_else(|| error!(MarketError::ArithmeticOverflow))
    }

    /// First slot at which proofs for `epoch` are no longer accepted.
    pub fn proof_deadline_slot(&self, epoch: u64) -> Result<u64> {
        epoch
            .checked_add(1)
            .and_then(|next| next.checked_mul(self.params.epoch_slots))
            .and_then(|end| end.checked_add(self.params.grace_slots))
            .ok_or_else(|| error!(MarketError::ArithmeticOverflow))
    }

    /// Newest epoch whose proof window has closed at `slot`, if any.
    pub fn last_closed_epoch(&self, slot: u64) -> Option<u64> {
        // Epoch e is closed when slot >= (e + 1) * epoch_slots + grace_slots.
        let settled_slots = slot.checked_sub(self.params.grace_slots)?;
        (settled_slots / self.params.epoch_slots).checked_sub(1)
    }

    pub fn invariant(&self) -> Result<()> {
        self.params.validate()?;
        require!(
            self.authority != Pubkey::default(),
            MarketError::InvariantViolated
        );
        Ok(())
    }
}
