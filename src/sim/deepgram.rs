//! A fake Deepgram live-streaming server (`GET /v1/listen`, WebSocket).
//!
//! It checks what a client sends the way Deepgram does — credentials (`Token`/`Bearer` header or
//! the `token, <key>` subprotocol; 401 with `dg-error` otherwise), query parameters (unknown
//! encodings, bad booleans, `encoding` without `sample_rate`: 400), text-only control
//! messages, the empty-frame end-of-stream, the 10 s idle close (`1011 NET-0001`) — and it
//! *listens*: the audio is decoded and an energy detector finds utterances on the audio
//! timeline, which become `SpeechStarted`, interim and final `Results` (`speech_final` after
//! `endpointing` ms of silence), `UtteranceEnd`, and `Metadata` at the end, with the words taken
//! from an [`SttScript`]. Finals can be delayed by [`Latency::first_byte`] (the provider's
//! processing time); interim results and VAD events by [`Latency::per_chunk`].
//!
//! The handle records every stream ([`ReceivedStream`]) and can stage refusals and faults.
//!
//! A stream that begins inside speech (its first utterance starts within
//! [`JOINED_MID_SPEECH_MS`] of the stream's first audio) hears only the end of that sentence, as
//! a real recogniser transcribes only the words it was sent: a client that reconnects without
//! sending again what the lost socket had not settled is caught losing words.

use crate::sim::precise_timer::Deadline;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::time::{self, Instant};

use super::Latency;
use super::outbox::{Emission, Outbox};
use super::speech_detector::{DetectorConfig, SpeechDetector};
pub use super::stream_log::ReceivedStream;
use super::stream_log::{RefusedHandshake, StreamFault, StreamLog, StreamRecord, parse_query};
use super::stt_script::{ScriptError, SttScript};
use crate::audio::Encoding;

/// The path the fake serves (Deepgram's).
pub const LISTEN_PATH: &str = "/v1/listen";
/// The key the fake accepts unless configured otherwise.
pub const DEFAULT_API_KEY: &str = "deepgram-test-key";
/// The script fixture `voxbridge sim` loads.
pub const SCRIPT_FIXTURE: &str = "fixtures/sim/deepgram_stt.json";

/// How the fake behaves.
#[derive(Debug, Clone)]
pub struct DeepgramFakeConfig {
    /// Accepted API keys.
    pub api_keys: Vec<String>,
    /// What the callers "say", one entry per detected utterance (cycled per stream).
    pub script: SttScript,
    /// `first_byte`: delay of final results after their endpoint; `per_chunk`: delay of
    /// interim results and VAD events.
    pub latency: Latency,
    /// Deepgram closes a stream that receives neither audio nor KeepAlive for this long.
    pub idle_timeout: Duration,
    /// Audio time between interim results while someone speaks.
    pub interim_every_ms: u64,
    pub detector: DetectorConfig,
}

impl Default for DeepgramFakeConfig {
    fn default() -> Self {
        Self {
            api_keys: vec![DEFAULT_API_KEY.to_owned()],
            script: default_script(),
            latency: Latency::NONE,
            idle_timeout: Duration::from_secs(10),
            interim_every_ms: 400,
            detector: DetectorConfig::default(),
        }
    }
}

impl DeepgramFakeConfig {
    /// Defaults with the script read from a fixture file.
    pub fn with_script_file(path: &Path) -> Result<Self, ScriptError> {
        Ok(Self {
            script: SttScript::from_file(path)?,
            ..Self::default()
        })
    }
}

fn default_script() -> SttScript {
    SttScript::new(vec![
        "Hi, I'd like to reschedule my appointment.".to_owned(),
        "Tuesday afternoon would work better for me.".to_owned(),
        "Yes, three o'clock is fine.".to_owned(),
        "No, that's all. Thank you very much!".to_owned(),
    ])
}

/// The fake server and its inspection handle (cheap to clone).
#[derive(Debug, Clone)]
pub struct DeepgramFake {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: DeepgramFakeConfig,
    log: StreamLog,
}

