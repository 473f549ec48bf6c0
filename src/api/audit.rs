//! The audit log for auditors: the latest signed checkpoint, the public key, records, and inclusion
//! and consistency proofs against signed checkpoints.

use audit::merkle::{self, Hash};
use audit::record::Record;
use axum::Json;
use axum::extract::{Path, State};
use axum::http::header::CONTENT_TYPE;
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use crate::api::access::Access;
use crate::api::input::QueryParams;
use crate::api::problem::{ApiCode, ApiError, Problem};
use crate::api::transfers::readable_transfer;
use crate::api::{AppState, page_limit, read};
use crate::authz::{Action, Resource};
use crate::store::{StoredCheckpoint, StoredRecord};

const TEXT: &str = "text/plain; charset=utf-8";

fn text(body: String) -> Response {
    ([(CONTENT_TYPE, TEXT)], body).into_response()
}

async fn latest(state: &AppState) -> Result<StoredCheckpoint, ApiError> {
    read(state.store.latest_checkpoint().await)?
        .ok_or_else(|| ApiError::new(ApiCode::NotFound, "the audit log has no signed checkpoint yet"))
}

#[utoipa::path(get, path = "/v1/audit/checkpoint", tag = "audit",
    responses(
        (status = 200, description = "The latest checkpoint (C2SP tlog-checkpoint) in an Ed25519 signed note", body = String, content_type = "text/plain"),
        (status = 404, description = "Nothing signed yet", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn checkpoint(State(state): State<AppState>, access: Access) -> Result<Response, ApiError> {
    access.authorize(Action::AuditRead, &Resource::AuditLog).await?;
    Ok(text(latest(&state).await?.note))
}

#[utoipa::path(get, path = "/v1/audit/public-key", tag = "audit",
    responses((status = 200, description = "The checkpoints' public key in note verifier format", body = String, content_type = "text/plain")))]
pub async fn public_key(State(state): State<AppState>, access: Access) -> Result<Response, ApiError> {
    // The key is what every holder of a proof needs to check it: public, like the API description.
    access.authorize(Action::ApiDescribe, &Resource::Api).await?;
    Ok(text(format!("{}\n", state.audit_key)))
}

/// One record: the stored bytes (what is hashed) and, read from them, who and what.
#[derive(Serialize, ToSchema)]
pub struct RecordView {
    pub seq: u64,
    /// SHA-256(0x00 || bytes), hex: the record's Merkle leaf hash and the next record's prev_hash.
    pub leaf_hash: String,
    /// The record exactly as stored and hashed, base64.
    pub bytes: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub timestamp: String,
    pub principal: String,
    pub certificate_sha256: Option<String>,
}

