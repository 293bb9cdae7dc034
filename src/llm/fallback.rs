//! A reply's model that does not give up at the first failure: a completion that fails before its
//! first token is asked again once of the same model (a timeout, a 5xx, a 429, a broken
//! connection: what is likely to pass), then, if the assistant names one, of its fallback model.
//! Only what fails all of that reaches the conversation as a failure.
//!
//! Nothing is asked again after the first token: the caller may already be hearing the reply,
//! and a second answer would say it twice. The first token is the stream's first item (text, a
//! tool call, or an empty reply's end), so a stream that stalls or breaks before it counts as a
//! failed attempt like a refused request does.
//!
//! The conversation lends its history only for the time it takes to start a request, so the
//! request is copied once per completion here: that copy is what lets a failed attempt be sent
//! again after the borrow has ended. Each attempt starts its model's own clocks (the first-token
//! timeout is per attempt), and the client's own resends are off (its policy is set by
//! `call/providers.rs`), so the one retry is this one and it is seen: every retry and fallback
//! is counted in `/metrics` and, for a call, told to its session as an [`LlmNotice`].

use std::sync::Arc;

use futures_util::future::BoxFuture;
use futures_util::{StreamExt, stream};
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::openai::{RetryPolicy, backoff_jitter};
use super::{ChatMessage, ChatModel, ChatRequest, LlmError, LlmEvent, LlmStream, ToolSpec};
use crate::generation::Generation;

/// What happened to a completion on its way, for the call's details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NoticeKind {
    /// The model was asked again after a failure.
    Retry,
    /// The fallback model was asked after the assistant's own model failed.
    Fallback,
}

impl NoticeKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            NoticeKind::Retry => "retry",
            NoticeKind::Fallback => "fallback",
        }
    }
}

/// A retry or a fallback, as it happened.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmNotice {
    pub at: Instant,
    pub kind: NoticeKind,
    /// The failure that caused it and which model is asked now.
    pub detail: String,
}

/// One model the chain may ask, with the name the notices give it.
#[derive(Clone)]
pub struct Attempted {
    pub model: Arc<dyn ChatModel>,
    pub name: String,
}

/// The assistant's model, asked again once, then its fallback.
#[derive(Clone)]
pub struct FallbackChat {
    primary: Attempted,
    fallback: Option<Attempted>,
    notices: Option<mpsc::Sender<LlmNotice>>,
}

impl FallbackChat {
    pub fn new(primary: Attempted, fallback: Option<Attempted>) -> Self {
        Self {
            primary,
            fallback,
            notices: None,
        }
    }

    /// Retries and fallbacks are also sent here (never waiting: a full queue loses the notice,
    /// not the reply).
    #[must_use]
    pub fn with_notices(mut self, notices: Option<mpsc::Sender<LlmNotice>>) -> Self {
        self.notices = notices;
        self
    }
}

/// Whether a failure before the first token is worth asking the same model again: a timeout,
/// an overloaded or rate-limiting server, a connection that broke. A refusal (bad key, bad
/// request, out of quota) would only be refused again; it goes straight to the fallback.
pub fn is_transient(error: &LlmError) -> bool {
    matches!(
        error,
        LlmError::RateLimited { .. }
            | LlmError::Unavailable { .. }
            | LlmError::FirstTokenTimeout(_)
            | LlmError::TotalTimeout(_)
            | LlmError::Stream(_)
            | LlmError::Truncated
            | LlmError::MidStream { .. }
    )
}

/// The borrowed request, owned for as long as attempts may need it.
struct OwnedRequest {
    generation: Generation,
    messages: Vec<ChatMessage>,
    tools: Vec<ToolSpec>,
    temperature: f32,
    max_tokens: u32,
    response_format: Option<Value>,
}

impl OwnedRequest {
    fn of(request: &ChatRequest<'_>) -> Self {
        Self {
            generation: request.generation,
            messages: request.messages.to_vec(),
            tools: request.tools.to_vec(),
            temperature: request.temperature,
            max_tokens: request.max_tokens,
            response_format: request.response_format.cloned(),
        }
    }

    fn lend(&self) -> ChatRequest<'_> {
        ChatRequest {
            generation: self.generation,
            messages: &self.messages,
            tools: &self.tools,
            temperature: self.temperature,
            max_tokens: self.max_tokens,
            response_format: self.response_format.as_ref(),
        }
    }
}

/// A stream whose first item came: that item, and the rest.
type Started = (LlmEvent, LlmStream);

/// Starts one attempt and waits for its first item; an error before it is the attempt's
/// failure.
async fn attempt(model: &dyn ChatModel, request: &OwnedRequest) -> Result<Started, LlmError> {
    let mut stream = model.stream(request.lend()).await?;
    match stream.next().await {
        Some(Ok(first)) => Ok((first, stream)),
        Some(Err(error)) => Err(error),
        None => Err(LlmError::Truncated),
    }
}

