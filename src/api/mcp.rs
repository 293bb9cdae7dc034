//! MCP servers: `POST /mcp/create`, `GET /mcp/list`, `GET /mcp/details/{mcp_id}`,
//! `PATCH /mcp/update/{mcp_id}`, `DELETE /mcp/delete/{mcp_id}`. Owner-scoped like tools, their
//! credential headers masked, their URLs under the outbound-address policy.

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
use crate::egress::AddressPolicy;
use crate::mcp::McpServer;
use crate::store::now_timestamp;
use crate::validation::Violations;

/// Most headers an MCP server may be given.
const MAX_HEADERS: usize = 20;

/// Body of `POST /mcp/create`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateMcp {
    /// 1-100 characters; its tools are offered as `{name}__{tool}`.
    #[schema(required = true)]
    pub mcp_name: Option<String>,
    /// The server's streamable-HTTP endpoint (absolute http(s), under the outbound-address
    /// policy), e.g. `https://mcp.example.com/mcp`.
    #[schema(required = true)]
    pub mcp_url: Option<String>,
    /// Headers sent with every request, e.g. an Authorization header (masked in responses).
    pub mcp_headers: Option<BTreeMap<String, String>>,
}

/// Body of `PATCH /mcp/update/{mcp_id}`: any subset of the create fields; a masked header value
/// sent back keeps the stored one.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateMcp {
    #[serde(default, deserialize_with = "nullable")]
    pub mcp_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub mcp_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub mcp_headers: Option<Option<BTreeMap<String, String>>>,
}

/// `data` of a successful create.
#[derive(Debug, Serialize, ToSchema)]
pub struct McpCreated {
    pub mcp_id: String,
    pub mcp_name: String,
}

/// `data` of a successful update or delete.
#[derive(Debug, Serialize, ToSchema)]
pub struct McpId {
    pub mcp_id: String,
}

/// An MCP server as responses show it.
#[derive(Debug, Serialize, ToSchema)]
pub struct McpDetails {
    pub mcp_id: String,
    pub mcp_name: String,
    pub mcp_url: String,
    pub mcp_headers: BTreeMap<String, String>,
    pub mcp_created_at: String,
    pub mcp_updated_at: String,
}

impl McpDetails {
    fn of(m: McpServer) -> Self {
        Self {
            mcp_headers: m.public_headers(),
            mcp_id: m.id,
            mcp_name: m.name,
            mcp_url: m.url,
            mcp_created_at: m.created_at,
            mcp_updated_at: m.updated_at,
        }
    }
}

fn not_found() -> ApiError {
    ApiError::NotFound("MCP server not found".to_owned())
}

/// The rules every MCP server satisfies, created or patched.
fn check(m: &McpServer, egress: AddressPolicy, v: &mut Violations) {
    v.required_text("mcp_name", Some(&m.name));
    if !m.name.trim().is_empty() {
        v.char_length("mcp_name", &m.name, 1, 100);
    }
    v.required_text("mcp_url", Some(&m.url));
    if !m.url.trim().is_empty()
        && let Err(why) = egress.check_url(&m.url)
    {
        v.add("mcp_url", why);
    }
    if m.headers.len() > MAX_HEADERS {
        v.add(
            "mcp_headers",
            format!("must hold at most {MAX_HEADERS} headers"),
        );
    }
    for (name, value) in &m.headers {
        let valid_name = axum::http::HeaderName::from_bytes(name.as_bytes()).is_ok();
        let valid_value = axum::http::HeaderValue::from_str(value).is_ok();
        if !valid_name || !valid_value {
            v.add(
                format!("mcp_headers.{name}"),
                "must be a valid HTTP header name and value",
            );
        }
    }
}

#[utoipa::path(
    post, path = "/mcp/create", operation_id = "mcp_create", tag = "mcp",
    request_body = CreateMcp,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "MCP server created", body = Envelope<McpCreated>),
        (status = 400, description = "Invalid input", body = Envelope<Value>),
        (status = 401, description = "Invalid or missing Bearer token", body = Envelope<Value>),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    Caller(owner): Caller,
    ApiJson(body): ApiJson<CreateMcp>,
) -> Result<Response, ApiError> {
    let now = now_timestamp();
    let server = McpServer {
        id: uuid::Uuid::new_v4().to_string(),
        owner_id: owner.id,
        name: body.mcp_name.unwrap_or_default(),
        url: body.mcp_url.unwrap_or_default(),
        headers: body.mcp_headers.unwrap_or_default(),
        created_at: now.clone(),
        updated_at: now,
    };
    let mut v = Violations::new();
    check(&server, state.config.egress_policy(), &mut v);
    v.into_result().map_err(ApiError::Invalid)?;
    state.store.insert_mcp_server(&server).await?;
    Ok(ok(
        "MCP server created successfully",
        McpCreated {
            mcp_id: server.id,
            mcp_name: server.name,
        },
    ))
}

