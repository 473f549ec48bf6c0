//! The money controls against a hostile insider with a valid certificate: each test is an attack a
//! listed service or operator could try, and shows it refused with a specific code, changing nothing,
//! and recorded in the audit log.

mod helpers;

use audit::record::Decision;
use base64::Engine;
use finledger::identity::PrincipalKind::{Service, User};
use finledger::settlement::{clearing_account_id, settlement_id, settlement_transfer_id};
use finledger::store::reviews::decision_transfer_id;
use helpers::app::TestApp;
use helpers::client::ApiClient;
use hyper::StatusCode;
use serde_json::{Value, json};
use uuid::Uuid;

fn id(n: u32) -> Uuid {
    Uuid::parse_str(&format!("00000000-0000-4000-8000-{n:012}")).unwrap()
}

fn usd() -> ledger::Currency {
    ledger::Currency::from_code("USD").unwrap()
}

fn transfer(id: Uuid, debit: Uuid, credit: Uuid, amount: &str) -> Value {
    json!({"id": id, "debit_account_id": debit, "credit_account_id": credit, "amount": amount,
           "currency": "USD", "code": 1})
}

async fn create_accounts(client: &ApiClient, ids: &[Uuid]) {
    for account in ids {
        let answer = client
            .post("/v1/accounts", &json!({"id": account, "currency": "USD", "code": 1}))
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    }
}

fn time(seconds: i64) -> String {
    chrono::DateTime::from_timestamp(seconds, 0).unwrap().to_rfc3339()
}

/// Every audit record so far, decoded.
async fn records(app: &TestApp) -> Vec<audit::Record> {
    let auditor = app.client(User, "auditor");
    let mut records = Vec::new();
    loop {
        let page = auditor
            .get(&format!("/v1/audit/records?from={}&limit=1000", records.len()))
            .await;
        assert_eq!(page.status, StatusCode::OK, "{}", page.text);
        let data = page.body["data"].as_array().unwrap();
        if data.is_empty() {
            return records;
        }
        for record in data {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(record["bytes"].as_str().unwrap())
                .unwrap();
            records.push(audit::Record::decode(&bytes).unwrap());
        }
    }
}

/// The refusals recorded with `code`, as (principal, refused id).
async fn rejections(app: &TestApp, code: &str) -> Vec<(String, Uuid)> {
    records(app)
        .await
        .into_iter()
        .filter_map(|record| match record.event {
            audit::Event::CommandRejected(rejection) if rejection.code == code => {
                Some((record.actor.principal, Uuid::from_bytes(rejection.id)))
            }
            _ => None,
        })
        .collect()
}

/// The service without fraud rules, account 2 designated for settlement; and the policy directory.
async fn spawn_settling_account_2() -> (tempfile::TempDir, TestApp) {
    let scratch = tempfile::tempdir().unwrap();
    let policies = helpers::policies_without_fraud_rules(scratch.path());
    helpers::designate_for_settlement(&policies, &[id(2)]);
    let app = TestApp::spawn_in(&policies, &[]).await;
    (scratch, app)
}

async fn balances(app: &TestApp, account: Uuid) -> Value {
    let answer = app
        .client(User, "auditor")
        .get(&format!("/v1/accounts/{account}/balances"))
        .await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    answer.body["balances"].clone()
}

