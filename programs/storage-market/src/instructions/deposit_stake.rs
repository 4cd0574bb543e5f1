use anchor_lang::prelude::*;
use anchor_spl::token_interface::TokenAccount;

use crate::errors::MarketError;
use crate::events::StakeChanged;
use crate::provider_signer::*;
use crate::vault::*;

#[event_cpi]
#[derive(Accounts)]
pub struct DepositStake<'info> {
    pub owner: ProviderSigner<'info>,
    pub vault: Vault<'info>,
    /// Source of the stake, owned by the authority.
    #[account(mut, constraint = from.mint == vault.mint.key() @ MarketError::WrongTokenAccountMint)]
    pub from: InterfaceAccount<'info, TokenAccount>,
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
    let provider = &mut accounts.owner.provider;
    provider.stake_free = provider
        .stake_free
        .checked_add(amount)
        .ok_or(MarketError::ArithmeticOverflow)?;
    provider.invariant()?;
    accounts
        .vault
        .take_in(&accounts.from, &accounts.owner.authority, amount)?;
    let event = StakeChanged {
        provider: accounts.owner.provider.key(),
        delta: i128::from(amount),
        stake_free: accounts.owner.provider.stake_free,
        stake_locked: accounts.owner.provider.stake_locked,
    };
    emit_cpi!(event);
    Ok(())
}
