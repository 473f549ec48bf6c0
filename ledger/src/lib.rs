//! finledger's double-entry domain: pure types, validation and a deterministic state machine.
//!
//! No I/O, no async, no clock: time is passed in, so every result is reproducible. Values are parsed
//! into types that can only exist valid (an [`Amount`] is positive and fits its currency's scale), and
//! every refusal is a precise [`ErrorCode`]. The storage layer in the service drives [`Ledger::apply`]
//! from its single-writer sequencer; property tests drive it with random batches.

mod account;
mod amount;
mod balances;
mod code;
mod currency;
mod ids;
mod metadata;
mod state;
mod time;
mod transfer;

pub use account::{Account, AccountFlags, AccountRequest, BalanceLimit, Balances, NewAccount, OWNER_LENGTH_MAX};
pub use amount::{AMOUNT_MAX, AMOUNT_TEXT_LENGTH_MAX, Amount, DecimalAmount, format_minor};
pub use balances::BalanceDelta;
pub use code::ErrorCode;
pub use currency::{Currency, SCALE_MAX};
pub use ids::{AccountId, TransferId, is_reserved, reserved_id};
pub use metadata::{METADATA_BYTES_MAX, Metadata};
pub use state::{Applied, BatchOutcome, Changes, Command, CommandResult, EXPIRIES_PER_BATCH_MAX, Ledger, Screen};
pub use time::{TIMEOUT_S_MAX, Timestamp};
pub use transfer::{
    Expected, Movement, NewTransfer, PendingState, Transfer, TransferCommand, TransferFlags, TransferKind,
    TransferRequest,
};
