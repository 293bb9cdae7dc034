//! Deepgram: the client against the fake, and the fake against wrong requests.

use std::time::Duration;

use axum::Router;
use axum::extract::ws::{Message as AxumMessage, WebSocketUpgrade};
use axum::routing::any;
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use voxbridge::audio::AudioFormat;
use voxbridge::sim::deepgram::{DEFAULT_API_KEY, DeepgramFake, DeepgramFakeConfig};
use voxbridge::sim::stream_log::StreamFault;
use voxbridge::sim::stt_script::SttScript;
use voxbridge::stt::deepgram::{DeepgramOptions, DeepgramStt};
use voxbridge::stt::{
    SessionOptions, SpeechToText, SttEndpoint, SttError, SttEvent, SttInput, SttParams,
};

use crate::stt_support::*;

const FRAME: usize = 160; // 20 ms of μ-law 8 kHz

fn script() -> SttScript {
    SttScript::new(vec![
        "Hello, I need help.".to_owned(),
        "My order never arrived.".to_owned(),
    ])
}

async fn fake() -> (DeepgramFake, String) {
    let fake = DeepgramFake::new(DeepgramFakeConfig {
        script: script(),
        ..DeepgramFakeConfig::default()
    });
    let base = serve(fake.router()).await;
    (fake, base)
}

fn client(base: &str, key: &str, session: SessionOptions) -> DeepgramStt {
    DeepgramStt::with_options(
        SttEndpoint {
            base_url: base.to_owned(),
            api_key: key.to_owned(),
        },
        DeepgramOptions {
            session,
            ..DeepgramOptions::default()
        },
    )
}

fn params() -> SttParams {
    SttParams {
        format: AudioFormat::MULAW_8K,
        model: "nova-3".to_owned(),
        language: "en".to_owned(),
        endpointing_ms: 300,
        utterance_end_ms: 1000,
    }
}

/// Fast health checks so failure tests finish quickly.
fn quick() -> SessionOptions {
    SessionOptions {
        health_tick: Duration::from_millis(100),
        connect_timeout: Duration::from_secs(2),
        reconnect_backoff: Duration::from_millis(20),
        ..SessionOptions::default()
    }
}

#[tokio::test]
async fn speech_becomes_transcript_events() {
    let (fake, base) = fake().await;
    let stt = client(&base, DEFAULT_API_KEY, SessionOptions::default());
    let mut session = stt.connect(params()).await.expect("connects");

    // Empty frames must never reach Deepgram (it would end the stream).
    session
        .input
        .send(SttInput::Audio(Bytes::new()))
        .await
        .unwrap();
    let audio = mulaw_8k(&[(false, 500), (true, 900), (false, 1400)]);
    send_audio(&session.input, &audio, FRAME).await;

    let events = events_until(&mut session.events, |e| *e == SttEvent::UtteranceEnd).await;
    assert_eq!(events.first(), Some(&SttEvent::SpeechStarted), "{events:?}");
    assert!(
        events.iter().any(
            |e| matches!(e, SttEvent::Transcript { is_final: false, text, .. } if !text.is_empty())
        ),
        "interim results while speaking: {events:?}"
    );
    let finals: Vec<&SttEvent> = events.iter().filter(|e| is_final(e)).collect();
    assert_eq!(
        finals,
        vec![&SttEvent::Transcript {
            text: "Hello, I need help.".to_owned(),
            is_final: true,
            speech_final: true,
            from_finalize: false,
        }]
    );

    // Closing the input finishes the stream: CloseStream, Metadata, close 1000.
    let SttSessionParts { events: mut rx } = split(session);
    let closed = events_until(&mut rx, |e| matches!(e, SttEvent::Closed(_))).await;
    assert_eq!(closed.last(), Some(&SttEvent::Closed(Ok(()))));

    let streams = fake.streams();
    assert_eq!(streams.len(), 1);
    let stream = &streams[0];
    assert_eq!(
        stream.header("authorization"),
        Some("Token deepgram-test-key")
    );
    assert_eq!(stream.query_value("encoding"), Some("mulaw"));
    assert_eq!(stream.query_value("sample_rate"), Some("8000"));
    assert_eq!(stream.query_value("channels"), Some("1"));
    assert_eq!(stream.query_value("interim_results"), Some("true"));
    assert_eq!(stream.query_value("endpointing"), Some("300"));
    assert_eq!(stream.query_value("utterance_end_ms"), Some("1000"));
    assert_eq!(stream.query_value("vad_events"), Some("true"));
    assert_eq!(
        stream.audio_bytes,
        audio.len() as u64,
        "every byte, unchanged"
    );
    assert_eq!(
        stream.audio_messages,
        (audio.len() / FRAME) as u64,
        "one binary frame per 20 ms frame"
    );
    assert_eq!(stream.control, vec!["CloseStream"]);
    assert!(stream.rejected.is_empty(), "{:?}", stream.rejected);
    assert_eq!(stream.closed_with, Some((1000, String::new())));
}

