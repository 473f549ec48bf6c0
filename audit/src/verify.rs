//! Offline verification of a run of audit records against a signed checkpoint.
//!
//! [`Verifier`] takes the records in order, as stored bytes, and checks for each: its hash (computed
//! from the bytes before anything else), that it parses, that its seq is the next one, that it links
//! to the previous record's hash, that time never goes back, and that it is a legal step of the ledger
//! (accounts exist before use, currencies agree, no balance limit is exceeded, a pending transfer is
//! resolved once, no id is created twice). [`Verifier::finish`] then recomputes the Merkle root and
//! compares it with the checkpoint, and checks a previously trusted checkpoint is a prefix of it.
//!
//! A run need not start at seq 0: the records before it are then represented by the hashes of the
//! perfect subtrees that make them up, and the ledger checks that need earlier records are skipped.

use std::collections::BTreeMap;

use foldhash::HashMap;
use foldhash::HashMapExt;
use foldhash::HashSet;
use foldhash::HashSetExt;

use crate::merkle::{self, Hash, Subtree, TreeHasher};
use crate::note::Checkpoint;
use crate::record::{
    AccountCreated, Currency, DecodeError, Event, GENESIS_PREV_HASH, Id, Record, Resolution, TransferCreated,
};

/// Why verification failed, and where.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}{kind}", .seq.map(|seq| format!("record {seq}: ")).unwrap_or_default())]
pub struct Failure {
    /// The first bad record, when one can be named.
    pub seq: Option<u64>,
    pub kind: FailureKind,
}

#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FailureKind {
    #[error("unreadable: {0}")]
    Malformed(DecodeError),
    #[error("missing or out of order: found seq {found} in its place")]
    OutOfOrder { found: u64 },
    #[error("altered: its hash no longer matches the prev_hash of the record after it")]
    Altered,
    #[error("altered (or the one before it): it does not link to the previous record's hash")]
    BrokenLink,
    #[error("its timestamp is earlier than the previous record's")]
    TimeWentBack,
    #[error("not a legal ledger step: {0}")]
    Ledger(String),
    #[error(
        "missing: the records end at seq {last:?}, but the bundle declares records up to seq {declared_end} (exclusive)"
    )]
    Truncated { last: Option<u64>, declared_end: u64 },
    #[error(
        "the records and subtree hashes give root {computed}, but the signed checkpoint of size {size} has {signed}"
    )]
    RootMismatch {
        size: u64,
        computed: String,
        signed: String,
    },
    #[error("the subtree hashes do not fit the bundle's range: {0}")]
    Frontier(merkle::ProofError),
    #[error("the trusted checkpoint of size {trusted} is not a prefix of this log: {reason}")]
    NotAnExtension { trusted: u64, reason: String },
    #[error("the database's balances disagree with the log for account {account}: {detail}")]
    BalanceMismatch { account: String, detail: String },
}

fn fail(seq: impl Into<Option<u64>>, kind: FailureKind) -> Failure {
    Failure { seq: seq.into(), kind }
}

/// Balances of one account, in minor units. Signed: a run that starts after seq 0 can release
/// amounts reserved before it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Balances {
    pub debits_posted: i128,
    pub credits_posted: i128,
    pub debits_pending: i128,
    pub credits_pending: i128,
}

#[derive(Clone, Debug)]
struct AccountState {
    currency: Currency,
    closed: bool,
    debits_limit: Option<u64>,
    credits_limit: Option<u64>,
    balances: Balances,
}

#[derive(Clone, Debug)]
struct OpenPending {
    debit: Id,
    credit: Id,
    currency: Currency,
    amount: u64,
}

/// Where the run starts: at seq 0, or after `first_seq` records represented by their frontier.
#[derive(Clone, Debug, Default)]
pub struct Start {
    pub first_seq: u64,
    /// The hashes of [`Subtree::frontier`]`(first_seq)`, largest first.
    pub frontier: Vec<Hash>,
}

