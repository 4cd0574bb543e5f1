//! A dataset's deals as the chain holds them. A shard may have several deals, one
//! per placement (`generation` 0 first, one more for each replacement); its **live**
//! deal is the one of highest generation that is neither Terminated nor Cancelled.
use std::collections::BTreeMap;

use anchor_lang::prelude::Pubkey;
use storage_market::constants::NOT_JAILED;
use storage_market::state::{Deal, DealState, Provider};

use crate::context::{Ctx, MarketView};
use crate::epochs::{self, Bits, DealEpochs};
use crate::error::CliError;

/// A deal and its address.
pub type DealAt = (Pubkey, Deal);

/// Every deal of `client` for erasure group `group_id`, by shard index then
/// generation.
pub fn group_deals(
    ctx: &Ctx,
    client: &Pubkey,
    group_id: &[u8; 32],
) -> Result<Vec<DealAt>, CliError> {
    deals_of(ctx, client, cairn_chain::layout::DEAL_GROUP_ID, group_id)
}

/// Every deal of `client` for `dataset` (all its groups), by shard index then
/// generation.
pub fn dataset_deals(
    ctx: &Ctx,
    client: &Pubkey,
    dataset: &[u8; 32],
) -> Result<Vec<DealAt>, CliError> {
    deals_of(ctx, client, cairn_chain::layout::DEAL_DATASET_ID, dataset)
}

/// `client`'s deals whose 32 bytes at `offset` are `id`, sorted.
fn deals_of(
    ctx: &Ctx,
    client: &Pubkey,
    offset: usize,
    id: &[u8; 32],
) -> Result<Vec<DealAt>, CliError> {
    let mut deals = ctx.program_accounts::<Deal>(&[
        (cairn_chain::layout::DEAL_CLIENT, client.as_ref()),
        (offset, id.as_ref()),
    ])?;
    sort(&mut deals);
    Ok(deals)
}

/// A deal's group number; `None` for the index group.
pub fn group_number(d: &Deal) -> Option<u32> {
    (d.group != storage_market::constants::INDEX_GROUP).then_some(d.group)
}

/// Orders deals by shard index, then generation.
pub fn sort(deals: &mut [DealAt]) {
    deals.sort_by_key(|(_, d)| (d.shard_index, d.generation));
}

/// Each shard index's live deal.
pub fn live_deals(deals: &[DealAt]) -> BTreeMap<u16, &DealAt> {
    let mut live: BTreeMap<u16, &DealAt> = BTreeMap::new();
    let may_be_live = |d: &Deal| !matches!(d.state, DealState::Terminated | DealState::Cancelled);
    for deal in deals.iter().filter(|(_, d)| may_be_live(d)) {
        let slot = live.entry(deal.1.shard_index).or_insert(deal);
        if deal.1.generation > slot.1.generation {
            *slot = deal;
        }
    }
    live
}

/// The next free generation of shard `index`: one above every deal of it.
pub fn next_generation(deals: &[DealAt], index: u16) -> u16 {
    deals
        .iter()
        .filter(|(_, d)| d.shard_index == index)
        .map(|(_, d)| d.generation + 1)
        .max()
        .unwrap_or(0)
}

/// A deal state's name, as printed and in JSON.
pub fn state_name(state: DealState) -> &'static str {
    match state {
        DealState::Proposed => "proposed",
        DealState::Active => "active",
        DealState::Completed => "completed",
        DealState::Terminated => "terminated",
        DealState::Cancelled => "cancelled",
    }
}

/// Why a shard is to be replaced (by `cairn repair`), from its live deal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Trouble {
    /// No live deal (its deals terminated or were cancelled, or none).
    NoDeal,
    /// Its provider failed this epoch within the deal (the first such epoch).
    Failed(u64),
    /// Its provider is jailed from this epoch.
    Jailed(u64),
    /// The client already ended the deal (an interrupted repair).
    Ended,
    /// Its proposal was not accepted in time.
    NotAccepted,
    /// Its node says its stored copy failed its check (`ErrorCode::CorruptCopy`).
    CorruptCopy,
}

impl Trouble {
    /// For people; `old` is the shard's latest deal, if any.
    pub fn reason(&self, old: Option<&Deal>) -> String {
        match self {
            Trouble::NoDeal => old.map_or("no deal".into(), |d| state_name(d.state).into()),
            Trouble::Failed(e) => format!("failed epoch {e}"),
            Trouble::Jailed(e) => format!("provider jailed from epoch {e}"),
            Trouble::Ended => "ended by the client".into(),
            Trouble::NotAccepted => "proposal not accepted in time".into(),
            Trouble::CorruptCopy => "its node's stored copy is corrupt".into(),
        }
    }
}

/// What is wrong with shard `index`, if anything: its live deal and its trouble.
/// A deal that ran its agreed term (completed, or past its end) is not replaced.
pub fn trouble<'a>(
    deals: &'a [DealAt],
    view: &DealsView,
    index: u16,
) -> (Option<&'a DealAt>, Option<Trouble>) {
    let Some(at) = live_deals(deals).remove(&index) else {
        return (None, Some(Trouble::NoDeal));
    };
    let d = &at.1;
    let trouble = match d.state {
        DealState::Active => {
            let jailed_from = view.jailed_from(&d.provider);
            if jailed_from != NOT_JAILED {
                Some(Trouble::Jailed(jailed_from))
            } else if d.forfeit {
                Some(Trouble::Ended)
            } else if d.end_epoch <= view.now {
                None
            } else {
                view.epochs(d).first_failed.map(Trouble::Failed)
            }
        }
        // A placement in flight, unless its provider can no longer accept it.
        DealState::Proposed => {
            (view.now > d.proposed_epoch + d.accept_timeout_epochs).then_some(Trouble::NotAccepted)
        }
        // Completed: it ran its term.
        _ => None,
    };
    (Some(at), trouble)
}

