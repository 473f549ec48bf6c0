//! PostgreSQL storage of the ledger.
//!
//! Writes go only through the [`sequencer`]: one task, one transaction per batch. This module holds
//! the SQL: loading accounts and transfers into the ledger's working set, and writing a batch's
//! [`Changes`] with one statement per table (UNNEST arrays).

pub mod audit;
pub mod history;
pub mod reviews;
pub mod rows;
pub mod rulesets;
pub mod sequencer;
pub mod settlements;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use history::AccountHistory;
use ledger::{Account, AccountId, Balances, Changes, Ledger, Timestamp, Transfer, TransferId, TransferKind};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::authz::AccountFacts;
use crate::fraud::features::Activity;
use crate::outbox::OutboxRows;

use audit::AuditRows;
use reviews::ReviewRows;
use rows::{AccountRow, TransferRow, kind_name, limit_columns, state_name, to_datetime};
use rulesets::RulesetRows;

pub use audit::AuditMode;
pub use reviews::{ReviewChange, ReviewReason};
pub use sequencer::{LedgerHandle, Receipt, Record, SequencerConfig, SubmitError};

/// Plan every execution of a prepared statement with its actual parameters. Lookups by `= ANY($1)`
/// otherwise fall back, after five executions, to a generic plan that cannot see the array's length;
/// chosen while a table is small, that plan is a sequential scan, and it stays one as the table grows
/// (measured: half of PostgreSQL's CPU under single-transfer load went to scanning transfers for ids).
pub(crate) const PLAN_PER_EXECUTION: (&str, &str) = ("plan_cache_mode", "force_custom_plan");

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Read access to the ledger's tables and the migrations.
#[derive(Clone)]
pub struct Store {
    pool: PgPool,
    /// Who owns each account, and its currency and code: never change once created, so cached.
    account_facts: Arc<Mutex<HashMap<Uuid, AccountFacts>>>,
    /// The connections [`Store::lock`] may open.
    key_locks: Arc<tokio::sync::Semaphore>,
}

/// Most accounts whose facts are cached; the cache starts over when full.
const ACCOUNT_FACTS_CACHED_MAX: usize = 1_000_000;

/// What a [`KeyLock`] serializes, each in a key space of its own.
#[derive(Clone, Copy, Debug)]
pub enum LockSpace {
    /// Settlement runs of one account.
    Settlement = 1,
    /// Decisions on one review.
    Review = 2,
}

/// A lock on one thing (an account being settled, a review being decided), held against every
/// instance on the database: a PostgreSQL session advisory lock, on a connection of its own so no
/// pooled connection ever keeps it. Dropping the guard closes the connection, which releases the lock;
/// so does the death of the process holding it.
pub struct KeyLock {
    _connection: PgConnection,
    _permit: tokio::sync::OwnedSemaphorePermit,
}

/// Most [`KeyLock`]s held or awaited at once by one instance: each is a database connection, and
/// callers may not open connections without bound by asking for many decisions at once.
const KEY_LOCKS_MAX: usize = 8;

impl Store {
    pub async fn connect(options: PgConnectOptions, connections_max: u32) -> anyhow::Result<Store> {
        let pool = PgPoolOptions::new()
            .max_connections(connections_max)
            .connect_with(options.options([PLAN_PER_EXECUTION]))
            .await?;
        Ok(Store {
            pool,
            account_facts: Arc::default(),
            key_locks: Arc::new(tokio::sync::Semaphore::new(KEY_LOCKS_MAX)),
        })
    }

