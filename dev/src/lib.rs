//! `cairn-dev`: the whole Cairn network on one machine, for trying Cairn and
//! for its end-to-end tests. `cairn-dev demo` runs the local chain, six storage
//! nodes and the indexer, uploads, fails, repairs and downloads a dataset;
//! `cairn-dev bench` measures upload and download through local nodes.
//!
//! It lives apart from the `cairn` command line so that the CLI a user
//! installs links no validator, indexer or RocksDB: this crate is the only one
//! that depends on all of them.
pub mod demo;
