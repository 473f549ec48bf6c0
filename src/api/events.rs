//! /v1/events: the outbox as a feed, for consumers when no Kafka broker carries it (and for checking
//! what the relay publishes). Events come in commit order; a page after a cursor never skips an event
//! committed later, so a consumer walking `next_cursor` sees every event exactly once.

use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::api::access::Access;
use crate::api::input::QueryParams;
use crate::api::problem::{ApiError, Problem};
use crate::api::views::rfc3339_utc;
use crate::api::{AppState, format_cursor, page_limit, parse_cursor, read};
use crate::authz::{Action, Resource};
use crate::outbox::relay::RelayReport;
use crate::outbox::{EVENT_SOURCE, StoredEvent};

/// The kind letter of event cursors (the last event's sequence number).
const CURSOR_KIND: &str = "e";

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct EventQuery {
    /// `next_cursor` of the previous page; absent to start from the first event.
    pub after: Option<String>,
    /// Events per page, 1 to 1000; default 100.
    pub limit: Option<u32>,
}

/// One event: its CloudEvents attributes and its data.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventView {
    /// The event's place in the outbox (commit order).
    pub seq: i64,
    /// Stable: the same change always has the same id. Consumers de-duplicate by it.
    pub id: Uuid,
    #[schema(example = "ledger.transfer.posted.v1")]
    pub r#type: String,
    pub source: &'static str,
    /// What the event is about (a transfer, settlement or checkpoint size).
    pub subject: String,
    #[schema(example = "2026-11-21T10:00:00.000000Z")]
    pub time: String,
    /// The partition key: the account the event concerns, or `audit-log`.
    pub key: String,
    /// The key's events numbered from 1 with no gaps: a repeat is a duplicate, a jump is a gap.
    pub sequence: i64,
    /// The audit record of the change, and its leaf hash (hex).
    pub audit_seq: Option<i64>,
    pub record_hash: Option<String>,
    /// The payload, as its type's JSON Schema describes it.
    #[schema(value_type = Object)]
    pub data: Box<RawValue>,
}

impl EventView {
    fn new(event: StoredEvent) -> Result<EventView, ApiError> {
        let data = RawValue::from_string(event.payload).map_err(|e| ApiError::internal(e.into()))?;
        Ok(EventView {
            seq: event.seq,
            id: event.id,
            r#type: event.event_type,
            source: EVENT_SOURCE,
            subject: event.subject,
            time: rfc3339_utc(event.created_at),
            key: event.key,
            sequence: event.key_seq,
            audit_seq: event.audit_seq,
            record_hash: event.record_hash.map(hex::encode),
            data,
        })
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EventPage {
    pub data: Vec<EventView>,
    /// Pass as `after` to continue after this page (the same cursor when the page is empty).
    pub next_cursor: String,
    /// Whether the page was full, so more events may follow.
    pub has_more: bool,
}

#[utoipa::path(get, path = "/v1/events", tag = "events",
    params(EventQuery),
    responses(
        (status = 200, description = "Events after the cursor, in commit order", body = EventPage),
        (status = 400, description = "Invalid cursor", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not allowed to read events", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid limit", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(
    State(state): State<AppState>,
    access: Access,
    QueryParams(query): QueryParams<EventQuery>,
) -> Result<Json<EventPage>, ApiError> {
    access.authorize(Action::EventRead, &Resource::Events).await?;
    let limit = page_limit(query.limit)?;
    let after = parse_cursor(CURSOR_KIND, query.after.as_deref())?;
    let events = read(state.store.events(after, i64::from(limit)).await)?;
    let has_more = events.len() == limit as usize;
    let last = events.last().map_or(after, |e| e.seq);
    let data = events.into_iter().map(EventView::new).collect::<Result<_, _>>()?;
    Ok(Json(EventPage {
        data,
        next_cursor: format_cursor(CURSOR_KIND, last),
        has_more,
    }))
}

/// How far events are written and delivered.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventStatus {
    /// The last event written.
    pub written: i64,
    /// The last event the broker acknowledged, with every one before it (0 without a relay).
    pub delivered: i64,
    /// Events written but not yet acknowledged.
    pub lag: i64,
    /// This instance's relay; absent when no broker is configured.
    pub relay: Option<RelayReport>,
}

#[utoipa::path(get, path = "/v1/events/status", tag = "events",
    responses(
        (status = 200, description = "The outbox's position and the relay's state", body = EventStatus),
        (status = 403, description = "Not allowed to read events", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn status(State(state): State<AppState>, access: Access) -> Result<Json<EventStatus>, ApiError> {
    access.authorize(Action::EventRead, &Resource::Events).await?;
    let here = read(state.store.outbox_position().await)?;
    Ok(Json(EventStatus {
        written: here.written,
        delivered: here.delivered,
        lag: here.lag(),
        relay: state.relay.as_ref().map(|relay| relay.report()),
    }))
}
