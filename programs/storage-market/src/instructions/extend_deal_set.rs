use anchor_lang::prelude::*;

use crate::constants::*;
use crate::errors::MarketError;
use crate::state::{DealSet, DealSetPage, Provider};

/// Adds the next page (64 entries) to a provider's deal set. Anyone may pay for it;
/// the operator does before its set fills.
#[derive(Accounts)]
pub struct ExtendDealSet<'info> {
    #[account(mut)]
    pub payer: Signer<'info>,
    pub provider: Box<Account<'info, Provider>>,
    #[account(mut, has_one = provider @ MarketError::WrongProvider)]
    pub deal_set: Account<'info, DealSet>,
    #[account(
        init,
        payer = payer,
        space = DealSetPage::SPACE,
        seeds = [SEED_DEAL_SET_PAGE, provider.key().as_ref(), deal_set.pages.to_le_bytes().as_ref()],
        bump,
    )]
    pub page: AccountLoader<'info, DealSetPage>,
    pub system_program: Program<'info, System>,
}

pub fn handler(ctx: Context<ExtendDealSet>) -> Result<()> {
    let set = &mut ctx.accounts.deal_set;
    {
        let mut page = ctx.accounts.page.load_init()?;
        page.provider = ctx.accounts.provider.key();
        page.page = u64::from(set.pages);
    }
    set.pages = set
        .pages
        .checked_add(1)
        .ok_or(MarketError::ArithmeticOverflow)?;
    set.invariant()
}
