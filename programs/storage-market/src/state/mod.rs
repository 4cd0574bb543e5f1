//! Account types, one per file.
pub mod challenge;
pub mod deal;
pub mod deal_set;
pub mod logs;
pub mod market;
pub mod provider;

pub use challenge::*;
pub use deal::*;
pub use deal_set::*;
pub use logs::*;
pub use market::*;
pub use provider::*;
