//! The transactional outbox: the events payout and reporting systems consume, written in the batch
//! transaction of the change each describes, then published to Kafka by the [`relay`] (or read
//! through GET /v1/events when no broker is configured).
//!
//! Every event has a stable id (derived from its type and subject, so the same change always yields
//! the same id), a key (the account it concerns, which Kafka partitions by), a per-key sequence number
//! counting that key's events from 1 with no gaps, the audit record of its change with that record's
//! leaf hash, and a JSON payload that validates against its type's schema in `schemas/`. On Kafka the
//! attributes travel as CloudEvents 1.0 headers (binary content mode) and the payload as the value.

pub mod relay;

use std::collections::HashMap;

use audit::merkle::Hash;
use audit::note::SignedCheckpoint;
use ledger::{Changes, Ledger, PendingState, Timestamp, Transfer, TransferKind, format_minor};
use serde::Serialize;
use serde_json::value::RawValue;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::api::views::{rfc3339, rfc3339_utc};
use crate::store::rows::to_datetime;
use crate::store::settlements::NewSettlement;

/// Namespace of event ids: UUIDv5 of "<type>/<subject>".
const EVENT_NAMESPACE: Uuid = Uuid::from_u128(0x2c7b_91e4_5a0f_4d3c_8e61_b7a2_09d5_f318);

/// The CloudEvents `source` of every event.
pub const EVENT_SOURCE: &str = "urn:finledger:ledger";

/// The key of the audit log's checkpoint events.
pub const CHECKPOINT_KEY: &str = "audit-log";

/// The kinds of event, each with its JSON Schema.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventType {
    /// Money moved: a single-phase transfer, or a pending transfer posted (in full or in part).
    TransferPosted,
    /// A pending transfer voided by a void transfer.
    TransferVoided,
    /// A pending transfer voided by the ledger when its timeout passed.
    TransferExpired,
    /// A settlement run netted an account's movements up to a cut-off.
    SettlementCompleted,
    /// A settlement's positive net, moved to the clearing account, is to be paid out.
    PayoutRequested,
    /// A signed checkpoint of the audit log, for witnesses.
    AuditCheckpoint,
}

impl EventType {
    pub const ALL: [EventType; 6] = [
        EventType::TransferPosted,
        EventType::TransferVoided,
        EventType::TransferExpired,
        EventType::SettlementCompleted,
        EventType::PayoutRequested,
        EventType::AuditCheckpoint,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::TransferPosted => "ledger.transfer.posted.v1",
            EventType::TransferVoided => "ledger.transfer.voided.v1",
            EventType::TransferExpired => "ledger.transfer.expired.v1",
            EventType::SettlementCompleted => "ledger.settlement.completed.v1",
            EventType::PayoutRequested => "ledger.payout.requested.v1",
            EventType::AuditCheckpoint => "ledger.audit.checkpoint.v1",
        }
    }

    /// The Kafka topic the relay publishes this type to.
    pub fn topic(self) -> &'static str {
        match self {
            EventType::TransferPosted | EventType::TransferVoided | EventType::TransferExpired => "ledger.transfers.v1",
            EventType::SettlementCompleted => "ledger.settlements.v1",
            EventType::PayoutRequested => "ledger.payouts.v1",
            EventType::AuditCheckpoint => "ledger.audit.checkpoint.v1",
        }
    }

    /// The JSON Schema (draft 2020-12) of this type's payload.
    pub fn schema(self) -> &'static str {
        match self {
            EventType::TransferPosted => include_str!("schemas/ledger.transfer.posted.v1.json"),
            EventType::TransferVoided => include_str!("schemas/ledger.transfer.voided.v1.json"),
            EventType::TransferExpired => include_str!("schemas/ledger.transfer.expired.v1.json"),
            EventType::SettlementCompleted => include_str!("schemas/ledger.settlement.completed.v1.json"),
            EventType::PayoutRequested => include_str!("schemas/ledger.payout.requested.v1.json"),
            EventType::AuditCheckpoint => include_str!("schemas/ledger.audit.checkpoint.v1.json"),
        }
    }

    pub fn parse(text: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == text)
    }

    /// The type's code in the outbox table (listed in migrations/0006_outbox_packed.sql).
    pub fn code(self) -> i16 {
        match self {
            EventType::TransferPosted => 1,
            EventType::TransferVoided => 2,
            EventType::TransferExpired => 3,
            EventType::SettlementCompleted => 4,
            EventType::PayoutRequested => 5,
            EventType::AuditCheckpoint => 6,
        }
    }

    pub fn from_code(code: i16) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.code() == code)
    }

    /// Every topic the relay publishes to.
    pub fn topics() -> Vec<&'static str> {
        let mut topics: Vec<&str> = EventType::ALL.iter().map(|t| t.topic()).collect();
        topics.sort_unstable();
        topics.dedup();
        topics
    }
}

