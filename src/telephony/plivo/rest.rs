//! A client for Plivo's Call API: place a call (`POST /v1/Account/{auth_id}/Call/`, which
//! fetches its instructions from our answer URL) and hang one up. Basic auth with the trunk's
//! Auth ID and Auth Token; the base URL is configurable (`[telephony.plivo] base_url`) so tests
//! and the load generator talk to the fake in `sim::plivo`.
//!
//! Placing a call answers a `request_uuid`, not the call's `CallUUID`: Plivo only knows the call
//! once it rings, and its callbacks name it by `CallUUID` (with the request as
//! `RequestUUID`/`ALegRequestUUID`). A hang-up therefore tries the call, and when Plivo does not
//! know it under that id, the queued request (`DELETE /Request/{request_uuid}/`, Plivo's
//! "hang up a request"), so a call still ringing under its request id stops ringing too.

use serde::Deserialize;
use serde_json::json;

use crate::telephony::provider::TelephonyError;

/// Plivo's API in production.
pub const DEFAULT_BASE_URL: &str = "https://api.plivo.com";
const PROVIDER: &str = "Plivo";

/// True for a Plivo Auth ID: `MA` (account) or `SA` (subaccount) and 18 uppercase letters or
/// digits (the SDKs' `^(M|S)A[A-Z0-9]{18}$`).
pub fn is_auth_id(value: &str) -> bool {
    value.len() == 20
        && (value.starts_with("MA") || value.starts_with("SA"))
        && value[2..]
            .bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}

/// True for an id Plivo uses in paths (call and request UUIDs): hex digits and hyphens, so no
/// value can change the path.
pub fn is_uuid_like(value: &str) -> bool {
    (8..=64).contains(&value.len()) && value.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-')
}

/// A Plivo number: E.164 without the `+` (Plivo's own form; `+` is also accepted by it, but
/// its docs and callbacks use the bare digits).
pub fn plivo_number(e164: &str) -> &str {
    e164.strip_prefix('+').unwrap_or(e164)
}

/// An outbound call to place.
#[derive(Debug, Clone, Copy)]
pub struct CreateCall<'a> {
    pub from: &'a str,
    pub to: &'a str,
    pub answer_url: &'a str,
    /// Where Plivo reports the call's end (and, as `ring_url`, its ringing).
    pub status_url: &'a str,
    pub ring_timeout_secs: u32,
    pub time_limit_secs: u32,
}

/// Plivo's account credentials.
#[derive(Clone)]
pub struct Credentials {
    pub auth_id: String,
    pub auth_token: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("auth_id", &self.auth_id)
            .field("auth_token", &"<redacted>")
            .finish()
    }
}

/// The Call API client. Cheap to clone (the connection pool is shared).
#[derive(Debug, Clone)]
pub struct PlivoRest {
    http: reqwest::Client,
    base_url: String,
}

#[derive(Deserialize)]
struct Created {
    request_uuid: String,
}

#[derive(Deserialize)]
struct ErrorJson {
    #[serde(default)]
    error: Option<serde_json::Value>,
    #[serde(default)]
    message: Option<String>,
}

fn invalid(message: impl Into<String>) -> TelephonyError {
    TelephonyError::Invalid {
        provider: PROVIDER,
        message: message.into(),
    }
}

fn unreachable(message: impl std::fmt::Display) -> TelephonyError {
    TelephonyError::Unreachable {
        provider: PROVIDER,
        message: message.to_string(),
    }
}

