//! Twilio Media Streams (bidirectional, `<Connect><Stream>`): JSON text frames both ways.
//! In: `connected`, `start`, `media`, `dtmf`, `mark`, `stop`. Out: `media`, `mark`, `clear`, each
//! carrying the `streamSid` from `start`. Audio is base64 μ-law 8 kHz.
//!
//! Inbound `media` is the hottest message of the server (50 per second per call): it is parsed
//! with borrowed fields and decoded into a shared byte arena, so a frame costs no allocation of
//! its own. Malformed, oversized, out-of-order and unknown frames are logged and skipped; they
//! never end a call.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures_util::StreamExt;
use futures_util::stream::{SplitSink, SplitStream};
use serde::Deserialize;

use crate::audio::AudioFormat;
use crate::transport::inactivity::Inactivity;
use crate::transport::wire_text::{Base64Arena, SkippedFrames, keypad_digit, push_json_str};
use crate::transport::{Inbound, MediaSink, MediaSource, TransportError};

/// Largest text frame we parse; a 20 ms media frame is ~330 bytes, a `start` well under 4 KiB.
pub const MAX_FRAME_BYTES: usize = 32 * 1024;
/// How long a new socket may take to send `start`.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Arena block for decoded audio: many frames share one allocation.
const ARENA_BLOCK: usize = 8 * 1024;

/// What `start` told us about the stream.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StreamStart {
    pub stream_sid: String,
    pub call_sid: String,
    pub account_sid: String,
    /// The `<Parameter>`s of the TwiML (our call id and one-time token).
    pub custom_parameters: HashMap<String, String>,
}

/// Why a socket never became a stream.
#[derive(Debug, thiserror::Error)]
pub enum HandshakeError {
    #[error("no start event within {0:?}")]
    Timeout(Duration),
    #[error("the socket closed before start")]
    Closed,
    #[error("start is malformed: {0}")]
    BadStart(String),
    #[error("media format {0} is not μ-law 8 kHz mono")]
    UnsupportedFormat(String),
}

#[derive(Deserialize)]
struct WireFrame<'a> {
    #[serde(borrow)]
    event: &'a str,
    #[serde(rename = "sequenceNumber", default, borrow)]
    sequence_number: Option<&'a str>,
    #[serde(rename = "streamSid", default, borrow)]
    stream_sid: Option<&'a str>,
    #[serde(default, borrow)]
    media: Option<WireMedia<'a>>,
    #[serde(default, borrow)]
    mark: Option<WireMark<'a>>,
    #[serde(default, borrow)]
    dtmf: Option<WireDtmf<'a>>,
    #[serde(default)]
    start: Option<WireStart>,
}

#[derive(Deserialize)]
struct WireMedia<'a> {
    #[serde(default, borrow)]
    track: Option<&'a str>,
    #[serde(borrow)]
    payload: &'a str,
}

#[derive(Deserialize)]
struct WireMark<'a> {
    #[serde(borrow)]
    name: &'a str,
}

#[derive(Deserialize)]
struct WireDtmf<'a> {
    #[serde(borrow)]
    digit: &'a str,
}

#[derive(Deserialize)]
struct WireStart {
    #[serde(rename = "streamSid")]
    stream_sid: String,
    #[serde(rename = "callSid", default)]
    call_sid: String,
    #[serde(rename = "accountSid", default)]
    account_sid: String,
    #[serde(rename = "customParameters", default)]
    custom_parameters: Option<HashMap<String, String>>,
    #[serde(rename = "mediaFormat", default)]
    media_format: Option<WireMediaFormat>,
}

#[derive(Deserialize)]
struct WireMediaFormat {
    encoding: String,
    #[serde(rename = "sampleRate")]
    sample_rate: u32,
    #[serde(default = "one")]
    channels: u32,
}

fn one() -> u32 {
    1
}

