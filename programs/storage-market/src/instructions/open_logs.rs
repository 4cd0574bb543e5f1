//! Creating log pages: each covers `LOG_PAGE_EPOCHS` epochs and is created once,
//! by whoever needs it first (a node, before it opens or proves the first epoch of
//! the page). Anyone may pay.
use anchor_lang::prelude::*;

use crate::constants::*;
use crate::state::{EpochLog, ProofLog, Provider};

#[derive(Accounts)]
#[instruction(page: u32)]
pub struct OpenEpochLog<'info> {
    #[account(mut)]
    pub payer: Signer<'info>,
    #[account(
        init,
        payer = payer,
        space = EpochLog::SPACE,
        seeds = [SEED_EPOCH_LOG, page.to_le_bytes().as_ref()],
        bump,
    )]
    pub epoch_log: AccountLoader<'info, EpochLog>,
    pub system_program: Program<'info, System>,
}

pub fn open_epoch_log(ctx: Context<OpenEpochLog>, page: u32) -> Result<()> {
    ctx.accounts.epoch_log.load_init()?.page = u64::from(page);
    Ok(())
}

#[derive(Accounts)]
#[instruction(page: u32)]
pub struct OpenProofLog<'info> {
    #[account(mut)]
    pub payer: Signer<'info>,
    pub provider: Box<Account<'info, Provider>>,
    #[account(
        init,
        payer = payer,
        space = ProofLog::SPACE,
        seeds = [SEED_PROOF_LOG, provider.key().as_ref(), page.to_le_bytes().as_ref()],
        bump,
    )]
    pub proof_log: AccountLoader<'info, ProofLog>,
    pub system_program: Program<'info, System>,
}

pub fn open_proof_log(ctx: Context<OpenProofLog>, page: u32) -> Result<()> {
    let mut log = ctx.accounts.proof_log.load_init()?;
    log.provider = ctx.accounts.provider.key();
    log.page = u64::from(page);
    Ok(())
}
