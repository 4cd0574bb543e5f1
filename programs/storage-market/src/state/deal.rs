use anchor_lang::prelude::*;

use crate::constants::*;
use crate::errors::MarketError;

#[derive(AnchorSerialize, AnchorDeserialize, Clone, Copy, Debug, PartialEq, Eq, InitSpace)]
pub enum DealState {
    /// Escrowed by the client, waiting for the provider to accept.
    Proposed,
    /// Accepted: collateral locked, proven or settled epoch by epoch.
    Active,
    /// Every epoch settled through the end; collateral released.
    Completed,
    /// Ended early after `max_consecutive_faults` missed epochs.
    Terminated,
    /// Withdrawn by the client before acceptance.
    Cancelled,
}

/// One shard of one dataset stored by one provider:
/// `["deal", client, dataset_id, shard_index.to_le_bytes()]`.
#[account]
#[derive(InitSpace, Debug)]
pub struct Deal {
    pub client: Pubkey,
    /// The `Provider` account (not its authority).
    pub provider: Pubkey,
    /// BLAKE3 of the dataset's canonical manifest.
    pub dataset_id: [u8; 32],
    pub shard_index: u16,
    /// Data shards needed to rebuild the dataset.
    pub k: u16,
    /// Total shards of the dataset.
    pub n: u16,
    /// SHA-256 segment Merkle root of the shard (see `cairn_proof`).
    pub shard_root: [u8; 32],
    pub shard_bytes: u64,
    pub price_per_epoch: u64,
    pub duration_epochs: u64,
    /// Escrow not yet paid to the provider or refunded.
    pub escrow: u64,
    /// Collateral locked at acceptance.
    pub collateral: u64,
    /// Collateral still locked (collateral minus slashes; zero once released).
    pub collateral_left: u64,
    /// Tokens owed to the client (refunded prices, slashes, leftover escrow);
    /// paid out when the deal is closed.
    pub client_refund: u64,
    pub state: DealState,
    pub proposed_epoch: u64,
    /// First epoch the provider must prove (accept epoch + 1).
    pub start_epoch: u64,
    /// First epoch after the deal (`start_epoch + duration_epochs`).
    pub end_epoch: u64,
    /// Last epoch proven or settled as a fault (`start_epoch - 1` before any).
    pub settled_through: u64,
    pub proven_epochs: u64,
    pub total_faults: u64,
    pub consecutive_faults: u16,
    /// Terms fixed at proposal from the market parameters of that time.
    pub slash_bps: u16,
    pub bounty_bps: u16,
    pub max_consecutive_faults: u16,
    pub bump: u8,
}

impl Deal {
    /// Number of epochs not yet settled (proven or faulted) of an active deal.
    pub fn unsettled_epochs(&self) -> Result<u64> {
        self.end_epoch
            .checked_sub(1)
            .and_then(|last| last.checked_sub(self.settled_through))
            .ok_or_else(|| error!(MarketError::InvariantViolated))
    }

    /// Escrow a deal of `price_per_epoch` for `epochs` epochs requires.
    pub fn escrow_for(price_per_epoch: u64, epochs: u64) -> Result<u64> {
        price_per_epoch
            .checked_mul(epochs)
            .ok_or_else(|| error!(MarketError::ArithmeticOverflow))
    }

    /// Tokens the vault holds for this deal.
    pub fn balance(&self) -> Result<u64> {
        self.escrow
            .checked_add(self.client_refund)
            .ok_or_else(|| error!(MarketError::ArithmeticOverflow))
    }

    /// Checks the relations between the deal's fields for its state.
    pub fn invariant(&self) -> Result<()> {
        let ok_shape = self.k >= 1
            && self.k <= self.n
            && self.n <= MAX_SHARDS_PER_DATASET
            && self.shard_index < self.n
            && self.shard_bytes > 0
            && self.duration_epochs > 0
            && self.collateral_left <= self.collateral
            && self.consecutive_faults <= self.max_consecutive_faults;
        require!(ok_shape, MarketError::InvariantViolated);
        let full_escrow = Self::escrow_for(self.price_per_epoch, self.duration_epochs)?;
        let ok_state = match self.state {
            DealState::Proposed => {
                self.escrow == full_escrow
                    && self.client_refund == 0
                    && self.proven_epochs == 0
                    && self.total_faults == 0
            }
            DealState::Active => {
                self.start_epoch.checked_add(self.duration_epochs) == Some(self.end_epoch)
                    && self.settled_through.checked_add(1) >= Some(self.start_epoch)
                    && self.settled_through < self.end_epoch
                    && self.escrow
                        == Self::escrow_for(self.price_per_epoch, self.unsettled_epochs()?)?
                    && self.proven_epochs.checked_add(self.total_faults)
                        == (self.settled_through + 1).checked_sub(self.start_epoch)
            }
            DealState::Completed => {
                self.escrow == 0
                    && self.collateral_left == 0
                    && self.settled_through.checked_add(1) == Some(self.end_epoch)
                    && self.proven_epochs.checked_add(self.total_faults)
                        == Some(self.duration_epochs)
            }
            DealState::Terminated => self.escrow == 0 && self.collateral_left == 0,
            DealState::Cancelled => {
                self.escrow == 0 && self.proven_epochs == 0 && self.collateral_left == 0
            }
        };
        require!(ok_state, MarketError::InvariantViolated);
        Ok(())
    }
}
