//! The audit log in PostgreSQL: records, stored subtree hashes and signed checkpoints.
//!
//! The sequencer owns one [`AuditLog`]: for each batch it turns every state change and every command's
//! outcome into a record ([`AuditLog::record_batch`]), and the rows join the batch's transaction, so
//! no change commits without its record and no record without its change. A checkpoint is signed in
//! the same transaction, after every batch or once `checkpoint_interval` has passed, and only after a
//! consistency proof from the last signed checkpoint verifies (built from what the log holds in memory,
//! which was itself checked against the database's last checkpoint when it was loaded).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use audit::log::Appender;
use audit::merkle::{self, Hash, Span, Subtree, TreeHasher};
use audit::note::{Checkpoint, CheckpointSigner, NoteSigner, SignedCheckpoint};
use audit::record::{self, AccountCreated, Actor, CommandKind, Event, Rejection, Resolution, TransferCreated};
use ledger::{
    AccountId, Applied, BalanceLimit, BatchOutcome, Command, Ledger, PendingState, Timestamp, Transfer,
    TransferCommand, TransferId, TransferKind,
};
use sqlx::PgConnection;

use futures_util::TryStreamExt;

use crate::store::{StoredCheckpoint, StoredRecord};

/// Stored subtree levels are the multiples of this (see migrations/0002_audit.sql).
pub const STORED_LEVEL_STRIDE: u8 = 4;

/// How the sequencer keeps the audit log.
#[derive(Clone, Debug)]
pub enum AuditMode {
    /// Every batch appends its records; checkpoints are signed with `signer`.
    Signed {
        signer: Arc<NoteSigner>,
        /// Zero: sign after every batch. Otherwise at most this often (and when idle past it).
        checkpoint_interval: Duration,
    },
    /// No audit records: only for measuring what the audit log costs.
    Off,
}

