//! The transactional outbox as GET /v1/events serves it (no Kafka broker configured): one event per
//! posted, voided or expired transfer and per signed checkpoint, in commit order, each naming the
//! audit record of its change, each valid against its type's schema.

mod helpers;

use std::collections::HashMap;

use finledger::identity::PrincipalKind;
use helpers::app::TestApp;
use helpers::client::ApiClient;
use helpers::events::{Consumer, assert_valid, read_all};
use helpers::id;
use hyper::StatusCode;
use serde_json::{Value, json};

fn transfer_body(n: u128, amount: &str, extra: Value) -> Value {
    let mut body = json!({"id": id(n), "debit_account_id": id(1), "credit_account_id": id(2),
           "amount": amount, "currency": "USD", "code": 7, "metadata": {"order": n.to_string()}});
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    body
}

async fn created(client: &ApiClient, path: &str, body: Value) {
    let answer = client.post(path, &body).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{path}: {}", answer.text);
}

#[tokio::test]
async fn every_money_movement_and_checkpoint_is_an_event_tied_to_its_audit_record() {
    let app = TestApp::spawn().await;
    let payments = app.payments();
    for n in [1, 2] {
        let body = json!({"id": id(n), "currency": "USD", "code": 1, "flags": {}, "metadata": {}});
        created(&payments, "/v1/accounts", body).await;
    }
    created(&payments, "/v1/transfers", transfer_body(10, "5.00", json!({}))).await;
    created(
        &payments,
        "/v1/transfers",
        transfer_body(11, "3.00", json!({"pending": {"timeout_s": 60}})),
    )
    .await;
    created(
        &payments,
        &format!("/v1/transfers/{}/post", id(11)),
        json!({"id": id(12), "amount": "2.00"}),
    )
    .await;
    created(
        &payments,
        "/v1/transfers",
        transfer_body(13, "4.00", json!({"pending": {"timeout_s": 60}})),
    )
    .await;
    created(
        &payments,
        &format!("/v1/transfers/{}/void", id(13)),
        json!({"id": id(14)}),
    )
    .await;
    created(
        &payments,
        "/v1/transfers",
        transfer_body(15, "6.00", json!({"pending": {"timeout_s": 10}})),
    )
    .await;
    // A rejected transfer moves nothing and has no event.
    let refused = payments
        .post("/v1/transfers", &transfer_body(16, "1.001", json!({})))
        .await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", refused.text);
    // Past its timeout, the next batch expires the last pending transfer.
    app.clock.advance_s(11);
    let body = json!({"id": id(3), "currency": "USD", "code": 1, "flags": {}, "metadata": {}});
    created(&payments, "/v1/accounts", body).await;

    let reader = app.client(PrincipalKind::Service, "payouts");
    let events = read_all(&reader, 3).await;
    let mut consumer = Consumer::default();
    for event in &events {
        let (kind, key) = (event["type"].as_str().unwrap(), event["key"].as_str().unwrap());
        assert!(consumer.take(
            event["id"].as_str().unwrap(),
            key,
            event["sequence"].as_i64().unwrap(),
            kind
        ));
        assert_valid(kind, &event["data"]);
        assert_eq!(event["source"], "urn:finledger:ledger");
    }
    let seqs: Vec<i64> = events.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(
        seqs,
        (1..=events.len() as i64).collect::<Vec<_>>(),
        "commit order, no gaps"
    );

    // The transfer events, keyed by the credit account, in the order they happened.
    let money: Vec<&Value> = events.iter().filter(|e| e["key"] == id(2).to_string()).collect();
    let summary: Vec<(&str, String, Option<String>, &str)> = money
        .iter()
        .map(|e| {
            let data = &e["data"];
            (
                e["type"].as_str().unwrap(),
                data["transfer_id"].as_str().unwrap().to_string(),
                data["pending_id"].as_str().map(str::to_string),
                data["amount"].as_str().unwrap(),
            )
        })
        .collect();
    let s = |n: u128| id(n).to_string();
    assert_eq!(
        summary,
        [
            ("ledger.transfer.posted.v1", s(10), None, "5.00"),
            ("ledger.transfer.posted.v1", s(12), Some(s(11)), "2.00"),
            ("ledger.transfer.voided.v1", s(14), Some(s(13)), "4.00"),
            ("ledger.transfer.expired.v1", s(15), None, "6.00"),
        ]
    );
    assert_eq!(money[0]["data"]["metadata"], json!({"order": "10"}));
    assert_eq!(money[0]["data"]["debit_account_id"], s(1));

    // Each names the audit record of its change, by sequence number and leaf hash.
    let auditor = app.client(PrincipalKind::User, "auditor");
    let expected_records = [
        "transfer.created",
        "transfer.posted",
        "transfer.voided",
        "transfer.expired",
    ];
    for (event, record_type) in money.iter().zip(expected_records) {
        let seq = event["audit_seq"].as_u64().expect("an audit seq");
        let page = auditor.get(&format!("/v1/audit/records?from={seq}&limit=1")).await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        let record = &page.body["data"][0];
        assert_eq!(record["type"], record_type, "{event}");
        assert_eq!(record["leaf_hash"], event["record_hash"], "{event}");
    }

    // Every signed checkpoint is published, in order, and the last is the one the API serves.
    let checkpoints: Vec<&Value> = events.iter().filter(|e| e["key"] == "audit-log").collect();
    assert!(checkpoints.len() >= 8, "{} checkpoints", checkpoints.len());
    let sizes: Vec<u64> = checkpoints
        .iter()
        .map(|e| e["data"]["size"].as_u64().unwrap())
        .collect();
    assert!(sizes.windows(2).all(|w| w[0] < w[1]), "{sizes:?}");
    let latest = auditor.get("/v1/audit/checkpoint").await;
    assert_eq!(latest.status, StatusCode::OK, "{}", latest.text);
    let last = checkpoints.last().unwrap();
    assert_eq!(last["data"]["note"].as_str(), Some(latest.text.as_str()));

    // Types seen, and nothing else.
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for event in &events {
        *counts.entry(event["type"].as_str().unwrap()).or_default() += 1;
    }
    assert_eq!(counts.len(), 4, "{counts:?}");
    assert_eq!(consumer.count(), events.len());
    app.stop().await;
}

