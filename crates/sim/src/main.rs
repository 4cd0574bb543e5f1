//! `cairn-sim`: prints the Proving v2 detection, economics and cost tables for each
//! `samples_per_epoch` (see the library's module docs for the rules modelled).

use std::io::Write as _;
use std::process::ExitCode;

use cairn_sim::cost::Fees;
use cairn_sim::detection::MonteCarloConfig;
use cairn_sim::economics::{ChainOnlyConfig, Market};
use cairn_sim::report::{render_text, run, Config};
use clap::Parser;

/// Model Cairn's per-provider proving (Proving v2) to choose its default parameters.
#[derive(Debug, Parser)]
#[command(name = "cairn-sim", version)]
struct Args {
    /// samples_per_epoch values to compare.
    #[arg(long, value_delimiter = ',', default_value = "4,8,16,32")]
    samples: Vec<u32>,
    /// Deals of the provider in the detection and economics tables.
    #[arg(long, default_value_t = 1000)]
    deals: u64,
    /// Dropped fractions in the detection and economics tables (one whole deal is
    /// always added).
    #[arg(long, value_delimiter = ',', default_value = "0.01,0.1")]
    drop_fractions: Vec<f64>,
    /// Shard size (GiB) of the detection and economics tables.
    #[arg(long, default_value_t = 4.0)]
    shard_gib: f64,
    /// Monte Carlo trials per detection row.
    #[arg(long, default_value_t = 100_000)]
    trials: u64,
    /// Epochs after which a detection trial is recorded as never caught.
    #[arg(long, default_value_t = 1_000_000)]
    max_epochs: u64,
    /// RNG seed of the detection Monte Carlo.
    #[arg(long, default_value_t = MonteCarloConfig::default().seed)]
    seed: u64,
    /// Client price, USD per TB-month of shard bytes.
    #[arg(long, default_value_t = 2.0)]
    price_usd_per_tb_month: f64,
    /// Provider's storage cost, USD per TB-month.
    #[arg(long, default_value_t = 1.0)]
    storage_cost_usd_per_tb_month: f64,
    /// Collateral per deal, in epochs of its price.
    #[arg(long, default_value_t = 30.0)]
    collateral_epochs: f64,
    /// Collateral moved to the client per failed epoch, basis points.
    #[arg(long, default_value_t = 1000)]
    slash_bps: u32,
    /// Failed epochs within the window that jail the provider.
    #[arg(long, default_value_t = 3)]
    jail_failures: u32,
    /// Jail window, epochs.
    #[arg(long, default_value_t = 30)]
    jail_window: u32,
    /// Fraction of clients ending their deal after the first caught failure.
    #[arg(long, default_value_t = 1.0)]
    end_fraction: f64,
    /// Extra rule under study: a failure also forfeits the pay of the previous W epochs.
    #[arg(long, default_value_t = 0)]
    forfeit_epochs: u32,
    /// Horizon of the chain-rules-only simulation, epochs.
    #[arg(long, default_value_t = 365)]
    horizon_epochs: u64,
    /// Trials per row of the chain-rules-only simulation.
    #[arg(long, default_value_t = 20_000)]
    econ_trials: u64,
    /// RNG seed of the chain-rules-only simulation.
    #[arg(long, default_value_t = ChainOnlyConfig::default().seed)]
    econ_seed: u64,
    /// Fee per signature, lamports.
    #[arg(long, default_value_t = 5_000)]
    lamports_per_signature: u64,
    /// Signatures per transaction.
    #[arg(long, default_value_t = 1)]
    signatures_per_tx: u32,
    /// Price of SOL, USD.
    #[arg(long, default_value_t = 150.0)]
    sol_usd: f64,
    /// Samples per proof transaction (default: 2 if the shard's path has at most 10
    /// levels, else 1).
    #[arg(long)]
    samples_per_tx: Option<u32>,
    /// Deals settled by one settle transaction.
    #[arg(long, default_value_t = 20)]
    settle_deals_per_tx: u64,
    /// Settlements per deal per month.
    #[arg(long, default_value_t = 1.0)]
    settles_per_deal_month: f64,
    /// Deal lifetime, epochs (one acceptance transaction each).
    #[arg(long, default_value_t = 30)]
    deal_epochs: u32,
    /// Epochs per month.
    #[arg(long, default_value_t = 30)]
    epochs_per_month: u32,
    /// Provider sizes (deals) of the cost table.
    #[arg(long, value_delimiter = ',', default_value = "1,100,10000,100000")]
    cost_deals: Vec<u64>,
    /// Shard sizes (GiB) of the cost table.
    #[arg(long, value_delimiter = ',', default_value = "4,1")]
    cost_shard_gib: Vec<f64>,
    /// Cost target of the break-even table, USD per TB-month.
    #[arg(long, default_value_t = 0.10)]
    target_usd_per_tb_month: f64,
    /// Largest provider (deals) the break-even search tries.
    #[arg(long, default_value_t = 1_000_000)]
    break_even_search_limit: u64,
    /// Print the numbers as JSON instead of tables.
    #[arg(long)]
    json: bool,
}

impl Args {
    fn config(&self) -> Config {
        Config {
            samples: self.samples.clone(),
            deals: self.deals,
            drop_fractions: self.drop_fractions.clone(),
            detection: MonteCarloConfig {
                trials: self.trials,
                max_epochs: self.max_epochs,
                seed: self.seed,
            },
            market: Market {
                shard_gib: self.shard_gib,
                price_usd_per_tb_month: self.price_usd_per_tb_month,
                storage_cost_usd_per_tb_month: self.storage_cost_usd_per_tb_month,
                collateral_epochs: self.collateral_epochs,
                slash_bps: self.slash_bps,
                jail_failures: self.jail_failures,
                jail_window: self.jail_window,
                end_fraction: self.end_fraction,
                forfeit_epochs: self.forfeit_epochs,
                epochs_per_month: self.epochs_per_month,
            },
            chain: ChainOnlyConfig {
                horizon_epochs: self.horizon_epochs,
                trials: self.econ_trials,
                seed: self.econ_seed,
            },
            fees: Fees {
                lamports_per_signature: self.lamports_per_signature,
                signatures_per_tx: self.signatures_per_tx,
                sol_usd: self.sol_usd,
                settle_deals_per_tx: self.settle_deals_per_tx,
                settles_per_deal_month: self.settles_per_deal_month,
                deal_epochs: self.deal_epochs,
                epochs_per_month: self.epochs_per_month,
                samples_per_tx: self.samples_per_tx,
            },
            cost_deals: self.cost_deals.clone(),
            cost_shard_gib: self.cost_shard_gib.clone(),
            target_usd_per_tb_month: self.target_usd_per_tb_month,
            break_even_search_limit: self.break_even_search_limit,
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    let report = match run(&args.config()) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("cairn-sim: {e}");
            return ExitCode::from(2);
        }
    };
    let text = if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(json) => json + "\n",
            Err(e) => {
                eprintln!("cairn-sim: JSON: {e}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        render_text(&report)
    };
    match std::io::stdout().lock().write_all(text.as_bytes()) {
        Ok(()) => ExitCode::SUCCESS,
        // A reader that stopped early (`cairn-sim | head`) is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("cairn-sim: {e}");
            ExitCode::FAILURE
        }
    }
}
