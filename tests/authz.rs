//! Authorization over the real API: a table of requests by every kind of caller (a client certificate
//! per principal, a console presenting tokens signed by the test keys), each with the status, problem
//! code and determining policy it must get, and, for every denial, the audit record it must leave.

mod helpers;

use audit::record::{Event, Record};
use base64::Engine;
use finledger::identity::PrincipalKind;
use helpers::app::TestApp;
use helpers::client::ApiClient;
use helpers::tokens::TokenIssuer;
use hyper::StatusCode;
use jsonwebtoken::Algorithm;
use serde_json::{Value, json};

fn id(n: u32) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

/// 2027-01-16 (a Saturday) 12:00 UTC: outside business hours.
const SATURDAY_NOON_S: i64 = 1_800_000_000 + 86_400 + 4 * 3600;

/// Who sends a request.
#[derive(Clone, Copy, Debug)]
enum Who {
    /// A client certificate of this principal.
    Cert(PrincipalKind, &'static str),
    /// The console, with a token for this user (with or without MFA).
    Console(&'static str, bool),
}

/// One request and what it must get.
struct Case {
    name: &'static str,
    who: Who,
    method: &'static str,
    path: String,
    body: Value,
    status: StatusCode,
    /// The problem code of a refusal.
    code: Option<&'static str>,
    /// For a denial: the policy that determined it, or "" when no policy permits the request.
    policy: Option<&'static str>,
}

fn case(name: &'static str, who: Who, method: &'static str, path: String, body: Value, status: StatusCode) -> Case {
    Case {
        name,
        who,
        method,
        path,
        body,
        status,
        code: None,
        policy: None,
    }
}

impl Case {
    /// A 403 `forbidden` determined by `policy` ("" for "nothing permits it").
    fn denied(mut self, policy: &'static str) -> Case {
        self.code = Some("forbidden");
        self.policy = Some(policy);
        self
    }

    fn code(mut self, code: &'static str) -> Case {
        self.code = Some(code);
        self
    }
}

struct Suite {
    app: TestApp,
    auditor: ApiClient,
    key: audit::note::NoteVerifier,
    /// The audit log's size before the current case.
    size: u64,
}

impl Suite {
    fn client(&self, who: Who) -> ApiClient {
        match who {
            Who::Cert(kind, name) => self.app.client(kind, name),
            Who::Console(user, mfa) => self.app.console_for(user, mfa),
        }
    }

    async fn log_size(&self) -> u64 {
        let answer = self.auditor.get("/v1/audit/checkpoint").await;
        assert_eq!(answer.status, StatusCode::OK, "{}", answer.text);
        audit::note::Checkpoint::open(&answer.text, &self.key).unwrap().size
    }

    /// The records appended since `from`.
    async fn records_since(&self, from: u64) -> Vec<Record> {
        records(&self.auditor, from).await
    }

    async fn run(&mut self, case: Case) -> Value {
        let client = self.client(case.who);
        let answer = match case.method {
            "GET" => client.get(&case.path).await,
            _ => client.post(&case.path, &case.body).await,
        };
        let name = case.name;
        assert_eq!(answer.status, case.status, "{name}: {}", answer.text);
        if let Some(code) = case.code {
            assert_eq!(answer.code(), code, "{name}: {}", answer.text);
        }
        let records = self.records_since(self.size).await;
        self.size = self.log_size().await;
        if let Some(policy) = case.policy {
            let ids: Vec<&str> = answer.body["policy_ids"]
                .as_array()
                .map(|ids| ids.iter().map(|i| i.as_str().unwrap()).collect())
                .unwrap_or_default();
            // The named policy is among the determining ones; "" means nothing permitted the request.
            let named = |ids: &[&str]| {
                if policy.is_empty() {
                    ids.is_empty()
                } else {
                    ids.contains(&policy)
                }
            };
            assert!(named(&ids), "{name}: {}", answer.text);
            // The denial is in the audit log: who, what, on what, and the determining policy.
            let denial = records
                .iter()
                .find_map(|r| match &r.event {
                    Event::AccessDenied(d) => Some((r, d)),
                    _ => None,
                })
                .unwrap_or_else(|| panic!("{name}: no access.denied record"));
            let (record, denied) = denial;
            let recorded: Vec<&str> = denied.policy_ids.iter().map(String::as_str).collect();
            assert_eq!(recorded, ids, "{name}: the record names the policies the answer named");
            assert!(denied.erroring_policy_ids.is_empty(), "{name}");
            assert!(record.actor.policy_set.is_some(), "{name}: the policy-set hash");
            match case.who {
                Who::Cert(_, principal) => {
                    assert_eq!(record.actor.principal, principal, "{name}");
                    assert_eq!(record.actor.front_end, None, "{name}");
                }
                Who::Console(user, _) => {
                    assert_eq!(record.actor.principal, user, "{name}");
                    assert_eq!(record.actor.front_end.as_deref(), Some("console"), "{name}");
                }
            }
        } else if answer.status.is_success() && case.method == "POST" {
            // An allowed change carries the policy-set hash that allowed it; nothing was denied.
            assert!(
                records.iter().all(|r| !matches!(r.event, Event::AccessDenied(_))),
                "{name}"
            );
            assert!(
                records
                    .iter()
                    .any(|r| r.actor.policy_set.is_some() && r.actor.principal != "finledger"),
                "{name}: {records:?}"
            );
        }
        answer.body
    }
}

/// Up to 1000 audit records from `from`, read by `auditor` and decoded.
async fn records(auditor: &ApiClient, from: u64) -> Vec<Record> {
    let page = auditor.get(&format!("/v1/audit/records?from={from}&limit=1000")).await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text);
    page.body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(r["bytes"].as_str().unwrap())
                .unwrap();
            Record::decode(&bytes).unwrap()
        })
        .collect()
}

