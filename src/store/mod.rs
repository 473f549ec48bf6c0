//! PostgreSQL storage of the ledger.
//!
//! Writes go only through the [`sequencer`]: one task, one connection, one transaction per batch.
//! This module holds the SQL both sides share: loading accounts and transfers into the ledger's
//! working set, and writing a batch's [`Changes`] with one statement per table (UNNEST arrays).

pub mod rows;
pub mod sequencer;

use std::collections::HashSet;

use ledger::{Account, AccountId, Changes, Ledger, Timestamp, Transfer, TransferId};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use rows::{AccountRow, TransferRow, kind_name, limit_columns, state_name, to_datetime};

pub use sequencer::{LedgerHandle, SequencerConfig, SubmitError};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Read access to the ledger's tables and the migrations.
#[derive(Clone)]
pub struct Store {
    pool: PgPool,
}

impl Store {
    pub async fn connect(options: PgConnectOptions, connections_max: u32) -> anyhow::Result<Store> {
        let pool = PgPoolOptions::new()
            .max_connections(connections_max)
            .connect_with(options)
            .await?;
        Ok(Store { pool })
    }

    pub async fn migrate(&self) -> anyhow::Result<()> {
        MIGRATOR.run(&self.pool).await?;
        Ok(())
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub async fn account(&self, id: AccountId) -> anyhow::Result<Option<Account>> {
        let mut connection = self.pool.acquire().await?;
        Ok(load_accounts(&mut connection, &[id]).await?.pop())
    }

    pub async fn transfer(&self, id: TransferId) -> anyhow::Result<Option<Transfer>> {
        let mut connection = self.pool.acquire().await?;
        Ok(load_transfers(&mut connection, &[id]).await?.pop())
    }
}

/// Applies pending migrations on a single connection (used before the pool exists).
pub async fn migrate(connection: &mut PgConnection) -> anyhow::Result<()> {
    MIGRATOR.run(connection).await?;
    Ok(())
}

pub(crate) async fn load_accounts(connection: &mut PgConnection, ids: &[AccountId]) -> anyhow::Result<Vec<Account>> {
    let ids: Vec<Uuid> = ids.iter().map(|id| id.uuid()).collect();
    let rows = sqlx::query_as!(
        AccountRow,
        r#"SELECT a.id, a.currency AS "currency!", a.code, a.owner, a.debits_must_not_exceed_credits,
                  a.credits_must_not_exceed_debits, a.overdraft_limit, a.closed, a.metadata, a.created_at,
                  b.debits_posted, b.credits_posted, b.debits_pending, b.credits_pending
           FROM accounts a JOIN balances b ON b.account_id = a.id
           WHERE a.id = ANY($1::uuid[])"#,
        &ids
    )
    .fetch_all(&mut *connection)
    .await?;
    Ok(rows.into_iter().map(Account::try_from).collect::<Result<_, _>>()?)
}

pub(crate) async fn load_transfers(connection: &mut PgConnection, ids: &[TransferId]) -> anyhow::Result<Vec<Transfer>> {
    let ids: Vec<Uuid> = ids.iter().map(|id| id.uuid()).collect();
    let rows = sqlx::query_as!(
        TransferRow,
        r#"SELECT id, kind, linked, debit_account_id, credit_account_id, amount, currency AS "currency!", code,
                  pending_id, timeout_s, expires_at, state, metadata, created_at
           FROM transfers WHERE id = ANY($1::uuid[])"#,
        &ids
    )
    .fetch_all(&mut *connection)
    .await?;
    Ok(rows.into_iter().map(Transfer::try_from).collect::<Result<_, _>>()?)
}

/// Loads every open pending transfer and its accounts: the part of the working set that must stay
/// resident so deadlines expire on time.
pub(crate) async fn load_open_pending(connection: &mut PgConnection, ledger: &mut Ledger) -> anyhow::Result<()> {
    let rows = sqlx::query_as!(
        TransferRow,
        r#"SELECT id, kind, linked, debit_account_id, credit_account_id, amount, currency AS "currency!", code,
                  pending_id, timeout_s, expires_at, state, metadata, created_at
           FROM transfers WHERE state = 'pending'"#
    )
    .fetch_all(&mut *connection)
    .await?;
    let mut accounts = HashSet::new();
    for row in rows {
        let transfer = Transfer::try_from(row)?;
        accounts.extend([transfer.debit_account_id, transfer.credit_account_id]);
        ledger.load_transfer(transfer);
    }
    let accounts: Vec<AccountId> = accounts.into_iter().collect();
    for account in load_accounts(connection, &accounts).await? {
        ledger.load_account(account);
    }
    Ok(())
}

/// Writes what a batch changed. `transfer_seq` is the last sequence number already used.
///
/// The seam for the audit log and the outbox: their rows join this same transaction, after these.
pub(crate) async fn write_changes(
    connection: &mut PgConnection,
    ledger: &Ledger,
    changes: &Changes,
    transfer_seq: i64,
    now: Timestamp,
) -> anyhow::Result<()> {
    let now = to_datetime(now);
    insert_accounts(connection, ledger, &changes.accounts_created, now).await?;
    if !changes.accounts_closed.is_empty() {
        let ids: Vec<Uuid> = changes.accounts_closed.iter().map(|id| id.uuid()).collect();
        let closed = sqlx::query!(
            "UPDATE accounts SET closed = true WHERE id = ANY($1::uuid[]) AND NOT closed",
            &ids
        )
        .execute(&mut *connection)
        .await?;
        anyhow::ensure!(
            closed.rows_affected() == ids.len() as u64,
            "closing accounts found a stale cache"
        );
    }
    insert_transfers(connection, ledger, &changes.transfers_created, transfer_seq).await?;
    update_balances(connection, ledger, changes).await?;
    update_pending_states(connection, changes).await
}

async fn insert_accounts(
    connection: &mut PgConnection,
    ledger: &Ledger,
    ids: &[AccountId],
    now: chrono::DateTime<chrono::Utc>,
) -> anyhow::Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let accounts: Vec<&Account> = ids
        .iter()
        .map(|id| ledger.account(*id).expect("created accounts are resident"))
        .collect();
    let uuids: Vec<Uuid> = accounts.iter().map(|a| a.id.uuid()).collect();
    let currencies: Vec<String> = accounts.iter().map(|a| a.currency.code().to_string()).collect();
    let codes: Vec<i32> = accounts.iter().map(|a| i32::from(a.code)).collect();
    let owners: Vec<String> = accounts.iter().map(|a| a.owner.clone()).collect();
    let limits: Vec<(Option<i64>, Option<i64>)> = accounts.iter().map(|a| limit_columns(a.limit)).collect();
    let debits_limited: Vec<bool> = limits.iter().map(|(d, _)| d.is_some()).collect();
    let credits_limited: Vec<bool> = limits.iter().map(|(_, c)| c.is_some()).collect();
    let overdrafts: Vec<i64> = limits.iter().map(|(d, c)| d.or(*c).unwrap_or(0)).collect();
    let metadata: Vec<String> = accounts.iter().map(|a| a.metadata.to_json()).collect();
    sqlx::query!(
        "INSERT INTO accounts (id, currency, code, owner, debits_must_not_exceed_credits,
                               credits_must_not_exceed_debits, overdraft_limit, metadata, created_at)
         SELECT id, currency, code, owner, debits_limited, credits_limited, overdraft, metadata::jsonb, $9
         FROM UNNEST($1::uuid[], $2::text[], $3::int4[], $4::text[], $5::bool[], $6::bool[], $7::int8[], $8::text[])
           AS a(id, currency, code, owner, debits_limited, credits_limited, overdraft, metadata)",
        &uuids,
        &currencies,
        &codes,
        &owners,
        &debits_limited,
        &credits_limited,
        &overdrafts,
        &metadata,
        now,
    )
    .execute(&mut *connection)
    .await?;
    sqlx::query!(
        "INSERT INTO balances (account_id, debits_limit, credits_limit)
         SELECT id, CASE WHEN d THEN o END, CASE WHEN c THEN o END
         FROM UNNEST($1::uuid[], $2::bool[], $3::bool[], $4::int8[]) AS b(id, d, c, o)",
        &uuids,
        &debits_limited,
        &credits_limited,
        &overdrafts,
    )
    .execute(&mut *connection)
    .await?;
    Ok(())
}

