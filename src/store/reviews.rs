//! Held transfers and the decisions on them, written in the batch transaction of the command they
//! belong to: a review (with every reason its transfer is held for) with the pending transfer it
//! holds, an approval of one reason on its own, and a decision with the transfer that posts or voids
//! it. A held transfer moves by approval only once every reason is approved, each by its own decider;
//! one rejection voids it.

use audit::record::{self, Actor, Decision, Event};
use ledger::{Command, Timestamp};
use sqlx::PgConnection;
use uuid::Uuid;

use crate::store::rows::to_datetime;

/// Why a transfer is held.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReviewReason {
    /// Above its initiator's approval limit (per transfer, or in sum within the approval window).
    ApprovalLimit,
    /// A fraud rule asked for review.
    Fraud,
}

impl ReviewReason {
    pub const ALL: [ReviewReason; 2] = [ReviewReason::ApprovalLimit, ReviewReason::Fraud];

    pub fn as_str(self) -> &'static str {
        match self {
            ReviewReason::ApprovalLimit => "approval_limit",
            ReviewReason::Fraud => "fraud",
        }
    }

    pub fn parse(text: &str) -> Option<ReviewReason> {
        ReviewReason::ALL.into_iter().find(|reason| reason.as_str() == text)
    }
}

/// The id of the transfer that carries out `decision` on the held transfer `held` (posting it in full,
/// or voiding it): derived from both in the reserved namespace, so a repeated decision is the same
/// transfer and no client can create it first.
pub fn decision_transfer_id(held: Uuid, decision: Decision) -> Uuid {
    let mut name = b"review-decision/".to_vec();
    name.extend_from_slice(held.as_bytes());
    name.extend_from_slice(match decision {
        Decision::Approve => b"approve",
        Decision::Reject => b"reject",
    });
    ledger::reserved_id(&name)
}

/// What a submission asks to record about a review.
#[derive(Clone, Debug)]
pub enum ReviewChange {
    /// One reason of the held transfer `transfer` approved; it stays held for the others.
    Approve { transfer: Uuid, reason: ReviewReason },
    /// The decision that moves the held transfer, if the posting or voiding at `command` (an index
    /// into the submission) takes effect now. An approval approves `last`, the one reason still open,
    /// with it.
    Decide {
        command: usize,
        decision: Decision,
        last: Option<ReviewReason>,
    },
}

impl ReviewChange {
    /// The index of the command the change is tied to, if it is tied to one.
    pub fn command(&self) -> Option<usize> {
        match self {
            ReviewChange::Approve { .. } => None,
            ReviewChange::Decide { command, .. } => Some(*command),
        }
    }
}

/// A batch's review rows, as columns for one INSERT per table.
#[derive(Default)]
pub struct ReviewRows {
    /// The batch's time: when its reviews opened and its approvals and decisions were made.
    at: Option<Timestamp>,
    opened: Opened,
    approved: Approved,
    decided: Decided,
}

#[derive(Default)]
struct Opened {
    transfer_ids: Vec<Uuid>,
    /// Each review's reasons, comma-separated.
    reasons: Vec<String>,
    initiators: Vec<String>,
    front_ends: Vec<Option<String>>,
    explanations: Vec<serde_json::Value>,
}

#[derive(Default)]
struct Approved {
    transfer_ids: Vec<Uuid>,
    reasons: Vec<&'static str>,
    approved_by: Vec<String>,
    front_ends: Vec<Option<String>>,
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
    /// Opens the review of the held transfer `command` created, for every one of `reasons`; returns a
    /// `review.opened` event per reason.
    pub fn open(
        &mut self,
        command: &Command,
        reasons: &[ReviewReason],
        explanation: serde_json::Value,
        actor: &Actor,
        now: Timestamp,
    ) -> Vec<Event> {
        debug_assert!(!reasons.is_empty());
        let Command::CreateTransfer(transfer) = command else {
            return Vec::new();
        };
        self.at = Some(now);
        let id = transfer.id.uuid();
        let opened = &mut self.opened;
        opened.transfer_ids.push(id);
        let names: Vec<&str> = reasons.iter().map(|r| r.as_str()).collect();
        opened.reasons.push(names.join(","));
        opened.initiators.push(actor.principal.clone());
        opened.front_ends.push(actor.front_end.clone());
        opened.explanations.push(explanation);
        reasons
            .iter()
            .map(|reason| {
                Event::ReviewOpened(record::ReviewOpened {
                    transfer: *id.as_bytes(),
                    reason: reason.as_str().to_string(),
                    initiator: actor.principal.clone(),
                })
            })
            .collect()
    }

