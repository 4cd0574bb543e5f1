//! `cairn-indexer`: follows the storage-market program over RPC into RocksDB
//! and serves it over HTTP for explorers.
//!
//! - [`store`]: column families, keys, one write batch per change.
//! - [`ingest`]: recorded transactions and account snapshots into the store
//!   (pure: no RPC, so it is tested and benchmarked from recorded data).
//! - [`follower`]: the RPC loop around [`ingest`].
//! - [`query`] and [`api`]: the paginated reads and the axum routes.
pub mod api;
pub mod bench;
pub mod cli;
pub mod client;
pub mod follower;
pub mod ingest;
pub mod model;
pub mod query;
pub mod store;
pub mod synthetic;
