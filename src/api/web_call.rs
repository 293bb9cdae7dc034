//! Browser calls: `POST /web-call/create` (Bearer auth) sets a call up exactly like an outbound
//! one (texts rendered from the metadata, the call stored with direction `web`) and answers a
//! short-lived, single-use session token; `GET /web-call/ws?token=…` is the call's media socket.
//! So a page's own backend holds the API key and hands the browser only the token.
//!
//! The token is stored as its SHA-256 and consumed atomically when the socket is upgraded: a
//! second use or an expired token gets close code 4001 before any provider is contacted.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::ws::WebSocket;
use axum::extract::{Query, State, WebSocketUpgrade};
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::envelope::{Envelope, ok};
use super::error::ApiError;
use super::health::refuse_if_draining;
use super::json::ApiJson;
use super::outbound::{call_metadata, insert_call_within_limit};
use crate::call::runner::{queue_report, run_call};
use crate::call::setup::{CallDraft, prepare_call};
use crate::store::{CallRecord, CallStatus, Direction};
use crate::tokens::token_hash;
use crate::transport::browser::{self, HandshakeError, MAX_MESSAGE_BYTES, Violation};
use crate::validation::Violations;

/// How long a web call's session token may wait for its socket.
pub const SESSION_TOKEN_TTL: Duration = Duration::from_secs(5 * 60);

/// Body of `POST /web-call/create`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebCallCreate {
    /// The caller's own active assistant.
    #[schema(required = true)]
    pub assistant_id: Option<String>,
    /// Values for the `{{key}}` placeholders of the prompt and start instruction.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<Value>,
}

/// `data` of a created web call.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebCallCreated {
    pub call_id: String,
    /// Single-use session token for the socket; shown only here.
    pub token: String,
    /// The socket to open (`ws(s)://…/web-call/ws?token=…`).
    pub ws_url: String,
    /// When the token stops working if unused (UTC, `2024-01-15T10:00:00.000000`).
    pub expires_at: String,
    /// Placeholders that had neither a metadata value nor a default (rendered empty).
    pub missing_variables: Vec<String>,
}

#[utoipa::path(
    post, path = "/web-call/create", operation_id = "web_call_create", tag = "calls",
    request_body = WebCallCreate,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Web call set up; open `ws_url` within five minutes", body = Envelope<WebCallCreated>),
        (status = 400, description = "Invalid input", body = Envelope<Value>),
        (status = 401, description = "Invalid or missing Bearer token", body = Envelope<Value>),
        (status = 404, description = "No active assistant with this id", body = Envelope<Value>),
        (status = 429, description = "Too many concurrent calls for this owner", body = Envelope<Value>),
        (status = 503, description = "This server is shutting down; another takes the call", body = Envelope<Value>),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    Caller(owner): Caller,
    ApiJson(body): ApiJson<WebCallCreate>,
) -> Result<Response, ApiError> {
    refuse_if_draining(&state)?;
    let mut v = Violations::new();
    v.required_text("assistant_id", body.assistant_id.as_deref());
    let metadata = call_metadata(&mut v, body.metadata);
    v.into_result().map_err(ApiError::Invalid)?;
    let assistant_id = body.assistant_id.unwrap_or_default();
    let assistant = state
        .store
        .get_assistant(&owner.id, &assistant_id)
        .await?
        .ok_or_else(|| ApiError::NotFound("Assistant not found".to_owned()))?;

    let prepared = prepare_call(CallDraft {
        assistant: &assistant,
        direction: Direction::Web,
        trunk_id: None,
        from_number: None,
        to_number: None,
        metadata,
        status: CallStatus::Queued,
        provider_call_sid: None,
        token_ttl: SESSION_TOKEN_TTL,
    });
    insert_call_within_limit(&state, &prepared.call).await?;
    let call = prepared.call;
    tracing::info!(call_id = call.id, assistant_id, "web call created");
    Ok(ok(
        "Web call created",
        WebCallCreated {
            ws_url: format!(
                "{}/web-call/ws?token={}",
                state.config.public_ws_base_url(),
                prepared.stream_token
            ),
            call_id: call.id,
            token: prepared.stream_token,
            expires_at: call.stream_token_expires_at.unwrap_or_default(),
            missing_variables: call.missing_variables,
        },
    ))
}

/// `GET /web-call/ws?token=…`: the browser's media socket.
pub async fn socket(
    State(state): State<AppState>,
    Query(query): Query<HashMap<String, String>>,
    upgrade: WebSocketUpgrade,
) -> Response {
    // Consumed before the upgrade: the token works once, whatever happens next.
    let call = match query.get("token") {
        Some(token) if !token.is_empty() => {
            match state.store.consume_web_token(&token_hash(token)).await {
                Ok(call) => call,
                Err(e) => {
                    tracing::error!(error = %e, "web session token check failed");
                    None
                }
            }
        }
        _ => None,
    };
    upgrade
        // Small buffers: a call holds this socket for minutes. Messages up to four times our
        // limit are read so that an oversized one is answered with 1009, not a dropped socket.
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
        .max_message_size(4 * MAX_MESSAGE_BYTES)
        .max_frame_size(4 * MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| stream(state, socket, call))
}

async fn stream(state: AppState, socket: WebSocket, call: Option<CallRecord>) {
    let Some(call) = call else {
        tracing::warn!("web call socket with an unknown, used or expired token closed");
        browser::refuse(socket, Violation::BadToken).await;
        return;
    };
    let (rate, source, sink) = match browser::accept(socket, &call.id).await {
        Ok(parts) => parts,
        Err(e) => {
            tracing::warn!(call_id = call.id, error = %e, "web call never started");
            let reason = match e {
                HandshakeError::Closed => "caller_hung_up",
                HandshakeError::Refused(_) => "protocol_error",
            };
            // The token is spent: the call is over before it began, and reports as such.
            let _ = state
                .store
                .advance_call_status(&call.id, CallStatus::Failed, Some(reason))
                .await;
            queue_report(&state.calls, &call.id).await;
            return;
        }
    };
    tracing::info!(call_id = call.id, rate, "web call started");
    run_call(state.calls.clone(), call, source, sink, None).await;
}
