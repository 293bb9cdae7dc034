//! `/phone_number/*`: numbers the owner routes to an assistant through a trunk. A number is
//! unique among active numbers of every owner (inbound calls are routed by it alone), so a clash
//! is a 409. The assistant and the trunk must be the caller's own and active when named; if they
//! are deleted later the number stays but stops routing calls.

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
use crate::store::now_timestamp;
use crate::telephony::PhoneNumber;
use crate::validation::Violations;

/// Body of `POST /phone_number/create`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePhoneNumber {
    /// E.164 (`+14155550100`), not active for any owner yet.
    #[schema(required = true)]
    pub phone_number: Option<String>,
    /// The caller's own active assistant that answers calls to this number.
    #[schema(required = true)]
    pub assistant_id: Option<String>,
    /// The caller's own active trunk the number belongs to.
    #[schema(required = true)]
    pub trunk_id: Option<String>,
}

/// Body of `PATCH /phone_number/update/{phone_number_id}`: any subset (none may be null).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdatePhoneNumber {
    #[serde(default, deserialize_with = "nullable")]
    pub phone_number: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub assistant_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub trunk_id: Option<Option<String>>,
}

/// `data` of a successful create.
#[derive(Debug, Serialize, ToSchema)]
pub struct PhoneNumberCreated {
    pub phone_number_id: String,
    pub phone_number: String,
}

/// `data` of a successful update or delete.
#[derive(Debug, Serialize, ToSchema)]
pub struct PhoneNumberId {
    pub phone_number_id: String,
}

/// A phone number as responses show it.
#[derive(Debug, Serialize, ToSchema)]
pub struct PhoneNumberDetails {
    pub phone_number_id: String,
    pub phone_number: String,
    pub assistant_id: String,
    pub trunk_id: String,
    pub phone_number_created_at: String,
    pub phone_number_updated_at: String,
}

impl PhoneNumberDetails {
    fn of(p: PhoneNumber) -> Self {
        Self {
            phone_number_id: p.id,
            phone_number: p.number,
            assistant_id: p.assistant_id,
            trunk_id: p.trunk_id,
            phone_number_created_at: p.created_at,
            phone_number_updated_at: p.updated_at,
        }
    }
}

fn not_found() -> ApiError {
    ApiError::NotFound("Phone number not found".to_owned())
}

fn number_taken(number: &str) -> ApiError {
    ApiError::Conflict(format!("The phone number {number} is already in use"))
}

/// The assistant and trunk must be the caller's own active ones; another owner's are "not
/// found" like everything else of theirs. Only references that changed are checked.
async fn check_references(
    state: &AppState,
    owner_id: &str,
    assistant_id: Option<&str>,
    trunk_id: Option<&str>,
) -> Result<(), ApiError> {
    let mut v = Violations::new();
    if let Some(id) = assistant_id
        && !state.store.owner_has_active_assistant(owner_id, id).await?
    {
        v.add(
            "assistant_id",
            format!("no active assistant with id {id:?}"),
        );
    }
    if let Some(id) = trunk_id
        && !state.store.owner_has_active_trunk(owner_id, id).await?
    {
        v.add("trunk_id", format!("no active trunk with id {id:?}"));
    }
    v.into_result().map_err(ApiError::Invalid)
}

#[utoipa::path(
    post, path = "/phone_number/create", operation_id = "phone_number_create", tag = "phone_numbers",
    request_body = CreatePhoneNumber,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Phone number created successfully", body = Envelope<PhoneNumberCreated>),
        (status = 400, description = "Invalid input data, or an unknown assistant or trunk", body = Envelope<Value>),
        (status = 401, description = "Invalid or missing Bearer token", body = Envelope<Value>),
        (status = 409, description = "The number is already in use", body = Envelope<Value>),
        (status = 500, description = "Internal server error", body = Envelope<Value>),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    Caller(owner): Caller,
    ApiJson(body): ApiJson<CreatePhoneNumber>,
) -> Result<Response, ApiError> {
    let mut v = Violations::new();
    v.required_text("phone_number", body.phone_number.as_deref());
    v.required_text("assistant_id", body.assistant_id.as_deref());
    v.required_text("trunk_id", body.trunk_id.as_deref());
    if let Some(number) = body.phone_number.as_deref()
        && !number.trim().is_empty()
    {
        v.e164("phone_number", number);
    }
    v.into_result().map_err(ApiError::Invalid)?;
    let now = now_timestamp();
    let number = PhoneNumber {
        id: uuid::Uuid::new_v4().to_string(),
        owner_id: owner.id,
        number: body.phone_number.unwrap_or_default(),
        assistant_id: body.assistant_id.unwrap_or_default(),
        trunk_id: body.trunk_id.unwrap_or_default(),
        created_at: now.clone(),
        updated_at: now,
    };
    check_references(
        &state,
        &number.owner_id,
        Some(&number.assistant_id),
        Some(&number.trunk_id),
    )
    .await?;
    match state.store.insert_phone_number(&number).await {
        Err(e) if e.is_unique_violation() => return Err(number_taken(&number.number)),
        other => other?,
    }
    Ok(ok(
        "Phone number created successfully",
        PhoneNumberCreated {
            phone_number_id: number.id,
            phone_number: number.number,
        },
    ))
}

