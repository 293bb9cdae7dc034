//! `/tool/*` and attaching tools to assistants with `tool_ids`.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::common::TestServer;
use crate::on_both_backends;

fn weather() -> Value {
    json!({
        "tool_name": "get_weather",
        "tool_description": "Current weather for a city",
        "tool_parameters": {
            "type": "object",
            "properties": {"city": {"type": "string", "description": "City name"}},
            "required": ["city"]
        },
        "tool_url": "https://tools.example.com/weather",
        "tool_method": "POST",
        "tool_headers": {"Authorization": "Bearer tool-secret-token-123", "X-Team": "support"},
        "tool_timeout_ms": 3000
    })
}

fn with(mut base: Value, field: &str, value: Value) -> Value {
    if value.is_null() {
        base.as_object_mut().unwrap().remove(field);
    } else {
        base[field] = value;
    }
    base
}

async fn create_tool(s: &TestServer, body: Value) -> String {
    let (status, reply) = s.post("/tool/create", body).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    reply["data"]["tool_id"].as_str().unwrap().to_owned()
}

fn assistant_with_tools(ids: Value) -> Value {
    json!({
        "assistant_name": "Tooled",
        "assistant_description": "Uses tools",
        "assistant_prompt": "Use tools.",
        "assistant_tts_model": "cartesia",
        "assistant_tts_config": {"voice_id": "a167e0f3-df7e-4277-976b-be2f952fa275"},
        "tool_ids": ids
    })
}

