//! A provider's proof session, planned off chain exactly as the program walks it
//! (`storage_market::instructions::prove`), and packed into transactions.
//!
//! The session of epoch `e` draws `j = 0, 1, …`: draw `j` lands on entry
//! `cairn_proof::draw(seed, provider, j).entry(len_e)` of the deal set as visible at
//! `e`; an entry whose deal has ended (`e >= end_epoch`) is skipped, a live one needs
//! a sample of segment `.segment(segments)`. The session is complete after
//! `target = min(samples_per_epoch, len_e)` samples or `DRAW_FACTOR × target` draws.
//!
//! Each proof transaction is a v0 transaction whose accounts, except the operator
//! and the program ids, come from the provider's address lookup table
//! ([`lookup_table_addresses`]), with a `SetComputeUnitPrice` and a
//! `SetComputeUnitLimit` instruction. [`proof_tx_len`] is its exact serialized size,
//! and [`pack_session`] fills each transaction up to [`PACKET_BYTES`].
//!
//! A table, and addresses added to it, must be used only once the slot that added
//! them is rooted (finalized): agave 4.2's leader resolves lookup tables in its root
//! bank and drops a transaction whose table it cannot resolve there, so the RPC node
//! resends it for about 30 slots (measured on the local network: a proof sent in slot
//! 23 landed in slot 50). A node therefore creates its table at registration and
//! extends it well before a new deal-set or proof-log page is needed.
use std::ops::Range;

use storage_market::constants::{deal_set_page, log_page, DRAW_FACTOR};
use storage_market::state::{DealSetPage, SetEntry};

use solana_address_lookup_table_interface::{instruction as alt, state::AddressLookupTable};
use solana_compute_budget_interface::ComputeBudgetInstruction;
use solana_message::{v0, AddressLookupTableAccount, CompileError};

use crate::{
    challenge_pda, deal_set_page_pda, deal_set_pda, event_authority, proof_log_pda, Instruction,
    Pubkey,
};

/// Compute units a proof transaction asks for: a sample of depth 26 costs about
/// 4,000 CU of hashing; the rest is account loading and the session's bookkeeping.
pub const PROOF_COMPUTE_UNITS: u32 = 200_000;

/// Most addresses one `ExtendLookupTable` instruction adds and still fits a
/// transaction.
pub const EXTEND_BATCH: usize = 20;

/// Largest serialized transaction Solana accepts.
pub const PACKET_BYTES: usize = 1232;

/// One draw of a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlannedDraw {
    /// Draw number `j`.
    pub draw: u32,
    /// Deal-set entry it lands on.
    pub entry: u32,
    /// The entry's deal is running at the epoch: the draw needs a sample.
    pub live: bool,
    /// Segment index to reveal (meaningful when `live`).
    pub segment: u64,
    /// Depth of the entry's Merkle tree (the sample's path length).
    pub depth: u32,
}

/// Every draw of a provider's session of `epoch`, in order, from the deal-set
/// entries visible at `epoch` (`entries[i]` is entry `i`).
pub fn plan_session(
    seed: &[u8; 32],
    provider: &Pubkey,
    epoch: u64,
    samples_per_epoch: u16,
    entries: &[SetEntry],
) -> Vec<PlannedDraw> {
    let len = entries.len() as u64;
    let target = u32::try_from(entries.len())
        .unwrap_or(u32::MAX)
        .min(u32::from(samples_per_epoch));
    let mut draws = Vec::new();
    let mut proven = 0u32;
    let mut j = 0u32;
    while proven < target && j < DRAW_FACTOR * target {
        let d = cairn_proof::draw(seed, &provider.to_bytes(), j);
        let entry_index = d.entry(len) as u32;
        let entry = &entries[entry_index as usize];
        let live = epoch < entry.end_epoch;
        let segments = cairn_proof::segment_count(entry.shard_bytes);
        draws.push(PlannedDraw {
            draw: j,
            entry: entry_index,
            live,
            segment: d.segment(segments),
            depth: cairn_proof::depth(entry.shard_bytes),
        });
        proven += u32::from(live);
        j += 1;
    }
    draws
}

