//! Lazy settlement of a deal's epochs: the economic rules, as pure functions over
//! the accounts (see `docs/DESIGN.md`, "Lazy, exact settlement").
//!
//! Each epoch `e` of a deal, from `start_epoch` to its obligation end (its
//! `end_epoch`, or the epoch its provider was jailed from, whichever is first), is:
//! - **void** if the epoch was not opened in time: its price is refunded to the client;
//! - **proven** if the provider's bit for `e` is set: its price goes to the provider;
//! - **failed** otherwise, once `e` is over: its price is refunded to the client and
//!   `penalty = min(collateral × slash_bps / 10⁴, collateral_left)` moves from the
//!   provider's locked stake to the client.
//!
//! The outcome of an epoch depends only on bits that are final once the epoch is
//! over, so settling at any later time, in any number of steps, gives what settling
//! each epoch when it closed gives. When a deal's epochs are all settled it finishes:
//! the collateral left returns to the provider (Completed), unless the provider was
//! jailed before the deal's end or the client ended the deal after a failure, in which
//! case the escrow left and the collateral left go to the client (Terminated).
use anchor_lang::prelude::*;

use crate::constants::BPS_DENOMINATOR;
use crate::errors::MarketError;
use crate::state::{Deal, DealState, Provider};

/// Most epochs one deal settles in one call (bounds the compute of a settlement).
pub const MAX_SETTLE_EPOCHS: u64 = 1024;

/// What an epoch was for a provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EpochOutcome {
    Proven,
    Failed,
    Void,
}

impl EpochOutcome {
    /// The outcome of a closed epoch from its two bits.
    pub fn of(opened: bool, proven: bool) -> Self {
        match (opened, proven) {
            (false, _) => EpochOutcome::Void,
            (true, true) => EpochOutcome::Proven,
            (true, false) => EpochOutcome::Failed,
        }
    }
}

/// What one settlement of one deal did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Settled {
    /// First epoch settled.
    pub from_epoch: u64,
    /// First epoch left unsettled.
    pub until_epoch: u64,
    pub proven: u64,
    pub failed: u64,
    pub void: u64,
    /// Prices paid to the provider's earnings.
    pub paid: u64,
    /// Prices refunded to the client (failed and void epochs).
    pub refunded: u64,
    /// Collateral moved to the client as failed-epoch penalties.
    pub penalty: u64,
}

/// How a finished deal ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Finished {
    pub state: DealState,
    /// Collateral returned to the provider's free stake.
    pub collateral_released: u64,
    /// Collateral given to the client.
    pub collateral_forfeited: u64,
    /// Escrow of epochs after the obligation end, refunded to the client.
    pub escrow_refunded: u64,
}

/// `amount * bps / 10000`, rounded down.
pub fn bps_of(amount: u64, bps: u16) -> Result<u64> {
    let scaled = u128::from(amount)
        .checked_mul(u128::from(bps))
        .ok_or(MarketError::ArithmeticOverflow)?
        / u128::from(BPS_DENOMINATOR);
    u64::try_from(scaled).map_err(|_| error!(MarketError::ArithmeticOverflow))
}

/// First epoch the provider no longer owes for this deal.
pub fn obligation_end(deal: &Deal, provider: &Provider) -> u64 {
    deal.end_epoch.min(provider.jailed_from)
}

fn add(a: &mut u64, b: u64) -> Result<()> {
    *a = a.checked_add(b).ok_or(MarketError::ArithmeticOverflow)?;
    Ok(())
}

