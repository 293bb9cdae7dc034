//! Text-to-speech: a provider-neutral streaming session over a provider's API.
//!
//! A [`TextToSpeech`] connects once per call and returns a [`TtsSession`]: commands in (speak
//! text for a generation, cancel a generation) and [`TtsEvent`]s out, each stamped with the
//! [`Generation`] it belongs to so that audio of a cancelled turn is dropped wherever it is.
//!
//! Providers: [`CartesiaTts`] (WebSocket, the low-latency default), [`CartesiaBytes`] (HTTP,
//! one request per turn), [`SarvamTts`] (WebSocket) and [`SarvamRest`] (HTTP). Each session is
//! one task that owns the provider link (the WebSocket providers share `socket_session.rs`, the
//! HTTP ones `http_session.rs`); it detects a stalled or closed link within
//! [`TtsTimeouts`], reports the turn that was in flight as failed and reconnects, so no call
//! ever waits for a `Done` that will not come.
//!
//! Guarantees every provider keeps: audio is in exactly [`TtsParams::output`]; PCM16 audio is
//! always whole samples; after `Cancel`, `Done` or `Failed` for a generation no further event of
//! that generation is emitted. In a call the audio goes straight to the call's writer
//! ([`TtsParams::playout`], see `output.rs`); the events carry only what the agent acts on.

pub mod cartesia;
pub mod cartesia_bytes;
mod health;
mod http_session;
mod output;
mod sample_carry;
pub mod sarvam;
pub mod sarvam_rest;
mod socket_session;
mod wav;
mod ws;

pub use cartesia::CartesiaTts;
pub use cartesia_bytes::CartesiaBytes;
pub use health::TtsTimeouts;
pub use sarvam::SarvamTts;
pub use sarvam_rest::SarvamRest;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use tokio::sync::mpsc;

use crate::assistant::TtsConfig;
use crate::audio::AudioFormat;
use crate::audio::playout::PlayoutItem;
use crate::generation::Generation;
use output::TtsOutput;

/// What a call asks of its TTS stream.
#[derive(Debug, Clone)]
pub struct TtsParams {
    /// The assistant's voice (provider, voice/speaker, language, optional per-assistant key).
    pub voice: TtsConfig,
    /// The format the transport plays (e.g. μ-law 8 kHz for Twilio): providers are asked for
    /// exactly this where they can produce it, so no transcoding happens.
    pub output: AudioFormat,
    /// The call's writer: audio goes there directly and the session's events announce it
    /// ([`TtsEvent::Started`]). `None`: audio comes as [`TtsEvent::Audio`] events.
    pub playout: Option<mpsc::Sender<PlayoutItem>>,
}

/// Server-side settings of one TTS provider.
#[derive(Debug, Clone)]
pub struct TtsEndpoint {
    /// `https://api.cartesia.ai`, a fake's `http://127.0.0.1:port`, ...; WebSocket URLs are
    /// derived from it.
    pub base_url: String,
    /// The server's key, used unless the assistant's voice carries its own.
    pub api_key: String,
    /// Default model (`sonic-3`, `bulbul:v2`, ...), unless the voice names one.
    pub model: String,
}

/// What the call sends to its TTS stream.
#[derive(Debug, Clone)]
pub enum TtsCommand {
    /// Append `text` to the utterance of `generation` (the first call opens it). Text pieces are
    /// concatenated verbatim. `last` closes the utterance so the provider flushes its tail.
    Speak {
        generation: Generation,
        text: String,
        last: bool,
    },
    /// Stop producing audio for `generation` now (barge-in).
    Cancel { generation: Generation },
}

/// One word's place in the generated audio.
#[derive(Debug, Clone, PartialEq)]
pub struct WordTiming {
    pub word: String,
    /// Seconds from the start of the generation's audio.
    pub start: f32,
    pub end: f32,
}

/// What the TTS stream produced.
#[derive(Debug, Clone)]
pub enum TtsEvent {
    /// Audio in the requested output format; any length (not frame aligned). Only when the
    /// session has no writer to put it in ([`TtsParams::playout`]).
    Audio {
        generation: Generation,
        audio: Bytes,
    },
    /// The first audio of `generation` went to the writer.
    Started { generation: Generation },
    /// Word timestamps, when the provider gives them.
    Words {
        generation: Generation,
        words: Vec<WordTiming>,
    },
    /// The provider finished the utterance (its own final event); `audio_bytes` of audio were
    /// produced for it.
    Done {
        generation: Generation,
        audio_bytes: u64,
    },
    /// The utterance failed; `generation` is `None` for connection-level failures.
    Failed {
        generation: Option<Generation>,
        error: TtsError,
    },
}

