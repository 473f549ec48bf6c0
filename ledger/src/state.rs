//! The deterministic state machine: `apply(batch, now)` gives one result per command.
//!
//! The [`Ledger`] holds a working set of accounts and transfers. Property tests and the offline
//! verifier hold everything; the storage layer holds a bounded cache and, before each batch, loads
//! what [`Ledger::missing_transfers`] and [`Ledger::missing_accounts`] name. Within a batch, an id
//! that is not resident does not exist: that is the contract between the two.
//!
//! Each batch first expires due pending transfers (oldest deadline first, then by id), then applies
//! the commands in order. A linked chain (transfers with the `linked` flag, closed by the next
//! transfer without it) is applied atomically: on the first failure, everything the chain did is
//! undone and its other members report `linked_event_failed`.

use std::collections::{BTreeSet, HashMap};

use crate::{
    Account, AccountId, Amount, BalanceDelta, Balances, ErrorCode, Expected, Movement, NewAccount, NewTransfer,
    PendingState, Timestamp, Transfer, TransferCommand, TransferId, TransferKind,
};

/// Most pending transfers expired at the start of one batch, so a mass expiry cannot turn one batch
/// into an unbounded transaction; the rest expire in the following batches.
pub const EXPIRIES_PER_BATCH_MAX: usize = 8190;

/// One command of a batch.
#[derive(Clone, Debug, PartialEq)]
pub enum Command {
    CreateAccount(NewAccount),
    CloseAccount(AccountId),
    CreateTransfer(NewTransfer),
}

/// A command that took effect now, or that had already taken effect identically (a replay).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    Created,
    Exists,
}

pub type CommandResult = Result<Applied, ErrorCode>;

/// Everything a batch changed, for the storage layer to write in one transaction.
#[derive(Debug, Default)]
pub struct Changes {
    pub accounts_created: Vec<AccountId>,
    pub accounts_closed: Vec<AccountId>,
    pub transfers_created: Vec<TransferId>,
    /// Pending transfers posted, voided or expired, in the order it happened.
    pub pending_resolved: Vec<(TransferId, PendingState)>,
    balances_before: HashMap<AccountId, Balances>,
}

/// The results of a batch, one per command, and what it changed.
#[derive(Debug)]
pub struct BatchOutcome {
    pub results: Vec<CommandResult>,
    pub changes: Changes,
}

/// Something applied that a failing linked chain must take back.
#[derive(Clone, Debug)]
enum Undo {
    Balances(AccountId, Balances),
    TransferCreated(TransferId),
    PendingState(TransferId, PendingState),
}

/// Decides on commands as a batch applies: see [`Ledger::apply_screened`].
pub trait Screen {
    /// Whether the batch's command `index` may apply at all (e.g. not when it claims an id the caller
    /// may not use). Asked for every command of a chain before any of it is screened or applied; a
    /// refusal fails the chain with that code.
    fn admit(&mut self, _index: usize, _command: &Command) -> Result<(), ErrorCode> {
        Ok(())
    }
    /// `transfer` (the batch's command `index`) is about to apply with the ledger as it is now: apply
    /// it as it is (`None`), apply a replacement instead, or refuse it.
    fn screen(
        &mut self,
        ledger: &Ledger,
        index: usize,
        transfer: &NewTransfer,
        now: Timestamp,
    ) -> Result<Option<NewTransfer>, ErrorCode>;
    /// The chain of the transfers screened since the last call took effect (`applied`) or did not.
    fn settle(&mut self, applied: bool);
}

/// No screening: every transfer applies as it is.
impl Screen for () {
    fn screen(
        &mut self,
        _: &Ledger,
        _: usize,
        _: &NewTransfer,
        _: Timestamp,
    ) -> Result<Option<NewTransfer>, ErrorCode> {
        Ok(None)
    }

    fn settle(&mut self, _: bool) {}
}

#[derive(Clone, Debug, Default)]
pub struct Ledger {
    accounts: HashMap<AccountId, Account>,
    transfers: HashMap<TransferId, Transfer>,
    /// Open pending transfers by deadline.
    expiry: BTreeSet<(Timestamp, TransferId)>,
    undo: Vec<Undo>,
}

