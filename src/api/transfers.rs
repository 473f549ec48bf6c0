//! /v1/transfers: create one or a batch, read one, and post or void a pending transfer.

use axum::Json;
use axum::extract::{Path, State};
use axum::response::Response;
use ledger::{Applied, Command, ErrorCode, TransferFlags, TransferId, TransferRequest};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use std::collections::{HashMap, HashSet};

use axum::http::{HeaderValue, StatusCode, header};
use ledger::{Movement, NewTransfer, TransferCommand, TransferKind};

use crate::api::access::{self, Access};
use crate::api::input::{UnreadJson, path_id};
use crate::api::problem::{ApiCode, ApiError, ItemError, Problem};
use crate::api::views::TransferView;
use crate::api::{AppState, BATCH_LENGTH_MAX, execute_one, read, write_response};
use crate::authz::{AccountFacts, Action, Resource, TransferFacts};
use crate::store::{Receipt, Record};

/// A transfer to create. The id is the idempotency key.
#[derive(Clone, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTransfer {
    pub id: Uuid,
    pub debit_account_id: Uuid,
    pub credit_account_id: Uuid,
    /// A positive decimal string with at most the currency's decimals.
    #[schema(example = "12.34")]
    pub amount: String,
    #[schema(example = "USD")]
    pub currency: String,
    /// The client's own transfer type, 1 to 65535.
    pub code: u16,
    /// Makes this a pending (two-phase) transfer that reserves the amount until posted, voided or
    /// expired.
    #[serde(default)]
    pub pending: Option<PendingOptions>,
    /// In a batch: this transfer and the next one succeed or fail together.
    #[serde(default)]
    pub linked: bool,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

#[derive(Clone, Copy, Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PendingOptions {
    /// Seconds until the pending transfer expires (and is voided), at least 1.
    pub timeout_s: u32,
}

impl CreateTransfer {
    fn into_request(self) -> TransferRequest {
        TransferRequest {
            id: self.id,
            debit_account_id: Some(self.debit_account_id),
            credit_account_id: Some(self.credit_account_id),
            amount: Some(self.amount),
            currency: Some(self.currency),
            code: self.code,
            flags: TransferFlags {
                linked: self.linked,
                pending: self.pending.is_some(),
                ..TransferFlags::default()
            },
            pending_id: None,
            timeout_s: self.pending.map(|p| p.timeout_s),
            metadata: self.metadata,
        }
    }
}

/// The request field a refusal of a transfer concerns.
fn transfer_field(code: ErrorCode) -> Option<&'static str> {
    use ErrorCode::*;
    Some(match code {
        IdMustNotBeZero | IdReserved => "id",
        InvalidAmount
        | AmountMustNotBeZero
        | AmountMustNotBeNegative
        | AmountExceedsCurrencyScale
        | AmountOverflow
        | AmountRequired
        | ExistsWithDifferentAmount
        | ExceedsPendingTransferAmount
        | PendingTransferHasDifferentAmount => "amount",
        InvalidCurrency
        | CurrencyHasNoMinorUnit
        | CurrencyRequired
        | ExistsWithDifferentCurrency
        | CurrencyMismatch => "currency",
        CodeMustNotBeZero | ExistsWithDifferentCode => "code",
        MetadataMustBeObject | MetadataTooLarge | ExistsWithDifferentMetadata => "metadata",
        DebitAccountIdMustNotBeZero | DebitAccountNotFound | ExistsWithDifferentDebitAccountId | ExceedsCredits => {
            "debit_account_id"
        }
        CreditAccountIdMustNotBeZero | CreditAccountNotFound | ExistsWithDifferentCreditAccountId | ExceedsDebits => {
            "credit_account_id"
        }
        AccountsMustBeDifferent => "credit_account_id",
        TimeoutRequired | OverflowsTimeout | ExistsWithDifferentTimeout => "pending.timeout_s",
        ExistsWithDifferentFlags => "pending",
        LinkedEventChainOpen => "linked",
        PendingIdMustNotBeZero
        | PendingIdMustBeDifferent
        | ExistsWithDifferentPendingId
        | PendingTransferNotFound
        | PendingTransferNotPending
        | PendingTransferAlreadyPosted
        | PendingTransferAlreadyVoided
        | PendingTransferExpired => "pending_id",
        _ => return None,
    })
}