impl RecordView {
    fn new(record: &StoredRecord) -> RecordView {
        let decoded = Record::decode(&record.bytes).ok();
        RecordView {
            seq: record.seq,
            leaf_hash: hex::encode(merkle::leaf_hash(&record.bytes)),
            bytes: STANDARD.encode(&record.bytes),
            kind: decoded
                .as_ref()
                .map_or("unreadable", |r| r.event.type_name())
                .to_string(),
            timestamp: decoded
                .as_ref()
                .map(|r| crate::api::views::rfc3339(ledger::Timestamp::from_micros(r.timestamp_micros)))
                .unwrap_or_default(),
            principal: decoded.as_ref().map(|r| r.actor.principal.clone()).unwrap_or_default(),
            certificate_sha256: decoded.and_then(|r| r.actor.certificate_sha256.map(hex::encode)),
        }
    }
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct RecordsQuery {
    /// First seq (default 0).
    pub from: Option<u64>,
    /// Most records (1 to 1000, default 100).
    pub limit: Option<u32>,
}

#[derive(Serialize, ToSchema)]
pub struct RecordPage {
    pub data: Vec<RecordView>,
    /// The seq to pass as `from` for the next page.
    pub next_from: u64,
}

#[utoipa::path(get, path = "/v1/audit/records", tag = "audit", params(RecordsQuery),
    responses(
        (status = 200, description = "Records in seq order", body = RecordPage),
        (status = 422, description = "Invalid from or limit", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn records(
    State(state): State<AppState>,
    access: Access,
    QueryParams(query): QueryParams<RecordsQuery>,
) -> Result<Json<RecordPage>, ApiError> {
    access.authorize(Action::AuditRead, &Resource::AuditLog).await?;
    let limit = page_limit(query.limit)?;
    let from = query.from.unwrap_or(0);
    if from > i64::MAX as u64 {
        return Err(ApiError::new(ApiCode::InvalidField, "from: too large"));
    }
    let page = read(state.store.audit_records(from, limit).await)?;
    Ok(Json(RecordPage {
        next_from: page.last().map_or(from, |r| r.seq + 1),
        data: page.iter().map(RecordView::new).collect(),
    }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct InclusionQuery {
    /// The record's seq (its leaf index).
    pub index: u64,
    /// A signed tree size (default: the latest checkpoint's).
    pub tree_size: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub struct InclusionProofView {
    pub index: u64,
    pub tree_size: u64,
    pub leaf_hash: String,
    /// RFC 9162 inclusion proof, hex hashes in order.
    pub proof: Vec<String>,
}

fn hexes(hashes: &[Hash]) -> Vec<String> {
    hashes.iter().map(hex::encode).collect()
}

/// A tree size an auditor can check against: at most the latest signed checkpoint's.
async fn signed_size(state: &AppState, size: Option<u64>, field: &str) -> Result<u64, ApiError> {
    let latest = latest(state).await?.size;
    let size = size.unwrap_or(latest);
    if size == 0 || size > latest {
        return Err(ApiError::new(
            ApiCode::InvalidField,
            format!("{field}: must be 1 to {latest}, the latest signed checkpoint's size"),
        ));
    }
    Ok(size)
}

#[utoipa::path(get, path = "/v1/audit/proof/inclusion", tag = "audit", params(InclusionQuery),
    responses(
        (status = 200, description = "The record's inclusion proof", body = InclusionProofView),
        (status = 404, description = "Nothing signed yet", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Index or tree size out of range", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn inclusion(
    State(state): State<AppState>,
    access: Access,
    QueryParams(query): QueryParams<InclusionQuery>,
) -> Result<Json<InclusionProofView>, ApiError> {
    access.authorize(Action::AuditRead, &Resource::AuditLog).await?;
    let tree_size = signed_size(&state, query.tree_size, "tree_size").await?;
    if query.index >= tree_size {
        return Err(ApiError::new(
            ApiCode::InvalidField,
            format!("index: must be below the tree size {tree_size}"),
        ));
    }
    let record = read(state.store.audit_records(query.index, 1).await)?
        .pop()
        .filter(|r| r.seq == query.index)
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("audit record {} is missing", query.index)))?;
    let proof = read(state.store.inclusion_proof(query.index, tree_size).await)?;
    Ok(Json(InclusionProofView {
        index: query.index,
        tree_size,
        leaf_hash: hex::encode(merkle::leaf_hash(&record.bytes)),
        proof: hexes(&proof),
    }))
}

#[derive(Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyQuery {
    pub old_size: u64,
    /// Default: the latest checkpoint's size.
    pub new_size: Option<u64>,
}

#[derive(Serialize, ToSchema)]
pub struct ConsistencyProofView {
    pub old_size: u64,
    pub new_size: u64,
    /// RFC 9162 consistency proof, hex hashes in order.
    pub proof: Vec<String>,
}

#[utoipa::path(get, path = "/v1/audit/proof/consistency", tag = "audit", params(ConsistencyQuery),
    responses(
        (status = 200, description = "The consistency proof between two signed sizes", body = ConsistencyProofView),
        (status = 404, description = "Nothing signed yet", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Sizes out of range", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn consistency(
    State(state): State<AppState>,
    access: Access,
    QueryParams(query): QueryParams<ConsistencyQuery>,
) -> Result<Json<ConsistencyProofView>, ApiError> {
    access.authorize(Action::AuditRead, &Resource::AuditLog).await?;
    let new_size = signed_size(&state, query.new_size, "new_size").await?;
    if query.old_size == 0 || query.old_size > new_size {
        return Err(ApiError::new(
            ApiCode::InvalidField,
            format!("old_size: must be 1 to new_size ({new_size})"),
        ));
    }
    let proof = read(state.store.consistency_proof(query.old_size, new_size).await)?;
    Ok(Json(ConsistencyProofView {
        old_size: query.old_size,
        new_size,
        proof: hexes(&proof),
    }))
}

#[derive(Serialize, ToSchema)]
pub struct TransferProof {
    /// The checkpoint the proofs lead to (signed note).
    pub checkpoint: String,
    pub tree_size: u64,
    pub records: Vec<ProvenRecord>,
}

#[derive(Serialize, ToSchema)]
pub struct ProvenRecord {
    #[serde(flatten)]
    pub record: RecordView,
    pub proof: Vec<String>,
}

#[utoipa::path(get, path = "/v1/transfers/{id}/proof", tag = "audit",
    params(("id" = uuid::Uuid, Path, description = "Transfer id")),
    responses(
        (status = 200, description = "The transfer's records with inclusion proofs to the latest checkpoint", body = TransferProof),
        (status = 404, description = "No such transfer", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The id is not a UUID", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn transfer_proof(
    State(state): State<AppState>,
    access: Access,
    Path(id): Path<String>,
) -> Result<Json<TransferProof>, ApiError> {
    let transfer = readable_transfer(&state, &access, &id).await?;
    let id = transfer.id;
    let not_found = || {
        ApiError::new(
            ApiCode::TransferNotFound,
            format!("id: no audit record of transfer {}", id.uuid()),
        )
    };
    let checkpoint = latest(&state).await?;
    let records = read(state.store.transfer_records(id).await)?;
    if records.is_empty() {
        return Err(not_found());
    }
    let mut proven = Vec::with_capacity(records.len());
    for record in records.iter().filter(|r| r.seq < checkpoint.size) {
        let proof = read(state.store.inclusion_proof(record.seq, checkpoint.size).await)?;
        proven.push(ProvenRecord {
            record: RecordView::new(record),
            proof: hexes(&proof),
        });
    }
    Ok(Json(TransferProof {
        checkpoint: checkpoint.note,
        tree_size: checkpoint.size,
        records: proven,
    }))
}
