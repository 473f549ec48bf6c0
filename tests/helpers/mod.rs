//! Test harness: a real PostgreSQL started by the tests themselves, a fresh database per test, and a
//! running sequencer over it.
//!
//! One cluster per test binary (in a temporary directory, removed by the next run once its process is
//! gone) serves every test that does not stop its database; tests that stop or restart PostgreSQL get
//! a cluster of their own.
#![allow(dead_code)]

pub mod app;
pub mod client;
pub mod events;
pub mod kafka;
pub mod tokens;

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::{Arc, OnceLock};

use finledger::clock::Clock;
use finledger::local_postgres::LocalPostgres;
use finledger::store::sequencer::{self, Shutdown};
use finledger::store::{LedgerHandle, SequencerConfig, Store};
use ledger::{
    AccountFlags, AccountId, AccountRequest, Applied, Command, CommandResult, ErrorCode, Timestamp, TransferFlags,
    TransferId, TransferRequest,
};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

static SHARED: OnceLock<LocalPostgres> = OnceLock::new();
static NEXT_DATABASE: AtomicU32 = AtomicU32::new(0);

/// A directory for one cluster of this test process; leftovers of finished processes are removed.
pub fn cluster_dir(name: &str) -> PathBuf {
    let root = std::env::temp_dir().join("finledger-tests");
    if let Ok(entries) = std::fs::read_dir(&root) {
        for entry in entries.flatten() {
            let pid = entry
                .file_name()
                .to_str()
                .and_then(|n| n.split('-').next()?.parse::<i32>().ok());
            if let Some(pid) = pid
                && nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None).is_err()
            {
                let _ = std::fs::remove_dir_all(entry.path());
            }
        }
    }
    root.join(format!("{}-{name}", std::process::id()))
}

/// A loopback TCP port that was free a moment ago.
/// A copy of the shipped policy directory (authorization and fraud rules, lists) under `dir`, to
/// change in a test; returns its path.
pub fn copy_policies(dir: &Path) -> PathBuf {
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_dir() {
                copy(&entry.path(), &to.join(entry.file_name()));
            } else {
                std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
            }
        }
    }
    let policies = dir.join("policies");
    copy(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies"), &policies);
    policies
}

/// A copy of the shipped policies under `dir` with no fraud rules, for tests that move money in
/// volumes the default rules would hold for review.
pub fn policies_without_fraud_rules(dir: &Path) -> PathBuf {
    let policies = copy_policies(dir);
    std::fs::write(policies.join("fraud/rules.toml"), "# No fraud rules.\n").unwrap();
    policies
}

/// Designates `accounts` for settlement in the policy directory `policies` (its settlement.toml).
pub fn designate_for_settlement(policies: &Path, accounts: &[Uuid]) {
    let ids: Vec<String> = accounts.iter().map(|id| format!("\"{id}\"")).collect();
    std::fs::write(
        policies.join("settlement.toml"),
        format!("accounts = [{}]\n", ids.join(", ")),
    )
    .unwrap();
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free loopback port")
        .port()
}

pub fn shared_cluster() -> &'static LocalPostgres {
    SHARED.get_or_init(|| LocalPostgres::start(&cluster_dir("shared")).expect("starting the test PostgreSQL"))
}

/// A new, migrated database on `cluster`.
pub async fn fresh_database(cluster: &LocalPostgres) -> PgConnectOptions {
    let (options, mut connection) = unmigrated_database(cluster).await;
    finledger::store::migrate(&mut connection)
        .await
        .expect("migrating the test database");
    options
}

/// A new database on `cluster` with the migrations up to `version` only, to test the later ones on
/// data written before them.
pub async fn database_migrated_through(cluster: &LocalPostgres, version: i64) -> (PgConnectOptions, PgConnection) {
    let (options, mut connection) = unmigrated_database(cluster).await;
    let mut before = sqlx::migrate::Migrator::new(std::path::Path::new("migrations"))
        .await
        .expect("reading migrations/");
    before.migrations = before
        .iter()
        .filter(|m| m.version <= version)
        .cloned()
        .collect::<Vec<_>>()
        .into();
    before.run(&mut connection).await.expect("migrating the test database");
    (options, connection)
}

async fn unmigrated_database(cluster: &LocalPostgres) -> (PgConnectOptions, PgConnection) {
    let name = format!("test_{}", NEXT_DATABASE.fetch_add(1, Ordering::Relaxed));
    cluster.create_database(&name).await.expect("creating a test database");
    let options = cluster.connect_options(&name);
    let connection = PgConnection::connect_with(&options)
        .await
        .expect("connecting to the test database");
    (options, connection)
}

/// A clock the test moves by hand.
#[derive(Clone)]
pub struct ManualClock(Arc<AtomicI64>);

impl ManualClock {
    pub fn new() -> ManualClock {
        ManualClock(Arc::new(AtomicI64::new(1_800_000_000_000_000)))
    }

