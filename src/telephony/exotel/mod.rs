//! Exotel: the Voicebot applet's bidirectional stream (JSON frames, snake_case, PCM16 LE at
//! 8 kHz, chunked in Exotel's sizes), its dynamic https URL (answered with the call's stream URL
//! as JSON), the Connect API placing calls straight onto a stream URL, and status callbacks.
//!
//! Exotel signs no webhook: its requests are proven by secrets we give it (see `signature.rs`),
//! and its media socket by the Basic credentials it sends from the stream URL's userinfo
//! (`verify_media_upgrade`). Exotel has no hang-up API (closing our stream ends the leg) and no
//! transfer from a Voicebot applet, so `hang_up` does nothing beyond the session's own close
//! and `call_control` is `None`.
//!
//! Trunk: `account_sid` = Exotel Account SID, `auth_token` = API token, options `api_key` (the
//! API key, Basic user of REST calls), `stream_secret` (secret: proves Exotel's requests and
//! sockets) and `region` (`sg`, the default, or `in`).

pub mod answer;
pub mod chunks;
pub mod rest;
pub mod signature;
pub mod stream;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::WebSocket;
use axum::http::{HeaderMap, header};

use self::rest::{Connect, Credentials, ExotelRest, is_account_sid};
use self::signature::{
    SECRET_PARAM, SIG_PARAM, call_sig, verify_basic, verify_call_sig, verify_secret,
};
use super::Trunk;
use super::provider::{
    Answer, BadWebhook, CallControl, Callback, CallbackEvent, Document, InboundCall, MediaProtocol,
    PlaceCall, RestFuture, SocketLimits, StreamStart, TelephonyError, TelephonyProvider,
    TrunkFields, Webhook,
};
use crate::store::CallStatus;
use crate::validation::Violations;

/// The option naming the API key.
pub const API_KEY_OPTION: &str = "api_key";
/// The option holding the stream secret.
pub const STREAM_SECRET_OPTION: &str = "stream_secret";
/// The option naming the account's region.
pub const REGION_OPTION: &str = "region";
/// The shortest stream secret accepted.
pub const MIN_STREAM_SECRET_CHARS: usize = 24;

/// Exotel's control plane.
pub struct Exotel {
    rest: ExotelRest,
    /// `[telephony.exotel] base_url`: overrides every trunk's region.
    base_url: Option<String>,
}

impl Exotel {
    pub fn new(http: reqwest::Client, base_url: Option<&str>) -> Self {
        Self {
            rest: ExotelRest::new(http),
            base_url: base_url.map(str::to_owned),
        }
    }

    fn credentials(&self, trunk: &Trunk) -> Credentials {
        let base_url = self.base_url.clone().unwrap_or_else(|| {
            match option(trunk, REGION_OPTION) {
                Some("in") => rest::INDIA_BASE_URL,
                _ => rest::SINGAPORE_BASE_URL,
            }
            .to_owned()
        });
        Credentials {
            account_sid: trunk.account_sid.clone(),
            api_key: option(trunk, API_KEY_OPTION).unwrap_or_default().to_owned(),
            api_token: trunk.auth_token.clone(),
            base_url,
        }
    }
}

/// A text option of the trunk.
fn option<'a>(trunk: &'a Trunk, name: &str) -> Option<&'a str> {
    trunk.options.get(name).and_then(serde_json::Value::as_str)
}

fn stream_secret(trunk: &Trunk) -> &str {
    option(trunk, STREAM_SECRET_OPTION).unwrap_or_default()
}

/// Characters that go into a URL's userinfo unescaped.
fn is_url_safe_secret(value: &str) -> bool {
    value
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A request's fields: its query and, for a POST, its form or JSON body.
fn fields(request: &Webhook<'_>) -> Vec<(String, String)> {
    let mut fields = request.query();
    if let Ok(serde_json::Value::Object(map)) = serde_json::from_slice(request.body) {
        for (k, v) in map {
            let v = match v {
                serde_json::Value::String(s) => s,
                serde_json::Value::Number(n) => n.to_string(),
                _ => continue,
            };
            fields.push((k, v));
        }
    } else {
        fields.extend(request.form());
    }
    fields
}

fn field<'a>(fields: &'a [(String, String)], names: &[&str]) -> Option<&'a str> {
    names.iter().find_map(|name| {
        fields
            .iter()
            .find(|(k, v)| k == name && !v.is_empty())
            .map(|(_, v)| v.as_str())
    })
}

