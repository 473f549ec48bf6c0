//! Settlement runs over the API: the net of a merchant's posted movements in its period moves to the
//! payouts clearing account through the commit path, with a settlement record, its audit record and
//! its events; asking again changes nothing.

mod helpers;

use finledger::identity::PrincipalKind;
use finledger::settlement::clearing_account_id;
use helpers::app::TestApp;
use helpers::client::ApiClient;
use helpers::events::{assert_valid, read_all};
use helpers::id;
use hyper::StatusCode;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

async fn created(client: &ApiClient, path: &str, body: Value) -> Value {
    let answer = client.post(path, &body).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{path}: {}", answer.text);
    answer.body
}

async fn transfer(client: &ApiClient, n: u128, debit: u128, credit: u128, amount: &str, extra: Value) {
    let mut body = json!({"id": id(n), "debit_account_id": id(debit), "credit_account_id": id(credit),
                          "amount": amount, "currency": "USD", "code": 1, "metadata": {}});
    body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
    created(client, "/v1/transfers", body).await;
}

fn time(seconds: i64) -> String {
    chrono::DateTime::from_timestamp(seconds, 0).unwrap().to_rfc3339()
}

async fn balances(client: &ApiClient, account: &str) -> Value {
    let answer = client.get(&format!("/v1/accounts/{account}/balances")).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    answer.body["balances"].clone()
}

#[tokio::test]
async fn a_settlement_pays_out_the_net_of_its_period_once() {
    let scratch = tempfile::tempdir().unwrap();
    let policies = helpers::policies_without_fraud_rules(scratch.path());
    helpers::designate_for_settlement(&policies, &[id(1), id(2)]);
    let app = TestApp::spawn_in(&policies, &[]).await;
    let payments = app.payments();
    for n in [1, 2] {
        let body = json!({"id": id(n), "currency": "USD", "code": 1, "flags": {}, "metadata": {}});
        created(&payments, "/v1/accounts", body).await;
    }
    let start = app.clock.now_s();
    // The period: three payments to the merchant (account 2), one of them captured in part, and a refund.
    transfer(&payments, 10, 1, 2, "10.00", json!({})).await;
    transfer(&payments, 11, 1, 2, "5.50", json!({})).await;
    transfer(&payments, 12, 1, 2, "3.00", json!({"pending": {"timeout_s": 3600}})).await;
    created(
        &payments,
        &format!("/v1/transfers/{}/post", id(12)),
        json!({"id": id(13), "amount": "2.00"}),
    )
    .await;
    transfer(&payments, 14, 2, 1, "1.25", json!({})).await;
    app.clock.advance_s(60);
    // After the cut-off: left for the next period.
    transfer(&payments, 15, 1, 2, "7.00", json!({})).await;

    let payouts = app.client(PrincipalKind::Service, "payouts");
    let request = json!({"account": id(2), "cut_off": time(start + 30)});
    let first = payouts.post("/v1/settlements", &request).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    let settlement = first.body.clone();
    // 10.00 + 5.50 + 2.00 - 1.25: the sum of the period's movements, and nothing else.
    assert_eq!(settlement["net"], "16.25");
    assert_eq!(settlement["amount"], "16.25");
    assert_eq!(settlement["transfer_count"], 4);
    assert_eq!(settlement["period_start"], Value::Null);
    assert_eq!(settlement["requested_by"], "payouts");
    let mut hash = Sha256::new();
    for n in [10, 11, 13, 14] {
        hash.update(id(n).as_bytes());
    }
    assert_eq!(settlement["transfers_hash"], hex::encode(hash.finalize()));
    let clearing = clearing_account_id(ledger::Currency::from_code("USD").unwrap()).to_string();
    assert_eq!(settlement["clearing_account"], clearing);

    let auditor = app.client(PrincipalKind::User, "auditor");
    let merchant = balances(&auditor, &id(2).to_string()).await;
    assert_eq!(merchant["credits_posted"], "24.50");
    assert_eq!(merchant["debits_posted"], "17.50");
    assert_eq!(balances(&auditor, &clearing).await["credits_posted"], "16.25");

    // The same request again: the first answer, and nothing moves.
    let events_before = read_all(&payouts, 1000).await.len();
    let again = payouts.post("/v1/settlements", &request).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(again.header("idempotent-replay"), Some("true"));
    assert_eq!(again.body, settlement);
    assert_eq!(balances(&auditor, &clearing).await["credits_posted"], "16.25");
    let read = payouts
        .get(&format!("/v1/settlements/{}", settlement["id"].as_str().unwrap()))
        .await;
    assert_eq!(read.status, StatusCode::OK, "{}", read.text);
    assert_eq!(read.body, settlement);

    // Its events: completed and payout requested, keyed by the merchant, tied to its audit record.
    let events = read_all(&payouts, 1000).await;
    assert_eq!(events.len(), events_before, "a repeated settlement emitted events");
    let mine: Vec<&Value> = events.iter().filter(|e| e["subject"] == settlement["id"]).collect();
    let types: Vec<&str> = mine.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["ledger.settlement.completed.v1", "ledger.payout.requested.v1"]);
    for event in &mine {
        assert_valid(event["type"].as_str().unwrap(), &event["data"]);
        assert_eq!(event["key"], id(2).to_string());
    }
    assert_eq!(mine[1]["data"]["amount"], "16.25");
    assert_eq!(mine[1]["data"]["settlement_transfer_id"], settlement["transfer_id"]);
    let seq = mine[0]["audit_seq"].as_u64().unwrap();
    let record = auditor.get(&format!("/v1/audit/records?from={seq}&limit=1")).await;
    assert_eq!(record.body["data"][0]["type"], "settlement.completed");
    assert_eq!(record.body["data"][0]["principal"], "payouts");

    // The next period starts at the cut-off and leaves the settlement transfer out.
    app.clock.advance_s(60);
    let next = created(
        &payouts,
        "/v1/settlements",
        json!({"account": id(2), "cut_off": time(start + 90)}),
    )
    .await;
    assert_eq!(next["net"], "7.00");
    assert_eq!(next["transfer_count"], 1);
    assert_eq!(next["period_start"], settlement["cut_off"]);

    // A customer account that paid out more than it took in: nothing to pay, no payout event.
    let customer = created(
        &payouts,
        "/v1/settlements",
        json!({"account": id(1), "cut_off": time(start + 90)}),
    )
    .await;
    assert_eq!(customer["net"], "-23.25");
    assert_eq!(customer["amount"], "0.00");
    assert_eq!(customer["transfer_id"], Value::Null);
    let events = read_all(&payouts, 1000).await;
    let customer_events: Vec<&str> = events
        .iter()
        .filter(|e| e["subject"] == customer["id"])
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(customer_events, ["ledger.settlement.completed.v1"]);
    app.stop().await;
}

