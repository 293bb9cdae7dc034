//! Text chats on the same agent core as calls. A chat is stored as a call with direction `chat`
//! (record, transcript, analysis and the end webhook, event `chat.ended`, work as a call's);
//! the model's whole history lives in `chat_histories`, so a message can be answered by any
//! server process, and a restart loses nothing. Each message claims the chat for the time of
//! its reply, so two messages sent at once cannot both extend the same history.
//!
//! A reply is the [`Conversation`] of a call without audio: the same prompt, model, HTTP tools
//! and `end_call` (which ends the chat); `transfer_call` is not offered.

mod idle;

pub use idle::spawn_idle_sweeper;

use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::agent::conversation::{Action, Conversation, ConversationSetup, ReplyEvent};
use crate::agent::tools::Toolbox;
use crate::assistant::{Assistant, FirstMessageMode, HttpTool};
use crate::call::CallServices;
use crate::call::providers;
use crate::call::report::queue_report;
use crate::call::setup::{CallDraft, prepare_call};
use crate::llm::{ChatMessage, LlmError};
use crate::store::{
    CallRecord, CallStatus, Direction, StoreError, TurnRecord, TurnTiming, format_timestamp,
    now_timestamp,
};

/// Longest message a chat takes, in characters.
pub const MAX_MESSAGE_CHARS: usize = 10_000;
/// A reply's claim on its chat older than this is taken to be abandoned (a crashed process).
const STALE_CLAIM: Duration = Duration::from_secs(5 * 60);

/// Why a chat could not do what was asked.
#[derive(Debug, thiserror::Error)]
pub enum ChatError {
    #[error("chat not found")]
    NotFound,
    #[error("the chat has ended")]
    Ended,
    #[error("a reply to this chat is in progress")]
    Busy,
    #[error("the assistant's model failed: {0}")]
    Llm(#[from] LlmError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why a chat ended; stored as its end reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChatEnd {
    /// The assistant called `end_call`.
    AssistantEnded,
    /// `POST /chat/end/{chat_id}`.
    EndedByApi,
    /// Nothing was said for `chat_idle_timeout_secs`.
    IdleTimeout,
}

impl ChatEnd {
    pub fn as_str(self) -> &'static str {
        match self {
            ChatEnd::AssistantEnded => "assistant_ended_chat",
            ChatEnd::EndedByApi => "ended_by_api",
            ChatEnd::IdleTimeout => "idle_timeout",
        }
    }
}

/// One message of a chat as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatLine {
    /// `assistant` or `user`.
    pub role: &'static str,
    pub text: String,
}

/// A chat just created.
#[derive(Debug, Clone)]
pub struct CreatedChat {
    pub chat: CallRecord,
    /// The assistant's first message, when it speaks first.
    pub messages: Vec<ChatLine>,
}

/// A reply to a message.
#[derive(Debug, Clone)]
pub struct Replied {
    pub messages: Vec<ChatLine>,
    /// The assistant ended the chat with this reply.
    pub ended: bool,
}

