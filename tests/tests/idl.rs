//! Writes `target/idl/storage_market.json` without the SBF toolchain, through
//! Anchor's `idl-build` feature (the same code path as `anchor idl build`), and
//! checks that it lists every instruction, account, event and error.
//!
//! Regenerate the file with `cargo test -p cairn-tests --test idl`.
#[test]
fn idl_lists_every_instruction_account_event_and_error() {
    let idl = cairn_tests::idl::build_idl();

    let names = |items: Vec<String>| {
        let mut items = items;
        items.sort();
        items
    };
    let instructions = names(idl.instructions.iter().map(|i| i.name.clone()).collect());
    let mut expected = vec![
        "init_market",
        "update_market",
        "register_provider",
        "update_provider",
        "deposit_stake",
        "withdraw_stake",
        "withdraw_earnings",
        "deregister_provider",
        "propose_deal",
        "cancel_deal",
        "accept_deal",
        "open_epoch_log",
        "open_proof_log",
        "extend_deal_set",
        "open_epoch",
        "prove",
        "settle",
        "end_deal",
        "jail_provider",
        "leave_deal_set",
        "close_deal",
    ];
    expected.sort();
    assert_eq!(instructions, expected);

    let accounts = names(idl.accounts.iter().map(|a| a.name.clone()).collect());
    assert_eq!(
        accounts,
        [
            "Challenge",
            "Deal",
            "DealSet",
            "DealSetPage",
            "EpochLog",
            "Market",
            "ProofLog",
            "Provider"
        ]
    );

    let events = names(idl.events.iter().map(|e| e.name.clone()).collect());
    for event in [
        "ProviderRegistered",
        "StakeChanged",
        "DealProposed",
        "DealAccepted",
        "DealCancelled",
        "EpochOpened",
        "EpochProven",
        "DealSettled",
        "DealFinished",
        "DealEnded",
        "DealLeftSet",
        "ProviderJailed",
        "EarningsWithdrawn",
    ] {
        assert!(events.iter().any(|e| e == event), "event {event} missing");
    }

    // Errors carry the codes clients map failures by.
    let invalid_proof = idl
        .errors
        .iter()
        .find(|e| e.name == "InvalidProof")
        .expect("InvalidProof in IDL");
    assert_eq!(
        invalid_proof.code,
        anchor_lang::error::ERROR_CODE_OFFSET
            + storage_market::errors::MarketError::InvalidProof as u32
    );
    // `MarketError::ALL` (how off-chain code names a code) matches the IDL.
    let by_idl: Vec<(u32, &str)> = idl
        .errors
        .iter()
        .map(|e| (e.code, e.name.as_str()))
        .collect();
    let by_all: Vec<(u32, String)> = storage_market::errors::MarketError::ALL
        .iter()
        .map(|e| (u32::from(*e), e.name()))
        .collect();
    assert_eq!(by_idl.len(), by_all.len());
    for ((c1, n1), (c2, n2)) in by_idl.iter().zip(&by_all) {
        assert_eq!((c1, *n1), (c2, n2.as_str()));
    }
    assert_eq!(idl.address, storage_market::ID.to_string());
}
