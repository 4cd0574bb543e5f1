//! The full life of deals under Proving v2, every balance checked against the
//! formulas and the vault reconciled with the recorded balances after every step:
//! proven, failed and void epochs settled lazily; a client ending a deal after a
//! failure and placing the shard again at once; a provider jailed.
use cairn_tests::*;
use solana_signer::Signer;
use storage_market::errors::MarketError;
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
    let dataset = [7u8; 32];

    // Shard 0 (300 kB, bills as 1 MiB) with A for 5 epochs; shard 1 (1.5 MB, bills
    // as 2 MiB) with B for 6 epochs.
    let shard0 = TestShard::random(300_000, 1);
    let shard1 = TestShard::random(1_500_000, 2);
    let price0 = 100 * shard0.data.len().div_ceil(MIB as usize) as u64;
    let price1 = 100 * shard1.data.len().div_ceil(MIB as usize) as u64;
    assert_eq!((price0, price1), (100, 200));
    let collateral0 = params.collateral_per_mib;
    let collateral1 = 2 * params.collateral_per_mib;
    let penalty0 = bps_of(collateral0, params.slash_bps).unwrap();
    let penalty1 = bps_of(collateral1, params.slash_bps).unwrap();
    assert_eq!((penalty0, penalty1), (500, 1_000));

    let d0 = m.propose(&client, &a, &shard0, dataset, 0, 5).await;
    let d1 = m.propose(&client, &b, &shard1, dataset, 1, 6).await;
    let providers = [&a.pda, &b.pda];
    let deals = [&d0, &d1];
    m.assert_conserved(&providers, &deals, "propose").await;
    assert_eq!(
        m.token_balance(&client.token).await,
        10_000_000 - price0 * 5 - price1 * 6
    );
    m.accept(&a, &d0).await;
    m.accept(&b, &d1).await;
    m.assert_conserved(&providers, &deals, "accept").await;
    let deal0 = m.deal(&d0).await;
    assert_eq!(deal0.state, DealState::Active);
    assert_eq!(
        (deal0.start_epoch, deal0.end_epoch, deal0.settled_until),
        (1, 6, 1)
    );
    assert_eq!((deal0.in_set, deal0.set_index), (true, 0));
    let pa = m.provider(&a).await;
    assert_eq!(
        (pa.stake_free, pa.stake_locked, pa.used_bytes),
        (stake - collateral0, collateral0, 300_000)
    );

    // Epoch 1: both prove. Epoch 2: A proves, B fails. Epoch 3: nobody opens it
    // (void). Epoch 4: opened, nobody proves. Epoch 5: A proves, B fails.
    for epoch in 1..=5u64 {
        let (open, a_proves, b_proves) = match epoch {
            1 => (true, true, true),
            2 => (true, true, false),
            3 => (false, false, false),
            4 => (true, false, false),
            _ => (true, true, false),
        };
        if open {
            m.open(epoch).await;
            if a_proves {
                m.prove_session(&a, epoch, &[&shard0])
                    .await
                    .expect("A proves");
            }
            if b_proves {
                m.prove_session(&b, epoch, &[&shard1])
                    .await
                    .expect("B proves");
            }
        } else {
            m.warp_to_epoch(epoch, 50).await;
        }
        if epoch == 3 {
            // Lazily, in the middle of epoch 3, A's closed epochs 1-2.
            m.settle(&a.pda, &[d0]).await;
            let deal0 = m.deal(&d0).await;
            assert_eq!((deal0.settled_until, deal0.proven_epochs), (3, 2));
            assert_eq!(m.provider(&a).await.earnings, 2 * price0);
        }
        m.assert_conserved(&providers, &deals, "epoch").await;
    }
    // And the rest once epoch 5 is over.
    m.warp_to_epoch(6, 0).await;
    m.settle(&a.pda, &[d0]).await;
    m.settle(&b.pda, &[d1]).await;
    m.assert_conserved(&providers, &deals, "settled").await;

    // A: proven 1, 2, 5; void 3; failed 4. Deal 0 has ended: Completed.
    let deal0 = m.deal(&d0).await;
    assert_eq!(deal0.state, DealState::Completed);
    assert_eq!(
        (deal0.proven_epochs, deal0.failed_epochs, deal0.void_epochs),
        (3, 1, 1)
    );
    assert_eq!(
        deal0.client_refund,
        price0 /* void */ + price0 + penalty0 /* failed */
    );
    let pa = m.provider(&a).await;
    assert_eq!(
        (
            pa.earnings,
            pa.stake_free,
            pa.stake_locked,
            pa.slashed,
            pa.used_bytes,
            pa.active_deals
        ),
        (3 * price0, stake - penalty0, 0, penalty0, 0, 0)
    );
    // B: proven 1; failed 2, 4, 5; void 3. Deal 1 still runs epoch 6.
    let deal1 = m.deal(&d1).await;
    assert_eq!(deal1.state, DealState::Active);
    assert_eq!(
        (deal1.proven_epochs, deal1.failed_epochs, deal1.void_epochs),
        (1, 3, 1)
    );
    assert_eq!(deal1.settled_until, 6);
    assert_eq!(deal1.client_refund, price1 + 3 * (price1 + penalty1));
    assert_eq!(deal1.collateral_left, collateral1 - 3 * penalty1);
    assert_eq!(deal1.escrow, price1);
    let pb = m.provider(&b).await;
    assert_eq!(
        (
            pb.earnings,
            pb.stake_locked,
            pb.slashed,
            pb.faults,
            pb.proofs
        ),
        (price1, collateral1 - 3 * penalty1, 3 * penalty1, 3, 1)
    );

    // Epoch 6: B proves its last epoch; settled in epoch 7 it completes and the
    // collateral left returns to B.
    m.open(6).await;
    m.prove_session(&b, 6, &[&shard1])
        .await
        .expect("B proves 6");
    m.warp_to_epoch(7, 0).await;
    m.settle(&b.pda, &[d1]).await;
    let deal1 = m.deal(&d1).await;
    assert_eq!(deal1.state, DealState::Completed);
    let pb = m.provider(&b).await;
    assert_eq!(
        (pb.earnings, pb.stake_free, pb.stake_locked),
        (2 * price1, stake - 3 * penalty1, 0)
    );
    m.assert_conserved(&providers, &deals, "completed").await;

    // Withdrawals, leaving the sets, closing.
    let ix = m.withdraw_earnings_ix(&a.authority.pubkey(), &a.token, 3 * price0);
    m.send(&[ix], &[&a.authority])
        .await
        .expect("withdraw earnings");
    m.assert_conserved(&providers, &deals, "withdrawals").await;
    for (p, d) in [(&a, d0), (&b, d1)] {
        let ix = m.leave_deal_set_ix(&p.pda, &d, 0, None);
        m.send(&[ix], &[]).await.expect("leave set");
    }
    let client_before = m.token_balance(&client.token).await;
    let refunds = m.deal(&d0).await.client_refund + m.deal(&d1).await.client_refund;
    for d in [d0, d1] {
        let ix = m.close_deal_ix(&client.keypair.pubkey(), &d, &client.token);
        m.send(&[ix], &[&client.keypair]).await.expect("close deal");
    }
    assert_eq!(
        m.token_balance(&client.token).await,
        client_before + refunds
    );
    m.assert_conserved(&providers, &deals, "close deals").await;
    for p in [&a, &b] {
        let owed = m.provider(p).await.balance().unwrap();
        let before = m.token_balance(&p.token).await;
        let ix = m.deregister_provider_ix(&p.authority.pubkey(), &p.token);
        m.send(&[ix], &[&p.authority]).await.expect("deregister");
        assert_eq!(m.token_balance(&p.token).await, before + owed);
        assert!(!m.account_exists(&p.pda).await);
        assert!(!m.account_exists(&deal_set_pda(&p.pda)).await);
    }
    // Nothing created or lost: every token is back with a person.
    assert_eq!(m.vault_balance().await, 0);
    let total = m.token_balance(&client.token).await
        + m.token_balance(&a.token).await
        + m.token_balance(&b.token).await;
    assert_eq!(total, 10_000_000 + 2 * stake);
    let earned = 3 * price0 + 2 * price1;
    let penalties = penalty0 + 3 * penalty1;
    assert_eq!(
        m.token_balance(&client.token).await,
        10_000_000 - earned + penalties
    );
}

