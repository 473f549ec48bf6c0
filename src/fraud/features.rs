//! Features: declared in policies/fraud/features.toml, computed here. Conditions see them as
//! `f.<name>`. The velocity features come from [`Activity`]: every transfer each account sent (as the
//! debit account) or received (as the credit account) over the last seven days, kept by the single
//! writer as batches apply and rebuilt from the database whenever its cache is, so they are exact
//! under concurrency and after a restart.
//!
//! Kinds of feature (every window counts the transfer being screened too):
//! - `count`, `sum`: transfers and their total (minor units) for the `debit` or `credit` account in
//!   `window` (`1h`, `24h`, `7d`);
//! - `near_threshold_count`: of those, the transfers in `currency` between `from_percent` and
//!   `to_percent` (inclusive) of `threshold` (structuring below a reporting threshold);
//! - `account_age_s`: seconds since the `debit` or `credit` account was created;
//! - `round_amount`: the amount is a whole multiple of `multiple` major units;
//! - `in_list`: `of` (`debit_account`, `credit_account`, or a metadata string
//!   `transfer.metadata.<key>`, `debit_account.metadata.<key>`, `credit_account.metadata.<key>`) is on
//!   the list `list` (policies/lists/<list>.toml).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use ledger::{Account, AccountId, Amount, Currency, Metadata, Movement, Timestamp};
use serde::Deserialize;

use super::expr::{Type, Value};
use super::lists::{List, ListKind};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Debit,
    Credit,
}

/// A trailing window ending now.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    seconds: i64,
}

/// The longest window: what [`Activity`] keeps.
pub const WINDOW_MAX_S: i64 = 7 * 86_400;

