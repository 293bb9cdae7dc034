//! The agent loop's model: any OpenAI-compatible Chat Completions endpoint (OpenAI, Groq,
//! OpenRouter, vLLM, llama.cpp, Ollama, Sarvam...), always streamed.
//!
//! One [`OpenAiChat`] per call (or per assistant), all sharing one `reqwest::Client` so that
//! turns reuse warm connections instead of paying a TLS handshake each. A turn is
//! [`ChatModel::stream`]: the request is serialised at once from the borrowed history, the
//! returned future resolves when a response has started (after retries), and the stream yields
//! text deltas as they arrive, then whole tool calls, then `Finished`. Failures are typed, and
//! before the first token the request is resent on 408/409/429/5xx and broken connections,
//! within the first-token budget. Dropping the stream closes the connection.

mod exchange;
mod retry;
mod stream;
mod wire;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use reqwest::Url;
use reqwest::header::HeaderValue;

pub use retry::{RetryPolicy, jitter as backoff_jitter};
#[doc(hidden)]
pub use stream::read_body;

use crate::llm::{ChatModel, ChatRequest, LlmEndpoint, LlmError, LlmStream, LlmTimeouts};
use exchange::Exchange;

/// A streaming client of one OpenAI-compatible endpoint and model.
#[derive(Debug, Clone)]
pub struct OpenAiChat {
    http: reqwest::Client,
    url: Url,
    auth: Option<HeaderValue>,
    model: String,
    timeouts: LlmTimeouts,
    retry: RetryPolicy,
}

impl OpenAiChat {
    /// A client of `endpoint`. Fails if the base URL is not an http(s) URL or the key cannot be
    /// sent in a header, so a misconfigured assistant fails at call set-up, not mid-call.
    pub fn new(
        http: reqwest::Client,
        endpoint: LlmEndpoint,
        timeouts: LlmTimeouts,
    ) -> Result<Self, LlmError> {
        let url = completions_url(&endpoint.base_url)?;
        let auth = if endpoint.api_key.is_empty() {
            None
        } else {
            let mut value = HeaderValue::from_str(&format!("Bearer {}", endpoint.api_key))
                .map_err(|_| LlmError::Config("the api key is not a valid header value".into()))?;
            value.set_sensitive(true);
            Some(value)
        };
        Ok(Self {
            http,
            url,
            auth,
            model: endpoint.model,
            timeouts,
            retry: RetryPolicy::default(),
        })
    }

    /// Replaces the default retry policy (the SDK's: 2 resends, 0.5 s doubling backoff).
    #[must_use]
    pub fn with_retry_policy(mut self, retry: RetryPolicy) -> Self {
        self.retry = retry;
        self
    }

    /// The URL requests go to: `{base_url}/chat/completions`.
    pub fn url(&self) -> &Url {
        &self.url
    }
}

impl ChatModel for OpenAiChat {
    fn stream(&self, request: ChatRequest<'_>) -> BoxFuture<'static, Result<LlmStream, LlmError>> {
        let body = match wire::request_body(&self.model, &request) {
            Ok(body) => Bytes::from(body),
            Err(e) => {
                let error = LlmError::Protocol(format!("cannot encode the request: {e}"));
                return Box::pin(std::future::ready(Err(error)));
            }
        };
        let generation = request.generation;
        let mut exchange = Exchange::new(
            self.http.clone(),
            self.url.clone(),
            self.auth.clone(),
            body,
            self.retry,
            self.timeouts,
        );
        Box::pin(async move {
            let response = exchange.open().await?;
            Ok(stream::events(exchange, response, generation))
        })
    }
}

/// `{base_url}/chat/completions`, keeping any query string (Azure-style `?api-version=`).
fn completions_url(base_url: &str) -> Result<Url, LlmError> {
    let bad = |why: &str| LlmError::Config(format!("base url {base_url:?} {why}"));
    let mut url = Url::parse(base_url.trim()).map_err(|e| bad(&format!("is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(bad("is not http or https"));
    }
    url.path_segments_mut()
        .map_err(|()| bad("cannot have a path"))?
        .pop_if_empty()
        .push("chat")
        .push("completions");
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_completions_path_is_appended_to_the_base_url() {
        for (base, url) in [
            (
                "https://api.openai.com/v1",
                "https://api.openai.com/v1/chat/completions",
            ),
            (
                "http://localhost:11434/v1/",
                "http://localhost:11434/v1/chat/completions",
            ),
            (
                "https://x.openai.azure.com/openai/deployments/d?api-version=2024-10-21",
                "https://x.openai.azure.com/openai/deployments/d/chat/completions?api-version=2024-10-21",
            ),
        ] {
            assert_eq!(completions_url(base).unwrap().as_str(), url);
        }
        assert!(matches!(
            completions_url("ftp://x/v1"),
            Err(LlmError::Config(_))
        ));
        assert!(matches!(
            completions_url("not a url"),
            Err(LlmError::Config(_))
        ));
    }

    #[test]
    fn a_key_that_cannot_be_a_header_is_a_config_error() {
        let endpoint = LlmEndpoint {
            base_url: "http://localhost/v1".into(),
            api_key: "sk-\nbad".into(),
            model: "m".into(),
            owner_chosen: false,
        };
        assert!(matches!(
            OpenAiChat::new(reqwest::Client::new(), endpoint, LlmTimeouts::default()),
            Err(LlmError::Config(_))
        ));
    }
}
