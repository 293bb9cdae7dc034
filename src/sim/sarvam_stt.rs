//! A fake Sarvam streaming STT server (`GET /speech-to-text/ws`, WebSocket).
//!
//! It checks what a client sends the way Sarvam does — the `api-subscription-key` header (or
//! the `api-subscription-key.<key>` subprotocol; **403** `invalid_api_key_error` otherwise, not
//! 401), the query (`language-code` with a hyphen, a streaming model, `sample_rate` 8000 or
//! 16000, a WAV/PCM `input_audio_codec`, `true`/`false` flags), and every message: audio must be
//! base64 PCM16 inside `{"audio": {"data", "sample_rate", "encoding"}}` at the declared rate,
//! errors come back as `{"type": "error", "data": {"error", "code"}}`. Like the Deepgram fake it
//! listens: an energy detector finds utterances in the decoded audio, which become
//! `START_SPEECH`/`END_SPEECH` events (with `vad_signals=true`) and one `data` final per
//! utterance — after ~1 s of silence, ~0.5 s with `high_vad_sensitivity=true` — or per client
//! `flush` (with `flush_signal=true`). Texts come from an [`SttScript`]; finals are delayed by
//! [`Latency::first_byte`], events by [`Latency::per_chunk`].
//!
//! The TTS side of Sarvam is another fake (`sarvam_tts`); the paths do not overlap.

use crate::sim::precise_timer::Deadline;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::any;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::time::{self, Instant};

use super::Latency;
use super::outbox::{Emission, Outbox};
use super::speech_detector::{DetectorConfig, SpeechDetector};
pub use super::stream_log::ReceivedStream;
use super::stream_log::{RefusedHandshake, StreamFault, StreamLog, StreamRecord, parse_query};
use super::stt_script::{ScriptError, SttScript};
use crate::audio::Encoding;

/// The path the fake serves (Sarvam's).
pub const STREAM_PATH: &str = "/speech-to-text/ws";
/// The key the fake accepts unless configured otherwise.
pub const DEFAULT_API_KEY: &str = "sarvam-test-key";
/// The script fixture `voxbridge sim` loads.
pub const SCRIPT_FIXTURE: &str = "fixtures/sim/sarvam_stt.json";
/// Silence that ends an utterance with `high_vad_sensitivity=true` (what a client with short
/// endpointing asks for), and without.
pub const END_SILENCE_HIGH_SENSITIVITY_MS: u64 = 500;
pub const END_SILENCE_MS: u64 = 1000;

const LANGUAGES: &[&str] = &[
    "unknown", "bn-IN", "en-IN", "gu-IN", "hi-IN", "kn-IN", "ml-IN", "mr-IN", "od-IN", "pa-IN",
    "ta-IN", "te-IN", "as-IN", "ur-IN", "ne-IN", "kok-IN", "ks-IN", "sd-IN", "sa-IN", "sat-IN",
    "mni-IN", "brx-IN", "mai-IN", "doi-IN",
];
const MODELS: &[&str] = &["saarika:v2.5", "saaras:v3", "saaras:v4"];
const MODES: &[&str] = &["transcribe", "translate", "verbatim", "translit", "codemix"];
const CODECS: &[&str] = &["wav", "pcm_s16le", "pcm_l16", "pcm_raw"];

/// How the fake behaves.
#[derive(Debug, Clone)]
pub struct SarvamSttFakeConfig {
    /// Accepted API subscription keys.
    pub api_keys: Vec<String>,
    /// What the callers "say", one entry per utterance (cycled per stream).
    pub script: SttScript,
    /// `first_byte`: delay of `data` finals; `per_chunk`: delay of VAD events.
    pub latency: Latency,
    pub detector: DetectorConfig,
    /// Close a stream that receives no message for this long (Sarvam's own timeout is not
    /// documented; off by default).
    pub idle_timeout: Option<Duration>,
}

impl Default for SarvamSttFakeConfig {
    fn default() -> Self {
        Self {
            api_keys: vec![DEFAULT_API_KEY.to_owned()],
            script: default_script(),
            latency: Latency::NONE,
            detector: DetectorConfig::default(),
            idle_timeout: None,
        }
    }
}

impl SarvamSttFakeConfig {
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
        "नमस्ते, मुझे अपना अपॉइंटमेंट बदलना है।".to_owned(),
        "मंगलवार दोपहर मेरे लिए ठीक रहेगा।".to_owned(),
        "हाँ, तीन बजे ठीक है।".to_owned(),
        "नहीं, बस इतना ही। बहुत धन्यवाद!".to_owned(),
    ])
}

