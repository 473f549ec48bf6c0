//! Bad input to the domain: each invalid id, amount, currency, flag combination or field gets its own
//! code at parse time, before any state is consulted.

mod common;

use common::*;
use ledger::{AccountFlags, AccountRequest, ErrorCode, TIMEOUT_S_MAX, TransferFlags, TransferRequest};
use uuid::Uuid;

fn account_request() -> AccountRequest {
    AccountRequest {
        id: id(1),
        currency: "USD".to_string(),
        code: 1,
        owner: "payments".to_string(),
        flags: AccountFlags::default(),
        overdraft_limit: None,
        metadata: None,
    }
}

#[test]
fn invalid_accounts_get_their_codes() {
    let both = AccountFlags {
        debits_must_not_exceed_credits: true,
        credits_must_not_exceed_debits: true,
    };
    let cases: Vec<(AccountRequest, ErrorCode)> = vec![
        (
            AccountRequest {
                id: Uuid::nil(),
                ..account_request()
            },
            ErrorCode::IdMustNotBeZero,
        ),
        (
            AccountRequest {
                currency: "US".into(),
                ..account_request()
            },
            ErrorCode::InvalidCurrency,
        ),
        (
            AccountRequest {
                currency: "XXX".into(),
                ..account_request()
            },
            ErrorCode::CurrencyHasNoMinorUnit,
        ),
        (
            AccountRequest {
                code: 0,
                ..account_request()
            },
            ErrorCode::CodeMustNotBeZero,
        ),
        (
            AccountRequest {
                owner: String::new(),
                ..account_request()
            },
            ErrorCode::InvalidOwner,
        ),
        (
            AccountRequest {
                owner: "a\nb".into(),
                ..account_request()
            },
            ErrorCode::InvalidOwner,
        ),
        (
            AccountRequest {
                owner: "x".repeat(257),
                ..account_request()
            },
            ErrorCode::InvalidOwner,
        ),
        (
            AccountRequest {
                flags: both,
                ..account_request()
            },
            ErrorCode::FlagsAreMutuallyExclusive,
        ),
        (
            AccountRequest {
                overdraft_limit: Some("5.00".into()),
                ..account_request()
            },
            ErrorCode::OverdraftLimitRequiresBalanceConstraint,
        ),
        (
            AccountRequest {
                flags: DEBITS_LIMITED,
                overdraft_limit: Some("5.001".into()),
                ..account_request()
            },
            ErrorCode::AmountExceedsCurrencyScale,
        ),
        (
            AccountRequest {
                metadata: Some(serde_json::json!([1])),
                ..account_request()
            },
            ErrorCode::MetadataMustBeObject,
        ),
        (
            AccountRequest {
                metadata: Some(serde_json::json!({"k": "v".repeat(5000)})),
                ..account_request()
            },
            ErrorCode::MetadataTooLarge,
        ),
    ];
    for (request, code) in cases {
        assert_eq!(request.clone().parse().map(|_| ()), Err(code), "{request:?}");
    }
    assert!(account_request().parse().is_ok());
}

