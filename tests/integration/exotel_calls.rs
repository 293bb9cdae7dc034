//! Whole phone calls over Exotel's Voicebot stream: the applet URL proven by its secret and
//! answered with the stream URL, Basic credentials on the upgrade, PCM16 8 kHz both ways in
//! Exotel's chunk sizes, marks for what was heard, DTMF, outbound calls through the Connect API
//! with status callbacks proven per call, and what is refused.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use voxbridge::sim::caller::CallerScript;
use voxbridge::sim::exotel::{DEFAULT_ACCOUNT_SID, DEFAULT_API_KEY, DEFAULT_API_TOKEN};

use crate::call_lab::{CallLab, GREETING, LabOptions, after_agent, clip, transcript, user_turns};

const EXOPHONE: &str = "+918040000000";
const CALLER: &str = "+919876500000";
const SECRET: &str = "lab-exotel-stream-secret-000001";

async fn exotel_lab(options: LabOptions) -> (CallLab, String) {
    let lab = CallLab::start(options).await;
    let (status, reply) = lab
        .server
        .post(
            "/trunk/create",
            json!({"trunk_name": "Exotel", "trunk_provider": "exotel",
                   "trunk_account_sid": DEFAULT_ACCOUNT_SID, "trunk_auth_token": DEFAULT_API_TOKEN,
                   "trunk_default_caller_number": EXOPHONE,
                   "trunk_options": {"api_key": DEFAULT_API_KEY, "stream_secret": SECRET}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let trunk_id = reply["data"]["trunk_id"].as_str().unwrap().to_owned();
    // The secret is write-only.
    let (_, details) = lab.server.get(&format!("/trunk/details/{trunk_id}")).await;
    assert_ne!(
        details["data"]["trunk_options"]["stream_secret"], SECRET,
        "{details}"
    );
    let (status, reply) = lab
        .server
        .post(
            "/phone_number/create",
            json!({"phone_number": EXOPHONE, "assistant_id": lab.assistant_id, "trunk_id": trunk_id}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    (lab, trunk_id)
}

fn applet_url(lab: &CallLab, secret: &str) -> String {
    format!("{}/exotel/voice?secret={secret}", lab.server.base)
}

fn call_in(lab: &CallLab, script: CallerScript) -> String {
    lab.exotel.simulate_inbound_call(
        &applet_url(lab, SECRET),
        DEFAULT_ACCOUNT_SID,
        CALLER,
        EXOPHONE,
        Some(script),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exotel_inbound_call_greets_and_takes_three_turns_in_pcm16() {
    let (lab, _) = exotel_lab(LabOptions::default()).await;
    let script = after_agent(CallerScript::new()).say(clip("book_table"));
    let script = after_agent(script).say(clip("tomorrow_at_seven"));
    let script = after_agent(script)
        .say(clip("thank_you_goodbye"))
        .wait(Duration::from_secs(20));
    let sid = call_in(&lab, script);
    let sim = lab
        .exotel
        .wait_for_call_end(&sid, Duration::from_secs(120))
        .await
        .expect("the call ends");
    let call = lab.stored_call_once_ended().await;
    let report = &sim.reports[0];
    // Every chunk was whole 20 ms steps, stream_sid in snake_case, marks echoed.
    assert!(
        report.protocol_errors.is_empty(),
        "{:?}",
        report.protocol_errors
    );
    assert!(report.first_agent_audio_at().unwrap() < report.first_speech_at().unwrap());
    assert_eq!(call["status"], "completed", "{call}");
    assert_eq!(call["end_reason"], "assistant_ended_call", "{call}");
    assert_eq!(
        call["from_number"], CALLER,
        "national numbers became E.164: {call}"
    );
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
    // PCM16 8 kHz: the STT was asked for linear16 at 8000.
    let stream = lab.deepgram.streams().into_iter().last().unwrap();
    let query = |k: &str| {
        stream
            .query
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
    };
    assert_eq!(query("encoding").as_deref(), Some("linear16"));
    assert_eq!(query("sample_rate").as_deref(), Some("8000"));
    assert!(
        report
            .marks
            .iter()
            .any(|m| m.name.ends_with(".end") && m.echoed_at.is_some())
    );
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exotel_barge_in_keeps_what_was_heard_and_keys_make_a_turn() {
    let mut options = LabOptions::default();
    options.assistant["assistant_start_instruction"] = json!(
        "Hello and welcome to Acme, the friendliest restaurant in town. We are open every day from noon until eleven, and tonight our chef recommends the grilled fish. How can I help you?"
    );
    options.utterances = vec!["Sorry, can I book a table for two?"];
    let (lab, _) = exotel_lab(options).await;
    let mut script = CallerScript::new()
        .wait_for_agent_speech(Duration::from_secs(15))
        .wait(Duration::from_secs(3))
        .say(clip("book_table"));
    script = after_agent(script);
    for key in ['4', '2', '#'] {
        script = script.dtmf(key);
    }
    let script = after_agent(script).hang_up();
    let sid = call_in(&lab, script);
    let sim = lab
        .exotel
        .wait_for_call_end(&sid, Duration::from_secs(120))
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
    let clear = report.first_clear_after(onset).expect("clear was sent");
    assert!(clear.at - onset < Duration::from_millis(1300));
    let greeting = &call["transcript"][0];
    assert_eq!(greeting["interrupted"], true, "{call}");
    let heard = greeting["text"].as_str().unwrap();
    assert_eq!(
        call["turns"][0]["interruptions"][0]["heard"], heard,
        "{call:#}"
    );
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
async fn exotel_outbound_call_connects_to_a_per_call_stream_and_reports_status() {
    let (lab, trunk_id) = exotel_lab(LabOptions {
        utterances: vec!["Thank you, goodbye."],
        ..LabOptions::default()
    })
    .await;
    let callee = "+919876511111";
    lab.exotel.set_caller_script(
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
                   "call_service": "exotel"}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let sid = reply["data"]["provider_call_sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let create = lab.exotel.requests().into_iter().next().unwrap();
    assert!(create.authenticated);
    assert_eq!(
        create.path,
        format!("/v1/accounts/{DEFAULT_ACCOUNT_SID}/calls/connect")
    );
    assert_eq!(create.value("from"), Some(callee));
    assert_eq!(create.value("callerid"), Some(EXOPHONE));
    assert_eq!(create.value("streamtype"), Some("bidirectional"));
    let stream_url = create.value("streamurl").unwrap();
    assert!(
        stream_url.contains(&format!("{DEFAULT_ACCOUNT_SID}:{SECRET}@")),
        "{stream_url}"
    );
    assert!(stream_url.contains("sample-rate=8000"), "{stream_url}");
    assert!(create.value("statuscallback").unwrap().contains("&sig="));
    let sim = lab
        .exotel
        .wait_for_call_end(&sid, Duration::from_secs(120))
        .await
        .expect("the call ends");
    assert!(
        sim.reports[0].protocol_errors.is_empty(),
        "{:?}",
        sim.reports[0].protocol_errors
    );
    let call = lab.stored_call_once_ended().await;
    assert_eq!(call["status"], "completed", "{call}");
    assert_eq!(user_turns(&call), ["Thank you, goodbye."]);
    let hooks = lab.exotel.webhooks();
    assert!(
        hooks.iter().all(|h| (200..300).contains(&h.status)),
        "{hooks:#?}"
    );
    assert!(
        hooks
            .iter()
            .any(|h| h.value("EventType") == Some("answered"))
    );
    assert!(
        hooks
            .iter()
            .any(|h| h.value("EventType") == Some("terminal"))
    );
    // Hanging up an ended call is a conflict, not an Exotel error.
    let (status, _) = lab
        .server
        .post(
            &format!("/call/hangup/{}", call["call_id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exotel_requests_without_the_secret_or_credentials_are_refused() {
    let (lab, trunk_id) = exotel_lab(LabOptions::default()).await;
    let client = reqwest::Client::new();
    let query = "&CallSid=CA1&CallFrom=09876500000&CallTo=08040000000&Direction=incoming";
    let wrong = client
        .get(format!("{}{query}", applet_url(&lab, "guessed-secret")))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);
    let right = client
        .get(format!("{}{query}", applet_url(&lab, SECRET)))
        .send()
        .await
        .unwrap();
    assert_eq!(right.status(), StatusCode::OK);
    let answer: Value = right.json().await.unwrap();
    let stream_url = answer["url"].as_str().unwrap().to_owned();
    // A status callback without the call's sig is refused.
    let (_, list) = lab.server.get("/call/list").await;
    let call_id = list["data"]["calls"][0]["call_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let forged = client
        .post(format!(
            "{}/exotel/status?call_id={call_id}&sig=00",
            lab.server.base
        ))
        .form(&[("CallSid", "CA1"), ("Status", "completed")])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);

    // The stream without Basic credentials: closed before anything starts.
    let (url, _, parameters) = voxbridge::sim::exotel::call::split_stream_url(&stream_url).unwrap();
    let value = |k: &str| {
        parameters
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let start = json!({"event": "start", "sequence_number": "1", "stream_sid": "MZ1",
        "start": {"stream_sid": "MZ1", "call_sid": "CA1", "account_sid": DEFAULT_ACCOUNT_SID,
                  "custom_parameters": {"call_id": value("call_id"), "token": value("token")},
                  "media_format": {"encoding": "audio/x-raw", "sample_rate": "8000", "bit_rate": "16"}}})
    .to_string();
    let (mut socket, _) = tokio_tungstenite::connect_async(&url).await.unwrap();
    socket
        .send(Message::text(r#"{"event":"connected"}"#))
        .await
        .unwrap();
    socket.send(Message::text(start.clone())).await.unwrap();
    let mut audio = false;
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        while let Some(Ok(message)) = socket.next().await {
            match message {
                Message::Text(t) if t.contains("\"media\"") => audio = true,
                Message::Close(_) => break,
                _ => {}
            }
        }
    })
    .await;
    assert!(!audio, "no audio for a socket without credentials");

    // The refused socket did not spend the call's token: Exotel's own socket, with the
    // credentials, still gets the call.
    let mut request = url.as_str().into_client_request().unwrap();
    request.headers_mut().insert(
        "authorization",
        voxbridge::telephony::exotel::signature::basic_authorization(DEFAULT_ACCOUNT_SID, SECRET)
            .parse()
            .unwrap(),
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    socket.send(Message::text(start)).await.unwrap();
    let audio = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(Ok(message)) = socket.next().await {
            if let Message::Text(t) = message
                && t.contains("\"media\"")
            {
                return true;
            }
        }
        false
    })
    .await
    .unwrap_or(false);
    assert!(
        audio,
        "the provider's own socket gets the call and its greeting"
    );

    // Trunks need their API key and stream secret.
    let (status, reply) = lab
        .server
        .post(
            "/trunk/create",
            json!({"trunk_name": "Bad", "trunk_provider": "exotel",
                   "trunk_account_sid": DEFAULT_ACCOUNT_SID, "trunk_auth_token": DEFAULT_API_TOKEN,
                   "trunk_default_caller_number": "+918040000001"}),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{reply}");
    let _ = trunk_id;
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exotel_bad_frames_are_skipped_and_the_call_goes_on() {
    let (lab, _) = exotel_lab(LabOptions::default()).await;
    let answer: Value = reqwest::Client::new()
        .get(format!(
            "{}&CallSid=CA2&CallFrom=09876500000&CallTo=08040000000",
            applet_url(&lab, SECRET)
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (url, credentials, parameters) =
        voxbridge::sim::exotel::call::split_stream_url(answer["url"].as_str().unwrap()).unwrap();
    let (user, password) = credentials.as_deref().unwrap().split_once(':').unwrap();
    let mut request = url.as_str().into_client_request().unwrap();
    request.headers_mut().insert(
        "authorization",
        voxbridge::telephony::exotel::signature::basic_authorization(user, password)
            .parse()
            .unwrap(),
    );
    let params: serde_json::Map<String, Value> = parameters
        .into_iter()
        .map(|(k, v)| (k, Value::String(v)))
        .collect();
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await.unwrap();
    socket
        .send(Message::text(r#"{"event":"connected"}"#))
        .await
        .unwrap();
    let start = json!({"event": "start", "sequence_number": "1", "stream_sid": "MZ2",
        "start": {"stream_sid": "MZ2", "call_sid": "CA2", "account_sid": DEFAULT_ACCOUNT_SID,
                  "custom_parameters": params,
                  "media_format": {"encoding": "audio/x-raw", "sample_rate": "8000", "bit_rate": "16"}}});
    socket.send(Message::text(start.to_string())).await.unwrap();
    for bad in [
        "not json".to_owned(),
        r#"{"event":"media","sequence_number":"2","stream_sid":"MZ2"}"#.to_owned(),
        r#"{"event":"media","sequence_number":"3","stream_sid":"MZ2","media":{"payload":"AQID"}}"#
            .to_owned(),
        r#"{"event":"mark","sequence_number":"4","streamSid":"MZ2","mark":{"name":"x"}}"#
            .to_owned(),
        "y".repeat(70_000),
    ] {
        socket.send(Message::text(bad)).await.unwrap();
    }
    let silence = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [0u8; 1600]);
    let mut chunks = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let mut seq = 10u64;
    while chunks.len() < 3 && tokio::time::Instant::now() < deadline {
        seq += 1;
        let media = json!({"event": "media", "sequence_number": seq.to_string(), "stream_sid": "MZ2",
            "media": {"chunk": seq.to_string(), "timestamp": "100", "payload": silence}});
        socket.send(Message::text(media.to_string())).await.unwrap();
        while let Ok(Some(Ok(Message::Text(text)))) =
            tokio::time::timeout(Duration::from_millis(20), socket.next()).await
        {
            let message: Value = serde_json::from_str(&text).unwrap();
            if message["event"] == "media" {
                assert_eq!(message["stream_sid"], "MZ2");
                let bytes = base64::Engine::decode(
                    &base64::engine::general_purpose::STANDARD,
                    message["media"]["payload"].as_str().unwrap(),
                )
                .unwrap();
                chunks.push(bytes.len());
            }
        }
    }
    assert!(
        chunks.len() >= 3,
        "the greeting plays despite the bad frames"
    );
    assert!(chunks.iter().all(|n| n % 320 == 0), "{chunks:?}");
    assert!(
        chunks.iter().filter(|&&n| n >= 1600).count() >= 2,
        "{chunks:?}"
    );
    let _ = socket.close(None).await;
    lab.stop().await;
}
