//! Sarvam streaming STT (`/speech-to-text/ws`).
//!
//! Sarvam takes PCM16 (8 or 16 kHz) as base64 inside JSON text messages, not μ-law and not
//! binary frames: telephone audio is decoded with [`crate::audio::g711`] on the way (8 kHz is
//! accepted as is, so no resampling). Each frame is decoded and base64-encoded straight into a
//! reused buffer, so the per-frame cost is arithmetic, not allocation. Sarvam answers with VAD
//! events and one final transcript per utterance (or per `flush`); there are no interim
//! results. Protocol notes: `shared/protocols/sarvam.md` §0 and §5.

use std::borrow::Cow;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::{BufMut, Bytes, BytesMut};
use futures_util::future::BoxFuture;
use serde::Deserialize;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::{HeaderMap, HeaderName};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use url::Url;

use super::session::{self, Failure, Inbound, SessionOptions, Wire};
use super::socket::{self, refusal_error};
use super::{SpeechToText, SttEndpoint, SttError, SttEvent, SttParams, SttSession};
use crate::audio::g711::{alaw_decode, mulaw_decode};
use crate::audio::{AudioFormat, Encoding};

/// The streaming path on Sarvam's API.
pub const STREAM_PATH: &str = "/speech-to-text/ws";
/// Used when the call names no model.
pub const DEFAULT_MODEL: &str = "saaras:v3";
/// The auth header of every Sarvam API.
pub const KEY_HEADER: &str = "api-subscription-key";

/// Sarvam features the server chooses.
#[derive(Debug, Clone)]
pub struct SarvamOptions {
    /// `START_SPEECH`/`END_SPEECH` events (barge-in hints).
    pub vad_signals: bool,
    /// Sarvam ends an utterance after ~0.5 s of silence with high sensitivity, ~1 s without.
    /// `None` derives it from the call's `endpointing_ms` (below 1000 ms: high).
    pub high_vad_sensitivity: Option<bool>,
    /// saaras:v3 mode (`transcribe`, `translate`, `verbatim`, `translit`, `codemix`).
    pub mode: Option<String>,
    pub session: SessionOptions,
}

impl Default for SarvamOptions {
    fn default() -> Self {
        Self {
            vad_signals: true,
            high_vad_sensitivity: None,
            mode: None,
            session: SessionOptions::default(),
        }
    }
}

/// The Sarvam STT provider.
#[derive(Debug, Clone)]
pub struct SarvamStt {
    endpoint: SttEndpoint,
    options: SarvamOptions,
}

impl SarvamStt {
    pub fn new(endpoint: SttEndpoint) -> Self {
        Self::with_options(endpoint, SarvamOptions::default())
    }

    pub fn with_options(endpoint: SttEndpoint, options: SarvamOptions) -> Self {
        Self { endpoint, options }
    }

    /// The `/speech-to-text/ws` URL (query included) for `params`.
    pub fn stream_url(&self, params: &SttParams) -> Result<Url, SttError> {
        let rate = params.format.sample_rate;
        if rate != 8000 && rate != 16_000 {
            return Err(SttError::Config(format!(
                "Sarvam streaming STT takes 8000 or 16000 Hz audio, not {rate} Hz"
            )));
        }
        let mut url = socket::websocket_url(&self.endpoint.base_url, STREAM_PATH)?;
        let model = if params.model.is_empty() {
            DEFAULT_MODEL
        } else {
            &params.model
        };
        let language = if params.language.is_empty() {
            "unknown"
        } else {
            &params.language
        };
        let high_sensitivity = self
            .options
            .high_vad_sensitivity
            .unwrap_or(params.endpointing_ms > 0 && params.endpointing_ms < 1000);
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("language-code", language)
                .append_pair("model", model)
                .append_pair("sample_rate", &rate.to_string())
                // Headerless PCM must be declared, or Sarvam looks for a WAV header.
                .append_pair("input_audio_codec", "pcm_s16le")
                .append_pair("high_vad_sensitivity", bool_str(high_sensitivity))
                .append_pair("vad_signals", bool_str(self.options.vad_signals))
                // Always on: `SttInput::Finalize` and the close both rely on `flush`.
                .append_pair("flush_signal", "true");
            if let Some(mode) = &self.options.mode {
                query.append_pair("mode", mode);
            }
        }
        Ok(url)
    }
}

fn bool_str(value: bool) -> &'static str {
    if value { "true" } else { "false" }
}