/// An Exotel number as E.164. Exotel writes Indian numbers in the national form (`0` and ten
/// digits) as often as E.164; a national number is read as Indian (+91), Exotel's home; `00`
/// is the international prefix.
pub fn e164(number: &str) -> String {
    let number = number.trim();
    if number.starts_with('+') {
        return number.to_owned();
    }
    if !number.bytes().all(|b| b.is_ascii_digit()) || number.is_empty() {
        return number.to_owned();
    }
    if let Some(rest) = number.strip_prefix("00") {
        format!("+{rest}")
    } else if let Some(rest) = number.strip_prefix('0') {
        format!("+91{rest}")
    } else if number.len() == 10 {
        format!("+91{number}")
    } else {
        format!("+{number}")
    }
}

/// Exotel's call status in our vocabulary.
pub fn status_of(exotel: &str) -> Option<CallStatus> {
    Some(match exotel {
        "queued" => CallStatus::Queued,
        "ringing" => CallStatus::Ringing,
        "in-progress" | "answered" => CallStatus::InProgress,
        "completed" => CallStatus::Completed,
        "busy" => CallStatus::Busy,
        "failed" => CallStatus::Failed,
        "no-answer" => CallStatus::NoAnswer,
        "canceled" | "cancelled" => CallStatus::Canceled,
        _ => return None,
    })
}

