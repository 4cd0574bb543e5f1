//! The storage-market program as a native builtin of the validator's banks.
//!
//! The program account is part of genesis (owned by the native loader,
//! executable, data = the program's name), so registering the builtin in a bank
//! never writes an account: it only adds the entry point to that bank's
//! transaction processor, which is allowed on frozen banks too and leaves every
//! bank hash unchanged.
//!
//! A bank copies its parent's builtins when it is created, so registration
//! needs care while the validator runs: a child created a moment before its
//! parent was registered does not have the program. [`register`] therefore
//! registers every bank in `BankForks` and keeps going until it sees a *new*
//! bank that already runs the program on its own, i.e. one created after its
//! parent was registered. From then on every bank descends from a registered
//! bank. Whether a bank runs the program is observed, not assumed:
//! [`runs_program`] simulates an instruction in that bank.
use anchor_lang::solana_program::instruction::error::InstructionError;
use cairn_chain::PROGRAM_ID;
use solana_account::{Account, AccountSharedData};
use solana_keypair::Keypair;
use solana_program_runtime::program_cache_entry::ProgramCacheEntry;
use solana_runtime::{bank::Bank, bank_forks::BankForks};
use solana_signer::Signer;
use solana_transaction::{
    versioned::VersionedTransaction, Transaction, TransactionVerificationMode,
};
use solana_transaction_error::TransactionError;
use std::{
    collections::BTreeSet,
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

pub use cairn_native_host::PROGRAM_NAME;

/// The program's account in genesis: native loader, executable, name as data,
/// holding `lamports` (its rent-exempt minimum).
pub fn program_account(lamports: u64) -> AccountSharedData {
    AccountSharedData::from(Account {
        lamports,
        data: PROGRAM_NAME.as_bytes().to_vec(),
        owner: solana_sdk_ids::native_loader::id(),
        executable: true,
        rent_epoch: 0,
    })
}

/// Adds the program's native entry point to `bank` (idempotent).
pub fn add_to(bank: &Bank) {
    let register = solana_program_test::processor!(cairn_native_host::entry)
        .expect("processor! always yields a registerer");
    let entry = ProgramCacheEntry::new_builtin(0, PROGRAM_NAME.len(), register);
    bank.add_builtin(PROGRAM_ID, PROGRAM_NAME, entry);
}

/// Whether `bank` executes the program: simulates an instruction with no data,
/// signed by `payer` (an account with lamports). The program answers with its
/// own error (Anchor's `InstructionFallbackNotFound`); a bank without the
/// builtin fails before any program code runs.
pub fn runs_program(bank: &Bank, payer: &Keypair) -> bool {
    let ix = cairn_chain::Instruction {
        program_id: PROGRAM_ID,
        accounts: vec![],
        data: vec![],
    };
    let tx = Transaction::new_signed_with_payer(
        &[ix],
        Some(&payer.pubkey()),
        &[payer],
        bank.last_blockhash(),
    );
    let Ok(tx) = bank.verify_transaction(
        VersionedTransaction::from(tx),
        TransactionVerificationMode::HashOnly,
    ) else {
        return false;
    };
    let result = bank.simulate_transaction_unchecked(&tx, false).result;
    matches!(
        result,
        Err(TransactionError::InstructionError(0, InstructionError::Custom(code))) if code == anchor_lang::error::ErrorCode::InstructionFallbackNotFound as u32
    )
}

/// What [`register`] did.
#[derive(Debug, Clone)]
pub struct Registration {
    /// Banks the program was added to, by slot.
    pub registered: Vec<u64>,
    /// The first bank seen that had inherited the program from its parent.
    pub inherited_at: u64,
}

/// Registers the program in every bank of `bank_forks` until a newly created
/// bank is seen to have inherited it (see the module documentation). Fails
/// after `timeout`, e.g. if the validator stopped producing banks.
pub fn register(
    bank_forks: &RwLock<BankForks>,
    payer: &Keypair,
    timeout: Duration,
) -> Result<Registration, String> {
    let deadline = Instant::now() + timeout;
    let mut seen = BTreeSet::new();
    let mut registered = Vec::new();
    let mut first_pass_max: Option<u64> = None;
    loop {
        let mut banks: Vec<Arc<Bank>> = bank_forks
            .read()
            .expect("bank forks lock")
            .banks()
            .values()
            .map(|bank| bank.clone_without_scheduler())
            .collect();
        banks.sort_by_key(|bank| bank.slot());
        let mut inherited_at = None;
        for bank in &banks {
            if !seen.insert(bank.slot()) {
                continue;
            }
            if runs_program(bank, payer) {
                if first_pass_max.is_some_and(|max| bank.slot() > max) {
                    inherited_at.get_or_insert(bank.slot());
                }
            } else {
                add_to(bank);
                registered.push(bank.slot());
                if !runs_program(bank, payer) {
                    return Err(format!(
                        "the program does not run in bank {} after registration",
                        bank.slot()
                    ));
                }
            }
        }
        let max = banks.last().map(|bank| bank.slot()).unwrap_or(0);
        first_pass_max.get_or_insert(max);
        if let Some(inherited_at) = inherited_at {
            return Ok(Registration {
                registered,
                inherited_at,
            });
        }
        if Instant::now() > deadline {
            return Err(format!(
                "no new bank inherited the program within {timeout:?} (banks seen: {seen:?})"
            ));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Slots of the banks in `bank_forks` that do not run the program (empty once
/// [`register`] has returned).
pub fn banks_without_program(bank_forks: &RwLock<BankForks>, payer: &Keypair) -> Vec<u64> {
    let banks: Vec<Arc<Bank>> = bank_forks
        .read()
        .expect("bank forks lock")
        .banks()
        .values()
        .map(|bank| bank.clone_without_scheduler())
        .collect();
    let mut missing: Vec<u64> = banks
        .iter()
        .filter(|bank| !runs_program(bank, payer))
        .map(|bank| bank.slot())
        .collect();
    missing.sort_unstable();
    missing
}
