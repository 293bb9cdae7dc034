//! Deepgram live streaming (`/v1/listen` over WebSocket).
//!
//! Telephony audio passes straight through: the call's μ-law (or PCM16) frames become binary
//! WebSocket frames without a copy or a transcode, because Deepgram takes the encoding and rate
//! as query parameters. Control messages (`KeepAlive`, `Finalize`, `CloseStream`) are text
//! frames: sent as binary, Deepgram would read them as audio. Protocol notes:
//! `shared/protocols/deepgram-stt.md`.

use std::borrow::Cow;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use serde::Deserialize;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::Utf8Bytes;
use tokio_tungstenite::tungstenite::handshake::client::Request;
use tokio_tungstenite::tungstenite::http::{HeaderMap, header};
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use url::Url;

use super::session::{self, Failure, Inbound, SessionOptions, Wire};
use super::socket::{self, refusal_error};
use super::{SpeechToText, SttEndpoint, SttError, SttEvent, SttParams, SttSession};
use crate::audio::Encoding;

/// The streaming path on Deepgram's API.
pub const LISTEN_PATH: &str = "/v1/listen";
/// Used when the call names no model.
pub const DEFAULT_MODEL: &str = "nova-3";

/// Deepgram features the server chooses (the call chooses model, language and endpointing).
#[derive(Debug, Clone)]
pub struct DeepgramOptions {
    /// Provisional results while the caller speaks (required for `UtteranceEnd`).
    pub interim_results: bool,
    /// `SpeechStarted` events: the earliest barge-in hint.
    pub vad_events: bool,
    pub smart_format: bool,
    pub punctuate: bool,
    pub session: SessionOptions,
}

impl Default for DeepgramOptions {
    fn default() -> Self {
        Self {
            interim_results: true,
            vad_events: true,
            smart_format: true,
            punctuate: true,
            session: SessionOptions::default(),
        }
    }
}

/// The Deepgram STT provider.
#[derive(Debug, Clone)]
pub struct DeepgramStt {
    endpoint: SttEndpoint,
    options: DeepgramOptions,
}

impl DeepgramStt {
    pub fn new(endpoint: SttEndpoint) -> Self {
        Self::with_options(endpoint, DeepgramOptions::default())
    }

    pub fn with_options(endpoint: SttEndpoint, options: DeepgramOptions) -> Self {
        Self { endpoint, options }
    }

    /// The `/v1/listen` URL (query included) for `params`.
    pub fn listen_url(&self, params: &SttParams) -> Result<Url, SttError> {
        let mut url = socket::websocket_url(&self.endpoint.base_url, LISTEN_PATH)?;
        let encoding = match params.format.encoding {
            Encoding::Mulaw => "mulaw",
            Encoding::Alaw => "alaw",
            Encoding::Pcm16 => "linear16",
        };
        let model = if params.model.is_empty() {
            DEFAULT_MODEL
        } else {
            &params.model
        };
        let options = &self.options;
        // UtteranceEnd only exists with interim results.
        let interim = options.interim_results || params.utterance_end_ms > 0;
        {
            let mut query = url.query_pairs_mut();
            query
                .append_pair("model", model)
                .append_pair("encoding", encoding)
                .append_pair("sample_rate", &params.format.sample_rate.to_string())
                .append_pair("channels", "1")
                .append_pair("interim_results", bool_str(interim))
                .append_pair("vad_events", bool_str(options.vad_events))
                .append_pair("smart_format", bool_str(options.smart_format))
                .append_pair("punctuate", bool_str(options.punctuate));
            if !params.language.is_empty() {
                query.append_pair("language", &params.language);
            }
            if params.endpointing_ms > 0 {
                query.append_pair("endpointing", &params.endpointing_ms.to_string());
            } else {
                query.append_pair("endpointing", "false");
            }
            if params.utterance_end_ms > 0 {
                query.append_pair("utterance_end_ms", &params.utterance_end_ms.to_string());
            }
        }
        Ok(url)
    }
}

