//! finledger: a compliance-focused double-entry ledger service.
//!
//! `ledger` (the pure domain) and `audit` (tamper evidence) are separate crates; this crate wires them
//! to PostgreSQL, the network and the command line.

/// The service allocates and frees many small objects per request (TLS records, HTTP frames, JSON
/// values, policy entities) from many threads: mimalloc serves them from thread-local pages where
/// glibc's malloc spent ~13% of the process's CPU (perf, single-transfer load). Set here, it holds for
/// every binary built on this crate: the service, its tests and its benchmarks.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

pub mod api;
pub mod approval;
pub mod authz;
pub mod cli;
pub mod clock;
pub mod configuration;
pub mod evidence;
pub mod fraud;
pub mod identity;
pub mod local_postgres;
pub mod ops;
pub mod outbox;
pub mod pki;
pub mod rules_in_effect;
pub mod settlement;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod tls;
