//! Audit records and their canonical encoding.
//!
//! A record is stored as exactly the bytes that are hashed: its leaf hash in the Merkle tree is
//! SHA-256(0x00 || bytes), and the next record carries that hash as `prev_hash`. A verifier hashes the
//! stored bytes first and parses them only afterwards. The encoding is canonical: [`Record::decode`]
//! accepts exactly the byte strings [`Record::encode`] produces (no alternative forms of a boolean, an
//! absent field or a length, no trailing bytes), so one record has one encoding.
//!
//! Layout, version 1 (integers big-endian; `str` is a u16 length and UTF-8; `blob` a u32 length):
//!
//! ```text
//! magic "FLA" 0x01 | seq u64 | timestamp i64 (µs since the Unix epoch, UTC) | type u16
//! | actor: principal str, certificate opt [32], front_end opt str, policy_set opt [32]
//! | payload blob (layout per type, below) | prev_hash [32]
//! ```
//!
//! `opt` is a 0 byte for an absent value, or a 1 byte and the value; a list is a u16 count and items.
//!
//! Amounts are integers in the currency's minor units; currencies three ASCII capitals; ids 16 bytes.

use crate::merkle::Hash;

/// The first bytes of every version-1 record.
pub const MAGIC: [u8; 4] = *b"FLA\x01";

/// A 16-byte identifier (a UUID's bytes).
pub type Id = [u8; 16];

/// An ISO 4217 alphabetic code.
pub type Currency = [u8; 3];

/// The `prev_hash` of the first record.
pub const GENESIS_PREV_HASH: Hash = [0; 32];

/// Who caused a record: the principal the action was decided for, the fingerprint of the client
/// certificate presented (none for the ledger's own actions, such as expiring a pending transfer), the
/// trusted front-end that relayed a user's request, and the policy set that allowed it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Actor {
    pub principal: String,
    pub certificate_sha256: Option<Hash>,
    /// The front-end (for example the operator console) that presented the certificate and a token
    /// naming `principal`, a user; absent when the principal called directly.
    pub front_end: Option<String>,
    /// SHA-256 of the authorization policy set that allowed the action (for a denial: that denied it).
    pub policy_set: Option<Hash>,
}

