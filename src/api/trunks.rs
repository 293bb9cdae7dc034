//! `/trunk/*`: the owner's telephony provider accounts. Same envelope, auth and isolation as
//! assistants. The auth token is write-only: stored, used to place calls and to verify the
//! provider's webhooks, never returned in any form. A provider's options that are secrets are
//! shown masked, and a masked value sent back keeps the stored one.

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
use crate::assistant::mask_secret;
use crate::store::now_timestamp;
use crate::telephony::provider::TrunkFields;
use crate::telephony::{
    TRUNK_NAME_MAX_CHARS, TelephonyProvider, Trunk, TrunkProvider, new_trunk_id,
};
use crate::validation::Violations;

/// Body of `POST /trunk/create`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTrunk {
    /// 1-100 characters.
    #[schema(required = true)]
    pub trunk_name: Option<String>,
    /// The provider: `twilio`, `plivo`, `exotel`, `telnyx` or `vonage`.
    #[schema(required = true)]
    pub trunk_provider: Option<String>,
    /// The provider account (Twilio: the Account SID, `AC` + 32 hex digits).
    #[schema(required = true)]
    pub trunk_account_sid: Option<String>,
    /// The provider secret (Twilio: the Auth Token, 32 hex digits). Stored, never returned.
    #[schema(required = true)]
    pub trunk_auth_token: Option<String>,
    /// Caller ID for outbound calls (E.164, a number of the account).
    #[schema(required = true)]
    pub trunk_default_caller_number: Option<String>,
    /// What the provider needs beyond an account and a secret, as the README lists per
    /// provider. Secret options are shown masked.
    #[schema(value_type = Option<Object>)]
    pub trunk_options: Option<Value>,
}

/// Body of `PATCH /trunk/update/{trunk_id}`: any subset of the create fields (none may be null).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTrunk {
    #[serde(default, deserialize_with = "nullable")]
    pub trunk_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub trunk_provider: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub trunk_account_sid: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub trunk_auth_token: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub trunk_default_caller_number: Option<Option<String>>,
    /// Replaces the options; a masked secret sent back keeps the stored one.
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Object>)]
    pub trunk_options: Option<Option<Value>>,
}

/// `data` of a successful create.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrunkCreated {
    /// `ST_` + 32 hex digits.
    pub trunk_id: String,
    pub trunk_name: String,
}

/// `data` of a successful update or delete.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrunkId {
    pub trunk_id: String,
}

/// A trunk as responses show it: everything but the auth token.
#[derive(Debug, Serialize, ToSchema)]
pub struct TrunkDetails {
    pub trunk_id: String,
    pub trunk_name: String,
    pub trunk_provider: TrunkProvider,
    pub trunk_account_sid: String,
    pub trunk_default_caller_number: String,
    /// The provider's options, secrets masked.
    #[schema(value_type = Object)]
    pub trunk_options: Value,
    pub trunk_created_at: String,
    pub trunk_updated_at: String,
}

impl TrunkDetails {
    fn of(t: Trunk, provider: &dyn TelephonyProvider) -> Self {
        let secret = provider.secret_options();
        let options = t
            .options
            .iter()
            .map(|(k, v)| match (secret.contains(&k.as_str()), v) {
                (true, Value::String(text)) => (k.clone(), Value::String(mask_secret(text))),
                _ => (k.clone(), v.clone()),
            })
            .collect();
        Self {
            trunk_options: Value::Object(options),
            trunk_id: t.id,
            trunk_name: t.name,
            trunk_provider: t.provider,
            trunk_account_sid: t.account_sid,
            trunk_default_caller_number: t.default_caller_number,
            trunk_created_at: t.created_at,
            trunk_updated_at: t.updated_at,
        }
    }
}

fn not_found() -> ApiError {
    ApiError::NotFound("Trunk not found".to_owned())
}

const FIELDS: TrunkFields = TrunkFields {
    account: "trunk_account_sid",
    secret: "trunk_auth_token",
    options: "trunk_options",
};

/// A trunk's options from a request: an object (absent means empty).
fn options(value: Option<Value>, v: &mut Violations) -> serde_json::Map<String, Value> {
    match value {
        None => Default::default(),
        Some(Value::Object(map)) => map,
        Some(_) => {
            v.add("trunk_options", "must be a JSON object");
            Default::default()
        }
    }
}

