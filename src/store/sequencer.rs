//! The single writer: group commit of ledger batches into PostgreSQL.
//!
//! Callers hand submissions (one or more commands that must stay together, such as a linked chain)
//! to a bounded channel and wait. The sequencer task takes the first waiting submission, drains more
//! without waiting until `batch_size_max` commands, applies them with the ledger state machine
//! against its cached working set, writes every resulting row in ONE transaction, commits, and only
//! then answers each caller with its own results. While one batch commits, the next one gathers in
//! the channel, so batches grow with load: that is the group commit.
//!
//! If anything in a batch fails, every caller of that batch gets [`SubmitError::CommitFailed`] and
//! the cache is dropped, to be rebuilt from the database by the next batch. Because a lost commit
//! acknowledgement cannot tell "committed" from "not committed", that error says "outcome unknown":
//! retrying with the same ids is safe, since a replay of a committed command returns `exists`.

use std::time::Duration;

use ledger::{Command, CommandResult, Ledger, Timestamp};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, PgConnection};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::clock::Clock;
use crate::store::{load_accounts, load_open_pending, load_transfers, write_changes};

/// How long (re)connecting to PostgreSQL may take before a batch fails.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Clone, Debug)]
pub struct SequencerConfig {
    /// Most commands in one batch (one database transaction).
    pub batch_size_max: usize,
    /// Most submissions waiting for the sequencer; beyond it, submitters wait (back-pressure).
    pub queue_depth_max: usize,
    /// Accounts kept in memory between batches (those with pending amounts always stay).
    pub account_cache_max: usize,
}

