//! Provider messages held until their send time. A fake's latency is per kind of message (a
//! final waits [`Latency::first_byte`], a preview or VAD event [`Latency::per_chunk`]), but a
//! later message must never overtake an earlier one, as it never does on a real socket.

use std::collections::VecDeque;

use tokio::time::Instant;

use super::Latency;

/// A message a fake wants to send.
#[derive(Debug)]
pub(crate) struct Emission {
    /// Finals wait `first_byte`; everything else `per_chunk`.
    pub is_final: bool,
    pub text: String,
}

/// Messages waiting for their send time, in order.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    queue: VecDeque<(Instant, String)>,
}

impl Outbox {
    /// Takes `emissions` (leaving the vector empty for reuse) and schedules them.
    pub fn schedule(&mut self, latency: Latency, emissions: &mut Vec<Emission>) {
        if emissions.is_empty() {
            return;
        }
        let now = Instant::now();
        for emission in emissions.drain(..) {
            let delay = if emission.is_final {
                latency.first_byte
            } else {
                latency.per_chunk
            };
            let due = self
                .queue
                .back()
                .map_or(now + delay, |(last, _)| (*last).max(now + delay));
            self.queue.push_back((due, emission.text));
        }
    }

    pub fn next_due(&self) -> Option<Instant> {
        self.queue.front().map(|(due, _)| *due)
    }

    /// The next message if its time has come.
    pub fn pop_due(&mut self, now: Instant) -> Option<String> {
        if self.next_due()? <= now {
            self.queue.pop_front().map(|(_, text)| text)
        } else {
            None
        }
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn later_messages_never_overtake() {
        let mut outbox = Outbox::default();
        let latency = Latency::from_millis(300, 50);
        let mut batch = vec![
            Emission {
                is_final: true,
                text: "final".into(),
            },
            Emission {
                is_final: false,
                text: "event".into(),
            },
        ];
        outbox.schedule(latency, &mut batch);
        assert!(batch.is_empty());
        let start = Instant::now();
        assert_eq!(outbox.pop_due(start), None);
        let at = start + Duration::from_millis(300);
        assert_eq!(outbox.pop_due(at).as_deref(), Some("final"));
        assert_eq!(
            outbox.pop_due(at).as_deref(),
            Some("event"),
            "held behind the final"
        );
        assert!(outbox.is_empty());
    }
}
