use anchor_lang::prelude::*;

use crate::constants::*;
use crate::errors::MarketError;
use crate::events::DealCompleted;
use crate::settlement;
use crate::state::{Deal, DealState, Market, Provider};

#[event_cpi]
#[derive(Accounts)]
pub struct CompleteDeal<'info> {
    pub caller: Signer<'info>,
    #[account(seeds = [SEED_MARKET], bump = market.bump)]
    pub market: Account<'info, Market>,
    #[account(mut, seeds = [SEED_PROVIDER, provider.authority.as_ref()], bump = provider.bump)]
    pub provider: Account<'info, Provider>,
    #[account(mut, has_one = provider @ MarketError::WrongProvider)]
    pub deal: Account<'info, Deal>,
}

impl CompleteDeal<'_> {
    pub fn validate(&self) -> Result<()> {
        require!(
            self.deal.state == DealState::Active,
            MarketError::DealNotActive
        );
        let epoch = self.market.epoch_at(Clock::get()?.slot);
        require!(epoch >= self.deal.end_epoch, MarketError::DealNotEnded);
        Ok(())
    }
}

/// Anyone completes a deal after its end once every epoch is settled: the
/// provider's collateral is released and its capacity freed.
#[access_control(ctx.accounts.validate())]
pub fn handler(mut ctx: Context<CompleteDeal>) -> Result<()> {
    let accounts = &mut ctx.accounts;
    let released = settlement::complete(&mut accounts.deal, &mut accounts.provider)?;
    accounts.deal.invariant()?;
    accounts.provider.invariant()?;
    let event = DealCompleted {
        deal: accounts.deal.key(),
        provider: accounts.provider.key(),
        proven_epochs: accounts.deal.proven_epochs,
        total_faults: accounts.deal.total_faults,
        collateral_released: released,
    };
    emit_cpi!(event);
    Ok(())
}
