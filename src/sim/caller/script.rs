//! What the simulated caller does, step by step: wait, wait for the agent, speak, press keys,
//! hang up. Built in code by tests, or read from JSON (fixtures, the load generator). Between and
//! after steps the caller streams silence, as a real phone line does. An answering machine is a
//! script too: its greeting, its beep, then the silence of a recording.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::audio::{CallerAudio, CallerAudioError};

/// One thing the caller does.
#[derive(Debug, Clone)]
pub enum Step {
    /// Stay silent for this long.
    Wait(Duration),
    /// Stay silent until agent audio arrives (or `timeout` passes).
    WaitForAgentSpeech { timeout: Duration },
    /// Stay silent until the agent has finished speaking: its playout queue is empty and no
    /// audio has arrived for `quiet` (or `timeout` passes).
    WaitForAgentSilence { quiet: Duration, timeout: Duration },
    /// Stream this audio, one 20 ms frame per tick.
    Say(CallerAudio),
    /// Press a key (`0`-`9`, `*`, `#`).
    Dtmf(char),
    /// Send `stop` and close the socket.
    HangUp,
}

impl Step {
    /// The step's name in reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Step::Wait(_) => "wait",
            Step::WaitForAgentSpeech { .. } => "wait_for_agent_speech",
            Step::WaitForAgentSilence { .. } => "wait_for_agent_silence",
            Step::Say(_) => "say",
            Step::Dtmf(_) => "dtmf",
            Step::HangUp => "hang_up",
        }
    }
}

/// A caller's script. Cloning shares the steps (and their audio).
#[derive(Debug, Clone, Default)]
pub struct CallerScript {
    steps: Arc<[Step]>,
}

/// A script could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    #[error("cannot read script {path}: {source}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("script {path} is not valid: {source}")]
    Parse {
        path: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("step {index}: {message}")]
    Step { index: usize, message: String },
    #[error("step {index}: {source}")]
    Audio {
        index: usize,
        #[source]
        source: CallerAudioError,
    },
}

impl CallerScript {
    /// An empty script: silence until the other side ends the call.
    pub fn new() -> Self {
        Self::default()
    }

    pub fn from_steps(steps: Vec<Step>) -> Self {
        Self {
            steps: steps.into(),
        }
    }

    pub fn steps(&self) -> &[Step] {
        &self.steps
    }

    fn push(self, step: Step) -> Self {
        let mut steps = self.steps.to_vec();
        steps.push(step);
        Self::from_steps(steps)
    }

    pub fn wait(self, duration: Duration) -> Self {
        self.push(Step::Wait(duration))
    }

    pub fn wait_for_agent_speech(self, timeout: Duration) -> Self {
        self.push(Step::WaitForAgentSpeech { timeout })
    }

    pub fn wait_for_agent_silence(self, quiet: Duration, timeout: Duration) -> Self {
        self.push(Step::WaitForAgentSilence { quiet, timeout })
    }

    pub fn say(self, audio: CallerAudio) -> Self {
        self.push(Step::Say(audio))
    }

    /// Presses `digit`; anything but `0`-`9`, `*` and `#` is skipped (Twilio could not send it).
    pub fn dtmf(self, digit: char) -> Self {
        if is_dtmf_digit(digit) {
            self.push(Step::Dtmf(digit))
        } else {
            self
        }
    }

    pub fn hang_up(self) -> Self {
        self.push(Step::HangUp)
    }

    /// An answering machine: `greeting`, then [`machine_beep`], then silence while it records,
    /// until the other side hangs up. Its speech ends with the beep, which is what
    /// answering-machine detection (`DetectMessageEnd`) waits for.
    pub fn answering_machine(greeting: CallerAudio) -> Self {
        Self::new().say(greeting).say(machine_beep())
    }

    /// How many times the caller speaks (its `say` steps).
    pub fn speech_count(&self) -> usize {
        self.steps
            .iter()
            .filter(|s| matches!(s, Step::Say(_)))
            .count()
    }

