//! `cairn provider register|update|stake|withdraw|deregister|info`: a storage
//! provider's account, signed by its cold key (`--keypair`).
use std::fmt;
use std::path::Path;
use std::str::FromStr;

use anchor_lang::prelude::Pubkey;
use clap::{Args, Subcommand};
use serde::Serialize;
use solana_signer::Signer;
use storage_market::constants::NOT_JAILED;
use storage_market::instructions::{RegisterProviderArgs, UpdateProviderArgs};
use storage_market::state::{Deal, DealSet, DealState, Provider};

use crate::context::{read_keypair, Ctx, MarketView};
use crate::epochs::{self, Bits, ProviderEpoch};
use crate::error::CliError;
use crate::output::{pubkey, Report};
use crate::units::{human_bytes, parse_bytes, parse_tokens, Tokens};

#[derive(Subcommand, Debug)]
pub enum ProviderCommand {
    /// Registers the keypair as a provider (its cold authority key).
    Register(RegisterArgs),
    /// Changes the operator key, endpoint, capacity or price.
    Update(UpdateArgs),
    /// Moves tokens from the keypair's token account into free stake.
    Stake(StakeArgs),
    /// Withdraws free stake or earnings to the keypair's token account.
    Withdraw(WithdrawArgs),
    /// Closes the provider account (no active deals, no locked stake, an empty
    /// deal set) and returns its stake and earnings.
    Deregister(ToArgs),
    /// Shows a provider: keys, endpoint, capacity, stake, earnings, record,
    /// jailing and its recent epochs.
    Info(InfoArgs),
}

#[derive(Args, Debug)]
pub struct RegisterArgs {
    /// `host:port` of the node's QUIC endpoint.
    #[arg(long)]
    pub endpoint: String,
    /// Storage offered, e.g. `2TiB`, `500GB`.
    #[arg(long, value_parser = parse_bytes)]
    pub capacity: u64,
    /// Price per MiB per epoch, in tokens (e.g. `0.0001`).
    #[arg(long)]
    pub price: String,
    /// The node's hot key: a pubkey or a keypair file. Default: the keypair
    /// itself (one key for both roles).
    #[arg(long)]
    pub operator: Option<String>,
    /// Tokens to stake in the same transaction.
    #[arg(long)]
    pub stake: Option<String>,
}

#[derive(Args, Debug)]
pub struct UpdateArgs {
    #[arg(long)]
    pub endpoint: Option<String>,
    #[arg(long, value_parser = parse_bytes)]
    pub capacity: Option<u64>,
    #[arg(long)]
    pub price: Option<String>,
    #[arg(long)]
    pub operator: Option<String>,
}

#[derive(Args, Debug)]
pub struct StakeArgs {
    /// Tokens to stake.
    pub amount: String,
    /// Token account to take them from. Default: the keypair's associated
    /// token account for the market's mint.
    #[arg(long)]
    pub from: Option<Pubkey>,
}

#[derive(Args, Debug)]
#[group(required = true, multiple = false)]
pub struct WithdrawWhat {
    /// Tokens of free stake to withdraw.
    #[arg(long)]
    pub stake: Option<String>,
    /// Withdraw earnings: an amount of tokens, or all of them if no amount.
    #[arg(long, num_args = 0..=1, default_missing_value = "all")]
    pub earnings: Option<String>,
}

#[derive(Args, Debug)]
pub struct WithdrawArgs {
    #[command(flatten)]
    pub what: WithdrawWhat,
    #[command(flatten)]
    pub to: ToArgs,
}

#[derive(Args, Debug)]
pub struct ToArgs {
    /// Token account to pay to. Default: the keypair's associated token
    /// account for the market's mint (created if missing).
    #[arg(long)]
    pub to: Option<Pubkey>,
}

#[derive(Args, Debug)]
pub struct InfoArgs {
    /// The provider's authority. Default: the keypair's pubkey.
    pub authority: Option<Pubkey>,
    /// Recent epochs to show, the current one included.
    #[arg(long, default_value_t = 16)]
    pub epochs: u64,
}

