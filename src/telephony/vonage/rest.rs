//! A client for Vonage's Voice API (`https://api.nexmo.com/v1/calls`): place a call with the
//! stream's NCCO inline, hang it up and transfer it (`PUT /v1/calls/{uuid}`). Each request
//! carries a fresh application JWT (RS256, signed with the application's private key). The base
//! URL is configurable (`[telephony.vonage] base_url`) so tests and the load generator talk to
//! the fake in `sim::vonage`.
//!
//! Errors come back as RFC 7807 problems (`{"type", "title", "detail", "invalid_parameters"}`)
//! and are passed on typed, the problem's `type` as the code.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::jwt::ApplicationKey;
use crate::telephony::provider::TelephonyError;

const PROVIDER: &str = "Vonage";

/// The application a request is made for.
pub struct Application<'a> {
    pub id: &'a str,
    pub key: &'a ApplicationKey,
}

/// `POST /v1/calls`: what voxbridge sends (field names are Vonage's).
#[derive(Debug, Clone, Serialize)]
pub struct CreateCall {
    pub to: Vec<Value>,
    pub from: Value,
    pub ncco: Value,
    pub event_url: Vec<String>,
    pub event_method: &'static str,
    /// Seconds to let it ring (Vonage: 1–120).
    pub ringing_timer: u32,
    /// Longest call, in seconds (Vonage: 1–7200).
    pub length_timer: u32,
}

#[derive(Deserialize)]
struct Created {
    uuid: String,
}

#[derive(Deserialize)]
struct Problem {
    #[serde(default, rename = "type")]
    kind: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    detail: Option<String>,
}

/// The Voice API client. Cheap to clone (the connection pool is shared).
#[derive(Debug, Clone)]
pub struct VonageRest {
    http: reqwest::Client,
    base_url: String,
}

/// True for a call uuid we may put in a URL path.
pub fn is_call_uuid(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

impl VonageRest {
    /// A client sharing an existing connection pool, for the API at `base_url`
    /// (`https://api.nexmo.com`).
    pub fn with_client(http: reqwest::Client, base_url: &str) -> Self {
        Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
        }
    }

    /// Places a call; answers its uuid.
    pub async fn create_call(
        &self,
        app: &Application<'_>,
        call: &CreateCall,
    ) -> Result<String, TelephonyError> {
        let token = app.key.application_token(app.id, super::now_unix());
        let response = self
            .http
            .post(format!("{}/v1/calls", self.base_url))
            .bearer_auth(token)
            .json(call)
            .send()
            .await
            .map_err(unreachable)?;
        let status = response.status();
        let body = response.bytes().await.map_err(unreachable)?;
        if !status.is_success() {
            return Err(refused(status.as_u16(), &body));
        }
        serde_json::from_slice::<Created>(&body)
            .map(|c| c.uuid)
            .map_err(|e| TelephonyError::Unreachable {
                provider: PROVIDER,
                message: format!("unreadable answer: {e}"),
            })
    }

    /// Ends a call. A call that is gone (404) is no error (the exact answer for a call that has
    /// already ended is unconfirmed; Vonage's SDKs surface a 404 problem).
    pub async fn hang_up(&self, app: &Application<'_>, uuid: &str) -> Result<(), TelephonyError> {
        match self
            .modify(app, uuid, &serde_json::json!({"action": "hangup"}))
            .await
        {
            Err(TelephonyError::Refused { status: 404, .. }) => Ok(()),
            other => other,
        }
    }

    /// Moves a live call to `ncco` (a transfer).
    pub async fn transfer(
        &self,
        app: &Application<'_>,
        uuid: &str,
        ncco: Value,
    ) -> Result<(), TelephonyError> {
        let body = serde_json::json!({
            "action": "transfer",
            "destination": {"type": "ncco", "ncco": ncco},
        });
        self.modify(app, uuid, &body).await
    }

    async fn modify(
        &self,
        app: &Application<'_>,
        uuid: &str,
        body: &Value,
    ) -> Result<(), TelephonyError> {
        if !is_call_uuid(uuid) {
            return Err(TelephonyError::Invalid {
                provider: PROVIDER,
                message: format!("{uuid:?} is not a Vonage call uuid"),
            });
        }
        let token = app.key.application_token(app.id, super::now_unix());
        let response = self
            .http
            .put(format!("{}/v1/calls/{uuid}", self.base_url))
            .bearer_auth(token)
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

/// Vonage's problem body → a typed refusal.
pub fn refused(status: u16, body: &[u8]) -> TelephonyError {
    match serde_json::from_slice::<Problem>(body) {
        Ok(p) if p.title.is_some() || p.detail.is_some() => TelephonyError::Refused {
            provider: PROVIDER,
            status,
            // `https://developer.nexmo.com/api-errors#unprocessable-entity` → its fragment.
            code: p
                .kind
                .map(|k| k.rsplit('#').next().unwrap_or(&k).to_owned()),
            message: match (p.title, p.detail) {
                (Some(t), Some(d)) => format!("{t}: {d}"),
                (t, d) => t.or(d).unwrap_or_default(),
            },
        },
        _ => {
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
    fn problems_are_typed() {
        let e = refused(
            400,
            br#"{"type":"https://developer.nexmo.com/api-errors/voice#validation","title":"Bad Request","detail":"The request failed due to validation errors","invalid_parameters":[{"name":"to[0].number","reason":"must match"}]}"#,
        );
        assert_eq!(e.code(), Some("validation").or(e.code()));
        assert!(e.is_client_error());
        assert!(e.to_string().contains("validation errors"), "{e}");
        let e = refused(503, b"");
        assert!(!e.is_client_error());
    }

    #[tokio::test]
    async fn malformed_uuids_never_reach_the_network() {
        let key = ApplicationKey::from_pem(&ApplicationKey::generate_pem()).unwrap();
        let rest = VonageRest::with_client(reqwest::Client::new(), "http://127.0.0.1:9");
        let app = Application { id: "x", key: &key };
        let err = rest.hang_up(&app, "abc/../x").await;
        assert!(matches!(err, Err(TelephonyError::Invalid { .. })));
        assert!(is_call_uuid("63f61863-4a51-4f6b-86e1-46edebcf9356"));
    }
}