/// The rules every trunk satisfies, created or patched. Blank required texts are reported where
/// the request is read.
fn check_trunk(t: &Trunk, provider: &dyn TelephonyProvider, v: &mut Violations) {
    if !t.name.trim().is_empty() {
        v.char_length("trunk_name", &t.name, 1, TRUNK_NAME_MAX_CHARS);
    }
    provider.check_trunk(t, FIELDS, v);
    if !t.default_caller_number.is_empty() {
        v.e164("trunk_default_caller_number", &t.default_caller_number);
    }
}

#[utoipa::path(
    post, path = "/trunk/create", operation_id = "trunk_create", tag = "trunks",
    request_body = CreateTrunk,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Trunk created successfully", body = Envelope<TrunkCreated>),
        (status = 400, description = "Invalid input data or unsupported provider", body = Envelope<Value>),
        (status = 401, description = "Invalid or missing Bearer token", body = Envelope<Value>),
        (status = 500, description = "Internal server error", body = Envelope<Value>),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    Caller(owner): Caller,
    ApiJson(body): ApiJson<CreateTrunk>,
) -> Result<Response, ApiError> {
    let mut v = Violations::new();
    v.required_text("trunk_name", body.trunk_name.as_deref());
    v.required_text("trunk_account_sid", body.trunk_account_sid.as_deref());
    v.required_text("trunk_auth_token", body.trunk_auth_token.as_deref());
    v.required_text(
        "trunk_default_caller_number",
        body.trunk_default_caller_number.as_deref(),
    );
    let provider = match body.trunk_provider.as_deref() {
        None => {
            v.add(
                "trunk_provider",
                format!("is required ({})", TrunkProvider::names()),
            );
            None
        }
        Some(p) => TrunkProvider::parse_field(p, "trunk_provider", &mut v),
    };
    let now = now_timestamp();
    let trunk = Trunk {
        id: new_trunk_id(),
        owner_id: owner.id,
        name: body.trunk_name.unwrap_or_default(),
        // Without a valid provider a violation is already recorded; Twilio only stands in so
        // the other fields are still checked and one answer lists every problem.
        provider: provider.unwrap_or(TrunkProvider::Twilio),
        account_sid: body.trunk_account_sid.unwrap_or_default(),
        auth_token: body.trunk_auth_token.unwrap_or_default(),
        options: options(body.trunk_options, &mut v),
        default_caller_number: body.trunk_default_caller_number.unwrap_or_default(),
        created_at: now.clone(),
        updated_at: now,
    };
    if let Some(provider) = provider {
        check_trunk(&trunk, state.telephony.get(provider), &mut v);
    } else if !trunk.name.trim().is_empty() {
        v.char_length("trunk_name", &trunk.name, 1, TRUNK_NAME_MAX_CHARS);
    }
    v.into_result().map_err(ApiError::Invalid)?;
    state.store.insert_trunk(&trunk).await?;
    Ok(ok(
        "Trunk created successfully",
        TrunkCreated {
            trunk_id: trunk.id,
            trunk_name: trunk.name,
        },
    ))
}

#[utoipa::path(
    get, path = "/trunk/list", operation_id = "trunk_list", tag = "trunks",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Trunks retrieved successfully", body = Envelope<Vec<TrunkDetails>>),
        (status = 401, description = "Invalid or missing Bearer token", body = Envelope<Value>),
        (status = 500, description = "Internal server error", body = Envelope<Value>),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Caller(owner): Caller,
) -> Result<Response, ApiError> {
    let trunks: Vec<TrunkDetails> = state
        .store
        .list_trunks(&owner.id)
        .await?
        .into_iter()
        .map(|t| {
            let provider = state.telephony.get(t.provider);
            TrunkDetails::of(t, provider)
        })
        .collect();
    Ok(ok("Trunks retrieved successfully", trunks))
}

#[utoipa::path(
    get, path = "/trunk/details/{trunk_id}", operation_id = "trunk_details", tag = "trunks",
    params(("trunk_id" = String, Path, description = "The id of the trunk (ST_...)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Trunk details retrieved (without the auth token)", body = Envelope<TrunkDetails>),
        (status = 401, description = "Invalid or missing Bearer token", body = Envelope<Value>),
        (status = 404, description = "Trunk does not exist or is deleted", body = Envelope<Value>),
        (status = 500, description = "Internal server error", body = Envelope<Value>),
    )
)]
pub async fn details(
    State(state): State<AppState>,
    Caller(owner): Caller,
    ApiPath(id): ApiPath,
) -> Result<Response, ApiError> {
    let trunk = state
        .store
        .get_trunk_for_owner(&owner.id, &id)
        .await?
        .ok_or_else(not_found)?;
    let provider = state.telephony.get(trunk.provider);
    Ok(ok(
        "Trunk details retrieved successfully",
        TrunkDetails::of(trunk, provider),
    ))
}

