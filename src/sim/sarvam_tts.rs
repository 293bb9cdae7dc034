//! A fake Sarvam TTS: the streaming socket (`/text-to-speech/ws`) and REST (`POST
//! /text-to-speech`), speaking the synthetic voice in the codec and rate asked for.
//!
//! The socket buffers text as Sarvam documents it: text is held until the buffer reaches
//! `min_buffer_size` characters (30–200, default 50) or a `flush` comes; released text is cut
//! into segments of at most `max_chunk_length` characters (50–500, default 150) at sentence ends
//! and synthesised in order, the first audio after the first-byte latency and the rest faster
//! than real time; each `flush` is answered by a `final` event after the audio of everything
//! released before it. A client that leaves a short phrase unflushed hears nothing of it, as
//! it would on the real service.
//!
//! It rejects what Sarvam rejects: a missing or wrong `api-subscription-key` (403,
//! `invalid_api_key_error`; the `api-subscription-key.<key>` subprotocol is accepted too),
//! anything before `config` on the socket, speakers that are capitalised or belong to another
//! model, non-neutral `pitch`/`loudness` on bulbul:v3 (the SDK's neutral defaults pass),
//! out-of-range values and unknown rates. Output codecs it cannot make (mp3 — the socket's
//! default —, opus, ...) are refused with an error so a client that forgets to ask for PCM is
//! caught. Faults can be injected: refused upgrades, a socket closed or stalled mid-utterance,
//! malformed frames, an error message.

use std::collections::VecDeque;
use std::ops::RangeInclusive;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::time::Instant;

use super::Latency;
use super::recorded::{LatencyMs, RecordedRequest, key_accepted, query_param};
use super::voice::{
    ChunkSizes, DEFAULT_MS_PER_CHAR, SampleEncoding, SyntheticVoice, encode, seed_from, wav_file,
    wav_header,
};

/// The key the fake accepts unless configured otherwise.
pub const DEFAULT_API_KEY: &str = "sk_sarvam_sim";

const LANGUAGES: [&str; 12] = [
    "bn-IN", "en-IN", "gu-IN", "hi-IN", "kn-IN", "ml-IN", "mr-IN", "od-IN", "or-IN", "pa-IN",
    "ta-IN", "te-IN",
];
const V2_SPEAKERS: [&str; 7] = [
    "anushka", "manisha", "vidya", "arya", "abhilash", "karun", "hitesh",
];
const V3_SPEAKERS: [&str; 25] = [
    "shubh", "aditya", "ritu", "priya", "neha", "rahul", "pooja", "rohan", "simran", "kavya",
    "amit", "dev", "ishita", "shreya", "ratan", "varun", "manan", "sumit", "roopa", "kabir",
    "aayan", "ashutosh", "advait", "amelia", "sophia",
];
const STREAM_RATES: [u32; 4] = [8000, 16_000, 22_050, 24_000];
const V3_REST_EXTRA_RATES: [u32; 3] = [32_000, 44_100, 48_000];

/// How the fake behaves.
#[derive(Debug, Clone)]
pub struct SarvamTtsFakeConfig {
    /// Accepted keys; empty accepts any non-empty key.
    pub api_keys: Vec<String>,
    /// `first_byte`: from text released to an idle synthesiser to its first audio;
    /// `per_chunk`: added between audio messages.
    pub latency: Latency,
    pub ms_per_char: u32,
    /// How much faster than real time the socket's audio is synthesised after its first byte
    /// (4: a second of speech every 250 ms); 0 sends it as fast as the socket takes it.
    pub times_real_time: u32,
    /// REST WAVs carry a `LIST` chunk before `data` (clients must not assume 44 bytes).
    pub wav_list_chunk: bool,
}

impl Default for SarvamTtsFakeConfig {
    fn default() -> Self {
        Self {
            api_keys: vec![DEFAULT_API_KEY.to_owned()],
            latency: Latency::NONE,
            ms_per_char: DEFAULT_MS_PER_CHAR,
            times_real_time: 0,
            wav_list_chunk: false,
        }
    }
}

#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Fixture {
    api_keys: Vec<String>,
    #[serde(flatten)]
    latency: LatencyMs,
    ms_per_char: u32,
    times_real_time: u32,
    wav_list_chunk: bool,
}

