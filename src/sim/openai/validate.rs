//! The request checks of the real Chat Completions API, with its error shape and wording.
//!
//! A fake that accepts anything proves nothing: these are the mistakes a client really makes
//! (an unanswered `tool_call_id`, arguments sent as an object, a tool without `type`, an empty
//! `messages`), answered with the status, `message`, `param` and `code` OpenAI uses, so a client
//! test that passes here would pass against the real service. `response_format` has its own
//! checks in [`super::response_format`].

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

pub use super::response_format::{JsonSchemaFormat, ResponseFormat};

/// An error answer in OpenAI's shape: `{"error":{"message","type","param","code"}}`.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

impl ApiError {
    /// A 400 `invalid_request_error`.
    pub fn invalid(
        message: impl Into<String>,
        param: Option<String>,
        code: Option<&'static str>,
    ) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param,
            code,
        }
    }

    pub fn body(&self) -> Value {
        json!({"error": {
            "message": self.message,
            "type": self.kind,
            "param": self.param,
            "code": self.code,
        }})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(self.body())).into_response()
    }
}

/// Who wrote a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    System,
    Developer,
    User,
    Assistant,
    Tool,
    Function,
}

/// A tool call an assistant message made.
#[derive(Debug, Clone, PartialEq)]
pub struct CalledTool {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

/// One message, reduced to what the script needs.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub role: Role,
    /// The text: a string content, or the text parts of an array content joined.
    pub content: String,
    pub tool_calls: Vec<CalledTool>,
    pub tool_call_id: Option<String>,
}

/// A request that passed every check.
#[derive(Debug, Clone, PartialEq)]
pub struct ValidRequest {
    pub model: String,
    pub stream: bool,
    pub include_usage: bool,
    pub messages: Vec<Message>,
    /// Names of the functions offered in `tools`.
    pub tool_names: Vec<String>,
    /// Text, JSON mode or a JSON Schema (Structured Outputs).
    pub response_format: ResponseFormat,
}