/// A service creates an account with the id of the payouts clearing account (it would then own it,
/// and every settlement would pay it), or with any other id of the reserved namespace.
#[tokio::test]
async fn squatting_a_system_account_id_is_refused_and_audited() {
    let app = TestApp::spawn().await;
    let payments = app.payments();
    let clearing = clearing_account_id(usd());
    let exact_copy = json!({"id": clearing, "currency": "USD", "code": 9000,
                            "flags": {"debits_must_not_exceed_credits": true},
                            "metadata": {"purpose": "payouts clearing"}});
    let answer = payments.post("/v1/accounts", &exact_copy).await;
    assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", answer.text);
    assert_eq!(answer.code(), "id_reserved");
    assert!(
        answer.body["detail"].as_str().unwrap().starts_with("id:"),
        "{}",
        answer.text
    );
    // The system's own account, created at start-up, is untouched and owned by the service.
    let account = app
        .client(User, "auditor")
        .get(&format!("/v1/accounts/{clearing}"))
        .await;
    assert_eq!(account.status, StatusCode::OK, "{}", account.text);
    assert_eq!(account.body["owner"], "finledger");
    // An id of the namespace that names no account yet is refused all the same.
    let jpy = clearing_account_id(ledger::Currency::from_code("JPY").unwrap());
    let answer = payments
        .post("/v1/accounts", &json!({"id": jpy, "currency": "JPY", "code": 1}))
        .await;
    assert_eq!(answer.code(), "id_reserved", "{}", answer.text);
    let missing = app.client(User, "auditor").get(&format!("/v1/accounts/{jpy}")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(
        rejections(&app, "id_reserved").await,
        [("payments".to_string(), clearing), ("payments".to_string(), jpy)]
    );
    app.stop().await;
}

/// A service creates, ahead of time, the transfers whose ids the service would derive for a review's
/// decision and for a settlement, so that the approval and the payout would fail as duplicates.
#[tokio::test]
async fn squatting_derived_decision_and_settlement_ids_is_refused_and_blocks_nothing() {
    let (_scratch, app) = spawn_settling_account_2().await;
    let payments = app.payments();
    create_accounts(&payments, &[id(1), id(2)]).await;
    let held = payments
        .post("/v1/transfers", &transfer(id(10), id(1), id(2), "150000.00"))
        .await;
    assert_eq!(held.status, StatusCode::ACCEPTED, "{}", held.text);
    let approval = decision_transfer_id(id(10), Decision::Approve);
    let rejection = decision_transfer_id(id(10), Decision::Reject);
    for squat in [approval, rejection] {
        let answer = payments
            .post("/v1/transfers", &transfer(squat, id(1), id(2), "1.00"))
            .await;
        assert_eq!(answer.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", answer.text);
        assert_eq!(answer.code(), "id_reserved");
    }
    let batch =
        json!({"transfers": [transfer(approval, id(1), id(2), "1.00"), transfer(id(11), id(1), id(2), "1.00")]});
    let answer = payments.post("/v1/transfers/batch", &batch).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    assert_eq!(answer.body["results"][0]["code"], "id_reserved");
    assert_eq!(answer.body["results"][1]["status"], "created", "other items go ahead");
    // As the posting of a pending transfer of its own.
    let pending = json!({"id": id(12), "debit_account_id": id(1), "credit_account_id": id(2), "amount": "2.00",
                         "currency": "USD", "code": 1, "pending": {"timeout_s": 3600}});
    assert_eq!(
        payments.post("/v1/transfers", &pending).await.status,
        StatusCode::CREATED
    );
    let post = payments
        .post(&format!("/v1/transfers/{}/post", id(12)), &json!({"id": approval}))
        .await;
    assert_eq!(post.code(), "id_reserved", "{}", post.text);

    let approved = app
        .console_for("alice", true)
        .post(&format!("/v1/reviews/{}/approve", id(10)), &json!({}))
        .await;
    assert_eq!(approved.status, StatusCode::CREATED, "{}", approved.text);
    assert_eq!(approved.body["resolution_id"], approval.to_string());

    let cut_off = app.clock.now_s();
    app.clock.advance_s(10);
    let at = chrono::DateTime::from_timestamp(cut_off, 0).unwrap();
    let payout = settlement_transfer_id(settlement_id(id(2), at));
    for squat in [payout, settlement_id(id(2), at)] {
        let answer = payments
            .post("/v1/transfers", &transfer(squat, id(1), id(2), "1.00"))
            .await;
        assert_eq!(answer.code(), "id_reserved", "{}", answer.text);
    }
    let settled = app
        .client(Service, "payouts")
        .post("/v1/settlements", &json!({"account": id(2), "cut_off": time(cut_off)}))
        .await;
    assert_eq!(settled.status, StatusCode::CREATED, "{}", settled.text);
    assert_eq!(settled.body["transfer_id"], payout.to_string());
    assert_eq!(settled.body["net"], "150001.00");
    let refused = rejections(&app, "id_reserved").await;
    assert_eq!(refused.len(), 6, "{refused:?}");
    assert!(refused.iter().all(|(principal, _)| principal == "payments"));
    app.stop().await;
}

/// A settlement whose clearing account is not the service's own (here one a service created with that
/// id before ids were reserved) moves nothing and names why.
#[tokio::test]
async fn settling_into_a_pre_existing_foreign_clearing_account_fails_closed() {
    let scratch = tempfile::tempdir().unwrap();
    let policies = helpers::policies_without_fraud_rules(scratch.path());
    helpers::designate_for_settlement(&policies, &[id(2)]);
    let database = helpers::fresh_database(helpers::shared_cluster()).await;
    let mut connection = <sqlx::PgConnection as sqlx::Connection>::connect_with(&database)
        .await
        .unwrap();
    let clearing = clearing_account_id(usd());
    sqlx::query(
        "INSERT INTO accounts (id, currency, code, owner, debits_must_not_exceed_credits,
                               credits_must_not_exceed_debits, created_at)
         VALUES ($1, 'USD', 9000, 'payments', false, false, now())",
    )
    .bind(clearing)
    .execute(&mut connection)
    .await
    .unwrap();
    sqlx::query("INSERT INTO balances (account_id) VALUES ($1)")
        .bind(clearing)
        .execute(&mut connection)
        .await
        .unwrap();
    let app = TestApp::try_spawn_on(database, &policies, &[]).await.unwrap();
    let payments = app.payments();
    create_accounts(&payments, &[id(1), id(2)]).await;
    assert_eq!(
        payments
            .post("/v1/transfers", &transfer(id(10), id(1), id(2), "25.00"))
            .await
            .status,
        StatusCode::CREATED
    );
    let cut_off = app.clock.now_s();
    app.clock.advance_s(10);
    let answer = app
        .client(Service, "payouts")
        .post("/v1/settlements", &json!({"account": id(2), "cut_off": time(cut_off)}))
        .await;
    assert_eq!(answer.status, StatusCode::CONFLICT, "{}", answer.text);
    assert_eq!(answer.code(), "clearing_account_invalid");
    assert!(
        answer.body["detail"]
            .as_str()
            .unwrap()
            .contains("exists_with_different_owner"),
        "{}",
        answer.text
    );
    assert_eq!(balances(&app, id(2)).await["debits_posted"], "0.00");
    assert_eq!(balances(&app, clearing).await["credits_posted"], "0.00");
    let at = chrono::DateTime::from_timestamp(cut_off, 0).unwrap();
    let settlement = app
        .client(Service, "payouts")
        .get(&format!("/v1/settlements/{}", settlement_id(id(2), at)))
        .await;
    assert_eq!(settlement.status, StatusCode::NOT_FOUND);
    assert_eq!(
        rejections(&app, "clearing_account_invalid").await,
        [("payouts".to_string(), settlement_transfer_id(settlement_id(id(2), at)))]
    );
    app.stop().await;
}

/// A settlement operator settles a service's float account, which nobody designated for settlement,
/// to sweep it into the clearing account.
#[tokio::test]
async fn settling_an_undesignated_account_is_refused_by_policy() {
    let (_scratch, app) = spawn_settling_account_2().await;
    let payments = app.payments();
    // Account 3 is payments' float; account 2 a merchant designated for settlement.
    create_accounts(&payments, &[id(1), id(2), id(3)]).await;
    for (n, credit, amount) in [(10, id(3), "40.00"), (11, id(2), "25.00")] {
        let answer = payments
            .post("/v1/transfers", &transfer(id(n), id(1), credit, amount))
            .await;
        assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    }
    let cut_off = app.clock.now_s();
    app.clock.advance_s(10);
    let payouts = app.client(Service, "payouts");
    let answer = payouts
        .post("/v1/settlements", &json!({"account": id(3), "cut_off": time(cut_off)}))
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.text);
    assert_eq!(answer.code(), "forbidden");
    assert_eq!(answer.body["policy_ids"], json!(["only-designated-accounts-settle"]));
    assert_eq!(balances(&app, id(3)).await["debits_posted"], "0.00");
    let denied: Vec<(String, String)> = records(&app)
        .await
        .into_iter()
        .filter_map(|record| match record.event {
            audit::Event::AccessDenied(denial) if denial.action == "settlement.create" => {
                Some((record.actor.principal, denial.resource))
            }
            _ => None,
        })
        .collect();
    assert_eq!(denied, [("payouts".to_string(), format!("Account::\"{}\"", id(3)))]);
    // The designated account settles, and its payout is recorded as exempt from fraud screening by a
    // named rule.
    let settled = payouts
        .post("/v1/settlements", &json!({"account": id(2), "cut_off": time(cut_off)}))
        .await;
    assert_eq!(settled.status, StatusCode::CREATED, "{}", settled.text);
    let payout = Uuid::parse_str(settled.body["transfer_id"].as_str().unwrap()).unwrap();
    let exempt: Vec<audit::record::FraudScreened> = records(&app)
        .await
        .into_iter()
        .filter_map(|record| match record.event {
            audit::Event::FraudScreened(screened) if screened.verdict == "exempt" => Some(screened),
            _ => None,
        })
        .collect();
    assert_eq!(exempt.len(), 1);
    assert_eq!(exempt[0].transfers, [*payout.as_bytes()]);
    let explanation: Value = serde_json::from_str(&exempt[0].explanation).unwrap();
    assert_eq!(explanation["exemption"]["id"], "settlement-netting");
    app.stop().await;
}

