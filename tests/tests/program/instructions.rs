//! Every instruction against the wrong signer, a substituted account, the wrong
//! state, overflowing parameters and replay. Each refusal is checked by its
//! error code, and that nothing moved.
use anchor_lang::error::ErrorCode as AnchorError;
use cairn_tests::*;
use solana_keypair::Keypair;
use solana_signer::Signer;
use storage_market::errors::MarketError;
use storage_market::instructions::{RegisterProviderArgs, UpdateProviderArgs};
use storage_market::state::{DealState, MarketParams};

/// System program `AccountAlreadyInUse`: what `init` of an existing PDA returns.
const ALREADY_IN_USE: u32 = 0;
/// SPL Token `InsufficientFunds`.
const TOKEN_INSUFFICIENT_FUNDS: u32 = 1;

#[tokio::test]
async fn init_market_rejects_bad_params_and_a_second_market() {
    let mut m = TestMarket::new_uninitialized(TokenKind::Token).await;
    let authority = m.authority.insecure_clone();
    let case = |params: MarketParams, err: MarketError| (params, err);
    let base = test_params();
    let cases: Vec<(MarketParams, MarketError)> = vec![
        case(
            MarketParams {
                epoch_slots: 3,
                ..base
            },
            MarketError::InvalidEpochSlots,
        ),
        case(
            MarketParams {
                slash_bps: 10_001,
                ..base
            },
            MarketError::InvalidBps,
        ),
        case(
            MarketParams {
                accept_timeout_epochs: 0,
                ..base
            },
            MarketError::InvalidAcceptTimeout,
        ),
        case(
            MarketParams {
                accept_timeout_epochs: 10_001,
                ..base
            },
            MarketError::InvalidAcceptTimeout,
        ),
        case(
            MarketParams {
                response_slots: 2,
                ..base
            },
            MarketError::InvalidResponseSlots,
        ),
        case(
            MarketParams {
                response_slots: 101,
                ..base
            },
            MarketError::InvalidResponseSlots,
        ),
        case(
            MarketParams {
                samples_per_epoch: 0,
                ..base
            },
            MarketError::InvalidSamplesPerEpoch,
        ),
        case(
            MarketParams {
                samples_per_epoch: 257,
                ..base
            },
            MarketError::InvalidSamplesPerEpoch,
        ),
        case(
            MarketParams {
                jail_window: 0,
                ..base
            },
            MarketError::InvalidJailParams,
        ),
        case(
            MarketParams {
                jail_window: 1_001,
                ..base
            },
            MarketError::InvalidJailParams,
        ),
        case(
            MarketParams {
                jail_failures: 0,
                ..base
            },
            MarketError::InvalidJailParams,
        ),
        case(
            MarketParams {
                jail_failures: 11,
                ..base
            },
            MarketError::InvalidJailParams,
        ),
        case(
            MarketParams {
                max_shard_bytes: (4 << 30) + 1,
                ..base
            },
            MarketError::InvalidMaxShardBytes,
        ),
        case(
            MarketParams {
                max_shard_bytes: 63,
                ..base
            },
            MarketError::InvalidMaxShardBytes,
        ),
    ];
    for (params, err) in cases {
        let ix = m.init_market_ix(&authority.pubkey(), m.mint, params);
        assert_market_err(m.send(&[ix], &[&authority]).await, err);
    }
    assert!(!m.account_exists(&market_pda()).await);

    // A mint of one token program with the other program: refused.
    let ix = {
        let mut ix = m.init_market_ix(&authority.pubkey(), m.mint, test_params());
        substitute(
            &mut ix,
            &TokenKind::Token.program_id(),
            TokenKind::Token2022.program_id(),
        );
        ix
    };
    assert!(m.send(&[ix], &[&authority]).await.is_err());
    assert!(!m.account_exists(&market_pda()).await);

    let ix = m.init_market_ix(&authority.pubkey(), m.mint, test_params());
    m.send(&[ix], &[&authority]).await.expect("init");
    // Replay by anyone: the one market exists.
    let other = Keypair::new();
    m.airdrop(&other.pubkey(), 1_000_000_000).await;
    let ix = m.init_market_ix(&other.pubkey(), m.mint, test_params());
    let replay = m.send(&[ix], &[&other]).await;
    assert_eq!(custom_code(&replay), Some(ALREADY_IN_USE), "{replay:?}");
    assert_eq!(m.market().await.authority, authority.pubkey());
}

