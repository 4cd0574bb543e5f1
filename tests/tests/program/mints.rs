//! Which payment mints `init_market` accepts, and who may call it where the program
//! is upgradeable. Each refused mint is a real Token-2022 mint with the extension,
//! and the refusal is checked by its own error code with no market left behind.
use anchor_spl::token_2022::spl_token_2022::{
    self,
    extension::{
        default_account_state::instruction::initialize_default_account_state,
        transfer_fee::instruction::initialize_transfer_fee_config,
        transfer_hook::instruction::initialize as initialize_transfer_hook, ExtensionType,
    },
    state::{AccountState, Mint},
};
use cairn_tests::*;
use solana_account::AccountSharedData;
use solana_keypair::Keypair;
use solana_signer::Signer;
use storage_market::errors::MarketError;

/// Creates a Token-2022 mint carrying `extensions`, initialised by `init` (the
/// extensions' own instructions, which must come before `initialize_mint2`).
async fn mint_with(
    m: &mut TestMarket,
    extensions: &[ExtensionType],
    init: impl Fn(&Pubkey) -> Vec<Instruction>,
) -> Pubkey {
    let mint = Keypair::new();
    let program = spl_token_2022::ID;
    let len = ExtensionType::try_calculate_account_len::<Mint>(extensions).expect("mint length");
    let rent = m.ctx.banks_client.get_rent().await.expect("rent");
    let mut ixs = vec![solana_system_interface::instruction::create_account(
        &m.ctx.payer.pubkey(),
        &mint.pubkey(),
        rent.minimum_balance(len),
        len as u64,
        &program,
    )];
    ixs.extend(init(&mint.pubkey()));
    let authority = m.mint_authority.pubkey();
    ixs.push(
        spl_token_2022::instruction::initialize_mint2(
            &program,
            &mint.pubkey(),
            &authority,
            Some(&authority),
            6,
        )
        .expect("initialize_mint2"),
    );
    m.send(&ixs, &[&mint]).await.expect("create mint");
    mint.pubkey()
}

#[tokio::test]
async fn init_market_refuses_mints_that_could_break_the_vault_each_by_name() {
    let mut m = TestMarket::new_uninitialized(TokenKind::Token2022).await;
    let authority = m.authority.insecure_clone();
    let owner = Keypair::new().pubkey();
    let program = spl_token_2022::ID;
    let mut cases: Vec<(&str, Pubkey, MarketError)> = Vec::new();

    let mint = mint_with(&mut m, &[ExtensionType::TransferFeeConfig], |mint| {
        vec![
            initialize_transfer_fee_config(&program, mint, Some(&owner), Some(&owner), 50, 1_000)
                .expect("fee"),
        ]
    })
    .await;
    cases.push(("transfer fee", mint, MarketError::MintHasTransferFee));

    // A fee of zero today can be raised tomorrow by its authority: refused too.
    let mint = mint_with(&mut m, &[ExtensionType::TransferFeeConfig], |mint| {
        vec![initialize_transfer_fee_config(&program, mint, Some(&owner), None, 0, 0).expect("fee")]
    })
    .await;
    cases.push(("zero transfer fee", mint, MarketError::MintHasTransferFee));

    let hook_program = Keypair::new().pubkey();
    let mint = mint_with(&mut m, &[ExtensionType::TransferHook], |mint| {
        vec![
            initialize_transfer_hook(&program, mint, Some(owner), Some(hook_program))
                .expect("hook"),
        ]
    })
    .await;
    cases.push(("transfer hook", mint, MarketError::MintHasTransferHook));

    let mint = mint_with(&mut m, &[ExtensionType::PermanentDelegate], |mint| {
        vec![
            spl_token_2022::instruction::initialize_permanent_delegate(&program, mint, &owner)
                .expect("delegate"),
        ]
    })
    .await;
    cases.push((
        "permanent delegate",
        mint,
        MarketError::MintHasPermanentDelegate,
    ));

    let mint = mint_with(&mut m, &[ExtensionType::DefaultAccountState], |mint| {
        vec![
            initialize_default_account_state(&program, mint, &AccountState::Frozen)
                .expect("default state"),
        ]
    })
    .await;
    cases.push(("default frozen", mint, MarketError::MintDefaultFrozen));

    let mint = mint_with(&mut m, &[ExtensionType::NonTransferable], |mint| {
        vec![
            spl_token_2022::instruction::initialize_non_transferable_mint(&program, mint)
                .expect("non-transferable"),
        ]
    })
    .await;
    cases.push(("non-transferable", mint, MarketError::MintNonTransferable));

    for (name, mint, err) in cases {
        let ix = m.init_market_ix(&authority.pubkey(), mint, test_params());
        let result = m.send(&[ix], &[&authority]).await;
        assert_eq!(
            custom_code(&result),
            Some(code(err)),
            "{name}: expected {err:?}, got {result:?}"
        );
        assert!(!m.account_exists(&market_pda()).await, "{name}");
    }

    // Extensions that move no amounts and give nobody the vault's tokens are
    // accepted: a default state of Initialized and a mint close authority.
    let mint = mint_with(
        &mut m,
        &[
            ExtensionType::DefaultAccountState,
            ExtensionType::MintCloseAuthority,
        ],
        |mint| {
            vec![
                initialize_default_account_state(&program, mint, &AccountState::Initialized)
                    .expect("default state"),
                spl_token_2022::instruction::initialize_mint_close_authority(
                    &program,
                    mint,
                    Some(&owner),
                )
                .expect("close authority"),
            ]
        },
    )
    .await;
    let ix = m.init_market_ix(&authority.pubkey(), mint, test_params());
    m.send(&[ix], &[&authority]).await.expect("an allowed mint");
    assert_eq!(m.market().await.mint, mint);
}

