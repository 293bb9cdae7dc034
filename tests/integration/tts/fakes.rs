//! The TTS fakes refuse what the real services refuse, checked with hand-written requests.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use voxbridge::sim::Latency;
use voxbridge::sim::cartesia::{self, CartesiaFakeConfig};
use voxbridge::sim::sarvam_tts::{self, SarvamTtsFakeConfig};

use super::serve;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

const VOICE: &str = "a0e99841-438c-4a64-b679-ae501e7d6091";

/// Opens a socket; `Err(status, body)` when the upgrade is refused.
async fn open(url: &str, headers: &[(&'static str, &str)]) -> Result<Socket, (u16, String)> {
    let mut request = url.into_client_request().unwrap();
    for (name, value) in headers {
        request.headers_mut().insert(*name, value.parse().unwrap());
    }
    match tokio_tungstenite::connect_async(request).await {
        Ok((socket, _)) => Ok(socket),
        Err(tungstenite::Error::Http(response)) => Err((
            response.status().as_u16(),
            String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()).into_owned(),
        )),
        Err(e) => panic!("{e}"),
    }
}

async fn send(socket: &mut Socket, value: Value) {
    socket.send(Message::text(value.to_string())).await.unwrap();
}

/// The next JSON message, or `None` after `wait` of silence.
async fn recv_within(socket: &mut Socket, wait: Duration) -> Option<Value> {
    loop {
        match tokio::time::timeout(wait, socket.next()).await {
            Err(_) | Ok(None) => return None,
            Ok(Some(Ok(Message::Text(text)))) => {
                return Some(serde_json::from_str(text.as_str()).unwrap());
            }
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(e))) => panic!("{e}"),
        }
    }
}

async fn recv(socket: &mut Socket) -> Value {
    recv_within(socket, Duration::from_secs(5))
        .await
        .expect("a message")
}

/// Messages until one of `kind` for `context` (included).
async fn until(socket: &mut Socket, kind: &str) -> Vec<Value> {
    let mut seen = Vec::new();
    loop {
        let message = recv(socket).await;
        let stop = message["type"] == kind;
        seen.push(message);
        if stop {
            return seen;
        }
    }
}

fn ws_base(base: &str) -> String {
    base.replacen("http://", "ws://", 1)
}

