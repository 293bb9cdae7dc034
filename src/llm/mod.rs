//! The language model: OpenAI-compatible Chat Completions, streamed.
//!
//! [`ChatModel::stream`] starts one completion and yields [`LlmEvent`]s stamped with the
//! request's [`Generation`]. Dropping the stream aborts the HTTP request (barge-in); there is no
//! cancel endpoint in the protocol.

use futures_util::future::BoxFuture;
use futures_util::stream::BoxStream;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::generation::Generation;

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

/// One completion request.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    pub generation: Generation,
    pub model: String,
    pub messages: Vec<ChatMessage>,
    pub tools: Vec<ToolSpec>,
    pub temperature: f32,
    pub max_tokens: u32,
}

/// Server-side or per-assistant settings of an OpenAI-compatible endpoint.
#[derive(Debug, Clone)]
pub struct LlmEndpoint {
    /// Up to and including `/v1`, e.g. `https://api.openai.com/v1`.
    pub base_url: String,
    pub api_key: String,
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
    #[error("llm stream broke: {0}")]
    Stream(String),
    #[error("llm protocol error: {0}")]
    Protocol(String),
}

/// A stream of one completion's events; dropping it aborts the request.
pub type LlmStream = BoxStream<'static, Result<LlmEvent, LlmError>>;

/// An OpenAI-compatible chat model.
pub trait ChatModel: Send + Sync {
    /// Starts a streaming completion. Resolves once the response has started (status known).
    fn stream(&self, request: ChatRequest) -> BoxFuture<'static, Result<LlmStream, LlmError>>;
}