fn account(n: u32) -> Value {
    json!({"id": id(n), "currency": "USD", "code": 1})
}

fn transfer(n: u32, debit: u32, credit: u32, amount: &str) -> Value {
    json!({"id": id(n), "debit_account_id": id(debit), "credit_account_id": id(credit), "amount": amount,
           "currency": "USD", "code": 1})
}

/// The shipped policies, with one more approver, dave, listed as owning account 3 (an orders account),
/// and no fraud rules: this suite is about authorization (tests/fraud.rs covers the rules), and the
/// new accounts here would otherwise trip the shipped new-account rule.
fn policies_with_dave(dir: &std::path::Path) -> std::path::PathBuf {
    let policies = helpers::policies_without_fraud_rules(dir);
    let mut principals = std::fs::read_to_string(policies.join("principals.toml")).unwrap();
    principals.push_str(&format!(
        "\n[principals.dave]\nkind = \"user\"\nroles = [\"approver\"]\naccounts = [\"{}\"]\napproval_limits = {{ USD = 100000000 }}\n",
        id(3)
    ));
    std::fs::write(policies.join("principals.toml"), principals).unwrap();
    policies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_caller_gets_exactly_what_the_policies_allow_and_every_denial_is_audited() {
    use PrincipalKind::{Service, User};
    let scratch = tempfile::tempdir().unwrap();
    let app = TestApp::spawn_in(&policies_with_dave(scratch.path()), &[]).await;
    let auditor = app.client(User, "auditor");
    let key_text = app.payments().get("/v1/audit/public-key").await.text;
    let key = audit::note::NoteVerifier::parse(&key_text).unwrap();
    let mut suite = Suite {
        app,
        auditor,
        key,
        size: 0,
    };
    suite.size = suite.log_size().await;

    let payments = Who::Cert(Service, "payments");
    let orders = Who::Cert(Service, "orders");
    let auditor = Who::Cert(User, "auditor");
    let analyst = Who::Cert(User, "analyst-a");
    let console = Who::Cert(Service, "console");
    let ok = StatusCode::OK;
    let created = StatusCode::CREATED;
    let accepted = StatusCode::ACCEPTED;
    let forbidden = StatusCode::FORBIDDEN;
    let none = Value::Null;
    let review = |n: u32, verb: &str| format!("/v1/reviews/{}/{verb}", id(n));

    let cases = vec![
        // Accounts: created for oneself, read by owners and auditors.
        case(
            "a service creates its own account",
            payments,
            "POST",
            "/v1/accounts".into(),
            account(1),
            created,
        ),
        case(
            "a second own account",
            payments,
            "POST",
            "/v1/accounts".into(),
            account(2),
            created,
        ),
        case(
            "orders creates its own account",
            orders,
            "POST",
            "/v1/accounts".into(),
            account(3),
            created,
        ),
        case(
            "an account for someone else",
            payments,
            "POST",
            "/v1/accounts".into(),
            json!({"id": id(4), "currency": "USD", "code": 1, "owner": "orders"}),
            forbidden,
        )
        .denied(""),
        case(
            "an auditor creates nothing",
            auditor,
            "POST",
            "/v1/accounts".into(),
            account(5),
            forbidden,
        )
        .denied("auditors-never-write"),
        case(
            "an analyst moves no money",
            analyst,
            "POST",
            "/v1/accounts".into(),
            account(6),
            forbidden,
        )
        .denied(""),
        case(
            "the owner reads its account",
            payments,
            "GET",
            format!("/v1/accounts/{}", id(1)),
            none.clone(),
            ok,
        ),
        case(
            "another service cannot",
            orders,
            "GET",
            format!("/v1/accounts/{}", id(1)),
            none.clone(),
            forbidden,
        )
        .denied(""),
        case(
            "an auditor reads any account",
            auditor,
            "GET",
            format!("/v1/accounts/{}/balances", id(1)),
            none.clone(),
            ok,
        ),
        // SoD a: money leaves only accounts the caller owns.
        case(
            "a transfer from an own account",
            payments,
            "POST",
            "/v1/transfers".into(),
            transfer(10, 1, 3, "10.00"),
            created,
        ),
        case(
            "a transfer from someone else's account",
            orders,
            "POST",
            "/v1/transfers".into(),
            transfer(11, 1, 3, "10.00"),
            forbidden,
        )
        .denied(""),
        case(
            "orders pays from its own account",
            orders,
            "POST",
            "/v1/transfers".into(),
            transfer(12, 3, 1, "1.00"),
            created,
        ),
        case(
            "an auditor moves no money",
            auditor,
            "POST",
            "/v1/transfers".into(),
            transfer(13, 1, 2, "1.00"),
            forbidden,
        )
        .denied("auditors-never-write"),
        case(
            "the console alone moves no money",
            console,
            "POST",
            "/v1/transfers".into(),
            transfer(14, 1, 2, "1.00"),
            forbidden,
        )
        .denied(""),
        case(
            "a batch with one foreign debit is refused whole",
            payments,
            "POST",
            "/v1/transfers/batch".into(),
            json!({"transfers": [transfer(15, 1, 2, "1.00"), transfer(16, 3, 1, "1.00")]}),
            forbidden,
        )
        .denied(""),
        case(
            "a batch of own debits",
            payments,
            "POST",
            "/v1/transfers/batch".into(),
            json!({"transfers": [transfer(15, 1, 2, "1.00"), transfer(16, 2, 1, "1.00")]}),
            ok,
        ),
        // Reading transfers: the parties and auditors.
        case(
            "the credited party reads the transfer",
            orders,
            "GET",
            format!("/v1/transfers/{}", id(10)),
            none.clone(),
            ok,
        ),
        case(
            "a stranger cannot",
            analyst,
            "GET",
            format!("/v1/transfers/{}", id(10)),
            none.clone(),
            forbidden,
        )
        .denied(""),
        case(
            "an auditor reads any transfer",
            auditor,
            "GET",
            format!("/v1/transfers/{}", id(10)),
            none.clone(),
            ok,
        ),
        case(
            "a party gets its transfer's proof",
            payments,
            "GET",
            format!("/v1/transfers/{}/proof", id(10)),
            none.clone(),
            ok,
        ),
        // SoD e: the audit log is for auditors.
        case(
            "an auditor reads the audit log",
            auditor,
            "GET",
            "/v1/audit/records?limit=1".into(),
            none.clone(),
            ok,
        ),
        case(
            "a service does not",
            payments,
            "GET",
            "/v1/audit/records?limit=1".into(),
            none.clone(),
            forbidden,
        )
        .denied(""),
        // SoD b: above the initiator's limit (payments: 100,000.00 USD), held for four eyes.
        case(
            "above the limit is held",
            payments,
            "POST",
            "/v1/transfers".into(),
            transfer(20, 1, 3, "200000.00"),
            accepted,
        ),
        case(
            "the initiator cannot post its held transfer",
            payments,
            "POST",
            format!("/v1/transfers/{}/post", id(20)),
            json!({"id": id(21)}),
            forbidden,
        )
        .denied("held-transfers-move-only-by-review"),
        case(
            "nor void it",
            payments,
            "POST",
            format!("/v1/transfers/{}/void", id(20)),
            json!({"id": id(22)}),
            forbidden,
        )
        .denied("held-transfers-move-only-by-review"),
        case(
            "orders' lower limit (10,000.00) holds less",
            orders,
            "POST",
            "/v1/transfers".into(),
            transfer(23, 3, 1, "10000.01"),
            accepted,
        ),
        case(
            "at the limit is not held",
            orders,
            "POST",
            "/v1/transfers".into(),
            transfer(24, 3, 1, "10000.00"),
            created,
        ),
        case(
            "a second held transfer",
            payments,
            "POST",
            "/v1/transfers".into(),
            transfer(25, 1, 2, "150000.00"),
            accepted,
        ),
        case(
            "a third held transfer",
            payments,
            "POST",
            "/v1/transfers".into(),
            transfer(26, 1, 2, "120000.00"),
            accepted,
        ),
        case(
            "a held transfer above alice's limit",
            payments,
            "POST",
            "/v1/transfers".into(),
            transfer(27, 1, 2, "2000000.00"),
            accepted,
        ),
        // Approvals need a person with MFA, the approver role, a limit, and four eyes.
        case(
            "an approver by certificate alone has no MFA",
            Who::Cert(User, "alice"),
            "POST",
            review(20, "approve"),
            none.clone(),
            forbidden,
        )
        .denied("sensitive-actions-need-mfa"),
        case(
            "an approver without MFA",
            Who::Console("alice", false),
            "POST",
            review(20, "approve"),
            none.clone(),
            forbidden,
        )
        .denied("sensitive-actions-need-mfa"),
        // Within the analyst's own limit, but no permit matches: analysts decide fraud holds only.
        case(
            "a fraud analyst does not decide limit holds",
            Who::Console("analyst-b", true),
            "POST",
            review(20, "approve"),
            none.clone(),
            forbidden,
        )
        .denied(""),
        case(
            "an auditor never approves",
            Who::Console("auditor", true),
            "POST",
            review(20, "approve"),
            none.clone(),
            forbidden,
        )
        .denied("auditors-never-write"),
        case(
            "compliance does not approve",
            Who::Console("carol", true),
            "POST",
            review(20, "approve"),
            none.clone(),
            forbidden,
        )
        .denied("approvals-within-the-approvers-limit"),
        case(
            "nor reject without the approver role",
            Who::Console("carol", true),
            "POST",
            review(20, "reject"),
            none.clone(),
            forbidden,
        )
        .denied(""),
        // SoD c: dave owns the credited account.
        case(
            "nobody approves a transfer paying their own account",
            Who::Console("dave", true),
            "POST",
            review(20, "approve"),
            none.clone(),
            forbidden,
        )
        .denied("maker-is-not-checker"),
        case(
            "an approver reads the review",
            Who::Console("alice", true),
            "GET",
            format!("/v1/reviews/{}", id(20)),
            none.clone(),
            ok,
        ),
        case(
            "the initiator does not read reviews",
            payments,
            "GET",
            format!("/v1/reviews/{}", id(20)),
            none.clone(),
            forbidden,
        )
        .denied(""),
        case(
            "an approver approves in business hours",
            Who::Console("alice", true),
            "POST",
            review(20, "approve"),
            none.clone(),
            created,
        ),
        case(
            "approving again changes nothing",
            Who::Console("alice", true),
            "POST",
            review(20, "approve"),
            none.clone(),
            ok,
        ),
        case(
            "an approver rejects",
            Who::Console("alice", true),
            "POST",
            review(25, "reject"),
            none.clone(),
            created,
        ),
        case(
            "a rejected transfer cannot be approved",
            Who::Console("alice", true),
            "POST",
            review(25, "approve"),
            none.clone(),
            StatusCode::UNPROCESSABLE_ENTITY,
        )
        .code("pending_transfer_already_voided"),
        case(
            "above the approver's own limit",
            Who::Console("alice", true),
            "POST",
            review(27, "approve"),
            none.clone(),
            forbidden,
        )
        .denied("approvals-within-the-approvers-limit"),
        case(
            "a higher limit approves it",
            Who::Console("bob", true),
            "POST",
            review(27, "approve"),
            none.clone(),
            created,
        ),
        case(
            "the api description is open to every principal",
            analyst,
            "GET",
            "/v1/openapi.json".into(),
            none.clone(),
            ok,
        ),
    ];
    // Cases run in order: later ones build on the accounts and held transfers of earlier ones.
    let count = cases.len();
    for case in cases {
        suite.run(case).await;
    }
    assert!(count >= 40, "{count} cases");

    // A token naming a service, not a user, is refused.
    let answer = suite
        .client(Who::Console("payments", true))
        .get(&format!("/v1/reviews/{}", id(20)))
        .await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.text);
    assert_eq!(answer.code(), "invalid_token");
    assert_eq!(
        answer.header("www-authenticate"),
        Some("Bearer error=\"invalid_token\"")
    );

    // Business hours (SoD f): Saturday noon refuses alice, not bob the duty manager.
    suite.app.clock.set_s(SATURDAY_NOON_S);
    suite
        .run(
            case(
                "outside business hours",
                Who::Console("alice", true),
                "POST",
                review(26, "approve"),
                none.clone(),
                forbidden,
            )
            .denied("approvals-in-business-hours"),
        )
        .await;
    let approved = suite
        .run(case(
            "a duty manager approves any time",
            Who::Console("bob", true),
            "POST",
            review(26, "approve"),
            none.clone(),
            created,
        ))
        .await;
    assert_eq!(approved["status"], "approved");
    assert_eq!(approved["decided_by"], "bob");
    assert_eq!(approved["decided_by_front_end"], "console");
    assert_eq!(approved["initiator"], "payments");
    assert_eq!(approved["transfer"]["pending"]["state"], "posted", "{approved}");

    // A token presented by a caller that is not a trusted front-end is refused and recorded.
    let token = suite.app.tokens.token_for("alice", true, suite.app.clock.now_s());
    let answer = suite
        .app
        .payments()
        .with_bearer(&token)
        .post("/v1/transfers", &transfer(30, 1, 2, "1.00"))
        .await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.text);
    let records = suite.records_since(suite.size).await;
    assert!(records.iter().any(
        |r| matches!(&r.event, Event::AccessDenied(d) if d.action == "token.relay") && r.actor.principal == "payments"
    ));
    suite.app.stop().await;
}