impl Ledger {
    pub fn new() -> Ledger {
        Ledger::default()
    }

    /// Adds an account read from storage to the working set.
    pub fn load_account(&mut self, account: Account) {
        self.accounts.insert(account.id, account);
    }

    /// Adds a transfer read from storage to the working set.
    pub fn load_transfer(&mut self, transfer: Transfer) {
        if let (Some(PendingState::Pending), Some(expires_at)) = (transfer.state, transfer.expires_at) {
            self.expiry.insert((expires_at, transfer.id));
        }
        self.transfers.insert(transfer.id, transfer);
    }

    pub fn account(&self, id: AccountId) -> Option<&Account> {
        self.accounts.get(&id)
    }

    pub fn transfer(&self, id: TransferId) -> Option<&Transfer> {
        self.transfers.get(&id)
    }

    pub fn accounts(&self) -> impl Iterator<Item = &Account> {
        self.accounts.values()
    }

    pub fn transfers(&self) -> impl Iterator<Item = &Transfer> {
        self.transfers.values()
    }

    pub fn account_count(&self) -> usize {
        self.accounts.len()
    }

    /// The earliest deadline among open pending transfers.
    pub fn next_expiry(&self) -> Option<Timestamp> {
        self.expiry.first().map(|(at, _)| *at)
    }

    /// Transfers the batch refers to (its own ids and the pending transfers it resolves) that are
    /// not in the working set.
    pub fn missing_transfers(&self, commands: &[Command]) -> Vec<TransferId> {
        let mut missing: Vec<TransferId> = commands
            .iter()
            .filter_map(|command| match command {
                Command::CreateTransfer(transfer) => Some(transfer),
                Command::CreateAccount(_) | Command::CloseAccount(_) => None,
            })
            .flat_map(|transfer| [Some(transfer.id), transfer.pending_id()])
            .flatten()
            .filter(|id| !self.transfers.contains_key(id))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        missing
    }

    /// Accounts the batch refers to, directly or through resident pending transfers it resolves or
    /// expires, that are not in the working set. Call after loading [`Ledger::missing_transfers`].
    pub fn missing_accounts(&self, commands: &[Command], now: Timestamp) -> Vec<AccountId> {
        let pending_accounts = |id: TransferId| {
            self.transfers
                .get(&id)
                .map(|t| [t.debit_account_id, t.credit_account_id])
                .into_iter()
                .flatten()
        };
        let mut wanted: Vec<AccountId> = Vec::new();
        for command in commands {
            match command {
                Command::CreateAccount(account) => wanted.push(account.id),
                Command::CloseAccount(id) => wanted.push(*id),
                Command::CreateTransfer(transfer) => match (transfer.movement(), transfer.pending_id()) {
                    (Some(movement), _) => wanted.extend([movement.debit_account_id, movement.credit_account_id]),
                    (None, Some(pending_id)) => wanted.extend(pending_accounts(pending_id)),
                    (None, None) => {}
                },
            }
        }
        for (_, id) in self.due(now) {
            wanted.extend(pending_accounts(*id));
        }
        wanted.retain(|id| !self.accounts.contains_key(id));
        wanted.sort_unstable();
        wanted.dedup();
        wanted
    }

    fn due(&self, now: Timestamp) -> impl Iterator<Item = &(Timestamp, TransferId)> {
        self.expiry
            .iter()
            .take_while(move |(at, _)| *at <= now)
            .take(EXPIRIES_PER_BATCH_MAX)
    }

    /// Keeps the working set bounded: drops settled transfers unless `keep` says otherwise and, with
    /// `evict_accounts` and above `accounts_max` resident accounts, accounts without pending amounts.
    /// Open pending transfers and their accounts always stay: the expiry of a deadline must not depend
    /// on a reload.
    pub fn shrink(&mut self, accounts_max: usize, evict_accounts: bool, keep: impl Fn(&Transfer) -> bool) {
        self.transfers
            .retain(|_, t| t.state == Some(PendingState::Pending) || keep(t));
        if evict_accounts && self.accounts.len() > accounts_max {
            self.accounts
                .retain(|_, a| a.balances.debits_pending != 0 || a.balances.credits_pending != 0);
        }
    }

