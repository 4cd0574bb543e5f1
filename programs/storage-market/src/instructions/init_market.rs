use anchor_lang::prelude::*;
use anchor_spl::token_interface::{Mint, TokenAccount, TokenInterface};

use crate::constants::*;
use crate::events::MarketInitialized;
use crate::state::{Market, MarketParams};

#[event_cpi]
#[derive(Accounts)]
pub struct InitMarket<'info> {
    #[account(mut)]
    pub authority: Signer<'info>,
    #[account(
        init,
        payer = authority,
        space = 8 + Market::INIT_SPACE,
        seeds = [SEED_MARKET],
        bump,
    )]
    pub market: Account<'info, Market>,
    #[account(mint::token_program = token_program)]
    pub mint: InterfaceAccount<'info, Mint>,
    #[account(
        init,
        payer = authority,
        seeds = [SEED_VAULT],
        bump,
        token::mint = mint,
        token::authority = market,
        token::token_program = token_program,
    )]
    pub vault: InterfaceAccount<'info, TokenAccount>,
    pub token_program: Interface<'info, TokenInterface>,
    pub system_program: Program<'info, System>,
}

impl InitMarket<'_> {
    pub fn validate(&self, params: &MarketParams) -> Result<()> {
        params.validate()
    }
}

#[access_control(ctx.accounts.validate(&params))]
pub fn handler(ctx: Context<InitMarket>, params: MarketParams) -> Result<()> {
    let market = &mut ctx.accounts.market;
    market.authority = ctx.accounts.authority.key();
    market.mint = ctx.accounts.mint.key();
    market.token_program = ctx.accounts.token_program.key();
    market.vault = ctx.accounts.vault.key();
    market.params = params;
    market.bump = ctx.bumps.market;
    market.vault_bump = ctx.bumps.vault;
    market.invariant()?;
    emit_cpi!(MarketInitialized {
        market: market.key(),
        authority: market.authority,
        mint: market.mint,
        epoch_slots: params.epoch_slots,
    });
    Ok(())
}
