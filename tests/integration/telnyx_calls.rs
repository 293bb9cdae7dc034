//! Whole phone calls through Telnyx (issue 19): inbound over TeXML and Telnyx's media stream,
//! outbound over Call Control with its events, all through the fake Telnyx and the other fakes,
//! with a simulated caller speaking Telnyx's stream protocol in real time; and what Telnyx's side
//! must never get away with (forged signatures, malformed frames, another codec).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use voxbridge::sim::caller::CallerScript;
use voxbridge::sim::telnyx::{DEFAULT_API_KEY, DEFAULT_CONNECTION_ID, InboundCall, TelnyxCall};
use voxbridge::telephony::telnyx::signature;

use crate::call_lab::{CallLab, GREETING, LabOptions, after_agent, clip, transcript, user_turns};

/// Our Telnyx number and the people calling it.
const TELNYX_NUMBER: &str = "+15550103300";
const CALLER: &str = "+15550109900";
const CALLEE: &str = "+15550208800";

/// A lab with a Telnyx trunk (verifying with `public_key`) and our Telnyx number.
async fn telnyx_lab(options: LabOptions, public_key: Option<String>) -> (CallLab, String) {
    let lab = CallLab::start(options).await;
    let public_key = public_key.unwrap_or_else(|| lab.telnyx.public_key());
    let (status, reply) = lab
        .server
        .post(
            "/trunk/create",
            json!({"trunk_name": "Telnyx", "trunk_provider": "telnyx",
                   "trunk_account_sid": DEFAULT_CONNECTION_ID, "trunk_auth_token": DEFAULT_API_KEY,
                   "trunk_options": {"public_key": public_key},
                   "trunk_default_caller_number": TELNYX_NUMBER}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let trunk_id = reply["data"]["trunk_id"].as_str().unwrap().to_owned();
    let (status, reply) = lab
        .server
        .post(
            "/phone_number/create",
            json!({"phone_number": TELNYX_NUMBER, "assistant_id": lab.assistant_id, "trunk_id": trunk_id}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    (lab, trunk_id)
}

fn call_in(lab: &CallLab, script: CallerScript) -> String {
    lab.telnyx.simulate_inbound_call(InboundCall {
        voice_url: format!("{}/telnyx/voice", lab.server.base),
        from: CALLER.to_owned(),
        to: TELNYX_NUMBER.to_owned(),
        script: Some(script),
    })
}

/// The fake's call once it has ended, and the stored call once it has ended too.
async fn finished(lab: &CallLab, id: &str) -> (TelnyxCall, Value) {
    let sim = lab
        .telnyx
        .wait_for_call_end(id, Duration::from_secs(90))
        .await
        .unwrap_or_else(|| panic!("the call did not end: {:#?}", lab.telnyx.call(id)));
    (sim, lab.stored_call_once_ended().await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telnyx_three_turn_call_greets_first_and_ends_after_the_goodbye() {
    let (lab, _) = telnyx_lab(LabOptions::default(), None).await;
    let script = after_agent(CallerScript::new()).say(clip("book_table"));
    let script = after_agent(script).say(clip("tomorrow_at_seven"));
    let script = after_agent(script)
        .say(clip("thank_you_goodbye"))
        .wait(Duration::from_secs(20));
    let id = call_in(&lab, script);
    let (sim, call) = finished(&lab, &id).await;
    assert!(sim.rejected.is_none(), "{:?}", sim.rejected);
    assert_eq!(sim.bidirectional_mode.as_deref(), Some("rtp"));
    let parameter_names: Vec<&str> = sim
        .custom_parameters
        .iter()
        .map(|(k, _)| k.as_str())
        .collect();
    assert_eq!(parameter_names, ["call_id", "token"]);
    let report = sim.caller_report.as_ref().unwrap();
    assert!(
        report.protocol_errors.is_empty(),
        "{:?}",
        report.protocol_errors
    );
    let first_audio = report.first_agent_audio_at().expect("the agent spoke");
    let first_speech = report.first_speech_at().expect("the caller spoke");
    assert!(
        first_audio < first_speech,
        "greeting at {first_audio:?}, caller at {first_speech:?}"
    );

    assert_eq!(call["status"], "completed", "{call}");
    assert_eq!(call["end_reason"], "assistant_ended_call", "{call}");
    assert_eq!(call["direction"], "inbound");
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
    // Zero transcoding: PCMU went to the STT as μ-law 8 kHz.
    let stream = &lab.deepgram.streams()[0];
    let query = |k: &str| {
        stream
            .query
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(
        (query("encoding"), query("sample_rate")),
        (Some("mulaw"), Some("8000"))
    );
    // The goodbye was heard before the hang-up: its end mark came back.
    let last_end = report
        .marks
        .iter()
        .rfind(|m| m.name.ends_with(".end"))
        .expect("end marks");
    assert!(last_end.echoed_at.is_some_and(|at| at <= report.ended_at));
    lab.stop().await;
}

const LONG_GREETING: &str = "Hello and welcome to Acme, the friendliest restaurant in town. We are open every day from noon until eleven, and tonight our chef recommends the grilled fish. How can I help you?";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telnyx_barge_in_clears_and_keeps_exactly_what_was_heard() {
    let mut options = LabOptions {
        utterances: vec!["Sorry, can I book a table for two?"],
        ..LabOptions::default()
    };
    options.assistant["assistant_start_instruction"] = json!(LONG_GREETING);
    let (lab, _) = telnyx_lab(options, None).await;
    let script = CallerScript::new()
        .wait_for_agent_speech(Duration::from_secs(15))
        .wait(Duration::from_secs(3))
        .say(clip("book_table"))
        .wait(Duration::from_secs(6))
        .hang_up();
    let id = call_in(&lab, script);
    let (sim, call) = finished(&lab, &id).await;
    let report = sim.caller_report.as_ref().unwrap();
    let onset = report.first_speech_at().expect("the caller spoke");
    let clear = report
        .first_clear_after(onset)
        .expect("the agent was cleared");
    assert!(
        clear.at - onset < Duration::from_millis(1200),
        "{:?}",
        clear.at - onset
    );
    let greeting = &call["transcript"][0];
    assert_eq!(greeting["interrupted"], true, "{call}");
    let heard = greeting["text"].as_str().unwrap();
    assert!(
        !heard.is_empty() && heard.len() < LONG_GREETING.len(),
        "heard {heard:?}"
    );
    assert!(LONG_GREETING.starts_with(heard.trim_end_matches(|c: char| !c.is_alphanumeric())));
    // What was heard is exactly the words whose marks Telnyx echoed before the clear.
    let interruption = &call["turns"][0]["interruptions"][0];
    assert_eq!(interruption["heard"], heard, "{call:#}");
    assert_eq!(user_turns(&call), ["Sorry, can I book a table for two?"]);
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telnyx_keypad_digits_make_one_turn() {
    let (lab, _) = telnyx_lab(LabOptions::default(), None).await;
    let mut script = after_agent(CallerScript::new());
    for key in ['4', '2', '#'] {
        script = script.dtmf(key);
    }
    let id = call_in(&lab, after_agent(script).hang_up());
    let (sim, call) = finished(&lab, &id).await;
    assert_eq!(user_turns(&call), ["(the caller entered 42 on the keypad)"]);
    // The caller hung up: Telnyx's stop ended the call as a hang-up.
    assert!(sim.caller_report.unwrap().protocol_errors.is_empty());
    assert_eq!(call["status"], "completed");
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telnyx_transfer_moves_the_call_with_call_control() {
    let options = LabOptions {
        utterances: vec!["Can I talk to a human please?"],
        ..LabOptions::default()
    };
    let (lab, _) = telnyx_lab(options, None).await;
    let script = after_agent(CallerScript::new())
        .say(clip("book_table"))
        .wait(Duration::from_secs(20));
    let id = call_in(&lab, script);
    let (sim, call) = finished(&lab, &id).await;
    assert_eq!(call["end_reason"], "transferred", "{call}");
    assert_eq!(sim.transfers, ["+15550002222"]);
    let transfer = lab
        .telnyx
        .requests()
        .into_iter()
        .find(|r| r.path.ends_with("/actions/transfer"))
        .expect("a transfer command");
    assert!(transfer.authenticated);
    assert_eq!(transfer.body["from"], TELNYX_NUMBER);
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telnyx_outbound_call_dials_streams_and_maps_events() {
    let options = LabOptions {
        utterances: vec!["Thank you, goodbye."],
        ..LabOptions::default()
    };
    let (lab, trunk_id) = telnyx_lab(options, None).await;
    lab.telnyx.set_caller_script(
        CALLEE,
        after_agent(CallerScript::new())
            .say(clip("thank_you_goodbye"))
            .wait(Duration::from_secs(20)),
    );
    let (status, reply) = lab
        .server
        .post(
            "/call/outbound",
            json!({"assistant_id": lab.assistant_id, "trunk_id": trunk_id, "to_number": CALLEE,
                   "call_service": "telnyx", "metadata": {}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let call_id = reply["data"]["call_id"].as_str().unwrap().to_owned();
    let control_id = reply["data"]["provider_call_sid"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(control_id.starts_with("v3:"), "{control_id}");

    // The dial Telnyx received: bidirectional RTP in PCMU, our stream, our events, our token.
    let dial = lab
        .telnyx
        .requests()
        .into_iter()
        .find(|r| r.path == "/v2/calls")
        .unwrap();
    assert!(dial.authenticated && dial.status == 200, "{dial:?}");
    let body = &dial.body;
    assert_eq!(body["connection_id"], DEFAULT_CONNECTION_ID);
    assert_eq!(
        (body["to"].as_str(), body["from"].as_str()),
        (Some(CALLEE), Some(TELNYX_NUMBER))
    );
    assert_eq!(body["stream_bidirectional_mode"], "rtp");
    assert_eq!(body["stream_bidirectional_codec"], "PCMU");
    assert_eq!(body["stream_track"], "inbound_track");
    assert!(
        body["stream_url"]
            .as_str()
            .unwrap()
            .ends_with("/telnyx/media")
    );
    assert_eq!(
        body["webhook_url"],
        format!("{}/telnyx/status?call_id={call_id}", lab.server.base)
    );
    assert!(body["client_state"].as_str().is_some());

    let (sim, call) = finished(&lab, &control_id).await;
    assert_eq!(
        sim.events,
        [
            "call.initiated",
            "call.answered",
            "streaming.started",
            "streaming.stopped",
            "call.hangup"
        ]
    );
    // Every signed event was accepted.
    for webhook in lab.telnyx.webhooks() {
        assert_eq!(webhook.status, 204, "{webhook:?}");
    }
    assert_eq!(call["call_id"], call_id);
    assert_eq!(call["status"], "completed", "{call}");
    assert_eq!(call["direction"], "outbound");
    assert_eq!(user_turns(&call), ["Thank you, goodbye."]);
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telnyx_busy_and_api_hang_up_are_reported() {
    let (lab, trunk_id) = telnyx_lab(LabOptions::default(), None).await;
    let busy = "+15550208801";
    lab.telnyx.set_outcome(
        busy,
        voxbridge::sim::twilio::CallOutcome::Busy {
            after: Duration::from_millis(200),
        },
    );
    let place = |to: &str| {
        json!({"assistant_id": lab.assistant_id, "trunk_id": trunk_id, "to_number": to,
               "call_service": "telnyx"})
    };
    let (status, reply) = lab.server.post("/call/outbound", place(busy)).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let busy_id = reply["data"]["call_id"].as_str().unwrap().to_owned();
    let control_id = reply["data"]["provider_call_sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let sim = lab
        .telnyx
        .wait_for_call_end(&control_id, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(sim.hangup_cause.as_deref(), Some("user_busy"));
    let mut stored = Value::Null;
    for _ in 0..50 {
        stored = lab.server.get(&format!("/call/details/{busy_id}")).await.1["data"].clone();
        if stored["status"] == "busy" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stored["status"], "busy", "{stored}");

    // A long call hung up over our API: Telnyx gets the hangup command, and a second one
    // (the call has ended: 422/90018) is no error.
    lab.telnyx
        .set_caller_script(CALLEE, CallerScript::new().wait(Duration::from_secs(60)));
    let (_, reply) = lab.server.post("/call/outbound", place(CALLEE)).await;
    let call_id = reply["data"]["call_id"].as_str().unwrap().to_owned();
    let control_id = reply["data"]["provider_call_sid"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..100 {
        if lab
            .telnyx
            .call(&control_id)
            .is_some_and(|c| c.events.iter().any(|e| e == "streaming.started"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (status, reply) = lab
        .server
        .post(&format!("/call/hangup/{call_id}"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    lab.telnyx
        .wait_for_call_end(&control_id, Duration::from_secs(20))
        .await
        .expect("the call ended");
    // The session closing the stream and the hangup command race to the fake (the call runs
    // on its own core thread): whichever is first ends the call, and a command that comes
    // second is answered 422/90018, which is no error: the hang-up above answered 200 anyway.
    let again = lab
        .telnyx
        .requests()
        .into_iter()
        .filter(|r| r.path.ends_with("/actions/hangup"))
        .count();
    assert!(again >= 1);
    lab.stop().await;
}

/// Raw Telnyx traffic signed with a key of the test's own.
mod wire {
    use super::*;
    use aws_lc_rs::signature::Ed25519KeyPair;

    pub type Socket = tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >;

    pub async fn voice_webhook(
        lab: &CallLab,
        key: &Ed25519KeyPair,
        age_secs: i64,
    ) -> (u16, String) {
        let url = format!("{}/telnyx/voice", lab.server.base);
        let body = format!(
            "AccountSid=3e6f995f&CallSid=v3%3Araw-1&ConnectionId={DEFAULT_CONNECTION_ID}&From=%2B15550109900&To=%2B15550103300&CallStatus=ringing&Direction=inbound"
        );
        let timestamp = (signature::now_unix() - age_secs).to_string();
        let response = reqwest::Client::new()
            .post(&url)
            .header("content-type", "application/x-www-form-urlencoded")
            .header(signature::TIMESTAMP_HEADER, &timestamp)
            .header(
                signature::SIGNATURE_HEADER,
                signature::sign(key, &timestamp, body.as_bytes()),
            )
            .body(body)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    pub fn parameters(texml: &str) -> (String, String) {
        let value = |name: &str| {
            let key = format!("name=\"{name}\" value=\"");
            let start = texml
                .find(&key)
                .unwrap_or_else(|| panic!("no {name} in {texml}"))
                + key.len();
            texml[start..].split('"').next().unwrap().to_owned()
        };
        (value("call_id"), value("token"))
    }

    pub async fn connect(lab: &CallLab) -> Socket {
        let url = format!(
            "{}/telnyx/media",
            lab.server.base.replace("http://", "ws://")
        );
        tokio_tungstenite::connect_async(url)
            .await
            .expect("media socket")
            .0
    }

    pub async fn start(socket: &mut Socket, call_id: &str, token: &str, encoding: &str) {
        socket
            .send(Message::text(r#"{"event":"connected","version":"1.0.0"}"#))
            .await
            .unwrap();
        let start = json!({"event": "start", "sequence_number": "1", "stream_id": "raw-stream",
            "start": {"call_control_id": "v3:raw-1", "custom_parameters": {"call_id": call_id, "token": token},
                      "media_format": {"encoding": encoding, "sample_rate": 8000, "channels": 1}}});
        socket.send(Message::text(start.to_string())).await.unwrap();
    }

    /// Outbound `media` messages seen until the server closes or `limit` passes.
    pub async fn drain(socket: &mut Socket, limit: Duration) -> (usize, bool) {
        let mut media = 0;
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, socket.next()).await {
                Err(_) => return (media, false),
                Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => {
                    return (media, true);
                }
                Ok(Some(Ok(Message::Text(text)))) => {
                    assert!(
                        !text.contains("stream_id") && !text.contains("streamSid"),
                        "{text}"
                    );
                    if text.contains("\"event\":\"media\"") {
                        media += 1;
                    }
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telnyx_forged_or_stale_signatures_are_refused() {
    let key = aws_lc_rs::signature::Ed25519KeyPair::generate().unwrap();
    let (lab, _) = telnyx_lab(
        LabOptions::default(),
        Some(signature::public_key_base64(&key)),
    )
    .await;
    let forger = aws_lc_rs::signature::Ed25519KeyPair::generate().unwrap();
    let (status, _) = wire::voice_webhook(&lab, &forger, 0).await;
    assert_eq!(status, 403, "a webhook signed with another key is refused");
    let (status, _) = wire::voice_webhook(&lab, &key, 600).await;
    assert_eq!(status, 403, "a ten-minute-old signature is refused");
    let (_, list) = lab.server.get("/call/list").await;
    assert_eq!(list["data"]["total"], 0, "no call was created");
    let (status, texml) = wire::voice_webhook(&lab, &key, 0).await;
    assert_eq!(status, 200, "{texml}");
    assert!(texml.contains(r#"bidirectionalMode="rtp""#), "{texml}");
    // A forged status callback about that call is refused too.
    let (_, list) = lab.server.get("/call/list").await;
    let call_id = list["data"]["calls"][0]["call_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = r#"{"data":{"event_type":"call.hangup","payload":{"call_control_id":"v3:raw-1","hangup_cause":"normal_clearing"}}}"#;
    let timestamp = signature::now_unix().to_string();
    let response = reqwest::Client::new()
        .post(format!(
            "{}/telnyx/status?call_id={call_id}",
            lab.server.base
        ))
        .header(signature::TIMESTAMP_HEADER, &timestamp)
        .header(
            signature::SIGNATURE_HEADER,
            signature::sign(&forger, &timestamp, body.as_bytes()),
        )
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telnyx_bad_frames_are_skipped_and_another_codec_refused() {
    let key = aws_lc_rs::signature::Ed25519KeyPair::generate().unwrap();
    let (lab, _) = telnyx_lab(
        LabOptions::default(),
        Some(signature::public_key_base64(&key)),
    )
    .await;

    // PCMA was not asked for: the stream is refused before any provider is contacted.
    let (_, texml) = wire::voice_webhook(&lab, &key, 0).await;
    let (call_id, token) = wire::parameters(&texml);
    let mut socket = wire::connect(&lab).await;
    wire::start(&mut socket, &call_id, &token, "PCMA").await;
    let (media, closed) = wire::drain(&mut socket, Duration::from_secs(5)).await;
    assert!(closed && media == 0, "media {media}, closed {closed}");
    assert!(lab.deepgram.streams().is_empty(), "the STT was contacted");

    let (_, texml) = wire::voice_webhook(&lab, &key, 0).await;
    let (call_id, token) = wire::parameters(&texml);
    let mut socket = wire::connect(&lab).await;
    wire::start(&mut socket, &call_id, &token, "PCMU").await;
    for frame in [
        "not json at all".to_owned(),
        "{\"event\":".to_owned(),
        r#"{"event":"media","sequence_number":"2","stream_id":"raw-stream","media":{"payload":"***"}}"#.to_owned(),
        r#"{"event":"launch","sequence_number":"3","stream_id":"raw-stream"}"#.to_owned(),
        format!(r#"{{"event":"media","sequence_number":"4","stream_id":"raw-stream","media":{{"payload":"{}"}}}}"#, "A".repeat(40_000)),
        r#"{"event":"error","sequence_number":"5","stream_id":"raw-stream","payload":{"code":100003,"title":"malformed_frame"}}"#.to_owned(),
        r#"{"event":"mark","sequence_number":"6","stream_id":"raw-stream"}"#.to_owned(),
        // Out of order: 8 before 7.
        r#"{"event":"media","sequence_number":"8","stream_id":"raw-stream","media":{"payload":"//8="}}"#.to_owned(),
        r#"{"event":"media","sequence_number":"7","stream_id":"raw-stream","media":{"payload":"//8="}}"#.to_owned(),
    ] {
        socket.send(Message::text(frame)).await.unwrap();
    }
    socket.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    let (media, closed) = wire::drain(&mut socket, Duration::from_secs(3)).await;
    assert!(
        !closed && media > 0,
        "the greeting still plays: media {media}, closed {closed}"
    );
    let (status, _) = lab.server.get("/healthz").await;
    assert_eq!(status, StatusCode::OK);
    drop(socket);
    lab.stop().await;
}
