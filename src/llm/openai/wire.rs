//! The Chat Completions JSON shapes, on both sides of the wire.
//!
//! Requests are serialised straight from the borrowed conversation. Chunks are deserialised with
//! borrowed strings (`Cow` borrows unless a string holds escapes), only the first choice is kept,
//! and every field is optional: servers differ in what they omit (`id`, `model`, `created`,
//! `index`) and add (`reasoning_content`, `reasoning`, `refusal`), and none of that may fail a
//! reply. Unknown delta keys, reasoning included, are never read, so thinking is never spoken.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, Deserializer, IgnoredAny, SeqAccess, Visitor};
use serde::ser::{SerializeSeq, Serializer};
use serde::{Deserialize, Serialize};

use crate::llm::{ChatMessage, ChatRequest, FinishReason, ToolSpec, Usage};

/// The body of `POST /chat/completions`.
#[derive(Serialize)]
pub(super) struct RequestBody<'a> {
    pub model: &'a str,
    pub messages: &'a [ChatMessage],
    #[serde(skip_serializing_if = "Tools::is_empty")]
    pub tools: Tools<'a>,
    pub stream: bool,
    pub stream_options: StreamOptions,
    pub temperature: f32,
    /// `max_tokens` rather than `max_completion_tokens`: the only name many local servers know.
    pub max_tokens: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub response_format: Option<&'a serde_json::Value>,
}

#[derive(Serialize)]
pub(super) struct StreamOptions {
    pub include_usage: bool,
}

/// `tools`: each [`ToolSpec`] wrapped as `{"type":"function","function":{...}}`.
pub(super) struct Tools<'a>(pub &'a [ToolSpec]);

impl Tools<'_> {
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl Serialize for Tools<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Tool<'a> {
            #[serde(rename = "type")]
            kind: &'static str,
            function: &'a ToolSpec,
        }
        let mut seq = serializer.serialize_seq(Some(self.0.len()))?;
        for spec in self.0 {
            seq.serialize_element(&Tool {
                kind: "function",
                function: spec,
            })?;
        }
        seq.end()
    }
}

/// The JSON body of a streamed completion request.
pub(super) fn request_body(model: &str, request: &ChatRequest<'_>) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec(&RequestBody {
        model,
        messages: request.messages,
        tools: Tools(request.tools),
        stream: true,
        stream_options: StreamOptions {
            include_usage: true,
        },
        temperature: request.temperature,
        max_tokens: request.max_tokens,
        response_format: request.response_format,
    })
}

/// One `data:` payload of the stream.
#[derive(Deserialize)]
pub(super) struct Chunk<'a> {
    /// The choice with `index` 0 (we never ask for more than one).
    #[serde(default, borrow, rename = "choices", deserialize_with = "first_choice")]
    pub choice: Option<Choice<'a>>,
    #[serde(default)]
    pub usage: Option<WireUsage>,
    /// A mid-stream error: `{"error": {...}}`.
    #[serde(default)]
    pub error: Option<ErrorField>,
    /// vLLM-style errors: `{"object": "error", "message": ...}`.
    #[serde(default, borrow, deserialize_with = "text")]
    pub object: Option<Cow<'a, str>>,
    #[serde(default, borrow, deserialize_with = "text")]
    pub message: Option<Cow<'a, str>>,
}

impl Chunk<'_> {
    /// The error this chunk reports, if it is one.
    pub fn error_message(&self) -> Option<String> {
        if let Some(error) = &self.error {
            return Some(error.message());
        }
        if self.object.as_deref() == Some("error") {
            return Some(
                self.message
                    .as_deref()
                    .unwrap_or("unspecified error")
                    .to_owned(),
            );
        }
        None
    }
}

#[derive(Deserialize)]
pub(super) struct Choice<'a> {
    #[serde(default)]
    pub index: u32,
    #[serde(default, borrow)]
    pub delta: Option<Delta<'a>>,
    #[serde(default, borrow, deserialize_with = "text")]
    pub finish_reason: Option<Cow<'a, str>>,
    /// Some servers put usage in the final choice.
    #[serde(default)]
    pub usage: Option<WireUsage>,
}

#[derive(Deserialize)]
pub(super) struct Delta<'a> {
    #[serde(default, borrow, deserialize_with = "text")]
    pub content: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub tool_calls: Option<Vec<ToolCallDelta<'a>>>,
}

