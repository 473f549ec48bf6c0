//! Result codes: one precise, stable name for every way a command can be refused.
//!
//! Modelled on TigerBeetle's CreateAccountStatus / CreateTransferStatus. The snake_case names are part
//! of the public contract (they appear in API errors and audit records) and never change meaning.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    // Input that can never be valid, whatever the ledger's state.
    #[error("the id must not be the nil UUID")]
    IdMustNotBeZero,
    #[error("the id is in the namespace reserved for the ledger's own accounts and transfers")]
    IdReserved,
    #[error("the amount is not a plain decimal number")]
    InvalidAmount,
    #[error("the amount must not be zero")]
    AmountMustNotBeZero,
    #[error("the amount must not be negative")]
    AmountMustNotBeNegative,
    #[error("the amount has more decimals than the currency's minor unit")]
    AmountExceedsCurrencyScale,
    #[error("the amount is larger than the largest representable amount")]
    AmountOverflow,
    #[error("the amount is required")]
    AmountRequired,
    #[error("the currency is not an ISO 4217 code")]
    InvalidCurrency,
    #[error("the currency has no minor unit and cannot hold a balance")]
    CurrencyHasNoMinorUnit,
    #[error("the currency is required")]
    CurrencyRequired,
    #[error("the code must not be zero")]
    CodeMustNotBeZero,
    #[error("the owner must be 1 to 256 printable characters")]
    InvalidOwner,
    #[error("metadata must be a JSON object")]
    MetadataMustBeObject,
    #[error("metadata is larger than allowed")]
    MetadataTooLarge,
    #[error("flags that cannot be combined were set together")]
    FlagsAreMutuallyExclusive,
    #[error("an overdraft limit needs one of the balance-constraint flags")]
    OverdraftLimitRequiresBalanceConstraint,
    #[error("the debit account id is required and must not be the nil UUID")]
    DebitAccountIdMustNotBeZero,
    #[error("the credit account id is required and must not be the nil UUID")]
    CreditAccountIdMustNotBeZero,
    #[error("the debit and credit accounts must be different")]
    AccountsMustBeDifferent,
    #[error("a pending id is only allowed when posting or voiding a pending transfer")]
    PendingIdMustBeZero,
    #[error("the pending id is required and must not be the nil UUID")]
    PendingIdMustNotBeZero,
    #[error("the pending id must differ from the transfer's own id")]
    PendingIdMustBeDifferent,
    #[error("a timeout is only allowed on a pending transfer")]
    TimeoutReservedForPendingTransfer,
    #[error("a pending transfer needs a timeout of at least one second")]
    TimeoutRequired,
    #[error("the timeout is longer than allowed")]
    OverflowsTimeout,

    // Idempotency: the id was used before.
    #[error("this id was used with different flags")]
    ExistsWithDifferentFlags,
    #[error("this id was used with a different pending id")]
    ExistsWithDifferentPendingId,
    #[error("this id was used with a different timeout")]
    ExistsWithDifferentTimeout,
    #[error("this id was used with a different debit account")]
    ExistsWithDifferentDebitAccountId,
    #[error("this id was used with a different credit account")]
    ExistsWithDifferentCreditAccountId,
    #[error("this id was used with a different amount")]
    ExistsWithDifferentAmount,
    #[error("this id was used with a different currency")]
    ExistsWithDifferentCurrency,
    #[error("this id was used with a different code")]
    ExistsWithDifferentCode,
    #[error("this id was used with a different owner")]
    ExistsWithDifferentOwner,
    #[error("this id was used with a different overdraft limit")]
    ExistsWithDifferentOverdraftLimit,
    #[error("this id was used with different metadata")]
    ExistsWithDifferentMetadata,

    // Refusals that depend on the ledger's state.
    #[error("the account does not exist")]
    AccountNotFound,
    #[error("the account is already closed")]
    AccountAlreadyClosed,
    #[error("the account has pending amounts and cannot be closed")]
    AccountHasPendingTransfers,
    #[error("the debit account does not exist")]
    DebitAccountNotFound,
    #[error("the credit account does not exist")]
    CreditAccountNotFound,
    #[error("the transfer's currency differs from an account's currency")]
    CurrencyMismatch,
    #[error("an account of the transfer is closed")]
    AccountClosed,
    #[error("the debit would exceed the debit account's credits")]
    ExceedsCredits,
    #[error("the credit would exceed the credit account's debits")]
    ExceedsDebits,
    #[error("the transfer would exceed the account's overdraft limit")]
    ExceedsOverdraftLimit,
    #[error("the pending transfer does not exist")]
    PendingTransferNotFound,
    #[error("the referenced transfer is not a pending transfer")]
    PendingTransferNotPending,
    #[error("the pending transfer was already posted")]
    PendingTransferAlreadyPosted,
    #[error("the pending transfer was already voided")]
    PendingTransferAlreadyVoided,
    #[error("the pending transfer expired")]
    PendingTransferExpired,
    #[error("the pending transfer has a different debit account")]
    PendingTransferHasDifferentDebitAccountId,
    #[error("the pending transfer has a different credit account")]
    PendingTransferHasDifferentCreditAccountId,
    #[error("the pending transfer has a different currency")]
    PendingTransferHasDifferentCurrency,
    #[error("the pending transfer has a different code")]
    PendingTransferHasDifferentCode,
    #[error("a void must name the pending transfer's full amount, or none")]
    PendingTransferHasDifferentAmount,
    #[error("the amount exceeds the pending transfer's amount")]
    ExceedsPendingTransferAmount,
    #[error("another command of the linked chain failed")]
    LinkedEventFailed,
    #[error("the linked chain is not closed: its last command has the linked flag")]
    LinkedEventChainOpen,
    #[error("the debit account's posted debits would overflow")]
    OverflowsDebitsPosted,
    #[error("the credit account's posted credits would overflow")]
    OverflowsCreditsPosted,
    #[error("the debit account's pending debits would overflow")]
    OverflowsDebitsPending,
    #[error("the credit account's pending credits would overflow")]
    OverflowsCreditsPending,
    #[error("the debit account's posted plus pending debits would overflow")]
    OverflowsDebits,
    #[error("the credit account's posted plus pending credits would overflow")]
    OverflowsCredits,
    #[error("refused by a fraud or sanctions rule")]
    FraudDenied,
}

