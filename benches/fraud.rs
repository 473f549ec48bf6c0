//! Fraud screening latency: one transfer through the shipped ruleset (policies/fraud/), features
//! included, against 10,000 accounts with a week of history (200,000 earlier transfers), as the
//! single writer screens it. Each screening computes every declared feature (window counts and sums
//! from the running tallies, near-threshold counts, account age, round amount, list lookups), binds
//! them, evaluates every rule and combines the outcomes; the transfer is then counted, as the live
//! path does. Reports p50 and p99 (medians of `REPEATS` runs). Target: p99 < 100 µs.
//!
//! Run: `cargo bench --bench fraud` (FINLEDGER_BENCH_FRAUD_SCREENINGS sets screenings per run).
//! The batch-path throughput with and without screening is in `cargo bench --bench ledger_throughput`.

mod support;

use std::path::Path;

use finledger::fraud::features::{Activity, Screened};
use finledger::fraud::{Ruleset, Verdict};
use ledger::{Account, AccountId, Amount, BalanceLimit, Currency, Metadata, Movement, Timestamp};
use rand::{Rng, SeedableRng};
use support::{env_or, latencies, median, scale};
use uuid::Uuid;

const ACCOUNTS: usize = 10_000;
const HISTORY: usize = 200_000;
const REPEATS: usize = 5;
const WEEK_S: i64 = 7 * 86_400;
const START_S: i64 = 1_800_000_000;

fn main() {
    let screenings = env_or("FINLEDGER_BENCH_FRAUD_SCREENINGS", scale(100_000, 2_000));
    let ruleset = Ruleset::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")).unwrap();
    let usd = Currency::from_code("USD").unwrap();
    let accounts: Vec<Account> = (0..ACCOUNTS)
        .map(|n| Account {
            id: AccountId::from_stored(Uuid::from_u128(n as u128 + 1)),
            currency: usd,
            code: 1,
            owner: "payments".into(),
            limit: BalanceLimit::None,
            metadata: Metadata::default(),
            closed: false,
            created_at: Timestamp::from_micros((START_S - 30 * 86_400) * 1_000_000),
            balances: Default::default(),
        })
        .collect();
    let mut random = rand::rngs::StdRng::seed_from_u64(7);
    let mut activity = Activity::default();
    // A week of history, oldest first, ending at START_S.
    for k in 0..HISTORY {
        let at = START_S - WEEK_S + (k as i64 * WEEK_S) / HISTORY as i64;
        let debit = random.random_range(0..ACCOUNTS);
        let credit = (debit + random.random_range(1..ACCOUNTS)) % ACCOUNTS;
        let amount = random.random_range(100..2_000_000);
        activity.add(
            accounts[debit].id,
            accounts[credit].id,
            amount,
            usd,
            Timestamp::from_micros(at * 1_000_000),
        );
    }
    let metadata = Metadata::default();
    let mut clock_us = START_S * 1_000_000;
    let (mut p50s, mut p99s) = (Vec::new(), Vec::new());
    let mut reviewed = 0;
    for _ in 0..REPEATS {
        activity.prune(Timestamp::from_micros(clock_us));
        let (p50, p99, flagged) = latencies(screenings, |_| {
            // One transfer a second over 10,000 accounts: each sends about one every 3 hours, as in the
            // week of history.
            clock_us += 1_000_000;
            let debit = random.random_range(0..ACCOUNTS);
            let credit = (debit + random.random_range(1..ACCOUNTS)) % ACCOUNTS;
            let amount = random.random_range(100..2_000_000);
            let movement = Movement {
                debit_account_id: accounts[debit].id,
                credit_account_id: accounts[credit].id,
                amount: Amount::from_minor(amount).unwrap(),
                currency: usd,
            };
            let now = Timestamp::from_micros(clock_us);
            let screened = Screened {
                id: Uuid::from_u128(clock_us as u128),
                movement: &movement,
                code: 1,
                pending: false,
                metadata: &metadata,
                debit: &accounts[debit],
                credit: &accounts[credit],
                now,
            };
            let screening = ruleset.screen(&mut activity, &screened);
            if screening.verdict != Verdict::Deny {
                activity.add(movement.debit_account_id, movement.credit_account_id, amount, usd, now);
            }
            screening.verdict != Verdict::Allow
        });
        p50s.push(p50);
        p99s.push(p99);
        reviewed = flagged;
    }
    println!(
        "fraud screening: the shipped ruleset ({} rules, {} features), {ACCOUNTS} accounts, {HISTORY} transfers of history; {screenings} screenings per run, {REPEATS} runs",
        ruleset.rules.len(),
        ruleset.features.len()
    );
    println!(
        "  one transfer: p50 {:.1} µs, p99 {:.1} µs ({reviewed} of {screenings} held or refused in the last run)",
        median(&mut p50s),
        median(&mut p99s)
    );
}