    /// The owner, currency and code of each of `ids` that exists, for authorization decisions.
    pub async fn account_facts(&self, ids: &[Uuid]) -> anyhow::Result<HashMap<Uuid, AccountFacts>> {
        let mut found = HashMap::with_capacity(ids.len());
        let mut missing = Vec::new();
        {
            let cache = self
                .account_facts
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            for id in ids {
                match cache.get(id) {
                    Some(facts) => {
                        found.insert(*id, facts.clone());
                    }
                    None => missing.push(*id),
                }
            }
        }
        if missing.is_empty() {
            return Ok(found);
        }
        missing.sort_unstable();
        missing.dedup();
        let rows = sqlx::query!(
            "SELECT id, owner, currency, code FROM accounts WHERE id = ANY($1::uuid[])",
            &missing
        )
        .fetch_all(&self.pool)
        .await?;
        let mut cache = self
            .account_facts
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if cache.len() + rows.len() > ACCOUNT_FACTS_CACHED_MAX {
            cache.clear();
        }
        for row in rows {
            let facts = AccountFacts {
                id: row.id,
                owner: row.owner,
                currency: row.currency,
                code: u16::try_from(row.code)?,
            };
            cache.insert(row.id, facts.clone());
            found.insert(row.id, facts);
        }
        Ok(found)
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Waits (at most `wait`) for the lock on `id` in `space`; an error when it is not had by then.
    pub async fn lock(&self, space: LockSpace, id: Uuid, wait: std::time::Duration) -> anyhow::Result<KeyLock> {
        use sqlx::Connection;
        let permit = tokio::time::timeout(wait, self.key_locks.clone().acquire_owned())
            .await
            .map_err(|_| anyhow::anyhow!("{KEY_LOCKS_MAX} locks are held or awaited already"))??;
        let timeout = format!("{}ms", wait.as_millis());
        let options = (*self.pool.connect_options())
            .clone()
            .options([("lock_timeout", timeout.as_str())]);
        let mut connection = tokio::time::timeout(wait, PgConnection::connect_with(&options))
            .await
            .map_err(|_| anyhow::anyhow!("connecting for a lock timed out after {wait:?}"))??;
        // Two 32-bit keys: the space, and the id folded; a collision only makes two holders wait.
        let bits = id.as_u128();
        let key = ((bits >> 96) ^ (bits >> 64) ^ (bits >> 32) ^ bits) as u32 as i32;
        sqlx::query("SELECT pg_advisory_lock($1, $2)")
            .bind(space as i32)
            .bind(key)
            .execute(&mut connection)
            .await
            .map_err(|error| anyhow::anyhow!("waiting for the {space:?} lock of {id}: {error}"))?;
        Ok(KeyLock {
            _connection: connection,
            _permit: permit,
        })
    }

    pub async fn account(&self, id: AccountId) -> anyhow::Result<Option<Account>> {
        let mut connection = self.pool.acquire().await?;
        Ok(load_accounts(&mut connection, &[id]).await?.pop())
    }

    pub async fn transfer(&self, id: TransferId) -> anyhow::Result<Option<Transfer>> {
        let mut connection = self.pool.acquire().await?;
        Ok(load_transfers(&mut connection, &[id]).await?.pop())
    }

    /// One page of an account's transfers (as debit or credit account) in commit order, after the
    /// transfer with sequence number `after_seq`. Each comes with its sequence number, the cursor.
    ///
    /// Batches commit in sequence order and never concurrently, so a snapshot that shows a transfer
    /// shows every transfer before it: walking pages by `after_seq` skips and repeats nothing, however
    /// many transfers are inserted meanwhile.
    pub async fn account_transfers(
        &self,
        account: AccountId,
        after_seq: i64,
        limit: u32,
    ) -> anyhow::Result<Vec<(i64, Transfer)>> {
        let mut snapshot = history::snapshot(&self.pool).await?;
        let mut history = AccountHistory::open(&mut snapshot, account, after_seq).await?;
        history.next_transfers(&mut snapshot, limit as usize).await
    }

    /// An account's balances as they stood at `at`: transfers created by then, with pending transfers
    /// that were neither posted, voided nor past their deadline by then. Walks the whole history.
    pub async fn balances_as_of(&self, account: AccountId, at: Timestamp) -> anyhow::Result<Balances> {
        let mut snapshot = history::snapshot(&self.pool).await?;
        let mut history = AccountHistory::open(&mut snapshot, account, 0).await?;
        let mut balances = Balances::default();
        loop {
            let page = history.next_transfers(&mut snapshot, history::PAGE_TRANSFERS).await?;
            if page.is_empty() {
                return Ok(balances);
            }
            let due: Vec<&Transfer> = page.iter().map(|(_, t)| t).filter(|t| t.created_at <= at).collect();
            let open: Vec<Uuid> = due
                .iter()
                .filter(|t| t.kind == TransferKind::Pending && t.expires_at.is_some_and(|e| e > at))
                .map(|t| t.id.uuid())
                .collect();
            let resolved: HashSet<Uuid> = if open.is_empty() {
                HashSet::new()
            } else {
                sqlx::query_scalar!(
                    r#"SELECT pending_id AS "id!" FROM transfers WHERE pending_id = ANY($1::uuid[]) AND created_at <= $2"#,
                    &open,
                    to_datetime(at)
                )
                .fetch_all(&mut *snapshot)
                .await?
                .into_iter()
                .collect()
            };
            for transfer in due {
                let debit = transfer.debit_account_id == account;
                let side = match transfer.kind {
                    TransferKind::Single | TransferKind::PostPending if debit => &mut balances.debits_posted,
                    TransferKind::Single | TransferKind::PostPending => &mut balances.credits_posted,
                    TransferKind::Pending if transfer.expires_at.is_none_or(|e| e <= at) => continue,
                    TransferKind::Pending if resolved.contains(&transfer.id.uuid()) => continue,
                    TransferKind::Pending if debit => &mut balances.debits_pending,
                    TransferKind::Pending => &mut balances.credits_pending,
                    TransferKind::VoidPending => continue,
                };
                *side = side
                    .checked_add(transfer.amount.minor())
                    .ok_or_else(|| anyhow::anyhow!("account {account}'s balance sums overflow"))?;
            }
        }
    }
}

/// The latest signed checkpoint: its size and signed note.
#[derive(Clone, Debug)]
pub struct StoredCheckpoint {
    pub size: u64,
    pub note: String,
}

/// One stored audit record.
#[derive(Clone, Debug)]
pub struct StoredRecord {
    pub seq: u64,
    pub bytes: Vec<u8>,
}

impl Store {
    pub async fn latest_checkpoint(&self) -> anyhow::Result<Option<StoredCheckpoint>> {
        let mut connection = self.pool.acquire().await?;
        audit::latest_checkpoint(&mut connection).await
    }

