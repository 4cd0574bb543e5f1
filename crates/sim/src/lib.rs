//! A model of Cairn's per-provider proving ("Proving v2"), used to choose its default
//! parameters: how quickly sampling catches a provider that dropped data
//! ([`detection`]), whether dropping data pays ([`economics`]), and what proving costs
//! in transaction fees ([`cost`]). [`report`] runs all three over a [`report::Config`]
//! and renders the tables the `cairn-sim` binary prints.
//!
//! # The rules modelled
//! - A provider holds `D` deals (shards). Each epoch (a day; 30 a month) the chain
//!   gives a seed and the provider answers `s = min(samples_per_epoch, D)` samples.
//!   Each sample picks a deal uniformly at random (with replacement) and a 64-byte
//!   segment uniformly at random inside it.
//! - If the provider cannot answer any one sample, it fails the whole epoch: its one
//!   bit for the epoch stays unset and every one of its `D` deals is settled as failed
//!   for that epoch.
//! - A failed epoch for a deal: the provider is not paid that epoch's price `p` (per
//!   deal per epoch), and `penalty = slash_bps / 10000 * collateral` of that deal's
//!   collateral goes to the client.
//! - After `jail_failures` (`M`) failed epochs within the last `jail_window` epochs
//!   the provider is jailed: all its deals end and all the collateral they still hold
//!   goes to the clients.
//! - A client may end its deal after any failure; the deal's remaining collateral then
//!   goes to the client. The model takes the pessimistic case (for the cheater): after
//!   the first caught failure a fraction `end_fraction` (default 1.0) of the clients
//!   end their deals. The chain-rules-only case (no client ends a deal) is reported
//!   beside it.
//! - Cost: one proof transaction per `samples_per_tx` samples (1 for a 4 GiB shard,
//!   whose path has 26 levels; 2 for shards whose path has at most 10 levels), one
//!   transaction per provider per epoch to open the epoch, one `settle` transaction per
//!   20 deals per month (lazy settlement), one acceptance transaction per deal
//!   lifetime (30-day deals). One signature per transaction at 5,000 lamports, SOL at
//!   $150. The old design, for comparison, sent one proof transaction per deal per
//!   epoch.
//!
//! # Units
//! Money is in US dollars. `TB` is 10^12 bytes and `GiB` is 2^30 bytes, so a 4 GiB
//! shard is 0.004295 TB. Prices are quoted per TB-month of stored shard bytes and
//! converted to per deal per epoch with 30 epochs a month.

#![warn(missing_docs)]

pub mod cost;
pub mod detection;
pub mod economics;
pub mod report;

use std::fmt;

/// Bytes in one GiB.
pub const GIB: f64 = 1_073_741_824.0;
/// Bytes in one (decimal) TB.
pub const TB: f64 = 1e12;

/// An input outside the range the model accepts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimError {
    /// The parameter's name.
    pub name: &'static str,
    /// The value given, as text.
    pub value: String,
    /// What the model expects.
    pub expected: &'static str,
}

impl fmt::Display for SimError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid {}: {} (expected {})",
            self.name, self.value, self.expected
        )
    }
}

impl std::error::Error for SimError {}

/// `Ok(())` if `ok`, else a [`SimError`] naming the parameter.
pub(crate) fn ensure(
    ok: bool,
    name: &'static str,
    value: impl fmt::Display,
    expected: &'static str,
) -> Result<(), SimError> {
    if ok {
        Ok(())
    } else {
        Err(SimError {
            name,
            value: value.to_string(),
            expected,
        })
    }
}
