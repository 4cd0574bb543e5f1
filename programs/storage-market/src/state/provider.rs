use anchor_lang::prelude::*;

use crate::constants::*;
use crate::errors::MarketError;

/// A storage provider: `["provider", authority]`.
#[account]
#[derive(InitSpace, Debug)]
pub struct Provider {
    /// Cold key: stakes, withdraws, updates, deregisters.
    pub authority: Pubkey,
    /// Hot key: accepts deals and signs proofs; also the node's QUIC identity.
    pub operator: Pubkey,
    /// `host:port` of the node's QUIC endpoint.
    #[max_len(MAX_ENDPOINT_LEN)]
    pub endpoint: String,
    pub capacity_bytes: u64,
    /// Bytes of shards in accepted, not yet finished deals.
    pub used_bytes: u64,
    pub price_per_mib_epoch: u64,
    pub stake_free: u64,
    /// Collateral of active deals.
    pub stake_locked: u64,
    pub earnings: u64,
    pub active_deals: u64,
    pub proofs: u64,
    pub faults: u64,
    pub slashed: u64,
    pub registered_slot: u64,
    pub bump: u8,
}

impl Provider {
    pub fn validate_endpoint(endpoint: &str) -> Result<()> {
        require!(
            !endpoint.is_empty() && endpoint.len() <= MAX_ENDPOINT_LEN,
            MarketError::InvalidEndpoint
        );
        Ok(())
    }

    /// Moves `amount` of free stake into locked collateral.
    pub fn lock_collateral(&mut self, amount: u64) -> Result<()> {
        require!(
            self.stake_free >= amount,
            MarketError::InsufficientFreeStake
        );
        self.stake_free -= amount;
        self.stake_locked = self
            .stake_locked
            .checked_add(amount)
            .ok_or(MarketError::ArithmeticOverflow)?;
        Ok(())
    }

    /// Moves `amount` of locked collateral back to free stake.
    pub fn release_collateral(&mut self, amount: u64) -> Result<()> {
        self.stake_locked = self
            .stake_locked
            .checked_sub(amount)
            .ok_or(MarketError::InvariantViolated)?;
        self.stake_free = self
            .stake_free
            .checked_add(amount)
            .ok_or(MarketError::ArithmeticOverflow)?;
        Ok(())
    }

    /// Records one missed epoch: `amount` of locked collateral leaves the
    /// provider's stake (to the reporter and the client).
    pub fn slash_collateral(&mut self, amount: u64) -> Result<()> {
        self.stake_locked = self
            .stake_locked
            .checked_sub(amount)
            .ok_or(MarketError::InvariantViolated)?;
        self.slashed = self
            .slashed
            .checked_add(amount)
            .ok_or(MarketError::ArithmeticOverflow)?;
        self.faults += 1;
        Ok(())
    }

    /// Frees the capacity a finished deal held.
    pub fn finish_deal(&mut self, shard_bytes: u64) -> Result<()> {
        self.used_bytes = self
            .used_bytes
            .checked_sub(shard_bytes)
            .ok_or(MarketError::InvariantViolated)?;
        self.active_deals = self
            .active_deals
            .checked_sub(1)
            .ok_or(MarketError::InvariantViolated)?;
        Ok(())
    }

    /// Everything the vault owes this provider.
    pub fn balance(&self) -> Result<u64> {
        self.stake_free
            .checked_add(self.stake_locked)
            .and_then(|s| s.checked_add(self.earnings))
            .ok_or_else(|| error!(MarketError::ArithmeticOverflow))
    }

    pub fn invariant(&self) -> Result<()> {
        Self::validate_endpoint(&self.endpoint)?;
        require!(
            self.used_bytes <= self.capacity_bytes,
            MarketError::InvariantViolated
        );
        require!(
            self.active_deals > 0 || (self.used_bytes == 0 && self.stake_locked == 0),
            MarketError::InvariantViolated
        );
        self.balance()?;
        Ok(())
    }
}
