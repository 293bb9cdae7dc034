//! A client for Twilio's Calls REST API: place an outbound call with inline TwiML, hang it up,
//! redirect it to new TwiML (a transfer). The base URL is configurable (`twilio.base_url`) so
//! tests and the load generator talk to the fake in `sim::twilio`.
//!
//! Twilio's errors come back typed, with Twilio's own `code` and `message`, so the REST layer can
//! pass "The 'To' number … is not a valid phone number." straight back to the API caller.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;

use crate::telephony::{CallStatus, StatusCallbackEvent, Trunk, is_sid};

/// Twilio's "resource not found": the call is gone.
pub const CODE_NOT_FOUND: u32 = 20404;
/// Twilio's "call is not in-progress": it already ended.
pub const CODE_CALL_NOT_IN_PROGRESS: u32 = 21220;

/// The account a request is made for (Basic auth: Account SID and Auth Token).
#[derive(Clone, PartialEq, Eq)]
pub struct TwilioCredentials {
    pub account_sid: String,
    pub auth_token: String,
}

impl fmt::Debug for TwilioCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TwilioCredentials")
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"<redacted>")
            .finish()
    }
}

impl From<&Trunk> for TwilioCredentials {
    fn from(trunk: &Trunk) -> Self {
        Self {
            account_sid: trunk.account_sid.clone(),
            auth_token: trunk.auth_token.clone(),
        }
    }
}

/// An outbound call to place.
#[derive(Debug, Clone, Copy)]
pub struct CreateCall<'a> {
    /// E.164 number to call.
    pub to: &'a str,
    /// Caller ID: a number of the account (E.164).
    pub from: &'a str,
    /// Inline TwiML executed when the callee answers (see [`super::twiml`]).
    pub twiml: &'a str,
    /// Where call-progress webhooks go.
    pub status_callback: Option<&'a str>,
    /// Which progress events are reported (Twilio's default is only `completed`).
    pub status_callback_events: &'a [StatusCallbackEvent],
    /// Seconds to let it ring (Twilio: default 60, at most 600).
    pub timeout_secs: Option<u32>,
    /// Longest call, in seconds.
    pub time_limit_secs: Option<u32>,
    /// With a URL: asynchronous answering-machine detection that waits for the end of a
    /// machine's greeting (`DetectMessageEnd`), its verdict posted there. The call's TwiML runs
    /// at once, so a person who answers is not kept waiting for the detection.
    pub amd_callback: Option<&'a str>,
}

/// The parts of Twilio's Call resource voxbridge uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallResource {
    /// `CA…`.
    pub sid: String,
    pub status: CallStatus,
    pub account_sid: String,
    pub to: String,
    pub from: String,
    /// `outbound-api` for calls placed over REST.
    pub direction: String,
}

/// What a hang-up found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HangUp {
    /// The call was live and is now completed.
    Ended(CallResource),
    /// The call had already ended (Twilio answered 404/20404): nothing to do.
    AlreadyEnded,
}

/// A Twilio request that did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum TwilioError {
    /// Twilio refused the request (4xx/5xx) and said why.
    #[error("Twilio refused the request (HTTP {status}{}): {message}", code.map(|c| format!(", code {c}")).unwrap_or_default())]
    Api {
        /// The HTTP status.
        status: u16,
        /// Twilio's error code (`21211` invalid To, `20003` authentication, …).
        code: Option<u32>,
        /// Twilio's message, meant for people.
        message: String,
        more_info: Option<String>,
    },
    /// Twilio could not be reached or the connection broke.
    #[error("Twilio is unreachable: {0}")]
    Transport(#[source] reqwest::Error),
    /// Twilio answered something this client cannot read.
    #[error("unexpected answer from Twilio: {0}")]
    InvalidResponse(String),
    /// The request was refused before sending (a malformed SID would change the URL path).
    #[error("invalid Twilio request: {0}")]
    InvalidRequest(String),
}

impl TwilioError {
    /// Twilio's error code, if Twilio gave one.
    pub fn code(&self) -> Option<u32> {
        match self {
            TwilioError::Api { code, .. } => *code,
            _ => None,
        }
    }

    /// The HTTP status Twilio answered with, if it answered.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            TwilioError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// True when the request itself was wrong (a bad number, bad credentials): retrying the same
    /// request cannot help, and the message is worth showing to whoever made it.
    pub fn is_client_error(&self) -> bool {
        matches!(self, TwilioError::Api { status, .. } if (400..500).contains(status))
            || matches!(self, TwilioError::InvalidRequest(_))
    }

