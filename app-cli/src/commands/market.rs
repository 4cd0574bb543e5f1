//! `cairn market info|init`.
use std::fmt;

use anchor_lang::prelude::Pubkey;
use clap::{Args, Subcommand};
use serde::Serialize;
use storage_market::state::MarketParams;

use crate::context::Ctx;
use crate::error::CliError;
use crate::output::{pubkey, Report};
use crate::units::Tokens;

#[derive(Subcommand, Debug)]
pub enum MarketCommand {
    /// The market's parameters, mint, vault balance and current epoch.
    Info,
    /// Creates the market (once per program deployment); the keypair becomes
    /// its authority.
    Init(InitArgs),
}

/// Market parameters. Defaults suit a public cluster (400 ms slots): daily
/// epochs proven any time within the epoch, 32 samples per provider per epoch,
/// jail after 3 failed epochs in 30 (docs/DESIGN.md, "Choice of defaults").
#[derive(Args, Debug)]
pub struct InitArgs {
    /// Payment and stake mint (SPL Token or Token-2022).
    #[arg(long)]
    pub mint: Pubkey,
    /// Slots per epoch (never changes after creation).
    #[arg(long, default_value_t = 216_000)]
    pub epoch_slots: u64,
    /// Collateral (base units) a provider locks per started MiB of a shard.
    #[arg(long, default_value_t = 1_000_000)]
    pub collateral_per_mib: u64,
    /// Share of a deal's collateral that goes to the client per failed epoch
    /// (basis points).
    #[arg(long, default_value_t = 1_000)]
    pub slash_bps: u16,
    /// Epochs a provider has to accept a proposed deal.
    #[arg(long, default_value_t = 2)]
    pub accept_timeout_epochs: u64,
    /// Slots after an epoch's first slot by which its proofs must be in (at most
    /// --epoch-slots). Default: the whole epoch.
    #[arg(long)]
    pub response_slots: Option<u64>,
    /// Largest shard of one deal, in bytes (at most 4 GiB).
    #[arg(long, default_value_t = storage_market::constants::MAX_SHARD_BYTES_LIMIT)]
    pub max_shard_bytes: u64,
    /// Segments each provider proves per epoch (fewer if it holds fewer deals).
    #[arg(long, default_value_t = 32)]
    pub samples_per_epoch: u16,
    /// Failed epochs within --jail-window that jail a provider (never changes
    /// after creation).
    #[arg(long, default_value_t = 3)]
    pub jail_failures: u16,
    /// Window of closed epochs for --jail-failures (never changes after creation).
    #[arg(long, default_value_t = 30)]
    pub jail_window: u16,
}

pub fn run(ctx: &Ctx, command: MarketCommand) -> Result<Box<dyn Report>, CliError> {
    match command {
        MarketCommand::Info => Ok(Box::new(info(ctx)?)),
        MarketCommand::Init(args) => Ok(Box::new(init(ctx, args)?)),
    }
}

#[derive(Serialize, Debug)]
pub struct MarketInfo {
    #[serde(with = "pubkey")]
    pub address: Pubkey,
    #[serde(with = "pubkey")]
    pub authority: Pubkey,
    #[serde(with = "pubkey")]
    pub mint: Pubkey,
    pub decimals: u8,
    #[serde(with = "pubkey")]
    pub token_program: Pubkey,
    #[serde(with = "pubkey")]
    pub vault: Pubkey,
    /// Base units held by the vault (all escrow and stake).
    pub vault_balance: u64,
    pub slot: u64,
    pub epoch: u64,
    pub epoch_slots: u64,
    pub response_slots: u64,
    pub collateral_per_mib: u64,
    pub slash_bps: u16,
    pub accept_timeout_epochs: u64,
    pub max_shard_bytes: u64,
    pub samples_per_epoch: u16,
    pub jail_failures: u16,
    pub jail_window: u16,
}