/// Two instances settle the same merchant account at once, at the same cut-off and at two different
/// ones: one period chain results, and every movement is paid out exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_settling_one_account_at_once_pay_each_movement_once() {
    let (_scratch, app) = spawn_settling_account_2().await;
    let other = app.start_another().await;
    let payments = app.payments();
    create_accounts(&payments, &[id(1), id(2)]).await;
    let start = app.clock.now_s();
    let mut n = 100;
    for _ in 0..3 {
        for amount in ["10.00", "2.50"] {
            n += 1;
            let answer = payments
                .post("/v1/transfers", &transfer(id(n), id(1), id(2), amount))
                .await;
            assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
        }
        app.clock.advance_s(10);
    }
    let here = app.client(Service, "payouts");
    let there = app.client_at(other.api_address.port(), Service, "payouts");
    let settle = |client: &ApiClient, cut_off: i64| {
        let client = client.clone();
        async move {
            client
                .post("/v1/settlements", &json!({"account": id(2), "cut_off": time(cut_off)}))
                .await
        }
    };
    // The same cut-off from both: made once, the other answer is the same settlement.
    let (a, b) = tokio::join!(settle(&here, start + 5), settle(&there, start + 5));
    let mut statuses = [a.status, b.status];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::OK, StatusCode::CREATED],
        "{} / {}",
        a.text,
        b.text
    );
    assert_eq!(a.body["id"], b.body["id"]);
    assert_eq!(a.body["net"], "12.50");
    // Two later cut-offs at once: chained one after the other, or the earlier one refused.
    let (a, b) = tokio::join!(settle(&here, start + 15), settle(&there, start + 25));
    for answer in [&a, &b] {
        assert!(
            answer.status == StatusCode::CREATED
                || (answer.status == StatusCode::CONFLICT && answer.code() == "settlement_out_of_order"),
            "{}",
            answer.text
        );
    }
    let mut connection = <sqlx::PgConnection as sqlx::Connection>::connect_with(app.database())
        .await
        .unwrap();
    let chain: Vec<(
        Option<chrono::DateTime<chrono::Utc>>,
        chrono::DateTime<chrono::Utc>,
        i64,
    )> = sqlx::query_as("SELECT period_start, cut_off, net FROM settlements WHERE account_id = $1 ORDER BY cut_off")
        .bind(id(2))
        .fetch_all(&mut connection)
        .await
        .unwrap();
    assert_eq!(chain[0].0, None);
    for pair in chain.windows(2) {
        assert_eq!(
            pair[1].0,
            Some(pair[0].1),
            "each period starts at the previous cut-off: {chain:?}"
        );
    }
    assert_eq!(chain.last().unwrap().1.timestamp(), start + 25, "{chain:?}");
    let paid: i64 = chain.iter().map(|(_, _, net)| net).sum();
    assert_eq!(paid, 3 * 1250, "every movement paid once: {chain:?}");
    assert_eq!(
        balances(&app, clearing_account_id(usd())).await["credits_posted"],
        "37.50"
    );
    let refused = [&a, &b].iter().filter(|a| a.status == StatusCode::CONFLICT).count();
    assert_eq!(
        rejections(&app, "settlement_out_of_order").await.len(),
        refused,
        "each refusal recorded"
    );
    other.stop().await;
    app.stop().await;
}

