use anchor_lang::prelude::*;

use crate::constants::*;
use crate::errors::MarketError;

/// Market-wide parameters, bounded by [`MarketParams::validate`].
///
/// `epoch_slots`, `jail_failures` and `jail_window` never change after creation (they
/// define epoch numbers and what every provider signed up to). `slash_bps` and
/// `accept_timeout_epochs` are copied into each deal at proposal, and
/// `samples_per_epoch` and `response_slots` into the epoch's `Challenge` when it is
/// opened, so an update never changes a running deal or an opened epoch.
#[derive(AnchorSerialize, AnchorDeserialize, Clone, Copy, Debug, PartialEq, Eq, InitSpace)]
pub struct MarketParams {
    /// Slots per epoch: `epoch = slot / epoch_slots`.
    pub epoch_slots: u64,
    /// Collateral a provider locks per started MiB of an accepted shard.
    pub collateral_per_mib: u64,
    /// Share of a deal's collateral that goes to the client per failed epoch, in
    /// basis points.
    pub slash_bps: u16,
    /// Epochs after proposal during which the provider may accept.
    pub accept_timeout_epochs: u64,
    /// Slots after an epoch's first slot by which its proof session must be complete
    /// (at most `epoch_slots`: an epoch's proofs never run into the next epoch).
    pub response_slots: u64,
    /// Largest shard a deal may cover (at most 4 GiB).
    pub max_shard_bytes: u64,
    /// Samples a provider proves per epoch (fewer if it holds fewer deals).
    pub samples_per_epoch: u16,
    /// Failed epochs within `jail_window` that jail a provider.
    pub jail_failures: u16,
    /// Window of closed epochs in which `jail_failures` failures jail a provider.
    pub jail_window: u16,
}

impl MarketParams {
    /// Checks every parameter's range.
    pub fn validate(&self) -> Result<()> {
        require!(
            self.epoch_slots >= MIN_EPOCH_SLOTS,
            MarketError::InvalidEpochSlots
        );
        require!(
            u64::from(self.slash_bps) <= BPS_DENOMINATOR,
            MarketError::InvalidBps
        );
        require!(
            (1..=MAX_ACCEPT_TIMEOUT_EPOCHS).contains(&self.accept_timeout_epochs),
            MarketError::InvalidAcceptTimeout
        );
        require!(
            (SEED_SLOT_OFFSET + 2..=self.epoch_slots).contains(&self.response_slots),
            MarketError::InvalidResponseSlots
        );
        require!(
            (1..=MAX_SAMPLES_PER_EPOCH).contains(&self.samples_per_epoch),
            MarketError::InvalidSamplesPerEpoch
        );
        require!(
            (1..=MAX_JAIL_WINDOW).contains(&self.jail_window)
                && (1..=self.jail_window).contains(&self.jail_failures),
            MarketError::InvalidJailParams
        );
        require!(
            (cairn_proof::SEGMENT_BYTES as u64..=MAX_SHARD_BYTES_LIMIT)
                .contains(&self.max_shard_bytes),
            MarketError::InvalidMaxShardBytes
        );
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

    pub fn invariant(&self) -> Result<()> {
        self.params.validate()?;
        require!(
            self.authority != Pubkey::default(),
            MarketError::InvariantViolated
        );
        Ok(())
    }
}
