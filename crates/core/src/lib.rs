//! Cairn data path without network I/O: dataset manifests, erasure coding and the
//! wire protocol frames spoken on a storage node's QUIC streams.
//!
//! Everything here is pure and testable in memory, except [`manifest::fs`], which
//! walks and writes directories with `std::fs` (packing a directory cannot avoid it).
//! There is no async runtime, no socket and no RPC in this crate.
//!
//! - [`manifest`]: the dataset manifest (files, sizes, BLAKE3 hashes, offsets in the
//!   packed stream, erasure parameters, per-unit checksums), its canonical binary
//!   encoding and the dataset id ([`DatasetId`] = BLAKE3 of that encoding).
//! - [`erasure`]: streaming Reed-Solomon encoding into `k + m` shards with a BLAKE3
//!   checksum per stripe unit, and a decoder that reads a byte range from any `k`
//!   healthy shards, routing around corrupted units.
//! - [`wire`]: request/response frames for the storage node protocol and their
//!   [`wire::Codec`].
//! - [`codec`]: the typed [`codec::DecodeError`] shared by every binary decoder.
//!
//! A typical upload: [`manifest::fs::pack_dir`] streams a directory through an
//! [`erasure::Encoder`] into `k + m` shard sinks and returns the [`Manifest`];
//! [`Manifest::shard_len`] is the size of every shard deal. A download builds an
//! [`erasure::Decoder`] from the manifest and `k` (or more) shard sources and writes
//! the requested range, or the whole dataset into a [`manifest::fs::Unpacker`].

#![warn(missing_docs)]

pub mod codec;
pub mod dataset;
pub mod erasure;
pub mod hash;
pub mod manifest;
pub mod wire;

pub use hash::{DatasetId, Hash};
pub use manifest::{FileEntry, Manifest, ManifestError};
