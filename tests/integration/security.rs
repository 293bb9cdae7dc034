//! What a hostile API user or client tries: making the server carry its LLM key or its requests to
//! an address of the user's choosing, holding connections open without sending a request, and
//! text the database cannot store.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::HeaderMap;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use voxbridge::sim::caller::CallerScript;

use crate::call_lab::{CallLab, LabOptions, after_agent, clip};
use crate::common::{Backend, TestServer};
use crate::on_both_backends;
use crate::twilio_calls::wire;

/// Every spelling of an address an owner must not make the server call.
const REFUSED_URLS: [&str; 12] = [
    "http://127.0.0.1:9/x",
    "http://2130706433/x",
    "http://0x7f000001/x",
    "http://0177.0.0.1/x",
    "http://127.1/x",
    "http://[::1]/x",
    "http://[::ffff:127.0.0.1]/x",
    "http://localhost:9/x",
    "http://169.254.169.254/latest/meta-data/",
    "http://10.0.0.1/x",
    "http://[fd00:ec2::254]/x",
    "http:///x",
];

fn assistant(extra: Value) -> Value {
    let mut a = json!({
        "assistant_name": "Guarded",
        "assistant_description": "d",
        "assistant_prompt": "p",
        "assistant_tts_model": "cartesia",
        "assistant_tts_config": {"voice_id": "a167e0f3-df7e-4277-976b-be2f952fa275"},
    });
    for (k, v) in extra.as_object().unwrap() {
        a[k] = v.clone();
    }
    a
}

fn fields(reply: &Value) -> Vec<String> {
    reply["data"]["errors"]
        .as_array()
        .map(|errors| {
            errors
                .iter()
                .map(|e| e["field"].as_str().unwrap().to_owned())
                .collect()
        })
        .unwrap_or_default()
}

