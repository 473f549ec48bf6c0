//! The API's one error type and its one mapping to HTTP: RFC 9457 `application/problem+json` with a
//! stable `code`, a `detail` that names the offending field, and the request id.
//!
//! Handlers return [`ApiError`]; it travels in the response's extensions, and the request-id
//! middleware renders it, so every problem carries the id of the request it answers.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use ledger::ErrorCode;
use serde::Serialize;
use utoipa::ToSchema;

use crate::store::SubmitError;

/// Problem codes of the API itself, beside the ledger's result codes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ApiCode {
    MalformedJson,
    JsonTooDeep,
    InvalidField,
    UnsupportedMediaType,
    BodyTooLarge,
    BatchEmpty,
    BatchTooLarge,
    InvalidCursor,
    InvalidAsOf,
    TransferNotFound,
    NotFound,
    MethodNotAllowed,
    UnknownPrincipal,
    InvalidToken,
    Forbidden,
    ReviewNotFound,
    RulesetNotFound,
    SettlementNotFound,
    SettlementOutOfOrder,
    ClearingAccountInvalid,
    OutcomeUnknown,
    Unavailable,
    Internal,
}

impl ApiCode {
    pub const ALL: [ApiCode; 23] = [
        ApiCode::MalformedJson,
        ApiCode::JsonTooDeep,
        ApiCode::InvalidField,
        ApiCode::UnsupportedMediaType,
        ApiCode::BodyTooLarge,
        ApiCode::BatchEmpty,
        ApiCode::BatchTooLarge,
        ApiCode::InvalidCursor,
        ApiCode::InvalidAsOf,
        ApiCode::TransferNotFound,
        ApiCode::NotFound,
        ApiCode::MethodNotAllowed,
        ApiCode::UnknownPrincipal,
        ApiCode::InvalidToken,
        ApiCode::Forbidden,
        ApiCode::ReviewNotFound,
        ApiCode::RulesetNotFound,
        ApiCode::SettlementNotFound,
        ApiCode::SettlementOutOfOrder,
        ApiCode::ClearingAccountInvalid,
        ApiCode::OutcomeUnknown,
        ApiCode::Unavailable,
        ApiCode::Internal,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ApiCode::MalformedJson => "malformed_json",
            ApiCode::JsonTooDeep => "json_too_deep",
            ApiCode::InvalidField => "invalid_field",
            ApiCode::UnsupportedMediaType => "unsupported_media_type",
            ApiCode::BodyTooLarge => "body_too_large",
            ApiCode::BatchEmpty => "batch_empty",
            ApiCode::BatchTooLarge => "batch_too_large",
            ApiCode::InvalidCursor => "invalid_cursor",
            ApiCode::InvalidAsOf => "invalid_as_of",
            ApiCode::TransferNotFound => "transfer_not_found",
            ApiCode::NotFound => "not_found",
            ApiCode::MethodNotAllowed => "method_not_allowed",
            ApiCode::UnknownPrincipal => "unknown_principal",
            ApiCode::InvalidToken => "invalid_token",
            ApiCode::Forbidden => "forbidden",
            ApiCode::ReviewNotFound => "review_not_found",
            ApiCode::RulesetNotFound => "ruleset_not_found",
            ApiCode::SettlementNotFound => "settlement_not_found",
            ApiCode::SettlementOutOfOrder => "settlement_out_of_order",
            ApiCode::ClearingAccountInvalid => "clearing_account_invalid",
            ApiCode::OutcomeUnknown => "outcome_unknown",
            ApiCode::Unavailable => "unavailable",
            ApiCode::Internal => "internal",
        }
    }

    pub fn status(self) -> StatusCode {
        match self {
            ApiCode::MalformedJson | ApiCode::JsonTooDeep | ApiCode::InvalidCursor => StatusCode::BAD_REQUEST,
            ApiCode::InvalidField | ApiCode::BatchEmpty | ApiCode::BatchTooLarge | ApiCode::InvalidAsOf => {
                StatusCode::UNPROCESSABLE_ENTITY
            }
            ApiCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiCode::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ApiCode::TransferNotFound
            | ApiCode::ReviewNotFound
            | ApiCode::RulesetNotFound
            | ApiCode::SettlementNotFound
            | ApiCode::NotFound => StatusCode::NOT_FOUND,
            ApiCode::SettlementOutOfOrder | ApiCode::ClearingAccountInvalid => StatusCode::CONFLICT,
            ApiCode::InvalidToken => StatusCode::UNAUTHORIZED,
            ApiCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiCode::UnknownPrincipal | ApiCode::Forbidden => StatusCode::FORBIDDEN,
            ApiCode::OutcomeUnknown | ApiCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ApiCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// The HTTP status of a ledger result code.
///
/// 409 for an id reused with different fields; 404 for a pending transfer named in the URL that does
/// not exist; 422 for everything else: the request was understood and refused by a ledger rule.
pub fn ledger_status(code: ErrorCode) -> StatusCode {
    let name = code.as_str();
    if name.starts_with("exists_with_different_") {
        StatusCode::CONFLICT
    } else if code == ErrorCode::PendingTransferNotFound || code == ErrorCode::AccountNotFound {
        StatusCode::NOT_FOUND
    } else {
        StatusCode::UNPROCESSABLE_ENTITY
    }
}

/// One refused item of a batch, for problems that concern several.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct ItemError {
    pub index: usize,
    pub code: String,
    pub detail: String,
}

/// An RFC 9457 problem.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct Problem {
    /// Always "about:blank": `code` carries the machine-readable kind.
    #[serde(rename = "type")]
    pub problem_type: &'static str,
    pub title: String,
    pub status: u16,
    /// Stable snake_case code: a ledger result code or an API code.
    #[schema(schema_with = problem_code_schema)]
    pub code: String,
    /// What was wrong, naming the field.
    pub detail: String,
    pub request_id: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<ItemError>,
    /// For `forbidden`: the authorization policies that determined the denial (none when no policy
    /// permitted the request).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policy_ids: Vec<String>,
}

