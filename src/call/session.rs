//! The agent task of a call: the one owner of the call's state. It `select!`s over the caller's
//! media events, the STT's transcripts, the TTS's audio, LLM tokens, tool results, outside
//! control and its own timers, and decides everything: when the user's turn ends, when to reply,
//! what to speak, when the caller interrupts, when the call ends.
//!
//! It never touches a wire format and never blocks on a slow peer: audio moves on only while the
//! writer has room (backpressure reaches the TTS socket instead of growing a queue here), and a
//! barge-in's clear goes on the writer's separate control channel.

use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

use std::collections::VecDeque;
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};

use super::heard::{MarkPoint, mark_name, parse_mark};
use super::io::{CallControl, Control, EndReason, MediaEvent, PlayoutItem, WriterControl};
use super::recorder::Recorder;
use super::reply::{Reply, ReplySource};
use crate::agent::interruption::{InterruptionSettings, is_backchannel};
use crate::agent::tools::{ToolAction, Toolbox, call_http_tool};
use crate::assistant::FirstMessageMode;
use crate::audio::AudioFormat;
use crate::generation::Generation;
use crate::llm::{ChatMessage, ChatModel, ChatRequest, LlmError, LlmEvent, ToolCall, ToolSpec};
use crate::store::TurnRecord;
use crate::stt::{SttEvent, SttSession};
use crate::transport::CallEvent;
use crate::tts::{TtsCommand, TtsEvent, TtsSession, WordTiming};

/// Said when the caller has been silent for the assistant's silence timeout.
pub const SILENCE_PROMPT: &str = "Are you still there?";
/// Said before hanging up after a second silence timeout.
pub const SILENCE_GOODBYE: &str = "I haven't heard anything, so I'll end the call now. Goodbye!";
/// Said when the call reaches its maximum duration.
pub const MAX_DURATION_GOODBYE: &str =
    "We've reached the time limit for this call. Thank you for calling, goodbye!";
/// Said when a provider fails for good.
pub const FAILURE_GOODBYE: &str =
    "Sorry, I'm having technical trouble. Please call back later. Goodbye!";
/// Said when the LLM fails before saying anything.
pub const LLM_FAILED: &str = "Sorry, I didn't catch that. Could you say it again?";
/// Said when a transfer could not be made.
pub const TRANSFER_FAILED: &str = "Sorry, I couldn't transfer your call right now.";
/// Longest wait for a goodbye to be heard before the call is closed anyway.
const GOODBYE_GRACE: Duration = Duration::from_secs(15);
/// Internal messages waiting for the agent.
const INBOX: usize = 256;

/// Everything the agent needs to know about the call.
#[derive(Debug, Clone)]
pub struct CallSetup {
    pub call_id: String,
    /// The assistant's prompt, rendered for this call.
    pub system_prompt: String,
    /// The start instruction, rendered for this call.
    pub start_instruction: Option<String>,
    pub first_message_mode: FirstMessageMode,
    pub silence_timeout: Duration,
    pub max_duration: Duration,
    pub interruption: InterruptionSettings,
    pub toolbox: Toolbox,
    pub temperature: f32,
    pub max_tokens: u32,
    /// The format of the audio the TTS produces and the writer plays.
    pub output_format: AudioFormat,
    /// Whether the far end shows transcripts and the agent's text ([`CallEvent`]s).
    pub events: bool,
}

/// The channels and clients the agent works with.
pub struct CallIo {
    pub media: mpsc::Receiver<MediaEvent>,
    pub stt: SttSession,
    pub tts: TtsSession,
    pub llm: Arc<dyn ChatModel>,
    pub writer: mpsc::Sender<PlayoutItem>,
    pub writer_control: mpsc::Sender<WriterControl>,
    /// Transcripts and the end for the far end (used only when `CallSetup::events`).
    pub events: mpsc::Sender<CallEvent>,
    pub control: mpsc::Receiver<Control>,
    pub recorder: Recorder,
    /// Reaches the assistant's HTTP tools (owner-chosen URLs) under the egress policy.
    pub egress: crate::egress::EgressClient,
    pub call_control: Option<Arc<dyn CallControl>>,
}

/// How the call went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallOutcome {
    pub reason: EndReason,
    pub duration: Duration,
    pub barge_ins: u32,
}

/// Results of work the agent started in other tasks.
enum Internal {
    Llm {
        generation: Generation,
        event: Result<LlmEvent, LlmError>,
    },
    LlmEnded {
        generation: Generation,
    },
    ToolDone {
        history_index: usize,
        content: String,
        generation: Generation,
    },
    TransferFailed(String),
}

/// Runs the call's agent until the call ends.
pub async fn run_agent(setup: CallSetup, io: CallIo) -> CallOutcome {
    let (inbox_tx, inbox) = mpsc::channel(INBOX);
    let started = Instant::now();
    let mut agent = Agent {
        max_deadline: started + setup.max_duration,
        history: vec![ChatMessage::System {
            content: setup.system_prompt.clone(),
        }],
        tool_specs: setup.toolbox.specs(),
        setup,
        io,
        inbox_tx,
        inbox,
        started,
        generation: Generation(0),
        reply: None,
        user_text: String::new(),
        user_turn_started: None,
        user_speaking: false,
        user_stopped_at: None,
        barge_deadline: None,
        silence_deadline: None,
        silence_prompted: false,
        end_deadline: None,
        writer_backlog: VecDeque::new(),
        ended: None,
        transferring: false,
        turn_seq: 0,
        barge_ins: 0,
        stt_open: true,
    };
    agent.open();
    let reason = agent.run().await;
    agent.close(reason).await;
    CallOutcome {
        reason,
        duration: started.elapsed(),
        barge_ins: agent.barge_ins,
    }
}

