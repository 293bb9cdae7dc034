//! The caller's earpiece: the audio the server sent, played out at 8000 bytes a second. It holds
//! no audio, only counts and mark positions, so a long agent turn costs nothing per caller. A mark
//! comes back once everything queued before it has played; `clear` drops the rest at once and
//! returns every pending mark, as Twilio does.

use std::collections::VecDeque;

/// A mark waiting for the audio before it to play.
#[derive(Debug)]
struct PendingMark {
    /// Stream position (bytes received before the mark).
    at: u64,
    /// Index into the report's mark list.
    record: usize,
}

/// Playout bookkeeping in stream positions (bytes of audio received so far).
#[derive(Debug, Default)]
pub struct Playout {
    received: u64,
    played: u64,
    marks: VecDeque<PendingMark>,
}

impl Playout {
    /// Audio arrived; answers its position in the stream.
    pub fn push_audio(&mut self, bytes: usize) -> u64 {
        let at = self.received;
        self.received += bytes as u64;
        at
    }

    /// A mark arrived. Answers true when nothing is queued before it, so it is due now.
    pub fn push_mark(&mut self, record: usize) -> bool {
        if self.queued() == 0 {
            return true;
        }
        self.marks.push_back(PendingMark {
            at: self.received,
            record,
        });
        false
    }

    /// Plays up to `bytes`; calls `due` with each mark whose audio has now played.
    pub fn play(&mut self, bytes: usize, mut due: impl FnMut(usize)) -> u64 {
        let played = (bytes as u64).min(self.queued());
        self.played += played;
        while self.marks.front().is_some_and(|m| m.at <= self.played) {
            if let Some(mark) = self.marks.pop_front() {
                due(mark.record);
            }
        }
        played
    }

    /// Drops everything queued; calls `due` with every pending mark. Answers the bytes dropped.
    pub fn clear(&mut self, mut due: impl FnMut(usize)) -> u64 {
        let dropped = self.queued();
        self.played = self.received;
        for mark in self.marks.drain(..) {
            due(mark.record);
        }
        dropped
    }

    /// Bytes received but not played yet.
    pub fn queued(&self) -> u64 {
        self.received - self.played
    }

    /// Bytes received so far (the stream position of the next audio).
    pub fn received(&self) -> u64 {
        self.received
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_come_back_after_their_audio() {
        let mut p = Playout::default();
        assert!(p.push_mark(0), "nothing queued: due at once");
        p.push_audio(320);
        assert!(!p.push_mark(1));
        p.push_audio(160);
        assert!(!p.push_mark(2));
        let mut due = Vec::new();
        p.play(160, |m| due.push(m));
        assert!(due.is_empty());
        p.play(160, |m| due.push(m));
        assert_eq!(due, [1]);
        p.play(160, |m| due.push(m));
        assert_eq!(due, [1, 2]);
        assert_eq!(p.play(160, |_| {}), 0, "nothing left to play");
    }

    #[test]
    fn clear_drops_audio_and_returns_pending_marks() {
        let mut p = Playout::default();
        p.push_audio(800);
        p.push_mark(0);
        p.push_audio(800);
        p.push_mark(1);
        p.play(160, |_| panic!("not yet"));
        let mut due = Vec::new();
        assert_eq!(p.clear(|m| due.push(m)), 1440);
        assert_eq!(due, [0, 1]);
        assert_eq!(p.queued(), 0);
        assert!(p.push_mark(2), "after a clear a mark is due at once");
    }
}