#[tokio::test]
async fn settlement_requests_are_checked_and_authorized() {
    let scratch = tempfile::tempdir().unwrap();
    let policies = helpers::copy_policies(scratch.path());
    helpers::designate_for_settlement(&policies, &[id(1)]);
    let app = TestApp::spawn_in(&policies, &[]).await;
    let payments = app.payments();
    let body = json!({"id": id(1), "currency": "USD", "code": 1, "flags": {}, "metadata": {}});
    created(&payments, "/v1/accounts", body).await;
    let now = app.clock.now_s();
    let payouts = app.client(PrincipalKind::Service, "payouts");
    let cases = [
        (
            json!({"account": id(1), "cut_off": time(now + 5)}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            json!({"account": id(1), "cut_off": "yesterday"}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            json!({"account": id(9), "cut_off": time(now - 5)}),
            StatusCode::NOT_FOUND,
            "account_not_found",
        ),
        (
            json!({"account": id(1)}),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
    ];
    for (body, status, code) in cases {
        let answer = payouts.post("/v1/settlements", &body).await;
        assert_eq!(answer.status, status, "{body}: {}", answer.text);
        assert_eq!(answer.code(), code, "{body}");
    }
    // Only settlement operators settle; auditors and compliance read.
    let denied = payments
        .post("/v1/settlements", &json!({"account": id(1), "cut_off": time(now - 5)}))
        .await;
    assert_eq!(denied.status, StatusCode::FORBIDDEN, "{}", denied.text);
    let settled = created(
        &payouts,
        "/v1/settlements",
        json!({"account": id(1), "cut_off": time(now - 5)}),
    )
    .await;
    assert_eq!(settled["transfer_count"], 0);
    let path = format!("/v1/settlements/{}", settled["id"].as_str().unwrap());
    assert_eq!(
        app.client(PrincipalKind::User, "auditor").get(&path).await.status,
        StatusCode::OK
    );
    assert_eq!(payments.get(&path).await.status, StatusCode::FORBIDDEN);
    let unknown = payouts.get(&format!("/v1/settlements/{}", id(77))).await;
    assert_eq!(unknown.status, StatusCode::NOT_FOUND);
    assert_eq!(unknown.code(), "settlement_not_found");
    // Settlements go forward: an earlier cut-off than the last is refused.
    let earlier = payouts
        .post("/v1/settlements", &json!({"account": id(1), "cut_off": time(now - 10)}))
        .await;
    assert_eq!(earlier.status, StatusCode::CONFLICT, "{}", earlier.text);
    assert_eq!(earlier.code(), "settlement_out_of_order");
    app.stop().await;
}

#[tokio::test]
async fn configured_accounts_are_settled_daily_at_the_scheduled_time() {
    // The test clock starts at 2027-01-15T08:00:00Z; the run is due at 08:02.
    let account = id(2).to_string();
    let schedule = [
        format!("--settlement-accounts={account}"),
        "--settlement-time-utc=08:02".to_string(),
    ];
    let scratch = tempfile::tempdir().unwrap();
    let policies = helpers::copy_policies(scratch.path());
    helpers::designate_for_settlement(&policies, &[id(2)]);
    let app = TestApp::spawn_in(&policies, &schedule.iter().map(String::as_str).collect::<Vec<_>>()).await;
    assert_eq!(time(app.clock.now_s()), "2027-01-15T08:00:00+00:00");
    let payments = app.payments();
    for n in [1, 2] {
        let body = json!({"id": id(n), "currency": "USD", "code": 1, "flags": {}, "metadata": {}});
        created(&payments, "/v1/accounts", body).await;
    }
    transfer(&payments, 10, 1, 2, "42.00", json!({})).await;
    app.clock.advance_s(180);
    let cut_off = chrono::DateTime::parse_from_rfc3339("2027-01-15T08:02:00Z")
        .unwrap()
        .to_utc();
    let expected = finledger::settlement::settlement_id(id(2), cut_off);
    let payouts = app.client(PrincipalKind::Service, "payouts");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let settlement = loop {
        let answer = payouts.get(&format!("/v1/settlements/{expected}")).await;
        if answer.status == StatusCode::OK {
            break answer.body;
        }
        assert_eq!(answer.status, StatusCode::NOT_FOUND, "{}", answer.text);
        assert!(
            std::time::Instant::now() < deadline,
            "the scheduled settlement did not run"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    };
    assert_eq!(settlement["net"], "42.00");
    assert_eq!(settlement["requested_by"], "settlement-schedule");
    assert_eq!(settlement["cut_off"], "2027-01-15T08:02:00.000000Z");
    app.stop().await;
}