/// The shipped rules with the velocity threshold raised: a ruleset an analyst might propose.
fn proposed_rules() -> String {
    let shipped = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/policies/fraud/rules.toml")).unwrap();
    let rules = shipped.replace("f.debit_count_1h > 10\"", "f.debit_count_1h > 20\"");
    assert_ne!(rules, shipped);
    rules
}

/// Proposes `rules` as analyst-a and activates them as analyst-b through `at` (a console of some
/// instance); returns the ruleset's id.
async fn propose_and_activate(app: &TestApp, port: u16, rules: &str) -> String {
    let console = |user: &str| {
        let token = app.tokens.token_for(user, true, app.clock.now_s());
        app.client_at(port, Service, "console").with_bearer(&token)
    };
    let proposed = console("analyst-a")
        .post("/v1/fraud/rulesets", &json!({"rules": rules}))
        .await;
    assert_eq!(proposed.status, StatusCode::CREATED, "{}", proposed.text);
    let ruleset = proposed.body["id"].as_str().unwrap().to_string();
    let activated = console("analyst-b")
        .post(&format!("/v1/fraud/rulesets/{ruleset}/activate"), &json!({}))
        .await;
    assert_eq!(activated.status, StatusCode::CREATED, "{}", activated.text);
    ruleset
}

