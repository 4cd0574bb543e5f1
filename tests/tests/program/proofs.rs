//! `open_epoch` and `submit_proof`: windows, seeds, every way a proof can be wrong,
//! and the size of the largest proof transaction.
use anchor_lang::error::ErrorCode as AnchorError;
use cairn_tests::*;
use solana_signer::Signer;
use storage_market::errors::MarketError;
use storage_market::instructions::ProofSample;
use storage_market::state::DealState;

/// A market with one active deal (provider A, 300 kB shard, 5 epochs from epoch 1).
struct OneDeal {
    m: TestMarket,
    a: TestProvider,
    shard: TestShard,
    deal: Pubkey,
}

async fn one_deal() -> OneDeal {
    let mut m = TestMarket::start().await;
    let a = m.add_provider().await;
    let client = m.client(1_000_000).await;
    let shard = TestShard::random(300_000, 11);
    let deal = m.propose(&client, &a, &shard, [1; 32], 0, 5).await;
    m.accept(&a, &deal).await;
    OneDeal { m, a, shard, deal }
}

impl OneDeal {
    async fn submit(
        &mut self,
        epoch: u64,
        samples: Vec<ProofSample>,
    ) -> Result<(), BanksClientErr> {
        let ix = self.m.submit_proof_ix(
            &self.a.operator.pubkey(),
            &self.a.pda,
            &self.deal,
            epoch,
            samples,
        );
        let operator = self.a.operator.insecure_clone();
        self.m.send_paid_by(&[ix], &operator, &[]).await
    }

    async fn honest(&mut self, epoch: u64) -> Vec<ProofSample> {
        let challenge = self.m.challenge(epoch).await;
        self.shard.proof(&self.deal, &challenge)
    }
}

type BanksClientErr = solana_program_test::BanksClientError;

const CLOCK_SYSVAR: Pubkey = anchor_lang::pubkey!("SysvarC1ock11111111111111111111111111111111");

#[tokio::test]
async fn honest_proof_is_paid_once_and_its_replay_is_refused() {
    let mut t = one_deal().await;
    t.m.warp_to_epoch(1, 3).await;
    t.m.open_epoch(1).await.unwrap();
    let proof = t.honest(1).await;
    t.submit(1, proof.clone()).await.expect("honest proof");
    let deal = t.m.deal(&t.deal).await;
    assert_eq!((deal.settled_through, deal.proven_epochs), (1, 1));
    assert_eq!(t.m.provider(&t.a).await.earnings, deal.price_per_epoch);

    t.m.next_slot().await;
    assert_market_err(t.submit(1, proof).await, MarketError::EpochAlreadySettled);
    assert_eq!(t.m.provider(&t.a).await.earnings, deal.price_per_epoch);
}

#[tokio::test]
async fn wrong_segment_path_or_index_is_refused() {
    let mut t = one_deal().await;
    t.m.warp_to_epoch(1, 3).await;
    t.m.open_epoch(1).await.unwrap();
    let honest = t.honest(1).await;

    let mut bad = honest.clone();
    bad[0].segment[17] ^= 0x01;
    assert_market_err(t.submit(1, bad).await, MarketError::InvalidProof);

    let mut bad = honest.clone();
    bad[0].path[3][0] ^= 0x80;
    assert_market_err(t.submit(1, bad).await, MarketError::InvalidProof);

    let mut bad = honest.clone();
    bad[0].path.pop();
    assert_market_err(t.submit(1, bad).await, MarketError::WrongPathLength);

    let mut bad = honest.clone();
    bad[0].path.push([0; 32]);
    assert_market_err(t.submit(1, bad).await, MarketError::WrongPathLength);

    // A genuine segment and path, but for the neighbouring index.
    let challenge = t.m.challenge(1).await;
    let index = cairn_proof::challenge_index(
        &challenge.seed,
        &t.deal.to_bytes(),
        0,
        t.shard.tree.segments(),
    );
    let other = if index == 0 { 1 } else { index - 1 };
    let neighbour = t.shard.sample_at(other);
    assert_market_err(
        t.submit(1, vec![neighbour]).await,
        MarketError::InvalidProof,
    );

    assert_market_err(t.submit(1, vec![]).await, MarketError::WrongSampleCount);
    let two = vec![honest[0].clone(), honest[0].clone()];
    assert_market_err(t.submit(1, two).await, MarketError::WrongSampleCount);

    // Nothing was paid for any of them; the honest proof still goes through.
    assert_eq!(t.m.provider(&t.a).await.earnings, 0);
    t.submit(1, honest).await.expect("honest proof");
}

