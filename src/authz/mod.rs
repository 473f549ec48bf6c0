//! Authorization: every API action is decided by the Cedar policies in the policy directory, for the
//! principal the request acts for, with facts the service looked up (account owners, the held state of
//! a transfer, who initiated it). Allow only when Cedar says Allow and no policy failed to evaluate
//! (Cedar skips a failing policy; here any failure denies).
//!
//! The policy set (schema, policies and principals file) is one immutable snapshot with a hash;
//! [`Authorizer::reload`] swaps a new one in atomically and keeps the old one on any error.

mod load;
pub mod token;

use std::collections::{HashMap, HashSet};
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
    EventRead,
    SettlementCreate,
    SettlementRead,
    ApiDescribe,
}

impl Action {
    pub const ALL: [Action; 19] = [
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
        Action::EventRead,
        Action::SettlementCreate,
        Action::SettlementRead,
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
            Action::EventRead => "event.read",
            Action::SettlementCreate => "settlement.create",
            Action::SettlementRead => "settlement.read",
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

/// A review as one of the reasons its transfer is held for: `reason`, among `reasons`, with who
/// approved a reason of it so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReviewFacts {
    pub transfer: TransferFacts,
    pub initiator: String,
    pub reason: String,
    pub reasons: Vec<String>,
    pub approvers: Vec<String>,
}

/// What an action is about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Resource {
    Account(AccountFacts),
    Transfer(TransferFacts),
    Review(ReviewFacts),
    Ruleset {
        id: String,
        proposer: String,
    },
    Report(String),
    AuditLog,
    /// The outbox's event stream.
    Events,
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

impl Decision {
    /// The audit record of this decision as a denial of `action` on `resource`.
    pub fn denial(&self, action: Action, resource: &Resource) -> audit::record::AccessDenied {
        audit::record::AccessDenied {
            action: action.as_str().to_string(),
            resource: resource.name(),
            policy_ids: self.policy_ids.clone(),
            erroring_policy_ids: self.erroring_policy_ids.clone(),
        }
    }
}

impl Resource {
    /// The resource as a Cedar entity reference, for audit records.
    pub fn name(&self) -> String {
        match self {
            Resource::Account(account) => format!("Account::\"{}\"", account.id),
            Resource::Transfer(transfer) => format!("Transfer::\"{}\"", transfer.id),
            Resource::Review(review) => format!("Review::\"{}\"", review.transfer.id),
            Resource::Ruleset { id, .. } => format!("Ruleset::{id:?}"),
            Resource::Report(id) => format!("Report::{id:?}"),
            Resource::AuditLog => "AuditLog::\"log\"".to_string(),
            Resource::Events => "EventStream::\"outbox\"".to_string(),
            Resource::Api => "Api::\"v1\"".to_string(),
        }
    }
}

/// One loaded, checked policy set.
pub struct Policies {
    /// The policies that can apply, per action in `Action::ALL` order, for each distinct set of roles
    /// in the principals file. A policy whose scope excludes the action or the caller's roles is never
    /// satisfied and cannot fail, so leaving it out changes no decision and spares evaluating it.
    by_roles: Vec<Vec<PolicySet>>,
    /// Per action only, for a caller this set does not list (resolved against an older set).
    by_action: Vec<PolicySet>,
    principals: Arc<Principals>,
    /// The accounts designated for settlement (settlement.toml).
    settlement_accounts: HashSet<Uuid>,
    /// Each principal's entity (roles and approval limits), built once per load, and the index of its
    /// roles in `by_roles`.
    principal_entities: HashMap<String, (Entity, usize)>,
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
    events: EntityTypeName,
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
            events: name("EventStream"),
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

    fn index(&self, action: Action) -> usize {
        Action::ALL.iter().position(|a| *a == action).unwrap_or_default()
    }

