//! The report the `cairn-sim` binary prints: detection, economics, cost and break-even
//! tables for every `samples_per_epoch` in the [`Config`], as text ([`render_text`]) or
//! as a serialisable [`Report`].
//!
//! Each Monte Carlo run gets its own seed, `seed + row index`, so a run is reproducible
//! and rows are independent.

use std::fmt::Write as _;

use serde::Serialize;

use crate::cost::{break_even, cost_row, shard_bytes, tree_depth, BreakEven, CostRow, Fees, Scope};
use crate::detection::{detection_row, DetectionRow, DropPattern, MonteCarloConfig, SEGMENT_BYTES};
use crate::economics::{economics_row, ChainOnlyConfig, EconomicsRow, Market};
use crate::{ensure, SimError};

/// Everything a run needs.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Config {
    /// `samples_per_epoch` values to compare.
    pub samples: Vec<u32>,
    /// Deals of the provider in the detection and economics tables.
    pub deals: u64,
    /// Dropped fractions in the detection and economics tables (one whole deal is
    /// always added).
    pub drop_fractions: Vec<f64>,
    /// Detection Monte Carlo settings.
    pub detection: MonteCarloConfig,
    /// Market rules; `market.shard_gib` is the shard size of the detection and
    /// economics tables.
    pub market: Market,
    /// Chain-rules-only simulation settings.
    pub chain: ChainOnlyConfig,
    /// Fees and transaction shapes.
    pub fees: Fees,
    /// Provider sizes (deals) in the cost table.
    pub cost_deals: Vec<u64>,
    /// Shard sizes (GiB) in the cost and break-even tables.
    pub cost_shard_gib: Vec<f64>,
    /// Cost target for the break-even table, USD per TB-month.
    pub target_usd_per_tb_month: f64,
    /// Largest provider (deals) the break-even search tries.
    pub break_even_search_limit: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            samples: vec![4, 8, 16, 32],
            deals: 1000,
            drop_fractions: vec![0.01, 0.10],
            detection: MonteCarloConfig::default(),
            market: Market::default(),
            chain: ChainOnlyConfig::default(),
            fees: Fees::default(),
            cost_deals: vec![1, 100, 10_000, 100_000],
            cost_shard_gib: vec![4.0, 1.0],
            target_usd_per_tb_month: 0.10,
            break_even_search_limit: 1_000_000,
        }
    }
}

impl Config {
    /// Checks the lists and every nested setting.
    pub fn validate(&self) -> Result<(), SimError> {
        ensure(
            !self.samples.is_empty(),
            "samples",
            "[]",
            "at least one value",
        )?;
        for &s in &self.samples {
            ensure(s >= 1, "samples per epoch", s, ">= 1")?;
        }
        ensure(self.deals >= 1, "deals", self.deals, ">= 1")?;
        for &f in &self.drop_fractions {
            DropPattern::Fraction { f }.validate()?;
        }
        for &d in &self.cost_deals {
            ensure(d >= 1, "cost deals", d, ">= 1")?;
        }
        for &g in &self.cost_shard_gib {
            ensure(g > 0.0, "cost shard GiB", g, "> 0")?;
        }
        self.market.validate()?;
        self.fees.validate()
    }

    /// The drop patterns of the detection and economics tables.
    pub fn patterns(&self) -> Vec<DropPattern> {
        self.drop_fractions
            .iter()
            .map(|&f| DropPattern::Fraction { f })
            .chain([DropPattern::OneDeal])
            .collect()
    }
}

/// Per-deal figures derived from the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Derived {
    /// One shard, TB.
    pub shard_tb: f64,
    /// 64-byte segments in one shard.
    pub shard_segments: u64,
    /// Merkle path levels of one shard.
    pub tree_depth: u32,
    /// `p`, USD per deal per epoch.
    pub price_per_deal_epoch: f64,
    /// `c`, USD per deal per epoch.
    pub cost_per_deal_epoch: f64,
    /// `C`, USD per deal.
    pub collateral_per_deal: f64,
    /// Penalty per deal per failed epoch, USD.
    pub penalty_per_deal: f64,
    /// Lowest loss/savings ratio under the chain rules for any drop and sample count.
    pub ratio_floor: f64,
    /// One transaction, USD.
    pub usd_per_tx: f64,
}

