//! `TestMarket`: a market on a fresh chain, with helpers to drive it.
use std::collections::HashMap;

use anchor_lang::{error::ERROR_CODE_OFFSET, AccountDeserialize};
use anchor_spl::{token::spl_token, token_2022::spl_token_2022};
use cairn_proof::Tree;
use solana_keypair::Keypair;
use solana_message::{AddressLookupTableAccount, VersionedMessage};
use solana_program_test::{BanksClientError, ProgramTestContext};
use solana_signer::Signer;
use solana_transaction::{versioned::VersionedTransaction, Transaction};
use storage_market::{
    constants::{log_page, LOG_PAGE_EPOCHS},
    errors::MarketError,
    instructions::{ProofSample, ProposeDealArgs, RegisterProviderArgs},
    state::{Challenge, Deal, DealSet, Market, MarketParams, Provider},
};

pub use cairn_chain::*;

/// Parameters used by most tests: 100-slot epochs proven until their end, 4 samples
/// per provider, 10% of a deal's collateral to the client per failed epoch, jail
/// after 3 failed epochs in 10, 2 epochs to accept.
pub fn test_params() -> MarketParams {
    MarketParams {
        epoch_slots: 100,
        collateral_per_mib: 5_000,
        slash_bps: 1_000,
        accept_timeout_epochs: 2,
        response_slots: 100,
        max_shard_bytes: cairn_proof::MAX_SHARD_BYTES,
        samples_per_epoch: 4,
        jail_failures: 3,
        jail_window: 10,
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
    /// Each provider's address lookup table and what it holds.
    pub tables: HashMap<Pubkey, AddressLookupTableAccount>,
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
            tables: HashMap::new(),
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
        let log = market.open_epoch_log_ix(&authority.pubkey(), 0);
        market
            .send(&[ix, log], &[&authority])
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

    pub async fn challenge(&mut self) -> Challenge {
        self.fetch(&challenge_pda()).await
    }

    pub async fn deal_set(&mut self, provider: &Pubkey) -> DealSet {
        self.fetch(&deal_set_pda(provider)).await
    }

    /// The bits of a log page (`EpochLog` or `ProofLog`), all zero if absent.
    async fn log_bits(&mut self, key: &Pubkey, offset: usize) -> Vec<u8> {
        match self
            .ctx
            .banks_client
            .get_account(*key)
            .await
            .expect("get_account")
        {
            Some(account) => account.data[offset..offset + (LOG_PAGE_EPOCHS / 8) as usize].to_vec(),
            None => vec![0; (LOG_PAGE_EPOCHS / 8) as usize],
        }
    }

    /// Whether `epoch` was opened in time.
    pub async fn opened(&mut self, epoch: u64) -> bool {
        let bits = self
            .log_bits(
                &epoch_log_pda(log_page(epoch)),
                storage_market::state::EpochLog::BITS_OFFSET,
            )
            .await;
        let at = epoch % LOG_PAGE_EPOCHS;
        bits[(at / 8) as usize] & (1 << (at % 8)) != 0
    }

    /// Whether `provider` proved `epoch`.
    pub async fn proven(&mut self, provider: &Pubkey, epoch: u64) -> bool {
        let bits = self
            .log_bits(
                &proof_log_pda(provider, log_page(epoch)),
                storage_market::state::ProofLog::BITS_OFFSET,
            )
            .await;
        let at = epoch % LOG_PAGE_EPOCHS;
        bits[(at / 8) as usize] & (1 << (at % 8)) != 0
    }

    /// The entries of `provider`'s deal set visible at `epoch`.
    pub async fn set_entries(
        &mut self,
        provider: &Pubkey,
        epoch: u64,
    ) -> Vec<storage_market::state::SetEntry> {
        let set = self.deal_set(provider).await;
        let mut pages = Vec::new();
        for page in 0..set.pages {
            let data = self
                .ctx
                .banks_client
                .get_account(deal_set_page_pda(provider, page))
                .await
                .expect("get_account")
                .expect("deal-set page exists")
                .data;
            pages.push(proving::decode_deal_set_page(&data).expect("deal-set page"));
        }
        proving::entries_at(set.len_at(epoch), &pages, epoch).expect("entries")
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
        let operator = provider.operator.insecure_clone();
        let ixs = [
            self.extend_deal_set_ix(&operator.pubkey(), &provider.pda, 0),
            self.open_proof_log_ix(&operator.pubkey(), &provider.pda, 0),
        ];
        self.send_paid_by(&ixs, &operator, &[])
            .await
            .expect("deal-set page and proof log");
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
        let args = self.deal_args(
            &client.keypair.pubkey(),
            shard,
            dataset_id,
            shard_index,
            duration_epochs,
        );
        let ix = self.propose_deal_ix(&client.keypair.pubkey(), &provider.pda, &client.token, args);
        self.send(&[ix], &[&client.keypair])
            .await
            .expect("propose_deal");
        deal_pda(&client.keypair.pubkey(), &dataset_id, shard_index, 0)
    }

    /// Proposal arguments; `dataset_id` is the dataset's nonce and the group id
    /// (so the deal's address is `deal_pda(client, dataset_id, …)`).
    pub fn deal_args(
        &self,
        client: &Pubkey,
        shard: &TestShard,
        dataset_id: [u8; 32],
        shard_index: u16,
        duration_epochs: u64,
    ) -> ProposeDealArgs {
        ProposeDealArgs {
            dataset_id: cairn_chain::dataset_id(client, &dataset_id),
            dataset_nonce: dataset_id,
            group_id: dataset_id,
            group: 0,
            shard_index,
            generation: 0,
            k: 4,
            n: 6,
            shard_root: shard.root(),
            shard_bytes: shard.data.len() as u64,
            duration_epochs,
            max_price_per_epoch: u64::MAX,
        }
    }

    /// The operator accepts `deal`, extending its deal set first if it is full.
    pub async fn accept(&mut self, provider: &TestProvider, deal: &Pubkey) {
        self.try_accept(provider, deal).await.expect("accept_deal");
    }

    pub async fn try_accept(
        &mut self,
        provider: &TestProvider,
        deal: &Pubkey,
    ) -> Result<(), BanksClientError> {
        let set = self.deal_set(&provider.pda).await;
        let operator = provider.operator.insecure_clone();
        let mut ixs = Vec::new();
        if set.len as usize >= set.pages as usize * storage_market::constants::DEAL_SET_PAGE_ENTRIES
        {
            ixs.push(self.extend_deal_set_ix(&operator.pubkey(), &provider.pda, set.pages));
        }
        ixs.push(self.accept_deal_ix(&operator.pubkey(), &provider.pda, deal, set.len));
        self.send_paid_by(&ixs, &operator, &[]).await
    }

    /// Moves the chain to the first slot `epoch` can be opened in (the slot after its
    /// seed slot), through the seed slot itself so that it has a SlotHashes entry.
    pub async fn warp_to_open(&mut self, epoch: u64) {
        let seed_slot = epoch * self.params.epoch_slots + 1;
        if self.slot().await < seed_slot {
            self.warp_to_slot(seed_slot).await;
        }
        self.next_slot().await;
    }

    /// Opens `epoch`, paid and signed by the context payer.
    pub async fn open_epoch(&mut self, epoch: u64) -> Result<(), BanksClientError> {
        let ix = self.open_epoch_ix(&self.ctx.payer.pubkey(), epoch);
        self.send(&[ix], &[]).await
    }

    /// Moves to `epoch`'s opening slot and opens it.
    pub async fn open(&mut self, epoch: u64) {
        self.warp_to_open(epoch).await;
        self.open_epoch(epoch).await.expect("open_epoch");
    }

    /// The provider's lookup table, created on first use with everything its proof
    /// transactions of `epoch` read.
    pub async fn lookup_table(
        &mut self,
        provider: &TestProvider,
        epoch: u64,
    ) -> AddressLookupTableAccount {
        let pages = self.deal_set(&provider.pda).await.pages;
        let wanted = proving::lookup_table_addresses(&provider.pda, epoch, pages);
        let operator = provider.operator.insecure_clone();
        let missing: Vec<Pubkey> = match self.tables.get(&provider.pda) {
            Some(table) => wanted
                .iter()
                .filter(|a| !table.addresses.contains(a))
                .copied()
                .collect(),
            None => {
                let slot = self.slot().await;
                // A lookup table is derived from a slot the bank already knows.
                self.next_slot().await;
                let (key, ixs) = proving::create_lookup_table_ixs(&operator.pubkey(), slot, &[]);
                self.send_paid_by(&ixs, &operator, &[])
                    .await
                    .expect("create lookup table");
                self.tables.insert(
                    provider.pda,
                    AddressLookupTableAccount {
                        key,
                        addresses: Vec::new(),
                    },
                );
                wanted.clone()
            }
        };
        if !missing.is_empty() {
            let key = self.tables[&provider.pda].key;
            for ix in proving::extend_lookup_table_ixs(&key, &operator.pubkey(), &missing) {
                self.send_paid_by(&[ix], &operator, &[])
                    .await
                    .expect("extend lookup table");
            }
            self.tables
                .get_mut(&provider.pda)
                .expect("table")
                .addresses
                .extend(missing);
            // Addresses are usable from the slot after they were added.
            self.next_slot().await;
        }
        self.tables[&provider.pda].clone()
    }

    /// Sends `ixs` (the last one a `prove`) as the operator's v0 transaction through
    /// its lookup table, with a priority fee, and returns its serialized size.
    pub async fn send_proof(
        &mut self,
        provider: &TestProvider,
        epoch: u64,
        prove: Instruction,
    ) -> (usize, Result<(), BanksClientError>) {
        let table = self.lookup_table(provider, epoch).await;
        let operator = provider.operator.insecure_clone();
        let message = proving::proof_message(
            &operator.pubkey(),
            prove,
            1_000,
            &table,
            self.ctx.last_blockhash,
        )
        .expect("compile proof message");
        let tx = VersionedTransaction::try_new(VersionedMessage::V0(message), &[&operator])
            .expect("sign proof");
        let len = bincode::serialize(&tx).expect("serialize").len();
        (len, self.ctx.banks_client.process_transaction(tx).await)
    }

    /// The samples answering `draws` of a plan, from the shards (found by root).
    pub fn samples_for(
        draws: &[&proving::PlannedDraw],
        entries: &[storage_market::state::SetEntry],
        shards: &[&TestShard],
    ) -> Vec<ProofSample> {
        draws
            .iter()
            .map(|d| {
                let root = entries[d.entry as usize].shard_root;
                let shard = shards
                    .iter()
                    .find(|s| s.root() == root)
                    .expect("a shard for every drawn entry");
                shard.sample_at(d.segment)
            })
            .collect()
    }

    /// Every draw of `provider`'s session of the open epoch `epoch`, with the deal-set
    /// entries visible at `epoch`.
    pub async fn plan_session(
        &mut self,
        provider: &TestProvider,
        epoch: u64,
    ) -> (
        Vec<proving::PlannedDraw>,
        Vec<storage_market::state::SetEntry>,
    ) {
        let challenge = self.challenge().await;
        assert_eq!(challenge.epoch, epoch, "epoch {epoch} is not the open one");
        let entries = self.set_entries(&provider.pda, epoch).await;
        let plan = proving::plan_session(
            &challenge.seed,
            &provider.pda,
            epoch,
            challenge.samples_per_epoch,
            &entries,
        );
        (plan, entries)
    }

    /// The provider's honest proof session of `epoch` (opened already): every planned
    /// transaction, in order. Returns how many transactions it took.
    pub async fn prove_session(
        &mut self,
        provider: &TestProvider,
        epoch: u64,
        shards: &[&TestShard],
    ) -> Result<usize, BanksClientError> {
        let (plan, entries) = self.plan_session(provider, epoch).await;
        let mut txs = proving::pack_session(&plan);
        if txs.is_empty() {
            // An empty set: one transaction with no sample completes the session.
            txs.push(proving::ProofTx {
                draws: 0..0,
                live: Vec::new(),
                pages: Vec::new(),
            });
        }
        let count = txs.len();
        for tx in txs {
            let live: Vec<&proving::PlannedDraw> = tx.live.iter().map(|i| &plan[*i]).collect();
            let samples = Self::samples_for(&live, &entries, shards);
            let ix = self.prove_ix(
                &provider.operator.pubkey(),
                &provider.pda,
                epoch,
                samples,
                &tx.pages,
            );
            let (_, result) = self.send_proof(provider, epoch, ix).await;
            result?;
        }
        Ok(count)
    }

    /// Settles `deals` of `provider` on every log page they may need, up to now.
    pub async fn settle(&mut self, provider: &Pubkey, deals: &[Pubkey]) {
        let now = self.epoch().await;
        for page in 0..=log_page(now) {
            let ix = self.settle_ix(provider, page, deals);
            self.send(&[ix], &[]).await.expect("settle");
            self.next_slot().await;
        }
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
