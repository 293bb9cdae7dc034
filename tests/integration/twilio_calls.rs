//! Whole phone calls over Twilio Media Streams, through the fake providers, with a simulated
//! caller streaming committed speech in real time.

use std::time::Duration;

use serde_json::Value;
use voxbridge::sim::caller::CallerScript;

use crate::call_lab::{CallLab, GREETING, LabOptions, after_agent, clip, transcript};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_turn_call_greets_first_and_ends_after_the_goodbye() {
    let lab = CallLab::start(LabOptions::default()).await;
    let script = after_agent(CallerScript::new()).say(clip("book_table"));
    let script = after_agent(script).say(clip("tomorrow_at_seven"));
    let script = after_agent(script)
        .say(clip("thank_you_goodbye"))
        .wait(Duration::from_secs(20));
    let sid = lab.call_in(script);
    let call = lab.finished_call(&sid).await;

    // The greeting came before the caller said anything.
    let sim = lab.twilio.call(&sid).unwrap();
    let report = &sim.caller_reports[0];
    let first_audio = report.first_agent_audio_at().expect("the agent spoke");
    let first_speech = report.first_speech_at().expect("the caller spoke");
    assert!(
        first_audio < first_speech,
        "greeting at {first_audio:?}, caller at {first_speech:?}"
    );
    assert!(
        report.protocol_errors.is_empty(),
        "{:?}",
        report.protocol_errors
    );

    assert_eq!(call["status"], "completed", "{call}");
    assert_eq!(call["end_reason"], "assistant_ended_call", "{call}");
    assert_eq!(call["direction"], "inbound");
    let turns = transcript(&call);
    let users: Vec<&str> = turns
        .iter()
        .filter(|(r, _)| r == "user")
        .map(|(_, t)| t.as_str())
        .collect();
    assert_eq!(
        users,
        [
            "Hi, I'd like to book a table for two.",
            "Yes, tomorrow at seven please.",
            "Thank you, goodbye."
        ]
    );
    assert_eq!(turns[0], ("assistant".to_owned(), GREETING.to_owned()));
    let assistants: Vec<&str> = turns
        .iter()
        .filter(|(r, _)| r == "assistant")
        .map(|(_, t)| t.as_str())
        .collect();
    assert_eq!(assistants.len(), 4, "{turns:?}");
    assert!(
        assistants[3].to_lowercase().contains("goodbye"),
        "{turns:?}"
    );
    assert!(
        turns
            .iter()
            .any(|(r, t)| r == "tool" && t.starts_with("end_call")),
        "{turns:?}"
    );

    // No transcoding: Twilio's μ-law went to Deepgram as mulaw, and Cartesia made μ-law 8 kHz.
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
    // Each of the caller's turns ended at our VAD's pause, which asked Deepgram for its final.
    let finalizes = stream.control.iter().filter(|c| *c == "Finalize").count();
    assert!(finalizes >= 3, "{:?}", stream.control);
    let cartesia = lab.cartesia.received();
    let format = &cartesia
        .messages
        .iter()
        .find(|m| m.get("output_format").is_some())
        .unwrap()["output_format"];
    assert_eq!(
        format,
        &serde_json::json!({"container": "raw", "encoding": "pcm_mulaw", "sample_rate": 8000})
    );

    // The hang-up waited for the goodbye to be heard: its end mark came back before the close.
    let end_marks: Vec<_> = report
        .marks
        .iter()
        .filter(|m| m.name.ends_with(".end"))
        .collect();
    let last = end_marks.last().expect("end marks");
    let echoed = last.echoed_at.expect("the goodbye's end mark was echoed");
    assert!(
        echoed <= report.ended_at,
        "echo {echoed:?} after the call ended {:?}",
        report.ended_at
    );
    lab.stop().await;
}

/// A start instruction long enough (about 10 s of speech) to be talked over.
const LONG_GREETING: &str = "Hello and welcome to Acme, the friendliest restaurant in town. We are open every day from noon until eleven, and tonight our chef recommends the grilled fish. How can I help you?";