impl DeepgramFake {
    pub fn new(config: DeepgramFakeConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                log: StreamLog::default(),
            }),
        }
    }

    /// The routes Deepgram serves (`/v1/listen`).
    pub fn router(&self) -> Router {
        Router::new()
            .route(LISTEN_PATH, any(listen))
            .with_state(self.clone())
    }

    /// Every accepted stream so far, in order.
    pub fn streams(&self) -> Vec<ReceivedStream> {
        self.inner.log.streams()
    }

    /// Every refused handshake so far.
    pub fn refused(&self) -> Vec<RefusedHandshake> {
        self.inner.log.refused()
    }

    /// Answers the next handshake with `status` (429, 503, ...) instead of accepting it.
    pub fn refuse_next_handshake(&self, status: u16) {
        self.inner.log.refuse_next(status);
    }

    /// Applies `fault` to the next accepted stream.
    pub fn stage_fault(&self, fault: StreamFault) {
        self.inner.log.stage_fault(fault);
    }
}

/// A refused handshake, Deepgram style: the reason in `dg-error` and in a JSON body.
fn refuse(fake: &DeepgramFake, status: StatusCode, err_code: &str, message: &str) -> Response {
    fake.inner.log.record_refusal(status.as_u16(), message);
    let request_id = uuid::Uuid::new_v4().to_string();
    let body = json!({"err_code": err_code, "err_msg": message, "request_id": request_id});
    let mut response = (status, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(message) {
        headers.insert("dg-error", value);
    }
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        headers.insert("dg-request-id", value);
    }
    response
}

async fn listen(
    State(fake): State<DeepgramFake>,
    RawQuery(raw_query): RawQuery,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    if let Some(status) = fake.inner.log.take_scripted_refusal() {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let code = match status.as_u16() {
            429 => "TOO_MANY_REQUESTS",
            401 => "INVALID_AUTH",
            _ => "SERVICE_UNAVAILABLE",
        };
        let reason = status.canonical_reason().unwrap_or("refused").to_owned();
        return refuse(&fake, status, code, &reason);
    }
    let protocols: Vec<String> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    let Some(auth) = authenticate(&fake.inner.config.api_keys, &headers, &protocols) else {
        return refuse(
            &fake,
            StatusCode::UNAUTHORIZED,
            "INVALID_AUTH",
            "Invalid credentials.",
        );
    };
    let query = parse_query(raw_query.as_deref());
    let params = match ListenParams::parse(&query) {
        Ok(p) => p,
        Err(message) => {
            return refuse(&fake, StatusCode::BAD_REQUEST, "Bad Request", &message);
        }
    };
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(_) => {
            return refuse(
                &fake,
                StatusCode::BAD_REQUEST,
                "Bad Request",
                "expected a WebSocket upgrade",
            );
        }
    };
    let upgrade = match auth {
        Auth::Subprotocol(name) => upgrade.protocols([name]),
        Auth::Header => upgrade,
    };
    let (record, fault) = fake.inner.log.open_stream(query, &headers, protocols);
    let config = fake.inner.clone();
    let request_id = uuid::Uuid::new_v4().to_string();
    let stream_request_id = request_id.clone();
    let mut response = upgrade
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(1 << 20)
        .on_upgrade(move |socket| async move {
            let timeline = Timeline::new(params, &config.config, stream_request_id);
            serve_stream(socket, timeline, record, fault, &config.config).await;
        });
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert("dg-request-id", value);
    }
    response
}

enum Auth {
    Header,
    /// Browsers: `Sec-WebSocket-Protocol: token, <key>`; the server echoes the scheme.
    Subprotocol(&'static str),
}

fn authenticate(keys: &[String], headers: &HeaderMap, protocols: &[String]) -> Option<Auth> {
    let known = |key: &str| keys.iter().any(|k| k == key);
    if let Some(value) = headers.get(header::AUTHORIZATION) {
        let value = value.to_str().ok()?;
        let (scheme, key) = value.split_once(' ')?;
        let scheme_ok =
            scheme.eq_ignore_ascii_case("token") || scheme.eq_ignore_ascii_case("bearer");
        return (scheme_ok && known(key.trim())).then_some(Auth::Header);
    }
    for (i, p) in protocols.iter().enumerate() {
        let scheme: &'static str = match p.to_ascii_lowercase().as_str() {
            "token" => "token",
            "bearer" => "bearer",
            _ => continue,
        };
        if protocols.get(i + 1).is_some_and(|k| known(k)) {
            return Some(Auth::Subprotocol(scheme));
        }
    }
    None
}