/// Creates a chat with `assistant`, its texts rendered with `metadata`; when the assistant
/// speaks first, its greeting (the start instruction, or the model's) is the first message.
pub async fn create(
    services: &CallServices,
    assistant: &Assistant,
    tools: Vec<HttpTool>,
    metadata: Value,
) -> Result<CreatedChat, ChatError> {
    let mut prepared = prepare_call(CallDraft {
        assistant,
        direction: Direction::Chat,
        trunk_id: None,
        from_number: None,
        to_number: None,
        metadata,
        status: CallStatus::Queued,
        provider_call_sid: None,
        token_ttl: Duration::ZERO,
    });
    // A chat has no media stream to authenticate.
    prepared.call.stream_token_hash = None;
    prepared.call.stream_token_expires_at = None;
    let store = &services.store;
    store.insert_call(&prepared.call).await?;
    let id = prepared.call.id.clone();
    store
        .advance_call_status(&id, CallStatus::InProgress, None)
        .await?;
    let chat = store
        .get_call_any_owner(&id)
        .await?
        .ok_or(ChatError::NotFound)?;
    let mcp = crate::call::runner::mcp_toolset(services, assistant).await;
    let catalog = crate::call::runner::catalog_tools(services, assistant, false).await;
    let mut conversation =
        conversation_for(services, &chat, assistant, tools, (mcp, catalog), None)?;
    let mut messages = Vec::new();
    let mut turns = Vec::new();
    if assistant.settings.first_message_mode == FirstMessageMode::AssistantSpeaksFirst {
        match chat.rendered_start_instruction.as_deref() {
            Some(text) if !text.trim().is_empty() => {
                conversation.say(text);
                turns.push(("assistant", text.to_owned()));
            }
            _ => {
                let at = offset_since(chat.started_at.as_deref().unwrap_or(&chat.created_at));
                let reply = run_reply(&mut conversation, None, at).await;
                let Outcome { lines, timing, .. } = reply?;
                record_timing(services, &chat, timing).await?;
                turns.extend(lines.iter().map(|(role, text)| (*role, text.clone())));
            }
        }
        messages = turns
            .iter()
            .filter(|(role, _)| *role == "assistant")
            .map(|(role, text)| ChatLine {
                role,
                text: text.clone(),
            })
            .collect();
    }
    store
        .insert_chat_history(&id, &history_json(conversation.history()))
        .await?;
    record(services, &chat, &turns).await?;
    metrics::counter!(crate::metrics::CHATS_CREATED).increment(1);
    Ok(CreatedChat { chat, messages })
}

/// Answers `text` in the owner's chat; `deltas`, if given, receives the reply's text as it
/// streams. On a model failure nothing is kept: the message can be sent again.
pub async fn reply(
    services: &CallServices,
    owner_id: &str,
    chat_id: &str,
    text: &str,
    deltas: Option<mpsc::Sender<String>>,
) -> Result<Replied, ChatError> {
    let store = &services.store;
    let chat = open_chat(services, owner_id, chat_id).await?;
    let stale = format_timestamp(time::OffsetDateTime::now_utc() - STALE_CLAIM);
    let history = store
        .claim_chat_reply(chat_id, &stale)
        .await?
        .ok_or(ChatError::Busy)?;
    let result = reply_claimed(services, &chat, &history, text, deltas).await;
    if result.is_err() {
        store.release_chat_reply(chat_id).await?;
    }
    let replied = result?;
    metrics::counter!(crate::metrics::CHAT_MESSAGES).increment(1);
    if replied.ended {
        end_chat(services, &chat, ChatEnd::AssistantEnded).await?;
    }
    Ok(replied)
}

async fn reply_claimed(
    services: &CallServices,
    chat: &CallRecord,
    history: &str,
    text: &str,
    deltas: Option<mpsc::Sender<String>>,
) -> Result<Replied, ChatError> {
    let (assistant, tools) = services
        .store
        .assistant_with_tools(&chat.owner_id, &chat.assistant_id)
        .await?
        .ok_or(ChatError::NotFound)?;
    let history: Vec<ChatMessage> = serde_json::from_str(history)
        .map_err(|e| StoreError::Corrupt(format!("chat history: {e}")))?;
    let mcp = crate::call::runner::mcp_toolset(services, &assistant).await;
    let catalog = crate::call::runner::catalog_tools(services, &assistant, false).await;
    let mut conversation = conversation_for(
        services,
        chat,
        &assistant,
        tools,
        (mcp, catalog),
        Some(history),
    )?;
    conversation.push_user(text);
    let at = offset_since(chat.started_at.as_deref().unwrap_or(&chat.created_at));
    let outcome = run_reply(&mut conversation, deltas, at).await?;
    record_timing(services, chat, outcome.timing.clone()).await?;
    services
        .store
        .save_chat_reply(&chat.id, &history_json(conversation.history()))
        .await?;
    let mut turns = vec![("user", text.to_owned())];
    turns.extend(
        outcome
            .lines
            .iter()
            .map(|(role, text)| (*role, text.clone())),
    );
    record(services, chat, &turns).await?;
    Ok(Replied {
        messages: outcome
            .lines
            .into_iter()
            .filter(|(role, _)| *role == "assistant")
            .map(|(role, text)| ChatLine { role, text })
            .collect(),
        ended: outcome.ended,
    })
}

