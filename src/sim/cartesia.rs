//! A fake Cartesia: `/tts/websocket` (contexts, continuations, cancel, flush, timestamps) and
//! `POST /tts/bytes`, speaking the synthetic voice in the encoding and rate asked for.
//!
//! It rejects what Cartesia rejects: no or a wrong key (401 on the upgrade; `Authorization:
//! Bearer`, `X-API-Key` and the `api_key` query are accepted), no `Cartesia-Version` (400), a
//! context whose fields change between inputs, a non-`raw` container on the socket, unknown
//! encodings or rates, reuse of a finished context id, and (optionally) more concurrent contexts
//! than the plan allows (an `error` with `status_code: 429`). Faults can be injected to test a
//! client's recovery: refused upgrades, a socket closed or stalled mid-turn, malformed frames.

use std::collections::{HashSet, VecDeque};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
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
    ChunkSizes, DEFAULT_MS_PER_CHAR, SampleEncoding, SpokenWord, SyntheticVoice, encode, seed_from,
    wav_header,
};

/// The key the fake accepts unless configured otherwise.
pub const DEFAULT_API_KEY: &str = "sk_car_sim";
const SAMPLE_RATES: [u32; 6] = [8000, 16_000, 22_050, 24_000, 44_100, 48_000];

/// How the fake behaves.
#[derive(Debug, Clone)]
pub struct CartesiaFakeConfig {
    /// Accepted keys; empty accepts any non-empty key.
    pub api_keys: Vec<String>,
    pub latency: Latency,
    /// Speaking rate of the synthetic voice.
    pub ms_per_char: u32,
    /// Active contexts (WebSocket contexts with work in flight plus `/tts/bytes` requests) the
    /// account may have; more are answered with 429.
    pub max_concurrent_contexts: Option<usize>,
    /// Cut PCM16 chunks at odd byte counts (tests a client's whole-sample handling).
    pub odd_byte_chunks: bool,
    /// Send errors in the old `{"error": "..."}` shape instead of `title`/`message`.
    pub legacy_errors: bool,
}

impl Default for CartesiaFakeConfig {
    fn default() -> Self {
        Self {
            api_keys: vec![DEFAULT_API_KEY.to_owned()],
            latency: Latency::NONE,
            ms_per_char: DEFAULT_MS_PER_CHAR,
            max_concurrent_contexts: None,
            odd_byte_chunks: false,
            legacy_errors: false,
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
    max_concurrent_contexts: Option<usize>,
    odd_byte_chunks: bool,
    legacy_errors: bool,
}

impl Default for Fixture {
    fn default() -> Self {
        let config = CartesiaFakeConfig::default();
        Self {
            api_keys: config.api_keys,
            latency: LatencyMs::default(),
            ms_per_char: config.ms_per_char,
            max_concurrent_contexts: None,
            odd_byte_chunks: false,
            legacy_errors: false,
        }
    }
}

impl CartesiaFakeConfig {
    /// Reads a fixture such as `fixtures/sim/cartesia.json`; absent fields keep their defaults.
    pub fn from_fixture(path: &Path) -> std::io::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        let fixture: Fixture = serde_json::from_str(&text)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        Ok(Self {
            api_keys: fixture.api_keys,
            latency: fixture.latency.into(),
            ms_per_char: fixture.ms_per_char,
            max_concurrent_contexts: fixture.max_concurrent_contexts,
            odd_byte_chunks: fixture.odd_byte_chunks,
            legacy_errors: fixture.legacy_errors,
        })
    }
}

/// A fault for the next context opened on any socket.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContextFault {
    /// Drop the socket (no close frame) after this many chunks of the context.
    CloseAfterChunks(usize),
    /// Stop reading and writing (no pongs either) after this many chunks.
    StallAfterChunks(usize),
    /// Send garbage (non-JSON, unknown types, bad base64, a binary frame) before the audio.
    Malformed,
    /// Answer the context's first input with an error frame of this status.
    Error { status: u16 },
    /// Keep streaming after `cancel`, like audio that was already in flight.
    IgnoreCancel,
}

