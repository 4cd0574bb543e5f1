//! `TestMarket`: a market on a fresh chain, with helpers to drive it.
use anchor_lang::{error::ERROR_CODE_OFFSET, AccountDeserialize};
use anchor_spl::{token::spl_token, token_2022::spl_token_2022};
use cairn_proof::Tree;
use solana_keypair::Keypair;
use solana_program_test::{BanksClientError, ProgramTestContext};
use solana_signer::Signer;
use solana_transaction::Transaction;
use storage_market::{
    errors::MarketError,
    instructions::{ProofSample, ProposeDealArgs, RegisterProviderArgs},
    state::{Challenge, Deal, Market, MarketParams, Provider},
};

pub use cairn_chain::*;

/// Parameters used by most tests: 100-slot epochs, 20 grace slots, 10% slash per
/// missed epoch, 20% of it to the reporter, termination at 3 consecutive misses.
pub fn test_params() -> MarketParams {
    MarketParams {
        epoch_slots: 100,
        collateral_per_mib: 5_000,
        slash_bps: 1_000,
        bounty_bps: 2_000,
        max_consecutive_faults: 3,
        accept_timeout_epochs: 2,
        grace_slots: 20,
        max_shard_bytes: cairn_proof::MAX_SHARD_BYTES,
        samples_per_proof: 1,
    }
}

/// Which SPL token program the market's mint lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    Token,
    Token2022,
}

impl TokenKind {
    pub fn program_id(self) -> Pubkey {
        match self {
            TokenKind::Token => spl_token::ID,
            TokenKind::Token2022 => spl_token_2022::ID,
        }
    }
}

/// Replaces account `old` of `ix` with `new` (to test a substituted account).
#[track_caller]
pub fn substitute(ix: &mut Instruction, old: &Pubkey, new: Pubkey) {
    let meta = ix
        .accounts
        .iter_mut()
        .find(|meta| meta.pubkey == *old)
        .unwrap_or_else(|| panic!("{old} is not an account of this instruction"));
    meta.pubkey = new;
}

/// The program error code of `err`.
pub fn code(err: MarketError) -> u32 {
    ERROR_CODE_OFFSET + err as u32
}

/// The custom error code a failed transaction returned, if any.
pub fn custom_code(result: &Result<(), BanksClientError>) -> Option<u32> {
    use anchor_lang::solana_program::instruction::error::InstructionError;
    use solana_transaction_error::TransactionError;
    match result {
        Err(BanksClientError::TransactionError(TransactionError::InstructionError(
            _,
            InstructionError::Custom(code),
        )))
        | Err(BanksClientError::SimulationError {
            err: TransactionError::InstructionError(_, InstructionError::Custom(code)),
            ..
        }) => Some(*code),
        _ => None,
    }
}

/// Asserts that `result` failed with the program error `expected`.
#[track_caller]
pub fn assert_market_err(result: Result<(), BanksClientError>, expected: MarketError) {
    let want = code(expected);
    assert_eq!(
        custom_code(&result),
        Some(want),
        "expected {expected:?} ({want}), got {result:?}"
    );
}

/// Asserts that `result` failed with the Anchor framework error `expected`.
#[track_caller]
pub fn assert_anchor_err(
    result: Result<(), BanksClientError>,
    expected: anchor_lang::error::ErrorCode,
) {
    let want = expected as u32;
    assert_eq!(
        custom_code(&result),
        Some(want),
        "expected {expected:?} ({want}), got {result:?}"
    );
}

/// A provider in tests: its cold authority, hot operator and token account.
pub struct TestProvider {
    pub authority: Keypair,
    pub operator: Keypair,
    pub token: Pubkey,
    pub pda: Pubkey,
}

/// A client in tests: its keypair and token account.
pub struct TestClient {
    pub keypair: Keypair,
    pub token: Pubkey,
}

/// A shard held by tests, with its Merkle tree.
pub struct TestShard {
    pub data: Vec<u8>,
    pub tree: Tree,
}

