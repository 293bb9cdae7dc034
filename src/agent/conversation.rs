//! A conversation with the model, free of any transport: the history, the streamed completion of
//! the reply in progress, tool calls (built-ins answered here, HTTP tools run under their
//! timeouts) and the rounds they cause, and the cut of an interrupted reply to what the other
//! side actually got. A voice call drives it from its agent task (text deltas become phrases
//! for the TTS); a text chat drives it from a request handler (deltas become the answer).
//!
//! The driver polls [`Conversation::next`] next to its other events. Every event carries the
//! [`ReplyId`] it belongs to; output of an abandoned reply never comes out, but the results of
//! its tools still land in the history, so the model knows what they did.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::json;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

use super::tools::{ToolAction, ToolOutput, Toolbox};
use crate::catalog::Product;
use crate::egress::EgressClient;
use crate::generation::Generation;
use crate::llm::{ChatMessage, ChatModel, ChatRequest, LlmError, LlmEvent, ToolCall, ToolSpec};

/// Updates from work the conversation started, waiting to be turned into events.
const INBOX: usize = 256;

/// Which reply an event belongs to (one per [`Conversation::start_reply`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct ReplyId(pub u64);

/// Something the model asked for beyond words, to act on once its words have been delivered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// End the conversation.
    End { reason: String },
    /// Hand the call to another number (only offered where the channel can).
    Transfer { to: String },
    /// Press these keys on the far end's keypad (telephony only).
    SendDtmf { digits: String },
}

/// What a reply produces, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum ReplyEvent {
    /// The first token of a completion came, `after` the request was sent.
    FirstToken { after: Duration },
    /// A piece of the reply's text (never empty).
    Text(String),
    /// The model called tools; until their results are in, nothing more comes. The words so far
    /// form a complete utterance.
    ToolsCalled,
    /// The model chose products to show the other side (`recommend_products`); comes just
    /// before that call's `ToolResult`.
    Recommended(Vec<Product>),
    /// A tool call was answered (`result` is what the model reads).
    ToolResult {
        name: String,
        arguments: String,
        result: String,
        /// How long the tool took to answer.
        took: Duration,
    },
    /// The model asked for this; no further completion follows in this reply.
    Action(Action),
    /// The reply is complete: nothing more will come.
    Done,
    /// The model failed; whatever text came stays in the history.
    Failed(LlmError),
}

/// What drives the model.
#[derive(Debug, Clone)]
pub struct ConversationSetup {
    /// The rendered system prompt.
    pub system_prompt: String,
    pub toolbox: Toolbox,
    pub temperature: f32,
    pub max_tokens: u32,
}

/// Results of work started in other tasks.
enum Update {
    /// `round` numbers the completions of a reply: a round's late events (its `Finished`
    /// after a fast tool already started the next round) must not end the next one.
    Llm {
        reply: ReplyId,
        round: u32,
        event: Result<LlmEvent, LlmError>,
    },
    LlmEnded {
        reply: ReplyId,
        round: u32,
    },
    ToolDone {
        reply: ReplyId,
        history_index: usize,
        name: String,
        arguments: String,
        output: ToolOutput,
        took: Duration,
    },
}

/// The reply in progress.
struct Reply {
    id: ReplyId,
    /// The running completion (aborted when the reply is abandoned).
    llm: Option<JoinHandle<()>>,
    requested_at: Option<Instant>,
    /// Text of the running completion, committed to the history when it ends.
    text: String,
    /// Every text of this reply handed out (all rounds).
    said: String,
    /// History indexes of the assistant messages this reply added.
    messages: Vec<usize>,
    tools_in_flight: usize,
    /// The completion running (or last run), counted from 1.
    round: u32,
    /// An end or a transfer was asked for: no further round.
    action_taken: bool,
    completion_done: bool,
    /// Nothing more will come; kept so an interruption while its words are still being
    /// delivered (played) can cut it.
    finished: bool,
}

impl Drop for Reply {
    fn drop(&mut self) {
        if let Some(task) = self.llm.take() {
            task.abort();
        }
    }
}