#[tokio::test]
async fn update_market_only_by_its_authority_never_epoch_slots_or_jail_rules() {
    let mut m = TestMarket::start().await;
    let a = m.add_provider().await;
    let client = m.client(1_000_000).await;
    let shard = TestShard::random(1_000, 3);
    let before = m.propose(&client, &a, &shard, [1; 32], 0, 3).await;

    let new_params = MarketParams {
        slash_bps: 5_000,
        accept_timeout_epochs: 7,
        samples_per_epoch: 9,
        ..test_params()
    };
    let intruder = Keypair::new();
    let ix = m.update_market_ix(&intruder.pubkey(), new_params);
    assert_market_err(
        m.send(&[ix], &[&intruder]).await,
        MarketError::WrongMarketAuthority,
    );

    let authority = m.authority.insecure_clone();
    for params in [
        MarketParams {
            epoch_slots: 7,
            response_slots: 7,
            ..test_params()
        },
        MarketParams {
            jail_failures: 2,
            ..test_params()
        },
        MarketParams {
            jail_window: 20,
            ..test_params()
        },
    ] {
        let ix = m.update_market_ix(&authority.pubkey(), params);
        assert_market_err(
            m.send(&[ix], &[&authority]).await,
            MarketError::ParamImmutable,
        );
        m.next_slot().await;
    }
    let ix = m.update_market_ix(
        &authority.pubkey(),
        MarketParams {
            response_slots: 101,
            ..test_params()
        },
    );
    assert_market_err(
        m.send(&[ix], &[&authority]).await,
        MarketError::InvalidResponseSlots,
    );

    let ix = m.update_market_ix(&authority.pubkey(), new_params);
    m.send(&[ix], &[&authority]).await.expect("update");
    assert_eq!(m.market().await.params, new_params);
    // Deals keep the terms they were proposed under; new deals get the new ones.
    let after = m.propose(&client, &a, &shard, [1; 32], 1, 3).await;
    let (before, after) = (m.deal(&before).await, m.deal(&after).await);
    assert_eq!(
        (before.slash_bps, before.accept_timeout_epochs),
        (test_params().slash_bps, test_params().accept_timeout_epochs)
    );
    assert_eq!((after.slash_bps, after.accept_timeout_epochs), (5_000, 7));
    // An epoch's sampling rules are fixed when it opens.
    m.open(1).await;
    assert_eq!(m.challenge().await.samples_per_epoch, 9);
}

#[tokio::test]
async fn register_and_update_provider_checks() {
    let mut m = TestMarket::start().await;
    let authority = Keypair::new();
    m.airdrop(&authority.pubkey(), 1_000_000_000).await;
    let args = |endpoint: &str, capacity: u64| RegisterProviderArgs {
        operator: Pubkey::new_unique(),
        endpoint: endpoint.into(),
        capacity_bytes: capacity,
        price_per_mib_epoch: 1,
    };
    for (a, err) in [
        (args("", 10), MarketError::InvalidEndpoint),
        (args(&"x".repeat(65), 10), MarketError::InvalidEndpoint),
        (args("h:1", 0), MarketError::InvalidCapacity),
    ] {
        let ix = m.register_provider_ix(&authority.pubkey(), a);
        assert_market_err(m.send(&[ix], &[&authority]).await, err);
    }
    // Someone else's provider address.
    let mut ix = m.register_provider_ix(&authority.pubkey(), args("h:1", 10));
    substitute(
        &mut ix,
        &provider_pda(&authority.pubkey()),
        provider_pda(&Pubkey::new_unique()),
    );
    assert_anchor_err(
        m.send(&[ix], &[&authority]).await,
        AnchorError::ConstraintSeeds,
    );

    let ix = m.register_provider_ix(&authority.pubkey(), args(&"x".repeat(64), 10));
    m.send(&[ix], &[&authority]).await.expect("register");
    m.next_slot().await;
    let ix = m.register_provider_ix(&authority.pubkey(), args("h:1", 10));
    let replay = m.send(&[ix], &[&authority]).await;
    assert_eq!(custom_code(&replay), Some(ALREADY_IN_USE), "{replay:?}");

    // update_provider: another authority cannot touch it.
    let pda = provider_pda(&authority.pubkey());
    let intruder = Keypair::new();
    let ix = m.update_provider_ix(
        &intruder.pubkey(),
        &pda,
        UpdateProviderArgs {
            capacity_bytes: Some(1),
            ..Default::default()
        },
    );
    assert_anchor_err(
        m.send(&[ix], &[&intruder]).await,
        AnchorError::ConstraintSeeds,
    );
    let ix = m.update_provider_ix(
        &authority.pubkey(),
        &pda,
        UpdateProviderArgs {
            endpoint: Some(String::new()),
            ..Default::default()
        },
    );
    assert_market_err(
        m.send(&[ix], &[&authority]).await,
        MarketError::InvalidEndpoint,
    );
    let new_operator = Pubkey::new_unique();
    let ix = m.update_provider_ix(
        &authority.pubkey(),
        &pda,
        UpdateProviderArgs {
            operator: Some(new_operator),
            price_per_mib_epoch: Some(42),
            ..Default::default()
        },
    );
    m.send(&[ix], &[&authority]).await.expect("update");
    let p: storage_market::state::Provider = m.fetch(&pda).await;
    assert_eq!(
        (p.operator, p.price_per_mib_epoch, p.capacity_bytes),
        (new_operator, 42, 10)
    );
}

