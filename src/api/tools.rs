//! `/tool/*`: the HTTP tools an assistant may call during a call (the seed's "tools attached to
//! extend its functionality"). Same envelope, auth and isolation as assistants.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::envelope::{Envelope, ok};
use super::error::ApiError;
use super::json::ApiJson;
use super::patch::{not_null, nullable, update_until_stored};
use super::path::ApiPath;
use crate::assistant::{
    BUILT_IN_TOOL_NAMES, HttpTool, TOOL_TIMEOUT_MS, ToolMethod, check_parameters_schema,
    is_function_name,
};
use crate::egress::AddressPolicy;
use crate::store::now_timestamp;
use crate::validation::Violations;

/// Body of `POST /tool/create`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTool {
    /// The function name the LLM calls: `[A-Za-z0-9_-]`, 1-64 characters, unique among the
    /// owner's tools, not `end_call`, `transfer_call` or `send_dtmf`.
    #[schema(required = true)]
    pub tool_name: Option<String>,
    /// What the tool does and when to call it (the model reads this).
    #[schema(required = true)]
    pub tool_description: Option<String>,
    /// JSON Schema of the arguments: an object schema.
    #[schema(required = true, value_type = Object)]
    pub tool_parameters: Option<Value>,
    /// Absolute http(s) URL called with the model's arguments.
    #[schema(required = true)]
    pub tool_url: Option<String>,
    /// `GET` (arguments as query parameters) or `POST`/`PUT`/`PATCH`/`DELETE` (arguments as a
    /// JSON body); default `POST`.
    pub tool_method: Option<ToolMethod>,
    /// Extra request headers, e.g. an Authorization header (masked in responses).
    pub tool_headers: Option<BTreeMap<String, String>>,
    /// How long to wait for the endpoint, 100-30000 ms (default 5000).
    pub tool_timeout_ms: Option<u32>,
}

/// Body of `PATCH /tool/update/{tool_id}`: any subset of the create fields.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTool {
    #[serde(default, deserialize_with = "nullable")]
    pub tool_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub tool_description: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Object>)]
    pub tool_parameters: Option<Option<Value>>,
    #[serde(default, deserialize_with = "nullable")]
    pub tool_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub tool_method: Option<Option<ToolMethod>>,
    #[serde(default, deserialize_with = "nullable")]
    pub tool_headers: Option<Option<BTreeMap<String, String>>>,
    #[serde(default, deserialize_with = "nullable")]
    pub tool_timeout_ms: Option<Option<u32>>,
}

/// `data` of a successful create.
#[derive(Debug, Serialize, ToSchema)]
pub struct ToolCreated {
    pub tool_id: String,
    pub tool_name: String,
}

/// `data` of a successful update or delete.
#[derive(Debug, Serialize, ToSchema)]
pub struct ToolId {
    pub tool_id: String,
}

/// A tool as responses show it (credential header values masked).
#[derive(Debug, Serialize, ToSchema)]
pub struct ToolDetails {
    pub tool_id: String,
    pub tool_name: String,
    pub tool_description: String,
    #[schema(value_type = Object)]
    pub tool_parameters: Value,
    pub tool_url: String,
    pub tool_method: ToolMethod,
    pub tool_headers: BTreeMap<String, String>,
    pub tool_timeout_ms: u32,
    pub tool_created_at: String,
    pub tool_updated_at: String,
}

impl ToolDetails {
    fn of(t: HttpTool) -> Self {
        Self {
            tool_headers: t.public_headers(),
            tool_id: t.id,
            tool_name: t.name,
            tool_description: t.description,
            tool_parameters: t.parameters,
            tool_url: t.url,
            tool_method: t.method,
            tool_timeout_ms: t.timeout_ms,
            tool_created_at: t.created_at,
            tool_updated_at: t.updated_at,
        }
    }
}

fn not_found() -> ApiError {
    ApiError::NotFound("Tool not found".to_owned())
}

fn name_taken(name: &str) -> ApiError {
    ApiError::Conflict(format!("A tool named {name:?} already exists"))
}

