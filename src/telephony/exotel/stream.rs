//! Exotel's Voicebot stream (bidirectional): JSON text frames both ways, snake_case, numbers as
//! strings. In: `connected`, `start` (`stream_sid`, `call_sid`, our call id and token in
//! `custom_parameters` — the query of the stream URL — and `media_format`), `media`, `dtmf`,
//! `mark` (the echo of ours), `stop`. Out: `media`, `mark`, `clear`, each with `stream_sid`
//! (snake_case: one open-source serializer sends Twilio's `streamSid`, which Exotel ignores).
//!
//! Audio is raw PCM16 little-endian ("slin") at the stream's rate (8 kHz unless the URL asks
//! for 16 or 24 kHz), base64. Exotel sends ~100 ms per `media`; the source hands the call
//! 20 ms slices of it (zero-copy views of one decoded buffer), since the VAD counts frames.
//!
//! Exotel's rules for what we send: a chunk is at least 100 ms and a multiple of 20 ms (320
//! bytes at 8 kHz); anything else plays with gaps. The call's writer sends 20 ms frames, so the
//! sink batches them and sends each time 100 ms are waiting. What that costs: the first audio of
//! a reply leaves when five frames are in, and every chunk up to 80 ms after its first frame
//! was ready; `voxbridge loadtest --provider exotel` measures ~50 ms more added latency per
//! reply than Plivo's per-frame protocol (p50 52 ms against 5 ms, one call). A
//! mark must follow exactly the audio before it, so a mark (and a clear and the close) first
//! flushes what is waiting, padded with silence to a whole 20 ms; a mark between words can
//! thus close a chunk shorter than 100 ms, the one departure from Exotel's guidance, made so
//! "what was heard" stays exact. A clear drops what is waiting here before telling Exotel.

use std::time::Duration;

use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::{SplitSink, SplitStream};
use serde::Deserialize;

use super::chunks::ChunkBuffer;
use crate::audio::{AudioFormat, Encoding};
use crate::transport::inactivity::Inactivity;
use crate::transport::wire_text::{Base64Arena, SkippedFrames, keypad_digit, push_json_str};
use crate::transport::{Inbound, MediaSink, MediaSource, TransportError};

/// Largest text frame we parse: 100 ms at 24 kHz is 4.8 KB, 6.4 KB of base64.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;
/// How long a new socket may take to send `start`.
pub const START_TIMEOUT: Duration = Duration::from_secs(10);
const ARENA_BLOCK: usize = 16 * 1024;

/// What `start` told us about the stream.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamStart {
    pub stream_sid: String,
    pub call_sid: String,
    pub account_sid: String,
    pub call_id: Option<String>,
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
    #[error("media format {0} is not 16-bit PCM at 8, 16 or 24 kHz")]
    UnsupportedFormat(String),
}

/// A value Exotel sends as a string (and, leniently, as a number).
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
    #[serde(default, borrow)]
    sequence_number: Option<Number<'a>>,
    #[serde(default, borrow)]
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
    stream_sid: String,
    #[serde(default)]
    call_sid: String,
    #[serde(default)]
    account_sid: String,
    #[serde(default)]
    custom_parameters: Option<serde_json::Map<String, serde_json::Value>>,
    #[serde(default)]
    media_format: Option<WireMediaFormat>,
}

#[derive(Deserialize)]
struct WireMediaFormat {
    #[serde(default)]
    sample_rate: Option<serde_json::Value>,
    #[serde(default)]
    bit_rate: Option<serde_json::Value>,
}

