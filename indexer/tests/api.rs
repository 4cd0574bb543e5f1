//! Every endpoint over a store built from recorded transactions of a
//! synthetic market: filters, pagination to the end, 400s naming the
//! parameter, and restart safety of the apply path.
use axum::{body::Body, http::Request, Router};
use cairn_indexer::{
    api::{self, Api, Metrics},
    ingest,
    store::Store,
    synthetic::{self, Shape},
};
use serde_json::Value;
use std::{collections::HashSet, sync::Arc};
use tower::ServiceExt;

/// Providers 0 and 4 fail odd epochs; nobody opens epoch 3; provider 6's deals
/// stay proposed.
const SHAPE: Shape = Shape {
    providers: 7,
    clients: 5,
    deals_per_provider: 13,
    epochs: 4,
    fail_every: 4,
    void_every: 3,
};

fn indexed(dir: &std::path::Path) -> (Router, synthetic::Expected) {
    let store = Store::open(dir).unwrap();
    let (txs, expected) = synthetic::market(SHAPE);
    for chunk in txs.chunks(10) {
        ingest::apply(&store, chunk).unwrap();
    }
    let app = api::router(Api::new(Arc::new(store), Arc::new(Metrics::default())));
    (app, expected)
}

async fn get(app: &Router, uri: &str) -> (u16, Value) {
    let res = app
        .clone()
        .oneshot(Request::get(uri).body(Body::empty()).unwrap())
        .await
        .unwrap();
    let status = res.status().as_u16();
    let bytes = axum::body::to_bytes(res.into_body(), 1 << 26)
        .await
        .unwrap();
    let value = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    (status, value)
}

