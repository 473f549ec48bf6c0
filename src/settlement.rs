//! Settlement runs: net a merchant account's posted movements since its previous settlement up to a
//! cut-off, move a positive net to the payouts clearing account of its currency through the normal
//! commit path, and record the settlement (period, amount, transfer count, a hash over the included
//! transfer ids) with its audit record and its `ledger.settlement.completed.v1` and
//! `ledger.payout.requested.v1` events, all in one commit.
//!
//! A settlement is identified by (account, cut-off): its id, its transfer's id and its clearing
//! account's id are derived from them, so asking again changes nothing and returns the first answer.
//! Runs are serialized within the service, and the period is read only after every batch that could
//! hold a transfer up to the cut-off has committed (the cut-off must be in the past, and an empty
//! submission waits behind every batch already in flight).

use std::sync::Arc;

use audit::Actor;
use chrono::{DateTime, Utc};
use ledger::{
    Account, AccountFlags, AccountId, AccountRequest, Applied, Command, ErrorCode, TransferRequest, format_minor,
};
use uuid::Uuid;

use crate::api::views::rfc3339_utc;
use crate::clock::Clock;
use crate::store::rows::to_datetime;
use crate::store::settlements::{NewSettlement, SettlementChange, StoredSettlement};
use crate::store::{LedgerHandle, Store, SubmitError};

/// Namespace of settlement, settlement transfer and clearing account ids (UUIDv5).
const SETTLEMENT_NAMESPACE: Uuid = Uuid::from_u128(0x8d3e_0a51_7c2f_4b96_a4e8_1f60_c9b2_5d73);

/// The code of settlement transfers and clearing accounts.
pub const SETTLEMENT_CODE: u16 = 9000;

/// The owner of the clearing accounts.
pub const CLEARING_OWNER: &str = "finledger";