/// Reads until `start` (skipping `connected`), within [`START_TIMEOUT`]. After it, a stream that
/// sends nothing for `inactivity` ends as a hang-up.
pub async fn accept(
    ws: WebSocket,
    inactivity: Duration,
) -> Result<(StreamStart, TwilioSource, TwilioSink), HandshakeError> {
    let (sink, mut stream) = ws.split();
    let start = tokio::time::timeout(START_TIMEOUT, read_start(&mut stream))
        .await
        .map_err(|_| HandshakeError::Timeout(START_TIMEOUT))??;
    let source = TwilioSource {
        stream,
        decoder: FrameDecoder::new(start.stream_sid.clone()),
        inactivity: Inactivity::new(inactivity),
    };
    let sink = TwilioSink::new(sink, start.stream_sid.clone());
    Ok((start, source, sink))
}

async fn read_start(stream: &mut SplitStream<WebSocket>) -> Result<StreamStart, HandshakeError> {
    while let Some(message) = stream.next().await {
        let Ok(Message::Text(text)) = message else {
            if matches!(message, Ok(Message::Close(_)) | Err(_)) {
                return Err(HandshakeError::Closed);
            }
            continue;
        };
        if text.len() > MAX_FRAME_BYTES {
            tracing::warn!(len = text.len(), "oversized frame before start skipped");
            continue;
        }
        let frame: WireFrame<'_> = match serde_json::from_str(text.as_str()) {
            Ok(frame) => frame,
            Err(e) => {
                tracing::warn!(error = %e, "malformed frame before start skipped");
                continue;
            }
        };
        match frame.event {
            "connected" => continue,
            "start" => {
                let start = frame
                    .start
                    .ok_or_else(|| HandshakeError::BadStart("no start object".into()))?;
                if let Some(format) = &start.media_format
                    && (format.encoding != "audio/x-mulaw"
                        || format.sample_rate != 8000
                        || format.channels != 1)
                {
                    return Err(HandshakeError::UnsupportedFormat(format!(
                        "{}@{}x{}",
                        format.encoding, format.sample_rate, format.channels
                    )));
                }
                return Ok(StreamStart {
                    stream_sid: start.stream_sid,
                    call_sid: start.call_sid,
                    account_sid: start.account_sid,
                    custom_parameters: start.custom_parameters.unwrap_or_default(),
                });
            }
            other => tracing::warn!(event = other, "event before start skipped"),
        }
    }
    Err(HandshakeError::Closed)
}

/// The receiving half of a Twilio stream.
pub struct TwilioSource {
    stream: SplitStream<WebSocket>,
    decoder: FrameDecoder,
    inactivity: Inactivity,
}

impl TwilioSource {
    /// Frames skipped so far (malformed, oversized, out of order, unknown).
    pub fn skipped(&self) -> u64 {
        self.decoder.skipped.count()
    }
}

/// Turns text frames into [`Inbound`] events; separate from the socket so it can be tested.
pub struct FrameDecoder {
    stream_sid: String,
    arena: Base64Arena,
    last_sequence: u64,
    skipped: SkippedFrames,
}

impl FrameDecoder {
    /// A decoder for the stream `start` named.
    pub fn new(stream_sid: String) -> Self {
        Self {
            stream_sid,
            arena: Base64Arena::new(ARENA_BLOCK),
            last_sequence: 1,
            skipped: SkippedFrames::new("twilio"),
        }
    }

