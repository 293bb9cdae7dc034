//! Plivo Audio Streams (bidirectional `<Stream>`): JSON text frames both ways, camelCase.
//! In: `start` (first: Plivo sends no `connected`), `media`, `dtmf`, `playedStream` (the echo of
//! our `checkpoint`; older docs call it `played`), `clearedAudio`. Out: `playAudio`,
//! `checkpoint`, `clearAudio`, each with the `streamId` from `start`. Types differ from Twilio:
//! `sequenceNumber` and `media.chunk` are numbers, and our call id and token come back as the
//! `extra_headers` string.
//!
//! The codec is whatever `start.mediaFormat` says among Plivo's three (μ-law 8 kHz, which our
//! `<Stream>` asks for and which passes through untranscoded, or L16 at 8 or 16 kHz); audio sent
//! back is declared in the same format. Like Twilio's codec: inbound `media` is parsed with
//! borrowed fields and decoded into a shared byte arena; malformed, oversized, out-of-order and
//! unknown frames are logged and skipped, never ending a call. Plivo has no `stop` frame (the
//! socket closes), but one is read as a hang-up if it comes.

use std::time::Duration;

use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures_util::StreamExt;
use futures_util::stream::{SplitSink, SplitStream};
use serde::Deserialize;

use super::headers;
use crate::audio::{AudioFormat, Encoding};
use crate::transport::inactivity::Inactivity;
use crate::transport::wire_text::{Base64Arena, SkippedFrames, keypad_digit, push_json_str};
use crate::transport::{Inbound, MediaSink, MediaSource, TransportError};

/// Largest text frame we parse; a 20 ms L16 16 kHz frame is ~900 bytes of base64.
pub const MAX_FRAME_BYTES: usize = 32 * 1024;
/// How long a new socket may take to send `start`.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Arena block for decoded audio: many frames share one allocation.
const ARENA_BLOCK: usize = 8 * 1024;

/// What `start` told us about the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamStart {
    pub stream_id: String,
    /// Plivo's CallUUID.
    pub call_id: String,
    pub account_id: String,
    /// Our call id and token, from `extra_headers`.
    pub our_call_id: Option<String>,
    pub token: Option<String>,
    pub format: AudioFormat,
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
    #[error("media format {0} is not one Plivo streams (μ-law 8 kHz, L16 8/16 kHz)")]
    UnsupportedFormat(String),
}

/// A number Plivo sends as a number (and, to be lenient, as a string).
#[derive(Deserialize)]
#[serde(untagged)]
enum Number<'a> {
    Int(u64),
    Text(&'a str),
}

impl Number<'_> {
    fn value(&self) -> Option<u64> {
        match self {
            Number::Int(n) => Some(*n),
            Number::Text(s) => s.parse().ok(),
        }
    }
}

#[derive(Deserialize)]
struct WireFrame<'a> {
    #[serde(borrow)]
    event: &'a str,
    #[serde(rename = "sequenceNumber", default, borrow)]
    sequence_number: Option<Number<'a>>,
    #[serde(rename = "streamId", default, borrow)]
    stream_id: Option<&'a str>,
    #[serde(default, borrow)]
    media: Option<WireMedia<'a>>,
    #[serde(default, borrow)]
    name: Option<&'a str>,
    #[serde(default, borrow)]
    dtmf: Option<WireDtmf<'a>>,
    #[serde(default)]
    start: Option<WireStart>,
    #[serde(default)]
    extra_headers: Option<String>,
}

#[derive(Deserialize)]
struct WireMedia<'a> {
    #[serde(default, borrow)]
    track: Option<&'a str>,
    #[serde(borrow)]
    payload: &'a str,
}

#[derive(Deserialize)]
struct WireDtmf<'a> {
    #[serde(borrow)]
    digit: &'a str,
}

#[derive(Deserialize)]
struct WireStart {
    #[serde(rename = "streamId")]
    stream_id: String,
    #[serde(rename = "callId", default)]
    call_id: String,
    #[serde(rename = "accountId", default)]
    account_id: String,
    #[serde(rename = "mediaFormat", default)]
    media_format: Option<WireMediaFormat>,
}

#[derive(Deserialize)]
struct WireMediaFormat {
    encoding: String,
    #[serde(rename = "sampleRate")]
    sample_rate: u32,
}

/// The audio format of a `mediaFormat`, if it is one Plivo streams.
fn format_of(encoding: &str, sample_rate: u32) -> Option<AudioFormat> {
    match (encoding, sample_rate) {
        ("audio/x-mulaw", 8000) => Some(AudioFormat::MULAW_8K),
        ("audio/x-l16", 8000 | 16_000) => Some(AudioFormat::new(Encoding::Pcm16, sample_rate)),
        _ => None,
    }
}