/// The stream settings a client asked for.
#[derive(Debug, Clone)]
struct ListenParams {
    model: String,
    /// Decodable encoding (`None` for formats the fake cannot decode: it hears silence).
    decode: Option<Encoding>,
    sample_rate: u32,
    channels: u32,
    interim_results: bool,
    /// `None`: endpointing disabled.
    endpointing: Option<u64>,
    utterance_end_ms: Option<u64>,
    vad_events: bool,
    formatted: bool,
}

const BOOLEAN_PARAMS: &[&str] = &[
    "interim_results",
    "vad_events",
    "smart_format",
    "punctuate",
    "multichannel",
    "diarize",
    "numerals",
    "profanity_filter",
    "dictation",
    "filler_words",
    "mip_opt_out",
    "detect_entities",
    "no_delay",
];
const FREE_PARAMS: &[&str] = &[
    "keyterm",
    "keywords",
    "tag",
    "extra",
    "redact",
    "replace",
    "search",
    "callback",
    "callback_method",
    "version",
    "diarize_model",
];
const ENCODINGS: &[&str] = &[
    "linear16", "linear32", "flac", "mulaw", "alaw", "amr-nb", "amr-wb", "opus", "ogg-opus",
    "speex", "g729",
];
const MODEL_FAMILIES: &[&str] = &["nova-3", "nova-2", "nova", "enhanced", "base", "whisper"];

impl ListenParams {
    fn parse(query: &[(String, String)]) -> Result<Self, String> {
        let mut params = ListenParams {
            model: "base".to_owned(),
            decode: None,
            sample_rate: 0,
            channels: 1,
            interim_results: false,
            endpointing: Some(10),
            utterance_end_ms: None,
            vad_events: false,
            formatted: false,
        };
        let mut encoding: Option<&str> = None;
        let mut sample_rate: Option<u32> = None;
        for (key, value) in query {
            let key = key.as_str();
            if BOOLEAN_PARAMS.contains(&key) {
                let flag = match value.as_str() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(format!("Invalid value for {key}: expected true or false")),
                };
                match key {
                    "interim_results" => params.interim_results = flag,
                    "vad_events" => params.vad_events = flag,
                    "smart_format" | "punctuate" => params.formatted |= flag,
                    _ => {}
                }
                continue;
            }
            match key {
                "model" => {
                    if !MODEL_FAMILIES.iter().any(|f| value.starts_with(f)) {
                        return Err(format!("No such model: {value}"));
                    }
                    params.model = value.clone();
                }
                "language" => {
                    let ok = !value.is_empty()
                        && value.len() <= 16
                        && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-');
                    if !ok {
                        return Err(format!("Invalid language: {value}"));
                    }
                }
                "encoding" => {
                    if !ENCODINGS.contains(&value.as_str()) {
                        return Err(format!("Unsupported encoding: {value}"));
                    }
                    encoding = Some(value);
                }
                "sample_rate" => match value.parse::<u32>() {
                    Ok(rate) if rate > 0 => sample_rate = Some(rate),
                    _ => return Err(format!("Invalid sample_rate: {value}")),
                },
                "channels" => match value.parse::<u32>() {
                    Ok(n) if n > 0 => params.channels = n,
                    _ => return Err(format!("Invalid channels: {value}")),
                },
                "endpointing" => {
                    params.endpointing = match value.as_str() {
                        "false" => None,
                        "true" => Some(10),
                        v => Some(
                            v.parse::<u64>()
                                .map_err(|_| format!("Invalid endpointing: {v}"))?,
                        ),
                    };
                }
                "utterance_end_ms" => {
                    params.utterance_end_ms = Some(
                        value
                            .parse::<u64>()
                            .map_err(|_| format!("Invalid utterance_end_ms: {value}"))?,
                    );
                }
                k if FREE_PARAMS.contains(&k) => {}
                other => return Err(format!("Unknown query parameter: {other}")),
            }
        }
        if let Some(encoding) = encoding {
            let Some(rate) = sample_rate else {
                return Err("sample_rate is required when encoding is set".to_owned());
            };
            params.sample_rate = rate;
            params.decode = match encoding {
                "mulaw" => Some(Encoding::Mulaw),
                "alaw" => Some(Encoding::Alaw),
                "linear16" => Some(Encoding::Pcm16),
                _ => None,
            };
        }
        Ok(params)
    }

    /// `UtteranceEnd` needs both `utterance_end_ms` and interim results.
    fn utterance_end(&self) -> Option<u64> {
        self.utterance_end_ms.filter(|_| self.interim_results)
    }

    fn bytes_per_second(&self) -> u64 {
        let width = self.decode.map_or(0, |e| e.bytes_per_sample() as u64);
        u64::from(self.sample_rate) * u64::from(self.channels) * width
    }
}