/// One proof transaction of a session: the draws it covers (indices into the plan),
/// the live ones among them (which need samples, in order) and the deal-set pages
/// they land on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProofTx {
    pub draws: Range<usize>,
    pub live: Vec<usize>,
    pub pages: Vec<u32>,
}

/// Exact serialized length of a proof transaction with samples of `depths` and
/// `pages` deal-set pages: one signature; static keys operator, storage-market and
/// compute-budget programs; `SetComputeUnitPrice` and `SetComputeUnitLimit`; the
/// `prove` instruction (7 accounts + pages, all but the operator and the program
/// from one lookup table).
pub fn proof_tx_len(depths: &[u32], pages: usize) -> usize {
    fn compact(n: usize) -> usize {
        match n {
            0..=0x7f => 1,
            0x80..=0x3fff => 2,
            _ => 3,
        }
    }
    let samples: usize = depths.iter().map(|d| 64 + 4 + 32 * *d as usize).sum();
    let data = 8 + 8 + 4 + samples;
    let accounts = 7 + pages;
    let prove = 1 + compact(accounts) + accounts + compact(data) + data;
    let price = 1 + 1 + 1 + 9;
    let limit = 1 + 1 + 1 + 5;
    let static_keys = 3;
    let writable = 2; // deal set, proof log
    let readonly = 3 + pages; // provider, challenge, event authority, pages
    let lookups = 1 + 32 + compact(writable) + writable + compact(readonly) + readonly;
    let message =
        1 + 3 + compact(static_keys) + 32 * static_keys + 32 + 1 + price + limit + prove + lookups;
    1 + 64 + message
}

/// Packs a planned session into transactions of at most [`PACKET_BYTES`], in draw
/// order. A transaction covers consecutive draws and carries the pages of all of
/// them; it also covers the ended draws that follow on pages it already carries,
/// because the program walks on through them.
pub fn pack_session(plan: &[PlannedDraw]) -> Vec<ProofTx> {
    let mut txs = Vec::new();
    let mut at = 0;
    while at < plan.len() {
        let mut tx = ProofTx {
            draws: at..at,
            live: Vec::new(),
            pages: Vec::new(),
        };
        let mut depths: Vec<u32> = Vec::new();
        let mut end = at;
        while end < plan.len() {
            let d = &plan[end];
            let page = deal_set_page(d.entry);
            let new_page = !tx.pages.contains(&page);
            let mut try_depths = depths.clone();
            if d.live {
                try_depths.push(d.depth);
            }
            let len = proof_tx_len(&try_depths, tx.pages.len() + usize::from(new_page));
            if len > PACKET_BYTES && end > at {
                break;
            }
            if new_page {
                tx.pages.push(page);
            }
            if d.live {
                tx.live.push(end);
            }
            depths = try_depths;
            end += 1;
        }
        // The program continues through ended draws whose page is already here.
        while end < plan.len()
            && !plan[end].live
            && tx.pages.contains(&deal_set_page(plan[end].entry))
        {
            end += 1;
        }
        tx.draws = at..end;
        at = end;
        txs.push(tx);
    }
    txs
}

/// The addresses a provider's proof transactions read from its lookup table, for
/// proving `epoch` with `pages` deal-set pages: provider, deal set, challenge,
/// proof-log page, event authority, then every page.
pub fn lookup_table_addresses(provider: &Pubkey, epoch: u64, pages: u32) -> Vec<Pubkey> {
    let mut keys = vec![
        *provider,
        deal_set_pda(provider),
        challenge_pda(),
        proof_log_pda(provider, log_page(epoch)),
        event_authority(),
    ];
    keys.extend((0..pages).map(|page| deal_set_page_pda(provider, page)));
    keys
}

/// Instructions creating a provider's address lookup table (owned by `authority`, the
/// operator, which pays) from a recent slot, filled with the first addresses; more
/// follow with [`extend_lookup_table_ixs`]. Returns the table's address.
pub fn create_lookup_table_ixs(
    authority: &Pubkey,
    recent_slot: u64,
    addresses: &[Pubkey],
) -> (Pubkey, Vec<Instruction>) {
    let (create, table) = alt::create_lookup_table(*authority, *authority, recent_slot);
    let mut ixs = vec![create];
    ixs.extend(extend_lookup_table_ixs(&table, authority, addresses));
    (table, ixs)
}

