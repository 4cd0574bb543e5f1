//! What the indexer stores and serves: one record type per entity, as JSON.
//!
//! Addresses are base58 strings, dataset ids and seeds lowercase hex. Fields a
//! program account also holds ("mirrored") are set from events and overwritten
//! by reconciliation with `getProgramAccounts`; `synced_slot` is the slot of the
//! last account snapshot, and events at or before it no longer change mirrored
//! fields (the snapshot already contains them). Every other field ("history") is
//! built from events alone and never overwritten by a snapshot.
//!
//! Proving v2 (see `docs/DESIGN.md`): each provider proves each epoch once, for all
//! its deals. What epoch `e` was for provider `P` ([`ProviderEpochRecord`]) is
//! - **proven** as soon as `P`'s session of `e` completed (`EpochProven`, or its
//!   bit in the provider's `ProofLog` page);
//! - **failed** once `e` is over, if `e` was opened, `P` owed a proof (a deal of
//!   `P` ran in `e`: `start_epoch <= e < end`, the end being the deal's end epoch,
//!   or its provider's jailing if earlier) and `P` did not prove it;
//! - **void** once `e` is over, if `P` owed a proof and nobody opened `e`.
//!
//! "Once `e` is over" means: the indexer has applied a transaction of a later epoch
//! (every node opens every epoch, so that is normally the next epoch's opening).
//! [`Stats::closed_until`] is the first epoch not known to be over. Settlement
//! reads the same bits, so a deal's settled epochs agree with these outcomes.
use serde::{Deserialize, Serialize};

/// The market (`Market` account; `epoch_slots` also from `MarketInitialized`).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketRecord {
    pub address: String,
    pub authority: String,
    pub mint: String,
    /// Slots per epoch: `epoch = slot / epoch_slots` (never changes).
    pub epoch_slots: u64,
    /// The current parameters (from `MarketUpdated` or the account; `None` until
    /// either was seen).
    pub params: Option<MarketParamsRecord>,
    /// Decimals of the mint (its account; `None` until read): a token amount
    /// `n` in base units is `n / 10^decimals` tokens.
    #[serde(default)]
    pub decimals: Option<u8>,
    pub synced_slot: u64,
}

/// `MarketParams`, as JSON.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketParamsRecord {
    pub epoch_slots: u64,
    pub collateral_per_mib: u64,
    pub slash_bps: u16,
    pub accept_timeout_epochs: u64,
    pub response_slots: u64,
    pub max_shard_bytes: u64,
    pub samples_per_epoch: u16,
    pub jail_failures: u16,
    pub jail_window: u16,
}

impl From<storage_market::state::MarketParams> for MarketParamsRecord {
    fn from(p: storage_market::state::MarketParams) -> Self {
        MarketParamsRecord {
            epoch_slots: p.epoch_slots,
            collateral_per_mib: p.collateral_per_mib,
            slash_bps: p.slash_bps,
            accept_timeout_epochs: p.accept_timeout_epochs,
            response_slots: p.response_slots,
            max_shard_bytes: p.max_shard_bytes,
            samples_per_epoch: p.samples_per_epoch,
            jail_failures: p.jail_failures,
            jail_window: p.jail_window,
        }
    }
}

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
    /// Deal-epochs settled as proven (paid), over all deals.
    pub proofs: u64,
    /// Deal-epochs settled as failed, over all deals.
    pub faults: u64,
    /// Collateral paid to clients as failed-epoch penalties.
    pub slashed: u64,
    /// Collateral paid to clients because deals ended early (jail, or a client
    /// ending a deal after a failure).
    pub forfeited: u64,
    /// First epoch the provider is jailed from (`None`: not jailed).
    pub jailed_from: Option<u64>,
    pub registered_slot: u64,
    /// Deregistered (the account is closed).
    pub deregistered: bool,
    /// History: epochs this provider proved (completed proof sessions).
    pub sessions: u64,
    /// History: epochs this provider owed a proof for and failed.
    pub failed_epochs: u64,
    /// History: epochs this provider owed a proof for that nobody opened.
    pub void_epochs: u64,
    /// History: the jailing (`ProviderJailed`), if any.
    pub jail: Option<JailRecord>,
    pub synced_slot: u64,
}

/// Why and by whom a provider was jailed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct JailRecord {
    /// Jailed from this epoch: its deals end here.
    pub epoch: u64,
    /// The failed epochs named as evidence.
    pub failed_epochs: Vec<u64>,
    pub jailed_by: String,
    pub slot: u64,
    pub signature: String,
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