/// What the chain says about a set of deals now: the current epoch, their
/// providers, and the bits of every epoch from the earliest deal start to now.
pub struct DealsView {
    pub now: u64,
    pub providers: BTreeMap<Pubkey, Provider>,
    pub bits: Bits,
}

impl DealsView {
    pub fn load(ctx: &Ctx, market: &MarketView, deals: &[DealAt]) -> Result<DealsView, CliError> {
        let now = market.account.epoch_at(ctx.slot()?);
        let mut providers = BTreeMap::new();
        for (_, d) in deals {
            if providers.contains_key(&d.provider) {
                continue;
            }
            if let Some(p) = ctx.fetch::<Provider>("provider", &d.provider)? {
                providers.insert(d.provider, p);
            }
        }
        let first = deals
            .iter()
            .filter(|(_, d)| !matches!(d.state, DealState::Proposed | DealState::Cancelled))
            .map(|(_, d)| d.start_epoch)
            .min()
            .unwrap_or(now)
            .min(now);
        let keys: Vec<Pubkey> = providers.keys().copied().collect();
        let bits = Bits::load(ctx, &keys, first..now + 1)?;
        Ok(DealsView {
            now,
            providers,
            bits,
        })
    }

    /// The epoch `provider` is jailed from (`NOT_JAILED` if it is not, or is gone).
    pub fn jailed_from(&self, provider: &Pubkey) -> u64 {
        self.providers
            .get(provider)
            .map_or(NOT_JAILED, |p| p.jailed_from)
    }

    /// `deal`'s epochs from the bits.
    pub fn epochs(&self, deal: &Deal) -> DealEpochs {
        epochs::deal_epochs(deal, self.jailed_from(&deal.provider), self.now, &self.bits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::epochs::Bits;

    fn deal(shard_index: u16, generation: u16, state: DealState) -> DealAt {
        let mut d = crate::test_support::deal();
        d.shard_index = shard_index;
        d.generation = generation;
        d.state = state;
        (Pubkey::new_unique(), d)
    }

    #[test]
    fn the_live_deal_is_the_highest_generation_not_terminated_or_cancelled() {
        let deals = vec![
            deal(0, 0, DealState::Active),
            deal(1, 0, DealState::Terminated),
            deal(1, 1, DealState::Active),
            deal(1, 2, DealState::Cancelled),
            deal(2, 0, DealState::Active),
            deal(2, 1, DealState::Proposed),
            deal(3, 0, DealState::Terminated),
        ];
        let live = live_deals(&deals);
        let pick: Vec<(u16, u16)> = live
            .values()
            .map(|(_, d)| (d.shard_index, d.generation))
            .collect();
        assert_eq!(pick, [(0, 0), (1, 1), (2, 1)]);
        assert_eq!(next_generation(&deals, 1), 3);
        assert_eq!(next_generation(&deals, 3), 1);
        assert_eq!(next_generation(&deals, 9), 0);
    }

    #[test]
    fn the_first_failed_epoch_jailing_an_early_end_or_a_lapsed_proposal_call_for_repair() {
        // Shards 0..6 of a 4 + 2 dataset, epochs 10..30, now 14; epochs 10..14
        // opened; shard 1's provider failed epoch 12.
        let mut bits = Bits::default();
        let mut providers = std::collections::BTreeMap::new();
        let mut deals: Vec<DealAt> = Vec::new();
        for e in 10..14 {
            bits.mark_opened(e);
        }
        for i in 0..6u16 {
            let mut d = crate::test_support::deal();
            d.shard_index = i;
            for e in (10..14).filter(|e| !(i == 1 && *e == 12)) {
                bits.mark_proven(&d.provider, e);
            }
            let mut p = crate::test_support::provider();
            if i == 2 {
                p.jailed_from = 13;
            }
            providers.insert(d.provider, p);
            deals.push((Pubkey::new_unique(), d));
        }
        // Shard 3: ended by its client; shard 4: its generation 0 terminated and
        // generation 1 proposed in epoch 11, past its 2-epoch accept window;
        // shard 5: the term is over.
        deals[3].1.forfeit = true;
        deals[4].1.state = DealState::Terminated;
        let mut g1 = crate::test_support::deal();
        (g1.shard_index, g1.generation, g1.state, g1.proposed_epoch) =
            (4, 1, DealState::Proposed, 11);
        deals.push((Pubkey::new_unique(), g1));
        deals[5].1.end_epoch = 14;
        let view = DealsView {
            now: 14,
            providers,
            bits,
        };
        let found: Vec<Option<Trouble>> = (0..7).map(|i| trouble(&deals, &view, i).1).collect();
        assert_eq!(
            found,
            [
                None,
                Some(Trouble::Failed(12)),
                Some(Trouble::Jailed(13)),
                Some(Trouble::Ended),
                Some(Trouble::NotAccepted),
                None,
                Some(Trouble::NoDeal),
            ]
        );
        // The replaced shard's next placement is one above its deals.
        assert_eq!(next_generation(&deals, 4), 2);
        assert_eq!(Trouble::Failed(12).reason(None), "failed epoch 12");
        assert_eq!(Trouble::NoDeal.reason(Some(&deals[4].1)), "terminated");
    }
}