    fn is_gone(&self) -> bool {
        matches!(self, TwilioError::Api { status: 404, .. })
            || matches!(
                self.code(),
                Some(CODE_NOT_FOUND | CODE_CALL_NOT_IN_PROGRESS)
            )
    }
}

/// The Calls API client. Cheap to clone (the connection pool is shared).
#[derive(Debug, Clone)]
pub struct TwilioRest {
    http: reqwest::Client,
    base_url: String,
}

/// The Call JSON as Twilio sends it (only the fields used).
#[derive(Deserialize)]
struct CallJson {
    sid: String,
    status: String,
    #[serde(default)]
    account_sid: Option<String>,
    #[serde(default)]
    to: Option<String>,
    #[serde(default)]
    from: Option<String>,
    #[serde(default)]
    direction: Option<String>,
}

/// Twilio's error JSON.
#[derive(Deserialize)]
struct ErrorJson {
    #[serde(default)]
    code: Option<u32>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    more_info: Option<String>,
}

impl TwilioRest {
    /// A client for the API at `base_url` (`https://api.twilio.com` in production).
    pub fn new(base_url: &str) -> Self {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(15))
            .build()
            .unwrap_or_else(|_| reqwest::Client::new());
        Self::with_client(http, base_url)
    }

    /// A client sharing an existing connection pool.
    pub fn with_client(http: reqwest::Client, base_url: &str) -> Self {
        Self {
            http,
            base_url: base_url.trim_end_matches('/').to_owned(),
        }
    }

    /// Places an outbound call (`POST /2010-04-01/Accounts/{sid}/Calls.json`). Twilio answers
    /// at once with a queued call; its progress arrives at `status_callback`.
    pub async fn create_call(
        &self,
        account: &TwilioCredentials,
        call: &CreateCall<'_>,
    ) -> Result<CallResource, TwilioError> {
        let url = format!("{}/Calls.json", self.account_url(account)?);
        let mut form: Vec<(&str, String)> = vec![
            ("To", call.to.to_owned()),
            ("From", call.from.to_owned()),
            ("Twiml", call.twiml.to_owned()),
        ];
        if let Some(callback) = call.status_callback {
            form.push(("StatusCallback", callback.to_owned()));
            form.push(("StatusCallbackMethod", "POST".to_owned()));
            // One key per value: Twilio does not understand a comma-joined list.
            for event in call.status_callback_events {
                form.push(("StatusCallbackEvent", event.as_str().to_owned()));
            }
        }
        if let Some(secs) = call.timeout_secs {
            form.push(("Timeout", secs.to_string()));
        }
        if let Some(secs) = call.time_limit_secs {
            form.push(("TimeLimit", secs.to_string()));
        }
        if let Some(callback) = call.amd_callback {
            form.push(("MachineDetection", "DetectMessageEnd".to_owned()));
            form.push(("AsyncAmd", "true".to_owned()));
            form.push(("AsyncAmdStatusCallback", callback.to_owned()));
            form.push(("AsyncAmdStatusCallbackMethod", "POST".to_owned()));
        }
        self.post(account, &url, &form).await
    }

    /// Hangs up a call (`Status=completed`). A call that already ended is not an error.
    pub async fn hang_up(
        &self,
        account: &TwilioCredentials,
        call_sid: &str,
    ) -> Result<HangUp, TwilioError> {
        let url = self.call_url(account, call_sid)?;
        match self
            .post(account, &url, &[("Status", "completed".to_owned())])
            .await
        {
            Ok(call) => Ok(HangUp::Ended(call)),
            Err(e) if e.is_gone() => Ok(HangUp::AlreadyEnded),
            Err(e) => Err(e),
        }
    }

    /// Replaces what a live call is doing with `twiml` (e.g. a `<Dial>` to transfer it). The
    /// media stream of the call ends.
    pub async fn redirect(
        &self,
        account: &TwilioCredentials,
        call_sid: &str,
        twiml: &str,
    ) -> Result<CallResource, TwilioError> {
        let url = self.call_url(account, call_sid)?;
        self.post(account, &url, &[("Twiml", twiml.to_owned())])
            .await
    }

    /// Reads a call's current state.
    pub async fn fetch_call(
        &self,
        account: &TwilioCredentials,
        call_sid: &str,
    ) -> Result<CallResource, TwilioError> {
        let url = self.call_url(account, call_sid)?;
        let response = self
            .http
            .get(&url)
            .basic_auth(&account.account_sid, Some(&account.auth_token))
            .send()
            .await
            .map_err(TwilioError::Transport)?;
        read_call(response).await
    }

    fn account_url(&self, account: &TwilioCredentials) -> Result<String, TwilioError> {
        if !is_sid("AC", &account.account_sid) {
            return Err(TwilioError::InvalidRequest(format!(
                "{:?} is not a Twilio Account SID",
                account.account_sid
            )));
        }
        Ok(format!(
            "{}/2010-04-01/Accounts/{}",
            self.base_url, account.account_sid
        ))
    }

    fn call_url(&self, account: &TwilioCredentials, call_sid: &str) -> Result<String, TwilioError> {
        if !is_sid("CA", call_sid) {
            return Err(TwilioError::InvalidRequest(format!(
                "{call_sid:?} is not a Twilio Call SID"
            )));
        }
        Ok(format!(
            "{}/Calls/{call_sid}.json",
            self.account_url(account)?
        ))
    }

    async fn post(
        &self,
        account: &TwilioCredentials,
        url: &str,
        form: &[(&str, String)],
    ) -> Result<CallResource, TwilioError> {
        let response = self
            .http
            .post(url)
            .basic_auth(&account.account_sid, Some(&account.auth_token))
            .form(form)
            .send()
            .await
            .map_err(TwilioError::Transport)?;
        read_call(response).await
    }
}

