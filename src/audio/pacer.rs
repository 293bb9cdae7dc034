//! Outbound pacing: TTS audio arrives in bursts of any size, callers must hear it at exactly
//! real time, in 20 ms frames.
//!
//! Sending TTS audio as fast as it arrives fills the telephony provider's buffer, so a barge-in
//! cannot stop what is already queued there, and the server loses track of what has been heard.
//! Pacing keeps at most a frame in flight: a barge-in is a [`Pacer::flush`] (answering how much
//! was dropped), and [`Pacer::sent_ms`] is what the caller has been sent so far.
//!
//! Two parts, owned by the transport writer of each call:
//! - [`Pacer`]: a fixed ring buffer (allocated once, a few seconds long) that takes byte chunks
//!   and hands out whole frames as `&[u8]` slices of itself. Nothing is allocated per frame.
//!   It works for μ-law/A-law 8 kHz (160-byte frames) and PCM16 at any rate (2 bytes a sample).
//! - [`FrameClock`]: when frames must go. Frame *n* of a stretch of audio plays at the far end
//!   from `start + n × 20 ms`; it is sent `lead` frames ahead of that, and frames go `batch` at
//!   a time, so the writer wakes (and writes) once per batch, not once per frame. Deadlines are
//!   computed from `start` in integer nanoseconds, so nothing drifts, and a writer that woke late
//!   sends everything that fell due at once, so the stream catches up instead of slipping.
//!
//! The writer loop (see the tests for a complete one):
//!
//! ```ignore
//! loop {
//!     tokio::select! {
//!         // Only listen to the clock while a frame is ready: an idle call costs no wake-ups.
//!         due = clock.tick(), if pacer.has_frame() => for _ in 0..due {
//!             send(pacer.next_frame().unwrap()).await?;
//!             clock.sent();
//!         },
//!         // Only take more audio while it fits: back-pressure reaches the TTS reader.
//!         Some(chunk) = audio_rx.recv(), if pacer.free_bytes() >= chunk_limit => {
//!             if clock.is_dry(Instant::now()) { clock.restart(Instant::now()); } // a new stretch
//!             pacer.push(&chunk);
//!         }
//!         Some(Barge) = control_rx.recv() => { let dropped_ms = pacer.flush(); /* ... */ }
//!     }
//! }
//! ```

use std::time::Duration;

use std::pin::Pin;

use tokio::time::{Instant, Sleep};

use super::frame::FRAME_MS;
use super::g711;
use super::{AudioFormat, Encoding};

/// A ring buffer of outbound audio handing out 20 ms frames. See the module docs.
pub struct Pacer {
    format: AudioFormat,
    frame_bytes: usize,
    /// Capacity is a whole number of frames and reads start at 0 after every drain, so a frame
    /// is always contiguous in the ring.
    ring: Box<[u8]>,
    head: usize,
    len: usize,
    /// The last, partial frame padded with silence (after [`Pacer::finish`]).
    tail: Box<[u8]>,
    finishing: bool,
    sent_bytes: u64,
}

impl Pacer {
    /// A pacer for `format` holding up to `capacity_ms` of audio (rounded up to whole frames,
    /// at least one).
    pub fn new(format: AudioFormat, capacity_ms: u32) -> Self {
        let frame_bytes = format
            .bytes_per_ms(FRAME_MS)
            .max(format.encoding.bytes_per_sample());
        let frames = capacity_ms.div_ceil(FRAME_MS).max(1) as usize;
        Self {
            format,
            frame_bytes,
            ring: vec![0; frames * frame_bytes].into_boxed_slice(),
            head: 0,
            len: 0,
            tail: vec![0; frame_bytes].into_boxed_slice(),
            finishing: false,
            sent_bytes: 0,
        }
    }

    pub fn format(&self) -> AudioFormat {
        self.format
    }

    /// Bytes in a 20 ms frame (160 for μ-law 8 kHz, 640 for PCM16 16 kHz).
    pub fn frame_bytes(&self) -> usize {
        self.frame_bytes
    }

    pub fn capacity_bytes(&self) -> usize {
        self.ring.len()
    }

    pub fn buffered_bytes(&self) -> usize {
        self.len
    }

    /// Audio waiting to be sent, ms.
    pub fn buffered_ms(&self) -> u64 {
        self.format.duration_ms(self.len)
    }

