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
    /// Accepted deals not yet finished (completed or terminated at settlement).
    pub active_deals: u64,
    /// Deal-epochs settled as proven (paid).
    pub proofs: u64,
    /// Deal-epochs settled as failed.
    pub faults: u64,
    /// Collateral paid to clients as failed-epoch penalties.
    pub slashed: u64,
    /// Collateral paid to clients because deals ended early (jail, or a client
    /// ending a deal after a failure).
    pub forfeited: u64,
    /// First epoch the provider is jailed from (`NOT_JAILED` if it is not): it takes
    /// no new deals and its deals end at this epoch.
    pub jailed_from: u64,
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

    /// `amount` of locked collateral leaves the provider's stake (to a client).
    pub fn give_up_collateral(&mut self, amount: u64) -> Result<()> {
        self.stake_locked = self
            .stake_locked
            .checked_sub(amount)
            .ok_or(MarketError::InvariantViolated)?;
        Ok(())
    }

    pub fn is_jailed(&self) -> bool {
        self.jailed_from != NOT_JAILED
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
