//! The one authorization step in front of every handler.
//!
//! The [`Access`] extractor names the caller: the principal of the verified client certificate, or,
//! when that principal is a trusted front-end (role `console`) presenting a Bearer token, the user the
//! token names (the front-end is kept too). Handlers then ask [`Access::authorize`] for the action and
//! the resource they are about to touch; a denial is recorded in the audit log and answered with 403
//! `forbidden` and the determining policy ids. The request-id middleware refuses any successful
//! answer of a handler that made no allowed decision, so a handler that forgets to ask fails closed.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use audit::record::AccessDenied;
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use ledger::Timestamp;

use crate::api::AppState;
use crate::api::problem::{ApiCode, ApiError};
use crate::authz::{Action, Decision, Policies, Resource};
use crate::identity::{Caller, PeerCertificate, PrincipalKind};
use crate::store::LedgerHandle;

/// The role of a front-end trusted to act for users with their tokens.
pub const FRONT_END_ROLE: &str = "console";

/// How a denial made before the request was read names its resource: any.
const ANY_RESOURCE: &str = "*";

/// Set once a handler's request was allowed; read by the request-id middleware.
#[derive(Clone, Default)]
pub struct Authorized(Arc<AtomicBool>);

impl Authorized {
    pub fn is_set(&self) -> bool {
        self.0.load(Ordering::Acquire)
    }
}

/// A request's caller, with the policy set and the time its decisions are made with.
pub struct Access {
    pub caller: Caller,
    policies: Arc<Policies>,
    ledger: LedgerHandle,
    now: Timestamp,
    authorized: Authorized,
}

impl FromRequestParts<AppState> for Access {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Access, ApiError> {
        let policies = state.authz.current();
        let now = (state.clock)();
        let certificate = parts
            .extensions
            .get::<PeerCertificate>()
            .ok_or_else(|| ApiError::new(ApiCode::UnknownPrincipal, "no client certificate on this connection"))?;
        let caller = policies
            .principals()
            .resolve(certificate)
            .map_err(|reason| ApiError::new(ApiCode::UnknownPrincipal, reason))?;
        let access = Access {
            caller,
            policies,
            ledger: state.ledger.clone(),
            now,
            authorized: parts.extensions.get::<Authorized>().cloned().unwrap_or_default(),
        };
        match parts.headers.get(AUTHORIZATION) {
            None => Ok(access),
            Some(value) => access.relayed(state, value.to_str().unwrap_or_default()).await,
        }
    }
}

impl Access {
    /// The caller a front-end's Bearer token names, with the front-end kept.
    async fn relayed(mut self, state: &AppState, header: &str) -> Result<Access, ApiError> {
        if !self.caller.principal.has_role(FRONT_END_ROLE) {
            let denial = AccessDenied {
                action: "token.relay".to_string(),
                resource: format!("Principal::{:?}", self.caller.principal.name),
                policy_ids: Vec::new(),
                erroring_policy_ids: Vec::new(),
            };
            self.record_denials(vec![denial]).await;
            return Err(ApiError::new(
                ApiCode::Forbidden,
                "authorization: only a trusted front-end (role console) may present a user's token",
            ));
        }
        let invalid = |reason: String| ApiError::new(ApiCode::InvalidToken, format!("authorization: {reason}"));
        let token = header
            .strip_prefix("Bearer ")
            .ok_or_else(|| invalid("expected \"Bearer <token>\"".to_string()))?;
        let verifier = state
            .authz
            .tokens()
            .ok_or_else(|| invalid("this service accepts no tokens (no JWKS file is configured)".to_string()))?;
        let claims = verifier
            .verify(token.trim(), self.now.micros() / 1_000_000)
            .map_err(invalid)?;
        let user = self
            .policies
            .principals()
            .get(&claims.subject)
            .filter(|principal| principal.kind == PrincipalKind::User)
            .ok_or_else(|| invalid(format!("the token's subject {:?} is not a known user", claims.subject)))?
            .clone();
        let front_end = std::mem::replace(&mut self.caller.principal, user);
        self.caller.front_end = Some(front_end);
        self.caller.mfa = claims.mfa;
        Ok(self)
    }