/// Follows `next_cursor` to the end; panics on a duplicate.
async fn all_pages(app: &Router, base: &str, limit: usize, id: &str) -> Vec<Value> {
    let sep = if base.contains('?') { '&' } else { '?' };
    let mut items = Vec::new();
    let mut seen = HashSet::new();
    let mut cursor: Option<String> = None;
    loop {
        let uri = match &cursor {
            None => format!("{base}{sep}limit={limit}"),
            Some(c) => format!("{base}{sep}limit={limit}&cursor={c}"),
        };
        let (status, page) = get(app, &uri).await;
        assert_eq!(status, 200, "{uri}: {page}");
        let page_items = page["items"].as_array().unwrap();
        assert!(page_items.len() <= limit);
        for item in page_items {
            assert!(
                seen.insert(item[id].to_string()),
                "{uri}: duplicate {}",
                item[id]
            );
            items.push(item.clone());
        }
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return items,
        }
    }
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn listings_page_to_the_end_without_duplicates_or_gaps_and_filters_match() {
    let dir = tempfile::tempdir().unwrap();
    let (app, exp) = indexed(dir.path());
    rt().block_on(async {
        let (_, stats) = get(&app, "/v1/stats").await;
        assert_eq!(stats["providers"], exp.providers);
        assert_eq!(stats["deals"], exp.deals);
        assert_eq!(stats["active_deals"], exp.active_deals);
        assert_eq!(
            stats["stored_bytes"],
            exp.active_deals * synthetic::SHARD_BYTES
        );
        assert_eq!(stats["events"], exp.events);
        assert_eq!(stats["transactions"], exp.transactions);
        assert_eq!(stats["epochs"], exp.epochs);
        assert_eq!(stats["sessions"], exp.sessions);
        assert_eq!(stats["failed_epochs"], exp.failed_epochs);
        assert_eq!(stats["void_epochs"], exp.void_epochs);
        assert_eq!(stats["settled_proven"], exp.settled_proven);
        assert_eq!(stats["settled_failed"], exp.settled_failed);
        assert_eq!(stats["settled_void"], exp.settled_void);
        assert_eq!(stats["paid"], exp.paid);
        assert_eq!(stats["refunded"], exp.refunded);
        assert_eq!(stats["penalties"], exp.penalties);
        assert_eq!(stats["closed_until"], exp.closed_until);
        // 6 accepting providers, 4 epochs, one void; 2 providers fail epoch 1.
        assert_eq!(
            (exp.sessions, exp.failed_epochs, exp.void_epochs, exp.epochs),
            (6 * 3 - 2, 2, 1, 4)
        );

        for limit in [1, 3, 500] {
            let providers = all_pages(&app, "/v1/providers", limit, "address").await;
            assert_eq!(providers.len() as u64, exp.providers, "limit {limit}");
            let deals = all_pages(&app, "/v1/deals", limit.max(4), "address").await;
            assert_eq!(deals.len() as u64, exp.deals, "limit {limit}");
        }
        let all = all_pages(&app, "/v1/deals", 500, "address").await;

        // Every filter, alone and combined, against the full list.
        let count = |f: &dyn Fn(&Value) -> bool| all.iter().filter(|d| f(d)).count();
        for p in 0..SHAPE.providers {
            let provider = synthetic::key(1, p).to_string();
            let got = all_pages(
                &app,
                &format!("/v1/deals?provider={provider}"),
                4,
                "address",
            )
            .await;
            assert_eq!(got.len(), count(&|d| d["provider"] == provider.as_str()));
            assert_eq!(got.len() as u64, SHAPE.deals_per_provider);
            assert!(got.iter().all(|d| d["provider"] == provider.as_str()));
        }
        for c in 0..SHAPE.clients {
            let client = synthetic::key(5, c).to_string();
            let got = all_pages(&app, &format!("/v1/deals?client={client}"), 2, "address").await;
            assert_eq!(got.len(), count(&|d| d["client"] == client.as_str()));
            assert!(!got.is_empty());
            let provider = synthetic::key(1, 0).to_string();
            let both = all_pages(
                &app,
                &format!("/v1/deals?client={client}&provider={provider}&state=active"),
                2,
                "address",
            )
            .await;
            assert_eq!(
                both.len(),
                count(&|d| d["client"] == client.as_str()
                    && d["provider"] == provider.as_str()
                    && d["state"] == "active")
            );
        }
        for state in ["proposed", "active", "completed", "terminated", "cancelled"] {
            let got = all_pages(&app, &format!("/v1/deals?state={state}"), 5, "address").await;
            assert_eq!(got.len(), count(&|d| d["state"] == state), "{state}");
        }
        let proposed = all_pages(&app, "/v1/deals?state=proposed", 500, "address").await;
        assert_eq!(proposed.len() as u64, SHAPE.deals_per_provider);

        // Epochs, newest first, with their outcome counts.
        let epochs = all_pages(&app, "/v1/epochs", 3, "epoch").await;
        let numbers: Vec<u64> = epochs
            .iter()
            .map(|e| e["epoch"].as_u64().unwrap())
            .collect();
        assert_eq!(numbers, (1..=SHAPE.epochs).rev().collect::<Vec<_>>());
        let count =
            |field: &str| -> u64 { epochs.iter().map(|e| e[field].as_u64().unwrap()).sum() };
        assert_eq!(count("proven"), exp.sessions);
        assert_eq!(count("failed"), exp.failed_epochs);
        assert_eq!(
            count("void"),
            6,
            "6 providers owed proofs in the void epoch"
        );

        // A provider's epochs, newest first, to the end.
        let provider = synthetic::key(1, 0).to_string();
        let outcomes = all_pages(
            &app,
            &format!("/v1/providers/{provider}/epochs"),
            3,
            "epoch",
        )
        .await;
        let outcomes: Vec<(u64, &str)> = outcomes
            .iter()
            .map(|o| (o["epoch"].as_u64().unwrap(), o["outcome"].as_str().unwrap()))
            .collect();
        assert_eq!(
            outcomes,
            [(4, "proven"), (3, "void"), (2, "proven"), (1, "failed")]
        );
    });
}