    /// Up to `limit` records from `from`, in order.
    pub async fn audit_records(&self, from: u64, limit: u32) -> anyhow::Result<Vec<StoredRecord>> {
        let mut connection = self.pool.acquire().await?;
        audit::read_records(
            &mut connection,
            std::slice::from_ref(&(from..from.saturating_add(u64::from(limit)))),
        )
        .await
    }

    /// The records of a transfer: its creation and, for a pending transfer, its post, void or expiry.
    pub async fn transfer_records(&self, id: TransferId) -> anyhow::Result<Vec<StoredRecord>> {
        let mut connection = self.pool.acquire().await?;
        let Some(seqs) = sqlx::query!(
            "SELECT audit_seq, resolution_audit_seq FROM transfers WHERE id = $1",
            id.uuid()
        )
        .fetch_optional(&mut *connection)
        .await?
        else {
            return Ok(Vec::new());
        };
        let ranges: Vec<std::ops::Range<u64>> = [seqs.audit_seq, seqs.resolution_audit_seq]
            .into_iter()
            .flatten()
            .filter_map(|seq| u64::try_from(seq).ok())
            .map(|seq| seq..seq + 1)
            .collect();
        audit::read_records(&mut connection, &ranges).await
    }

    pub async fn inclusion_proof(&self, index: u64, size: u64) -> anyhow::Result<Vec<::audit::Hash>> {
        let mut connection = self.pool.acquire().await?;
        crate::store::audit::inclusion_proof(&mut connection, index, size).await
    }

    pub async fn consistency_proof(&self, old: u64, new: u64) -> anyhow::Result<Vec<::audit::Hash>> {
        let mut connection = self.pool.acquire().await?;
        crate::store::audit::consistency_proof(&mut connection, old, new).await
    }
}

/// Applies pending migrations on a single connection (used before the pool exists).
pub async fn migrate(connection: &mut PgConnection) -> anyhow::Result<()> {
    MIGRATOR.run(connection).await?;
    Ok(())
}

// Lookups by a list of ids are one primary-key probe per id: a LATERAL subquery with LIMIT 1 cannot be
// flattened into a join, so the plan cannot turn into a scan. With `id = ANY($1)` and thousands of ids
// the planner prefers a sequential scan of the whole table (its cost model takes 8,000 probes for more
// than one pass), measured at ~85 ms per 8,000 ids on 2.7M transfers against ~22 ms for the probes,
// and growing with the table.

pub(crate) async fn load_accounts(connection: &mut PgConnection, ids: &[AccountId]) -> anyhow::Result<Vec<Account>> {
    let ids: Vec<Uuid> = ids.iter().map(|id| id.uuid()).collect();
    let rows = sqlx::query_as!(
        AccountRow,
        r#"SELECT x.id AS "id!", x.currency AS "currency!", x.code AS "code!", x.owner AS "owner!",
                  x.debits_must_not_exceed_credits AS "debits_must_not_exceed_credits!",
                  x.credits_must_not_exceed_debits AS "credits_must_not_exceed_debits!",
                  x.overdraft_limit AS "overdraft_limit!", x.closed AS "closed!", x.metadata AS "metadata!",
                  x.created_at AS "created_at!", x.debits_posted AS "debits_posted!",
                  x.credits_posted AS "credits_posted!", x.debits_pending AS "debits_pending!",
                  x.credits_pending AS "credits_pending!"
           FROM UNNEST($1::uuid[]) AS k(id)
           CROSS JOIN LATERAL (
               SELECT a.*, b.debits_posted, b.credits_posted, b.debits_pending, b.credits_pending
               FROM accounts a JOIN balances b ON b.account_id = a.id
               WHERE a.id = k.id LIMIT 1
           ) x"#,
        &ids
    )
    .fetch_all(&mut *connection)
    .await?;
    Ok(rows.into_iter().map(Account::try_from).collect::<Result<_, _>>()?)
}

/// Which of `ids` (sorted) are stored: one index-only scan of the primary key, which walks it once in
/// order and touches the heap only for the ids it finds. The array is handed over through a subquery
/// so the planner cannot count its elements: with a known count of thousands, it prefers scanning the
/// whole table while that is small (see the note above), and estimating each element costs planning
/// time of its own.
pub(crate) async fn existing_transfers(
    connection: &mut PgConnection,
    ids: &[TransferId],
) -> anyhow::Result<Vec<TransferId>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let ids: Vec<Uuid> = ids.iter().map(|id| id.uuid()).collect();
    let found = sqlx::query_scalar!(
        "SELECT id FROM transfers WHERE id = ANY((SELECT $1::uuid[])::uuid[])",
        &ids
    )
    .fetch_all(&mut *connection)
    .await?;
    Ok(found.into_iter().map(TransferId::from_stored).collect())
}

