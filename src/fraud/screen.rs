//! Screening as a batch applies: the single writer runs every new transfer through the active ruleset
//! just before its chain applies, with the features of everything committed or applied before it.

use std::collections::HashSet;

use ledger::{AccountId, ErrorCode, Ledger, NewTransfer, Timestamp, Transfer, TransferCommand, TransferKind};

use super::features::{Activity, Screened};
use super::{Ruleset, Screening, Verdict};

/// A [`ledger::Screen`] over one batch.
pub struct Screener<'a> {
    ruleset: &'a Ruleset,
    activity: &'a mut Activity,
    hold_timeout_s: u32,
    /// The current chain's transfers, counted in the activity until the chain settles.
    chain: Vec<(AccountId, AccountId)>,
    /// Each screened command (by index in the batch) and its screening.
    pub screenings: Vec<(usize, Screening)>,
    /// Commands applied as something else: held for review.
    pub replacements: Vec<(usize, NewTransfer)>,
    /// Commands (by index in the batch) that are not screened: settlement transfers.
    pub unscreened: HashSet<usize>,
}

impl<'a> Screener<'a> {
    pub fn new(ruleset: &'a Ruleset, activity: &'a mut Activity, hold_timeout_s: u32) -> Screener<'a> {
        Screener {
            ruleset,
            activity,
            hold_timeout_s,
            chain: Vec::new(),
            screenings: Vec::new(),
            replacements: Vec::new(),
            unscreened: HashSet::new(),
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
        if self.unscreened.contains(&index) {
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
        self.activity.add(debit.id, credit.id, amount, movement.currency, now);
        self.chain.push((debit.id, credit.id));
        if verdict == Verdict::Review
            && let Some(hold) = held(transfer, self.hold_timeout_s)
        {
            self.replacements.push((index, hold.clone()));
            return Ok(Some(hold));
        }
        Ok(None)
    }

    fn settle(&mut self, applied: bool) {
        if !applied {
            for (debit, credit) in self.chain.iter().rev() {
                self.activity.retract(*debit, *credit);
            }
        }
        self.chain.clear();
    }
}
