//! SPL Token and Token-2022 instruction builders for the market's payment mint.
//!
//! The market accepts a mint of either token program; these builders use the
//! Token-2022 interface, whose instructions (without extensions) are byte-for-byte
//! those of SPL Token and which accepts either program id. The caller supplies
//! the rent-exempt balance (from `getMinimumBalanceForRentExemption` or the bank's
//! `Rent`), so nothing here does I/O.
use anchor_lang::prelude::Pubkey;
use anchor_lang::solana_program::instruction::Instruction;
use anchor_spl::{token::spl_token, token_2022::spl_token_2022};

/// Size of a mint account without extensions (both token programs).
pub const MINT_LEN: usize = 82;
/// Size of a token account without extensions (both token programs).
pub const TOKEN_ACCOUNT_LEN: usize = 165;
/// Offset of the `amount` field (u64 LE) in a token account.
const AMOUNT_OFFSET: usize = 64;

/// `token_program` is neither SPL Token nor Token-2022.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0} is not a token program; use SPL Token or Token-2022")]
pub struct UnknownTokenProgram(pub Pubkey);

/// Whether `program` is SPL Token or Token-2022.
pub fn is_token_program(program: &Pubkey) -> bool {
    *program == spl_token::ID || *program == spl_token_2022::ID
}

fn check(program: &Pubkey) -> Result<(), UnknownTokenProgram> {
    if is_token_program(program) {
        Ok(())
    } else {
        Err(UnknownTokenProgram(*program))
    }
}

/// Creates `mint` (a new keypair that must sign) with `decimals` and
/// `mint_authority`, no freeze authority: `create_account` + `initialize_mint2`.
pub fn create_mint_ixs(
    token_program: &Pubkey,
    payer: &Pubkey,
    mint: &Pubkey,
    mint_authority: &Pubkey,
    decimals: u8,
    rent_lamports: u64,
) -> Result<[Instruction; 2], UnknownTokenProgram> {
    check(token_program)?;
    let create = solana_system_interface::instruction::create_account(
        payer,
        mint,
        rent_lamports,
        MINT_LEN as u64,
        token_program,
    );
    let init = spl_token_2022::instruction::initialize_mint2(
        token_program,
        mint,
        mint_authority,
        None,
        decimals,
    )
    .expect("program id checked above");
    Ok([create, init])
}

/// Creates token account `account` (a new keypair that must sign) of `mint`
/// owned by `owner`: `create_account` + `initialize_account3`.
pub fn create_token_account_ixs(
    token_program: &Pubkey,
    payer: &Pubkey,
    account: &Pubkey,
    mint: &Pubkey,
    owner: &Pubkey,
    rent_lamports: u64,
) -> Result<[Instruction; 2], UnknownTokenProgram> {
    check(token_program)?;
    let create = solana_system_interface::instruction::create_account(
        payer,
        account,
        rent_lamports,
        TOKEN_ACCOUNT_LEN as u64,
        token_program,
    );
    let init =
        spl_token_2022::instruction::initialize_account3(token_program, account, mint, owner)
            .expect("program id checked above");
    Ok([create, init])
}

/// Mints `amount` of `mint` into `account`, signed by `mint_authority`.
pub fn mint_to_ix(
    token_program: &Pubkey,
    mint: &Pubkey,
    account: &Pubkey,
    mint_authority: &Pubkey,
    amount: u64,
) -> Result<Instruction, UnknownTokenProgram> {
    check(token_program)?;
    Ok(spl_token_2022::instruction::mint_to(
        token_program,
        mint,
        account,
        mint_authority,
        &[],
        amount,
    )
    .expect("program id checked above"))
}

/// The Associated Token Account program.
pub const ASSOCIATED_TOKEN_PROGRAM_ID: Pubkey =
    anchor_lang::pubkey!("ATokenGPvbdGVxr1b2hvZbsiqW5xWH25efTNsLJA8knL");

