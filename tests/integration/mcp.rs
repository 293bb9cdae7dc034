//! MCP servers: their REST resource (owner-scoped, headers masked, URLs under the address
//! policy), assistants naming them, and a chat whose model calls an MCP tool of the sim's MCP
//! server; a dead server costs only its tools.

use reqwest::StatusCode;
use serde_json::{Value, json};
use voxbridge::sim::suite::{SimOptions, SimSuite};

use crate::common::{Backend, TestServer};
use crate::on_both_backends;

async fn mcp_servers_are_owner_scoped_masked_and_checked(s: &TestServer) {
    // Loopback is refused unless the operator allows it.
    let (status, reply) = s
        .post(
            "/mcp/create",
            json!({"mcp_name": "local", "mcp_url": "http://127.0.0.1:9/mcp"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert_eq!(reply["data"]["errors"][0]["field"], "mcp_url");
    for (body, field) in [
        (
            json!({"mcp_url": "https://mcp.example.com/mcp"}),
            "mcp_name",
        ),
        (json!({"mcp_name": "x"}), "mcp_url"),
        (
            json!({"mcp_name": "x", "mcp_url": "https://mcp.example.com/mcp", "mcp_headers": {"bad name": "v"}}),
            "mcp_headers.bad name",
        ),
    ] {
        let (status, reply) = s.post("/mcp/create", body.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {reply}");
        assert_eq!(reply["data"]["errors"][0]["field"], field, "{reply}");
    }

    let (status, reply) = s
        .post(
            "/mcp/create",
            json!({"mcp_name": "orders", "mcp_url": "https://mcp.example.com/mcp",
                   "mcp_headers": {"Authorization": "Bearer mcp-secret-9876", "X-Team": "support"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let id = reply["data"]["mcp_id"].as_str().unwrap().to_owned();
    let (_, details) = s.get(&format!("/mcp/details/{id}")).await;
    let headers = &details["data"]["mcp_headers"];
    assert_eq!(headers["Authorization"], "****9876");
    assert_eq!(headers["X-Team"], "support");

    // A masked value sent back keeps the stored secret.
    let (status, _) = s
        .patch(
            &format!("/mcp/update/{id}"),
            json!({"mcp_name": "orders-v2", "mcp_headers": headers}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (_, list) = s.get("/mcp/list").await;
    assert_eq!(list["data"][0]["mcp_name"], "orders-v2");
    assert_eq!(list["data"][0]["mcp_headers"]["Authorization"], "****9876");

    // Assistants name their MCP servers; unknown or foreign ids are refused.
    let assistant = |mcp_ids: Value| {
        json!({"assistant_name": "With MCP", "assistant_description": "d", "assistant_prompt": "p",
               "assistant_tts_model": "cartesia",
               "assistant_tts_config": {"voice_id": "a167e0f3-df7e-4277-976b-be2f952fa275"},
               "mcp_ids": mcp_ids})
    };
    let (status, reply) = s.post("/assistant/create", assistant(json!([id]))).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let assistant_id = reply["data"]["assistant_id"].as_str().unwrap();
    let (_, details) = s.get(&format!("/assistant/details/{assistant_id}")).await;
    assert_eq!(details["data"]["mcp_ids"], json!([id]));
    let (status, reply) = s
        .post("/assistant/create", assistant(json!(["no-such-server"])))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(reply["data"]["errors"][0]["field"], "mcp_ids[0]");

    let other = s.key_for("other@example.com").await;
    let (status, _) = s
        .call(
            reqwest::Method::GET,
            &format!("/mcp/details/{id}"),
            Some(&other),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = s.delete(&format!("/mcp/delete/{id}")).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = s.get(&format!("/mcp/details/{id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

on_both_backends!(mcp_servers_are_owner_scoped_masked_and_checked);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_calls_an_mcp_tool_and_a_dead_server_costs_only_its_tools() {
    let sim = SimSuite::start(([127, 0, 0, 1], 0).into(), SimOptions::default())
        .await
        .unwrap();
    let s = TestServer::start_with(Backend::Sqlite, |config| {
        sim.configure(config, true);
        config.egress.allow_loopback = true;
    })
    .await
    .unwrap();
    let (_, orders) = s
        .post(
            "/mcp/create",
            json!({"mcp_name": "orders", "mcp_url": format!("{}/mcp", sim.base_url),
                   "mcp_headers": {"X-Api-Key": "k-1"}}),
        )
        .await;
    let dead_url = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        format!("http://{addr}/mcp")
    };
    let (_, dead) = s
        .post(
            "/mcp/create",
            json!({"mcp_name": "gone", "mcp_url": dead_url}),
        )
        .await;
    let (status, reply) = s
        .post(
            "/assistant/create",
            json!({"assistant_name": "Orders", "assistant_description": "d",
                   "assistant_prompt": "You track orders.", "assistant_tts_model": "cartesia",
                   "assistant_tts_config": {"voice_id": "a167e0f3-df7e-4277-976b-be2f952fa275"},
                   "mcp_ids": [dead["data"]["mcp_id"], orders["data"]["mcp_id"]]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let assistant_id = reply["data"]["assistant_id"].as_str().unwrap();
    let (_, created) = s
        .post("/chat/create", json!({"assistant_id": assistant_id}))
        .await;
    let chat_id = created["data"]["chat_id"].as_str().unwrap();
    let (status, reply) = s
        .post(
            &format!("/chat/message/{chat_id}"),
            json!({"text": "Where is my order 7474839?"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let texts: Vec<&str> = reply["data"]["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        [
            "Let me look that up.",
            "Order 7474839 has shipped and arrives tomorrow."
        ]
    );
    // The model was offered the live server's tools only.
    let requests = sim.openai.requests();
    let tools: Vec<&str> = requests[0].body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert!(tools.contains(&"orders__get_order_status"), "{tools:?}");
    assert!(!tools.iter().any(|t| t.starts_with("gone__")), "{tools:?}");
    assert!(sim.mcp.methods().contains(&"tools/call".to_owned()));
    assert!(
        sim.mcp
            .headers()
            .iter()
            .all(|h| h.get("x-api-key").is_some_and(|v| v == "k-1"))
    );
    s.stop().await;
}
