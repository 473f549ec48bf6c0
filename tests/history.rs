//! Account history (statements, point-in-time balances, settlement netting) reads the same whatever
//! part of it has been folded into chunks, including when two folders race.

mod helpers;

use std::time::Duration;

use finledger::store::history::{self, FoldPolicy};
use finledger::store::{SequencerConfig, Store};
use helpers::*;
use ledger::{Balances, Command, Timestamp};
use sqlx::{Connection, PgConnection};

const HUB: u128 = 1;
const SPOKES: u128 = 5;

/// Folds only when a test says so (the folder still folds once at start, before any transfer).
fn folding_by_hand() -> SequencerConfig {
    SequencerConfig {
        history_fold: FoldPolicy {
            transfers_min: i64::MAX,
            transfers_max: 65_536,
            interval: Duration::from_secs(3_600),
        },
        ..SequencerConfig::default()
    }
}

/// Transfer `n` between the hub and a spoke, alternating direction: every transfer touches the hub.
fn hub_transfer(n: u128) -> (u128, u128, u128) {
    let spoke = 2 + n % SPOKES;
    if n.is_multiple_of(2) {
        (n, HUB, spoke)
    } else {
        (n, spoke, HUB)
    }
}

async fn folded_seq(connection: &mut PgConnection) -> i64 {
    sqlx::query_scalar("SELECT folded_seq FROM account_history_head")
        .fetch_one(connection)
        .await
        .unwrap()
}

