//! Fraud screening on the live path: every new transfer is screened with the shipped ruleset
//! (policies/fraud/), a deny refuses it with no money moved, a review holds it for a fraud analyst,
//! features are exact under concurrent requests and after a restart, and every decision is in the
//! audit log.

mod helpers;

use base64::Engine;
use helpers::app::TestApp;
use helpers::client::ApiClient;
use hyper::StatusCode;
use serde_json::{Value, json};

fn id(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

/// On the shipped sanctioned accounts list.
const SANCTIONED: &str = "5a9c1d9e-0b7e-4c3f-9d2a-00000000dead";

fn transfer(n: u32, debit: &str, credit: &str, amount: &str) -> Value {
    json!({"id": id(n), "debit_account_id": debit, "credit_account_id": credit, "amount": amount,
           "currency": "USD", "code": 1})
}

async fn create_accounts(client: &ApiClient, ids: &[&str]) {
    for account in ids {
        let answer = client
            .post("/v1/accounts", &json!({"id": account, "currency": "USD", "code": 1}))
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    }
}

/// The decoded `fraud.screened` records of the audit log.
async fn screenings(app: &TestApp) -> Vec<audit::record::FraudScreened> {
    let auditor = app.client(finledger::identity::PrincipalKind::User, "auditor");
    let page = auditor.get("/v1/audit/records?from=0&limit=1000").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    page.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(r["bytes"].as_str().unwrap())
                .unwrap();
            match audit::Record::decode(&bytes).unwrap().event {
                audit::Event::FraudScreened(screened) => Some(screened),
                _ => None,
            }
        })
        .collect()
}

#[tokio::test]
async fn a_sanctions_hit_is_refused_with_fraud_denied_and_moves_no_money() {
    let app = TestApp::spawn().await;
    let payments = app.payments();
    create_accounts(&payments, &[&id(1), SANCTIONED]).await;
    let answer = payments
        .post("/v1/transfers", &transfer(10, &id(1), SANCTIONED, "25.00"))
        .await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", answer.text);
    assert_eq!(answer.code(), "fraud_denied");
    let balances = payments.get(&format!("/v1/accounts/{}/balances", id(1))).await;
    assert_eq!(balances.body["balances"]["debits_posted"], "0.00", "{}", balances.text);
    assert_eq!(balances.body["balances"]["debits_pending"], "0.00");
    assert_eq!(
        payments.get(&format!("/v1/transfers/{}", id(10))).await.status,
        StatusCode::NOT_FOUND
    );
    let denied: Vec<_> = screenings(&app)
        .await
        .into_iter()
        .filter(|s| s.verdict == "deny")
        .collect();
    assert_eq!(denied.len(), 1);
    let explanation: Value = serde_json::from_str(&denied[0].explanation).unwrap();
    assert_eq!(explanation["rules"][0]["id"], "sanctions");
    assert_eq!(explanation["features"]["sanctioned_credit_account"], "true");
    assert_eq!(hex::encode(denied[0].ruleset), explanation["ruleset"].as_str().unwrap());
    app.stop().await;
}

/// In a batch, each item is screened on its own: a denied item fails with fraud_denied, a held one is
/// created held, the others are created.
#[tokio::test]
async fn batch_items_are_screened_one_by_one() {
    let app = TestApp::spawn().await;
    let payments = app.payments();
    create_accounts(&payments, &[&id(1), &id(2), SANCTIONED]).await;
    let batch = json!({"transfers": [
        transfer(10, &id(1), &id(2), "10.00"),
        transfer(11, &id(1), SANCTIONED, "10.00"),
        transfer(12, &id(1), &id(2), "6000.00"),
    ]});
    let answer = payments.post("/v1/transfers/batch", &batch).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let results = &answer.body["results"];
    assert_eq!(results[0]["status"], "created");
    assert!(results[0].get("held").is_none());
    assert_eq!(
        (results[1]["status"].as_str(), results[1]["code"].as_str()),
        (Some("failed"), Some("fraud_denied"))
    );
    assert_eq!(results[2]["status"], "created");
    assert_eq!(results[2]["held"], true, "{answer:?}", answer = answer.text);
    app.stop().await;
}

