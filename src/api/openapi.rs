//! `GET /openapi.json`: the machine-readable description of every REST route and schema,
//! generated from the handlers' own annotations so it cannot drift from the code.

use axum::Json;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::{
    assistants, calls, catalog, chats, conversations, health, mcp, outbound, phone_numbers, sales,
    tools, trunks, web_call,
};

#[derive(OpenApi)]
#[openapi(
    info(title = "voxbridge", description = "Real-time voice agent server: REST API"),
    paths(
        health::healthz, health::readyz,
        assistants::create, assistants::list, assistants::details, assistants::update, assistants::delete,
        tools::create, tools::list, tools::details, tools::update, tools::delete,
        mcp::create, mcp::list, mcp::details, mcp::update, mcp::delete,
        calls::list, calls::details, outbound::place, outbound::hang_up,
        web_call::create,
        chats::create, chats::message, chats::details, chats::list, chats::end,
        conversations::create, conversations::message, conversations::details,
        catalog::upsert, catalog::search, catalog::delete,
        sales::invoke,
        trunks::create, trunks::list, trunks::details, trunks::update, trunks::delete,
        phone_numbers::create, phone_numbers::list, phone_numbers::details,
        phone_numbers::update, phone_numbers::delete,
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
        // The sales assistant route takes the same API key in a header, as its seed does.
        components.add_security_scheme(
            "api_key",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::new("x-api-key"))),
        );
    }
}

pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}