    /// Whether any due expiry (at `now`) would release one of `pending_ids`.
    pub fn expires_any(&self, now: Timestamp, pending_ids: &std::collections::HashSet<TransferId>) -> bool {
        !pending_ids.is_empty() && self.due(now).any(|(_, id)| pending_ids.contains(id))
    }

    /// Applies a batch at time `now`: first expirations, then each command or linked chain in order.
    pub fn apply(&mut self, commands: &[Command], now: Timestamp) -> BatchOutcome {
        self.apply_screened(commands, now, &mut ())
    }

    /// Like [`Ledger::apply`], with `screen` first admitting every command of a chain, then deciding on
    /// every transfer of it that moves money (single-phase or pending) just before the chain applies,
    /// against the state all earlier chains left: it may replace the transfer (e.g. hold it as pending)
    /// or refuse it with a code, which fails its chain.
    /// `screen.settle` then learns whether the chain took effect.
    pub fn apply_screened(&mut self, commands: &[Command], now: Timestamp, screen: &mut impl Screen) -> BatchOutcome {
        let mut changes = Changes::default();
        self.expire_due(now, &mut changes);
        let mut results = Vec::with_capacity(commands.len());
        let mut start = 0;
        while start < commands.len() {
            let (end, open) = chain_end(commands, start);
            if open {
                results.extend((start + 1..end).map(|_| Err(ErrorCode::LinkedEventFailed)));
                results.push(Err(ErrorCode::LinkedEventChainOpen));
                start = end;
                continue;
            }
            let (replaced, refused) = self.screen_chain(commands, start, end, now, screen);
            let chain = if replaced.is_empty() {
                &commands[start..end]
            } else {
                &replaced[..]
            };
            let chain_results = match refused {
                Some((index, code)) => {
                    let mut failed = vec![Err(ErrorCode::LinkedEventFailed); chain.len()];
                    failed[index] = Err(code);
                    failed
                }
                None => self.apply_chain(chain, now, &mut changes),
            };
            screen.settle(chain_results.iter().all(Result::is_ok));
            results.extend(chain_results);
            start = end;
        }
        debug_assert_eq!(results.len(), commands.len());
        BatchOutcome { results, changes }
    }

    /// Admits every command of the chain `commands[start..end]`, then screens its transfers: the chain
    /// with any replacements (empty when none), and the first refusal (offset in the chain and code).
    fn screen_chain(
        &self,
        commands: &[Command],
        start: usize,
        end: usize,
        now: Timestamp,
        screen: &mut impl Screen,
    ) -> (Vec<Command>, Option<(usize, ErrorCode)>) {
        let chain = &commands[start..end];
        let mut replaced: Vec<Command> = Vec::new();
        for (offset, command) in chain.iter().enumerate() {
            if let Err(code) = screen.admit(start + offset, command) {
                return (replaced, Some((offset, code)));
            }
        }
        for (offset, command) in chain.iter().enumerate() {
            let Command::CreateTransfer(transfer) = command else {
                continue;
            };
            if transfer.movement().is_none() {
                continue;
            }
            match screen.screen(self, start + offset, transfer, now) {
                Ok(None) => {}
                Ok(Some(replacement)) => {
                    if replaced.is_empty() {
                        replaced = chain.to_vec();
                    }
                    replaced[offset] = Command::CreateTransfer(replacement);
                }
                Err(code) => return (replaced, Some((offset, code))),
            }
        }
        (replaced, None)
    }

    /// Applies a chain of one or more commands; all take effect or none.
    fn apply_chain(&mut self, chain: &[Command], now: Timestamp, changes: &mut Changes) -> Vec<CommandResult> {
        debug_assert!(self.undo.is_empty());
        let created_mark = changes.transfers_created.len();
        let resolved_mark = changes.pending_resolved.len();
        let mut results = Vec::with_capacity(chain.len());
        for (index, command) in chain.iter().enumerate() {
            let result = self.apply_command(command, now, changes);
            if let Err(code) = result {
                self.rollback(changes, created_mark, resolved_mark);
                let mut results = vec![Err(ErrorCode::LinkedEventFailed); chain.len()];
                results[index] = Err(code);
                return results;
            }
            results.push(result);
        }
        self.undo.clear();
        results
    }

