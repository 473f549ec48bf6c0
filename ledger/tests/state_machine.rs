//! Scenarios: each result code of the state machine where a user would meet it.

mod common;

use common::*;
use ledger::{Applied, Command, ErrorCode, Ledger, PendingState, Timestamp, TransferId};

const T0: Timestamp = Timestamp::from_micros(1_700_000_000_000_000);

fn at(seconds: u32) -> Timestamp {
    T0.plus_seconds(seconds).unwrap()
}

/// A ledger with USD accounts 1 (unconstrained), 2 (debits limited), 3 (credits limited),
/// 4 (debits limited, 50.00 overdraft) and EUR account 9.
fn ledger() -> Ledger {
    let mut ledger = Ledger::new();
    let setup = [
        account(1, "USD", UNLIMITED, None),
        account(2, "USD", DEBITS_LIMITED, None),
        account(3, "USD", CREDITS_LIMITED, None),
        account(4, "USD", DEBITS_LIMITED, Some("50.00")),
        account(9, "EUR", UNLIMITED, None),
    ];
    let outcome = ledger.apply(&setup, T0);
    assert!(outcome.results.iter().all(|r| *r == Ok(Applied::Created)));
    ledger
}

fn results(ledger: &mut Ledger, commands: &[Command], now: Timestamp) -> Vec<Result<Applied, ErrorCode>> {
    ledger.apply(commands, now).results
}

fn balances(ledger: &Ledger, n: u128) -> (u64, u64, u64, u64) {
    let account = ledger
        .account(ledger::AccountId::parse(id(n), ErrorCode::IdMustNotBeZero).unwrap())
        .unwrap();
    let b = account.balances;
    (b.debits_posted, b.credits_posted, b.debits_pending, b.credits_pending)
}

fn transfer_id(n: u128) -> TransferId {
    TransferId::parse(id(n), ErrorCode::IdMustNotBeZero).unwrap()
}

#[test]
fn a_transfer_moves_money_and_replaying_it_changes_nothing() {
    let mut ledger = ledger();
    assert_eq!(
        results(&mut ledger, &[transfer(100, 1, 2, "12.34")], T0),
        [Ok(Applied::Created)]
    );
    assert_eq!(balances(&ledger, 1), (1234, 0, 0, 0));
    assert_eq!(balances(&ledger, 2), (0, 1234, 0, 0));
    assert_eq!(
        results(&mut ledger, &[transfer(100, 1, 2, "12.34")], at(5)),
        [Ok(Applied::Exists)]
    );
    assert_eq!(balances(&ledger, 2), (0, 1234, 0, 0));
}

#[test]
fn the_same_id_with_different_fields_names_the_field() {
    let mut ledger = ledger();
    results(&mut ledger, &[transfer(100, 1, 2, "12.34")], T0);
    let cases = [
        (transfer(100, 1, 2, "12.35"), ErrorCode::ExistsWithDifferentAmount),
        (
            transfer(100, 4, 2, "12.34"),
            ErrorCode::ExistsWithDifferentDebitAccountId,
        ),
        (
            transfer(100, 1, 3, "12.34"),
            ErrorCode::ExistsWithDifferentCreditAccountId,
        ),
        (pending(100, 1, 2, "12.34", 60), ErrorCode::ExistsWithDifferentFlags),
        (linked(transfer(100, 1, 2, "12.34")), ErrorCode::LinkedEventChainOpen),
    ];
    for (command, code) in cases {
        assert_eq!(results(&mut ledger, &[command], T0), [Err(code)]);
    }
    let mut other_code = transfer_request(100, 1, 2, "12.34");
    other_code.code = 7;
    let command = Command::CreateTransfer(other_code.parse().unwrap());
    assert_eq!(
        results(&mut ledger, &[command], T0),
        [Err(ErrorCode::ExistsWithDifferentCode)]
    );
    let mut other_metadata = transfer_request(100, 1, 2, "12.34");
    other_metadata.metadata = Some(serde_json::json!({"order": "A-1"}));
    let command = Command::CreateTransfer(other_metadata.parse().unwrap());
    assert_eq!(
        results(&mut ledger, &[command], T0),
        [Err(ErrorCode::ExistsWithDifferentMetadata)]
    );
    assert_eq!(balances(&ledger, 2), (0, 1234, 0, 0));
}

