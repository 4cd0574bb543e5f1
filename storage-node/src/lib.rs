//! `cairn-node`, a storage provider's node: a QUIC shard server ([`server`]), a
//! durable shard store ([`store`]), the automatic prover ([`prover`]) and its
//! proof sessions ([`session`]), Prometheus [`metrics`], and the [`client`] that
//! the CLI and tests use to talk to a node.
#![warn(missing_docs)]

pub mod bench;
pub mod chain;
pub mod cli;
pub mod config;
pub mod disk;
pub mod metrics;
pub mod node;
pub mod prover;
pub mod server;
pub mod session;
pub mod store;

// The client and the TLS setup both ends share live in `cairn-node-client`, so
// the `cairn` command line links neither RocksDB nor the prover.
pub use cairn_node_client::{client, tls};
