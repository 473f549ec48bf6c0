//! Checking events as a consumer would: each payload against its type's JSON Schema, and each key's
//! sequence numbers for duplicates and gaps.

use std::collections::{BTreeMap, HashMap, HashSet};

use finledger::outbox::EventType;
use serde_json::Value;

use super::client::ApiClient;

/// Asserts that `data` is a valid payload of `event_type`.
pub fn assert_valid(event_type: &str, data: &Value) {
    let kind = EventType::parse(event_type).unwrap_or_else(|| panic!("unknown event type {event_type}"));
    let schema: Value = serde_json::from_str(kind.schema()).expect("the schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("the schema compiles");
    let errors: Vec<String> = validator.iter_errors(data).map(|e| e.to_string()).collect();
    assert!(errors.is_empty(), "{event_type} {data}: {errors:?}");
}

/// Every event GET /v1/events serves, walking the cursor `limit` at a time.
pub async fn read_all(client: &ApiClient, limit: u32) -> Vec<Value> {
    let mut events = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(after) => format!("/v1/events?limit={limit}&after={after}"),
            None => format!("/v1/events?limit={limit}"),
        };
        let page = client.get(&path).await;
        assert_eq!(page.status, hyper::StatusCode::OK, "{}", page.text);
        let data = page.body["data"].as_array().expect("a data array").clone();
        let next = page.body["next_cursor"].as_str().expect("a cursor").to_string();
        let done = data.is_empty();
        events.extend(data);
        if done {
            return events;
        }
        cursor = Some(next);
    }
}

/// What a de-duplicating consumer keeps: each event id once, in arrival order per key, with a check
/// that each key's sequence numbers run 1, 2, 3… with no gap.
#[derive(Default)]
pub struct Consumer {
    seen: HashSet<String>,
    pub duplicates: usize,
    pub by_key: BTreeMap<String, Vec<(i64, String)>>,
    pub ids: HashMap<String, String>,
}

impl Consumer {
    /// Takes one event (id, key, per-key sequence, type); returns whether it was new. A new event whose
    /// sequence is not the key's next is a gap or a reordering, and fails the test.
    pub fn take(&mut self, id: &str, key: &str, sequence: i64, event_type: &str) -> bool {
        if !self.seen.insert(id.to_string()) {
            self.duplicates += 1;
            let last = self.by_key.get(key).map_or(0, |events| events.len() as i64);
            assert!(sequence <= last, "duplicate {id} of {key} #{sequence} ahead of #{last}");
            return false;
        }
        let events = self.by_key.entry(key.to_string()).or_default();
        assert_eq!(
            sequence,
            events.len() as i64 + 1,
            "key {key}: event {id} ({event_type}) out of order or after a gap"
        );
        events.push((sequence, id.to_string()));
        self.ids.insert(id.to_string(), event_type.to_string());
        true
    }

    pub fn count(&self) -> usize {
        self.seen.len()
    }
}
