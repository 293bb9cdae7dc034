//! Vonage's websocket as Vonage's side of a call speaks it: a text `websocket:connected` with
//! the content type and the NCCO's `headers`, then one binary frame of 16-bit little-endian PCM
//! per 20 ms (640 bytes at 16 kHz), `websocket:dtmf`, and `websocket:notify` echoing our
//! `notify` payloads; no stop message (the call ends with the socket). What the server sends is
//! checked as Vonage plays it: binary frames of exactly one 20 ms frame, and text actions
//! `clear` and `notify` only.
//!
//! The caller's audio is μ-law 8 kHz inside; this wire converts at its edge (μ-law → PCM16,
//! twice the rate by linear interpolation; and back, averaging pairs of samples).

use std::borrow::Cow;

use serde::Deserialize;
use tokio_tungstenite::tungstenite::Message;

use crate::audio::g711::{mulaw_decode, mulaw_encode};
use crate::sim::caller::wire::{CallerWire, ServerMessage};
use crate::sim::caller::{CallerConfig, FRAME_BYTES};

/// One 20 ms frame at 16 kHz, PCM16.
pub const WIRE_FRAME_BYTES: usize = 640;

/// One call's Vonage websocket.
pub struct VonageWire {
    content_type: String,
    headers: Vec<(String, String)>,
    /// The last sample sent, so interpolation runs across frames.
    last: i16,
}

impl VonageWire {
    /// `headers` are the NCCO endpoint's (our call id and token), echoed in the first message.
    pub fn new(config: &CallerConfig, content_type: String) -> Self {
        Self {
            content_type,
            headers: config.custom_parameters.clone(),
            last: 0,
        }
    }
}

#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(borrow, default)]
    action: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    payload: Option<IncomingPayload<'a>>,
}

#[derive(Deserialize)]
struct IncomingPayload<'a> {
    #[serde(borrow, default)]
    mark: Option<Cow<'a, str>>,
}

impl CallerWire for VonageWire {
    fn greeting(&mut self) -> Vec<Message> {
        let mut first = serde_json::Map::new();
        first.insert("event".into(), "websocket:connected".into());
        first.insert("content-type".into(), self.content_type.clone().into());
        for (k, v) in &self.headers {
            first.insert(k.clone(), v.clone().into());
        }
        vec![Message::text(serde_json::Value::Object(first).to_string())]
    }

    fn media(&mut self, audio: Option<&[u8]>) -> Message {
        let mut out = Vec::with_capacity(WIRE_FRAME_BYTES);
        let mut push = |s: i16| out.extend_from_slice(&s.to_le_bytes());
        for i in 0..FRAME_BYTES {
            let sample = audio
                .and_then(|a| a.get(i))
                .map(|&b| mulaw_decode(b))
                .unwrap_or(0);
            let between = ((i32::from(self.last) + i32::from(sample)) / 2) as i16;
            push(between);
            push(sample);
            self.last = sample;
        }
        Message::binary(out)
    }

    fn dtmf(&mut self, digit: char) -> Option<Message> {
        Some(Message::text(format!(
            r#"{{"event":"websocket:dtmf","digit":"{digit}","duration":260}}"#
        )))
    }

    fn mark_echo(&mut self, name: &str) -> Message {
        Message::text(
            serde_json::json!({"event": "websocket:notify", "payload": {"mark": name}}).to_string(),
        )
    }

    fn stop(&mut self) -> Option<Message> {
        None
    }

    fn decode<'m>(&mut self, message: &'m Message, audio: &mut Vec<u8>) -> ServerMessage<'m> {
        match message {
            Message::Binary(bytes) => {
                if bytes.len() != WIRE_FRAME_BYTES {
                    return ServerMessage::Violation(format!(
                        "a binary frame of {} bytes: Vonage plays frames of exactly 20 ms ({WIRE_FRAME_BYTES} bytes at 16 kHz)",
                        bytes.len()
                    ));
                }
                audio.clear();
                for pair in bytes.chunks_exact(4) {
                    let a = i16::from_le_bytes([pair[0], pair[1]]);
                    let b = i16::from_le_bytes([pair[2], pair[3]]);
                    audio.push(mulaw_encode(((i32::from(a) + i32::from(b)) / 2) as i16));
                }
                ServerMessage::Audio { warning: None }
            }
            Message::Text(text) => {
                let incoming: Incoming<'_> = match serde_json::from_str(text.as_str()) {
                    Ok(incoming) => incoming,
                    Err(e) => return ServerMessage::Violation(format!("not a JSON message ({e})")),
                };
                match incoming.action.as_deref() {
                    Some("clear") => ServerMessage::Clear,
                    Some("notify") => match incoming.payload.and_then(|p| p.mark) {
                        Some(mark) => ServerMessage::Mark(mark),
                        // Vonage echoes any payload; one without our mark is nothing to us.
                        None => ServerMessage::Ignore,
                    },
                    Some(other) => ServerMessage::Violation(format!(
                        "unsupported action {other:?}: only clear and notify are accepted"
                    )),
                    None => ServerMessage::Violation("text message without an action".to_owned()),
                }
            }
            _ => ServerMessage::Ignore,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::caller::CallerScript;

    fn wire() -> VonageWire {
        let mut config = CallerConfig::new("ws://127.0.0.1:1/vonage/media", CallerScript::new());
        config.custom_parameters = vec![
            ("call_id".into(), "c1".into()),
            ("token".into(), "t1".into()),
        ];
        VonageWire::new(&config, "audio/l16;rate=16000".into())
    }

    #[test]
    fn frames_are_640_bytes_of_pcm16_and_come_back_as_mulaw() {
        let mut w = wire();
        let first: serde_json::Value =
            serde_json::from_str(w.greeting()[0].to_text().unwrap()).unwrap();
        assert_eq!(first["event"], "websocket:connected");
        assert_eq!(
            (first["call_id"].as_str(), first["token"].as_str()),
            (Some("c1"), Some("t1"))
        );
        let loud = [0x80u8; FRAME_BYTES];
        let Message::Binary(frame) = w.media(Some(&loud)) else {
            panic!("binary expected")
        };
        assert_eq!(frame.len(), WIRE_FRAME_BYTES);
        let mut audio = Vec::new();
        assert_eq!(
            w.decode(&Message::binary(frame.to_vec()), &mut audio),
            ServerMessage::Audio { warning: None }
        );
        assert_eq!(audio.len(), FRAME_BYTES);
        // Past the first interpolated sample, the level comes back as it went.
        assert!(audio[1..].iter().all(|&b| b == 0x80), "{audio:?}");
    }

    #[test]
    fn partial_frames_and_unknown_actions_are_violations() {
        let mut w = wire();
        let mut audio = Vec::new();
        assert!(matches!(
            w.decode(&Message::binary(vec![0u8; 320]), &mut audio),
            ServerMessage::Violation(_)
        ));
        assert!(matches!(
            w.decode(&Message::text(r#"{"action":"talk"}"#), &mut audio),
            ServerMessage::Violation(_)
        ));
        assert_eq!(
            w.decode(
                &Message::text(r#"{"action":"notify","payload":{"mark":"m1"}}"#),
                &mut audio
            ),
            ServerMessage::Mark("m1".into())
        );
        assert_eq!(
            w.decode(&Message::text(r#"{"action":"clear"}"#), &mut audio),
            ServerMessage::Clear
        );
    }
}
