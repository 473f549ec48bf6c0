//! The schema refuses broken ledger states on its own, whatever code writes to it.

mod helpers;

use helpers::*;
use sqlx::{Connection, PgConnection};

async fn refused(connection: &mut PgConnection, statement: &str) -> String {
    let error = sqlx::raw_sql(sqlx::AssertSqlSafe(statement.to_string()))
        .execute(&mut *connection)
        .await
        .expect_err(statement);
    error
        .as_database_error()
        .expect("a database error")
        .code()
        .expect("a SQLSTATE")
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_database_refuses_what_the_ledger_never_writes() {
    let service = TestLedger::fresh().await;
    let setup = vec![
        account(1, UNLIMITED),
        account(2, DEBITS_LIMITED),
        transfer(10, 1, 2, 500),
        pending(11, 1, 2, 100, 60),
    ];
    assert!(all_created(&service.submit(setup).await));
    service.submit(vec![post(12, 11)]).await;
    let mut connection = PgConnection::connect_with(&service.options).await.unwrap();
    let insert = |debit: &str, credit: &str, currency: &str| {
        format!(
            "INSERT INTO transfers (id, seq, kind, linked, debit_account_id, credit_account_id, amount, currency, code, created_at)
             VALUES (gen_random_uuid(), 1000, 'single', false, '{debit}', '{credit}', 1, '{currency}', 1, now())"
        )
    };
    let (a1, a2, missing) = (id(1).to_string(), id(2).to_string(), id(99).to_string());
    assert_eq!(
        refused(&mut connection, &insert(&a1, &missing, "USD")).await,
        "23503",
        "missing account"
    );
    assert_eq!(
        refused(&mut connection, &insert(&a1, &a2, "EUR")).await,
        "23503",
        "currency of other accounts"
    );
    // A statement of many transfers is checked by another plan (migrations/0011): its last transfer
    // alone is wrong.
    let many = |credit: &str, currency: &str| {
        format!(
            "INSERT INTO transfers (id, seq, kind, linked, debit_account_id, credit_account_id, amount, currency, code, created_at)
             SELECT gen_random_uuid(), 2000 + g, 'single', false, '{a1}',
                    (CASE WHEN g = 200 THEN '{credit}' ELSE '{a2}' END)::uuid, 1,
                    CASE WHEN g = 200 THEN '{currency}' ELSE 'USD' END, 1, now()
             FROM generate_series(1, 200) g"
        )
    };
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("BEGIN; {}; ROLLBACK", many(&a2, "USD"))))
        .execute(&mut connection)
        .await
        .expect("200 transfers between existing accounts of their currency");
    assert_eq!(
        refused(&mut connection, &many(&missing, "USD")).await,
        "23503",
        "one missing account among many transfers"
    );
    assert_eq!(
        refused(&mut connection, &many(&a2, "EUR")).await,
        "23503",
        "one transfer among many in the currency of other accounts"
    );
    let resolve = |pending: uuid::Uuid| {
        format!(
            "INSERT INTO transfers (id, seq, kind, linked, debit_account_id, credit_account_id, amount, currency, code,
                                    pending_id, created_at)
             VALUES (gen_random_uuid(), 1000, 'post_pending', false, '{a1}', '{a2}', 1, 'USD', 1, '{pending}', now())"
        )
    };
    assert_eq!(
        refused(&mut connection, &resolve(id(98))).await,
        "23503",
        "a post of a pending transfer that does not exist"
    );
    assert_eq!(
        refused(&mut connection, &resolve(id(10))).await,
        "23503",
        "a post of a transfer that is not pending"
    );
    assert_eq!(
        refused(&mut connection, &insert(&a1, &a1, "USD")).await,
        "23514",
        "same account on both sides"
    );
    let overdraw = format!("UPDATE balances SET debits_posted = debits_posted + 1000 WHERE account_id = '{a2}'");
    assert_eq!(
        refused(&mut connection, &overdraw).await,
        "23514",
        "debits beyond credits"
    );
    let negative = format!("UPDATE balances SET credits_posted = -1 WHERE account_id = '{a1}'");
    assert_eq!(refused(&mut connection, &negative).await, "23514", "negative balance");
    for side in ["debits", "credits"] {
        let overflow = format!(
            "UPDATE balances SET {side}_posted = 9223372036854775000, {side}_pending = 808 WHERE account_id = '{a1}'"
        );
        assert_eq!(
            refused(&mut connection, &overflow).await,
            "23514",
            "{side} posted and pending beyond a 64-bit sum"
        );
    }
    let credits_limited = format!(
        "UPDATE balances SET debits_limit = NULL, credits_limit = 0, credits_pending = credits_pending + 1
         WHERE account_id = '{a2}'"
    );
    assert_eq!(
        refused(&mut connection, &credits_limited).await,
        "23514",
        "credits beyond debits"
    );
    assert_eq!(
        refused(&mut connection, "DELETE FROM transfers").await,
        "23000",
        "transfers are never deleted"
    );
    assert_eq!(
        refused(&mut connection, "DELETE FROM accounts").await,
        "23000",
        "accounts are never deleted"
    );
    let recurrency = format!("UPDATE accounts SET currency = 'EUR' WHERE id = '{a1}'");
    assert_eq!(
        refused(&mut connection, &recurrency).await,
        "23000",
        "an account's currency never changes"
    );
    let amount = format!("UPDATE transfers SET amount = 2 WHERE id = '{}'", id(10));
    assert_eq!(
        refused(&mut connection, &amount).await,
        "23000",
        "a transfer never changes"
    );
    let repost = format!("UPDATE transfers SET state = 'voided' WHERE id = '{}'", id(11));
    assert_eq!(
        refused(&mut connection, &repost).await,
        "23000",
        "a pending transfer is resolved once"
    );
    assert_ledger_consistent(&service.options).await;
}

