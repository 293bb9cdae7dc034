//! Text chats on the agent core, through the fake LLM: create, message (JSON and SSE), tools,
//! `end_call`, end by API and by idleness, the end webhook, bad input, owner scoping, and the
//! claim that keeps two messages from extending one history at once. On SQLite and PostgreSQL.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use voxbridge::sim::suite::{SimOptions, SimSuite};

use crate::call_lab::{CallLab, LabOptions};
use crate::common::{Backend, TestServer};

const GREETING: &str = "Hi {{name|there}}! How can I help?";

/// A server on `backend` whose providers are the fakes, and an assistant with a greeting.
async fn chat_server(backend: Backend) -> Option<(TestServer, SimSuite, String)> {
    let sim = SimSuite::start(([127, 0, 0, 1], 0).into(), SimOptions::default())
        .await
        .unwrap();
    let server = TestServer::start_with(backend, |config| {
        sim.configure(config, true);
        config.egress.allow_loopback = true;
    })
    .await?;
    let (status, reply) = server
        .post(
            "/assistant/create",
            json!({"assistant_name": "Chatty", "assistant_description": "d",
                   "assistant_prompt": "You help {{name|people}}.",
                   "assistant_tts_model": "cartesia",
                   "assistant_tts_config": {"voice_id": "a167e0f3-df7e-4277-976b-be2f952fa275"},
                   "assistant_start_instruction": GREETING}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let id = reply["data"]["assistant_id"].as_str().unwrap().to_owned();
    Some((server, sim, id))
}

async fn create_chat(s: &TestServer, assistant_id: &str) -> String {
    let (status, reply) = s
        .post(
            "/chat/create",
            json!({"assistant_id": assistant_id, "metadata": {"name": "Ada"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    reply["data"]["chat_id"].as_str().unwrap().to_owned()
}

async fn a_chat_goes_from_greeting_to_goodbye(backend: Backend) {
    let Some((s, _sim, assistant_id)) = chat_server(backend).await else {
        return;
    };
    let (status, created) = s
        .post(
            "/chat/create",
            json!({"assistant_id": assistant_id, "metadata": {"name": "Ada"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{created}");
    let data = &created["data"];
    assert_eq!(
        data["messages"],
        json!([{"role": "assistant", "text": "Hi Ada! How can I help?"}])
    );
    assert_eq!(data["missing_variables"], json!([]));
    let chat_id = data["chat_id"].as_str().unwrap();

    let (status, reply) = s
        .post(
            &format!("/chat/message/{chat_id}"),
            json!({"text": "I need a table"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["data"]["ended"], false);
    let said = reply["data"]["messages"][0]["text"].as_str().unwrap();
    assert!(said.contains("I need a table"), "{said}");

    let (status, reply) = s
        .post(
            &format!("/chat/message/{chat_id}"),
            json!({"text": "Thanks, bye"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["data"]["ended"], true, "end_call ends the chat");
    let (status, reply) = s
        .post(
            &format!("/chat/message/{chat_id}"),
            json!({"text": "hello?"}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{reply}");

    let (status, details) = s.get(&format!("/chat/details/{chat_id}")).await;
    assert_eq!(status, StatusCode::OK, "{details}");
    let d = &details["data"];
    assert_eq!(d["status"], "completed");
    assert_eq!(d["end_reason"], "assistant_ended_chat");
    let roles: Vec<&str> = d["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        [
            "assistant",
            "user",
            "assistant",
            "user",
            "assistant",
            "tool"
        ],
        "{d}"
    );
    assert_eq!(d["rendered_prompt"], "You help Ada.");
    // Each model reply's timings: numbered in order, its first token after its request, the
    // goodbye's end_call among its tools.
    let turns = d["turns"].as_array().expect("turns[]");
    assert_eq!(turns.len(), 2, "{d}");
    for (i, turn) in turns.iter().enumerate() {
        assert_eq!(turn["turn"], i as i64 + 1);
        assert_eq!(turn["source"], "model");
        let request = turn["stamps"]["llm_request_ms"]
            .as_i64()
            .expect("a request");
        let first = turn["stamps"]["llm_first_token_ms"]
            .as_i64()
            .expect("a token");
        assert!(
            first >= request && turn["ended_ms"].as_i64() >= Some(first),
            "{turn}"
        );
    }
    assert_eq!(turns[1]["tools"][0]["name"], "end_call", "{d}");

    let (_, list) = s.get("/chat/list").await;
    assert_eq!(list["data"]["total"], 1);
    assert_eq!(list["data"]["chats"][0]["chat_id"], chat_id);
    let (_, calls) = s.get("/call/list").await;
    assert_eq!(calls["data"]["total"], 0, "chats are not calls");
    let (status, _) = s.get(&format!("/call/details/{chat_id}")).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_goes_from_greeting_to_goodbye_on_sqlite() {
    a_chat_goes_from_greeting_to_goodbye(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_goes_from_greeting_to_goodbye_on_postgres() {
    a_chat_goes_from_greeting_to_goodbye(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reply_streams_as_server_sent_events() {
    let (s, _sim, assistant_id) = chat_server(Backend::Sqlite).await.unwrap();
    let chat_id = create_chat(&s, &assistant_id).await;
    let response = reqwest::Client::new()
        .post(format!("{}/chat/message/{chat_id}", s.base))
        .bearer_auth(&s.key)
        .header("accept", "text/event-stream")
        .json(&json!({"text": "Tell me something long"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/event-stream")
    );
    let body = response.text().await.unwrap();
    let events: Vec<(&str, Value)> = body
        .split("\n\n")
        .filter(|block| !block.trim().is_empty())
        .map(|block| {
            let event = block
                .lines()
                .find_map(|l| l.strip_prefix("event: "))
                .unwrap_or("message");
            let data = block
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .unwrap_or("null");
            (event, serde_json::from_str(data).unwrap())
        })
        .collect();
    let (last, done) = events.last().unwrap();
    assert_eq!(*last, "done", "{body}");
    let streamed: String = events
        .iter()
        .filter(|(e, _)| *e == "delta")
        .map(|(_, d)| d["text"].as_str().unwrap())
        .collect();
    assert!(
        events.iter().filter(|(e, _)| *e == "delta").count() > 1,
        "{body}"
    );
    assert_eq!(
        streamed.trim(),
        done["messages"][0]["text"].as_str().unwrap()
    );

    // Errors before the first word are ordinary answers, not streams.
    let response = reqwest::Client::new()
        .post(format!("{}/chat/message/not-a-chat", s.base))
        .bearer_auth(&s.key)
        .header("accept", "text/event-stream")
        .json(&json!({"text": "hi"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_messages_and_other_owners_chats_are_refused() {
    let (s, _sim, assistant_id) = chat_server(Backend::Sqlite).await.unwrap();
    let chat_id = create_chat(&s, &assistant_id).await;
    let path = format!("/chat/message/{chat_id}");
    for (body, status) in [
        (json!({"text": ""}), StatusCode::BAD_REQUEST),
        (json!({"text": "   "}), StatusCode::BAD_REQUEST),
        (json!({}), StatusCode::BAD_REQUEST),
        (json!({"text": 5}), StatusCode::BAD_REQUEST),
        (
            json!({"text": "x".repeat(100 * 1024)}),
            StatusCode::BAD_REQUEST,
        ),
        (json!({"text": "hi", "extra": 1}), StatusCode::BAD_REQUEST),
    ] {
        let (got, reply) = s.post(&path, body.clone()).await;
        assert_eq!(got, status, "{reply}");
        assert_eq!(reply["success"], false);
    }
    let (status, _) = s
        .post("/chat/message/no-such-chat", json!({"text": "hi"}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = s
        .post("/chat/create", json!({"assistant_id": "no-such-assistant"}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = s
        .post(
            "/chat/create",
            json!({"assistant_id": assistant_id, "metadata": [1]}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let other = s.key_for("other@example.com").await;
    for (method, path) in [
        (Method::GET, format!("/chat/details/{chat_id}")),
        (Method::POST, format!("/chat/end/{chat_id}")),
    ] {
        let (status, _) = s.call(method, &path, Some(&other), None).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
    }
    let (status, _) = s
        .call(
            Method::POST,
            &path,
            Some(&other),
            Some(json!({"text": "hi"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    let (status, _) = s.post(&format!("/chat/end/{chat_id}"), json!({})).await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = s.post(&format!("/chat/end/{chat_id}"), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT, "already ended");
    let (status, _) = s.post(&path, json!({"text": "hi"})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_messages_at_once_do_not_share_a_history() {
    let (s, sim, assistant_id) = chat_server(Backend::Sqlite).await.unwrap();
    let chat_id = create_chat(&s, &assistant_id).await;
    sim.openai.set_latency(voxbridge::sim::Latency {
        first_byte: Duration::from_millis(800),
        per_chunk: Duration::ZERO,
    });
    let path = format!("/chat/message/{chat_id}");
    let (a, b) = tokio::join!(
        s.post(&path, json!({"text": "first"})),
        s.post(&path, json!({"text": "second"}))
    );
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(
        statuses,
        [StatusCode::OK, StatusCode::CONFLICT],
        "{a:?} {b:?}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_chat_sends_its_webhook_and_an_idle_one_ends_by_itself() {
    let lab = CallLab::start(LabOptions {
        configure: Box::new(|config| config.chat_idle_timeout_secs = 1),
        ..LabOptions::default()
    })
    .await;
    let chat_id = create_chat(&lab.server, &lab.assistant_id).await;
    let (status, _) = lab
        .server
        .post(
            &format!("/chat/message/{chat_id}"),
            json!({"text": "Hello"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    // Nobody writes again: the chat ends as idle and reports.
    let details = wait_for_end(&lab.server, &chat_id).await;
    assert_eq!(details["end_reason"], "idle_timeout", "{details}");
    for _ in 0..100 {
        if lab.webhooks.count() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (headers, body) = lab.webhooks.received.lock().unwrap()[0].clone();
    assert_eq!(headers["x-voxbridge-event"], "chat.ended");
    let report: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["event"], "chat.ended");
    assert_eq!(report["chat_id"], chat_id.as_str());
    assert!(report.get("call_id").is_none(), "{report}");
    let texts: Vec<&str> = report["transcript"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["role"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["assistant", "user", "assistant"], "{report}");
    lab.stop().await;
}

async fn wait_for_end(s: &TestServer, chat_id: &str) -> Value {
    for _ in 0..200 {
        let (_, details) = s.get(&format!("/chat/details/{chat_id}")).await;
        if details["data"]["status"] == "completed" {
            return details["data"].clone();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the chat never ended");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_chat_uses_the_assistants_http_tools() {
    use axum::routing::post;
    let app = axum::Router::new().route(
        "/weather",
        post(|axum::Json(body): axum::Json<Value>| async move {
            axum::Json(json!({"city": body["city"], "summary": "sunny"}))
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tool_url = format!("http://{}/weather", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let (s, _sim, assistant_id) = chat_server(Backend::Sqlite).await.unwrap();
    let (status, reply) = s
        .post(
            "/tool/create",
            json!({"tool_name": "get_weather", "tool_description": "Weather for a city",
                   "tool_parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
                   "tool_url": tool_url}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let tool_id = reply["data"]["tool_id"].as_str().unwrap();
    let (status, _) = s
        .patch(
            &format!("/assistant/update/{assistant_id}"),
            json!({"tool_ids": [tool_id]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let chat_id = create_chat(&s, &assistant_id).await;
    let (status, reply) = s
        .post(
            &format!("/chat/message/{chat_id}"),
            json!({"text": "What's the weather in Paris?"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let messages = reply["data"]["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2, "before and after the tool: {reply}");
    assert!(
        messages[1]["text"].as_str().unwrap().contains("sunny"),
        "{reply}"
    );
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_ended_chat_is_analysed_and_reported_with_its_analysis() {
    let lab = CallLab::start(LabOptions::default()).await;
    let schema = json!({
        "type": "object",
        "properties": {"order_number": {"type": ["string", "null"]}},
        "required": ["order_number"]
    });
    let (status, reply) = lab
        .server
        .patch(
            &format!("/assistant/update/{}", lab.assistant_id),
            json!({"assistant_analysis": {"summary": true, "structured_data_schema": schema}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let chat_id = create_chat(&lab.server, &lab.assistant_id).await;
    let (status, _) = lab
        .server
        .post(
            &format!("/chat/message/{chat_id}"),
            json!({"text": "My order AB-12345 never arrived"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = lab
        .server
        .post(&format!("/chat/end/{chat_id}"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK);
    let mut details = Value::Null;
    for _ in 0..200 {
        details = lab.server.get(&format!("/chat/details/{chat_id}")).await.1;
        if details["data"]["analysis_status"] == "completed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let analysis = &details["data"]["analysis"];
    assert_eq!(
        analysis["structured_data"]["order_number"], "AB-12345",
        "{details}"
    );
    for _ in 0..100 {
        if lab.webhooks.count() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, body) = lab.webhooks.received.lock().unwrap()[0].clone();
    let report: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(report["analysis_status"], "completed", "{report}");
    assert_eq!(
        report["analysis"]["structured_data"],
        analysis["structured_data"]
    );
    assert_eq!(report["end_reason"], "ended_by_api");
    lab.stop().await;
}
