//! When caller speech over the agent is a real interruption. Local VAD notices sound at once and
//! the agent's audio stops right there, but a cough, a laugh or an "uh-huh" must not cut the
//! agent off: an interruption is confirmed by the STT's words (at least `min_words` of them that
//! are not just acknowledgements), or by speech that simply goes on too long to be a
//! backchannel. Unconfirmed within `confirm_within_ms` (and the caller quiet again), the agent
//! resumes from the first word the caller did not hear.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Per-assistant interruption settings (`assistant_interruption_config`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct InterruptionSettings {
    /// Whether the caller can interrupt the agent at all (default true).
    pub enabled: bool,
    /// Words (other than acknowledgements) the STT must hear to confirm an interruption
    /// (1-10, default 1).
    pub min_words: u32,
    /// Continuous caller speech (ms) that interrupts even before the STT confirms it
    /// (300-5000, default 1500): a backchannel is never this long.
    pub force_after_ms: u32,
    /// After the agent stopped at the caller's first sound, how long (ms) the STT has to
    /// confirm an interruption before the agent resumes (100-5000, default 700).
    pub confirm_within_ms: u32,
}

impl Default for InterruptionSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            min_words: 1,
            force_after_ms: 1500,
            confirm_within_ms: 700,
        }
    }
}

/// Acknowledgements a listener says without meaning to take the turn.
const BACKCHANNEL: &[&str] = &[
    "uh-huh", "uh", "huh", "mhm", "mm-hmm", "mmhmm", "mm", "hmm", "hm", "yeah", "yep", "yes", "ok",
    "okay", "right", "sure", "aha", "ah", "oh", "alright", "got", "it", "i", "see", "cool", "haan",
    "han", "accha", "achha", "theek", "hai", "ji", "um", "uhm", "er", "erm",
];

fn words(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| c.is_whitespace())
        .map(|w| {
            w.trim_matches(|c: char| !c.is_alphanumeric() && c != '-')
                .to_lowercase()
        })
        .filter(|w| !w.is_empty())
}

/// Whether `text` is only acknowledgements ("uh-huh", "okay, got it").
pub fn is_backchannel(text: &str) -> bool {
    let mut count = 0;
    for word in words(text) {
        count += 1;
        if count > 3 || !BACKCHANNEL.contains(&word.as_str()) {
            return false;
        }
    }
    true
}

impl InterruptionSettings {
    /// Whether a transcript heard while the agent speaks confirms an interruption.
    pub fn confirmed_by(&self, transcript: &str) -> bool {
        if !self.enabled || is_backchannel(transcript) {
            return false;
        }
        words(transcript).count() >= self.min_words.max(1) as usize
    }

    pub fn validate(&self, field: &str, v: &mut crate::validation::Violations) {
        if !(1..=10).contains(&self.min_words) {
            v.add(format!("{field}.min_words"), "must be between 1 and 10");
        }
        if !(100..=5000).contains(&self.confirm_within_ms) {
            v.add(
                format!("{field}.confirm_within_ms"),
                "must be between 100 and 5000",
            );
        }
        if !(300..=5000).contains(&self.force_after_ms) {
            v.add(
                format!("{field}.force_after_ms"),
                "must be between 300 and 5000",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acknowledgements_are_backchannels() {
        for text in [
            "uh-huh",
            "Mm-hmm.",
            "okay",
            "Yeah, right.",
            "ok got it",
            "",
            "haan ji",
        ] {
            assert!(is_backchannel(text), "{text}");
        }
        for text in [
            "wait",
            "no, that's wrong",
            "okay but what about Friday",
            "stop",
        ] {
            assert!(!is_backchannel(text), "{text}");
        }
    }

    #[test]
    fn words_confirm_interruptions() {
        let p = InterruptionSettings::default();
        assert!(p.confirmed_by("Actually, wait"));
        assert!(!p.confirmed_by("uh-huh"));
        let strict = InterruptionSettings {
            min_words: 3,
            ..p.clone()
        };
        assert!(!strict.confirmed_by("wait"));
        assert!(strict.confirmed_by("wait a second"));
        let off = InterruptionSettings {
            enabled: false,
            ..p
        };
        assert!(!off.confirmed_by("stop talking please"));
    }
}