    fn rollback(&mut self, changes: &mut Changes, created_mark: usize, resolved_mark: usize) {
        while let Some(undo) = self.undo.pop() {
            match undo {
                Undo::Balances(id, balances) => {
                    self.accounts
                        .get_mut(&id)
                        .expect("undo names a resident account")
                        .balances = balances
                }
                Undo::TransferCreated(id) => {
                    if let Some(transfer) = self.transfers.remove(&id)
                        && let Some(expires_at) = transfer.expires_at
                    {
                        self.expiry.remove(&(expires_at, id));
                    }
                }
                Undo::PendingState(id, state) => {
                    let transfer = self.transfers.get_mut(&id).expect("undo names a resident transfer");
                    transfer.state = Some(state);
                    if let (PendingState::Pending, Some(expires_at)) = (state, transfer.expires_at) {
                        self.expiry.insert((expires_at, id));
                    }
                }
            }
        }
        changes.transfers_created.truncate(created_mark);
        changes.pending_resolved.truncate(resolved_mark);
    }

    fn apply_command(&mut self, command: &Command, now: Timestamp, changes: &mut Changes) -> CommandResult {
        match command {
            Command::CreateAccount(account) => self.create_account(account, now, changes),
            Command::CloseAccount(id) => self.close_account(*id, changes),
            Command::CreateTransfer(transfer) => {
                if let Some(existing) = self.transfers.get(&transfer.id) {
                    return self.compare_transfer(existing, transfer).map(|()| Applied::Exists);
                }
                match &transfer.command {
                    TransferCommand::Single(movement) => self.move_money(transfer, movement, None, now, changes),
                    TransferCommand::Pending { movement, timeout_s } => {
                        self.move_money(transfer, movement, Some(*timeout_s), now, changes)
                    }
                    TransferCommand::PostPending { pending_id, expected } => {
                        self.resolve_pending(transfer, *pending_id, expected, true, now, changes)
                    }
                    TransferCommand::VoidPending { pending_id, expected } => {
                        self.resolve_pending(transfer, *pending_id, expected, false, now, changes)
                    }
                }
                .map(|()| Applied::Created)
            }
        }
    }

    fn create_account(&mut self, request: &NewAccount, now: Timestamp, changes: &mut Changes) -> CommandResult {
        if let Some(existing) = self.accounts.get(&request.id) {
            return existing.compare(request).map(|()| Applied::Exists);
        }
        let account = Account {
            id: request.id,
            currency: request.currency,
            code: request.code,
            owner: request.owner.clone(),
            limit: request.limit,
            metadata: request.metadata.clone(),
            closed: false,
            created_at: now,
            balances: Balances::default(),
        };
        changes.balances_before.insert(account.id, account.balances);
        changes.accounts_created.push(account.id);
        self.accounts.insert(account.id, account);
        Ok(Applied::Created)
    }

    fn close_account(&mut self, id: AccountId, changes: &mut Changes) -> CommandResult {
        let account = self.accounts.get_mut(&id).ok_or(ErrorCode::AccountNotFound)?;
        if account.closed {
            return Ok(Applied::Exists);
        }
        if account.balances.debits_pending != 0 || account.balances.credits_pending != 0 {
            return Err(ErrorCode::AccountHasPendingTransfers);
        }
        account.closed = true;
        changes.accounts_closed.push(id);
        Ok(Applied::Created)
    }

