//! Builders shared by the ledger's tests.
#![allow(dead_code)]

use ledger::{AccountFlags, AccountRequest, Command, TransferFlags, TransferRequest};
use uuid::Uuid;

pub fn id(n: u128) -> Uuid {
    Uuid::from_u128(n)
}

pub fn account(n: u128, currency: &str, flags: AccountFlags, overdraft_limit: Option<&str>) -> Command {
    let request = AccountRequest {
        id: id(n),
        currency: currency.to_string(),
        code: 1,
        owner: "payments".to_string(),
        flags,
        overdraft_limit: overdraft_limit.map(str::to_string),
        metadata: None,
    };
    Command::CreateAccount(request.parse().expect("valid account"))
}

pub fn transfer_request(n: u128, debit: u128, credit: u128, amount: &str) -> TransferRequest {
    TransferRequest {
        id: id(n),
        debit_account_id: Some(id(debit)),
        credit_account_id: Some(id(credit)),
        amount: Some(amount.to_string()),
        currency: Some("USD".to_string()),
        code: 1,
        ..TransferRequest::default()
    }
}

pub fn transfer(n: u128, debit: u128, credit: u128, amount: &str) -> Command {
    Command::CreateTransfer(
        transfer_request(n, debit, credit, amount)
            .parse()
            .expect("valid transfer"),
    )
}

pub fn pending(n: u128, debit: u128, credit: u128, amount: &str, timeout_s: u32) -> Command {
    let request = TransferRequest {
        flags: TransferFlags {
            pending: true,
            ..TransferFlags::default()
        },
        timeout_s: Some(timeout_s),
        ..transfer_request(n, debit, credit, amount)
    };
    Command::CreateTransfer(request.parse().expect("valid pending transfer"))
}

pub fn resolve_request(n: u128, pending_id: u128, amount: Option<&str>, post: bool) -> TransferRequest {
    TransferRequest {
        id: id(n),
        pending_id: Some(id(pending_id)),
        amount: amount.map(str::to_string),
        flags: TransferFlags {
            post_pending_transfer: post,
            void_pending_transfer: !post,
            ..TransferFlags::default()
        },
        ..TransferRequest::default()
    }
}

pub fn post(n: u128, pending_id: u128, amount: Option<&str>) -> Command {
    Command::CreateTransfer(
        resolve_request(n, pending_id, amount, true)
            .parse()
            .expect("valid post"),
    )
}

pub fn void(n: u128, pending_id: u128) -> Command {
    Command::CreateTransfer(resolve_request(n, pending_id, None, false).parse().expect("valid void"))
}

pub fn linked(command: Command) -> Command {
    match command {
        Command::CreateTransfer(mut transfer) => {
            transfer.linked = true;
            Command::CreateTransfer(transfer)
        }
        other => other,
    }
}

pub const DEBITS_LIMITED: AccountFlags = AccountFlags {
    debits_must_not_exceed_credits: true,
    credits_must_not_exceed_debits: false,
};
pub const CREDITS_LIMITED: AccountFlags = AccountFlags {
    debits_must_not_exceed_credits: false,
    credits_must_not_exceed_debits: true,
};
pub const UNLIMITED: AccountFlags = AccountFlags {
    debits_must_not_exceed_credits: false,
    credits_must_not_exceed_debits: false,
};