struct SttSessionParts {
    events: tokio::sync::mpsc::Receiver<SttEvent>,
}

/// Drops the input side, keeps the events.
fn split(session: voxbridge::stt::SttSession) -> SttSessionParts {
    let voxbridge::stt::SttSession { input, events } = session;
    drop(input);
    SttSessionParts { events }
}

#[tokio::test]
async fn utterances_take_their_words_from_the_script_in_turn() {
    let (_fake, base) = fake().await;
    let stt = client(&base, DEFAULT_API_KEY, SessionOptions::default());
    let mut session = stt.connect(params()).await.unwrap();
    let audio = mulaw_8k(&[
        (false, 500),
        (true, 600),
        (false, 500),
        (true, 700),
        (false, 500),
    ]);
    send_audio(&session.input, &audio, FRAME).await;
    let mut finals = Vec::new();
    while finals.len() < 2 {
        let event = next_event(&mut session.events, 10).await;
        if is_final(&event) {
            finals.push(event);
        }
    }
    assert_eq!(
        final_texts(&finals),
        vec!["Hello, I need help.", "My order never arrived."]
    );
}

#[tokio::test]
async fn finalize_flushes_what_was_heard() {
    let (fake, base) = fake().await;
    let stt = client(&base, DEFAULT_API_KEY, SessionOptions::default());
    let mut session = stt.connect(params()).await.unwrap();
    // Speech still going on: no endpoint yet, so only Finalize can produce the final.
    send_audio(
        &session.input,
        &mulaw_8k(&[(false, 500), (true, 700)]),
        FRAME,
    )
    .await;
    session.input.send(SttInput::Finalize).await.unwrap();
    let events = events_until(&mut session.events, is_final).await;
    assert_eq!(
        events.last(),
        Some(&SttEvent::Transcript {
            text: "Hello, I need help.".to_owned(),
            is_final: true,
            speech_final: false,
            from_finalize: true,
        })
    );
    // With nothing pending, the answer is an empty final still marked from_finalize.
    session.input.send(SttInput::Finalize).await.unwrap();
    let events = events_until(&mut session.events, is_final).await;
    assert!(
        matches!(events.last(), Some(SttEvent::Transcript { text, from_finalize: true, .. }) if text.is_empty()),
        "{events:?}"
    );
    assert_eq!(fake.streams()[0].control, vec!["Finalize", "Finalize"]);
}

#[tokio::test]
async fn handshake_failures_are_typed_and_auth_is_not_retried() {
    let (fake, base) = fake().await;

    let err = client(&base, "wrong-key", quick())
        .connect(params())
        .await
        .err()
        .expect("refused");
    assert!(
        matches!(&err, SttError::Unauthorized { status: 401, message } if message == "Invalid credentials."),
        "{err:?}"
    );
    assert_eq!(fake.refused().len(), 1, "no retry on bad credentials");

    fake.refuse_next_handshake(429);
    let err = client(&base, DEFAULT_API_KEY, quick())
        .connect(params())
        .await
        .err()
        .unwrap();
    assert!(matches!(err, SttError::RateLimited { .. }), "{err:?}");

    fake.refuse_next_handshake(503);
    let err = client(&base, DEFAULT_API_KEY, quick())
        .connect(params())
        .await
        .err()
        .unwrap();
    assert!(matches!(err, SttError::Unavailable(_)), "{err:?}");

    let mut bad_model = params();
    bad_model.model = "gpt-4".to_owned();
    let err = client(&base, DEFAULT_API_KEY, quick())
        .connect(bad_model)
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&err, SttError::Rejected { status: 400, message } if message.contains("No such model")),
        "dg-error text is kept: {err:?}"
    );

    let err = client(&dead_base_url().await, DEFAULT_API_KEY, quick())
        .connect(params())
        .await
        .err()
        .unwrap();
    assert!(matches!(err, SttError::Unavailable(_)), "{err:?}");
    assert!(fake.streams().is_empty());
}