    /// A single-phase transfer (`timeout_s` is `None`) or a new pending one.
    fn move_money(
        &mut self,
        request: &NewTransfer,
        movement: &Movement,
        timeout_s: Option<u32>,
        now: Timestamp,
        changes: &mut Changes,
    ) -> Result<(), ErrorCode> {
        let debit = self
            .accounts
            .get(&movement.debit_account_id)
            .ok_or(ErrorCode::DebitAccountNotFound)?;
        let credit = self
            .accounts
            .get(&movement.credit_account_id)
            .ok_or(ErrorCode::CreditAccountNotFound)?;
        if debit.currency != movement.currency || credit.currency != movement.currency {
            return Err(ErrorCode::CurrencyMismatch);
        }
        if debit.closed || credit.closed {
            return Err(ErrorCode::AccountClosed);
        }
        let expires_at = match timeout_s {
            Some(seconds) => Some(now.plus_seconds(seconds).ok_or(ErrorCode::OverflowsTimeout)?),
            None => None,
        };
        let pending = timeout_s.is_some();
        let amount = movement.amount.minor();
        let debit_after = debit.balances.debit(amount, pending)?.check(debit.limit)?;
        let credit_after = credit.balances.credit(amount, pending)?.check(credit.limit)?;
        self.set_balances(movement.debit_account_id, debit_after, changes);
        self.set_balances(movement.credit_account_id, credit_after, changes);
        self.insert_transfer(
            Transfer {
                id: request.id,
                kind: request.kind(),
                linked: request.linked,
                debit_account_id: movement.debit_account_id,
                credit_account_id: movement.credit_account_id,
                amount: movement.amount,
                currency: movement.currency,
                code: request.code,
                pending_id: None,
                timeout_s,
                expires_at,
                state: pending.then_some(PendingState::Pending),
                metadata: request.metadata.clone(),
                created_at: now,
            },
            changes,
        );
        Ok(())
    }

    /// Posts (`post` is true) or voids a pending transfer.
    fn resolve_pending(
        &mut self,
        request: &NewTransfer,
        pending_id: TransferId,
        expected: &Expected,
        post: bool,
        now: Timestamp,
        changes: &mut Changes,
    ) -> Result<(), ErrorCode> {
        let pending = self
            .transfers
            .get(&pending_id)
            .ok_or(ErrorCode::PendingTransferNotFound)?;
        if pending.kind != TransferKind::Pending {
            return Err(ErrorCode::PendingTransferNotPending);
        }
        check_expected(pending, request.code, expected)?;
        match pending.state {
            Some(PendingState::Posted) => return Err(ErrorCode::PendingTransferAlreadyPosted),
            Some(PendingState::Voided) => return Err(ErrorCode::PendingTransferAlreadyVoided),
            Some(PendingState::Expired) => return Err(ErrorCode::PendingTransferExpired),
            Some(PendingState::Pending) | None => {}
        }
        if pending.expires_at.is_some_and(|at| at <= now) {
            return Err(ErrorCode::PendingTransferExpired);
        }
        let amount = resolved_amount(
            pending,
            expected.amount.map(|a| Amount::in_currency(a, pending.currency)),
            post,
        )?;
        let posted_minor = if post { amount.minor() } else { 0 };
        let debit_after = self
            .balances(pending.debit_account_id)
            .resolve_debit(pending.amount.minor(), posted_minor)?;
        let credit_after = self
            .balances(pending.credit_account_id)
            .resolve_credit(pending.amount.minor(), posted_minor)?;
        let record = Transfer {
            id: request.id,
            kind: request.kind(),
            linked: request.linked,
            debit_account_id: pending.debit_account_id,
            credit_account_id: pending.credit_account_id,
            amount,
            currency: pending.currency,
            code: if request.code == 0 { pending.code } else { request.code },
            pending_id: Some(pending_id),
            timeout_s: None,
            expires_at: None,
            state: None,
            metadata: request.metadata.clone(),
            created_at: now,
        };
        self.set_balances(record.debit_account_id, debit_after, changes);
        self.set_balances(record.credit_account_id, credit_after, changes);
        let state = if post {
            PendingState::Posted
        } else {
            PendingState::Voided
        };
        self.set_pending_state(pending_id, state, changes);
        self.insert_transfer(record, changes);
        Ok(())
    }

