//! What each epoch of a deal was, read from the chain's bit pages rather than only
//! from what has been settled (see docs/DESIGN.md, "Lazy, exact settlement").
//!
//! The market's `EpochLog` has a bit per opened epoch, each provider's `ProofLog` a
//! bit per epoch it proved. For a closed epoch `e` of a deal (from its start to
//! `min(end_epoch, provider.jailed_from)`, and before the current epoch): not
//! opened is **void**, opened and proven is **proven**, opened and not proven is
//! **failed**. The bits are final once an epoch is over, so this is exactly what
//! settlement will record, whenever it runs; the deal's counters only cover the
//! epochs before its `settled_until`.
use std::collections::BTreeMap;
use std::ops::Range;

use anchor_lang::prelude::Pubkey;
use anchor_lang::Discriminator;
use serde::Serialize;
use storage_market::constants::{log_page, LOG_PAGE_BYTES, NOT_JAILED};
use storage_market::settlement::{bps_of, EpochOutcome};
use storage_market::state::{get_bit, set_bit, Deal, DealState, EpochLog, ProofLog};

use crate::context::Ctx;
use crate::error::CliError;

/// The bits of one log page.
pub type PageBits = Box<[u8; LOG_PAGE_BYTES]>;

/// Log pages read from the chain. A page that is not here (never created, or not
/// loaded) reads as all zero: nothing opened, nothing proven.
#[derive(Debug, Clone, Default)]
pub struct Bits {
    opened: BTreeMap<u32, PageBits>,
    proven: BTreeMap<(Pubkey, u32), PageBits>,
}

fn bit_of(pages: Option<&PageBits>, epoch: u64) -> bool {
    pages.is_some_and(|bits| get_bit(bits, u64::from(log_page(epoch)), epoch).unwrap_or(false))
}

/// The bits of a log page account of type `T` (discriminator checked), whose bits
/// start `offset` bytes into its data.
fn page_bits<T: Discriminator>(data: &[u8], offset: usize) -> Option<PageBits> {
    if !data.starts_with(T::DISCRIMINATOR) {
        return None;
    }
    let bits: [u8; LOG_PAGE_BYTES] = data.get(offset..offset + LOG_PAGE_BYTES)?.try_into().ok()?;
    Some(Box::new(bits))
}

impl Bits {
    /// Whether `epoch` was opened.
    pub fn opened(&self, epoch: u64) -> bool {
        bit_of(self.opened.get(&log_page(epoch)), epoch)
    }

    /// Whether `provider` proved `epoch`.
    pub fn proven(&self, provider: &Pubkey, epoch: u64) -> bool {
        bit_of(self.proven.get(&(*provider, log_page(epoch))), epoch)
    }

    /// What a closed `epoch` was for `provider`.
    pub fn outcome(&self, provider: &Pubkey, epoch: u64) -> EpochOutcome {
        EpochOutcome::of(self.opened(epoch), self.proven(provider, epoch))
    }

    /// Records that `epoch` was opened (tests and hand-built pages).
    pub fn mark_opened(&mut self, epoch: u64) {
        let page = self
            .opened
            .entry(log_page(epoch))
            .or_insert_with(|| Box::new([0; LOG_PAGE_BYTES]));
        set_bit(page, u64::from(log_page(epoch)), epoch).expect("the epoch's own page");
    }

    /// Records that `provider` proved `epoch` (tests and hand-built pages).
    pub fn mark_proven(&mut self, provider: &Pubkey, epoch: u64) {
        let page = self
            .proven
            .entry((*provider, log_page(epoch)))
            .or_insert_with(|| Box::new([0; LOG_PAGE_BYTES]));
        set_bit(page, u64::from(log_page(epoch)), epoch).expect("the epoch's own page");
    }

