//! `GET /call/webhooks/{call_id}`: the end-of-call report's deliveries of a call (or a chat)
//! and every attempt made at them, oldest first: when, how long, what the receiver answered.
//! The call inspector shows them beside the transcript; call details carry only each
//! delivery's state.

use axum::extract::State;
use axum::response::Response;
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::calls::WebhookDelivery;
use super::envelope::{Envelope, ok};
use super::error::ApiError;
use super::path::ApiPath;
use crate::store::AttemptRecord;

/// One attempt at a delivery.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookAttempt {
    pub delivery_id: String,
    /// 1 for the first attempt.
    pub attempt: i64,
    pub started_at: String,
    pub duration_ms: i64,
    /// The receiver's HTTP status; null when it never answered (refused address, timeout).
    pub status_code: Option<i64>,
    /// `delivered`, `retry` (another attempt is due) or `failed` (for good).
    pub outcome: String,
    pub error: Option<String>,
}

impl From<AttemptRecord> for WebhookAttempt {
    fn from(a: AttemptRecord) -> Self {
        Self {
            delivery_id: a.delivery_id,
            attempt: a.attempt,
            started_at: a.started_at,
            duration_ms: a.duration_ms,
            status_code: a.status_code,
            outcome: a.outcome,
            error: a.error,
        }
    }
}

/// `data` of `GET /call/webhooks/{call_id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct CallWebhooks {
    pub deliveries: Vec<WebhookDelivery>,
    pub attempts: Vec<WebhookAttempt>,
}

#[utoipa::path(
    get, path = "/call/webhooks/{call_id}", operation_id = "call_webhooks", tag = "calls",
    params(("call_id" = String, Path, description = "The call (or chat) id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The call's webhook deliveries and their attempts", body = Envelope<CallWebhooks>),
        (status = 401, description = "Invalid or missing Bearer token", body = Envelope<Value>),
        (status = 404, description = "Call not found", body = Envelope<Value>),
    )
)]
pub async fn webhooks(
    State(state): State<AppState>,
    Caller(owner): Caller,
    ApiPath(id): ApiPath,
) -> Result<Response, ApiError> {
    let call = state
        .store
        .get_call(&owner.id, &id)
        .await?
        .ok_or_else(|| ApiError::NotFound("Call not found".to_owned()))?;
    let deliveries = state.store.call_webhooks(&call.id).await?;
    let attempts = state.store.call_webhook_attempts(&call.id).await?;
    let data = CallWebhooks {
        deliveries: deliveries.into_iter().map(WebhookDelivery::from).collect(),
        attempts: attempts.into_iter().map(WebhookAttempt::from).collect(),
    };
    Ok(ok("Webhook deliveries retrieved successfully", data))
}
