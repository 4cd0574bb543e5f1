//! Datasets: preparing stored shards from a directory, choosing providers,
//! uploading and downloading through the providers' nodes.
pub mod download;
pub mod onchain;
pub mod prepare;
pub mod quic;
pub mod reader;
pub mod repair;
pub mod select;
pub mod state;
pub mod transport;
pub mod upload;
