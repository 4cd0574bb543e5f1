//! What the node needs from the chain, behind a trait so the QUIC server can be
//! driven without a validator; [`RpcChain`] is the real one.

use anchor_lang::{AccountDeserialize, Discriminator};
use cairn_chain::{layout, market_pda, provider_pda, Instruction, MarketIx, Pubkey};
use solana_commitment_config::CommitmentConfig;
use solana_keypair::Keypair;
use solana_rpc_client::nonblocking::rpc_client::RpcClient;
use solana_rpc_client_api::{
    config::{RpcAccountInfoConfig, RpcProgramAccountsConfig},
    filter::{Memcmp, RpcFilterType},
};
use solana_signer::Signer;
use solana_transaction::Transaction;
use std::{future::Future, sync::Arc};
use storage_market::state::{Challenge, Deal, Market};

/// A chain call that failed.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ChainError(pub String);

impl ChainError {
    /// The program's custom error code, if the transaction failed with one.
    pub fn custom_code(&self) -> Option<u32> {
        let s = &self.0;
        let at = s.find("custom program error: 0x")?;
        let hex: String = s[at + 24..]
            .chars()
            .take_while(|c| c.is_ascii_hexdigit())
            .collect();
        u32::from_str_radix(&hex, 16).ok()
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
        let data = rpc
            .get_account_data(&market_pda())
            .await
            .map_err(|e| ChainError(format!("reading the market account at {rpc_url}: {e}")))?;
        let market = Market::try_deserialize(&mut data.as_slice())
            .map_err(|e| ChainError(format!("decoding the market: {e}")))?;
        Ok(RpcChain {
            ix: MarketIx {
                mint: market.mint,
                token_program: market.token_program,
            },
            rpc,
            operator,
            provider: provider_pda(authority),
            market,
        })
    }

    /// Fetches and decodes an account, `None` if it does not exist.
    pub async fn fetch<T: AccountDeserialize>(
        &self,
        key: &Pubkey,
    ) -> Result<Option<T>, ChainError> {
        let got = self
            .rpc
            .get_account_with_commitment(key, CommitmentConfig::confirmed())
            .await
            .map_err(|e| ChainError(e.to_string()))?;
        match got.value {
            None => Ok(None),
            Some(acc) => T::try_deserialize(&mut acc.data.as_slice())
                .map(Some)
                .map_err(|e| ChainError(format!("decoding {key}: {e}"))),
        }
    }

    /// Sends instructions signed and paid by the operator; waits for confirmation.
    pub async fn send(&self, ixs: &[Instruction]) -> Result<String, ChainError> {
        let blockhash = self
            .rpc
            .get_latest_blockhash()
            .await
            .map_err(|e| ChainError(e.to_string()))?;
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
            .map_err(|e| ChainError(e.to_string()))
    }

    /// The confirmed slot.
    pub async fn slot(&self) -> Result<u64, ChainError> {
        self.rpc
            .get_slot()
            .await
            .map_err(|e| ChainError(e.to_string()))
    }

    /// The challenge of an epoch, if opened.
    pub async fn challenge(&self, epoch: u64) -> Result<Option<Challenge>, ChainError> {
        self.fetch(&cairn_chain::challenge_pda(epoch)).await
    }

    /// Deals, all of them or only this provider's.
    pub async fn deals(&self, only_ours: bool) -> Result<Vec<(Pubkey, Deal)>, ChainError> {
        let mut filters = vec![RpcFilterType::Memcmp(Memcmp::new_raw_bytes(
            0,
            Deal::DISCRIMINATOR.to_vec(),
        ))];
        if only_ours {
            filters.push(RpcFilterType::Memcmp(Memcmp::new_raw_bytes(
                layout::DEAL_PROVIDER,
                self.provider.to_bytes().to_vec(),
            )));
        }
        let config = RpcProgramAccountsConfig {
            filters: Some(filters),
            account_config: RpcAccountInfoConfig {
                encoding: Some(solana_account_decoder_client_types::UiAccountEncoding::Base64),
                commitment: Some(CommitmentConfig::confirmed()),
                ..RpcAccountInfoConfig::default()
            },
            ..RpcProgramAccountsConfig::default()
        };
        let accounts = self
            .rpc
            .get_program_ui_accounts_with_config(&cairn_chain::PROGRAM_ID, config)
            .await
            .map_err(|e| ChainError(e.to_string()))?;
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

    async fn accept_deal(&self, deal: &Pubkey) -> Result<String, ChainError> {
        let ix = self
            .ix
            .accept_deal_ix(&self.operator.pubkey(), &self.provider, deal);
        self.send(&[ix]).await
    }

    fn provider(&self) -> Pubkey {
        self.provider
    }
}
