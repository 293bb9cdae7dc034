//! The fake Twilio against the REST client and a small application written here (status and
//! voice webhooks, and an agent on the media WebSocket), as voxbridge will use them.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::http::HeaderMap;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use axum::{Form, Router};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::{Value, json};

use super::*;
use crate::sim::caller::{CallerAudio, CallerEnd};
use crate::telephony::twilio::rest::{
    CallResource, CreateCall, HangUp, TwilioCredentials, TwilioError, TwilioRest,
};
use crate::telephony::twilio::signature::validate_signature;
use crate::telephony::twilio::twiml::{self, DialSpec, DialTarget, StreamSpec};

const WAIT: Duration = Duration::from_secs(20);
const SID: &str = "AC0123456789abcdef0123456789abcdef";
const TOKEN: &str = "fedcba9876543210fedcba9876543210";
const TO: &str = "+14155550123";
const FROM: &str = "+14155550100";

/// What the test application received.
#[derive(Debug, Clone)]
struct Hit {
    path: String,
    form: Vec<(String, String)>,
    signature_ok: bool,
}

impl Hit {
    fn param(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Clone)]
struct AppState {
    base: String,
    hits: Arc<Mutex<Vec<Hit>>>,
    /// Close the media socket once the greeting has played (else wait for `stop`).
    close_after_greeting: bool,
}

/// The application side: webhooks and an agent on `/media`.
struct App {
    base: String,
    hits: Arc<Mutex<Vec<Hit>>>,
}

impl App {
    async fn start(close_after_greeting: bool) -> App {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let hits = Arc::new(Mutex::new(Vec::new()));
        let state = AppState {
            base: base.clone(),
            hits: hits.clone(),
            close_after_greeting,
        };
        let app = Router::new()
            .route("/status", post(webhook))
            .route("/amd", post(amd_webhook))
            .route("/voice", post(voice))
            .route("/voice-reject", post(voice_reject))
            .route("/voice-broken", post(voice_broken))
            .route("/media", get(media))
            .with_state(state);
        tokio::spawn(async move { axum::serve(listener, app).await });
        App { base, hits }
    }

    fn media_url(&self) -> String {
        self.base.replace("http://", "ws://") + "/media"
    }

    fn connect_twiml(&self) -> String {
        twiml::connect_stream(&StreamSpec {
            url: &self.media_url(),
            parameters: &[("call_id", "call-1"), ("token", "t&k")],
            ..Default::default()
        })
        .unwrap()
    }

    fn hits(&self, path: &str) -> Vec<Hit> {
        self.hits
            .lock()
            .unwrap()
            .iter()
            .filter(|h| h.path == path)
            .cloned()
            .collect()
    }