/// Checks a request body the way the real API does.
pub fn validate(body: &[u8]) -> Result<ValidRequest, ApiError> {
    let parse_error = || {
        ApiError::invalid(
            "We could not parse the JSON body of your request. (HINT: This likely means you aren't using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was sent was not valid JSON. If you have trouble figuring out how to fix this, please contact us through our help center at help.openai.com.)",
            None,
            None,
        )
    };
    let value: Value = serde_json::from_slice(body).map_err(|_| parse_error())?;
    let Value::Object(request) = value else {
        return Err(parse_error());
    };

    let model = match request.get("model") {
        None | Some(Value::Null) => {
            return Err(ApiError::invalid(
                "you must provide a model parameter",
                None,
                None,
            ));
        }
        Some(Value::String(model)) => model.clone(),
        Some(other) => return Err(invalid_type("model", "a string", other)),
    };

    let messages = match request.get("messages") {
        None | Some(Value::Null) => return Err(missing("messages")),
        Some(Value::Array(messages)) if messages.is_empty() => {
            return Err(empty_array("messages"));
        }
        Some(Value::Array(messages)) => messages,
        Some(other) => return Err(invalid_type("messages", "an array", other)),
    };
    let messages = messages
        .iter()
        .enumerate()
        .map(|(i, m)| message(i, m))
        .collect::<Result<Vec<_>, _>>()?;
    check_tool_answers(&messages)?;

    let stream = match request.get("stream") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(stream)) => *stream,
        Some(other) => return Err(invalid_type("stream", "a boolean", other)),
    };
    let include_usage = match request.get("stream_options") {
        None | Some(Value::Null) => false,
        Some(_) if !stream => {
            return Err(ApiError::invalid(
                "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                Some("stream_options".into()),
                None,
            ));
        }
        Some(Value::Object(options)) => match options.get("include_usage") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(include)) => *include,
            Some(other) => {
                return Err(invalid_type(
                    "stream_options.include_usage",
                    "a boolean",
                    other,
                ));
            }
        },
        Some(other) => return Err(invalid_type("stream_options", "an object", other)),
    };

    let tool_names = match request.get("tools") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(tools)) if tools.is_empty() => return Err(empty_array("tools")),
        Some(Value::Array(tools)) => tools
            .iter()
            .enumerate()
            .map(|(i, t)| tool(i, t))
            .collect::<Result<Vec<_>, _>>()?,
        Some(other) => return Err(invalid_type("tools", "an array", other)),
    };
    if request.get("tool_choice").is_some_and(|c| !c.is_null()) && tool_names.is_empty() {
        return Err(ApiError::invalid(
            "Invalid value for 'tool_choice': 'tool_choice' is only allowed when 'tools' are specified.",
            Some("tool_choice".into()),
            None,
        ));
    }

    let response_format = super::response_format::check(&request, body, &messages)?;

    if let Some(temperature) = request.get("temperature").filter(|t| !t.is_null()) {
        let Some(t) = temperature.as_f64() else {
            return Err(invalid_type("temperature", "a number", temperature));
        };
        if t > 2.0 {
            return Err(ApiError::invalid(
                format!(
                    "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got {temperature} instead."
                ),
                Some("temperature".into()),
                Some("decimal_above_max_value"),
            ));
        }
        if t < 0.0 {
            return Err(ApiError::invalid(
                format!(
                    "Invalid 'temperature': decimal below minimum value. Expected a value >= 0, but got {temperature} instead."
                ),
                Some("temperature".into()),
                Some("decimal_below_min_value"),
            ));
        }
    }
    for key in ["max_tokens", "max_completion_tokens"] {
        if let Some(max) = request.get(key).filter(|m| !m.is_null()) {
            let Some(n) = max.as_i64() else {
                return Err(invalid_type(key, "an integer", max));
            };
            if n < 1 {
                return Err(ApiError::invalid(
                    format!(
                        "Invalid '{key}': integer below minimum value. Expected a value >= 1, but got {n} instead."
                    ),
                    Some(key.into()),
                    Some("integer_below_min_value"),
                ));
            }
        }
    }

    Ok(ValidRequest {
        model,
        stream,
        include_usage,
        messages,
        tool_names,
        response_format,
    })
}

fn message(i: usize, value: &Value) -> Result<Message, ApiError> {
    let path = format!("messages[{i}]");
    let Value::Object(m) = value else {
        return Err(invalid_type(&path, "an object", value));
    };
    let role = match m.get("role") {
        None | Some(Value::Null) => return Err(missing(&format!("{path}.role"))),
        Some(Value::String(role)) => match role.as_str() {
            "system" => Role::System,
            "developer" => Role::Developer,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "tool" => Role::Tool,
            "function" => Role::Function,
            other => {
                return Err(ApiError::invalid(
                    format!(
                        "Invalid value: '{other}'. Supported values are: 'system', 'assistant', 'user', 'function', 'tool', and 'developer'."
                    ),
                    Some(format!("{path}.role")),
                    Some("invalid_value"),
                ));
            }
        },
        Some(other) => return Err(invalid_type(&format!("{path}.role"), "a string", other)),
    };

    let tool_calls = match (role, m.get("tool_calls")) {
        (_, None | Some(Value::Null)) => Vec::new(),
        (Role::Assistant, Some(Value::Array(calls))) if calls.is_empty() => {
            return Err(empty_array(&format!("{path}.tool_calls")));
        }
        (Role::Assistant, Some(Value::Array(calls))) => calls
            .iter()
            .enumerate()
            .map(|(j, c)| called_tool(&format!("{path}.tool_calls[{j}]"), c))
            .collect::<Result<Vec<_>, _>>()?,
        (Role::Assistant, Some(other)) => {
            return Err(invalid_type(
                &format!("{path}.tool_calls"),
                "an array",
                other,
            ));
        }
        (_, Some(_)) => {
            return Err(ApiError::invalid(
                format!("Unrecognized request argument supplied: {path}.tool_calls"),
                Some(format!("{path}.tool_calls")),
                Some("unknown_parameter"),
            ));
        }
    };

    let content_path = format!("{path}.content");
    let content = match m.get("content") {
        None | Some(Value::Null) => match role {
            Role::Assistant if !tool_calls.is_empty() => String::new(),
            Role::Assistant => {
                return Err(ApiError::invalid(
                    "Invalid value for 'content': expected a string, got null.",
                    Some(content_path),
                    None,
                ));
            }
            _ => return Err(missing(&content_path)),
        },
        Some(Value::String(text)) => text.clone(),
        Some(Value::Array(parts)) => text_of_parts(&content_path, parts)?,
        Some(other) => {
            return Err(invalid_type(
                &content_path,
                "one of a string or array of objects",
                other,
            ));
        }
    };

    let tool_call_id = match (role, m.get("tool_call_id")) {
        (Role::Tool, None | Some(Value::Null)) => {
            return Err(missing(&format!("{path}.tool_call_id")));
        }
        (Role::Tool, Some(Value::String(id))) => Some(id.clone()),
        (Role::Tool, Some(other)) => {
            return Err(invalid_type(
                &format!("{path}.tool_call_id"),
                "a string",
                other,
            ));
        }
        _ => None,
    };

    Ok(Message {
        role,
        content,
        tool_calls,
        tool_call_id,
    })
}

