//! /v1/accounts: create, read, balances (now or as of a time), and an account's transfers.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::Response;
use chrono::DateTime;
use ledger::{AccountFlags, AccountId, AccountRequest, Command, ErrorCode, Timestamp};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use crate::api::access::Access;
use crate::api::input::{QueryParams, UnreadJson, path_id};
use crate::api::problem::{ApiCode, ApiError, Problem};
use crate::api::views::{AccountFlagsView, AccountView, BalancesView, TransferView, rfc3339};
use crate::api::{AppState, execute_one, format_cursor, page_limit, parse_cursor, read, write_response};
use crate::authz::{AccountFacts, Action, Resource};
use crate::store::Record;
use crate::store::rows::to_timestamp;

/// An account to create. The id is the idempotency key.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAccount {
    pub id: Uuid,
    /// ISO 4217 code.
    #[schema(example = "USD")]
    pub currency: String,
    /// The client's own account type, 1 to 65535.
    pub code: u16,
    #[serde(default)]
    pub flags: AccountFlagsView,
    /// Only with a balance-constraint flag: how far the constrained side may exceed the other.
    #[serde(default)]
    #[schema(example = "100.00")]
    pub overdraft_limit: Option<String>,
    /// Defaults to the calling principal, and may not name anyone else.
    #[serde(default)]
    pub owner: Option<String>,
    /// A JSON object of at most 4096 bytes.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

/// The request field a refusal of an account creation concerns.
fn account_field(code: ErrorCode) -> Option<&'static str> {
    use ErrorCode::*;
    Some(match code {
        IdMustNotBeZero | IdReserved => "id",
        InvalidCurrency | CurrencyHasNoMinorUnit | ExistsWithDifferentCurrency => "currency",
        CodeMustNotBeZero | ExistsWithDifferentCode => "code",
        InvalidOwner | ExistsWithDifferentOwner => "owner",
        FlagsAreMutuallyExclusive | ExistsWithDifferentFlags => "flags",
        InvalidAmount
        | AmountMustNotBeZero
        | AmountMustNotBeNegative
        | AmountExceedsCurrencyScale
        | AmountOverflow
        | OverdraftLimitRequiresBalanceConstraint
        | ExistsWithDifferentOverdraftLimit => "overdraft_limit",
        MetadataMustBeObject | MetadataTooLarge | ExistsWithDifferentMetadata => "metadata",
        _ => return None,
    })
}

