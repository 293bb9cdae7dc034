//! The assistant builder (seed 000) over HTTP against the sim LLM, on SQLite and PostgreSQL: the
//! seed's own request answered in its shape with a prompt in its structure, the errors in its
//! shape, `create` storing a voice or v1 assistant, and a failing or stalled model answered with
//! a 502 in bounded time.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::{Value, json};
use voxbridge::sim::openai::Fault;
use voxbridge::sim::suite::{SimOptions, SimSuite};

use crate::common::{Backend, TestServer};

async fn builder_server(
    backend: Backend,
    adjust: impl FnOnce(&mut voxbridge::config::Config),
) -> Option<(TestServer, SimSuite)> {
    let sim = SimSuite::start(([127, 0, 0, 1], 0).into(), SimOptions::default())
        .await
        .unwrap();
    let server = TestServer::start_with(backend, |config| {
        sim.configure(config, true);
        adjust(config);
    })
    .await?;
    Some((server, sim))
}

/// `POST /assistant_builder/invoke` as the seed's curl sends it.
async fn invoke(
    s: &TestServer,
    key: Option<&str>,
    user: Option<&str>,
    body: Value,
) -> (StatusCode, Value) {
    let mut request = reqwest::Client::new()
        .post(format!("{}/assistant_builder/invoke", s.base))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(key) = key {
        request = request.header("Integrations-API-Key", key);
    }
    if let Some(user) = user {
        request = request.header("x-user-id", user);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

async fn the_seed_request_gets_a_structured_prompt(backend: Backend) {
    let Some((s, _sim)) = builder_server(backend, |_| {}).await else {
        return;
    };
    let body = json!({ "input": "Assistant to write user stories" });
    let (status, reply) = invoke(&s, Some(&s.key), None, body.clone()).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["status"], "success");
    let invocation = reply["invocationId"].as_str().unwrap();
    assert!(uuid::Uuid::parse_str(invocation).is_ok(), "{invocation}");
    let response = reply["response"].as_array().unwrap();
    assert_eq!(response.len(), 1);
    assert_eq!(response[0]["type"], "text");
    let prompt = response[0]["message"].as_str().unwrap();
    let mut at = 0;
    for part in [
        "You are an assistant that performs the following task:",
        "Here is a task definition:",
        "**Task: write user stories**",
        "**Description:** In this task, the assistant will:",
        "\n1. ",
        "\n6. ",
        "**Deliverable:**",
        "## Example Responses",
        "**Example 1:**",
        "**Example 2:**",
        "## Further instructions:",
        "Wait for the user input before replying.",
    ] {
        let found = prompt[at..]
            .find(part)
            .unwrap_or_else(|| panic!("{part:?} missing (in order) from:\n{prompt}"));
        at += found + part.len();
    }
    assert!(reply.get("assistantId").is_none());
    // Deterministic: the same description, the same prompt; a new invocation id.
    let (_, again) = invoke(&s, Some(&s.key), None, body).await;
    assert_eq!(again["response"][0]["message"], prompt);
    assert_ne!(again["invocationId"], invocation);

    // An input of exactly the limit is fine.
    let (status, _) = invoke(&s, Some(&s.key), None, json!({"input": "a".repeat(2000)})).await;
    assert_eq!(status, StatusCode::OK);
    s.stop().await;
}

async fn errors_answer_in_the_seed_shape(backend: Backend) {
    let Some((s, _sim)) = builder_server(backend, |_| {}).await else {
        return;
    };
    let good = json!({"input": "A bakery receptionist"});
    for (key, body, status, needle) in [
        (
            None,
            good.clone(),
            StatusCode::UNAUTHORIZED,
            "Integrations-API-Key",
        ),
        (
            Some("vbx_wrong"),
            good.clone(),
            StatusCode::UNAUTHORIZED,
            "Integrations-API-Key",
        ),
        (
            Some(s.key.as_str()),
            json!({}),
            StatusCode::BAD_REQUEST,
            "input is required",
        ),
        (
            Some(s.key.as_str()),
            json!({"input": "   "}),
            StatusCode::BAD_REQUEST,
            "must not be empty",
        ),
        (
            Some(s.key.as_str()),
            json!({"input": "a".repeat(2001)}),
            StatusCode::BAD_REQUEST,
            "at most 2000 characters",
        ),
        (
            Some(s.key.as_str()),
            json!({"input": 5}),
            StatusCode::BAD_REQUEST,
            "must be a string",
        ),
        (
            Some(s.key.as_str()),
            json!({"input": "x y z", "create": "robot"}),
            StatusCode::BAD_REQUEST,
            "create must be",
        ),
        (
            Some(s.key.as_str()),
            json!({"input": "x y z", "create": "v1"}),
            StatusCode::BAD_REQUEST,
            "x-user-id",
        ),
    ] {
        let (got, reply) = invoke(&s, key, None, body.clone()).await;
        assert_eq!(got, status, "{body}: {reply}");
        assert_eq!(reply["status"], "error", "{reply}");
        let message = reply["message"].as_str().unwrap();
        assert!(message.contains(needle), "{body}: {message}");
    }
    s.stop().await;
}

async fn create_stores_a_voice_or_v1_assistant(backend: Backend) {
    let Some((s, _sim)) = builder_server(backend, |_| {}).await else {
        return;
    };
    let (status, reply) = invoke(
        &s,
        Some(&s.key),
        None,
        json!({"input": "Assistant to book tables at a bistro", "create": "voice"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["assistantType"], "voice");
    let id = reply["assistantId"].as_str().unwrap();
    let (status, details) = s.get(&format!("/assistant/details/{id}")).await;
    assert_eq!(status, StatusCode::OK, "{details}");
    let details = &details["data"];
    assert_eq!(details["assistant_prompt"], reply["response"][0]["message"]);
    assert_eq!(details["assistant_name"], "book tables at a");
    assert_eq!(
        details["assistant_description"],
        "Assistant to book tables at a bistro"
    );
    assert_eq!(
        details["assistant_start_instruction"],
        "Hello! How can I help you today?"
    );
    assert_eq!(details["assistant_tts_model"], "cartesia");

    let (status, reply) = invoke(
        &s,
        Some(&s.key),
        Some("grace"),
        json!({"input": "Assistant to write release notes", "create": "v1"}),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    assert_eq!(reply["assistantType"], "v1");
    let id = reply["assistantId"].as_str().unwrap();
    let response = reqwest::Client::new()
        .get(format!("{}/api/v1/assistant/{id}/get-detail", s.base))
        .bearer_auth(&s.key)
        .header("x-user-id", "grace")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let detail: Value = response.json().await.unwrap();
    assert_eq!(detail["data"]["assistantType"], "advanced_assistant");
    assert_eq!(
        detail["data"]["systemPrompt"],
        reply["response"][0]["message"]
    );
    assert_eq!(detail["data"]["name"], "write release notes");
    s.stop().await;
}

async fn a_failing_or_stalled_model_is_a_bounded_502(backend: Backend) {
    let Some((s, sim)) = builder_server(backend, |config| {
        config.assistant_builder.timeout_secs = 1;
    })
    .await
    else {
        return;
    };
    sim.openai.push_fault(Fault::insufficient_quota());
    let (status, reply) = invoke(&s, Some(&s.key), None, json!({"input": "A travel agent"})).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{reply}");
    assert_eq!(reply["status"], "error");
    assert!(
        reply["message"].as_str().unwrap().contains("quota"),
        "the provider's reason: {reply}"
    );

    sim.openai.push_fault(Fault::Stall {
        after_chunks: 2,
        duration: Duration::from_secs(10),
    });
    let started = Instant::now();
    let (status, reply) = invoke(&s, Some(&s.key), None, json!({"input": "A travel agent"})).await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{reply}");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    s.stop().await;
}

macro_rules! on_both {
    ($($name:ident),* $(,)?) => {
        $(
            mod $name {
                use crate::common::Backend;

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    super::$name(Backend::Sqlite).await;
                }

                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    super::$name(Backend::Postgres).await;
                }
            }
        )*
    };
}

on_both!(
    the_seed_request_gets_a_structured_prompt,
    errors_answer_in_the_seed_shape,
    create_stores_a_voice_or_v1_assistant,
    a_failing_or_stalled_model_is_a_bounded_502,
);
