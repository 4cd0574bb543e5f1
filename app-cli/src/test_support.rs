//! Accounts for unit tests: a plausible deal and provider to adjust field by field.
use anchor_lang::prelude::Pubkey;
use storage_market::constants::NOT_JAILED;
use storage_market::state::{Deal, DealState, Provider};

/// An active 1 MiB deal, shard 0 of a 4 + 2 dataset, epochs 10..30, nothing settled.
pub fn deal() -> Deal {
    Deal {
        client: Pubkey::new_unique(),
        provider: Pubkey::new_unique(),
        dataset_id: [1; 32],
        group_id: [1; 32],
        group: 0,
        shard_index: 0,
        generation: 0,
        k: 4,
        n: 6,
        shard_root: [2; 32],
        shard_bytes: 1 << 20,
        price_per_epoch: 100,
        duration_epochs: 20,
        escrow: 2_000,
        collateral: 90_000,
        collateral_left: 90_000,
        client_refund: 0,
        state: DealState::Active,
        proposed_epoch: 9,
        start_epoch: 10,
        end_epoch: 30,
        settled_until: 10,
        proven_epochs: 0,
        failed_epochs: 0,
        void_epochs: 0,
        forfeit: false,
        in_set: true,
        set_index: 0,
        slash_bps: 1_000,
        accept_timeout_epochs: 2,
        bump: 255,
    }
}

/// A registered, unjailed provider with 1 GiB of room and no deals.
pub fn provider() -> Provider {
    Provider {
        authority: Pubkey::new_unique(),
        operator: Pubkey::new_unique(),
        endpoint: "127.0.0.1:1".into(),
        capacity_bytes: 1 << 30,
        used_bytes: 0,
        price_per_mib_epoch: 1,
        stake_free: 0,
        stake_locked: 0,
        earnings: 0,
        active_deals: 0,
        proofs: 0,
        faults: 0,
        slashed: 0,
        forfeited: 0,
        jailed_from: NOT_JAILED,
        registered_slot: 0,
        bump: 255,
    }
}
