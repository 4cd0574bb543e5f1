use anchor_lang::prelude::*;
use anchor_spl::token_interface::{Mint, TokenAccount, TokenInterface};

use crate::constants::*;
use crate::errors::MarketError;
use crate::events::DealCancelled;
use crate::state::{Deal, DealState, Market};
use crate::token;

#[event_cpi]
#[derive(Accounts)]
pub struct CancelDeal<'info> {
    pub client: Signer<'info>,
    #[account(seeds = [SEED_MARKET], bump = market.bump)]
    pub market: Account<'info, Market>,
    #[account(mut, has_one = client @ MarketError::WrongClient)]
    pub deal: Account<'info, Deal>,
    /// Receives the escrow.
    #[account(mut, constraint = to.mint == market.mint @ MarketError::WrongTokenAccountMint)]
    pub to: InterfaceAccount<'info, TokenAccount>,
    #[account(mut, address = market.vault @ MarketError::WrongVault)]
    pub vault: InterfaceAccount<'info, TokenAccount>,
    #[account(address = market.mint @ MarketError::WrongMint)]
    pub mint: InterfaceAccount<'info, Mint>,
    #[account(address = market.token_program @ MarketError::WrongTokenProgram)]
    pub token_program: Interface<'info, TokenInterface>,
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
    token::out_of_vault(
        &accounts.token_program,
        &accounts.market,
        &accounts.mint,
        &accounts.vault,
        &accounts.to,
        refunded,
    )?;
    let event = DealCancelled {
        deal: accounts.deal.key(),
        refunded,
    };
    emit_cpi!(event);
    Ok(())
}
