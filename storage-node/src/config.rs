//! The node's configuration file: a serde struct with a default for every field
//! (in [`defaults`]) and a [`Config::validate`] that names the bad field.

use serde::{Deserialize, Serialize};
use std::{net::SocketAddr, path::PathBuf, time::Duration};

/// Default values of every [`Config`] field.
pub mod defaults {
    use std::{net::SocketAddr, path::PathBuf};

    /// `./cairn-node-data`.
    pub fn data_dir() -> PathBuf {
        PathBuf::from("cairn-node-data")
    }
    /// QUIC on all interfaces, port 7000.
    pub fn listen() -> SocketAddr {
        SocketAddr::from(([0, 0, 0, 0], 7000))
    }
    /// Prometheus metrics on localhost, port 9100.
    pub fn metrics_listen() -> String {
        "127.0.0.1:9100".into()
    }
    /// The local network's RPC endpoint.
    pub fn rpc_url() -> String {
        "http://127.0.0.1:8899".into()
    }
    /// The storage-market program compiled into this binary.
    pub fn program_id() -> String {
        cairn_chain::PROGRAM_ID.to_string()
    }
    /// `operator.json` beside the config.
    pub fn operator_keypair() -> PathBuf {
        PathBuf::from("operator.json")
    }
    /// 100 GiB.
    pub fn capacity_bytes() -> u64 {
        100 << 30
    }
    /// 100 token base units per MiB per epoch.
    pub fn price_per_mib_epoch() -> u64 {
        100
    }
    /// 64 KiB, the protocol's default.
    pub fn max_header_bytes() -> usize {
        cairn_core::wire::DEFAULT_MAX_HEADER_LEN
    }
    /// 256 connections.
    pub fn max_connections() -> u32 {
        256
    }
    /// 16 concurrent requests per connection.
    pub fn max_streams_per_connection() -> u32 {
        16
    }
    /// 30 s.
    pub fn idle_timeout_ms() -> u64 {
        30_000
    }
    /// 30 s.
    pub fn request_timeout_ms() -> u64 {
        30_000
    }
    /// 8 MiB.
    pub fn checkpoint_bytes() -> u64 {
        8 << 20
    }
    /// 32 connections per IP address.
    pub fn max_connections_per_ip() -> u32 {
        32
    }
    /// 20 per second.
    pub fn unknown_deals_per_sec_per_ip() -> u32 {
        20
    }
    /// 256 MiB.
    pub fn min_free_disk_bytes() -> u64 {
        256 << 20
    }
    /// 60 s.
    pub fn sweep_secs() -> u64 {
        60
    }
    /// 4 chunks per stored shard.
    pub fn verify_samples() -> u32 {
        4
    }
    /// On.
    pub fn prover() -> bool {
        true
    }
    /// 400 ms.
    pub fn poll_ms() -> u64 {
        400
    }
    /// 60 s.
    pub fn reconcile_secs() -> u64 {
        60
    }
    /// 1,000 micro-lamports per compute unit: 200 lamports on a proof transaction.
    pub fn priority_fee_micro_lamports() -> u64 {
        1_000
    }
    /// Every 7 epochs (a week of daily epochs).
    pub fn settle_interval_epochs() -> u64 {
        7
    }
}