// One list gives both the wire name of each code and the list of all codes; a test checks the names
// against serde's.
macro_rules! wire_names {
    ($($variant:ident => $name:literal),* $(,)?) => {
        impl ErrorCode {
            /// Every code, for exhaustive tests and documentation.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),*];

            /// The stable snake_case name, as it appears on the wire.
            pub fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $name),* }
            }
        }
    };
}

wire_names! {
    IdMustNotBeZero => "id_must_not_be_zero",
    IdReserved => "id_reserved",
    InvalidAmount => "invalid_amount",
    AmountMustNotBeZero => "amount_must_not_be_zero",
    AmountMustNotBeNegative => "amount_must_not_be_negative",
    AmountExceedsCurrencyScale => "amount_exceeds_currency_scale",
    AmountOverflow => "amount_overflow",
    AmountRequired => "amount_required",
    InvalidCurrency => "invalid_currency",
    CurrencyHasNoMinorUnit => "currency_has_no_minor_unit",
    CurrencyRequired => "currency_required",
    CodeMustNotBeZero => "code_must_not_be_zero",
    InvalidOwner => "invalid_owner",
    MetadataMustBeObject => "metadata_must_be_object",
    MetadataTooLarge => "metadata_too_large",
    FlagsAreMutuallyExclusive => "flags_are_mutually_exclusive",
    OverdraftLimitRequiresBalanceConstraint => "overdraft_limit_requires_balance_constraint",
    DebitAccountIdMustNotBeZero => "debit_account_id_must_not_be_zero",
    CreditAccountIdMustNotBeZero => "credit_account_id_must_not_be_zero",
    AccountsMustBeDifferent => "accounts_must_be_different",
    PendingIdMustBeZero => "pending_id_must_be_zero",
    PendingIdMustNotBeZero => "pending_id_must_not_be_zero",
    PendingIdMustBeDifferent => "pending_id_must_be_different",
    TimeoutReservedForPendingTransfer => "timeout_reserved_for_pending_transfer",
    TimeoutRequired => "timeout_required",
    OverflowsTimeout => "overflows_timeout",
    ExistsWithDifferentFlags => "exists_with_different_flags",
    ExistsWithDifferentPendingId => "exists_with_different_pending_id",
    ExistsWithDifferentTimeout => "exists_with_different_timeout",
    ExistsWithDifferentDebitAccountId => "exists_with_different_debit_account_id",
    ExistsWithDifferentCreditAccountId => "exists_with_different_credit_account_id",
    ExistsWithDifferentAmount => "exists_with_different_amount",
    ExistsWithDifferentCurrency => "exists_with_different_currency",
    ExistsWithDifferentCode => "exists_with_different_code",
    ExistsWithDifferentOwner => "exists_with_different_owner",
    ExistsWithDifferentOverdraftLimit => "exists_with_different_overdraft_limit",
    ExistsWithDifferentMetadata => "exists_with_different_metadata",
    AccountNotFound => "account_not_found",
    AccountAlreadyClosed => "account_already_closed",
    AccountHasPendingTransfers => "account_has_pending_transfers",
    DebitAccountNotFound => "debit_account_not_found",
    CreditAccountNotFound => "credit_account_not_found",
    CurrencyMismatch => "currency_mismatch",
    AccountClosed => "account_closed",
    ExceedsCredits => "exceeds_credits",
    ExceedsDebits => "exceeds_debits",
    ExceedsOverdraftLimit => "exceeds_overdraft_limit",
    PendingTransferNotFound => "pending_transfer_not_found",
    PendingTransferNotPending => "pending_transfer_not_pending",
    PendingTransferAlreadyPosted => "pending_transfer_already_posted",
    PendingTransferAlreadyVoided => "pending_transfer_already_voided",
    PendingTransferExpired => "pending_transfer_expired",
    PendingTransferHasDifferentDebitAccountId => "pending_transfer_has_different_debit_account_id",
    PendingTransferHasDifferentCreditAccountId => "pending_transfer_has_different_credit_account_id",
    PendingTransferHasDifferentCurrency => "pending_transfer_has_different_currency",
    PendingTransferHasDifferentCode => "pending_transfer_has_different_code",
    PendingTransferHasDifferentAmount => "pending_transfer_has_different_amount",
    ExceedsPendingTransferAmount => "exceeds_pending_transfer_amount",
    LinkedEventFailed => "linked_event_failed",
    LinkedEventChainOpen => "linked_event_chain_open",
    OverflowsDebitsPosted => "overflows_debits_posted",
    OverflowsCreditsPosted => "overflows_credits_posted",
    OverflowsDebitsPending => "overflows_debits_pending",
    OverflowsCreditsPending => "overflows_credits_pending",
    OverflowsDebits => "overflows_debits",
    OverflowsCredits => "overflows_credits",
    FraudDenied => "fraud_denied",
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_match_serde_and_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for code in ErrorCode::ALL {
            let serde_name = serde_json::to_value(code).unwrap();
            assert_eq!(serde_name, serde_json::Value::from(code.as_str()));
            assert!(seen.insert(code.as_str()), "duplicate {}", code.as_str());
        }
        assert_eq!(seen.len(), ErrorCode::ALL.len());
    }
}
