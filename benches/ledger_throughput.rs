//! Durable transfers per second through the sequencer into PostgreSQL (fsync on), measured in one run
//! against a baseline of one database transaction per transfer.
//!
//! Scenarios, each on a fresh database of one local PostgreSQL started by this benchmark, dropped when
//! its run ends (see `support::settle`):
//! - `spread`: transfers between random pairs of 10,000 accounts;
//! - `hot`: every transfer debits or credits one hot account;
//! - `naive`: the baseline, one transaction per transfer with SELECT ... FOR UPDATE on both accounts,
//!   at the same client concurrency;
//! - `spread, audit off`: `spread` without audit records, to measure what the audit log costs (every
//!   other scenario runs with it, a checkpoint signed after every batch);
//! - `spread, fraud screening`: `spread` with every transfer screened by the shipped fraud ruleset
//!   (policies/fraud/), its velocity threshold raised from 10 to 1,000 transfers an hour: this load
//!   sends ~50 transfers per account within seconds, which the shipped rule would hold for review (a
//!   different workload: pending transfers and review rows). Every other scenario screens nothing;
//! - `spread, outbox off`: `spread` without outbox events, to measure what the outbox costs;
//! - `spread, random ids`: `spread` with random (v4) transfer ids. Every other scenario's clients
//!   choose time-ordered (v7) ids, as the README recommends: new ids then land at the right edge of the
//!   primary key instead of on a random page of it.
//!
//! FINLEDGER_BENCH_SCENARIOS picks scenarios by letter (default `abcdefg`: the seven above, in order).
//!
//! Run: `cargo bench --bench ledger_throughput` (settings via FINLEDGER_BENCH_* variables below).
//! Each scenario runs `REPEATS` times; the median is reported with ratios.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use finledger::local_postgres::LocalPostgres;
use finledger::store::{AuditMode, SequencerConfig};
use ledger::{Applied, Command};
use rand::{Rng, SeedableRng};
use sqlx::{Connection, PgConnection};
use support::{bench_audit, env_or, ledger_with_accounts, median, scale, settle, transfer_command};
use uuid::Uuid;

const ACCOUNTS: u128 = 10_000;
const HOT: u128 = 1;

struct Settings {
    clients: usize,
    client_batch: usize,
    transfers: usize,
    naive_transfers: usize,
    repeats: usize,
    pipeline_depth: usize,
}

/// Full sizes under `cargo bench`, small ones under `cargo test`.
fn settings() -> Settings {
    Settings {
        // The pipeline keeps `commit_pipeline_depth` (3) batches of up to 8,190 in flight; 64 clients of
        // 256 (16,384 transfers outstanding) cannot fill it, 256 clients can.
        clients: env_or("FINLEDGER_BENCH_CLIENTS", 256),
        client_batch: env_or("FINLEDGER_BENCH_CLIENT_BATCH", 256),
        transfers: env_or("FINLEDGER_BENCH_TRANSFERS", scale(500_000, 20_000)),
        naive_transfers: env_or("FINLEDGER_BENCH_NAIVE_TRANSFERS", scale(20_000, 1_000)),
        repeats: env_or("FINLEDGER_BENCH_REPEATS", scale(3, 1)),
        pipeline_depth: env_or(
            "FINLEDGER_BENCH_PIPELINE_DEPTH",
            SequencerConfig::default().commit_pipeline_depth,
        ),
    }
}

/// Random (debit, credit) pairs over accounts 1..=ACCOUNTS; with `hot`, one side is always account 1.
fn pairs(count: usize, hot: bool, seed: u64) -> Vec<(u128, u128)> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    (0..count)
        .map(|_| {
            let a = rng.random_range(1..=ACCOUNTS);
            let mut b = rng.random_range(1..=ACCOUNTS);
            if hot {
                b = HOT;
            }
            while b == a {
                b = rng.random_range(1..=ACCOUNTS);
                if hot {
                    return (HOT, a.max(2));
                }
            }
            if rng.random_bool(0.5) { (a, b) } else { (b, a) }
        })
        .collect()
}

/// What a sequencer scenario runs with.
#[derive(Clone, Copy)]
struct Features {
    audit: bool,
    fraud: bool,
    outbox: bool,
    /// Time-ordered (v7) transfer ids rather than random ones.
    ordered_ids: bool,
}