#[tokio::test]
async fn the_event_feed_is_for_event_readers_and_checks_its_parameters() {
    let app = TestApp::spawn().await;
    let denied = app.payments().get("/v1/events").await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN, "{}", denied.text);
    assert_eq!(denied.code(), "forbidden");
    let reader = app.client(PrincipalKind::Service, "payouts");
    for (path, status, code) in [
        ("/v1/events?after=x1", StatusCode::BAD_REQUEST, "invalid_cursor"),
        ("/v1/events?limit=0", StatusCode::UNPROCESSABLE_ENTITY, "invalid_field"),
        (
            "/v1/events?limit=1001",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        ("/v1/events?from=1", StatusCode::UNPROCESSABLE_ENTITY, "invalid_field"),
    ] {
        let answer = reader.get(path).await;
        assert_eq!(answer.status, status, "{path}: {}", answer.text);
        assert_eq!(answer.code(), code, "{path}");
    }
    // Without a broker nothing is delivered: the lag is every event written.
    let status = reader.get("/v1/events/status").await;
    assert_eq!(status.status, StatusCode::OK, "{}", status.text);
    assert_eq!(status.body["relay"], Value::Null);
    assert_eq!(status.body["delivered"], 0);
    assert_eq!(status.body["lag"], status.body["written"]);
    // An empty page keeps the cursor.
    let written = status.body["written"].as_i64().unwrap();
    let tail = reader.get(&format!("/v1/events?after=e{written}")).await;
    assert_eq!(tail.status, StatusCode::OK, "{}", tail.text);
    assert_eq!(tail.body["data"], json!([]));
    assert_eq!(tail.body["next_cursor"], format!("e{written}"));
    app.stop().await;
}