#[tokio::test]
async fn full_life_of_two_deals_spl_token() {
    full_life_of_two_deals(TokenKind::Token).await;
}

#[tokio::test]
async fn full_life_of_two_deals_token_2022() {
    full_life_of_two_deals(TokenKind::Token2022).await;
}

#[tokio::test]
async fn after_a_failure_the_client_ends_the_deal_and_places_the_shard_again_at_once() {
    let params = test_params();
    let mut m = TestMarket::start().await;
    let stake = 1_000_000;
    let a = m.add_provider_with(1 << 30, 100, stake, 0).await;
    let b = m.add_provider_with(1 << 30, 100, stake, 0).await;
    let client = m.client(10_000_000).await;
    let shard = TestShard::random(50_000, 5);
    let d = m.propose(&client, &a, &shard, [3; 32], 0, 10).await;
    m.accept(&a, &d).await;
    let price = m.deal(&d).await.price_per_epoch;
    let collateral = params.collateral_per_mib;
    let penalty = bps_of(collateral, params.slash_bps).unwrap();

    m.open(1).await;
    m.prove_session(&a, 1, &[&shard]).await.expect("prove 1");
    // Epoch 1 was proven: not a failure.
    m.warp_to_epoch(2, 10).await;
    let ix = m.end_deal_ix(&client.keypair.pubkey(), &a.pda, &d, 0, 1);
    assert_market_err(
        m.send(&[ix], &[&client.keypair]).await,
        MarketError::NotAFailedEpoch,
    );
    // Epoch 2 opened, A fails it. During epoch 2 it is not over yet.
    m.open(2).await;
    let ix = m.end_deal_ix(&client.keypair.pubkey(), &a.pda, &d, 0, 2);
    assert_market_err(
        m.send(&[ix], &[&client.keypair]).await,
        MarketError::NotAFailedEpoch,
    );
    m.warp_to_epoch(3, 10).await;
    // Only the client.
    let other = m.client(0).await;
    let ix = m.end_deal_ix(&other.keypair.pubkey(), &a.pda, &d, 0, 2);
    assert_market_err(
        m.send(&[ix], &[&other.keypair]).await,
        MarketError::WrongClient,
    );
    let ix = m.end_deal_ix(&client.keypair.pubkey(), &a.pda, &d, 0, 2);
    m.send(&[ix], &[&client.keypair])
        .await
        .expect("end after the failure");
    let deal = m.deal(&d).await;
    // It runs to the end of epoch 3; epochs 4..10 are refunded now.
    assert_eq!((deal.end_epoch, deal.forfeit), (4, true));
    assert_eq!(deal.client_refund, 7 * price);
    m.assert_conserved(&[&a.pda, &b.pda], &[&d], "ended").await;

    // The same shard, next generation, with B, at once.
    let mut args = m.deal_args(&client.keypair.pubkey(), &shard, [3; 32], 0, 7);
    args.generation = 1;
    let ix = m.propose_deal_ix(&client.keypair.pubkey(), &b.pda, &client.token, args);
    m.send(&[ix], &[&client.keypair])
        .await
        .expect("propose generation 1");
    let d2 = deal_pda(&client.keypair.pubkey(), &[3; 32], 0, 1);
    m.accept(&b, &d2).await;
    assert_eq!(m.deal(&d2).await.start_epoch, 4);

    // A's entry ends with the deal: the set samples it in epoch 3, not in epoch 4.
    assert_eq!(m.set_entries(&a.pda, 3).await[0].end_epoch, 11);
    assert_eq!(m.set_entries(&a.pda, 4).await[0].end_epoch, 4);

    // Epoch 3 proven by A. Settled in epoch 4: the collateral left goes to the client.
    m.open(3).await;
    m.prove_session(&a, 3, &[&shard]).await.expect("prove 3");
    m.warp_to_epoch(4, 0).await;
    m.settle(&a.pda, &[d]).await;
    let deal = m.deal(&d).await;
    assert_eq!(deal.state, DealState::Terminated);
    assert_eq!((deal.proven_epochs, deal.failed_epochs), (2, 1));
    assert_eq!(
        deal.client_refund,
        7 * price + (price + penalty) + (collateral - penalty)
    );
    let pa = m.provider(&a).await;
    assert_eq!(
        (pa.earnings, pa.stake_free, pa.stake_locked, pa.forfeited),
        (2 * price, stake - collateral, 0, collateral - penalty)
    );
    m.assert_conserved(&[&a.pda, &b.pda], &[&d, &d2], "terminated")
        .await;
}