    /// Approves one reason of a held transfer (a [`ReviewChange::Approve`]); returns its event.
    pub fn approve(&mut self, change: &ReviewChange, actor: &Actor, now: Timestamp) -> Option<Event> {
        let ReviewChange::Approve { transfer, reason } = change else {
            return None;
        };
        Some(self.push_approval(*transfer, *reason, actor, now))
    }

    fn push_approval(&mut self, transfer: Uuid, reason: ReviewReason, actor: &Actor, now: Timestamp) -> Event {
        self.at = Some(now);
        let approved = &mut self.approved;
        approved.transfer_ids.push(transfer);
        approved.reasons.push(reason.as_str());
        approved.approved_by.push(actor.principal.clone());
        approved.front_ends.push(actor.front_end.clone());
        Event::ReviewApproved(record::ReviewApproved {
            transfer: *transfer.as_bytes(),
            reason: reason.as_str().to_string(),
        })
    }

    /// Records the decision `change` that `command` (its posting or voiding, which took effect) carries
    /// out; returns its events: the last reason's approval, if any, then the decision.
    pub fn decide(&mut self, change: &ReviewChange, command: &Command, actor: &Actor, now: Timestamp) -> Vec<Event> {
        let (ReviewChange::Decide { decision, last, .. }, Command::CreateTransfer(transfer)) = (change, command) else {
            return Vec::new();
        };
        let Some(held) = transfer.pending_id().map(|id| id.uuid()) else {
            return Vec::new();
        };
        let mut events: Vec<Event> = last
            .iter()
            .map(|reason| self.push_approval(held, *reason, actor, now))
            .collect();
        let id = transfer.id.uuid();
        let decided = &mut self.decided;
        decided.transfer_ids.push(held);
        decided.decisions.push(match decision {
            Decision::Approve => "approve",
            Decision::Reject => "reject",
        });
        decided.resolution_ids.push(id);
        decided.decided_by.push(actor.principal.clone());
        decided.front_ends.push(actor.front_end.clone());
        self.at = Some(now);
        events.push(Event::ReviewDecided(record::ReviewDecided {
            transfer: *held.as_bytes(),
            decision: *decision,
            resolution: *id.as_bytes(),
        }));
        events
    }

    /// Inserts the rows; run after the batch's transfers are inserted. Approvals go before decisions:
    /// the database accepts an approving decision only once every reason is approved.
    pub async fn insert(&self, connection: &mut PgConnection) -> anyhow::Result<()> {
        let Some(at) = self.at.map(to_datetime) else {
            return Ok(());
        };
        let opened = &self.opened;
        if !opened.transfer_ids.is_empty() {
            sqlx::query!(
                "INSERT INTO reviews (transfer_id, reasons, initiator, front_end, opened_at, explanation)
                 SELECT t.id, string_to_array(t.reasons, ','), t.initiator, t.front_end, $5, t.explanation
                 FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[], $6::jsonb[])
                     AS t (id, reasons, initiator, front_end, explanation)",
                &opened.transfer_ids,
                &opened.reasons,
                &opened.initiators,
                &opened.front_ends as &[Option<String>],
                at,
                &opened.explanations
            )
            .execute(&mut *connection)
            .await?;
        }
        let approved = &self.approved;
        if !approved.transfer_ids.is_empty() {
            sqlx::query!(
                "INSERT INTO review_approvals (transfer_id, reason, approved_by, front_end, approved_at)
                 SELECT t.id, t.reason, t.approved_by, t.front_end, $5
                 FROM UNNEST($1::uuid[], $2::text[], $3::text[], $4::text[]) AS t (id, reason, approved_by, front_end)",
                &approved.transfer_ids,
                &approved.reasons as &[&str],
                &approved.approved_by,
                &approved.front_ends as &[Option<String>],
                at
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

/// One reason of a held transfer, approved.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredApproval {
    pub reason: String,
    pub approved_by: String,
    pub front_end: Option<String>,
    pub approved_at: chrono::DateTime<chrono::Utc>,
}

/// A review as stored, with its status derived from its decision and the held transfer's state.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredReview {
    pub transfer_id: Uuid,
    /// Every reason the transfer is held for, the approval limit first.
    pub reasons: Vec<String>,
    pub initiator: String,
    pub front_end: Option<String>,
    pub opened_at: chrono::DateTime<chrono::Utc>,
    pub explanation: serde_json::Value,
    /// "open", "approved", "rejected" or "expired".
    pub status: String,
    /// The reasons approved so far, oldest first.
    pub approvals: Vec<StoredApproval>,
    pub decided_by: Option<String>,
    pub decided_by_front_end: Option<String>,
    pub decided_at: Option<chrono::DateTime<chrono::Utc>>,
    pub resolution_id: Option<Uuid>,
}

impl StoredReview {
    /// The reasons not approved yet, in the order the review lists them.
    pub fn awaiting(&self) -> Vec<ReviewReason> {
        self.reasons
            .iter()
            .filter(|reason| !self.approvals.iter().any(|a| &a.reason == *reason))
            .filter_map(|reason| ReviewReason::parse(reason))
            .collect()
    }
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
    /// Only reviews holding their transfer for this reason (`approval_limit` or `fraud`, among
    /// others); any when absent.
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