struct Agent {
    setup: CallSetup,
    io: CallIo,
    inbox_tx: mpsc::Sender<Internal>,
    inbox: mpsc::Receiver<Internal>,
    started: Instant,
    /// The current generation; output of any other is stale.
    generation: Generation,
    reply: Option<Reply>,
    history: Vec<ChatMessage>,
    /// The functions offered to the LLM (the same for the whole call).
    tool_specs: Vec<ToolSpec>,
    /// Settled user text of the turn in progress.
    user_text: String,
    user_turn_started: Option<Instant>,
    user_speaking: bool,
    /// When the local VAD last heard the caller stop (start of the latency a caller hears).
    user_stopped_at: Option<Instant>,
    /// Caller speech over the agent that will interrupt at this instant unless it stops.
    barge_deadline: Option<Instant>,
    silence_deadline: Option<Instant>,
    silence_prompted: bool,
    max_deadline: Instant,
    /// Hard stop once the call is ending.
    end_deadline: Option<Instant>,
    /// Writer items that did not fit its queue yet (see `hand_to_writer`).
    writer_backlog: VecDeque<PlayoutItem>,
    ended: Option<EndReason>,
    transferring: bool,
    turn_seq: i64,
    barge_ins: u32,
    stt_open: bool,
}

impl Agent {
    /// The first move: speak the start instruction, or let the LLM greet, or wait.
    fn open(&mut self) {
        match self.setup.first_message_mode {
            FirstMessageMode::AssistantSpeaksFirst => match self.setup.start_instruction.clone() {
                Some(text) if !text.trim().is_empty() => self.start_scripted_reply(&text, None),
                _ => self.start_llm_reply(),
            },
            FirstMessageMode::WaitForCaller => self.arm_silence(),
        }
    }

    async fn run(&mut self) -> EndReason {
        loop {
            if let Some(reason) = self.ended
                && (self.reply.is_none() || self.end_deadline.is_some_and(|d| d <= Instant::now()))
            {
                return reason;
            }
            // Audio moves on only while the writer has room: otherwise TTS events wait in their
            // channel and backpressure reaches the provider's socket.
            let far_future = Instant::now() + Duration::from_secs(86_400);
            tokio::select! {
                biased;
                control = self.io.control.recv() => match control {
                    Some(Control::HangUp) => self.end_now(EndReason::HungUpByApi),
                    Some(Control::Shutdown) => self.end_now(EndReason::ServerShutdown),
                    None => {}
                },
                event = self.io.media.recv() => match event {
                    Some(event) => self.on_media(event),
                    None => self.on_media(MediaEvent::Hangup),
                },
                event = self.io.stt.events.recv(), if self.stt_open => match event {
                    Some(event) => self.on_stt(event),
                    None => self.on_stt(SttEvent::Closed(Ok(()))),
                },
                Some(message) = self.inbox.recv() => self.on_internal(message),
                // Marks wait in the backlog while the writer's queue is full of the TTS's audio.
                permit = self.io.writer.clone().reserve_owned(), if !self.writer_backlog.is_empty() => match permit {
                    Ok(permit) => {
                        if let Some(item) = self.writer_backlog.pop_front() {
                            permit.send(item);
                        }
                    }
                    // The writer is gone: the call is ending anyway.
                    Err(_) => self.writer_backlog.clear(),
                },
                event = self.io.tts.events.recv() => match event {
                    Some(event) => self.on_tts(event),
                    None => self.on_provider_failure("tts session ended"),
                },
                () = sleep_until(self.barge_deadline.unwrap_or(far_future)), if self.barge_deadline.is_some() => {
                    self.barge_deadline = None;
                    if self.agent_speaking() && self.setup.interruption.enabled {
                        self.interrupt();
                    }
                }
                () = sleep_until(self.silence_deadline.unwrap_or(far_future)), if self.silence_deadline.is_some() => {
                    self.on_silence();
                }
                () = sleep_until(self.max_deadline), if self.ended.is_none() => {
                    self.say_and_end(MAX_DURATION_GOODBYE, EndReason::MaxDuration);
                }
                () = sleep_until(self.end_deadline.unwrap_or(far_future)), if self.end_deadline.is_some() => {}
            }
        }
    }

    /// Closes the writer (it sends what is queued, then the stream ends) and the providers.
    async fn close(&mut self, reason: EndReason) {
        if let Some(mut reply) = self.reply.take() {
            reply.abort_llm();
        }
        if self.setup.events {
            let end = CallEvent::End {
                reason: reason.as_str(),
            };
            let _ = self.io.events.send(end).await;
        }
        let _ = self.io.writer_control.send(WriterControl::Close).await;
    }