pub fn run(ctx: &Ctx, command: ProviderCommand) -> Result<Box<dyn Report>, CliError> {
    Ok(match command {
        ProviderCommand::Register(a) => Box::new(register(ctx, a)?),
        ProviderCommand::Update(a) => Box::new(update(ctx, a)?),
        ProviderCommand::Stake(a) => Box::new(stake(ctx, a)?),
        ProviderCommand::Withdraw(a) => Box::new(withdraw(ctx, a)?),
        ProviderCommand::Deregister(a) => Box::new(deregister(ctx, a)?),
        ProviderCommand::Info(a) => Box::new(info(ctx, a.authority, a.epochs)?),
    })
}

/// A pubkey, or the pubkey of a keypair file.
fn operator_key(text: &str) -> Result<Pubkey, CliError> {
    if let Ok(key) = Pubkey::from_str(text) {
        return Ok(key);
    }
    if Path::new(text).exists() {
        return Ok(read_keypair(Path::new(text))?.pubkey());
    }
    Err(CliError::bad(
        "--operator",
        format!("{text:?} is neither a pubkey nor a keypair file"),
    ))
}

fn tokens_arg(m: &MarketView, flag: &'static str, text: &str) -> Result<u64, CliError> {
    parse_tokens(text, m.decimals).map_err(|e| CliError::bad(flag, e))
}

fn endpoint_arg(endpoint: String) -> Result<String, CliError> {
    let valid = endpoint
        .rsplit_once(':')
        .is_some_and(|(host, port)| !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0));
    if !valid || endpoint.len() > storage_market::constants::MAX_ENDPOINT_LEN {
        return Err(CliError::bad(
            "--endpoint",
            format!(
                "{endpoint:?} is not host:port (at most {} characters)",
                storage_market::constants::MAX_ENDPOINT_LEN
            ),
        ));
    }
    Ok(endpoint)
}

/// The provider account of `authority`, or a NotFound that says how to make it.
fn provider(ctx: &Ctx, authority: &Pubkey) -> Result<(Pubkey, Provider), CliError> {
    let address = cairn_chain::provider_pda(authority);
    let account = ctx.fetch("provider", &address)?.ok_or(CliError::NotFound {
        what: "provider",
        address,
        hint: "; register it with `cairn provider register`",
    })?;
    Ok((address, account))
}

/// The keypair's associated token account for the market's mint.
fn own_token_account(ctx: &Ctx, m: &MarketView) -> Result<Pubkey, CliError> {
    Ok(m.token_account_of(&ctx.payer()?.pubkey()))
}

/// Checks `from` holds `amount` before sending, so the error says so plainly.
fn check_balance(ctx: &Ctx, m: &MarketView, from: &Pubkey, amount: u64) -> Result<(), CliError> {
    let balance = ctx.token_balance(from)?;
    if balance < amount {
        return Err(CliError::Refused(format!(
            "insufficient funds: token account {from} holds {}, {} needed",
            m.tokens(balance),
            m.tokens(amount)
        )));
    }
    Ok(())
}

#[derive(Serialize, Debug)]
pub struct Sent {
    pub action: &'static str,
    #[serde(with = "pubkey")]
    pub provider: Pubkey,
    pub signature: String,
    /// What changed, for people.
    pub detail: String,
}

impl fmt::Display for Sent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{}: provider {}{}",
            self.action, self.provider, self.detail
        )?;
        writeln!(f, "signature {}", self.signature)
    }
}

fn register(ctx: &Ctx, a: RegisterArgs) -> Result<Sent, CliError> {
    let m = ctx.market()?;
    let authority = ctx.payer()?.pubkey();
    let operator = match &a.operator {
        Some(text) => operator_key(text)?,
        None => authority,
    };
    let price = tokens_arg(&m, "--price", &a.price)?;
    let args = RegisterProviderArgs {
        operator,
        endpoint: endpoint_arg(a.endpoint)?,
        capacity_bytes: a.capacity,
        price_per_mib_epoch: price,
    };
    let mut ixs = vec![m.ix.register_provider_ix(&authority, args)];
    let mut detail = format!(
        " offering {} at {} per MiB per epoch, operator {operator}",
        human_bytes(a.capacity),
        m.tokens(price)
    );
    if let Some(stake) = &a.stake {
        let amount = tokens_arg(&m, "--stake", stake)?;
        let from = own_token_account(ctx, &m)?;
        check_balance(ctx, &m, &from, amount)?;
        ixs.push(m.ix.deposit_stake_ix(&authority, &from, amount));
        detail.push_str(&format!(", staked {}", m.tokens(amount)));
    }
    let signature = ctx.send("register_provider", &ixs, &[])?;
    Ok(Sent {
        action: "registered",
        provider: cairn_chain::provider_pda(&authority),
        signature,
        detail,
    })
}

