//! Telnyx media frames back in order. Telnyx says media frame order is not guaranteed, so
//! frames are put back in `sequence_number` order with a small window: an in-order frame (the
//! normal case) goes straight through; a frame after a gap waits for the missing one for at most
//! [`REORDER_WINDOW`] frames (60 ms), then the gap is given up. A frame arriving after its gap
//! was given up is dropped if it is audio (20 ms played out of place would garble the words
//! around it; STT tolerates a missing frame far better) and delivered if it is a mark, a key or
//! the stop, since those carry meaning whenever they come. Reordering costs nothing when frames
//! are in order, which is why it is worth doing.

use std::collections::{BTreeMap, VecDeque};

use crate::transport::Inbound;

/// Frames held after a gap before the gap is given up.
pub const REORDER_WINDOW: usize = 3;

/// Puts events back in sequence order (see the module comment).
#[derive(Debug)]
pub struct Reorder {
    next: Option<u64>,
    pending: BTreeMap<u64, Inbound>,
    ready: VecDeque<Inbound>,
    /// Audio frames dropped because they came after their gap was given up, or twice.
    pub dropped: u64,
}

impl Reorder {
    /// Expecting `next` first (`None`: whatever comes first).
    pub fn new(next: Option<u64>) -> Self {
        Self {
            next,
            pending: BTreeMap::new(),
            ready: VecDeque::with_capacity(REORDER_WINDOW + 2),
            dropped: 0,
        }
    }

    /// Takes an event; answers it at once when it is the next one and nothing waits.
    pub fn push(&mut self, seq: Option<u64>, event: Inbound) -> Option<Inbound> {
        let Some(seq) = seq else {
            // Unnumbered: nothing to order it by.
            return self.deliver(event);
        };
        let next = *self.next.get_or_insert(seq);
        if seq == next {
            self.next = Some(seq + 1);
            let out = self.deliver(event);
            self.release();
            return out;
        }
        if seq < next || self.pending.contains_key(&seq) {
            if matches!(event, Inbound::Audio(_)) {
                self.dropped += 1;
                return None;
            }
            return self.deliver(event);
        }
        self.pending.insert(seq, event);
        if self.pending.len() > REORDER_WINDOW
            && let Some(&first) = self.pending.keys().next()
        {
            // The gap is not coming: go on from the first frame after it.
            self.next = Some(first);
            self.release();
        }
        None
    }

    fn deliver(&mut self, event: Inbound) -> Option<Inbound> {
        if self.ready.is_empty() {
            Some(event)
        } else {
            self.ready.push_back(event);
            self.ready.pop_front()
        }
    }

    fn release(&mut self) {
        let Some(mut next) = self.next else { return };
        while let Some(event) = self.pending.remove(&next) {
            self.ready.push_back(event);
            next += 1;
        }
        self.next = Some(next);
    }

    /// The next event that is ready.
    pub fn pop(&mut self) -> Option<Inbound> {
        self.ready.pop_front()
    }

    /// Makes everything waiting ready, in order (the stream is ending).
    pub fn flush(&mut self) {
        if let Some(&last) = self.pending.keys().next_back() {
            self.next = Some(last + 1);
        }
        let pending = std::mem::take(&mut self.pending);
        self.ready.extend(pending.into_values());
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    #[test]
    fn in_order_frames_pass_straight_through() {
        let mut r = Reorder::new(Some(2));
        for seq in 2..10 {
            assert_eq!(
                r.push(Some(seq), Inbound::Dtmf('1')),
                Some(Inbound::Dtmf('1'))
            );
            assert_eq!(r.pop(), None);
        }
    }

    #[test]
    fn a_swapped_pair_is_put_back_in_order() {
        let mut r = Reorder::new(Some(2));
        let a = |n: u8| Inbound::Audio(Bytes::from(vec![n]));
        assert_eq!(r.push(Some(3), a(3)), None);
        assert_eq!(r.push(Some(2), a(2)), Some(a(2)));
        assert_eq!(r.pop(), Some(a(3)));
        assert_eq!(r.pop(), None);
        assert_eq!(r.push(Some(4), a(4)), Some(a(4)));
    }

    #[test]
    fn a_gap_is_given_up_after_the_window_and_late_audio_dropped() {
        let mut r = Reorder::new(Some(2));
        let a = |n: u8| Inbound::Audio(Bytes::from(vec![n]));
        // 2 never comes.
        for seq in 3..=(3 + REORDER_WINDOW as u64 - 1) {
            assert_eq!(r.push(Some(seq), a(seq as u8)), None);
        }
        let last = 3 + REORDER_WINDOW as u64;
        assert_eq!(r.push(Some(last), a(last as u8)), None);
        let released: Vec<_> = std::iter::from_fn(|| r.pop()).collect();
        assert_eq!(released, (3..=last).map(|s| a(s as u8)).collect::<Vec<_>>());
        // 2 arrives at last: its audio is out of place now; a late mark still counts.
        assert_eq!(r.push(Some(2), a(2)), None);
        assert_eq!(r.dropped, 1);
        assert_eq!(
            r.push(Some(2), Inbound::Mark("m".into())),
            Some(Inbound::Mark("m".into()))
        );
        // A duplicate of a delivered frame is dropped too.
        assert_eq!(r.push(Some(3), a(3)), None);
        assert_eq!(r.dropped, 2);
    }

    #[test]
    fn stop_flushes_what_waited() {
        let mut r = Reorder::new(Some(2));
        let a = |n: u8| Inbound::Audio(Bytes::from(vec![n]));
        assert_eq!(r.push(Some(3), a(3)), None);
        assert_eq!(r.push(Some(4), Inbound::Hangup), None);
        r.flush();
        assert_eq!(r.pop(), Some(a(3)));
        assert_eq!(r.pop(), Some(Inbound::Hangup));
        assert_eq!(r.pop(), None);
    }
}