/// Instructions adding `addresses` to `table`, [`EXTEND_BATCH`] at a time (send each
/// in its own transaction).
pub fn extend_lookup_table_ixs(
    table: &Pubkey,
    authority: &Pubkey,
    addresses: &[Pubkey],
) -> Vec<Instruction> {
    addresses
        .chunks(EXTEND_BATCH)
        .map(|chunk| alt::extend_lookup_table(*table, *authority, Some(*authority), chunk.to_vec()))
        .collect()
}

/// The addresses held by a lookup table account's data.
pub fn lookup_table_contents(data: &[u8]) -> Option<Vec<Pubkey>> {
    AddressLookupTable::deserialize(data)
        .ok()
        .map(|table| table.addresses.to_vec())
}

/// The instructions of one proof transaction: a priority fee of `micro_lamports` per
/// compute unit, [`PROOF_COMPUTE_UNITS`], and `prove`.
pub fn proof_instructions(prove: Instruction, micro_lamports: u64) -> [Instruction; 3] {
    [
        ComputeBudgetInstruction::set_compute_unit_price(micro_lamports),
        ComputeBudgetInstruction::set_compute_unit_limit(PROOF_COMPUTE_UNITS),
        prove,
    ]
}

/// The v0 message of one proof transaction ([`proof_instructions`]), with every
/// account the table holds read through it. Sign it with the operator.
pub fn proof_message(
    operator: &Pubkey,
    prove: Instruction,
    micro_lamports: u64,
    table: &AddressLookupTableAccount,
    blockhash: solana_message::Hash,
) -> Result<v0::Message, CompileError> {
    let ixs = proof_instructions(prove, micro_lamports);
    v0::Message::try_compile(operator, &ixs, std::slice::from_ref(table), blockhash)
}

/// Serialized length of `ixs` as a legacy transaction paid and signed by `payer`
/// alone. A proof of a small shard fits one even without a lookup table, which a
/// node uses while its table's newest addresses are not rooted yet.
pub fn legacy_tx_len(payer: &Pubkey, ixs: &[Instruction]) -> usize {
    1 + 64
        + solana_message::Message::new(ixs, Some(payer))
            .serialize()
            .len()
}

/// Decodes a `DealSetPage` account's data (discriminator checked).
pub fn decode_deal_set_page(data: &[u8]) -> Option<DealSetPage> {
    use anchor_lang::Discriminator;
    let size = std::mem::size_of::<DealSetPage>();
    if data.len() < 8 + size || data[..8] != *DealSetPage::DISCRIMINATOR {
        return None;
    }
    Some(bytemuck::pod_read_unaligned(&data[8..8 + size]))
}

