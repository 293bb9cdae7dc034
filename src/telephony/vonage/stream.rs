//! Vonage Voice API WebSockets: the socket is a participant of the call. In: a first text frame
//! `websocket:connected` echoing the NCCO's `headers` (our call id and token) and the audio
//! format (old Vonage docs show it without `event`; both are read), then **binary** frames of
//! 16-bit little-endian PCM (20 ms: 640 bytes at 16 kHz), and text events `websocket:dtmf`,
//! `websocket:notify` (the echo of our marks) and `websocket:cleared`. Out: binary frames of
//! exactly one 20 ms frame each (Vonage plays what it buffered in real time; partial frames are
//! not played cleanly), `{"action":"clear"}`, and `{"action":"notify","payload":{"mark":…}}`,
//! which Vonage echoes once the audio queued before it has played: our marks.
//!
//! Audio is PCM16 at 16 kHz, the rate the NCCO asks for and the one the call core already runs
//! browser calls at, so STT, VAD and TTS see it unconverted. A binary frame is handed to the
//! call as the `Bytes` the socket read (no copy). There is no stop event: the call ends when
//! Vonage closes the socket. Malformed, oversized and unknown frames are logged and skipped.

use std::borrow::Cow;
use std::time::Duration;

use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::{SplitSink, SplitStream};
use serde::Deserialize;

use crate::audio::AudioFormat;
use crate::transport::inactivity::Inactivity;
use crate::transport::wire_text::SkippedFrames;
use crate::transport::{Inbound, MediaSink, MediaSource, TransportError};

/// The format the NCCO asks for and the socket carries both ways.
pub const CONTENT_TYPE: &str = "audio/l16;rate=16000";
/// The call's audio format.
pub const FORMAT: AudioFormat = AudioFormat::PCM16_16K;
/// One 20 ms frame at 16 kHz.
pub const FRAME_BYTES: usize = 640;
/// Largest frame we read (text or binary): a 20 ms frame is 640 bytes.
pub const MAX_FRAME_BYTES: usize = 32 * 1024;
/// How long a new socket may take to send `websocket:connected`.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);

/// What `websocket:connected` told us.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Connected {
    pub content_type: String,
    pub call_id: Option<String>,
    pub token: Option<String>,
}

/// Why a socket never became a stream.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("no websocket:connected within {0:?}")]
    Timeout(Duration),
    #[error("the socket closed before websocket:connected")]
    Closed,
    #[error("content type {0:?} is not {CONTENT_TYPE}")]
    UnsupportedFormat(String),
}

#[derive(Deserialize)]
struct WireText<'a> {
    #[serde(default, borrow)]
    event: Option<Cow<'a, str>>,
    #[serde(rename = "content-type", default, borrow)]
    content_type: Option<Cow<'a, str>>,
    #[serde(default)]
    call_id: Option<String>,
    #[serde(default)]
    token: Option<String>,
    #[serde(default, borrow)]
    digit: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    dtmf: Option<WireDtmf<'a>>,
    #[serde(default, borrow)]
    payload: Option<WirePayload<'a>>,
}

#[derive(Deserialize)]
struct WireDtmf<'a> {
    #[serde(default, borrow)]
    digit: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    digits: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct WirePayload<'a> {
    #[serde(default, borrow)]
    mark: Option<Cow<'a, str>>,
}

/// True for `audio/l16;rate=16000`, however it is spaced or cased.
fn is_our_format(content_type: &str) -> bool {
    let normalized: String = content_type
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect::<String>()
        .to_ascii_lowercase();
    normalized == CONTENT_TYPE
}

/// Reads the first text frame: `Ok(None)` if it is something else (skipped).
pub fn parse_connected(text: &str) -> Result<Option<Connected>, HandshakeError> {
    let Ok(frame) = serde_json::from_str::<WireText<'_>>(text) else {
        return Ok(None);
    };
    let is_connected = match frame.event.as_deref() {
        Some("websocket:connected") => true,
        // Vonage's older documents show the first message without `event`.
        None => frame.content_type.is_some(),
        Some(_) => false,
    };
    if !is_connected {
        return Ok(None);
    }
    let content_type = frame.content_type.unwrap_or_default().into_owned();
    if !is_our_format(&content_type) {
        return Err(HandshakeError::UnsupportedFormat(content_type));
    }
    Ok(Some(Connected {
        content_type,
        call_id: frame.call_id,
        token: frame.token,
    }))
}

/// Reads until `websocket:connected`, within [`START_TIMEOUT`]. After it, a stream that sends
/// nothing for `inactivity` ends as a hang-up.
pub async fn accept(
    ws: WebSocket,
    inactivity: Duration,
) -> Result<(Connected, VonageSource, VonageSink), HandshakeError> {
    let (sink, mut stream) = ws.split();
    let connected = tokio::time::timeout(START_TIMEOUT, read_connected(&mut stream))
        .await
        .map_err(|_| HandshakeError::Timeout(START_TIMEOUT))??;
    let source = VonageSource {
        stream,
        decoder: FrameDecoder::default(),
        inactivity: Inactivity::new(inactivity),
    };
    Ok((connected, source, VonageSink { sink }))
}

