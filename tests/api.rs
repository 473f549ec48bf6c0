//! The REST API as a calling service sees it: the real server on a random port over mutual TLS, a real
//! PostgreSQL, and clients holding real certificates.

mod helpers;

use finledger::identity::PrincipalKind;
use finledger::pki::{CertificateAuthority, Profile, Usage};
use helpers::app::TestApp;
use helpers::client::{ApiClient, Protocol};
use helpers::id;
use hyper::{Method, StatusCode};
use serde_json::{Value, json};
use time::{Duration, OffsetDateTime};

fn account_body(n: u128, flags: Value) -> Value {
    json!({"id": id(n), "currency": "USD", "code": 1, "flags": flags, "metadata": {}})
}

fn transfer_body(n: u128, debit: u128, credit: u128, amount: &str) -> Value {
    json!({"id": id(n), "debit_account_id": id(debit), "credit_account_id": id(credit),
           "amount": amount, "currency": "USD", "code": 1, "linked": false, "metadata": {}})
}

/// Accounts 1 (unconstrained) and 2 (debits must not exceed credits), as `payments`.
async fn two_accounts(client: &ApiClient) {
    let first = client.post("/v1/accounts", &account_body(1, json!({}))).await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    let second = client
        .post(
            "/v1/accounts",
            &account_body(2, json!({"debits_must_not_exceed_credits": true})),
        )
        .await;
    assert_eq!(second.status, StatusCode::CREATED, "{}", second.text);
}

async fn balances(client: &ApiClient, n: u128) -> Value {
    let answer = client.get(&format!("/v1/accounts/{}/balances", id(n))).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    answer.body["balances"].clone()
}

fn assert_problem(answer: &helpers::client::Answer, status: StatusCode, code: &str) {
    assert_eq!(answer.status, status, "{}", answer.text);
    assert_eq!(answer.code(), code, "{}", answer.text);
    assert_eq!(answer.header("content-type"), Some("application/problem+json"));
    assert_eq!(answer.body["request_id"].as_str(), answer.header("x-request-id"));
    assert!(answer.body["detail"].as_str().is_some_and(|d| !d.is_empty()));
}

#[tokio::test]
async fn handshakes_without_a_valid_client_certificate_are_refused() {
    let app = TestApp::spawn().await;
    let now = OffsetDateTime::now_utc();
    let expired = Profile {
        not_before: now - Duration::days(30),
        not_after: now - Duration::days(1),
        ..Profile::client("finledger.dev", PrincipalKind::Service, "payments")
    };
    let server_only = Profile {
        usages: vec![Usage::Server],
        ..Profile::client("finledger.dev", PrincipalKind::Service, "payments")
    };
    let other_ca = CertificateAuthority::generate("another CA").unwrap();
    let refused = [
        ("no certificate", None),
        (
            "another CA",
            Some(
                other_ca
                    .issue(&Profile::client("finledger.dev", PrincipalKind::Service, "payments"))
                    .unwrap(),
            ),
        ),
        ("expired", Some(app.ca.issue(&expired).unwrap())),
        ("without clientAuth", Some(app.ca.issue(&server_only).unwrap())),
    ];
    for (case, issued) in &refused {
        for protocol in [Protocol::Http1, Protocol::Http2] {
            let client = app.client_with(issued.as_ref(), protocol);
            let outcome = client
                .send(Method::GET, "/v1/openapi.json", "application/json", Vec::new())
                .await;
            let error = outcome.expect_err(&format!("{case} over {protocol:?} must not be served"));
            assert!(error.contains("alert") || error.contains("Alert"), "{case}: {error}");
        }
    }
    let valid = app.payments().get("/v1/openapi.json").await;
    assert_eq!(valid.status, StatusCode::OK);
    app.stop().await;
}

