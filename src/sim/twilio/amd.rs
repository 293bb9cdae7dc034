//! The fake's answering-machine detection. Twilio listens to the callee's first seconds; the fake
//! knows who the callee is ([`Callee`], configured per number) and watches its simulated caller
//! play, so the verdict comes when Twilio's would: `human` once a person's first words end; with
//! `DetectMessageEnd`, `machine_end_beep` once a machine's greeting and beep have played (with
//! `Enable`, `machine_start` after its first words); `fax` at once; `unknown` (or
//! `machine_end_other` for a greeting still going) when `MachineDetectionTimeout` passes first.
//! With `AsyncAmd=true` the verdict is posted, signed, to `AsyncAmdStatusCallback`; either way it
//! becomes the call's `answered_by`. Synchronous detection does not hold the TwiML back here.

use std::time::Duration;

use tokio::time::Instant;

use crate::sim::caller::{CallerAudio, CallerProgress, CallerScript, DEFAULT_MACHINE_GREETING};

/// Twilio's default `MachineDetectionTimeout`, in seconds.
pub const DEFAULT_TIMEOUT_SECS: u32 = 30;
/// The `MachineDetectionTimeout` Twilio accepts, in seconds.
pub const TIMEOUT_RANGE_SECS: std::ops::RangeInclusive<u32> = 3..=59;

/// `MachineDetection` of a create request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MachineDetection {
    /// A verdict as soon as the callee is known.
    Enable,
    /// For a machine, wait for the end of its greeting (to leave a message after the beep).
    DetectMessageEnd,
}

impl MachineDetection {
    pub fn parse(value: &str) -> Option<Self> {
        match value {
            "Enable" => Some(Self::Enable),
            "DetectMessageEnd" => Some(Self::DetectMessageEnd),
            _ => None,
        }
    }
}

/// What answers a number.
#[derive(Debug, Clone, Default)]
pub enum Callee {
    /// A person, doing what the number's caller script says.
    #[default]
    Person,
    /// An answering machine: its greeting, a beep, then silence while it records.
    Machine { greeting: CallerAudio },
    /// A fax machine: silence on the stream.
    Fax,
}

impl Callee {
    /// A machine with the default greeting in the synthetic voice.
    pub fn machine() -> Self {
        Callee::Machine {
            greeting: CallerAudio::synthetic_speech(DEFAULT_MACHINE_GREETING),
        }
    }

    /// What plays on the stream: a person's own script, or the machine's.
    pub fn script(&self, person: CallerScript) -> CallerScript {
        match self {
            Callee::Person => person,
            Callee::Machine { greeting } => CallerScript::answering_machine(greeting.clone()),
            Callee::Fax => CallerScript::new(),
        }
    }
}

/// The detection running on one call's stream.
#[derive(Debug)]
pub struct Detector {
    mode: MachineDetection,
    callee: Callee,
    /// How many times the callee speaks in all (a machine: greeting and beep).
    speeches: usize,
    deadline: Instant,
    done: bool,
}

impl Detector {
    /// Detection from `answered` on, for a callee whose script speaks `speeches` times.
    pub fn new(
        mode: MachineDetection,
        callee: Callee,
        speeches: usize,
        timeout: Duration,
        answered: Instant,
    ) -> Self {
        Self {
            mode,
            callee,
            speeches,
            deadline: answered + timeout,
            done: false,
        }
    }

    /// When the verdict is due at the latest (`None` once given).
    pub fn deadline(&self) -> Option<Instant> {
        (!self.done).then_some(self.deadline)
    }

    /// The verdict, once what the callee has played decides it (given once).
    pub fn on_progress(&mut self, progress: CallerProgress) -> Option<&'static str> {
        if self.done {
            return None;
        }
        let verdict = match (&self.callee, self.mode) {
            (Callee::Fax, _) => Some("fax"),
            (Callee::Person, _) => (progress.speech_ended >= 1).then_some("human"),
            (Callee::Machine { .. }, MachineDetection::Enable) => {
                (progress.speech_ended >= 1).then_some("machine_start")
            }
            (Callee::Machine { .. }, MachineDetection::DetectMessageEnd) => (self.speeches > 0
                && progress.speech_ended >= self.speeches)
                .then_some("machine_end_beep"),
        };
        self.done = verdict.is_some();
        verdict
    }

    /// The verdict when the timeout passes first.
    pub fn on_timeout(&mut self, progress: CallerProgress) -> Option<&'static str> {
        if self.done {
            return None;
        }
        self.done = true;
        let greeting_under_way = progress.speech_started > 0;
        Some(match (&self.callee, self.mode) {
            (Callee::Machine { .. }, MachineDetection::DetectMessageEnd) if greeting_under_way => {
                "machine_end_other"
            }
            (Callee::Machine { .. }, MachineDetection::Enable) if greeting_under_way => {
                "machine_start"
            }
            _ => "unknown",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(started: usize, ended: usize) -> CallerProgress {
        CallerProgress {
            speech_started: started,
            speech_ended: ended,
        }
    }

    fn detector(mode: MachineDetection, callee: Callee, speeches: usize) -> Detector {
        Detector::new(
            mode,
            callee,
            speeches,
            Duration::from_secs(30),
            Instant::now(),
        )
    }

    #[test]
    fn a_machine_is_called_at_the_end_of_its_beep_with_detect_message_end() {
        let mut d = detector(MachineDetection::DetectMessageEnd, Callee::machine(), 2);
        assert_eq!(d.on_progress(progress(1, 0)), None);
        assert_eq!(d.on_progress(progress(2, 1)), None, "the greeting is over");
        assert_eq!(d.on_progress(progress(2, 2)), Some("machine_end_beep"));
        assert_eq!(d.on_progress(progress(2, 2)), None, "once");
        assert_eq!(d.deadline(), None);
    }

    #[test]
    fn enable_answers_at_the_first_words() {
        let mut d = detector(MachineDetection::Enable, Callee::machine(), 2);
        assert_eq!(d.on_progress(progress(1, 1)), Some("machine_start"));
        let mut d = detector(MachineDetection::Enable, Callee::Person, 3);
        assert_eq!(d.on_progress(progress(1, 0)), None);
        assert_eq!(d.on_progress(progress(1, 1)), Some("human"));
        let mut d = detector(MachineDetection::DetectMessageEnd, Callee::Fax, 0);
        assert_eq!(d.on_progress(progress(0, 0)), Some("fax"));
    }

    #[test]
    fn the_timeout_gives_what_was_heard_so_far() {
        let mut d = detector(MachineDetection::DetectMessageEnd, Callee::Person, 1);
        assert!(d.deadline().is_some());
        assert_eq!(d.on_timeout(progress(0, 0)), Some("unknown"));
        assert_eq!(d.on_timeout(progress(0, 0)), None);
        let mut d = detector(MachineDetection::DetectMessageEnd, Callee::machine(), 2);
        assert_eq!(d.on_timeout(progress(1, 0)), Some("machine_end_other"));
        let mut d = detector(MachineDetection::DetectMessageEnd, Callee::machine(), 2);
        assert_eq!(d.on_timeout(progress(0, 0)), Some("unknown"));
    }

    #[test]
    fn only_twilios_spellings_parse() {
        assert_eq!(
            MachineDetection::parse("DetectMessageEnd"),
            Some(MachineDetection::DetectMessageEnd)
        );
        assert_eq!(
            MachineDetection::parse("Enable"),
            Some(MachineDetection::Enable)
        );
        assert_eq!(MachineDetection::parse("enable"), None);
        assert_eq!(MachineDetection::parse("true"), None);
    }
}