fn assert_field_error(status: StatusCode, reply: &Value, field: &str) {
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    let errors = reply["data"]["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("no errors: {reply}"));
    assert!(
        errors
            .iter()
            .any(|e| e["field"].as_str().unwrap().starts_with(field)),
        "no error for {field}: {reply}"
    );
}

on_both_backends!(
    tool_crud,
    tool_rules,
    tool_names_are_unique_per_owner,
    assistants_carry_their_tools
);

async fn tool_crud(s: &TestServer) {
    let (status, reply) = s.post("/tool/create", weather()).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["message"], "Tool created successfully");
    assert_eq!(reply["data"]["tool_name"], "get_weather");
    let id = reply["data"]["tool_id"].as_str().unwrap().to_owned();

    let (status, d) = s.get(&format!("/tool/details/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    let d = &d["data"];
    assert_eq!(d["tool_parameters"]["required"], json!(["city"]));
    assert_eq!(d["tool_url"], "https://tools.example.com/weather");
    assert_eq!(d["tool_method"], "POST");
    assert_eq!(d["tool_timeout_ms"], 3000);
    assert_eq!(d["tool_headers"]["X-Team"], "support");
    assert_eq!(
        d["tool_headers"]["Authorization"], "****-123",
        "credential headers are masked"
    );
    assert!(!d.to_string().contains("tool-secret-token"));

    let (_, list) = s.get("/tool/list").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert!(!list.to_string().contains("tool-secret-token"));

    let (status, reply) = s
        .patch(&format!("/tool/update/{id}"), json!({"tool_method": "GET", "tool_headers": d["tool_headers"], "tool_timeout_ms": null}))
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["data"], json!({"tool_id": id}));
    let (_, d2) = s.get(&format!("/tool/details/{id}")).await;
    assert_eq!(d2["data"]["tool_method"], "GET");
    assert_eq!(
        d2["data"]["tool_timeout_ms"], 5000,
        "null restores the default"
    );
    let owner = s.store.owner_by_key(&s.key).await.unwrap().unwrap();
    let stored = s.store.get_tool(&owner.id, &id).await.unwrap().unwrap();
    assert_eq!(
        stored.headers["Authorization"], "Bearer tool-secret-token-123",
        "masked value sent back keeps the secret"
    );

    let (status, reply) = s.delete(&format!("/tool/delete/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let (status, _) = s.get(&format!("/tool/details/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = s
        .patch(&format!("/tool/update/{id}"), json!({"tool_name": "x"}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = s.delete(&format!("/tool/delete/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let other = s.key_for("other@example.com").await;
    let theirs = create_tool(s, with(weather(), "tool_name", json!("lookup"))).await;
    let (status, _) = s
        .call(
            Method::GET,
            &format!("/tool/details/{theirs}"),
            Some(&other),
            None,
        )
        .await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another owner's tool is not found"
    );
    let (status, _) = s
        .call(
            Method::DELETE,
            &format!("/tool/delete/{theirs}"),
            Some(&other),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, list) = s.call(Method::GET, "/tool/list", Some(&other), None).await;
    assert_eq!(list["data"], json!([]));
}

async fn tool_rules(s: &TestServer) {
    let cases: Vec<(Value, &str)> = vec![
        (with(weather(), "tool_name", Value::Null), "tool_name"),
        (
            with(weather(), "tool_name", json!("get weather")),
            "tool_name",
        ),
        (
            with(weather(), "tool_name", json!("x".repeat(65))),
            "tool_name",
        ),
        (with(weather(), "tool_name", json!("end_call")), "tool_name"),
        (
            with(weather(), "tool_name", json!("transfer_call")),
            "tool_name",
        ),
        (
            with(weather(), "tool_description", json!("")),
            "tool_description",
        ),
        (
            with(weather(), "tool_parameters", Value::Null),
            "tool_parameters",
        ),
        (
            with(weather(), "tool_parameters", json!({"type": "string"})),
            "tool_parameters.type",
        ),
        (
            with(
                weather(),
                "tool_parameters",
                json!({"type": "object", "properties": {"a": {"type": "str"}}}),
            ),
            "tool_parameters.properties.a.type",
        ),
        (
            with(
                weather(),
                "tool_parameters",
                json!({"type": "object", "required": "city"}),
            ),
            "tool_parameters.required",
        ),
        (
            with(weather(), "tool_parameters", json!("{}")),
            "tool_parameters",
        ),
        (
            with(weather(), "tool_url", json!("tools.example.com")),
            "tool_url",
        ),
        (with(weather(), "tool_url", Value::Null), "tool_url"),
        (
            with(weather(), "tool_method", json!("FETCH")),
            "tool_method",
        ),
        (
            with(weather(), "tool_headers", json!({"Bad Header": "x"})),
            "tool_headers",
        ),
        (
            with(weather(), "tool_headers", json!({"X-A": 5})),
            "tool_headers",
        ),
        (
            with(weather(), "tool_timeout_ms", json!(50)),
            "tool_timeout_ms",
        ),
        (
            with(weather(), "tool_timeout_ms", json!(60_000)),
            "tool_timeout_ms",
        ),
        (with(weather(), "tool_extra", json!(1)), "tool_extra"),
    ];
    for (body, field) in cases {
        let (status, reply) = s.post("/tool/create", body).await;
        assert_field_error(status, &reply, field);
    }
    let id = create_tool(s, weather()).await;
    let (status, reply) = s
        .patch(
            &format!("/tool/update/{id}"),
            json!({"tool_parameters": {"type": "array"}}),
        )
        .await;
    assert_field_error(status, &reply, "tool_parameters");
    let (status, reply) = s
        .patch(&format!("/tool/update/{id}"), json!({"tool_name": null}))
        .await;
    assert_field_error(status, &reply, "tool_name");
}

async fn tool_names_are_unique_per_owner(s: &TestServer) {
    let first = create_tool(s, weather()).await;
    let (status, reply) = s.post("/tool/create", weather()).await;
    assert_eq!(status, StatusCode::CONFLICT, "{reply}");
    assert_eq!(reply["success"], false);
    let second = create_tool(s, with(weather(), "tool_name", json!("get_forecast"))).await;
    let (status, _) = s
        .patch(
            &format!("/tool/update/{second}"),
            json!({"tool_name": "get_weather"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    // Another owner may use the same name; a deleted tool frees its name.
    let other = s.key_for("other@example.com").await;
    let (status, reply) = s
        .call(Method::POST, "/tool/create", Some(&other), Some(weather()))
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    s.delete(&format!("/tool/delete/{first}")).await;
    create_tool(s, weather()).await;
}

async fn assistants_carry_their_tools(s: &TestServer) {
    let a = create_tool(s, weather()).await;
    let b = create_tool(s, with(weather(), "tool_name", json!("book_table"))).await;
    let (status, reply) = s
        .post("/assistant/create", assistant_with_tools(json!([b, a])))
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let id = reply["data"]["assistant_id"].as_str().unwrap().to_owned();
    let (_, d) = s.get(&format!("/assistant/details/{id}")).await;
    assert_eq!(d["data"]["tool_ids"], json!([b, a]), "order kept");

    // Duplicates, unknown ids and other owners' tools are refused.
    let (status, reply) = s
        .post("/assistant/create", assistant_with_tools(json!([a, a])))
        .await;
    assert_field_error(status, &reply, "tool_ids[1]");
    let other = s.key_for("other@example.com").await;
    let (_, reply) = s
        .call(
            Method::POST,
            "/tool/create",
            Some(&other),
            Some(with(weather(), "tool_name", json!("theirs"))),
        )
        .await;
    let theirs = reply["data"]["tool_id"].as_str().unwrap().to_owned();
    let (status, reply) = s
        .post(
            "/assistant/create",
            assistant_with_tools(json!([a, theirs])),
        )
        .await;
    assert_field_error(status, &reply, "tool_ids[1]");
    let (status, reply) = s
        .patch(
            &format!("/assistant/update/{id}"),
            json!({"tool_ids": [theirs]}),
        )
        .await;
    assert_field_error(status, &reply, "tool_ids[0]");

    // Update replaces the list; deleting a tool detaches it everywhere.
    let (status, _) = s
        .patch(&format!("/assistant/update/{id}"), json!({"tool_ids": [a]}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, d) = s.get(&format!("/assistant/details/{id}")).await;
    assert_eq!(d["data"]["tool_ids"], json!([a]));
    s.delete(&format!("/tool/delete/{a}")).await;
    let (_, d) = s.get(&format!("/assistant/details/{id}")).await;
    assert_eq!(d["data"]["tool_ids"], json!([]));
    let (status, reply) = s
        .patch(&format!("/assistant/update/{id}"), json!({"tool_ids": [a]}))
        .await;
    assert_field_error(status, &reply, "tool_ids[0]");
}
