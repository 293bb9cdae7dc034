//! The conversations API (seed 004): a person talks to the bot of a function (today
//! `customer_support`) that gathers a structured case. Each message runs two steps on the agent
//! core: the case is extracted from the whole conversation with the structured-output engine
//! (what was already found is kept: an extraction that misses a field never erases it), then the
//! bot answers, told what it already has (so it confirms and never asks again) and what is still
//! missing (so it asks only for that). The history, the case and the messages are stored with
//! the conversation, so any server process can answer the next message. When the case becomes
//! complete it is delivered once to `conversations.case_webhook_url`, signed and retried like
//! every webhook.

pub mod case;
pub mod functions;

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::agent::conversation::{Conversation, ReplyEvent};
use crate::agent::tools::Toolbox;
use crate::analysis::{ExtractError, extract};
use crate::call::CallServices;
use crate::llm::{ChatMessage, ChatModel, LlmEndpoint, LlmError, LlmTimeouts, OpenAiChat};
use crate::store::{ConversationRecord, StoreError, format_timestamp, now_timestamp};
use case::Case;
use functions::{FunctionTemplate, function};

/// Longest message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 10_000;
/// A reply's claim older than this is taken to be abandoned (a crashed process).
const STALE_CLAIM: Duration = Duration::from_secs(5 * 60);
/// The bot's sampling temperature and longest answer: short, steady answers.
const TEMPERATURE: f32 = 0.3;
const MAX_TOKENS: u32 = 300;

