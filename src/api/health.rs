//! Liveness and readiness probes for orchestrators: `/healthz` answers while the process serves,
//! `/readyz` only while the database answers too and the server is not draining (a load
//! balancer then stops sending it new calls while its live ones finish).

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
        (status = 503, description = "The database is not reachable, or the server is draining", body = Envelope<Value>),
    )
)]
pub async fn readyz(State(state): State<AppState>) -> Result<Response, ApiError> {
    if state.calls.live.draining() {
        return Err(ApiError::Unavailable(
            "This server is shutting down: it takes no new calls".to_owned(),
        ));
    }
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

/// New calls are refused while the server drains: a 503 that a client (or a load balancer's
/// retry) takes to another server.
pub(super) fn refuse_if_draining(state: &AppState) -> Result<(), ApiError> {
    if state.calls.live.draining() {
        return Err(ApiError::Unavailable(
            "This server is shutting down and takes no new calls; try again (another server will take it)"
                .to_owned(),
        ));
    }
    Ok(())
}