/// A ruleset activated through the API used to freeze the lists it was proposed with: an account
/// sanctioned afterwards could still be paid.
#[tokio::test]
async fn a_sanctions_list_edited_after_an_activation_takes_effect_on_reload() {
    let scratch = tempfile::tempdir().unwrap();
    let policies = helpers::copy_policies(scratch.path());
    let mut app = TestApp::spawn_in(&policies, &[]).await;
    let payments = app.payments();
    let target = id(66);
    create_accounts(&payments, &[id(1), target]).await;
    let ruleset = propose_and_activate(&app, app.port, &proposed_rules()).await;
    assert_eq!(
        payments
            .post("/v1/transfers", &transfer(id(10), id(1), target, "5.00"))
            .await
            .status,
        StatusCode::CREATED,
        "not sanctioned yet"
    );
    let list = policies.join("lists/sanctioned-accounts.toml");
    let text = std::fs::read_to_string(&list).unwrap();
    std::fs::write(
        &list,
        text.replace("entries = [", &format!("entries = [\n    \"{target}\",")),
    )
    .unwrap();
    assert!(app.application.as_ref().unwrap().reload_fraud_rules().await.unwrap());
    let denied = payments
        .post("/v1/transfers", &transfer(id(11), id(1), target, "5.00"))
        .await;
    assert_eq!(denied.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", denied.text);
    assert_eq!(denied.code(), "fraud_denied");
    let listed = app.console_for("analyst-a", true).get("/v1/fraud/rulesets").await;
    assert_eq!(listed.body["activated"], ruleset.as_str(), "{}", listed.text);
    let active = listed.body["active"].as_str().unwrap().to_string();
    assert_ne!(active, ruleset, "the activated rules with the new lists");
    // The log names the combination that screened, with every file's hash.
    let all = records(&app).await;
    let loaded: Vec<&audit::record::RulesetChanged> = all
        .iter()
        .filter_map(|r| match &r.event {
            audit::Event::RulesetChanged(change) if change.change == "loaded" => Some(change),
            _ => None,
        })
        .collect();
    assert_eq!(loaded.len(), 1);
    assert_eq!(hex::encode(loaded[0].ruleset), active);
    assert!(
        loaded[0]
            .files
            .iter()
            .any(|(name, _)| name == "lists/sanctioned-accounts.toml")
    );
    let denial = all
        .iter()
        .find_map(|r| match &r.event {
            audit::Event::FraudScreened(s) if s.verdict == "deny" => Some(s),
            _ => None,
        })
        .unwrap();
    assert_eq!(hex::encode(denial.ruleset), active);
    // After a restart: the activated rules, with the lists of the files.
    app.restart().await;
    let again = app
        .payments()
        .post("/v1/transfers", &transfer(id(12), id(1), target, "5.00"))
        .await;
    assert_eq!(again.code(), "fraud_denied", "{}", again.text);
    app.stop().await;
}

/// A ruleset activated on one instance used to leave the others screening with the old one until
/// they restarted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_activation_on_one_instance_is_in_force_on_every_other_within_a_poll() {
    let app = TestApp::spawn().await;
    let other = app.start_another().await;
    let port = other.api_address.port();
    let payments = app.client_at(port, Service, "payments");
    create_accounts(&payments, &[id(1), id(2)]).await;
    let rules = "[[rule]]\nid = \"cap\"\nversion = 1\ndescription = \"No single transfer of 100.00 or more.\"\n\
                 condition = \"transfer.amount_minor >= 10000\"\naction = \"deny\"\nscore = 100\n\
                 mode = \"enforce\"\non_error = \"deny\"\nreason = \"{transfer.amount_minor} minor units\"\n";
    let ruleset = propose_and_activate(&app, app.port, rules).await;
    let analyst = || {
        let token = app.tokens.token_for("analyst-a", true, app.clock.now_s());
        app.client_at(port, Service, "console").with_bearer(&token)
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let listed = analyst().get("/v1/fraud/rulesets").await;
        if listed.body["activated"] == ruleset.as_str() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not in effect on the other instance: {}",
            listed.text
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let denied = payments
        .post("/v1/transfers", &transfer(id(10), id(1), id(2), "150.00"))
        .await;
    assert_eq!(denied.code(), "fraud_denied", "{}", denied.text);
    other.stop().await;
    app.stop().await;
}

/// A transfer above its initiator's limit that also hits a fraud rule used to be filed for the
/// approver alone, who could then move it past the fraud analysts.
#[tokio::test]
async fn a_limit_held_transfer_that_hits_a_fraud_rule_needs_both_deciders() {
    let scratch = tempfile::tempdir().unwrap();
    let policies = helpers::copy_policies(scratch.path());
    let mut principals = std::fs::read_to_string(policies.join("principals.toml")).unwrap();
    principals.push_str(
        "\n[principals.frank]\nkind = \"user\"\nroles = [\"approver\", \"fraud-analyst\"]\n\
         approval_limits = { USD = 100000000 }\n",
    );
    std::fs::write(policies.join("principals.toml"), principals).unwrap();
    let app = TestApp::spawn_in(&policies, &[]).await;
    let payments = app.payments();
    create_accounts(&payments, &[id(1), id(2)]).await;
    // 150,000.00: above payments' 100,000.00 limit and at least 50,000.00 (the large-amount rule).
    let held = payments
        .post("/v1/transfers", &transfer(id(10), id(1), id(2), "150000.00"))
        .await;
    assert_eq!(held.status, StatusCode::ACCEPTED, "{}", held.text);
    let review = format!("/v1/reviews/{}", id(10));
    let alice = app.console_for("alice", true);
    let seen = alice.get(&review).await;
    assert_eq!(
        seen.body["reasons"],
        json!(["approval_limit", "fraud"]),
        "{}",
        seen.text
    );
    assert_eq!(seen.body["explanation"]["fraud"]["rules"][0]["id"], "large-amount");
    let queue = |user: &str, reason: &str| {
        let client = app.console_for(user, true);
        let path = format!("/v1/reviews?reason={reason}");
        async move { client.get(&path).await.body["data"][0]["id"].clone() }
    };
    assert_eq!(queue("alice", "approval_limit").await, id(10).to_string());
    assert_eq!(queue("analyst-a", "fraud").await, id(10).to_string());

    // The approver's approval alone does not move it.
    let first = alice.post(&format!("{review}/approve"), &json!({})).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.text);
    assert_eq!(first.body["status"], "open");
    assert_eq!(first.body["awaiting"], json!(["fraud"]));
    assert_eq!(first.body["approvals"][0]["approved_by"], "alice");
    assert_eq!(first.body["transfer"]["pending"]["state"], "pending");
    assert_eq!(balances(&app, id(2)).await["credits_posted"], "0.00");
    let repeated = alice.post(&format!("{review}/approve"), &json!({})).await;
    assert_eq!(repeated.status, StatusCode::OK, "{}", repeated.text);
    assert_eq!(repeated.header("idempotent-replay"), Some("true"));
    assert_eq!(repeated.body["awaiting"], json!(["fraud"]));
    let posted = app
        .console_for("analyst-a", true)
        .post(&format!("{review}/approve"), &json!({}))
        .await;
    assert_eq!(posted.status, StatusCode::CREATED, "{}", posted.text);
    assert_eq!(posted.body["status"], "approved");
    assert_eq!(posted.body["transfer"]["pending"]["state"], "posted");
    assert_eq!(balances(&app, id(2)).await["credits_posted"], "150000.00");
    let approved: Vec<(String, String)> = records(&app)
        .await
        .into_iter()
        .filter_map(|r| match r.event {
            audit::Event::ReviewApproved(a) if a.transfer == *id(10).as_bytes() => Some((r.actor.principal, a.reason)),
            _ => None,
        })
        .collect();
    assert_eq!(
        approved,
        [
            ("alice".to_string(), "approval_limit".to_string()),
            ("analyst-a".to_string(), "fraud".to_string())
        ]
    );

    // One person holding both roles decides one reason only.
    let second = payments
        .post("/v1/transfers", &transfer(id(20), id(1), id(2), "160000.00"))
        .await;
    assert_eq!(second.status, StatusCode::ACCEPTED, "{}", second.text);
    let review = format!("/v1/reviews/{}", id(20));
    let frank = app.console_for("frank", true);
    let once = frank.post(&format!("{review}/approve"), &json!({})).await;
    assert_eq!(once.status, StatusCode::ACCEPTED, "{}", once.text);
    let twice = frank.post(&format!("{review}/approve"), &json!({})).await;
    assert_eq!(twice.status, StatusCode::OK, "{}", twice.text);
    assert_eq!(twice.body["status"], "open");
    assert_eq!(twice.body["awaiting"].as_array().unwrap().len(), 1);
    // Any reason's decider rejects it: it is voided.
    let rejected = app
        .console_for("analyst-b", true)
        .post(&format!("{review}/reject"), &json!({}))
        .await;
    assert_eq!(rejected.status, StatusCode::CREATED, "{}", rejected.text);
    assert_eq!(rejected.body["transfer"]["pending"]["state"], "voided");
    assert_eq!(balances(&app, id(1)).await["debits_pending"], "0.00");
    app.stop().await;
}

