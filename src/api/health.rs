//! Liveness and readiness probes for orchestrators: `/healthz` answers while the process serves,
//! `/readyz` only while the database answers too.

use axum::extract::State;
use axum::response::Response;
use serde_json::{Value, json};

use super::AppState;
use super::envelope::{Envelope, ok};
use super::error::ApiError;

#[utoipa::path(
    get, path = "/healthz", tag = "health",
    responses((status = 200, description = "The server is alive", body = Envelope<Value>))
)]
pub async fn healthz() -> Response {
    ok("alive", json!({"status": "alive"}))
}

#[utoipa::path(
    get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "The database is reachable", body = Envelope<Value>),
        (status = 503, description = "The database is not reachable", body = Envelope<Value>),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> Result<Response, ApiError> {
    match state.store.ping().await {
        Ok(()) => Ok(ok(
            "ready",
            json!({"status": "ready", "database": "reachable"}),
        )),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            Err(ApiError::Unavailable(
                "Database is not reachable".to_owned(),
            ))
        }
    }
}
