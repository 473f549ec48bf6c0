//! /v1/settlements: settle a merchant account up to a cut-off (see [`crate::settlement`]), and read a
//! settlement back. Asking again for the same account and cut-off returns the first settlement with
//! `Idempotent-Replay: true` and changes nothing.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use ledger::{AccountId, Currency, ErrorCode, format_minor};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::api::access::Access;
use crate::api::input::{UnreadJson, path_id};
use crate::api::problem::{ApiCode, ApiError, Problem};
use crate::api::views::rfc3339_utc;
use crate::api::{AppState, IDEMPOTENT_REPLAY, read};
use crate::authz::{AccountFacts, Action, Resource};
use crate::settlement::{SettleError, format_net, paid_out};
use crate::store::settlements::StoredSettlement;

/// A settlement to run.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSettlement {
    /// The (merchant) account to settle.
    pub account: Uuid,
    /// Movements created up to and including this instant are settled; it must be in the past.
    #[schema(example = "2026-11-20T00:00:00Z")]
    pub cut_off: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SettlementView {
    pub id: Uuid,
    pub account: Uuid,
    pub currency: String,
    /// The previous settlement's cut-off (exclusive); null for the account's first settlement.
    pub period_start: Option<String>,
    pub cut_off: String,
    /// Credits minus debits of the included transfers (negative when the account paid out more).
    #[schema(example = "1250.00")]
    pub net: String,
    /// What was moved to the clearing account: the net when positive, else zero.
    pub amount: String,
    pub transfer_count: i64,
    /// SHA-256 (hex) over the included transfer ids (16 bytes each) in commit order.
    pub transfers_hash: String,
    /// The transfer that moved `amount` to the clearing account; null when nothing was paid out.
    pub transfer_id: Option<Uuid>,
    pub clearing_account: Uuid,
    pub requested_by: String,
    pub created_at: String,
}

impl SettlementView {
    fn new(settlement: StoredSettlement) -> Result<SettlementView, ApiError> {
        let currency = Currency::from_code(settlement.currency.trim())
            .map_err(|e| ApiError::internal(anyhow::anyhow!("stored settlement currency: {e}")))?;
        let time = rfc3339_utc;
        let net = i128::from(settlement.net);
        Ok(SettlementView {
            id: settlement.id,
            account: settlement.account_id,
            currency: currency.code().to_string(),
            period_start: settlement.period_start.map(time),
            cut_off: time(settlement.cut_off),
            net: format_net(net, currency),
            amount: format_minor(paid_out(net), currency),
            transfer_count: settlement.transfer_count,
            transfers_hash: hex::encode(&settlement.transfers_hash),
            transfer_id: settlement.transfer_id,
            clearing_account: settlement.clearing_account_id,
            requested_by: settlement.requested_by,
            created_at: time(settlement.created_at),
        })
    }
}

#[utoipa::path(post, path = "/v1/settlements", tag = "settlements", request_body = CreateSettlement,
    responses(
        (status = 201, description = "Settled now: the net moved to the clearing account, events emitted", body = SettlementView),
        (status = 200, description = "Settled before with this cut-off (Idempotent-Replay: true); nothing changed", body = SettlementView),
        (status = 403, description = "Not allowed to settle this account: not a settlement operator, or the account is not designated for settlement (policy only-designated-accounts-settle)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The account is settled past this cut-off (settlement_out_of_order), or the clearing account of its currency is not the service's own (clearing_account_invalid)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid cut-off, or the settlement transfer was refused", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Another settlement of the account is running, the outcome is unknown, or the service is shutting down; retry", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(State(state): State<AppState>, access: Access, body: UnreadJson) -> Result<Response, ApiError> {
    access.require(Action::SettlementCreate).await?;
    let request: CreateSettlement = body.parse().await?;
    let cut_off = chrono::DateTime::parse_from_rfc3339(&request.cut_off)
        .map_err(|e| ApiError::new(ApiCode::InvalidField, format!("cut_off: not an RFC 3339 time: {e}")))?
        .with_timezone(&chrono::Utc);
    let account = match AccountId::parse(request.account, ErrorCode::IdMustNotBeZero) {
        Ok(id) => read(state.store.account(id).await)?,
        Err(_) => None,
    };
    let account = account.ok_or_else(|| ApiError::ledger(ErrorCode::AccountNotFound, Some("account")))?;
    access
        .authorize(Action::SettlementCreate, &Resource::Account(AccountFacts::of(&account)))
        .await?;
    let (settlement, created) = state
        .settlements
        .settle(access.actor(), &account, cut_off)
        .await
        .map_err(|error| match error {
            SettleError::CutOffNotPast(_) => ApiError::new(ApiCode::InvalidField, error.to_string()),
            SettleError::OutOfOrder(_) => ApiError::new(ApiCode::SettlementOutOfOrder, error.to_string()),
            SettleError::Refused(code) => ApiError::ledger(code, None),
            SettleError::ClearingAccountInvalid { .. } => {
                ApiError::new(ApiCode::ClearingAccountInvalid, error.to_string())
            }
            SettleError::Busy(_) => ApiError::new(ApiCode::Unavailable, error.to_string()),
            SettleError::Submit(error) => error.into(),
            SettleError::Store(error) => ApiError::internal(error),
        })?;
    let body = Json(SettlementView::new(settlement)?);
    Ok(match created {
        true => (StatusCode::CREATED, body).into_response(),
        false => (
            StatusCode::OK,
            [(IDEMPOTENT_REPLAY, HeaderValue::from_static("true"))],
            body,
        )
            .into_response(),
    })
}

#[utoipa::path(get, path = "/v1/settlements/{id}", tag = "settlements",
    params(("id" = Uuid, Path, description = "Settlement id")),
    responses(
        (status = 200, description = "The settlement", body = SettlementView),
        (status = 403, description = "Not allowed to read the account's settlements", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such settlement", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    access: Access,
    Path(id): Path<String>,
) -> Result<Json<SettlementView>, ApiError> {
    let id = path_id(&id, "id")?;
    let not_found = || ApiError::new(ApiCode::SettlementNotFound, format!("no settlement {id}"));
    let settlement = read(state.store.settlement(id).await)?.ok_or_else(not_found)?;
    let account_id = AccountId::parse(settlement.account_id, ErrorCode::IdMustNotBeZero).map_err(|_| not_found())?;
    let account = read(state.store.account(account_id).await)?.ok_or_else(not_found)?;
    access
        .authorize(Action::SettlementRead, &Resource::Account(AccountFacts::of(&account)))
        .await?;
    Ok(Json(SettlementView::new(settlement)?))
}