/// Every transfer id of `account`'s history, walked in pages of `page`.
async fn walk(store: &Store, account: u128, page: u32) -> Vec<uuid::Uuid> {
    let mut ids = Vec::new();
    let mut after = 0;
    loop {
        let transfers = store.account_transfers(account_id(account), after, page).await.unwrap();
        assert!(transfers.len() <= page as usize);
        let Some((last, _)) = transfers.last() else {
            return ids;
        };
        after = *last;
        ids.extend(transfers.iter().map(|(_, t)| t.id.uuid()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn histories_read_the_same_however_much_is_folded() {
    let options = fresh_database(shared_cluster()).await;
    let service = TestLedger::start_configured(
        options.clone(),
        finledger::clock::system(),
        test_audit(),
        folding_by_hand(),
    )
    .await;
    let accounts: Vec<Command> = (HUB..=HUB + SPOKES).map(|n| account(n, UNLIMITED)).collect();
    assert!(all_created(&service.submit(accounts).await));
    // 530 transfers in batches of 53, each batch committed before the next: the hub's history spans
    // three chunks of up to 200 once folded, every spoke's one.
    let transfers: Vec<(u128, u128, u128)> = (100..630).map(hub_transfer).collect();
    for batch in transfers.chunks(53) {
        let commands = batch.iter().map(|(n, d, c)| transfer(*n, *d, *c, *n as u64)).collect();
        assert!(all_created(&service.submit(commands).await));
    }
    let expected = |account: u128| -> Vec<uuid::Uuid> {
        transfers
            .iter()
            .filter(|(_, d, c)| *d == account || *c == account)
            .map(|(n, ..)| id(*n))
            .collect()
    };
    let mut balances = Vec::new();
    for account in HUB..=HUB + SPOKES {
        let (debits_posted, credits_posted, debits_pending, credits_pending) = service.balances(account).await;
        balances.push(Balances {
            debits_posted,
            credits_posted,
            debits_pending,
            credits_pending,
        });
    }
    let mut connection = PgConnection::connect_with(&options).await.unwrap();
    let mut folding = PgConnection::connect_with(&options).await.unwrap();
    let last_seq = 530;
    assert!(folded_seq(&mut connection).await < last_seq, "the tail starts unfolded");
    // Fold 97 transfers at a time (from both connections at once: folds take turns), reading every
    // history in full after each step, until all is folded.
    loop {
        for account in HUB..=HUB + SPOKES {
            for page in [1, 7, 200, 1000] {
                assert_eq!(
                    walk(&service.store, account, page).await,
                    expected(account),
                    "account {account}, pages of {page}"
                );
            }
            let now = Timestamp::from_micros(i64::MAX / 2);
            let as_of = service.store.balances_as_of(account_id(account), now).await.unwrap();
            assert_eq!(as_of, balances[(account - HUB) as usize], "account {account} as of now");
            let netting = service
                .store
                .netting(id(account), None, chrono::DateTime::<chrono::Utc>::MAX_UTC)
                .await
                .unwrap();
            assert_eq!(
                (netting.debits, netting.credits, netting.count),
                (
                    as_of.debits_posted,
                    as_of.credits_posted,
                    expected(account).len() as u64
                ),
                "account {account}'s netting"
            );
        }
        assert_ledger_consistent(&options).await;
        if folded_seq(&mut connection).await == last_seq {
            break;
        }
        let (first, second) = tokio::join!(history::fold(&mut connection, 97), history::fold(&mut folding, 97));
        assert!(first.unwrap().0 <= last_seq && second.unwrap().0 <= last_seq);
    }
    let chunks: i64 = sqlx::query_scalar("SELECT count(*) FROM account_history WHERE account_id = $1")
        .bind(id(HUB))
        .fetch_one(&mut connection)
        .await
        .unwrap();
    assert!(
        chunks >= 3,
        "the hub's 530 transfers take at least three chunks, not {chunks}"
    );
    service.stop().await;
}

#[tokio::test]
async fn transfers_recorded_before_account_history_are_folded_by_the_migration() {
    let (options, mut connection) = database_migrated_through(shared_cluster(), 6).await;
    // 450 transfers, seq n between the hub and spoke 2 + n % 3: the hub's history takes three chunks.
    let transfers: Vec<(u128, u128, u128)> = (1..=450u128)
        .map(|n| {
            let spoke = 2 + n % 3;
            if n.is_multiple_of(2) {
                (n, HUB, spoke)
            } else {
                (n, spoke, HUB)
            }
        })
        .collect();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "INSERT INTO accounts (id, currency, code, owner, debits_must_not_exceed_credits,
                               credits_must_not_exceed_debits, created_at)
         SELECT id, 'USD', 1, 'payments', false, false, now() FROM unnest(ARRAY['{}', '{}', '{}', '{}']::uuid[]) id;
         INSERT INTO transfers (id, seq, kind, linked, debit_account_id, credit_account_id, amount, currency,
                                code, created_at)
         SELECT t.id, t.seq, 'single', false, t.debit, t.credit, t.seq, 'USD', 1, now()
         FROM unnest(ARRAY[{}]::uuid[], ARRAY[{}]::bigint[], ARRAY[{}]::uuid[], ARRAY[{}]::uuid[])
              AS t(id, seq, debit, credit);",
        id(HUB),
        id(2),
        id(3),
        id(4),
        transfers
            .iter()
            .map(|(n, ..)| format!("'{}'", id(*n)))
            .collect::<Vec<_>>()
            .join(","),
        transfers
            .iter()
            .map(|(n, ..)| n.to_string())
            .collect::<Vec<_>>()
            .join(","),
        transfers
            .iter()
            .map(|(_, d, _)| format!("'{}'", id(*d)))
            .collect::<Vec<_>>()
            .join(","),
        transfers
            .iter()
            .map(|(_, _, c)| format!("'{}'", id(*c)))
            .collect::<Vec<_>>()
            .join(","),
    )))
    .execute(&mut connection)
    .await
    .unwrap();
    finledger::store::migrate(&mut connection).await.unwrap();

    assert_eq!(
        folded_seq(&mut connection).await,
        450,
        "everything recorded before is folded"
    );
    let chunks: Vec<i64> = sqlx::query_scalar(
        "SELECT cardinality(seqs)::int8 FROM account_history WHERE account_id = $1 ORDER BY last_seq",
    )
    .bind(id(HUB))
    .fetch_all(&mut connection)
    .await
    .unwrap();
    assert_eq!(
        chunks,
        [200, 200, 50],
        "the hub's 450 transfers in full chunks, in order"
    );
    let store = Store::connect(options.clone(), 2).await.unwrap();
    for account in [HUB, 2, 3, 4] {
        let expected: Vec<uuid::Uuid> = transfers
            .iter()
            .filter(|(_, d, c)| *d == account || *c == account)
            .map(|(n, ..)| id(*n))
            .collect();
        assert!(!expected.is_empty());
        for page in [1, 200, 1000] {
            assert_eq!(
                walk(&store, account, page).await,
                expected,
                "account {account}, pages of {page}"
            );
        }
    }
    // A transfer recorded after the migration (not folded yet) follows them.
    sqlx::query(
        "INSERT INTO transfers (id, seq, kind, linked, debit_account_id, credit_account_id, amount, currency,
                                code, created_at)
         VALUES ($1, 451, 'single', false, $2, $3, 1, 'USD', 1, now())",
    )
    .bind(id(451))
    .bind(id(2))
    .bind(id(HUB))
    .execute(&mut connection)
    .await
    .unwrap();
    let hub = walk(&store, HUB, 1000).await;
    assert_eq!((hub.len(), hub.last()), (451, Some(&id(451))));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_folder_files_batches_as_they_commit() {
    let options = fresh_database(shared_cluster()).await;
    let eager = SequencerConfig {
        history_fold: FoldPolicy {
            transfers_min: 1,
            transfers_max: 100,
            interval: Duration::from_secs(3_600),
        },
        ..SequencerConfig::default()
    };
    let service = TestLedger::start_configured(options.clone(), finledger::clock::system(), test_audit(), eager).await;
    let accounts: Vec<Command> = (HUB..=HUB + SPOKES).map(|n| account(n, UNLIMITED)).collect();
    assert!(all_created(&service.submit(accounts).await));
    // Batches of 37 from four submitters at once; folds of at most 100 take whole batches.
    let transfers: Vec<(u128, u128, u128)> = (100..1580).map(hub_transfer).collect();
    let submitters: Vec<_> = transfers
        .chunks(transfers.len().div_ceil(4))
        .map(|share| {
            let (handle, share) = (service.handle.clone(), share.to_vec());
            tokio::spawn(async move {
                for batch in share.chunks(37) {
                    let commands = batch.iter().map(|(n, d, c)| transfer(*n, *d, *c, *n as u64)).collect();
                    assert!(all_created(&handle.submit(commands).await.expect("the batch commits")));
                }
            })
        })
        .collect();
    for submitter in submitters {
        submitter.await.unwrap();
    }
    let mut connection = PgConnection::connect_with(&options).await.unwrap();
    let last_seq = transfers.len() as i64;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while folded_seq(&mut connection).await < last_seq {
        assert!(
            std::time::Instant::now() < deadline,
            "the folder stopped short of {last_seq}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_ledger_consistent(&options).await;
    for account in HUB..=HUB + SPOKES {
        let expected: Vec<uuid::Uuid> = transfers
            .iter()
            .filter(|(_, d, c)| *d == account || *c == account)
            .map(|(n, ..)| id(*n))
            .collect();
        let mut walked = walk(&service.store, account, 1000).await;
        walked.sort();
        let mut sorted = expected.clone();
        sorted.sort();
        assert_eq!(walked, sorted, "account {account}");
    }
    service.stop().await;
}