async fn read_connected(stream: &mut SplitStream<WebSocket>) -> Result<Connected, HandshakeError> {
    while let Some(message) = stream.next().await {
        match message {
            Ok(Message::Text(text)) if text.len() <= MAX_FRAME_BYTES => {
                if let Some(connected) = parse_connected(text.as_str())? {
                    return Ok(connected);
                }
                tracing::warn!("vonage frame before websocket:connected skipped");
            }
            Ok(Message::Close(_)) | Err(_) => return Err(HandshakeError::Closed),
            // Audio before the handshake, pings, oversized text: nothing to read yet.
            Ok(_) => {}
        }
    }
    Err(HandshakeError::Closed)
}

/// Turns frames into [`Inbound`] events; separate from the socket so it can be tested.
#[derive(Debug)]
pub struct FrameDecoder {
    skipped: SkippedFrames,
}

impl Default for FrameDecoder {
    fn default() -> Self {
        Self {
            skipped: SkippedFrames::new("vonage"),
        }
    }
}

impl FrameDecoder {
    fn skip(&mut self, why: &str, detail: &dyn std::fmt::Display) {
        self.skipped.skip(why, detail);
    }

    /// Frames skipped so far.
    pub fn skipped(&self) -> u64 {
        self.skipped.count()
    }

    /// A binary frame: caller audio, if it is whole samples.
    pub fn decode_binary(&mut self, bytes: Bytes) -> Option<Inbound> {
        if bytes.is_empty() || !bytes.len().is_multiple_of(2) {
            self.skip("audio not in whole 16-bit samples", &bytes.len());
            return None;
        }
        if bytes.len() > MAX_FRAME_BYTES {
            self.skip("oversized audio", &bytes.len());
            return None;
        }
        Some(Inbound::Audio(bytes))
    }

    /// A text frame: an event.
    pub fn decode_text(&mut self, text: &str) -> Option<Inbound> {
        if text.len() > MAX_FRAME_BYTES {
            self.skip("oversized", &text.len());
            return None;
        }
        let frame: WireText<'_> = match serde_json::from_str(text) {
            Ok(frame) => frame,
            Err(e) => {
                self.skip("malformed json", &e);
                return None;
            }
        };
        match frame.event.as_deref() {
            Some("websocket:dtmf") => {
                // The digit at the top level, or nested as Pipecat also accepts.
                let nested = frame.dtmf.and_then(|d| d.digit.or(d.digits));
                let digit = frame.digit.or(nested).and_then(|d| d.chars().next());
                match digit {
                    Some(d) if d.is_ascii_digit() || d == '*' || d == '#' => Some(Inbound::Dtmf(d)),
                    _ => {
                        self.skip("bad dtmf", &"");
                        None
                    }
                }
            }
            Some("websocket:notify") => match frame.payload.and_then(|p| p.mark) {
                Some(mark) => Some(Inbound::Mark(mark.into_owned())),
                None => {
                    self.skip("notify without our mark", &"");
                    None
                }
            },
            Some("websocket:cleared") | Some("websocket:connected") => None,
            Some("websocket:error") => {
                tracing::warn!(frame = text, "vonage reported a websocket error");
                None
            }
            Some(other) => {
                let other = other.to_owned();
                self.skip("unknown event", &other);
                None
            }
            None => {
                self.skip("text without event", &"");
                None
            }
        }
    }
}

/// The receiving half of a Vonage socket.
pub struct VonageSource {
    stream: SplitStream<WebSocket>,
    decoder: FrameDecoder,
    inactivity: Inactivity,
}

impl VonageSource {
    /// Frames skipped so far.
    pub fn skipped(&self) -> u64 {
        self.decoder.skipped.count()
    }
}

impl MediaSource for VonageSource {
    async fn next(&mut self) -> Option<Inbound> {
        loop {
            let next = tokio::select! {
                biased;
                next = self.stream.next() => next?,
                () = self.inactivity.expired() => {
                    tracing::warn!(
                        after_secs = self.inactivity.limit().as_secs(),
                        "media stream silent; ending the call as a hang-up"
                    );
                    return None;
                }
            };
            self.inactivity.touch();
            let message = match next {
                Ok(message) => message,
                Err(e) => {
                    tracing::debug!(error = %e, "vonage socket error");
                    return None;
                }
            };
            let event = match message {
                Message::Binary(bytes) => self.decoder.decode_binary(bytes),
                Message::Text(text) => self.decoder.decode_text(text.as_str()),
                // Vonage ends the leg by closing: the caller hung up.
                Message::Close(_) => return None,
                Message::Ping(_) | Message::Pong(_) => None,
            };
            if event.is_some() {
                return event;
            }
        }
    }
}

/// The sending half of a Vonage socket.
pub struct VonageSink {
    sink: SplitSink<WebSocket, Message>,
}

impl VonageSink {
    async fn send(&mut self, message: Message) -> Result<(), TransportError> {
        crate::transport::queue_message(&mut self.sink, message).await
    }
}

