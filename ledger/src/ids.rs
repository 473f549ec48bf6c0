//! Client-chosen identifiers. The nil UUID is reserved (it is what a missing field decodes to), and so
//! is the namespace of the ids the ledger's operator derives for its own records ([`reserved_id`]):
//! its system accounts and the transfers it makes itself (review decisions, settlements). A client
//! can never claim one of those ids first, so it can never block or redirect what the operator does
//! with it.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::ErrorCode;

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(Uuid);

        impl $name {
            /// Refuses the nil UUID with `zero`, the caller's precise code for that field.
            pub fn parse(uuid: Uuid, zero: ErrorCode) -> Result<$name, ErrorCode> {
                if uuid.is_nil() { Err(zero) } else { Ok($name(uuid)) }
            }

            /// An id read back from storage, where the schema already refuses the nil UUID.
            pub fn from_stored(uuid: Uuid) -> $name {
                debug_assert!(!uuid.is_nil());
                $name(uuid)
            }

            pub fn uuid(self) -> Uuid {
                self.0
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}", self.0)
            }
        }
    };
}

id_type!(
    /// The client-chosen id of an account.
    AccountId
);
id_type!(
    /// The client-chosen id of a transfer; it is also the transfer's idempotency key.
    TransferId
);

/// The first bytes of every reserved id; with version 8 ("custom") and the RFC 4122 variant, they mark
/// the namespace. No UUID of version 4 or 7 (what clients generate) can fall in it.
const RESERVED_PREFIX: [u8; 4] = [0xf1, 0xed, 0x6e, 0x20];

/// The hashing namespace reserved ids are derived in (UUIDv5's SHA-1, then stamped as reserved).
const RESERVED_NAMESPACE: Uuid = Uuid::from_u128(0x3b1f_7d0e_52a4_4c9b_8e07_f6d2_19a8_c451);

/// The reserved id named `name` (e.g. `clearing/USD`, or a kind and the bytes of what the id is
/// derived from): the same name always gives the same id, and different names different ids.
pub fn reserved_id(name: &[u8]) -> Uuid {
    let mut bytes = *Uuid::new_v5(&RESERVED_NAMESPACE, name).as_bytes();
    bytes[..4].copy_from_slice(&RESERVED_PREFIX);
    bytes[6] = (bytes[6] & 0x0f) | 0x80;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let id = Uuid::from_bytes(bytes);
    debug_assert!(is_reserved(id));
    id
}

/// Whether `uuid` is in the reserved namespace: only the ledger's operator uses such ids.
pub fn is_reserved(uuid: Uuid) -> bool {
    let bytes = uuid.as_bytes();
    bytes[..4] == RESERVED_PREFIX && bytes[6] >> 4 == 8 && bytes[8] >> 6 == 0b10
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_ids_are_stable_distinct_and_never_what_clients_generate() {
        let clearing = reserved_id(b"clearing/USD");
        assert_eq!(clearing, reserved_id(b"clearing/USD"));
        assert_ne!(clearing, reserved_id(b"clearing/EUR"));
        assert!(is_reserved(clearing));
        assert_eq!(clearing.get_version_num(), 8);
        for _ in 0..1000 {
            assert!(!is_reserved(Uuid::new_v4()));
            assert!(!is_reserved(Uuid::now_v7()));
        }
        assert!(!is_reserved(Uuid::nil()));
        assert!(!is_reserved(Uuid::max()));
        // The prefix alone is not enough: the version and variant mark the namespace too.
        let mut bytes = *clearing.as_bytes();
        bytes[6] = (bytes[6] & 0x0f) | 0x40;
        assert!(!is_reserved(Uuid::from_bytes(bytes)));
    }
}