impl TestShard {
    /// `len` deterministic pseudo-random bytes from `seed`.
    pub fn random(len: usize, seed: u64) -> Self {
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let data: Vec<u8> = (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                (state >> 24) as u8
            })
            .collect();
        let mut builder = cairn_proof::TreeBuilder::new();
        builder.update(&data);
        let tree = builder.finish();
        TestShard { data, tree }
    }

    pub fn root(&self) -> [u8; 32] {
        self.tree.root()
    }

    /// The samples answering `challenge` for `deal`.
    pub fn proof(&self, deal: &Pubkey, challenge: &Challenge) -> Vec<ProofSample> {
        (0..u32::from(challenge.samples_per_proof))
            .map(|j| {
                let index = cairn_proof::challenge_index(
                    &challenge.seed,
                    &deal.to_bytes(),
                    j,
                    self.tree.segments(),
                );
                self.sample_at(index)
            })
            .collect()
    }

    /// The segment at `index` with its path, read the way a node reads it.
    pub fn sample_at(&self, index: u64) -> ProofSample {
        let range = self.tree.chunk_range(index);
        let chunk = &self.data[range.start as usize..range.end as usize];
        let (segment, path) = self.tree.path(index, chunk).expect("index in range");
        ProofSample { segment, path }
    }
}

impl std::ops::Deref for TestMarket {
    type Target = MarketIx;
    fn deref(&self) -> &MarketIx {
        &self.ix
    }
}

/// One market on a fresh chain.
pub struct TestMarket {
    pub ctx: ProgramTestContext,
    pub authority: Keypair,
    /// Instruction builders for this market (its mint and token program); the
    /// builders are reachable directly on `TestMarket` through `Deref`.
    pub ix: MarketIx,
    pub mint_authority: Keypair,
    pub token_kind: TokenKind,
    pub params: MarketParams,
    pub decimals: u8,
}

impl TestMarket {
    /// A chain with the program loaded and a fresh mint, market not created.
    pub async fn new_uninitialized(token_kind: TokenKind) -> Self {
        let test = cairn_native_host::program_test();
        let ctx = test.start_with_context().await;
        let mut market = TestMarket {
            ctx,
            authority: Keypair::new(),
            ix: MarketIx {
                mint: Pubkey::default(),
                token_program: token_kind.program_id(),
            },
            mint_authority: Keypair::new(),
            token_kind,
            params: test_params(),
            decimals: 6,
        };
        let authority = market.authority.pubkey();
        market.airdrop(&authority, 10_000_000_000).await;
        market.ix.mint = market.create_mint().await;
        market
    }

    /// A chain with the market initialised with `params`.
    pub async fn start_with(token_kind: TokenKind, params: MarketParams) -> Self {
        let mut market = Self::new_uninitialized(token_kind).await;
        market.params = params;
        let ix = market.init_market_ix(&market.authority.pubkey(), market.mint, params);
        let authority = market.authority.insecure_clone();
        market
            .send(&[ix], &[&authority])
            .await
            .expect("init_market");
        market
    }

    /// A chain with the market initialised with [`test_params`] and SPL Token.
    pub async fn start() -> Self {
        Self::start_with(TokenKind::Token, test_params()).await
    }

    // ---------------------------------------------------------------- chain

    /// Sends one transaction paid by the context's payer.
    pub async fn send(
        &mut self,
        ixs: &[Instruction],
        signers: &[&Keypair],
    ) -> Result<(), BanksClientError> {
        let payer = self.ctx.payer.insecure_clone();
        let mut all: Vec<&Keypair> = vec![&payer];
        all.extend_from_slice(signers);
        let blockhash = self.ctx.last_blockhash;
        let tx = Transaction::new_signed_with_payer(ixs, Some(&payer.pubkey()), &all, blockhash);
        self.ctx.banks_client.process_transaction(tx).await
    }