    fn action(&self, action: Action) -> EntityUid {
        self.actions[self.index(action)].clone()
    }
}

impl Policies {
    /// Reads and checks the policy directory.
    pub fn load(dir: &Path) -> anyhow::Result<Policies> {
        let sources = load::Sources::read(dir)?;
        let (hash, files) = sources.hashes();
        let checked = load::check(&sources)?;
        let types = Types::new();
        let per_action = |roles: Option<&[EntityUid]>| {
            types
                .actions
                .iter()
                .map(|action| policies_for(&checked, &types, action, roles))
                .collect::<anyhow::Result<Vec<_>>>()
        };
        let mut role_sets: HashMap<Vec<String>, usize> = HashMap::new();
        let mut by_roles = Vec::new();
        let mut principal_entities = HashMap::new();
        for principal in checked.principals.iter() {
            let mut roles = principal.roles.clone();
            roles.sort_unstable();
            roles.dedup();
            let index = match role_sets.get(&roles) {
                Some(index) => *index,
                None => {
                    let uids: Vec<EntityUid> = roles.iter().map(|role| types.uid(&types.role, role)).collect();
                    by_roles.push(per_action(Some(&uids))?);
                    role_sets.insert(roles, by_roles.len() - 1);
                    by_roles.len() - 1
                }
            };
            let entity = principal_entity(&types, principal)
                .map_err(|reason| anyhow::anyhow!("principal {}: {reason}", principal.name))?;
            principal_entities.insert(principal.name.clone(), (entity, index));
        }
        Ok(Policies {
            by_action: per_action(None)?,
            by_roles,
            settlement_accounts: checked.settlement_accounts,
            principals: Arc::new(checked.principals),
            principal_entities,
            hash,
            files,
            types,
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

    /// Whether some policy could permit `caller` to take `action` on some resource. When none could
    /// (the policies that apply to the caller's roles and the action hold no permit), the refusal's
    /// determining policies: the forbids that hold whatever the resource (no condition, any
    /// resource). A caller none could allow is refused before its request is read.
    pub fn may_ever(&self, caller: &Caller, action: Action) -> Result<(), Vec<String>> {
        let applicable = self.applicable(caller, action);
        if applicable
            .policies()
            .any(|policy| policy.effect() == cedar_policy::Effect::Permit)
        {
            return Ok(());
        }
        let mut forbids: Vec<String> = applicable
            .policies()
            .filter(|policy| {
                !policy.has_non_scope_constraint()
                    && policy.resource_constraint() == cedar_policy::ResourceConstraint::Any
                    && matches!(
                        policy.principal_constraint(),
                        cedar_policy::PrincipalConstraint::Any | cedar_policy::PrincipalConstraint::In(_)
                    )
            })
            .map(|policy| policy.id().to_string())
            .collect();
        forbids.sort_unstable();
        Err(forbids)
    }

    /// The policies that can apply to `caller` taking `action`.
    fn applicable(&self, caller: &Caller, action: Action) -> &PolicySet {
        let action_index = self.types.index(action);
        match self.principal_entities.get(&caller.principal.name) {
            Some((_, roles)) => &self.by_roles[*roles][action_index],
            None => &self.by_action[action_index],
        }
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
        let policies = self.applicable(caller, action);
        match self.request(caller, action, resource, now, None) {
            Ok((request, entities)) => self.evaluate(&request, policies, &entities),
            Err(reason) => deny_with_error(reason),
        }
    }

    /// Cedar's answer, denying when any policy failed to evaluate.
    fn evaluate(&self, request: &Request, policies: &PolicySet, entities: &Entities) -> Decision {
        let response = cedar_policy::Authorizer::new().is_authorized(request, policies, entities);
        let diagnostics = response.diagnostics();
        // Sorted: Cedar reports them in no fixed order, and they go into audit records.
        let mut erroring_policy_ids: Vec<String> = diagnostics
            .errors()
            .map(|error| match error {
                cedar_policy::AuthorizationError::PolicyEvaluationError(e) => e.policy_id().to_string(),
            })
            .collect();
        erroring_policy_ids.sort_unstable();
        let mut policy_ids: Vec<String> = diagnostics.reason().map(ToString::to_string).collect();
        policy_ids.sort_unstable();
        let allowed = response.decision() == cedar_policy::Decision::Allow && erroring_policy_ids.is_empty();
        Decision {
            allowed,
            policy_ids,
            erroring_policy_ids,
            policy_set: self.hash,
        }
    }

    /// The Cedar request and the entities it needs: the acting principal with its roles and limits, and
    /// the resource with the accounts it refers to. They are built from typed facts, so they are checked
    /// against `schema` only when one is given (the tests check every shape; at run time the check would
    /// be a third of a decision's time, and a wrong shape could only make a policy fail, which denies).
    fn request(
        &self,
        caller: &Caller,
        action: Action,
        resource: &Resource,
        now: Timestamp,
        schema: Option<&Schema>,
    ) -> Result<(Request, Entities), String> {
        let t = &self.types;
        let principal_uid = t.uid(&t.principal, &caller.principal.name);
        let principal = match self.principal_entities.get(&caller.principal.name) {
            Some((entity, _)) => entity.clone(),
            // A caller resolved against an older set that this one no longer lists.
            None => principal_entity(t, &caller.principal)?,
        };
        let mut entities = vec![principal];
        let resource_uid = match resource {
            Resource::Account(account) => self.account(account, &mut entities)?,
            Resource::Transfer(transfer) => self.transfer(transfer, &mut entities)?,
            Resource::Review(review) => {
                let transfer = self.transfer(&review.transfer, &mut entities)?;
                let uid = t.uid(&t.review, &review.transfer.id.to_string());
                let reasons = review.reasons.iter().cloned().map(RestrictedExpression::new_string);
                let approvers = review
                    .approvers
                    .iter()
                    .map(|name| RestrictedExpression::new_entity_uid(t.uid(&t.principal, name)));
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
                    ("reasons".to_string(), RestrictedExpression::new_set(reasons)),
                    ("approvers".to_string(), RestrictedExpression::new_set(approvers)),
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
            Resource::Events => t.uid(&t.events, "outbox"),
            Resource::Api => t.uid(&t.api, "v1"),
        };
        let context = self.context(caller, now)?;
        let request =
            Request::new(principal_uid, t.action(action), resource_uid, context, schema).map_err(|e| e.to_string())?;
        let entities = Entities::from_entities(entities, schema).map_err(|e| e.to_string())?;
        Ok((request, entities))
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
            (
                "settlement".to_string(),
                RestrictedExpression::new_bool(self.settlement_accounts.contains(&account.id)),
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
        let minute = local.num_seconds_from_midnight() / 60;
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
                "minute_of_day".to_string(),
                RestrictedExpression::new_long(i64::from(minute)),
            ),
        ])
        .map_err(|e| e.to_string())
    }
}

/// A principal's entity: a member of each of its roles, with its approval limits as tags.
fn principal_entity(t: &Types, principal: &Principal) -> Result<Entity, String> {
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

/// The policies whose scope admits `action` (`==` the action, or `in` it or an action group the schema
/// puts it in) and, when `roles` are given, a principal holding exactly those roles: `principal in
/// Role::"r"` holds only for a holder of r, as a principal's only ancestors are its roles and the
/// schema gives roles no parents (otherwise roles are not used to leave policies out).
fn policies_for(
    checked: &load::Checked,
    t: &Types,
    action: &EntityUid,
    roles: Option<&[EntityUid]>,
) -> anyhow::Result<PolicySet> {
    let actions = checked.schema.action_entities()?;
    let mut admitted: Vec<&EntityUid> = actions.ancestors(action).into_iter().flatten().collect();
    admitted.push(action);
    let roles_have_parents = checked
        .schema
        .ancestors(&t.role)
        .is_none_or(|mut parents| parents.next().is_some());
    let holds = |role: &EntityUid| match roles {
        Some(roles) if !roles_have_parents && role.type_name() == &t.role => roles.contains(role),
        _ => true,
    };
    let mut set = PolicySet::new();
    for policy in checked.policies.policies() {
        let action_applies = match policy.action_constraint() {
            cedar_policy::ActionConstraint::Any => true,
            cedar_policy::ActionConstraint::Eq(uid) => &uid == action,
            cedar_policy::ActionConstraint::In(uids) => uids.iter().any(|uid| admitted.contains(&uid)),
        };
        let principal_applies = match policy.principal_constraint() {
            cedar_policy::PrincipalConstraint::In(uid) | cedar_policy::PrincipalConstraint::IsIn(_, uid) => holds(&uid),
            _ => true,
        };
        if action_applies && principal_applies {
            set.add(policy.clone())?;
        }
    }
    Ok(set)
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

    /// A directory holding a copy of the shipped policy files (not the fraud rules), to change.
    fn shipped_files() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        for entry in std::fs::read_dir(&shipped).unwrap() {
            let entry = entry.unwrap();
            if entry.file_type().unwrap().is_file() {
                std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
            }
        }
        dir
    }

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
            reasons: vec!["approval_limit".to_string()],
            approvers: Vec::new(),
        })
    }