    /// Sets the time to `seconds` since the Unix epoch.
    pub fn set_s(&self, seconds: i64) {
        self.0.store(seconds * 1_000_000, Ordering::SeqCst);
    }

    pub fn now_s(&self) -> i64 {
        self.0.load(Ordering::SeqCst) / 1_000_000
    }

    pub fn advance_s(&self, seconds: i64) {
        self.0.fetch_add(seconds * 1_000_000, Ordering::SeqCst);
    }

    pub fn clock(&self) -> Clock {
        let micros = self.0.clone();
        Arc::new(move || Timestamp::from_micros(micros.load(Ordering::SeqCst)))
    }
}

/// A sequencer and read store over one database.
pub struct TestLedger {
    pub handle: LedgerHandle,
    pub store: Store,
    pub options: PgConnectOptions,
    shutdown: Option<Shutdown>,
}

impl TestLedger {
    pub async fn start(options: PgConnectOptions, clock: Clock) -> TestLedger {
        TestLedger::start_with(options, clock, test_audit()).await
    }

    pub async fn start_with(options: PgConnectOptions, clock: Clock, audit: finledger::store::AuditMode) -> TestLedger {
        TestLedger::start_configured(options, clock, audit, SequencerConfig::default()).await
    }

    pub async fn start_configured(
        options: PgConnectOptions,
        clock: Clock,
        audit: finledger::store::AuditMode,
        config: SequencerConfig,
    ) -> TestLedger {
        let store = Store::connect(options.clone(), 4)
            .await
            .expect("connecting the read pool");
        let (handle, shutdown) = sequencer::spawn(options.clone(), config, audit, clock);
        TestLedger {
            handle,
            store,
            options,
            shutdown: Some(shutdown),
        }
    }

    /// A fresh database on the shared cluster, with the system clock.
    pub async fn fresh() -> TestLedger {
        TestLedger::start(fresh_database(shared_cluster()).await, finledger::clock::system()).await
    }

    pub async fn stop(mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            shutdown.drain().await;
        }
        self.store.pool().close().await;
    }

    /// Submits commands and expects the batch to commit.
    pub async fn submit(&self, commands: Vec<Command>) -> Vec<CommandResult> {
        self.handle.submit(commands).await.expect("the batch commits")
    }

    /// (debits_posted, credits_posted, debits_pending, credits_pending) as stored.
    pub async fn balances(&self, n: u128) -> (u64, u64, u64, u64) {
        let account = self
            .store
            .account(account_id(n))
            .await
            .unwrap()
            .expect("the account exists");
        let b = account.balances;
        (b.debits_posted, b.credits_posted, b.debits_pending, b.credits_pending)
    }
}

pub fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

pub fn account_id(n: u128) -> AccountId {
    AccountId::parse(id(n), ErrorCode::IdMustNotBeZero).unwrap()
}

pub fn transfer_id(n: u128) -> TransferId {
    TransferId::parse(id(n), ErrorCode::IdMustNotBeZero).unwrap()
}

pub fn account(n: u128, flags: AccountFlags) -> Command {
    let request = AccountRequest {
        id: id(n),
        currency: "USD".to_string(),
        code: 1,
        owner: "payments".to_string(),
        flags,
        overdraft_limit: None,
        metadata: Some(serde_json::json!({"n": n.to_string()})),
    };
    Command::CreateAccount(request.parse().unwrap())
}

pub fn transfer_request(n: u128, debit: u128, credit: u128, minor: u64) -> TransferRequest {
    TransferRequest {
        id: id(n),
        debit_account_id: Some(id(debit)),
        credit_account_id: Some(id(credit)),
        amount: Some(format!("{}.{:02}", minor / 100, minor % 100)),
        currency: Some("USD".to_string()),
        code: 1,
        ..TransferRequest::default()
    }
}

pub fn transfer(n: u128, debit: u128, credit: u128, minor: u64) -> Command {
    Command::CreateTransfer(transfer_request(n, debit, credit, minor).parse().unwrap())
}

pub fn pending(n: u128, debit: u128, credit: u128, minor: u64, timeout_s: u32) -> Command {
    let request = TransferRequest {
        flags: TransferFlags {
            pending: true,
            ..TransferFlags::default()
        },
        timeout_s: Some(timeout_s),
        ..transfer_request(n, debit, credit, minor)
    };
    Command::CreateTransfer(request.parse().unwrap())
}

pub fn post(n: u128, pending_id: u128) -> Command {
    let request = TransferRequest {
        id: id(n),
        pending_id: Some(id(pending_id)),
        flags: TransferFlags {
            post_pending_transfer: true,
            ..TransferFlags::default()
        },
        ..TransferRequest::default()
    };
    Command::CreateTransfer(request.parse().unwrap())
}