    /// Decodes one text frame; `None` for frames that carry nothing for the call.
    pub fn decode(&mut self, text: &str) -> Option<Inbound> {
        if text.len() > MAX_FRAME_BYTES {
            self.skipped.skip("oversized", &text.len());
            return None;
        }
        let frame: WireFrame<'_> = match serde_json::from_str(text) {
            Ok(frame) => frame,
            Err(e) => {
                self.skipped.skip("malformed json", &e);
                return None;
            }
        };
        if frame.stream_sid.is_some_and(|sid| sid != self.stream_sid) {
            self.skipped.skip(
                "another stream's frame",
                &frame.stream_sid.unwrap_or_default(),
            );
            return None;
        }
        // Sequence numbers rise by one per message; an old or repeated one is a replay.
        if let Some(seq) = frame.sequence_number.and_then(|s| s.parse::<u64>().ok()) {
            if seq <= self.last_sequence {
                self.skipped.skip("out of order", &seq);
                return None;
            }
            self.last_sequence = seq;
        }
        match frame.event {
            "media" => {
                let Some(media) = frame.media else {
                    self.skipped.skip("media without payload", &"");
                    return None;
                };
                if media.track.is_some_and(|t| t != "inbound") {
                    return None;
                }
                self.arena
                    .decode_audio(media.payload, &mut self.skipped)
                    .map(Inbound::Audio)
            }
            "mark" => match frame.mark {
                Some(mark) => Some(Inbound::Mark(mark.name.to_owned())),
                None => {
                    self.skipped.skip("mark without name", &"");
                    None
                }
            },
            "dtmf" => match frame.dtmf.and_then(|d| keypad_digit(d.digit)) {
                Some(d) => Some(Inbound::Dtmf(d)),
                None => {
                    self.skipped.skip("bad dtmf", &"");
                    None
                }
            },
            "stop" => Some(Inbound::Hangup),
            "connected" | "start" => None,
            other => {
                self.skipped.skip("unknown event", &other);
                None
            }
        }
    }
}

impl MediaSource for TwilioSource {
    async fn next(&mut self) -> Option<Inbound> {
        loop {
            let message = crate::transport::inactivity::next_message(
                &mut self.stream,
                &mut self.inactivity,
                "twilio",
            )
            .await?;
            match message {
                Message::Text(text) => {
                    if let Some(event) = self.decoder.decode(text.as_str()) {
                        return Some(event);
                    }
                }
                Message::Close(_) => return None,
                Message::Binary(bytes) => self.decoder.skipped.skip("binary frame", &bytes.len()),
                Message::Ping(_) | Message::Pong(_) => {}
            }
        }
    }
}

/// The sending half of a Twilio stream.
pub struct TwilioSink {
    sink: SplitSink<WebSocket, Message>,
    stream_sid: String,
}

impl TwilioSink {
    fn new(sink: SplitSink<WebSocket, Message>, stream_sid: String) -> Self {
        Self { sink, stream_sid }
    }

    async fn send_text(&mut self, text: String) -> Result<(), TransportError> {
        crate::transport::queue_message(&mut self.sink, Message::Text(Utf8Bytes::from(text))).await
    }
}

impl MediaSink for TwilioSink {
    fn format(&self) -> AudioFormat {
        AudioFormat::MULAW_8K
    }