    fn offset_ms(&self, at: Instant) -> i64 {
        i64::try_from(at.saturating_duration_since(self.started).as_millis()).unwrap_or(i64::MAX)
    }

    fn record(&mut self, role: &str, text: &str, at: Instant, interrupted: bool) {
        self.turn_seq += 1;
        let turn = TurnRecord {
            seq: self.turn_seq,
            role: role.to_owned(),
            text: text.to_owned(),
            offset_ms: self.offset_ms(at),
            interrupted,
        };
        self.io.recorder.record(turn);
    }

    // ----- the caller's media -------------------------------------------------------------

    fn on_media(&mut self, event: MediaEvent) {
        match event {
            MediaEvent::SpeechStarted => {
                self.user_speaking = true;
                self.silence_deadline = None;
                self.user_turn_started.get_or_insert_with(Instant::now);
                if self.agent_speaking() && self.setup.interruption.enabled {
                    let force_after =
                        Duration::from_millis(u64::from(self.setup.interruption.force_after_ms));
                    self.barge_deadline = Some(Instant::now() + force_after);
                }
            }
            MediaEvent::SpeechStopped => {
                self.user_speaking = false;
                self.user_stopped_at = Some(Instant::now());
                self.barge_deadline = None;
                if self.reply.is_none() && self.user_text.is_empty() {
                    self.arm_silence();
                }
            }
            MediaEvent::Mark(name) => self.on_mark(&name),
            MediaEvent::Dtmf(digit) => {
                if self.reply.is_none() && self.ended.is_none() {
                    let text = format!("(the caller pressed {digit} on the keypad)");
                    self.user_turn_started.get_or_insert_with(Instant::now);
                    self.user_text.push_str(&text);
                    self.close_user_turn();
                }
            }
            MediaEvent::Hangup => {
                let reason = if self.transferring {
                    EndReason::Transferred
                } else {
                    EndReason::CallerHungUp
                };
                self.end_now(reason);
            }
        }
    }

    fn on_mark(&mut self, name: &str) {
        let Some((generation, point)) = parse_mark(name) else {
            return;
        };
        let Some(reply) = self.reply.as_mut().filter(|r| r.owns(generation)) else {
            return;
        };
        reply.words.heard_up_to(point);
        if point == MarkPoint::End {
            self.finish_reply();
        }
    }

    // ----- speech to text -----------------------------------------------------------------

    fn on_stt(&mut self, event: SttEvent) {
        match event {
            // The local VAD decides about speech; the provider's own signals add nothing here.
            SttEvent::SpeechStarted | SttEvent::SpeechEnded => {}
            SttEvent::Reconnected { lost_ms } => {
                tracing::warn!(call_id = %self.setup.call_id, lost_ms, "stt reconnected");
                metrics::counter!(crate::metrics::PROVIDER_ERRORS, "provider" => "stt", "kind" => "reconnected")
                    .increment(1);
            }
            SttEvent::Transcript {
                text,
                is_final,
                speech_final,
                ..
            } => {
                let text = text.trim();
                if self.setup.events && !text.is_empty() {
                    // Shown only: a full queue drops an interim line, never blocks the agent.
                    let shown = CallEvent::Transcript {
                        text: text.to_owned(),
                        is_final,
                    };
                    let _ = self.io.events.try_send(shown);
                }
                if self.agent_speaking() {
                    if is_backchannel(text) {
                        // An acknowledgement over the agent: not a turn, not an interruption.
                        return;
                    }
                    if self.setup.interruption.confirmed_by(text) {
                        self.interrupt();
                    } else if self.setup.interruption.enabled {
                        // Too few words yet to take the turn; later results may confirm it.
                        return;
                    }
                    // With interruptions off the words are kept and answered after the reply.
                }
                if text.is_empty() {
                    if speech_final {
                        self.close_user_turn();
                    }
                    return;
                }
                self.user_turn_started.get_or_insert_with(Instant::now);
                self.silence_deadline = None;
                if is_final {
                    if !self.user_text.is_empty() {
                        self.user_text.push(' ');
                    }
                    self.user_text.push_str(text);
                    // Words after the reply started but before it was heard: the caller was not
                    // done. Drop the reply and answer the whole turn.
                    if self.reply.as_ref().is_some_and(|r| {
                        !r.audible()
                            && r.source == ReplySource::Llm
                            && r.history_messages.is_empty()
                    }) {
                        self.retract_unheard_reply();
                    }
                    if speech_final {
                        self.close_user_turn();
                    }
                }
            }
            SttEvent::UtteranceEnd => self.close_user_turn(),
            SttEvent::Closed(result) => {
                self.stt_open = false;
                if self.ended.is_none() {
                    let why = match result {
                        Ok(()) => "stt stream closed".to_owned(),
                        Err(e) => e.to_string(),
                    };
                    self.on_provider_failure(&why);
                }
            }
        }
    }

