//! Browser calls over the wire: `POST /web-call/create` and the `/web-call/ws` protocol, driven
//! by a tokio-tungstenite client playing the widget's part (PCM16 frames every 20 ms, mark
//! echoes, hang-up), against the sim providers. Every kind of bad input gets its close code
//! while a good call on the same server carries on.

use std::time::Duration;

use futures_util::stream::SplitStream;
use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;
use voxbridge::call::setup::{CallDraft, prepare_call};
use voxbridge::store::{CallStatus, Direction};

use crate::call_lab::{CallLab, LabOptions};
use crate::common::TestServer;
use crate::web_client::{
    Pump, Seen, Socket, clip_at, connect, read_until, spawn_microphone, start,
};

const VOICE: &str = "a167e0f3-df7e-4277-976b-be2f952fa275";

/// Creates an assistant over REST; answers its id.
async fn assistant(server: &TestServer) -> String {
    let (status, reply) = server
        .post(
            "/assistant/create",
            json!({"assistant_name": "Web", "assistant_description": "d",
                   "assistant_prompt": "You help {{name|a visitor}}.",
                   "assistant_tts_model": "cartesia", "assistant_tts_config": {"voice_id": VOICE},
                   "assistant_start_instruction": "Hi {{name|there}}, {{missing}}welcome!"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    reply["data"]["assistant_id"].as_str().unwrap().to_owned()
}

/// A web call's `data`.
async fn create(server: &TestServer, assistant_id: &str) -> Value {
    let (status, reply) = server
        .post(
            "/web-call/create",
            json!({"assistant_id": assistant_id, "metadata": {"name": "Ada"}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    reply["data"].clone()
}

/// Reads until the server closes; answers the close code and reason.
async fn close_of(ws: &mut Socket) -> (u16, String) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(40);
    loop {
        let message = tokio::time::timeout_at(deadline, ws.next())
            .await
            .expect("the server closes in time");
        match message {
            Some(Ok(Message::Close(Some(frame)))) => {
                return (u16::from(frame.code), frame.reason.to_string());
            }
            Some(Ok(Message::Close(None))) | None => return (1005, String::new()),
            Some(Ok(_)) => {}
            Some(Err(e)) => panic!("socket error before close: {e}"),
        }
    }
}

async fn creates_a_session_and_its_token_works_once(server: &TestServer) {
    let assistant_id = assistant(server).await;
    let data = create(server, &assistant_id).await;
    let token = data["token"].as_str().unwrap();
    let ws_url = data["ws_url"].as_str().unwrap();
    assert!(ws_url.starts_with("ws://"), "{ws_url}");
    assert!(ws_url.ends_with(&format!("/web-call/ws?token={token}")));
    assert!(
        data["expires_at"].as_str().unwrap() > data["call_id"].as_str().map(|_| "2000").unwrap()
    );
    assert_eq!(data["missing_variables"], json!(["missing"]));
    let call_id = data["call_id"].as_str().unwrap();
    let (status, details) = server.get(&format!("/call/details/{call_id}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(details["data"]["direction"], "web");
    assert_eq!(details["data"]["status"], "queued");
    assert_eq!(
        details["data"]["rendered_start_instruction"],
        "Hi Ada, welcome!"
    );
    assert_eq!(details["data"]["rendered_prompt"], "You help Ada.");
    // The token is stored as a hash only.
    let stored = server
        .store
        .get_call_any_owner(call_id)
        .await
        .unwrap()
        .unwrap();
    assert_ne!(stored.id, token);

    // First use: accepted (a hang-up before start ends the call before it began).
    let mut first = connect(ws_url).await;
    first
        .send(Message::text(r#"{"type":"hangup"}"#))
        .await
        .unwrap();
    let _ = tokio::time::timeout(Duration::from_secs(5), first.next()).await;
    // Second use: refused.
    let mut second = connect(ws_url).await;
    assert_eq!(close_of(&mut second).await.0, 4001);
    // No token, a made-up token: refused.
    let base = ws_url.split('?').next().unwrap();
    assert_eq!(close_of(&mut connect(base).await).await.0, 4001);
    assert_eq!(
        close_of(&mut connect(&format!("{base}?token=vst_madeup")).await)
            .await
            .0,
        4001
    );
    for _ in 0..50 {
        let (_, details) = server.get(&format!("/call/details/{call_id}")).await;
        if details["data"]["status"] == "failed" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (_, details) = server.get(&format!("/call/details/{call_id}")).await;
    assert_eq!(details["data"]["status"], "failed", "{details}");

    // Expired: a session whose token lived no time at all.
    let owner = server
        .store
        .owner_by_key(&server.key)
        .await
        .unwrap()
        .unwrap();
    let assistant = server
        .store
        .get_assistant(&owner.id, &assistant_id)
        .await
        .unwrap()
        .unwrap();
    let prepared = prepare_call(CallDraft {
        assistant: &assistant,
        direction: Direction::Web,
        trunk_id: None,
        from_number: None,
        to_number: None,
        metadata: json!({}),
        status: CallStatus::Queued,
        provider_call_sid: None,
        token_ttl: Duration::ZERO,
    });
    server.store.insert_call(&prepared.call).await.unwrap();
    tokio::time::sleep(Duration::from_millis(5)).await;
    let url = format!("{base}?token={}", prepared.stream_token);
    assert_eq!(close_of(&mut connect(&url).await).await.0, 4001);
}

async fn create_refuses_bad_input(server: &TestServer) {
    let assistant_id = assistant(server).await;
    let (status, reply) = server.post("/web-call/create", json!({})).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert_eq!(reply["success"], false);
    assert_eq!(reply["data"]["errors"][0]["field"], "assistant_id");
    let (status, reply) = server
        .post(
            "/web-call/create",
            json!({"assistant_id": assistant_id, "metadata": "nope"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert_eq!(reply["data"]["errors"][0]["field"], "metadata");
    let (status, reply) = server
        .post(
            "/web-call/create",
            json!({"assistant_id": assistant_id, "colour": "red"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert!(reply.to_string().contains("colour"), "{reply}");
    let (status, reply) = server
        .post(
            "/web-call/create",
            json!({"assistant_id": "00000000-0000-0000-0000-000000000000"}),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{reply}");
    assert_eq!(reply["success"], false);
    // Deleted assistants are inactive: 404 too.
    server
        .delete(&format!("/assistant/delete/{assistant_id}"))
        .await;
    let (status, _) = server
        .post("/web-call/create", json!({"assistant_id": assistant_id}))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, reply) = server
        .call(
            reqwest::Method::POST,
            "/web-call/create",
            None,
            Some(json!({"assistant_id": assistant_id})),
        )
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED, "{reply}");
    // Another owner's assistant does not exist for this key.
    let other = server.key_for("other@example.com").await;
    let mine = assistant(server).await;
    let (status, _) = server
        .call(
            reqwest::Method::POST,
            "/web-call/create",
            Some(&other),
            Some(json!({"assistant_id": mine})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

crate::on_both_backends!(
    creates_a_session_and_its_token_works_once,
    create_refuses_bad_input
);

async fn lab() -> CallLab {
    CallLab::start(LabOptions::default()).await
}

async fn web_session(lab: &CallLab) -> Value {
    create(&lab.server, &lab.assistant_id).await
}

/// A web call at 16 kHz whose greeting has been heard to its end mark.
async fn live_call(lab: &CallLab) -> (Value, SplitStream<Socket>, mpsc::Sender<Pump>, Seen) {
    crate::web_client::live_call(&lab.server, &lab.assistant_id).await
}

/// A whole call at 48 kHz: greeting, the caller's turn, the reply, a barge-in, hang-up; then the
/// record, its transcript and the end-of-call report.
#[tokio::test]
async fn a_browser_call_talks_interrupts_and_reports() {
    let lab = lab().await;
    let data = web_session(&lab).await;
    let call_id = data["call_id"].as_str().unwrap().to_owned();
    let mut ws = connect(data["ws_url"].as_str().unwrap()).await;
    let started = start(&mut ws, 48_000).await;
    assert_eq!(started["type"], "started");
    assert_eq!(started["call_id"], call_id.as_str());
    assert_eq!(started["sample_rate"], 48_000);
    let (sink, mut stream) = ws.split();
    let mic = spawn_microphone(sink, 48_000);
    let mut seen = Seen::default();

    // The greeting plays (at 48 kHz: 1920 bytes per 20 ms) and its end mark comes.
    read_until(&mut stream, &mic, &mut seen, Duration::from_secs(20), |s| {
        s.marks.iter().any(|m| m.ends_with(".end"))
    })
    .await;
    assert!(seen.loud_frames > 10, "{seen:?}");
    assert_eq!(seen.audio_bytes % 1920, 0, "whole 48 kHz frames");
    assert!(
        seen.agent_text.join(" ").contains("Thanks"),
        "the greeting's words: {:?}",
        seen.agent_text
    );

    // The caller speaks; the transcript comes back, then the reply.
    mic.send(Pump::Play(clip_at("book_table", 48_000)))
        .await
        .unwrap();
    read_until(&mut stream, &mic, &mut seen, Duration::from_secs(20), |s| {
        s.transcripts
            .iter()
            .any(|(t, f)| *f && t.contains("book a table"))
    })
    .await;
    let before_reply = seen.loud_frames;
    read_until(&mut stream, &mic, &mut seen, Duration::from_secs(20), |s| {
        s.loud_frames > before_reply + 40
    })
    .await;
    // Over the reply: the caller talks, the agent stops.
    mic.send(Pump::Play(clip_at("tomorrow_at_seven", 48_000)))
        .await
        .unwrap();
    read_until(&mut stream, &mic, &mut seen, Duration::from_secs(20), |s| {
        s.interrupts > 0
    })
    .await;
    // Hang up: the server says why it ended and closes normally.
    mic.send(Pump::Text(r#"{"type":"hangup"}"#.to_owned()))
        .await
        .unwrap();
    read_until(&mut stream, &mic, &mut seen, Duration::from_secs(20), |s| {
        s.close.is_some()
    })
    .await;
    assert_eq!(seen.end.as_deref(), Some("caller_hung_up"), "{seen:?}");
    assert_eq!(seen.close.as_ref().unwrap().0, 1000);

    // The fake STT heard the caller at 16 kHz PCM.
    let streams = lab.deepgram.streams();
    let heard = streams.last().expect("one STT stream");
    assert_eq!(heard.query_value("encoding"), Some("linear16"));
    assert_eq!(heard.query_value("sample_rate"), Some("16000"));
    assert!(heard.audio_ms > 3000, "{}", heard.audio_ms);

    // Recorded like a phone call, reported like one.
    let details = lab.server.ended_call_details(&call_id).await;
    assert_eq!(details["direction"], "web");
    assert_eq!(details["status"], "completed");
    assert_eq!(details["end_reason"], "caller_hung_up");
    let transcript = details["transcript"].as_array().unwrap();
    assert!(
        transcript
            .iter()
            .any(|t| t["role"] == "user" && t["text"].as_str().unwrap().contains("book a table")),
        "{transcript:?}"
    );
    assert!(
        transcript
            .iter()
            .any(|t| t["role"] == "assistant" && t["interrupted"] == true),
        "{transcript:?}"
    );
    for _ in 0..100 {
        if lab.webhooks.count() > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let received = lab.webhooks.received.lock().unwrap().clone();
    let (_, body) = received.first().expect("the end-of-call report");
    let report: Value = serde_json::from_str(body).unwrap();
    assert_eq!(report["direction"], "web");
    assert_eq!(report["call_id"], call_id.as_str());
    lab.stop().await;
}

/// An assistant linked to a catalog: asked for a product, it searches and recommends, and the
/// widget's socket gets a `recommendation` event with the products as the catalog has them.
#[tokio::test]
async fn a_web_call_gets_the_recommended_products() {
    let mut options = LabOptions {
        utterances: vec!["Yes I want a pink dress for my daughters 10th birthday"],
        ..LabOptions::default()
    };
    options.assistant["assistant_catalog_business_id"] = json!("kids-shop");
    let lab = CallLab::start(options).await;
    let catalog: Value =
        serde_json::from_str(include_str!("../../fixtures/sales/catalog.json")).unwrap();
    let (status, reply) = lab
        .server
        .call(
            reqwest::Method::PUT,
            "/catalog/kids-shop/products",
            Some(&lab.server.key),
            Some(catalog),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let (_, mut stream, mic, mut seen) = live_call(&lab).await;
    mic.send(Pump::Play(clip_at("book_table", 16_000)))
        .await
        .unwrap();
    read_until(&mut stream, &mic, &mut seen, Duration::from_secs(30), |s| {
        !s.recommendations.is_empty()
    })
    .await;
    let products = seen.recommendations[0].as_array().unwrap();
    let titles: Vec<&str> = products
        .iter()
        .map(|p| p["title"].as_str().unwrap())
        .collect();
    assert_eq!(
        titles,
        ["Pink dress size 10yrs", "Connectly Signature Pink Dress"]
    );
    assert_eq!(products[0]["price"], 79.9);
    assert_eq!(
        products[0]["imageUrl"],
        "https://shop.example.com/images/pink-dress-10yrs.jpg"
    );
    // The agent speaks about them after showing them.
    read_until(&mut stream, &mic, &mut seen, Duration::from_secs(20), |s| {
        s.agent_text.join(" ").contains("purple")
    })
    .await;
    mic.send(Pump::Text(r#"{"type":"hangup"}"#.to_owned()))
        .await
        .unwrap();
    read_until(&mut stream, &mic, &mut seen, Duration::from_secs(20), |s| {
        s.close.is_some()
    })
    .await;
    lab.stop().await;
}

/// The widget's keypad: `dtmf` messages are collected into one entry the agent answers; a
/// message that is not a key is skipped and the call goes on. The call is recorded, at the
/// rate web calls run at inside.
#[tokio::test]
async fn keypad_messages_are_one_entry_the_agent_answers() {
    let mut options = LabOptions::default();
    options.assistant["assistant_recording"] = json!(true);
    let lab = CallLab::start(options).await;
    let (data, mut stream, mic, mut seen) = live_call(&lab).await;
    for digit in ["x", "4", "2", "#"] {
        mic.send(Pump::Text(
            json!({"type": "dtmf", "digit": digit}).to_string(),
        ))
        .await
        .unwrap();
    }
    read_until(&mut stream, &mic, &mut seen, Duration::from_secs(20), |s| {
        s.agent_text.join(" ").contains("entered 42 on the keypad")
    })
    .await;
    mic.send(Pump::Text(r#"{"type":"hangup"}"#.to_owned()))
        .await
        .unwrap();
    read_until(&mut stream, &mic, &mut seen, Duration::from_secs(20), |s| {
        s.close.is_some()
    })
    .await;

    let details = lab
        .server
        .ended_call_details(data["call_id"].as_str().unwrap())
        .await;
    let url = details["recording_url"].as_str().expect("recorded");
    let (spec, samples) = lab.recording(url).await;
    assert_eq!((spec.channels, spec.sample_rate), (2, 16_000));
    let loudest_agent = samples.iter().map(|[_, a]| a.unsigned_abs()).max();
    assert!(
        loudest_agent.unwrap_or(0) > 1000,
        "the agent's greeting is on the right"
    );
    assert!(samples.len() > 16_000, "more than a second of call");
    lab.stop().await;
}

/// Each kind of bad input closes its own socket with its code; a call in progress on the same
/// server is not disturbed and the server still answers.
#[tokio::test]
async fn bad_input_closes_only_that_socket_with_a_clear_code() {
    let lab = lab().await;
    // A good call at 16 kHz, running throughout.
    let data = web_session(&lab).await;
    let mut good = connect(data["ws_url"].as_str().unwrap()).await;
    assert_eq!(start(&mut good, 16_000).await["sample_rate"], 16_000);
    let (sink, mut good_stream) = good.split();
    let mic = spawn_microphone(sink, 16_000);
    let mut seen = Seen::default();

    async fn fresh(lab: &CallLab) -> Socket {
        connect(web_session(lab).await["ws_url"].as_str().unwrap()).await
    }
    // Before start.
    let mut ws = fresh(&lab).await;
    ws.send(Message::text("hello?")).await.unwrap();
    assert_eq!(close_of(&mut ws).await.0, 1003, "garbage text");
    let mut ws = fresh(&lab).await;
    ws.send(Message::binary(vec![0u8; 640])).await.unwrap();
    assert_eq!(close_of(&mut ws).await.0, 4000, "binary before start");
    let mut ws = fresh(&lab).await;
    ws.send(Message::text(r#"{"type":"start","sample_rate":44100}"#))
        .await
        .unwrap();
    let (code, reason) = close_of(&mut ws).await;
    assert_eq!(code, 4004, "wrong rate");
    assert!(reason.contains("16000"), "{reason}");
    let mut ws = fresh(&lab).await;
    ws.send(Message::text(r#"{"type":"dance"}"#)).await.unwrap();
    assert_eq!(close_of(&mut ws).await.0, 4000, "unknown message");
    // After start.
    let mut ws = fresh(&lab).await;
    start(&mut ws, 16_000).await;
    ws.send(Message::text("{not json")).await.unwrap();
    assert_eq!(close_of(&mut ws).await.0, 1003, "non-JSON after start");
    let mut ws = fresh(&lab).await;
    start(&mut ws, 16_000).await;
    ws.send(Message::binary(vec![0u8; 70 * 1024]))
        .await
        .unwrap();
    assert_eq!(close_of(&mut ws).await.0, 1009, "oversized frame");
    let mut ws = fresh(&lab).await;
    start(&mut ws, 16_000).await;
    ws.send(Message::binary(vec![0u8; 641])).await.unwrap();
    assert_eq!(close_of(&mut ws).await.0, 1003, "half a sample");
    // Nothing at all: no start within 10 s; silence after start for 20 s.
    let (mut quiet, mut idle) = (fresh(&lab).await, fresh(&lab).await);
    start(&mut idle, 16_000).await;
    let (quiet_close, idle_close) = tokio::join!(close_of(&mut quiet), close_of(&mut idle));
    assert_eq!(quiet_close.0, 4002, "no start");
    assert_eq!(idle_close.0, 4003, "idle");

    // Meanwhile the good call went on: it spoke its greeting and its socket is open.
    read_until(
        &mut good_stream,
        &mic,
        &mut seen,
        Duration::from_secs(20),
        |s| s.marks.iter().any(|m| m.ends_with(".end")),
    )
    .await;
    assert!(seen.loud_frames > 10 && seen.close.is_none(), "{seen:?}");
    assert_eq!(seen.audio_bytes % 640, 0, "whole 16 kHz frames");
    let (status, _) = lab.server.get("/healthz").await;
    assert_eq!(status, StatusCode::OK);
    mic.send(Pump::Text(r#"{"type":"hangup"}"#.to_owned()))
        .await
        .unwrap();
    read_until(
        &mut good_stream,
        &mic,
        &mut seen,
        Duration::from_secs(20),
        |s| s.close.is_some(),
    )
    .await;
    assert_eq!(seen.close.as_ref().unwrap().0, 1000, "{seen:?}");
    lab.stop().await;
}

/// A draining server (SIGTERM): `/readyz` fails at once and new calls are refused, while the
/// call that is up goes on to its natural end; then the server stops.
#[tokio::test]
async fn a_draining_server_refuses_new_calls_and_lets_a_live_one_finish() {
    let mut lab = CallLab::start(LabOptions {
        configure: Box::new(|c| c.drain_timeout_secs = 60),
        ..LabOptions::default()
    })
    .await;
    let (_, mut stream, mic, mut seen) = live_call(&lab).await;

    lab.server.begin_shutdown().await;
    let (status, body) = lab
        .server
        .post(
            "/web-call/create",
            json!({"assistant_id": lab.assistant_id}),
        )
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["success"], false);

    // The live call still talks: a keypad entry is answered.
    for digit in ["7", "#"] {
        mic.send(Pump::Text(
            json!({"type": "dtmf", "digit": digit}).to_string(),
        ))
        .await
        .unwrap();
    }
    read_until(&mut stream, &mic, &mut seen, Duration::from_secs(20), |s| {
        s.agent_text.join(" ").contains("7 on the keypad")
    })
    .await;
    mic.send(Pump::Text(r#"{"type":"hangup"}"#.to_owned()))
        .await
        .unwrap();
    read_until(&mut stream, &mic, &mut seen, Duration::from_secs(20), |s| {
        s.close.is_some()
    })
    .await;
    assert_eq!(seen.end.as_deref(), Some("caller_hung_up"), "{seen:?}");
    // With its last call gone the server stops (its drain timeout is a minute).
    tokio::time::timeout(Duration::from_secs(30), lab.stop())
        .await
        .expect("the server stopped once its live call ended");
}

/// A call still up when the drain timeout passes is ended politely, as a shutdown.
#[tokio::test]
async fn a_call_outliving_the_drain_ends_as_a_server_shutdown() {
    let mut lab = CallLab::start(LabOptions {
        configure: Box::new(|c| c.drain_timeout_secs = 1),
        ..LabOptions::default()
    })
    .await;
    let (_, mut stream, mic, mut seen) = live_call(&lab).await;
    lab.server.begin_shutdown().await;
    read_until(&mut stream, &mic, &mut seen, Duration::from_secs(20), |s| {
        s.close.is_some()
    })
    .await;
    assert_eq!(seen.end.as_deref(), Some("server_shutdown"), "{seen:?}");
    lab.stop().await;
}
