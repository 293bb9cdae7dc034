//! When the writer sent the first frame of each generation, for the agent's per-reply timings.
//! The writer stamps a generation's first frame (once per utterance, never per frame) into a
//! small ring of atomics; the agent reads the stamp of its reply's first generation when the
//! reply is over. No lock and no channel: the writer never waits on the agent, and a stamp
//! overwritten by a much later generation is simply not found.

use std::sync::atomic::{AtomicU64, Ordering};

use tokio::time::Instant;

use crate::generation::Generation;

/// Generations remembered: a reply has a few utterances, and the agent reads its stamp when the
/// reply ends, long before this many more begin.
const SLOTS: usize = 16;
/// A slot no generation wrote yet (generation numbers start at 1).
const EMPTY: u64 = 0;

/// The first-frame stamps of a call's recent generations.
pub struct FirstFrames {
    base: Instant,
    /// Per slot: the generation stamped, then its time in microseconds after `base`.
    slots: [(AtomicU64, AtomicU64); SLOTS],
}

impl FirstFrames {
    /// Stamps measured from `base` (the call's start).
    pub fn new(base: Instant) -> Self {
        Self {
            base,
            slots: std::array::from_fn(|_| (AtomicU64::new(EMPTY), AtomicU64::new(0))),
        }
    }

    /// The writer sent `generation`'s first frame at `at`.
    pub fn sent(&self, generation: Generation, at: Instant) {
        let (slot_generation, micros) = &self.slots[Self::slot(generation)];
        let since =
            u64::try_from(at.saturating_duration_since(self.base).as_micros()).unwrap_or(u64::MAX);
        // Cleared first, so a reader never pairs the old generation with the new time.
        slot_generation.store(EMPTY, Ordering::Release);
        micros.store(since, Ordering::Release);
        slot_generation.store(generation.0, Ordering::Release);
    }

    /// When `generation`'s first frame was sent, if it was and is still remembered.
    pub fn of(&self, generation: Generation) -> Option<Instant> {
        let (slot_generation, micros) = &self.slots[Self::slot(generation)];
        if slot_generation.load(Ordering::Acquire) != generation.0 || generation.0 == EMPTY {
            return None;
        }
        let since = micros.load(Ordering::Acquire);
        (slot_generation.load(Ordering::Acquire) == generation.0)
            .then(|| self.base + std::time::Duration::from_micros(since))
    }

    fn slot(generation: Generation) -> usize {
        (generation.0 % SLOTS as u64) as usize
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_stamp_is_found_by_its_generation_until_overwritten() {
        let base = Instant::now();
        let frames = FirstFrames::new(base);
        assert_eq!(frames.of(Generation(3)), None);
        frames.sent(Generation(3), base + Duration::from_millis(250));
        assert_eq!(
            frames.of(Generation(3)),
            Some(base + Duration::from_millis(250))
        );
        assert_eq!(frames.of(Generation(4)), None);
        frames.sent(Generation(3 + SLOTS as u64), base + Duration::from_secs(9));
        assert_eq!(
            frames.of(Generation(3)),
            None,
            "overwritten by a later generation"
        );
    }
}
