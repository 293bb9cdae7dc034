//! Whole phone calls over Plivo: the signed answer URL, Plivo XML, Plivo's stream protocol
//! (μ-law straight through), checkpoints for what was heard, DTMF, outbound calls with Plivo's
//! request and call UUIDs and its status words, forged signatures, bad frames, and Plivo's
//! second socket after a call.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;
use voxbridge::sim::caller::CallerScript;
use voxbridge::sim::plivo::{DEFAULT_AUTH_ID, DEFAULT_AUTH_TOKEN};
use voxbridge::sim::twilio::CallOutcome;
use voxbridge::telephony::plivo::headers;
use voxbridge::telephony::plivo::signature::{
    Method, NONCE_HEADER, SIGNATURE_HEADER, compute_signature,
};

use crate::call_lab::{CallLab, GREETING, LabOptions, after_agent, clip, transcript, user_turns};

const PLIVO_NUMBER: &str = "+14155550100";
const CALLER: &str = "+14155550111";

/// A lab with a Plivo trunk and number beside its Twilio ones; answers the Plivo trunk's id.
async fn plivo_lab(options: LabOptions) -> (CallLab, String) {
    let lab = CallLab::start(options).await;
    let (status, reply) = lab
        .server
        .post(
            "/trunk/create",
            json!({"trunk_name": "Plivo", "trunk_provider": "plivo",
                   "trunk_account_sid": DEFAULT_AUTH_ID, "trunk_auth_token": DEFAULT_AUTH_TOKEN,
                   "trunk_default_caller_number": PLIVO_NUMBER}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let trunk_id = reply["data"]["trunk_id"].as_str().unwrap().to_owned();
    let (status, reply) = lab
        .server
        .post(
            "/phone_number/create",
            json!({"phone_number": PLIVO_NUMBER, "assistant_id": lab.assistant_id, "trunk_id": trunk_id}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    (lab, trunk_id)
}

fn call_in(lab: &CallLab, script: CallerScript) -> String {
    lab.plivo.simulate_inbound_call(
        &format!("{}/plivo/voice", lab.server.base),
        DEFAULT_AUTH_ID,
        CALLER,
        PLIVO_NUMBER,
        Some(script),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plivo_inbound_call_greets_takes_three_turns_and_refuses_the_second_socket() {
    let (lab, _) = plivo_lab(LabOptions::default()).await;
    let script = after_agent(CallerScript::new()).say(clip("book_table"));
    let script = after_agent(script).say(clip("tomorrow_at_seven"));
    let script = after_agent(script)
        .say(clip("thank_you_goodbye"))
        .wait(Duration::from_secs(20));
    let uuid = call_in(&lab, script);
    let sim = lab
        .plivo
        .wait_for_call_end(&uuid, Duration::from_secs(120))
        .await
        .expect("the call ends");
    let call = lab.stored_call_once_ended().await;
    let report = &sim.reports[0];
    assert!(
        report.protocol_errors.is_empty(),
        "{:?}",
        report.protocol_errors
    );
    let first_audio = report.first_agent_audio_at().expect("the agent spoke");
    let first_speech = report.first_speech_at().expect("the caller spoke");
    assert!(first_audio < first_speech);
    assert_eq!(call["status"], "completed", "{call}");
    assert_eq!(call["end_reason"], "assistant_ended_call", "{call}");
    assert_eq!(
        user_turns(&call),
        [
            "Hi, I'd like to book a table for two.",
            "Yes, tomorrow at seven please.",
            "Thank you, goodbye."
        ]
    );
    assert_eq!(
        transcript(&call)[0],
        ("assistant".to_owned(), GREETING.to_owned())
    );
    // μ-law end to end: what Plivo streamed went to Deepgram as is.
    let stream = lab.deepgram.streams().into_iter().last().unwrap();
    let query = |k: &str| {
        stream
            .query
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(query("encoding").as_deref(), Some("mulaw"));
    // Every checkpoint of the goodbye came back as playedStream before the close.
    assert!(
        report
            .marks
            .iter()
            .any(|m| m.name.ends_with(".end") && m.echoed_at.is_some())
    );
    // Plivo's second socket after the call carried the consumed token: refused.
    assert_eq!(sim.second_socket_refused, Some(true));
    let (_, list) = lab.server.get("/call/list").await;
    assert_eq!(list["data"]["calls"].as_array().unwrap().len(), 1, "{list}");
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plivo_barge_in_keeps_exactly_what_was_heard_and_keys_make_a_turn() {
    let mut options = LabOptions::default();
    options.assistant["assistant_start_instruction"] = json!(
        "Hello and welcome to Acme, the friendliest restaurant in town. We are open every day from noon until eleven, and tonight our chef recommends the grilled fish. How can I help you?"
    );
    options.utterances = vec!["Sorry, can I book a table for two?"];
    let (lab, _) = plivo_lab(options).await;
    let mut script = CallerScript::new()
        .wait_for_agent_speech(Duration::from_secs(15))
        .wait(Duration::from_secs(3))
        .say(clip("book_table"));
    script = after_agent(script);
    for key in ['4', '2', '#'] {
        script = script.dtmf(key);
    }
    let script = after_agent(script).hang_up();
    let uuid = call_in(&lab, script);
    let sim = lab
        .plivo
        .wait_for_call_end(&uuid, Duration::from_secs(120))
        .await
        .expect("the call ends");
    let call = lab.stored_call_once_ended().await;
    let report = &sim.reports[0];
    assert!(
        report.protocol_errors.is_empty(),
        "{:?}",
        report.protocol_errors
    );
    let onset = report.first_speech_at().unwrap();
    let clear = report
        .first_clear_after(onset)
        .expect("clearAudio was sent");
    assert!(clear.at - onset < Duration::from_millis(1200));
    let greeting = &call["transcript"][0];
    assert_eq!(greeting["interrupted"], true, "{call}");
    let heard = greeting["text"].as_str().unwrap();
    // What was heard is exactly the words whose checkpoints came back before the clear.
    let timing = &call["turns"][0]["interruptions"][0];
    assert_eq!(timing["heard"], heard, "{call:#}");
    assert!(!heard.is_empty() && heard.len() < 150, "{heard:?}");
    let users = user_turns(&call);
    assert_eq!(users[0], "Sorry, can I book a table for two?");
    assert!(
        users
            .iter()
            .any(|u| u == "(the caller entered 42 on the keypad)"),
        "{users:?}"
    );
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plivo_outbound_call_places_answers_reports_status_and_hangs_up() {
    let (lab, trunk_id) = plivo_lab(LabOptions {
        utterances: vec!["Thank you, goodbye."],
        ..LabOptions::default()
    })
    .await;
    let callee = "+14155550177";
    lab.plivo.set_caller_script(
        callee,
        after_agent(CallerScript::new())
            .say(clip("thank_you_goodbye"))
            .wait(Duration::from_secs(20)),
    );
    let (status, reply) = lab
        .server
        .post(
            "/call/outbound",
            json!({"assistant_id": lab.assistant_id, "trunk_id": trunk_id, "to_number": callee,
                   "call_service": "plivo", "metadata": {}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let request_uuid = reply["data"]["provider_call_sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let create = lab
        .plivo
        .requests()
        .into_iter()
        .find(|r| r.method == "POST")
        .unwrap();
    assert!(create.authenticated);
    assert_eq!(create.path, format!("/v1/Account/{DEFAULT_AUTH_ID}/Call/"));
    assert_eq!(create.body["to"], "14155550177");
    assert_eq!(create.body["from"], "14155550100");
    assert!(
        create.body["answer_url"]
            .as_str()
            .unwrap()
            .contains("/plivo/voice?call_id=")
    );
    assert!(
        create.body["hangup_url"]
            .as_str()
            .unwrap()
            .contains("/plivo/status?call_id=")
    );
    let sim = lab
        .plivo
        .wait_for_call_end(&request_uuid, Duration::from_secs(120))
        .await
        .expect("the call ends");
    assert_ne!(sim.call_uuid, request_uuid);
    let call = lab.stored_call_once_ended().await;
    assert_eq!(call["status"], "completed", "{call}");
    assert_eq!(call["direction"], "outbound");
    assert_eq!(user_turns(&call), ["Thank you, goodbye."]);
    // Every webhook the fake sent (ring, answer, hang-up) was accepted.
    let hooks = lab.plivo.webhooks();
    assert!(
        hooks.iter().all(|h| (200..300).contains(&h.status)),
        "{hooks:#?}"
    );
    assert!(
        hooks
            .iter()
            .any(|h| h.value("CallStatus") == Some("ringing"))
    );
    lab.stop().await;
}

/// Placing answers a request UUID; the ring callback names the CallUUID, which replaces it, so a
/// hang-up while the phone rings ends the call by its CallUUID.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plivo_hang_up_while_ringing_uses_the_call_uuid_from_the_callback() {
    let (lab, trunk_id) = plivo_lab(LabOptions::default()).await;
    let callee = "+14155550166";
    lab.plivo.set_outcome(
        callee,
        CallOutcome::Answer {
            after: Duration::from_secs(30),
        },
    );
    let (status, reply) = lab
        .server
        .post(
            "/call/outbound",
            json!({"assistant_id": lab.assistant_id, "trunk_id": trunk_id, "to_number": callee,
                   "call_service": "plivo"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let call_id = reply["data"]["call_id"].as_str().unwrap().to_owned();
    let request_uuid = reply["data"]["provider_call_sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let rung = lab
        .plivo
        .wait_for(Duration::from_secs(10), |sim| {
            sim.webhooks()
                .into_iter()
                .find(|h| h.value("CallStatus") == Some("ringing") && h.status == 204)
        })
        .await
        .expect("the ring callback was accepted");
    let call_uuid = rung.value("CallUUID").unwrap().to_owned();
    assert_ne!(call_uuid, request_uuid);
    let (status, reply) = lab
        .server
        .post(&format!("/call/hangup/{call_id}"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let requests = lab.plivo.requests();
    let delete = requests
        .iter()
        .find(|r| r.method == "DELETE")
        .expect("a hang-up reached Plivo");
    assert_eq!(
        delete.path,
        format!("/v1/Account/{DEFAULT_AUTH_ID}/Call/{call_uuid}/")
    );
    assert_eq!(delete.status, 204);
    let sim = lab
        .plivo
        .wait_for_call_end(&call_uuid, Duration::from_secs(10))
        .await
        .expect("the call ended");
    assert_eq!(sim.status, "cancel");
    let call = lab.stored_call_once_ended().await;
    assert_eq!(call["status"], "canceled", "{call}");
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plivo_busy_and_refused_calls_end_with_our_statuses() {
    let (lab, trunk_id) = plivo_lab(LabOptions::default()).await;
    lab.plivo.set_outcome(
        "+14155550188",
        CallOutcome::Busy {
            after: Duration::from_millis(50),
        },
    );
    let (status, reply) = lab
        .server
        .post(
            "/call/outbound",
            json!({"assistant_id": lab.assistant_id, "trunk_id": trunk_id, "to_number": "+14155550188",
                   "call_service": "plivo"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let call = lab.stored_call_once_ended().await;
    assert_eq!(call["status"], "busy", "{call}");
    // Plivo refuses a call to our own number (src and destination overlap): a 400 naming it.
    let (status, reply) = lab
        .server
        .post(
            "/call/outbound",
            json!({"assistant_id": lab.assistant_id, "trunk_id": trunk_id, "to_number": PLIVO_NUMBER,
                   "call_service": "plivo"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    assert!(
        reply["message"].as_str().unwrap().contains("Plivo"),
        "{reply}"
    );
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plivo_forged_signatures_and_bad_trunks_are_refused() {
    let (lab, _) = plivo_lab(LabOptions::default()).await;
    let url = format!("{}/plivo/voice", lab.server.base);
    let form = [
        ("CallUUID", "0d2f8d1c-0000-4000-8000-000000000001"),
        ("From", "14155550111"),
        ("To", "14155550100"),
        ("CallStatus", "ringing"),
        ("Direction", "inbound"),
    ];
    let client = reqwest::Client::new();
    let send = |signature: String, nonce: &'static str| {
        client
            .post(&url)
            .header(SIGNATURE_HEADER, signature)
            .header(NONCE_HEADER, nonce)
            .form(&form)
            .send()
    };
    let good = compute_signature(DEFAULT_AUTH_TOKEN, Method::Post, &url, &form, "7").unwrap();
    let forged = compute_signature("wrong-token", Method::Post, &url, &form, "7").unwrap();
    assert_eq!(
        send(forged, "7").await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        send(good.clone(), "8").await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    let answer = send(good, "7").await.unwrap();
    assert_eq!(answer.status(), StatusCode::OK);
    let xml = answer.text().await.unwrap();
    assert!(xml.contains(r#"<Stream bidirectional="true""#), "{xml}");
    assert!(
        xml.contains(r#"contentType="audio/x-mulaw;rate=8000""#),
        "{xml}"
    );
    // A trunk with Twilio-shaped credentials is refused by shape.
    let (status, reply) = lab
        .server
        .post(
            "/trunk/create",
            json!({"trunk_name": "Bad", "trunk_provider": "plivo",
                   "trunk_account_sid": "AC0123456789abcdef0123456789abcdef",
                   "trunk_auth_token": "0123456789abcdef0123456789abcdef",
                   "trunk_default_caller_number": "+14155550101"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    let fields: Vec<&str> = reply["data"]["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["field"].as_str().unwrap())
        .collect();
    assert_eq!(fields, ["trunk_account_sid", "trunk_auth_token"], "{reply}");
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plivo_bad_frames_are_skipped_and_a_wrong_codec_is_refused() {
    let (lab, _) = plivo_lab(LabOptions::default()).await;
    // Ring the number by hand to get a stream token.
    let url = format!("{}/plivo/voice", lab.server.base);
    let form = [
        ("CallUUID", "0d2f8d1c-0000-4000-8000-000000000002"),
        ("From", "14155550111"),
        ("To", "14155550100"),
        ("CallStatus", "ringing"),
    ];
    let signature = compute_signature(DEFAULT_AUTH_TOKEN, Method::Post, &url, &form, "1").unwrap();
    let xml = reqwest::Client::new()
        .post(&url)
        .header(SIGNATURE_HEADER, signature)
        .header(NONCE_HEADER, "1")
        .form(&form)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let extra = xml
        .split(r#"extraHeaders=""#)
        .nth(1)
        .and_then(|s| s.split('"').next())
        .unwrap()
        .to_owned();
    let (call_id, token) = headers::decode(&extra);
    assert!(call_id.is_some() && token.is_some());
    let ws = format!("{}/plivo/media", lab.server.base.replace("http", "ws"));

    // A wrong codec in start: refused before anything starts (the token is not consumed).
    let (mut socket, _) = tokio_tungstenite::connect_async(&ws).await.unwrap();
    let start = |encoding: &str, rate: u32| {
        json!({"event": "start", "sequenceNumber": 1,
               "start": {"callId": "0d2f8d1c-0000-4000-8000-000000000002", "streamId": "s-1",
                         "accountId": DEFAULT_AUTH_ID, "tracks": ["inbound"],
                         "mediaFormat": {"encoding": encoding, "sampleRate": rate}},
               "extra_headers": extra.replace(',', ";")})
        .to_string()
    };
    socket
        .send(Message::text(start("audio/opus", 48000)))
        .await
        .unwrap();
    let closed = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(message)) = socket.next().await {
            if matches!(message, Message::Close(_)) {
                return true;
            }
        }
        true
    })
    .await
    .unwrap_or(false);
    assert!(closed, "a wrong codec closes the socket");

    // The right codec, then garbage: the call goes on and speaks.
    let (mut socket, _) = tokio_tungstenite::connect_async(&ws).await.unwrap();
    socket
        .send(Message::text(start("audio/x-mulaw", 8000)))
        .await
        .unwrap();
    for bad in [
        "not json".to_owned(),
        r#"{"event":"media","sequenceNumber":2,"streamId":"s-1"}"#.to_owned(),
        r#"{"event":"media","sequenceNumber":3,"streamId":"s-1","media":{"payload":"@@@"}}"#
            .to_owned(),
        r#"{"event":"bogus","sequenceNumber":4,"streamId":"s-1"}"#.to_owned(),
        "x".repeat(40_000),
    ] {
        socket.send(Message::text(bad)).await.unwrap();
    }
    let mut played = 0;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut seq = 10u64;
    while played < 5 && tokio::time::Instant::now() < deadline {
        seq += 1;
        let media = json!({"event": "media", "sequenceNumber": seq, "streamId": "s-1",
            "media": {"track": "inbound", "timestamp": "1", "chunk": seq, "payload": "//////////8="}});
        socket.send(Message::text(media.to_string())).await.unwrap();
        if let Ok(Some(Ok(Message::Text(text)))) =
            tokio::time::timeout(Duration::from_millis(20), socket.next()).await
            && text.contains("playAudio")
        {
            played += 1;
        }
    }
    assert!(played >= 5, "the greeting plays despite the bad frames");
    let _ = socket.close(None).await;
    lab.stop().await;
}
