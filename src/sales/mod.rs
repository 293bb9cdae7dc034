//! The sales assistant of seed 003: a shopper's web chat answered by one of the owner's
//! assistants (the seed's "agent descriptor": its prompt is the agent), with the business's
//! catalog as tools. Each call brings every event since the last one (an automated welcome
//! message arrives as an ASSISTANT event and joins the history); the answer is the assistant's
//! messages and, when it chose products, a recommendation.
//!
//! States are immutable: every answer stores a new state holding the conversation so far and
//! names it; continuing from a state never changes it, so continuing from an older one starts a
//! branch (a shopper who went back) and two requests from the same state cannot corrupt each
//! other. The session id stays the same through a conversation and its branches.
//!
//! A state holds the conversation, not the agent: the assistant's prompt, model and the
//! catalog's tools are read at every call, so an edited prompt or a restocked catalog applies to
//! sessions already under way.
//!
//! The model's reply becomes events in the order it came: its text, split into one message
//! per paragraph (the model is asked to put separate chat messages a blank line apart, which is
//! how the seed's answers come as several messages), and a recommendation where it called
//! `recommend_products`.

use std::sync::Arc;

use crate::agent::conversation::{Conversation, ReplyEvent};
use crate::agent::template::{CallFacts, TemplateVars, render};
use crate::agent::tools::Toolbox;
use crate::call::CallServices;
use crate::call::providers;
use crate::catalog::Product;
use crate::catalog::tools::CatalogTools;
use crate::llm::{ChatMessage, LlmError};
use crate::store::{SalesState, StoreError, now_timestamp};

/// Most input events one call takes.
pub const MAX_INPUT_EVENTS: usize = 100;
/// Longest text of one input event, in characters.
pub const MAX_TEXT_CHARS: usize = 10_000;

/// What every sales conversation is told about its channel, after the assistant's prompt.
const CHANNEL_NOTE: &str = "You are answering a shopper in a web chat on the store's site. \
    Write short chat messages; put separate messages a blank line apart.";
/// What it is told when the business has a catalog.
const CATALOG_NOTE: &str = "When the shopper is looking for something, call search_products \
    with a few words for it; then call recommend_products with the productIds that fit best \
    (the shopper sees them as cards with image, price and link), and ask a short question \
    about them. Only recommend products that search_products returned.";

/// Who said an input message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

/// One message since the last call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InputMessage {
    pub role: Role,
    pub text: String,
}

/// Where a call starts: a new session with an agent, or an existing state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// A new session with this assistant.
    Agent(String),
    /// Continue from this state (and, if named, check it is this assistant's).
    State {
        state_id: String,
        agent: Option<String>,
    },
}

/// One event of an answer.
#[derive(Debug, Clone, PartialEq)]
pub enum SalesEvent {
    Message(String),
    Recommendation(Vec<Product>),
}

/// An answer: the new state and what the assistant said and showed.
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub state_id: String,
    pub session_id: String,
    pub events: Vec<SalesEvent>,
}

