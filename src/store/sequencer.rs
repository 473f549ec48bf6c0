//! The single writer: group commit of ledger batches into PostgreSQL, pipelined.
//!
//! Callers hand submissions (one or more commands that must stay together, such as a linked chain)
//! to a bounded channel and wait. The sequencer task takes the first waiting submission, drains more
//! without waiting until `batch_size_max` commands, loads what the batch refers to, applies it with
//! the ledger state machine against its cached working set, and hands the resulting rows to a writer
//! task that writes them in ONE transaction on a connection of its own. Only after that transaction
//! commits are the batch's callers answered, each with its own results.
//!
//! As a batch applies, every command is admitted (an id of the reserved namespace only in a
//! submission the service derived itself), and every new transfer is held above its initiator's
//! approval limits and screened by the fraud rules, with the sums and features of everything applied
//! before it: so limits and velocity hold however requests interleave or split.
//!
//! Up to `commit_pipeline_depth` batches are in flight at once: while batch N writes and commits, batch
//! N+1 is already applied in memory and inserting its new rows on another connection, so PostgreSQL
//! works on several batches at a time. Updates of existing rows wait until the previous batch has
//! committed (so no batch holds a row its predecessor needs), and a batch computed on a predecessor
//! that did not commit aborts. Last, each transaction locks the `ledger_head` row and checks it is
//! exactly what the sequencer expects: if another service instance wrote in between, the batch aborts,
//! the cache is rebuilt and the batch runs again (see [`Sequencer::prepare`] for the lock order that
//! keeps instances from deadlocking). A batch that needs rows an uncommitted batch creates (a new
//! account, a new pending transfer) waits for that batch first.
//!
//! If a batch fails for any other reason, its callers get [`SubmitError::CommitFailed`] and the cache
//! is rebuilt. A lost commit acknowledgement cannot tell "committed" from "not committed", so that
//! error means "outcome unknown": retrying with the same ids is safe, since a replay of a committed
//! command returns `exists`.

use std::borrow::Cow;
use std::collections::{HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use audit::record::{Actor, FraudScreened};

use ledger::{
    Account, AccountId, Applied, BatchOutcome, Command, CommandResult, Ledger, Timestamp, Transfer, TransferId,
};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinError, JoinHandle};

use crate::clock::Clock;
use crate::fraud::features::Activity;
use crate::fraud::screen::{Exemption, Origin, SETTLEMENT_NETTING, Screener};
use crate::fraud::{Ruleset, Screening, Verdict};
use crate::identity::Principal;
use crate::outbox::{self, KeySeqs, OutboxRows};
use crate::store::audit::{AuditLog, AuditMode, AuditRows, Entry};
use crate::store::history::{COMMITTED_QUEUE_MAX, Committed, FoldPolicy, Folder};
use crate::store::reviews::{ReviewChange, ReviewReason, ReviewRows};
use crate::store::rows::to_datetime;
use crate::store::rulesets::{RulesetChange, RulesetRows};
use crate::store::settlements::{NewSettlement, SettlementChange, SettlementRows};
use crate::store::{
    BatchRows, PLAN_PER_EXECUTION, StaleCache, existing_transfers, load_accounts, load_activity, load_open_pending,
    load_transfers,
};

/// How long (re)connecting to PostgreSQL may take before a batch fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The advisory lock every batch transaction takes first (see `Sequencer::prepare`).
const WRITE_LOCK_KEY: i64 = 0x6669_6e6c_6564_6772; // "finledgr"

/// Longest wait for a row or advisory lock in a batch transaction.
const LOCK_TIMEOUT: &str = "10s";

/// Commands that must be waiting before a batch joins others already in flight: enough to be worth a
/// transaction of its own, few enough that single requests do not wait for a whole commit.
const PIPELINE_JOIN_COMMANDS_MIN: usize = 32;

/// Runs of one submission when its batch loses a race with another writer, before giving up.
const ATTEMPTS_MAX: u32 = 3;

#[derive(Clone, Debug)]
pub struct SequencerConfig {
    /// Most commands in one batch (one database transaction).
    pub batch_size_max: usize,
    /// Most submissions waiting for the sequencer; beyond it, submitters wait (back-pressure).
    pub queue_depth_max: usize,
    /// Accounts kept in memory between batches (those with pending amounts always stay).
    pub account_cache_max: usize,
    /// Most batches writing or committing at once, each on its own connection.
    pub commit_pipeline_depth: usize,
    /// Fraud screening of every new transfer; off when `None`.
    pub fraud: Option<FraudScreening>,
    /// Woken after every commit that wrote events (the outbox relay waits on it).
    pub events_committed: Arc<tokio::sync::Notify>,
    /// Events written to the outbox with every change. Off only to measure what the outbox costs.
    pub outbox: bool,
    /// When committed transfers are folded into account history.
    pub history_fold: FoldPolicy,
}

/// The ruleset every new transfer is screened with (swapped whole on activation or reload), how long
/// a transfer held for review waits before it expires, and the window approval limits sum over.
/// Approval limits are applied as transfers are screened: without screening, none are.
#[derive(Clone)]
pub struct FraudScreening {
    pub ruleset: Arc<ArcSwap<Ruleset>>,
    pub hold_timeout_s: u32,
    pub approval_window_s: u32,
}

impl std::fmt::Debug for FraudScreening {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FraudScreening")
            .field("ruleset", &self.ruleset.load().hash_hex())
            .field("hold_timeout_s", &self.hold_timeout_s)
            .field("approval_window_s", &self.approval_window_s)
            .finish()
    }
}