fn update(ctx: &Ctx, a: UpdateArgs) -> Result<Sent, CliError> {
    let m = ctx.market()?;
    let authority = ctx.payer()?.pubkey();
    let (address, _) = provider(ctx, &authority)?;
    let args = UpdateProviderArgs {
        operator: a.operator.as_deref().map(operator_key).transpose()?,
        endpoint: a.endpoint.map(endpoint_arg).transpose()?,
        capacity_bytes: a.capacity,
        price_per_mib_epoch: a
            .price
            .as_deref()
            .map(|p| tokens_arg(&m, "--price", p))
            .transpose()?,
    };
    if args.operator.is_none()
        && args.endpoint.is_none()
        && args.capacity_bytes.is_none()
        && args.price_per_mib_epoch.is_none()
    {
        return Err(CliError::bad(
            "provider update",
            "nothing to change; pass --operator, --endpoint, --capacity or --price",
        ));
    }
    let detail = format!(
        "{}{}{}{}",
        args.operator
            .map(|o| format!(" operator {o}"))
            .unwrap_or_default(),
        args.endpoint
            .as_ref()
            .map(|e| format!(" endpoint {e}"))
            .unwrap_or_default(),
        args.capacity_bytes
            .map(|c| format!(" capacity {}", human_bytes(c)))
            .unwrap_or_default(),
        args.price_per_mib_epoch
            .map(|p| format!(" price {}", m.tokens(p)))
            .unwrap_or_default(),
    );
    let signature = ctx.send(
        "update_provider",
        &[m.ix.update_provider_ix(&authority, &address, args)],
        &[],
    )?;
    Ok(Sent {
        action: "updated",
        provider: address,
        signature,
        detail,
    })
}

fn stake(ctx: &Ctx, a: StakeArgs) -> Result<Sent, CliError> {
    let m = ctx.market()?;
    let authority = ctx.payer()?.pubkey();
    let (address, _) = provider(ctx, &authority)?;
    let amount = tokens_arg(&m, "amount", &a.amount)?;
    let from = match a.from {
        Some(from) => from,
        None => own_token_account(ctx, &m)?,
    };
    check_balance(ctx, &m, &from, amount)?;
    let signature = ctx.send(
        "deposit_stake",
        &[m.ix.deposit_stake_ix(&authority, &from, amount)],
        &[],
    )?;
    Ok(Sent {
        action: "staked",
        provider: address,
        signature,
        detail: format!(" {} from {from}", m.tokens(amount)),
    })
}

/// The destination token account, with an instruction creating the keypair's
/// associated one if that is the destination.
fn destination(
    ctx: &Ctx,
    m: &MarketView,
    to: Option<Pubkey>,
) -> Result<
    (
        Pubkey,
        Vec<anchor_lang::solana_program::instruction::Instruction>,
    ),
    CliError,
> {
    if let Some(to) = to {
        return Ok((to, Vec::new()));
    }
    let owner = ctx.payer()?.pubkey();
    let create = cairn_chain::token::create_associated_token_account_ix(
        &m.ix.token_program,
        &owner,
        &owner,
        &m.ix.mint,
    )
    .map_err(|e| CliError::BadAccount {
        what: "market",
        address: m.address,
        reason: e.to_string(),
    })?;
    Ok((own_token_account(ctx, m)?, vec![create]))
}

