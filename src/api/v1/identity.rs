//! Who a v1 request comes from. The seed trusts `x-user-id` alone, which on an open server would
//! let anyone read any user's assistants by guessing ids; here the header names a user *inside a
//! tenant*, and the tenant is the owner of one of our API keys (`Authorization: Bearer` or
//! `x-api-key`). Only a deployment behind its own authenticating gateway sets
//! `api_v1.trust_user_header`, and then a request without a key belongs to the configured
//! tenant. `x-user-role` `admin` / `super_admin` lets a user list every user's assistants of
//! the tenant (nothing more).

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::wrapper::V1Error;
use crate::api::AppState;
use crate::store::Owner;
use crate::validation::has_control_characters;

/// Longest `x-user-id` accepted.
const MAX_USER_ID_CHARS: usize = 255;

/// The tenant, the user inside it, and the user's role.
#[derive(Debug, Clone)]
pub struct V1Caller {
    pub tenant: Owner,
    pub user_id: String,
    pub role: Option<String>,
}

impl V1Caller {
    /// Admins list every user's assistants of the tenant.
    pub fn is_admin(&self) -> bool {
        matches!(self.role.as_deref(), Some("admin" | "super_admin"))
    }
}

impl FromRequestParts<AppState> for V1Caller {
    type Rejection = V1Error;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, V1Error> {
        let header = |name: &str| {
            parts
                .headers
                .get(name)
                .map(|v| v.to_str().map(str::trim).map_err(|_| name.to_owned()))
        };
        let user_id = match header("x-user-id") {
            None => return Err(V1Error::unauthorized("Missing x-user-id header")),
            Some(Err(_)) => return Err(V1Error::unauthorized("Invalid x-user-id header")),
            Some(Ok(id)) => id.to_owned(),
        };
        if user_id.is_empty()
            || user_id.chars().count() > MAX_USER_ID_CHARS
            || has_control_characters(&user_id)
        {
            return Err(V1Error::unauthorized(format!(
                "Invalid x-user-id header: 1 to {MAX_USER_ID_CHARS} printable characters"
            )));
        }
        let role = match header("x-user-role") {
            Some(Ok(role)) if !role.is_empty() => Some(role.to_ascii_lowercase()),
            _ => None,
        };
        let key = match (header(AUTHORIZATION.as_str()), header("x-api-key")) {
            (Some(Ok(auth)), _) => {
                let bearer = auth
                    .split_once(' ')
                    .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
                    .map(|(_, key)| key.trim())
                    .filter(|key| !key.is_empty());
                Some(bearer.ok_or_else(|| {
                    V1Error::unauthorized("Authorization header must be \"Bearer <api_key>\"")
                })?)
            }
            (_, Some(Ok(key))) if !key.is_empty() => Some(key),
            _ => None,
        };
        let tenant = match key {
            Some(key) => state
                .store
                .owner_by_key(key)
                .await?
                .ok_or_else(|| V1Error::unauthorized("Invalid or revoked API key"))?,
            None if state.config.api_v1.trust_user_header => {
                state
                    .store
                    .ensure_owner(state.config.api_v1_tenant_email())
                    .await?
            }
            None => {
                return Err(V1Error::unauthorized(
                    "Missing API key: send Authorization: Bearer <api_key> or x-api-key \
                     together with x-user-id",
                ));
            }
        };
        Ok(Self {
            tenant,
            user_id,
            role,
        })
    }
}
