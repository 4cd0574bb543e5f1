//! Account types, one per file.
pub mod challenge;
pub mod deal;
pub mod market;
pub mod provider;

pub use challenge::*;
pub use deal::*;
pub use market::*;
pub use provider::*;
