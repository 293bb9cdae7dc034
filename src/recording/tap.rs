//! The per-frame end of a recording: the reader and the writer each hold a tap and hand it every
//! frame they pass on. A tap stamps the frame with its place on the call's clock and offers it to
//! the recording task without waiting: if that task is behind (a slow disk), the frame is
//! dropped and counted, and the recording has a silence there; the call never waits for it.
//!
//! Nothing is allocated per frame: the caller's frames are already `Bytes` (a reference count);
//! the agent's are copied into an arena whose space comes back once the task has written them.

use bytes::{Bytes, BytesMut};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::mixer::Side;
use crate::audio::AudioFormat;

/// One side's frame, stamped with where it lies on the call's timeline.
#[derive(Debug)]
pub struct StampedFrame {
    pub side: Side,
    /// Samples since the call's clock started.
    pub at: u64,
    pub audio: Bytes,
}

/// How far a side may fall behind the clock before its next frame is placed at the clock
/// instead of right after its previous one. The caller's stream is continuous (a frame every
/// 20 ms, silence included) but arrives with network jitter: placing each frame at its arrival
/// would add the jitter as silence, and drift; only a real gap in the stream is kept as one.
/// The agent's frames are sent a few frames ahead of real time, and after silence start at the
/// clock.
const CALLER_SLACK_MS: u64 = 200;
const AGENT_SLACK_MS: u64 = 0;
/// The agent's arena: a second of audio at the largest format, reused as frames are written.
const ARENA_BYTES: usize = 32 * 1024;

pub struct RecordingTap {
    tx: mpsc::Sender<StampedFrame>,
    side: Side,
    start: Instant,
    rate: u64,
    bytes_per_sample: u64,
    /// Where this side's next frame goes at the earliest (right after the previous one).
    next: u64,
    slack: u64,
    arena: BytesMut,
    dropped: u64,
    closed: bool,
}

impl RecordingTap {
    pub(super) fn new(
        tx: mpsc::Sender<StampedFrame>,
        side: Side,
        start: Instant,
        format: AudioFormat,
    ) -> Self {
        let slack_ms = match side {
            Side::Caller => CALLER_SLACK_MS,
            Side::Agent => AGENT_SLACK_MS,
        };
        let rate = u64::from(format.sample_rate);
        Self {
            tx,
            side,
            start,
            rate,
            bytes_per_sample: format.encoding.bytes_per_sample() as u64,
            next: 0,
            slack: slack_ms * rate / 1000,
            arena: BytesMut::new(),
            dropped: 0,
            closed: false,
        }
    }

    /// Records a frame that is already shared (the caller's).
    pub fn record(&mut self, audio: &Bytes) {
        if self.closed || audio.is_empty() {
            return;
        }
        let at = self.place(audio.len());
        self.offer(at, audio.clone());
    }

    /// Records a frame the caller only lends (the agent's, out of the pacer).
    pub fn record_copy(&mut self, audio: &[u8]) {
        if self.closed || audio.is_empty() {
            return;
        }
        let at = self.place(audio.len());
        if self.arena.capacity() < audio.len() {
            // Reclaims the arena's space if every earlier frame has been written, else
            // allocates a fresh block: once per second of audio, not per frame.
            self.arena.reserve(ARENA_BYTES.max(audio.len()));
        }
        self.arena.extend_from_slice(audio);
        let frame = self.arena.split().freeze();
        self.offer(at, frame);
    }

    fn place(&mut self, len: usize) -> u64 {
        let now = self.start.elapsed().as_micros() as u64 * self.rate / 1_000_000;
        let at = self.next.max(now.saturating_sub(self.slack));
        self.next = at + len as u64 / self.bytes_per_sample;
        at
    }

    fn offer(&mut self, at: u64, audio: Bytes) {
        let frame = StampedFrame {
            side: self.side,
            at,
            audio,
        };
        match self.tx.try_send(frame) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => {
                self.dropped += 1;
                metrics::counter!(crate::metrics::RECORDING_FRAMES_DROPPED).increment(1);
                if self.dropped == 1 || self.dropped.is_multiple_of(500) {
                    tracing::warn!(
                        dropped = self.dropped,
                        "recording is behind; frames left out"
                    );
                }
            }
            // The recording ended (a full disk): the call goes on without it.
            Err(mpsc::error::TrySendError::Closed(_)) => self.closed = true,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[tokio::test(start_paused = true)]
    async fn frames_are_stamped_on_the_calls_clock_and_jitter_is_not_silence() {
        let (tx, mut rx) = mpsc::channel(16);
        let start = Instant::now();
        let mut caller = RecordingTap::new(tx.clone(), Side::Caller, start, AudioFormat::MULAW_8K);
        let mut agent = RecordingTap::new(tx, Side::Agent, start, AudioFormat::MULAW_8K);
        let frame = Bytes::from(vec![0xFF; 160]);
        caller.record(&frame);
        // The next caller frame is 30 ms late, the one after on time: both follow on.
        tokio::time::sleep(Duration::from_millis(50)).await;
        caller.record(&frame);
        caller.record(&frame);
        // The agent starts speaking at 50 ms, three frames at once (the far end's lead).
        for _ in 0..3 {
            agent.record_copy(&[0x7F; 160]);
        }
        // The caller's stream stops for a second: the gap stays a gap.
        tokio::time::sleep(Duration::from_secs(1)).await;
        caller.record(&frame);
        let mut got = Vec::new();
        while let Ok(f) = rx.try_recv() {
            got.push((f.side, f.at));
        }
        assert_eq!(
            got,
            [
                (Side::Caller, 0),
                (Side::Caller, 160),
                (Side::Caller, 320),
                (Side::Agent, 400),
                (Side::Agent, 560),
                (Side::Agent, 720),
                (Side::Caller, 8400 - 1600),
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_full_queue_drops_without_waiting_and_a_closed_one_is_left_alone() {
        let (tx, rx) = mpsc::channel(1);
        let mut agent = RecordingTap::new(tx, Side::Agent, Instant::now(), AudioFormat::PCM16_16K);
        agent.record_copy(&[1; 640]);
        agent.record_copy(&[2; 640]);
        assert_eq!(agent.dropped, 1);
        drop(rx);
        agent.record_copy(&[3; 640]);
        assert!(agent.closed);
    }

    #[tokio::test(start_paused = true)]
    async fn the_agents_arena_is_reused_once_frames_are_written() {
        let (tx, mut rx) = mpsc::channel(64);
        let mut agent = RecordingTap::new(tx, Side::Agent, Instant::now(), AudioFormat::PCM16_16K);
        agent.record_copy(&[1; 640]);
        let first = rx.try_recv().unwrap().audio.as_ptr();
        for _ in 0..200 {
            agent.record_copy(&[2; 640]);
            drop(rx.try_recv().unwrap());
        }
        // 200 frames of 640 bytes went through a 32 KiB arena: its space was taken back.
        agent.record_copy(&[3; 640]);
        let ptr = rx.try_recv().unwrap().audio.as_ptr();
        let base = first as usize;
        assert!(
            (base..base + ARENA_BYTES).contains(&(ptr as usize)),
            "the arena's first block is reused"
        );
    }
}
