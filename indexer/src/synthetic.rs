//! Recorded transactions of a synthetic market, encoded exactly as the program
//! emits its events (`emit_cpi!` data: tag, discriminator, Borsh fields), in slots
//! of the epochs they belong to. Used by the tests and by `cairn-indexer bench`.
use crate::model::RecordedTx;
use anchor_lang::Event;
use cairn_chain::{events::EVENT_IX_TAG, Pubkey};
use storage_market::events as ev;

/// `emit_cpi!` instruction data of `event`.
pub fn data(event: &impl Event) -> Vec<u8> {
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
    /// Epochs run after acceptance (`1 ..= epochs`); each is settled in the next.
    pub epochs: u64,
    /// Providers `0, fail_every, 2 × fail_every, …` skip their proof sessions of
    /// odd epochs (0: none do).
    pub fail_every: u64,
    /// Epochs `void_every, 2 × void_every, …` are not opened (0: all are).
    pub void_every: u64,
}

impl Shape {
    /// Provider `p` proves none of epoch `epoch`.
    pub fn fails(&self, p: u64, epoch: u64) -> bool {
        self.fail_every > 0 && p.is_multiple_of(self.fail_every) && epoch % 2 == 1
    }

    /// Nobody opens epoch `epoch`.
    pub fn void(&self, epoch: u64) -> bool {
        self.void_every > 0 && epoch.is_multiple_of(self.void_every)
    }

    /// Providers whose deals are accepted (the last one's stay proposed).
    pub fn accepting(&self) -> u64 {
        self.providers.saturating_sub(1)
    }
}

/// What the synthetic market must index to, for the tests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expected {
    pub transactions: u64,
    pub events: u64,
    pub providers: u64,
    pub deals: u64,
    pub active_deals: u64,
    /// Epoch records: opened epochs, and void ones with proofs owed.
    pub epochs: u64,
    pub sessions: u64,
    pub failed_epochs: u64,
    pub void_epochs: u64,
    pub settled_proven: u64,
    pub settled_failed: u64,
    pub settled_void: u64,
    pub paid: u64,
    pub refunded: u64,
    pub penalties: u64,
    pub closed_until: u64,
}

/// Slots per epoch of the synthetic market (room for a million transactions in
/// one epoch).
pub const EPOCH_SLOTS: u64 = 1 << 24;
pub const SHARD_BYTES: u64 = 1 << 20;
pub const PRICE: u64 = 100;
pub const COLLATERAL: u64 = 5_000;
/// Penalty per failed epoch (10% of the collateral).
pub const SLASH: u64 = 500;
pub const SAMPLES_PER_EPOCH: u16 = 16;

pub fn deal_key(provider: u64, i: u64) -> Pubkey {
    key(3, (provider << 32) | i)
}

pub fn dataset_id(provider: u64, i: u64) -> [u8; 32] {
    let mut id = [0u8; 32];
    id[0] = 9;
    id[1..9].copy_from_slice(&((provider << 32) | (i / 6)).to_be_bytes());
    id
}

/// The market's account as the chain would hold it (its mint `key(10, 2)`),
/// with `epoch_slots` per epoch.
pub fn market_account(epoch_slots: u64) -> (Pubkey, storage_market::state::Market) {
    let params = storage_market::state::MarketParams {
        epoch_slots,
        collateral_per_mib: 50,
        slash_bps: 1_000,
        accept_timeout_epochs: 2,
        response_slots: epoch_slots,
        max_shard_bytes: 1 << 30,
        samples_per_epoch: SAMPLES_PER_EPOCH,
        jail_failures: 3,
        jail_window: 10,
    };
    (
        key(10, 0),
        storage_market::state::Market {
            authority: key(10, 1),
            mint: key(10, 2),
            token_program: key(10, 3),
            vault: key(10, 4),
            params,
            bump: 255,
            vault_bump: 255,
        },
    )
}

/// Transaction `n` of series `series` (signatures differ across series), at
/// `slot`, with a block time as a real RPC gives it (400 ms slots from
/// [`SYNTHETIC_GENESIS_TIME`]).
fn recorded(series: u8, n: u64, slot: u64, events: Vec<Vec<u8>>) -> RecordedTx {
    let mut sig = [0u8; 64];
    sig[0] = series;
    sig[1..9].copy_from_slice(&n.to_be_bytes());
    RecordedTx {
        signature: bs58::encode(sig).into_string(),
        slot,
        failed: false,
        block_time: Some(SYNTHETIC_GENESIS_TIME + (slot * 2 / 5) as i64),
        events,
    }
}

/// Epochs `first .. first + epochs` of a long-running market, one transaction
/// each: the epoch opened and proven by providers `0 .. provers` (for the
/// time-series benchmark: many epochs on top of a store of many deals).
pub fn epoch_stream(first: u64, epochs: u64, provers: u64) -> Vec<RecordedTx> {
    (first..first + epochs)
        .map(|epoch| {
            let start = epoch * EPOCH_SLOTS;
            let mut events = vec![data(&ev::EpochOpened {
                epoch,
                seed: [epoch as u8; 32],
                seed_slot: start + 1,
                opened_slot: start + 2,
                opener: key(6, 0),
                deadline_slot: start + EPOCH_SLOTS,
                samples_per_epoch: SAMPLES_PER_EPOCH,
            })];
            events.extend((0..provers).map(|p| {
                data(&ev::EpochProven {
                    provider: key(1, p),
                    epoch,
                    samples: SAMPLES_PER_EPOCH,
                    draws: u32::from(SAMPLES_PER_EPOCH),
                    set_len: 1,
                })
            }));
            recorded(1, epoch, start + 2, events)
        })
        .collect()
}