pub(crate) async fn load_transfers(connection: &mut PgConnection, ids: &[TransferId]) -> anyhow::Result<Vec<Transfer>> {
    let ids: Vec<Uuid> = ids.iter().map(|id| id.uuid()).collect();
    let rows = sqlx::query_as!(
        TransferRow,
        r#"SELECT t.seq AS "seq!", t.id AS "id!", t.kind AS "kind!", t.linked AS "linked!",
                  t.debit_account_id AS "debit_account_id!", t.credit_account_id AS "credit_account_id!",
                  t.amount AS "amount!", t.currency AS "currency!", t.code AS "code!", t.pending_id, t.timeout_s,
                  t.expires_at, t.state, t.metadata AS "metadata!", t.created_at AS "created_at!"
           FROM UNNEST($1::uuid[]) AS k(id)
           CROSS JOIN LATERAL (SELECT * FROM transfers WHERE id = k.id LIMIT 1) t"#,
        &ids
    )
    .fetch_all(&mut *connection)
    .await?;
    Ok(rows.into_iter().map(Transfer::try_from).collect::<Result<_, _>>()?)
}

/// Loads every open pending transfer and its accounts: the part of the working set that must stay
/// resident so deadlines expire on time.
pub(crate) async fn load_open_pending(connection: &mut PgConnection, ledger: &mut Ledger) -> anyhow::Result<()> {
    let ids: Vec<TransferId> = sqlx::query_scalar!("SELECT id FROM transfers WHERE state = 'pending'")
        .fetch_all(&mut *connection)
        .await?
        .into_iter()
        .map(TransferId::from_stored)
        .collect();
    let mut accounts = HashSet::new();
    for transfer in load_transfers(connection, &ids).await? {
        accounts.extend([transfer.debit_account_id, transfer.credit_account_id]);
        ledger.load_transfer(transfer);
    }
    let accounts: Vec<AccountId> = accounts.into_iter().collect();
    for account in load_accounts(connection, &accounts).await? {
        ledger.load_account(account);
    }
    Ok(())
}

impl Store {
    /// Streams every transfer that moved money (single-phase or pending) created from `from` to `to`
    /// (inclusive), in commit order, to `visit` with whether its client asked for a pending transfer
    /// (one held for review was asked as single-phase) and its two accounts. Read-only; the
    /// transfers are read as they are visited and the accounts through a bounded cache.
    pub async fn replay_transfers(
        &self,
        from: Timestamp,
        to: Timestamp,
        mut visit: impl FnMut(&Transfer, bool, &Account, &Account),
    ) -> anyhow::Result<()> {
        use futures_util::TryStreamExt;
        const ACCOUNTS_CACHED_MAX: usize = 100_000;
        let mut reader = self.pool.acquire().await?;
        let mut lookups = self.pool.acquire().await?;
        let mut rows = sqlx::query!(
            r#"SELECT t.seq AS "seq!", t.id AS "id!", t.kind AS "kind!", t.linked AS "linked!",
                      t.debit_account_id AS "debit_account_id!", t.credit_account_id AS "credit_account_id!",
                      t.amount AS "amount!", t.currency AS "currency!", t.code AS "code!", t.pending_id, t.timeout_s,
                      t.expires_at, t.state, t.metadata AS "metadata!", t.created_at AS "created_at!",
                      (r.transfer_id IS NOT NULL) AS "held!"
               FROM transfers t LEFT JOIN reviews r ON r.transfer_id = t.id
               WHERE t.kind IN ('single', 'pending') AND t.created_at >= $1 AND t.created_at <= $2
               ORDER BY t.seq"#,
            to_datetime(from),
            to_datetime(to)
        )
        .fetch(&mut *reader);
        let mut accounts: HashMap<AccountId, Account> = HashMap::new();
        while let Some(row) = rows.try_next().await? {
            let held = row.held;
            let transfer = Transfer::try_from(TransferRow {
                seq: row.seq,
                id: row.id,
                kind: row.kind,
                linked: row.linked,
                debit_account_id: row.debit_account_id,
                credit_account_id: row.credit_account_id,
                amount: row.amount,
                currency: row.currency,
                code: row.code,
                pending_id: row.pending_id,
                timeout_s: row.timeout_s,
                expires_at: row.expires_at,
                state: row.state,
                metadata: row.metadata,
                created_at: row.created_at,
            })?;
            let wanted = [transfer.debit_account_id, transfer.credit_account_id];
            let missing: Vec<AccountId> = wanted.into_iter().filter(|id| !accounts.contains_key(id)).collect();
            if !missing.is_empty() {
                if accounts.len() + missing.len() > ACCOUNTS_CACHED_MAX {
                    accounts.clear();
                }
                for account in load_accounts(&mut lookups, &wanted).await? {
                    accounts.insert(account.id, account);
                }
            }
            let (Some(debit), Some(credit)) = (accounts.get(&wanted[0]), accounts.get(&wanted[1])) else {
                anyhow::bail!("transfer {} names an account that does not exist", transfer.id);
            };
            let asked_pending = transfer.kind == ledger::TransferKind::Pending && !held;
            visit(&transfer, asked_pending, debit, credit);
        }
        Ok(())
    }
}

