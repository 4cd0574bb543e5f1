//! What the indexer stores and serves: one record type per entity, as JSON.
//!
//! Addresses are base58 strings, dataset ids and seeds lowercase hex. Fields a
//! program account also holds ("mirrored") are set from events and overwritten
//! by reconciliation with `getProgramAccounts`; `synced_slot` is the slot of the
//! last account snapshot, and events at or before it no longer change mirrored
//! fields (the snapshot already contains them).
use serde::{Deserialize, Serialize};

/// A storage provider (`Provider` account).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderRecord {
    pub address: String,
    pub authority: String,
    pub operator: String,
    pub endpoint: String,
    pub capacity_bytes: u64,
    pub used_bytes: u64,
    pub price_per_mib_epoch: u64,
    pub stake_free: u64,
    pub stake_locked: u64,
    pub earnings: u64,
    pub active_deals: u64,
    /// Epochs proven over all deals.
    pub proofs: u64,
    /// Epochs missed over all deals.
    pub faults: u64,
    /// Collateral slashed over all deals.
    pub slashed: u64,
    pub registered_slot: u64,
    /// Deregistered (the account is closed).
    pub deregistered: bool,
    pub synced_slot: u64,
}

/// Lifecycle of a deal, as the program's `DealState`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DealStatus {
    #[default]
    Proposed,
    Active,
    Completed,
    Terminated,
    Cancelled,
}

impl DealStatus {
    pub const ALL: [DealStatus; 5] = [
        DealStatus::Proposed,
        DealStatus::Active,
        DealStatus::Completed,
        DealStatus::Terminated,
        DealStatus::Cancelled,
    ];

    /// One byte, for the deals-by-state index key.
    pub fn code(self) -> u8 {
        self as u8
    }

    pub fn name(self) -> &'static str {
        match self {
            DealStatus::Proposed => "proposed",
            DealStatus::Active => "active",
            DealStatus::Completed => "completed",
            DealStatus::Terminated => "terminated",
            DealStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.name() == s)
    }
}

impl From<storage_market::state::DealState> for DealStatus {
    fn from(s: storage_market::state::DealState) -> Self {
        use storage_market::state::DealState as S;
        match s {
            S::Proposed => DealStatus::Proposed,
            S::Active => DealStatus::Active,
            S::Completed => DealStatus::Completed,
            S::Terminated => DealStatus::Terminated,
            S::Cancelled => DealStatus::Cancelled,
        }
    }
}

/// One shard of one dataset stored by one provider (`Deal` account).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DealRecord {
    pub address: String,
    pub client: String,
    pub provider: String,
    pub dataset_id: String,
    pub shard_index: u16,
    /// Data shards needed to rebuild the dataset (known from the account only).
    pub k: Option<u16>,
    /// Total shards of the dataset (known from the account only).
    pub n: Option<u16>,
    pub shard_root: String,
    pub shard_bytes: u64,
    pub price_per_epoch: u64,
    pub duration_epochs: u64,
    pub escrow: u64,
    pub collateral: u64,
    pub state: DealStatus,
    pub start_epoch: u64,
    pub end_epoch: u64,
    pub proven_epochs: u64,
    pub total_faults: u64,
    /// Collateral slashed for missed epochs (from `FaultsSettled` events).
    pub slashed: u64,
    /// Paid to the provider for proven epochs (from `ProofAccepted` events).
    pub paid: u64,
    pub proposed_slot: u64,
    /// Closed by the client (the account is gone).
    pub closed: bool,
    pub synced_slot: u64,
}

/// One epoch's challenge and what happened in it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: u64,
    /// SlotHashes entry the challenge seed was taken from (empty until opened).
    pub seed: String,
    pub seed_slot: u64,
    pub opened_slot: u64,
    pub opener: String,
    /// Proofs accepted for this epoch.
    pub proofs: u64,
    /// Deals whose epoch was settled as missed.
    pub faults: u64,
}

/// One accepted proof: a deal's epoch.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProofRecord {
    pub deal: String,
    pub provider: String,
    pub epoch: u64,
    pub paid: u64,
    pub slot: u64,
    pub signature: String,
}

/// One settlement of missed epochs of a deal.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FaultRecord {
    pub deal: String,
    pub provider: String,
    pub settled_by: String,
    pub first_epoch: u64,
    pub last_epoch: u64,
    pub epochs: u64,
    pub slashed: u64,
    pub bounty: u64,
    pub refunded_to_client: u64,
    pub slot: u64,
    pub signature: String,
}

/// One program event, in chain order.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventRecord {
    pub seq: u64,
    pub name: String,
    pub slot: u64,
    pub signature: String,
    /// Position among the transaction's events.
    pub index: u32,
}

/// Where ingestion stands: the newest transaction applied.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub signature: String,
    pub slot: u64,
}

/// Totals kept up to date with every write.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stats {
    pub transactions: u64,
    pub failed_transactions: u64,
    pub events: u64,
    pub providers: u64,
    pub deals: u64,
    pub active_deals: u64,
    /// Bytes of shards in active deals.
    pub stored_bytes: u64,
    pub proofs: u64,
    /// Missed epochs settled.
    pub faults: u64,
    pub slashed: u64,
    pub epochs: u64,
    pub last_slot: u64,
}

/// A transaction as the follower recorded it from `getTransaction`: all the
/// indexer needs to apply it, with no RPC types.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedTx {
    pub signature: String,
    pub slot: u64,
    /// The transaction failed: it changed nothing and emitted no event.
    pub failed: bool,
    /// Data of each `emit_cpi!` event instruction, in execution order.
    pub events: Vec<Vec<u8>>,
}
