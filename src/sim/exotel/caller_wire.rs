//! Exotel's Voicebot stream as Exotel's side of a call speaks it: `connected`, `start`
//! (snake_case, numbers as strings, the stream URL's query as `custom_parameters`, PCM16 at
//! 8 kHz), `media` (PCM16 LE; the caller's μ-law frames are converted at this edge), `dtmf`,
//! mark echoes and `stop`. The upgrade carries `Authorization: Basic` from the stream URL's
//! userinfo, as Exotel sends it. What the server sends is checked as Exotel would: `media`,
//! `mark`, `clear` only, `stream_sid` in snake_case, PCM16 in whole 20 ms steps (320 bytes).
//!
//! Exotel sends ~100 ms per `media`; this wire sends one per 20 ms frame of the shared caller
//! (the server reads any length; its splitting of 100 ms frames is unit-tested).

use std::borrow::Cow;
use std::fmt::Write as _;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue, header};

use crate::audio::g711::{mulaw_decode, mulaw_encode};
use crate::sim::caller::wire::{CallerWire, ServerMessage};
use crate::sim::caller::{CallerConfig, FRAME_BYTES, SILENCE};

/// 20 ms of PCM16 at 8 kHz.
pub const STEP_BYTES: usize = 320;

/// One call's Exotel stream.
pub struct ExotelWire {
    account_sid: String,
    call_sid: String,
    stream_sid: String,
    custom_parameters: Vec<(String, String)>,
    /// `user:password` of the stream URL, sent as Basic auth on the upgrade.
    credentials: Option<String>,
    seq: u64,
    chunk: u64,
    pcm: Vec<u8>,
}

