//! Held transfers and the decisions on them, written in the batch transaction of the command they
//! belong to: a review with the pending transfer it holds, a decision with the transfer that posts or
//! voids it.

use audit::record::{self, Actor, Decision, Event};
use ledger::{Command, Timestamp};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::store::rows::to_datetime;

/// Why a transfer is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReviewReason {
    /// Above its initiator's approval limit.
    ApprovalLimit,
    /// A fraud rule asked for review.
    Fraud,
}

impl ReviewReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ReviewReason::ApprovalLimit => "approval_limit",
            ReviewReason::Fraud => "fraud",
        }
    }
}

/// What a submission asks to record about a review, if the command at `command` (an index into the
/// submission) takes effect now: opening one for the pending transfer it creates, or deciding one by
/// the posting or voiding it is.
#[derive(Clone, Debug)]
pub enum ReviewChange {
    Open {
        command: usize,
        reason: ReviewReason,
        explanation: serde_json::Value,
    },
    Decide {
        command: usize,
        decision: Decision,
    },
}

impl ReviewChange {
    pub fn command(&self) -> usize {
        match self {
            ReviewChange::Open { command, .. } | ReviewChange::Decide { command, .. } => *command,
        }
    }
}

/// A batch's review rows, as columns for one INSERT per table.
#[derive(Default)]
pub struct ReviewRows {
    /// The batch's time: when its reviews opened and its decisions were made.
    at: Option<Timestamp>,
    opened: Opened,
    decided: Decided,
}

#[derive(Default)]
struct Opened {
    transfer_ids: Vec<Uuid>,
    reasons: Vec<&'static str>,
    initiators: Vec<String>,
    front_ends: Vec<Option<String>>,
    explanations: Vec<serde_json::Value>,
}

#[derive(Default)]
struct Decided {
    transfer_ids: Vec<Uuid>,
    decisions: Vec<&'static str>,
    resolution_ids: Vec<Uuid>,
    decided_by: Vec<String>,
    front_ends: Vec<Option<String>>,
}

impl ReviewRows {
    /// Adds the rows of `change`, whose command `command` took effect, and returns its audit event.
    pub fn push(&mut self, change: &ReviewChange, command: &Command, actor: &Actor, now: Timestamp) -> Option<Event> {
        self.at = Some(now);
        let Command::CreateTransfer(transfer) = command else {
            return None;
        };
        let id = transfer.id.uuid();
        match change {
            ReviewChange::Open {
                reason, explanation, ..
            } => {
                let opened = &mut self.opened;
                opened.transfer_ids.push(id);
                opened.reasons.push(reason.as_str());
                opened.initiators.push(actor.principal.clone());
                opened.front_ends.push(actor.front_end.clone());
                opened.explanations.push(explanation.clone());
                Some(Event::ReviewOpened(record::ReviewOpened {
                    transfer: *id.as_bytes(),
                    reason: reason.as_str().to_string(),
                    initiator: actor.principal.clone(),
                }))
            }
            ReviewChange::Decide { decision, .. } => {
                let held = transfer.pending_id()?.uuid();
                let decided = &mut self.decided;
                decided.transfer_ids.push(held);
                decided.decisions.push(match decision {
                    Decision::Approve => "approve",
                    Decision::Reject => "reject",
                });
                decided.resolution_ids.push(id);
                decided.decided_by.push(actor.principal.clone());
                decided.front_ends.push(actor.front_end.clone());
                Some(Event::ReviewDecided(record::ReviewDecided {
                    transfer: *held.as_bytes(),
                    decision: *decision,
                    resolution: *id.as_bytes(),
                }))
            }
        }
    }

    /// Inserts the rows; run after the batch's transfers are inserted.
    pub async fn insert(&self, connection: &mut PgConnection) -> anyhow::Result<()> {
        let Some(at) = self.at.map(to_datetime) else {
            return Ok(());
        };
        let opened = &self.opened;
        if !opened.transfer_ids.is_empty() {
            sqlx::query!(
                "INSERT INTO reviews (transfer_id, reason, initiator, front_end, opened_at, explanation)
                 SELECT t.id, t.reason, t.initiator, t.front_end, $5, t.explanation
                 FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $6::jsonb[])
                     AS t (id, reason, initiator, front_end, explanation)",
                &opened.transfer_ids,
                &opened.reasons as &[&str],
                &opened.initiators,
                &opened.front_ends as &[Option<String>],
                at,
                &opened.explanations
            )
            .execute(&mut *connection)
            .await?;
        }
        let decided = &self.decided;
        if !decided.transfer_ids.is_empty() {
            sqlx::query!(
                "INSERT INTO review_decisions (transfer_id, decision, resolution_id, decided_by, front_end, decided_at)
                 SELECT t.id, t.decision, t.resolution_id, t.decided_by, t.front_end, $6
                 FROM UNNEST($1::uuid[], $2::text[], $3::uuid[], $4::text[], $5::text[])
                     AS t (id, decision, resolution_id, decided_by, front_end)",
                &decided.transfer_ids,
                &decided.decisions as &[&str],
                &decided.resolution_ids,
                &decided.decided_by,
                &decided.front_ends as &[Option<String>],
                at
            )
            .execute(&mut *connection)
            .await?;
        }
        Ok(())
    }
}