/// The fake server and its inspection handle (cheap to clone).
#[derive(Debug, Clone)]
pub struct SarvamSttFake {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    config: SarvamSttFakeConfig,
    log: StreamLog,
}

impl SarvamSttFake {
    pub fn new(config: SarvamSttFakeConfig) -> Self {
        Self {
            inner: Arc::new(Inner {
                config,
                log: StreamLog::default(),
            }),
        }
    }

    /// The routes Sarvam's streaming STT serves (`/speech-to-text/ws`).
    pub fn router(&self) -> Router {
        Router::new()
            .route(STREAM_PATH, any(stream))
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

/// Sarvam's error code for an HTTP status.
fn error_code(status: u16) -> &'static str {
    match status {
        400 => "invalid_request_error",
        401 | 403 => "invalid_api_key_error",
        422 => "unprocessable_entity_error",
        429 => "rate_limit_exceeded_error",
        _ => "internal_server_error",
    }
}

fn refuse(fake: &SarvamSttFake, status: StatusCode, message: &str) -> Response {
    fake.inner.log.record_refusal(status.as_u16(), message);
    let body = json!({"error": {
        "message": message,
        "code": error_code(status.as_u16()),
        "request_id": request_id(),
    }});
    (status, axum::Json(body)).into_response()
}

fn request_id() -> String {
    let date = ::time::OffsetDateTime::now_utc();
    format!(
        "{:04}{:02}{:02}_{}",
        date.year(),
        u8::from(date.month()),
        date.day(),
        uuid::Uuid::new_v4()
    )
}

async fn stream(
    State(fake): State<SarvamSttFake>,
    RawQuery(raw_query): RawQuery,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    if let Some(status) = fake.inner.log.take_scripted_refusal() {
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        let reason = status.canonical_reason().unwrap_or("refused").to_owned();
        return refuse(&fake, status, &reason);
    }
    let protocols: Vec<String> = headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_owned())
        .filter(|p| !p.is_empty())
        .collect();
    let keys = &fake.inner.config.api_keys;
    let header_key = headers
        .get("api-subscription-key")
        .and_then(|v| v.to_str().ok());
    let protocol_key = protocols
        .iter()
        .find(|p| p.starts_with("api-subscription-key."))
        .cloned();
    let authenticated = match (header_key, &protocol_key) {
        (Some(key), _) => keys.iter().any(|k| k == key),
        (None, Some(p)) => keys
            .iter()
            .any(|k| p.strip_prefix("api-subscription-key.") == Some(k.as_str())),
        (None, None) => false,
    };
    if !authenticated {
        return refuse(&fake, StatusCode::FORBIDDEN, "Invalid API key");
    }
    let query = parse_query(raw_query.as_deref());
    let params = match StreamParams::parse(&query) {
        Ok(p) => p,
        Err(message) => return refuse(&fake, StatusCode::BAD_REQUEST, &message),
    };
    let Ok(mut upgrade) = upgrade else {
        return refuse(
            &fake,
            StatusCode::BAD_REQUEST,
            "expected a WebSocket upgrade",
        );
    };
    if header_key.is_none()
        && let Some(p) = &protocol_key
        && let Ok(value) = p.parse()
    {
        // Sarvam echoes the key subprotocol back.
        upgrade.set_selected_protocol(value);
    }
    let (record, fault) = fake.inner.log.open_stream(query, &headers, protocols);
    let inner = fake.inner.clone();
    upgrade
        .read_buffer_size(4096)
        .write_buffer_size(0)
        .max_message_size(1 << 20)
        .on_upgrade(move |socket| async move {
            serve_stream(socket, params, record, fault, &inner.config).await;
        })
}

/// The stream settings a client asked for.
#[derive(Debug, Clone)]
struct StreamParams {
    language: String,
    sample_rate: u32,
    codec: String,
    vad_signals: bool,
    flush_signal: bool,
    /// Silence that ends an utterance.
    end_silence_ms: u64,
}

