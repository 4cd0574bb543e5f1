//! Every command's result is a [`Report`]: printed as text, or as JSON with
//! `--json`.
use std::fmt::Display;

use serde::Serialize;

/// A command result: `Display` for people, `Serialize` for `--json`.
pub trait Report: Display {
    fn to_json(&self) -> serde_json::Value;
}

impl<T: Serialize + Display> Report for T {
    fn to_json(&self) -> serde_json::Value {
        serde_json::to_value(self).expect("command results serialize")
    }
}

/// Prints a result the way the global flags ask for.
pub fn print(report: &dyn Report, json: bool, quiet: bool) {
    if json {
        println!("{}", serde_json::to_string_pretty(&report.to_json()).expect("JSON value prints"));
    } else if !quiet {
        print!("{report}");
    }
}

/// Serializes a `Pubkey` as its base58 string.
pub mod pubkey {
    use anchor_lang::prelude::Pubkey;
    use serde::Serializer;

    pub fn serialize<S: Serializer>(key: &Pubkey, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(key)
    }
}
