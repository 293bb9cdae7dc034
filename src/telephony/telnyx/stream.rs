//! Telnyx media streaming (bidirectional `rtp` mode): JSON text frames both ways.
//! In: `connected`, `start` (the stream id top-level, the call in `start.call_control_id`),
//! `media` (base64 RTP payload, no header), `dtmf`, `mark` (echoes of ours), `error`, `stop`.
//! Out: `media`, `mark`, `clear` — no stream id, unlike Twilio. Audio is PCMU (μ-law) 8 kHz
//! both ways, passed to the call without transcoding.
//!
//! Telnyx says media frame order is not guaranteed: frames are put back in `sequence_number`
//! order by [`Reorder`] (`reorder.rs`).
//!
//! As for Twilio, inbound `media` is parsed with borrowed fields and decoded into a shared byte
//! arena; malformed, oversized, duplicate and unknown frames are logged and skipped, never
//! ending a call.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;
use std::time::Duration;

use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use futures_util::StreamExt;
use futures_util::stream::{SplitSink, SplitStream};
use serde::Deserialize;
use serde::de::{self, Deserializer, Visitor};

use super::reorder::Reorder;
use crate::audio::AudioFormat;
use crate::transport::inactivity::Inactivity;
use crate::transport::wire_text::{Base64Arena, SkippedFrames, keypad_digit, push_json_str};
use crate::transport::{Inbound, MediaSink, MediaSource, TransportError};

/// Largest text frame we parse; a 20 ms media frame is ~300 bytes, a `start` well under 4 KiB.
pub const MAX_FRAME_BYTES: usize = 32 * 1024;
/// How long a new socket may take to send `start`.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
/// Arena block for decoded audio: many frames share one allocation.
const ARENA_BLOCK: usize = 8 * 1024;

/// What `start` told us about the stream.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StreamStart {
    pub stream_id: String,
    pub call_control_id: String,
    /// TeXML `<Parameter>`s (inbound calls: our call id and token).
    pub custom_parameters: HashMap<String, String>,
    /// The dial's `client_state` (outbound calls: base64 of our call id and token).
    pub client_state: Option<String>,
    /// `start`'s own sequence number: media counts on from it.
    pub sequence_number: Option<u64>,
}

impl StreamStart {
    /// Our call id and token: the TeXML parameters, else the dial's client state
    /// (`base64("call_id=…&token=…")`, see `client_state`).
    pub fn call_and_token(&self) -> (Option<String>, Option<String>) {
        let from_params = (
            self.custom_parameters.get("call_id").cloned(),
            self.custom_parameters.get("token").cloned(),
        );
        if from_params.0.is_some() && from_params.1.is_some() {
            return from_params;
        }
        match self.client_state.as_deref().and_then(decode_client_state) {
            Some((call_id, token)) => (Some(call_id), Some(token)),
            None => from_params,
        }
    }
}

/// The `client_state` of an outbound dial: our call id and token, form-encoded, base64 (Telnyx
/// requires base64 and echoes it in the stream's `start`).
pub fn client_state(call_id: &str, token: &str) -> String {
    let form = url::form_urlencoded::Serializer::new(String::new())
        .append_pair("call_id", call_id)
        .append_pair("token", token)
        .finish();
    STANDARD.encode(form)
}

/// The inverse of [`client_state`]; `None` for anyone else's state.
pub fn decode_client_state(state: &str) -> Option<(String, String)> {
    let form = STANDARD.decode(state.trim()).ok()?;
    let mut call_id = None;
    let mut token = None;
    for (k, v) in url::form_urlencoded::parse(&form) {
        match k.as_ref() {
            "call_id" => call_id = Some(v.into_owned()),
            "token" => token = Some(v.into_owned()),
            _ => {}
        }
    }
    Some((call_id?, token?))
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
    #[error("media format {0} is not PCMU 8 kHz mono")]
    UnsupportedFormat(String),
}

/// A sequence number: Telnyx sends strings ("4"); numbers are accepted too. Unreadable ones
/// count as absent.
#[derive(Debug, Clone, Copy, Default)]
struct Seq(Option<u64>);