#[test]
fn account_state_refusals_have_their_codes() {
    let mut ledger = ledger();
    let cases = [
        (transfer(100, 7, 2, "1.00"), ErrorCode::DebitAccountNotFound),
        (transfer(101, 1, 7, "1.00"), ErrorCode::CreditAccountNotFound),
        (transfer(102, 1, 9, "1.00"), ErrorCode::CurrencyMismatch),
        (transfer(103, 2, 1, "0.01"), ErrorCode::ExceedsCredits),
        (transfer(104, 1, 3, "0.01"), ErrorCode::ExceedsDebits),
        (transfer(105, 4, 1, "50.01"), ErrorCode::ExceedsOverdraftLimit),
    ];
    for (command, code) in cases {
        assert_eq!(results(&mut ledger, &[command], T0), [Err(code)]);
    }
    assert_eq!(
        results(&mut ledger, &[transfer(106, 4, 1, "50.00")], T0),
        [Ok(Applied::Created)]
    );
    assert_eq!(balances(&ledger, 4), (5000, 0, 0, 0));
}

#[test]
fn a_closed_account_refuses_transfers_and_closing_is_idempotent() {
    let mut ledger = ledger();
    let close = Command::CloseAccount(ledger::AccountId::parse(id(1), ErrorCode::IdMustNotBeZero).unwrap());
    assert_eq!(
        results(&mut ledger, std::slice::from_ref(&close), T0),
        [Ok(Applied::Created)]
    );
    assert_eq!(results(&mut ledger, &[close], T0), [Ok(Applied::Exists)]);
    assert_eq!(
        results(&mut ledger, &[transfer(100, 1, 2, "1.00")], T0),
        [Err(ErrorCode::AccountClosed)]
    );
}

#[test]
fn an_account_with_pending_amounts_cannot_be_closed() {
    let mut ledger = ledger();
    results(&mut ledger, &[pending(100, 1, 2, "1.00", 60)], T0);
    let close = Command::CloseAccount(ledger::AccountId::parse(id(1), ErrorCode::IdMustNotBeZero).unwrap());
    assert_eq!(
        results(&mut ledger, &[close], T0),
        [Err(ErrorCode::AccountHasPendingTransfers)]
    );
}

#[test]
fn two_phase_post_full_partial_and_void() {
    let mut ledger = ledger();
    let setup = [
        pending(100, 1, 2, "10.00", 60),
        pending(101, 1, 2, "10.00", 60),
        pending(102, 1, 2, "10.00", 60),
    ];
    assert!(
        results(&mut ledger, &setup, T0)
            .iter()
            .all(|r| *r == Ok(Applied::Created))
    );
    assert_eq!(balances(&ledger, 1), (0, 0, 3000, 0));
    let steps = [post(200, 100, None), post(201, 101, Some("4.00")), void(202, 102)];
    assert!(
        results(&mut ledger, &steps, at(1))
            .iter()
            .all(|r| *r == Ok(Applied::Created))
    );
    assert_eq!(balances(&ledger, 1), (1400, 0, 0, 0));
    assert_eq!(balances(&ledger, 2), (0, 1400, 0, 0));
    let again = [post(203, 100, None), void(204, 101), post(205, 102, None)];
    assert_eq!(
        results(&mut ledger, &again, at(2)),
        [
            Err(ErrorCode::PendingTransferAlreadyPosted),
            Err(ErrorCode::PendingTransferAlreadyPosted),
            Err(ErrorCode::PendingTransferAlreadyVoided)
        ]
    );
    assert_eq!(
        results(&mut ledger, &[post(201, 101, Some("4.00"))], at(3)),
        [Ok(Applied::Exists)]
    );
    assert_eq!(
        results(&mut ledger, &[post(201, 101, None)], at(3)),
        [Err(ErrorCode::ExistsWithDifferentAmount)]
    );
    assert_eq!(
        results(&mut ledger, &[post(200, 100, None)], at(3)),
        [Ok(Applied::Exists)]
    );
}