impl Default for Features {
    /// Audit and outbox on, no fraud screening, time-ordered ids.
    fn default() -> Features {
        Features {
            audit: true,
            fraud: false,
            outbox: true,
            ordered_ids: true,
        }
    }
}

/// Transfers/s through the sequencer with `clients` concurrent submitters of `client_batch` each.
async fn sequencer_run(
    cluster: &LocalPostgres,
    name: &str,
    hot: bool,
    Features {
        audit,
        fraud,
        outbox,
        ordered_ids,
    }: Features,
    settings: &Settings,
    seed: u64,
) -> f64 {
    let config = SequencerConfig {
        commit_pipeline_depth: settings.pipeline_depth,
        fraud: fraud.then(bench_ruleset),
        outbox,
        ..SequencerConfig::default()
    };
    let audit = if audit { bench_audit() } else { AuditMode::Off };
    let (options, ledger, shutdown) = ledger_with_accounts(cluster, name, config, audit, ACCOUNTS).await;
    let pairs = pairs(settings.transfers, hot, seed);
    let mut per_client: Vec<Vec<Vec<Command>>> = vec![Vec::new(); settings.clients];
    for (index, chunk) in pairs.chunks(settings.client_batch).enumerate() {
        let batch = chunk
            .iter()
            .map(|(d, c)| {
                let id = if ordered_ids { Uuid::now_v7() } else { Uuid::new_v4() };
                transfer_command(id, *d, *c)
            })
            .collect();
        per_client[index % settings.clients].push(batch);
    }
    let started = Instant::now();
    let tasks: Vec<_> = per_client
        .into_iter()
        .map(|batches| {
            let ledger = ledger.clone();
            tokio::spawn(async move {
                for batch in batches {
                    let results = ledger.submit(batch).await.expect("batch commits");
                    assert!(results.iter().all(|r| *r == Ok(Applied::Created)));
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("client finished");
    }
    let elapsed = started.elapsed();
    shutdown.drain().await;
    let mut connection = PgConnection::connect_with(&options).await.expect("connecting");
    let unfolded: i64 = sqlx::query_scalar(
        "SELECT (SELECT transfer_seq FROM ledger_head) - (SELECT folded_seq FROM account_history_head)",
    )
    .fetch_one(&mut connection)
    .await
    .expect("reading the heads");
    eprintln!("{name}: {unfolded} transfers not yet folded into account history at the end");
    settings.transfers as f64 / elapsed.as_secs_f64()
}

/// The baseline: each transfer is its own transaction that locks both accounts.
async fn naive_run(cluster: &LocalPostgres, name: &str, settings: &Settings, seed: u64) -> f64 {
    let (options, _, shutdown) =
        ledger_with_accounts(cluster, name, SequencerConfig::default(), bench_audit(), ACCOUNTS).await;
    shutdown.drain().await;
    let pairs = Arc::new(pairs(settings.naive_transfers, false, seed));
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..settings.clients)
        .map(|_| {
            let (options, pairs, next) = (options.clone(), pairs.clone(), next.clone());
            tokio::spawn(async move {
                let mut connection = PgConnection::connect_with(&options).await.expect("connecting");
                loop {
                    let index = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let Some((debit, credit)) = pairs.get(index).copied() else {
                        break;
                    };
                    naive_transfer(&mut connection, index as i64 + 1, debit, credit).await;
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.expect("client finished");
    }
    settings.naive_transfers as f64 / started.elapsed().as_secs_f64()
}

async fn naive_transfer(connection: &mut PgConnection, seq: i64, debit: u128, credit: u128) {
    let (debit, credit) = (Uuid::from_u128(debit), Uuid::from_u128(credit));
    let mut transaction = connection.begin().await.expect("begin");
    // Lock both accounts in id order so concurrent transfers cannot deadlock.
    let locked: Vec<(Uuid, i64, i64)> = sqlx::query_as(
        "SELECT account_id, debits_posted, credits_posted FROM balances WHERE account_id IN ($1, $2)
         ORDER BY account_id FOR UPDATE",
    )
    .bind(debit)
    .bind(credit)
    .fetch_all(&mut *transaction)
    .await
    .expect("lock");
    assert_eq!(locked.len(), 2);
    sqlx::query(
        "INSERT INTO transfers (id, seq, kind, linked, debit_account_id, credit_account_id, amount, currency, code,
                                metadata, created_at)
         VALUES ($1, $2, 'single', false, $3, $4, 100, 'USD', 1, '{}', now())",
    )
    .bind(Uuid::new_v4())
    .bind(1_000_000_000 + seq)
    .bind(debit)
    .bind(credit)
    .execute(&mut *transaction)
    .await
    .expect("insert");
    sqlx::query("UPDATE balances SET debits_posted = debits_posted + 100 WHERE account_id = $1")
        .bind(debit)
        .execute(&mut *transaction)
        .await
        .expect("debit");
    sqlx::query("UPDATE balances SET credits_posted = credits_posted + 100 WHERE account_id = $1")
        .bind(credit)
        .execute(&mut *transaction)
        .await
        .expect("credit");
    transaction.commit().await.expect("commit");
}

fn main() -> anyhow::Result<()> {
    let settings = settings();
    let scenarios = std::env::var("FINLEDGER_BENCH_SCENARIOS").unwrap_or_else(|_| "abcdefg".to_string());
    let dir = tempfile::tempdir()?;
    let cluster = LocalPostgres::start(dir.path())?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    // (letter, what it is, hot account, features); `c` is the naive baseline.
    let all = Features::default();
    let runs = [
        ('a', "spread", false, all),
        ('b', "hot", true, all),
        ('c', "naive", false, all),
        ('d', "spread, audit off", false, Features { audit: false, ..all }),
        ('e', "spread, fraud screening", false, Features { fraud: true, ..all }),
        ('f', "spread, outbox off", false, Features { outbox: false, ..all }),
        (
            'g',
            "spread, random ids",
            false,
            Features {
                ordered_ids: false,
                ..all
            },
        ),
    ];
    let runs: Vec<_> = runs.into_iter().filter(|run| scenarios.contains(run.0)).collect();
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); runs.len()];
    runtime.block_on(async {
        for repeat in 0..settings.repeats {
            let seed = repeat as u64;
            for (index, (letter, _, hot, options)) in runs.iter().enumerate() {
                let name = format!("{letter}_{repeat}");
                let rate = match letter {
                    'c' => naive_run(&cluster, &name, &settings, seed).await,
                    _ => sequencer_run(&cluster, &name, *hot, *options, &settings, seed).await,
                };
                rates[index].push(rate);
                settle(&cluster, &name).await;
            }
            let line: Vec<String> = runs
                .iter()
                .zip(&rates)
                .map(|((letter, what, ..), rates)| format!("({letter}) {what} {:.0}/s", rates[repeat]))
                .collect();
            eprintln!("repeat {repeat}: {}", line.join(", "));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    println!(
        "clients={} client_batch={} transfers={} naive_transfers={} repeats={}",
        settings.clients, settings.client_batch, settings.transfers, settings.naive_transfers, settings.repeats
    );
    let medians: Vec<(char, f64)> = runs
        .iter()
        .zip(rates.iter_mut())
        .map(|(run, rates)| (run.0, median(rates)))
        .collect();
    let of = |letter: char| medians.iter().find(|(l, _)| *l == letter).map(|(_, rate)| *rate);
    println!("| scenario | durable transfers/s (median) | ratio |");
    println!("|---|---:|---:|");
    for ((letter, what, ..), (_, rate)) in runs.iter().zip(&medians) {
        let ratio = match (letter, of('a')) {
            ('a', _) | (_, None) => String::new(),
            ('c', Some(spread)) => format!("(a) is {:.1}x (c)", spread / rate),
            ('d' | 'f', Some(spread)) => format!("costs {:.1}% of ({letter})", (1.0 - spread / rate) * 100.0),
            (_, Some(spread)) => format!("{:.2} of (a)", rate / spread),
        };
        println!("| ({letter}) {what} | {rate:.0} | {ratio} |");
    }
    Ok(())
}
/// The shipped fraud ruleset, its velocity rule's threshold raised (see the module documentation).
fn bench_ruleset() -> finledger::store::sequencer::FraudScreening {
    use finledger::fraud::{RULES_FILE, Ruleset};
    let shipped =
        Ruleset::load(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")).expect("the shipped ruleset");
    let mut files = shipped.files().clone();
    let rules = support::rules_with_velocity(&files[RULES_FILE], 1000);
    files.insert(RULES_FILE.to_string(), rules);
    finledger::store::sequencer::FraudScreening {
        ruleset: Arc::new(arc_swap::ArcSwap::from_pointee(
            Ruleset::from_files(files).expect("a valid ruleset"),
        )),
        hold_timeout_s: 3_600,
        approval_window_s: 86_400,
    }
}