/// What an event's key names: an account, or the audit log. Each key's last sequence number is kept
/// where the key lives: an account's in its balances row, the audit log's in the ledger head.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum EventKey {
    Account(Uuid),
    AuditLog,
}

impl std::fmt::Display for EventKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EventKey::Account(id) => id.fmt(f),
            EventKey::AuditLog => f.write_str(CHECKPOINT_KEY),
        }
    }
}

/// The audit record of an event's change: its sequence number and leaf hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditRef {
    pub seq: u64,
    pub hash: Hash,
}

/// One event, before it has its place in the outbox. A stored payload is kept as data and serialized
/// by the batch's writer task, off the single writer's path; a transfer event has none (see
/// [`events_after`]).
pub struct NewEvent {
    pub event_type: EventType,
    pub key: EventKey,
    /// What the event is about: a transfer, settlement or checkpoint; with the type, its identity.
    pub subject: String,
    pub data: Option<EventData>,
    pub audit: Option<AuditRef>,
}

impl NewEvent {
    pub fn new(event_type: EventType, key: EventKey, subject: String, data: Option<EventData>) -> NewEvent {
        NewEvent {
            event_type,
            key,
            subject,
            data,
            audit: None,
        }
    }
}

/// An event's payload, serialized as its type's schema describes.
#[derive(Serialize)]
#[serde(untagged)]
pub enum EventData {
    Transfer(TransferData),
    Settlement(SettlementData),
    Payout(PayoutData),
    Checkpoint(CheckpointData),
}

/// An amount, serialized as a decimal string in its currency's scale.
pub struct Money {
    minor: u64,
    currency: ledger::Currency,
}

impl Serialize for Money {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format_minor(self.minor, self.currency))
    }
}

/// A time, serialized as RFC 3339 UTC with microseconds.
pub struct Time(Timestamp);

impl Serialize for Time {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&rfc3339(self.0))
    }
}

pub fn event_id(event_type: EventType, subject: &str) -> Uuid {
    Uuid::new_v5(
        &EVENT_NAMESPACE,
        format!("{}/{subject}", event_type.as_str()).as_bytes(),
    )
}

/// The payload of the transfer events.
#[derive(Serialize)]
pub struct TransferData {
    /// The transfer that posted or voided (or, for an expiry, the pending transfer itself).
    transfer_id: Uuid,
    #[serde(skip_serializing_if = "Option::is_none")]
    pending_id: Option<Uuid>,
    debit_account_id: Uuid,
    credit_account_id: Uuid,
    /// Posted: the amount moved. Voided and expired: the pending amount released.
    amount: Money,
    currency: &'static str,
    code: u16,
    metadata: Box<RawValue>,
    occurred_at: Time,
}

/// A transfer event: keyed by the credit account of the money it moves (`money`), about `subject`
/// (the transfer that posted or voided it, or the expired pending transfer itself).
fn transfer_event(event_type: EventType, subject: &Transfer, money: &Transfer) -> NewEvent {
    NewEvent::new(
        event_type,
        EventKey::Account(money.credit_account_id.uuid()),
        subject.id.uuid().to_string(),
        None,
    )
}

