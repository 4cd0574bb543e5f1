//! `cairn key new`: the dataset key of private datasets (`upload --encrypt`).
use std::fmt;
use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde::Serialize;

use cairn_core::crypt::DatasetKey;

use crate::context::{default_dataset_key, write_dataset_key};
use crate::error::CliError;

/// The dataset key file a command reads (`upload --encrypt`, and `download`
/// and `ls` of a private dataset).
#[derive(Args, Debug, Clone)]
pub struct KeyArg {
    /// Dataset key file (from `cairn key new`) for private datasets.
    #[arg(long = "key", env = "CAIRN_DATASET_KEY", default_value_os_t = default_dataset_key())]
    pub key: PathBuf,
}

#[derive(Subcommand, Debug)]
pub enum KeyCommand {
    /// Creates a dataset key file: 32 random bytes as a JSON array, readable
    /// by you only (mode 0600). It is never overwritten.
    New {
        /// Where to write it.
        #[arg(long, default_value_os_t = default_dataset_key())]
        out: PathBuf,
    },
}

#[derive(Serialize, Debug)]
pub struct KeyCreated {
    pub path: PathBuf,
    /// The key's public id (stored in the clear in its datasets' manifests).
    pub key_id: String,
}

impl fmt::Display for KeyCreated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "wrote dataset key {} to {}",
            self.key_id,
            self.path.display()
        )?;
        writeln!(
            f,
            "keep a copy somewhere safe: the datasets uploaded with --encrypt under this key cannot be read without it, by anyone"
        )
    }
}

pub fn run(c: KeyCommand) -> Result<KeyCreated, CliError> {
    match c {
        KeyCommand::New { out } => {
            let key = DatasetKey::from_bytes(rand::random());
            write_dataset_key(&out, &key)?;
            Ok(KeyCreated {
                path: out,
                key_id: key.id().to_string(),
            })
        }
    }
}
