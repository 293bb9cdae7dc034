//! Telnyx media streaming as Telnyx's side of a call speaks it: `connected`, then `start` (the
//! stream id top-level, `call_control_id`, `client_state` of the dial or the TeXML
//! `custom_parameters`, PCMU/8000/1), a `media` frame per 20 ms with `sequence_number`, `chunk`
//! and `timestamp` as strings, `dtmf`, mark echoes and `stop`. What the server sends is checked
//! as Telnyx checks it: JSON text frames of `media`, `mark` or `clear` only, valid base64. A
//! stream without `stream_bidirectional_mode: "rtp"` plays nothing the server sends: Telnyx
//! silently drops RTP frames in its default `mp3` mode, and so does this wire.

use std::borrow::Cow;
use std::fmt::Write as _;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use tokio_tungstenite::tungstenite::Message;

use crate::sim::caller::wire::{CallerWire, ServerMessage};
use crate::sim::caller::{CallerConfig, FRAME_BYTES, SILENCE};

/// How a stream was started, beyond the caller's config.
#[derive(Debug, Clone, Default)]
pub struct TelnyxStream {
    /// The dial's `client_state` (outbound calls).
    pub client_state: Option<String>,
    /// `stream_bidirectional_mode` / `bidirectionalMode` was `rtp`: the server's audio plays.
    pub bidirectional_rtp: bool,
}

/// One call's Telnyx stream.
pub struct TelnyxWire {
    call_control_id: String,
    stream_id: String,
    custom_parameters: Vec<(String, String)>,
    stream: TelnyxStream,
    seq: u64,
    chunk: u64,
    silence_payload: String,
}

