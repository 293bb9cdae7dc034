//! The conversations API of seed 004: `POST /api/conversations/`, `PATCH` and `GET
//! /api/conversations/{id}/`, with or without the trailing slash. The seed is a Django REST
//! Framework service, so these routes answer as it would: bare JSON bodies, 201 on create, and
//! DRF's error shapes — `{"detail": "..."}`, or `{"<field>": ["..."]}` for invalid input —
//! rather than this server's envelope. Authentication is the Bearer key, as everywhere.

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::error::ApiError;
use super::json::ApiJson;
use super::path::ApiPath;
use crate::conversations::{self, ConversationError, MAX_MESSAGE_CHARS, case::Case, functions};

/// Body of `POST /api/conversations/`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateConversation {
    /// The bot's function: `customer_support`.
    #[schema(required = true)]
    pub function: Option<String>,
    /// Continue with a known person (a UUID); a new one when absent.
    pub human_user_id: Option<String>,
}

/// Body of `PATCH /api/conversations/{id}/`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConversationMessageIn {
    /// What the person says, 1 to 10,000 characters.
    #[schema(required = true)]
    pub message: Option<String>,
}

/// Answer of `POST /api/conversations/`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationCreated {
    pub conversation_id: String,
    pub bot_id: String,
    pub human_user_id: String,
}

/// Answer of `PATCH /api/conversations/{id}/`.
#[derive(Debug, Serialize, ToSchema)]
pub struct BotMessage {
    pub bot_message: String,
}

/// One message of a conversation.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationMessageOut {
    /// `human` or `bot`.
    pub role: String,
    pub message: String,
    pub created_at: String,
}

/// Answer of `GET /api/conversations/{id}/`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConversationDetails {
    pub conversation_id: String,
    pub bot_id: String,
    pub human_user_id: String,
    pub function: String,
    pub messages: Vec<ConversationMessageOut>,
    /// Every field of the function's case: its value, or null while not given.
    #[schema(value_type = Object)]
    pub case: Value,
    /// Every field of the case is known.
    pub complete: bool,
    pub completed_at: Option<String>,
    pub created_at: String,
    pub updated_at: String,
}

/// An error in Django REST Framework's shapes.
#[derive(Debug)]
pub struct DrfError {
    status: StatusCode,
    body: Value,
}

impl DrfError {
    fn field(field: &str, message: impl Into<String>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            body: json!({ field: [message.into()] }),
        }
    }
}

impl From<ApiError> for DrfError {
    fn from(e: ApiError) -> Self {
        let status = e.status();
        let body = match e {
            // A body that is not JSON at all: DRF's parse error.
            ApiError::Invalid(errors) if errors.iter().all(|e| e.field == "body") => {
                let why: Vec<String> = errors.into_iter().map(|e| e.message).collect();
                json!({ "detail": format!("JSON parse error - {}", why.join("; ")) })
            }
            ApiError::Invalid(errors) => {
                let mut fields: Map<String, Value> = Map::new();
                for error in errors {
                    let list = fields
                        .entry(error.field)
                        .or_insert_with(|| Value::Array(Vec::new()));
                    if let Value::Array(list) = list {
                        list.push(Value::String(error.message));
                    }
                }
                Value::Object(fields)
            }
            ApiError::Internal(cause) => {
                tracing::error!(%cause, "internal error answering a request");
                json!({ "detail": "A server error occurred." })
            }
            other => json!({ "detail": other.to_string() }),
        };
        Self { status, body }
    }
}

impl From<ConversationError> for DrfError {
    fn from(e: ConversationError) -> Self {
        let status = match &e {
            ConversationError::UnknownFunction(_) => {
                return DrfError::field("function", e.to_string());
            }
            ConversationError::NotFound => StatusCode::NOT_FOUND,
            ConversationError::Busy => StatusCode::CONFLICT,
            ConversationError::Llm(_) => StatusCode::BAD_GATEWAY,
            ConversationError::Store(_) => {
                return ApiError::Internal(e.to_string()).into();
            }
        };
        Self {
            status,
            body: json!({ "detail": e.to_string() }),
        }
    }
}

impl IntoResponse for DrfError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body)).into_response()
    }
}

