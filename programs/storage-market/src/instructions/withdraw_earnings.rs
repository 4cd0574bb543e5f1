use anchor_lang::prelude::*;
use anchor_spl::token_interface::TokenAccount;

use crate::errors::MarketError;
use crate::events::EarningsWithdrawn;
use crate::provider_signer::*;
use crate::vault::*;

#[event_cpi]
#[derive(Accounts)]
pub struct WithdrawEarnings<'info> {
    pub owner: ProviderSigner<'info>,
    pub vault: Vault<'info>,
    #[account(mut, constraint = to.mint == vault.mint.key() @ MarketError::WrongTokenAccountMint)]
    pub to: InterfaceAccount<'info, TokenAccount>,
}

impl WithdrawEarnings<'_> {
    pub fn validate(&self, amount: u64) -> Result<()> {
        require!(amount > 0, MarketError::ZeroAmount);
        require!(
            amount <= self.owner.provider.earnings,
            MarketError::InsufficientEarnings
        );
        Ok(())
    }
}

#[access_control(ctx.accounts.validate(amount))]
pub fn handler(mut ctx: Context<WithdrawEarnings>, amount: u64) -> Result<()> {
    let accounts = &mut ctx.accounts;
    accounts.owner.provider.earnings -= amount;
    accounts.owner.provider.invariant()?;
    accounts.vault.pay_out(&accounts.to, amount)?;
    let event = EarningsWithdrawn {
        provider: accounts.owner.provider.key(),
        amount,
        earnings_left: accounts.owner.provider.earnings,
    };
    emit_cpi!(event);
    Ok(())
}