#[derive(Deserialize)]
pub(super) struct ToolCallDelta<'a> {
    #[serde(default)]
    pub index: Option<u32>,
    #[serde(default, borrow, deserialize_with = "text")]
    pub id: Option<Cow<'a, str>>,
    #[serde(default, borrow)]
    pub function: Option<FunctionDelta<'a>>,
}

#[derive(Deserialize)]
pub(super) struct FunctionDelta<'a> {
    #[serde(default, borrow, deserialize_with = "text")]
    pub name: Option<Cow<'a, str>>,
    /// A piece of the arguments' JSON text. A server that sends the arguments as a JSON object
    /// instead of a string gets them re-encoded.
    #[serde(default, borrow, deserialize_with = "arguments_text")]
    pub arguments: Option<Cow<'a, str>>,
}

#[derive(Deserialize, Clone, Copy)]
pub(super) struct WireUsage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
}

impl From<WireUsage> for Usage {
    fn from(u: WireUsage) -> Self {
        let clamp = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        Usage {
            prompt_tokens: clamp(u.prompt_tokens),
            completion_tokens: clamp(u.completion_tokens),
        }
    }
}

pub(super) fn finish_reason(reason: &str) -> FinishReason {
    match reason {
        "stop" => FinishReason::Stop,
        "length" => FinishReason::Length,
        "tool_calls" | "function_call" => FinishReason::ToolCalls,
        "content_filter" => FinishReason::ContentFilter,
        other => FinishReason::Other(other.to_owned()),
    }
}

/// `error`: OpenAI's `{"message","type","param","code"}` object, or a bare string.
#[derive(Deserialize, Debug)]
#[serde(untagged)]
pub(super) enum ErrorField {
    Object {
        #[serde(default)]
        message: Option<String>,
        #[serde(default, rename = "type")]
        kind: Option<String>,
        #[serde(default)]
        code: Option<serde_json::Value>,
    },
    Text(String),
    /// Anything else (a number...): still an error, with nothing to say.
    Other(IgnoredAny),
}

impl Default for ErrorField {
    fn default() -> Self {
        ErrorField::Other(IgnoredAny)
    }
}

impl ErrorField {
    pub fn message(&self) -> String {
        match self {
            ErrorField::Object { message, kind, .. } => match (message, kind) {
                (Some(m), _) if !m.is_empty() => m.clone(),
                (_, Some(k)) => k.clone(),
                _ => "unspecified error".to_owned(),
            },
            ErrorField::Text(text) => text.clone(),
            ErrorField::Other(_) => "unspecified error".to_owned(),
        }
    }

    /// `code` as text (`"rate_limit_exceeded"`, `"insufficient_quota"`, or a number).
    pub fn code(&self) -> Option<String> {
        match self {
            ErrorField::Object {
                code: Some(serde_json::Value::String(code)),
                ..
            } => Some(code.clone()),
            ErrorField::Object {
                code: Some(serde_json::Value::Number(code)),
                ..
            } => Some(code.to_string()),
            _ => None,
        }
    }

    pub fn kind(&self) -> Option<&str> {
        match self {
            ErrorField::Object { kind, .. } => kind.as_deref(),
            _ => None,
        }
    }
}

/// What a non-2xx response says, whatever shape the server gave it.
#[derive(Debug, Default)]
pub(super) struct ErrorBody {
    pub message: String,
    pub code: Option<String>,
    pub kind: Option<String>,
}

/// Reads an error response body: OpenAI's `{"error":{...}}`, vLLM's
/// `{"object":"error","message":...}`, or plain text.
pub(super) fn error_body(bytes: &[u8]) -> ErrorBody {
    #[derive(Deserialize)]
    struct Body {
        #[serde(default)]
        error: Option<ErrorField>,
        #[serde(default)]
        message: Option<String>,
        #[serde(default, rename = "type")]
        kind: Option<String>,
        #[serde(default)]
        code: Option<serde_json::Value>,
    }
    match serde_json::from_slice::<Body>(bytes) {
        Ok(Body {
            error: Some(error), ..
        }) => ErrorBody {
            message: error.message(),
            code: error.code(),
            kind: error.kind().map(str::to_owned),
        },
        Ok(body) => ErrorBody {
            message: body.message.unwrap_or_default(),
            code: body.code.map(|c| match c {
                serde_json::Value::String(s) => s,
                other => other.to_string(),
            }),
            kind: body.kind,
        },
        Err(_) => ErrorBody {
            message: String::from_utf8_lossy(bytes)
                .trim()
                .chars()
                .take(500)
                .collect(),
            ..ErrorBody::default()
        },
    }
}

