//! Sarvam streaming STT: the client against the fake, and the fake against wrong requests.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use voxbridge::audio::AudioFormat;
use voxbridge::sim::sarvam_stt::{DEFAULT_API_KEY, SarvamSttFake, SarvamSttFakeConfig};
use voxbridge::sim::stream_log::StreamFault;
use voxbridge::sim::stt_script::SttScript;
use voxbridge::stt::sarvam::{SarvamOptions, SarvamStt};
use voxbridge::stt::{
    SessionOptions, SpeechToText, SttEndpoint, SttError, SttEvent, SttInput, SttParams,
};

use crate::stt_support::*;

const FRAME: usize = 160; // 20 ms of μ-law 8 kHz

async fn fake() -> (SarvamSttFake, String) {
    let fake = SarvamSttFake::new(SarvamSttFakeConfig {
        script: SttScript::new(vec!["मेरा ऑर्डर कहाँ है".to_owned(), "धन्यवाद".to_owned()]),
        ..SarvamSttFakeConfig::default()
    });
    let base = serve(fake.router()).await;
    (fake, base)
}

fn client(base: &str, key: &str, session: SessionOptions) -> SarvamStt {
    SarvamStt::with_options(
        SttEndpoint {
            base_url: base.to_owned(),
            api_key: key.to_owned(),
        },
        SarvamOptions {
            session,
            ..SarvamOptions::default()
        },
    )
}

fn params() -> SttParams {
    SttParams {
        format: AudioFormat::MULAW_8K,
        model: "saaras:v3".to_owned(),
        language: "hi-IN".to_owned(),
        endpointing_ms: 300,
        utterance_end_ms: 1000,
    }
}

fn quick() -> SessionOptions {
    SessionOptions {
        health_tick: Duration::from_millis(100),
        reconnect_backoff: Duration::from_millis(20),
        ..SessionOptions::default()
    }
}

#[tokio::test]
async fn mulaw_speech_becomes_vad_events_and_a_final() {
    let (fake, base) = fake().await;
    let mut session = client(&base, DEFAULT_API_KEY, SessionOptions::default())
        .connect(params())
        .await
        .expect("connects");
    let audio = mulaw_8k(&[(false, 300), (true, 800), (false, 700)]);
    send_audio(&session.input, &audio, FRAME).await;
    let events = events_until(&mut session.events, is_final).await;
    assert_eq!(
        events,
        vec![
            SttEvent::SpeechStarted,
            SttEvent::SpeechEnded,
            SttEvent::Transcript {
                text: "मेरा ऑर्डर कहाँ है".to_owned(),
                is_final: true,
                speech_final: true,
                from_finalize: false,
            },
        ]
    );
    let stream = &fake.streams()[0];
    assert_eq!(stream.header("api-subscription-key"), Some(DEFAULT_API_KEY));
    assert_eq!(stream.query_value("language-code"), Some("hi-IN"));
    assert_eq!(stream.query_value("model"), Some("saaras:v3"));
    assert_eq!(stream.query_value("sample_rate"), Some("8000"));
    assert_eq!(stream.query_value("input_audio_codec"), Some("pcm_s16le"));
    assert_eq!(stream.query_value("vad_signals"), Some("true"));
    assert_eq!(stream.query_value("flush_signal"), Some("true"));
    // μ-law was decoded to PCM16 on the way: twice the bytes, same duration, no resampling.
    assert_eq!(stream.audio_bytes, 2 * audio.len() as u64);
    assert_eq!(stream.audio_ms, 1800);
    assert!(stream.rejected.is_empty(), "{:?}", stream.rejected);
}

#[tokio::test]
async fn finalize_is_a_flush_answered_by_a_final() {
    let (fake, base) = fake().await;
    let mut session = client(&base, DEFAULT_API_KEY, SessionOptions::default())
        .connect(params())
        .await
        .unwrap();
    send_audio(&session.input, &mulaw_8k(&[(true, 600)]), FRAME).await;
    session.input.send(SttInput::Finalize).await.unwrap();
    let events = events_until(&mut session.events, is_final).await;
    assert_eq!(
        events.last(),
        Some(&SttEvent::Transcript {
            text: "मेरा ऑर्डर कहाँ है".to_owned(),
            is_final: true,
            speech_final: true,
            from_finalize: true,
        })
    );
    assert_eq!(fake.streams()[0].control, vec!["flush"]);
}

