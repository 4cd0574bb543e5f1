use anchor_lang::prelude::*;
use anchor_spl::token_interface::{Mint, TokenAccount, TokenInterface};

use crate::constants::*;
use crate::errors::MarketError;
use crate::events::StakeChanged;
use crate::state::{Market, Provider};
use crate::token;

#[event_cpi]
#[derive(Accounts)]
pub struct DepositStake<'info> {
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
    /// Source of the stake, owned by the authority.
    #[account(mut, constraint = from.mint == market.mint @ MarketError::WrongTokenAccountMint)]
    pub from: InterfaceAccount<'info, TokenAccount>,
    #[account(mut, address = market.vault @ MarketError::WrongVault)]
    pub vault: InterfaceAccount<'info, TokenAccount>,
    #[account(address = market.mint @ MarketError::WrongMint)]
    pub mint: InterfaceAccount<'info, Mint>,
    #[account(address = market.token_program @ MarketError::WrongTokenProgram)]
    pub token_program: Interface<'info, TokenInterface>,
}

impl DepositStake<'_> {
    pub fn validate(&self, amount: u64) -> Result<()> {
        require!(amount > 0, MarketError::ZeroAmount);
        Ok(())
    }
}

#[access_control(ctx.accounts.validate(amount))]
pub fn handler(mut ctx: Context<DepositStake>, amount: u64) -> Result<()> {
    let accounts = &mut ctx.accounts;
    let provider = &mut accounts.provider;
    provider.stake_free = provider
        .stake_free
        .checked_add(amount)
        .ok_or(MarketError::ArithmeticOverflow)?;
    provider.invariant()?;
    token::into_vault(
        &accounts.token_program,
        &accounts.from,
        &accounts.authority,
        &accounts.mint,
        &accounts.vault,
        amount,
    )?;
    let event = StakeChanged {
        provider: accounts.provider.key(),
        delta: i128::from(amount),
        stake_free: accounts.provider.stake_free,
        stake_locked: accounts.provider.stake_locked,
    };
    emit_cpi!(event);
    Ok(())
}