/// `playAudio`'s `contentType` for a format.
fn content_type(format: AudioFormat) -> &'static str {
    match format.encoding {
        Encoding::Mulaw => "audio/x-mulaw",
        _ => "audio/x-l16",
    }
}

/// Reads until `start` within [`START_TIMEOUT`]. After it, a stream that sends nothing for
/// `inactivity` ends as a hang-up.
pub async fn accept(
    ws: WebSocket,
    inactivity: Duration,
) -> Result<(StreamStart, PlivoSource, PlivoSink), HandshakeError> {
    let (sink, mut stream) = ws.split();
    let start = tokio::time::timeout(START_TIMEOUT, read_start(&mut stream))
        .await
        .map_err(|_| HandshakeError::Timeout(START_TIMEOUT))??;
    let source = PlivoSource {
        stream,
        decoder: FrameDecoder::new(start.stream_id.clone()),
        inactivity: Inactivity::new(inactivity),
    };
    let sink = PlivoSink::new(sink, start.stream_id.clone(), start.format);
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
        if let Some(start) = parse_start(text.as_str())? {
            return Ok(start);
        }
    }
    Err(HandshakeError::Closed)
}

/// `Some` for a `start` frame, `None` for a frame to skip before it.
pub fn parse_start(text: &str) -> Result<Option<StreamStart>, HandshakeError> {
    if text.len() > MAX_FRAME_BYTES {
        tracing::warn!(
            len = text.len(),
            "oversized plivo frame before start skipped"
        );
        return Ok(None);
    }
    let frame: WireFrame<'_> = match serde_json::from_str(text) {
        Ok(frame) => frame,
        Err(e) => {
            tracing::warn!(error = %e, "malformed plivo frame before start skipped");
            return Ok(None);
        }
    };
    if frame.event != "start" {
        tracing::warn!(event = frame.event, "plivo event before start skipped");
        return Ok(None);
    }
    let start = frame
        .start
        .ok_or_else(|| HandshakeError::BadStart("no start object".into()))?;
    // Plivo's default is L16 8 kHz: a stream that names no format is read as that.
    let format = match &start.media_format {
        Some(f) => format_of(&f.encoding, f.sample_rate).ok_or_else(|| {
            HandshakeError::UnsupportedFormat(format!("{}@{}", f.encoding, f.sample_rate))
        })?,
        None => AudioFormat::new(Encoding::Pcm16, 8000),
    };
    let (our_call_id, token) = frame
        .extra_headers
        .as_deref()
        .map(headers::decode)
        .unwrap_or_default();
    Ok(Some(StreamStart {
        stream_id: start.stream_id,
        call_id: start.call_id,
        account_id: start.account_id,
        our_call_id,
        token,
        format,
    }))
}

/// The receiving half of a Plivo stream.
pub struct PlivoSource {
    stream: SplitStream<WebSocket>,
    decoder: FrameDecoder,
    inactivity: Inactivity,
}

/// Turns text frames into [`Inbound`] events; separate from the socket so it can be tested.
pub struct FrameDecoder {
    stream_id: String,
    arena: Base64Arena,
    last_sequence: u64,
    skipped: SkippedFrames,
}

impl FrameDecoder {
    /// A decoder for the stream `start` named (`start` was sequence number 1).
    pub fn new(stream_id: String) -> Self {
        Self {
            stream_id,
            arena: Base64Arena::new(ARENA_BLOCK),
            last_sequence: 1,
            skipped: SkippedFrames::new("plivo"),
        }
    }