/// The rules every tool satisfies, created or patched. Blank required texts are reported where
/// the request is read.
fn check_tool(t: &HttpTool, egress: AddressPolicy, v: &mut Violations) {
    if !t.name.is_empty() {
        if !is_function_name(&t.name) {
            v.add(
                "tool_name",
                "must be 1-64 characters of A-Z, a-z, 0-9, _ or -",
            );
        } else if BUILT_IN_TOOL_NAMES.contains(&t.name.as_str()) {
            v.add("tool_name", format!("{:?} is a built-in tool", t.name));
        }
    }
    check_parameters_schema(&t.parameters, "tool_parameters", v);
    if !t.url.trim().is_empty()
        && let Err(why) = egress.check_url(&t.url)
    {
        v.add("tool_url", why);
    }
    for (name, value) in &t.headers {
        let valid_name = axum::http::HeaderName::from_bytes(name.as_bytes()).is_ok();
        let valid_value = axum::http::HeaderValue::from_str(value).is_ok();
        if !valid_name || !valid_value {
            v.add(
                format!("tool_headers.{name}"),
                "must be a valid HTTP header name and value",
            );
        }
    }
    if !(TOOL_TIMEOUT_MS.0..=TOOL_TIMEOUT_MS.1).contains(&t.timeout_ms) {
        v.add(
            "tool_timeout_ms",
            format!(
                "must be between {} and {}",
                TOOL_TIMEOUT_MS.0, TOOL_TIMEOUT_MS.1
            ),
        );
    }
}

#[utoipa::path(
    post, path = "/tool/create", operation_id = "tool_create", tag = "tools",
    request_body = CreateTool,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Tool created successfully", body = Envelope<ToolCreated>),
        (status = 400, description = "Invalid input data", body = Envelope<Value>),
        (status = 401, description = "Invalid or missing Bearer token", body = Envelope<Value>),
        (status = 409, description = "The tool name is already in use", body = Envelope<Value>),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    Caller(owner): Caller,
    ApiJson(body): ApiJson<CreateTool>,
) -> Result<Response, ApiError> {
    let mut v = Violations::new();
    v.required_text("tool_name", body.tool_name.as_deref());
    v.required_text("tool_description", body.tool_description.as_deref());
    v.required_text("tool_url", body.tool_url.as_deref());
    if body.tool_parameters.as_ref().is_none_or(Value::is_null) {
        v.add("tool_parameters", "is required (a JSON Schema object)");
    }
    let now = now_timestamp();
    let tool = HttpTool {
        id: uuid::Uuid::new_v4().to_string(),
        owner_id: owner.id,
        name: body.tool_name.unwrap_or_default(),
        description: body.tool_description.unwrap_or_default(),
        parameters: body
            .tool_parameters
            .unwrap_or(serde_json::json!({"type": "object"})),
        url: body.tool_url.unwrap_or_default(),
        method: body.tool_method.unwrap_or_default(),
        headers: body.tool_headers.unwrap_or_default(),
        timeout_ms: body.tool_timeout_ms.unwrap_or(TOOL_TIMEOUT_MS.2),
        created_at: now.clone(),
        updated_at: now,
    };
    check_tool(&tool, state.config.egress_policy(), &mut v);
    v.into_result().map_err(ApiError::Invalid)?;
    match state.store.insert_tool(&tool).await {
        Err(e) if e.is_unique_violation() => return Err(name_taken(&tool.name)),
        other => other?,
    }
    Ok(ok(
        "Tool created successfully",
        ToolCreated {
            tool_id: tool.id,
            tool_name: tool.name,
        },
    ))
}

#[utoipa::path(
    get, path = "/tool/list", operation_id = "tool_list", tag = "tools",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Tools retrieved successfully", body = Envelope<Vec<ToolDetails>>),
        (status = 401, description = "Invalid or missing Bearer token", body = Envelope<Value>),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Caller(owner): Caller,
) -> Result<Response, ApiError> {
    let tools: Vec<ToolDetails> = state
        .store
        .list_tools(&owner.id)
        .await?
        .into_iter()
        .map(ToolDetails::of)
        .collect();
    Ok(ok("Tools retrieved successfully", tools))
}