impl<'de> Deserialize<'de> for Seq {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SeqVisitor;
        impl Visitor<'_> for SeqVisitor {
            type Value = Seq;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a sequence number")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Seq, E> {
                Ok(Seq(Some(v)))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Seq, E> {
                Ok(Seq(u64::try_from(v).ok()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Seq, E> {
                Ok(Seq(v.trim().parse().ok()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Seq, E> {
                Ok(Seq(None))
            }
        }
        d.deserialize_any(SeqVisitor)
    }
}

#[derive(Deserialize)]
struct WireFrame<'a> {
    #[serde(borrow)]
    event: &'a str,
    #[serde(default)]
    sequence_number: Seq,
    #[serde(default, borrow)]
    stream_id: Option<&'a str>,
    #[serde(default, borrow)]
    media: Option<WireMedia<'a>>,
    #[serde(default, borrow)]
    mark: Option<WireMark<'a>>,
    #[serde(default, borrow)]
    dtmf: Option<WireDtmf<'a>>,
    #[serde(default)]
    payload: Option<serde_json::Value>,
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
    name: Cow<'a, str>,
}

#[derive(Deserialize)]
struct WireDtmf<'a> {
    #[serde(borrow)]
    digit: Cow<'a, str>,
}

#[derive(Deserialize)]
struct WireStart {
    #[serde(default)]
    call_control_id: String,
    #[serde(default)]
    client_state: Option<String>,
    #[serde(default)]
    custom_parameters: Option<HashMap<String, String>>,
    #[serde(default)]
    media_format: Option<WireMediaFormat>,
}

#[derive(Deserialize)]
struct WireMediaFormat {
    encoding: String,
    #[serde(default)]
    sample_rate: Seq,
    #[serde(default)]
    channels: Seq,
}

/// Reads until `start` (skipping `connected`), within [`START_TIMEOUT`]. After it, a stream that
/// sends nothing for `inactivity` ends as a hang-up.
pub async fn accept(
    ws: WebSocket,
    inactivity: Duration,
) -> Result<(StreamStart, TelnyxSource, TelnyxSink), HandshakeError> {
    let (sink, mut stream) = ws.split();
    let start = tokio::time::timeout(START_TIMEOUT, read_start(&mut stream))
        .await
        .map_err(|_| HandshakeError::Timeout(START_TIMEOUT))??;
    let source = TelnyxSource {
        stream,
        decoder: FrameDecoder::new(start.stream_id.clone()),
        // The first frame after `start` sets the count: Telnyx's own examples skip numbers
        // between `start` and the first `media`, which must not look like a gap.
        reorder: Reorder::new(None),
        inactivity: Inactivity::new(inactivity),
    };
    Ok((start, source, TelnyxSink { sink }))
}

/// Reads `start` out of the frames before it.
pub fn parse_start(text: &str) -> Result<Option<StreamStart>, HandshakeError> {
    let frame: WireFrame<'_> =
        serde_json::from_str(text).map_err(|e| HandshakeError::BadStart(e.to_string()))?;
    if frame.event != "start" {
        return Ok(None);
    }
    let start = frame
        .start
        .ok_or_else(|| HandshakeError::BadStart("no start object".into()))?;
    if let Some(format) = &start.media_format {
        let rate = format.sample_rate.0.unwrap_or(8000);
        let channels = format.channels.0.unwrap_or(1);
        if !format.encoding.eq_ignore_ascii_case("PCMU") || rate != 8000 || channels != 1 {
            return Err(HandshakeError::UnsupportedFormat(format!(
                "{}@{rate}x{channels}",
                format.encoding
            )));
        }
    }
    Ok(Some(StreamStart {
        stream_id: frame.stream_id.unwrap_or_default().to_owned(),
        call_control_id: start.call_control_id,
        custom_parameters: start.custom_parameters.unwrap_or_default(),
        client_state: start.client_state,
        sequence_number: frame.sequence_number.0,
    }))
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
            tracing::warn!(
                len = text.len(),
                "oversized telnyx frame before start skipped"
            );
            continue;
        }
        match parse_start(text.as_str()) {
            Ok(Some(start)) => return Ok(start),
            Ok(None) => continue,
            // A malformed frame before start is skipped; a malformed start, or a codec we
            // did not ask for, refuses the stream.
            Err(HandshakeError::BadStart(e)) if !text.contains("\"start\"") => {
                tracing::warn!(error = %e, "malformed telnyx frame before start skipped");
            }
            Err(e) => return Err(e),
        }
    }
    Err(HandshakeError::Closed)
}

