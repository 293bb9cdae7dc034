//! Two mono tracks (caller, agent) → one interleaved stereo stream, aligned on the call's clock.
//!
//! Each side's audio arrives in frames stamped with their position on the call's timeline (in
//! samples since the call started). The mixer keeps only what may still be joined by the other
//! side — `horizon` samples behind the furthest position heard — and hands everything older out
//! as interleaved samples, the silent side filled with zeros. So memory is bounded by the
//! horizon, whatever the call's length or its silences, and nothing here does I/O.

use std::collections::VecDeque;

/// Which channel a frame belongs to: the caller is left, the agent right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Caller = 0,
    Agent = 1,
}

/// Largest piece handed out at once (interleaved samples), so a long silence is written in
/// bounded pieces, never built in memory.
pub const CHUNK: usize = 8192;

pub struct Mixer {
    /// Samples (per channel) already handed out.
    written: u64,
    /// Each side's samples from `written` on.
    tracks: [VecDeque<i16>; 2],
    horizon: u64,
}

impl Mixer {
    pub fn new(horizon_samples: u64) -> Self {
        Self {
            written: 0,
            tracks: [VecDeque::new(), VecDeque::new()],
            horizon: horizon_samples,
        }
    }

    /// How far behind the furthest audio the mixer waits for the other side.
    pub fn horizon(&self) -> u64 {
        self.horizon
    }

    /// Samples (per channel) handed out so far: the recording's length.
    pub fn written(&self) -> u64 {
        self.written
    }

    /// Places `samples` of `side` at `at` (samples since the call started), or right after that
    /// side's previous audio if it would overlap it. Audio older than what was already handed
    /// out is placed at the first free position instead of being lost. Before calling, hand out
    /// what is due with [`Mixer::drain_before`]`(at - horizon)`, so the gap filled here stays
    /// within the horizon.
    pub fn push(&mut self, side: Side, at: u64, samples: impl IntoIterator<Item = i16>) {
        let track = &mut self.tracks[side as usize];
        let end = self.written + track.len() as u64;
        if at > end {
            let gap = (at - end).min(self.horizon);
            track.extend(std::iter::repeat_n(0, gap as usize));
        }
        track.extend(samples);
    }

    /// The position before which audio is due: `horizon` behind the furthest audio placed.
    pub fn due(&self) -> u64 {
        self.end().saturating_sub(self.horizon)
    }

    /// Hands out, interleaved (left, right), the next piece of audio before `until`: at most
    /// [`CHUNK`] samples into `out` (cleared first). Answers false when nothing is left before
    /// `until`; call it in a loop.
    pub fn drain_before(&mut self, until: u64, out: &mut Vec<i16>) -> bool {
        out.clear();
        if until <= self.written {
            return false;
        }
        let frames = ((until - self.written) as usize).min(CHUNK / 2);
        out.reserve(frames * 2);
        let [left, right] = &mut self.tracks;
        for _ in 0..frames {
            out.push(left.pop_front().unwrap_or(0));
            out.push(right.pop_front().unwrap_or(0));
        }
        self.written += frames as u64;
        true
    }

    /// Where everything placed so far ends: drain up to here at the end of the call.
    pub fn end(&self) -> u64 {
        self.tracks
            .iter()
            .map(|t| self.written + t.len() as u64)
            .max()
            .unwrap_or(self.written)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain_all(m: &mut Mixer, until: u64) -> Vec<i16> {
        let mut all = Vec::new();
        let mut out = Vec::new();
        while m.drain_before(until, &mut out) {
            assert!(out.len() <= CHUNK);
            all.extend_from_slice(&out);
        }
        all
    }

    #[test]
    fn sides_are_interleaved_at_their_positions() {
        let mut m = Mixer::new(100);
        m.push(Side::Caller, 0, [1, 2, 3, 4]);
        m.push(Side::Agent, 2, [10, 20]);
        let end = m.end();
        assert_eq!(end, 4);
        assert_eq!(drain_all(&mut m, end), [1, 0, 2, 0, 3, 10, 4, 20]);
        assert_eq!(m.written(), 4);
    }

    #[test]
    fn an_overlapping_frame_follows_its_sides_previous_audio() {
        let mut m = Mixer::new(100);
        m.push(Side::Agent, 0, [1, 2, 3]);
        m.push(Side::Agent, 1, [4, 5]);
        let end = m.end();
        assert_eq!(drain_all(&mut m, end), [0, 1, 0, 2, 0, 3, 0, 4, 0, 5]);
    }

    #[test]
    fn only_the_horizon_is_held() {
        let mut m = Mixer::new(10);
        for i in 0..100u64 {
            let at = i * 4;
            let due = at.saturating_sub(10);
            drain_all(&mut m, due);
            m.push(Side::Caller, at, [1, 1, 1, 1]);
            let held: usize = m.tracks.iter().map(VecDeque::len).sum();
            assert!(held <= 10 + 4, "held {held} at {at}");
        }
        assert_eq!(m.written() + m.tracks[0].len() as u64, 400);
    }

    #[test]
    fn a_long_silence_is_written_in_bounded_pieces_without_being_held() {
        let mut m = Mixer::new(160);
        m.push(Side::Caller, 0, [7; 160]);
        // An hour later at 8 kHz.
        let at = 8000 * 3600;
        let written = drain_all(&mut m, at - 160);
        assert_eq!(written.len() as u64, 2 * (at - 160));
        m.push(Side::Agent, at, [9; 160]);
        assert!(m.tracks.iter().map(VecDeque::len).sum::<usize>() <= 480);
        let end = m.end();
        let rest = drain_all(&mut m, end);
        assert_eq!(m.written(), at + 160);
        assert_eq!(&rest[rest.len() - 2..], [0, 9]);
    }
}