#[tokio::test]
async fn mid_stream_close_reconnects_and_keeps_transcribing() {
    let (fake, base) = fake().await;
    fake.stage_fault(StreamFault::CloseAfterAudio {
        audio_ms: 400,
        code: 1011,
        reason: "NET-0000".to_owned(),
    });
    let stt = client(&base, DEFAULT_API_KEY, quick());
    let mut session = stt.connect(params()).await.unwrap();
    let audio = mulaw_8k(&[(false, 1000), (true, 800), (false, 600)]);
    let sender = async {
        send_audio_paced(&session.input, &audio, FRAME, Duration::from_millis(2)).await;
    };
    let receiver = events_until(&mut session.events, is_final);
    let ((), events) = tokio::join!(sender, receiver);
    let reconnected = events
        .iter()
        .position(|e| matches!(e, SttEvent::Reconnected { .. }))
        .unwrap_or_else(|| panic!("no Reconnected in {events:?}"));
    let final_at = events.iter().position(is_final).unwrap();
    assert!(reconnected < final_at, "{events:?}");
    assert_eq!(final_texts(&events), vec!["Hello, I need help."]);
    let streams = fake.streams();
    assert_eq!(streams.len(), 2);
    assert_eq!(streams[0].closed_with, Some((1011, "NET-0000".to_owned())));
    let total: u64 = streams.iter().map(|s| s.audio_bytes).sum();
    let lost_ms: u64 = events
        .iter()
        .map(|e| match e {
            SttEvent::Reconnected { lost_ms } => *lost_ms,
            _ => 0,
        })
        .sum();
    assert_eq!(lost_ms, 0, "the unsettled audio was sent again: {events:?}");
    // The quiet pre-roll the lost stream had not settled was sent again on the new one, and
    // nothing more: at most 800 ms twice.
    let sent = audio.len() as u64;
    assert!(
        total >= sent && total <= sent + 800 * 8,
        "received {total} bytes of {sent}"
    );
}

/// The socket is lost in the middle of a sentence. The fake, like a real recogniser, answers a
/// stream that begins inside speech with only the words it heard; the session sends again what
/// the lost stream had not settled (from before the sentence began), so the new stream hears
/// the sentence whole. Without the replay the same call loses the sentence's first half.
#[tokio::test]
async fn a_drop_mid_sentence_loses_no_words() {
    async fn heard(replay_ms: u32) -> (Vec<String>, u64) {
        let (fake, base) = fake().await;
        fake.stage_fault(StreamFault::CloseAfterAudio {
            audio_ms: 1_300,
            code: 1011,
            reason: "NET-0000".to_owned(),
        });
        let options = SessionOptions {
            replay_ms,
            ..quick()
        };
        let mut session = client(&base, DEFAULT_API_KEY, options)
            .connect(params())
            .await
            .unwrap();
        let input = session.input.clone();
        let sender = async move {
            let pace = Duration::from_millis(2);
            send_audio_paced(&input, &mulaw_8k(&[(false, 600)]), FRAME, pace).await;
            // As the call's reader says it: the local VAD heard speech begin.
            input.send(SttInput::Speaking(true)).await.unwrap();
            send_audio_paced(&input, &mulaw_8k(&[(true, 1_500)]), FRAME, pace).await;
            input.send(SttInput::Speaking(false)).await.unwrap();
            send_audio_paced(&input, &mulaw_8k(&[(false, 800)]), FRAME, pace).await;
        };
        let receiver = events_until(&mut session.events, is_final);
        let ((), events) = tokio::join!(sender, receiver);
        let lost_ms: u64 = events
            .iter()
            .map(|e| match e {
                SttEvent::Reconnected { lost_ms } => *lost_ms,
                _ => 0,
            })
            .sum();
        assert_eq!(fake.streams().len(), 2, "{events:?}");
        (final_texts(&events), lost_ms)
    }
    let (with_replay, lost) = heard(SessionOptions::default().replay_ms).await;
    assert_eq!(with_replay, ["Hello, I need help."]);
    assert_eq!(lost, 0);
    let (without, _) = heard(0).await;
    assert_eq!(
        without,
        ["need help."],
        "the fake hears only what it is sent"
    );
}

