//! Plivo: Voice API webhooks (form-encoded, signed with `X-Plivo-Signature-V3`), Plivo XML
//! answers (a bidirectional `<Stream>` carrying our call id and token in `extraHeaders`), the
//! Call API (place through our answer URL, hang up) and Audio Streams (JSON frames, μ-law 8 kHz
//! as our `<Stream>` asks, passed to the call without transcoding).
//!
//! Plivo's ids: placing a call answers a `request_uuid`; the call's own `CallUUID` arrives with
//! the first callback (ring or hang-up URL), which then replaces the stored id, and with the
//! media stream's `start.callId`. Plivo's `CallStatus` words are mapped onto ours here.
//!
//! Plivo opens a second media socket for a call that has already hung up: it carries the same
//! one-time token, which the first socket consumed, so it is refused before anything starts.
//!
//! No transfer: Plivo's Transfer API (`POST /Call/{uuid}/` with `aleg_url`) moves a call to the
//! XML found at a URL we would have to serve for the target; that is not offered yet, so
//! `call_control` is `None` and the agent's transfer tool says it cannot.

pub mod headers;
pub mod rest;
pub mod signature;
pub mod stream;
pub mod xml;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::WebSocket;
use axum::http::Method as HttpMethod;

use self::rest::{CreateCall, Credentials, PlivoRest, is_auth_id};
use self::signature::{Method, NONCE_HEADER, SIGNATURE_HEADER, validate_signature};
use self::xml::HangupReason;
use super::Trunk;
use super::provider::{
    Answer, BadWebhook, CallControl, Callback, CallbackEvent, Document, InboundCall, MediaProtocol,
    PlaceCall, RestFuture, SocketLimits, StreamStart, TelephonyProvider, TrunkFields, Webhook,
};
use crate::store::CallStatus;
use crate::validation::Violations;

/// Plivo's control plane.
pub struct Plivo {
    rest: PlivoRest,
}

impl Plivo {
    pub fn new(http: reqwest::Client, base_url: Option<&str>) -> Self {
        Self {
            rest: PlivoRest::new(http, base_url.unwrap_or(rest::DEFAULT_BASE_URL)),
        }
    }
}

fn field<'a>(fields: &'a [(String, String)], name: &str) -> Option<&'a str> {
    fields
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// A Plivo number (digits with the country code, no `+`) as E.164; SIP URIs and anything else
/// stay as they are.
pub fn e164(number: &str) -> String {
    if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) {
        format!("+{number}")
    } else {
        number.to_owned()
    }
}

/// Plivo's `CallStatus` in our vocabulary (`timeout` is Plivo's unanswered ring).
pub fn status_of(plivo: &str) -> Option<CallStatus> {
    Some(match plivo {
        "queued" => CallStatus::Queued,
        "ringing" | "early-media" => CallStatus::Ringing,
        "in-progress" | "answered" => CallStatus::InProgress,
        "completed" => CallStatus::Completed,
        "busy" => CallStatus::Busy,
        "failed" => CallStatus::Failed,
        "timeout" | "no-answer" => CallStatus::NoAnswer,
        "cancel" | "canceled" | "cancelled" => CallStatus::Canceled,
        _ => return None,
    })
}

fn credentials(trunk: &Trunk) -> Credentials {
    Credentials {
        auth_id: trunk.account_sid.clone(),
        auth_token: trunk.auth_token.clone(),
    }
}

fn document(body: String) -> Document {
    Document {
        content_type: xml::CONTENT_TYPE,
        body,
    }
}