/// All the numbers of one run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    /// The inputs.
    pub config: Config,
    /// Derived per-deal figures.
    pub derived: Derived,
    /// Detection rows, by `samples_per_epoch` then pattern.
    pub detection: Vec<DetectionRow>,
    /// Economics rows, by `samples_per_epoch` then pattern.
    pub economics: Vec<EconomicsRow>,
    /// Cost rows, by shard size, deals, then `samples_per_epoch`.
    pub cost: Vec<CostRow>,
    /// Smallest providers meeting the cost target.
    pub break_even: Vec<BreakEven>,
}

/// Runs every model over `config`.
pub fn run(config: &Config) -> Result<Report, SimError> {
    config.validate()?;
    let market = &config.market;
    let bytes = shard_bytes(market.shard_gib);
    let derived = Derived {
        shard_tb: market.shard_tb(),
        shard_segments: bytes.div_ceil(SEGMENT_BYTES),
        tree_depth: tree_depth(bytes),
        price_per_deal_epoch: market.price_per_deal_epoch(),
        cost_per_deal_epoch: market.cost_per_deal_epoch(),
        collateral_per_deal: market.collateral_per_deal(),
        penalty_per_deal: market.penalty_per_deal(),
        ratio_floor: market.ratio_floor(),
        usd_per_tx: config.fees.usd_per_tx(),
    };

    let mut detection = Vec::new();
    let mut economics = Vec::new();
    let mut index = 0u64;
    for &s in &config.samples {
        for pattern in config.patterns() {
            let mc = MonteCarloConfig {
                seed: config.detection.seed.wrapping_add(index),
                ..config.detection
            };
            detection.push(detection_row(pattern, config.deals, bytes, s, mc)?);
            let chain = ChainOnlyConfig {
                seed: config.chain.seed.wrapping_add(index),
                ..config.chain
            };
            economics.push(economics_row(market, config.deals, pattern, s, chain)?);
            index += 1;
        }
    }

    let mut cost = Vec::new();
    let mut break_evens = Vec::new();
    for &gib in &config.cost_shard_gib {
        for &deals in &config.cost_deals {
            for &s in &config.samples {
                cost.push(cost_row(&config.fees, deals, gib, s)?);
            }
        }
        for scope in [Scope::Recurring, Scope::AllIn] {
            for &s in &config.samples {
                break_evens.push(break_even(
                    &config.fees,
                    gib,
                    s,
                    scope,
                    config.target_usd_per_tb_month,
                    config.break_even_search_limit,
                )?);
            }
        }
    }

    Ok(Report {
        config: config.clone(),
        derived,
        detection,
        economics,
        cost,
        break_even: break_evens,
    })
}

/// A plain-text table: first column left-aligned, the rest right-aligned.
struct Table {
    headers: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    fn new(headers: &[&str]) -> Table {
        Table {
            headers: headers.iter().map(|h| h.to_string()).collect(),
            rows: Vec::new(),
        }
    }

    fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    fn render(&self, out: &mut String) {
        let mut widths: Vec<usize> = self.headers.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &[String], out: &mut String| {
            let mut text = String::new();
            for (i, (cell, w)) in cells.iter().zip(&widths).enumerate() {
                if i > 0 {
                    text.push_str("  ");
                }
                let pad = w.saturating_sub(cell.chars().count());
                if i == 0 {
                    text.push_str(cell);
                    text.push_str(&" ".repeat(pad));
                } else {
                    text.push_str(&" ".repeat(pad));
                    text.push_str(cell);
                }
            }
            out.push_str(text.trim_end());
            out.push('\n');
        };
        line(&self.headers, out);
        let rule: Vec<String> = widths.iter().map(|&w| "-".repeat(w)).collect();
        line(&rule, out);
        for row in &self.rows {
            line(row, out);
        }
    }
}