    /// The user's turn is over: answer it.
    fn close_user_turn(&mut self) {
        if self.user_text.trim().is_empty() || self.ended.is_some() {
            return;
        }
        if self.reply.as_ref().is_some_and(Reply::audible) {
            // The caller spoke over the agent without interrupting it (interruptions off):
            // answer once the agent is done.
            return;
        }
        let text = std::mem::take(&mut self.user_text);
        let at = self.user_turn_started.take().unwrap_or_else(Instant::now);
        if let Some(stopped) = self.user_stopped_at {
            crate::metrics::stage("stt_final", stopped.elapsed().as_secs_f64());
        }
        self.silence_prompted = false;
        self.history.push(ChatMessage::User {
            content: text.clone(),
        });
        self.record("user", &text, at, false);
        self.start_llm_reply();
    }

    /// Takes back a reply nobody heard yet because the caller kept talking.
    fn retract_unheard_reply(&mut self) {
        if let Some(reply) = self.reply.take() {
            self.io
                .tts
                .commands
                .try_send(TtsCommand::Cancel {
                    generation: reply.generation,
                })
                .ok();
            // The answered user message goes back into the turn in progress.
            if let Some(ChatMessage::User { content }) = self.history.last().cloned() {
                self.history.pop();
                self.user_text = format!("{content} {}", self.user_text).trim().to_owned();
            }
            self.generation = self.generation.next();
        }
    }

    // ----- replies ------------------------------------------------------------------------

    fn agent_speaking(&self) -> bool {
        self.reply
            .as_ref()
            .is_some_and(|r| r.audible() && !r.words.finished())
    }

    fn begin_reply(&mut self, source: ReplySource) -> Generation {
        if let Some(old) = self.reply.take() {
            self.drop_reply_audio(&old);
        }
        self.generation = self.generation.next();
        self.silence_deadline = None;
        self.reply = Some(Reply::new(self.generation, source));
        self.generation
    }

    fn start_scripted_reply(&mut self, text: &str, end_after: Option<EndReason>) {
        let generation = self.begin_reply(ReplySource::Scripted);
        let index = self.history.len();
        self.history.push(ChatMessage::Assistant {
            content: Some(text.to_owned()),
            tool_calls: vec![],
        });
        let reply = self.reply.as_mut().expect("just begun");
        reply.end_after = end_after;
        reply.history_messages.push(index);
        // Phrase by phrase, as the model's text is: a TTS that synthesises sentence by sentence
        // (Sarvam) then starts on the first sentence at once and times its words as it goes,
        // so a barge-in into a long greeting keeps what was heard.
        let mut phrases = reply.splitter.push(text);
        phrases.extend(reply.splitter.finish());
        for phrase in phrases {
            self.speak(phrase);
        }
        self.close_utterance();
        let _ = generation;
        self.maybe_place_end_mark();
    }

    fn start_llm_reply(&mut self) {
        let generation = self.begin_reply(ReplySource::Llm);
        self.request_completion(generation);
    }

    fn request_completion(&mut self, generation: Generation) {
        // The request is serialised here, borrowing the history; only the response is awaited
        // in the task.
        let started = self.io.llm.stream(ChatRequest {
            generation,
            messages: &self.history,
            tools: &self.tool_specs,
            temperature: self.setup.temperature,
            max_tokens: self.setup.max_tokens,
            response_format: None,
        });
        let inbox = self.inbox_tx.clone();
        let task = tokio::spawn(
            async move {
                match started.await {
                    Err(error) => {
                        let _ = inbox
                            .send(Internal::Llm {
                                generation,
                                event: Err(error),
                            })
                            .await;
                    }
                    Ok(mut stream) => {
                        use futures_util::StreamExt;
                        while let Some(event) = stream.next().await {
                            let failed = event.is_err();
                            if inbox
                                .send(Internal::Llm { generation, event })
                                .await
                                .is_err()
                                || failed
                            {
                                return;
                            }
                        }
                        let _ = inbox.send(Internal::LlmEnded { generation }).await;
                    }
                }
            }
            .in_current_span(),
        );
        if let Some(reply) = self.reply.as_mut() {
            reply.abort_llm();
            reply.requested_at = Some(Instant::now());
            reply.llm = Some(task);
            reply.llm_finished = false;
            reply.completion_text.clear();
        }
    }

    fn on_internal(&mut self, message: Internal) {
        match message {
            Internal::Llm { generation, event } => {
                if !self.reply.as_ref().is_some_and(|r| r.owns(generation)) {
                    return;
                }
                match event {
                    Ok(LlmEvent::Delta { text, .. }) => self.on_llm_text(&text),
                    Ok(LlmEvent::ToolCalls { calls, .. }) => self.on_tool_calls(calls),
                    Ok(LlmEvent::Finished { .. }) => self.on_llm_finished(),
                    Err(error) => {
                        tracing::warn!(call_id = %self.setup.call_id, %error, "llm failed");
                        metrics::counter!(crate::metrics::PROVIDER_ERRORS, "provider" => "llm", "kind" => error.kind())
                            .increment(1);
                        self.on_llm_failed();
                    }
                }
            }
            Internal::LlmEnded { generation } => {
                if self.reply.as_ref().is_some_and(|r| r.owns(generation))
                    && self
                        .reply
                        .as_ref()
                        .is_some_and(|r| !r.llm_finished && r.llm.is_some())
                {
                    // The stream ended without saying it finished: treat what came as the reply.
                    self.on_llm_finished();
                }
            }
            Internal::ToolDone {
                history_index,
                content,
                generation,
            } => {
                // The result goes into the history even if the caller interrupted meanwhile:
                // the model should know what the tool did.
                if let Some(ChatMessage::Tool { content: slot, .. }) =
                    self.history.get_mut(history_index)
                {
                    *slot = content;
                }
                if let Some(reply) = self.reply.as_mut().filter(|r| r.owns(generation)) {
                    reply.tools_in_flight = reply.tools_in_flight.saturating_sub(1);
                    if reply.tools_in_flight == 0 {
                        if reply.end_after.is_none() && reply.transfer_after.is_none() {
                            let current = reply.generation;
                            self.request_completion(current);
                        } else {
                            self.maybe_place_end_mark();
                        }
                    }
                }
            }
            Internal::TransferFailed(why) => {
                tracing::warn!(call_id = %self.setup.call_id, why, "transfer failed");
                self.transferring = false;
                self.start_scripted_reply(TRANSFER_FAILED, None);
            }
        }
    }