pub fn info(ctx: &Ctx) -> Result<MarketInfo, CliError> {
    let m = ctx.market()?;
    let slot = ctx.rpc.get_slot().map_err(|e| ctx.rpc_err(e))?;
    let p = &m.account.params;
    Ok(MarketInfo {
        address: m.address,
        authority: m.account.authority,
        mint: m.account.mint,
        decimals: m.decimals,
        token_program: m.account.token_program,
        vault: m.account.vault,
        vault_balance: ctx.token_balance(&m.account.vault)?,
        slot,
        epoch: m.account.epoch_at(slot),
        epoch_slots: p.epoch_slots,
        response_slots: p.response_slots,
        collateral_per_mib: p.collateral_per_mib,
        slash_bps: p.slash_bps,
        accept_timeout_epochs: p.accept_timeout_epochs,
        max_shard_bytes: p.max_shard_bytes,
        samples_per_epoch: p.samples_per_epoch,
        jail_failures: p.jail_failures,
        jail_window: p.jail_window,
    })
}

impl fmt::Display for MarketInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = |base_units| Tokens {
            base_units,
            decimals: self.decimals,
        };
        writeln!(f, "market       {}", self.address)?;
        writeln!(f, "authority    {}", self.authority)?;
        writeln!(
            f,
            "mint         {} ({} decimals, {})",
            self.mint, self.decimals, self.token_program
        )?;
        writeln!(
            f,
            "vault        {} holding {}",
            self.vault,
            t(self.vault_balance)
        )?;
        writeln!(
            f,
            "epoch        {} (slot {}, {} slots per epoch, proofs due {} slots into each)",
            self.epoch, self.slot, self.epoch_slots, self.response_slots
        )?;
        writeln!(
            f,
            "proving      {} sample(s) per provider per epoch; shards up to {} bytes",
            self.samples_per_epoch, self.max_shard_bytes
        )?;
        writeln!(
            f,
            "collateral   {} per MiB of shard",
            t(self.collateral_per_mib)
        )?;
        writeln!(
            f,
            "penalties    {}% of a deal's collateral to its client per failed epoch; {} failed epochs within {} jail a provider",
            f64::from(self.slash_bps) / 100.0,
            self.jail_failures,
            self.jail_window
        )?;
        writeln!(
            f,
            "deals        accepted within {} epochs of their proposal",
            self.accept_timeout_epochs
        )
    }
}

#[derive(Serialize, Debug)]
pub struct MarketCreated {
    #[serde(with = "pubkey")]
    pub market: Pubkey,
    #[serde(with = "pubkey")]
    pub mint: Pubkey,
    #[serde(with = "pubkey")]
    pub vault: Pubkey,
    pub signature: String,
}

impl fmt::Display for MarketCreated {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "created market {} for mint {} (vault {})",
            self.market, self.mint, self.vault
        )?;
        writeln!(f, "signature {}", self.signature)
    }
}

fn init(ctx: &Ctx, args: InitArgs) -> Result<MarketCreated, CliError> {
    let market = cairn_chain::market_pda();
    if ctx.account_data(&market)?.is_some() {
        return Err(CliError::Refused(format!(
            "market {market} already exists on {}; see `cairn market info`",
            ctx.url
        )));
    }
    let (token_program, _) = ctx.account_data(&args.mint)?.ok_or(CliError::NotFound {
        what: "mint",
        address: args.mint,
        hint: "",
    })?;
    if !cairn_chain::token::is_token_program(&token_program) {
        return Err(CliError::bad(
            "--mint",
            format!(
                "{} is owned by {token_program}, not a token program",
                args.mint
            ),
        ));
    }
    let params = MarketParams {
        epoch_slots: args.epoch_slots,
        collateral_per_mib: args.collateral_per_mib,
        slash_bps: args.slash_bps,
        accept_timeout_epochs: args.accept_timeout_epochs,
        response_slots: args.response_slots.unwrap_or(args.epoch_slots),
        max_shard_bytes: args.max_shard_bytes,
        samples_per_epoch: args.samples_per_epoch,
        jail_failures: args.jail_failures,
        jail_window: args.jail_window,
    };
    let ix = cairn_chain::MarketIx {
        mint: args.mint,
        token_program,
    };
    let authority = ctx.payer()?;
    use solana_signer::Signer;
    // With the page of opened-epoch bits of the epochs to come (nodes create
    // later pages when they need them).
    let page = storage_market::constants::log_page(ctx.slot()? / params.epoch_slots.max(1));
    let signature = ctx.send(
        "init_market",
        &[
            ix.init_market_ix(&authority.pubkey(), args.mint, params),
            ix.open_epoch_log_ix(&authority.pubkey(), page),
        ],
        &[],
    )?;
    Ok(MarketCreated {
        market,
        mint: args.mint,
        vault: cairn_chain::vault_pda(),
        signature,
    })
}