fn transfer_view(receipt: Receipt) -> Option<TransferView> {
    match receipt.record {
        Some(Record::Transfer(transfer)) => Some(TransferView::new(&transfer)),
        _ => None,
    }
}

/// Submits one transfer request, once allowed, and answers with its record or its refusal. A transfer
/// above the caller's approval limits, or one a fraud rule sends to review, is created held (pending)
/// with a review, and answered with 202; so is a replay of one (with `Idempotent-Replay: true`).
async fn create_one(state: &AppState, access: &Access, request: TransferRequest) -> Result<Response, ApiError> {
    let transfer = request
        .parse()
        .map_err(|code| ApiError::ledger(code, transfer_field(code)))?;
    let resource = match transfer.pending_id() {
        None => {
            let accounts = movement_accounts(state, std::slice::from_ref(&transfer)).await?;
            movement_facts(&transfer, &accounts).map_err(|code| ApiError::ledger(code, transfer_field(code)))?
        }
        Some(pending_id) => pending_facts(state, pending_id).await?,
    };
    let action = match &transfer.command {
        TransferCommand::Single(_) | TransferCommand::Pending { .. } => Action::TransferCreate,
        TransferCommand::PostPending { .. } => Action::TransferPost,
        TransferCommand::VoidPending { .. } => Action::TransferVoid,
    };
    access.authorize(action, &Resource::Transfer(resource)).await?;
    let id = transfer.id.uuid();
    let receipt = execute_one(access, Command::CreateTransfer(transfer), Vec::new()).await?;
    let held = receipt.held
        || replayed_held(state, std::slice::from_ref(&receipt))
            .await?
            .contains(&id);
    let result = receipt.result;
    let mut response = write_response(result, result.err().and_then(transfer_field), || transfer_view(receipt))?;
    if held {
        *response.status_mut() = StatusCode::ACCEPTED;
        if let Ok(location) = HeaderValue::from_str(&format!("/v1/reviews/{id}")) {
            response.headers_mut().insert(header::LOCATION, location);
        }
    }
    Ok(response)
}

/// Of the transfers `receipts` found existing, the ones that were created held for review: a replay of
/// a held transfer says it is held, as its first answer did.
async fn replayed_held(state: &AppState, receipts: &[Receipt]) -> Result<HashSet<Uuid>, ApiError> {
    let replayed: Vec<Uuid> = receipts
        .iter()
        .filter(|receipt| receipt.result == Ok(Applied::Exists))
        .filter_map(|receipt| match &receipt.record {
            Some(Record::Transfer(transfer)) if transfer.kind == TransferKind::Pending => Some(transfer.id.uuid()),
            _ => None,
        })
        .collect();
    read(state.store.reviewed(&replayed).await)
}

/// The accounts the transfers move money between, as far as they exist.
async fn movement_accounts(
    state: &AppState,
    transfers: &[NewTransfer],
) -> Result<HashMap<Uuid, AccountFacts>, ApiError> {
    let ids: Vec<Uuid> = transfers
        .iter()
        .filter_map(NewTransfer::movement)
        .flat_map(|m: &Movement| [m.debit_account_id.uuid(), m.credit_account_id.uuid()])
        .collect();
    read(state.store.account_facts(&ids).await)
}

/// What policies see of a transfer to create; a missing account is the ledger's refusal. It is not
/// held: whether a new transfer is held for review is decided as it applies, with the sums of
/// everything applied before it.
fn movement_facts(transfer: &NewTransfer, accounts: &HashMap<Uuid, AccountFacts>) -> Result<TransferFacts, ErrorCode> {
    let movement = transfer.movement().ok_or(ErrorCode::PendingTransferNotFound)?;
    let account = |id: ledger::AccountId, missing| accounts.get(&id.uuid()).cloned().ok_or(missing);
    Ok(TransferFacts {
        id: transfer.id.uuid(),
        debit_account: account(movement.debit_account_id, ErrorCode::DebitAccountNotFound)?,
        credit_account: account(movement.credit_account_id, ErrorCode::CreditAccountNotFound)?,
        amount_minor: movement.amount.minor(),
        currency: movement.currency.code().to_string(),
        held: false,
    })
}

/// Whether a stored transfer is held for review (a pending transfer with a review).
async fn is_held(state: &AppState, transfer: &ledger::Transfer) -> Result<bool, ApiError> {
    Ok(transfer.state.is_some() && read(state.store.review(transfer.id.uuid()).await)?.is_some())
}