impl<'de> Deserialize<'de> for Window {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Window, D::Error> {
        let text = String::deserialize(deserializer)?;
        let seconds = match text.as_str() {
            "1h" => 3_600,
            "24h" => 86_400,
            "7d" => WINDOW_MAX_S,
            other => {
                return Err(serde::de::Error::custom(format!(
                    "window `{other}`: expected 1h, 24h or 7d"
                )));
            }
        };
        Ok(Window { seconds })
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FeaturesFile {
    #[serde(rename = "feature")]
    features: Vec<Declaration>,
}

/// Unknown keys are refused by the kind's variant (the outer struct cannot say so with `flatten`).
#[derive(Deserialize)]
struct Declaration {
    name: String,
    description: String,
    #[serde(flatten)]
    kind: KindDeclaration,
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum KindDeclaration {
    Count {
        account: Side,
        window: Window,
    },
    Sum {
        account: Side,
        window: Window,
    },
    NearThresholdCount {
        account: Side,
        window: Window,
        currency: String,
        threshold: String,
        from_percent: u64,
        to_percent: u64,
    },
    AccountAgeS {
        account: Side,
    },
    RoundAmount {
        multiple: u64,
    },
    InList {
        list: String,
        of: String,
    },
}

/// What an `in_list` feature looks up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Subject {
    Account(Side),
    TransferMetadata(String),
    AccountMetadata(Side, String),
}

/// A window count or sum, optionally only of amounts in an inclusive range of one currency.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tally {
    pub side: Side,
    pub window_s: i64,
    pub range: Option<(Currency, u64, u64)>,
}

#[derive(Clone, Debug)]
pub enum Kind {
    Count(Tally),
    Sum(Tally),
    AccountAgeS(Side),
    RoundAmount { multiple: u64 },
    InList { list: Arc<List>, subject: Subject },
}

#[derive(Clone, Debug)]
pub struct Feature {
    pub name: String,
    pub description: String,
    pub kind: Kind,
}

impl Feature {
    pub fn value_type(&self) -> Type {
        match self.kind {
            Kind::Count(_) | Kind::Sum(_) | Kind::AccountAgeS(_) => Type::Int,
            Kind::RoundAmount { .. } | Kind::InList { .. } => Type::Bool,
        }
    }
}

/// Parses and checks a features file against the lists it may name.
pub fn parse(text: &str, lists: &BTreeMap<String, Arc<List>>) -> Result<Vec<Feature>, String> {
    let file: FeaturesFile = toml::from_str(text).map_err(|e| e.to_string())?;
    let mut features: Vec<Feature> = Vec::with_capacity(file.features.len());
    for declaration in file.features {
        let name = declaration.name;
        let fail = |reason: String| format!("feature `{name}`: {reason}");
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(fail("a name is letters, digits and `_`".into()));
        }
        if features.iter().any(|f| f.name == name) {
            return Err(fail("declared twice".into()));
        }
        let kind = match declaration.kind {
            KindDeclaration::Count { account, window } => Kind::Count(Tally {
                side: account,
                window_s: window.seconds,
                range: None,
            }),
            KindDeclaration::Sum { account, window } => Kind::Sum(Tally {
                side: account,
                window_s: window.seconds,
                range: None,
            }),
            KindDeclaration::NearThresholdCount {
                account,
                window,
                currency,
                threshold,
                from_percent,
                to_percent,
            } => {
                let currency = Currency::from_code(&currency).map_err(|e| fail(e.to_string()))?;
                let threshold = Amount::parse(&threshold, currency).map_err(|e| fail(format!("threshold: {e}")))?;
                if from_percent > to_percent || to_percent > 100 {
                    return Err(fail("expected 0 <= from_percent <= to_percent <= 100".into()));
                }
                let at = |percent: u64| (u128::from(threshold.minor()) * u128::from(percent) / 100) as u64;
                Kind::Count(Tally {
                    side: account,
                    window_s: window.seconds,
                    range: Some((currency, at(from_percent), at(to_percent))),
                })
            }
            KindDeclaration::AccountAgeS { account } => Kind::AccountAgeS(account),
            KindDeclaration::RoundAmount { multiple } => {
                if multiple == 0 {
                    return Err(fail("multiple must be positive".into()));
                }
                Kind::RoundAmount { multiple }
            }
            KindDeclaration::InList { list: list_name, of } => {
                let list = lists
                    .get(&list_name)
                    .ok_or_else(|| fail(format!("no list `{list_name}` in policies/lists")))?
                    .clone();
                let subject = subject(&of).ok_or_else(|| {
                    fail(format!(
                        "of = `{of}`: expected debit_account, credit_account, transfer.metadata.<key>, \
                         debit_account.metadata.<key> or credit_account.metadata.<key>"
                    ))
                })?;
                let wants = match subject {
                    Subject::Account(_) => ListKind::Accounts,
                    _ => ListKind::Names,
                };
                if list.kind != wants {
                    return Err(fail(format!("list `{list_name}` does not hold what `{of}` is")));
                }
                Kind::InList { list, subject }
            }
        };
        features.push(Feature {
            name,
            description: declaration.description,
            kind,
        });
    }
    Ok(features)
}

fn subject(of: &str) -> Option<Subject> {
    let side = |s: &str| match s {
        "debit_account" => Some(Side::Debit),
        "credit_account" => Some(Side::Credit),
        _ => None,
    };
    if let Some(side) = side(of) {
        return Some(Subject::Account(side));
    }
    let (owner, key) = of.split_once(".metadata.")?;
    if key.is_empty() {
        return None;
    }
    match owner {
        "transfer" => Some(Subject::TransferMetadata(key.to_string())),
        owner => side(owner).map(|side| Subject::AccountMetadata(side, key.to_string())),
    }
}

/// A transfer being screened, with its accounts as the ledger holds them.
pub struct Screened<'a> {
    pub id: uuid::Uuid,
    pub movement: &'a Movement,
    pub code: u16,
    /// The client asked for a pending (two-phase) transfer.
    pub pending: bool,
    pub metadata: &'a Metadata,
    pub debit: &'a Account,
    pub credit: &'a Account,
    pub now: Timestamp,
}

impl Screened<'_> {
    fn account(&self, side: Side) -> &Account {
        match side {
            Side::Debit => self.debit,
            Side::Credit => self.credit,
        }
    }
}