impl Default for Fixture {
    fn default() -> Self {
        let config = SarvamTtsFakeConfig::default();
        Self {
            api_keys: config.api_keys,
            latency: LatencyMs::default(),
            ms_per_char: config.ms_per_char,
            times_real_time: config.times_real_time,
            wav_list_chunk: config.wav_list_chunk,
        }
    }
}

impl SarvamTtsFakeConfig {
    /// Reads a fixture such as `fixtures/sim/sarvam_tts.json`; absent fields keep defaults.
    pub fn from_fixture(path: &Path) -> std::io::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        let fixture: Fixture = serde_json::from_str(&text)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        Ok(Self {
            api_keys: fixture.api_keys,
            latency: fixture.latency.into(),
            ms_per_char: fixture.ms_per_char,
            times_real_time: fixture.times_real_time,
            wav_list_chunk: fixture.wav_list_chunk,
        })
    }
}

/// A fault for the next socket opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamFault {
    /// Drop the socket (no close frame) after this many audio messages.
    CloseAfterChunks(usize),
    /// Stop reading and writing (no pongs either) after this many audio messages.
    StallAfterChunks(usize),
    /// Send garbage (non-JSON, unknown types, bad base64, a binary frame) before the audio.
    Malformed,
    /// Answer the first `text` with an error message.
    Error,
}

/// Everything the fake received, for assertions.
#[derive(Debug, Clone, Default)]
pub struct SarvamTtsReceived {
    /// Every WebSocket upgrade attempt, accepted or not.
    pub upgrades: Vec<RecordedRequest>,
    /// Every text message received on any socket, parsed (a non-JSON message as a string).
    pub messages: Vec<Value>,
    /// The text of every segment synthesised on any socket, in order: what left the buffer
    /// together (at `min_buffer_size` or a flush), cut at `max_chunk_length`.
    pub segments: Vec<String>,
    /// Every REST request and its body.
    pub rest_requests: Vec<(RecordedRequest, Value)>,
}

impl SarvamTtsReceived {
    /// Messages of one `type`.
    pub fn of_type(&self, kind: &str) -> Vec<&Value> {
        self.messages.iter().filter(|m| m["type"] == kind).collect()
    }

    /// All `text` pieces concatenated.
    pub fn text(&self) -> String {
        self.of_type("text")
            .iter()
            .filter_map(|m| m["data"]["text"].as_str())
            .collect()
    }
}

#[derive(Default)]
struct Faults {
    upgrades: VecDeque<u16>,
    rest: VecDeque<u16>,
    streams: VecDeque<StreamFault>,
}

struct Shared {
    config: SarvamTtsFakeConfig,
    received: Mutex<SarvamTtsReceived>,
    faults: Mutex<Faults>,
    open_sockets: AtomicUsize,
}

impl Shared {
    fn received(&self) -> MutexGuard<'_, SarvamTtsReceived> {
        self.received.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn faults(&self) -> MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Inspects and steers a running fake.
#[derive(Clone)]
pub struct SarvamTtsFakeHandle {
    shared: Arc<Shared>,
}

impl SarvamTtsFakeHandle {
    pub fn received(&self) -> SarvamTtsReceived {
        self.shared.received().clone()
    }

    /// Answer the next WebSocket upgrade with `status`.
    pub fn fail_next_upgrade(&self, status: u16) {
        self.shared.faults().upgrades.push_back(status);
    }

    /// Answer the next REST request with `status`.
    pub fn fail_next_rest(&self, status: u16) {
        self.shared.faults().rest.push_back(status);
    }

    /// Apply `fault` to the next socket opened.
    pub fn inject(&self, fault: StreamFault) {
        self.shared.faults().streams.push_back(fault);
    }

