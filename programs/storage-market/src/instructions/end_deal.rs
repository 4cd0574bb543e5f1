use anchor_lang::prelude::*;

use crate::constants::*;
use crate::errors::MarketError;
use crate::events::DealEnded;
use crate::settlement;
use crate::state::{Deal, DealSetPage, DealState, EpochLog, LogBits, Market, ProofLog, Provider};

/// The client ends a deal whose provider failed an epoch of it, so the shard can be
/// placed again at once (a new deal of the next generation).
#[event_cpi]
#[derive(Accounts)]
#[instruction(failed_epoch: u64)]
pub struct EndDeal<'info> {
    pub client: Signer<'info>,
    #[account(seeds = [SEED_MARKET], bump = market.bump)]
    pub market: Box<Account<'info, Market>>,
    pub provider: Box<Account<'info, Provider>>,
    #[account(
        mut,
        has_one = client @ MarketError::WrongClient,
        has_one = provider @ MarketError::WrongProvider,
    )]
    pub deal: Box<Account<'info, Deal>>,
    /// The page holding the deal's set entry, whose end epoch moves.
    #[account(mut)]
    pub deal_set_page: AccountLoader<'info, DealSetPage>,
    /// CHECK: the epoch log page of `failed_epoch`; its address is checked in
    /// `validate` (an absent page reads as all zero).
    pub epoch_log: UncheckedAccount<'info>,
    /// CHECK: the provider's proof log page of `failed_epoch`; its address is
    /// checked in `validate`.
    pub proof_log: UncheckedAccount<'info>,
}

impl EndDeal<'_> {
    pub fn validate(&self, failed_epoch: u64) -> Result<()> {
        let deal = &self.deal;
        require!(deal.state == DealState::Active, MarketError::DealNotActive);
        let now = self.market.epoch_at(Clock::get()?.slot);
        let owed_until = settlement::obligation_end(deal, &self.provider);
        require!(
            failed_epoch >= deal.start_epoch && failed_epoch < owed_until && failed_epoch < now,
            MarketError::NotAFailedEpoch
        );
        let page_no = log_page(failed_epoch).to_le_bytes();
        let (epoch_log, _) = Pubkey::find_program_address(&[SEED_EPOCH_LOG, &page_no], &crate::ID);
        let (proof_log, _) = Pubkey::find_program_address(
            &[SEED_PROOF_LOG, self.provider.key().as_ref(), &page_no],
            &crate::ID,
        );
        require_keys_eq!(self.epoch_log.key(), epoch_log, MarketError::WrongLogPage);
        require_keys_eq!(self.proof_log.key(), proof_log, MarketError::WrongLogPage);
        let page = u64::from(log_page(failed_epoch));
        let opened = LogBits::read::<EpochLog>(&self.epoch_log, EpochLog::BITS_OFFSET)?
            .get(page, failed_epoch)?;
        let proven = LogBits::read::<ProofLog>(&self.proof_log, ProofLog::BITS_OFFSET)?
            .get(page, failed_epoch)?;
        require!(opened && !proven, MarketError::NotAFailedEpoch);
        Ok(())
    }
}

/// The deal runs to the end of the current epoch, the escrow of later epochs returns
/// to the client now, and the collateral left goes to the client when the deal is
/// settled. The set entry ends with the deal (visible from the next epoch).
#[access_control(ctx.accounts.validate(failed_epoch))]
pub fn handler(ctx: Context<EndDeal>, failed_epoch: u64) -> Result<()> {
    let now = ctx.accounts.market.epoch_at(Clock::get()?.slot);
    let provider_key = ctx.accounts.provider.key();
    let deal = &mut ctx.accounts.deal;
    let refunded = settlement::end_early(deal, now)?;
    if deal.in_set {
        let mut page = ctx.accounts.deal_set_page.load_mut()?;
        require_keys_eq!(page.provider, provider_key, MarketError::WrongDealSetPage);
        page.slot_mut(deal.set_index)?.write(deal.set_entry(), now);
    }
    deal.invariant()?;
    let event = DealEnded {
        deal: deal.key(),
        provider: provider_key,
        failed_epoch,
        end_epoch: deal.end_epoch,
        escrow_refunded: refunded,
    };
    emit_cpi!(event);
    Ok(())
}
