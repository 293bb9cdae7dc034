//! `POST /assistant_builder/invoke` (seed 000): `{"input": "<description>"}` with one of our API
//! keys as `Integrations-API-Key` → `{"status": "success", "response": [{"message": "<system
//! prompt>", "type": "text"}], "invocationId": "<uuid>"}`, the prompt written by the server's
//! LLM (see [`crate::builder`]). Errors answer in the seed's shape too: `{"status": "error",
//! "message": "..."}` — 400 for a missing, empty or oversized input, 401 for the key, 502 when
//! the model fails or runs out of time.
//!
//! Beyond the seed, `"create": "voice"` or `"v1"` also stores an assistant with that prompt (a
//! voice assistant on the server's default voice, or a v1 advanced assistant of the
//! `x-user-id` user) and answers its id as `assistantId`.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::AppState;
use crate::assistant::{Assistant, CallSettings};
use crate::builder::{self, Built, MAX_INPUT_CHARS};
use crate::store::now_timestamp;
use crate::validation::has_control_characters;

/// The header that carries the API key, as the seed names it.
const KEY_HEADER: &str = "integrations-api-key";

/// One message of the answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct BuilderMessage {
    /// The system prompt written.
    pub message: String,
    /// Always `text`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// A successful invocation.
#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BuilderResponse {
    /// Always `success`.
    pub status: String,
    pub response: Vec<BuilderMessage>,
    pub invocation_id: String,
    /// With `create`: the id of the assistant created.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assistant_id: Option<String>,
    /// With `create`: `voice` or `v1`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assistant_type: Option<String>,
}

/// A failed invocation, in the seed's shape.
#[derive(Debug, Serialize, ToSchema)]
pub struct BuilderError {
    /// Always `error`.
    pub status: String,
    pub message: String,
    #[serde(skip)]
    code: StatusCode,
}

impl BuilderError {
    fn new(code: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status: "error".to_owned(),
            message: message.into(),
            code,
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(%cause, "internal error in the assistant builder");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
    }
}

impl From<crate::store::StoreError> for BuilderError {
    fn from(e: crate::store::StoreError) -> Self {
        Self::internal(e)
    }
}

impl IntoResponse for BuilderError {
    fn into_response(self) -> Response {
        (self.code, Json(self)).into_response()
    }
}

/// What to create beside the prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Create {
    Voice,
    V1,
}

/// The checked body.
struct Invocation {
    input: String,
    create: Option<Create>,
}

fn read_body(headers: &HeaderMap, body: &[u8]) -> Result<Invocation, BuilderError> {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|mime| mime.trim().eq_ignore_ascii_case("application/json"));
    if !is_json {
        return Err(BuilderError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Expected a JSON body with Content-Type: application/json",
        ));
    }
    let document: Value = serde_json::from_slice(body)
        .map_err(|e| BuilderError::bad_request(format!("The body is not valid JSON: {e}")))?;
    let Value::Object(fields) = document else {
        return Err(BuilderError::bad_request(
            "The body must be a JSON object: {\"input\": \"...\"}",
        ));
    };
    if let Some(unknown) = fields
        .keys()
        .find(|k| !["input", "create"].contains(&k.as_str()))
    {
        return Err(BuilderError::bad_request(format!(
            "Unknown field \"{unknown}\": the body takes \"input\" and, optionally, \"create\""
        )));
    }
    let input = match fields.get("input") {
        None | Some(Value::Null) => {
            return Err(BuilderError::bad_request("input is required"));
        }
        Some(Value::String(text)) => text.trim().to_owned(),
        Some(_) => return Err(BuilderError::bad_request("input must be a string")),
    };
    if input.is_empty() {
        return Err(BuilderError::bad_request("input must not be empty"));
    }
    let chars = input.chars().count();
    if chars > MAX_INPUT_CHARS {
        return Err(BuilderError::bad_request(format!(
            "input must be at most {MAX_INPUT_CHARS} characters (got {chars})"
        )));
    }
    if has_control_characters(&input) {
        return Err(BuilderError::bad_request(
            "input must not contain control characters",
        ));
    }
    let create = match fields.get("create") {
        None | Some(Value::Null) => None,
        Some(Value::String(kind)) if kind == "voice" => Some(Create::Voice),
        Some(Value::String(kind)) if kind == "v1" => Some(Create::V1),
        Some(_) => {
            return Err(BuilderError::bad_request(
                "create must be \"voice\" or \"v1\"",
            ));
        }
    };
    Ok(Invocation { input, create })
}