    /// WebSockets currently open.
    pub fn open_sockets(&self) -> usize {
        self.shared.open_sockets.load(Ordering::SeqCst)
    }
}

/// The fake's routes (`/text-to-speech/ws`, `/text-to-speech`) and a handle on it.
pub fn router(config: SarvamTtsFakeConfig) -> (Router, SarvamTtsFakeHandle) {
    let shared = Arc::new(Shared {
        config,
        received: Mutex::default(),
        faults: Mutex::default(),
        open_sockets: AtomicUsize::new(0),
    });
    let router = Router::new()
        .route("/text-to-speech/ws", get(websocket))
        .route("/text-to-speech", post(rest))
        .with_state(shared.clone());
    (router, SarvamTtsFakeHandle { shared })
}

/// Sarvam's error codes by status.
fn error_code(status: u16) -> &'static str {
    match status {
        403 => "invalid_api_key_error",
        422 => "unprocessable_entity_error",
        429 => "rate_limit_exceeded_error",
        500..=599 => "internal_server_error",
        _ => "invalid_request_error",
    }
}

fn http_error(status: u16, message: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = json!({"error": {
        "message": message,
        "code": error_code(status.as_u16()),
        "request_id": request_id(),
    }});
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

fn request_id() -> String {
    format!("20260101_{}", uuid::Uuid::new_v4())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Model {
    V2,
    V3,
}

impl Model {
    fn parse(name: &str) -> Result<Self, String> {
        match name {
            "bulbul:v2" => Ok(Model::V2),
            "bulbul:v3" | "bulbul:v3-beta" => Ok(Model::V3),
            "bulbul:v1" => Err("bulbul:v1 has been retired; use bulbul:v2 or bulbul:v3".into()),
            other => Err(format!("unknown model {other:?}")),
        }
    }

    fn speakers(self) -> &'static [&'static str] {
        match self {
            Model::V2 => &V2_SPEAKERS,
            Model::V3 => &V3_SPEAKERS,
        }
    }

    fn default_rate(self) -> u32 {
        match self {
            Model::V2 => 22_050,
            Model::V3 => 24_000,
        }
    }

    fn max_text(self) -> usize {
        match self {
            Model::V2 => 1500,
            Model::V3 => 2500,
        }
    }
}

fn number(object: &Map<String, Value>, field: &str) -> Result<Option<f64>, String> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .map(Some)
            .ok_or_else(|| format!("{field} must be a number")),
    }
}

fn in_range(object: &Map<String, Value>, field: &str, min: f64, max: f64) -> Result<(), String> {
    match number(object, field)? {
        Some(v) if !(min..=max).contains(&v) => {
            Err(format!("{field} must be between {min} and {max}"))
        }
        _ => Ok(()),
    }
}

/// Voice settings shared by REST and `config`: language, speaker for the model, and ranges.
fn check_voice(model: Model, object: &Map<String, Value>) -> Result<(), String> {
    let language = object
        .get("target_language_code")
        .or_else(|| object.get("language_code"))
        .and_then(Value::as_str)
        .ok_or("target_language_code is required")?;
    if !LANGUAGES.contains(&language) {
        return Err(format!(
            "target_language_code {language:?} is not supported"
        ));
    }
    if let Some(speaker) = object.get("speaker") {
        let speaker = speaker.as_str().ok_or("speaker must be a string")?;
        if speaker != speaker.to_lowercase() {
            return Err(format!(
                "Speaker {speaker:?} is not valid: speaker names are lowercase"
            ));
        }
        if !model.speakers().contains(&speaker) {
            return Err(format!(
                "Speaker {speaker:?} is not compatible with this model"
            ));
        }
    }
    match model {
        Model::V3 => {
            // v3 has no pitch or loudness control. The official SDK's `configure` still sends
            // its defaults (pitch 0.0, loudness 1.0), which leave the voice unchanged and are
            // accepted; any other value asks for something v3 cannot do.
            for (field, neutral) in [("pitch", 0.0), ("loudness", 1.0)] {
                match number(object, field)? {
                    Some(v) if v != neutral => {
                        return Err(format!("{field} is not supported for bulbul:v3"));
                    }
                    _ => {}
                }
            }
            in_range(object, "pace", 0.5, 2.0)?;
            in_range(object, "temperature", 0.01, 1.0)?;
        }
        Model::V2 => {
            in_range(object, "pitch", -0.75, 0.75)?;
            in_range(object, "loudness", 0.3, 3.0)?;
            in_range(object, "pace", 0.3, 3.0)?;
        }
    }
    Ok(())
}

