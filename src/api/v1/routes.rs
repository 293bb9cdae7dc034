//! The eight routes of seed 001 under `/api/v1/assistant`. Every answer is the
//! [`ResponseWrapper`]; every route needs `x-user-id` (see [`V1Caller`]) and sees only that
//! user's assistants, except that an admin's `get-all` lists the whole tenant. A general
//! assistant is managed by get-or-create and `update-config` only: the routes named
//! "advanced" refuse it with a 400 rather than pretend it does not exist.

use axum::extract::rejection::PathRejection;
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::Value;

use super::edit::{self, Form};
use super::fields::{V1Body, list_query};
use super::identity::V1Caller;
use super::model::{AssistantResponse, GetAssistantsResponse};
use super::wrapper::{MessageResponse, ResponseWrapper, V1Error, answer, confirm};
use crate::api::AppState;
use crate::assistant::v1::{AssistantType, V1Assistant};
use crate::store::{GeneralAssistant, V1ListFilter, now_timestamp};
use crate::validation::has_control_characters;

/// How many times an update is re-applied when another one lands between its read and write.
const UPDATE_ROUNDS: usize = 5;

/// The path's parameters, refused in the wrapper when unreadable.
fn path_params<T>(path: Result<Path<T>, PathRejection>) -> Result<T, V1Error>
where
    T: AsRef<[String]>,
{
    let Path(params) =
        path.map_err(|rejection| V1Error::new(StatusCode::BAD_REQUEST, rejection.body_text()))?;
    if params.as_ref().iter().any(|p| has_control_characters(p)) {
        return Err(V1Error::not_found());
    }
    Ok(params)
}

fn advanced_only(a: &V1Assistant, what: &str) -> Result<(), V1Error> {
    if a.profile.assistant_type == AssistantType::GeneralAssistant {
        return Err(V1Error::new(
            StatusCode::BAD_REQUEST,
            format!("Only advanced assistants can be {what}; this is a general assistant"),
        ));
    }
    Ok(())
}

async fn own_assistant(
    state: &AppState,
    caller: &V1Caller,
    id: &str,
) -> Result<V1Assistant, V1Error> {
    state
        .store
        .get_v1_assistant(&caller.tenant.id, &caller.user_id, id)
        .await?
        .ok_or_else(V1Error::not_found)
}

#[utoipa::path(
    get, path = "/api/v1/assistant/get-all", operation_id = "v1_assistant_get_all", tag = "v1 assistants",
    params(
        ("x-user-id" = String, Header, description = "The user inside the API key's tenant"),
        ("x-user-role" = Option<String>, Header, description = "`admin` or `super_admin` lists every user's assistants of the tenant"),
        ("assistant_type" = Option<AssistantType>, Query, description = "`general_assistant` or `advanced_assistant`"),
        ("page_number" = Option<i64>, Query, description = "Page number, ≥ 1 (default 1)"),
        ("max_per_page" = Option<i64>, Query, description = "Items per page, 1-100 (default 10)"),
    ),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "A page of assistants, newest first", body = ResponseWrapper<GetAssistantsResponse>),
        (status = 400, description = "`Validation error - \"<field>\": <rule>`", body = ResponseWrapper<Value>),
        (status = 401, description = "Missing `x-user-id`, or missing or invalid API key", body = ResponseWrapper<Value>),
    )
)]
pub async fn get_all(
    State(state): State<AppState>,
    caller: V1Caller,
    RawQuery(query): RawQuery,
) -> Result<Response, V1Error> {
    let query = list_query(query.as_deref())?;
    let filter = V1ListFilter {
        user_id: (!caller.is_admin()).then(|| caller.user_id.clone()),
        assistant_type: query.assistant_type,
        limit: query.max_per_page,
        offset: (query.page_number - 1).saturating_mul(query.max_per_page),
    };
    let (assistants, total) = state
        .store
        .list_v1_assistants(&caller.tenant.id, &filter)
        .await?;
    let page = GetAssistantsResponse {
        assistants: assistants.iter().map(AssistantResponse::from).collect(),
        page_number: query.page_number,
        max_per_page: query.max_per_page,
        total_page: (total + query.max_per_page - 1) / query.max_per_page,
    };
    Ok(answer(StatusCode::OK, page))
}

