//! What the node needs from the chain, behind a trait so the QUIC server can be
//! driven without a validator; [`RpcChain`] is the real one.

use anchor_lang::{AccountDeserialize, Discriminator};
use cairn_chain::{
    deal_set_page_pda, deal_set_pda, layout, market_pda, proof_log_pda, provider_pda, proving,
    Instruction, MarketIx, Pubkey,
};
use solana_account_decoder_client_types::{UiAccount, UiAccountEncoding};
use solana_commitment_config::CommitmentConfig;
use solana_keypair::Keypair;
use solana_rpc_client::nonblocking::rpc_client::RpcClient;
use solana_rpc_client_api::{
    client_error::{Error as ClientError, ErrorKind},
    config::{RpcAccountInfoConfig, RpcProgramAccountsConfig},
    filter::{Memcmp, RpcFilterType},
    request::{RpcError, RpcRequest, RpcResponseErrorData},
    response::Response as RpcResponse,
};
use solana_signer::Signer;
use solana_transaction::{
    versioned::VersionedTransaction, InstructionError, Transaction, TransactionError,
};
use std::{future::Future, sync::Arc};
use storage_market::{
    constants::{deal_set_page, log_page, DEAL_SET_PAGE_ENTRIES},
    errors::MarketError,
    state::{get_bit, Challenge, Deal, DealSet, DealSetPage, Market, ProofLog, Provider},
};

/// A chain call that failed: what happened, what kind of failure it was, and the
/// program's error code when a transaction failed with one. Both are read from the
/// RPC client's typed error (its kind, the HTTP status, the JSON-RPC error code, the
/// structured transaction error), never from its text.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ChainError {
    /// What failed, for logs.
    pub message: String,
    /// The custom program error code the transaction failed with, if any.
    pub code: Option<u32>,
    /// The kind of failure.
    pub kind: FailureKind,
}

/// What kind of failure a [`ChainError`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// The RPC endpoint refused for load (HTTP 429, after the client's own retries).
    RateLimited,
    /// The RPC endpoint could not be reached or did not answer usefully: a
    /// connection or timeout error, an HTTP 5xx, or a node that reports itself
    /// unhealthy or behind.
    Unavailable,
    /// The transaction failed (preflight or on chain); [`ChainError::code`] holds
    /// the program's error code if it was a custom one.
    Transaction,
    /// The RPC endpoint answered with another JSON-RPC error (its code).
    Rpc(i64),
    /// Anything else: an account missing or undecodable, a local failure.
    Other,
}

/// JSON-RPC error of a node that is unhealthy (behind its cluster).
const RPC_NODE_UNHEALTHY: i64 = -32005;

impl FailureKind {
    /// The kind of an RPC client error.
    pub fn of(e: &ClientError) -> FailureKind {
        if e.get_transaction_error().is_some() {
            return FailureKind::Transaction;
        }
        match e.kind() {
            ErrorKind::Reqwest(e) => match e.status() {
                Some(status) if status.as_u16() == 429 => FailureKind::RateLimited,
                Some(status) if !status.is_server_error() => FailureKind::Other,
                _ => FailureKind::Unavailable,
            },
            ErrorKind::Io(_) => FailureKind::Unavailable,
            ErrorKind::RpcError(RpcError::RpcResponseError {
                data: RpcResponseErrorData::NodeUnhealthy { .. },
                ..
            }) => FailureKind::Unavailable,
            ErrorKind::RpcError(RpcError::RpcResponseError { code, .. }) => match *code {
                RPC_NODE_UNHEALTHY => FailureKind::Unavailable,
                code => FailureKind::Rpc(code),
            },
            _ => FailureKind::Other,
        }
    }
}

impl ChainError {
    /// An error without a program error code.
    pub fn new(message: impl Into<String>) -> ChainError {
        ChainError {
            message: message.into(),
            code: None,
            kind: FailureKind::Other,
        }
    }

    /// A refusal by the program's rules, found before sending (`code`).
    pub fn refused(message: impl Into<String>, error: MarketError) -> ChainError {
        ChainError {
            message: message.into(),
            code: Some(u32::from(error)),
            kind: FailureKind::Transaction,
        }
    }

