use anchor_lang::prelude::*;
use anchor_spl::token_interface::{Mint, TokenAccount, TokenInterface};

use crate::constants::*;
use crate::errors::MarketError;
use crate::events::ProviderDeregistered;
use crate::state::{Market, Provider};
use crate::token;

#[event_cpi]
#[derive(Accounts)]
pub struct DeregisterProvider<'info> {
    #[account(mut)]
    pub authority: Signer<'info>,
    #[account(mut, seeds = [SEED_MARKET], bump = market.bump)]
    pub market: Account<'info, Market>,
    #[account(
        mut,
        close = authority,
        seeds = [SEED_PROVIDER, authority.key().as_ref()],
        bump = provider.bump,
        has_one = authority @ MarketError::WrongProviderAuthority,
    )]
    pub provider: Account<'info, Provider>,
    /// Receives the free stake and earnings.
    #[account(mut, constraint = to.mint == market.mint @ MarketError::WrongTokenAccountMint)]
    pub to: InterfaceAccount<'info, TokenAccount>,
    #[account(mut, address = market.vault @ MarketError::WrongVault)]
    pub vault: InterfaceAccount<'info, TokenAccount>,
    #[account(address = market.mint @ MarketError::WrongMint)]
    pub mint: InterfaceAccount<'info, Mint>,
    #[account(address = market.token_program @ MarketError::WrongTokenProgram)]
    pub token_program: Interface<'info, TokenInterface>,
}

impl DeregisterProvider<'_> {
    pub fn validate(&self) -> Result<()> {
        require!(
            self.provider.stake_locked == 0 && self.provider.active_deals == 0,
            MarketError::ProviderBusy
        );
        Ok(())
    }
}

/// Pays out free stake and earnings and closes the provider account (rent to
/// the authority). Refused while any deal is active or collateral is locked.
#[access_control(ctx.accounts.validate())]
pub fn handler(mut ctx: Context<DeregisterProvider>) -> Result<()> {
    let accounts = &mut ctx.accounts;
    let paid_out = accounts.provider.balance()?;
    accounts.provider.stake_free = 0;
    accounts.provider.earnings = 0;
    token::out_of_vault(
        &accounts.token_program,
        &accounts.market,
        &accounts.mint,
        &accounts.vault,
        &accounts.to,
        paid_out,
    )?;
    let market = &mut accounts.market;
    market.providers = market
        .providers
        .checked_sub(1)
        .ok_or(MarketError::InvariantViolated)?;
    let event = ProviderDeregistered {
        provider: accounts.provider.key(),
        paid_out,
    };
    emit_cpi!(event);
    Ok(())
}
