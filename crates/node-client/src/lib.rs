//! Talking to a Cairn storage node over QUIC: the [`client`] (one connection
//! pinned to the provider's operator key, one stream per request) and the
//! [`tls`] configuration both ends share (a certificate self-signed with the
//! operator's ed25519 key).
//!
//! A crate of its own so the `cairn` command line a user installs links QUIC
//! and TLS only, not the node's RocksDB store or its prover.
#![warn(missing_docs)]

pub mod client;
pub mod tls;