/// A review as stored, with its status derived from its decision and the held transfer's state.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredReview {
    pub transfer_id: Uuid,
    pub reason: String,
    pub initiator: String,
    pub front_end: Option<String>,
    pub opened_at: chrono::DateTime<chrono::Utc>,
    pub explanation: serde_json::Value,
    /// "open", "approved", "rejected" or "expired".
    pub status: String,
    pub decided_by: Option<String>,
    pub decided_by_front_end: Option<String>,
    pub decided_at: Option<chrono::DateTime<chrono::Utc>>,
    pub resolution_id: Option<Uuid>,
}

/// Which reviews to list.
#[derive(Clone, Debug, Default)]
pub struct ReviewFilter {
    /// Only this held transfer's review.
    pub id: Option<Uuid>,
    /// Only reviews whose held transfer came after this transfer sequence number (the page cursor).
    pub after_seq: i64,
    /// `open`, `approved`, `rejected` or `expired`; any when absent.
    pub status: Option<String>,
    /// `approval_limit` or `fraud`; any when absent.
    pub reason: Option<String>,
    pub limit: i64,
}

impl crate::store::Store {
    /// The review of the held transfer `transfer_id`, if it is one.
    pub async fn review(&self, transfer_id: Uuid) -> anyhow::Result<Option<StoredReview>> {
        let filter = ReviewFilter {
            id: Some(transfer_id),
            limit: 1,
            ..ReviewFilter::default()
        };
        Ok(self.reviews(&filter).await?.pop().map(|(_, review)| review))
    }

    /// Reviews in the order their held transfers were created, each with that transfer's sequence
    /// number (the cursor of the next page).
    pub async fn reviews(&self, filter: &ReviewFilter) -> anyhow::Result<Vec<(i64, StoredReview)>> {
        let rows = sqlx::query!(
            r#"SELECT seq AS "seq!", transfer_id AS "transfer_id!", reason AS "reason!", initiator AS "initiator!",
                      front_end, opened_at AS "opened_at!", explanation AS "explanation!", status AS "status!",
                      decided_by AS "decided_by?", decided_by_front_end AS "decided_by_front_end?",
                      decided_at AS "decided_at?", resolution_id AS "resolution_id?"
               FROM (
                 SELECT t.seq, r.transfer_id, r.reason, r.initiator, r.front_end, r.opened_at, r.explanation,
                        CASE WHEN d.decision = 'approve' THEN 'approved'
                             WHEN d.decision = 'reject' THEN 'rejected'
                             WHEN t.state = 'expired' THEN 'expired'
                             ELSE 'open' END AS status,
                        d.decided_by, d.front_end AS decided_by_front_end, d.decided_at, d.resolution_id
                 FROM reviews r
                 JOIN transfers t ON t.id = r.transfer_id
                 LEFT JOIN review_decisions d ON d.transfer_id = r.transfer_id
                 WHERE ($1::uuid IS NULL OR r.transfer_id = $1) AND t.seq > $2
                   AND ($4::text IS NULL OR r.reason = $4)
               ) AS listed
               WHERE ($3::text IS NULL OR listed.status = $3)
               ORDER BY listed.seq LIMIT $5"#,
            filter.id,
            filter.after_seq,
            filter.status,
            filter.reason,
            filter.limit
        )
        .fetch_all(self.pool())
        .await?;
        Ok(rows
            .into_iter()
            .map(|row| {
                let review = StoredReview {
                    transfer_id: row.transfer_id,
                    reason: row.reason,
                    initiator: row.initiator,
                    front_end: row.front_end,
                    opened_at: row.opened_at,
                    explanation: row.explanation,
                    status: row.status,
                    decided_by: row.decided_by,
                    decided_by_front_end: row.decided_by_front_end,
                    decided_at: row.decided_at,
                    resolution_id: row.resolution_id,
                };
                (row.seq, review)
            })
            .collect())
    }
}
