//! Accounts and their balances.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{AMOUNT_MAX, AccountId, Amount, Currency, ErrorCode, Metadata, Timestamp};

/// Longest owner name, in characters.
pub const OWNER_LENGTH_MAX: usize = 256;

/// Balance-constraint flags of an account, as a client sends them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AccountFlags {
    pub debits_must_not_exceed_credits: bool,
    pub credits_must_not_exceed_debits: bool,
}

/// An account creation as a client sends it: unvalidated.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccountRequest {
    pub id: Uuid,
    pub currency: String,
    pub code: u16,
    pub owner: String,
    #[serde(default)]
    pub flags: AccountFlags,
    #[serde(default)]
    pub overdraft_limit: Option<String>,
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
}

/// How far one side of an account may exceed the other, if it is constrained at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum BalanceLimit {
    /// No constraint.
    None,
    /// Debits (posted + pending) may exceed posted credits by at most this many minor units.
    Debits { overdraft_minor: u64 },
    /// Credits (posted + pending) may exceed posted debits by at most this many minor units.
    Credits { overdraft_minor: u64 },
}

/// A validated account creation.
#[derive(Clone, Debug, PartialEq)]
pub struct NewAccount {
    pub id: AccountId,
    pub currency: Currency,
    pub code: u16,
    pub owner: String,
    pub limit: BalanceLimit,
    pub metadata: Metadata,
}

impl AccountRequest {
    pub fn parse(self) -> Result<NewAccount, ErrorCode> {
        let id = AccountId::parse(self.id, ErrorCode::IdMustNotBeZero)?;
        let currency = Currency::from_code(&self.currency)?;
        if self.code == 0 {
            return Err(ErrorCode::CodeMustNotBeZero);
        }
        let owner_length = self.owner.chars().count();
        if owner_length == 0 || owner_length > OWNER_LENGTH_MAX || self.owner.chars().any(char::is_control) {
            return Err(ErrorCode::InvalidOwner);
        }
        let overdraft_minor = match &self.overdraft_limit {
            None => 0,
            Some(text) => Amount::parse(text, currency)?.minor(),
        };
        let limit = match (self.flags, self.overdraft_limit.is_some()) {
            (
                AccountFlags {
                    debits_must_not_exceed_credits: true,
                    credits_must_not_exceed_debits: true,
                },
                _,
            ) => return Err(ErrorCode::FlagsAreMutuallyExclusive),
            (
                AccountFlags {
                    debits_must_not_exceed_credits: true,
                    ..
                },
                _,
            ) => BalanceLimit::Debits { overdraft_minor },
            (
                AccountFlags {
                    credits_must_not_exceed_debits: true,
                    ..
                },
                _,
            ) => BalanceLimit::Credits { overdraft_minor },
            (_, true) => return Err(ErrorCode::OverdraftLimitRequiresBalanceConstraint),
            (_, false) => BalanceLimit::None,
        };
        let metadata = Metadata::parse(self.metadata)?;
        Ok(NewAccount {
            id,
            currency,
            code: self.code,
            owner: self.owner,
            limit,
            metadata,
        })
    }
}

/// Debits and credits of an account, each posted and pending, in minor units.
///
/// Each field and each side's posted + pending stay at most [`AMOUNT_MAX`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Balances {
    pub debits_posted: u64,
    pub credits_posted: u64,
    pub debits_pending: u64,
    pub credits_pending: u64,
}

impl Balances {
    /// Whether the balances respect `limit`; the ledger asserts this after every change.
    pub fn respects(&self, limit: BalanceLimit) -> bool {
        let debits = u128::from(self.debits_posted) + u128::from(self.debits_pending);
        let credits = u128::from(self.credits_posted) + u128::from(self.credits_pending);
        let in_range = debits <= u128::from(AMOUNT_MAX) && credits <= u128::from(AMOUNT_MAX);
        in_range
            && match limit {
                BalanceLimit::None => true,
                BalanceLimit::Debits { overdraft_minor } => {
                    debits <= u128::from(self.credits_posted) + u128::from(overdraft_minor)
                }
                BalanceLimit::Credits { overdraft_minor } => {
                    credits <= u128::from(self.debits_posted) + u128::from(overdraft_minor)
                }
            }
    }
}

/// An account as the ledger holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct Account {
    pub id: AccountId,
    pub currency: Currency,
    pub code: u16,
    pub owner: String,
    pub limit: BalanceLimit,
    pub metadata: Metadata,
    pub closed: bool,
    pub created_at: Timestamp,
    pub balances: Balances,
}

impl Account {
    /// Ok when `request` is the creation of this very account (a replay); otherwise the first field
    /// that differs, as an `exists_with_different_*` code.
    pub fn compare(&self, request: &NewAccount) -> Result<(), ErrorCode> {
        let differs = if self.currency != request.currency {
            ErrorCode::ExistsWithDifferentCurrency
        } else if self.code != request.code {
            ErrorCode::ExistsWithDifferentCode
        } else if self.owner != request.owner {
            ErrorCode::ExistsWithDifferentOwner
        } else if std::mem::discriminant(&self.limit) != std::mem::discriminant(&request.limit) {
            ErrorCode::ExistsWithDifferentFlags
        } else if self.limit != request.limit {
            ErrorCode::ExistsWithDifferentOverdraftLimit
        } else if self.metadata != request.metadata {
            ErrorCode::ExistsWithDifferentMetadata
        } else {
            return Ok(());
        };
        Err(differs)
    }
}
