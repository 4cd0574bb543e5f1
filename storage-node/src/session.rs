//! One proof session, off chain: the planner's draws over the deal-set entries
//! visible at the epoch (`cairn_chain::proving`), packed into transactions, and a
//! sample for each live draw read from the stored shard.
//!
//! A sample is built from the shard whose Merkle root is the drawn *entry's*
//! `shard_root`, not from a deal looked up by set index: the program checks the
//! entry as visible at the epoch, which a removal or an acceptance in the same
//! epoch has already changed for the next one (copy-on-write), so the root is what
//! names the right shard. Every sample is verified against the entry before it is
//! sent, so a damaged shard is reported here instead of by a failed transaction.
//! The prover sends these transactions; `cairn-node bench` times building them.

use crate::{
    chain::ChainView,
    server::Node,
    store::{DealId, RecordState, Store, StoreError},
};
use cairn_chain::{
    proving::{self, PlannedDraw, ProofTx},
    Pubkey,
};
use std::collections::HashMap;
use storage_market::{instructions::ProofSample, state::SetEntry};

/// Stored shards by Merkle root.
#[derive(Debug, Default, Clone)]
pub struct ShardsByRoot(HashMap<[u8; 32], DealId>);

impl ShardsByRoot {
    /// Every stored (root-verified) shard of `store`.
    pub fn from_store(store: &Store) -> Result<ShardsByRoot, StoreError> {
        Ok(ShardsByRoot(
            store
                .records()?
                .into_iter()
                .filter(|(_, r)| r.state == RecordState::Stored)
                .map(|(deal, r)| (r.root, deal))
                .collect(),
        ))
    }

    /// Notes that `deal`'s stored shard has root `root`.
    pub fn insert(&mut self, root: [u8; 32], deal: DealId) {
        self.0.insert(root, deal);
    }

    /// A stored shard with root `root`.
    pub fn get(&self, root: &[u8; 32]) -> Option<&DealId> {
        self.0.get(root)
    }
}

/// Why a session's samples cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// No stored shard has the drawn entry's root.
    #[error("draw {draw} lands on deal-set entry {entry}, whose shard (root {root}) this node does not store")]
    NoShard {
        /// Draw number.
        draw: u32,
        /// Deal-set entry.
        entry: u32,
        /// The entry's shard root (base58).
        root: String,
    },
    /// The stored shard cannot give the segment, or gives one that does not verify.
    #[error("segment {segment} of the shard of deal {deal} (draw {draw}): {reason}")]
    BadSample {
        /// Draw number.
        draw: u32,
        /// The deal whose stored shard was read.
        deal: String,
        /// Segment index.
        segment: u64,
        /// What went wrong.
        reason: String,
    },
}

/// A provider's proof session of one epoch, planned.
#[derive(Debug, Clone)]
pub struct Session {
    /// The epoch proven.
    pub epoch: u64,
    /// The deal-set entries visible at the epoch (`entries[i]` is entry `i`).
    pub entries: Vec<SetEntry>,
    /// Every draw of the session, in order.
    pub plan: Vec<PlannedDraw>,
}

impl Session {
    /// Plans the session of `epoch` under `seed` from the entries visible at it.
    pub fn plan(
        seed: &[u8; 32],
        provider: &Pubkey,
        epoch: u64,
        samples_per_epoch: u16,
        entries: Vec<SetEntry>,
    ) -> Session {
        let plan = proving::plan_session(seed, provider, epoch, samples_per_epoch, &entries);
        Session {
            epoch,
            entries,
            plan,
        }
    }

    /// Whether a deal of the set runs at the epoch, so the provider owes its bit.
    pub fn owed(&self) -> bool {
        self.entries.iter().any(|e| self.epoch < e.end_epoch)
    }

    /// Samples the session proves (live draws).
    pub fn samples_needed(&self) -> usize {
        self.plan.iter().filter(|d| d.live).count()
    }

    /// The transactions proving the draws from `next` on (the session's progress on
    /// chain), with draw indices into [`Session::plan`].
    pub fn transactions(&self, next: usize) -> Vec<ProofTx> {
        let next = next.min(self.plan.len());
        proving::pack_session(&self.plan[next..])
            .into_iter()
            .map(|tx| ProofTx {
                draws: tx.draws.start + next..tx.draws.end + next,
                live: tx.live.into_iter().map(|i| i + next).collect(),
                pages: tx.pages,
            })
            .collect()
    }

    /// The samples of the live draws `live` (indices into the plan), in order, each
    /// read from the stored shard with the drawn entry's root and verified against it.
    pub fn samples<C: ChainView>(
        &self,
        node: &Node<C>,
        shards: &ShardsByRoot,
        live: &[usize],
    ) -> Result<Vec<ProofSample>, SessionError> {
        live.iter()
            .map(|i| {
                let draw = &self.plan[*i];
                let entry = &self.entries[draw.entry as usize];
                let deal = shards
                    .get(&entry.shard_root)
                    .ok_or_else(|| SessionError::NoShard {
                        draw: draw.draw,
                        entry: draw.entry,
                        root: bs58::encode(entry.shard_root).into_string(),
                    })?;
                let bad = |reason: String| SessionError::BadSample {
                    draw: draw.draw,
                    deal: bs58::encode(deal).into_string(),
                    segment: draw.segment,
                    reason,
                };
                let proof = node
                    .proof(deal, draw.segment)
                    .map_err(|e| bad(e.to_string()))?;
                cairn_proof::verify_for_shard(
                    &entry.shard_root,
                    entry.shard_bytes,
                    &proof.segment,
                    draw.segment,
                    &proof.path,
                )
                .map_err(|e| bad(format!("does not verify against the entry: {e}")))?;
                Ok(ProofSample {
                    segment: proof.segment,
                    path: proof.path,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(end: u64, shard_bytes: u64, root: u8) -> SetEntry {
        SetEntry {
            end_epoch: end,
            shard_bytes,
            shard_root: [root; 32],
        }
    }

    #[test]
    fn transactions_from_any_progress_cover_the_rest_of_the_plan_in_order() {
        let provider = Pubkey::new_unique();
        let entries: Vec<SetEntry> = (0..300)
            .map(|i| entry(if i % 3 == 0 { 5 } else { 50 }, 1 << 16, i as u8))
            .collect();
        let session = Session::plan(&[3; 32], &provider, 10, 32, entries);
        assert!(session.owed());
        assert_eq!(session.samples_needed(), 32);
        let all = session.transactions(0);
        assert_eq!(all, proving::pack_session(&session.plan));
        // From a transaction boundary the rest is what was left of the first packing.
        let second = all[1].draws.start;
        assert_eq!(session.transactions(second), all[1..].to_vec());
        // From anywhere, the rest covers every later draw once, in order.
        for next in [1, 7, session.plan.len() - 1, session.plan.len()] {
            let mut at = next;
            for tx in session.transactions(next) {
                assert_eq!(tx.draws.start, at);
                at = tx.draws.end;
                assert!(tx
                    .live
                    .iter()
                    .all(|i| tx.draws.contains(i) && session.plan[*i].live));
            }
            assert_eq!(at, session.plan.len());
        }
    }

    #[test]
    fn a_set_of_ended_deals_owes_nothing() {
        let provider = Pubkey::new_unique();
        let session = Session::plan(&[1; 32], &provider, 10, 4, vec![entry(10, 64, 1)]);
        assert!(!session.owed());
        assert_eq!(session.samples_needed(), 0);
    }
}