/// Why a call could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum SalesError {
    #[error("agent descriptor {0:?} not found")]
    AgentNotFound(String),
    #[error("state {0:?} not found")]
    StateNotFound(String),
    #[error("context.agentDescriptorId {given:?} is not the agent of state {state_id:?}")]
    AgentMismatch { given: String, state_id: String },
    #[error("the assistant's model failed: {0}")]
    Llm(#[from] LlmError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Answers `inputs` in the owner's business `business_id`, from `start`.
pub async fn invoke(
    services: &CallServices,
    owner_id: &str,
    business_id: &str,
    start: Start,
    inputs: &[InputMessage],
) -> Result<Answer, SalesError> {
    let store = &services.store;
    let (assistant_id, session_id, parent, history) = match start {
        Start::Agent(agent) => (agent, uuid::Uuid::now_v7().to_string(), None, Vec::new()),
        Start::State { state_id, agent } => {
            let state = store
                .get_sales_state(owner_id, business_id, &state_id)
                .await?
                .ok_or_else(|| SalesError::StateNotFound(state_id.clone()))?;
            if let Some(given) = agent
                && given != state.assistant_id
            {
                return Err(SalesError::AgentMismatch { given, state_id });
            }
            let history: Vec<ChatMessage> = serde_json::from_str(&state.history)
                .map_err(|e| StoreError::Corrupt(format!("sales state history: {e}")))?;
            (
                state.assistant_id,
                state.session_id,
                Some(state.id),
                history,
            )
        }
    };
    let (assistant, tools) = store
        .assistant_with_tools(owner_id, &assistant_id)
        .await?
        .ok_or_else(|| SalesError::AgentNotFound(assistant_id.clone()))?;
    let (mcp, catalog) = tokio::join!(
        crate::call::runner::mcp_toolset(services, &assistant),
        CatalogTools::if_stocked(store, owner_id, business_id, true)
    );
    let toolbox = Toolbox::new(tools, false)
        .without_end_call()
        .with_mcp(mcp)
        .with_catalog(catalog);

    let mut prompt = vec![
        agent_prompt(&assistant, &session_id),
        CHANNEL_NOTE.to_owned(),
    ];
    if toolbox.has_catalog() {
        prompt.push(CATALOG_NOTE.to_owned());
    }
    let mut messages = vec![ChatMessage::System {
        content: prompt.join("\n\n"),
    }];
    messages.extend(history);
    let llm = providers::language_model(
        &services.config,
        &assistant,
        &services.http,
        &services.egress,
        None,
    )?;
    let mut conversation = Conversation::resume(
        toolbox,
        assistant.settings.llm.temperature,
        assistant.settings.llm.max_tokens,
        messages,
        Arc::clone(&llm),
        services.egress.clone(),
    );
    for input in inputs {
        match input.role {
            Role::User => conversation.push_user(&input.text),
            Role::Assistant => {
                conversation.say(&input.text);
            }
        }
    }
    // Only a shopper's message asks for an answer; events that only record what the shopper
    // was shown (a welcome message) are kept for the next call.
    let events = if inputs.last().is_some_and(|i| i.role == Role::User) {
        reply(&mut conversation).await?
    } else {
        Vec::new()
    };

    let state = SalesState {
        id: uuid::Uuid::now_v7().to_string(),
        owner_id: owner_id.to_owned(),
        business_id: business_id.to_owned(),
        session_id,
        parent_id: parent,
        assistant_id,
        // Without the system prompt: the agent is read anew at every call.
        history: serde_json::to_string(&conversation.history()[1..]).expect("messages serialise"),
        created_at: now_timestamp(),
    };
    store.insert_sales_state(&state).await?;
    let recommended = events
        .iter()
        .any(|e| matches!(e, SalesEvent::Recommendation(_)));
    metrics::counter!(crate::metrics::SALES_REPLIES, "recommended" => recommended.to_string())
        .increment(1);
    Ok(Answer {
        state_id: state.id,
        session_id: state.session_id,
        events,
    })
}

/// The assistant's prompt, rendered (no metadata: placeholders take their defaults), after its
/// function's instructions if it plays one.
fn agent_prompt(assistant: &crate::assistant::Assistant, session_id: &str) -> String {
    let facts = CallFacts {
        call_id: session_id.to_owned(),
        ..CallFacts::default()
    };
    let vars = TemplateVars::new(None, &facts);
    match assistant.function() {
        Some(function) => render(
            &format!("{}\n\n{}", function.prompt, assistant.prompt),
            &vars,
        ),
        None => render(&assistant.prompt, &vars),
    }
    .text
}

/// Runs the model's reply to its end: its messages and recommendations, in order.
async fn reply(conversation: &mut Conversation) -> Result<Vec<SalesEvent>, SalesError> {
    conversation.start_reply();
    let mut events = Vec::new();
    let mut text = String::new();
    loop {
        match conversation.next().await.1 {
            ReplyEvent::Text(piece) => text.push_str(&piece),
            ReplyEvent::ToolsCalled => flush(&mut text, &mut events),
            ReplyEvent::Recommended(products) => {
                flush(&mut text, &mut events);
                events.push(SalesEvent::Recommendation(products));
            }
            ReplyEvent::Done => break,
            ReplyEvent::Failed(error) => return Err(error.into()),
            ReplyEvent::FirstToken { after } => {
                crate::metrics::stage("llm_first_token", after.as_secs_f64());
            }
            ReplyEvent::ToolResult { .. } | ReplyEvent::Action(_) => {}
        }
    }
    flush(&mut text, &mut events);
    Ok(events)
}

fn flush(text: &mut String, events: &mut Vec<SalesEvent>) {
    let said = std::mem::take(text);
    events.extend(paragraphs(&said).into_iter().map(SalesEvent::Message));
}

/// The paragraphs of `text` (runs of lines between blank lines), each trimmed.
fn paragraphs(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current: Vec<&str> = Vec::new();
    for line in text.lines().chain(std::iter::once("")) {
        if line.trim().is_empty() {
            if !current.is_empty() {
                out.push(current.join("\n").trim().to_owned());
                current.clear();
            }
        } else {
            current.push(line);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reply_becomes_one_message_per_paragraph() {
        assert_eq!(
            paragraphs(
                "We do offer free shipping on all orders over $50!\n\nCan I help you find a product?"
            ),
            [
                "We do offer free shipping on all orders over $50!",
                "Can I help you find a product?"
            ]
        );
        assert_eq!(
            paragraphs("  one\r\nline two\r\n \r\n\r\nthree \n"),
            ["one\nline two", "three"]
        );
        assert!(paragraphs(" \n ").is_empty());
    }
}