#[tokio::test]
async fn audio_during_a_slow_reconnect_is_bounded_and_reported() {
    let (fake, base) = fake().await;
    fake.stage_fault(StreamFault::CloseAfterAudio {
        audio_ms: 100,
        code: 1011,
        reason: "NET-0000".to_owned(),
    });
    let options = SessionOptions {
        backlog_ms: 100,
        // The backlog alone: no replay of what the lost stream had.
        replay_ms: 0,
        // One refused attempt, then a long pause before the next: audio piles up meanwhile.
        reconnect_backoff: Duration::from_secs(1),
        ..quick()
    };
    let mut session = client(&base, DEFAULT_API_KEY, options)
        .connect(params())
        .await
        .unwrap();
    fake.refuse_next_handshake(503);
    send_audio(&session.input, &mulaw_8k(&[(false, 200)]), FRAME).await;
    wait_for("the fake to close the stream", || {
        fake.streams()[0].closed_with.is_some()
    })
    .await;
    // One second of audio while the session is reconnecting.
    send_audio(&session.input, &mulaw_8k(&[(false, 1000)]), FRAME).await;
    let events = events_until(&mut session.events, |e| {
        matches!(e, SttEvent::Reconnected { .. })
    })
    .await;
    let Some(SttEvent::Reconnected { lost_ms }) = events.last() else {
        unreachable!()
    };
    assert!(*lost_ms >= 800, "dropped backlog is reported: {lost_ms} ms");
    wait_for("the backlog on the new stream", || {
        fake.streams().get(1).is_some_and(|s| s.audio_ms >= 80)
    })
    .await;
    assert!(
        fake.streams()[1].audio_ms <= 120,
        "only the newest 100 ms were kept"
    );
    assert_eq!(fake.refused().len(), 1);
}

#[tokio::test]
async fn stalled_provider_is_detected_and_replaced() {
    let (fake, base) = fake().await;
    fake.stage_fault(StreamFault::StallAfterAudio { audio_ms: 200 });
    let stt = client(&base, DEFAULT_API_KEY, quick());
    let mut session = stt.connect(params()).await.unwrap();
    // Real-time-ish pacing so the stall is noticed while audio is still flowing.
    let audio = mulaw_8k(&[(false, 1500), (true, 700), (false, 600)]);
    let sender = send_audio_paced(&session.input, &audio, FRAME, Duration::from_millis(10));
    let receiver = events_until(&mut session.events, is_final);
    let ((), events) = tokio::join!(sender, receiver);
    let lost = events.iter().find_map(|e| match e {
        SttEvent::Reconnected { lost_ms } => Some(*lost_ms),
        _ => None,
    });
    let lost = lost.unwrap_or_else(|| panic!("no Reconnected in {events:?}"));
    assert_eq!(lost, 0, "what the stalled socket had is sent again");
    assert_eq!(final_texts(&events), vec!["Hello, I need help."]);
    assert_eq!(fake.streams().len(), 2);
}

#[tokio::test]
async fn credentials_refused_on_reconnect_end_the_session() {
    let (fake, base) = fake().await;
    fake.stage_fault(StreamFault::CloseAfterAudio {
        audio_ms: 100,
        code: 1011,
        reason: "NET-0000".to_owned(),
    });
    let mut session = client(&base, DEFAULT_API_KEY, quick())
        .connect(params())
        .await
        .unwrap();
    // Only the reconnection is refused.
    fake.refuse_next_handshake(401);
    let audio = mulaw_8k(&[(false, 400)]);
    // The session may end before all of it is sent.
    send_audio_paced(&session.input, &audio, FRAME, Duration::ZERO).await;
    let events = events_until(&mut session.events, |e| matches!(e, SttEvent::Closed(_))).await;
    assert!(
        matches!(
            events.last(),
            Some(SttEvent::Closed(Err(SttError::Unauthorized {
                status: 401,
                ..
            })))
        ),
        "{events:?}"
    );
    assert_eq!(fake.refused().len(), 1, "no retry after 401");
}

