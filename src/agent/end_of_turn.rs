//! When the caller's turn is over. The provider's endpointing waits for its own silence
//! (`endpointing=300` on Deepgram) and then for its final, while our VAD hears the silence on
//! every frame: at `silence_ms` of it the call asks the STT for its final at once (Deepgram
//! `Finalize`, Sarvam's flush) and answers that. A caller who only paused and goes on within
//! `continuation_grace_ms` of the turn's end, before any of the reply is heard, keeps their
//! turn: the reply is taken back and the words are merged. The provider's endpointing stays as
//! the fallback (a lost finalize, a VAD that missed the end).

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Per-assistant end-of-turn settings (`assistant_turn_config`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct TurnSettings {
    /// Silence (ms) after the caller's speech that ends their turn (20-5000, default 200). At
    /// or above the VAD's `min_silence_ms` the turn ends when the VAD's speech does.
    pub end_of_turn_silence_ms: u32,
    /// After a turn ended, speech within this long (ms) that comes before the reply is heard
    /// continues the same turn (0-5000, default 1000; 0: never).
    pub continuation_grace_ms: u32,
}

impl Default for TurnSettings {
    fn default() -> Self {
        Self {
            end_of_turn_silence_ms: 200,
            continuation_grace_ms: 1000,
        }
    }
}

impl TurnSettings {
    pub fn validate(&self, field: &str, v: &mut crate::validation::Violations) {
        if !(20..=5000).contains(&self.end_of_turn_silence_ms) {
            v.add(
                format!("{field}.end_of_turn_silence_ms"),
                "must be between 20 and 5000",
            );
        }
        if self.continuation_grace_ms > 5000 {
            v.add(
                format!("{field}.continuation_grace_ms"),
                "must be between 0 and 5000",
            );
        }
    }
}
