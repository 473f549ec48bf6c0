//! Properties over random command sequences (proptest, 10,000 cases each).

mod common;

use std::collections::{BTreeMap, HashSet};

use common::*;
use ledger::{
    AccountFlags, AccountRequest, Applied, Command, ErrorCode, Ledger, Timestamp, TransferFlags, TransferRequest,
};
use proptest::prelude::*;

const CASES: u32 = 10_000;
const T0: i64 = 1_700_000_000_000_000;

/// Ten accounts in two currencies with every kind of balance limit.
fn universe() -> Vec<Command> {
    vec![
        account(1, "USD", UNLIMITED, None),
        account(2, "USD", DEBITS_LIMITED, None),
        account(3, "USD", CREDITS_LIMITED, None),
        account(4, "USD", DEBITS_LIMITED, Some("5.00")),
        account(5, "USD", CREDITS_LIMITED, Some("1.00")),
        account(6, "EUR", UNLIMITED, None),
        account(7, "EUR", DEBITS_LIMITED, None),
        account(8, "USD", UNLIMITED, None),
        account(9, "EUR", CREDITS_LIMITED, Some("3.00")),
        account(10, "USD", DEBITS_LIMITED, None),
    ]
}

#[derive(Clone, Debug)]
enum Op {
    Transfer {
        id: u128,
        debit: u128,
        credit: u128,
        cents: u64,
        euro: bool,
        pending: Option<u32>,
        linked: bool,
    },
    Resolve {
        id: u128,
        pending: u128,
        cents: Option<u64>,
        post: bool,
        linked: bool,
    },
    Close {
        account: u128,
    },
    Create {
        account: u128,
    },
}

fn op() -> impl Strategy<Value = Op> {
    // Small id ranges make collisions (replays, conflicts) and post/void hits frequent.
    let transfer = (
        1..60u128,
        1..12u128,
        1..12u128,
        prop_oneof![1..2_000u64, Just(u64::MAX / 2)],
        any::<bool>(),
        prop::option::of(1..40u32),
        prop::bool::weighted(0.3),
    )
        .prop_map(|(id, debit, credit, cents, euro, pending, linked)| Op::Transfer {
            id: 1000 + id,
            debit,
            credit,
            cents,
            euro,
            pending,
            linked,
        });
    let resolve = (
        1..60u128,
        1..60u128,
        prop::option::of(1..2_000u64),
        any::<bool>(),
        prop::bool::weighted(0.3),
    )
        .prop_map(|(id, pending, cents, post, linked)| Op::Resolve {
            id: 1000 + id,
            pending: 1000 + pending,
            cents,
            post,
            linked,
        });
    prop_oneof![
        6 => transfer,
        3 => resolve,
        1 => (1..12u128).prop_map(|account| Op::Close { account }),
        1 => (1..12u128).prop_map(|account| Op::Create { account }),
    ]
}

fn cents(value: u64) -> String {
    format!("{}.{:02}", value / 100, value % 100)
}

fn command(op: &Op) -> Option<Command> {
    let request = match op {
        Op::Transfer {
            id: n,
            debit,
            credit,
            cents: c,
            euro,
            pending,
            linked,
        } => TransferRequest {
            id: id(*n),
            debit_account_id: Some(id(*debit)),
            credit_account_id: Some(id(*credit)),
            amount: Some(cents(*c)),
            currency: Some(if *euro { "EUR" } else { "USD" }.to_string()),
            code: 1,
            flags: TransferFlags {
                linked: *linked,
                pending: pending.is_some(),
                ..TransferFlags::default()
            },
            timeout_s: *pending,
            ..TransferRequest::default()
        },
        Op::Resolve {
            id: n,
            pending,
            cents: c,
            post,
            linked,
        } => {
            let mut request = resolve_request(*n, *pending, c.map(cents).as_deref(), *post);
            request.flags.linked = *linked;
            request
        }
        Op::Close { account } => {
            let id = ledger::AccountId::parse(id(*account), ErrorCode::IdMustNotBeZero).ok()?;
            return Some(Command::CloseAccount(id));
        }
        Op::Create { account } => {
            let request = AccountRequest {
                id: id(*account),
                currency: "USD".to_string(),
                code: 1,
                owner: "orders".to_string(),
                flags: AccountFlags::default(),
                overdraft_limit: None,
                metadata: None,
            };
            return request.parse().ok().map(Command::CreateAccount);
        }
    };
    request.parse().ok().map(Command::CreateTransfer)
}