/// A settlement of an account starts exactly where its previous one was cut off, and two settlements
/// that both read the same previous one (two instances settling at once) cannot both be stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settlement_periods_form_one_chain_per_account_even_when_written_at_once() {
    let service = TestLedger::fresh().await;
    assert!(all_created(
        &service.submit(vec![account(1, UNLIMITED), account(2, UNLIMITED)]).await
    ));
    let mut first = PgConnection::connect_with(&service.options).await.unwrap();
    let mut second = PgConnection::connect_with(&service.options).await.unwrap();
    let (merchant, clearing) = (id(2), id(1));
    let settlement = |n: u128, start: Option<&str>, cut_off: &str| {
        let start = start.map_or("NULL".to_string(), |s| format!("'{s}'"));
        format!(
            "INSERT INTO settlements (id, account_id, currency, period_start, cut_off, net, transfer_count,
                                      transfers_hash, clearing_account_id, requested_by, created_at)
             VALUES ('{}', '{merchant}', 'USD', {start}, '{cut_off}', 0, 0, decode(repeat('00', 32), 'hex'),
                     '{clearing}', 'payouts', now())",
            id(n)
        )
    };
    let (t1, t2, t3) = ("2027-01-01T00:00:00Z", "2027-01-02T00:00:00Z", "2027-01-03T00:00:00Z");
    sqlx::raw_sql(sqlx::AssertSqlSafe(settlement(50, None, t1)))
        .execute(&mut first)
        .await
        .expect("the account's first settlement starts at its beginning");
    assert_eq!(
        refused(&mut first, &settlement(51, None, t2)).await,
        "23514",
        "a second period from the account's beginning"
    );
    assert_eq!(
        refused(&mut first, &settlement(52, Some(t2), t3)).await,
        "23514",
        "a period that leaves a gap after the previous cut-off"
    );
    // Both read the first settlement as the previous one: the second waits for the first, then fails.
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("BEGIN; {}", settlement(53, Some(t1), t2))))
        .execute(&mut first)
        .await
        .unwrap();
    let racing = settlement(54, Some(t1), t3);
    let concurrent = tokio::spawn(async move {
        let result = sqlx::raw_sql(sqlx::AssertSqlSafe(racing)).execute(&mut second).await;
        let error = result.expect_err("a second period from the same start");
        error.as_database_error().unwrap().code().unwrap().to_string()
    });
    let mut watcher = PgConnection::connect_with(&service.options).await.unwrap();
    loop {
        let waiting: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
        .fetch_one(&mut watcher)
        .await
        .unwrap();
        if waiting > 0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    sqlx::raw_sql("COMMIT").execute(&mut first).await.unwrap();
    assert_eq!(concurrent.await.unwrap(), "23505");
    let chain: Vec<(Option<chrono::DateTime<chrono::Utc>>, chrono::DateTime<chrono::Utc>)> =
        sqlx::query_as("SELECT period_start, cut_off FROM settlements ORDER BY cut_off")
            .fetch_all(&mut first)
            .await
            .unwrap();
    assert_eq!(chain.len(), 2);
    assert_eq!(chain[1].0, Some(chain[0].1));
}

