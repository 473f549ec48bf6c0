//! The offline verifier against logs built with the appender, intact and tampered with.

use audit::log::Appender;
use audit::merkle::{Hash, Span, Subtree, TreeHasher};
use audit::note::{Checkpoint, CheckpointSigner, NoteSigner};
use audit::record::{AccountCreated, Actor, CommandKind, Event, Record, Rejection, Resolution, TransferCreated};
use audit::verify::{Balances, End, FailureKind, Start, Verifier};

const A: [u8; 16] = [0xa; 16];
const B: [u8; 16] = [0xb; 16];
const C: [u8; 16] = [0xc; 16];

fn account(id: [u8; 16], currency: &[u8; 3], debits_must_not_exceed_credits: bool) -> Event {
    Event::AccountCreated(AccountCreated {
        id,
        currency: *currency,
        code: 1,
        owner: "payments".to_string(),
        debits_must_not_exceed_credits,
        credits_must_not_exceed_debits: false,
        overdraft_limit: 0,
        metadata: "{}".to_string(),
    })
}

fn transfer(id: u8, debit: [u8; 16], credit: [u8; 16], amount: u64, pending: bool) -> Event {
    Event::TransferCreated(TransferCreated {
        id: [id; 16],
        pending_timeout_s: pending.then_some(60),
        linked: false,
        debit_account: debit,
        credit_account: credit,
        amount,
        currency: *b"USD",
        code: 1,
        metadata: "{}".to_string(),
    })
}

fn resolution(id: Option<u8>, pending: u8, pending_amount: u64, posted_amount: u64) -> Resolution {
    Resolution {
        id: id.map(|id| [id; 16]),
        pending_id: [pending; 16],
        linked: false,
        debit_account: B,
        credit_account: A,
        currency: *b"USD",
        pending_amount,
        posted_amount,
        code: 1,
        metadata: "{}".to_string(),
    }
}

/// Accounts, posted and pending transfers, a partial post, a void, an expiry and a rejection.
fn events() -> Vec<Event> {
    let mut events = vec![
        account(A, b"USD", false),
        account(B, b"USD", true),
        account(C, b"EUR", false),
    ];
    events.push(transfer(1, A, B, 1_000, false));
    for i in 0..20u8 {
        events.push(transfer(10 + i, B, A, 10, i % 4 == 0));
    }
    events.push(Event::TransferPosted(resolution(Some(40), 10, 10, 7)));
    events.push(Event::TransferVoided(resolution(Some(41), 14, 10, 0)));
    events.push(Event::TransferExpired(resolution(None, 18, 10, 0)));
    events.push(Event::CommandRejected(Rejection {
        command: CommandKind::CreateTransfer,
        id: [50; 16],
        code: "exceeds_credits".to_string(),
        debit_account: Some(B),
        credit_account: Some(A),
        amount: Some(1_000_000),
        currency: Some(*b"USD"),
        pending_id: None,
    }));
    events
}

struct Log {
    records: Vec<Vec<u8>>,
    checkpoint: Checkpoint,
}

fn signer() -> NoteSigner {
    NoteSigner::from_seed("finledger.test/audit", [3; 32]).unwrap()
}

fn build(events: &[Event]) -> Log {
    let mut appender = Appender::new();
    let actor = Actor {
        principal: "payments".to_string(),
        certificate_sha256: Some([9; 32]),
        ..Actor::default()
    };
    let records: Vec<Vec<u8>> = events
        .iter()
        .enumerate()
        .map(|(i, event)| appender.append(1_000 + i as i64, &actor, event, |_, _| {}).bytes)
        .collect();
    let signed = CheckpointSigner::new(std::sync::Arc::new(signer()), None)
        .sign(appender.size(), appender.root(), &[])
        .unwrap();
    Log {
        records,
        checkpoint: signed.checkpoint,
    }
}

fn tree(records: &[Vec<u8>]) -> TreeHasher {
    let mut tree = TreeHasher::new();
    records
        .iter()
        .for_each(|r| tree.push_leaf_hash(audit::merkle::leaf_hash(r)));
    tree
}

fn subtree_hash(records: &[Vec<u8>], subtree: Subtree) -> Hash {
    tree(&records[subtree.first_leaf() as usize..subtree.end_leaf() as usize]).root()
}

