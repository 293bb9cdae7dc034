//! Speech-to-text: a provider-neutral streaming session over a provider's live API.
//!
//! A [`SpeechToText`] connects once per call and returns an [`SttSession`]: a bounded channel of
//! audio in and a channel of [`SttEvent`]s out, with a task per session owning the provider's
//! socket (keep-alives, health checks, reconnection). The call session never sees a provider's
//! wire format.
//!
//! Providers: [`deepgram::DeepgramStt`] (Deepgram live streaming) and [`sarvam::SarvamStt`]
//! (Sarvam streaming STT). Both run on the same session task ([`session`]), which owns the
//! socket's health and reconnection; each provider file only speaks its wire format.

pub mod deepgram;
mod replay;
pub mod sarvam;
mod session;
pub mod socket;

pub use session::SessionOptions;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use tokio::sync::mpsc;

use crate::audio::AudioFormat;

/// What a call asks of its STT stream.
#[derive(Debug, Clone)]
pub struct SttParams {
    /// Format of the audio that will be sent (passed through without transcoding when the
    /// provider accepts it).
    pub format: AudioFormat,
    /// Provider model (e.g. `nova-3`, `saaras:v3`).
    pub model: String,
    /// Language code (e.g. `en`, `hi-IN`, `unknown`).
    pub language: String,
    /// Silence (ms) after which the provider declares the end of an utterance.
    pub endpointing_ms: u32,
    /// Silence (ms) after the last word after which an utterance-end event is sent.
    pub utterance_end_ms: u32,
}

/// Server-side settings of one STT provider: where it is and how to authenticate.
#[derive(Debug, Clone)]
pub struct SttEndpoint {
    /// `https://api.deepgram.com`, a fake's `http://127.0.0.1:port`, ...; the WebSocket URL is
    /// derived from it (`https` -> `wss`, `http` -> `ws`).
    pub base_url: String,
    pub api_key: String,
}

/// Something the provider heard.
#[derive(Debug, Clone, PartialEq)]
pub enum SttEvent {
    /// The provider detected the start of speech (an early barge-in hint).
    SpeechStarted,
    /// The provider's voice activity detection heard speech stop; a final transcript follows
    /// (Sarvam's `END_SPEECH`). Providers without such a signal never send it.
    SpeechEnded,
    /// Recognised text. `is_final: false` is a preview that a later event replaces;
    /// `is_final: true` is settled text to append to the user's turn; `speech_final: true` also
    /// marks the end of the utterance (endpointing). `from_finalize: true` marks the answer to an
    /// [`SttInput::Finalize`] (it may be empty when nothing was pending), so a call that decided
    /// the end of turn locally knows when the flushed text has arrived.
    Transcript {
        text: String,
        is_final: bool,
        speech_final: bool,
        from_finalize: bool,
    },
    /// No words for `utterance_end_ms`: the user's turn is over even if no `speech_final` came.
    UtteranceEnd,
    /// The provider link broke and was re-established; the audio the provider had not settled
    /// (since its last final) was sent again on the new link first, so no words are lost
    /// unless `lost_ms` > 0 (never silently: the call logs and counts it): audio older than the
    /// replay's bound, or dropped because the reconnect buffer was full.
    Reconnected { lost_ms: u64 },
    /// The stream ended; `Err` when it ended because of a failure the session could not repair.
    Closed(Result<(), SttError>),
}

/// A failure of an STT provider, typed so the call can decide (retry, degrade, end).
/// `status` is the HTTP status of a refused handshake, or the WebSocket close code when the
/// provider rejected the stream after it opened.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SttError {
    #[error("stt provider refused the credentials ({status}): {message}")]
    Unauthorized { status: u16, message: String },
    #[error("stt provider rejected the request ({status}): {message}")]
    Rejected { status: u16, message: String },
    #[error("stt provider is rate limiting ({message})")]
    RateLimited { message: String },
    #[error("stt provider unavailable: {0}")]
    Unavailable(String),
    #[error("stt provider stalled: {0}")]
    Stalled(String),
    #[error("stt provider closed the stream: {0}")]
    Closed(String),
    #[error("stt protocol error: {0}")]
    Protocol(String),
    /// The server's own settings for the provider are unusable (bad base URL, key not a valid
    /// header value, audio format the provider cannot take).
    #[error("stt provider misconfigured: {0}")]
    Config(String),
}

impl SttError {
    /// Whether reconnecting may help. Credentials, rejected requests and configuration do not
    /// change by trying again.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            SttError::RateLimited { .. }
                | SttError::Unavailable(_)
                | SttError::Stalled(_)
                | SttError::Closed(_)
                | SttError::Protocol(_)
        )
    }
}

/// What the call sends to its STT stream.
#[derive(Debug, Clone)]
pub enum SttInput {
    /// Audio in the format named at connect time (never empty).
    Audio(Bytes),
    /// Flush: finalise whatever has been heard now (end of turn decided locally).
    Finalize,
    /// The local VAD's view of the caller (speaking from an onset, quiet from the end of speech
    /// or a withdrawn onset): while the caller is quiet the session keeps only a short pre-roll
    /// for a replay after a lost socket. Never sent to the provider.
    Speaking(bool),
}

/// A live STT stream. Dropping it closes the provider connection (the provider is told to
/// finish: Deepgram `CloseStream`, Sarvam `flush`). To receive the last transcripts, drop only
/// `input` and read `events` until [`SttEvent::Closed`].
///
/// `input` is bounded: send with `try_send` from the audio path; `Full` means the provider link
/// is not keeping up and the frame is dropped by the caller (count it).
pub struct SttSession {
    pub input: mpsc::Sender<SttInput>,
    pub events: mpsc::Receiver<SttEvent>,
}

/// A speech-to-text provider.
pub trait SpeechToText: Send + Sync {
    /// Opens a streaming session.
    fn connect(&self, params: SttParams) -> BoxFuture<'static, Result<SttSession, SttError>>;
}