/// A failure of a TTS provider.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TtsError {
    #[error("tts provider refused the credentials ({status}): {message}")]
    Unauthorized { status: u16, message: String },
    #[error("tts provider rejected the request ({status}): {message}")]
    Rejected { status: u16, message: String },
    #[error("tts provider is rate limiting ({message})")]
    RateLimited { message: String },
    #[error("tts provider unavailable: {0}")]
    Unavailable(String),
    #[error("tts provider stalled: {0}")]
    Stalled(String),
    #[error("tts provider closed the stream: {0}")]
    Closed(String),
    #[error("tts protocol error: {0}")]
    Protocol(String),
    /// The provider cannot produce the transport's format (no resampling is done here).
    #[error("tts provider cannot produce {0}")]
    UnsupportedFormat(AudioFormat),
    /// The server or assistant configuration cannot work (no key, a voice of another provider).
    #[error("tts is misconfigured: {0}")]
    Misconfigured(String),
}

impl TtsError {
    /// A short, stable name for metrics (`voxbridge_provider_errors_total{kind}`).
    pub fn kind(&self) -> &'static str {
        match self {
            TtsError::Unauthorized { .. } => "unauthorized",
            TtsError::Rejected { .. } => "rejected",
            TtsError::RateLimited { .. } => "rate_limited",
            TtsError::Unavailable(_) => "unavailable",
            TtsError::Stalled(_) => "stalled",
            TtsError::Closed(_) => "closed",
            TtsError::Protocol(_) => "protocol",
            TtsError::UnsupportedFormat(_) => "unsupported_format",
            TtsError::Misconfigured(_) => "misconfigured",
        }
    }
}

/// A live TTS stream. Dropping it closes the provider connection.
pub struct TtsSession {
    pub commands: mpsc::Sender<TtsCommand>,
    pub events: mpsc::Receiver<TtsEvent>,
}

/// Commands a session buffers before the caller has to wait: a turn is a handful of phrases.
const COMMAND_CAPACITY: usize = 32;
/// Events a session buffers before it stops reading the provider (TCP backpressure).
const EVENT_CAPACITY: usize = 64;

impl TtsSession {
    /// A session and the task's ends of its channels; audio goes to `playout` when given.
    fn channels(
        playout: Option<mpsc::Sender<PlayoutItem>>,
    ) -> (Self, mpsc::Receiver<TtsCommand>, TtsOutput) {
        let (commands, command_rx) = mpsc::channel(COMMAND_CAPACITY);
        let (event_tx, events) = mpsc::channel(EVENT_CAPACITY);
        let output = TtsOutput::new(event_tx, playout);
        (Self { commands, events }, command_rx, output)
    }
}

/// The key a session authenticates with: the assistant's own, else the server's.
fn resolve_api_key(voice_key: Option<&str>, endpoint: &TtsEndpoint) -> Result<String, TtsError> {
    let key = voice_key
        .filter(|k| !k.trim().is_empty())
        .unwrap_or(&endpoint.api_key);
    if key.trim().is_empty() {
        return Err(TtsError::Misconfigured(
            "no api key: neither the assistant's voice nor the server configures one".to_owned(),
        ));
    }
    Ok(key.to_owned())
}

/// The model a session asks for: the assistant's, else the server's, else `fallback`.
fn resolve_model(voice_model: Option<&str>, endpoint: &TtsEndpoint, fallback: &str) -> String {
    voice_model
        .filter(|m| !m.trim().is_empty())
        .or(Some(endpoint.model.as_str()).filter(|m| !m.trim().is_empty()))
        .unwrap_or(fallback)
        .to_owned()
}

/// A text-to-speech provider.
pub trait TextToSpeech: Send + Sync {
    /// Opens a streaming session for one call.
    fn connect(&self, params: TtsParams) -> BoxFuture<'static, Result<TtsSession, TtsError>>;
}
