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
    pub shard_index: u16,
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
}

#[event]
pub struct ProofAccepted {
    pub deal: Pubkey,
    pub provider: Pubkey,
    pub epoch: u64,
    pub paid: u64,
}

#[event]
pub struct FaultsSettled {
    pub deal: Pubkey,
    pub provider: Pubkey,
    /// Who settled: a reporter (earns the bounty) or the operator (no bounty).
    pub settled_by: Pubkey,
    pub first_epoch: u64,
    pub last_epoch: u64,
    pub epochs: u64,
    pub slashed: u64,
    pub bounty: u64,
    pub refunded_to_client: u64,
}

#[event]
pub struct DealCompleted {
    pub deal: Pubkey,
    pub provider: Pubkey,
    pub proven_epochs: u64,
    pub total_faults: u64,
    pub collateral_released: u64,
}

#[event]
pub struct DealTerminated {
    pub deal: Pubkey,
    pub provider: Pubkey,
    pub epoch: u64,
    pub escrow_refunded: u64,
    pub collateral_released: u64,
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
