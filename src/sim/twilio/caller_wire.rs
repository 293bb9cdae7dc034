//! Twilio Media Streams as Twilio's side of a call speaks them: `connected`, then `start`
//! (stream, call and account SIDs, custom parameters, μ-law/8000/1), a `media` frame per 20 ms
//! with sequence numbers, chunks and timestamps as JSON strings, `dtmf`, mark echoes, and `stop`.
//! What the server sends is checked as Twilio checks it: the right `streamSid`, only
//! `media`/`mark`/`clear`, valid base64, JSON text frames only.

use std::borrow::Cow;
use std::fmt::Write as _;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde::Deserialize;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};

use crate::sim::caller::wire::{CallerWire, ServerMessage};
use crate::sim::caller::{CallerConfig, FRAME_BYTES, SILENCE};
use crate::telephony::twilio::signature::compute_signature;

/// One call's Twilio stream.
pub struct TwilioWire {
    account_sid: String,
    call_sid: String,
    stream_sid: String,
    custom_parameters: Vec<(String, String)>,
    /// With it, the upgrade carries `X-Twilio-Signature` over the URL, as Twilio sends it.
    signing_token: Option<String>,
    /// Last `sequenceNumber` sent (`start` is 1).
    seq: u64,
    /// Last `media.chunk` sent.
    chunk: u64,
    silence_payload: String,
}

impl TwilioWire {
    pub fn new(config: &CallerConfig) -> Self {
        Self {
            account_sid: config.account_sid.clone(),
            call_sid: config.call_sid.clone(),
            stream_sid: config.stream_sid.clone(),
            custom_parameters: config.custom_parameters.clone(),
            signing_token: config.signing_token.clone(),
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

/// A message from the server, borrowed from the frame's text.
#[derive(Deserialize)]
struct Incoming<'a> {
    #[serde(borrow, default)]
    event: Option<Cow<'a, str>>,
    #[serde(rename = "streamSid", borrow, default)]
    stream_sid: Option<Cow<'a, str>>,
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

impl CallerWire for TwilioWire {
    fn upgrade_headers(&self, url: &str) -> Vec<(HeaderName, HeaderValue)> {
        let Some(token) = &self.signing_token else {
            return Vec::new();
        };
        let signature = compute_signature::<&str, &str>(token, url, &[]);
        HeaderValue::from_str(&signature)
            .map(|value| vec![(HeaderName::from_static("x-twilio-signature"), value)])
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
            "sequenceNumber": seq.to_string(),
            "start": {
                "accountSid": self.account_sid,
                "streamSid": self.stream_sid,
                "callSid": self.call_sid,
                "tracks": ["inbound"],
                "customParameters": parameters,
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}
            },
            "streamSid": self.stream_sid,
        });
        vec![
            Message::text(r#"{"event":"connected","protocol":"Call","version":"1.0.0"}"#),
            Message::text(start.to_string()),
        ]
    }

    fn media(&mut self, audio: Option<&[u8]>) -> Message {
        let seq = self.next_seq();
        self.chunk += 1;
        let mut json = String::with_capacity(300 + self.stream_sid.len());
        let _ = write!(
            json,
            r#"{{"event":"media","sequenceNumber":"{seq}","media":{{"track":"inbound","chunk":"{}","timestamp":"{}","payload":""#,
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
        let _ = write!(json, r#""}},"streamSid":"{}"}}"#, self.stream_sid);
        Message::text(json)
    }

    fn dtmf(&mut self, digit: char) -> Option<Message> {
        let seq = self.next_seq();
        Some(Message::text(format!(
            r#"{{"event":"dtmf","streamSid":"{}","sequenceNumber":"{seq}","dtmf":{{"track":"inbound_track","digit":"{digit}"}}}}"#,
            self.stream_sid
        )))
    }

    fn mark_echo(&mut self, name: &str) -> Message {
        let name = serde_json::Value::String(name.to_owned());
        let seq = self.next_seq();
        Message::text(format!(
            r#"{{"event":"mark","sequenceNumber":"{seq}","streamSid":"{}","mark":{{"name":{name}}}}}"#,
            self.stream_sid
        ))
    }

    fn stop(&mut self) -> Option<Message> {
        let seq = self.next_seq();
        Some(Message::text(format!(
            r#"{{"event":"stop","sequenceNumber":"{seq}","streamSid":"{}","stop":{{"accountSid":"{}","callSid":"{}"}}}}"#,
            self.stream_sid, self.account_sid, self.call_sid
        )))
    }

    fn decode<'m>(&mut self, message: &'m Message, audio: &mut Vec<u8>) -> ServerMessage<'m> {
        let text = match message {
            Message::Text(text) => text.as_str(),
            Message::Binary(_) => {
                return ServerMessage::Violation(
                    "binary frame: Twilio only accepts JSON text frames".to_owned(),
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
                return ServerMessage::Violation(format!(
                    "{event} for another stream: streamSid {sid:?}"
                ));
            }
            None => return ServerMessage::Violation(format!("{event} without a streamSid")),
        }
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
                // Twilio would play a WAV header as a burst of noise; the test should hear of it.
                let warning = audio
                    .starts_with(b"RIFF")
                    .then(|| "media.payload is a WAV file: send raw mu-law bytes".to_owned());
                ServerMessage::Audio { warning }
            }
            "mark" => match message.mark.and_then(|m| m.name) {
                Some(name) => ServerMessage::Mark(name),
                None => ServerMessage::Violation("mark without mark.name".to_owned()),
            },
            _ => ServerMessage::Clear,
        }
    }
}
