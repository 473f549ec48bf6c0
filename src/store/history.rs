//! Each account's history: the transfers that debit or credit it, in commit order.
//!
//! The commit path writes transfers with no per-account index (see
//! migrations/0007_account_history.sql for what that index cost). A folder task, started with the
//! sequencer, folds committed transfers into `account_history` chunks in transactions of its own, as
//! [`FoldPolicy`] says: at once when enough transfers wait, and at least every so often (which also
//! picks up other instances' commits). Readers see the folded chunks plus the unfolded tail in one
//! snapshot, so a history is exact whatever the folder's progress; the fold policy only bounds how
//! much tail a read scans.

use std::collections::HashMap;
use std::time::Duration;

use ledger::{AccountId, Transfer};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection, PgPool, Postgres, Transaction};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::store::PLAN_PER_EXECUTION;
use crate::store::rows::TransferRow;

/// Most seqs in one chunk row; the migration's CHECK says the same. 200 seqs stay under
/// PostgreSQL's ~2 kB inline limit, so reading a chunk never detoasts.
const CHUNK_SEQS_MAX: usize = 200;

/// When the folder folds.
#[derive(Clone, Debug)]
pub struct FoldPolicy {
    /// Unfolded transfers that start a fold at once. Larger folds pack more of an account's transfers
    /// into one row (fewer rows written); smaller ones keep the tail each read scans shorter.
    pub transfers_min: i64,
    /// Most transfers one fold takes; a larger tail is folded in several transactions.
    pub transfers_max: i64,
    /// The longest a committed transfer waits to be folded when fewer than `transfers_min` wait. Also
    /// how soon other instances' transfers are folded.
    pub interval: Duration,
}

impl Default for FoldPolicy {
    fn default() -> FoldPolicy {
        FoldPolicy {
            transfers_min: 32_768,
            transfers_max: 65_536,
            interval: Duration::from_secs(1),
        }
    }
}

/// How long the folder waits after a failed fold before trying again.
const RETRY_DELAY: Duration = Duration::from_secs(1);

/// Transfers fetched per round trip when a reader walks a whole history.
pub(crate) const PAGE_TRANSFERS: usize = 1_000;

/// Starts a read-only transaction whose reads all see one snapshot.
pub(crate) async fn snapshot(pool: &PgPool) -> anyhow::Result<Transaction<'static, Postgres>> {
    let mut transaction = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *transaction)
        .await?;
    Ok(transaction)
}

/// A walk over one account's transfers in commit order, after a cursor. Run every call in the same
/// [`snapshot`] transaction: the folded chunks and the tail must come from one snapshot.
pub(crate) struct AccountHistory {
    account: Uuid,
    folded_seq: i64,
    /// The last seq handed out (or the starting cursor).
    after_seq: i64,
    chunks_done: bool,
    tail_done: bool,
}

impl AccountHistory {
    pub async fn open(
        connection: &mut PgConnection,
        account: AccountId,
        after_seq: i64,
    ) -> anyhow::Result<AccountHistory> {
        let folded_seq = sqlx::query_scalar!("SELECT folded_seq FROM account_history_head WHERE id = 1")
            .fetch_one(&mut *connection)
            .await?;
        Ok(AccountHistory {
            account: account.uuid(),
            folded_seq,
            after_seq,
            chunks_done: after_seq >= folded_seq,
            tail_done: false,
        })
    }