/// What policies see of a stored transfer: its accounts, amount, and whether it is `held` for review.
pub(crate) async fn stored_facts(
    state: &AppState,
    transfer: &ledger::Transfer,
    held: bool,
) -> Result<TransferFacts, ApiError> {
    let (debit, credit) = (transfer.debit_account_id.uuid(), transfer.credit_account_id.uuid());
    let accounts = read(state.store.account_facts(&[debit, credit]).await)?;
    let account = |id: Uuid| {
        accounts.get(&id).cloned().ok_or_else(|| {
            ApiError::internal(anyhow::anyhow!(
                "transfer {} names a missing account {id}",
                transfer.id.uuid()
            ))
        })
    };
    Ok(TransferFacts {
        id: transfer.id.uuid(),
        debit_account: account(debit)?,
        credit_account: account(credit)?,
        amount_minor: transfer.amount.minor(),
        currency: transfer.currency.code().to_string(),
        held,
    })
}

/// The facts of the pending transfer a post or void names.
async fn pending_facts(state: &AppState, pending_id: TransferId) -> Result<TransferFacts, ApiError> {
    let pending = read(state.store.transfer(pending_id).await)?
        .ok_or_else(|| ApiError::ledger(ErrorCode::PendingTransferNotFound, Some("id")))?;
    stored_facts(state, &pending, is_held(state, &pending).await?).await
}

#[utoipa::path(post, path = "/v1/transfers", tag = "transfers", request_body = CreateTransfer,
    responses(
        (status = 201, description = "Created and durably committed", body = TransferView),
        (status = 202, description = "Created held for review: pending until its review (header Location) is decided; also the answer to a replay of a held transfer, with header Idempotent-Replay: true", body = TransferView),
        (status = 200, description = "The same transfer was already created (header Idempotent-Replay: true)", body = TransferView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The id exists with different fields (code exists_with_different_<field>)", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field, or refused by a ledger rule", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Outcome unknown or shutting down; retry with the same id", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create(State(state): State<AppState>, access: Access, body: UnreadJson) -> Result<Response, ApiError> {
    access.require(Action::TransferCreate).await?;
    let body: CreateTransfer = body.parse().await?;
    create_one(&state, &access, body.into_request()).await
}

/// Posts a pending transfer, fully or in part, as a transfer of its own.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostPending {
    /// The id of the posting transfer (the idempotency key), not of the pending one.
    pub id: Uuid,
    /// At most the pending amount; the full pending amount when absent.
    #[serde(default)]
    #[schema(example = "5.00")]
    pub amount: Option<String>,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

/// Voids a pending transfer, as a transfer of its own.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VoidPending {
    /// The id of the voiding transfer (the idempotency key), not of the pending one.
    pub id: Uuid,
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Value>,
}

/// A post or void of the pending transfer named in the URL, as a transfer request of its own.
fn resolution(
    pending_id: &str,
    flags: TransferFlags,
    id: Uuid,
    amount: Option<String>,
    metadata: Option<serde_json::Value>,
) -> Result<TransferRequest, ApiError> {
    Ok(TransferRequest {
        id,
        pending_id: Some(path_id(pending_id, "id")?),
        flags,
        amount,
        metadata,
        ..TransferRequest::default()
    })
}

