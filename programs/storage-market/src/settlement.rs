//! Settlement of a deal's epochs: the economic rules, independent of how an epoch
//! was proven (see `cairn_proof` for the Merkle and seed code).
//!
//! Per missed epoch: `slash = min(collateral * slash_bps / 10000, collateral_left)`
//! leaves the provider's locked stake; `bounty = slash * bounty_bps / 10000` goes
//! to the reporter (zero when the operator settles its own misses); the rest of the
//! slash and that epoch's price are owed to the client. At
//! `max_consecutive_faults` consecutive misses the deal terminates: leftover escrow
//! is owed to the client and leftover collateral returns to free stake.
use anchor_lang::prelude::*;

use crate::constants::BPS_DENOMINATOR;
use crate::errors::MarketError;
use crate::state::{Deal, DealState, Provider};

/// What settling a run of missed epochs did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FaultOutcome {
    pub first_epoch: u64,
    pub last_epoch: u64,
    pub epochs: u64,
    pub slashed: u64,
    /// Tokens to transfer from the vault to the reporter.
    pub bounty: u64,
    /// Slash share and refunded prices credited to `deal.client_refund`.
    pub refunded_to_client: u64,
    /// Set when the run reached `max_consecutive_faults`.
    pub terminated: Option<Termination>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Termination {
    pub epoch: u64,
    pub escrow_refunded: u64,
    pub collateral_released: u64,
}

/// `amount * bps / 10000`, rounded down.
pub fn bps_of(amount: u64, bps: u16) -> Result<u64> {
    let scaled = u128::from(amount)
        .checked_mul(u128::from(bps))
        .ok_or(MarketError::ArithmeticOverflow)?
        / u128::from(BPS_DENOMINATOR);
    u64::try_from(scaled).map_err(|_| error!(MarketError::ArithmeticOverflow))
}

/// Slash for one missed epoch of `deal` (before capping at the collateral left).
pub fn slash_per_epoch(deal: &Deal) -> Result<u64> {
    bps_of(deal.collateral, deal.slash_bps)
}

/// Settles every unsettled epoch up to and including `through` as missed.
/// `with_bounty` is false when the provider's operator settles its own misses.
pub fn settle_faults(
    deal: &mut Deal,
    provider: &mut Provider,
    through: u64,
    with_bounty: bool,
) -> Result<FaultOutcome> {
    require!(deal.state == DealState::Active, MarketError::DealNotActive);
    let last = through.min(deal.end_epoch.saturating_sub(1));
    let mut outcome = FaultOutcome {
        first_epoch: deal.settled_through.saturating_add(1),
        ..FaultOutcome::default()
    };
    while deal.settled_through < last {
        let epoch = deal.settled_through + 1;
        let slash = slash_per_epoch(deal)?.min(deal.collateral_left);
        let bounty = if with_bounty {
            bps_of(slash, deal.bounty_bps)?
        } else {
            0
        };
        let to_client = (slash - bounty)
            .checked_add(deal.price_per_epoch)
            .ok_or(MarketError::ArithmeticOverflow)?;

        deal.escrow = deal
            .escrow
            .checked_sub(deal.price_per_epoch)
            .ok_or(MarketError::InvariantViolated)?;
        deal.collateral_left -= slash;
        deal.client_refund = deal
            .client_refund
            .checked_add(to_client)
            .ok_or(MarketError::ArithmeticOverflow)?;
        deal.settled_through = epoch;
        deal.total_faults += 1;
        deal.consecutive_faults += 1;

        provider.slash_collateral(slash)?;

        outcome.last_epoch = epoch;
        outcome.epochs += 1;
        outcome.slashed += slash;
        outcome.bounty += bounty;
        outcome.refunded_to_client += to_client;

        if deal.consecutive_faults >= deal.max_consecutive_faults {
            outcome.terminated = Some(terminate(deal, provider, epoch)?);
            break;
        }
    }
    Ok(outcome)
}

/// Ends an active deal early: leftover escrow is owed to the client, leftover
/// collateral returns to the provider's free stake, capacity is freed.
fn terminate(deal: &mut Deal, provider: &mut Provider, epoch: u64) -> Result<Termination> {
    let escrow_refunded = deal.escrow;
    let collateral_released = deal.collateral_left;
    deal.client_refund = deal
        .client_refund
        .checked_add(escrow_refunded)
        .ok_or(MarketError::ArithmeticOverflow)?;
    deal.escrow = 0;
    provider.release_collateral(collateral_released)?;
    deal.collateral_left = 0;
    provider.finish_deal(deal.shard_bytes)?;
    deal.state = DealState::Terminated;
    Ok(Termination {
        epoch,
        escrow_refunded,
        collateral_released,
    })
}

/// Marks `epoch` (the next unsettled one) proven and pays its price.
pub fn settle_proof(deal: &mut Deal, provider: &mut Provider, epoch: u64) -> Result<u64> {
    require!(
        deal.settled_through.checked_add(1) == Some(epoch),
        MarketError::InvariantViolated
    );
    let price = deal.price_per_epoch;
    deal.escrow = deal
        .escrow
        .checked_sub(price)
        .ok_or(MarketError::InvariantViolated)?;
    deal.settled_through = epoch;
    deal.proven_epochs += 1;
    deal.consecutive_faults = 0;
    provider.earnings = provider
        .earnings
        .checked_add(price)
        .ok_or(MarketError::ArithmeticOverflow)?;
    provider.proofs += 1;
    Ok(price)
}

/// Completes a deal whose every epoch is settled: releases leftover collateral.
pub fn complete(deal: &mut Deal, provider: &mut Provider) -> Result<u64> {
    require!(deal.state == DealState::Active, MarketError::DealNotActive);
    require!(
        deal.settled_through.checked_add(1) == Some(deal.end_epoch),
        MarketError::UnsettledEpochs
    );
    let released = deal.collateral_left;
    provider.release_collateral(released)?;
    deal.collateral_left = 0;
    provider.finish_deal(deal.shard_bytes)?;
    deal.state = DealState::Completed;
    Ok(released)
}