fn text_of_parts(path: &str, parts: &[Value]) -> Result<String, ApiError> {
    let mut text = String::new();
    for (k, part) in parts.iter().enumerate() {
        let part_path = format!("{path}[{k}]");
        let Value::Object(part) = part else {
            return Err(invalid_type(&part_path, "an object", part));
        };
        match part.get("type") {
            Some(Value::String(kind)) if kind == "text" => match part.get("text") {
                Some(Value::String(t)) => text.push_str(t),
                None | Some(Value::Null) => return Err(missing(&format!("{part_path}.text"))),
                Some(other) => {
                    return Err(invalid_type(
                        &format!("{part_path}.text"),
                        "a string",
                        other,
                    ));
                }
            },
            Some(Value::String(_)) => {}
            None | Some(Value::Null) => return Err(missing(&format!("{part_path}.type"))),
            Some(other) => {
                return Err(invalid_type(
                    &format!("{part_path}.type"),
                    "a string",
                    other,
                ));
            }
        }
    }
    Ok(text)
}

fn called_tool(path: &str, value: &Value) -> Result<CalledTool, ApiError> {
    let Value::Object(call) = value else {
        return Err(invalid_type(path, "an object", value));
    };
    let id = match call.get("id") {
        None | Some(Value::Null) => return Err(missing(&format!("{path}.id"))),
        Some(Value::String(id)) => id.clone(),
        Some(other) => return Err(invalid_type(&format!("{path}.id"), "a string", other)),
    };
    match call.get("type") {
        None | Some(Value::Null) => return Err(missing(&format!("{path}.type"))),
        Some(Value::String(kind)) if kind == "function" => {}
        Some(Value::String(kind)) => {
            return Err(ApiError::invalid(
                format!("Invalid value: '{kind}'. Supported values are: 'function'."),
                Some(format!("{path}.type")),
                Some("invalid_value"),
            ));
        }
        Some(other) => return Err(invalid_type(&format!("{path}.type"), "a string", other)),
    }
    let function_path = format!("{path}.function");
    let function = match call.get("function") {
        None | Some(Value::Null) => return Err(missing(&function_path)),
        Some(Value::Object(function)) => function,
        Some(other) => return Err(invalid_type(&function_path, "an object", other)),
    };
    let name = match function.get("name") {
        None | Some(Value::Null) => return Err(missing(&format!("{function_path}.name"))),
        Some(Value::String(name)) => name.clone(),
        Some(other) => {
            return Err(invalid_type(
                &format!("{function_path}.name"),
                "a string",
                other,
            ));
        }
    };
    let arguments = match function.get("arguments") {
        None | Some(Value::Null) => return Err(missing(&format!("{function_path}.arguments"))),
        Some(Value::String(arguments)) => arguments.clone(),
        Some(other) => {
            return Err(invalid_type(
                &format!("{function_path}.arguments"),
                "a string",
                other,
            ));
        }
    };
    Ok(CalledTool {
        id,
        name,
        arguments,
    })
}

