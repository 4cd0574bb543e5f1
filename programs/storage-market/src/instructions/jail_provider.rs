use anchor_lang::prelude::*;

use crate::constants::*;
use crate::errors::MarketError;
use crate::events::ProviderJailed;
use crate::state::{Deal, DealState, EpochLog, LogBits, Market, ProofLog, Provider};

/// Anyone jails a provider that failed `jail_failures` epochs within the last
/// `jail_window` closed epochs. The evidence is the epochs (all on log page `page`
/// or `page + 1`) and, for each, a deal of the provider that was running then (so the
/// provider owed a proof), as remaining accounts in the same order.
#[event_cpi]
#[derive(Accounts)]
#[instruction(page: u32)]
pub struct JailProvider<'info> {
    pub caller: Signer<'info>,
    #[account(seeds = [SEED_MARKET], bump = market.bump)]
    pub market: Box<Account<'info, Market>>,
    #[account(mut, seeds = [SEED_PROVIDER, provider.authority.as_ref()], bump = provider.bump)]
    pub provider: Box<Account<'info, Provider>>,
    /// CHECK: epoch log page `page`; address checked, absent reads as zero.
    #[account(seeds = [SEED_EPOCH_LOG, page.to_le_bytes().as_ref()], bump)]
    pub epoch_log: UncheckedAccount<'info>,
    /// CHECK: epoch log page `page + 1`; address checked, absent reads as zero.
    #[account(seeds = [SEED_EPOCH_LOG, (page + 1).to_le_bytes().as_ref()], bump)]
    pub epoch_log_next: UncheckedAccount<'info>,
    /// CHECK: the provider's proof log page `page`; address checked.
    #[account(
        seeds = [SEED_PROOF_LOG, provider.key().as_ref(), page.to_le_bytes().as_ref()],
        bump,
    )]
    pub proof_log: UncheckedAccount<'info>,
    /// CHECK: the provider's proof log page `page + 1`; address checked.
    #[account(
        seeds = [SEED_PROOF_LOG, provider.key().as_ref(), (page + 1).to_le_bytes().as_ref()],
        bump,
    )]
    pub proof_log_next: UncheckedAccount<'info>,
}

/// Jails the provider from the current epoch: it takes no new deals, and each of its
/// deals ends there, its collateral left going to its client at settlement.
pub fn handler<'info>(
    ctx: Context<'info, JailProvider<'info>>,
    page: u32,
    epochs: Vec<u64>,
) -> Result<()> {
    let accounts = &ctx.accounts;
    let params = accounts.market.params;
    let now = accounts.market.epoch_at(Clock::get()?.slot);
    let provider_key = accounts.provider.key();
    require!(!accounts.provider.is_jailed(), MarketError::ProviderJailed);
    require!(
        epochs.len() == usize::from(params.jail_failures)
            && ctx.remaining_accounts.len() == epochs.len()
            && epochs.windows(2).all(|w| w[0] < w[1]),
        MarketError::NotJailable
    );
    let window_start = now.saturating_sub(u64::from(params.jail_window));
    let pages = [u64::from(page), u64::from(page) + 1];
    let opened = [
        LogBits::read::<EpochLog>(&accounts.epoch_log, EpochLog::BITS_OFFSET)?,
        LogBits::read::<EpochLog>(&accounts.epoch_log_next, EpochLog::BITS_OFFSET)?,
    ];
    let proven = [
        LogBits::read::<ProofLog>(&accounts.proof_log, ProofLog::BITS_OFFSET)?,
        LogBits::read::<ProofLog>(&accounts.proof_log_next, ProofLog::BITS_OFFSET)?,
    ];
    for (epoch, info) in epochs.iter().copied().zip(ctx.remaining_accounts) {
        require!(
            epoch >= window_start && epoch < now,
            MarketError::NotJailable
        );
        let which = pages
            .iter()
            .position(|p| *p == epoch / LOG_PAGE_EPOCHS)
            .ok_or(MarketError::WrongLogPage)?;
        require!(
            opened[which].get(pages[which], epoch)? && !proven[which].get(pages[which], epoch)?,
            MarketError::NotJailable
        );
        let deal = Box::new(Account::<Deal>::try_from(info)?);
        require_keys_eq!(deal.provider, provider_key, MarketError::WrongProvider);
        require!(
            !matches!(deal.state, DealState::Proposed | DealState::Cancelled)
                && epoch >= deal.start_epoch
                && epoch < deal.end_epoch,
            MarketError::NotJailable
        );
    }
    let provider = &mut ctx.accounts.provider;
    provider.jailed_from = now;
    provider.invariant()?;
    let event = ProviderJailed {
        provider: provider_key,
        epoch: now,
        failed_epochs: epochs,
        jailed_by: ctx.accounts.caller.key(),
    };
    emit_cpi!(event);
    Ok(())
}