async fn insert_transfers(
    connection: &mut PgConnection,
    ledger: &Ledger,
    ids: &[TransferId],
    transfer_seq: i64,
) -> anyhow::Result<()> {
    if ids.is_empty() {
        return Ok(());
    }
    let count = ids.len();
    let mut columns = TransferColumns::with_capacity(count);
    for (offset, id) in ids.iter().enumerate() {
        let transfer = ledger.transfer(*id).expect("created transfers are resident");
        columns.push(transfer, transfer_seq + 1 + offset as i64);
    }
    sqlx::query!(
        "INSERT INTO transfers (id, seq, kind, linked, debit_account_id, credit_account_id, amount, currency, code,
                                pending_id, timeout_s, expires_at, state, metadata, created_at)
         SELECT id, seq, kind, linked, debit, credit, amount, currency, code, pending_id, timeout_s, expires_at,
                state, metadata::jsonb, created
         FROM UNNEST($1::uuid[], $2::int8[], $3::text[], $4::bool[], $5::uuid[], $6::uuid[], $7::int8[], $8::text[],
                     $9::int4[], $10::uuid[], $11::int4[], $12::timestamptz[], $13::text[], $14::text[],
                     $15::timestamptz[])
           AS t(id, seq, kind, linked, debit, credit, amount, currency, code, pending_id, timeout_s, expires_at,
                state, metadata, created)",
        &columns.ids,
        &columns.seqs,
        &columns.kinds as &[&str],
        &columns.linked,
        &columns.debits,
        &columns.credits,
        &columns.amounts,
        &columns.currencies as &[&str],
        &columns.codes,
        &columns.pending_ids as &[Option<Uuid>],
        &columns.timeouts as &[Option<i32>],
        &columns.expires as &[Option<chrono::DateTime<chrono::Utc>>],
        &columns.states as &[Option<&str>],
        &columns.metadata,
        &columns.created,
    )
    .execute(&mut *connection)
    .await?;
    Ok(())
}

