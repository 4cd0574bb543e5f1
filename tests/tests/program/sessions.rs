//! Proof sessions: one per provider per epoch, whatever its number of deals, with a
//! seed no caller can choose, and every way to cheat a session refused by its code.
use cairn_tests::*;
use solana_signer::Signer;
use storage_market::constants::LOG_PAGE_EPOCHS;
use storage_market::errors::MarketError;
use storage_market::instructions::{seed_slot_entry, ProofSample};
use storage_market::state::MarketParams;

/// A market, a provider with one deal of `shard` accepted in epoch 0.
async fn one_deal(params: MarketParams) -> (TestMarket, TestProvider, TestShard, Pubkey) {
    let mut m = TestMarket::start_with(TokenKind::Token, params).await;
    let a = m.add_provider().await;
    let client = m.client(1_000_000).await;
    let shard = TestShard::random(10_000, 11);
    let d = m.propose(&client, &a, &shard, [1; 32], 0, 20).await;
    m.accept(&a, &d).await;
    (m, a, shard, d)
}

#[tokio::test]
async fn an_honest_session_sets_the_providers_bit_once() {
    let (mut m, a, shard, _) = one_deal(test_params()).await;
    m.open(1).await;
    assert!(m.opened(1).await);
    assert!(!m.proven(&a.pda, 1).await);
    // One deal: s = min(4, 1) = 1 sample, one transaction.
    assert_eq!(m.prove_session(&a, 1, &[&shard]).await.expect("session"), 1);
    assert!(m.proven(&a.pda, 1).await);
    assert!(!m.proven(&a.pda, 0).await && !m.proven(&a.pda, 2).await);
    let set = m.deal_set(&a.pda).await;
    assert_eq!(
        (set.epochs_proven, set.session_proven, set.session_target),
        (1, 1, 1)
    );

    // Replay of the same proof, and any other proof of the epoch: refused.
    let (draws, entries) = m.plan_session(&a, 1).await;
    let live: Vec<_> = draws.iter().filter(|d| d.live).collect();
    let samples = TestMarket::samples_for(&live, &entries, &[&shard]);
    let ix = m.prove_ix(&a.operator.pubkey(), &a.pda, 1, samples, &[0]);
    m.next_slot().await;
    let (_, replay) = m.send_proof(&a, 1, ix).await;
    assert_market_err(replay, MarketError::EpochAlreadyProven);
}

#[tokio::test]
async fn the_seed_is_fixed_by_the_epoch_and_an_epoch_nobody_opened_in_time_is_void() {
    // Long epochs, so SlotHashes (512 entries) can roll past a seed slot inside one.
    let params = MarketParams {
        epoch_slots: 1_000,
        response_slots: 1_000,
        ..test_params()
    };
    let (mut m, a, shard, d) = one_deal(params).await;
    let seed_now = |hashes: &[(u64, [u8; 32])], epoch: u64| {
        let mut data = (hashes.len() as u64).to_le_bytes().to_vec();
        for (slot, hash) in hashes {
            data.extend_from_slice(&slot.to_le_bytes());
            data.extend_from_slice(hash);
        }
        let (_, hash) = seed_slot_entry(&data, epoch * 1_000 + 1).expect("seed slot present");
        cairn_proof::epoch_seed(&hash, epoch)
    };

    // Epoch 1: the seed at the first possible slot, half-way through the sysvar's
    // reach and at the last possible slot is the same; opening at the last gives it.
    m.warp_to_open(1).await;
    let first = seed_now(&m.slot_hashes().await, 1);
    for _ in 0..250 {
        m.next_slot().await;
    }
    let middle = seed_now(&m.slot_hashes().await, 1);
    loop {
        let hashes = m.slot_hashes().await;
        // The oldest entry is the seed slot itself: the next bank rolls it out.
        if hashes.last().map(|(slot, _)| *slot) >= Some(1_001) {
            break;
        }
        m.next_slot().await;
    }
    let last = seed_now(&m.slot_hashes().await, 1);
    assert_eq!((first, middle), (last, last));
    m.open_epoch(1)
        .await
        .expect("open at the last possible slot");
    assert_eq!(m.challenge().await.seed, first);
    m.prove_session(&a, 1, &[&shard]).await.expect("prove 1");

    // Epoch 2: nobody opens it until its seed slot has left SlotHashes.
    m.warp_to_open(2).await;
    for _ in 0..520 {
        m.next_slot().await;
    }
    assert_market_err(m.open_epoch(2).await, MarketError::SeedSlotRolledOut);
    assert!(!m.opened(2).await);

    // Epoch 3 is proven again; settled, epoch 2 is void: its price is refunded to
    // the client, and nothing is taken from the provider.
    m.open(3).await;
    m.prove_session(&a, 3, &[&shard]).await.expect("prove 3");
    m.warp_to_epoch(4, 0).await;
    let before = m.provider(&a).await;
    m.settle(&a.pda, &[d]).await;
    let deal = m.deal(&d).await;
    assert_eq!(
        (deal.proven_epochs, deal.failed_epochs, deal.void_epochs),
        (2, 0, 1)
    );
    assert_eq!(deal.client_refund, deal.price_per_epoch);
    let after = m.provider(&a).await;
    assert_eq!(after.earnings - before.earnings, 2 * deal.price_per_epoch);
    assert_eq!(after.stake_locked, before.stake_locked);
    m.assert_conserved(&[&a.pda], &[&d], "void epoch settled")
        .await;
}

