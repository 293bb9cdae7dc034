//! The transport writer of a call: TTS audio in (any chunk size), 20 ms frames out on a clock,
//! with playback marks placed at exact byte positions and a clear that empties everything at once.
//!
//! Audio is paced at real time (a frame in flight, not seconds), so a barge-in has little to clear
//! at the far end and marks come back when the words were really played. The writer only takes
//! more audio while its pacer has room; otherwise the agent stops reading the TTS and
//! backpressure reaches the TTS socket. An idle call costs no wake-ups: the clock is polled only
//! while a frame is ready.

use std::collections::VecDeque;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::io::{WriterControl, WriterItem};
use crate::audio::pacer::{FrameClock, Pacer};
use crate::generation::Generation;
use crate::transport::MediaSink;

/// Audio the pacer holds: enough to ride out scheduling hiccups, small enough per call.
const PACER_MS: u32 = 1000;
/// Generations whose start positions are remembered (late marks of the previous utterance).
const REMEMBERED_GENERATIONS: usize = 4;

/// Runs until a [`WriterControl::Close`], the agent going away, or the socket failing.
pub async fn run_writer<K: MediaSink>(
    mut sink: K,
    mut items: mpsc::Receiver<WriterItem>,
    mut control: mpsc::Receiver<WriterControl>,
) {
    let mut w = Writer::new(sink.format());
    let mut clock = FrameClock::new();
    loop {
        let wants_items = w.pending.is_none();
        tokio::select! {
            biased;
            order = control.recv() => match order {
                Some(WriterControl::Clear { generation }) => {
                    w.clear(generation);
                    if sink.clear().await.is_err() {
                        return;
                    }
                }
                Some(WriterControl::Close) | None => {
                    let _ = sink.close().await;
                    return;
                }
            },
            _ = clock.tick(), if w.pacer.has_frame() => {
                if w.send_frame(&mut sink).await.is_err() {
                    return;
                }
            }
            item = items.recv(), if wants_items => match item {
                Some(item) => {
                    let was_empty = w.pacer.is_empty();
                    w.take(item);
                    if was_empty && w.pacer.has_frame() {
                        // After silence the first frame goes out now, not at the old schedule.
                        clock.restart();
                    }
                    if w.send_due_marks(&mut sink).await.is_err() {
                        return;
                    }
                }
                None => {
                    let _ = sink.close().await;
                    return;
                }
            },
        }
        if w.pending.is_some() {
            w.push_pending();
        }
    }
}

struct Writer {
    pacer: Pacer,
    /// Output older than this generation is dropped (set by a clear).
    floor: Generation,
    /// The generation whose audio is being buffered, and where its audio starts.
    current: Generation,
    bases: VecDeque<(Generation, u64)>,
    /// Real audio bytes pushed into the pacer / handed to the sink since the start.
    pushed: u64,
    sent: u64,
    /// Marks waiting for their position to be sent: (absolute position, name), in order.
    marks: VecDeque<(u64, String)>,
    /// A chunk that did not fit yet.
    pending: Option<Bytes>,
    /// When the first audio of the current generation arrived, until its first frame goes out.
    first_audio_at: Option<Instant>,
}

impl Writer {
    fn new(format: crate::audio::AudioFormat) -> Self {
        Self {
            pacer: Pacer::new(format, PACER_MS),
            floor: Generation(0),
            current: Generation(0),
            bases: VecDeque::with_capacity(REMEMBERED_GENERATIONS),
            pushed: 0,
            sent: 0,
            marks: VecDeque::new(),
            pending: None,
            first_audio_at: None,
        }
    }

    /// The absolute position where `generation`'s audio starts (a new generation starts now).
    fn base_of(&mut self, generation: Generation) -> Option<u64> {
        if generation > self.current {
            self.current = generation;
            if self.bases.len() == REMEMBERED_GENERATIONS {
                self.bases.pop_front();
            }
            self.bases.push_back((generation, self.pushed));
        }
        self.bases
            .iter()
            .rev()
            .find(|(g, _)| *g == generation)
            .map(|(_, base)| *base)
    }

    fn take(&mut self, item: WriterItem) {
        match item {
            WriterItem::Audio { generation, audio } => {
                let starts_generation = generation > self.current;
                if generation < self.floor || self.base_of(generation).is_none() {
                    return;
                }
                if starts_generation {
                    self.first_audio_at = Some(Instant::now());
                }
                self.pending = Some(audio);
                self.push_pending();
            }
            WriterItem::Mark {
                generation,
                at,
                name,
                last,
            } => {
                if generation < self.floor {
                    return;
                }
                let Some(base) = self.base_of(generation) else {
                    return;
                };
                let position = base + at;
                if last {
                    // No more audio of this generation: a last partial frame goes out padded, or
                    // the mark would wait for audio that is not coming.
                    self.pacer.finish();
                }
                let index = self.marks.partition_point(|(p, _)| *p <= position);
                self.marks.insert(index, (position, name));
            }
        }
    }

    fn push_pending(&mut self) {
        let Some(audio) = self.pending.take() else {
            return;
        };
        let taken = self.pacer.push(&audio);
        self.pushed += taken as u64;
        if taken < audio.len() {
            self.pending = Some(audio.slice(taken..));
        }
    }

    async fn send_frame<K: MediaSink>(
        &mut self,
        sink: &mut K,
    ) -> Result<(), crate::transport::TransportError> {
        let before = self.pacer.buffered_bytes();
        let Some(frame) = self.pacer.next_frame() else {
            return Ok(());
        };
        sink.send_audio(frame).await?;
        self.sent += (before - self.pacer.buffered_bytes()) as u64;
        if let Some(first) = self.first_audio_at.take() {
            crate::metrics::stage("first_frame_out", first.elapsed().as_secs_f64());
        }
        self.send_due_marks(sink).await
    }

    async fn send_due_marks<K: MediaSink>(
        &mut self,
        sink: &mut K,
    ) -> Result<(), crate::transport::TransportError> {
        while self
            .marks
            .front()
            .is_some_and(|(position, _)| *position <= self.sent)
        {
            let (_, name) = self.marks.pop_front().expect("checked above");
            sink.send_mark(&name).await?;
        }
        Ok(())
    }

    /// Barge-in: everything older than `generation` goes, here; the caller clears the far end.
    fn clear(&mut self, generation: Generation) {
        self.floor = self.floor.max(generation);
        self.pacer.flush();
        self.pushed = self.sent;
        self.marks.clear();
        self.pending = None;
        self.first_audio_at = None;
    }
}
