//! `GET /openapi.json`: the machine-readable description of every REST route and schema,
//! generated from the handlers' own annotations so it cannot drift from the code.

use axum::Json;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{
    assistant_builder, assistants, call_webhooks, calls, catalog, chats, conversations, health,
    mcp, outbound, phone_numbers, recordings, sales, tools, trunks, v1, web_call,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "voxbridge", description = "Real-time voice agent server: REST API"),
    paths(
        health::healthz, health::readyz,
        assistants::create, assistants::list, assistants::details, assistants::update, assistants::delete,
        tools::create, tools::list, tools::details, tools::update, tools::delete,
        mcp::create, mcp::list, mcp::details, mcp::update, mcp::delete,
        calls::list, calls::details, call_webhooks::webhooks, recordings::recording, outbound::place, outbound::hang_up,
        web_call::create,
        chats::create, chats::message, chats::details, chats::list, chats::end,
        conversations::create, conversations::message, conversations::details,
        catalog::upsert, catalog::search, catalog::delete,
        sales::invoke,
        trunks::create, trunks::list, trunks::details, trunks::update, trunks::delete,
        phone_numbers::create, phone_numbers::list, phone_numbers::details,
        phone_numbers::update, phone_numbers::delete,
        v1::routes::get_all, v1::routes::get_or_create_general, v1::routes::create,
        v1::routes::get_detail, v1::routes::update_advanced, v1::routes::update_config,
        v1::routes::soft_delete, v1::routes::hard_delete,
        assistant_builder::invoke,
    ),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
        // The v1 assistant API and the sales assistant route also take the key as `x-api-key`.
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-api-key"))),
        );
        // The assistant builder takes the key as its seed names it.
        components.add_security_scheme(
            "integrations_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("Integrations-API-Key"))),
        );
    }
}

pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