/// A conversation: history, the reply in progress and its tools.
pub struct Conversation {
    history: Vec<ChatMessage>,
    tool_specs: Vec<ToolSpec>,
    toolbox: Toolbox,
    temperature: f32,
    max_tokens: u32,
    llm: Arc<dyn ChatModel>,
    egress: EgressClient,
    reply: Option<Reply>,
    last_reply: ReplyId,
    pending: VecDeque<(ReplyId, ReplyEvent)>,
    inbox_tx: mpsc::Sender<Update>,
    inbox: mpsc::Receiver<Update>,
}

impl Conversation {
    pub fn new(setup: ConversationSetup, llm: Arc<dyn ChatModel>, egress: EgressClient) -> Self {
        let history = vec![ChatMessage::System {
            content: setup.system_prompt,
        }];
        Self::resume(
            setup.toolbox,
            setup.temperature,
            setup.max_tokens,
            history,
            llm,
            egress,
        )
    }

    /// A conversation that goes on from a stored history (its first message is the system
    /// prompt).
    pub fn resume(
        toolbox: Toolbox,
        temperature: f32,
        max_tokens: u32,
        history: Vec<ChatMessage>,
        llm: Arc<dyn ChatModel>,
        egress: EgressClient,
    ) -> Self {
        let (inbox_tx, inbox) = mpsc::channel(INBOX);
        Self {
            history,
            tool_specs: toolbox.specs(),
            toolbox,
            temperature,
            max_tokens,
            llm,
            egress,
            reply: None,
            last_reply: ReplyId(0),
            pending: VecDeque::new(),
            inbox_tx,
            inbox,
        }
    }

    pub fn history(&self) -> &[ChatMessage] {
        &self.history
    }

    /// Whether a reply is in progress (its model or tools still working).
    pub fn replying(&self) -> bool {
        self.reply.as_ref().is_some_and(|r| !r.finished)
    }

    /// The other side said `text`.
    pub fn push_user(&mut self, text: &str) {
        self.history.push(ChatMessage::User {
            content: text.to_owned(),
        });
    }

    /// A line said without the model (a greeting, a prompt after silence, a goodbye): it joins
    /// the history as the last reply, so an interruption can cut it like any other.
    pub fn say(&mut self, text: &str) -> ReplyId {
        self.last_reply = ReplyId(self.last_reply.0 + 1);
        self.reply = Some(Reply {
            id: self.last_reply,
            llm: None,
            requested_at: None,
            text: String::new(),
            said: text.to_owned(),
            messages: vec![self.history.len()],
            tools_in_flight: 0,
            round: 0,
            action_taken: false,
            completion_done: true,
            finished: true,
        });
        self.history.push(ChatMessage::Assistant {
            content: Some(text.to_owned()),
            tool_calls: vec![],
        });
        self.last_reply
    }

    /// Asks the model for the next reply, abandoning any reply in progress.
    pub fn start_reply(&mut self) -> ReplyId {
        self.reply = None;
        self.last_reply = ReplyId(self.last_reply.0 + 1);
        let id = self.last_reply;
        self.reply = Some(Reply {
            id,
            llm: None,
            requested_at: None,
            text: String::new(),
            said: String::new(),
            messages: Vec::new(),
            tools_in_flight: 0,
            round: 0,
            action_taken: false,
            completion_done: false,
            finished: false,
        });
        self.request_completion();
        id
    }

    /// The next event of the reply in progress. Cancel-safe: waiting in a `select!` and giving
    /// up loses nothing.
    pub async fn next(&mut self) -> (ReplyId, ReplyEvent) {
        loop {
            if let Some(event) = self.pending.pop_front() {
                return event;
            }
            let update = self
                .inbox
                .recv()
                .await
                .expect("the conversation holds a sender");
            self.apply(update);
        }
    }

