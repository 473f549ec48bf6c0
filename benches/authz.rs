//! Authorization latency: one decision with the full shipped policy set, for callers drawn from
//! 10,000 principals over accounts drawn from 10,000 accounts (the principals file and the account
//! facts a request's entities are built from). Each decision builds the request's entities (the
//! principal with its roles and limits, the accounts with their owners, the resource) and evaluates
//! every policy that can apply to the action and the caller's roles, as a request does.
//!
//! Three shapes of request: a transfer by its debit account's owner (allowed), the same by another
//! service (denied), and a held-transfer approval (the most policies apply). Reports p50 and p99 per
//! shape, medians of `REPEATS` runs. Target: p99 < 50 µs.
//!
//! Run: `cargo bench --bench authz` (FINLEDGER_BENCH_AUTHZ_DECISIONS sets decisions per run;
//! FINLEDGER_BENCH_AUTHZ_SHAPE=<text> runs only the shapes whose name contains it, e.g. for profiling).

mod support;

use std::fmt::Write as _;
use std::path::Path;

use finledger::authz::{AccountFacts, Action, Policies, Resource, ReviewFacts, TransferFacts};
use finledger::identity::Caller;
use ledger::Timestamp;
use support::{env_or, latencies, median, scale};
use uuid::Uuid;

const PRINCIPALS: usize = 10_000;
const ACCOUNTS: usize = 10_000;
const REPEATS: usize = 5;
/// 2027-01-13 12:00 UTC, a Wednesday: inside business hours.
const NOON_WEDNESDAY_S: i64 = 1_799_841_600;

/// The shipped policies with 10,000 generated services (money movers) and users (approvers) added to
/// the principals file.
fn policies(dir: &Path) -> Policies {
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    for entry in std::fs::read_dir(&shipped).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
        }
    }
    let mut principals = std::fs::read_to_string(dir.join("principals.toml")).unwrap();
    for n in 0..PRINCIPALS {
        if n % 2 == 0 {
            let _ = write!(
                principals,
                "\n[principals.svc-{n}]\nkind = \"svc\"\nroles = [\"money-mover\"]\napproval_limits = {{ USD = 10000000 }}\n"
            );
        } else {
            let _ = write!(
                principals,
                "\n[principals.user-{n}]\nkind = \"user\"\nroles = [\"approver\"]\napproval_limits = {{ USD = 100000000 }}\n"
            );
        }
    }
    std::fs::write(dir.join("principals.toml"), principals).unwrap();
    Policies::load(dir).unwrap()
}

fn caller(policies: &Policies, name: &str, mfa: bool) -> Caller {
    Caller {
        principal: policies.principals().get(name).unwrap().clone(),
        certificate_sha256: "00".repeat(32),
        front_end: None,
        mfa,
    }
}

/// Accounts owned by the generated services, two per even-numbered service.
fn accounts() -> Vec<AccountFacts> {
    (0..ACCOUNTS)
        .map(|n| AccountFacts {
            id: Uuid::from_u128(n as u128 + 1),
            owner: format!("svc-{}", (n % (PRINCIPALS / 2)) * 2),
            currency: "USD".to_string(),
            code: 1,
        })
        .collect()
}

/// The index in the owners list of the service that owns the transfer's debit account.
fn owner_index(facts: &TransferFacts) -> usize {
    let owner = facts.debit_account.owner.trim_start_matches("svc-");
    owner.parse::<usize>().expect("a generated owner") / 2
}

fn main() {
    let decisions = env_or("FINLEDGER_BENCH_AUTHZ_DECISIONS", scale(100_000, 2_000));
    let dir = tempfile::tempdir().unwrap();
    let policies = policies(dir.path());
    let accounts = accounts();
    let now = Timestamp::from_micros(NOON_WEDNESDAY_S * 1_000_000);
    // A pseudo-random but repeatable walk over principals and accounts.
    let pick = |i: usize, salt: usize, modulo: usize| (i.wrapping_mul(2_654_435_761).wrapping_add(salt)) % modulo;
    let transfer = |i: usize| {
        let debit = accounts[pick(i, 1, ACCOUNTS)].clone();
        let credit = accounts[pick(i, 7, ACCOUNTS)].clone();
        TransferFacts {
            id: Uuid::from_u128(i as u128 + 1_000_000),
            debit_account: debit,
            credit_account: credit,
            amount_minor: 1 + (i as u64 % 1_000_000),
            currency: "USD".to_string(),
            held: false,
        }
    };
    let callers_owning: Vec<Caller> = (0..PRINCIPALS / 2)
        .map(|n| caller(&policies, &format!("svc-{}", n * 2), false))
        .collect();
    let approvers: Vec<Caller> = (0..PRINCIPALS / 2)
        .map(|n| caller(&policies, &format!("user-{}", n * 2 + 1), true))
        .collect();

    type Shape<'a> = (&'a str, Box<dyn Fn(usize) -> bool + 'a>);
    let shapes: Vec<Shape> = vec![
        (
            "transfer.create by the debit account's owner (allow)",
            Box::new(|i| {
                let facts = transfer(i);
                let owner = &callers_owning[owner_index(&facts)];
                policies
                    .decide(owner, Action::TransferCreate, &Resource::Transfer(facts), now)
                    .allowed
            }),
        ),
        (
            "transfer.create by another service (deny)",
            Box::new(|i| {
                let facts = transfer(i);
                let other = &callers_owning[(owner_index(&facts) + 1) % callers_owning.len()];
                policies
                    .decide(other, Action::TransferCreate, &Resource::Transfer(facts), now)
                    .allowed
            }),
        ),
        (
            "review.approve of a held transfer (allow)",
            Box::new(|i| {
                let mut facts = transfer(i);
                facts.held = true;
                let review = ReviewFacts {
                    initiator: facts.debit_account.owner.clone(),
                    transfer: facts,
                    reason: "approval_limit".to_string(),
                    reasons: vec!["approval_limit".to_string()],
                    approvers: Vec::new(),
                };
                policies
                    .decide(
                        &approvers[pick(i, 3, approvers.len())],
                        Action::ReviewApprove,
                        &Resource::Review(review),
                        now,
                    )
                    .allowed
            }),
        ),
    ];
    println!(
        "authorization: {} principals, {ACCOUNTS} accounts, the shipped policies; {decisions} decisions per run, {REPEATS} runs",
        policies.principals().iter().count(),
    );
    let only = std::env::var("FINLEDGER_BENCH_AUTHZ_SHAPE").unwrap_or_default();
    for (name, decide) in shapes.iter().filter(|(name, _)| name.contains(only.as_str())) {
        let (mut p50s, mut p99s) = (Vec::new(), Vec::new());
        let mut allowed = 0;
        for _ in 0..REPEATS {
            let (p50, p99, count) = latencies(decisions, decide);
            p50s.push(p50);
            p99s.push(p99);
            allowed = count;
        }
        println!(
            "  {name}: p50 {:.1} µs, p99 {:.1} µs (allowed {allowed} of {decisions})",
            median(&mut p50s),
            median(&mut p99s)
        );
    }
}