/// Settles the deal's epochs from `settled_until` up to (not including) `until`, which
/// must not pass the obligation end; `outcome_of(e)` says what each epoch was.
pub fn settle_epochs(
    deal: &mut Deal,
    provider: &mut Provider,
    until: u64,
    mut outcome_of: impl FnMut(u64) -> Result<EpochOutcome>,
) -> Result<Settled> {
    require!(deal.state == DealState::Active, MarketError::DealNotActive);
    require!(
        until <= obligation_end(deal, provider),
        MarketError::InvariantViolated
    );
    let mut done = Settled {
        from_epoch: deal.settled_until,
        until_epoch: deal.settled_until,
        ..Settled::default()
    };
    let price = deal.price_per_epoch;
    while deal.settled_until < until {
        let epoch = deal.settled_until;
        deal.escrow = deal
            .escrow
            .checked_sub(price)
            .ok_or(MarketError::InvariantViolated)?;
        match outcome_of(epoch)? {
            EpochOutcome::Proven => {
                add(&mut provider.earnings, price)?;
                provider.proofs += 1;
                deal.proven_epochs += 1;
                done.proven += 1;
                add(&mut done.paid, price)?;
            }
            EpochOutcome::Void => {
                add(&mut deal.client_refund, price)?;
                deal.void_epochs += 1;
                done.void += 1;
                add(&mut done.refunded, price)?;
            }
            EpochOutcome::Failed => {
                let penalty = bps_of(deal.collateral, deal.slash_bps)?.min(deal.collateral_left);
                deal.collateral_left -= penalty;
                provider.give_up_collateral(penalty)?;
                add(&mut provider.slashed, penalty)?;
                provider.faults += 1;
                add(&mut deal.client_refund, price)?;
                add(&mut deal.client_refund, penalty)?;
                deal.failed_epochs += 1;
                done.failed += 1;
                add(&mut done.refunded, price)?;
                add(&mut done.penalty, penalty)?;
            }
        }
        deal.settled_until = epoch + 1;
    }
    done.until_epoch = deal.settled_until;
    Ok(done)
}

/// Finishes an active deal whose epochs are settled up to its obligation end, or
/// returns `None` if some are not.
pub fn finish_if_settled(deal: &mut Deal, provider: &mut Provider) -> Result<Option<Finished>> {
    require!(deal.state == DealState::Active, MarketError::DealNotActive);
    let owed_until = obligation_end(deal, provider);
    if deal.settled_until < owed_until {
        return Ok(None);
    }
    let collateral = deal.collateral_left;
    deal.collateral_left = 0;
    let finished = if owed_until < deal.end_epoch || deal.forfeit {
        let escrow_refunded = deal.escrow;
        deal.escrow = 0;
        add(&mut deal.client_refund, escrow_refunded)?;
        add(&mut deal.client_refund, collateral)?;
        provider.give_up_collateral(collateral)?;
        add(&mut provider.forfeited, collateral)?;
        Finished {
            state: DealState::Terminated,
            collateral_released: 0,
            collateral_forfeited: collateral,
            escrow_refunded,
        }
    } else {
        provider.release_collateral(collateral)?;
        Finished {
            state: DealState::Completed,
            collateral_released: collateral,
            collateral_forfeited: 0,
            escrow_refunded: 0,
        }
    };
    provider.finish_deal(deal.shard_bytes)?;
    deal.state = finished.state;
    Ok(Some(finished))
}

/// The client ends an active deal after a failed epoch, in epoch `now`: the deal
/// runs to the end of `now`, the escrow of later epochs is refunded, and the
/// collateral left will go to the client when the deal finishes. Returns the escrow
/// refunded.
pub fn end_early(deal: &mut Deal, now: u64) -> Result<u64> {
    require!(deal.state == DealState::Active, MarketError::DealNotActive);
    let new_end = deal.end_epoch.min(now + 1).max(deal.settled_until);
    let refund = Deal::escrow_for(deal.price_per_epoch, deal.end_epoch - new_end)?;
    deal.escrow = deal
        .escrow
        .checked_sub(refund)
        .ok_or(MarketError::InvariantViolated)?;
    add(&mut deal.client_refund, refund)?;
    deal.end_epoch = new_end;
    deal.forfeit = true;
    Ok(refund)
}