    /// The other side cut the last reply off after receiving `heard` (while it was produced, or
    /// after, while it was still being delivered): stop the model and keep in the history only
    /// what was heard. Tool results still on their way will land in the history.
    pub fn interrupt(&mut self, heard: &str) {
        let Some(reply) = self.reply.take() else {
            return;
        };
        self.pending.retain(|(id, _)| *id != reply.id);
        let heard: Vec<&str> = heard.split_whitespace().collect();
        let mut used = 0;
        let mut unheard = Vec::new();
        for &index in &reply.messages {
            let Some(ChatMessage::Assistant {
                content,
                tool_calls,
            }) = self.history.get_mut(index)
            else {
                continue;
            };
            let words = content
                .as_deref()
                .unwrap_or_default()
                .split_whitespace()
                .count();
            let keep = (heard.len() - used).min(words);
            let kept = heard[used..used + keep].join(" ");
            used += keep;
            if !kept.is_empty() {
                *content = Some(kept);
            } else if tool_calls.is_empty() {
                unheard.push(index);
            } else {
                *content = None;
            }
        }
        // Heard words beyond the committed messages came from the completion still streaming.
        if used < heard.len() {
            self.history.push(ChatMessage::Assistant {
                content: Some(heard[used..].join(" ")),
                tool_calls: vec![],
            });
        }
        // Only a text-only message can be wholly unheard, and it is a reply's last round: no
        // tool answer still on its way sits after it, so removing it moves none of theirs.
        for index in unheard.into_iter().rev() {
            self.history.remove(index);
        }
    }

    /// Takes back a reply nobody has received yet (the other side kept talking): the reply is
    /// dropped, even if its completion already finished, and the user message it answered is
    /// taken out of the history and returned, to be answered again together with what
    /// followed. A reply that called tools is not taken back: what the tools did stays done.
    pub fn retract(&mut self) -> Option<String> {
        let reply = self.reply.as_ref()?;
        let text_only = reply.messages.iter().all(|&i| {
            matches!(self.history.get(i), Some(ChatMessage::Assistant { tool_calls, .. }) if tool_calls.is_empty())
        });
        // The reply's committed rounds are the last messages, right after the question.
        let first = self.history.len() - reply.messages.len();
        if !text_only || reply.messages.first().is_some_and(|&i| i != first) {
            return None;
        }
        let Some(ChatMessage::User { content }) =
            first.checked_sub(1).and_then(|i| self.history.get(i))
        else {
            return None;
        };
        let content = content.clone();
        let reply = self.reply.take()?;
        self.pending.retain(|(id, _)| *id != reply.id);
        self.history.truncate(first - 1);
        Some(content)
    }

    /// Stops the reply in progress, if any (the conversation is over); the history stays.
    pub fn stop(&mut self) {
        if let Some(reply) = self.reply.take() {
            self.pending.retain(|(id, _)| *id != reply.id);
        }
    }

    /// The text of the last reply handed out so far.
    pub fn said(&self) -> &str {
        self.reply.as_ref().map_or("", |r| r.said.as_str())
    }

    fn request_completion(&mut self) {
        let Some(reply) = self.reply.as_mut() else {
            return;
        };
        let id = reply.id;
        reply.round += 1;
        let round = reply.round;
        // Serialised here, borrowing the history; only the response is awaited in the task.
        let started = self.llm.stream(ChatRequest {
            generation: Generation(id.0),
            messages: &self.history,
            tools: &self.tool_specs,
            temperature: self.temperature,
            max_tokens: self.max_tokens,
            response_format: None,
        });
        let inbox = self.inbox_tx.clone();
        let task = tokio::spawn(
            async move {
                match started.await {
                    Err(error) => {
                        let _ = inbox
                            .send(Update::Llm {
                                reply: id,
                                round,
                                event: Err(error),
                            })
                            .await;
                    }
                    Ok(mut stream) => {
                        while let Some(event) = stream.next().await {
                            let failed = event.is_err();
                            let update = Update::Llm {
                                reply: id,
                                round,
                                event,
                            };
                            if inbox.send(update).await.is_err() || failed {
                                return;
                            }
                        }
                        let _ = inbox.send(Update::LlmEnded { reply: id, round }).await;
                    }
                }
            }
            .in_current_span(),
        );
        if let Some(old) = reply.llm.replace(task) {
            old.abort();
        }
        reply.requested_at = Some(Instant::now());
        reply.text.clear();
        reply.completion_done = false;
        // The rounds of one reply are one text.
        if !reply.said.is_empty() && !reply.said.ends_with(char::is_whitespace) {
            reply.said.push(' ');
        }
    }