#[utoipa::path(
    patch, path = "/trunk/update/{trunk_id}", operation_id = "trunk_update", tag = "trunks",
    params(("trunk_id" = String, Path, description = "The id of the trunk to update")),
    request_body = UpdateTrunk,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Trunk updated successfully", body = Envelope<TrunkId>),
        (status = 400, description = "Invalid input data", body = Envelope<Value>),
        (status = 401, description = "Invalid or missing Bearer token", body = Envelope<Value>),
        (status = 404, description = "Trunk does not exist", body = Envelope<Value>),
        (status = 409, description = "Concurrent updates kept colliding; retry", body = Envelope<Value>),
        (status = 500, description = "Internal server error", body = Envelope<Value>),
    )
)]
pub async fn update(
    State(state): State<AppState>,
    Caller(owner): Caller,
    ApiPath(id): ApiPath,
    ApiJson(body): ApiJson<UpdateTrunk>,
) -> Result<Response, ApiError> {
    let (state, owner, id, body) = (&state, &owner, &id, &body);
    let updated = update_until_stored("trunk", || async move {
        let stored = state
            .store
            .get_trunk_for_owner(&owner.id, id)
            .await?
            .ok_or_else(not_found)?;
        let updated = apply_update(state, &stored, body)?;
        let stored_now = state
            .store
            .update_trunk(&updated, &stored.updated_at)
            .await?;
        Ok(stored_now.then_some(updated))
    })
    .await?;
    Ok(ok(
        "Trunk updated successfully",
        TrunkId {
            trunk_id: updated.id,
        },
    ))
}

fn apply_update(state: &AppState, stored: &Trunk, body: &UpdateTrunk) -> Result<Trunk, ApiError> {
    let mut v = Violations::new();
    let mut t = stored.clone();
    for (field, value, target) in [
        ("trunk_name", &body.trunk_name, &mut t.name),
        (
            "trunk_account_sid",
            &body.trunk_account_sid,
            &mut t.account_sid,
        ),
        (
            "trunk_auth_token",
            &body.trunk_auth_token,
            &mut t.auth_token,
        ),
        (
            "trunk_default_caller_number",
            &body.trunk_default_caller_number,
            &mut t.default_caller_number,
        ),
    ] {
        if let Some(text) = not_null(field, value.clone(), &mut v) {
            v.required_text(field, Some(&text));
            *target = text;
        }
    }
    if let Some(provider) = not_null("trunk_provider", body.trunk_provider.clone(), &mut v)
        && let Some(provider) = TrunkProvider::parse_field(&provider, "trunk_provider", &mut v)
    {
        t.provider = provider;
    }
    let provider = state.telephony.get(t.provider);
    if let Some(value) = not_null("trunk_options", body.trunk_options.clone(), &mut v) {
        let secret = provider.secret_options();
        t.options = options(Some(value), &mut v);
        // A masked secret sent back (as details show it) keeps the stored value.
        for (key, value) in t.options.iter_mut() {
            if let (true, Value::String(text), Some(Value::String(kept))) = (
                secret.contains(&key.as_str()),
                &*value,
                stored.options.get(key),
            ) && *text == mask_secret(kept)
            {
                *value = Value::String(kept.clone());
            }
        }
    }
    t.updated_at = now_timestamp();
    check_trunk(&t, provider, &mut v);
    v.into_result().map_err(ApiError::Invalid)?;
    Ok(t)
}

#[utoipa::path(
    delete, path = "/trunk/delete/{trunk_id}", operation_id = "trunk_delete", tag = "trunks",
    params(("trunk_id" = String, Path, description = "The id of the trunk to delete")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Trunk deleted; its phone numbers stop routing inbound calls", body = Envelope<TrunkId>),
        (status = 401, description = "Invalid or missing Bearer token", body = Envelope<Value>),
        (status = 404, description = "Trunk does not exist or is already deleted", body = Envelope<Value>),
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
        .delete_trunk(&owner.id, &id, &now_timestamp())
        .await?
    {
        return Err(not_found());
    }
    Ok(ok("Trunk deleted successfully", TrunkId { trunk_id: id }))
}