    /// An RPC client error, keeping the custom program error code of a failed
    /// transaction (from preflight or from the confirmed status).
    pub fn from_client(e: &ClientError) -> ChainError {
        let code = match e.get_transaction_error() {
            Some(TransactionError::InstructionError(_, InstructionError::Custom(code))) => {
                Some(code)
            }
            _ => None,
        };
        ChainError {
            message: e.to_string(),
            code,
            kind: FailureKind::of(e),
        }
    }

    /// The storage-market error the transaction failed with, if it was one.
    pub fn market_error(&self) -> Option<MarketError> {
        self.code.and_then(MarketError::from_code)
    }

    /// Whether the RPC endpoint itself failed (rate limit, unreachable): further
    /// calls of the same round would fail too, so the round stops and backs off.
    pub fn is_rpc_outage(&self) -> bool {
        matches!(
            self.kind,
            FailureKind::RateLimited | FailureKind::Unavailable
        )
    }
}

/// Reads deals and accepts them.
pub trait ChainView: Send + Sync + 'static {
    /// The deal account, if it exists.
    fn deal(&self, deal: &Pubkey) -> impl Future<Output = Result<Option<Deal>, ChainError>> + Send;
    /// Sends `accept_deal` for a deal of this provider and waits for confirmation.
    fn accept_deal(&self, deal: &Pubkey)
        -> impl Future<Output = Result<String, ChainError>> + Send;
    /// This node's provider account address.
    fn provider(&self) -> Pubkey;
}

/// The chain through JSON-RPC, signing with the operator key.
#[derive(Clone)]
pub struct RpcChain {
    /// The RPC client (confirmed commitment).
    pub rpc: Arc<RpcClient>,
    /// The operator key.
    pub operator: Arc<Keypair>,
    /// The provider account.
    pub provider: Pubkey,
    /// Instruction builders for the market's mint.
    pub ix: MarketIx,
    /// The market account.
    pub market: Market,
    /// One acceptance at a time: each appends to the deal set at its current length.
    accepting: Arc<tokio::sync::Mutex<()>>,
}

/// Accounts per `getMultipleAccounts` call.
const MULTIPLE_ACCOUNTS: usize = 100;

/// Most deal-set pages a node grows its set to: its proof transactions read every
/// account through one address lookup table, which holds at most 256 addresses,
/// five of them fixed and one for the next proof-log page (250 pages are 16,000
/// deals).
pub const MAX_SET_PAGES: u32 = 256 - 5 - 1;

/// Deal-set pages holding the entries of a set of `len` entries.
pub fn pages_for(len: u32) -> u32 {
    len.div_ceil(DEAL_SET_PAGE_ENTRIES as u32)
}

/// An account's data at confirmed commitment, `None` if it does not exist.
///
/// Sent as a plain `getAccountInfo` request: the client's `get_account*` methods
/// turn every failure into a text-only error, losing the kind of failure.
pub async fn account_data(rpc: &RpcClient, key: &Pubkey) -> Result<Option<Vec<u8>>, ChainError> {
    let config = RpcAccountInfoConfig {
        encoding: Some(UiAccountEncoding::Base64),
        commitment: Some(CommitmentConfig::confirmed()),
        ..RpcAccountInfoConfig::default()
    };
    let got: RpcResponse<Option<UiAccount>> = rpc
        .send(
            RpcRequest::GetAccountInfo,
            serde_json::json!([key.to_string(), config]),
        )
        .await
        .map_err(|e| ChainError::from_client(&e))?;
    got.value
        .map(|account| {
            account.data.decode().ok_or_else(|| {
                ChainError::new(format!("the data of account {key} does not decode"))
            })
        })
        .transpose()
}

impl RpcChain {
    /// Connects and reads the market.
    pub async fn connect(
        rpc_url: &str,
        operator: Arc<Keypair>,
        authority: &Pubkey,
    ) -> Result<RpcChain, ChainError> {
        let rpc = Arc::new(RpcClient::new_with_commitment(
            rpc_url.to_string(),
            CommitmentConfig::confirmed(),
        ));
        let data = account_data(&rpc, &market_pda())
            .await
            .map_err(|e| ChainError {
                message: format!("reading the market account at {rpc_url}: {e}"),
                ..e
            })?
            .ok_or_else(|| ChainError::new(format!("no market account at {rpc_url}")))?;
        let market = Market::try_deserialize(&mut data.as_slice())
            .map_err(|e| ChainError::new(format!("decoding the market: {e}")))?;
        Ok(RpcChain {
            ix: MarketIx {
                mint: market.mint,
                token_program: market.token_program,
            },
            rpc,
            operator,
            provider: provider_pda(authority),
            market,
            accepting: Arc::default(),
        })
    }

