//! The browser widget's media stream (`/web-call/ws?token=…`): JSON text messages for control,
//! binary messages for audio (PCM16 little-endian mono) both ways. The protocol is in the README
//! ("Browser protocol").
//!
//! The client picks its rate (16 or 48 kHz) in `start`; inside the call the audio is always
//! PCM16 at 16 kHz (what the STT and the VAD take, and what the TTS is asked for), so this
//! transport holds one stateful [`Resampler`] per direction when the client runs at 48 kHz, and
//! none at 16 kHz. Audio is moved in [`Bytes`]: at 16 kHz the client's frames go to the call as
//! they came; resampled frames share one arena.
//!
//! Unlike Twilio (a trusted peer whose odd frames are skipped), a browser that breaks the
//! protocol is closed with a close code that says why (1003 data we do not take, 1009 too big,
//! 4000-range for this protocol), so a broken client learns what it did wrong. Only its own call
//! ends; the violation ends the call like a hang-up.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use bytes::{Bytes, BytesMut};
use futures_util::StreamExt;
use futures_util::stream::{SplitSink, SplitStream};
use serde::Deserialize;
use serde_json::json;

use super::{CallEvent, Inbound, MediaSink, MediaSource, TransportError};
use crate::audio::AudioFormat;
use crate::audio::resample::Resampler;

/// Largest message we take (text or binary); 20 ms at 48 kHz is 1920 bytes.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// How long a new socket may take to send `start`.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a started socket may stay silent (the widget streams audio all the time, silence
/// included, so a gap this long is a client that is gone).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(20);
/// Rates a client may stream at.
pub const CLIENT_RATES: [u32; 2] = [16_000, 48_000];
/// The format the call runs at, whatever the client's rate.
pub const CALL_FORMAT: AudioFormat = AudioFormat::PCM16_16K;
/// Arena block for resampled audio: many frames share one allocation.
const ARENA_BLOCK: usize = 8 * 1024;

/// Why the server closes a browser socket: each is one close code and reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error("the session token is unknown, used or expired")]
    BadToken,
    #[error("text messages must be JSON")]
    NotJson,
    #[error("audio must be whole PCM16 samples")]
    BadAudio,
    #[error("message larger than 64 KiB")]
    TooBig,
    #[error("the first message must be start")]
    NotStarted,
    #[error("unknown or malformed message")]
    BadMessage,
    #[error("sample_rate must be 16000 or 48000")]
    BadRate,
    #[error("no start within 10 s")]
    StartTimeout,
    #[error("nothing received for 20 s")]
    Idle,
}

impl Violation {
    /// The WebSocket close code: the standard ones where they fit, 4000-range for ours.
    pub fn code(self) -> u16 {
        match self {
            Violation::NotJson | Violation::BadAudio => 1003,
            Violation::TooBig => 1009,
            Violation::NotStarted | Violation::BadMessage => 4000,
            Violation::BadToken => 4001,
            Violation::StartTimeout => 4002,
            Violation::Idle => 4003,
            Violation::BadRate => 4004,
        }
    }

    fn close_frame(self) -> CloseFrame {
        CloseFrame {
            code: self.code(),
            reason: Utf8Bytes::from(self.to_string()),
        }
    }
}

/// Why a socket never became a stream.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("the socket closed before start")]
    Closed,
    #[error("refused: {0}")]
    Refused(#[from] Violation),
}

/// Messages the client sends as JSON text.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum ClientMessage {
    Start {
        sample_rate: u32,
    },
    /// Playback reached this mark (or it was flushed).
    Mark {
        name: String,
    },
    /// A key of the widget's keypad (`0`-`9`, `*`, `#`).
    Dtmf {
        digit: String,
    },
    /// Playback progress for diagnostics; marks are what the call acts on.
    Playback {
        #[serde(default)]
        #[allow(dead_code)]
        played_ms: Option<u64>,
    },
    Hangup,
}

