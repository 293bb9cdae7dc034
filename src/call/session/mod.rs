//! The agent task of a call: it routes between the call's units and owns the call-level state.
//! The caller's voice and words go to [`Turns`] (when is it the caller's turn, is this a real
//! interruption); a finished turn goes to the [`Conversation`] (the model, its tools, the
//! history); the reply's text goes to [`Speech`] (utterances, generations, marks, what was
//! heard). What stays here is what only a call has: who speaks first, the timers (silence,
//! maximum duration, the grace of a goodbye), ending and transferring, and the transcript.
//! Answering-machine detection's verdict goes to the [`Voicemail`], which says whether the call
//! goes on, leaves its message or hangs up. A reply the model fails for good (after its retry
//! and fallback, `llm/fallback.rs`) is replaced by the assistant's apology, and the second such
//! reply in a row ends the call politely as a provider error; each step is recorded as one of
//! the call's provider events.
//!
//! It never touches a wire format, never sees audio (the TTS puts it straight into the writer's
//! queue) and never blocks on a slow peer: marks wait in the speech's backlog, transcript
//! writes go to the recorder, and a barge-in's clear goes on the writer's separate channel.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tracing::Instrument;

use super::first_frames::FirstFrames;
use super::io::{CallControl, Control, EndReason, MediaEvent, PlayoutItem, WriterControl};
use super::recorder::Recorder;
use super::speech::{Speech, Spoken};
use super::timing::{Outcome, Source, Timings};
use super::transcript::Transcript;
use super::turns::Turns;
use super::voicemail::{self, AnsweredBy, Verdict, Voicemail};
use crate::agent::conversation::{Action, Conversation, ConversationSetup, ReplyEvent, ReplyId};
use crate::agent::end_of_turn::TurnSettings;
use crate::agent::interruption::InterruptionSettings;
use crate::agent::keypad::{Keypad, KeypadSettings, entry_text};
use crate::agent::tools::Toolbox;
use crate::assistant::FirstMessageMode;
use crate::audio::AudioFormat;
use crate::llm::{ChatModel, LlmNotice};
use crate::store::ProviderEvent;
use crate::stt::{SttEvent, SttSession};
use crate::transport::CallEvent;
use crate::tts::TtsSession;

mod barge_in;

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
/// Said when the LLM fails before saying anything (unless the assistant has its own apology).
pub const LLM_FAILED: &str = "Sorry, I didn't catch that. Could you say it again?";
/// Replies in a row the model may fail (each after its retry and fallback) before the call is
/// ended as a provider error. Two: after the first the caller hears the apology and says it
/// again, which is the one useful thing an apology can ask for; a second failure after that is
/// a model that stays down, and each failed reply already kept the caller waiting through every
/// attempt's timeout, so asking a third time would only add silence before the same goodbye.
pub const LLM_FAILURES_BEFORE_GOODBYE: u32 = 2;
/// Said when a transfer could not be made.
pub const TRANSFER_FAILED: &str = "Sorry, I couldn't transfer your call right now.";
/// Longest wait for a goodbye to be heard before the call is closed anyway.
const GOODBYE_GRACE: Duration = Duration::from_secs(15);
/// TTS failures in a row, with no audio between them, after which the TTS counts as down: an
/// utterance's failure and its retry's, and one more. The call then ends as `provider_error`
/// instead of going on in silence (nothing can be said to the caller any more).
const TTS_DOWN_AFTER: u32 = 3;

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
    pub turn: TurnSettings,
    /// What the caller's keypad digits are for.
    pub keypad: KeypadSettings,
    pub toolbox: Toolbox,
    pub temperature: f32,
    pub max_tokens: u32,
    /// The format of the audio the TTS produces and the writer plays.
    pub output_format: AudioFormat,
    /// Whether the far end shows transcripts and the agent's text ([`CallEvent`]s).
    pub events: bool,
    /// Left on an answering machine (rendered for this call).
    pub voicemail_message: Option<String>,
    /// Said when a reply fails for good before any of it was said.
    pub llm_apology: String,
}