#[tokio::test]
async fn closing_flushes_and_ends_cleanly() {
    let (fake, base) = fake().await;
    let session = client(&base, DEFAULT_API_KEY, SessionOptions::default())
        .connect(params())
        .await
        .unwrap();
    send_audio(&session.input, &mulaw_8k(&[(true, 500)]), FRAME).await;
    let voxbridge::stt::SttSession { input, mut events } = session;
    drop(input);
    let seen = events_until(&mut events, |e| matches!(e, SttEvent::Closed(_))).await;
    assert_eq!(
        final_texts(&seen),
        vec!["मेरा ऑर्डर कहाँ है"],
        "the tail is transcribed"
    );
    assert_eq!(seen.last(), Some(&SttEvent::Closed(Ok(()))));
    wait_for("the client to close", || fake.streams()[0].client_closed).await;
    assert_eq!(fake.streams()[0].control, vec!["flush"]);
}

#[tokio::test]
async fn handshake_failures_are_typed() {
    let (fake, base) = fake().await;
    let err = client(&base, "wrong", quick())
        .connect(params())
        .await
        .err()
        .unwrap();
    assert!(
        matches!(&err, SttError::Unauthorized { status: 403, message } if message.contains("invalid_api_key_error")),
        "Sarvam answers 403 for a bad key: {err:?}"
    );
    assert_eq!(fake.refused().len(), 1, "no retry");

    fake.refuse_next_handshake(429);
    let err = client(&base, DEFAULT_API_KEY, quick())
        .connect(params())
        .await
        .err()
        .unwrap();
    assert!(matches!(err, SttError::RateLimited { .. }), "{err:?}");

    fake.refuse_next_handshake(500);
    let err = client(&base, DEFAULT_API_KEY, quick())
        .connect(params())
        .await
        .err()
        .unwrap();
    assert!(matches!(err, SttError::Unavailable(_)), "{err:?}");

    let mut bad = params();
    bad.language = "xx-YY".to_owned();
    let err = client(&base, DEFAULT_API_KEY, quick())
        .connect(bad)
        .await
        .err()
        .unwrap();
    assert!(
        matches!(err, SttError::Rejected { status: 400, .. }),
        "{err:?}"
    );
}

#[tokio::test]
async fn mid_stream_close_reconnects() {
    let (fake, base) = fake().await;
    fake.stage_fault(StreamFault::CloseAfterAudio {
        audio_ms: 300,
        code: 1011,
        reason: "internal error".to_owned(),
    });
    let mut session = client(&base, DEFAULT_API_KEY, quick())
        .connect(params())
        .await
        .unwrap();
    let audio = mulaw_8k(&[(false, 800), (true, 700), (false, 1200)]);
    let sender = send_audio_paced(&session.input, &audio, FRAME, Duration::from_millis(2));
    let receiver = events_until(&mut session.events, is_final);
    let ((), events) = tokio::join!(sender, receiver);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, SttEvent::Reconnected { .. })),
        "{events:?}"
    );
    assert_eq!(final_texts(&events), vec!["मेरा ऑर्डर कहाँ है"]);
    assert_eq!(fake.streams().len(), 2);
}

#[tokio::test]
async fn stalled_provider_is_detected_and_replaced() {
    let (fake, base) = fake().await;
    fake.stage_fault(StreamFault::StallAfterAudio { audio_ms: 200 });
    let mut session = client(&base, DEFAULT_API_KEY, quick())
        .connect(params())
        .await
        .unwrap();
    let audio = mulaw_8k(&[(false, 1500), (true, 700), (false, 1200)]);
    let sender = send_audio_paced(&session.input, &audio, FRAME, Duration::from_millis(10));
    let receiver = events_until(&mut session.events, is_final);
    let ((), events) = tokio::join!(sender, receiver);
    assert!(
        events
            .iter()
            .any(|e| matches!(e, SttEvent::Reconnected { lost_ms: 0 })),
        "what the stalled socket had is sent again: {events:?}"
    );
    assert_eq!(fake.streams().len(), 2);
}