struct Utterance {
    text: String,
    start_ms: u64,
    last_interim_ms: u64,
}

/// The recognition timeline of one stream.
struct Timeline {
    detector: SpeechDetector,
    state: TimelineState,
}

struct TimelineState {
    params: ListenParams,
    script: SttScript,
    next_text: usize,
    interim_every_ms: u64,
    /// Start of the audio not yet covered by a final result.
    segment_start_ms: u64,
    current: Option<Utterance>,
    /// End of the last finalised word, while an `UtteranceEnd` is due.
    utterance_end_from: Option<u64>,
    request_id: String,
    audio_hash: Sha256,
}

impl Timeline {
    fn new(params: ListenParams, config: &DeepgramFakeConfig, request_id: String) -> Self {
        let detector = SpeechDetector::new(
            params.decode,
            params.sample_rate.max(1),
            params.channels,
            config.detector,
        );
        Self {
            detector,
            state: TimelineState {
                params,
                script: config.script.clone(),
                next_text: 0,
                interim_every_ms: config.interim_every_ms.max(10),
                segment_start_ms: 0,
                current: None,
                utterance_end_from: None,
                request_id,
                audio_hash: Sha256::new(),
            },
        }
    }

    fn push_audio(&mut self, audio: &[u8], out: &mut Vec<Emission>) {
        self.state.audio_hash.update(audio);
        let state = &mut self.state;
        self.detector.push(audio, |detector, window| {
            state.on_window(detector, window.end_ms, window.onset_ms, out)
        });
    }

    /// `Finalize`: whatever was heard becomes final now (an empty final if nothing was).
    fn finalize(&mut self, out: &mut Vec<Emission>) {
        let now = self.detector.now_ms();
        if self.state.current.is_some() {
            self.state
                .finalize(&mut self.detector, now, false, true, out);
        } else {
            let text = self.state.results(&[], 0, 0, now, true, false, true);
            self.state.segment_start_ms = now;
            out.push(Emission {
                is_final: true,
                text,
            });
        }
    }