    /// The next seqs, at most `limit`, ascending; empty once the history is walked.
    async fn next_seqs(&mut self, connection: &mut PgConnection, limit: usize) -> anyhow::Result<Vec<i64>> {
        let mut seqs = Vec::with_capacity(limit);
        while !self.chunks_done && seqs.len() < limit {
            // Every chunk past the cursor holds at least one wanted seq (its last), so this many
            // chunks are always enough.
            let wanted = (limit - seqs.len()) as i64;
            let chunks = sqlx::query_scalar!(
                r#"SELECT seqs AS "seqs!" FROM account_history
                   WHERE account_id = $1 AND last_seq > $2 ORDER BY last_seq LIMIT $3"#,
                self.account,
                self.after_seq,
                wanted
            )
            .fetch_all(&mut *connection)
            .await?;
            self.chunks_done = (chunks.len() as i64) < wanted;
            let after = self.after_seq;
            for chunk in chunks {
                seqs.extend(chunk.into_iter().filter(|seq| *seq > after));
            }
            seqs.truncate(limit);
            self.after_seq = seqs.last().copied().unwrap_or(after);
        }
        if self.chunks_done && !self.tail_done && seqs.len() < limit {
            let wanted = (limit - seqs.len()) as i64;
            let tail = sqlx::query_scalar!(
                "SELECT seq FROM transfers
                 WHERE seq > $1 AND (debit_account_id = $2 OR credit_account_id = $2)
                 ORDER BY seq LIMIT $3",
                self.after_seq.max(self.folded_seq),
                self.account,
                wanted
            )
            .fetch_all(&mut *connection)
            .await?;
            self.tail_done = (tail.len() as i64) < wanted;
            seqs.extend(tail);
            self.after_seq = seqs.last().copied().unwrap_or(self.after_seq);
        }
        Ok(seqs)
    }

    /// The next transfers, at most `limit`, each with its seq; empty once the history is walked.
    pub async fn next_transfers(
        &mut self,
        connection: &mut PgConnection,
        limit: usize,
    ) -> anyhow::Result<Vec<(i64, Transfer)>> {
        let seqs = self.next_seqs(connection, limit).await?;
        transfers_by_seq(connection, &seqs).await
    }
}

/// The transfers with these seqs, in the same order (one seq-index probe each).
async fn transfers_by_seq(connection: &mut PgConnection, seqs: &[i64]) -> anyhow::Result<Vec<(i64, Transfer)>> {
    if seqs.is_empty() {
        return Ok(Vec::new());
    }
    let rows = sqlx::query_as!(
        TransferRow,
        r#"SELECT t.seq AS "seq!", t.id AS "id!", t.kind AS "kind!", t.linked AS "linked!",
                  t.debit_account_id AS "debit_account_id!", t.credit_account_id AS "credit_account_id!",
                  t.amount AS "amount!", t.currency AS "currency!", t.code AS "code!", t.pending_id, t.timeout_s,
                  t.expires_at, t.state, t.metadata AS "metadata!", t.created_at AS "created_at!"
           FROM UNNEST($1::int8[]) WITH ORDINALITY AS k(seq, n)
           CROSS JOIN LATERAL (SELECT * FROM transfers WHERE seq = k.seq LIMIT 1) t
           ORDER BY k.n"#,
        seqs
    )
    .fetch_all(&mut *connection)
    .await?;
    anyhow::ensure!(
        rows.len() == seqs.len(),
        "the account history names {} transfers of which {} exist",
        seqs.len(),
        rows.len()
    );
    rows.into_iter()
        .map(|row| Ok((row.seq, Transfer::try_from(row)?)))
        .collect()
}

/// Folds up to `transfers_max` committed transfers after the folded head into chunks, in one
/// transaction, reading them from the database. Returns the new folded seq and whether there may be
/// more to fold at once. The folder calls this (through [`Committed`] batches when it has them); so may
/// anyone else, at any time: folds take turns and never change what a reader sees.
pub async fn fold(connection: &mut PgConnection, transfers_max: i64) -> anyhow::Result<(i64, bool)> {
    fold_from(connection, transfers_max, &mut Recent::default()).await
}

/// The accounts of transfers `first_seq`, `first_seq + 1`, ... of one committed batch, in order.
pub(crate) struct Committed {
    pub first_seq: i64,
    pub debits: Vec<Uuid>,
    pub credits: Vec<Uuid>,
}

impl Committed {
    fn len(&self) -> i64 {
        self.debits.len() as i64
    }

    fn last_seq(&self) -> i64 {
        self.first_seq + self.len() - 1
    }
}

