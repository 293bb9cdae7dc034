//! The transport writer of a call: TTS audio in (any chunk size), 20 ms frames out on a clock,
//! with playback marks placed at exact byte positions and a clear that empties everything at once.
//!
//! Audio is paced at real time (a few frames ahead, not seconds), so a barge-in has little to
//! clear at the far end and marks come back when the words were really played. Frames go
//! [`FRAMES_PER_WRITE`] at a time in one socket write: the writer wakes, and the far end reads,
//! once per batch instead of once per frame. The writer only takes more audio while its pacer
//! has room; otherwise the agent stops reading the TTS and backpressure reaches the TTS socket.
//! An idle call costs no wake-ups: the clock is polled only while a frame is ready.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::first_frames::FirstFrames;
use super::io::{PlayoutItem, WriterControl};
use crate::audio::pacer::{FrameClock, Pacer};
use crate::generation::Generation;
use crate::recording::RecordingTap;
use crate::transport::{CallEvent, MediaSink};

/// Audio the pacer holds: enough to ride out scheduling hiccups, small enough per call.
const PACER_MS: u32 = 1000;
/// Frames kept ahead of the one playing: the far end's jitter buffer holds at least this much,
/// so a scheduling hiccup on either side of the socket is not heard as a gap. A barge-in's clear
/// drops it with the rest.
const LEAD_FRAMES: u32 = 2;
/// Frames written per wake-up (the far end holds up to `LEAD_FRAMES + FRAMES_PER_WRITE` frames
/// right after a write, 100 ms). One write per frame cost a wake-up and a syscall here and at
/// the far end 50 times a second per speaking call.
pub const FRAMES_PER_WRITE: u32 = 3;
/// Generations whose start positions are remembered (late marks of the previous utterance).
const REMEMBERED_GENERATIONS: usize = 4;