/// The receiving half of a Telnyx stream.
pub struct TelnyxSource {
    stream: SplitStream<WebSocket>,
    decoder: FrameDecoder,
    reorder: Reorder,
    inactivity: Inactivity,
}

impl TelnyxSource {
    /// Frames skipped so far (malformed, oversized, unknown) and audio dropped as late.
    pub fn skipped(&self) -> u64 {
        self.decoder.skipped.count() + self.reorder.dropped
    }
}

/// Turns text frames into numbered [`Inbound`] events; separate from the socket so it can be
/// tested.
pub struct FrameDecoder {
    stream_id: String,
    arena: Base64Arena,
    skipped: SkippedFrames,
}

impl FrameDecoder {
    pub fn new(stream_id: String) -> Self {
        Self {
            stream_id,
            arena: Base64Arena::new(ARENA_BLOCK),
            skipped: SkippedFrames::new("telnyx"),
        }
    }

    /// Decodes one text frame into its sequence number and event; `None` for frames that carry
    /// nothing for the call.
    pub fn decode(&mut self, text: &str) -> Option<(Option<u64>, Inbound)> {
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
        if frame
            .stream_id
            .is_some_and(|id| !self.stream_id.is_empty() && id != self.stream_id)
        {
            self.skipped.skip(
                "another stream's frame",
                &frame.stream_id.unwrap_or_default(),
            );
            return None;
        }
        let seq = frame.sequence_number.0;
        let event = match frame.event {
            "media" => {
                let Some(media) = frame.media else {
                    self.skipped.skip("media without payload", &"");
                    return None;
                };
                // Only the caller's side is asked for; anything else is not for the STT.
                if media
                    .track
                    .is_some_and(|t| t != "inbound" && t != "inbound_track")
                {
                    return None;
                }
                Inbound::Audio(self.arena.decode_audio(media.payload, &mut self.skipped)?)
            }
            "mark" => match frame.mark {
                Some(mark) => Inbound::Mark(mark.name.into_owned()),
                None => {
                    self.skipped.skip("mark without name", &"");
                    return None;
                }
            },
            "dtmf" => match frame.dtmf.as_ref().and_then(|d| keypad_digit(&d.digit)) {
                Some(d) => Inbound::Dtmf(d),
                None => {
                    self.skipped.skip("bad dtmf", &"");
                    return None;
                }
            },
            "stop" => Inbound::Hangup,
            "error" => {
                // Telnyx telling us a frame of ours was wrong: worth a line, not the call.
                tracing::warn!(payload = ?frame.payload, "telnyx reported a stream error");
                return None;
            }
            "connected" | "start" => return None,
            other => {
                self.skipped.skip("unknown event", &other);
                return None;
            }
        };
        Some((seq, event))
    }
}

impl MediaSource for TelnyxSource {
    async fn next(&mut self) -> Option<Inbound> {
        loop {
            if let Some(event) = self.reorder.pop() {
                return Some(event);
            }
            // The socket's end, an error or a silent stream: what waited for a gap is due now.
            let Some(message) = crate::transport::inactivity::next_message(
                &mut self.stream,
                &mut self.inactivity,
                "telnyx",
            )
            .await
            else {
                return self.end();
            };
            match message {
                Message::Text(text) => {
                    if let Some((seq, event)) = self.decoder.decode(text.as_str()) {
                        let stop = event == Inbound::Hangup;
                        let out = self.reorder.push(seq, event);
                        if stop {
                            // Nothing comes after stop: whatever waited for a gap is due now.
                            self.reorder.flush();
                        }
                        if let Some(event) = out {
                            return Some(event);
                        }
                    }
                }
                Message::Close(_) => return self.end(),
                Message::Binary(bytes) => self.decoder.skipped.skip("binary frame", &bytes.len()),
                Message::Ping(_) | Message::Pong(_) => {}
            }
        }
    }
}

