//! /v1/reviews: transfers held for a second principal's decision, and the decisions. A review's id is
//! its held transfer's id. A transfer is held for one or more reasons (its initiator's approval limit,
//! a fraud rule); approving approves the first reason still open that the caller may decide, and the
//! approval of the last one posts the held transfer in full. Rejecting, by a decider of any of its
//! reasons, voids it. Each decision is a transfer of its own whose id is derived from the review's in
//! the reserved namespace, so repeating a decision is idempotent, no client can claim the id first,
//! and the two decisions exclude each other in the ledger. Decisions on one review are serialized
//! across every instance.

use std::time::Duration;

use audit::record::Decision;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ledger::{Command, ErrorCode, TransferFlags, TransferId, TransferRequest};
use serde::Deserialize;
use serde::Serialize;
use utoipa::IntoParams;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::api::access::Access;
use crate::api::input::{QueryParams, path_id};
use crate::api::problem::{ApiCode, ApiError, Problem};
use crate::api::transfers::stored_facts;
use crate::api::views::{TransferView, rfc3339_utc};
use crate::api::{AppState, IDEMPOTENT_REPLAY, format_cursor, page_limit, parse_cursor, read, write_response};
use crate::authz::{Action, Resource, ReviewFacts, TransferFacts};
use crate::store::reviews::{ReviewFilter, ReviewReason, StoredReview, decision_transfer_id};
use crate::store::{LockSpace, ReviewChange};

/// How long a decision waits for another decision on the same review to finish.
const DECISION_LOCK_WAIT: Duration = Duration::from_secs(10);

/// One reason of a held transfer, approved.
#[derive(Debug, Serialize, ToSchema)]
pub struct ApprovalView {
    pub reason: String,
    pub approved_by: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub front_end: Option<String>,
    pub approved_at: String,
}

/// A held transfer, why it is held, and what became of it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewView {
    /// The held transfer's id.
    pub id: Uuid,
    /// The first reason it is held for: `approval_limit` (above the initiator's limit) or `fraud`.
    pub reason: String,
    /// Every reason it is held for; each needs its own decider's approval before it moves.
    pub reasons: Vec<String>,
    /// `open`, `approved`, `rejected` or `expired`.
    pub status: String,
    /// The reasons still to approve (while open).
    pub awaiting: Vec<String>,
    /// The reasons approved so far, oldest first.
    pub approvals: Vec<ApprovalView>,
    pub initiator: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initiator_front_end: Option<String>,
    pub opened_at: String,
    #[schema(value_type = Object)]
    pub explanation: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_by: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_by_front_end: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub decided_at: Option<String>,
    /// The transfer that posted (approved) or voided (rejected) the held one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resolution_id: Option<Uuid>,
    pub transfer: TransferView,
}

impl ReviewView {
    fn new(review: StoredReview, transfer: &ledger::Transfer) -> ReviewView {
        let time = rfc3339_utc;
        let awaiting = match review.status.as_str() {
            "open" => review.awaiting().iter().map(|r| r.as_str().to_string()).collect(),
            _ => Vec::new(),
        };
        ReviewView {
            id: review.transfer_id,
            reason: review.reasons.first().cloned().unwrap_or_default(),
            awaiting,
            approvals: review
                .approvals
                .iter()
                .map(|a| ApprovalView {
                    reason: a.reason.clone(),
                    approved_by: a.approved_by.clone(),
                    front_end: a.front_end.clone(),
                    approved_at: time(a.approved_at),
                })
                .collect(),
            reasons: review.reasons,
            status: review.status,
            initiator: review.initiator,
            initiator_front_end: review.front_end,
            opened_at: time(review.opened_at),
            explanation: review.explanation,
            decided_by: review.decided_by,
            decided_by_front_end: review.decided_by_front_end,
            decided_at: review.decided_at.map(time),
            resolution_id: review.resolution_id,
            transfer: TransferView::new(transfer),
        }
    }
}