/// One step of a batch as the audit log records it, with its actor.
pub enum Entry<'a> {
    /// The command at this index of the batch.
    Command(usize, &'a Actor),
    /// An event that is not a ledger command: a denial, a policy change, a review opened or decided.
    Event(Event, &'a Actor),
}

/// What a batch adds to the audit log, as columns for one INSERT per table.
#[derive(Default)]
pub struct AuditRows {
    /// The seq of the batch's first record; the others follow it without a gap.
    pub(super) first_seq: Option<i64>,
    /// The records, one after another, and where each ends in `bytes`.
    pub(super) bytes: Vec<u8>,
    record_ends: Vec<usize>,
    /// The leaf hash of each record, in order.
    leaf_hashes: Vec<Hash>,
    /// Subtree hashes to store: level, index and hash.
    pub(super) levels: Vec<i16>,
    pub(super) indexes: Vec<i64>,
    pub(super) hashes: Vec<Vec<u8>>,
    checkpoint: Option<(SignedCheckpoint, Timestamp)>,
    /// The record of each account's and transfer's creation, and of each pending transfer's end.
    pub(crate) account_seqs: HashMap<AccountId, i64>,
    pub(crate) transfer_seqs: HashMap<TransferId, i64>,
    pub(crate) resolution_seqs: HashMap<TransferId, i64>,
    /// The record of each settlement, by settlement id.
    pub(crate) settlement_seqs: HashMap<record::Id, i64>,
}

impl AuditRows {
    pub fn records(&self) -> usize {
        self.record_ends.len()
    }

    /// The records' stored `offsets`: where each begins in `bytes`, then where the last ends.
    pub(super) fn offsets(&self) -> anyhow::Result<Vec<i32>> {
        std::iter::once(0)
            .chain(self.record_ends.iter().copied())
            .map(|offset| i32::try_from(offset).map_err(|_| anyhow::anyhow!("a batch's audit records exceed 2 GiB")))
            .collect()
    }

    /// Record `seq`'s place and leaf hash, when this batch appended it.
    pub fn record_ref(&self, seq: i64) -> Option<crate::outbox::AuditRef> {
        let first = self.first_seq?;
        let hash = self.leaf_hashes.get(usize::try_from(seq - first).ok()?)?;
        Some(crate::outbox::AuditRef {
            seq: seq as u64,
            hash: *hash,
        })
    }

    /// The checkpoint this batch signs, if any, and when.
    pub fn checkpoint(&self) -> Option<&(SignedCheckpoint, Timestamp)> {
        self.checkpoint.as_ref()
    }
}

/// What the log holds since its last signed checkpoint: enough to prove the next checkpoint
/// consistent with it without reading the database.
struct Window {
    signed_size: u64,
    /// Hashes of `Subtree::frontier(signed_size)`.
    frontier: Vec<(Subtree, Hash)>,
    leaves: Vec<Hash>,
    subtrees: HashMap<Subtree, Hash>,
}

impl Window {
    fn new(tree: &TreeHasher) -> Window {
        Window {
            signed_size: tree.size(),
            frontier: Subtree::frontier(tree.size())
                .zip(tree.frontier().iter().copied())
                .collect(),
            leaves: Vec::new(),
            subtrees: HashMap::new(),
        }
    }

    fn subtree(&self, subtree: Subtree) -> Option<Hash> {
        if subtree.end_leaf() <= self.signed_size {
            self.frontier.iter().find(|(s, _)| *s == subtree).map(|(_, hash)| *hash)
        } else if subtree.first_leaf() >= self.signed_size {
            match subtree.level {
                0 => self.leaves.get((subtree.index - self.signed_size) as usize).copied(),
                _ => self.subtrees.get(&subtree).copied(),
            }
        } else {
            None
        }
    }

    /// The consistency proof from the signed size to `size`.
    fn consistency_proof(&self, size: u64) -> Result<Vec<Hash>, merkle::ProofError> {
        if self.signed_size == 0 {
            return Ok(Vec::new());
        }
        merkle::consistency_spans(self.signed_size, size)?
            .into_iter()
            .map(|span| {
                span.try_hash(|subtree| self.subtree(subtree))
                    .ok_or(merkle::ProofError::RootMismatch)
            })
            .collect()
    }
}

pub struct AuditLog {
    appender: Appender,
    signer: CheckpointSigner,
    window: Window,
    interval: Duration,
    last_signed: Instant,
}

#[derive(Debug, thiserror::Error)]
#[error("the audit log in the database does not match its last signed checkpoint (size {size}): {reason}")]
pub struct AuditMismatch {
    size: u64,
    reason: String,
}

impl AuditLog {
    /// The log of `size` records as the database holds it, checked against the last checkpoint
    /// stored there. When records follow that checkpoint, a checkpoint of them is signed at once and
    /// returned with the rows to write.
    pub async fn load(
        connection: &mut PgConnection,
        signer: Arc<NoteSigner>,
        interval: Duration,
        size: u64,
        now: Timestamp,
    ) -> anyhow::Result<(AuditLog, AuditRows)> {
        let frontier: Vec<Subtree> = Subtree::frontier(size).collect();
        let hashes = subtree_hashes(connection, &frontier).await?;
        let tree = TreeHasher::from_frontier(size, frontier.iter().map(|s| hashes[s]).collect())?;
        let last_hash = match size {
            0 => [0; 32],
            _ => {
                let last = read_records(connection, std::slice::from_ref(&(size - 1..size)))
                    .await?
                    .pop()
                    .ok_or_else(|| anyhow::anyhow!("audit record {} is missing", size - 1))?;
                merkle::leaf_hash(&last.bytes)
            }
        };
        let last = match latest_checkpoint(connection).await? {
            None => None,
            Some(row) => {
                let checkpoint = Checkpoint::open(&row.note, &signer.verifier()).map_err(|e| AuditMismatch {
                    size: row.size,
                    reason: format!("the stored checkpoint does not open with the configured key: {e}"),
                })?;
                if checkpoint.size != row.size || checkpoint.size > size {
                    return Err(AuditMismatch {
                        size: checkpoint.size,
                        reason: format!("the database holds {size} records"),
                    }
                    .into());
                }
                Some(checkpoint)
            }
        };
        let mut signer = CheckpointSigner::new(signer, last.clone());
        let mut rows = AuditRows::default();
        if last.as_ref().map(|c| c.size) != Some(size) && size > 0 {
            let proof = match &last {
                Some(last) => consistency_proof(connection, last.size, size).await?,
                None => Vec::new(),
            };
            let signed = signer.sign(size, tree.root(), &proof).map_err(|e| AuditMismatch {
                size: e.old_size,
                reason: e.to_string(),
            })?;
            rows.checkpoint = Some((signed, now));
        } else if let Some(last) = &last
            && last.root != tree.root()
        {
            return Err(AuditMismatch {
                size,
                reason: "the stored subtree hashes give another root".to_string(),
            }
            .into());
        }
        let appender = Appender::resume(size, last_hash, tree.frontier().to_vec())?;
        let window = Window::new(appender.tree());
        Ok((
            AuditLog {
                appender,
                signer,
                window,
                interval,
                last_signed: Instant::now(),
            },
            rows,
        ))
    }

    pub fn size(&self) -> u64 {
        self.appender.size()
    }

    /// Whether records wait for a checkpoint.
    pub fn unsigned(&self) -> bool {
        self.appender.size() > self.window.signed_size
    }

    /// When the records waiting for a checkpoint must be signed, if any wait.
    pub fn checkpoint_due_in(&self) -> Option<Duration> {
        self.unsigned()
            .then(|| self.interval.saturating_sub(self.last_signed.elapsed()))
    }

    fn append(&mut self, rows: &mut AuditRows, now: Timestamp, actor: &Actor, event: &Event) -> i64 {
        let window = &mut self.window;
        let appended = self.appender.append(now.micros(), actor, event, |subtree, hash| {
            window.subtrees.insert(subtree, *hash);
            if subtree.level.is_multiple_of(STORED_LEVEL_STRIDE) {
                rows.levels.push(i16::from(subtree.level));
                rows.indexes.push(subtree.index as i64);
                rows.hashes.push(hash.to_vec());
            }
        });
        window.leaves.push(appended.hash);
        let seq = appended.seq as i64;
        rows.first_seq.get_or_insert(seq);
        rows.bytes.extend_from_slice(&appended.bytes);
        rows.record_ends.push(rows.bytes.len());
        rows.leaf_hashes.push(appended.hash);
        seq
    }

    /// The records of one applied batch, in order: the expiries it began with, then one per entry (a
    /// command's change or its rejection with the result code, or an event recorded as it is).
    pub fn record_batch(
        &mut self,
        rows: &mut AuditRows,
        ledger: &Ledger,
        commands: &[Command],
        outcome: &BatchOutcome,
        entries: &[Entry<'_>],
        now: Timestamp,
    ) {
        let system = Actor::system();
        let results = &outcome.results;
        for (id, state) in &outcome.changes.pending_resolved {
            if *state == PendingState::Expired
                && let Some(pending) = ledger.transfer(*id)
            {
                let event = Event::TransferExpired(resolution(None, pending, 0, false, 0, "{}".to_string()));
                let seq = self.append(rows, now, &system, &event);
                rows.resolution_seqs.insert(*id, seq);
            }
        }
        for entry in entries {
            let (index, actor) = match entry {
                Entry::Event(event, actor) => {
                    let seq = self.append(rows, now, actor, event);
                    if let Event::SettlementCompleted(settlement) = event {
                        rows.settlement_seqs.insert(settlement.id, seq);
                    }
                    continue;
                }
                Entry::Command(index, actor) => (*index, *actor),
            };
            let (command, result) = (&commands[index], &results[index]);
            let event = match result {
                Ok(Applied::Created) => event_of(ledger, command),
                Ok(Applied::Exists) => Some(rejection(command, "exists")),
                Err(code) => Some(rejection(command, code.as_str())),
            };
            let Some(event) = event else { continue };
            let seq = self.append(rows, now, actor, &event);
            match (command, result) {
                (Command::CreateAccount(account), Ok(Applied::Created)) => {
                    rows.account_seqs.insert(account.id, seq);
                }
                (Command::CreateTransfer(transfer), Ok(Applied::Created)) => {
                    rows.transfer_seqs.insert(transfer.id, seq);
                    if let Some(pending_id) = transfer.pending_id() {
                        rows.resolution_seqs.insert(pending_id, seq);
                    }
                }
                _ => {}
            }
        }
    }

    /// Signs a checkpoint of everything appended, into `rows`, when one is due (or `force`).
    pub fn checkpoint(&mut self, rows: &mut AuditRows, now: Timestamp, force: bool) -> anyhow::Result<()> {
        if !self.unsigned() || !(force || self.last_signed.elapsed() >= self.interval) {
            return Ok(());
        }
        let size = self.appender.size();
        let proof = self.window.consistency_proof(size)?;
        let signed = self.signer.sign(size, self.appender.root(), &proof)?;
        rows.checkpoint = Some((signed, now));
        self.window = Window::new(self.appender.tree());
        self.last_signed = Instant::now();
        Ok(())
    }
}

fn id(uuid: uuid::Uuid) -> record::Id {
    *uuid.as_bytes()
}

fn currency(code: &str) -> record::Currency {
    let mut out = [0u8; 3];
    out.copy_from_slice(&code.as_bytes()[..3]);
    out
}

/// The event of a command that took effect.
fn event_of(ledger: &Ledger, command: &Command) -> Option<Event> {
    Some(match command {
        Command::CreateAccount(new) => {
            let account = ledger.account(new.id)?;
            let (debits, credits, overdraft) = match account.limit {
                BalanceLimit::None => (false, false, 0),
                BalanceLimit::Debits { overdraft_minor } => (true, false, overdraft_minor),
                BalanceLimit::Credits { overdraft_minor } => (false, true, overdraft_minor),
            };
            Event::AccountCreated(AccountCreated {
                id: id(account.id.uuid()),
                currency: currency(account.currency.code()),
                code: account.code,
                owner: account.owner.clone(),
                debits_must_not_exceed_credits: debits,
                credits_must_not_exceed_debits: credits,
                overdraft_limit: overdraft,
                metadata: account.metadata.to_json(),
            })
        }
        Command::CloseAccount(account) => Event::AccountClosed { id: id(account.uuid()) },
        Command::CreateTransfer(new) => {
            let transfer = ledger.transfer(new.id)?;
            match transfer.kind {
                TransferKind::Single | TransferKind::Pending => Event::TransferCreated(TransferCreated {
                    id: id(transfer.id.uuid()),
                    pending_timeout_s: transfer.timeout_s.filter(|_| transfer.kind == TransferKind::Pending),
                    linked: transfer.linked,
                    debit_account: id(transfer.debit_account_id.uuid()),
                    credit_account: id(transfer.credit_account_id.uuid()),
                    amount: transfer.amount.minor(),
                    currency: currency(transfer.currency.code()),
                    code: transfer.code,
                    metadata: transfer.metadata.to_json(),
                }),
                TransferKind::PostPending | TransferKind::VoidPending => {
                    let pending = ledger.transfer(transfer.pending_id?)?;
                    let post = transfer.kind == TransferKind::PostPending;
                    let posted = if post { transfer.amount.minor() } else { 0 };
                    let resolved = resolution(
                        Some(id(transfer.id.uuid())),
                        pending,
                        posted,
                        transfer.linked,
                        transfer.code,
                        transfer.metadata.to_json(),
                    );
                    if post {
                        Event::TransferPosted(resolved)
                    } else {
                        Event::TransferVoided(resolved)
                    }
                }
            }
        }
    })
}

fn resolution(
    by: Option<record::Id>,
    pending: &Transfer,
    posted_amount: u64,
    linked: bool,
    code: u16,
    metadata: String,
) -> Resolution {
    Resolution {
        id: by,
        pending_id: id(pending.id.uuid()),
        linked,
        debit_account: id(pending.debit_account_id.uuid()),
        credit_account: id(pending.credit_account_id.uuid()),
        currency: currency(pending.currency.code()),
        pending_amount: pending.amount.minor(),
        posted_amount,
        code: if code == 0 { pending.code } else { code },
        metadata,
    }
}

/// The record of a command that changed nothing.
fn rejection(command: &Command, code: &str) -> Event {
    let (kind, command_id) = match command {
        Command::CreateAccount(account) => (CommandKind::CreateAccount, account.id.uuid()),
        Command::CloseAccount(account) => (CommandKind::CloseAccount, account.uuid()),
        Command::CreateTransfer(transfer) => (CommandKind::CreateTransfer, transfer.id.uuid()),
    };
    let (movement, pending_id) = match command {
        Command::CreateTransfer(transfer) => match &transfer.command {
            TransferCommand::Single(movement) | TransferCommand::Pending { movement, .. } => (Some(movement), None),
            TransferCommand::PostPending { pending_id, .. } | TransferCommand::VoidPending { pending_id, .. } => {
                (None, Some(id(pending_id.uuid())))
            }
        },
        _ => (None, None),
    };
    Event::CommandRejected(Rejection {
        command: kind,
        id: id(command_id),
        code: code.to_string(),
        debit_account: movement.map(|m| id(m.debit_account_id.uuid())),
        credit_account: movement.map(|m| id(m.credit_account_id.uuid())),
        amount: movement.map(|m| m.amount.minor()),
        currency: movement.map(|m| currency(m.currency.code())),
        pending_id,
    })
}

/// The latest signed checkpoint stored: its size and signed note.
pub async fn latest_checkpoint(connection: &mut PgConnection) -> anyhow::Result<Option<StoredCheckpoint>> {
    let row = sqlx::query!("SELECT size, note FROM audit_checkpoints ORDER BY size DESC LIMIT 1")
        .fetch_optional(&mut *connection)
        .await?;
    Ok(row.map(|row| StoredCheckpoint {
        size: row.size as u64,
        note: row.note,
    }))
}

/// Records as one batch stored them, or the part of them a read wanted: the first one's seq, their
/// bytes one after another, and where each begins in the row's bytes followed by where the last ends.
struct RecordRun {
    first_seq: i64,
    bytes: Vec<u8>,
    offsets: Vec<i32>,
}

impl RecordRun {
    /// Each record with its seq, once the offsets are known to split the bytes exactly.
    fn split(&self) -> anyhow::Result<impl Iterator<Item = (u64, &[u8])> + '_> {
        let malformed = || anyhow::anyhow!("the audit records stored from seq {} are malformed", self.first_seq);
        let first_seq = u64::try_from(self.first_seq).map_err(|_| malformed())?;
        let base = *self.offsets.first().ok_or_else(malformed)?;
        let mut ends: Vec<usize> = Vec::with_capacity(self.offsets.len());
        for offset in &self.offsets {
            let end = offset
                .checked_sub(base)
                .and_then(|end| usize::try_from(end).ok())
                .filter(|end| *end <= self.bytes.len() && ends.last().is_none_or(|last| last < end))
                .ok_or_else(malformed)?;
            ends.push(end);
        }
        if ends.len() < 2 || ends.last() != Some(&self.bytes.len()) {
            return Err(malformed());
        }
        Ok((1..ends.len()).map(move |i| (first_seq + i as u64 - 1, &self.bytes[ends[i - 1]..ends[i]])))
    }
}

/// Calls `each` with every stored record in `ranges`, in the order of the ranges and by seq within
/// each, from one query that reads from each batch's row only the bytes of the records wanted.
pub async fn for_each_record(
    connection: &mut PgConnection,
    ranges: &[std::ops::Range<u64>],
    mut each: impl FnMut(u64, &[u8]) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let seq = |seq: u64| i64::try_from(seq).unwrap_or(i64::MAX);
    let starts: Vec<i64> = ranges.iter().map(|range| seq(range.start)).collect();
    let stops: Vec<i64> = ranges.iter().map(|range| seq(range.end)).collect();
    // Per range: the row holding its first record (the last row starting at or before it) and every
    // row after that starting before its end, each cut down to the wanted records.
    let mut runs = sqlx::query_as!(
        RecordRun,
        r#"SELECT p.first_seq + r.lo - 1 AS "first_seq!",
                  substring(p.bytes FROM p.offsets[r.lo] + 1 FOR p.offsets[r.hi + 1] - p.offsets[r.lo]) AS "bytes!",
                  p.offsets[r.lo : r.hi + 1] AS "offsets!"
           FROM UNNEST($1::int8[], $2::int8[]) WITH ORDINALITY AS w(start, stop, ord)
           CROSS JOIN LATERAL (
               SELECT * FROM audit_record_packs p
               WHERE p.first_seq < w.stop
                 AND p.first_seq >= COALESCE(
                     (SELECT max(q.first_seq) FROM audit_record_packs q WHERE q.first_seq <= w.start), 0)
           ) p
           CROSS JOIN LATERAL (
               SELECT GREATEST(w.start - p.first_seq, 0) + 1 AS lo,
                      LEAST(w.stop - p.first_seq, cardinality(p.offsets) - 1) AS hi
           ) r
           WHERE r.lo <= r.hi
           ORDER BY w.ord, p.first_seq"#,
        &starts,
        &stops
    )
    .fetch(&mut *connection);
    while let Some(run) = runs.try_next().await? {
        for (seq, bytes) in run.split()? {
            each(seq, bytes)?;
        }
    }
    Ok(())
}

/// Every stored record in `ranges`, as [`for_each_record`] finds them.
pub async fn read_records(
    connection: &mut PgConnection,
    ranges: &[std::ops::Range<u64>],
) -> anyhow::Result<Vec<StoredRecord>> {
    let mut records = Vec::new();
    for_each_record(connection, ranges, |seq, bytes| {
        records.push(StoredRecord {
            seq,
            bytes: bytes.to_vec(),
        });
        Ok(())
    })
    .await?;
    Ok(records)
}

/// The stored level a subtree's hash is computed from, and the indexes of its parts at that level.
fn stored_parts(subtree: &Subtree) -> (u8, std::ops::Range<u64>) {
    let base = subtree.level - subtree.level % STORED_LEVEL_STRIDE;
    let first = subtree.index << (subtree.level - base);
    (base, first..first + (1u64 << (subtree.level - base)))
}

/// The hashes of `wanted` perfect subtrees, each from at most 8 stored subtree hashes or 16 records.
pub async fn subtree_hashes(
    connection: &mut PgConnection,
    wanted: &[Subtree],
) -> anyhow::Result<HashMap<Subtree, Hash>> {
    let (mut records, mut levels, mut indexes) = (Vec::new(), Vec::new(), Vec::new());
    for subtree in wanted {
        let (base, parts) = stored_parts(subtree);
        if base == 0 {
            records.push(parts);
            continue;
        }
        for index in parts {
            levels.push(i16::from(base));
            indexes.push(index as i64);
        }
    }
    let mut stored: HashMap<Subtree, Hash> = HashMap::new();
    if !records.is_empty() {
        for_each_record(connection, &records, |seq, bytes| {
            stored.insert(Subtree { level: 0, index: seq }, merkle::leaf_hash(bytes));
            Ok(())
        })
        .await?;
    }
    if !levels.is_empty() {
        let nodes = sqlx::query!(
            "SELECT s.level, s.index, s.hash FROM UNNEST($1::int2[], $2::int8[]) AS w(level, index)
             JOIN audit_subtrees s ON s.level = w.level AND s.index = w.index",
            &levels,
            &indexes
        )
        .fetch_all(&mut *connection)
        .await?;
        for row in nodes {
            let hash = Hash::try_from(row.hash.as_slice())
                .map_err(|_| anyhow::anyhow!("a stored subtree hash is not 32 bytes"))?;
            stored.insert(
                Subtree {
                    level: row.level as u8,
                    index: row.index as u64,
                },
                hash,
            );
        }
    }
    let mut out = HashMap::new();
    for subtree in wanted {
        let (base, parts) = stored_parts(subtree);
        let mut tree = TreeHasher::new();
        for index in parts {
            let part = Subtree { level: base, index };
            let hash = stored
                .get(&part)
                .ok_or_else(|| anyhow::anyhow!("the audit log lacks {part:?}"))?;
            tree.push_subtree(base, *hash)?;
        }
        out.insert(*subtree, tree.root());
    }
    Ok(out)
}

/// The hashes of `spans`, each from stored subtrees.
pub async fn span_hashes(connection: &mut PgConnection, spans: &[Span]) -> anyhow::Result<Vec<Hash>> {
    let wanted: Vec<Subtree> = spans.iter().flat_map(|span| span.subtrees()).collect();
    let hashes = subtree_hashes(connection, &wanted).await?;
    Ok(spans.iter().map(|span| span.hash(|s| hashes[&s])).collect())
}

pub async fn consistency_proof(connection: &mut PgConnection, old: u64, new: u64) -> anyhow::Result<Vec<Hash>> {
    span_hashes(connection, &merkle::consistency_spans(old, new)?).await
}

pub async fn inclusion_proof(connection: &mut PgConnection, index: u64, size: u64) -> anyhow::Result<Vec<Hash>> {
    span_hashes(connection, &merkle::inclusion_spans(size, index)?).await
}

#[cfg(test)]
mod tests {
    use super::RecordRun;

    fn split(first_seq: i64, bytes: &[u8], offsets: &[i32]) -> anyhow::Result<Vec<(u64, Vec<u8>)>> {
        let run = RecordRun {
            first_seq,
            bytes: bytes.to_vec(),
            offsets: offsets.to_vec(),
        };
        Ok(run.split()?.map(|(seq, bytes)| (seq, bytes.to_vec())).collect())
    }

    #[test]
    fn a_run_cut_from_inside_a_row_splits_at_its_rebased_offsets() {
        assert_eq!(
            split(7, b"abcdef", &[100, 101, 103, 106]).unwrap(),
            [(7, b"a".to_vec()), (8, b"bc".to_vec()), (9, b"def".to_vec())]
        );
    }

    #[test]
    fn offsets_that_do_not_split_the_bytes_exactly_are_an_error() {
        for (first_seq, offsets) in [
            (0, &[][..]),
            (0, &[0][..]),
            (0, &[0, 2][..]),
            (0, &[0, 4][..]),
            (0, &[0, 2, 1, 3][..]),
            (0, &[0, 1, 1, 3][..]),
            (0, &[1, 0, 3][..]),
            (0, &[i32::MIN, 3][..]),
            (-1, &[0, 3][..]),
        ] {
            let error = split(first_seq, b"abc", offsets).unwrap_err();
            assert!(error.to_string().contains("malformed"), "{offsets:?}: {error}");
        }
    }
}