    pub fn free_bytes(&self) -> usize {
        self.ring.len() - self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends audio; returns how many bytes fitted (the rest is the caller's to retry once
    /// frames have gone out). Clears a previous [`Pacer::finish`].
    pub fn push(&mut self, bytes: &[u8]) -> usize {
        let take = bytes.len().min(self.free_bytes());
        if take == 0 {
            return 0;
        }
        self.finishing = false;
        let capacity = self.ring.len();
        let write = (self.head + self.len) % capacity;
        let first = take.min(capacity - write);
        self.ring[write..write + first].copy_from_slice(&bytes[..first]);
        self.ring[..take - first].copy_from_slice(&bytes[first..take]);
        self.len += take;
        take
    }

    /// Marks the end of an utterance: a last partial frame will be padded with silence rather
    /// than wait for more audio.
    pub fn finish(&mut self) {
        self.finishing = true;
    }

    /// Whether [`Pacer::next_frame`] has a frame to give.
    pub fn has_frame(&self) -> bool {
        self.len >= self.frame_bytes || (self.finishing && self.len > 0)
    }

    /// The next 20 ms frame, if one is complete (or the padded tail after `finish`). The slice
    /// is valid until the next call on the pacer.
    pub fn next_frame(&mut self) -> Option<&[u8]> {
        if self.len >= self.frame_bytes {
            let start = self.head;
            self.advance(self.frame_bytes);
            return Some(&self.ring[start..start + self.frame_bytes]);
        }
        if self.finishing && self.len > 0 {
            let n = self.len;
            self.tail[..n].copy_from_slice(&self.ring[self.head..self.head + n]);
            self.tail[n..].fill(silence_byte(self.format.encoding));
            self.advance(n);
            self.sent_bytes += (self.frame_bytes - n) as u64;
            self.finishing = false;
            return Some(&self.tail);
        }
        None
    }

    fn advance(&mut self, n: usize) {
        self.len -= n;
        self.sent_bytes += n as u64;
        self.head = if self.len == 0 {
            0
        } else {
            (self.head + n) % self.ring.len()
        };
    }

    /// Drops everything buffered (barge-in); returns how many ms of audio were dropped.
    pub fn flush(&mut self) -> u64 {
        let dropped = self.buffered_ms();
        self.len = 0;
        self.head = 0;
        self.finishing = false;
        dropped
    }

    /// Audio handed out since creation, ms (padding included: it is played too).
    pub fn sent_ms(&self) -> u64 {
        let samples = self.sent_bytes / self.format.encoding.bytes_per_sample() as u64;
        samples * 1000 / u64::from(self.format.sample_rate.max(1))
    }
}

fn silence_byte(encoding: Encoding) -> u8 {
    match encoding {
        Encoding::Mulaw => g711::MULAW_SILENCE,
        Encoding::Alaw => g711::ALAW_SILENCE,
        Encoding::Pcm16 => 0,
    }
}

/// The send schedule of one call's frames. See the module docs.
pub struct FrameClock {
    /// When frame 0 of the current stretch plays at the far end; `None` between stretches.
    start: Option<Instant>,
    /// Frames of the stretch sent so far.
    sent: u32,
    /// Frames sent ahead of the one playing.
    lead: u32,
    /// Frames per wake-up.
    batch: u32,
    /// Reused for every wait, and only re-armed when the deadline moves.
    sleep: Pin<Box<Sleep>>,
}

const FRAME: Duration = Duration::from_millis(FRAME_MS as u64);

impl FrameClock {
    /// A clock keeping `lead` frames ahead of the far end's playback, waking once per `batch`
    /// frames (at least one). `FrameClock::new(0, 1)` sends each frame as it starts playing.
    pub fn new(lead: u32, batch: u32) -> Self {
        Self {
            start: None,
            sent: 0,
            lead,
            batch: batch.max(1),
            sleep: Box::pin(tokio::time::sleep_until(Instant::now())),
        }
    }

    /// A new stretch whose first frame plays from `now`: it is due at once.
    pub fn restart(&mut self, now: Instant) {
        self.start = Some(now);
        self.sent = 0;
    }

    /// The far end's buffer was dropped (a barge-in's clear): the next audio starts a stretch.
    pub fn stop(&mut self) {
        self.start = None;
        self.sent = 0;
    }

    /// One frame of the stretch went out.
    pub fn sent(&mut self) {
        self.sent += 1;
    }

    /// Whether the far end has played everything sent (or nothing was sent): audio arriving now
    /// starts a new stretch rather than continuing this one.
    pub fn is_dry(&self, now: Instant) -> bool {
        self.start
            .is_none_or(|start| now >= start + FRAME * self.sent)
    }

    /// When frame `n` of the stretch must be sent: `lead` frames before it plays, but the frames
    /// after the first never before the second frame's time (the agent's marks for the first
    /// audio arrive just behind it, and each mark must follow its own byte).
    fn deadline(&self, start: Instant, n: u32) -> Instant {
        start + FRAME * n.saturating_sub(self.lead).max(n.min(1))
    }

    /// Waits until the next frame must go, then answers how many frames are due now: that one,
    /// everything that fell due while the task was late, and the rest of the batch.
    pub async fn tick(&mut self) -> u32 {
        let Some(start) = self.start else {
            // Frames with no stretch started: one starts now.
            self.restart(Instant::now());
            return self.batch;
        };
        let deadline = self.deadline(start, self.sent);
        if deadline > Instant::now() {
            if self.sleep.deadline() != deadline {
                self.sleep.as_mut().reset(deadline);
            }
            self.sleep.as_mut().await;
        }
        let ahead = Instant::now() + FRAME * (self.batch - 1);
        // Frames whose time has come by `ahead`, counted from the stretch's start.
        let elapsed = (ahead.saturating_duration_since(start).as_nanos() / FRAME.as_nanos()) as u32;
        let last_due = if elapsed >= 1 { elapsed + self.lead } else { 0 };
        (last_due + 1).saturating_sub(self.sent).max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::mpsc;

    #[test]
    fn frames_padding_and_accounting() {
        let mut pacer = Pacer::new(AudioFormat::MULAW_8K, 100);
        assert_eq!(pacer.frame_bytes(), 160);
        assert_eq!(pacer.capacity_bytes(), 800);
        assert_eq!(pacer.push(&[1; 250]), 250);
        assert_eq!(pacer.next_frame(), Some(&[1u8; 160][..]));
        assert!(!pacer.has_frame(), "90 bytes wait for more");
        assert_eq!(pacer.next_frame(), None);
        pacer.finish();
        let tail = pacer.next_frame().unwrap();
        assert_eq!(&tail[..90], &[1; 90][..]);
        assert!(tail[90..].iter().all(|&b| b == g711::MULAW_SILENCE));
        assert_eq!(pacer.sent_ms(), 40);
        assert!(pacer.is_empty());
    }

    #[test]
    fn fills_to_capacity_and_wraps_without_splitting_frames() {
        let format = AudioFormat::new(Encoding::Pcm16, 16_000);
        let mut pacer = Pacer::new(format, 60);
        assert_eq!(pacer.frame_bytes(), 640);
        let audio: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
        let mut sent = Vec::new();
        let mut offset = 0;
        while offset < audio.len() || pacer.has_frame() {
            offset += pacer.push(&audio[offset..(offset + 333).min(audio.len())]);
            if offset == audio.len() {
                pacer.finish();
            }
            if let Some(frame) = pacer.next_frame() {
                assert_eq!(frame.len(), 640);
                sent.extend_from_slice(frame);
            }
        }
        assert_eq!(&sent[..audio.len()], &audio[..]);
        assert!(sent[audio.len()..].iter().all(|&b| b == 0));
        assert_eq!(sent.len(), 5120);
        assert_eq!(pacer.sent_ms(), 160);
    }

    #[test]
    fn flush_drops_everything_and_says_how_much() {
        let mut pacer = Pacer::new(AudioFormat::MULAW_8K, 2000);
        pacer.push(&[7; 8000]);
        for _ in 0..10 {
            pacer.next_frame().unwrap();
        }
        assert_eq!(pacer.buffered_ms(), 800);
        assert_eq!(pacer.flush(), 800);
        assert!(pacer.next_frame().is_none());
        assert_eq!(pacer.sent_ms(), 200);
        assert_eq!(pacer.push(&[9; 10]), 10, "usable after a flush");
    }

    /// The writer loop a transport runs, recording when each frame went out.
    async fn writer(
        mut pacer: Pacer,
        mut audio: mpsc::Receiver<Vec<u8>>,
        mut barge: mpsc::Receiver<()>,
        sent: mpsc::UnboundedSender<(Instant, usize)>,
        stall_after: Option<(usize, Duration)>,
    ) -> Pacer {
        let mut clock = FrameClock::new(0, 1);
        let mut count = 0;
        let mut pending: Option<(Vec<u8>, usize)> = None;
        let mut closed = false;
        loop {
            if let Some((chunk, offset)) = pending.as_mut() {
                let was_empty = pacer.is_empty();
                *offset += pacer.push(&chunk[*offset..]);
                if was_empty && !pacer.is_empty() {
                    clock.restart(Instant::now());
                }
                if *offset == chunk.len() {
                    pending = None;
                }
            }
            if closed && pacer.is_empty() {
                return pacer;
            }
            tokio::select! {
                biased;
                Some(()) = barge.recv() => {
                    pacer.flush();
                    pending = None;
                }
                due = clock.tick(), if pacer.has_frame() => {
                    for _ in 0..due {
                        let Some(frame) = pacer.next_frame() else { break };
                        sent.send((Instant::now(), frame.len())).expect("test receiver");
                        clock.sent();
                        count += 1;
                        // A slow socket write.
                        if let Some((_, stall)) = stall_after.filter(|(after, _)| *after == count) {
                            tokio::time::sleep(stall).await;
                        }
                    }
                }
                chunk = audio.recv(), if pending.is_none() && !closed => match chunk {
                    Some(chunk) => pending = Some((chunk, 0)),
                    None => {
                        closed = true;
                        pacer.finish();
                    }
                },
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn ten_minutes_without_drift_or_gaps() {
        let (audio_tx, audio_rx) = mpsc::channel(4);
        let (_barge_tx, barge_rx) = mpsc::channel(1);
        let (sent_tx, mut sent_rx) = mpsc::unbounded_channel();
        let pacer = Pacer::new(AudioFormat::MULAW_8K, 2000);
        let writer = tokio::spawn(writer(pacer, audio_rx, barge_rx, sent_tx, None));

        // TTS: 10 minutes of μ-law in odd-sized chunks, produced faster than real time.
        let total = 8000 * 600;
        let producer = tokio::spawn(async move {
            let mut left = total;
            let mut size = 37;
            while left > 0 {
                let n = size.min(left);
                audio_tx.send(vec![0x55; n]).await.unwrap();
                left -= n;
                size = size * 7 % 3001 + 1;
            }
        });
        let start = Instant::now();
        let mut frames = 0u64;
        while let Some((at, len)) = sent_rx.recv().await {
            assert_eq!(len, 160);
            // Frame n leaves exactly n × 20 ms after the first: no drift, no gap.
            assert_eq!(
                at - start,
                Duration::from_millis(20 * frames),
                "frame {frames}"
            );
            frames += 1;
        }
        producer.await.unwrap();
        let pacer = writer.await.unwrap();
        assert_eq!(frames, 30_000);
        assert_eq!(pacer.sent_ms(), 600_000);
    }

    #[tokio::test(start_paused = true)]
    async fn barge_in_stops_audio_at_once_and_restarts_on_new_audio() {
        let (audio_tx, audio_rx) = mpsc::channel(4);
        let (barge_tx, barge_rx) = mpsc::channel(1);
        let (sent_tx, mut sent_rx) = mpsc::unbounded_channel();
        let writer = tokio::spawn(writer(
            Pacer::new(AudioFormat::MULAW_8K, 2000),
            audio_rx,
            barge_rx,
            sent_tx,
            None,
        ));
        audio_tx.send(vec![1; 8000]).await.unwrap(); // 1 s
        let start = Instant::now();
        for n in 0..5 {
            let (at, _) = sent_rx.recv().await.unwrap();
            assert_eq!(at - start, Duration::from_millis(20 * n));
        }
        barge_tx.send(()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(sent_rx.try_recv().is_err(), "nothing after the barge-in");
        // New audio after idling goes out at once, then every 20 ms.
        let resumed = Instant::now();
        audio_tx.send(vec![2; 480]).await.unwrap();
        for n in 0..3 {
            let (at, _) = sent_rx.recv().await.unwrap();
            assert_eq!(at - resumed, Duration::from_millis(20 * n));
        }
        drop(audio_tx);
        writer.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn a_late_writer_catches_up_instead_of_drifting() {
        let (audio_tx, audio_rx) = mpsc::channel(4);
        let (_barge_tx, barge_rx) = mpsc::channel(1);
        let (sent_tx, mut sent_rx) = mpsc::unbounded_channel();
        // The 10th send takes 70 ms.
        let stall = Some((10, Duration::from_millis(70)));
        let pacer = Pacer::new(AudioFormat::MULAW_8K, 2000);
        let writer = tokio::spawn(writer(pacer, audio_rx, barge_rx, sent_tx, stall));
        audio_tx.send(vec![1; 160 * 40]).await.unwrap();
        drop(audio_tx);
        let start = Instant::now();
        let mut times = Vec::new();
        while let Some((at, _)) = sent_rx.recv().await {
            times.push((at - start).as_millis() as u64);
        }
        writer.await.unwrap();
        assert_eq!(times.len(), 40);
        // Frames 10..=12 fell due during the stall (180–250 ms) and go out together when it
        // ends; from frame 13 on, every frame is exactly on its original schedule.
        let on_schedule = |range: std::ops::Range<u64>| range.map(|n| n * 20).collect::<Vec<_>>();
        assert_eq!(times[..10], on_schedule(0..10));
        assert_eq!(times[10..13], [250, 250, 250]);
        assert_eq!(times[13..], on_schedule(13..40));
    }
}