#[tokio::test]
async fn console_tokens_are_checked_for_signature_algorithm_issuer_audience_and_time() {
    let app = TestApp::spawn().await;
    let console = app.client(PrincipalKind::Service, "console");
    let now = app.clock.now_s();
    let tokens = TokenIssuer::load();
    let path = "/v1/openapi.json";
    // Each of the three algorithms signs a token that is accepted.
    for (kid, algorithm) in [
        ("ed", Algorithm::EdDSA),
        ("es", Algorithm::ES256),
        ("rs", Algorithm::RS256),
    ] {
        let token = tokens.sign(kid, algorithm, &TokenIssuer::claims("alice", true, now));
        let answer = console.with_bearer(&token).get(path).await;
        assert_eq!(answer.status, StatusCode::OK, "{kid}: {}", answer.text);
    }
    let claims = |change: &dyn Fn(&mut Value)| {
        let mut claims = TokenIssuer::claims("alice", true, now);
        change(&mut claims);
        claims
    };
    let refused = [
        (
            "expired",
            tokens.sign("ed", Algorithm::EdDSA, &claims(&|c| c["exp"] = json!(now - 60))),
            "expired",
        ),
        (
            "not yet valid",
            tokens.sign("ed", Algorithm::EdDSA, &claims(&|c| c["nbf"] = json!(now + 600))),
            "nbf",
        ),
        (
            "wrong audience",
            tokens.sign("ed", Algorithm::EdDSA, &claims(&|c| c["aud"] = json!("someone-else"))),
            "not valid",
        ),
        (
            "wrong issuer",
            tokens.sign(
                "ed",
                Algorithm::EdDSA,
                &claims(&|c| c["iss"] = json!("https://evil.example")),
            ),
            "not valid",
        ),
        (
            "no expiry",
            tokens.sign(
                "ed",
                Algorithm::EdDSA,
                &claims(&|c| {
                    c.as_object_mut().unwrap().remove("exp");
                }),
            ),
            "not valid",
        ),
        (
            "unknown user",
            tokens.sign("ed", Algorithm::EdDSA, &claims(&|c| c["sub"] = json!("mallory"))),
            "not a known user",
        ),
        ("garbage", "not.a.token".to_string(), "does not parse"),
    ];
    for (name, token, reason) in refused {
        let answer = console.with_bearer(&token).get(path).await;
        assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{name}: {}", answer.text);
        assert_eq!(answer.code(), "invalid_token", "{name}");
        assert!(
            answer.body["detail"].as_str().unwrap().contains(reason),
            "{name}: {}",
            answer.text
        );
    }
    // A token whose header names a key of another algorithm: the key decides, not the header.
    let forged = {
        let token = tokens.sign("es", Algorithm::ES256, &TokenIssuer::claims("alice", true, now));
        let mut parts: Vec<String> = token.split('.').map(str::to_string).collect();
        let header = json!({"alg": "ES256", "kid": "ed", "typ": "JWT"}).to_string();
        parts[0] = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(header);
        parts.join(".")
    };
    let answer = console.with_bearer(&forged).get(path).await;
    assert_eq!(answer.status, StatusCode::UNAUTHORIZED, "{}", answer.text);
    assert!(answer.text.contains("is for EdDSA"), "{}", answer.text);
    app.stop().await;
}

