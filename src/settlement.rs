//! Settlement runs: net a merchant account's posted movements since its previous settlement up to a
//! cut-off, move a positive net to the payouts clearing account of its currency through the normal
//! commit path, and record the settlement (period, amount, transfer count, a hash over the included
//! transfer ids) with its audit record and its `ledger.settlement.completed.v1` and
//! `ledger.payout.requested.v1` events, all in one commit.
//!
//! A settlement is identified by (account, cut-off): its id and its transfer's id are derived from
//! them in the reserved namespace ([`ledger::reserved_id`]), so asking again changes nothing and
//! returns the first answer, and no client can claim either id first. The clearing accounts are the
//! service's own: created at start-up, owned by [`SYSTEM_PRINCIPAL`], with reserved ids and fixed
//! code and flags, and checked to be exactly that before anything moves to one.
//!
//! Runs of one account are serialized across every instance (a lock on the account in PostgreSQL),
//! and the period is read only after every batch that could hold a transfer up to the cut-off has
//! committed (the cut-off must be in the past, and an empty submission waits behind every batch
//! already in flight). The database refuses a settlement that does not start where the account's
//! previous one was cut off, so periods can never overlap whatever runs concurrently.

use std::time::Duration;

use audit::Actor;
use chrono::{DateTime, Utc};
use ledger::{
    Account, AccountFlags, AccountId, AccountRequest, Applied, Command, ErrorCode, NewAccount, TransferRequest,
    format_minor,
};
use uuid::Uuid;

use crate::api::views::rfc3339_utc;
use crate::authz::{AccountFacts, Action, Authorizer, Resource};
use crate::clock::Clock;
use crate::identity::{Caller, Principal, PrincipalKind, SERVICE_PRINCIPALS, SYSTEM_PRINCIPAL};
use crate::store::rows::to_datetime;
use crate::store::settlements::{NewSettlement, SettlementChange, StoredSettlement};
use crate::store::{LedgerHandle, LockSpace, Store, SubmitError};

/// The code of settlement transfers and clearing accounts.
pub const SETTLEMENT_CODE: u16 = 9000;

/// The result code recorded when a clearing account is not the service's own.
pub const CLEARING_ACCOUNT_INVALID: &str = "clearing_account_invalid";

/// The result code recorded when a settlement's cut-off is not after the account's last one.
pub const SETTLEMENT_OUT_OF_ORDER: &str = "settlement_out_of_order";