fn parse(text: &str) -> Result<ClientMessage, Violation> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(Violation::TooBig);
    }
    serde_json::from_str(text).map_err(|e| {
        if e.is_syntax() || e.is_eof() {
            Violation::NotJson
        } else {
            Violation::BadMessage
        }
    })
}

/// Closes a socket that has not become a stream, saying why.
pub async fn refuse(mut ws: WebSocket, why: Violation) {
    let _ = ws.send(Message::Close(Some(why.close_frame()))).await;
}

/// Waits for `start` (within [`START_TIMEOUT`]), answers `started` and splits the socket. A
/// socket that breaks the protocol first is closed with the violation's code.
pub async fn accept(
    mut ws: WebSocket,
    call_id: &str,
) -> Result<(u32, BrowserSource, BrowserSink), HandshakeError> {
    let started = tokio::time::timeout(START_TIMEOUT, read_start(&mut ws))
        .await
        .unwrap_or(Err(HandshakeError::Refused(Violation::StartTimeout)));
    let rate = match started {
        Ok(rate) => rate,
        Err(HandshakeError::Refused(why)) => {
            refuse(ws, why).await;
            return Err(HandshakeError::Refused(why));
        }
        Err(e) => return Err(e),
    };
    let reply = json!({"type": "started", "call_id": call_id, "sample_rate": rate}).to_string();
    if ws
        .send(Message::Text(Utf8Bytes::from(reply)))
        .await
        .is_err()
    {
        return Err(HandshakeError::Closed);
    }
    let (sink, stream) = ws.split();
    let violation = Arc::new(OnceLock::new());
    let source = BrowserSource {
        stream,
        resampler: resampler(rate, CALL_FORMAT.sample_rate),
        scratch: Vec::with_capacity(960),
        arena: BytesMut::with_capacity(ARENA_BLOCK),
        violation: Arc::clone(&violation),
    };
    let sink = BrowserSink {
        sink,
        resampler: resampler(CALL_FORMAT.sample_rate, rate),
        scratch: Vec::with_capacity(960),
        arena: BytesMut::with_capacity(ARENA_BLOCK),
        violation,
    };
    Ok((rate, source, sink))
}

/// A resampler between two rates, or none when they are the same.
fn resampler(from: u32, to: u32) -> Option<Box<Resampler>> {
    if from == to {
        return None;
    }
    // Both rates are ours (checked at start), so construction cannot fail.
    Resampler::new(from, to).ok().map(Box::new)
}

async fn read_start(ws: &mut WebSocket) -> Result<u32, HandshakeError> {
    while let Some(message) = ws.next().await {
        let text = match message {
            Ok(Message::Text(text)) => text,
            Ok(Message::Binary(_)) => return Err(Violation::NotStarted.into()),
            Ok(Message::Ping(_) | Message::Pong(_)) => continue,
            Ok(Message::Close(_)) | Err(_) => return Err(HandshakeError::Closed),
        };
        return match parse(text.as_str())? {
            ClientMessage::Start { sample_rate } if CLIENT_RATES.contains(&sample_rate) => {
                Ok(sample_rate)
            }
            ClientMessage::Start { .. } => Err(Violation::BadRate.into()),
            ClientMessage::Hangup => Err(HandshakeError::Closed),
            ClientMessage::Mark { .. }
            | ClientMessage::Playback { .. }
            | ClientMessage::Dtmf { .. } => Err(Violation::NotStarted.into()),
        };
    }
    Err(HandshakeError::Closed)
}

/// Little-endian PCM16 bytes into samples, reusing `out`'s allocation.
fn samples_into(bytes: &[u8], out: &mut Vec<i16>) {
    out.clear();
    out.extend(
        bytes
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]])),
    );
}

