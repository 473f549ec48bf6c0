//! The audit log as the ledger writes it into PostgreSQL: every change and rejection is recorded in
//! its batch's transaction, the exported bundle verifies offline, and tampering done directly in the
//! database is detected and located.

mod helpers;

use audit::log::Appender;
use audit::merkle::Subtree;
use audit::note::{CheckpointSigner, NoteSigner, NoteVerifier};
use audit::record::{Event, Record};
use audit::verify::FailureKind;
use finledger::evidence::{self, BundleError};
use helpers::*;
use ledger::ErrorCode;
use sqlx::{Connection, PgConnection};
use tempfile::TempDir;

fn key() -> NoteVerifier {
    test_audit_key().verifier()
}

/// A ledger with accounts, transfers, a rejection, a replay, and a pending transfer posted: 3 + 20 +
/// 1 + 1 + 2 records, each batch signed.
async fn ledger_with_history() -> TestLedger {
    let ledger = TestLedger::fresh().await;
    ledger
        .submit(vec![
            account(1, UNLIMITED),
            account(2, DEBITS_LIMITED),
            account(3, UNLIMITED),
        ])
        .await;
    for round in 0..4u128 {
        let commands = (0..5u128)
            .map(|n| transfer(100 + round * 10 + n, 1, 2, 100 + n as u64))
            .collect();
        ledger.submit(commands).await;
    }
    let results = ledger
        .submit(vec![transfer(200, 2, 3, 1_000_000), transfer(100, 1, 2, 100)])
        .await;
    assert_eq!(results[0], Err(ErrorCode::ExceedsCredits));
    ledger.submit(vec![pending(300, 2, 3, 50, 3600), post(301, 300)]).await;
    ledger
}

async fn export(ledger: &TestLedger, dir: &TempDir, from: u64, to: Option<u64>) -> std::path::PathBuf {
    let path = dir.path().join(format!("bundle-{from}-{to:?}.tar"));
    let mut connection = PgConnection::connect_with(&ledger.options).await.unwrap();
    evidence::export(&mut connection, &path, from, to, &key())
        .await
        .unwrap();
    path
}

async fn superuser(ledger: &TestLedger) -> PgConnection {
    let mut connection = PgConnection::connect_with(&ledger.options).await.unwrap();
    // What someone with the database's superuser password can do: bypass the append-only triggers.
    sqlx::query("SET session_replication_role = replica")
        .execute(&mut connection)
        .await
        .unwrap();
    connection
}

/// Every stored record, in order, read through the `audit_records` view.
async fn stored_records(connection: &mut PgConnection) -> Vec<Vec<u8>> {
    sqlx::query_scalar("SELECT bytes FROM audit_records ORDER BY seq")
        .fetch_all(connection)
        .await
        .unwrap()
}

/// Replaces the stored records with `records` from seq 0, as one batch would store them. Needs a
/// connection past the append-only triggers.
async fn store_records(connection: &mut PgConnection, records: &[Vec<u8>]) {
    sqlx::query("DELETE FROM audit_record_packs")
        .execute(&mut *connection)
        .await
        .unwrap();
    let mut offsets = vec![0i32];
    for record in records {
        offsets.push(offsets.last().unwrap() + record.len() as i32);
    }
    sqlx::query("INSERT INTO audit_record_packs (first_seq, bytes, offsets) VALUES (0, $1, $2)")
        .bind(records.concat())
        .bind(offsets)
        .execute(&mut *connection)
        .await
        .unwrap();
}

/// Edits the stored log as someone past the append-only triggers could: the records in order,
/// changed by `edit`, stored back from seq 0.
async fn rewrite_records(connection: &mut PgConnection, edit: impl FnOnce(&mut Vec<Vec<u8>>)) {
    let mut records = stored_records(connection).await;
    edit(&mut records);
    store_records(connection, &records).await;
}