    /// Reads a JSON script; WAV paths are relative to the script's folder.
    pub fn load_json(path: impl AsRef<Path>) -> Result<Self, ScriptError> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ScriptError::Read {
            path: shown.clone(),
            source,
        })?;
        let spec: ScriptSpec =
            serde_json::from_str(&text).map_err(|source| ScriptError::Parse {
                path: shown,
                source,
            })?;
        Self::from_spec(&spec, path.parent().unwrap_or(Path::new(".")))
    }

    /// Builds a script from its JSON form, loading WAVs relative to `base`.
    pub fn from_spec(spec: &ScriptSpec, base: &Path) -> Result<Self, ScriptError> {
        let mut steps = Vec::with_capacity(spec.steps.len());
        for (index, step) in spec.steps.iter().enumerate() {
            match step {
                StepSpec::Wait { ms } => steps.push(Step::Wait(Duration::from_millis(*ms))),
                StepSpec::WaitForAgentSpeech { timeout_ms } => {
                    steps.push(Step::WaitForAgentSpeech {
                        timeout: Duration::from_millis(*timeout_ms),
                    })
                }
                StepSpec::WaitForAgentSilence {
                    quiet_ms,
                    timeout_ms,
                } => steps.push(Step::WaitForAgentSilence {
                    quiet: Duration::from_millis(*quiet_ms),
                    timeout: Duration::from_millis(*timeout_ms),
                }),
                StepSpec::SayWav { path } => {
                    let audio = CallerAudio::from_wav_file(base.join(path))
                        .map_err(|source| ScriptError::Audio { index, source })?;
                    steps.push(Step::Say(audio));
                }
                StepSpec::SayTone { hz, ms } => steps.push(Step::Say(CallerAudio::tone(
                    *hz,
                    Duration::from_millis(*ms),
                    8000,
                ))),
                StepSpec::Dtmf { digits } => {
                    if digits.is_empty() || !digits.chars().all(is_dtmf_digit) {
                        return Err(ScriptError::Step {
                            index,
                            message: format!("{digits:?} is not a string of 0-9, * and #"),
                        });
                    }
                    steps.extend(digits.chars().map(Step::Dtmf));
                }
                StepSpec::HangUp => steps.push(Step::HangUp),
            }
        }
        Ok(Self::from_steps(steps))
    }
}

/// The beep after a mailbox greeting: 1 kHz for 300 ms, loud.
pub fn machine_beep() -> CallerAudio {
    CallerAudio::tone(1000.0, Duration::from_millis(300), 12_000)
}

/// The greeting of a machine whose own is not given.
pub const DEFAULT_MACHINE_GREETING: &str = "Hi, you have reached Sam. I can't take your call right now. Please leave a message after the tone.";

fn is_dtmf_digit(c: char) -> bool {
    c.is_ascii_digit() || c == '*' || c == '#'
}

/// A script in JSON: `{"steps": [{"wait": {"ms": 500}}, {"say_wav": {"path": "hello.wav"}},
/// {"wait_for_agent_silence": {"quiet_ms": 800, "timeout_ms": 10000}}, "hang_up"]}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptSpec {
    pub steps: Vec<StepSpec>,
}

/// One step of a [`ScriptSpec`].
#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum StepSpec {
    Wait { ms: u64 },
    WaitForAgentSpeech { timeout_ms: u64 },
    WaitForAgentSilence { quiet_ms: u64, timeout_ms: u64 },
    SayWav { path: std::path::PathBuf },
    SayTone { hz: f32, ms: u64 },
    Dtmf { digits: String },
    HangUp,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_scripts_become_steps() {
        let spec: ScriptSpec = serde_json::from_str(
            r##"{"steps": [{"wait": {"ms": 500}}, {"say_tone": {"hz": 440, "ms": 200}},
                {"wait_for_agent_silence": {"quiet_ms": 800, "timeout_ms": 10000}},
                {"dtmf": {"digits": "1#"}}, "hang_up"]}"##,
        )
        .unwrap();
        let script = CallerScript::from_spec(&spec, Path::new(".")).unwrap();
        let kinds: Vec<_> = script.steps().iter().map(Step::kind).collect();
        assert_eq!(
            kinds,
            [
                "wait",
                "say",
                "wait_for_agent_silence",
                "dtmf",
                "dtmf",
                "hang_up"
            ]
        );
    }

    #[test]
    fn bad_steps_are_refused() {
        let spec: ScriptSpec =
            serde_json::from_str(r#"{"steps": [{"dtmf": {"digits": "1a"}}]}"#).unwrap();
        assert!(CallerScript::from_spec(&spec, Path::new(".")).is_err());
        let spec: ScriptSpec =
            serde_json::from_str(r#"{"steps": [{"say_wav": {"path": "missing.wav"}}]}"#).unwrap();
        assert!(matches!(
            CallerScript::from_spec(&spec, Path::new("/nonexistent")),
            Err(ScriptError::Audio { index: 0, .. })
        ));
        assert!(serde_json::from_str::<ScriptSpec>(r#"{"steps": ["jump"]}"#).is_err());
    }

    #[test]
    fn the_builder_appends_in_order() {
        let script = CallerScript::new()
            .wait(Duration::from_millis(10))
            .dtmf('x')
            .dtmf('5')
            .hang_up();
        let kinds: Vec<_> = script.steps().iter().map(Step::kind).collect();
        assert_eq!(kinds, ["wait", "dtmf", "hang_up"]);
        assert_eq!(script.speech_count(), 0);
    }

    #[test]
    fn an_answering_machine_greets_then_beeps() {
        let greeting = CallerAudio::synthetic_speech("leave a message");
        let script = CallerScript::answering_machine(greeting.clone());
        assert_eq!(script.speech_count(), 2);
        match script.steps() {
            [Step::Say(first), Step::Say(beep)] => {
                assert_eq!(*first, greeting);
                assert_eq!(beep.duration(), Duration::from_millis(300));
            }
            other => panic!("{other:?}"),
        }
    }
}