/// Every `tool_calls[].id` must be answered by a `tool` message before any other message, and a
/// `tool` message must answer a call that is waiting.
fn check_tool_answers(messages: &[Message]) -> Result<(), ApiError> {
    let unanswered = |at: usize, ids: &[String]| {
        ApiError::invalid(
            format!(
                "An assistant message with 'tool_calls' must be followed by tool messages responding to each 'tool_call_id'. The following tool_call_ids did not have response messages: {}",
                ids.join(", ")
            ),
            Some(format!("messages.[{at}].role")),
            None,
        )
    };
    // The calls waiting for an answer and the position of the message that made them.
    let mut waiting: Vec<String> = Vec::new();
    let mut asked_at = 0;
    for (i, message) in messages.iter().enumerate() {
        if message.role == Role::Tool {
            let id = message.tool_call_id.as_deref().unwrap_or_default();
            match waiting.iter().position(|w| w == id) {
                Some(k) => {
                    waiting.remove(k);
                }
                None => {
                    return Err(ApiError::invalid(
                        "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with 'tool_calls'.",
                        Some(format!("messages.[{i}].role")),
                        None,
                    ));
                }
            }
            continue;
        }
        if !waiting.is_empty() {
            return Err(unanswered(asked_at, &waiting));
        }
        if !message.tool_calls.is_empty() {
            waiting = message.tool_calls.iter().map(|c| c.id.clone()).collect();
            asked_at = i;
        }
    }
    if !waiting.is_empty() {
        return Err(unanswered(asked_at, &waiting));
    }
    Ok(())
}

/// Checks one `tools[i]` and gives its function name.
fn tool(i: usize, value: &Value) -> Result<String, ApiError> {
    let path = format!("tools[{i}]");
    let Value::Object(tool) = value else {
        return Err(invalid_type(&path, "an object", value));
    };
    match tool.get("type") {
        None | Some(Value::Null) => return Err(missing(&format!("{path}.type"))),
        Some(Value::String(kind)) if kind == "function" => {}
        Some(Value::String(kind)) => {
            return Err(ApiError::invalid(
                format!("Invalid value: '{kind}'. Supported values are: 'function' and 'custom'."),
                Some(format!("{path}.type")),
                Some("invalid_value"),
            ));
        }
        Some(other) => return Err(invalid_type(&format!("{path}.type"), "a string", other)),
    }
    let function_path = format!("{path}.function");
    let function = match tool.get("function") {
        None | Some(Value::Null) => return Err(missing(&function_path)),
        Some(Value::Object(function)) => function,
        Some(other) => return Err(invalid_type(&function_path, "an object", other)),
    };
    let name_path = format!("{function_path}.name");
    let name = match function.get("name") {
        None | Some(Value::Null) => return Err(missing(&name_path)),
        Some(Value::String(name)) => name,
        Some(other) => return Err(invalid_type(&name_path, "a string", other)),
    };
    if name.chars().count() > 64 {
        return Err(ApiError::invalid(
            format!(
                "Invalid '{name_path}': string too long. Expected a string with maximum length 64, but got a string with length {} instead.",
                name.chars().count()
            ),
            Some(name_path),
            Some("string_above_max_length"),
        ));
    }
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return Err(ApiError::invalid(
            format!(
                "Invalid '{name_path}': string does not match pattern. Expected a string that matches the pattern '^[a-zA-Z0-9_-]+$'."
            ),
            Some(name_path),
            Some("invalid_value"),
        ));
    }
    if let Some(parameters) = function.get("parameters").filter(|p| !p.is_null())
        && !parameters.is_object()
    {
        return Err(invalid_type(
            &format!("{function_path}.parameters"),
            "an object",
            parameters,
        ));
    }
    Ok(name.clone())
}

