//! The local network end to end, reached only through its JSON-RPC and
//! websocket endpoints with `solana-rpc-client` and `solana-pubsub-client`, the
//! way every other part of Cairn (and any Solana tool) reaches a cluster.
use anchor_lang::{AccountDeserialize, Discriminator};
use anchor_lang_idl::types::{
    Idl, IdlArrayLen, IdlDefinedFields, IdlGenericArg, IdlType, IdlTypeDefTy,
};
use cairn_chain::{
    challenge_pda, deal_pda, deal_set_page_pda, deal_set_pda, epoch_log_pda, events::MarketEvent,
    layout, proof_log_pda, provider_pda, proving, Pubkey,
};
use cairn_localnet::{Localnet, LocalnetConfig, LocalnetInfo, INFO_FILE};
use cairn_tests::rpc::{one_validator_at_a_time, poll, TestChain, SOL};
use cairn_tests::TestShard;
use futures_util::StreamExt;
use serde_json::{json, Value};
use solana_account_decoder_client_types::UiAccountEncoding;
use solana_commitment_config::CommitmentConfig;
use solana_keypair::Keypair;
use solana_message::AddressLookupTableAccount;
use solana_pubsub_client::nonblocking::pubsub_client::PubsubClient;
use solana_rpc_client::rpc_client::GetConfirmedSignaturesForAddress2Config;
use solana_rpc_client_api::{
    client_error::Error as ClientError,
    config::{
        RpcAccountInfoConfig, RpcProgramAccountsConfig, RpcTransactionConfig,
        RpcTransactionLogsConfig, RpcTransactionLogsFilter,
    },
    filter::{Memcmp, RpcFilterType},
};
use solana_signer::Signer;
use solana_transaction::{versioned::VersionedTransaction, VersionedMessage};
use solana_transaction_status_client_types::{
    EncodedConfirmedTransactionWithStatusMeta, UiTransactionEncoding,
};
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};
use storage_market::{
    constants::{log_page, LOG_PAGE_BYTES, SEED_SLOT_OFFSET},
    errors::MarketError,
    instructions::{ProofSample, ProposeDealArgs, RegisterProviderArgs},
    state::{
        get_bit, Challenge, Deal, DealSet, DealSetPage, DealState, EpochLog, Market, ProofLog,
        Provider,
    },
};

/// 300 ms slots (the shortest agave 4.2.2's leader sustains here, see
/// `cairn_localnet::defaults::SLOT_MS`) and 20-slot (6 s) epochs: room for a loaded machine.
const SLOT_MS: u64 = 300;
const EPOCH_SLOTS: u64 = 20;

fn config(ledger: Option<PathBuf>) -> LocalnetConfig {
    LocalnetConfig {
        ledger,
        slot_ms: Some(SLOT_MS),
        epoch_slots: Some(EPOCH_SLOTS),
        ..LocalnetConfig::default()
    }
}

/// A client of one local network, connected with nothing but `localnet.json`
/// and the faucet keypair file, as another binary would.
struct Client {
    chain: TestChain,
    info: LocalnetInfo,
}

impl std::ops::Deref for Client {
    type Target = TestChain;
    fn deref(&self) -> &TestChain {
        &self.chain
    }
}

impl Client {
    fn connect(ledger: &Path) -> Client {
        let info = LocalnetInfo::read(ledger).expect("localnet.json");
        Client {
            chain: TestChain::connect(&info.rpc_url, &info.faucet_keypair, info.market_ix()),
            info,
        }
    }

    /// Waits until the chain is at least at `slot`.
    fn wait_for_slot(&self, slot: u64) {
        self.chain.wait_for_slot(slot, SLOT_MS);
    }