/// The events of one applied batch, in the order of their audit records: expiries first, then each
/// transfer that posted or voided money. `audit_of` gives a transfer's record (its creation's, or for
/// an expired one its expiry's).
pub fn transfer_events(
    ledger: &Ledger,
    changes: &Changes,
    audit_of: impl Fn(&Transfer, bool) -> Option<AuditRef>,
) -> Vec<NewEvent> {
    let mut events = Vec::new();
    for (id, state) in &changes.pending_resolved {
        if *state != PendingState::Expired {
            continue;
        }
        if let Some(pending) = ledger.transfer(*id) {
            let mut event = transfer_event(EventType::TransferExpired, pending, pending);
            event.audit = audit_of(pending, true);
            events.push(event);
        }
    }
    for id in &changes.transfers_created {
        let Some(transfer) = ledger.transfer(*id) else { continue };
        let pending = transfer.pending_id.and_then(|id| ledger.transfer(id));
        let mut event = match (transfer.kind, pending) {
            (TransferKind::Single, _) => transfer_event(EventType::TransferPosted, transfer, transfer),
            (TransferKind::PostPending, Some(pending)) => transfer_event(EventType::TransferPosted, transfer, pending),
            (TransferKind::VoidPending, Some(pending)) => transfer_event(EventType::TransferVoided, transfer, pending),
            // A pending transfer moves no money until it is posted.
            _ => continue,
        };
        event.audit = audit_of(transfer, false);
        events.push(event);
    }
    events
}

#[derive(Serialize)]
pub struct SettlementData {
    settlement_id: Uuid,
    account_id: Uuid,
    currency: &'static str,
    period_start: Option<String>,
    cut_off: String,
    net: String,
    amount: String,
    transfer_count: u64,
    transfers_hash: String,
    settlement_transfer_id: Option<Uuid>,
    clearing_account_id: Uuid,
    settled_at: String,
}

#[derive(Serialize)]
pub struct PayoutData {
    settlement_id: Uuid,
    account_id: Uuid,
    clearing_account_id: Uuid,
    settlement_transfer_id: Uuid,
    amount: String,
    currency: &'static str,
    cut_off: String,
    requested_at: String,
}

/// A settlement's events: completed, and when it paid anything out, the payout request. Both keyed by
/// the settled account.
pub fn settlement_events(settlement: &NewSettlement, audit: Option<AuditRef>, now: Timestamp) -> Vec<NewEvent> {
    let netting = &settlement.netting;
    let currency = settlement.currency;
    let net = netting.net();
    let paid = crate::settlement::paid_out(net);
    let time = rfc3339_utc;
    let key = EventKey::Account(settlement.account_id);
    let subject = settlement.id.to_string();
    let completed = SettlementData {
        settlement_id: settlement.id,
        account_id: settlement.account_id,
        currency: currency.code(),
        period_start: settlement.period_start.map(time),
        cut_off: time(settlement.cut_off),
        net: crate::settlement::format_net(net, currency),
        amount: format_minor(paid, currency),
        transfer_count: netting.count,
        transfers_hash: hex::encode(netting.hash),
        settlement_transfer_id: settlement.transfer_id,
        clearing_account_id: settlement.clearing_account_id,
        settled_at: rfc3339(now),
    };
    let mut events = vec![NewEvent::new(
        EventType::SettlementCompleted,
        key,
        subject.clone(),
        Some(EventData::Settlement(completed)),
    )];
    if let Some(transfer_id) = settlement.transfer_id {
        let payout = PayoutData {
            settlement_id: settlement.id,
            account_id: settlement.account_id,
            clearing_account_id: settlement.clearing_account_id,
            settlement_transfer_id: transfer_id,
            amount: format_minor(paid, currency),
            currency: currency.code(),
            cut_off: time(settlement.cut_off),
            requested_at: rfc3339(now),
        };
        events.push(NewEvent::new(
            EventType::PayoutRequested,
            key,
            subject,
            Some(EventData::Payout(payout)),
        ));
    }
    for event in &mut events {
        event.audit = audit;
    }
    events
}

#[derive(Serialize)]
pub struct CheckpointData {
    origin: String,
    size: u64,
    root: String,
    /// The checkpoint as a C2SP signed note, verifiable with the log's public key.
    note: String,
    signed_at: String,
}

