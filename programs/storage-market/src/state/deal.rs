use anchor_lang::prelude::*;

use crate::constants::*;
use crate::errors::MarketError;

#[derive(AnchorSerialize, AnchorDeserialize, Clone, Copy, Debug, PartialEq, Eq, InitSpace)]
pub enum DealState {
    /// Escrowed by the client, waiting for the provider to accept.
    Proposed,
    /// Accepted: collateral locked, in the provider's deal set, settled lazily.
    Active,
    /// Every epoch settled through the end; collateral returned to the provider.
    Completed,
    /// Ended early (the provider was jailed, or the client ended it after a failed
    /// epoch); the collateral left went to the client.
    Terminated,
    /// Withdrawn by the client before acceptance.
    Cancelled,
}

/// One shard of one dataset stored by one provider:
/// `["deal", client, dataset_id, shard_index LE, generation LE]`.
#[account]
#[derive(InitSpace, Debug)]
pub struct Deal {
    pub client: Pubkey,
    /// The `Provider` account (not its authority).
    pub provider: Pubkey,
    /// The dataset: `cairn_proof::dataset_id(client, nonce)`, shared by the deals
    /// of every group of the dataset.
    pub dataset_id: [u8; 32],
    /// The erasure group this shard belongs to: BLAKE3 of its group manifest
    /// (see `cairn_core::group`); part of the deal's address.
    pub group_id: [u8; 32],
    /// The group's number in the dataset; [`INDEX_GROUP`] for the index group,
    /// which holds the dataset manifest.
    pub group: u32,
    pub shard_index: u16,
    /// Placement of this shard: the client proposes generation `g + 1` to replace a
    /// deal of generation `g` at once, while the old one still settles.
    pub generation: u16,
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
    /// Collateral still locked (collateral minus penalties; zero once finished).
    pub collateral_left: u64,
    /// Tokens owed to the client (refunded prices, penalties, forfeited collateral,
    /// leftover escrow); paid out when the deal is closed.
    pub client_refund: u64,
    pub state: DealState,
    pub proposed_epoch: u64,
    /// First epoch the provider must prove (accept epoch + 1).
    pub start_epoch: u64,
    /// First epoch after the deal: `start_epoch + duration_epochs`, or earlier if the
    /// client ended it.
    pub end_epoch: u64,
    /// First epoch not yet settled.
    pub settled_until: u64,
    pub proven_epochs: u64,
    pub failed_epochs: u64,
    pub void_epochs: u64,
    /// Set when the client ended the deal after a failed epoch: the collateral left
    /// goes to the client when the deal finishes.
    pub forfeit: bool,
    /// Whether the deal has an entry in its provider's deal set, and which.
    pub in_set: bool,
    pub set_index: u32,
    /// Terms fixed at proposal from the market parameters of that time.
    pub slash_bps: u16,
    pub accept_timeout_epochs: u64,
    pub bump: u8,
}

impl Deal {
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

    /// The set entry of this deal.
    pub fn set_entry(&self) -> super::SetEntry {
        super::SetEntry {
            end_epoch: self.end_epoch,
            shard_bytes: self.shard_bytes,
            shard_root: self.shard_root,
        }
    }

    /// Checks the relations between the deal's fields for its state.
    pub fn invariant(&self) -> Result<()> {
        let ok_shape = self.k >= 1
            && self.k <= self.n
            && self.n <= MAX_SHARDS_PER_DATASET
            && self.shard_index < self.n
            && self.shard_bytes > 0
            && self.duration_epochs > 0
            && self.collateral_left <= self.collateral;
        require!(ok_shape, MarketError::InvariantViolated);
        let full_escrow = Self::escrow_for(self.price_per_epoch, self.duration_epochs)?;
        let settled = self
            .proven_epochs
            .checked_add(self.failed_epochs)
            .and_then(|s| s.checked_add(self.void_epochs));
        let ok_state = match self.state {
            DealState::Proposed => {
                self.escrow == full_escrow
                    && self.client_refund == 0
                    && settled == Some(0)
                    && !self.in_set
            }
            DealState::Active => {
                self.start_epoch <= self.end_epoch
                    && self.end_epoch - self.start_epoch <= self.duration_epochs
                    && self.start_epoch <= self.settled_until
                    && self.settled_until <= self.end_epoch
                    && self.escrow
                        == Self::escrow_for(
                            self.price_per_epoch,
                            self.end_epoch - self.settled_until,
                        )?
                    && settled == Some(self.settled_until - self.start_epoch)
            }
            DealState::Completed => {
                self.escrow == 0
                    && self.collateral_left == 0
                    && self.settled_until == self.end_epoch
                    && settled == Some(self.end_epoch - self.start_epoch)
            }
            DealState::Terminated => self.escrow == 0 && self.collateral_left == 0,
            DealState::Cancelled => {
                self.escrow == 0 && settled == Some(0) && self.collateral_left == 0 && !self.in_set
            }
        };
        require!(ok_state, MarketError::InvariantViolated);
        Ok(())
    }
}