impl StreamParams {
    fn parse(query: &[(String, String)]) -> Result<Self, String> {
        let get = |key: &str| {
            query
                .iter()
                .find(|(k, _)| k == key)
                .map(|(_, v)| v.as_str())
        };
        let flag = |key: &str| -> Result<bool, String> {
            match get(key) {
                None | Some("false") => Ok(false),
                Some("true") => Ok(true),
                Some(other) => Err(format!(
                    "Invalid value for {key}: {other:?} (expected true or false)"
                )),
            }
        };
        let language = get("language-code")
            .ok_or_else(|| "Missing required query parameter: language-code".to_owned())?;
        if !LANGUAGES.contains(&language) {
            return Err(format!("Invalid language-code: {language}"));
        }
        let model = get("model").unwrap_or("saarika:v2.5");
        if !MODELS.contains(&model) {
            return Err(format!("Invalid model for streaming: {model}"));
        }
        if let Some(mode) = get("mode") {
            if model == "saarika:v2.5" {
                return Err(format!("mode is not supported by {model}"));
            }
            if !MODES.contains(&mode) {
                return Err(format!("Invalid mode: {mode}"));
            }
        }
        let sample_rate = match get("sample_rate") {
            None => 16_000,
            Some("8000") => 8000,
            Some("16000") => 16_000,
            Some(other) => {
                return Err(format!(
                    "Invalid sample_rate: {other} (supported: 8000, 16000)"
                ));
            }
        };
        let codec = get("input_audio_codec").unwrap_or("wav");
        if !CODECS.contains(&codec) {
            return Err(format!(
                "Invalid input_audio_codec for streaming: {codec} (wav or raw PCM only)"
            ));
        }
        let high_sensitivity = flag("high_vad_sensitivity")?;
        Ok(Self {
            language: language.to_owned(),
            sample_rate,
            codec: codec.to_owned(),
            vad_signals: flag("vad_signals")?,
            flush_signal: flag("flush_signal")?,
            end_silence_ms: if high_sensitivity {
                END_SILENCE_HIGH_SENSITIVITY_MS
            } else {
                END_SILENCE_MS
            },
        })
    }
}

/// Recognition state of one stream.
struct Recognizer {
    params: StreamParams,
    detector: SpeechDetector,
    script: SttScript,
    next_text: usize,
    /// Start of the utterance in progress.
    speaking_since: Option<u64>,
    /// Audio time of the last `data` (what the next one covers starts here).
    last_final_ms: u64,
    processing_latency: f64,
}

impl Recognizer {
    fn new(params: StreamParams, config: &SarvamSttFakeConfig) -> Self {
        let detector = SpeechDetector::new(
            Some(Encoding::Pcm16),
            params.sample_rate,
            1,
            config.detector,
        );
        Self {
            params,
            detector,
            script: config.script.clone(),
            next_text: 0,
            speaking_since: None,
            last_final_ms: 0,
            processing_latency: config.latency.first_byte.as_secs_f64(),
        }
    }

    fn push_pcm(&mut self, pcm: &[u8], out: &mut Vec<Emission>) {
        let mut windows = Vec::new();
        self.detector.push(pcm, |d, w| {
            windows.push((w.onset_ms, d.silence_ms(), w.end_ms))
        });
        for (onset, silence, now) in windows {
            if onset.is_some() {
                self.speaking_since = onset;
                if self.params.vad_signals {
                    out.push(signal("START_SPEECH"));
                }
            }
            if self.speaking_since.is_some() && silence >= self.params.end_silence_ms {
                if self.params.vad_signals {
                    out.push(signal("END_SPEECH"));
                }
                self.final_transcript(now, out);
            }
        }
    }

    /// A client `flush`: the utterance so far (or nothing) becomes a `data` now.
    fn flush(&mut self, out: &mut Vec<Emission>) {
        let now = self.detector.now_ms();
        self.final_transcript(now, out);
    }

    fn final_transcript(&mut self, now: u64, out: &mut Vec<Emission>) {
        let transcript = if self.speaking_since.take().is_some() {
            let text = self.script.utterance(self.next_text).to_owned();
            self.next_text += 1;
            text
        } else {
            String::new()
        };
        self.detector.end_span();
        let language = if self.params.language == "unknown" {
            "hi-IN"
        } else {
            self.params.language.as_str()
        };
        let duration = (now - self.last_final_ms) as f64 / 1000.0;
        self.last_final_ms = now;
        let data = json!({"type": "data", "data": {
            "request_id": request_id(),
            "transcript": transcript,
            "timestamps": null,
            "diarized_transcript": null,
            "language_code": language,
            "language_probability": if self.params.language == "unknown" { json!(0.97) } else { Value::Null },
            "metrics": {"audio_duration": duration, "processing_latency": self.processing_latency},
        }});
        out.push(Emission {
            is_final: true,
            text: data.to_string(),
        });
    }
}

fn signal(kind: &str) -> Emission {
    let now = ::time::OffsetDateTime::now_utc();
    let occured_at = now.unix_timestamp_nanos() as f64 / 1e9;
    Emission {
        is_final: false,
        // Sarvam's spelling: `occured_at`.
        text: json!({"type": "events", "data": {"signal_type": kind, "occured_at": occured_at}})
            .to_string(),
    }
}

