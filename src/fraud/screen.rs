//! Screening as a batch applies: the single writer runs every new transfer through the initiator's
//! approval limits and the active ruleset just before its chain applies, with the features and sums
//! of everything committed or applied before it.

use ledger::{AccountId, ErrorCode, Ledger, NewTransfer, Timestamp, Transfer, TransferCommand, TransferKind};

use super::features::{Activity, Screened};
use super::{Ruleset, Screening, Verdict};
use crate::identity::Principal;

/// A named reason to apply a transfer without screening it, recorded in the audit log with every
/// transfer it exempts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Exemption {
    pub id: &'static str,
    pub version: u32,
    pub reason: &'static str,
}

/// Settlement transfers: the service nets a designated merchant account's posted movements, each of
/// which was screened when it was made, and pays the net to its own clearing account.
pub const SETTLEMENT_NETTING: Exemption = Exemption {
    id: "settlement-netting",
    version: 1,
    reason: "nets movements that were each screened when made, into the service's own clearing account",
};

/// Who submitted one command of a batch, as far as screening goes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Origin<'a> {
    /// The initiator, whose approval limits apply; `None` for the service's own commands.
    pub initiator: Option<&'a Principal>,
    /// Applied without screening, by this exemption.
    pub exemption: Option<&'static Exemption>,
    /// Derived by the service itself: may use reserved ids.
    pub reserved_ids: bool,
}

/// Refuses a command that claims a reserved id (creates or closes an account, or creates a transfer,
/// with an id of the reserved namespace) unless the service derived it itself. Referring to a reserved
/// account (paying into a clearing account) is not claiming it.
pub fn admit(origin: Origin<'_>, command: &ledger::Command) -> Result<(), ErrorCode> {
    let claimed = match command {
        ledger::Command::CreateAccount(account) => account.id.uuid(),
        ledger::Command::CloseAccount(id) => id.uuid(),
        ledger::Command::CreateTransfer(transfer) => transfer.id.uuid(),
    };
    if ledger::is_reserved(claimed) && !origin.reserved_ids {
        return Err(ErrorCode::IdReserved);
    }
    Ok(())
}

/// A [`ledger::Screen`] over one batch.
pub struct Screener<'a> {
    ruleset: &'a Ruleset,
    activity: &'a mut Activity,
    hold_timeout_s: u32,
    approval_window_s: u32,
    /// Each command's origin, by index in the batch.
    origins: &'a [Origin<'a>],
    /// The current chain's transfers (debit, credit, counted as unreviewed), counted in the activity
    /// until the chain settles.
    chain: Vec<(AccountId, AccountId, bool)>,
    /// Each screened command (by index in the batch) and its screening.
    pub screenings: Vec<(usize, Screening)>,
    /// Commands held above their initiator's approval limits, with why.
    pub limit_holds: Vec<(usize, serde_json::Value)>,
    /// Commands applied as something else: held for review.
    pub replacements: Vec<(usize, NewTransfer)>,
    /// Transfers applied unscreened, with their exemption.
    pub exempted: Vec<(uuid::Uuid, &'static Exemption)>,
}

impl<'a> Screener<'a> {
    pub fn new(
        ruleset: &'a Ruleset,
        activity: &'a mut Activity,
        hold_timeout_s: u32,
        approval_window_s: u32,
        origins: &'a [Origin<'a>],
    ) -> Screener<'a> {
        Screener {
            ruleset,
            activity,
            hold_timeout_s,
            approval_window_s,
            origins,
            chain: Vec::new(),
            screenings: Vec::new(),
            limit_holds: Vec::new(),
            replacements: Vec::new(),
            exempted: Vec::new(),
        }
    }
}

/// Holds a single-phase transfer: the same movement, pending for `timeout_s`.
pub fn held(transfer: &NewTransfer, timeout_s: u32) -> Option<NewTransfer> {
    let TransferCommand::Single(movement) = &transfer.command else {
        return None;
    };
    Some(NewTransfer {
        command: TransferCommand::Pending {
            movement: *movement,
            timeout_s,
        },
        ..transfer.clone()
    })
}

/// A replay of a transfer that was held is compared as the held transfer it became.
fn replay(existing: &Transfer, transfer: &NewTransfer) -> Option<NewTransfer> {
    if existing.kind != TransferKind::Pending {
        return None;
    }
    held(transfer, existing.timeout_s?)
}

impl ledger::Screen for Screener<'_> {
    fn screen(
        &mut self,
        ledger: &Ledger,
        index: usize,
        transfer: &NewTransfer,
        now: Timestamp,
    ) -> Result<Option<NewTransfer>, ErrorCode> {
        let origin = self.origins.get(index).copied().unwrap_or_default();
        if let Some(exemption) = origin.exemption {
            self.exempted.push((transfer.id.uuid(), exemption));
            return Ok(None);
        }
        if let Some(existing) = ledger.transfer(transfer.id) {
            return Ok(replay(existing, transfer));
        }
        let Some(movement) = transfer.movement() else {
            return Ok(None);
        };
        let (Some(debit), Some(credit)) = (
            ledger.account(movement.debit_account_id),
            ledger.account(movement.credit_account_id),
        ) else {
            // The ledger refuses it: nothing to screen.
            return Ok(None);
        };
        let window_s = self.approval_window_s;
        let limit_hold = origin.initiator.and_then(|initiator| {
            let moved = self.activity.unreviewed_sum(debit.id, window_s, now);
            crate::approval::hold(initiator, movement, moved, window_s)
        });
        let screened = Screened {
            id: transfer.id.uuid(),
            movement,
            code: transfer.code,
            pending: matches!(transfer.command, TransferCommand::Pending { .. }),
            metadata: &transfer.metadata,
            debit,
            credit,
            now,
        };
        let screening = self.ruleset.screen(self.activity, &screened);
        let verdict = screening.verdict;
        self.screenings.push((index, screening));
        if verdict == Verdict::Deny {
            return Err(ErrorCode::FraudDenied);
        }
        let amount = movement.amount.minor();
        let unreviewed = limit_hold.is_none() && verdict != Verdict::Review;
        self.activity.add(debit.id, credit.id, amount, movement.currency, now);
        if unreviewed {
            self.activity.add_unreviewed(debit.id, amount, movement.currency, now);
        }
        self.chain.push((debit.id, credit.id, unreviewed));
        if let Some(explanation) = limit_hold {
            self.limit_holds.push((index, explanation));
        }
        if unreviewed {
            return Ok(None);
        }
        let hold = held(transfer, self.hold_timeout_s);
        if let Some(hold) = &hold {
            self.replacements.push((index, hold.clone()));
        }
        Ok(hold)
    }

    fn settle(&mut self, applied: bool) {
        if !applied {
            for (debit, credit, unreviewed) in self.chain.iter().rev() {
                self.activity.retract(*debit, *credit);
                if *unreviewed {
                    self.activity.retract_unreviewed(*debit);
                }
            }
        }
        self.chain.clear();
    }
}
