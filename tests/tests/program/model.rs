//! Model-based property test of lazy settlement: random sequences of epochs
//! (proven, failed, void, late proofs, deals joining and ending early, jailing,
//! parameter updates), settled lazily at random times on the real runtime, against
//! an eager reference model written from the rules alone (each closed epoch settled
//! at once for every deal). Every balance must equal the model's after each
//! catch-up settlement, and the vault must equal the sum of the recorded balances
//! after every epoch's steps.
use std::collections::HashMap;

use cairn_tests::*;
use proptest::prelude::*;
use solana_signer::Signer;
use storage_market::constants::NOT_JAILED;
use storage_market::state::{DealState, MarketParams};

const PROVIDERS: usize = 2;
const STAKE: u64 = 10_000_000;

#[derive(Clone, Debug)]
struct EpochPlan {
    open: bool,
    /// Each provider proves (in time) this epoch.
    proves: [bool; PROVIDERS],
    /// A provider proves after the response deadline (refused: a late proof).
    late: Option<usize>,
    /// A new deal with this provider for this many epochs.
    new_deal: Option<(usize, u64)>,
    /// The client ends the n-th deal that has a failed epoch, if any.
    end_one: Option<usize>,
    /// Anyone jails every provider the rules allow.
    jail: bool,
    /// Deals settled lazily this epoch (indices, modulo the deal count).
    settle: Vec<usize>,
    /// The market's slash_bps changes (new deals only).
    slash_bps: Option<u16>,
    /// Settle everything and compare with the model.
    checkpoint: bool,
}

