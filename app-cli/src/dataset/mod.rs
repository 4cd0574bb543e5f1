//! Datasets: preparing stored shards from a directory, choosing providers.
pub mod prepare;
pub mod select;