#[test]
fn details_of_providers_deals_datasets_and_epochs() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _) = indexed(dir.path());
    rt().block_on(async {
        // Provider 0 fails odd epochs (fail_every = 4); nobody opens epoch 3.
        let deal = synthetic::deal_key(0, 0);
        let (status, d) = get(&app, &format!("/v1/deals/{deal}")).await;
        assert_eq!(status, 200, "{d}");
        assert_eq!(d["state"], "active");
        assert_eq!(d["generation"], 0);
        let epochs: Vec<(u64, &str)> = d["epochs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["epoch"].as_u64().unwrap(), e["outcome"].as_str().unwrap()))
            .collect();
        assert_eq!(
            epochs,
            [(1, "failed"), (2, "proven"), (3, "void"), (4, "proven")]
        );
        assert_eq!(
            d["epoch_outcomes"],
            serde_json::json!({"proven": 2, "failed": 1, "void": 1, "pending": 1})
        );
        let settled_from: Vec<u64> = d["settlements"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["from_epoch"].as_u64().unwrap())
            .collect();
        assert_eq!(settled_from, [1, 2, 3, 4]);
        assert_eq!(
            (&d["proven_epochs"], &d["failed_epochs"], &d["void_epochs"]),
            (&2.into(), &1.into(), &1.into())
        );
        assert_eq!(d["settled_until"], 5);
        assert_eq!(d["paid"], 2 * synthetic::PRICE);
        assert_eq!(d["refunded"], 2 * synthetic::PRICE);
        assert_eq!(d["penalty"], synthetic::SLASH);
        assert_eq!(
            d["collateral_left"],
            synthetic::COLLATERAL - synthetic::SLASH
        );
        assert_eq!(d["escrow"], synthetic::PRICE, "one epoch left");

        let provider = synthetic::key(1, 0);
        let (status, p) = get(&app, &format!("/v1/providers/{provider}")).await;
        assert_eq!(status, 200, "{p}");
        // 13 deals, all failing epoch 1 and void in epoch 3.
        assert_eq!(
            (&p["sessions"], &p["failed_epochs"], &p["void_epochs"]),
            (&2.into(), &1.into(), &1.into())
        );
        assert_eq!(p["faults"], 13);
        assert_eq!(p["proofs"], 13 * 2);
        assert_eq!(p["slashed"], 13 * synthetic::SLASH);
        assert_eq!(p["earnings"], 13 * 2 * synthetic::PRICE);
        assert_eq!(p["active_deals"], 13);
        assert_eq!(p["used_bytes"], 13 * synthetic::SHARD_BYTES);
        assert_eq!(
            p["stake_locked"],
            13 * synthetic::COLLATERAL - 13 * synthetic::SLASH
        );
        assert_eq!(p["jailed_from"], Value::Null);
        assert!((p["reliability"].as_f64().unwrap() - 2.0 / 3.0).abs() < 1e-9);
        assert_eq!(
            p["epoch_map"],
            serde_json::json!({"from_epoch": 0, "until_epoch": 5, "outcomes": ".FPVP"})
        );
        // Provider 6 holds no accepted deal: it owed nothing.
        let idle = synthetic::key(1, 6);
        let (_, p) = get(&app, &format!("/v1/providers/{idle}")).await;
        assert_eq!(p["epoch_map"]["outcomes"], ".....");
        assert_eq!(p["reliability"], Value::Null);

        let (status, market) = get(&app, "/v1/market").await;
        assert_eq!(status, 200, "{market}");
        assert_eq!(market["epoch_slots"], synthetic::EPOCH_SLOTS);

        let dataset = hex::encode(synthetic::dataset_id(0, 0));
        let (status, ds) = get(&app, &format!("/v1/datasets/{dataset}")).await;
        assert_eq!(status, 200, "{ds}");
        assert_eq!(ds["shards"], 6);
        assert_eq!(ds["active_shards"], 6);
        assert_eq!(ds["stored_bytes"], 6 * synthetic::SHARD_BYTES);
        assert_eq!(ds["totals_complete"], true);
        assert_eq!(ds["deals"].as_array().unwrap().len(), 6);
        assert_eq!(ds["next_cursor"], Value::Null);
        // The dataset's deals page like a listing, to the same deals.
        let mut paged = Vec::new();
        let mut cursor = String::new();
        loop {
            let (status, page) =
                get(&app, &format!("/v1/datasets/{dataset}?limit=4{cursor}")).await;
            assert_eq!(status, 200, "{page}");
            assert_eq!(page["shards"], 6, "totals on every page");
            paged.extend(page["deals"].as_array().unwrap().iter().cloned());
            match page["next_cursor"].as_str() {
                Some(c) => cursor = format!("&cursor={c}"),
                None => break,
            }
        }
        assert_eq!(&paged, ds["deals"].as_array().unwrap());

        let (status, e) = get(&app, "/v1/epochs/1").await;
        assert_eq!(status, 200, "{e}");
        assert_eq!(e["seed"], hex::encode([1u8; 32]));
        assert_eq!(
            (e["opened"].as_bool(), e["closed"].as_bool()),
            (Some(true), Some(true))
        );
        assert_eq!(e["samples_per_epoch"], synthetic::SAMPLES_PER_EPOCH);
        // 6 accepting providers; 0 and 4 fail epoch 1.
        assert_eq!(
            (e["proven"].as_u64(), e["failed"].as_u64()),
            (Some(4), Some(2))
        );
        assert_eq!(e["proven_list"].as_array().unwrap().len(), 4);
        assert_eq!(e["proven_list"][0]["samples"], 13);
        let failed: Vec<&str> = e["failed_list"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["provider"].as_str().unwrap())
            .collect();
        let (p0, p4) = (
            synthetic::key(1, 0).to_string(),
            synthetic::key(1, 4).to_string(),
        );
        assert_eq!(failed, [p0.as_str(), p4.as_str()]);
        let (status, e) = get(&app, "/v1/epochs/3").await;
        assert_eq!(status, 200, "{e}");
        assert_eq!(
            (e["opened"].as_bool(), e["closed"].as_bool()),
            (Some(false), Some(true))
        );
        assert_eq!(
            (e["void"].as_u64(), e["proven"].as_u64()),
            (Some(6), Some(0))
        );
        assert_eq!(e["void_list"].as_array().unwrap().len(), 6);

        for missing in [
            format!("/v1/deals/{}", synthetic::key(8, 8)),
            format!("/v1/providers/{}", synthetic::key(8, 8)),
            format!("/v1/providers/{}/epochs", synthetic::key(8, 8)),
            format!("/v1/datasets/{}", hex::encode([1u8; 32])),
            "/v1/epochs/999".to_string(),
        ] {
            let (status, body) = get(&app, &missing).await;
            assert_eq!(status, 404, "{missing}: {body}");
            assert!(body["error"].as_str().unwrap().contains("not indexed"));
        }

        let (status, health) = get(&app, "/health").await;
        assert_eq!((status, health["status"].as_str()), (200, Some("ok")));
        let (status, metrics) = get(&app, "/metrics").await;
        assert_eq!(status, 200);
        let metrics = metrics.as_str().unwrap().to_string();
        assert!(
            metrics.contains("\ncairn_indexer_active_deals 78\n"),
            "{metrics}"
        );
        // OpenMetrics (prometheus-client): a counter's samples end in `_total`.
        assert!(metrics.contains("# TYPE cairn_indexer_http_requests counter"));
        assert!(metrics.contains("\ncairn_indexer_http_requests_total "));
        assert!(metrics.ends_with("# EOF\n"), "{metrics}");
        let (status, page) = get(&app, "/").await;
        assert_eq!(status, 200);
        assert!(page
            .as_str()
            .unwrap()
            .contains("<a class=\"brand\" href=\"#/\">Cairn explorer</a>"));
    });
}

