//! Hostile input: pathological bodies to every write endpoint, from a caller who may not take its
//! action and from one who may. Each is answered quickly with a 4xx naming what is wrong, and the
//! service stays up for everyone else.

mod helpers;

use std::time::{Duration, Instant};

use finledger::identity::PrincipalKind::{Service, User};
use helpers::app::TestApp;
use helpers::client::ApiClient;
use hyper::{Method, StatusCode};
use serde_json::json;

fn id(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

/// A rules file whose one condition is `condition`.
fn rules_with(condition: &str) -> String {
    format!(
        "[[rule]]\nid = \"r\"\nversion = 1\ndescription = \"d\"\ncondition = \"{condition}\"\naction = \"deny\"\n\
         score = 1\nmode = \"enforce\"\non_error = \"deny\"\nreason = \"r\"\n"
    )
}

/// The bodies no endpoint should choke on, by name.
fn pathological() -> Vec<(&'static str, Vec<u8>)> {
    let deep_json = format!("{}{}", "[".repeat(30_000), "]".repeat(30_000));
    let huge_string = json!({ "id": "a".repeat(10 << 20) }).to_string();
    let mut invalid_utf8 = b"{\"id\": \"".to_vec();
    invalid_utf8.extend_from_slice(&[0xff, 0xfe, 0xc3]);
    invalid_utf8.extend_from_slice(b"\"}");
    // The condition that overflowed the compiler's stack: a long chain of additions.
    let chain = json!({ "rules": rules_with(&format!("{}1 > 0", "1+".repeat(100_000))) }).to_string();
    let short_chain = json!({ "rules": rules_with(&format!("{}1 > 0", "1+".repeat(1_000))) }).to_string();
    let nested = json!({ "rules": rules_with(&format!("{}true{}", "(".repeat(1_000), ")".repeat(1_000))) }).to_string();
    vec![
        ("deep JSON", deep_json.into_bytes()),
        ("a 10 MB string", huge_string.into_bytes()),
        ("invalid UTF-8", invalid_utf8),
        ("a 200 kB CEL chain", chain.into_bytes()),
        ("a CEL chain of 1,000 operators", short_chain.into_bytes()),
        ("CEL nested 1,000 deep", nested.into_bytes()),
    ]
}

/// Posts `body` to `path` and checks the answer is a 4xx given within a few seconds.
async fn refused(client: &ApiClient, path: &str, name: &str, body: &[u8]) -> (StatusCode, String) {
    let started = Instant::now();
    let answer = client
        .send(Method::POST, path, "application/json", body.to_vec())
        .await
        .unwrap_or_else(|error| panic!("{path} with {name}: no answer: {error}"));
    let elapsed = started.elapsed();
    assert!(
        answer.status.is_client_error(),
        "{path} with {name}: {} {}",
        answer.status,
        answer.text
    );
    assert!(
        elapsed < Duration::from_secs(10),
        "{path} with {name}: took {elapsed:?}"
    );
    (answer.status, answer.code().to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pathological_bodies_get_quick_4xx_answers_and_the_service_stays_up() {
    let app = TestApp::spawn().await;
    let payments = app.payments();
    for n in [1, 2] {
        let answer = payments
            .post("/v1/accounts", &json!({"id": id(n), "currency": "USD", "code": 1}))
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    }
    let pending = json!({"id": id(10), "debit_account_id": id(1), "credit_account_id": id(2), "amount": "1.00",
                         "currency": "USD", "code": 1, "pending": {"timeout_s": 3600}});
    assert_eq!(
        payments.post("/v1/transfers", &pending).await.status,
        StatusCode::CREATED
    );
    let auditor = app.client(User, "auditor");
    let analyst = app.console_for("analyst-a", true);
    let payouts = app.client(Service, "payouts");
    // (endpoint, a caller who may take its action, one who may not)
    let endpoints: Vec<(String, &ApiClient, &ApiClient)> = vec![
        ("/v1/accounts".into(), &payments, &auditor),
        ("/v1/transfers".into(), &payments, &auditor),
        ("/v1/transfers/batch".into(), &payments, &auditor),
        (format!("/v1/transfers/{}/post", id(10)), &payments, &auditor),
        (format!("/v1/transfers/{}/void", id(10)), &payments, &auditor),
        ("/v1/fraud/rulesets".into(), &analyst, &payments),
        ("/v1/fraud/backtest".into(), &analyst, &payments),
        ("/v1/settlements".into(), &payouts, &payments),
    ];
    let bodies = pathological();
    for (path, allowed, refused_caller) in &endpoints {
        for (name, body) in &bodies {
            let (status, code) = refused(refused_caller, path, name, body).await;
            assert_eq!(
                (status, code.as_str()),
                (StatusCode::FORBIDDEN, "forbidden"),
                "{path} with {name}"
            );
            let (status, code) = refused(allowed, path, name, body).await;
            assert_ne!(status, StatusCode::FORBIDDEN, "{path} with {name}: {code}");
        }
    }
    // Endpoints that read no body answer as they would without one.
    let bodiless = [
        format!("/v1/reviews/{}/approve", id(10)),
        format!("/v1/reviews/{}/reject", id(10)),
        format!("/v1/fraud/rulesets/{}/activate", "00".repeat(32)),
    ];
    for path in &bodiless {
        for (name, body) in &bodies {
            for caller in [&analyst, &payments] {
                refused(caller, path, name, body).await;
            }
        }
    }
    // The crash: a money-mover is refused before the ruleset is read; a rule author learns the limit.
    let chain = &bodies.iter().find(|(n, _)| *n == "a 200 kB CEL chain").unwrap().1;
    let answer = payments
        .send(Method::POST, "/v1/fraud/rulesets", "application/json", chain.clone())
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.text);
    for (name, limit) in [
        ("a 200 kB CEL chain", "longer than 4096 bytes"),
        ("a CEL chain of 1,000 operators", "more than 256 operators"),
        ("CEL nested 1,000 deep", "nests deeper than 32"),
    ] {
        let body = &bodies.iter().find(|(n, _)| *n == name).unwrap().1;
        let answer = analyst
            .send(Method::POST, "/v1/fraud/rulesets", "application/json", body.clone())
            .await
            .unwrap();
        assert_eq!(
            answer.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{name}: {}",
            answer.text
        );
        assert!(
            answer.body["detail"].as_str().unwrap().contains(limit),
            "{name}: {}",
            answer.text
        );
    }
    // Everyone else is still served.
    let transfer = json!({"id": id(20), "debit_account_id": id(1), "credit_account_id": id(2), "amount": "1.00",
                          "currency": "USD", "code": 1});
    assert_eq!(
        payments.post("/v1/transfers", &transfer).await.status,
        StatusCode::CREATED
    );
    let ops = app.application.as_ref().unwrap().ops_address;
    let health = std::net::TcpStream::connect(ops).is_ok();
    assert!(health, "the operations port answers");
    app.stop().await;
}
