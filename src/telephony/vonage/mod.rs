//! Vonage Voice API: answer webhooks (`GET` with the call in the query by default, or a JSON
//! `POST`) answered with an NCCO that `connect`s the call to our websocket, calls placed with
//! `POST /v1/calls` (NCCO inline, events to our status URL) under an application JWT (RS256),
//! hang-up and transfer with `PUT /v1/calls/{uuid}`, signed webhooks (an HS256 JWT carrying the
//! payload's hash), and the websocket itself: binary PCM16 at 16 kHz with JSON events.
//!
//! A Vonage trunk: `trunk_account_sid` is the application id (a UUID), `trunk_auth_token` the
//! application's private key (PEM), and `trunk_options` hold `signature_secret` (the account's
//! signature secret, which verifies webhooks: a secret option, never shown) and optionally
//! `api_key` (the account, which signed webhooks must then name). Vonage writes numbers without
//! `+`; they are converted both ways here.

pub mod control;
pub mod events;
pub mod jwt;
pub mod ncco;
pub mod rest;
pub mod signature;
pub mod stream;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::WebSocket;
use serde::Deserialize;
use serde_json::json;

use self::control::VonageCallControl;
use self::jwt::ApplicationKey;
use self::rest::{Application, CreateCall, VonageRest};
use super::Trunk;
use super::provider::{
    Answer, BadWebhook, CallControl, Callback, Document, InboundCall, MediaProtocol, PlaceCall,
    RestFuture, SocketLimits, StreamStart, TelephonyError, TelephonyProvider, TrunkFields, Webhook,
};
use crate::validation::Violations;

/// Vonage's API in production.
pub const DEFAULT_BASE_URL: &str = "https://api.nexmo.com";
/// The trunk option holding the signature secret.
pub const SIGNATURE_SECRET_OPTION: &str = "signature_secret";
/// The trunk option naming the account (optional).
pub const API_KEY_OPTION: &str = "api_key";

const PROVIDER: &str = "Vonage";

/// Vonage's control plane.
pub struct Vonage {
    rest: VonageRest,
}

impl Vonage {
    pub fn new(http: reqwest::Client, base_url: Option<&str>) -> Self {
        Self {
            rest: VonageRest::with_client(http, base_url.unwrap_or(DEFAULT_BASE_URL)),
        }
    }
}

/// The current Unix time in seconds.
pub fn now_unix() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// A number as Vonage writes it: E.164 digits without the `+`.
pub fn vonage_number(e164: &str) -> String {
    e164.trim_start_matches('+').to_owned()
}

/// A number Vonage wrote, as we store it: digits get their `+` back; anything else (a SIP URI,
/// `Unknown` for a withheld caller) stays as it is.
pub fn e164(number: &str) -> String {
    if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) {
        format!("+{number}")
    } else {
        number.to_owned()
    }
}

/// True for an application id: a UUID.
pub fn is_application_id(value: &str) -> bool {
    uuid::Uuid::try_parse(value).is_ok() && value.len() == 36
}

fn option<'a>(trunk: &'a Trunk, name: &str) -> Option<&'a str> {
    trunk.options.get(name).and_then(|v| v.as_str())
}

fn ncco_document(body: serde_json::Value) -> Document {
    Document {
        content_type: "application/json",
        body: body.to_string(),
    }
}

fn invalid<T: Send + 'static>(message: String) -> RestFuture<T> {
    Box::pin(std::future::ready(Err(TelephonyError::Invalid {
        provider: PROVIDER,
        message,
    })))
}

/// An answer webhook's fields, from its JSON body or its query.
#[derive(Deserialize, Default)]
struct AnswerRequest {
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    uuid: Option<String>,
}

