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
