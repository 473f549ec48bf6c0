//! Conversions between the ledger's domain types and PostgreSQL rows.
//!
//! Rows are trusted only as far as the schema's constraints go: anything that does not map back to a
//! valid domain value is reported as a corrupt row, never silently repaired.

use chrono::{DateTime, Utc};
use ledger::{
    Account, AccountId, Amount, BalanceLimit, Balances, Currency, Metadata, PendingState, Timestamp, Transfer,
    TransferId, TransferKind,
};
use uuid::Uuid;

#[derive(Debug, thiserror::Error)]
#[error("corrupt {table} row {id}: {reason}")]
pub struct CorruptRow {
    table: &'static str,
    id: Uuid,
    reason: String,
}

fn corrupt(table: &'static str, id: Uuid, reason: impl ToString) -> CorruptRow {
    CorruptRow {
        table,
        id,
        reason: reason.to_string(),
    }
}

pub fn to_datetime(timestamp: Timestamp) -> DateTime<Utc> {
    DateTime::from_timestamp_micros(timestamp.micros()).expect("ledger timestamps come from the clock or the database")
}

pub fn to_timestamp(datetime: DateTime<Utc>) -> Timestamp {
    Timestamp::from_micros(datetime.timestamp_micros())
}

pub fn kind_name(kind: TransferKind) -> &'static str {
    match kind {
        TransferKind::Single => "single",
        TransferKind::Pending => "pending",
        TransferKind::PostPending => "post_pending",
        TransferKind::VoidPending => "void_pending",
    }
}

pub fn state_name(state: PendingState) -> &'static str {
    match state {
        PendingState::Pending => "pending",
        PendingState::Posted => "posted",
        PendingState::Voided => "voided",
        PendingState::Expired => "expired",
    }
}

/// The limit columns of the balances table: (debits_limit, credits_limit).
pub fn limit_columns(limit: BalanceLimit) -> (Option<i64>, Option<i64>) {
    match limit {
        BalanceLimit::None => (None, None),
        BalanceLimit::Debits { overdraft_minor } => (Some(overdraft_minor as i64), None),
        BalanceLimit::Credits { overdraft_minor } => (None, Some(overdraft_minor as i64)),
    }
}

fn minor(table: &'static str, id: Uuid, value: i64) -> Result<u64, CorruptRow> {
    u64::try_from(value).map_err(|_| corrupt(table, id, "negative amount"))
}

pub struct AccountRow {
    pub id: Uuid,
    pub currency: String,
    pub code: i32,
    pub owner: String,
    pub debits_must_not_exceed_credits: bool,
    pub credits_must_not_exceed_debits: bool,
    pub overdraft_limit: i64,
    pub closed: bool,
    pub metadata: serde_json::Value,
    pub created_at: DateTime<Utc>,
    pub debits_posted: i64,
    pub credits_posted: i64,
    pub debits_pending: i64,
    pub credits_pending: i64,
}

impl TryFrom<AccountRow> for Account {
    type Error = CorruptRow;

    fn try_from(row: AccountRow) -> Result<Account, CorruptRow> {
        let bad = |reason: &dyn ToString| corrupt("accounts", row.id, reason.to_string());
        let overdraft_minor = minor("accounts", row.id, row.overdraft_limit)?;
        let limit = match (row.debits_must_not_exceed_credits, row.credits_must_not_exceed_debits) {
            (true, false) => BalanceLimit::Debits { overdraft_minor },
            (false, true) => BalanceLimit::Credits { overdraft_minor },
            (false, false) => BalanceLimit::None,
            (true, true) => return Err(bad(&"both balance-constraint flags")),
        };
        let balances = Balances {
            debits_posted: minor("balances", row.id, row.debits_posted)?,
            credits_posted: minor("balances", row.id, row.credits_posted)?,
            debits_pending: minor("balances", row.id, row.debits_pending)?,
            credits_pending: minor("balances", row.id, row.credits_pending)?,
        };
        Ok(Account {
            id: AccountId::from_stored(row.id),
            currency: Currency::from_code(row.currency.trim()).map_err(|e| bad(&e))?,
            code: u16::try_from(row.code).map_err(|e| bad(&e))?,
            owner: row.owner,
            limit,
            metadata: Metadata::parse(Some(row.metadata)).map_err(|e| bad(&e))?,
            closed: row.closed,
            created_at: to_timestamp(row.created_at),
            balances,
        })
    }
}

pub struct TransferRow {
    pub seq: i64,
    pub id: Uuid,
    pub kind: String,
    pub linked: bool,
    pub debit_account_id: Uuid,
    pub credit_account_id: Uuid,
    pub amount: i64,
    pub currency: String,
    pub code: i32,
    pub pending_id: Option<Uuid>,
    pub timeout_s: Option<i32>,
    pub expires_at: Option<DateTime<Utc>>,
    pub state: Option<String>,
    pub metadata: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

impl TryFrom<TransferRow> for Transfer {
    type Error = CorruptRow;

    fn try_from(row: TransferRow) -> Result<Transfer, CorruptRow> {
        let bad = |reason: &dyn ToString| corrupt("transfers", row.id, reason.to_string());
        let kind = match row.kind.as_str() {
            "single" => TransferKind::Single,
            "pending" => TransferKind::Pending,
            "post_pending" => TransferKind::PostPending,
            "void_pending" => TransferKind::VoidPending,
            other => return Err(bad(&format!("unknown kind {other}"))),
        };
        let state = match row.state.as_deref() {
            None => None,
            Some("pending") => Some(PendingState::Pending),
            Some("posted") => Some(PendingState::Posted),
            Some("voided") => Some(PendingState::Voided),
            Some("expired") => Some(PendingState::Expired),
            Some(other) => return Err(bad(&format!("unknown state {other}"))),
        };
        Ok(Transfer {
            id: TransferId::from_stored(row.id),
            kind,
            linked: row.linked,
            debit_account_id: AccountId::from_stored(row.debit_account_id),
            credit_account_id: AccountId::from_stored(row.credit_account_id),
            amount: Amount::from_minor(minor("transfers", row.id, row.amount)?).map_err(|e| bad(&e))?,
            currency: Currency::from_code(row.currency.trim()).map_err(|e| bad(&e))?,
            code: u16::try_from(row.code).map_err(|e| bad(&e))?,
            pending_id: row.pending_id.map(TransferId::from_stored),
            timeout_s: row
                .timeout_s
                .map(|t| u32::try_from(t).map_err(|e| bad(&e)))
                .transpose()?,
            expires_at: row.expires_at.map(to_timestamp),
            state,
            metadata: Metadata::parse(Some(row.metadata)).map_err(|e| bad(&e))?,
            created_at: to_timestamp(row.created_at),
        })
    }
}