impl Default for SequencerConfig {
    fn default() -> SequencerConfig {
        SequencerConfig {
            batch_size_max: 8190,
            queue_depth_max: 4096,
            account_cache_max: 1_000_000,
            commit_pipeline_depth: 3,
            fraud: None,
            events_committed: Arc::default(),
            outbox: true,
            history_fold: FoldPolicy::default(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    #[error("a submission holds {count} commands; the most is {max}")]
    TooLarge { count: usize, max: usize },
    #[error("the ledger is shutting down")]
    ShuttingDown,
    #[error("the batch could not be committed and its outcome is unknown ({reason}); retry with the same ids")]
    CommitFailed { reason: String },
}

/// A command's result, with the record it created or found as it stood after the batch, so callers can
/// answer without reading it back.
#[derive(Clone, Debug, PartialEq)]
pub struct Receipt {
    pub result: CommandResult,
    pub record: Option<Record>,
    /// The transfer was created held: pending, with a review opened for it.
    pub held: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Record {
    Account(Account),
    Transfer(Transfer),
}

struct Submission {
    commands: Vec<Command>,
    caller: Caller,
}

/// Who waits for a submission's results, how many commands are theirs, who they act as, whether they
/// may use reserved ids, and what else they record: events before their commands, review changes tied
/// to their commands.
struct Caller {
    reply: oneshot::Sender<Result<Vec<Receipt>, SubmitError>>,
    count: usize,
    attempts: u32,
    actor: Arc<Actor>,
    /// The commands were derived by the service itself, so they may use ids of the reserved namespace
    /// ([`ledger::reserved_id`]); a client's never may.
    reserved_ids: bool,
    extras: Extras,
}

/// What a submission records besides its commands: events before them, review changes and settlements
/// tied to them, ruleset changes; and the initiator whose approval limits its transfers are held above.
#[derive(Default)]
struct Extras {
    notes: Vec<audit::Event>,
    reviews: Vec<ReviewChange>,
    rulesets: Vec<RulesetChange>,
    settlements: Vec<SettlementChange>,
    initiator: Option<Arc<Principal>>,
}

impl Caller {
    /// A caller nobody waits for: the ledger's own work (expiry, checkpoints).
    fn system() -> Caller {
        let (reply, _) = oneshot::channel();
        Caller {
            reply,
            count: 0,
            attempts: 0,
            actor: Arc::new(Actor::system()),
            reserved_ids: true,
            extras: Extras::default(),
        }
    }
}

/// The commands of several submissions, concatenated (moved, never copied), and their callers.
#[derive(Default)]
struct Batch {
    commands: Vec<Command>,
    callers: Vec<Caller>,
}

impl Batch {
    /// Each command's origin, by index: its initiator (whose limits apply), whether it is the
    /// service's own, and why it is not screened (settlement transfers).
    fn origins(&self) -> Vec<Origin<'_>> {
        let mut origins = Vec::with_capacity(self.commands.len());
        for caller in &self.callers {
            let origin = Origin {
                initiator: caller.extras.initiator.as_deref(),
                exemption: (!caller.extras.settlements.is_empty()).then_some(&SETTLEMENT_NETTING),
                reserved_ids: caller.reserved_ids,
            };
            origins.extend(std::iter::repeat_n(origin, caller.count));
        }
        origins
    }

    /// Hands the commands back to their callers as submissions, to be run again.
    fn into_submissions(self) -> impl Iterator<Item = Submission> {
        let mut commands = self.commands.into_iter();
        self.callers.into_iter().map(move |caller| Submission {
            commands: commands.by_ref().take(caller.count).collect(),
            caller,
        })
    }
}

/// The way into the ledger: cheap to clone, one per caller. Its commands are recorded in the audit
/// log as the actor's (the ledger's own until [`LedgerHandle::acting_as`] names another).
#[derive(Clone)]
pub struct LedgerHandle {
    sender: mpsc::Sender<Submission>,
    batch_size_max: usize,
    actor: Arc<Actor>,
    reserved_ids: bool,
    initiator: Option<Arc<Principal>>,
}

impl LedgerHandle {
    /// This handle, submitting on behalf of `actor`.
    pub fn acting_as(&self, actor: Actor) -> LedgerHandle {
        LedgerHandle {
            actor: Arc::new(actor),
            ..self.clone()
        }
    }

    /// This handle, for commands the service derives itself: they may use reserved ids (system
    /// accounts, decision and settlement transfers). Commands built from a client's input never go
    /// through such a handle.
    pub fn deriving(&self) -> LedgerHandle {
        LedgerHandle {
            reserved_ids: true,
            ..self.clone()
        }
    }

    /// This handle, for `initiator`: every new transfer above its approval limits is held for a
    /// second principal's approval.
    pub fn initiated_by(&self, initiator: Arc<Principal>) -> LedgerHandle {
        LedgerHandle {
            initiator: Some(initiator),
            ..self.clone()
        }
    }

    /// Submits commands that are applied together, in order, in one batch; returns one result per
    /// command once the batch is durably committed. An empty submission only runs due expirations.
    pub async fn submit(&self, commands: Vec<Command>) -> Result<Vec<CommandResult>, SubmitError> {
        let receipts = self.execute(commands).await?;
        Ok(receipts.into_iter().map(|receipt| receipt.result).collect())
    }

    /// Like [`LedgerHandle::submit`], with each successful command's record.
    pub async fn execute(&self, commands: Vec<Command>) -> Result<Vec<Receipt>, SubmitError> {
        self.send(commands, Extras::default()).await
    }

    /// Like [`LedgerHandle::execute`], also approving or deciding reviews (see [`ReviewChange`]), in
    /// the same transaction.
    pub async fn execute_with_reviews(
        &self,
        commands: Vec<Command>,
        reviews: Vec<ReviewChange>,
    ) -> Result<Vec<Receipt>, SubmitError> {
        self.send(
            commands,
            Extras {
                reviews,
                ..Extras::default()
            },
        )
        .await
    }

    /// Records `events` in the audit log (with no ledger change), in order, in one commit, durably,
    /// before returning.
    pub async fn record(&self, events: Vec<audit::Event>) -> Result<(), SubmitError> {
        let notes = Extras {
            notes: events,
            ..Extras::default()
        };
        self.send(Vec::new(), notes).await.map(drop)
    }

    /// Records a fraud ruleset's proposal or activation, with its audit record, in one commit.
    pub async fn record_ruleset(&self, change: RulesetChange) -> Result<(), SubmitError> {
        let rulesets = Extras {
            rulesets: vec![change],
            ..Extras::default()
        };
        self.send(Vec::new(), rulesets).await.map(drop)
    }

    /// Settles an account: `commands` (the transfer of the net to the clearing account, if any) and the
    /// settlement, stored with its audit record and events only if the settlement transfer is created
    /// now. Settlement transfers are not screened by the fraud rules (the movements they net were, one
    /// by one): their exemption, [`SETTLEMENT_NETTING`], is recorded with them.
    pub async fn settle(
        &self,
        commands: Vec<Command>,
        settlement: SettlementChange,
    ) -> Result<Vec<Receipt>, SubmitError> {
        let settlements = Extras {
            settlements: vec![settlement],
            ..Extras::default()
        };
        self.send(commands, settlements).await
    }

    async fn send(&self, commands: Vec<Command>, mut extras: Extras) -> Result<Vec<Receipt>, SubmitError> {
        if commands.len() > self.batch_size_max {
            return Err(SubmitError::TooLarge {
                count: commands.len(),
                max: self.batch_size_max,
            });
        }
        let (reply, answer) = oneshot::channel();
        extras.initiator = self.initiator.clone();
        let caller = Caller {
            reply,
            count: commands.len(),
            attempts: 0,
            actor: self.actor.clone(),
            reserved_ids: self.reserved_ids,
            extras,
        };
        let submission = Submission { commands, caller };
        self.sender
            .send(submission)
            .await
            .map_err(|_| SubmitError::ShuttingDown)?;
        answer.await.map_err(|_| SubmitError::ShuttingDown)?
    }
}

/// Stops the sequencer: it refuses new submissions, commits the ones already queued, and exits; then
/// the account history folder stops.
pub struct Shutdown {
    signal: watch::Sender<bool>,
    task: JoinHandle<()>,
    folder: Folder,
}

impl Shutdown {
    pub async fn drain(self) {
        let _ = self.signal.send(true);
        let _ = self.task.await;
        self.folder.stop().await;
    }
}

/// Starts the sequencer task, and the folder that files its committed transfers into account history.
pub fn spawn(
    options: PgConnectOptions,
    config: SequencerConfig,
    audit: AuditMode,
    clock: Clock,
) -> (LedgerHandle, Shutdown) {
    assert!(config.batch_size_max > 0 && config.commit_pipeline_depth > 0);
    let (sender, receiver) = mpsc::channel(config.queue_depth_max);
    let (signal, stop) = watch::channel(false);
    let (committed_transfers, committed) = mpsc::channel(COMMITTED_QUEUE_MAX);
    let folder = Folder::spawn(options.clone(), config.history_fold.clone(), committed);
    let handle = LedgerHandle {
        sender,
        batch_size_max: config.batch_size_max,
        actor: Arc::new(Actor::system()),
        reserved_ids: false,
        initiator: None,
    };
    let sequencer = Sequencer {
        options,
        idle: Vec::new(),
        ledger: Ledger::new(),
        head: None,
        in_flight: VecDeque::new(),
        last_committed: None,
        queued: VecDeque::new(),
        last_now: None,
        clock,
        config,
        audit_mode: audit,
        audit: None,
        activity: Activity::default(),
        key_seqs: KeySeqs::default(),
        committed_transfers,
    };
    let task = tokio::spawn(sequencer.run(receiver, stop));
    (handle, Shutdown { signal, task, folder })
}

/// The `ledger_head` row: batches and transfers committed so far.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Head {
    batch_seq: i64,
    transfer_seq: i64,
    audit_size: i64,
    event_seq: i64,
}

/// A batch applied in memory, ready for its writer: results, rows, and the head before and after.
struct Prepared {
    outcome: BatchOutcome,
    records: Vec<(Option<Record>, bool)>,
    rows: BatchRows,
    expected: Head,
    next: Head,
}

/// Why a batch did not commit.
#[derive(Debug)]
enum BatchError {
    /// Another writer changed what the batch was computed on; run it again on fresh state.
    Conflict(String),
    /// Anything else; the outcome may be unknown.
    Failed(String),
}

impl BatchError {
    fn classify(error: anyhow::Error) -> BatchError {
        let conflict = error.downcast_ref::<StaleCache>().is_some()
            || error
                .downcast_ref::<sqlx::Error>()
                .and_then(|e| e.as_database_error())
                .and_then(|e| e.code())
                .is_some_and(
                    // Unique, foreign key and check violations, serialization failure, deadlock, lock
                    // timeout: a race with another writer.
                    |code| matches!(&*code, "23505" | "23503" | "23514" | "40001" | "40P01" | "55P03"),
                );
        let text = format!("{error:#}");
        if conflict {
            BatchError::Conflict(text)
        } else {
            BatchError::Failed(text)
        }
    }
}

/// A batch whose transaction is writing or committing.
struct InFlight {
    batch: Batch,
    results: Vec<CommandResult>,
    records: Vec<(Option<Record>, bool)>,
    now: Timestamp,
    created_accounts: HashSet<AccountId>,
    created_pending: HashSet<TransferId>,
    resolved_pending: HashSet<TransferId>,
    /// The batch writes events.
    events: bool,
    /// The batch's transfers, for the account history folder once it commits.
    transfers: Committed,
    task: JoinHandle<Result<PgConnection, BatchError>>,
}

enum Event {
    Completed(Result<Result<PgConnection, BatchError>, JoinError>),
    Submission(Submission),
    Stop,
    Closed,
    Expiry,
}

struct Sequencer {
    options: PgConnectOptions,
    idle: Vec<PgConnection>,
    ledger: Ledger,
    /// The head once every in-flight batch commits; `None` when the cache must be rebuilt.
    head: Option<Head>,
    in_flight: VecDeque<InFlight>,
    /// Says whether the most recently dispatched batch committed; the next batch waits for it.
    last_committed: Option<oneshot::Receiver<bool>>,
    /// Submissions taken from the channel (or to be run again) ahead of the channel.
    queued: VecDeque<Submission>,
    last_now: Option<Timestamp>,
    clock: Clock,
    config: SequencerConfig,
    audit_mode: AuditMode,
    /// The audit log as of the head; `None` when off or to be reloaded with the cache.
    audit: Option<AuditLog>,
    /// What the fraud features count, as of the head; rebuilt with the cache.
    activity: Activity,
    /// Each outbox key's last sequence number, as of the head; forgotten with the cache.
    key_seqs: KeySeqs,
    /// Committed batches' transfers, for the account history folder.
    committed_transfers: mpsc::Sender<Committed>,
}

impl Sequencer {
    async fn run(mut self, mut receiver: mpsc::Receiver<Submission>, mut stop: watch::Receiver<bool>) {
        let (mut stopping, mut closed) = (false, false);
        loop {
            let queued_commands: usize = self.queued.iter().map(|s| s.commands.len()).sum();
            let can_start = self.in_flight.len() < self.config.commit_pipeline_depth;
            // A second batch joins the pipeline only when it is worth a transaction of its own;
            // otherwise submissions keep gathering for the next full batch.
            let worth_starting = self.in_flight.is_empty()
                || queued_commands >= (self.config.batch_size_max / 2).min(PIPELINE_JOIN_COMMANDS_MIN);
            if can_start && worth_starting && !self.queued.is_empty() {
                let batch = self.gather(&mut receiver);
                self.start(batch).await;
                continue;
            }
            if closed && self.queued.is_empty() && self.in_flight.is_empty() {
                break;
            }
            let expiry = self.until_next_expiry();
            let event = {
                let oldest = self.in_flight.front_mut().map(|batch| &mut batch.task);
                let completion = async move {
                    match oldest {
                        Some(task) => task.await,
                        None => std::future::pending().await,
                    }
                };
                tokio::select! {
                    joined = completion => Event::Completed(joined),
                    received = receiver.recv(), if queued_commands < self.config.batch_size_max && !closed => match received {
                        Some(submission) => Event::Submission(submission),
                        None => Event::Closed,
                    },
                    _ = stop.changed(), if !stopping => Event::Stop,
                    () = sleep_or_never(expiry), if can_start => Event::Expiry,
                }
            };
            match event {
                Event::Completed(joined) => self.complete_oldest(joined),
                Event::Submission(submission) => self.queued.push_back(submission),
                Event::Stop => {
                    // Refuse new submissions; those already in the channel are still received.
                    stopping = true;
                    receiver.close();
                }
                Event::Closed => closed = true,
                Event::Expiry => self.queued.push_back(Submission {
                    commands: Vec::new(),
                    caller: Caller::system(),
                }),
            }
        }
        tracing::info!("sequencer drained and stopped");
    }

    /// The next batch: queued submissions first, then whatever waits in the channel, up to
    /// `batch_size_max` commands. A submission that does not fit starts the next batch.
    fn gather(&mut self, receiver: &mut mpsc::Receiver<Submission>) -> Batch {
        let mut batch = Batch::default();
        loop {
            let next = match self.queued.pop_front() {
                Some(submission) => submission,
                None => match receiver.try_recv() {
                    Ok(submission) => submission,
                    Err(_) => break,
                },
            };
            if !batch.callers.is_empty() && batch.commands.len() + next.commands.len() > self.config.batch_size_max {
                self.queued.push_front(next);
                break;
            }
            batch.commands.extend(next.commands);
            batch.callers.push(next.caller);
        }
        batch
    }

    /// How long until the earliest pending deadline passes or a checkpoint falls due, if any.
    fn until_next_expiry(&self) -> Option<Duration> {
        let expiry = self.ledger.next_expiry().map(|deadline| {
            let wait_micros = deadline.micros().saturating_sub((self.clock)().micros()).max(0);
            Duration::from_micros(wait_micros as u64 + 1)
        });
        let checkpoint = self.audit.as_ref().and_then(AuditLog::checkpoint_due_in);
        match (expiry, checkpoint) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Loads, applies and dispatches one batch to a writer task.
    async fn start(&mut self, batch: Batch) {
        let commands = &batch.commands;
        let now = self.now();
        // Accounts are evicted only with nothing in flight: an uncommitted batch's accounts must stay
        // cached, since the database does not show its changes yet.
        let over_capacity = self.ledger.account_count() > self.config.account_cache_max;
        if self.head.is_none() || over_capacity || self.depends_on_in_flight(commands, now) {
            self.drain().await;
        }
        if over_capacity && self.in_flight.is_empty() {
            self.ledger.shrink(self.config.account_cache_max, true, |_| false);
        }
        let connection = match self.idle.pop() {
            Some(connection) => Ok(connection),
            None => connect(&self.options).await,
        };
        let prepared = match connection {
            Ok(mut connection) => self
                .prepare(&mut connection, &batch, now)
                .await
                .map(|p| (connection, p)),
            Err(error) => Err(error),
        };
        match prepared {
            Ok((connection, prepared)) => self.dispatch(batch, prepared, now, connection),
            Err(error) => {
                self.forget_cache();
                let mut retry = Vec::new();
                self.fail(batch, BatchError::classify(error), &mut retry);
                self.requeue(retry);
            }
        }
    }

    /// In a new transaction on `connection`: rebuilds the cache if needed, loads what the batch refers
    /// to, applies it, and builds its rows. Returns the head before and after the batch.
    async fn prepare(
        &mut self,
        connection: &mut PgConnection,
        batch: &Batch,
        now: Timestamp,
    ) -> anyhow::Result<Prepared> {
        let commands = &batch.commands;
        // Lock order, the same for every batch of every instance: this advisory lock first, balance
        // and transfer rows next, the head row last. Batches take the advisory lock shared, so they
        // overlap. A batch that rebuilds the cache (at start, after a failure or a lost race) takes it
        // exclusive: it waits for running batches, new ones queue behind it, and it runs alone, so it
        // cannot lose and every instance keeps making progress. BEGIN and the lock share one round trip.
        let exclusive = self.head.is_none();
        let lock = if exclusive {
            "pg_advisory_xact_lock"
        } else {
            "pg_advisory_xact_lock_shared"
        };
        let begin = format!("BEGIN; SELECT {lock}({WRITE_LOCK_KEY})");
        sqlx::raw_sql(sqlx::AssertSqlSafe(begin))
            .execute(&mut *connection)
            .await?;
        let mut audit_rows = AuditRows::default();
        let expected = match self.head {
            Some(head) => head,
            None => {
                let head = sqlx::query_as!(
                    Head,
                    "SELECT batch_seq, transfer_seq, audit_size, event_seq FROM ledger_head WHERE id = 1"
                )
                .fetch_one(&mut *connection)
                .await?;
                self.ledger = Ledger::new();
                self.key_seqs = KeySeqs::default();
                load_open_pending(connection, &mut self.ledger).await?;
                if self.config.fraud.is_some() {
                    self.activity = load_activity(connection, now).await?;
                }
                if let AuditMode::Signed {
                    signer,
                    checkpoint_interval,
                } = &self.audit_mode
                {
                    let size = head.audit_size as u64;
                    let (log, rows) =
                        AuditLog::load(connection, signer.clone(), *checkpoint_interval, size, now).await?;
                    self.audit = Some(log);
                    audit_rows = rows;
                }
                head
            }
        };
        // Mostly the ids of new transfers, which exist nowhere: one index-only probe finds the few
        // that do (replays, pending transfers to post or void), and only those are read in full.
        let missing = existing_transfers(connection, &self.ledger.missing_transfers(commands)).await?;
        if !missing.is_empty() {
            for transfer in load_transfers(connection, &missing).await? {
                self.ledger.load_transfer(transfer);
            }
        }
        let missing = self.ledger.missing_accounts(commands, now);
        if !missing.is_empty() {
            for account in load_accounts(connection, &missing).await? {
                self.ledger.load_account(account);
            }
        }
        let origins = batch.origins();
        let applied = self.apply(commands, &origins, now);
        let Effects {
            entries,
            held,
            review_rows,
            ruleset_rows,
            settlements,
        } = collect_effects(batch, &applied, now);
        let AppliedBatch { outcome, commands, .. } = applied;
        let commands = &commands[..];
        let records = commands
            .iter()
            .zip(&outcome.results)
            .zip(held)
            .map(|((command, result), held)| {
                let record = result.is_ok().then(|| record_of(&self.ledger, command)).flatten();
                (record, held)
            })
            .collect();
        if let Some(audit) = &mut self.audit {
            audit.record_batch(&mut audit_rows, &self.ledger, commands, &outcome, &entries, now);
            audit.checkpoint(&mut audit_rows, now, false)?;
        }
        let mut events = Vec::new();
        if self.config.outbox {
            events = outbox::transfer_events(&self.ledger, &outcome.changes, |transfer, expired| {
                let seqs = match expired {
                    true => &audit_rows.resolution_seqs,
                    false => &audit_rows.transfer_seqs,
                };
                seqs.get(&transfer.id).and_then(|seq| audit_rows.record_ref(*seq))
            });
        }
        let mut settlement_rows = SettlementRows::default();
        for (settlement, actor) in settlements {
            let seq = audit_rows.settlement_seqs.get(settlement.id.as_bytes()).copied();
            settlement_rows.push(settlement, &actor.principal, to_datetime(now), seq);
            let audit = seq.and_then(|seq| audit_rows.record_ref(seq));
            events.extend(outbox::settlement_events(settlement, audit, now));
        }
        if let Some((signed, at)) = audit_rows.checkpoint().filter(|_| self.config.outbox) {
            events.push(outbox::checkpoint_event(signed, *at));
        }
        self.key_seqs.load(connection, &events).await?;
        let outbox_rows = OutboxRows::build(events, expected.event_seq, &mut self.key_seqs, now);
        let mut rows = BatchRows::build(
            &self.ledger,
            &outcome.changes,
            expected.transfer_seq,
            audit_rows,
            review_rows,
        );
        rows.rulesets = ruleset_rows;
        rows.set_outbox(outbox_rows);
        rows.settlements = settlement_rows;
        let next = if outcome.changes.is_empty() && rows.audit.records() == 0 && rows.outbox.is_empty() {
            expected
        } else {
            let created = outcome.changes.transfers_created.len() as i64;
            Head {
                batch_seq: expected.batch_seq + 1,
                transfer_seq: expected.transfer_seq + created,
                audit_size: expected.audit_size + rows.audit.records() as i64,
                event_seq: expected.event_seq + rows.outbox.len() as i64,
            }
        };
        self.head = Some(next);
        Ok(Prepared {
            outcome,
            records,
            rows,
            expected,
            next,
        })
    }

    /// Applies the batch to the cache: every command admitted (reserved ids only in the service's
    /// own), and, with screening on, every new transfer held above its initiator's approval limits and
    /// screened by the active ruleset.
    fn apply<'b>(&mut self, commands: &'b [Command], origins: &[Origin<'_>], now: Timestamp) -> AppliedBatch<'b> {
        let Some(fraud) = self.config.fraud.as_ref() else {
            let mut screen = BatchScreen {
                origins,
                screener: None,
            };
            return AppliedBatch {
                outcome: self.ledger.apply_screened(commands, now, &mut screen),
                commands: Cow::Borrowed(commands),
                screenings: Screenings::default(),
            };
        };
        let ruleset = fraud.ruleset.load_full();
        self.activity.prune(now);
        let screener = Screener::new(
            &ruleset,
            &mut self.activity,
            fraud.hold_timeout_s,
            fraud.approval_window_s,
            origins,
        );
        let mut screen = BatchScreen {
            origins,
            screener: Some(screener),
        };
        let outcome = self.ledger.apply_screened(commands, now, &mut screen);
        let mut applied = Cow::Borrowed(commands);
        let mut screenings = Screenings::default();
        if let Some(screener) = screen.screener {
            for (index, transfer) in screener.replacements {
                applied.to_mut()[index] = Command::CreateTransfer(transfer);
            }
            screenings = Screenings::new(&ruleset, screener.screenings, screener.limit_holds, screener.exempted);
        }
        AppliedBatch {
            outcome,
            commands: applied,
            screenings,
        }
    }

    fn dispatch(&mut self, batch: Batch, prepared: Prepared, now: Timestamp, mut connection: PgConnection) {
        let Prepared {
            outcome,
            records,
            rows,
            expected,
            next,
        } = prepared;
        let (committed, next_previous) = oneshot::channel();
        let previous = self.last_committed.replace(next_previous);
        let changes = &outcome.changes;
        let created_pending = changes
            .transfers_created
            .iter()
            .filter(|id| self.ledger.transfer(**id).is_some_and(|t| t.state.is_some()))
            .copied()
            .collect();
        let in_flight = InFlight {
            batch,
            now,
            created_accounts: changes.accounts_created.iter().copied().collect(),
            created_pending,
            resolved_pending: changes.pending_resolved.iter().map(|(id, _)| *id).collect(),
            events: !rows.outbox.is_empty(),
            transfers: rows.committed_transfers(),
            results: outcome.results,
            records,
            task: tokio::spawn(async move {
                let result = write_and_commit(&mut connection, &rows, previous, expected, next).await;
                let _ = committed.send(result.is_ok());
                match result {
                    Ok(()) => Ok(connection),
                    Err(error) => Err(BatchError::classify(error)),
                }
            }),
        };
        self.in_flight.push_back(in_flight);
    }

    /// Whether the batch touches rows that an uncommitted batch creates, or expires a pending
    /// transfer that one created: those rows are not visible to its transaction yet.
    fn depends_on_in_flight(&self, commands: &[Command], now: Timestamp) -> bool {
        let accounts: HashSet<AccountId> = self
            .in_flight
            .iter()
            .flat_map(|b| b.created_accounts.iter().copied())
            .collect();
        let pending: HashSet<TransferId> = self
            .in_flight
            .iter()
            .flat_map(|b| b.created_pending.iter().copied())
            .collect();
        if accounts.is_empty() && pending.is_empty() {
            return false;
        }
        let touches = |command: &Command| match command {
            Command::CreateAccount(_) => false,
            Command::CloseAccount(id) => accounts.contains(id),
            Command::CreateTransfer(transfer) => {
                transfer
                    .movement()
                    .is_some_and(|m| accounts.contains(&m.debit_account_id) || accounts.contains(&m.credit_account_id))
                    || transfer.pending_id().is_some_and(|id| pending.contains(&id))
            }
        };
        commands.iter().any(touches) || self.ledger.expires_any(now, &pending)
    }

    /// Waits for every in-flight batch and answers its callers.
    async fn drain(&mut self) {
        while let Some(batch) = self.in_flight.front_mut() {
            let joined = (&mut batch.task).await;
            self.complete_oldest(joined);
        }
    }

    /// Answers the oldest in-flight batch's callers once its transaction has ended.
    fn complete_oldest(&mut self, joined: Result<Result<PgConnection, BatchError>, JoinError>) {
        let batch = self
            .in_flight
            .pop_front()
            .expect("a completion belongs to the oldest in-flight batch");
        let error = match joined {
            Ok(Ok(connection)) => {
                self.idle.push(connection);
                let mut receipts = batch
                    .results
                    .into_iter()
                    .zip(batch.records)
                    .map(|(result, (record, held))| Receipt { result, record, held });
                for caller in batch.batch.callers {
                    let own: Vec<Receipt> = receipts.by_ref().take(caller.count).collect();
                    let _ = caller.reply.send(Ok(own));
                }
                if batch.events {
                    self.config.events_committed.notify_one();
                }
                // Never waited on: a folder behind reads these transfers from the database.
                let _ = self.committed_transfers.try_send(batch.transfers);
                self.shrink_after_commit();
                return;
            }
            Ok(Err(error)) => error,
            Err(join) => BatchError::Failed(format!("the batch writer ended abnormally: {join}")),
        };
        // Every later batch was computed on this one's effects; their transactions will find the
        // head unmoved and abort. The cache holds effects that never committed: rebuild it.
        self.forget_cache();
        let mut retry = Vec::new();
        self.fail(batch.batch, error, &mut retry);
        self.requeue(retry);
    }

    fn shrink_after_commit(&mut self) {
        // Transfers that uncommitted batches created or resolved must stay: the database does not
        // show them yet. Accounts are evicted only when nothing is in flight (see `start`).
        let keep_since = self.in_flight.front().map(|b| b.now);
        let resolved: HashSet<TransferId> = self
            .in_flight
            .iter()
            .flat_map(|b| b.resolved_pending.iter().copied())
            .collect();
        self.ledger.shrink(self.config.account_cache_max, false, |t| {
            keep_since.is_some_and(|since| t.created_at >= since) || resolved.contains(&t.id)
        });
    }

    fn forget_cache(&mut self) {
        self.ledger = Ledger::new();
        self.key_seqs = KeySeqs::default();
        self.audit = None;
        self.head = None;
        self.last_committed = None;
    }

    /// Conflicts are run again (up to [`ATTEMPTS_MAX`] runs); anything else fails its callers.
    fn fail(&self, batch: Batch, error: BatchError, retry: &mut Vec<Submission>) {
        tracing::warn!(error = ?error, callers = batch.callers.len(), "batch did not commit");
        for mut submission in batch.into_submissions() {
            match &error {
                BatchError::Conflict(_) if submission.caller.attempts + 1 < ATTEMPTS_MAX => {
                    submission.caller.attempts += 1;
                    retry.push(submission);
                }
                BatchError::Conflict(reason) | BatchError::Failed(reason) => {
                    let failed = SubmitError::CommitFailed { reason: reason.clone() };
                    let _ = submission.caller.reply.send(Err(failed));
                }
            }
        }
    }

    fn requeue(&mut self, retry: Vec<Submission>) {
        for submission in retry.into_iter().rev() {
            self.queued.push_front(submission);
        }
    }

    /// The batch's time: the clock, but never earlier than the previous batch's.
    fn now(&mut self) -> Timestamp {
        let now = (self.clock)().max(self.last_now.unwrap_or(Timestamp::from_micros(i64::MIN)));
        self.last_now = Some(now);
        now
    }
}

/// A batch as applied: the results, the commands as they applied (held ones as their pending
/// form), and what screening decided.
struct AppliedBatch<'b> {
    outcome: BatchOutcome,
    commands: Cow<'b, [Command]>,
    screenings: Screenings,
}

/// Screening of one batch: every command admitted, every transfer screened when screening is on.
struct BatchScreen<'a> {
    origins: &'a [Origin<'a>],
    screener: Option<Screener<'a>>,
}

impl ledger::Screen for BatchScreen<'_> {
    fn admit(&mut self, index: usize, command: &Command) -> Result<(), ledger::ErrorCode> {
        crate::fraud::screen::admit(self.origins.get(index).copied().unwrap_or_default(), command)
    }