    /// Sends one transaction paid by `payer` (which signs it).
    pub async fn send_paid_by(
        &mut self,
        ixs: &[Instruction],
        payer: &Keypair,
        signers: &[&Keypair],
    ) -> Result<(), BanksClientError> {
        let mut all: Vec<&Keypair> = vec![payer];
        all.extend_from_slice(signers);
        let tx = Transaction::new_signed_with_payer(
            ixs,
            Some(&payer.pubkey()),
            &all,
            self.ctx.last_blockhash,
        );
        self.ctx.banks_client.process_transaction(tx).await
    }

    pub async fn slot(&mut self) -> u64 {
        self.ctx
            .banks_client
            .get_sysvar::<solana_clock::Clock>()
            .await
            .expect("clock")
            .slot
    }

    pub async fn epoch(&mut self) -> u64 {
        self.slot().await / self.params.epoch_slots
    }

    /// Moves the chain to `slot` (a new bank, so a new blockhash).
    pub async fn warp_to_slot(&mut self, slot: u64) {
        self.ctx.warp_to_slot(slot).expect("warp forward");
        self.ctx.last_blockhash = self
            .ctx
            .banks_client
            .get_latest_blockhash()
            .await
            .expect("blockhash");
    }

    /// Moves the chain to `offset` slots into `epoch`.
    pub async fn warp_to_epoch(&mut self, epoch: u64, offset: u64) {
        self.warp_to_slot(epoch * self.params.epoch_slots + offset)
            .await;
    }

    /// Advances one slot: a fresh blockhash, so the same instruction can be resent.
    pub async fn next_slot(&mut self) {
        let slot = self.slot().await;
        self.warp_to_slot(slot + 1).await;
    }

    pub async fn airdrop(&mut self, to: &Pubkey, lamports: u64) {
        let ix =
            solana_system_interface::instruction::transfer(&self.ctx.payer.pubkey(), to, lamports);
        self.send(&[ix], &[]).await.expect("airdrop");
    }

    pub async fn lamports(&mut self, key: &Pubkey) -> u64 {
        self.ctx
            .banks_client
            .get_balance(*key)
            .await
            .expect("balance")
    }

    pub async fn account_exists(&mut self, key: &Pubkey) -> bool {
        self.ctx
            .banks_client
            .get_account(*key)
            .await
            .expect("get_account")
            .is_some()
    }

    /// Fetches and decodes an Anchor account.
    pub async fn fetch<T: AccountDeserialize>(&mut self, key: &Pubkey) -> T {
        let account = self
            .ctx
            .banks_client
            .get_account(*key)
            .await
            .expect("get_account")
            .unwrap_or_else(|| panic!("account {key} does not exist"));
        T::try_deserialize(&mut account.data.as_slice()).expect("decode account")
    }

    pub async fn market(&mut self) -> Market {
        self.fetch(&market_pda()).await
    }

    pub async fn provider(&mut self, p: &TestProvider) -> Provider {
        self.fetch(&p.pda).await
    }

    pub async fn deal(&mut self, deal: &Pubkey) -> Deal {
        self.fetch(deal).await
    }

    /// Entries of the SlotHashes sysvar account, newest first.
    pub async fn slot_hashes(&mut self) -> Vec<(u64, [u8; 32])> {
        let data = self
            .ctx
            .banks_client
            .get_account(slot_hashes_id())
            .await
            .expect("get_account")
            .expect("SlotHashes exists")
            .data;
        let len = u64::from_le_bytes(data[..8].try_into().unwrap()) as usize;
        (0..len)
            .map(|i| {
                let at = 8 + i * 40;
                let slot = u64::from_le_bytes(data[at..at + 8].try_into().unwrap());
                let hash: [u8; 32] = data[at + 8..at + 40].try_into().unwrap();
                (slot, hash)
            })
            .collect()
    }

    pub async fn challenge(&mut self, epoch: u64) -> Challenge {
        self.fetch(&challenge_pda(epoch)).await
    }

    // ---------------------------------------------------------------- tokens