/// Every problem code the API can return, as an enum in the OpenAPI document.
fn problem_code_schema() -> utoipa::openapi::schema::Object {
    let codes: Vec<&'static str> = ErrorCode::ALL
        .iter()
        .map(|code| code.as_str())
        .chain(ApiCode::ALL.iter().map(|code| code.as_str()))
        .collect();
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(codes))
        .build()
}

/// An error answer, before the request id is known.
#[derive(Clone, Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub detail: String,
    pub errors: Vec<ItemError>,
    pub policy_ids: Vec<String>,
}

impl ApiError {
    pub fn new(code: ApiCode, detail: impl Into<String>) -> ApiError {
        ApiError {
            status: code.status(),
            code: code.as_str(),
            detail: detail.into(),
            errors: Vec::new(),
            policy_ids: Vec::new(),
        }
    }

    /// A ledger refusal; `field` names the part of the request it concerns, when there is one.
    pub fn ledger(code: ErrorCode, field: Option<&str>) -> ApiError {
        let detail = match field {
            Some(field) => format!("{field}: {code}"),
            None => code.to_string(),
        };
        ApiError {
            status: ledger_status(code),
            code: code.as_str(),
            detail,
            errors: Vec::new(),
            policy_ids: Vec::new(),
        }
    }

    pub fn internal(error: anyhow::Error) -> ApiError {
        // The cause goes to the log, never to the client.
        tracing::error!(error = format!("{error:#}"), "request failed");
        ApiError::new(ApiCode::Internal, "an internal error occurred; it has been logged")
    }

    pub fn into_problem(self, request_id: &str) -> Problem {
        Problem {
            problem_type: "about:blank",
            title: self.status.canonical_reason().unwrap_or("Error").to_string(),
            status: self.status.as_u16(),
            code: self.code.to_string(),
            detail: self.detail,
            request_id: request_id.to_string(),
            errors: self.errors,
            policy_ids: self.policy_ids,
        }
    }
}

impl From<SubmitError> for ApiError {
    fn from(error: SubmitError) -> ApiError {
        match error {
            SubmitError::TooLarge { count, max } => ApiError::new(
                ApiCode::BatchTooLarge,
                format!("transfers: {count} items; the most is {max}"),
            ),
            SubmitError::ShuttingDown => ApiError::new(ApiCode::Unavailable, "the service is shutting down; retry"),
            SubmitError::CommitFailed { .. } => ApiError::new(
                ApiCode::OutcomeUnknown,
                "the commit did not complete and its outcome is unknown; retry with the same ids",
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = self.status.into_response();
        response.extensions_mut().insert(self);
        response
    }
}

/// Renders a problem as the response body.
pub fn render(problem: &Problem) -> Response {
    let status = StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = serde_json::to_vec(problem).expect("a problem always serializes");
    let mut response = (status, body).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/problem+json"),
    );
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer error=\"invalid_token\""),
        );
    }
    response
}