#[tokio::test]
async fn capacity_cannot_drop_below_bytes_in_use_and_rotated_operator_takes_over() {
    let mut m = TestMarket::start().await;
    let a = m.add_provider().await;
    let client = m.client(1_000_000).await;
    let shard = TestShard::random(5_000, 4);
    let d = m.propose(&client, &a, &shard, [2; 32], 0, 3).await;
    m.accept(&a, &d).await;
    let ix = m.update_provider_ix(
        &a.authority.pubkey(),
        &a.pda,
        UpdateProviderArgs {
            capacity_bytes: Some(4_999),
            ..Default::default()
        },
    );
    assert_market_err(
        m.send(&[ix], &[&a.authority]).await,
        MarketError::InvalidCapacity,
    );

    let d2 = m.propose(&client, &a, &shard, [2; 32], 1, 3).await;
    let new_operator = Keypair::new();
    m.airdrop(&new_operator.pubkey(), 1_000_000_000).await;
    let ix = m.update_provider_ix(
        &a.authority.pubkey(),
        &a.pda,
        UpdateProviderArgs {
            operator: Some(new_operator.pubkey()),
            ..Default::default()
        },
    );
    m.send(&[ix], &[&a.authority]).await.unwrap();
    let set_len = m.deal_set(&a.pda).await.len;
    let ix = m.accept_deal_ix(&a.operator.pubkey(), &a.pda, &d2, set_len);
    assert_market_err(
        m.send(&[ix], &[&a.operator]).await,
        MarketError::WrongOperator,
    );
    let ix = m.accept_deal_ix(&new_operator.pubkey(), &a.pda, &d2, set_len);
    m.send(&[ix], &[&new_operator])
        .await
        .expect("new operator accepts");
}