    fn at() -> Timestamp {
        Timestamp::from_micros(NOON_WEDNESDAY * 1_000_000)
    }

    /// Every request shape the service builds passes the schema, and deciding with only the policies
    /// that apply to the action gives the answer of the whole set, for every principal, action and kind
    /// of resource.
    #[test]
    fn requests_fit_the_schema_and_per_action_sets_decide_as_the_whole_set() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
        let policies = shipped();
        let checked = load::check(&load::Sources::read(&dir).unwrap()).unwrap();
        let mut transfer = match held("payments", "orders") {
            Resource::Review(review) => review.transfer,
            _ => unreachable!(),
        };
        transfer.held = false;
        let resources = [
            Resource::Account(account(1, "payments")),
            Resource::Transfer(transfer),
            held("payments", "orders"),
            held("alice", "bob"),
            Resource::Ruleset {
                id: "r1".to_string(),
                proposer: "analyst-a".to_string(),
            },
            Resource::Report("camt053".to_string()),
            Resource::AuditLog,
            Resource::Events,
            Resource::Api,
        ];
        let t = &policies.types;
        let (mut decided, mut allowed) = (0, 0);
        for principal in policies.principals().iter() {
            for mfa in [false, true] {
                let caller = caller(&policies, &principal.name, mfa);
                for action in Action::ALL {
                    let applies: Vec<&EntityTypeName> = checked
                        .schema
                        .resources_for_action(&t.action(action))
                        .unwrap()
                        .collect();
                    let mut shapes = 0;
                    for resource in &resources {
                        let Ok((request, entities)) =
                            policies.request(&caller, action, resource, at(), Some(&checked.schema))
                        else {
                            continue;
                        };
                        assert!(applies.contains(&request.resource().unwrap().type_name()));
                        shapes += 1;
                        let sliced = policies.decide(&caller, action, resource, at());
                        assert_eq!(
                            sliced,
                            policies.evaluate(&request, &checked.policies, &entities),
                            "{action:?} {resource:?}"
                        );
                        decided += 1;
                        allowed += sliced.allowed as usize;
                    }
                    assert!(shapes > 0, "no resource fits {action:?}");
                }
            }
        }
        assert!(allowed > 0 && allowed < decided, "{allowed} of {decided} allowed");
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
    fn each_reason_of_a_held_transfer_needs_its_own_decider() {
        let policies = shipped();
        let alice = caller(&policies, "alice", true);
        let Resource::Review(mut review) = held("payments", "orders") else {
            unreachable!()
        };
        review.reasons = vec!["approval_limit".to_string(), "fraud".to_string()];
        let decide = |review: &ReviewFacts| {
            policies.decide(&alice, Action::ReviewApprove, &Resource::Review(review.clone()), at())
        };
        assert!(decide(&review).allowed);
        review.approvers = vec!["alice".to_string()];
        let again = decide(&review);
        assert!(!again.allowed);
        assert_eq!(again.policy_ids, ["each-reason-its-own-decider"]);
        review.approvers = vec!["analyst-a".to_string()];
        assert!(decide(&review).allowed, "another decider approved the other reason");
    }