/// The screening activity: every transfer that moved money (single-phase or pending) created within
/// the longest feature window before `now`, and which of them moved without a review, read newest
/// first by commit order (the order of creation) until the first older one, and counted oldest first.
pub(crate) async fn load_activity(connection: &mut PgConnection, now: Timestamp) -> anyhow::Result<Activity> {
    use futures_util::TryStreamExt;
    let from = to_datetime(Timestamp::from_micros(
        now.micros() - crate::fraud::features::WINDOW_MAX_S * 1_000_000,
    ));
    let mut rows = sqlx::query!(
        r#"SELECT t.debit_account_id, t.credit_account_id, t.amount, t.currency AS "currency!", t.created_at,
                  EXISTS (SELECT 1 FROM reviews r WHERE r.transfer_id = t.id) AS "held!"
           FROM transfers t WHERE t.kind IN ('single', 'pending') ORDER BY t.seq DESC"#
    )
    .fetch(&mut *connection);
    let mut recent = Vec::new();
    while let Some(row) = rows.try_next().await? {
        if row.created_at <= from {
            break;
        }
        recent.push(row);
    }
    drop(rows);
    let mut activity = Activity::default();
    for row in recent.into_iter().rev() {
        let currency = ledger::Currency::from_code(row.currency.trim())
            .map_err(|e| anyhow::anyhow!("stored transfer currency {}: {e}", row.currency))?;
        let (debit, at) = (
            AccountId::from_stored(row.debit_account_id),
            Timestamp::from_micros(row.created_at.timestamp_micros()),
        );
        activity.add(
            debit,
            AccountId::from_stored(row.credit_account_id),
            row.amount as u64,
            currency,
            at,
        );
        if !row.held {
            activity.add_unreviewed(debit, row.amount as u64, currency, at);
        }
    }
    Ok(activity)
}

/// Everything one batch writes, as owned columns: built from the ledger's cache by the sequencer,
/// then written by a task of its own while the sequencer goes on with the next batch.
///
/// The audit log's records and the outbox's events join the same batch and transaction.
pub struct BatchRows {
    accounts: AccountColumns,
    accounts_closed: Vec<Uuid>,
    transfers: TransferColumns,
    balances: BalanceColumns,
    pending_states: PendingStates,
    pub(crate) audit: AuditRows,
    reviews: ReviewRows,
    pub(crate) rulesets: RulesetRows,
    pub(crate) outbox: OutboxRows,
    pub(crate) settlements: settlements::SettlementRows,
}

/// Pending transfers that were posted, voided or expired, with the record that says so.
#[derive(Default)]
struct PendingStates {
    ids: Vec<Uuid>,
    states: Vec<&'static str>,
    audit_seqs: Vec<Option<i64>>,
}

impl BatchRows {
    /// The transfers this batch writes, as the account history folder files them.
    pub(crate) fn committed_transfers(&self) -> history::Committed {
        history::Committed {
            first_seq: self.transfers.seqs.first().copied().unwrap_or(0),
            debits: self.transfers.debits.clone(),
            credits: self.transfers.credits.clone(),
        }
    }

    /// The rows of `changes`; `transfer_seq` is the last transfer sequence number already used.
    pub fn build(
        ledger: &Ledger,
        changes: &Changes,
        transfer_seq: i64,
        audit: AuditRows,
        reviews: ReviewRows,
    ) -> BatchRows {
        let mut transfers = TransferColumns::default();
        for (offset, id) in changes.transfers_created.iter().enumerate() {
            let transfer = ledger.transfer(*id).expect("created transfers are resident");
            let audit_seqs = (
                audit.transfer_seqs.get(id).copied(),
                audit.resolution_seqs.get(id).copied(),
            );
            transfers.push(transfer, transfer_seq + 1 + offset as i64, audit_seqs);
        }
        // A pending transfer created in this batch is inserted with its final state already.
        let created: HashSet<TransferId> = changes.transfers_created.iter().copied().collect();
        let mut pending_states = PendingStates::default();
        for (id, state) in changes.pending_resolved.iter().filter(|(id, _)| !created.contains(id)) {
            pending_states.ids.push(id.uuid());
            pending_states.states.push(state_name(*state));
            pending_states.audit_seqs.push(audit.resolution_seqs.get(id).copied());
        }
        BatchRows {
            accounts: AccountColumns::build(ledger, &changes.accounts_created, &audit),
            accounts_closed: changes.accounts_closed.iter().map(|id| id.uuid()).collect(),
            transfers,
            balances: BalanceColumns::build(ledger, changes),
            pending_states,
            audit,
            reviews,
            rulesets: RulesetRows::default(),
            outbox: OutboxRows::default(),
            settlements: settlements::SettlementRows::default(),
        }
    }