/// A string-or-number field as text.
fn text_of(value: &serde_json::Value) -> Option<String> {
    match value {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Reads `connected` and `start` within [`START_TIMEOUT`].
pub async fn accept(
    ws: WebSocket,
    inactivity: Duration,
) -> Result<(StreamStart, ExotelSource, ExotelSink), HandshakeError> {
    let (sink, mut stream) = ws.split();
    let start = tokio::time::timeout(START_TIMEOUT, read_start(&mut stream))
        .await
        .map_err(|_| HandshakeError::Timeout(START_TIMEOUT))??;
    let source = ExotelSource {
        stream,
        decoder: FrameDecoder::new(start.stream_sid.clone(), start.format),
        inactivity: Inactivity::new(inactivity),
    };
    let sink = ExotelSink::new(sink, start.stream_sid.clone(), start.format);
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

/// `Some` for `start`, `None` for a frame to skip before it (`connected` among them).
pub fn parse_start(text: &str) -> Result<Option<StreamStart>, HandshakeError> {
    if text.len() > MAX_FRAME_BYTES {
        tracing::warn!(
            len = text.len(),
            "oversized exotel frame before start skipped"
        );
        return Ok(None);
    }
    let frame: WireFrame<'_> = match serde_json::from_str(text) {
        Ok(frame) => frame,
        Err(e) => {
            tracing::warn!(error = %e, "malformed exotel frame before start skipped");
            return Ok(None);
        }
    };
    match frame.event {
        "connected" => return Ok(None),
        "start" => {}
        other => {
            tracing::warn!(event = other, "exotel event before start skipped");
            return Ok(None);
        }
    }
    let start = frame
        .start
        .ok_or_else(|| HandshakeError::BadStart("no start object".into()))?;
    let (rate, bits) = start
        .media_format
        .as_ref()
        .map(|f| {
            (
                f.sample_rate.as_ref().and_then(text_of),
                f.bit_rate.as_ref().and_then(text_of),
            )
        })
        .unwrap_or_default();
    // 8 kHz is Exotel's default; `encoding` is not read (`audio/x-raw` today, `base64` in older
    // examples): the bit rate and rate say what the bytes are.
    let rate = rate.unwrap_or_else(|| "8000".into());
    let format = match (rate.as_str(), bits.as_deref().unwrap_or("16")) {
        ("8000" | "16000" | "24000", "16") => {
            AudioFormat::new(Encoding::Pcm16, rate.parse().unwrap_or(8000))
        }
        (rate, bits) => {
            return Err(HandshakeError::UnsupportedFormat(format!(
                "{bits}-bit@{rate}"
            )));
        }
    };
    let params = start.custom_parameters.unwrap_or_default();
    let param = |name: &str| params.get(name).and_then(text_of).filter(|v| !v.is_empty());
    Ok(Some(StreamStart {
        call_id: param("call_id"),
        token: param("token"),
        stream_sid: start.stream_sid,
        call_sid: start.call_sid,
        account_sid: start.account_sid,
        format,
    }))
}

/// The receiving half of an Exotel stream.
pub struct ExotelSource {
    stream: SplitStream<WebSocket>,
    decoder: FrameDecoder,
    inactivity: Inactivity,
}

/// Turns text frames into [`Inbound`] events, audio cut into 20 ms frames.
pub struct FrameDecoder {
    stream_sid: String,
    arena: Base64Arena,
    /// Decoded audio not yet handed out.
    pending: Bytes,
    frame_bytes: usize,
    last_sequence: u64,
    skipped: SkippedFrames,
}

impl FrameDecoder {
    pub fn new(stream_sid: String, format: AudioFormat) -> Self {
        Self {
            stream_sid,
            arena: Base64Arena::new(ARENA_BLOCK),
            pending: Bytes::new(),
            frame_bytes: format.bytes_per_ms(20).max(2),
            last_sequence: 1,
            skipped: SkippedFrames::new("exotel"),
        }
    }

    pub fn skipped(&self) -> u64 {
        self.skipped.count()
    }

    /// The next 20 ms of audio already decoded, if any.
    pub fn next_frame(&mut self) -> Option<Inbound> {
        if self.pending.is_empty() {
            return None;
        }
        let n = self.frame_bytes.min(self.pending.len());
        Some(Inbound::Audio(self.pending.split_to(n)))
    }

    /// Decodes one text frame; audio is queued for [`next_frame`](Self::next_frame) and its
    /// first 20 ms answered.
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
                let audio = self.arena.decode_audio(media.payload, &mut self.skipped)?;
                if audio.len() % 2 != 0 {
                    self.skipped.skip("odd-length pcm16 payload", &audio.len());
                    return None;
                }
                self.pending = audio;
                self.next_frame()
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
            "connected" | "start" | "clear" => None,
            other => {
                self.skipped.skip("unknown event", &other);
                None
            }
        }
    }
}

