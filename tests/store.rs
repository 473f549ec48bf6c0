//! The commit path against a real PostgreSQL: durability across restarts, concurrent submitters,
//! failed commits, two instances on one database, and deadline expiry.

mod helpers;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use finledger::local_postgres::LocalPostgres;
use finledger::store::{SequencerConfig, SubmitError};
use helpers::*;
use ledger::{Applied, Command, ErrorCode, PendingState};
use uuid::Uuid;

async fn own_cluster(name: &'static str) -> LocalPostgres {
    let dir = cluster_dir(name);
    tokio::task::spawn_blocking(move || LocalPostgres::start(&dir))
        .await
        .unwrap()
        .expect("starting a PostgreSQL")
}

async fn stop_cluster(mut cluster: LocalPostgres) {
    tokio::task::spawn_blocking(move || cluster.stop()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_balances_are_identical_after_restarting_service_and_database() {
    let cluster = own_cluster("restart").await;
    let options = fresh_database(&cluster).await;
    let service = TestLedger::start(options.clone(), finledger::clock::system()).await;
    let batch = vec![
        account(1, UNLIMITED),
        account(2, DEBITS_LIMITED),
        account(3, UNLIMITED),
        transfer(10, 1, 2, 10_000),
        pending(11, 2, 3, 2_500, 3600),
        transfer(12, 2, 3, 1_000),
        post(13, 11),
        pending(14, 2, 3, 500, 3600),
    ];
    assert!(all_created(&service.submit(batch.clone()).await));
    let before = [
        service.balances(1).await,
        service.balances(2).await,
        service.balances(3).await,
    ];
    assert_eq!(before[1], (3_500, 10_000, 500, 0));
    service.stop().await;
    stop_cluster(cluster).await;

    let cluster = own_cluster("restart").await;
    let service = TestLedger::start(options.clone(), finledger::clock::system()).await;
    let after = [
        service.balances(1).await,
        service.balances(2).await,
        service.balances(3).await,
    ];
    assert_eq!(after, before);
    let replay = service.submit(batch).await;
    assert!(replay.iter().all(|r| *r == Ok(Applied::Exists)), "{replay:?}");
    // The rebuilt cache knows the open pending transfer and the account's limit.
    assert_eq!(service.submit(vec![post(15, 14)]).await, [Ok(Applied::Created)]);
    assert_eq!(
        service.submit(vec![transfer(16, 2, 3, 6_001)]).await,
        [Err(ErrorCode::ExceedsCredits)]
    );
    assert_eq!(service.balances(2).await, (4_000, 10_000, 0, 0));
    assert_eq!(assert_ledger_consistent(&options).await, 6);
    service.stop().await;
    stop_cluster(cluster).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixty_four_concurrent_submitters_each_get_exactly_their_own_result() {
    let service = Arc::new(TestLedger::fresh().await);
    let mut setup = vec![account(1, UNLIMITED)];
    setup.extend((0..64).map(|s| account(100 + s, DEBITS_LIMITED)));
    setup.extend((0..64).map(|s| transfer(1_000 + s, 1, 100 + s, 1_000)));
    assert!(all_created(&service.submit(setup).await));
    let mut tasks = Vec::new();
    for submitter in 0..64u128 {
        let service = service.clone();
        tasks.push(tokio::spawn(async move {
            let mut outcomes = Vec::new();
            // Each submitter spends its own 10.00 in 1.00 steps, then once more than it has.
            for step in 0..11u128 {
                let n = 10_000 + submitter * 100 + step;
                let amount = if step < 10 { 100 } else { 1 };
                let results = service.submit(vec![transfer(n, 100 + submitter, 1, amount)]).await;
                outcomes.push(results);
            }
            (submitter, outcomes)
        }));
    }
    for task in tasks {
        let (submitter, outcomes) = task.await.unwrap();
        for (step, results) in outcomes.iter().enumerate() {
            let expected = if step < 10 {
                Ok(Applied::Created)
            } else {
                Err(ErrorCode::ExceedsCredits)
            };
            assert_eq!(results, &[expected], "submitter {submitter} step {step}");
        }
        assert_eq!(service.balances(100 + submitter).await, (1_000, 1_000, 0, 0));
    }
    assert_eq!(assert_ledger_consistent(&service.options).await, 64 + 64 * 10);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_that_fails_acknowledges_nothing_as_success() {
    let cluster = own_cluster("failure").await;
    let options = fresh_database(&cluster).await;
    let service = Arc::new(TestLedger::start(options.clone(), finledger::clock::system()).await);
    assert!(all_created(
        &service.submit(vec![account(1, UNLIMITED), account(2, UNLIMITED)]).await
    ));
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for submitter in 0..16u128 {
        let (service, acknowledged) = (service.clone(), acknowledged.clone());
        tasks.push(tokio::spawn(async move {
            let (mut succeeded, mut failed) = (Vec::new(), Vec::new());
            for step in 0..100_000u128 {
                let n = 1_000_000 + submitter * 100_000 + step;
                match service.handle.submit(vec![transfer(n, 1, 2, 1)]).await {
                    Ok(results) => {
                        assert_eq!(results, [Ok(Applied::Created)]);
                        succeeded.push(n);
                        acknowledged.fetch_add(1, Ordering::SeqCst);
                    }
                    Err(SubmitError::CommitFailed { .. }) => {
                        failed.push(n);
                        if failed.len() >= 3 {
                            break;
                        }
                    }
                    Err(other) => panic!("unexpected {other:?}"),
                }
            }
            (succeeded, failed)
        }));
    }
    // Stop the database under load, once some batches have committed.
    while acknowledged.load(Ordering::SeqCst) < 500 {
        tokio::task::yield_now().await;
    }
    stop_cluster(cluster).await;
    let (mut succeeded, mut failed) = (Vec::new(), Vec::new());
    for task in tasks {
        let (s, f) = task.await.unwrap();
        succeeded.extend(s);
        failed.extend(f);
    }
    assert!(failed.len() >= 16, "every submitter saw the failure");

    let cluster = own_cluster("failure").await;
    let restarted = TestLedger::start(options.clone(), finledger::clock::system()).await;
    let ids: Vec<Uuid> = succeeded.iter().map(|n| id(*n)).collect();
    let mut connection = sqlx::PgConnection::connect_with(&options).await.unwrap();
    let stored: i64 = sqlx::query_scalar("SELECT count(*) FROM transfers WHERE id = ANY($1)")
        .bind(&ids)
        .fetch_one(&mut connection)
        .await
        .unwrap();
    assert_eq!(
        stored as usize,
        succeeded.len(),
        "every acknowledged transfer is durable"
    );
    // Retrying the unknown outcomes with the same ids is safe: each lands exactly once.
    let retry: Vec<Command> = failed.iter().map(|n| transfer(*n, 1, 2, 1)).collect();
    let results = restarted.submit(retry).await;
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Ok(Applied::Created | Applied::Exists))),
        "{results:?}"
    );
    let total = assert_ledger_consistent(&options).await;
    assert_eq!(total as usize, succeeded.len() + failed.len());
    assert_eq!(restarted.balances(2).await.1, total as u64);
    restarted.stop().await;
    stop_cluster(cluster).await;
}

use sqlx::Connection;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_on_one_database_keep_every_invariant() {
    let first = Arc::new(TestLedger::fresh().await);
    let second = Arc::new(TestLedger::start(first.options.clone(), finledger::clock::system()).await);
    let mut setup = vec![account(1, DEBITS_LIMITED), account(2, UNLIMITED), account(3, UNLIMITED)];
    setup.extend((10..20).map(|n| account(n, DEBITS_LIMITED)));
    setup.push(transfer(100, 2, 1, 10_000));
    setup.extend((10..20).map(|n| transfer(200 + n, 2, n, 500)));
    assert!(all_created(&first.submit(setup).await));
    let mut tasks = Vec::new();
    for (instance, service) in [first.clone(), second.clone()].into_iter().enumerate() {
        for submitter in 0..8u128 {
            let service = service.clone();
            let base = 10_000 + (instance as u128 * 8 + submitter) * 1_000;
            tasks.push(tokio::spawn(async move {
                let mut spent = 0;
                for step in 0..30u128 {
                    // Both instances race to spend account 1's 100.00 and move money among 10..20.
                    let hot = service.submit(vec![transfer(base + step * 2, 1, 3, 100)]).await;
                    if hot == [Ok(Applied::Created)] {
                        spent += 1;
                    } else {
                        assert_eq!(hot, [Err(ErrorCode::ExceedsCredits)]);
                    }
                    let from = 10 + (step + submitter) % 10;
                    let to = 10 + (step + submitter + 3) % 10;
                    let spread = service.submit(vec![transfer(base + step * 2 + 1, from, to, 7)]).await;
                    assert!(
                        matches!(spread[0], Ok(Applied::Created) | Err(ErrorCode::ExceedsCredits)),
                        "{spread:?}"
                    );
                }
                spent
            }));
        }
    }
    let mut spent = 0;
    for task in tasks {
        spent += task.await.unwrap();
    }
    assert_eq!(
        spent, 100,
        "exactly the funded 100.00 was spent, in 1.00 steps, across both instances"
    );
    assert_eq!(first.balances(1).await, (10_000, 10_000, 0, 0));
    assert_eq!(second.balances(3).await, (0, 10_000, 0, 0));
    assert_ledger_consistent(&first.options).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pending_transfers_expire_at_their_deadline_and_stay_expired() {
    let clock = ManualClock::new();
    let options = fresh_database(shared_cluster()).await;
    let service = TestLedger::start(options.clone(), clock.clock()).await;
    let setup = vec![
        account(1, UNLIMITED),
        account(2, UNLIMITED),
        pending(10, 1, 2, 700, 60),
        pending(11, 1, 2, 300, 120),
    ];
    assert!(all_created(&service.submit(setup).await));
    clock.advance_s(60);
    assert_eq!(
        service.submit(vec![post(20, 10)]).await,
        [Err(ErrorCode::PendingTransferExpired)]
    );
    let expired = service.store.transfer(transfer_id(10)).await.unwrap().unwrap();
    assert_eq!(expired.state, Some(PendingState::Expired));
    assert_eq!(service.balances(1).await, (0, 0, 300, 0));
    service.stop().await;
    // A restarted service still knows the other deadline.
    let service = TestLedger::start(options.clone(), clock.clock()).await;
    clock.advance_s(60);
    service.submit(Vec::new()).await;
    assert_eq!(service.balances(1).await, (0, 0, 0, 0));
    let stored = service.store.transfer(transfer_id(11)).await.unwrap().unwrap();
    assert_eq!(stored.state, Some(PendingState::Expired));
    assert_ledger_consistent(&options).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_submission_is_refused_and_changes_nothing() {
    let service = TestLedger::fresh().await;
    let commands: Vec<Command> = (0..8191u128).map(|n| account(1 + n, UNLIMITED)).collect();
    assert_eq!(
        service.handle.submit(commands).await,
        Err(SubmitError::TooLarge { count: 8191, max: 8190 })
    );
    assert!(service.store.account(account_id(1)).await.unwrap().is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_batches_commit_in_order_and_keep_every_invariant() {
    let service = Arc::new(TestLedger::fresh().await);
    let mut setup = vec![account(1, UNLIMITED)];
    setup.extend((0..100).map(|n| account(10 + n, UNLIMITED)));
    assert!(all_created(&service.submit(setup).await));
    let mut tasks = Vec::new();
    for task in 0..6u128 {
        let service = service.clone();
        tasks.push(tokio::spawn(async move {
            let base = 1_000_000 * (task + 1);
            for round in 0..5u128 {
                let ids = base + round * 10_000;
                // Each round creates an account, moves money through it, holds some, and posts the
                // holds of the previous round: every kind of dependency on a batch still in flight.
                let new_account = 100_000 + task * 10 + round;
                let mut commands = vec![account(new_account, UNLIMITED), transfer(ids, 1, new_account, 500)];
                commands.extend((1..2_000u128).map(|i| {
                    let debit = (i + task) % 100;
                    let credit = (debit + 1 + (i * 7 + round) % 99) % 100;
                    transfer(ids + i, 10 + debit, 10 + credit, 1 + i as u64 % 9)
                }));
                commands.push(transfer(ids + 2_000, new_account, 10 + task, 500));
                commands.extend((0..50u128).map(|i| pending(ids + 3_000 + i, 1, 10 + i, 100, 3600)));
                if round > 0 {
                    let previous = base + (round - 1) * 10_000;
                    commands.extend((0..50u128).map(|i| post(ids + 4_000 + i, previous + 3_000 + i)));
                }
                let results = service.submit(commands).await;
                assert!(
                    all_created(&results),
                    "task {task} round {round}: {:?}",
                    results.iter().find(|r| r.is_err())
                );
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let total = assert_ledger_consistent(&service.options).await;
    assert_eq!(total, 6 * 5 * (2_001 + 50) + 6 * 4 * 50);
    let mut connection = sqlx::PgConnection::connect_with(&service.options).await.unwrap();
    let (seq_min, seq_max, head): (i64, i64, i64) =
        sqlx::query_as("SELECT min(seq), max(seq), (SELECT transfer_seq FROM ledger_head) FROM transfers")
            .fetch_one(&mut connection)
            .await
            .unwrap();
    assert_eq!((seq_min, seq_max, head), (1, total, total), "commit order has no gaps");
    let out_of_order: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT created_at < lag(created_at) OVER (ORDER BY seq) AS back FROM transfers) x WHERE back",
    )
    .fetch_one(&mut connection)
    .await
    .unwrap();
    assert_eq!(out_of_order, 0, "later batches never carry earlier times");
    assert_eq!(
        service.balances(1).await,
        (6 * 5 * 500 + 6 * 4 * 50 * 100, 0, 6 * 50 * 100, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_small_account_cache_still_gives_exact_balances() {
    let options = fresh_database(shared_cluster()).await;
    let store = finledger::store::Store::connect(options.clone(), 2).await.unwrap();
    let config = SequencerConfig {
        account_cache_max: 10,
        ..SequencerConfig::default()
    };
    let (handle, shutdown) =
        finledger::store::sequencer::spawn(options.clone(), config, test_audit(), finledger::clock::system());
    let mut setup: Vec<Command> = (0..50u128).map(|n| account(1 + n, DEBITS_LIMITED)).collect();
    setup.push(account(100, UNLIMITED));
    setup.extend((0..50u128).map(|n| transfer(1_000 + n, 100, 1 + n, 300)));
    assert!(all_created(&handle.submit(setup).await.unwrap()));
    // Evicted accounts are reloaded with their limits and balances: each can spend exactly 3.00.
    for round in 0..4u128 {
        let commands: Vec<Command> = (0..50u128)
            .map(|n| transfer(2_000 + round * 100 + n, 1 + n, 100, 100))
            .collect();
        let results = handle.submit(commands).await.unwrap();
        let expected = if round < 3 {
            Ok(Applied::Created)
        } else {
            Err(ErrorCode::ExceedsCredits)
        };
        assert!(results.iter().all(|r| *r == expected), "round {round}: {results:?}");
    }
    let account = store.account(account_id(7)).await.unwrap().unwrap();
    assert_eq!(
        (account.balances.debits_posted, account.balances.credits_posted),
        (300, 300)
    );
    shutdown.drain().await;
    assert_ledger_consistent(&options).await;
}

/// Events written one row each (before migration 0006) keep their seq, ids, keys and payloads, and
/// each key's numbering goes on from where it was.
#[tokio::test]
async fn events_written_before_the_packed_outbox_keep_their_place_and_numbering() {
    let (options, mut connection) = database_migrated_through(shared_cluster(), 5).await;
    let merchant = id(1);
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "INSERT INTO accounts (id, currency, code, owner, debits_must_not_exceed_credits,
                               credits_must_not_exceed_debits, created_at)
         VALUES ('{merchant}', 'USD', 1, 'payments', false, false, now());
         INSERT INTO balances (account_id) VALUES ('{merchant}');
         INSERT INTO outbox (seq, id, type, key, key_seq, subject, payload, audit_seq, record_hash, created_at) VALUES
           (1, gen_random_uuid(), 'ledger.settlement.completed.v1', '{merchant}', 1, 's1', '{{\"n\":1}}', 7,
            sha256('a'), now()),
           (2, gen_random_uuid(), 'ledger.audit.checkpoint.v1', 'audit-log', 1, '8', '{{\"n\":2}}', NULL, NULL, now()),
           (3, gen_random_uuid(), 'ledger.payout.requested.v1', '{merchant}', 2, 's1', '{{\"n\":3}}', 7,
            sha256('a'), now());
         UPDATE ledger_head SET event_seq = 3;"
    )))
    .execute(&mut connection)
    .await
    .unwrap();
    finledger::store::migrate(&mut connection).await.unwrap();

    let events = finledger::outbox::events_after(&mut connection, 0, 10).await.unwrap();
    let seen: Vec<(i64, &str, &str, i64, &str)> = events
        .iter()
        .map(|e| {
            (
                e.seq,
                e.event_type.as_str(),
                e.key.as_str(),
                e.key_seq,
                e.payload.as_str(),
            )
        })
        .collect();
    let merchant_key = merchant.to_string();
    assert_eq!(
        seen,
        [
            (
                1,
                "ledger.settlement.completed.v1",
                merchant_key.as_str(),
                1,
                r#"{"n":1}"#
            ),
            (2, "ledger.audit.checkpoint.v1", "audit-log", 1, r#"{"n":2}"#),
            (3, "ledger.payout.requested.v1", merchant_key.as_str(), 2, r#"{"n":3}"#),
        ]
    );
    assert_eq!(events[0].record_hash.as_deref().map(<[u8]>::len), Some(32));
    assert_eq!(events[0].audit_seq, Some(7));
    assert_eq!(events[1].record_hash, None);
    for event in &events {
        let event_type = finledger::outbox::EventType::parse(&event.event_type).unwrap();
        assert_eq!(event.id, finledger::outbox::event_id(event_type, &event.subject));
    }
    // Each event alone from any cursor.
    for after in 0..3 {
        let one = finledger::outbox::events_after(&mut connection, after, 1)
            .await
            .unwrap();
        assert_eq!(one, events[after as usize..=after as usize]);
    }

    // The merchant's next event is its third.
    let service = TestLedger::start(options.clone(), finledger::clock::system()).await;
    let results = service
        .submit(vec![account(2, UNLIMITED), transfer(10, 2, 1, 500)])
        .await;
    assert!(all_created(&results));
    service.stop().await;
    let events = finledger::outbox::events_after(&mut connection, 3, 10).await.unwrap();
    let transfer_event = events
        .iter()
        .find(|e| e.event_type == "ledger.transfer.posted.v1")
        .expect("the transfer's event");
    assert_eq!(
        (transfer_event.seq, transfer_event.key.as_str(), transfer_event.key_seq),
        (4, merchant_key.as_str(), 3)
    );
}

/// A key lock excludes every other holder of the same key, whichever instance asks, until its guard
/// is dropped; and one instance holds at most a bounded number at once.
#[tokio::test]
async fn key_locks_exclude_other_instances_and_are_bounded() {
    use finledger::store::LockSpace;
    use std::time::Duration;
    let ledger = TestLedger::fresh().await;
    let other = finledger::store::Store::connect(ledger.options.clone(), 1)
        .await
        .unwrap();
    let wait = Duration::from_secs(10);
    let held = ledger.store.lock(LockSpace::Review, id(1), wait).await.unwrap();
    let refused = other.lock(LockSpace::Review, id(1), Duration::from_millis(200)).await;
    assert!(refused.is_err(), "held by the first instance");
    let unrelated = other.lock(LockSpace::Settlement, id(1), wait).await;
    assert!(unrelated.is_ok(), "another key space");
    drop(held);
    assert!(
        other.lock(LockSpace::Review, id(1), wait).await.is_ok(),
        "released with its guard"
    );
    let mut many = Vec::new();
    for n in 10..18 {
        many.push(ledger.store.lock(LockSpace::Review, id(n), wait).await.unwrap());
    }
    let ninth = ledger
        .store
        .lock(LockSpace::Review, id(99), Duration::from_millis(200))
        .await;
    assert!(ninth.is_err(), "eight connections for locks at most");
    many.pop();
    assert!(ledger.store.lock(LockSpace::Review, id(99), wait).await.is_ok());
    ledger.stop().await;
}