#[test]
fn series_search_transactions_and_timelines_agree_with_the_totals() {
    let dir = tempfile::tempdir().unwrap();
    let (app, exp) = indexed(dir.path());
    rt().block_on(async {
        let (_, stats) = get(&app, "/v1/stats").await;
        let (status, series) = get(&app, "/v1/series").await;
        assert_eq!(status, 200, "{series}");
        // Deals are proposed in epoch 0; the last settlement is in epoch
        // `epochs + 1`: one point per epoch, none missing.
        let points = series["points"].as_array().unwrap();
        let epochs: Vec<u64> = points
            .iter()
            .map(|p| p["epoch"].as_u64().unwrap())
            .collect();
        assert_eq!(epochs, (0..=SHAPE.epochs + 1).collect::<Vec<_>>());
        assert_eq!(series["current_epoch"], SHAPE.epochs + 1);
        // What the epochs added sums to the totals; the last point is the totals.
        let sum = |field: &str| {
            points
                .iter()
                .map(|p| p[field].as_u64().unwrap())
                .sum::<u64>()
        };
        assert_eq!(sum("new_deals"), exp.deals);
        assert_eq!(sum("new_paid"), exp.paid);
        assert_eq!(sum("new_slashed"), exp.penalties);
        let last = points.last().unwrap();
        for field in ["stored_bytes", "active_deals", "providers", "deals", "paid"] {
            assert_eq!(last[field], stats[field], "{field}");
        }
        assert_eq!(last["slashed"], exp.penalties);
        // Each point's provider outcomes are its epoch's, as /v1/epochs/{n} has them.
        for p in points {
            let n = p["epoch"].as_u64().unwrap();
            let (status, e) = get(&app, &format!("/v1/epochs/{n}")).await;
            if status == 404 {
                assert_eq!(
                    (&p["proven"], &p["failed"], &p["void"]),
                    (&0.into(), &0.into(), &0.into())
                );
                continue;
            }
            for field in ["proven", "failed", "void", "opened", "closed"] {
                assert_eq!(p[field], e[field], "epoch {n} {field}");
            }
        }
        // A window, and a window past the newest epoch (nothing invented).
        let (_, w) = get(&app, "/v1/series?from=2&until=4").await;
        let w: Vec<u64> = w["points"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["epoch"].as_u64().unwrap())
            .collect();
        assert_eq!(w, [2, 3]);
        let (_, w) = get(&app, "/v1/series?from=4&until=100").await;
        assert_eq!(
            w["points"].as_array().unwrap().len() as u64,
            SHAPE.epochs + 2 - 4
        );

        // Search finds each kind, and says clearly when nothing matches.
        let provider = synthetic::key(1, 0).to_string();
        let deal = synthetic::deal_key(0, 0).to_string();
        let client = synthetic::key(5, 0).to_string();
        let dataset = hex::encode(synthetic::dataset_id(0, 0));
        let (_, timeline) = get(&app, &format!("/v1/deals/{deal}/events")).await;
        let events = timeline["items"].as_array().unwrap().clone();
        let signature = events[0]["signature"].as_str().unwrap().to_string();
        for (q, kind, id) in [
            (provider.clone(), "provider", provider.clone()),
            (deal.clone(), "deal", deal.clone()),
            (client.clone(), "client", client.clone()),
            (dataset.clone(), "dataset", dataset.clone()),
            ("2".to_string(), "epoch", "2".to_string()),
            (format!("  {signature} "), "transaction", signature.clone()),
        ] {
            let (status, found) =
                get(&app, &format!("/v1/search?q={}", q.replace(' ', "%20"))).await;
            assert_eq!(status, 200, "{q}: {found}");
            let matches = found["matches"].as_array().unwrap();
            assert_eq!(matches.len(), 1, "{q}: {found}");
            assert_eq!(
                (
                    matches[0]["kind"].as_str().unwrap(),
                    matches[0]["id"].as_str().unwrap()
                ),
                (kind, id.as_str())
            );
            let (status, entity) = get(&app, matches[0]["path"].as_str().unwrap()).await;
            assert_eq!(status, 200, "{kind} {id}: {entity}");
        }
        for nothing in [
            "999",
            &hex::encode([7u8; 32]),
            "11111111111111111111111111111111",
            "hello",
        ] {
            let (status, found) = get(&app, &format!("/v1/search?q={nothing}")).await;
            assert_eq!(status, 200, "{nothing}");
            assert_eq!(found["matches"], serde_json::json!([]), "{nothing}");
        }

        // The deal's timeline: proposed, accepted, then a settlement per epoch,
        // each event in its transaction.
        let names: Vec<&str> = events.iter().map(|e| e["name"].as_str().unwrap()).collect();
        assert_eq!(&names[..2], ["DealProposed", "DealAccepted"]);
        assert_eq!(
            names.iter().filter(|n| **n == "DealSettled").count() as u64,
            SHAPE.epochs
        );
        for e in &events {
            assert_eq!(e["deal"], deal.as_str());
            let (status, tx) = get(
                &app,
                &format!("/v1/tx/{}", e["signature"].as_str().unwrap()),
            )
            .await;
            assert_eq!(status, 200, "{tx}");
            assert_eq!(tx["slot"], e["slot"]);
            assert!(tx["block_time"].as_i64().unwrap() > synthetic::SYNTHETIC_GENESIS_TIME);
            assert!(
                tx["event_list"].as_array().unwrap().contains(e),
                "{tx} lacks {e}"
            );
        }
        let paged = all_pages(&app, &format!("/v1/deals/{deal}/events"), 2, "seq").await;
        assert_eq!(paged, events);
        let (status, _) = get(&app, &format!("/v1/tx/{}", "1".repeat(88))).await;
        assert_eq!(status, 404);

        // The dataset: escrow left in its active deals, its providers, when it ends.
        let (_, ds) = get(&app, &format!("/v1/datasets/{dataset}")).await;
        let deals = ds["deals"].as_array().unwrap();
        let active = deals.iter().filter(|d| d["state"] == "active");
        assert_eq!(
            ds["escrow_left"],
            active
                .clone()
                .map(|d| d["escrow"].as_u64().unwrap())
                .sum::<u64>()
        );
        assert_eq!(ds["providers"], serde_json::json!([provider]));
        assert_eq!(ds["client"], deals[0]["client"]);
        let ends = active
            .map(|d| d["end_epoch"].as_u64().unwrap())
            .min()
            .unwrap();
        assert_eq!(ds["ends_epoch"], ends);
        assert_eq!(
            ds["epochs_remaining"],
            ends.saturating_sub(SHAPE.epochs + 1)
        );
        let (_, market) = get(&app, "/v1/market").await;
        assert_eq!(market["token_symbol"], api::DEFAULT_TOKEN_SYMBOL);
    });
}

