//! The caller's side of turn-taking: from the local VAD's speech edges and the STT's words,
//! decide when the caller's turn is over (answer it) and when their speech over the agent is a
//! real interruption rather than an acknowledgement ("uh-huh") or noise. It holds the words of
//! the turn in progress and knows nothing of replies, audio or the model: the session tells it
//! whether the agent is audible and acts on what it answers.
//!
//! The turn ends at the STT's answer to the finalize the reader sent when the VAD heard the
//! end-of-turn silence (see [`TurnSettings`]), or at the provider's own endpointing, whichever
//! comes first; speech soon after a turn ended may continue it ([`Turns::continues_turn`]).

use std::time::Duration;

use tokio::time::Instant;

use crate::agent::end_of_turn::TurnSettings;
use crate::agent::interruption::{InterruptionSettings, is_backchannel};

/// A finished turn of the caller's.
#[derive(Debug, Clone, PartialEq)]
pub struct UserTurn {
    pub text: String,
    /// When the caller started it.
    pub at: Instant,
}

/// What a transcript means for the call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Heard {
    /// The caller took the turn from the agent: cut it off now.
    pub barge_in: bool,
    /// The words are not (yet) the caller's turn: speech over the agent that has not
    /// confirmed an interruption, or an acknowledgement. Nothing else to do.
    pub ignored: bool,
    /// Final words joined the turn in progress.
    pub final_words: bool,
    /// The caller's turn is over: answer it.
    pub turn_over: bool,
}

/// The turn in progress and the caller's voice.
#[derive(Debug)]
pub struct Turns {
    interruption: InterruptionSettings,
    /// Settled words of the turn in progress.
    text: String,
    started: Option<Instant>,
    speaking: bool,
    /// When the VAD last heard the caller stop (where the latency a caller hears starts).
    stopped_at: Option<Instant>,
    /// Speech over the agent that interrupts at this instant unless it stops first.
    barge_deadline: Option<Instant>,
    /// The caller paused or stopped and the STT was asked for its final: that final ends the
    /// turn unless they speak again first.
    finalize_pending: bool,
    /// When the last turn was taken, and how long speech after it continues it.
    taken_at: Option<Instant>,
    grace: Duration,
}

impl Turns {
    pub fn new(interruption: InterruptionSettings, turn: TurnSettings) -> Self {
        Self {
            interruption,
            text: String::new(),
            started: None,
            speaking: false,
            stopped_at: None,
            barge_deadline: None,
            finalize_pending: false,
            taken_at: None,
            grace: Duration::from_millis(u64::from(turn.continuation_grace_ms)),
        }
    }

    /// The VAD heard the caller start speaking; `agent_audible`: over the agent.
    pub fn speech_started(&mut self, agent_audible: bool) {
        self.speaking = true;
        self.finalize_pending = false;
        self.started.get_or_insert_with(Instant::now);
        if agent_audible && self.interruption.enabled {
            let force_after = Duration::from_millis(u64::from(self.interruption.force_after_ms));
            self.barge_deadline = Some(Instant::now() + force_after);
        }
    }

    /// The VAD heard the caller pause for the end-of-turn silence; the STT was asked for its
    /// final.
    pub fn paused(&mut self) {
        self.speaking = false;
        self.stopped_at = Some(Instant::now());
        self.finalize_pending = true;
    }

    /// The caller went on after a pause.
    pub fn resumed(&mut self) {
        self.speaking = true;
        self.finalize_pending = false;
    }

    /// The VAD heard the caller stop (after its minimum silence; a pause came before unless the
    /// end-of-turn silence is as long).
    pub fn speech_stopped(&mut self) {
        if self.speaking || self.stopped_at.is_none() {
            self.stopped_at = Some(Instant::now());
        }
        self.speaking = false;
        self.finalize_pending = true;
        self.barge_deadline = None;
    }

    /// Speech now continues the turn taken last: it came within the grace window after it.
    /// (Whether the reply to that turn was heard yet is the session's to know.)
    pub fn continues_turn(&self) -> bool {
        self.taken_at.is_some_and(|at| at.elapsed() <= self.grace)
    }

    /// What the STT heard (`is_final`: these words will not change; `speech_final`: the
    /// provider's endpointing says the utterance is over; `from_finalize`: the answer to the
    /// finalize sent at the caller's pause); `agent_audible`: said over the agent.
    pub fn transcript(
        &mut self,
        text: &str,
        is_final: bool,
        speech_final: bool,
        from_finalize: bool,
        agent_audible: bool,
    ) -> Heard {
        let mut heard = Heard::default();
        // Our VAD heard the end and the STT has now said all it heard before it.
        let speech_final =
            speech_final || (is_final && from_finalize && self.finalize_pending && !self.speaking);
        if agent_audible {
            if is_backchannel(text) {
                // An acknowledgement over the agent: not a turn, not an interruption.
                heard.ignored = true;
                return heard;
            }
            if self.interruption.confirmed_by(text) {
                heard.barge_in = true;
                self.barge_deadline = None;
            } else if self.interruption.enabled {
                // Too few words yet to take the turn; later results may confirm it.
                heard.ignored = true;
                return heard;
            }
            // With interruptions off the words are kept and answered after the reply.
        }
        if text.is_empty() {
            heard.turn_over = speech_final;
            return heard;
        }
        self.started.get_or_insert_with(Instant::now);
        if is_final {
            if !self.text.is_empty() {
                self.text.push(' ');
            }
            self.text.push_str(text);
            heard.final_words = true;
            heard.turn_over = speech_final;
        }
        heard
    }