    /// Which of `ids` are held transfers (have a review), whatever became of them.
    pub async fn reviewed(&self, ids: &[Uuid]) -> anyhow::Result<std::collections::HashSet<Uuid>> {
        if ids.is_empty() {
            return Ok(Default::default());
        }
        Ok(sqlx::query_scalar!(
            "SELECT transfer_id FROM reviews WHERE transfer_id = ANY($1::uuid[])",
            ids
        )
        .fetch_all(self.pool())
        .await?
        .into_iter()
        .collect())
    }

    /// Reviews in the order their held transfers were created, each with that transfer's sequence
    /// number (the cursor of the next page).
    pub async fn reviews(&self, filter: &ReviewFilter) -> anyhow::Result<Vec<(i64, StoredReview)>> {
        let rows = sqlx::query!(
            r#"SELECT seq AS "seq!", transfer_id AS "transfer_id!", reasons AS "reasons!", initiator AS "initiator!",
                      front_end, opened_at AS "opened_at!", explanation AS "explanation!", status AS "status!",
                      approval_reasons AS "approval_reasons!", approved_by AS "approved_by!",
                      approval_front_ends AS "approval_front_ends!: Vec<Option<String>>",
                      approved_at AS "approved_at!",
                      decided_by AS "decided_by?", decided_by_front_end AS "decided_by_front_end?",
                      decided_at AS "decided_at?", resolution_id AS "resolution_id?"
               FROM (
                 SELECT t.seq, r.transfer_id, r.reasons, r.initiator, r.front_end, r.opened_at, r.explanation,
                        CASE WHEN d.decision = 'approve' THEN 'approved'
                             WHEN d.decision = 'reject' THEN 'rejected'
                             WHEN t.state = 'expired' THEN 'expired'
                             ELSE 'open' END AS status,
                        coalesce(a.reasons, '{}') AS approval_reasons, coalesce(a.approved_by, '{}') AS approved_by,
                        coalesce(a.front_ends, '{}') AS approval_front_ends, coalesce(a.approved_at, '{}') AS approved_at,
                        d.decided_by, d.front_end AS decided_by_front_end, d.decided_at, d.resolution_id
                 FROM reviews r
                 JOIN transfers t ON t.id = r.transfer_id
                 LEFT JOIN review_decisions d ON d.transfer_id = r.transfer_id
                 LEFT JOIN LATERAL (
                   SELECT array_agg(x.reason ORDER BY x.approved_at, x.reason) AS reasons,
                          array_agg(x.approved_by ORDER BY x.approved_at, x.reason) AS approved_by,
                          array_agg(x.front_end ORDER BY x.approved_at, x.reason) AS front_ends,
                          array_agg(x.approved_at ORDER BY x.approved_at, x.reason) AS approved_at
                   FROM review_approvals x WHERE x.transfer_id = r.transfer_id
                 ) a ON true
                 WHERE ($1::uuid IS NULL OR r.transfer_id = $1) AND t.seq > $2
                   AND ($4::text IS NULL OR $4 = ANY (r.reasons))
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
                let approvals = row
                    .approval_reasons
                    .into_iter()
                    .zip(row.approved_by)
                    .zip(row.approval_front_ends)
                    .zip(row.approved_at)
                    .map(|(((reason, approved_by), front_end), approved_at)| StoredApproval {
                        reason,
                        approved_by,
                        front_end,
                        approved_at,
                    })
                    .collect();
                let review = StoredReview {
                    transfer_id: row.transfer_id,
                    reasons: row.reasons,
                    initiator: row.initiator,
                    front_end: row.front_end,
                    opened_at: row.opened_at,
                    explanation: row.explanation,
                    status: row.status,
                    approvals,
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
