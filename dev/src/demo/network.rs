//! A whole Cairn network on one machine, every service its own process: the
//! local chain (`cairn-localnet`), storage nodes (`cairn-node`, separate data
//! dirs and keys) and the indexer, with funded users. Used by `cairn-dev demo`,
//! `cairn-dev bench` and the end-to-end tests.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anchor_lang::prelude::Pubkey;
use cairn_chain::token;
use cairn_localnet::{LocalnetInfo, LOG_FILE};
use serde_json::Value;
use solana_keypair::Keypair;
use solana_signer::Signer;

use crate::demo::launch::{Launcher, Service};
use cairn_cli::commands::provider::{self, ProviderCommand, RegisterArgs};
use cairn_cli::context::Ctx;
use cairn_cli::error::CliError;

/// Lamports per SOL.
const SOL: u64 = 1_000_000_000;
/// How long a service may take to come up.
const START_TIMEOUT: Duration = Duration::from_secs(240);

/// What to start.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// Everything lives here: ledger, node data, indexer database, keys, logs.
    pub dir: PathBuf,
    pub nodes: usize,
    pub indexer: bool,
    /// JSON-RPC port (the websocket takes the next one); `None`: 8899 when
    /// free, else any free pair.
    pub rpc_port: Option<u16>,
    /// Capacity each provider registers (its stake covers the collateral of
    /// filling it).
    pub node_capacity: u64,
}

/// What `cairn-dev demo` gives each provider.
pub const DEMO_NODE_CAPACITY: u64 = 1 << 30;

/// One storage node: its provider account and, while it runs, its process.
#[derive(Debug)]
pub struct NodeProc {
    pub index: usize,
    /// The provider's authority (and operator) keypair file.
    pub key: PathBuf,
    pub authority: Pubkey,
    pub provider: Pubkey,
    pub endpoint: SocketAddr,
    pub data_dir: PathBuf,
    pub service: Option<Service>,
}

pub struct Network {
    pub dir: PathBuf,
    pub info: LocalnetInfo,
    pub launcher: Launcher,
    pub localnet: Service,
    /// The indexer and its HTTP address.
    pub indexer: Option<(Service, SocketAddr)>,
    pub nodes: Vec<NodeProc>,
    faucet: Ctx,
    node_capacity: u64,
}

/// A free TCP port `p` with `p + 1` free as well (RPC and websocket).
fn free_port_pair(preferred: u16) -> u16 {
    let free = |p: u16| std::net::TcpListener::bind(("127.0.0.1", p)).is_ok();
    if free(preferred) && free(preferred + 1) {
        return preferred;
    }
    loop {
        let p = free_port(false);
        if p < u16::MAX && free(p + 1) {
            return p;
        }
    }
}

/// A port free for TCP (`udp = false`) or UDP (QUIC).
pub fn free_port(udp: bool) -> u16 {
    if udp {
        std::net::UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .map(|a| a.port())
            .expect("a free UDP port")
    } else {
        std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .map(|a| a.port())
            .expect("a free TCP port")
    }
}

