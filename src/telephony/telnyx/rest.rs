//! A client for Telnyx's Call Control API (`https://api.telnyx.com/v2`, `Authorization: Bearer
//! <API key>`): dial an outbound call that streams to our media socket, hang it up, transfer it.
//! The base URL is configurable (`[telephony.telnyx] base_url`) so tests and the load generator
//! talk to the fake in `sim::telnyx`.
//!
//! Errors come back as `{"errors": [{"code": "10015", "title": …, "detail": …}]}`; the first one
//! is passed on typed, so a bad number reaches the API caller in Telnyx's words.

use serde::{Deserialize, Serialize};

use crate::telephony::provider::TelephonyError;

/// Telnyx's "call has already ended" (a 422 on call commands).
pub const CODE_CALL_ENDED: &str = "90018";

const PROVIDER: &str = "Telnyx";

/// `POST /v2/calls`: what voxbridge sends (field names are Telnyx's).
#[derive(Debug, Clone, Serialize)]
pub struct Dial<'a> {
    /// The Call Control Application the call belongs to.
    pub connection_id: &'a str,
    pub to: &'a str,
    pub from: &'a str,
    pub stream_url: &'a str,
    /// Only the callee's audio comes to us (`inbound_track`).
    pub stream_track: &'static str,
    /// `rtp`: without it Telnyx expects MP3 files and silently drops the frames we send back.
    pub stream_bidirectional_mode: &'static str,
    pub stream_bidirectional_codec: &'static str,
    /// Base64 of our call id and stream token: the stream's `start` echoes it, and Call Control
    /// dials have no stream parameters of their own.
    pub client_state: &'a str,
    /// Where the call's events (`call.initiated`, `call.answered`, `call.hangup`, …) go.
    pub webhook_url: &'a str,
    pub webhook_url_method: &'static str,
    pub timeout_secs: u32,
    pub time_limit_secs: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub answering_machine_detection: Option<&'static str>,
}

#[derive(Deserialize)]
struct Envelope<T> {
    data: T,
}

#[derive(Deserialize)]
struct DialedCall {
    call_control_id: String,
}

#[derive(Deserialize)]
struct ErrorBody {
    #[serde(default)]
    errors: Vec<ErrorItem>,
}

#[derive(Deserialize)]
struct ErrorItem {
    #[serde(default)]
    code: Option<serde_json::Value>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    detail: Option<String>,
}

/// The Call Control client. Cheap to clone (the connection pool is shared).
#[derive(Debug, Clone)]
pub struct TelnyxRest {
    http: reqwest::Client,
    base_url: String,
}

/// True for a call control id we may put in a URL path (`v3:` + base64url text): anything
/// else could change the path.
pub fn is_call_control_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 256
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b':' | b'-' | b'_' | b'='))
}

impl TelnyxRest {
    /// A client sharing an existing connection pool, for the API at `base_url`
    /// (`https://api.telnyx.com`).
    pub fn with_client(http: reqwest::Client, base_url: &str) -> Self {
        Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
        }
    }

    /// Dials a call; answers its `call_control_id`.
    pub async fn dial(&self, api_key: &str, dial: &Dial<'_>) -> Result<String, TelephonyError> {
        let response = self
            .http
            .post(format!("{}/v2/calls", self.base_url))
            .bearer_auth(api_key)
            .json(dial)
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status();
        let body = response.bytes().await.map_err(unreachable)?;
        if !status.is_success() {
            return Err(refused(status.as_u16(), &body));
        }
        serde_json::from_slice::<Envelope<DialedCall>>(&body)
            .map(|e| e.data.call_control_id)
            .map_err(|e| TelephonyError::Unreachable {
                provider: PROVIDER,
                message: format!("unreadable dial answer: {e}"),
            })
    }

    /// Ends a call. A call that has already ended (422 with code 90018, or 404) is no error.
    pub async fn hang_up(
        &self,
        api_key: &str,
        call_control_id: &str,
    ) -> Result<(), TelephonyError> {
        match self
            .action(api_key, call_control_id, "hangup", &serde_json::json!({}))
            .await
        {
            Err(TelephonyError::Refused { status: 404, .. }) => Ok(()),
            Err(TelephonyError::Refused {
                status: 422, code, ..
            }) if code.as_deref() == Some(CODE_CALL_ENDED) => Ok(()),
            other => other,
        }
    }

    /// Transfers a live call to `to`, showing `from` as the caller (our number on the call).
    pub async fn transfer(
        &self,
        api_key: &str,
        call_control_id: &str,
        to: &str,
        from: Option<&str>,
    ) -> Result<(), TelephonyError> {
        let mut body = serde_json::json!({ "to": to });
        if let Some(from) = from {
            body["from"] = serde_json::Value::from(from);
        }
        self.action(api_key, call_control_id, "transfer", &body)
            .await
    }

    async fn action(
        &self,
        api_key: &str,
        call_control_id: &str,
        action: &str,
        body: &serde_json::Value,
    ) -> Result<(), TelephonyError> {
        if !is_call_control_id(call_control_id) {
            return Err(TelephonyError::Invalid {
                provider: PROVIDER,
                message: format!("{call_control_id:?} is not a call control id"),
            });
        }
        let response = self
            .http
            .post(format!(
                "{}/v2/calls/{call_control_id}/actions/{action}",
                self.base_url
            ))
            .bearer_auth(api_key)
            .json(body)
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.bytes().await.map_err(unreachable)?;
        Err(refused(status.as_u16(), &body))
    }
}