/// Resamples `samples` and appends the finished 20 ms frames to `arena` as PCM16 LE.
fn resample_into(resampler: &mut Resampler, samples: &[i16], arena: &mut BytesMut) {
    let most = samples.len() * 2 * resampler.output_rate() as usize
        / resampler.input_rate() as usize
        + resampler.frame_len() * 2;
    if arena.capacity() - arena.len() < most {
        arena.reserve(ARENA_BLOCK.max(most));
    }
    resampler.push(samples, |frame| {
        for sample in frame {
            arena.extend_from_slice(&sample.to_le_bytes());
        }
    });
}

/// The receiving half of a browser stream.
pub struct BrowserSource {
    stream: SplitStream<WebSocket>,
    /// Client rate → 16 kHz (none for a 16 kHz client).
    resampler: Option<Box<Resampler>>,
    scratch: Vec<i16>,
    arena: BytesMut,
    /// Set when the client broke the protocol; the sink closes with it.
    violation: Arc<OnceLock<Violation>>,
}

impl BrowserSource {
    /// Records why the stream ends; the call then ends as on a hang-up.
    fn violate(&self, why: Violation) -> Option<Inbound> {
        tracing::warn!(code = why.code(), %why, "browser stream closed for a protocol violation");
        let _ = self.violation.set(why);
        None
    }

    fn audio(&mut self, bytes: Bytes) -> Result<Option<Inbound>, Violation> {
        if bytes.len() > MAX_MESSAGE_BYTES {
            return Err(Violation::TooBig);
        }
        if !bytes.len().is_multiple_of(2) {
            return Err(Violation::BadAudio);
        }
        if bytes.is_empty() {
            return Ok(None);
        }
        let Some(resampler) = self.resampler.as_mut() else {
            return Ok(Some(Inbound::Audio(bytes)));
        };
        samples_into(&bytes, &mut self.scratch);
        resample_into(resampler, &self.scratch, &mut self.arena);
        if self.arena.is_empty() {
            return Ok(None);
        }
        Ok(Some(Inbound::Audio(self.arena.split().freeze())))
    }

    fn text(&mut self, text: &str) -> Result<Option<Inbound>, Violation> {
        match parse(text)? {
            ClientMessage::Mark { name } => Ok(Some(Inbound::Mark(name))),
            ClientMessage::Dtmf { digit } => {
                let mut chars = digit.chars();
                match (chars.next(), chars.next()) {
                    (Some(key), None) if crate::agent::keypad::is_key(key) => {
                        Ok(Some(Inbound::Dtmf(key)))
                    }
                    // Not a key: skipped like any other bad frame, the call goes on.
                    _ => {
                        tracing::debug!(digit, "browser dtmf that is not a keypad key skipped");
                        metrics::counter!(crate::metrics::FRAMES_SKIPPED).increment(1);
                        Ok(None)
                    }
                }
            }
            ClientMessage::Playback { .. } => Ok(None),
            ClientMessage::Hangup => Ok(Some(Inbound::Hangup)),
            ClientMessage::Start { .. } => Err(Violation::BadMessage),
        }
    }
}

impl MediaSource for BrowserSource {
    async fn next(&mut self) -> Option<Inbound> {
        loop {
            let message = match tokio::time::timeout(IDLE_TIMEOUT, self.stream.next()).await {
                Err(_) => return self.violate(Violation::Idle),
                Ok(None) => return None,
                Ok(Some(Err(e))) => {
                    tracing::debug!(error = %e, "browser socket error");
                    return None;
                }
                Ok(Some(Ok(message))) => message,
            };
            let decoded = match message {
                Message::Binary(bytes) => self.audio(bytes),
                Message::Text(text) => self.text(text.as_str()),
                Message::Close(_) => return None,
                Message::Ping(_) | Message::Pong(_) => continue,
            };
            match decoded {
                Ok(Some(inbound)) => return Some(inbound),
                Ok(None) => {}
                Err(why) => return self.violate(why),
            }
        }
    }
}