#[utoipa::path(
    post, path = "/api/conversations/", operation_id = "conversation_create", tag = "conversations",
    request_body = CreateConversation,
    security(("bearer" = [])),
    responses(
        (status = 201, description = "Conversation created (also without the trailing slash)", body = ConversationCreated),
        (status = 400, description = "`{\"<field>\": [\"...\"]}`: an unknown function names the valid ones", body = Object),
        (status = 401, description = "`{\"detail\": \"...\"}`: missing or invalid Bearer key", body = Object),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    body: Result<ApiJson<CreateConversation>, ApiError>,
) -> Result<Response, DrfError> {
    let Caller(owner) = caller?;
    let ApiJson(body) = body?;
    let Some(function) = body.function.filter(|f| !f.trim().is_empty()) else {
        return Err(DrfError::field("function", "This field is required."));
    };
    if let Some(id) = &body.human_user_id
        && uuid::Uuid::parse_str(id).is_err()
    {
        return Err(DrfError::field("human_user_id", "Must be a valid UUID."));
    }
    let record =
        conversations::create(&state.calls, &owner.id, &function, body.human_user_id).await?;
    let created = ConversationCreated {
        conversation_id: record.id,
        bot_id: record.bot_id,
        human_user_id: record.human_user_id,
    };
    Ok((StatusCode::CREATED, Json(created)).into_response())
}

#[utoipa::path(
    patch, path = "/api/conversations/{conversation_id}/", operation_id = "conversation_message", tag = "conversations",
    params(("conversation_id" = String, Path, description = "The conversation id")),
    request_body = ConversationMessageIn,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The bot's answer (also without the trailing slash)", body = BotMessage),
        (status = 400, description = "`{\"message\": [\"...\"]}`", body = Object),
        (status = 401, description = "`{\"detail\": \"...\"}`", body = Object),
        (status = 404, description = "`{\"detail\": \"Not found.\"}`", body = Object),
        (status = 409, description = "A reply to this conversation is in progress", body = Object),
        (status = 502, description = "The bot's model failed (nothing was kept: send again)", body = Object),
    )
)]
pub async fn message(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    path: Result<ApiPath, ApiError>,
    body: Result<ApiJson<ConversationMessageIn>, ApiError>,
) -> Result<Response, DrfError> {
    let Caller(owner) = caller?;
    let ApiPath(id) = path?;
    let ApiJson(body) = body?;
    let message = match body.message {
        None => return Err(DrfError::field("message", "This field is required.")),
        Some(m) if m.trim().is_empty() => {
            return Err(DrfError::field("message", "This field may not be blank."));
        }
        Some(m) if m.chars().count() > MAX_MESSAGE_CHARS => {
            return Err(DrfError::field(
                "message",
                format!("Ensure this field has no more than {MAX_MESSAGE_CHARS} characters."),
            ));
        }
        Some(m) => m,
    };
    let bot_message = conversations::message(&state.calls, &owner.id, &id, &message).await?;
    Ok(Json(BotMessage { bot_message }).into_response())
}

#[utoipa::path(
    get, path = "/api/conversations/{conversation_id}/", operation_id = "conversation_details", tag = "conversations",
    params(("conversation_id" = String, Path, description = "The conversation id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The conversation, its messages and its case (also without the trailing slash)", body = ConversationDetails),
        (status = 401, description = "`{\"detail\": \"...\"}`", body = Object),
        (status = 404, description = "`{\"detail\": \"Not found.\"}`", body = Object),
    )
)]
pub async fn details(
    State(state): State<AppState>,
    caller: Result<Caller, ApiError>,
    path: Result<ApiPath, ApiError>,
) -> Result<Response, DrfError> {
    let Caller(owner) = caller?;
    let ApiPath(id) = path?;
    let record = state
        .store
        .get_conversation(&owner.id, &id)
        .await
        .map_err(ApiError::from)?
        .ok_or(ConversationError::NotFound)?;
    let template = functions::function(&record.function).ok_or(ConversationError::NotFound)?;
    let stored: Value = serde_json::from_str(&record.case_data).unwrap_or(Value::Null);
    let case = Case::from_value(template, &stored);
    let messages = state
        .store
        .conversation_messages(&record.id)
        .await
        .map_err(ApiError::from)?
        .into_iter()
        .map(|m| ConversationMessageOut {
            role: m.role,
            message: m.message,
            created_at: m.created_at,
        })
        .collect();
    let details = ConversationDetails {
        conversation_id: record.id,
        bot_id: record.bot_id,
        human_user_id: record.human_user_id,
        function: record.function,
        messages,
        complete: case.complete(),
        case: case.to_value(),
        completed_at: record.completed_at,
        created_at: record.created_at,
        updated_at: record.updated_at,
    };
    Ok(Json(details).into_response())
}