#[test]
fn bad_parameters_get_a_400_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let (app, _) = indexed(dir.path());
    rt().block_on(async {
        for (uri, parameter) in [
            ("/v1/providers?limit=0", "limit"),
            ("/v1/providers?limit=501", "limit"),
            ("/v1/providers?limit=ten", "limit"),
            ("/v1/providers?cursor=zz", "cursor"),
            ("/v1/deals?cursor=", "cursor"),
            ("/v1/deals?client=notakey", "client"),
            ("/v1/deals?provider=111", "provider"),
            ("/v1/deals?state=open", "state"),
            ("/v1/deals?owner=x", "query"),
            ("/v1/deals/xyz", "id"),
            ("/v1/providers/0OIl", "id"),
            ("/v1/providers/xyz/epochs", "id"),
            (
                "/v1/providers/11111111111111111111111111111111/epochs?limit=0",
                "limit",
            ),
            ("/v1/market?x=1", "query"),
            ("/v1/datasets/abc", "id"),
            ("/v1/epochs/-1", "n"),
            ("/v1/epochs?limit=1000", "limit"),
            ("/v1/stats?verbose=1", "query"),
            ("/v1/series?from=x", "from"),
            ("/v1/series?from=5&until=2", "until"),
            ("/v1/series?step=2", "query"),
            ("/v1/search", "q"),
            ("/v1/search?q=%20", "q"),
            ("/v1/deals/xyz/events", "id"),
        ] {
            let (status, body) = get(&app, uri).await;
            assert_eq!(status, 400, "{uri}: {body}");
            assert_eq!(body["parameter"], parameter, "{uri}: {body}");
            assert!(!body["error"].as_str().unwrap().is_empty());
        }
    });
}

