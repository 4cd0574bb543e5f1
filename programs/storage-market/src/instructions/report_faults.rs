use anchor_lang::prelude::*;
use anchor_spl::token_interface::TokenAccount;

use crate::constants::*;
use crate::errors::MarketError;
use crate::events::{DealTerminated, FaultsSettled};
use crate::settlement;
use crate::state::{Deal, DealState, Provider};
use crate::vault::*;

#[event_cpi]
#[derive(Accounts)]
pub struct ReportFaults<'info> {
    pub reporter: Signer<'info>,
    pub vault: Vault<'info>,
    #[account(mut, seeds = [SEED_PROVIDER, provider.authority.as_ref()], bump = provider.bump)]
    pub provider: Account<'info, Provider>,
    #[account(mut, has_one = provider @ MarketError::WrongProvider)]
    pub deal: Account<'info, Deal>,
    /// Receives the bounty.
    #[account(mut, constraint = reporter_token.mint == vault.mint.key() @ MarketError::WrongTokenAccountMint)]
    pub reporter_token: InterfaceAccount<'info, TokenAccount>,
}

impl ReportFaults<'_> {
    /// Last epoch this report settles.
    pub fn settle_through(&self) -> Result<u64> {
        let deal = &self.deal;
        require!(deal.state == DealState::Active, MarketError::DealNotActive);
        let closed = self
            .vault
            .market
            .last_closed_epoch(Clock::get()?.slot)
            .ok_or(MarketError::NothingToReport)?;
        let through = closed.min(deal.end_epoch - 1);
        require!(through > deal.settled_through, MarketError::NothingToReport);
        Ok(through)
    }

    pub fn validate(&self) -> Result<()> {
        self.settle_through().map(|_| ())
    }
}

/// Anyone settles a deal's closed, unproven epochs as faults: the provider is
/// slashed, the reporter earns the bounty, the client is refunded.
#[access_control(ctx.accounts.validate())]
pub fn handler(mut ctx: Context<ReportFaults>) -> Result<()> {
    let through = ctx.accounts.settle_through()?;
    let accounts = &mut ctx.accounts;
    let deal_key = accounts.deal.key();
    let provider_key = accounts.provider.key();
    let outcome =
        settlement::settle_faults(&mut accounts.deal, &mut accounts.provider, through, true)?;
    accounts.deal.invariant()?;
    accounts.provider.invariant()?;
    accounts
        .vault
        .pay_out(&accounts.reporter_token, outcome.bounty)?;
    let reporter = accounts.reporter.key();
    emit_cpi!(FaultsSettled {
        deal: deal_key,
        provider: provider_key,
        settled_by: reporter,
        first_epoch: outcome.first_epoch,
        last_epoch: outcome.last_epoch,
        epochs: outcome.epochs,
        slashed: outcome.slashed,
        bounty: outcome.bounty,
        refunded_to_client: outcome.refunded_to_client,
    });
    if let Some(t) = outcome.terminated {
        emit_cpi!(DealTerminated {
            deal: deal_key,
            provider: provider_key,
            epoch: t.epoch,
            escrow_refunded: t.escrow_refunded,
            collateral_released: t.collateral_released,
        });
    }
    Ok(())
}