#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    #[error("cut_off: {0} is not in the past")]
    CutOffNotPast(String),
    #[error("the account was settled up to {0}, after this cut-off; settlements go forward only")]
    OutOfOrder(String),
    #[error("the settlement transfer was refused: {0}")]
    Refused(ErrorCode),
    #[error(transparent)]
    Submit(#[from] SubmitError),
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

/// Runs settlements; one run at a time.
#[derive(Clone)]
pub struct Settlements {
    store: Store,
    ledger: LedgerHandle,
    clock: Clock,
    running: Arc<tokio::sync::Mutex<()>>,
}

/// The id of the settlement of `account` at `cut_off`.
pub fn settlement_id(account: Uuid, cut_off: DateTime<Utc>) -> Uuid {
    let mut name = account.as_bytes().to_vec();
    name.extend_from_slice(&cut_off.timestamp_micros().to_be_bytes());
    Uuid::new_v5(&SETTLEMENT_NAMESPACE, &name)
}

/// The payouts clearing account of `currency`.
pub fn clearing_account_id(currency: ledger::Currency) -> Uuid {
    Uuid::new_v5(
        &SETTLEMENT_NAMESPACE,
        format!("clearing/{}", currency.code()).as_bytes(),
    )
}

impl Settlements {
    pub fn new(store: Store, ledger: LedgerHandle, clock: Clock) -> Settlements {
        Settlements {
            store,
            ledger,
            clock,
            running: Arc::default(),
        }
    }

    /// Settles `account` up to `cut_off` as `actor`. Returns the settlement and whether it was made
    /// now (false: it existed).
    pub async fn settle(
        &self,
        actor: Actor,
        account: &Account,
        cut_off: DateTime<Utc>,
    ) -> Result<(StoredSettlement, bool), SettleError> {
        let _running = self.running.lock().await;
        let id = settlement_id(account.id.uuid(), cut_off);
        if let Some(existing) = self.store.settlement(id).await? {
            return Ok((existing, false));
        }
        let now = to_datetime((self.clock)());
        if cut_off >= now {
            return Err(SettleError::CutOffNotPast(rfc3339_utc(cut_off)));
        }
        let previous = self.store.latest_settlement(account.id.uuid()).await?;
        if let Some(previous) = &previous
            && previous.cut_off >= cut_off
        {
            return Err(SettleError::OutOfOrder(rfc3339_utc(previous.cut_off)));
        }
        // Every batch dispatched before this one commits first; later ones are stamped after now.
        self.ledger.submit(Vec::new()).await?;
        let period_start = previous.map(|p| p.cut_off);
        let netting = self.store.netting(account.id.uuid(), period_start, cut_off).await?;
        let clearing = clearing_account_id(account.currency);
        let mut commands = Vec::new();
        let clearing_id = AccountId::parse(clearing, ErrorCode::IdMustNotBeZero).map_err(SettleError::Refused)?;
        if self.store.account(clearing_id).await?.is_none() {
            commands.push(Command::CreateAccount(clearing_account(account.currency)?));
        }
        let net = netting.net();
        let transfer_id = (net > 0).then(|| Uuid::new_v5(&SETTLEMENT_NAMESPACE, id.as_bytes()));
        let command = match transfer_id {
            Some(transfer_id) => {
                let amount = u64::try_from(net).map_err(|_| SettleError::Refused(ErrorCode::OverflowsDebitsPosted))?;
                let request = TransferRequest {
                    id: transfer_id,
                    debit_account_id: Some(account.id.uuid()),
                    credit_account_id: Some(clearing),
                    amount: Some(format_minor(amount, account.currency)),
                    currency: Some(account.currency.code().to_string()),
                    code: SETTLEMENT_CODE,
                    metadata: Some(serde_json::json!({
                        "settlement_id": id,
                        "cut_off": rfc3339_utc(cut_off),
                    })),
                    ..TransferRequest::default()
                };
                commands.push(Command::CreateTransfer(request.parse().map_err(SettleError::Refused)?));
                Some(commands.len() - 1)
            }
            None => None,
        };
        let change = SettlementChange {
            settlement: NewSettlement {
                id,
                account_id: account.id.uuid(),
                currency: account.currency,
                period_start,
                cut_off,
                netting,
                transfer_id,
                clearing_account_id: clearing,
            },
            command,
        };
        let receipts = self.ledger.acting_as(actor).settle(commands, change).await?;
        if let Some(index) = command {
            match receipts.get(index).map(|r| &r.result) {
                Some(Ok(Applied::Created | Applied::Exists)) => {}
                Some(Err(code)) => return Err(SettleError::Refused(*code)),
                None => {
                    return Err(SettleError::Store(anyhow::anyhow!(
                        "the settlement transfer has no result"
                    )));
                }
            }
        }
        let stored = self
            .store
            .settlement(id)
            .await?
            .ok_or_else(|| anyhow::anyhow!("settlement {id} was committed but cannot be read"))?;
        Ok((stored, true))
    }
}

fn clearing_account(currency: ledger::Currency) -> Result<ledger::NewAccount, SettleError> {
    AccountRequest {
        id: clearing_account_id(currency),
        currency: currency.code().to_string(),
        code: SETTLEMENT_CODE,
        owner: CLEARING_OWNER.to_string(),
        flags: AccountFlags::default(),
        overdraft_limit: None,
        metadata: Some(serde_json::json!({"purpose": "payouts clearing"})),
    }
    .parse()
    .map_err(SettleError::Refused)
}

/// A settlement's net (credits minus debits, minor units) as a signed decimal string.
pub fn format_net(net: i128, currency: ledger::Currency) -> String {
    let magnitude = format_minor(u64::try_from(net.unsigned_abs()).unwrap_or(u64::MAX), currency);
    if net < 0 { format!("-{magnitude}") } else { magnitude }
}

/// What a settlement with this net pays out: the net when positive, else nothing.
pub fn paid_out(net: i128) -> u64 {
    u64::try_from(net.max(0)).unwrap_or(u64::MAX)
}

/// Settles `accounts` every day at `time_utc`, with that instant as the cut-off: at start-up for the
/// latest one already passed (a run missed while the service was down is made up), then as each
/// passes. Every instance may run it: a settlement made by another is found and left alone.
pub async fn run_schedule(
    settlements: Settlements,
    accounts: Vec<Uuid>,
    time_utc: chrono::NaiveTime,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let mut done: Option<DateTime<Utc>> = None;
    loop {
        let now = to_datetime((settlements.clock)());
        let today = now.date_naive().and_time(time_utc).and_utc();
        let due = if today < now {
            today
        } else {
            today - chrono::Duration::days(1)
        };
        if done != Some(due) {
            let mut complete = true;
            for account in &accounts {
                complete &= settle_scheduled(&settlements, *account, due).await;
            }
            if complete {
                done = Some(due);
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(std::time::Duration::from_secs(1)) => {}
            _ = stop.changed() => return,
        }
    }
}

/// One scheduled settlement; says whether it is done (made now or before, or impossible to make).
async fn settle_scheduled(settlements: &Settlements, account: Uuid, cut_off: DateTime<Utc>) -> bool {
    let found = match AccountId::parse(account, ErrorCode::IdMustNotBeZero) {
        Ok(id) => settlements.store.account(id).await,
        Err(_) => Ok(None),
    };
    let account = match found {
        Ok(Some(account)) => account,
        Ok(None) => {
            tracing::error!(%account, "a scheduled settlement names an account that does not exist");
            return true;
        }
        Err(error) => {
            tracing::warn!(error = format!("{error:#}"), "scheduled settlement postponed");
            return false;
        }
    };
    let actor = Actor {
        principal: "settlement-schedule".to_string(),
        ..Actor::system()
    };
    match settlements.settle(actor, &account, cut_off).await {
        Ok((settlement, created)) => {
            if created {
                tracing::info!(settlement = %settlement.id, account = %settlement.account_id, net = settlement.net, "scheduled settlement made");
            }
            true
        }
        Err(SettleError::OutOfOrder(_)) => true,
        Err(SettleError::Refused(code)) => {
            tracing::error!(account = %account.id.uuid(), %code, "scheduled settlement refused by the ledger");
            true
        }
        Err(error) => {
            tracing::error!(account = %account.id.uuid(), error = %error, "scheduled settlement failed; retrying");
            false
        }
    }
}
