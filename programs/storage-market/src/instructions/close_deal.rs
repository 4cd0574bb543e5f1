use anchor_lang::prelude::*;
use anchor_spl::token_interface::TokenAccount;

use crate::errors::MarketError;
use crate::events::DealClosed;
use crate::state::{Deal, DealState};
use crate::vault::*;

#[event_cpi]
#[derive(Accounts)]
pub struct CloseDeal<'info> {
    #[account(mut)]
    pub client: Signer<'info>,
    pub vault: Vault<'info>,
    #[account(mut, close = client, has_one = client @ MarketError::WrongClient)]
    pub deal: Account<'info, Deal>,
    /// Receives what the deal owes the client.
    #[account(mut, constraint = to.mint == vault.mint.key() @ MarketError::WrongTokenAccountMint)]
    pub to: InterfaceAccount<'info, TokenAccount>,
}

impl CloseDeal<'_> {
    pub fn validate(&self) -> Result<()> {
        require!(
            matches!(
                self.deal.state,
                DealState::Completed | DealState::Terminated | DealState::Cancelled
            ),
            MarketError::DealNotClosable
        );
        require!(!self.deal.in_set, MarketError::DealInSet);
        Ok(())
    }
}

/// The client closes a finished deal: its refund is paid and the rent returned.
#[access_control(ctx.accounts.validate())]
pub fn handler(mut ctx: Context<CloseDeal>) -> Result<()> {
    let accounts = &mut ctx.accounts;
    let refunded = accounts.deal.client_refund;
    accounts.deal.client_refund = 0;
    accounts.vault.pay_out(&accounts.to, refunded)?;
    let event = DealClosed {
        deal: accounts.deal.key(),
        refunded,
    };
    emit_cpi!(event);
    Ok(())
}