    async fn create_mint(&mut self) -> Pubkey {
        let mint = Keypair::new();
        let rent = self.ctx.banks_client.get_rent().await.expect("rent");
        let ixs = token::create_mint_ixs(
            &self.token_kind.program_id(),
            &self.ctx.payer.pubkey(),
            &mint.pubkey(),
            &self.mint_authority.pubkey(),
            self.decimals,
            rent.minimum_balance(token::MINT_LEN),
        )
        .expect("token program");
        self.send(&ixs, &[&mint]).await.expect("create mint");
        mint.pubkey()
    }

    /// Creates a token account of `mint` owned by `owner` holding `amount`.
    pub async fn token_account_of(&mut self, mint: Pubkey, owner: &Pubkey, amount: u64) -> Pubkey {
        let account = Keypair::new();
        let program = self.token_kind.program_id();
        let rent = self.ctx.banks_client.get_rent().await.expect("rent");
        let mut ixs = token::create_token_account_ixs(
            &program,
            &self.ctx.payer.pubkey(),
            &account.pubkey(),
            &mint,
            owner,
            rent.minimum_balance(token::TOKEN_ACCOUNT_LEN),
        )
        .expect("token program")
        .to_vec();
        let mint_authority = self.mint_authority.insecure_clone();
        let mut signers = vec![&account];
        if amount > 0 {
            ixs.push(
                token::mint_to_ix(
                    &program,
                    &mint,
                    &account.pubkey(),
                    &mint_authority.pubkey(),
                    amount,
                )
                .expect("token program"),
            );
            signers.push(&mint_authority);
        }
        self.send(&ixs, &signers)
            .await
            .expect("create token account");
        account.pubkey()
    }

    /// A token account of the market's mint owned by `owner` holding `amount`.
    pub async fn token_account(&mut self, owner: &Pubkey, amount: u64) -> Pubkey {
        self.token_account_of(self.mint, owner, amount).await
    }

    /// Token balance of a token account (same layout in both token programs).
    pub async fn token_balance(&mut self, account: &Pubkey) -> u64 {
        let data = self
            .ctx
            .banks_client
            .get_account(*account)
            .await
            .expect("get_account")
            .expect("token account exists")
            .data;
        token::token_account_amount(&data).expect("token account data")
    }

    pub async fn vault_balance(&mut self) -> u64 {
        self.token_balance(&vault_pda()).await
    }

    // ---------------------------------------------------------------- actors

    /// Registers a provider with `stake` deposited; its token account keeps
    /// `wallet` tokens after the deposit.
    pub async fn add_provider_with(
        &mut self,
        capacity_bytes: u64,
        price_per_mib_epoch: u64,
        stake: u64,
        wallet: u64,
    ) -> TestProvider {
        let authority = Keypair::new();
        let operator = Keypair::new();
        self.airdrop(&authority.pubkey(), 1_000_000_000).await;
        self.airdrop(&operator.pubkey(), 1_000_000_000).await;
        let token = self
            .token_account(&authority.pubkey(), stake + wallet)
            .await;
        let provider = TestProvider {
            pda: provider_pda(&authority.pubkey()),
            authority,
            operator,
            token,
        };
        let ix = self.register_provider_ix(
            &provider.authority.pubkey(),
            RegisterProviderArgs {
                operator: provider.operator.pubkey(),
                endpoint: "127.0.0.1:7000".into(),
                capacity_bytes,
                price_per_mib_epoch,
            },
        );
        self.send(&[ix], &[&provider.authority])
            .await
            .expect("register_provider");
        if stake > 0 {
            let ix = self.deposit_stake_ix(&provider.authority.pubkey(), &provider.token, stake);
            self.send(&[ix], &[&provider.authority])
                .await
                .expect("deposit_stake");
        }
        provider
    }

    /// A provider with 1 GiB of capacity, price 100 per MiB-epoch, 1,000,000 staked.
    pub async fn add_provider(&mut self) -> TestProvider {
        self.add_provider_with(1 << 30, 100, 1_000_000, 0).await
    }