/// Batches this instance committed and has not folded yet, oldest first: what a fold would otherwise
/// read back from the transfers table. Only ever a hint: a fold uses them when they continue the
/// folded head exactly, and reads the database otherwise (another instance's transfers, batches
/// dropped when the folder fell behind).
#[derive(Default)]
struct Recent {
    batches: std::collections::VecDeque<Committed>,
    transfers: i64,
}

impl Recent {
    fn push(&mut self, batch: Committed, transfers_max: i64) {
        if batch.debits.is_empty() {
            return;
        }
        self.transfers += batch.len();
        self.batches.push_back(batch);
        // Bounded: a folder that cannot keep up reads from the database instead.
        while self.transfers > RECENT_FOLDS_MAX * transfers_max {
            self.pop();
        }
    }

    fn pop(&mut self) {
        if let Some(batch) = self.batches.pop_front() {
            self.transfers -= batch.len();
        }
    }

    /// Forgets what is folded already.
    fn forget_through(&mut self, folded_seq: i64) {
        while self.batches.front().is_some_and(|batch| batch.last_seq() <= folded_seq) {
            self.pop();
        }
    }

    /// The transfers after `folded_seq`, up to `transfers_max` of them in whole batches, if the
    /// batches held continue it exactly.
    fn after(&self, folded_seq: i64, transfers_max: i64) -> Option<Vec<(i64, Uuid, Uuid)>> {
        let first = self.batches.front()?;
        if first.first_seq != folded_seq + 1 || first.len() > transfers_max {
            return None;
        }
        let mut tail = Vec::new();
        let mut next_seq = folded_seq + 1;
        for batch in &self.batches {
            if batch.first_seq != next_seq || (tail.len() as i64) + batch.len() > transfers_max {
                break;
            }
            tail.extend(
                (batch.first_seq..)
                    .zip(batch.debits.iter().zip(&batch.credits))
                    .map(|(seq, (debit, credit))| (seq, *debit, *credit)),
            );
            next_seq = batch.last_seq() + 1;
        }
        Some(tail)
    }
}

/// Most transfers [`Recent`] holds, in folds of `transfers_max`.
const RECENT_FOLDS_MAX: i64 = 4;

async fn fold_from(
    connection: &mut PgConnection,
    transfers_max: i64,
    recent: &mut Recent,
) -> anyhow::Result<(i64, bool)> {
    let mut transaction = connection.begin().await?;
    // Locked first: two instances' folders take turns, and each folds from where the other stopped.
    let folded_seq = sqlx::query_scalar!("SELECT folded_seq FROM account_history_head WHERE id = 1 FOR UPDATE")
        .fetch_one(&mut *transaction)
        .await?;
    recent.forget_through(folded_seq);
    let tail = match recent.after(folded_seq, transfers_max) {
        Some(tail) => tail,
        None => committed_after(&mut transaction, folded_seq, transfers_max).await?,
    };
    let Some(last) = tail.last().map(|(seq, ..)| *seq) else {
        // Ended here, not dropped: a dropped transaction's rollback waits for the connection's next
        // use, and the head row would stay locked against every other folder until then.
        transaction.commit().await?;
        return Ok((folded_seq, false));
    };
    let mut entries: HashMap<Uuid, Vec<i64>> = HashMap::new();
    for (seq, debit, credit) in &tail {
        entries.entry(*debit).or_default().push(*seq);
        entries.entry(*credit).or_default().push(*seq);
    }
    let chunks = Chunks::of(entries);
    // Sorted by account: the rows go into the primary key's leaf pages in order.
    sqlx::query!(
        "WITH chunks AS (
             INSERT INTO account_history (account_id, last_seq, seqs)
             SELECT account_id, last_seq, ($3::int8[])[start:start + length - 1]
             FROM UNNEST($1::uuid[], $2::int8[], $4::int4[], $5::int4[]) AS c(account_id, last_seq, start, length)
         )
         UPDATE account_history_head SET folded_seq = $6 WHERE id = 1",
        &chunks.accounts,
        &chunks.last_seqs,
        &chunks.seqs,
        &chunks.starts,
        &chunks.lengths,
        last
    )
    .execute(&mut *transaction)
    .await?;
    transaction.commit().await?;
    recent.forget_through(last);
    Ok((last, last - folded_seq == transfers_max))
}