pub const UNLIMITED: AccountFlags = AccountFlags {
    debits_must_not_exceed_credits: false,
    credits_must_not_exceed_debits: false,
};
pub const DEBITS_LIMITED: AccountFlags = AccountFlags {
    debits_must_not_exceed_credits: true,
    credits_must_not_exceed_debits: false,
};

pub fn all_created(results: &[CommandResult]) -> bool {
    results.iter().all(|r| *r == Ok(Applied::Created))
}

/// Checks the stored ledger against itself: per currency debits equal credits (posted and pending),
/// and every balance equals what the transfers table implies. Returns the number of transfers.
pub async fn assert_ledger_consistent(options: &PgConnectOptions) -> i64 {
    let mut connection = PgConnection::connect_with(options).await.unwrap();
    let unbalanced: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (
           SELECT a.currency FROM balances b JOIN accounts a ON a.id = b.account_id GROUP BY a.currency
           HAVING sum(b.debits_posted) <> sum(b.credits_posted) OR sum(b.debits_pending) <> sum(b.credits_pending)
         ) x",
    )
    .fetch_one(&mut connection)
    .await
    .unwrap();
    assert_eq!(unbalanced, 0, "a currency's debits and credits differ");
    // Posted amounts come from single transfers and posts; pending from open pending transfers.
    let mismatched: i64 = sqlx::query_scalar(
        "WITH legs AS (
           SELECT debit_account_id AS account, amount AS dp, 0::bigint AS cp, 0::bigint AS dpn, 0::bigint AS cpn
             FROM transfers WHERE kind IN ('single', 'post_pending')
           UNION ALL SELECT credit_account_id, 0, amount, 0, 0 FROM transfers WHERE kind IN ('single', 'post_pending')
           UNION ALL SELECT debit_account_id, 0, 0, amount, 0 FROM transfers WHERE state = 'pending'
           UNION ALL SELECT credit_account_id, 0, 0, 0, amount FROM transfers WHERE state = 'pending'
         ), derived AS (
           SELECT account, sum(dp) dp, sum(cp) cp, sum(dpn) dpn, sum(cpn) cpn FROM legs GROUP BY account
         )
         SELECT count(*) FROM balances b LEFT JOIN derived d ON d.account = b.account_id
         WHERE b.debits_posted <> coalesce(d.dp, 0) OR b.credits_posted <> coalesce(d.cp, 0)
            OR b.debits_pending <> coalesce(d.dpn, 0) OR b.credits_pending <> coalesce(d.cpn, 0)",
    )
    .fetch_one(&mut connection)
    .await
    .unwrap();
    assert_eq!(
        mismatched, 0,
        "stored balances differ from the transfers that made them"
    );
    // Account history: every folded transfer is in the chunks of exactly its two accounts, nothing
    // else is, and each account's chunks list its transfers in ascending order.
    let misfiled: i64 = sqlx::query_scalar(
        "WITH folded AS (SELECT folded_seq FROM account_history_head),
              chunked AS (SELECT h.account_id, s.seq FROM account_history h, unnest(h.seqs) s(seq)),
              expected AS (
                SELECT debit_account_id AS account_id, seq FROM transfers, folded WHERE seq <= folded_seq
                UNION ALL
                SELECT credit_account_id, seq FROM transfers, folded WHERE seq <= folded_seq)
         SELECT (SELECT count(*) FROM (SELECT * FROM chunked EXCEPT ALL SELECT * FROM expected) extra)
              + (SELECT count(*) FROM (SELECT * FROM expected EXCEPT ALL SELECT * FROM chunked) missing)",
    )
    .fetch_one(&mut connection)
    .await
    .unwrap();
    assert_eq!(misfiled, 0, "the folded account history differs from the transfers");
    let unordered: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (
           SELECT seq, lag(seq) OVER (PARTITION BY account_id ORDER BY last_seq, n) AS previous
           FROM account_history, unnest(seqs) WITH ORDINALITY AS s(seq, n)) x
         WHERE previous >= seq",
    )
    .fetch_one(&mut connection)
    .await
    .unwrap();
    assert_eq!(unordered, 0, "an account's history chunks are out of order");
    sqlx::query_scalar("SELECT count(*) FROM transfers")
        .fetch_one(&mut connection)
        .await
        .unwrap()
}

/// The signing key tests sign audit checkpoints with.
pub fn test_audit_key() -> std::sync::Arc<audit::note::NoteSigner> {
    std::sync::Arc::new(audit::note::NoteSigner::from_seed("finledger.test/audit", [1; 32]).expect("a valid key name"))
}

/// Audit on, a checkpoint after every batch, signed with [`test_audit_key`].
pub fn test_audit() -> finledger::store::AuditMode {
    finledger::store::AuditMode::Signed {
        signer: test_audit_key(),
        checkpoint_interval: std::time::Duration::ZERO,
    }
}