#[utoipa::path(post, path = "/v1/transfers/{id}/post", tag = "transfers", request_body = PostPending,
    params(("id" = Uuid, Path, description = "The pending transfer's id")),
    responses(
        (status = 201, description = "Posted", body = TransferView),
        (status = 200, description = "Already posted by this same request (header Idempotent-Replay: true)", body = TransferView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such pending transfer", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The id exists with different fields", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Already posted, voided or expired, amount too large, or invalid field", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Outcome unknown or shutting down; retry with the same id", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn post_pending(
    State(state): State<AppState>,
    access: Access,
    Path(pending_id): Path<String>,
    body: UnreadJson,
) -> Result<Response, ApiError> {
    access.require(Action::TransferPost).await?;
    let body: PostPending = body.parse().await?;
    let flags = TransferFlags {
        post_pending_transfer: true,
        ..TransferFlags::default()
    };
    create_one(
        &state,
        &access,
        resolution(&pending_id, flags, body.id, body.amount, body.metadata)?,
    )
    .await
}

#[utoipa::path(post, path = "/v1/transfers/{id}/void", tag = "transfers", request_body = VoidPending,
    params(("id" = Uuid, Path, description = "The pending transfer's id")),
    responses(
        (status = 201, description = "Voided", body = TransferView),
        (status = 200, description = "Already voided by this same request (header Idempotent-Replay: true)", body = TransferView),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such pending transfer", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The id exists with different fields", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Already posted, voided or expired, or invalid field", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Outcome unknown or shutting down; retry with the same id", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn void_pending(
    State(state): State<AppState>,
    access: Access,
    Path(pending_id): Path<String>,
    body: UnreadJson,
) -> Result<Response, ApiError> {
    access.require(Action::TransferVoid).await?;
    let body: VoidPending = body.parse().await?;
    let flags = TransferFlags {
        void_pending_transfer: true,
        ..TransferFlags::default()
    };
    create_one(
        &state,
        &access,
        resolution(&pending_id, flags, body.id, None, body.metadata)?,
    )
    .await
}

#[utoipa::path(get, path = "/v1/transfers/{id}", tag = "transfers",
    params(("id" = Uuid, Path, description = "Transfer id")),
    responses(
        (status = 200, description = "The transfer", body = TransferView),
        (status = 404, description = "No such transfer", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn get(
    State(state): State<AppState>,
    access: Access,
    Path(id): Path<String>,
) -> Result<Json<TransferView>, ApiError> {
    let transfer = readable_transfer(&state, &access, &id).await?;
    Ok(Json(TransferView::new(&transfer)))
}

/// The transfer named in the URL, once the caller may read it.
pub(crate) async fn readable_transfer(
    state: &AppState,
    access: &Access,
    id: &str,
) -> Result<ledger::Transfer, ApiError> {
    let id = path_id(id, "id")?;
    let found = match TransferId::parse(id, ErrorCode::IdMustNotBeZero) {
        Ok(id) => read(state.store.transfer(id).await)?,
        Err(_) => None,
    };
    let transfer = found.ok_or_else(|| ApiError::new(ApiCode::TransferNotFound, format!("id: no transfer {id}")))?;
    let facts = stored_facts(state, &transfer, is_held(state, &transfer).await?).await?;
    access
        .authorize(Action::TransferRead, &Resource::Transfer(facts))
        .await?;
    Ok(transfer)
}

/// Up to 8190 transfers, applied in order in one commit; linked chains succeed or fail together.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchRequest {
    pub transfers: Vec<CreateTransfer>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ItemStatus {
    Created,
    Exists,
    Failed,
}

/// The result of one item of a batch, in request order.
#[derive(Debug, Serialize, ToSchema)]
pub struct ItemResult {
    pub index: usize,
    /// The item's transfer id. The transfer itself is at GET /v1/transfers/{id}: answers stay small so
    /// a batch of thousands costs little to encode and to read.
    pub id: Uuid,
    pub status: ItemStatus,
    /// The transfer was created held for review (pending; its review is /v1/reviews/{id}), now or, for
    /// a replay (`exists`), when it was first created.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub held: bool,
    /// Set when the item failed: a ledger result code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BatchResponse {
    pub results: Vec<ItemResult>,
}

#[utoipa::path(post, path = "/v1/transfers/batch", tag = "transfers", request_body = BatchRequest,
    responses(
        (status = 200, description = "One result per item, in order; the batch committed as a whole", body = BatchResponse),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Items the policies refuse (listed in errors; nothing was applied)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Empty or oversized batch, or items that can never be valid or name missing accounts (listed in errors; nothing was applied)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Outcome unknown or shutting down; retry with the same ids", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn batch(
    State(state): State<AppState>,
    access: Access,
    body: UnreadJson,
) -> Result<Json<BatchResponse>, ApiError> {
    access.require(Action::TransferCreate).await?;
    let body: BatchRequest = body.parse().await?;
    let count = body.transfers.len();
    if count == 0 {
        return Err(ApiError::new(
            ApiCode::BatchEmpty,
            "transfers: at least one transfer is required",
        ));
    }
    if count > BATCH_LENGTH_MAX {
        return Err(ApiError::new(
            ApiCode::BatchTooLarge,
            format!("transfers: {count} items; the most is {BATCH_LENGTH_MAX}"),
        ));
    }
    let ids: Vec<Uuid> = body.transfers.iter().map(|transfer| transfer.id).collect();
    let transfers = parse_items(body.transfers)?;
    let commands = authorize_items(&state, &access, transfers).await?;
    let receipts = access.ledger().execute(commands).await?;
    let replayed_held = replayed_held(&state, &receipts).await?;
    let results = receipts
        .into_iter()
        .zip(ids)
        .enumerate()
        .map(|(index, (receipt, id))| {
            let held = receipt.held || replayed_held.contains(&id);
            item_result(index, id, receipt, held)
        })
        .collect();
    Ok(Json(BatchResponse { results }))
}

/// Every item as a transfer, or every item that can never be valid. A batch with such an item is
/// refused whole: dropping it would silently change what its linked chain means.
fn parse_items(items: Vec<CreateTransfer>) -> Result<Vec<NewTransfer>, ApiError> {
    let mut transfers = Vec::with_capacity(items.len());
    let mut refused: Vec<(usize, ErrorCode)> = Vec::new();
    for (index, item) in items.into_iter().enumerate() {
        match item.into_request().parse() {
            Ok(transfer) => transfers.push(transfer),
            Err(code) => refused.push((index, code)),
        }
    }
    if refused.is_empty() {
        return Ok(transfers);
    }
    Err(refused_items(refused))
}

/// The problem of a batch refused for the items listed, with the first one's code.
fn refused_items(refused: Vec<(usize, ErrorCode)>) -> ApiError {
    let (first_index, first_code) = refused[0];
    let mut error = ApiError::ledger(first_code, None);
    error.detail = format!(
        "{} of the batch's items are refused; nothing was applied. First: {}",
        refused.len(),
        item_detail(first_index, first_code)
    );
    error.errors = refused
        .into_iter()
        .map(|(index, code)| ItemError {
            index,
            code: code.as_str().to_string(),
            detail: item_detail(index, code),
        })
        .collect();
    error
}

/// Decides every item. The batch goes ahead only if every item is allowed; otherwise it is refused
/// whole with the refused items listed (and each denial recorded), as is a batch naming accounts that
/// do not exist.
async fn authorize_items(
    state: &AppState,
    access: &Access,
    transfers: Vec<NewTransfer>,
) -> Result<Vec<Command>, ApiError> {
    let accounts = movement_accounts(state, &transfers).await?;
    let mut commands = Vec::with_capacity(transfers.len());
    let mut missing = Vec::new();
    let mut denied = Vec::new();
    for (index, transfer) in transfers.into_iter().enumerate() {
        match movement_facts(&transfer, &accounts) {
            Err(code) => missing.push((index, code)),
            Ok(facts) => {
                let resource = Resource::Transfer(facts);
                let decision = access.decide(Action::TransferCreate, &resource);
                if !decision.allowed {
                    denied.push((
                        index,
                        access::denial(Action::TransferCreate, &resource, &decision),
                        decision,
                    ));
                }
            }
        }
        commands.push(Command::CreateTransfer(transfer));
    }
    if !missing.is_empty() {
        return Err(refused_items(missing));
    }
    if let Some((first_index, _, first)) = denied.first() {
        let mut error = access::forbidden(Action::TransferCreate, first);
        error.detail = format!(
            "{} of the batch's items are refused by policy; nothing was applied. First: transfers[{first_index}]: {}",
            denied.len(),
            error.detail
        );
        error.errors = denied
            .iter()
            .map(|(index, _, decision)| ItemError {
                index: *index,
                code: ApiCode::Forbidden.as_str().to_string(),
                detail: format!(
                    "transfers[{index}]: {}",
                    access::forbidden(Action::TransferCreate, decision).detail
                ),
            })
            .collect();
        access
            .record_denials(denied.into_iter().map(|(_, denial, _)| denial).collect())
            .await;
        return Err(error);
    }
    access.allowed_all();
    Ok(commands)
}

fn item_detail(index: usize, code: ErrorCode) -> String {
    match transfer_field(code) {
        Some(field) => format!("transfers[{index}].{field}: {code}"),
        None => format!("transfers[{index}]: {code}"),
    }
}

fn item_result(index: usize, id: Uuid, receipt: Receipt, held: bool) -> ItemResult {
    match receipt.result {
        Ok(applied) => ItemResult {
            index,
            id,
            status: match applied {
                Applied::Created => ItemStatus::Created,
                Applied::Exists => ItemStatus::Exists,
            },
            held,
            code: None,
            detail: None,
        },
        Err(code) => ItemResult {
            index,
            id,
            status: ItemStatus::Failed,
            held: false,
            code: Some(code.as_str().to_string()),
            detail: Some(item_detail(index, code)),
        },
    }
}