/// Up to `transfers_max` committed transfers after `folded_seq`, in seq order, from the database.
async fn committed_after(
    transaction: &mut Transaction<'_, Postgres>,
    folded_seq: i64,
    transfers_max: i64,
) -> anyhow::Result<Vec<(i64, Uuid, Uuid)>> {
    // Committed transfers are visible as a prefix of seqs (a batch commits only after the one before
    // it), so everything up to the largest seq read here is visible to this read: the fold continues
    // the folded prefix with no gap. (Read in index order with no ORDER BY: a sort of tens of
    // thousands of rows cost more than the rest of the fold; the seqs are sorted here instead.)
    let rows = sqlx::query!(
        "SELECT seq, debit_account_id, credit_account_id FROM transfers WHERE seq > $1 AND seq <= $1 + $2",
        folded_seq,
        transfers_max
    )
    .fetch_all(&mut **transaction)
    .await?;
    let mut tail: Vec<(i64, Uuid, Uuid)> = rows
        .into_iter()
        .map(|row| (row.seq, row.debit_account_id, row.credit_account_id))
        .collect();
    tail.sort_unstable_by_key(|(seq, ..)| *seq);
    Ok(tail)
}

/// Chunk rows as columns: each chunk's seqs are `seqs[start..start + length]` (from 1, as in SQL).
#[derive(Default)]
struct Chunks {
    accounts: Vec<Uuid>,
    last_seqs: Vec<i64>,
    starts: Vec<i32>,
    lengths: Vec<i32>,
    seqs: Vec<i64>,
}

impl Chunks {
    /// Each account's seqs (ascending) cut into chunks of at most [`CHUNK_SEQS_MAX`], by account.
    fn of(entries: HashMap<Uuid, Vec<i64>>) -> Chunks {
        let mut entries: Vec<(Uuid, Vec<i64>)> = entries.into_iter().collect();
        entries.sort_unstable_by_key(|(account, _)| *account);
        let mut chunks = Chunks::default();
        for (account, seqs) in entries {
            for chunk in seqs.chunks(CHUNK_SEQS_MAX) {
                debug_assert!(chunk.is_sorted());
                chunks.accounts.push(account);
                chunks.last_seqs.push(chunk[chunk.len() - 1]);
                chunks.starts.push(chunks.seqs.len() as i32 + 1);
                chunks.lengths.push(chunk.len() as i32);
                chunks.seqs.extend_from_slice(chunk);
            }
        }
        chunks
    }
}

/// The folder task and its stop signal.
pub(crate) struct Folder {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

/// Committed batches waiting for the folder; when it is full a batch is not passed on, and the folder
/// reads its transfers from the database instead.
pub(crate) const COMMITTED_QUEUE_MAX: usize = 16;

impl Folder {
    /// Starts folding. `committed` carries the batches this instance commits, in commit order.
    pub fn spawn(options: PgConnectOptions, policy: FoldPolicy, committed: mpsc::Receiver<Committed>) -> Folder {
        let (stop, stopped) = watch::channel(false);
        let task = tokio::spawn(run(options, policy, committed, stopped));
        Folder { stop, task }
    }