/// What the records end with: the seq after the last one declared, and the hashes of the perfect
/// subtrees covering the rest of the checkpoint's tree (see [`merkle::Span::subtrees`]).
#[derive(Clone, Debug, Default)]
pub struct End {
    pub end_seq: u64,
    pub rest: Vec<Hash>,
}

/// What a verified run holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Report {
    pub first_seq: u64,
    pub records: u64,
    pub checkpoint_size: u64,
    pub by_type: BTreeMap<&'static str, u64>,
    /// Totals per currency over the run (for a run from seq 0: the whole ledger).
    pub totals: BTreeMap<String, Balances>,
    pub accounts: usize,
    pub balances_compared: usize,
}

pub struct Verifier {
    first_seq: u64,
    next_seq: u64,
    prev_hash: Option<Hash>,
    last_timestamp: i64,
    /// A link broke at this seq; the next record tells which of the two was altered.
    broken_link: Option<u64>,
    tree: TreeHasher,
    /// Roots at sizes a trusted checkpoint needs.
    wanted_roots: HashMap<u64, Option<Hash>>,
    accounts: HashMap<Id, AccountState>,
    transfers: HashSet<Id>,
    pending: HashMap<Id, OpenPending>,
    totals: BTreeMap<Currency, Balances>,
    by_type: BTreeMap<&'static str, u64>,
}

impl Verifier {
    pub fn new(start: Start) -> Result<Verifier, Failure> {
        let tree = TreeHasher::from_frontier(start.first_seq, start.frontier)
            .map_err(|e| fail(None, FailureKind::Frontier(e)))?;
        Ok(Verifier {
            first_seq: start.first_seq,
            next_seq: start.first_seq,
            prev_hash: (start.first_seq == 0).then_some(GENESIS_PREV_HASH),
            last_timestamp: i64::MIN,
            broken_link: None,
            tree,
            wanted_roots: HashMap::new(),
            accounts: HashMap::new(),
            transfers: HashSet::new(),
            pending: HashMap::new(),
            totals: BTreeMap::new(),
            by_type: BTreeMap::new(),
        })
    }

    /// Also keep the root of the tree of `size` leaves, to check a trusted checkpoint against.
    pub fn want_root_at(&mut self, size: u64) {
        let known = (size == self.tree.size()).then(|| self.tree.root());
        self.wanted_roots.insert(size, known);
    }

    pub fn records(&self) -> u64 {
        self.next_seq - self.first_seq
    }