fn error_message(message: &str, code: &str) -> Emission {
    Emission {
        is_final: false,
        text: json!({"type": "error", "data": {"error": message, "code": code}}).to_string(),
    }
}

#[derive(Deserialize)]
struct ClientMessage {
    audio: Option<AudioPayload>,
    #[serde(rename = "type")]
    kind: Option<String>,
}

#[derive(Deserialize)]
struct AudioPayload {
    data: Option<String>,
    sample_rate: Option<Value>,
    encoding: Option<String>,
}

/// Checks an audio message and returns its PCM16 bytes.
fn audio_pcm(payload: AudioPayload, params: &StreamParams) -> Result<Vec<u8>, String> {
    let encoding = payload.encoding.unwrap_or_else(|| "audio/wav".to_owned());
    let format = encoding.strip_prefix("audio/").unwrap_or_default();
    if !matches!(format, "wav" | "x-wav" | "wave") && !CODECS.contains(&format) {
        return Err(format!(
            "Invalid audio format: {encoding} (streaming accepts wav or raw PCM)"
        ));
    }
    let rate = match payload.sample_rate {
        None => None,
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => Some(
            s.parse::<u64>()
                .map_err(|_| format!("Invalid sample_rate: {s}"))?,
        ),
        Some(other) => return Err(format!("Invalid sample_rate: {other}")),
    };
    if let Some(rate) = rate
        && rate != u64::from(params.sample_rate)
    {
        return Err(format!(
            "sample_rate {rate} does not match the connection's {}",
            params.sample_rate
        ));
    }
    let data = payload
        .data
        .ok_or_else(|| "Missing audio data".to_owned())?;
    let bytes = BASE64
        .decode(data.as_bytes())
        .map_err(|e| format!("Audio data is not valid base64: {e}"))?;
    // Raw-PCM codecs are taken as they come; `wav` chunks may carry a RIFF header.
    if params.codec == "wav" {
        Ok(strip_wav_header(bytes))
    } else {
        Ok(bytes)
    }
}

/// A WAV chunk carries a RIFF header; headerless PCM (what Pipecat and we send) does not.
fn strip_wav_header(bytes: Vec<u8>) -> Vec<u8> {
    if bytes.len() < 12 || &bytes[0..4] != b"RIFF" || &bytes[8..12] != b"WAVE" {
        return bytes;
    }
    let mut at = 12;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let len = u32::from_le_bytes([bytes[at + 4], bytes[at + 5], bytes[at + 6], bytes[at + 7]])
            as usize;
        if id == b"data" {
            let end = (at + 8 + len).min(bytes.len());
            return bytes[at + 8..end].to_vec();
        }
        at += 8 + len + (len & 1);
    }
    Vec::new()
}