/// An initiator splits an amount above its limit into transfers at the limit, in one batch and then
/// one by one, to escape four eyes.
#[tokio::test]
async fn a_split_over_limit_amount_is_held_beyond_the_aggregate_limit() {
    let scratch = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_in(&helpers::policies_without_fraud_rules(scratch.path()), &[]).await;
    // orders: 10,000.00 a transfer, 100,000.00 a day out of one account.
    let orders = app.client(Service, "orders");
    create_accounts(&orders, &[id(1), id(2)]).await;
    let items: Vec<Value> = (0..12)
        .map(|n| transfer(id(100 + n), id(1), id(2), "10000.00"))
        .collect();
    let answer = orders.post("/v1/transfers/batch", &json!({"transfers": items})).await;
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
    let held: Vec<bool> = answer.body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["held"] == true)
        .collect();
    let mut expected = vec![false; 10];
    expected.extend([true, true]);
    assert_eq!(held, expected, "{}", answer.text);
    let review = app
        .console_for("alice", true)
        .get(&format!("/v1/reviews/{}", id(110)))
        .await;
    assert_eq!(review.body["reasons"], json!(["approval_limit"]), "{}", review.text);
    let explanation = &review.body["explanation"];
    assert_eq!(explanation["limit"], "aggregate");
    assert_eq!(explanation["aggregate_limit"], "100000.00");
    assert_eq!(explanation["moved_in_window"], "100000.00");
    assert_eq!(balances(&app, id(2)).await["credits_posted"], "100000.00");
    // One cent more, alone, is held too; a day later the window is empty again.
    let cent = orders
        .post("/v1/transfers", &transfer(id(200), id(1), id(2), "0.01"))
        .await;
    assert_eq!(cent.status, StatusCode::ACCEPTED, "{}", cent.text);
    app.clock.advance_s(86_401);
    let later = orders
        .post("/v1/transfers", &transfer(id(201), id(1), id(2), "0.01"))
        .await;
    assert_eq!(later.status, StatusCode::CREATED, "{}", later.text);
    app.stop().await;
}

/// A client that retried a held transfer was told 200, as if it had moved.
#[tokio::test]
async fn a_replayed_held_transfer_says_it_is_held() {
    let scratch = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_in(&helpers::policies_without_fraud_rules(scratch.path()), &[]).await;
    let payments = app.payments();
    create_accounts(&payments, &[id(1), id(2)]).await;
    let body = transfer(id(10), id(1), id(2), "150000.00");
    let first = payments.post("/v1/transfers", &body).await;
    assert_eq!(first.status, StatusCode::ACCEPTED, "{}", first.text);
    let again = payments.post("/v1/transfers", &body).await;
    assert_eq!(again.status, StatusCode::ACCEPTED, "{}", again.text);
    assert_eq!(again.header("idempotent-replay"), Some("true"));
    assert_eq!(
        again.header("location"),
        Some(format!("/v1/reviews/{}", id(10)).as_str())
    );
    assert_eq!(again.body["pending"]["state"], "pending");
    let batch = payments
        .post("/v1/transfers/batch", &json!({"transfers": [body]}))
        .await;
    assert_eq!(batch.body["results"][0]["status"], "exists", "{}", batch.text);
    assert_eq!(batch.body["results"][0]["held"], true);
    app.stop().await;
}