#[tokio::test]
async fn pcm16_16k_passes_through() {
    let (fake, base) = fake().await;
    let mut p = params();
    p.format = AudioFormat::PCM16_16K;
    let mut session = client(&base, DEFAULT_API_KEY, SessionOptions::default())
        .connect(p)
        .await
        .unwrap();
    let audio = pcm16(&[(true, 600), (false, 1200)], 16_000);
    send_audio(&session.input, &audio, 640).await;
    let events = events_until(&mut session.events, is_final).await;
    assert_eq!(final_texts(&events).len(), 1);
    let stream = &fake.streams()[0];
    assert_eq!(stream.query_value("sample_rate"), Some("16000"));
    assert_eq!(stream.audio_bytes, audio.len() as u64);
}

// ---- The fake against wrong requests ----

type RawSocket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const GOOD_QUERY: &str = "language-code=hi-IN&model=saaras:v3&sample_rate=8000&input_audio_codec=pcm_s16le&vad_signals=true&flush_signal=true";

async fn raw_connect(
    base: &str,
    query: &str,
    key: Option<&str>,
) -> Result<RawSocket, tungstenite::Error> {
    let url = format!(
        "{}/speech-to-text/ws?{query}",
        base.replacen("http", "ws", 1)
    );
    let mut request = url.into_client_request().unwrap();
    if let Some(key) = key {
        request
            .headers_mut()
            .insert("api-subscription-key", key.parse().unwrap());
    }
    tokio_tungstenite::connect_async(request)
        .await
        .map(|(s, _)| s)
}

