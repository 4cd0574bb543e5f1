//! The market's vault: the accounts every token movement needs, checked once,
//! and the two transfers (into the vault, out of it signed by the market PDA).
use anchor_lang::prelude::*;
use anchor_spl::token_interface::{
    transfer_checked, Mint, TokenAccount, TokenInterface, TransferChecked,
};

use crate::constants::SEED_MARKET;
use crate::errors::MarketError;
use crate::state::Market;

/// The market (read-only), its vault token account, its mint and the mint's
/// token program. Nested in every instruction that moves tokens.
#[derive(Accounts)]
pub struct Vault<'info> {
    #[account(seeds = [SEED_MARKET], bump = market.bump)]
    pub market: Account<'info, Market>,
    #[account(mut, address = market.vault @ MarketError::WrongVault)]
    pub token_account: InterfaceAccount<'info, TokenAccount>,
    #[account(address = market.mint @ MarketError::WrongMint)]
    pub mint: InterfaceAccount<'info, Mint>,
    #[account(address = market.token_program @ MarketError::WrongTokenProgram)]
    pub token_program: Interface<'info, TokenInterface>,
}

impl<'info> Vault<'info> {
    /// Transfers `amount` from `from` (owned by `owner`) into the vault.
    pub fn take_in(
        &self,
        from: &InterfaceAccount<'info, TokenAccount>,
        owner: &Signer<'info>,
        amount: u64,
    ) -> Result<()> {
        let accounts = TransferChecked {
            from: from.to_account_info(),
            mint: self.mint.to_account_info(),
            to: self.token_account.to_account_info(),
            authority: owner.to_account_info(),
        };
        transfer_checked(
            CpiContext::new(self.token_program.key(), accounts),
            amount,
            self.mint.decimals,
        )
    }

    /// Transfers `amount` from the vault to `to`, signed by the market PDA.
    pub fn pay_out(&self, to: &InterfaceAccount<'info, TokenAccount>, amount: u64) -> Result<()> {
        if amount == 0 {
            return Ok(());
        }
        let bump = [self.market.bump];
        let seeds: &[&[u8]] = &[SEED_MARKET, &bump];
        let accounts = TransferChecked {
            from: self.token_account.to_account_info(),
            mint: self.mint.to_account_info(),
            to: to.to_account_info(),
            authority: self.market.to_account_info(),
        };
        transfer_checked(
            CpiContext::new_with_signer(self.token_program.key(), accounts, &[seeds]),
            amount,
            self.mint.decimals,
        )
    }
}