#[utoipa::path(
    post, path = "/assistant_builder/invoke", operation_id = "assistant_builder_invoke", tag = "assistant builder",
    params(("x-user-id" = Option<String>, Header, description = "With `\"create\": \"v1\"`: the user inside the key's tenant who owns the new assistant")),
    request_body(content = Object, description = "`{\"input\": \"<description, 1-2000 characters>\", \"create\": \"voice\" | \"v1\" (optional)}`"),
    security(("integrations_key" = [])),
    responses(
        (status = 200, description = "The system prompt written (and with `create`, the assistant's id)", body = BuilderResponse),
        (status = 400, description = "`{\"status\": \"error\", \"message\": ...}`: missing, empty or oversized input, bad `create`", body = BuilderError),
        (status = 401, description = "Missing or invalid `Integrations-API-Key`", body = BuilderError),
        (status = 502, description = "The model failed or did not finish in time; the message says why", body = BuilderError),
    )
)]
pub async fn invoke(State(state): State<AppState>, headers: HeaderMap, body: Bytes) -> Response {
    match answer(&state, &headers, &body).await {
        Ok(response) => Json(response).into_response(),
        Err(e) => e.into_response(),
    }
}

async fn answer(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<BuilderResponse, BuilderError> {
    let key = headers
        .get(KEY_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .ok_or_else(|| {
            BuilderError::new(
                StatusCode::UNAUTHORIZED,
                "Missing Integrations-API-Key header",
            )
        })?;
    let owner = state.store.owner_by_key(key).await?.ok_or_else(|| {
        BuilderError::new(
            StatusCode::UNAUTHORIZED,
            "Invalid or revoked Integrations-API-Key",
        )
    })?;
    let invocation = read_body(headers, body)?;
    let user_id = match invocation.create {
        Some(Create::V1) => Some(
            headers
                .get("x-user-id")
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|u| !u.is_empty() && !has_control_characters(u))
                .ok_or_else(|| {
                    BuilderError::bad_request(
                        "\"create\": \"v1\" needs the x-user-id header: the user who owns the \
                         new assistant",
                    )
                })?
                .to_owned(),
        ),
        _ => None,
    };
    let invocation_id = uuid::Uuid::new_v4().to_string();
    let built = builder::build(
        &state.config,
        &state.calls.http,
        &invocation.input,
        invocation.create.is_some(),
    )
    .await
    .map_err(|e| {
        tracing::warn!(%invocation_id, error = %e, "assistant builder failed");
        BuilderError::new(
            StatusCode::BAD_GATEWAY,
            format!("The assistant builder's model failed: {e}"),
        )
    })?;
    let created = match invocation.create {
        None => None,
        Some(kind) => Some(create(state, &owner.id, user_id.as_deref(), kind, &built).await?),
    };
    Ok(BuilderResponse {
        status: "success".to_owned(),
        response: vec![BuilderMessage {
            message: built.prompt,
            kind: "text".to_owned(),
        }],
        invocation_id,
        assistant_type: created.as_ref().map(|_| {
            match invocation.create {
                Some(Create::V1) => "v1",
                _ => "voice",
            }
            .to_owned()
        }),
        assistant_id: created,
    })
}

/// Stores the assistant the invocation asked for; answers its id.
async fn create(
    state: &AppState,
    tenant_id: &str,
    user_id: Option<&str>,
    kind: Create,
    built: &Built,
) -> Result<String, BuilderError> {
    let details = built
        .details
        .as_ref()
        .ok_or_else(|| BuilderError::internal("the builder wrote no details"))?;
    match kind {
        Create::Voice => {
            let tts = state
                .config
                .default_voice
                .tts()
                .map_err(|why| BuilderError::internal(format!("default_voice: {why}")))?;
            let now = now_timestamp();
            let assistant = Assistant {
                id: uuid::Uuid::new_v4().to_string(),
                owner_id: tenant_id.to_owned(),
                name: details.name.clone(),
                description: details.description.clone(),
                prompt: built.prompt.clone(),
                tts,
                start_instruction: Some(details.start_instruction.clone()),
                end_call_url: None,
                settings: CallSettings::default(),
                tool_ids: Vec::new(),
                created_at: now.clone(),
                updated_at: now,
            };
            state.store.insert_assistant(&assistant).await?;
            Ok(assistant.id)
        }
        Create::V1 => {
            let assistant = super::v1::advanced_from_texts(
                &state.config,
                tenant_id,
                user_id.unwrap_or_default(),
                &details.name,
                &details.description,
                &built.prompt,
            )
            .map_err(|e| BuilderError::new(e.status, e.message))?
            .ok_or_else(|| {
                BuilderError::new(
                    StatusCode::BAD_GATEWAY,
                    "The assistant builder's model wrote texts a v1 assistant does not take \
                     (a system prompt over 5000 characters)",
                )
            })?;
            state.store.insert_v1_assistant(&assistant).await?;
            Ok(assistant.core.id)
        }
    }
}
