//! One file per instruction: its arguments, accounts, validation and handler.
//! The glob re-exports bring Anchor's generated client modules to the crate root;
//! the `handler` names they also re-export are never used through them.
#![allow(ambiguous_glob_reexports)]
pub mod accept_deal;
pub mod cancel_deal;
pub mod close_deal;
pub mod deposit_stake;
pub mod deregister_provider;
pub mod end_deal;
pub mod extend_deal_set;
pub mod init_market;
pub mod jail_provider;
pub mod leave_deal_set;
pub mod open_epoch;
pub mod open_logs;
pub mod propose_deal;
pub mod prove;
pub mod register_provider;
pub mod settle;
pub mod update_market;
pub mod update_provider;
pub mod withdraw_earnings;
pub mod withdraw_stake;

pub use accept_deal::*;
pub use cancel_deal::*;
pub use close_deal::*;
pub use deposit_stake::*;
pub use deregister_provider::*;
pub use end_deal::*;
pub use extend_deal_set::*;
pub use init_market::*;
pub use jail_provider::*;
pub use leave_deal_set::*;
pub use open_epoch::*;
pub use open_logs::*;
pub use propose_deal::*;
pub use prove::*;
pub use register_provider::*;
pub use settle::*;
pub use update_market::*;
pub use update_provider::*;
pub use withdraw_earnings::*;
pub use withdraw_stake::*;