/// `speech_sample_rate` as a number or a numeric string, checked against `allowed`.
fn sample_rate(model: Model, object: &Map<String, Value>, allowed: &[u32]) -> Result<u32, String> {
    let rate = match object.get("speech_sample_rate") {
        None | Some(Value::Null) => return Ok(model.default_rate()),
        Some(Value::String(s)) => s.parse::<u32>().ok(),
        Some(v) => v.as_u64().and_then(|n| u32::try_from(n).ok()),
    };
    rate.filter(|r| allowed.contains(r))
        .ok_or_else(|| format!("speech_sample_rate must be one of {allowed:?}"))
}

/// A codec the fake can produce: raw samples, optionally behind a WAV header.
#[derive(Debug, Clone, Copy)]
struct Codec {
    encoding: SampleEncoding,
    wav: bool,
    content_type: &'static str,
}

fn codec(name: &str) -> Result<Codec, String> {
    let (encoding, wav, content_type) = match name {
        "wav" => (SampleEncoding::Pcm16, true, "audio/wav"),
        "linear16" => (SampleEncoding::Pcm16, false, "audio/pcm"),
        "mulaw" => (SampleEncoding::Mulaw, false, "audio/mulaw"),
        "alaw" => (SampleEncoding::Alaw, false, "audio/alaw"),
        "mp3" | "opus" | "flac" | "aac" => {
            return Err(format!(
                "output_audio_codec {name:?}: the simulator only produces wav, linear16, mulaw and alaw"
            ));
        }
        other => return Err(format!("unknown output_audio_codec {other:?}")),
    };
    Ok(Codec {
        encoding,
        wav,
        content_type,
    })
}

fn key_from(headers: &HeaderMap, protocols: &[String]) -> Option<String> {
    headers
        .get("api-subscription-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
        .or_else(|| {
            protocols
                .iter()
                .find_map(|p| p.strip_prefix("api-subscription-key.").map(str::to_owned))
        })
}

async fn websocket(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    upgrade: WebSocketUpgrade,
) -> Response {
    let mut record = RecordedRequest::new("/text-to-speech/ws", &headers, query.as_deref());
    let protocols: Vec<String> = upgrade
        .requested_protocols()
        .filter_map(|p| p.to_str().ok())
        .flat_map(|p| {
            p.split(',')
                .map(|s| s.trim().to_owned())
                .collect::<Vec<_>>()
        })
        .collect();
    let key = key_from(&headers, &protocols);
    let model =
        Model::parse(&query_param(query.as_deref(), "model").unwrap_or_else(|| "bulbul:v2".into()));
    let refusal = if let Some(status) = shared.faults().upgrades.pop_front() {
        Some((status, "injected by the test".to_owned()))
    } else if !key
        .as_deref()
        .is_some_and(|k| key_accepted(&shared.config.api_keys, k))
    {
        Some((403, "Invalid API key or API key not provided".to_owned()))
    } else if let Err(message) = &model {
        Some((400, message.clone()))
    } else {
        None
    };
    if let Some((status, message)) = refusal {
        let response = http_error(status, &message);
        record.status = response.status().as_u16();
        shared.received().upgrades.push(record);
        return response;
    }
    record.status = 101;
    shared.received().upgrades.push(record);
    let completion_events =
        query_param(query.as_deref(), "send_completion_event").is_none_or(|v| v == "true");
    let fault = shared.faults().streams.pop_front();
    let mut upgrade = upgrade
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(1 << 20);
    if let Some(protocol) = protocols
        .iter()
        .find(|p| p.starts_with("api-subscription-key."))
    {
        upgrade = upgrade.protocols([protocol.clone()]);
    }
    let model = model.unwrap_or(Model::V2);
    upgrade.on_upgrade(move |socket| async move {
        shared.open_sockets.fetch_add(1, Ordering::SeqCst);
        let connection = Connection {
            shared: shared.clone(),
            socket,
            model,
            completion_events,
            config: None,
            buffer: String::new(),
            work: VecDeque::new(),
            voice: None,
            next_at: None,
            idle: true,
            chunks_sent: 0,
            fault,
            sizes: ChunkSizes::new(seed_from(&request_id())),
            request_id: request_id(),
        };
        connection.run().await;
        shared.open_sockets.fetch_sub(1, Ordering::SeqCst);
    })
}

/// The documented ranges of the buffering settings (Sarvam's how-to pages).
const MIN_BUFFER_SIZE: RangeInclusive<u64> = 30..=200;
const MAX_CHUNK_LENGTH: RangeInclusive<u64> = 50..=500;
/// Output bitrates the socket accepts (they only matter for compressed codecs).
const BITRATES: [&str; 5] = ["32k", "64k", "96k", "128k", "192k"];

/// A socket's accepted `config`.
#[derive(Debug, Clone, Copy)]
struct StreamConfig {
    codec: Codec,
    sample_rate: u32,
    /// Characters held before synthesis starts (unless a `flush` comes first).
    min_buffer_size: usize,
    /// Most characters synthesised as one segment.
    max_chunk_length: usize,
}

/// An optional integer setting within `range`, or its default.
fn setting(
    object: &Map<String, Value>,
    field: &str,
    range: RangeInclusive<u64>,
    default: u64,
) -> Result<usize, String> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(default as usize),
        Some(v) => v
            .as_u64()
            .filter(|n| range.contains(n))
            .map(|n| n as usize)
            .ok_or_else(|| {
                format!(
                    "{field} must be an integer from {} to {}",
                    range.start(),
                    range.end()
                )
            }),
    }
}