fn bool_str(value: bool) -> &'static str {
    if value { "true" } else { "false" }
}

impl SpeechToText for DeepgramStt {
    fn connect(&self, params: SttParams) -> BoxFuture<'static, Result<SttSession, SttError>> {
        let wire = self.listen_url(&params).map(|url| DeepgramWire {
            url,
            authorization: format!("Token {}", self.endpoint.api_key),
        });
        let options = self.options.session.clone();
        let format = params.format;
        Box::pin(async move { session::start(wire?, format, options).await })
    }
}

/// Deepgram's side of the session.
struct DeepgramWire {
    url: Url,
    authorization: String,
}

const KEEP_ALIVE: &str = r#"{"type":"KeepAlive"}"#;
const FINALIZE: &str = r#"{"type":"Finalize"}"#;
const CLOSE_STREAM: &str = r#"{"type":"CloseStream"}"#;

impl Wire for DeepgramWire {
    const PROVIDER: &'static str = "deepgram";

    fn request(&self) -> Result<Request, SttError> {
        socket::upgrade_request(&self.url, &[(header::AUTHORIZATION, &self.authorization)])
    }

    fn refused(&self, status: u16, headers: &HeaderMap, body: &[u8]) -> SttError {
        refusal_error(status, refusal_message(status, headers, body))
    }

    fn audio(&mut self, audio: Bytes) -> Message {
        Message::Binary(audio)
    }

    fn finalize(&mut self) -> Message {
        Message::Text(Utf8Bytes::from_static(FINALIZE))
    }

    fn keepalive(&mut self) -> Message {
        Message::Text(Utf8Bytes::from_static(KEEP_ALIVE))
    }

    fn close_stream(&mut self) -> Message {
        Message::Text(Utf8Bytes::from_static(CLOSE_STREAM))
    }

    fn inbound(&mut self, text: &str) -> Inbound {
        parse_message(text)
    }

    fn closed_by_provider(&self, frame: Option<&CloseFrame>) -> Failure {
        close_failure(frame)
    }
}

