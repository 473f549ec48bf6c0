//! /v1/reviews: transfers held for a second principal's decision, and the decisions. A review's id is
//! its held transfer's id. Approving posts the held transfer in full; rejecting voids it. Each
//! decision is a transfer of its own whose id is derived from the review's, so repeating a decision
//! is idempotent, and the two decisions exclude each other in the ledger.

use audit::record::Decision;
use axum::Json;
use axum::extract::{Path, State};
use axum::response::Response;
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
use crate::api::{AppState, execute_one, format_cursor, page_limit, parse_cursor, read, write_response};
use crate::authz::{Action, Resource, ReviewFacts};
use crate::store::ReviewChange;
use crate::store::reviews::{ReviewFilter, StoredReview};

/// Namespace of the ids of decision transfers (UUIDv5 of the review id and the decision).
const DECISION_NAMESPACE: Uuid = Uuid::from_u128(0x6f1e_5c1a_0d2b_4e7f_9a3c_52b8_e1d4_7c90);

/// A held transfer, why it is held, and what became of it.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReviewView {
    /// The held transfer's id.
    pub id: Uuid,
    /// `approval_limit` (above the initiator's limit) or `fraud`.
    pub reason: String,
    /// `open`, `approved`, `rejected` or `expired`.
    pub status: String,
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
        ReviewView {
            id: review.transfer_id,
            reason: review.reason,
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

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ReviewQuery {
    /// `open` (the default), `approved`, `rejected`, `expired` or `all`.
    pub status: Option<String>,
    /// `approval_limit` or `fraud`; both when absent.
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
        let facts = ReviewFacts {
            transfer: stored_facts(&state, &transfer, true).await?,
            initiator: review.initiator.clone(),
            reason: review.reason.clone(),
        };
        // A list shows what the caller may read; the others are left out, not refused.
        if access.decide(Action::ReviewRead, &Resource::Review(facts)).allowed {
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

/// The review named in the URL with its held transfer, once the caller may take `action` on it.
async fn decidable(
    state: &AppState,
    access: &Access,
    id: &str,
    action: Action,
) -> Result<(StoredReview, ledger::Transfer), ApiError> {
    let id = path_id(id, "id")?;
    let not_found = || ApiError::new(ApiCode::ReviewNotFound, format!("id: no review {id}"));
    let review = read(state.store.review(id).await)?.ok_or_else(not_found)?;
    let transfer_id = TransferId::parse(id, ErrorCode::IdMustNotBeZero).map_err(|_| not_found())?;
    let transfer = read(state.store.transfer(transfer_id).await)?.ok_or_else(not_found)?;
    let facts = ReviewFacts {
        transfer: stored_facts(state, &transfer, true).await?,
        initiator: review.initiator.clone(),
        reason: review.reason.clone(),
    };
    access.authorize(action, &Resource::Review(facts)).await?;
    Ok((review, transfer))
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
    let (review, transfer) = decidable(&state, &access, &id, Action::ReviewRead).await?;
    Ok(Json(ReviewView::new(review, &transfer)))
}

/// Decides a review: posts (approve) or voids (reject) its held transfer, with the decision recorded
/// in the same commit.
async fn decide(state: &AppState, access: &Access, id: &str, decision: Decision) -> Result<Response, ApiError> {
    let action = match decision {
        Decision::Approve => Action::ReviewApprove,
        Decision::Reject => Action::ReviewReject,
    };
    let (review, _) = decidable(state, access, id, action).await?;
    let (flags, tag) = match decision {
        Decision::Approve => (
            TransferFlags {
                post_pending_transfer: true,
                ..TransferFlags::default()
            },
            "approve",
        ),
        Decision::Reject => (
            TransferFlags {
                void_pending_transfer: true,
                ..TransferFlags::default()
            },
            "reject",
        ),
    };
    let mut name = review.transfer_id.as_bytes().to_vec();
    name.extend_from_slice(tag.as_bytes());
    let request = TransferRequest {
        id: Uuid::new_v5(&DECISION_NAMESPACE, &name),
        pending_id: Some(review.transfer_id),
        flags,
        ..TransferRequest::default()
    };
    let command = request.parse().map_err(|code| ApiError::ledger(code, None))?;
    let change = ReviewChange::Decide { command: 0, decision };
    let receipt = execute_one(access, Command::CreateTransfer(command), vec![change]).await?;
    let held = TransferId::parse(review.transfer_id, ErrorCode::IdMustNotBeZero)
        .map_err(|code| ApiError::ledger(code, None))?;
    let result = receipt.result;
    let decided = match result {
        Ok(_) => {
            let review = read(state.store.review(review.transfer_id).await)?;
            let transfer = read(state.store.transfer(held).await)?;
            review.zip(transfer)
        }
        Err(_) => None,
    };
    write_response(result, None, || {
        decided.map(|(review, transfer)| ReviewView::new(review, &transfer))
    })
}

#[utoipa::path(post, path = "/v1/reviews/{id}/approve", tag = "reviews",
    params(("id" = Uuid, Path, description = "The held transfer's id")),
    responses(
        (status = 201, description = "Approved: the held transfer is posted in full", body = ReviewView),
        (status = 200, description = "Already approved (header Idempotent-Replay: true)", body = ReviewView),
        (status = 403, description = "Refused by policy (approver role and limit, maker-checker, business hours, MFA)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such review", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Already rejected or expired", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Outcome unknown or shutting down; retry", body = Problem, content_type = "application/problem+json"),
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
        (status = 503, description = "Outcome unknown or shutting down; retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn reject(
    State(state): State<AppState>,
    access: Access,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    decide(&state, &access, &id, Decision::Reject).await
}