#[utoipa::path(
    get, path = "/api/v1/assistant/get-or-create-general-assistant", operation_id = "v1_assistant_get_or_create_general", tag = "v1 assistants",
    params(("x-user-id" = String, Header, description = "The user inside the API key's tenant")),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The user's general assistant", body = ResponseWrapper<AssistantResponse>),
        (status = 201, description = "The user's general assistant, created by this call (one per user, even when first calls race)", body = ResponseWrapper<AssistantResponse>),
        (status = 401, description = "Missing `x-user-id`, or missing or invalid API key", body = ResponseWrapper<Value>),
    )
)]
pub async fn get_or_create_general(
    State(state): State<AppState>,
    caller: V1Caller,
) -> Result<Response, V1Error> {
    let fresh = edit::fresh(
        &state.config,
        &caller.tenant.id,
        &caller.user_id,
        AssistantType::GeneralAssistant,
    )?;
    Ok(match state.store.get_or_create_general(&fresh).await? {
        GeneralAssistant::Created(a) => answer(StatusCode::CREATED, AssistantResponse::from(&a)),
        GeneralAssistant::Existing(a) => answer(StatusCode::OK, AssistantResponse::from(&a)),
    })
}

#[utoipa::path(
    post, path = "/api/v1/assistant/create", operation_id = "v1_assistant_create", tag = "v1 assistants",
    params(("x-user-id" = String, Header, description = "The user inside the API key's tenant")),
    request_body(content = Object, description = "`CreateAdvancedAssistantRequest`, camelCase or snake_case: `name` (3-100), `description` (3-5000), `systemPrompt` (3-5000) required; `provider` (a provider this server knows, default `openai`), `modelName` (1-50, default the provider's), `temperature` (0-2, default 0.7), `askHuman`, `interrupt`, `supportUnits` (`WorkflowType`s), `mcpIds` (the tenant's MCP servers), `extensionIds` (the tenant's HTTP tools)"),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 201, description = "Assistant created", body = ResponseWrapper<AssistantResponse>),
        (status = 400, description = "`Validation error - \"<field>\": <rule>`; unknown providers and ids are named", body = ResponseWrapper<Value>),
        (status = 401, description = "Missing `x-user-id`, or missing or invalid API key", body = ResponseWrapper<Value>),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    caller: V1Caller,
    V1Body(body): V1Body,
) -> Result<Response, V1Error> {
    let changes = edit::read(&state, &caller.tenant.id, Form::Create, &body).await?;
    let mut assistant = edit::fresh(
        &state.config,
        &caller.tenant.id,
        &caller.user_id,
        AssistantType::AdvancedAssistant,
    )?;
    edit::apply(&state.config, &changes, &mut assistant);
    state.store.insert_v1_assistant(&assistant).await?;
    Ok(answer(
        StatusCode::CREATED,
        AssistantResponse::from(&assistant),
    ))
}

#[utoipa::path(
    get, path = "/api/v1/assistant/{assistant_id}/get-detail", operation_id = "v1_assistant_get_detail", tag = "v1 assistants",
    params(
        ("assistant_id" = String, Path, description = "The assistant's id"),
        ("x-user-id" = String, Header, description = "The user inside the API key's tenant"),
    ),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The assistant (general or advanced)", body = ResponseWrapper<AssistantResponse>),
        (status = 401, description = "Missing `x-user-id`, or missing or invalid API key", body = ResponseWrapper<Value>),
        (status = 404, description = "`Assistant not found` (also another user's, or soft-deleted)", body = ResponseWrapper<Value>),
    )
)]
pub async fn get_detail(
    State(state): State<AppState>,
    caller: V1Caller,
    path: Result<Path<[String; 1]>, PathRejection>,
) -> Result<Response, V1Error> {
    let [id] = path_params(path)?;
    let assistant = own_assistant(&state, &caller, &id).await?;
    Ok(answer(StatusCode::OK, AssistantResponse::from(&assistant)))
}

