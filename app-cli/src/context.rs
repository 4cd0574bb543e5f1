//! The chain as a command sees it: the RPC endpoint, the signing keypair and
//! the market, with every failure mapped to a [`CliError`].
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use anchor_lang::prelude::Pubkey;
use anchor_lang::AccountDeserialize;
use cairn_chain::MarketIx;
use solana_account_decoder_client_types::UiAccountEncoding;
use solana_commitment_config::CommitmentConfig;
use solana_keypair::Keypair;
use solana_rpc_client::rpc_client::RpcClient;
use solana_rpc_client_api::config::{RpcAccountInfoConfig, RpcProgramAccountsConfig};
use solana_rpc_client_api::filter::{Memcmp, RpcFilterType};
use solana_signer::Signer;
use solana_transaction::Transaction;
use storage_market::state::Market;

use cairn_core::crypt::DatasetKey;

use crate::error::CliError;
use crate::units::Tokens;

/// Offset of `decimals` in a mint account (both token programs).
const MINT_DECIMALS_OFFSET: usize = 44;

/// Resolves the Solana CLI's cluster monikers; anything else is used as is.
pub fn resolve_url(url: &str) -> String {
    match url {
        "localnet" | "l" | "localhost" => "http://127.0.0.1:8899",
        "devnet" | "d" => "https://api.devnet.solana.com",
        "testnet" | "t" => "https://api.testnet.solana.com",
        "mainnet-beta" | "m" => "https://api.mainnet-beta.solana.com",
        other => other,
    }
    .to_string()
}

/// Reads a Solana CLI keypair file (a JSON array of 64 bytes). Like ssh with
/// a private key, refuses a file that users other than its owner may read or
/// write ([`CliError::KeypairExposed`]).
pub fn read_keypair(path: &Path) -> Result<Keypair, CliError> {
    let fail = |reason: String| CliError::Keypair {
        path: path.to_path_buf(),
        reason,
    };
    let file = std::fs::File::open(path).map_err(|e| fail(e.to_string()))?;
    let bytes = read_private_bytes(path, file, fail)?;
    Keypair::try_from(bytes.as_slice()).map_err(|e| fail(format!("not an ed25519 keypair ({e})")))
}

/// The JSON byte array in key file `file` (at `path`), once its permissions
/// are checked ([`check_private`]); other failures are `fail`'s.
fn read_private_bytes(
    path: &Path,
    mut file: std::fs::File,
    fail: impl Fn(String) -> CliError,
) -> Result<Vec<u8>, CliError> {
    use std::io::Read;
    check_private(path, &file)?;
    let mut text = String::new();
    file.read_to_string(&mut text)
        .map_err(|e| fail(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| fail(format!("not a JSON array of bytes ({e})")))
}

/// Permission bits that let users other than the owner at a key file.
#[cfg(unix)]
const NOT_OWNER: u32 = 0o077;

#[cfg(unix)]
fn check_private(path: &Path, file: &std::fs::File) -> Result<(), CliError> {
    use std::os::unix::fs::PermissionsExt;
    let mode = file
        .metadata()
        .map_err(|e| CliError::Keypair {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?
        .permissions()
        .mode();
    if mode & NOT_OWNER != 0 {
        return Err(CliError::KeypairExposed {
            path: path.to_path_buf(),
            mode: mode & 0o777,
        });
    }
    Ok(())
}

#[cfg(not(unix))]
fn check_private(_: &Path, _: &std::fs::File) -> Result<(), CliError> {
    Ok(())
}

/// Writes `key` as a Solana CLI keypair file readable by its owner only
/// (mode 0600, also when the file existed).
pub fn write_keypair(path: &Path, key: &Keypair) -> Result<(), CliError> {
    let json = serde_json::to_string(&key.to_bytes().to_vec()).expect("bytes serialize");
    write_private(path, json.as_bytes(), false).map_err(CliError::io(path))
}

/// Writes `bytes` to `path` readable by its owner only (mode 0600, also when
/// the file existed) and syncs it. With `create_new`, an existing file is an
/// `AlreadyExists` error and is left untouched.
fn write_private(path: &Path, bytes: &[u8], create_new: bool) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if create_new {
        options.create_new(true);
    } else {
        options.create(true).truncate(true);
    }
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    #[cfg(unix)]
    file.set_permissions(std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// `~/.config/cairn/dataset-key.json`: the default dataset key file.
pub fn default_dataset_key() -> PathBuf {
    std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default()
        .join(".config/cairn/dataset-key.json")
}

/// Reads a dataset key file (a JSON array of 32 bytes, like a Solana
/// keypair file); `None` if there is no file at `path`. Refuses a file other
/// users may read or write ([`CliError::KeypairExposed`]), like a keypair.
pub fn read_dataset_key(path: &Path) -> Result<Option<DatasetKey>, CliError> {
    let fail = |reason: String| CliError::DatasetKeyFile {
        path: path.to_path_buf(),
        reason,
    };
    let file = match std::fs::File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(fail(e.to_string())),
    };
    let bytes: [u8; 32] = read_private_bytes(path, file, fail)?
        .try_into()
        .map_err(|b: Vec<u8>| fail(format!("{} bytes, a dataset key has 32", b.len())))?;
    Ok(Some(DatasetKey::from_bytes(bytes)))
}

/// Writes `key` as a new dataset key file readable by its owner only (mode
/// 0600); never overwrites a file (a lost key loses its datasets).
pub fn write_dataset_key(path: &Path, key: &DatasetKey) -> Result<(), CliError> {
    let json = serde_json::to_string(&key.as_bytes().to_vec()).expect("bytes serialize");
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).map_err(CliError::io(parent))?;
    }
    write_private(path, json.as_bytes(), true).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => CliError::DatasetKeyFile {
            path: path.to_path_buf(),
            reason: "already exists; a key file is never overwritten (its datasets would be lost)"
                .into(),
        },
        _ => CliError::io(path)(e),
    })
}

