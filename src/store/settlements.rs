//! Settlements in PostgreSQL: what a settlement run reads (an account's posted movements in its
//! period) and the settlement rows the sequencer writes with the settlement's transfer, audit record
//! and events.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};
use sqlx::PgConnection;
use uuid::Uuid;

use std::collections::HashSet;

use ledger::{AccountId, Transfer, TransferKind};

use crate::store::Store;
use crate::store::history::{self, AccountHistory};
use crate::store::rows::to_timestamp;

/// One settlement, as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredSettlement {
    pub id: Uuid,
    pub account_id: Uuid,
    pub currency: String,
    pub period_start: Option<DateTime<Utc>>,
    pub cut_off: DateTime<Utc>,
    pub net: i64,
    pub transfer_count: i64,
    pub transfers_hash: Vec<u8>,
    pub transfer_id: Option<Uuid>,
    pub clearing_account_id: Uuid,
    pub requested_by: String,
    pub created_at: DateTime<Utc>,
    pub audit_seq: Option<i64>,
}

/// An account's posted movements over a period: credits and debits to it, and the included transfers'
/// count and hash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Netting {
    pub credits: u64,
    pub debits: u64,
    pub count: u64,
    pub hash: [u8; 32],
}

impl Netting {
    /// Credits minus debits.
    pub fn net(&self) -> i128 {
        i128::from(self.credits) - i128::from(self.debits)
    }
}

impl Store {
    pub async fn settlement(&self, id: Uuid) -> anyhow::Result<Option<StoredSettlement>> {
        Ok(sqlx::query_as!(
            StoredSettlement,
            r#"SELECT id, account_id, currency AS "currency!", period_start, cut_off, net, transfer_count,
                      transfers_hash, transfer_id, clearing_account_id, requested_by, created_at, audit_seq
               FROM settlements WHERE id = $1"#,
            id
        )
        .fetch_optional(self.pool())
        .await?)
    }

    /// The account's settlement with the latest cut-off, if any.
    pub async fn latest_settlement(&self, account: Uuid) -> anyhow::Result<Option<StoredSettlement>> {
        Ok(sqlx::query_as!(
            StoredSettlement,
            r#"SELECT id, account_id, currency AS "currency!", period_start, cut_off, net, transfer_count,
                      transfers_hash, transfer_id, clearing_account_id, requested_by, created_at, audit_seq
               FROM settlements WHERE account_id = $1 ORDER BY cut_off DESC LIMIT 1"#,
            account
        )
        .fetch_optional(self.pool())
        .await?)
    }

    /// The account's posted movements created after `after` (from its beginning when `None`) up to and
    /// including `up_to`, in commit order: single-phase transfers and postings of pending ones, leaving
    /// out settlement transfers. Streamed; memory stays constant however many there are.
    pub async fn netting(
        &self,
        account: Uuid,
        after: Option<DateTime<Utc>>,
        up_to: DateTime<Utc>,
    ) -> anyhow::Result<Netting> {
        let (after, up_to) = (after.map(to_timestamp), to_timestamp(up_to));
        let account = AccountId::from_stored(account);
        let mut snapshot = history::snapshot(self.pool()).await?;
        let mut history = AccountHistory::open(&mut snapshot, account, 0).await?;
        let mut hasher = Sha256::new();
        let (mut credits, mut debits, mut count) = (0u64, 0u64, 0u64);
        loop {
            let page = history.next_transfers(&mut snapshot, history::PAGE_TRANSFERS).await?;
            if page.is_empty() {
                break;
            }
            let movements: Vec<&Transfer> = page
                .iter()
                .map(|(_, transfer)| transfer)
                .filter(|t| matches!(t.kind, TransferKind::Single | TransferKind::PostPending))
                .filter(|t| after.is_none_or(|after| t.created_at > after) && t.created_at <= up_to)
                .collect();
            if movements.is_empty() {
                continue;
            }
            let ids: Vec<Uuid> = movements.iter().map(|t| t.id.uuid()).collect();
            let settling: HashSet<Uuid> = sqlx::query_scalar!(
                r#"SELECT transfer_id AS "id!" FROM settlements WHERE transfer_id = ANY($1::uuid[])"#,
                &ids
            )
            .fetch_all(&mut *snapshot)
            .await?
            .into_iter()
            .collect();
            for transfer in movements.into_iter().filter(|t| !settling.contains(&t.id.uuid())) {
                let side = if transfer.debit_account_id == account {
                    &mut debits
                } else {
                    &mut credits
                };
                *side = side
                    .checked_add(transfer.amount.minor())
                    .ok_or_else(|| anyhow::anyhow!("the period's movements overflow"))?;
                count += 1;
                hasher.update(transfer.id.uuid().as_bytes());
            }
        }
        Ok(Netting {
            credits,
            debits,
            count,
            hash: hasher.finalize().into(),
        })
    }
}