impl TelephonyProvider for Plivo {
    fn name(&self) -> &'static str {
        "plivo"
    }

    fn check_trunk(&self, trunk: &Trunk, fields: TrunkFields, v: &mut Violations) {
        if !trunk.account_sid.is_empty() && !is_auth_id(&trunk.account_sid) {
            v.add(
                fields.account,
                "must be a Plivo Auth ID: MA or SA followed by 18 uppercase letters or digits",
            );
        }
        let token = &trunk.auth_token;
        let shaped = token.len() == 40 && token.bytes().all(|b| b.is_ascii_alphanumeric());
        if !token.is_empty() && !shaped {
            v.add(
                fields.secret,
                "must be a Plivo Auth Token: 40 letters or digits",
            );
        }
        if !trunk.options.is_empty() {
            v.add(fields.options, "Plivo trunks take no options");
        }
    }

    fn inbound_call(&self, request: &Webhook<'_>) -> Result<InboundCall, BadWebhook> {
        let fields = request.form();
        match (
            field(&fields, "To"),
            field(&fields, "From"),
            field(&fields, "CallUUID"),
        ) {
            (Some(to), Some(from), Some(uuid)) if !uuid.is_empty() => Ok(InboundCall {
                to: e164(to),
                from: e164(from),
                provider_call_id: uuid.to_owned(),
            }),
            _ => Err(BadWebhook("To, From and CallUUID are required".to_owned())),
        }
    }

    fn verify_webhook(&self, trunk: &Trunk, request: &Webhook<'_>) -> bool {
        let (Some(signatures), Some(nonce)) = (
            request.header(SIGNATURE_HEADER),
            request.header(NONCE_HEADER),
        ) else {
            return false;
        };
        let method = if *request.method == HttpMethod::GET {
            Method::Get
        } else {
            Method::Post
        };
        let form = if method == Method::Post {
            request.form()
        } else {
            Vec::new()
        };
        let body: Vec<(&str, &str)> = form.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        validate_signature(
            &trunk.auth_token,
            method,
            request.url,
            &body,
            nonce,
            signatures,
        )
    }

    fn answer(&self, answer: Answer<'_>) -> Result<Document, BadWebhook> {
        let bad = |e: xml::XmlError| BadWebhook(format!("Plivo XML not built: {e}"));
        Ok(document(match answer {
            Answer::Stream(stream) => {
                xml::stream(stream.url, stream.call_id, stream.token).map_err(bad)?
            }
            Answer::Busy => xml::hangup(HangupReason::Busy),
            Answer::Reject => xml::hangup(HangupReason::Rejected),
            Answer::AskAgain { url } => xml::redirect(url).map_err(bad)?,
        }))
    }

    fn callback(&self, request: &Webhook<'_>) -> Result<Callback, BadWebhook> {
        let fields = request.form();
        let provider_call_id = field(&fields, "CallUUID")
            .filter(|id| !id.is_empty())
            .map(str::to_owned);
        // The stream's own status callback (`Event` = StartStream/StopStream/DroppedStream)
        // says nothing the call does not learn from its socket.
        if field(&fields, "Event").is_some() && field(&fields, "CallStatus").is_none() {
            return Ok(Callback {
                provider_call_id,
                event: CallbackEvent::Ignored,
            });
        }
        let status = field(&fields, "CallStatus")
            .and_then(status_of)
            .ok_or_else(|| BadWebhook("unknown CallStatus".to_owned()))?;
        Ok(Callback {
            provider_call_id,
            event: CallbackEvent::Status(status),
        })
    }

    fn place_call(&self, trunk: &Trunk, call: PlaceCall<'_>) -> RestFuture<String> {
        let rest = self.rest.clone();
        let credentials = credentials(trunk);
        let (from, to) = (call.from.to_owned(), call.to.to_owned());
        let answer_url = call.answer_url.to_owned();
        let status_url = call.status_callback.to_owned();
        let (ring, limit) = (call.ring_timeout_secs, call.time_limit_secs);
        Box::pin(async move {
            rest.create_call(
                &credentials,
                &CreateCall {
                    from: &from,
                    to: &to,
                    answer_url: &answer_url,
                    status_url: &status_url,
                    ring_timeout_secs: ring,
                    time_limit_secs: limit,
                },
            )
            .await
        })
    }

    fn hang_up(&self, trunk: &Trunk, provider_call_id: &str) -> RestFuture<()> {
        let rest = self.rest.clone();
        let credentials = credentials(trunk);
        let id = provider_call_id.to_owned();
        Box::pin(async move { rest.hang_up(&credentials, &id).await })
    }

    fn call_control(
        &self,
        _trunk: &Trunk,
        _provider_call_id: &str,
        _our_number: Option<String>,
    ) -> Option<Arc<dyn CallControl>> {
        None
    }
}

/// Plivo Audio Streams.
pub struct PlivoMedia;

