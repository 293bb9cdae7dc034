//! `POST /internal/v1/businesses/{business_id}/ai/sales_assistant_v2/invoke/v1`: the sales
//! assistant of seed 003, in the seed's own shapes. The seed is a gRPC service behind a JSON
//! gateway (camelCase fields that also accept their proto names — the seed itself sends
//! `input_events` —, enum names such as `USER`, "A successful response."), so this route
//! speaks as such a gateway does: the key in `x-api-key`, bare JSON bodies, and errors as
//! `google.rpc.Status`: `{"code": <gRPC code>, "message": "...", "details": []}` with the
//! matching HTTP status (400/3 INVALID_ARGUMENT naming the field, 401/16 UNAUTHENTICATED,
//! 404/5 NOT_FOUND, 502/14 UNAVAILABLE when the model fails, 500/13 INTERNAL).
//!
//! A request's `textContent` is a string, as in the seed; `{"text": "..."}` (the shape of a
//! response's `textContent`) is taken too, so a client can send back what it was answered.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use super::AppState;
use super::auth::KeyHeaderCaller;
use super::error::ApiError;
use super::json::ApiJson;
use super::path::ApiPath;
use crate::catalog::{BUSINESS_ID_RULE, Product, is_business_id};
use crate::sales::{
    self, InputMessage, MAX_INPUT_EVENTS, MAX_TEXT_CHARS, SalesError, SalesEvent, Start,
};

/// Body of the invoke route.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvokeRequest {
    /// Who answers: `agentDescriptorId` for a new session, or `stateId` to continue one.
    #[schema(required = true)]
    pub context: Option<InvokeContext>,
    /// Every event since the last call (also accepted as `input_events`), 1 to 100. An
    /// automated welcome message is an `ASSISTANT` message event.
    #[serde(rename = "inputEvents", alias = "input_events")]
    #[schema(required = true)]
    pub input_events: Option<Vec<InputEvent>>,
}

/// `context` of a request. System parameters for internal use only.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InvokeContext {
    /// One of the key owner's assistants: its prompt is the agent (a new session).
    #[serde(rename = "agentDescriptorId", alias = "agent_descriptor_id")]
    pub agent_descriptor_id: Option<String>,
    /// The `stateId` of an earlier response, to continue from it (any earlier one: an older
    /// state branches the conversation).
    #[serde(rename = "stateId", alias = "state_id")]
    pub state_id: Option<String>,
}

/// One input event.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct InputEvent {
    #[serde(rename = "messageEvent", alias = "message_event")]
    #[schema(required = true)]
    pub message_event: Option<MessageEventIn>,
}

/// A message of the shopper (`USER`) or one the shopper was shown (`ASSISTANT`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MessageEventIn {
    #[schema(required = true)]
    pub role: Option<MessageRole>,
    #[schema(required = true)]
    pub content: Option<ContentIn>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum MessageRole {
    User,
    Assistant,
}

/// A message's content.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ContentIn {
    /// The text, 1 to 10,000 characters (or `{"text": "..."}`).
    #[serde(rename = "textContent", alias = "text_content")]
    #[schema(required = true, value_type = String)]
    pub text_content: Option<Value>,
}

/// The answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct InvokeResponse {
    pub response: InvokeResult,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct InvokeResult {
    /// The new state: continue from it with `context.stateId`.
    pub state_id: String,
    /// The same through a whole conversation (and its branches).
    pub session_id: String,
    /// The assistant's messages and recommendations, in order.
    pub response_events: Vec<ResponseEvent>,
}