fn withdraw(ctx: &Ctx, a: WithdrawArgs) -> Result<Sent, CliError> {
    let m = ctx.market()?;
    let authority = ctx.payer()?.pubkey();
    let (address, p) = provider(ctx, &authority)?;
    let (to, mut ixs) = destination(ctx, &m, a.to.to)?;
    let (action, ix, amount) = match (&a.what.stake, &a.what.earnings) {
        (Some(stake), _) => {
            let amount = tokens_arg(&m, "--stake", stake)?;
            if amount > p.stake_free {
                return Err(CliError::Refused(format!(
                    "insufficient free stake: {} free ({} locked by active deals), {} asked",
                    m.tokens(p.stake_free),
                    m.tokens(p.stake_locked),
                    m.tokens(amount)
                )));
            }
            (
                "withdraw_stake",
                m.ix.withdraw_stake_ix(&authority, &to, amount),
                amount,
            )
        }
        (None, Some(earnings)) => {
            let amount = if earnings == "all" {
                p.earnings
            } else {
                tokens_arg(&m, "--earnings", earnings)?
            };
            if amount == 0 || amount > p.earnings {
                return Err(CliError::Refused(format!(
                    "earnings available: {}, {} asked",
                    m.tokens(p.earnings),
                    m.tokens(amount)
                )));
            }
            (
                "withdraw_earnings",
                m.ix.withdraw_earnings_ix(&authority, &to, amount),
                amount,
            )
        }
        (None, None) => unreachable!("clap requires --stake or --earnings"),
    };
    ixs.push(ix);
    let signature = ctx.send(action, &ixs, &[])?;
    Ok(Sent {
        action: "withdrew",
        provider: address,
        signature,
        detail: format!(" {} to {to}", m.tokens(amount)),
    })
}

fn deregister(ctx: &Ctx, a: ToArgs) -> Result<Sent, CliError> {
    let m = ctx.market()?;
    let authority = ctx.payer()?.pubkey();
    let (address, p) = provider(ctx, &authority)?;
    if p.active_deals > 0 {
        return Err(CliError::Refused(format!(
            "provider {address} has {} active deal(s); it can deregister once they end",
            p.active_deals
        )));
    }
    let set: Option<DealSet> = ctx.fetch("deal set", &cairn_chain::deal_set_pda(&address))?;
    if let Some(set) = set.filter(|s| s.len > 0) {
        return Err(CliError::Refused(format!(
            "provider {address} still has {} entries in its deal set; ended deals leave it with `leave_deal_set` (the node removes its own), then deregister",
            set.len
        )));
    }
    let (to, mut ixs) = destination(ctx, &m, a.to)?;
    ixs.push(m.ix.deregister_provider_ix(&authority, &to));
    let signature = ctx.send("deregister_provider", &ixs, &[])?;
    Ok(Sent {
        action: "deregistered",
        provider: address,
        signature,
        detail: format!(
            ", {} of stake and earnings paid to {to}",
            m.tokens(p.stake_free + p.stake_locked + p.earnings)
        ),
    })
}

#[derive(Serialize, Debug)]
pub struct ProviderInfo {
    #[serde(with = "pubkey")]
    pub address: Pubkey,
    #[serde(with = "pubkey")]
    pub authority: Pubkey,
    #[serde(with = "pubkey")]
    pub operator: Pubkey,
    pub endpoint: String,
    pub capacity_bytes: u64,
    pub used_bytes: u64,
    pub price_per_mib_epoch: u64,
    pub stake_free: u64,
    pub stake_locked: u64,
    pub earnings: u64,
    pub active_deals: u64,
    /// Deals of this provider by state.
    pub deals: DealCounts,
    /// Deal-epochs settled as proven (paid) and as failed.
    pub proofs: u64,
    pub faults: u64,
    /// Collateral paid to clients for failed epochs.
    pub slashed: u64,
    /// Collateral paid to clients because deals ended early (jail, or a client
    /// ending a deal after a failure).
    pub forfeited: u64,
    /// The epoch the provider is jailed from (it takes no new deals, its deals
    /// end there), if it is.
    pub jailed_from: Option<u64>,
    pub epoch: u64,
    /// The most recent epochs, oldest first, from the chain's bits.
    pub recent_epochs: Vec<RecentEpoch>,
    pub decimals: u8,
}

#[derive(Serialize, Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecentEpoch {
    pub epoch: u64,
    pub outcome: ProviderEpoch,
}

#[derive(Serialize, Debug, Default)]
pub struct DealCounts {
    pub proposed: u64,
    pub active: u64,
    pub completed: u64,
    pub terminated: u64,
    pub cancelled: u64,
}

