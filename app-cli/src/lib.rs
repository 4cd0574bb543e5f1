//! `cairn`: the command line of Cairn for AI teams (datasets) and storage
//! providers (their node's account). The binary is `src/main.rs`; this library
//! holds the commands so tests and `cairn-dev demo` call the same code. It
//! links no validator, indexer or RocksDB: the local network lives in `cairn-dev`.
pub mod cli;
pub mod commands;
pub mod context;
pub mod dataset;
pub mod epochs;
pub mod error;
pub mod gateway;
pub mod output;
pub mod units;

#[cfg(test)]
mod test_support;