    fn on_llm_text(&mut self, text: &str) {
        let Some(reply) = self.reply.as_mut() else {
            return;
        };
        if reply.completion_text.is_empty()
            && let Some(requested) = reply.requested_at.take()
        {
            crate::metrics::stage("llm_first_token", requested.elapsed().as_secs_f64());
        }
        reply.completion_text.push_str(text);
        let phrases = reply.splitter.push(text);
        for phrase in phrases {
            self.speak(phrase);
        }
    }

    fn commit_completion(&mut self, tool_calls: Vec<ToolCall>) {
        let Some(reply) = self.reply.as_mut() else {
            return;
        };
        let content = std::mem::take(&mut reply.completion_text);
        let content = (!content.trim().is_empty()).then_some(content);
        if content.is_none() && tool_calls.is_empty() {
            return;
        }
        reply.history_messages.push(self.history.len());
        self.history.push(ChatMessage::Assistant {
            content,
            tool_calls,
        });
    }

    fn flush_phrases(&mut self) {
        let rest = self.reply.as_mut().and_then(|r| r.splitter.finish());
        if let Some(rest) = rest {
            self.speak(rest);
        }
    }

    fn on_llm_finished(&mut self) {
        self.flush_phrases();
        if self
            .reply
            .as_ref()
            .is_some_and(|r| !r.completion_text.is_empty())
        {
            self.commit_completion(Vec::new());
        }
        let Some(reply) = self.reply.as_mut() else {
            return;
        };
        reply.llm_finished = true;
        reply.llm = None;
        self.close_utterance();
        self.maybe_place_end_mark();
    }

    fn on_llm_failed(&mut self) {
        // Whatever was said stays said; the reply ends here. If nothing was said, the caller
        // hears a short apology rather than silence.
        self.flush_phrases();
        if self
            .reply
            .as_ref()
            .is_some_and(|r| r.spoken_text.is_empty())
        {
            self.speak(LLM_FAILED.to_owned());
        }
        self.commit_completion(Vec::new());
        if let Some(reply) = self.reply.as_mut() {
            reply.llm_finished = true;
            reply.llm = None;
        }
        self.close_utterance();
        self.maybe_place_end_mark();
    }

    fn on_tool_calls(&mut self, calls: Vec<ToolCall>) {
        self.flush_phrases();
        self.commit_completion(calls.clone());
        self.close_utterance();
        let generation = self.generation;
        for call in calls {
            let history_index = self.history.len();
            let content = match self.setup.toolbox.resolve(&call) {
                Err(why) => serde_json::json!({ "error": why }).to_string(),
                Ok(ToolAction::EndCall { reason }) => {
                    tracing::info!(call_id = %self.setup.call_id, reason, "assistant ends the call");
                    if let Some(reply) = self.reply.as_mut() {
                        reply.end_after = Some(EndReason::AssistantEnded);
                    }
                    r#"{"ok":true,"note":"the call ends once the caller has heard your last words"}"#.to_owned()
                }
                Ok(ToolAction::Transfer { to }) => {
                    if let Some(reply) = self.reply.as_mut() {
                        reply.transfer_after = Some(to.clone());
                    }
                    serde_json::json!({ "ok": true, "transferring_to": to }).to_string()
                }
                Ok(ToolAction::Http { tool, arguments }) => {
                    let egress = self.io.egress.clone();
                    let inbox = self.inbox_tx.clone();
                    if let Some(reply) = self.reply.as_mut() {
                        reply.tools_in_flight += 1;
                    }
                    tokio::spawn(
                        async move {
                            let content = call_http_tool(&egress, &tool, &arguments).await;
                            let _ = inbox
                                .send(Internal::ToolDone {
                                    history_index,
                                    content,
                                    generation,
                                })
                                .await;
                        }
                        .in_current_span(),
                    );
                    // Until the result arrives the model would see this if asked.
                    r#"{"status":"pending"}"#.to_owned()
                }
            };
            self.record(
                "tool",
                &format!(
                    "{}({}) -> {content}",
                    call.function.name, call.function.arguments
                ),
                Instant::now(),
                false,
            );
            self.history.push(ChatMessage::Tool {
                tool_call_id: call.id.clone(),
                content,
            });
        }
        let Some(reply) = self.reply.as_mut() else {
            return;
        };
        reply.llm = None;
        if reply.tools_in_flight == 0 && reply.end_after.is_none() && reply.transfer_after.is_none()
        {
            // Only answers that need no waiting (errors): ask the model again right away.
            self.request_completion(generation);
        } else {
            reply.llm_finished = true;
            self.maybe_place_end_mark();
        }
    }