    fn screen(
        &mut self,
        ledger: &Ledger,
        index: usize,
        transfer: &ledger::NewTransfer,
        now: Timestamp,
    ) -> Result<Option<ledger::NewTransfer>, ledger::ErrorCode> {
        match &mut self.screener {
            Some(screener) => screener.screen(ledger, index, transfer, now),
            None => Ok(None),
        }
    }

    fn settle(&mut self, applied: bool) {
        if let Some(screener) = &mut self.screener {
            screener.settle(applied);
        }
    }
}

/// What a batch records besides its ledger rows: the audit entries in order, which commands were
/// created held, and the review, ruleset and settlement rows.
struct Effects<'b> {
    entries: Vec<Entry<'b>>,
    held: Vec<bool>,
    review_rows: ReviewRows,
    ruleset_rows: RulesetRows,
    settlements: Vec<(&'b NewSettlement, &'b Actor)>,
}

/// Walks the batch caller by caller: their notes, ruleset changes, settlements, review approvals,
/// then each of their commands with its screening, and the reviews its holds open or its decision
/// closes.
fn collect_effects<'b>(batch: &'b Batch, applied: &AppliedBatch<'_>, now: Timestamp) -> Effects<'b> {
    let (commands, results, screenings) = (&applied.commands[..], &applied.outcome.results, &applied.screenings);
    let mut effects = Effects {
        entries: Vec::with_capacity(commands.len()),
        held: vec![false; commands.len()],
        review_rows: ReviewRows::default(),
        ruleset_rows: RulesetRows::default(),
        settlements: Vec::new(),
    };
    let mut offset = 0;
    for caller in &batch.callers {
        let (actor, extras) = (&*caller.actor, &caller.extras);
        let entries = &mut effects.entries;
        entries.extend(extras.notes.iter().map(|note| Entry::Event(note.clone(), actor)));
        for change in &extras.rulesets {
            entries.push(Entry::Event(effects.ruleset_rows.push(change, actor, now), actor));
        }
        for change in &extras.settlements {
            // Only a settlement whose transfer is created now is recorded: one whose transfer exists
            // already was recorded with it.
            let accepted = change
                .command
                .is_none_or(|command| results.get(offset + command) == Some(&Ok(Applied::Created)));
            if accepted {
                entries.push(Entry::Event(change.settlement.audit_event(), actor));
                effects.settlements.push((&change.settlement, actor));
            }
        }
        for change in extras.reviews.iter().filter(|c| c.command().is_none()) {
            entries.extend(
                effects
                    .review_rows
                    .approve(change, actor, now)
                    .map(|e| Entry::Event(e, actor)),
            );
        }
        let mine = commands.iter().zip(results).enumerate().skip(offset);
        for (index, (command, result)) in mine.take(caller.count) {
            if let Some(event) = screenings.of(index).and_then(|s| screenings.record(s)) {
                entries.push(Entry::Event(event, actor));
            }
            entries.push(Entry::Command(index, actor));
            if *result != Ok(Applied::Created) {
                continue;
            }
            if let Some((reasons, explanation)) = screenings.hold(index) {
                effects.held[index] = true;
                let opened = effects.review_rows.open(command, &reasons, explanation, actor, now);
                entries.extend(opened.into_iter().map(|e| Entry::Event(e, actor)));
            }
            for change in extras.reviews.iter().filter(|c| c.command() == Some(index - offset)) {
                let decided = effects.review_rows.decide(change, command, actor, now);
                entries.extend(decided.into_iter().map(|e| Entry::Event(e, actor)));
            }
        }
        offset += caller.count;
    }
    effects.entries.extend(
        screenings
            .batch_records()
            .into_iter()
            .map(|e| Entry::Event(e, &LEDGER_ACTOR)),
    );
    effects
}

