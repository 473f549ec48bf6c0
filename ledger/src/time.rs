//! Time as the ledger sees it: passed in by the caller, never read from a clock here.

use serde::{Deserialize, Serialize};

/// Microseconds since the Unix epoch (UTC), the resolution PostgreSQL's `timestamptz` keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Timestamp(i64);

/// Longest timeout a pending transfer may have: ten years.
pub const TIMEOUT_S_MAX: u32 = 10 * 366 * 24 * 3600;

impl Timestamp {
    pub const fn from_micros(micros: i64) -> Timestamp {
        Timestamp(micros)
    }

    pub const fn micros(self) -> i64 {
        self.0
    }

    /// The instant `seconds` later, or `None` if it is not representable.
    pub fn plus_seconds(self, seconds: u32) -> Option<Timestamp> {
        let micros = i64::from(seconds).checked_mul(1_000_000)?;
        self.0.checked_add(micros).map(Timestamp)
    }
}
