//! finledger's tamper-evident audit log, independent of the ledger's business rules and free of I/O.
//!
//! - [`merkle`]: RFC 6962 Merkle tree hashing, inclusion and consistency proofs.

pub mod merkle;

pub use merkle::Hash;