#[tokio::test]
async fn stake_deposit_and_withdrawal_checks() {
    let mut m = TestMarket::start().await;
    let a = m.add_provider_with(1 << 30, 100, 10_000, 5_000).await;
    let b = m.add_provider().await;
    let auth = a.authority.insecure_clone();

    let ix = m.deposit_stake_ix(&auth.pubkey(), &a.token, 0);
    assert_market_err(m.send(&[ix], &[&auth]).await, MarketError::ZeroAmount);
    let ix = m.deposit_stake_ix(&auth.pubkey(), &a.token, u64::MAX);
    assert_market_err(
        m.send(&[ix], &[&auth]).await,
        MarketError::ArithmeticOverflow,
    );
    let ix = m.deposit_stake_ix(&auth.pubkey(), &a.token, 5_001);
    let short = m.send(&[ix], &[&auth]).await;
    assert_eq!(
        custom_code(&short),
        Some(TOKEN_INSUFFICIENT_FUNDS),
        "{short:?}"
    );

    // Substituted accounts: a fake vault, another provider's account (another
    // mint's accounts: `token_accounts_of_another_mint_are_refused`).
    let fake_vault = m.token_account(&auth.pubkey(), 0).await;
    let ix = m.deposit_stake_ix_with(&auth.pubkey(), &a.pda, &a.token, &fake_vault, &m.mint, 100);
    assert_market_err(m.send(&[ix], &[&auth]).await, MarketError::WrongVault);
    let ix = m.deposit_stake_ix_with(&auth.pubkey(), &b.pda, &a.token, &vault_pda(), &m.mint, 100);
    assert_anchor_err(m.send(&[ix], &[&auth]).await, AnchorError::ConstraintSeeds);

    // The same signed transaction twice: the runtime executes it once (the
    // banks server answers the copy with the first one's status).
    let ix = m.deposit_stake_ix(&auth.pubkey(), &a.token, 1_000);
    m.send(std::slice::from_ref(&ix), &[&auth])
        .await
        .expect("deposit");
    let _ = m.send(&[ix], &[&auth]).await;
    assert_eq!(m.provider(&a).await.stake_free, 11_000);
    assert_eq!(m.token_balance(&a.token).await, 4_000);
    m.assert_conserved(&[&a.pda, &b.pda], &[], "deposits").await;

    // Withdrawals: only free stake, only by the authority.
    let ix = m.withdraw_stake_ix(&auth.pubkey(), &a.token, 11_001);
    assert_market_err(
        m.send(&[ix], &[&auth]).await,
        MarketError::InsufficientFreeStake,
    );
    let ix = m.withdraw_stake_ix(&auth.pubkey(), &a.token, 0);
    assert_market_err(m.send(&[ix], &[&auth]).await, MarketError::ZeroAmount);
    let mut ix = m.withdraw_stake_ix(&b.authority.pubkey(), &b.token, 10);
    substitute(&mut ix, &b.pda, a.pda);
    assert_anchor_err(
        m.send(&[ix], &[&b.authority]).await,
        AnchorError::ConstraintSeeds,
    );

    // Locked collateral cannot be withdrawn.
    let client = m.client(1_000_000).await;
    let shard = TestShard::random(1_000, 5);
    let d = m.propose(&client, &a, &shard, [3; 32], 0, 3).await;
    m.accept(&a, &d).await;
    let p = m.provider(&a).await;
    assert_eq!(p.stake_locked, test_params().collateral_per_mib);
    let ix = m.withdraw_stake_ix(&auth.pubkey(), &a.token, p.stake_free + 1);
    assert_market_err(
        m.send(&[ix], &[&auth]).await,
        MarketError::InsufficientFreeStake,
    );
    let ix = m.withdraw_stake_ix(&auth.pubkey(), &a.token, p.stake_free);
    m.send(&[ix], &[&auth]).await.expect("withdraw all free");
    m.assert_conserved(&[&a.pda, &b.pda], &[&d], "withdrawal")
        .await;

    // Earnings: none yet.
    let ix = m.withdraw_earnings_ix(&auth.pubkey(), &a.token, 1);
    assert_market_err(
        m.send(&[ix], &[&auth]).await,
        MarketError::InsufficientEarnings,
    );
    // Deregistering with an active deal is refused.
    let ix = m.deregister_provider_ix(&auth.pubkey(), &a.token);
    assert_market_err(m.send(&[ix], &[&auth]).await, MarketError::ProviderBusy);
    // b can deregister; its account is gone and cannot be deregistered again.
    let ix = m.deregister_provider_ix(&b.authority.pubkey(), &b.token);
    m.send(std::slice::from_ref(&ix), &[&b.authority])
        .await
        .expect("deregister b");
    m.next_slot().await;
    assert_anchor_err(
        m.send(&[ix], &[&b.authority]).await,
        AnchorError::AccountNotInitialized,
    );
}

