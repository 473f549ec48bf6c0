//! Approval limits: how much an initiator moves without a second principal's approval, per transfer
//! and in sum out of one account within the approval window. A transfer above either is created held,
//! with a review an approver decides (four eyes). The sum is what moved out of the account without a
//! review (held transfers are not counted, whatever their outcome), so splitting one amount into many
//! transfers at the limit, in one batch or over many requests, is held like the whole amount.
//!
//! The sequencer applies the limits as each transfer is screened (see [`crate::fraud::screen`]), with
//! the sums of everything applied before it, so they hold however requests interleave.

use ledger::{Movement, format_minor};

use crate::identity::Principal;

/// Why `movement`, initiated by `initiator`, must be held for approval, as its review's explanation,
/// given what moved out of its debit account without review within the last `window_s` seconds
/// (`moved_minor`); `None` when it is within both of the initiator's limits. A currency without a
/// limit holds every transfer in it.
pub fn hold(initiator: &Principal, movement: &Movement, moved_minor: u128, window_s: u32) -> Option<serde_json::Value> {
    let currency = movement.currency;
    let amount = movement.amount.minor();
    let per_transfer = initiator.approval_limit(currency.code());
    let aggregate = initiator.aggregate_limit(currency.code());
    let above_per_transfer = amount > per_transfer;
    if !above_per_transfer && moved_minor.saturating_add(u128::from(amount)) <= u128::from(aggregate) {
        return None;
    }
    let mut explanation = serde_json::json!({
        "initiator": initiator.name,
        "amount": movement.amount.format(currency),
        "currency": currency.code(),
        "approval_limit": format_minor(per_transfer, currency),
    });
    if above_per_transfer {
        explanation["limit"] = "per_transfer".into();
        return Some(explanation);
    }
    let moved = u64::try_from(moved_minor).unwrap_or(u64::MAX);
    explanation["limit"] = "aggregate".into();
    explanation["aggregate_limit"] = format_minor(aggregate, currency).into();
    explanation["window_s"] = window_s.into();
    explanation["moved_in_window"] = format_minor(moved, currency).into();
    Some(explanation)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ledger::{AccountId, Amount, Currency, ErrorCode};

    fn orders() -> Principal {
        Principal {
            name: "orders".to_string(),
            kind: crate::identity::PrincipalKind::Service,
            roles: Vec::new(),
            accounts: Vec::new(),
            approval_limits: [("USD".to_string(), 1_000_000)].into(),
            aggregate_limits: [("EUR".to_string(), 300)].into(),
        }
    }

    fn movement(text: &str, currency: &str) -> Movement {
        let currency = Currency::from_code(currency).unwrap();
        Movement {
            debit_account_id: AccountId::parse(uuid::Uuid::from_u128(1), ErrorCode::IdMustNotBeZero).unwrap(),
            credit_account_id: AccountId::parse(uuid::Uuid::from_u128(2), ErrorCode::IdMustNotBeZero).unwrap(),
            amount: Amount::parse(text, currency).unwrap(),
            currency,
        }
    }

    #[test]
    fn a_transfer_is_held_above_its_own_limit_or_above_the_sum_left_in_the_window() {
        let orders = orders();
        assert_eq!(hold(&orders, &movement("10000.00", "USD"), 0, 86_400), None);
        let single = hold(&orders, &movement("10000.01", "USD"), 0, 86_400).unwrap();
        assert_eq!(single["limit"], "per_transfer");
        assert_eq!(single["approval_limit"], "10000.00");
        // 6,000.00 already moved: 4,000.00 more is at the sum, 4,000.01 is above it.
        assert_eq!(hold(&orders, &movement("4000.00", "USD"), 600_000, 86_400), None);
        let split = hold(&orders, &movement("4000.01", "USD"), 600_000, 86_400).unwrap();
        assert_eq!(split["limit"], "aggregate");
        assert_eq!(split["aggregate_limit"], "10000.00");
        assert_eq!(split["moved_in_window"], "6000.00");
        assert_eq!(split["window_s"], 86_400);
    }

    #[test]
    fn a_currency_without_a_limit_holds_everything_and_an_aggregate_alone_bounds_nothing_per_transfer() {
        let orders = orders();
        assert_eq!(
            hold(&orders, &movement("0.01", "GBP"), 0, 60).unwrap()["limit"],
            "per_transfer"
        );
        // EUR has an aggregate limit but no approval limit: every transfer is above its own (zero).
        assert_eq!(
            hold(&orders, &movement("0.01", "EUR"), 0, 60).unwrap()["limit"],
            "per_transfer"
        );
    }
}