#[utoipa::path(
    get, path = "/tool/details/{tool_id}", operation_id = "tool_details", tag = "tools",
    params(("tool_id" = String, Path, description = "The UUID of the tool")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Tool details retrieved", body = Envelope<ToolDetails>),
        (status = 401, description = "Invalid or missing Bearer token", body = Envelope<Value>),
        (status = 404, description = "Tool does not exist or is deleted", body = Envelope<Value>),
    )
)]
pub async fn details(
    State(state): State<AppState>,
    Caller(owner): Caller,
    ApiPath(id): ApiPath,
) -> Result<Response, ApiError> {
    let tool = state
        .store
        .get_tool(&owner.id, &id)
        .await?
        .ok_or_else(not_found)?;
    Ok(ok(
        "Tool details retrieved successfully",
        ToolDetails::of(tool),
    ))
}

#[utoipa::path(
    patch, path = "/tool/update/{tool_id}", operation_id = "tool_update", tag = "tools",
    params(("tool_id" = String, Path, description = "The UUID of the tool to update")),
    request_body = UpdateTool,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Tool updated successfully", body = Envelope<ToolId>),
        (status = 400, description = "Invalid input data", body = Envelope<Value>),
        (status = 401, description = "Invalid or missing Bearer token", body = Envelope<Value>),
        (status = 404, description = "Tool does not exist", body = Envelope<Value>),
        (status = 409, description = "The tool name is already in use", body = Envelope<Value>),
    )
)]
pub async fn update(
    State(state): State<AppState>,
    Caller(owner): Caller,
    ApiPath(id): ApiPath,
    ApiJson(body): ApiJson<UpdateTool>,
) -> Result<Response, ApiError> {
    let (state, owner, id, body) = (&state, &owner, &id, &body);
    let updated = update_until_stored("tool", || async move {
        let stored = state
            .store
            .get_tool(&owner.id, id)
            .await?
            .ok_or_else(not_found)?;
        let updated = apply_update(&stored, body, state.config.egress_policy())?;
        match state.store.update_tool(&updated, &stored.updated_at).await {
            Err(e) if e.is_unique_violation() => Err(name_taken(&updated.name)),
            stored_now => Ok(stored_now?.then_some(updated)),
        }
    })
    .await?;
    Ok(ok(
        "Tool updated successfully",
        ToolId {
            tool_id: updated.id,
        },
    ))
}

fn apply_update(
    stored: &HttpTool,
    body: &UpdateTool,
    egress: AddressPolicy,
) -> Result<HttpTool, ApiError> {
    let mut v = Violations::new();
    let mut t = stored.clone();
    for (field, value, target) in [
        ("tool_name", &body.tool_name, &mut t.name),
        (
            "tool_description",
            &body.tool_description,
            &mut t.description,
        ),
        ("tool_url", &body.tool_url, &mut t.url),
    ] {
        if let Some(text) = not_null(field, value.clone(), &mut v) {
            v.required_text(field, Some(&text));
            *target = text;
        }
    }
    if let Some(parameters) = not_null("tool_parameters", body.tool_parameters.clone(), &mut v) {
        t.parameters = parameters;
    }
    if let Some(method) = body.tool_method {
        t.method = method.unwrap_or_default();
    }
    if let Some(headers) = &body.tool_headers {
        let mut headers = headers.clone().unwrap_or_default();
        HttpTool::keep_masked_headers_from(&mut headers, &stored.headers);
        t.headers = headers;
    }
    if let Some(timeout) = body.tool_timeout_ms {
        t.timeout_ms = timeout.unwrap_or(TOOL_TIMEOUT_MS.2);
    }
    t.updated_at = now_timestamp();
    check_tool(&t, egress, &mut v);
    v.into_result().map_err(ApiError::Invalid)?;
    Ok(t)
}

#[utoipa::path(
    delete, path = "/tool/delete/{tool_id}", operation_id = "tool_delete", tag = "tools",
    params(("tool_id" = String, Path, description = "The UUID of the tool to delete")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Tool deleted; it is detached from every assistant", body = Envelope<ToolId>),
        (status = 401, description = "Invalid or missing Bearer token", body = Envelope<Value>),
        (status = 404, description = "Tool does not exist or is already deleted", body = Envelope<Value>),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    Caller(owner): Caller,
    ApiPath(id): ApiPath,
) -> Result<Response, ApiError> {
    if !state
        .store
        .delete_tool(&owner.id, &id, &now_timestamp())
        .await?
    {
        return Err(not_found());
    }
    Ok(ok("Tool deleted successfully", ToolId { tool_id: id }))
}
