use anchor_lang::prelude::*;

use crate::constants::*;
use crate::errors::MarketError;
use crate::events::DealLeftSet;
use crate::settlement;
use crate::state::{Deal, DealSet, DealSetPage, DealState, Market, Provider};

/// Anyone removes an ended deal's entry from its provider's deal set: the last entry
/// moves into the hole, so the set stays dense. `moved` is the deal at the last index
/// and `last_page` its page; both are omitted when the leaving deal is the last entry,
/// and `last_page` when the last entry is on the leaving deal's page.
#[event_cpi]
#[derive(Accounts)]
pub struct LeaveDealSet<'info> {
    #[account(seeds = [SEED_MARKET], bump = market.bump)]
    pub market: Box<Account<'info, Market>>,
    pub provider: Box<Account<'info, Provider>>,
    #[account(mut, has_one = provider @ MarketError::WrongProvider)]
    pub deal_set: Box<Account<'info, DealSet>>,
    #[account(mut, has_one = provider @ MarketError::WrongProvider)]
    pub deal: Box<Account<'info, Deal>>,
    #[account(mut)]
    pub deal_page: AccountLoader<'info, DealSetPage>,
    #[account(mut, has_one = provider @ MarketError::WrongProvider)]
    pub moved: Option<Box<Account<'info, Deal>>>,
    #[account(mut)]
    pub last_page: Option<AccountLoader<'info, DealSetPage>>,
}

impl LeaveDealSet<'_> {
    pub fn validate(&self) -> Result<()> {
        let deal = &self.deal;
        require!(deal.in_set, MarketError::InvariantViolated);
        let now = self.market.epoch_at(Clock::get()?.slot);
        // The removal is visible from the next epoch: the deal must owe nothing then.
        let live = deal.state == DealState::Active
            && settlement::obligation_end(deal, &self.provider) > now + 1;
        require!(!live, MarketError::DealStillLive);
        Ok(())
    }
}

#[access_control(ctx.accounts.validate())]
pub fn handler(mut ctx: Context<LeaveDealSet>) -> Result<()> {
    let now = ctx.accounts.market.epoch_at(Clock::get()?.slot);
    let provider_key = ctx.accounts.provider.key();
    let accounts = &mut ctx.accounts;
    let index = accounts.deal.set_index;
    let last = accounts
        .deal_set
        .len
        .checked_sub(1)
        .ok_or(MarketError::InvariantViolated)?;
    require!(index <= last, MarketError::InvariantViolated);
    let mut moved_key = Pubkey::default();
    if index != last {
        let moved = accounts.moved.as_mut().ok_or(MarketError::WrongMovedDeal)?;
        require!(
            moved.in_set && moved.set_index == last,
            MarketError::WrongMovedDeal
        );
        let entry = match &accounts.last_page {
            Some(loader) => {
                let page = loader.load()?;
                require_keys_eq!(page.provider, provider_key, MarketError::WrongDealSetPage);
                page.slot(last)?.current
            }
            None => accounts.deal_page.load()?.slot(last)?.current,
        };
        let mut page = accounts.deal_page.load_mut()?;
        require_keys_eq!(page.provider, provider_key, MarketError::WrongDealSetPage);
        page.slot_mut(index)?.write(entry, now);
        moved.set_index = index;
        moved_key = moved.key();
    } else {
        let page = accounts.deal_page.load()?;
        require_keys_eq!(page.provider, provider_key, MarketError::WrongDealSetPage);
        page.slot(index)?;
    }
    accounts.deal_set.set_len(last, now);
    accounts.deal.in_set = false;
    accounts.deal_set.invariant()?;
    accounts.deal.invariant()?;
    let event = DealLeftSet {
        deal: accounts.deal.key(),
        provider: provider_key,
        set_index: index,
        moved: moved_key,
    };
    emit_cpi!(event);
    Ok(())
}