    /// Reads the market's epoch log and the proof logs of `providers` for the log
    /// pages covering `epochs`.
    pub fn load(ctx: &Ctx, providers: &[Pubkey], epochs: Range<u64>) -> Result<Bits, CliError> {
        let mut bits = Bits::default();
        if epochs.is_empty() {
            return Ok(bits);
        }
        let pages = log_page(epochs.start)..=log_page(epochs.end - 1);
        let mut wanted: Vec<(Pubkey, Option<Pubkey>, u32)> = Vec::new();
        for page in pages {
            wanted.push((cairn_chain::epoch_log_pda(page), None, page));
            for p in providers {
                wanted.push((cairn_chain::proof_log_pda(p, page), Some(*p), page));
            }
        }
        let keys: Vec<Pubkey> = wanted.iter().map(|(k, _, _)| *k).collect();
        let accounts = ctx.multiple_account_data(&keys)?;
        for ((address, provider, page), account) in wanted.into_iter().zip(accounts) {
            let Some((owner, data)) = account else {
                continue;
            };
            let decoded = match provider {
                None => page_bits::<EpochLog>(&data, EpochLog::BITS_OFFSET),
                Some(_) => page_bits::<ProofLog>(&data, ProofLog::BITS_OFFSET),
            };
            let page_bits = decoded.filter(|_| owner == cairn_chain::PROGRAM_ID).ok_or(
                CliError::BadAccount {
                    what: "log page",
                    address,
                    reason: "not a storage-market log page".into(),
                },
            )?;
            match provider {
                None => bits.opened.insert(page, page_bits),
                Some(p) => bits.proven.insert((p, page), page_bits),
            };
        }
        Ok(bits)
    }
}

/// Epochs by outcome.
#[derive(Serialize, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EpochCounts {
    pub proven: u64,
    pub failed: u64,
    pub void: u64,
}

impl EpochCounts {
    pub fn total(&self) -> u64 {
        self.proven + self.failed + self.void
    }

    fn add(&mut self, outcome: EpochOutcome) {
        match outcome {
            EpochOutcome::Proven => self.proven += 1,
            EpochOutcome::Failed => self.failed += 1,
            EpochOutcome::Void => self.void += 1,
        }
    }
}

/// A deal's epochs as the bits say, next to what is settled, and what its
/// failed epochs and early end owe the client.
#[derive(Serialize, Debug, Clone, Default, PartialEq, Eq)]
pub struct DealEpochs {
    /// Every closed epoch the provider owed, by outcome (settled or not).
    pub closed: EpochCounts,
    /// Those settled on chain (the deal's counters, epochs before `settled_until`).
    pub settled: EpochCounts,
    /// Closed epochs not settled yet.
    pub unsettled: u64,
    /// Epochs still owed, the current one included.
    pub remaining: u64,
    /// First failed epoch within the deal: the client may end the deal with it.
    pub first_failed: Option<u64>,
    /// First epoch the provider no longer owes (the deal's end, or its jailing).
    pub owed_until: u64,
    /// Collateral a failed epoch moves to the client.
    pub penalty_per_failed_epoch: u64,
    /// Collateral owed to the client for the failed epochs (settled or not).
    pub penalties: u64,
    /// Of those, already moved to the client by settlement.
    pub penalties_settled: u64,
    /// Collateral left that goes (or went) to the client because the deal ended
    /// early (its provider jailed, or the client ended it after a failure).
    pub forfeit: u64,
}

/// The epochs the provider of `deal` owes proofs for (closed or not);
/// `jailed_from` is the provider's (`NOT_JAILED` if it is not, or is gone).
pub fn owed_epochs(deal: &Deal, jailed_from: u64) -> Range<u64> {
    let until = match deal.state {
        DealState::Proposed | DealState::Cancelled => return 0..0,
        DealState::Active => deal.end_epoch.min(jailed_from),
        // Finished: settled exactly up to its obligation end.
        DealState::Completed | DealState::Terminated => deal.settled_until,
    };
    deal.start_epoch..until.max(deal.start_epoch)
}

