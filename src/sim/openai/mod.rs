//! A fake OpenAI-compatible Chat Completions server: `POST /v1/chat/completions`, so a client's
//! base URL is `http://host:port/v1` exactly as for the real API.
//!
//! It checks the `Authorization: Bearer` key and the request body the way OpenAI does (see
//! [`validate`]), answers from a [`Script`] (the built-in one makes a usable voice demo), and
//! streams the reply in OpenAI's chunk sequence. A request with a `response_format` of
//! `json_schema` (Structured Outputs) or `json_object` is answered with JSON instead, valid
//! against its schema and filled from the conversation (the script's `extract` section). Tests inject one-shot [`Fault`]s (429, 500,
//! mid-stream error, cut connection...) and lasting [`Quirks`] (Ollama, llama.cpp, proxies) and
//! read back what the fake received through an [`OpenAiFakeHandle`], including whether a client
//! hung up on a stream before its end.
//!
//! ```no_run
//! # async fn demo() {
//! use voxbridge::sim::openai::OpenAiFake;
//! let (router, handle) = OpenAiFake::new().api_key("sk-test").build();
//! let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
//! let base_url = format!("http://{}/v1", listener.local_addr().unwrap());
//! tokio::spawn(async move { axum::serve(listener, router).await });
//! # let _ = (base_url, handle);
//! # }
//! ```

mod faults;
mod ordered;
mod render;
mod response_format;
mod script;
mod structured;
mod transcript;
pub mod validate;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, PoisonError};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, State};
use axum::http::header::{AUTHORIZATION, CONTENT_TYPE};
use axum::http::{Extensions, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use bytes::Bytes;
use serde_json::{Value, json};
use tokio::sync::watch;

pub use faults::{Fault, Fragments, HttpFault, Quirks, UsageMode};
pub use script::{
    Capture, Extract, MessagePick, Pattern, Reply, ReplySpec, Rule, Script, ScriptError,
    ScriptedCall, ToolCallSpec, When,
};
pub use validate::{JsonSchemaFormat, ResponseFormat};

use crate::sim::Latency;
use render::{Action, Completion, Shape};
use validate::ApiError;

/// The key the fake expects unless told otherwise.
pub const DEFAULT_API_KEY: &str = "sk-sim-openai";
/// How many received requests the handle keeps (the oldest are forgotten), so a long-running
/// `voxbridge sim` does not grow without bound.
pub const RECORDED_REQUESTS: usize = 512;

/// Which keys are accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
enum KeyCheck {
    Exact(String),
    AnyNonEmpty,
}

/// A fake server being configured.
#[derive(Debug, Clone)]
pub struct OpenAiFake {
    script: Script,
    key: KeyCheck,
    models: Option<Vec<String>>,
    shape: Shape,
}

impl Default for OpenAiFake {
    fn default() -> Self {
        Self::new()
    }
}

impl OpenAiFake {
    /// The built-in script, no latency, key [`DEFAULT_API_KEY`], any model, text in pieces of
    /// 6 characters, tool arguments in fragments of 7 bytes.
    pub fn new() -> Self {
        Self {
            script: Script::builtin(),
            key: KeyCheck::Exact(DEFAULT_API_KEY.to_owned()),
            models: None,
            shape: Shape {
                text_chunk_chars: 6,
                fragments: Fragments::default(),
                quirks: Quirks::default(),
                latency: Latency::NONE,
            },
        }
    }

    #[must_use]
    pub fn script(mut self, script: Script) -> Self {
        self.script = script;
        self
    }

    /// `first_byte` delays the whole answer (headers included); `per_chunk` paces the model's
    /// output chunks.
    #[must_use]
    pub fn latency(mut self, latency: Latency) -> Self {
        self.shape.latency = latency;
        self
    }

    /// The only key accepted.
    #[must_use]
    pub fn api_key(mut self, key: impl Into<String>) -> Self {
        self.key = KeyCheck::Exact(key.into());
        self
    }

    /// Accepts any non-empty Bearer key (a missing or empty one is still refused).
    #[must_use]
    pub fn any_api_key(mut self) -> Self {
        self.key = KeyCheck::AnyNonEmpty;
        self
    }

    /// Only these models exist; others get OpenAI's 404 `model_not_found`.
    #[must_use]
    pub fn models(mut self, models: &[&str]) -> Self {
        self.models = Some(models.iter().map(|m| m.to_string()).collect());
        self
    }

    #[must_use]
    pub fn text_chunk_chars(mut self, chars: usize) -> Self {
        self.shape.text_chunk_chars = chars.max(1);
        self
    }

    #[must_use]
    pub fn argument_fragments(mut self, fragments: Fragments) -> Self {
        self.shape.fragments = fragments;
        self
    }

    #[must_use]
    pub fn quirks(mut self, quirks: Quirks) -> Self {
        self.shape.quirks = quirks;
        self
    }

    /// The router (serving `POST /v1/chat/completions`) and the handle to steer and inspect it.
    pub fn build(self) -> (Router, OpenAiFakeHandle) {
        let (disconnects, _) = watch::channel(0);
        let shared = Arc::new(Shared {
            script: self.script,
            key: self.key,
            models: self.models,
            shape: Mutex::new(self.shape),
            faults: Mutex::new(VecDeque::new()),
            requests: Mutex::new(VecDeque::new()),
            completed: Mutex::new(0),
            disconnects,
        });
        let router = Router::new()
            .route("/v1/chat/completions", post(chat_completions))
            .with_state(shared.clone());
        (router, OpenAiFakeHandle { shared })
    }
}

/// A request as the fake received it, and what it answered.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedRequest {
    pub authorization: Option<String>,
    /// The JSON body (`null` if it was not JSON).
    pub body: Value,
    /// The client's address, when the server was started with connect info.
    pub peer: Option<SocketAddr>,
    /// The status answered.
    pub status: u16,
}