    /// A keypad entry, in words (see `agent::keypad`), joins the turn.
    pub fn keys(&mut self, words: &str) {
        self.started.get_or_insert_with(Instant::now);
        if !self.text.is_empty() {
            self.text.push(' ');
        }
        self.text.push_str(words);
    }

    /// The turn in progress, if it has words, to be answered; the detector starts afresh.
    pub fn take(&mut self) -> Option<UserTurn> {
        if self.text.trim().is_empty() {
            return None;
        }
        self.finalize_pending = false;
        self.taken_at = Some(Instant::now());
        Some(UserTurn {
            text: std::mem::take(&mut self.text),
            at: self.started.take().unwrap_or_else(Instant::now),
        })
    }

    /// A turn answered too early (the caller went on talking) comes back in front of what
    /// followed.
    pub fn put_back(&mut self, answered: &str) {
        self.text = format!("{answered} {}", self.text).trim().to_owned();
    }

    pub fn has_words(&self) -> bool {
        !self.text.is_empty()
    }

    pub fn speaking(&self) -> bool {
        self.speaking
    }

    /// When the caller last stopped speaking, once (for the latency measured from it).
    pub fn take_stopped_at(&mut self) -> Option<Instant> {
        self.stopped_at.take()
    }

    pub fn stopped_at(&self) -> Option<Instant> {
        self.stopped_at
    }

    pub fn barge_deadline(&self) -> Option<Instant> {
        self.barge_deadline
    }

    /// The forced-interruption deadline passed; answers whether interruptions are on.
    pub fn barge_deadline_passed(&mut self) -> bool {
        self.barge_deadline = None;
        self.interruption.enabled
    }

    /// The agent was cut off: no forced interruption is pending any more.
    pub fn interrupted(&mut self) {
        self.barge_deadline = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn turns() -> Turns {
        Turns::new(InterruptionSettings::default(), TurnSettings::default())
    }

    #[tokio::test(start_paused = true)]
    async fn final_words_make_a_turn_that_ends_on_speech_final() {
        let mut t = turns();
        t.speech_started(false);
        let heard = t.transcript("I'd like", true, false, false, false);
        assert!(heard.final_words && !heard.turn_over);
        let heard = t.transcript("a table", true, true, false, false);
        assert!(heard.turn_over);
        assert_eq!(t.take().unwrap().text, "I'd like a table");
        assert!(t.take().is_none(), "taken once");
    }

    #[tokio::test(start_paused = true)]
    async fn over_the_agent_acknowledgements_are_ignored_and_words_interrupt() {
        let mut t = turns();
        t.speech_started(true);
        assert!(
            t.barge_deadline().is_some(),
            "speech over the agent arms the deadline"
        );
        let heard = t.transcript("uh-huh", true, true, false, true);
        assert!(heard.ignored && !heard.barge_in);
        assert!(!t.has_words());
        let heard = t.transcript("wait, what about Sunday", false, false, false, true);
        assert!(heard.barge_in);
        assert!(t.barge_deadline().is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn with_interruptions_off_words_wait_for_the_agent() {
        let mut t = Turns::new(
            InterruptionSettings {
                enabled: false,
                ..InterruptionSettings::default()
            },
            TurnSettings::default(),
        );
        t.speech_started(true);
        assert!(t.barge_deadline().is_none());
        let heard = t.transcript("hold on", true, true, false, true);
        assert!(!heard.barge_in && !heard.ignored && heard.turn_over);
        assert!(t.has_words());
    }

    #[tokio::test(start_paused = true)]
    async fn a_retracted_turn_goes_back_in_front() {
        let mut t = turns();
        t.transcript("I want a table", true, true, false, false);
        let answered = t.take().unwrap().text;
        t.transcript("for two", true, false, false, false);
        t.put_back(&answered);
        assert_eq!(t.take().unwrap().text, "I want a table for two");
    }

    #[tokio::test(start_paused = true)]
    async fn the_answer_to_the_finalize_at_a_pause_ends_the_turn() {
        let mut t = turns();
        t.speech_started(false);
        t.transcript("I'd like a table", true, false, false, false);
        // A finalize answer before the caller paused (the reader's last one) ends nothing.
        assert!(!t.transcript("", true, false, true, false).turn_over);
        t.paused();
        let heard = t.transcript("for two", true, false, true, false);
        assert!(heard.turn_over, "the finalize's answer ends the turn");
        assert_eq!(t.take().unwrap().text, "I'd like a table for two");
        // The caller goes on at once: that continues the turn just taken.
        t.resumed();
        assert!(t.continues_turn());
        tokio::time::sleep(Duration::from_millis(1001)).await;
        assert!(!t.continues_turn(), "not after the grace window");
    }

    #[tokio::test(start_paused = true)]
    async fn speech_after_a_pause_keeps_the_turn_open() {
        let mut t = turns();
        t.speech_started(false);
        t.paused();
        t.resumed();
        let heard = t.transcript("and a high chair", true, false, true, false);
        assert!(heard.final_words && !heard.turn_over);
        t.paused();
        t.speech_stopped();
        assert!(t.transcript("", true, false, true, false).turn_over);
    }

    #[tokio::test(start_paused = true)]
    async fn keypad_digits_are_words_of_a_turn() {
        let mut t = turns();
        t.keys("(the caller pressed 5 on the keypad)");
        assert_eq!(
            t.take().unwrap().text,
            "(the caller pressed 5 on the keypad)"
        );
    }
}