/// `choices`: keeps the first choice with `index` 0 and skips the rest without keeping them.
fn first_choice<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Choice<'de>>, D::Error> {
    struct Choices;

    impl<'de> Visitor<'de> for Choices {
        type Value = Option<Choice<'de>>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("an array of choices or null")
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_seq(Choices)
        }

        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut first = None;
            while first.is_none() {
                match seq.next_element::<Choice<'de>>()? {
                    Some(choice) if choice.index == 0 => first = Some(choice),
                    Some(_) => {}
                    None => return Ok(None),
                }
            }
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(first)
        }
    }

    deserializer.deserialize_option(Choices)
}

/// An optional string, borrowed from the input when it holds no escapes. (serde borrows a bare
/// `Cow` field but not one inside an `Option`, hence the newtype.)
fn text<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Cow<'de, str>>, D::Error> {
    #[derive(Deserialize)]
    struct Text<'a>(#[serde(borrow)] Cow<'a, str>);
    Ok(Option::<Text<'de>>::deserialize(deserializer)?.map(|t| t.0))
}

/// `function.arguments`: a string (borrowed when it can be), or any other JSON re-encoded.
fn arguments_text<'de, D: Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<Cow<'de, str>>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Arguments<'a> {
        Text(#[serde(borrow)] Cow<'a, str>),
        Json(serde_json::Value),
    }
    Ok(match Option::<Arguments<'de>>::deserialize(deserializer)? {
        None => None,
        Some(Arguments::Text(text)) => Some(text),
        Some(Arguments::Json(json)) => Some(Cow::Owned(json.to_string())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::generation::Generation;
    use crate::llm::{FunctionCall, ToolCall};
    use serde_json::json;

    #[test]
    fn the_request_has_the_wire_shape() {
        let messages = vec![
            ChatMessage::System {
                content: "Be brief.".into(),
            },
            ChatMessage::User {
                content: "Weather in Paris?".into(),
            },
            ChatMessage::Assistant {
                content: None,
                tool_calls: vec![ToolCall {
                    id: "call_1".into(),
                    kind: "function".into(),
                    function: FunctionCall {
                        name: "get_weather".into(),
                        arguments: "{\"city\":\"Paris\"}".into(),
                    },
                }],
            },
            ChatMessage::Tool {
                tool_call_id: "call_1".into(),
                content: "{\"summary\":\"sunny\"}".into(),
            },
        ];
        let tools = vec![ToolSpec {
            name: "get_weather".into(),
            description: "Weather now".into(),
            parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}}),
        }];
        let request = ChatRequest {
            generation: Generation(3),
            messages: &messages,
            tools: &tools,
            temperature: 0.5,
            max_tokens: 300,
            response_format: None,
        };
        let body: serde_json::Value =
            serde_json::from_slice(&request_body("gpt-4o-mini", &request).unwrap()).unwrap();
        assert_eq!(
            body,
            json!({
                "model": "gpt-4o-mini",
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Weather in Paris?"},
                    {"role": "assistant", "content": null, "tool_calls": [
                        {"id": "call_1", "type": "function",
                         "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}
                    ]},
                    {"role": "tool", "tool_call_id": "call_1", "content": "{\"summary\":\"sunny\"}"}
                ],
                "tools": [{"type": "function", "function": {
                    "name": "get_weather", "description": "Weather now",
                    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}
                }}],
                "stream": true,
                "stream_options": {"include_usage": true},
                "temperature": 0.5,
                "max_tokens": 300
            })
        );
    }

    #[test]
    fn no_tools_means_no_tools_key() {
        let request = ChatRequest {
            generation: Generation(0),
            messages: &[],
            tools: &[],
            temperature: 0.7,
            max_tokens: 10,
            response_format: None,
        };
        let body: serde_json::Value =
            serde_json::from_slice(&request_body("m", &request).unwrap()).unwrap();
        assert!(body.get("tools").is_none());
        assert_eq!(body["temperature"], json!(0.7));
    }

    #[test]
    fn content_without_escapes_is_borrowed() {
        let raw = br#"{"choices":[{"index":0,"delta":{"content":"Sure"},"finish_reason":null}]}"#;
        let chunk: Chunk = serde_json::from_slice(raw).unwrap();
        let choice = chunk.choice.unwrap();
        assert!(choice.finish_reason.is_none());
        let content = choice.delta.unwrap().content.unwrap();
        assert!(matches!(content, Cow::Borrowed("Sure")));
        let escaped: Chunk =
            serde_json::from_slice(br#"{"choices":[{"delta":{"content":"caf\u00e9 \"x\""}}]}"#)
                .unwrap();
        let content = escaped.choice.unwrap().delta.unwrap().content.unwrap();
        assert_eq!(content, "café \"x\"");
    }

    #[test]
    fn only_choice_zero_is_kept_and_reasoning_is_not_read() {
        let raw = br#"{"choices":[{"index":1,"delta":{"content":"other"}},{"index":0,"delta":{"reasoning_content":"hmm","reasoning":"hmm","content":"caf\u00e9"}},{"index":2}]}"#;
        let chunk: Chunk = serde_json::from_slice(raw).unwrap();
        let choice = chunk.choice.unwrap();
        assert_eq!(choice.delta.unwrap().content.unwrap(), "café");
    }

    #[test]
    fn missing_or_null_fields_are_tolerated() {
        for raw in [
            r#"{}"#,
            r#"{"choices":null,"usage":null}"#,
            r#"{"choices":[]}"#,
            r#"{"choices":[{"delta":{"content":null,"tool_calls":null}}]}"#,
            r#"{"choices":[{"index":0,"delta":{}}],"id":"x","model":"m","created":1}"#,
        ] {
            let chunk: Chunk = serde_json::from_str(raw).unwrap();
            assert!(chunk.error_message().is_none(), "{raw}");
        }
    }

    #[test]
    fn arguments_may_be_a_string_or_an_object() {
        let raw = br#"{"choices":[{"delta":{"tool_calls":[{"index":0,"function":{"name":"f","arguments":{"city":"Paris"}}}]}}]}"#;
        let chunk: Chunk = serde_json::from_slice(raw).unwrap();
        let calls = chunk.choice.unwrap().delta.unwrap().tool_calls.unwrap();
        let arguments = calls[0].function.as_ref().unwrap().arguments.as_deref();
        assert_eq!(arguments, Some("{\"city\":\"Paris\"}"));
        let raw = br#"{"choices":[{"delta":{"tool_calls":[{"index":0,"id":"call_1","function":{"name":"f","arguments":"{\"ci"}}]}}]}"#;
        let chunk: Chunk = serde_json::from_slice(raw).unwrap();
        let calls = chunk.choice.unwrap().delta.unwrap().tool_calls.unwrap();
        assert!(matches!(calls[0].id, Some(Cow::Borrowed("call_1"))));
        let arguments = calls[0].function.as_ref().unwrap().arguments.as_deref();
        assert_eq!(arguments, Some("{\"ci"));
    }

    #[test]
    fn errors_are_recognised_in_every_shape() {
        let openai: Chunk = serde_json::from_str(
            r#"{"error":{"message":"The server had an error","type":"server_error","param":null,"code":null}}"#,
        )
        .unwrap();
        assert_eq!(
            openai.error_message().as_deref(),
            Some("The server had an error")
        );
        let text: Chunk = serde_json::from_str(r#"{"error":"boom"}"#).unwrap();
        assert_eq!(text.error_message().as_deref(), Some("boom"));
        let vllm: Chunk =
            serde_json::from_str(r#"{"object":"error","message":"bad","type":"x","code":400}"#)
                .unwrap();
        assert_eq!(vllm.error_message().as_deref(), Some("bad"));
    }

    #[test]
    fn error_bodies_are_read_in_every_shape() {
        let openai = error_body(
            br#"{"error":{"message":"quota","type":"insufficient_quota","param":null,"code":"insufficient_quota"}}"#,
        );
        assert_eq!(openai.message, "quota");
        assert_eq!(openai.code.as_deref(), Some("insufficient_quota"));
        let llama = error_body(
            br#"{"error":{"code":500,"message":"Cannot use tools with stream","type":"server_error"}}"#,
        );
        assert_eq!(llama.code.as_deref(), Some("500"));
        assert_eq!(llama.kind.as_deref(), Some("server_error"));
        let vllm = error_body(br#"{"object":"error","message":"requires --enable-auto-tool-choice","type":"BadRequestError","code":400}"#);
        assert_eq!(vllm.message, "requires --enable-auto-tool-choice");
        let text = error_body(b"Bad Gateway");
        assert_eq!(text.message, "Bad Gateway");
    }

    #[test]
    fn finish_reasons_map() {
        assert_eq!(finish_reason("stop"), FinishReason::Stop);
        assert_eq!(finish_reason("tool_calls"), FinishReason::ToolCalls);
        assert_eq!(finish_reason("length"), FinishReason::Length);
        assert_eq!(finish_reason("eos"), FinishReason::Other("eos".into()));
    }
}
