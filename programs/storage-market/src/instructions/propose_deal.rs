use anchor_lang::prelude::*;
use anchor_spl::token_interface::TokenAccount;

use crate::constants::*;
use crate::errors::MarketError;
use crate::events::DealProposed;
use crate::state::{Deal, DealState, Provider};
use crate::vault::*;

#[derive(AnchorSerialize, AnchorDeserialize, Clone, Debug, PartialEq, Eq)]
pub struct ProposeDealArgs {
    /// `cairn_proof::dataset_id(client, dataset_nonce)`.
    pub dataset_id: [u8; 32],
    pub dataset_nonce: [u8; 32],
    /// BLAKE3 of the shard's group manifest.
    pub group_id: [u8; 32],
    /// The group's number (`INDEX_GROUP` for the index group).
    pub group: u32,
    pub shard_index: u16,
    /// Placement of this shard: 0 first, one more for each replacement.
    pub generation: u16,
    pub k: u16,
    pub n: u16,
    /// SHA-256 segment Merkle root of the shard.
    pub shard_root: [u8; 32],
    pub shard_bytes: u64,
    pub duration_epochs: u64,
    /// Refuse if the provider's price for this shard is higher (front-running guard).
    pub max_price_per_epoch: u64,
}

#[event_cpi]
#[derive(Accounts)]
#[instruction(args: ProposeDealArgs)]
pub struct ProposeDeal<'info> {
    #[account(mut)]
    pub client: Signer<'info>,
    pub vault: Vault<'info>,
    #[account(seeds = [SEED_PROVIDER, provider.authority.as_ref()], bump = provider.bump)]
    pub provider: Box<Account<'info, Provider>>,
    #[account(
        init,
        payer = client,
        space = 8 + Deal::INIT_SPACE,
        seeds = [
            SEED_DEAL,
            client.key().as_ref(),
            args.group_id.as_ref(),
            args.shard_index.to_le_bytes().as_ref(),
            args.generation.to_le_bytes().as_ref(),
        ],
        bump,
    )]
    pub deal: Box<Account<'info, Deal>>,
    /// Pays the escrow; owned by the client.
    #[account(mut, constraint = from.mint == vault.mint.key() @ MarketError::WrongTokenAccountMint)]
    pub from: InterfaceAccount<'info, TokenAccount>,
    pub system_program: Program<'info, System>,
}

/// Started MiB of a shard: the unit of price and collateral.
pub fn billable_mib(shard_bytes: u64) -> u64 {
    shard_bytes.div_ceil(MIB)
}

impl ProposeDeal<'_> {
    pub fn validate(&self, args: &ProposeDealArgs) -> Result<()> {
        let params = &self.vault.market.params;
        require!(
            args.dataset_id
                == cairn_proof::dataset_id(&self.client.key().to_bytes(), &args.dataset_nonce),
            MarketError::WrongDatasetId
        );
        require!(
            args.shard_bytes > 0 && args.shard_bytes <= params.max_shard_bytes,
            MarketError::InvalidShardBytes
        );
        require!(
            args.k >= 1
                && args.k <= args.n
                && args.n <= MAX_SHARDS_PER_DATASET
                && args.shard_index < args.n,
            MarketError::InvalidErasureParams
        );
        require!(args.duration_epochs > 0, MarketError::ZeroDuration);
        require!(!self.provider.is_jailed(), MarketError::ProviderJailed);
        let free = self
            .provider
            .capacity_bytes
            .saturating_sub(self.provider.used_bytes);
        require!(args.shard_bytes <= free, MarketError::InsufficientCapacity);
        Ok(())
    }
}

#[access_control(ctx.accounts.validate(&args))]
pub fn handler(mut ctx: Context<ProposeDeal>, args: ProposeDealArgs) -> Result<()> {
    let accounts = &mut ctx.accounts;
    let params = accounts.vault.market.params;
    let mib = billable_mib(args.shard_bytes);
    let price_per_epoch = accounts
        .provider
        .price_per_mib_epoch
        .checked_mul(mib)
        .ok_or(MarketError::ArithmeticOverflow)?;
    require!(
        price_per_epoch <= args.max_price_per_epoch,
        MarketError::PriceAboveMax
    );
    let escrow = Deal::escrow_for(price_per_epoch, args.duration_epochs)?;
    let collateral = params
        .collateral_per_mib
        .checked_mul(mib)
        .ok_or(MarketError::ArithmeticOverflow)?;
    let epoch = accounts.vault.market.epoch_at(Clock::get()?.slot);

    let deal = &mut accounts.deal;
    deal.client = accounts.client.key();
    deal.provider = accounts.provider.key();
    deal.dataset_id = args.dataset_id;
    deal.group_id = args.group_id;
    deal.group = args.group;
    deal.shard_index = args.shard_index;
    deal.generation = args.generation;
    deal.k = args.k;
    deal.n = args.n;
    deal.shard_root = args.shard_root;
    deal.shard_bytes = args.shard_bytes;
    deal.price_per_epoch = price_per_epoch;
    deal.duration_epochs = args.duration_epochs;
    deal.escrow = escrow;
    deal.collateral = collateral;
    deal.collateral_left = 0;
    deal.client_refund = 0;
    deal.state = DealState::Proposed;
    deal.proposed_epoch = epoch;
    deal.start_epoch = 0;
    deal.end_epoch = 0;
    deal.settled_until = 0;
    deal.proven_epochs = 0;
    deal.failed_epochs = 0;
    deal.void_epochs = 0;
    deal.forfeit = false;
    deal.in_set = false;
    deal.set_index = 0;
    deal.slash_bps = params.slash_bps;
    deal.accept_timeout_epochs = params.accept_timeout_epochs;
    deal.bump = ctx.bumps.deal;
    deal.invariant()?;

    accounts
        .vault
        .take_in(&accounts.from, &accounts.client, escrow)?;
    let event = DealProposed {
        deal: accounts.deal.key(),
        client: accounts.deal.client,
        provider: accounts.deal.provider,
        dataset_id: args.dataset_id,
        group_id: args.group_id,
        group: args.group,
        shard_index: args.shard_index,
        generation: args.generation,
        shard_bytes: args.shard_bytes,
        shard_root: args.shard_root,
        price_per_epoch,
        duration_epochs: args.duration_epochs,
        escrow,
        collateral,
    };
    emit_cpi!(event);
    Ok(())
}
