//! Server-wide behaviour: probes, the OpenAPI document, authentication, unknown routes.

use reqwest::{Method, StatusCode};
use serde_json::json;

use crate::common::{Backend, TestServer};
use crate::on_both_backends;

on_both_backends!(
    probes_answer,
    metrics_are_exposed,
    openapi_lists_every_route,
    auth_is_required,
    unknown_routes_use_the_envelope
);

async fn probes_answer(s: &TestServer) {
    let (status, body) = s.call(Method::GET, "/healthz", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["success"], true);
    let (status, body) = s.call(Method::GET, "/readyz", None, None).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["data"]["database"], "reachable");
}

async fn openapi_lists_every_route(s: &TestServer) {
    let (status, doc) = s.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    let paths = doc["paths"].as_object().expect("paths");
    for (path, method) in [
        ("/assistant/create", "post"),
        ("/assistant/list", "get"),
        ("/assistant/details/{assistant_id}", "get"),
        ("/assistant/update/{assistant_id}", "patch"),
        ("/assistant/delete/{assistant_id}", "delete"),
        ("/tool/create", "post"),
        ("/tool/list", "get"),
        ("/tool/details/{tool_id}", "get"),
        ("/tool/update/{tool_id}", "patch"),
        ("/tool/delete/{tool_id}", "delete"),
        ("/healthz", "get"),
        ("/readyz", "get"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing"
        );
    }
    let schemas = doc["components"]["schemas"].as_object().expect("schemas");
    for schema in [
        "CreateAssistant",
        "UpdateAssistant",
        "AssistantDetails",
        "CreateTool",
        "ToolDetails",
    ] {
        assert!(schemas.contains_key(schema), "schema {schema} missing");
    }
    for schema in ["CreateAssistant", "UpdateAssistant", "AssistantDetails"] {
        assert!(
            schemas[schema]["properties"]["assistant_voicemail_message"].is_object(),
            "{schema} does not document assistant_voicemail_message"
        );
    }
    assert!(
        schemas["CreateAssistant"]["properties"]["assistant_voicemail_message"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("answering machine")),
        "the setting says what it is for"
    );
    // CallDetails flattens the summary in: its own fields are one part of an `allOf`.
    let details = &schemas["CallDetails"];
    let parts = details["allOf"].as_array().cloned().unwrap_or_default();
    for field in [
        "answered_by",
        "rendered_voicemail_message",
        "provider_events",
    ] {
        assert!(
            std::iter::once(details)
                .chain(parts.iter())
                .any(|part| part["properties"][field].is_object()),
            "CallDetails does not document {field}: {details}"
        );
    }
    for field in ["at_ms", "provider", "kind", "detail"] {
        assert!(
            schemas["ProviderEvent"]["properties"][field].is_object(),
            "ProviderEvent does not document {field}"
        );
    }
    for field in ["first_token_timeout_ms", "fallback", "apology"] {
        assert!(
            schemas["LlmSettings"]["properties"][field].is_object(),
            "LlmSettings does not document {field}"
        );
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
}

/// The served document against the OpenAPI 3.1 schema published by the OpenAPI Initiative
/// (`fixtures/openapi/`), so every generator quirk (a query parameter declared in the path, a
/// path parameter that is not required, a 3.0-only keyword) is caught here, not by a client.
#[tokio::test]
async fn openapi_validates_as_openapi_3_1() {
    let s = TestServer::start(crate::common::Backend::Sqlite)
        .await
        .expect("sqlite always runs");
    let (status, doc) = s.call(Method::GET, "/openapi.json", None, None).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1."),
        "{}",
        doc["openapi"]
    );
    let schema: serde_json::Value = serde_json::from_str(include_str!(
        "../../fixtures/openapi/oas-3.1-schema-2022-10-07.json"
    ))
    .unwrap();
    let validator = jsonschema::draft202012::new(&schema).expect("the OAS schema compiles");
    let errors: Vec<String> = validator
        .iter_errors(&doc)
        .map(|e| format!("{} at {}", e, e.instance_path()))
        .collect();
    assert!(
        errors.is_empty(),
        "{} errors:\n{}",
        errors.len(),
        errors.join("\n")
    );
    // The schema leaves parameters' shape loose where the specification is strict: a path
    // parameter must be a template variable of its path and required.
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            for parameter in operation["parameters"].as_array().into_iter().flatten() {
                let name = parameter["name"].as_str().unwrap();
                if parameter["in"] == "path" {
                    assert!(
                        path.contains(&format!("{{{name}}}")),
                        "{method} {path}: path parameter {name} is not in the path"
                    );
                    assert_eq!(parameter["required"], true, "{method} {path}: {name}");
                }
            }
        }
    }
    s.stop().await;
}

async fn auth_is_required(s: &TestServer) {
    let body = json!({"assistant_name": "x"});
    for key in [None, Some("vbx_not_a_real_key"), Some("")] {
        let (status, reply) = s
            .call(Method::POST, "/assistant/create", key, Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "key {key:?}: {reply}");
        assert_eq!(reply["success"], false);
        assert!(reply["message"].as_str().unwrap().len() > 5);
    }
    // A scheme other than Bearer is refused too.
    let response = reqwest::Client::new()
        .get(format!("{}/assistant/list", s.base))
        .header("authorization", format!("Basic {}", s.key))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);

    // Refused before its body was read: the answer says the connection closes, so a keep-alive
    // client does not send its next request into a connection the server drops.
    let client = reqwest::Client::new();
    let response = client
        .post(format!("{}/assistant/create", s.base))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    assert_eq!(
        response.headers().get("connection").map(|v| v.as_bytes()),
        Some(&b"close"[..])
    );
    // A body read to its end (here refused for its content) keeps the connection.
    let response = client
        .post(format!("{}/assistant/create", s.base))
        .bearer_auth(&s.key)
        .json(&json!({"assistant_name": 5}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    assert_eq!(response.headers().get("connection"), None);

    // A revoked key stops working at once.
    let key = s.key_for("revoked@example.com").await;
    let (status, _) = s
        .call(Method::GET, "/assistant/list", Some(&key), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let prefix = &key[..12];
    assert_eq!(s.store.revoke_api_key(prefix).await.unwrap(), 1);
    let (status, _) = s
        .call(Method::GET, "/assistant/list", Some(&key), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
}

async fn unknown_routes_use_the_envelope(s: &TestServer) {
    let (status, body) = s.get("/no/such/route").await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["success"], false);
    let (status, body) = s
        .call(Method::PUT, "/assistant/list", Some(&s.key), None)
        .await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(body["success"], false);
}

/// Says, in the test report, whether the PostgreSQL half of the suite ran or why it skipped.
#[tokio::test]
async fn postgres_availability() {
    match TestServer::start(Backend::Postgres).await {
        Some(server) => {
            println!(
                "PostgreSQL tests ran against {}",
                crate::common::postgres_admin_url()
            );
            server.stop().await;
        }
        None => {
            println!("PostgreSQL tests were SKIPPED (reason above); run with CI=1 to require them")
        }
    }
}

async fn metrics_are_exposed(s: &TestServer) {
    let response = reqwest::get(format!("{}/metrics", s.base)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let content_type = response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    // Metrics appear once recorded; the endpoint itself must always answer text.
    let _ = response.text().await.unwrap();
}
