//! Fixtures for Cairn's workspace tests.
//!
//! [`TestMarket`] runs the storage-market program natively inside agave's real
//! runtime (`solana-program-test`): real accounts, rent, signatures, the real SPL
//! Token and Token-2022 programs (as SBF), real sysvars. Instruction builders
//! here are the ones every test uses, so no test assembles accounts by hand
//! unless it is substituting one on purpose.
pub mod idl;
pub mod market;
pub mod python;
pub mod rpc;

pub use market::*;