fn batches() -> impl Strategy<Value = Vec<(Vec<Op>, u32)>> {
    prop::collection::vec((prop::collection::vec(op(), 0..24), 0..30u32), 1..5)
}

fn seeded() -> Ledger {
    let mut ledger = Ledger::new();
    let outcome = ledger.apply(&universe(), Timestamp::from_micros(T0));
    assert!(outcome.results.iter().all(|r| *r == Ok(Applied::Created)));
    ledger
}

/// Sums per currency: (debits posted, credits posted, debits pending, credits pending).
fn totals(ledger: &Ledger) -> BTreeMap<&'static str, [u128; 4]> {
    let mut totals: BTreeMap<&'static str, [u128; 4]> = BTreeMap::new();
    for account in ledger.accounts() {
        let b = account.balances;
        let entry = totals.entry(account.currency.code()).or_default();
        for (slot, value) in
            entry
                .iter_mut()
                .zip([b.debits_posted, b.credits_posted, b.debits_pending, b.credits_pending])
        {
            *slot += u128::from(value);
        }
    }
    totals
}

fn snapshot(ledger: &Ledger) -> BTreeMap<uuid::Uuid, (ledger::Balances, bool)> {
    ledger
        .accounts()
        .map(|a| (a.id.uuid(), (a.balances, a.closed)))
        .collect()
}

fn transfer_ids(ledger: &Ledger) -> HashSet<uuid::Uuid> {
    ledger.transfers().map(|t| t.id.uuid()).collect()
}