/// The witness event of a signed checkpoint.
pub fn checkpoint_event(signed: &SignedCheckpoint, at: Timestamp) -> NewEvent {
    use base64::Engine;
    let checkpoint = &signed.checkpoint;
    let data = CheckpointData {
        origin: checkpoint.origin.clone(),
        size: checkpoint.size,
        root: base64::engine::general_purpose::STANDARD.encode(checkpoint.root),
        note: signed.note.clone(),
        signed_at: rfc3339(at),
    };
    NewEvent::new(
        EventType::AuditCheckpoint,
        EventKey::AuditLog,
        checkpoint.size.to_string(),
        Some(EventData::Checkpoint(data)),
    )
}

/// The last per-key sequence number of each key the sequencer has seen, loaded on first use.
#[derive(Default)]
pub struct KeySeqs {
    accounts: HashMap<Uuid, i64>,
    audit_log: Option<i64>,
}

/// Most accounts whose sequence numbers stay cached; the cache starts over when full.
const KEYS_CACHED_MAX: usize = 1_000_000;

impl KeySeqs {
    /// Loads the last sequence number of each of `events`' keys not cached yet.
    pub async fn load(&mut self, connection: &mut PgConnection, events: &[NewEvent]) -> anyhow::Result<()> {
        let accounts = |all: bool, cached: &HashMap<Uuid, i64>| {
            let mut ids: Vec<Uuid> = events
                .iter()
                .filter_map(|e| match e.key {
                    EventKey::Account(id) if all || !cached.contains_key(&id) => Some(id),
                    _ => None,
                })
                .collect();
            ids.sort_unstable();
            ids.dedup();
            ids
        };
        let mut missing = accounts(false, &self.accounts);
        if self.accounts.len() + missing.len() > KEYS_CACHED_MAX {
            // Starting over forgets keys this batch uses too: load all of them.
            self.accounts.clear();
            missing = accounts(true, &self.accounts);
        }
        if !missing.is_empty() {
            // An account created in this batch has no balances row yet, and no events.
            let rows = sqlx::query!(
                r#"SELECT k.id AS "id!", COALESCE(b.event_seq, 0) AS "event_seq!"
                   FROM UNNEST($1::uuid[]) AS k(id)
                   LEFT JOIN LATERAL (SELECT event_seq FROM balances WHERE account_id = k.id LIMIT 1) b ON true"#,
                &missing
            )
            .fetch_all(&mut *connection)
            .await?;
            self.accounts
                .extend(rows.into_iter().map(|row| (row.id, row.event_seq)));
        }
        if self.audit_log.is_none() && events.iter().any(|e| e.key == EventKey::AuditLog) {
            let last = sqlx::query_scalar!("SELECT audit_log_event_seq FROM ledger_head WHERE id = 1")
                .fetch_one(&mut *connection)
                .await?;
            self.audit_log = Some(last);
        }
        Ok(())
    }

    /// The next sequence number of `key` (which [`KeySeqs::load`] has seen).
    fn next(&mut self, key: EventKey) -> i64 {
        let last = match key {
            EventKey::Account(id) => self.accounts.entry(id).or_insert(0),
            EventKey::AuditLog => self.audit_log.get_or_insert(0),
        };
        *last += 1;
        *last
    }
}

/// The events a batch adds to the outbox, as the arrays of its one row.
#[derive(Default)]
pub struct OutboxRows {
    first_seq: i64,
    types: Vec<EventType>,
    keys: Vec<EventKey>,
    key_seqs: Vec<i64>,
    subjects: Vec<String>,
    data: Vec<Option<EventData>>,
    audit_seqs: Vec<Option<i64>>,
    record_hashes: Vec<Option<Vec<u8>>>,
    created: chrono::DateTime<chrono::Utc>,
    /// Each account key's last sequence number after this batch, for its balances row.
    pub(crate) account_seqs: Vec<(Uuid, i64)>,
    /// The audit log key's last sequence number, when this batch has a checkpoint event.
    pub(crate) audit_log_seq: Option<i64>,
}