#[tokio::test]
async fn gives_up_after_bounded_reconnect_attempts() {
    let (fake, base) = fake().await;
    fake.stage_fault(StreamFault::CloseAfterAudio {
        audio_ms: 100,
        code: 1011,
        reason: "NET-0000".to_owned(),
    });
    let mut session = client(&base, DEFAULT_API_KEY, quick())
        .connect(params())
        .await
        .unwrap();
    for _ in 0..3 {
        fake.refuse_next_handshake(503);
    }
    send_audio_paced(
        &session.input,
        &mulaw_8k(&[(false, 300)]),
        FRAME,
        Duration::ZERO,
    )
    .await;
    let events = events_until(&mut session.events, |e| matches!(e, SttEvent::Closed(_))).await;
    assert!(
        matches!(
            events.last(),
            Some(SttEvent::Closed(Err(SttError::Unavailable(_))))
        ),
        "{events:?}"
    );
    assert_eq!(fake.refused().len(), 3);
}

#[tokio::test]
async fn keepalive_is_sent_while_idle() {
    let (fake, base) = fake().await;
    let options = SessionOptions {
        // Pings are answered over real sockets; keep this test about KeepAlive alone.
        ping: false,
        ..SessionOptions::default()
    };
    let session = client(&base, DEFAULT_API_KEY, options)
        .connect(params())
        .await
        .unwrap();
    wait_for("the stream to open", || fake.streams().len() == 1).await;
    tokio::time::pause();
    // 13 s without audio: Deepgram would close at 10 s without KeepAlive.
    tokio::time::sleep(Duration::from_secs(13)).await;
    tokio::time::resume();
    wait_for("keep-alives", || {
        fake.streams()[0]
            .control
            .iter()
            .filter(|c| *c == "KeepAlive")
            .count()
            >= 2
    })
    .await;
    let stream = &fake.streams()[0];
    assert_eq!(stream.closed_with, None, "the stream stayed open");
    assert_eq!(stream.audio_messages, 0);
    drop(session);
}

#[tokio::test]
async fn dropping_the_session_sends_close_stream() {
    let (fake, base) = fake().await;
    let session = client(&base, DEFAULT_API_KEY, SessionOptions::default())
        .connect(params())
        .await
        .unwrap();
    send_audio(&session.input, &mulaw_8k(&[(false, 100)]), FRAME).await;
    drop(session);
    wait_for("CloseStream", || {
        fake.streams()
            .first()
            .is_some_and(|s| s.control == vec!["CloseStream"])
    })
    .await;
}

/// A server that answers with junk before one good result.
async fn malformed_server() -> String {
    async fn handler(ws: WebSocketUpgrade) -> axum::response::Response {
        ws.on_upgrade(|mut socket| async move {
            for junk in [
                "not json at all",
                r#"{"no_type": true}"#,
                r#"{"type":"Results","channel":"oops"}"#,
                r#"{"type":"Results","is_final":"yes"}"#,
                r#"{"type":"FromTheFuture","payload":[1,2,3]}"#,
            ] {
                let _ = socket.send(AxumMessage::Text(junk.into())).await;
            }
            let _ = socket.send(AxumMessage::Binary(Bytes::from_static(b"\x00\x01"))).await;
            let good = r#"{"type":"Results","is_final":true,"speech_final":true,"channel":{"alternatives":[{"transcript":"still here"}]},"new_field":1}"#;
            let _ = socket.send(AxumMessage::Text(good.into())).await;
            while let Some(Ok(_)) = socket.recv().await {}
        })
    }
    serve(Router::new().route("/v1/listen", any(handler))).await
}

#[tokio::test]
async fn malformed_server_messages_are_skipped() {
    let base = malformed_server().await;
    let mut session = client(&base, "any", SessionOptions::default())
        .connect(params())
        .await
        .unwrap();
    let event = next_event(&mut session.events, 5).await;
    assert_eq!(
        event,
        SttEvent::Transcript {
            text: "still here".to_owned(),
            is_final: true,
            speech_final: true,
            from_finalize: false,
        }
    );
}