pub(super) fn missing(param: &str) -> ApiError {
    ApiError::invalid(
        format!("Missing required parameter: '{param}'."),
        Some(param.to_owned()),
        Some("missing_required_parameter"),
    )
}

fn empty_array(param: &str) -> ApiError {
    ApiError::invalid(
        format!(
            "Invalid '{param}': empty array. Expected an array with minimum length 1, but got an empty array instead."
        ),
        Some(param.to_owned()),
        Some("empty_array"),
    )
}

pub(super) fn invalid_type(param: &str, expected: &str, got: &Value) -> ApiError {
    let got = match got {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a decimal",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    ApiError::invalid(
        format!("Invalid type for '{param}': expected {expected}, but got {got} instead."),
        Some(param.to_owned()),
        Some("invalid_type"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(body: Value) -> Result<ValidRequest, ApiError> {
        validate(&serde_json::to_vec(&body).unwrap())
    }

    fn rejected(body: Value) -> ApiError {
        check(body).expect_err("should be rejected")
    }

    fn call(id: &str, arguments: Value) -> Value {
        json!({"id": id, "type": "function", "function": {"name": "get_weather", "arguments": arguments}})
    }

    #[test]
    fn a_full_tool_round_trip_is_valid() {
        let request = check(json!({
            "model": "gpt-4o-mini",
            "stream": true,
            "stream_options": {"include_usage": true},
            "temperature": 0.7,
            "max_tokens": 300,
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "Weather in Paris?"}]},
                {"role": "assistant", "content": null, "tool_calls": [call("call_1", json!("{\"city\":\"Paris\"}")), call("call_2", json!("{}"))]},
                {"role": "tool", "tool_call_id": "call_2", "content": "{}"},
                {"role": "tool", "tool_call_id": "call_1", "content": "{\"summary\":\"sunny\"}"},
                {"role": "assistant", "content": "Sunny."},
                {"role": "user", "content": "Thanks"}
            ],
            "tools": [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}],
            "tool_choice": "auto"
        }))
        .unwrap();
        assert!(request.stream && request.include_usage);
        assert_eq!(request.tool_names, ["get_weather"]);
        assert_eq!(request.messages[1].content, "Weather in Paris?");
        assert_eq!(
            request.messages[2].tool_calls[0].arguments,
            "{\"city\":\"Paris\"}"
        );
    }

    #[test]
    fn body_model_and_messages_are_required() {
        assert!(
            validate(b"{not json")
                .unwrap_err()
                .message
                .starts_with("We could not parse")
        );
        assert_eq!(
            rejected(json!({"messages": [{"role": "user", "content": "x"}]})).message,
            "you must provide a model parameter"
        );
        let e = rejected(json!({"model": "m"}));
        assert_eq!(e.code, Some("missing_required_parameter"));
        let e = rejected(json!({"model": "m", "messages": []}));
        assert_eq!(e.code, Some("empty_array"));
        assert_eq!(e.param.as_deref(), Some("messages"));
    }

    #[test]
    fn roles_and_contents_are_checked() {
        let e = rejected(json!({"model": "m", "messages": [{"role": "bot", "content": "x"}]}));
        assert_eq!(e.param.as_deref(), Some("messages[0].role"));
        assert_eq!(e.code, Some("invalid_value"));
        let e = rejected(json!({"model": "m", "messages": [{"role": "user"}]}));
        assert_eq!(e.param.as_deref(), Some("messages[0].content"));
        let e =
            rejected(json!({"model": "m", "messages": [{"role": "assistant", "content": null}]}));
        assert_eq!(
            e.message,
            "Invalid value for 'content': expected a string, got null."
        );
        let e = rejected(json!({"model": "m", "messages": [{"role": "tool", "content": "x"}]}));
        assert_eq!(e.param.as_deref(), Some("messages[0].tool_call_id"));
    }

    #[test]
    fn unanswered_tool_calls_are_rejected() {
        let e = rejected(json!({"model": "m", "messages": [
            {"role": "user", "content": "x"},
            {"role": "assistant", "content": null, "tool_calls": [call("call_1", json!("{}")), call("call_2", json!("{}"))]},
            {"role": "tool", "tool_call_id": "call_1", "content": "ok"},
            {"role": "user", "content": "and?"}
        ]}));
        assert_eq!(e.status, StatusCode::BAD_REQUEST);
        assert!(e.message.starts_with(
            "An assistant message with 'tool_calls' must be followed by tool messages"
        ));
        assert!(e.message.ends_with("call_2"));
        assert_eq!(e.param.as_deref(), Some("messages.[1].role"));

        // Unanswered at the end of the conversation too.
        let e = rejected(json!({"model": "m", "messages": [
            {"role": "assistant", "content": null, "tool_calls": [call("call_1", json!("{}"))]}
        ]}));
        assert!(e.message.ends_with("call_1"));
    }

    #[test]
    fn a_tool_message_must_answer_a_waiting_call() {
        let e = rejected(json!({"model": "m", "messages": [
            {"role": "user", "content": "x"},
            {"role": "tool", "tool_call_id": "call_9", "content": "ok"}
        ]}));
        assert!(
            e.message
                .contains("must be a response to a preceeding message with 'tool_calls'")
        );
        assert_eq!(e.param.as_deref(), Some("messages.[1].role"));
    }

    #[test]
    fn arguments_must_be_a_string() {
        let e = rejected(json!({"model": "m", "messages": [
            {"role": "assistant", "content": null, "tool_calls": [call("call_1", json!({"city": "Paris"}))]},
            {"role": "tool", "tool_call_id": "call_1", "content": "ok"}
        ]}));
        assert_eq!(
            e.message,
            "Invalid type for 'messages[0].tool_calls[0].function.arguments': expected a string, but got an object instead."
        );
        assert_eq!(e.code, Some("invalid_type"));
    }

    #[test]
    fn tools_need_a_function_type_and_a_valid_name() {
        let base = |tools: Value| json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tools": tools});
        let e = rejected(base(json!([{"function": {"name": "f"}}])));
        assert_eq!(e.message, "Missing required parameter: 'tools[0].type'.");
        let e = rejected(base(json!([{"type": "fn", "function": {"name": "f"}}])));
        assert_eq!(e.code, Some("invalid_value"));
        let e = rejected(base(json!([{"type": "function", "function": {}}])));
        assert_eq!(e.param.as_deref(), Some("tools[0].function.name"));
        let e = rejected(base(
            json!([{"type": "function", "function": {"name": "get weather"}}]),
        ));
        assert!(e.message.contains("does not match pattern"));
        let e = rejected(base(json!([])));
        assert_eq!(e.code, Some("empty_array"));
        let e = rejected(
            json!({"model": "m", "messages": [{"role": "user", "content": "x"}], "tool_choice": "auto"}),
        );
        assert_eq!(e.param.as_deref(), Some("tool_choice"));
    }

    #[test]
    fn sampling_and_stream_options_are_checked() {
        let user = json!([{"role": "user", "content": "x"}]);
        let e = rejected(json!({"model": "m", "messages": user, "temperature": 3}));
        assert_eq!(e.code, Some("decimal_above_max_value"));
        let e = rejected(json!({"model": "m", "messages": user, "max_tokens": 0}));
        assert_eq!(e.code, Some("integer_below_min_value"));
        let e = rejected(
            json!({"model": "m", "messages": user, "stream_options": {"include_usage": true}}),
        );
        assert_eq!(e.param.as_deref(), Some("stream_options"));
        let e = rejected(json!({"model": "m", "messages": user, "stream": "yes"}));
        assert_eq!(e.code, Some("invalid_type"));
    }

    #[test]
    fn the_error_body_has_openai_shape() {
        let e = ApiError::invalid("bad", Some("messages".into()), Some("empty_array"));
        assert_eq!(
            e.body(),
            json!({"error": {"message": "bad", "type": "invalid_request_error", "param": "messages", "code": "empty_array"}})
        );
    }
}