/// Applies a body's changes to the stored assistant until the write lands (another update in
/// between is re-read, never overwritten).
async fn update(
    state: &AppState,
    caller: &V1Caller,
    id: &str,
    form: Form,
    body: &[u8],
) -> Result<V1Assistant, V1Error> {
    let changes = edit::read(state, &caller.tenant.id, form, body).await?;
    for _ in 0..UPDATE_ROUNDS {
        let stored = own_assistant(state, caller, id).await?;
        if form == Form::UpdateAdvanced {
            advanced_only(&stored, "updated here (use update-config)")?;
        }
        let mut updated = stored.clone();
        edit::apply(&state.config, &changes, &mut updated);
        updated.core.updated_at = now_timestamp();
        if state
            .store
            .update_v1_assistant(&updated, &stored.core.updated_at)
            .await?
        {
            return Ok(updated);
        }
    }
    Err(V1Error::new(
        StatusCode::CONFLICT,
        "The assistant is being updated concurrently; retry",
    ))
}

#[utoipa::path(
    patch, path = "/api/v1/assistant/{assistant_id}/update-advanced-assistant", operation_id = "v1_assistant_update_advanced", tag = "v1 assistants",
    params(
        ("assistant_id" = String, Path, description = "The assistant's id"),
        ("x-user-id" = String, Header, description = "The user inside the API key's tenant"),
    ),
    request_body(content = Object, description = "`UpdateAdvancedAssistantRequest`: any of the create fields, same rules; lists replace the stored ones, new `supportUnits` rebuild the teams, a new `provider` without `modelName` takes the provider's default model"),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "The updated assistant", body = ResponseWrapper<AssistantResponse>),
        (status = 400, description = "`Validation error - ...`, or a general assistant (use update-config)", body = ResponseWrapper<Value>),
        (status = 401, description = "Missing `x-user-id`, or missing or invalid API key", body = ResponseWrapper<Value>),
        (status = 404, description = "`Assistant not found`", body = ResponseWrapper<Value>),
    )
)]
pub async fn update_advanced(
    State(state): State<AppState>,
    caller: V1Caller,
    path: Result<Path<[String; 1]>, PathRejection>,
    V1Body(body): V1Body,
) -> Result<Response, V1Error> {
    let [id] = path_params(path)?;
    let updated = update(&state, &caller, &id, Form::UpdateAdvanced, &body).await?;
    Ok(answer(StatusCode::OK, AssistantResponse::from(&updated)))
}

#[utoipa::path(
    patch, path = "/api/v1/assistant/{assistant_id}/update-config", operation_id = "v1_assistant_update_config", tag = "v1 assistants",
    params(
        ("assistant_id" = String, Path, description = "The assistant's id"),
        ("x-user-id" = String, Header, description = "The user inside the API key's tenant"),
    ),
    request_body(content = Object, description = "`UpdateAssistantConfigRequest`: `systemPrompt` (3-500), `provider`, `modelName`, `temperature`, `askHuman`, `interrupt`; general or advanced assistants"),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "`{\"message\": \"Assistant configuration updated successfully\"}`", body = ResponseWrapper<MessageResponse>),
        (status = 400, description = "`Validation error - ...`", body = ResponseWrapper<Value>),
        (status = 401, description = "Missing `x-user-id`, or missing or invalid API key", body = ResponseWrapper<Value>),
        (status = 404, description = "`Assistant not found`", body = ResponseWrapper<Value>),
    )
)]
pub async fn update_config(
    State(state): State<AppState>,
    caller: V1Caller,
    path: Result<Path<[String; 1]>, PathRejection>,
    V1Body(body): V1Body,
) -> Result<Response, V1Error> {
    let [id] = path_params(path)?;
    update(&state, &caller, &id, Form::UpdateConfig, &body).await?;
    Ok(confirm("Assistant configuration updated successfully"))
}

