//! Bearer-key authentication. Every resource route takes a [`Caller`]; the key's owner scopes
//! every query that follows, which is what keeps one owner out of another's assistants.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use super::AppState;
use super::error::ApiError;
use crate::store::Owner;

/// The owner of the API key that signed the request.
#[derive(Debug, Clone)]
pub struct Caller(pub Owner);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let header = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
            ApiError::Unauthorized("Missing Authorization: Bearer <api_key> header".to_owned())
        })?;
        let key = header
            .to_str()
            .ok()
            .and_then(|v| {
                let (scheme, key) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| key.trim())
            })
            .filter(|key| !key.is_empty())
            .ok_or_else(|| {
                ApiError::Unauthorized(
                    "Authorization header must be \"Bearer <api_key>\"".to_owned(),
                )
            })?;
        match state.store.owner_by_key(key).await? {
            Some(owner) => Ok(Caller(owner)),
            None => Err(ApiError::Unauthorized(
                "Invalid or revoked API key".to_owned(),
            )),
        }
    }
}
