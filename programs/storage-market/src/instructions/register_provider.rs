use anchor_lang::prelude::*;

use crate::constants::*;
use crate::errors::MarketError;
use crate::events::ProviderRegistered;
use crate::state::{DealSet, Market, Provider};

#[derive(AnchorSerialize, AnchorDeserialize, Clone, Debug, PartialEq, Eq)]
pub struct RegisterProviderArgs {
    /// Hot key that accepts deals and signs proofs (the node's identity).
    pub operator: Pubkey,
    /// `host:port` of the node's QUIC endpoint.
    pub endpoint: String,
    pub capacity_bytes: u64,
    pub price_per_mib_epoch: u64,
}

#[event_cpi]
#[derive(Accounts)]
pub struct RegisterProvider<'info> {
    #[account(mut)]
    pub authority: Signer<'info>,
    #[account(seeds = [SEED_MARKET], bump = market.bump)]
    pub market: Account<'info, Market>,
    #[account(
        init,
        payer = authority,
        space = 8 + Provider::INIT_SPACE,
        seeds = [SEED_PROVIDER, authority.key().as_ref()],
        bump,
    )]
    pub provider: Box<Account<'info, Provider>>,
    /// The provider's deal set (its pages come with `extend_deal_set`).
    #[account(
        init,
        payer = authority,
        space = 8 + DealSet::INIT_SPACE,
        seeds = [SEED_DEAL_SET, provider.key().as_ref()],
        bump,
    )]
    pub deal_set: Box<Account<'info, DealSet>>,
    pub system_program: Program<'info, System>,
}

impl RegisterProvider<'_> {
    pub fn validate(&self, args: &RegisterProviderArgs) -> Result<()> {
        Provider::validate_endpoint(&args.endpoint)?;
        require!(args.capacity_bytes > 0, MarketError::InvalidCapacity);
        Ok(())
    }
}

#[access_control(ctx.accounts.validate(&args))]
pub fn handler(ctx: Context<RegisterProvider>, args: RegisterProviderArgs) -> Result<()> {
    let provider = &mut ctx.accounts.provider;
    provider.authority = ctx.accounts.authority.key();
    provider.operator = args.operator;
    provider.endpoint = args.endpoint;
    provider.capacity_bytes = args.capacity_bytes;
    provider.used_bytes = 0;
    provider.price_per_mib_epoch = args.price_per_mib_epoch;
    provider.stake_free = 0;
    provider.stake_locked = 0;
    provider.earnings = 0;
    provider.active_deals = 0;
    provider.proofs = 0;
    provider.faults = 0;
    provider.slashed = 0;
    provider.forfeited = 0;
    provider.jailed_from = NOT_JAILED;
    provider.registered_slot = Clock::get()?.slot;
    provider.bump = ctx.bumps.provider;
    provider.invariant()?;
    let set = &mut ctx.accounts.deal_set;
    set.provider = provider.key();
    set.bump = ctx.bumps.deal_set;
    set.invariant()?;

    emit_cpi!(ProviderRegistered {
        provider: provider.key(),
        authority: provider.authority,
        operator: provider.operator,
        endpoint: provider.endpoint.clone(),
        capacity_bytes: provider.capacity_bytes,
        price_per_mib_epoch: provider.price_per_mib_epoch,
    });
    Ok(())
}