    /// The decision on `action` over `resource`; a denial is recorded and returned as 403.
    pub async fn authorize(&self, action: Action, resource: &Resource) -> Result<(), ApiError> {
        self.authorize_any(action, std::slice::from_ref(resource))
            .await
            .map(drop)
    }

    /// The first of `resources` (several views of one thing) that `action` is allowed on, by index; when
    /// none is, the denial of the first is recorded and returned as 403.
    pub async fn authorize_any(&self, action: Action, resources: &[Resource]) -> Result<usize, ApiError> {
        let mut first = None;
        for (index, resource) in resources.iter().enumerate() {
            let decision = self.decide(action, resource);
            if decision.allowed {
                self.authorized.0.store(true, Ordering::Release);
                return Ok(index);
            }
            first.get_or_insert((resource, decision));
        }
        let Some((resource, decision)) = first else {
            return Err(ApiError::internal(anyhow::anyhow!(
                "{}: nothing to authorize",
                action.as_str()
            )));
        };
        self.record_denials(vec![denial(action, resource, &decision)]).await;
        Err(forbidden(action, &decision))
    }

    /// Refuses, before anything of the request is read, a caller that no policy could ever allow to take
    /// `action` (on any resource); the refusal is recorded like any denial.
    pub async fn require(&self, action: Action) -> Result<(), ApiError> {
        let Err(policy_ids) = self.policies.may_ever(&self.caller, action) else {
            return Ok(());
        };
        let decision = Decision {
            allowed: false,
            policy_ids,
            erroring_policy_ids: Vec::new(),
            policy_set: self.policies.hash(),
        };
        let denial = AccessDenied {
            resource: ANY_RESOURCE.to_string(),
            ..decision.denial(action, &crate::authz::Resource::Api)
        };
        self.record_denials(vec![denial]).await;
        Err(forbidden(action, &decision))
    }

    /// The decision without recording it: for callers that decide many items and answer once.
    pub fn decide(&self, action: Action, resource: &Resource) -> Decision {
        self.policies.decide(&self.caller, action, resource, self.now)
    }

    /// Marks the request allowed after every one of its items was (see [`Access::decide`]).
    pub fn allowed_all(&self) {
        self.authorized.0.store(true, Ordering::Release);
    }

    /// Records denials (of one request, or of several items of one batch) in one commit, durably.
    pub async fn record_denials(&self, denials: Vec<AccessDenied>) {
        let events = denials.into_iter().map(audit::Event::AccessDenied).collect();
        if let Err(error) = self.ledger().record(events).await {
            tracing::error!(%error, "a denial could not be recorded in the audit log");
        }
    }

    /// The ledger, acting as this caller under this policy set, holding every transfer above the
    /// caller's approval limits for a second principal.
    pub fn ledger(&self) -> LedgerHandle {
        self.ledger
            .acting_as(self.actor())
            .initiated_by(self.caller.principal.clone())
    }

    /// This caller under this policy set, as audit records name it.
    pub fn actor(&self) -> audit::Actor {
        self.caller.actor(Some(self.policies.hash()))
    }

    pub fn principal(&self) -> &crate::identity::Principal {
        &self.caller.principal
    }
}

/// The audit record of a denial.
pub fn denial(action: Action, resource: &Resource, decision: &Decision) -> AccessDenied {
    decision.denial(action, resource)
}

/// The 403 answer to a denial: the determining policy ids, nothing else of the policies.
pub fn forbidden(action: Action, decision: &Decision) -> ApiError {
    let detail = if decision.policy_ids.is_empty() {
        format!("{}: no policy permits this request", action.as_str())
    } else {
        format!(
            "{}: forbidden by policy {}",
            action.as_str(),
            decision.policy_ids.join(", ")
        )
    };
    let mut error = ApiError::new(ApiCode::Forbidden, detail);
    error.policy_ids = decision.policy_ids.clone();
    error
}
