//! The seed's `ResponseWrapper` — `{status, message, data}` — that every v1 answer wears, errors
//! included: `status` repeats the HTTP status, `message` is null on success, `data` is null on
//! errors. Validation errors read as the seed's FastAPI service writes them:
//! `Validation error - "name": String should have at least 3 characters`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::store::StoreError;

/// The body of every v1 answer.
#[derive(Debug, Serialize, ToSchema)]
pub struct ResponseWrapper<T> {
    /// The HTTP status, repeated.
    pub status: u16,
    /// Null on success; what went wrong on errors.
    pub message: Option<String>,
    /// The payload; null on errors.
    pub data: Option<T>,
}

/// A successful answer with `status` and `data`.
pub fn answer<T: Serialize>(status: StatusCode, data: T) -> Response {
    let body = ResponseWrapper {
        status: status.as_u16(),
        message: None,
        data: Some(data),
    };
    (status, Json(body)).into_response()
}

/// `data` of the answers that only confirm (`update-config`, the deletes).
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageResponse {
    pub message: String,
}

/// A confirmation: 200 with `{"message": ...}` as `data`.
pub fn confirm(message: &str) -> Response {
    answer(
        StatusCode::OK,
        MessageResponse {
            message: message.to_owned(),
        },
    )
}

/// A v1 failure: an HTTP status and the wrapper's message.
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct V1Error {
    pub status: StatusCode,
    pub message: String,
}

impl V1Error {
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    /// 400 from broken field rules, each `(field as sent, pydantic's message)`.
    pub fn validation(errors: &[(String, String)]) -> Self {
        let each: Vec<String> = errors
            .iter()
            .map(|(field, message)| format!("\"{field}\": {message}"))
            .collect();
        Self::new(
            StatusCode::BAD_REQUEST,
            format!("Validation error - {}", each.join("; ")),
        )
    }

    pub fn field(field: &str, message: impl Into<String>) -> Self {
        Self::validation(&[(field.to_owned(), message.into())])
    }

    pub fn not_found() -> Self {
        Self::new(StatusCode::NOT_FOUND, "Assistant not found")
    }

    pub fn unauthorized(message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, message)
    }

    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(%cause, "internal error answering a v1 request");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error")
    }
}

impl From<StoreError> for V1Error {
    fn from(e: StoreError) -> Self {
        Self::internal(e)
    }
}

impl IntoResponse for V1Error {
    fn into_response(self) -> Response {
        let body = ResponseWrapper::<()> {
            status: self.status.as_u16(),
            message: Some(self.message),
            data: None,
        };
        (self.status, Json(body)).into_response()
    }
}
