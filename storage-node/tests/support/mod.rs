//! The in-memory chain and the node fixture shared by the QUIC tests
//! (`quic.rs`) and the fault tests (`faults.rs`).
#![allow(dead_code)]

pub mod chain;

use cairn_chain::Pubkey;
use cairn_storage_node::{
    chain::{ChainError, ChainView},
    metrics::Metrics,
    server::{Limits, Node},
    store::Store,
};
use cairn_tests::TestShard;
use solana_keypair::Keypair;
use solana_signer::Signer;
use std::{
    collections::HashMap,
    path::Path,
    sync::{atomic::Ordering::Relaxed, Arc, Mutex},
    time::Duration,
};
use storage_market::state::{Deal, DealState};
use tokio_util::sync::CancellationToken;

/// A chain in memory: deal states set by the test.
#[derive(Default)]
pub struct MemChain {
    pub deals: Mutex<HashMap<Pubkey, Deal>>,
    pub provider: Pubkey,
    pub accepted: Mutex<Vec<Pubkey>>,
    /// Deal reads: what would be RPC calls.
    pub lookups: std::sync::atomic::AtomicU64,
}

impl ChainView for MemChain {
    async fn deal(&self, deal: &Pubkey) -> Result<Option<Deal>, ChainError> {
        self.lookups.fetch_add(1, Relaxed);
        Ok(self.deals.lock().unwrap().get(deal).cloned())
    }
    async fn accept_deal(&self, deal: &Pubkey) -> Result<String, ChainError> {
        let mut deals = self.deals.lock().unwrap();
        let d = deals.get_mut(deal).ok_or(ChainError::new("no deal"))?;
        d.state = DealState::Active;
        self.accepted.lock().unwrap().push(*deal);
        Ok("accepted".into())
    }
    fn provider(&self) -> Pubkey {
        self.provider
    }
}

pub fn deal(client: &Keypair, provider: Pubkey, root: [u8; 32], bytes: u64) -> Deal {
    Deal {
        client: Pubkey::new_from_array(client.pubkey().to_bytes()),
        provider,
        dataset_id: [1; 32],
        group_id: [1; 32],
        group: 0,
        shard_index: 0,
        generation: 0,
        k: 4,
        n: 6,
        shard_root: root,
        shard_bytes: bytes,
        price_per_epoch: 100,
        duration_epochs: 3,
        escrow: 300,
        collateral: 0,
        collateral_left: 0,
        client_refund: 0,
        state: DealState::Proposed,
        proposed_epoch: 0,
        start_epoch: 0,
        end_epoch: 0,
        settled_until: 0,
        proven_epochs: 0,
        failed_epochs: 0,
        void_epochs: 0,
        forfeit: false,
        in_set: false,
        set_index: 0,
        slash_bps: 0,
        accept_timeout_epochs: 2,
        bump: 255,
    }
}

pub struct Fixture {
    pub _dir: Option<tempfile::TempDir>,
    pub chain: Arc<MemChain>,
    pub node: Arc<Node<MemChain>>,
    pub addr: std::net::SocketAddr,
    pub operator: Pubkey,
    pub cancel: CancellationToken,
}

pub async fn start(capacity: u64) -> Fixture {
    start_with(Limits {
        capacity_bytes: capacity,
        max_header_bytes: 1024,
        max_connections: 8,
        request_timeout: Duration::from_secs(5),
        checkpoint_bytes: 64 * 1024,
        min_free_disk_bytes: 0,
        ..Limits::default()
    })
    .await
}

pub async fn start_with(limits: Limits) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let mut f = start_in(dir.path(), limits).await;
    f._dir = Some(dir);
    f
}

/// A node whose data directory is `dir`.
pub async fn start_in(dir: &Path, limits: Limits) -> Fixture {
    let operator = Keypair::new();
    let operator_key = Pubkey::new_from_array(operator.pubkey().to_bytes());
    let chain = Arc::new(MemChain {
        provider: Pubkey::new_unique(),
        ..MemChain::default()
    });
    let store = Arc::new(Store::open(dir).unwrap());
    let node = Arc::new(Node::new(
        store,
        chain.clone(),
        operator_key,
        limits,
        Arc::new(Metrics::default()),
    ));
    let config =
        cairn_storage_node::tls::server_config(&operator, 4, Duration::from_secs(10)).unwrap();
    let endpoint = quinn::Endpoint::server(config, "127.0.0.1:0".parse().unwrap()).unwrap();
    let addr = endpoint.local_addr().unwrap();
    let cancel = CancellationToken::new();
    tokio::spawn(node.clone().serve(endpoint, cancel.clone()));
    Fixture {
        _dir: None,
        chain,
        node,
        addr,
        operator: operator_key,
        cancel,
    }
}

impl Fixture {
    pub fn propose(&self, client: &Keypair, shard: &TestShard) -> Pubkey {
        let key = Pubkey::new_unique();
        self.chain.deals.lock().unwrap().insert(
            key,
            deal(
                client,
                self.chain.provider,
                shard.root(),
                shard.data.len() as u64,
            ),
        );
        key
    }
}