fn unreachable(e: reqwest::Error) -> TelephonyError {
    TelephonyError::Unreachable {
        provider: PROVIDER,
        message: e.to_string(),
    }
}

/// Telnyx's error body → a typed refusal (its first error's code and words).
pub fn refused(status: u16, body: &[u8]) -> TelephonyError {
    let first = serde_json::from_slice::<ErrorBody>(body)
        .ok()
        .and_then(|b| b.errors.into_iter().next());
    match first {
        Some(e) => TelephonyError::Refused {
            provider: PROVIDER,
            status,
            // Telnyx writes codes as strings; accept numbers too.
            code: e.code.map(|c| match c {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            }),
            message: match (e.title, e.detail) {
                (Some(t), Some(d)) => format!("{t}: {d}"),
                (t, d) => t.or(d).unwrap_or_else(|| format!("HTTP {status}")),
            },
        },
        None => {
            let text = String::from_utf8_lossy(body);
            let excerpt: String = text.chars().take(200).collect();
            TelephonyError::Refused {
                provider: PROVIDER,
                status,
                code: None,
                message: if excerpt.trim().is_empty() {
                    format!("HTTP {status}")
                } else {
                    excerpt
                },
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_typed() {
        let e = refused(
            422,
            br#"{"errors":[{"code":"90018","title":"Call has already ended","detail":"This call is no longer active and can't receive commands."}]}"#,
        );
        assert_eq!(e.code(), Some(CODE_CALL_ENDED));
        assert!(e.is_client_error());
        assert!(e.to_string().contains("already ended"), "{e}");
        let e = refused(
            401,
            br#"{"errors":[{"code":10009,"title":"Authentication failed"}]}"#,
        );
        assert_eq!(e.code(), Some("10009"));
        let e = refused(502, b"<html>bad gateway</html>");
        assert_eq!(e.code(), None);
        assert!(!e.is_client_error());
    }

    #[test]
    fn dial_carries_the_bidirectional_fields() {
        let dial = Dial {
            connection_id: "1494404757140276705",
            to: "+15550100",
            from: "+15550199",
            stream_url: "wss://a/telnyx/media",
            stream_track: "inbound_track",
            stream_bidirectional_mode: "rtp",
            stream_bidirectional_codec: "PCMU",
            client_state: "Y2FsbF9pZD0x",
            webhook_url: "https://a/telnyx/status?call_id=1",
            webhook_url_method: "POST",
            timeout_secs: 60,
            time_limit_secs: 3660,
            answering_machine_detection: None,
        };
        let json = serde_json::to_value(&dial).unwrap();
        assert_eq!(json["stream_bidirectional_mode"], "rtp");
        assert_eq!(json["stream_bidirectional_codec"], "PCMU");
        assert!(json.get("answering_machine_detection").is_none());
    }

    #[tokio::test]
    async fn malformed_ids_never_reach_the_network() {
        let rest = TelnyxRest::with_client(reqwest::Client::new(), "http://127.0.0.1:9");
        let err = rest.hang_up("KEY", "v3:abc/../../x").await;
        assert!(matches!(err, Err(TelephonyError::Invalid { .. })));
        assert!(is_call_control_id(
            "v3:MdI91X4lWFEs7IgbBEOT9M4AigoY08M0WWZFISt1Yw2axZ_IiE4pqg"
        ));
    }
}