/// The review as each of `reasons` in turn, as policies see it: with the approvers of its other
/// reasons.
fn review_resources(review: &StoredReview, transfer: &TransferFacts, reasons: &[String]) -> Vec<Resource> {
    reasons
        .iter()
        .map(|reason| {
            Resource::Review(ReviewFacts {
                transfer: transfer.clone(),
                initiator: review.initiator.clone(),
                reason: reason.clone(),
                reasons: review.reasons.clone(),
                approvers: review
                    .approvals
                    .iter()
                    .filter(|a| &a.reason != reason)
                    .map(|a| a.approved_by.clone())
                    .collect(),
            })
        })
        .collect()
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReviewQuery {
    /// `open` (the default), `approved`, `rejected`, `expired` or `all`.
    pub status: Option<String>,
    /// Only transfers held for this reason, `approval_limit` or `fraud` (among others); any when absent.
    pub reason: Option<String>,
    /// Items per page, 1 to 1000; default 100.
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page; absent for the first page.
    pub cursor: Option<String>,
}

/// One page of reviews, oldest held transfer first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewPage {
    /// The reviews on this page the caller may read.
    pub data: Vec<ReviewView>,
    /// Pass as `cursor` to continue after this page.
    pub next_cursor: String,
    /// Whether the page was full, so more reviews may follow.
    pub has_more: bool,
}

/// The kind letter of review list cursors (the last held transfer's sequence number).
const CURSOR_KIND: &str = "r";