#[tokio::test]
async fn one_transaction_cannot_open_and_prove_with_a_seed_of_its_choice() {
    let (mut m, a, shard, _) = one_deal(test_params()).await;
    m.warp_to_open(1).await;
    // The samples of a seed the caller would like (here: all zeros) do not verify
    // against the one seed the epoch has, even in the transaction that opens it.
    let entries = m.set_entries(&a.pda, 1).await;
    let wished = proving::plan_session(&[0; 32], &a.pda, 1, 4, &entries);
    let live: Vec<_> = wished.iter().filter(|d| d.live).collect();
    let samples = TestMarket::samples_for(&live, &entries, &[&shard]);
    let open = m.open_epoch_ix(&a.operator.pubkey(), 1);
    let prove = m.prove_ix(&a.operator.pubkey(), &a.pda, 1, samples, &[0]);
    let operator = a.operator.insecure_clone();
    let result = m.send_paid_by(&[open.clone(), prove], &operator, &[]).await;
    // (The zero seed's segment differs from the real one's with near certainty.)
    assert_market_err(result, MarketError::InvalidProof);
    assert!(!m.opened(1).await, "the failed transaction opened nothing");
    // With the epoch's own seed, opening and proving together is fine.
    m.open_epoch(1).await.expect("open");
    m.prove_session(&a, 1, &[&shard]).await.expect("prove");
}

#[tokio::test]
async fn samples_that_do_not_answer_the_draws_are_refused() {
    let (mut m, a, shard, _) = one_deal(test_params()).await;
    let client = m.client(1_000_000).await;
    let stranger = TestShard::random(10_000, 99);
    m.open(1).await;
    // A deal accepted during epoch 1 joins the set from epoch 2: the set epoch 1
    // samples has one entry although the provider now holds two deals.
    let late = TestShard::random(10_000, 12);
    let d2 = m.propose(&client, &a, &late, [2; 32], 0, 5).await;
    m.accept(&a, &d2).await;
    let set = m.deal_set(&a.pda).await;
    assert_eq!((set.len_at(1), set.len), (1, 2));

    let (draws, entries) = m.plan_session(&a, 1).await;
    assert_eq!(entries.len(), 1);
    let live: Vec<_> = draws.iter().filter(|d| d.live).collect();
    let honest = TestMarket::samples_for(&live, &entries, &[&shard]);
    let cases: Vec<(&str, Vec<ProofSample>, Vec<u32>, u32)> = vec![
        (
            "a segment of a deal not in the set",
            vec![stranger.sample_at(0)],
            vec![0],
            code(MarketError::InvalidProof),
        ),
        (
            "a segment of the deal that joined this epoch",
            vec![late.sample_at(live[0].segment % 100)],
            vec![0],
            code(MarketError::InvalidProof),
        ),
        (
            "the wrong segment for the drawn index",
            vec![shard.sample_at((live[0].segment + 1) % 100)],
            vec![0],
            code(MarketError::InvalidProof),
        ),
        (
            "a path one level short",
            vec![ProofSample {
                segment: honest[0].segment,
                path: honest[0].path[1..].to_vec(),
            }],
            vec![0],
            code(MarketError::WrongPathLength),
        ),
        (
            "more samples than the session draws",
            vec![honest[0].clone(), honest[0].clone()],
            vec![0],
            code(MarketError::UnusedSamples),
        ),
        (
            "no deal-set page for the draw",
            honest.clone(),
            vec![],
            code(MarketError::NoProgress),
        ),
    ];
    for (what, samples, pages, want) in cases {
        let ix = m.prove_ix(&a.operator.pubkey(), &a.pda, 1, samples, &pages);
        let (_, result) = m.send_proof(&a, 1, ix).await;
        assert_eq!(custom_code(&result), Some(want), "{what}: {result:?}");
        m.next_slot().await;
    }
    assert!(!m.proven(&a.pda, 1).await);
    m.prove_session(&a, 1, &[&shard])
        .await
        .expect("honest session");
    assert!(m.proven(&a.pda, 1).await);
}