/// The `notify` frame that comes back as our mark.
pub fn notify_frame(name: &str) -> String {
    serde_json::json!({"action": "notify", "payload": {"mark": name}}).to_string()
}

/// The `clear` frame.
pub const CLEAR_FRAME: &str = r#"{"action":"clear"}"#;

impl MediaSink for VonageSink {
    fn format(&self) -> AudioFormat {
        FORMAT
    }

    async fn send_audio(&mut self, frame: &[u8]) -> Result<(), TransportError> {
        // The writer's pacer sends exact 20 ms frames; anything else is cut or padded to whole
        // frames, since Vonage plays only those cleanly.
        if frame.len() == FRAME_BYTES {
            return self
                .send(Message::Binary(Bytes::copy_from_slice(frame)))
                .await;
        }
        for chunk in frame.chunks(FRAME_BYTES) {
            let mut whole = vec![0u8; FRAME_BYTES];
            whole[..chunk.len()].copy_from_slice(chunk);
            self.send(Message::Binary(Bytes::from(whole))).await?;
        }
        Ok(())
    }

    async fn send_mark(&mut self, name: &str) -> Result<(), TransportError> {
        self.send(Message::Text(Utf8Bytes::from(notify_frame(name))))
            .await
    }

    async fn clear(&mut self) -> Result<(), TransportError> {
        self.send(Message::Text(Utf8Bytes::from_static(CLEAR_FRAME)))
            .await
    }

    async fn flush(&mut self) -> Result<(), TransportError> {
        crate::transport::flush_socket(&mut self.sink).await
    }

    async fn close(&mut self) -> Result<(), TransportError> {
        crate::transport::close_socket(&mut self.sink, crate::transport::call_ended_frame()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_frame_echoes_our_headers() {
        let connected = parse_connected(
            r#"{"event":"websocket:connected","content-type":"audio/l16;rate=16000","call_id":"c1","token":"t1"}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(connected.call_id.as_deref(), Some("c1"));
        assert_eq!(connected.token.as_deref(), Some("t1"));
        // The older form, without `event`.
        let old = parse_connected(
            r#"{"content-type":"audio/l16; rate=16000","call_id":"c2","token":"t2"}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(old.call_id.as_deref(), Some("c2"));
        assert!(
            parse_connected(r#"{"event":"websocket:dtmf","digit":"1"}"#)
                .unwrap()
                .is_none()
        );
        assert!(parse_connected("garbage").unwrap().is_none());
    }

    #[test]
    fn another_rate_is_refused() {
        assert!(matches!(
            parse_connected(
                r#"{"event":"websocket:connected","content-type":"audio/l16;rate=8000"}"#
            ),
            Err(HandshakeError::UnsupportedFormat(_))
        ));
    }

    #[test]
    fn audio_dtmf_and_notify_decode() {
        let mut d = FrameDecoder::default();
        let frame = Bytes::from(vec![1u8; FRAME_BYTES]);
        assert_eq!(d.decode_binary(frame.clone()), Some(Inbound::Audio(frame)));
        assert_eq!(
            d.decode_text(r#"{"event":"websocket:dtmf","digit":"5","duration":260}"#),
            Some(Inbound::Dtmf('5'))
        );
        assert_eq!(
            d.decode_text(r##"{"event":"websocket:dtmf","dtmf":{"digit":"#","duration":100}}"##),
            Some(Inbound::Dtmf('#'))
        );
        assert_eq!(
            d.decode_text(r#"{"event":"websocket:notify","payload":{"mark":"g2-w1"}}"#),
            Some(Inbound::Mark("g2-w1".into()))
        );
        assert_eq!(d.decode_text(r#"{"event":"websocket:cleared"}"#), None);
        assert_eq!(d.skipped(), 0);
    }

    #[test]
    fn bad_input_is_skipped_not_fatal() {
        let mut d = FrameDecoder::default();
        assert_eq!(d.decode_binary(Bytes::from_static(&[1, 2, 3])), None);
        assert_eq!(d.decode_binary(Bytes::new()), None);
        assert_eq!(
            d.decode_binary(Bytes::from(vec![0u8; MAX_FRAME_BYTES + 2])),
            None
        );
        for bad in [
            "not json",
            "{}",
            r#"{"event":"websocket:dtmf","digit":"x"}"#,
            r#"{"event":"websocket:notify","payload":{"other":1}}"#,
            r#"{"event":"websocket:bogus"}"#,
        ] {
            assert_eq!(d.decode_text(bad), None, "{bad}");
        }
        assert_eq!(d.decode_text(&"x".repeat(MAX_FRAME_BYTES + 1)), None);
        assert_eq!(d.skipped(), 9);
        let frame = Bytes::from(vec![2u8; FRAME_BYTES]);
        assert_eq!(d.decode_binary(frame.clone()), Some(Inbound::Audio(frame)));
    }

    #[test]
    fn outbound_control_frames() {
        assert_eq!(
            notify_frame("g1-\"w"),
            r#"{"action":"notify","payload":{"mark":"g1-\"w"}}"#
        );
        assert_eq!(CLEAR_FRAME, r#"{"action":"clear"}"#);
    }
}