/// Deepgram explains a refused upgrade in the `dg-error` header (and again in the JSON body).
fn refusal_message(status: u16, headers: &HeaderMap, body: &[u8]) -> String {
    if let Some(text) = headers.get("dg-error").and_then(|v| v.to_str().ok())
        && !text.is_empty()
    {
        return text.to_owned();
    }
    #[derive(Deserialize)]
    struct Body {
        err_msg: Option<String>,
    }
    if let Ok(Body { err_msg: Some(m) }) = serde_json::from_slice::<Body>(body) {
        return m;
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

/// Close codes mid-stream: `DATA-*` means Deepgram cannot decode our audio (the same audio on
/// a new socket would fail again); anything else (`NET-*`, an unexpected 1000) is worth a new
/// socket.
fn close_failure(frame: Option<&CloseFrame>) -> Failure {
    let Some(frame) = frame else {
        return Failure::Retry(SttError::Closed("closed without a reason".to_owned()));
    };
    let code = u16::from(frame.code);
    let reason = frame.reason.as_str();
    if reason.starts_with("DATA-") || code == 1008 || code == 1002 {
        Failure::Fatal(SttError::Rejected {
            status: code,
            message: reason.to_owned(),
        })
    } else {
        Failure::Retry(SttError::Closed(format!("{code} {reason}")))
    }
}

#[derive(Deserialize)]
struct Kind<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
}

#[derive(Deserialize)]
struct Results {
    #[serde(default)]
    is_final: bool,
    #[serde(default)]
    speech_final: bool,
    #[serde(default)]
    from_finalize: bool,
    channel: Option<ResultChannel>,
}

#[derive(Deserialize)]
struct ResultChannel {
    #[serde(default)]
    alternatives: Vec<Alternative>,
}

#[derive(Deserialize)]
struct Alternative {
    #[serde(default)]
    transcript: String,
}

/// Reads one server message. Unknown types and extra fields are ignored; malformed JSON is
/// logged and skipped.
fn parse_message(text: &str) -> Inbound {
    let kind = match serde_json::from_str::<Kind>(text) {
        Ok(k) => k.kind,
        Err(error) => {
            tracing::warn!(%error, "deepgram sent an unreadable message; skipped");
            return Inbound::Ignore;
        }
    };
    match kind.as_ref() {
        "Results" => match serde_json::from_str::<Results>(text) {
            Ok(results) => results_event(results),
            Err(error) => {
                tracing::warn!(%error, "deepgram sent malformed Results; skipped");
                Inbound::Ignore
            }
        },
        "SpeechStarted" => Inbound::Event(SttEvent::SpeechStarted),
        "UtteranceEnd" => Inbound::Event(SttEvent::UtteranceEnd),
        "Metadata" => Inbound::Ignore,
        other => {
            tracing::debug!(kind = other, "ignoring deepgram message");
            Inbound::Ignore
        }
    }
}

fn results_event(results: Results) -> Inbound {
    let text = results
        .channel
        .and_then(|c| c.alternatives.into_iter().next())
        .map(|a| a.transcript)
        .unwrap_or_default();
    // An empty preview says nothing; an empty final matters only when it marks an endpoint or
    // answers a Finalize.
    let meaningful =
        !text.is_empty() || (results.is_final && (results.speech_final || results.from_finalize));
    if !meaningful {
        return Inbound::Ignore;
    }
    Inbound::Event(SttEvent::Transcript {
        text,
        is_final: results.is_final,
        speech_final: results.speech_final,
        from_finalize: results.from_finalize,
    })
}

/// Reads server text messages as a live socket's session does, one per item: what each one
/// carries for the call (`None`: nothing). The entry point of the fuzz target (`fuzz/`).
#[doc(hidden)]
pub fn read_server_messages<'a>(
    messages: impl IntoIterator<Item = &'a str>,
) -> Vec<Option<SttEvent>> {
    let mut wire = DeepgramWire {
        url: Url::parse("wss://api.deepgram.com/v1/listen").expect("a fixed URL"),
        authorization: String::new(),
    };
    messages
        .into_iter()
        .map(|text| match wire.inbound(text) {
            Inbound::Event(event) => Some(event),
            Inbound::Ignore | Inbound::Fail(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::AudioFormat;
    use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

    fn stt(base: &str) -> DeepgramStt {
        DeepgramStt::new(SttEndpoint {
            base_url: base.to_owned(),
            api_key: "k".to_owned(),
        })
    }

    fn params() -> SttParams {
        SttParams {
            format: AudioFormat::MULAW_8K,
            model: String::new(),
            language: "en".to_owned(),
            endpointing_ms: 300,
            utterance_end_ms: 1000,
        }
    }

    #[test]
    fn listen_url_carries_the_stream_settings() {
        let url = stt("https://api.deepgram.com")
            .listen_url(&params())
            .unwrap();
        assert_eq!(url.scheme(), "wss");
        assert_eq!(url.path(), "/v1/listen");
        let query: Vec<(String, String)> = url.query_pairs().into_owned().collect();
        let get = |k: &str| {
            query
                .iter()
                .find(|(key, _)| key == k)
                .map(|(_, v)| v.as_str())
        };
        assert_eq!(get("model"), Some("nova-3"));
        assert_eq!(get("encoding"), Some("mulaw"));
        assert_eq!(get("sample_rate"), Some("8000"));
        assert_eq!(get("channels"), Some("1"));
        assert_eq!(get("interim_results"), Some("true"));
        assert_eq!(get("endpointing"), Some("300"));
        assert_eq!(get("utterance_end_ms"), Some("1000"));
        assert_eq!(get("vad_events"), Some("true"));
        assert_eq!(get("language"), Some("en"));
    }

    #[test]
    fn linear16_and_disabled_endpointing() {
        let mut p = params();
        p.format = AudioFormat::PCM16_16K;
        p.endpointing_ms = 0;
        p.utterance_end_ms = 0;
        let url = stt("http://127.0.0.1:1").listen_url(&p).unwrap();
        let q = url.query().unwrap();
        assert!(q.contains("encoding=linear16"), "{q}");
        assert!(q.contains("sample_rate=16000"), "{q}");
        assert!(q.contains("endpointing=false"), "{q}");
        assert!(!q.contains("utterance_end_ms"), "{q}");
    }

    fn event(text: &str) -> Option<SttEvent> {
        match parse_message(text) {
            Inbound::Event(e) => Some(e),
            Inbound::Ignore => None,
            Inbound::Fail(f) => panic!("unexpected failure {f:?}"),
        }
    }

    #[test]
    fn parses_server_messages() {
        let results = r#"{"type":"Results","channel_index":[0,1],"duration":1.5,"start":0.0,
            "is_final":true,"speech_final":true,"from_finalize":false,
            "channel":{"alternatives":[{"transcript":"hello there","confidence":0.9,"words":[]}]},
            "metadata":{"request_id":"x"},"extra":{"ignored":true}}"#;
        assert_eq!(
            event(results),
            Some(SttEvent::Transcript {
                text: "hello there".into(),
                is_final: true,
                speech_final: true,
                from_finalize: false
            })
        );
        assert_eq!(
            event(r#"{"type":"SpeechStarted","channel":[0,1],"timestamp":1.2}"#),
            Some(SttEvent::SpeechStarted)
        );
        assert_eq!(
            event(r#"{"type":"UtteranceEnd","channel":[0,1],"last_word_end":2.0}"#),
            Some(SttEvent::UtteranceEnd)
        );
        assert_eq!(
            event(r#"{"type":"Metadata","request_id":"x","duration":1.0}"#),
            None
        );
        assert_eq!(event(r#"{"type":"SomethingNew","x":1}"#), None);
    }

    #[test]
    fn skips_malformed_and_empty_messages() {
        assert_eq!(event("not json"), None);
        assert_eq!(event(r#"{"no_type":1}"#), None);
        assert_eq!(event(r#"{"type":"Results","channel":"oops"}"#), None);
        assert_eq!(
            event(
                r#"{"type":"Results","is_final":false,"channel":{"alternatives":[{"transcript":""}]}}"#
            ),
            None,
            "an empty preview carries nothing"
        );
        assert_eq!(
            event(
                r#"{"type":"Results","is_final":true,"from_finalize":true,"channel":{"alternatives":[{"transcript":""}]}}"#
            ),
            Some(SttEvent::Transcript {
                text: String::new(),
                is_final: true,
                speech_final: false,
                from_finalize: true
            }),
            "the answer to a Finalize counts even when empty"
        );
    }

    #[test]
    fn classifies_close_frames() {
        let frame = |code: u16, reason: &'static str| CloseFrame {
            code: CloseCode::from(code),
            reason: Utf8Bytes::from_static(reason),
        };
        assert!(matches!(
            close_failure(Some(&frame(1011, "NET-0001"))),
            Failure::Retry(_)
        ));
        assert!(matches!(
            close_failure(Some(&frame(1008, "DATA-0000"))),
            Failure::Fatal(SttError::Rejected { status: 1008, .. })
        ));
        assert!(matches!(close_failure(None), Failure::Retry(_)));
    }

    #[test]
    fn refusal_message_prefers_dg_error() {
        let mut headers = HeaderMap::new();
        headers.insert("dg-error", "Invalid credentials.".parse().unwrap());
        assert_eq!(
            refusal_message(401, &headers, b"{}"),
            "Invalid credentials."
        );
        assert_eq!(
            refusal_message(
                400,
                &HeaderMap::new(),
                br#"{"err_code":"Bad Request","err_msg":"bad encoding"}"#
            ),
            "bad encoding"
        );
        assert_eq!(
            refusal_message(503, &HeaderMap::new(), b""),
            "Service Unavailable"
        );
    }
}