/// Ends the owner's chat; `Ended` if it already had.
pub async fn end(
    services: &CallServices,
    owner_id: &str,
    chat_id: &str,
    why: ChatEnd,
) -> Result<(), ChatError> {
    let chat = open_chat(services, owner_id, chat_id).await?;
    if end_chat(services, &chat, why).await? {
        Ok(())
    } else {
        Err(ChatError::Ended)
    }
}

/// The owner's chat, if it exists and has not ended.
async fn open_chat(
    services: &CallServices,
    owner_id: &str,
    chat_id: &str,
) -> Result<CallRecord, ChatError> {
    let chat = services
        .store
        .get_call(owner_id, chat_id)
        .await?
        .filter(|c| c.direction == Direction::Chat)
        .ok_or(ChatError::NotFound)?;
    if chat.status == CallStatus::Completed {
        return Err(ChatError::Ended);
    }
    Ok(chat)
}

/// Marks the chat ended and sends its report (with its analysis, if the assistant wants one).
/// Answers false if it had already ended.
async fn end_chat(
    services: &CallServices,
    chat: &CallRecord,
    why: ChatEnd,
) -> Result<bool, ChatError> {
    let ended = services
        .store
        .advance_call_status(&chat.id, CallStatus::Completed, Some(why.as_str()))
        .await?;
    if ended {
        metrics::counter!(crate::metrics::CHATS_ENDED, "reason" => why.as_str()).increment(1);
        queue_report(services, &chat.id).await;
    }
    Ok(ended)
}

fn conversation_for(
    services: &CallServices,
    chat: &CallRecord,
    assistant: &Assistant,
    tools: Vec<HttpTool>,
    (mcp, catalog): (
        std::sync::Arc<crate::mcp::McpToolset>,
        Option<crate::catalog::tools::CatalogTools>,
    ),
    history: Option<Vec<ChatMessage>>,
) -> Result<Conversation, ChatError> {
    let llm = providers::language_model(
        &services.config,
        assistant,
        &services.http,
        &services.egress,
        None,
    )?;
    let setup = ConversationSetup {
        system_prompt: chat.rendered_prompt.clone(),
        toolbox: Toolbox::new(tools, false)
            .with_mcp(mcp)
            .with_catalog(catalog),
        temperature: assistant.settings.llm.temperature,
        max_tokens: assistant.settings.llm.max_tokens,
    };
    Ok(match history {
        None => Conversation::new(setup, llm, services.egress.clone()),
        Some(history) => Conversation::resume(
            setup.toolbox,
            setup.temperature,
            setup.max_tokens,
            history,
            llm,
            services.egress.clone(),
        ),
    })
}