/// Computes every feature of `features` for `transfer`, in order.
pub fn compute(features: &[Feature], activity: &mut Activity, transfer: &Screened) -> Result<Vec<Value>, String> {
    let amount = transfer.movement.amount.minor();
    let currency = transfer.movement.currency;
    // Each side's flow is looked up once for all of its features.
    let [mut debit, mut credit] = activity
        .flows
        .get_disjoint_mut([&(transfer.debit.id, Side::Debit), &(transfer.credit.id, Side::Credit)]);
    features
        .iter()
        .map(|feature| {
            let int = |n: u128| {
                i64::try_from(n)
                    .map(Value::Int)
                    .map_err(|_| format!("feature {} is out of range", feature.name))
            };
            match &feature.kind {
                Kind::Count(tally) | Kind::Sum(tally) => {
                    let flow = match tally.side {
                        Side::Debit => debit.as_deref_mut(),
                        Side::Credit => credit.as_deref_mut(),
                    };
                    let (count, sum) = flow.map_or((0, 0), |flow| flow.tally(*tally, transfer.now));
                    let this = tally
                        .range
                        .is_none_or(|(c, low, high)| c == currency && (low..=high).contains(&amount));
                    let (count, sum) = if this {
                        (count + 1, sum + u128::from(amount))
                    } else {
                        (count, sum)
                    };
                    match feature.kind {
                        Kind::Count(_) => int(u128::from(count)),
                        _ => int(sum),
                    }
                }
                Kind::AccountAgeS(side) => {
                    let created = transfer.account(*side).created_at.micros();
                    Ok(Value::Int((transfer.now.micros() - created).max(0) / 1_000_000))
                }
                Kind::RoundAmount { multiple } => {
                    let unit = 10u128.pow(currency.scale()) * u128::from(*multiple);
                    Ok(Value::Bool(u128::from(amount) % unit == 0))
                }
                Kind::InList { list, subject } => {
                    let text = |metadata: &Metadata, key: &str| {
                        metadata.as_map().get(key).and_then(|v| v.as_str()).map(str::to_string)
                    };
                    let value = match subject {
                        Subject::Account(side) => Some(transfer.account(*side).id.uuid().to_string()),
                        Subject::TransferMetadata(key) => text(transfer.metadata, key),
                        Subject::AccountMetadata(side, key) => text(&transfer.account(*side).metadata, key),
                    };
                    Ok(Value::Bool(value.is_some_and(|v| list.contains(&v))))
                }
            }
        })
        .collect()
}

/// One transfer an account sent or received.
#[derive(Clone, Copy, Debug)]
struct Seen {
    at: Timestamp,
    amount: u64,
    currency: Currency,
}

/// A running tally over one account side's recent movements: those from index `start` on.
#[derive(Clone, Debug)]
struct Running {
    tally: Tally,
    start: u64,
    count: u64,
    sum: u128,
}

impl Running {
    fn counts(&self, movement: &Seen) -> bool {
        self.tally
            .range
            .is_none_or(|(c, low, high)| c == movement.currency && (low..=high).contains(&movement.amount))
    }
}

/// One side of one account: its movements of the last seven days, oldest first, and the tallies
/// asked of it so far, kept up to date as movements are added and time passes.
#[derive(Clone, Debug, Default)]
struct Flow {
    movements: VecDeque<Seen>,
    /// How many movements were dropped from the front: index i of `movements` is `base + i` overall.
    base: u64,
    running: Vec<Running>,
}

impl Flow {
    fn push(&mut self, movement: Seen) {
        for running in &mut self.running {
            if running.counts(&movement) {
                running.count += 1;
                running.sum += u128::from(movement.amount);
            }
        }
        self.movements.push_back(movement);
    }

    /// Moves a tally's start past movements outside its window at `now`.
    fn slide(running: &mut Running, movements: &VecDeque<Seen>, base: u64, now: Timestamp) {
        let from = now.micros() - running.tally.window_s * 1_000_000;
        let end = base + movements.len() as u64;
        while running.start < end {
            let movement = movements[(running.start - base) as usize];
            if movement.at.micros() > from {
                break;
            }
            if running.counts(&movement) {
                running.count -= 1;
                running.sum -= u128::from(movement.amount);
            }
            running.start += 1;
        }
    }

    /// Slides every tally to `now` and drops the movements outside every window.
    fn advance(&mut self, now: Timestamp) {
        for running in &mut self.running {
            Flow::slide(running, &self.movements, self.base, now);
        }
        let from = now.micros() - WINDOW_MAX_S * 1_000_000;
        let end = self.base + self.movements.len() as u64;
        let keep_from = self.running.iter().map(|r| r.start).min().unwrap_or(end);
        while let Some(front) = self.movements.front() {
            if front.at.micros() > from || self.base >= keep_from {
                break;
            }
            self.movements.pop_front();
            self.base += 1;
        }
    }

