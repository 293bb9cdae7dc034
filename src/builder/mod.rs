//! The assistant builder (seed 000): the server's own LLM writes an assistant's system prompt
//! from a one-line description, in the seed's structure — a task definition, a numbered
//! description of what the assistant will do, the deliverable, two example responses, and
//! further instructions. Asked to also create the assistant, the same invocation has the model
//! write its name, description and start instruction as one schema-checked JSON document.
//!
//! Everything an invocation asks of the model shares one deadline
//! (`assistant_builder.timeout_secs`), so a stalled provider costs the client a 502, not a hang.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::analysis::{ExtractError, extract};
use crate::config::Config;
use crate::generation::Generation;
use crate::llm::openai::OpenAiChat;
use crate::llm::{
    ChatMessage, ChatModel, ChatRequest, LlmEndpoint, LlmError, LlmEvent, LlmTimeouts,
};

/// Longest description taken, in characters.
pub const MAX_INPUT_CHARS: usize = 2_000;
/// Longest prompt asked for, in tokens.
const PROMPT_MAX_TOKENS: u32 = 2_000;
/// Longest wait for a first token; a builder's prompt is a long answer, but it must start.
const FIRST_TOKEN: Duration = Duration::from_secs(30);

/// The builder's instructions. The sim's script recognises its request by the phrase
/// "voxbridge assistant builder" (`fixtures/sim/openai_default.json`).
const INSTRUCTIONS: &str = "You are the voxbridge assistant builder. The user describes an AI \
assistant in a sentence; you write that assistant's system prompt. Answer with the system prompt \
only (no preamble), in Markdown, in exactly this structure:\n\
1. The line \"You are an assistant that performs the following task:\", then \"Here is a task \
definition:\" and a bold title \"**Task: <short task name>**\" followed by one paragraph that \
defines the task.\n\
2. \"**Description:** In this task, the assistant will:\" followed by a numbered list of 4 to 7 \
concrete steps.\n\
3. \"**Deliverable:**\" and one sentence naming what the assistant produces.\n\
4. A section \"## Example Responses\" with exactly two examples (\"**Example 1:**\", \"**Example \
2:**\") of what the assistant would answer, realistic and specific to the task.\n\
5. A section \"## Further instructions:\" that ends with: \"Wait for the user input before \
replying. Adapt the example and task to whatever the user input request is.\"\n\
Keep the whole prompt under 4,000 characters.";

/// The name, description and start instruction of an assistant the builder creates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Details {
    pub name: String,
    pub description: String,
    pub start_instruction: String,
}

/// What one invocation wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Built {
    pub prompt: String,
    /// Asked for when the invocation also creates an assistant.
    pub details: Option<Details>,
}

/// Why the builder wrote nothing usable.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BuilderError {
    #[error("{0}")]
    Llm(#[from] LlmError),
    #[error("the model did not finish within {0} s")]
    Timeout(u64),
    #[error("the model answered with an empty prompt")]
    EmptyPrompt,
    #[error("the model's name and description for the assistant were unusable: {0}")]
    Details(String),
}

impl From<ExtractError> for BuilderError {
    fn from(e: ExtractError) -> Self {
        match e {
            ExtractError::Llm(e) => BuilderError::Llm(e),
            other => BuilderError::Details(other.to_string()),
        }
    }
}

/// Writes a prompt from `description` with the server's own model, and with `details` also the
/// assistant's name, description and start instruction, all within the configured deadline.
pub async fn build(
    config: &Config,
    http: &reqwest::Client,
    description: &str,
    details: bool,
) -> Result<Built, BuilderError> {
    let deadline = Duration::from_secs(config.assistant_builder.timeout_secs.max(1));
    let endpoint = LlmEndpoint::resolve(&Default::default(), &config.llm);
    let timeouts = LlmTimeouts {
        first_token: FIRST_TOKEN.min(deadline),
        total: deadline,
    };
    let llm: Arc<dyn ChatModel> = Arc::new(OpenAiChat::new(http.clone(), endpoint, timeouts)?);
    let work = async {
        let prompt = write_prompt(llm.as_ref(), description).await?;
        let details = if details {
            Some(write_details(llm.as_ref(), description, &prompt).await?)
        } else {
            None
        };
        Ok(Built { prompt, details })
    };
    tokio::time::timeout(deadline, work)
        .await
        .unwrap_or(Err(BuilderError::Timeout(deadline.as_secs())))
}

async fn write_prompt(llm: &dyn ChatModel, description: &str) -> Result<String, BuilderError> {
    let messages = [
        ChatMessage::System {
            content: INSTRUCTIONS.to_owned(),
        },
        ChatMessage::User {
            content: description.to_owned(),
        },
    ];
    let mut stream = llm
        .stream(ChatRequest {
            generation: Generation(0),
            messages: &messages,
            tools: &[],
            temperature: 0.5,
            max_tokens: PROMPT_MAX_TOKENS,
            response_format: None,
        })
        .await?;
    let mut prompt = String::new();
    while let Some(event) = stream.next().await {
        match event? {
            LlmEvent::Delta { text, .. } => prompt.push_str(&text),
            LlmEvent::Finished { .. } => break,
            LlmEvent::ToolCalls { .. } => {}
        }
    }
    let prompt = prompt.trim().to_owned();
    if prompt.is_empty() {
        return Err(BuilderError::EmptyPrompt);
    }
    Ok(prompt)
}

/// The JSON Schema of the details: lengths every assistant kind accepts.
fn details_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "assistant_name": {"type": "string", "minLength": 3, "maxLength": 60,
                "description": "A short name for the assistant, two to five words"},
            "assistant_description": {"type": "string", "minLength": 3, "maxLength": 2000,
                "description": "One or two sentences saying what the assistant does"},
            "start_instruction": {"type": "string", "minLength": 1, "maxLength": 200,
                "description": "The assistant's first words to the user, one short sentence"}
        },
        "required": ["assistant_name", "assistant_description", "start_instruction"],
        "additionalProperties": false
    })
}

async fn write_details(
    llm: &dyn ChatModel,
    description: &str,
    prompt: &str,
) -> Result<Details, BuilderError> {
    let messages = vec![
        ChatMessage::System {
            content: format!(
                "You name AI assistants. Given the description the user wrote (next message) and \
                 the system prompt written for it (below), answer a JSON document with the \
                 assistant's name, a one- or two-sentence description, and the first sentence it \
                 says to a user.\n\nSystem prompt:\n{prompt}"
            ),
        },
        ChatMessage::User {
            content: description.to_owned(),
        },
    ];
    let document = extract(llm, messages, "assistant_details", &details_schema()).await?;
    let text = |key: &str| {
        document[key]
            .as_str()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .ok_or_else(|| BuilderError::Details(format!("{key} is missing")))
    };
    Ok(Details {
        name: text("assistant_name")?,
        description: text("assistant_description")?,
        start_instruction: text("start_instruction")?,
    })
}