/// What one reply said, as transcript lines (`assistant` texts and `tool` calls), in order.
struct Outcome {
    lines: Vec<(&'static str, String)>,
    ended: bool,
    /// The reply's timings (numbered when recorded).
    timing: TurnTiming,
}

/// Runs a reply that starts `at_ms` after the chat's start (the clock of its timings).
async fn run_reply(
    conversation: &mut Conversation,
    deltas: Option<mpsc::Sender<String>>,
    at_ms: i64,
) -> Result<Outcome, ChatError> {
    let started = Instant::now();
    let ms = |at: Instant| at_ms + i64::try_from((at - started).as_millis()).unwrap_or(i64::MAX);
    let mut timing = TurnTiming {
        source: "model".to_owned(),
        outcome: "heard".to_owned(),
        started_ms: at_ms,
        ..TurnTiming::default()
    };
    timing.stamps.llm_request_ms = Some(at_ms);
    conversation.start_reply();
    let mut lines = Vec::new();
    let mut text = String::new();
    let mut ended = false;
    loop {
        let (_, event) = conversation.next().await;
        match event {
            ReplyEvent::FirstToken { after } => {
                crate::metrics::stage("llm_first_token", after.as_secs_f64());
                timing
                    .stamps
                    .llm_first_token_ms
                    .get_or_insert_with(|| ms(Instant::now()));
            }
            ReplyEvent::Text(piece) => {
                if let Some(deltas) = &deltas {
                    // A client that went away does not stop the reply: it is still stored.
                    let _ = deltas.send(piece.clone()).await;
                }
                text.push_str(&piece);
            }
            ReplyEvent::ToolsCalled => flush(&mut text, &mut lines),
            ReplyEvent::ToolResult {
                name,
                arguments,
                result,
                took,
            } => {
                let now = Instant::now();
                timing.tools.push(crate::call::timing::tool_record(
                    &name,
                    &arguments,
                    &result,
                    ms(now.checked_sub(took).unwrap_or(now)),
                    took,
                ));
                lines.push(("tool", format!("{name}({arguments}) -> {result}")));
            }
            ReplyEvent::Action(Action::End { .. }) => ended = true,
            // A chat is offered only `search_products`; nothing is shown from a catalog.
            ReplyEvent::Recommended(_) => {}
            // Not offered to chats; a model that calls it anyway was answered with an error.
            ReplyEvent::Action(Action::Transfer { .. } | Action::SendDtmf { .. }) => {}
            ReplyEvent::Done => break,
            ReplyEvent::Failed(error) => return Err(ChatError::Llm(error)),
        }
    }
    flush(&mut text, &mut lines);
    crate::metrics::stage("chat_reply", started.elapsed().as_secs_f64());
    timing.ended_ms = ms(Instant::now());
    timing.derive_stages();
    Ok(Outcome {
        lines,
        ended,
        timing,
    })
}

fn flush(text: &mut String, lines: &mut Vec<(&'static str, String)>) {
    let said = std::mem::take(text);
    if !said.trim().is_empty() {
        lines.push(("assistant", said.trim().to_owned()));
    }
}

/// Stores a reply's timings as the chat's next turn.
async fn record_timing(
    services: &CallServices,
    chat: &CallRecord,
    mut timing: TurnTiming,
) -> Result<(), StoreError> {
    timing.turn = services.store.last_turn_timing(&chat.id).await? + 1;
    services.store.append_turn_timing(&chat.id, &timing).await
}

/// Appends transcript lines, timed from the chat's start.
async fn record(
    services: &CallServices,
    chat: &CallRecord,
    lines: &[(&str, String)],
) -> Result<(), StoreError> {
    if lines.is_empty() {
        return Ok(());
    }
    let store = &services.store;
    let offset_ms = offset_since(chat.started_at.as_deref().unwrap_or(&chat.created_at));
    let mut seq = store.last_turn_seq(&chat.id).await?;
    for (role, text) in lines {
        seq += 1;
        let turn = TurnRecord {
            seq,
            role: (*role).to_owned(),
            text: text.clone(),
            offset_ms,
            interrupted: false,
        };
        store.append_turn(&chat.id, &turn).await?;
    }
    Ok(())
}

/// Milliseconds from a stored timestamp to now.
fn offset_since(start: &str) -> i64 {
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]"
    );
    let now = now_timestamp();
    match (
        time::PrimitiveDateTime::parse(start, format),
        time::PrimitiveDateTime::parse(&now, format),
    ) {
        (Ok(start), Ok(now)) => (now - start).whole_milliseconds().max(0) as i64,
        _ => 0,
    }
}

fn history_json(history: &[ChatMessage]) -> String {
    serde_json::to_string(history).expect("chat messages serialise")
}