#[tokio::test]
async fn a_review_holds_the_transfer_until_a_fraud_analyst_approves_or_rejects_it() {
    let app = TestApp::spawn().await;
    let payments = app.payments();
    create_accounts(&payments, &[&id(1), &id(2)]).await;
    // A new account sending more than 5,000.00 USD (below payments' own approval limit).
    let held = payments
        .post("/v1/transfers", &transfer(10, &id(1), &id(2), "6000.00"))
        .await;
    assert_eq!(held.status, StatusCode::ACCEPTED, "{}", held.text);
    assert_eq!(
        held.header("location"),
        Some(format!("/v1/reviews/{}", id(10)).as_str())
    );
    assert_eq!(held.body["pending"]["state"], "pending", "{}", held.text);
    let analyst = app.console_for("analyst-a", true);
    let review = analyst.get(&format!("/v1/reviews/{}", id(10))).await;
    assert_eq!(review.status, StatusCode::OK, "{}", review.text);
    assert_eq!(review.body["reason"], "fraud");
    assert_eq!(review.body["status"], "open");
    let explanation = &review.body["explanation"];
    assert_eq!(explanation["verdict"], "review");
    assert_eq!(explanation["rules"][0]["id"], "new-account-large");
    assert_eq!(explanation["rules"][0]["version"], 1);
    assert_eq!(explanation["features"]["debit_age_s"], "0");
    // The initiator cannot post its held transfer; an approver without the fraud role does not decide.
    let post = payments
        .post(&format!("/v1/transfers/{}/post", id(10)), &json!({"id": id(11)}))
        .await;
    assert_eq!(post.status, StatusCode::FORBIDDEN, "{}", post.text);
    let alice = app.console_for("alice", true);
    let approve = format!("/v1/reviews/{}/approve", id(10));
    assert_eq!(alice.post(&approve, &json!({})).await.status, StatusCode::FORBIDDEN);
    let approved = analyst.post(&approve, &json!({})).await;
    assert_eq!(approved.status, StatusCode::CREATED, "{}", approved.text);
    assert_eq!(approved.body["status"], "approved");
    let balances = payments.get(&format!("/v1/accounts/{}/balances", id(2))).await;
    assert_eq!(
        balances.body["balances"]["credits_posted"], "6000.00",
        "{}",
        balances.text
    );

    let second = payments
        .post("/v1/transfers", &transfer(20, &id(1), &id(2), "7000.00"))
        .await;
    assert_eq!(second.status, StatusCode::ACCEPTED, "{}", second.text);
    let rejected = app
        .console_for("analyst-b", true)
        .post(&format!("/v1/reviews/{}/reject", id(20)), &json!({}))
        .await;
    assert_eq!(rejected.status, StatusCode::CREATED, "{}", rejected.text);
    assert_eq!(
        rejected.body["transfer"]["pending"]["state"], "voided",
        "{}",
        rejected.text
    );
    let balances = payments.get(&format!("/v1/accounts/{}/balances", id(2))).await;
    assert_eq!(balances.body["balances"]["credits_posted"], "6000.00");
    assert_eq!(balances.body["balances"]["credits_pending"], "0.00");

    let verdicts: Vec<String> = screenings(&app).await.into_iter().map(|s| s.verdict).collect();
    assert_eq!(
        verdicts,
        ["review", "review"],
        "one record per screened transfer with a hit"
    );
    app.stop().await;
}