impl Actor {
    /// The ledger itself, for what it does on its own (expiry).
    pub fn system() -> Actor {
        Actor {
            principal: "finledger".to_string(),
            ..Actor::default()
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub seq: u64,
    pub timestamp_micros: i64,
    pub actor: Actor,
    pub event: Event,
    pub prev_hash: Hash,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    AccountCreated(AccountCreated),
    AccountClosed {
        id: Id,
    },
    /// A single-phase (posted at once) or pending transfer.
    TransferCreated(TransferCreated),
    /// A pending transfer posted, in full or in part, by the transfer `id`.
    TransferPosted(Resolution),
    /// A pending transfer voided by the transfer `id`.
    TransferVoided(Resolution),
    /// A pending transfer voided by the ledger when its timeout passed (`id` is absent).
    TransferExpired(Resolution),
    /// A command that changed nothing, with its result code.
    CommandRejected(Rejection),
    /// A request the authorization policies refused; nothing else happened.
    AccessDenied(AccessDenied),
    /// A new authorization policy set took effect (at start-up or on reload).
    PolicySetLoaded(PolicySetLoaded),
    /// A transfer was created held (pending) until a second principal decides on it.
    ReviewOpened(ReviewOpened),
    /// A held transfer was approved (posted) or rejected (voided) by the record's actor.
    ReviewDecided(ReviewDecided),
    /// One reason a transfer is held for was approved by the record's actor; the transfer moves once
    /// every reason it is held for is approved (the last approval's record precedes its
    /// `ReviewDecided`).
    ReviewApproved(ReviewApproved),
    /// Transfers screened by the fraud rules: one record per transfer a rule hit or failed on, with its
    /// explanation, and one per batch for all transfers allowed with no rule hit.
    FraudScreened(FraudScreened),
    /// A fraud ruleset was proposed (with its files' hashes) or activated by the record's actor.
    RulesetChanged(RulesetChanged),
    /// A settlement run netted an account's posted movements over its period (and, when the net was
    /// positive, paid it to the clearing account by the transfer `transfer`, whose own record follows).
    SettlementCompleted(SettlementCompleted),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessDenied {
    /// The action asked for, e.g. `transfer.create`.
    pub action: String,
    /// The resource, as a Cedar entity reference, e.g. `Transfer::"<uuid>"`.
    pub resource: String,
    /// The policies that determined the denial (the forbids that matched; empty when nothing
    /// permitted the request).
    pub policy_ids: Vec<String>,
    /// Policies whose evaluation failed; any failure is a denial.
    pub erroring_policy_ids: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PolicySetLoaded {
    /// SHA-256 over every file below, in order (what `Actor::policy_set` names).
    pub policy_set: Hash,
    /// Each file of the set (schema, policies, principals) by name, with its SHA-256.
    pub files: Vec<(String, Hash)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReviewOpened {
    pub transfer: Id,
    /// Why the transfer is held, e.g. `approval_limit`.
    pub reason: String,
    /// Who asked for the transfer.
    pub initiator: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FraudScreened {
    /// SHA-256 of the ruleset's files.
    pub ruleset: Hash,
    /// `allow`, `review` or `deny`.
    pub verdict: String,
    pub transfers: Vec<Id>,
    /// For one transfer with rule outcomes: the rules that hit or failed (with versions and
    /// reasons), the score and the feature values, as JSON; empty otherwise.
    pub explanation: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RulesetChanged {
    /// SHA-256 of the ruleset's files (what `FraudScreened::ruleset` names).
    pub ruleset: Hash,
    /// `proposed` or `activated`.
    pub change: String,
    /// For a proposal: each file by name, with its SHA-256.
    pub files: Vec<(String, Hash)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SettlementCompleted {
    pub id: Id,
    pub account: Id,
    pub currency: Currency,
    /// The period (microseconds since the epoch): after the previous settlement's cut-off (from the
    /// account's beginning when absent) up to and including `cut_off_us`.
    pub period_start_us: Option<u64>,
    pub cut_off_us: u64,
    /// The included transfers' credits and debits to the account, in minor units.
    pub credits: u64,
    pub debits: u64,
    pub transfer_count: u64,
    /// SHA-256 over the included transfer ids (16 bytes each) in commit order.
    pub transfers_hash: Hash,
    pub transfer: Option<Id>,
    pub clearing_account: Id,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Approve = 1,
    Reject = 2,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReviewDecided {
    /// The held transfer.
    pub transfer: Id,
    pub decision: Decision,
    /// The transfer that posted or voided it.
    pub resolution: Id,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReviewApproved {
    /// The held transfer.
    pub transfer: Id,
    /// The reason approved, e.g. `approval_limit` or `fraud`.
    pub reason: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountCreated {
    pub id: Id,
    pub currency: Currency,
    pub code: u16,
    pub owner: String,
    pub debits_must_not_exceed_credits: bool,
    pub credits_must_not_exceed_debits: bool,
    pub overdraft_limit: u64,
    /// The account's metadata as JSON text.
    pub metadata: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferCreated {
    pub id: Id,
    /// Set for a pending transfer: seconds until it expires.
    pub pending_timeout_s: Option<u32>,
    pub linked: bool,
    pub debit_account: Id,
    pub credit_account: Id,
    pub amount: u64,
    pub currency: Currency,
    pub code: u16,
    pub metadata: String,
}

/// How a pending transfer ended, with what it had reserved.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolution {
    /// The transfer that posted or voided it; absent for an expiry.
    pub id: Option<Id>,
    pub pending_id: Id,
    pub linked: bool,
    pub debit_account: Id,
    pub credit_account: Id,
    pub currency: Currency,
    /// What the pending transfer reserved (released now).
    pub pending_amount: u64,
    /// What was posted: at most `pending_amount`; zero when voided or expired.
    pub posted_amount: u64,
    pub code: u16,
    pub metadata: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CommandKind {
    CreateAccount = 1,
    CloseAccount = 2,
    CreateTransfer = 3,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    pub command: CommandKind,
    pub id: Id,
    /// The result code, e.g. `exceeds_credits` or `exists`.
    pub code: String,
    /// What a rejected transfer asked for, as far as it said.
    pub debit_account: Option<Id>,
    pub credit_account: Option<Id>,
    pub amount: Option<u64>,
    pub currency: Option<Currency>,
    pub pending_id: Option<Id>,
}

impl Event {
    /// The record type's number in the encoding.
    pub fn type_code(&self) -> u16 {
        match self {
            Event::AccountCreated(_) => 1,
            Event::AccountClosed { .. } => 2,
            Event::TransferCreated(_) => 3,
            Event::TransferPosted(_) => 4,
            Event::TransferVoided(_) => 5,
            Event::TransferExpired(_) => 6,
            Event::CommandRejected(_) => 7,
            Event::AccessDenied(_) => 8,
            Event::PolicySetLoaded(_) => 9,
            Event::ReviewOpened(_) => 10,
            Event::ReviewDecided(_) => 11,
            Event::FraudScreened(_) => 12,
            Event::RulesetChanged(_) => 13,
            Event::SettlementCompleted(_) => 14,
            Event::ReviewApproved(_) => 15,
        }
    }

    /// The record type's name, as APIs and reports show it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Event::AccountCreated(_) => "account.created",
            Event::AccountClosed { .. } => "account.closed",
            Event::TransferCreated(_) => "transfer.created",
            Event::TransferPosted(_) => "transfer.posted",
            Event::TransferVoided(_) => "transfer.voided",
            Event::TransferExpired(_) => "transfer.expired",
            Event::CommandRejected(_) => "command.rejected",
            Event::AccessDenied(_) => "access.denied",
            Event::PolicySetLoaded(_) => "policy_set.loaded",
            Event::ReviewOpened(_) => "review.opened",
            Event::ReviewDecided(_) => "review.decided",
            Event::FraudScreened(_) => "fraud.screened",
            Event::RulesetChanged(_) => "fraud.ruleset",
            Event::SettlementCompleted(_) => "settlement.completed",
            Event::ReviewApproved(_) => "review.approved",
        }
    }
}

/// Why bytes are not a record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a version-1 audit record: {reason} (at byte {offset})")]
pub struct DecodeError {
    pub offset: usize,
    pub reason: &'static str,
}

impl Record {
    pub fn encode(&self) -> Vec<u8> {
        encode(
            self.seq,
            self.timestamp_micros,
            &self.actor,
            &self.event,
            &self.prev_hash,
        )
    }

    pub fn decode(bytes: &[u8]) -> Result<Record, DecodeError> {
        let mut input = Reader { bytes, at: 0 };
        if input.take(4)? != MAGIC {
            return Err(input.error_at(0, "unknown magic or version"));
        }
        let seq = input.u64()?;
        let timestamp_micros = input.u64()? as i64;
        let type_code = input.u16()?;
        let principal = input.str()?;
        let certificate_sha256 = input.opt(Reader::hash)?;
        let front_end = input.opt(Reader::str)?;
        let policy_set = input.opt(Reader::hash)?;
        let length = input.u32()? as usize;
        let payload_start = input.at;
        let event = decode_event(&mut input, type_code)?;
        if input.at - payload_start != length {
            return Err(input.error("payload length does not match its contents"));
        }
        let prev_hash = input.hash()?;
        if input.at != bytes.len() {
            return Err(input.error("trailing bytes after the record"));
        }
        Ok(Record {
            seq,
            timestamp_micros,
            actor: Actor {
                principal,
                certificate_sha256,
                front_end,
                policy_set,
            },
            event,
            prev_hash,
        })
    }
}

/// The encoding of the record with these fields (see [`Record::encode`]), without building one.
pub fn encode(seq: u64, timestamp_micros: i64, actor: &Actor, event: &Event, prev_hash: &Hash) -> Vec<u8> {
    let mut out = Writer(Vec::with_capacity(192));
    out.bytes(&MAGIC);
    out.u64(seq);
    out.u64(timestamp_micros as u64);
    out.u16(event.type_code());
    out.str(&actor.principal);
    out.opt(actor.certificate_sha256.as_ref(), |out, hash| out.bytes(hash));
    out.opt(actor.front_end.as_deref(), Writer::str);
    out.opt(actor.policy_set.as_ref(), |out, hash| out.bytes(hash));
    let length_at = out.0.len();
    out.u32(0);
    encode_event(&mut out, event);
    let length = (out.0.len() - length_at - 4) as u32;
    out.0[length_at..length_at + 4].copy_from_slice(&length.to_be_bytes());
    out.bytes(prev_hash);
    out.0
}

fn encode_event(out: &mut Writer, event: &Event) {
    match event {
        Event::AccountCreated(a) => {
            out.bytes(&a.id);
            out.bytes(&a.currency);
            out.u16(a.code);
            out.str(&a.owner);
            out.bool(a.debits_must_not_exceed_credits);
            out.bool(a.credits_must_not_exceed_debits);
            out.u64(a.overdraft_limit);
            out.blob(a.metadata.as_bytes());
        }
        Event::AccountClosed { id } => out.bytes(id),
        Event::TransferCreated(t) => {
            out.bytes(&t.id);
            out.opt(t.pending_timeout_s, Writer::u32);
            out.bool(t.linked);
            out.bytes(&t.debit_account);
            out.bytes(&t.credit_account);
            out.u64(t.amount);
            out.bytes(&t.currency);
            out.u16(t.code);
            out.blob(t.metadata.as_bytes());
        }
        Event::TransferPosted(r) | Event::TransferVoided(r) | Event::TransferExpired(r) => {
            out.opt(r.id.as_ref(), |out, id| out.bytes(id));
            out.bytes(&r.pending_id);
            out.bool(r.linked);
            out.bytes(&r.debit_account);
            out.bytes(&r.credit_account);
            out.bytes(&r.currency);
            out.u64(r.pending_amount);
            out.u64(r.posted_amount);
            out.u16(r.code);
            out.blob(r.metadata.as_bytes());
        }
        Event::CommandRejected(r) => {
            out.u8(r.command as u8);
            out.bytes(&r.id);
            out.str(&r.code);
            out.opt(r.debit_account.as_ref(), |out, id| out.bytes(id));
            out.opt(r.credit_account.as_ref(), |out, id| out.bytes(id));
            out.opt(r.amount, Writer::u64);
            out.opt(r.currency.as_ref(), |out, currency| out.bytes(currency));
            out.opt(r.pending_id.as_ref(), |out, id| out.bytes(id));
        }
        Event::AccessDenied(d) => {
            out.str(&d.action);
            out.str(&d.resource);
            out.list(&d.policy_ids, |out, id| out.str(id));
            out.list(&d.erroring_policy_ids, |out, id| out.str(id));
        }
        Event::PolicySetLoaded(p) => {
            out.bytes(&p.policy_set);
            out.list(&p.files, |out, (name, hash)| {
                out.str(name);
                out.bytes(hash);
            });
        }
        Event::ReviewOpened(r) => {
            out.bytes(&r.transfer);
            out.str(&r.reason);
            out.str(&r.initiator);
        }
        Event::ReviewDecided(r) => {
            out.bytes(&r.transfer);
            out.u8(r.decision as u8);
            out.bytes(&r.resolution);
        }
        Event::ReviewApproved(r) => {
            out.bytes(&r.transfer);
            out.str(&r.reason);
        }
        Event::FraudScreened(f) => {
            out.bytes(&f.ruleset);
            out.str(&f.verdict);
            out.list(&f.transfers, |out, id| out.bytes(id));
            out.blob(f.explanation.as_bytes());
        }
        Event::RulesetChanged(r) => {
            out.bytes(&r.ruleset);
            out.str(&r.change);
            out.list(&r.files, |out, (name, hash)| {
                out.str(name);
                out.bytes(hash);
            });
        }
        Event::SettlementCompleted(s) => {
            out.bytes(&s.id);
            out.bytes(&s.account);
            out.bytes(&s.currency);
            out.opt(s.period_start_us, Writer::u64);
            out.u64(s.cut_off_us);
            out.u64(s.credits);
            out.u64(s.debits);
            out.u64(s.transfer_count);
            out.bytes(&s.transfers_hash);
            out.opt(s.transfer.as_ref(), |out, id| out.bytes(id));
            out.bytes(&s.clearing_account);
        }
    }
}

fn decode_event(input: &mut Reader, type_code: u16) -> Result<Event, DecodeError> {
    Ok(match type_code {
        1 => Event::AccountCreated(AccountCreated {
            id: input.id()?,
            currency: input.currency()?,
            code: input.u16()?,
            owner: input.str()?,
            debits_must_not_exceed_credits: input.bool()?,
            credits_must_not_exceed_debits: input.bool()?,
            overdraft_limit: input.u64()?,
            metadata: input.blob_str()?,
        }),
        2 => Event::AccountClosed { id: input.id()? },
        3 => Event::TransferCreated(TransferCreated {
            id: input.id()?,
            pending_timeout_s: input.opt(Reader::u32)?,
            linked: input.bool()?,
            debit_account: input.id()?,
            credit_account: input.id()?,
            amount: input.u64()?,
            currency: input.currency()?,
            code: input.u16()?,
            metadata: input.blob_str()?,
        }),
        4..=6 => {
            let resolution = Resolution {
                id: input.opt(Reader::id)?,
                pending_id: input.id()?,
                linked: input.bool()?,
                debit_account: input.id()?,
                credit_account: input.id()?,
                currency: input.currency()?,
                pending_amount: input.u64()?,
                posted_amount: input.u64()?,
                code: input.u16()?,
                metadata: input.blob_str()?,
            };
            match type_code {
                4 => Event::TransferPosted(resolution),
                5 => Event::TransferVoided(resolution),
                _ => Event::TransferExpired(resolution),
            }
        }
        7 => Event::CommandRejected(Rejection {
            command: match input.u8()? {
                1 => CommandKind::CreateAccount,
                2 => CommandKind::CloseAccount,
                3 => CommandKind::CreateTransfer,
                _ => return Err(input.error("unknown command kind")),
            },
            id: input.id()?,
            code: input.str()?,
            debit_account: input.opt(Reader::id)?,
            credit_account: input.opt(Reader::id)?,
            amount: input.opt(Reader::u64)?,
            currency: input.opt(Reader::currency)?,
            pending_id: input.opt(Reader::id)?,
        }),
        8 => Event::AccessDenied(AccessDenied {
            action: input.str()?,
            resource: input.str()?,
            policy_ids: input.list(Reader::str)?,
            erroring_policy_ids: input.list(Reader::str)?,
        }),
        9 => Event::PolicySetLoaded(PolicySetLoaded {
            policy_set: input.hash()?,
            files: input.list(|input| Ok((input.str()?, input.hash()?)))?,
        }),
        10 => Event::ReviewOpened(ReviewOpened {
            transfer: input.id()?,
            reason: input.str()?,
            initiator: input.str()?,
        }),
        11 => Event::ReviewDecided(ReviewDecided {
            transfer: input.id()?,
            decision: match input.u8()? {
                1 => Decision::Approve,
                2 => Decision::Reject,
                _ => return Err(input.error("unknown review decision")),
            },
            resolution: input.id()?,
        }),
        12 => Event::FraudScreened(FraudScreened {
            ruleset: input.hash()?,
            verdict: input.str()?,
            transfers: input.list(Reader::id)?,
            explanation: input.blob_str()?,
        }),
        13 => Event::RulesetChanged(RulesetChanged {
            ruleset: input.hash()?,
            change: input.str()?,
            files: input.list(|input| Ok((input.str()?, input.hash()?)))?,
        }),
        15 => Event::ReviewApproved(ReviewApproved {
            transfer: input.id()?,
            reason: input.str()?,
        }),
        14 => Event::SettlementCompleted(SettlementCompleted {
            id: input.id()?,
            account: input.id()?,
            currency: input.currency()?,
            period_start_us: input.opt(Reader::u64)?,
            cut_off_us: input.u64()?,
            credits: input.u64()?,
            debits: input.u64()?,
            transfer_count: input.u64()?,
            transfers_hash: input.hash()?,
            transfer: input.opt(Reader::id)?,
            clearing_account: input.id()?,
        }),
        _ => return Err(input.error("unknown record type")),
    })
}

struct Writer(Vec<u8>);

impl Writer {
    fn bytes(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }
    fn u8(&mut self, value: u8) {
        self.0.push(value);
    }
    fn bool(&mut self, value: bool) {
        self.0.push(value as u8);
    }
    fn u16(&mut self, value: u16) {
        self.bytes(&value.to_be_bytes());
    }
    fn u32(&mut self, value: u32) {
        self.bytes(&value.to_be_bytes());
    }
    fn u64(&mut self, value: u64) {
        self.bytes(&value.to_be_bytes());
    }
    /// Strings longer than u16::MAX bytes are cut at a character boundary: principals and result codes
    /// are short by construction, so this only bounds what a record can hold.
    fn str(&mut self, value: &str) {
        let mut end = value.len().min(u16::MAX as usize);
        while !value.is_char_boundary(end) {
            end -= 1;
        }
        self.u16(end as u16);
        self.bytes(&value.as_bytes()[..end]);
    }
    fn blob(&mut self, value: &[u8]) {
        self.u32(value.len() as u32);
        self.bytes(value);
    }
    /// A u16 count and the items; lists longer than u16::MAX items are cut (they are policy ids and
    /// file names, short by construction).
    fn list<T>(&mut self, items: &[T], mut put: impl FnMut(&mut Writer, &T)) {
        let count = items.len().min(u16::MAX as usize);
        self.u16(count as u16);
        for item in &items[..count] {
            put(self, item);
        }
    }
    /// An absent value as a 0 byte; a present one as a 1 byte and the value.
    fn opt<T>(&mut self, value: Option<T>, put: impl FnOnce(&mut Writer, T)) {
        match value {
            None => self.u8(0),
            Some(value) => {
                self.u8(1);
                put(self, value);
            }
        }
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn error(&self, reason: &'static str) -> DecodeError {
        self.error_at(self.at, reason)
    }
    fn error_at(&self, offset: usize, reason: &'static str) -> DecodeError {
        DecodeError { offset, reason }
    }
    fn take(&mut self, count: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.at.checked_add(count).filter(|end| *end <= self.bytes.len());
        let Some(end) = end else {
            return Err(self.error("the record ends early"));
        };
        let taken = &self.bytes[self.at..end];
        self.at = end;
        Ok(taken)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }
    fn flag(&mut self) -> Result<bool, DecodeError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(self.error_at(self.at - 1, "a flag byte is neither 0 nor 1")),
        }
    }
    fn bool(&mut self) -> Result<bool, DecodeError> {
        self.flag()
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }
    fn id(&mut self) -> Result<Id, DecodeError> {
        self.array()
    }
    fn hash(&mut self) -> Result<Hash, DecodeError> {
        self.array()
    }
    fn currency(&mut self) -> Result<Currency, DecodeError> {
        let currency: Currency = self.array()?;
        if !currency.iter().all(u8::is_ascii_uppercase) {
            return Err(self.error_at(self.at - 3, "a currency is not three ASCII capitals"));
        }
        Ok(currency)
    }
    fn utf8(&mut self, length: usize) -> Result<String, DecodeError> {
        let start = self.at;
        let bytes = self.take(length)?;
        std::str::from_utf8(bytes)
            .map(str::to_string)
            .map_err(|_| self.error_at(start, "a string is not UTF-8"))
    }
    fn str(&mut self) -> Result<String, DecodeError> {
        let length = self.u16()? as usize;
        self.utf8(length)
    }
    fn blob_str(&mut self) -> Result<String, DecodeError> {
        let length = self.u32()? as usize;
        self.utf8(length)
    }
    fn opt<T>(&mut self, get: impl FnOnce(&mut Self) -> Result<T, DecodeError>) -> Result<Option<T>, DecodeError> {
        Ok(if self.flag()? { Some(get(self)?) } else { None })
    }
    fn list<T>(&mut self, mut get: impl FnMut(&mut Self) -> Result<T, DecodeError>) -> Result<Vec<T>, DecodeError> {
        let count = self.u16()?;
        (0..count).map(|_| get(self)).collect()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn id() -> impl Strategy<Value = Id> {
        any::<[u8; 16]>()
    }

    fn currency() -> impl Strategy<Value = Currency> {
        proptest::array::uniform3(b'A'..=b'Z')
    }

    fn resolution() -> impl Strategy<Value = Resolution> {
        (
            proptest::option::of(id()),
            id(),
            any::<bool>(),
            id(),
            id(),
            currency(),
            any::<u64>(),
            any::<u64>(),
            any::<u16>(),
            ".{0,20}",
        )
            .prop_map(
                |(
                    id,
                    pending_id,
                    linked,
                    debit_account,
                    credit_account,
                    currency,
                    pending_amount,
                    posted_amount,
                    code,
                    metadata,
                )| {
                    Resolution {
                        id,
                        pending_id,
                        linked,
                        debit_account,
                        credit_account,
                        currency,
                        pending_amount,
                        posted_amount,
                        code,
                        metadata,
                    }
                },
            )
    }

    fn event() -> impl Strategy<Value = Event> {
        prop_oneof![
            (
                id(),
                currency(),
                any::<u16>(),
                ".{0,12}",
                any::<bool>(),
                any::<bool>(),
                any::<u64>(),
                ".{0,20}"
            )
                .prop_map(|(id, currency, code, owner, d, c, overdraft_limit, metadata)| {
                    Event::AccountCreated(AccountCreated {
                        id,
                        currency,
                        code,
                        owner,
                        debits_must_not_exceed_credits: d,
                        credits_must_not_exceed_debits: c,
                        overdraft_limit,
                        metadata,
                    })
                }),
            id().prop_map(|id| Event::AccountClosed { id }),
            (
                id(),
                proptest::option::of(any::<u32>()),
                any::<bool>(),
                id(),
                id(),
                any::<u64>(),
                currency(),
                any::<u16>(),
                ".{0,20}"
            )
                .prop_map(
                    |(
                        id,
                        pending_timeout_s,
                        linked,
                        debit_account,
                        credit_account,
                        amount,
                        currency,
                        code,
                        metadata,
                    )| {
                        Event::TransferCreated(TransferCreated {
                            id,
                            pending_timeout_s,
                            linked,
                            debit_account,
                            credit_account,
                            amount,
                            currency,
                            code,
                            metadata,
                        })
                    }
                ),
            resolution().prop_map(Event::TransferPosted),
            resolution().prop_map(Event::TransferVoided),
            resolution().prop_map(Event::TransferExpired),
            (
                prop_oneof![
                    Just(CommandKind::CreateAccount),
                    Just(CommandKind::CloseAccount),
                    Just(CommandKind::CreateTransfer)
                ],
                id(),
                "[a-z_]{1,30}",
                proptest::option::of(id()),
                proptest::option::of(id()),
                proptest::option::of(any::<u64>()),
                proptest::option::of(currency()),
                proptest::option::of(id()),
            )
                .prop_map(
                    |(command, id, code, debit_account, credit_account, amount, currency, pending_id)| {
                        Event::CommandRejected(Rejection {
                            command,
                            id,
                            code,
                            debit_account,
                            credit_account,
                            amount,
                            currency,
                            pending_id,
                        })
                    }
                ),
            (
                "[a-z.]{1,20}",
                ".{0,40}",
                proptest::collection::vec("[a-z-]{1,12}", 0..3),
                proptest::collection::vec("[a-z-]{1,12}", 0..3),
            )
                .prop_map(|(action, resource, policy_ids, erroring_policy_ids)| {
                    Event::AccessDenied(AccessDenied {
                        action,
                        resource,
                        policy_ids,
                        erroring_policy_ids,
                    })
                }),
            (
                any::<[u8; 32]>(),
                proptest::collection::vec(("[a-z./]{1,20}", any::<[u8; 32]>()), 0..4)
            )
                .prop_map(|(policy_set, files)| Event::PolicySetLoaded(PolicySetLoaded { policy_set, files })),
            (id(), "[a-z_]{1,20}", ".{0,12}").prop_map(|(transfer, reason, initiator)| {
                Event::ReviewOpened(ReviewOpened {
                    transfer,
                    reason,
                    initiator,
                })
            }),
            (id(), "[a-z_]{1,20}")
                .prop_map(|(transfer, reason)| Event::ReviewApproved(ReviewApproved { transfer, reason })),
            (id(), any::<bool>(), id()).prop_map(|(transfer, approve, resolution)| {
                Event::ReviewDecided(ReviewDecided {
                    transfer,
                    decision: if approve { Decision::Approve } else { Decision::Reject },
                    resolution,
                })
            }),
            (
                any::<[u8; 32]>(),
                "allow|review|deny",
                proptest::collection::vec(id(), 0..4),
                ".{0,40}"
            )
                .prop_map(|(ruleset, verdict, transfers, explanation)| {
                    Event::FraudScreened(FraudScreened {
                        ruleset,
                        verdict,
                        transfers,
                        explanation,
                    })
                }),
            (
                any::<[u8; 32]>(),
                "proposed|activated",
                proptest::collection::vec(("[a-z./]{1,20}", any::<[u8; 32]>()), 0..3)
            )
                .prop_map(|(ruleset, change, files)| Event::RulesetChanged(RulesetChanged {
                    ruleset,
                    change,
                    files
                })),
            (
                (id(), id(), currency(), proptest::option::of(any::<u64>()), any::<u64>()),
                (any::<u64>(), any::<u64>(), any::<u64>(), any::<[u8; 32]>()),
                (proptest::option::of(id()), id()),
            )
                .prop_map(
                    |(
                        (id, account, currency, period_start_us, cut_off_us),
                        (credits, debits, transfer_count, transfers_hash),
                        (transfer, clearing_account),
                    )| {
                        Event::SettlementCompleted(SettlementCompleted {
                            id,
                            account,
                            currency,
                            period_start_us,
                            cut_off_us,
                            credits,
                            debits,
                            transfer_count,
                            transfers_hash,
                            transfer,
                            clearing_account,
                        })
                    }
                ),
        ]
    }

    fn record() -> impl Strategy<Value = Record> {
        (
            any::<u64>(),
            any::<i64>(),
            (
                ".{0,16}",
                proptest::option::of(any::<[u8; 32]>()),
                proptest::option::of(".{0,8}"),
                proptest::option::of(any::<[u8; 32]>()),
            ),
            event(),
            any::<[u8; 32]>(),
        )
            .prop_map(
                |(seq, timestamp_micros, (principal, certificate_sha256, front_end, policy_set), event, prev_hash)| {
                    Record {
                        seq,
                        timestamp_micros,
                        actor: Actor {
                            principal,
                            certificate_sha256,
                            front_end,
                            policy_set,
                        },
                        event,
                        prev_hash,
                    }
                },
            )
    }

    proptest! {
        #[test]
        fn records_round_trip_through_their_encoding(record in record()) {
            let bytes = record.encode();
            prop_assert_eq!(Record::decode(&bytes), Ok(record.clone()));
        }

        /// Decoding never panics, and whatever decodes re-encodes to the very same bytes: one record,
        /// one encoding.
        #[test]
        fn the_encoding_is_canonical(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok(record) = Record::decode(&bytes) {
                prop_assert_eq!(record.encode(), bytes);
            }
        }

        /// Every single-byte change of a valid record is either refused or a different record.
        #[test]
        fn a_changed_byte_never_decodes_to_the_same_record(record in record(), at in any::<prop::sample::Index>(), xor in 1..=255u8) {
            let mut bytes = record.encode();
            let at = at.index(bytes.len());
            bytes[at] ^= xor;
            if let Ok(decoded) = Record::decode(&bytes) {
                prop_assert_ne!(&decoded, &record);
                prop_assert_eq!(decoded.encode(), bytes);
            }
        }
    }

    #[test]
    fn malformed_records_name_the_problem() {
        let record = Record {
            seq: 7,
            timestamp_micros: 1,
            actor: Actor::system(),
            event: Event::AccountClosed { id: [9; 16] },
            prev_hash: [1; 32],
        };
        let bytes = record.encode();
        assert_eq!(
            Record::decode(&bytes[..10]).unwrap_err().reason,
            "the record ends early"
        );
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(
            Record::decode(&longer).unwrap_err().reason,
            "trailing bytes after the record"
        );
        let mut wrong_magic = bytes.clone();
        wrong_magic[3] = 2;
        assert_eq!(
            Record::decode(&wrong_magic).unwrap_err().reason,
            "unknown magic or version"
        );
        let mut wrong_type = bytes;
        wrong_type[21] = 99;
        assert_eq!(Record::decode(&wrong_type).unwrap_err().reason, "unknown record type");
    }
}