#[utoipa::path(get, path = "/v1/reviews", tag = "reviews",
    params(ReviewQuery),
    responses(
        (status = 200, description = "The reviews the caller may read, oldest first", body = ReviewPage),
        (status = 400, description = "Invalid cursor", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid status, reason or limit", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    access: Access,
    QueryParams(query): QueryParams<ReviewQuery>,
) -> Result<Json<ReviewPage>, ApiError> {
    let invalid = |message: String| ApiError::new(ApiCode::InvalidField, message);
    let status = match query.status.as_deref().unwrap_or("open") {
        "all" => None,
        status @ ("open" | "approved" | "rejected" | "expired") => Some(status.to_string()),
        other => {
            return Err(invalid(format!(
                "status: `{other}` is not open, approved, rejected, expired or all"
            )));
        }
    };
    let reason = match query.reason.as_deref() {
        None => None,
        Some(reason @ ("approval_limit" | "fraud")) => Some(reason.to_string()),
        Some(other) => return Err(invalid(format!("reason: `{other}` is not approval_limit or fraud"))),
    };
    let limit = page_limit(query.limit)?;
    let after_seq = parse_cursor(CURSOR_KIND, query.cursor.as_deref())?;
    let filter = ReviewFilter {
        id: None,
        after_seq,
        status,
        reason,
        limit: i64::from(limit),
    };
    let page = read(state.store.reviews(&filter).await)?;
    let has_more = page.len() == limit as usize;
    let last_seq = page.last().map_or(after_seq, |(seq, _)| *seq);
    let mut readable = Vec::new();
    for (_, review) in page {
        let Ok(id) = TransferId::parse(review.transfer_id, ErrorCode::IdMustNotBeZero) else {
            continue;
        };
        let Some(transfer) = read(state.store.transfer(id).await)? else {
            continue;
        };
        let facts = stored_facts(&state, &transfer, true).await?;
        // A list shows what the caller may read, as any reason it is held for; the others are left
        // out, not refused.
        let readable_as_any = review_resources(&review, &facts, &review.reasons)
            .iter()
            .any(|resource| access.decide(Action::ReviewRead, resource).allowed);
        if readable_as_any {
            readable.push(ReviewView::new(review, &transfer));
        }
    }
    access.allowed_all();
    Ok(Json(ReviewPage {
        data: readable,
        next_cursor: format_cursor(CURSOR_KIND, last_seq),
        has_more,
    }))
}

/// The review `id` with its held transfer, once the caller may take `action` on it as one of the
/// reasons `reasons` picks (all of the review's when it picks none): the reason it was allowed as.
async fn decidable(
    state: &AppState,
    access: &Access,
    id: Uuid,
    action: Action,
    reasons: &(dyn Fn(&StoredReview) -> Vec<String> + Sync),
) -> Result<(StoredReview, ledger::Transfer, String), ApiError> {
    let not_found = || ApiError::new(ApiCode::ReviewNotFound, format!("id: no review {id}"));
    let review = read(state.store.review(id).await)?.ok_or_else(not_found)?;
    let transfer_id = TransferId::parse(id, ErrorCode::IdMustNotBeZero).map_err(|_| not_found())?;
    let transfer = read(state.store.transfer(transfer_id).await)?.ok_or_else(not_found)?;
    let facts = stored_facts(state, &transfer, true).await?;
    let mut candidates = reasons(&review);
    if candidates.is_empty() {
        candidates = review.reasons.clone();
    }
    let allowed = access
        .authorize_any(action, &review_resources(&review, &facts, &candidates))
        .await?;
    let reason = candidates.swap_remove(allowed);
    Ok((review, transfer, reason))
}

#[utoipa::path(get, path = "/v1/reviews/{id}", tag = "reviews",
    params(("id" = Uuid, Path, description = "The held transfer's id")),
    responses(
        (status = 200, description = "The review", body = ReviewView),
        (status = 403, description = "Refused by policy", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such review", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    access: Access,
    Path(id): Path<String>,
) -> Result<Json<ReviewView>, ApiError> {
    let id = path_id(&id, "id")?;
    let (review, transfer, _) = decidable(&state, &access, id, Action::ReviewRead, &|_| Vec::new()).await?;
    Ok(Json(ReviewView::new(review, &transfer)))
}

/// The reasons `principal` may approve: those it approved already (a repeat answers as the first
/// time), then those still open; all of them once none is, so a decided review answers as its
/// decision.
fn approvable(review: &StoredReview, principal: &str) -> Vec<String> {
    let own = review
        .approvals
        .iter()
        .filter(|a| a.approved_by == principal)
        .map(|a| a.reason.clone());
    own.chain(review.awaiting().iter().map(|r| r.as_str().to_string()))
        .collect()
}

/// Decides a review: approves the caller's reason (posting the held transfer once every reason is
/// approved) or rejects it (voiding the held transfer), with the decision recorded in the same commit.
async fn decide(state: &AppState, access: &Access, id: &str, decision: Decision) -> Result<Response, ApiError> {
    let id = path_id(id, "id")?;
    let action = match decision {
        Decision::Approve => Action::ReviewApprove,
        Decision::Reject => Action::ReviewReject,
    };
    let principal = access.principal().name.clone();
    let approving = move |review: &StoredReview| approvable(review, &principal);
    let candidates: &(dyn Fn(&StoredReview) -> Vec<String> + Sync) = match decision {
        Decision::Approve => &approving,
        Decision::Reject => &|_| Vec::new(),
    };
    // Allowed before anything costly; then decided again under the review's lock, on what it is now.
    decidable(state, access, id, action, candidates).await?;
    let _deciding = state
        .store
        .lock(LockSpace::Review, id, DECISION_LOCK_WAIT)
        .await
        .map_err(|error| {
            ApiError::new(
                ApiCode::Unavailable,
                format!("another decision on this review is running ({error:#}); retry"),
            )
        })?;
    let (review, transfer, reason) = decidable(state, access, id, action, candidates).await?;
    let open = review.status == "open";
    let given_before = review
        .approvals
        .iter()
        .any(|a| a.reason == reason && a.approved_by == access.principal().name);
    if decision == Decision::Approve && open && given_before {
        return replayed(review, &transfer);
    }
    let awaiting = review.awaiting();
    if decision == Decision::Approve && open && awaiting.len() > 1 {
        return approve_in_part(state, access, &review, &reason).await;
    }
    let last = awaiting
        .first()
        .copied()
        .filter(|_| decision == Decision::Approve && open);
    let command = decision_command(id, decision)?;
    let change = ReviewChange::Decide {
        command: 0,
        decision,
        last,
    };
    let mut receipts = access
        .ledger()
        .deriving()
        .execute_with_reviews(vec![command], vec![change])
        .await?;
    let receipt = receipts
        .pop()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("a decision returned no receipt")))?;
    let held = TransferId::parse(id, ErrorCode::IdMustNotBeZero).map_err(|code| ApiError::ledger(code, None))?;
    let decided = match receipt.result {
        Ok(_) => {
            let review = read(state.store.review(id).await)?;
            let transfer = read(state.store.transfer(held).await)?;
            review.zip(transfer)
        }
        Err(_) => None,
    };
    write_response(receipt.result, None, || {
        decided.map(|(review, transfer)| ReviewView::new(review, &transfer))
    })
}