/// A dataset id argument (64 hex characters).
pub fn parse_dataset_id(text: &str) -> Result<cairn_core::DatasetId, CliError> {
    text.parse()
        .map_err(|e: cairn_core::hash::ParseIdError| CliError::bad("ID", e.to_string()))
}

/// The market as deployed: its account and instruction builders for its mint.
pub struct MarketView {
    pub address: Pubkey,
    pub account: Market,
    pub ix: MarketIx,
    pub decimals: u8,
}

impl MarketView {
    /// `owner`'s associated token account for the market's mint.
    pub fn token_account_of(&self, owner: &Pubkey) -> Pubkey {
        cairn_chain::token::associated_token_address(owner, &self.ix.mint, &self.ix.token_program)
    }

    pub fn tokens(&self, base_units: u64) -> Tokens {
        Tokens {
            base_units,
            decimals: self.decimals,
        }
    }
}

/// An account's owner and data.
pub type AccountData = (Pubkey, Vec<u8>);

pub struct Ctx {
    pub url: String,
    pub rpc: RpcClient,
    keypair_path: PathBuf,
    keypair: OnceLock<Keypair>,
}

impl Ctx {
    pub fn new(url: &str, keypair_path: PathBuf) -> Self {
        let url = resolve_url(url);
        let rpc = RpcClient::new_with_commitment(url.clone(), CommitmentConfig::confirmed());
        Ctx {
            url,
            rpc,
            keypair_path,
            keypair: OnceLock::new(),
        }
    }

    /// The `--keypair`: fee payer and signer. Read on first use, so commands
    /// that only read the chain work without one.
    pub fn payer(&self) -> Result<&Keypair, CliError> {
        if let Some(k) = self.keypair.get() {
            return Ok(k);
        }
        let k = read_keypair(&self.keypair_path)?;
        Ok(self.keypair.get_or_init(|| k))
    }

    pub fn rpc_err(&self, err: solana_rpc_client_api::client_error::Error) -> CliError {
        let error = CliError::rpc(&self.url, err);
        if let CliError::Rpc { .. } = error {
            // Some client calls fold a connection failure into their own
            // message; a probe tells an unreachable endpoint from an error.
            if let Err(probe) = self.rpc.get_version() {
                if let unreachable @ CliError::Unreachable { .. } = CliError::rpc(&self.url, probe)
                {
                    return unreachable;
                }
            }
        }
        error
    }