/// One response event: a message or a recommendation (one of the two fields).
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ResponseEvent {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_event: Option<MessageEventOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recommendation_event: Option<RecommendationEvent>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageEventOut {
    /// Always `ASSISTANT`.
    pub role: MessageRole,
    pub content: ContentOut,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ContentOut {
    pub text_content: TextContent,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TextContent {
    pub text: String,
}

/// Products the assistant recommends, as the catalog has them.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecommendationEvent {
    pub products: Vec<Product>,
}

/// The error body: a `google.rpc.Status`, as the seed's gateway answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct RpcStatus {
    /// The gRPC status code (3 INVALID_ARGUMENT, 5 NOT_FOUND, 16 UNAUTHENTICATED, ...).
    pub code: i32,
    pub message: String,
    #[schema(value_type = Vec<Object>)]
    pub details: Vec<Value>,
}

/// An error of this route: an HTTP status and a `google.rpc.Status`.
#[derive(Debug)]
pub struct RpcError {
    status: StatusCode,
    code: i32,
    message: String,
}

impl RpcError {
    fn invalid(message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            code: 3,
            message: message.into(),
        }
    }
}

impl From<ApiError> for RpcError {
    fn from(e: ApiError) -> Self {
        let status = e.status();
        let code = match status {
            StatusCode::BAD_REQUEST | StatusCode::UNSUPPORTED_MEDIA_TYPE => 3,
            StatusCode::UNAUTHORIZED => 16,
            StatusCode::NOT_FOUND => 5,
            StatusCode::METHOD_NOT_ALLOWED => 12,
            StatusCode::CONFLICT => 10,
            StatusCode::PAYLOAD_TOO_LARGE | StatusCode::TOO_MANY_REQUESTS => 8,
            StatusCode::BAD_GATEWAY | StatusCode::SERVICE_UNAVAILABLE => 14,
            _ => 13,
        };
        let message = match e {
            ApiError::Invalid(errors) => errors
                .iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect::<Vec<_>>()
                .join("; "),
            ApiError::Internal(cause) => {
                tracing::error!(%cause, "internal error answering a request");
                "internal error".to_owned()
            }
            other => other.to_string(),
        };
        Self {
            status,
            code,
            message,
        }
    }
}

impl From<SalesError> for RpcError {
    fn from(e: SalesError) -> Self {
        let (status, code) = match &e {
            SalesError::AgentNotFound(_) | SalesError::StateNotFound(_) => {
                (StatusCode::NOT_FOUND, 5)
            }
            SalesError::AgentMismatch { .. } => (StatusCode::BAD_REQUEST, 3),
            SalesError::Llm(_) => (StatusCode::BAD_GATEWAY, 14),
            SalesError::Store(_) => return ApiError::Internal(e.to_string()).into(),
        };
        Self {
            status,
            code,
            message: e.to_string(),
        }
    }
}

impl IntoResponse for RpcError {
    fn into_response(self) -> Response {
        let body = json!({"code": self.code, "message": self.message, "details": []});
        (self.status, Json(body)).into_response()
    }
}