/// Verifies records [from, to) of `log` (given as `records`, which may be tampered with).
fn verify_range(
    log: &Log,
    records: &[Vec<u8>],
    from: u64,
    to: u64,
    trusted: Option<&Checkpoint>,
) -> Result<audit::verify::Report, audit::verify::Failure> {
    let frontier = Subtree::frontier(from).map(|s| subtree_hash(&log.records, s)).collect();
    let mut verifier = Verifier::new(Start {
        first_seq: from,
        frontier,
    })?;
    if let Some(trusted) = trusted {
        verifier.want_root_at(trusted.size);
    }
    for record in records {
        verifier.push(record)?;
    }
    let rest = Span {
        start: to,
        end: log.checkpoint.size,
    }
    .subtrees()
    .map(|s| subtree_hash(&log.records, s))
    .collect();
    verifier.finish(End { end_seq: to, rest }, &log.checkpoint, trusted, None)
}

fn verify(log: &Log, records: &[Vec<u8>]) -> Result<audit::verify::Report, audit::verify::Failure> {
    verify_range(log, records, 0, log.checkpoint.size, None)
}

/// Re-encodes record `seq` with `change` applied, keeping its prev_hash: what someone who can write
/// the database but not sign would do.
fn rewrite(records: &mut [Vec<u8>], seq: usize, change: impl FnOnce(&mut Record)) {
    let mut record = Record::decode(&records[seq]).unwrap();
    change(&mut record);
    records[seq] = record.encode();
}

#[test]
fn an_intact_log_verifies_and_reports_what_it_holds() {
    let log = build(&events());
    let report = verify(&log, &log.records).unwrap();
    assert_eq!(report.records, 28);
    assert_eq!(report.accounts, 3);
    assert_eq!(report.by_type["transfer.created"], 21);
    assert_eq!(report.by_type["command.rejected"], 1);
    let usd = report.totals["USD"];
    // 1,000 posted, 15 × 10 posted, 7 of a pending 10 posted; 2 pending of 10 still open.
    assert_eq!(usd.debits_posted, 1_000 + 150 + 7);
    assert_eq!(usd.debits_posted, usd.credits_posted);
    assert_eq!(usd.debits_pending, 20);
    assert_eq!(usd.debits_pending, usd.credits_pending);
}

#[test]
fn database_balances_are_compared_with_the_derived_ones() {
    let log = build(&events());
    let run = |database: &[([u8; 16], Balances)]| {
        let mut verifier = Verifier::new(Start::default()).unwrap();
        log.records.iter().for_each(|r| verifier.push(r).unwrap());
        let end = End {
            end_seq: log.checkpoint.size,
            rest: Vec::new(),
        };
        verifier.finish(end, &log.checkpoint, None, Some(database))
    };
    let a = Balances {
        debits_posted: 1_000,
        credits_posted: 157,
        debits_pending: 0,
        credits_pending: 20,
    };
    let b = Balances {
        debits_posted: 157,
        credits_posted: 1_000,
        debits_pending: 20,
        credits_pending: 0,
    };
    let c = Balances::default();
    assert_eq!(run(&[(A, a), (B, b), (C, c)]).unwrap().balances_compared, 3);
    let mut altered = b;
    altered.credits_posted += 1;
    let failure = run(&[(A, a), (B, altered), (C, c)]).unwrap_err();
    assert!(
        matches!(failure.kind, FailureKind::BalanceMismatch { ref account, .. } if account.starts_with("0b0b0b0b"))
    );
    assert!(matches!(
        run(&[(A, a), (B, b)]).unwrap_err().kind,
        FailureKind::BalanceMismatch { .. }
    ));
}

#[test]
fn an_edited_record_is_named() {
    let log = build(&events());
    let mut records = log.records.clone();
    rewrite(&mut records, 3, |r| {
        if let Event::TransferCreated(t) = &mut r.event {
            t.amount = 999;
        }
    });
    let failure = verify(&log, &records).unwrap_err();
    assert_eq!((failure.seq, failure.kind), (Some(3), FailureKind::Altered));
}

#[test]
fn an_edited_link_is_named() {
    let log = build(&events());
    let mut records = log.records.clone();
    rewrite(&mut records, 7, |r| r.prev_hash = [0; 32]);
    let failure = verify(&log, &records).unwrap_err();
    assert_eq!((failure.seq, failure.kind), (Some(7), FailureKind::Altered));
}

#[test]
fn a_deleted_record_is_named() {
    let log = build(&events());
    let mut records = log.records.clone();
    records.remove(5);
    let failure = verify(&log, &records).unwrap_err();
    assert_eq!(
        (failure.seq, failure.kind),
        (Some(5), FailureKind::OutOfOrder { found: 6 })
    );
}

#[test]
fn swapped_records_are_named() {
    let log = build(&events());
    let mut records = log.records.clone();
    records.swap(9, 10);
    let failure = verify(&log, &records).unwrap_err();
    assert_eq!(
        (failure.seq, failure.kind),
        (Some(9), FailureKind::OutOfOrder { found: 10 })
    );
}