async fn serve_stream(
    mut socket: WebSocket,
    params: StreamParams,
    record: StreamRecord,
    fault: Option<StreamFault>,
    config: &SarvamSttFakeConfig,
) {
    let bytes_per_second = u64::from(params.sample_rate) * 2;
    let mut recognizer = Recognizer::new(params, config);
    let mut audio_bytes = 0u64;
    let mut emissions = Vec::new();
    let mut outbox = Outbox::default();
    let mut last_activity = Instant::now();
    let mut idle_check = time::interval(Duration::from_millis(250));
    // Finals are due exactly `latency` after their endpoint: a sub-millisecond timer.
    let mut wake = Deadline::new();
    let mut armed_for: Option<Instant> = None;

    loop {
        tokio::select! {
            incoming = socket.recv() => {
                let message = match incoming {
                    Some(Ok(message)) => message,
                    _ => {
                        record.update(|r| r.client_closed = true);
                        return;
                    }
                };
                last_activity = Instant::now();
                match message {
                    Message::Text(text) => {
                        match serde_json::from_str::<ClientMessage>(&text) {
                            Ok(ClientMessage { audio: Some(payload), .. }) => {
                                match audio_pcm(payload, &recognizer.params) {
                                    Ok(pcm) => {
                                        audio_bytes += pcm.len() as u64;
                                        let audio_ms = audio_bytes * 1000 / bytes_per_second;
                                        record.update(|r| {
                                            r.audio_messages += 1;
                                            r.audio_bytes = audio_bytes;
                                            r.audio_ms = audio_ms;
                                        });
                                        recognizer.push_pcm(&pcm, &mut emissions);
                                        match &fault {
                                            Some(StreamFault::CloseAfterAudio { audio_ms: at, code, reason }) if audio_ms >= *at => {
                                                close(&mut socket, &record, *code, reason).await;
                                                return;
                                            }
                                            Some(StreamFault::StallAfterAudio { audio_ms: at }) if audio_ms >= *at => {
                                                time::sleep(Duration::from_secs(60)).await;
                                                return;
                                            }
                                            _ => {}
                                        }
                                    }
                                    Err(problem) => {
                                        record.update(|r| r.rejected.push(problem.clone()));
                                        emissions.push(error_message(&problem, "invalid_request_error"));
                                    }
                                }
                            }
                            Ok(ClientMessage { kind: Some(kind), .. }) if kind == "flush" => {
                                record.update(|r| r.control.push(kind.clone()));
                                // Honoured only when the stream asked for flush signals.
                                if recognizer.params.flush_signal {
                                    recognizer.flush(&mut emissions);
                                }
                            }
                            Ok(ClientMessage { kind, .. }) => {
                                let problem = format!("Unsupported message type: {}", kind.as_deref().unwrap_or("<none>"));
                                record.update(|r| r.rejected.push(problem.clone()));
                                emissions.push(error_message(&problem, "invalid_request_error"));
                            }
                            Err(e) => {
                                let problem = format!("Invalid JSON message: {e}");
                                record.update(|r| r.rejected.push(problem.clone()));
                                emissions.push(error_message(&problem, "invalid_request_error"));
                            }
                        }
                    }
                    Message::Binary(_) => {
                        let problem = "Binary frames are not supported; send base64 audio in JSON".to_owned();
                        record.update(|r| r.rejected.push(problem.clone()));
                        emissions.push(error_message(&problem, "invalid_request_error"));
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
            _ = idle_check.tick(), if config.idle_timeout.is_some() => {
                if config.idle_timeout.is_some_and(|limit| last_activity.elapsed() >= limit) {
                    close(&mut socket, &record, 1000, "idle timeout").await;
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
    fn validates_stream_parameters() {
        let ok = StreamParams::parse(&query(&[
            ("language-code", "hi-IN"),
            ("model", "saaras:v3"),
            ("sample_rate", "8000"),
            ("input_audio_codec", "pcm_s16le"),
            ("vad_signals", "true"),
            ("flush_signal", "true"),
            ("high_vad_sensitivity", "true"),
        ]))
        .unwrap();
        assert_eq!(ok.sample_rate, 8000);
        assert_eq!(ok.end_silence_ms, 500);
        assert!(ok.vad_signals && ok.flush_signal);
        assert_eq!(ok.codec, "pcm_s16le");

        for bad in [
            vec![("language_code", "hi-IN")],
            vec![("language-code", "xx-YY")],
            vec![("language-code", "hi-IN"), ("sample_rate", "44100")],
            vec![("language-code", "hi-IN"), ("input_audio_codec", "mp3")],
            vec![("language-code", "hi-IN"), ("vad_signals", "yes")],
            vec![("language-code", "hi-IN"), ("model", "bulbul:v2")],
            vec![
                ("language-code", "hi-IN"),
                ("model", "saarika:v2.5"),
                ("mode", "translate"),
            ],
        ] {
            assert!(StreamParams::parse(&query(&bad)).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn checks_audio_messages() {
        let params = StreamParams::parse(&query(&[
            ("language-code", "hi-IN"),
            ("sample_rate", "8000"),
        ]))
        .unwrap();
        let payload = |data: &str, rate: Value, encoding: &str| AudioPayload {
            data: Some(data.to_owned()),
            sample_rate: Some(rate),
            encoding: Some(encoding.to_owned()),
        };
        let b64 = BASE64.encode([1u8, 0, 2, 0]);
        assert_eq!(
            audio_pcm(payload(&b64, json!(8000), "audio/wav"), &params).unwrap(),
            vec![1, 0, 2, 0]
        );
        assert!(audio_pcm(payload(&b64, json!("8000"), "audio/wav"), &params).is_ok());
        assert!(audio_pcm(payload(&b64, json!(16000), "audio/wav"), &params).is_err());
        assert!(audio_pcm(payload(&b64, json!(8000), "audio/mp3"), &params).is_err());
        assert!(audio_pcm(payload("!!!", json!(8000), "audio/wav"), &params).is_err());
    }

    #[test]
    fn strips_wav_headers() {
        let mut wav = b"RIFF\0\0\0\0WAVEfmt \x10\0\0\0".to_vec();
        wav.extend([0u8; 16]);
        wav.extend(b"data\x04\0\0\0");
        wav.extend([9u8, 0, 8, 0]);
        assert_eq!(strip_wav_header(wav), vec![9, 0, 8, 0]);
        assert_eq!(strip_wav_header(vec![5, 6]), vec![5, 6]);
    }
}