    #[test]
    fn only_accounts_designated_for_settlement_are_settled() {
        let dir = shipped_files();
        let merchant = account(7, "payments");
        std::fs::write(
            dir.path().join("settlement.toml"),
            format!("accounts = [\"{}\"]\n", merchant.id),
        )
        .unwrap();
        let policies = Policies::load(dir.path()).unwrap();
        let payouts = caller(&policies, "payouts", false);
        let settle = |account: &AccountFacts| {
            policies.decide(
                &payouts,
                Action::SettlementCreate,
                &Resource::Account(account.clone()),
                at(),
            )
        };
        assert!(settle(&merchant).allowed);
        let float = settle(&account(8, "payments"));
        assert!(!float.allowed);
        assert_eq!(float.policy_ids, ["only-designated-accounts-settle"]);
        let payments = caller(&policies, "payments", false);
        let by_owner = policies.decide(&payments, Action::SettlementCreate, &Resource::Account(merchant), at());
        assert!(!by_owner.allowed, "only settlement operators settle");
    }

    #[test]
    fn exports_are_for_compliance_and_auditors_with_mfa_only() {
        let policies = shipped();
        let report = Resource::Report("large-value-2027-01".to_string());
        let decide =
            |name: &str, mfa: bool| policies.decide(&caller(&policies, name, mfa), Action::ReportExport, &report, at());
        assert_eq!(decide("carol", true).policy_ids, ["compliance-exports-reports"]);
        assert!(decide("carol", true).allowed);
        assert!(decide("auditor", true).allowed);
        let without_mfa = decide("carol", false);
        assert!(!without_mfa.allowed);
        assert_eq!(without_mfa.policy_ids, ["sensitive-actions-need-mfa"]);
        let service = decide("payments", false);
        assert!(!service.allowed);
        assert_eq!(service.policy_ids, ["sensitive-actions-need-mfa"]);
        let analyst = decide("analyst-a", true);
        assert!(!analyst.allowed && analyst.policy_ids.is_empty(), "no permit matches");
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
        let dir = shipped_files();
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
