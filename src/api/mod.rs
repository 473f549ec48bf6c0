//! The REST API, served over mutual TLS: routes grouped by resource, assembled in [`router`] so the
//! whole surface is visible in one place.
//!
//! Every request gets a request id (echoed in `x-request-id` and in every problem). Handlers name
//! their caller with the [`access::Access`] extractor, which resolves the client certificate's
//! principal (or the user a trusted front-end's token names) and decides each action with the
//! authorization policies; every write goes through the sequencer, every read through the store's
//! read pool.

pub mod access;
mod accounts;
mod audit;
mod events;
pub mod input;
pub mod openapi;
pub mod problem;
mod reviews;
mod rulesets;
mod settlements;
mod transfers;
pub mod views;

use std::sync::Arc;

use ::audit::note::NoteVerifier;
use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{HeaderName, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use ledger::{Applied, CommandResult};
use uuid::Uuid;

use crate::authz::Authorizer;
use crate::clock::Clock;
use crate::store::{LedgerHandle, Store};
use access::{Access, Authorized};
use problem::{ApiCode, ApiError};

/// Largest request body of a single-item endpoint.
pub const REQUEST_BYTES_MAX: usize = 64 * 1024;
/// Largest request body of the batch endpoint: 8190 transfers with room for metadata.
pub const BATCH_REQUEST_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Largest request body of a ruleset proposal: a rules and a features file of at most
/// [`crate::fraud::RULESET_FILE_BYTES_MAX`] each, escaped as JSON strings.
pub const RULESET_REQUEST_BYTES_MAX: usize = 1024 * 1024;
/// Most transfers in one batch request: one sequencer batch.
pub const BATCH_LENGTH_MAX: usize = 8190;
/// Most items on one page of a listing, and the default.
pub const PAGE_LIMIT_MAX: u32 = 1000;
pub const PAGE_LIMIT_DEFAULT: u32 = 100;

/// A page's `limit` parameter: 1 to [`PAGE_LIMIT_MAX`], [`PAGE_LIMIT_DEFAULT`] when absent.
fn page_limit(limit: Option<u32>) -> Result<u32, ApiError> {
    let limit = limit.unwrap_or(PAGE_LIMIT_DEFAULT);
    if (1..=PAGE_LIMIT_MAX).contains(&limit) {
        Ok(limit)
    } else {
        Err(ApiError::new(
            ApiCode::InvalidField,
            format!("limit: must be 1 to {PAGE_LIMIT_MAX}"),
        ))
    }
}

/// Page cursors are opaque to clients; inside, a kind letter and the sequence number of the last
/// item seen.
fn format_cursor(kind: &str, seq: i64) -> String {
    format!("{kind}{seq}")
}

/// The sequence number in a cursor of `kind`, or 0 without one.
fn parse_cursor(kind: &str, text: Option<&str>) -> Result<i64, ApiError> {
    let Some(text) = text else {
        return Ok(0);
    };
    text.strip_prefix(kind)
        .and_then(|digits| digits.parse::<i64>().ok())
        .filter(|seq| *seq >= 0)
        .ok_or_else(|| ApiError::new(ApiCode::InvalidCursor, "cursor: not a cursor this API returned"))
}

const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
pub(crate) const IDEMPOTENT_REPLAY: HeaderName = HeaderName::from_static("idempotent-replay");

#[derive(Clone)]
pub struct AppState {
    pub ledger: LedgerHandle,
    pub store: Store,
    pub authz: Arc<Authorizer>,
    pub clock: Clock,
    /// How long a transfer held for approval waits before it expires (and is voided).
    pub hold_timeout_s: u32,
    /// The audit log's public key, served to auditors.
    pub audit_key: NoteVerifier,
    /// The fraud ruleset in effect, swapped whole on activation and reload.
    pub rules: Arc<crate::rules_in_effect::RulesInEffect>,
    /// The outbox relay's state, when a broker is configured.
    pub relay: Option<Arc<crate::outbox::relay::RelayStatus>>,
    /// Settlement runs.
    pub settlements: crate::settlement::Settlements,
}

pub fn router(state: AppState) -> Router {
    let single = DefaultBodyLimit::max(REQUEST_BYTES_MAX);
    Router::new()
        .route("/v1/accounts", post(accounts::create).layer(single))
        .route("/v1/accounts/{id}", get(accounts::get))
        .route("/v1/accounts/{id}/balances", get(accounts::balances))
        .route("/v1/accounts/{id}/transfers", get(accounts::transfers))
        .route("/v1/transfers", post(transfers::create).layer(single))
        .route(
            "/v1/transfers/batch",
            post(transfers::batch).layer(DefaultBodyLimit::max(BATCH_REQUEST_BYTES_MAX)),
        )
        .route("/v1/transfers/{id}", get(transfers::get))
        .route("/v1/transfers/{id}/post", post(transfers::post_pending).layer(single))
        .route("/v1/transfers/{id}/void", post(transfers::void_pending).layer(single))
        .route("/v1/transfers/{id}/proof", get(audit::transfer_proof))
        .route(
            "/v1/fraud/rulesets",
            get(rulesets::list)
                .post(rulesets::propose)
                .layer(DefaultBodyLimit::max(RULESET_REQUEST_BYTES_MAX)),
        )
        .route("/v1/fraud/rulesets/{id}/activate", post(rulesets::activate))
        .route("/v1/fraud/backtest", post(rulesets::backtest).layer(single))
        .route("/v1/reviews", get(reviews::list))
        .route("/v1/reviews/{id}", get(reviews::get))
        .route("/v1/reviews/{id}/approve", post(reviews::approve))
        .route("/v1/reviews/{id}/reject", post(reviews::reject))
        .route("/v1/settlements", post(settlements::create).layer(single))
        .route("/v1/settlements/{id}", get(settlements::get))
        .route("/v1/events", get(events::list))
        .route("/v1/events/status", get(events::status))
        .route("/v1/audit/checkpoint", get(audit::checkpoint))
        .route("/v1/audit/public-key", get(audit::public_key))
        .route("/v1/audit/records", get(audit::records))
        .route("/v1/audit/proof/inclusion", get(audit::inclusion))
        .route("/v1/audit/proof/consistency", get(audit::consistency))
        .route("/v1/openapi.json", get(openapi::serve))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
        .layer(middleware::from_fn(request_id))
}

async fn not_found() -> ApiError {
    ApiError::new(ApiCode::NotFound, "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(ApiCode::MethodNotAllowed, "the endpoint does not accept this method")
}

/// Gives each request an id, and renders any [`ApiError`] the handler returned as a problem that
/// carries it. A successful answer from a handler that made no allowed authorization decision is
/// replaced by an internal error: every handler must decide before it answers.
async fn request_id(mut request: Request, next: Next) -> Response {
    let id = Uuid::new_v4().to_string();
    let authorized = Authorized::default();
    request.extensions_mut().insert(authorized.clone());
    let mut response = next.run(request).await;
    if response.status().is_success() && !authorized.is_set() {
        response =
            ApiError::internal(anyhow::anyhow!("a handler answered without an authorization decision")).into_response();
    }
    if let Some(error) = response.extensions_mut().remove::<ApiError>() {
        response = problem::render(&error.into_problem(&id));
    }
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert(REQUEST_ID, value);
    }
    response
}

/// The answer to a write of one item: 201 when it took effect now; 200 with `Idempotent-Replay: true`
/// when the same request had already taken effect; the ledger's refusal otherwise.
fn write_response<T: serde::Serialize>(
    result: CommandResult,
    field: Option<&str>,
    body: impl FnOnce() -> Option<T>,
) -> Result<Response, ApiError> {
    let applied = result.map_err(|code| ApiError::ledger(code, field))?;
    let body = body().ok_or_else(|| ApiError::internal(anyhow::anyhow!("a successful command returned no record")))?;
    let json = axum::Json(body);
    Ok(match applied {
        Applied::Created => (StatusCode::CREATED, json).into_response(),
        Applied::Exists => (
            StatusCode::OK,
            [(IDEMPOTENT_REPLAY, HeaderValue::from_static("true"))],
            json,
        )
            .into_response(),
    })
}

/// The one command a single-item request submitted: its receipt.
async fn execute_one(
    access: &Access,
    command: ledger::Command,
    reviews: Vec<crate::store::ReviewChange>,
) -> Result<crate::store::Receipt, ApiError> {
    let mut receipts = access.ledger().execute_with_reviews(vec![command], reviews).await?;
    receipts
        .pop()
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("a submission of one command returned no receipt")))
}

/// Reads through the store; a database error is an internal error.
fn read<T>(result: anyhow::Result<T>) -> Result<T, ApiError> {
    result.map_err(ApiError::internal)
}