    /// The batch's events; each account key's new last sequence number goes into its balances row.
    pub fn set_outbox(&mut self, outbox: OutboxRows) {
        self.balances.set_event_seqs(&outbox.account_seqs);
        self.outbox = outbox;
    }

    /// Inserts the batch's new rows (accounts, rulesets, transfers, the outbox row, audit records,
    /// reviews, settlements). No other batch writes these rows, so this part can run while an earlier
    /// batch is still committing.
    pub async fn insert_new(&self, connection: &mut PgConnection) -> anyhow::Result<()> {
        // Accounts before the transfers that name them; reviews and settlements after theirs.
        self.accounts.insert(connection).await?;
        self.rulesets.insert(connection).await?;
        insert_transfers_events_and_records(connection, &self.transfers, &self.outbox, &self.audit).await?;
        self.reviews.insert(connection).await?;
        self.settlements.insert(connection).await
    }

    /// Updates existing rows (balances, closed accounts, pending states), locking them. Run only
    /// after every earlier batch has committed, so this batch never holds a row an earlier one needs.
    pub async fn update_existing(&self, connection: &mut PgConnection) -> anyhow::Result<()> {
        if !self.accounts_closed.is_empty() {
            let closed = sqlx::query!(
                "UPDATE accounts SET closed = true WHERE id = ANY($1::uuid[]) AND NOT closed",
                &self.accounts_closed
            )
            .execute(&mut *connection)
            .await?;
            expect_rows(closed.rows_affected(), self.accounts_closed.len(), "closing accounts")?;
        }
        self.balances.update(connection).await?;
        self.pending_states.update(connection).await
    }
}

/// A write that found the database other than the cache expected: another writer got there first.
#[derive(Debug, thiserror::Error)]
#[error("the database is not what the cache expected: {0}")]
pub struct StaleCache(pub(crate) String);

fn expect_rows(touched: u64, expected: usize, what: &str) -> Result<(), StaleCache> {
    if touched == expected as u64 {
        Ok(())
    } else {
        Err(StaleCache(format!("{what} touched {touched} rows, not {expected}")))
    }
}

/// The accounts a batch creates, column by column.
#[derive(Default)]
struct AccountColumns {
    ids: Vec<Uuid>,
    currencies: Vec<&'static str>,
    codes: Vec<i32>,
    owners: Vec<String>,
    debits_limited: Vec<bool>,
    credits_limited: Vec<bool>,
    overdrafts: Vec<i64>,
    metadata: Vec<String>,
    created: Vec<chrono::DateTime<chrono::Utc>>,
    audit_seqs: Vec<Option<i64>>,
}

impl AccountColumns {
    fn build(ledger: &Ledger, ids: &[AccountId], audit: &AuditRows) -> AccountColumns {
        let mut columns = AccountColumns::default();
        for id in ids {
            let account = ledger.account(*id).expect("created accounts are resident");
            let (debits_limit, credits_limit) = limit_columns(account.limit);
            columns.ids.push(account.id.uuid());
            columns.currencies.push(account.currency.code());
            columns.codes.push(i32::from(account.code));
            columns.owners.push(account.owner.clone());
            columns.debits_limited.push(debits_limit.is_some());
            columns.credits_limited.push(credits_limit.is_some());
            columns.overdrafts.push(debits_limit.or(credits_limit).unwrap_or(0));
            columns.metadata.push(account.metadata.to_json());
            columns.created.push(to_datetime(account.created_at));
            columns.audit_seqs.push(audit.account_seqs.get(id).copied());
        }
        columns
    }

    async fn insert(&self, connection: &mut PgConnection) -> anyhow::Result<()> {
        if self.ids.is_empty() {
            return Ok(());
        }
        sqlx::query!(
            "INSERT INTO accounts (id, currency, code, owner, debits_must_not_exceed_credits,
                                   credits_must_not_exceed_debits, overdraft_limit, metadata, created_at, audit_seq)
             SELECT id, currency, code, owner, debits_limited, credits_limited, overdraft, metadata::jsonb, created,
                    audit_seq
             FROM UNNEST($1::uuid[], $2::text[], $3::int4[], $4::text[], $5::bool[], $6::bool[], $7::int8[],
                         $8::text[], $9::timestamptz[], $10::int8[])
               AS a(id, currency, code, owner, debits_limited, credits_limited, overdraft, metadata, created,
                    audit_seq)",
            &self.ids,
            &self.currencies as &[&str],
            &self.codes,
            &self.owners,
            &self.debits_limited,
            &self.credits_limited,
            &self.overdrafts,
            &self.metadata,
            &self.created,
            &self.audit_seqs as &[Option<i64>],
        )
        .execute(&mut *connection)
        .await?;
        sqlx::query!(
            "INSERT INTO balances (account_id, debits_limit, credits_limit)
             SELECT id, CASE WHEN d THEN o END, CASE WHEN c THEN o END
             FROM UNNEST($1::uuid[], $2::bool[], $3::bool[], $4::int8[]) AS b(id, d, c, o)",
            &self.ids,
            &self.debits_limited,
            &self.credits_limited,
            &self.overdrafts,
        )
        .execute(&mut *connection)
        .await?;
        Ok(())
    }
}