#[tokio::test]
async fn token_accounts_of_another_mint_are_refused() {
    let mut m = TestMarket::start().await;
    let a = m.add_provider().await;
    let auth = a.authority.insecure_clone();
    // A second mint on the same chain, with a token account of it.
    let second = {
        let mint = Keypair::new();
        let rent = m.ctx.banks_client.get_rent().await.unwrap();
        let create = solana_system_interface::instruction::create_account(
            &m.ctx.payer.pubkey(),
            &mint.pubkey(),
            rent.minimum_balance(82),
            82,
            &TokenKind::Token.program_id(),
        );
        let init = anchor_spl::token::spl_token::instruction::initialize_mint2(
            &TokenKind::Token.program_id(),
            &mint.pubkey(),
            &m.mint_authority.pubkey(),
            None,
            6,
        )
        .unwrap();
        m.send(&[create, init], &[&mint]).await.unwrap();
        mint.pubkey()
    };
    let foreign = m.token_account_of(second, &auth.pubkey(), 1_000).await;
    let ix = m.deposit_stake_ix(&auth.pubkey(), &foreign, 100);
    assert_market_err(
        m.send(&[ix], &[&auth]).await,
        MarketError::WrongTokenAccountMint,
    );
    let ix = m.deposit_stake_ix_with(&auth.pubkey(), &a.pda, &a.token, &vault_pda(), &second, 100);
    assert_market_err(m.send(&[ix], &[&auth]).await, MarketError::WrongMint);
    let ix = m.withdraw_stake_ix(&auth.pubkey(), &foreign, 100);
    assert_market_err(
        m.send(&[ix], &[&auth]).await,
        MarketError::WrongTokenAccountMint,
    );
}

#[tokio::test]
async fn propose_deal_checks() {
    let mut m = TestMarket::start().await;
    let a = m.add_provider_with(10_000, 100, 1_000_000, 0).await;
    let client = m.client(1_000).await;
    let shard = TestShard::random(1_000, 6);
    let base = m.deal_args(&client.keypair.pubkey(), &shard, [4; 32], 0, 3);
    let cases = vec![
        // A dataset id that is not derived from this client and nonce: nobody
        // files deals under another client's dataset.
        (
            storage_market::instructions::ProposeDealArgs {
                dataset_nonce: [5; 32],
                ..base.clone()
            },
            MarketError::WrongDatasetId,
        ),
        (
            storage_market::instructions::ProposeDealArgs {
                dataset_id: cairn_chain::dataset_id(&a.pda, &base.dataset_nonce),
                ..base.clone()
            },
            MarketError::WrongDatasetId,
        ),
        (
            storage_market::instructions::ProposeDealArgs {
                shard_bytes: 0,
                ..base.clone()
            },
            MarketError::InvalidShardBytes,
        ),
        (
            storage_market::instructions::ProposeDealArgs {
                shard_bytes: (4 << 30) + 1,
                ..base.clone()
            },
            MarketError::InvalidShardBytes,
        ),
        (
            storage_market::instructions::ProposeDealArgs {
                k: 0,
                ..base.clone()
            },
            MarketError::InvalidErasureParams,
        ),
        (
            storage_market::instructions::ProposeDealArgs {
                k: 7,
                n: 6,
                ..base.clone()
            },
            MarketError::InvalidErasureParams,
        ),
        (
            storage_market::instructions::ProposeDealArgs {
                shard_index: 6,
                ..base.clone()
            },
            MarketError::InvalidErasureParams,
        ),
        (
            storage_market::instructions::ProposeDealArgs {
                duration_epochs: 0,
                ..base.clone()
            },
            MarketError::ZeroDuration,
        ),
        (
            storage_market::instructions::ProposeDealArgs {
                max_price_per_epoch: 99,
                ..base.clone()
            },
            MarketError::PriceAboveMax,
        ),
        (
            storage_market::instructions::ProposeDealArgs {
                shard_bytes: 10_001,
                ..base.clone()
            },
            MarketError::InsufficientCapacity,
        ),
        (
            storage_market::instructions::ProposeDealArgs {
                duration_epochs: u64::MAX,
                ..base.clone()
            },
            MarketError::ArithmeticOverflow,
        ),
    ];
    for (args, err) in cases {
        let ix = m.propose_deal_ix(&client.keypair.pubkey(), &a.pda, &client.token, args);
        assert_market_err(m.send(&[ix], &[&client.keypair]).await, err);
    }
    // Not enough tokens for the escrow (3 epochs x 100 = 300 is fine, 11 is not).
    let ix = m.propose_deal_ix(
        &client.keypair.pubkey(),
        &a.pda,
        &client.token,
        storage_market::instructions::ProposeDealArgs {
            duration_epochs: 11,
            ..base.clone()
        },
    );
    let short = m.send(&[ix], &[&client.keypair]).await;
    assert_eq!(
        custom_code(&short),
        Some(TOKEN_INSUFFICIENT_FUNDS),
        "{short:?}"
    );
    // A deal account passed where the provider belongs.
    let d = m.propose(&client, &a, &shard, [4; 32], 0, 3).await;
    let mut ix = m.propose_deal_ix(
        &client.keypair.pubkey(),
        &a.pda,
        &client.token,
        m.deal_args(&client.keypair.pubkey(), &shard, [4; 32], 1, 3),
    );
    substitute(&mut ix, &a.pda, d);
    assert_anchor_err(
        m.send(&[ix], &[&client.keypair]).await,
        AnchorError::AccountDiscriminatorMismatch,
    );
    // Replay: the same shard of the same dataset again.
    m.next_slot().await;
    let ix = m.propose_deal_ix(&client.keypair.pubkey(), &a.pda, &client.token, base);
    let replay = m.send(&[ix], &[&client.keypair]).await;
    assert_eq!(custom_code(&replay), Some(ALREADY_IN_USE), "{replay:?}");
    assert_eq!(m.token_balance(&client.token).await, 1_000 - 300);
    m.assert_conserved(&[&a.pda], &[&d], "proposals").await;
}