/// The transfers of a batch, column by column, for one UNNEST insert.
struct TransferColumns {
    ids: Vec<Uuid>,
    seqs: Vec<i64>,
    kinds: Vec<&'static str>,
    linked: Vec<bool>,
    debits: Vec<Uuid>,
    credits: Vec<Uuid>,
    amounts: Vec<i64>,
    currencies: Vec<&'static str>,
    codes: Vec<i32>,
    pending_ids: Vec<Option<Uuid>>,
    timeouts: Vec<Option<i32>>,
    expires: Vec<Option<chrono::DateTime<chrono::Utc>>>,
    states: Vec<Option<&'static str>>,
    metadata: Vec<String>,
    created: Vec<chrono::DateTime<chrono::Utc>>,
}

impl TransferColumns {
    fn with_capacity(count: usize) -> TransferColumns {
        TransferColumns {
            ids: Vec::with_capacity(count),
            seqs: Vec::with_capacity(count),
            kinds: Vec::with_capacity(count),
            linked: Vec::with_capacity(count),
            debits: Vec::with_capacity(count),
            credits: Vec::with_capacity(count),
            amounts: Vec::with_capacity(count),
            currencies: Vec::with_capacity(count),
            codes: Vec::with_capacity(count),
            pending_ids: Vec::with_capacity(count),
            timeouts: Vec::with_capacity(count),
            expires: Vec::with_capacity(count),
            states: Vec::with_capacity(count),
            metadata: Vec::with_capacity(count),
            created: Vec::with_capacity(count),
        }
    }