fn located(result: Result<(evidence::Manifest, audit::verify::Report), BundleError>) -> audit::verify::Failure {
    match result {
        Err(BundleError::Failed(failure)) => failure,
        other => panic!("expected a located failure, got {other:?}"),
    }
}

fn verify(path: &std::path::Path) -> Result<(evidence::Manifest, audit::verify::Report), BundleError> {
    evidence::verify_bundle(path, &key(), None, |_, _| {})
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_change_and_rejection_is_recorded_and_the_bundle_verifies() {
    let ledger = ledger_with_history().await;
    let dir = TempDir::new().unwrap();
    let (manifest, report) = verify(&export(&ledger, &dir, 0, None).await).unwrap();
    assert_eq!((manifest.from_seq, manifest.to_seq), (0, 27));
    assert_eq!(report.records, 27);
    assert_eq!(report.by_type["account.created"], 3);
    assert_eq!(report.by_type["transfer.created"], 21);
    assert_eq!(report.by_type["transfer.posted"], 1);
    // The refused transfer and the replay of transfer 100.
    assert_eq!(report.by_type["command.rejected"], 2);
    assert_eq!(report.balances_compared, 3);
    let usd = &report.totals["USD"];
    assert_eq!(usd.debits_posted, usd.credits_posted);

    // Records carry who asked, and every batch left a checkpoint.
    let mut connection = PgConnection::connect_with(&ledger.options).await.unwrap();
    let bytes: Vec<u8> = sqlx::query_scalar("SELECT bytes FROM audit_records WHERE seq = 0")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    assert_eq!(Record::decode(&bytes).unwrap().actor.principal, "finledger");
    let checkpoints: i64 = sqlx::query_scalar("SELECT count(*) FROM audit_checkpoints")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    assert_eq!(checkpoints, 7);
    // The append-only triggers hold for everyone who does not switch them off.
    for statement in [
        "UPDATE audit_record_packs SET bytes = '\\x00' WHERE first_seq = 0",
        "DELETE FROM audit_record_packs WHERE first_seq = 0",
    ] {
        let refused = sqlx::query(statement).execute(&mut connection).await.unwrap_err();
        assert!(refused.to_string().contains("append-only"), "{refused}");
    }

    // A range of the log verifies against the same checkpoint.
    let (_, part) = verify(&export(&ledger, &dir, 5, Some(17)).await).unwrap();
    assert_eq!((part.first_seq, part.records), (5, 12));
    ledger.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edited_amount_is_detected_and_located() {
    let ledger = ledger_with_history().await;
    let mut connection = superuser(&ledger).await;
    rewrite_records(&mut connection, |records| {
        let mut record = Record::decode(&records[5]).unwrap();
        let Event::TransferCreated(transfer) = &mut record.event else {
            panic!("record 5 is a transfer")
        };
        transfer.amount += 1_000;
        records[5] = record.encode();
    })
    .await;
    let dir = TempDir::new().unwrap();
    let failure = located(verify(&export(&ledger, &dir, 0, None).await));
    assert_eq!((failure.seq, failure.kind), (Some(5), FailureKind::Altered));
    ledger.stop().await;
}

/// Edits the stored records past the append-only triggers, then exports and verifies: the failure
/// the verifier reports.
async fn tamper(edit: impl FnOnce(&mut Vec<Vec<u8>>)) -> audit::verify::Failure {
    let ledger = ledger_with_history().await;
    let mut connection = superuser(&ledger).await;
    rewrite_records(&mut connection, edit).await;
    let dir = TempDir::new().unwrap();
    let failure = located(verify(&export(&ledger, &dir, 0, None).await));
    ledger.stop().await;
    failure
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_record_is_detected_and_located() {
    let failure = tamper(|records| {
        records.remove(9);
    })
    .await;
    assert_eq!(
        (failure.seq, failure.kind),
        (Some(9), FailureKind::OutOfOrder { found: 10 })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn swapped_records_are_detected_and_located() {
    let failure = tamper(|records| records.swap(12, 13)).await;
    assert_eq!(
        (failure.seq, failure.kind),
        (Some(12), FailureKind::OutOfOrder { found: 13 })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_truncated_tail_is_detected_with_or_without_its_checkpoints() {
    let ledger = ledger_with_history().await;
    let dir = TempDir::new().unwrap();
    // The auditor's checkpoint from an earlier export.
    let trusted = {
        let mut connection = PgConnection::connect_with(&ledger.options).await.unwrap();
        let note: String = sqlx::query_scalar("SELECT note FROM audit_checkpoints ORDER BY size DESC LIMIT 1")
            .fetch_one(&mut connection)
            .await
            .unwrap();
        note
    };
    let mut connection = superuser(&ledger).await;
    rewrite_records(&mut connection, |records| records.truncate(20)).await;
    let failure = located(verify(&export(&ledger, &dir, 0, None).await));
    assert_eq!(failure.seq, Some(20));
    assert!(matches!(failure.kind, FailureKind::Truncated { declared_end: 27, .. }));

    // Cut back consistently: the checkpoints and subtree hashes past seq 20 go too. The older
    // checkpoint still verifies; the auditor's newer one exposes the cut.
    for statement in [
        "DELETE FROM audit_checkpoints WHERE size > 20",
        "DELETE FROM audit_subtrees WHERE (index + 1) * (1 << level) > 20",
    ] {
        sqlx::query(statement).execute(&mut connection).await.unwrap();
    }
    let size: i64 = sqlx::query_scalar("SELECT max(size) FROM audit_checkpoints")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    rewrite_records(&mut connection, |records| records.truncate(size as usize)).await;
    let path = export(&ledger, &dir, 0, None).await;
    let (_, report) = verify(&path).unwrap();
    assert_eq!(report.checkpoint_size, size as u64);
    let failure = located(evidence::verify_bundle(&path, &key(), Some(&trusted), |_, _| {}));
    assert_eq!(failure.seq, Some(size as u64));
    assert!(matches!(failure.kind, FailureKind::NotAnExtension { trusted: 27, .. }));
    ledger.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_rewritten_and_signed_with_another_key_is_refused() {
    let ledger = ledger_with_history().await;
    let mut connection = superuser(&ledger).await;
    let stored = stored_records(&mut connection).await;
    // Rewrite: one amount changed, everything after re-chained, re-hashed and signed again.
    let forger = std::sync::Arc::new(NoteSigner::from_seed(key().name(), [66; 32]).unwrap());
    let mut appender = Appender::new();
    let mut subtrees = Vec::new();
    for statement in ["DELETE FROM audit_subtrees", "DELETE FROM audit_checkpoints"] {
        sqlx::query(statement).execute(&mut connection).await.unwrap();
    }
    let mut forged = Vec::new();
    for (seq, bytes) in stored.iter().enumerate() {
        let mut record = Record::decode(bytes).unwrap();
        if let (5, Event::TransferCreated(transfer)) = (seq, &mut record.event) {
            transfer.amount += 1_000;
        }
        let appended = appender.append(record.timestamp_micros, &record.actor, &record.event, |s, h| {
            subtrees.push((s, *h))
        });
        forged.push(appended.bytes);
    }
    store_records(&mut connection, &forged).await;
    for (subtree, hash) in subtrees.iter().filter(|(s, _)| s.level % 4 == 0) {
        let Subtree { level, index } = *subtree;
        sqlx::query("INSERT INTO audit_subtrees (level, index, hash) VALUES ($1, $2, $3)")
            .bind(i16::from(level))
            .bind(index as i64)
            .bind(hash.to_vec())
            .execute(&mut connection)
            .await
            .unwrap();
    }
    let signed = CheckpointSigner::new(forger.clone(), None)
        .sign(appender.size(), appender.root(), &[])
        .unwrap();
    sqlx::query("INSERT INTO audit_checkpoints (size, root, note, signed_at) VALUES ($1, $2, $3, now())")
        .bind(signed.checkpoint.size as i64)
        .bind(signed.checkpoint.root.to_vec())
        .bind(&signed.note)
        .execute(&mut connection)
        .await
        .unwrap();
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("forged.tar");
    let mut reader = PgConnection::connect_with(&ledger.options).await.unwrap();
    evidence::export(&mut reader, &path, 0, None, &forger.verifier())
        .await
        .unwrap();
    // Signed with the log's key name but not its key: refused.
    match verify(&path) {
        Err(BundleError::Checkpoint(audit::note::NoteError::NotSigned(named))) => assert_eq!(named, key().to_string()),
        other => panic!("expected the signature to be refused, got {other:?}"),
    }
    // Even an auditor who took the forger's key would see the log disagree with the balances.
    let failure = located(evidence::verify_bundle(&path, &forger.verifier(), None, |_, _| {}));
    assert!(
        matches!(failure.kind, FailureKind::BalanceMismatch { ref account, .. } if account.ends_with("000000000001"))
    );
    // And the running ledger refuses to sign on top of it when it next loads the log.
    let restarted = TestLedger::start(ledger.options.clone(), finledger::clock::system()).await;
    let outcome = restarted.handle.submit(vec![transfer(900, 1, 2, 1)]).await;
    assert!(outcome.is_err(), "{outcome:?}");
    restarted.stop().await;
    ledger.stop().await;
}

fn database_url(options: &sqlx::postgres::PgConnectOptions) -> String {
    format!(
        "postgres://{}@localhost:{}/{}?host={}",
        options.get_username(),
        options.get_port(),
        options.get_database().expect("a database name"),
        options.get_socket().expect("a socket directory").display()
    )
}

fn finledger(arguments: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_finledger"))
        .args(arguments)
        .env_remove("DATABASE_URL")
        .output()
        .expect("running finledger")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_command_line_exports_verifies_and_names_the_failing_record() {
    let ledger = ledger_with_history().await;
    let dir = TempDir::new().unwrap();
    let path = |name: &str| dir.path().join(name).to_str().unwrap().to_string();
    std::fs::write(path("checkpoint.key"), test_audit_key().to_key_text()).unwrap();
    let url = database_url(&ledger.options);
    let export = |out: &str| {
        finledger(&[
            "audit",
            "export",
            "--out",
            out,
            "--database-url",
            &url,
            "--audit-key",
            &path("checkpoint.key"),
        ])
    };
    let exported = export(&path("good.tar"));
    assert!(
        exported.status.success(),
        "{}",
        String::from_utf8_lossy(&exported.stderr)
    );
    let vkey = key().to_string();
    let verified = finledger(&["audit", "verify", &path("good.tar"), "--public-key", &vkey]);
    let stdout = String::from_utf8_lossy(&verified.stdout);
    assert!(verified.status.success(), "{stdout}");
    assert!(stdout.starts_with("VERIFIED: records 0..27"), "{stdout}");
    assert!(
        stdout.contains("database balances of 3 accounts equal the log's"),
        "{stdout}"
    );

    // The auditor keeps this checkpoint and the public key in files.
    let mut connection = PgConnection::connect_with(&ledger.options).await.unwrap();
    let note: String = sqlx::query_scalar("SELECT note FROM audit_checkpoints ORDER BY size DESC LIMIT 1")
        .fetch_one(&mut connection)
        .await
        .unwrap();
    std::fs::write(path("trusted.note"), &note).unwrap();
    std::fs::write(path("log.vkey"), format!("{vkey}\n")).unwrap();
    let verified = finledger(&[
        "audit",
        "verify",
        &path("good.tar"),
        "--public-key",
        &path("log.vkey"),
        "--trusted-checkpoint",
        &path("trusted.note"),
    ]);
    let stdout = String::from_utf8_lossy(&verified.stdout);
    assert!(verified.status.success(), "{stdout}");
    assert!(stdout.contains("extends the trusted checkpoint of size 27"), "{stdout}");

    let mut superuser = superuser(&ledger).await;
    rewrite_records(&mut superuser, |records| records[5] = records[4].clone()).await;
    assert!(export(&path("bad.tar")).status.success());
    let failed = finledger(&["audit", "verify", &path("bad.tar"), "--public-key", &vkey]);
    let stdout = String::from_utf8_lossy(&failed.stdout);
    assert_eq!(failed.status.code(), Some(1), "{stdout}");
    assert!(
        stdout.starts_with("FAILED: record 5: missing or out of order: found seq 4"),
        "{stdout}"
    );

    let other = NoteSigner::from_seed("another.example/log", [9; 32])
        .unwrap()
        .verifier()
        .to_string();
    let failed = finledger(&["audit", "verify", &path("good.tar"), "--public-key", &other]);
    let stdout = String::from_utf8_lossy(&failed.stdout);
    assert_eq!(failed.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("no signature by key another.example/log"), "{stdout}");
    let garbage = finledger(&["audit", "verify", &path("trusted.note"), "--public-key", &vkey]);
    assert_eq!(garbage.status.code(), Some(1));
    ledger.stop().await;
}

#[test]
fn keygen_writes_a_private_key_once_and_prints_its_public_key() {
    use std::os::unix::fs::PermissionsExt;
    let dir = TempDir::new().unwrap();
    let out = dir.path().join("keys/log.key");
    let out_text = out.to_str().unwrap();
    let made = finledger(&[
        "audit",
        "keygen",
        "--out",
        out_text,
        "--origin",
        "ledger.example.com/audit",
    ]);
    let stdout = String::from_utf8_lossy(&made.stdout);
    assert!(made.status.success(), "{stdout}");
    let signer = NoteSigner::parse(&std::fs::read_to_string(&out).unwrap()).unwrap();
    assert!(
        stdout.contains(&format!("public key: {}", signer.verifier())),
        "{stdout}"
    );
    assert_eq!(std::fs::metadata(&out).unwrap().permissions().mode() & 0o777, 0o600);
    let again = finledger(&["audit", "keygen", "--out", out_text]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("--force"));
    let bad_origin = finledger(&["audit", "keygen", "--out", &format!("{out_text}.2"), "--origin", "a b"]);
    assert!(!bad_origin.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_a_checkpoint_interval_the_unsigned_tail_is_signed_on_the_next_start_and_expiries_are_recorded() {
    let options = fresh_database(shared_cluster()).await;
    let clock = ManualClock::new();
    let hourly = finledger::store::AuditMode::Signed {
        signer: test_audit_key(),
        checkpoint_interval: std::time::Duration::from_secs(3600),
    };
    let ledger = TestLedger::start_with(options.clone(), clock.clock(), hourly).await;
    ledger.submit(vec![account(1, UNLIMITED), account(2, UNLIMITED)]).await;
    ledger.submit(vec![pending(10, 1, 2, 500, 1)]).await;
    clock.advance_s(2);
    // An empty submission runs due expirations.
    ledger.submit(Vec::new()).await;
    ledger.stop().await;
    let mut connection = PgConnection::connect_with(&options).await.unwrap();
    assert_eq!(count(&mut connection, "audit_records").await, 4);
    assert_eq!(count(&mut connection, "audit_checkpoints").await, 0);

    // The next start finds records after the last checkpoint and signs them before anything else.
    let ledger = TestLedger::start(options.clone(), clock.clock()).await;
    ledger.submit(vec![transfer(20, 1, 2, 100)]).await;
    assert_eq!(count(&mut connection, "audit_checkpoints").await, 1);
    let dir = TempDir::new().unwrap();
    let (_, report) = verify(&export(&ledger, &dir, 0, None).await).unwrap();
    assert_eq!(report.records, 5);
    assert_eq!(report.by_type["transfer.expired"], 1);
    assert_eq!(report.totals["USD"].debits_pending, 0);
    assert_eq!(report.balances_compared, 2);
    ledger.stop().await;
}

async fn count(connection: &mut PgConnection, table: &str) -> i64 {
    let query = format!("SELECT count(*) FROM {table}");
    sqlx::query_scalar(sqlx::AssertSqlSafe(query))
        .fetch_one(connection)
        .await
        .unwrap()
}

/// Records stored one row each (before migration 0010) keep their seqs and bytes once packed, and the
/// ledger goes on appending to them with a checkpoint that extends the one signed before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_stored_one_row_each_are_packed_and_the_log_goes_on() {
    use audit::record::{Actor, CommandKind, Rejection};
    let (options, mut connection) = database_migrated_through(shared_cluster(), 9).await;
    // More records than the migration packs into one row.
    const RECORDS: usize = 8_500;
    let mut appender = Appender::new();
    let (mut records, mut levels, mut indexes, mut hashes) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for n in 0..RECORDS {
        let event = Event::CommandRejected(Rejection {
            command: CommandKind::CreateTransfer,
            id: (n as u128).to_be_bytes(),
            code: "debit_account_not_found".to_string(),
            debit_account: None,
            credit_account: None,
            amount: None,
            currency: None,
            pending_id: None,
        });
        let appended = appender.append(1_000_000 + n as i64, &Actor::system(), &event, |subtree, hash| {
            if subtree.level % 4 == 0 {
                levels.push(i16::from(subtree.level));
                indexes.push(subtree.index as i64);
                hashes.push(hash.to_vec());
            }
        });
        records.push(appended.bytes);
    }
    let signed = CheckpointSigner::new(test_audit_key(), None)
        .sign(appender.size(), appender.root(), &[])
        .unwrap();
    sqlx::query("INSERT INTO audit_records (seq, bytes) SELECT * FROM UNNEST($1::int8[], $2::bytea[])")
        .bind((0..RECORDS as i64).collect::<Vec<i64>>())
        .bind(&records)
        .execute(&mut connection)
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO audit_subtrees (level, index, hash) SELECT * FROM UNNEST($1::int2[], $2::int8[], $3::bytea[])",
    )
    .bind(&levels)
    .bind(&indexes)
    .bind(&hashes)
    .execute(&mut connection)
    .await
    .unwrap();
    sqlx::query("INSERT INTO audit_checkpoints (size, root, note, signed_at) VALUES ($1, $2, $3, now())")
        .bind(RECORDS as i64)
        .bind(signed.checkpoint.root.to_vec())
        .bind(&signed.note)
        .execute(&mut connection)
        .await
        .unwrap();
    sqlx::query("UPDATE ledger_head SET audit_size = $1")
        .bind(RECORDS as i64)
        .execute(&mut connection)
        .await
        .unwrap();
    finledger::store::migrate(&mut connection).await.unwrap();
    assert_eq!(stored_records(&mut connection).await, records);
    assert_eq!(count(&mut connection, "audit_record_packs").await, 2);

    let ledger = TestLedger::start(options.clone(), finledger::clock::system()).await;
    let results = ledger
        .submit(vec![
            account(1, UNLIMITED),
            account(2, UNLIMITED),
            transfer(10, 1, 2, 100),
        ])
        .await;
    assert!(all_created(&results), "{results:?}");
    let dir = TempDir::new().unwrap();
    let whole = export(&ledger, &dir, 0, None).await;
    let (_, report) = evidence::verify_bundle(&whole, &key(), Some(&signed.note), |_, _| {}).unwrap();
    assert_eq!(report.records, RECORDS as u64 + 3);
    assert_eq!(report.by_type["command.rejected"], RECORDS as u64);
    // A range from inside the first packed row to the new one.
    let (_, part) = verify(&export(&ledger, &dir, 8_000, None).await).unwrap();
    assert_eq!((part.first_seq, part.records), (8_000, RECORDS as u64 + 3 - 8_000));
    ledger.stop().await;
}
