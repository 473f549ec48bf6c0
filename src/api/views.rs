//! What the API returns: accounts, balances and transfers as JSON, with amounts as decimal strings
//! in their currency's scale and times as RFC 3339 UTC.

use chrono::SecondsFormat;
use ledger::{
    Account, BalanceLimit, Balances, Currency, PendingState, Timestamp, Transfer, TransferKind, format_minor,
};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::store::rows::to_datetime;

pub fn rfc3339(timestamp: Timestamp) -> String {
    rfc3339_utc(to_datetime(timestamp))
}

/// A stored time as the API and events show it: RFC 3339, UTC, microseconds.
pub fn rfc3339_utc(at: chrono::DateTime<chrono::Utc>) -> String {
    at.to_rfc3339_opts(SecondsFormat::Micros, true)
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BalancesView {
    #[schema(example = "0.00")]
    pub debits_posted: String,
    #[schema(example = "12.34")]
    pub credits_posted: String,
    pub debits_pending: String,
    pub credits_pending: String,
}

impl BalancesView {
    pub fn new(balances: &Balances, currency: Currency) -> BalancesView {
        BalancesView {
            debits_posted: format_minor(balances.debits_posted, currency),
            credits_posted: format_minor(balances.credits_posted, currency),
            debits_pending: format_minor(balances.debits_pending, currency),
            credits_pending: format_minor(balances.credits_pending, currency),
        }
    }
}

/// The balance-constraint flags of an account.
#[derive(Debug, Default, Serialize, serde::Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct AccountFlagsView {
    pub debits_must_not_exceed_credits: bool,
    pub credits_must_not_exceed_debits: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AccountView {
    pub id: Uuid,
    #[schema(example = "USD")]
    pub currency: String,
    pub code: u16,
    pub owner: String,
    pub flags: AccountFlagsView,
    /// How far the constrained side may exceed the other; null without a constraint.
    pub overdraft_limit: Option<String>,
    pub closed: bool,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    #[schema(example = "2026-11-21T10:00:00.000000Z")]
    pub created_at: String,
    pub balances: BalancesView,
}

impl AccountView {
    pub fn new(account: &Account) -> AccountView {
        let (flags, overdraft_minor) = match account.limit {
            BalanceLimit::None => (AccountFlagsView::default(), None),
            BalanceLimit::Debits { overdraft_minor } => (
                AccountFlagsView {
                    debits_must_not_exceed_credits: true,
                    credits_must_not_exceed_debits: false,
                },
                Some(overdraft_minor),
            ),
            BalanceLimit::Credits { overdraft_minor } => (
                AccountFlagsView {
                    debits_must_not_exceed_credits: false,
                    credits_must_not_exceed_debits: true,
                },
                Some(overdraft_minor),
            ),
        };
        AccountView {
            id: account.id.uuid(),
            currency: account.currency.code().to_string(),
            code: account.code,
            owner: account.owner.clone(),
            flags,
            overdraft_limit: overdraft_minor.map(|minor| format_minor(minor, account.currency)),
            closed: account.closed,
            metadata: serde_json::Value::Object(account.metadata.as_map().clone()),
            created_at: rfc3339(account.created_at),
            balances: BalancesView::new(&account.balances, account.currency),
        }
    }
}

/// A pending transfer's deadline and where it stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct PendingView {
    pub timeout_s: u32,
    pub expires_at: String,
    #[schema(value_type = String, example = "pending")]
    pub state: PendingState,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TransferView {
    pub id: Uuid,
    #[schema(value_type = String, example = "single")]
    pub kind: TransferKind,
    pub debit_account_id: Uuid,
    pub credit_account_id: Uuid,
    #[schema(example = "12.34")]
    pub amount: String,
    #[schema(example = "USD")]
    pub currency: String,
    pub code: u16,
    pub linked: bool,
    /// Set on pending transfers.
    pub pending: Option<PendingView>,
    /// Set on posts and voids: the pending transfer they resolve.
    pub pending_id: Option<Uuid>,
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
    pub created_at: String,
}

impl TransferView {
    pub fn new(transfer: &Transfer) -> TransferView {
        let pending = match (transfer.timeout_s, transfer.expires_at, transfer.state) {
            (Some(timeout_s), Some(expires_at), Some(state)) => Some(PendingView {
                timeout_s,
                expires_at: rfc3339(expires_at),
                state,
            }),
            _ => None,
        };
        TransferView {
            id: transfer.id.uuid(),
            kind: transfer.kind,
            debit_account_id: transfer.debit_account_id.uuid(),
            credit_account_id: transfer.credit_account_id.uuid(),
            amount: format_minor(transfer.amount.minor(), transfer.currency),
            currency: transfer.currency.code().to_string(),
            code: transfer.code,
            linked: transfer.linked,
            pending,
            pending_id: transfer.pending_id.map(|id| id.uuid()),
            metadata: serde_json::Value::Object(transfer.metadata.as_map().clone()),
            created_at: rfc3339(transfer.created_at),
        }
    }
}