impl SpeechToText for SarvamStt {
    fn connect(&self, params: SttParams) -> BoxFuture<'static, Result<SttSession, SttError>> {
        let wire = self
            .stream_url(&params)
            .map(|url| SarvamWire::new(url, self.endpoint.api_key.clone(), params.format));
        let options = self.options.session.clone();
        let format = params.format;
        Box::pin(async move { session::start(wire?, format, options).await })
    }
}

/// Sarvam's side of the session.
struct SarvamWire {
    url: Url,
    key: String,
    input: AudioFormat,
    /// Where each audio message is built; its allocation is reused once the previous message
    /// has been written out.
    scratch: BytesMut,
    /// `","sample_rate":8000,"encoding":"audio/wav"}}`: the fixed tail of every audio message.
    tail: Box<[u8]>,
    /// 20 ms of silence as an audio message: Sarvam has no keep-alive message.
    silence: Utf8Bytes,
    /// Flushes sent on this socket and not yet answered by a `data` message.
    flushes_pending: u32,
    closing: bool,
}

const AUDIO_HEAD: &[u8] = br#"{"audio":{"data":""#;
const FLUSH: &str = r#"{"type":"flush"}"#;
/// Samples decoded per step: 96 bytes of PCM, a multiple of 3, so base64 needs no padding
/// between steps.
const STEP_SAMPLES: usize = 48;

impl SarvamWire {
    fn new(url: Url, key: String, input: AudioFormat) -> Self {
        let tail = format!(
            r#"","sample_rate":{},"encoding":"audio/wav"}}}}"#,
            input.sample_rate
        )
        .into_bytes()
        .into_boxed_slice();
        let mut wire = Self {
            url,
            key,
            input,
            scratch: BytesMut::new(),
            tail,
            silence: Utf8Bytes::from_static(""),
            flushes_pending: 0,
            closing: false,
        };
        let pcm_format = AudioFormat::new(Encoding::Pcm16, input.sample_rate);
        let silent_pcm = vec![0u8; pcm_format.bytes_per_ms(20)];
        wire.silence = wire.audio_text(&silent_pcm, pcm_format);
        wire
    }

    /// Builds `{"audio":{"data":"<base64 PCM16>","sample_rate":R,"encoding":"audio/wav"}}`.
    fn audio_text(&mut self, audio: &[u8], format: AudioFormat) -> Utf8Bytes {
        let samples = audio.len() / format.encoding.bytes_per_sample();
        let encoded_len = (samples * 2).div_ceil(3) * 4;
        let buf = &mut self.scratch;
        buf.reserve(AUDIO_HEAD.len() + encoded_len + self.tail.len());
        buf.put_slice(AUDIO_HEAD);
        match format.encoding {
            Encoding::Pcm16 => encode_into(buf, &audio[..samples * 2]),
            Encoding::Mulaw => encode_decoded(buf, audio, mulaw_decode),
            Encoding::Alaw => encode_decoded(buf, audio, alaw_decode),
        }
        buf.put_slice(&self.tail);
        let bytes: Bytes = buf.split().freeze();
        // Only ASCII was written: the head, base64 and the tail.
        Utf8Bytes::try_from(bytes).unwrap_or_else(|_| Utf8Bytes::from_static(""))
    }
}

/// Appends base64 of `pcm` to `buf`.
fn encode_into(buf: &mut BytesMut, pcm: &[u8]) {
    let start = buf.len();
    let encoded = pcm.len().div_ceil(3) * 4;
    buf.resize(start + encoded, 0);
    let written = BASE64
        .encode_slice(pcm, &mut buf[start..])
        .unwrap_or_default();
    buf.truncate(start + written);
}

/// Decodes G.711 bytes to PCM16 LE a few samples at a time (on the stack) and appends their
/// base64 to `buf`.
fn encode_decoded(buf: &mut BytesMut, g711: &[u8], decode: fn(u8) -> i16) {
    let mut pcm = [0u8; STEP_SAMPLES * 2];
    for chunk in g711.chunks(STEP_SAMPLES) {
        for (i, &byte) in chunk.iter().enumerate() {
            pcm[i * 2..i * 2 + 2].copy_from_slice(&decode(byte).to_le_bytes());
        }
        encode_into(buf, &pcm[..chunk.len() * 2]);
    }
}

impl Wire for SarvamWire {
    const PROVIDER: &'static str = "sarvam";

    fn request(&self) -> Result<Request, SttError> {
        socket::upgrade_request(
            &self.url,
            &[(HeaderName::from_static(KEY_HEADER), &self.key)],
        )
    }

    fn refused(&self, status: u16, _headers: &HeaderMap, body: &[u8]) -> SttError {
        refusal_error(status, refusal_message(status, body))
    }