fn long_greeting() -> LabOptions {
    let mut options = LabOptions::default();
    options.assistant["assistant_start_instruction"] = serde_json::json!(LONG_GREETING);
    options
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn barge_in_clears_at_once_and_keeps_what_was_heard() {
    let mut options = long_greeting();
    options.utterances = vec!["Sorry, can I book a table for two?"];
    let lab = CallLab::start(options).await;
    let script = CallerScript::new()
        .wait_for_agent_speech(Duration::from_secs(15))
        .wait(Duration::from_secs(3))
        .say(clip("book_table"))
        .wait(Duration::from_secs(6))
        .hang_up();
    let sid = lab.call_in(script);
    let call = lab.finished_call(&sid).await;
    let sim = lab.twilio.call(&sid).unwrap();
    let report = &sim.caller_reports[0];
    let onset = report.first_speech_at().expect("the caller spoke");
    let clear = report
        .first_clear_after(onset)
        .expect("the agent was cleared");
    let reaction = clear.at - onset;
    // The VAD's onset (80 ms) stops the agent, the STT's first words confirm: well under a second.
    assert!(
        reaction < Duration::from_millis(1200),
        "clear {reaction:?} after the caller started"
    );
    // Nothing of the interrupted greeting was sent after the clear (later audio is the reply).
    let greeting = &call["transcript"][0];
    assert_eq!(greeting["role"], "assistant");
    assert_eq!(greeting["interrupted"], true, "{call}");
    let heard = greeting["text"].as_str().unwrap();
    assert!(
        !heard.is_empty() && heard.len() < LONG_GREETING.len(),
        "heard {heard:?}"
    );
    assert!(
        LONG_GREETING.starts_with(heard.trim_end_matches(|c: char| !c.is_alphanumeric())),
        "{heard:?} is not a prefix"
    );
    let users: Vec<&str> = call["transcript"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["role"] == "user")
        .map(|t| t["text"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["Sorry, can I book a table for two?"]);
    // The greeting's timings say where it was cut and what had been heard by then.
    let greeting_timing = &call["turns"][0];
    assert_eq!(greeting_timing["outcome"], "interrupted", "{call:#}");
    let interruption = &greeting_timing["interruptions"][0];
    assert_eq!(interruption["heard"], heard, "{greeting_timing:#}");
    let onset = interruption["onset_ms"].as_i64().expect("an onset");
    assert!(interruption["cleared_ms"].as_i64() >= Some(onset));
    assert!(interruption["confirmed_ms"].as_i64() >= Some(onset));
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backchannel_stops_the_agent_only_until_it_resumes_the_greeting_whole() {
    let mut options = long_greeting();
    options.utterances = vec!["uh-huh"];
    let lab = CallLab::start(options).await;
    let script = CallerScript::new()
        .wait_for_agent_speech(Duration::from_secs(15))
        .wait(Duration::from_secs(2))
        .say(clip("backchannel_uh_huh"))
        .wait_for_agent_silence(Duration::from_millis(1500), Duration::from_secs(30))
        .hang_up();
    let sid = lab.call_in(script);
    let call = lab.finished_call(&sid).await;
    let report = &lab.twilio.call(&sid).unwrap().caller_reports[0];
    // The agent stops at the caller's first sound, and the uh-huh confirms no interruption:
    // it goes on from the first word the caller did not hear.
    assert_eq!(report.clears.len(), 1, "{:?}", report.clears);
    assert!(
        report.media.iter().any(|m| m.after_clears > 0),
        "the greeting resumed after the clear"
    );
    let greeting = &call["transcript"][0];
    assert_eq!(greeting["text"], LONG_GREETING);
    assert_eq!(greeting["interrupted"], false);
    assert!(
        call["transcript"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["role"] != "user"),
        "{call}"
    );
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silence_prompts_then_ends_the_call() {
    let mut options = LabOptions::default();
    options.assistant["assistant_silence_timeout_secs"] = serde_json::json!(5);
    let lab = CallLab::start(options).await;
    let sid = lab.call_in(CallerScript::new().wait(Duration::from_secs(40)));
    let call = lab.finished_call(&sid).await;
    assert_eq!(call["end_reason"], "silence_timeout", "{call}");
    let said: Vec<&str> = call["transcript"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        said,
        [
            GREETING,
            voxbridge::call::session::SILENCE_PROMPT,
            voxbridge::call::session::SILENCE_GOODBYE
        ]
    );
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http_tool_round_trip_feeds_the_answer() {
    use axum::routing::post;
    let app = axum::Router::new().route(
        "/weather",
        post(|axum::Json(body): axum::Json<Value>| async move {
            axum::Json(
                serde_json::json!({"city": body["city"], "forecast": "sunny", "temperature_c": 21}),
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let tool_url = format!("http://{}/weather", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let options = LabOptions {
        utterances: vec!["What's the weather in Paris?"],
        ..LabOptions::default()
    };
    let lab = CallLab::start(options).await;
    let (status, reply) = lab
        .server
        .post(
            "/tool/create",
            serde_json::json!({"tool_name": "get_weather", "tool_description": "Weather for a city",
                "tool_parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
                "tool_url": tool_url}),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{reply}");
    let tool_id = reply["data"]["tool_id"].as_str().unwrap();
    let (status, _) = lab
        .server
        .patch(
            &format!("/assistant/update/{}", lab.assistant_id),
            serde_json::json!({"tool_ids": [tool_id]}),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK);

    let script = after_agent(CallerScript::new()).say(clip("book_table"));
    let script = after_agent(script).wait_for_agent_speech(Duration::from_secs(10));
    let script = script
        .wait_for_agent_silence(Duration::from_millis(1500), Duration::from_secs(30))
        .hang_up();
    let sid = lab.call_in(script);
    let call = lab.finished_call(&sid).await;
    let turns = transcript(&call);
    let tool = turns
        .iter()
        .find(|(r, _)| r == "tool")
        .expect("a tool turn");
    assert!(
        tool.1.starts_with("get_weather({\"city\":\"Paris\"})"),
        "{tool:?}"
    );
    // The model's follow-up request carried the tool's answer.
    let requests = lab.openai.requests();
    let follow_up = requests
        .iter()
        .rev()
        .find(|r| r.body.to_string().contains("\"role\":\"tool\""))
        .expect("a follow-up");
    assert!(
        follow_up.body.to_string().contains("sunny"),
        "{}",
        follow_up.body
    );
    let spoken: Vec<&str> = turns
        .iter()
        .filter(|(r, _)| r == "assistant")
        .map(|(_, t)| t.as_str())
        .collect();
    assert!(spoken.iter().any(|t| t.contains("Paris")), "{turns:?}");
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_report_is_delivered_once_and_signed() {
    let options = LabOptions {
        webhook_fail_first: 1,
        ..LabOptions::default()
    };
    let lab = CallLab::start(options).await;
    let script = after_agent(CallerScript::new()).hang_up();
    let sid = lab.call_in(script);
    let call = lab.finished_call(&sid).await;
    let call_id = call["call_id"].as_str().unwrap().to_owned();
    // The first attempt is refused with a 503; the retry succeeds; nothing more is sent.
    for _ in 0..100 {
        if lab.webhooks.count() >= 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let received = lab.webhooks.received.lock().unwrap().clone();
    assert_eq!(received.len(), 2, "one failed attempt, one delivery");
    let secret = lab
        .server
        .store
        .server_setting("webhook_secret")
        .await
        .unwrap()
        .expect("a generated secret");
    for (headers, body) in &received {
        let signature = headers["x-voxbridge-signature"].to_str().unwrap();
        assert!(
            voxbridge::webhook::verify(&secret, signature, body.as_bytes()),
            "bad signature {signature}"
        );
        assert_eq!(headers["x-voxbridge-event"], "call.ended");
    }
    assert_eq!(
        received[0].1, received[1].1,
        "a retry sends the same report"
    );
    let report: Value = serde_json::from_str(&received[1].1).unwrap();
    assert_eq!(report["call_id"], call_id.as_str());
    assert_eq!(report["direction"], "inbound");
    assert_eq!(report["end_reason"], "caller_hung_up");
    assert_eq!(report["transcript"][0]["text"], GREETING);
    assert!(report["duration_seconds"].as_f64().unwrap() > 0.0);
    let (_, details) = lab.server.get(&format!("/call/details/{call_id}")).await;
    let delivery = &details["data"]["webhook_deliveries"][0];
    assert_eq!(delivery["status"], "delivered");
    assert_eq!(delivery["attempts"], 2);

    // The same story in /metrics (each test runs in its own process: counts are this call's).
    let metrics = reqwest::get(format!("{}/metrics", lab.server.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        r#"voxbridge_webhook_attempts_total{outcome="retry"} 1"#,
        r#"voxbridge_webhook_attempts_total{outcome="delivered"} 1"#,
        r#"voxbridge_calls_ended_total{reason="caller_hung_up"} 1"#,
        "voxbridge_live_calls 0",
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} missing in:\n{metrics}"
        );
    }
    for stage in ["tts_first_audio", "first_frame_out"] {
        let count = format!(r#"voxbridge_stage_latency_seconds_count{{stage="{stage}"}}"#);
        assert!(metrics.contains(&count), "{count} missing in:\n{metrics}");
    }
    lab.stop().await;
}

pub mod wire {
    //! Raw Twilio wire traffic, for the cases the well-behaved simulated caller never produces.

    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use voxbridge::sim::twilio::DEFAULT_AUTH_TOKEN;
    use voxbridge::telephony::twilio::signature::compute_signature;

    use crate::call_lab::{CALLER_NUMBER, CallLab, OUR_NUMBER};

    pub type Socket = tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >;

    /// Posts the voice webhook signed with `token`; answers the status and body.
    pub async fn voice_webhook(lab: &CallLab, token: &str) -> (u16, String) {
        let url = format!("{}/twilio/voice", lab.server.base);
        let params = [
            ("AccountSid", voxbridge::sim::twilio::DEFAULT_ACCOUNT_SID),
            ("CallSid", "CA0123456789abcdef0123456789abcdef"),
            ("CallStatus", "ringing"),
            ("Direction", "inbound"),
            ("From", CALLER_NUMBER),
            ("To", OUR_NUMBER),
        ];
        let signature = compute_signature(token, &url, &params);
        let response = reqwest::Client::new()
            .post(&url)
            .header("X-Twilio-Signature", signature)
            .form(&params)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.text().await.unwrap())
    }

    /// The call id and token of a `<Parameter>`-carrying TwiML answer.
    pub fn stream_parameters(twiml: &str) -> (String, String) {
        let value = |name: &str| {
            let key = format!("name=\"{name}\" value=\"");
            let start = twiml
                .find(&key)
                .unwrap_or_else(|| panic!("no {name} in {twiml}"))
                + key.len();
            twiml[start..].split('"').next().unwrap().to_owned()
        };
        (value("call_id"), value("token"))
    }

    pub async fn connect(lab: &CallLab) -> Socket {
        let url = format!(
            "{}/twilio/media",
            lab.server.base.replace("http://", "ws://")
        );
        tokio_tungstenite::connect_async(url)
            .await
            .expect("media socket")
            .0
    }

    pub async fn start(socket: &mut Socket, call_id: &str, token: &str) {
        let connected = r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#;
        let start = format!(
            r#"{{"event":"start","sequenceNumber":"1","start":{{"accountSid":"{account}","streamSid":"MZ00000000000000000000000000000001","callSid":"CA0123456789abcdef0123456789abcdef","tracks":["inbound"],"customParameters":{{"call_id":"{call_id}","token":"{token}"}},"mediaFormat":{{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}}},"streamSid":"MZ00000000000000000000000000000001"}}"#,
            account = voxbridge::sim::twilio::DEFAULT_ACCOUNT_SID
        );
        socket.send(Message::text(connected)).await.unwrap();
        socket.send(Message::text(start)).await.unwrap();
    }

    /// Reads until the server closes the socket or `limit` passes; answers the outbound
    /// `media` messages seen and whether the socket was closed by the server.
    pub async fn drain(socket: &mut Socket, limit: std::time::Duration) -> (usize, bool) {
        let mut media = 0;
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            match tokio::time::timeout_at(deadline, socket.next()).await {
                Err(_) => return (media, false),
                Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => {
                    return (media, true);
                }
                Ok(Some(Ok(Message::Text(text)))) => {
                    if text.contains("\"event\":\"media\"") {
                        media += 1;
                    }
                }
                Ok(Some(Ok(_))) => {}
            }
        }
    }

    pub fn auth_token() -> &'static str {
        DEFAULT_AUTH_TOKEN
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_signatures_and_tokens_never_reach_a_provider() {
    let lab = CallLab::start(LabOptions::default()).await;
    let (status, _) = wire::voice_webhook(&lab, "ffffffffffffffffffffffffffffffff").await;
    assert_eq!(
        status, 403,
        "a webhook signed with another token is refused"
    );
    let (_, list) = lab.server.get("/call/list").await;
    assert_eq!(list["data"]["total"], 0, "no call was created");

    let (status, twiml) = wire::voice_webhook(&lab, wire::auth_token()).await;
    assert_eq!(status, 200, "{twiml}");
    assert!(twiml.contains("<Connect><Stream url=\"ws://"), "{twiml}");
    let (call_id, token) = wire::stream_parameters(&twiml);

    // An unknown token: closed before any provider is contacted.
    let mut socket = wire::connect(&lab).await;
    wire::start(&mut socket, &call_id, "vst_not-the-token").await;
    let (media, closed) = wire::drain(&mut socket, Duration::from_secs(5)).await;
    assert!(closed && media == 0, "media {media}, closed {closed}");
    assert!(lab.deepgram.streams().is_empty(), "the STT was contacted");

    // The right token works once ...
    let mut socket = wire::connect(&lab).await;
    wire::start(&mut socket, &call_id, &token).await;
    let (media, _) = wire::drain(&mut socket, Duration::from_secs(2)).await;
    assert!(media > 0, "the greeting plays");
    // ... and not twice.
    let mut again = wire::connect(&lab).await;
    wire::start(&mut again, &call_id, &token).await;
    let (media, closed) = wire::drain(&mut again, Duration::from_secs(5)).await;
    assert!(closed && media == 0, "a reused token was accepted");
    assert_eq!(lab.deepgram.streams().len(), 1);
    drop(socket);
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_frames_are_skipped_and_the_call_goes_on() {
    use futures_util::SinkExt;
    use tokio_tungstenite::tungstenite::Message;
    let lab = CallLab::start(LabOptions::default()).await;
    let (_, twiml) = wire::voice_webhook(&lab, wire::auth_token()).await;
    let (call_id, token) = wire::stream_parameters(&twiml);
    let mut socket = wire::connect(&lab).await;
    wire::start(&mut socket, &call_id, &token).await;
    let sid = "MZ00000000000000000000000000000001";
    let garbage = [
        "not json at all".to_owned(),
        "{\"event\":".to_owned(),
        format!(
            r#"{{"event":"media","sequenceNumber":"2","streamSid":"{sid}","media":{{"payload":"***not base64***"}}}}"#
        ),
        format!(r#"{{"event":"launch","sequenceNumber":"3","streamSid":"{sid}"}}"#),
        format!(
            r#"{{"event":"media","sequenceNumber":"4","streamSid":"{sid}","media":{{"payload":"{}"}}}}"#,
            "A".repeat(40_000)
        ),
        format!(
            r#"{{"event":"media","sequenceNumber":"2","streamSid":"{sid}","media":{{"payload":"//8="}}}}"#
        ),
        format!(r#"{{"event":"mark","sequenceNumber":"5","streamSid":"{sid}"}}"#),
    ];
    for frame in garbage {
        socket.send(Message::text(frame)).await.unwrap();
    }
    socket.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    // The call goes on: the greeting still plays, and the server still answers.
    let (media, closed) = wire::drain(&mut socket, Duration::from_secs(3)).await;
    assert!(!closed && media > 0, "media {media}, closed {closed}");
    let (status, _) = lab.server.get("/healthz").await;
    assert_eq!(status, reqwest::StatusCode::OK);
    drop(socket);
    lab.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transfer_redirects_the_live_call_after_the_notice_is_heard() {
    let options = LabOptions {
        utterances: vec!["Can I talk to a human please?"],
        ..LabOptions::default()
    };
    let lab = CallLab::start(options).await;
    let script = after_agent(CallerScript::new())
        .say(clip("book_table"))
        .wait(Duration::from_secs(20));
    let sid = lab.call_in(script);
    let call = lab.finished_call(&sid).await;
    assert_eq!(call["end_reason"], "transferred", "{call}");
    let sim = lab.twilio.call(&sid).unwrap();
    assert_eq!(sim.redirects.len(), 1, "{:?}", sim.redirects);
    assert!(
        sim.redirects[0].contains("<Dial") && sim.redirects[0].contains("+15550002222"),
        "{}",
        sim.redirects[0]
    );
    let notice = transcript(&call)
        .into_iter()
        .rfind(|(r, _)| r == "assistant")
        .unwrap()
        .1;
    assert_eq!(notice, "Let me transfer you to a colleague.");
    lab.stop().await;
}

/// An assistant that hears and speaks Hindi through Sarvam; the caller "says" a booking, then
/// goodbye.
fn sarvam_both_ways() -> LabOptions {
    let mut options = LabOptions {
        utterances: vec!["मुझे दो लोगों के लिए टेबल चाहिए", "धन्यवाद, अलविदा goodbye"],
        ..LabOptions::default()
    };
    options.assistant["assistant_tts_model"] = serde_json::json!("sarvam");
    options.assistant["assistant_tts_config"] =
        serde_json::json!({"speaker": "anushka", "target_language_code": "hi-IN"});
    options.assistant["assistant_stt_config"] =
        serde_json::json!({"provider": "sarvam", "language": "hi-IN"});
    options
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_with_sarvam_speech_both_ways() {
    let lab = CallLab::start(sarvam_both_ways()).await;
    let script = after_agent(CallerScript::new()).say(clip("book_table"));
    let script = after_agent(script)
        .say(clip("thank_you_goodbye"))
        .wait(Duration::from_secs(20));
    let sid = lab.call_in(script);
    let call = lab.finished_call(&sid).await;
    assert_eq!(call["end_reason"], "assistant_ended_call", "{call}");
    let turns = transcript(&call);
    assert_eq!(turns[0], ("assistant".to_owned(), GREETING.to_owned()));
    let users: Vec<&str> = turns
        .iter()
        .filter(|(r, _)| r == "user")
        .map(|(_, t)| t.as_str())
        .collect();
    assert_eq!(
        users,
        ["मुझे दो लोगों के लिए टेबल चाहिए", "धन्यवाद, अलविदा goodbye"]
    );
    // Sarvam was asked for μ-law at 8 kHz, the format Twilio plays, so nothing was transcoded.
    let received = lab.sarvam_tts.received();
    let config = received
        .messages
        .iter()
        .find(|m| m["type"] == "config")
        .expect("a config message");
    assert_eq!(config["data"]["output_audio_codec"], "mulaw", "{config}");
    assert_eq!(config["data"]["speech_sample_rate"], "8000", "{config}");
    let streams = lab.sarvam_stt.streams();
    assert_eq!(streams.len(), 1);
    let report = &lab.twilio.call(&sid).unwrap().caller_reports[0];
    assert!(
        report.played_bytes > 8000,
        "the caller heard Sarvam's audio"
    );
    lab.stop().await;
}

/// Log lines written while a call runs, as JSON (the `log_format = "json"` switch).
#[derive(Clone, Default)]
struct LogBuffer(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for LogBuffer {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Every line a call's tasks log (agent, reader, writer, STT and TTS sessions, transcript
/// writer) carries the call id, so one call can be followed through a busy server's log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_log_line_of_a_call_names_the_call() {
    let buffer = LogBuffer::default();
    let writer = buffer.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .with_env_filter("voxbridge=debug")
        .with_writer(move || writer.clone())
        .finish();
    if tracing::subscriber::set_global_default(subscriber).is_err() {
        println!("SKIPPED: another tracing subscriber is installed in this process");
        return;
    }
    let lab = CallLab::start(LabOptions::default()).await;
    // Talks over the greeting, so the agent task logs the barge-in.
    let script = CallerScript::new()
        .wait_for_agent_speech(Duration::from_secs(15))
        .wait(Duration::from_millis(500))
        .say(clip("book_table"));
    let script = after_agent(script).hang_up();
    let sid = lab.call_in(script);
    let call = lab.finished_call(&sid).await;
    let call_id = call["call_id"].as_str().unwrap().to_owned();
    lab.stop().await;

    let text = String::from_utf8(buffer.0.lock().unwrap().clone()).unwrap();
    let call_modules = [
        "voxbridge::call",
        "voxbridge::stt",
        "voxbridge::tts",
        "voxbridge::llm",
    ];
    let mut checked = 0;
    let mut barge_in_logged = false;
    for line in text.lines() {
        let entry: Value = serde_json::from_str(line).unwrap();
        let target = entry["target"].as_str().unwrap_or_default();
        if !call_modules.iter().any(|m| target.starts_with(m)) {
            continue;
        }
        checked += 1;
        let in_span = entry["spans"]
            .as_array()
            .is_some_and(|spans| spans.iter().any(|s| s["call_id"] == call_id.as_str()));
        let in_fields = entry["fields"]["call_id"] == call_id.as_str();
        assert!(
            in_span || in_fields,
            "a call's log line without its call id: {line}"
        );
        barge_in_logged |= entry["fields"]["message"] == "barge-in";
    }
    assert!(
        barge_in_logged,
        "the agent task logged the barge-in:\n{text}"
    );
    assert!(checked >= 2, "the call logged ({checked} lines):\n{text}");
}

/// Sarvam's TTS has no contexts to cancel: a barge-in must leave its session able to speak the
/// next reply, or the call would wait for audio that never comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sarvam_speaks_again_after_a_barge_in() {
    let lab = CallLab::start(sarvam_both_ways()).await;
    let script = CallerScript::new()
        .wait_for_agent_speech(Duration::from_secs(15))
        .wait(Duration::from_millis(700))
        .say(clip("book_table"));
    let script = after_agent(script)
        .say(clip("thank_you_goodbye"))
        .wait(Duration::from_secs(20));
    let sid = lab.call_in(script);
    let call = lab.finished_call(&sid).await;
    assert_eq!(call["end_reason"], "assistant_ended_call", "{call}");
    let turns = transcript(&call);
    assert!(
        turns[0].1.len() < GREETING.len(),
        "the greeting was cut: {turns:?}"
    );
    lab.stop().await;
}

/// The longest silence inside each stretch of agent audio the caller heard: a stretch starts
/// with the first audio after the caller's speech (or a `clear`) and ends at the server's
/// end-of-reply mark; inside it the earpiece plays 8 bytes a millisecond, so audio that arrives
/// after the queued audio has run out leaves a silence of that length.
fn longest_silences_within_replies(report: &voxbridge::sim::caller::CallerReport) -> Vec<Duration> {
    let mut boundaries: Vec<Duration> = report.speech.iter().map(|s| s.started_at).collect();
    boundaries.extend(
        report
            .marks
            .iter()
            .filter(|m| m.name.ends_with(".end"))
            .map(|m| m.received_at),
    );
    boundaries.sort_unstable();
    let mut boundaries = boundaries.into_iter().peekable();
    let mut stretches = Vec::new();
    // (when the queued audio runs out, clears seen, longest silence so far)
    let mut current: Option<(Duration, u32, Duration)> = None;
    for media in &report.media {
        let mut new_stretch = false;
        while boundaries.next_if(|&b| b <= media.at).is_some() {
            new_stretch = true;
        }
        let play = Duration::from_micros(u64::from(media.bytes) * 125);
        match &mut current {
            Some((runs_out, clears, longest)) if !new_stretch && *clears == media.after_clears => {
                *longest = (*longest).max(media.at.saturating_sub(*runs_out));
                *runs_out = (*runs_out).max(media.at) + play;
            }
            _ => {
                stretches.extend(current.map(|(_, _, longest)| longest));
                current = Some((media.at + play, media.after_clears, Duration::ZERO));
            }
        }
    }
    stretches.extend(current.map(|(_, _, longest)| longest));
    stretches
}

/// Seed 002's second voice (Sarvam, `anushka`, `en-IN`) on an English call, the fakes at the
/// reference delays (Sarvam synthesising at 4× real time after its first byte) and a model that
/// streams its reply: six characters every 40 ms, ~35 tokens a second.
fn sarvam_voice_streaming_model() -> LabOptions {
    let mut options = LabOptions {
        delays: voxbridge::sim::suite::SimOptions {
            llm_per_chunk_ms: 40,
            ..voxbridge::sim::suite::SimOptions::reference()
        },
        ..LabOptions::default()
    };
    options.assistant["assistant_tts_model"] = serde_json::json!("sarvam");
    options.assistant["assistant_tts_config"] =
        serde_json::json!({"speaker": "anushka", "target_language_code": "en-IN"});
    options
}

/// Issue 14: with Sarvam's buffering as documented (`min_buffer_size` held until more text or
/// a flush; synthesis at 4× real time after a 150 ms first byte) and a model that streams its
/// reply, every reply of a three-turn call must play whole: no silence between its phrases that
/// the caller would take for the end of the turn, nothing talked over, nothing cut; and the
/// first phrase must not wait in Sarvam's buffer for more text.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sarvam_replies_play_whole_with_no_silence_between_phrases() {
    let lab = CallLab::start(sarvam_voice_streaming_model()).await;
    // `tomorrow_at_seven` pauses 340 ms after "Yes,", longer than the STT's endpointing: the
    // agent would rightly answer "Yes," and be talked over. `book_table` has no such pause; the
    // fake STT hears the scripted utterances in order whatever the clip.
    let script = after_agent(CallerScript::new()).say(clip("book_table"));
    let script = after_agent(script).say(clip("book_table"));
    let script = after_agent(script)
        .say(clip("thank_you_goodbye"))
        .wait(Duration::from_secs(20));
    let sid = lab.call_in(script);
    let call = lab.finished_call(&sid).await;
    let report = &lab.twilio.call(&sid).unwrap().caller_reports[0];
    let turns = transcript(&call);
    let said: Vec<&str> = turns
        .iter()
        .filter(|(r, _)| r == "assistant")
        .map(|(_, t)| t.as_str())
        .collect();
    // Each reply is the fake model's multi-phrase answer ("Sure. You said: … How else can I
    // help?"), heard to its end before the caller spoke again.
    assert_eq!(call["end_reason"], "assistant_ended_call", "{call:#}");
    assert!(
        call["transcript"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["interrupted"] == false),
        "a reply was talked over: {turns:#?}"
    );
    assert!(
        report.clears.is_empty(),
        "the caller barged in: {:?}",
        report.clears
    );
    assert_eq!(said.len(), 4, "{turns:#?}");
    for reply in &said[1..3] {
        assert!(
            reply.starts_with("Sure. You said:") && reply.ends_with("How else can I help?"),
            "{turns:#?}"
        );
    }
    // Between phrases the provider's own delay (150 ms before the first byte) may show; a
    // phrase waiting in Sarvam's buffer shows as seconds. 500 ms leaves room for a loaded
    // machine.
    let silences = longest_silences_within_replies(report);
    assert!(
        silences.iter().all(|s| *s < Duration::from_millis(500)),
        "silences inside replies: {silences:?}"
    );
    // The first phrase ("Sure.") went to synthesis before Sarvam's buffer filled: the segment
    // that starts each reply is shorter than min_buffer_size (50), so a flush released it.
    let segments = lab.sarvam_tts.received().segments;
    let openings: Vec<&String> = segments.iter().filter(|s| s.starts_with("Sure.")).collect();
    assert_eq!(openings.len(), 2, "{segments:#?}");
    assert!(
        openings.iter().all(|s| s.chars().count() < 50),
        "a first phrase waited for min_buffer_size: {segments:#?}"
    );
    lab.stop().await;
}

/// Barge-in over a multi-phrase Sarvam reply whose later phrases are still being synthesised:
/// the history keeps only the words heard, and after the clear the caller hears the next reply
/// and nothing else — not a byte of the cancelled one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_barge_in_over_a_sarvam_reply_keeps_what_was_heard_and_nothing_of_it_follows() {
    let lab = CallLab::start(sarvam_voice_streaming_model()).await;
    let script = after_agent(CallerScript::new())
        .say(clip("book_table"))
        .wait_for_agent_speech(Duration::from_secs(15))
        .wait(Duration::from_millis(1500))
        .say(clip("book_table"));
    let script = after_agent(script).hang_up();
    let sid = lab.call_in(script);
    let call = lab.finished_call(&sid).await;
    let report = &lab.twilio.call(&sid).unwrap().caller_reports[0];
    let turns = call["transcript"].as_array().unwrap();
    let assistant: Vec<&Value> = turns.iter().filter(|t| t["role"] == "assistant").collect();
    assert_eq!(assistant.len(), 3, "{call:#}");
    let cut = &assistant[1];
    let full = "Sure. You said: Hi, I'd like to book a table for two. How else can I help?";
    let heard = cut["text"].as_str().unwrap();
    assert_eq!(cut["interrupted"], true, "{call:#}");
    assert!(
        !heard.is_empty() && heard.len() < full.len() && full.starts_with(heard),
        "heard {heard:?} of {full:?}"
    );
    // The model was asked the next question with only what was heard in its history.
    let requests = lab.openai.requests();
    let last = &requests.last().unwrap().body["messages"];
    let said_before: Vec<&str> = last
        .as_array()
        .unwrap()
        .iter()
        .filter(|m| m["role"] == "assistant")
        .filter_map(|m| m["content"].as_str())
        .collect();
    assert_eq!(said_before.last(), Some(&heard), "{last:#}");

    // One clear; after it, exactly the next reply's audio: its text at 65 ms a character, 8
    // bytes a millisecond, the last frame padded to 20 ms.
    assert_eq!(report.clears.len(), 1, "{:?}", report.clears);
    let next = assistant[2]["text"].as_str().unwrap();
    assert_eq!(assistant[2]["interrupted"], false, "{call:#}");
    assert_eq!(
        next,
        "Sure. You said: Yes, tomorrow at seven please. How else can I help?"
    );
    let after_clear: u64 = report
        .media
        .iter()
        .filter(|m| m.after_clears > 0)
        .map(|m| u64::from(m.bytes))
        .sum();
    // Each phrase goes to the TTS with a trailing space.
    let spoken = (next.chars().count() as u64 + 1) * 520;
    assert!(
        (spoken..spoken + 160).contains(&after_clear),
        "{after_clear} bytes after the clear, the next reply is {spoken}"
    );
    lab.stop().await;
}

/// A model that refuses (out of quota: not worth a retry) is counted by provider and kind, and
/// the call goes on (the caller hears an apology instead of silence).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_llm_failure_is_counted_and_the_call_goes_on() {
    let lab = CallLab::start(LabOptions::default()).await;
    lab.openai
        .push_fault(voxbridge::sim::openai::Fault::insufficient_quota());
    let script = after_agent(CallerScript::new()).say(clip("book_table"));
    let script = after_agent(script).hang_up();
    let sid = lab.call_in(script);
    let call = lab.finished_call(&sid).await;
    assert_eq!(call["end_reason"], "caller_hung_up", "{call}");
    let metrics = reqwest::get(format!("{}/metrics", lab.server.base))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let counted = metrics.lines().any(|l| {
        l.starts_with("voxbridge_provider_errors_total")
            && l.contains(r#"provider="llm""#)
            && l.contains(r#"kind="rejected""#)
            && l.ends_with(" 1")
    });
    assert!(
        counted,
        "no llm error counted in:\n{metrics}\ncall: {call:#}"
    );
    lab.stop().await;
}

/// Keys pressed on the phone are collected into one entry (ended by `#`) that is the caller's
/// turn, and the agent answers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keypad_digits_make_one_turn_the_agent_answers() {
    let lab = CallLab::start(LabOptions::default()).await;
    let mut script = after_agent(CallerScript::new());
    for key in ['4', '2', '#'] {
        script = script.dtmf(key);
    }
    let script = after_agent(script).hang_up();
    let sid = lab.call_in(script);
    let call = lab.finished_call(&sid).await;
    let turns = transcript(&call);
    let users: Vec<&str> = turns
        .iter()
        .filter(|(r, _)| r == "user")
        .map(|(_, t)| t.as_str())
        .collect();
    assert_eq!(
        users,
        ["(the caller entered 42 on the keypad)"],
        "{turns:?}"
    );
    assert!(call["recording_url"].is_null(), "not recorded: {call}");
    let answered = turns
        .iter()
        .skip_while(|(r, _)| r != "user")
        .any(|(r, _)| r == "assistant");
    assert!(answered, "{turns:?}");
    lab.stop().await;
}

/// The DTMF key whose two tones dominate a 20 ms frame of 8 kHz audio (Goertzel at the eight
/// DTMF frequencies), or `None` for speech, silence or anything else.
fn dtmf_key(frame: &[i16]) -> Option<char> {
    const LOW: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
    const HIGH: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
    const KEYS: [[char; 4]; 4] = [
        ['1', '2', '3', 'A'],
        ['4', '5', '6', 'B'],
        ['7', '8', '9', 'C'],
        ['*', '0', '#', 'D'],
    ];
    let power = |hz: f32| {
        let k = 2.0 * (2.0 * std::f32::consts::PI * hz / 8000.0).cos();
        let (mut s1, mut s2) = (0f32, 0f32);
        for &x in frame {
            let s = f32::from(x) + k * s1 - s2;
            s2 = s1;
            s1 = s;
        }
        s1 * s1 + s2 * s2 - k * s1 * s2
    };
    let total: f32 = frame.iter().map(|&x| f32::from(x).powi(2)).sum::<f32>() * frame.len() as f32;
    let strongest = |bank: &[f32; 4]| {
        let powers = bank.map(power);
        let (i, &p) = powers
            .iter()
            .enumerate()
            .max_by(|a, b| a.1.total_cmp(b.1))
            .unwrap();
        let others = powers.iter().enumerate().filter(|(j, _)| *j != i);
        let clear = others.into_iter().all(|(_, &q)| q * 10.0 < p);
        (i, p, clear)
    };
    let (low, pl, low_clear) = strongest(&LOW);
    let (high, ph, high_clear) = strongest(&HIGH);
    // Two clear tones that carry most of the frame's energy: a key, not a voice.
    (low_clear && high_clear && (pl + ph) * 2.0 > total * 0.5 && total > 0.0)
        .then_some(KEYS[low][high])
}

/// The keys in a stretch of 8 kHz audio, each once however many frames it lasts.
fn dtmf_keys(samples: &[i16]) -> String {
    let mut keys = String::new();
    let mut previous = None;
    for frame in samples.chunks_exact(160) {
        let key = dtmf_key(frame);
        if let Some(k) = key
            && previous != Some(k)
        {
            keys.push(k);
        }
        previous = key;
    }
    keys
}

/// The model presses keys on the far end's IVR: `send_dtmf` is offered on a phone call, its
/// keys are played as DTMF tones after the words before them, and they are in the call's audio
/// (read back from the agent's channel of the call's recording) in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_dtmf_plays_the_keys_in_the_calls_audio() {
    let mut options = LabOptions {
        utterances: vec!["Could you press 42 for me?"],
        ..LabOptions::default()
    };
    options.assistant["assistant_recording"] = serde_json::json!(true);
    let lab = CallLab::start(options).await;
    let script = after_agent(CallerScript::new()).say(clip("book_table"));
    let script = after_agent(script).hang_up();
    let sid = lab.call_in(script);
    let call = lab.finished_call(&sid).await;
    let turns = transcript(&call);
    assert!(
        turns
            .iter()
            .any(|(r, t)| r == "tool" && t.starts_with("send_dtmf")),
        "{turns:?}"
    );

    let url = call["recording_url"].as_str().expect("recorded");
    let (_, samples) = lab.recording(url).await;
    let agent: Vec<i16> = samples.iter().map(|[_, agent]| *agent).collect();
    let caller: Vec<i16> = samples.iter().map(|[caller, _]| *caller).collect();
    assert_eq!(
        dtmf_keys(&agent),
        "42",
        "the agent's channel holds the keys"
    );
    assert_eq!(dtmf_keys(&caller), "", "the caller pressed nothing");
    lab.stop().await;
}

/// Cartesia answers the greeting's context with an error: the words it did not make are said
/// again once, in a new context, and the caller hears the greeting whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tts_error_mid_reply_is_said_again_once() {
    let lab = CallLab::start(LabOptions::default()).await;
    lab.cartesia
        .inject(voxbridge::sim::cartesia::ContextFault::Error { status: 500 });
    let script = after_agent(CallerScript::new()).hang_up();
    let sid = lab.call_in(script);
    let call = lab.finished_call(&sid).await;
    let turns = transcript(&call);
    assert_eq!(
        turns.first(),
        Some(&("assistant".to_owned(), GREETING.to_owned())),
        "{turns:?}"
    );
    let received = lab.cartesia.received();
    let contexts = &received.context_ids;
    assert!(contexts.len() >= 2, "{contexts:?}");
    assert_eq!(
        received.transcript_of(&contexts[1]).trim(),
        GREETING,
        "the retry carries the whole greeting (nothing of it was made)"
    );
    let sim = lab.twilio.call(&sid).unwrap();
    assert!(sim.caller_reports[0].first_agent_audio_at().is_some());
    lab.stop().await;
}

/// While the server drains, Twilio's voice webhook for a new call answers a `<Redirect>` to the
/// same URL (a load balancer that saw `/readyz` fail sends it to another node); the call that
/// is up is not disturbed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draining_server_redirects_new_inbound_calls() {
    let mut lab = CallLab::start(LabOptions {
        configure: Box::new(|c| c.drain_timeout_secs = 60),
        ..LabOptions::default()
    })
    .await;
    let token = wire::auth_token();
    let (status, twiml) = wire::voice_webhook(&lab, token).await;
    assert_eq!(status, 200, "{twiml}");
    let (call_id, stream_token) = wire::stream_parameters(&twiml);
    let mut socket = wire::connect(&lab).await;
    wire::start(&mut socket, &call_id, &stream_token).await;
    // The call is live once its greeting flows.
    let (frames, _) = wire::drain(&mut socket, Duration::from_secs(2)).await;
    assert!(frames > 0, "the greeting started");

    lab.server.begin_shutdown().await;
    let (status, twiml) = wire::voice_webhook(&lab, token).await;
    assert_eq!(status, 200);
    assert_eq!(
        twiml,
        format!(
            "<Response><Redirect method=\"POST\">{}/twilio/voice</Redirect></Response>",
            lab.server.base
        )
    );
    drop(socket);
    tokio::time::timeout(Duration::from_secs(30), lab.stop())
        .await
        .expect("the server stopped once its live call ended");
}

/// The owner's concurrent-call limit holds for inbound calls too: beyond it Twilio is told to
/// reject the call as busy, and nothing is stored for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_inbound_call_over_the_owners_limit_is_rejected_as_busy() {
    let lab = CallLab::start(LabOptions {
        max_concurrent_calls: 1,
        ..LabOptions::default()
    })
    .await;
    let token = wire::auth_token();
    let (status, twiml) = wire::voice_webhook(&lab, token).await;
    assert_eq!(status, 200, "{twiml}");
    assert!(twiml.contains("<Connect>"), "{twiml}");
    let (status, twiml) = wire::voice_webhook(&lab, token).await;
    assert_eq!(status, 200, "{twiml}");
    assert_eq!(twiml, "<Response><Reject reason=\"busy\"/></Response>");
    let (_, list) = lab.server.get("/call/list").await;
    assert_eq!(list["data"]["calls"].as_array().unwrap().len(), 1, "{list}");
    lab.stop().await;
}