#[test]
fn a_truncated_tail_is_named() {
    let log = build(&events());
    let records = &log.records[..20];
    let failure = verify(&log, records).unwrap_err();
    assert_eq!(failure.seq, Some(20));
    assert!(matches!(
        failure.kind,
        FailureKind::Truncated {
            last: Some(19),
            declared_end: 28
        }
    ));
}

#[test]
fn an_edited_last_record_fails_the_root() {
    let log = build(&events());
    let mut records = log.records.clone();
    rewrite(&mut records, 27, |r| r.timestamp_micros += 1);
    let failure = verify(&log, &records).unwrap_err();
    assert!(matches!(failure.kind, FailureKind::RootMismatch { size: 28, .. }));
}

#[test]
fn a_consistent_rewrite_fails_against_a_trusted_checkpoint() {
    let log = build(&events());
    let trusted = build(&events()[..12]).checkpoint;
    verify_range(&log, &log.records, 0, 28, Some(&trusted)).unwrap();
    // Everything rewritten from record 5 on and signed again (a rewrite is consistent with itself).
    let mut list = events();
    list[5] = transfer(11, B, A, 11, false);
    let rewritten = build(&list);
    let failure = verify_range(&rewritten, &rewritten.records, 0, 28, Some(&trusted)).unwrap_err();
    assert!(matches!(failure.kind, FailureKind::NotAnExtension { trusted: 12, .. }));
    // A log cut back below what the auditor already trusted.
    let cut = build(&events()[..10]);
    let failure = verify_range(&cut, &cut.records, 0, 10, Some(&trusted)).unwrap_err();
    assert_eq!(failure.seq, Some(10));
    assert!(matches!(failure.kind, FailureKind::NotAnExtension { trusted: 12, .. }));
}

#[test]
fn a_run_from_the_middle_verifies_with_the_frontier_and_the_rest() {
    let log = build(&events());
    let report = verify_range(&log, &log.records[5..19], 5, 19, None).unwrap();
    assert_eq!((report.first_seq, report.records), (5, 14));
    let trusted = build(&events()[..12]).checkpoint;
    verify_range(&log, &log.records[5..19], 5, 19, Some(&trusted)).unwrap();
    let old = build(&events()[..3]).checkpoint;
    let failure = verify_range(&log, &log.records[5..19], 5, 19, Some(&old)).unwrap_err();
    assert!(matches!(failure.kind, FailureKind::NotAnExtension { trusted: 3, .. }));
    // The first record's own link cannot be checked (its predecessor is not in the run), but the
    // next record's link to it can.
    let mut records = log.records[5..19].to_vec();
    rewrite(&mut records, 0, |r| r.prev_hash = [1; 32]);
    let failure = verify_range(&log, &records, 5, 19, None).unwrap_err();
    assert_eq!((failure.seq, failure.kind), (Some(5), FailureKind::Altered));
    // A wrong frontier for the records before the run fails the root.
    let mut frontier_log = build(&events());
    frontier_log.records[0] = log.records[1].clone();
    let failure = verify_range(&frontier_log, &log.records[5..19], 5, 19, None).unwrap_err();
    assert!(matches!(failure.kind, FailureKind::RootMismatch { .. }));
}

#[test]
fn an_illegal_ledger_step_is_named_even_when_chained_and_signed() {
    let mut list = events();
    // B may not owe more than it holds: 1,000 in, 157 out already.
    list.push(transfer(60, B, A, 900, false));
    let log = build(&list);
    let failure = verify(&log, &log.records).unwrap_err();
    assert_eq!(failure.seq, Some(28));
    assert!(matches!(failure.kind, FailureKind::Ledger(ref reason) if reason.contains("debits exceed")));

    let mut list = events();
    list.push(Event::TransferPosted(resolution(Some(61), 14, 10, 10)));
    let log = build(&list);
    let failure = verify(&log, &log.records).unwrap_err();
    assert!(matches!(failure.kind, FailureKind::Ledger(ref reason) if reason.contains("not open")));

    let mut list = events();
    list.push(transfer(1, A, B, 5, false));
    let log = build(&list);
    let failure = verify(&log, &log.records).unwrap_err();
    assert!(matches!(failure.kind, FailureKind::Ledger(ref reason) if reason.contains("second time")));
}

#[test]
fn garbage_is_refused_not_a_panic() {
    let log = build(&events());
    let mut records = log.records.clone();
    records[2] = b"not a record".to_vec();
    let failure = verify(&log, &records).unwrap_err();
    assert!(matches!(failure.kind, FailureKind::Malformed(_)));
    assert_eq!(failure.seq, Some(2));
}
