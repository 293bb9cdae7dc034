//! A client for Exotel's Connect API in its "Connect Voice AI" form: `POST
//! /v1/accounts/{sid}/calls/connect` dials the callee and, once answered, connects the call to
//! the Voicebot stream at `streamurl` — no App Bazaar flow needed, so each call gets its own
//! stream URL with our call id and token. (The older form takes the `Url` of a flow whose
//! Voicebot applet has a fixed URL, which cannot carry a per-call token.) HTTP Basic with the
//! API key and token; the region's host (`api.exotel.com` Singapore, `api.in.exotel.com` India)
//! comes from the trunk, and `[telephony.exotel] base_url` overrides it (tests, the fake).
//!
//! Exotel documents no API that ends a call: closing our stream socket ends the Voicebot leg,
//! and with it a call placed this way; a call still ringing cannot be stopped.

use serde_json::Value;

use crate::telephony::provider::TelephonyError;

const PROVIDER: &str = "Exotel";
/// Singapore (Exotel's default region).
pub const SINGAPORE_BASE_URL: &str = "https://api.exotel.com";
/// India.
pub const INDIA_BASE_URL: &str = "https://api.in.exotel.com";
/// Exotel's longest call.
pub const MAX_TIME_LIMIT_SECS: u32 = 14_400;

/// True for an Exotel Account SID as it appears in API paths (letters, digits, `_`, `-`).
pub fn is_account_sid(value: &str) -> bool {
    (2..=64).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Exotel's API credentials and account.
#[derive(Clone)]
pub struct Credentials {
    pub account_sid: String,
    pub api_key: String,
    pub api_token: String,
    /// The region's base URL (or the configured override).
    pub base_url: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("account_sid", &self.account_sid)
            .field("api_key", &self.api_key)
            .field("api_token", &"<redacted>")
            .field("base_url", &self.base_url)
            .finish()
    }
}

/// A call to place.
#[derive(Debug, Clone, Copy)]
pub struct Connect<'a> {
    /// Whom to dial (Exotel's `from`: the number called first).
    pub to: &'a str,
    /// Our ExoPhone, shown as caller ID.
    pub caller_id: &'a str,
    pub stream_url: &'a str,
    pub status_callback: &'a str,
    pub time_limit_secs: u32,
    /// Shown back in callbacks (our call id).
    pub custom_field: &'a str,
}

/// The Connect API client.
#[derive(Debug, Clone)]
pub struct ExotelRest {
    http: reqwest::Client,
}

fn unreachable(message: impl std::fmt::Display) -> TelephonyError {
    TelephonyError::Unreachable {
        provider: PROVIDER,
        message: message.to_string(),
    }
}

impl ExotelRest {
    pub fn new(http: reqwest::Client) -> Self {
        Self { http }
    }

    /// Places a call; answers its CallSid.
    pub async fn connect(
        &self,
        credentials: &Credentials,
        call: &Connect<'_>,
    ) -> Result<String, TelephonyError> {
        if !is_account_sid(&credentials.account_sid) {
            return Err(TelephonyError::Invalid {
                provider: PROVIDER,
                message: "the trunk's Account SID is not an Exotel Account SID".into(),
            });
        }
        let url = format!(
            "{}/v1/accounts/{}/calls/connect",
            credentials.base_url.trim_end_matches('/'),
            credentials.account_sid
        );
        let time_limit = call
            .time_limit_secs
            .clamp(1, MAX_TIME_LIMIT_SECS)
            .to_string();
        let form = [
            ("from", call.to),
            ("callerid", call.caller_id),
            ("streamurl", call.stream_url),
            ("streamtype", "bidirectional"),
            ("statuscallback", call.status_callback),
            ("statuscallbackevents[]", "answered"),
            ("statuscallbackevents[]", "terminal"),
            ("timelimit", &time_limit),
            ("customfield", call.custom_field),
        ];
        let response = self
            .http
            .post(&url)
            .basic_auth(&credentials.api_key, Some(&credentials.api_token))
            .form(&form)
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(unreachable)?;
        if !status.is_success() {
            return Err(refusal(status.as_u16(), &bytes));
        }
        let body: Value = serde_json::from_slice(&bytes)
            .map_err(|e| unreachable(format!("unreadable answer to a placed call: {e}")))?;
        call_sid(&body).ok_or_else(|| unreachable("the answer to a placed call has no call sid"))
    }
}

/// `call.sid` (the Voice AI docs) or `Call.Sid` (Exotel's classic JSON).
fn call_sid(body: &Value) -> Option<String> {
    let call = body.get("call").or_else(|| body.get("Call"))?;
    call.get("sid")
        .or_else(|| call.get("Sid"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// Exotel's error (`{"RestException": {"Status", "Code", "Message"}}`) as a refusal.
fn refusal(status: u16, body: &[u8]) -> TelephonyError {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let exception = json
        .as_ref()
        .and_then(|j| j.get("RestException").or_else(|| j.get("rest_exception")));
    let message = exception
        .and_then(|e| e.get("Message").or_else(|| e.get("message")))
        .and_then(Value::as_str)
        .map(str::to_owned)
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(200).collect());
    let code = exception
        .and_then(|e| e.get("Code").or_else(|| e.get("code")))
        .and_then(|c| match c {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        })
        .or_else(|| Some(status.to_string()));
    TelephonyError::Refused {
        provider: PROVIDER,
        status,
        code,
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn call_sids_in_both_casings() {
        assert_eq!(
            call_sid(&json!({"call": {"sid": "a1b2", "status": "in-progress"}})).as_deref(),
            Some("a1b2")
        );
        assert_eq!(
            call_sid(&json!({"Call": {"Sid": "x9"}})).as_deref(),
            Some("x9")
        );
        assert_eq!(call_sid(&json!({"call": {}})), None);
    }

    #[test]
    fn refusals_carry_exotels_message_and_code() {
        let e = refusal(
            400,
            br#"{"RestException":{"Status":400,"Code":34011,"Message":"From number is invalid"}}"#,
        );
        assert_eq!(e.code(), Some("34011"));
        assert!(e.to_string().contains("From number is invalid"));
        assert!(e.is_client_error());
        assert!(is_account_sid("acme1"));
        assert!(!is_account_sid("../x"));
    }
}