async fn read_call(response: reqwest::Response) -> Result<CallResource, TwilioError> {
    let status = response.status();
    let body = response.bytes().await.map_err(TwilioError::Transport)?;
    if !status.is_success() {
        return Err(api_error(status.as_u16(), &body));
    }
    let call: CallJson = serde_json::from_slice(&body)
        .map_err(|e| TwilioError::InvalidResponse(format!("call JSON: {e}")))?;
    let parsed_status = CallStatus::parse(&call.status).ok_or_else(|| {
        TwilioError::InvalidResponse(format!("unknown call status {:?}", call.status))
    })?;
    Ok(CallResource {
        sid: call.sid,
        status: parsed_status,
        account_sid: call.account_sid.unwrap_or_default(),
        to: call.to.unwrap_or_default(),
        from: call.from.unwrap_or_default(),
        direction: call.direction.unwrap_or_default(),
    })
}

fn api_error(status: u16, body: &[u8]) -> TwilioError {
    match serde_json::from_slice::<ErrorJson>(body) {
        Ok(e) => TwilioError::Api {
            status,
            code: e.code,
            message: e
                .message
                .unwrap_or_else(|| format!("HTTP {status} without a message")),
            more_info: e.more_info,
        },
        // A proxy or load balancer error page: keep a short, printable excerpt.
        Err(_) => {
            let text = String::from_utf8_lossy(body);
            let excerpt: String = text.chars().take(200).collect();
            TwilioError::Api {
                status,
                code: None,
                message: if excerpt.trim().is_empty() {
                    format!("HTTP {status}")
                } else {
                    excerpt
                },
                more_info: None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_json_is_typed() {
        let e = api_error(
            400,
            br#"{"code": 21211, "message": "The 'To' number +1555 is not a valid phone number.",
                 "more_info": "https://www.twilio.com/docs/errors/21211", "status": 400}"#,
        );
        assert_eq!(e.code(), Some(21211));
        assert_eq!(e.http_status(), Some(400));
        assert!(e.is_client_error());
        assert!(e.to_string().contains("not a valid phone number"), "{e}");
        let html = api_error(502, b"<html>Bad gateway</html>");
        assert_eq!(html.code(), None);
        assert!(!html.is_client_error());
        assert!(api_error(404, b"").is_gone());
        assert!(api_error(400, br#"{"code": 21220, "message": "not in progress"}"#).is_gone());
    }

    #[test]
    fn credentials_hide_the_token() {
        let c = TwilioCredentials {
            account_sid: "AC00000000000000000000000000000001".into(),
            auth_token: "very-secret-token".into(),
        };
        assert!(!format!("{c:?}").contains("very-secret"));
    }

    #[tokio::test]
    async fn malformed_sids_never_reach_the_network() {
        let client = TwilioRest::new("http://127.0.0.1:9");
        let account = TwilioCredentials {
            account_sid: "AC1/../../x".into(),
            auth_token: "t".into(),
        };
        let err = client
            .hang_up(&account, "CA00000000000000000000000000000001")
            .await;
        assert!(matches!(err, Err(TwilioError::InvalidRequest(_))));
        let account = TwilioCredentials {
            account_sid: "AC00000000000000000000000000000001".into(),
            auth_token: "t".into(),
        };
        let err = client.hang_up(&account, "CA1.json?x=").await;
        assert!(matches!(err, Err(TwilioError::InvalidRequest(_))));
    }
}