fn refusal(result: Result<RawSocket, tungstenite::Error>) -> (u16, Value) {
    match result {
        Err(tungstenite::Error::Http(response)) => {
            let status = response.status().as_u16();
            let body = response.into_body().unwrap_or_default();
            (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("the fake accepted a bad request"),
    }
}

#[tokio::test]
async fn fake_rejects_bad_keys_with_403() {
    let (_fake, base) = fake().await;
    for key in [None, Some("wrong")] {
        let (status, body) = refusal(raw_connect(&base, GOOD_QUERY, key).await);
        assert_eq!(status, 403);
        assert_eq!(body["error"]["code"], "invalid_api_key_error");
    }
}

#[tokio::test]
async fn fake_rejects_bad_query_parameters() {
    let (_fake, base) = fake().await;
    for query in [
        "language_code=hi-IN&sample_rate=8000",
        "language-code=hi-IN&sample_rate=44100",
        "language-code=hi-IN&input_audio_codec=mp3",
        "language-code=hi-IN&vad_signals=yes",
    ] {
        let (status, body) = refusal(raw_connect(&base, query, Some(DEFAULT_API_KEY)).await);
        assert_eq!(status, 400, "{query}");
        assert_eq!(body["error"]["code"], "invalid_request_error", "{query}");
    }
}

async fn next_json(socket: &mut RawSocket) -> Value {
    loop {
        match tokio::time::timeout(Duration::from_secs(5), socket.next()).await {
            Ok(Some(Ok(Message::Text(text)))) => return serde_json::from_str(&text).unwrap(),
            Ok(Some(Ok(_))) => {}
            other => panic!("no message: {other:?}"),
        }
    }
}

#[tokio::test]
async fn fake_answers_bad_messages_with_sarvam_errors() {
    let (fake, base) = fake().await;
    let mut socket = raw_connect(&base, GOOD_QUERY, Some(DEFAULT_API_KEY))
        .await
        .unwrap();
    let pcm = BASE64.encode([0u8; 320]);
    let bad_messages = [
        Message::Binary(vec![0u8; 160].into()),
        Message::text(
            json!({"audio": {"data": "***", "sample_rate": 8000, "encoding": "audio/wav"}})
                .to_string(),
        ),
        Message::text(
            json!({"audio": {"data": pcm, "sample_rate": 16000, "encoding": "audio/wav"}})
                .to_string(),
        ),
        Message::text(
            json!({"audio": {"data": pcm, "sample_rate": "8000", "encoding": "audio/mp3"}})
                .to_string(),
        ),
        Message::text(r#"{"type":"config"}"#),
        Message::text("not json"),
    ];
    let count = bad_messages.len();
    for message in bad_messages {
        socket.send(message).await.unwrap();
        let reply = next_json(&mut socket).await;
        assert_eq!(reply["type"], "error", "{reply}");
        assert_eq!(reply["data"]["code"], "invalid_request_error");
        assert!(
            reply["data"]["error"]
                .as_str()
                .is_some_and(|e| !e.is_empty())
        );
    }
    // A good message is accepted; sample_rate may be a string or a number.
    socket
        .send(Message::text(
            json!({"audio": {"data": pcm, "sample_rate": "8000", "encoding": "audio/wav"}})
                .to_string(),
        ))
        .await
        .unwrap();
    socket
        .send(Message::text(r#"{"type":"flush"}"#))
        .await
        .unwrap();
    let reply = next_json(&mut socket).await;
    assert_eq!(reply["type"], "data");
    assert_eq!(
        reply["data"]["transcript"], "",
        "a flush on silence still answers"
    );
    let stream = &fake.streams()[0];
    assert_eq!(stream.rejected.len(), count);
    assert_eq!(stream.audio_bytes, 320);
}

#[tokio::test]
async fn fake_ignores_flush_without_flush_signal() {
    let (_fake, base) = fake().await;
    let query = "language-code=hi-IN&sample_rate=8000&input_audio_codec=pcm_s16le&vad_signals=true";
    let mut socket = raw_connect(&base, query, Some(DEFAULT_API_KEY))
        .await
        .unwrap();
    let speech = pcm16(&[(true, 500)], 8000);
    socket
        .send(Message::text(json!({"audio": {"data": BASE64.encode(&speech), "sample_rate": 8000, "encoding": "audio/wav"}}).to_string()))
        .await
        .unwrap();
    assert_eq!(
        next_json(&mut socket).await["data"]["signal_type"],
        "START_SPEECH"
    );
    socket
        .send(Message::text(r#"{"type":"flush"}"#))
        .await
        .unwrap();
    // Then 1.2 s of silence: the server's own VAD ends the utterance.
    let silence = pcm16(&[(false, 1200)], 8000);
    socket
        .send(Message::text(json!({"audio": {"data": BASE64.encode(&silence), "sample_rate": 8000, "encoding": "audio/wav"}}).to_string()))
        .await
        .unwrap();
    let end = next_json(&mut socket).await;
    assert_eq!(
        end["data"]["signal_type"], "END_SPEECH",
        "the flush was not honoured: {end}"
    );
    let data = next_json(&mut socket).await;
    assert_eq!(data["type"], "data");
    assert_eq!(data["data"]["transcript"], "मेरा ऑर्डर कहाँ है");
    assert_eq!(data["data"]["language_code"], "hi-IN");
}

#[tokio::test]
async fn silence_keeps_an_idle_stream_alive() {
    let (fake, base) = fake().await;
    let options = SessionOptions {
        ping: false,
        ..SessionOptions::default()
    };
    let session = client(&base, DEFAULT_API_KEY, options)
        .connect(params())
        .await
        .unwrap();
    wait_for("the stream to open", || fake.streams().len() == 1).await;
    tokio::time::pause();
    // Sarvam has no keep-alive message: the client sends 20 ms of silence when idle.
    tokio::time::sleep(Duration::from_secs(10)).await;
    tokio::time::resume();
    wait_for("silent keep-alive audio", || {
        fake.streams()[0].audio_messages >= 2
    })
    .await;
    let stream = &fake.streams()[0];
    assert_eq!(
        stream.audio_bytes,
        stream.audio_messages * 320,
        "20 ms of PCM16 8 kHz each"
    );
    assert!(stream.rejected.is_empty(), "{:?}", stream.rejected);
    drop(session);
}
