//! Telnyx: inbound calls through TeXML (a form-encoded voice webhook answered with
//! `<Connect><Stream bidirectionalMode="rtp">`), outbound calls through Call Control (`POST
//! /v2/calls` with the stream's URL, bidirectional RTP and our call id and token in
//! `client_state`), every webhook signed with Ed25519 (`telnyx-signature-ed25519`), and media
//! streaming (JSON frames, PCMU 8 kHz, passed to the call without transcoding).
//!
//! A Telnyx trunk: `trunk_account_sid` is the Call Control Application's id (`connection_id`),
//! `trunk_auth_token` the API key (`KEY…`), and `trunk_options.public_key` the account's
//! webhook public key (base64, from the portal), which verifies every webhook.

pub mod control;
pub mod events;
pub mod reorder;
pub mod rest;
pub mod signature;
pub mod stream;
pub mod texml;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::WebSocket;

use self::control::TelnyxCallControl;
use self::rest::{Dial, TelnyxRest};
use self::texml::RejectReason;
use super::Trunk;
use super::provider::{
    Answer, BadWebhook, CallControl, Callback, Document, InboundCall, MediaProtocol, PlaceCall,
    RestFuture, SocketLimits, StreamStart, TelephonyError, TelephonyProvider, TrunkFields, Webhook,
};
use crate::validation::Violations;

/// Telnyx's API in production.
pub const DEFAULT_BASE_URL: &str = "https://api.telnyx.com";
/// The trunk option holding the webhook public key.
pub const PUBLIC_KEY_OPTION: &str = "public_key";

const PROVIDER: &str = "Telnyx";

/// Telnyx's control plane.
pub struct Telnyx {
    rest: TelnyxRest,
}

impl Telnyx {
    pub fn new(http: reqwest::Client, base_url: Option<&str>) -> Self {
        Self {
            rest: TelnyxRest::with_client(http, base_url.unwrap_or(DEFAULT_BASE_URL)),
        }
    }
}