#[utoipa::path(
    get, path = "/mcp/list", operation_id = "mcp_list", tag = "mcp",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "MCP servers, newest first", body = Envelope<Vec<McpDetails>>),
        (status = 401, description = "Invalid or missing Bearer token", body = Envelope<Value>),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Caller(owner): Caller,
) -> Result<Response, ApiError> {
    let servers: Vec<McpDetails> = state
        .store
        .list_mcp_servers(&owner.id)
        .await?
        .into_iter()
        .map(McpDetails::of)
        .collect();
    Ok(ok("MCP servers retrieved successfully", servers))
}

#[utoipa::path(
    get, path = "/mcp/details/{mcp_id}", operation_id = "mcp_details", tag = "mcp",
    params(("mcp_id" = String, Path, description = "The MCP server id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "MCP server details", body = Envelope<McpDetails>),
        (status = 401, description = "Invalid or missing Bearer token", body = Envelope<Value>),
        (status = 404, description = "No such MCP server", body = Envelope<Value>),
    )
)]
pub async fn details(
    State(state): State<AppState>,
    Caller(owner): Caller,
    ApiPath(id): ApiPath,
) -> Result<Response, ApiError> {
    let server = state
        .store
        .get_mcp_server(&owner.id, &id)
        .await?
        .ok_or_else(not_found)?;
    Ok(ok(
        "MCP server details retrieved successfully",
        McpDetails::of(server),
    ))
}

#[utoipa::path(
    patch, path = "/mcp/update/{mcp_id}", operation_id = "mcp_update", tag = "mcp",
    params(("mcp_id" = String, Path, description = "The MCP server id")),
    request_body = UpdateMcp,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "MCP server updated", body = Envelope<McpId>),
        (status = 400, description = "Invalid input", body = Envelope<Value>),
        (status = 401, description = "Invalid or missing Bearer token", body = Envelope<Value>),
        (status = 404, description = "No such MCP server", body = Envelope<Value>),
    )
)]
pub async fn update(
    State(state): State<AppState>,
    Caller(owner): Caller,
    ApiPath(id): ApiPath,
    ApiJson(body): ApiJson<UpdateMcp>,
) -> Result<Response, ApiError> {
    let (state, owner, id, body) = (&state, &owner, &id, &body);
    let updated = update_until_stored("MCP server", || async move {
        let stored = state
            .store
            .get_mcp_server(&owner.id, id)
            .await?
            .ok_or_else(not_found)?;
        let mut v = Violations::new();
        let mut server = stored.clone();
        if let Some(name) = not_null("mcp_name", body.mcp_name.clone(), &mut v) {
            server.name = name;
        }
        if let Some(url) = not_null("mcp_url", body.mcp_url.clone(), &mut v) {
            server.url = url;
        }
        if let Some(headers) = &body.mcp_headers {
            let mut headers = headers.clone().unwrap_or_default();
            crate::assistant::HttpTool::keep_masked_headers_from(&mut headers, &stored.headers);
            server.headers = headers;
        }
        server.updated_at = now_timestamp();
        check(&server, state.config.egress_policy(), &mut v);
        v.into_result().map_err(ApiError::Invalid)?;
        let stored_now = state
            .store
            .update_mcp_server(&server, &stored.updated_at)
            .await?;
        Ok(stored_now.then_some(server))
    })
    .await?;
    Ok(ok(
        "MCP server updated successfully",
        McpId { mcp_id: updated.id },
    ))
}

#[utoipa::path(
    delete, path = "/mcp/delete/{mcp_id}", operation_id = "mcp_delete", tag = "mcp",
    params(("mcp_id" = String, Path, description = "The MCP server id")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "MCP server deleted; assistants stop offering its tools", body = Envelope<McpId>),
        (status = 401, description = "Invalid or missing Bearer token", body = Envelope<Value>),
        (status = 404, description = "No such MCP server", body = Envelope<Value>),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    Caller(owner): Caller,
    ApiPath(id): ApiPath,
) -> Result<Response, ApiError> {
    if !state.store.delete_mcp_server(&owner.id, &id).await? {
        return Err(not_found());
    }
    Ok(ok("MCP server deleted successfully", McpId { mcp_id: id }))
}