#[test]
fn post_and_void_refusals_have_their_codes() {
    let mut ledger = ledger();
    results(
        &mut ledger,
        &[pending(100, 1, 2, "10.00", 60), transfer(101, 1, 2, "1.00")],
        T0,
    );
    let mut wrong_debit = resolve_request(206, 100, None, true);
    wrong_debit.debit_account_id = Some(id(4));
    let mut wrong_currency = resolve_request(207, 100, None, true);
    wrong_currency.currency = Some("EUR".to_string());
    let mut wrong_code = resolve_request(208, 100, None, true);
    wrong_code.code = 9;
    let cases = [
        (post(200, 999, None), ErrorCode::PendingTransferNotFound),
        (post(201, 101, None), ErrorCode::PendingTransferNotPending),
        (post(202, 100, Some("10.01")), ErrorCode::ExceedsPendingTransferAmount),
        (post(203, 100, Some("1.001")), ErrorCode::AmountExceedsCurrencyScale),
        (
            Command::CreateTransfer(resolve_request(204, 100, Some("3.00"), false).parse().unwrap()),
            ErrorCode::PendingTransferHasDifferentAmount,
        ),
        (
            Command::CreateTransfer(wrong_debit.parse().unwrap()),
            ErrorCode::PendingTransferHasDifferentDebitAccountId,
        ),
        (
            Command::CreateTransfer(wrong_currency.parse().unwrap()),
            ErrorCode::PendingTransferHasDifferentCurrency,
        ),
        (
            Command::CreateTransfer(wrong_code.parse().unwrap()),
            ErrorCode::PendingTransferHasDifferentCode,
        ),
    ];
    for (command, code) in cases {
        assert_eq!(results(&mut ledger, &[command], at(1)), [Err(code)]);
    }
    assert_eq!(balances(&ledger, 1), (100, 0, 1000, 0));
}

#[test]
fn pending_transfers_expire_deterministically_at_their_deadline() {
    let mut ledger = ledger();
    results(
        &mut ledger,
        &[pending(100, 1, 2, "10.00", 60), pending(101, 1, 2, "5.00", 30)],
        T0,
    );
    let outcome = ledger.apply(&[], at(29));
    assert!(outcome.changes.pending_resolved.is_empty());
    let outcome = ledger.apply(&[], at(60));
    assert_eq!(
        outcome.changes.pending_resolved,
        [
            (transfer_id(101), PendingState::Expired),
            (transfer_id(100), PendingState::Expired)
        ]
    );
    assert_eq!(balances(&ledger, 1), (0, 0, 0, 0));
    assert_eq!(
        results(&mut ledger, &[post(200, 100, None)], at(61)),
        [Err(ErrorCode::PendingTransferExpired)]
    );
    assert_eq!(ledger.next_expiry(), None);
}

#[test]
fn a_failing_linked_chain_applies_nothing() {
    let mut ledger = ledger();
    let chain = [
        linked(transfer(100, 1, 2, "5.00")),
        linked(transfer(101, 2, 1, "5.00")),
        transfer(102, 2, 1, "0.01"),
    ];
    assert_eq!(
        results(&mut ledger, &chain, T0),
        [
            Err(ErrorCode::LinkedEventFailed),
            Err(ErrorCode::LinkedEventFailed),
            Err(ErrorCode::ExceedsCredits)
        ]
    );
    assert_eq!(balances(&ledger, 1), (0, 0, 0, 0));
    assert!(ledger.transfer(transfer_id(100)).is_none());
    let chain = [linked(transfer(100, 1, 2, "5.00")), transfer(101, 2, 1, "5.00")];
    assert_eq!(
        results(&mut ledger, &chain, T0),
        [Ok(Applied::Created), Ok(Applied::Created)]
    );
    assert_eq!(balances(&ledger, 2), (500, 500, 0, 0));
}