/// A held transfer nobody decides expires after the configured hold: its money returns, its review
/// says expired and can no longer be approved.
#[tokio::test]
async fn a_held_transfer_expires_after_the_configured_hold() {
    let app = TestApp::spawn_with(&["--hold-timeout-s", "600"]).await;
    let payments = app.payments();
    create_accounts(&payments, &[&id(1), &id(2)]).await;
    let held = payments
        .post("/v1/transfers", &transfer(10, &id(1), &id(2), "6000.00"))
        .await;
    assert_eq!(held.status, StatusCode::ACCEPTED, "{}", held.text);
    assert_eq!(held.body["pending"]["timeout_s"], 600, "{}", held.text);
    let review = format!("/v1/reviews/{}", id(10));
    // Console tokens are short-lived: each is minted at the clock's time of use.
    let analyst = || app.console_for("analyst-a", true);

    app.clock.advance_s(599);
    create_accounts(&payments, &[&id(3)]).await;
    assert_eq!(analyst().get(&review).await.body["status"], "open");
    app.clock.advance_s(2);
    // The next batch expires it.
    create_accounts(&payments, &[&id(4)]).await;
    let expired = analyst().get(&review).await;
    assert_eq!(expired.body["status"], "expired", "{}", expired.text);
    let approve = analyst().post(&format!("{review}/approve"), &json!({})).await;
    assert_eq!(approve.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", approve.text);
    assert_eq!(approve.body["code"], "pending_transfer_expired", "{}", approve.text);
    let balances = payments.get(&format!("/v1/accounts/{}/balances", id(1))).await;
    assert_eq!(balances.body["balances"]["debits_pending"], "0.00", "{}", balances.text);
    assert_eq!(balances.body["balances"]["debits_posted"], "0.00");
    app.stop().await;
}

/// The analysts' queue: open reviews by default, filtered by status and reason, paginated, and only
/// what the caller may read.
#[tokio::test]
async fn the_review_queue_lists_what_the_caller_may_read_page_by_page() {
    let app = TestApp::spawn().await;
    let payments = app.payments();
    create_accounts(&payments, &[&id(1), &id(2)]).await;
    for n in 10..13 {
        let held = payments
            .post("/v1/transfers", &transfer(n, &id(1), &id(2), "6000.00"))
            .await;
        assert_eq!(held.status, StatusCode::ACCEPTED, "{}", held.text);
    }
    // Above payments' approval limit and hitting the large-amount rule: held for both an approver and
    // a fraud analyst, and in both queues.
    let limit = payments
        .post("/v1/transfers", &transfer(13, &id(1), &id(2), "150000.00"))
        .await;
    assert_eq!(limit.status, StatusCode::ACCEPTED, "{}", limit.text);
    let analyst = app.console_for("analyst-a", true);
    let ids = |page: &Value| -> Vec<String> {
        page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    };
    let open = analyst.get("/v1/reviews").await;
    assert_eq!(open.status, StatusCode::OK, "{}", open.text);
    assert_eq!(
        ids(&open.body),
        [id(10), id(11), id(12), id(13)],
        "analysts read the reviews held for fraud"
    );
    let alice = app.console_for("alice", true).get("/v1/reviews").await;
    assert_eq!(
        ids(&alice.body),
        [id(13)],
        "approvers read the reviews held for their limit"
    );
    assert_eq!(alice.body["data"][0]["reason"], "approval_limit");
    assert_eq!(
        alice.body["data"][0]["explanation"]["fraud"]["rules"][0]["id"],
        "large-amount"
    );
    assert!(
        ids(&payments.get("/v1/reviews").await.body).is_empty(),
        "the initiator reads none"
    );

    let first = analyst.get("/v1/reviews?limit=2").await;
    assert_eq!(ids(&first.body), [id(10), id(11)]);
    assert_eq!(first.body["has_more"], true);
    let cursor = first.body["next_cursor"].as_str().unwrap();
    let second = analyst.get(&format!("/v1/reviews?limit=2&cursor={cursor}")).await;
    assert_eq!(ids(&second.body), [id(12), id(13)], "{}", second.text);

    let approved = analyst
        .post(&format!("/v1/reviews/{}/approve", id(11)), &json!({}))
        .await;
    assert_eq!(approved.status, StatusCode::CREATED, "{}", approved.text);
    assert_eq!(ids(&analyst.get("/v1/reviews").await.body), [id(10), id(12), id(13)]);
    assert_eq!(ids(&analyst.get("/v1/reviews?status=approved").await.body), [id(11)]);
    assert_eq!(
        ids(&analyst.get("/v1/reviews?status=all&reason=fraud").await.body),
        [id(10), id(11), id(12), id(13)]
    );
    assert_eq!(
        ids(&analyst.get("/v1/reviews?status=all&reason=approval_limit").await.body),
        [id(13)]
    );
    for (query, code) in [
        ("status=pending", "invalid_field"),
        ("reason=other", "invalid_field"),
        ("limit=0", "invalid_field"),
        ("cursor=x1", "invalid_cursor"),
    ] {
        let answer = analyst.get(&format!("/v1/reviews?{query}")).await;
        assert_eq!(answer.code(), code, "{query}: {}", answer.text);
    }
    app.stop().await;
}

/// More than 10 transfers from one account within an hour: of 15 sent at once, exactly the 11th to the
/// 15th in commit order are held, however the requests interleave; after a restart the features are
/// rebuilt from the database and the next one is held too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn velocity_is_exact_under_concurrency_and_after_a_restart() {
    let mut app = TestApp::spawn().await;
    let payments = app.payments();
    create_accounts(&payments, &[&id(1), &id(2)]).await;
    let requests = (0..15).map(|n| {
        let client = app.payments();
        async move {
            let answer = client
                .post("/v1/transfers", &transfer(100 + n, &id(1), &id(2), "1.00"))
                .await;
            answer.status
        }
    });
    let statuses = futures_util::future::join_all(requests).await;
    let held = statuses.iter().filter(|s| **s == StatusCode::ACCEPTED).count();
    let created = statuses.iter().filter(|s| **s == StatusCode::CREATED).count();
    assert_eq!((created, held), (10, 5), "{statuses:?}");

    app.restart().await;
    let payments = app.payments();
    let next = payments
        .post("/v1/transfers", &transfer(200, &id(1), &id(2), "1.00"))
        .await;
    assert_eq!(next.status, StatusCode::ACCEPTED, "{}", next.text);
    let review = app
        .console_for("analyst-a", true)
        .get(&format!("/v1/reviews/{}", id(200)))
        .await;
    assert_eq!(
        review.body["explanation"]["features"]["debit_count_1h"], "16",
        "{}",
        review.text
    );
    // An hour later the window is empty again.
    app.clock.set_s(app.clock.now_s() + 3_600);
    let later = payments
        .post("/v1/transfers", &transfer(201, &id(1), &id(2), "1.00"))
        .await;
    assert_eq!(later.status, StatusCode::CREATED, "{}", later.text);
    app.stop().await;
}