    /// Raw account data, `None` if the account does not exist.
    pub fn account_data(&self, address: &Pubkey) -> Result<Option<AccountData>, CliError> {
        let response = self
            .rpc
            .get_account_with_commitment(address, CommitmentConfig::confirmed())
            .map_err(|e| self.rpc_err(e))?;
        Ok(response.value.map(|a| (a.owner, a.data)))
    }

    /// Raw data of several accounts (`None` for those that do not exist), in the
    /// order asked, 100 per `getMultipleAccounts`.
    pub fn multiple_account_data(
        &self,
        addresses: &[Pubkey],
    ) -> Result<Vec<Option<AccountData>>, CliError> {
        let mut out = Vec::with_capacity(addresses.len());
        for chunk in addresses.chunks(100) {
            let response = self
                .rpc
                .get_multiple_accounts_with_commitment(chunk, CommitmentConfig::confirmed())
                .map_err(|e| self.rpc_err(e))?;
            out.extend(
                response
                    .value
                    .into_iter()
                    .map(|a| a.map(|a| (a.owner, a.data))),
            );
        }
        Ok(out)
    }

    /// The current slot.
    pub fn slot(&self) -> Result<u64, CliError> {
        self.rpc.get_slot().map_err(|e| self.rpc_err(e))
    }

    /// An Anchor account of the program, `None` if it does not exist.
    pub fn fetch<T: AccountDeserialize>(
        &self,
        what: &'static str,
        address: &Pubkey,
    ) -> Result<Option<T>, CliError> {
        let Some((owner, data)) = self.account_data(address)? else {
            return Ok(None);
        };
        if owner != cairn_chain::PROGRAM_ID {
            return Err(CliError::BadAccount {
                what,
                address: *address,
                reason: format!("owned by {owner}, not the storage-market program"),
            });
        }
        T::try_deserialize(&mut data.as_slice())
            .map(Some)
            .map_err(|e| CliError::BadAccount {
                what,
                address: *address,
                reason: e.to_string(),
            })
    }

    /// An Anchor account of the program that must exist.
    pub fn fetch_existing<T: AccountDeserialize>(
        &self,
        what: &'static str,
        address: &Pubkey,
    ) -> Result<T, CliError> {
        self.fetch(what, address)?.ok_or(CliError::NotFound {
            what,
            address: *address,
            hint: "",
        })
    }

    /// The market; an error that says what to do if it is not created yet.
    pub fn market(&self) -> Result<MarketView, CliError> {
        let address = cairn_chain::market_pda();
        let account: Market = self.fetch("market", &address)?.ok_or(CliError::NotFound {
            what: "market",
            address,
            hint: " on this cluster; create it with `cairn market init --mint MINT`, or point --url at a cluster that has one",
        })?;
        let (_, mint_data) = self
            .account_data(&account.mint)?
            .ok_or(CliError::NotFound {
                what: "mint",
                address: account.mint,
                hint: "",
            })?;
        let decimals =
            *mint_data
                .get(MINT_DECIMALS_OFFSET)
                .ok_or_else(|| CliError::BadAccount {
                    what: "mint",
                    address: account.mint,
                    reason: format!("{} bytes is too short for a mint", mint_data.len()),
                })?;
        Ok(MarketView {
            address,
            ix: MarketIx {
                mint: account.mint,
                token_program: account.token_program,
            },
            account,
            decimals,
        })
    }

    /// Token balance of a token account; 0 if it does not exist.
    pub fn token_balance(&self, account: &Pubkey) -> Result<u64, CliError> {
        Ok(self
            .account_data(account)?
            .and_then(|(_, data)| cairn_chain::token::token_account_amount(&data))
            .unwrap_or(0))
    }

