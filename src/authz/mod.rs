//! Authorization: every API action is decided by the Cedar policies in the policy directory, for the
//! principal the request acts for, with facts the service looked up (account owners, the held state of
//! a transfer, who initiated it). Allow only when Cedar says Allow and no policy failed to evaluate
//! (Cedar skips a failing policy; here any failure denies).
//!
//! The policy set (schema, policies and principals file) is one immutable snapshot with a hash;
//! [`Authorizer::reload`] swaps a new one in atomically and keeps the old one on any error.

mod load;
pub mod token;

use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use arc_swap::{ArcSwap, ArcSwapOption};
use cedar_policy::{
    Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, PolicySet, Request, RestrictedExpression, Schema,
};
use chrono::{Datelike, Timelike};
use ledger::Timestamp;
use uuid::Uuid;

use crate::identity::{Caller, Principal, Principals};
use token::{TokenSettings, TokenVerifier};

/// One action per API operation, as the schema names them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Action {
    AccountCreate,
    AccountRead,
    TransferCreate,
    TransferPost,
    TransferVoid,
    TransferRead,
    ReviewRead,
    ReviewApprove,
    ReviewReject,
    RulesRead,
    RulesPropose,
    RulesActivate,
    RulesBacktest,
    AuditRead,
    ReportExport,
    ApiDescribe,
}

impl Action {
    pub const ALL: [Action; 16] = [
        Action::AccountCreate,
        Action::AccountRead,
        Action::TransferCreate,
        Action::TransferPost,
        Action::TransferVoid,
        Action::TransferRead,
        Action::ReviewRead,
        Action::ReviewApprove,
        Action::ReviewReject,
        Action::RulesRead,
        Action::RulesPropose,
        Action::RulesActivate,
        Action::RulesBacktest,
        Action::AuditRead,
        Action::ReportExport,
        Action::ApiDescribe,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Action::AccountCreate => "account.create",
            Action::AccountRead => "account.read",
            Action::TransferCreate => "transfer.create",
            Action::TransferPost => "transfer.post",
            Action::TransferVoid => "transfer.void",
            Action::TransferRead => "transfer.read",
            Action::ReviewRead => "review.read",
            Action::ReviewApprove => "review.approve",
            Action::ReviewReject => "review.reject",
            Action::RulesRead => "rules.read",
            Action::RulesPropose => "rules.propose",
            Action::RulesActivate => "rules.activate",
            Action::RulesBacktest => "rules.backtest",
            Action::AuditRead => "audit.read",
            Action::ReportExport => "report.export",
            Action::ApiDescribe => "api.describe",
        }
    }
}

/// An account as policies see it: who owns it (the owner the ledger recorded, plus any principal the
/// principals file lists for it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccountFacts {
    pub id: Uuid,
    pub owner: String,
    pub currency: String,
    pub code: u16,
}

