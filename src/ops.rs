//! The plain-HTTP operations port: liveness and readiness for orchestrators, nothing else.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use sqlx::PgPool;

#[derive(Clone)]
struct OpsState {
    pool: PgPool,
}

pub fn router(pool: PgPool) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .with_state(OpsState { pool })
}

/// The process is up and serving.
async fn healthz() -> &'static str {
    "ok\n"
}

/// Ready to take traffic: the database answers.
async fn readyz(State(state): State<OpsState>) -> (StatusCode, &'static str) {
    match sqlx::query_scalar::<_, i32>("SELECT 1").fetch_one(&state.pool).await {
        Ok(_) => (StatusCode::OK, "ready\n"),
        Err(_) => (StatusCode::SERVICE_UNAVAILABLE, "database unavailable\n"),
    }
}
