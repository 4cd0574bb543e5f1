use anchor_lang::prelude::*;
use cairn_proof::ProofError;

use crate::constants::*;
use crate::errors::MarketError;
use crate::events::{FaultsSettled, ProofAccepted};
use crate::settlement;
use crate::state::{Challenge, Deal, DealState, Provider};

/// One sampled segment with its Merkle path (leaf level first). The segment's
/// index is not sent: it is derived from the challenge seed.
#[derive(AnchorSerialize, AnchorDeserialize, Clone, Debug, PartialEq, Eq)]
pub struct ProofSample {
    pub segment: [u8; 64],
    pub path: Vec<[u8; 32]>,
}

/// Accounts are kept to the minimum: one segment and a 26-level path nearly fill
/// a transaction. The deal carries its own terms, so the market is not needed.
#[event_cpi]
#[derive(Accounts)]
#[instruction(epoch: u64)]
pub struct SubmitProof<'info> {
    pub operator: Signer<'info>,
    #[account(mut, has_one = operator @ MarketError::WrongOperator)]
    pub provider: Account<'info, Provider>,
    #[account(mut, has_one = provider @ MarketError::WrongProvider)]
    pub deal: Account<'info, Deal>,
    #[account(seeds = [SEED_CHALLENGE, epoch.to_le_bytes().as_ref()], bump = challenge.bump)]
    pub challenge: Account<'info, Challenge>,
}

/// Derives the sample indices of `deal` for `challenge` and checks each sample
/// against the deal's shard root.
pub fn verify_samples(
    challenge: &Challenge,
    deal_key: &Pubkey,
    deal: &Deal,
    samples: &[ProofSample],
) -> Result<()> {
    require!(
        samples.len() == usize::from(challenge.samples_per_proof),
        MarketError::WrongSampleCount
    );
    let segments = cairn_proof::segment_count(deal.shard_bytes);
    for (j, sample) in samples.iter().enumerate() {
        let j = u32::try_from(j).map_err(|_| error!(MarketError::WrongSampleCount))?;
        let index =
            cairn_proof::challenge_index(&challenge.seed, &deal_key.to_bytes(), j, segments);
        cairn_proof::verify_for_shard(
            &deal.shard_root,
            deal.shard_bytes,
            &sample.segment,
            index,
            &sample.path,
        )
        .map_err(|e| match e {
            ProofError::WrongPathLength { .. } => error!(MarketError::WrongPathLength),
            _ => error!(MarketError::InvalidProof),
        })?;
    }
    Ok(())
}

impl SubmitProof<'_> {
    pub fn validate(&self, epoch: u64, samples: &[ProofSample]) -> Result<()> {
        let slot = Clock::get()?.slot;
        let deal = &self.deal;
        require!(deal.state == DealState::Active, MarketError::DealNotActive);
        require!(
            epoch >= deal.start_epoch && epoch < deal.end_epoch,
            MarketError::EpochOutsideDeal
        );
        // A settled epoch is a replay whenever it arrives, inside its window or
        // after: say so before judging the timing.
        require!(
            epoch > deal.settled_through,
            MarketError::EpochAlreadySettled
        );
        require!(
            slot >= self.challenge.start_slot && slot < self.challenge.deadline_slot,
            MarketError::OutsideProofWindow
        );
        verify_samples(&self.challenge, &self.deal.key(), deal, samples)
    }
}

/// The operator proves `epoch` for one deal. Unsettled epochs before it are
/// settled first as misses (without bounty); then the epoch's price is earned.
#[access_control(ctx.accounts.validate(epoch, &samples))]
pub fn handler(mut ctx: Context<SubmitProof>, epoch: u64, samples: Vec<ProofSample>) -> Result<()> {
    let accounts = &mut ctx.accounts;
    let deal_key = accounts.deal.key();
    let provider_key = accounts.provider.key();
    let operator = accounts.operator.key();
    let deal = &mut accounts.deal;
    let provider = &mut accounts.provider;

    let missed = if epoch > deal.settled_through + 1 {
        let outcome = settlement::settle_faults(deal, provider, epoch - 1, false)?;
        require!(outcome.terminated.is_none(), MarketError::DealMustTerminate);
        Some(outcome)
    } else {
        None
    };
    let paid = settlement::settle_proof(deal, provider, epoch)?;
    deal.invariant()?;
    provider.invariant()?;

    if let Some(outcome) = missed {
        emit_cpi!(FaultsSettled {
            deal: deal_key,
            provider: provider_key,
            settled_by: operator,
            first_epoch: outcome.first_epoch,
            last_epoch: outcome.last_epoch,
            epochs: outcome.epochs,
            slashed: outcome.slashed,
            bounty: outcome.bounty,
            refunded_to_client: outcome.refunded_to_client,
        });
    }
    emit_cpi!(ProofAccepted {
        deal: deal_key,
        provider: provider_key,
        epoch,
        paid,
    });
    Ok(())
}