    async fn send_audio(&mut self, frame: &[u8]) -> Result<(), TransportError> {
        let mut text = String::with_capacity(64 + self.stream_sid.len() + frame.len() * 4 / 3 + 4);
        text.push_str(r#"{"event":"media","streamSid":""#);
        push_json_str(&mut text, &self.stream_sid);
        text.push_str(r#"","media":{"payload":""#);
        STANDARD.encode_string(frame, &mut text);
        text.push_str(r#""}}"#);
        self.send_text(text).await
    }

    async fn send_mark(&mut self, name: &str) -> Result<(), TransportError> {
        let mut text = String::with_capacity(80 + name.len());
        text.push_str(r#"{"event":"mark","streamSid":""#);
        push_json_str(&mut text, &self.stream_sid);
        text.push_str(r#"","mark":{"name":""#);
        push_json_str(&mut text, name);
        text.push_str(r#""}}"#);
        self.send_text(text).await
    }

    async fn clear(&mut self) -> Result<(), TransportError> {
        let mut text = String::with_capacity(64);
        text.push_str(r#"{"event":"clear","streamSid":""#);
        push_json_str(&mut text, &self.stream_sid);
        text.push_str(r#""}"#);
        self.send_text(text).await
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
    use bytes::Bytes;

    use super::*;

    const SID: &str = "MZ22222222222222222222222222222222";

    fn media(seq: u64, payload: &str) -> String {
        format!(
            r#"{{"event":"media","sequenceNumber":"{seq}","media":{{"track":"inbound","chunk":"{seq}","timestamp":"20","payload":"{payload}"}},"streamSid":"{SID}"}}"#
        )
    }

    #[test]
    fn media_marks_dtmf_and_stop_decode() {
        let mut d = FrameDecoder::new(SID.into());
        let payload = STANDARD.encode([0xFFu8; 160]);
        assert_eq!(
            d.decode(&media(2, &payload)),
            Some(Inbound::Audio(Bytes::from(vec![0xFF; 160])))
        );
        let mark = format!(
            r#"{{"event":"mark","sequenceNumber":"3","streamSid":"{SID}","mark":{{"name":"g1-w3"}}}}"#
        );
        assert_eq!(d.decode(&mark), Some(Inbound::Mark("g1-w3".into())));
        let dtmf = format!(
            r#"{{"event":"dtmf","streamSid":"{SID}","sequenceNumber":"4","dtmf":{{"track":"inbound_track","digit":"7"}}}}"#
        );
        assert_eq!(d.decode(&dtmf), Some(Inbound::Dtmf('7')));
        let stop = format!(
            r#"{{"event":"stop","sequenceNumber":"5","streamSid":"{SID}","stop":{{"accountSid":"AC1","callSid":"CA1"}}}}"#
        );
        assert_eq!(d.decode(&stop), Some(Inbound::Hangup));
        assert_eq!(d.skipped.count(), 0);
    }

    #[test]
    fn bad_input_is_skipped_not_fatal() {
        let mut d = FrameDecoder::new(SID.into());
        let good = STANDARD.encode([1u8, 2, 3]);
        for bad in [
            "not json".to_owned(),
            "{}".to_owned(),
            r#"{"event":"media","sequenceNumber":"2","streamSid":"MZ2222"}"#.to_owned(),
            media(3, "!!!not base64!!!"),
            media(4, ""),
            format!(r#"{{"event":"bogus","sequenceNumber":"5","streamSid":"{SID}"}}"#),
            format!(
                r#"{{"event":"media","sequenceNumber":"6","streamSid":"MZother","media":{{"payload":"{good}"}}}}"#
            ),
            format!(
                r#"{{"event":"dtmf","sequenceNumber":"7","streamSid":"{SID}","dtmf":{{"digit":"x"}}}}"#
            ),
            "x".repeat(MAX_FRAME_BYTES + 1),
        ] {
            assert_eq!(d.decode(&bad), None, "{bad}");
        }
        assert_eq!(d.skipped.count(), 9);
        // The stream goes on: the next good frame decodes.
        assert_eq!(
            d.decode(&media(10, &good)),
            Some(Inbound::Audio(Bytes::from(vec![1, 2, 3])))
        );
    }

    #[test]
    fn replayed_or_old_frames_are_skipped() {
        let mut d = FrameDecoder::new(SID.into());
        let payload = STANDARD.encode([7u8; 160]);
        assert!(d.decode(&media(5, &payload)).is_some());
        assert_eq!(d.decode(&media(5, &payload)), None);
        assert_eq!(d.decode(&media(3, &payload)), None);
        assert!(d.decode(&media(6, &payload)).is_some());
    }

    #[test]
    fn decoded_frames_share_an_arena_but_stay_independent() {
        let mut d = FrameDecoder::new(SID.into());
        let a = d.decode(&media(2, &STANDARD.encode([1u8; 160]))).unwrap();
        let b = d.decode(&media(3, &STANDARD.encode([2u8; 160]))).unwrap();
        let (Inbound::Audio(a), Inbound::Audio(b)) = (a, b) else {
            panic!("audio expected")
        };
        assert!(a.iter().all(|&x| x == 1) && a.len() == 160);
        assert!(b.iter().all(|&x| x == 2) && b.len() == 160);
    }

    #[test]
    fn outbound_strings_are_escaped() {
        let mut out = String::new();
        push_json_str(&mut out, "a\"b\\c\n");
        assert_eq!(out, r#"a\"b\\c\u000a"#);
    }
}
