use anchor_lang::prelude::*;
use cairn_proof::ProofError;

use crate::constants::*;
use crate::errors::MarketError;
use crate::events::EpochProven;
use crate::state::{get_bit, set_bit, Challenge, DealSet, DealSetPage, ProofLog, Provider};

/// One sampled segment with its Merkle path (leaf level first). Neither the deal
/// nor the segment's index is sent: both come from the seed and the draw number.
#[derive(AnchorSerialize, AnchorDeserialize, Clone, Debug, PartialEq, Eq)]
pub struct ProofSample {
    pub segment: [u8; 64],
    pub path: Vec<[u8; 32]>,
}

/// Accounts are kept few and fixed (an address lookup table holds all but the
/// operator), so the largest proof still leaves room for a priority fee. The
/// deal-set pages the transaction's draws land on follow as remaining accounts.
#[event_cpi]
#[derive(Accounts)]
#[instruction(epoch: u64)]
pub struct Prove<'info> {
    pub operator: Signer<'info>,
    #[account(has_one = operator @ MarketError::WrongOperator)]
    pub provider: Box<Account<'info, Provider>>,
    #[account(mut, has_one = provider @ MarketError::WrongProvider)]
    pub deal_set: Account<'info, DealSet>,
    #[account(seeds = [SEED_CHALLENGE], bump = challenge.bump)]
    pub challenge: Account<'info, Challenge>,
    /// The provider's log page holding `epoch`'s bit (`open_proof_log` creates it).
    #[account(mut)]
    pub proof_log: AccountLoader<'info, ProofLog>,
}

impl Prove<'_> {
    pub fn validate(&self, epoch: u64) -> Result<()> {
        let challenge = &self.challenge;
        require!(
            challenge.next_epoch > 0 && challenge.epoch == epoch,
            MarketError::EpochNotOpened
        );
        require!(
            Clock::get()?.slot < challenge.deadline_slot,
            MarketError::OutsideProofWindow
        );
        let log = self.proof_log.load()?;
        require!(
            log.provider == self.provider.key() && log.page == u64::from(log_page(epoch)),
            MarketError::WrongLogPage
        );
        require!(
            !get_bit(&log.bits, log.page, epoch)?,
            MarketError::EpochAlreadyProven
        );
        Ok(())
    }
}

/// The entry of set index `index` visible at `epoch`, from whichever of `pages` holds it.
fn entry_at<'info>(
    pages: &'info [AccountInfo<'info>],
    provider: &Pubkey,
    index: u32,
    epoch: u64,
) -> Result<Option<crate::state::SetEntry>> {
    let want = u64::from(deal_set_page(index));
    for info in pages {
        let loader = AccountLoader::<DealSetPage>::try_from(info)?;
        let page = loader.load()?;
        if page.page == want {
            require_keys_eq!(page.provider, *provider, MarketError::WrongDealSetPage);
            return Ok(Some(page.slot(index)?.at(epoch)));
        }
    }
    Ok(None)
}

/// The operator proves draws of its session of `epoch`, in order, with as many
/// samples as the transaction holds. Draws landing on an ended deal are skipped.
/// When the session has its samples (or has used all its draws), the provider's bit
/// for `epoch` is set: every one of its deals is proven for that epoch.
#[access_control(ctx.accounts.validate(epoch))]
pub fn handler<'info>(
    ctx: Context<'info, Prove<'info>>,
    epoch: u64,
    samples: Vec<ProofSample>,
) -> Result<()> {
    let provider_key = ctx.accounts.provider.key();
    let seed = ctx.accounts.challenge.seed;
    let samples_per_epoch = ctx.accounts.challenge.samples_per_epoch;
    let set = &mut ctx.accounts.deal_set;
    set.start_session(epoch, samples_per_epoch)?;
    let entries = u64::from(set.len_at(epoch));
    let first_draw = set.session_next_draw;
    let mut samples = samples.iter();
    while !set.session_complete() {
        let draw = cairn_proof::draw(&seed, &provider_key.to_bytes(), set.session_next_draw);
        let index = u32::try_from(draw.entry(entries))
            .map_err(|_| error!(MarketError::InvariantViolated))?;
        let Some(entry) = entry_at(ctx.remaining_accounts, &provider_key, index, epoch)? else {
            break;
        };
        if epoch < entry.end_epoch {
            let Some(sample) = samples.next() else {
                break;
            };
            let segment = draw.segment(cairn_proof::segment_count(entry.shard_bytes));
            cairn_proof::verify_for_shard(
                &entry.shard_root,
                entry.shard_bytes,
                &sample.segment,
                segment,
                &sample.path,
            )
            .map_err(|e| match e {
                ProofError::WrongPathLength { .. } => error!(MarketError::WrongPathLength),
                _ => error!(MarketError::InvalidProof),
            })?;
            set.session_proven += 1;
        }
        set.session_next_draw += 1;
    }
    let complete = set.session_complete();
    require!(
        complete || set.session_next_draw > first_draw,
        MarketError::NoProgress
    );
    require!(samples.next().is_none(), MarketError::UnusedSamples);
    if complete {
        set.epochs_proven += 1;
        let mut log = ctx.accounts.proof_log.load_mut()?;
        let page = log.page;
        set_bit(&mut log.bits, page, epoch)?;
    }
    set.invariant()?;
    if complete {
        let event = EpochProven {
            provider: provider_key,
            epoch,
            samples: set.session_proven,
            draws: set.session_next_draw,
            set_len: set.len_at(epoch),
        };
        emit_cpi!(event);
    }
    Ok(())
}