/// Steers and inspects a running fake.
#[derive(Clone)]
pub struct OpenAiFakeHandle {
    shared: Arc<Shared>,
}

impl OpenAiFakeHandle {
    /// Queues a fault for the next request that passes authentication and validation.
    pub fn push_fault(&self, fault: Fault) {
        lock(&self.shared.faults).push_back(fault);
    }

    /// Replaces the quirks of every following response.
    pub fn set_quirks(&self, quirks: Quirks) {
        lock(&self.shared.shape).quirks = quirks;
    }

    /// Replaces the latency of every following response.
    pub fn set_latency(&self, latency: Latency) {
        lock(&self.shared.shape).latency = latency;
    }

    /// The requests received so far (the last [`RECORDED_REQUESTS`]), oldest first.
    pub fn requests(&self) -> Vec<ReceivedRequest> {
        lock(&self.shared.requests).iter().cloned().collect()
    }

    /// Streams sent to their end.
    pub fn completed_streams(&self) -> usize {
        *lock(&self.shared.completed)
    }

    /// Streams the client abandoned (closed the connection) before their end.
    pub fn client_disconnects(&self) -> usize {
        *self.shared.disconnects.borrow()
    }

    /// Resolves once at least `count` streams have been abandoned by their client.
    pub async fn wait_for_client_disconnects(&self, count: usize) {
        let mut seen = self.shared.disconnects.subscribe();
        // The sender lives in `shared`, which this handle keeps alive: this cannot fail.
        let _ = seen.wait_for(|n| *n >= count).await;
    }
}

struct Shared {
    script: Script,
    key: KeyCheck,
    models: Option<Vec<String>>,
    shape: Mutex<Shape>,
    faults: Mutex<VecDeque<Fault>>,
    requests: Mutex<VecDeque<ReceivedRequest>>,
    completed: Mutex<usize>,
    disconnects: watch::Sender<usize>,
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

async fn chat_completions(
    State(shared): State<Arc<Shared>>,
    extensions: Extensions,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let authorization = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let response = answer(&shared, authorization.as_deref(), &body).await;
    let mut requests = lock(&shared.requests);
    if requests.len() == RECORDED_REQUESTS {
        requests.pop_front();
    }
    requests.push_back(ReceivedRequest {
        authorization,
        body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        peer: extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|info| info.0),
        status: response.status().as_u16(),
    });
    response
}

async fn answer(shared: &Arc<Shared>, authorization: Option<&str>, body: &[u8]) -> Response {
    if let Err(refused) = check_key(&shared.key, authorization) {
        return refused.into_response();
    }
    let request = match validate::validate(body) {
        Ok(request) => request,
        Err(invalid) => return invalid.into_response(),
    };
    if let Some(models) = &shared.models
        && !models.contains(&request.model)
    {
        return ApiError {
            status: StatusCode::NOT_FOUND,
            message: format!(
                "The model `{}` does not exist or you do not have access to it.",
                request.model
            ),
            kind: "invalid_request_error",
            param: None,
            code: Some("model_not_found"),
        }
        .into_response();
    }
    let fault = lock(&shared.faults).pop_front();
    if let Some(Fault::Http(fault)) = &fault {
        return http_fault(fault);
    }
    let shape = lock(&shared.shape).clone();
    let reply = shared.script.reply(&request);
    let completion = Completion::new(&reply, &request);
    if !shape.latency.first_byte.is_zero() {
        crate::sim::precise_timer::sleep(shape.latency.first_byte).await;
    }
    let request_id = format!("req_{}", uuid::Uuid::new_v4().simple());
    if !request.stream {
        return (
            [(HeaderName::from_static("x-request-id"), request_id)],
            axum::Json(completion.whole(&shape.quirks)),
        )
            .into_response();
    }
    let plan = completion.stream_plan(&shape, fault.as_ref());
    let watch = StreamWatch {
        shared: shared.clone(),
        finished: false,
    };
    (
        [
            (
                CONTENT_TYPE,
                HeaderValue::from_static("text/event-stream; charset=utf-8"),
            ),
            (
                HeaderName::from_static("x-request-id"),
                HeaderValue::from_str(&request_id).unwrap_or(HeaderValue::from_static("req_sim")),
            ),
        ],
        Body::from_stream(body_stream(plan, watch)),
    )
        .into_response()
}

