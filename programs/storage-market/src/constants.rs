//! Seeds and fixed parameters. Every PDA seed is declared here once; off-chain
//! crates import these constants instead of typing the strings again.

/// `Market` PDA: `[SEED_MARKET]`.
pub const SEED_MARKET: &[u8] = b"market";
/// Market vault token account PDA: `[SEED_VAULT]`, owned by the market PDA.
pub const SEED_VAULT: &[u8] = b"vault";
/// `Provider` PDA: `[SEED_PROVIDER, authority]`.
pub const SEED_PROVIDER: &[u8] = b"provider";
/// `Deal` PDA: `[SEED_DEAL, client, dataset_id, shard_index.to_le_bytes()]`.
pub const SEED_DEAL: &[u8] = b"deal";
/// `Challenge` PDA: `[SEED_CHALLENGE, epoch.to_le_bytes()]`.
pub const SEED_CHALLENGE: &[u8] = b"challenge";

/// Basis-point denominator for `slash_bps` and `bounty_bps`.
pub const BPS_DENOMINATOR: u64 = 10_000;
/// Prices and collateral are quoted per started MiB of shard.
pub const MIB: u64 = 1 << 20;
/// Longest provider endpoint (`host:port`) in bytes.
pub const MAX_ENDPOINT_LEN: usize = 64;
/// A proof with one 64-byte segment and a 26-level path fills a transaction;
/// more samples per transaction do not fit in 1232 bytes.
pub const MAX_SAMPLES_PER_PROOF: u8 = 1;
/// Upper bound on `max_consecutive_faults`, which bounds the work of one settlement.
pub const MAX_CONSECUTIVE_FAULTS_LIMIT: u16 = 1_000;
/// Largest shard a proof can cover: 2^26 segments of 64 bytes (4 GiB).
pub const MAX_SHARD_BYTES_LIMIT: u64 = cairn_proof::MAX_SHARD_BYTES;
/// Largest erasure-coding width a dataset may declare.
pub const MAX_SHARDS_PER_DATASET: u16 = 256;