/// Runs until a [`WriterControl::Close`], the agent going away, or the socket failing.
/// `events` (transcripts, the end) go out as they come, ahead of queued audio; events sent before
/// a close still go out before the stream closes. Every frame sent also goes to `recording`,
/// when the call is recorded; each generation's first frame is stamped in `first_frames`, for the
/// agent's reply timings.
pub async fn run_writer<K: MediaSink>(
    mut sink: K,
    mut items: mpsc::Receiver<PlayoutItem>,
    mut control: mpsc::Receiver<WriterControl>,
    mut events: mpsc::Receiver<CallEvent>,
    recording: Option<RecordingTap>,
    first_frames: Option<Arc<FirstFrames>>,
) {
    let mut w = Writer::new(sink.format());
    w.recording = recording;
    w.first_frames = first_frames;
    let mut clock = FrameClock::new(LEAD_FRAMES, FRAMES_PER_WRITE);
    let mut events_open = true;
    loop {
        let wants_items = w.pending.is_none();
        let sent = tokio::select! {
            biased;
            order = control.recv() => match order {
                Some(WriterControl::Clear { generation }) => {
                    w.clear(generation);
                    clock.stop();
                    w.unflushed = true;
                    sink.clear().await
                }
                Some(WriterControl::Close) | None => {
                    while let Ok(event) = events.try_recv() {
                        let _ = sink.send_event(&event).await;
                    }
                    let _ = sink.close().await;
                    return;
                }
            },
            event = events.recv(), if events_open => match event {
                Some(event) => {
                    w.unflushed = true;
                    sink.send_event(&event).await
                }
                None => {
                    events_open = false;
                    Ok(())
                }
            },
            due = clock.tick(), if w.pacer.has_frame() => {
                w.send_frames(&mut sink, &mut clock, due).await
            }
            item = items.recv(), if wants_items => match item {
                Some(item) => {
                    let was_empty = w.pacer.is_empty();
                    w.take(item);
                    let now = Instant::now();
                    if was_empty && w.pacer.has_frame() && clock.is_dry(now) {
                        // After silence the first frame goes out now, not at the old schedule,
                        // and not through the timer either: tokio's wheel rounds even a due
                        // deadline up to its next millisecond, which every reply would hear.
                        // The rest of the lead follows on the clock's first tick, once the
                        // agent's marks for these bytes have arrived.
                        clock.restart(now);
                        w.send_frames(&mut sink, &mut clock, 1).await
                    } else {
                        w.send_due_marks(&mut sink).await
                    }
                }
                None => {
                    let _ = sink.close().await;
                    return;
                }
            },
        };
        if sent.is_err() {
            return;
        }
        // Everything this turn of the loop queued goes in one write.
        if std::mem::take(&mut w.unflushed) && sink.flush().await.is_err() {
            return;
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
    /// Marks waiting for their position to be sent: (absolute position, name, the word it
    /// ends), in order.
    marks: VecDeque<(u64, String, Option<String>)>,
    /// A chunk that did not fit yet.
    pending: Option<Bytes>,
    /// When the first audio of the current generation arrived, until its first frame goes out.
    first_audio_at: Option<Instant>,
    /// Something was queued on the sink since its last flush.
    unflushed: bool,
    /// The agent's side of the call's recording.
    recording: Option<RecordingTap>,
    first_frames: Option<Arc<FirstFrames>>,
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
            unflushed: false,
            recording: None,
            first_frames: None,
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

    fn take(&mut self, item: PlayoutItem) {
        match item {
            PlayoutItem::Audio { generation, audio } => {
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
            PlayoutItem::Mark {
                generation,
                at,
                name,
                last,
                spoken,
            } => {
                if generation < self.floor {
                    return;
                }
                let Some(base) = self.base_of(generation) else {
                    return;
                };
                // A last mark goes after everything of its generation queued before it, however
                // much that was (after a failed utterance nobody knows): all of that has been
                // pushed by now, since items are taken in order and only once the previous
                // chunk is in the pacer.
                let position = if last {
                    base.saturating_add(at).min(self.pushed)
                } else {
                    base + at
                };
                if last {
                    // No more audio of this generation: a last partial frame goes out padded, or
                    // the mark would wait for audio that is not coming.
                    self.pacer.finish();
                }
                let index = self.marks.partition_point(|(p, _, _)| *p <= position);
                self.marks.insert(index, (position, name, spoken));
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

    /// Queues up to `count` frames, each followed by the marks it reached.
    async fn send_frames<K: MediaSink>(
        &mut self,
        sink: &mut K,
        clock: &mut FrameClock,
        count: u32,
    ) -> Result<(), crate::transport::TransportError> {
        for _ in 0..count {
            if !self.pacer.has_frame() {
                break;
            }
            self.send_frame(sink).await?;
            clock.sent();
        }
        Ok(())
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
        self.unflushed = true;
        if let Some(tap) = &mut self.recording {
            tap.record_copy(frame);
        }
        self.sent += (before - self.pacer.buffered_bytes()) as u64;
        if let Some(first) = self.first_audio_at.take() {
            crate::metrics::stage("first_frame_out", first.elapsed().as_secs_f64());
            if let Some(stamps) = &self.first_frames {
                stamps.sent(self.current, Instant::now());
            }
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
            .is_some_and(|(position, _, _)| *position <= self.sent)
        {
            let (_, name, spoken) = self.marks.pop_front().expect("checked above");
            if let Some(word) = spoken {
                sink.send_event(&CallEvent::AgentText(word)).await?;
            }
            sink.send_mark(&name).await?;
            self.unflushed = true;
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

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use super::*;
    use crate::audio::AudioFormat;
    use crate::transport::TransportError;

    /// What the sink was asked to do, with the (paused) time it happened.
    #[derive(Debug, Clone, PartialEq)]
    enum Sent {
        Audio(usize),
        Mark(String),
        Event(CallEvent),
        Clear,
        Flush,
        Close,
    }

    #[derive(Clone, Default)]
    struct RecordingSink {
        log: Arc<Mutex<Vec<(Duration, Sent)>>>,
        start: Option<Instant>,
    }

    impl RecordingSink {
        fn push(&self, sent: Sent) {
            let at = self.start.map(|s| s.elapsed()).unwrap_or_default();
            self.log.lock().unwrap().push((at, sent));
        }
        /// What was sent, flushes left out.
        fn log(&self) -> Vec<(Duration, Sent)> {
            let log = self.log.lock().unwrap();
            log.iter()
                .filter(|(_, s)| *s != Sent::Flush)
                .cloned()
                .collect()
        }
        /// When the sink was flushed, and how many frames each flush wrote.
        fn writes(&self) -> Vec<(Duration, usize)> {
            let mut writes = Vec::new();
            let mut frames = 0;
            for (at, sent) in self.log.lock().unwrap().iter() {
                match sent {
                    Sent::Audio(_) => frames += 1,
                    Sent::Flush => writes.push((*at, std::mem::take(&mut frames))),
                    _ => {}
                }
            }
            writes
        }
    }

    impl MediaSink for RecordingSink {
        fn format(&self) -> AudioFormat {
            AudioFormat::MULAW_8K
        }
        async fn send_audio(&mut self, frame: &[u8]) -> Result<(), TransportError> {
            self.push(Sent::Audio(frame.len()));
            Ok(())
        }
        async fn send_mark(&mut self, name: &str) -> Result<(), TransportError> {
            self.push(Sent::Mark(name.to_owned()));
            Ok(())
        }
        async fn clear(&mut self) -> Result<(), TransportError> {
            self.push(Sent::Clear);
            Ok(())
        }
        async fn flush(&mut self) -> Result<(), TransportError> {
            self.push(Sent::Flush);
            Ok(())
        }
        async fn close(&mut self) -> Result<(), TransportError> {
            self.push(Sent::Close);
            Ok(())
        }
        fn wants_events(&self) -> bool {
            true
        }
        async fn send_event(&mut self, event: &CallEvent) -> Result<(), TransportError> {
            self.push(Sent::Event(event.clone()));
            Ok(())
        }
    }

    fn audio(generation: u64, bytes: usize) -> PlayoutItem {
        PlayoutItem::Audio {
            generation: Generation(generation),
            audio: Bytes::from(vec![0x55; bytes]),
        }
    }

    fn mark(generation: u64, at: u64, name: &str, last: bool) -> PlayoutItem {
        PlayoutItem::Mark {
            generation: Generation(generation),
            at,
            name: name.to_owned(),
            last,
            spoken: None,
        }
    }

    fn start() -> (
        RecordingSink,
        mpsc::Sender<PlayoutItem>,
        mpsc::Sender<WriterControl>,
        tokio::task::JoinHandle<()>,
    ) {
        let sink = RecordingSink {
            start: Some(Instant::now()),
            ..Default::default()
        };
        let (items_tx, items_rx) = mpsc::channel(32);
        let (control_tx, control_rx) = mpsc::channel(8);
        let (_events_tx, events_rx) = mpsc::channel(8);
        let task = tokio::spawn(run_writer(
            sink.clone(),
            items_rx,
            control_rx,
            events_rx,
            None,
            None,
        ));
        (sink, items_tx, control_tx, task)
    }

    #[tokio::test(start_paused = true)]
    async fn frames_go_out_in_batches_on_the_clock_with_marks_at_their_bytes() {
        let (sink, items, control, task) = start();
        // 12½ frames: the last one is padded when the end mark says nothing more is coming.
        items.send(audio(1, 2000)).await.unwrap();
        items.send(mark(1, 320, "g1.2", false)).await.unwrap();
        items.send(mark(1, 2000, "g1.end", true)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(400)).await;
        control.send(WriterControl::Close).await.unwrap();
        task.await.unwrap();
        let ms = |ms| Duration::from_millis(ms);
        assert_eq!(
            sink.writes(),
            [
                (ms(0), 1),
                (ms(20), 5),
                (ms(80), 3),
                (ms(140), 3),
                (ms(200), 1)
            ],
            "the first frame at once; on the first tick the far end's lead and a batch; \
             then a batch of three each time the lead runs down to two frames"
        );
        let order: Vec<Sent> = sink.log().into_iter().map(|(_, s)| s).collect();
        let mut expected = vec![
            Sent::Audio(160),
            Sent::Audio(160),
            Sent::Mark("g1.2".into()),
        ];
        expected.extend(std::iter::repeat_n(Sent::Audio(160), 11));
        expected.extend([Sent::Mark("g1.end".into()), Sent::Close]);
        assert_eq!(order, expected);
    }

    #[tokio::test(start_paused = true)]
    async fn a_partial_last_frame_is_padded_when_the_reply_ends() {
        let (sink, items, control, task) = start();
        items.send(audio(1, 250)).await.unwrap();
        items.send(mark(1, 250, "g1.end", true)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        control.send(WriterControl::Close).await.unwrap();
        task.await.unwrap();
        let sent: Vec<Sent> = sink.log().into_iter().map(|(_, s)| s).collect();
        assert_eq!(
            sent,
            [
                Sent::Audio(160),
                Sent::Audio(160),
                Sent::Mark("g1.end".into()),
                Sent::Close
            ]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_clear_jumps_the_queue_and_drops_the_old_generation() {
        let (sink, items, control, task) = start();
        items.send(audio(1, 8000)).await.unwrap();
        items.send(mark(1, 8000, "g1.end", true)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        control
            .send(WriterControl::Clear {
                generation: Generation(2),
            })
            .await
            .unwrap();
        // Audio of the old generation still in flight is dropped; the new one plays.
        items.send(audio(1, 1600)).await.unwrap();
        items.send(audio(2, 320)).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        control.send(WriterControl::Close).await.unwrap();
        task.await.unwrap();
        let log = sink.log();
        let clear_at = log
            .iter()
            .position(|(_, s)| *s == Sent::Clear)
            .expect("cleared");
        assert!(
            log[clear_at].0 <= Duration::from_millis(60),
            "clear within a frame: {:?}",
            log[clear_at].0
        );
        let after: Vec<&Sent> = log[clear_at + 1..].iter().map(|(_, s)| s).collect();
        assert_eq!(
            after,
            [&Sent::Audio(160), &Sent::Audio(160), &Sent::Close],
            "only the new generation's 320 bytes"
        );
        assert!(
            !log.iter().any(|(_, s)| *s == Sent::Mark("g1.end".into())),
            "the old end mark was dropped"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_writer_sends_nothing() {
        let (sink, _items, control, task) = start();
        tokio::time::sleep(Duration::from_secs(5)).await;
        control.send(WriterControl::Close).await.unwrap();
        task.await.unwrap();
        assert_eq!(
            sink.log().into_iter().map(|(_, s)| s).collect::<Vec<_>>(),
            [Sent::Close]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn events_go_out_at_once_words_with_their_marks_and_the_end_before_the_close() {
        let sink = RecordingSink {
            start: Some(Instant::now()),
            ..Default::default()
        };
        let (items, items_rx) = mpsc::channel(32);
        let (control, control_rx) = mpsc::channel(8);
        let (events, events_rx) = mpsc::channel(8);
        let task = tokio::spawn(run_writer(
            sink.clone(),
            items_rx,
            control_rx,
            events_rx,
            None,
            None,
        ));
        items.send(audio(1, 800)).await.unwrap();
        items
            .send(PlayoutItem::Mark {
                generation: Generation(1),
                at: 320,
                name: "g1.1".into(),
                last: false,
                spoken: Some("Hello".into()),
            })
            .await
            .unwrap();
        let heard = CallEvent::Transcript {
            text: "hi".into(),
            is_final: false,
        };
        events.send(heard.clone()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        events
            .send(CallEvent::End {
                reason: "caller_hung_up",
            })
            .await
            .unwrap();
        control.send(WriterControl::Close).await.unwrap();
        task.await.unwrap();
        let log = sink.log();
        let transcript = log
            .iter()
            .find(|(_, s)| *s == Sent::Event(heard.clone()))
            .expect("the transcript went out");
        assert!(
            transcript.0 < Duration::from_millis(20),
            "at once, not behind audio"
        );
        let sent: Vec<Sent> = log.into_iter().map(|(_, s)| s).collect();
        let word = sent
            .iter()
            .position(|s| *s == Sent::Event(CallEvent::AgentText("Hello".into())))
            .expect("the word went out");
        assert_eq!(
            sent[word + 1],
            Sent::Mark("g1.1".into()),
            "the word, then its mark"
        );
        assert_eq!(
            sent[sent.len() - 2..],
            [
                Sent::Event(CallEvent::End {
                    reason: "caller_hung_up"
                }),
                Sent::Close
            ]
        );
    }
}