fn parse_config(url_model: Model, data: Option<&Value>) -> Result<StreamConfig, String> {
    let object = data
        .and_then(Value::as_object)
        .ok_or("config needs a data object")?;
    // Some clients (Pipecat, the SDK) repeat the model in the config; it must be a known one.
    let model = match object.get("model") {
        None | Some(Value::Null) => url_model,
        Some(v) => Model::parse(v.as_str().ok_or("model must be a string")?)?,
    };
    check_voice(model, object)?;
    if object.get("speaker").is_none() {
        return Err("speaker is required".into());
    }
    let sample_rate = sample_rate(model, object, &STREAM_RATES)?;
    let codec = codec(
        object
            .get("output_audio_codec")
            .and_then(Value::as_str)
            .unwrap_or("mp3"),
    )?;
    if let Some(bitrate) = object.get("output_audio_bitrate")
        && !bitrate.as_str().is_some_and(|b| BITRATES.contains(&b))
    {
        return Err(format!("output_audio_bitrate must be one of {BITRATES:?}"));
    }
    if let Some(v) = object.get("enable_preprocessing")
        && !v.is_boolean()
    {
        return Err("enable_preprocessing must be a boolean".into());
    }
    Ok(StreamConfig {
        codec,
        sample_rate,
        min_buffer_size: setting(object, "min_buffer_size", MIN_BUFFER_SIZE, 50)?,
        max_chunk_length: setting(object, "max_chunk_length", MAX_CHUNK_LENGTH, 150)?,
    })
}

/// Cuts released text into synthesis segments of at most `max` characters: at the last
/// sentence end that fits, else the last space, else anywhere (Sarvam splits "long text into
/// manageable sentence chunks based on character length").
fn segments(text: &str, max: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = text;
    while rest.chars().count() > max {
        let limit = rest.char_indices().nth(max).map_or(rest.len(), |(i, _)| i);
        let head = &rest[..limit];
        let sentence_end = head
            .char_indices()
            .filter(|&(i, c)| {
                matches!(c, '.' | '!' | '?' | '।' | '\n')
                    && head[i + c.len_utf8()..].starts_with(char::is_whitespace)
            })
            .map(|(i, c)| i + c.len_utf8())
            .next_back();
        let cut = sentence_end
            .or_else(|| head.rfind(char::is_whitespace).filter(|&i| i > 0))
            .unwrap_or(limit);
        out.push(rest[..cut].to_owned());
        rest = &rest[cut..];
    }
    if !rest.is_empty() {
        out.push(rest.to_owned());
    }
    out
}

enum Hangup {
    Gone,
    Close,
    Stall,
}

/// What the socket's synthesiser does next, in order.
#[derive(Debug)]
enum Work {
    /// Released text of at most `max_chunk_length` characters, synthesised as one segment.
    Segment(String),
    /// A flush's `final` event: due once everything released before the flush has been sent.
    Final,
}