impl AccountFacts {
    pub fn of(account: &ledger::Account) -> AccountFacts {
        AccountFacts {
            id: account.id.uuid(),
            owner: account.owner.clone(),
            currency: account.currency.code().to_string(),
            code: account.code,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransferFacts {
    pub id: Uuid,
    pub debit_account: AccountFacts,
    pub credit_account: AccountFacts,
    pub amount_minor: u64,
    pub currency: String,
    pub held: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReviewFacts {
    pub transfer: TransferFacts,
    pub initiator: String,
    pub reason: String,
}

/// What an action is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resource {
    Account(AccountFacts),
    Transfer(TransferFacts),
    Review(ReviewFacts),
    Ruleset { id: String, proposer: String },
    Report(String),
    AuditLog,
    Api,
}

/// The answer for one request. `policy_ids` are the determining policies: for an allow the permits
/// that matched, for a deny the forbids that matched (none when nothing permitted the request).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Decision {
    pub allowed: bool,
    pub policy_ids: Vec<String>,
    pub erroring_policy_ids: Vec<String>,
    pub policy_set: [u8; 32],
}

/// One loaded, checked policy set.
pub struct Policies {
    schema: Schema,
    policies: PolicySet,
    principals: Arc<Principals>,
    hash: [u8; 32],
    files: Vec<(String, [u8; 32])>,
    types: Types,
}

/// Entity type names, parsed once.
struct Types {
    principal: EntityTypeName,
    role: EntityTypeName,
    account: EntityTypeName,
    transfer: EntityTypeName,
    review: EntityTypeName,
    ruleset: EntityTypeName,
    report: EntityTypeName,
    audit_log: EntityTypeName,
    api: EntityTypeName,
    actions: Vec<EntityUid>,
}

impl Types {
    fn new() -> Types {
        let name = |text: &str| EntityTypeName::from_str(text).expect("a constant entity type name parses");
        let action = name("Action");
        Types {
            principal: name("Principal"),
            role: name("Role"),
            account: name("Account"),
            transfer: name("Transfer"),
            review: name("Review"),
            ruleset: name("Ruleset"),
            report: name("Report"),
            audit_log: name("AuditLog"),
            api: name("Api"),
            actions: Action::ALL
                .iter()
                .map(|a| EntityUid::from_type_name_and_id(action.clone(), EntityId::new(a.as_str())))
                .collect(),
        }
    }

    fn uid(&self, type_name: &EntityTypeName, id: &str) -> EntityUid {
        EntityUid::from_type_name_and_id(type_name.clone(), EntityId::new(id))
    }

    fn action(&self, action: Action) -> EntityUid {
        let index = Action::ALL.iter().position(|a| *a == action).unwrap_or_default();
        self.actions[index].clone()
    }
}

impl Policies {
    /// Reads and checks the policy directory.
    pub fn load(dir: &Path) -> anyhow::Result<Policies> {
        let sources = load::Sources::read(dir)?;
        let (hash, files) = sources.hashes();
        let checked = load::check(&sources)?;
        Ok(Policies {
            schema: checked.schema,
            policies: checked.policies,
            principals: Arc::new(checked.principals),
            hash,
            files,
            types: Types::new(),
        })
    }

    pub fn principals(&self) -> &Arc<Principals> {
        &self.principals
    }

    pub fn hash(&self) -> [u8; 32] {
        self.hash
    }

    /// The audit event of this set taking effect.
    pub fn loaded_event(&self) -> audit::Event {
        audit::Event::PolicySetLoaded(audit::record::PolicySetLoaded {
            policy_set: self.hash,
            files: self.files.clone(),
        })
    }

    /// Decides whether `caller` may perform `action` on `resource` at `now`.
    pub fn decide(&self, caller: &Caller, action: Action, resource: &Resource, now: Timestamp) -> Decision {
        let deny_with_error = |reason: String| {
            tracing::error!(action = action.as_str(), %reason, "authorization request could not be built");
            Decision {
                allowed: false,
                policy_ids: Vec::new(),
                erroring_policy_ids: vec![format!("request: {reason}")],
                policy_set: self.hash,
            }
        };
        let (request, entities) = match self.request(caller, action, resource, now) {
            Ok(built) => built,
            Err(reason) => return deny_with_error(reason),
        };
        let response = cedar_policy::Authorizer::new().is_authorized(&request, &self.policies, &entities);
        let diagnostics = response.diagnostics();
        let erroring_policy_ids: Vec<String> = diagnostics
            .errors()
            .map(|error| match error {
                cedar_policy::AuthorizationError::PolicyEvaluationError(e) => e.policy_id().to_string(),
            })
            .collect();
        let allowed = response.decision() == cedar_policy::Decision::Allow && erroring_policy_ids.is_empty();
        Decision {
            allowed,
            policy_ids: diagnostics.reason().map(ToString::to_string).collect(),
            erroring_policy_ids,
            policy_set: self.hash,
        }
    }

    /// The Cedar request and the entities it needs: the acting principal with its roles and limits, and
    /// the resource with the accounts it refers to.
    fn request(
        &self,
        caller: &Caller,
        action: Action,
        resource: &Resource,
        now: Timestamp,
    ) -> Result<(Request, Entities), String> {
        let t = &self.types;
        let principal_uid = t.uid(&t.principal, &caller.principal.name);
        let mut entities = vec![self.principal_entity(&caller.principal)?];
        let resource_uid = match resource {
            Resource::Account(account) => self.account(account, &mut entities)?,
            Resource::Transfer(transfer) => self.transfer(transfer, &mut entities)?,
            Resource::Review(review) => {
                let transfer = self.transfer(&review.transfer, &mut entities)?;
                let uid = t.uid(&t.review, &review.transfer.id.to_string());
                let attrs = [
                    ("transfer".to_string(), RestrictedExpression::new_entity_uid(transfer)),
                    (
                        "initiator".to_string(),
                        RestrictedExpression::new_entity_uid(t.uid(&t.principal, &review.initiator)),
                    ),
                    (
                        "reason".to_string(),
                        RestrictedExpression::new_string(review.reason.clone()),
                    ),
                ];
                entities.push(
                    Entity::new(uid.clone(), attrs.into_iter().collect(), Default::default())
                        .map_err(|e| e.to_string())?,
                );
                uid
            }
            Resource::Ruleset { id, proposer } => {
                let uid = t.uid(&t.ruleset, id);
                let attrs = [(
                    "proposer".to_string(),
                    RestrictedExpression::new_entity_uid(t.uid(&t.principal, proposer)),
                )];
                entities.push(
                    Entity::new(uid.clone(), attrs.into_iter().collect(), Default::default())
                        .map_err(|e| e.to_string())?,
                );
                uid
            }
            Resource::Report(id) => t.uid(&t.report, id),
            Resource::AuditLog => t.uid(&t.audit_log, "log"),
            Resource::Api => t.uid(&t.api, "v1"),
        };
        let context = self.context(caller, now)?;
        let request = Request::new(
            principal_uid,
            t.action(action),
            resource_uid,
            context,
            Some(&self.schema),
        )
        .map_err(|e| e.to_string())?;
        // The entities are built here from typed facts, so they are not checked against the schema
        // again (a third of a decision's time); a wrong one could only make a policy fail, which denies.
        let entities = Entities::from_entities(entities, None).map_err(|e| e.to_string())?;
        Ok((request, entities))
    }

    fn principal_entity(&self, principal: &Principal) -> Result<Entity, String> {
        let t = &self.types;
        let roles = principal.roles.iter().map(|role| t.uid(&t.role, role));
        let tags = principal
            .approval_limits
            .iter()
            .map(|(currency, limit)| Ok((currency.clone(), RestrictedExpression::new_long(long(*limit)?))))
            .collect::<Result<Vec<_>, String>>()?;
        let attrs = [(
            "kind".to_string(),
            RestrictedExpression::new_string(principal.kind.as_str().to_string()),
        )];
        Entity::new_with_tags(t.uid(&t.principal, &principal.name), attrs, roles, tags).map_err(|e| e.to_string())
    }

    /// Adds the account's entity (a member of each principal that owns it) and returns its uid.
    fn account(&self, account: &AccountFacts, entities: &mut Vec<Entity>) -> Result<EntityUid, String> {
        let t = &self.types;
        let uid = t.uid(&t.account, &account.id.to_string());
        if entities.iter().any(|e| e.uid() == uid) {
            return Ok(uid);
        }
        let owners = std::iter::once(account.owner.as_str())
            .chain(self.principals.listed_owners(account.id).iter().map(String::as_str))
            .map(|owner| t.uid(&t.principal, owner));
        let attrs = [
            (
                "currency".to_string(),
                RestrictedExpression::new_string(account.currency.clone()),
            ),
            (
                "code".to_string(),
                RestrictedExpression::new_long(i64::from(account.code)),
            ),
        ];
        entities
            .push(Entity::new(uid.clone(), attrs.into_iter().collect(), owners.collect()).map_err(|e| e.to_string())?);
        Ok(uid)
    }

    fn transfer(&self, transfer: &TransferFacts, entities: &mut Vec<Entity>) -> Result<EntityUid, String> {
        let t = &self.types;
        let debit = self.account(&transfer.debit_account, entities)?;
        let credit = self.account(&transfer.credit_account, entities)?;
        let uid = t.uid(&t.transfer, &transfer.id.to_string());
        let attrs = [
            ("debit_account".to_string(), RestrictedExpression::new_entity_uid(debit)),
            (
                "credit_account".to_string(),
                RestrictedExpression::new_entity_uid(credit),
            ),
            (
                "amount_minor".to_string(),
                RestrictedExpression::new_long(long(transfer.amount_minor)?),
            ),
            (
                "currency".to_string(),
                RestrictedExpression::new_string(transfer.currency.clone()),
            ),
            ("held".to_string(), RestrictedExpression::new_bool(transfer.held)),
        ];
        entities.push(
            Entity::new(uid.clone(), attrs.into_iter().collect(), Default::default()).map_err(|e| e.to_string())?,
        );
        Ok(uid)
    }

    fn context(&self, caller: &Caller, now: Timestamp) -> Result<Context, String> {
        let local = chrono::DateTime::from_timestamp_micros(now.micros())
            .ok_or("the request time is out of range")?
            .with_timezone(&self.principals.business_utc_offset());
        let seconds = local.num_seconds_from_midnight();
        let authentication = RestrictedExpression::new_record([
            (
                "method".to_string(),
                RestrictedExpression::new_string(
                    if caller.front_end.is_some() {
                        "token"
                    } else {
                        "certificate"
                    }
                    .to_string(),
                ),
            ),
            ("mfa".to_string(), RestrictedExpression::new_bool(caller.mfa)),
        ])
        .map_err(|e| e.to_string())?;
        Context::from_pairs([
            ("authentication".to_string(), authentication),
            (
                "weekday".to_string(),
                RestrictedExpression::new_long(i64::from(local.weekday().number_from_monday())),
            ),
            (
                "time_of_day".to_string(),
                RestrictedExpression::new_duration(format!("{seconds}s")),
            ),
        ])
        .map_err(|e| e.to_string())
    }
}

fn long(value: u64) -> Result<i64, String> {
    i64::try_from(value).map_err(|_| format!("{value} does not fit a policy integer"))
}

/// The current policy set and token keys, each swapped whole on reload.
pub struct Authorizer {
    dir: PathBuf,
    token_settings: Option<TokenSettings>,
    current: ArcSwap<Policies>,
    tokens: ArcSwapOption<TokenVerifier>,
}

impl Authorizer {
    /// Loads the policy directory and, when configured, the JWKS file of front-end tokens.
    pub fn load(dir: &Path, token_settings: Option<TokenSettings>) -> anyhow::Result<Authorizer> {
        let policies = Policies::load(dir)?;
        let tokens = token_settings.as_ref().map(TokenVerifier::load).transpose()?;
        Ok(Authorizer {
            dir: dir.to_path_buf(),
            token_settings,
            current: ArcSwap::from_pointee(policies),
            tokens: ArcSwapOption::from(tokens.map(Arc::new)),
        })
    }

    pub fn current(&self) -> Arc<Policies> {
        self.current.load_full()
    }

    /// The verifier of front-end tokens; `None` when no JWKS file is configured.
    pub fn tokens(&self) -> Option<Arc<TokenVerifier>> {
        self.tokens.load_full()
    }

    /// Loads the policy directory and the JWKS file again. On success both replace the old ones at
    /// once and the new policy set is returned, unless it did not change (`None`); on any error
    /// nothing changes.
    pub fn reload(&self) -> anyhow::Result<Option<Arc<Policies>>> {
        let policies = Policies::load(&self.dir)?;
        let tokens = self.token_settings.as_ref().map(TokenVerifier::load).transpose()?;
        self.tokens.store(tokens.map(Arc::new));
        if policies.hash == self.current.load().hash {
            return Ok(None);
        }
        let policies = Arc::new(policies);
        self.current.store(policies.clone());
        Ok(Some(policies))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOON_WEDNESDAY: i64 = 1_800_000_000 - 2 * 86_400 + 4 * 3600; // 2027-01-13 12:00 UTC

    fn shipped() -> Policies {
        Policies::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("policies")).unwrap()
    }

    fn caller(policies: &Policies, name: &str, mfa: bool) -> Caller {
        Caller {
            principal: policies.principals().get(name).unwrap().clone(),
            certificate_sha256: "00".repeat(32),
            front_end: mfa.then(|| policies.principals().get("console").unwrap().clone()),
            mfa,
        }
    }

    fn account(id: u128, owner: &str) -> AccountFacts {
        AccountFacts {
            id: Uuid::from_u128(id),
            owner: owner.to_string(),
            currency: "USD".to_string(),
            code: 1,
        }
    }

    fn held(initiator: &str, credit_owner: &str) -> Resource {
        Resource::Review(ReviewFacts {
            transfer: TransferFacts {
                id: Uuid::from_u128(9),
                debit_account: account(1, "payments"),
                credit_account: account(2, credit_owner),
                amount_minor: 20_000_000,
                currency: "USD".to_string(),
                held: true,
            },
            initiator: initiator.to_string(),
            reason: "approval_limit".to_string(),
        })
    }

    fn at() -> Timestamp {
        Timestamp::from_micros(NOON_WEDNESDAY * 1_000_000)
    }

    #[test]
    fn nobody_approves_a_transfer_they_initiated() {
        let policies = shipped();
        let alice = caller(&policies, "alice", true);
        let own = policies.decide(&alice, Action::ReviewApprove, &held("alice", "orders"), at());
        assert!(!own.allowed);
        assert_eq!(own.policy_ids, ["maker-is-not-checker"]);
        let other = policies.decide(&alice, Action::ReviewApprove, &held("payments", "orders"), at());
        assert!(other.allowed, "{other:?}");
        assert_eq!(other.policy_set, policies.hash());
    }

    #[test]
    fn nobody_activates_a_ruleset_they_proposed() {
        let policies = shipped();
        let approver = caller(&policies, "analyst-b", true);
        let ruleset = |proposer: &str| Resource::Ruleset {
            id: "r1".to_string(),
            proposer: proposer.to_string(),
        };
        let own = policies.decide(&approver, Action::RulesActivate, &ruleset("analyst-b"), at());
        assert!(!own.allowed);
        assert_eq!(own.policy_ids, ["proposer-does-not-activate"]);
        assert!(
            policies
                .decide(&approver, Action::RulesActivate, &ruleset("analyst-a"), at())
                .allowed
        );
        let author = caller(&policies, "analyst-a", true);
        assert!(
            policies
                .decide(&author, Action::RulesPropose, &ruleset("analyst-a"), at())
                .allowed
        );
        assert!(
            !policies
                .decide(&author, Action::RulesActivate, &ruleset("analyst-b"), at())
                .allowed
        );
        let without_mfa = caller(&policies, "analyst-b", false);
        let decision = policies.decide(&without_mfa, Action::RulesActivate, &ruleset("analyst-a"), at());
        assert_eq!(decision.policy_ids, ["sensitive-actions-need-mfa"]);
    }

    #[test]
    fn a_policy_that_fails_to_evaluate_denies_even_when_another_permits() {
        let dir = tempfile::tempdir().unwrap();
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        for entry in std::fs::read_dir(&shipped).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
        }
        // Type-checks, but overflows at evaluation: Cedar skips it, and its permit would not matter.
        std::fs::write(
            dir.path().join("overflow.cedar"),
            "@id(\"overflowing\")\nforbid (principal, action == Action::\"api.describe\", resource)\n\
             when { context.weekday + 9223372036854775807 > 0 };\n",
        )
        .unwrap();
        let policies = Policies::load(dir.path()).unwrap();
        let payments = caller(&policies, "payments", false);
        let decision = policies.decide(&payments, Action::ApiDescribe, &Resource::Api, at());
        assert!(!decision.allowed);
        assert_eq!(decision.erroring_policy_ids, ["overflowing"]);
        assert!(shipped_allows_api_description());
    }

    fn shipped_allows_api_description() -> bool {
        let policies = shipped();
        let payments = caller(&policies, "payments", false);
        policies
            .decide(&payments, Action::ApiDescribe, &Resource::Api, at())
            .allowed
    }

    #[test]
    fn business_hours_are_read_in_the_configured_time_zone() {
        let policies = shipped();
        let alice = caller(&policies, "alice", true);
        let resource = held("payments", "orders");
        for (hour, allowed) in [(7, false), (8, true), (17, true), (18, false)] {
            let time = Timestamp::from_micros((NOON_WEDNESDAY + (hour - 12) * 3600) * 1_000_000);
            let decision = policies.decide(&alice, Action::ReviewApprove, &resource, time);
            assert_eq!(decision.allowed, allowed, "{hour}h: {decision:?}");
        }
        let bob = caller(&policies, "bob", true);
        let night = Timestamp::from_micros((NOON_WEDNESDAY + 10 * 3600) * 1_000_000);
        assert!(policies.decide(&bob, Action::ReviewApprove, &resource, night).allowed);
    }
}