/// The epochs of `deal` from the bits, in epoch `now`; `jailed_from` is its
/// provider's (`NOT_JAILED` if it is not, or is gone).
pub fn deal_epochs(deal: &Deal, jailed_from: u64, now: u64, bits: &Bits) -> DealEpochs {
    if matches!(deal.state, DealState::Proposed | DealState::Cancelled) {
        return DealEpochs::default();
    }
    let owed = owed_epochs(deal, jailed_from);
    let (start, owed_until) = (owed.start, owed.end);
    let closed_until = owed_until.min(now).max(start);
    let mut closed = EpochCounts::default();
    let mut first_failed = None;
    for epoch in start..closed_until {
        let outcome = bits.outcome(&deal.provider, epoch);
        if outcome == EpochOutcome::Failed && first_failed.is_none() {
            first_failed = Some(epoch);
        }
        closed.add(outcome);
    }
    let settled = EpochCounts {
        proven: deal.proven_epochs,
        failed: deal.failed_epochs,
        void: deal.void_epochs,
    };
    let per_epoch = bps_of(deal.collateral, deal.slash_bps).unwrap_or(deal.collateral);
    let penalties_of = |failed: u64| per_epoch.saturating_mul(failed).min(deal.collateral);
    let penalties = penalties_of(closed.failed);
    let penalties_settled = penalties_of(settled.failed);
    let ends_early = deal.forfeit || owed_until < deal.end_epoch;
    let forfeit = match deal.state {
        DealState::Terminated => deal.collateral - penalties_settled,
        DealState::Active if ends_early => deal.collateral - penalties,
        _ => 0,
    };
    DealEpochs {
        closed,
        settled,
        unsettled: closed_until.saturating_sub(deal.settled_until.max(start)),
        remaining: if deal.state == DealState::Active {
            owed_until.saturating_sub(now.max(start))
        } else {
            0
        },
        first_failed,
        owed_until,
        penalty_per_failed_epoch: per_epoch,
        penalties,
        penalties_settled,
        forfeit,
    }
}

/// Whether a deal still stores its shard as agreed: active, running, its provider
/// not jailed, no failed epoch, and not ended by its client.
pub fn is_healthy(deal: &Deal, epochs: &DealEpochs, jailed_from: u64, now: u64) -> bool {
    deal.state == DealState::Active
        && jailed_from == NOT_JAILED
        && epochs.first_failed.is_none()
        && !deal.forfeit
        && now < deal.end_epoch
}

/// What one epoch was for a provider (`cairn provider info`).
#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum ProviderEpoch {
    /// Opened and proven.
    Proven,
    /// Opened, not proven, while a deal of the provider was running: failed.
    Failed,
    /// Opened, not proven, and no known deal was running (nothing owed).
    Idle,
    /// Not opened: nobody is paid or penalised.
    Void,
    /// The current epoch, proven already.
    ProvenSoFar,
    /// The current epoch, not proven yet.
    InProgress,
}

