use anchor_lang::prelude::*;

use crate::constants::*;
use crate::errors::MarketError;
use crate::events::DealAccepted;
use crate::state::{Deal, DealState, Market, Provider};

#[event_cpi]
#[derive(Accounts)]
pub struct AcceptDeal<'info> {
    pub operator: Signer<'info>,
    #[account(seeds = [SEED_MARKET], bump = market.bump)]
    pub market: Account<'info, Market>,
    #[account(
        mut,
        seeds = [SEED_PROVIDER, provider.authority.as_ref()],
        bump = provider.bump,
        has_one = operator @ MarketError::WrongOperator,
    )]
    pub provider: Account<'info, Provider>,
    #[account(mut, has_one = provider @ MarketError::WrongProvider)]
    pub deal: Account<'info, Deal>,
}

impl AcceptDeal<'_> {
    pub fn validate(&self) -> Result<()> {
        require!(
            self.deal.state == DealState::Proposed,
            MarketError::DealNotProposed
        );
        let epoch = self.market.epoch_at(Clock::get()?.slot);
        let last_accept_epoch = self
            .deal
            .proposed_epoch
            .checked_add(self.market.params.accept_timeout_epochs)
            .ok_or(MarketError::ArithmeticOverflow)?;
        require!(epoch <= last_accept_epoch, MarketError::AcceptTimedOut);
        let used = self
            .provider
            .used_bytes
            .checked_add(self.deal.shard_bytes)
            .ok_or(MarketError::ArithmeticOverflow)?;
        require!(
            used <= self.provider.capacity_bytes,
            MarketError::InsufficientCapacity
        );
        require!(
            self.provider.stake_free >= self.deal.collateral,
            MarketError::InsufficientFreeStake
        );
        Ok(())
    }
}

/// The operator accepts a shard it holds: collateral locks, proving starts next epoch.
#[access_control(ctx.accounts.validate())]
pub fn handler(mut ctx: Context<AcceptDeal>) -> Result<()> {
    let accounts = &mut ctx.accounts;
    let epoch = accounts.market.epoch_at(Clock::get()?.slot);
    let provider = &mut accounts.provider;
    let deal = &mut accounts.deal;

    provider.lock_collateral(deal.collateral)?;
    provider.used_bytes = provider
        .used_bytes
        .checked_add(deal.shard_bytes)
        .ok_or(MarketError::ArithmeticOverflow)?;
    provider.active_deals = provider
        .active_deals
        .checked_add(1)
        .ok_or(MarketError::ArithmeticOverflow)?;

    deal.start_epoch = epoch
        .checked_add(1)
        .ok_or(MarketError::ArithmeticOverflow)?;
    deal.end_epoch = deal
        .start_epoch
        .checked_add(deal.duration_epochs)
        .ok_or(MarketError::ArithmeticOverflow)?;
    deal.settled_through = epoch;
    deal.collateral_left = deal.collateral;
    deal.state = DealState::Active;

    provider.invariant()?;
    deal.invariant()?;
    let event = DealAccepted {
        deal: deal.key(),
        provider: provider.key(),
        start_epoch: deal.start_epoch,
        end_epoch: deal.end_epoch,
        collateral: deal.collateral,
    };
    emit_cpi!(event);
    Ok(())
}