/// The transfers a batch creates, column by column.
#[derive(Default)]
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
    audit_seqs: Vec<Option<i64>>,
    resolution_audit_seqs: Vec<Option<i64>>,
}

impl TransferColumns {
    /// `audit_seqs`: the records of the transfer's creation and, for a pending one, of its end.
    fn push(&mut self, transfer: &Transfer, seq: i64, audit_seqs: (Option<i64>, Option<i64>)) {
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
        self.audit_seqs.push(audit_seqs.0);
        self.resolution_audit_seqs
            .push(audit_seqs.1.filter(|_| transfer.state.is_some()));
    }
}

/// The batch's transfers, its outbox row and its audit records, subtree hashes and checkpoint, in ONE
/// statement: a data-modifying CTE per table, each inserting nothing when its arrays are empty. A batch
/// of a few dozen single transfers spent ~0.5 ms per round trip on a busy machine, one per table.
async fn insert_transfers_events_and_records(
    connection: &mut PgConnection,
    transfers: &TransferColumns,
    outbox: &OutboxRows,
    audit: &AuditRows,
) -> anyhow::Result<()> {
    if transfers.ids.is_empty() && outbox.is_empty() && audit.records() == 0 && audit.checkpoint().is_none() {
        return Ok(());
    }
    let events = outbox.columns()?;
    let checkpoint = audit.checkpoint();
    let offsets = audit.offsets()?;
    sqlx::query!(
        "WITH new_transfers AS (
             INSERT INTO transfers (id, seq, kind, linked, debit_account_id, credit_account_id, amount, currency,
                                    code, pending_id, timeout_s, expires_at, state, metadata, created_at, audit_seq,
                                    resolution_audit_seq)
             SELECT id, seq, kind, linked, debit, credit, amount, currency, code, pending_id, timeout_s, expires_at,
                    state, metadata::jsonb, created, audit_seq, resolution_audit_seq
             FROM UNNEST($1::uuid[], $2::int8[], $3::text[], $4::bool[], $5::uuid[], $6::uuid[], $7::int8[],
                         $8::text[], $9::int4[], $10::uuid[], $11::int4[], $12::timestamptz[], $13::text[],
                         $14::text[], $15::timestamptz[], $16::int8[], $17::int8[])
               AS t(id, seq, kind, linked, debit, credit, amount, currency, code, pending_id, timeout_s, expires_at,
                    state, metadata, created, audit_seq, resolution_audit_seq)
         ), new_events AS (
             INSERT INTO outbox (first_seq, types, keys, key_seqs, subjects, payloads, audit_seqs, record_hashes,
                                 created_at)
             SELECT $18::int8, $19::int2[], $20::text[], $21::int8[], $22::text[], $23::text[], $24::int8[],
                    $25::bytea[], $26::timestamptz
             WHERE cardinality($19::int2[]) > 0
         ), new_records AS (
             INSERT INTO audit_record_packs (first_seq, bytes, offsets)
             SELECT $27::int8, $28::bytea, $29::int4[] WHERE $27::int8 IS NOT NULL
         ), new_subtrees AS (
             INSERT INTO audit_subtrees (level, index, hash)
             SELECT * FROM UNNEST($30::int2[], $31::int8[], $32::bytea[])
         )
         INSERT INTO audit_checkpoints (size, root, note, signed_at)
         SELECT $33::int8, $34::bytea, $35::text, $36::timestamptz WHERE $33::int8 IS NOT NULL",
        &transfers.ids,
        &transfers.seqs,
        &transfers.kinds as &[&str],
        &transfers.linked,
        &transfers.debits,
        &transfers.credits,
        &transfers.amounts,
        &transfers.currencies as &[&str],
        &transfers.codes,
        &transfers.pending_ids as &[Option<Uuid>],
        &transfers.timeouts as &[Option<i32>],
        &transfers.expires as &[Option<chrono::DateTime<chrono::Utc>>],
        &transfers.states as &[Option<&str>],
        &transfers.metadata,
        &transfers.created,
        &transfers.audit_seqs as &[Option<i64>],
        &transfers.resolution_audit_seqs as &[Option<i64>],
        events.first_seq,
        &events.types,
        &events.keys,
        events.key_seqs,
        events.subjects,
        &events.payloads as &[Option<String>],
        events.audit_seqs as &[Option<i64>],
        events.record_hashes as &[Option<Vec<u8>>],
        events.created,
        audit.first_seq,
        &audit.bytes,
        &offsets,
        &audit.levels,
        &audit.indexes,
        &audit.hashes,
        checkpoint.map(|(signed, _)| signed.checkpoint.size as i64),
        checkpoint.map(|(signed, _)| &signed.checkpoint.root[..]),
        checkpoint.map(|(signed, _)| signed.note.as_str()),
        checkpoint.map(|(_, at)| to_datetime(*at)),
    )
    .execute(&mut *connection)
    .await?;
    Ok(())
}

