//! Voicemail on outbound calls: what answering-machine detection's verdict means for a call.
//! Detection runs beside the call, never before it, so a person who picks up hears the agent at
//! once; its verdict arrives later as a control message. A person (or no clear answer) changes
//! nothing. A machine whose greeting has ended (at its beep, or its silence) gets the assistant's
//! voicemail message as a fixed line, heard whole — the machine is recording, so nothing it
//! plays is a caller's turn or an interruption — and then the call hangs up. A fax hangs up at
//! once: nothing on that line can hear a message.

use std::time::Duration;

/// Who picked up, in answering-machine detection's words (Twilio's `AnsweredBy`; Telnyx and
/// SignalWire use the same).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnsweredBy {
    Human,
    /// A machine, said as soon as one is recognised (detection not waiting for its greeting).
    MachineStart,
    /// A machine whose greeting ended with a beep: the recording has started.
    MachineEndBeep,
    /// A machine whose greeting ended in silence.
    MachineEndSilence,
    /// A machine whose greeting ended in some other way.
    MachineEndOther,
    Fax,
    /// Detection could not tell.
    Unknown,
}

impl AnsweredBy {
    pub const ALL: [AnsweredBy; 7] = [
        AnsweredBy::Human,
        AnsweredBy::MachineStart,
        AnsweredBy::MachineEndBeep,
        AnsweredBy::MachineEndSilence,
        AnsweredBy::MachineEndOther,
        AnsweredBy::Fax,
        AnsweredBy::Unknown,
    ];

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == value)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            AnsweredBy::Human => "human",
            AnsweredBy::MachineStart => "machine_start",
            AnsweredBy::MachineEndBeep => "machine_end_beep",
            AnsweredBy::MachineEndSilence => "machine_end_silence",
            AnsweredBy::MachineEndOther => "machine_end_other",
            AnsweredBy::Fax => "fax",
            AnsweredBy::Unknown => "unknown",
        }
    }
}

/// What the call does about a verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Go on exactly as before.
    CarryOn,
    /// Stop talking, say this message, and hang up once it has been heard.
    LeaveMessage(String),
    /// Hang up now.
    HangUp,
}

/// A call's voicemail: its rendered message, and whether the call has been given to it.
#[derive(Debug, Default)]
pub struct Voicemail {
    message: Option<String>,
    decided: bool,
}

impl Voicemail {
    pub fn new(message: Option<String>) -> Self {
        Self {
            message: message.filter(|m| !m.trim().is_empty()),
            decided: false,
        }
    }

    /// The verdict's consequence. Only the first verdict that ends the conversation counts: a
    /// repeated callback, or the same verdict both stored and sent live while the call was
    /// starting, must not say the message twice.
    pub fn on_answered_by(&mut self, answered_by: AnsweredBy) -> Verdict {
        if self.decided {
            return Verdict::CarryOn;
        }
        match answered_by {
            // `machine_start` comes before the greeting is over: a message said now would be
            // recorded half over the greeting, so only the end of the greeting counts.
            AnsweredBy::Human | AnsweredBy::Unknown | AnsweredBy::MachineStart => Verdict::CarryOn,
            AnsweredBy::MachineEndBeep
            | AnsweredBy::MachineEndSilence
            | AnsweredBy::MachineEndOther => match &self.message {
                Some(message) => {
                    self.decided = true;
                    Verdict::LeaveMessage(message.clone())
                }
                // Detection is only asked for with a message; a verdict without one (the
                // assistant changed since) leaves the call as it is.
                None => Verdict::CarryOn,
            },
            AnsweredBy::Fax => {
                self.decided = true;
                Verdict::HangUp
            }
        }
    }

    /// The call belongs to the machine now: its sounds and keys are nobody's turn.
    pub fn leaving(&self) -> bool {
        self.decided
    }

    /// The message was heard to its end.
    pub fn left(&self) {
        metrics::counter!(crate::metrics::VOICEMAILS).increment(1);
    }
}

/// How long a message may take to be heard before the call is closed anyway. A goodbye's fixed
/// grace would cut a long message: this one grows with the text (speech runs at about 15
/// characters a second; this allows half that).
pub fn grace(message: &str) -> Duration {
    const BASE: Duration = Duration::from_secs(15);
    let chars = message.chars().count() as u64;
    BASE + Duration::from_millis(chars.saturating_mul(130))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_word_parses_back() {
        for a in AnsweredBy::ALL {
            assert_eq!(AnsweredBy::parse(a.as_str()), Some(a));
        }
        assert_eq!(AnsweredBy::parse("machine"), None);
        assert_eq!(AnsweredBy::parse("Human"), None);
    }

    #[test]
    fn only_the_end_of_a_greeting_leaves_the_message_and_only_once() {
        let mut v = Voicemail::new(Some("Hi Ann, call us back.".into()));
        for a in [
            AnsweredBy::Human,
            AnsweredBy::Unknown,
            AnsweredBy::MachineStart,
        ] {
            assert_eq!(v.on_answered_by(a), Verdict::CarryOn, "{a:?}");
            assert!(!v.leaving());
        }
        assert_eq!(
            v.on_answered_by(AnsweredBy::MachineEndSilence),
            Verdict::LeaveMessage("Hi Ann, call us back.".into())
        );
        assert!(v.leaving());
        assert_eq!(
            v.on_answered_by(AnsweredBy::MachineEndBeep),
            Verdict::CarryOn
        );
        assert_eq!(v.on_answered_by(AnsweredBy::Fax), Verdict::CarryOn);
    }

    #[test]
    fn without_a_message_a_machine_changes_nothing_but_a_fax_hangs_up() {
        let mut v = Voicemail::new(Some("  ".into()));
        assert_eq!(
            v.on_answered_by(AnsweredBy::MachineEndBeep),
            Verdict::CarryOn
        );
        assert!(!v.leaving());
        assert_eq!(v.on_answered_by(AnsweredBy::Fax), Verdict::HangUp);
        assert!(v.leaving());
    }

    #[test]
    fn a_long_message_gets_longer_to_be_heard() {
        assert_eq!(grace(""), Duration::from_secs(15));
        // A thousand characters is about a minute of speech.
        assert!(grace(&"a".repeat(1000)) > Duration::from_secs(120));
    }
}
