use anchor_lang::prelude::*;

use crate::constants::*;
use crate::errors::MarketError;
use crate::events::DealAccepted;
use crate::state::{Deal, DealSet, DealSetPage, DealState, Market, Provider};

#[event_cpi]
#[derive(Accounts)]
pub struct AcceptDeal<'info> {
    pub operator: Signer<'info>,
    #[account(seeds = [SEED_MARKET], bump = market.bump)]
    pub market: Box<Account<'info, Market>>,
    #[account(
        mut,
        seeds = [SEED_PROVIDER, provider.authority.as_ref()],
        bump = provider.bump,
        has_one = operator @ MarketError::WrongOperator,
    )]
    pub provider: Box<Account<'info, Provider>>,
    #[account(mut, has_one = provider @ MarketError::WrongProvider)]
    pub deal: Box<Account<'info, Deal>>,
    #[account(mut, has_one = provider @ MarketError::WrongProvider)]
    pub deal_set: Box<Account<'info, DealSet>>,
    /// The page holding the set's next entry (`deal_set.len`).
    #[account(mut)]
    pub deal_set_page: AccountLoader<'info, DealSetPage>,
}

impl AcceptDeal<'_> {
    pub fn validate(&self) -> Result<()> {
        require!(
            self.deal.state == DealState::Proposed,
            MarketError::DealNotProposed
        );
        require!(!self.provider.is_jailed(), MarketError::ProviderJailed);
        let epoch = self.market.epoch_at(Clock::get()?.slot);
        let last_accept_epoch = self
            .deal
            .proposed_epoch
            .checked_add(self.deal.accept_timeout_epochs)
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
        require!(
            u64::from(self.deal_set.len)
                < u64::from(self.deal_set.pages) * DEAL_SET_PAGE_ENTRIES as u64,
            MarketError::DealSetFull
        );
        Ok(())
    }
}

/// The operator accepts a shard it holds: collateral locks, the deal joins the
/// provider's deal set, and proving starts next epoch.
#[access_control(ctx.accounts.validate())]
pub fn handler(mut ctx: Context<AcceptDeal>) -> Result<()> {
    let accounts = &mut ctx.accounts;
    let epoch = accounts.market.epoch_at(Clock::get()?.slot);
    let provider_key = accounts.provider.key();
    let provider = &mut accounts.provider;
    let deal = &mut accounts.deal;
    let set = &mut accounts.deal_set;

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
    deal.settled_until = deal.start_epoch;
    deal.collateral_left = deal.collateral;
    deal.state = DealState::Active;

    let index = set.len;
    {
        let mut page = accounts.deal_set_page.load_mut()?;
        require_keys_eq!(page.provider, provider_key, MarketError::WrongDealSetPage);
        page.slot_mut(index)?.write(deal.set_entry(), epoch);
    }
    set.set_len(index + 1, epoch);
    deal.in_set = true;
    deal.set_index = index;

    provider.invariant()?;
    deal.invariant()?;
    set.invariant()?;
    let event = DealAccepted {
        deal: deal.key(),
        provider: provider_key,
        start_epoch: deal.start_epoch,
        end_epoch: deal.end_epoch,
        collateral: deal.collateral,
        set_index: index,
    };
    emit_cpi!(event);
    Ok(())
}