#[tokio::test]
async fn a_verified_certificate_naming_an_unknown_principal_gets_403() {
    let app = TestApp::spawn().await;
    let stranger = app.client(PrincipalKind::Service, "mallory");
    assert_problem(
        &stranger.get(&format!("/v1/accounts/{}", id(1))).await,
        StatusCode::FORBIDDEN,
        "unknown_principal",
    );
    // A listed name with the wrong kind is not that principal.
    let impostor = app.client(PrincipalKind::User, "payments");
    assert_problem(
        &impostor.post("/v1/accounts", &account_body(1, json!({}))).await,
        StatusCode::FORBIDDEN,
        "unknown_principal",
    );
    // Without a SPIFFE ID the subject CN names the principal.
    let cn_only = Profile {
        uris: Vec::new(),
        ..Profile::client("finledger.dev", PrincipalKind::Service, "orders")
    };
    let orders = app.client_with(Some(&app.ca.issue(&cn_only).unwrap()), Protocol::Http1);
    let created = orders.post("/v1/accounts", &account_body(7, json!({}))).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.body["owner"], "orders");
    app.stop().await;
}

#[tokio::test]
async fn accounts_are_created_once_and_replays_return_the_original() {
    let app = TestApp::spawn().await;
    let client = app.payments();
    let body = json!({"id": id(1), "currency": "EUR", "code": 7,
                      "flags": {"debits_must_not_exceed_credits": true}, "overdraft_limit": "50.5",
                      "metadata": {"customer": "c-1"}});
    let created = client.post("/v1/accounts", &body).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.body["owner"], "payments");
    assert_eq!(created.body["overdraft_limit"], "50.50");
    assert_eq!(created.body["balances"]["credits_posted"], "0.00");
    assert!(created.header("idempotent-replay").is_none());

    let replay = client.post("/v1/accounts", &body).await;
    assert_eq!(replay.status, StatusCode::OK);
    assert_eq!(replay.header("idempotent-replay"), Some("true"));
    assert_eq!(replay.body, created.body);

    let mut different = body.clone();
    different["code"] = json!(8);
    assert_problem(
        &client.post("/v1/accounts", &different).await,
        StatusCode::CONFLICT,
        "exists_with_different_code",
    );
    let fetched = client.get(&format!("/v1/accounts/{}", id(1))).await;
    assert_eq!(fetched.body, created.body);
    assert_problem(
        &client.get(&format!("/v1/accounts/{}", id(99))).await,
        StatusCode::NOT_FOUND,
        "account_not_found",
    );
    let mut foreign_owner = account_body(3, json!({}));
    foreign_owner["owner"] = json!("orders");
    assert_problem(
        &client.post("/v1/accounts", &foreign_owner).await,
        StatusCode::FORBIDDEN,
        "forbidden",
    );
    app.stop().await;
}

#[tokio::test]
async fn transfers_move_money_and_replays_and_conflicts_are_told_apart() {
    let app = TestApp::spawn().await;
    let client = app.payments();
    two_accounts(&client).await;
    let body = transfer_body(10, 1, 2, "12.34");
    let created = client.post("/v1/transfers", &body).await;
    assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
    assert_eq!(created.body["amount"], "12.34");
    assert_eq!(created.body["kind"], "single");

    let replay = client.post("/v1/transfers", &body).await;
    assert_eq!(replay.status, StatusCode::OK);
    assert_eq!(replay.header("idempotent-replay"), Some("true"));
    assert_eq!(replay.body, created.body);

    let mut more = body.clone();
    more["amount"] = json!("12.35");
    let conflict = client.post("/v1/transfers", &more).await;
    assert_problem(&conflict, StatusCode::CONFLICT, "exists_with_different_amount");
    assert!(conflict.body["detail"].as_str().unwrap().starts_with("amount:"));

    // Account 2 may not be debited beyond its credits.
    let refused = client.post("/v1/transfers", &transfer_body(11, 2, 1, "12.35")).await;
    assert_problem(&refused, StatusCode::UNPROCESSABLE_ENTITY, "exceeds_credits");
    assert!(
        refused.body["detail"]
            .as_str()
            .unwrap()
            .starts_with("debit_account_id:")
    );

    assert_eq!(
        balances(&client, 2).await,
        json!({"debits_posted": "0.00", "credits_posted": "12.34", "debits_pending": "0.00", "credits_pending": "0.00"})
    );
    let fetched = client.get(&format!("/v1/transfers/{}", id(10))).await;
    assert_eq!(fetched.body, created.body);
    assert_problem(
        &client.get(&format!("/v1/transfers/{}", id(11))).await,
        StatusCode::NOT_FOUND,
        "transfer_not_found",
    );
    app.stop().await;
}

