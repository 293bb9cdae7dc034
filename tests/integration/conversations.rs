//! The conversations API of seed 004 through the fake LLM: routes with and without the trailing
//! slash, the case gathered message by message (never asked again, never erased), delivered once
//! when complete, Django REST Framework's error shapes, and owner scoping. On SQLite and
//! PostgreSQL.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use voxbridge::sim::suite::{SimOptions, SimSuite};

use crate::common::{Backend, TestServer};

/// A receiver that keeps every request.
#[derive(Clone, Default)]
struct Receiver(Arc<Mutex<Vec<(HeaderMap, String)>>>);

impl Receiver {
    async fn serve(&self) -> String {
        let kept = self.0.clone();
        let app = axum::Router::new().route(
            "/cases",
            axum::routing::post(move |headers: HeaderMap, body: String| {
                let kept = kept.clone();
                async move {
                    kept.lock().unwrap().push((headers, body));
                    StatusCode::OK
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/cases", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    }

    fn bodies(&self) -> Vec<Value> {
        self.0
            .lock()
            .unwrap()
            .iter()
            .map(|(_, b)| serde_json::from_str(b).unwrap())
            .collect()
    }
}

async fn server(backend: Backend, receiver: &Receiver) -> Option<(TestServer, SimSuite)> {
    let sim = SimSuite::start(([127, 0, 0, 1], 0).into(), SimOptions::default())
        .await
        .unwrap();
    let url = receiver.serve().await;
    let server = TestServer::start_with(backend, |config| {
        sim.configure(config, true);
        config.egress.allow_loopback = true;
        config.webhook.retry_base_ms = 100;
        config.conversations.case_webhook_url = url;
    })
    .await?;
    Some((server, sim))
}

/// A raw call answering status and JSON (the envelope is not this API's shape).
async fn send(
    s: &TestServer,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    s.call(method, path, Some(&s.key), body).await
}

async fn say(s: &TestServer, id: &str, message: &str) -> String {
    let (status, reply) = send(
        s,
        Method::PATCH,
        &format!("/api/conversations/{id}/"),
        Some(json!({ "message": message })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    reply["bot_message"].as_str().unwrap().to_owned()
}

async fn case_of(s: &TestServer, id: &str) -> Value {
    let (status, details) = send(s, Method::GET, &format!("/api/conversations/{id}"), None).await;
    assert_eq!(status, StatusCode::OK, "{details}");
    details
}

async fn a_case_is_gathered_message_by_message(backend: Backend) {
    let receiver = Receiver::default();
    let Some((s, sim)) = server(backend, &receiver).await else {
        return;
    };
    let (status, created) = send(
        &s,
        Method::POST,
        "/api/conversations/",
        Some(json!({"function": "customer_support"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    for field in ["conversation_id", "bot_id", "human_user_id"] {
        let id = created[field].as_str().unwrap();
        assert!(uuid::Uuid::parse_str(id).is_ok(), "{field}: {id}");
    }
    assert_eq!(created.as_object().unwrap().len(), 3, "{created}");
    let id = created["conversation_id"].as_str().unwrap().to_owned();

    say(&s, &id, "hello, i have an issue").await;
    let d = case_of(&s, &id).await;
    let case = d["case"].as_object().unwrap();
    let fields: Vec<&String> = case.keys().collect();
    assert_eq!(
        fields,
        [
            "order_number",
            "problem_category",
            "problem_description",
            "urgency_level"
        ]
    );
    for field in ["order_number", "problem_category", "urgency_level"] {
        assert_eq!(case[field], Value::Null, "{d}");
    }
    assert_eq!(d["complete"], false);

    say(&s, &id, "my order number is 7474839").await;
    let d = case_of(&s, &id).await;
    assert_eq!(d["case"]["order_number"], "7474839");
    // The bot was told what it has and asked only for the rest.
    let requests = sim.openai.requests();
    let bot_request = requests
        .iter()
        .rev()
        .find(|r| r.body.get("response_format").is_none())
        .unwrap();
    let instructions = bot_request.body["messages"][0]["content"].as_str().unwrap();
    let (given, missing) = instructions
        .split_once("Still missing")
        .expect("the briefing");
    assert!(
        given.contains("the order number: 7474839"),
        "{instructions}"
    );
    assert!(!missing.contains("the order number"), "{instructions}");
    assert!(missing.contains("the problem category"), "{instructions}");

    say(
        &s,
        &id,
        "i paid a deposit when i rented a car but it's been more than 2 weeks and i didnt get the refund for that deposit",
    )
    .await;
    let d = case_of(&s, &id).await;
    assert_eq!(d["case"]["order_number"], "7474839", "never erased: {d}");
    assert_eq!(d["case"]["problem_category"], "billing", "{d}");
    assert!(
        d["case"]["problem_description"]
            .as_str()
            .unwrap()
            .contains("refund"),
        "{d}"
    );
    assert!(receiver.bodies().is_empty(), "not complete yet");

    say(&s, &id, "please treat it as urgent").await;
    let d = case_of(&s, &id).await;
    assert_eq!(d["case"]["urgency_level"], "high", "{d}");
    assert_eq!(d["complete"], true);
    assert!(d["completed_at"].is_string());
    let roles: Vec<&str> = d["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(
        roles,
        [
            "human", "bot", "human", "bot", "human", "bot", "human", "bot"
        ]
    );

    // Delivered once, however the conversation goes on.
    say(&s, &id, "thanks, how will you follow up?").await;
    for _ in 0..100 {
        if !receiver.bodies().is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let delivered = receiver.bodies();
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    assert_eq!(delivered[0]["event"], "conversation.case_completed");
    assert_eq!(delivered[0]["conversation_id"], id.as_str());
    assert_eq!(delivered[0]["case"], d["case"]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_case_is_gathered_message_by_message_on_sqlite() {
    a_case_is_gathered_message_by_message(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_case_is_gathered_message_by_message_on_postgres() {
    a_case_is_gathered_message_by_message(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_answer_with_and_without_the_trailing_slash_and_in_drf_shapes() {
    let receiver = Receiver::default();
    let (s, _sim) = server(Backend::Sqlite, &receiver).await.unwrap();
    let (status, first) = send(
        &s,
        Method::POST,
        "/api/conversations",
        Some(json!({"function": "customer_support"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    let known = first["human_user_id"].as_str().unwrap();
    let (status, second) = send(
        &s,
        Method::POST,
        "/api/conversations/",
        Some(json!({"function": "customer_support", "human_user_id": known})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(second["human_user_id"], known, "a known person continues");
    assert_eq!(second["bot_id"], first["bot_id"], "one bot per function");
    let id = first["conversation_id"].as_str().unwrap();
    let (status, reply) = send(
        &s,
        Method::PATCH,
        &format!("/api/conversations/{id}"),
        Some(json!({"message": "hi"})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{reply}");

    for (body, field) in [
        (json!({"function": "sales"}), "function"),
        (json!({}), "function"),
        (
            json!({"function": "customer_support", "human_user_id": "nope"}),
            "human_user_id",
        ),
    ] {
        let (status, reply) =
            send(&s, Method::POST, "/api/conversations/", Some(body.clone())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {reply}");
        assert!(reply[field][0].is_string(), "{body}: {reply}");
    }
    let (_, reply) = send(
        &s,
        Method::POST,
        "/api/conversations/",
        Some(json!({"function": "sales"})),
    )
    .await;
    assert!(
        reply["function"][0]
            .as_str()
            .unwrap()
            .contains("customer_support"),
        "the valid functions are named: {reply}"
    );
    let path = format!("/api/conversations/{id}/");
    for (body, status) in [
        (json!({"message": ""}), StatusCode::BAD_REQUEST),
        (json!({}), StatusCode::BAD_REQUEST),
        (json!({"message": 5}), StatusCode::BAD_REQUEST),
        (
            json!({"message": "x".repeat(100 * 1024)}),
            StatusCode::BAD_REQUEST,
        ),
    ] {
        let (got, reply) = send(&s, Method::PATCH, &path, Some(body.clone())).await;
        assert_eq!(got, status, "{body}: {reply}");
        assert!(reply.get("success").is_none(), "not the envelope: {reply}");
    }
    let (status, reply) = s
        .call_raw(Method::PATCH, &path, "application/json", "{not json")
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        reply["detail"]
            .as_str()
            .unwrap()
            .starts_with("JSON parse error"),
        "{reply}"
    );
    for (method, path) in [
        (Method::GET, "/api/conversations/no-such-id/".to_owned()),
        (Method::PATCH, "/api/conversations/no-such-id/".to_owned()),
    ] {
        let body = (method == Method::PATCH).then(|| json!({"message": "hi"}));
        let (status, reply) = send(&s, method, &path, body).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
        assert_eq!(reply, json!({"detail": "Not found."}));
    }
    let other = s.key_for("other@example.com").await;
    let (status, _) = s.call(Method::GET, &path, Some(&other), None).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "another owner's conversation"
    );
    let (status, reply) = s.call(Method::GET, &path, None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(reply["detail"].is_string(), "{reply}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_voice_assistant_playing_the_function_ends_its_calls_with_the_case() {
    use crate::call_lab::{CallLab, LabOptions, after_agent, clip};
    use voxbridge::sim::caller::CallerScript;
    let mut options = LabOptions {
        utterances: vec!["My order number is 7474839 and the refund never came, it's urgent."],
        ..LabOptions::default()
    };
    options.assistant["assistant_function"] = json!("customer_support");
    let lab = CallLab::start(options).await;
    let (_, details) = lab
        .server
        .get(&format!("/assistant/details/{}", lab.assistant_id))
        .await;
    assert_eq!(details["data"]["assistant_function"], "customer_support");
    let script = after_agent(CallerScript::new())
        .say(clip("book_table"))
        .wait(Duration::from_secs(3))
        .hang_up();
    let sid = lab.call_in(script);
    let call = lab.finished_call(&sid).await;
    assert!(
        call["rendered_prompt"]
            .as_str()
            .unwrap()
            .starts_with("You are the customer support assistant"),
        "{call}"
    );
    let call_id = call["call_id"].as_str().unwrap();
    let mut analysis = Value::Null;
    for _ in 0..200 {
        let (_, d) = lab.server.get(&format!("/call/details/{call_id}")).await;
        if d["data"]["analysis_status"] == "completed" {
            analysis = d["data"]["analysis"].clone();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let case = &analysis["structured_data"];
    assert_eq!(case["order_number"], "7474839", "{analysis}");
    assert_eq!(case["problem_category"], "billing", "{analysis}");
    assert_eq!(case["urgency_level"], "high", "{analysis}");
    lab.stop().await;
}
