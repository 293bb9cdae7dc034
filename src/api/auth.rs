//! API-key authentication. Every resource route takes a [`Caller`] (a Bearer key); the sales
//! assistant route of seed 003 takes its key in `x-api-key` instead ([`KeyHeaderCaller`]), as
//! the seed does. Either way the key's owner scopes every query that follows, which is what
//! keeps one owner out of another's assistants.

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

/// The owner of the API key in the `x-api-key` header (the sales assistant route).
#[derive(Debug, Clone)]
pub struct KeyHeaderCaller(pub Owner);

impl FromRequestParts<AppState> for KeyHeaderCaller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let key = parts
            .headers
            .get("x-api-key")
            .ok_or_else(|| ApiError::Unauthorized("Missing x-api-key header".to_owned()))?
            .to_str()
            .ok()
            .map(str::trim)
            .filter(|key| !key.is_empty())
            .ok_or_else(|| ApiError::Unauthorized("The x-api-key header is empty".to_owned()))?;
        match state.store.owner_by_key(key).await? {
            Some(owner) => Ok(KeyHeaderCaller(owner)),
            None => Err(ApiError::Unauthorized(
                "Invalid or revoked API key".to_owned(),
            )),
        }
    }
}
