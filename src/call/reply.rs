//! One agent reply: the LLM completion(s) behind it, the phrases sent to TTS, the audio forwarded
//! to the writer, and the words the caller has heard. A reply is spoken as one or more TTS
//! utterances in strict sequence — normally one, more when tool calls split it ("let me check" …
//! result … answer), because a TTS context cannot stay open while a tool runs. Each utterance is
//! its own generation; the reply owns the range from its first generation to its current one.

use std::collections::VecDeque;

use tokio::task::JoinHandle;

use super::heard::SpokenWords;
use super::io::EndReason;
use crate::agent::phrases::PhraseSplitter;
use crate::generation::Generation;

/// Where the reply's words come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplySource {
    /// Streamed from the LLM.
    Llm,
    /// A fixed text (start instruction, silence prompt, goodbye).
    Scripted,
}

/// The state of one reply.
pub struct Reply {
    /// The generation of the reply's first utterance.
    pub first_generation: Generation,
    /// The generation of the current (latest) utterance.
    pub generation: Generation,
    /// An utterance of the current generation has been closed: the next phrase needs a new one.
    pub segment_used: bool,
    pub source: ReplySource,
    /// The running LLM request, if any (aborted on barge-in).
    pub llm: Option<JoinHandle<()>>,
    /// Whether the last LLM completion of this reply has finished.
    pub llm_finished: bool,
    pub splitter: PhraseSplitter,
    /// Text of the current LLM completion (for the history).
    pub completion_text: String,
    /// Every phrase given to TTS, in order.
    pub spoken_text: String,
    /// An utterance is open at the TTS (phrases sent, not closed yet).
    pub utterance_open: bool,
    /// Utterances closed at the TTS whose `Done` has not come yet.
    pub utterances_pending: u32,
    /// Phrases held back until the previous utterance is done.
    pub queued_phrases: VecDeque<String>,
    /// Audio of this reply has gone to the writer.
    pub audio_started: bool,
    /// Audio bytes of the current generation (known once the TTS is done with it).
    pub segment_audio_bytes: u64,
    /// Text of the current generation's utterance.
    pub segment_text: String,
    /// Whether the TTS gave word timings for the current generation.
    pub segment_timed: bool,
    /// When the current LLM request started (cleared at its first token).
    pub requested_at: Option<tokio::time::Instant>,
    /// When the first phrase went to the TTS.
    pub first_phrase_at: Option<tokio::time::Instant>,
    /// When the first audio of this reply went to the writer.
    pub first_audio_at: Option<tokio::time::Instant>,
    pub words: SpokenWords,
    /// HTTP tools still running.
    pub tools_in_flight: usize,
    /// The end mark has been placed (everything of this reply is queued for playback).
    pub end_marked: bool,
    /// End the call once this reply has been heard.
    pub end_after: Option<EndReason>,
    /// Transfer the call once this reply has been heard.
    pub transfer_after: Option<String>,
    /// History indexes of the assistant messages this reply added (cut at barge-in).
    pub history_messages: Vec<usize>,
}

impl Reply {
    pub fn new(generation: Generation, source: ReplySource) -> Self {
        Self {
            first_generation: generation,
            generation,
            segment_used: false,
            source,
            llm: None,
            llm_finished: source == ReplySource::Scripted,
            splitter: PhraseSplitter::new(),
            completion_text: String::new(),
            spoken_text: String::new(),
            utterance_open: false,
            utterances_pending: 0,
            queued_phrases: VecDeque::new(),
            audio_started: false,
            segment_audio_bytes: 0,
            segment_text: String::new(),
            segment_timed: false,
            first_audio_at: None,
            requested_at: None,
            first_phrase_at: None,
            words: SpokenWords::default(),
            tools_in_flight: 0,
            end_marked: false,
            end_after: None,
            transfer_after: None,
            history_messages: Vec::new(),
        }
    }

    /// Whether output stamped `generation` belongs to this reply.
    pub fn owns(&self, generation: Generation) -> bool {
        (self.first_generation..=self.generation).contains(&generation)
    }

    /// Whether any of this reply's audio has gone to the caller.
    pub fn audible(&self) -> bool {
        self.audio_started
    }

    /// Whether nothing more will be produced for this reply: the end mark can be placed.
    pub fn complete(&self) -> bool {
        self.llm_finished
            && self.tools_in_flight == 0
            && !self.utterance_open
            && self.utterances_pending == 0
            && self.queued_phrases.is_empty()
    }

    /// Stops the LLM request, if one runs.
    pub fn abort_llm(&mut self) {
        if let Some(task) = self.llm.take() {
            task.abort();
        }
    }
}

impl Drop for Reply {
    fn drop(&mut self) {
        self.abort_llm();
    }
}
