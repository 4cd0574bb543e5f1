//! The `cairn` binary against a real local validator (cairn-localnet): market
//! and provider commands, `status`/`ls` over real deals (epochs void, failed
//! and settled, from the chain's bits), and every error a user can hit printing
//! one line with the right exit code.
mod common;

use std::process::Command;

use anchor_lang::prelude::Pubkey;
use common::{assert_fails, open_epoch, Fixture, TOKEN};
use serde_json::Value;
use solana_keypair::Keypair;
use solana_signer::Signer;
use storage_market::instructions::ProposeDealArgs;
use storage_market::state::Deal;

#[test]
fn provider_and_market_commands_and_dataset_status_against_a_local_validator() {
    let f = Fixture::start();
    let (authority, key) = f.user("provider", 10 * TOKEN);

    // market info reads the market the localnet created.
    let market = f.json(&key, &["market", "info"]);
    assert_eq!(market["mint"], f.localnet.info().mint.to_string());
    assert_eq!(market["epoch_slots"], 20);
    assert_eq!(market["response_slots"], 20);
    assert_eq!(market["samples_per_epoch"], 4);
    assert_eq!(
        (
            market["jail_failures"].as_u64(),
            market["jail_window"].as_u64()
        ),
        (Some(3), Some(10))
    );
    assert_eq!(market["decimals"], 6);

    // register with stake in one transaction; info shows exactly that.
    f.json(
        &key,
        &[
            "provider",
            "register",
            "--endpoint",
            "127.0.0.1:7000",
            "--capacity",
            "1GiB",
            "--price",
            "0.0001",
            "--stake",
            "2.5",
        ],
    );
    let info = f.json(&key, &["provider", "info"]);
    assert_eq!(info["stake_free"], 2_500_000);
    assert_eq!(info["capacity_bytes"], 1u64 << 30);
    assert_eq!(info["price_per_mib_epoch"], 100);
    assert_eq!(info["operator"], authority.pubkey().to_string());
    assert_eq!(info["jailed_from"], Value::Null);
    assert_eq!(info["forfeited"], 0);
    // The last 16 epochs, or every epoch of a younger chain.
    assert_eq!(
        info["recent_epochs"].as_array().unwrap().len() as u64,
        (info["epoch"].as_u64().unwrap() + 1).min(16)
    );
    assert_eq!(
        f.token_balance(&f.ata(&authority.pubkey())),
        10 * TOKEN - 2_500_000
    );

    // stake more, withdraw some, update the price.
    f.json(&key, &["provider", "stake", "0.5"]);
    f.json(&key, &["provider", "withdraw", "--stake", "1"]);
    f.json(
        &key,
        &[
            "provider",
            "update",
            "--price",
            "0.0002",
            "--endpoint",
            "127.0.0.1:7001",
        ],
    );
    let info = f.json(&key, &["provider", "info"]);
    assert_eq!(info["stake_free"], 2_000_000);
    assert_eq!(info["price_per_mib_epoch"], 200);
    assert_eq!(info["endpoint"], "127.0.0.1:7001");
    assert_eq!(f.token_balance(&f.ata(&authority.pubkey())), 8 * TOKEN);

    // Refusals a provider can hit: one line, exit 1 (expected) or 2 (error).
    assert_fails(
        &f.cairn(&key, &["provider", "withdraw", "--stake", "100"]),
        1,
        "insufficient free stake",
    );
    assert_fails(
        &f.cairn(&key, &["provider", "stake", "1000"]),
        1,
        "insufficient funds",
    );
    assert_fails(
        &f.cairn(&key, &["provider", "stake", "0.0000001"]),
        2,
        "7 decimals",
    );
    assert_fails(
        &f.cairn(&key, &["provider", "withdraw", "--earnings"]),
        1,
        "earnings available: 0",
    );
    assert_fails(
        &f.cairn(
            &key,
            &[
                "provider",
                "register",
                "--endpoint",
                "nowhere",
                "--capacity",
                "1GiB",
                "--price",
                "1",
            ],
        ),
        2,
        "--endpoint",
    );
    assert_fails(
        &f.cairn(&key, &["provider", "update"]),
        2,
        "nothing to change",
    );

    // A client proposes a 3-shard deal set directly; status and ls show it.
    let (client, client_key) = f.user("client", 10 * TOKEN);
    let dataset_id = [7u8; 32];
    let provider = cairn_chain::provider_pda(&authority.pubkey());
    let ix = f.localnet.market_ix();
    for shard_index in 0..3u16 {
        let args = ProposeDealArgs {
            dataset_id: cairn_chain::dataset_id(&client.pubkey(), &dataset_id),
            dataset_nonce: dataset_id,
            group_id: dataset_id,
            group: 0,
            shard_index,
            generation: 0,
            k: 2,
            n: 3,
            shard_root: cairn_proof::root_of(&[shard_index as u8; 4096]),
            shard_bytes: 4096,
            duration_epochs: 4,
            max_price_per_epoch: u64::MAX,
        };
        f.send(
            &[ix.propose_deal_ix(&client.pubkey(), &provider, &f.ata(&client.pubkey()), args)],
            &[&client],
        );
    }
    // The dataset id is derived from the client and the nonce (the program
    // checks it); `dataset_id` here is the nonce and the one group's id.
    let id =
        cairn_core::DatasetId(cairn_chain::dataset_id(&client.pubkey(), &dataset_id)).to_string();
    let status = f.json(&client_key, &["status", &id]);
    assert_eq!(status["dataset_id"], id);
    assert_eq!(
        (status["k"].as_u64(), status["n"].as_u64()),
        (Some(2), Some(3))
    );
    let deals = status["groups"][0]["deals"].as_array().unwrap();
    assert_eq!(deals.len(), 3);
    assert!(deals
        .iter()
        .all(|d| d["state"] == "proposed" && d["healthy"] == false && d["generation"] == 0));
    assert_eq!(status["health"], "at risk");
    assert_eq!(
        status["groups"][0]["proposed"],
        serde_json::json!([0, 1, 2])
    );
    // Escrow: 4 epochs at the provider's price for a shard under 1 MiB.
    assert_eq!(status["escrow_left"], 3 * 4 * 200);
    let text = String::from_utf8(f.cairn(&client_key, &["status", &id]).stdout).unwrap();
    assert!(
        text.contains("at risk: 0 of 3 shards healthy, 0 more can be lost (2 needed to rebuild)"),
        "{text}"
    );

    // The provider accepts two shards (into the first page of its deal set):
    // they are active and healthy.
    f.send(
        &[ix.extend_deal_set_ix(&authority.pubkey(), &provider, 0)],
        &[&authority],
    );
    let mut deal_addresses = Vec::new();
    for shard_index in 0..2u16 {
        let deal = cairn_chain::deal_pda(&client.pubkey(), &dataset_id, shard_index, 0);
        f.send(
            &[ix.accept_deal_ix(
                &authority.pubkey(),
                &provider,
                &deal,
                u32::from(shard_index),
            )],
            &[&authority],
        );
        deal_addresses.push(deal);
    }
    let status = f.json(&client_key, &["status", &id]);
    assert_eq!(status["groups"][0]["healthy"], 2);
    assert_eq!(
        (status["health"].as_str(), status["can_lose"].as_u64()),
        (Some("degraded"), Some(0))
    );
    let listing = f.json(&client_key, &["ls"]);
    assert_eq!(listing["datasets"].as_array().unwrap().len(), 1);
    assert_eq!(listing["datasets"][0]["dataset_id"], id);
    let info = f.json(&key, &["provider", "info"]);
    assert_eq!(
        (
            info["deals"]["active"].as_u64(),
            info["deals"]["proposed"].as_u64()
        ),
        (Some(2), Some(1))
    );

    // Epoch `s`, within both deals and not begun yet, is opened (nobody else
    // opens epochs on this chain) and the provider does not prove it: failed
    // for both deals. Every other epoch stays unopened: void.
    let start = deal_addresses
        .iter()
        .map(|a| f.fetch::<Deal>(a).start_epoch)
        .max()
        .unwrap();
    let s = start.max(common::epoch_now(&f) + 1);
    open_epoch(&f, s);
    f.wait_for_slot((s + 2) * common::EPOCH_SLOTS, common::SLOT_MS);
    let status = f.json(&client_key, &["status", &id]);
    let deals = status["groups"][0]["deals"].as_array().unwrap();
    for (i, d) in deals.iter().take(2).enumerate() {
        let epochs = &d["epochs"];
        assert_eq!(epochs["first_failed"], s, "shard {i}: {d}");
        assert_eq!(epochs["closed"]["failed"], 1, "{d}");
        assert_eq!(epochs["closed"]["proven"], 0, "{d}");
        assert!(epochs["closed"]["void"].as_u64().unwrap() >= 1, "{d}");
        // Nothing settled yet: the failure shows from the bits alone.
        assert_eq!(epochs["settled"]["failed"], 0, "{d}");
        assert_eq!(
            epochs["unsettled"],
            epochs["closed"]["proven"].as_u64().unwrap()
                + epochs["closed"]["failed"].as_u64().unwrap()
                + epochs["closed"]["void"].as_u64().unwrap(),
            "{d}"
        );
        // 10% of a 1 MiB collateral (5,000 base units) per failed epoch.
        assert_eq!(epochs["penalties"], 500, "{d}");
        assert_eq!(d["healthy"], false);
    }
    // Shards 0 and 1 failed an epoch; shard 2's proposal lapsed unaccepted.
    assert_eq!(
        status["to_repair"],
        serde_json::json!([0, 1, 2].map(|i| serde_json::json!({"group": 0, "shard_index": i})))
    );
    assert_eq!(deals[0]["trouble"], format!("failed epoch {s}"));
    assert_eq!(deals[2]["trouble"], "proposal not accepted in time");
    assert_eq!(
        (
            status["groups"][0]["healthy"].as_u64(),
            status["health"].as_str()
        ),
        (Some(0), Some("at risk"))
    );
    assert_eq!(status["penalties"], 1_000);
    let text = String::from_utf8(f.cairn(&client_key, &["status", &id]).stdout).unwrap();
    assert!(
        text.contains(&format!("shard 0: failed epoch {s}")),
        "{text}"
    );
    let info = f.json(&key, &["provider", "info"]);
    let outcome_of = |e: u64| {
        info["recent_epochs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["epoch"] == e)
            .map(|x| x["outcome"].clone())
    };
    assert_eq!(outcome_of(s), Some(Value::from("failed")), "{info}");
    assert_eq!(outcome_of(s + 1), Some(Value::from("void")), "{info}");

    // Anyone settles: the failure moves from pending to settled, its penalty to
    // the client.
    f.send(&[ix.settle_ix(&provider, 0, &deal_addresses)], &[]);
    let status = f.json(&client_key, &["status", &id]);
    let d = &status["groups"][0]["deals"][0];
    assert_eq!(d["epochs"]["settled"]["failed"], 1, "{d}");
    assert_eq!(d["epochs"]["penalties_settled"], 500, "{d}");
    assert_eq!(d["collateral_left"], 4_500, "{d}");
    let settled: u64 = ["proven", "failed", "void"]
        .iter()
        .map(|k| d["epochs"]["settled"][k].as_u64().unwrap())
        .sum();
    assert_eq!(
        d["settled_until"].as_u64().unwrap(),
        d["start_epoch"].as_u64().unwrap() + settled
    );
    let info = f.json(&key, &["provider", "info"]);
    assert_eq!(
        (info["faults"].as_u64(), info["slashed"].as_u64()),
        (Some(2), Some(1_000))
    );

    // Errors any user can hit.
    let unknown = "ab".repeat(32);
    assert_fails(
        &f.cairn(&client_key, &["status", &unknown]),
        1,
        "unknown dataset",
    );
    assert_fails(
        &f.cairn(&client_key, &["status", "xyz"]),
        2,
        "64 hex characters",
    );
    let bad = f.dir.path().join("bad.json");
    std::fs::write(&bad, "not a keypair").unwrap();
    // Readable by others (the default umask): refused before it is read.
    assert_fails(&f.cairn(&bad, &["ls"]), 2, "chmod 600");
    std::fs::set_permissions(&bad, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    assert_fails(&f.cairn(&bad, &["ls"]), 2, "not a JSON array of bytes");
    assert_fails(
        &f.cairn(&f.dir.path().join("missing.json"), &["ls"]),
        2,
        "missing.json",
    );
    let out = Command::new(env!("CARGO_BIN_EXE_cairn"))
        .args([
            "--url",
            "http://127.0.0.1:9",
            "--keypair",
            key.to_str().unwrap(),
            "market",
            "info",
        ])
        .output()
        .unwrap();
    assert_fails(&out, 2, "cannot reach the RPC endpoint http://127.0.0.1:9");
    let broke = f.dir.path().join("broke.json");
    cairn_cli::context::write_keypair(&broke, &Keypair::new()).unwrap();
    assert_fails(
        &f.cairn(
            &broke,
            &[
                "provider",
                "register",
                "--endpoint",
                "h:1",
                "--capacity",
                "1GiB",
                "--price",
                "1",
            ],
        ),
        1,
        "no SOL for the fee",
    );
    assert_fails(
        &f.cairn(
            &key,
            &[
                "--program-id",
                &Pubkey::new_unique().to_string(),
                "market",
                "info",
            ],
        ),
        2,
        "--program-id",
    );
    assert_fails(
        &f.cairn(&key, &["provider", "deregister"]),
        1,
        "2 active deal(s)",
    );
    assert_fails(
        &f.cairn(&client_key, &["provider", "info"]),
        1,
        "register it with `cairn provider register`",
    );
}