#[tokio::test]
async fn cancel_and_accept_deal_checks() {
    let mut m = TestMarket::start().await;
    let a = m.add_provider().await;
    let b = m.add_provider().await;
    let poor = m.add_provider_with(1 << 30, 100, 10, 0).await;
    let client = m.client(1_000_000).await;
    let other = m.client(0).await;
    let shard = TestShard::random(2_000, 7);
    let d = m.propose(&client, &a, &shard, [5; 32], 0, 3).await;

    // cancel: only the client.
    let ix = m.cancel_deal_ix(&other.keypair.pubkey(), &d, &other.token);
    assert_market_err(
        m.send(&[ix], &[&other.keypair]).await,
        MarketError::WrongClient,
    );
    // accept: only the deal's provider's operator.
    let ix = m.accept_deal_ix(&a.authority.pubkey(), &a.pda, &d, 0);
    assert_market_err(
        m.send(&[ix], &[&a.authority]).await,
        MarketError::WrongOperator,
    );
    let ix = m.accept_deal_ix(&b.operator.pubkey(), &b.pda, &d, 0);
    assert_market_err(
        m.send(&[ix], &[&b.operator]).await,
        MarketError::WrongProvider,
    );
    // Not enough free stake for the collateral.
    let dp = m.propose(&client, &poor, &shard, [5; 32], 1, 3).await;
    let ix = m.accept_deal_ix(&poor.operator.pubkey(), &poor.pda, &dp, 0);
    assert_market_err(
        m.send(&[ix], &[&poor.operator]).await,
        MarketError::InsufficientFreeStake,
    );

    m.accept(&a, &d).await;
    m.next_slot().await;
    let ix = m.accept_deal_ix(&a.operator.pubkey(), &a.pda, &d, 1);
    assert_market_err(
        m.send(&[ix], &[&a.operator]).await,
        MarketError::DealNotProposed,
    );
    let ix = m.cancel_deal_ix(&client.keypair.pubkey(), &d, &client.token);
    assert_market_err(
        m.send(&[ix], &[&client.keypair]).await,
        MarketError::DealNotProposed,
    );

    // Timeout: proposed in epoch 0, accept_timeout_epochs = 2.
    let late = m.propose(&client, &a, &shard, [5; 32], 2, 3).await;
    m.warp_to_epoch(3, 0).await;
    let ix = m.accept_deal_ix(&a.operator.pubkey(), &a.pda, &late, 1);
    assert_market_err(
        m.send(&[ix], &[&a.operator]).await,
        MarketError::AcceptTimedOut,
    );

    // The client cancels: the whole escrow comes back, once.
    let before = m.token_balance(&client.token).await;
    let escrow = m.deal(&late).await.escrow;
    let ix = m.cancel_deal_ix(&client.keypair.pubkey(), &late, &client.token);
    m.send(std::slice::from_ref(&ix), &[&client.keypair])
        .await
        .expect("cancel");
    assert_eq!(m.token_balance(&client.token).await, before + escrow);
    assert_eq!(m.deal(&late).await.state, DealState::Cancelled);
    m.next_slot().await;
    assert_market_err(
        m.send(&[ix], &[&client.keypair]).await,
        MarketError::DealNotProposed,
    );
    let ix = m.accept_deal_ix(&a.operator.pubkey(), &a.pda, &late, 1);
    assert_market_err(
        m.send(&[ix], &[&a.operator]).await,
        MarketError::DealNotProposed,
    );
    m.assert_conserved(&[&a.pda, &b.pda, &poor.pda], &[&d, &dp, &late], "cancel")
        .await;
}