fn epoch_plan() -> impl Strategy<Value = EpochPlan> {
    (
        prop::bool::weighted(0.85),
        [prop::bool::weighted(0.75), prop::bool::weighted(0.5)],
        prop::option::weighted(0.1, 0..PROVIDERS),
        prop::option::weighted(0.4, (0..PROVIDERS, 1..6u64)),
        prop::option::weighted(0.15, 0..8usize),
        prop::bool::weighted(0.3),
        prop::collection::vec(0..32usize, 0..3),
        prop::option::weighted(0.15, 0..3_000u16),
        prop::bool::weighted(0.25),
    )
        .prop_map(
            |(open, proves, late, new_deal, end_one, jail, settle, slash_bps, checkpoint)| {
                EpochPlan {
                    open,
                    proves,
                    late,
                    new_deal,
                    end_one,
                    jail,
                    settle,
                    slash_bps,
                    checkpoint,
                }
            },
        )
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ModelState {
    Active,
    Completed,
    Terminated,
}

#[derive(Clone, Debug)]
struct ModelDeal {
    provider: usize,
    price: u64,
    collateral: u64,
    slash_bps: u16,
    start: u64,
    end: u64,
    forfeit: bool,
    settled_until: u64,
    escrow: u64,
    refund: u64,
    collateral_left: u64,
    state: ModelState,
    proven: u64,
    failed: u64,
    void: u64,
}

#[derive(Clone, Debug, Default)]
struct ModelProvider {
    earnings: u64,
    stake_free: u64,
    stake_locked: u64,
    jailed_from: Option<u64>,
}

/// The eager reference: every closed epoch settled for every deal at once.
#[derive(Default)]
struct Model {
    deals: Vec<ModelDeal>,
    providers: Vec<ModelProvider>,
    opened: HashMap<u64, bool>,
    proven: HashMap<(usize, u64), bool>,
}

impl Model {
    fn owed_until(&self, d: &ModelDeal) -> u64 {
        d.end
            .min(self.providers[d.provider].jailed_from.unwrap_or(u64::MAX))
    }

    fn failed(&self, provider: usize, epoch: u64) -> bool {
        self.opened.get(&epoch).copied().unwrap_or(false)
            && !self
                .proven
                .get(&(provider, epoch))
                .copied()
                .unwrap_or(false)
    }

    /// Settles closed epoch `epoch` of every deal, then finishes deals that are done.
    fn close_epoch(&mut self, epoch: u64) {
        for i in 0..self.deals.len() {
            let d = self.deals[i].clone();
            if d.state != ModelState::Active
                || epoch < d.start
                || epoch >= self.owed_until(&d)
                || d.settled_until != epoch
            {
                continue;
            }
            let opened = self.opened.get(&epoch).copied().unwrap_or(false);
            let proven = self
                .proven
                .get(&(d.provider, epoch))
                .copied()
                .unwrap_or(false);
            let deal = &mut self.deals[i];
            deal.escrow -= deal.price;
            if !opened {
                deal.refund += deal.price;
                deal.void += 1;
            } else if proven {
                self.providers[deal.provider].earnings += deal.price;
                deal.proven += 1;
            } else {
                let penalty = (deal.collateral * u64::from(deal.slash_bps) / 10_000)
                    .min(deal.collateral_left);
                deal.collateral_left -= penalty;
                self.providers[deal.provider].stake_locked -= penalty;
                deal.refund += deal.price + penalty;
                deal.failed += 1;
            }
            deal.settled_until = epoch + 1;
        }
        self.finish_done();
    }

    fn finish_done(&mut self) {
        for i in 0..self.deals.len() {
            let d = self.deals[i].clone();
            let owed = self.owed_until(&d);
            if d.state != ModelState::Active || d.settled_until < owed {
                continue;
            }
            let deal = &mut self.deals[i];
            let provider = &mut self.providers[deal.provider];
            if owed < deal.end || deal.forfeit {
                deal.refund += deal.escrow + deal.collateral_left;
                provider.stake_locked -= deal.collateral_left;
                deal.escrow = 0;
                deal.state = ModelState::Terminated;
            } else {
                provider.stake_locked -= deal.collateral_left;
                provider.stake_free += deal.collateral_left;
                deal.state = ModelState::Completed;
            }
            deal.collateral_left = 0;
        }
    }
}

struct Run {
    m: TestMarket,
    providers: Vec<TestProvider>,
    client: TestClient,
    shards: Vec<TestShard>,
    deals: Vec<Pubkey>,
    model: Model,
    /// The model has settled every epoch before this one.
    closed_until: u64,
    slash_bps: u16,
}

impl Run {
    /// Closes, in the model, every epoch before `now`.
    fn close_to(&mut self, now: u64) {
        while self.closed_until < now {
            self.model.close_epoch(self.closed_until);
            self.closed_until += 1;
        }
    }

    async fn add_deal(&mut self, provider: usize, duration: u64) {
        if self.model.providers[provider].jailed_from.is_some() {
            return;
        }
        let i = self.deals.len();
        let shard = TestShard::random(2_000 + 64 * i, 1_000 + i as u64);
        let dataset = [i as u8 + 1; 32];
        let p = &self.providers[provider];
        let d = self
            .m
            .propose(&self.client, p, &shard, dataset, 0, duration)
            .await;
        self.m.accept(p, &d).await;
        let deal = self.m.deal(&d).await;
        self.model.providers[provider].stake_free -= deal.collateral;
        self.model.providers[provider].stake_locked += deal.collateral;
        self.model.deals.push(ModelDeal {
            provider,
            price: deal.price_per_epoch,
            collateral: deal.collateral,
            slash_bps: self.slash_bps,
            start: deal.start_epoch,
            end: deal.end_epoch,
            forfeit: false,
            settled_until: deal.start_epoch,
            escrow: deal.price_per_epoch * duration,
            refund: 0,
            collateral_left: deal.collateral,
            state: ModelState::Active,
            proven: 0,
            failed: 0,
            void: 0,
        });
        self.shards.push(shard);
        self.deals.push(d);
    }

    async fn conserved(&mut self, step: &str) {
        let providers: Vec<Pubkey> = self.providers.iter().map(|p| p.pda).collect();
        let p: Vec<&Pubkey> = providers.iter().collect();
        let deals = self.deals.clone();
        let d: Vec<&Pubkey> = deals.iter().collect();
        self.m.assert_conserved(&p, &d, step).await;
    }

    async fn settle_all(&mut self) {
        for (i, p) in self.providers.iter().enumerate() {
            let mine: Vec<Pubkey> = self
                .deals
                .iter()
                .zip(&self.model.deals)
                .filter(|(_, d)| d.provider == i)
                .map(|(k, _)| *k)
                .collect();
            let mut active = Vec::new();
            for d in mine {
                if self.m.deal(&d).await.state == DealState::Active {
                    active.push(d);
                }
            }
            if !active.is_empty() {
                let pda = p.pda;
                self.m.settle(&pda, &active).await;
            }
        }
    }

    async fn compare(&mut self, when: &str) {
        for (i, key) in self.deals.clone().iter().enumerate() {
            let chain = self.m.deal(key).await;
            let model = &self.model.deals[i];
            let state = match chain.state {
                DealState::Active => ModelState::Active,
                DealState::Completed => ModelState::Completed,
                DealState::Terminated => ModelState::Terminated,
                other => panic!("deal {i} is {other:?}"),
            };
            assert_eq!(
                (
                    state,
                    chain.escrow,
                    chain.client_refund,
                    chain.collateral_left,
                    chain.proven_epochs,
                    chain.failed_epochs,
                    chain.void_epochs,
                ),
                (
                    model.state,
                    model.escrow,
                    model.refund,
                    model.collateral_left,
                    model.proven,
                    model.failed,
                    model.void,
                ),
                "deal {i} {when}: {model:?}"
            );
        }
        for (i, p) in self.providers.iter().enumerate() {
            let chain = self.m.provider(p).await;
            let model = &self.model.providers[i];
            assert_eq!(
                (
                    chain.earnings,
                    chain.stake_free,
                    chain.stake_locked,
                    chain.jailed_from
                ),
                (
                    model.earnings,
                    model.stake_free,
                    model.stake_locked,
                    model.jailed_from.unwrap_or(NOT_JAILED)
                ),
                "provider {i} {when}"
            );
        }
    }
}

async fn run(plans: Vec<EpochPlan>) {
    let params = MarketParams {
        samples_per_epoch: 2,
        ..test_params()
    };
    let mut m = TestMarket::start_with(TokenKind::Token, params).await;
    let mut providers = Vec::new();
    for _ in 0..PROVIDERS {
        providers.push(m.add_provider_with(1 << 30, 100, STAKE, 0).await);
    }
    let client = m.client(1_000_000_000).await;
    let mut run = Run {
        m,
        providers,
        client,
        shards: Vec::new(),
        deals: Vec::new(),
        model: Model {
            providers: vec![
                ModelProvider {
                    stake_free: STAKE,
                    ..ModelProvider::default()
                };
                PROVIDERS
            ],
            ..Model::default()
        },
        closed_until: 0,
        slash_bps: params.slash_bps,
    };
    for provider in 0..PROVIDERS {
        run.add_deal(provider, 8).await;
    }

    for (i, plan) in plans.iter().enumerate() {
        let epoch = i as u64 + 1;
        run.m.warp_to_open(epoch).await;
        run.close_to(epoch);

        if let Some(bps) = plan.slash_bps {
            let authority = run.m.authority.insecure_clone();
            let params = MarketParams {
                slash_bps: bps,
                ..run.m.market().await.params
            };
            let ix = run.m.update_market_ix(&authority.pubkey(), params);
            run.m
                .send(&[ix], &[&authority])
                .await
                .expect("update_market");
            run.slash_bps = bps;
        }
        if let Some((provider, duration)) = plan.new_deal {
            run.add_deal(provider, duration).await;
        }
        run.model.opened.insert(epoch, plan.open);
        if plan.open {
            run.m.open_epoch(epoch).await.expect("open");
            for p in 0..PROVIDERS {
                if plan.proves[p] && plan.late != Some(p) {
                    let shards: Vec<&TestShard> = run.shards.iter().collect();
                    run.m
                        .prove_session(&run.providers[p], epoch, &shards)
                        .await
                        .expect("prove");
                    run.model.proven.insert((p, epoch), true);
                }
            }
        }
        if let Some(nth) = plan.end_one {
            // The nth active deal whose provider failed a closed epoch within it.
            let candidates: Vec<(usize, u64)> = run
                .model
                .deals
                .iter()
                .enumerate()
                .filter(|(_, d)| d.state == ModelState::Active && !d.forfeit)
                .filter_map(|(k, d)| {
                    let until = run.model.owed_until(d).min(epoch);
                    (d.start..until)
                        .find(|e| run.model.failed(d.provider, *e))
                        .map(|e| (k, e))
                })
                .collect();
            if !candidates.is_empty() {
                let (k, failed) = candidates[nth % candidates.len()];
                let key = run.deals[k];
                let provider = run.providers[run.model.deals[k].provider].pda;
                let index = run.m.deal(&key).await.set_index;
                let client = run.client.keypair.insecure_clone();
                let ix = run
                    .m
                    .end_deal_ix(&client.pubkey(), &provider, &key, index, failed);
                run.m.send(&[ix], &[&client]).await.expect("end_deal");
                let d = &mut run.model.deals[k];
                let new_end = d.end.min(epoch + 1);
                let refund = d.price * (d.end - new_end);
                d.escrow -= refund;
                d.refund += refund;
                d.end = new_end;
                d.forfeit = true;
            }
        }
        if plan.jail {
            for p in 0..PROVIDERS {
                if run.model.providers[p].jailed_from.is_some() {
                    continue;
                }
                let window_start = epoch.saturating_sub(u64::from(params.jail_window));
                let evidence: Vec<(u64, usize)> = (window_start..epoch)
                    .filter(|e| run.model.failed(p, *e))
                    .filter_map(|e| {
                        run.model
                            .deals
                            .iter()
                            .position(|d| d.provider == p && d.start <= e && e < d.end)
                            .map(|k| (e, k))
                    })
                    .take(usize::from(params.jail_failures))
                    .collect();
                if evidence.len() == usize::from(params.jail_failures) {
                    let epochs: Vec<u64> = evidence.iter().map(|(e, _)| *e).collect();
                    let deals: Vec<Pubkey> = evidence.iter().map(|(_, k)| run.deals[*k]).collect();
                    let caller = run.client.keypair.insecure_clone();
                    let pda = run.providers[p].pda;
                    let ix = run
                        .m
                        .jail_provider_ix(&caller.pubkey(), &pda, 0, epochs, &deals);
                    run.m.send(&[ix], &[&caller]).await.expect("jail");
                    run.model.providers[p].jailed_from = Some(epoch);
                    run.model.finish_done();
                }
            }
        }
        // A late proof: after the response deadline, refused, nothing changes.
        if let (true, Some(p)) = (plan.open, plan.late) {
            run.m.warp_to_epoch(epoch, params.response_slots).await;
            let provider = &run.providers[p];
            let ix = run.m.prove_ix(
                &provider.operator.pubkey(),
                &provider.pda,
                epoch,
                vec![],
                &[0],
            );
            let operator = provider.operator.insecure_clone();
            let late = run.m.send_paid_by(&[ix], &operator, &[]).await;
            assert!(late.is_err(), "a late proof was accepted");
        }
        for k in &plan.settle {
            let k = k % run.deals.len();
            let key = run.deals[k];
            if run.m.deal(&key).await.state == DealState::Active {
                let pda = run.providers[run.model.deals[k].provider].pda;
                run.m.settle(&pda, &[key]).await;
            }
        }
        run.conserved("epoch").await;
        if plan.checkpoint {
            let now = run.m.epoch().await;
            run.close_to(now);
            run.settle_all().await;
            run.compare(&format!("at checkpoint in epoch {epoch}"))
                .await;
            run.conserved("checkpoint").await;
        }
    }
    // The end: the last epoch closes; everything settles.
    let last = plans.len() as u64;
    run.m.warp_to_epoch(last + 1, 5).await;
    run.close_to(last + 1);
    run.settle_all().await;
    run.compare("at the end").await;
    run.conserved("end").await;
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: 6,
        max_shrink_iters: 20,
        ..ProptestConfig::default()
    })]

    #[test]
    fn lazy_settlement_equals_eager_settlement(plans in prop::collection::vec(epoch_plan(), 6..14)) {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(run(plans));
    }
}
