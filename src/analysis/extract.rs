//! The structured-output engine: one streamed request with `response_format: json_schema`, the
//! answer checked by a JSON Schema validator (not by trusting the provider's "strict" mode, which
//! many OpenAI-compatible servers ignore), and one retry that shows the model what was wrong.

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::generation::Generation;
use crate::llm::{ChatMessage, ChatModel, ChatRequest, LlmError, LlmEvent};

/// Longest answer asked for; analyses are short documents.
const MAX_TOKENS: u32 = 1_024;
/// Validation errors shown to the model on the retry.
const MAX_ERRORS_SHOWN: usize = 8;

/// Why no valid document came back.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ExtractError {
    #[error("the schema cannot be used: {0}")]
    Schema(String),
    #[error(transparent)]
    Llm(#[from] LlmError),
    /// Both answers failed validation; `last` is the second answer as parsed, if it parsed.
    #[error("the answer does not match the schema: {}", errors.join("; "))]
    Invalid {
        errors: Vec<String>,
        last: Option<Value>,
    },
}

/// The `response_format` of a request for a document matching `schema`. Not `strict`: strict
/// mode refuses most real-world schemas (every property required, no open objects), and the
/// answer is validated here anyway.
pub fn response_format(name: &str, schema: &Value) -> Value {
    json!({
        "type": "json_schema",
        "json_schema": {"name": name, "schema": schema, "strict": false}
    })
}

/// Asks `llm` for a document matching `schema`, given `messages` (the instructions and the
/// material), validates it, and retries once with the validation errors.
pub async fn extract(
    llm: &dyn ChatModel,
    mut messages: Vec<ChatMessage>,
    name: &str,
    schema: &Value,
) -> Result<Value, ExtractError> {
    let validator =
        jsonschema::draft202012::new(schema).map_err(|e| ExtractError::Schema(e.to_string()))?;
    let format = response_format(name, schema);
    let mut errors = Vec::new();
    let mut last = None;
    for attempt in 0..2 {
        let text = complete(llm, &messages, &format).await?;
        let parsed = parse_document(&text);
        errors = match &parsed {
            Err(why) => vec![why.clone()],
            Ok(document) => validator
                .iter_errors(document)
                .take(MAX_ERRORS_SHOWN)
                .map(|e| {
                    let at = e.instance_path().to_string();
                    if at.is_empty() {
                        e.to_string()
                    } else {
                        format!("{at}: {e}")
                    }
                })
                .collect(),
        };
        if errors.is_empty() {
            return Ok(parsed.expect("no errors means it parsed"));
        }
        last = parsed.ok();
        if attempt == 0 {
            messages.push(ChatMessage::Assistant {
                content: Some(text),
                tool_calls: vec![],
            });
            messages.push(ChatMessage::User {
                content: format!(
                    "That JSON does not match the required schema:\n- {}\nAnswer again with only \
                     the corrected JSON document.",
                    errors.join("\n- ")
                ),
            });
        }
    }
    Err(ExtractError::Invalid { errors, last })
}

/// One completion's text.
async fn complete(
    llm: &dyn ChatModel,
    messages: &[ChatMessage],
    format: &Value,
) -> Result<String, LlmError> {
    let mut stream = llm
        .stream(ChatRequest {
            generation: Generation(0),
            messages,
            tools: &[],
            temperature: 0.0,
            max_tokens: MAX_TOKENS,
            response_format: Some(format),
        })
        .await?;
    let mut text = String::new();
    while let Some(event) = stream.next().await {
        match event? {
            LlmEvent::Delta { text: piece, .. } => text.push_str(&piece),
            LlmEvent::Finished { .. } => break,
            LlmEvent::ToolCalls { .. } => {}
        }
    }
    Ok(text)
}

/// The JSON document in a model's answer. Models asked for JSON sometimes still wrap it in a
/// Markdown fence or a sentence; the outermost object is taken.
fn parse_document(text: &str) -> Result<Value, String> {
    let trimmed = text.trim();
    if let Ok(value) = serde_json::from_str(trimmed) {
        return Ok(value);
    }
    match (trimmed.find('{'), trimmed.rfind('}')) {
        (Some(start), Some(end)) if start < end => serde_json::from_str(&trimmed[start..=end])
            .map_err(|e| format!("the answer is not valid JSON: {e}")),
        _ => Err("the answer holds no JSON object".to_owned()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::{FinishReason, LlmStream};
    use futures_util::future::BoxFuture;
    use std::sync::Mutex;

    /// Answers each request with the next scripted text and keeps what it was asked.
    struct Scripted {
        answers: Mutex<Vec<String>>,
        asked: Mutex<Vec<(Vec<ChatMessage>, Option<Value>)>>,
    }

    impl Scripted {
        fn new(answers: &[&str]) -> Self {
            Self {
                answers: Mutex::new(answers.iter().rev().map(|s| s.to_string()).collect()),
                asked: Mutex::default(),
            }
        }
    }

    impl ChatModel for Scripted {
        fn stream(
            &self,
            request: ChatRequest<'_>,
        ) -> BoxFuture<'static, Result<LlmStream, LlmError>> {
            self.asked
                .lock()
                .unwrap()
                .push((request.messages.to_vec(), request.response_format.cloned()));
            let text = self.answers.lock().unwrap().pop().unwrap_or_default();
            let generation = request.generation;
            let events = vec![
                Ok(LlmEvent::Delta { generation, text }),
                Ok(LlmEvent::Finished {
                    generation,
                    reason: FinishReason::Stop,
                    usage: None,
                }),
            ];
            Box::pin(async move { Ok(futures_util::stream::iter(events).boxed()) })
        }
    }

    fn schema() -> Value {
        json!({"type": "object", "properties": {"order": {"type": "string", "pattern": "^A\\d+$"}},
               "required": ["order"], "additionalProperties": false})
    }

    fn prompt() -> Vec<ChatMessage> {
        vec![ChatMessage::User {
            content: "order A123".into(),
        }]
    }

    #[tokio::test]
    async fn a_valid_answer_is_returned_as_is() {
        let llm = Scripted::new(&["```json\n{\"order\": \"A123\"}\n```"]);
        let value = extract(&llm, prompt(), "case", &schema()).await.unwrap();
        assert_eq!(value, json!({"order": "A123"}));
        let asked = llm.asked.lock().unwrap();
        assert_eq!(asked.len(), 1);
        assert_eq!(
            asked[0].1.as_ref().unwrap()["json_schema"]["schema"],
            schema()
        );
    }

    #[tokio::test]
    async fn an_invalid_answer_is_retried_once_with_its_errors() {
        let llm = Scripted::new(&[r#"{"order": "123"}"#, r#"{"order": "A1"}"#]);
        let value = extract(&llm, prompt(), "case", &schema()).await.unwrap();
        assert_eq!(value["order"], "A1");
        let asked = llm.asked.lock().unwrap();
        let retry = &asked[1].0;
        assert_eq!(retry.len(), 3, "the first answer and the errors were added");
        let ChatMessage::User { content } = &retry[2] else {
            panic!("{retry:?}")
        };
        assert!(content.contains("/order"), "{content}");
    }

    #[tokio::test]
    async fn two_invalid_answers_are_an_error_that_keeps_the_last() {
        let llm = Scripted::new(&["not json", r#"{"order": 5}"#]);
        let err = extract(&llm, prompt(), "case", &schema())
            .await
            .unwrap_err();
        let ExtractError::Invalid { errors, last } = err else {
            panic!("{err:?}")
        };
        assert_eq!(last, Some(json!({"order": 5})));
        assert!(!errors.is_empty());
    }
}
