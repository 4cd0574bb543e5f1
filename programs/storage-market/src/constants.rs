//! Seeds and fixed parameters. Every PDA seed is declared here once; off-chain
//! crates import these constants instead of typing the strings again.

/// `Market` PDA: `[SEED_MARKET]`.
pub const SEED_MARKET: &[u8] = b"market";
/// Market vault token account PDA: `[SEED_VAULT]`, owned by the market PDA.
pub const SEED_VAULT: &[u8] = b"vault";
/// `Provider` PDA: `[SEED_PROVIDER, authority]`.
pub const SEED_PROVIDER: &[u8] = b"provider";
/// `Deal` PDA: `[SEED_DEAL, client, group_id, shard_index LE, generation LE]`.
pub const SEED_DEAL: &[u8] = b"deal";
/// `Challenge` PDA (the epoch being proven): `[SEED_CHALLENGE]`.
pub const SEED_CHALLENGE: &[u8] = b"challenge";
/// `DealSet` PDA (a provider's set header and proof session): `[SEED_DEAL_SET, provider]`.
pub const SEED_DEAL_SET: &[u8] = b"deal_set";
/// `DealSetPage` PDA: `[SEED_DEAL_SET_PAGE, provider, page u32 LE]`.
pub const SEED_DEAL_SET_PAGE: &[u8] = b"deal_set_page";
/// `ProofLog` PDA (a provider's proven-epoch bits): `[SEED_PROOF_LOG, provider, page u32 LE]`.
pub const SEED_PROOF_LOG: &[u8] = b"proof_log";
/// `EpochLog` PDA (the market's opened-epoch bits): `[SEED_EPOCH_LOG, page u32 LE]`.
pub const SEED_EPOCH_LOG: &[u8] = b"epoch_log";

/// Basis-point denominator for `slash_bps`.
pub const BPS_DENOMINATOR: u64 = 10_000;
/// Prices and collateral are quoted per started MiB of shard.
pub const MIB: u64 = 1 << 20;
/// Longest provider endpoint (`host:port`) in bytes.
pub const MAX_ENDPOINT_LEN: usize = 64;
/// Largest shard a proof can cover: 2^26 segments of 64 bytes (4 GiB).
pub const MAX_SHARD_BYTES_LIMIT: u64 = cairn_proof::MAX_SHARD_BYTES;
/// Largest erasure-coding width a dataset may declare.
pub const MAX_SHARDS_PER_DATASET: u16 = 256;
/// `Deal::group` of the index group (the one holding the dataset manifest).
pub const INDEX_GROUP: u32 = u32::MAX;

/// Entries per `DealSetPage`: 64 entries of 104 bytes keep a page under the 10 KiB a
/// program may allocate in one instruction.
pub const DEAL_SET_PAGE_ENTRIES: usize = 64;
/// Epochs per `ProofLog` / `EpochLog` page: one bit each, 1 KiB per page.
pub const LOG_PAGE_EPOCHS: u64 = 8192;
/// Bytes of bits in a log page.
pub const LOG_PAGE_BYTES: usize = (LOG_PAGE_EPOCHS / 8) as usize;
/// A proof session ends after `DRAW_FACTOR × target` draws even if draws landed on
/// ended deals, so a set made mostly of ended entries cannot stall or dilute it
/// without limit.
pub const DRAW_FACTOR: u32 = 4;
/// Upper bound on `samples_per_epoch`.
pub const MAX_SAMPLES_PER_EPOCH: u16 = 256;
/// Upper bound on `jail_window` (epochs).
pub const MAX_JAIL_WINDOW: u16 = 1_000;
/// Upper bound on `accept_timeout_epochs`.
pub const MAX_ACCEPT_TIMEOUT_EPOCHS: u64 = 10_000;
/// The seed slot of an epoch is the first slot with a SlotHashes entry at or after
/// `epoch_start + SEED_SLOT_OFFSET`.
pub const SEED_SLOT_OFFSET: u64 = 1;
/// Shortest epoch: the seed slot, a slot to open in, and a slot to prove in.
pub const MIN_EPOCH_SLOTS: u64 = 4;
/// `Provider::jailed_from` of a provider that is not jailed.
pub const NOT_JAILED: u64 = u64::MAX;

/// The page of a log holding `epoch`'s bit.
pub const fn log_page(epoch: u64) -> u32 {
    (epoch / LOG_PAGE_EPOCHS) as u32
}

/// The page of a deal set holding entry `index`.
pub const fn deal_set_page(index: u32) -> u32 {
    index / DEAL_SET_PAGE_ENTRIES as u32
}
