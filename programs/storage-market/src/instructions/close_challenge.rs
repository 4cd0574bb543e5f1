use anchor_lang::prelude::*;

use crate::constants::*;
use crate::errors::MarketError;
use crate::state::Challenge;

#[derive(Accounts)]
pub struct CloseChallenge<'info> {
    /// CHECK: receives the rent; must be the account that opened the epoch.
    #[account(mut, address = challenge.opener)]
    pub opener: UncheckedAccount<'info>,
    #[account(
        mut,
        close = opener,
        seeds = [SEED_CHALLENGE, challenge.epoch.to_le_bytes().as_ref()],
        bump = challenge.bump,
    )]
    pub challenge: Account<'info, Challenge>,
}

impl CloseChallenge<'_> {
    pub fn validate(&self) -> Result<()> {
        require!(
            Clock::get()?.slot >= self.challenge.deadline_slot,
            MarketError::ChallengeStillOpen
        );
        Ok(())
    }
}

/// Anyone closes a challenge whose proof window has passed; the rent returns to
/// its opener. The seed stays in the `EpochOpened` event.
#[access_control(ctx.accounts.validate())]
pub fn handler(ctx: Context<CloseChallenge>) -> Result<()> {
    // Anchor's `close = opener` moves the rent after the handler returns.
    let _ = ctx;
    Ok(())
}
