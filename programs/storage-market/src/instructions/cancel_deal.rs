use anchor_lang::prelude::*;
use anchor_spl::token_interface::TokenAccount;

use crate::errors::MarketError;
use crate::events::DealCancelled;
use crate::state::{Deal, DealState};
use crate::vault::*;

#[event_cpi]
#[derive(Accounts)]
pub struct CancelDeal<'info> {
    pub client: Signer<'info>,
    pub vault: Vault<'info>,
    #[account(mut, has_one = client @ MarketError::WrongClient)]
    pub deal: Account<'info, Deal>,
    /// Receives the escrow.
    #[account(mut, constraint = to.mint == vault.mint.key() @ MarketError::WrongTokenAccountMint)]
    pub to: InterfaceAccount<'info, TokenAccount>,
}

impl CancelDeal<'_> {
    pub fn validate(&self) -> Result<()> {
        require!(
            self.deal.state == DealState::Proposed,
            MarketError::DealNotProposed
        );
        Ok(())
    }
}

/// Withdraws a deal the provider has not accepted; the whole escrow returns.
#[access_control(ctx.accounts.validate())]
pub fn handler(mut ctx: Context<CancelDeal>) -> Result<()> {
    let accounts = &mut ctx.accounts;
    let refunded = accounts.deal.escrow;
    accounts.deal.escrow = 0;
    accounts.deal.state = DealState::Cancelled;
    accounts.deal.invariant()?;
    accounts.vault.pay_out(&accounts.to, refunded)?;
    let event = DealCancelled {
        deal: accounts.deal.key(),
        refunded,
    };
    emit_cpi!(event);
    Ok(())
}