/// Net balance changes of a batch, one row per touched account, in account id order (so concurrent
/// writers lock balance rows in one order and cannot deadlock).
#[derive(Default)]
struct BalanceColumns {
    ids: Vec<Uuid>,
    debits_posted: Vec<i64>,
    credits_posted: Vec<i64>,
    debits_pending: Vec<i64>,
    credits_pending: Vec<i64>,
    /// The account's last event sequence number after this batch, or 0 when it has no event in it.
    event_seqs: Vec<i64>,
}

impl BalanceColumns {
    fn build(ledger: &Ledger, changes: &Changes) -> BalanceColumns {
        let mut columns = BalanceColumns::default();
        for (id, delta) in changes.balance_deltas(ledger) {
            columns.ids.push(id.uuid());
            columns.debits_posted.push(delta.debits_posted);
            columns.credits_posted.push(delta.credits_posted);
            columns.debits_pending.push(delta.debits_pending);
            columns.credits_pending.push(delta.credits_pending);
            columns.event_seqs.push(0);
        }
        columns
    }

    /// Sets each account's last event sequence number; an account whose balances do not change (a
    /// settlement that paid nothing out) gets a row with no change but that.
    fn set_event_seqs(&mut self, seqs: &[(Uuid, i64)]) {
        let mut unchanged = Vec::new();
        for (id, seq) in seqs {
            match self.ids.binary_search(id) {
                Ok(at) => self.event_seqs[at] = *seq,
                Err(_) => unchanged.push((*id, *seq)),
            }
        }
        if unchanged.is_empty() {
            return;
        }
        for (id, seq) in unchanged {
            self.ids.push(id);
            self.debits_posted.push(0);
            self.credits_posted.push(0);
            self.debits_pending.push(0);
            self.credits_pending.push(0);
            self.event_seqs.push(seq);
        }
        // Back into account id order.
        let mut order: Vec<usize> = (0..self.ids.len()).collect();
        order.sort_by_key(|at| self.ids[*at]);
        let reorder = |column: &mut Vec<i64>| *column = order.iter().map(|at| column[*at]).collect();
        reorder(&mut self.debits_posted);
        reorder(&mut self.credits_posted);
        reorder(&mut self.debits_pending);
        reorder(&mut self.credits_pending);
        reorder(&mut self.event_seqs);
        self.ids = order.iter().map(|at| self.ids[*at]).collect();
    }

    async fn update(&self, connection: &mut PgConnection) -> anyhow::Result<()> {
        if self.ids.is_empty() {
            return Ok(());
        }
        // Increments, not absolute values: even a stale cache could not make debits and credits
        // disagree, and the table's CHECKs refuse any result that breaks a limit. An event sequence
        // number only moves forward.
        let updated = sqlx::query!(
            "UPDATE balances b
             SET debits_posted = b.debits_posted + d.dp, credits_posted = b.credits_posted + d.cp,
                 debits_pending = b.debits_pending + d.dpn, credits_pending = b.credits_pending + d.cpn,
                 event_seq = GREATEST(b.event_seq, d.es)
             FROM UNNEST($1::uuid[], $2::int8[], $3::int8[], $4::int8[], $5::int8[], $6::int8[])
                  AS d(id, dp, cp, dpn, cpn, es)
             WHERE b.account_id = d.id",
            &self.ids,
            &self.debits_posted,
            &self.credits_posted,
            &self.debits_pending,
            &self.credits_pending,
            &self.event_seqs,
        )
        .execute(&mut *connection)
        .await?;
        expect_rows(updated.rows_affected(), self.ids.len(), "the balance update")?;
        Ok(())
    }
}

impl PendingStates {
    async fn update(&self, connection: &mut PgConnection) -> anyhow::Result<()> {
        if self.ids.is_empty() {
            return Ok(());
        }
        let updated = sqlx::query!(
            "UPDATE transfers t SET state = s.state, resolution_audit_seq = s.audit_seq
             FROM UNNEST($1::uuid[], $2::text[], $3::int8[]) AS s(id, state, audit_seq)
             WHERE t.id = s.id AND t.state = 'pending'",
            &self.ids,
            &self.states as &[&str],
            &self.audit_seqs as &[Option<i64>],
        )
        .execute(&mut *connection)
        .await?;
        expect_rows(updated.rows_affected(), self.ids.len(), "the pending state update")?;
        Ok(())
    }
}
