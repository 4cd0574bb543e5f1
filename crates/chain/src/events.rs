//! The program's events, read back from transactions.
//!
//! Every state change emits an event with `emit_cpi!`: a self-invocation of the
//! program whose instruction data is Anchor's event tag (`e445a52e51cb9a1d`),
//! the event's 8-byte discriminator and its Borsh fields. The runtime records it
//! as an inner instruction, so `getTransaction` returns it under
//! `meta.innerInstructions` (log events can be truncated; these cannot).
use anchor_lang::{AnchorDeserialize, Discriminator};
use solana_transaction_status_client_types::{
    EncodedTransaction, EncodedTransactionWithStatusMeta, UiInstruction, UiMessage,
    UiParsedInstruction,
};
use storage_market::events as ev;

/// First 8 bytes of every `emit_cpi!` instruction's data.
pub const EVENT_IX_TAG: [u8; 8] = anchor_lang::event::EVENT_IX_TAG.to_le_bytes();

/// Why bytes could not be decoded as an event.
#[derive(Debug, thiserror::Error)]
pub enum EventDecodeError {
    #[error("instruction data does not start with Anchor's event tag")]
    NotAnEvent,
    #[error("unknown event discriminator {0:02x?}")]
    UnknownDiscriminator([u8; 8]),
    #[error("event {event} is malformed: {source}")]
    Malformed {
        event: &'static str,
        source: std::io::Error,
    },
    #[error("inner instruction data is not base58: {0}")]
    Base58(#[from] bs58::decode::Error),
    #[error("transaction has no status metadata (was it fetched with getTransaction?)")]
    NoMeta,
    #[error("transaction could not be decoded, or an instruction names an account index it does not have")]
    UndecodableTransaction,
}

macro_rules! market_events {
    ($($name:ident),* $(,)?) => {
        /// One event of the storage-market program.
        pub enum MarketEvent {
            $($name(ev::$name),)*
        }

        impl MarketEvent {
            /// The event's name, as in the IDL.
            pub fn name(&self) -> &'static str {
                match self {
                    $(MarketEvent::$name(_) => stringify!($name),)*
                }
            }

            /// Decodes the data of an `emit_cpi!` instruction: tag, discriminator, fields.
            pub fn decode(ix_data: &[u8]) -> Result<Self, EventDecodeError> {
                let rest = ix_data
                    .strip_prefix(EVENT_IX_TAG.as_slice())
                    .ok_or(EventDecodeError::NotAnEvent)?;
                $(
                    if let Some(mut fields) = rest.strip_prefix(ev::$name::DISCRIMINATOR) {
                        let event = ev::$name::deserialize(&mut fields).map_err(|source| {
                            EventDecodeError::Malformed { event: stringify!($name), source }
                        })?;
                        if !fields.is_empty() {
                            return Err(EventDecodeError::Malformed {
                                event: stringify!($name),
                                source: std::io::Error::new(
                                    std::io::ErrorKind::InvalidData,
                                    format!("{} trailing bytes", fields.len()),
                                ),
                            });
                        }
                        return Ok(MarketEvent::$name(event));
                    }
                )*
                let mut discriminator = [0u8; 8];
                let n = rest.len().min(8);
                discriminator[..n].copy_from_slice(&rest[..n]);
                Err(EventDecodeError::UnknownDiscriminator(discriminator))
            }
        }
    };
}

market_events!(
    MarketInitialized,
    MarketUpdated,
    ProviderRegistered,
    ProviderUpdated,
    ProviderDeregistered,
    StakeChanged,
    DealProposed,
    DealAccepted,
    DealCancelled,
    EpochOpened,
    EpochProven,
    DealSettled,
    DealFinished,
    DealEnded,
    DealLeftSet,
    ProviderJailed,
    DealClosed,
    EarningsWithdrawn,
);

impl std::fmt::Debug for MarketEvent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The storage-market events of a transaction fetched with `getTransaction`
/// (any encoding), in execution order.
///
/// An instruction that carries the event tag but does not decode is an error
/// (a client built for another version of the program).
pub fn events_in_transaction(
    tx: &EncodedTransactionWithStatusMeta,
) -> Result<Vec<MarketEvent>, EventDecodeError> {
    event_instructions(tx)?
        .iter()
        .map(|data| MarketEvent::decode(data))
        .collect()
}