/// The entries of a deal set visible at `epoch`, from its length at `epoch` and its
/// pages (in page order).
pub fn entries_at(len: u32, pages: &[DealSetPage], epoch: u64) -> Option<Vec<SetEntry>> {
    (0..len)
        .map(|i| {
            let page = pages.get(deal_set_page(i) as usize)?;
            Some(page.slot(i).ok()?.at(epoch))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use storage_market::instructions::ProofSample;

    fn entry(end: u64, shard_bytes: u64) -> SetEntry {
        SetEntry {
            end_epoch: end,
            shard_bytes,
            shard_root: [0; 32],
        }
    }

    #[test]
    fn a_session_needs_min_of_samples_and_entries_and_skips_ended_deals() {
        let provider = Pubkey::new_unique();
        let entries: Vec<SetEntry> = (0..500)
            .map(|i| entry(if i % 2 == 0 { 100 } else { 5 }, 1 << 20))
            .collect();
        let plan = plan_session(&[7; 32], &provider, 10, 16, &entries);
        assert_eq!(plan.iter().filter(|d| d.live).count(), 16);
        assert!(plan.iter().any(|d| !d.live), "half the entries have ended");
        for d in &plan {
            assert_eq!(d.live, d.entry % 2 == 0);
        }
        let one = plan_session(&[7; 32], &provider, 10, 16, &entries[..1]);
        assert_eq!(one.len(), 1);
        assert!(plan_session(&[7; 32], &provider, 10, 16, &[]).is_empty());
        // All ended: the session stops after DRAW_FACTOR × target draws.
        let ended: Vec<SetEntry> = (0..3).map(|_| entry(5, 64)).collect();
        assert_eq!(plan_session(&[7; 32], &provider, 10, 16, &ended).len(), 12);
    }

    #[test]
    fn proof_tx_len_is_the_serialized_length_of_a_real_message() {
        let operator = Pubkey::new_unique();
        let provider = Pubkey::new_unique();
        let epoch = 9;
        for (depths, pages) in [
            (vec![26u32], 1u32),
            (vec![10, 10], 2),
            (vec![], 1),
            (vec![3, 3, 3], 3),
        ] {
            let samples = depths
                .iter()
                .map(|d| ProofSample {
                    segment: [0; 64],
                    path: vec![[0; 32]; *d as usize],
                })
                .collect();
            let page_list: Vec<u32> = (0..pages).collect();
            let ix = crate::MarketIx {
                mint: Pubkey::default(),
                token_program: Pubkey::default(),
            }
            .prove_ix(&operator, &provider, epoch, samples, &page_list);
            let table = AddressLookupTableAccount {
                key: Pubkey::new_unique(),
                addresses: lookup_table_addresses(&provider, epoch, pages),
            };
            let message = proof_message(&operator, ix, 1_000, &table, Default::default()).unwrap();
            let tx = solana_message::VersionedMessage::V0(message);
            let len = 1 + 64 + bincode_len(&tx);
            assert_eq!(
                len,
                proof_tx_len(&depths, pages as usize),
                "{depths:?} {pages}"
            );
        }
    }

    fn bincode_len(message: &solana_message::VersionedMessage) -> usize {
        message.serialize().len()
    }

    #[test]
    fn a_small_proof_fits_a_legacy_transaction_and_the_largest_does_not() {
        let operator = Pubkey::new_unique();
        let provider = Pubkey::new_unique();
        let ix = |depth: usize| {
            let sample = ProofSample {
                segment: [0; 64],
                path: vec![[0; 32]; depth],
            };
            crate::MarketIx {
                mint: Pubkey::default(),
                token_program: Pubkey::default(),
            }
            .prove_ix(&operator, &provider, 9, vec![sample], &[0])
        };
        assert!(legacy_tx_len(&operator, &proof_instructions(ix(18), 1)) <= PACKET_BYTES);
        assert!(legacy_tx_len(&operator, &proof_instructions(ix(26), 1)) > PACKET_BYTES);
    }

    #[test]
    fn the_largest_proof_fits_and_packing_respects_the_packet() {
        // Depth 26 (4 GiB): one sample per transaction, with room to spare.
        assert!(proof_tx_len(&[26], 1) <= PACKET_BYTES);
        assert!(proof_tx_len(&[26, 26], 2) > PACKET_BYTES);
        let provider = Pubkey::new_unique();
        let entries: Vec<SetEntry> = (0..1000).map(|_| entry(100, 4 << 30)).collect();
        let plan = plan_session(&[1; 32], &provider, 10, 32, &entries);
        let txs = pack_session(&plan);
        assert_eq!(txs.len(), 32, "one sample of depth 26 per transaction");
        // Small shards: several samples share a transaction.
        let small: Vec<SetEntry> = (0..1000).map(|_| entry(100, 4096)).collect();
        let plan = plan_session(&[1; 32], &provider, 10, 32, &small);
        let txs = pack_session(&plan);
        assert!(txs.len() < 32);
        let mut next = 0;
        for tx in &txs {
            assert_eq!(tx.draws.start, next);
            next = tx.draws.end;
            let depths: Vec<u32> = tx.live.iter().map(|i| plan[*i].depth).collect();
            assert!(proof_tx_len(&depths, tx.pages.len()) <= PACKET_BYTES);
            for i in tx.draws.clone() {
                assert!(tx.pages.contains(&deal_set_page(plan[i].entry)));
            }
        }
        assert_eq!(next, plan.len());
    }
}