impl DealCounts {
    pub fn add(&mut self, state: DealState) {
        let n = match state {
            DealState::Proposed => &mut self.proposed,
            DealState::Active => &mut self.active,
            DealState::Completed => &mut self.completed,
            DealState::Terminated => &mut self.terminated,
            DealState::Cancelled => &mut self.cancelled,
        };
        *n += 1;
    }
}

pub fn info(ctx: &Ctx, authority: Option<Pubkey>, recent: u64) -> Result<ProviderInfo, CliError> {
    let m = ctx.market()?;
    let authority = match authority {
        Some(a) => a,
        None => ctx.payer()?.pubkey(),
    };
    let (address, p) = provider(ctx, &authority)?;
    let deals =
        ctx.program_accounts::<Deal>(&[(cairn_chain::layout::DEAL_PROVIDER, address.as_ref())])?;
    let mut counts = DealCounts::default();
    for (_, deal) in &deals {
        counts.add(deal.state);
    }
    let now = m.account.epoch_at(ctx.slot()?);
    let first = (now + 1).saturating_sub(recent);
    let bits = Bits::load(ctx, &[address], first..now + 1)?;
    // An epoch was owed if a deal of the provider ran in it (deals closed by
    // their clients are no longer on chain to say so).
    let owed = |epoch: u64| {
        deals
            .iter()
            .any(|(_, d)| epochs::owed_epochs(d, p.jailed_from).contains(&epoch))
    };
    let recent_epochs = (first..now + 1)
        .map(|epoch| RecentEpoch {
            epoch,
            outcome: ProviderEpoch::of(&bits, &address, epoch, now, owed(epoch)),
        })
        .collect();
    Ok(ProviderInfo {
        address,
        authority: p.authority,
        operator: p.operator,
        endpoint: p.endpoint,
        capacity_bytes: p.capacity_bytes,
        used_bytes: p.used_bytes,
        price_per_mib_epoch: p.price_per_mib_epoch,
        stake_free: p.stake_free,
        stake_locked: p.stake_locked,
        earnings: p.earnings,
        active_deals: p.active_deals,
        deals: counts,
        proofs: p.proofs,
        faults: p.faults,
        slashed: p.slashed,
        forfeited: p.forfeited,
        jailed_from: (p.jailed_from != NOT_JAILED).then_some(p.jailed_from),
        epoch: now,
        recent_epochs,
        decimals: m.decimals,
    })
}

impl fmt::Display for ProviderInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let t = |base_units| Tokens {
            base_units,
            decimals: self.decimals,
        };
        let d = &self.deals;
        writeln!(f, "provider   {}", self.address)?;
        if let Some(e) = self.jailed_from {
            writeln!(
                f,
                "JAILED     from epoch {e}: takes no new deals; its deals ended there"
            )?;
        }
        writeln!(f, "authority  {}", self.authority)?;
        writeln!(f, "operator   {}", self.operator)?;
        writeln!(f, "endpoint   {}", self.endpoint)?;
        writeln!(
            f,
            "capacity   {} used of {}",
            human_bytes(self.used_bytes),
            human_bytes(self.capacity_bytes)
        )?;
        writeln!(
            f,
            "price      {} per MiB per epoch",
            t(self.price_per_mib_epoch)
        )?;
        writeln!(
            f,
            "stake      {} free, {} locked",
            t(self.stake_free),
            t(self.stake_locked)
        )?;
        writeln!(f, "earnings   {}", t(self.earnings))?;
        writeln!(
            f,
            "deals      {} active, {} proposed, {} completed, {} terminated, {} cancelled",
            d.active, d.proposed, d.completed, d.terminated, d.cancelled
        )?;
        writeln!(
            f,
            "record     {} deal-epochs proven, {} failed; {} paid to clients for failed epochs, {} forfeited by deals ended early",
            self.proofs,
            self.faults,
            t(self.slashed),
            t(self.forfeited)
        )?;
        if let (Some(first), Some(last)) = (self.recent_epochs.first(), self.recent_epochs.last()) {
            writeln!(
                f,
                "epochs     {}..={} (now {}):",
                first.epoch, last.epoch, self.epoch
            )?;
            for e in &self.recent_epochs {
                writeln!(f, "  {:>10}  {}", e.epoch, e.outcome.name())?;
            }
        }
        Ok(())
    }
}
