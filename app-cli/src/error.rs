//! What can go wrong in a command, and the exit code each kind maps to.
use std::path::{Path, PathBuf};

use anchor_lang::prelude::Pubkey;
use solana_rpc_client_api::client_error::Error as ClientError;
use storage_market::errors::MarketError;

/// A command's failure. [`CliError::exit_code`] separates the expected ones
/// (1: something the user asked about does not exist or was refused) from
/// errors (2: bad input, unreachable RPC, broken files).
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The keypair file is missing or is not a Solana CLI keypair.
    #[error("keypair file {path}: {reason} (create one with `solana-keygen new -o {path}`, or pass --keypair)")]
    Keypair { path: PathBuf, reason: String },
    /// A command-line value could not be used.
    #[error("{flag}: {reason}")]
    BadArgument { flag: &'static str, reason: String },
    /// The RPC endpoint could not be reached at all.
    #[error("cannot reach the RPC endpoint {url} ({reason}); start a local network with `cairn-localnet`, or pass --url")]
    Unreachable { url: String, reason: String },
    /// The RPC endpoint answered with an error.
    #[error("RPC {url}: {source}")]
    Rpc {
        url: String,
        #[source]
        source: Box<ClientError>,
    },
    /// The program refused the transaction, with its own error.
    #[error("the storage-market program refused {action}: {} ({}, code {code})", error, error.name(), code = u32::from(*error))]
    Program { action: String, error: MarketError },
    /// The runtime refused the transaction for another reason.
    #[error("{action} failed: {reason}")]
    Transaction { action: String, reason: String },
    /// An account the command needs does not exist.
    #[error("{what} {address} does not exist{hint}")]
    NotFound {
        what: &'static str,
        address: Pubkey,
        hint: &'static str,
    },
    /// An account exists but cannot be read as what it should be.
    #[error("{what} {address} is not a valid account: {reason}")]
    BadAccount {
        what: &'static str,
        address: Pubkey,
        reason: String,
    },
    /// A local file or directory could not be read or written.
    #[error("{}: {reason}", path.display())]
    Io { path: PathBuf, reason: String },
    /// The request is well formed but cannot be met (funds, state).
    #[error("{0}")]
    Refused(String),
}

impl CliError {
    /// For `map_err`: an I/O error on `path`.
    pub fn io(path: &Path) -> impl Fn(std::io::Error) -> CliError + '_ {
        move |e| CliError::Io {
            path: path.to_path_buf(),
            reason: e.to_string(),
        }
    }

    /// 1 for an expected failure, 2 for an error.
    pub fn exit_code(&self) -> u8 {
        match self {
            CliError::Program { .. }
            | CliError::Transaction { .. }
            | CliError::NotFound { .. }
            | CliError::Refused(_) => 1,
            CliError::Keypair { .. }
            | CliError::BadArgument { .. }
            | CliError::Unreachable { .. }
            | CliError::Io { .. }
            | CliError::Rpc { .. }
            | CliError::BadAccount { .. } => 2,
        }
    }

    pub fn bad(flag: &'static str, reason: impl Into<String>) -> Self {
        CliError::BadArgument {
            flag,
            reason: reason.into(),
        }
    }

    /// An RPC failure: unreachable (connection refused, DNS, timeout) or an
    /// error answer.
    pub fn rpc(url: &str, err: ClientError) -> Self {
        use solana_rpc_client_api::client_error::ErrorKind;
        let unreachable = match err.kind() {
            ErrorKind::Reqwest(e) if e.is_connect() || e.is_timeout() => {
                Some(std::error::Error::source(e).map_or_else(|| e.to_string(), root_cause))
            }
            ErrorKind::Io(e) => Some(e.to_string()),
            _ => None,
        };
        match unreachable {
            Some(reason) => CliError::Unreachable {
                url: url.to_string(),
                reason,
            },
            None => CliError::Rpc {
                url: url.to_string(),
                source: Box::new(err),
            },
        }
    }

    /// Classifies a failed `send_and_confirm`: the program's own error by its
    /// code, another transaction error by its text, or an RPC failure.
    pub fn from_send(url: &str, action: &str, err: ClientError) -> Self {
        use anchor_lang::solana_program::instruction::error::InstructionError;
        use solana_transaction_error::TransactionError;
        match err.get_transaction_error() {
            Some(TransactionError::InstructionError(_, InstructionError::Custom(code))) => {
                match MarketError::from_code(code) {
                    Some(error) => CliError::Program {
                        action: action.to_string(),
                        error,
                    },
                    None => CliError::Transaction {
                        action: action.to_string(),
                        reason: format!("custom program error {code} ({})", hint(code)),
                    },
                }
            }
            Some(TransactionError::InsufficientFundsForFee)
            | Some(TransactionError::AccountNotFound) => CliError::Refused(format!(
                "{action} failed: the fee payer has no SOL for the fee; fund it (`solana airdrop` on a local network or devnet)"
            )),
            Some(other) => CliError::Transaction {
                action: action.to_string(),
                reason: other.to_string(),
            },
            None => CliError::rpc(url, err),
        }
    }
}

/// The innermost error's message (e.g. "Connection refused (os error 111)").
fn root_cause(mut e: &(dyn std::error::Error + 'static)) -> String {
    while let Some(next) = e.source() {
        e = next;
    }
    e.to_string()
}

/// What a non-market custom error code most likely is (the token programs'
/// codes, which the market's transfers surface).
fn hint(code: u32) -> &'static str {
    match code {
        1 => "token program: insufficient funds",
        3 => "token program: mint mismatch",
        4 => "token program: owner does not match",
        _ => "not a storage-market error",
    }
}
