//! The source of "now" for the ledger. Passed in, so tests can fix or move time deterministically.

use std::sync::Arc;

use ledger::Timestamp;

pub type Clock = Arc<dyn Fn() -> Timestamp + Send + Sync>;

/// The system's wall clock, in microseconds since the Unix epoch.
pub fn system() -> Clock {
    Arc::new(|| Timestamp::from_micros(chrono::Utc::now().timestamp_micros()))
}