impl OutboxRows {
    /// Places `events` after event `last_seq`, numbering each key's events on from `key_seqs`.
    pub fn build(events: Vec<NewEvent>, last_seq: i64, key_seqs: &mut KeySeqs, now: Timestamp) -> OutboxRows {
        let mut rows = OutboxRows {
            first_seq: last_seq + 1,
            created: to_datetime(now),
            ..OutboxRows::default()
        };
        let mut account_seqs = HashMap::new();
        for event in events {
            let key_seq = key_seqs.next(event.key);
            match event.key {
                EventKey::Account(id) => {
                    account_seqs.insert(id, key_seq);
                }
                EventKey::AuditLog => rows.audit_log_seq = Some(key_seq),
            }
            rows.types.push(event.event_type);
            rows.key_seqs.push(key_seq);
            rows.keys.push(event.key);
            rows.subjects.push(event.subject);
            rows.data.push(event.data);
            rows.audit_seqs.push(event.audit.map(|a| a.seq as i64));
            rows.record_hashes.push(event.audit.map(|a| a.hash.to_vec()));
        }
        rows.account_seqs = account_seqs.into_iter().collect();
        rows
    }

    pub fn len(&self) -> usize {
        self.types.len()
    }

    pub fn is_empty(&self) -> bool {
        self.types.is_empty()
    }

    /// The batch's row as the columns of its INSERT (see `BatchRows::insert_new`); keys and payloads
    /// are rendered here, in the batch's writer task.
    pub(crate) fn columns(&self) -> anyhow::Result<OutboxColumns<'_>> {
        Ok(OutboxColumns {
            first_seq: self.first_seq,
            types: self.types.iter().map(|t| t.code()).collect(),
            keys: self.keys.iter().map(EventKey::to_string).collect(),
            key_seqs: &self.key_seqs,
            subjects: &self.subjects,
            payloads: self
                .data
                .iter()
                .map(|data| data.as_ref().map(serde_json::to_string).transpose())
                .collect::<Result<_, _>>()?,
            audit_seqs: &self.audit_seqs,
            record_hashes: &self.record_hashes,
            created: self.created,
        })
    }
}

/// The outbox row of a batch, column by column; no events: empty arrays.
pub(crate) struct OutboxColumns<'a> {
    pub first_seq: i64,
    pub types: Vec<i16>,
    pub keys: Vec<String>,
    pub key_seqs: &'a [i64],
    pub subjects: &'a [String],
    pub payloads: Vec<Option<String>>,
    pub audit_seqs: &'a [Option<i64>],
    pub record_hashes: &'a [Option<Vec<u8>>],
    pub created: chrono::DateTime<chrono::Utc>,
}

/// One stored event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEvent {
    pub seq: i64,
    pub id: Uuid,
    pub event_type: String,
    pub key: String,
    pub key_seq: i64,
    pub subject: String,
    pub payload: String,
    pub audit_seq: Option<i64>,
    pub record_hash: Option<Vec<u8>>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl StoredEvent {
    /// The CloudEvents 1.0 attributes of the event, as Kafka headers (binary content mode), with the
    /// extensions `partitionkey`, `sequence` (the per-key number), `auditseq` and `audithash`.
    pub fn headers(&self) -> Vec<(&'static str, String)> {
        let mut headers = vec![
            ("ce_specversion", "1.0".to_string()),
            ("ce_id", self.id.to_string()),
            ("ce_source", EVENT_SOURCE.to_string()),
            ("ce_type", self.event_type.clone()),
            ("ce_subject", self.subject.clone()),
            ("ce_time", rfc3339_utc(self.created_at)),
            ("content-type", "application/json".to_string()),
            ("ce_partitionkey", self.key.clone()),
            ("ce_sequence", self.key_seq.to_string()),
        ];
        if let Some(seq) = self.audit_seq {
            headers.push(("ce_auditseq", seq.to_string()));
        }
        if let Some(hash) = &self.record_hash {
            headers.push(("ce_audithash", hex::encode(hash)));
        }
        headers
    }
}