/// Copies the shipped policy directory into `dir`.
#[tokio::test]
async fn a_reload_swaps_the_whole_set_and_is_audited_and_a_bad_one_changes_nothing() {
    let scratch = tempfile::tempdir().unwrap();
    let policies = helpers::copy_policies(scratch.path());
    let app = TestApp::spawn_in(&policies, &[]).await;
    let payments = app.payments();
    let auditor = app.client(PrincipalKind::User, "auditor");
    let loaded = |records: &[Record]| -> Vec<audit::Hash> {
        records
            .iter()
            .filter_map(|r| match &r.event {
                Event::PolicySetLoaded(p) => Some(p.policy_set),
                _ => None,
            })
            .collect()
    };
    let records = || records(&auditor, 0);
    let first = loaded(&records().await);
    assert_eq!(first.len(), 1, "the set in effect at start-up is recorded");
    for n in [1, 2] {
        assert_eq!(
            payments.post("/v1/accounts", &account(n)).await.status,
            StatusCode::CREATED
        );
    }
    let application = app.application.as_ref().unwrap();

    // A policy that does not type-check: the reload fails naming file and line, the old set stays.
    std::fs::write(
        policies.join("freeze.cedar"),
        "@id(\"freeze\")\nforbid (principal, action == Action::\"transfer.create\", resource)\nwhen { resource.frozen };\n",
    )
    .unwrap();
    let error = format!("{:#}", application.reload_policies().await.unwrap_err());
    assert!(error.contains("freeze.cedar:3:"), "{error}");
    let answer = payments.post("/v1/transfers", &transfer(10, 1, 2, "1.00")).await;
    assert_eq!(answer.status, StatusCode::CREATED, "{}", answer.text);
    assert_eq!(loaded(&records().await), first, "nothing recorded for a failed reload");

    // A valid change takes effect at once and is recorded with the new hash.
    std::fs::write(
        policies.join("freeze.cedar"),
        "@id(\"freeze\")\nforbid (principal, action == Action::\"transfer.create\", resource);\n",
    )
    .unwrap();
    assert!(application.reload_policies().await.unwrap());
    let hashes = loaded(&records().await);
    assert_eq!(hashes.len(), 2);
    assert_ne!(hashes[1], hashes[0]);
    assert_eq!(hashes[1], application.authz.current().hash());
    let answer = payments.post("/v1/transfers", &transfer(11, 1, 2, "1.00")).await;
    assert_eq!(answer.status, StatusCode::FORBIDDEN, "{}", answer.text);
    assert_eq!(answer.body["policy_ids"], json!(["freeze"]));
    // Reloading the same files changes nothing and records nothing.
    assert!(!application.reload_policies().await.unwrap());
    assert_eq!(loaded(&records().await).len(), 2);
    app.stop().await;
}