#[tokio::test]
async fn a_provider_that_fails_often_is_jailed_and_its_clients_take_its_collateral() {
    let params = test_params();
    let mut m = TestMarket::start().await;
    let stake = 1_000_000;
    let a = m.add_provider_with(1 << 30, 100, stake, 0).await;
    let client = m.client(10_000_000).await;
    let shards: Vec<TestShard> = (0..2).map(|i| TestShard::random(20_000, 40 + i)).collect();
    let mut deals = Vec::new();
    for (i, shard) in shards.iter().enumerate() {
        let d = m.propose(&client, &a, shard, [4; 32], i as u16, 20).await;
        m.accept(&a, &d).await;
        deals.push(d);
    }
    let price = m.deal(&deals[0]).await.price_per_epoch;
    let collateral = params.collateral_per_mib;
    let penalty = bps_of(collateral, params.slash_bps).unwrap();
    let refs: Vec<&TestShard> = shards.iter().collect();

    // Epoch 1 proven; epochs 2, 3 and 5 failed; 4 proven.
    for epoch in 1..=5u64 {
        m.open(epoch).await;
        if epoch == 1 || epoch == 4 {
            m.prove_session(&a, epoch, &refs).await.expect("prove");
        }
    }
    m.warp_to_epoch(6, 0).await;
    let caller = m.client(0).await;
    let jail = |m: &TestMarket, epochs: Vec<u64>, deals: &[Pubkey]| {
        m.jail_provider_ix(&caller.keypair.pubkey(), &a.pda, 0, epochs, deals)
    };
    // Two failures are not enough; a proven epoch is not a failure; an epoch
    // without the deal's obligation (epoch 0) is no evidence.
    for (epochs, evidence) in [
        (vec![2, 3], vec![deals[0], deals[0]]),
        (vec![1, 2, 3], vec![deals[0]; 3]),
        (vec![0, 2, 3], vec![deals[0]; 3]),
    ] {
        let ix = jail(&m, epochs, &evidence);
        assert_market_err(
            m.send(&[ix], &[&caller.keypair]).await,
            MarketError::NotJailable,
        );
        m.next_slot().await;
    }
    let ix = jail(&m, vec![2, 3, 5], &[deals[0], deals[1], deals[0]]);
    m.send(&[ix], &[&caller.keypair]).await.expect("jail");
    assert_eq!(m.provider(&a).await.jailed_from, 6);
    m.next_slot().await;
    let ix = jail(&m, vec![2, 3, 5], &[deals[0], deals[1], deals[0]]);
    assert_market_err(
        m.send(&[ix], &[&caller.keypair]).await,
        MarketError::ProviderJailed,
    );

    // A jailed provider takes no new deal.
    let more = TestShard::random(1_000, 50);
    let args = m.deal_args(&client.keypair.pubkey(), &more, [5; 32], 0, 3);
    let ix = m.propose_deal_ix(&client.keypair.pubkey(), &a.pda, &client.token, args);
    assert_market_err(
        m.send(&[ix], &[&client.keypair]).await,
        MarketError::ProviderJailed,
    );

    // Settled, each deal ends at epoch 6: epochs 1-5 by their outcomes, the rest of
    // the escrow and the collateral left to the client.
    m.settle(&a.pda, &deals).await;
    for d in &deals {
        let deal = m.deal(d).await;
        assert_eq!(deal.state, DealState::Terminated);
        assert_eq!((deal.proven_epochs, deal.failed_epochs), (2, 3));
        assert_eq!(
            deal.client_refund,
            3 * (price + penalty) + 15 * price + (collateral - 3 * penalty)
        );
    }
    let pa = m.provider(&a).await;
    assert_eq!(
        (pa.earnings, pa.stake_locked, pa.stake_free, pa.active_deals),
        (4 * price, 0, stake - 2 * collateral, 0)
    );
    let ds: Vec<&Pubkey> = deals.iter().collect();
    m.assert_conserved(&[&a.pda], &ds, "jailed and settled")
        .await;
    // Its deals can leave the set at once.
    let ix = m.leave_deal_set_ix(&a.pda, &deals[0], 0, Some((deals[1], 1)));
    m.send(&[ix], &[]).await.expect("leave after jail");
}
