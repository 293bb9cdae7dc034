//! The v1 assistant API (seed 001) over HTTP, on SQLite and PostgreSQL: the eight routes and
//! their wrapper, pydantic-style validation, identity (`x-user-id` inside an API key's tenant,
//! admins, the trusted-gateway mode), the race-safe general assistant, soft and hard delete, and
//! a v1 assistant chatted with through `/chat/create` on its own provider, model and temperature.

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use voxbridge::llm::providers::NamedProvider;
use voxbridge::sim::suite::{SimOptions, SimSuite};

use crate::common::{Backend, TestServer};
use crate::on_both_backends;

const BASE: &str = "/api/v1/assistant";

/// Who sends a v1 request.
#[derive(Clone, Copy)]
struct As<'a> {
    key: Option<&'a str>,
    user: Option<&'a str>,
    role: Option<&'a str>,
}

impl<'a> As<'a> {
    fn user(key: &'a str, user: &'a str) -> Self {
        Self {
            key: Some(key),
            user: Some(user),
            role: None,
        }
    }
}

async fn v1(
    s: &TestServer,
    who: As<'_>,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new().request(method, format!("{}{BASE}{path}", s.base));
    if let Some(key) = who.key {
        request = request.bearer_auth(key);
    }
    if let Some(user) = who.user {
        request = request.header("x-user-id", user);
    }
    if let Some(role) = who.role {
        request = request.header("x-user-role", role);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("answered");
    let status = response.status();
    let text = response.text().await.unwrap();
    let json: Value =
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"));
    assert_eq!(json["status"], status.as_u16(), "status repeated: {json}");
    (status, json)
}

fn research_assistant() -> Value {
    json!({
        "name": "Research Assistant",
        "description": "An advanced assistant for research and analysis tasks",
        "systemPrompt": "You are a research assistant specialized in finding and analyzing information.",
        "provider": "openai",
        "modelName": "gpt-4",
        "temperature": 0.3,
        "askHuman": true,
        "interrupt": false,
        "supportUnits": ["ragbot", "searchbot"],
    })
}

async fn create(s: &TestServer, who: As<'_>, body: Value) -> Value {
    let (status, reply) = v1(s, who, Method::POST, "/create", Some(body)).await;
    assert_eq!(status, StatusCode::CREATED, "{reply}");
    reply["data"].clone()
}

async fn the_eight_routes_follow_the_seed(s: &TestServer) {
    let alice = As::user(&s.key, "alice");
    let data = create(s, alice, research_assistant()).await;
    let id = data["id"].as_str().unwrap().to_owned();
    assert_eq!(data["userId"], "alice");
    assert_eq!(data["assistantType"], "advanced_assistant");
    assert_eq!(data["modelName"], "gpt-4");
    assert_eq!(data["temperature"], 0.3);
    assert_eq!(data["askHuman"], true);
    assert_eq!(data["mainUnit"], "hierarchical");
    assert_eq!(data["mcpIds"], json!([]));
    assert_eq!(data["extensionIds"], json!([]));
    let teams: Vec<(String, String)> = data["teams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().to_owned(),
                t["workflowType"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        teams,
        [
            ("Main Team".into(), "hierarchical".into()),
            ("RAG Team".into(), "ragbot".into()),
            ("Search Team".into(), "searchbot".into())
        ]
    );
    let created_at = data["createdAt"].as_str().unwrap();
    assert!(
        created_at.len() == 20 && created_at.ends_with('Z') && created_at.as_bytes()[10] == b'T',
        "{created_at}"
    );

    let (status, detail) = v1(s, alice, Method::GET, &format!("/{id}/get-detail"), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(detail["message"], Value::Null);
    assert_eq!(detail["data"], data);

    // snake_case is read too; a second assistant makes two pages of one.
    let second = json!({"name": "Writer", "description": "Writes things",
        "system_prompt": "You write.", "support_units": ["workflow"], "ask_human": false});
    let writer = create(s, alice, second).await;
    assert_eq!(writer["supportUnits"], json!(["workflow"]));
    assert_eq!(writer["provider"], "openai");
    assert_eq!(writer["temperature"], 0.7);
    let (status, page) = v1(
        s,
        alice,
        Method::GET,
        "/get-all?page_number=1&max_per_page=1",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["data"]["pageNumber"], 1);
    assert_eq!(page["data"]["maxPerPage"], 1);
    assert_eq!(page["data"]["totalPage"], 2);
    assert_eq!(
        page["data"]["assistants"][0]["name"], "Writer",
        "newest first"
    );
    let (_, page) = v1(
        s,
        alice,
        Method::GET,
        "/get-all?page_number=2&max_per_page=1",
        None,
    )
    .await;
    assert_eq!(page["data"]["assistants"][0]["id"], id.as_str());
    let (_, page) = v1(
        s,
        alice,
        Method::GET,
        "/get-all?assistant_type=general_assistant",
        None,
    )
    .await;
    assert_eq!(page["data"]["assistants"], json!([]));
    assert_eq!(page["data"]["totalPage"], 0);

    // Update: only what is sent changes; new support units rebuild the teams, keeping ids.
    let (status, updated) = v1(
        s,
        alice,
        Method::PATCH,
        &format!("/{id}/update-advanced-assistant"),
        Some(
            json!({"name": "Updated Research Assistant", "temperature": 0.5,
                    "support_units": ["searchbot"]}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{updated}");
    let updated = &updated["data"];
    assert_eq!(updated["name"], "Updated Research Assistant");
    assert_eq!(updated["temperature"], 0.5);
    assert_eq!(updated["askHuman"], true, "unchanged");
    assert_eq!(updated["teams"][0]["id"], data["teams"][0]["id"]);
    assert_eq!(updated["teams"][1]["id"], data["teams"][2]["id"]);
    assert_eq!(updated["teams"].as_array().unwrap().len(), 2);

    let (status, reply) = v1(
        s,
        alice,
        Method::PATCH,
        &format!("/{id}/update-config"),
        Some(
            json!({"systemPrompt": "Updated system prompt for better performance",
                    "temperature": 0.8, "askHuman": false}),
        ),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(
        reply["data"],
        json!({"message": "Assistant configuration updated successfully"})
    );
    let (_, detail) = v1(s, alice, Method::GET, &format!("/{id}/get-detail"), None).await;
    assert_eq!(
        detail["data"]["systemPrompt"],
        "Updated system prompt for better performance"
    );
    assert_eq!(detail["data"]["askHuman"], false);
    // The config update has its own limit on the prompt and takes no name.
    let long = "x".repeat(501);
    let (status, reply) = v1(
        s,
        alice,
        Method::PATCH,
        &format!("/{id}/update-config"),
        Some(json!({"system_prompt": long, "name": "Nope"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(
        reply["message"],
        "Validation error - \"system_prompt\": String should have at most 500 characters; \
         \"name\": Extra inputs are not permitted"
    );

    // Soft delete: invisible to every route but the hard delete.
    let (status, reply) = v1(
        s,
        alice,
        Method::DELETE,
        &format!("/{id}/soft-delete-advanced-assistant"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        reply["data"]["message"],
        "Assistant soft deleted successfully"
    );
    for (method, path, body) in [
        (Method::GET, format!("/{id}/get-detail"), None),
        (
            Method::PATCH,
            format!("/{id}/update-config"),
            Some(json!({"temperature": 1})),
        ),
        (
            Method::PATCH,
            format!("/{id}/update-advanced-assistant"),
            Some(json!({"name": "Again"})),
        ),
        (
            Method::DELETE,
            format!("/{id}/soft-delete-advanced-assistant"),
            None,
        ),
    ] {
        let (status, reply) = v1(s, alice, method, &path, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {reply}");
        assert_eq!(
            reply,
            json!({"status": 404, "message": "Assistant not found", "data": null})
        );
    }
    let (_, page) = v1(s, alice, Method::GET, "/get-all", None).await;
    assert_eq!(page["data"]["assistants"].as_array().unwrap().len(), 1);

    // Hard delete: the path's user must be the caller.
    let (status, _) = v1(
        s,
        alice,
        Method::DELETE,
        &format!("/bob/{id}/hard-delete-advanced-assistant"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, reply) = v1(
        s,
        alice,
        Method::DELETE,
        &format!("/alice/{id}/hard-delete-advanced-assistant"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["data"]["message"], "Assistant deleted successfully");
    let (status, _) = v1(
        s,
        alice,
        Method::DELETE,
        &format!("/alice/{id}/hard-delete-advanced-assistant"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // v1 assistants are not voice assistants: the voice API neither lists nor edits them.
    let (_, voice) = s.get("/assistant/list").await;
    assert_eq!(voice["data"], json!([]), "{voice}");
    let writer_id = writer["id"].as_str().unwrap();
    let (status, _) = s.get(&format!("/assistant/details/{writer_id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    // Nor are they placed on calls or given phone numbers.
    let (status, _) = s
        .post("/web-call/create", json!({"assistant_id": writer_id}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, reply) = s
        .post(
            "/phone_number/create",
            json!({"phone_number": "+14155550100", "assistant_id": writer_id, "trunk_id": "t"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let fields: Vec<&str> = reply["data"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert!(fields.contains(&"assistant_id"), "{reply}");
}

async fn every_error_wears_the_wrapper(s: &TestServer) {
    let alice = As::user(&s.key, "alice");
    let cases = [
        (
            json!({"name": "ab", "description": "abc", "systemPrompt": "abc"}),
            "Validation error - \"name\": String should have at least 3 characters",
        ),
        (
            json!({"description": "abc", "system_prompt": "abc"}),
            "Validation error - \"name\": Field required",
        ),
        (
            json!({"name": "abc", "description": "abc", "systemPrompt": "abc", "temperature": 2.5}),
            "Validation error - \"temperature\": Input should be less than or equal to 2",
        ),
        (
            json!({"name": "abc", "description": "abc", "systemPrompt": "abc", "askHuman": "yes"}),
            "Validation error - \"askHuman\": Input should be a valid boolean",
        ),
        (
            json!({"name": "abc", "description": "abc", "systemPrompt": "abc", "supportUnits": ["ragbot", "teleport"]}),
            "Validation error - \"supportUnits.1\": Input should be 'chatbot', 'ragbot', \
             'searchbot', 'sequential', 'hierarchical' or 'workflow'",
        ),
        (
            json!({"name": "abc", "description": "abc", "systemPrompt": "abc", "provider": "acme"}),
            "Validation error - \"provider\": Unknown provider 'acme'",
        ),
        (
            json!({"name": "abc", "description": "abc", "systemPrompt": "abc", "extensionIds": ["ext-1", "ext-2"], "mcp_ids": ["m-1"]}),
            "Validation error - \"mcp_ids\": Unknown MCP ids: 'm-1'; \"extensionIds\": Unknown extension ids: 'ext-1', 'ext-2'",
        ),
        (
            json!({"name": "abc", "description": "abc", "systemPrompt": "abc", "colour": "red"}),
            "Validation error - \"colour\": Extra inputs are not permitted",
        ),
    ];
    for (body, expected) in cases {
        let (status, reply) = v1(s, alice, Method::POST, "/create", Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {reply}");
        let message = reply["message"].as_str().unwrap();
        assert!(
            message.starts_with(expected),
            "{body}:\n{message}\nexpected {expected}"
        );
        assert_eq!(reply["data"], Value::Null);
    }

    // Malformed JSON, a route or a method that does not exist: the wrapper still.
    let response = reqwest::Client::new()
        .post(format!("{}{BASE}/create", s.base))
        .bearer_auth(&s.key)
        .header("x-user-id", "alice")
        .header("content-type", "application/json")
        .body("{\"name\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let reply: Value = response.json().await.unwrap();
    assert_eq!(reply["status"], 400);
    assert!(
        reply["message"]
            .as_str()
            .unwrap()
            .starts_with("Validation error - \"body\": JSON decode error"),
        "{reply}"
    );
    let (status, reply) = v1(s, alice, Method::GET, "/no-such-route", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(reply["data"], Value::Null);
    let (status, _) = v1(s, alice, Method::POST, "/get-all", Some(json!({}))).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
    let (status, _) = v1(s, alice, Method::GET, "/x/get-detail/extra", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Bad queries.
    for (query, expected) in [
        (
            "page_number=0",
            "\"page_number\": Input should be greater than or equal to 1",
        ),
        (
            "max_per_page=101",
            "\"max_per_page\": Input should be less than or equal to 100",
        ),
        (
            "page_number=abc",
            "\"page_number\": Input should be a valid integer",
        ),
        (
            "assistant_type=robot",
            "\"assistant_type\": Input should be 'general_assistant' or 'advanced_assistant'",
        ),
    ] {
        let (status, reply) = v1(s, alice, Method::GET, &format!("/get-all?{query}"), None).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}");
        assert!(
            reply["message"].as_str().unwrap().contains(expected),
            "{query}: {reply}"
        );
    }

    // Identity: x-user-id and a key are both needed.
    for who in [
        As {
            key: Some(&s.key),
            user: None,
            role: None,
        },
        As {
            key: None,
            user: Some("alice"),
            role: None,
        },
        As {
            key: Some("vbx_not_a_key"),
            user: Some("alice"),
            role: None,
        },
    ] {
        let (status, reply) = v1(s, who, Method::GET, "/get-all", None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{reply}");
        assert_eq!(reply["data"], Value::Null);
    }
    // x-api-key is a key too.
    let response = reqwest::Client::new()
        .get(format!("{}{BASE}/get-all", s.base))
        .header("x-api-key", &s.key)
        .header("x-user-id", "alice")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}

async fn users_and_tenants_see_only_their_own(s: &TestServer) {
    let other_tenant = s.key_for("other@example.com").await;
    let alice = As::user(&s.key, "alice");
    let bob = As::user(&s.key, "bob");
    let alice_elsewhere = As::user(&other_tenant, "alice");
    let mine = create(s, alice, research_assistant()).await;
    let id = mine["id"].as_str().unwrap();
    create(s, bob, research_assistant()).await;
    create(s, alice_elsewhere, research_assistant()).await;
    for who in [bob, alice_elsewhere] {
        let (status, _) = v1(s, who, Method::GET, &format!("/{id}/get-detail"), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = v1(
            s,
            who,
            Method::PATCH,
            &format!("/{id}/update-config"),
            Some(json!({"temperature": 1})),
        )
        .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }
    let (_, page) = v1(s, alice, Method::GET, "/get-all", None).await;
    assert_eq!(page["data"]["assistants"].as_array().unwrap().len(), 1);
    // An admin lists every user of its tenant, and no other tenant's.
    for role in ["admin", "super_admin"] {
        let admin = As {
            role: Some(role),
            ..alice
        };
        let (_, page) = v1(s, admin, Method::GET, "/get-all", None).await;
        let users: Vec<&str> = page["data"]["assistants"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["userId"].as_str().unwrap())
            .collect();
        assert_eq!(users, ["bob", "alice"], "{role}");
    }
    // Extensions and MCP servers must be the tenant's own.
    let (status, tool) = s
        .post(
            "/tool/create",
            json!({"tool_name": "lookup", "tool_description": "Looks up",
                   "tool_parameters": {"type": "object", "properties": {}},
                   "tool_url": "https://tools.example.com/lookup"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{tool}");
    let tool_id = tool["data"]["tool_id"].as_str().unwrap();
    let (_, mcp) = s
        .post(
            "/mcp/create",
            json!({"mcp_name": "orders", "mcp_url": "https://mcp.example.com/mcp"}),
        )
        .await;
    let mcp_id = mcp["data"]["mcp_id"].as_str().unwrap();
    let with_tools = json!({"name": "Tooled", "description": "Has tools", "systemPrompt": "Use tools.",
        "extensionIds": [tool_id], "mcpIds": [mcp_id]});
    let tooled = create(s, bob, with_tools.clone()).await;
    assert_eq!(tooled["extensionIds"], json!([tool_id]));
    assert_eq!(tooled["mcpIds"], json!([mcp_id]));
    let (status, reply) = v1(
        s,
        alice_elsewhere,
        Method::POST,
        "/create",
        Some(with_tools),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let message = reply["message"].as_str().unwrap();
    assert!(
        message.contains(tool_id) && message.contains(mcp_id),
        "{message}"
    );
}

async fn one_general_assistant_per_user_even_when_first_calls_race(s: &TestServer) {
    let carol = As::user(&s.key, "carol");
    let calls = (0..6).map(|_| {
        v1(
            s,
            carol,
            Method::GET,
            "/get-or-create-general-assistant",
            None,
        )
    });
    let answers = futures_util::future::join_all(calls).await;
    let created = answers
        .iter()
        .filter(|(status, _)| *status == StatusCode::CREATED)
        .count();
    assert_eq!(created, 1, "{answers:?}");
    let ids: std::collections::BTreeSet<&str> = answers
        .iter()
        .map(|(_, reply)| reply["data"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids.len(), 1, "{answers:?}");
    let (status, general) = v1(
        s,
        carol,
        Method::GET,
        "/get-or-create-general-assistant",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let general = &general["data"];
    assert_eq!(general["name"], "General Assistant");
    assert_eq!(general["assistantType"], "general_assistant");
    assert_eq!(general["mainUnit"], "chatbot");
    assert_eq!(general["supportUnits"], json!(["ragbot", "searchbot"]));
    assert_eq!(general["teams"][0]["workflowType"], "chatbot");
    assert_eq!(general["teams"].as_array().unwrap().len(), 3);
    assert!(general.get("mcpIds").is_none(), "{general}");
    let id = general["id"].as_str().unwrap();

    // Its configuration can change; it is not an advanced assistant to update or delete.
    let (status, _) = v1(
        s,
        carol,
        Method::PATCH,
        &format!("/{id}/update-config"),
        Some(json!({"temperature": 0.2})),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    for (method, path, body) in [
        (
            Method::PATCH,
            format!("/{id}/update-advanced-assistant"),
            Some(json!({"name": "Renamed"})),
        ),
        (
            Method::DELETE,
            format!("/{id}/soft-delete-advanced-assistant"),
            None,
        ),
        (
            Method::DELETE,
            format!("/carol/{id}/hard-delete-advanced-assistant"),
            None,
        ),
    ] {
        let (status, reply) = v1(s, carol, method, &path, body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {reply}");
    }
    let (_, page) = v1(
        s,
        carol,
        Method::GET,
        "/get-all?assistantType=general_assistant",
        None,
    )
    .await;
    assert_eq!(page["data"]["assistants"][0]["temperature"], 0.2);
    // Another user gets their own.
    let (status, _) = v1(
        s,
        As::user(&s.key, "dave"),
        Method::GET,
        "/get-or-create-general-assistant",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
}

on_both_backends!(
    the_eight_routes_follow_the_seed,
    every_error_wears_the_wrapper,
    users_and_tenants_see_only_their_own,
    one_general_assistant_per_user_even_when_first_calls_race,
);

/// With `api_v1.trust_user_header`, `x-user-id` alone is a caller of the configured tenant,
/// whose keys then chat with those users' assistants.
async fn a_trusted_gateway_sends_the_user_alone(backend: Backend) {
    let Some(s) = TestServer::start_with(backend, |config| {
        config.api_v1.trust_user_header = true;
        config.api_v1.tenant_email = "gateway@example.com".to_owned();
    })
    .await
    else {
        return;
    };
    let gateway = As {
        key: None,
        user: Some("erin"),
        role: None,
    };
    let created = create(&s, gateway, research_assistant()).await;
    let (_, page) = v1(&s, gateway, Method::GET, "/get-all", None).await;
    assert_eq!(page["data"]["assistants"][0]["id"], created["id"]);
    // The owner@example.com key is another tenant.
    let (status, _) = v1(
        &s,
        As::user(&s.key, "erin"),
        Method::GET,
        &format!("/{}/get-detail", created["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let gateway_key = s.key_for("gateway@example.com").await;
    let (status, _) = v1(
        &s,
        As::user(&gateway_key, "erin"),
        Method::GET,
        &format!("/{}/get-detail", created["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    // x-user-id is still required.
    let (status, _) = v1(
        &s,
        As {
            user: None,
            ..gateway
        },
        Method::GET,
        "/get-all",
        None,
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    s.stop().await;
}

#[tokio::test]
async fn a_trusted_gateway_sends_the_user_alone_sqlite() {
    a_trusted_gateway_sends_the_user_alone(Backend::Sqlite).await;
}

#[tokio::test]
async fn a_trusted_gateway_sends_the_user_alone_postgres() {
    a_trusted_gateway_sends_the_user_alone(Backend::Postgres).await;
}

/// A v1 assistant is chatted with through `/chat/create`: its provider's endpoint and key, its
/// model and temperature reach the LLM; soft-deleted it cannot be chatted with; hard-deleted,
/// its chats are gone.
async fn a_v1_assistant_chats_on_its_provider(backend: Backend) {
    let sim = SimSuite::start(([127, 0, 0, 1], 0).into(), SimOptions::default())
        .await
        .unwrap();
    let Some(s) = TestServer::start_with(backend, |config| {
        sim.configure(config, true);
        config.egress.allow_loopback = true;
        config.llm.providers.insert(
            "acme".to_owned(),
            NamedProvider {
                base_url: config.llm.base_url.clone(),
                api_key: "sk-sim-openai".to_owned(),
                model: "acme-default".to_owned(),
            },
        );
    })
    .await
    else {
        return;
    };
    let frank = As::user(&s.key, "frank");
    let data = create(
        &s,
        frank,
        json!({"name": "Acme helper", "description": "Helps on Acme",
               "systemPrompt": "You are Acme's helper.", "provider": "acme",
               "modelName": "acme-large", "temperature": 0.25}),
    )
    .await;
    let id = data["id"].as_str().unwrap().to_owned();
    let (status, chat) = s.post("/chat/create", json!({"assistant_id": id})).await;
    assert_eq!(status, StatusCode::OK, "{chat}");
    assert_eq!(chat["data"]["messages"], json!([]), "the user writes first");
    let chat_id = chat["data"]["chat_id"].as_str().unwrap().to_owned();
    let (status, reply) = s
        .post(
            &format!("/chat/message/{chat_id}"),
            json!({"text": "I need a table"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let request = sim.openai.requests().pop().unwrap();
    assert_eq!(request.body["model"], "acme-large");
    assert_eq!(request.body["temperature"], 0.25);
    assert_eq!(
        request.body["messages"][0]["content"],
        "You are Acme's helper."
    );
    assert_eq!(
        request.authorization.as_deref(),
        Some("Bearer sk-sim-openai")
    );

    // A new provider without a model takes that provider's default.
    let (_, updated) = v1(
        &s,
        frank,
        Method::PATCH,
        &format!("/{id}/update-config"),
        Some(json!({"provider": "openai"})),
    )
    .await;
    assert_eq!(updated["status"], 200, "{updated}");
    let (_, detail) = v1(&s, frank, Method::GET, &format!("/{id}/get-detail"), None).await;
    assert_eq!(detail["data"]["provider"], "openai");
    assert_ne!(detail["data"]["modelName"], "acme-large");

    v1(
        &s,
        frank,
        Method::DELETE,
        &format!("/{id}/soft-delete-advanced-assistant"),
        None,
    )
    .await;
    let (status, _) = s.post("/chat/create", json!({"assistant_id": id})).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = s.get(&format!("/chat/details/{chat_id}")).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the chat stays until the hard delete"
    );
    let (status, _) = v1(
        &s,
        frank,
        Method::DELETE,
        &format!("/frank/{id}/hard-delete-advanced-assistant"),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = s.get(&format!("/chat/details/{chat_id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v1_assistant_chats_on_its_provider_sqlite() {
    a_v1_assistant_chats_on_its_provider(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_v1_assistant_chats_on_its_provider_postgres() {
    a_v1_assistant_chats_on_its_provider(Backend::Postgres).await;
}

/// The eight routes and the builder are in `/openapi.json` (its validity as OpenAPI 3.1 is
/// checked in `server.rs`).
#[tokio::test]
async fn openapi_lists_the_v1_routes_and_the_builder() {
    let s = TestServer::start(Backend::Sqlite).await.unwrap();
    let (_, doc) = s.call(Method::GET, "/openapi.json", None, None).await;
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/api/v1/assistant/get-all", "get"),
        ("/api/v1/assistant/get-or-create-general-assistant", "get"),
        ("/api/v1/assistant/create", "post"),
        ("/api/v1/assistant/{assistant_id}/get-detail", "get"),
        (
            "/api/v1/assistant/{assistant_id}/update-advanced-assistant",
            "patch",
        ),
        ("/api/v1/assistant/{assistant_id}/update-config", "patch"),
        (
            "/api/v1/assistant/{assistant_id}/soft-delete-advanced-assistant",
            "delete",
        ),
        (
            "/api/v1/assistant/{user_id}/{assistant_id}/hard-delete-advanced-assistant",
            "delete",
        ),
        ("/assistant_builder/invoke", "post"),
    ] {
        assert!(
            paths.get(path).and_then(|p| p.get(method)).is_some(),
            "{method} {path} missing"
        );
    }
    let schemes = &doc["components"]["securitySchemes"];
    assert!(schemes["api_key"].is_object() && schemes["integrations_key"].is_object());
    s.stop().await;
}
