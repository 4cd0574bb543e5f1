//! Cairn storage market: providers stake, clients escrow per-shard deals, each
//! epoch the chain draws a challenge from SlotHashes, each provider proves a few
//! sampled segments of its whole deal set in one proof session, and deals are
//! settled lazily from the per-epoch bits: proven epochs paid, failed ones
//! penalised, void ones refunded.
//!
//! See `docs/DESIGN.md` ("The on-chain program", "Proving v2") for the rules.
#![allow(unexpected_cfgs)]

use anchor_lang::prelude::*;

pub mod constants;
pub mod errors;
pub mod events;
pub mod instructions;
pub mod mint_policy;
pub mod provider_signer;
pub mod settlement;
pub mod state;
pub mod vault;

use instructions::*;
pub use state::MarketParams;

declare_id!("E2FTjsV6tPwFbbMiBsquM9Q2wyPEG7qWukeY5iaMcghJ");

#[program]
pub mod storage_market {
    use super::*;

    pub fn init_market(ctx: Context<InitMarket>, params: MarketParams) -> Result<()> {
        instructions::init_market::handler(ctx, params)
    }

    pub fn update_market(ctx: Context<UpdateMarket>, params: MarketParams) -> Result<()> {
        instructions::update_market::handler(ctx, params)
    }

    pub fn register_provider(
        ctx: Context<RegisterProvider>,
        args: RegisterProviderArgs,
    ) -> Result<()> {
        instructions::register_provider::handler(ctx, args)
    }

    pub fn update_provider(ctx: Context<UpdateProvider>, args: UpdateProviderArgs) -> Result<()> {
        instructions::update_provider::handler(ctx, args)
    }

    pub fn deposit_stake(ctx: Context<DepositStake>, amount: u64) -> Result<()> {
        instructions::deposit_stake::handler(ctx, amount)
    }

    pub fn withdraw_stake(ctx: Context<WithdrawStake>, amount: u64) -> Result<()> {
        instructions::withdraw_stake::handler(ctx, amount)
    }

    pub fn withdraw_earnings(ctx: Context<WithdrawEarnings>, amount: u64) -> Result<()> {
        instructions::withdraw_earnings::handler(ctx, amount)
    }

    pub fn deregister_provider(ctx: Context<DeregisterProvider>) -> Result<()> {
        instructions::deregister_provider::handler(ctx)
    }

    pub fn propose_deal(ctx: Context<ProposeDeal>, args: ProposeDealArgs) -> Result<()> {
        instructions::propose_deal::handler(ctx, args)
    }

    pub fn cancel_deal(ctx: Context<CancelDeal>) -> Result<()> {
        instructions::cancel_deal::handler(ctx)
    }

    pub fn accept_deal(ctx: Context<AcceptDeal>) -> Result<()> {
        instructions::accept_deal::handler(ctx)
    }

    pub fn open_epoch_log(ctx: Context<OpenEpochLog>, page: u32) -> Result<()> {
        instructions::open_logs::open_epoch_log(ctx, page)
    }

    pub fn open_proof_log(ctx: Context<OpenProofLog>, page: u32) -> Result<()> {
        instructions::open_logs::open_proof_log(ctx, page)
    }

    pub fn extend_deal_set(ctx: Context<ExtendDealSet>) -> Result<()> {
        instructions::extend_deal_set::handler(ctx)
    }

    pub fn open_epoch(ctx: Context<OpenEpoch>, epoch: u64) -> Result<()> {
        instructions::open_epoch::handler(ctx, epoch)
    }

    pub fn prove<'info>(
        ctx: Context<'info, Prove<'info>>,
        epoch: u64,
        samples: Vec<ProofSample>,
    ) -> Result<()> {
        instructions::prove::handler(ctx, epoch, samples)
    }

    pub fn settle<'info>(ctx: Context<'info, Settle<'info>>, page: u32) -> Result<()> {
        instructions::settle::handler(ctx, page)
    }

    pub fn end_deal(ctx: Context<EndDeal>, failed_epoch: u64) -> Result<()> {
        instructions::end_deal::handler(ctx, failed_epoch)
    }

    pub fn jail_provider<'info>(
        ctx: Context<'info, JailProvider<'info>>,
        page: u32,
        epochs: Vec<u64>,
    ) -> Result<()> {
        instructions::jail_provider::handler(ctx, page, epochs)
    }

    pub fn leave_deal_set(ctx: Context<LeaveDealSet>) -> Result<()> {
        instructions::leave_deal_set::handler(ctx)
    }

    pub fn close_deal(ctx: Context<CloseDeal>) -> Result<()> {
        instructions::close_deal::handler(ctx)
    }
}