fn generation(context: &str, transcript: &str, more: bool) -> Value {
    json!({
        "model_id": "sonic-3", "transcript": transcript, "voice": {"mode": "id", "id": VOICE},
        "language": "en", "context_id": context,
        "output_format": {"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000},
        "add_timestamps": true, "continue": more,
    })
}

async fn cartesia_socket(config: CartesiaFakeConfig) -> Socket {
    let (router, _handle) = cartesia::router(config);
    let base = ws_base(&serve(router).await);
    open(
        &format!("{base}/tts/websocket"),
        &[
            ("authorization", "Bearer sk_car_sim"),
            ("cartesia-version", "2026-03-01"),
        ],
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn cartesia_upgrades_need_a_key_and_a_version() {
    let (router, handle) = cartesia::router(CartesiaFakeConfig::default());
    let base = ws_base(&serve(router).await);
    let url = format!("{base}/tts/websocket");
    let version = ("cartesia-version", "2026-03-01");
    assert_eq!(open(&url, &[version]).await.err().unwrap().0, 401);
    assert_eq!(
        open(&url, &[("authorization", "Bearer nope"), version])
            .await
            .err()
            .unwrap()
            .0,
        401
    );
    let (status, body) = open(&url, &[("authorization", "Bearer sk_car_sim")])
        .await
        .err()
        .unwrap();
    assert_eq!(status, 400);
    assert!(body.contains("Cartesia-Version"), "{body}");
    assert_eq!(
        open(
            &url,
            &[
                ("x-api-key", "sk_car_sim"),
                ("cartesia-version", "yesterday")
            ]
        )
        .await
        .err()
        .unwrap()
        .0,
        400
    );
    assert!(
        open(&url, &[("x-api-key", "sk_car_sim"), version])
            .await
            .is_ok()
    );
    assert!(
        open(
            &format!("{url}?api_key=sk_car_sim&cartesia_version=2026-03-01"),
            &[]
        )
        .await
        .is_ok()
    );
    let statuses: Vec<_> = handle
        .received()
        .upgrades
        .iter()
        .map(|u| u.status)
        .collect();
    assert_eq!(statuses, [401, 401, 400, 400, 101, 101]);
}

#[tokio::test]
async fn cartesia_refuses_bad_contexts() {
    let mut socket = cartesia_socket(CartesiaFakeConfig::default()).await;
    let error_for = |m: &Value, context: &str| m["type"] == "error" && m["context_id"] == context;

    // Fields may not change within a context.
    send(&mut socket, generation("a", "Hello ", true)).await;
    let mut changed = generation("a", "there", true);
    changed["voice"]["id"] = json!("b0e99841-438c-4a64-b679-ae501e7d6091");
    send(&mut socket, changed).await;
    let error = until(&mut socket, "error").await.pop().unwrap();
    assert!(error_for(&error, "a"), "{error}");
    assert_eq!(error["error_code"], "context_fields_changed");
    assert_eq!(error["status_code"], 400);
    assert!(error["title"].is_string() && error["message"].is_string());

    // Only raw audio on the socket.
    let mut wav = generation("b", "Hi", false);
    wav["output_format"]["container"] = json!("wav");
    send(&mut socket, wav).await;
    assert!(error_for(&recv(&mut socket).await, "b"));

    // Unknown encodings and rates.
    let mut encoding = generation("c", "Hi", false);
    encoding["output_format"]["encoding"] = json!("pcm_s24le");
    send(&mut socket, encoding).await;
    assert!(error_for(&recv(&mut socket).await, "c"));
    let mut rate = generation("d", "Hi", false);
    rate["output_format"]["sample_rate"] = json!(11025);
    send(&mut socket, rate).await;
    assert!(error_for(&recv(&mut socket).await, "d"));

    // A finished context id may not be reused.
    send(&mut socket, generation("e", "Done.", false)).await;
    let done = until(&mut socket, "done").await;
    assert!(done.iter().all(|m| m["context_id"] == "e"));
    send(&mut socket, generation("e", "Again.", false)).await;
    let error = recv(&mut socket).await;
    assert!(error_for(&error, "e"));
    assert_eq!(error["error_code"], "context_finished");
}

#[tokio::test]
async fn cartesia_streams_chunks_timestamps_flush_done_and_done() {
    let mut socket = cartesia_socket(CartesiaFakeConfig::default()).await;
    send(&mut socket, generation("ctx", "Hello, ", true)).await;
    let mut flushed = generation("ctx", "world.", true);
    flushed["flush"] = json!(true);
    send(&mut socket, flushed).await;
    send(&mut socket, generation("ctx", "", false)).await;
    let messages = until(&mut socket, "done").await;
    let chunks: Vec<_> = messages.iter().filter(|m| m["type"] == "chunk").collect();
    assert!(chunks.len() > 1);
    assert!(
        chunks
            .iter()
            .all(|c| c["status_code"] == 206 && c["done"] == false)
    );
    let audio: usize = chunks
        .iter()
        .map(|c| STANDARD.decode(c["data"].as_str().unwrap()).unwrap().len())
        .sum();
    assert_eq!(audio, super::samples_for("Hello, world.", 16_000) * 2);
    let words: Vec<_> = messages
        .iter()
        .filter(|m| m["type"] == "timestamps")
        .flat_map(|m| m["word_timestamps"]["words"].as_array().unwrap().clone())
        .collect();
    assert_eq!(words, [json!("Hello,"), json!("world.")]);
    assert!(
        messages
            .iter()
            .any(|m| m["type"] == "flush_done" && m["flush_id"] == 1)
    );
    let done = messages.last().unwrap();
    assert_eq!(done["done"], true);
    assert_eq!(done["context_id"], "ctx");
}

#[tokio::test]
async fn cartesia_sends_nothing_more_after_cancel() {
    let mut socket = cartesia_socket(CartesiaFakeConfig {
        latency: Latency::from_millis(0, 10),
        ..Default::default()
    })
    .await;
    let text = "A long text that would take several seconds to speak completely. ".repeat(3);
    send(&mut socket, generation("c", &text, false)).await;
    assert_eq!(recv(&mut socket).await["type"], "chunk");
    send(&mut socket, json!({"context_id": "c", "cancel": true})).await;
    let mut after = Vec::new();
    while let Some(message) = recv_within(&mut socket, Duration::from_millis(300)).await {
        after.push(message);
    }
    assert!(
        after.len() <= 2,
        "kept streaming after cancel: {} messages",
        after.len()
    );
    assert!(after.iter().all(|m| m["type"] != "done"));
}

#[tokio::test]
async fn cartesia_limits_concurrent_contexts_with_429() {
    let mut socket = cartesia_socket(CartesiaFakeConfig {
        max_concurrent_contexts: Some(1),
        ..Default::default()
    })
    .await;
    send(&mut socket, generation("first", "Still open ", true)).await;
    send(&mut socket, generation("second", "Hi", false)).await;
    let messages = until(&mut socket, "error").await;
    let error = messages.last().unwrap();
    assert_eq!(error["context_id"], "second");
    assert_eq!(error["status_code"], 429);
}

#[tokio::test]
async fn cartesia_bytes_validates_and_returns_audio() {
    let (router, _handle) = cartesia::router(CartesiaFakeConfig::default());
    let base = serve(router).await;
    let http = reqwest::Client::new();
    let body = |container: &str| {
        json!({
            "model_id": "sonic-3", "transcript": "Confirmed.", "voice": {"mode": "id", "id": VOICE},
            "output_format": {"container": container, "encoding": "pcm_s16le", "sample_rate": 22050},
        })
    };
    let post = |body: Value, version: bool| {
        let mut request = http
            .post(format!("{base}/tts/bytes"))
            .header("authorization", "Bearer sk_car_sim")
            .json(&body);
        if version {
            request = request.header("cartesia-version", "2026-03-01");
        }
        request.send()
    };
    assert_eq!(post(body("raw"), false).await.unwrap().status(), 400);
    let mut no_voice = body("raw");
    no_voice.as_object_mut().unwrap().remove("voice");
    assert_eq!(post(no_voice, true).await.unwrap().status(), 400);
    let raw = post(body("raw"), true).await.unwrap();
    assert_eq!(raw.status(), 200);
    assert_eq!(
        raw.bytes().await.unwrap().len(),
        super::samples_for("Confirmed.", 22_050) * 2
    );
    let wav = post(body("wav"), true)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(&wav[..4], b"RIFF");
    assert_eq!(u32::from_le_bytes(wav[24..28].try_into().unwrap()), 22_050);
    assert_eq!(wav.len(), 44 + super::samples_for("Confirmed.", 22_050) * 2);
}

fn sarvam_config(data: Value) -> Value {
    json!({"type": "config", "data": data})
}

fn sarvam_voice() -> Value {
    json!({
        "target_language_code": "hi-IN", "speaker": "anushka",
        "speech_sample_rate": "8000", "output_audio_codec": "linear16",
    })
}

async fn sarvam_base() -> String {
    let (router, _handle) = sarvam_tts::router(SarvamTtsFakeConfig::default());
    serve(router).await
}

async fn sarvam_socket(base: &str, model: &str) -> Socket {
    open(
        &format!(
            "{}/text-to-speech/ws?model={model}&send_completion_event=true",
            ws_base(base)
        ),
        &[("api-subscription-key", "sk_sarvam_sim")],
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn sarvam_upgrades_need_a_key() {
    let base = sarvam_base().await;
    let url = format!("{}/text-to-speech/ws?model=bulbul:v2", ws_base(&base));
    let (status, body) = open(&url, &[]).await.err().unwrap();
    assert_eq!(status, 403);
    assert!(body.contains("invalid_api_key_error"), "{body}");
    assert_eq!(
        open(&url, &[("api-subscription-key", "nope")])
            .await
            .err()
            .unwrap()
            .0,
        403
    );
    assert!(
        open(
            &url,
            &[(
                "sec-websocket-protocol",
                "api-subscription-key.sk_sarvam_sim"
            )]
        )
        .await
        .is_ok()
    );
    let unknown_model = format!("{}/text-to-speech/ws?model=bulbul:v9", ws_base(&base));
    assert_eq!(
        open(&unknown_model, &[("api-subscription-key", "sk_sarvam_sim")])
            .await
            .err()
            .unwrap()
            .0,
        400
    );
}

#[tokio::test]
async fn sarvam_needs_config_first_and_a_valid_voice() {
    let base = sarvam_base().await;
    let mut socket = sarvam_socket(&base, "bulbul:v2").await;
    let is_error = |m: &Value| m["type"] == "error" && m["data"]["message"].is_string();

    send(
        &mut socket,
        json!({"type": "text", "data": {"text": "नमस्ते"}}),
    )
    .await;
    assert!(is_error(&recv(&mut socket).await));
    let mut capitalised = sarvam_voice();
    capitalised["speaker"] = json!("Anushka");
    send(&mut socket, sarvam_config(capitalised)).await;
    assert!(is_error(&recv(&mut socket).await));
    let mut default_codec = sarvam_voice();
    default_codec
        .as_object_mut()
        .unwrap()
        .remove("output_audio_codec");
    send(&mut socket, sarvam_config(default_codec)).await;
    assert!(
        is_error(&recv(&mut socket).await),
        "mp3 (the default) is not produced"
    );
    let mut rate = sarvam_voice();
    rate["speech_sample_rate"] = json!("44100");
    send(&mut socket, sarvam_config(rate)).await;
    assert!(is_error(&recv(&mut socket).await));

    // A valid config, text, ping and flush: audio, then the final event.
    send(&mut socket, sarvam_config(sarvam_voice())).await;
    send(
        &mut socket,
        json!({"type": "text", "data": {"text": "नमस्ते"}}),
    )
    .await;
    send(&mut socket, json!({"type": "ping"})).await;
    send(&mut socket, json!({"type": "flush"})).await;
    let messages = until(&mut socket, "event").await;
    assert_eq!(messages.last().unwrap()["data"]["event_type"], "final");
    let audio: usize = messages
        .iter()
        .filter(|m| m["type"] == "audio")
        .map(|m| {
            STANDARD
                .decode(m["data"]["audio"].as_str().unwrap())
                .unwrap()
                .len()
        })
        .sum();
    assert_eq!(audio, super::samples_for("नमस्ते", 8000) * 2);

    // bulbul:v3 refuses pitch and v2 speakers.
    let mut socket = sarvam_socket(&base, "bulbul:v3").await;
    let mut pitch = sarvam_voice();
    pitch["speaker"] = json!("shubh");
    pitch["pitch"] = json!(0.1);
    send(&mut socket, sarvam_config(pitch)).await;
    assert!(is_error(&recv(&mut socket).await));
    send(&mut socket, sarvam_config(sarvam_voice())).await;
    assert!(
        is_error(&recv(&mut socket).await),
        "anushka is not a v3 speaker"
    );
}

/// What the official SDK's `configure` sends when only language and speaker are given (its
/// defaults), with the codec a telephony client asks for: neutral pitch and loudness included,
/// which bulbul:v3 accepts because they change nothing.
fn sdk_defaults(speaker: &str) -> Value {
    json!({
        "target_language_code": "en-IN", "speaker": speaker, "pitch": 0.0, "pace": 1.0,
        "loudness": 1.0, "speech_sample_rate": 22050, "enable_preprocessing": false,
        "output_audio_codec": "linear16", "output_audio_bitrate": "128k",
        "min_buffer_size": 50, "max_chunk_length": 150,
    })
}

/// Audio bytes in `messages`.
fn sarvam_audio_len(messages: &[Value]) -> usize {
    messages
        .iter()
        .filter(|m| m["type"] == "audio")
        .map(|m| {
            STANDARD
                .decode(m["data"]["audio"].as_str().unwrap())
                .unwrap()
                .len()
        })
        .sum()
}

#[tokio::test]
async fn sarvam_accepts_the_sdk_defaults_and_refuses_what_v3_cannot_do() {
    let base = sarvam_base().await;
    let is_error = |m: &Value| m["type"] == "error";
    for (model, speaker) in [("bulbul:v2", "anushka"), ("bulbul:v3", "shubh")] {
        let mut socket = sarvam_socket(&base, model).await;
        send(&mut socket, sarvam_config(sdk_defaults(speaker))).await;
        send(
            &mut socket,
            json!({"type": "text", "data": {"text": "Hello."}}),
        )
        .await;
        send(&mut socket, json!({"type": "flush"})).await;
        let messages = until(&mut socket, "event").await;
        assert!(!messages.iter().any(is_error), "{model}: {messages:?}");
        assert_eq!(
            sarvam_audio_len(&messages),
            super::samples_for("Hello.", 22_050) * 2
        );
    }
    let mut socket = sarvam_socket(&base, "bulbul:v3").await;
    for (field, value) in [
        ("pitch", json!(0.2)),
        ("loudness", json!(1.5)),
        ("min_buffer_size", json!(10)),
        ("min_buffer_size", json!(500)),
        ("max_chunk_length", json!(20)),
        ("max_chunk_length", json!(600)),
        ("output_audio_bitrate", json!("100k")),
    ] {
        let mut config = sdk_defaults("shubh");
        config[field] = value.clone();
        send(&mut socket, sarvam_config(config)).await;
        let answer = recv(&mut socket).await;
        assert!(is_error(&answer), "{field} = {value}: {answer}");
    }
}

#[tokio::test]
async fn sarvam_holds_short_text_until_more_text_or_a_flush() {
    let (router, handle) = sarvam_tts::router(SarvamTtsFakeConfig::default());
    let base = serve(router).await;
    let mut socket = sarvam_socket(&base, "bulbul:v2").await;
    let mut config = sarvam_voice();
    config["min_buffer_size"] = json!(30);
    send(&mut socket, sarvam_config(config)).await;
    // 20 characters: below min_buffer_size, so held however long one waits.
    let short = "Sure, one moment. ";
    send(
        &mut socket,
        json!({"type": "text", "data": {"text": short}}),
    )
    .await;
    assert_eq!(
        recv_within(&mut socket, Duration::from_millis(300)).await,
        None,
        "short text is held"
    );
    // More text takes the buffer past the threshold: all of it is synthesised, no final yet.
    let more = "Your table is booked. ";
    send(&mut socket, json!({"type": "text", "data": {"text": more}})).await;
    let mut audio = 0;
    while audio < super::samples_for(&format!("{short}{more}"), 8000) * 2 {
        let message = recv(&mut socket).await;
        assert_eq!(message["type"], "audio", "{message}");
        audio += sarvam_audio_len(&[message]);
    }
    assert_eq!(
        recv_within(&mut socket, Duration::from_millis(200)).await,
        None,
        "no final without a flush"
    );
    // A short tail goes at a flush; the final follows its audio.
    send(
        &mut socket,
        json!({"type": "text", "data": {"text": "Bye."}}),
    )
    .await;
    send(&mut socket, json!({"type": "flush"})).await;
    let messages = until(&mut socket, "event").await;
    assert_eq!(messages.last().unwrap()["data"]["event_type"], "final");
    assert_eq!(
        sarvam_audio_len(&messages),
        super::samples_for("Bye.", 8000) * 2
    );
    assert_eq!(
        handle.received().segments,
        [format!("{short}{more}"), "Bye.".to_owned()]
    );
}

#[tokio::test]
async fn sarvam_cuts_long_text_at_sentences_and_answers_each_flush_with_a_final() {
    let (router, handle) = sarvam_tts::router(SarvamTtsFakeConfig::default());
    let base = serve(router).await;
    let mut socket = sarvam_socket(&base, "bulbul:v2").await;
    let mut config = sarvam_voice();
    config["max_chunk_length"] = json!(60);
    send(&mut socket, sarvam_config(config)).await;
    let first = "Sure. ";
    send(
        &mut socket,
        json!({"type": "text", "data": {"text": first}}),
    )
    .await;
    send(&mut socket, json!({"type": "flush"})).await;
    let long = "We are open every day from noon. The kitchen closes at ten. \
                On Sundays we serve brunch until three in the afternoon.";
    send(&mut socket, json!({"type": "text", "data": {"text": long}})).await;
    send(&mut socket, json!({"type": "flush"})).await;
    // One final per flush, each after the audio released before it.
    let to_first_final = until(&mut socket, "event").await;
    assert_eq!(
        sarvam_audio_len(&to_first_final),
        super::samples_for(first, 8000) * 2
    );
    let to_second_final = until(&mut socket, "event").await;
    assert_eq!(
        sarvam_audio_len(&to_second_final),
        super::samples_for(long, 8000) * 2
    );
    let segments = handle.received().segments;
    assert_eq!(segments[0], first);
    assert!(
        segments[1..].iter().all(|s| s.chars().count() <= 60),
        "{segments:?}"
    );
    assert!(
        segments[1..].iter().all(|s| s.trim_end().ends_with('.')),
        "cut at sentence ends: {segments:?}"
    );
    assert_eq!(segments[1..].concat(), long);
}

#[tokio::test]
async fn sarvam_streams_after_its_first_byte_faster_than_real_time_but_not_at_once() {
    let (router, _handle) = sarvam_tts::router(SarvamTtsFakeConfig {
        latency: Latency::from_millis(150, 0),
        times_real_time: 4,
        ..SarvamTtsFakeConfig::default()
    });
    let base = serve(router).await;
    let mut socket = sarvam_socket(&base, "bulbul:v2").await;
    send(&mut socket, sarvam_config(sarvam_voice())).await;
    // About 2.3 s of speech: synthesised in about 0.6 s after the first byte.
    let text = "Your table for two is booked for seven.";
    send(&mut socket, json!({"type": "text", "data": {"text": text}})).await;
    let flushed = tokio::time::Instant::now();
    send(&mut socket, json!({"type": "flush"})).await;
    let mut first_audio = None;
    let mut last_audio = flushed;
    let mut audio = 0;
    loop {
        let message = recv(&mut socket).await;
        if message["type"] == "event" {
            break;
        }
        let now = tokio::time::Instant::now();
        first_audio.get_or_insert(now);
        last_audio = now;
        audio += sarvam_audio_len(&[message]);
    }
    assert_eq!(audio, super::samples_for(text, 8000) * 2);
    // Lower bounds only, each counted from the flush (a loaded machine can only make them
    // later; a late first chunk must not shorten the span measured): the first byte waits its
    // delay, and the last comes after that delay plus a quarter of the speech's duration, minus
    // the last chunk's share (at most 120 ms of speech).
    let first_audio = first_audio.unwrap();
    assert!(first_audio - flushed >= Duration::from_millis(140));
    let speech = Duration::from_millis(text.chars().count() as u64 * 65);
    assert!(
        last_audio - flushed
            >= Duration::from_millis(140) + (speech - Duration::from_millis(120)) / 4,
        "{:?} for {speech:?} of speech",
        last_audio - flushed
    );
}

#[tokio::test]
async fn sarvam_rest_validates_and_returns_wavs() {
    let base = sarvam_base().await;
    let http = reqwest::Client::new();
    let post = |body: Value, key: &str| {
        http.post(format!("{base}/text-to-speech"))
            .header("api-subscription-key", key)
            .json(&body)
            .send()
    };
    let valid = json!({
        "text": "नमस्ते", "target_language_code": "hi-IN", "speaker": "anushka",
        "model": "bulbul:v2", "speech_sample_rate": 16000,
    });
    let refused = post(valid.clone(), "nope").await.unwrap();
    assert_eq!(refused.status(), 403);
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "invalid_api_key_error");

    let mut loud_v3 = valid.clone();
    loud_v3["model"] = json!("bulbul:v3");
    loud_v3["speaker"] = json!("shubh");
    loud_v3["loudness"] = json!(1.5);
    assert_eq!(post(loud_v3, "sk_sarvam_sim").await.unwrap().status(), 400);
    let mut capitalised = valid.clone();
    capitalised["speaker"] = json!("Anushka");
    assert_eq!(
        post(capitalised, "sk_sarvam_sim").await.unwrap().status(),
        400
    );
    let mut no_language = valid.clone();
    no_language
        .as_object_mut()
        .unwrap()
        .remove("target_language_code");
    assert_eq!(
        post(no_language, "sk_sarvam_sim").await.unwrap().status(),
        422
    );

    let answer: Value = post(valid.clone(), "sk_sarvam_sim")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(answer["request_id"].is_string());
    let wav = STANDARD
        .decode(answer["audios"][0].as_str().unwrap())
        .unwrap();
    assert_eq!(&wav[..4], b"RIFF");
    assert_eq!(u32::from_le_bytes(wav[24..28].try_into().unwrap()), 16_000);

    let mut legacy = valid;
    legacy.as_object_mut().unwrap().remove("text");
    legacy["inputs"] = json!(["एक", "दो"]);
    let answer: Value = post(legacy, "sk_sarvam_sim")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["audios"].as_array().unwrap().len(), 2);
}
