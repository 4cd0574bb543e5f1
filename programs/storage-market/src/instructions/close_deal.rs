use anchor_lang::prelude::*;
use anchor_spl::token_interface::{Mint, TokenAccount, TokenInterface};

use crate::constants::*;
use crate::errors::MarketError;
use crate::events::DealClosed;
use crate::state::{Deal, DealState, Market};
use crate::token;

#[event_cpi]
#[derive(Accounts)]
pub struct CloseDeal<'info> {
    #[account(mut)]
    pub client: Signer<'info>,
    #[account(seeds = [SEED_MARKET], bump = market.bump)]
    pub market: Account<'info, Market>,
    #[account(mut, close = client, has_one = client @ MarketError::WrongClient)]
    pub deal: Account<'info, Deal>,
    /// Receives what the deal owes the client.
    #[account(mut, constraint = to.mint == market.mint @ MarketError::WrongTokenAccountMint)]
    pub to: InterfaceAccount<'info, TokenAccount>,
    #[account(mut, address = market.vault @ MarketError::WrongVault)]
    pub vault: InterfaceAccount<'info, TokenAccount>,
    #[account(address = market.mint @ MarketError::WrongMint)]
    pub mint: InterfaceAccount<'info, Mint>,
    #[account(address = market.token_program @ MarketError::WrongTokenProgram)]
    pub token_program: Interface<'info, TokenInterface>,
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
        Ok(())
    }
}

/// The client closes a finished deal: its refund is paid and the rent returned.
#[access_control(ctx.accounts.validate())]
pub fn handler(mut ctx: Context<CloseDeal>) -> Result<()> {
    let accounts = &mut ctx.accounts;
    let refunded = accounts.deal.client_refund;
    accounts.deal.client_refund = 0;
    token::out_of_vault(
        &accounts.token_program,
        &accounts.market,
        &accounts.mint,
        &accounts.vault,
        &accounts.to,
        refunded,
    )?;
    let event = DealClosed {
        deal: accounts.deal.key(),
        refunded,
    };
    emit_cpi!(event);
    Ok(())
}