/// Unix time of slot 0 of the synthetic market (2024-01-01T00:00:00Z).
pub const SYNTHETIC_GENESIS_TIME: i64 = 1_704_067_200;

/// The market's transactions, oldest first, with what they index to. In epoch 0
/// the market is created, providers register and deals are proposed; deals of
/// every provider but the last are accepted (running from epoch 1 for
/// `epochs + 1` epochs). In each epoch `e` of `1 ..= epochs` the epoch is opened
/// (unless void), each provider proves it (unless it fails it), and every accepted
/// deal's epoch `e - 1` is settled; epoch `epochs` is settled in epoch
/// `epochs + 1`, which closes it.
pub fn market(shape: Shape) -> (Vec<RecordedTx>, Expected) {
    let mut txs = Vec::new();
    let mut exp = Expected::default();
    let mut slot = 1u64;
    let mut push = |events: Vec<Vec<u8>>, slot: &mut u64, exp: &mut Expected| {
        exp.transactions += 1;
        exp.events += events.len() as u64;
        txs.push(recorded(0, txs.len() as u64, *slot, events));
        *slot += 1;
    };
    push(
        vec![data(&ev::MarketInitialized {
            market: key(10, 0),
            authority: key(10, 1),
            mint: key(10, 2),
            epoch_slots: EPOCH_SLOTS,
        })],
        &mut slot,
        &mut exp,
    );
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
            &mut slot,
            &mut exp,
        );
        exp.providers += 1;
    }
    let accepting = shape.accepting();
    let duration = shape.epochs + 1;
    for p in 0..shape.providers {
        for i in 0..shape.deals_per_provider {
            let deal = deal_key(p, i);
            let mut events = vec![data(&ev::DealProposed {
                deal,
                client: key(5, (p * shape.deals_per_provider + i) % shape.clients.max(1)),
                provider: key(1, p),
                dataset_id: dataset_id(p, i),
                group_id: dataset_id(p, i),
                group: 0,
                shard_index: (i % 6) as u16,
                generation: 0,
                shard_bytes: SHARD_BYTES,
                shard_root: [7; 32],
                price_per_epoch: PRICE,
                duration_epochs: duration,
                escrow: PRICE * duration,
                collateral: COLLATERAL,
            })];
            exp.deals += 1;
            if p < accepting {
                events.push(data(&ev::DealAccepted {
                    deal,
                    provider: key(1, p),
                    start_epoch: 1,
                    end_epoch: 1 + duration,
                    collateral: COLLATERAL,
                    set_index: i as u32,
                }));
                exp.active_deals += 1;
            }
            push(events, &mut slot, &mut exp);
        }
    }
    let owed = accepting > 0 && shape.deals_per_provider > 0;
    let mut collateral_left = vec![COLLATERAL; accepting as usize];
    for epoch in 1..=shape.epochs + 1 {
        slot = slot.max(epoch * EPOCH_SLOTS + 1);
        if epoch <= shape.epochs {
            if shape.void(epoch) {
                if owed {
                    exp.epochs += 1;
                    exp.void_epochs += 1;
                }
            } else {
                let start = epoch * EPOCH_SLOTS;
                push(
                    vec![data(&ev::EpochOpened {
                        epoch,
                        seed: [epoch as u8; 32],
                        seed_slot: start + 1,
                        opened_slot: slot,
                        opener: key(6, 0),
                        deadline_slot: start + EPOCH_SLOTS,
                        samples_per_epoch: SAMPLES_PER_EPOCH,
                    })],
                    &mut slot,
                    &mut exp,
                );
                exp.epochs += 1;
                for p in 0..accepting {
                    if shape.fails(p, epoch) {
                        if shape.deals_per_provider > 0 {
                            exp.failed_epochs += 1;
                        }
                        continue;
                    }
                    let set_len = shape.deals_per_provider as u32;
                    let samples = (SAMPLES_PER_EPOCH as u32).min(set_len);
                    push(
                        vec![data(&ev::EpochProven {
                            provider: key(1, p),
                            epoch,
                            samples: samples as u16,
                            draws: samples,
                            set_len,
                        })],
                        &mut slot,
                        &mut exp,
                    );
                    exp.sessions += 1;
                }
            }
        }
        // Settle the epoch before, now that it is over.
        let settled = epoch - 1;
        if settled == 0 {
            continue;
        }
        for p in 0..accepting {
            let (proven, failed, void) = if shape.void(settled) {
                (0, 0, 1)
            } else if shape.fails(p, settled) {
                (0, 1, 0)
            } else {
                (1, 0, 0)
            };
            for i in 0..shape.deals_per_provider {
                let left = &mut collateral_left[p as usize];
                let penalty = if failed == 1 { SLASH.min(*left) } else { 0 };
                if i + 1 == shape.deals_per_provider {
                    *left -= penalty;
                }
                let e = ev::DealSettled {
                    deal: deal_key(p, i),
                    provider: key(1, p),
                    from_epoch: settled,
                    until_epoch: settled + 1,
                    proven,
                    failed,
                    void,
                    paid: PRICE * proven,
                    refunded: PRICE * (failed + void),
                    penalty,
                };
                exp.settled_proven += proven;
                exp.settled_failed += failed;
                exp.settled_void += void;
                exp.paid += e.paid;
                exp.refunded += e.refunded;
                exp.penalties += penalty;
                push(vec![data(&e)], &mut slot, &mut exp);
            }
        }
    }
    // The newest transaction's epoch is the first not over.
    exp.closed_until = txs.last().map_or(0, |t| t.slot / EPOCH_SLOTS);
    (txs, exp)
}