    /// `getTransaction` with the inner instructions; polls, because a
    /// transaction can be confirmed a moment before it is in history.
    fn transaction(&self, signature: &str) -> EncodedConfirmedTransactionWithStatusMeta {
        let signature = signature.parse().expect("signature");
        let config = RpcTransactionConfig {
            encoding: Some(UiTransactionEncoding::Json),
            commitment: Some(CommitmentConfig::confirmed()),
            max_supported_transaction_version: Some(0),
        };
        // Generous: on a loaded 2-core machine the confirmed block can take
        // many seconds to reach the history store.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let last = match self.rpc.get_transaction_with_config(&signature, config) {
                Ok(tx) => return tx,
                Err(e) => e,
            };
            assert!(
                Instant::now() < deadline,
                "getTransaction {signature}: {last}; status {:?}",
                self.rpc.get_signature_statuses_with_history(&[signature])
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Opens `epoch` (the faucet pays) as soon as its seed slot, the slot after
    /// the epoch's first, has a SlotHashes entry: until then `open_epoch` is
    /// refused with `SeedSlotNotReached` (preflight runs on the confirmed bank,
    /// which can be a slot or two behind).
    fn open_epoch(&self, epoch: u64) -> String {
        self.wait_for_slot(epoch * EPOCH_SLOTS + SEED_SLOT_OFFSET + 1);
        poll(
            &format!("epoch {epoch} opened"),
            Duration::from_secs(60),
            || match self.try_send(&[self.ix.open_epoch_ix(&self.faucet.pubkey(), epoch)], &[]) {
                Ok(signature) => Some(signature),
                Err(e) if matches!(market_error(&e), Some(MarketError::SeedSlotNotReached)) => None,
                Err(e) => panic!("open_epoch {epoch}: {e}"),
            },
        )
    }

    fn events(&self, signature: &str) -> Vec<MarketEvent> {
        cairn_chain::events::events_in_transaction(&self.transaction(signature).transaction)
            .expect("events decode")
    }

    /// Accounts of the program matching every `memcmp` (offset, bytes).
    fn program_accounts(&self, filters: &[(usize, &[u8])]) -> Vec<(Pubkey, Vec<u8>)> {
        let config = RpcProgramAccountsConfig {
            filters: Some(
                filters
                    .iter()
                    .map(|(offset, bytes)| {
                        RpcFilterType::Memcmp(Memcmp::new_raw_bytes(*offset, bytes.to_vec()))
                    })
                    .collect(),
            ),
            account_config: RpcAccountInfoConfig {
                encoding: Some(UiAccountEncoding::Base64),
                commitment: Some(CommitmentConfig::confirmed()),
                ..RpcAccountInfoConfig::default()
            },
            ..RpcProgramAccountsConfig::default()
        };
        self.rpc
            .get_program_ui_accounts_with_config(&self.info.program_id, config)
            .expect("getProgramAccounts")
            .into_iter()
            .map(|(key, account)| (key, account.data.decode().expect("base64 data")))
            .collect()
    }
}

/// The program error code of a failed transaction, if any.
fn custom_code(err: &ClientError) -> Option<u32> {
    use anchor_lang::solana_program::instruction::error::InstructionError;
    use solana_transaction_error::TransactionError;
    match err.get_transaction_error() {
        Some(TransactionError::InstructionError(_, InstructionError::Custom(code))) => Some(code),
        _ => None,
    }
}

/// The market error a transaction failed with, named by its code.
fn market_error(err: &ClientError) -> Option<MarketError> {
    custom_code(err).and_then(MarketError::from_code)
}

/// `epoch`'s bit in the data of a log page account of type `T` (an `EpochLog` or
/// a `ProofLog`) whose bits start at `bits_offset`.
fn log_bit<T: Discriminator>(data: &[u8], bits_offset: usize, epoch: u64) -> bool {
    assert_eq!(&data[..8], T::DISCRIMINATOR, "a log page");
    let bits: &[u8; LOG_PAGE_BYTES] = data[bits_offset..bits_offset + LOG_PAGE_BYTES]
        .try_into()
        .expect("a whole page of bits");
    get_bit(bits, u64::from(log_page(epoch)), epoch).expect("the epoch is on this page")
}

// ------------------------------------------------------------------- tests

#[test]
fn the_first_transaction_after_start_succeeds_every_time() {
    let _serial = one_validator_at_a_time();
    for round in 0..3 {
        let localnet = Localnet::start(config(None)).expect("localnet starts");
        // `start` already ran the program (init_market); send the next program
        // transaction at once, with no wait of any kind.
        let client = Client::connect(&localnet.info().ledger);
        let authority = Keypair::new();
        let fund = solana_system_interface::instruction::transfer(
            &client.faucet.pubkey(),
            &authority.pubkey(),
            SOL,
        );
        let register = client.ix.register_provider_ix(
            &authority.pubkey(),
            RegisterProviderArgs {
                operator: Keypair::new().pubkey(),
                endpoint: "127.0.0.1:7000".into(),
                capacity_bytes: 1 << 30,
                price_per_mib_epoch: 100,
            },
        );
        client
            .try_send(&[fund, register], &[&authority])
            .unwrap_or_else(|e| panic!("round {round}: first transaction failed: {e}"));
        assert_eq!(
            client
                .fetch::<Provider>(&provider_pda(&authority.pubkey()))
                .authority,
            authority.pubkey()
        );
        assert_eq!(
            localnet.banks_without_program(),
            Vec::<u64>::new(),
            "round {round}"
        );
        let registration = localnet.registration();
        eprintln!(
            "round {round}: ready in {:.2} s; program added to banks {:?}, inherited from slot {}",
            localnet.started_in().as_secs_f64(),
            registration.registered,
            registration.inherited_at
        );
    }
}

#[test]
fn a_full_deal_over_rpc_with_events_history_filters_idl_and_websockets() {
    let _serial = one_validator_at_a_time();
    // Built under the lock: a cargo build beside a running validator starves it.
    let idl = cairn_tests::idl::build_idl();
    let localnet = Localnet::start(config(None)).expect("localnet starts");
    let c = Client::connect(&localnet.info().ledger);
    let params = c.fetch::<Market>(&c.info.market).params;
    assert_eq!(params.epoch_slots, EPOCH_SLOTS);
    let epoch_of = |slot: u64| slot / EPOCH_SLOTS;

    // Websocket (the async client: its subscriptions run on their own task
    // while this test sends transactions): slots arrive, in order.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let ws = rt
        .block_on(PubsubClient::new(c.info.websocket_url.as_str()))
        .expect("websocket connects");
    rt.block_on(async {
        let (mut slots, unsubscribe) = ws.slot_subscribe().await.expect("slotSubscribe");
        let mut seen = Vec::new();
        while seen.len() < 3 {
            let info = tokio::time::timeout(Duration::from_secs(60), slots.next())
                .await
                .expect("a slot notification within 60 s")
                .expect("subscription open");
            seen.push(info.slot);
        }
        assert!(
            seen.windows(2).all(|w| w[0] < w[1]),
            "slots out of order: {seen:?}"
        );
        drop(slots);
        unsubscribe().await;
    });
    let (mut logs, logs_unsubscribe) = rt
        .block_on(ws.logs_subscribe(
            RpcTransactionLogsFilter::Mentions(vec![c.info.program_id.to_string()]),
            RpcTransactionLogsConfig {
                commitment: Some(CommitmentConfig::confirmed()),
            },
        ))
        .expect("logsSubscribe");

    // A provider (cold authority, hot operator) and a client, funded through
    // requestAirdrop.
    let authority = Keypair::new();
    let operator = Keypair::new();
    let client = Keypair::new();
    for who in [&authority, &operator, &client] {
        c.airdrop(&who.pubkey(), 10 * SOL);
    }
    let stake = 1_000_000;
    let authority_token = c.token_account(&authority.pubkey(), stake);
    let client_token = c.token_account(&client.pubkey(), 10_000_000);
    let provider = provider_pda(&authority.pubkey());
    // After every step the vault holds exactly what the accounts say it owes:
    // this chain has one provider and one deal.
    let conserved = |deal: Option<&Pubkey>, step: &str| {
        let p: Provider = c.fetch(&provider);
        let owed_by_deal = deal.map_or(0, |deal| {
            let d: Deal = c.fetch(deal);
            d.escrow + d.client_refund
        });
        assert_eq!(
            c.token_balance(&c.info.vault),
            p.stake_free + p.stake_locked + p.earnings + owed_by_deal,
            "vault conservation after {step}"
        );
    };

    // register_provider also creates the provider's (empty) deal set.
    let register = c.ix.register_provider_ix(
        &authority.pubkey(),
        RegisterProviderArgs {
            operator: operator.pubkey(),
            endpoint: "127.0.0.1:7000".into(),
            capacity_bytes: 1 << 30,
            price_per_mib_epoch: 100,
        },
    );
    let deposit =
        c.ix.deposit_stake_ix(&authority.pubkey(), &authority_token, stake);
    let sig_register = c
        .try_send(&[register, deposit], &[&authority])
        .expect("register + stake");
    conserved(None, "register");
    // The operator pays for the set's first page (64 entries) and for the page
    // of its proven-epoch bits that the coming epochs fall in.
    let first_epoch = epoch_of(c.slot()) + 1;
    let log = log_page(first_epoch);
    c.try_send(
        &[
            c.ix.extend_deal_set_ix(&operator.pubkey(), &provider, 0),
            c.ix.open_proof_log_ix(&operator.pubkey(), &provider, log),
        ],
        &[&operator],
    )
    .expect("deal-set page and proof log");

    // The operator's address lookup table holds every account of its proof
    // transactions but itself and the programs. Made ahead (no address depends
    // on a seed or on the deals, only on the pages) from a slot SlotHashes still
    // holds. The runtime reads its addresses from the slot after the one that
    // filled it, but a leader's banking stage resolves lookup tables in its
    // *root* bank and drops a transaction whose table is not there yet (the RPC
    // resends it every few seconds, so it lands about 30 slots late, after the
    // proof window): wait until that slot is rooted (finalized, on one validator).
    let pages = c.fetch::<DealSet>(&deal_set_pda(&provider)).pages;
    let addresses = proving::lookup_table_addresses(&provider, first_epoch, pages);
    let recent_slot = c
        .rpc
        .get_slot_with_commitment(CommitmentConfig::finalized())
        .expect("getSlot");
    let (table, create_table) =
        proving::create_lookup_table_ixs(&operator.pubkey(), recent_slot, &addresses);
    let sig_table = c
        .try_send(&create_table, &[&operator])
        .expect("lookup table");
    let filled_in = c.transaction(&sig_table).slot;
    poll(
        "the lookup table in the root bank",
        Duration::from_secs(120),
        || {
            c.rpc
                .get_slot_with_commitment(CommitmentConfig::finalized())
                .ok()
                .filter(|root| *root > filled_in)
        },
    );
    let table_data = c
        .rpc
        .get_account_data(&table)
        .expect("lookup table account");
    assert_eq!(
        proving::lookup_table_contents(&table_data).as_ref(),
        Some(&addresses)
    );
    let table = AddressLookupTableAccount {
        key: table,
        addresses,
    };

    // Propose a 3-epoch deal for a 300 kB shard; the provider accepts.
    let shard = TestShard::random(300_000, 7);
    let dataset_id = [9u8; 32];
    let args = ProposeDealArgs {
        dataset_id: cairn_chain::dataset_id(&client.pubkey(), &dataset_id),
        dataset_nonce: dataset_id,
        group_id: dataset_id,
        group: 0,
        shard_index: 0,
        generation: 0,
        k: 4,
        n: 6,
        shard_root: shard.root(),
        shard_bytes: shard.data.len() as u64,
        duration_epochs: 3,
        max_price_per_epoch: u64::MAX,
    };
    let deal = deal_pda(&client.pubkey(), &dataset_id, 0, 0);
    let sig_propose = c
        .try_send(
            &[c.ix.propose_deal_ix(&client.pubkey(), &provider, &client_token, args)],
            &[&client],
        )
        .expect("propose");
    conserved(Some(&deal), "propose");
    let set_len = c.fetch::<DealSet>(&deal_set_pda(&provider)).len;
    assert_eq!(set_len, 0);
    let sig_accept = c
        .try_send(
            &[c.ix.accept_deal_ix(&operator.pubkey(), &provider, &deal, set_len)],
            &[&operator],
        )
        .expect("accept");
    conserved(Some(&deal), "accept");
    let accepted: Deal = c.fetch(&deal);
    assert_eq!(
        (accepted.state, accepted.in_set, accepted.set_index),
        (DealState::Active, true, 0)
    );
    let start = accepted.start_epoch;
    assert_eq!(accepted.end_epoch, start + 3);
    assert_eq!(
        log_page(start + 2),
        log,
        "the deal's epochs are on the log page opened"
    );
    let (price, collateral) = (accepted.price_per_epoch, accepted.collateral);
    assert_eq!((price, collateral), (100, params.collateral_per_mib));

    // Epoch `start`, the deal's first: open it once its seed slot has a hash,
    // plan the provider's session from the seed and its deal set as of `start`,
    // and prove it in v0 transactions that read the table.
    let sig_open = c.open_epoch(start);
    let challenge: Challenge = c.fetch(&challenge_pda());
    assert_eq!(
        (challenge.epoch, challenge.samples_per_epoch),
        (start, params.samples_per_epoch)
    );
    let set: DealSet = c.fetch(&deal_set_pda(&provider));
    let set_pages: Vec<DealSetPage> = (0..set.pages)
        .map(|page| {
            let data = c
                .rpc
                .get_account_data(&deal_set_page_pda(&provider, page))
                .expect("deal-set page");
            proving::decode_deal_set_page(&data).expect("a deal-set page")
        })
        .collect();
    let entries =
        proving::entries_at(set.len_at(start), &set_pages, start).expect("every entry's page");
    assert_eq!(entries.len(), 1);
    assert_eq!(
        (entries[0].shard_root, entries[0].end_epoch),
        (shard.root(), start + 3)
    );
    let plan = proving::plan_session(
        &challenge.seed,
        &provider,
        start,
        challenge.samples_per_epoch,
        &entries,
    );
    // One deal: one sample (min(samples_per_epoch, 1)), on it.
    assert_eq!(plan.len(), 1);
    assert!(plan[0].live);
    let session = proving::pack_session(&plan);
    assert_eq!(session.len(), 1, "one transaction proves the session");
    let proof_tx = |micro_lamports: u64| -> VersionedTransaction {
        let tx = &session[0];
        let samples = tx
            .live
            .iter()
            .map(|draw| {
                let (segment, path) = cairn_proof::path_of(&shard.data, plan[*draw].segment);
                ProofSample { segment, path }
            })
            .collect();
        let prove =
            c.ix.prove_ix(&operator.pubkey(), &provider, start, samples, &tx.pages);
        let blockhash = c.rpc.get_latest_blockhash().expect("blockhash");
        let message =
            proving::proof_message(&operator.pubkey(), prove, micro_lamports, &table, blockhash)
                .expect("proof message compiles");
        VersionedTransaction::try_new(VersionedMessage::V0(message), &[&operator])
            .expect("operator signs")
    };
    let prove = proof_tx(1_000);
    let sending_at = c.slot();
    let wire = bincode::serialize(&prove).expect("serializes").len();
    let depths: Vec<u32> = session[0].live.iter().map(|d| plan[*d].depth).collect();
    assert_eq!(wire, proving::proof_tx_len(&depths, session[0].pages.len()));
    assert!(
        wire <= proving::PACKET_BYTES,
        "proof transaction is {wire} bytes"
    );
    let sig_prove = c
        .rpc
        .send_and_confirm_transaction(&prove)
        .unwrap_or_else(|e| {
            let status = c
                .rpc
                .get_signature_statuses_with_history(&[prove.signatures[0]]);
            panic!(
                "proof sent in slot {sending_at} (now {}), deadline {}: {e}; {status:?}",
                c.slot(),
                challenge.deadline_slot
            )
        })
        .to_string();
    // A program error comes back as the program's code: the session again.
    let err = c
        .rpc
        .send_and_confirm_transaction(&proof_tx(2_000))
        .expect_err("a proven epoch is proven once");
    assert!(
        matches!(market_error(&err), Some(MarketError::EpochAlreadyProven)),
        "{err}"
    );
    let proved_at = c.transaction(&sig_prove).slot;
    eprintln!(
        "epoch {start}: seed slot {}, opened in slot {}, proof sent at slot {sending_at}, \
         landed in slot {proved_at}, deadline {}",
        challenge.seed_slot, challenge.opened_slot, challenge.deadline_slot
    );
    assert_eq!(epoch_of(proved_at), start, "proved inside its epoch");
    let proof_log = |epoch: u64| {
        let data = c
            .rpc
            .get_account_data(&proof_log_pda(&provider, log))
            .expect("proof log");
        log_bit::<ProofLog>(&data, ProofLog::BITS_OFFSET, epoch)
    };
    assert!(proof_log(start), "the provider's bit for {start}");
    assert_eq!(
        c.fetch::<DealSet>(&deal_set_pda(&provider)).epochs_proven,
        1
    );
    conserved(Some(&deal), "prove");

    // Epoch `start + 1` is opened and passes unproven (failed); nobody opens
    // `start + 2` (void: no node runs in this test).
    let sig_open_failed = c.open_epoch(start + 1);
    c.wait_for_slot((start + 3) * EPOCH_SLOTS);
    let epoch_log = |epoch: u64| {
        let data = c
            .rpc
            .get_account_data(&epoch_log_pda(log))
            .expect("epoch log");
        log_bit::<EpochLog>(&data, EpochLog::BITS_OFFSET, epoch)
    };
    assert_eq!(
        [start, start + 1, start + 2].map(epoch_log),
        [true, true, false],
        "opened epochs"
    );
    assert_eq!(
        [start, start + 1, start + 2].map(proof_log),
        [true, false, false],
        "proven epochs"
    );

    // Once the three epochs have closed, anyone settles the deal from the bits.
    let before: Provider = c.fetch(&provider);
    let sig_settle = c
        .try_send(&[c.ix.settle_ix(&provider, log, &[deal])], &[])
        .expect("settle");
    // One failed epoch, the first: the penalty is taken from the whole collateral.
    let penalty =
        (collateral * u64::from(accepted.slash_bps) / 10_000).min(accepted.collateral_left);
    assert_eq!(accepted.slash_bps, params.slash_bps);
    let settled: Deal = c.fetch(&deal);
    assert_eq!(
        (
            settled.state,
            settled.settled_until,
            settled.proven_epochs,
            settled.failed_epochs,
            settled.void_epochs
        ),
        (DealState::Completed, start + 3, 1, 1, 1)
    );
    assert_eq!((settled.escrow, settled.collateral_left), (0, 0));
    assert_eq!(
        settled.client_refund,
        price * 2 + penalty,
        "price × (failed + void) + penalty"
    );
    let after: Provider = c.fetch(&provider);
    assert_eq!(after.earnings - before.earnings, price, "price × proven");
    assert_eq!(
        (after.stake_free, after.stake_locked, after.slashed),
        (stake - penalty, 0, penalty),
        "the penalty left the collateral, the rest is free again"
    );
    assert_eq!((after.proofs, after.faults, after.active_deals), (1, 1, 0));
    conserved(Some(&deal), "settle");

    // getTransaction: every state change's event, from the inner instructions.
    let names =
        |sig: &str| -> Vec<&'static str> { c.events(sig).iter().map(MarketEvent::name).collect() };
    assert_eq!(names(&sig_register), ["ProviderRegistered", "StakeChanged"]);
    assert_eq!(names(&sig_propose), ["DealProposed"]);
    match &c.events(&sig_propose)[..] {
        [MarketEvent::DealProposed(e)] => assert_eq!(
            (e.deal, e.provider, e.generation, e.escrow, e.collateral),
            (deal, provider, 0, 3 * price, collateral)
        ),
        other => panic!("propose emitted {other:?}"),
    }
    match &c.events(&sig_accept)[..] {
        [MarketEvent::DealAccepted(e)] => assert_eq!(
            (e.deal, e.start_epoch, e.end_epoch, e.set_index),
            (deal, start, start + 3, 0)
        ),
        other => panic!("accept emitted {other:?}"),
    }
    match &c.events(&sig_open)[..] {
        [MarketEvent::EpochOpened(e)] => assert_eq!(
            (
                e.epoch,
                e.seed,
                e.seed_slot,
                e.deadline_slot,
                e.samples_per_epoch
            ),
            (
                start,
                challenge.seed,
                challenge.seed_slot,
                start * EPOCH_SLOTS + params.response_slots,
                params.samples_per_epoch
            )
        ),
        other => panic!("open_epoch emitted {other:?}"),
    }
    assert!(
        challenge.seed_slot > start * EPOCH_SLOTS,
        "seed slot after the epoch's first"
    );
    match &c.events(&sig_prove)[..] {
        [MarketEvent::EpochProven(e)] => assert_eq!(
            (e.provider, e.epoch, e.samples, e.draws, e.set_len),
            (provider, start, 1, 1, 1)
        ),
        other => panic!("prove emitted {other:?}"),
    }
    match &c.events(&sig_open_failed)[..] {
        [MarketEvent::EpochOpened(e)] => assert_eq!(e.epoch, start + 1),
        other => panic!("open_epoch emitted {other:?}"),
    }
    match &c.events(&sig_settle)[..] {
        [MarketEvent::DealSettled(s), MarketEvent::DealFinished(f)] => {
            assert_eq!(
                (
                    s.deal,
                    s.provider,
                    s.from_epoch,
                    s.until_epoch,
                    s.proven,
                    s.failed,
                    s.void
                ),
                (deal, provider, start, start + 3, 1, 1, 1)
            );
            assert_eq!((s.paid, s.refunded, s.penalty), (price, 2 * price, penalty));
            assert_eq!(
                (
                    f.deal,
                    f.terminated,
                    f.collateral_released,
                    f.collateral_forfeited,
                    f.escrow_refunded
                ),
                (deal, false, collateral - penalty, 0, 0)
            );
        }
        other => panic!("settle emitted {other:?}"),
    }
    // ... and the IDL alone decodes the same events (what an explorer does).
    for sig in [
        &sig_register,
        &sig_propose,
        &sig_accept,
        &sig_open,
        &sig_prove,
        &sig_settle,
    ] {
        let raw = cairn_chain::events::event_instructions(&c.transaction(sig).transaction).unwrap();
        let by_idl: Vec<String> = raw.iter().map(|data| idl_event(&idl, data).0).collect();
        let by_chain: Vec<String> = c.events(sig).iter().map(|e| e.name().to_string()).collect();
        assert_eq!(by_idl, by_chain);
    }
    let (_, proof_event) = idl_event(
        &idl,
        &cairn_chain::events::event_instructions(&c.transaction(&sig_prove).transaction).unwrap()
            [0],
    );
    assert_eq!(proof_event["provider"], json!(provider.to_string()));
    assert_eq!(proof_event["epoch"], json!(start));
    assert_eq!(proof_event["samples"], json!(1));

    // getSignaturesForAddress: the deal's history, newest first (polled: the
    // address index is written a moment after confirmation, like getTransaction's).
    let expected = [&sig_settle, &sig_accept, &sig_propose];
    let history: Vec<String> = poll("the deal's history", Duration::from_secs(60), || {
        let config = GetConfirmedSignaturesForAddress2Config {
            commitment: Some(CommitmentConfig::confirmed()),
            ..GetConfirmedSignaturesForAddress2Config::default()
        };
        let history: Vec<String> = c
            .rpc
            .get_signatures_for_address_with_config(&deal, config)
            .ok()?
            .into_iter()
            .map(|s| s.signature)
            .collect();
        expected
            .iter()
            .all(|sig| history.contains(sig))
            .then_some(history)
    });
    let order: Vec<usize> = expected
        .iter()
        .map(|sig| history.iter().position(|h| h == *sig).unwrap())
        .collect();
    assert!(
        order.windows(2).all(|w| w[0] < w[1]),
        "history not newest first: {history:?}"
    );

    // getProgramAccounts with memcmp filters: deals of a provider, pages of its
    // deal set, provider of an operator.
    let deals = c.program_accounts(&[
        (0, Deal::DISCRIMINATOR),
        (layout::DEAL_PROVIDER, provider.as_ref()),
    ]);
    assert_eq!(deals.len(), 1);
    assert_eq!(deals[0].0, deal);
    let listed = Deal::try_deserialize(&mut deals[0].1.as_slice()).unwrap();
    assert_eq!(
        (listed.state, listed.proven_epochs),
        (DealState::Completed, 1)
    );
    let pages = c.program_accounts(&[
        (0, DealSetPage::DISCRIMINATOR),
        (layout::DEAL_SET_PAGE_PROVIDER, provider.as_ref()),
    ]);
    assert_eq!(
        pages.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
        [deal_set_page_pda(&provider, 0)]
    );
    let providers = c.program_accounts(&[
        (0, Provider::DISCRIMINATOR),
        (layout::PROVIDER_OPERATOR, operator.pubkey().as_ref()),
    ]);
    assert_eq!(
        providers.iter().map(|(k, _)| *k).collect::<Vec<_>>(),
        [provider]
    );
    assert!(c
        .program_accounts(&[
            (0, Deal::DISCRIMINATOR),
            (layout::DEAL_PROVIDER, Pubkey::new_unique().as_ref())
        ])
        .is_empty());

    // The IDL decodes the market and the deal set fetched with getAccountInfo.
    let data = c
        .rpc
        .get_account_data(&c.info.market)
        .expect("getAccountInfo");
    let market = idl_account(&idl, "Market", &data);
    assert_eq!(market["authority"], json!(c.faucet.pubkey().to_string()));
    assert_eq!(market["mint"], json!(c.info.mint.to_string()));
    assert_eq!(
        market["token_program"],
        json!(c.info.token_program.to_string())
    );
    assert_eq!(market["vault"], json!(c.info.vault.to_string()));
    assert_eq!(market["params"]["epoch_slots"], json!(EPOCH_SLOTS));
    assert_eq!(
        market["params"]["response_slots"],
        json!(params.response_slots)
    );
    assert_eq!(
        market["params"]["samples_per_epoch"],
        json!(params.samples_per_epoch)
    );
    let anchor_market: Market = c.fetch(&c.info.market);
    assert_eq!(market["bump"], json!(anchor_market.bump));
    assert_eq!(market["vault_bump"], json!(anchor_market.vault_bump));
    let data = c
        .rpc
        .get_account_data(&deal_set_pda(&provider))
        .expect("getAccountInfo");
    let deal_set = idl_account(&idl, "DealSet", &data);
    assert_eq!(deal_set["provider"], json!(provider.to_string()));
    assert_eq!(
        (
            &deal_set["len"],
            &deal_set["pages"],
            &deal_set["epochs_proven"]
        ),
        (&json!(1), &json!(1), &json!(1))
    );

    // logsSubscribe saw the program's transactions, with the runtime's logs.
    let wanted = [&sig_open, &sig_prove];
    let mut notified = Vec::new();
    while !wanted.iter().all(|s| notified.contains(*s)) {
        let note = rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(60), logs.next()).await })
            .ok()
            .flatten()
            .unwrap_or_else(|| panic!("no logs notification for {wanted:?}; got {notified:?}"));
        if note.value.signature == sig_prove {
            let invoke = format!("Program {} invoke [1]", c.info.program_id);
            assert!(note.value.logs.contains(&invoke), "{:?}", note.value.logs);
        }
        notified.push(note.value.signature);
    }
    drop(logs);
    rt.block_on(logs_unsubscribe());
    rt.block_on(ws.shutdown()).expect("websocket closes");
}