    /// Program accounts of type `T` whose bytes at each offset equal the given
    /// bytes (a `getProgramAccounts` with memcmp filters and the type's
    /// discriminator).
    pub fn program_accounts<T: AccountDeserialize + anchor_lang::Discriminator>(
        &self,
        filters: &[(usize, &[u8])],
    ) -> Result<Vec<(Pubkey, T)>, CliError> {
        let mut all = vec![RpcFilterType::Memcmp(Memcmp::new_raw_bytes(
            0,
            T::DISCRIMINATOR.to_vec(),
        ))];
        all.extend(filters.iter().map(|(offset, bytes)| {
            RpcFilterType::Memcmp(Memcmp::new_raw_bytes(*offset, bytes.to_vec()))
        }));
        let config = RpcProgramAccountsConfig {
            filters: Some(all),
            account_config: RpcAccountInfoConfig {
                encoding: Some(UiAccountEncoding::Base64),
                commitment: Some(CommitmentConfig::confirmed()),
                ..RpcAccountInfoConfig::default()
            },
            ..RpcProgramAccountsConfig::default()
        };
        let accounts = self
            .rpc
            .get_program_ui_accounts_with_config(&cairn_chain::PROGRAM_ID, config)
            .map_err(|e| self.rpc_err(e))?;
        let mut out = Vec::with_capacity(accounts.len());
        for (address, account) in accounts {
            let data = account.data.decode().ok_or_else(|| CliError::BadAccount {
                what: "program account",
                address,
                reason: "undecodable data encoding".into(),
            })?;
            let value =
                T::try_deserialize(&mut data.as_slice()).map_err(|e| CliError::BadAccount {
                    what: "program account",
                    address,
                    reason: e.to_string(),
                })?;
            out.push((address, value));
        }
        Ok(out)
    }

    /// Signs with the payer (and `signers`), sends and waits for confirmation.
    /// `action` names what is being done, for the error message.
    pub fn send(
        &self,
        action: &str,
        ixs: &[anchor_lang::solana_program::instruction::Instruction],
        signers: &[&Keypair],
    ) -> Result<String, CliError> {
        let payer = self.payer()?;
        let blockhash = self
            .rpc
            .get_latest_blockhash()
            .map_err(|e| self.rpc_err(e))?;
        let mut all: Vec<&Keypair> = vec![payer];
        all.extend(signers.iter().filter(|k| k.pubkey() != payer.pubkey()));
        let tx = Transaction::new_signed_with_payer(ixs, Some(&payer.pubkey()), &all, blockhash);
        self.rpc
            .send_and_confirm_transaction(&tx)
            .map(|sig| sig.to_string())
            .map_err(|e| CliError::from_send(&self.url, action, e))
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn a_dataset_key_file_is_private_never_overwritten_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/dataset-key.json");
        assert!(read_dataset_key(&path).unwrap().is_none());
        let key = DatasetKey::from_bytes([9; 32]);
        write_dataset_key(&path, &key).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(read_dataset_key(&path).unwrap(), Some(key));
        assert!(matches!(
            write_dataset_key(&path, &DatasetKey::from_bytes([1; 32])),
            Err(CliError::DatasetKeyFile { .. })
        ));
        assert_eq!(
            read_dataset_key(&path).unwrap(),
            Some(DatasetKey::from_bytes([9; 32]))
        );
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(
            read_dataset_key(&path),
            Err(CliError::KeypairExposed { mode: 0o640, .. })
        ));
        let short = dir.path().join("short.json");
        std::fs::write(&short, "[1,2,3]").unwrap();
        std::fs::set_permissions(&short, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            read_dataset_key(&short),
            Err(CliError::DatasetKeyFile { .. })
        ));
    }

    #[test]
    fn a_keypair_file_others_can_read_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("id.json");
        let key = Keypair::new();
        write_keypair(&path, &key).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&path), 0o600);
        assert_eq!(read_keypair(&path).unwrap().pubkey(), key.pubkey());
        for exposed in [0o644, 0o640, 0o604, 0o660, 0o602] {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(exposed)).unwrap();
            match read_keypair(&path) {
                Err(e @ CliError::KeypairExposed { .. }) => {
                    let CliError::KeypairExposed { path: named, mode } = &e else {
                        unreachable!()
                    };
                    assert_eq!((named, *mode), (&path, exposed));
                    assert!(e.to_string().contains("chmod 600"), "{e}");
                    assert_eq!(e.exit_code(), 2);
                }
                other => panic!("mode {exposed:o}: {other:?}"),
            }
        }
        // Rewriting an exposed file makes it private again.
        write_keypair(&path, &key).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert!(read_keypair(&path).is_ok());
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        assert!(read_keypair(&path).is_ok(), "owner-only read is fine");
    }
}