#[test]
fn applying_in_any_batching_across_reopens_gives_the_same_store() {
    let (txs, _) = synthetic::market(SHAPE);
    let one = tempfile::tempdir().unwrap();
    let store = Store::open(one.path()).unwrap();
    ingest::apply(&store, &txs).unwrap();
    let whole = store.stats().unwrap();
    drop(store);

    // The same transactions in uneven batches, reopening the store between
    // them and resuming after the stored cursor, as the follower does.
    let two = tempfile::tempdir().unwrap();
    let mut start = 0;
    for size in [1usize, 7, 50, 3].iter().cycle() {
        if start >= txs.len() {
            break;
        }
        let store = Store::open(two.path()).unwrap();
        if let Some(cursor) = store.cursor().unwrap() {
            let next = txs
                .iter()
                .position(|t| t.signature == cursor.signature)
                .unwrap()
                + 1;
            assert_eq!(next, start, "the cursor is the last transaction applied");
        }
        let end = (start + size).min(txs.len());
        ingest::apply(&store, &txs[start..end]).unwrap();
        start = end;
    }
    let store = Store::open(two.path()).unwrap();
    assert_eq!(store.stats().unwrap(), whole);
    // Every entry of every column family, not only the totals.
    let dump = |store: &Store| {
        cairn_indexer::store::cf::ALL
            .iter()
            .map(|cf| store.range(cf, &[], None).unwrap())
            .collect::<Vec<_>>()
    };
    let one = Store::open(one.path()).unwrap();
    assert_eq!(dump(&store), dump(&one));
}

