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
    /// The keypair file can be read by other users (like ssh, the key is not
    /// used).
    #[error(
        "keypair file {path} is accessible by other users (mode {mode:03o}); a private key must \
         be readable by its owner only: run `chmod 600 {path}`"
    )]
    KeypairExposed { path: PathBuf, mode: u32 },
    /// The dataset is private (encrypted) and no dataset key file was found.
    #[error("dataset {dataset} is encrypted and needs its dataset key; no key file at {} (pass --key or set CAIRN_DATASET_KEY)", key_file.display())]
    DatasetKeyRequired { dataset: String, key_file: PathBuf },
    /// The dataset key given is not the one the dataset was encrypted with.
    #[error("dataset {dataset} was encrypted with key {expected}, but {} is key {given}; pass the dataset's key with --key", key_file.display())]
    WrongDatasetKey {
        dataset: String,
        key_file: PathBuf,
        expected: String,
        given: String,
    },
    /// A private dataset's manifest fails authentication under its own key
    /// (told apart from a wrong key by the key id in its clear header).
    #[error("dataset {dataset}: its encrypted manifest was altered or is invalid ({reason})")]
    ManifestTampered { dataset: String, reason: String },
    /// A private dataset's file content failed authentication.
    #[error("dataset {dataset}: {path:?}: {reason}")]
    Decrypt {
        dataset: String,
        path: String,
        reason: String,
    },
    /// The dataset key file cannot be used (not 32 bytes as a JSON array, or
    /// already exists when creating one).
    #[error("dataset key file {}: {reason}", path.display())]
    DatasetKeyFile { path: PathBuf, reason: String },
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
    /// No deal on chain names this dataset id.
    #[error("unknown dataset {id}: no deals hold it on {url}")]
    UnknownDataset { id: String, url: String },
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
            | CliError::Refused(_)
            | CliError::UnknownDataset { .. }
            | CliError::DatasetKeyRequired { .. }
            | CliError::WrongDatasetKey { .. }
            | CliError::ManifestTampered { .. }
            | CliError::Decrypt { .. } => 1,
            CliError::Keypair { .. }
            | CliError::KeypairExposed { .. }
            | CliError::DatasetKeyFile { .. }
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
                        reason: match failure_log(&err) {
                            Some(log) => format!("custom program error {code}: {log}"),
                            None => format!("custom program error {code} ({})", hint(code)),
                        },
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

/// The log line in which the failing program said why (the line before the
/// first "Program … failed"), from the preflight simulation's logs: a
/// non-market code alone is ambiguous (0 is the system program's "already in
/// use" and the token program's "not rent exempt").
fn failure_log(err: &ClientError) -> Option<String> {
    use solana_rpc_client_api::client_error::ErrorKind;
    use solana_rpc_client_api::request::{RpcError, RpcResponseErrorData};
    let ErrorKind::RpcError(RpcError::RpcResponseError {
        data: RpcResponseErrorData::SendTransactionPreflightFailure(sim),
        ..
    }) = err.kind()
    else {
        return None;
    };
    let logs = sim.logs.as_ref()?;
    let failed = logs
        .iter()
        .position(|l| l.starts_with("Program ") && l.contains(" failed: "))?;
    let line = logs[..failed]
        .iter()
        .rev()
        .find(|l| !l.starts_with("Program ") || l.starts_with("Program log: "))?;
    Some(line.trim_start_matches("Program log: ").to_string())
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

#[cfg(test)]
mod tests {
    use super::*;
    use solana_rpc_client_api::client_error::ErrorKind;
    use solana_rpc_client_api::request::{RpcError, RpcResponseErrorData};

    /// A preflight failure as the RPC returns it, with the programs' logs.
    fn preflight(code: u32, logs: &[&str]) -> ClientError {
        let sim = serde_json::from_value(serde_json::json!({
            "err": { "InstructionError": [0, { "Custom": code }] },
            "logs": logs,
        }))
        .unwrap();
        ErrorKind::RpcError(RpcError::RpcResponseError {
            code: -32002,
            message: "Transaction simulation failed".into(),
            data: RpcResponseErrorData::SendTransactionPreflightFailure(sim),
        })
        .into()
    }

    #[test]
    fn a_non_market_code_is_explained_by_the_failing_programs_log() {
        let market = "E2FTjsV6tPwFbbMiBsquM9Q2wyPEG7qWukeY5iaMcghJ";
        let system = "11111111111111111111111111111111";
        let in_use = preflight(
            0,
            &[
                &format!("Program {market} invoke [1]"),
                "Program log: Instruction: ProposeDeal",
                &format!("Program {system} invoke [2]"),
                "Allocate: account Address { address: 9xQ, base: None } already in use",
                &format!("Program {system} failed: custom program error: 0"),
                &format!("Program {market} consumed 9000 of 200000 compute units"),
                &format!("Program {market} failed: custom program error: 0"),
            ],
        );
        let e = CliError::from_send("http://x", "propose_deal for shard 0", in_use);
        assert_eq!(
            e.to_string(),
            CliError::Transaction {
                action: "propose_deal for shard 0".into(),
                reason: "custom program error 0: Allocate: account Address { address: 9xQ, base: None } already in use".into(),
            }
            .to_string()
        );
        let token = "TokenkegQfeZyiNwAJbNbGKPFXCWuBvf9Ss623VQ5DA";
        let poor = preflight(
            1,
            &[
                &format!("Program {token} invoke [2]"),
                "Program log: Instruction: TransferChecked",
                "Program log: Error: insufficient funds",
                &format!("Program {token} failed: custom program error: 0x1"),
            ],
        );
        let e = CliError::from_send("http://x", "propose_deal", poor);
        assert!(
            e.to_string()
                .ends_with("custom program error 1: Error: insufficient funds"),
            "{e}"
        );
        // Without logs: the code's likely meaning.
        let bare = preflight(1, &[]);
        let e = CliError::from_send("http://x", "propose_deal", bare);
        assert!(
            e.to_string().contains("token program: insufficient funds"),
            "{e}"
        );
    }
}