#[tokio::test]
async fn settle_leave_and_close_deal_checks() {
    let mut m = TestMarket::start().await;
    let a = m.add_provider().await;
    let b = m.add_provider().await;
    let client = m.client(1_000_000).await;
    let shard = TestShard::random(2_000, 8);
    let d = m.propose(&client, &a, &shard, [6; 32], 0, 2).await;

    // Proposed, not active: nothing to settle, nothing to leave.
    let ix = m.settle_ix(&a.pda, 0, &[d]);
    assert_market_err(m.send(&[ix], &[]).await, MarketError::DealNotActive);
    m.accept(&a, &d).await;
    let close = m.close_deal_ix(&client.keypair.pubkey(), &d, &client.token);
    assert_market_err(
        m.send(&[close], &[&client.keypair]).await,
        MarketError::DealNotClosable,
    );
    // Another provider's settlement cannot take the deal.
    let ix = m.settle_ix(&b.pda, 0, &[d]);
    assert_market_err(m.send(&[ix], &[]).await, MarketError::WrongProvider);
    // A log page of another number is not the deal's page.
    m.next_slot().await;
    let mut ix = m.settle_ix(&a.pda, 0, &[d]);
    substitute(&mut ix, &epoch_log_pda(0), epoch_log_pda(1));
    assert_anchor_err(m.send(&[ix], &[]).await, AnchorError::ConstraintSeeds);

    // Epochs 1 and 2: proven.
    for epoch in [1, 2] {
        m.open(epoch).await;
        m.prove_session(&a, epoch, &[&shard]).await.expect("prove");
    }
    // The deal is still live in its last epoch until it is over... but may leave
    // the set during it (the removal is visible from epoch 3).
    let leave = m.leave_deal_set_ix(&a.pda, &d, 0, None);
    m.send(&[leave], &[])
        .await
        .expect("leave in the last epoch");
    m.warp_to_epoch(3, 0).await;
    m.settle(&a.pda, &[d]).await;
    let deal = m.deal(&d).await;
    assert_eq!(deal.state, DealState::Completed);
    assert_eq!(
        (deal.proven_epochs, deal.failed_epochs, deal.void_epochs),
        (2, 0, 0)
    );
    let ix = m.settle_ix(&a.pda, 0, &[d]);
    assert_market_err(m.send(&[ix], &[]).await, MarketError::DealNotActive);
    m.assert_conserved(&[&a.pda, &b.pda], &[&d], "complete")
        .await;

    // Closing: only the client, only once.
    let other = m.client(0).await;
    let ix = m.close_deal_ix(&other.keypair.pubkey(), &d, &other.token);
    assert_market_err(
        m.send(&[ix], &[&other.keypair]).await,
        MarketError::WrongClient,
    );
    let ix = m.close_deal_ix(&client.keypair.pubkey(), &d, &client.token);
    m.send(std::slice::from_ref(&ix), &[&client.keypair])
        .await
        .expect("close");
    m.next_slot().await;
    assert_anchor_err(
        m.send(&[ix], &[&client.keypair]).await,
        AnchorError::AccountNotInitialized,
    );
    m.assert_conserved(&[&a.pda, &b.pda], &[&d], "close").await;
}

