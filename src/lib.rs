//! finledger: a compliance-focused double-entry ledger service.
//!
//! `ledger` (the pure domain) and `audit` (tamper evidence) are separate crates; this crate wires them
//! to PostgreSQL, the network and the command line.

pub mod api;
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
pub mod settlement;
pub mod startup;
pub mod store;
pub mod telemetry;
pub mod tls;
