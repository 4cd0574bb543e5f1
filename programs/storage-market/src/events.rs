//! Events, emitted with `emit_cpi!` so they survive as inner instructions
//! (log events can be truncated, and native execution prints them to stdout).
use anchor_lang::prelude::*;

#[event]
pub struct MarketInitialized {
    pub market: Pubkey,
    pub authority: Pubkey,
    pub mint: Pubkey,
    pub epoch_slots: u64,
}

#[event]
pub struct MarketUpdated {
    pub market: Pubkey,
    pub params: crate::state::MarketParams,
}

#[event]
pub struct ProviderRegistered {
    pub provider: Pubkey,
    pub authority: Pubkey,
    pub operator: Pubkey,
    pub endpoint: String,
    pub capacity_bytes: u64,
    pub price_per_mib_epoch: u64,
}

#[event]
pub struct ProviderUpdated {
    pub provider: Pubkey,
    pub operator: Pubkey,
    pub endpoint: String,
    pub capacity_bytes: u64,
    pub price_per_mib_epoch: u64,
}

#[event]
pub struct ProviderDeregistered {
    pub provider: Pubkey,
    pub paid_out: u64,
}

#[event]
pub struct StakeChanged {
    pub provider: Pubkey,
    /// Positive for a deposit, negative for a withdrawal.
    pub delta: i128,
    pub stake_free: u64,
    pub stake_locked: u64,
}

#[event]
pub struct DealProposed {
    pub deal: Pubkey,
    pub client: Pubkey,
    pub provider: Pubkey,
    pub dataset_id: [u8; 32],
    pub group_id: [u8; 32],
    pub group: u32,
    pub shard_index: u16,
    pub generation: u16,
    pub shard_bytes: u64,
    pub shard_root: [u8; 32],
    pub price_per_epoch: u64,
    pub duration_epochs: u64,
    pub escrow: u64,
    pub collateral: u64,
}

#[event]
pub struct DealAccepted {
    pub deal: Pubkey,
    pub provider: Pubkey,
    pub start_epoch: u64,
    pub end_epoch: u64,
    pub collateral: u64,
    /// The deal's entry in its provider's deal set.
    pub set_index: u32,
}

#[event]
pub struct DealCancelled {
    pub deal: Pubkey,
    pub refunded: u64,
}

#[event]
pub struct EpochOpened {
    pub epoch: u64,
    pub seed: [u8; 32],
    pub seed_slot: u64,
    pub opened_slot: u64,
    pub opener: Pubkey,
    pub deadline_slot: u64,
    pub samples_per_epoch: u16,
}

/// A provider completed its proof session of `epoch`: its bit is set.
#[event]
pub struct EpochProven {
    pub provider: Pubkey,
    pub epoch: u64,
    /// Samples proven (`min(samples_per_epoch, deal-set entries)`, fewer if draws
    /// landed on ended deals).
    pub samples: u16,
    /// Draws the session used.
    pub draws: u32,
    /// Deal-set entries the epoch sampled from.
    pub set_len: u32,
}

/// Epochs `from_epoch .. until_epoch` of a deal were settled from the bits.
#[event]
pub struct DealSettled {
    pub deal: Pubkey,
    pub provider: Pubkey,
    pub from_epoch: u64,
    pub until_epoch: u64,
    pub proven: u64,
    pub failed: u64,
    pub void: u64,
    /// To the provider's earnings.
    pub paid: u64,
    /// Prices of failed and void epochs, owed to the client.
    pub refunded: u64,
    /// Collateral owed to the client for failed epochs.
    pub penalty: u64,
}

/// Every epoch of a deal is settled: it is Completed (collateral back to the
/// provider) or Terminated (escrow left and collateral left to the client).
#[event]
pub struct DealFinished {
    pub deal: Pubkey,
    pub provider: Pubkey,
    pub terminated: bool,
    pub proven_epochs: u64,
    pub failed_epochs: u64,
    pub void_epochs: u64,
    pub collateral_released: u64,
    pub collateral_forfeited: u64,
    pub escrow_refunded: u64,
}

/// The client ended a deal after its provider failed `failed_epoch`.
#[event]
pub struct DealEnded {
    pub deal: Pubkey,
    pub provider: Pubkey,
    pub failed_epoch: u64,
    /// The deal now ends at the start of this epoch.
    pub end_epoch: u64,
    pub escrow_refunded: u64,
}

/// A deal's entry left its provider's deal set; `moved` (if not the default key)
/// took its index.
#[event]
pub struct DealLeftSet {
    pub deal: Pubkey,
    pub provider: Pubkey,
    pub set_index: u32,
    pub moved: Pubkey,
}

#[event]
pub struct ProviderJailed {
    pub provider: Pubkey,
    /// Jailed from this epoch: its deals end here.
    pub epoch: u64,
    pub failed_epochs: Vec<u64>,
    pub jailed_by: Pubkey,
}

#[event]
pub struct DealClosed {
    pub deal: Pubkey,
    pub refunded: u64,
}

#[event]
pub struct EarningsWithdrawn {
    pub provider: Pubkey,
    pub amount: u64,
    pub earnings_left: u64,
}