#[tokio::test]
async fn only_the_operator_proves_only_its_own_session_only_in_the_window() {
    let params = MarketParams {
        response_slots: 50,
        ..test_params()
    };
    let (mut m, a, shard, _) = one_deal(params).await;
    let b = m.add_provider().await;
    m.open(1).await;
    let (draws, entries) = m.plan_session(&a, 1).await;
    let live: Vec<_> = draws.iter().filter(|d| d.live).collect();
    let samples = TestMarket::samples_for(&live, &entries, &[&shard]);

    // The authority (cold key) is not the operator.
    let ix = m.prove_ix(&a.authority.pubkey(), &a.pda, 1, samples.clone(), &[0]);
    let authority = a.authority.insecure_clone();
    assert_market_err(
        m.send_paid_by(&[ix], &authority, &[]).await,
        MarketError::WrongOperator,
    );
    // Another provider's operator, for A's session.
    let ix = m.prove_ix(&b.operator.pubkey(), &a.pda, 1, samples.clone(), &[0]);
    let (_, result) = m.send_proof(&b, 1, ix).await;
    assert_market_err(result, MarketError::WrongOperator);
    // B's operator with A's deal set under B's provider account.
    let mut ix = m.prove_ix(&b.operator.pubkey(), &b.pda, 1, samples.clone(), &[0]);
    substitute(&mut ix, &deal_set_pda(&b.pda), deal_set_pda(&a.pda));
    let operator_b = b.operator.insecure_clone();
    assert_market_err(
        m.send_paid_by(&[ix], &operator_b, &[]).await,
        MarketError::WrongProvider,
    );
    // A's proof log under B's session: refused.
    let mut ix = m.prove_ix(&b.operator.pubkey(), &b.pda, 1, vec![], &[]);
    substitute(&mut ix, &proof_log_pda(&b.pda, 0), proof_log_pda(&a.pda, 0));
    assert_market_err(
        m.send_paid_by(&[ix], &operator_b, &[]).await,
        MarketError::WrongLogPage,
    );
    // An epoch that is not the open one.
    let ix = m.prove_ix(&a.operator.pubkey(), &a.pda, 2, samples.clone(), &[0]);
    let (_, result) = m.send_proof(&a, 1, ix).await;
    assert_market_err(result, MarketError::EpochNotOpened);
    // After the response deadline (slot 150 of epoch 1's 100..200).
    m.warp_to_slot(150).await;
    let ix = m.prove_ix(&a.operator.pubkey(), &a.pda, 1, samples, &[0]);
    let (_, result) = m.send_proof(&a, 1, ix).await;
    assert_market_err(result, MarketError::OutsideProofWindow);
    assert!(!m.proven(&a.pda, 1).await);
    // Opening after the deadline is refused too.
    assert_market_err(m.open_epoch(1).await, MarketError::EpochAlreadyOpened);
    m.warp_to_slot(2 * 100 + 60).await;
    assert_market_err(m.open_epoch(2).await, MarketError::EpochClosed);
    let ix = m.open_epoch_ix_with(&m.ctx.payer.pubkey(), 3, &Pubkey::new_unique());
    assert_market_err(m.send(&[ix], &[]).await, MarketError::WrongSlotHashes);
}