/// The raw data of every event instruction (`emit_cpi!`) of the program in a
/// transaction fetched with `getTransaction`, in execution order: tag,
/// discriminator, Borsh fields. Inner instructions of other programs, and
/// self-invocations that are not events, are skipped.
pub fn event_instructions(
    tx: &EncodedTransactionWithStatusMeta,
) -> Result<Vec<Vec<u8>>, EventDecodeError> {
    let meta = tx.meta.as_ref().ok_or(EventDecodeError::NoMeta)?;
    let mut keys: Vec<String> = match &tx.transaction {
        EncodedTransaction::Json(ui) => match &ui.message {
            UiMessage::Raw(raw) => raw.account_keys.clone(),
            UiMessage::Parsed(parsed) => parsed
                .account_keys
                .iter()
                .map(|a| a.pubkey.clone())
                .collect(),
        },
        other => other
            .decode()
            .ok_or(EventDecodeError::UndecodableTransaction)?
            .message
            .static_account_keys()
            .iter()
            .map(ToString::to_string)
            .collect(),
    };
    if let Some(loaded) = meta.loaded_addresses.as_ref().map(Clone::clone) {
        keys.extend(loaded.writable);
        keys.extend(loaded.readonly);
    }
    let program = crate::PROGRAM_ID.to_string();
    let mut events = Vec::new();
    let inner = meta.inner_instructions.as_ref().map(Clone::clone);
    for ix in inner.into_iter().flatten().flat_map(|i| i.instructions) {
        let (program_id, data) = match &ix {
            UiInstruction::Compiled(c) => (
                keys.get(usize::from(c.program_id_index))
                    .ok_or(EventDecodeError::UndecodableTransaction)?,
                &c.data,
            ),
            UiInstruction::Parsed(UiParsedInstruction::PartiallyDecoded(p)) => {
                (&p.program_id, &p.data)
            }
            UiInstruction::Parsed(UiParsedInstruction::Parsed(_)) => continue,
        };
        if *program_id != program {
            continue;
        }
        let data = bs58::decode(data).into_vec()?;
        if data.starts_with(&EVENT_IX_TAG) {
            events.push(data);
        }
    }
    Ok(events)
}

#[cfg(test)]
mod tests {
    use super::*;
    use anchor_lang::{prelude::Pubkey, Event};

    #[test]
    fn tag_is_anchors_event_tag() {
        assert_eq!(
            EVENT_IX_TAG,
            [0xe4, 0x45, 0xa5, 0x2e, 0x51, 0xcb, 0x9a, 0x1d]
        );
    }

    fn with_tag(data: Vec<u8>) -> Vec<u8> {
        let mut out = EVENT_IX_TAG.to_vec();
        out.extend(data);
        out
    }

    #[test]
    fn an_event_round_trips_through_its_instruction_data() {
        let event = ev::EpochProven {
            provider: Pubkey::new_unique(),
            epoch: 7,
            samples: 16,
            draws: 17,
            set_len: 100,
        };
        match MarketEvent::decode(&with_tag(event.data())).unwrap() {
            MarketEvent::EpochProven(e) => {
                assert_eq!(
                    (e.provider, e.epoch, e.samples, e.draws, e.set_len),
                    (event.provider, 7, 16, 17, 100)
                )
            }
            other => panic!("decoded as {other:?}"),
        }
    }

    #[test]
    fn untagged_unknown_short_and_long_data_are_refused() {
        let event = ev::EpochOpened {
            epoch: 1,
            seed: [3; 32],
            seed_slot: 2,
            opened_slot: 3,
            opener: Pubkey::new_unique(),
            deadline_slot: 9,
            samples_per_epoch: 4,
        };
        let data = event.data();
        assert!(matches!(
            MarketEvent::decode(&data),
            Err(EventDecodeError::NotAnEvent)
        ));
        let mut unknown = with_tag(data.clone());
        unknown[8] ^= 0xff;
        assert!(matches!(
            MarketEvent::decode(&unknown),
            Err(EventDecodeError::UnknownDiscriminator(_))
        ));
        let full = with_tag(data);
        assert!(matches!(
            MarketEvent::decode(&full[..full.len() - 1]),
            Err(EventDecodeError::Malformed {
                event: "EpochOpened",
                ..
            })
        ));
        let mut long = full.clone();
        long.push(0);
        assert!(matches!(
            MarketEvent::decode(&long),
            Err(EventDecodeError::Malformed {
                event: "EpochOpened",
                ..
            })
        ));
    }
}