impl TelephonyProvider for Exotel {
    fn name(&self) -> &'static str {
        "exotel"
    }

    fn check_trunk(&self, trunk: &Trunk, fields: TrunkFields, v: &mut Violations) {
        if !trunk.account_sid.is_empty() && !is_account_sid(&trunk.account_sid) {
            v.add(
                fields.account,
                "must be an Exotel Account SID: letters, digits, '_' or '-'",
            );
        }
        let alnum = |s: &str, min: usize| {
            (min..=128).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
        };
        let token = &trunk.auth_token;
        if !token.is_empty() && !alnum(token, 16) {
            v.add(
                fields.secret,
                "must be an Exotel API token: 16 to 128 letters or digits",
            );
        }
        let known = [API_KEY_OPTION, STREAM_SECRET_OPTION, REGION_OPTION];
        for key in trunk.options.keys() {
            if !known.contains(&key.as_str()) {
                v.add(
                    format!("{}.{key}", fields.options),
                    "unknown Exotel option (api_key, stream_secret, region)",
                );
            }
        }
        match trunk.options.get(API_KEY_OPTION) {
            Some(serde_json::Value::String(key)) if alnum(key, 16) => {}
            _ => v.add(
                format!("{}.{API_KEY_OPTION}", fields.options),
                "is required: the Exotel API key (16 to 128 letters or digits)",
            ),
        }
        match trunk.options.get(STREAM_SECRET_OPTION) {
            Some(serde_json::Value::String(secret))
                if (MIN_STREAM_SECRET_CHARS..=128).contains(&secret.len())
                    && is_url_safe_secret(secret) => {}
            _ => v.add(
                format!("{}.{STREAM_SECRET_OPTION}", fields.options),
                format!(
                    "is required: {MIN_STREAM_SECRET_CHARS} to 128 letters, digits, '-' or '_' that Exotel's requests and stream prove themselves with"
                ),
            ),
        }
        match trunk.options.get(REGION_OPTION) {
            None => {}
            Some(serde_json::Value::String(r)) if r == "in" || r == "sg" => {}
            Some(_) => v.add(
                format!("{}.{REGION_OPTION}", fields.options),
                "must be \"sg\" (api.exotel.com) or \"in\" (api.in.exotel.com)",
            ),
        }
    }

    fn secret_options(&self) -> &'static [&'static str] {
        &[STREAM_SECRET_OPTION]
    }

    fn inbound_call(&self, request: &Webhook<'_>) -> Result<InboundCall, BadWebhook> {
        let fields = fields(request);
        match (
            field(&fields, &["CallTo", "To"]),
            field(&fields, &["CallFrom", "From"]),
            field(&fields, &["CallSid"]),
        ) {
            (Some(to), Some(from), Some(sid)) => Ok(InboundCall {
                to: e164(to),
                from: e164(from),
                provider_call_id: sid.to_owned(),
            }),
            _ => Err(BadWebhook(
                "CallTo, CallFrom and CallSid are required".to_owned(),
            )),
        }
    }

    fn verify_webhook(&self, trunk: &Trunk, request: &Webhook<'_>) -> bool {
        let secret = stream_secret(trunk);
        match request.query_value("call_id") {
            Some(call_id) => request
                .query_value(SIG_PARAM)
                .is_some_and(|sig| verify_call_sig(secret, &call_id, &sig)),
            None => request
                .query_value(SECRET_PARAM)
                .is_some_and(|given| verify_secret(secret, &given)),
        }
    }

    fn answer(&self, answer: Answer<'_>) -> Result<Document, BadWebhook> {
        let body = match answer {
            Answer::Stream(stream) => {
                let url = answer::stream_url(stream.url, stream.call_id, stream.token)
                    .map_err(|e| BadWebhook(format!("stream URL not built: {e}")))?;
                answer::stream(&url)
            }
            Answer::Busy => answer::refusal("busy"),
            Answer::Reject => answer::refusal("rejected"),
            // The applet cannot be redirected: a failed request is what makes Exotel (or a load
            // balancer in front of us) try again.
            Answer::AskAgain { .. } => {
                return Err(BadWebhook("draining: ask another node".to_owned()));
            }
        };
        Ok(Document {
            content_type: answer::CONTENT_TYPE,
            body,
        })
    }

    fn callback(&self, request: &Webhook<'_>) -> Result<Callback, BadWebhook> {
        let fields = fields(request);
        let provider_call_id = field(&fields, &["CallSid"]).map(str::to_owned);
        let event_type = field(&fields, &["EventType"]).map(str::to_ascii_lowercase);
        let status = if event_type.as_deref() == Some("answered") {
            Some(CallStatus::InProgress)
        } else {
            field(&fields, &["Status", "CallStatus"]).and_then(status_of)
        };
        let status = status.ok_or_else(|| BadWebhook("unknown Status".to_owned()))?;
        Ok(Callback {
            provider_call_id,
            event: CallbackEvent::Status(status),
        })
    }

    fn place_call(&self, trunk: &Trunk, call: PlaceCall<'_>) -> RestFuture<String> {
        let stream_url =
            match answer::stream_url(call.stream.url, call.stream.call_id, call.stream.token) {
                Ok(url) => url,
                Err(e) => {
                    return Box::pin(std::future::ready(Err(TelephonyError::Invalid {
                        provider: "Exotel",
                        message: format!("{e} (check public_url)"),
                    })));
                }
            };
        let sig = call_sig(stream_secret(trunk), call.stream.call_id);
        let separator = if call.status_callback.contains('?') {
            '&'
        } else {
            '?'
        };
        let status_callback = format!("{}{separator}{SIG_PARAM}={sig}", call.status_callback);
        let rest = self.rest.clone();
        let credentials = self.credentials(trunk);
        let (to, from) = (call.to.to_owned(), call.from.to_owned());
        let call_id = call.stream.call_id.to_owned();
        let limit = call.time_limit_secs;
        Box::pin(async move {
            rest.connect(
                &credentials,
                &Connect {
                    to: &to,
                    caller_id: &from,
                    stream_url: &stream_url,
                    status_callback: &status_callback,
                    time_limit_secs: limit,
                    custom_field: &call_id,
                },
            )
            .await
        })
    }

    fn hang_up(&self, _trunk: &Trunk, provider_call_id: &str) -> RestFuture<()> {
        tracing::info!(
            provider_call_id,
            "Exotel has no hang-up API: the call ends when its stream closes"
        );
        Box::pin(std::future::ready(Ok(())))
    }

    fn call_control(
        &self,
        _trunk: &Trunk,
        _provider_call_id: &str,
        _our_number: Option<String>,
    ) -> Option<Arc<dyn CallControl>> {
        None
    }

    fn verify_media_upgrade(&self, trunk: &Trunk, headers: &HeaderMap) -> bool {
        let authorization = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        verify_basic(authorization, &trunk.account_sid, stream_secret(trunk))
    }

    fn media_url(&self, trunk: &Trunk, url: String) -> String {
        let Ok(mut parsed) = url::Url::parse(&url) else {
            return url;
        };
        if parsed.set_username(&trunk.account_sid).is_err()
            || parsed.set_password(Some(stream_secret(trunk))).is_err()
        {
            return url;
        }
        parsed.into()
    }
}

