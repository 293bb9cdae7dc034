//! Voice activity detection: is the caller speaking? It decides barge-in, so it must not fire
//! on noise or a cough, and it runs on every 20 ms frame of every call, so it must be cheap.
//!
//! [`CascadeVad`] does both with a cascade: an [energy detector](energy) on every frame (about
//! 0.1 µs) finds candidate onsets, and only when a candidate has lasted `min_speech_ms` does
//! [Silero VAD v6](silero) (run in Rust, ~25 µs per 32 ms window) look at the candidate's audio
//! to confirm it is speech. Speech ends when the energy detector has been quiet for
//! `min_silence_ms`. A call pays for the neural model about once per utterance, not per frame.
//!
//! Using it (the call session owns one per call; inbound frames are 20 ms at 8 or 16 kHz):
//!
//! ```
//! use voxbridge::audio::vad::{CascadeVad, Vad, VadConfig, VadEvent};
//! let mut vad = CascadeVad::new(VadConfig::default(), 8000).unwrap();
//! let frame = [0i16; 160];
//! match vad.process(&frame) {
//!     Some(VadEvent::SpeechStart { at_ms }) => { /* barge in: the caller started at `at_ms` */ }
//!     Some(VadEvent::SpeechEnd { at_ms }) => { /* the caller stopped at `at_ms` */ }
//!     Some(VadEvent::Pause { .. } | VadEvent::Resume { .. }) | None => {}
//!     Some(VadEvent::Onset { .. } | VadEvent::OnsetWithdrawn) => {}
//! }
//! ```
//!
//! Times are milliseconds of stream time since the detector's first frame (or last
//! [`Vad::reset`]). A `SpeechStart` is reported `min_speech_ms` (plus at most a frame) after the
//! onset it names, a `SpeechEnd` `min_silence_ms` after the end it names.

pub mod cascade;
pub mod energy;
pub mod silero;

pub use cascade::{CascadeVad, VadStats};

use serde::{Deserialize, Serialize};

/// A change of the speech state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VadEvent {
    /// `onset_ms` of sound since `at_ms` that the model takes for speech so far: probably the
    /// start of speech, said early so the agent can stop talking at once. Either a
    /// `SpeechStart` (same `at_ms`) or an `OnsetWithdrawn` follows.
    Onset { at_ms: u64 },
    /// The sound announced by `Onset` did not become speech (it stopped, or the model rejected
    /// it at `min_speech_ms`).
    OnsetWithdrawn,
    /// Speech started at `at_ms` (stream time of its first frame).
    SpeechStart { at_ms: u64 },
    /// Speech ended at `at_ms` (stream time just after its last active frame).
    SpeechEnd { at_ms: u64 },
    /// Speech has been silent since `at_ms` for the pause length, not yet `min_silence_ms`
    /// (only with [`CascadeVad::with_pause_after`]): the caller may be done.
    Pause { at_ms: u64 },
    /// Speech went on at `at_ms` after a `Pause`.
    Resume { at_ms: u64 },
}

/// A voice activity detector for one stream.
pub trait Vad: Send {
    /// The sample rate the detector expects.
    fn sample_rate(&self) -> u32;
    /// Feeds the next frame (20 ms is expected; other lengths work); returns a state change.
    fn process(&mut self, frame: &[i16]) -> Option<VadEvent>;
    /// Whether the caller is speaking (between a `SpeechStart` and its `SpeechEnd`).
    fn is_speaking(&self) -> bool;
    /// Forgets the stream: state, noise floor and stream time.
    fn reset(&mut self);
}

/// Per-assistant VAD settings, carried by the assistant API (all fields optional in JSON;
/// check with [`VadConfig::validate`] when accepting one).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct VadConfig {
    /// Speech must last this long before it counts (filters clicks, short noises, and most
    /// "mm"s). Default 200 ms.
    pub min_speech_ms: u32,
    /// Sound this long that the model already takes for speech is announced as an onset: the
    /// agent's audio stops there (and resumes if it does not become speech). Default 80 ms: the
    /// barge-in reaction time is about this plus one frame. At least `min_speech_ms` turns it
    /// off (the agent then stops at `min_speech_ms`).
    pub onset_ms: u32,
    /// Silence must last this long before speech is over (bridges pauses between words).
    /// Default 500 ms.
    pub min_silence_ms: u32,
    /// Silero probability above which a 32 ms window is speech. Default 0.5 (Silero's own).
    pub threshold: f32,
    /// How far above the noise floor a frame must be to be a candidate, dB. Default 7 dB;
    /// lower catches quieter speakers in noise and asks the neural model more often.
    pub energy_margin_db: f32,
    /// Confirm candidates with the neural model. Default true; false leaves an energy-only
    /// detector (cheaper, but a cough or a door is speech to it).
    pub neural: bool,
}

impl Default for VadConfig {
    fn default() -> Self {
        Self {
            min_speech_ms: 200,
            onset_ms: 80,
            min_silence_ms: 500,
            threshold: 0.5,
            energy_margin_db: 7.0,
            neural: true,
        }
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum VadError {
    #[error("VAD supports 8000 and 16000 Hz, not {0}")]
    UnsupportedRate(u32),
    #[error("invalid VAD setting: {0}")]
    InvalidConfig(&'static str),
}

impl VadConfig {
    pub fn validate(&self) -> Result<(), VadError> {
        if !(20..=2000).contains(&self.min_speech_ms) {
            return Err(VadError::InvalidConfig("min_speech_ms must be 20..=2000"));
        }
        if !(20..=2000).contains(&self.onset_ms) {
            return Err(VadError::InvalidConfig("onset_ms must be 20..=2000"));
        }
        if !(20..=10_000).contains(&self.min_silence_ms) {
            return Err(VadError::InvalidConfig("min_silence_ms must be 20..=10000"));
        }
        if !(0.05..=0.95).contains(&self.threshold) {
            return Err(VadError::InvalidConfig("threshold must be 0.05..=0.95"));
        }
        if !(3.0..=30.0).contains(&self.energy_margin_db) {
            return Err(VadError::InvalidConfig("energy_margin_db must be 3..=30"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_defaults_serde_and_validation() {
        let config: VadConfig = serde_json::from_str(r#"{"min_speech_ms": 300}"#).unwrap();
        assert_eq!(
            config,
            VadConfig {
                min_speech_ms: 300,
                ..VadConfig::default()
            }
        );
        assert!(serde_json::from_str::<VadConfig>(r#"{"min_speech": 300}"#).is_err());
        assert!(VadConfig::default().validate().is_ok());
        let bad = VadConfig {
            threshold: 1.5,
            ..VadConfig::default()
        };
        assert!(bad.validate().is_err());
    }
}