#[tokio::test]
async fn a_provider_sends_the_same_few_transactions_whatever_its_number_of_deals() {
    let mut m = TestMarket::start().await;
    let small = m.add_provider().await;
    let large = m.add_provider().await;
    let client = m.client(100_000_000).await;
    let one = TestShard::random(4_096, 1);
    let d = m.propose(&client, &small, &one, [1; 32], 0, 10).await;
    m.accept(&small, &d).await;
    let shards: Vec<TestShard> = (0..100)
        .map(|i| TestShard::random(4_096, 100 + i))
        .collect();
    for (i, shard) in shards.iter().enumerate() {
        let mut dataset = [2; 32];
        dataset[0] = i as u8;
        let d = m.propose(&client, &large, shard, dataset, 0, 10).await;
        m.accept(&large, &d).await;
        if i % 16 == 15 {
            // A fresh blockhash: 200 transactions outlast one on a loaded machine.
            m.next_slot().await;
        }
    }
    assert_eq!(
        m.deal_set(&large.pda).await.pages,
        2,
        "100 deals take two pages"
    );
    m.open(1).await;
    let refs: Vec<&TestShard> = shards.iter().collect();
    let small_txs = m.prove_session(&small, 1, &[&one]).await.expect("small");
    let large_txs = m.prove_session(&large, 1, &refs).await.expect("large");
    // s = min(4, deals); 4 KiB shards (depth 6) fit several samples per transaction.
    let (draws, _) = m.plan_session(&large, 1).await;
    assert_eq!(draws.iter().filter(|d| d.live).count(), 4);
    assert_eq!(large_txs, proving::pack_session(&draws).len());
    assert!(large_txs <= 2, "100 deals took {large_txs} transactions");
    assert_eq!(small_txs, 1);
    assert!(m.proven(&small.pda, 1).await && m.proven(&large.pda, 1).await);
}

#[tokio::test]
async fn the_largest_proof_transaction_fits_with_a_priority_fee_and_verifies() {
    // A 4 GiB shard of zeros: its root and every path are the empty subtrees, so the
    // largest proof can be built without 4 GiB of memory.
    let mut m = TestMarket::start().await;
    let params = test_params();
    let max = params.max_shard_bytes;
    assert_eq!(max, 4 << 30);
    let collateral = params.collateral_per_mib * (max >> 20);
    let a = m.add_provider_with(max, 1, collateral, 0).await;
    let client = m.client(1_000_000).await;
    let args = storage_market::instructions::ProposeDealArgs {
        dataset_id: cairn_chain::dataset_id(&client.keypair.pubkey(), &[9; 32]),
        dataset_nonce: [9; 32],
        group_id: [9; 32],
        group: 0,
        shard_index: 0,
        generation: 0,
        k: 1,
        n: 1,
        shard_root: cairn_proof::empty_subtree(cairn_proof::MAX_DEPTH),
        shard_bytes: max,
        duration_epochs: 2,
        max_price_per_epoch: u64::MAX,
    };
    let ix = m.propose_deal_ix(&client.keypair.pubkey(), &a.pda, &client.token, args);
    m.send(&[ix], &[&client.keypair])
        .await
        .expect("propose 4 GiB");
    let deal = deal_pda(&client.keypair.pubkey(), &[9; 32], 0, 0);
    m.accept(&a, &deal).await;
    m.open(1).await;

    let path: Vec<[u8; 32]> = (0..cairn_proof::MAX_DEPTH)
        .map(cairn_proof::empty_subtree)
        .collect();
    assert_eq!(path.len(), 26);
    let sample = ProofSample {
        segment: [0; 64],
        path,
    };
    let ix = m.prove_ix(&a.operator.pubkey(), &a.pda, 1, vec![sample], &[0]);
    let (len, result) = m.send_proof(&a, 1, ix).await;
    result.expect("the largest proof verifies");
    assert!(len <= proving::PACKET_BYTES, "{len} bytes");
    assert_eq!(len, proving::proof_tx_len(&[26], 1));
    println!(
        "largest proof transaction: {len} of {} bytes",
        proving::PACKET_BYTES
    );
    assert!(m.proven(&a.pda, 1).await);
    let _ = LOG_PAGE_EPOCHS;
}