/// Plays a planned body: writes, pauses and cuts.
fn body_stream(
    plan: VecDeque<Action>,
    watch: StreamWatch,
) -> impl futures_util::Stream<Item = Result<Bytes, std::io::Error>> {
    futures_util::stream::unfold((plan, watch), |(mut plan, mut watch)| async move {
        loop {
            match plan.pop_front() {
                Some(Action::Send(bytes)) => return Some((Ok(bytes), (plan, watch))),
                Some(Action::Sleep(duration)) => crate::sim::precise_timer::sleep(duration).await,
                Some(Action::Cut) => {
                    watch.finished = true;
                    let cut = std::io::Error::new(
                        std::io::ErrorKind::ConnectionReset,
                        "fault: disconnect",
                    );
                    return Some((Err(cut), (plan, watch)));
                }
                None => {
                    if !watch.finished {
                        watch.finished = true;
                        *lock(&watch.shared.completed) += 1;
                    }
                    return None;
                }
            }
        }
    })
}

/// Notices a stream dropped before its end: the client went away.
struct StreamWatch {
    shared: Arc<Shared>,
    finished: bool,
}

impl Drop for StreamWatch {
    fn drop(&mut self) {
        if !self.finished {
            self.shared.disconnects.send_modify(|n| *n += 1);
        }
    }
}

fn check_key(expected: &KeyCheck, authorization: Option<&str>) -> Result<(), ApiError> {
    let unauthorized = |message: String, code: Option<&'static str>| ApiError {
        status: StatusCode::UNAUTHORIZED,
        message,
        kind: "invalid_request_error",
        param: None,
        code,
    };
    let Some(key) = authorization
        .and_then(|a| a.strip_prefix("Bearer "))
        .map(str::trim)
    else {
        return Err(unauthorized(
            "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're accessing the API from your browser and are prompted for a username and password. You can obtain an API key from https://platform.openai.com/account/api-keys.".to_owned(),
            None,
        ));
    };
    let accepted = match expected {
        KeyCheck::Exact(expected) => key == expected,
        KeyCheck::AnyNonEmpty => !key.is_empty(),
    };
    if accepted {
        return Ok(());
    }
    Err(unauthorized(
        format!(
            "Incorrect API key provided: {}. You can find your API key at https://platform.openai.com/account/api-keys.",
            mask_key(key)
        ),
        Some("invalid_api_key"),
    ))
}

/// `sk-ab*****wxyz`, as OpenAI shows a wrong key.
fn mask_key(key: &str) -> String {
    let chars: Vec<char> = key.chars().collect();
    if chars.len() < 10 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..5].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}{}{tail}", "*".repeat(chars.len() - 9))
}

fn http_fault(fault: &HttpFault) -> Response {
    let status = StatusCode::from_u16(fault.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let body = json!({"error": {
        "message": fault.message,
        "type": fault.kind,
        "param": null,
        "code": fault.code,
    }});
    let mut response = (status, axum::Json(body)).into_response();
    let headers = response.headers_mut();
    if let Some(wait) = fault.retry_after {
        headers.insert("retry-after-ms", HeaderValue::from(wait.as_millis() as u64));
        headers.insert(
            "retry-after",
            HeaderValue::from(wait.as_secs_f64().ceil() as u64),
        );
    }
    if let Some(retry) = fault.should_retry {
        headers.insert(
            "x-should-retry",
            HeaderValue::from_static(if retry { "true" } else { "false" }),
        );
    }
    if fault.status == 429 {
        headers.insert(
            "x-ratelimit-limit-requests",
            HeaderValue::from_static("500"),
        );
        headers.insert(
            "x-ratelimit-remaining-requests",
            HeaderValue::from_static("0"),
        );
        headers.insert(
            "x-ratelimit-reset-requests",
            HeaderValue::from_static("120ms"),
        );
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrong_keys_are_masked_like_openai_does() {
        assert_eq!(mask_key("sk-abcdefghijwxyz"), "sk-ab********wxyz");
        assert_eq!(mask_key("short"), "*****");
    }

    #[test]
    fn missing_and_wrong_keys_are_refused() {
        let exact = KeyCheck::Exact("sk-right".into());
        assert!(check_key(&exact, Some("Bearer sk-right")).is_ok());
        let missing = check_key(&exact, None).unwrap_err();
        assert_eq!(missing.status, StatusCode::UNAUTHORIZED);
        assert!(missing.message.starts_with("You didn't provide an API key"));
        let basic = check_key(&exact, Some("Basic abc")).unwrap_err();
        assert!(basic.message.starts_with("You didn't provide an API key"));
        let wrong = check_key(&exact, Some("Bearer sk-wrong")).unwrap_err();
        assert_eq!(wrong.code, Some("invalid_api_key"));
        assert!(check_key(&KeyCheck::AnyNonEmpty, Some("Bearer x")).is_ok());
        assert!(check_key(&KeyCheck::AnyNonEmpty, Some("Bearer ")).is_err());
    }
}