/// `cairn-node` configuration (TOML). Every field has a default; `cairn-node init`
/// writes them all with their documentation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Directory holding shard files (`shards/`, `partial/`) and the RocksDB (`db/`).
    #[serde(default = "defaults::data_dir")]
    pub data_dir: PathBuf,
    /// UDP address the QUIC server listens on (ALPN `cairn/1`).
    #[serde(default = "defaults::listen")]
    pub listen: SocketAddr,
    /// TCP address of the Prometheus `/metrics` endpoint; empty to disable it.
    #[serde(default = "defaults::metrics_listen")]
    pub metrics_listen: String,
    /// Solana JSON-RPC endpoint.
    #[serde(default = "defaults::rpc_url")]
    pub rpc_url: String,
    /// The storage-market program id (base58). Must be the program this binary
    /// was built against.
    #[serde(default = "defaults::program_id")]
    pub program_id: String,
    /// The provider's authority (base58): the node serves deals of the provider
    /// account `["provider", authority]`.
    #[serde(default)]
    pub provider_authority: String,
    /// Keypair file (JSON byte array) of the provider's operator (hot) key: it
    /// signs `accept_deal`, epoch openings, proofs and settlements, pays their fees
    /// and rent (deal-set pages, proof-log pages, the lookup table), and is the
    /// node's TLS identity.
    #[serde(default = "defaults::operator_keypair")]
    pub operator_keypair: PathBuf,
    /// Bytes of shard data this node accepts in total.
    #[serde(default = "defaults::capacity_bytes")]
    pub capacity_bytes: u64,
    /// Price per MiB per epoch (token base units) the provider is registered
    /// with; the node warns at start when the chain's price differs.
    #[serde(default = "defaults::price_per_mib_epoch")]
    pub price_per_mib_epoch: u64,
    /// Largest request header frame accepted, in bytes.
    #[serde(default = "defaults::max_header_bytes")]
    pub max_header_bytes: usize,
    /// Most simultaneous QUIC connections; more are refused.
    #[serde(default = "defaults::max_connections")]
    pub max_connections: u32,
    /// Most simultaneous requests (bidirectional streams) per connection.
    #[serde(default = "defaults::max_streams_per_connection")]
    pub max_streams_per_connection: u32,
    /// A connection silent this long (ms) is closed.
    #[serde(default = "defaults::idle_timeout_ms")]
    pub idle_timeout_ms: u64,
    /// Longest wait (ms) for a request header, and between two pieces of an
    /// upload body.
    #[serde(default = "defaults::request_timeout_ms")]
    pub request_timeout_ms: u64,
    /// An upload is fsynced and its resume offset recorded every this many bytes.
    #[serde(default = "defaults::checkpoint_bytes")]
    pub checkpoint_bytes: u64,
    /// Most simultaneous QUIC connections from one IP address; more are refused.
    #[serde(default = "defaults::max_connections_per_ip")]
    pub max_connections_per_ip: u32,
    /// Requests naming deals the node does not have (each costs a chain lookup)
    /// that one IP address may make per second; past it, `Busy` for a second.
    #[serde(default = "defaults::unknown_deals_per_sec_per_ip")]
    pub unknown_deals_per_sec_per_ip: u32,
    /// Disk space always left free for the database and the system; uploads are
    /// refused with `CapacityExceeded` rather than fill the disk.
    #[serde(default = "defaults::min_free_disk_bytes")]
    pub min_free_disk_bytes: u64,
    /// How often (s) idle uploads are closed and the uploads of deals that are no
    /// longer proposed (cancelled, closed) are dropped with the capacity they hold.
    #[serde(default = "defaults::sweep_secs")]
    pub sweep_secs: u64,
    /// 4 KiB chunks per stored shard checked against the kept Merkle levels at start.
    #[serde(default = "defaults::verify_samples")]
    pub verify_samples: u32,
    /// Run the prover (open epochs, prove the provider's session every epoch,
    /// accept stored deals, settle, remove ended deals from the deal set and delete
    /// finished deals' shards).
    #[serde(default = "defaults::prover")]
    pub prover: bool,
    /// How often the prover reads the slot (ms), and, until the epoch is proven,
    /// its challenge. Deals are scanned once an epoch and every `reconcile_secs`.
    #[serde(default = "defaults::poll_ms")]
    pub poll_ms: u64,
    /// Longest time (s) between two scans of the provider's deals
    /// (`getProgramAccounts`) besides the one every epoch: retries acceptances that
    /// failed, settlement and deal-set removals, and deletes finished shards.
    #[serde(default = "defaults::reconcile_secs")]
    pub reconcile_secs: u64,
    /// Priority fee of proof transactions, in micro-lamports per compute unit.
    #[serde(default = "defaults::priority_fee_micro_lamports")]
    pub priority_fee_micro_lamports: u64,
    /// Settle running deals when this many epochs are unsettled (earnings flow);
    /// a deal is also settled when it ends.
    #[serde(default = "defaults::settle_interval_epochs")]
    pub settle_interval_epochs: u64,
}

impl Default for Config {
    fn default() -> Self {
        toml::from_str("").expect("every field has a default")
    }
}

/// A configuration value that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("config field `{field}`: {reason}")]
pub struct ConfigError {
    /// The field's name, as written in the file.
    pub field: &'static str,
    /// What is wrong and what to do.
    pub reason: String,
}

fn bad(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        field,
        reason: reason.into(),
    }
}