/// The ProgramData account of an upgradeable deployment, as the upgradeable
/// loader lays it out (bincode `UpgradeableLoaderState::ProgramData`: tag 3, slot,
/// `Option<Pubkey>`), with no program bytes after it.
fn program_data(upgrade_authority: Option<Pubkey>) -> AccountSharedData {
    let mut data = 3u32.to_le_bytes().to_vec();
    data.extend_from_slice(&7u64.to_le_bytes());
    match upgrade_authority {
        Some(key) => {
            data.push(1);
            data.extend_from_slice(key.as_ref());
        }
        None => data.push(0),
    }
    let mut account = AccountSharedData::new(
        1_000_000_000,
        data.len(),
        &anchor_lang::solana_program::bpf_loader_upgradeable::ID,
    );
    account.set_data_from_slice(&data);
    account
}

/// The program runs natively here, so it has no ProgramData account: this test
/// plants one at the program's ProgramData address (a test double of an upgradeable
/// deployment) and checks that only its upgrade authority may create the market.
#[tokio::test]
async fn init_market_only_by_the_upgrade_authority_with_a_planted_program_data_account() {
    let mut m = TestMarket::new_uninitialized(TokenKind::Token).await;
    let authority = m.authority.insecure_clone();
    let stranger = Keypair::new();
    m.airdrop(&stranger.pubkey(), 1_000_000_000).await;

    // An immutable program (no upgrade authority): nobody.
    m.ctx.set_account(&program_data_pda(), &program_data(None));
    let ix = m.init_market_ix(&authority.pubkey(), m.mint, test_params());
    assert_market_err(
        m.send(&[ix], &[&authority]).await,
        MarketError::NotUpgradeAuthority,
    );

    m.ctx
        .set_account(&program_data_pda(), &program_data(Some(authority.pubkey())));
    m.next_slot().await;
    let ix = m.init_market_ix(&stranger.pubkey(), m.mint, test_params());
    assert_market_err(
        m.send(&[ix], &[&stranger]).await,
        MarketError::NotUpgradeAuthority,
    );
    assert!(!m.account_exists(&market_pda()).await);

    let ix = m.init_market_ix(&authority.pubkey(), m.mint, test_params());
    m.send(&[ix], &[&authority])
        .await
        .expect("the upgrade authority");
    assert_eq!(m.market().await.authority, authority.pubkey());
}