// ---- The fake against wrong requests (a raw WebSocket client) ----

type RawSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn ws_url(base: &str, query: &str) -> String {
    format!("{}/v1/listen?{query}", base.replacen("http", "ws", 1))
}

async fn raw_connect(
    base: &str,
    query: &str,
    headers: &[(&'static str, &str)],
) -> Result<RawSocket, tungstenite::Error> {
    let mut request = ws_url(base, query).into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(*name, value.parse().unwrap());
    }
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(s, _)| s)
}

fn refusal(result: Result<RawSocket, tungstenite::Error>) -> (u16, String) {
    match result {
        Err(tungstenite::Error::Http(response)) => (
            response.status().as_u16(),
            response
                .headers()
                .get("dg-error")
                .map(|v| v.to_str().unwrap().to_owned())
                .unwrap_or_default(),
        ),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("the fake accepted a bad request"),
    }
}

const MULAW_QUERY: &str = "encoding=mulaw&sample_rate=8000&interim_results=true&endpointing=300";
const AUTH: (&str, &str) = ("authorization", "Token deepgram-test-key");

#[tokio::test]
async fn fake_rejects_missing_or_wrong_credentials() {
    let (fake, base) = fake().await;
    let (status, dg_error) = refusal(raw_connect(&base, MULAW_QUERY, &[]).await);
    assert_eq!((status, dg_error.as_str()), (401, "Invalid credentials."));
    let (status, _) = refusal(
        raw_connect(
            &base,
            MULAW_QUERY,
            &[("authorization", "deepgram-test-key")],
        )
        .await,
    );
    assert_eq!(status, 401, "the scheme is required");
    assert!(
        raw_connect(
            &base,
            MULAW_QUERY,
            &[("authorization", "Bearer deepgram-test-key")]
        )
        .await
        .is_ok()
    );
    let browser = raw_connect(
        &base,
        MULAW_QUERY,
        &[("sec-websocket-protocol", "token, deepgram-test-key")],
    )
    .await
    .expect("browser-style subprotocol auth");
    drop(browser);
    assert_eq!(fake.refused().len(), 2);
}

#[tokio::test]
async fn fake_rejects_bad_query_parameters() {
    let (_fake, base) = fake().await;
    let (status, dg_error) = refusal(raw_connect(&base, "encoding=mulaw", &[AUTH]).await);
    assert_eq!(status, 400);
    assert!(dg_error.contains("sample_rate"), "{dg_error}");
    for query in [
        "encoding=mp3&sample_rate=8000",
        "encoding=mulaw&sample_rate=8000&interim_results=TRUE",
        "encoding=mulaw&sample_rate=8000&endpointing=soon",
        "encoding=mulaw&sample_rate=8000&utterance_end_ms=1s",
    ] {
        let (status, _) = refusal(raw_connect(&base, query, &[AUTH]).await);
        assert_eq!(status, 400, "{query}");
    }
}

/// Reads until the close frame; returns the JSON messages and the close code/reason.
async fn read_to_close(socket: &mut RawSocket) -> (Vec<Value>, Option<(u16, String)>) {
    let mut messages = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_secs(15), socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => {
                messages.push(serde_json::from_str(&text).unwrap())
            }
            Ok(Some(Ok(Message::Close(frame)))) => {
                return (
                    messages,
                    frame.map(|f| (u16::from(f.code), f.reason.to_string())),
                );
            }
            Ok(Some(Ok(_))) => {}
            Ok(Some(Err(_)) | None) => return (messages, None),
            Err(_) => panic!("no close within the timeout"),
        }
    }
}

#[tokio::test]
async fn fake_ends_the_stream_on_an_empty_frame() {
    let (fake, base) = fake().await;
    let mut socket = raw_connect(&base, MULAW_QUERY, &[AUTH]).await.unwrap();
    socket
        .send(Message::Binary(mulaw_8k(&[(true, 500)]).into()))
        .await
        .unwrap();
    socket.send(Message::Binary(Bytes::new())).await.unwrap();
    let (messages, close) = read_to_close(&mut socket).await;
    assert_eq!(close, Some((1000, String::new())));
    assert_eq!(messages.last().unwrap()["type"], "Metadata");
    assert_eq!(fake.streams()[0].control, vec!["empty-frame"]);
}