#[test]
fn a_restart_on_the_same_ledger_finds_the_same_accounts_and_history() {
    let _serial = one_validator_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger");

    let first = Localnet::start(config(Some(ledger.clone()))).expect("first start");
    assert!(
        first.catch_up().is_none(),
        "a new ledger has nothing to replay"
    );
    let c = Client::connect(&ledger);
    let authority = Keypair::new();
    let operator = Keypair::new();
    let client = Keypair::new();
    for who in [&authority, &operator, &client] {
        c.airdrop(&who.pubkey(), 10 * SOL);
    }
    let authority_token = c.token_account(&authority.pubkey(), 1_000_000);
    let client_token = c.token_account(&client.pubkey(), 1_000_000);
    let provider = provider_pda(&authority.pubkey());
    let register = c.ix.register_provider_ix(
        &authority.pubkey(),
        RegisterProviderArgs {
            operator: operator.pubkey(),
            endpoint: "127.0.0.1:7000".into(),
            capacity_bytes: 1 << 30,
            price_per_mib_epoch: 100,
        },
    );
    let deposit =
        c.ix.deposit_stake_ix(&authority.pubkey(), &authority_token, 1_000_000);
    c.try_send(&[register, deposit], &[&authority])
        .expect("register");
    c.try_send(
        &[c.ix.extend_deal_set_ix(&operator.pubkey(), &provider, 0)],
        &[&operator],
    )
    .expect("deal-set page");
    let shard = TestShard::random(1_000, 3);
    let args = ProposeDealArgs {
        dataset_id: cairn_chain::dataset_id(&client.pubkey(), &[1; 32]),
        dataset_nonce: [1; 32],
        group_id: [1; 32],
        group: 0,
        shard_index: 0,
        generation: 0,
        k: 1,
        n: 1,
        shard_root: shard.root(),
        shard_bytes: 1_000,
        duration_epochs: 5,
        max_price_per_epoch: u64::MAX,
    };
    let deal = deal_pda(&client.pubkey(), &[1; 32], 0, 0);
    let sig_propose = c
        .try_send(
            &[c.ix.propose_deal_ix(&client.pubkey(), &provider, &client_token, args)],
            &[&client],
        )
        .expect("propose");
    let keys = [
        c.info.market,
        c.info.vault,
        c.info.mint,
        provider,
        deal_set_pda(&provider),
        deal_set_page_pda(&provider, 0),
        deal,
        client_token,
        authority_token,
    ];
    let before: Vec<Vec<u8>> = keys
        .iter()
        .map(|k| c.rpc.get_account_data(k).unwrap())
        .collect();
    let slot_before = c.rpc.get_slot().expect("confirmed slot");
    let info_before = first.info().clone();
    drop(first);
    assert!(
        !ledger.join(INFO_FILE).exists(),
        "localnet.json outlived the chain"
    );

    // Same ledger, no options: the chain continues where it stopped.
    let second = Localnet::start(LocalnetConfig {
        ledger: Some(ledger.clone()),
        ..LocalnetConfig::default()
    })
    .expect("restart");
    eprintln!(
        "restart: {:?}, ready in {:.2} s",
        second.catch_up(),
        second.started_in().as_secs_f64()
    );
    let c = Client::connect(&ledger);
    let info = second.info();
    assert_eq!(
        (
            info.mint,
            info.market,
            info.faucet,
            info.slot_ms,
            info.epoch_slots
        ),
        (
            info_before.mint,
            info_before.market,
            info_before.faucet,
            SLOT_MS,
            EPOCH_SLOTS
        )
    );
    let after: Vec<Vec<u8>> = keys
        .iter()
        .map(|k| c.rpc.get_account_data(k).unwrap())
        .collect();
    for ((key, a), b) in keys.iter().zip(&after).zip(&before) {
        assert_eq!(a, b, "account {key} changed across the restart");
    }
    // The chain goes on from where it was confirmed.
    c.wait_for_slot(slot_before + 3);
    match &c.events(&sig_propose)[..] {
        [MarketEvent::DealProposed(e)] => assert_eq!(e.deal, deal),
        other => panic!("history lost the proposal: {other:?}"),
    }
    // The program runs after the restart: the provider accepts the deal.
    c.try_send(
        &[c.ix.accept_deal_ix(&operator.pubkey(), &provider, &deal, 0)],
        &[&operator],
    )
    .expect("accept after restart");
    assert_eq!(c.fetch::<Deal>(&deal).state, DealState::Active);
    assert_eq!(c.fetch::<DealSet>(&deal_set_pda(&provider)).len, 1);
    assert!(second.banks_without_program().is_empty());

    // Options fixed at creation are refused rather than silently ignored.
    drop(second);
    let err = Localnet::start(LocalnetConfig {
        ledger: Some(ledger.clone()),
        epoch_slots: Some(EPOCH_SLOTS + 1),
        ..LocalnetConfig::default()
    })
    .err()
    .expect("a different epoch length is refused");
    assert!(err.to_string().contains("epoch length"), "{err}");
}

