//! Transfers: raw requests, validated commands and stored records.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{AccountId, Amount, Currency, DecimalAmount, ErrorCode, Metadata, TIMEOUT_S_MAX, Timestamp, TransferId};

/// Transfer flags, as a client sends them (TigerBeetle's model). At most one of `pending`,
/// `post_pending_transfer` and `void_pending_transfer` may be set.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TransferFlags {
    /// This transfer and the next one succeed or fail together.
    pub linked: bool,
    pub pending: bool,
    pub post_pending_transfer: bool,
    pub void_pending_transfer: bool,
}

/// A transfer as a client sends it: unvalidated.
///
/// For a post or void, the accounts, currency and code may be left out (they come from the pending
/// transfer); when given they must match it. A post without amount posts the full pending amount.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TransferRequest {
    pub id: Uuid,
    #[serde(default)]
    pub debit_account_id: Option<Uuid>,
    #[serde(default)]
    pub credit_account_id: Option<Uuid>,
    #[serde(default)]
    pub amount: Option<String>,
    #[serde(default)]
    pub currency: Option<String>,
    #[serde(default)]
    pub code: u16,
    #[serde(default)]
    pub flags: TransferFlags,
    #[serde(default)]
    pub pending_id: Option<Uuid>,
    #[serde(default)]
    pub timeout_s: Option<u32>,
    #[serde(default)]
    pub metadata: Option<serde_json::Value>,
}

/// Money moving from one account to another.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Movement {
    pub debit_account_id: AccountId,
    pub credit_account_id: AccountId,
    pub amount: Amount,
    pub currency: Currency,
}

/// Fields a post or void may repeat from its pending transfer, checked against it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Expected {
    pub debit_account_id: Option<AccountId>,
    pub credit_account_id: Option<AccountId>,
    pub currency: Option<Currency>,
    /// Zero means "the pending transfer's code".
    pub code: u16,
    pub amount: Option<DecimalAmount>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum TransferCommand {
    Single(Movement),
    Pending { movement: Movement, timeout_s: u32 },
    PostPending { pending_id: TransferId, expected: Expected },
    VoidPending { pending_id: TransferId, expected: Expected },
}

/// A validated transfer.
#[derive(Clone, Debug, PartialEq)]
pub struct NewTransfer {
    pub id: TransferId,
    pub linked: bool,
    /// Zero only for posts and voids that inherit the pending transfer's code.
    pub code: u16,
    pub metadata: Metadata,
    pub command: TransferCommand,
}

impl TransferRequest {
    pub fn parse(self) -> Result<NewTransfer, ErrorCode> {
        let id = TransferId::parse(self.id, ErrorCode::IdMustNotBeZero)?;
        let flags = self.flags;
        let kinds = [flags.pending, flags.post_pending_transfer, flags.void_pending_transfer];
        if kinds.iter().filter(|set| **set).count() > 1 {
            return Err(ErrorCode::FlagsAreMutuallyExclusive);
        }
        if self.timeout_s.is_some() && !flags.pending {
            return Err(ErrorCode::TimeoutReservedForPendingTransfer);
        }
        let metadata = Metadata::parse(self.metadata.clone())?;
        let command = if flags.post_pending_transfer || flags.void_pending_transfer {
            let pending_id = TransferId::parse(self.pending_id.unwrap_or_default(), ErrorCode::PendingIdMustNotBeZero)?;
            if pending_id == id {
                return Err(ErrorCode::PendingIdMustBeDifferent);
            }
            let expected = self.expected()?;
            if flags.post_pending_transfer {
                TransferCommand::PostPending { pending_id, expected }
            } else {
                TransferCommand::VoidPending { pending_id, expected }
            }
        } else {
            if self.pending_id.is_some() {
                return Err(ErrorCode::PendingIdMustBeZero);
            }
            if self.code == 0 {
                return Err(ErrorCode::CodeMustNotBeZero);
            }
            let movement = self.movement()?;
            if flags.pending {
                let timeout_s = match self.timeout_s {
                    None | Some(0) => return Err(ErrorCode::TimeoutRequired),
                    Some(t) if t > TIMEOUT_S_MAX => return Err(ErrorCode::OverflowsTimeout),
                    Some(t) => t,
                };
                TransferCommand::Pending { movement, timeout_s }
            } else {
                TransferCommand::Single(movement)
            }
        };
        Ok(NewTransfer {
            id,
            linked: flags.linked,
            code: self.code,
            metadata,
            command,
        })
    }

