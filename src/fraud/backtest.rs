//! Backtests: a candidate ruleset and the active one run over recorded transfers, in commit order, with
//! the features rebuilt the way the live path computed them (every transfer of the week before the
//! range counted first). Nothing is written; memory is the week of activity plus bounded samples.

use std::collections::BTreeMap;

use ledger::{Account, Timestamp, Transfer};
use serde::Serialize;
use uuid::Uuid;

use super::features::{Activity, Screened};
use super::{Mode, Ruleset, Verdict};

/// Sample transfer ids kept per rule and per change of verdict.
pub const SAMPLES_MAX: usize = 10;

/// How one rule of the candidate did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct RuleReport {
    pub id: String,
    pub version: u32,
    pub mode: String,
    pub hits: u64,
    pub errors: u64,
    pub samples: Vec<Uuid>,
}

/// Transfers whose verdict would change from `active` to `candidate`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Change {
    pub active: String,
    pub candidate: String,
    pub count: u64,
    pub samples: Vec<Uuid>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Report {
    /// Transfers screened (created in the range).
    pub transfers: u64,
    /// The candidate's verdicts, by verdict.
    pub candidate: BTreeMap<String, u64>,
    /// The active ruleset's verdicts, by verdict.
    pub active: BTreeMap<String, u64>,
    pub rules: Vec<RuleReport>,
    pub changes: Vec<Change>,
}

pub struct Backtest<'a> {
    candidate: &'a Ruleset,
    active: &'a Ruleset,
    from: Timestamp,
    activity: Activity,
    report: Report,
}

impl<'a> Backtest<'a> {
    pub fn new(candidate: &'a Ruleset, active: &'a Ruleset, from: Timestamp) -> Backtest<'a> {
        let rules = candidate
            .rules
            .iter()
            .map(|rule| RuleReport {
                id: rule.id.clone(),
                version: rule.version,
                mode: match rule.mode {
                    Mode::Enforce => "enforce",
                    Mode::Shadow => "shadow",
                }
                .to_string(),
                ..RuleReport::default()
            })
            .collect();
        Backtest {
            candidate,
            active,
            from,
            activity: Activity::default(),
            report: Report {
                rules,
                ..Report::default()
            },
        }
    }

    /// One recorded transfer that moved money, in commit order. `asked_pending`: the client asked for
    /// a pending transfer (a transfer held for a fraud review was asked as single-phase).
    pub fn transfer(&mut self, transfer: &Transfer, asked_pending: bool, debit: &Account, credit: &Account) {
        let now = transfer.created_at;
        if now >= self.from {
            let movement = ledger::Movement {
                debit_account_id: transfer.debit_account_id,
                credit_account_id: transfer.credit_account_id,
                amount: transfer.amount,
                currency: transfer.currency,
            };
            let screened = Screened {
                id: transfer.id.uuid(),
                movement: &movement,
                code: transfer.code,
                pending: asked_pending,
                metadata: &transfer.metadata,
                debit,
                credit,
                now,
            };
            let candidate = self.candidate.screen(&mut self.activity, &screened);
            let active = self.active.screen(&mut self.activity, &screened);
            self.record(transfer.id.uuid(), &candidate, active.verdict);
        }
        self.activity.add(
            transfer.debit_account_id,
            transfer.credit_account_id,
            transfer.amount.minor(),
            transfer.currency,
            now,
        );
        self.activity.prune(now);
    }

    fn record(&mut self, id: Uuid, candidate: &super::Screening, active: Verdict) {
        let report = &mut self.report;
        report.transfers += 1;
        *report
            .candidate
            .entry(candidate.verdict.as_str().to_string())
            .or_default() += 1;
        *report.active.entry(active.as_str().to_string()).or_default() += 1;
        for outcome in &candidate.rules {
            if let Some(rule) = report.rules.iter_mut().find(|r| r.id == outcome.id) {
                if outcome.outcome == "hit" {
                    rule.hits += 1;
                } else {
                    rule.errors += 1;
                }
                if rule.samples.len() < SAMPLES_MAX {
                    rule.samples.push(id);
                }
            }
        }
        if candidate.verdict != active {
            let (from, to) = (active.as_str(), candidate.verdict.as_str());
            let index = match report
                .changes
                .iter()
                .position(|c| c.active == from && c.candidate == to)
            {
                Some(index) => index,
                None => {
                    report.changes.push(Change {
                        active: from.to_string(),
                        candidate: to.to_string(),
                        ..Change::default()
                    });
                    report.changes.len() - 1
                }
            };
            let change = &mut report.changes[index];
            change.count += 1;
            if change.samples.len() < SAMPLES_MAX {
                change.samples.push(id);
            }
        }
    }

    pub fn finish(self) -> Report {
        self.report
    }
}