/// Index ranges of the linked chains in `commands` (a lone command is a chain of one).
fn chains(commands: &[Command]) -> Vec<std::ops::Range<usize>> {
    let is_linked = |c: &Command| matches!(c, Command::CreateTransfer(t) if t.linked);
    let mut ranges = Vec::new();
    let mut start = 0;
    while start < commands.len() {
        let mut end = start;
        while end < commands.len() && is_linked(&commands[end]) {
            end += 1;
        }
        if end < commands.len() && matches!(commands[end], Command::CreateTransfer(_)) || end == start {
            end += 1;
        }
        ranges.push(start..end);
        start = end;
    }
    ranges
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(CASES))]

    #[test]
    fn debits_equal_credits_and_limits_hold_after_every_batch(batches in batches()) {
        let mut ledger = seeded();
        let mut now = T0;
        for (ops, advance_s) in batches {
            now += i64::from(advance_s) * 1_000_000;
            let commands: Vec<Command> = ops.iter().filter_map(command).collect();
            ledger.apply(&commands, Timestamp::from_micros(now));
            for (currency, [dp, cp, dpend, cpend]) in totals(&ledger) {
                prop_assert_eq!(dp, cp, "posted totals differ in {}", currency);
                prop_assert_eq!(dpend, cpend, "pending totals differ in {}", currency);
            }
            for account in ledger.accounts() {
                prop_assert!(account.balances.respects(account.limit), "{:?}", account);
            }
        }
    }

    #[test]
    fn replaying_what_was_applied_changes_nothing_and_returns_exists(batches in batches()) {
        let mut ledger = seeded();
        let mut now = T0;
        for (ops, advance_s) in batches {
            now += i64::from(advance_s) * 1_000_000;
            let at = Timestamp::from_micros(now);
            let commands: Vec<Command> = ops.iter().filter_map(command).collect();
            let results = ledger.apply(&commands, at).results;
            let applied: Vec<Command> = commands
                .iter()
                .zip(&results)
                .filter(|(c, r)| r.is_ok() && !matches!(c, Command::CloseAccount(_)) || matches!((c, r), (Command::CloseAccount(_), Ok(_))))
                .map(|(c, _)| c.clone())
                .collect();
            let before = snapshot(&ledger);
            let replay = ledger.apply(&applied, at);
            prop_assert!(replay.results.iter().all(|r| *r == Ok(Applied::Exists)), "{:?}", replay.results);
            prop_assert!(replay.changes.is_empty());
            prop_assert_eq!(snapshot(&ledger), before);
        }
    }

    #[test]
    fn a_linked_chain_never_partially_applies(batches in batches()) {
        let mut ledger = seeded();
        let mut now = T0;
        for (ops, advance_s) in batches {
            now += i64::from(advance_s) * 1_000_000;
            let commands: Vec<Command> = ops.iter().filter_map(command).collect();
            let known_before = transfer_ids(&ledger);
            let results = ledger.apply(&commands, Timestamp::from_micros(now)).results;
            let known_after = transfer_ids(&ledger);
            // An id reused by a later, successful command of the batch legitimately exists.
            let created: HashSet<uuid::Uuid> = commands
                .iter()
                .zip(&results)
                .filter_map(|(c, r)| match (c, r) {
                    (Command::CreateTransfer(t), Ok(_)) => Some(t.id.uuid()),
                    _ => None,
                })
                .collect();
            for range in chains(&commands) {
                let chain = &results[range.clone()];
                let all_ok = chain.iter().all(Result::is_ok);
                let none_ok = chain.iter().all(Result::is_err);
                prop_assert!(all_ok || none_ok, "chain {:?} partially applied: {:?}", range, chain);
                if none_ok {
                    for command in &commands[range] {
                        if let Command::CreateTransfer(t) = command
                            && !known_before.contains(&t.id.uuid())
                            && !created.contains(&t.id.uuid())
                        {
                            prop_assert!(!known_after.contains(&t.id.uuid()));
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn unlinked_commands_give_the_same_results_in_one_batch_or_one_by_one(ops in prop::collection::vec(op(), 0..32), advance_s in 0..60u32) {
        let commands: Vec<Command> = ops
            .iter()
            .filter_map(command)
            .map(|c| match c {
                Command::CreateTransfer(mut t) => { t.linked = false; Command::CreateTransfer(t) }
                other => other,
            })
            .collect();
        let at = Timestamp::from_micros(T0 + i64::from(advance_s) * 1_000_000);
        let mut batched = seeded();
        let mut single = batched.clone();
        let together = batched.apply(&commands, at).results;
        let one_by_one: Vec<_> = commands.iter().flat_map(|c| single.apply(std::slice::from_ref(c), at).results).collect();
        prop_assert_eq!(together, one_by_one);
        prop_assert_eq!(snapshot(&batched), snapshot(&single));
    }

    #[test]
    fn arbitrary_input_never_panics(
        raw in prop::collection::vec((
            prop::option::of(any::<u128>()),
            prop::option::of(any::<u128>()),
            prop::option::of(prop_oneof![".*", "-?[0-9]{0,22}(\\.[0-9]{0,30})?"]),
            prop::option::of(prop_oneof![".{0,4}", "USD|EUR|JPY|BHD|XAU|usd"]),
            any::<u16>(),
            any::<[bool; 6]>(),
            prop::option::of(any::<u32>()),
            any::<u128>(),
        ), 0..16)
    ) {
        let mut ledger = seeded();
        let mut commands = Vec::new();
        for (debit, credit, amount, currency, code, flags, timeout_s, n) in raw {
            let small = |v: u128| uuid::Uuid::from_u128(v % 14);
            let account = AccountRequest {
                id: small(n),
                currency: currency.clone().unwrap_or_default(),
                code,
                owner: amount.clone().unwrap_or_default(),
                flags: AccountFlags { debits_must_not_exceed_credits: flags[4], credits_must_not_exceed_debits: flags[5] },
                overdraft_limit: amount.clone().filter(|_| flags[0]),
                metadata: None,
            };
            if let Ok(account) = account.parse() {
                commands.push(Command::CreateAccount(account));
            }
            let transfer = TransferRequest {
                id: uuid::Uuid::from_u128(n % 64),
                debit_account_id: debit.map(small),
                credit_account_id: credit.map(small),
                amount,
                currency,
                code,
                flags: TransferFlags { linked: flags[0], pending: flags[1], post_pending_transfer: flags[2], void_pending_transfer: flags[3] },
                pending_id: debit.map(|d| uuid::Uuid::from_u128(d % 64)),
                timeout_s,
                metadata: None,
            };
            if let Ok(transfer) = transfer.parse() {
                commands.push(Command::CreateTransfer(transfer));
            }
        }
        let outcome = ledger.apply(&commands, Timestamp::from_micros(T0));
        prop_assert_eq!(outcome.results.len(), commands.len());
        let outcome = ledger.apply(&commands, Timestamp::from_micros(i64::MAX));
        prop_assert_eq!(outcome.results.len(), commands.len());
    }
}
