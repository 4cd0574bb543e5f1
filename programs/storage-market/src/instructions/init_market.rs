use anchor_lang::prelude::*;
use anchor_lang::solana_program::bpf_loader_upgradeable;
use anchor_spl::token_interface::{Mint, TokenAccount, TokenInterface};

use crate::constants::*;
use crate::errors::MarketError;
use crate::events::MarketInitialized;
use crate::mint_policy;
use crate::state::{Challenge, Market, MarketParams};

#[event_cpi]
#[derive(Accounts)]
pub struct InitMarket<'info> {
    #[account(mut)]
    pub authority: Signer<'info>,
    #[account(
        init,
        payer = authority,
        space = 8 + Market::INIT_SPACE,
        seeds = [SEED_MARKET],
        bump,
    )]
    pub market: Box<Account<'info, Market>>,
    /// The epoch challenge, opened epoch by epoch.
    #[account(
        init,
        payer = authority,
        space = 8 + Challenge::INIT_SPACE,
        seeds = [SEED_CHALLENGE],
        bump,
    )]
    pub challenge: Box<Account<'info, Challenge>>,
    /// Checked against the mint policy before the vault is created, so a refused
    /// mint gets its own error rather than a token program failure.
    #[account(
        mint::token_program = token_program,
        constraint = { mint_policy::check_mint(&mint.to_account_info(), &token_program.key())?; true },
    )]
    pub mint: Box<InterfaceAccount<'info, Mint>>,
    #[account(
        init,
        payer = authority,
        seeds = [SEED_VAULT],
        bump,
        token::mint = mint,
        token::authority = market,
        token::token_program = token_program,
    )]
    pub vault: Box<InterfaceAccount<'info, TokenAccount>>,
    pub token_program: Interface<'info, TokenInterface>,
    pub system_program: Program<'info, System>,
    /// CHECK: this program's ProgramData address under the upgradeable loader. Where
    /// it exists (an upgradeable deployment), only its upgrade authority may create
    /// the market; a natively run program has none.
    #[account(seeds = [crate::ID.as_ref()], bump, seeds::program = bpf_loader_upgradeable::ID)]
    pub program_data: UncheckedAccount<'info>,
}

impl InitMarket<'_> {
    pub fn validate(&self, params: &MarketParams) -> Result<()> {
        params.validate()?;
        self.check_upgrade_authority()
    }

    /// On a cluster where the program is upgradeable, the market's authority must be
    /// the program's upgrade authority: the market PDA is unique, so whoever calls
    /// first would otherwise own the market of a fresh deployment.
    fn check_upgrade_authority(&self) -> Result<()> {
        let info = self.program_data.to_account_info();
        if *info.owner != bpf_loader_upgradeable::ID || info.data_is_empty() {
            return Ok(());
        }
        let data = info.try_borrow_data()?;
        let program_data = ProgramData::try_deserialize(&mut &data[..])?;
        require!(
            program_data.upgrade_authority_address == Some(self.authority.key()),
            MarketError::NotUpgradeAuthority
        );
        Ok(())
    }
}

#[access_control(ctx.accounts.validate(&params))]
pub fn handler(ctx: Context<InitMarket>, params: MarketParams) -> Result<()> {
    let market = &mut ctx.accounts.market;
    market.authority = ctx.accounts.authority.key();
    market.mint = ctx.accounts.mint.key();
    market.token_program = ctx.accounts.token_program.key();
    market.vault = ctx.accounts.vault.key();
    market.params = params;
    market.bump = ctx.bumps.market;
    market.vault_bump = ctx.bumps.vault;
    market.invariant()?;
    let challenge = &mut ctx.accounts.challenge;
    challenge.next_epoch = 0;
    challenge.bump = ctx.bumps.challenge;
    challenge.invariant()?;
    let market = &ctx.accounts.market;
    emit_cpi!(MarketInitialized {
        market: market.key(),
        authority: market.authority,
        mint: market.mint,
        epoch_slots: params.epoch_slots,
    });
    Ok(())
}
