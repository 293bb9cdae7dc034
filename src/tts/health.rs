//! How quickly a TTS session gives up on its provider. A provider link can die silently (a NAT
//! forgets it, the provider hangs): without deadlines a call would wait forever for audio or for
//! a `Done`. WebSocket providers are probed with protocol pings, which every server answers even
//! when it has nothing to say, so silence is never mistaken for a stall.

use std::time::Duration;

use tokio::time::Instant;

/// Deadlines of a TTS session. The defaults detect a dead link within 2 s of the last sign of
/// life while a turn is in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TtsTimeouts {
    /// Opening a WebSocket or getting an HTTP response's headers.
    pub connect: Duration,
    /// Writing one message to the provider.
    pub send: Duration,
    /// Silence, while a turn is in flight, after which the provider is pinged.
    pub busy_ping_after: Duration,
    /// Silence, while idle, after which the provider is pinged (keeps the socket warm and
    /// finds a dead one before the next turn needs it).
    pub idle_ping_after: Duration,
    /// Wait for any frame after a ping before declaring the link dead.
    pub pong: Duration,
    /// A closed turn (all its text sent) on a live link that hears nothing about it for this
    /// long is failed: the provider lost it (e.g. an error frame we could not read).
    pub turn_idle: Duration,
    /// HTTP providers: first audio byte of a request (they synthesise before answering).
    pub http_first_byte: Duration,
    /// HTTP providers: gap between two pieces of a streamed body.
    pub http_stall: Duration,
}

impl Default for TtsTimeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(3),
            send: Duration::from_secs(2),
            busy_ping_after: Duration::from_secs(1),
            idle_ping_after: Duration::from_secs(20),
            pong: Duration::from_secs(1),
            turn_idle: Duration::from_secs(5),
            http_first_byte: Duration::from_secs(10),
            http_stall: Duration::from_secs(2),
        }
    }
}

/// What the session should do when its liveness deadline passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Probe {
    /// Send a WebSocket ping; the deadline moves to the pong timeout.
    SendPing,
    /// A ping went unanswered: the link is dead.
    Dead,
}

/// Tracks the last sign of life of one provider link.
#[derive(Debug)]
pub(crate) struct Liveness {
    timeouts: TtsTimeouts,
    last_heard: Instant,
    ping_sent: Option<Instant>,
}

impl Liveness {
    pub(crate) fn new(timeouts: TtsTimeouts) -> Self {
        Self {
            timeouts,
            last_heard: Instant::now(),
            ping_sent: None,
        }
    }

    /// Any frame arrived (or the session was busy on its own side): the link is alive.
    pub(crate) fn heard(&mut self) {
        self.last_heard = Instant::now();
        self.ping_sent = None;
    }

    /// When to probe next; `busy` while some turn waits for the provider.
    pub(crate) fn deadline(&self, busy: bool) -> Instant {
        match self.ping_sent {
            Some(sent) => sent + self.timeouts.pong,
            None if busy => self.last_heard + self.timeouts.busy_ping_after,
            None => self.last_heard + self.timeouts.idle_ping_after,
        }
    }

    /// The deadline passed.
    pub(crate) fn on_deadline(&mut self) -> Probe {
        if self.ping_sent.is_some() {
            Probe::Dead
        } else {
            self.ping_sent = Some(Instant::now());
            Probe::SendPing
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn an_unanswered_ping_means_dead() {
        let timeouts = TtsTimeouts::default();
        let mut live = Liveness::new(timeouts);
        let start = Instant::now();
        assert_eq!(live.deadline(true), start + timeouts.busy_ping_after);
        assert_eq!(live.deadline(false), start + timeouts.idle_ping_after);
        tokio::time::sleep_until(live.deadline(true)).await;
        assert_eq!(live.on_deadline(), Probe::SendPing);
        let dead_at = live.deadline(true);
        assert!(dead_at - start <= Duration::from_secs(2));
        tokio::time::sleep_until(dead_at).await;
        assert_eq!(live.on_deadline(), Probe::Dead);
    }

    #[tokio::test(start_paused = true)]
    async fn any_frame_after_the_ping_keeps_it_alive() {
        let timeouts = TtsTimeouts::default();
        let mut live = Liveness::new(timeouts);
        tokio::time::sleep_until(live.deadline(true)).await;
        assert_eq!(live.on_deadline(), Probe::SendPing);
        tokio::time::sleep(Duration::from_millis(300)).await;
        live.heard();
        assert_eq!(
            live.deadline(true),
            Instant::now() + timeouts.busy_ping_after
        );
        tokio::time::sleep_until(live.deadline(true)).await;
        assert_eq!(live.on_deadline(), Probe::SendPing);
    }
}