    /// Sends a phrase to the TTS (or holds it until the previous utterance is done).
    fn speak(&mut self, phrase: String) {
        let Some(reply) = self.reply.as_mut() else {
            return;
        };
        if !reply.utterance_open && reply.utterances_pending > 0 {
            reply.queued_phrases.push_back(phrase);
            return;
        }
        if !reply.utterance_open {
            if reply.segment_used {
                // The TTS closed this generation's context: the next utterance is a new one.
                self.generation = self.generation.next();
                reply.generation = self.generation;
                reply.segment_used = false;
                reply.segment_audio_bytes = 0;
                reply.segment_text.clear();
                reply.segment_timed = false;
            }
            reply.utterance_open = true;
        }
        reply.first_phrase_at.get_or_insert_with(Instant::now);
        if !reply.spoken_text.is_empty() {
            reply.spoken_text.push(' ');
        }
        reply.spoken_text.push_str(&phrase);
        if !reply.segment_text.is_empty() {
            reply.segment_text.push(' ');
        }
        reply.segment_text.push_str(&phrase);
        let command = TtsCommand::Speak {
            generation: reply.generation,
            text: format!("{phrase} "),
            last: false,
        };
        if self.io.tts.commands.try_send(command).is_err() {
            tracing::error!(call_id = %self.setup.call_id, "tts command queue full; phrase dropped");
        }
    }

    fn close_utterance(&mut self) {
        let Some(reply) = self.reply.as_mut() else {
            return;
        };
        if !reply.utterance_open {
            return;
        }
        reply.utterance_open = false;
        reply.segment_used = true;
        reply.utterances_pending += 1;
        let command = TtsCommand::Speak {
            generation: reply.generation,
            text: String::new(),
            last: true,
        };
        if self.io.tts.commands.try_send(command).is_err() {
            tracing::error!(call_id = %self.setup.call_id, "tts command queue full; utterance not closed");
        }
    }

    /// Once nothing more will be said, a mark at the end of the audio tells when it was heard.
    /// Hands an item to the writer. One TTS event can make several items (audio, then a mark
    /// per word, then the end mark) while room was checked for one: what does not fit waits
    /// here, in order, and goes out as the writer drains. Nothing is dropped: a lost end mark
    /// would leave the reply, and an ending call, waiting for an echo that never comes.
    fn hand_to_writer(&mut self, item: PlayoutItem) {
        queue_for_writer(&self.io.writer, &mut self.writer_backlog, item);
    }

    fn maybe_place_end_mark(&mut self) {
        let Some(reply) = self.reply.as_mut() else {
            return;
        };
        if reply.end_marked || !reply.complete() {
            return;
        }
        reply.end_marked = true;
        let item = PlayoutItem::Mark {
            generation: reply.generation,
            at: reply.segment_audio_bytes,
            name: mark_name(reply.generation, MarkPoint::End),
            last: true,
            spoken: None,
        };
        self.hand_to_writer(item);
    }

    /// The reply has been heard to the end.
    fn finish_reply(&mut self) {
        let Some(reply) = self.reply.take() else {
            return;
        };
        if !reply.spoken_text.is_empty() {
            let at = reply.first_audio_at.unwrap_or_else(Instant::now);
            self.record("assistant", &reply.spoken_text, at, false);
        }
        if let Some(reason) = reply.end_after {
            self.end_now(reason);
            return;
        }
        if let Some(to) = reply.transfer_after.clone() {
            self.transfer(to);
            return;
        }
        if !self.user_text.is_empty() && !self.user_speaking {
            self.close_user_turn();
        } else {
            self.arm_silence();
        }
    }

    fn transfer(&mut self, to: String) {
        let Some(control) = self.io.call_control.clone() else {
            self.start_scripted_reply(TRANSFER_FAILED, None);
            return;
        };
        self.transferring = true;
        let inbox = self.inbox_tx.clone();
        tokio::spawn(
            async move {
                if let Err(why) = control.transfer(to).await {
                    let _ = inbox.send(Internal::TransferFailed(why)).await;
                }
            }
            .in_current_span(),
        );
    }

    // ----- text to speech -----------------------------------------------------------------