/// The verdict of a transfer applied unscreened by a named exemption.
const EXEMPT: &str = "exempt";

/// The ledger's own actor, for records of a whole batch.
static LEDGER_ACTOR: std::sync::LazyLock<Actor> = std::sync::LazyLock::new(Actor::system);

/// A batch's screenings, by command index: the fraud screenings, the approval-limit holds and the
/// exemptions.
#[derive(Default)]
struct Screenings {
    ruleset: [u8; 32],
    by_index: Vec<(usize, Screening)>,
    limit_holds: Vec<(usize, serde_json::Value)>,
    exempted: Vec<(uuid::Uuid, &'static Exemption)>,
}

impl Screenings {
    fn new(
        ruleset: &Ruleset,
        mut by_index: Vec<(usize, Screening)>,
        mut limit_holds: Vec<(usize, serde_json::Value)>,
        exempted: Vec<(uuid::Uuid, &'static Exemption)>,
    ) -> Screenings {
        by_index.sort_by_key(|(index, _)| *index);
        limit_holds.sort_by_key(|(index, _)| *index);
        Screenings {
            ruleset: ruleset.hash(),
            by_index,
            limit_holds,
            exempted,
        }
    }

    fn of(&self, index: usize) -> Option<&Screening> {
        self.by_index
            .binary_search_by_key(&index, |(i, _)| *i)
            .ok()
            .map(|at| &self.by_index[at].1)
    }

    /// Why the command at `index` is held, if it is: every reason (its initiator's approval limit, a
    /// fraud rule) and the explanation the review keeps. A limit hold's explanation carries the fraud
    /// screening under `fraud`; a fraud hold's is the screening itself.
    fn hold(&self, index: usize) -> Option<(Vec<ReviewReason>, serde_json::Value)> {
        let limit = self
            .limit_holds
            .binary_search_by_key(&index, |(i, _)| *i)
            .ok()
            .map(|at| self.limit_holds[at].1.clone());
        let fraud = self
            .of(index)
            .filter(|s| s.verdict == Verdict::Review)
            .map(|s| serde_json::to_value(s).unwrap_or_default());
        match (limit, fraud) {
            (None, None) => None,
            (Some(limit), None) => Some((vec![ReviewReason::ApprovalLimit], limit)),
            (None, Some(fraud)) => Some((vec![ReviewReason::Fraud], fraud)),
            (Some(mut limit), Some(fraud)) => {
                limit["fraud"] = fraud;
                Some((vec![ReviewReason::ApprovalLimit, ReviewReason::Fraud], limit))
            }
        }
    }

    fn quiet(screening: &Screening) -> bool {
        screening.verdict == Verdict::Allow && screening.rules.is_empty()
    }

    /// The audit event of one transfer's screening, unless it is a quiet allow (recorded per batch).
    fn record(&self, screening: &Screening) -> Option<audit::Event> {
        if Screenings::quiet(screening) {
            return None;
        }
        Some(audit::Event::FraudScreened(FraudScreened {
            ruleset: self.ruleset,
            verdict: screening.verdict.as_str().to_string(),
            transfers: vec![*screening.transfer.as_bytes()],
            explanation: serde_json::to_string(screening).unwrap_or_default(),
        }))
    }

    /// The records of the whole batch: one for every transfer allowed with no rule hit or failing, and
    /// one per exemption for the transfers it exempted from screening.
    fn batch_records(&self) -> Vec<audit::Event> {
        let mut events = Vec::new();
        let quiet: Vec<audit::record::Id> = self
            .by_index
            .iter()
            .filter(|(_, s)| Screenings::quiet(s))
            .map(|(_, s)| *s.transfer.as_bytes())
            .collect();
        if !quiet.is_empty() {
            events.push(audit::Event::FraudScreened(FraudScreened {
                ruleset: self.ruleset,
                verdict: Verdict::Allow.as_str().to_string(),
                transfers: quiet,
                explanation: String::new(),
            }));
        }
        let mut exemptions: Vec<&'static Exemption> = self.exempted.iter().map(|(_, e)| *e).collect();
        exemptions.sort_by_key(|e| e.id);
        exemptions.dedup();
        for exemption in exemptions {
            let transfers = self
                .exempted
                .iter()
                .filter(|(_, e)| *e == exemption)
                .map(|(id, _)| *id.as_bytes())
                .collect();
            events.push(audit::Event::FraudScreened(FraudScreened {
                ruleset: self.ruleset,
                verdict: EXEMPT.to_string(),
                transfers,
                explanation: serde_json::json!({ "exemption": exemption }).to_string(),
            }));
        }
        events
    }
}

fn record_of(ledger: &Ledger, command: &Command) -> Option<Record> {
    match command {
        Command::CreateAccount(account) => ledger.account(account.id).cloned().map(Record::Account),
        Command::CloseAccount(id) => ledger.account(*id).cloned().map(Record::Account),
        Command::CreateTransfer(transfer) => ledger.transfer(transfer.id).cloned().map(Record::Transfer),
    }
}

/// The writer task's part: rows, then the previous batch's outcome, the head check, and COMMIT.
async fn write_and_commit(
    connection: &mut PgConnection,
    rows: &BatchRows,
    previous: Option<oneshot::Receiver<bool>>,
    expected: Head,
    next: Head,
) -> anyhow::Result<()> {
    rows.insert_new(connection).await?;
    // The inserts above overlap with the previous batch's work. Everything that locks existing rows
    // waits until that batch has committed: waiting on it while holding a row it needs would be a
    // deadlock PostgreSQL cannot see. A batch computed on a predecessor that did not commit must not
    // commit either.
    if let Some(previous) = previous
        && previous.await != Ok(true)
    {
        return Err(StaleCache("the batch before this one did not commit".to_string()).into());
    }
    rows.update_existing(connection).await?;
    // Locked last: the check orders this batch after any other instance's commits too. The head moves
    // only from the head this batch was computed on; from any other (another writer moved it: a lost
    // race) the function raises serialization_failure and the COMMIT after it never runs. One round
    // trip for both; the values are integers, formatted here.
    let advance = format!(
        "SELECT advance_ledger_head({}, {}, {}, {}, {}, {}, {}, {}, {}); COMMIT",
        expected.batch_seq,
        expected.transfer_seq,
        expected.audit_size,
        expected.event_seq,
        next.batch_seq,
        next.transfer_seq,
        next.audit_size,
        next.event_seq,
        rows.outbox.audit_log_seq.unwrap_or(0),
    );
    sqlx::raw_sql(sqlx::AssertSqlSafe(advance))
        .execute(&mut *connection)
        .await?;
    Ok(())
}

/// A writer connection. Its lock waits are bounded: a cycle through this process's own ordering of
/// batches (invisible to PostgreSQL's deadlock detector) ends as a conflict, and the batch runs again.
async fn connect(options: &PgConnectOptions) -> anyhow::Result<PgConnection> {
    let options = options
        .clone()
        .options([("lock_timeout", LOCK_TIMEOUT), PLAN_PER_EXECUTION]);
    tokio::time::timeout(CONNECT_TIMEOUT, PgConnection::connect_with(&options))
        .await
        .map_err(|_| anyhow::anyhow!("connecting to PostgreSQL timed out after {CONNECT_TIMEOUT:?}"))?
        .map_err(Into::into)
}

async fn sleep_or_never(duration: Option<Duration>) {
    match duration {
        Some(duration) => tokio::time::sleep(duration).await,
        None => std::future::pending().await,
    }
}