    fn push(&mut self, transfer: &Transfer, seq: i64) {
        self.ids.push(transfer.id.uuid());
        self.seqs.push(seq);
        self.kinds.push(kind_name(transfer.kind));
        self.linked.push(transfer.linked);
        self.debits.push(transfer.debit_account_id.uuid());
        self.credits.push(transfer.credit_account_id.uuid());
        self.amounts.push(transfer.amount.minor() as i64);
        self.currencies.push(transfer.currency.code());
        self.codes.push(i32::from(transfer.code));
        self.pending_ids.push(transfer.pending_id.map(|id| id.uuid()));
        self.timeouts.push(transfer.timeout_s.map(|t| t as i32));
        self.expires.push(transfer.expires_at.map(to_datetime));
        self.states.push(transfer.state.map(state_name));
        self.metadata.push(transfer.metadata.to_json());
        self.created.push(to_datetime(transfer.created_at));
    }
}

async fn update_balances(connection: &mut PgConnection, ledger: &Ledger, changes: &Changes) -> anyhow::Result<()> {
    let deltas = changes.balance_deltas(ledger);
    if deltas.is_empty() {
        return Ok(());
    }
    let ids: Vec<Uuid> = deltas.iter().map(|(id, _)| id.uuid()).collect();
    let debits_posted: Vec<i64> = deltas.iter().map(|(_, d)| d.debits_posted).collect();
    let credits_posted: Vec<i64> = deltas.iter().map(|(_, d)| d.credits_posted).collect();
    let debits_pending: Vec<i64> = deltas.iter().map(|(_, d)| d.debits_pending).collect();
    let credits_pending: Vec<i64> = deltas.iter().map(|(_, d)| d.credits_pending).collect();
    // Increments, not absolute values: even a stale cache could not make debits and credits disagree,
    // and the table's CHECKs refuse any result that breaks a limit.
    let updated = sqlx::query!(
        "UPDATE balances b
         SET debits_posted = b.debits_posted + d.dp, credits_posted = b.credits_posted + d.cp,
             debits_pending = b.debits_pending + d.dpn, credits_pending = b.credits_pending + d.cpn
         FROM UNNEST($1::uuid[], $2::int8[], $3::int8[], $4::int8[], $5::int8[]) AS d(id, dp, cp, dpn, cpn)
         WHERE b.account_id = d.id",
        &ids,
        &debits_posted,
        &credits_posted,
        &debits_pending,
        &credits_pending,
    )
    .execute(&mut *connection)
    .await?;
    anyhow::ensure!(
        updated.rows_affected() == ids.len() as u64,
        "balance update found a stale cache"
    );
    Ok(())
}

async fn update_pending_states(connection: &mut PgConnection, changes: &Changes) -> anyhow::Result<()> {
    // A pending transfer created in this batch was inserted with its final state already.
    let created: HashSet<TransferId> = changes.transfers_created.iter().copied().collect();
    let (ids, states): (Vec<Uuid>, Vec<&str>) = changes
        .pending_resolved
        .iter()
        .filter(|(id, _)| !created.contains(id))
        .map(|(id, state)| (id.uuid(), state_name(*state)))
        .unzip();
    if ids.is_empty() {
        return Ok(());
    }
    let updated = sqlx::query!(
        "UPDATE transfers t SET state = s.state
         FROM UNNEST($1::uuid[], $2::text[]) AS s(id, state)
         WHERE t.id = s.id AND t.state = 'pending'",
        &ids,
        &states as &[&str],
    )
    .execute(&mut *connection)
    .await?;
    anyhow::ensure!(
        updated.rows_affected() == ids.len() as u64,
        "pending state update found a stale cache"
    );
    Ok(())
}