#[utoipa::path(post, path = "/v1/accounts", tag = "accounts", request_body = CreateAccount,
    responses(
        (status = 201, description = "Created", body = AccountView),
        (status = 200, description = "The same account was already created (header Idempotent-Replay: true)", body = AccountView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Unknown principal, or refused by policy (e.g. an owner other than the caller)", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The id exists with different fields", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Outcome unknown or shutting down; retry with the same id", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(access: Access, body: UnreadJson) -> Result<Response, ApiError> {
    access.require(Action::AccountCreate).await?;
    let body: CreateAccount = body.parse().await?;
    let owner = body.owner.unwrap_or_else(|| access.principal().name.clone());
    let request = AccountRequest {
        id: body.id,
        currency: body.currency,
        code: body.code,
        owner,
        flags: AccountFlags {
            debits_must_not_exceed_credits: body.flags.debits_must_not_exceed_credits,
            credits_must_not_exceed_debits: body.flags.credits_must_not_exceed_debits,
        },
        overdraft_limit: body.overdraft_limit,
        metadata: body.metadata,
    };
    let account = request
        .parse()
        .map_err(|code| ApiError::ledger(code, account_field(code)))?;
    let facts = AccountFacts {
        id: account.id.uuid(),
        owner: account.owner.clone(),
        currency: account.currency.code().to_string(),
        code: account.code,
    };
    access
        .authorize(Action::AccountCreate, &Resource::Account(facts))
        .await?;
    let receipt = execute_one(&access, Command::CreateAccount(account), Vec::new()).await?;
    let field = receipt.result.err().and_then(account_field);
    write_response(receipt.result, field, || match receipt.record {
        Some(Record::Account(account)) => Some(AccountView::new(&account)),
        _ => None,
    })
}

/// The account named in the URL, once the caller may read it.
async fn readable_account(state: &AppState, access: &Access, id: &str) -> Result<ledger::Account, ApiError> {
    let id = path_id(id, "id")?;
    let found = match AccountId::parse(id, ErrorCode::IdMustNotBeZero) {
        Ok(id) => read(state.store.account(id).await)?,
        Err(_) => None,
    };
    let account = found.ok_or_else(|| ApiError::ledger(ErrorCode::AccountNotFound, Some("id")))?;
    access
        .authorize(Action::AccountRead, &Resource::Account(AccountFacts::of(&account)))
        .await?;
    Ok(account)
}

#[utoipa::path(get, path = "/v1/accounts/{id}", tag = "accounts",
    params(("id" = Uuid, Path, description = "Account id")),
    responses(
        (status = 200, description = "The account with its current balances", body = AccountView),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    access: Access,
    Path(id): Path<String>,
) -> Result<Json<AccountView>, ApiError> {
    Ok(Json(AccountView::new(&readable_account(&state, &access, &id).await?)))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct BalancesQuery {
    /// RFC 3339 time; the balances as they stood then. Default: now.
    pub as_of: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BalancesAt {
    pub account_id: Uuid,
    pub currency: String,
    pub as_of: String,
    pub balances: BalancesView,
}

#[utoipa::path(get, path = "/v1/accounts/{id}/balances", tag = "accounts",
    params(("id" = Uuid, Path, description = "Account id"), BalancesQuery),
    responses(
        (status = 200, description = "Balances now, or as of the given time", body = BalancesAt),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Malformed id or as_of, or as_of in the future", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn balances(
    State(state): State<AppState>,
    access: Access,
    Path(id): Path<String>,
    QueryParams(query): QueryParams<BalancesQuery>,
) -> Result<Json<BalancesAt>, ApiError> {
    let as_of = query.as_of.as_deref().map(parse_as_of).transpose()?;
    let account = readable_account(&state, &access, &id).await?;
    let now = (state.clock)();
    let (at, balances) = match as_of {
        None => (now, account.balances),
        Some(at) if at > now => {
            return Err(ApiError::new(ApiCode::InvalidAsOf, "as_of: must not be in the future"));
        }
        Some(at) => (at, read(state.store.balances_as_of(account.id, at).await)?),
    };
    Ok(Json(BalancesAt {
        account_id: account.id.uuid(),
        currency: account.currency.code().to_string(),
        as_of: rfc3339(at),
        balances: BalancesView::new(&balances, account.currency),
    }))
}

fn parse_as_of(text: &str) -> Result<Timestamp, ApiError> {
    DateTime::parse_from_rfc3339(text)
        .map(|time| to_timestamp(time.to_utc()))
        .map_err(|error| ApiError::new(ApiCode::InvalidAsOf, format!("as_of: not an RFC 3339 time ({error})")))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    /// Items per page, 1 to 1000; default 100.
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page; absent for the first page.
    pub cursor: Option<String>,
}

/// One page of transfers, oldest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct TransferPage {
    pub data: Vec<TransferView>,
    /// Pass as `cursor` to continue after this page; new transfers appear after it as they commit.
    pub next_cursor: String,
    /// Whether the page is full, so more transfers may follow right now.
    pub has_more: bool,
}

#[utoipa::path(get, path = "/v1/accounts/{id}/transfers", tag = "accounts",
    params(("id" = Uuid, Path, description = "Account id"), PageQuery),
    responses(
        (status = 200, description = "The account's transfers in commit order", body = TransferPage),
        (status = 400, description = "Invalid cursor", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such account", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid id or limit", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn transfers(
    State(state): State<AppState>,
    access: Access,
    Path(id): Path<String>,
    QueryParams(query): QueryParams<PageQuery>,
) -> Result<Json<TransferPage>, ApiError> {
    let limit = page_limit(query.limit)?;
    let after_seq = parse_cursor(CURSOR_KIND, query.cursor.as_deref())?;
    let account = readable_account(&state, &access, &id).await?;
    let page = read(state.store.account_transfers(account.id, after_seq, limit).await)?;
    let last_seq = page.last().map_or(after_seq, |(seq, _)| *seq);
    Ok(Json(TransferPage {
        has_more: page.len() == limit as usize,
        data: page.iter().map(|(_, transfer)| TransferView::new(transfer)).collect(),
        next_cursor: format_cursor(CURSOR_KIND, last_seq),
    }))
}

/// The kind letter of account history cursors (the last transfer's sequence number).
const CURSOR_KIND: &str = "t";