impl TelnyxWire {
    pub fn new(config: &CallerConfig, stream: TelnyxStream) -> Self {
        Self {
            call_control_id: config.call_sid.clone(),
            stream_id: config.stream_sid.clone(),
            custom_parameters: config.custom_parameters.clone(),
            stream,
            seq: 0,
            chunk: 0,
            silence_payload: BASE64.encode([SILENCE; FRAME_BYTES]),
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
    #[serde(borrow, default)]
    media: Option<IncomingMedia<'a>>,
    #[serde(borrow, default)]
    mark: Option<IncomingMark<'a>>,
}

#[derive(Deserialize)]
struct IncomingMedia<'a> {
    #[serde(borrow, default)]
    payload: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct IncomingMark<'a> {
    #[serde(borrow, default)]
    name: Option<Cow<'a, str>>,
}

impl CallerWire for TelnyxWire {
    fn greeting(&mut self) -> Vec<Message> {
        let parameters: serde_json::Map<String, serde_json::Value> = self
            .custom_parameters
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        let seq = self.next_seq();
        let mut start = serde_json::json!({
            "user_id": "3e6f995f-85f7-4705-9741-53b116d28237",
            "call_control_id": self.call_control_id,
            "call_session_id": uuid::Uuid::new_v4().to_string(),
            "from": "+13122010094",
            "to": "+13122123456",
            "tags": [],
            "custom_parameters": parameters,
            "media_format": {"encoding": "PCMU", "sample_rate": 8000, "channels": 1},
        });
        if let Some(state) = &self.stream.client_state {
            start["client_state"] = serde_json::Value::from(state.clone());
        }
        let start = serde_json::json!({
            "event": "start",
            "sequence_number": seq.to_string(),
            "stream_id": self.stream_id,
            "start": start,
        });
        vec![
            Message::text(r#"{"event":"connected","version":"1.0.0"}"#),
            Message::text(start.to_string()),
        ]
    }

    fn media(&mut self, audio: Option<&[u8]>) -> Message {
        let seq = self.next_seq();
        self.chunk += 1;
        let mut json = String::with_capacity(300 + self.stream_id.len());
        let _ = write!(
            json,
            r#"{{"event":"media","sequence_number":"{seq}","stream_id":"{}","media":{{"track":"inbound","chunk":"{}","timestamp":"{}","payload":""#,
            self.stream_id,
            self.chunk,
            self.chunk * 20
        );
        match audio {
            Some(bytes) if bytes.len() == FRAME_BYTES => BASE64.encode_string(bytes, &mut json),
            Some(bytes) => {
                let mut frame = [SILENCE; FRAME_BYTES];
                let n = bytes.len().min(FRAME_BYTES);
                frame[..n].copy_from_slice(&bytes[..n]);
                BASE64.encode_string(frame, &mut json);
            }
            None => json.push_str(&self.silence_payload),
        }
        json.push_str(r#""}}"#);
        Message::text(json)
    }

    fn dtmf(&mut self, digit: char) -> Option<Message> {
        let seq = self.next_seq();
        Some(Message::text(format!(
            r#"{{"event":"dtmf","sequence_number":"{seq}","stream_id":"{}","occurred_at":"2026-12-06T10:00:00Z","dtmf":{{"digit":"{digit}"}}}}"#,
            self.stream_id
        )))
    }

    fn mark_echo(&mut self, name: &str) -> Message {
        let name = serde_json::Value::String(name.to_owned());
        let seq = self.next_seq();
        Message::text(format!(
            r#"{{"event":"mark","sequence_number":"{seq}","stream_id":"{}","mark":{{"name":{name}}}}}"#,
            self.stream_id
        ))
    }

    fn stop(&mut self) -> Option<Message> {
        let seq = self.next_seq();
        Some(Message::text(format!(
            r#"{{"event":"stop","sequence_number":"{seq}","stream_id":"{}","stop":{{"user_id":"3e6f995f-85f7-4705-9741-53b116d28237","call_control_id":"{}"}}}}"#,
            self.stream_id, self.call_control_id
        )))
    }

    fn decode<'m>(&mut self, message: &'m Message, audio: &mut Vec<u8>) -> ServerMessage<'m> {
        let text = match message {
            Message::Text(text) => text.as_str(),
            Message::Binary(_) => {
                return ServerMessage::Violation(
                    "binary frame: Telnyx only accepts JSON text frames".to_owned(),
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
        match event {
            "media" => {
                let Some(payload) = message.media.and_then(|m| m.payload) else {
                    return ServerMessage::Violation("media without media.payload".to_owned());
                };
                audio.clear();
                if let Err(e) = BASE64.decode_vec(payload.as_bytes(), audio) {
                    return ServerMessage::Violation(format!(
                        "media.payload is not valid base64 ({e})"
                    ));
                }
                if !self.stream.bidirectional_rtp {
                    // Telnyx's mp3 mode takes files, about one a second: RTP frames are dropped
                    // without a word.
                    audio.clear();
                    return ServerMessage::Ignore;
                }
                ServerMessage::Audio { warning: None }
            }
            "mark" => match message.mark.and_then(|m| m.name) {
                Some(name) => ServerMessage::Mark(name),
                None => ServerMessage::Violation("mark without mark.name".to_owned()),
            },
            "clear" => ServerMessage::Clear,
            other => ServerMessage::Violation(format!(
                "unsupported event {other:?}: only media, mark and clear are accepted"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::caller::CallerScript;

    fn wire(rtp: bool) -> TelnyxWire {
        let config = CallerConfig::new("ws://127.0.0.1:1/telnyx/media", CallerScript::new());
        TelnyxWire::new(
            &config,
            TelnyxStream {
                client_state: Some("c3RhdGU=".into()),
                bidirectional_rtp: rtp,
            },
        )
    }

    #[test]
    fn audio_outside_rtp_mode_is_dropped_as_telnyx_drops_it() {
        let media = Message::text(r#"{"event":"media","media":{"payload":"//8="}}"#);
        let mut audio = Vec::new();
        assert_eq!(
            wire(true).decode(&media, &mut audio),
            ServerMessage::Audio { warning: None }
        );
        assert_eq!(audio, [0xFF, 0xFF]);
        assert_eq!(
            wire(false).decode(&media, &mut audio),
            ServerMessage::Ignore
        );
        assert!(audio.is_empty());
    }

    #[test]
    fn the_greeting_carries_client_state_and_the_server_is_checked() {
        let mut w = wire(true);
        let greeting = w.greeting();
        let start: serde_json::Value =
            serde_json::from_str(greeting[1].to_text().unwrap()).unwrap();
        assert_eq!(start["start"]["client_state"], "c3RhdGU=");
        assert_eq!(start["start"]["media_format"]["encoding"], "PCMU");
        assert!(start["stream_id"].is_string());
        let mut audio = Vec::new();
        assert!(matches!(
            w.decode(&Message::binary(vec![1u8]), &mut audio),
            ServerMessage::Violation(_)
        ));
        assert!(matches!(
            w.decode(&Message::text(r#"{"event":"playAudio"}"#), &mut audio),
            ServerMessage::Violation(_)
        ));
        assert_eq!(
            w.decode(&Message::text(r#"{"event":"clear"}"#), &mut audio),
            ServerMessage::Clear
        );
    }
}