/// One shard of one dataset stored by one provider, in one placement
/// (`generation`): a repaired shard is a new deal at a new address.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DealRecord {
    pub address: String,
    pub client: String,
    pub provider: String,
    pub dataset_id: String,
    /// The shard's erasure group (BLAKE3 of its group manifest, hex).
    pub group_id: String,
    /// The group's number in the dataset (`u32::MAX`: the index group).
    pub group: u32,
    pub shard_index: u16,
    /// Placement of the shard: 0 first, one more for each replacement.
    pub generation: u16,
    /// Data shards needed to rebuild the dataset (known from the account only).
    pub k: Option<u16>,
    /// Total shards of the dataset (known from the account only).
    pub n: Option<u16>,
    pub shard_root: String,
    pub shard_bytes: u64,
    pub price_per_epoch: u64,
    pub duration_epochs: u64,
    /// Escrow not yet paid to the provider or refunded.
    pub escrow: u64,
    pub collateral: u64,
    /// Collateral still locked (collateral minus penalties; zero once finished).
    pub collateral_left: u64,
    /// Tokens owed to the client, paid out when the deal is closed.
    pub client_refund: u64,
    pub state: DealStatus,
    /// First epoch the provider must prove.
    pub start_epoch: u64,
    /// First epoch after the deal (earlier if the client ended it).
    pub end_epoch: u64,
    /// First epoch not yet settled.
    pub settled_until: u64,
    /// Settled epochs by outcome.
    pub proven_epochs: u64,
    pub failed_epochs: u64,
    pub void_epochs: u64,
    /// The client ended the deal after a failure: the collateral left goes to it.
    pub forfeit: bool,
    /// The deal's entry in its provider's deal set, while it has one.
    pub in_set: bool,
    pub set_index: u32,
    /// History: first epoch the provider no longer owes proofs for this deal (its
    /// end epoch, or its provider's jailing if earlier); 0 until accepted.
    pub owed_until: u64,
    /// History: paid to the provider for proven epochs (`DealSettled`).
    pub paid: u64,
    /// History: prices of failed and void epochs refunded to the client (`DealSettled`).
    pub refunded: u64,
    /// History: collateral paid to the client for failed epochs (`DealSettled`).
    pub penalty: u64,
    /// History: the client ended the deal after a failed epoch (`DealEnded`).
    pub ending: Option<DealEnding>,
    /// History: every epoch settled and the collateral released or forfeited
    /// (`DealFinished`).
    pub finish: Option<DealFinish>,
    pub proposed_slot: u64,
    /// Closed by the client (the account is gone).
    pub closed: bool,
    pub synced_slot: u64,
}

/// The client ended a deal after its provider failed an epoch of it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DealEnding {
    pub failed_epoch: u64,
    /// The deal now ends at the start of this epoch.
    pub end_epoch: u64,
    pub escrow_refunded: u64,
    pub slot: u64,
    pub signature: String,
}

/// Every epoch of a deal settled.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DealFinish {
    /// Ended early (jail, or ended by the client): collateral left to the client.
    pub terminated: bool,
    pub collateral_released: u64,
    pub collateral_forfeited: u64,
    pub escrow_refunded: u64,
    pub slot: u64,
    pub signature: String,
}

/// One settlement of a deal: epochs `from_epoch .. until_epoch` (`DealSettled`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SettlementRecord {
    pub deal: String,
    pub provider: String,
    pub from_epoch: u64,
    pub until_epoch: u64,
    pub proven: u64,
    pub failed: u64,
    pub void: u64,
    /// To the provider's earnings.
    pub paid: u64,
    /// Prices of failed and void epochs, to the client.
    pub refunded: u64,
    /// Collateral to the client for failed epochs.
    pub penalty: u64,
    pub slot: u64,
    pub signature: String,
}

/// What an epoch was for a provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Proven,
    Failed,
    Void,
}

impl Outcome {
    pub const ALL: [Outcome; 3] = [Outcome::Proven, Outcome::Failed, Outcome::Void];

    /// One byte, for the outcomes-by-epoch index key.
    pub fn code(self) -> u8 {
        self as u8
    }

    /// One character, for an epoch map (`P`, `F`, `V`).
    pub fn letter(self) -> char {
        match self {
            Outcome::Proven => 'P',
            Outcome::Failed => 'F',
            Outcome::Void => 'V',
        }
    }
}

/// What epoch `epoch` was for `provider` (see the module documentation).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderEpochRecord {
    pub provider: String,
    pub epoch: u64,
    pub outcome: Outcome,
    /// The proof session (`EpochProven`): samples proven, draws used, deal-set
    /// entries sampled from, and where. `None` when the session is known only from
    /// the provider's proof-log bit (until its event is indexed), and for failed
    /// and void epochs.
    pub samples: Option<u16>,
    pub draws: Option<u32>,
    pub set_len: Option<u32>,
    pub slot: Option<u64>,
    pub signature: Option<String>,
}