/// SoD d over the API: a rule author proposes, nobody activates their own proposal, a rules approver
/// with MFA activates it, it screens the next transfers, and it stays in effect after a restart.
#[tokio::test]
async fn rulesets_are_proposed_by_an_author_and_activated_by_someone_else() {
    let mut app = TestApp::spawn().await;
    let payments = app.payments();
    create_accounts(&payments, &[&id(1), &id(2)]).await;
    let rules = "[[rule]]\nid = \"cap\"\nversion = 1\ndescription = \"No single transfer of 100.00 or more.\"\n\
                 condition = \"transfer.amount_minor >= 10000\"\naction = \"deny\"\nscore = 100\n\
                 mode = \"enforce\"\non_error = \"deny\"\nreason = \"{transfer.amount_minor} minor units\"\n";
    let author = app.console_for("analyst-a", true);
    let invalid = author
        .post(
            "/v1/fraud/rulesets",
            &json!({"rules": rules.replace("amount_minor >=", "amount >=")}),
        )
        .await;
    assert_eq!(invalid.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", invalid.text);
    assert!(
        invalid.body["detail"]
            .as_str()
            .unwrap()
            .starts_with("fraud/rules.toml:5:"),
        "{}",
        invalid.text
    );
    let proposed = author.post("/v1/fraud/rulesets", &json!({"rules": rules})).await;
    assert_eq!(proposed.status, StatusCode::CREATED, "{}", proposed.text);
    assert_eq!(proposed.body["status"], "proposed");
    assert_eq!(proposed.body["proposed_by"], "analyst-a");
    assert_eq!(proposed.body["rules"][0]["id"], "cap");
    let ruleset = proposed.body["id"].as_str().unwrap().to_string();
    let again = author.post("/v1/fraud/rulesets", &json!({"rules": rules})).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(again.header("idempotent-replay"), Some("true"));
    assert_eq!(
        payments
            .post("/v1/fraud/rulesets", &json!({"rules": rules}))
            .await
            .status,
        StatusCode::FORBIDDEN,
        "services do not propose rules"
    );

    let activate = format!("/v1/fraud/rulesets/{ruleset}/activate");
    let own = author.post(&activate, &json!({})).await;
    assert_eq!(own.status, StatusCode::FORBIDDEN, "{}", own.text);
    assert_eq!(
        own.body["policy_ids"],
        json!(["proposer-does-not-activate"]),
        "{}",
        own.text
    );
    let without_mfa = app.console_for("analyst-b", false).post(&activate, &json!({})).await;
    assert_eq!(without_mfa.body["policy_ids"], json!(["sensitive-actions-need-mfa"]));
    assert_eq!(
        payments
            .post("/v1/transfers", &transfer(10, &id(1), &id(2), "150.00"))
            .await
            .status,
        StatusCode::CREATED,
        "not in effect before activation"
    );
    let activated = app.console_for("analyst-b", true).post(&activate, &json!({})).await;
    assert_eq!(activated.status, StatusCode::CREATED, "{}", activated.text);
    assert_eq!(activated.body["status"], "active");
    assert_eq!(activated.body["activations"][0]["activated_by"], "analyst-b");
    let unknown = app
        .console_for("analyst-b", true)
        .post(&format!("/v1/fraud/rulesets/{}/activate", "00".repeat(32)), &json!({}))
        .await;
    assert_eq!(unknown.code(), "ruleset_not_found");

    let denied = payments
        .post("/v1/transfers", &transfer(11, &id(1), &id(2), "150.00"))
        .await;
    assert_eq!(denied.code(), "fraud_denied", "{}", denied.text);
    let small = payments
        .post("/v1/transfers", &transfer(12, &id(1), &id(2), "99.99"))
        .await;
    assert_eq!(small.status, StatusCode::CREATED, "{}", small.text);
    let listed = author.get("/v1/fraud/rulesets").await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text);
    assert_eq!(listed.body["active"], ruleset.as_str());
    assert_eq!(listed.body["data"][0]["status"], "active");

    app.restart().await;
    let payments = app.payments();
    let after_restart = payments
        .post("/v1/transfers", &transfer(13, &id(1), &id(2), "150.00"))
        .await;
    assert_eq!(after_restart.code(), "fraud_denied", "{}", after_restart.text);
    let deny = screenings(&app)
        .await
        .into_iter()
        .filter(|s| s.verdict == "deny")
        .map(|s| hex::encode(s.ruleset))
        .collect::<Vec<_>>();
    assert_eq!(
        deny,
        [ruleset.clone(), ruleset.clone()],
        "each denial names the ruleset"
    );
    let auditor = app.client(finledger::identity::PrincipalKind::User, "auditor");
    let page = auditor.get("/v1/audit/records?from=0&limit=1000").await;
    let changes: Vec<&str> = page.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["type"] == "fraud.ruleset")
        .map(|r| r["principal"].as_str().unwrap())
        .collect();
    assert_eq!(
        changes,
        ["analyst-a", "analyst-b"],
        "the proposal and the activation, each by its actor"
    );
    app.stop().await;
}

