//! Client metadata: a bounded JSON object the ledger stores and returns but never interprets.

use serde::{Deserialize, Serialize};

use crate::ErrorCode;

/// Largest serialized metadata object, in bytes.
pub const METADATA_BYTES_MAX: usize = 4096;

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Metadata(serde_json::Map<String, serde_json::Value>);

impl Metadata {
    /// Absent metadata is the empty object; anything but an object, or an oversized one, is refused.
    pub fn parse(value: Option<serde_json::Value>) -> Result<Metadata, ErrorCode> {
        match value {
            None | Some(serde_json::Value::Null) => Ok(Metadata::default()),
            Some(serde_json::Value::Object(map)) => {
                let metadata = Metadata(map);
                if metadata.to_json().len() > METADATA_BYTES_MAX {
                    return Err(ErrorCode::MetadataTooLarge);
                }
                Ok(metadata)
            }
            Some(_) => Err(ErrorCode::MetadataMustBeObject),
        }
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(&self.0).expect("a JSON map with string keys always serializes")
    }

    pub fn as_map(&self) -> &serde_json::Map<String, serde_json::Value> {
        &self.0
    }
}