    /// Waits until the application has been hit on `path` (`/media/start`: the stream is live).
    async fn wait_for_hit(&self, path: &str) {
        let deadline = tokio::time::Instant::now() + WAIT;
        while self.hits(path).is_empty() {
            assert!(tokio::time::Instant::now() < deadline, "no {path} in time");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

fn hit(state: &AppState, path: &str, headers: &HeaderMap, form: Vec<(String, String)>) {
    let signature = headers
        .get("x-twilio-signature")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let url = format!("{}{path}", state.base);
    let signature_ok = validate_signature(TOKEN, &url, &form, signature);
    state.hits.lock().unwrap().push(Hit {
        path: path.to_owned(),
        form,
        signature_ok,
    });
}

async fn webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> impl IntoResponse {
    hit(&state, "/status", &headers, form);
    axum::http::StatusCode::NO_CONTENT
}

async fn amd_webhook(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> impl IntoResponse {
    hit(&state, "/amd", &headers, form);
    axum::http::StatusCode::NO_CONTENT
}

fn xml(body: String) -> impl IntoResponse {
    ([(axum::http::header::CONTENT_TYPE, "text/xml")], body)
}

async fn voice(
    State(state): State<AppState>,
    headers: HeaderMap,
    Form(form): Form<Vec<(String, String)>>,
) -> impl IntoResponse {
    hit(&state, "/voice", &headers, form);
    let url = state.base.replace("http://", "ws://") + "/media";
    xml(twiml::connect_stream(&StreamSpec {
        url: &url,
        parameters: &[("call_id", "inbound-1")],
        ..Default::default()
    })
    .unwrap())
}

async fn voice_reject() -> impl IntoResponse {
    xml(twiml::reject(twiml::RejectReason::Busy))
}

async fn voice_broken() -> impl IntoResponse {
    (axum::http::StatusCode::INTERNAL_SERVER_ERROR, "boom")
}

async fn media(State(state): State<AppState>, upgrade: WebSocketUpgrade) -> impl IntoResponse {
    upgrade.on_upgrade(move |socket| agent(state, socket))
}

/// Greets the caller (200 ms of audio and a mark), then closes or waits for `stop`.
async fn agent(state: AppState, mut ws: WebSocket) {
    let mut stream_sid = String::new();
    while let Some(Ok(message)) = ws.recv().await {
        let Message::Text(text) = message else {
            continue;
        };
        let value: Value = serde_json::from_str(&text).unwrap();
        match value["event"].as_str().unwrap_or_default() {
            "start" => {
                stream_sid = value["streamSid"].as_str().unwrap().to_owned();
                let parameters = value["start"]["customParameters"]
                    .as_object()
                    .unwrap()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
                    .collect();
                state.hits.lock().unwrap().push(Hit {
                    path: "/media/start".into(),
                    form: parameters,
                    signature_ok: true,
                });
                let audio = BASE64.encode([0x20u8; 1600]);
                let media =
                    json!({"event": "media", "streamSid": stream_sid, "media": {"payload": audio}});
                let mark =
                    json!({"event": "mark", "streamSid": stream_sid, "mark": {"name": "greeting"}});
                ws.send(Message::text(media.to_string())).await.unwrap();
                ws.send(Message::text(mark.to_string())).await.unwrap();
            }
            "mark" => {
                state.hits.lock().unwrap().push(Hit {
                    path: "/media/mark".into(),
                    form: vec![(
                        "name".into(),
                        value["mark"]["name"].as_str().unwrap().into(),
                    )],
                    signature_ok: true,
                });
                if state.close_after_greeting {
                    let _ = ws.send(Message::Close(None)).await;
                    return;
                }
            }
            "stop" => {
                assert_eq!(value["streamSid"], stream_sid.as_str());
                state.hits.lock().unwrap().push(Hit {
                    path: "/media/stop".into(),
                    form: Vec::new(),
                    signature_ok: true,
                });
            }
            _ => {}
        }
    }
}

async fn fake() -> (TwilioSim, TwilioRest) {
    let sim = TwilioSim::default();
    sim.add_account(SID, TOKEN);
    let base = sim.serve_on_loopback().await.unwrap();
    (sim, TwilioRest::new(&base))
}

fn account() -> TwilioCredentials {
    TwilioCredentials {
        account_sid: SID.into(),
        auth_token: TOKEN.into(),
    }
}

async fn place(
    client: &TwilioRest,
    app: &App,
    to: &str,
    twiml: &str,
) -> Result<CallResource, TwilioError> {
    place_detecting(client, app, to, twiml, None).await
}

/// Places a call; with `amd_callback`, asynchronous answering-machine detection posting there.
async fn place_detecting(
    client: &TwilioRest,
    app: &App,
    to: &str,
    twiml: &str,
    amd_callback: Option<&str>,
) -> Result<CallResource, TwilioError> {
    let callback = format!("{}/status", app.base);
    client
        .create_call(
            &account(),
            &CreateCall {
                to,
                from: FROM,
                twiml,
                status_callback: Some(&callback),
                status_callback_events: &StatusCallbackEvent::ALL,
                timeout_secs: Some(30),
                time_limit_secs: None,
                amd_callback,
            },
        )
        .await
}

#[tokio::test]
async fn an_outbound_call_lives_its_life_with_signed_callbacks() {
    let (sim, client) = fake().await;
    let app = App::start(false).await;
    sim.set_caller_script(
        TO,
        CallerScript::new()
            .wait_for_agent_silence(Duration::from_millis(60), Duration::from_secs(5))
            .say(CallerAudio::tone(440.0, Duration::from_millis(100), 8000))
            .hang_up(),
    );
    let call = place(&client, &app, TO, &app.connect_twiml())
        .await
        .unwrap();
    assert_eq!(call.status, CallStatus::Queued);
    assert_eq!(call.direction, "outbound-api");
    assert!(crate::telephony::is_sid("CA", &call.sid));

    let ended = sim
        .wait_for_call_end(&call.sid, WAIT)
        .await
        .expect("the call ends");
    assert_eq!(ended.status, CallStatus::Completed);
    assert_eq!(ended.streams.len(), 1);
    assert_eq!(
        ended.streams[0].parameters,
        [
            ("call_id".to_owned(), "call-1".to_owned()),
            ("token".to_owned(), "t&k".to_owned())
        ]
    );
    let report = &ended.caller_reports[0];
    assert_eq!(report.end, Some(CallerEnd::ScriptHangUp));
    assert!(report.mark("greeting").unwrap().echoed_at.is_some());
    assert!(
        report.first_speech_at().unwrap() >= report.mark("greeting").unwrap().echoed_at.unwrap()
    );
    assert!(ended.errors.is_empty(), "{:?}", ended.errors);
    assert!(ended.duration_secs.is_some());

    // The request carried one StatusCallbackEvent per value.
    let request = &sim.requests()[0];
    assert!(request.authenticated);
    assert_eq!(request.status, 201);
    assert_eq!(
        request.values("StatusCallbackEvent"),
        ["initiated", "ringing", "answered", "completed"]
    );
    assert_eq!(request.values("StatusCallbackMethod"), ["POST"]);

    let callbacks = app.hits("/status");
    let statuses: Vec<_> = callbacks
        .iter()
        .map(|h| h.param("CallStatus").unwrap())
        .collect();
    assert_eq!(
        statuses,
        ["initiated", "ringing", "in-progress", "completed"]
    );
    for (i, callback) in callbacks.iter().enumerate() {
        assert!(
            callback.signature_ok,
            "callback {i} is signed with the account's token"
        );
        assert_eq!(
            callback.param("SequenceNumber"),
            Some(i.to_string().as_str())
        );
        assert_eq!(callback.param("CallSid"), Some(call.sid.as_str()));
        assert_eq!(callback.param("AccountSid"), Some(SID));
        assert_eq!(callback.param("To"), Some(TO));
        assert_eq!(callback.param("From"), Some(FROM));
        assert_eq!(callback.param("Direction"), Some("outbound-api"));
        assert_eq!(
            callback.param("CallbackSource"),
            Some("call-progress-events")
        );
        assert!(callback.param("Timestamp").unwrap().ends_with("+0000"));
        assert_eq!(callback.param("CallDuration").is_some(), i == 3);
    }
    assert_eq!(app.hits("/media/start").len(), 1);
    assert_eq!(sim.status_callbacks(&call.sid).len(), 4);
}

#[tokio::test]
async fn the_server_closing_the_stream_runs_the_rest_of_the_twiml() {
    let (sim, client) = fake().await;
    let app = App::start(true).await;
    let twiml = twiml::Twiml::new()
        .connect_stream(&StreamSpec {
            url: &app.media_url(),
            ..Default::default()
        })
        .unwrap()
        .say("Goodbye")
        .unwrap()
        .finish();
    let call = place(&client, &app, TO, &twiml).await.unwrap();
    let ended = sim.wait_for_call_end(&call.sid, WAIT).await.unwrap();
    assert_eq!(ended.caller_reports[0].end, Some(CallerEnd::ServerClosed));
    assert_eq!(ended.said, ["Goodbye"]);
    assert_eq!(ended.status, CallStatus::Completed);
}

#[tokio::test]
async fn twilio_errors_come_back_typed() {
    let (sim, client) = fake().await;
    let app = App::start(true).await;
    let err = place(&client, &app, "+1555", &app.connect_twiml())
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(21211));
    assert_eq!(err.http_status(), Some(400));
    assert!(err.is_client_error());
    assert!(
        err.to_string()
            .contains("The 'To' number +1555 is not a valid phone number."),
        "{err}"
    );

    let wrong = TwilioCredentials {
        account_sid: SID.into(),
        auth_token: "00000000000000000000000000000000".into(),
    };
    let err = client
        .create_call(
            &wrong,
            &CreateCall {
                to: TO,
                from: FROM,
                twiml: "<Response/>",
                status_callback: None,
                status_callback_events: &[],
                timeout_secs: None,
                time_limit_secs: None,
                amd_callback: None,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(20003));
    assert_eq!(err.http_status(), Some(401));
    assert!(!sim.requests().last().unwrap().authenticated);
    assert!(sim.calls().is_empty(), "refused requests start no call");
}

#[tokio::test]
async fn the_fake_refuses_what_twilio_would() {
    let (sim, _) = fake().await;
    let base = sim.serve_on_loopback().await.unwrap();
    let http = reqwest::Client::new();
    let url = format!("{base}/2010-04-01/Accounts/{SID}/Calls.json");
    fn ok_form(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut form = vec![("To", TO), ("From", FROM), ("Twiml", "<Response/>")];
        form.extend_from_slice(extra);
        form
    }
    let send = |form: Vec<(&'static str, &'static str)>| {
        let http = http.clone();
        let url = url.clone();
        async move {
            let response = http
                .post(&url)
                .basic_auth(SID, Some(TOKEN))
                .form(&form)
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap();
            (status, body["code"].as_u64())
        }
    };

    let response = http.post(&url).form(&ok_form(&[])).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 401);
    assert!(response.headers().contains_key("www-authenticate"));
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], 20003);
    assert_eq!(body["status"], 401);

    // The account in the path must be the authenticated one.
    let other = format!("{base}/2010-04-01/Accounts/{DEFAULT_ACCOUNT_SID}/Calls.json");
    let response = http
        .post(&other)
        .basic_auth(SID, Some(TOKEN))
        .form(&ok_form(&[]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 401);

    type Case = (Vec<(&'static str, &'static str)>, u16, u64);
    let cases: Vec<Case> = vec![
        (vec![("From", FROM), ("Twiml", "<Response/>")], 400, 21201),
        (vec![("To", TO), ("Twiml", "<Response/>")], 400, 21213),
        (
            vec![("To", TO), ("From", "12"), ("Twiml", "<Response/>")],
            400,
            21212,
        ),
        (
            vec![
                ("To", "4155550123"),
                ("From", FROM),
                ("Twiml", "<Response/>"),
            ],
            400,
            21211,
        ),
        (vec![("To", TO), ("From", FROM)], 400, 21205),
        (
            ok_form(&[("Url", "https://app.example.com/twiml")]),
            400,
            21205,
        ),
        (
            ok_form(&[
                ("StatusCallback", "https://app.example.com/status"),
                (
                    "StatusCallbackEvent",
                    "initiated,ringing,answered,completed",
                ),
            ]),
            400,
            21626,
        ),
        (ok_form(&[("StatusCallbackEvent", "picked-up")]), 400, 21626),
        (ok_form(&[("StatusCallback", "not a url")]), 400, 21609),
        (ok_form(&[("StatusCallbackMethod", "PUT")]), 400, 21200),
        (ok_form(&[("Timeout", "soon")]), 400, 21200),
        // Answering-machine detection takes only Twilio's own spellings.
        (ok_form(&[("MachineDetection", "Yes")]), 400, 21234),
        (ok_form(&[("MachineDetection", "enable")]), 400, 21234),
        (
            ok_form(&[("MachineDetection", "Enable"), ("AsyncAmd", "yes")]),
            400,
            21234,
        ),
        (
            ok_form(&[
                ("MachineDetection", "DetectMessageEnd"),
                ("AsyncAmd", "true"),
                ("AsyncAmdStatusCallback", "/twilio/amd"),
            ]),
            400,
            21234,
        ),
        (
            ok_form(&[
                ("MachineDetection", "DetectMessageEnd"),
                ("AsyncAmd", "true"),
                ("AsyncAmdStatusCallback", "https://app.example.com/amd"),
                ("AsyncAmdStatusCallbackMethod", "PUT"),
            ]),
            400,
            21234,
        ),
        (
            ok_form(&[
                ("MachineDetection", "Enable"),
                ("MachineDetectionTimeout", "2"),
            ]),
            400,
            21234,
        ),
    ];
    for (form, status, code) in cases {
        let shown = format!("{form:?}");
        assert_eq!(send(form).await, (status, Some(code)), "{shown}");
    }

    // A JSON body carries no form parameters for Twilio.
    let response = http
        .post(&url)
        .basic_auth(SID, Some(TOKEN))
        .json(&json!({"To": TO, "From": FROM, "Twiml": "<Response/>"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["code"], 21201);

    // Once the account has numbers, From must be one of them.
    sim.add_number(SID, "+14155550999");
    assert_eq!(send(ok_form(&[])).await, (400, Some(21210)));
    sim.add_number(SID, FROM);
    let (status, _) = send(ok_form(&[])).await;
    assert_eq!(status, 201);
    // Every detection parameter as Twilio documents it is taken; asynchronous detection
    // without a callback is Twilio's warning 21262, not a refusal.
    let (status, _) = send(ok_form(&[
        ("MachineDetection", "DetectMessageEnd"),
        ("AsyncAmd", "true"),
        (
            "AsyncAmdStatusCallback",
            "https://app.example.com/amd?call_id=1",
        ),
        ("AsyncAmdStatusCallbackMethod", "POST"),
        ("MachineDetectionTimeout", "45"),
    ]))
    .await;
    assert_eq!(status, 201);
    let (status, _) = send(ok_form(&[
        ("MachineDetection", "Enable"),
        ("AsyncAmd", "true"),
    ]))
    .await;
    assert_eq!(status, 201);
    let calls = sim.calls();
    assert_eq!(calls.len(), 3, "only the valid requests started calls");
    assert_eq!(
        calls[1].machine_detection,
        Some(MachineDetection::DetectMessageEnd)
    );
    assert!(calls[1].async_amd);
    assert_eq!(
        calls[1].async_amd_callback.as_deref(),
        Some("https://app.example.com/amd?call_id=1")
    );
    assert_eq!(calls[1].machine_detection_timeout_secs, Some(45));
    assert!(calls[1].errors.is_empty(), "{:?}", calls[1].errors);
    assert_eq!(calls[2].errors[0].code, 21262);
    assert_eq!(calls[0].machine_detection, None);
    assert!(sim.requests().iter().filter(|r| r.status == 400).count() >= 18);
}

#[tokio::test]
async fn answering_machine_detection_posts_its_verdict_when_twilio_would() {
    let (sim, client) = fake().await;
    let app = App::start(false).await;
    let machine = "+14155550444";
    let greeting = CallerAudio::synthetic_speech("Leave a message.");
    let greeting_ms = greeting.duration().as_millis() as u64;
    sim.set_callee(machine, Callee::Machine { greeting });
    sim.set_caller_script(
        TO,
        CallerScript::new()
            .say(CallerAudio::tone(440.0, Duration::from_millis(200), 8000))
            .wait(Duration::from_secs(30)),
    );
    let amd = format!("{}/amd", app.base);
    for (to, expected, at_least_ms) in [
        (machine, "machine_end_beep", greeting_ms + 300),
        (TO, "human", 200),
    ] {
        let call = place_detecting(&client, &app, to, &app.connect_twiml(), Some(&amd))
            .await
            .unwrap();
        let verdict = sim
            .wait_for(WAIT, |s| s.amd_callbacks(&call.sid).pop())
            .await
            .unwrap_or_else(|| panic!("no verdict for {to}"));
        assert_eq!(verdict.param("AnsweredBy"), Some(expected), "{to}");
        assert_eq!(verdict.param("CallSid"), Some(call.sid.as_str()));
        assert_eq!(verdict.param("AccountSid"), Some(SID));
        let took: u64 = verdict
            .param("MachineDetectionDuration")
            .unwrap()
            .parse()
            .unwrap();
        // Not before the greeting and its beep (or the person's first words) were over.
        assert!(took >= at_least_ms, "{to}: {took} ms < {at_least_ms} ms");
        assert_eq!(verdict.status, Some(204));
        let hit = app
            .hits("/amd")
            .into_iter()
            .find(|h| h.param("CallSid") == Some(call.sid.as_str()))
            .unwrap();
        assert!(hit.signature_ok, "the verdict is signed like any webhook");
        assert_eq!(
            sim.call(&call.sid).unwrap().answered_by.as_deref(),
            Some(expected)
        );
        client.hang_up(&account(), &call.sid).await.unwrap();
        let ended = sim.wait_for_call_end(&call.sid, WAIT).await.unwrap();
        assert_eq!(
            sim.amd_callbacks(&call.sid).len(),
            1,
            "one verdict per call"
        );
        if to == machine {
            // The machine played its greeting and beep, and then only listened.
            let report = &ended.caller_reports[0];
            assert_eq!(report.speech.len(), 2);
            assert!(report.speech.iter().all(|s| s.ended_at.is_some()));
            assert_eq!(report.end, Some(CallerEnd::RemoteHangUp));
        }
    }
    // Without detection the fake says nothing about who answered.
    let call = place(&client, &app, machine, &app.connect_twiml())
        .await
        .unwrap();
    client.hang_up(&account(), &call.sid).await.unwrap();
    let ended = sim.wait_for_call_end(&call.sid, WAIT).await.unwrap();
    assert!(sim.amd_callbacks(&call.sid).is_empty());
    assert_eq!(ended.answered_by, None);
}

#[tokio::test]
async fn hang_up_stops_the_stream_and_an_ended_call_is_tolerated() {
    let (sim, client) = fake().await;
    let app = App::start(false).await;
    let call = place(&client, &app, TO, &app.connect_twiml())
        .await
        .unwrap();
    app.wait_for_hit("/media/start").await;

    match client.hang_up(&account(), &call.sid).await.unwrap() {
        HangUp::Ended(c) => assert_eq!(c.status, CallStatus::Completed),
        HangUp::AlreadyEnded => panic!("the call was live"),
    }
    let ended = sim.wait_for_call_end(&call.sid, WAIT).await.unwrap();
    assert!(ended.hung_up_by_api);
    assert_eq!(ended.caller_reports[0].end, Some(CallerEnd::RemoteHangUp));
    app.wait_for_hit("/media/stop").await;
    let last = app.hits("/status").pop().unwrap();
    assert_eq!(last.param("CallStatus"), Some("completed"));

    assert_eq!(
        client.hang_up(&account(), &call.sid).await.unwrap(),
        HangUp::AlreadyEnded
    );
    let unknown = crate::telephony::new_sid("CA");
    assert_eq!(
        client.hang_up(&account(), &unknown).await.unwrap(),
        HangUp::AlreadyEnded
    );
    let fetched = client.fetch_call(&account(), &call.sid).await.unwrap();
    assert_eq!(fetched.status, CallStatus::Completed);
}

#[tokio::test]
async fn a_dial_redirect_ends_the_stream_and_is_recorded() {
    let (sim, client) = fake().await;
    let app = App::start(false).await;
    let call = place(&client, &app, TO, &app.connect_twiml())
        .await
        .unwrap();
    app.wait_for_hit("/media/start").await;

    let transfer = twiml::dial(&DialSpec {
        target: DialTarget::Number("+14155550777"),
        caller_id: Some(FROM),
        timeout_secs: Some(20),
        time_limit_secs: None,
    })
    .unwrap();
    let redirected = client
        .redirect(&account(), &call.sid, &transfer)
        .await
        .unwrap();
    assert_eq!(redirected.status, CallStatus::InProgress);
    let ended = sim.wait_for_call_end(&call.sid, WAIT).await.unwrap();
    assert_eq!(ended.redirects, std::slice::from_ref(&transfer));
    assert_eq!(
        ended.caller_reports[0].end,
        Some(CallerEnd::StreamRedirected)
    );
    assert_eq!(ended.dials.len(), 1);
    assert_eq!(
        ended.dials[0].targets,
        [super::DialTarget::Number("+14155550777".into())]
    );
    assert_eq!(ended.dials[0].caller_id.as_deref(), Some(FROM));
    assert_eq!(ended.status, CallStatus::Completed);
    assert!(!ended.hung_up_by_api);

    let err = client
        .redirect(&account(), &call.sid, &transfer)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(20404));
}

#[tokio::test]
async fn scripted_outcomes_end_calls_without_answering() {
    let (sim, client) = fake().await;
    let app = App::start(true).await;
    sim.set_outcome(
        "+14155550001",
        CallOutcome::Busy {
            after: Duration::from_millis(10),
        },
    );
    sim.set_outcome(
        "+14155550002",
        CallOutcome::NoAnswer {
            after: Duration::from_millis(10),
        },
    );
    sim.set_outcome("+14155550003", CallOutcome::Failed);
    for (to, expected) in [
        ("+14155550001", CallStatus::Busy),
        ("+14155550002", CallStatus::NoAnswer),
        ("+14155550003", CallStatus::Failed),
    ] {
        let call = place(&client, &app, to, &app.connect_twiml())
            .await
            .unwrap();
        let ended = sim.wait_for_call_end(&call.sid, WAIT).await.unwrap();
        assert_eq!(ended.status, expected, "{to}");
        assert!(ended.streams.is_empty());
        assert_eq!(ended.duration_secs, None);
        let callbacks = sim.status_callbacks(&call.sid);
        let last = callbacks.last().unwrap();
        assert_eq!(last.param("CallStatus"), Some(expected.as_str()));
        assert_eq!(last.param("CallDuration"), None);
        assert!(
            callbacks
                .iter()
                .all(|c| c.param("CallStatus") != Some("in-progress"))
        );
    }
}

#[tokio::test]
async fn ringing_calls_can_be_canceled() {
    let (sim, client) = fake().await;
    let app = App::start(true).await;
    sim.set_outcome(
        TO,
        CallOutcome::Answer {
            after: Duration::from_secs(30),
        },
    );
    let call = place(&client, &app, TO, &app.connect_twiml())
        .await
        .unwrap();
    sim.wait_for(WAIT, |s| {
        s.call(&call.sid)
            .filter(|c| c.status == CallStatus::Ringing)
    })
    .await
    .unwrap();
    match client.hang_up(&account(), &call.sid).await.unwrap() {
        HangUp::Ended(c) => assert_eq!(c.status, CallStatus::Canceled),
        HangUp::AlreadyEnded => panic!("it was ringing"),
    }
    let ended = sim.wait_for_call_end(&call.sid, WAIT).await.unwrap();
    assert_eq!(ended.status, CallStatus::Canceled);
    assert!(ended.streams.is_empty());
}

#[tokio::test]
async fn stream_urls_twilio_refuses_are_errors_not_connections() {
    let (sim, client) = fake().await;
    let app = App::start(true).await;
    let with_query = format!(
        r#"<Response><Connect><Stream url="{}?token=abc"/></Connect><Say>fallback</Say></Response>"#,
        app.media_url()
    );
    let call = place(&client, &app, TO, &with_query).await.unwrap();
    let ended = sim.wait_for_call_end(&call.sid, WAIT).await.unwrap();
    assert!(ended.streams.is_empty());
    assert_eq!(ended.errors[0].code, 31920, "{:?}", ended.errors);
    assert_eq!(
        ended.said,
        ["fallback"],
        "TwiML goes on after the failed <Connect>"
    );

    let https =
        r#"<Response><Connect><Stream url="https://a.example/media"/></Connect></Response>"#;
    let call = place(&client, &app, TO, https).await.unwrap();
    let ended = sim.wait_for_call_end(&call.sid, WAIT).await.unwrap();
    assert_eq!(ended.errors[0].code, 31922);

    let broken = "<Response><Connect>";
    let call = place(&client, &app, TO, broken).await.unwrap();
    let ended = sim.wait_for_call_end(&call.sid, WAIT).await.unwrap();
    assert_eq!(ended.errors[0].code, 12100);
}

#[tokio::test]
async fn inbound_calls_post_a_signed_voice_webhook_and_connect() {
    let (sim, _) = fake().await;
    let app = App::start(true).await;
    let inbound = |path: &str| InboundCall {
        voice_url: format!("{}{path}", app.base),
        account_sid: SID.into(),
        from: "+14155550555".into(),
        to: FROM.into(),
        script: None,
        status_callback: Some(format!("{}/status", app.base)),
        status_callback_events: vec![StatusCallbackEvent::Completed],
    };
    let sid = sim.simulate_inbound_call(inbound("/voice")).unwrap();
    let ended = sim.wait_for_call_end(&sid, WAIT).await.unwrap();
    assert_eq!(ended.direction, Direction::Inbound);
    assert_eq!(ended.status, CallStatus::Completed);
    assert_eq!(
        ended.streams[0].parameters,
        [("call_id".to_owned(), "inbound-1".to_owned())]
    );
    assert_eq!(ended.caller_reports[0].end, Some(CallerEnd::ServerClosed));
    let voice = &app.hits("/voice")[0];
    assert!(voice.signature_ok);
    assert_eq!(voice.param("CallSid"), Some(sid.as_str()));
    assert_eq!(voice.param("CallStatus"), Some("ringing"));
    assert_eq!(voice.param("Direction"), Some("inbound"));
    assert_eq!(voice.param("To"), Some(FROM));
    assert_eq!(voice.param("From"), Some("+14155550555"));
    let statuses: Vec<_> = app
        .hits("/status")
        .iter()
        .map(|h| h.param("CallStatus").unwrap().to_owned())
        .collect();
    assert_eq!(statuses, ["completed"], "only the subscribed event");

    let sid = sim.simulate_inbound_call(inbound("/voice-reject")).unwrap();
    let ended = sim.wait_for_call_end(&sid, WAIT).await.unwrap();
    assert_eq!(ended.rejected.as_deref(), Some("busy"));
    assert_eq!(ended.status, CallStatus::Busy);

    let sid = sim.simulate_inbound_call(inbound("/voice-broken")).unwrap();
    let ended = sim.wait_for_call_end(&sid, WAIT).await.unwrap();
    assert_eq!(ended.errors[0].code, 11200);

    let mut unknown = inbound("/voice");
    unknown.account_sid = crate::telephony::new_sid("AC");
    assert!(matches!(
        sim.simulate_inbound_call(unknown),
        Err(TwilioSimError::UnknownAccount(_))
    ));
}

#[tokio::test]
async fn fixtures_configure_accounts_and_outcomes() {
    let dir = std::env::temp_dir().join(format!("vb-twilio-fixture-{}", uuid::Uuid::new_v4()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("twilio.json");
    std::fs::write(
        &path,
        json!({
            "accounts": {SID: TOKEN},
            "numbers": {SID: [FROM]},
            "outcomes": {"+14155550001": {"outcome": "busy", "ring_ms": 5}},
            "caller_script": {"steps": [{"wait": {"ms": 20}}, "hang_up"]},
            "callees": {"+14155550005": "machine", "+14155550006": "fax"}
        })
        .to_string(),
    )
    .unwrap();
    let sim = TwilioSim::from_fixture(&path, TwilioSimConfig::default()).unwrap();
    assert!(matches!(
        sim.callee_for("+14155550005"),
        Callee::Machine { .. }
    ));
    assert!(matches!(sim.callee_for("+14155550006"), Callee::Fax));
    assert!(matches!(sim.callee_for(TO), Callee::Person));
    let base = sim.serve_on_loopback().await.unwrap();
    let client = TwilioRest::new(&base);
    let app = App::start(false).await;
    let call = place(&client, &app, "+14155550001", "<Response/>")
        .await
        .unwrap();
    let ended = sim.wait_for_call_end(&call.sid, WAIT).await.unwrap();
    assert_eq!(ended.status, CallStatus::Busy);
    let call = place(&client, &app, TO, &app.connect_twiml())
        .await
        .unwrap();
    let ended = sim.wait_for_call_end(&call.sid, WAIT).await.unwrap();
    assert_eq!(ended.caller_reports[0].end, Some(CallerEnd::ScriptHangUp));

    std::fs::write(
        &path,
        r#"{"accounts": {}, "outcomes": {"+1": {"outcome": "maybe"}}}"#,
    )
    .unwrap();
    assert!(TwilioSim::from_fixture(&path, TwilioSimConfig::default()).is_err());
    std::fs::write(&path, r#"{"callees": {"+1": "robot"}}"#).unwrap();
    assert!(TwilioSim::from_fixture(&path, TwilioSimConfig::default()).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}