async fn owner_urls_pass_the_address_policy(s: &TestServer) {
    for url in REFUSED_URLS {
        let (status, reply) = s
            .post(
                "/tool/create",
                json!({"tool_name": "t", "tool_description": "d", "tool_url": url,
                       "tool_parameters": {"type": "object"}}),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "tool_url {url}: {reply}");
        assert_eq!(fields(&reply), ["tool_url"], "{url}: {reply}");

        let body = assistant(json!({"assistant_end_call_url": url}));
        let (status, reply) = s.post("/assistant/create", body).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "end_call_url {url}: {reply}"
        );
        assert_eq!(fields(&reply), ["assistant_end_call_url"], "{url}");

        let llm = json!({"assistant_llm_config": {"base_url": url, "api_key": "sk-own"}});
        let (status, reply) = s.post("/assistant/create", assistant(llm)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "base_url {url}: {reply}");
        assert_eq!(fields(&reply), ["assistant_llm_config.base_url"], "{url}");
    }
    // A tool saved on a public address cannot be moved to a private one either.
    let (status, reply) = s
        .post(
            "/tool/create",
            json!({"tool_name": "t", "tool_description": "d", "tool_url": "https://tools.example.com/x",
                   "tool_parameters": {"type": "object"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let id = reply["data"]["tool_id"].as_str().unwrap();
    let (status, reply) = s
        .patch(
            &format!("/tool/update/{id}"),
            json!({"tool_url": "http://169.254.169.254/"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
}

async fn another_llm_endpoint_needs_its_own_key(s: &TestServer) {
    let elsewhere = json!({"assistant_llm_config": {"base_url": "https://llm.example.com/v1"}});
    let (status, reply) = s.post("/assistant/create", assistant(elsewhere)).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert_eq!(fields(&reply), ["assistant_llm_config.api_key"], "{reply}");
    assert!(
        reply["message"].as_str().unwrap().contains("server's"),
        "the message says why: {reply}"
    );

    let own = json!({"assistant_llm_config": {"base_url": "https://llm.example.com/v1", "api_key": "sk-own"}});
    let (status, reply) = s.post("/assistant/create", assistant(own)).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let id = reply["data"]["assistant_id"].as_str().unwrap();
    // Clearing the key while keeping the foreign endpoint is refused too.
    let (status, reply) = s
        .patch(
            &format!("/assistant/update/{id}"),
            json!({"assistant_llm_config": {"api_key": null}}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");

    // The server's own endpoint needs no key of the assistant's.
    let server_own = json!({"assistant_llm_config": {"base_url": "https://api.openai.com/v1/"}});
    let (status, reply) = s.post("/assistant/create", assistant(server_own)).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
}

async fn control_characters_and_bad_paths_answer_the_envelope(s: &TestServer) {
    let body = assistant(json!({"assistant_name": "Nul\u{0}Bot"}));
    let (status, reply) = s.post("/assistant/create", body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert_eq!(fields(&reply), ["assistant_name"], "{reply}");
    let body = assistant(json!({"assistant_prompt": "Say \u{1b}[31m red"}));
    let (status, reply) = s.post("/assistant/create", body).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    let body = assistant(json!({"assistant_prompt": "Line one\n\tLine two"}));
    let (status, reply) = s.post("/assistant/create", body).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "line breaks and tabs are text: {reply}"
    );
    for path in [
        "/assistant/details/%FF%FE",
        "/assistant/details/a%00b",
        "/call/details/%C3%28",
        "/tool/update/%00",
        "/call/list?assistant_id=a%00b",
    ] {
        let method = if path.starts_with("/tool/update") {
            reqwest::Method::PATCH
        } else {
            reqwest::Method::GET
        };
        let body = (method == reqwest::Method::PATCH).then(|| json!({}));
        let (status, reply) = s.call(method, path, Some(&s.key), body).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {reply}");
        assert_eq!(reply["success"], false, "{path}: {reply}");
    }
}

on_both_backends!(
    owner_urls_pass_the_address_policy,
    another_llm_endpoint_needs_its_own_key,
    control_characters_and_bad_paths_answer_the_envelope,
);

#[tokio::test]
async fn operators_can_allow_an_endpoint_for_their_key() {
    let s = TestServer::start_with(Backend::Sqlite, |config| {
        config.llm.allowed_base_urls = vec!["http://10.1.2.3:11434/v1".into()];
    })
    .await
    .unwrap();
    let allowed = json!({"assistant_llm_config": {"base_url": "http://10.1.2.3:11434/v1"}});
    let (status, reply) = s.post("/assistant/create", assistant(allowed)).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "an allowed endpoint is trusted: {reply}"
    );
    s.stop().await;
}

/// An OpenAI-compatible endpoint that records the `Authorization` of every request and answers
/// one short streamed reply.
#[derive(Clone, Default)]
struct KeyRecorder {
    seen: Arc<Mutex<Vec<Option<String>>>>,
}

impl KeyRecorder {
    async fn serve(&self) -> String {
        let seen = self.seen.clone();
        let app = axum::Router::new().route(
            "/v1/chat/completions",
            axum::routing::post(move |headers: HeaderMap| {
                let seen = seen.clone();
                async move {
                    let auth = headers
                        .get("authorization")
                        .map(|v| v.to_str().unwrap().to_owned());
                    seen.lock().unwrap().push(auth);
                    let chunk = |delta: Value, finish: Value| {
                        let body = json!({"id": "c", "object": "chat.completion.chunk", "created": 0,
                            "model": "m", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
                        format!("data: {body}\n\n")
                    };
                    let body = chunk(json!({"role": "assistant", "content": "Noted."}), Value::Null)
                        + &chunk(json!({}), json!("stop"))
                        + "data: [DONE]\n\n";
                    ([("content-type", "text/event-stream")], body)
                }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/v1", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        url
    }

    fn seen(&self) -> Vec<Option<String>> {
        self.seen.lock().unwrap().clone()
    }
}

/// One short call in which the caller says one thing (so the LLM is asked once).
async fn one_turn(lab: &CallLab) {
    let script = after_agent(CallerScript::new())
        .say(clip("book_table"))
        .wait(Duration::from_secs(3))
        .hang_up();
    let sid = lab.call_in(script);
    lab.finished_call(&sid).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_llm_key_never_reaches_an_endpoint_an_owner_chose() {
    let recorder = KeyRecorder::default();
    let url = recorder.serve().await;
    let lab = CallLab::start(LabOptions::default()).await;
    let path = format!("/assistant/update/{}", lab.assistant_id);

    // The assistant brings its own key: that key, and only it, goes to its endpoint.
    let (status, reply) = lab
        .server
        .patch(
            &path,
            json!({"assistant_llm_config": {"base_url": url, "api_key": "sk-owners-own"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    one_turn(&lab).await;
    let seen = recorder.seen();
    assert!(!seen.is_empty(), "the assistant's endpoint was asked");
    assert!(
        seen.iter()
            .all(|auth| auth.as_deref() == Some("Bearer sk-owners-own")),
        "{seen:?}"
    );

    // An assistant stored before keys were required (its key removed behind the API's back):
    // the call goes on, and the server's key is still not sent.
    let owner = lab
        .server
        .store
        .owner_by_key(&lab.server.key)
        .await
        .unwrap()
        .unwrap();
    let mut stored = lab
        .server
        .store
        .get_assistant(&owner.id, &lab.assistant_id)
        .await
        .unwrap()
        .unwrap();
    stored.settings.llm.api_key = None;
    let updated_at = stored.updated_at.clone();
    assert!(
        lab.server
            .store
            .update_assistant(&stored, &updated_at)
            .await
            .unwrap()
    );
    recorder.seen.lock().unwrap().clear();
    one_turn(&lab).await;
    let seen = recorder.seen();
    assert!(!seen.is_empty(), "the assistant's endpoint was asked");
    assert!(
        seen.iter().all(Option::is_none),
        "no key rather than the server's: {seen:?}"
    );
    lab.stop().await;
}

/// Reads until the server closes the connection (answers what it sent) or `limit` passes.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0) | Err(_)) => return Some(String::from_utf8_lossy(&got).into_owned()),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_connections_are_closed_and_capped() {
    let s = TestServer::start_with(Backend::Sqlite, |config| {
        config.http.header_timeout_secs = 1;
        config.http.idle_timeout_secs = 2;
        config.http.max_connections = 64;
    })
    .await
    .unwrap();
    let addr = s.base.trim_start_matches("http://").to_owned();

    // Slowloris: 60 sockets that send nothing or half a request's headers.
    let mut slow = Vec::new();
    for i in 0..60 {
        let mut stream = TcpStream::connect(&addr).await.unwrap();
        if i % 2 == 1 {
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ")
                .await
                .unwrap();
        }
        slow.push(stream);
    }
    // While they are held, the server still answers others (64 - 60 slots left).
    let (status, _) = s.get("/healthz").await;
    assert_eq!(status, StatusCode::OK);
    for (i, stream) in slow.iter_mut().enumerate() {
        let closed = read_until_closed(stream, Duration::from_secs(30)).await;
        assert!(closed.is_some(), "slow connection {i} was never closed");
    }

    // A keep-alive connection is served, then closed once idle.
    let mut idle = TcpStream::connect(&addr).await.unwrap();
    idle.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let answered = read_until_closed(&mut idle, Duration::from_secs(30))
        .await
        .expect("an idle keep-alive connection is closed");
    assert!(answered.starts_with("HTTP/1.1 200"), "{answered}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_wait_for_a_free_slot() {
    let s = TestServer::start_with(Backend::Sqlite, |config| {
        config.http.header_timeout_secs = 2;
        config.http.max_connections = 3;
    })
    .await
    .unwrap();
    let addr = s.base.trim_start_matches("http://").to_owned();
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(TcpStream::connect(&addr).await.unwrap());
    }
    // The fourth client is accepted only when a held one is closed by the header timeout; it is
    // then answered, not refused.
    let mut fourth = TcpStream::connect(&addr).await.unwrap();
    fourth
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let answer = read_until_closed(&mut fourth, Duration::from_secs(30))
        .await
        .expect("answered once a slot frees");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    for stream in &mut held {
        assert!(
            read_until_closed(stream, Duration::from_secs(30))
                .await
                .is_some()
        );
    }
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_started_media_stream_that_goes_silent_ends_as_a_hang_up() {
    let lab = CallLab::start(LabOptions {
        configure: Box::new(|config| config.media_inactivity_secs = 1),
        ..LabOptions::default()
    })
    .await;
    let (status, twiml) = wire::voice_webhook(&lab, wire::auth_token()).await;
    assert_eq!(status, 200, "{twiml}");
    let (call_id, token) = wire::stream_parameters(&twiml);
    let mut socket = wire::connect(&lab).await;
    wire::start(&mut socket, &call_id, &token).await;
    // Nothing more is sent: no media, no stop, and the socket stays open on our side.
    let (_, closed) = wire::drain(&mut socket, Duration::from_secs(30)).await;
    assert!(closed, "the server closed the silent stream");
    let call = lab.server.ended_call_details(&call_id).await;
    assert_eq!(call["end_reason"], "caller_hung_up", "{call}");
    lab.stop().await;
}
