//! The language model: OpenAI-compatible Chat Completions, streamed.
//!
//! [`ChatModel::stream`] starts one completion and yields [`LlmEvent`]s stamped with the
//! request's [`Generation`]. Dropping the stream aborts the HTTP request (barge-in); there is no
//! cancel endpoint in the protocol. The call session only sees these types: the wire format
//! (SSE, chunk JSON, tool-call fragments) stays inside the provider modules.

pub mod fallback;
pub mod openai;
pub mod providers;
#[cfg(test)]
pub mod scripted;
pub mod sse;
pub mod tool_calls;

use std::time::Duration;

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::assistant::LlmSettings;
use crate::config::LlmConfig;
use crate::generation::Generation;

pub use fallback::{FallbackChat, LlmNotice, NoticeKind};
pub use openai::{OpenAiChat, RetryPolicy};

/// One message of the conversation, in the Chat Completions shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum ChatMessage {
    System {
        content: String,
    },
    User {
        content: String,
    },
    Assistant {
        /// `None` when the turn was only tool calls.
        content: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<ToolCall>,
    },
    Tool {
        tool_call_id: String,
        content: String,
    },
}

/// A whole tool call, accumulated from the stream's fragments.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub function: FunctionCall,
}

/// The function a tool call names and its arguments (a JSON document, as a string).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    pub name: String,
    pub arguments: String,
}

/// A function the model may call.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments.
    pub parameters: Value,
}

/// One completion request. It borrows the conversation: the call session keeps its history and
/// tool list and lends them for the time it takes to serialise the request, so no turn copies
/// the history.
#[derive(Debug, Clone, Copy)]
pub struct ChatRequest<'a> {
    pub generation: Generation,
    pub messages: &'a [ChatMessage],
    pub tools: &'a [ToolSpec],
    pub temperature: f32,
    pub max_tokens: u32,
    /// `response_format` as the API takes it (`{"type": "json_schema", ...}`): structured
    /// outputs. `None` for a spoken or chatted reply.
    pub response_format: Option<&'a Value>,
}

/// Where the model is: an OpenAI-compatible endpoint, the key it expects and the model to ask.
/// Resolved once per call from the assistant's settings and the server's defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmEndpoint {
    /// Up to and including `/v1`, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    /// Sent as `Authorization: Bearer <key>`; empty sends no header (local servers need none).
    pub api_key: String,
    pub model: String,
    /// The base URL is one an API user chose (neither the server's nor one the operator
    /// allowed): it is reached under the egress policy, and never with the server's key.
    pub owner_chosen: bool,
}

impl LlmEndpoint {
    /// The assistant's own base URL, model and key where it names them, the server's otherwise.
    /// The server's key only goes to a base URL the operator trusts: an assistant that names
    /// another endpoint without a key of its own sends none.
    pub fn resolve(assistant: &LlmSettings, server: &LlmConfig) -> Self {
        let base_url = assistant
            .base_url
            .clone()
            .unwrap_or_else(|| server.base_url.clone());
        let owner_chosen = !server.is_trusted_base_url(&base_url);
        let api_key = match &assistant.api_key {
            Some(own) => own.clone(),
            None if owner_chosen => String::new(),
            None => server.api_key.clone(),
        };
        Self {
            base_url,
            api_key,
            model: assistant
                .model
                .clone()
                .unwrap_or_else(|| server.model.clone()),
            owner_chosen,
        }
    }
}

/// How long a completion may take. Both clocks start when [`ChatModel::stream`] is called, so
/// retries spend the same budget the caller is waiting through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LlmTimeouts {
    /// Until the first token (text or tool call; not the role-only chunk, not reasoning).
    pub first_token: Duration,
    /// Until the end of the reply.
    pub total: Duration,
}

impl Default for LlmTimeouts {
    fn default() -> Self {
        Self {
            first_token: Duration::from_secs(5),
            total: Duration::from_secs(30),
        }
    }
}

/// Why a completion ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishReason {
    Stop,
    Length,
    ToolCalls,
    ContentFilter,
    Other(String),
}

/// Token counts, when the server reports them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub prompt_tokens: u32,
    pub completion_tokens: u32,
}

/// What a streaming completion produces, in order: text deltas, then (at the end) any tool
/// calls, then `Finished`.
#[derive(Debug, Clone, PartialEq)]
pub enum LlmEvent {
    /// A piece of the reply's text (never empty).
    Delta {
        generation: Generation,
        text: String,
    },
    /// Every tool call of the reply, whole and parsed-checked.
    ToolCalls {
        generation: Generation,
        calls: Vec<ToolCall>,
    },
    /// The completion ended normally.
    Finished {
        generation: Generation,
        reason: FinishReason,
        usage: Option<Usage>,
    },
}

impl LlmEvent {
    /// The agent turn this output belongs to.
    pub fn generation(&self) -> Generation {
        match self {
            LlmEvent::Delta { generation, .. }
            | LlmEvent::ToolCalls { generation, .. }
            | LlmEvent::Finished { generation, .. } => *generation,
        }
    }
}

