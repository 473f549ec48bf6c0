//! Client-chosen identifiers. The nil UUID is reserved (it is what a missing field decodes to).

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
