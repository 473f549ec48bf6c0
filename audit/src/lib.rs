//! finledger's tamper-evident audit log, independent of the ledger's business rules and free of I/O.
//!
//! - [`record`]: audit records and their canonical, versioned encoding (the hashed bytes are the
//!   stored bytes).
//! - [`log`]: appending records: seq, chain, hashes and tree in one place.
//! - [`merkle`]: RFC 6962 Merkle tree hashing, inclusion and consistency proofs.
//! - [`verify`]: offline verification of a run of records against a signed checkpoint.
//! - [`note`]: C2SP checkpoints in Ed25519-signed notes, signed only when consistent with the last.

pub mod log;
pub mod merkle;
pub mod note;
pub mod record;
pub mod verify;

pub use merkle::Hash;
pub use record::{Actor, Event, Record};