impl MediaProtocol for PlivoMedia {
    type Source = stream::PlivoSource;
    type Sink = stream::PlivoSink;

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
        let start = StreamStart {
            call_id: start.our_call_id,
            token: start.token,
            provider_call_id: Some(start.call_id).filter(|id| !id.is_empty()),
            stream_id: start.stream_id,
        };
        Ok((start, source, sink))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    fn trunk() -> Trunk {
        Trunk {
            id: crate::telephony::new_trunk_id(),
            owner_id: "o".into(),
            name: "p".into(),
            provider: crate::telephony::TrunkProvider::Plivo,
            account_sid: "MAXXXXXXXXXXXXXXXXXX".into(),
            auth_token: "ZDg2ZTY4MjM1ZGU1OGI3ZDYxYmNjMjI0MTI0NmY3".into(),
            options: Default::default(),
            default_caller_number: "+14155550100".into(),
            created_at: String::new(),
            updated_at: String::new(),
        }
    }

    const FIELDS: TrunkFields = TrunkFields {
        account: "a",
        secret: "s",
        options: "o",
    };

    #[test]
    fn trunks_are_checked_by_shape() {
        let plivo = Plivo::new(reqwest::Client::new(), None);
        let mut v = Violations::new();
        plivo.check_trunk(&trunk(), FIELDS, &mut v);
        assert!(v.is_empty());
        let mut bad = trunk();
        bad.account_sid = "AC11111111111111111111111111111111".into();
        bad.auth_token = "short".into();
        bad.options.insert("x".into(), serde_json::json!(1));
        let mut v = Violations::new();
        plivo.check_trunk(&bad, FIELDS, &mut v);
        let fields: Vec<String> = v
            .into_result()
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(fields, ["a", "s", "o"]);
    }

    #[test]
    fn statuses_map_onto_ours() {
        assert_eq!(status_of("ringing"), Some(CallStatus::Ringing));
        assert_eq!(status_of("in-progress"), Some(CallStatus::InProgress));
        assert_eq!(status_of("timeout"), Some(CallStatus::NoAnswer));
        assert_eq!(status_of("cancel"), Some(CallStatus::Canceled));
        assert_eq!(status_of("busy"), Some(CallStatus::Busy));
        assert_eq!(status_of("nonsense"), None);
    }

    #[test]
    fn webhooks_are_read_and_verified_as_plivo_signs_them() {
        let plivo = Plivo::new(reqwest::Client::new(), None);
        let trunk = trunk();
        let url = "https://vb.example.com/plivo/voice";
        let body = "CallUUID=u-1&From=14155550111&To=14155550100&CallStatus=ringing";
        let params = [
            ("CallUUID", "u-1"),
            ("From", "14155550111"),
            ("To", "14155550100"),
            ("CallStatus", "ringing"),
        ];
        let signature =
            signature::compute_signature(&trunk.auth_token, Method::Post, url, &params, "42")
                .unwrap();
        let mut headers = HeaderMap::new();
        headers.insert(SIGNATURE_HEADER, signature.parse().unwrap());
        headers.insert(NONCE_HEADER, "42".parse().unwrap());
        let request = Webhook {
            url,
            method: &HttpMethod::POST,
            headers: &headers,
            body: body.as_bytes(),
        };
        let inbound = plivo.inbound_call(&request).unwrap();
        assert_eq!(inbound.to, "+14155550100");
        assert_eq!(inbound.from, "+14155550111");
        assert_eq!(inbound.provider_call_id, "u-1");
        assert!(plivo.verify_webhook(&trunk, &request));
        let forged = Webhook {
            body: b"CallUUID=u-1&From=14155550111&To=14155550199&CallStatus=ringing",
            ..request
        };
        assert!(!plivo.verify_webhook(&trunk, &forged));
        let unsigned = Webhook {
            headers: &HeaderMap::new(),
            ..request
        };
        assert!(!plivo.verify_webhook(&trunk, &unsigned));
        let callback = plivo.callback(&request).unwrap();
        assert_eq!(callback.provider_call_id.as_deref(), Some("u-1"));
        assert_eq!(callback.event, CallbackEvent::Status(CallStatus::Ringing));
        let stream_event = Webhook {
            body: b"Event=StartStream&StreamID=s-1&CallUUID=u-1",
            ..request
        };
        assert_eq!(
            plivo.callback(&stream_event).unwrap().event,
            CallbackEvent::Ignored
        );
    }
}