    fn audio(&mut self, audio: Bytes) -> Message {
        let format = self.input;
        Message::Text(self.audio_text(&audio, format))
    }

    fn finalize(&mut self) -> Message {
        self.flushes_pending += 1;
        Message::Text(Utf8Bytes::from_static(FLUSH))
    }

    fn keepalive(&mut self) -> Message {
        Message::Text(self.silence.clone())
    }

    fn close_stream(&mut self) -> Message {
        // Sarvam has no end-of-stream message: a flush brings the tail's transcript, then the
        // session closes the socket itself.
        self.closing = true;
        self.finalize()
    }

    fn inbound(&mut self, text: &str) -> Inbound {
        match parse_message(text) {
            Inbound::Event(SttEvent::Transcript {
                text,
                is_final,
                speech_final,
                ..
            }) => {
                // Sarvam does not say which `data` answers a flush: the first one after it does.
                let answered = self.flushes_pending > 0;
                self.flushes_pending = self.flushes_pending.saturating_sub(1);
                Inbound::Event(SttEvent::Transcript {
                    text,
                    is_final,
                    speech_final,
                    from_finalize: answered,
                })
            }
            other => other,
        }
    }

    fn closed_by_provider(&self, frame: Option<&CloseFrame>) -> Failure {
        match frame {
            Some(frame) if u16::from(frame.code) == 1008 => Failure::Fatal(SttError::Rejected {
                status: 1008,
                message: frame.reason.to_string(),
            }),
            Some(frame) => Failure::Retry(SttError::Closed(format!(
                "{} {}",
                u16::from(frame.code),
                frame.reason
            ))),
            None => Failure::Retry(SttError::Closed("closed without a reason".to_owned())),
        }
    }

    fn drained(&self) -> bool {
        self.closing && self.flushes_pending == 0
    }

    fn reset(&mut self) {
        self.flushes_pending = 0;
    }
}

/// Sarvam's error body: `{"error": {"message": "...", "code": "invalid_api_key_error"}}`.
fn refusal_message(status: u16, body: &[u8]) -> String {
    #[derive(Deserialize)]
    struct Body {
        error: Option<ErrorBody>,
    }
    #[derive(Deserialize)]
    struct ErrorBody {
        message: Option<String>,
        code: Option<String>,
    }
    if let Ok(Body {
        error: Some(ErrorBody { message, code }),
    }) = serde_json::from_slice::<Body>(body)
    {
        match (message, code) {
            (Some(m), Some(c)) => return format!("{m} ({c})"),
            (Some(m), None) => return m,
            (None, Some(c)) => return c,
            (None, None) => {}
        }
    }
    let text = String::from_utf8_lossy(body);
    if !text.trim().is_empty() {
        return text.trim().chars().take(200).collect();
    }
    tokio_tungstenite::tungstenite::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("refused")
        .to_owned()
}

#[derive(Deserialize)]
struct Kind<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
}

#[derive(Deserialize)]
struct Envelope<T> {
    data: T,
}

#[derive(Deserialize)]
struct Transcription {
    #[serde(default)]
    transcript: String,
}

#[derive(Deserialize)]
struct Signal {
    signal_type: Option<String>,
    event_type: Option<String>,
}

#[derive(Deserialize)]
struct ErrorData {
    error: Option<String>,
    message: Option<String>,
    code: Option<serde_json::Value>,
}

/// Reads one server message; unknown types and fields are ignored, malformed JSON skipped.
fn parse_message(text: &str) -> Inbound {
    let kind = match serde_json::from_str::<Kind>(text) {
        Ok(k) => k.kind,
        Err(error) => {
            tracing::warn!(%error, "sarvam sent an unreadable message; skipped");
            return Inbound::Ignore;
        }
    };
    match kind.as_ref() {
        "data" => match serde_json::from_str::<Envelope<Transcription>>(text) {
            // Finals only: one per utterance, an endpoint by definition (possibly empty).
            Ok(Envelope { data }) => Inbound::Event(SttEvent::Transcript {
                text: data.transcript,
                is_final: true,
                speech_final: true,
                from_finalize: false,
            }),
            Err(error) => {
                tracing::warn!(%error, "sarvam sent a malformed transcript; skipped");
                Inbound::Ignore
            }
        },
        "events" => match serde_json::from_str::<Envelope<Signal>>(text) {
            Ok(Envelope { data }) => match data.signal_type.or(data.event_type).as_deref() {
                Some("START_SPEECH") => Inbound::Event(SttEvent::SpeechStarted),
                Some("END_SPEECH") => Inbound::Event(SttEvent::SpeechEnded),
                _ => Inbound::Ignore,
            },
            Err(error) => {
                tracing::warn!(%error, "sarvam sent a malformed event; skipped");
                Inbound::Ignore
            }
        },
        "error" => {
            let (message, code) = match serde_json::from_str::<Envelope<ErrorData>>(text) {
                Ok(Envelope { data }) => (
                    data.error.or(data.message).unwrap_or_default(),
                    match data.code {
                        Some(serde_json::Value::String(s)) => s,
                        Some(other) => other.to_string(),
                        None => String::new(),
                    },
                ),
                Err(_) => (text.chars().take(200).collect(), String::new()),
            };
            Inbound::Fail(error_failure(&code, message))
        }
        other => {
            tracing::debug!(kind = other, "ignoring sarvam message");
            Inbound::Ignore
        }
    }
}

