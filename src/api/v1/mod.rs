//! The v1 assistant API of seed 001 (`/api/v1/assistant/*`): general and advanced assistants
//! of users inside a tenant, answered in the seed's `ResponseWrapper` (`wrapper.rs`) — unknown
//! routes and methods under the prefix included — with requests read as its pydantic models
//! read them (`fields.rs`, `edit.rs`), callers known by `x-user-id` and an API key
//! (`identity.rs`), and camelCase answers (`model.rs`). The assistants are stored beside voice
//! assistants and chatted with through `/chat/create` (see [`crate::assistant::v1`]).

mod edit;
mod fields;
mod identity;
mod model;
pub(super) mod routes;
mod wrapper;

use axum::Router;
use axum::http::StatusCode;
use axum::routing::{delete, get, patch, post};

use super::AppState;
use wrapper::V1Error;

pub(super) use edit::advanced_from_texts;

/// Where the routes are mounted.
pub const PREFIX: &str = "/api/v1/assistant";

/// The routes, relative to [`PREFIX`], with the wrapper for unknown routes and methods.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/get-all", get(routes::get_all))
        .route(
            "/get-or-create-general-assistant",
            get(routes::get_or_create_general),
        )
        .route("/create", post(routes::create))
        .route("/{assistant_id}/get-detail", get(routes::get_detail))
        .route(
            "/{assistant_id}/update-advanced-assistant",
            patch(routes::update_advanced),
        )
        .route(
            "/{assistant_id}/update-config",
            patch(routes::update_config),
        )
        .route(
            "/{assistant_id}/soft-delete-advanced-assistant",
            delete(routes::soft_delete),
        )
        .route(
            "/{user_id}/{assistant_id}/hard-delete-advanced-assistant",
            delete(routes::hard_delete),
        )
        .fallback(|| async { V1Error::new(StatusCode::NOT_FOUND, "Not Found") })
        .method_not_allowed_fallback(|| async {
            V1Error::new(StatusCode::METHOD_NOT_ALLOWED, "Method Not Allowed")
        })
}
