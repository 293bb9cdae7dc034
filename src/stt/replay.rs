//! The caller's audio that the STT provider has not settled yet, kept so that a socket lost in
//! the middle of a sentence costs no words: the new socket hears it again first.
//!
//! What is kept: the audio written since the provider's last final result (a final settles
//! everything before it, so the buffer is emptied there). While the caller is quiet only a short
//! pre-roll is kept — enough for an onset the local VAD announced late — so a call costs a few
//! KB here while the agent talks, and more only while the caller speaks and the provider has not
//! answered yet. The bytes are copied into one ring (160 bytes a frame at 8 kHz μ-law), so no
//! frame's shared buffer is held alive and nothing is allocated per frame once the ring has
//! grown.

use std::collections::VecDeque;

use bytes::Bytes;

/// Audio since the provider's last final.
#[derive(Debug)]
pub(crate) struct Replay {
    ring: VecDeque<u8>,
    /// Kept while the caller speaks (older audio is dropped: a sentence longer than this that
    /// loses its socket loses its head).
    max_bytes: usize,
    /// Kept while the caller is quiet.
    preroll_bytes: usize,
    speaking: bool,
    /// The caller spoke since the last final: keep everything until the provider settles it
    /// (its final for the end of a sentence comes after the local VAD heard the sentence end).
    unsettled_speech: bool,
}

/// A ring that grew past this (a long sentence) is given back when it empties.
const SHRINK_ABOVE: usize = 64 * 1024;

impl Replay {
    pub(crate) fn new(max_bytes: usize, preroll_bytes: usize) -> Self {
        Self {
            ring: VecDeque::new(),
            max_bytes,
            preroll_bytes: preroll_bytes.min(max_bytes),
            speaking: false,
            unsettled_speech: false,
        }
    }

    /// Audio written to the provider.
    pub(crate) fn push(&mut self, audio: &[u8]) {
        if self.max_bytes == 0 {
            return;
        }
        self.ring.extend(audio);
        let keep = if self.speaking || self.unsettled_speech {
            self.max_bytes
        } else {
            self.preroll_bytes
        };
        if self.ring.len() > keep {
            let excess = self.ring.len() - keep;
            self.ring.drain(..excess);
        }
    }

    /// The local VAD's view: while the caller speaks, everything since the last final is kept.
    pub(crate) fn set_speaking(&mut self, speaking: bool) {
        self.speaking = speaking;
        self.unsettled_speech |= speaking;
    }

    /// The provider settled everything sent so far.
    pub(crate) fn settled(&mut self) {
        self.unsettled_speech = self.speaking;
        self.ring.clear();
        if self.ring.capacity() > SHRINK_ABOVE {
            self.ring = VecDeque::new();
        }
    }

    /// Whether audio is kept at all.
    pub(crate) fn keeps_audio(&self) -> bool {
        self.max_bytes > 0
    }

    pub(crate) fn len(&self) -> usize {
        self.ring.len()
    }

    /// Takes the kept audio in frames of `frame_bytes` (as the call sends them), leaving the
    /// buffer empty: once sent on the new socket it is unsettled audio of that socket, and kept
    /// again as it is written.
    pub(crate) fn take_frames(&mut self, frame_bytes: usize) -> Vec<Bytes> {
        let frame_bytes = frame_bytes.max(1);
        let (front, back) = self.ring.as_slices();
        let mut all = Vec::with_capacity(self.ring.len());
        all.extend_from_slice(front);
        all.extend_from_slice(back);
        self.settled();
        let all = Bytes::from(all);
        (0..all.len())
            .step_by(frame_bytes)
            .map(|start| all.slice(start..(start + frame_bytes).min(all.len())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_a_preroll_while_quiet_and_the_sentence_while_speaking() {
        let mut replay = Replay::new(1000, 100);
        for _ in 0..10 {
            replay.push(&[1; 40]);
        }
        assert_eq!(replay.len(), 100, "quiet: only the pre-roll");
        replay.set_speaking(true);
        for _ in 0..10 {
            replay.push(&[2; 40]);
        }
        assert_eq!(
            replay.len(),
            500,
            "the pre-roll and the whole sentence so far"
        );
        for _ in 0..20 {
            replay.push(&[3; 40]);
        }
        assert_eq!(replay.len(), 1000, "bounded");
        replay.settled();
        assert_eq!(replay.len(), 0);
        replay.set_speaking(false);
        for _ in 0..5 {
            replay.push(&[4; 40]);
        }
        assert_eq!(
            replay.len(),
            200,
            "the sentence's end is kept until the provider settles it"
        );
        replay.settled();
        for _ in 0..5 {
            replay.push(&[5; 40]);
        }
        assert_eq!(replay.len(), 100, "settled and quiet: only the pre-roll");
    }

    #[test]
    fn frames_come_back_in_order_and_empty_the_buffer() {
        let mut replay = Replay::new(1000, 1000);
        replay.set_speaking(true);
        for i in 0..5u8 {
            replay.push(&[i; 160]);
        }
        replay.push(&[9; 60]);
        let frames = replay.take_frames(160);
        assert_eq!(frames.len(), 6);
        assert!(
            frames[..5]
                .iter()
                .enumerate()
                .all(|(i, f)| f.len() == 160 && f[0] == i as u8)
        );
        assert_eq!(frames[5].len(), 60);
        assert_eq!(replay.len(), 0);
    }

    #[test]
    fn a_zero_bound_keeps_nothing() {
        let mut replay = Replay::new(0, 0);
        replay.set_speaking(true);
        replay.push(&[1; 160]);
        assert_eq!(replay.len(), 0);
        assert!(replay.take_frames(160).is_empty());
    }
}