#[test]
fn the_binary_prints_its_endpoints_writes_localnet_json_and_stops_on_ctrl_c() {
    let _serial = one_validator_at_a_time();
    let dir = tempfile::tempdir().unwrap();
    let ledger = dir.path().join("ledger");
    let port = free_port_pair();
    let spawn = || -> Child {
        Command::new(env!("CARGO_BIN_EXE_cairn-localnet"))
            .args([
                "--ledger",
                ledger.to_str().unwrap(),
                "--rpc-port",
                &port.to_string(),
            ])
            .args(["--json"])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn cairn-localnet")
    };
    let stop = |mut child: Child| -> String {
        let status = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .expect("kill -INT");
        assert!(status.success());
        let status = poll("cairn-localnet to exit", Duration::from_secs(60), || {
            child.try_wait().unwrap()
        });
        assert!(status.success(), "exit status {status}");
        let mut out = String::new();
        std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
        out
    };

    let child = spawn();
    let info = poll("localnet.json", Duration::from_secs(120), || {
        LocalnetInfo::read(&ledger).ok()
    });
    assert_eq!(info.rpc_url, format!("http://127.0.0.1:{port}"));
    let c = Client::connect(&ledger);
    assert!(c.slot() > 0);
    let printed = stop(child);
    let printed: LocalnetInfo =
        serde_json::from_str(&printed).expect("--json prints localnet.json");
    assert_eq!(printed, info);
    assert!(
        !ledger.join(INFO_FILE).exists(),
        "localnet.json outlived the chain"
    );

    // --ledger keeps the chain: same market and mint after a restart.
    let child = spawn();
    let again = poll(
        "localnet.json after restart",
        Duration::from_secs(120),
        || LocalnetInfo::read(&ledger).ok(),
    );
    assert_eq!((again.mint, again.market), (info.mint, info.market));
    stop(child);
}

