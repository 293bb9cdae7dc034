//! The `{success, message, data}` envelope every REST answer wears, errors included.

use axum::Json;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// The body of every REST response.
#[derive(Debug, Serialize, ToSchema)]
pub struct Envelope<T> {
    /// Whether the operation succeeded.
    pub success: bool,
    /// A human-readable summary.
    pub message: String,
    /// The payload; on errors, details such as the broken field rules (or null).
    pub data: T,
}

/// A successful answer: HTTP 200 with `data`.
pub fn ok<T: Serialize>(message: impl Into<String>, data: T) -> Response {
    Json(Envelope {
        success: true,
        message: message.into(),
        data,
    })
    .into_response()
}