    fn movement(&self) -> Result<Movement, ErrorCode> {
        let debit_account_id = AccountId::parse(
            self.debit_account_id.unwrap_or_default(),
            ErrorCode::DebitAccountIdMustNotBeZero,
        )?;
        let credit_account_id = AccountId::parse(
            self.credit_account_id.unwrap_or_default(),
            ErrorCode::CreditAccountIdMustNotBeZero,
        )?;
        if debit_account_id == credit_account_id {
            return Err(ErrorCode::AccountsMustBeDifferent);
        }
        let currency = Currency::from_code(self.currency.as_deref().ok_or(ErrorCode::CurrencyRequired)?)?;
        let amount = Amount::parse(self.amount.as_deref().ok_or(ErrorCode::AmountRequired)?, currency)?;
        Ok(Movement {
            debit_account_id,
            credit_account_id,
            amount,
            currency,
        })
    }

    fn expected(&self) -> Result<Expected, ErrorCode> {
        let optional_id = |uuid: Option<Uuid>, zero| uuid.map(|u| AccountId::parse(u, zero)).transpose();
        let currency = self.currency.as_deref().map(Currency::from_code).transpose()?;
        let amount = self.amount.as_deref().map(DecimalAmount::parse).transpose()?;
        if let (Some(currency), Some(amount)) = (currency, amount) {
            Amount::in_currency(amount, currency)?;
        }
        Ok(Expected {
            debit_account_id: optional_id(self.debit_account_id, ErrorCode::DebitAccountIdMustNotBeZero)?,
            credit_account_id: optional_id(self.credit_account_id, ErrorCode::CreditAccountIdMustNotBeZero)?,
            currency,
            code: self.code,
            amount,
        })
    }
}

/// What kind of transfer a stored record is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TransferKind {
    Single,
    Pending,
    PostPending,
    VoidPending,
}

/// Where a pending transfer stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PendingState {
    Pending,
    Posted,
    Voided,
    Expired,
}

/// A transfer as the ledger holds it. Posts and voids are transfers of their own that name the
/// pending transfer they resolve; their accounts and currency are copied from it.
#[derive(Clone, Debug, PartialEq)]
pub struct Transfer {
    pub id: TransferId,
    pub kind: TransferKind,
    pub linked: bool,
    pub debit_account_id: AccountId,
    pub credit_account_id: AccountId,
    pub amount: Amount,
    pub currency: Currency,
    pub code: u16,
    pub pending_id: Option<TransferId>,
    pub timeout_s: Option<u32>,
    /// Set for pending transfers: the instant from which they count as expired.
    pub expires_at: Option<Timestamp>,
    /// Set for pending transfers only.
    pub state: Option<PendingState>,
    pub metadata: Metadata,
    pub created_at: Timestamp,
}

impl NewTransfer {
    /// The kind of record this command creates.
    pub fn kind(&self) -> TransferKind {
        match self.command {
            TransferCommand::Single(_) => TransferKind::Single,
            TransferCommand::Pending { .. } => TransferKind::Pending,
            TransferCommand::PostPending { .. } => TransferKind::PostPending,
            TransferCommand::VoidPending { .. } => TransferKind::VoidPending,
        }
    }

    pub fn pending_id(&self) -> Option<TransferId> {
        match self.command {
            TransferCommand::PostPending { pending_id, .. } | TransferCommand::VoidPending { pending_id, .. } => {
                Some(pending_id)
            }
            TransferCommand::Single(_) | TransferCommand::Pending { .. } => None,
        }
    }

    pub fn movement(&self) -> Option<&Movement> {
        match &self.command {
            TransferCommand::Single(movement) | TransferCommand::Pending { movement, .. } => Some(movement),
            TransferCommand::PostPending { .. } | TransferCommand::VoidPending { .. } => None,
        }
    }
}