    pub async fn client(&mut self, tokens: u64) -> TestClient {
        let keypair = Keypair::new();
        self.airdrop(&keypair.pubkey(), 1_000_000_000).await;
        let token = self.token_account(&keypair.pubkey(), tokens).await;
        TestClient { keypair, token }
    }

    /// Proposes a deal for `shard` and returns its address.
    pub async fn propose(
        &mut self,
        client: &TestClient,
        provider: &TestProvider,
        shard: &TestShard,
        dataset_id: [u8; 32],
        shard_index: u16,
        duration_epochs: u64,
    ) -> Pubkey {
        let args = self.deal_args(shard, dataset_id, shard_index, duration_epochs);
        let ix = self.propose_deal_ix(&client.keypair.pubkey(), &provider.pda, &client.token, args);
        self.send(&[ix], &[&client.keypair])
            .await
            .expect("propose_deal");
        deal_pda(&client.keypair.pubkey(), &dataset_id, shard_index)
    }

    pub fn deal_args(
        &self,
        shard: &TestShard,
        dataset_id: [u8; 32],
        shard_index: u16,
        duration_epochs: u64,
    ) -> ProposeDealArgs {
        ProposeDealArgs {
            dataset_id,
            shard_index,
            k: 4,
            n: 6,
            shard_root: shard.root(),
            shard_bytes: shard.data.len() as u64,
            duration_epochs,
            max_price_per_epoch: u64::MAX,
        }
    }

    pub async fn accept(&mut self, provider: &TestProvider, deal: &Pubkey) {
        let ix = self.accept_deal_ix(&provider.operator.pubkey(), &provider.pda, deal);
        self.send(&[ix], &[&provider.operator])
            .await
            .expect("accept_deal");
    }

    /// Opens `epoch`, paid and signed by the context payer.
    pub async fn open_epoch(&mut self, epoch: u64) -> Result<(), BanksClientError> {
        let ix = self.open_epoch_ix(&self.ctx.payer.pubkey(), epoch);
        self.send(&[ix], &[]).await
    }

    /// Submits the honest proof of `shard` for `deal` in `epoch`, signed by the operator.
    pub async fn prove(
        &mut self,
        provider: &TestProvider,
        deal: &Pubkey,
        shard: &TestShard,
        epoch: u64,
    ) -> Result<(), BanksClientError> {
        let challenge = self.challenge(epoch).await;
        let samples = shard.proof(deal, &challenge);
        let ix = self.submit_proof_ix(
            &provider.operator.pubkey(),
            &provider.pda,
            deal,
            epoch,
            samples,
        );
        self.send_paid_by(&[ix], &provider.operator.insecure_clone(), &[])
            .await
    }

    // ---------------------------------------------------------------- accounting

    /// Sum of every balance the program records: provider stake (free and
    /// locked) and earnings, deal escrow and client refunds. The vault must
    /// hold exactly this.
    pub async fn recorded_total(&mut self, providers: &[&Pubkey], deals: &[&Pubkey]) -> u64 {
        let mut total = 0u64;
        for key in providers {
            if self.account_exists(key).await {
                let p: Provider = self.fetch(key).await;
                total += p.balance().expect("provider balance");
            }
        }
        for key in deals {
            if self.account_exists(key).await {
                let d: Deal = self.fetch(key).await;
                total += d.balance().expect("deal balance");
            }
        }
        total
    }

    /// Asserts that the vault holds exactly what the accounts record.
    pub async fn assert_conserved(&mut self, providers: &[&Pubkey], deals: &[&Pubkey], step: &str) {
        let recorded = self.recorded_total(providers, deals).await;
        let vault = self.vault_balance().await;
        let slot = self.slot().await;
        println!(
            "slot {slot:>5} (epoch {:>2})  {step:<16} vault {vault:>9}  recorded balances {recorded:>9}",
            slot / self.params.epoch_slots
        );
        assert_eq!(vault, recorded, "vault != recorded balances after {step}");
    }
}