impl MediaSource for ExotelSource {
    async fn next(&mut self) -> Option<Inbound> {
        if let Some(frame) = self.decoder.next_frame() {
            return Some(frame);
        }
        loop {
            let message = crate::transport::inactivity::next_message(
                &mut self.stream,
                &mut self.inactivity,
                "exotel",
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

/// The sending half of an Exotel stream.
pub struct ExotelSink {
    sink: SplitSink<WebSocket, Message>,
    stream_sid: String,
    format: AudioFormat,
    chunks: ChunkBuffer,
}

impl ExotelSink {
    fn new(sink: SplitSink<WebSocket, Message>, stream_sid: String, format: AudioFormat) -> Self {
        Self {
            sink,
            stream_sid,
            format,
            chunks: ChunkBuffer::new(format),
        }
    }

    async fn send_text(&mut self, text: String) -> Result<(), TransportError> {
        crate::transport::queue_message(&mut self.sink, Message::Text(Utf8Bytes::from(text))).await
    }

    /// Queues the chunk gathered so far, however short.
    async fn send_waiting_chunk(&mut self) -> Result<(), TransportError> {
        if let Some(chunk) = self.chunks.flush() {
            let text = media_frame(&self.stream_sid, &chunk);
            self.send_text(text).await?;
        }
        Ok(())
    }
}

/// `media` with one chunk.
pub fn media_frame(stream_sid: &str, chunk: &[u8]) -> String {
    let mut text = String::with_capacity(64 + stream_sid.len() + chunk.len() * 4 / 3 + 4);
    text.push_str(r#"{"event":"media","stream_sid":""#);
    push_json_str(&mut text, stream_sid);
    text.push_str(r#"","media":{"payload":""#);
    STANDARD.encode_string(chunk, &mut text);
    text.push_str(r#""}}"#);
    text
}

/// `mark` named `name`.
pub fn mark_frame(stream_sid: &str, name: &str) -> String {
    let mut text = String::with_capacity(64 + name.len());
    text.push_str(r#"{"event":"mark","stream_sid":""#);
    push_json_str(&mut text, stream_sid);
    text.push_str(r#"","mark":{"name":""#);
    push_json_str(&mut text, name);
    text.push_str(r#""}}"#);
    text
}

/// `clear`.
pub fn clear_frame(stream_sid: &str) -> String {
    let mut text = String::with_capacity(48);
    text.push_str(r#"{"event":"clear","stream_sid":""#);
    push_json_str(&mut text, stream_sid);
    text.push_str(r#""}"#);
    text
}

impl MediaSink for ExotelSink {
    fn format(&self) -> AudioFormat {
        self.format
    }

    async fn send_audio(&mut self, frame: &[u8]) -> Result<(), TransportError> {
        match self.chunks.push(frame) {
            Some(chunk) => {
                let text = media_frame(&self.stream_sid, &chunk);
                self.send_text(text).await
            }
            None => Ok(()),
        }
    }

    async fn send_mark(&mut self, name: &str) -> Result<(), TransportError> {
        self.send_waiting_chunk().await?;
        let text = mark_frame(&self.stream_sid, name);
        self.send_text(text).await
    }

    async fn clear(&mut self) -> Result<(), TransportError> {
        self.chunks.drop_waiting();
        let text = clear_frame(&self.stream_sid);
        self.send_text(text).await
    }

    async fn flush(&mut self) -> Result<(), TransportError> {
        crate::transport::flush_socket(&mut self.sink).await
    }

    async fn close(&mut self) -> Result<(), TransportError> {
        let _ = self.send_waiting_chunk().await;
        crate::transport::close_socket(&mut self.sink, crate::transport::call_ended_frame()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SID: &str = "MZaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const PCM8K: AudioFormat = AudioFormat::new(Encoding::Pcm16, 8000);

    fn start_text(rate: &str) -> String {
        format!(
            r#"{{"event":"start","sequence_number":"1","stream_sid":"{SID}","start":{{"stream_sid":"{SID}","call_sid":"CAbbbb","account_sid":"ACcccc","from":"+919876500000","to":"+918040000000","custom_parameters":{{"call_id":"c-1","token":"vst_t","sample-rate":"{rate}"}},"media_format":{{"encoding":"audio/x-raw","sample_rate":"{rate}","bit_rate":"16"}}}}}}"#
        )
    }

    fn media(seq: u64, payload: &str) -> String {
        format!(
            r#"{{"event":"media","sequence_number":"{seq}","stream_sid":"{SID}","media":{{"chunk":"{seq}","timestamp":"200","payload":"{payload}"}}}}"#
        )
    }

    #[test]
    fn connected_then_start_as_documented() {
        assert!(parse_start(r#"{"event":"connected"}"#).unwrap().is_none());
        let start = parse_start(&start_text("8000")).unwrap().unwrap();
        assert_eq!(start.stream_sid, SID);
        assert_eq!(start.call_sid, "CAbbbb");
        assert_eq!(start.call_id.as_deref(), Some("c-1"));
        assert_eq!(start.token.as_deref(), Some("vst_t"));
        assert_eq!(start.format, PCM8K);
        let start = parse_start(&start_text("16000")).unwrap().unwrap();
        assert_eq!(start.format, AudioFormat::PCM16_16K);
        assert!(matches!(
            parse_start(&start_text("44100")),
            Err(HandshakeError::UnsupportedFormat(_))
        ));
        let mulaw = start_text("8000").replace(r#""bit_rate":"16""#, r#""bit_rate":"8""#);
        assert!(matches!(
            parse_start(&mulaw),
            Err(HandshakeError::UnsupportedFormat(_))
        ));
        assert!(matches!(
            parse_start(r#"{"event":"start"}"#),
            Err(HandshakeError::BadStart(_))
        ));
    }

    #[test]
    fn a_100_ms_media_frame_becomes_five_20_ms_frames() {
        let mut d = FrameDecoder::new(SID.into(), PCM8K);
        let audio: Vec<u8> = (0..1600u32).map(|i| (i % 251) as u8).collect();
        let first = d.decode(&media(2, &STANDARD.encode(&audio)));
        let mut frames = vec![first.unwrap()];
        while let Some(frame) = d.next_frame() {
            frames.push(frame);
        }
        assert_eq!(frames.len(), 5);
        let joined: Vec<u8> = frames
            .into_iter()
            .flat_map(|f| match f {
                Inbound::Audio(a) => {
                    assert_eq!(a.len(), 320);
                    a.to_vec()
                }
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(joined, audio);
    }

    #[test]
    fn marks_dtmf_stop_and_bad_input() {
        let mut d = FrameDecoder::new(SID.into(), PCM8K);
        let mark = format!(
            r#"{{"event":"mark","sequence_number":"3","stream_sid":"{SID}","mark":{{"name":"g1-w2"}}}}"#
        );
        assert_eq!(d.decode(&mark), Some(Inbound::Mark("g1-w2".into())));
        let dtmf = format!(
            r#"{{"event":"dtmf","sequence_number":"4","stream_sid":"{SID}","dtmf":{{"digit":"5","duration":"100"}}}}"#
        );
        assert_eq!(d.decode(&dtmf), Some(Inbound::Dtmf('5')));
        for bad in [
            "nope".to_owned(),
            "{}".to_owned(),
            media(5, "@@@"),
            media(6, &STANDARD.encode([1u8, 2, 3])), // odd length: not PCM16
            media(7, ""),
            // Twilio's casing is another stream's frame to us.
            format!(r#"{{"event":"mark","sequence_number":"8","streamSid":"{SID}"}}"#),
            r#"{"event":"media","sequence_number":"9","stream_sid":"MZother","media":{"payload":"AAAA"}}"#
                .to_owned(),
            format!(
                r#"{{"event":"dtmf","sequence_number":"10","stream_sid":"{SID}","dtmf":{{"digit":"A"}}}}"#
            ),
            format!(r#"{{"event":"what","sequence_number":"11","stream_sid":"{SID}"}}"#),
            "y".repeat(MAX_FRAME_BYTES + 1),
        ] {
            assert_eq!(d.decode(&bad), None, "{bad}");
        }
        assert_eq!(d.skipped(), 10);
        assert_eq!(d.decode(&media(4, "AAAA")), None, "replay");
        let stop = format!(
            r#"{{"event":"stop","sequence_number":"90","stream_sid":"{SID}","stop":{{"call_sid":"CAbbbb","reason":"callended"}}}}"#
        );
        assert_eq!(d.decode(&stop), Some(Inbound::Hangup));
    }

    #[test]
    fn outbound_frames_use_snake_case_stream_sid() {
        let media: serde_json::Value = serde_json::from_str(&media_frame(SID, &[0; 4])).unwrap();
        assert_eq!(media["event"], "media");
        assert_eq!(media["stream_sid"], SID);
        assert_eq!(media["media"]["payload"], STANDARD.encode([0u8; 4]));
        let mark: serde_json::Value = serde_json::from_str(&mark_frame(SID, "g\"1")).unwrap();
        assert_eq!(mark["mark"]["name"], "g\"1");
        let clear: serde_json::Value = serde_json::from_str(&clear_frame(SID)).unwrap();
        assert_eq!(clear["event"], "clear");
        assert!(clear.get("streamSid").is_none());
    }
}