#[tokio::test]
async fn fake_rejects_control_messages_sent_as_binary() {
    let (fake, base) = fake().await;
    let mut socket = raw_connect(&base, MULAW_QUERY, &[AUTH]).await.unwrap();
    socket
        .send(Message::Binary(Bytes::from_static(
            br#"{"type":"KeepAlive"}"#,
        )))
        .await
        .unwrap();
    let (_, close) = read_to_close(&mut socket).await;
    assert_eq!(close, Some((1008, "DATA-0000".to_owned())));
    assert_eq!(fake.streams()[0].rejected.len(), 1);
}

#[tokio::test]
async fn fake_close_stream_sends_finals_then_metadata() {
    let (_fake, base) = fake().await;
    let mut socket = raw_connect(&base, MULAW_QUERY, &[AUTH]).await.unwrap();
    socket
        .send(Message::Binary(
            mulaw_8k(&[(false, 500), (true, 600)]).into(),
        ))
        .await
        .unwrap();
    socket
        .send(Message::text(r#"{"type":"CloseStream"}"#))
        .await
        .unwrap();
    let (messages, close) = read_to_close(&mut socket).await;
    assert_eq!(close, Some((1000, String::new())));
    let kinds: Vec<&str> = messages
        .iter()
        .map(|m| m["type"].as_str().unwrap())
        .collect();
    assert_eq!(kinds.last(), Some(&"Metadata"));
    let final_result = messages
        .iter()
        .find(|m| m["type"] == "Results" && m["is_final"] == true)
        .expect("the pending utterance is finalised");
    // Neither punctuate nor smart_format was asked for: plain lowercase words.
    assert_eq!(
        final_result["channel"]["alternatives"][0]["transcript"],
        "hello i need help"
    );
    // Timestamps are on the audio timeline: speech began at 0.5 s.
    let first_word = &final_result["channel"]["alternatives"][0]["words"][0];
    assert!(
        (first_word["start"].as_f64().unwrap() - 0.5).abs() < 0.06,
        "{first_word}"
    );
    let metadata = messages.last().unwrap();
    assert!(
        (metadata["duration"].as_f64().unwrap() - 1.1).abs() < 0.02,
        "{metadata}"
    );
    assert_eq!(metadata["sha256"].as_str().unwrap().len(), 64);
}

#[tokio::test]
async fn fake_finalize_marks_from_finalize() {
    let (_fake, base) = fake().await;
    let mut socket = raw_connect(&base, MULAW_QUERY, &[AUTH]).await.unwrap();
    socket
        .send(Message::Binary(mulaw_8k(&[(true, 500)]).into()))
        .await
        .unwrap();
    socket
        .send(Message::text(r#"{"type":"Finalize"}"#))
        .await
        .unwrap();
    loop {
        let Some(Ok(Message::Text(text))) = socket.next().await else {
            panic!("stream ended before the final");
        };
        let value: Value = serde_json::from_str(&text).unwrap();
        if value["type"] == "Results" && value["is_final"] == true {
            assert_eq!(value["from_finalize"], true);
            assert_eq!(value["speech_final"], false);
            break;
        }
    }
}

#[tokio::test]
async fn fake_sends_no_utterance_end_without_interim_results() {
    let (_fake, base) = fake().await;
    let query = "encoding=mulaw&sample_rate=8000&endpointing=300&utterance_end_ms=1000&interim_results=false";
    let mut socket = raw_connect(&base, query, &[AUTH]).await.unwrap();
    socket
        .send(Message::Binary(
            mulaw_8k(&[(true, 500), (false, 2000)]).into(),
        ))
        .await
        .unwrap();
    socket
        .send(Message::text(r#"{"type":"CloseStream"}"#))
        .await
        .unwrap();
    let (messages, _) = read_to_close(&mut socket).await;
    let kinds: Vec<&str> = messages
        .iter()
        .map(|m| m["type"].as_str().unwrap())
        .collect();
    assert!(kinds.contains(&"Results"), "{kinds:?}");
    assert!(!kinds.contains(&"UtteranceEnd"), "{kinds:?}");
    assert!(
        messages
            .iter()
            .all(|m| m["type"] != "Results" || m["is_final"] == true),
        "no interim results either"
    );

    // With interim results on, the same audio yields an UtteranceEnd.
    let query = "encoding=mulaw&sample_rate=8000&endpointing=300&utterance_end_ms=1000&interim_results=true";
    let mut socket = raw_connect(&base, query, &[AUTH]).await.unwrap();
    socket
        .send(Message::Binary(
            mulaw_8k(&[(true, 500), (false, 2000)]).into(),
        ))
        .await
        .unwrap();
    socket
        .send(Message::text(r#"{"type":"CloseStream"}"#))
        .await
        .unwrap();
    let (messages, _) = read_to_close(&mut socket).await;
    assert!(messages.iter().any(|m| m["type"] == "UtteranceEnd"));
}

#[tokio::test]
async fn fake_closes_an_idle_stream_with_net_0001() {
    let (fake, base) = fake().await;
    let mut socket = raw_connect(&base, MULAW_QUERY, &[AUTH]).await.unwrap();
    wait_for("the stream to open", || fake.streams().len() == 1).await;
    tokio::time::pause();
    let (_, close) = read_to_close(&mut socket).await;
    tokio::time::resume();
    assert_eq!(close, Some((1011, "NET-0001".to_owned())));
}

#[tokio::test]
async fn fake_delays_finals_by_the_configured_latency() {
    let fake = DeepgramFake::new(DeepgramFakeConfig {
        latency: voxbridge::sim::Latency::from_millis(100, 0),
        ..DeepgramFakeConfig::default()
    });
    let base = serve(fake.router()).await;
    let mut socket = raw_connect(&base, MULAW_QUERY, &[AUTH]).await.unwrap();
    socket
        .send(Message::Binary(
            mulaw_8k(&[(true, 500), (false, 400)]).into(),
        ))
        .await
        .unwrap();
    let sent = tokio::time::Instant::now();
    loop {
        let Some(Ok(Message::Text(text))) = socket.next().await else {
            panic!("stream ended before the final");
        };
        let value: Value = serde_json::from_str(&text).unwrap();
        if value["is_final"] == true {
            // Behaviour, not speed: the final is held at least the configured time.
            assert!(sent.elapsed() >= Duration::from_millis(100));
            break;
        }
    }
}

/// Serves the fake until killed, printing its base URL: the memory measurement runs it in a
/// child process so the figure is the client's alone.
#[tokio::test]
#[ignore = "helper process for memory_per_session"]
async fn fake_server_process() {
    if std::env::var_os("VOXBRIDGE_FAKE_PROCESS").is_none() {
        return;
    }
    let (_fake, base) = fake().await;
    println!("FAKE_BASE={base}");
    tokio::time::sleep(Duration::from_secs(120)).await;
}

/// Resident memory of `n` live Deepgram client sessions (plain TCP: TLS adds rustls' buffers).
/// Run with `--run-ignored only` and `--no-capture` to see the figure.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, not a check"]
async fn memory_per_session() {
    use std::io::BufRead;
    fn rss_kib() -> u64 {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        let pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
        pages * 4
    }
    let mut child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "stt_deepgram::fake_server_process",
            "--ignored",
            "--nocapture",
        ])
        .env("VOXBRIDGE_FAKE_PROCESS", "1")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let base = loop {
        let line = lines.next().expect("the fake prints its URL").unwrap();
        if let Some(base) = line.strip_prefix("FAKE_BASE=") {
            break base.to_owned();
        }
    };
    let stt = client(&base, DEFAULT_API_KEY, SessionOptions::default());
    // Warm up allocator pools and lazily built state.
    let warm = stt.connect(params()).await.unwrap();
    send_audio(&warm.input, &mulaw_8k(&[(true, 200)]), FRAME).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = rss_kib();
    let n = 500;
    let mut sessions = Vec::new();
    for _ in 0..n {
        let session = stt.connect(params()).await.unwrap();
        send_audio(
            &session.input,
            &mulaw_8k(&[(false, 100), (true, 400)]),
            FRAME,
        )
        .await;
        sessions.push(session);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib();
    println!(
        "{n} client sessions: {} KiB resident, {:.1} KiB per session",
        after - before,
        (after - before) as f64 / n as f64
    );
    drop(sessions);
    let _ = child.kill();
    let _ = child.wait();
}