/// True for a Call Control Application id: Telnyx's are long decimal numbers; UUID-shaped ids
/// are accepted too, since older connections have them.
pub fn is_connection_id(value: &str) -> bool {
    (1..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

/// True for a Telnyx API v2 key: `KEY` followed by letters, digits, `_` or `-`.
pub fn is_api_key(value: &str) -> bool {
    value.starts_with("KEY")
        && (20..=256).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

fn public_key(trunk: &Trunk) -> Option<&str> {
    trunk
        .options
        .get(PUBLIC_KEY_OPTION)
        .and_then(|v| v.as_str())
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn texml(body: String) -> Document {
    Document {
        content_type: "text/xml",
        body,
    }
}

fn invalid<T: Send + 'static>(message: String) -> RestFuture<T> {
    Box::pin(std::future::ready(Err(TelephonyError::Invalid {
        provider: PROVIDER,
        message,
    })))
}

impl TelephonyProvider for Telnyx {
    fn name(&self) -> &'static str {
        "telnyx"
    }

    fn check_trunk(&self, trunk: &Trunk, fields: TrunkFields, v: &mut Violations) {
        if !trunk.account_sid.is_empty() && !is_connection_id(&trunk.account_sid) {
            v.add(
                fields.account,
                "must be a Telnyx Call Control Application id (connection_id)",
            );
        }
        if !trunk.auth_token.is_empty() && !is_api_key(&trunk.auth_token) {
            v.add(fields.secret, "must be a Telnyx API key (KEY…)");
        }
        match trunk.options.get(PUBLIC_KEY_OPTION) {
            None => v.add(
                fields.options,
                "public_key is required: the account's webhook public key (base64), which verifies Telnyx's webhooks",
            ),
            Some(value) => match value.as_str().map(signature::decode_public_key) {
                Some(Ok(_)) => {}
                Some(Err(e)) => v.add(fields.options, format!("public_key {e}")),
                None => v.add(fields.options, "public_key must be a string"),
            },
        }
        if let Some(other) = trunk.options.keys().find(|k| *k != PUBLIC_KEY_OPTION) {
            v.add(
                fields.options,
                format!("unknown option {other:?}: Telnyx trunks take only public_key"),
            );
        }
    }

    fn inbound_call(&self, request: &Webhook<'_>) -> Result<InboundCall, BadWebhook> {
        // TeXML's voice webhook is a form POST, or a GET with the same fields in the query.
        let mut fields = request.form();
        if field(&fields, "CallSid").is_none() {
            fields = request.query();
        }
        match (
            field(&fields, "To"),
            field(&fields, "From"),
            field(&fields, "CallSid"),
        ) {
            (Some(to), Some(from), Some(sid)) => Ok(InboundCall {
                to: to.to_owned(),
                from: from.to_owned(),
                provider_call_id: sid.to_owned(),
            }),
            _ => Err(BadWebhook("To, From and CallSid are required".to_owned())),
        }
    }

    fn verify_webhook(&self, trunk: &Trunk, request: &Webhook<'_>) -> bool {
        match (
            public_key(trunk),
            request.header(signature::TIMESTAMP_HEADER),
            request.header(signature::SIGNATURE_HEADER),
        ) {
            (Some(key), Some(timestamp), Some(sig)) => {
                signature::verify(key, timestamp, request.body, sig, signature::now_unix())
            }
            _ => false,
        }
    }

    fn answer(&self, answer: Answer<'_>) -> Result<Document, BadWebhook> {
        let bad = |e: texml::TexmlError| BadWebhook(format!("TeXML not built: {e}"));
        Ok(texml(match answer {
            Answer::Stream(stream) => texml::connect_stream(
                stream.url,
                &[("call_id", stream.call_id), ("token", stream.token)],
            )
            .map_err(bad)?,
            Answer::Busy => texml::reject(RejectReason::Busy),
            Answer::Reject => texml::reject(RejectReason::Rejected),
            Answer::AskAgain { url } => texml::redirect(url).map_err(bad)?,
        }))
    }

    fn callback(&self, request: &Webhook<'_>) -> Result<Callback, BadWebhook> {
        events::parse(request.body)
    }

    fn place_call(&self, trunk: &Trunk, call: PlaceCall<'_>) -> RestFuture<String> {
        if !call.stream.url.starts_with("wss://") && !call.stream.url.starts_with("ws://") {
            return invalid(format!(
                "the stream URL {:?} is not a WebSocket URL (check public_url)",
                call.stream.url
            ));
        }
        let rest = self.rest.clone();
        let api_key = trunk.auth_token.clone();
        let connection_id = trunk.account_sid.clone();
        let (to, from) = (call.to.to_owned(), call.from.to_owned());
        let stream_url = call.stream.url.to_owned();
        let state = stream::client_state(call.stream.call_id, call.stream.token);
        let webhook_url = call.status_callback.to_owned();
        // Telnyx's bounds: ringing 5–600 s, a call at most 4 hours.
        let timeout_secs = call.ring_timeout_secs.clamp(5, 600);
        let time_limit_secs = call.time_limit_secs.clamp(30, 14_400);
        // The verdict arrives with the call's other events (the dial has one webhook URL).
        let amd = call.amd_callback.map(|_| "greeting_end");
        Box::pin(async move {
            rest.dial(
                &api_key,
                &Dial {
                    connection_id: &connection_id,
                    to: &to,
                    from: &from,
                    stream_url: &stream_url,
                    stream_track: "inbound_track",
                    stream_bidirectional_mode: "rtp",
                    stream_bidirectional_codec: "PCMU",
                    client_state: &state,
                    webhook_url: &webhook_url,
                    webhook_url_method: "POST",
                    timeout_secs,
                    time_limit_secs,
                    answering_machine_detection: amd,
                },
            )
            .await
        })
    }

    fn hang_up(&self, trunk: &Trunk, provider_call_id: &str) -> RestFuture<()> {
        let rest = self.rest.clone();
        let api_key = trunk.auth_token.clone();
        let id = provider_call_id.to_owned();
        Box::pin(async move { rest.hang_up(&api_key, &id).await })
    }

    fn call_control(
        &self,
        trunk: &Trunk,
        provider_call_id: &str,
        our_number: Option<String>,
    ) -> Option<Arc<dyn CallControl>> {
        Some(Arc::new(TelnyxCallControl {
            rest: self.rest.clone(),
            api_key: trunk.auth_token.clone(),
            call_control_id: provider_call_id.to_owned(),
            caller_id: our_number,
        }))
    }
}

/// Telnyx media streaming.
pub struct TelnyxMedia;

impl MediaProtocol for TelnyxMedia {
    type Source = stream::TelnyxSource;
    type Sink = stream::TelnyxSink;

    const LIMITS: SocketLimits = SocketLimits {
        max_message_bytes: 4 * stream::MAX_FRAME_BYTES,
    };

    async fn accept(
        socket: WebSocket,
        inactivity: Duration,
    ) -> Result<(StreamStart, Self::Source, Self::Sink), String> {
        let (start, source, sink) = stream::accept(socket, inactivity)
            .await
            .map_err(|e| e.to_string())?;
        let (call_id, token) = start.call_and_token();
        let start = StreamStart {
            call_id,
            token,
            provider_call_id: Some(start.call_control_id).filter(|id| !id.is_empty()),
            stream_id: start.stream_id,
        };
        Ok((start, source, sink))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telephony::TrunkProvider;
    use serde_json::json;

    fn trunk(account: &str, secret: &str, options: serde_json::Value) -> Trunk {
        Trunk {
            id: crate::telephony::new_trunk_id(),
            owner_id: "o".into(),
            name: "n".into(),
            provider: TrunkProvider::Telnyx,
            account_sid: account.into(),
            auth_token: secret.into(),
            options: options.as_object().cloned().unwrap_or_default(),
            default_caller_number: "+15550100".into(),
            created_at: String::new(),
            updated_at: String::new(),
        }
    }

    const FIELDS: TrunkFields = TrunkFields {
        account: "a",
        secret: "s",
        options: "o",
    };
    const KEY: &str = "KEY0123456789ABCDEF0123456789ABCDEF_abcdEFGHijkl0123456789";

    fn violations(t: &Trunk) -> Vec<(String, String)> {
        let mut v = Violations::new();
        Telnyx::new(reqwest::Client::new(), None).check_trunk(t, FIELDS, &mut v);
        v.into_result()
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| (e.field, e.message))
            .collect()
    }

    #[test]
    fn trunks_are_checked_by_shape() {
        let public = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [9u8; 32]);
        assert!(
            violations(&trunk(
                "1494404757140276705",
                KEY,
                json!({"public_key": public})
            ))
            .is_empty()
        );
        let bad = violations(&trunk(
            "12/../x",
            "sk_live_123",
            json!({"public_key": "abc", "x": 1}),
        ));
        let fields: Vec<&str> = bad.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(fields, ["a", "s", "o", "o"], "{bad:?}");
        let missing = violations(&trunk("1494404757140276705", KEY, json!({})));
        assert!(
            missing[0].1.contains("public_key is required"),
            "{missing:?}"
        );
    }

    #[test]
    fn inbound_texml_webhooks_name_the_call() {
        let telnyx = Telnyx::new(reqwest::Client::new(), None);
        let headers = axum::http::HeaderMap::new();
        let body = b"AccountSid=f5586561&CallSid=v3%3A9X2v&ConnectionId=1234567890&From=%2B35319605860&To=%2B13129457420&CallStatus=ringing&Direction=inbound";
        let post = Webhook {
            url: "https://a/telnyx/voice",
            method: &axum::http::Method::POST,
            headers: &headers,
            body,
        };
        let call = telnyx.inbound_call(&post).unwrap();
        assert_eq!(call.to, "+13129457420");
        assert_eq!(call.provider_call_id, "v3:9X2v");
        let get = Webhook {
            url: "https://a/telnyx/voice?CallSid=v3%3A1&From=%2B1555&To=%2B1666",
            method: &axum::http::Method::GET,
            headers: &headers,
            body: b"",
        };
        assert_eq!(telnyx.inbound_call(&get).unwrap().from, "+1555");
        let empty = Webhook {
            body: b"",
            url: "https://a/telnyx/voice",
            ..post
        };
        assert!(telnyx.inbound_call(&empty).is_err());
    }

    #[test]
    fn webhooks_are_verified_with_the_trunks_public_key() {
        let key = aws_lc_rs::signature::Ed25519KeyPair::generate().unwrap();
        let t = trunk(
            "1",
            KEY,
            json!({"public_key": signature::public_key_base64(&key)}),
        );
        let body = b"CallSid=v3%3A1&From=%2B1555&To=%2B1666";
        let now = signature::now_unix().to_string();
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(signature::TIMESTAMP_HEADER, now.parse().unwrap());
        headers.insert(
            signature::SIGNATURE_HEADER,
            signature::sign(&key, &now, body).parse().unwrap(),
        );
        let telnyx = Telnyx::new(reqwest::Client::new(), None);
        let request = Webhook {
            url: "https://a/telnyx/voice",
            method: &axum::http::Method::POST,
            headers: &headers,
            body,
        };
        assert!(telnyx.verify_webhook(&t, &request));
        let forged = Webhook {
            body: b"CallSid=v3%3A2&From=%2B1555&To=%2B1666",
            ..request
        };
        assert!(!telnyx.verify_webhook(&t, &forged));
        let unsigned = Webhook {
            headers: &axum::http::HeaderMap::new(),
            ..request
        };
        assert!(!telnyx.verify_webhook(&t, &unsigned));
    }
}