/// A backtest of the active ruleset over the recorded transfers gives the decisions the live path
/// gave; a candidate shows per-rule hits, samples and the transfers whose verdict it would change.
#[tokio::test]
async fn a_backtest_gives_the_live_decisions_and_the_difference_a_candidate_makes() {
    let app = TestApp::spawn().await;
    let payments = app.payments();
    create_accounts(&payments, &[&id(1), &id(2), &id(3)]).await;
    let start = "2027-01-15T08:00:00Z";
    let mut live_held = Vec::new();
    for n in 0..14u32 {
        let answer = payments
            .post("/v1/transfers", &transfer(100 + n, &id(1), &id(2), "1.00"))
            .await;
        if answer.status == StatusCode::ACCEPTED {
            live_held.push(id(100 + n));
        }
        app.clock.set_s(app.clock.now_s() + 60);
    }
    let large = payments
        .post("/v1/transfers", &transfer(200, &id(3), &id(2), "6000.00"))
        .await;
    assert_eq!(large.status, StatusCode::ACCEPTED);
    live_held.push(id(200));
    assert_eq!(
        live_held.len(),
        5,
        "the 11th to 14th from account 1, and the new account's large one"
    );

    let analyst = app.console_for("analyst-a", true);
    let live = analyst.post("/v1/fraud/backtest", &json!({"from": start})).await;
    assert_eq!(live.status, StatusCode::OK, "{}", live.text);
    let report = &live.body["report"];
    assert_eq!(report["transfers"], 15);
    assert_eq!(report["candidate"], json!({"allow": 10, "review": 5}), "{report}");
    assert_eq!(report["active"], report["candidate"]);
    assert_eq!(report["changes"], json!([]));
    let velocity = report["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["id"] == "velocity-1h")
        .unwrap();
    assert_eq!(velocity["hits"], 4);
    let mut backtest_held: Vec<String> = report["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["mode"] == "enforce")
        .flat_map(|r| {
            r["samples"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s.as_str().unwrap().to_string())
        })
        .collect();
    backtest_held.sort();
    assert_eq!(backtest_held, live_held, "the same transfers held");

    // A candidate allowing 20 an hour would have let the four velocity holds through.
    let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/policies/fraud/rules.toml")).unwrap();
    let rules = shipped.replace("f.debit_count_1h > 10\"", "f.debit_count_1h > 20\"");
    let proposed = analyst.post("/v1/fraud/rulesets", &json!({"rules": rules})).await;
    assert_eq!(proposed.status, StatusCode::CREATED, "{}", proposed.text);
    let candidate = proposed.body["id"].as_str().unwrap();
    let tried = analyst
        .post("/v1/fraud/backtest", &json!({"ruleset": candidate, "from": start}))
        .await;
    assert_eq!(tried.status, StatusCode::OK, "{}", tried.text);
    let report = &tried.body["report"];
    assert_eq!(report["candidate"], json!({"allow": 14, "review": 1}), "{report}");
    assert_eq!(report["changes"][0]["active"], "review");
    assert_eq!(report["changes"][0]["candidate"], "allow");
    assert_eq!(report["changes"][0]["count"], 4);
    // Nothing moved: the live decisions stand, and a backtest writes nothing.
    let after = analyst.post("/v1/fraud/backtest", &json!({"from": start})).await;
    assert_eq!(after.body["report"], live.body["report"]);
    assert_eq!(
        payments
            .post("/v1/fraud/backtest", &json!({"from": start}))
            .await
            .status,
        StatusCode::FORBIDDEN
    );
    let bad = analyst.post("/v1/fraud/backtest", &json!({"from": "yesterday"})).await;
    assert_eq!(bad.code(), "invalid_field");
    app.stop().await;
}

/// An invalid ruleset stops start-up naming its file, line and column; a bad reload keeps the ruleset
/// in effect, a good one replaces it.
#[tokio::test]
async fn an_invalid_ruleset_stops_start_up_and_a_bad_reload_keeps_the_old_one() {
    let scratch = tempfile::tempdir().unwrap();
    let policies = helpers::copy_policies(scratch.path());
    let rules_file = policies.join("fraud/rules.toml");
    let shipped = std::fs::read_to_string(&rules_file).unwrap();
    let broken = shipped.replace("f.debit_count_1h > 10\"", "f.debit_count_1h > 'ten'\"");
    assert_ne!(broken, shipped);
    std::fs::write(&rules_file, &broken).unwrap();
    let error = match TestApp::try_spawn_in(&policies, &[]).await {
        Ok(_) => panic!("started with an invalid ruleset"),
        Err(error) => format!("{error:#}"),
    };
    assert!(error.contains("fraud/rules.toml:"), "{error}");
    assert!(error.contains("cannot compare int with string"), "{error}");

    std::fs::write(&rules_file, &shipped).unwrap();
    let app = TestApp::spawn_in(&policies, &[]).await;
    let application = app.application.as_ref().unwrap();
    let before = application.fraud.load().hash();
    std::fs::write(&rules_file, &broken).unwrap();
    assert!(application.reload_fraud_rules().await.is_err());
    assert_eq!(application.fraud.load().hash(), before, "the old ruleset stays");
    let payments = app.payments();
    create_accounts(&payments, &[&id(1), SANCTIONED]).await;
    let denied = payments
        .post("/v1/transfers", &transfer(10, &id(1), SANCTIONED, "1.00"))
        .await;
    assert_eq!(denied.code(), "fraud_denied", "still screened by the old ruleset");

    // A valid change: sanctions hits held for review instead of refused.
    let softened = shipped.replace(
        "action = \"deny\"\nscore = 100\nmode = \"enforce\"\non_error = \"deny\"\nreason = \"sanctions list hit\"",
        "action = \"review\"\nscore = 100\nmode = \"enforce\"\non_error = \"deny\"\nreason = \"sanctions list hit\"",
    );
    assert_ne!(softened, shipped);
    std::fs::write(&rules_file, &softened).unwrap();
    assert!(application.reload_fraud_rules().await.unwrap());
    assert_ne!(application.fraud.load().hash(), before);
    let held = payments
        .post("/v1/transfers", &transfer(11, &id(1), SANCTIONED, "1.00"))
        .await;
    assert_eq!(held.status, StatusCode::ACCEPTED, "{}", held.text);
    app.stop().await;
}
