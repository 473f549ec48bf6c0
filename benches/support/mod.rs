//! What every benchmark here shares: settings from FINLEDGER_BENCH_* variables, the full-or-smoke
//! size, and the median of repeats. (Each benchmark uses only part of it.)
#![allow(dead_code)]

use finledger::local_postgres::LocalPostgres;
use finledger::store::sequencer::{self, Shutdown};
use finledger::store::{AuditMode, LedgerHandle, SequencerConfig};
use ledger::{AccountFlags, AccountRequest, Applied, Command, TransferRequest};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

/// A setting from the environment, or its default.
pub fn env_or(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// `full_size` under `cargo bench` (which passes `--bench`); `smoke_size` under `cargo test`, where the
/// same code runs as a small smoke test.
pub fn scale(full_size: usize, smoke_size: usize) -> usize {
    if std::env::args().any(|arg| arg == "--bench") {
        full_size
    } else {
        smoke_size
    }
}

pub fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// p50 and p99 of one call, in µs, over `count` calls of `run(i)`, and how many returned true.
pub fn latencies(count: usize, mut run: impl FnMut(usize) -> bool) -> (f64, f64, usize) {
    let mut samples = Vec::with_capacity(count);
    let mut trues = 0;
    for i in 0..count {
        let start = std::time::Instant::now();
        trues += run(i) as usize;
        samples.push(start.elapsed().as_secs_f64() * 1e6);
    }
    samples.sort_by(f64::total_cmp);
    (samples[count / 2], samples[count * 99 / 100], trues)
}

/// Account `n` (USD, no constraints), owned by `bench`.
pub fn account_command(n: u128) -> Command {
    let request = AccountRequest {
        id: Uuid::from_u128(n),
        currency: "USD".into(),
        code: 1,
        owner: "bench".into(),
        flags: AccountFlags::default(),
        overdraft_limit: None,
        metadata: None,
    };
    Command::CreateAccount(request.parse().expect("valid account"))
}

/// 1.00 USD from account `debit` to account `credit`.
pub fn transfer_command(id: Uuid, debit: u128, credit: u128) -> Command {
    let request = TransferRequest {
        id,
        debit_account_id: Some(Uuid::from_u128(debit)),
        credit_account_id: Some(Uuid::from_u128(credit)),
        amount: Some("1.00".into()),
        currency: Some("USD".into()),
        code: 1,
        ..TransferRequest::default()
    };
    Command::CreateTransfer(request.parse().expect("valid transfer"))
}

/// A new, migrated database on `cluster`.
pub async fn fresh_database(cluster: &LocalPostgres, name: &str) -> PgConnectOptions {
    cluster
        .create_database(name)
        .await
        .expect("creating the bench database");
    let options = cluster.connect_options(name);
    let mut connection = PgConnection::connect_with(&options).await.expect("connecting");
    finledger::store::migrate(&mut connection).await.expect("migrating");
    options
}

/// Drops a finished run's database and writes every dirty page out, so that the next run neither
/// shares the machine with autovacuum working through this run's tables nor inherits its checkpoint.
pub async fn settle(cluster: &LocalPostgres, name: &str) {
    let mut connection = PgConnection::connect_with(&cluster.connect_options("postgres"))
        .await
        .expect("connecting");
    for statement in [format!("DROP DATABASE {name} WITH (FORCE)"), "CHECKPOINT".to_string()] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(statement))
            .execute(&mut connection)
            .await
            .expect("settling the cluster between runs");
    }
}

/// Accounts 1 to `count`, committed in full batches.
pub async fn create_accounts(ledger: &LedgerHandle, count: u128) {
    let commands: Vec<Command> = (1..=count).map(account_command).collect();
    for chunk in commands.chunks(8190) {
        let results = ledger.submit(chunk.to_vec()).await.expect("accounts commit");
        assert!(results.iter().all(|r| *r == Ok(Applied::Created)));
    }
}

/// The audit log as the service keeps it: a checkpoint signed after every batch.
pub fn bench_audit() -> finledger::store::AuditMode {
    finledger::store::AuditMode::Signed {
        signer: std::sync::Arc::new(audit::note::NoteSigner::generate("finledger.bench/audit").expect("a key")),
        checkpoint_interval: std::time::Duration::ZERO,
    }
}

/// A new database on `cluster` with a sequencer running over it and accounts 1 to `accounts` committed.
pub async fn ledger_with_accounts(
    cluster: &LocalPostgres,
    name: &str,
    config: SequencerConfig,
    audit: AuditMode,
    accounts: u128,
) -> (PgConnectOptions, LedgerHandle, Shutdown) {
    let options = fresh_database(cluster, name).await;
    let (ledger, shutdown) = sequencer::spawn(options.clone(), config, audit, finledger::clock::system());
    create_accounts(&ledger, accounts).await;
    (options, ledger, shutdown)
}

/// The shipped fraud rules with the velocity rule's threshold raised from 10 to `per_hour` transfers
/// an hour: a load generator sends far more per account than any customer would, which the shipped
/// rule would hold for review (a different workload). Every rule still runs on every transfer.
pub fn rules_with_velocity(rules: &str, per_hour: u32) -> String {
    let raised = rules.replace("f.debit_count_1h > 10\"", &format!("f.debit_count_1h > {per_hour}\""));
    assert_ne!(raised, rules, "the velocity rule is where it was");
    raised
}

/// A copy of the shipped policy directory under `dir`, its velocity rule raised (see
/// [`rules_with_velocity`]); returns its path.
pub fn policies_with_velocity(dir: &std::path::Path, per_hour: u32) -> std::path::PathBuf {
    fn copy(from: &std::path::Path, to: &std::path::Path) {
        std::fs::create_dir_all(to).expect("creating a policy directory");
        for entry in std::fs::read_dir(from).expect("reading the policies") {
            let entry = entry.expect("a policy file");
            let target = to.join(entry.file_name());
            if entry.path().is_dir() {
                copy(&entry.path(), &target);
            } else {
                std::fs::copy(entry.path(), target).expect("copying a policy file");
            }
        }
    }
    let policies = dir.join("policies");
    copy(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"),
        &policies,
    );
    let rules = policies.join("fraud").join("rules.toml");
    let text = std::fs::read_to_string(&rules).expect("the shipped rules");
    std::fs::write(&rules, rules_with_velocity(&text, per_hour)).expect("writing the rules");
    policies
}
