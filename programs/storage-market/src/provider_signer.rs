//! A provider account with its authority's signature: nested in every
//! instruction only the provider's cold key may send.
use anchor_lang::prelude::*;

use crate::constants::SEED_PROVIDER;
use crate::errors::MarketError;
use crate::state::Provider;

#[derive(Accounts)]
pub struct ProviderSigner<'info> {
    pub authority: Signer<'info>,
    #[account(
        mut,
        seeds = [SEED_PROVIDER, authority.key().as_ref()],
        bump = provider.bump,
        has_one = authority @ MarketError::WrongProviderAuthority,
    )]
    pub provider: Account<'info, Provider>,
}