/// A stream-level error. A request Sarvam rejects would be rejected again on a new socket;
/// server-side trouble may pass.
fn error_failure(code: &str, message: String) -> Failure {
    let message = if code.is_empty() {
        message
    } else {
        format!("{message} ({code})")
    };
    match code {
        "invalid_request_error" | "unprocessable_entity_error" | "400" | "422" => {
            Failure::Fatal(SttError::Rejected {
                status: if code.contains("unprocessable") || code == "422" {
                    422
                } else {
                    400
                },
                message,
            })
        }
        "invalid_api_key_error" | "403" => Failure::Fatal(SttError::Unauthorized {
            status: 403,
            message,
        }),
        "insufficient_quota_error" => Failure::Fatal(SttError::RateLimited { message }),
        "rate_limit_exceeded_error" | "429" => Failure::Retry(SttError::RateLimited { message }),
        _ => Failure::Retry(SttError::Unavailable(message)),
    }
}

/// Reads server text messages as a live socket's session does (after one `flush`), one per
/// item: the event each carries (`Ok(None)`: nothing), or the failure it reports. The entry
/// point of the fuzz target (`fuzz/`).
#[doc(hidden)]
pub fn read_server_messages<'a>(
    messages: impl IntoIterator<Item = &'a str>,
) -> Vec<Result<Option<SttEvent>, SttError>> {
    let url = Url::parse("wss://api.sarvam.ai/speech-to-text/ws").expect("a fixed URL");
    let mut wire = SarvamWire::new(url, String::new(), AudioFormat::MULAW_8K);
    let _ = wire.finalize();
    messages
        .into_iter()
        .map(|text| match wire.inbound(text) {
            Inbound::Event(event) => Ok(Some(event)),
            Inbound::Ignore => Ok(None),
            Inbound::Fail(Failure::Retry(e) | Failure::Fatal(e)) => Err(e),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::g711::mulaw_encode;

    fn wire(format: AudioFormat) -> SarvamWire {
        SarvamWire::new(
            Url::parse("ws://127.0.0.1:1/speech-to-text/ws").unwrap(),
            "k".into(),
            format,
        )
    }

    fn audio_payload(message: Message) -> (Vec<u8>, serde_json::Value) {
        let Message::Text(text) = message else {
            panic!("audio must be a text message");
        };
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let data = value["audio"]["data"].as_str().unwrap();
        (BASE64.decode(data).unwrap(), value)
    }

    #[test]
    fn mulaw_frames_become_base64_pcm16() {
        let samples: Vec<i16> = (0..160).map(|i| ((i * 97) % 4000 - 2000) as i16).collect();
        let mulaw: Vec<u8> = samples.iter().map(|&s| mulaw_encode(s)).collect();
        let mut w = wire(AudioFormat::MULAW_8K);
        for _ in 0..3 {
            let (pcm, value) = audio_payload(w.audio(Bytes::from(mulaw.clone())));
            assert_eq!(pcm.len(), 320);
            let decoded: Vec<i16> = pcm
                .chunks(2)
                .map(|c| i16::from_le_bytes([c[0], c[1]]))
                .collect();
            let expected: Vec<i16> = mulaw.iter().map(|&b| mulaw_decode(b)).collect();
            assert_eq!(decoded, expected);
            assert_eq!(value["audio"]["sample_rate"], 8000);
            assert_eq!(value["audio"]["encoding"], "audio/wav");
        }
    }

    #[test]
    fn audio_messages_reuse_one_buffer() {
        let mut w = wire(AudioFormat::MULAW_8K);
        let frame = vec![0x55u8; 160];
        let first = w.audio_text(&frame, AudioFormat::MULAW_8K);
        let address = first.as_ptr();
        // The socket drops each message once it is written; the next one reuses the memory.
        drop(first);
        for _ in 0..10 {
            let next = w.audio_text(&frame, AudioFormat::MULAW_8K);
            assert_eq!(next.as_ptr(), address, "no allocation per frame");
        }
    }

    #[test]
    fn pcm16_frames_pass_through() {
        let pcm: Vec<u8> = (0..640u32).map(|i| (i % 251) as u8).collect();
        let mut w = wire(AudioFormat::PCM16_16K);
        let (decoded, value) = audio_payload(w.audio(Bytes::from(pcm.clone())));
        assert_eq!(decoded, pcm);
        assert_eq!(value["audio"]["sample_rate"], 16000);
    }

    #[test]
    fn stream_url_has_sarvam_query() {
        let stt = SarvamStt::new(SttEndpoint {
            base_url: "https://api.sarvam.ai".into(),
            api_key: "k".into(),
        });
        let params = SttParams {
            format: AudioFormat::MULAW_8K,
            model: String::new(),
            language: "hi-IN".into(),
            endpointing_ms: 300,
            utterance_end_ms: 1000,
        };
        let url = stt.stream_url(&params).unwrap();
        assert_eq!(
            url.as_str().split('?').next().unwrap(),
            "wss://api.sarvam.ai/speech-to-text/ws"
        );
        let q = url.query().unwrap();
        for expected in [
            "language-code=hi-IN",
            "model=saaras%3Av3",
            "sample_rate=8000",
            "input_audio_codec=pcm_s16le",
            "vad_signals=true",
            "flush_signal=true",
            "high_vad_sensitivity=true",
        ] {
            assert!(q.contains(expected), "{expected} missing from {q}");
        }
        let mut wrong = params.clone();
        wrong.format = AudioFormat::new(Encoding::Pcm16, 24_000);
        assert!(matches!(stt.stream_url(&wrong), Err(SttError::Config(_))));
    }

    #[test]
    fn parses_server_messages() {
        let mut w = wire(AudioFormat::MULAW_8K);
        let ev = |w: &mut SarvamWire, t: &str| match w.inbound(t) {
            Inbound::Event(e) => Some(e),
            _ => None,
        };
        assert_eq!(
            ev(
                &mut w,
                r#"{"type":"events","data":{"signal_type":"START_SPEECH","occured_at":1.0}}"#
            ),
            Some(SttEvent::SpeechStarted)
        );
        assert_eq!(
            ev(
                &mut w,
                r#"{"type":"events","data":{"signal_type":"END_SPEECH","occured_at":2.0}}"#
            ),
            Some(SttEvent::SpeechEnded)
        );
        let data = r#"{"type":"data","data":{"request_id":"r","transcript":"नमस्ते","language_code":"hi-IN","metrics":{"audio_duration":1.0}}}"#;
        assert_eq!(
            ev(&mut w, data),
            Some(SttEvent::Transcript {
                text: "नमस्ते".into(),
                is_final: true,
                speech_final: true,
                from_finalize: false
            })
        );
        let _ = w.finalize();
        assert_eq!(
            ev(&mut w, data),
            Some(SttEvent::Transcript {
                text: "नमस्ते".into(),
                is_final: true,
                speech_final: true,
                from_finalize: true
            }),
            "the first data after a flush answers it"
        );
        assert_eq!(ev(&mut w, "garbage"), None);
        assert_eq!(ev(&mut w, r#"{"type":"data","data":7}"#), None);
        assert_eq!(ev(&mut w, r#"{"type":"whatever"}"#), None);
    }

    #[test]
    fn classifies_errors() {
        let fail = |t: &str| match parse_message(t) {
            Inbound::Fail(f) => f,
            _ => panic!("expected a failure for {t}"),
        };
        assert!(matches!(
            fail(
                r#"{"type":"error","data":{"error":"Invalid audio format","code":"invalid_request_error"}}"#
            ),
            Failure::Fatal(SttError::Rejected { status: 400, .. })
        ));
        assert!(matches!(
            fail(r#"{"type":"error","data":{"error":"busy","code":"internal_server_error"}}"#),
            Failure::Retry(SttError::Unavailable(_))
        ));
        assert!(matches!(
            fail(r#"{"type":"error","data":{"message":"slow down","code":429}}"#),
            Failure::Retry(SttError::RateLimited { .. })
        ));
    }

    #[test]
    fn refusal_reads_sarvam_error_body() {
        let body = br#"{"error":{"message":"Invalid API key","code":"invalid_api_key_error","request_id":"x"}}"#;
        assert_eq!(
            refusal_message(403, body),
            "Invalid API key (invalid_api_key_error)"
        );
        assert_eq!(refusal_message(500, b""), "Internal Server Error");
    }
}
