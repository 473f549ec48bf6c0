//! The OpenAPI document, generated from the handlers and types. The same document is committed as
//! openapi.json at the repository root; a test keeps the two identical.

use axum::Json;
use utoipa::OpenApi;

use crate::api::{accounts, audit, events, problem, reviews, rulesets, settlements, transfers, views};

#[derive(OpenApi)]
#[openapi(
    info(
        title = "finledger",
        description = "Double-entry ledger over mutual TLS. Every request needs a client certificate \
            naming a known principal. Amounts are decimal strings; times are RFC 3339 UTC; errors are \
            RFC 9457 problems with a stable `code`. A write with an id used before returns the original \
            result (200, `Idempotent-Replay: true`) or a 409 naming the differing field."
    ),
    paths(
        accounts::create,
        accounts::get,
        accounts::balances,
        accounts::transfers,
        transfers::create,
        transfers::batch,
        transfers::get,
        transfers::post_pending,
        transfers::void_pending,
        audit::transfer_proof,
        audit::checkpoint,
        audit::public_key,
        audit::records,
        audit::inclusion,
        audit::consistency,
        rulesets::list,
        rulesets::propose,
        rulesets::activate,
        rulesets::backtest,
        reviews::list,
        reviews::get,
        reviews::approve,
        reviews::reject,
        settlements::create,
        settlements::get,
        events::list,
        events::status,
        serve,
    ),
    components(schemas(
        problem::Problem,
        problem::ItemError,
        views::AccountView,
        views::TransferView,
        views::BalancesView,
        views::PendingView,
        views::AccountFlagsView,
        reviews::ReviewView,
        reviews::ReviewPage,
        settlements::CreateSettlement,
        settlements::SettlementView,
        events::EventView,
        events::EventPage,
        events::EventStatus,
        crate::outbox::relay::RelayReport,
        rulesets::ProposeRuleset,
        rulesets::RulesetView,
        rulesets::ActivationView,
        rulesets::RuleSummary,
        rulesets::RulesetList,
        rulesets::BacktestRequest,
        rulesets::BacktestView,
        accounts::CreateAccount,
        accounts::BalancesAt,
        accounts::TransferPage,
        transfers::CreateTransfer,
        transfers::PendingOptions,
        transfers::PostPending,
        transfers::VoidPending,
        transfers::BatchRequest,
        transfers::BatchResponse,
        transfers::ItemResult,
        transfers::ItemStatus,
        audit::RecordView,
        audit::RecordPage,
        audit::InclusionProofView,
        audit::ConsistencyProofView,
        audit::TransferProof,
        audit::ProvenRecord,
    )),
    modifiers(&EveryOperation),
    tags(
        (name = "accounts", description = "Accounts, balances and account history"),
        (name = "transfers", description = "Single, batched and two-phase transfers"),
        (name = "audit", description = "The tamper-evident audit log: signed checkpoints, records and proofs"),
        (name = "reviews", description = "Transfers held for a second principal's decision (four eyes), approved or rejected"),
        (name = "fraud", description = "Fraud rulesets: proposed by rule authors, activated by someone else"),
        (name = "settlements", description = "Settlement runs: a merchant account's movements netted to a cut-off and moved to payouts clearing"),
        (name = "events", description = "The ledger's events (the transactional outbox), read here when no Kafka broker carries them"),
        (name = "meta", description = "This document"),
    )
)]
pub struct ApiDoc;

/// Answers any operation can give, added to each: 401 for a front-end's invalid token, 403 when the
/// certificate names no known principal or the policies refuse the request, 405 for a method the path
/// does not take, 500 when the service fails (the cause is logged, never returned). Unknown paths get
/// 404 `not_found`.
struct EveryOperation;

impl utoipa::Modify for EveryOperation {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
        let problem = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/problem+json",
                    ContentBuilder::new()
                        .schema(Some(Ref::from_schema_name("Problem")))
                        .build(),
                )
                .build()
        };
        for item in openapi.paths.paths.values_mut() {
            let operations = [
                &mut item.get,
                &mut item.post,
                &mut item.put,
                &mut item.delete,
                &mut item.patch,
            ];
            for operation in operations.into_iter().flatten() {
                let responses = &mut operation.responses.responses;
                responses.entry("403".to_string()).or_insert_with(|| {
                    problem("Unknown principal (code unknown_principal), or refused by policy (code forbidden)").into()
                });
                responses.insert(
                    "401".to_string(),
                    problem("A front-end's token is missing, malformed, expired or not signed by a known key (code invalid_token)").into(),
                );
                responses.insert(
                    "405".to_string(),
                    problem("Method not allowed (code method_not_allowed)").into(),
                );
                responses.insert("500".to_string(), problem("Internal error (code internal)").into());
            }
        }
    }
}

/// The document as pretty-printed JSON, byte for byte what openapi.json holds.
pub fn document() -> String {
    let mut text = ApiDoc::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document always serializes");
    text.push('\n');
    text
}

#[utoipa::path(get, path = "/v1/openapi.json", tag = "meta",
    responses((status = 200, description = "This OpenAPI document", content_type = "application/json")))]
pub async fn serve(
    access: crate::api::access::Access,
) -> Result<Json<serde_json::Value>, crate::api::problem::ApiError> {
    access
        .authorize(crate::authz::Action::ApiDescribe, &crate::authz::Resource::Api)
        .await?;
    Ok(Json(
        serde_json::to_value(ApiDoc::openapi()).expect("the OpenAPI document always serializes"),
    ))
}
