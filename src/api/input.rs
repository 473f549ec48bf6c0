//! Reading requests: JSON bodies and query strings into typed values, within named limits, with
//! errors that name the field.
//!
//! Bodies must be `application/json`, at most the route's byte limit, nested at most
//! [`JSON_DEPTH_MAX`] deep, and hold no field the type does not declare. Amounts are strings in every
//! request type, so a JSON number where an amount belongs is a type error naming that field.
//!
//! A body is read only once the handler asks for it ([`UnreadJson::parse`]), after it has decided
//! that the caller may take the endpoint's action at all: a caller no policy could ever allow is
//! refused before a byte of its body is read.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header;
use axum::http::request::Parts;
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::api::problem::{ApiCode, ApiError};

/// Deepest nesting of arrays and objects in a request body.
pub const JSON_DEPTH_MAX: usize = 32;

/// A JSON request body, not read yet.
pub struct UnreadJson(Request);

impl<S: Send + Sync> FromRequest<S> for UnreadJson {
    type Rejection = ApiError;

    async fn from_request(request: Request, _state: &S) -> Result<UnreadJson, ApiError> {
        Ok(UnreadJson(request))
    }
}

impl UnreadJson {
    /// Reads the body (within the route's byte limit) and parses it into `T`.
    pub async fn parse<T: DeserializeOwned>(self) -> Result<T, ApiError> {
        let request = self.0;
        let is_json = request
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.split(';').next())
            .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"));
        if !is_json {
            return Err(ApiError::new(
                ApiCode::UnsupportedMediaType,
                "the body must be application/json",
            ));
        }
        // The route's DefaultBodyLimit bounds how much is read.
        let bytes = Bytes::from_request(request, &()).await.map_err(|rejection| {
            if rejection.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(ApiCode::BodyTooLarge, "the body is larger than this endpoint accepts")
            } else {
                ApiError::new(
                    ApiCode::MalformedJson,
                    format!("the body could not be read: {rejection}"),
                )
            }
        })?;
        parse_json(&bytes)
    }
}

/// Parses a JSON document into `T`, refusing it whole on the first problem.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if nesting_depth(bytes) > JSON_DEPTH_MAX {
        return Err(ApiError::new(
            ApiCode::JsonTooDeep,
            format!("the body nests deeper than {JSON_DEPTH_MAX} levels"),
        ));
    }
    let mut deserializer = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut deserializer).map_err(|error| {
        let path = error.path().to_string();
        let inner = error.into_inner();
        match inner.classify() {
            serde_json::error::Category::Data => ApiError::new(
                ApiCode::InvalidField,
                format!("{}: {}", field_name(&path), without_position(&inner)),
            ),
            _ => ApiError::new(ApiCode::MalformedJson, format!("the body is not valid JSON: {inner}")),
        }
    })?;
    deserializer
        .end()
        .map_err(|error| ApiError::new(ApiCode::MalformedJson, format!("the body is not valid JSON: {error}")))?;
    Ok(value)
}

/// How deeply arrays and objects nest, counted without parsing (and so without recursion).
fn nesting_depth(bytes: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &byte in bytes {
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

fn field_name(path: &str) -> &str {
    if path == "." { "body" } else { path }
}

/// serde_json's message without its "at line 1 column 57" suffix, which means nothing to a client
/// that names fields.
fn without_position(error: &serde_json::Error) -> String {
    let text = error.to_string();
    match text.rfind(" at line ") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

/// A query string, parsed into `T` (which should deny unknown fields).
pub struct QueryParams<T>(pub T);

impl<T, S> FromRequestParts<S> for QueryParams<T>
where
    T: DeserializeOwned,
    S: Send + Sync,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<QueryParams<T>, ApiError> {
        let query = parts.uri.query().unwrap_or_default();
        let deserializer = serde_urlencoded::Deserializer::new(form_urlencoded::parse(query.as_bytes()));
        serde_path_to_error::deserialize(deserializer)
            .map(QueryParams)
            .map_err(|error| {
                let path = error.path().to_string();
                ApiError::new(
                    ApiCode::InvalidField,
                    format!("{}: {}", field_name(&path), error.into_inner()),
                )
            })
    }
}

/// A UUID from the URL path; `field` names it in the error.
pub fn path_id(text: &str, field: &str) -> Result<Uuid, ApiError> {
    Uuid::parse_str(text)
        .map_err(|error| ApiError::new(ApiCode::InvalidField, format!("{field}: not a UUID ({error})")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Example {
        amount: String,
        id: Uuid,
    }

    #[test]
    fn nesting_depth_ignores_brackets_inside_strings() {
        assert_eq!(nesting_depth(br#"{"a":"[[[{{{\"]]]","b":[[1]]}"#), 3);
        assert_eq!(nesting_depth(b"1"), 0);
    }

    #[test]
    fn a_number_for_an_amount_names_the_field() {
        let error =
            parse_json::<Example>(br#"{"amount":12.5,"id":"00000000-0000-0000-0000-000000000001"}"#).unwrap_err();
        assert_eq!(error.code, "invalid_field");
        assert!(
            error.detail.starts_with("amount: invalid type: floating point"),
            "{}",
            error.detail
        );
    }

    #[test]
    fn unknown_fields_malformed_ids_and_syntax_errors_are_refused_with_their_own_codes() {
        let unknown = parse_json::<Example>(br#"{"amount":"1","id":"00000000-0000-0000-0000-000000000001","x":1}"#);
        assert!(unknown.unwrap_err().detail.contains("unknown field `x`"));
        let bad_id = parse_json::<Example>(br#"{"amount":"1","id":"not-a-uuid"}"#).unwrap_err();
        assert!(bad_id.detail.starts_with("id: "), "{}", bad_id.detail);
        assert_eq!(
            parse_json::<Example>(b"{\"amount\":").unwrap_err().code,
            "malformed_json"
        );
        let trailing = br#"{"amount":"1","id":"00000000-0000-0000-0000-000000000001"} {}"#;
        assert_eq!(parse_json::<Example>(trailing).unwrap_err().code, "malformed_json");
        let deep = format!("{}{}", "[".repeat(JSON_DEPTH_MAX + 1), "]".repeat(JSON_DEPTH_MAX + 1));
        assert_eq!(
            parse_json::<Example>(deep.as_bytes()).unwrap_err().code,
            "json_too_deep"
        );
    }
}