/// The sending half of a browser stream.
pub struct BrowserSink {
    sink: SplitSink<WebSocket, Message>,
    /// 16 kHz → client rate (none for a 16 kHz client).
    resampler: Option<Box<Resampler>>,
    scratch: Vec<i16>,
    arena: BytesMut,
    violation: Arc<OnceLock<Violation>>,
}

impl BrowserSink {
    async fn send(&mut self, message: Message) -> Result<(), TransportError> {
        crate::transport::queue_message(&mut self.sink, message).await
    }

    async fn send_json(&mut self, value: serde_json::Value) -> Result<(), TransportError> {
        self.send(Message::Text(Utf8Bytes::from(value.to_string())))
            .await
    }
}

impl MediaSink for BrowserSink {
    fn format(&self) -> AudioFormat {
        CALL_FORMAT
    }

    async fn send_audio(&mut self, frame: &[u8]) -> Result<(), TransportError> {
        let audio = match self.resampler.as_mut() {
            None => Bytes::copy_from_slice(frame),
            Some(resampler) => {
                samples_into(frame, &mut self.scratch);
                resample_into(resampler, &self.scratch, &mut self.arena);
                if self.arena.is_empty() {
                    return Ok(());
                }
                self.arena.split().freeze()
            }
        };
        self.send(Message::Binary(audio)).await
    }

    async fn send_mark(&mut self, name: &str) -> Result<(), TransportError> {
        self.send_json(json!({"type": "mark", "name": name})).await
    }

    async fn clear(&mut self) -> Result<(), TransportError> {
        // What the resampler holds back belongs to the interrupted reply.
        if let Some(resampler) = self.resampler.as_mut() {
            resampler.reset();
        }
        self.arena.clear();
        self.send_json(json!({"type": "interrupt"})).await
    }

    fn wants_events(&self) -> bool {
        true
    }

    async fn send_event(&mut self, event: &CallEvent) -> Result<(), TransportError> {
        let value = match event {
            CallEvent::Transcript { text, is_final } => {
                json!({"type": "transcript", "text": text, "final": is_final})
            }
            CallEvent::AgentText(text) => json!({"type": "agent_text", "text": text}),
            CallEvent::Recommendation(products) => {
                json!({"type": "recommendation", "products": products})
            }
            CallEvent::End { reason } => json!({"type": "end", "reason": reason}),
        };
        self.send_json(value).await
    }

    async fn flush(&mut self) -> Result<(), TransportError> {
        crate::transport::flush_socket(&mut self.sink).await
    }

    async fn close(&mut self) -> Result<(), TransportError> {
        let frame = match self.violation.get() {
            Some(why) => why.close_frame(),
            None => super::call_ended_frame(),
        };
        super::close_socket(&mut self.sink, frame).await
    }
}