    fn emit(&mut self, id: ReplyId, event: ReplyEvent) {
        self.pending.push_back((id, event));
    }

    /// Whether `id` is the reply in progress (not abandoned, not finished).
    fn current(&self, id: ReplyId) -> bool {
        self.reply
            .as_ref()
            .is_some_and(|r| r.id == id && !r.finished)
    }

    /// Whether `round` is the running completion of the current reply `id`.
    fn current_round(&self, id: ReplyId, round: u32) -> bool {
        self.current(id) && self.reply.as_ref().is_some_and(|r| r.round == round)
    }

    /// The reply produced everything it will: `event` (done or failed) is its last.
    fn finish(&mut self, id: ReplyId, event: ReplyEvent) {
        if let Some(reply) = self.reply.as_mut() {
            reply.finished = true;
            if let Some(task) = reply.llm.take() {
                task.abort();
            }
        }
        self.emit(id, event);
    }

    fn apply(&mut self, update: Update) {
        match update {
            Update::Llm {
                reply,
                round,
                event,
            } => {
                if !self.current_round(reply, round) {
                    return;
                }
                match event {
                    Ok(LlmEvent::Delta { text, .. }) => self.on_text(reply, text),
                    Ok(LlmEvent::ToolCalls { calls, .. }) => self.on_tool_calls(reply, calls),
                    Ok(LlmEvent::Finished { .. }) => self.on_completion_end(reply),
                    Err(error) => {
                        self.commit_text(Vec::new());
                        self.finish(reply, ReplyEvent::Failed(error));
                    }
                }
            }
            Update::LlmEnded { reply, round } => {
                // The stream ended without saying it finished: what came is the reply.
                if self.current_round(reply, round)
                    && self.reply.as_ref().is_some_and(|r| !r.completion_done)
                {
                    self.on_completion_end(reply);
                }
            }
            Update::ToolDone {
                reply,
                history_index,
                name,
                arguments,
                output,
                took,
            } => {
                let ToolOutput {
                    content,
                    recommended,
                } = output;
                // Into the history even when the reply was abandoned meanwhile: the model
                // should know what the tool did.
                if let Some(ChatMessage::Tool { content: slot, .. }) =
                    self.history.get_mut(history_index)
                {
                    slot.clone_from(&content);
                }
                if !self.current(reply) {
                    return;
                }
                if !recommended.is_empty() {
                    self.emit(reply, ReplyEvent::Recommended(recommended));
                }
                self.emit(
                    reply,
                    ReplyEvent::ToolResult {
                        name,
                        arguments,
                        result: content,
                        took,
                    },
                );
                let reply_state = self.reply.as_mut().expect("current");
                reply_state.tools_in_flight = reply_state.tools_in_flight.saturating_sub(1);
                if reply_state.tools_in_flight == 0 {
                    self.next_round(reply);
                }
            }
        }
    }

    fn on_text(&mut self, id: ReplyId, text: String) {
        let reply = self.reply.as_mut().expect("current");
        if let Some(requested) = reply.requested_at.take() {
            self.pending.push_back((
                id,
                ReplyEvent::FirstToken {
                    after: requested.elapsed(),
                },
            ));
        }
        let reply = self.reply.as_mut().expect("current");
        reply.text.push_str(&text);
        reply.said.push_str(&text);
        self.emit(id, ReplyEvent::Text(text));
    }

    /// Puts the running completion's text (and tool calls) into the history.
    fn commit_text(&mut self, tool_calls: Vec<ToolCall>) {
        let Some(reply) = self.reply.as_mut() else {
            return;
        };
        let text = std::mem::take(&mut reply.text);
        let content = (!text.trim().is_empty()).then_some(text);
        if content.is_none() && tool_calls.is_empty() {
            return;
        }
        reply.messages.push(self.history.len());
        self.history.push(ChatMessage::Assistant {
            content,
            tool_calls,
        });
    }