#[tokio::test]
async fn proofs_outside_their_window_are_refused() {
    let mut t = one_deal().await;
    let params = test_params();
    t.m.warp_to_epoch(1, 3).await;
    t.m.open_epoch(1).await.unwrap();

    // Future epoch: its challenge does not exist yet, and cannot be opened.
    let proof1 = t.honest(1).await;
    assert_anchor_err(
        t.submit(2, proof1.clone()).await,
        AnchorError::AccountNotInitialized,
    );
    assert_market_err(t.m.open_epoch(2).await, MarketError::EpochNotStarted);

    // Within the grace period after epoch 1, its proof is still accepted.
    t.m.warp_to_epoch(2, params.grace_slots - 1).await;
    t.submit(1, proof1.clone())
        .await
        .expect("proof within grace");

    // Epoch 2 opened; its proof is never submitted in time.
    t.m.open_epoch(2).await.unwrap();
    let proof2 = t.honest(2).await;
    t.m.warp_to_epoch(3, params.grace_slots).await;
    assert_market_err(t.submit(2, proof2).await, MarketError::OutsideProofWindow);
    // Epoch 1's proof replayed after its window: still named a replay.
    assert_market_err(t.submit(1, proof1).await, MarketError::EpochAlreadySettled);
}

#[tokio::test]
async fn proofs_for_epochs_outside_the_deal_are_refused() {
    let mut t = one_deal().await;
    let deal = t.m.deal(&t.deal).await;
    assert_eq!((deal.start_epoch, deal.end_epoch), (1, 6));
    // Epoch 0 (the accept epoch) is before the deal: open it and try.
    t.m.open_epoch(0).await.unwrap();
    let proof = t.honest(0).await;
    assert_market_err(t.submit(0, proof).await, MarketError::EpochOutsideDeal);
    // Epoch 6 is after it.
    t.m.warp_to_epoch(6, 1).await;
    t.m.open_epoch(6).await.unwrap();
    let proof = t.honest(6).await;
    assert_market_err(t.submit(6, proof).await, MarketError::EpochOutsideDeal);
}

#[tokio::test]
async fn previous_epochs_proof_does_not_answer_this_epoch() {
    let mut t = one_deal().await;
    t.m.warp_to_epoch(1, 3).await;
    t.m.open_epoch(1).await.unwrap();
    let proof1 = t.honest(1).await;
    t.submit(1, proof1.clone()).await.unwrap();

    t.m.warp_to_epoch(2, 3).await;
    t.m.open_epoch(2).await.unwrap();
    let (c1, c2) = (t.m.challenge(1).await, t.m.challenge(2).await);
    assert_ne!(c1.seed, c2.seed, "epochs must get different seeds");
    let segments = t.shard.tree.segments();
    let i1 = cairn_proof::challenge_index(&c1.seed, &t.deal.to_bytes(), 0, segments);
    let i2 = cairn_proof::challenge_index(&c2.seed, &t.deal.to_bytes(), 0, segments);
    if i1 != i2 {
        assert_market_err(t.submit(2, proof1.clone()).await, MarketError::InvalidProof);
    }
    // Replaying epoch 1's proof for epoch 1 after its settlement is refused too.
    assert_market_err(t.submit(1, proof1).await, MarketError::EpochAlreadySettled);
    let proof2 = t.honest(2).await;
    t.submit(2, proof2).await.expect("epoch 2 proof");
    assert_eq!(t.m.deal(&t.deal).await.proven_epochs, 2);
}