#[tokio::test]
async fn bad_input_gets_a_problem_naming_the_field_and_changes_nothing() {
    let app = TestApp::spawn().await;
    let client = app.payments();
    two_accounts(&client).await;
    let send = |content_type: &'static str, body: Vec<u8>| {
        let client = client.clone();
        async move {
            client
                .send(Method::POST, "/v1/transfers", content_type, body)
                .await
                .unwrap()
        }
    };
    let with = |field: &str, value: Value| {
        let mut body = transfer_body(20, 1, 2, "1.00");
        body[field] = value;
        body.to_string().into_bytes()
    };
    let cases: Vec<(Vec<u8>, &str, StatusCode, &str, &str)> = vec![
        (
            with("amount", json!(1)),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "amount:",
        ),
        (
            with("amount", json!("1.001")),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "amount_exceeds_currency_scale",
            "amount:",
        ),
        (
            with("amount", json!("-1")),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "amount_must_not_be_negative",
            "amount:",
        ),
        (
            with("amount", json!("0")),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "amount_must_not_be_zero",
            "amount:",
        ),
        (
            with("amount", json!("1e3")),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_amount",
            "amount:",
        ),
        (
            with("currency", json!("XYZ")),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_currency",
            "currency:",
        ),
        (
            with("currency", json!("EUR")),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "currency_mismatch",
            "currency:",
        ),
        (
            with("debit_account_id", json!("not-a-uuid")),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "debit_account_id:",
        ),
        (
            with("credit_account_id", json!(id(1))),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "accounts_must_be_different",
            "credit_account_id:",
        ),
        (
            with("debit_account_id", json!(id(77))),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "debit_account_not_found",
            "debit_account_id:",
        ),
        (
            with("code", json!(0)),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "code_must_not_be_zero",
            "code:",
        ),
        (
            with("code", json!(70000)),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "code:",
        ),
        (
            with("pending", json!({"timeout_s": 0})),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "timeout_required",
            "pending.timeout_s:",
        ),
        (
            with("metadata", json!([1])),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "metadata_must_be_object",
            "metadata:",
        ),
        (
            with("surprise", json!(true)),
            "application/json",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
            "surprise: unknown field `surprise`",
        ),
        (
            b"{\"id\":".to_vec(),
            "application/json",
            StatusCode::BAD_REQUEST,
            "malformed_json",
            "the body",
        ),
        (
            with("amount", json!("1.00")),
            "text/plain",
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_media_type",
            "the body",
        ),
        (
            vec![b' '; 70 * 1024],
            "application/json",
            StatusCode::PAYLOAD_TOO_LARGE,
            "body_too_large",
            "the body",
        ),
        (
            with(
                "metadata",
                serde_json::from_str(&format!("{}1{}", "{\"a\":".repeat(40), "}".repeat(40))).unwrap(),
            ),
            "application/json",
            StatusCode::BAD_REQUEST,
            "json_too_deep",
            "the body",
        ),
    ];
    for (body, content_type, status, code, detail) in cases {
        let answer = send(content_type, body).await;
        assert_problem(&answer, status, code);
        assert!(
            answer.body["detail"].as_str().unwrap().starts_with(detail),
            "{code}: {}",
            answer.text
        );
    }
    let account = |suffix: &str| format!("/v1/accounts/{}{suffix}", id(2));
    for (path, status, code) in [
        (
            "/v1/accounts/not-a-uuid".to_string(),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            account("/balances?as_of=yesterday"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_as_of",
        ),
        (
            account("/balances?as_of=2999-01-01T00:00:00Z"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_as_of",
        ),
        (
            account("/balances?at=2020-01-01T00:00:00Z"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            account("/transfers?cursor=abc"),
            StatusCode::BAD_REQUEST,
            "invalid_cursor",
        ),
        (
            account("/transfers?limit=0"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            account("/transfers?limit=1001"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        (
            account("/transfers?limit=ten"),
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_field",
        ),
        ("/v1/nowhere".to_string(), StatusCode::NOT_FOUND, "not_found"),
    ] {
        assert_problem(&client.get(&path).await, status, code);
    }
    let wrong_method = client
        .send(Method::DELETE, "/v1/transfers", "application/json", Vec::new())
        .await
        .unwrap();
    assert_problem(&wrong_method, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
    let page = client.get(&account("/transfers")).await;
    assert_eq!(page.body["data"], json!([]), "nothing was written");
    app.stop().await;
}

#[tokio::test]
async fn a_batch_answers_in_order_and_a_failed_linked_chain_leaves_nothing() {
    let app = TestApp::spawn().await;
    let client = app.payments();
    two_accounts(&client).await;
    let mut chain_first = transfer_body(31, 1, 2, "5.00");
    chain_first["linked"] = json!(true);
    let batch = json!({"transfers": [
        transfer_body(30, 1, 2, "10.00"),
        chain_first,
        transfer_body(32, 2, 1, "100.00"),   // fails: account 2 holds only 15.00, so 31 fails too
        transfer_body(33, 2, 1, "3.00"),
    ]});
    let answer = client.post("/v1/transfers/batch", &batch).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let results = answer.body["results"].as_array().unwrap();
    let statuses: Vec<(&str, Option<&str>)> = results
        .iter()
        .map(|r| (r["status"].as_str().unwrap(), r["code"].as_str()))
        .collect();
    assert_eq!(
        statuses,
        [
            ("created", None),
            ("failed", Some("linked_event_failed")),
            ("failed", Some("exceeds_credits")),
            ("created", None)
        ]
    );
    assert_eq!(results[3]["id"], json!(id(33)));
    assert_eq!(results[1]["id"], json!(id(31)));
    assert_problem(
        &client.get(&format!("/v1/transfers/{}", id(31))).await,
        StatusCode::NOT_FOUND,
        "transfer_not_found",
    );
    assert_eq!(balances(&client, 2).await["credits_posted"], "10.00");
    assert_eq!(balances(&client, 2).await["debits_posted"], "3.00");

    let replay = client.post("/v1/transfers/batch", &batch).await;
    let replayed: Vec<&str> = replay.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_str().unwrap())
        .collect();
    assert_eq!(replayed, ["exists", "failed", "failed", "exists"]);

    let invalid = json!({"transfers": [transfer_body(40, 1, 2, "1.00"), transfer_body(41, 1, 2, "0.001")]});
    let refused = client.post("/v1/transfers/batch", &invalid).await;
    assert_problem(
        &refused,
        StatusCode::UNPROCESSABLE_ENTITY,
        "amount_exceeds_currency_scale",
    );
    assert_eq!(refused.body["errors"][0]["index"], 1);
    assert_problem(
        &client.get(&format!("/v1/transfers/{}", id(40))).await,
        StatusCode::NOT_FOUND,
        "transfer_not_found",
    );

    assert_problem(
        &client.post("/v1/transfers/batch", &json!({"transfers": []})).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "batch_empty",
    );
    let too_many: Vec<Value> = (0..8191).map(|n| transfer_body(1000 + n, 1, 2, "0.01")).collect();
    assert_problem(
        &client
            .post("/v1/transfers/batch", &json!({"transfers": too_many}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "batch_too_large",
    );
    app.stop().await;
}

#[tokio::test]
async fn two_phase_transfers_post_in_part_void_and_expire() {
    let app = TestApp::spawn().await;
    let client = app.payments();
    two_accounts(&client).await;
    for (n, timeout_s) in [(50, 3600), (51, 3600), (52, 60)] {
        let mut body = transfer_body(n, 1, 2, "10.00");
        body["pending"] = json!({"timeout_s": timeout_s});
        let created = client.post("/v1/transfers", &body).await;
        assert_eq!(created.status, StatusCode::CREATED, "{}", created.text);
        assert_eq!(created.body["pending"]["state"], "pending");
    }
    assert_eq!(balances(&client, 2).await["credits_pending"], "30.00");

    let post = json!({"id": id(60), "amount": "4.00"});
    let posted = client.post(&format!("/v1/transfers/{}/post", id(50)), &post).await;
    assert_eq!(posted.status, StatusCode::CREATED, "{}", posted.text);
    assert_eq!(posted.body["kind"], "post_pending");
    assert_eq!(posted.body["amount"], "4.00");
    assert_eq!(posted.body["pending_id"], json!(id(50)));
    let again = client.post(&format!("/v1/transfers/{}/post", id(50)), &post).await;
    assert_eq!(again.header("idempotent-replay"), Some("true"));
    assert_problem(
        &client
            .post(&format!("/v1/transfers/{}/post", id(50)), &json!({"id": id(61)}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "pending_transfer_already_posted",
    );
    let voided = client
        .post(&format!("/v1/transfers/{}/void", id(51)), &json!({"id": id(62)}))
        .await;
    assert_eq!(voided.status, StatusCode::CREATED, "{}", voided.text);
    assert_problem(
        &client
            .post(&format!("/v1/transfers/{}/void", id(99)), &json!({"id": id(63)}))
            .await,
        StatusCode::NOT_FOUND,
        "pending_transfer_not_found",
    );
    assert_problem(
        &client
            .post(
                &format!("/v1/transfers/{}/post", id(52)),
                &json!({"id": id(64), "amount": "10.01"}),
            )
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "exceeds_pending_transfer_amount",
    );

    app.clock.advance_s(61);
    assert_problem(
        &client
            .post(&format!("/v1/transfers/{}/post", id(52)), &json!({"id": id(65)}))
            .await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "pending_transfer_expired",
    );
    let expired = client.get(&format!("/v1/transfers/{}", id(52))).await;
    assert_eq!(expired.body["pending"]["state"], "expired");
    assert_eq!(
        client.get(&format!("/v1/transfers/{}", id(50))).await.body["pending"]["state"],
        "posted"
    );
    assert_eq!(
        client.get(&format!("/v1/transfers/{}", id(51))).await.body["pending"]["state"],
        "voided"
    );
    assert_eq!(
        balances(&client, 2).await,
        json!({"debits_posted": "0.00", "credits_posted": "4.00", "debits_pending": "0.00", "credits_pending": "0.00"})
    );
    app.stop().await;
}

#[tokio::test]
async fn balances_as_of_a_past_time_show_the_ledger_as_it_stood() {
    let app = TestApp::spawn().await;
    let client = app.payments();
    two_accounts(&client).await;
    client.post("/v1/transfers", &transfer_body(70, 1, 2, "1.00")).await;
    let mut pending = transfer_body(71, 1, 2, "2.00");
    pending["pending"] = json!({"timeout_s": 100});
    client.post("/v1/transfers", &pending).await;
    let first = client.get(&format!("/v1/accounts/{}/balances", id(2))).await.body["as_of"].clone();
    app.clock.advance_s(10);
    client
        .post(
            &format!("/v1/transfers/{}/post", id(71)),
            &json!({"id": id(72), "amount": "1.50"}),
        )
        .await;
    client.post("/v1/transfers", &transfer_body(73, 1, 2, "4.00")).await;

    let then = client
        .get(&format!(
            "/v1/accounts/{}/balances?as_of={}",
            id(2),
            first.as_str().unwrap()
        ))
        .await;
    assert_eq!(then.status, StatusCode::OK, "{}", then.text);
    assert_eq!(
        then.body["balances"],
        json!({"debits_posted": "0.00", "credits_posted": "1.00", "debits_pending": "0.00", "credits_pending": "2.00"})
    );
    let now = balances(&client, 2).await;
    assert_eq!(now["credits_posted"], "6.50");
    assert_eq!(now["credits_pending"], "0.00");
    app.stop().await;
}

#[tokio::test]
async fn pagination_walks_every_transfer_exactly_once_while_inserts_continue() {
    let app = TestApp::spawn().await;
    let client = app.payments();
    two_accounts(&client).await;
    const TOTAL: u128 = 300;
    let writer = {
        let client = client.clone();
        tokio::spawn(async move {
            for chunk in 0..(TOTAL / 30) {
                let transfers: Vec<Value> = (0..30)
                    .map(|k| transfer_body(1000 + chunk * 30 + k, 1, 2, "0.01"))
                    .collect();
                let answer = client
                    .post("/v1/transfers/batch", &json!({"transfers": transfers}))
                    .await;
                assert_eq!(answer.status, StatusCode::OK);
            }
        })
    };
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    let mut writer = Some(writer);
    loop {
        let query = cursor.as_ref().map(|c| format!("&cursor={c}")).unwrap_or_default();
        let page = client
            .get(&format!("/v1/accounts/{}/transfers?limit=7{query}", id(2)))
            .await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        seen.extend(
            page.body["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["id"].as_str().unwrap().to_string()),
        );
        cursor = Some(page.body["next_cursor"].as_str().unwrap().to_string());
        if !page.body["has_more"].as_bool().unwrap() {
            match writer.take() {
                // Inserts are over and a last pass found nothing more: done.
                None => break,
                Some(task) if task.is_finished() => task.await.unwrap(),
                Some(task) => writer = Some(task),
            }
        }
    }
    let expected: Vec<String> = (0..TOTAL).map(|k| id(1000 + k).to_string()).collect();
    assert_eq!(seen, expected, "every transfer once, in commit order");
    app.stop().await;
}

#[tokio::test]
async fn the_served_openapi_document_is_the_committed_one_and_lists_every_code() {
    let app = TestApp::spawn().await;
    let served = app.client(PrincipalKind::User, "auditor").get("/v1/openapi.json").await;
    let committed = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json")).unwrap();
    assert_eq!(
        finledger::api::openapi::document(),
        committed,
        "regenerate with: finledger openapi > openapi.json"
    );
    assert_eq!(served.body, serde_json::from_str::<Value>(&committed).unwrap());
    let codes = &served.body["components"]["schemas"]["Problem"]["properties"]["code"]["enum"];
    let listed: Vec<&str> = codes.as_array().unwrap().iter().map(|c| c.as_str().unwrap()).collect();
    for code in ledger::ErrorCode::ALL
        .iter()
        .map(|c| c.as_str())
        .chain(finledger::api::problem::ApiCode::ALL.iter().map(|c| c.as_str()))
    {
        assert!(listed.contains(&code), "{code} is missing from openapi.json");
    }
    let statuses: std::collections::BTreeSet<String> = served.body["paths"]
        .as_object()
        .unwrap()
        .values()
        .flat_map(|item| item.as_object().unwrap().values())
        .flat_map(|operation| operation["responses"].as_object().unwrap().keys().cloned())
        .collect();
    let api_statuses = finledger::api::problem::ApiCode::ALL.iter().map(|code| code.status());
    let ledger_statuses = ledger::ErrorCode::ALL
        .iter()
        .map(|code| finledger::api::problem::ledger_status(*code));
    for status in api_statuses.chain(ledger_statuses) {
        assert!(
            statuses.contains(status.as_str()),
            "status {status} is missing from openapi.json"
        );
    }
    app.stop().await;
}

fn hashes(list: &Value) -> Vec<audit::Hash> {
    list.as_array()
        .expect("a list of hashes")
        .iter()
        .map(|h| hex::decode(h.as_str().unwrap()).unwrap().try_into().unwrap())
        .collect()
}

async fn signed_checkpoint(client: &ApiClient, key: &audit::note::NoteVerifier) -> audit::note::Checkpoint {
    let answer = client.get("/v1/audit/checkpoint").await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.header("content-type"), Some("text/plain; charset=utf-8"));
    audit::note::Checkpoint::open(&answer.text, key).expect("a checkpoint signed by the served key")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auditors_get_signed_checkpoints_records_and_proofs_that_verify() {
    let app = TestApp::spawn().await;
    let client = app.payments();
    let auditor = app.client(PrincipalKind::User, "auditor");
    let key_text = client.get("/v1/audit/public-key").await.text;
    let key = audit::note::NoteVerifier::parse(&key_text).expect("the public key in note verifier format");
    two_accounts(&client).await;
    // Records 0 to 3 are the policy set taking effect and the service creating the payouts clearing
    // accounts of its three settlement currencies at start-up; then the two accounts.
    const START: u64 = 4;
    let old = signed_checkpoint(&auditor, &key).await;
    assert_eq!(old.size, START + 2);
    let pending = json!({"id": id(10), "debit_account_id": id(1), "credit_account_id": id(2), "amount": "5.00",
                         "currency": "USD", "code": 1, "pending": {"timeout_s": 3600}});
    assert_eq!(client.post("/v1/transfers", &pending).await.status, StatusCode::CREATED);
    let post = client
        .post(&format!("/v1/transfers/{}/post", id(10)), &json!({"id": id(11)}))
        .await;
    assert_eq!(post.status, StatusCode::CREATED, "{}", post.text);
    let refused = client.post("/v1/transfers", &transfer_body(12, 2, 1, "1000.00")).await;
    assert_eq!(refused.status, StatusCode::UNPROCESSABLE_ENTITY);
    // Three records for the pending transfer and its post (the batch's fraud screening: allowed, no
    // rule hit); two for the refusal (its screening names the shadow round-amount rule it hit).
    let new = signed_checkpoint(&auditor, &key).await;
    assert_eq!(new.size, START + 7);

    // The pending transfer's records: its creation and its post, each proven in the checkpoint, each
    // naming the principal and certificate that asked.
    let proof = client.get(&format!("/v1/transfers/{}/proof", id(10))).await;
    assert_eq!(proof.status, StatusCode::OK, "{}", proof.text);
    assert_eq!(
        audit::note::Checkpoint::open(proof.body["checkpoint"].as_str().unwrap(), &key).unwrap(),
        new
    );
    let records = proof.body["records"].as_array().unwrap();
    let types: Vec<&str> = records.iter().map(|r| r["type"].as_str().unwrap()).collect();
    assert_eq!(types, ["transfer.created", "transfer.posted"]);
    for record in records {
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(record["bytes"].as_str().unwrap())
            .unwrap();
        let seq = record["seq"].as_u64().unwrap();
        audit::merkle::verify_inclusion(&bytes, seq, new.size, &new.root, &hashes(&record["proof"])).unwrap();
        let decoded = audit::Record::decode(&bytes).unwrap();
        assert_eq!(decoded.actor.principal, "payments");
        assert!(decoded.actor.certificate_sha256.is_some());
    }

    let page = auditor
        .get(&format!("/v1/audit/records?from={}&limit=10", START + 3))
        .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    let types: Vec<&str> = page.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "fraud.screened",
            "transfer.posted",
            "fraud.screened",
            "command.rejected"
        ]
    );
    assert_eq!(page.body["next_from"], START + 7);

    let (index, size) = (START + 1, START + 2);
    let inclusion = auditor
        .get(&format!("/v1/audit/proof/inclusion?index={index}&tree_size={size}"))
        .await;
    assert_eq!(inclusion.status, StatusCode::OK, "{}", inclusion.text);
    let first_page = auditor.get(&format!("/v1/audit/records?limit={size}")).await;
    assert_eq!(first_page.body["data"][0]["type"], "policy_set.loaded");
    assert_eq!(first_page.body["data"][1]["type"], "account.created");
    assert_eq!(first_page.body["data"][1]["principal"], "finledger");
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(first_page.body["data"][index as usize]["bytes"].as_str().unwrap())
        .unwrap();
    audit::merkle::verify_inclusion(&bytes, index, size, &old.root, &hashes(&inclusion.body["proof"])).unwrap();

    let consistency = auditor
        .get(&format!("/v1/audit/proof/consistency?old_size={size}"))
        .await;
    assert_eq!(consistency.status, StatusCode::OK, "{}", consistency.text);
    assert_eq!(consistency.body["new_size"], START + 7);
    let proof = hashes(&consistency.body["proof"]);
    audit::merkle::verify_consistency(old.size, &old.root, new.size, &new.root, &proof).unwrap();

    for (path, code) in [
        ("/v1/audit/proof/inclusion?index=11", "invalid_field"),
        ("/v1/audit/proof/inclusion?index=0&tree_size=12", "invalid_field"),
        ("/v1/audit/proof/inclusion?index=x", "invalid_field"),
        ("/v1/audit/proof/consistency?old_size=0", "invalid_field"),
        ("/v1/audit/proof/consistency?old_size=3&new_size=2", "invalid_field"),
        ("/v1/audit/records?limit=0", "invalid_field"),
    ] {
        assert_problem(&auditor.get(path).await, StatusCode::UNPROCESSABLE_ENTITY, code);
    }
    let unknown = client.get(&format!("/v1/transfers/{}/proof", id(99))).await;
    assert_problem(&unknown, StatusCode::NOT_FOUND, "transfer_not_found");
    app.stop().await;
}