/// A failure of the LLM endpoint.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LlmError {
    #[error("llm refused the credentials ({status}): {message}")]
    Unauthorized { status: u16, message: String },
    #[error("llm rejected the request ({status}): {message}")]
    Rejected { status: u16, message: String },
    #[error("llm is rate limiting: {message}")]
    RateLimited { message: String },
    #[error("llm unavailable ({status:?}): {message}")]
    Unavailable {
        status: Option<u16>,
        message: String,
    },
    #[error("llm sent no token within {0} ms")]
    FirstTokenTimeout(u64),
    #[error("llm reply exceeded {0} ms")]
    TotalTimeout(u64),
    /// The connection failed while the reply was streaming.
    #[error("llm stream broke: {0}")]
    Stream(String),
    /// The stream ended before the model finished (no `[DONE]`, no finish reason).
    #[error("llm stream ended before the reply was complete")]
    Truncated,
    /// The server reported an error inside a stream that had already started.
    #[error("llm failed mid-stream: {message}")]
    MidStream { message: String },
    /// The server sent something that is not the protocol (bad SSE, bad JSON, bad tool call).
    #[error("llm protocol error: {0}")]
    Protocol(String),
    /// The endpoint settings cannot work (bad base URL, a key that is not a header value).
    #[error("llm endpoint misconfigured: {0}")]
    Config(String),
}

impl LlmError {
    /// A short, stable name for metrics (`voxbridge_provider_errors_total{kind}`).
    pub fn kind(&self) -> &'static str {
        match self {
            LlmError::Unauthorized { .. } => "unauthorized",
            LlmError::Rejected { .. } => "rejected",
            LlmError::RateLimited { .. } => "rate_limited",
            LlmError::Unavailable { .. } => "unavailable",
            LlmError::FirstTokenTimeout(_) => "first_token_timeout",
            LlmError::TotalTimeout(_) => "total_timeout",
            LlmError::Stream(_) => "stream_broke",
            LlmError::Truncated => "truncated",
            LlmError::MidStream { .. } => "mid_stream",
            LlmError::Protocol(_) => "protocol",
            LlmError::Config(_) => "misconfigured",
        }
    }
}

/// A stream of one completion's events; dropping it aborts the request.
pub type LlmStream = BoxStream<'static, Result<LlmEvent, LlmError>>;

/// An OpenAI-compatible chat model.
pub trait ChatModel: Send + Sync {
    /// Starts a streaming completion. The request is serialised before this returns, so the
    /// future borrows nothing. It resolves once a response has started (status known, after any
    /// retries); dropping it or the stream aborts the HTTP request.
    fn stream(&self, request: ChatRequest<'_>) -> BoxFuture<'static, Result<LlmStream, LlmError>>;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> LlmConfig {
        LlmConfig {
            base_url: "https://api.openai.com/v1".into(),
            api_key: "sk-server".into(),
            model: "gpt-4o-mini".into(),
            allowed_base_urls: vec!["http://10.0.0.5:11434/v1/".into()],
            providers: Default::default(),
        }
    }

    #[test]
    fn the_assistant_overrides_the_server_field_by_field() {
        let own_model = LlmSettings {
            model: Some("llama3.1".into()),
            base_url: Some("https://llm.example.com/v1".into()),
            api_key: Some("sk-own".into()),
            ..LlmSettings::default()
        };
        assert_eq!(
            LlmEndpoint::resolve(&own_model, &server()),
            LlmEndpoint {
                base_url: "https://llm.example.com/v1".into(),
                api_key: "sk-own".into(),
                model: "llama3.1".into(),
                owner_chosen: true,
            }
        );
        let defaults = LlmEndpoint::resolve(&LlmSettings::default(), &server());
        assert_eq!(defaults.model, "gpt-4o-mini");
        assert_eq!(defaults.base_url, "https://api.openai.com/v1");
        assert_eq!(defaults.api_key, "sk-server");
        assert!(!defaults.owner_chosen);
    }

    #[test]
    fn the_server_key_goes_only_to_endpoints_the_operator_trusts() {
        let elsewhere = LlmSettings {
            base_url: Some("https://attacker.example/v1".into()),
            ..LlmSettings::default()
        };
        let endpoint = LlmEndpoint::resolve(&elsewhere, &server());
        assert_eq!(endpoint.api_key, "", "no key rather than the server's");
        assert!(endpoint.owner_chosen);
        for trusted in ["https://api.openai.com/v1/", "http://10.0.0.5:11434/v1"] {
            let named = LlmSettings {
                base_url: Some(trusted.into()),
                ..LlmSettings::default()
            };
            let endpoint = LlmEndpoint::resolve(&named, &server());
            assert_eq!(endpoint.api_key, "sk-server", "{trusted}");
            assert!(!endpoint.owner_chosen, "{trusted}");
        }
    }
}
