//! /v1/fraud/rulesets: fraud rulesets proposed by rule authors and activated by a different
//! principal (the authorization policies enforce both), each identified by the SHA-256 of its files.
//! An activation is recorded, with its audit record, in one commit, and takes effect from the next
//! batch on here and within one poll interval on every other instance; the lists in effect are always
//! the policy files' (see [`crate::rules_in_effect`]).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::api::access::Access;
use crate::api::input::UnreadJson;
use crate::api::problem::{ApiCode, ApiError, Problem};
use crate::api::views::{rfc3339, rfc3339_utc};
use crate::api::{AppState, read};
use crate::authz::{Action, Resource};
use crate::fraud::{FEATURES_FILE, Files, RULES_FILE, Ruleset};
use crate::store::rulesets::{RulesetChange, StoredRuleset};

/// A new version of the rules (and optionally the features); the lists stay those of the ruleset in
/// effect.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProposeRuleset {
    /// The whole rules file (TOML, as policies/fraud/rules.toml).
    pub rules: String,
    /// The whole features file (TOML, as policies/fraud/features.toml); the current one when absent.
    pub features: Option<String>,
}

/// A ruleset and what became of it.
#[derive(Debug, Serialize, ToSchema)]
pub struct RulesetView {
    /// SHA-256 of its files, hex: the id screenings name.
    pub id: String,
    /// `active` (its rules screen every transfer now), `proposed` (never activated) or `retired`.
    pub status: String,
    pub proposed_by: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub proposed_front_end: Option<String>,
    pub proposed_at: String,
    /// Each activation: by whom and when, oldest first.
    pub activations: Vec<ActivationView>,
    /// The rules: id, version, mode and action of each.
    pub rules: Vec<RuleSummary>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ActivationView {
    pub activated_by: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub front_end: Option<String>,
    pub activated_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RuleSummary {
    pub id: String,
    pub version: u32,
    /// `enforce` or `shadow`.
    pub mode: String,
    /// `review` or `deny`.
    pub action: String,
}

/// The ruleset in effect and every ruleset proposed through the API.
#[derive(Debug, Serialize, ToSchema)]
pub struct RulesetList {
    /// The hash of the ruleset screening transfers now, which screenings' audit records name: the
    /// activated ruleset's (the policy files' until one is activated), with the policy files' lists.
    pub active: String,
    /// The id of the ruleset activated through the API that is in effect; absent while the policy
    /// files' rules are.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activated: Option<String>,
    pub data: Vec<RulesetView>,
}

fn view(stored: &StoredRuleset, activated: Option<[u8; 32]>) -> RulesetView {
    let rules_text = stored
        .files
        .iter()
        .find(|(name, _)| name == RULES_FILE)
        .map_or("", |(_, text)| text.as_str());
    let rules = crate::fraud::rule_headers(rules_text)
        .into_iter()
        .map(|rule| RuleSummary {
            id: rule.id,
            version: rule.version,
            mode: format!("{:?}", rule.mode).to_lowercase(),
            action: rule.action.as_str().to_string(),
        })
        .collect();
    let status = if activated == Some(stored.id) {
        "active"
    } else if stored.activations.is_empty() {
        "proposed"
    } else {
        "retired"
    };
    RulesetView {
        id: hex::encode(stored.id),
        status: status.to_string(),
        proposed_by: stored.proposed_by.clone(),
        proposed_front_end: stored.proposed_front_end.clone(),
        proposed_at: rfc3339_utc(stored.proposed_at),
        activations: stored
            .activations
            .iter()
            .map(|(by, front_end, at)| ActivationView {
                activated_by: by.clone(),
                front_end: front_end.clone(),
                activated_at: rfc3339_utc(*at),
            })
            .collect(),
        rules,
    }
}

async fn stored(state: &AppState, id: &[u8; 32]) -> Result<Option<StoredRuleset>, ApiError> {
    Ok(read(state.store.rulesets().await)?.into_iter().find(|r| &r.id == id))
}

#[utoipa::path(post, path = "/v1/fraud/rulesets", tag = "fraud",
    request_body = ProposeRuleset,
    responses(
        (status = 201, description = "Proposed: stored, not yet in effect", body = RulesetView),
        (status = 200, description = "The same files were proposed before (header Idempotent-Replay: true)", body = RulesetView),
        (status = 403, description = "Refused by policy (rule authors propose)", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The ruleset does not check: file, line, column and reason", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn propose(State(state): State<AppState>, access: Access, body: UnreadJson) -> Result<Response, ApiError> {
    access.require(Action::RulesPropose).await?;
    let body: ProposeRuleset = body.parse().await?;
    let mut files = state.rules.current().load().files().clone();
    files.insert(RULES_FILE.to_string(), body.rules);
    if let Some(features) = body.features {
        files.insert(FEATURES_FILE.to_string(), features);
    }
    // Who may propose is decided before the files are checked: checking is the costly part.
    let id = Ruleset::id_of(&files);
    let resource = Resource::Ruleset {
        id: hex::encode(id),
        proposer: access.principal().name.clone(),
    };
    access.authorize(Action::RulesPropose, &resource).await?;
    let ruleset = Ruleset::from_files_off_thread(files)
        .await
        .map_err(|error| ApiError::new(ApiCode::InvalidField, error))?;
    debug_assert_eq!(ruleset.hash(), id);
    let activated = state.rules.activated().await;
    if let Some(existing) = stored(&state, &id).await? {
        return Ok(replay(view(&existing, activated)));
    }
    let change = RulesetChange::Propose {
        id,
        files: ruleset.files().clone().into_iter().collect(),
    };
    access.ledger().record_ruleset(change).await?;
    let proposed = stored(&state, &id)
        .await?
        .ok_or_else(|| ApiError::internal(anyhow::anyhow!("a proposed ruleset was not stored")))?;
    Ok((StatusCode::CREATED, Json(view(&proposed, activated))).into_response())
}

/// A stored proposal, checked again (off the async workers).
async fn stored_ruleset(proposal: &StoredRuleset) -> Result<Ruleset, ApiError> {
    Ruleset::from_files_off_thread(proposal.files.iter().cloned().collect::<Files>())
        .await
        .map_err(|error| ApiError::internal(anyhow::anyhow!("stored ruleset does not check: {error}")))
}

fn replay(body: RulesetView) -> Response {
    let mut response = (StatusCode::OK, Json(body)).into_response();
    response
        .headers_mut()
        .insert("idempotent-replay", axum::http::HeaderValue::from_static("true"));
    response
}

fn parse_id(text: &str) -> Result<[u8; 32], ApiError> {
    hex::decode(text)
        .ok()
        .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
        .ok_or_else(|| ApiError::new(ApiCode::InvalidField, "id: not a ruleset id (64 hex digits)"))
}

#[utoipa::path(post, path = "/v1/fraud/rulesets/{id}/activate", tag = "fraud",
    params(("id" = String, Path, description = "The ruleset's id (SHA-256 of its files, hex)")),
    responses(
        (status = 201, description = "Active: screens every transfer from the next batch on", body = RulesetView),
        (status = 200, description = "Already the active ruleset (header Idempotent-Replay: true)", body = RulesetView),
        (status = 403, description = "Refused by policy (rule approvers activate, never their own proposal, with MFA)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such ruleset", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn activate(
    State(state): State<AppState>,
    access: Access,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = parse_id(&id)?;
    let proposal = stored(&state, &id)
        .await?
        .ok_or_else(|| ApiError::new(ApiCode::RulesetNotFound, format!("id: no ruleset {}", hex::encode(id))))?;
    let resource = Resource::Ruleset {
        id: hex::encode(id),
        proposer: proposal.proposed_by.clone(),
    };
    access.authorize(Action::RulesActivate, &resource).await?;
    if state.rules.activated().await == Some(id) {
        return Ok(replay(view(&proposal, Some(id))));
    }
    stored_ruleset(&proposal).await?;
    access.ledger().record_ruleset(RulesetChange::Activate { id }).await?;
    tracing::info!(ruleset = hex::encode(id), by = %access.principal().name, "fraud ruleset activated");
    state
        .rules
        .follow_activations(&state.ledger)
        .await
        .map_err(|error| ApiError::internal(error.context("the activation is recorded but not yet in effect here")))?;
    let activated = stored(&state, &id).await?.unwrap_or(proposal);
    Ok((
        StatusCode::CREATED,
        Json(view(&activated, state.rules.activated().await)),
    )
        .into_response())
}

#[utoipa::path(get, path = "/v1/fraud/rulesets", tag = "fraud",
    responses(
        (status = 200, description = "The active ruleset's id and every proposed ruleset", body = RulesetList),
        (status = 403, description = "Refused by policy", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn list(State(state): State<AppState>, access: Access) -> Result<Json<RulesetList>, ApiError> {
    let active = state.rules.current().load().hash();
    let resource = Resource::Ruleset {
        id: hex::encode(active),
        proposer: String::new(),
    };
    access.authorize(Action::RulesRead, &resource).await?;
    let rulesets = read(state.store.rulesets().await)?;
    let activated = state.rules.activated().await;
    Ok(Json(RulesetList {
        active: hex::encode(active),
        activated: activated.map(hex::encode),
        data: rulesets.iter().map(|r| view(r, activated)).collect(),
    }))
}

/// A backtest: a ruleset (a stored one by id, or the active one) over the transfers created in a time
/// range.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BacktestRequest {
    /// The ruleset to try (its id); the active one when absent.
    pub ruleset: Option<String>,
    /// RFC 3339: the first instant of the range.
    pub from: String,
    /// RFC 3339: the last instant of the range; now when absent.
    pub to: Option<String>,
}

/// What the ruleset would have decided, next to the active ruleset, for every transfer in the range.
#[derive(Debug, Serialize, ToSchema)]
pub struct BacktestView {
    pub ruleset: String,
    pub active: String,
    pub from: String,
    pub to: String,
    #[schema(value_type = Object)]
    pub report: crate::fraud::backtest::Report,
}

#[utoipa::path(post, path = "/v1/fraud/backtest", tag = "fraud",
    request_body = BacktestRequest,
    responses(
        (status = 200, description = "Per-rule hits with sample transfer ids, verdicts, and the changes from the active ruleset", body = BacktestView),
        (status = 403, description = "Refused by policy (fraud analysts backtest)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such ruleset", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid range", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn backtest(
    State(state): State<AppState>,
    access: Access,
    body: UnreadJson,
) -> Result<Json<BacktestView>, ApiError> {
    access.require(Action::RulesBacktest).await?;
    let body: BacktestRequest = body.parse().await?;
    let instant = |field: &str, text: &str| {
        chrono::DateTime::parse_from_rfc3339(text)
            .map(|t| ledger::Timestamp::from_micros(t.timestamp_micros()))
            .map_err(|e| ApiError::new(ApiCode::InvalidField, format!("{field}: not an RFC 3339 time ({e})")))
    };
    let from = instant("from", &body.from)?;
    let to = match &body.to {
        Some(text) => instant("to", text)?,
        None => (state.clock)(),
    };
    if from > to {
        return Err(ApiError::new(ApiCode::InvalidField, "from: after to"));
    }
    let active = state.rules.current().load_full();
    let proposal = match &body.ruleset {
        None => None,
        Some(id) => {
            let id = parse_id(id)?;
            let proposal = stored(&state, &id).await?.ok_or_else(|| {
                ApiError::new(
                    ApiCode::RulesetNotFound,
                    format!("ruleset: no ruleset {}", hex::encode(id)),
                )
            })?;
            Some(proposal)
        }
    };
    let resource = Resource::Ruleset {
        id: hex::encode(proposal.as_ref().map_or(active.hash(), |p| p.id)),
        proposer: proposal.as_ref().map(|p| p.proposed_by.clone()).unwrap_or_default(),
    };
    access.authorize(Action::RulesBacktest, &resource).await?;
    let candidate = match proposal {
        None => active.clone(),
        Some(proposal) => Arc::new(stored_ruleset(&proposal).await?),
    };
    let warm_from = ledger::Timestamp::from_micros(from.micros() - crate::fraud::features::WINDOW_MAX_S * 1_000_000);
    let mut run = crate::fraud::backtest::Backtest::new(&candidate, &active, from);
    read(
        state
            .store
            .replay_transfers(warm_from, to, |transfer, asked_pending, debit, credit| {
                run.transfer(transfer, asked_pending, debit, credit)
            })
            .await,
    )?;
    Ok(Json(BacktestView {
        ruleset: candidate.hash_hex(),
        active: active.hash_hex(),
        from: rfc3339(from),
        to: rfc3339(to),
        report: run.finish(),
    }))
}