/// `x` with `sig` significant digits (no exponent; at most 8 decimals).
pub fn fmt_sig(x: f64, sig: i32) -> String {
    if !x.is_finite() {
        return "inf".to_string();
    }
    if x == 0.0 {
        return "0".to_string();
    }
    let magnitude = x.abs().log10().floor() as i32;
    let decimals = (sig - 1 - magnitude).clamp(0, 8) as usize;
    format!("{x:.decimals$}")
}

fn usd(x: f64) -> String {
    format!("${}", fmt_sig(x, 3))
}

fn pct(x: f64) -> String {
    format!("{}%", fmt_sig(x * 100.0, 3))
}

fn epochs(x: Option<u64>) -> String {
    x.map_or_else(|| "never".to_string(), |e| e.to_string())
}

fn count(x: u64) -> String {
    let digits = x.to_string();
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// Renders the report as the text tables the binary prints.
pub fn render_text(report: &Report) -> String {
    let c = &report.config;
    let d = &report.derived;
    let m = &c.market;
    let mut out = String::new();
    // Writing to a String cannot fail.
    let _ = writeln!(out, "cairn-sim: Proving v2 parameter model");
    let _ = writeln!(
        out,
        "provider: {} deals of {} GiB ({} segments, path depth {}); samples_per_epoch in {:?}",
        count(c.deals),
        m.shard_gib,
        count(d.shard_segments),
        d.tree_depth,
        c.samples
    );
    let _ = writeln!(
        out,
        "per deal-epoch: price p = {}, storage cost c = {}; collateral C = {} epochs = {}; \
         penalty = {} bps = {}; jail at {} failures in {} epochs; end_fraction = {}; \
         forfeit_epochs W = {}",
        usd(d.price_per_deal_epoch),
        usd(d.cost_per_deal_epoch),
        m.collateral_epochs,
        usd(d.collateral_per_deal),
        m.slash_bps,
        usd(d.penalty_per_deal),
        m.jail_failures,
        m.jail_window,
        m.end_fraction,
        m.forfeit_epochs
    );
    let _ = writeln!(
        out,
        "fees: {} lamports x {} sig per tx at ${}/SOL = {} per tx; settle {} deals/tx, \
         {} per deal-month; {}-epoch deals; {} epochs/month",
        c.fees.lamports_per_signature,
        c.fees.signatures_per_tx,
        c.fees.sol_usd,
        usd(d.usd_per_tx),
        c.fees.settle_deals_per_tx,
        c.fees.settles_per_deal_month,
        c.fees.deal_epochs,
        c.fees.epochs_per_month
    );

    let _ = writeln!(
        out,
        "\n## Detection (D = {}; Monte Carlo: {} trials per row, seed {} + row)",
        count(c.deals),
        count(c.detection.trials),
        c.detection.seed
    );
    let mut t = Table::new(&[
        "S",
        "dropped",
        "P/epoch",
        "P MC",
        "median",
        "median MC",
        "p99",
        "p99 MC",
        "mean",
        "mean MC",
        "P diff",
        "agree",
    ]);
    for r in &report.detection {
        t.row(vec![
            r.samples_per_epoch.to_string(),
            r.label.clone(),
            pct(r.analytic.catch_per_epoch),
            pct(r.monte_carlo.catch_per_epoch),
            epochs(r.analytic.median_epochs),
            epochs(r.monte_carlo.median_epochs),
            epochs(r.analytic.p99_epochs),
            epochs(r.monte_carlo.p99_epochs),
            r.analytic
                .mean_epochs
                .map_or_else(|| "never".to_string(), |x| fmt_sig(x, 3)),
            fmt_sig(r.monte_carlo.mean_epochs, 3),
            pct(r.catch_relative_difference),
            if r.agrees { "yes" } else { "NO" }.to_string(),
        ]);
    }
    t.render(&mut out);
    let _ = writeln!(
        out,
        "P = 1-(1-q)^s per epoch; median/p99 = epoch of first catch (1 = the first epoch); \
         agree = MC P within 3% of 1-(1-q)^s and MC median, p99 within 3% or 1 epoch (quantiles are whole epochs)."
    );

    let _ = writeln!(
        out,
        "\n## Economics: first catch (D = {}, {} GiB shards)",
        count(c.deals),
        m.shard_gib
    );
    let mut t = Table::new(&[
        "S",
        "dropped",
        "P/epoch",
        "saved/epoch",
        "E[loss]/epoch",
        "E[epochs]",
        "E[saved to catch]",
        "loss 1 failure",
        "ratio",
        "loss if clients end",
        "ratio",
    ]);
    for r in &report.economics {
        t.row(vec![
            r.samples_per_epoch.to_string(),
            r.label.clone(),
            pct(r.catch_per_epoch),
            usd(r.savings_per_epoch),
            usd(r.expected_loss_per_epoch),
            fmt_sig(r.expected_epochs_to_catch, 3),
            usd(r.expected_savings_until_caught),
            usd(r.loss_one_failure),
            fmt_sig(r.ratio_one_failure, 3),
            usd(r.loss_clients_end),
            fmt_sig(r.ratio_clients_end, 3),
        ]);
    }
    t.render(&mut out);
    let _ = writeln!(
        out,
        "loss 1 failure = D*(p*(1+W) + penalty); loss if clients end adds end_fraction*D*(C - penalty); \
         ratio = loss / E[saved to catch] (> 1: cheating does not pay). \
         Floor for any drop and any S: (p*(1+W) + penalty)/c = {}.",
        fmt_sig(d.ratio_floor, 3)
    );

    let _ = writeln!(
        out,
        "\n## Economics: chain rules only, persistent cheater over {} epochs ({} trials per row)",
        c.chain.horizon_epochs,
        count(c.chain.trials)
    );
    let mut t = Table::new(&[
        "S",
        "dropped",
        "jailed",
        "E[epochs cheating]",
        "E[failures]",
        "E[saved]",
        "E[lost]",
        "ratio",
    ]);
    for r in &report.economics {
        let ch = &r.chain_only;
        t.row(vec![
            r.samples_per_epoch.to_string(),
            r.label.clone(),
            pct(ch.jailed_share),
            fmt_sig(ch.mean_epochs_cheating, 3),
            fmt_sig(ch.mean_failures, 3),
            usd(ch.expected_savings),
            usd(ch.expected_loss),
            fmt_sig(ch.ratio, 3),
        ]);
    }
    t.render(&mut out);
    let _ = writeln!(
        out,
        "no client ends a deal; each failure costs D*(p*(1+W) + penalty); at jail the clients take \
         D*max(0, C - M*penalty) = {}.",
        usd(c.deals as f64 * m.collateral_left_at_jail())
    );

    for &gib in &c.cost_shard_gib {
        let rows: Vec<&CostRow> = report.cost.iter().filter(|r| r.shard_gib == gib).collect();
        let Some(first) = rows.first() else { continue };
        let _ = writeln!(
            out,
            "\n## Cost: {} GiB shards (path depth {}, {} sample(s) per proof tx)",
            gib, first.tree_depth, first.samples_per_tx
        );
        let mut t = Table::new(&[
            "D",
            "S",
            "TB",
            "proof",
            "open",
            "settle",
            "accept",
            "tx/epoch",
            "proof+open $/TB-mo",
            "+settle",
            "+accept",
            "old tx/epoch",
            "old $/TB-mo",
        ]);
        for r in rows {
            t.row(vec![
                count(r.deals),
                r.samples_per_epoch.to_string(),
                fmt_sig(r.stored_tb, 3),
                r.tx.proofs.to_string(),
                r.tx.open.to_string(),
                fmt_sig(r.tx.settle, 3),
                fmt_sig(r.tx.accept, 3),
                fmt_sig(r.tx.total(), 4),
                usd(r.proving_usd_per_tb_month),
                usd(r.recurring_usd_per_tb_month),
                usd(r.all_in_usd_per_tb_month),
                count(r.old_proof_tx_per_epoch),
                usd(r.old_proving_usd_per_tb_month),
            ]);
        }
        t.render(&mut out);
    }
    let _ = writeln!(
        out,
        "tx/epoch = proof + open + settle + accept (settle and accept amortised); \
         old = one proof tx per deal per epoch (proofs only)."
    );

    let _ = writeln!(
        out,
        "\n## Smallest provider at or under ${}/TB-month (searched up to {} deals)",
        c.target_usd_per_tb_month,
        count(c.break_even_search_limit)
    );
    let mut t = Table::new(&[
        "shard GiB",
        "S",
        "counting",
        "min deals",
        "min TB",
        "floor $/TB-mo",
    ]);
    for b in &report.break_even {
        t.row(vec![
            b.shard_gib.to_string(),
            b.samples_per_epoch.to_string(),
            match b.scope {
                Scope::Recurring => "proof+open+settle".to_string(),
                Scope::AllIn => "all-in (+accept)".to_string(),
            },
            b.min_deals.map_or_else(|| "never".to_string(), count),
            b.min_tb.map_or_else(|| "-".to_string(), |x| fmt_sig(x, 3)),
            usd(b.floor_usd_per_tb_month),
        ]);
    }
    t.render(&mut out);
    let _ = writeln!(
        out,
        "floor = the per-deal settle (and accept) share, which no provider size removes."
    );
    render_hashing(&mut out);
    out
}

/// SHA-256 work per proof transaction (one sample per transaction at depth 26).
fn render_hashing(out: &mut String) {
    let _ = writeln!(
        out,
        "\n## Hashing per proof transaction (agave cost: 85 + sum of max(10, len/2) per slice)"
    );
    let mut t = Table::new(&[
        "depth",
        "shard",
        "samples/tx",
        "sha256 calls",
        "bytes hashed",
        "CU (sha256)",
    ]);
    for (depth, shard, per_tx) in [
        (10u32, "64 KiB", 2u64),
        (20, "64 MiB", 1),
        (24, "1 GiB", 1),
        (26, "4 GiB", 1),
    ] {
        let cost = cairn_proof::cost::sample_cost(depth).times(per_tx);
        t.row(vec![
            depth.to_string(),
            shard.to_string(),
            per_tx.to_string(),
            count(cost.syscalls),
            count(cost.bytes),
            count(cost.compute_units),
        ]);
    }
    t.render(out);
    let _ = writeln!(
        out,
        "per sample: one draw hash, one leaf hash, one node hash per level (cairn_proof::cost)."
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn significant_digits() {
        assert_eq!(fmt_sig(0.000286, 3), "0.000286");
        assert_eq!(fmt_sig(12.345, 3), "12.3");
        assert_eq!(fmt_sig(1234.4, 3), "1234");
        assert_eq!(fmt_sig(0.0, 3), "0");
        assert_eq!(fmt_sig(f64::INFINITY, 3), "inf");
        assert_eq!(count(1_000_000), "1,000,000");
        assert_eq!(count(100), "100");
    }

    #[test]
    fn small_run_renders_every_table() {
        let config = Config {
            samples: vec![4, 16],
            deals: 100,
            detection: MonteCarloConfig {
                trials: 500,
                max_epochs: 100_000,
                seed: 1,
            },
            chain: ChainOnlyConfig {
                trials: 100,
                ..ChainOnlyConfig::default()
            },
            break_even_search_limit: 5_000,
            ..Config::default()
        };
        let report = run(&config).unwrap();
        assert_eq!(report.detection.len(), 2 * 3);
        assert_eq!(report.economics.len(), 2 * 3);
        assert_eq!(report.cost.len(), 2 * 4 * 2);
        assert_eq!(report.break_even.len(), 2 * 2 * 2);
        let text = render_text(&report);
        for heading in [
            "## Detection",
            "## Economics: first catch",
            "## Economics: chain rules only",
            "## Cost: 4 GiB",
            "## Cost: 1 GiB",
            "## Smallest provider",
        ] {
            assert!(text.contains(heading), "{heading} missing");
        }
    }

    #[test]
    fn invalid_config_is_rejected() {
        let config = Config {
            samples: vec![],
            ..Config::default()
        };
        assert!(run(&config).is_err());
    }
}
