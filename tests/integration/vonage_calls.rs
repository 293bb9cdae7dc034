//! Whole phone calls through Vonage's Voice API (issue 19): inbound from an answer webhook to an
//! NCCO websocket carrying binary PCM16 at 16 kHz, outbound with the NCCO inline and its event
//! webhooks, all through the fake Vonage and the other fakes, with a simulated caller speaking
//! Vonage's websocket protocol in real time; and what must be refused (forged or tampered signed
//! webhooks, malformed frames, another rate).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use voxbridge::sim::caller::CallerScript;
use voxbridge::sim::vonage::{
    DEFAULT_API_KEY, DEFAULT_APPLICATION_ID, DEFAULT_SIGNATURE_SECRET, InboundCall, VonageCall,
    default_private_key,
};
use voxbridge::telephony::vonage::{now_unix, signature};

use crate::call_lab::{CallLab, GREETING, LabOptions, after_agent, clip, transcript, user_turns};

const VONAGE_NUMBER: &str = "+15550104400";
const CALLER: &str = "+15550109901";
const CALLEE: &str = "+15550208900";

/// A lab with a Vonage trunk and our Vonage number.
async fn vonage_lab(options: LabOptions) -> (CallLab, String) {
    let lab = CallLab::start(options).await;
    let (status, reply) = lab
        .server
        .post(
            "/trunk/create",
            json!({"trunk_name": "Vonage", "trunk_provider": "vonage",
                   "trunk_account_sid": DEFAULT_APPLICATION_ID,
                   "trunk_auth_token": default_private_key(),
                   "trunk_options": {"signature_secret": DEFAULT_SIGNATURE_SECRET, "api_key": DEFAULT_API_KEY},
                   "trunk_default_caller_number": VONAGE_NUMBER}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    // The signature secret is never shown.
    assert_ne!(
        reply["data"]["trunk_options"]["signature_secret"], DEFAULT_SIGNATURE_SECRET,
        "{reply}"
    );
    let trunk_id = reply["data"]["trunk_id"].as_str().unwrap().to_owned();
    let (status, reply) = lab
        .server
        .post(
            "/phone_number/create",
            json!({"phone_number": VONAGE_NUMBER, "assistant_id": lab.assistant_id, "trunk_id": trunk_id}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    (lab, trunk_id)
}

fn call_in(lab: &CallLab, script: CallerScript) -> String {
    lab.vonage.simulate_inbound_call(InboundCall {
        answer_url: format!("{}/vonage/voice", lab.server.base),
        from: CALLER.to_owned(),
        to: VONAGE_NUMBER.to_owned(),
        script: Some(script),
    })
}

async fn finished(lab: &CallLab, uuid: &str) -> (VonageCall, Value) {
    let sim = lab
        .vonage
        .wait_for_call_end(uuid, Duration::from_secs(90))
        .await
        .unwrap_or_else(|| panic!("the call did not end: {:#?}", lab.vonage.call(uuid)));
    (sim, lab.stored_call_once_ended().await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vonage_three_turn_call_greets_first_and_ends_after_the_goodbye() {
    let (lab, _) = vonage_lab(LabOptions::default()).await;
    let script = after_agent(CallerScript::new()).say(clip("book_table"));
    let script = after_agent(script).say(clip("tomorrow_at_seven"));
    let script = after_agent(script)
        .say(clip("thank_you_goodbye"))
        .wait(Duration::from_secs(20));
    let uuid = call_in(&lab, script);
    let (sim, call) = finished(&lab, &uuid).await;
    assert!(sim.rejected.is_none(), "{:?}", sim.rejected);
    let (_, content_type, headers) = sim.websocket.clone().unwrap();
    assert_eq!(content_type, "audio/l16;rate=16000");
    let names: Vec<&str> = headers.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(names, ["call_id", "token"]);
    let report = sim.caller_report.as_ref().unwrap();
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
    assert_eq!(call["from_number"], CALLER);
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
    // The call ran at PCM16 16 kHz: the STT heard linear16 at 16000.
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
        (Some("linear16"), Some("16000"))
    );
    let last_end = report
        .marks
        .iter()
        .rfind(|m| m.name.ends_with(".end"))
        .expect("end marks, as notify echoes");
    assert!(last_end.echoed_at.is_some_and(|at| at <= report.ended_at));
    lab.stop().await;
}

const LONG_GREETING: &str = "Hello and welcome to Acme, the friendliest restaurant in town. We are open every day from noon until eleven, and tonight our chef recommends the grilled fish. How can I help you?";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vonage_barge_in_clears_and_keeps_exactly_what_was_heard() {
    let mut options = LabOptions {
        utterances: vec!["Sorry, can I book a table for two?"],
        ..LabOptions::default()
    };
    options.assistant["assistant_start_instruction"] = json!(LONG_GREETING);
    let (lab, _) = vonage_lab(options).await;
    let script = CallerScript::new()
        .wait_for_agent_speech(Duration::from_secs(15))
        .wait(Duration::from_secs(3))
        .say(clip("book_table"))
        .wait(Duration::from_secs(6))
        .hang_up();
    let uuid = call_in(&lab, script);
    let (sim, call) = finished(&lab, &uuid).await;
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
    assert_eq!(
        call["turns"][0]["interruptions"][0]["heard"], heard,
        "{call:#}"
    );
    assert_eq!(user_turns(&call), ["Sorry, can I book a table for two?"]);
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vonage_keypad_digits_make_one_turn() {
    let (lab, _) = vonage_lab(LabOptions::default()).await;
    let mut script = after_agent(CallerScript::new());
    for key in ['4', '2', '#'] {
        script = script.dtmf(key);
    }
    let uuid = call_in(&lab, after_agent(script).hang_up());
    let (_, call) = finished(&lab, &uuid).await;
    assert_eq!(user_turns(&call), ["(the caller entered 42 on the keypad)"]);
    assert_eq!(call["status"], "completed");
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vonage_transfer_moves_the_call_to_an_ncco() {
    let options = LabOptions {
        utterances: vec!["Can I talk to a human please?"],
        ..LabOptions::default()
    };
    let (lab, _) = vonage_lab(options).await;
    let script = after_agent(CallerScript::new())
        .say(clip("book_table"))
        .wait(Duration::from_secs(20));
    let uuid = call_in(&lab, script);
    let (sim, call) = finished(&lab, &uuid).await;
    assert_eq!(call["end_reason"], "transferred", "{call}");
    assert_eq!(
        sim.transfers,
        [
            json!({"type": "ncco", "ncco": [{"action": "connect", "from": "15550104400",
                "endpoint": [{"type": "phone", "number": "15550002222"}]}]})
        ]
    );
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vonage_outbound_call_places_an_ncco_and_maps_events() {
    let options = LabOptions {
        utterances: vec!["Thank you, goodbye."],
        ..LabOptions::default()
    };
    let (lab, trunk_id) = vonage_lab(options).await;
    lab.vonage.set_caller_script(
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
                   "call_service": "vonage", "metadata": {}}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let call_id = reply["data"]["call_id"].as_str().unwrap().to_owned();
    let uuid = reply["data"]["provider_call_sid"]
        .as_str()
        .unwrap()
        .to_owned();

    let create = lab
        .vonage
        .requests()
        .into_iter()
        .find(|r| r.path == "/v1/calls")
        .unwrap();
    assert!(create.authenticated && create.status == 201, "{create:?}");
    let body = &create.body;
    assert_eq!(
        body["to"],
        json!([{"type": "phone", "number": "15550208900"}])
    );
    assert_eq!(
        body["from"],
        json!({"type": "phone", "number": "15550104400"})
    );
    assert_eq!(
        body["event_url"],
        json!([format!(
            "{}/vonage/status?call_id={call_id}",
            lab.server.base
        )])
    );
    let endpoint = &body["ncco"][0]["endpoint"][0];
    assert_eq!(endpoint["type"], "websocket");
    assert_eq!(endpoint["content-type"], "audio/l16;rate=16000");
    assert_eq!(endpoint["headers"]["call_id"], call_id);

    let (sim, call) = finished(&lab, &uuid).await;
    assert_eq!(
        sim.statuses,
        ["started", "ringing", "answered", "completed"]
    );
    for webhook in lab.vonage.webhooks() {
        assert_eq!(webhook.http_status, 204, "{webhook:?}");
    }
    assert_eq!(call["call_id"], call_id);
    assert_eq!(call["status"], "completed", "{call}");
    assert_eq!(user_turns(&call), ["Thank you, goodbye."]);
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vonage_timeout_and_api_hang_up_are_reported() {
    let (lab, trunk_id) = vonage_lab(LabOptions::default()).await;
    let unanswered = "+15550208901";
    lab.vonage.set_outcome(
        unanswered,
        voxbridge::sim::twilio::CallOutcome::NoAnswer {
            after: Duration::from_millis(200),
        },
    );
    let place = |to: &str| {
        json!({"assistant_id": lab.assistant_id, "trunk_id": trunk_id, "to_number": to,
               "call_service": "vonage"})
    };
    let (status, reply) = lab.server.post("/call/outbound", place(unanswered)).await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let call_id = reply["data"]["call_id"].as_str().unwrap().to_owned();
    let uuid = reply["data"]["provider_call_sid"]
        .as_str()
        .unwrap()
        .to_owned();
    let sim = lab
        .vonage
        .wait_for_call_end(&uuid, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(sim.statuses.last().map(String::as_str), Some("timeout"));
    let mut stored = Value::Null;
    for _ in 0..50 {
        stored = lab.server.get(&format!("/call/details/{call_id}")).await.1["data"].clone();
        if stored["status"] == "no-answer" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stored["status"], "no-answer", "{stored}");

    lab.vonage
        .set_caller_script(CALLEE, CallerScript::new().wait(Duration::from_secs(60)));
    let (_, reply) = lab.server.post("/call/outbound", place(CALLEE)).await;
    let call_id = reply["data"]["call_id"].as_str().unwrap().to_owned();
    let uuid = reply["data"]["provider_call_sid"]
        .as_str()
        .unwrap()
        .to_owned();
    for _ in 0..100 {
        if lab
            .vonage
            .call(&uuid)
            .is_some_and(|c| c.statuses.iter().any(|s| s == "answered"))
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, reply) = lab
        .server
        .post(&format!("/call/hangup/{call_id}"), json!({}))
        .await;
    assert_eq!(status, StatusCode::OK, "{reply}");
    let sim = lab
        .vonage
        .wait_for_call_end(&uuid, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(sim.statuses.last().map(String::as_str), Some("completed"));
    // Vonage was told too, with the application's token; the call may already have ended with
    // its websocket (the session closes it at once), which is no error (404).
    let put = lab
        .vonage
        .requests()
        .into_iter()
        .find(|r| r.method == "PUT" && r.path == format!("/v1/calls/{uuid}"))
        .expect("a hang-up request");
    assert!(put.authenticated, "{put:?}");
    assert_eq!(put.body, json!({"action": "hangup"}));
    assert!(matches!(put.status, 204 | 404), "{put:?}");
    lab.stop().await;
}

/// Raw Vonage traffic.
mod wire {
    use super::*;

    pub type Socket = tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >;

    /// The answer webhook as a GET, signed with `secret` `age_secs` ago.
    pub async fn answer_webhook(lab: &CallLab, secret: &str, age_secs: i64) -> (u16, String) {
        let query: Vec<(String, String)> = [
            ("to", "15550104400"),
            ("from", "15550109901"),
            ("uuid", "63f61863-4a51-4f6b-86e1-46edebcf9356"),
            ("conversation_uuid", "CON-raw"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let auth = signature::authorization(
            secret,
            DEFAULT_API_KEY,
            DEFAULT_APPLICATION_ID,
            b"",
            &query,
            now_unix() - age_secs,
        );
        let mut url = url::Url::parse(&format!("{}/vonage/voice", lab.server.base)).unwrap();
        url.query_pairs_mut().extend_pairs(&query);
        let response = reqwest::Client::new()
            .get(url)
            .header("authorization", auth)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    pub fn headers(ncco: &str) -> (String, String) {
        let ncco: Value = serde_json::from_str(ncco).unwrap();
        let headers = &ncco[0]["endpoint"][0]["headers"];
        (
            headers["call_id"].as_str().unwrap().to_owned(),
            headers["token"].as_str().unwrap().to_owned(),
        )
    }

    pub async fn connect(lab: &CallLab) -> Socket {
        let url = format!(
            "{}/vonage/media",
            lab.server.base.replace("http://", "ws://")
        );
        tokio_tungstenite::connect_async(url)
            .await
            .expect("media socket")
            .0
    }

    pub async fn connected(socket: &mut Socket, call_id: &str, token: &str, content_type: &str) {
        let first = json!({"event": "websocket:connected", "content-type": content_type,
                           "call_id": call_id, "token": token});
        socket.send(Message::text(first.to_string())).await.unwrap();
    }

    /// Binary frames seen (each must be one 20 ms frame) until the server closes or `limit`.
    pub async fn drain(socket: &mut Socket, limit: Duration) -> (usize, bool) {
        let mut frames = 0;
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, socket.next()).await {
                Err(_) => return (frames, false),
                Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => {
                    return (frames, true);
                }
                Ok(Some(Ok(Message::Binary(bytes)))) => {
                    assert_eq!(bytes.len(), 640, "one 20 ms frame per message");
                    frames += 1;
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vonage_forged_tampered_or_stale_webhooks_are_refused() {
    let (lab, _) = vonage_lab(LabOptions::default()).await;
    let (status, _) = wire::answer_webhook(&lab, "another-secret-of-enough-length", 0).await;
    assert_eq!(status, 403, "a token signed with another secret is refused");
    let (status, _) = wire::answer_webhook(&lab, DEFAULT_SIGNATURE_SECRET, 600).await;
    assert_eq!(status, 403, "a ten-minute-old token is refused");
    // A token for another payload: the query was changed after signing.
    let query = vec![("to".to_owned(), "15550104400".to_owned())];
    let auth = signature::authorization(
        DEFAULT_SIGNATURE_SECRET,
        DEFAULT_API_KEY,
        DEFAULT_APPLICATION_ID,
        b"",
        &query,
        now_unix(),
    );
    let response = reqwest::Client::new()
        .get(format!(
            "{}/vonage/voice?to=15550104400&from=15550109901&uuid=u-1",
            lab.server.base
        ))
        .header("authorization", auth)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    let (_, list) = lab.server.get("/call/list").await;
    assert_eq!(list["data"]["total"], 0, "no call was created");
    let (status, ncco) = wire::answer_webhook(&lab, DEFAULT_SIGNATURE_SECRET, 0).await;
    assert_eq!(status, 200, "{ncco}");
    // A tampered event: signed for one body, sent with another.
    let (_, list) = lab.server.get("/call/list").await;
    let call_id = list["data"]["calls"][0]["call_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let signed = br#"{"uuid":"63f61863-4a51-4f6b-86e1-46edebcf9356","status":"answered"}"#;
    let auth = signature::authorization(
        DEFAULT_SIGNATURE_SECRET,
        DEFAULT_API_KEY,
        DEFAULT_APPLICATION_ID,
        signed,
        &[],
        now_unix(),
    );
    let response = reqwest::Client::new()
        .post(format!(
            "{}/vonage/status?call_id={call_id}",
            lab.server.base
        ))
        .header("authorization", auth)
        .header("content-type", "application/json")
        .body(r#"{"uuid":"63f61863-4a51-4f6b-86e1-46edebcf9356","status":"completed"}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 403);
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vonage_bad_frames_are_skipped_and_another_rate_refused() {
    let (lab, _) = vonage_lab(LabOptions::default()).await;
    let (_, ncco) = wire::answer_webhook(&lab, DEFAULT_SIGNATURE_SECRET, 0).await;
    let (call_id, token) = wire::headers(&ncco);
    let mut socket = wire::connect(&lab).await;
    wire::connected(&mut socket, &call_id, &token, "audio/l16;rate=8000").await;
    let (frames, closed) = wire::drain(&mut socket, Duration::from_secs(5)).await;
    assert!(closed && frames == 0, "frames {frames}, closed {closed}");
    assert!(lab.deepgram.streams().is_empty(), "the STT was contacted");

    let (_, ncco) = wire::answer_webhook(&lab, DEFAULT_SIGNATURE_SECRET, 0).await;
    let (call_id, token) = wire::headers(&ncco);
    let mut socket = wire::connect(&lab).await;
    wire::connected(&mut socket, &call_id, &token, "audio/l16;rate=16000").await;
    for frame in [
        Message::text("not json"),
        Message::text(r#"{"event":"websocket:dtmf","digit":"x"}"#),
        Message::text(r#"{"event":"websocket:bogus"}"#),
        Message::binary(vec![1u8, 2, 3]),
        Message::binary(Vec::<u8>::new()),
    ] {
        socket.send(frame).await.unwrap();
    }
    let (frames, closed) = wire::drain(&mut socket, Duration::from_secs(3)).await;
    assert!(
        !closed && frames > 0,
        "the greeting still plays: frames {frames}, closed {closed}"
    );
    drop(socket);
    lab.stop().await;
}