impl ProviderEpoch {
    /// Epoch `epoch` for `provider` in epoch `now`; `owed` says whether one of its
    /// deals was running then.
    pub fn of(bits: &Bits, provider: &Pubkey, epoch: u64, now: u64, owed: bool) -> Self {
        let proven = bits.proven(provider, epoch);
        if epoch >= now {
            return if proven {
                ProviderEpoch::ProvenSoFar
            } else {
                ProviderEpoch::InProgress
            };
        }
        match bits.outcome(provider, epoch) {
            EpochOutcome::Proven => ProviderEpoch::Proven,
            EpochOutcome::Void => ProviderEpoch::Void,
            EpochOutcome::Failed if owed => ProviderEpoch::Failed,
            EpochOutcome::Failed => ProviderEpoch::Idle,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ProviderEpoch::Proven => "proven",
            ProviderEpoch::Failed => "failed",
            ProviderEpoch::Idle => "idle",
            ProviderEpoch::Void => "void",
            ProviderEpoch::ProvenSoFar => "proven (current)",
            ProviderEpoch::InProgress => "in progress",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use storage_market::constants::LOG_PAGE_EPOCHS;

    fn deal(provider: Pubkey, state: DealState, start: u64, end: u64) -> Deal {
        Deal {
            provider,
            state,
            start_epoch: start,
            end_epoch: end,
            settled_until: start,
            duration_epochs: end - start,
            escrow: 100 * (end - start),
            ..crate::test_support::deal()
        }
    }

    /// Epochs 10..20 of a deal; 10..18 opened except 13; `p` proved all but 12 and
    /// 15; another provider proved 12; epoch 18 not opened, 19 opened (now 20).
    fn bits(p: &Pubkey) -> Bits {
        let mut bits = Bits::default();
        for e in (10..18).filter(|e| *e != 13) {
            bits.mark_opened(e);
        }
        bits.mark_opened(19);
        for e in (10..20).filter(|e| ![12, 15].contains(e)) {
            bits.mark_proven(p, e);
        }
        bits.mark_proven(&Pubkey::new_unique(), 12);
        bits
    }

    #[test]
    fn closed_epochs_are_void_proven_or_failed_from_the_bits() {
        let p = Pubkey::new_unique();
        let bits = bits(&p);
        let d = deal(p, DealState::Active, 10, 30);
        let e = deal_epochs(&d, NOT_JAILED, 20, &bits);
        // Void: 13 and 18 (not opened, though 18 has the provider's bit). Failed:
        // 12 and 15 (opened, not proven; another provider's bit does not count).
        assert_eq!(
            e.closed,
            EpochCounts {
                proven: 6,
                failed: 2,
                void: 2
            }
        );
        assert_eq!(e.first_failed, Some(12));
        assert_eq!((e.unsettled, e.remaining, e.owed_until), (10, 10, 30));
        assert_eq!(e.penalty_per_failed_epoch, 9_000);
        assert_eq!(
            (e.penalties, e.penalties_settled, e.forfeit),
            (18_000, 0, 0)
        );
        assert!(!is_healthy(&d, &e, NOT_JAILED, 20));
        // The current epoch is not judged: in epoch 12, nothing failed yet.
        let early = deal_epochs(&d, NOT_JAILED, 12, &bits);
        assert_eq!(early.closed.total(), 2);
        assert_eq!(early.first_failed, None);
        assert!(is_healthy(&d, &early, NOT_JAILED, 12));
    }

    #[test]
    fn the_jailing_and_a_lowered_end_cut_the_owed_epochs() {
        let p = Pubkey::new_unique();
        let bits = bits(&p);
        let d = deal(p, DealState::Active, 10, 30);
        // Jailed from 15: epochs 10..15 only, and the collateral left is forfeit.
        let jailed = deal_epochs(&d, 15, 20, &bits);
        assert_eq!(
            jailed.closed,
            EpochCounts {
                proven: 3,
                failed: 1,
                void: 1
            }
        );
        assert_eq!((jailed.owed_until, jailed.remaining), (15, 0));
        assert_eq!(jailed.forfeit, 90_000 - 9_000);
        assert!(!is_healthy(&d, &jailed, 15, 20));
        // The client ended it after epoch 12 failed, in epoch 12: it runs to 13.
        let mut ended = deal(p, DealState::Active, 10, 30);
        ended.end_epoch = 13;
        ended.forfeit = true;
        let e = deal_epochs(&ended, NOT_JAILED, 20, &bits);
        assert_eq!(
            e.closed,
            EpochCounts {
                proven: 2,
                failed: 1,
                void: 0
            }
        );
        assert_eq!((e.owed_until, e.remaining, e.unsettled), (13, 0, 3));
        assert_eq!(e.forfeit, 81_000);
        // A deal not yet started has nothing closed and all epochs ahead.
        let later = deal(p, DealState::Active, 25, 30);
        let e = deal_epochs(&later, NOT_JAILED, 20, &bits);
        assert_eq!((e.closed.total(), e.remaining, e.unsettled), (0, 5, 0));
        // Proposed: nothing owed at all.
        let proposed = deal(p, DealState::Proposed, 10, 30);
        assert_eq!(
            deal_epochs(&proposed, NOT_JAILED, 20, &bits),
            DealEpochs::default()
        );
    }

    #[test]
    fn settled_epochs_come_from_the_deal_and_finished_deals_end_where_settled() {
        let p = Pubkey::new_unique();
        let bits = bits(&p);
        let mut d = deal(p, DealState::Active, 10, 30);
        // Settled through 14: 10, 11, 14 proven; 12 failed; 13 void.
        d.settled_until = 15;
        (d.proven_epochs, d.failed_epochs, d.void_epochs) = (3, 1, 1);
        d.collateral_left = 81_000;
        let e = deal_epochs(&d, NOT_JAILED, 20, &bits);
        assert_eq!(e.settled.total(), 5);
        assert_eq!(e.unsettled, 5);
        assert_eq!((e.penalties_settled, e.penalties), (9_000, 18_000));
        // Terminated after settling through 17 with 2 failures: the rest of the
        // collateral went to the client.
        d.state = DealState::Terminated;
        d.settled_until = 17;
        d.failed_epochs = 2;
        d.proven_epochs = 4;
        let e = deal_epochs(&d, NOT_JAILED, 20, &bits);
        assert_eq!(e.owed_until, 17);
        assert_eq!(e.closed, d_counts(4, 2, 1));
        assert_eq!(e.forfeit, 90_000 - 18_000);
        assert_eq!((e.unsettled, e.remaining), (0, 0));
        // Penalties never exceed the collateral.
        d.failed_epochs = 40;
        assert_eq!(
            deal_epochs(&d, NOT_JAILED, 20, &bits).penalties_settled,
            90_000
        );
    }

    fn d_counts(proven: u64, failed: u64, void: u64) -> EpochCounts {
        EpochCounts {
            proven,
            failed,
            void,
        }
    }

    #[test]
    fn bits_on_a_later_page_and_provider_epochs() {
        let p = Pubkey::new_unique();
        let mut bits = Bits::default();
        let e = 3 * LOG_PAGE_EPOCHS + 5;
        bits.mark_opened(e);
        assert!(bits.opened(e) && !bits.opened(e - LOG_PAGE_EPOCHS) && !bits.opened(e + 1));
        assert_eq!(
            ProviderEpoch::of(&bits, &p, e, e + 1, true),
            ProviderEpoch::Failed
        );
        assert_eq!(
            ProviderEpoch::of(&bits, &p, e, e + 1, false),
            ProviderEpoch::Idle
        );
        assert_eq!(
            ProviderEpoch::of(&bits, &p, e + 1, e + 2, true),
            ProviderEpoch::Void
        );
        assert_eq!(
            ProviderEpoch::of(&bits, &p, e, e, true),
            ProviderEpoch::InProgress
        );
        bits.mark_proven(&p, e);
        assert_eq!(
            ProviderEpoch::of(&bits, &p, e, e + 1, true),
            ProviderEpoch::Proven
        );
        assert_eq!(
            ProviderEpoch::of(&bits, &p, e, e, true),
            ProviderEpoch::ProvenSoFar
        );
        // A page account's bits are read after its discriminator and header.
        let mut data = EpochLog::DISCRIMINATOR.to_vec();
        data.resize(EpochLog::BITS_OFFSET, 0);
        let mut page = [0u8; LOG_PAGE_BYTES];
        page[0] = 0b10;
        data.extend_from_slice(&page);
        let read = page_bits::<EpochLog>(&data, EpochLog::BITS_OFFSET).unwrap();
        assert!(bit_of(Some(&read), 1) && !bit_of(Some(&read), 0));
        assert!(page_bits::<ProofLog>(&data, ProofLog::BITS_OFFSET).is_none());
    }
}
