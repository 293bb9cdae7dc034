//! The one thing that differs between telephony providers' callers: the stream's wire protocol.
//! The caller itself (the script on the real clock, the playout buffer that echoes marks, the
//! report) is the same for every provider; a [`CallerWire`] turns its frames, keys, mark echoes
//! and hang-up into the provider's messages, and the server's messages back into audio, marks and
//! clears, checking them as the provider would.
//!
//! Audio inside the caller is always μ-law 8 kHz (the scripts' clips, the report's byte offsets
//! at 8 bytes per ms); a wire whose provider speaks PCM16 converts at its edge.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};

use super::CallerConfig;

/// What a server's message means to the caller.
#[derive(Debug, PartialEq)]
pub enum ServerMessage<'a> {
    /// Audio to play, decoded into the caller's buffer as μ-law 8 kHz; `warning` says what the
    /// provider would have played wrongly (a WAV header as noise, say).
    Audio { warning: Option<String> },
    /// Echo this name once the audio before it has played.
    Mark(Cow<'a, str>),
    /// Drop the queued audio and echo the pending marks now.
    Clear,
    /// Nothing the caller acts on (a keep-alive, a provider event it may ignore).
    Ignore,
    /// Something the provider would refuse or misplay; recorded as a protocol error.
    Violation(String),
}

/// A provider's stream protocol, as its side of a call speaks it. One value per call; it may
/// keep state (sequence numbers, chunk counters).
pub trait CallerWire: Send + Sync + 'static {
    /// Headers the provider puts on the WebSocket upgrade (a signature, Basic credentials).
    fn upgrade_headers(&self, url: &str) -> Vec<(HeaderName, HeaderValue)> {
        let _ = url;
        Vec::new()
    }

    /// The messages that open the stream, in order.
    fn greeting(&mut self) -> Vec<Message>;

    /// One 20 ms frame of caller audio (160 μ-law bytes), or silence.
    fn media(&mut self, frame: Option<&[u8]>) -> Message;

    /// A keypad press, if the protocol carries keys in the stream.
    fn dtmf(&mut self, digit: char) -> Option<Message>;

    /// The echo of a mark whose audio has played (or was cleared).
    fn mark_echo(&mut self, name: &str) -> Message;

    /// What the provider sends when the call ends on its side, before closing.
    fn stop(&mut self) -> Option<Message>;

    /// Reads one message from the server; audio goes into `audio` (cleared first) as μ-law.
    fn decode<'m>(&mut self, message: &'m Message, audio: &mut Vec<u8>) -> ServerMessage<'m>;
}

/// Builds one call's wire.
type MakeWire = dyn Fn(&CallerConfig) -> Box<dyn CallerWire> + Send + Sync;

/// Makes a call's wire from its caller's config. Cheap to clone.
#[derive(Clone)]
pub struct CallerProtocol {
    name: &'static str,
    make: Arc<MakeWire>,
}

impl CallerProtocol {
    pub fn new(
        name: &'static str,
        make: impl Fn(&CallerConfig) -> Box<dyn CallerWire> + Send + Sync + 'static,
    ) -> Self {
        Self {
            name,
            make: Arc::new(make),
        }
    }

    /// Twilio Media Streams (the default).
    pub fn twilio() -> Self {
        Self::new("twilio", |config| {
            Box::new(crate::sim::twilio::caller_wire::TwilioWire::new(config))
        })
    }

    pub fn name(&self) -> &'static str {
        self.name
    }

    pub(super) fn wire(&self, config: &CallerConfig) -> Box<dyn CallerWire> {
        (self.make)(config)
    }
}

impl fmt::Debug for CallerProtocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("CallerProtocol").field(&self.name).finish()
    }
}