impl TelephonyProvider for Vonage {
    fn name(&self) -> &'static str {
        "vonage"
    }

    fn check_trunk(&self, trunk: &Trunk, fields: TrunkFields, v: &mut Violations) {
        if !trunk.account_sid.is_empty() && !is_application_id(&trunk.account_sid) {
            v.add(fields.account, "must be a Vonage application id (a UUID)");
        }
        if !trunk.auth_token.is_empty()
            && let Err(e) = ApplicationKey::from_pem(&trunk.auth_token)
        {
            v.add(
                fields.secret,
                format!("must be the Vonage application's private key: it {e}"),
            );
        }
        match trunk.options.get(SIGNATURE_SECRET_OPTION) {
            None => v.add(
                fields.options,
                "signature_secret is required: the account's signature secret, which verifies Vonage's signed webhooks",
            ),
            Some(value) => match value.as_str() {
                Some(s) if (16..=256).contains(&s.len()) => {}
                Some(_) => v.add(fields.options, "signature_secret must be 16 to 256 characters"),
                None => v.add(fields.options, "signature_secret must be a string"),
            },
        }
        if let Some(value) = trunk.options.get(API_KEY_OPTION) {
            let ok = value.as_str().is_some_and(|s| {
                (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
            });
            if !ok {
                v.add(
                    fields.options,
                    "api_key must be the Vonage account's API key",
                );
            }
        }
        if let Some(other) = trunk
            .options
            .keys()
            .find(|k| *k != SIGNATURE_SECRET_OPTION && *k != API_KEY_OPTION)
        {
            v.add(
                fields.options,
                format!(
                    "unknown option {other:?}: Vonage trunks take signature_secret and api_key"
                ),
            );
        }
    }

    fn secret_options(&self) -> &'static [&'static str] {
        &[SIGNATURE_SECRET_OPTION]
    }

    fn inbound_call(&self, request: &Webhook<'_>) -> Result<InboundCall, BadWebhook> {
        let fields: AnswerRequest = if request.body.trim_ascii().is_empty() {
            let query = request.query();
            let get = |name: &str| {
                query
                    .iter()
                    .find(|(k, _)| k == name)
                    .map(|(_, v)| v.clone())
            };
            AnswerRequest {
                to: get("to"),
                from: get("from"),
                uuid: get("uuid"),
            }
        } else {
            serde_json::from_slice(request.body)
                .map_err(|e| BadWebhook(format!("not a Vonage answer request: {e}")))?
        };
        match (fields.to, fields.from, fields.uuid) {
            (Some(to), Some(from), Some(uuid)) => Ok(InboundCall {
                to: e164(&to),
                from: e164(&from),
                provider_call_id: uuid,
            }),
            _ => Err(BadWebhook("to, from and uuid are required".to_owned())),
        }
    }

    fn verify_webhook(&self, trunk: &Trunk, request: &Webhook<'_>) -> bool {
        let Some(secret) = option(trunk, SIGNATURE_SECRET_OPTION) else {
            return false;
        };
        let query = request.query();
        signature::verify(
            &signature::Signed {
                authorization: request.header("authorization"),
                body: request.body,
                query: &query,
            },
            secret,
            option(trunk, API_KEY_OPTION),
            now_unix(),
        )
    }

    fn answer(&self, answer: Answer<'_>) -> Result<Document, BadWebhook> {
        match answer {
            Answer::Stream(stream) => {
                ncco::connect_websocket(stream.url, stream.call_id, stream.token)
                    .map(ncco_document)
                    .map_err(|e| BadWebhook(format!("NCCO not built: {e}")))
            }
            Answer::Busy | Answer::Reject => Ok(ncco_document(ncco::hang_up())),
            // No NCCO asks again: the route answers 503 and Vonage tries the fallback answer URL.
            Answer::AskAgain { .. } => Err(BadWebhook(
                "an NCCO cannot redirect; Vonage asks the fallback answer URL".to_owned(),
            )),
        }
    }

    fn callback(&self, request: &Webhook<'_>) -> Result<Callback, BadWebhook> {
        events::parse(request.body)
    }

    fn place_call(&self, trunk: &Trunk, call: PlaceCall<'_>) -> RestFuture<String> {
        let ncco = match ncco::connect_websocket(
            call.stream.url,
            call.stream.call_id,
            call.stream.token,
        ) {
            Ok(ncco) => ncco,
            Err(e) => return invalid(format!("{e} (check public_url)")),
        };
        let key = match ApplicationKey::from_pem(&trunk.auth_token) {
            Ok(key) => key,
            Err(e) => return invalid(format!("the trunk's private key {e}")),
        };
        let rest = self.rest.clone();
        let application_id = trunk.account_sid.clone();
        let body = CreateCall {
            to: vec![json!({"type": "phone", "number": vonage_number(call.to)})],
            from: json!({"type": "phone", "number": vonage_number(call.from)}),
            ncco,
            event_url: vec![call.status_callback.to_owned()],
            event_method: "POST",
            // Vonage's bounds: ringing 1–120 s, a call at most 2 hours.
            ringing_timer: call.ring_timeout_secs.clamp(1, 120),
            length_timer: call.time_limit_secs.clamp(1, 7200),
        };
        Box::pin(async move {
            let app = Application {
                id: &application_id,
                key: &key,
            };
            rest.create_call(&app, &body).await
        })
    }

    fn hang_up(&self, trunk: &Trunk, provider_call_id: &str) -> RestFuture<()> {
        let key = match ApplicationKey::from_pem(&trunk.auth_token) {
            Ok(key) => key,
            Err(e) => return invalid(format!("the trunk's private key {e}")),
        };
        let rest = self.rest.clone();
        let application_id = trunk.account_sid.clone();
        let uuid = provider_call_id.to_owned();
        Box::pin(async move {
            let app = Application {
                id: &application_id,
                key: &key,
            };
            rest.hang_up(&app, &uuid).await
        })
    }

    fn call_control(
        &self,
        trunk: &Trunk,
        provider_call_id: &str,
        our_number: Option<String>,
    ) -> Option<Arc<dyn CallControl>> {
        let key = ApplicationKey::from_pem(&trunk.auth_token).ok()?;
        Some(Arc::new(VonageCallControl {
            rest: self.rest.clone(),
            application_id: trunk.account_sid.clone(),
            key: Arc::new(key),
            uuid: provider_call_id.to_owned(),
            caller_id: our_number,
        }))
    }
}

