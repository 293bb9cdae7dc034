//! Plivo Audio Streams as Plivo's side of a call speaks them: `start` first (no `connected`),
//! numbers as JSON numbers (`sequenceNumber`, `media.chunk`), `media.timestamp` as a string of
//! epoch milliseconds, the `<Stream extraHeaders>` string repeated as `extra_headers` (`;`-joined,
//! as Plivo's examples show it), `dtmf`, `playedStream` for each checkpoint, and no `stop` (the
//! socket just closes). What the server sends is checked as Plivo would: `playAudio` in the
//! stream's codec (μ-law 8 kHz, declared in `media.contentType`/`sampleRate`), `checkpoint`
//! with a name, `clearAudio`, the right `streamId`, text frames only.

use std::borrow::Cow;
use std::fmt::Write as _;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use tokio_tungstenite::tungstenite::Message;

use crate::sim::caller::wire::{CallerWire, ServerMessage};
use crate::sim::caller::{CallerConfig, FRAME_BYTES, SILENCE};

/// The custom parameter under which the fake passes the answer's `extraHeaders`.
pub const EXTRA_HEADERS: &str = "extra_headers";

/// One call's Plivo stream.
pub struct PlivoWire {
    account_id: String,
    call_id: String,
    stream_id: String,
    extra_headers: String,
    seq: u64,
    chunk: u64,
    started_ms: u64,
}

impl PlivoWire {
    pub fn new(config: &CallerConfig) -> Self {
        let extra_headers = config
            .custom_parameters
            .iter()
            .find(|(k, _)| k == EXTRA_HEADERS)
            .map(|(_, v)| v.replace(',', ";"))
            .unwrap_or_default();
        let started_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or_default();
        Self {
            account_id: config.account_sid.clone(),
            call_id: config.call_sid.clone(),
            stream_id: config.stream_sid.clone(),
            extra_headers,
            seq: 0,
            chunk: 0,
            started_ms,
        }
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }
}

#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(borrow, default)]
    event: Option<Cow<'a, str>>,
    #[serde(rename = "streamId", borrow, default)]
    stream_id: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    media: Option<IncomingMedia<'a>>,
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct IncomingMedia<'a> {
    #[serde(rename = "contentType", borrow, default)]
    content_type: Option<Cow<'a, str>>,
    #[serde(rename = "sampleRate", default)]
    sample_rate: Option<u32>,
    #[serde(borrow, default)]
    payload: Option<Cow<'a, str>>,
}

impl CallerWire for PlivoWire {
    fn greeting(&mut self) -> Vec<Message> {
        let seq = self.next_seq();
        let start = serde_json::json!({
            "event": "start",
            "sequenceNumber": seq,
            "start": {
                "callId": self.call_id,
                "streamId": self.stream_id,
                "accountId": self.account_id,
                "tracks": ["inbound"],
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000}
            },
            "extra_headers": self.extra_headers,
        });
        vec![Message::text(start.to_string())]
    }

    fn media(&mut self, audio: Option<&[u8]>) -> Message {
        let seq = self.next_seq();
        self.chunk += 1;
        let mut frame = [SILENCE; FRAME_BYTES];
        if let Some(bytes) = audio {
            let n = bytes.len().min(FRAME_BYTES);
            frame[..n].copy_from_slice(&bytes[..n]);
        }
        let mut json = String::with_capacity(360 + self.extra_headers.len());
        let _ = write!(
            json,
            r#"{{"event":"media","sequenceNumber":{seq},"streamId":"{}","media":{{"track":"inbound","timestamp":"{}","chunk":{},"payload":""#,
            self.stream_id,
            self.started_ms + self.chunk * 20,
            self.chunk
        );
        BASE64.encode_string(frame, &mut json);
        let _ = write!(json, r#""}},"extra_headers":"{}"}}"#, self.extra_headers);
        Message::text(json)
    }

    fn dtmf(&mut self, digit: char) -> Option<Message> {
        let seq = self.next_seq();
        Some(Message::text(format!(
            r#"{{"event":"dtmf","sequenceNumber":{seq},"streamId":"{}","dtmf":{{"track":"inbound","digit":"{digit}"}},"extra_headers":"{}"}}"#,
            self.stream_id, self.extra_headers
        )))
    }

    fn mark_echo(&mut self, name: &str) -> Message {
        let name = serde_json::Value::String(name.to_owned());
        let seq = self.next_seq();
        Message::text(format!(
            r#"{{"event":"playedStream","sequenceNumber":{seq},"streamId":"{}","name":{name}}}"#,
            self.stream_id
        ))
    }

    fn stop(&mut self) -> Option<Message> {
        // Plivo ends a stream by closing the socket.
        None
    }

    fn decode<'m>(&mut self, message: &'m Message, audio: &mut Vec<u8>) -> ServerMessage<'m> {
        let text = match message {
            Message::Text(text) => text.as_str(),
            Message::Binary(_) => {
                return ServerMessage::Violation(
                    "binary frame: Plivo only accepts JSON text frames".to_owned(),
                );
            }
            _ => return ServerMessage::Ignore,
        };
        let message: Incoming<'_> = match serde_json::from_str(text) {
            Ok(message) => message,
            Err(e) => return ServerMessage::Violation(format!("not a JSON message ({e})")),
        };
        let Some(event) = message.event.as_deref() else {
            return ServerMessage::Violation("message without an event".to_owned());
        };
        if !matches!(
            event,
            "playAudio" | "checkpoint" | "clearAudio" | "sendDTMF"
        ) {
            return ServerMessage::Violation(format!(
                "unsupported event {event:?}: Plivo takes playAudio, checkpoint, clearAudio, sendDTMF"
            ));
        }
        if let Some(id) = message.stream_id.as_deref()
            && id != self.stream_id
        {
            return ServerMessage::Violation(format!("{event} for another stream: {id:?}"));
        }
        match event {
            "playAudio" => {
                let Some(media) = message.media else {
                    return ServerMessage::Violation("playAudio without media".to_owned());
                };
                if media.content_type.as_deref() != Some("audio/x-mulaw")
                    || media.sample_rate != Some(8000)
                {
                    return ServerMessage::Violation(format!(
                        "playAudio as {:?}@{:?}: the stream is audio/x-mulaw@8000",
                        media.content_type, media.sample_rate
                    ));
                }
                let Some(payload) = media.payload else {
                    return ServerMessage::Violation("playAudio without media.payload".to_owned());
                };
                audio.clear();
                if let Err(e) = BASE64.decode_vec(payload.as_bytes(), audio) {
                    return ServerMessage::Violation(format!(
                        "media.payload is not valid base64 ({e})"
                    ));
                }
                let warning = audio
                    .starts_with(b"RIFF")
                    .then(|| "media.payload is a WAV file: send raw audio".to_owned());
                ServerMessage::Audio { warning }
            }
            "checkpoint" => match message.name {
                Some(name) => ServerMessage::Mark(name),
                None => ServerMessage::Violation("checkpoint without a name".to_owned()),
            },
            "clearAudio" => ServerMessage::Clear,
            _ => ServerMessage::Ignore,
        }
    }
}