    fn on_tts(&mut self, event: TtsEvent) {
        match event {
            TtsEvent::Started { generation } => self.on_audio_started(generation),
            // A session without a writer of its own (not how calls run it): pass the audio on.
            TtsEvent::Audio { generation, audio } => {
                if self.reply.as_ref().is_some_and(|r| r.generation == generation) {
                    self.on_audio_started(generation);
                    self.hand_to_writer(PlayoutItem::Audio { generation, audio });
                }
            }
            TtsEvent::Words { generation, words } => self.on_words(generation, &words),
            TtsEvent::Done {
                generation,
                audio_bytes,
            } => {
                let Some(reply) = self.reply.as_mut().filter(|r| r.owns(generation)) else {
                    return;
                };
                if generation == reply.generation {
                    reply.segment_audio_bytes = audio_bytes;
                }
                reply.utterances_pending = reply.utterances_pending.saturating_sub(1);
                if generation == reply.generation && !reply.segment_timed {
                    self.estimate_word_marks(generation);
                }
                let Some(reply) = self.reply.as_mut() else {
                    return;
                };
                if reply.utterances_pending == 0 && !reply.queued_phrases.is_empty() {
                    let phrases: Vec<String> = reply.queued_phrases.drain(..).collect();
                    for phrase in phrases {
                        self.speak(phrase);
                    }
                    if self
                        .reply
                        .as_ref()
                        .is_some_and(|r| r.llm_finished && r.tools_in_flight == 0)
                    {
                        self.close_utterance();
                    }
                }
                self.maybe_place_end_mark();
            }
            TtsEvent::Failed { generation, error } => {
                tracing::warn!(call_id = %self.setup.call_id, %error, ?generation, "tts failed");
                metrics::counter!(crate::metrics::PROVIDER_ERRORS, "provider" => "tts", "kind" => error.kind())
                    .increment(1);
                let owned =
                    generation.is_some_and(|g| self.reply.as_ref().is_some_and(|r| r.owns(g)));
                if generation.is_none() || owned {
                    // What was produced will play; the rest of this utterance is lost.
                    if let Some(reply) = self.reply.as_mut() {
                        reply.utterances_pending = reply.utterances_pending.saturating_sub(1);
                        reply.utterance_open = false;
                        // How much audio came is unknown here: the end mark goes after
                        // whatever of it was queued.
                        reply.segment_audio_bytes = u64::MAX;
                    }
                    self.maybe_place_end_mark();
                }
            }
        }
    }

    /// The first audio of `generation` went to the writer: the reply is audible from now on.
    fn on_audio_started(&mut self, generation: Generation) {
        let Some(reply) = self.reply.as_mut().filter(|r| r.generation == generation) else {
            // Stale (an interrupted or older utterance).
            return;
        };
        if reply.first_audio_at.is_none() {
            let now = Instant::now();
            reply.first_audio_at = Some(now);
            if let Some(phrase) = reply.first_phrase_at {
                crate::metrics::stage("tts_first_audio", (now - phrase).as_secs_f64());
            }
            if let Some(stopped) = self.user_stopped_at.take() {
                crate::metrics::stage("voice_to_voice", (now - stopped).as_secs_f64());
            }
        }
        reply.audio_started = true;
    }

    fn on_words(&mut self, generation: Generation, words: &[WordTiming]) {
        let format = self.setup.output_format;
        let bytes_per_second =
            format.sample_rate as f64 * format.encoding.bytes_per_sample() as f64;
        let events = self.setup.events;
        let Some(reply) = self.reply.as_mut().filter(|r| r.generation == generation) else {
            return;
        };
        reply.segment_timed = true;
        // Word times count from the start of this generation's audio, as do the writer's marks.
        for word in words {
            let count = reply.words.push(&word.word);
            let within = (f64::from(word.end.max(0.0)) * bytes_per_second) as u64;
            let item = PlayoutItem::Mark {
                generation,
                at: within,
                name: mark_name(generation, MarkPoint::Words(count)),
                last: false,
                spoken: events.then(|| word.word.clone()),
            };
            queue_for_writer(&self.io.writer, &mut self.writer_backlog, item);
        }
    }

    /// For a TTS without word timings: once the utterance's audio is complete, place each word's
    /// mark at the byte position proportional to its place in the text. Playback is still ahead
    /// (synthesis runs faster than real time), so the echoes still tell what was heard, to within
    /// the speaking rate's unevenness.
    fn estimate_word_marks(&mut self, generation: Generation) {
        let events = self.setup.events;
        let Some(reply) = self.reply.as_mut() else {
            return;
        };
        let total_chars = reply.segment_text.chars().count().max(1) as u64;
        let total_bytes = reply.segment_audio_bytes;
        let mut chars_so_far = 0u64;
        let words: Vec<String> = reply
            .segment_text
            .split_whitespace()
            .map(str::to_owned)
            .collect();
        for word in words {
            chars_so_far += word.chars().count() as u64 + 1;
            let count = reply.words.push(&word);
            let item = PlayoutItem::Mark {
                generation,
                at: total_bytes * chars_so_far.min(total_chars) / total_chars,
                name: mark_name(generation, MarkPoint::Words(count)),
                last: false,
                spoken: events.then_some(word),
            };
            queue_for_writer(&self.io.writer, &mut self.writer_backlog, item);
        }
    }

    /// Drops a reply's audio everywhere it may be: the TTS, the writer, the far end.
    fn drop_reply_audio(&mut self, reply: &Reply) {
        let _ = self.io.tts.commands.try_send(TtsCommand::Cancel {
            generation: reply.generation,
        });
        if reply.audible() && !reply.words.finished() {
            let _ = self.io.writer_control.try_send(WriterControl::Clear {
                generation: reply.generation.next(),
            });
        }
    }