    /// The operator's public key.
    pub fn operator_key(&self) -> Pubkey {
        Pubkey::new_from_array(self.operator.pubkey().to_bytes())
    }

    /// An account's data, `None` if it does not exist.
    pub async fn account_data(&self, key: &Pubkey) -> Result<Option<Vec<u8>>, ChainError> {
        account_data(&self.rpc, key).await
    }

    /// Fetches and decodes an account, `None` if it does not exist.
    pub async fn fetch<T: AccountDeserialize>(
        &self,
        key: &Pubkey,
    ) -> Result<Option<T>, ChainError> {
        match self.account_data(key).await? {
            None => Ok(None),
            Some(data) => T::try_deserialize(&mut data.as_slice())
                .map(Some)
                .map_err(|e| ChainError::new(format!("decoding {key}: {e}"))),
        }
    }

    /// The data of many accounts, in order (`None` for a missing one).
    pub async fn accounts_data(&self, keys: &[Pubkey]) -> Result<Vec<Option<Vec<u8>>>, ChainError> {
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(MULTIPLE_ACCOUNTS) {
            let got = self
                .rpc
                .get_multiple_accounts_with_commitment(chunk, CommitmentConfig::confirmed())
                .await
                .map_err(|e| ChainError::from_client(&e))?;
            out.extend(got.value.into_iter().map(|a| a.map(|a| a.data)));
        }
        Ok(out)
    }

    /// Sends instructions signed and paid by the operator; waits for confirmation.
    pub async fn send(&self, ixs: &[Instruction]) -> Result<String, ChainError> {
        let blockhash = self.blockhash().await?;
        let tx = Transaction::new_signed_with_payer(
            ixs,
            Some(&self.operator.pubkey()),
            &[self.operator.as_ref()],
            blockhash,
        );
        self.rpc
            .send_and_confirm_transaction(&tx)
            .await
            .map(|s| s.to_string())
            .map_err(|e| ChainError::from_client(&e))
    }

    /// Sends a signed v0 transaction; waits for confirmation.
    pub async fn send_versioned(&self, tx: &VersionedTransaction) -> Result<String, ChainError> {
        self.rpc
            .send_and_confirm_transaction(tx)
            .await
            .map(|s| s.to_string())
            .map_err(|e| ChainError::from_client(&e))
    }

    /// The latest blockhash.
    pub async fn blockhash(&self) -> Result<solana_message::Hash, ChainError> {
        self.rpc
            .get_latest_blockhash()
            .await
            .map_err(|e| ChainError::from_client(&e))
    }

    /// The confirmed slot.
    pub async fn slot(&self) -> Result<u64, ChainError> {
        self.rpc
            .get_slot()
            .await
            .map_err(|e| ChainError::from_client(&e))
    }

    /// The finalized slot (a slot every node's SlotHashes holds, for lookup tables).
    pub async fn finalized_slot(&self) -> Result<u64, ChainError> {
        self.rpc
            .get_slot_with_commitment(CommitmentConfig::finalized())
            .await
            .map_err(|e| ChainError::from_client(&e))
    }

    /// The challenge of the epoch being opened or proven (`None` before the market
    /// has one).
    pub async fn challenge(&self) -> Result<Option<Challenge>, ChainError> {
        self.fetch(&cairn_chain::challenge_pda()).await
    }

    /// This node's provider account.
    pub async fn provider_account(&self) -> Result<Provider, ChainError> {
        self.fetch(&self.provider)
            .await?
            .ok_or_else(|| ChainError::new(format!("no provider account {}", self.provider)))
    }

    /// This provider's deal set header.
    pub async fn deal_set(&self) -> Result<DealSet, ChainError> {
        let key = deal_set_pda(&self.provider);
        self.fetch(&key)
            .await?
            .ok_or_else(|| ChainError::new(format!("no deal set {key}")))
    }

    /// The first `pages` pages of this provider's deal set, in order.
    pub async fn deal_set_pages(&self, pages: u32) -> Result<Vec<DealSetPage>, ChainError> {
        let keys: Vec<Pubkey> = (0..pages)
            .map(|page| deal_set_page_pda(&self.provider, page))
            .collect();
        self.accounts_data(&keys)
            .await?
            .into_iter()
            .zip(&keys)
            .map(|(data, key)| {
                data.as_deref()
                    .and_then(proving::decode_deal_set_page)
                    .ok_or_else(|| ChainError::new(format!("deal-set page {key} missing")))
            })
            .collect()
    }

