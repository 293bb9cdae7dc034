//! Barge-in, the agent's side: the caller's first sound over the agent holds the reply (its
//! audio stops, its text is kept), words that confirm an interruption cut it to what was heard,
//! and a sound that turns out to be nothing (a cough, an "uh-huh", a withdrawn onset) lets it
//! go on from the first unheard word. The decisions of what counts are `turns.rs`'s and
//! `agent/interruption.rs`'s; this is what the call does about them.

use std::time::Duration;

use tokio::time::Instant;

use super::{Agent, Reply};

impl Agent {
    /// The caller made a sound over the agent: its audio stops now (within the VAD's window and
    /// a frame), and the STT has `confirm_within_ms` to say whether it was an interruption.
    pub(super) fn hold_reply(&mut self) {
        if !self.setup.interruption.enabled || self.ended.is_some() || !self.speech.hold() {
            return;
        }
        self.timings.held();
        let window = Duration::from_millis(u64::from(self.setup.interruption.confirm_within_ms));
        self.resume_deadline = Some(Instant::now() + window);
        self.resume_when_quiet = false;
        tracing::debug!(call_id = %self.setup.call_id, heard_words = self.speech.heard_words(), "reply held at the caller's first sound");
    }

    /// Nothing confirmed an interruption: the held reply goes on from the first unheard word.
    pub(super) fn resume_reply(&mut self) {
        self.resume_deadline = None;
        self.resume_when_quiet = false;
        if !self.speech.held() {
            return;
        }
        metrics::counter!(crate::metrics::BARGE_IN_RESUMES).increment(1);
        self.timings.resumed();
        tracing::info!(call_id = %self.setup.call_id, heard_words = self.speech.heard_words(), "false interruption; reply resumed");
        self.turns.interrupted();
        self.speech.resume();
    }

    /// The caller took the turn: stop talking now and keep only what was heard.
    pub(super) fn interrupt(&mut self) {
        let Some(reply) = self.cut_reply() else {
            return;
        };
        self.barge_ins += 1;
        metrics::counter!(crate::metrics::BARGE_INS).increment(1);
        tracing::info!(call_id = %self.setup.call_id, generation = %self.speech.generation(), "barge-in");
        if reply.is_some_and(|r| r.end_after.is_some() || r.transfer_after.is_some()) {
            // The caller spoke over a goodbye or a transfer notice: carry on with the call.
            tracing::info!(call_id = %self.setup.call_id, "end or transfer cancelled by barge-in");
        }
    }

    /// Stops the agent's voice now (the far end's queue cleared, the TTS cancelled) and keeps,
    /// in the history and the transcript, only what was heard. Answers the reply that was cut
    /// (`None` inside when none was under way), or `None` when nothing was being said.
    pub(super) fn cut_reply(&mut self) -> Option<Option<Reply>> {
        self.resume_deadline = None;
        self.resume_when_quiet = false;
        let cut = self.speech.cut()?;
        let reply = self.reply.take();
        self.timings.interrupted(&cut.heard);
        self.turns.interrupted();
        tracing::debug!(call_id = %self.setup.call_id, heard_words = cut.heard.split_whitespace().count(), "reply cut");
        // Tool results still on their way will land in the history when they arrive.
        self.conversation.interrupt(&cut.heard);
        if cut.audible {
            let at = cut.first_audio_at.unwrap_or_else(Instant::now);
            self.record("assistant", &cut.heard, at, true);
        }
        Some(reply)
    }
}