    /// Takes back the last movement pushed.
    fn pop(&mut self) {
        let Some(movement) = self.movements.pop_back() else {
            return;
        };
        let index = self.base + self.movements.len() as u64;
        for running in &mut self.running {
            if running.start <= index && running.counts(&movement) {
                running.count -= 1;
                running.sum -= u128::from(movement.amount);
            }
            running.start = running.start.min(index);
        }
    }

    fn tally(&mut self, tally: Tally, now: Timestamp) -> (u64, u128) {
        if !self.running.iter().any(|r| r.tally == tally) {
            let mut running = Running {
                tally,
                start: self.base,
                count: 0,
                sum: 0,
            };
            for movement in &self.movements {
                if running.counts(movement) {
                    running.count += 1;
                    running.sum += u128::from(movement.amount);
                }
            }
            self.running.push(running);
        }
        let running = self.running.iter_mut().find(|r| r.tally == tally).expect("added above");
        Flow::slide(running, &self.movements, self.base, now);
        (running.count, running.sum)
    }
}

/// Recent movements per account and side, and per account what it sent without a review (what
/// approval limits sum, see [`crate::approval`]).
#[derive(Clone, Debug, Default)]
pub struct Activity {
    flows: HashMap<(AccountId, Side), Flow, foldhash::fast::RandomState>,
    unreviewed: HashMap<AccountId, Flow, foldhash::fast::RandomState>,
    pruned_at: i64,
}

impl Activity {
    /// Counts the transfer of `amount` from `debit` to `credit` at `at` (transfers are added in the
    /// order of their time, as the ledger creates them).
    pub fn add(&mut self, debit: AccountId, credit: AccountId, amount: u64, currency: Currency, at: Timestamp) {
        let movement = Seen { at, amount, currency };
        self.flows.entry((debit, Side::Debit)).or_default().push(movement);
        self.flows.entry((credit, Side::Credit)).or_default().push(movement);
    }

    /// Takes back the last [`Activity::add`] of this transfer (its linked chain failed).
    pub fn retract(&mut self, debit: AccountId, credit: AccountId) {
        for key in [(debit, Side::Debit), (credit, Side::Credit)] {
            if let Some(flow) = self.flows.get_mut(&key) {
                flow.pop();
            }
        }
    }

    /// Counts `amount` as sent by `debit` at `at` without a review (besides [`Activity::add`]).
    pub fn add_unreviewed(&mut self, debit: AccountId, amount: u64, currency: Currency, at: Timestamp) {
        let movement = Seen { at, amount, currency };
        self.unreviewed.entry(debit).or_default().push(movement);
    }

    /// Takes back the last [`Activity::add_unreviewed`] of `debit`.
    pub fn retract_unreviewed(&mut self, debit: AccountId) {
        if let Some(flow) = self.unreviewed.get_mut(&debit) {
            flow.pop();
        }
    }

    /// What `debit` sent without a review within the last `window_s` seconds before `now`, in minor
    /// units (an account has one currency). `window_s` is at most [`WINDOW_MAX_S`].
    pub fn unreviewed_sum(&mut self, debit: AccountId, window_s: u32, now: Timestamp) -> u128 {
        let tally = Tally {
            side: Side::Debit,
            window_s: i64::from(window_s).min(WINDOW_MAX_S),
            range: None,
        };
        self.unreviewed
            .get_mut(&debit)
            .map_or(0, |flow| flow.tally(tally, now).1)
    }

    /// Forgets accounts with nothing in the longest window; at most once a minute of `now`.
    pub fn prune(&mut self, now: Timestamp) {
        if now.micros() - self.pruned_at < 60_000_000 {
            return;
        }
        self.pruned_at = now.micros();
        let recent = |flow: &mut Flow| {
            flow.advance(now);
            flow.movements
                .back()
                .is_some_and(|m| m.at.micros() > now.micros() - WINDOW_MAX_S * 1_000_000)
        };
        self.flows.retain(|_, flow| recent(flow));
        self.unreviewed.retain(|_, flow| recent(flow));
    }
}