impl ChatModel for FallbackChat {
    fn stream(&self, request: ChatRequest<'_>) -> BoxFuture<'static, Result<LlmStream, LlmError>> {
        let owned = OwnedRequest::of(&request);
        let chain = self.clone();
        Box::pin(async move {
            match chain.run(&owned).await {
                Ok((first, rest)) => {
                    // A failure after the first token is not asked again; it is still a
                    // completion that failed for good.
                    let rest = rest.inspect(|item| {
                        if let Err(error) = item {
                            count_failure(error);
                        }
                    });
                    Ok(stream::once(async move { Ok(first) }).chain(rest).boxed())
                }
                Err(error) => {
                    count_failure(&error);
                    Err(error)
                }
            }
        })
    }
}

impl FallbackChat {
    /// The chain: the primary, once more if its failure was transient, then the fallback.
    async fn run(&self, request: &OwnedRequest) -> Result<Started, LlmError> {
        let mut error = match attempt(self.primary.model.as_ref(), request).await {
            Ok(started) => return Ok(started),
            Err(error) => error,
        };
        if is_transient(&error) {
            self.notice(
                NoticeKind::Retry,
                &error,
                format!("{error}; asking {} again", self.primary.name),
            );
            // A timeout has waited long enough already; a refused request waits a moment (the
            // SDK's first backoff) so an overloaded server is not asked again at once.
            if !matches!(
                error,
                LlmError::FirstTokenTimeout(_) | LlmError::TotalTimeout(_)
            ) {
                let wait = RetryPolicy::default().backoff(0, backoff_jitter());
                tokio::time::sleep(wait).await;
            }
            error = match attempt(self.primary.model.as_ref(), request).await {
                Ok(started) => return Ok(started),
                Err(error) => error,
            };
        }
        let Some(fallback) = &self.fallback else {
            return Err(error);
        };
        self.notice(
            NoticeKind::Fallback,
            &error,
            format!("{error}; asking the fallback model {}", fallback.name),
        );
        attempt(fallback.model.as_ref(), request).await
    }

    /// Counts a retry or a fallback by the kind of failure that caused it, and tells the session.
    fn notice(&self, kind: NoticeKind, cause: &LlmError, detail: String) {
        let counter = match kind {
            NoticeKind::Retry => crate::metrics::LLM_RETRIES,
            NoticeKind::Fallback => crate::metrics::LLM_FALLBACKS,
        };
        metrics::counter!(counter, "kind" => cause.kind()).increment(1);
        if let Some(notices) = &self.notices {
            let _ = notices.try_send(LlmNotice {
                at: Instant::now(),
                kind,
                detail,
            });
        }
    }
}

/// A completion that failed for good, by the kind of its last error.
fn count_failure(error: &LlmError) {
    metrics::counter!(crate::metrics::LLM_FAILURES, "kind" => error.kind()).increment(1);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::scripted::{ScriptedLlm, text_reply};

    fn unavailable() -> LlmError {
        LlmError::Unavailable {
            status: Some(503),
            message: "overloaded".into(),
        }
    }

    fn request(messages: &[ChatMessage]) -> ChatRequest<'_> {
        ChatRequest {
            generation: Generation(7),
            messages,
            tools: &[],
            temperature: 0.5,
            max_tokens: 50,
            response_format: None,
        }
    }

    async fn text_of(model: &FallbackChat) -> Result<String, LlmError> {
        let messages = [ChatMessage::User {
            content: "hi".into(),
        }];
        let mut stream = model.stream(request(&messages)).await?;
        let mut text = String::new();
        while let Some(event) = stream.next().await {
            if let LlmEvent::Delta { text: piece, .. } = event? {
                text.push_str(&piece);
            }
        }
        Ok(text)
    }

    fn named(model: Arc<ScriptedLlm>, name: &str) -> Attempted {
        Attempted {
            model,
            name: name.into(),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_transient_failure_is_asked_again_once() {
        let primary = ScriptedLlm::answering(vec![Err(unavailable()), Ok(text_reply("Hello."))]);
        let (tx, mut rx) = mpsc::channel(8);
        let chat = FallbackChat::new(named(primary.clone(), "main"), None).with_notices(Some(tx));
        assert_eq!(text_of(&chat).await.unwrap(), "Hello.");
        assert_eq!(primary.requests().len(), 2);
        assert_eq!(rx.try_recv().unwrap().kind, NoticeKind::Retry);
        assert!(rx.try_recv().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn two_failures_go_to_the_fallback_with_the_same_request() {
        let primary = ScriptedLlm::answering(vec![Err(unavailable()), Err(unavailable())]);
        let fallback = ScriptedLlm::answering(vec![Ok(text_reply("From the fallback."))]);
        let (tx, mut rx) = mpsc::channel(8);
        let chat = FallbackChat::new(
            named(primary.clone(), "main"),
            Some(named(fallback.clone(), "spare")),
        )
        .with_notices(Some(tx));
        assert_eq!(text_of(&chat).await.unwrap(), "From the fallback.");
        assert_eq!(primary.requests().len(), 2);
        let asked = fallback.requests();
        assert_eq!(asked.len(), 1);
        assert_eq!(
            asked[0].messages,
            vec![ChatMessage::User {
                content: "hi".into()
            }]
        );
        let kinds: Vec<NoticeKind> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|n| n.kind)
            .collect();
        assert_eq!(kinds, [NoticeKind::Retry, NoticeKind::Fallback]);
    }

    #[tokio::test(start_paused = true)]
    async fn a_refusal_is_not_asked_again_but_goes_to_the_fallback() {
        let refused = LlmError::Unauthorized {
            status: 401,
            message: "bad key".into(),
        };
        let primary = ScriptedLlm::answering(vec![Err(refused)]);
        let fallback = ScriptedLlm::answering(vec![Err(unavailable())]);
        let chat = FallbackChat::new(
            named(primary.clone(), "main"),
            Some(named(fallback.clone(), "spare")),
        );
        assert_eq!(text_of(&chat).await.unwrap_err(), unavailable());
        assert_eq!(primary.requests().len(), 1);
        assert_eq!(fallback.requests().len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn an_empty_stream_is_a_failed_attempt() {
        // The scripted model answers an empty stream once its script is used up.
        let primary = ScriptedLlm::answering(vec![]);
        let chat = FallbackChat::new(named(primary.clone(), "main"), None);
        assert_eq!(text_of(&chat).await.unwrap_err(), LlmError::Truncated);
        assert_eq!(primary.requests().len(), 2, "truncation is transient");
    }
}