    /// `CloseStream` (or an empty frame): the last finals, then `Metadata`.
    fn close_stream(&mut self, out: &mut Vec<Emission>) {
        let now = self.detector.now_ms();
        if self.state.current.is_some() {
            self.state
                .finalize(&mut self.detector, now, false, false, out);
        }
        let digest = std::mem::take(&mut self.state.audio_hash).finalize();
        let sha256: String = digest.iter().map(|b| format!("{b:02x}")).collect();
        let created = ::time::OffsetDateTime::now_utc()
            .format(&::time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        let model_uuid = "0b6c2f3e-0000-4000-8000-000000000000";
        let metadata = json!({
            "type": "Metadata",
            "transaction_key": "deprecated",
            "request_id": self.state.request_id,
            "sha256": sha256,
            "created": created,
            "duration": seconds(now),
            "channels": self.state.params.channels,
            "models": [model_uuid],
            "model_info": {model_uuid: {"name": self.state.params.model, "version": "2025-01-01.0", "arch": self.state.params.model}},
        });
        out.push(Emission {
            is_final: true,
            text: metadata.to_string(),
        });
    }
}

fn seconds(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// A first utterance starting this close to the stream's first audio began before the stream
/// (longer than the pauses between words, shorter than the silence a call begins with).
pub const JOINED_MID_SPEECH_MS: u64 = 400;

/// The end of a sentence heard from its middle: its second half of words.
fn tail_of(sentence: &str) -> String {
    let words: Vec<&str> = sentence.split_whitespace().collect();
    words[words.len() / 2..].join(" ")
}

impl TimelineState {
    fn on_window(
        &mut self,
        detector: &mut SpeechDetector,
        now: u64,
        onset: Option<u64>,
        out: &mut Vec<Emission>,
    ) {
        if let Some(start_ms) = onset {
            // Speech resumed: no UtteranceEnd for the previous words.
            self.utterance_end_from = None;
            let sentence = self.script.utterance(self.next_text);
            let text = if self.next_text == 0 && start_ms < JOINED_MID_SPEECH_MS {
                tail_of(sentence)
            } else {
                sentence.to_owned()
            };
            self.next_text += 1;
            self.current = Some(Utterance {
                text,
                start_ms,
                last_interim_ms: start_ms,
            });
            if self.params.vad_events {
                out.push(Emission {
                    is_final: false,
                    text: json!({"type": "SpeechStarted", "channel": [0, 1], "timestamp": seconds(start_ms)})
                        .to_string(),
                });
            }
        }
        if let Some(utterance) = &mut self.current {
            let silence = detector.silence_ms();
            let utterance_end = self.params.utterance_end();
            let endpoint = match self.params.endpointing {
                Some(ms) => silence >= ms.max(10),
                // Without endpointing Deepgram still finalises at a long pause.
                None => silence >= utterance_end.unwrap_or(1000),
            };
            if endpoint {
                let speech_final = self.params.endpointing.is_some();
                self.finalize(detector, now, speech_final, false, out);
            } else if utterance_end.is_some_and(|ue| silence >= ue) {
                self.finalize(detector, now, false, false, out);
            } else if self.params.interim_results
                && now - utterance.last_interim_ms >= self.interim_every_ms
            {
                utterance.last_interim_ms = now;
                let start_ms = utterance.start_ms;
                let heard = ((now - start_ms) / 250 + 1) as usize;
                let last_voiced = detector.span().map_or(now, |s| s.last_voiced_ms);
                let text = self.current.as_ref().map(|u| {
                    let words: Vec<&str> = u.text.split_whitespace().collect();
                    let heard = heard.min(words.len());
                    self.results(
                        &words[..heard],
                        start_ms,
                        last_voiced,
                        now,
                        false,
                        false,
                        false,
                    )
                });
                if let Some(text) = text {
                    out.push(Emission {
                        is_final: false,
                        text,
                    });
                }
            }
        }
        if let (Some(last_word_end), Some(ue)) =
            (self.utterance_end_from, self.params.utterance_end())
            && now >= last_word_end + ue
        {
            self.utterance_end_from = None;
            out.push(Emission {
                is_final: false,
                text: json!({"type": "UtteranceEnd", "channel": [0, 1], "last_word_end": seconds(last_word_end)})
                    .to_string(),
            });
        }
    }

    fn finalize(
        &mut self,
        detector: &mut SpeechDetector,
        now: u64,
        speech_final: bool,
        from_finalize: bool,
        out: &mut Vec<Emission>,
    ) {
        let Some(utterance) = self.current.take() else {
            return;
        };
        let last_voiced = detector.span().map_or(now, |s| s.last_voiced_ms);
        detector.end_span();
        let words: Vec<&str> = utterance.text.split_whitespace().collect();
        let text = self.results(
            &words,
            utterance.start_ms,
            last_voiced,
            now,
            true,
            speech_final,
            from_finalize,
        );
        out.push(Emission {
            is_final: true,
            text,
        });
        self.segment_start_ms = now;
        if self.params.utterance_end().is_some() {
            self.utterance_end_from = Some(last_voiced);
        }
    }

    /// A `Results` message covering `[segment_start, now]`, its words spread evenly over the
    /// speech span `[speech_start, speech_end]`.
    #[allow(clippy::too_many_arguments)]
    fn results(
        &self,
        words: &[&str],
        speech_start: u64,
        speech_end: u64,
        now: u64,
        is_final: bool,
        speech_final: bool,
        from_finalize: bool,
    ) -> String {
        let span = speech_end.saturating_sub(speech_start).max(1);
        let per_word = span as f64 / words.len().max(1) as f64;
        let plain = |w: &str| -> String {
            w.chars()
                .filter(|c| c.is_alphanumeric() || *c == '\'')
                .flat_map(char::to_lowercase)
                .collect()
        };
        let word_list: Vec<serde_json::Value> = words
            .iter()
            .enumerate()
            .map(|(i, w)| {
                let start = speech_start as f64 + per_word * i as f64;
                let mut word = json!({
                    "word": plain(w),
                    "start": start / 1000.0,
                    "end": (start + per_word) / 1000.0,
                    "confidence": 0.98,
                });
                if self.params.formatted {
                    word["punctuated_word"] = json!(w);
                }
                word
            })
            .collect();
        let transcript = if self.params.formatted {
            words.join(" ")
        } else {
            words.iter().map(|w| plain(w)).collect::<Vec<_>>().join(" ")
        };
        let start = self.segment_start_ms.min(now);
        json!({
            "type": "Results",
            "channel_index": [0, 1],
            "duration": seconds(now - start),
            "start": seconds(start),
            "is_final": is_final,
            "speech_final": speech_final,
            "from_finalize": from_finalize,
            "channel": {"alternatives": [{
                "transcript": transcript,
                "confidence": if words.is_empty() { 0.0 } else { 0.98 },
                "words": word_list,
            }]},
            "metadata": {
                "request_id": self.request_id,
                "model_info": {"name": self.params.model, "version": "2025-01-01.0", "arch": self.params.model},
                "model_uuid": "0b6c2f3e-0000-4000-8000-000000000000",
            },
        })
        .to_string()
    }
}

/// What the client sent as a JSON control message, if anything.
fn control_type(bytes: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Control {
        #[serde(rename = "type")]
        kind: String,
    }
    if bytes.first() != Some(&b'{') {
        return None;
    }
    serde_json::from_slice::<Control>(bytes)
        .ok()
        .map(|c| c.kind)
}

async fn serve_stream(
    mut socket: WebSocket,
    mut timeline: Timeline,
    record: StreamRecord,
    fault: Option<StreamFault>,
    config: &DeepgramFakeConfig,
) {
    let bytes_per_second = timeline.state.params.bytes_per_second();
    let mut audio_bytes = 0u64;
    let mut emissions = Vec::new();
    let mut outbox = Outbox::default();
    let mut last_activity = Instant::now();
    let mut idle_check = time::interval(Duration::from_millis(250));
    // Finals are due exactly `latency` after their endpoint: a sub-millisecond timer.
    let mut wake = Deadline::new();
    let mut armed_for: Option<Instant> = None;
    // After CloseStream: send what is left, then close 1000.
    let mut ending = false;

    loop {
        tokio::select! {
            incoming = socket.recv(), if !ending => {
                let message = match incoming {
                    Some(Ok(message)) => message,
                    _ => {
                        record.update(|r| r.client_closed = true);
                        return;
                    }
                };
                match message {
                    Message::Binary(audio) if audio.is_empty() => {
                        // Deepgram's documented pitfall: an empty frame ends the stream.
                        record.update(|r| r.control.push("empty-frame".to_owned()));
                        ending = true;
                        timeline.close_stream(&mut emissions);
                    }
                    Message::Binary(audio) => {
                        if let Some(kind) = control_type(&audio) {
                            record.update(|r| r.rejected.push(format!("{kind} sent as a binary frame")));
                            close(&mut socket, &record, 1008, "DATA-0000").await;
                            return;
                        }
                        audio_bytes += audio.len() as u64;
                        let audio_ms = (audio_bytes * 1000).checked_div(bytes_per_second).unwrap_or(0);
                        record.update(|r| {
                            r.audio_messages += 1;
                            r.audio_bytes = audio_bytes;
                            r.audio_ms = audio_ms;
                        });
                        last_activity = Instant::now();
                        timeline.push_audio(&audio, &mut emissions);
                        match &fault {
                            Some(StreamFault::CloseAfterAudio { audio_ms: at, code, reason }) if audio_ms >= *at => {
                                close(&mut socket, &record, *code, reason).await;
                                return;
                            }
                            Some(StreamFault::StallAfterAudio { audio_ms: at }) if audio_ms >= *at => {
                                // Stop reading: pings go unanswered, writes back up.
                                time::sleep(Duration::from_secs(60)).await;
                                return;
                            }
                            _ => {}
                        }
                    }
                    Message::Text(text) => {
                        let kind = control_type(text.as_bytes())
                            .unwrap_or_else(|| "<not a control message>".to_owned());
                        record.update(|r| r.control.push(kind.clone()));
                        match kind.as_str() {
                            "KeepAlive" => last_activity = Instant::now(),
                            "Finalize" => {
                                last_activity = Instant::now();
                                timeline.finalize(&mut emissions);
                            }
                            "CloseStream" => {
                                ending = true;
                                timeline.close_stream(&mut emissions);
                            }
                            _ => record.update(|r| r.rejected.push(format!("unknown control message {kind}"))),
                        }
                    }
                    Message::Close(_) => {
                        record.update(|r| r.client_closed = true);
                        return;
                    }
                    Message::Ping(_) | Message::Pong(_) => {}
                }
            }
            () = wake.wait(), if armed_for.is_some() => {
                let now = Instant::now();
                while let Some(text) = outbox.pop_due(now) {
                    if socket.send(Message::Text(text.into())).await.is_err() {
                        record.update(|r| r.client_closed = true);
                        return;
                    }
                }
                armed_for = None;
            }
            _ = idle_check.tick(), if !ending => {
                if last_activity.elapsed() >= config.idle_timeout {
                    close(&mut socket, &record, 1011, "NET-0001").await;
                    return;
                }
            }
        }
        outbox.schedule(config.latency, &mut emissions);
        if let Some(due) = outbox.next_due()
            && armed_for != Some(due)
        {
            wake.reset(due);
            armed_for = Some(due);
        }
        if ending && outbox.is_empty() {
            close(&mut socket, &record, 1000, "").await;
            // Wait (briefly) for the client's half of the close handshake.
            let _ = time::timeout(Duration::from_secs(2), async {
                while let Some(Ok(_)) = socket.recv().await {}
            })
            .await;
            return;
        }
    }
}

async fn close(socket: &mut WebSocket, record: &StreamRecord, code: u16, reason: &str) {
    record.update(|r| r.closed_with = Some((code, reason.to_owned())));
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code,
            reason: reason.to_owned().into(),
        })))
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn validates_listen_parameters() {
        let ok = ListenParams::parse(&query(&[
            ("model", "nova-3"),
            ("encoding", "mulaw"),
            ("sample_rate", "8000"),
            ("interim_results", "true"),
            ("endpointing", "300"),
            ("utterance_end_ms", "1000"),
            ("keyterm", "voxbridge"),
        ]))
        .unwrap();
        assert_eq!(ok.decode, Some(Encoding::Mulaw));
        assert_eq!(ok.endpointing, Some(300));
        assert_eq!(ok.utterance_end(), Some(1000));

        let no_ue = ListenParams::parse(&query(&[("utterance_end_ms", "1000")])).unwrap();
        assert_eq!(
            no_ue.utterance_end(),
            None,
            "UtteranceEnd needs interim_results"
        );

        for bad in [
            vec![("encoding", "mulaw")],
            vec![("encoding", "mp3"), ("sample_rate", "8000")],
            vec![("interim_results", "True")],
            vec![("vad_events", "1")],
            vec![("endpointing", "soon")],
            vec![("model", "gpt-4")],
            vec![("sample_rate", "fast")],
            vec![("colour", "blue")],
        ] {
            assert!(ListenParams::parse(&query(&bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn authenticates_like_deepgram() {
        let keys = vec!["k1".to_owned()];
        let mut headers = HeaderMap::new();
        headers.insert(header::AUTHORIZATION, "Token k1".parse().unwrap());
        assert!(matches!(
            authenticate(&keys, &headers, &[]),
            Some(Auth::Header)
        ));
        headers.insert(header::AUTHORIZATION, "Bearer k1".parse().unwrap());
        assert!(authenticate(&keys, &headers, &[]).is_some());
        headers.insert(header::AUTHORIZATION, "Token wrong".parse().unwrap());
        assert!(authenticate(&keys, &headers, &[]).is_none());
        headers.insert(header::AUTHORIZATION, "k1".parse().unwrap());
        assert!(authenticate(&keys, &headers, &[]).is_none());
        let protocols = vec!["token".to_owned(), "k1".to_owned()];
        assert!(matches!(
            authenticate(&keys, &HeaderMap::new(), &protocols),
            Some(Auth::Subprotocol("token"))
        ));
        assert!(authenticate(&keys, &HeaderMap::new(), &[]).is_none());
    }
}
