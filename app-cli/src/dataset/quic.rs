//! The real transport: the storage node's QUIC client (pinned to each
//! provider's operator key), driven from blocking threads through one tokio
//! runtime.
use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::time::Duration;

use anchor_lang::prelude::Pubkey;
use cairn_storage_node::client::{ClientError, NodeClient};
use solana_keypair::Keypair;

use crate::dataset::transport::{Connector, Held, Node, TransportError};

/// How long one request may take before the node counts as failing.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct QuicConnector {
    runtime: Arc<tokio::runtime::Runtime>,
}

impl QuicConnector {
    pub fn new() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("cairnQuic")
            .enable_all()
            .build()?;
        Ok(QuicConnector {
            runtime: Arc::new(runtime),
        })
    }
}

fn resolve(endpoint: &str) -> Result<SocketAddr, TransportError> {
    endpoint
        .to_socket_addrs()
        .map_err(|e| TransportError::unreachable(format!("cannot resolve {endpoint}: {e}")))?
        .next()
        .ok_or_else(|| TransportError::unreachable(format!("{endpoint} resolves to no address")))
}

fn classify(e: ClientError) -> TransportError {
    match e {
        ClientError::Refused(_) => TransportError::refused(e.to_string()),
        // A node that is not who the chain says (certificate) is refused too:
        // retrying cannot fix it.
        ClientError::Connect { ref reason, .. }
            if reason.contains("certificate") || reason.contains("operator") =>
        {
            TransportError::refused(e.to_string())
        }
        _ => TransportError::unreachable(e.to_string()),
    }
}

impl Connector for QuicConnector {
    fn connect(&self, endpoint: &str, operator: &Pubkey) -> Result<Box<dyn Node>, TransportError> {
        let addr = resolve(endpoint)?;
        let client = self.runtime.block_on(async {
            tokio::time::timeout(CONNECT_TIMEOUT, NodeClient::connect(addr, *operator))
                .await
                .map_err(|_| {
                    TransportError::unreachable(format!(
                        "no answer from {endpoint} in {CONNECT_TIMEOUT:?}"
                    ))
                })?
                .map_err(classify)
        })?;
        Ok(Box::new(QuicNode {
            runtime: self.runtime.clone(),
            client,
        }))
    }
}

struct QuicNode {
    runtime: Arc<tokio::runtime::Runtime>,
    client: NodeClient,
}

impl QuicNode {
    fn run<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, ClientError>>,
    ) -> Result<T, TransportError> {
        self.runtime.block_on(async {
            tokio::time::timeout(REQUEST_TIMEOUT, f)
                .await
                .map_err(|_| {
                    TransportError::unreachable(format!(
                        "request timed out after {REQUEST_TIMEOUT:?}"
                    ))
                })?
                .map_err(classify)
        })
    }
}

impl Node for QuicNode {
    fn held(&self, deal: &Pubkey) -> Result<Held, TransportError> {
        let s = self.run(self.client.status(deal))?;
        Ok(Held {
            received: s.received,
            complete: s.is_complete() && s.root_verified(),
        })
    }

    fn put(
        &self,
        deal: &Pubkey,
        client: &Keypair,
        offset: u64,
        bytes: &[u8],
    ) -> Result<Held, TransportError> {
        let s = self.run(self.client.put_shard(deal, client, offset, bytes))?;
        Ok(Held {
            received: s.received,
            complete: s.is_complete() && s.root_verified(),
        })
    }

    fn get(&self, deal: &Pubkey, offset: u64, len: u64) -> Result<Vec<u8>, TransportError> {
        self.run(self.client.get_shard(deal, offset, len))
    }
}