/// Everything the fake received, for assertions.
#[derive(Debug, Clone, Default)]
pub struct CartesiaReceived {
    /// Every WebSocket upgrade attempt, accepted or not.
    pub upgrades: Vec<RecordedRequest>,
    /// Every text message received on any socket, parsed (a non-JSON message as a string).
    pub messages: Vec<Value>,
    /// Context ids in the order they were opened.
    pub context_ids: Vec<String>,
    /// Context ids cancelled, in order.
    pub cancels: Vec<String>,
    /// Every `/tts/bytes` request and its body.
    pub bytes_requests: Vec<(RecordedRequest, Value)>,
}

impl CartesiaReceived {
    /// The inputs (generation requests) of one context, in order.
    pub fn inputs_of(&self, context_id: &str) -> Vec<&Value> {
        self.messages
            .iter()
            .filter(|m| m["context_id"] == context_id && m.get("cancel").is_none())
            .collect()
    }

    /// The transcript of a context: its inputs' transcripts concatenated verbatim.
    pub fn transcript_of(&self, context_id: &str) -> String {
        self.inputs_of(context_id)
            .iter()
            .filter_map(|m| m["transcript"].as_str())
            .collect()
    }
}

#[derive(Default)]
struct Faults {
    upgrades: VecDeque<u16>,
    bytes: VecDeque<u16>,
    contexts: VecDeque<ContextFault>,
}

struct Shared {
    config: CartesiaFakeConfig,
    received: Mutex<CartesiaReceived>,
    faults: Mutex<Faults>,
    active: AtomicUsize,
    open_sockets: AtomicUsize,
}

impl Shared {
    fn received(&self) -> MutexGuard<'_, CartesiaReceived> {
        self.received.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn faults(&self) -> MutexGuard<'_, Faults> {
        self.faults.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes an account concurrency slot; `None` when the plan's limit is reached.
    fn acquire(self: &Arc<Self>) -> Option<ActiveSlot> {
        let limit = self.config.max_concurrent_contexts.unwrap_or(usize::MAX);
        self.active
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| {
                (n < limit).then_some(n + 1)
            })
            .ok()
            .map(|_| ActiveSlot(self.clone()))
    }
}

/// One active context; released when dropped.
struct ActiveSlot(Arc<Shared>);