impl Config {
    /// Parses a TOML config and validates it.
    pub fn from_toml(text: &str) -> Result<Config, anyhow::Error> {
        let config: Config = toml::from_str(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every field; the error names the first bad one.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.data_dir.as_os_str().is_empty() {
            return Err(bad("data_dir", "must not be empty"));
        }
        if !(self.rpc_url.starts_with("http://") || self.rpc_url.starts_with("https://")) {
            return Err(bad(
                "rpc_url",
                format!("`{}` is not an http(s) URL", self.rpc_url),
            ));
        }
        let program: cairn_chain::Pubkey = self
            .program_id
            .parse()
            .map_err(|_| bad("program_id", format!("`{}` is not base58", self.program_id)))?;
        if program != cairn_chain::PROGRAM_ID {
            return Err(bad(
                "program_id",
                format!(
                    "this binary speaks to program {}, not {program}",
                    cairn_chain::PROGRAM_ID
                ),
            ));
        }
        if self.provider_authority.is_empty() {
            return Err(bad(
                "provider_authority",
                "set the provider's authority public key (base58)",
            ));
        }
        self.provider_authority
            .parse::<cairn_chain::Pubkey>()
            .map_err(|_| {
                bad(
                    "provider_authority",
                    format!("`{}` is not a base58 public key", self.provider_authority),
                )
            })?;
        if !self.metrics_listen.is_empty() && self.metrics_listen.parse::<SocketAddr>().is_err() {
            return Err(bad(
                "metrics_listen",
                format!(
                    "`{}` is not a host:port address (empty disables metrics)",
                    self.metrics_listen
                ),
            ));
        }
        if self.capacity_bytes == 0 {
            return Err(bad("capacity_bytes", "must be more than 0"));
        }
        if self.max_header_bytes < 256 || self.max_header_bytes > 1 << 20 {
            return Err(bad("max_header_bytes", "must be between 256 and 1048576"));
        }
        if self.max_connections == 0 {
            return Err(bad("max_connections", "must be at least 1"));
        }
        if self.max_streams_per_connection == 0 {
            return Err(bad("max_streams_per_connection", "must be at least 1"));
        }
        if self.idle_timeout_ms < 100 {
            return Err(bad("idle_timeout_ms", "must be at least 100"));
        }
        if self.request_timeout_ms < 100 {
            return Err(bad("request_timeout_ms", "must be at least 100"));
        }
        if self.checkpoint_bytes < 4096 {
            return Err(bad("checkpoint_bytes", "must be at least 4096"));
        }
        if self.max_connections_per_ip == 0 {
            return Err(bad("max_connections_per_ip", "must be at least 1"));
        }
        if self.unknown_deals_per_sec_per_ip == 0 {
            return Err(bad("unknown_deals_per_sec_per_ip", "must be at least 1"));
        }
        if self.sweep_secs == 0 {
            return Err(bad("sweep_secs", "must be at least 1"));
        }
        if self.poll_ms == 0 {
            return Err(bad("poll_ms", "must be at least 1"));
        }
        if self.reconcile_secs == 0 {
            return Err(bad("reconcile_secs", "must be at least 1"));
        }
        if self.settle_interval_epochs == 0 {
            return Err(bad("settle_interval_epochs", "must be at least 1"));
        }
        Ok(())
    }

    /// The provider account's authority.
    pub fn provider_authority(&self) -> cairn_chain::Pubkey {
        self.provider_authority.parse().expect("validated")
    }

    /// The metrics address, `None` when disabled.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics_listen.parse().ok()
    }

    /// Makes relative paths relative to `dir` (the config file's directory).
    pub fn resolve_paths(&mut self, dir: &std::path::Path) {
        for path in [&mut self.data_dir, &mut self.operator_keypair] {
            if path.is_relative() {
                *path = dir.join(&*path);
            }
        }
    }

    /// [`Config::idle_timeout_ms`] as a duration.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_millis(self.idle_timeout_ms)
    }

    /// The QUIC server's limits.
    pub fn limits(&self) -> crate::server::Limits {
        crate::server::Limits {
            capacity_bytes: self.capacity_bytes,
            max_header_bytes: self.max_header_bytes,
            max_connections: self.max_connections,
            max_connections_per_ip: self.max_connections_per_ip,
            unknown_deals_per_sec_per_ip: self.unknown_deals_per_sec_per_ip,
            min_free_disk_bytes: self.min_free_disk_bytes,
            sweep_interval: Duration::from_secs(self.sweep_secs),
            request_timeout: self.request_timeout(),
            checkpoint_bytes: self.checkpoint_bytes,
        }
    }

    /// [`Config::request_timeout_ms`] as a duration.
    pub fn request_timeout(&self) -> Duration {
        Duration::from_millis(self.request_timeout_ms)
    }

    /// A config file with every field, its documentation and its value.
    pub fn documented_toml(&self) -> String {
        let values = toml::to_string(self).expect("config serializes");
        let mut out = String::from(
            "# cairn-node configuration. Many values can also be set with a flag or an\n\
             # environment variable: see `cairn-node run --help`. Relative paths are\n\
             # relative to this file's directory.\n",
        );
        for line in values.lines() {
            if let Some((key, _)) = line.split_once(" = ") {
                for doc in FIELD_DOCS.iter().filter(|(k, _)| *k == key.trim()) {
                    out.push('\n');
                    for d in doc.1.lines() {
                        out.push_str("# ");
                        out.push_str(d);
                        out.push('\n');
                    }
                }
            }
            out.push_str(line);
            out.push('\n');
        }
        out
    }
}