/// SoD c holds even where static SoD was loosened: a principal allowed to both move money and approve
/// (the conflicting pair removed from the principals file) still cannot approve its own transfer.
#[tokio::test]
async fn nobody_approves_a_transfer_they_initiated_even_holding_both_roles() {
    let scratch = tempfile::tempdir().unwrap();
    let policies = helpers::copy_policies(scratch.path());
    let file = policies.join("principals.toml");
    let shipped = std::fs::read_to_string(&file).unwrap();
    let mut loosened = shipped.replace("    [\"money-mover\", \"approver\"],\n", "");
    assert_ne!(loosened, shipped, "the shipped file lists the pair");
    loosened.push_str(
        "\n[principals.erin]\nkind = \"user\"\nroles = [\"money-mover\", \"approver\"]\napproval_limits = { USD = 100000 }\n",
    );
    std::fs::write(&file, loosened).unwrap();
    let app = TestApp::spawn_in(&policies, &[]).await;
    let erin = app.console_for("erin", true);
    assert_eq!(erin.post("/v1/accounts", &account(1)).await.status, StatusCode::CREATED);
    assert_eq!(
        app.payments().post("/v1/accounts", &account(2)).await.status,
        StatusCode::CREATED
    );

    // 5,000.00 USD is above erin's 1,000.00 limit: held for a second principal.
    let held = erin.post("/v1/transfers", &transfer(10, 1, 2, "5000.00")).await;
    assert_eq!(held.status, StatusCode::ACCEPTED, "{}", held.text);
    let approve = format!("/v1/reviews/{}/approve", id(10));
    let own = erin.post(&approve, &json!({})).await;
    assert_eq!(own.status, StatusCode::FORBIDDEN, "{}", own.text);
    // One limit bounds both what erin moves alone and what she approves, so her own limit forbids it
    // too; maker-is-not-checker must be among the determining policies.
    assert_eq!(
        own.body["policy_ids"],
        json!(["approvals-within-the-approvers-limit", "maker-is-not-checker"]),
        "{}",
        own.text
    );
    let review = app
        .console_for("alice", true)
        .get(&format!("/v1/reviews/{}", id(10)))
        .await;
    assert_eq!(review.body["status"], "open", "{}", review.text);

    let other = app.console_for("alice", true).post(&approve, &json!({})).await;
    assert_eq!(other.status, StatusCode::CREATED, "{}", other.text);
    assert_eq!(other.body["decided_by"], "alice");
    app.stop().await;
}
