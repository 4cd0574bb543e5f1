use anchor_lang::prelude::*;
use anchor_spl::token_interface::TokenAccount;

use crate::constants::*;
use crate::errors::MarketError;
use crate::events::ProviderDeregistered;
use crate::state::{DealSet, Provider};
use crate::vault::*;

#[event_cpi]
#[derive(Accounts)]
pub struct DeregisterProvider<'info> {
    #[account(mut)]
    pub authority: Signer<'info>,
    pub vault: Vault<'info>,
    #[account(
        mut,
        close = authority,
        seeds = [SEED_PROVIDER, authority.key().as_ref()],
        bump = provider.bump,
        has_one = authority @ MarketError::WrongProviderAuthority,
    )]
    pub provider: Box<Account<'info, Provider>>,
    #[account(mut, close = authority, has_one = provider @ MarketError::WrongProvider)]
    pub deal_set: Box<Account<'info, DealSet>>,
    /// Receives the free stake and earnings.
    #[account(mut, constraint = to.mint == vault.mint.key() @ MarketError::WrongTokenAccountMint)]
    pub to: InterfaceAccount<'info, TokenAccount>,
}

impl DeregisterProvider<'_> {
    pub fn validate(&self) -> Result<()> {
        require!(
            self.provider.stake_locked == 0
                && self.provider.active_deals == 0
                && self.deal_set.len == 0,
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
    accounts.vault.pay_out(&accounts.to, paid_out)?;
    let event = ProviderDeregistered {
        provider: accounts.provider.key(),
        paid_out,
    };
    emit_cpi!(event);
    Ok(())
}