#[test]
fn invalid_transfers_get_their_codes() {
    let base = || transfer_request(100, 1, 2, "1.00");
    let flags = |pending, post, void| TransferFlags {
        linked: false,
        pending,
        post_pending_transfer: post,
        void_pending_transfer: void,
    };
    let cases: Vec<(TransferRequest, ErrorCode)> = vec![
        (
            TransferRequest {
                id: Uuid::nil(),
                ..base()
            },
            ErrorCode::IdMustNotBeZero,
        ),
        (
            TransferRequest {
                debit_account_id: None,
                ..base()
            },
            ErrorCode::DebitAccountIdMustNotBeZero,
        ),
        (
            TransferRequest {
                debit_account_id: Some(Uuid::nil()),
                ..base()
            },
            ErrorCode::DebitAccountIdMustNotBeZero,
        ),
        (
            TransferRequest {
                credit_account_id: None,
                ..base()
            },
            ErrorCode::CreditAccountIdMustNotBeZero,
        ),
        (
            TransferRequest {
                credit_account_id: Some(id(1)),
                ..base()
            },
            ErrorCode::AccountsMustBeDifferent,
        ),
        (TransferRequest { amount: None, ..base() }, ErrorCode::AmountRequired),
        (
            TransferRequest {
                amount: Some("0".into()),
                ..base()
            },
            ErrorCode::AmountMustNotBeZero,
        ),
        (
            TransferRequest {
                amount: Some("-5".into()),
                ..base()
            },
            ErrorCode::AmountMustNotBeNegative,
        ),
        (
            TransferRequest {
                amount: Some("1.001".into()),
                ..base()
            },
            ErrorCode::AmountExceedsCurrencyScale,
        ),
        (
            TransferRequest {
                amount: Some("1e2".into()),
                ..base()
            },
            ErrorCode::InvalidAmount,
        ),
        (
            TransferRequest {
                amount: Some("92233720368547758.08".into()),
                ..base()
            },
            ErrorCode::AmountOverflow,
        ),
        (
            TransferRequest {
                currency: None,
                ..base()
            },
            ErrorCode::CurrencyRequired,
        ),
        (
            TransferRequest {
                currency: Some("usd".into()),
                ..base()
            },
            ErrorCode::InvalidCurrency,
        ),
        (TransferRequest { code: 0, ..base() }, ErrorCode::CodeMustNotBeZero),
        (
            TransferRequest {
                flags: flags(true, true, false),
                ..base()
            },
            ErrorCode::FlagsAreMutuallyExclusive,
        ),
        (
            TransferRequest {
                flags: flags(false, true, true),
                ..base()
            },
            ErrorCode::FlagsAreMutuallyExclusive,
        ),
        (
            TransferRequest {
                flags: flags(true, false, true),
                ..base()
            },
            ErrorCode::FlagsAreMutuallyExclusive,
        ),
        (
            TransferRequest {
                flags: flags(true, false, false),
                ..base()
            },
            ErrorCode::TimeoutRequired,
        ),
        (
            TransferRequest {
                flags: flags(true, false, false),
                timeout_s: Some(0),
                ..base()
            },
            ErrorCode::TimeoutRequired,
        ),
        (
            TransferRequest {
                flags: flags(true, false, false),
                timeout_s: Some(TIMEOUT_S_MAX + 1),
                ..base()
            },
            ErrorCode::OverflowsTimeout,
        ),
        (
            TransferRequest {
                timeout_s: Some(60),
                ..base()
            },
            ErrorCode::TimeoutReservedForPendingTransfer,
        ),
        (
            TransferRequest {
                pending_id: Some(id(7)),
                ..base()
            },
            ErrorCode::PendingIdMustBeZero,
        ),
        (
            TransferRequest {
                flags: flags(false, true, false),
                ..base()
            },
            ErrorCode::PendingIdMustNotBeZero,
        ),
        (
            TransferRequest {
                flags: flags(false, false, true),
                pending_id: Some(Uuid::nil()),
                ..base()
            },
            ErrorCode::PendingIdMustNotBeZero,
        ),
        (
            TransferRequest {
                flags: flags(false, true, false),
                pending_id: Some(id(100)),
                ..base()
            },
            ErrorCode::PendingIdMustBeDifferent,
        ),
        (
            TransferRequest {
                flags: flags(false, true, false),
                pending_id: Some(id(7)),
                amount: Some("0.001".into()),
                ..base()
            },
            ErrorCode::AmountExceedsCurrencyScale,
        ),
        (
            TransferRequest {
                metadata: Some(serde_json::json!("note")),
                ..base()
            },
            ErrorCode::MetadataMustBeObject,
        ),
    ];
    for (request, code) in cases {
        assert_eq!(request.clone().parse().map(|_| ()), Err(code), "{request:?}");
    }
    assert!(base().parse().is_ok());
}
