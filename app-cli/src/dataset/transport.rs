//! How the CLI moves shard bytes to and from one provider's node. Blocking
//! calls, so uploads and downloads run on plain threads; the QUIC
//! implementation wraps the storage node's async client.
use anchor_lang::prelude::Pubkey;
use solana_keypair::Keypair;

use cairn_core::wire::{ErrorCode, WireError};

/// A failure talking to one node. `refused`: retrying cannot help (the node
/// said no, or is not who the chain says); otherwise the node could not be
/// reached or broke off. `code` is the node's own typed answer, if it gave one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TransportError {
    pub message: String,
    pub refused: bool,
    pub code: Option<ErrorCode>,
}

impl TransportError {
    pub fn unreachable(message: impl Into<String>) -> Self {
        TransportError {
            message: message.into(),
            refused: false,
            code: None,
        }
    }

    pub fn refused(message: impl Into<String>) -> Self {
        TransportError {
            message: message.into(),
            refused: true,
            code: None,
        }
    }

    /// The node's typed error answer.
    pub fn answer(e: &WireError) -> Self {
        TransportError {
            message: format!("the node refused: {e}"),
            refused: true,
            code: Some(e.code),
        }
    }

    /// The node said its own stored copy failed its check: read elsewhere,
    /// and the shard needs repair.
    pub fn is_corrupt_copy(&self) -> bool {
        self.code == Some(ErrorCode::CorruptCopy)
    }
}

/// What a node holds of one deal's shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Held {
    /// Bytes received so far (the offset to resume from).
    pub received: u64,
    /// Complete and its Merkle root verified against the deal.
    pub complete: bool,
}

/// One provider's node.
pub trait Node: Send + Sync {
    /// What the node holds of `deal`.
    fn held(&self, deal: &Pubkey) -> Result<Held, TransportError>;
    /// Sends shard bytes `offset..offset + bytes.len()`, signed by `client`.
    fn put(
        &self,
        deal: &Pubkey,
        client: &Keypair,
        offset: u64,
        bytes: &[u8],
    ) -> Result<Held, TransportError>;
    /// Reads shard bytes `offset..offset + len`.
    fn get(&self, deal: &Pubkey, offset: u64, len: u64) -> Result<Vec<u8>, TransportError>;
}

/// Opens connections to nodes (pinned to each provider's operator key).
pub trait Connector: Send + Sync {
    fn connect(&self, endpoint: &str, operator: &Pubkey) -> Result<Box<dyn Node>, TransportError>;
}

impl<T: Node + ?Sized> Node for std::sync::Arc<T> {
    fn held(&self, deal: &Pubkey) -> Result<Held, TransportError> {
        (**self).held(deal)
    }

    fn put(
        &self,
        deal: &Pubkey,
        client: &Keypair,
        offset: u64,
        bytes: &[u8],
    ) -> Result<Held, TransportError> {
        (**self).put(deal, client, offset, bytes)
    }

    fn get(&self, deal: &Pubkey, offset: u64, len: u64) -> Result<Vec<u8>, TransportError> {
        (**self).get(deal, offset, len)
    }
}