fn free_port_pair() -> u16 {
    poll("two free consecutive ports", Duration::from_secs(5), || {
        let a = std::net::TcpListener::bind("127.0.0.1:0").ok()?;
        let port = a.local_addr().ok()?.port();
        (port < u16::MAX && std::net::TcpListener::bind(("127.0.0.1", port + 1)).is_ok())
            .then_some(port)
    })
}

// ------------------------------------------------- decoding with the IDL only

/// Decodes account `name` from its data with nothing but the IDL: checks the
/// discriminator, decodes every field and requires every byte to be used.
fn idl_account(idl: &Idl, name: &str, data: &[u8]) -> Value {
    let account = idl
        .accounts
        .iter()
        .find(|a| a.name == name)
        .expect("account in IDL");
    assert_eq!(
        &data[..8],
        account.discriminator.as_slice(),
        "{name} discriminator"
    );
    let mut rest = &data[8..];
    let value = idl_decode(
        idl,
        &IdlType::Defined {
            name: name.into(),
            generics: vec![],
        },
        &mut rest,
    );
    assert!(
        rest.is_empty(),
        "{} bytes of {name} left undecoded",
        rest.len()
    );
    value
}

/// Decodes an event instruction's data (tag, discriminator, fields) with the IDL.
fn idl_event(idl: &Idl, data: &[u8]) -> (String, Value) {
    assert_eq!(&data[..8], cairn_chain::events::EVENT_IX_TAG.as_slice());
    let event = idl
        .events
        .iter()
        .find(|e| data[8..16] == e.discriminator[..])
        .expect("event discriminator in IDL");
    let mut rest = &data[16..];
    let value = idl_decode(
        idl,
        &IdlType::Defined {
            name: event.name.clone(),
            generics: vec![],
        },
        &mut rest,
    );
    assert!(
        rest.is_empty(),
        "{} bytes of {} left undecoded",
        rest.len(),
        event.name
    );
    (event.name.clone(), value)
}

