use anchor_lang::prelude::*;

use crate::constants::*;
use crate::errors::MarketError;
use crate::events::MarketUpdated;
use crate::state::{Market, MarketParams};

#[event_cpi]
#[derive(Accounts)]
pub struct UpdateMarket<'info> {
    pub authority: Signer<'info>,
    #[account(
        mut,
        seeds = [SEED_MARKET],
        bump = market.bump,
        has_one = authority @ MarketError::WrongMarketAuthority,
    )]
    pub market: Account<'info, Market>,
}

impl UpdateMarket<'_> {
    pub fn validate(&self, params: &MarketParams) -> Result<()> {
        params.validate()?;
        let current = &self.market.params;
        require!(
            params.epoch_slots == current.epoch_slots
                && params.jail_failures == current.jail_failures
                && params.jail_window == current.jail_window,
            MarketError::ParamImmutable
        );
        Ok(())
    }
}

#[access_control(ctx.accounts.validate(&params))]
pub fn handler(ctx: Context<UpdateMarket>, params: MarketParams) -> Result<()> {
    let market = &mut ctx.accounts.market;
    market.params = params;
    market.invariant()?;
    emit_cpi!(MarketUpdated {
        market: market.key(),
        params,
    });
    Ok(())
}