/// The transfer that carries out `decision` on the held transfer `id`: posting it in full, or voiding
/// it.
fn decision_command(id: Uuid, decision: Decision) -> Result<Command, ApiError> {
    let flags = match decision {
        Decision::Approve => TransferFlags {
            post_pending_transfer: true,
            ..TransferFlags::default()
        },
        Decision::Reject => TransferFlags {
            void_pending_transfer: true,
            ..TransferFlags::default()
        },
    };
    let request = TransferRequest {
        id: decision_transfer_id(id, decision),
        pending_id: Some(id),
        flags,
        ..TransferRequest::default()
    };
    let command = request.parse().map_err(|code| ApiError::ledger(code, None))?;
    Ok(Command::CreateTransfer(command))
}

/// Approves `reason` of a review held for more: recorded, and the transfer stays held (202).
async fn approve_in_part(
    state: &AppState,
    access: &Access,
    review: &StoredReview,
    reason: &str,
) -> Result<Response, ApiError> {
    let reason = ReviewReason::parse(reason)
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("a review names an unknown reason {reason:?}")))?;
    let change = ReviewChange::Approve {
        transfer: review.transfer_id,
        reason,
    };
    access.ledger().execute_with_reviews(Vec::new(), vec![change]).await?;
    let id = review.transfer_id;
    let held = TransferId::parse(id, ErrorCode::IdMustNotBeZero).map_err(|code| ApiError::ledger(code, None))?;
    let review = read(state.store.review(id).await)?;
    let transfer = read(state.store.transfer(held).await)?;
    let (review, transfer) = review
        .zip(transfer)
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("an approved review of {id} cannot be read")))?;
    Ok((StatusCode::ACCEPTED, Json(ReviewView::new(review, &transfer))).into_response())
}

/// The answer to an approval its caller already gave: the review as it stands.
fn replayed(review: StoredReview, transfer: &ledger::Transfer) -> Result<Response, ApiError> {
    let body = Json(ReviewView::new(review, transfer));
    Ok((
        StatusCode::OK,
        [(IDEMPOTENT_REPLAY, HeaderValue::from_static("true"))],
        body,
    )
        .into_response())
}

#[utoipa::path(post, path = "/v1/reviews/{id}/approve", tag = "reviews",
    params(("id" = Uuid, Path, description = "The held transfer's id")),
    responses(
        (status = 201, description = "Approved: the last reason it was held for is approved, and the held transfer is posted in full", body = ReviewView),
        (status = 202, description = "Approved in part: the caller's reason is approved, and the transfer stays held until every reason it is held for is (see awaiting)", body = ReviewView),
        (status = 200, description = "Already approved, or this caller's approval already given (header Idempotent-Replay: true)", body = ReviewView),
        (status = 403, description = "Refused by policy (a decider of an open reason, within its limit, not the maker, not the decider of another reason, business hours, MFA)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such review", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Already rejected or expired", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Outcome unknown, another decision on the review running, or shutting down; retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn approve(
    State(state): State<AppState>,
    access: Access,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    decide(&state, &access, &id, Decision::Approve).await
}

#[utoipa::path(post, path = "/v1/reviews/{id}/reject", tag = "reviews",
    params(("id" = Uuid, Path, description = "The held transfer's id")),
    responses(
        (status = 201, description = "Rejected: the held transfer is voided", body = ReviewView),
        (status = 200, description = "Already rejected (header Idempotent-Replay: true)", body = ReviewView),
        (status = 403, description = "Refused by policy", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such review", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Already approved or expired", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Outcome unknown, another decision on the review running, or shutting down; retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn reject(
    State(state): State<AppState>,
    access: Access,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    decide(&state, &access, &id, Decision::Reject).await
}
