use anchor_lang::prelude::*;
use anchor_spl::token_interface::{Mint, TokenAccount, TokenInterface};

use crate::constants::*;
use crate::errors::MarketError;
use crate::events::EarningsWithdrawn;
use crate::state::{Market, Provider};
use crate::token;

#[event_cpi]
#[derive(Accounts)]
pub struct WithdrawEarnings<'info> {
    pub authority: Signer<'info>,
    #[account(seeds = [SEED_MARKET], bump = market.bump)]
    pub market: Account<'info, Market>,
    #[account(
        mut,
        seeds = [SEED_PROVIDER, authority.key().as_ref()],
        bump = provider.bump,
        has_one = authority @ MarketError::WrongProviderAuthority,
    )]
    pub provider: Account<'info, Provider>,
    #[account(mut, constraint = to.mint == market.mint @ MarketError::WrongTokenAccountMint)]
    pub to: InterfaceAccount<'info, TokenAccount>,
    #[account(mut, address = market.vault @ MarketError::WrongVault)]
    pub vault: InterfaceAccount<'info, TokenAccount>,
    #[account(address = market.mint @ MarketError::WrongMint)]
    pub mint: InterfaceAccount<'info, Mint>,
    #[account(address = market.token_program @ MarketError::WrongTokenProgram)]
    pub token_program: Interface<'info, TokenInterface>,
}

impl WithdrawEarnings<'_> {
    pub fn validate(&self, amount: u64) -> Result<()> {
        require!(amount > 0, MarketError::ZeroAmount);
        require!(
            amount <= self.provider.earnings,
            MarketError::InsufficientEarnings
        );
        Ok(())
    }
}

#[access_control(ctx.accounts.validate(amount))]
pub fn handler(mut ctx: Context<WithdrawEarnings>, amount: u64) -> Result<()> {
    let accounts = &mut ctx.accounts;
    accounts.provider.earnings -= amount;
    accounts.provider.invariant()?;
    token::out_of_vault(
        &accounts.token_program,
        &accounts.market,
        &accounts.mint,
        &accounts.vault,
        &accounts.to,
        amount,
    )?;
    let event = EarningsWithdrawn {
        provider: accounts.provider.key(),
        amount,
        earnings_left: accounts.provider.earnings,
    };
    emit_cpi!(event);
    Ok(())
}