/// Why a conversation could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum ConversationError {
    #[error("\"{0}\" is not a valid choice; valid functions: {valid}", valid = functions::function_names().join(", "))]
    UnknownFunction(String),
    #[error("Not found.")]
    NotFound,
    #[error("A reply to this conversation is in progress; send the next message after it.")]
    Busy,
    #[error("The bot's model failed: {0}")]
    Llm(#[from] LlmError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Starts a conversation with the owner's bot for `function`, for `human_user_id` (a new
/// person when `None`).
pub async fn create(
    services: &CallServices,
    owner_id: &str,
    function_name: &str,
    human_user_id: Option<String>,
) -> Result<ConversationRecord, ConversationError> {
    let template = function(function_name)
        .ok_or_else(|| ConversationError::UnknownFunction(function_name.to_owned()))?;
    let bot_id = services
        .store
        .conversation_bot(owner_id, function_name)
        .await?;
    let history = vec![ChatMessage::System {
        content: template.prompt.clone(),
    }];
    let record = ConversationRecord {
        id: uuid::Uuid::new_v4().to_string(),
        owner_id: owner_id.to_owned(),
        function: function_name.to_owned(),
        bot_id,
        human_user_id: human_user_id.unwrap_or_else(|| uuid::Uuid::new_v4().to_string()),
        history: serde_json::to_string(&history).expect("messages serialise"),
        case_data: Case::empty(template).to_value().to_string(),
        complete: false,
        completed_at: None,
        created_at: now_timestamp(),
        updated_at: now_timestamp(),
    };
    services.store.insert_conversation(&record).await?;
    metrics::counter!(crate::metrics::CONVERSATIONS_CREATED, "function" => function_name.to_owned())
        .increment(1);
    Ok(record)
}

/// Answers `text` in the owner's conversation: extracts the case, then the bot's message.
/// On a model failure nothing is kept: the message can be sent again.
pub async fn message(
    services: &CallServices,
    owner_id: &str,
    id: &str,
    text: &str,
) -> Result<String, ConversationError> {
    let store = &services.store;
    let record = store
        .get_conversation(owner_id, id)
        .await?
        .ok_or(ConversationError::NotFound)?;
    let template = function(&record.function).ok_or(ConversationError::NotFound)?;
    let stale = format_timestamp(time::OffsetDateTime::now_utc() - STALE_CLAIM);
    if !store.claim_conversation(id, &stale).await? {
        return Err(ConversationError::Busy);
    }
    let answered = answer(services, &record, template, text).await;
    let (bot_message, history, case) = match answered {
        Ok(answer) => answer,
        Err(e) => {
            store.release_conversation(id).await?;
            return Err(e);
        }
    };
    let newly_complete = store
        .save_conversation_reply(
            id,
            &serde_json::to_string(&history).expect("messages serialise"),
            &case.to_value().to_string(),
            case.complete(),
            &[("human", text), ("bot", &bot_message)],
        )
        .await?;
    metrics::counter!(crate::metrics::CONVERSATION_MESSAGES).increment(1);
    if newly_complete {
        deliver_case(services, &record, &case).await;
    }
    Ok(bot_message)
}

/// The bot's answer to `text`, the history with it, and the case as now known.
async fn answer(
    services: &CallServices,
    record: &ConversationRecord,
    template: &FunctionTemplate,
    text: &str,
) -> Result<(String, Vec<ChatMessage>, Case), ConversationError> {
    let mut history: Vec<ChatMessage> = serde_json::from_str(&record.history)
        .map_err(|e| StoreError::Corrupt(format!("conversation history: {e}")))?;
    let stored_case = serde_json::from_str(&record.case_data)
        .map_err(|e| StoreError::Corrupt(format!("conversation case: {e}")))?;
    let mut case = Case::from_value(template, &stored_case);
    let llm = model(services)?;

    history.push(ChatMessage::User {
        content: text.to_owned(),
    });
    match extract(
        llm.as_ref(),
        extraction_request(template, &history),
        &format!("{}_case", template.name),
        &template.schema,
    )
    .await
    {
        Ok(found) => case.merge(&found),
        // A model that cannot fill the schema this time leaves the case as it was; the next
        // message tries again.
        Err(ExtractError::Invalid { errors, .. }) => {
            tracing::warn!(errors = ?errors, "case extraction did not match its schema");
        }
        Err(ExtractError::Schema(why)) => tracing::error!(why, "case schema unusable"),
        Err(ExtractError::Llm(e)) => return Err(e.into()),
    }
    history.pop();

    // The bot sees the case as it stands now, in its instructions for this answer only.
    let mut briefed = history.clone();
    briefed[0] = ChatMessage::System {
        content: format!("{}{}", template.prompt, case.briefing(template)),
    };
    let mut conversation = Conversation::resume(
        Toolbox::none(),
        TEMPERATURE,
        MAX_TOKENS,
        briefed,
        Arc::clone(&llm),
        services.egress.clone(),
    );
    conversation.push_user(text);
    conversation.start_reply();
    let mut reply = String::new();
    loop {
        match conversation.next().await.1 {
            ReplyEvent::Text(piece) => reply.push_str(&piece),
            ReplyEvent::Done => break,
            ReplyEvent::Failed(error) => return Err(error.into()),
            _ => {}
        }
    }
    let reply = reply.trim().to_owned();
    history.push(ChatMessage::User {
        content: text.to_owned(),
    });
    history.push(ChatMessage::Assistant {
        content: Some(reply.clone()),
        tool_calls: vec![],
    });
    Ok((reply, history, case))
}

/// The extraction request: what to find, and the conversation as a transcript.
fn extraction_request(template: &FunctionTemplate, history: &[ChatMessage]) -> Vec<ChatMessage> {
    let fields: Vec<String> = template
        .field_names()
        .into_iter()
        .map(|name| format!("- {name}: {}", template.fields[name]))
        .collect();
    let transcript: Vec<String> = history
        .iter()
        .filter_map(|m| match m {
            ChatMessage::User { content } => Some(format!("customer: {content}")),
            ChatMessage::Assistant {
                content: Some(content),
                ..
            } => Some(format!("assistant: {content}")),
            _ => None,
        })
        .collect();
    vec![
        ChatMessage::System {
            content: format!(
                "You read a customer support conversation (the next message, one line per turn) \
                 and fill in the case as JSON matching the schema. Use only what the customer \
                 said; a field the customer has not given yet is null.\n{}",
                fields.join("\n")
            ),
        },
        ChatMessage::User {
            content: transcript.join("\n"),
        },
    ]
}

/// The server's own model (a conversation has no assistant of the owner's behind it).
fn model(services: &CallServices) -> Result<Arc<dyn ChatModel>, LlmError> {
    let endpoint = LlmEndpoint::resolve(&Default::default(), &services.config.llm);
    Ok(Arc::new(OpenAiChat::new(
        services.http.clone(),
        endpoint,
        LlmTimeouts::default(),
    )?))
}

/// Sends the completed case to the configured receiver, once.
async fn deliver_case(services: &CallServices, record: &ConversationRecord, case: &Case) {
    metrics::counter!(crate::metrics::CONVERSATION_CASES_COMPLETED).increment(1);
    let url = &services.config.conversations.case_webhook_url;
    if url.is_empty() {
        return;
    }
    let payload = json!({
        "event": "conversation.case_completed",
        "conversation_id": record.id,
        "bot_id": record.bot_id,
        "human_user_id": record.human_user_id,
        "function": record.function,
        "case": case.to_value(),
        "completed_at": now_timestamp(),
    });
    if let Err(e) = services.webhooks.enqueue(&record.id, url, &payload).await {
        tracing::error!(error = %e, "completed case not queued for delivery");
    }
}
