//! Checked balance arithmetic: every way a balance can overflow or break its account's limit has its
//! own result code.

use crate::{AMOUNT_MAX, BalanceLimit, Balances, ErrorCode};

/// Adds `amount` to `value`, refusing results above [`AMOUNT_MAX`].
fn add(value: u64, amount: u64, overflow: ErrorCode) -> Result<u64, ErrorCode> {
    value
        .checked_add(amount)
        .filter(|sum| *sum <= AMOUNT_MAX)
        .ok_or(overflow)
}

impl Balances {
    pub fn debit(self, amount: u64, pending: bool) -> Result<Balances, ErrorCode> {
        let mut next = self;
        if pending {
            next.debits_pending = add(self.debits_pending, amount, ErrorCode::OverflowsDebitsPending)?;
        } else {
            next.debits_posted = add(self.debits_posted, amount, ErrorCode::OverflowsDebitsPosted)?;
        }
        add(next.debits_posted, next.debits_pending, ErrorCode::OverflowsDebits)?;
        Ok(next)
    }

    pub fn credit(self, amount: u64, pending: bool) -> Result<Balances, ErrorCode> {
        let mut next = self;
        if pending {
            next.credits_pending = add(self.credits_pending, amount, ErrorCode::OverflowsCreditsPending)?;
        } else {
            next.credits_posted = add(self.credits_posted, amount, ErrorCode::OverflowsCreditsPosted)?;
        }
        add(next.credits_posted, next.credits_pending, ErrorCode::OverflowsCredits)?;
        Ok(next)
    }

    /// Releases a pending debit of `pending_minor` and posts `posted_minor` of it (zero for a void).
    pub fn resolve_debit(self, pending_minor: u64, posted_minor: u64) -> Result<Balances, ErrorCode> {
        assert!(posted_minor <= pending_minor && pending_minor <= self.debits_pending);
        let mut next = self;
        next.debits_pending -= pending_minor;
        next.debits_posted = add(self.debits_posted, posted_minor, ErrorCode::OverflowsDebitsPosted)?;
        Ok(next)
    }

    /// Releases a pending credit of `pending_minor` and posts `posted_minor` of it (zero for a void).
    pub fn resolve_credit(self, pending_minor: u64, posted_minor: u64) -> Result<Balances, ErrorCode> {
        assert!(posted_minor <= pending_minor && pending_minor <= self.credits_pending);
        let mut next = self;
        next.credits_pending -= pending_minor;
        next.credits_posted = add(self.credits_posted, posted_minor, ErrorCode::OverflowsCreditsPosted)?;
        Ok(next)
    }

    /// Refuses balances that break `limit`, naming which side broke it.
    pub fn check(self, limit: BalanceLimit) -> Result<Balances, ErrorCode> {
        if self.respects(limit) {
            return Ok(self);
        }
        Err(match limit {
            BalanceLimit::Debits { overdraft_minor: 0 } => ErrorCode::ExceedsCredits,
            BalanceLimit::Credits { overdraft_minor: 0 } => ErrorCode::ExceedsDebits,
            BalanceLimit::Debits { .. } | BalanceLimit::Credits { .. } => ErrorCode::ExceedsOverdraftLimit,
            BalanceLimit::None => ErrorCode::OverflowsDebits,
        })
    }

    /// Per-field difference `self - before`, for writing increments to storage.
    pub fn minus(self, before: Balances) -> BalanceDelta {
        let diff = |after: u64, before: u64| after as i64 - before as i64;
        BalanceDelta {
            debits_posted: diff(self.debits_posted, before.debits_posted),
            credits_posted: diff(self.credits_posted, before.credits_posted),
            debits_pending: diff(self.debits_pending, before.debits_pending),
            credits_pending: diff(self.credits_pending, before.credits_pending),
        }
    }
}

/// A change of balances; each field fits in an `i64` because balances stay within [0, AMOUNT_MAX].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BalanceDelta {
    pub debits_posted: i64,
    pub credits_posted: i64,
    pub debits_pending: i64,
    pub credits_pending: i64,
}

impl BalanceDelta {
    pub fn is_zero(self) -> bool {
        self == BalanceDelta::default()
    }
}