impl Default for SequencerConfig {
    fn default() -> SequencerConfig {
        SequencerConfig {
            batch_size_max: 8190,
            queue_depth_max: 4096,
            account_cache_max: 1_000_000,
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

struct Submission {
    commands: Vec<Command>,
    reply: oneshot::Sender<Result<Vec<CommandResult>, SubmitError>>,
}

/// The way into the ledger: cheap to clone, one per caller.
#[derive(Clone)]
pub struct LedgerHandle {
    sender: mpsc::Sender<Submission>,
    batch_size_max: usize,
}

impl LedgerHandle {
    /// Submits commands that are applied together, in order, in one batch; returns one result per
    /// command once the batch is durably committed. An empty submission only runs due expirations.
    pub async fn submit(&self, commands: Vec<Command>) -> Result<Vec<CommandResult>, SubmitError> {
        if commands.len() > self.batch_size_max {
            return Err(SubmitError::TooLarge {
                count: commands.len(),
                max: self.batch_size_max,
            });
        }
        let (reply, answer) = oneshot::channel();
        self.sender
            .send(Submission { commands, reply })
            .await
            .map_err(|_| SubmitError::ShuttingDown)?;
        answer.await.map_err(|_| SubmitError::ShuttingDown)?
    }
}

/// Stops the sequencer: it refuses new submissions, commits the ones already queued, and exits.
pub struct Shutdown {
    signal: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Shutdown {
    pub async fn drain(self) {
        let _ = self.signal.send(true);
        let _ = self.task.await;
    }
}

/// Starts the sequencer task on its own connection to the database.
pub fn spawn(options: PgConnectOptions, config: SequencerConfig, clock: Clock) -> (LedgerHandle, Shutdown) {
    let (sender, receiver) = mpsc::channel(config.queue_depth_max);
    let (signal, stop) = watch::channel(false);
    let handle = LedgerHandle {
        sender,
        batch_size_max: config.batch_size_max,
    };
    let writer = Writer {
        options,
        connection: None,
        ledger: Ledger::new(),
        batch_seq: None,
        last_now: None,
        clock,
        config,
    };
    let task = tokio::spawn(writer.run(receiver, stop));
    (handle, Shutdown { signal, task })
}

struct Writer {
    options: PgConnectOptions,
    connection: Option<PgConnection>,
    ledger: Ledger,
    /// The head's batch_seq after this writer's last commit; `None` when the cache must be rebuilt.
    batch_seq: Option<i64>,
    last_now: Option<Timestamp>,
    clock: Clock,
    config: SequencerConfig,
}

impl Writer {
    async fn run(mut self, mut receiver: mpsc::Receiver<Submission>, mut stop: watch::Receiver<bool>) {
        let mut carried: Option<Submission> = None;
        loop {
            let first = match carried.take() {
                Some(submission) => submission,
                None => tokio::select! {
                    received = receiver.recv() => match received {
                        Some(submission) => submission,
                        None => break,
                    },
                    _ = stop.changed() => {
                        // Refuse new submissions but commit those already queued.
                        receiver.close();
                        continue;
                    }
                    () = self.until_next_expiry() => {
                        let (reply, _) = oneshot::channel();
                        Submission { commands: Vec::new(), reply }
                    }
                },
            };
            let mut batch = vec![first];
            let mut size = batch[0].commands.len();
            while size < self.config.batch_size_max {
                match receiver.try_recv() {
                    Ok(next) if size + next.commands.len() <= self.config.batch_size_max => {
                        size += next.commands.len();
                        batch.push(next);
                    }
                    Ok(next) => {
                        carried = Some(next);
                        break;
                    }
                    Err(_) => break,
                }
            }
            self.commit_and_answer(batch).await;
        }
        tracing::info!("sequencer drained and stopped");
    }

    /// Resolves when the earliest pending deadline passes; never while nothing is pending.
    async fn until_next_expiry(&self) {
        match self.ledger.next_expiry() {
            Some(deadline) => {
                let wait_micros = deadline.micros().saturating_sub((self.clock)().micros()).max(0);
                tokio::time::sleep(Duration::from_micros(wait_micros as u64 + 1)).await;
            }
            None => std::future::pending().await,
        }
    }

    async fn commit_and_answer(&mut self, batch: Vec<Submission>) {
        let commands: Vec<Command> = batch.iter().flat_map(|s| s.commands.iter().cloned()).collect();
        match self.commit(&commands).await {
            Ok(results) => {
                let mut results = results.into_iter();
                for submission in batch {
                    let own: Vec<CommandResult> = results.by_ref().take(submission.commands.len()).collect();
                    let _ = submission.reply.send(Ok(own));
                }
            }
            Err(error) => {
                tracing::error!(error = %format!("{error:#}"), commands = commands.len(), "batch commit failed");
                // Nothing of this batch may be trusted: drop the cache and the connection.
                self.ledger = Ledger::new();
                self.batch_seq = None;
                self.connection = None;
                let reason = format!("{error:#}");
                for submission in batch {
                    let _ = submission
                        .reply
                        .send(Err(SubmitError::CommitFailed { reason: reason.clone() }));
                }
            }
        }
    }

    /// Runs a batch on the writer's connection; a failed batch drops the connection with it.
    async fn commit(&mut self, commands: &[Command]) -> anyhow::Result<Vec<CommandResult>> {
        let mut connection = match self.connection.take() {
            Some(connection) => connection,
            None => {
                let connect = PgConnection::connect_with(&self.options);
                tokio::time::timeout(CONNECT_TIMEOUT, connect)
                    .await
                    .map_err(|_| anyhow::anyhow!("connecting to PostgreSQL timed out after {CONNECT_TIMEOUT:?}"))??
            }
        };
        let results = self.commit_on(&mut connection, commands).await?;
        self.connection = Some(connection);
        Ok(results)
    }

    /// One batch, one transaction. Nothing is answered before the commit returns.
    async fn commit_on(
        &mut self,
        connection: &mut PgConnection,
        commands: &[Command],
    ) -> anyhow::Result<Vec<CommandResult>> {
        let mut transaction = connection.begin().await?;
        // Every batch locks the head row first: a second instance on the same database waits here
        // instead of interleaving its batch with ours, and a moved batch_seq tells us it wrote.
        let head = sqlx::query!("SELECT batch_seq, transfer_seq FROM ledger_head WHERE id = 1 FOR UPDATE")
            .fetch_one(&mut *transaction)
            .await?;
        if self.batch_seq != Some(head.batch_seq) {
            self.ledger = Ledger::new();
            load_open_pending(&mut transaction, &mut self.ledger).await?;
        }
        let now = self.now();
        let missing = self.ledger.missing_transfers(commands);
        if !missing.is_empty() {
            for transfer in load_transfers(&mut transaction, &missing).await? {
                self.ledger.load_transfer(transfer);
            }
        }
        let missing = self.ledger.missing_accounts(commands, now);
        if !missing.is_empty() {
            for account in load_accounts(&mut transaction, &missing).await? {
                self.ledger.load_account(account);
            }
        }
        let outcome = self.ledger.apply(commands, now);
        let mut batch_seq = head.batch_seq;
        if !outcome.changes.is_empty() {
            write_changes(&mut transaction, &self.ledger, &outcome.changes, head.transfer_seq, now).await?;
            batch_seq += 1;
            let transfer_seq = head.transfer_seq + outcome.changes.transfers_created.len() as i64;
            sqlx::query!(
                "UPDATE ledger_head SET batch_seq = $1, transfer_seq = $2 WHERE id = 1",
                batch_seq,
                transfer_seq
            )
            .execute(&mut *transaction)
            .await?;
        }
        transaction.commit().await?;
        self.batch_seq = Some(batch_seq);
        self.ledger.shrink(self.config.account_cache_max);
        Ok(outcome.results)
    }

    /// The batch's time: the clock, but never earlier than the previous batch's.
    fn now(&mut self) -> Timestamp {
        let now = (self.clock)().max(self.last_now.unwrap_or(Timestamp::from_micros(i64::MIN)));
        self.last_now = Some(now);
        now
    }
}