impl TelnyxSource {
    /// The socket is gone: what still waited is delivered first, then the end.
    fn end(&mut self) -> Option<Inbound> {
        self.reorder.flush();
        self.reorder.pop()
    }
}

/// The sending half of a Telnyx stream.
pub struct TelnyxSink {
    sink: SplitSink<WebSocket, Message>,
}

impl TelnyxSink {
    async fn send_text(&mut self, text: String) -> Result<(), TransportError> {
        crate::transport::queue_message(&mut self.sink, Message::Text(Utf8Bytes::from(text))).await
    }
}

/// The `media` frame carrying `frame` (base64 PCMU).
pub fn media_frame(frame: &[u8]) -> String {
    let mut text = String::with_capacity(48 + frame.len() * 4 / 3 + 4);
    text.push_str(r#"{"event":"media","media":{"payload":""#);
    STANDARD.encode_string(frame, &mut text);
    text.push_str(r#""}}"#);
    text
}

/// The `mark` frame named `name`.
pub fn mark_frame(name: &str) -> String {
    let mut text = String::with_capacity(40 + name.len());
    text.push_str(r#"{"event":"mark","mark":{"name":""#);
    push_json_str(&mut text, name);
    text.push_str(r#""}}"#);
    text
}

/// The `clear` frame.
pub const CLEAR_FRAME: &str = r#"{"event":"clear"}"#;

impl MediaSink for TelnyxSink {
    fn format(&self) -> AudioFormat {
        AudioFormat::MULAW_8K
    }

    async fn send_audio(&mut self, frame: &[u8]) -> Result<(), TransportError> {
        self.send_text(media_frame(frame)).await
    }

    async fn send_mark(&mut self, name: &str) -> Result<(), TransportError> {
        self.send_text(mark_frame(name)).await
    }

    async fn clear(&mut self) -> Result<(), TransportError> {
        self.send_text(CLEAR_FRAME.to_owned()).await
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

    const ID: &str = "32de0dea-53cb-4b21-89a4-9e1819c043bc";

    fn media(seq: u64, payload: &str) -> String {
        format!(
            r#"{{"event":"media","sequence_number":"{seq}","stream_id":"{ID}","media":{{"track":"inbound","chunk":"{seq}","timestamp":"{}","payload":"{payload}"}}}}"#,
            seq * 20
        )
    }

    fn audio(byte: u8) -> (String, Inbound) {
        (
            STANDARD.encode([byte; 160]),
            Inbound::Audio(Bytes::from(vec![byte; 160])),
        )
    }

    #[test]
    fn the_documented_start_names_the_call() {
        // Telnyx's AsyncAPI example, with our parameters.
        let start = parse_start(&format!(
            r#"{{"event":"start","sequence_number":"1","stream_id":"{ID}","start":{{"user_id":"3e6f995f-85f7-4705-9741-53b116d28237","call_control_id":"v3:AbC","call_session_id":"ff55a038-6f5d-11ef-9692-02420aeffb1f","from":"+13122010094","to":"+13122123456","tags":["TAG1"],"client_state":"aGF2ZSBhIG5pY2UgZGF5ID1d","custom_parameters":{{"call_id":"c1","token":"t1"}},"media_format":{{"encoding":"PCMU","sample_rate":8000,"channels":1}}}}}}"#
        ))
        .unwrap()
        .unwrap();
        assert_eq!(start.stream_id, ID);
        assert_eq!(start.call_control_id, "v3:AbC");
        assert_eq!(start.sequence_number, Some(1));
        assert_eq!(
            start.call_and_token(),
            (Some("c1".into()), Some("t1".into()))
        );
        assert!(
            parse_start(r#"{"event":"connected","version":"1.0.0"}"#)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn outbound_calls_carry_the_token_in_client_state() {
        let state = client_state("call-9", "tok+/=");
        let start = StreamStart {
            client_state: Some(state),
            ..StreamStart::default()
        };
        assert_eq!(
            start.call_and_token(),
            (Some("call-9".into()), Some("tok+/=".into()))
        );
        assert_eq!(decode_client_state("aGF2ZSBhIG5pY2UgZGF5ID1d"), None);
    }

    #[test]
    fn another_codec_is_refused_at_start() {
        for format in [
            r#"{"encoding":"PCMA","sample_rate":8000,"channels":1}"#,
            r#"{"encoding":"L16","sample_rate":16000,"channels":1}"#,
            r#"{"encoding":"PCMU","sample_rate":"16000","channels":1}"#,
        ] {
            let text = format!(
                r#"{{"event":"start","stream_id":"{ID}","start":{{"call_control_id":"v3:x","media_format":{format}}}}}"#
            );
            assert!(
                matches!(
                    parse_start(&text),
                    Err(HandshakeError::UnsupportedFormat(_))
                ),
                "{format}"
            );
        }
    }

    #[test]
    fn media_marks_dtmf_and_stop_decode() {
        let mut d = FrameDecoder::new(ID.into());
        let (payload, expected) = audio(0xFF);
        assert_eq!(d.decode(&media(2, &payload)), Some((Some(2), expected)));
        let mark = format!(
            r#"{{"event":"mark","sequence_number":"3","stream_id":"{ID}","mark":{{"name":"g1-w3"}}}}"#
        );
        assert_eq!(
            d.decode(&mark),
            Some((Some(3), Inbound::Mark("g1-w3".into())))
        );
        let dtmf = format!(
            r##"{{"event":"dtmf","sequence_number":"4","stream_id":"{ID}","occurred_at":"2026-03-03T10:00:01Z","dtmf":{{"digit":"#"}}}}"##
        );
        assert_eq!(d.decode(&dtmf), Some((Some(4), Inbound::Dtmf('#'))));
        let error = format!(
            r#"{{"event":"error","sequence_number":"5","stream_id":"{ID}","payload":{{"code":100003,"title":"malformed_frame","detail":"x"}}}}"#
        );
        assert_eq!(d.decode(&error), None);
        let stop = format!(
            r#"{{"event":"stop","sequence_number":"6","stream_id":"{ID}","stop":{{"user_id":"u","call_control_id":"v3:x"}}}}"#
        );
        assert_eq!(d.decode(&stop), Some((Some(6), Inbound::Hangup)));
        assert_eq!(d.skipped.count(), 0);
    }

    #[test]
    fn bad_input_is_skipped_not_fatal() {
        let mut d = FrameDecoder::new(ID.into());
        let (good, expected) = audio(3);
        for bad in [
            "not json".to_owned(),
            "{}".to_owned(),
            format!(r#"{{"event":"media","sequence_number":"2","stream_id":"{ID}"}}"#),
            media(3, "!!!not base64!!!"),
            media(4, ""),
            format!(r#"{{"event":"bogus","sequence_number":"5","stream_id":"{ID}"}}"#),
            format!(
                r#"{{"event":"media","sequence_number":"6","stream_id":"other","media":{{"payload":"{good}"}}}}"#
            ),
            format!(
                r#"{{"event":"dtmf","sequence_number":"7","stream_id":"{ID}","dtmf":{{"digit":"x"}}}}"#
            ),
            "x".repeat(MAX_FRAME_BYTES + 1),
        ] {
            assert_eq!(d.decode(&bad), None, "{bad}");
        }
        assert_eq!(d.skipped.count(), 9);
        assert_eq!(d.decode(&media(10, &good)), Some((Some(10), expected)));
        // Numbers where Telnyx writes strings are read too.
        let numeric =
            format!(r#"{{"event":"media","sequence_number":11,"media":{{"payload":"{good}"}}}}"#);
        assert!(matches!(d.decode(&numeric), Some((Some(11), _))));
    }

    #[test]
    fn outbound_frames_have_no_stream_id() {
        assert_eq!(
            media_frame(&[0xFF, 0x7F]),
            r#"{"event":"media","media":{"payload":"/38="}}"#
        );
        assert_eq!(
            mark_frame("g1-\"w3"),
            r#"{"event":"mark","mark":{"name":"g1-\"w3"}}"#
        );
        assert_eq!(CLEAR_FRAME, r#"{"event":"clear"}"#);
    }
}