    /// Whether this provider's bit for `epoch` is set; `None` if the proof-log page
    /// holding it does not exist yet.
    pub async fn proven(&self, epoch: u64) -> Result<Option<bool>, ChainError> {
        let page = log_page(epoch);
        let key = proof_log_pda(&self.provider, page);
        let Some(data) = self.account_data(&key).await? else {
            return Ok(None);
        };
        let bits = data
            .get(ProofLog::BITS_OFFSET..)
            .filter(|_| data.starts_with(ProofLog::DISCRIMINATOR))
            .and_then(|b| b.get(..storage_market::constants::LOG_PAGE_BYTES))
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| ChainError::new(format!("proof log {key} does not decode")))?;
        get_bit(bits, u64::from(page), epoch)
            .map(Some)
            .map_err(|e| ChainError::new(format!("proof log {key}: {e}")))
    }

    /// This provider's deals, in every state.
    pub async fn deals(&self) -> Result<Vec<(Pubkey, Deal)>, ChainError> {
        let filters = vec![
            RpcFilterType::Memcmp(Memcmp::new_raw_bytes(0, Deal::DISCRIMINATOR.to_vec())),
            RpcFilterType::Memcmp(Memcmp::new_raw_bytes(
                layout::DEAL_PROVIDER,
                self.provider.to_bytes().to_vec(),
            )),
        ];
        let config = RpcProgramAccountsConfig {
            filters: Some(filters),
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
            .await
            .map_err(|e| ChainError::from_client(&e))?;
        let mut out = Vec::with_capacity(accounts.len());
        for (key, account) in accounts {
            let Some(data) = account.data.decode() else {
                continue;
            };
            if let Ok(deal) = Deal::try_deserialize(&mut data.as_slice()) {
                out.push((key, deal));
            }
        }
        Ok(out)
    }
}

impl ChainView for RpcChain {
    async fn deal(&self, deal: &Pubkey) -> Result<Option<Deal>, ChainError> {
        self.fetch(deal).await
    }

    /// Appends the deal to the provider's deal set, first adding a page when the set
    /// is full. A jailed provider takes no new deals.
    async fn accept_deal(&self, deal: &Pubkey) -> Result<String, ChainError> {
        let _one_at_a_time = self.accepting.lock().await;
        let provider = self.provider_account().await?;
        if provider.is_jailed() {
            return Err(ChainError::refused(
                format!(
                    "provider {} is jailed from epoch {}: it takes no new deals",
                    self.provider, provider.jailed_from
                ),
                MarketError::ProviderJailed,
            ));
        }
        let set = self.deal_set().await?;
        let operator = self.operator_key();
        if deal_set_page(set.len) >= MAX_SET_PAGES {
            return Err(ChainError::refused(
                format!(
                    "the deal set holds {} deals on {MAX_SET_PAGES} pages, as many as one lookup table serves",
                    set.len
                ),
                MarketError::DealSetFull,
            ));
        }
        let mut ixs = Vec::with_capacity(2);
        if u64::from(set.len) >= u64::from(set.pages) * DEAL_SET_PAGE_ENTRIES as u64 {
            ixs.push(
                self.ix
                    .extend_deal_set_ix(&operator, &self.provider, set.pages),
            );
        }
        ixs.push(
            self.ix
                .accept_deal_ix(&operator, &self.provider, deal, set.len),
        );
        self.send(&ixs).await
    }