#[utoipa::path(
    post, path = "/internal/v1/businesses/{business_id}/ai/sales_assistant_v2/invoke/v1",
    operation_id = "sales_assistant_invoke", tag = "sales",
    params(("business_id" = String, Path, description = "The business: its catalog is what the assistant searches and recommends")),
    request_body = InvokeRequest,
    security(("api_key" = [])),
    responses(
        (status = 200, description = "A successful response.", body = InvokeResponse),
        (status = 400, description = "INVALID_ARGUMENT (code 3): the message names the field", body = RpcStatus),
        (status = 401, description = "UNAUTHENTICATED (code 16): missing or invalid x-api-key", body = RpcStatus),
        (status = 404, description = "NOT_FOUND (code 5): unknown agentDescriptorId or stateId", body = RpcStatus),
        (status = 502, description = "UNAVAILABLE (code 14): the assistant's model failed; nothing was stored", body = RpcStatus),
    )
)]
pub async fn invoke(
    State(state): State<AppState>,
    caller: Result<KeyHeaderCaller, ApiError>,
    path: Result<ApiPath, ApiError>,
    body: Result<ApiJson<InvokeRequest>, ApiError>,
) -> Result<Response, RpcError> {
    let KeyHeaderCaller(owner) = caller?;
    let ApiPath(business_id) = path?;
    if !is_business_id(&business_id) {
        return Err(RpcError::invalid(format!("business_id {BUSINESS_ID_RULE}")));
    }
    let ApiJson(body) = body?;
    let context = body.context.unwrap_or(InvokeContext {
        agent_descriptor_id: None,
        state_id: None,
    });
    let present = |id: Option<String>| id.filter(|id| !id.trim().is_empty());
    let start = match (
        present(context.agent_descriptor_id),
        present(context.state_id),
    ) {
        (agent, Some(state_id)) => Start::State { state_id, agent },
        (Some(agent), None) => Start::Agent(agent),
        (None, None) => {
            return Err(RpcError::invalid(
                "context.agentDescriptorId or context.stateId is required",
            ));
        }
    };
    let inputs = input_messages(body.input_events)?;
    let answer = sales::invoke(&state.calls, &owner.id, &business_id, start, &inputs).await?;
    let response_events = answer
        .events
        .into_iter()
        .map(|event| match event {
            SalesEvent::Message(text) => ResponseEvent {
                message_event: Some(MessageEventOut {
                    role: MessageRole::Assistant,
                    content: ContentOut {
                        text_content: TextContent { text },
                    },
                }),
                recommendation_event: None,
            },
            SalesEvent::Recommendation(products) => ResponseEvent {
                message_event: None,
                recommendation_event: Some(RecommendationEvent { products }),
            },
        })
        .collect();
    let response = InvokeResponse {
        response: InvokeResult {
            state_id: answer.state_id,
            session_id: answer.session_id,
            response_events,
        },
    };
    Ok(Json(response).into_response())
}

/// The input events as messages, or the first rule one breaks.
fn input_messages(events: Option<Vec<InputEvent>>) -> Result<Vec<InputMessage>, RpcError> {
    let events = events.unwrap_or_default();
    if events.is_empty() {
        return Err(RpcError::invalid(
            "inputEvents is required: at least one event",
        ));
    }
    if events.len() > MAX_INPUT_EVENTS {
        return Err(RpcError::invalid(format!(
            "inputEvents holds {} events; at most {MAX_INPUT_EVENTS}",
            events.len()
        )));
    }
    let mut messages = Vec::with_capacity(events.len());
    for (i, event) in events.into_iter().enumerate() {
        let at = format!("inputEvents[{i}].messageEvent");
        let message = event
            .message_event
            .ok_or_else(|| RpcError::invalid(format!("{at} is required")))?;
        let role = message.role.ok_or_else(|| {
            RpcError::invalid(format!("{at}.role is required: USER or ASSISTANT"))
        })?;
        let text = match message.content.and_then(|c| c.text_content) {
            Some(Value::String(text)) => text,
            Some(Value::Object(mut content)) => match content.remove("text") {
                Some(Value::String(text)) if content.is_empty() => text,
                _ => {
                    return Err(RpcError::invalid(format!(
                        "{at}.content.textContent must be a string (or {{\"text\": string}})"
                    )));
                }
            },
            None => {
                return Err(RpcError::invalid(format!(
                    "{at}.content.textContent is required"
                )));
            }
            Some(_) => {
                return Err(RpcError::invalid(format!(
                    "{at}.content.textContent must be a string"
                )));
            }
        };
        if text.trim().is_empty() {
            return Err(RpcError::invalid(format!(
                "{at}.content.textContent must not be blank"
            )));
        }
        if text.chars().count() > MAX_TEXT_CHARS {
            return Err(RpcError::invalid(format!(
                "{at}.content.textContent must be at most {MAX_TEXT_CHARS} characters"
            )));
        }
        messages.push(InputMessage {
            role: match role {
                MessageRole::User => sales::Role::User,
                MessageRole::Assistant => sales::Role::Assistant,
            },
            text,
        });
    }
    Ok(messages)
}