    /// Frames skipped so far.
    pub fn skipped(&self) -> u64 {
        self.skipped.count()
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
        if frame.stream_id.is_some_and(|id| id != self.stream_id) {
            self.skipped.skip(
                "another stream's frame",
                &frame.stream_id.unwrap_or_default(),
            );
            return None;
        }
        if let Some(seq) = frame.sequence_number.as_ref().and_then(Number::value) {
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
            "playedStream" | "played" => match frame.name {
                Some(name) => Some(Inbound::Mark(name.to_owned())),
                None => {
                    self.skipped.skip("checkpoint echo without name", &"");
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
            "start" | "clearedAudio" => None,
            other => {
                self.skipped.skip("unknown event", &other);
                None
            }
        }
    }
}

impl MediaSource for PlivoSource {
    async fn next(&mut self) -> Option<Inbound> {
        loop {
            let message = crate::transport::inactivity::next_message(
                &mut self.stream,
                &mut self.inactivity,
                "plivo",
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

/// The sending half of a Plivo stream.
pub struct PlivoSink {
    sink: SplitSink<WebSocket, Message>,
    stream_id: String,
    format: AudioFormat,
}

impl PlivoSink {
    fn new(sink: SplitSink<WebSocket, Message>, stream_id: String, format: AudioFormat) -> Self {
        Self {
            sink,
            stream_id,
            format,
        }
    }

    async fn send_text(&mut self, text: String) -> Result<(), TransportError> {
        crate::transport::queue_message(&mut self.sink, Message::Text(Utf8Bytes::from(text))).await
    }
}

/// `playAudio` for one frame.
pub fn play_audio_frame(stream_id: &str, format: AudioFormat, frame: &[u8]) -> String {
    let mut text = String::with_capacity(128 + stream_id.len() + frame.len() * 4 / 3 + 4);
    text.push_str(r#"{"event":"playAudio","streamId":""#);
    push_json_str(&mut text, stream_id);
    text.push_str(r#"","media":{"contentType":""#);
    text.push_str(content_type(format));
    text.push_str(r#"","sampleRate":"#);
    text.push_str(&format.sample_rate.to_string());
    text.push_str(r#","payload":""#);
    STANDARD.encode_string(frame, &mut text);
    text.push_str(r#""}}"#);
    text
}

/// `checkpoint` named `name`.
pub fn checkpoint_frame(stream_id: &str, name: &str) -> String {
    let mut text = String::with_capacity(64 + name.len());
    text.push_str(r#"{"event":"checkpoint","streamId":""#);
    push_json_str(&mut text, stream_id);
    text.push_str(r#"","name":""#);
    push_json_str(&mut text, name);
    text.push_str(r#""}"#);
    text
}

/// `clearAudio`.
pub fn clear_frame(stream_id: &str) -> String {
    let mut text = String::with_capacity(64);
    text.push_str(r#"{"event":"clearAudio","streamId":""#);
    push_json_str(&mut text, stream_id);
    text.push_str(r#""}"#);
    text
}

impl MediaSink for PlivoSink {
    fn format(&self) -> AudioFormat {
        self.format
    }

    async fn send_audio(&mut self, frame: &[u8]) -> Result<(), TransportError> {
        let text = play_audio_frame(&self.stream_id, self.format, frame);
        self.send_text(text).await
    }

    async fn send_mark(&mut self, name: &str) -> Result<(), TransportError> {
        let text = checkpoint_frame(&self.stream_id, name);
        self.send_text(text).await
    }

    async fn clear(&mut self) -> Result<(), TransportError> {
        let text = clear_frame(&self.stream_id);
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

    const SID: &str = "b7e1c0aa-0000-4000-8000-000000000001";

    fn media(seq: u64, payload: &str) -> String {
        format!(
            r#"{{"event":"media","sequenceNumber":{seq},"streamId":"{SID}","media":{{"track":"inbound","timestamp":"1719000000123","chunk":{seq},"payload":"{payload}"}},"extra_headers":"callid=61;token=62"}}"#
        )
    }

    #[test]
    fn start_as_documented_names_the_call_format_and_our_ids() {
        let extra = headers::encode("call-1", "vst_t")
            .unwrap()
            .replace(',', ";");
        let text = format!(
            r#"{{"event":"start","sequenceNumber":1,"start":{{"callId":"0d2f8d1c-1","streamId":"{SID}","accountId":"MAXXXXXXXXXXXXXXXXXX","tracks":["inbound"],"mediaFormat":{{"encoding":"audio/x-mulaw","sampleRate":8000}}}},"extra_headers":"{extra}"}}"#
        );
        let start = parse_start(&text).unwrap().unwrap();
        assert_eq!(start.stream_id, SID);
        assert_eq!(start.call_id, "0d2f8d1c-1");
        assert_eq!(start.format, AudioFormat::MULAW_8K);
        assert_eq!(start.our_call_id.as_deref(), Some("call-1"));
        assert_eq!(start.token.as_deref(), Some("vst_t"));

        let l16 = text
            .replace("audio/x-mulaw", "audio/x-l16")
            .replace("8000", "16000");
        let start = parse_start(&l16).unwrap().unwrap();
        assert_eq!(start.format, AudioFormat::PCM16_16K);
    }

    #[test]
    fn a_wrong_codec_or_a_start_without_body_is_refused_and_noise_is_skipped() {
        let opus = format!(
            r#"{{"event":"start","sequenceNumber":1,"start":{{"callId":"c","streamId":"{SID}","mediaFormat":{{"encoding":"audio/opus","sampleRate":48000}}}}}}"#
        );
        assert!(matches!(
            parse_start(&opus),
            Err(HandshakeError::UnsupportedFormat(_))
        ));
        assert!(matches!(
            parse_start(r#"{"event":"start"}"#),
            Err(HandshakeError::BadStart(_))
        ));
        assert!(parse_start("not json").unwrap().is_none());
        assert!(parse_start(r#"{"event":"media"}"#).unwrap().is_none());
        assert!(
            parse_start(&"x".repeat(MAX_FRAME_BYTES + 1))
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn media_checkpoints_dtmf_and_clears_decode() {
        let mut d = FrameDecoder::new(SID.into());
        let payload = STANDARD.encode([0xFFu8; 160]);
        assert_eq!(
            d.decode(&media(2, &payload)),
            Some(Inbound::Audio(Bytes::from(vec![0xFF; 160])))
        );
        let played = format!(
            r#"{{"event":"playedStream","sequenceNumber":3,"streamId":"{SID}","name":"g1-w3"}}"#
        );
        assert_eq!(d.decode(&played), Some(Inbound::Mark("g1-w3".into())));
        let old_name =
            format!(r#"{{"event":"played","sequenceNumber":4,"streamId":"{SID}","name":"g1-w4"}}"#);
        assert_eq!(d.decode(&old_name), Some(Inbound::Mark("g1-w4".into())));
        let dtmf = format!(
            r#"{{"event":"dtmf","sequenceNumber":5,"streamId":"{SID}","dtmf":{{"track":"inbound","digit":"5"}}}}"#
        );
        assert_eq!(d.decode(&dtmf), Some(Inbound::Dtmf('5')));
        let cleared =
            format!(r#"{{"event":"clearedAudio","sequenceNumber":6,"streamId":"{SID}"}}"#);
        assert_eq!(d.decode(&cleared), None);
        assert_eq!(d.skipped(), 0);
    }

    #[test]
    fn bad_input_is_skipped_not_fatal() {
        let mut d = FrameDecoder::new(SID.into());
        let good = STANDARD.encode([1u8, 2, 3]);
        for bad in [
            "not json".to_owned(),
            "{}".to_owned(),
            format!(r#"{{"event":"media","sequenceNumber":2,"streamId":"{SID}"}}"#),
            media(3, "!!!not base64!!!"),
            media(4, ""),
            format!(r#"{{"event":"bogus","sequenceNumber":5,"streamId":"{SID}"}}"#),
            format!(
                r#"{{"event":"media","sequenceNumber":6,"streamId":"other","media":{{"payload":"{good}"}}}}"#
            ),
            format!(
                r#"{{"event":"dtmf","sequenceNumber":7,"streamId":"{SID}","dtmf":{{"digit":"x"}}}}"#
            ),
            format!(r#"{{"event":"playedStream","sequenceNumber":8,"streamId":"{SID}"}}"#),
            // Twilio's string sequence numbers and casing are not Plivo's; still read leniently.
            "x".repeat(MAX_FRAME_BYTES + 1),
        ] {
            assert_eq!(d.decode(&bad), None, "{bad}");
        }
        assert_eq!(d.skipped(), 10);
        assert_eq!(
            d.decode(&media(10, &good)),
            Some(Inbound::Audio(Bytes::from(vec![1, 2, 3])))
        );
        // A replayed or old sequence number is skipped.
        assert_eq!(d.decode(&media(10, &good)), None);
        assert_eq!(d.decode(&media(9, &good)), None);
        // A string sequence number is accepted too.
        let text = media(11, &good).replace(r#""sequenceNumber":11"#, r#""sequenceNumber":"11""#);
        assert!(d.decode(&text).is_some());
    }

    #[test]
    fn outbound_frames_match_the_documented_shapes() {
        let play: serde_json::Value =
            serde_json::from_str(&play_audio_frame(SID, AudioFormat::MULAW_8K, &[0xFF; 4]))
                .unwrap();
        assert_eq!(play["event"], "playAudio");
        assert_eq!(play["streamId"], SID);
        assert_eq!(play["media"]["contentType"], "audio/x-mulaw");
        assert_eq!(play["media"]["sampleRate"], 8000);
        assert_eq!(play["media"]["payload"], STANDARD.encode([0xFF; 4]));
        let l16: serde_json::Value =
            serde_json::from_str(&play_audio_frame(SID, AudioFormat::PCM16_16K, &[0; 4])).unwrap();
        assert_eq!(l16["media"]["contentType"], "audio/x-l16");
        assert_eq!(l16["media"]["sampleRate"], 16000);
        let checkpoint: serde_json::Value =
            serde_json::from_str(&checkpoint_frame(SID, "g1-\"w3")).unwrap();
        assert_eq!(checkpoint["event"], "checkpoint");
        assert_eq!(checkpoint["name"], "g1-\"w3");
        let clear: serde_json::Value = serde_json::from_str(&clear_frame(SID)).unwrap();
        assert_eq!(clear["event"], "clearAudio");
        assert_eq!(clear["streamId"], SID);
    }
}
