//! What every simulated caller of a load test does, and where the speech in its audio lies.
//!
//! The caller waits for the greeting and talks over it (a barge-in), coughs over the reply to
//! that, then takes turns: waits until the agent has finished, says an utterance, and so on;
//! with two turns or more, it says "uh-huh" over the agent's reply to its second turn. The
//! cough and the "uh-huh" are false interruptions: the agent may stop at the sound but must go
//! on, not lose its reply. After its last turn the caller stays on the line, silent, until the
//! call's duration is up. Utterances are committed WAVs embedded in the binary, so `voxbridge
//! loadtest` runs from any directory; [`LoadScript::stt_script`] is what the fake STT hears in
//! them, in order (a cough is no words, as a real STT hears it).

use std::time::Duration;

use crate::audio::Encoding;
use crate::sim::caller::{CallerAudio, CallerScript};
use crate::sim::speech_detector::{DetectorConfig, SpeechDetector};
use crate::sim::stt_script::SttScript;

/// How long after the greeting starts the caller talks over it.
pub const BARGE_IN_AFTER: Duration = Duration::from_millis(600);
/// Agent silence that ends its turn, for the caller.
const AGENT_QUIET: Duration = Duration::from_millis(400);
/// Longest wait for the agent before the caller goes on anyway.
const AGENT_TIMEOUT: Duration = Duration::from_secs(20);

/// How long into the agent's reply the caller says its backchannel.
pub const BACKCHANNEL_AFTER: Duration = Duration::from_millis(800);

const BACKCHANNEL: &[u8] = include_bytes!("../../audio/caller/backchannel_uh_huh.wav");
const BACKCHANNEL_TEXT: &str = "Uh-huh.";
const COUGH: &[u8] = include_bytes!("../../audio/caller/cough.wav");

const UTTERANCES: [(&[u8], &str); 2] = [
    (
        include_bytes!("../../audio/caller/book_table.wav"),
        "Hi, I'd like to book a table for two.",
    ),
    (
        include_bytes!("../../audio/caller/tomorrow_at_seven.wav"),
        "Yes, tomorrow at seven please.",
    ),
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
    /// What each utterance says.
    texts: Vec<&'static str>,
    /// The step that says "uh-huh" over the agent (not a turn: nothing answers it).
    pub backchannel_step: Option<usize>,
    pub backchannel: Utterance,
    /// The step that coughs over the agent's reply to the first turn.
    pub cough_step: usize,
    pub cough: Utterance,
}

impl LoadScript {
    /// A script with `turns` caller utterances, the first of them over the greeting.
    pub fn new(turns: usize) -> Self {
        let utterances: Vec<Utterance> = UTTERANCES
            .iter()
            .map(|(wav, _)| {
                Utterance::new(CallerAudio::from_wav_bytes(wav).expect("embedded WAVs are valid"))
            })
            .collect();
        let turns = turns.max(1);
        let mut says = vec![None, None];
        let barge_in_step = says.len();
        let mut backchannel_step = None;
        let mut cough_step = 0;
        for turn in 0..turns {
            if turn > 0 {
                says.extend([None, None]);
            }
            says.push(Some(turn % utterances.len()));
            if turn == 0 {
                // Wait for the reply, a moment of it, then the cough.
                says.extend([None, None]);
                cough_step = says.len();
                says.push(None);
            }
            if turn == 1 {
                // Wait for the reply, a moment of it, then the backchannel.
                says.extend([None, None]);
                backchannel_step = Some(says.len());
                says.push(None);
            }
        }
        let backchannel =
            Utterance::new(CallerAudio::from_wav_bytes(BACKCHANNEL).expect("embedded WAV"));
        let cough = Utterance::new(CallerAudio::from_wav_bytes(COUGH).expect("embedded WAV"));
        Self {
            turns,
            barge_in_step,
            says,
            utterances,
            texts: UTTERANCES.iter().map(|(_, text)| *text).collect(),
            backchannel_step,
            backchannel,
            cough_step,
            cough,
        }
    }

    /// What the fake STT hears, in the order the caller makes sounds: each utterance's words,
    /// "Uh-huh." for the backchannel, and nothing for the cough.
    pub fn stt_script(&self) -> SttScript {
        let heard = (0..self.says.len()).filter_map(|step| {
            if step == self.cough_step {
                Some(String::new())
            } else if self.backchannel_step == Some(step) {
                Some(BACKCHANNEL_TEXT.to_owned())
            } else {
                self.says[step].map(|i| self.texts[i].to_owned())
            }
        });
        SttScript::new(heard.collect())
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
            if turn == 0 {
                script = script
                    .wait_for_agent_speech(AGENT_TIMEOUT)
                    .wait(BACKCHANNEL_AFTER)
                    .say(self.cough.audio.clone());
            }
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
    use crate::sim::caller::Step;

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
                script.utterance_at(i).is_some()
                    || script.backchannel_step == Some(i)
                    || script.cough_step == i,
                "step {i}"
            );
        }
        assert!(matches!(steps[script.barge_in_step], Step::Say(_)));
        assert_eq!(
            steps.iter().filter(|s| matches!(s, Step::Say(_))).count(),
            5,
            "three turns, a cough and a backchannel"
        );
        assert!(LoadScript::new(1).backchannel_step.is_none());
    }

    #[test]
    fn the_fake_stt_hears_each_sound_in_order_and_the_cough_as_one() {
        let script = LoadScript::new(3);
        let heard = script.stt_script();
        let texts: Vec<&str> = (0..heard.len()).map(|i| heard.utterance(i)).collect();
        assert_eq!(
            texts,
            [
                "Hi, I'd like to book a table for two.",
                "",
                "Yes, tomorrow at seven please.",
                "Uh-huh.",
                "Hi, I'd like to book a table for two.",
            ]
        );
        // The fake's detector takes the cough for one sound, so the order holds.
        assert!(script.cough.onset_ms > 0 && script.cough.onset_ms < script.cough.voiced_end_ms);
    }
}