/// One socket: text is held in `buffer` until it reaches `min_buffer_size` characters or a
/// `flush` comes, then released as segments that one synthesiser speaks in order. From idle,
/// the first audio waits the first-byte latency; after it, audio streams at `times_real_time`
/// (each chunk is sent once it would have been synthesised), so a reply's later segments are
/// ready long before they play, as on the real service.
struct Connection {
    shared: Arc<Shared>,
    socket: WebSocket,
    model: Model,
    completion_events: bool,
    config: Option<StreamConfig>,
    /// Text received but not yet released for synthesis.
    buffer: String,
    work: VecDeque<Work>,
    /// The voice speaking the current segment (its timeline spans the socket's whole output).
    voice: Option<SyntheticVoice>,
    next_at: Option<Instant>,
    /// Nothing is being synthesised: the next audio waits the first-byte latency and, for
    /// `wav`, starts with a header.
    idle: bool,
    chunks_sent: usize,
    fault: Option<StreamFault>,
    sizes: ChunkSizes,
    request_id: String,
}

impl Connection {
    async fn run(mut self) {
        let outcome = loop {
            let step = tokio::select! {
                message = self.socket.recv() => match message {
                    Some(Ok(Message::Text(text))) => self.on_text(text.as_str()).await,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => Err(Hangup::Gone),
                    Some(Ok(_)) => Ok(()),
                },
                () = sleep_until(self.next_at) => self.emit().await,
            };
            if let Err(hangup) = step {
                break hangup;
            }
        };
        if let Hangup::Stall = outcome {
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    }

    async fn send(&mut self, value: Value) -> Result<(), Hangup> {
        self.socket
            .send(Message::text(value.to_string()))
            .await
            .map_err(|_| Hangup::Gone)
    }

    async fn error(&mut self, message: &str) -> Result<(), Hangup> {
        self.send(json!({"type": "error", "data": {"message": message, "code": 400}}))
            .await
    }

    async fn on_text(&mut self, text: &str) -> Result<(), Hangup> {
        let parsed: Result<Value, _> = serde_json::from_str(text);
        self.shared.received().messages.push(
            parsed
                .as_ref()
                .map_or_else(|_| Value::String(text.to_owned()), Clone::clone),
        );
        let Ok(message) = parsed else {
            return self.error("Invalid message: not JSON").await;
        };
        let kind = message["type"].as_str().unwrap_or_default();
        if kind == "ping" {
            return Ok(());
        }
        if kind == "config" {
            return match parse_config(self.model, message.get("data")) {
                Ok(config) => self.configure(config).await,
                Err(e) => self.error(&e).await,
            };
        }
        if !matches!(kind, "text" | "flush") {
            return self.error(&format!("Unknown message type {kind:?}")).await;
        }
        let Some(config) = self.config else {
            return self
                .error("Send a config message before text or flush")
                .await;
        };
        if kind == "flush" {
            // Whatever is held goes now, however short; the final follows its audio.
            self.release(config);
            if self.completion_events {
                self.work.push_back(Work::Final);
            }
            self.schedule();
            return Ok(());
        }
        let Some(piece) = message["data"]["text"].as_str() else {
            return self.error("text message needs data.text").await;
        };
        if self.fault == Some(StreamFault::Error) {
            self.fault = None;
            return self.error("Injected failure").await;
        }
        if piece.chars().count() > 2500 {
            return self
                .error("Text too long: at most 2500 characters per message")
                .await;
        }
        self.buffer.push_str(piece);
        // Below the threshold the text waits for more text or a flush.
        if self.buffer.chars().count() >= config.min_buffer_size {
            self.release(config);
            self.schedule();
        }
        Ok(())
    }

    async fn configure(&mut self, config: StreamConfig) -> Result<(), Hangup> {
        if !self.idle
            && self
                .voice
                .as_ref()
                .is_some_and(|v| v.sample_rate() != config.sample_rate)
        {
            return self
                .error("cannot change speech_sample_rate while synthesising")
                .await;
        }
        if self
            .voice
            .as_ref()
            .is_none_or(|v| v.sample_rate() != config.sample_rate)
        {
            self.voice = Some(SyntheticVoice::new(
                config.sample_rate,
                self.shared.config.ms_per_char,
            ));
        }
        self.config = Some(config);
        Ok(())
    }

    /// Hands the held text to the synthesiser, cut into segments.
    fn release(&mut self, config: StreamConfig) {
        if self.buffer.is_empty() {
            return;
        }
        let text = std::mem::take(&mut self.buffer);
        for segment in segments(&text, config.max_chunk_length) {
            self.work.push_back(Work::Segment(segment));
        }
    }

    /// Wakes an idle synthesiser for new work: audio after the first-byte latency, a lone final
    /// at once.
    fn schedule(&mut self) {
        if self.next_at.is_some() {
            return;
        }
        let delay = match self.work.front() {
            None => return,
            Some(Work::Segment(_)) => self.shared.config.latency.first_byte,
            Some(Work::Final) => Duration::ZERO,
        };
        self.next_at = Some(Instant::now() + delay);
    }

    /// Sends the next chunk of audio (starting the next segment if the current one is done),
    /// and any finals that are due, then schedules the next chunk.
    async fn emit(&mut self) -> Result<(), Hangup> {
        let due = self.next_at.take().unwrap_or_else(Instant::now);
        let Some(config) = self.config else {
            return Ok(());
        };
        if self.fault == Some(StreamFault::Malformed) {
            self.fault = None;
            self.send_garbage().await?;
        }
        while self.voice.as_ref().is_none_or(|v| v.remaining() == 0) {
            match self.work.pop_front() {
                Some(Work::Segment(text)) => {
                    if let Some(voice) = self.voice.as_mut() {
                        voice.say(&text);
                    }
                    self.shared.received().segments.push(text);
                }
                Some(Work::Final) => self.send_final().await?,
                None => {
                    self.idle = true;
                    return Ok(());
                }
            }
        }
        let Some(voice) = self.voice.as_mut() else {
            return Ok(());
        };
        let mut samples = Vec::new();
        voice.render(self.sizes.next_samples(voice.sample_rate()), &mut samples);
        let rate = voice.sample_rate();
        let mut data = if config.codec.wav && self.idle {
            wav_header(config.codec.encoding, config.sample_rate, u32::MAX, false)
        } else {
            Vec::new()
        };
        encode(&samples, config.codec.encoding, &mut data);
        self.idle = false;
        let message = json!({"type": "audio", "data": {
            "audio": STANDARD.encode(&data),
            "content_type": config.codec.content_type,
            "request_id": self.request_id,
        }});
        self.send(message).await?;
        self.chunks_sent += 1;
        match self.fault {
            Some(StreamFault::CloseAfterChunks(n)) if self.chunks_sent >= n => {
                return Err(Hangup::Close);
            }
            Some(StreamFault::StallAfterChunks(n)) if self.chunks_sent >= n => {
                return Err(Hangup::Stall);
            }
            _ => {}
        }
        // The final of a flush goes right after the last audio before it.
        while self.voice.as_ref().is_some_and(|v| v.remaining() == 0)
            && matches!(self.work.front(), Some(Work::Final))
        {
            self.work.pop_front();
            self.send_final().await?;
        }
        let more = self.voice.as_ref().is_some_and(|v| v.remaining() > 0) || !self.work.is_empty();
        if !more {
            self.idle = true;
            return Ok(());
        }
        // The next chunk is ready once it has been synthesised: the stream runs ahead of real
        // time by the configured factor, counted from this chunk's schedule so it never drifts.
        let speed = self.shared.config.times_real_time;
        let synthesis = if speed == 0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(samples.len() as f64 / f64::from(rate) / f64::from(speed))
        };
        // (A chunk that is already due after a slow send goes at once: it was ready.)
        self.next_at = Some(due + synthesis + self.shared.config.latency.per_chunk);
        Ok(())
    }