#[tokio::test]
async fn a_deal_leaves_its_set_only_when_it_has_ended_and_closes_only_after() {
    let mut m = TestMarket::start().await;
    let a = m.add_provider().await;
    let client = m.client(1_000_000).await;
    let shards: Vec<TestShard> = (0..3).map(|i| TestShard::random(1_000, 20 + i)).collect();
    let mut deals = Vec::new();
    for (i, shard) in shards.iter().enumerate() {
        let d = m
            .propose(&client, &a, shard, [9; 32], i as u16, 2 + i as u64)
            .await;
        m.accept(&a, &d).await;
        deals.push(d);
    }
    // Deal 0 runs epochs 1-2: it cannot leave in epoch 0 or 1.
    let ix = m.leave_deal_set_ix(&a.pda, &deals[0], 0, Some((deals[2], 2)));
    assert_market_err(m.send(&[ix], &[]).await, MarketError::DealStillLive);
    m.warp_to_epoch(2, 0).await;
    // The moved deal must be the last entry.
    let ix = m.leave_deal_set_ix(&a.pda, &deals[0], 0, Some((deals[1], 2)));
    assert_market_err(m.send(&[ix], &[]).await, MarketError::WrongMovedDeal);
    let ix = m.leave_deal_set_ix(&a.pda, &deals[0], 0, Some((deals[2], 2)));
    m.send(&[ix], &[]).await.expect("leave");
    // The last entry moved into index 0, visible from epoch 3; epoch 2 still sees
    // the old set.
    let moved = m.deal(&deals[2]).await;
    assert_eq!((moved.in_set, moved.set_index), (true, 0));
    assert!(!m.deal(&deals[0]).await.in_set);
    let now = m.set_entries(&a.pda, 2).await;
    let next = m.set_entries(&a.pda, 3).await;
    assert_eq!(now.len(), 3);
    assert_eq!(now[0].shard_root, shards[0].root());
    assert_eq!(next.len(), 2);
    assert_eq!(next[0].shard_root, shards[2].root());
    assert_eq!(next[1].shard_root, shards[1].root());
    m.assert_conserved(&[&a.pda], &[&deals[0], &deals[1], &deals[2]], "leave")
        .await;
}

#[tokio::test]
async fn price_and_collateral_overflow_and_substituted_deal_pda_are_refused() {
    // Collateral per MiB so large that a 2 MiB shard overflows it.
    let params = MarketParams {
        collateral_per_mib: u64::MAX / 2 + 1,
        ..test_params()
    };
    let mut m = TestMarket::start_with(TokenKind::Token, params).await;
    let a = m.add_provider().await;
    let pricey = m.add_provider_with(1 << 30, u64::MAX / 2 + 1, 0, 0).await;
    let client = m.client(1_000_000).await;
    let shard = TestShard::random(2 << 20, 9);
    let args = m.deal_args(&client.keypair.pubkey(), &shard, [8; 32], 0, 1);
    let ix = m.propose_deal_ix(
        &client.keypair.pubkey(),
        &a.pda,
        &client.token,
        args.clone(),
    );
    assert_market_err(
        m.send(&[ix], &[&client.keypair]).await,
        MarketError::ArithmeticOverflow,
    );
    let ix = m.propose_deal_ix(
        &client.keypair.pubkey(),
        &pricey.pda,
        &client.token,
        args.clone(),
    );
    assert_market_err(
        m.send(&[ix], &[&client.keypair]).await,
        MarketError::ArithmeticOverflow,
    );

    // The PDA of another shard index for this one.
    let mut ix = m.propose_deal_ix(&client.keypair.pubkey(), &a.pda, &client.token, args);
    substitute(
        &mut ix,
        &deal_pda(&client.keypair.pubkey(), &[8; 32], 0, 0),
        deal_pda(&client.keypair.pubkey(), &[8; 32], 0, 1),
    );
    assert_anchor_err(
        m.send(&[ix], &[&client.keypair]).await,
        AnchorError::ConstraintSeeds,
    );
    assert_eq!(m.token_balance(&client.token).await, 1_000_000);
    m.assert_conserved(&[&a.pda, &pricey.pda], &[], "refused proposals")
        .await;
}
