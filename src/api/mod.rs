//! The REST API: one file per resource, plus the pieces every route shares (authentication, the
//! JSON body extractor, the response envelope and the error type).

mod assistant_builder;
mod assistants;
mod auth;
mod call_webhooks;
mod calls;
mod catalog;
mod chats;
mod conversations;
mod envelope;
mod error;
mod health;
mod json;
mod mcp;
mod openapi;
mod outbound;
mod patch;
mod path;
mod phone_numbers;
mod recordings;
mod sales;
mod telephony;
mod tools;
mod trunks;
mod unread_body;
mod v1;
mod web_call;

pub use envelope::Envelope;
pub use error::ApiError;
pub use openapi::ApiDoc;

use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::handler::Handler;
use axum::routing::{delete, get, patch, post};

use crate::call::CallServices;
use crate::config::Config;
use crate::store::Store;
use crate::telephony::Telephony;

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    pub store: Store,
    pub config: Arc<Config>,
    /// What live calls need (shared HTTP clients, webhooks, live-call registry).
    pub calls: CallServices,
    /// Each telephony provider's control plane (webhooks, placing, hanging up and transferring
    /// calls).
    pub telephony: Telephony,
}

/// `GET /metrics`: Prometheus text exposition.
async fn metrics_text() -> impl axum::response::IntoResponse {
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4",
        )],
        crate::metrics::render(),
    )
}

/// The REST routes, with the body limit and the envelope for unknown routes and methods.
pub fn router(state: AppState) -> Router {
    let body_limit = state.config.max_body_bytes;
    Router::new()
        .route("/", get(crate::widget::demo_page))
        .route("/widget/{file}", get(crate::widget::serve_asset))
        .route("/favicon.ico", get(crate::widget::no_favicon))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/openapi.json", get(openapi::openapi_json))
        .route("/metrics", get(metrics_text))
        .route("/assistant/create", post(assistants::create))
        .route("/assistant/list", get(assistants::list))
        .route(
            "/assistant/details/{assistant_id}",
            get(assistants::details),
        )
        .route(
            "/assistant/update/{assistant_id}",
            patch(assistants::update),
        )
        .route(
            "/assistant/delete/{assistant_id}",
            delete(assistants::delete),
        )
        .route("/assistant_builder/invoke", post(assistant_builder::invoke))
        .route("/mcp/create", post(mcp::create))
        .route("/mcp/list", get(mcp::list))
        .route("/mcp/details/{mcp_id}", get(mcp::details))
        .route("/mcp/update/{mcp_id}", patch(mcp::update))
        .route("/mcp/delete/{mcp_id}", delete(mcp::delete))
        .route("/tool/create", post(tools::create))
        .route("/tool/list", get(tools::list))
        .route("/tool/details/{tool_id}", get(tools::details))
        .route("/tool/update/{tool_id}", patch(tools::update))
        .route("/tool/delete/{tool_id}", delete(tools::delete))
        .route(
            "/{provider}/voice",
            get(telephony::voice).post(telephony::voice),
        )
        .route("/{provider}/status", post(telephony::callback))
        .route("/{provider}/amd", post(telephony::callback))
        .route("/{provider}/media", get(telephony::media))
        .route("/web-call/create", post(web_call::create))
        .route("/web-call/ws", get(web_call::socket))
        .route("/call/outbound", post(outbound::place))
        .route("/call/hangup/{call_id}", post(outbound::hang_up))
        .route("/call/list", get(calls::list))
        .route("/call/details/{call_id}", get(calls::details))
        .route("/call/recording/{call_id}", get(recordings::recording))
        .route("/call/webhooks/{call_id}", get(call_webhooks::webhooks))
        .route("/calls", get(crate::widget::inspector_page))
        .route("/api/conversations", post(conversations::create))
        .route("/api/conversations/", post(conversations::create))
        .route(
            "/api/conversations/{conversation_id}",
            get(conversations::details).patch(conversations::message),
        )
        .route(
            "/api/conversations/{conversation_id}/",
            get(conversations::details).patch(conversations::message),
        )
        .route(
            "/catalog/{business_id}/products",
            get(catalog::search).put(
                catalog::upsert.layer(DefaultBodyLimit::max(crate::catalog::MAX_UPSERT_BODY_BYTES)),
            ),
        )
        .route(
            "/catalog/{business_id}/products/{product_id}",
            delete(catalog::delete),
        )
        .route(
            "/internal/v1/businesses/{business_id}/ai/sales_assistant_v2/invoke/v1",
            post(sales::invoke),
        )
        .route("/chat/create", post(chats::create))
        .route("/chat/message/{chat_id}", post(chats::message))
        .route("/chat/details/{chat_id}", get(chats::details))
        .route("/chat/list", get(chats::list))
        .route("/chat/end/{chat_id}", post(chats::end))
        .route("/trunk/create", post(trunks::create))
        .route("/trunk/list", get(trunks::list))
        .route("/trunk/details/{trunk_id}", get(trunks::details))
        .route("/trunk/update/{trunk_id}", patch(trunks::update))
        .route("/trunk/delete/{trunk_id}", delete(trunks::delete))
        .nest(v1::PREFIX, v1::router())
        .route("/phone_number/create", post(phone_numbers::create))
        .route("/phone_number/list", get(phone_numbers::list))
        .route(
            "/phone_number/details/{phone_number_id}",
            get(phone_numbers::details),
        )
        .route(
            "/phone_number/update/{phone_number_id}",
            patch(phone_numbers::update),
        )
        .route(
            "/phone_number/delete/{phone_number_id}",
            delete(phone_numbers::delete),
        )
        .fallback(|| async { ApiError::NotFound("No such route".to_owned()) })
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(axum::middleware::from_fn(unread_body::close_if_unread))
        .with_state(state)
}