#[test]
fn a_store_of_another_schema_version_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path()).unwrap());
    {
        let db = rocksdb::DB::open_cf(
            &rocksdb::Options::default(),
            dir.path(),
            cairn_indexer::store::cf::ALL,
        )
        .unwrap();
        db.put_cf(
            db.cf_handle(cairn_indexer::store::cf::META).unwrap(),
            cairn_indexer::store::meta::SCHEMA_VERSION,
            99u32.to_be_bytes(),
        )
        .unwrap();
    }
    let err = Store::open(dir.path()).err().expect("refused");
    assert!(err.to_string().contains("schema version 99"), "{err}");

    // A store of version 1 (Proving v1: proofs and faults column families).
    let old = tempfile::tempdir().unwrap();
    {
        let mut opts = rocksdb::Options::default();
        opts.create_if_missing(true);
        opts.create_missing_column_families(true);
        let db = rocksdb::DB::open_cf(&opts, old.path(), ["meta", "proofs", "faults"]).unwrap();
        db.put_cf(
            db.cf_handle("meta").unwrap(),
            cairn_indexer::store::meta::SCHEMA_VERSION,
            1u32.to_be_bytes(),
        )
        .unwrap();
    }
    let err = Store::open(old.path()).err().expect("refused");
    assert!(
        err.to_string().contains("schema version 1,"),
        "the schema error, not RocksDB's: {err}"
    );
}