#[utoipa::path(
    get, path = "/phone_number/list", operation_id = "phone_number_list", tag = "phone_numbers",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Phone numbers retrieved successfully", body = Envelope<Vec<PhoneNumberDetails>>),
        (status = 401, description = "Invalid or missing Bearer token", body = Envelope<Value>),
        (status = 500, description = "Internal server error", body = Envelope<Value>),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Caller(owner): Caller,
) -> Result<Response, ApiError> {
    let numbers: Vec<PhoneNumberDetails> = state
        .store
        .list_phone_numbers(&owner.id)
        .await?
        .into_iter()
        .map(PhoneNumberDetails::of)
        .collect();
    Ok(ok("Phone numbers retrieved successfully", numbers))
}

#[utoipa::path(
    get, path = "/phone_number/details/{phone_number_id}", operation_id = "phone_number_details", tag = "phone_numbers",
    params(("phone_number_id" = String, Path, description = "The UUID of the phone number")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Phone number details retrieved", body = Envelope<PhoneNumberDetails>),
        (status = 401, description = "Invalid or missing Bearer token", body = Envelope<Value>),
        (status = 404, description = "Phone number does not exist or is deleted", body = Envelope<Value>),
        (status = 500, description = "Internal server error", body = Envelope<Value>),
    )
)]
pub async fn details(
    State(state): State<AppState>,
    Caller(owner): Caller,
    ApiPath(id): ApiPath,
) -> Result<Response, ApiError> {
    let number = state
        .store
        .get_phone_number(&owner.id, &id)
        .await?
        .ok_or_else(not_found)?;
    Ok(ok(
        "Phone number details retrieved successfully",
        PhoneNumberDetails::of(number),
    ))
}

#[utoipa::path(
    patch, path = "/phone_number/update/{phone_number_id}", operation_id = "phone_number_update", tag = "phone_numbers",
    params(("phone_number_id" = String, Path, description = "The UUID of the phone number to update")),
    request_body = UpdatePhoneNumber,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Phone number updated successfully", body = Envelope<PhoneNumberId>),
        (status = 400, description = "Invalid input data, or an unknown assistant or trunk", body = Envelope<Value>),
        (status = 401, description = "Invalid or missing Bearer token", body = Envelope<Value>),
        (status = 404, description = "Phone number does not exist", body = Envelope<Value>),
        (status = 409, description = "The number is already in use", body = Envelope<Value>),
        (status = 500, description = "Internal server error", body = Envelope<Value>),
    )
)]
pub async fn update(
    State(state): State<AppState>,
    Caller(owner): Caller,
    ApiPath(id): ApiPath,
    ApiJson(body): ApiJson<UpdatePhoneNumber>,
) -> Result<Response, ApiError> {
    let (state, owner, id, body) = (&state, &owner, &id, &body);
    let updated = update_until_stored("phone number", || async move {
        let stored = state
            .store
            .get_phone_number(&owner.id, id)
            .await?
            .ok_or_else(not_found)?;
        let updated = apply_update(&stored, body)?;
        check_references(
            state,
            &owner.id,
            changed(&updated.assistant_id, &stored.assistant_id),
            changed(&updated.trunk_id, &stored.trunk_id),
        )
        .await?;
        match state
            .store
            .update_phone_number(&updated, &stored.updated_at)
            .await
        {
            Err(e) if e.is_unique_violation() => Err(number_taken(&updated.number)),
            stored_now => Ok(stored_now?.then_some(updated)),
        }
    })
    .await?;
    Ok(ok(
        "Phone number updated successfully",
        PhoneNumberId {
            phone_number_id: updated.id,
        },
    ))
}

/// The new value of a reference, when it differs from the stored one.
fn changed<'a>(new: &'a str, old: &str) -> Option<&'a str> {
    (new != old).then_some(new)
}

fn apply_update(stored: &PhoneNumber, body: &UpdatePhoneNumber) -> Result<PhoneNumber, ApiError> {
    let mut v = Violations::new();
    let mut p = stored.clone();
    for (field, value, target) in [
        ("phone_number", &body.phone_number, &mut p.number),
        ("assistant_id", &body.assistant_id, &mut p.assistant_id),
        ("trunk_id", &body.trunk_id, &mut p.trunk_id),
    ] {
        if let Some(text) = not_null(field, value.clone(), &mut v) {
            v.required_text(field, Some(&text));
            *target = text;
        }
    }
    if body.phone_number.is_some() && !p.number.trim().is_empty() {
        v.e164("phone_number", &p.number);
    }
    p.updated_at = now_timestamp();
    v.into_result().map_err(ApiError::Invalid)?;
    Ok(p)
}

#[utoipa::path(
    delete, path = "/phone_number/delete/{phone_number_id}", operation_id = "phone_number_delete", tag = "phone_numbers",
    params(("phone_number_id" = String, Path, description = "The UUID of the phone number to delete")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Phone number deleted; the number is free again", body = Envelope<PhoneNumberId>),
        (status = 401, description = "Invalid or missing Bearer token", body = Envelope<Value>),
        (status = 404, description = "Phone number does not exist or is already deleted", body = Envelope<Value>),
        (status = 500, description = "Internal server error", body = Envelope<Value>),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    Caller(owner): Caller,
    ApiPath(id): ApiPath,
) -> Result<Response, ApiError> {
    if !state
        .store
        .delete_phone_number(&owner.id, &id, &now_timestamp())
        .await?
    {
        return Err(not_found());
    }
    Ok(ok(
        "Phone number deleted successfully",
        PhoneNumberId {
            phone_number_id: id,
        },
    ))
}