/// Polls `f` until it gives a value, `service` exits, or the timeout.
fn wait_for<T>(
    what: &str,
    service: &mut Service,
    mut f: impl FnMut() -> Option<T>,
) -> Result<T, CliError> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if let Some(status) = service.exited() {
            return Err(CliError::Refused(format!(
                "{what}: the {} process exited ({status}); its log {} ends:\n{}",
                service.name,
                service.log.display(),
                service.log_tail(15)
            )));
        }
        if Instant::now() > deadline {
            return Err(CliError::Refused(format!(
                "{what}: not ready after {START_TIMEOUT:?}; see {}",
                service.log.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(250));
    }
}

impl Network {
    /// Starts the chain, the indexer (if asked) and `config.nodes` funded,
    /// registered storage nodes. `say` hears what is happening.
    pub fn start(
        launcher: Launcher,
        config: &NetworkConfig,
        say: &dyn Fn(&str),
    ) -> Result<Network, CliError> {
        let dir = std::path::absolute(&config.dir).map_err(CliError::io(&config.dir))?;
        std::fs::create_dir_all(&dir).map_err(CliError::io(&dir))?;
        let ledger = dir.join("ledger");
        let rpc_port = config.rpc_port.unwrap_or_else(|| free_port_pair(8899));
        say(&format!(
            "starting the local chain (RPC port {rpc_port}, ledger {})",
            ledger.display()
        ));
        let started = Instant::now();
        let mut localnet = launcher
            .spawn(
                "localnet",
                &[
                    "--ledger".into(),
                    ledger.display().to_string(),
                    "--reset".into(),
                    "--slot-ms".into(),
                    cairn_localnet::defaults::SLOT_MS.to_string(),
                    "--epoch-slots".into(),
                    cairn_localnet::defaults::EPOCH_SLOTS.to_string(),
                    "--rpc-port".into(),
                    rpc_port.to_string(),
                    "--quiet".into(),
                ],
                &dir.join("localnet.log"),
            )
            .map_err(CliError::io(&launcher.exe))?;
        let info = wait_for("the local chain", &mut localnet, || {
            let info = LocalnetInfo::read(&ledger).ok()?;
            let ctx = Ctx::new(&info.rpc_url, info.faucet_keypair.clone());
            ctx.rpc.get_slot().ok().map(|_| info)
        })?;
        say(&format!(
            "local chain up in {:.1} s: {} (program {}, mint {}; validator log {})",
            started.elapsed().as_secs_f64(),
            info.rpc_url,
            info.program_id,
            info.mint,
            ledger.join(LOG_FILE).display()
        ));
        let faucet = Ctx::new(&info.rpc_url, info.faucet_keypair.clone());
        let mut net = Network {
            dir,
            info,
            launcher,
            localnet,
            indexer: None,
            nodes: Vec::new(),
            faucet,
            node_capacity: config.node_capacity,
        };
        if config.indexer {
            net.start_indexer(say)?;
        }
        for _ in 0..config.nodes {
            net.add_node(say)?;
        }
        Ok(net)
    }

    fn start_indexer(&mut self, say: &dyn Fn(&str)) -> Result<(), CliError> {
        let port = free_port(false);
        let addr: SocketAddr = ([127, 0, 0, 1], port).into();
        let db = self.dir.join("indexer");
        let mut service = self
            .launcher
            .spawn(
                "indexer",
                &[
                    "--url".into(),
                    self.info.rpc_url.clone(),
                    "--db".into(),
                    db.display().to_string(),
                    "--listen".into(),
                    addr.to_string(),
                    "--poll-ms".into(),
                    "500".into(),
                    "--reconcile-secs".into(),
                    "10".into(),
                ],
                &self.dir.join("indexer.log"),
            )
            .map_err(CliError::io(&self.launcher.exe))?;
        wait_for("the indexer", &mut service, || {
            cairn_indexer::client::get_json(addr, "/health")
                .ok()
                .filter(|(status, _)| *status == 200)
        })?;
        say(&format!(
            "indexer up: explorer http://{addr}/ (log {})",
            service.log.display()
        ));
        self.indexer = Some((service, addr));
        Ok(())
    }

    /// A command context for the keypair file `key` on this network.
    pub fn ctx(&self, key: &Path) -> Ctx {
        Ctx::new(&self.info.rpc_url, key.to_path_buf())
    }

    /// A new keypair file `<dir>/keys/<name>.json` with 10 SOL and `tokens`
    /// base units in its associated token account.
    pub fn user(&self, name: &str, tokens: u64) -> Result<(Keypair, PathBuf), CliError> {
        let keys = self.dir.join("keys");
        std::fs::create_dir_all(&keys).map_err(CliError::io(&keys))?;
        let key = Keypair::new();
        let path = keys.join(format!("{name}.json"));
        cairn_cli::context::write_keypair(&path, &key)?;
        let rpc = &self.faucet.rpc;
        let sig = rpc
            .request_airdrop(&key.pubkey(), 10 * SOL)
            .map_err(|e| self.faucet.rpc_err(e))?;
        let deadline = Instant::now() + Duration::from_secs(60);
        while !rpc.confirm_transaction(&sig).unwrap_or(false) {
            if Instant::now() > deadline {
                return Err(CliError::Refused(format!(
                    "the airdrop to {} was not confirmed in 60 s",
                    key.pubkey()
                )));
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        let (program, mint) = (self.info.token_program, self.info.mint);
        let faucet = self.faucet.payer()?.pubkey();
        let ata = token::associated_token_address(&key.pubkey(), &mint, &program);
        let ixs = [
            token::create_associated_token_account_ix(&program, &faucet, &key.pubkey(), &mint)
                .map_err(|e| CliError::Refused(e.to_string()))?,
            token::mint_to_ix(&program, &mint, &ata, &faucet, tokens)
                .map_err(|e| CliError::Refused(e.to_string()))?,
        ];
        self.faucet.send(&format!("funding {name}"), &ixs, &[])?;
        Ok((key, path))
    }

    /// Funds and registers a new provider (the network's node capacity, 0.0001
    /// tokens per MiB per epoch, stake for the collateral of a full node: 5
    /// tokens a GiB) and starts its node.
    pub fn add_node(&mut self, say: &dyn Fn(&str)) -> Result<usize, CliError> {
        let index = self.nodes.len();
        let gib = self.node_capacity.div_ceil(1 << 30);
        let stake = 5 * gib;
        let (authority, key) =
            self.user(&format!("provider-{index}"), (stake + 5) * 10u64.pow(6))?;
        let port = free_port(true);
        let endpoint: SocketAddr = ([127, 0, 0, 1], port).into();
        provider::run(
            &self.ctx(&key),
            ProviderCommand::Register(RegisterArgs {
                endpoint: endpoint.to_string(),
                capacity: self.node_capacity,
                price: "0.0001".into(),
                operator: None,
                stake: Some(stake.to_string()),
            }),
        )?;
        let data_dir = self.dir.join(format!("node-{index}"));
        let mut node = NodeProc {
            index,
            key,
            authority: authority.pubkey(),
            provider: cairn_chain::provider_pda(&authority.pubkey()),
            endpoint,
            data_dir,
            service: None,
        };
        self.run_node(&mut node)?;
        say(&format!(
            "node {index} up: provider {} at {endpoint} (pid {})",
            node.provider,
            node.service.as_ref().and_then(Service::pid).unwrap_or(0)
        ));
        self.nodes.push(node);
        Ok(index)
    }

    /// Starts (or restarts) `node`'s process and waits until it serves.
    fn run_node(&self, node: &mut NodeProc) -> Result<(), CliError> {
        std::fs::create_dir_all(&node.data_dir).map_err(CliError::io(&node.data_dir))?;
        let metrics: SocketAddr = ([127, 0, 0, 1], free_port(false)).into();
        let config = cairn_storage_node::config::Config {
            data_dir: node.data_dir.join("data"),
            listen: node.endpoint,
            metrics_listen: metrics.to_string(),
            rpc_url: self.info.rpc_url.clone(),
            provider_authority: node.authority.to_string(),
            operator_keypair: node.key.clone(),
            // Six nodes and a validator share this machine: poll the chain
            // once a second (an epoch is 20 slots).
            poll_ms: 1000,
            ..cairn_storage_node::config::Config::default()
        };
        let config_file = node.data_dir.join("cairn-node.toml");
        let text = toml::to_string(&config).map_err(|e| CliError::Refused(e.to_string()))?;
        std::fs::write(&config_file, text).map_err(CliError::io(&config_file))?;
        let mut service = self
            .launcher
            .spawn(
                "node",
                &[
                    "--config".into(),
                    config_file.display().to_string(),
                    "run".into(),
                ],
                &node.data_dir.join("node.log"),
            )
            .map_err(CliError::io(&self.launcher.exe))?;
        let log = service.log.clone();
        wait_for(&format!("node {}", node.index), &mut service, || {
            std::fs::read_to_string(&log)
                .ok()
                .filter(|t| t.contains("listening on"))
        })?;
        node.service = Some(service);
        Ok(())
    }

    /// SIGKILLs node `i` (its data stays on disk).
    pub fn kill_node(&mut self, i: usize) {
        if let Some(mut s) = self.nodes[i].service.take() {
            s.kill();
        }
    }

    /// The node whose provider account is `provider`.
    pub fn node_of(&self, provider: &Pubkey) -> Option<&NodeProc> {
        self.nodes.iter().find(|n| n.provider == *provider)
    }

    /// `GET path` from the indexer: the JSON of a 200 answer.
    pub fn indexer_get(&self, path: &str) -> Result<Value, CliError> {
        let (_, addr) = self
            .indexer
            .as_ref()
            .ok_or_else(|| CliError::Refused("no indexer in this network".into()))?;
        match cairn_indexer::client::get_json(*addr, path) {
            Ok((200, v)) => Ok(v),
            Ok((status, v)) => Err(CliError::Refused(format!(
                "indexer GET {path}: {status} {v}"
            ))),
            Err(e) => Err(CliError::Refused(format!("indexer: {e}"))),
        }
    }

    /// The explorer page's URL.
    pub fn explorer_url(&self) -> Option<String> {
        self.indexer.as_ref().map(|(_, a)| format!("http://{a}/"))
    }
}
