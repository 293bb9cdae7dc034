//! The sales assistant of seed 003 through the sim LLM: the seed's own example requests
//! (`fixtures/sales/`) answered with the seed's own responses from the demo catalog; states that
//! never change (continuing an older one branches); the welcome message in the history; the
//! seed's error shape (`google.rpc.Status`) for every kind of bad input; owner and business
//! scoping. On SQLite and PostgreSQL.

use reqwest::StatusCode;
use serde_json::{Value, json};
use voxbridge::sim::suite::{SimOptions, SimSuite};

use crate::catalog::demo_catalog;
use crate::common::{Backend, TestServer};

const BUSINESS: &str = "demo-store";
const SEED_AGENT: &str = "018e7dc6-d9f8-48aa-1751-b57fdce7403e";
const SEED_STATE: &str = "018e7d88-792a-a9c3-b24b-b6e3055923fb";

fn route(business: &str) -> String {
    format!("/internal/v1/businesses/{business}/ai/sales_assistant_v2/invoke/v1")
}

fn fixture(name: &str) -> Value {
    let path = format!("{}/fixtures/sales/{name}", env!("CARGO_MANIFEST_DIR"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

/// A server on the sim providers, the demo catalog in `demo-store`, and a shop assistant.
struct Shop {
    server: TestServer,
    sim: SimSuite,
    agent: String,
    client: reqwest::Client,
}

impl Shop {
    async fn open(backend: Backend) -> Option<Self> {
        let sim = SimSuite::start(([127, 0, 0, 1], 0).into(), SimOptions::default())
            .await
            .unwrap();
        let server = TestServer::start_with(backend, |config| sim.configure(config, true)).await?;
        let (status, reply) = server
            .call(
                reqwest::Method::PUT,
                &format!("/catalog/{BUSINESS}/products"),
                Some(&server.key),
                Some(demo_catalog()),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        let agent = agent(&server, &server.key).await;
        Some(Self {
            server,
            sim,
            agent,
            // A fresh connection per request: many of these requests are refused before their
            // body is read, after which the server closes the connection, and a pooled client
            // could send the next request into that closing socket (IncompleteMessage; seen once
            // in CI).
            client: reqwest::Client::builder()
                .pool_max_idle_per_host(0)
                .build()
                .unwrap(),
        })
    }

    /// Sends `body` with `key` in `x-api-key` (none: no header).
    async fn invoke_as(
        &self,
        business: &str,
        key: Option<&str>,
        body: Value,
    ) -> (StatusCode, Value) {
        let mut request = self
            .client
            .post(format!("{}{}", self.server.base, route(business)))
            .json(&body);
        if let Some(key) = key {
            request = request.header("x-api-key", key);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: {text}")),
        )
    }

    async fn invoke(&self, body: Value) -> (StatusCode, Value) {
        self.invoke_as(BUSINESS, Some(&self.server.key), body).await
    }

    async fn ok(&self, body: Value) -> Value {
        let (status, reply) = self.invoke(body).await;
        assert_eq!(status, StatusCode::OK, "{reply}");
        reply["response"].clone()
    }

    async fn stop(self) {
        self.server.stop().await;
        drop(self.sim);
    }
}

async fn agent(server: &TestServer, key: &str) -> String {
    let (status, reply) = server
        .call(
            reqwest::Method::POST,
            "/assistant/create",
            Some(key),
            Some(json!({
                "assistant_name": "Shop",
                "assistant_description": "Sells dresses",
                "assistant_prompt": "You are the shop assistant of a children's clothing store.",
                "assistant_tts_model": "cartesia",
                "assistant_tts_config": {"voice_id": "a167e0f3-df7e-4277-976b-be2f952fa275"},
            })),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    reply["data"]["assistant_id"].as_str().unwrap().to_owned()
}

fn say(text: &str) -> Value {
    json!({"messageEvent": {"role": "USER", "content": {"textContent": text}}})
}

fn texts(response: &Value) -> Vec<String> {
    response["responseEvents"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["messageEvent"]["content"]["textContent"]["text"].as_str())
        .map(str::to_owned)
        .collect()
}

/// `response` with its ids and the products' links blanked, to compare with the seed's.
fn comparable(mut response: Value) -> Value {
    response["stateId"] = json!("");
    response["sessionId"] = json!("");
    for event in response["responseEvents"].as_array_mut().unwrap() {
        let products = event
            .get_mut("recommendationEvent")
            .and_then(|r| r.get_mut("products"))
            .and_then(Value::as_array_mut);
        for p in products.into_iter().flatten() {
            p["url"] = json!("<url>");
            p["imageUrl"] = json!("<url>");
        }
    }
    response
}

fn is_uuid(value: &Value) -> bool {
    value
        .as_str()
        .is_some_and(|v| uuid::Uuid::parse_str(v).is_ok())
}

async fn the_seeds_example_is_answered_as_the_seed_shows(backend: Backend) {
    let Some(shop) = Shop::open(backend).await else {
        return;
    };
    let mut first = fixture("seed_request_1.json");
    first["context"]["agentDescriptorId"] = json!(shop.agent);
    let one = shop.ok(first).await;
    assert!(
        is_uuid(&one["stateId"]) && is_uuid(&one["sessionId"]),
        "{one}"
    );
    assert_eq!(
        comparable(one.clone()),
        comparable(fixture("seed_response_1.json")["response"].clone())
    );
    // The welcome message joined the history, before the shopper's question.
    let requests = shop.sim.openai.requests();
    let messages = requests.last().unwrap().body["messages"]
        .as_array()
        .unwrap()
        .clone();
    let roles: Vec<&str> = messages
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["system", "assistant", "user"]);
    assert_eq!(
        messages[1]["content"],
        "Welcome to my store! How can I help?"
    );
    let system = messages[0]["content"].as_str().unwrap();
    assert!(system.starts_with("You are the shop assistant"), "{system}");
    assert!(
        system.contains("search_products"),
        "the catalog is offered: {system}"
    );

    let mut second = fixture("seed_request_2.json");
    second["context"]["stateId"] = one["stateId"].clone();
    let two = shop.ok(second).await;
    if two["responseEvents"].as_array().unwrap().len() != 3 {
        for r in shop.sim.openai.requests() {
            eprintln!("REQUEST {}", r.body);
        }
    }
    assert_eq!(two["sessionId"], one["sessionId"], "one session");
    assert_ne!(two["stateId"], one["stateId"], "a new state");
    assert_eq!(
        comparable(two.clone()),
        comparable(fixture("seed_response_2.json")["response"].clone())
    );
    let product = &two["responseEvents"][0]["recommendationEvent"]["products"][0];
    assert_eq!(
        product["url"],
        "https://shop.example.com/products/pink-dress-10yrs"
    );

    // States never change: continuing from the first again is a branch without the dress.
    let branch = shop
        .ok(json!({"context": {"stateId": one["stateId"]},
                   "inputEvents": [say("What about shoes for a party?")]}))
        .await;
    assert_eq!(branch["sessionId"], one["sessionId"]);
    let requests = shop.sim.openai.requests();
    let seen: Vec<String> = requests.last().unwrap().body["messages"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["content"].as_str().map(str::to_owned))
        .collect();
    assert!(seen.iter().any(|m| m.contains("free shipping")), "{seen:?}");
    assert!(!seen.iter().any(|m| m.contains("pink dress")), "{seen:?}");
    // ...and the second state still goes on from the dress.
    let on = shop
        .ok(json!({"context": {"stateId": two["stateId"]},
                   "inputEvents": [say("Do you have anything in purple?")]}))
        .await;
    let requests = shop.sim.openai.requests();
    let history = requests.last().unwrap().body["messages"].to_string();
    assert!(history.contains("pink dress"), "{history}");
    assert!(!history.contains("shoes for a party"), "{history}");
    let recommended = &on["responseEvents"][0]["recommendationEvent"]["products"];
    assert_eq!(
        recommended[0]["productId"], "demo-purple-party-dress",
        "{on}"
    );
    shop.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_example_is_answered_as_the_seed_shows_on_sqlite() {
    the_seeds_example_is_answered_as_the_seed_shows(Backend::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_example_is_answered_as_the_seed_shows_on_postgres() {
    the_seeds_example_is_answered_as_the_seed_shows(Backend::Postgres).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_catalog_the_assistant_only_talks() {
    let shop = Shop::open(Backend::Sqlite).await.unwrap();
    let reply = shop
        .invoke_as(
            "no-catalog",
            Some(&shop.server.key),
            json!({"context": {"agent_descriptor_id": shop.agent},
                   "input_events": [say("I want a pink dress")]}),
        )
        .await;
    assert_eq!(reply.0, StatusCode::OK, "{}", reply.1);
    let response = &reply.1["response"];
    assert_eq!(
        texts(response),
        ["Sure. You said: I want a pink dress. How else can I help?"]
    );
    let requests = shop.sim.openai.requests();
    assert!(
        requests
            .last()
            .unwrap()
            .body
            .get("tools")
            .is_none_or(|t| !t.to_string().contains("search_products"))
    );
    // Only assistant events: recorded, nothing to answer.
    let quiet = shop
        .ok(json!({"context": {"agentDescriptorId": shop.agent},
                   "inputEvents": [{"messageEvent": {"role": "ASSISTANT", "content": {"textContent": {"text": "Welcome!"}}}}]}))
        .await;
    assert_eq!(quiet["responseEvents"], json!([]));
    assert!(is_uuid(&quiet["stateId"]));
    shop.stop().await;
}

/// Every kind of bad input answers the seed's error shape with its status, never a 500.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_answers_google_rpc_status() {
    let shop = Shop::open(Backend::Sqlite).await.unwrap();
    let good = json!({"context": {"agentDescriptorId": shop.agent}, "inputEvents": [say("hi")]});
    let expect = |(status, body): (StatusCode, Value), want: StatusCode, code: i64, names: &str| {
        assert_eq!(status, want, "{body}");
        assert_eq!(body["code"], code, "{body}");
        assert_eq!(body["details"], json!([]), "{body}");
        let message = body["message"].as_str().unwrap();
        assert!(message.contains(names), "{message:?} should name {names:?}");
    };
    expect(
        shop.invoke_as(BUSINESS, None, good.clone()).await,
        StatusCode::UNAUTHORIZED,
        16,
        "x-api-key",
    );
    expect(
        shop.invoke_as(BUSINESS, Some("vbx_wrong"), good.clone())
            .await,
        StatusCode::UNAUTHORIZED,
        16,
        "key",
    );
    for (body, names) in [
        (json!({"inputEvents": [say("hi")]}), "agentDescriptorId"),
        (
            json!({"context": {}, "inputEvents": [say("hi")]}),
            "stateId",
        ),
        (
            json!({"context": {"agentDescriptorId": shop.agent}}),
            "inputEvents",
        ),
        (
            json!({"context": {"agentDescriptorId": shop.agent}, "inputEvents": []}),
            "inputEvents",
        ),
        (
            json!({"context": {"agentDescriptorId": shop.agent}, "inputEvents": [{}]}),
            "inputEvents[0].messageEvent",
        ),
        (
            json!({"context": {"agentDescriptorId": shop.agent},
                "inputEvents": [{"messageEvent": {"role": "SYSTEM", "content": {"textContent": "x"}}}]}),
            "role",
        ),
        (
            json!({"context": {"agentDescriptorId": shop.agent},
                "inputEvents": [{"messageEvent": {"content": {"textContent": "x"}}}]}),
            "role",
        ),
        (
            json!({"context": {"agentDescriptorId": shop.agent},
                "inputEvents": [{"messageEvent": {"role": "USER", "content": {"textContent": 5}}}]}),
            "textContent",
        ),
        (
            json!({"context": {"agentDescriptorId": shop.agent},
                "inputEvents": [{"messageEvent": {"role": "USER", "content": {}}}]}),
            "textContent",
        ),
        (
            json!({"context": {"agentDescriptorId": shop.agent}, "inputEvents": [say("  ")]}),
            "textContent",
        ),
        (
            json!({"context": {"agentDescriptorId": shop.agent}, "inputEvents": [say(&"x".repeat(10_001))]}),
            "textContent",
        ),
        (
            json!({"context": {"agentDescriptorId": shop.agent}, "inputEvents": [say("a\u{0}b")]}),
            "textContent",
        ),
        (
            json!({"context": {"agentDescriptorId": shop.agent}, "inputEvents": "hi"}),
            "inputEvents",
        ),
        (
            json!({"context": {"agentDescriptorId": shop.agent}, "inputEvents": [say("hi")], "extra": 1}),
            "extra",
        ),
        (
            json!({"context": {"agentDescriptorId": 42}, "inputEvents": [say("hi")]}),
            "agentDescriptorId",
        ),
        (json!([1, 2]), "body"),
    ] {
        expect(shop.invoke(body).await, StatusCode::BAD_REQUEST, 3, names);
    }
    let many: Vec<Value> = (0..101).map(|_| say("hi")).collect();
    expect(
        shop.invoke(json!({"context": {"agentDescriptorId": shop.agent}, "inputEvents": many}))
            .await,
        StatusCode::BAD_REQUEST,
        3,
        "inputEvents",
    );
    // Malformed JSON, a body beyond the server's limit.
    let raw = |body: String| {
        shop.client
            .post(format!("{}{}", shop.server.base, route(BUSINESS)))
            .header("x-api-key", &shop.server.key)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let response = raw("{\"context\": ".to_owned()).await.unwrap();
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], 3, "{body}");
    let response = raw(format!("{{\"x\": \"{}\"}}", "y".repeat(2 * 1024 * 1024)))
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], 8, "{body}");

    // Unknown ids: 404 NOT_FOUND naming them.
    expect(
        shop.invoke(json!({"context": {"stateId": SEED_STATE}, "inputEvents": [say("hi")]}))
            .await,
        StatusCode::NOT_FOUND,
        5,
        SEED_STATE,
    );
    expect(
        shop.invoke(
            json!({"context": {"agentDescriptorId": SEED_AGENT}, "inputEvents": [say("hi")]}),
        )
        .await,
        StatusCode::NOT_FOUND,
        5,
        SEED_AGENT,
    );
    // A state is its owner's, in its business.
    let state = shop.ok(good.clone()).await["stateId"].clone();
    let next = json!({"context": {"stateId": state}, "inputEvents": [say("hi")]});
    let other = shop.server.key_for("other@example.com").await;
    expect(
        shop.invoke_as(BUSINESS, Some(&other), next.clone()).await,
        StatusCode::NOT_FOUND,
        5,
        "state",
    );
    expect(
        shop.invoke_as("another-store", Some(&shop.server.key), next.clone())
            .await,
        StatusCode::NOT_FOUND,
        5,
        "state",
    );
    // Another owner's assistant is no agent of ours.
    let theirs = agent(&shop.server, &other).await;
    expect(
        shop.invoke(json!({"context": {"agentDescriptorId": theirs}, "inputEvents": [say("hi")]}))
            .await,
        StatusCode::NOT_FOUND,
        5,
        "agent",
    );
    // Naming another agent than the state's is a contradiction.
    expect(
        shop.invoke(json!({"context": {"stateId": state, "agentDescriptorId": SEED_AGENT}, "inputEvents": [say("hi")]})).await,
        StatusCode::BAD_REQUEST,
        3,
        "agentDescriptorId",
    );
    expect(
        shop.invoke_as("bad id", Some(&shop.server.key), good.clone())
            .await,
        StatusCode::BAD_REQUEST,
        3,
        "business_id",
    );
    // And the good request still works.
    assert_eq!(shop.invoke(good).await.0, StatusCode::OK);
    shop.stop().await;
}