impl Drop for ActiveSlot {
    fn drop(&mut self) {
        self.0.active.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Inspects and steers a running fake.
#[derive(Clone)]
pub struct CartesiaFakeHandle {
    shared: Arc<Shared>,
}

impl CartesiaFakeHandle {
    /// A snapshot of everything received so far.
    pub fn received(&self) -> CartesiaReceived {
        self.shared.received().clone()
    }

    /// Answer the next WebSocket upgrade with `status` instead of accepting it.
    pub fn fail_next_upgrade(&self, status: u16) {
        self.shared.faults().upgrades.push_back(status);
    }

    /// Answer the next `/tts/bytes` request with `status`.
    pub fn fail_next_bytes(&self, status: u16) {
        self.shared.faults().bytes.push_back(status);
    }

    /// Apply `fault` to the next context opened.
    pub fn inject(&self, fault: ContextFault) {
        self.shared.faults().contexts.push_back(fault);
    }

    /// Contexts and bytes requests currently counted against the concurrency limit.
    pub fn active_contexts(&self) -> usize {
        self.shared.active.load(Ordering::SeqCst)
    }

    /// WebSockets currently open.
    pub fn open_sockets(&self) -> usize {
        self.shared.open_sockets.load(Ordering::SeqCst)
    }
}

/// The fake's routes (`/tts/websocket`, `/tts/bytes`) and a handle on it.
pub fn router(config: CartesiaFakeConfig) -> (Router, CartesiaFakeHandle) {
    let shared = Arc::new(Shared {
        config,
        received: Mutex::default(),
        faults: Mutex::default(),
        active: AtomicUsize::new(0),
        open_sockets: AtomicUsize::new(0),
    });
    let router = Router::new()
        .route("/tts/websocket", get(websocket))
        .route("/tts/bytes", post(bytes))
        .with_state(shared.clone());
    (router, CartesiaFakeHandle { shared })
}

fn http_error(status: u16, title: &str, message: &str, code: &str) -> Response {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = json!({
        "title": title,
        "message": message,
        "error_code": code,
        "status_code": status.as_u16(),
        "request_id": uuid::Uuid::new_v4().to_string(),
    });
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

/// The gateway's answer to a request without a valid key or version, if any.
fn refusal(
    config: &CartesiaFakeConfig,
    headers: &HeaderMap,
    query: Option<&str>,
) -> Option<Response> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    // A query key wins over headers (browsers cannot set headers).
    let key = query_param(query, "api_key").or_else(|| {
        header("authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .or_else(|| header("x-api-key"))
            .map(str::to_owned)
    });
    match key {
        None => {
            return Some(http_error(
                401,
                "Unauthorized",
                "No API key: send Authorization: Bearer <key> or X-API-Key",
                "missing_api_key",
            ));
        }
        Some(key) if !key_accepted(&config.api_keys, &key) => {
            return Some(http_error(
                401,
                "Unauthorized",
                "Invalid API key",
                "invalid_api_key",
            ));
        }
        Some(_) => {}
    }
    let version = query_param(query, "cartesia_version")
        .or_else(|| header("cartesia-version").map(str::to_owned));
    match version {
        None => Some(http_error(
            400,
            "Bad Request",
            "Cartesia-Version header is required",
            "missing_version",
        )),
        Some(v)
            if time::Date::parse(
                &v,
                time::macros::format_description!("[year]-[month]-[day]"),
            )
            .is_err() =>
        {
            Some(http_error(
                400,
                "Bad Request",
                &format!("invalid Cartesia-Version {v:?}: expected YYYY-MM-DD"),
                "invalid_version",
            ))
        }
        Some(_) => None,
    }
}

async fn websocket(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    upgrade: WebSocketUpgrade,
) -> Response {
    let mut record = RecordedRequest::new("/tts/websocket", &headers, query.as_deref());
    let injected = shared.faults().upgrades.pop_front();
    let refused = match injected {
        Some(status) => Some(http_error(
            status,
            "Injected failure",
            "injected by the test",
            "injected",
        )),
        None => refusal(&shared.config, &headers, query.as_deref()),
    };
    if let Some(response) = refused {
        record.status = response.status().as_u16();
        shared.received().upgrades.push(record);
        return response;
    }
    record.status = 101;
    shared.received().upgrades.push(record);
    upgrade
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(1 << 20)
        .on_upgrade(move |socket| async move {
            shared.open_sockets.fetch_add(1, Ordering::SeqCst);
            let connection = Connection {
                shared: shared.clone(),
                socket,
                contexts: Vec::new(),
                finished: HashSet::new(),
                next_flush_id: 0,
            };
            connection.run().await;
            shared.open_sockets.fetch_sub(1, Ordering::SeqCst);
        })
}

/// A validated generation request.
struct Input {
    context_id: String,
    transcript: String,
    more: bool,
    flush: bool,
    /// Every field that must not change within a context.
    identity: Map<String, Value>,
    encoding: SampleEncoding,
    sample_rate: u32,
    timestamps: bool,
}

/// Why an input was refused.
struct Refusal {
    status: u16,
    title: &'static str,
    message: String,
    code: &'static str,
}

fn refuse(message: impl Into<String>, code: &'static str) -> Refusal {
    Refusal {
        status: 400,
        title: "Invalid request",
        message: message.into(),
        code,
    }
}

/// Checks one generation request (`container` allowed: `raw` only on the socket).
fn parse_generation(
    object: &Map<String, Value>,
    websocket: bool,
) -> Result<(String, SampleEncoding, u32, bool), Refusal> {
    match object.get("model_id").and_then(Value::as_str) {
        Some(m) if m.starts_with("sonic") => {}
        Some(m) => return Err(refuse(format!("model {m:?} not found"), "model_not_found")),
        None => return Err(refuse("model_id is required", "invalid_request")),
    }
    let transcript = match object.get("transcript") {
        Some(Value::String(t)) => t.clone(),
        _ => {
            return Err(refuse(
                "transcript is required and must be a string",
                "invalid_request",
            ));
        }
    };
    let voice_id = match object.get("voice") {
        Some(Value::String(id)) => Some(id.as_str()),
        Some(Value::Object(v)) => match v.get("mode").and_then(Value::as_str) {
            None | Some("id") => v.get("id").and_then(Value::as_str),
            Some(other) => {
                return Err(refuse(
                    format!("voice mode {other:?} is not supported"),
                    "invalid_voice",
                ));
            }
        },
        _ => None,
    };
    match voice_id {
        Some(id) if uuid::Uuid::try_parse(id).is_ok() => {}
        Some(id) => return Err(refuse(format!("voice {id:?} not found"), "voice_not_found")),
        None => {
            return Err(refuse(
                "voice is required: {\"mode\": \"id\", \"id\": ...}",
                "invalid_voice",
            ));
        }
    }
    if let Some(language) = object.get("language") {
        match language.as_str() {
            Some(l) if l.len() == 2 && l.bytes().all(|b| b.is_ascii_lowercase()) => {}
            _ => {
                return Err(refuse(
                    format!("unsupported language {language}"),
                    "invalid_language",
                ));
            }
        }
    }
    let Some(format) = object.get("output_format").and_then(Value::as_object) else {
        return Err(refuse("output_format is required", "invalid_output_format"));
    };
    let container = format
        .get("container")
        .and_then(Value::as_str)
        .unwrap_or("");
    let allowed = if websocket {
        &["raw"][..]
    } else {
        &["raw", "wav", "mp3"][..]
    };
    if !allowed.contains(&container) {
        return Err(refuse(
            format!("container {container:?} is not supported here (expected one of {allowed:?})"),
            "invalid_output_format",
        ));
    }
    if container == "mp3" {
        return Err(refuse(
            "the simulator does not encode mp3",
            "invalid_output_format",
        ));
    }
    let encoding = match format.get("encoding").and_then(Value::as_str) {
        Some("pcm_s16le") => SampleEncoding::Pcm16,
        Some("pcm_f32le") => SampleEncoding::F32,
        Some("pcm_mulaw") => SampleEncoding::Mulaw,
        Some("pcm_alaw") => SampleEncoding::Alaw,
        other => {
            return Err(refuse(
                format!("unsupported encoding {other:?}"),
                "invalid_output_format",
            ));
        }
    };
    let rate = format
        .get("sample_rate")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    let Some(rate) = u32::try_from(rate)
        .ok()
        .filter(|r| SAMPLE_RATES.contains(r))
    else {
        return Err(refuse(
            format!(
                "unsupported sample_rate {}",
                format.get("sample_rate").unwrap_or(&Value::Null)
            ),
            "invalid_output_format",
        ));
    };
    if let Some(delay) = object.get("max_buffer_delay_ms")
        && delay.as_u64().is_none_or(|d| d > 5000)
    {
        {
            return Err(refuse(
                "max_buffer_delay_ms must be 0..=5000",
                "invalid_request",
            ));
        }
    }
    for flag in [
        "add_timestamps",
        "continue",
        "flush",
        "add_phoneme_timestamps",
    ] {
        if object.get(flag).is_some_and(|v| !v.is_boolean()) {
            return Err(refuse(
                format!("{flag} must be a boolean"),
                "invalid_request",
            ));
        }
    }
    let timestamps = object
        .get("add_timestamps")
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok((transcript, encoding, rate, timestamps))
}

fn parse_input(object: &Map<String, Value>) -> Result<Input, Refusal> {
    let (transcript, encoding, sample_rate, timestamps) = parse_generation(object, true)?;
    let context_id = match object.get("context_id").and_then(Value::as_str) {
        Some(id) if !id.is_empty() => id.to_owned(),
        _ => return Err(refuse("context_id is required", "invalid_request")),
    };
    let mut identity = object.clone();
    for field in ["transcript", "continue", "context_id", "flush", "duration"] {
        identity.remove(field);
    }
    Ok(Input {
        context_id,
        transcript,
        more: object
            .get("continue")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        flush: object
            .get("flush")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        identity,
        encoding,
        sample_rate,
        timestamps,
    })
}

/// One context on a socket.
struct Context {
    id: String,
    identity: Map<String, Value>,
    encoding: SampleEncoding,
    timestamps: bool,
    voice: SyntheticVoice,
    words: VecDeque<SpokenWord>,
    /// `(sample position, flush id)`: `flush_done` once audio reaches the position.
    flushes: VecDeque<(u64, u64)>,
    closed: bool,
    cancelled: bool,
    started: bool,
    next_at: Option<Instant>,
    chunks_sent: usize,
    sizes: ChunkSizes,
    fault: Option<ContextFault>,
    /// Bytes held back to cut the next chunk at an odd length.
    held: Vec<u8>,
    _slot: ActiveSlot,
}

/// How a connection ends early.
enum Hangup {
    /// The client went away or a write failed.
    Gone,
    /// Injected: drop the socket.
    Close,
    /// Injected: go silent.
    Stall,
}

struct Connection {
    shared: Arc<Shared>,
    socket: WebSocket,
    contexts: Vec<Context>,
    /// Ids that may not be used again (done, cancelled, failed).
    finished: HashSet<String>,
    next_flush_id: u64,
}

impl Connection {
    async fn run(mut self) {
        let outcome = loop {
            let next = self.contexts.iter().filter_map(|c| c.next_at).min();
            let step = tokio::select! {
                message = self.socket.recv() => match message {
                    Some(Ok(Message::Text(text))) => self.on_text(text.as_str()).await,
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => Err(Hangup::Gone),
                    Some(Ok(_)) => Ok(()),
                },
                () = sleep_until(next) => self.emit_due().await,
            };
            if let Err(hangup) = step {
                break hangup;
            }
        };
        if let Hangup::Stall = outcome {
            // Hold the socket without reading (so no pongs) until the client gives up.
            tokio::time::sleep(Duration::from_secs(3600)).await;
        }
    }

    async fn send(&mut self, value: Value) -> Result<(), Hangup> {
        self.socket
            .send(Message::text(value.to_string()))
            .await
            .map_err(|_| Hangup::Gone)
    }

    fn error_frame(&self, context_id: Option<&str>, refusal: &Refusal) -> Value {
        if self.shared.config.legacy_errors {
            json!({
                "type": "error", "context_id": context_id, "done": true,
                "status_code": refusal.status, "error": refusal.message,
            })
        } else {
            json!({
                "type": "error", "context_id": context_id, "done": true,
                "status_code": refusal.status, "title": refusal.title,
                "message": refusal.message, "error_code": refusal.code,
                "doc_url": "https://docs.cartesia.ai/api-reference/tts/websocket",
                "request_id": uuid::Uuid::new_v4().to_string(),
            })
        }
    }

    async fn on_text(&mut self, text: &str) -> Result<(), Hangup> {
        let parsed: Result<Value, _> = serde_json::from_str(text);
        self.shared.received().messages.push(
            parsed
                .as_ref()
                .map_or_else(|_| Value::String(text.to_owned()), Clone::clone),
        );
        let object = match parsed {
            Ok(Value::Object(object)) => object,
            _ => {
                let frame = self.error_frame(
                    None,
                    &refuse("message is not a JSON object", "invalid_request"),
                );
                return self.send(frame).await;
            }
        };
        if object.get("cancel").and_then(Value::as_bool) == Some(true) {
            return self.on_cancel(&object);
        }
        let context_hint = object
            .get("context_id")
            .and_then(Value::as_str)
            .map(str::to_owned);
        let input = match parse_input(&object) {
            Ok(input) => input,
            Err(refusal) => return self.fail_context(context_hint.as_deref(), &refusal).await,
        };
        if self.finished.contains(&input.context_id) {
            let refusal = refuse(
                format!(
                    "context {} has already finished; use a new context_id",
                    input.context_id
                ),
                "context_finished",
            );
            return self
                .send(self.error_frame(Some(&input.context_id), &refusal))
                .await;
        }
        let index = match self.contexts.iter().position(|c| c.id == input.context_id) {
            Some(index) => {
                let context = &self.contexts[index];
                if context.identity != input.identity {
                    let refusal = refuse(
                        "every input of a context must repeat the same fields (model, voice, language, output_format, ...); only transcript and continue may change",
                        "context_fields_changed",
                    );
                    return self.fail_context(Some(&input.context_id), &refusal).await;
                }
                if context.closed || context.cancelled {
                    let refusal = refuse("input after the context was closed", "context_closed");
                    return self
                        .send(self.error_frame(Some(&input.context_id), &refusal))
                        .await;
                }
                index
            }
            None => match self.open(&input).await? {
                Some(index) => index,
                None => return Ok(()),
            },
        };
        let now = Instant::now();
        let latency = self.shared.config.latency;
        let context = &mut self.contexts[index];
        let words = context.voice.say(&input.transcript);
        if context.timestamps {
            context.words.extend(words);
        }
        if input.flush {
            self.next_flush_id += 1;
            context
                .flushes
                .push_back((context.voice.laid_out(), self.next_flush_id));
        }
        context.closed = !input.more;
        if context.next_at.is_none() {
            let delay = if context.started {
                latency.per_chunk
            } else {
                latency.first_byte
            };
            context.next_at = Some(now + delay);
        }
        Ok(())
    }

    /// Opens a context; returns its index, or `None` when it was refused.
    async fn open(&mut self, input: &Input) -> Result<Option<usize>, Hangup> {
        let fault = self.shared.faults().contexts.pop_front();
        self.shared
            .received()
            .context_ids
            .push(input.context_id.clone());
        if let Some(ContextFault::Error { status }) = fault {
            let refusal = Refusal {
                status,
                title: "Injected failure",
                message: "injected by the test".into(),
                code: "injected",
            };
            self.fail_context(Some(&input.context_id), &refusal).await?;
            return Ok(None);
        }
        let Some(slot) = self.shared.acquire() else {
            let refusal = Refusal {
                status: 429,
                title: "Too Many Requests",
                message: "concurrency limit reached for your plan".into(),
                code: "concurrency_limited",
            };
            self.fail_context(Some(&input.context_id), &refusal).await?;
            return Ok(None);
        };
        self.contexts.push(Context {
            id: input.context_id.clone(),
            identity: input.identity.clone(),
            encoding: input.encoding,
            timestamps: input.timestamps,
            voice: SyntheticVoice::new(input.sample_rate, self.shared.config.ms_per_char),
            words: VecDeque::new(),
            flushes: VecDeque::new(),
            closed: false,
            cancelled: false,
            started: false,
            next_at: None,
            chunks_sent: 0,
            sizes: ChunkSizes::new(seed_from(&input.context_id)),
            fault,
            held: Vec::new(),
            _slot: slot,
        });
        Ok(Some(self.contexts.len() - 1))
    }

    /// Sends an error for a context and forgets it.
    async fn fail_context(
        &mut self,
        context_id: Option<&str>,
        refusal: &Refusal,
    ) -> Result<(), Hangup> {
        if let Some(id) = context_id {
            self.contexts.retain(|c| c.id != id);
            self.finished.insert(id.to_owned());
        }
        self.send(self.error_frame(context_id, refusal)).await
    }

    fn on_cancel(&mut self, object: &Map<String, Value>) -> Result<(), Hangup> {
        let Some(id) = object.get("context_id").and_then(Value::as_str) else {
            return Ok(());
        };
        self.shared.received().cancels.push(id.to_owned());
        self.finished.insert(id.to_owned());
        if let Some(index) = self.contexts.iter().position(|c| c.id == id) {
            if self.contexts[index].fault == Some(ContextFault::IgnoreCancel) {
                self.contexts[index].cancelled = true;
            } else {
                self.contexts.remove(index);
            }
        }
        Ok(())
    }

    /// Emits the next message of the context whose turn it is.
    async fn emit_due(&mut self) -> Result<(), Hangup> {
        let now = Instant::now();
        let Some(index) = self
            .contexts
            .iter()
            .enumerate()
            .filter_map(|(i, c)| c.next_at.filter(|&t| t <= now).map(|t| (t, i)))
            .min()
            .map(|(_, i)| i)
        else {
            return Ok(());
        };
        let per_chunk = self.shared.config.latency.per_chunk;
        if self.contexts[index].fault == Some(ContextFault::Malformed)
            && !self.contexts[index].started
        {
            self.send_garbage(index).await?;
        }
        self.contexts[index].started = true;
        let id = self.contexts[index].id.clone();
        if self.contexts[index].voice.remaining() > 0 {
            let data = self.next_chunk(index);
            self.send(json!({
                "type": "chunk", "context_id": id, "data": STANDARD.encode(&data),
                "done": false, "status_code": 206, "step_time": 12.5,
            }))
            .await?;
            let context = &mut self.contexts[index];
            context.chunks_sent += 1;
            match context.fault {
                Some(ContextFault::CloseAfterChunks(n)) if context.chunks_sent >= n => {
                    return Err(Hangup::Close);
                }
                Some(ContextFault::StallAfterChunks(n)) if context.chunks_sent >= n => {
                    return Err(Hangup::Stall);
                }
                _ => {}
            }
            self.send_progress(index).await?;
            self.contexts[index].next_at = Some(Instant::now() + per_chunk);
            return Ok(());
        }
        self.send_progress(index).await?;
        let context = &mut self.contexts[index];
        if context.closed {
            let id = context.id.clone();
            self.contexts.remove(index);
            self.finished.insert(id.clone());
            self.send(json!({"type": "done", "context_id": id, "done": true, "status_code": 206}))
                .await
        } else {
            context.next_at = None;
            Ok(())
        }
    }

    /// The next chunk of audio, cut at an odd length when configured.
    fn next_chunk(&mut self, index: usize) -> Vec<u8> {
        let odd = self.shared.config.odd_byte_chunks;
        let context = &mut self.contexts[index];
        let rate = context.voice.sample_rate();
        let mut samples = Vec::new();
        let count = context.sizes.next_samples(rate);
        context.voice.render(count, &mut samples);
        let mut data = std::mem::take(&mut context.held);
        encode(&samples, context.encoding, &mut data);
        if odd
            && context.encoding.bytes_per_sample() > 1
            && context.voice.remaining() > 0
            && data.len().is_multiple_of(2)
        {
            context.held.extend(data.pop());
        }
        data
    }

    /// Timestamps of words whose audio has started, and `flush_done` for flushes reached.
    async fn send_progress(&mut self, index: usize) -> Result<(), Hangup> {
        let context = &mut self.contexts[index];
        let rendered = context.voice.rendered();
        let all_out = context.voice.remaining() == 0;
        let rate = f64::from(context.voice.sample_rate());
        let mut words = Vec::new();
        while context
            .words
            .front()
            .is_some_and(|w| all_out || w.start < rendered)
        {
            words.extend(context.words.pop_front());
        }
        let mut flushes = Vec::new();
        while context
            .flushes
            .front()
            .is_some_and(|&(at, _)| at <= rendered)
        {
            flushes.extend(context.flushes.pop_front().map(|(_, id)| id));
        }
        let id = context.id.clone();
        if !words.is_empty() {
            let secs = |s: u64| (s as f64 / rate * 1000.0).round() / 1000.0;
            self.send(json!({
                "type": "timestamps", "context_id": id, "done": false, "status_code": 206,
                "word_timestamps": {
                    "words": words.iter().map(|w| w.word.as_str()).collect::<Vec<_>>(),
                    "start": words.iter().map(|w| secs(w.start)).collect::<Vec<_>>(),
                    "end": words.iter().map(|w| secs(w.end)).collect::<Vec<_>>(),
                },
            }))
            .await?;
        }
        for flush_id in flushes {
            self.send(json!({
                "type": "flush_done", "context_id": id, "done": false,
                "flush_done": true, "flush_id": flush_id, "status_code": 206,
            }))
            .await?;
        }
        Ok(())
    }

    async fn send_garbage(&mut self, index: usize) -> Result<(), Hangup> {
        let id = self.contexts[index].id.clone();
        self.socket
            .send(Message::text("this is not json"))
            .await
            .map_err(|_| Hangup::Gone)?;
        self.send(json!({"type": "mystery", "context_id": id}))
            .await?;
        self.send(json!({"type": "chunk", "context_id": id, "data": "@@not base64@@", "done": false, "status_code": 206}))
            .await?;
        self.send(json!({"type": "chunk", "context_id": id, "done": false}))
            .await?;
        self.send(json!({"context_id": id})).await?;
        self.send(json!({"type": "timestamps", "context_id": id, "word_timestamps": "nope"}))
            .await?;
        self.socket
            .send(Message::Binary(Bytes::from_static(&[0, 1, 2, 3])))
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

/// `POST /tts/bytes`: the whole utterance as one streamed body.
async fn bytes(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    RawQuery(query): RawQuery,
    body: Bytes,
) -> Response {
    let mut record = RecordedRequest::new("/tts/bytes", &headers, query.as_deref());
    let parsed: Value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    let response = bytes_response(&shared, &headers, query.as_deref(), &parsed);
    record.status = response.status().as_u16();
    shared.received().bytes_requests.push((record, parsed));
    response
}

fn bytes_response(
    shared: &Arc<Shared>,
    headers: &HeaderMap,
    query: Option<&str>,
    body: &Value,
) -> Response {
    if let Some(response) = refusal(&shared.config, headers, query) {
        return response;
    }
    if let Some(status) = shared.faults().bytes.pop_front() {
        return http_error(
            status,
            "Injected failure",
            "injected by the test",
            "injected",
        );
    }
    let Some(object) = body.as_object() else {
        return http_error(
            400,
            "Invalid request",
            "body must be a JSON object",
            "invalid_request",
        );
    };
    let (transcript, encoding, rate, _) = match parse_generation(object, false) {
        Ok(parsed) => parsed,
        Err(refusal) => {
            return http_error(
                refusal.status,
                refusal.title,
                &refusal.message,
                refusal.code,
            );
        }
    };
    if transcript.trim().is_empty() {
        return http_error(
            400,
            "Invalid request",
            "transcript must not be empty",
            "invalid_request",
        );
    }
    let Some(slot) = shared.acquire() else {
        return http_error(
            429,
            "Too Many Requests",
            "concurrency limit reached for your plan",
            "concurrency_limited",
        );
    };
    let wav = object["output_format"]["container"] == "wav";
    let mut voice = SyntheticVoice::new(rate, shared.config.ms_per_char);
    voice.say(&transcript);
    let header = wav.then(|| {
        let len = voice.remaining() as usize * encoding.bytes_per_sample();
        wav_header(
            encoding,
            rate,
            u32::try_from(len).unwrap_or(u32::MAX),
            false,
        )
    });
    let stream = BodyStream {
        voice,
        encoding,
        sizes: ChunkSizes::new(seed_from(&transcript)),
        header,
        first: true,
        latency: shared.config.latency,
        odd: shared.config.odd_byte_chunks,
        held: Vec::new(),
        _slot: slot,
    };
    let content_type = if wav {
        "audio/wav"
    } else {
        "application/octet-stream"
    };
    let body = Body::from_stream(futures_util::stream::unfold(stream, BodyStream::next));
    ([(header::CONTENT_TYPE, content_type)], body).into_response()
}

struct BodyStream {
    voice: SyntheticVoice,
    encoding: SampleEncoding,
    sizes: ChunkSizes,
    header: Option<Vec<u8>>,
    first: bool,
    latency: Latency,
    odd: bool,
    held: Vec<u8>,
    _slot: ActiveSlot,
}

impl BodyStream {
    async fn next(mut self) -> Option<(Result<Bytes, std::io::Error>, Self)> {
        if self.voice.remaining() == 0 && self.held.is_empty() && self.header.is_none() {
            return None;
        }
        let delay = if std::mem::take(&mut self.first) {
            self.latency.first_byte
        } else {
            self.latency.per_chunk
        };
        if !delay.is_zero() {
            crate::sim::precise_timer::sleep(delay).await;
        }
        let mut data = self.header.take().unwrap_or_default();
        data.append(&mut self.held);
        let mut samples = Vec::new();
        self.voice.render(
            self.sizes.next_samples(self.voice.sample_rate()),
            &mut samples,
        );
        encode(&samples, self.encoding, &mut data);
        if self.odd && self.voice.remaining() > 0 && data.len().is_multiple_of(2) {
            self.held.extend(data.pop());
        }
        Some((Ok(Bytes::from(data)), self))
    }
}
