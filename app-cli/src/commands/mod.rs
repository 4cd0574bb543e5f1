//! One module per command group.
pub mod deals;
pub mod key;
pub mod market;
pub mod provider;