/// The channels and clients the agent works with.
pub struct CallIo {
    pub media: mpsc::Receiver<MediaEvent>,
    pub stt: SttSession,
    pub tts: TtsSession,
    pub llm: Arc<dyn ChatModel>,
    /// The writer's queue: the TTS puts audio in it, the agent its marks.
    pub writer: mpsc::Sender<PlayoutItem>,
    pub writer_control: mpsc::Sender<WriterControl>,
    /// Transcripts and the end for the far end (used only when `CallSetup::events`).
    pub events: mpsc::Sender<CallEvent>,
    pub control: mpsc::Receiver<Control>,
    pub recorder: Recorder,
    /// Where the writer stamps each generation's first frame (for the reply timings).
    pub first_frames: Arc<FirstFrames>,
    /// Reaches the assistant's HTTP tools (owner-chosen URLs) under the egress policy.
    pub egress: crate::egress::EgressClient,
    pub call_control: Option<Arc<dyn CallControl>>,
    /// The model's retries and fallbacks, as they happen (recorded as provider events).
    pub llm_notices: mpsc::Receiver<LlmNotice>,
    /// The assistant's fallback voice, not connected until the call's own voice fails.
    pub fallback_voice: Option<FallbackVoice>,
}

/// Another voice the call can switch to: its TTS session's connection, not started yet.
pub struct FallbackVoice {
    /// Its provider, for the call's provider events.
    pub model: &'static str,
    pub connect: futures_util::future::BoxFuture<'static, Result<TtsSession, crate::tts::TtsError>>,
}

/// How the call went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallOutcome {
    pub reason: EndReason,
    pub duration: Duration,
    pub barge_ins: u32,
}

/// Where the reply being spoken comes from, and what follows it.
#[derive(Debug, Clone, PartialEq)]
struct Reply {
    /// The model's reply (`Some`), or a fixed line (greeting, prompt, goodbye).
    from_model: Option<ReplyId>,
    /// End the call once this reply has been heard.
    end_after: Option<EndReason>,
    /// Transfer the call once this reply has been heard.
    transfer_after: Option<String>,
    /// Press these keys (play their tones) once this reply has been heard.
    dtmf_after: Option<String>,
}

impl Reply {
    /// A reply of the model's, or (`None`) a fixed line, with nothing to do after it yet.
    fn new(from_model: Option<ReplyId>, end_after: Option<EndReason>) -> Self {
        Self {
            from_model,
            end_after,
            transfer_after: None,
            dtmf_after: None,
        }
    }
}

