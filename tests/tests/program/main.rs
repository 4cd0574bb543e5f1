//! Storage-market program tests, run natively in agave's real runtime
//! (solana-program-test) against the real SPL Token and Token-2022 programs.
mod instructions;
mod lifecycle;
mod mints;
mod model;
mod sessions;