/// One epoch: its challenge, and what it was for the providers that owed a proof
/// or proved it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: u64,
    /// Opened (`EpochOpened`, or its bit in the market's `EpochLog`).
    pub opened: bool,
    /// Over, as far as the indexer knows (a later epoch's transaction is indexed).
    /// Over and not opened: the epoch is void. An epoch nobody opened and in which
    /// nobody owed a proof has no record.
    pub closed: bool,
    /// Seed of the epoch's challenge (empty until the opening is indexed).
    pub seed: String,
    /// Slot whose SlotHashes entry the seed came from.
    pub seed_slot: u64,
    pub opened_slot: u64,
    pub opener: String,
    /// Proofs of the epoch were accepted before this slot.
    pub deadline_slot: u64,
    /// Samples each provider proved this epoch (fewer if it held fewer deals).
    pub samples_per_epoch: u16,
    /// Providers that proved the epoch.
    pub proven: u64,
    /// Providers that owed a proof and did not prove it (known once closed).
    pub failed: u64,
    /// Providers that owed a proof in the epoch, void (known once closed).
    pub void: u64,
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
    /// The block's Unix time (seconds), when the RPC gave it.
    pub block_time: Option<i64>,
    /// What the event is about, for links: the deal, the provider, the epoch.
    pub deal: Option<String>,
    pub provider: Option<String>,
    pub epoch: Option<u64>,
}

/// One transaction of the program, as indexed (`/v1/tx/{signature}`): its
/// events are `first_event .. first_event + events` in the event sequence.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxRecord {
    pub signature: String,
    pub slot: u64,
    pub block_time: Option<i64>,
    /// The transaction failed: it changed nothing and emitted no event.
    pub failed: bool,
    pub first_event: u64,
    pub events: u32,
}

/// The network at the end of one epoch (`/v1/series`): the totals as the last
/// transaction of the epoch left them, and what the epoch added. Written as
/// transactions are applied (pre-aggregated: a chart reads one key per epoch).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeriesPoint {
    pub epoch: u64,
    /// Bytes of shards in active deals.
    pub stored_bytes: u64,
    pub active_deals: u64,
    pub providers: u64,
    /// Deals ever proposed, and those proposed in this epoch.
    pub deals: u64,
    pub new_deals: u64,
    /// Collateral paid to clients (failed-epoch penalties and deals ended
    /// early), in all and in this epoch.
    pub slashed: u64,
    pub new_slashed: u64,
    /// Paid to providers for proven deal-epochs, in all and in this epoch.
    pub paid: u64,
    pub new_paid: u64,
    /// The epoch's last indexed transaction.
    pub last_slot: u64,
    pub last_block_time: Option<i64>,
    /// Whether a transaction of the epoch set the totals above (if not,
    /// `/v1/series` carries them from the epoch before).
    #[serde(default)]
    pub has_totals: bool,
    /// What the epoch was for the providers, as its `EpochRecord` says:
    /// opened, over, and how many providers proved it, failed it or had it void.
    #[serde(default)]
    pub opened: bool,
    #[serde(default)]
    pub closed: bool,
    #[serde(default)]
    pub proven: u64,
    #[serde(default)]
    pub failed: u64,
    #[serde(default)]
    pub void: u64,
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
    /// Epochs with a record (opened, proven, or void with proofs owed).
    pub epochs: u64,
    /// Proof sessions completed (proven provider-epochs).
    pub sessions: u64,
    /// Provider-epochs failed (a proof owed, the epoch opened, none given).
    pub failed_epochs: u64,
    /// Epochs over that nobody opened while some provider owed a proof.
    pub void_epochs: u64,
    /// Providers jailed.
    pub jailings: u64,
    /// Deal-epochs settled, by outcome.
    pub settled_proven: u64,
    pub settled_failed: u64,
    pub settled_void: u64,
    /// Paid to providers for proven deal-epochs.
    pub paid: u64,
    /// Prices of failed and void deal-epochs refunded to clients.
    pub refunded: u64,
    /// Collateral paid to clients for failed deal-epochs.
    pub penalties: u64,
    /// Collateral paid to clients by deals that ended early.
    pub forfeited: u64,
    /// First epoch not known to be over: the outcomes of every earlier epoch are
    /// final. `None` until the market's epoch length and a transaction are indexed.
    pub closed_until: Option<u64>,
    pub last_slot: u64,
    /// Transactions the follower skipped (listed at `/v1/skipped`).
    #[serde(default)]
    pub skipped_transactions: u64,
    /// The first and the newest transaction with a block time: with
    /// `last_slot`, what the explorer turns slots into approximate times with.
    #[serde(default)]
    pub first_timed_slot: Option<u64>,
    #[serde(default)]
    pub first_block_time: Option<i64>,
    #[serde(default)]
    pub last_timed_slot: Option<u64>,
    #[serde(default)]
    pub last_block_time: Option<i64>,
}

/// A transaction of the program the follower could not index and went past:
/// it did not decode, or the RPC refused it for good.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkippedTx {
    pub signature: String,
    pub slot: u64,
    pub reason: String,
}

/// A transaction as the follower recorded it from `getTransaction`: all the
/// indexer needs to apply it, with no RPC types.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RecordedTx {
    pub signature: String,
    pub slot: u64,
    /// The transaction failed: it changed nothing and emitted no event.
    pub failed: bool,
    /// The block's Unix time (seconds), when the RPC gave it.
    #[serde(default)]
    pub block_time: Option<i64>,
    /// Data of each `emit_cpi!` event instruction, in execution order.
    pub events: Vec<Vec<u8>>,
}