impl PlivoRest {
    pub fn new(http: reqwest::Client, base_url: &str) -> Self {
        Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
        }
    }

    fn account_url(&self, credentials: &Credentials) -> Result<String, TelephonyError> {
        if !is_auth_id(&credentials.auth_id) {
            return Err(invalid("the trunk's Auth ID is not a Plivo Auth ID"));
        }
        Ok(format!(
            "{}/v1/Account/{}",
            self.base_url, credentials.auth_id
        ))
    }

    /// Places a call; answers Plivo's `request_uuid`.
    pub async fn create_call(
        &self,
        credentials: &Credentials,
        call: &CreateCall<'_>,
    ) -> Result<String, TelephonyError> {
        let url = format!("{}/Call/", self.account_url(credentials)?);
        let body = json!({
            "from": plivo_number(call.from),
            "to": plivo_number(call.to),
            "answer_url": call.answer_url,
            "answer_method": "POST",
            "ring_url": call.status_url,
            "ring_method": "POST",
            "hangup_url": call.status_url,
            "hangup_method": "POST",
            "ring_timeout": call.ring_timeout_secs,
            "time_limit": call.time_limit_secs,
        });
        let response = self
            .http
            .post(&url)
            .basic_auth(&credentials.auth_id, Some(&credentials.auth_token))
            .json(&body)
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status();
        let bytes = response.bytes().await.map_err(unreachable)?;
        if !status.is_success() {
            return Err(refusal(status.as_u16(), &bytes));
        }
        let created: Created = serde_json::from_slice(&bytes)
            .map_err(|e| unreachable(format!("unreadable answer to a placed call: {e}")))?;
        Ok(created.request_uuid)
    }

    /// Hangs up a call by its CallUUID, or a call still queued by its request UUID. A call Plivo
    /// knows under neither (it has ended) is no error.
    pub async fn hang_up(&self, credentials: &Credentials, id: &str) -> Result<(), TelephonyError> {
        if !is_uuid_like(id) {
            return Err(invalid("not a Plivo call or request UUID"));
        }
        let account = self.account_url(credentials)?;
        for kind in ["Call", "Request"] {
            let url = format!("{account}/{kind}/{id}/");
            let response = self
                .http
                .delete(&url)
                .basic_auth(&credentials.auth_id, Some(&credentials.auth_token))
                .send()
                .await
                .map_err(unreachable)?;
            let status = response.status().as_u16();
            if response.status().is_success() {
                return Ok(());
            }
            if status != 404 {
                let bytes = response.bytes().await.map_err(unreachable)?;
                return Err(refusal(status, &bytes));
            }
        }
        Ok(())
    }
}

/// Plivo's error answer (`{"api_id": …, "error": "…"}`) as a refusal.
fn refusal(status: u16, body: &[u8]) -> TelephonyError {
    let message = serde_json::from_slice::<ErrorJson>(body)
        .ok()
        .and_then(|e| match e.error {
            Some(serde_json::Value::String(s)) => Some(s),
            Some(other) => Some(other.to_string()),
            None => e.message,
        })
        .unwrap_or_else(|| String::from_utf8_lossy(body).chars().take(200).collect());
    TelephonyError::Refused {
        provider: PROVIDER,
        status,
        code: Some(status.to_string()),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_ids_and_uuids_have_plivo_shapes() {
        assert!(is_auth_id("MAXXXXXXXXXXXXXXXXXX"));
        assert!(is_auth_id("SA0123456789ABCDEFGH"));
        assert!(!is_auth_id("MA0123456789abcdefgh"));
        assert!(!is_auth_id("XA0123456789ABCDEFGH"));
        assert!(!is_auth_id("MA0123456789ABCDEFG"));
        assert!(is_uuid_like("0d2f8d1c-7b5e-4c1a-9f00-123456789abc"));
        assert!(!is_uuid_like("../../Account"));
        assert_eq!(plivo_number("+14155550100"), "14155550100");
    }

    #[test]
    fn refusals_carry_plivos_message() {
        let e = refusal(400, br#"{"api_id":"x","error":"invalid to number"}"#);
        assert!(e.to_string().contains("invalid to number"), "{e}");
        assert!(e.is_client_error());
        let e = refusal(401, b"Unauthorized");
        assert!(e.to_string().contains("Unauthorized"));
    }
}
