//! Cairn storage market: providers stake, clients escrow per-shard deals, each
//! epoch the chain issues a challenge seeded from SlotHashes, providers answer
//! with a Merkle proof, proven epochs are paid and missed ones slashed.
//!
//! See `DESIGN.md` (On-chain program, Proof of spacetime) for the rules.
#![allow(unexpected_cfgs)]

use anchor_lang::prelude::*;

pub mod constants;
pub mod errors;
pub mod events;
pub mod instructions;
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

    pub fn open_epoch(ctx: Context<OpenEpoch>, epoch: u64) -> Result<()> {
        instructions::open_epoch::handler(ctx, epoch)
    }

    pub fn submit_proof(
        ctx: Context<SubmitProof>,
        epoch: u64,
        samples: Vec<ProofSample>,
    ) -> Result<()> {
        instructions::submit_proof::handler(ctx, epoch, samples)
    }

    pub fn report_faults(ctx: Context<ReportFaults>) -> Result<()> {
        instructions::report_faults::handler(ctx)
    }

    pub fn complete_deal(ctx: Context<CompleteDeal>) -> Result<()> {
        instructions::complete_deal::handler(ctx)
    }

    pub fn close_deal(ctx: Context<CloseDeal>) -> Result<()> {
        instructions::close_deal::handler(ctx)
    }

    pub fn close_challenge(ctx: Context<CloseChallenge>) -> Result<()> {
        instructions::close_challenge::handler(ctx)
    }
}