    async fn send_final(&mut self) -> Result<(), Hangup> {
        self.send(json!({"type": "event", "data": {"event_type": "final"}}))
            .await
    }

    async fn send_garbage(&mut self) -> Result<(), Hangup> {
        self.socket
            .send(Message::text("{{{ not json"))
            .await
            .map_err(|_| Hangup::Gone)?;
        self.send(json!({"type": "mystery", "data": {}})).await?;
        self.send(json!({"type": "audio", "data": {"audio": "@@not base64@@"}}))
            .await?;
        self.send(json!({"type": "audio"})).await?;
        self.send(json!({"data": {"audio": ""}})).await?;
        self.send(json!({"type": "event", "data": {"event_type": "something_else"}}))
            .await?;
        self.socket
            .send(Message::Binary(Bytes::from_static(&[9, 9, 9])))
            .await
            .map_err(|_| Hangup::Gone)
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => crate::sim::precise_timer::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

/// `POST /text-to-speech`.
async fn rest(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let mut record = RecordedRequest::new("/text-to-speech", &headers, query.as_deref());
    let parsed: Result<Value, _> = serde_json::from_slice(&body);
    let response = match &parsed {
        Ok(value) => rest_response(&shared, &headers, value).await,
        Err(_)
            if !key_from(&headers, &[])
                .is_some_and(|k| key_accepted(&shared.config.api_keys, &k)) =>
        {
            http_error(403, "Invalid API key or API key not provided")
        }
        Err(e) => http_error(400, &format!("invalid JSON body: {e}")),
    };
    record.status = response.status().as_u16();
    let logged =
        parsed.unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    shared.received().rest_requests.push((record, logged));
    response
}

async fn rest_response(shared: &Arc<Shared>, headers: &HeaderMap, body: &Value) -> Response {
    if !key_from(headers, &[]).is_some_and(|k| key_accepted(&shared.config.api_keys, &k)) {
        return http_error(403, "Invalid API key or API key not provided");
    }
    if let Some(status) = shared.faults().rest.pop_front() {
        return http_error(status, "injected by the test");
    }
    let Some(object) = body.as_object() else {
        return http_error(422, "body must be a JSON object");
    };
    let texts: Vec<&str> = match (object.get("text"), object.get("inputs")) {
        (Some(Value::String(text)), _) => vec![text.as_str()],
        (None, Some(Value::Array(inputs))) if (1..=3).contains(&inputs.len()) => {
            match inputs.iter().map(Value::as_str).collect::<Option<Vec<_>>>() {
                Some(texts) => texts,
                None => return http_error(422, "inputs must be strings"),
            }
        }
        _ => return http_error(422, "text is required"),
    };
    if object.get("target_language_code").is_none() && object.get("language_code").is_none() {
        return http_error(422, "target_language_code is required");
    }
    let model = match Model::parse(
        object
            .get("model")
            .and_then(Value::as_str)
            .unwrap_or("bulbul:v2"),
    ) {
        Ok(model) => model,
        Err(message) => return http_error(400, &message),
    };
    if let Err(message) = check_voice(model, object) {
        return http_error(400, &message);
    }
    let mut rates = STREAM_RATES.to_vec();
    if model == Model::V3 {
        rates.extend(V3_REST_EXTRA_RATES);
    }
    let rate = match sample_rate(model, object, &rates) {
        Ok(rate) => rate,
        Err(message) => return http_error(400, &message),
    };
    let codec = match codec(
        object
            .get("output_audio_codec")
            .and_then(Value::as_str)
            .unwrap_or("wav"),
    ) {
        Ok(codec) => codec,
        Err(message) => return http_error(400, &message),
    };
    if texts.iter().any(|t| t.trim().is_empty()) {
        return http_error(400, "text must not be empty");
    }
    if let Some(long) = texts.iter().find(|t| t.chars().count() > model.max_text()) {
        return http_error(
            400,
            &format!(
                "text too long: {} characters, at most {}",
                long.chars().count(),
                model.max_text()
            ),
        );
    }
    if !shared.config.latency.first_byte.is_zero() {
        tokio::time::sleep(shared.config.latency.first_byte).await;
    }
    let ms_per_char = shared.config.ms_per_char;
    let audios: Vec<String> = texts
        .iter()
        .map(|text| {
            let audio = if codec.wav {
                wav_file(
                    text,
                    codec.encoding,
                    rate,
                    ms_per_char,
                    shared.config.wav_list_chunk,
                )
            } else {
                super::voice::speak_all(text, codec.encoding, rate, ms_per_char)
            };
            STANDARD.encode(audio)
        })
        .collect();
    let body = json!({"request_id": request_id(), "audios": audios});
    (
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}
