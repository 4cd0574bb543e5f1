//! Writes `target/idl/storage_market.json` without the SBF toolchain, through
//! Anchor's `idl-build` feature (the same code path as `anchor idl build`), and
//! checks that it lists every instruction, account, event and error.
//!
//! Regenerate the file with `cargo test -p cairn-tests --test idl`.
use std::path::PathBuf;

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}

#[test]
fn idl_lists_every_instruction_account_event_and_error() {
    let root = workspace_root();
    let program = root.join("programs/storage-market");
    // Anchor's builder re-invokes cargo with `+$RUSTUP_TOOLCHAIN` when that is
    // set (and mangles it); the plain `cargo` on PATH is the right one here.
    std::env::remove_var("RUSTUP_TOOLCHAIN");
    // Its own target directory: the idl-build feature set and RUSTFLAGS differ
    // from the test build, and the outer cargo may hold the main one's lock.
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("idl-build");
    let idl = anchor_lang_idl::build::IdlBuilder::new()
        .program_path(program)
        .skip_lint(true)
        .cargo_args(vec!["--target-dir".into(), target.display().to_string()])
        .build()
        .expect("IDL builds");

    let out_dir = root.join("target/idl");
    std::fs::create_dir_all(&out_dir).expect("create target/idl");
    let json = serde_json::to_string_pretty(&idl).expect("serialize IDL");
    std::fs::write(out_dir.join("storage_market.json"), &json).expect("write IDL");

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
        "open_epoch",
        "submit_proof",
        "report_faults",
        "complete_deal",
        "close_deal",
        "close_challenge",
    ];
    expected.sort();
    assert_eq!(instructions, expected);

    let accounts = names(idl.accounts.iter().map(|a| a.name.clone()).collect());
    assert_eq!(accounts, ["Challenge", "Deal", "Market", "Provider"]);

    let events = names(idl.events.iter().map(|e| e.name.clone()).collect());
    for event in [
        "ProviderRegistered",
        "StakeChanged",
        "DealProposed",
        "DealAccepted",
        "DealCancelled",
        "EpochOpened",
        "ProofAccepted",
        "FaultsSettled",
        "DealCompleted",
        "DealTerminated",
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
    assert_eq!(idl.address, storage_market::ID.to_string());
}