/// The associated token account of `owner` for `mint` under `token_program`:
/// the account wallets and the Solana CLI use by default.
pub fn associated_token_address(owner: &Pubkey, mint: &Pubkey, token_program: &Pubkey) -> Pubkey {
    Pubkey::find_program_address(
        &[owner.as_ref(), token_program.as_ref(), mint.as_ref()],
        &ASSOCIATED_TOKEN_PROGRAM_ID,
    )
    .0
}

/// Creates `owner`'s associated token account for `mint` unless it exists
/// (`CreateIdempotent`), paid by `payer`.
pub fn create_associated_token_account_ix(
    token_program: &Pubkey,
    payer: &Pubkey,
    owner: &Pubkey,
    mint: &Pubkey,
) -> Result<Instruction, UnknownTokenProgram> {
    use anchor_lang::solana_program::instruction::AccountMeta;
    check(token_program)?;
    Ok(Instruction {
        program_id: ASSOCIATED_TOKEN_PROGRAM_ID,
        accounts: vec![
            AccountMeta::new(*payer, true),
            AccountMeta::new(associated_token_address(owner, mint, token_program), false),
            AccountMeta::new_readonly(*owner, false),
            AccountMeta::new_readonly(*mint, false),
            AccountMeta::new_readonly(solana_system_interface::program::ID, false),
            AccountMeta::new_readonly(*token_program, false),
        ],
        // AssociatedTokenAccountInstruction::CreateIdempotent
        data: vec![1],
    })
}

/// The balance recorded in a token account's data (same layout in both
/// programs), or `None` if the data is too short to be a token account.
pub fn token_account_amount(data: &[u8]) -> Option<u64> {
    let bytes = data.get(AMOUNT_OFFSET..AMOUNT_OFFSET + 8)?;
    Some(u64::from_le_bytes(bytes.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builders_refuse_a_program_that_is_not_a_token_program() {
        let other = Pubkey::new_unique();
        let k = Pubkey::new_unique();
        assert_eq!(
            create_mint_ixs(&other, &k, &k, &k, 6, 1).unwrap_err(),
            UnknownTokenProgram(other)
        );
        assert!(create_token_account_ixs(&other, &k, &k, &k, &k, 1).is_err());
        assert!(mint_to_ix(&other, &k, &k, &k, 1).is_err());
        assert!(create_associated_token_account_ix(&other, &k, &k, &k).is_err());
    }

    #[test]
    fn associated_token_address_matches_the_interface_crate() {
        use spl_associated_token_account_interface::address as ata;
        for program in [spl_token::ID, spl_token_2022::ID] {
            let (owner, mint) = (Pubkey::new_unique(), Pubkey::new_unique());
            let theirs = ata::get_associated_token_address_with_program_id(
                &owner.to_bytes().into(),
                &mint.to_bytes().into(),
                &program.to_bytes().into(),
            );
            assert_eq!(
                associated_token_address(&owner, &mint, &program).to_bytes(),
                theirs.to_bytes()
            );
            let ix = create_associated_token_account_ix(&program, &owner, &owner, &mint).unwrap();
            assert_eq!(ix.accounts[1].pubkey.to_bytes(), theirs.to_bytes());
        }
    }

    #[test]
    fn builders_target_the_chosen_token_program() {
        let k = Pubkey::new_unique();
        for program in [spl_token::ID, spl_token_2022::ID] {
            let [create, init] = create_mint_ixs(&program, &k, &k, &k, 6, 1).unwrap();
            assert_eq!(create.program_id, solana_system_interface::program::ID);
            assert_eq!(init.program_id, program);
            assert_eq!(
                mint_to_ix(&program, &k, &k, &k, 5).unwrap().program_id,
                program
            );
        }
    }

    #[test]
    fn amount_is_read_from_its_offset_and_short_data_is_refused() {
        let mut data = vec![0u8; TOKEN_ACCOUNT_LEN];
        data[64..72].copy_from_slice(&1234u64.to_le_bytes());
        assert_eq!(token_account_amount(&data), Some(1234));
        assert_eq!(token_account_amount(&data[..71]), None);
    }
}