/// Up to `limit` events after event `after`, in order, each with its payload.
///
/// Transfer events are stored without one: their payload is rendered here from the transfer row their
/// subject names (and its pending transfer's). Those columns never change once written (a trigger
/// refuses any update but a pending transfer's state), so every read renders the same bytes; the
/// batch path does not write each transfer twice.
pub async fn events_after(connection: &mut PgConnection, after: i64, limit: i64) -> anyhow::Result<Vec<StoredEvent>> {
    // A batch's events are one row (migrations/0006_outbox_packed.sql): start at the row holding event
    // `after + 1` and stop at the row holding event `after + limit`, unnesting only those.
    let after = after.clamp(0, i64::MAX - 1);
    let last = after.saturating_add(limit.max(0));
    let rows = sqlx::query!(
        r#"SELECT o.first_seq + e.ord - 1 AS "seq!", e.type AS "type!", e.key AS "key!", e.key_seq AS "key_seq!",
                  e.subject AS "subject!", e.payload AS "payload?", e.audit_seq AS "audit_seq?",
                  e.record_hash AS "record_hash?", o.created_at, t.id AS "t_id?", t.pending_id AS "t_pending_id?",
                  t.debit_account_id AS "t_debit?", t.credit_account_id AS "t_credit?", t.amount AS "t_amount?",
                  t.currency AS "t_currency?", t.code AS "t_code?", t.metadata AS "t_metadata?",
                  p.debit_account_id AS "p_debit?", p.credit_account_id AS "p_credit?", p.amount AS "p_amount?",
                  p.currency AS "p_currency?"
           FROM outbox o
           CROSS JOIN LATERAL unnest(o.types, o.keys, o.key_seqs, o.subjects, o.payloads, o.audit_seqs,
                                     o.record_hashes)
                WITH ORDINALITY AS e(type, key, key_seq, subject, payload, audit_seq, record_hash, ord)
           LEFT JOIN LATERAL (
               SELECT * FROM transfers
               WHERE id = CASE WHEN e.payload IS NULL THEN e.subject::uuid END LIMIT 1
           ) t ON true
           LEFT JOIN LATERAL (SELECT * FROM transfers WHERE id = t.pending_id LIMIT 1) p ON true
           WHERE o.first_seq >= COALESCE(
                     (SELECT first_seq FROM outbox WHERE first_seq <= $1::int8 + 1 ORDER BY first_seq DESC LIMIT 1), 1)
             AND o.first_seq <= $2
             AND o.first_seq + e.ord - 1 > $1 AND o.first_seq + e.ord - 1 <= $2
           ORDER BY 1"#,
        after,
        last
    )
    .fetch_all(&mut *connection)
    .await?;
    rows.into_iter()
        .map(|row| {
            let event_type = EventType::from_code(row.r#type)
                .ok_or_else(|| anyhow::anyhow!("event {} has the unknown type code {}", row.seq, row.r#type))?;
            let payload = match row.payload {
                Some(payload) => payload,
                None => {
                    let missing = || anyhow::anyhow!("event {} names transfer {}, which is missing", row.seq, row.subject);
                    let (Some(id), Some(debit), Some(credit), Some(amount), Some(currency), Some(code), Some(metadata)) = (
                        row.t_id,
                        row.t_debit,
                        row.t_credit,
                        row.t_amount,
                        row.t_currency,
                        row.t_code,
                        row.t_metadata,
                    ) else {
                        return Err(missing());
                    };
                    // A posting or voiding moves its pending transfer's money between its accounts.
                    let (debit, credit, currency) = match (row.p_debit, row.p_credit, row.p_currency) {
                        (Some(debit), Some(credit), Some(currency)) => (debit, credit, currency),
                        _ => (debit, credit, currency),
                    };
                    let released = event_type == EventType::TransferVoided;
                    let amount = if released { row.p_amount.ok_or_else(missing)? } else { amount };
                    let currency = ledger::Currency::from_code(currency.trim())
                        .map_err(|e| anyhow::anyhow!("stored transfer currency {currency}: {e}"))?;
                    let data = TransferData {
                        transfer_id: id,
                        pending_id: row.t_pending_id,
                        debit_account_id: debit,
                        credit_account_id: credit,
                        amount: Money {
                            minor: u64::try_from(amount)?,
                            currency,
                        },
                        currency: currency.code(),
                        code: u16::try_from(code)?,
                        metadata: serde_json::value::to_raw_value(&metadata)?,
                        occurred_at: Time(crate::store::rows::to_timestamp(row.created_at)),
                    };
                    serde_json::to_string(&data)?
                }
            };
            Ok(StoredEvent {
                seq: row.seq,
                id: event_id(event_type, &row.subject),
                event_type: event_type.as_str().to_string(),
                key: row.key,
                key_seq: row.key_seq,
                subject: row.subject,
                payload,
                audit_seq: row.audit_seq,
                record_hash: row.record_hash,
                created_at: row.created_at,
            })
        })
        .collect()
}

impl crate::store::Store {
    /// Up to `limit` events after event `after`, in order (see [`events_after`]).
    pub async fn events(&self, after: i64, limit: i64) -> anyhow::Result<Vec<StoredEvent>> {
        events_after(&mut *self.pool().acquire().await?, after, limit).await
    }

    pub async fn outbox_position(&self) -> anyhow::Result<OutboxPosition> {
        position(&mut *self.pool().acquire().await?).await
    }
}

/// How far events are written and delivered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutboxPosition {
    /// The last event written.
    pub written: i64,
    /// The last event the broker acknowledged (with every one before it).
    pub delivered: i64,
}

impl OutboxPosition {
    pub fn lag(&self) -> i64 {
        self.written - self.delivered
    }
}

pub async fn position(connection: &mut PgConnection) -> anyhow::Result<OutboxPosition> {
    let row = sqlx::query!(
        "SELECT h.event_seq, r.delivered_seq FROM ledger_head h, outbox_relay r WHERE h.id = 1 AND r.id = 1"
    )
    .fetch_one(&mut *connection)
    .await?;
    Ok(OutboxPosition {
        written: row.event_seq,
        delivered: row.delivered_seq,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_codes_are_the_ones_the_outbox_table_admits() {
        let codes: Vec<i16> = EventType::ALL.iter().map(|t| t.code()).collect();
        assert_eq!(
            codes,
            [1, 2, 3, 4, 5, 6],
            "migrations/0006_outbox_packed.sql lists them"
        );
        for event_type in EventType::ALL {
            assert_eq!(EventType::from_code(event_type.code()), Some(event_type));
        }
        assert_eq!(EventType::from_code(0), None);
        assert_eq!(EventType::from_code(7), None);
    }

    #[test]
    fn events_carry_their_cloudevents_attributes_as_kafka_headers() {
        let event = StoredEvent {
            seq: 7,
            id: event_id(EventType::TransferPosted, "t1"),
            event_type: EventType::TransferPosted.as_str().to_string(),
            key: "acct".to_string(),
            key_seq: 3,
            subject: "t1".to_string(),
            payload: "{}".to_string(),
            audit_seq: Some(41),
            record_hash: Some(vec![0xab; 32]),
            created_at: chrono::DateTime::from_timestamp(1_800_000_000, 5_000).unwrap(),
        };
        let headers: HashMap<&str, String> = event.headers().into_iter().collect();
        let expected = [
            ("ce_specversion", "1.0".to_string()),
            ("ce_id", event.id.to_string()),
            ("ce_source", EVENT_SOURCE.to_string()),
            ("ce_type", "ledger.transfer.posted.v1".to_string()),
            ("ce_subject", "t1".to_string()),
            ("ce_time", "2027-01-15T08:00:00.000005Z".to_string()),
            ("content-type", "application/json".to_string()),
            ("ce_partitionkey", "acct".to_string()),
            ("ce_sequence", "3".to_string()),
            ("ce_auditseq", "41".to_string()),
            ("ce_audithash", "ab".repeat(32)),
        ];
        assert_eq!(headers, expected.into_iter().collect());
        // The same change always has the same id; another type or subject another.
        assert_eq!(event.id, event_id(EventType::TransferPosted, "t1"));
        assert_ne!(event.id, event_id(EventType::TransferVoided, "t1"));
        assert_ne!(event.id, event_id(EventType::TransferPosted, "t2"));
    }

    #[test]
    fn every_event_type_has_a_topic_and_a_schema_that_compiles_as_json() {
        for event_type in EventType::ALL {
            assert_eq!(EventType::parse(event_type.as_str()), Some(event_type));
            let schema: serde_json::Value = serde_json::from_str(event_type.schema()).unwrap();
            assert_eq!(schema["title"], event_type.as_str());
            assert!(EventType::topics().contains(&event_type.topic()));
        }
    }
}