#[tokio::test]
async fn proof_signed_by_the_authority_or_for_another_deal_is_refused() {
    let mut t = one_deal().await;
    let b = t.m.add_provider().await;
    t.m.warp_to_epoch(1, 3).await;
    t.m.open_epoch(1).await.unwrap();
    let proof = t.honest(1).await;

    // The cold authority is not the operator.
    let ix =
        t.m.submit_proof_ix(&t.a.authority.pubkey(), &t.a.pda, &t.deal, 1, proof.clone());
    let authority = t.a.authority.insecure_clone();
    assert_market_err(
        t.m.send_paid_by(&[ix], &authority, &[]).await,
        MarketError::WrongOperator,
    );

    // Another provider's operator, with its own provider account, on A's deal.
    let ix =
        t.m.submit_proof_ix(&b.operator.pubkey(), &b.pda, &t.deal, 1, proof.clone());
    let operator_b = b.operator.insecure_clone();
    assert_market_err(
        t.m.send_paid_by(&[ix], &operator_b, &[]).await,
        MarketError::WrongProvider,
    );

    // The challenge of another epoch substituted for this one's.
    t.m.warp_to_epoch(2, 3).await;
    t.m.open_epoch(2).await.unwrap();
    let ix = t.m.submit_proof_ix_with(
        &t.a.operator.pubkey(),
        &t.a.pda,
        &t.deal,
        &challenge_pda(2),
        1,
        proof,
    );
    let operator = t.a.operator.insecure_clone();
    assert_anchor_err(
        t.m.send_paid_by(&[ix], &operator, &[]).await,
        AnchorError::ConstraintSeeds,
    );
    assert_eq!(t.m.provider(&t.a).await.earnings, 0);
}

#[tokio::test]
async fn proof_after_missed_epochs_settles_them_without_bounty() {
    let mut t = one_deal().await;
    let params = test_params();
    t.m.warp_to_epoch(3, 1).await;
    t.m.open_epoch(3).await.unwrap();
    let proof = t.honest(3).await;
    t.submit(3, proof).await.expect("proof for epoch 3");
    let deal = t.m.deal(&t.deal).await;
    let slash = storage_market::settlement::bps_of(deal.collateral, params.slash_bps).unwrap();
    assert_eq!(
        (deal.total_faults, deal.proven_epochs, deal.settled_through),
        (2, 1, 3)
    );
    assert_eq!(deal.client_refund, 2 * (slash + deal.price_per_epoch));
    let p = t.m.provider(&t.a).await;
    assert_eq!((p.slashed, p.earnings), (2 * slash, deal.price_per_epoch));
}

#[tokio::test]
async fn proof_after_terminating_misses_is_refused_and_report_terminates() {
    let mut t = one_deal().await;
    let params = test_params();
    // Epochs 1..=3 missed (max_consecutive_faults = 3): proving epoch 4 would
    // first have to terminate the deal.
    t.m.warp_to_epoch(4, 1).await;
    t.m.open_epoch(4).await.unwrap();
    let proof = t.honest(4).await;
    assert_market_err(t.submit(4, proof).await, MarketError::DealMustTerminate);
    assert_eq!(t.m.deal(&t.deal).await.state, DealState::Active);

    t.m.warp_to_epoch(4, params.grace_slots).await;
    let reporter = t.m.client(0).await;
    let ix = t.m.report_faults_ix(
        &reporter.keypair.pubkey(),
        &t.a.pda,
        &t.deal,
        &reporter.token,
    );
    t.m.send(&[ix], &[&reporter.keypair]).await.expect("report");
    assert_eq!(t.m.deal(&t.deal).await.state, DealState::Terminated);
    let proof = t.honest(4).await;
    assert_market_err(t.submit(4, proof).await, MarketError::DealNotActive);
}

