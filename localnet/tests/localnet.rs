//! The local network end to end, reached only through its JSON-RPC and
//! websocket endpoints with `solana-rpc-client` and `solana-pubsub-client`, the
//! way every other part of Cairn (and any Solana tool) reaches a cluster.
use anchor_lang::{AccountDeserialize, Discriminator};
use anchor_lang_idl::types::{
    Idl, IdlArrayLen, IdlDefinedFields, IdlGenericArg, IdlType, IdlTypeDefTy,
};
use cairn_chain::{challenge_pda, deal_pda, events::MarketEvent, layout, provider_pda, Pubkey};
use cairn_localnet::{Localnet, LocalnetConfig, LocalnetInfo, INFO_FILE};
use cairn_tests::rpc::{one_validator_at_a_time, poll, TestChain, SOL};
use cairn_tests::TestShard;
use futures_util::StreamExt;
use serde_json::{json, Value};
use solana_account_decoder_client_types::UiAccountEncoding;
use solana_commitment_config::CommitmentConfig;
use solana_keypair::Keypair;
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
use solana_transaction_status_client_types::{
    EncodedConfirmedTransactionWithStatusMeta, UiTransactionEncoding,
};
use std::{
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};
use storage_market::{
    instructions::{ProposeDealArgs, RegisterProviderArgs},
    state::{Challenge, Deal, DealState, Market, Provider},
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

    // A provider (cold authority, hot operator), a client and a reporter, all
    // funded through requestAirdrop.
    let authority = Keypair::new();
    let operator = Keypair::new();
    let client = Keypair::new();
    let reporter = Keypair::new();
    for who in [&authority, &operator, &client, &reporter] {
        c.airdrop(&who.pubkey(), 10 * SOL);
    }
    let stake = 1_000_000;
    let authority_token = c.token_account(&authority.pubkey(), stake);
    let client_token = c.token_account(&client.pubkey(), 10_000_000);
    let reporter_token = c.token_account(&reporter.pubkey(), 0);
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
        c.ix.deposit_stake_ix(&authority.pubkey(), &authority_token, stake);
    let sig_register = c
        .try_send(&[register, deposit], &[&authority])
        .expect("register + stake");

    // Propose a 3-epoch deal for a 300 kB shard; the provider accepts.
    let shard = TestShard::random(300_000, 7);
    let dataset_id = [9u8; 32];
    let args = ProposeDealArgs {
        dataset_id,
        shard_index: 0,
        k: 4,
        n: 6,
        shard_root: shard.root(),
        shard_bytes: shard.data.len() as u64,
        duration_epochs: 3,
        max_price_per_epoch: u64::MAX,
    };
    let deal = deal_pda(&client.pubkey(), &dataset_id, 0);
    let sig_propose = c
        .try_send(
            &[c.ix.propose_deal_ix(&client.pubkey(), &provider, &client_token, args)],
            &[&client],
        )
        .expect("propose");
    let sig_accept = c
        .try_send(
            &[c.ix.accept_deal_ix(&operator.pubkey(), &provider, &deal)],
            &[&operator],
        )
        .expect("accept");
    let accepted: Deal = c.fetch(&deal);
    assert_eq!(accepted.state, DealState::Active);
    let start = accepted.start_epoch;
    let (price, collateral) = (accepted.price_per_epoch, accepted.collateral);
    assert_eq!((price, collateral), (100, params.collateral_per_mib));

    // Epoch `start`: open it (SlotHashes seed) and prove.
    c.wait_for_slot(start * EPOCH_SLOTS + 1);
    let sig_open = c
        .try_send(&[c.ix.open_epoch_ix(&c.faucet.pubkey(), start)], &[])
        .expect("open epoch");
    let challenge: Challenge = c.fetch(&challenge_pda(start));
    let proof = shard.proof(&deal, &challenge);
    let prove =
        c.ix.submit_proof_ix(&operator.pubkey(), &provider, &deal, start, proof);
    let sig_prove = c.try_send(&[prove], &[&operator]).expect("proof accepted");
    assert_eq!(
        epoch_of(c.transaction(&sig_prove).slot),
        start,
        "proved inside its epoch"
    );

    // A program error comes back as the program's code: the same proof again.
    let replay = c.ix.submit_proof_ix(
        &operator.pubkey(),
        &provider,
        &deal,
        start,
        shard.proof(&deal, &challenge),
    );
    let err = c
        .try_send(&[replay], &[&operator])
        .expect_err("replayed proof is refused");
    assert_eq!(
        custom_code(&err),
        Some(
            anchor_lang::error::ERROR_CODE_OFFSET
                + storage_market::errors::MarketError::EpochAlreadySettled as u32
        ),
        "{err}"
    );

    // Epoch `start + 1` passes unproven; once its window closes anyone reports it.
    c.wait_for_slot((start + 2) * EPOCH_SLOTS + params.grace_slots);
    let report =
        c.ix.report_faults_ix(&reporter.pubkey(), &provider, &deal, &reporter_token);
    let sig_report = c.try_send(&[report], &[&reporter]).expect("report faults");
    let slash = collateral * u64::from(params.slash_bps) / 10_000;
    let bounty = slash * u64::from(params.bounty_bps) / 10_000;
    assert_eq!(c.token_balance(&reporter_token), bounty);
    let settled: Deal = c.fetch(&deal);
    assert_eq!(
        (settled.settled_through, settled.total_faults),
        (start + 1, 1)
    );

    // getTransaction: every state change's event, from the inner instructions.
    let names =
        |sig: &str| -> Vec<&'static str> { c.events(sig).iter().map(MarketEvent::name).collect() };
    assert_eq!(names(&sig_register), ["ProviderRegistered", "StakeChanged"]);
    assert_eq!(names(&sig_propose), ["DealProposed"]);
    assert_eq!(names(&sig_accept), ["DealAccepted"]);
    match &c.events(&sig_propose)[..] {
        [MarketEvent::DealProposed(e)] => {
            assert_eq!(
                (e.deal, e.provider, e.escrow, e.collateral),
                (deal, provider, 3 * price, collateral)
            )
        }
        other => panic!("propose emitted {other:?}"),
    }
    match &c.events(&sig_open)[..] {
        [MarketEvent::EpochOpened(e)] => assert_eq!((e.epoch, e.seed), (start, challenge.seed)),
        other => panic!("open_epoch emitted {other:?}"),
    }
    match &c.events(&sig_prove)[..] {
        [MarketEvent::ProofAccepted(e)] => {
            assert_eq!((e.deal, e.epoch, e.paid), (deal, start, price))
        }
        other => panic!("submit_proof emitted {other:?}"),
    }
    match &c.events(&sig_report)[..] {
        [MarketEvent::FaultsSettled(e)] => assert_eq!(
            (
                e.first_epoch,
                e.last_epoch,
                e.epochs,
                e.slashed,
                e.bounty,
                e.settled_by
            ),
            (start + 1, start + 1, 1, slash, bounty, reporter.pubkey())
        ),
        other => panic!("report_faults emitted {other:?}"),
    }
    // ... and the IDL alone decodes the same events (what an explorer does).
    for sig in [
        &sig_register,
        &sig_propose,
        &sig_accept,
        &sig_open,
        &sig_prove,
        &sig_report,
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
    assert_eq!(proof_event["paid"], json!(price));
    assert_eq!(proof_event["deal"], json!(deal.to_string()));

    // getSignaturesForAddress: the deal's history, newest first (polled: the
    // address index is written a moment after confirmation, like getTransaction's).
    let expected = [&sig_report, &sig_prove, &sig_accept, &sig_propose];
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

    // getProgramAccounts with memcmp filters: deals of a provider, provider of an operator.
    let deals = c.program_accounts(&[
        (0, Deal::DISCRIMINATOR),
        (layout::DEAL_PROVIDER, provider.as_ref()),
    ]);
    assert_eq!(deals.len(), 1);
    assert_eq!(deals[0].0, deal);
    let listed = Deal::try_deserialize(&mut deals[0].1.as_slice()).unwrap();
    assert_eq!((listed.state, listed.proven_epochs), (DealState::Active, 1));
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

    // The IDL decodes the market account fetched with getAccountInfo.
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
    assert_eq!(market["params"]["grace_slots"], json!(params.grace_slots));
    let anchor_market: Market = c.fetch(&c.info.market);
    assert_eq!(market["bump"], json!(anchor_market.bump));
    assert_eq!(market["vault_bump"], json!(anchor_market.vault_bump));

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
    let shard = TestShard::random(1_000, 3);
    let args = ProposeDealArgs {
        dataset_id: [1; 32],
        shard_index: 0,
        k: 1,
        n: 1,
        shard_root: shard.root(),
        shard_bytes: 1_000,
        duration_epochs: 5,
        max_price_per_epoch: u64::MAX,
    };
    let deal = deal_pda(&client.pubkey(), &[1; 32], 0);
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
        &[c.ix.accept_deal_ix(&operator.pubkey(), &provider, &deal)],
        &[&operator],
    )
    .expect("accept after restart");
    assert_eq!(c.fetch::<Deal>(&deal).state, DealState::Active);
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