impl ExotelWire {
    pub fn new(config: &CallerConfig) -> Self {
        Self {
            account_sid: config.account_sid.clone(),
            call_sid: config.call_sid.clone(),
            stream_sid: config.stream_sid.clone(),
            custom_parameters: config.custom_parameters.clone(),
            credentials: config.signing_token.clone(),
            seq: 0,
            chunk: 0,
            pcm: Vec::with_capacity(FRAME_BYTES * 2),
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
    stream_sid: Option<Cow<'a, str>>,
    #[serde(rename = "streamSid", borrow, default)]
    twilio_stream_sid: Option<Cow<'a, str>>,
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

impl CallerWire for ExotelWire {
    fn upgrade_headers(&self, _url: &str) -> Vec<(HeaderName, HeaderValue)> {
        let Some(credentials) = &self.credentials else {
            return Vec::new();
        };
        HeaderValue::from_str(&format!("Basic {}", BASE64.encode(credentials)))
            .map(|value| vec![(header::AUTHORIZATION, value)])
            .unwrap_or_default()
    }

    fn greeting(&mut self) -> Vec<Message> {
        let parameters: serde_json::Map<String, serde_json::Value> = self
            .custom_parameters
            .iter()
            .map(|(k, v)| (k.clone(), serde_json::Value::String(v.clone())))
            .collect();
        let seq = self.next_seq();
        let start = serde_json::json!({
            "event": "start",
            "sequence_number": seq.to_string(),
            "stream_sid": self.stream_sid,
            "start": {
                "stream_sid": self.stream_sid,
                "call_sid": self.call_sid,
                "account_sid": self.account_sid,
                "from": "+919876500000",
                "to": "+918040000000",
                "custom_parameters": parameters,
                "media_format": {"encoding": "audio/x-raw", "sample_rate": "8000", "bit_rate": "16"}
            }
        });
        vec![
            Message::text(r#"{"event":"connected"}"#),
            Message::text(start.to_string()),
        ]
    }

    fn media(&mut self, audio: Option<&[u8]>) -> Message {
        let seq = self.next_seq();
        self.chunk += 1;
        self.pcm.clear();
        for i in 0..FRAME_BYTES {
            let byte = audio.and_then(|a| a.get(i).copied()).unwrap_or(SILENCE);
            self.pcm
                .extend_from_slice(&mulaw_decode(byte).to_le_bytes());
        }
        let mut json = String::with_capacity(560 + self.stream_sid.len());
        let _ = write!(
            json,
            r#"{{"event":"media","sequence_number":"{seq}","stream_sid":"{}","media":{{"chunk":"{}","timestamp":"{}","payload":""#,
            self.stream_sid,
            self.chunk,
            self.chunk * 20
        );
        BASE64.encode_string(&self.pcm, &mut json);
        json.push_str(r#""}}"#);
        Message::text(json)
    }

    fn dtmf(&mut self, digit: char) -> Option<Message> {
        let seq = self.next_seq();
        Some(Message::text(format!(
            r#"{{"event":"dtmf","sequence_number":"{seq}","stream_sid":"{}","dtmf":{{"digit":"{digit}","duration":"100"}}}}"#,
            self.stream_sid
        )))
    }

    fn mark_echo(&mut self, name: &str) -> Message {
        let name = serde_json::Value::String(name.to_owned());
        let seq = self.next_seq();
        Message::text(format!(
            r#"{{"event":"mark","sequence_number":"{seq}","stream_sid":"{}","mark":{{"name":{name}}}}}"#,
            self.stream_sid
        ))
    }

    fn stop(&mut self) -> Option<Message> {
        let seq = self.next_seq();
        Some(Message::text(format!(
            r#"{{"event":"stop","sequence_number":"{seq}","stream_sid":"{}","stop":{{"call_sid":"{}","account_sid":"{}","reason":"callended"}}}}"#,
            self.stream_sid, self.call_sid, self.account_sid
        )))
    }

    fn decode<'m>(&mut self, message: &'m Message, audio: &mut Vec<u8>) -> ServerMessage<'m> {
        let text = match message {
            Message::Text(text) => text.as_str(),
            Message::Binary(_) => {
                return ServerMessage::Violation(
                    "binary frame: Exotel only accepts JSON text frames".to_owned(),
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
        if !matches!(event, "media" | "mark" | "clear") {
            return ServerMessage::Violation(format!(
                "unsupported event {event:?}: only media, mark and clear are accepted"
            ));
        }
        match message.stream_sid.as_deref() {
            Some(sid) if sid == self.stream_sid => {}
            Some(sid) => {
                return ServerMessage::Violation(format!("{event} for another stream: {sid:?}"));
            }
            None if message.twilio_stream_sid.is_some() => {
                return ServerMessage::Violation(format!(
                    "{event} with Twilio's streamSid: Exotel reads stream_sid"
                ));
            }
            None => return ServerMessage::Violation(format!("{event} without a stream_sid")),
        }
        match event {
            "media" => {
                let Some(payload) = message.media.and_then(|m| m.payload) else {
                    return ServerMessage::Violation("media without media.payload".to_owned());
                };
                let Ok(pcm) = BASE64.decode(payload.as_bytes()) else {
                    return ServerMessage::Violation(
                        "media.payload is not valid base64".to_owned(),
                    );
                };
                if pcm.is_empty() || !pcm.len().is_multiple_of(STEP_BYTES) {
                    return ServerMessage::Violation(format!(
                        "a chunk of {} bytes: Exotel plays whole 20 ms steps (multiples of 320 bytes)",
                        pcm.len()
                    ));
                }
                audio.clear();
                audio.extend(
                    pcm.chunks_exact(2)
                        .map(|s| mulaw_encode(i16::from_le_bytes([s[0], s[1]]))),
                );
                ServerMessage::Audio { warning: None }
            }
            "mark" => match message.mark.and_then(|m| m.name) {
                Some(name) => ServerMessage::Mark(name),
                None => ServerMessage::Violation("mark without mark.name".to_owned()),
            },
            _ => ServerMessage::Clear,
        }
    }
}
