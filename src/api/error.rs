//! The one error type of the REST API. Every failure becomes an HTTP status and the envelope with
//! `success: false`; internal details are logged, never sent.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::envelope::Envelope;
use crate::store::StoreError;
use crate::validation::FieldError;

/// A REST failure, rendered as the envelope.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request broke one or more field rules.
    #[error("{}", summarise(.0))]
    Invalid(Vec<FieldError>),
    /// 400: the body is not what the route takes (bad JSON, wrong types, unknown fields).
    #[error("{0}")]
    BadRequest(String),
    /// 401: the Bearer key is missing, unknown or revoked.
    #[error("{0}")]
    Unauthorized(String),
    /// 404: no such resource for this owner (or no such route).
    #[error("{0}")]
    NotFound(String),
    /// 405: the route exists with other methods.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409: the request conflicts with existing state (a name already in use).
    #[error("{0}")]
    Conflict(String),
    /// 413: the body is larger than the configured limit.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// 429: a limit was reached (concurrent calls).
    #[error("{0}")]
    TooManyRequests(String),
    /// 502: the telephony provider could not be reached or failed.
    #[error("{0}")]
    BadGateway(String),
    /// 504: another server process had to act and did not answer in time.
    #[error("{0}")]
    GatewayTimeout(String),
    /// 415: the body is not declared as JSON.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 503: a dependency (the database) is not reachable.
    #[error("{0}")]
    Unavailable(String),
    /// 500: anything else; the cause is logged, not returned.
    #[error("internal server error")]
    Internal(String),
}

fn summarise(errors: &[FieldError]) -> String {
    match errors {
        [] => "Invalid request".to_owned(),
        [one] => format!("Invalid request: {} {}", one.field, one.message),
        [first, rest @ ..] => format!(
            "Invalid request: {} {} (and {} more)",
            first.field,
            first.message,
            rest.len()
        ),
    }
}

impl ApiError {
    /// One broken rule on one field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        ApiError::Invalid(vec![FieldError {
            field: field.into(),
            message: message.into(),
        }])
    }

    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::Invalid(_) | ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::BadGateway(_) => StatusCode::BAD_GATEWAY,
            ApiError::GatewayTimeout(_) => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(err: StoreError) -> Self {
        ApiError::Internal(err.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let data = match &self {
            ApiError::Invalid(errors) => json!({ "errors": errors }),
            ApiError::Internal(cause) => {
                tracing::error!(%cause, "internal error answering a request");
                Value::Null
            }
            _ => Value::Null,
        };
        let body = Envelope {
            success: false,
            message: self.to_string(),
            data,
        };
        (status, Json(body)).into_response()
    }
}