#[tokio::test]
async fn open_epoch_timing_replay_and_sysvar_checks() {
    let mut m = TestMarket::start().await;
    let params = test_params();
    assert_market_err(m.open_epoch(1).await, MarketError::EpochNotStarted);

    m.warp_to_epoch(1, 0).await;
    m.open_epoch(1).await.expect("open at the first slot");
    let c = m.challenge(1).await;
    assert_eq!((c.epoch, c.start_slot), (1, params.epoch_slots));
    assert_eq!(c.deadline_slot, 2 * params.epoch_slots + params.grace_slots);
    // No slot of epoch 1 has a hash yet at its first slot: the newest entry.
    assert!(c.seed_slot < c.start_slot);

    // Twice: the challenge account already exists (system program error 0,
    // AccountAlreadyInUse); the first seed stays.
    m.next_slot().await;
    let again = m.open_epoch(1).await;
    assert_eq!(custom_code(&again), Some(0), "{again:?}");
    assert_eq!(m.challenge(1).await.seed, c.seed);

    // A substituted sysvar account.
    m.warp_to_epoch(2, 5).await;
    let ix = m.open_epoch_ix_with(&m.ctx.payer.pubkey(), 2, &CLOCK_SYSVAR);
    assert_market_err(m.send(&[ix], &[]).await, MarketError::WrongSlotHashes);

    // Opened later in the epoch: the seed is the hash of the epoch's first slot
    // that has one, read from the real SlotHashes sysvar.
    m.open_epoch(2).await.expect("open 2");
    let c2 = m.challenge(2).await;
    let hashes = m.slot_hashes().await;
    let first = hashes
        .iter()
        .filter(|(slot, _)| *slot >= c2.start_slot)
        .min_by_key(|(slot, _)| *slot)
        .expect("a slot of epoch 2 has a hash");
    assert_eq!((c2.seed_slot, c2.seed), *first);

    // After the proof window, the epoch can no longer be opened.
    m.warp_to_epoch(4, params.grace_slots).await;
    assert_market_err(m.open_epoch(3).await, MarketError::EpochClosed);
    // Its challenge cannot be closed before its window ends, then can.
    m.open_epoch(4).await.unwrap();
    let ix = m.close_challenge_ix(&m.ctx.payer.pubkey(), 4);
    assert_market_err(m.send(&[ix], &[]).await, MarketError::ChallengeStillOpen);
}

#[tokio::test]
async fn open_epoch_after_slot_hashes_rolled_past_its_start_uses_the_newest_entry() {
    // A market with long epochs so the window is still open 600 slots in.
    let params = storage_market::state::MarketParams {
        epoch_slots: 2_000,
        ..test_params()
    };
    let mut m = TestMarket::start_with(TokenKind::Token, params).await;
    m.warp_to_slot(2_000 + 1).await;
    // 520 banks, one slot each: SlotHashes keeps the newest 512.
    for _ in 0..520 {
        m.next_slot().await;
    }
    let hashes = m.slot_hashes().await;
    let oldest = hashes.iter().map(|(s, _)| *s).min().unwrap();
    assert!(
        oldest > 2_000,
        "the epoch's first slots rolled out (oldest {oldest})"
    );
    m.open_epoch(1).await.expect("open after roll-past");
    let c = m.challenge(1).await;
    let newest = hashes.iter().max_by_key(|(s, _)| *s).unwrap();
    assert_eq!((c.seed_slot, c.seed), *newest);
}

#[tokio::test]
async fn largest_shard_proof_fits_one_transaction_and_verifies() {
    // A 4 GiB shard of zeros: its root and every path are the empty subtrees,
    // so the largest proof can be built without 4 GiB of memory.
    let mut m = TestMarket::start().await;
    let params = test_params();
    let max = params.max_shard_bytes;
    assert_eq!(max, 4 << 30);
    let collateral = params.collateral_per_mib * (max >> 20);
    let a = m.add_provider_with(max, 1, collateral, 0).await;
    let client = m.client(1_000_000).await;
    let args = storage_market::instructions::ProposeDealArgs {
        dataset_id: [9; 32],
        shard_index: 0,
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
    let deal = deal_pda(&client.keypair.pubkey(), &[9; 32], 0);
    m.accept(&a, &deal).await;
    m.warp_to_epoch(1, 2).await;
    m.open_epoch(1).await.unwrap();

    let path: Vec<[u8; 32]> = (0..cairn_proof::MAX_DEPTH)
        .map(cairn_proof::empty_subtree)
        .collect();
    assert_eq!(path.len(), 26);
    let samples = vec![ProofSample {
        segment: [0; 64],
        path,
    }];
    let ix = m.submit_proof_ix(&a.operator.pubkey(), &a.pda, &deal, 1, samples);
    let tx = solana_transaction::Transaction::new_signed_with_payer(
        std::slice::from_ref(&ix),
        Some(&a.operator.pubkey()),
        &[&a.operator],
        m.ctx.last_blockhash,
    );
    let size = bincode::serialize(&tx).unwrap().len();
    println!("largest proof transaction: {size} bytes (limit 1232)");
    assert!(size <= 1232, "proof transaction is {size} bytes");
    let operator = a.operator.insecure_clone();
    m.send_paid_by(&[ix], &operator, &[])
        .await
        .expect("depth-26 proof verifies");
    assert_eq!(m.deal(&deal).await.proven_epochs, 1);
}