    /// Checks the next record.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        self.push_hashed(bytes, merkle::leaf_hash(bytes))
    }

    /// [`Verifier::push`] with the record's leaf hash already computed from these bytes (for example
    /// on another thread, as the records are read).
    pub fn push_hashed(&mut self, bytes: &[u8], hash: Hash) -> Result<(), Failure> {
        let seq = self.next_seq;
        let record = Record::decode(bytes).map_err(|e| fail(seq, FailureKind::Malformed(e)))?;
        if record.seq != seq {
            return Err(fail(seq, FailureKind::OutOfOrder { found: record.seq }));
        }
        if let Some(broken) = self.broken_link {
            // Record `broken` did not link to its predecessor. If it is itself intact (this record
            // links to it), its predecessor was altered; otherwise it was.
            let altered = if record.prev_hash == self.prev_hash.unwrap_or_default() {
                broken - 1
            } else {
                broken
            };
            return Err(fail(altered, FailureKind::Altered));
        }
        if let Some(prev) = self.prev_hash
            && record.prev_hash != prev
        {
            if seq == 0 {
                return Err(fail(seq, FailureKind::BrokenLink));
            }
            self.broken_link = Some(seq);
        }
        if record.timestamp_micros < self.last_timestamp {
            return Err(fail(seq, FailureKind::TimeWentBack));
        }
        self.last_timestamp = record.timestamp_micros;
        self.apply(&record.event)
            .map_err(|reason| fail(seq, FailureKind::Ledger(reason)))?;
        *self.by_type.entry(record.event.type_name()).or_default() += 1;
        self.tree.push_leaf_hash(hash);
        self.prev_hash = Some(hash);
        self.next_seq += 1;
        if let Some(root) = self.wanted_roots.get_mut(&self.tree.size()) {
            *root = Some(self.tree.root());
        }
        Ok(())
    }

    /// Ends the run: the records must reach `end.end_seq`, and with `end.rest` they must give the
    /// checkpoint's root. `trusted`, if given, must be a prefix of the checkpoint's tree; `database`
    /// balances, if given (only for a run from seq 0 to the checkpoint), must equal the derived ones.
    pub fn finish(
        mut self,
        end: End,
        checkpoint: &Checkpoint,
        trusted: Option<&Checkpoint>,
        database: Option<&[(Id, Balances)]>,
    ) -> Result<Report, Failure> {
        if let Some(broken) = self.broken_link {
            return Err(fail(broken, FailureKind::BrokenLink));
        }
        if self.next_seq != end.end_seq {
            let last = self.next_seq.checked_sub(1).filter(|last| *last >= self.first_seq);
            return Err(fail(
                self.next_seq,
                FailureKind::Truncated {
                    last,
                    declared_end: end.end_seq,
                },
            ));
        }
        let span = merkle::Span {
            start: end.end_seq,
            end: checkpoint.size,
        };
        let parts: Vec<Subtree> = if end.end_seq <= checkpoint.size {
            span.subtrees().collect()
        } else {
            Vec::new()
        };
        if end.end_seq > checkpoint.size || parts.len() != end.rest.len() {
            return Err(fail(
                None,
                FailureKind::Frontier(merkle::ProofError::WrongLength {
                    expected: parts.len(),
                    actual: end.rest.len(),
                }),
            ));
        }
        for (part, hash) in parts.iter().zip(&end.rest) {
            self.tree
                .push_subtree(part.level, *hash)
                .map_err(|e| fail(None, FailureKind::Frontier(e)))?;
            if let Some(root) = self.wanted_roots.get_mut(&self.tree.size()) {
                *root = Some(self.tree.root());
            }
        }
        let computed = self.tree.root();
        if computed != checkpoint.root {
            return Err(fail(
                None,
                FailureKind::RootMismatch {
                    size: checkpoint.size,
                    computed: hex(&computed),
                    signed: hex(&checkpoint.root),
                },
            ));
        }
        if let Some(trusted) = trusted {
            self.check_extends(trusted, checkpoint)?;
        }
        let balances_compared = match database {
            Some(rows) => self.compare_balances(rows)?,
            None => 0,
        };
        Ok(Report {
            first_seq: self.first_seq,
            records: self.records(),
            checkpoint_size: checkpoint.size,
            by_type: self.by_type,
            totals: self
                .totals
                .into_iter()
                .map(|(currency, totals)| (String::from_utf8_lossy(&currency).into_owned(), totals))
                .collect(),
            accounts: self.accounts.len(),
            balances_compared,
        })
    }

    fn check_extends(&self, trusted: &Checkpoint, checkpoint: &Checkpoint) -> Result<(), Failure> {
        let not_extension = |reason: String| {
            let seq = (trusted.size > checkpoint.size).then_some(checkpoint.size);
            fail(
                seq,
                FailureKind::NotAnExtension {
                    trusted: trusted.size,
                    reason,
                },
            )
        };
        if trusted.origin != checkpoint.origin {
            return Err(not_extension(format!("its origin is {:?}", trusted.origin)));
        }
        if trusted.size > checkpoint.size {
            return Err(not_extension(format!(
                "the log now has only {} records (truncated)",
                checkpoint.size
            )));
        }
        match self.wanted_roots.get(&trusted.size) {
            Some(Some(root)) if *root == trusted.root => Ok(()),
            Some(Some(root)) => Err(not_extension(format!(
                "the first {} records now hash to {}, not {}",
                trusted.size,
                hex(root),
                hex(&trusted.root)
            ))),
            _ => Err(not_extension(format!(
                "the bundle does not cover seq {} (it starts at {})",
                trusted.size, self.first_seq
            ))),
        }
    }

    fn compare_balances(&self, rows: &[(Id, Balances)]) -> Result<usize, Failure> {
        let mismatch = |id: &Id, detail: String| {
            fail(
                None,
                FailureKind::BalanceMismatch {
                    account: uuid_text(id),
                    detail,
                },
            )
        };
        if rows.len() != self.accounts.len() {
            let listed: HashSet<&Id> = rows.iter().map(|(id, _)| id).collect();
            let missing = self.accounts.keys().find(|id| !listed.contains(id));
            if let Some(id) = missing {
                return Err(mismatch(
                    id,
                    "the log created it; the database does not list it".to_string(),
                ));
            }
        }
        for (id, balances) in rows {
            let Some(account) = self.accounts.get(id) else {
                return Err(mismatch(
                    id,
                    "the database lists it; the log never created it".to_string(),
                ));
            };
            if account.balances != *balances {
                return Err(mismatch(
                    id,
                    format!("database {balances:?}, log {:?}", account.balances),
                ));
            }
        }
        Ok(rows.len())
    }

    /// Applies one record to the derived ledger. Checks that need records before the run are made
    /// only when the run starts at seq 0.
    fn apply(&mut self, event: &Event) -> Result<(), String> {
        let complete = self.first_seq == 0;
        match event {
            Event::AccountCreated(account) => self.create_account(account),
            Event::AccountClosed { id } => match self.accounts.get_mut(id) {
                Some(account) => {
                    account.closed = true;
                    Ok(())
                }
                None if complete => Err(format!("closes account {} that does not exist", uuid_text(id))),
                None => Ok(()),
            },
            Event::TransferCreated(transfer) => self.create_transfer(transfer, complete),
            Event::TransferPosted(resolution)
            | Event::TransferVoided(resolution)
            | Event::TransferExpired(resolution) => {
                let expired = matches!(event, Event::TransferExpired(_));
                self.resolve(resolution, expired, complete)
            }
            // Records of decisions that move no money by themselves: the ledger records that follow
            // (the held transfer, its posting or voiding) carry the movements.
            Event::CommandRejected(_)
            | Event::AccessDenied(_)
            | Event::PolicySetLoaded(_)
            | Event::ReviewOpened(_)
            | Event::ReviewDecided(_)
            | Event::ReviewApproved(_)
            | Event::FraudScreened(_)
            | Event::RulesetChanged(_)
            | Event::SettlementCompleted(_) => Ok(()),
        }
    }

    fn create_account(&mut self, account: &AccountCreated) -> Result<(), String> {
        if self.accounts.contains_key(&account.id) {
            return Err(format!("creates account {} a second time", uuid_text(&account.id)));
        }
        let limit = Some(account.overdraft_limit);
        self.accounts.insert(
            account.id,
            AccountState {
                currency: account.currency,
                closed: false,
                debits_limit: limit.filter(|_| account.debits_must_not_exceed_credits),
                credits_limit: limit.filter(|_| account.credits_must_not_exceed_debits),
                balances: Balances::default(),
            },
        );
        Ok(())
    }

    /// The accounts a movement names, checked against what the run knows of them.
    fn check_accounts(&self, debit: &Id, credit: &Id, currency: &Currency, complete: bool) -> Result<(), String> {
        if debit == credit {
            return Err("debits and credits the same account".to_string());
        }
        for id in [debit, credit] {
            match self.accounts.get(id) {
                Some(account) if account.currency != *currency => {
                    return Err(format!(
                        "moves {} on account {} of another currency",
                        text(currency),
                        uuid_text(id)
                    ));
                }
                Some(_) => {}
                None if complete => return Err(format!("names account {} that does not exist", uuid_text(id))),
                None => {}
            }
        }
        Ok(())
    }

    fn create_transfer(&mut self, transfer: &TransferCreated, complete: bool) -> Result<(), String> {
        let (debit, credit, currency) = (&transfer.debit_account, &transfer.credit_account, &transfer.currency);
        self.check_accounts(debit, credit, currency, complete)?;
        for id in [debit, credit] {
            if self.accounts.get(id).is_some_and(|a| a.closed) {
                return Err(format!("moves money on closed account {}", uuid_text(id)));
            }
        }
        if !self.transfers.insert(transfer.id) {
            return Err(format!("creates transfer {} a second time", uuid_text(&transfer.id)));
        }
        if transfer.amount == 0 {
            return Err("moves a zero amount".to_string());
        }
        let amount = i128::from(transfer.amount);
        let pending = transfer.pending_timeout_s.is_some();
        self.change(debit, currency, |b| {
            if pending {
                b.debits_pending += amount
            } else {
                b.debits_posted += amount
            }
        })?;
        self.change(credit, currency, |b| {
            if pending {
                b.credits_pending += amount
            } else {
                b.credits_posted += amount
            }
        })?;
        if pending {
            self.pending.insert(
                transfer.id,
                OpenPending {
                    debit: *debit,
                    credit: *credit,
                    currency: *currency,
                    amount: transfer.amount,
                },
            );
        }
        Ok(())
    }

    fn resolve(&mut self, resolution: &Resolution, expired: bool, complete: bool) -> Result<(), String> {
        let (debit, credit, currency) = (
            &resolution.debit_account,
            &resolution.credit_account,
            &resolution.currency,
        );
        self.check_accounts(debit, credit, currency, complete)?;
        if let Some(id) = &resolution.id
            && !self.transfers.insert(*id)
        {
            return Err(format!("creates transfer {} a second time", uuid_text(id)));
        }
        if expired != resolution.id.is_none() {
            return Err("an expiry names a resolving transfer, or a post or void names none".to_string());
        }
        match self.pending.remove(&resolution.pending_id) {
            Some(open) => {
                let same = open.debit == *debit
                    && open.credit == *credit
                    && open.currency == *currency
                    && open.amount == resolution.pending_amount;
                if !same {
                    return Err(format!(
                        "resolves pending transfer {} with other accounts or amounts than it reserved",
                        uuid_text(&resolution.pending_id)
                    ));
                }
            }
            None if complete => {
                return Err(format!(
                    "resolves pending transfer {} that is not open",
                    uuid_text(&resolution.pending_id)
                ));
            }
            None => {}
        }
        if resolution.posted_amount > resolution.pending_amount {
            return Err("posts more than the pending transfer reserved".to_string());
        }
        let (released, posted) = (
            i128::from(resolution.pending_amount),
            i128::from(resolution.posted_amount),
        );
        self.change(debit, currency, |b| {
            b.debits_pending -= released;
            b.debits_posted += posted;
        })?;
        self.change(credit, currency, |b| {
            b.credits_pending -= released;
            b.credits_posted += posted;
        })
    }

    /// Changes the currency's totals and the account's balances (when the run knows the account), and
    /// checks the account afterwards: nothing pending below zero, no limit exceeded.
    fn change(&mut self, id: &Id, currency: &Currency, change: impl Fn(&mut Balances)) -> Result<(), String> {
        change(self.totals.entry(*currency).or_default());
        let Some(account) = self.accounts.get_mut(id) else {
            return Ok(());
        };
        change(&mut account.balances);
        let b = &account.balances;
        if b.debits_pending < 0 || b.credits_pending < 0 {
            return Err(format!("account {} releases more than it has pending", uuid_text(id)));
        }
        if let Some(limit) = account.debits_limit
            && b.debits_posted + b.debits_pending > b.credits_posted + i128::from(limit)
        {
            return Err(format!("account {} debits exceed its credits and limit", uuid_text(id)));
        }
        if let Some(limit) = account.credits_limit
            && b.credits_posted + b.credits_pending > b.debits_posted + i128::from(limit)
        {
            return Err(format!("account {} credits exceed its debits and limit", uuid_text(id)));
        }
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn text(currency: &Currency) -> String {
    String::from_utf8_lossy(currency).into_owned()
}

/// A 16-byte id in the usual UUID text form.
pub fn uuid_text(id: &Id) -> String {
    let h = hex(id);
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}
