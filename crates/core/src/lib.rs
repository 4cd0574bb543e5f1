//! Cairn data path without network I/O: dataset manifests, erasure coding and the
//! wire protocol frames spoken on a storage node's QUIC streams.
//!
//! Everything here is pure and testable in memory, except [`manifest::fs`], which
//! walks and writes directories with `std::fs` (packing a directory cannot avoid it).
//! There is no async runtime, no socket and no RPC in this crate.
//!
//! - [`manifest`]: the dataset manifest (files, sizes, BLAKE3 hashes, offsets in the
//!   packed stream, empty directories, erasure parameters, the data groups' ids) and
//!   its canonical binary encoding.
//! - [`group`]: erasure groups. The packed stream is cut into data groups, each
//!   coded on its own into `k + m` shards with a BLAKE3 checksum per stripe unit;
//!   a group's id is the BLAKE3 of its [`group::GroupManifest`]. The dataset
//!   manifest is the content of one more group, the index group, whose id is the
//!   dataset id ([`DatasetId`]).
//! - [`dataset`]: how a group sits in its stored shards (the group manifest and a
//!   trailer after the coded content), so an id alone is enough to read it.
//! - [`erasure`]: streaming Reed-Solomon encoding into `k + m` shards with a BLAKE3
//!   checksum per stripe unit, and a decoder that reads a byte range from any `k`
//!   healthy shards, routing around corrupted units.
//! - [`wire`]: request/response frames for the storage node protocol and their
//!   [`wire::Codec`].
//! - [`crypt`]: client-side encryption of private datasets (file chunks that
//!   decrypt by byte range, and the sealed manifest of [`manifest::sealed`]).
//! - [`codec`]: the typed [`codec::DecodeError`] shared by every binary decoder.
//!
//! A typical upload: [`manifest::fs::GroupPacker`] streams a directory group by
//! group through an [`erasure::Encoder`] into `k + m` shard sinks; the group
//! manifests' ids go into the [`Manifest`], which [`dataset::index_group`] codes as
//! the index group. A download rebuilds the index group's manifest from its
//! shards, then reads the data groups that hold the bytes it wants, each through
//! its own [`erasure::Decoder`], into a [`manifest::fs::Unpacker`].

#![warn(missing_docs)]

pub mod codec;
pub mod crypt;
pub mod dataset;
pub mod erasure;
pub mod group;
pub mod hash;
pub mod manifest;
pub mod wire;

pub use hash::{DatasetId, Hash};
pub use manifest::{FileEntry, Manifest, ManifestError};