/// Runs the call's agent until the call ends.
pub async fn run_agent(setup: CallSetup, io: CallIo) -> CallOutcome {
    let started = Instant::now();
    let conversation = Conversation::new(
        ConversationSetup {
            system_prompt: setup.system_prompt.clone(),
            toolbox: setup.toolbox.clone(),
            temperature: setup.temperature,
            max_tokens: setup.max_tokens,
        },
        Arc::clone(&io.llm),
        io.egress.clone(),
    );
    let mut speech = Speech::new(
        io.tts.commands.clone(),
        io.writer.clone(),
        io.writer_control.clone(),
        setup.output_format,
        setup.events,
    );
    if io.fallback_voice.is_some() {
        speech.offer_fallback();
    }
    let (transfer_failures_tx, transfer_failures) = mpsc::channel(1);
    let mut agent = Agent {
        started,
        llm_failures: 0,
        max_deadline: started + setup.max_duration,
        turns: Turns::new(setup.interruption.clone(), setup.turn),
        keypad: Keypad::new(setup.keypad.clone()),
        transcript: Transcript::new(io.recorder.clone(), started),
        timings: Timings::new(io.recorder.clone(), Arc::clone(&io.first_frames), started),
        voicemail: Voicemail::new(setup.voicemail_message.clone()),
        conversation,
        speech,
        setup,
        io,
        transfer_failures_tx,
        transfer_failures,
        reply: None,
        silence_deadline: None,
        silence_prompted: false,
        end_deadline: None,
        ended: None,
        transferring: false,
        barge_ins: 0,
        stt_open: true,
        tts_failures_in_a_row: 0,
        voice_switch: None,
        resume_deadline: None,
        resume_when_quiet: false,
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
    /// The call's clock: the transcript's, the timings' and the provider events' origin.
    started: Instant,
    /// Replies in a row the model failed.
    llm_failures: u32,
    setup: CallSetup,
    io: CallIo,
    turns: Turns,
    keypad: Keypad,
    conversation: Conversation,
    speech: Speech,
    transfer_failures_tx: mpsc::Sender<String>,
    transfer_failures: mpsc::Receiver<String>,
    reply: Option<Reply>,
    silence_deadline: Option<Instant>,
    silence_prompted: bool,
    max_deadline: Instant,
    /// Hard stop once the call is ending.
    end_deadline: Option<Instant>,
    ended: Option<EndReason>,
    transferring: bool,
    transcript: Transcript,
    /// Each reply's stages, interruptions and tools, recorded when it is over.
    timings: Timings,
    voicemail: Voicemail,
    barge_ins: u32,
    stt_open: bool,
    /// TTS failures since its last audio (see [`TTS_DOWN_AFTER`]).
    tts_failures_in_a_row: u32,
    /// The fallback voice connecting, after the call's own failed a reply twice.
    voice_switch: Option<FallbackVoice>,
    /// The reply is held at the caller's first sound: it resumes at this instant unless the
    /// STT confirms an interruption first.
    resume_deadline: Option<Instant>,
    /// The confirmation window passed while the caller was still making sound: resume once
    /// they are quiet (or the forced interruption comes first).
    resume_when_quiet: bool,
}

impl Agent {
    /// The first move: speak the start instruction, or let the LLM greet, or wait.
    fn open(&mut self) {
        match self.setup.first_message_mode {
            FirstMessageMode::AssistantSpeaksFirst => match self.setup.start_instruction.clone() {
                Some(text) if !text.trim().is_empty() => self.say(&text, None),
                _ => self.reply_from_model(),
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
            let far_future = Instant::now() + Duration::from_secs(86_400);
            let barge_deadline = self.turns.barge_deadline();
            let keypad_deadline = self.keypad.deadline();
            tokio::select! {
                biased;
                control = self.io.control.recv() => match control {
                    Some(Control::HangUp) => self.end_now(EndReason::HungUpByApi),
                    Some(Control::Shutdown) => self.end_now(EndReason::ServerShutdown),
                    Some(Control::AnsweredBy(answered_by)) => self.on_answered_by(answered_by),
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
                // Before the reply's events: a retry or fallback is told before the reply's
                // outcome can be, and is recorded before it.
                Some(notice) = self.io.llm_notices.recv() => {
                    let at = notice.at.saturating_duration_since(self.started);
                    self.provider_event_at(at, notice.kind.as_str(), Some(notice.detail));
                }
                (id, event) = self.conversation.next() => self.on_reply(id, event),
                Some(why) = self.transfer_failures.recv() => {
                    tracing::warn!(call_id = %self.setup.call_id, why, "transfer failed");
                    self.transferring = false;
                    self.say(TRANSFER_FAILED, None);
                }
                permit = self.speech.writer().clone().reserve_owned(), if self.speech.backlog_waiting() => {
                    self.speech.on_room(permit.ok());
                }
                event = self.io.tts.events.recv() => match event {
                    Some(event) => {
                        let spoken = self.speech.on_tts(event);
                        self.on_spoken(spoken);
                        if self.speech.take_voice_switch() {
                            self.switch_voice();
                        }
                    }
                    None => self.on_provider_failure("tts session ended"),
                },
                connected = connect_voice(&mut self.voice_switch), if self.voice_switch.is_some() => {
                    self.on_voice_connected(connected);
                }
                () = sleep_until(barge_deadline.unwrap_or(far_future)), if barge_deadline.is_some() => {
                    if self.turns.barge_deadline_passed() && self.speech.speaking() {
                        self.interrupt();
                    }
                }
                () = sleep_until(self.resume_deadline.unwrap_or(far_future)), if self.resume_deadline.is_some() => {
                    self.resume_deadline = None;
                    if self.turns.speaking() {
                        self.resume_when_quiet = true;
                    } else {
                        self.resume_reply();
                    }
                }
                () = sleep_until(keypad_deadline.unwrap_or(far_future)), if keypad_deadline.is_some() => {
                    if let Some(entry) = self.keypad.timed_out() {
                        self.keypad_entry(&entry);
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
        self.conversation.stop();
        self.timings.end(Outcome::CallEnded);
        if self.setup.events {
            let end = CallEvent::End {
                reason: reason.as_str(),
            };
            let _ = self.io.events.send(end).await;
        }
        let _ = self.io.writer_control.send(WriterControl::Close).await;
    }

    fn record(&mut self, role: &str, text: &str, at: Instant, interrupted: bool) {
        self.transcript.record(role, text, at, interrupted);
    }

    // ----- the caller ---------------------------------------------------------------------

    fn on_media(&mut self, event: MediaEvent) {
        if self.voicemail.leaving() && !matches!(event, MediaEvent::Mark(_) | MediaEvent::Hangup) {
            // A machine is recording the message: its sounds and keys are nobody's turn.
            return;
        }
        match event {
            MediaEvent::Onset => {
                if self.speech.speaking() {
                    self.hold_reply();
                }
            }
            MediaEvent::OnsetWithdrawn => {
                // The sound was not speech after all (a knock, a cough): the reply goes on at
                // once, unless words already confirmed an interruption.
                if self.speech.held() && !self.turns.speaking() {
                    self.resume_reply();
                }
            }
            MediaEvent::SpeechStarted => {
                self.silence_deadline = None;
                let over_the_agent = self.speech.speaking();
                self.turns.speech_started(over_the_agent);
                if over_the_agent {
                    self.hold_reply();
                }
                self.continue_turn();
            }
            MediaEvent::Paused => {
                self.turns.paused();
                if self.resume_when_quiet {
                    self.resume_reply();
                }
            }
            MediaEvent::Resumed => {
                self.turns.resumed();
                self.continue_turn();
            }
            MediaEvent::SpeechStopped => {
                self.turns.speech_stopped();
                if self.resume_when_quiet {
                    self.resume_reply();
                }
                if self.reply.is_none() && !self.turns.has_words() {
                    self.arm_silence();
                }
            }
            MediaEvent::Mark(name) => {
                let spoken = self.speech.on_mark(&name);
                // A mark of the reply (a stale one is not its own and hears nothing).
                if spoken == Spoken::Heard || self.speech.heard_words() > 0 {
                    self.timings.mark_echoed();
                }
                self.on_spoken(spoken);
            }
            MediaEvent::Dtmf(key) => {
                self.silence_deadline = None;
                if let Some(entry) = self.keypad.press(key) {
                    self.keypad_entry(&entry);
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

    fn on_stt(&mut self, event: SttEvent) {
        if self.voicemail.leaving()
            && matches!(event, SttEvent::Transcript { .. } | SttEvent::UtteranceEnd)
        {
            return;
        }
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
                from_finalize,
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
                let heard = self.turns.transcript(
                    text,
                    is_final,
                    speech_final,
                    from_finalize,
                    self.speech.speaking(),
                );
                if heard.barge_in {
                    self.interrupt();
                }
                if heard.ignored {
                    if is_final && self.speech.held() && !self.turns.speaking() {
                        // The sound over the agent was an acknowledgement (or too short to
                        // count): go on at once rather than at the end of the window.
                        self.resume_reply();
                    }
                    return;
                }
                if !text.is_empty() {
                    self.silence_deadline = None;
                }
                if heard.final_words {
                    self.retract_unheard_reply();
                }
                if heard.turn_over {
                    self.close_user_turn();
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

    /// The caller finished typing an entry on the keypad: it is their turn, deliberately, even
    /// over the agent.
    fn keypad_entry(&mut self, entry: &str) {
        if self.ended.is_some() {
            return;
        }
        if self.speech.speaking() {
            self.interrupt();
        }
        self.turns.keys(&entry_text(entry));
        self.close_user_turn();
    }

    /// The caller's turn is over: answer it.
    fn close_user_turn(&mut self) {
        if self.ended.is_some() || self.speech.audible() {
            // The caller spoke over the agent without interrupting it (interruptions off):
            // answer once the agent is done.
            return;
        }
        let Some(turn) = self.turns.take() else {
            return;
        };
        if let Some(stopped) = self.turns.stopped_at() {
            crate::metrics::stage("stt_final", stopped.elapsed().as_secs_f64());
        }
        self.timings.caller_turn(self.turns.stopped_at());
        self.silence_prompted = false;
        self.conversation.push_user(&turn.text);
        self.transcript.user(&turn.text, turn.at);
        self.reply_from_model();
    }

    /// The caller speaks again right after their turn ended: if none of the reply has been
    /// heard, they only paused, so the reply is taken back before any of it plays and their
    /// words join the same turn.
    fn continue_turn(&mut self) {
        if self.turns.continues_turn() {
            self.retract_unheard_reply();
        }
    }

    /// Words after a reply started but before it was heard: the caller was not done. The
    /// reply is taken back and the whole turn answered.
    fn retract_unheard_reply(&mut self) {
        let unheard_model_reply =
            self.reply.as_ref().is_some_and(|r| r.from_model.is_some()) && !self.speech.audible();
        if !unheard_model_reply {
            return;
        }
        if let Some(answered) = self.conversation.retract() {
            self.speech.stop();
            self.reply = None;
            self.turns.put_back(&answered);
            self.transcript.user_taken_back();
            self.timings.end(Outcome::TakenBack);
        }
    }

    // ----- replies ------------------------------------------------------------------------

    /// Asks the model for a reply to the conversation so far.
    fn reply_from_model(&mut self) {
        self.silence_deadline = None;
        self.speech.begin();
        self.timings.begin(Source::Model);
        let id = self.conversation.start_reply();
        self.reply = Some(Reply::new(Some(id), None));
    }

    /// Says a fixed line (then ends the call, with `end_after`).
    fn say(&mut self, text: &str, end_after: Option<EndReason>) {
        self.silence_deadline = None;
        self.speech.begin();
        self.timings.begin(Source::Line);
        self.conversation.say(text);
        // Phrase by phrase, as the model's text is: a TTS that synthesises sentence by sentence
        // (Sarvam) then starts on the first sentence at once and times its words as it goes.
        self.speech.say(text);
        self.speech.complete();
        self.reply = Some(Reply::new(None, end_after));
    }

    fn on_reply(&mut self, id: ReplyId, event: ReplyEvent) {
        let Some(reply) = self.reply.as_mut().filter(|r| r.from_model == Some(id)) else {
            return;
        };
        match event {
            ReplyEvent::Action(Action::End { reason }) => {
                tracing::info!(call_id = %self.setup.call_id, reason, "assistant ends the call");
                reply.end_after = Some(EndReason::AssistantEnded);
            }
            ReplyEvent::Action(Action::Transfer { to }) => reply.transfer_after = Some(to),
            ReplyEvent::Action(Action::SendDtmf { digits }) => reply.dtmf_after = Some(digits),
            event => self.on_reply_words(event),
        }
    }

    /// What a reply of the model's says.
    fn on_reply_words(&mut self, event: ReplyEvent) {
        match event {
            ReplyEvent::FirstToken { after } => {
                crate::metrics::stage("llm_first_token", after.as_secs_f64());
                self.timings.first_token();
            }
            ReplyEvent::Text(text) => self.speech.say(&text),
            // A TTS context cannot stay open while a tool runs: what was said is one utterance.
            ReplyEvent::ToolsCalled => self.speech.pause(),
            ReplyEvent::ToolResult {
                name,
                arguments,
                result,
                took,
            } => {
                self.timings.tool(&name, &arguments, &result, took);
                let line = format!("{name}({arguments}) -> {result}");
                self.record("tool", &line, Instant::now(), false);
            }
            ReplyEvent::Recommended(products) => {
                // Shown beside the transcript; only offered where the far end shows events.
                if self.setup.events
                    && self
                        .io
                        .events
                        .try_send(CallEvent::Recommendation(products))
                        .is_err()
                {
                    tracing::warn!(call_id = %self.setup.call_id, "recommendation not shown: the event queue is full");
                }
            }
            ReplyEvent::Action(_) => {}
            ReplyEvent::Done => {
                self.llm_failures = 0;
                self.speech.complete();
            }
            ReplyEvent::Failed(error) => self.on_reply_failed(&error),
        }
    }

    /// The model failed the reply for good (its retry and fallback too).
    fn on_reply_failed(&mut self, error: &crate::llm::LlmError) {
        tracing::warn!(call_id = %self.setup.call_id, %error, "llm failed");
        metrics::counter!(crate::metrics::PROVIDER_ERRORS, "provider" => "llm", "kind" => error.kind())
            .increment(1);
        self.llm_failures += 1;
        self.provider_event("failed", Some(error.to_string()));
        if self.llm_failures >= LLM_FAILURES_BEFORE_GOODBYE {
            let why = format!("llm failed {} replies in a row: {error}", self.llm_failures);
            self.on_provider_failure(&why);
            return;
        }
        // Whatever was said stays said; if nothing was, the caller hears a short apology
        // rather than silence, and the call goes on.
        self.speech.pause();
        if self.speech.said().is_empty() {
            let apology = self.setup.llm_apology.clone();
            self.speech.say(&apology);
            metrics::counter!(crate::metrics::LLM_APOLOGIES).increment(1);
            self.provider_event("apology", Some(apology));
        }
        self.speech.complete();
    }

    /// Records an LLM event that happens now.
    fn provider_event(&self, kind: &str, detail: Option<String>) {
        self.provider_event_at(self.started.elapsed(), kind, detail);
    }

    fn provider_event_at(&self, at: Duration, kind: &str, detail: Option<String>) {
        self.provider_event_for(at, "llm", kind, detail);
    }

    fn provider_event_for(&self, at: Duration, provider: &str, kind: &str, detail: Option<String>) {
        self.io.recorder.provider_event(ProviderEvent {
            at_ms: i64::try_from(at.as_millis()).unwrap_or(i64::MAX),
            provider: provider.to_owned(),
            kind: kind.to_owned(),
            detail,
        });
    }

    /// The call's voice failed a reply twice: the fallback voice, if the assistant has one,
    /// connects and says what is left (the speech layer holds it meanwhile).
    fn switch_voice(&mut self) {
        match self.io.fallback_voice.take() {
            Some(voice) => {
                tracing::warn!(call_id = %self.setup.call_id, fallback = voice.model, "tts failed twice; switching to the fallback voice");
                self.voice_switch = Some(voice);
            }
            None => self.speech.keep_voice(),
        }
    }

    fn on_voice_connected(
        &mut self,
        connected: (&'static str, Result<TtsSession, crate::tts::TtsError>),
    ) {
        let (model, result) = connected;
        self.voice_switch = None;
        let at = self.started.elapsed();
        match result {
            Ok(session) => {
                metrics::counter!(crate::metrics::TTS_FALLBACKS, "outcome" => "connected")
                    .increment(1);
                self.provider_event_for(at, "tts", "fallback_voice", Some(model.to_owned()));
                self.speech.use_voice(session.commands.clone());
                // The old session's task ends when its last handle goes.
                self.io.tts = session;
            }
            Err(error) => {
                tracing::error!(call_id = %self.setup.call_id, %error, "fallback voice did not connect");
                metrics::counter!(crate::metrics::TTS_FALLBACKS, "outcome" => "failed")
                    .increment(1);
                self.provider_event_for(
                    at,
                    "tts",
                    "fallback_voice_failed",
                    Some(error.to_string()),
                );
                self.speech.keep_voice();
            }
        }
    }

    fn on_spoken(&mut self, spoken: Spoken) {
        match spoken {
            Spoken::Nothing => {}
            Spoken::FirstAudio { after, generation } => {
                self.tts_failures_in_a_row = 0;
                crate::metrics::stage("tts_first_audio", after.as_secs_f64());
                self.timings.first_audio(after, generation);
                if let Some(stopped) = self.turns.take_stopped_at() {
                    crate::metrics::stage("voice_to_voice", stopped.elapsed().as_secs_f64());
                }
            }
            Spoken::Heard => self.finish_reply(),
            Spoken::Failed(error) => {
                tracing::warn!(call_id = %self.setup.call_id, %error, "tts failed");
                metrics::counter!(crate::metrics::PROVIDER_ERRORS, "provider" => "tts", "kind" => error.kind())
                    .increment(1);
                self.tts_failures_in_a_row += 1;
                if self.tts_failures_in_a_row >= TTS_DOWN_AFTER && self.ended.is_none() {
                    tracing::error!(
                        call_id = %self.setup.call_id,
                        failures = self.tts_failures_in_a_row,
                        "tts is down; ending the call"
                    );
                    self.end_now(EndReason::ProviderError);
                }
            }
        }
    }

    /// The reply has been heard to the end.
    fn finish_reply(&mut self) {
        let Some(reply) = self.reply.take() else {
            return;
        };
        self.timings.end(Outcome::Heard);
        if let Some((said, first_audio_at)) = self.speech.finish()
            && !said.is_empty()
        {
            self.record(
                "assistant",
                &said,
                first_audio_at.unwrap_or_else(Instant::now),
                false,
            );
        }
        if let Some(reason) = reply.end_after {
            if reason == EndReason::Voicemail {
                self.voicemail.left();
            }
            self.end_now(reason);
        } else if let Some(to) = reply.transfer_after {
            self.transfer(to);
        } else if let Some(digits) = reply.dtmf_after {
            tracing::info!(call_id = %self.setup.call_id, digits, "pressing keys");
            let tones = crate::audio::dtmf::tones(&digits, self.setup.output_format);
            self.speech.tones(tones);
            self.reply = Some(Reply::new(None, None));
        } else if self.turns.has_words() && !self.turns.speaking() {
            self.close_user_turn();
        } else {
            self.arm_silence();
        }
    }

    fn transfer(&mut self, to: String) {
        let Some(control) = self.io.call_control.clone() else {
            self.say(TRANSFER_FAILED, None);
            return;
        };
        self.transferring = true;
        let failures = self.transfer_failures_tx.clone();
        tokio::spawn(
            async move {
                if let Err(why) = control.transfer(to).await {
                    let _ = failures.send(why).await;
                }
            }
            .in_current_span(),
        );
    }

    /// Answering-machine detection's verdict (outbound calls with a voicemail message). A
    /// machine gets the message at once, over whatever the agent was saying to its greeting.
    fn on_answered_by(&mut self, answered_by: AnsweredBy) {
        if self.ended.is_some() {
            return;
        }
        tracing::info!(call_id = %self.setup.call_id, answered_by = answered_by.as_str(), "answering-machine detection");
        let message = match self.voicemail.on_answered_by(answered_by) {
            Verdict::CarryOn => return,
            Verdict::LeaveMessage(message) => Some(message),
            Verdict::HangUp => None,
        };
        self.cut_reply();
        self.conversation.stop();
        // The greeting's words were never a caller's turn.
        let _ = self.turns.take();
        match message {
            Some(message) => {
                let grace = voicemail::grace(&message);
                self.say_and_end_within(&message, EndReason::Voicemail, grace);
            }
            None => self.end_now(EndReason::Voicemail),
        }
    }

    // ----- timers and ending --------------------------------------------------------------

    fn arm_silence(&mut self) {
        if self.ended.is_none() && !self.turns.speaking() {
            self.silence_deadline = Some(Instant::now() + self.setup.silence_timeout);
        }
    }

    fn on_silence(&mut self) {
        self.silence_deadline = None;
        if self.reply.is_some() || self.turns.speaking() || self.ended.is_some() {
            return;
        }
        if self.silence_prompted {
            self.say_and_end(SILENCE_GOODBYE, EndReason::SilenceTimeout);
        } else {
            self.silence_prompted = true;
            self.say(SILENCE_PROMPT, None);
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
        self.say_and_end_within(text, reason, GOODBYE_GRACE);
    }

    fn say_and_end_within(&mut self, text: &str, reason: EndReason, grace: Duration) {
        if self.ended.is_some() {
            return;
        }
        self.say(text, Some(reason));
        self.ended = Some(reason);
        self.end_deadline = Some(Instant::now() + grace);
    }

    fn end_now(&mut self, reason: EndReason) {
        self.conversation.stop();
        self.timings.end(Outcome::CallEnded);
        if self.reply.take().is_some()
            && let Some(cut) = self.speech.stop()
            && cut.audible
            && reason != EndReason::AssistantEnded
        {
            let at = cut.first_audio_at.unwrap_or_else(Instant::now);
            self.record("assistant", &cut.heard, at, true);
        }
        // The first reason wins: a caller hanging up during the max-duration goodbye still ended
        // by max duration.
        self.ended = Some(self.ended.unwrap_or(reason));
        self.end_deadline = Some(Instant::now());
    }
}

/// The fallback voice's connection (only polled while one is under way).
async fn connect_voice(
    switch: &mut Option<FallbackVoice>,
) -> (&'static str, Result<TtsSession, crate::tts::TtsError>) {
    match switch {
        Some(voice) => (voice.model, (&mut voice.connect).await),
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests;