    /// The caller took the turn: stop talking now and keep only what was heard.
    fn interrupt(&mut self) {
        let Some(mut reply) = self.reply.take() else {
            return;
        };
        self.barge_ins += 1;
        metrics::counter!(crate::metrics::BARGE_INS).increment(1);
        self.barge_deadline = None;
        let heard = reply.words.heard_text();
        let next = reply.generation.next();
        // The clear goes first: every millisecond here is audio the caller talks over.
        let _ = self
            .io
            .writer_control
            .try_send(WriterControl::Clear { generation: next });
        let _ = self.io.tts.commands.try_send(TtsCommand::Cancel {
            generation: reply.generation,
        });
        reply.abort_llm();
        tracing::info!(call_id = %self.setup.call_id, generation = %reply.generation, heard_words = reply.words.heard_count(), "barge-in");
        self.cut_history_to_heard(&reply, &heard);
        if reply.audible() {
            let at = reply.first_audio_at.unwrap_or_else(Instant::now);
            self.record("assistant", &heard, at, true);
        }
        // Tool results still on their way will land in the history when they arrive.
        self.generation = next;
        if reply.end_after.is_some() || reply.transfer_after.is_some() {
            // The caller spoke over a goodbye or a transfer notice: carry on with the call.
            tracing::info!(call_id = %self.setup.call_id, "end or transfer cancelled by barge-in");
        }
    }

    /// Rewrites the reply's assistant messages so the history holds only what was heard.
    fn cut_history_to_heard(&mut self, reply: &Reply, heard: &str) {
        let mut remaining_words = heard.split_whitespace().count();
        let mut to_remove = Vec::new();
        for &index in &reply.history_messages {
            let Some(ChatMessage::Assistant {
                content,
                tool_calls,
            }) = self.history.get_mut(index)
            else {
                continue;
            };
            let text = content.clone().unwrap_or_default();
            let words: Vec<&str> = text.split_whitespace().collect();
            let keep = remaining_words.min(words.len());
            remaining_words -= keep;
            let kept = words[..keep].join(" ");
            if kept.is_empty() {
                if tool_calls.is_empty() {
                    to_remove.push(index);
                } else {
                    *content = None;
                }
            } else {
                *content = Some(kept);
            }
        }
        if reply.history_messages.is_empty() && !heard.is_empty() {
            // The LLM was still streaming: its message was not in the history yet.
            self.history.push(ChatMessage::Assistant {
                content: Some(heard.to_owned()),
                tool_calls: vec![],
            });
        }
        for index in to_remove.into_iter().rev() {
            self.history.remove(index);
        }
    }

    // ----- timers and ending --------------------------------------------------------------

    fn arm_silence(&mut self) {
        if self.ended.is_none() && !self.user_speaking {
            self.silence_deadline = Some(Instant::now() + self.setup.silence_timeout);
        }
    }

    fn on_silence(&mut self) {
        self.silence_deadline = None;
        if self.reply.is_some() || self.user_speaking || self.ended.is_some() {
            return;
        }
        if self.silence_prompted {
            self.say_and_end(SILENCE_GOODBYE, EndReason::SilenceTimeout);
        } else {
            self.silence_prompted = true;
            self.start_scripted_reply(SILENCE_PROMPT, None);
        }
    }

    fn on_provider_failure(&mut self, why: &str) {
        if self.ended.is_some() {
            return;
        }
        tracing::error!(call_id = %self.setup.call_id, why, "provider failed; ending the call");
        self.say_and_end(FAILURE_GOODBYE, EndReason::ProviderError);
    }

    /// Speaks a closing line, then ends the call once it is heard (or after a grace period).
    fn say_and_end(&mut self, text: &str, reason: EndReason) {
        if self.ended.is_some() {
            return;
        }
        self.start_scripted_reply(text, Some(reason));
        self.ended = Some(reason);
        self.end_deadline = Some(Instant::now() + GOODBYE_GRACE);
    }

    fn end_now(&mut self, reason: EndReason) {
        if let Some(reply) = self.reply.take() {
            if reply.audible() && reason != EndReason::AssistantEnded {
                let heard = reply.words.heard_text();
                let at = reply.first_audio_at.unwrap_or_else(Instant::now);
                self.record("assistant", &heard, at, true);
            }
            let _ = self.io.tts.commands.try_send(TtsCommand::Cancel {
                generation: reply.generation,
            });
        }
        // The first reason wins: a caller hanging up during the max-duration goodbye still ended
        // by max duration.
        self.ended = Some(self.ended.unwrap_or(reason));
        self.end_deadline = Some(Instant::now());
    }
}

/// See [`Session::hand_to_writer`]: what does not fit the writer's queue waits in `backlog`, in order.
fn queue_for_writer(
    writer: &mpsc::Sender<PlayoutItem>,
    backlog: &mut VecDeque<PlayoutItem>,
    item: PlayoutItem,
) {
    if !backlog.is_empty() {
        backlog.push_back(item);
        return;
    }
    match writer.try_send(item) {
        Ok(()) | Err(mpsc::error::TrySendError::Closed(_)) => {}
        Err(mpsc::error::TrySendError::Full(item)) => backlog.push_back(item),
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