    /// Stops the folder between folds. What it has not folded stays in the tail, read exactly.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn run(
    options: PgConnectOptions,
    policy: FoldPolicy,
    mut committed: mpsc::Receiver<Committed>,
    mut stop: watch::Receiver<bool>,
) {
    let options = options.options([PLAN_PER_EXECUTION]);
    let mut connection: Option<PgConnection> = None;
    let mut recent = Recent::default();
    // The last seq this instance committed, as far as the folder has heard.
    let mut committed_seq = 0;
    let receive = |batch: Committed, recent: &mut Recent, committed_seq: &mut i64| {
        *committed_seq = (*committed_seq).max(batch.last_seq());
        recent.push(batch, policy.transfers_max);
    };
    loop {
        while let Ok(batch) = committed.try_recv() {
            receive(batch, &mut recent, &mut committed_seq);
        }
        let folded = match connection.as_mut() {
            Some(connection) => fold_from(connection, policy.transfers_max, &mut recent).await,
            None => match PgConnection::connect_with(&options).await {
                Ok(new) => fold_from(connection.insert(new), policy.transfers_max, &mut recent).await,
                Err(error) => Err(error.into()),
            },
        };
        let (folded_seq, wait) = match folded {
            // A full fold may have left more behind, and enough may wait already: go on at once.
            Ok((_, true)) => continue,
            Ok((seq, false)) if committed_seq - seq >= policy.transfers_min => continue,
            Ok((seq, false)) => (Some(seq), policy.interval),
            Err(error) => {
                tracing::warn!(error = format!("{error:#}"), "folding account history failed; retrying");
                connection = None;
                (None, RETRY_DELAY)
            }
        };
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                () = tokio::time::sleep_until(deadline) => break,
                received = committed.recv() => {
                    let Some(batch) = received else {
                        return;
                    };
                    receive(batch, &mut recent, &mut committed_seq);
                    if folded_seq.is_some_and(|folded| committed_seq - folded >= policy.transfers_min) {
                        break;
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(first_seq: i64, len: u128) -> Committed {
        Committed {
            first_seq,
            debits: (0..len).map(|n| Uuid::from_u128(2 * n + 1)).collect(),
            credits: (0..len).map(|n| Uuid::from_u128(2 * n + 2)).collect(),
        }
    }

    fn seqs(tail: Option<Vec<(i64, Uuid, Uuid)>>) -> Option<Vec<i64>> {
        tail.map(|tail| tail.into_iter().map(|(seq, ..)| seq).collect())
    }

    #[test]
    fn recent_batches_are_used_only_where_they_continue_the_folded_head() {
        let mut recent = Recent::default();
        recent.push(batch(11, 3), 10);
        recent.push(batch(14, 2), 10);
        recent.push(batch(20, 4), 10); // 16..=19 never arrived
        assert_eq!(
            seqs(recent.after(10, 10)),
            Some(vec![11, 12, 13, 14, 15]),
            "up to the gap"
        );
        assert_eq!(seqs(recent.after(10, 4)), Some(vec![11, 12, 13]), "whole batches only");
        assert_eq!(seqs(recent.after(10, 2)), None, "a first batch larger than a fold");
        assert_eq!(seqs(recent.after(9, 10)), None, "transfer 10 is not held");
        let tail = recent.after(10, 10).unwrap();
        assert_eq!(
            (tail[3].1, tail[3].2),
            (Uuid::from_u128(1), Uuid::from_u128(2)),
            "seq 14 is its batch's first"
        );
        recent.forget_through(15);
        assert_eq!(seqs(recent.after(15, 10)), None, "16..=19 are read from the database");
        recent.forget_through(19);
        assert_eq!(seqs(recent.after(19, 10)), Some(vec![20, 21, 22, 23]));
        recent.forget_through(23);
        assert_eq!((recent.batches.len(), recent.transfers), (0, 0));
    }

    #[test]
    fn recent_batches_are_bounded() {
        let mut recent = Recent::default();
        for n in 0..10 {
            recent.push(batch(1 + 5 * n, 5), 5);
        }
        assert_eq!(recent.transfers, RECENT_FOLDS_MAX * 5);
        assert_eq!(recent.batches.front().map(|b| b.first_seq), Some(31));
        recent.push(batch(51, 0), 5);
        assert_eq!(recent.transfers, RECENT_FOLDS_MAX * 5, "an empty batch is not held");
    }
}