fn take<'a>(data: &mut &'a [u8], n: usize) -> &'a [u8] {
    assert!(data.len() >= n, "IDL decoding ran past the data");
    let (head, tail) = data.split_at(n);
    *data = tail;
    head
}

fn idl_decode(idl: &Idl, ty: &IdlType, data: &mut &[u8]) -> Value {
    macro_rules! int {
        ($t:ty) => {{
            let n = std::mem::size_of::<$t>();
            <$t>::from_le_bytes(take(data, n).try_into().unwrap())
        }};
    }
    match ty {
        IdlType::Bool => json!(take(data, 1)[0] != 0),
        IdlType::U8 => json!(int!(u8)),
        IdlType::I8 => json!(int!(i8)),
        IdlType::U16 => json!(int!(u16)),
        IdlType::I16 => json!(int!(i16)),
        IdlType::U32 => json!(int!(u32)),
        IdlType::I32 => json!(int!(i32)),
        IdlType::U64 => json!(int!(u64)),
        IdlType::I64 => json!(int!(i64)),
        IdlType::U128 => json!(int!(u128).to_string()),
        IdlType::I128 => json!(int!(i128).to_string()),
        IdlType::Pubkey => json!(Pubkey::try_from(take(data, 32)).unwrap().to_string()),
        IdlType::String => {
            let len = int!(u32) as usize;
            json!(String::from_utf8(take(data, len).to_vec()).expect("utf-8"))
        }
        IdlType::Bytes => {
            let len = int!(u32) as usize;
            json!(take(data, len))
        }
        IdlType::Option(inner) => match take(data, 1)[0] {
            0 => Value::Null,
            _ => idl_decode(idl, inner, data),
        },
        IdlType::Vec(inner) => {
            let len = int!(u32);
            Value::Array((0..len).map(|_| idl_decode(idl, inner, data)).collect())
        }
        IdlType::Array(inner, IdlArrayLen::Value(len)) => {
            Value::Array((0..*len).map(|_| idl_decode(idl, inner, data)).collect())
        }
        IdlType::Defined { name, generics } => {
            assert!(
                generics
                    .iter()
                    .all(|g| !matches!(g, IdlGenericArg::Type { .. })),
                "generic types are not used by this program"
            );
            let def = idl
                .types
                .iter()
                .find(|t| &t.name == name)
                .unwrap_or_else(|| panic!("type {name} in IDL"));
            match &def.ty {
                IdlTypeDefTy::Struct { fields } => idl_fields(idl, fields.as_ref(), data),
                IdlTypeDefTy::Enum { variants } => {
                    let variant = &variants[usize::from(take(data, 1)[0])];
                    match &variant.fields {
                        None => json!(variant.name),
                        Some(fields) => {
                            json!({ &variant.name: idl_fields(idl, Some(fields), data) })
                        }
                    }
                }
                IdlTypeDefTy::Type { alias } => idl_decode(idl, alias, data),
            }
        }
        other => panic!("IDL type {other:?} is not used by this program"),
    }
}

fn idl_fields(idl: &Idl, fields: Option<&IdlDefinedFields>, data: &mut &[u8]) -> Value {
    match fields {
        None => json!({}),
        Some(IdlDefinedFields::Named(fields)) => Value::Object(
            fields
                .iter()
                .map(|f| (f.name.clone(), idl_decode(idl, &f.ty, data)))
                .collect(),
        ),
        Some(IdlDefinedFields::Tuple(types)) => {
            Value::Array(types.iter().map(|t| idl_decode(idl, t, data)).collect())
        }
    }
}
