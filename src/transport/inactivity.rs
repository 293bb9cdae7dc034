//! A dead-line watchdog for a media socket. Telephony providers send a frame every 20 ms, silence
//! included, so a started stream that sends nothing for seconds is a line that died without a
//! `stop` (a crashed media server, a half-open TCP connection). Resetting a timer on every frame
//! would re-register it in the timer wheel 50 times a second per call; instead each frame only
//! records when it came, and the one timer, when it fires, moves itself to the real deadline.

use std::time::Duration;

use tokio::time::{Instant, Sleep};

/// Fires once nothing has been [`touch`](Inactivity::touch)ed for `limit`.
pub struct Inactivity {
    limit: Duration,
    last: Instant,
    timer: std::pin::Pin<Box<Sleep>>,
}

impl Inactivity {
    pub fn new(limit: Duration) -> Self {
        let now = Instant::now();
        Self {
            limit,
            last: now,
            timer: Box::pin(tokio::time::sleep_until(now + limit)),
        }
    }

    pub fn limit(&self) -> Duration {
        self.limit
    }

    /// Something arrived.
    pub fn touch(&mut self) {
        self.last = Instant::now();
    }

    /// Completes when nothing arrived for the limit. Cancel-safe: dropping it loses nothing.
    pub async fn expired(&mut self) {
        loop {
            (&mut self.timer).await;
            let deadline = self.last + self.limit;
            if Instant::now() >= deadline {
                return;
            }
            self.timer.as_mut().reset(deadline);
        }
    }
}

/// The next message of a media socket, or `None` when it ended, broke, or stayed silent past
/// `inactivity` (each arrival moves the deadline). One place for what every provider's source
/// does before it reads a frame.
pub async fn next_message(
    stream: &mut futures_util::stream::SplitStream<axum::extract::ws::WebSocket>,
    inactivity: &mut Inactivity,
    provider: &'static str,
) -> Option<axum::extract::ws::Message> {
    use futures_util::StreamExt;
    let next = tokio::select! {
        biased;
        next = stream.next() => next?,
        () = inactivity.expired() => {
            tracing::warn!(
                provider,
                after_secs = inactivity.limit().as_secs(),
                "media stream silent; ending the call as a hang-up"
            );
            return None;
        }
    };
    inactivity.touch();
    match next {
        Ok(message) => Some(message),
        Err(e) => {
            tracing::debug!(provider, error = %e, "media socket error");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn fires_only_after_a_full_quiet_limit() {
        let limit = Duration::from_secs(20);
        let mut watchdog = Inactivity::new(limit);
        let start = Instant::now();
        tokio::time::sleep(Duration::from_secs(15)).await;
        watchdog.touch();
        watchdog.expired().await;
        assert_eq!(
            start.elapsed(),
            Duration::from_secs(35),
            "15 s + a quiet 20 s"
        );
    }
}