/// A settlement to store with its batch.
#[derive(Clone, Debug)]
pub struct NewSettlement {
    pub id: Uuid,
    pub account_id: Uuid,
    pub currency: ledger::Currency,
    pub period_start: Option<DateTime<Utc>>,
    pub cut_off: DateTime<Utc>,
    pub netting: Netting,
    pub transfer_id: Option<Uuid>,
    pub clearing_account_id: Uuid,
}

impl NewSettlement {
    pub fn audit_event(&self) -> audit::Event {
        let micros = |at: DateTime<Utc>| at.timestamp_micros().max(0) as u64;
        let mut currency = [0u8; 3];
        currency.copy_from_slice(self.currency.code().as_bytes());
        audit::Event::SettlementCompleted(audit::record::SettlementCompleted {
            id: *self.id.as_bytes(),
            account: *self.account_id.as_bytes(),
            currency,
            period_start_us: self.period_start.map(micros),
            cut_off_us: micros(self.cut_off),
            credits: self.netting.credits,
            debits: self.netting.debits,
            transfer_count: self.netting.count,
            transfers_hash: self.netting.hash,
            transfer: self.transfer_id.map(|id| *id.as_bytes()),
            clearing_account: *self.clearing_account_id.as_bytes(),
        })
    }
}

/// A settlement submitted with its commands: `command` is the index (in the submission) of the
/// settlement transfer, when the net is positive.
#[derive(Clone, Debug)]
pub struct SettlementChange {
    pub settlement: NewSettlement,
    pub command: Option<usize>,
}

/// The settlements a batch stores, column by column.
#[derive(Default)]
pub struct SettlementRows {
    ids: Vec<Uuid>,
    accounts: Vec<Uuid>,
    currencies: Vec<&'static str>,
    period_starts: Vec<Option<DateTime<Utc>>>,
    cut_offs: Vec<DateTime<Utc>>,
    nets: Vec<i64>,
    counts: Vec<i64>,
    hashes: Vec<Vec<u8>>,
    transfers: Vec<Option<Uuid>>,
    clearing: Vec<Uuid>,
    requested_by: Vec<String>,
    created: Vec<DateTime<Utc>>,
    audit_seqs: Vec<Option<i64>>,
}

impl SettlementRows {
    pub fn push(&mut self, settlement: &NewSettlement, requested_by: &str, at: DateTime<Utc>, audit_seq: Option<i64>) {
        self.ids.push(settlement.id);
        self.accounts.push(settlement.account_id);
        self.currencies.push(settlement.currency.code());
        self.period_starts.push(settlement.period_start);
        self.cut_offs.push(settlement.cut_off);
        self.nets.push(settlement.netting.net() as i64);
        self.counts.push(settlement.netting.count as i64);
        self.hashes.push(settlement.netting.hash.to_vec());
        self.transfers.push(settlement.transfer_id);
        self.clearing.push(settlement.clearing_account_id);
        self.requested_by.push(requested_by.to_string());
        self.created.push(at);
        self.audit_seqs.push(audit_seq);
    }

    pub async fn insert(&self, connection: &mut PgConnection) -> anyhow::Result<()> {
        if self.ids.is_empty() {
            return Ok(());
        }
        sqlx::query!(
            "INSERT INTO settlements (id, account_id, currency, period_start, cut_off, net, transfer_count,
                                     transfers_hash, transfer_id, clearing_account_id, requested_by, created_at,
                                     audit_seq)
             SELECT * FROM UNNEST($1::uuid[], $2::uuid[], $3::text[], $4::timestamptz[], $5::timestamptz[],
                                  $6::int8[], $7::int8[], $8::bytea[], $9::uuid[], $10::uuid[], $11::text[],
                                  $12::timestamptz[], $13::int8[])",
            &self.ids,
            &self.accounts,
            &self.currencies as &[&str],
            &self.period_starts as &[Option<DateTime<Utc>>],
            &self.cut_offs,
            &self.nets,
            &self.counts,
            &self.hashes,
            &self.transfers as &[Option<Uuid>],
            &self.clearing,
            &self.requested_by,
            &self.created,
            &self.audit_seqs as &[Option<i64>],
        )
        .execute(&mut *connection)
        .await?;
        Ok(())
    }
}