    fn on_completion_end(&mut self, id: ReplyId) {
        self.commit_text(Vec::new());
        if let Some(reply) = self.reply.as_mut() {
            reply.completion_done = true;
            reply.llm = None;
            if reply.tools_in_flight == 0 {
                self.finish(id, ReplyEvent::Done);
            }
        }
    }

    fn on_tool_calls(&mut self, id: ReplyId, calls: Vec<ToolCall>) {
        self.commit_text(calls.clone());
        if let Some(reply) = self.reply.as_mut() {
            reply.completion_done = true;
            reply.llm = None;
        }
        self.emit(id, ReplyEvent::ToolsCalled);
        for call in calls {
            let history_index = self.history.len();
            let content = match self.toolbox.resolve(&call) {
                Err(why) => json!({ "error": why }).to_string(),
                Ok(ToolAction::EndCall { reason }) => {
                    self.take_action(id, Action::End { reason });
                    r#"{"ok":true,"note":"the conversation ends once your last words are delivered"}"#
                        .to_owned()
                }
                Ok(ToolAction::Transfer { to }) => {
                    self.take_action(id, Action::Transfer { to: to.clone() });
                    json!({ "ok": true, "transferring_to": to }).to_string()
                }
                Ok(ToolAction::SendDtmf { digits }) => {
                    self.take_action(
                        id,
                        Action::SendDtmf {
                            digits: digits.clone(),
                        },
                    );
                    json!({ "ok": true, "pressed": digits, "note": "the keys play after your words; what the line says next comes as the next user message" }).to_string()
                }
                Ok(
                    action @ (ToolAction::Http { .. }
                    | ToolAction::Mcp { .. }
                    | ToolAction::Catalog { .. }),
                ) => {
                    if let Some(reply) = self.reply.as_mut() {
                        reply.tools_in_flight += 1;
                    }
                    let egress = self.egress.clone();
                    let inbox = self.inbox_tx.clone();
                    let name = call.function.name.clone();
                    let raw_arguments = call.function.arguments.clone();
                    let called = Instant::now();
                    tokio::spawn(
                        async move {
                            let output = action.run(&egress).await.unwrap_or_default();
                            let _ = inbox
                                .send(Update::ToolDone {
                                    reply: id,
                                    history_index,
                                    name,
                                    arguments: raw_arguments,
                                    output,
                                    took: called.elapsed(),
                                })
                                .await;
                        }
                        .in_current_span(),
                    );
                    // What the model would read if asked before the result is in.
                    self.history.push(ChatMessage::Tool {
                        tool_call_id: call.id.clone(),
                        content: r#"{"status":"pending"}"#.to_owned(),
                    });
                    continue;
                }
            };
            self.emit(
                id,
                ReplyEvent::ToolResult {
                    name: call.function.name.clone(),
                    arguments: call.function.arguments.clone(),
                    result: content.clone(),
                    // Answered here, without waiting on anything.
                    took: Duration::ZERO,
                },
            );
            self.history.push(ChatMessage::Tool {
                tool_call_id: call.id.clone(),
                content,
            });
        }
        if self.reply.as_ref().is_some_and(|r| r.tools_in_flight == 0) {
            self.next_round(id);
        }
    }

    fn take_action(&mut self, id: ReplyId, action: Action) {
        if let Some(reply) = self.reply.as_mut() {
            reply.action_taken = true;
        }
        self.emit(id, ReplyEvent::Action(action));
    }

    /// Every tool of a round has answered: ask the model again, unless an end or a transfer
    /// was asked for, which closes the reply.
    fn next_round(&mut self, id: ReplyId) {
        let Some(reply) = self.reply.as_ref() else {
            return;
        };
        if reply.action_taken {
            self.finish(id, ReplyEvent::Done);
        } else {
            self.request_completion();
        }
    }
}

#[cfg(test)]
#[path = "conversation_tests.rs"]
mod tests;
