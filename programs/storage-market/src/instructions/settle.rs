use anchor_lang::prelude::*;

use crate::constants::*;
use crate::errors::MarketError;
use crate::events::{DealFinished, DealSettled};
use crate::settlement::{self, EpochOutcome, MAX_SETTLE_EPOCHS};
use crate::state::{Deal, DealState, EpochLog, LogBits, Market, ProofLog, Provider};

/// Settles deals of one provider from the bits of one log page. Anyone may send it;
/// the deals to settle follow as writable remaining accounts.
#[event_cpi]
#[derive(Accounts)]
#[instruction(page: u32)]
pub struct Settle<'info> {
    #[account(seeds = [SEED_MARKET], bump = market.bump)]
    pub market: Box<Account<'info, Market>>,
    #[account(mut, seeds = [SEED_PROVIDER, provider.authority.as_ref()], bump = provider.bump)]
    pub provider: Box<Account<'info, Provider>>,
    /// CHECK: the market's epoch log page `page`, read as all zero if it was never
    /// created (then no epoch of it was opened); its address is checked.
    #[account(seeds = [SEED_EPOCH_LOG, page.to_le_bytes().as_ref()], bump)]
    pub epoch_log: UncheckedAccount<'info>,
    /// CHECK: the provider's proof log page `page`, read as all zero if it was never
    /// created (then the provider proved no epoch of it); its address is checked.
    #[account(
        seeds = [SEED_PROOF_LOG, provider.key().as_ref(), page.to_le_bytes().as_ref()],
        bump,
    )]
    pub proof_log: UncheckedAccount<'info>,
}

/// Settles every closed epoch in page `page` of each given deal (at most
/// `MAX_SETTLE_EPOCHS` per deal per call), and finishes the deals whose epochs are
/// all settled. The result does not depend on when or in how many calls this runs.
pub fn handler<'info>(ctx: Context<'info, Settle<'info>>, page: u32) -> Result<()> {
    let now = ctx.accounts.market.epoch_at(Clock::get()?.slot);
    let page_start = u64::from(page) * LOG_PAGE_EPOCHS;
    let page_end = page_start + LOG_PAGE_EPOCHS;
    let opened = LogBits::read::<EpochLog>(&ctx.accounts.epoch_log, EpochLog::BITS_OFFSET)?;
    let proven = LogBits::read::<ProofLog>(&ctx.accounts.proof_log, ProofLog::BITS_OFFSET)?;
    let provider_key = ctx.accounts.provider.key();
    let provider = &mut ctx.accounts.provider;
    let page = u64::from(page);
    for info in ctx.remaining_accounts {
        let mut deal = Box::new(Account::<Deal>::try_from(info)?);
        require_keys_eq!(deal.provider, provider_key, MarketError::WrongProvider);
        require!(deal.state == DealState::Active, MarketError::DealNotActive);
        let owed_until = settlement::obligation_end(&deal, provider);
        let until = owed_until
            .min(now)
            .min(page_end)
            .min(deal.settled_until.saturating_add(MAX_SETTLE_EPOCHS));
        let settled = if deal.settled_until < until {
            require!(deal.settled_until >= page_start, MarketError::WrongLogPage);
            Some(settlement::settle_epochs(
                &mut deal,
                provider,
                until,
                |epoch| {
                    Ok(EpochOutcome::of(
                        opened.get(page, epoch)?,
                        proven.get(page, epoch)?,
                    ))
                },
            )?)
        } else {
            None
        };
        let finished = settlement::finish_if_settled(&mut deal, provider)?;
        deal.invariant()?;
        deal.exit(&crate::ID)?;
        if let Some(s) = settled {
            emit_cpi!(DealSettled {
                deal: deal.key(),
                provider: provider_key,
                from_epoch: s.from_epoch,
                until_epoch: s.until_epoch,
                proven: s.proven,
                failed: s.failed,
                void: s.void,
                paid: s.paid,
                refunded: s.refunded,
                penalty: s.penalty,
            });
        }
        if let Some(f) = finished {
            emit_cpi!(DealFinished {
                deal: deal.key(),
                provider: provider_key,
                terminated: f.state == DealState::Terminated,
                proven_epochs: deal.proven_epochs,
                failed_epochs: deal.failed_epochs,
                void_epochs: deal.void_epochs,
                collateral_released: f.collateral_released,
                collateral_forfeited: f.collateral_forfeited,
                escrow_refunded: f.escrow_refunded,
            });
        }
    }
    provider.invariant()?;
    Ok(())
}
