//! Recorded transactions of a synthetic market, encoded exactly as the program
//! emits its events (`emit_cpi!` data: tag, discriminator, Borsh fields). Used
//! by the tests and by `cairn-indexer bench`.
use crate::model::RecordedTx;
use anchor_lang::Event;
use cairn_chain::{events::EVENT_IX_TAG, Pubkey};
use storage_market::events as ev;

fn data(event: &impl Event) -> Vec<u8> {
    let mut out = EVENT_IX_TAG.to_vec();
    out.extend(event.data());
    out
}

/// A deterministic address from a label and a number.
pub fn key(label: u8, n: u64) -> Pubkey {
    let mut bytes = [0u8; 32];
    bytes[0] = label;
    bytes[1..9].copy_from_slice(&n.to_be_bytes());
    Pubkey::new_from_array(bytes)
}

/// Shape of the synthetic market.
#[derive(Clone, Copy, Debug)]
pub struct Shape {
    pub providers: u64,
    pub clients: u64,
    /// Deals per provider; deal `i` of provider `p` is shard `i % 6` of dataset `i / 6`.
    pub deals_per_provider: u64,
    /// Epochs proven or faulted after acceptance.
    pub epochs: u64,
    /// Every `fault_every`-th deal misses odd epochs (0: none).
    pub fault_every: u64,
}

/// What the synthetic market must index to, for the tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expected {
    pub transactions: u64,
    pub events: u64,
    pub providers: u64,
    pub deals: u64,
    pub active_deals: u64,
    pub proofs: u64,
    pub faults: u64,
    pub epochs: u64,
}

pub const SHARD_BYTES: u64 = 1 << 20;
pub const PRICE: u64 = 100;
pub const COLLATERAL: u64 = 5_000;
pub const SLASH: u64 = 500;

pub fn deal_key(provider: u64, i: u64) -> Pubkey {
    key(3, (provider << 32) | i)
}

pub fn dataset_id(provider: u64, i: u64) -> [u8; 32] {
    let mut id = [0u8; 32];
    id[0] = 9;
    id[1..9].copy_from_slice(&((provider << 32) | (i / 6)).to_be_bytes());
    id
}

/// The market's transactions, oldest first, with what they index to. Deals
/// of the last provider stay proposed; the others are accepted and settled
/// (proven, or missed when `fault_every` says so) for `epochs` epochs.
pub fn market(shape: Shape) -> (Vec<RecordedTx>, Expected) {
    let mut txs = Vec::new();
    let mut exp = Expected::default();
    let mut slot = 1u64;
    let mut push = |events: Vec<Vec<u8>>, exp: &mut Expected| {
        exp.transactions += 1;
        exp.events += events.len() as u64;
        let n = txs.len() as u64;
        let mut sig = [0u8; 64];
        sig[..8].copy_from_slice(&n.to_be_bytes());
        txs.push(RecordedTx {
            signature: bs58::encode(sig).into_string(),
            slot,
            failed: false,
            events,
        });
        slot += 1;
    };
    for p in 0..shape.providers {
        let provider = key(1, p);
        push(
            vec![
                data(&ev::ProviderRegistered {
                    provider,
                    authority: key(2, p),
                    operator: key(4, p),
                    endpoint: format!("10.0.{}.{}:7000", p / 256, p % 256),
                    capacity_bytes: 1 << 40,
                    price_per_mib_epoch: PRICE,
                }),
                data(&ev::StakeChanged {
                    provider,
                    delta: 1 << 40,
                    stake_free: 1 << 40,
                    stake_locked: 0,
                }),
            ],
            &mut exp,
        );
        exp.providers += 1;
    }
    let accepting = shape.providers.saturating_sub(1);
    for p in 0..shape.providers {
        for i in 0..shape.deals_per_provider {
            let deal = deal_key(p, i);
            let mut events = vec![data(&ev::DealProposed {
                deal,
                client: key(5, (p * shape.deals_per_provider + i) % shape.clients.max(1)),
                provider: key(1, p),
                dataset_id: dataset_id(p, i),
                shard_index: (i % 6) as u16,
                shard_bytes: SHARD_BYTES,
                shard_root: [7; 32],
                price_per_epoch: PRICE,
                duration_epochs: shape.epochs + 1,
                escrow: PRICE * (shape.epochs + 1),
                collateral: COLLATERAL,
            })];
            exp.deals += 1;
            if p < accepting {
                events.push(data(&ev::DealAccepted {
                    deal,
                    provider: key(1, p),
                    start_epoch: 1,
                    end_epoch: 2 + shape.epochs,
                    collateral: COLLATERAL,
                }));
                exp.active_deals += 1;
            }
            push(events, &mut exp);
        }
    }
    for epoch in 1..=shape.epochs {
        push(
            vec![data(&ev::EpochOpened {
                epoch,
                seed: [epoch as u8; 32],
                seed_slot: epoch * 10,
                opened_slot: epoch * 10 + 1,
                opener: key(6, 0),
            })],
            &mut exp,
        );
        exp.epochs += 1;
        for p in 0..accepting {
            for i in 0..shape.deals_per_provider {
                let deal = deal_key(p, i);
                let faulty = shape.fault_every > 0 && i % shape.fault_every == 0 && epoch % 2 == 1;
                let event = if faulty {
                    exp.faults += 1;
                    data(&ev::FaultsSettled {
                        deal,
                        provider: key(1, p),
                        settled_by: key(6, 1),
                        first_epoch: epoch,
                        last_epoch: epoch,
                        epochs: 1,
                        slashed: SLASH,
                        bounty: SLASH / 5,
                        refunded_to_client: PRICE + SLASH - SLASH / 5,
                    })
                } else {
                    exp.proofs += 1;
                    data(&ev::ProofAccepted {
                        deal,
                        provider: key(1, p),
                        epoch,
                        paid: PRICE,
                    })
                };
                push(vec![event], &mut exp);
            }
        }
    }
    (txs, exp)
}
