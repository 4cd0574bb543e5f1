//! `cairn`: the command line of Cairn for AI teams (datasets) and storage
//! providers (their node's account). The binary is `src/main.rs`; this library
//! holds the commands so tests and `cairn demo` call the same code.
pub mod cli;
pub mod commands;
pub mod context;
pub mod dataset;
pub mod demo;
pub mod epochs;
pub mod error;
pub mod output;
pub mod units;

#[cfg(test)]
mod test_support;