/// Exotel's Voicebot stream.
pub struct ExotelMedia;

impl MediaProtocol for ExotelMedia {
    type Source = stream::ExotelSource;
    type Sink = stream::ExotelSink;

    const LIMITS: SocketLimits = SocketLimits {
        max_message_bytes: 2 * stream::MAX_FRAME_BYTES,
    };

    async fn accept(
        socket: WebSocket,
        inactivity: Duration,
    ) -> Result<(StreamStart, Self::Source, Self::Sink), String> {
        let (start, source, sink) = stream::accept(socket, inactivity)
            .await
            .map_err(|e| e.to_string())?;
        let start = StreamStart {
            call_id: start.call_id,
            token: start.token,
            provider_call_id: Some(start.call_sid).filter(|sid| !sid.is_empty()),
            stream_id: start.stream_sid,
        };
        Ok((start, source, sink))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::Method;

    const SECRET: &str = "exotel-stream-secret-0123456789";

    fn trunk() -> Trunk {
        let mut options = serde_json::Map::new();
        options.insert(API_KEY_OPTION.into(), "a1b2c3d4e5f6a1b2c3d4e5f6".into());
        options.insert(STREAM_SECRET_OPTION.into(), SECRET.into());
        Trunk {
            id: crate::telephony::new_trunk_id(),
            owner_id: "o".into(),
            name: "e".into(),
            provider: crate::telephony::TrunkProvider::Exotel,
            account_sid: "acme1".into(),
            auth_token: "f0e1d2c3b4a5f0e1d2c3b4a5f0e1d2c3b4a5f0e1".into(),
            options,
            default_caller_number: "+918040000000".into(),
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
    fn trunks_need_their_api_key_and_a_stream_secret() {
        let exotel = Exotel::new(reqwest::Client::new(), None);
        let mut v = Violations::new();
        exotel.check_trunk(&trunk(), FIELDS, &mut v);
        assert!(v.is_empty());
        let mut bad = trunk();
        bad.options.clear();
        bad.options.insert("region".into(), "us".into());
        bad.options.insert("color".into(), "red".into());
        bad.auth_token = "x!".into();
        let mut v = Violations::new();
        exotel.check_trunk(&bad, FIELDS, &mut v);
        let mut fields: Vec<String> = v
            .into_result()
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect();
        fields.sort();
        assert_eq!(
            fields,
            ["o.api_key", "o.color", "o.region", "o.stream_secret", "s"]
        );
    }

    #[test]
    fn the_applet_request_is_proven_by_the_secret_and_answered_with_the_stream_url() {
        let exotel = Exotel::new(reqwest::Client::new(), None);
        let trunk = trunk();
        let headers = HeaderMap::new();
        let url = format!(
            "https://vb.example.com/exotel/voice?secret={SECRET}&CallSid=CA1&CallFrom=09876500000&CallTo=08040000000&Direction=incoming"
        );
        let request = Webhook {
            url: &url,
            method: &Method::GET,
            headers: &headers,
            body: b"",
        };
        let inbound = exotel.inbound_call(&request).unwrap();
        assert_eq!(inbound.to, "+918040000000");
        assert_eq!(inbound.from, "+919876500000");
        assert_eq!(inbound.provider_call_id, "CA1");
        assert!(exotel.verify_webhook(&trunk, &request));
        let forged_url = url.replace(SECRET, "guess");
        let forged = Webhook {
            url: &forged_url,
            ..request
        };
        assert!(!exotel.verify_webhook(&trunk, &forged));

        let media = exotel.media_url(&trunk, "wss://vb.example.com/exotel/media".into());
        assert_eq!(
            media,
            format!("wss://acme1:{SECRET}@vb.example.com/exotel/media")
        );
        let doc = exotel
            .answer(Answer::Stream(crate::telephony::provider::StreamTarget {
                url: &media,
                call_id: "c-1",
                token: "vst_t",
            }))
            .unwrap();
        assert_eq!(doc.content_type, "application/json");
        let json: serde_json::Value = serde_json::from_str(&doc.body).unwrap();
        assert_eq!(
            json["url"],
            format!(
                "wss://acme1:{SECRET}@vb.example.com/exotel/media?call_id=c-1&token=vst_t&sample-rate=8000"
            )
        );
        assert!(exotel.answer(Answer::AskAgain { url: &url }).is_err());
    }

    #[test]
    fn status_callbacks_need_the_calls_sig_and_map_statuses() {
        let exotel = Exotel::new(reqwest::Client::new(), None);
        let trunk = trunk();
        let headers = HeaderMap::new();
        let sig = call_sig(SECRET, "call-1");
        let url = format!("https://vb.example.com/exotel/status?call_id=call-1&sig={sig}");
        let request = Webhook {
            url: &url,
            method: &Method::POST,
            headers: &headers,
            body: b"CallSid=CA9&Status=no-answer&EventType=terminal",
        };
        assert!(exotel.verify_webhook(&trunk, &request));
        let callback = exotel.callback(&request).unwrap();
        assert_eq!(callback.provider_call_id.as_deref(), Some("CA9"));
        assert_eq!(callback.event, CallbackEvent::Status(CallStatus::NoAnswer));
        let other_call = url.replace("call-1", "call-2");
        assert!(!exotel.verify_webhook(
            &trunk,
            &Webhook {
                url: &other_call,
                ..request
            }
        ));
        let answered = Webhook {
            body: br#"{"CallSid":"CA9","Status":"in-progress","EventType":"answered"}"#,
            ..request
        };
        assert_eq!(
            exotel.callback(&answered).unwrap().event,
            CallbackEvent::Status(CallStatus::InProgress)
        );
        let junk = Webhook {
            body: b"CallSid=CA9&Status=exploded",
            ..request
        };
        assert!(exotel.callback(&junk).is_err());
    }

    #[test]
    fn the_media_upgrade_needs_the_trunks_basic_credentials() {
        let exotel = Exotel::new(reqwest::Client::new(), None);
        let trunk = trunk();
        let mut headers = HeaderMap::new();
        assert!(!exotel.verify_media_upgrade(&trunk, &headers));
        headers.insert(
            header::AUTHORIZATION,
            signature::basic_authorization("acme1", SECRET)
                .parse()
                .unwrap(),
        );
        assert!(exotel.verify_media_upgrade(&trunk, &headers));
        headers.insert(
            header::AUTHORIZATION,
            signature::basic_authorization("acme1", "wrong")
                .parse()
                .unwrap(),
        );
        assert!(!exotel.verify_media_upgrade(&trunk, &headers));
    }

    #[test]
    fn numbers_become_e164() {
        assert_eq!(e164("+919876500000"), "+919876500000");
        assert_eq!(e164("09876500000"), "+919876500000");
        assert_eq!(e164("9876500000"), "+919876500000");
        assert_eq!(e164("00442071234567"), "+442071234567");
        assert_eq!(e164("919876500000"), "+919876500000");
    }
}