    /// Ok when `request` is a replay of `existing`; otherwise the first field that differs.
    fn compare_transfer(&self, existing: &Transfer, request: &NewTransfer) -> Result<(), ErrorCode> {
        if existing.kind != request.kind() || existing.linked != request.linked {
            return Err(ErrorCode::ExistsWithDifferentFlags);
        }
        match &request.command {
            TransferCommand::Single(movement) | TransferCommand::Pending { movement, .. } => {
                if let TransferCommand::Pending { timeout_s, .. } = request.command
                    && existing.timeout_s != Some(timeout_s)
                {
                    return Err(ErrorCode::ExistsWithDifferentTimeout);
                }
                let fields = Expected {
                    debit_account_id: Some(movement.debit_account_id),
                    credit_account_id: Some(movement.credit_account_id),
                    currency: Some(movement.currency),
                    code: request.code,
                    amount: None,
                };
                compare_fields(existing, &fields, Some(Ok(movement.amount)))?;
            }
            TransferCommand::PostPending { pending_id, expected }
            | TransferCommand::VoidPending { pending_id, expected } => {
                if existing.pending_id != Some(*pending_id) {
                    return Err(ErrorCode::ExistsWithDifferentPendingId);
                }
                let amount = match (expected.amount, self.transfers.get(pending_id)) {
                    (Some(amount), _) => Some(Amount::in_currency(amount, existing.currency)),
                    // No amount on a post means the pending transfer's full amount.
                    (None, Some(pending)) => Some(Ok(pending.amount)),
                    (None, None) => None,
                };
                compare_fields(existing, expected, amount)?;
            }
        }
        if existing.metadata != request.metadata {
            return Err(ErrorCode::ExistsWithDifferentMetadata);
        }
        Ok(())
    }

    fn expire_due(&mut self, now: Timestamp, changes: &mut Changes) {
        let due: Vec<TransferId> = self.due(now).map(|(_, id)| *id).collect();
        for id in due {
            let transfer = self
                .transfers
                .get(&id)
                .expect("the expiry index names resident transfers");
            let (debit_id, credit_id, minor) = (
                transfer.debit_account_id,
                transfer.credit_account_id,
                transfer.amount.minor(),
            );
            let debit = self.balances(debit_id).resolve_debit(minor, 0);
            let credit = self.balances(credit_id).resolve_credit(minor, 0);
            let (Ok(debit), Ok(credit)) = (debit, credit) else {
                unreachable!("releasing a pending amount only lowers balances");
            };
            self.set_balances(debit_id, debit, changes);
            self.set_balances(credit_id, credit, changes);
            self.set_pending_state(id, PendingState::Expired, changes);
        }
        self.undo.clear();
    }

    fn balances(&self, id: AccountId) -> Balances {
        // Accounts of resident pending transfers are resident (see `missing_accounts` and `shrink`).
        self.accounts
            .get(&id)
            .expect("the working set holds every account the batch touches")
            .balances
    }

    fn set_balances(&mut self, id: AccountId, balances: Balances, changes: &mut Changes) {
        let account = self
            .accounts
            .get_mut(&id)
            .expect("the working set holds every account the batch touches");
        assert!(
            balances.respects(account.limit),
            "balances of {id} would break their limit"
        );
        changes.balances_before.entry(id).or_insert(account.balances);
        self.undo.push(Undo::Balances(id, account.balances));
        account.balances = balances;
    }

    fn set_pending_state(&mut self, id: TransferId, state: PendingState, changes: &mut Changes) {
        let transfer = self
            .transfers
            .get_mut(&id)
            .expect("resolving a resident pending transfer");
        let before = transfer.state.expect("only pending transfers are resolved");
        assert_eq!(before, PendingState::Pending);
        if let Some(expires_at) = transfer.expires_at {
            self.expiry.remove(&(expires_at, id));
        }
        transfer.state = Some(state);
        self.undo.push(Undo::PendingState(id, before));
        changes.pending_resolved.push((id, state));
    }

    fn insert_transfer(&mut self, transfer: Transfer, changes: &mut Changes) {
        if let Some(expires_at) = transfer.expires_at {
            self.expiry.insert((expires_at, transfer.id));
        }
        self.undo.push(Undo::TransferCreated(transfer.id));
        changes.transfers_created.push(transfer.id);
        let previous = self.transfers.insert(transfer.id, transfer);
        assert!(previous.is_none(), "a transfer id is created once");
    }
}