/// The doc comments of [`Config`]'s fields, written into `cairn-node init`'s file.
const FIELD_DOCS: &[(&str, &str)] = &[
    ("data_dir", "Directory holding shard files (shards/, partial/) and the RocksDB (db/)."),
    ("listen", "UDP address the QUIC server listens on (ALPN cairn/1)."),
    ("metrics_listen", "TCP address of the Prometheus /metrics endpoint; \"\" disables it."),
    ("rpc_url", "Solana JSON-RPC endpoint."),
    ("program_id", "The storage-market program id (base58)."),
    ("provider_authority", "The provider's authority public key (base58): the node serves deals of\nthe provider account [\"provider\", authority]."),
    ("operator_keypair", "Keypair file of the provider's operator (hot) key: signs accept_deal, epoch\nopenings, proofs and settlements, pays their fees and rent (deal-set pages,\nproof-log pages, the lookup table), and is the node's TLS identity."),
    ("capacity_bytes", "Bytes of shard data this node accepts in total."),
    ("price_per_mib_epoch", "Price per MiB per epoch (token base units) the provider is registered with;\nthe node warns at start when the chain's price differs."),
    ("max_header_bytes", "Largest request header frame accepted, in bytes."),
    ("max_connections", "Most simultaneous QUIC connections; more are refused."),
    ("max_streams_per_connection", "Most simultaneous requests (streams) per connection."),
    ("idle_timeout_ms", "A connection silent this long (ms) is closed."),
    ("request_timeout_ms", "Longest wait (ms) for a request header, and between two pieces of an upload."),
    ("checkpoint_bytes", "An upload is fsynced and its resume offset recorded every this many bytes."),
    ("max_connections_per_ip", "Most simultaneous QUIC connections from one IP address; more are refused."),
    ("unknown_deals_per_sec_per_ip", "Requests naming deals the node does not have (each costs a chain lookup)\nthat one IP address may make per second; past it, Busy for a second."),
    ("min_free_disk_bytes", "Disk space always left free for the database and the system; uploads are\nrefused with CapacityExceeded rather than fill the disk."),
    ("sweep_secs", "How often (s) idle uploads are closed, and uploads of deals no longer\nproposed (cancelled, closed) are dropped with the capacity they hold."),
    ("verify_samples", "4 KiB chunks per stored shard checked against its Merkle tree at start."),
    ("prover", "Run the prover (open epochs, prove every epoch, accept stored deals, settle,\nremove ended deals from the deal set, delete finished deals' shards)."),
    ("poll_ms", "How often the prover reads the slot (ms), and, until the epoch is proven,\nits challenge. Deals are scanned once an epoch and every reconcile_secs."),
    ("reconcile_secs", "Longest time (s) between two scans of the provider's deals (getProgramAccounts)\nbesides the one every epoch: retries failed acceptances, settles, removes ended\ndeals from the deal set and deletes finished shards."),
    ("priority_fee_micro_lamports", "Priority fee of proof transactions (micro-lamports per compute unit)."),
    ("settle_interval_epochs", "Settle running deals when this many epochs are unsettled; a deal is\nalso settled when it ends."),
];

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Config {
        Config {
            provider_authority: cairn_chain::Pubkey::new_unique().to_string(),
            ..Config::default()
        }
    }

    #[test]
    fn init_file_round_trips_and_documents_every_field() {
        let config = valid();
        let text = config.documented_toml();
        assert_eq!(Config::from_toml(&text).unwrap(), config);
        for (field, _) in FIELD_DOCS {
            assert!(
                text.contains(&format!("{field} = ")) || *field == "metrics_listen",
                "{field}"
            );
        }
        assert!(text.contains("# Bytes of shard data this node accepts in total."));
    }

    #[test]
    fn a_bad_value_names_its_field() {
        let mut c = valid();
        c.capacity_bytes = 0;
        assert_eq!(c.validate().unwrap_err().field, "capacity_bytes");
        let mut c = valid();
        c.rpc_url = "localhost:8899".into();
        assert_eq!(c.validate().unwrap_err().field, "rpc_url");
        let mut c = valid();
        c.reconcile_secs = 0;
        assert_eq!(c.validate().unwrap_err().field, "reconcile_secs");
        let mut c = valid();
        c.settle_interval_epochs = 0;
        assert_eq!(c.validate().unwrap_err().field, "settle_interval_epochs");
        let c = Config::default();
        assert_eq!(c.validate().unwrap_err().field, "provider_authority");
        // Fields of the removed fault reporter are unknown now.
        let err = Config::from_toml("bounty_token_account = \"\"").unwrap_err();
        assert!(err.to_string().contains("bounty_token_account"), "{err}");
        let err = Config::from_toml("capacity_bytes = \"lots\"").unwrap_err();
        assert!(err.to_string().contains("capacity_bytes"), "{err}");
    }
}