#[test]
fn a_chain_left_open_fails_whole() {
    let mut ledger = ledger();
    let chain = [
        transfer(99, 1, 2, "1.00"),
        linked(transfer(100, 1, 2, "1.00")),
        linked(transfer(101, 1, 2, "1.00")),
    ];
    assert_eq!(
        results(&mut ledger, &chain, T0),
        [
            Ok(Applied::Created),
            Err(ErrorCode::LinkedEventFailed),
            Err(ErrorCode::LinkedEventChainOpen)
        ]
    );
    assert_eq!(balances(&ledger, 1), (100, 0, 0, 0));
}

#[test]
fn a_rolled_back_chain_restores_pending_state_and_deadlines() {
    let mut ledger = ledger();
    results(&mut ledger, &[pending(100, 1, 2, "10.00", 60)], T0);
    let chain = [linked(post(200, 100, None)), transfer(201, 2, 1, "99.00")];
    assert_eq!(
        results(&mut ledger, &chain, at(1)),
        [Err(ErrorCode::LinkedEventFailed), Err(ErrorCode::ExceedsCredits)]
    );
    assert_eq!(
        ledger.transfer(transfer_id(100)).unwrap().state,
        Some(PendingState::Pending)
    );
    assert_eq!(ledger.next_expiry(), Some(at(60)));
    assert_eq!(balances(&ledger, 1), (0, 0, 1000, 0));
}

#[test]
fn balances_refuse_to_overflow() {
    let mut ledger = ledger();
    let max = "92233720368547758.07";
    assert_eq!(
        results(&mut ledger, &[transfer(100, 1, 3, max)], T0),
        [Err(ErrorCode::ExceedsDebits)]
    );
    assert_eq!(
        results(&mut ledger, &[transfer(101, 1, 2, max)], T0),
        [Ok(Applied::Created)]
    );
    assert_eq!(
        results(&mut ledger, &[transfer(102, 1, 2, "0.01")], T0),
        [Err(ErrorCode::OverflowsDebitsPosted)]
    );
    assert_eq!(
        results(&mut ledger, &[transfer(103, 3, 2, "0.01")], T0),
        [Err(ErrorCode::OverflowsCreditsPosted)]
    );
    assert_eq!(
        results(&mut ledger, &[pending(104, 3, 1, max, 10)], T0),
        [Ok(Applied::Created)]
    );
    assert_eq!(
        results(&mut ledger, &[pending(105, 2, 1, "0.01", 10)], T0),
        [Err(ErrorCode::OverflowsCreditsPending)]
    );
    assert_eq!(
        results(&mut ledger, &[pending(106, 1, 4, "0.01", 10)], T0),
        [Err(ErrorCode::OverflowsDebits)]
    );
}

/// Refuses every command of chain index 1 at admission, as the service does with an id a caller may
/// not claim.
struct RefuseSecond;

impl ledger::Screen for RefuseSecond {
    fn admit(&mut self, index: usize, _: &Command) -> Result<(), ErrorCode> {
        if index == 1 { Err(ErrorCode::IdReserved) } else { Ok(()) }
    }

    fn screen(
        &mut self,
        _: &Ledger,
        _: usize,
        _: &ledger::NewTransfer,
        _: Timestamp,
    ) -> Result<Option<ledger::NewTransfer>, ErrorCode> {
        Ok(None)
    }

    fn settle(&mut self, _: bool) {}
}

#[test]
fn a_command_refused_at_admission_fails_its_chain_and_applies_nothing() {
    let mut ledger = ledger();
    let batch = [
        linked(transfer(20, 1, 2, "1.00")),
        transfer(21, 1, 2, "2.00"),
        transfer(22, 1, 2, "3.00"),
    ];
    let outcome = ledger.apply_screened(&batch, at(1), &mut RefuseSecond);
    assert_eq!(
        outcome.results,
        [
            Err(ErrorCode::LinkedEventFailed),
            Err(ErrorCode::IdReserved),
            Ok(Applied::Created)
        ]
    );
    assert_eq!(balances(&ledger, 1), (300, 0, 0, 0), "only the chain after it applied");
    assert!(ledger.transfer(transfer_id(20)).is_none());
}
