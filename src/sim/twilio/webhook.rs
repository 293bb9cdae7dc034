//! The requests the fake Twilio makes to the application: status callbacks, voice webhooks
//! (inbound calls, `Url` fetches) and answering-machine detection's verdicts, form-encoded and
//! signed with the account's Auth Token over the exact URL, as Twilio does. Every one is
//! recorded, answer included, for test assertions.

use std::time::Duration;

use reqwest::header::CONTENT_TYPE;

use crate::telephony::twilio::signature::{SIGNATURE_HEADER, compute_signature};

/// How long Twilio waits for a webhook answer.
const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(15);

/// What a webhook was for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WebhookKind {
    /// A call-progress `StatusCallback`.
    Status,
    /// A voice URL asked for TwiML (an inbound call, a call's `Url`, a `<Redirect>`).
    Voice,
    /// The verdict of asynchronous answering-machine detection (`AsyncAmdStatusCallback`).
    Amd,
}

/// One webhook the fake sent, and what came back.
#[derive(Debug, Clone)]
pub struct SentWebhook {
    pub kind: WebhookKind,
    pub call_sid: String,
    /// `POST` or `GET`.
    pub method: &'static str,
    /// The URL requested (for GET, with the parameters in its query).
    pub url: String,
    pub params: Vec<(String, String)>,
    pub signature: String,
    /// The HTTP status, if an answer came.
    pub status: Option<u16>,
    /// The answer's `Content-Type`.
    pub content_type: Option<String>,
    pub body: String,
    /// Why no answer came.
    pub error: Option<String>,
}

impl SentWebhook {
    /// The value of a form parameter.
    pub fn param(&self, name: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends one signed webhook and records it.
pub async fn send(
    http: &reqwest::Client,
    kind: WebhookKind,
    call_sid: &str,
    get: bool,
    url: &str,
    auth_token: &str,
    params: Vec<(String, String)>,
) -> SentWebhook {
    let (method, full_url, signature, request) = if get {
        let query = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter())
            .finish();
        let separator = if url.contains('?') { '&' } else { '?' };
        let full = format!("{url}{separator}{query}");
        let signature = compute_signature::<&str, &str>(auth_token, &full, &[]);
        let request = http.get(&full);
        ("GET", full, signature, request)
    } else {
        let signature = compute_signature(auth_token, url, &params);
        let request = http.post(url).form(&params);
        ("POST", url.to_owned(), signature, request)
    };
    let mut sent = SentWebhook {
        kind,
        call_sid: call_sid.to_owned(),
        method,
        url: full_url,
        params,
        signature: signature.clone(),
        status: None,
        content_type: None,
        body: String::new(),
        error: None,
    };
    let response = request
        .header(SIGNATURE_HEADER, signature)
        .header(reqwest::header::USER_AGENT, "TwilioProxy/1.1")
        .timeout(WEBHOOK_TIMEOUT)
        .send()
        .await;
    match response {
        Ok(response) => {
            sent.status = Some(response.status().as_u16());
            sent.content_type = response
                .headers()
                .get(CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            match response.text().await {
                Ok(body) => sent.body = body,
                Err(e) => sent.error = Some(format!("reading the answer: {e}")),
            }
        }
        Err(e) => sent.error = Some(e.to_string()),
    }
    sent
}
