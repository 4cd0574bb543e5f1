//! The full life of two deals, every balance checked against the formulas and
//! the vault reconciled with the recorded balances after every step.
use cairn_tests::*;
use solana_signer::Signer;
use storage_market::settlement::bps_of;
use storage_market::state::DealState;

const MIB: u64 = 1 << 20;

async fn full_life_of_two_deals(token_kind: TokenKind) {
    let params = test_params();
    let mut m = TestMarket::start_with(token_kind, params).await;
    let stake = 1_000_000;
    let a = m.add_provider_with(1 << 30, 100, stake, 0).await;
    let b = m.add_provider_with(1 << 30, 100, stake, 0).await;
    let client = m.client(10_000_000).await;
    let reporter = m.client(0).await;
    let dataset = [7u8; 32];

    // Shard 0 (300 kB, bills as 1 MiB) with A for 5 epochs; shard 1 (1.5 MB,
    // bills as 2 MiB) with B for 6 epochs.
    let shard0 = TestShard::random(300_000, 1);
    let shard1 = TestShard::random(1_500_000, 2);
    let price0 = 100 * shard0.data.len().div_ceil(MIB as usize) as u64;
    let price1 = 100 * shard1.data.len().div_ceil(MIB as usize) as u64;
    assert_eq!((price0, price1), (100, 200));
    let collateral0 = params.collateral_per_mib;
    let collateral1 = 2 * params.collateral_per_mib;

    let d0 = m.propose(&client, &a, &shard0, dataset, 0, 5).await;
    let d1 = m.propose(&client, &b, &shard1, dataset, 1, 6).await;
    let providers = [&a.pda, &b.pda];
    let deals = [&d0, &d1];
    m.assert_conserved(&providers, &deals, "propose").await;
    assert_eq!(m.deal(&d0).await.escrow, price0 * 5);
    assert_eq!(m.deal(&d1).await.escrow, price1 * 6);
    assert_eq!(
        m.token_balance(&client.token).await,
        10_000_000 - price0 * 5 - price1 * 6
    );

    m.accept(&a, &d0).await;
    m.accept(&b, &d1).await;
    m.assert_conserved(&providers, &deals, "accept").await;
    let (deal0, deal1) = (m.deal(&d0).await, m.deal(&d1).await);
    assert_eq!(deal0.state, DealState::Active);
    assert_eq!((deal0.start_epoch, deal0.end_epoch), (1, 6));
    assert_eq!((deal1.start_epoch, deal1.end_epoch), (1, 7));
    let pa = m.provider(&a).await;
    assert_eq!(
        (pa.stake_free, pa.stake_locked, pa.used_bytes),
        (stake - collateral0, collateral0, 300_000)
    );

    // Epoch 1: both prove.
    m.warp_to_epoch(1, 1).await;
    m.open_epoch(1).await.expect("open 1");
    m.prove(&a, &d0, &shard0, 1).await.expect("A proves 1");
    m.prove(&b, &d1, &shard1, 1).await.expect("B proves 1");
    m.assert_conserved(&providers, &deals, "epoch 1 proofs")
        .await;
    assert_eq!(m.provider(&a).await.earnings, price0);
    assert_eq!(m.provider(&b).await.earnings, price1);

    // Epoch 2: A proves, B misses.
    m.warp_to_epoch(2, 1).await;
    m.open_epoch(2).await.expect("open 2");
    m.prove(&a, &d0, &shard0, 2).await.expect("A proves 2");

    // Epoch 3: nobody proves. Early in epoch 4 (after the grace period) a
    // reporter settles A's epoch 3 and B's epochs 2 and 3.
    m.warp_to_epoch(3, 1).await;
    m.open_epoch(3).await.expect("open 3");
    m.warp_to_epoch(4, params.grace_slots).await;
    let slash0 = bps_of(collateral0, params.slash_bps).unwrap();
    let bounty0 = bps_of(slash0, params.bounty_bps).unwrap();
    let slash1 = bps_of(collateral1, params.slash_bps).unwrap();
    let bounty1 = bps_of(slash1, params.bounty_bps).unwrap();
    assert_eq!((slash0, bounty0, slash1, bounty1), (500, 100, 1_000, 200));

    let ix = m.report_faults_ix(&reporter.keypair.pubkey(), &a.pda, &d0, &reporter.token);
    m.send(&[ix], &[&reporter.keypair]).await.expect("report A");
    let ix = m.report_faults_ix(&reporter.keypair.pubkey(), &b.pda, &d1, &reporter.token);
    m.send(&[ix], &[&reporter.keypair]).await.expect("report B");
    m.assert_conserved(&providers, &deals, "first reports")
        .await;
    assert_eq!(
        m.token_balance(&reporter.token).await,
        bounty0 + 2 * bounty1
    );
    let deal0 = m.deal(&d0).await;
    assert_eq!(deal0.settled_through, 3);
    assert_eq!(deal0.client_refund, slash0 - bounty0 + price0);
    assert_eq!(deal0.collateral_left, collateral0 - slash0);
    let deal1 = m.deal(&d1).await;
    assert_eq!((deal1.consecutive_faults, deal1.total_faults), (2, 2));
    assert_eq!(deal1.client_refund, 2 * (slash1 - bounty1 + price1));
    let pb = m.provider(&b).await;
    assert_eq!(pb.stake_locked, collateral1 - 2 * slash1);
    assert_eq!((pb.faults, pb.slashed), (2, 2 * slash1));

    // Epoch 4: nobody proves. Epoch 5: A proves, settling its own epoch 4
    // (no bounty); B's third consecutive miss is reported: B's deal terminates.
    m.open_epoch(4).await.expect("open 4");
    m.warp_to_epoch(5, params.grace_slots).await;
    m.open_epoch(5).await.expect("open 5");
    let reporter_before = m.token_balance(&reporter.token).await;
    m.prove(&a, &d0, &shard0, 5).await.expect("A proves 5");
    let deal0 = m.deal(&d0).await;
    assert_eq!(deal0.settled_through, 5);
    assert_eq!((deal0.proven_epochs, deal0.total_faults), (3, 2));
    assert_eq!(
        deal0.client_refund,
        (slash0 - bounty0 + price0) + (slash0 + price0)
    );
    assert_eq!(deal0.escrow, 0);
    assert_eq!(m.token_balance(&reporter.token).await, reporter_before);

    let ix = m.report_faults_ix(&reporter.keypair.pubkey(), &b.pda, &d1, &reporter.token);
    m.send(&[ix], &[&reporter.keypair])
        .await
        .expect("report B again");
    m.assert_conserved(&providers, &deals, "termination").await;
    let deal1 = m.deal(&d1).await;
    assert_eq!(deal1.state, DealState::Terminated);
    let escrow_left = price1 * 6 - price1 - 3 * price1;
    assert_eq!(
        deal1.client_refund,
        3 * (slash1 - bounty1 + price1) + escrow_left
    );
    let pb = m.provider(&b).await;
    assert_eq!(
        (
            pb.stake_free,
            pb.stake_locked,
            pb.used_bytes,
            pb.active_deals
        ),
        (stake - 3 * slash1, 0, 0, 0)
    );
    assert_eq!(
        m.token_balance(&reporter.token).await,
        bounty0 + 3 * bounty1
    );

    // Epoch 6: deal 0 has ended; anyone completes it.
    m.warp_to_epoch(6, 0).await;
    let ix = m.complete_deal_ix(&reporter.keypair.pubkey(), &a.pda, &d0);
    m.send(&[ix], &[&reporter.keypair]).await.expect("complete");
    let deal0 = m.deal(&d0).await;
    assert_eq!(deal0.state, DealState::Completed);
    let pa = m.provider(&a).await;
    assert_eq!(
        (pa.stake_free, pa.stake_locked, pa.earnings, pa.slashed),
        (stake - 2 * slash0, 0, 3 * price0, 2 * slash0)
    );
    m.assert_conserved(&providers, &deals, "completion").await;

    // Withdrawals and closing.
    let ix = m.withdraw_earnings_ix(&a.authority.pubkey(), &a.token, 3 * price0);
    m.send(&[ix], &[&a.authority])
        .await
        .expect("withdraw earnings");
    let ix = m.withdraw_stake_ix(&a.authority.pubkey(), &a.token, 1_000);
    m.send(&[ix], &[&a.authority])
        .await
        .expect("withdraw stake");
    m.assert_conserved(&providers, &deals, "withdrawals").await;
    assert_eq!(m.token_balance(&a.token).await, 3 * price0 + 1_000);

    let client_before = m.token_balance(&client.token).await;
    let refund0 = m.deal(&d0).await.client_refund;
    let refund1 = m.deal(&d1).await.client_refund;
    let rent = m.lamports(&d0).await;
    let lamports_before = m.lamports(&client.keypair.pubkey()).await;
    let ix = m.close_deal_ix(&client.keypair.pubkey(), &d0, &client.token);
    m.send(&[ix], &[&client.keypair])
        .await
        .expect("close deal 0");
    let ix = m.close_deal_ix(&client.keypair.pubkey(), &d1, &client.token);
    m.send(&[ix], &[&client.keypair])
        .await
        .expect("close deal 1");
    assert!(!m.account_exists(&d0).await && !m.account_exists(&d1).await);
    assert_eq!(
        m.token_balance(&client.token).await,
        client_before + refund0 + refund1
    );
    assert_eq!(
        m.lamports(&client.keypair.pubkey()).await,
        lamports_before + 2 * rent
    );
    m.assert_conserved(&providers, &deals, "close deals").await;

    for p in [&a, &b] {
        let owed = m.provider(p).await.balance().unwrap();
        let before = m.token_balance(&p.token).await;
        let ix = m.deregister_provider_ix(&p.authority.pubkey(), &p.token);
        m.send(&[ix], &[&p.authority]).await.expect("deregister");
        assert_eq!(m.token_balance(&p.token).await, before + owed);
        assert!(!m.account_exists(&p.pda).await);
    }
    // Nothing created or lost: every token is back with a person.
    assert_eq!(m.vault_balance().await, 0);
    let total = m.token_balance(&client.token).await
        + m.token_balance(&a.token).await
        + m.token_balance(&b.token).await
        + m.token_balance(&reporter.token).await;
    assert_eq!(total, 10_000_000 + 2 * stake);
    // Client's net: refunds of every missed epoch plus slashes minus bounties.
    let slashed = 2 * slash0 + 3 * slash1;
    let bounties = bounty0 + 3 * bounty1;
    let earned = 3 * price0 + price1;
    assert_eq!(
        m.token_balance(&client.token).await,
        10_000_000 + slashed - bounties - earned
    );

    // Challenges close after their window, rent back to the opener.
    let opener = m.ctx.payer.pubkey();
    let before = m.lamports(&opener).await;
    let rent = m.lamports(&challenge_pda(1)).await;
    let ix = m.close_challenge_ix(&opener, 1);
    m.send(&[ix], &[]).await.expect("close challenge");
    assert!(!m.account_exists(&challenge_pda(1)).await);
    // The payer also paid this transaction's fee.
    assert_eq!(m.lamports(&opener).await, before + rent - 5_000);
}

#[tokio::test]
async fn full_life_of_two_deals_spl_token() {
    full_life_of_two_deals(TokenKind::Token).await;
}

#[tokio::test]
async fn full_life_of_two_deals_token_2022() {
    full_life_of_two_deals(TokenKind::Token2022).await;
}