#[utoipa::path(
    delete, path = "/api/v1/assistant/{assistant_id}/soft-delete-advanced-assistant", operation_id = "v1_assistant_soft_delete", tag = "v1 assistants",
    params(
        ("assistant_id" = String, Path, description = "The assistant's id"),
        ("x-user-id" = String, Header, description = "The user inside the API key's tenant"),
    ),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "`{\"message\": \"Assistant soft deleted successfully\"}`; from now on only the hard delete sees it", body = ResponseWrapper<MessageResponse>),
        (status = 400, description = "A general assistant", body = ResponseWrapper<Value>),
        (status = 401, description = "Missing `x-user-id`, or missing or invalid API key", body = ResponseWrapper<Value>),
        (status = 404, description = "`Assistant not found`", body = ResponseWrapper<Value>),
    )
)]
pub async fn soft_delete(
    State(state): State<AppState>,
    caller: V1Caller,
    path: Result<Path<[String; 1]>, PathRejection>,
) -> Result<Response, V1Error> {
    let [id] = path_params(path)?;
    let stored = own_assistant(&state, &caller, &id).await?;
    advanced_only(&stored, "deleted")?;
    if !state
        .store
        .soft_delete_v1_assistant(&caller.tenant.id, &caller.user_id, &id, &now_timestamp())
        .await?
    {
        return Err(V1Error::not_found());
    }
    Ok(confirm("Assistant soft deleted successfully"))
}

#[utoipa::path(
    delete, path = "/api/v1/assistant/{user_id}/{assistant_id}/hard-delete-advanced-assistant", operation_id = "v1_assistant_hard_delete", tag = "v1 assistants",
    params(
        ("user_id" = String, Path, description = "Must be the caller's `x-user-id`"),
        ("assistant_id" = String, Path, description = "The assistant's id (soft-deleted ones too)"),
        ("x-user-id" = String, Header, description = "The user inside the API key's tenant"),
    ),
    security(("bearer" = []), ("api_key" = [])),
    responses(
        (status = 200, description = "`{\"message\": \"Assistant deleted successfully\"}`: the assistant, its teams and its chats are gone", body = ResponseWrapper<MessageResponse>),
        (status = 400, description = "A general assistant", body = ResponseWrapper<Value>),
        (status = 401, description = "Missing `x-user-id`, or missing or invalid API key", body = ResponseWrapper<Value>),
        (status = 403, description = "The path's user is not the caller", body = ResponseWrapper<Value>),
        (status = 404, description = "`Assistant not found`", body = ResponseWrapper<Value>),
    )
)]
pub async fn hard_delete(
    State(state): State<AppState>,
    caller: V1Caller,
    path: Result<Path<[String; 2]>, PathRejection>,
) -> Result<Response, V1Error> {
    let [user_id, id] = path_params(path)?;
    if user_id != caller.user_id {
        return Err(V1Error::new(
            StatusCode::FORBIDDEN,
            "The user in the path must be the authenticated user (x-user-id)",
        ));
    }
    let (tenant, user) = (&caller.tenant.id, &caller.user_id);
    match state
        .store
        .v1_assistant_type_any_state(tenant, user, &id)
        .await?
    {
        None => return Err(V1Error::not_found()),
        Some(AssistantType::GeneralAssistant) => {
            return Err(V1Error::new(
                StatusCode::BAD_REQUEST,
                "Only advanced assistants can be deleted; this is a general assistant",
            ));
        }
        Some(AssistantType::AdvancedAssistant) => {}
    }
    if !state
        .store
        .hard_delete_v1_assistant(tenant, user, &id)
        .await?
    {
        return Err(V1Error::not_found());
    }
    Ok(confirm("Assistant deleted successfully"))
}