/// A client's frames read without a socket: the first as the handshake reads `start`, the rest
/// as [`BrowserSource`] reads text (the same [`parse`]) and binary audio (the same checks,
/// samples and 48 kHz resampler). `(binary, bytes)` per frame; answers how many frames carried
/// something for the call, or the violation that would close the socket. The entry point of the
/// fuzz target (`fuzz/`).
#[doc(hidden)]
pub fn read_client_frames<'a>(
    frames: impl IntoIterator<Item = (bool, &'a [u8])>,
) -> Result<usize, Violation> {
    let text = |bytes: &'a [u8]| std::str::from_utf8(bytes).map_err(|_| Violation::NotJson);
    let mut frames = frames.into_iter();
    let rate = match frames.next() {
        Some((false, bytes)) => match parse(text(bytes)?)? {
            ClientMessage::Start { sample_rate } if CLIENT_RATES.contains(&sample_rate) => {
                sample_rate
            }
            ClientMessage::Start { .. } => return Err(Violation::BadRate),
            _ => return Err(Violation::NotStarted),
        },
        _ => return Err(Violation::NotStarted),
    };
    let mut resampler = resampler(rate, CALL_FORMAT.sample_rate);
    let (mut scratch, mut arena) = (Vec::new(), BytesMut::new());
    let mut carried = 0;
    for (binary, bytes) in frames {
        if binary {
            if bytes.len() > MAX_MESSAGE_BYTES {
                return Err(Violation::TooBig);
            }
            if !bytes.len().is_multiple_of(2) {
                return Err(Violation::BadAudio);
            }
            if let Some(resampler) = resampler.as_mut() {
                samples_into(bytes, &mut scratch);
                resample_into(resampler, &scratch, &mut arena);
                carried += usize::from(!arena.split().is_empty());
            } else {
                carried += usize::from(!bytes.is_empty());
            }
            continue;
        }
        carried += match parse(text(bytes)?)? {
            ClientMessage::Mark { .. } | ClientMessage::Hangup => 1,
            ClientMessage::Dtmf { digit } => {
                let mut chars = digit.chars();
                let key = match (chars.next(), chars.next()) {
                    (Some(key), None) => crate::agent::keypad::is_key(key),
                    _ => false,
                };
                usize::from(key)
            }
            ClientMessage::Playback { .. } => 0,
            ClientMessage::Start { .. } => return Err(Violation::BadMessage),
        };
    }
    Ok(carried)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_messages_parse_or_name_the_violation() {
        assert!(matches!(
            parse(r#"{"type":"start","sample_rate":48000}"#),
            Ok(ClientMessage::Start {
                sample_rate: 48_000
            })
        ));
        assert!(matches!(
            parse(r#"{"type":"mark","name":"g1.3"}"#),
            Ok(ClientMessage::Mark { name }) if name == "g1.3"
        ));
        assert!(matches!(
            parse(r##"{"type":"dtmf","digit":"#"}"##),
            Ok(ClientMessage::Dtmf { digit }) if digit == "#"
        ));
        assert!(matches!(
            parse(r#"{"type":"playback","played_ms":120}"#),
            Ok(ClientMessage::Playback { .. })
        ));
        assert!(matches!(
            parse(r#"{"type":"hangup"}"#),
            Ok(ClientMessage::Hangup)
        ));
        assert_eq!(parse("hello there").err(), Some(Violation::NotJson));
        assert_eq!(parse("{\"type\":").err(), Some(Violation::NotJson));
        assert_eq!(
            parse(r#"{"type":"dance"}"#).err(),
            Some(Violation::BadMessage)
        );
        assert_eq!(
            parse(r#"{"type":"start"}"#).err(),
            Some(Violation::BadMessage)
        );
        let big = format!(
            r#"{{"type":"mark","name":"{}"}}"#,
            "x".repeat(MAX_MESSAGE_BYTES)
        );
        assert_eq!(parse(&big).err(), Some(Violation::TooBig));
    }

    #[test]
    fn close_reasons_fit_a_control_frame() {
        assert_eq!(Violation::NotJson.code(), 1003);
        assert_eq!(Violation::TooBig.code(), 1009);
        assert_eq!(Violation::BadToken.code(), 4001);
        for why in [
            Violation::BadToken,
            Violation::NotJson,
            Violation::BadAudio,
            Violation::TooBig,
            Violation::NotStarted,
            Violation::BadMessage,
            Violation::BadRate,
            Violation::StartTimeout,
            Violation::Idle,
        ] {
            assert!(why.to_string().len() <= 123, "{why}");
        }
    }

    #[test]
    fn resampled_audio_comes_out_in_whole_frames() {
        let mut up = Resampler::new(16_000, 48_000).unwrap();
        let mut arena = BytesMut::new();
        resample_into(&mut up, &[0i16; 320], &mut arena);
        resample_into(&mut up, &[0i16; 320], &mut arena);
        assert!(!arena.is_empty());
        assert_eq!(arena.len() % (960 * 2), 0);
    }
}
