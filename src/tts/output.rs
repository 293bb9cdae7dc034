//! Where a TTS session's output goes. In a call, audio goes straight to the call's writer (the
//! paced transport output) and only the events the agent acts on go to the agent: that a
//! generation's audio started, its word timings, its end with the number of bytes produced, and
//! failures. So a chunk of speech crosses one channel, not two, and the writer's queue is what
//! pushes back on the provider's socket. Without a writer (tests, tools), the audio comes with
//! the events.

use std::collections::VecDeque;

use bytes::Bytes;
use tokio::sync::mpsc;

use super::TtsEvent;
use crate::audio::playout::PlayoutItem;
use crate::generation::Generation;

/// Generations whose byte counts are kept (one produces at a time; a cancelled one may still
/// trickle in for a moment).
const COUNTED_GENERATIONS: usize = 4;

/// A session's output: the events channel, and the writer's queue when audio goes there.
pub(crate) struct TtsOutput {
    events: mpsc::Sender<TtsEvent>,
    playout: Option<mpsc::Sender<PlayoutItem>>,
    produced: VecDeque<(Generation, u64)>,
}

impl TtsOutput {
    pub(crate) fn new(
        events: mpsc::Sender<TtsEvent>,
        playout: Option<mpsc::Sender<PlayoutItem>>,
    ) -> Self {
        Self {
            events,
            playout,
            produced: VecDeque::with_capacity(COUNTED_GENERATIONS),
        }
    }

    /// The session's owner went away.
    pub(crate) fn is_closed(&self) -> bool {
        self.events.is_closed()
    }

    /// Audio of `generation`. Waits while the writer's queue (or the events channel) is full:
    /// that is the backpressure that reaches the provider's socket.
    pub(crate) async fn audio(&mut self, generation: Generation, audio: Bytes) {
        let first = self.count(generation, audio.len() as u64);
        match &self.playout {
            Some(playout) => {
                if first {
                    let _ = self.events.send(TtsEvent::Started { generation }).await;
                }
                let _ = playout.send(PlayoutItem::Audio { generation, audio }).await;
            }
            None => {
                let _ = self
                    .events
                    .send(TtsEvent::Audio { generation, audio })
                    .await;
            }
        }
    }

    /// The provider finished `generation`'s utterance.
    pub(crate) async fn done(&mut self, generation: Generation) {
        let audio_bytes = self
            .produced
            .iter()
            .position(|(g, _)| *g == generation)
            .and_then(|i| self.produced.remove(i))
            .map_or(0, |(_, bytes)| bytes);
        let _ = self
            .events
            .send(TtsEvent::Done {
                generation,
                audio_bytes,
            })
            .await;
    }

    /// Any other event (word timings, failures), as it is.
    pub(crate) async fn send(&mut self, event: TtsEvent) {
        let _ = self.events.send(event).await;
    }

    /// Adds `bytes` to `generation`'s count; answers whether they are its first.
    fn count(&mut self, generation: Generation, bytes: u64) -> bool {
        if let Some((_, total)) = self.produced.iter_mut().find(|(g, _)| *g == generation) {
            *total += bytes;
            return false;
        }
        if self.produced.len() == COUNTED_GENERATIONS {
            self.produced.pop_front();
        }
        self.produced.push_back((generation, bytes));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn in_a_call_audio_goes_to_the_writer_and_the_agent_hears_of_it() {
        let (events_tx, mut events) = mpsc::channel(8);
        let (playout_tx, mut playout) = mpsc::channel(8);
        let mut output = TtsOutput::new(events_tx, Some(playout_tx));
        let g = Generation(3);
        output.audio(g, Bytes::from_static(&[1; 160])).await;
        output.audio(g, Bytes::from_static(&[2; 80])).await;
        output.done(g).await;
        assert!(matches!(
            events.recv().await,
            Some(TtsEvent::Started { generation }) if generation == g
        ));
        assert!(matches!(
            events.recv().await,
            Some(TtsEvent::Done { generation, audio_bytes: 240 }) if generation == g
        ));
        for len in [160, 80] {
            let Some(PlayoutItem::Audio { audio, .. }) = playout.recv().await else {
                panic!("audio for the writer")
            };
            assert_eq!(audio.len(), len);
        }
    }

    #[tokio::test]
    async fn without_a_writer_audio_comes_with_the_events() {
        let (events_tx, mut events) = mpsc::channel(8);
        let mut output = TtsOutput::new(events_tx, None);
        output
            .audio(Generation(1), Bytes::from_static(&[0; 4]))
            .await;
        output.done(Generation(1)).await;
        assert!(matches!(events.recv().await, Some(TtsEvent::Audio { .. })));
        assert!(matches!(
            events.recv().await,
            Some(TtsEvent::Done { audio_bytes: 4, .. })
        ));
    }
}