/// How long a run waits for another run of the same account to finish.
const SETTLEMENT_LOCK_WAIT: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum SettleError {
    #[error("cut_off: {0} is not in the past")]
    CutOffNotPast(String),
    #[error("the account was settled up to {0}, after this cut-off; settlements go forward only")]
    OutOfOrder(String),
    #[error("the settlement transfer was refused: {0}")]
    Refused(ErrorCode),
    #[error("the payouts clearing account of {currency} is not the service's own ({reason}); nothing was settled")]
    ClearingAccountInvalid { currency: String, reason: String },
    #[error("another settlement of this account is running ({0}); retry")]
    Busy(String),
    #[error(transparent)]
    Submit(#[from] SubmitError),
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

/// Runs settlements.
#[derive(Clone)]
pub struct Settlements {
    store: Store,
    ledger: LedgerHandle,
    clock: Clock,
}

/// The id of the settlement of `account` at `cut_off`.
pub fn settlement_id(account: Uuid, cut_off: DateTime<Utc>) -> Uuid {
    let mut name = b"settlement/".to_vec();
    name.extend_from_slice(account.as_bytes());
    name.extend_from_slice(&cut_off.timestamp_micros().to_be_bytes());
    ledger::reserved_id(&name)
}

/// The id of the transfer that pays out the settlement `settlement`.
pub fn settlement_transfer_id(settlement: Uuid) -> Uuid {
    let mut name = b"settlement-transfer/".to_vec();
    name.extend_from_slice(settlement.as_bytes());
    ledger::reserved_id(&name)
}

/// The payouts clearing account of `currency`.
pub fn clearing_account_id(currency: ledger::Currency) -> Uuid {
    ledger::reserved_id(format!("clearing/{}", currency.code()).as_bytes())
}

/// The payouts clearing account of `currency` as the service creates it: its own, never debited
/// beyond what was paid into it.
pub fn clearing_account(currency: ledger::Currency) -> NewAccount {
    AccountRequest {
        id: clearing_account_id(currency),
        currency: currency.code().to_string(),
        code: SETTLEMENT_CODE,
        owner: SYSTEM_PRINCIPAL.to_string(),
        flags: AccountFlags {
            debits_must_not_exceed_credits: true,
            credits_must_not_exceed_debits: false,
        },
        overdraft_limit: None,
        metadata: Some(serde_json::json!({"purpose": "payouts clearing"})),
    }
    .parse()
    .expect("the clearing account's fixed fields are valid")
}

impl Settlements {
    pub fn new(store: Store, ledger: LedgerHandle, clock: Clock) -> Settlements {
        Settlements {
            store,
            ledger: ledger.deriving(),
            clock,
        }
    }

    /// Creates the clearing accounts of `currencies` that do not exist yet. One that exists but is not
    /// exactly the service's own is reported (settlements in its currency are then refused).
    pub async fn create_clearing_accounts(&self, currencies: &[ledger::Currency]) -> anyhow::Result<()> {
        let mut missing = Vec::new();
        for currency in currencies {
            let id = AccountId::from_stored(clearing_account_id(*currency));
            if self.store.account(id).await?.is_none() {
                missing.push(Command::CreateAccount(clearing_account(*currency)));
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        let results = self.ledger.submit(missing.clone()).await?;
        for (command, result) in missing.iter().zip(results) {
            if let (Command::CreateAccount(account), Err(code)) = (command, result) {
                tracing::error!(account = %account.id, %code, "a clearing account could not be created");
            }
        }
        Ok(())
    }

    /// Settles `account` up to `cut_off` as `actor`. Returns the settlement and whether it was made
    /// now (false: it existed).
    pub async fn settle(
        &self,
        actor: Actor,
        account: &Account,
        cut_off: DateTime<Utc>,
    ) -> Result<(StoredSettlement, bool), SettleError> {
        let _running = self
            .store
            .lock(LockSpace::Settlement, account.id.uuid(), SETTLEMENT_LOCK_WAIT)
            .await
            .map_err(|error| SettleError::Busy(format!("{error:#}")))?;
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
            self.record_refusal(&actor, account, id, SETTLEMENT_OUT_OF_ORDER)
                .await?;
            return Err(SettleError::OutOfOrder(rfc3339_utc(previous.cut_off)));
        }
        let clearing = self.checked_clearing_account(&actor, account, id).await?;
        // Every batch dispatched before this one commits first; later ones are stamped after now.
        self.ledger.submit(Vec::new()).await?;
        let period_start = previous.map(|p| p.cut_off);
        let netting = self.store.netting(account.id.uuid(), period_start, cut_off).await?;
        let net = netting.net();
        let transfer_id = (net > 0).then(|| settlement_transfer_id(id));
        let commands = match transfer_id {
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
                vec![Command::CreateTransfer(request.parse().map_err(SettleError::Refused)?)]
            }
            None => Vec::new(),
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
            command: transfer_id.map(|_| 0),
        };
        let receipts = self.ledger.acting_as(actor).settle(commands, change).await?;
        if transfer_id.is_some() {
            match receipts.first().map(|r| &r.result) {
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

    /// The clearing account of `account`'s currency, once it is exactly the one the service creates
    /// (owner, currency, code, flags, metadata, open). Otherwise the refusal is recorded in the audit
    /// log against the settlement's transfer, and nothing moves.
    async fn checked_clearing_account(
        &self,
        actor: &Actor,
        account: &Account,
        settlement: Uuid,
    ) -> Result<Uuid, SettleError> {
        let expected = clearing_account(account.currency);
        let found = self.store.account(expected.id).await?;
        let reason = match &found {
            None => "it does not exist".to_string(),
            Some(clearing) => match clearing.compare(&expected) {
                Err(code) => format!("{code}: {}", code.as_str()),
                Ok(()) if clearing.closed => "it is closed".to_string(),
                Ok(()) => return Ok(expected.id.uuid()),
            },
        };
        tracing::error!(account = %expected.id, %reason, "a settlement was refused: the clearing account is not the service's own");
        self.record_refusal(actor, account, settlement, CLEARING_ACCOUNT_INVALID)
            .await?;
        Err(SettleError::ClearingAccountInvalid {
            currency: account.currency.code().to_string(),
            reason,
        })
    }

    /// Records in the audit log that the settlement `settlement` of `account` was refused with `code`,
    /// as a refusal of its transfer: nothing moved.
    async fn record_refusal(
        &self,
        actor: &Actor,
        account: &Account,
        settlement: Uuid,
        code: &str,
    ) -> Result<(), SettleError> {
        let mut currency = [0u8; 3];
        currency.copy_from_slice(account.currency.code().as_bytes());
        let refusal = audit::Event::CommandRejected(audit::record::Rejection {
            command: audit::record::CommandKind::CreateTransfer,
            id: *settlement_transfer_id(settlement).as_bytes(),
            code: code.to_string(),
            debit_account: Some(*account.id.uuid().as_bytes()),
            credit_account: Some(*clearing_account_id(account.currency).as_bytes()),
            amount: None,
            currency: Some(currency),
            pending_id: None,
        });
        self.ledger.acting_as(actor.clone()).record(vec![refusal]).await?;
        Ok(())
    }
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

/// The principal the daily schedule settles as: the service, in the settlement operator's role. Its
/// settlements are decided by the same policies as any operator's (only designated accounts).
fn schedule_caller() -> Caller {
    let principal = Principal {
        name: SERVICE_PRINCIPALS[1].to_string(),
        kind: PrincipalKind::Service,
        roles: vec![SETTLEMENT_OPERATOR_ROLE.to_string()],
        accounts: Vec::new(),
        approval_limits: Default::default(),
        aggregate_limits: Default::default(),
    };
    Caller {
        principal: std::sync::Arc::new(principal),
        certificate_sha256: String::new(),
        front_end: None,
        mfa: false,
    }
}

/// The role of principals that run settlements.
const SETTLEMENT_OPERATOR_ROLE: &str = "settlement-operator";

/// Settles `accounts` every day at `time_utc`, with that instant as the cut-off: at start-up for the
/// latest one already passed (a run missed while the service was down is made up), then as each
/// passes. Every instance may run it: a settlement made by another is found and left alone.
pub async fn run_schedule(
    settlements: Settlements,
    authz: std::sync::Arc<Authorizer>,
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
                complete &= settle_scheduled(&settlements, &authz, *account, due).await;
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

/// One scheduled settlement, once the policies allow it; says whether it is done (made now or before,
/// or impossible to make).
async fn settle_scheduled(
    settlements: &Settlements,
    authz: &Authorizer,
    account: Uuid,
    cut_off: DateTime<Utc>,
) -> bool {
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
    let (policies, caller) = (authz.current(), schedule_caller());
    let resource = Resource::Account(AccountFacts::of(&account));
    let decision = policies.decide(&caller, Action::SettlementCreate, &resource, (settlements.clock)());
    let actor = caller.actor(Some(policies.hash()));
    if !decision.allowed {
        let denial = audit::Event::AccessDenied(decision.denial(Action::SettlementCreate, &resource));
        if let Err(error) = settlements.ledger.acting_as(actor).record(vec![denial]).await {
            tracing::error!(%error, "a denied scheduled settlement could not be recorded; retrying");
            return false;
        }
        tracing::error!(account = %account.id.uuid(), policies = ?decision.policy_ids, "a scheduled settlement was refused by policy");
        return true;
    }
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
