//! One completion request on the wire, sent again while that is safe.
//!
//! An exchange owns the serialised body (cheap to resend: `Bytes`), the deadlines of the turn
//! and the count of resends. It is used before the stream starts (bad status, connection
//! refused) and by the stream itself while no token has arrived yet (a connection that breaks or
//! errors before its first token). After the first token nothing is resent: the caller may
//! already be hearing the reply.

use std::time::{Duration, SystemTime};

use bytes::Bytes;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
use reqwest::{Response, Url};
use tokio::time::{Instant, sleep, timeout_at};

use super::retry::{self, RetryPolicy};
use super::wire;
use crate::llm::{LlmError, LlmTimeouts};

/// Largest error body read, so a misbehaving server cannot make us buffer a page of HTML forever.
const MAX_ERROR_BODY: usize = 64 * 1024;

/// A failed attempt: what to report if we give up, and whether and when to try again.
#[derive(Debug)]
pub(super) struct Failure {
    pub error: LlmError,
    pub retryable: bool,
    /// The wait the server asked for, if any.
    pub wait: Option<Duration>,
}

impl Failure {
    pub fn retryable(error: LlmError) -> Self {
        Self {
            error,
            retryable: true,
            wait: None,
        }
    }
}

/// The request of one turn and its retry budget.
pub(super) struct Exchange {
    http: reqwest::Client,
    url: Url,
    auth: Option<HeaderValue>,
    body: Bytes,
    retry: RetryPolicy,
    resends: u32,
    timeouts: LlmTimeouts,
    first_token_deadline: Instant,
    total_deadline: Instant,
}

impl Exchange {
    pub fn new(
        http: reqwest::Client,
        url: Url,
        auth: Option<HeaderValue>,
        body: Bytes,
        retry: RetryPolicy,
        timeouts: LlmTimeouts,
    ) -> Self {
        let started = Instant::now();
        Self {
            http,
            url,
            auth,
            body,
            retry,
            resends: 0,
            timeouts,
            first_token_deadline: started + timeouts.first_token,
            total_deadline: started + timeouts.total,
        }
    }

    /// When waiting must stop: the first-token deadline until a token arrives, then the total.
    pub fn deadline(&self, first_token_seen: bool) -> Instant {
        if first_token_seen {
            self.total_deadline
        } else {
            self.first_token_deadline.min(self.total_deadline)
        }
    }

    /// The error for a deadline that passed.
    pub fn timeout_error(&self, first_token_seen: bool) -> LlmError {
        if first_token_seen || self.total_deadline < self.first_token_deadline {
            LlmError::TotalTimeout(millis(self.timeouts.total))
        } else {
            LlmError::FirstTokenTimeout(millis(self.timeouts.first_token))
        }
    }

    /// Sends the request until a 2xx response starts or resending stops being worth it.
    pub async fn open(&mut self) -> Result<Response, LlmError> {
        loop {
            match self.attempt().await {
                Ok(response) => return Ok(response),
                Err(failure) => self.wait_before_resend(failure).await?,
            }
        }
    }

    /// Waits before the next attempt, or gives the failure back as final: not retryable, out of
    /// resends, or a wait that would end after the first-token deadline.
    pub async fn wait_before_resend(&mut self, failure: Failure) -> Result<(), LlmError> {
        if !failure.retryable || self.resends >= self.retry.max_retries {
            return Err(failure.error);
        }
        let wait = failure
            .wait
            .unwrap_or_else(|| self.retry.backoff(self.resends, retry::jitter()));
        if Instant::now() + wait >= self.deadline(false) {
            return Err(failure.error);
        }
        self.resends += 1;
        tracing::warn!(
            error = %failure.error,
            wait_ms = wait.as_millis() as u64,
            resend = self.resends,
            "llm request failed before its first token; resending"
        );
        sleep(wait).await;
        Ok(())
    }

    async fn attempt(&mut self) -> Result<Response, Failure> {
        let deadline = self.deadline(false);
        let mut request = self
            .http
            .post(self.url.clone())
            .header(CONTENT_TYPE, HeaderValue::from_static("application/json"))
            .header(ACCEPT, HeaderValue::from_static("text/event-stream"))
            .body(self.body.clone());
        if let Some(auth) = &self.auth {
            request = request.header(AUTHORIZATION, auth.clone());
        }
        let response = match timeout_at(deadline, request.send()).await {
            Err(_) => {
                return Err(Failure {
                    error: self.timeout_error(false),
                    retryable: false,
                    wait: None,
                });
            }
            Ok(Err(e)) => {
                return Err(Failure {
                    retryable: !e.is_builder(),
                    ..Failure::retryable(LlmError::Unavailable {
                        status: None,
                        message: describe(&e),
                    })
                });
            }
            Ok(Ok(response)) => response,
        };
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let headers = response.headers().clone();
        let wait = retry::retry_after(&headers, SystemTime::now());
        let body = wire::error_body(&read_limited(response, deadline).await);
        let retryable = retry::retryable_status(status.as_u16(), &headers, body.code.as_deref());
        Err(Failure {
            error: status_error(status, &headers, body),
            retryable,
            wait,
        })
    }
}

/// The error a non-2xx status stands for.
fn status_error(
    status: reqwest::StatusCode,
    headers: &HeaderMap,
    body: wire::ErrorBody,
) -> LlmError {
    let mut message = match (body.message.is_empty(), body.kind) {
        (false, _) => body.message,
        (true, Some(kind)) => kind,
        (true, None) => status.canonical_reason().unwrap_or("error").to_owned(),
    };
    if let Some(request_id) = headers.get("x-request-id").and_then(|v| v.to_str().ok()) {
        message = format!("{message} (request {request_id})");
    }
    let code = status.as_u16();
    match code {
        401 | 403 => LlmError::Unauthorized {
            status: code,
            message,
        },
        429 if body.code.as_deref() == Some("insufficient_quota") => LlmError::Rejected {
            status: code,
            message,
        },
        429 => LlmError::RateLimited { message },
        408 | 409 | 500.. => LlmError::Unavailable {
            status: Some(code),
            message,
        },
        _ => LlmError::Rejected {
            status: code,
            message,
        },
    }
}

/// The start of an error body, within the deadline; whatever arrived if it breaks.
async fn read_limited(mut response: Response, deadline: Instant) -> Vec<u8> {
    let mut body = Vec::new();
    while body.len() < MAX_ERROR_BODY {
        match timeout_at(deadline, response.chunk()).await {
            Ok(Ok(Some(bytes))) => body.extend_from_slice(&bytes),
            _ => break,
        }
    }
    body.truncate(MAX_ERROR_BODY);
    body
}

/// A reqwest error with its causes (`error sending request: connection refused`).
pub(super) fn describe(error: &reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