impl Changes {
    /// Net balance change per touched account, sorted by account id, without zero entries.
    pub fn balance_deltas(&self, ledger: &Ledger) -> Vec<(AccountId, BalanceDelta)> {
        let mut deltas: Vec<(AccountId, BalanceDelta)> = self
            .balances_before
            .iter()
            .map(|(id, before)| {
                let after = ledger.accounts[id].balances;
                (*id, after.minus(*before))
            })
            .filter(|(_, delta)| !delta.is_zero())
            .collect();
        deltas.sort_unstable_by_key(|(id, _)| *id);
        deltas
    }

    pub fn is_empty(&self) -> bool {
        self.accounts_created.is_empty()
            && self.accounts_closed.is_empty()
            && self.transfers_created.is_empty()
            && self.pending_resolved.is_empty()
    }
}

/// The end (exclusive) of the chain starting at `start`, and whether it is left open: its last
/// transfer is linked but nothing closes it before a non-transfer command or the end of the batch.
fn chain_end(commands: &[Command], start: usize) -> (usize, bool) {
    let is_linked = |c: &Command| matches!(c, Command::CreateTransfer(t) if t.linked);
    if !is_linked(&commands[start]) {
        return (start + 1, false);
    }
    let mut end = start;
    while end < commands.len() && is_linked(&commands[end]) {
        end += 1;
    }
    match commands.get(end) {
        Some(Command::CreateTransfer(_)) => (end + 1, false),
        Some(Command::CreateAccount(_) | Command::CloseAccount(_)) | None => (end, true),
    }
}

/// The fields a post or void repeats must match its pending transfer.
fn check_expected(pending: &Transfer, code: u16, expected: &Expected) -> Result<(), ErrorCode> {
    if expected
        .debit_account_id
        .is_some_and(|id| id != pending.debit_account_id)
    {
        return Err(ErrorCode::PendingTransferHasDifferentDebitAccountId);
    }
    if expected
        .credit_account_id
        .is_some_and(|id| id != pending.credit_account_id)
    {
        return Err(ErrorCode::PendingTransferHasDifferentCreditAccountId);
    }
    if expected.currency.is_some_and(|c| c != pending.currency) {
        return Err(ErrorCode::PendingTransferHasDifferentCurrency);
    }
    if code != 0 && code != pending.code {
        return Err(ErrorCode::PendingTransferHasDifferentCode);
    }
    Ok(())
}

/// The amount a post moves (by default the full pending amount) or a void releases (always the full
/// pending amount; a void that names another amount is refused).
fn resolved_amount(
    pending: &Transfer,
    requested: Option<Result<Amount, ErrorCode>>,
    post: bool,
) -> Result<Amount, ErrorCode> {
    match (requested.transpose()?, post) {
        (None, _) => Ok(pending.amount),
        (Some(amount), true) if amount > pending.amount => Err(ErrorCode::ExceedsPendingTransferAmount),
        (Some(amount), true) => Ok(amount),
        (Some(amount), false) if amount != pending.amount => Err(ErrorCode::PendingTransferHasDifferentAmount),
        (Some(amount), false) => Ok(amount),
    }
}

/// Compares a replayed command's fields with the stored transfer. A field the replay leaves out
/// (`None`, or code zero on a post or void) matches.
fn compare_fields(
    existing: &Transfer,
    fields: &Expected,
    amount: Option<Result<Amount, ErrorCode>>,
) -> Result<(), ErrorCode> {
    if fields
        .debit_account_id
        .is_some_and(|id| id != existing.debit_account_id)
    {
        return Err(ErrorCode::ExistsWithDifferentDebitAccountId);
    }
    if fields
        .credit_account_id
        .is_some_and(|id| id != existing.credit_account_id)
    {
        return Err(ErrorCode::ExistsWithDifferentCreditAccountId);
    }
    if amount.is_some_and(|amount| amount != Ok(existing.amount)) {
        return Err(ErrorCode::ExistsWithDifferentAmount);
    }
    if fields.currency.is_some_and(|c| c != existing.currency) {
        return Err(ErrorCode::ExistsWithDifferentCurrency);
    }
    if fields.code != 0 && fields.code != existing.code {
        return Err(ErrorCode::ExistsWithDifferentCode);
    }
    Ok(())
}