    fn provider(&self) -> Pubkey {
        self.provider
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use solana_rpc_client_api::{
        client_error::reqwest, request::RpcError, response::RpcSimulateTransactionResult,
    };

    fn preflight_failure(err: TransactionError) -> ClientError {
        let result = RpcSimulateTransactionResult {
            err: Some(err.into()),
            logs: None,
            accounts: None,
            units_consumed: None,
            loaded_accounts_data_size: None,
            return_data: None,
            inner_instructions: None,
            replacement_blockhash: None,
            fee: None,
            pre_balances: None,
            post_balances: None,
            pre_token_balances: None,
            post_token_balances: None,
            loaded_addresses: None,
        };
        ErrorKind::RpcError(RpcError::RpcResponseError {
            code: -32002,
            message: "Transaction simulation failed".into(),
            data: RpcResponseErrorData::SendTransactionPreflightFailure(result),
        })
        .into()
    }

    fn http_status(status: u16) -> ClientError {
        let response = axum::http::Response::builder()
            .status(status)
            .body(String::new())
            .unwrap();
        reqwest::Response::from(response)
            .error_for_status()
            .unwrap_err()
            .into()
    }

    fn rpc_response(code: i64, data: RpcResponseErrorData) -> ClientError {
        ErrorKind::RpcError(RpcError::RpcResponseError {
            code,
            message: String::new(),
            data,
        })
        .into()
    }

    #[test]
    fn a_program_error_is_classified_from_the_transaction_error() {
        let custom = |e: MarketError| {
            TransactionError::InstructionError(1, InstructionError::Custom(u32::from(e)))
        };
        // In preflight, and in the confirmed status.
        for e in [
            preflight_failure(custom(MarketError::EpochAlreadyProven)),
            ErrorKind::TransactionError(custom(MarketError::EpochAlreadyProven)).into(),
        ] {
            let e = ChainError::from_client(&e);
            assert_eq!(e.kind, FailureKind::Transaction);
            assert!(
                matches!(e.market_error(), Some(MarketError::EpochAlreadyProven)),
                "{e}"
            );
            assert!(!e.is_rpc_outage());
        }
        // A failed transaction without a program error code.
        let e = ChainError::from_client(&preflight_failure(TransactionError::BlockhashNotFound));
        assert_eq!((e.kind, e.code), (FailureKind::Transaction, None));
        // A custom code outside the program's range is kept but names no market error.
        let e = ChainError::from_client(&preflight_failure(TransactionError::InstructionError(
            0,
            InstructionError::Custom(1),
        )));
        assert_eq!(e.code, Some(1));
        assert!(e.market_error().is_none());
        // An instruction error that is not custom.
        let e = ChainError::from_client(&preflight_failure(TransactionError::InstructionError(
            0,
            InstructionError::InvalidAccountData,
        )));
        assert_eq!((e.kind, e.code), (FailureKind::Transaction, None));
        // Refused before sending: the same code a failed transaction would carry.
        let e = ChainError::refused("jailed", MarketError::ProviderJailed);
        assert!(matches!(
            e.market_error(),
            Some(MarketError::ProviderJailed)
        ));
    }

    #[test]
    fn rpc_failures_are_classified_from_status_and_code() {
        let kind = |e: ClientError| ChainError::from_client(&e).kind;
        assert_eq!(kind(http_status(429)), FailureKind::RateLimited);
        assert_eq!(kind(http_status(503)), FailureKind::Unavailable);
        assert_eq!(kind(http_status(500)), FailureKind::Unavailable);
        assert_eq!(kind(http_status(404)), FailureKind::Other);
        assert_eq!(
            kind(rpc_response(
                RPC_NODE_UNHEALTHY,
                RpcResponseErrorData::NodeUnhealthy {
                    num_slots_behind: Some(40)
                }
            )),
            FailureKind::Unavailable
        );
        assert_eq!(
            kind(rpc_response(-32602, RpcResponseErrorData::Empty)),
            FailureKind::Rpc(-32602)
        );
        assert_eq!(
            kind(std::io::Error::from(std::io::ErrorKind::ConnectionReset).into()),
            FailureKind::Unavailable
        );
        assert_eq!(
            kind(ErrorKind::Custom("local".into()).into()),
            FailureKind::Other
        );
        assert!(ChainError::from_client(&http_status(429)).is_rpc_outage());
        assert!(!ChainError::new("decoding").is_rpc_outage());
    }

    #[tokio::test]
    async fn an_unreachable_endpoint_is_unavailable() {
        // A port nobody listens on: bound, then closed.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let rpc = RpcClient::new(format!("http://127.0.0.1:{port}"));
        let e = ChainError::from_client(&rpc.get_slot().await.unwrap_err());
        assert_eq!(e.kind, FailureKind::Unavailable, "{e}");
        assert!(e.is_rpc_outage());
        // An account read keeps the kind too.
        let e = account_data(&rpc, &Pubkey::new_unique()).await.unwrap_err();
        assert_eq!(e.kind, FailureKind::Unavailable, "{e}");
    }
}
