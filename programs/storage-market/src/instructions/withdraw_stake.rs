use anchor_lang::prelude::*;
use anchor_spl::token_interface::TokenAccount;

use crate::errors::MarketError;
use crate::events::StakeChanged;
use crate::provider_signer::*;
use crate::vault::*;

#[event_cpi]
#[derive(Accounts)]
pub struct WithdrawStake<'info> {
    pub owner: ProviderSigner<'info>,
    pub vault: Vault<'info>,
    #[account(mut, constraint = to.mint == vault.mint.key() @ MarketError::WrongTokenAccountMint)]
    pub to: InterfaceAccount<'info, TokenAccount>,
}

impl WithdrawStake<'_> {
    pub fn validate(&self, amount: u64) -> Result<()> {
        require!(amount > 0, MarketError::ZeroAmount);
        require!(
            amount <= self.owner.provider.stake_free,
            MarketError::InsufficientFreeStake
        );
        Ok(())
    }
}

/// Withdraws free stake (never collateral locked by active deals).
#[access_control(ctx.accounts.validate(amount))]
pub fn handler(mut ctx: Context<WithdrawStake>, amount: u64) -> Result<()> {
    let accounts = &mut ctx.accounts;
    accounts.owner.provider.stake_free -= amount;
    accounts.owner.provider.invariant()?;
    accounts.vault.pay_out(&accounts.to, amount)?;
    let event = StakeChanged {
        provider: accounts.owner.provider.key(),
        delta: -i128::from(amount),
        stake_free: accounts.owner.provider.stake_free,
        stake_locked: accounts.owner.provider.stake_locked,
    };
    emit_cpi!(event);
    Ok(())
}