/// Vonage's websocket.
pub struct VonageMedia;

impl MediaProtocol for VonageMedia {
    type Source = stream::VonageSource;
    type Sink = stream::VonageSink;

    const LIMITS: SocketLimits = SocketLimits {
        max_message_bytes: 2 * stream::MAX_FRAME_BYTES,
    };

    async fn accept(
        socket: WebSocket,
        inactivity: Duration,
    ) -> Result<(StreamStart, Self::Source, Self::Sink), String> {
        let (connected, source, sink) = stream::accept(socket, inactivity)
            .await
            .map_err(|e| e.to_string())?;
        // The socket does not name the call's uuid: the call record has it (from the answer
        // webhook or from placing the call).
        let start = StreamStart {
            stream_id: connected.call_id.clone().unwrap_or_default(),
            call_id: connected.call_id,
            token: connected.token,
            provider_call_id: None,
        };
        Ok((start, source, sink))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telephony::TrunkProvider;
    use std::sync::LazyLock;

    static PEM: LazyLock<String> = LazyLock::new(ApplicationKey::generate_pem);
    const APP: &str = "aaaaaaaa-bbbb-cccc-dddd-0123456789ab";
    const SECRET: &str = "a-signature-secret-of-32-chars!!";

    fn trunk(account: &str, secret: &str, options: serde_json::Value) -> Trunk {
        Trunk {
            id: crate::telephony::new_trunk_id(),
            owner_id: "o".into(),
            name: "n".into(),
            provider: TrunkProvider::Vonage,
            account_sid: account.into(),
            auth_token: secret.into(),
            options: options.as_object().cloned().unwrap_or_default(),
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

    fn violations(t: &Trunk) -> Vec<String> {
        let mut v = Violations::new();
        Vonage::new(reqwest::Client::new(), None).check_trunk(t, FIELDS, &mut v);
        v.into_result()
            .err()
            .unwrap_or_default()
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn trunks_are_checked_by_shape() {
        assert!(
            violations(&trunk(
                APP,
                &PEM,
                json!({"signature_secret": SECRET, "api_key": "abcd1234"})
            ))
            .is_empty()
        );
        assert_eq!(
            violations(&trunk(
                "app-1",
                "not a key",
                json!({"signature_secret": "short", "x": 1})
            )),
            ["a", "s", "o", "o"]
        );
        assert_eq!(violations(&trunk(APP, &PEM, json!({}))), ["o"]);
    }

    #[test]
    fn answer_webhooks_name_the_call_by_get_or_post() {
        let vonage = Vonage::new(reqwest::Client::new(), None);
        let headers = axum::http::HeaderMap::new();
        let get = Webhook {
            url: "https://a/vonage/voice?to=447700900000&from=447700900001&uuid=u1&conversation_uuid=CON-1",
            method: &axum::http::Method::GET,
            headers: &headers,
            body: b"",
        };
        let call = vonage.inbound_call(&get).unwrap();
        assert_eq!(
            (call.to.as_str(), call.from.as_str()),
            ("+447700900000", "+447700900001")
        );
        assert_eq!(call.provider_call_id, "u1");
        let post = Webhook {
            url: "https://a/vonage/voice",
            method: &axum::http::Method::POST,
            headers: &headers,
            body:
                br#"{"to":"447700900000","from":"Unknown","uuid":"u2","conversation_uuid":"CON-2"}"#,
        };
        assert_eq!(vonage.inbound_call(&post).unwrap().from, "Unknown");
        let bad = Webhook {
            body: b"{}",
            ..post
        };
        assert!(vonage.inbound_call(&bad).is_err());
    }

    #[test]
    fn signed_webhooks_are_verified_with_the_trunks_secret() {
        let vonage = Vonage::new(reqwest::Client::new(), None);
        let t = trunk(APP, &PEM, json!({"signature_secret": SECRET}));
        let body = br#"{"uuid":"u","status":"answered"}"#;
        let auth = signature::authorization(SECRET, "abcd1234", APP, body, &[], now_unix());
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("authorization", auth.parse().unwrap());
        let request = Webhook {
            url: "https://a/vonage/status?call_id=c1",
            method: &axum::http::Method::POST,
            headers: &headers,
            body,
        };
        assert!(vonage.verify_webhook(&t, &request));
        let forged = Webhook {
            body: br#"{"uuid":"u","status":"completed"}"#,
            ..request
        };
        assert!(!vonage.verify_webhook(&t, &forged));
        let other = trunk(
            APP,
            &PEM,
            json!({"signature_secret": "another-secret-of-enough-length"}),
        );
        assert!(!vonage.verify_webhook(&other, &request));
    }

    #[test]
    fn answers_are_nccos() {
        let vonage = Vonage::new(reqwest::Client::new(), None);
        let doc = vonage
            .answer(Answer::Stream(super::super::provider::StreamTarget {
                url: "wss://a/vonage/media",
                call_id: "c",
                token: "t",
            }))
            .unwrap();
        assert_eq!(doc.content_type, "application/json");
        assert!(
            doc.body
                .contains(r#""content-type":"audio/l16;rate=16000""#)
        );
        assert_eq!(vonage.answer(Answer::Busy).unwrap().body, "[]");
        assert!(
            vonage
                .answer(Answer::AskAgain { url: "https://a" })
                .is_err()
        );
        assert_eq!(e164("14155550100"), "+14155550100");
        assert_eq!(vonage_number("+14155550100"), "14155550100");
    }
}
