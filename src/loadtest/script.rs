//! What every simulated caller of a load test does, and where the speech in its audio lies.
//!
//! The caller waits for the greeting and talks over it (a barge-in), then takes turns: waits
//! until the agent has finished, says an utterance, and so on; with two turns or more, it says
//! "uh-huh" over the agent's reply to its second turn (a false interruption: the agent should
//! stop at the sound and go on, not lose its reply); after its last turn it stays on the line,
//! silent, until the call's duration is up. Utterances are committed WAVs embedded in
//! the binary, so `voxbridge loadtest` runs from any directory.

use std::time::Duration;

use crate::audio::Encoding;
use crate::sim::speech_detector::{DetectorConfig, SpeechDetector};
use crate::sim::twilio_caller::{CallerAudio, CallerScript};

/// How long after the greeting starts the caller talks over it.
pub const BARGE_IN_AFTER: Duration = Duration::from_millis(600);
/// Agent silence that ends its turn, for the caller.
const AGENT_QUIET: Duration = Duration::from_millis(400);
/// Longest wait for the agent before the caller goes on anyway.
const AGENT_TIMEOUT: Duration = Duration::from_secs(20);

/// How long into the agent's reply the caller says its backchannel.
pub const BACKCHANNEL_AFTER: Duration = Duration::from_millis(800);

const BACKCHANNEL: &[u8] = include_bytes!("../../audio/caller/backchannel_uh_huh.wav");

const UTTERANCES: [&[u8]; 2] = [
    include_bytes!("../../audio/caller/book_table.wav"),
    include_bytes!("../../audio/caller/tomorrow_at_seven.wav"),
];

/// One utterance and where its speech is, as the fake STT's detector hears it.
#[derive(Debug, Clone)]
pub struct Utterance {
    pub audio: CallerAudio,
    /// Audio time at which speech is declared to have begun.
    pub onset_ms: u64,
    /// Audio time at the end of the last voiced window.
    pub voiced_end_ms: u64,
}

impl Utterance {
    fn new(audio: CallerAudio) -> Self {
        let mut detector =
            SpeechDetector::new(Some(Encoding::Mulaw), 8000, 1, DetectorConfig::default());
        let mut onset = None;
        detector.push(audio.as_bytes(), |_, window| {
            if onset.is_none() {
                onset = window.onset_ms;
            }
        });
        let voiced_end_ms = detector
            .span()
            .map_or(audio.duration().as_millis() as u64, |s| s.last_voiced_ms);
        Self {
            audio,
            onset_ms: onset.unwrap_or(0),
            voiced_end_ms,
        }
    }
}

/// The caller's script with the facts the measurements need.
#[derive(Debug, Clone)]
pub struct LoadScript {
    turns: usize,
    /// The step that talks over the greeting.
    pub barge_in_step: usize,
    /// For each script step, the utterance it says (if it is a `say` of a turn).
    pub says: Vec<Option<usize>>,
    pub utterances: Vec<Utterance>,
    /// The step that says "uh-huh" over the agent (not a turn: nothing answers it).
    pub backchannel_step: Option<usize>,
    pub backchannel: Utterance,
}

impl LoadScript {
    /// A script with `turns` caller utterances, the first of them over the greeting.
    pub fn new(turns: usize) -> Self {
        let utterances: Vec<Utterance> = UTTERANCES
            .iter()
            .map(|wav| {
                Utterance::new(CallerAudio::from_wav_bytes(wav).expect("embedded WAVs are valid"))
            })
            .collect();
        let turns = turns.max(1);
        let mut says = vec![None, None];
        let barge_in_step = says.len();
        let mut backchannel_step = None;
        for turn in 0..turns {
            if turn > 0 {
                says.extend([None, None]);
            }
            says.push(Some(turn % utterances.len()));
            if turn == 1 {
                // Wait for the reply, a moment of it, then the backchannel.
                says.extend([None, None]);
                backchannel_step = Some(says.len());
                says.push(None);
            }
        }
        let backchannel =
            Utterance::new(CallerAudio::from_wav_bytes(BACKCHANNEL).expect("embedded WAV"));
        Self {
            turns,
            barge_in_step,
            says,
            utterances,
            backchannel_step,
            backchannel,
        }
    }

    /// The steps for call number `call`. Callers wait a little longer or shorter after the
    /// agent before they speak (400–1400 ms, spread over calls), as people do: a hundred calls
    /// placed in two seconds would otherwise take every turn in lockstep, and the generator
    /// would measure its own bursts.
    pub fn caller_script(&self, call: usize) -> CallerScript {
        let spread = (call as u64).wrapping_mul(7919) % 1000;
        let quiet = AGENT_QUIET + Duration::from_millis(spread);
        let mut script = CallerScript::new()
            .wait_for_agent_speech(AGENT_TIMEOUT)
            .wait(BARGE_IN_AFTER);
        for (turn, say) in self.says.iter().filter_map(|s| *s).enumerate() {
            if turn > 0 {
                script = script
                    .wait_for_agent_speech(AGENT_TIMEOUT)
                    .wait_for_agent_silence(quiet, AGENT_TIMEOUT);
            }
            script = script.say(self.utterances[say].audio.clone());
            if turn == 1 {
                script = script
                    .wait_for_agent_speech(AGENT_TIMEOUT)
                    .wait(BACKCHANNEL_AFTER)
                    .say(self.backchannel.audio.clone());
            }
        }
        debug_assert_eq!(self.says.iter().flatten().count(), self.turns);
        script
            .wait_for_agent_speech(AGENT_TIMEOUT)
            .wait_for_agent_silence(AGENT_QUIET, AGENT_TIMEOUT)
    }

    /// The utterance said at `step`.
    pub fn utterance_at(&self, step: usize) -> Option<&Utterance> {
        self.says
            .get(step)
            .copied()
            .flatten()
            .map(|i| &self.utterances[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sim::twilio_caller::Step;

    #[test]
    fn utterances_have_speech_with_silence_around_it() {
        let script = LoadScript::new(3);
        for u in &script.utterances {
            let length = u.audio.duration().as_millis() as u64;
            assert!(u.onset_ms < u.voiced_end_ms, "{u:?}");
            assert!(u.voiced_end_ms <= length);
            assert!(u.voiced_end_ms - u.onset_ms > 500, "a real sentence");
        }
    }

    #[test]
    fn says_line_up_with_steps() {
        let script = LoadScript::new(3);
        let caller = script.caller_script(7);
        let steps = caller.steps();
        assert_eq!(
            script.says.len(),
            steps.len() - 2,
            "the closing waits say nothing"
        );
        for (i, step) in steps.iter().enumerate() {
            assert_eq!(
                matches!(step, Step::Say(_)),
                script.utterance_at(i).is_some() || script.backchannel_step == Some(i),
                "step {i}"
            );
        }
        assert!(matches!(steps[script.barge_in_step], Step::Say(_)));
        assert_eq!(
            steps.iter().filter(|s| matches!(s, Step::Say(_))).count(),
            4,
            "three turns and a backchannel"
        );
        assert!(LoadScript::new(1).backchannel_step.is_none());
    }
}
