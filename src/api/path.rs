//! The path-parameter extractor for every REST route. axum's own answers a bad parameter (a
//! percent-escape that is not UTF-8, say) with plain text; this one answers the envelope, and
//! refuses control characters, which no id contains and PostgreSQL's `text` cannot hold.

use axum::extract::{FromRequestParts, Path};
use axum::http::request::Parts;

use super::error::ApiError;
use crate::validation::has_control_characters;

/// One path parameter, as text.
pub struct ApiPath(pub String);

impl<S: Send + Sync> FromRequestParts<S> for ApiPath {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path(value) = Path::<String>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::invalid("path", rejection.body_text()))?;
        if has_control_characters(&value) {
            return Err(ApiError::invalid(
                "path",
                "must not contain control characters",
            ));
        }
        Ok(ApiPath(value))
    }
}

/// Two path parameters, as text (`/catalog/{business_id}/products/{product_id}`).
pub struct ApiPathPair(pub String, pub String);

impl<S: Send + Sync> FromRequestParts<S> for ApiPathPair {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Path((first, second)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(|rejection| ApiError::invalid("path", rejection.body_text()))?;
        if has_control_characters(&first) || has_control_characters(&second) {
            return Err(ApiError::invalid(
                "path",
                "must not contain control characters",
            ));
        }
        Ok(ApiPathPair(first, second))
    }
}
