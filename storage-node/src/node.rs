//! Wiring: open the store, reconcile it with disk and chain, start the QUIC
//! server, the metrics endpoint and the prover; stop them through one token.

use crate::{
    chain::RpcChain,
    config::Config,
    metrics::Metrics,
    prover::{Prover, ProverConfig},
    server::Node,
    store::Store,
};
use anyhow::Context;
use solana_signer::Signer;
use std::{net::SocketAddr, sync::Arc, time::Duration};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

/// A started node.
pub struct RunningNode {
    /// The QUIC address actually bound.
    pub quic_addr: SocketAddr,
    /// The metrics address actually bound, if enabled.
    pub metrics_addr: Option<SocketAddr>,
    /// The request handling state (store, metrics).
    pub node: Arc<Node<RpcChain>>,
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningNode {
    /// The token that stops every task.
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }

    /// Stops every task and waits for them.
    pub async fn stop(self) {
        self.cancel.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Starts a node from a validated config.
pub async fn start(config: Config) -> anyhow::Result<RunningNode> {
    config.validate()?;
    let operator = Arc::new(
        solana_keypair::read_keypair_file(&config.operator_keypair).map_err(|e| {
            anyhow::anyhow!(
                "config field `operator_keypair`: cannot read {}: {e}",
                config.operator_keypair.display()
            )
        })?,
    );
    let store = Arc::new(
        Store::open(&config.data_dir)
            .with_context(|| format!("opening the store in {}", config.data_dir.display()))?,
    );
    let report = tokio::task::block_in_place(|| store.reconcile(config.verify_samples))?;
    info!(%report, "store reconciled with disk");

    let chain = RpcChain::connect(
        &config.rpc_url,
        operator.clone(),
        &config.provider_authority(),
    )
    .await
    .context("config field `rpc_url`")?;
    check_provider(&config, &chain, &operator.pubkey().to_bytes()).await?;

    let metrics = Arc::new(Metrics::default());
    let limits = config.limits();
    let operator_key = operator.pubkey();
    let operator_key = cairn_chain::Pubkey::new_from_array(operator_key.to_bytes());
    let node = Arc::new(Node::new(
        store,
        Arc::new(chain.clone()),
        operator_key,
        limits,
        metrics.clone(),
    ));
    // Disk and chain agree before the first request: shard files that lost their
    // record are adopted or deleted, uploads of deals no longer proposed dropped.
    node.adopt_unclaimed(&report.unclaimed).await;
    node.sweep().await;
    let server_config = crate::tls::server_config(
        &operator,
        config.max_streams_per_connection,
        config.idle_timeout(),
    )?;
    let endpoint = quinn::Endpoint::server(server_config, config.listen)
        .with_context(|| format!("config field `listen`: cannot bind {}", config.listen))?;
    let quic_addr = endpoint.local_addr()?;
    let cancel = CancellationToken::new();
    let mut tasks = vec![tokio::spawn(node.clone().serve(endpoint, cancel.clone()))];

    let mut metrics_addr = None;
    if let Some(addr) = config.metrics_addr() {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .with_context(|| format!("config field `metrics_listen`: cannot bind {addr}"))?;
        metrics_addr = Some(listener.local_addr()?);
        tasks.push(tokio::spawn(
            metrics.clone().serve(listener, cancel.clone()),
        ));
    }
    if config.prover {
        let prover = Prover::new(
            chain,
            node.clone(),
            ProverConfig {
                poll: Duration::from_millis(config.poll_ms),
                reconcile: Duration::from_secs(config.reconcile_secs),
                priority_fee_micro_lamports: config.priority_fee_micro_lamports,
                settle_interval_epochs: config.settle_interval_epochs,
            },
        );
        tasks.push(tokio::spawn(prover.run(cancel.clone())));
    }
    info!(%quic_addr, ?metrics_addr, operator = %operator_key, "cairn-node running");
    Ok(RunningNode {
        quic_addr,
        metrics_addr,
        node,
        cancel,
        tasks,
    })
}

/// The provider account must exist and name this operator; a price different
/// from the config's is reported.
async fn check_provider(
    config: &Config,
    chain: &RpcChain,
    operator: &[u8; 32],
) -> anyhow::Result<()> {
    let provider: storage_market::state::Provider = chain
        .fetch(&chain.provider)
        .await?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "config field `provider_authority`: no provider account {} for authority {} on chain; register the provider first",
                chain.provider,
                config.provider_authority
            )
        })?;
    if provider.operator.to_bytes() != *operator {
        anyhow::bail!(
            "config field `operator_keypair`: key {} is not the operator {} of provider {}",
            bs58::encode(operator).into_string(),
            provider.operator,
            chain.provider
        );
    }
    if provider.is_jailed() {
        warn!(
            jailed_from = provider.jailed_from,
            "the provider is jailed: it takes no new deals, and its deals end at that epoch"
        );
    }
    if provider.price_per_mib_epoch != config.price_per_mib_epoch {
        warn!(
            on_chain = provider.price_per_mib_epoch,
            configured = config.price_per_mib_epoch,
            "the provider's on-chain price differs from price_per_mib_epoch; update the provider to change it"
        );
    }
    Ok(())
}