/// A held transfer's approving decision needs an approval of every reason it is held for, each by a
/// decider of its own.
#[tokio::test]
async fn a_held_transfer_is_approved_only_once_every_reason_is_by_its_own_decider() {
    let service = TestLedger::fresh().await;
    let setup = vec![account(1, UNLIMITED), account(2, UNLIMITED), pending(11, 1, 2, 100, 60)];
    assert!(all_created(&service.submit(setup).await));
    service.submit(vec![post(12, 11)]).await;
    let mut connection = PgConnection::connect_with(&service.options).await.unwrap();
    let held = id(11);
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
        "INSERT INTO reviews (transfer_id, reasons, initiator, opened_at, explanation)
         VALUES ('{held}', ARRAY['approval_limit', 'fraud'], 'payments', now(), '{{}}')"
    )))
    .execute(&mut connection)
    .await
    .unwrap();
    let approve = |reason: &str, by: &str| {
        format!(
            "INSERT INTO review_approvals (transfer_id, reason, approved_by, approved_at)
             VALUES ('{held}', '{reason}', '{by}', now())"
        )
    };
    let decide = format!(
        "INSERT INTO review_decisions (transfer_id, decision, resolution_id, decided_by, decided_at)
         VALUES ('{held}', 'approve', '{}', 'analyst-a', now())",
        id(12)
    );
    assert_eq!(refused(&mut connection, &decide).await, "23514", "nothing approved");
    sqlx::raw_sql(sqlx::AssertSqlSafe(approve("approval_limit", "alice")))
        .execute(&mut connection)
        .await
        .unwrap();
    assert_eq!(
        refused(&mut connection, &decide).await,
        "23514",
        "one reason of two approved"
    );
    assert_eq!(
        refused(&mut connection, &approve("fraud", "alice")).await,
        "23505",
        "one decider for two reasons"
    );
    assert_eq!(
        refused(&mut connection, &approve("approval_limit", "bob")).await,
        "23505",
        "a reason approved twice"
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(approve("fraud", "analyst-a")))
        .execute(&mut connection)
        .await
        .unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(decide.clone()))
        .execute(&mut connection)
        .await
        .expect("every reason approved, each by its own decider");
    assert_eq!(
        refused(&mut connection, "DELETE FROM review_approvals").await,
        "23000",
        "approvals are append-only"
    );
}

/// Reviews written before a held transfer could carry several reasons keep their one reason, and the
/// approvals of those already approved are on record as their deciders'.
#[tokio::test]
async fn reviews_from_before_reasons_were_listed_keep_their_reason_and_approval() {
    let (options, mut connection) = database_migrated_through(shared_cluster(), 11).await;
    let (a1, a2, pending, post, open) = (id(1), id(2), id(11), id(12), id(13));
    let setup = format!(
        "INSERT INTO accounts (id, currency, code, owner, debits_must_not_exceed_credits,
                               credits_must_not_exceed_debits, created_at)
         VALUES ('{a1}', 'USD', 1, 'payments', false, false, now()), ('{a2}', 'USD', 1, 'payments', false, false, now());
         INSERT INTO balances (account_id) VALUES ('{a1}'), ('{a2}');
         INSERT INTO transfers (id, seq, kind, linked, debit_account_id, credit_account_id, amount, currency, code,
                                timeout_s, expires_at, state, created_at)
         VALUES ('{pending}', 1, 'pending', false, '{a1}', '{a2}', 100, 'USD', 1, 60, now() + interval '1 minute',
                 'pending', now()),
                ('{open}', 2, 'pending', false, '{a1}', '{a2}', 100, 'USD', 1, 60, now() + interval '1 minute',
                 'pending', now());
         INSERT INTO transfers (id, seq, kind, linked, debit_account_id, credit_account_id, amount, currency, code,
                                pending_id, created_at)
         VALUES ('{post}', 3, 'post_pending', false, '{a1}', '{a2}', 100, 'USD', 1, '{pending}', now());
         UPDATE transfers SET state = 'posted' WHERE id = '{pending}';
         INSERT INTO reviews (transfer_id, reason, initiator, opened_at, explanation)
         VALUES ('{pending}', 'approval_limit', 'payments', now(), '{{}}'), ('{open}', 'fraud', 'payments', now(), '{{}}');
         INSERT INTO review_decisions (transfer_id, decision, resolution_id, decided_by, decided_at)
         VALUES ('{pending}', 'approve', '{post}', 'alice', now());"
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(setup))
        .execute(&mut connection)
        .await
        .unwrap();
    finledger::store::migrate(&mut connection).await.expect("the migration");
    let store = finledger::store::Store::connect(options, 1).await.unwrap();
    let decided = store.review(pending).await.unwrap().unwrap();
    assert_eq!(decided.reasons, ["approval_limit"]);
    assert_eq!(decided.status, "approved");
    assert_eq!(decided.approvals.len(), 1);
    assert_eq!(decided.approvals[0].approved_by, "alice");
    assert_eq!(decided.approvals[0].reason, "approval_limit");
    let waiting = store.review(open).await.unwrap().unwrap();
    assert_eq!(waiting.reasons, ["fraud"]);
    assert!(waiting.approvals.is_empty());
    assert_eq!(waiting.awaiting(), [finledger::store::ReviewReason::Fraud]);
}
