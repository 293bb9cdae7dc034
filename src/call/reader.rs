//! The transport reader of a call: every caller frame goes to the STT as it came (no transcoding
//! when the STT takes the transport's format) and through the local VAD; only the VAD's state
//! changes, marks, keys and the hang-up reach the agent. So the per-frame work of a call happens
//! here, in one task, without waking the agent 50 times a second.
//!
//! End of turn: when the VAD hears the caller pause for the end-of-turn silence (or stop), the
//! reader asks the STT for its final right away (`SttInput::Finalize`, on the same queue as the
//! audio, so it follows the caller's last frame) and then tells the agent, which answers the
//! turn when that final arrives instead of waiting for the provider's own endpointing.
//!
//! Caller audio goes to the STT in chunks of `stt_chunk_ms` (see `stt_chunks.rs`), flushed at
//! every VAD change, so a turn's end goes out with its last frame.

use tokio::sync::mpsc;

use super::io::MediaEvent;
use super::stt_chunks::SttChunker;
use crate::audio::resample::Resampler;
use crate::audio::vad::{CascadeVad, Vad, VadEvent};
use crate::audio::{AudioFormat, Encoding, g711};
use crate::recording::RecordingTap;
use crate::stt::SttInput;
use crate::transport::{Inbound, MediaSource};

/// How caller audio becomes PCM at a rate the VAD takes (8 or 16 kHz).
enum VadFeed {
    /// G.711 at 8 kHz: a table lookup per sample.
    Mulaw,
    Alaw,
    /// PCM16 at 8 or 16 kHz: as is.
    Pcm16,
    /// PCM16 at another rate (a browser's 48 kHz): resampled to 16 kHz, through a reused
    /// scratch buffer.
    Resampled(Box<Resampler>, Vec<i16>),
}

/// The VAD's input stage for audio in `format`, and the rate it produces.
fn vad_feed(format: AudioFormat) -> (VadFeed, u32) {
    match format.encoding {
        Encoding::Mulaw => (VadFeed::Mulaw, format.sample_rate),
        Encoding::Alaw => (VadFeed::Alaw, format.sample_rate),
        Encoding::Pcm16 if matches!(format.sample_rate, 8000 | 16_000) => {
            (VadFeed::Pcm16, format.sample_rate)
        }
        Encoding::Pcm16 => match Resampler::new(format.sample_rate, 16_000) {
            Ok(resampler) => (
                VadFeed::Resampled(Box::new(resampler), Vec::with_capacity(960)),
                16_000,
            ),
            Err(e) => {
                tracing::error!(error = %e, rate = format.sample_rate, "no resampler for the VAD; using 16 kHz as is");
                (VadFeed::Pcm16, 16_000)
            }
        },
    }
}

/// Builds the VAD for caller audio in `format`.
pub fn caller_vad(
    format: AudioFormat,
    config: crate::audio::vad::VadConfig,
) -> Result<CascadeVad, crate::audio::vad::VadError> {
    CascadeVad::new(config, vad_feed(format).1)
}

/// Reads the caller until the socket ends, feeding the STT (in chunks of `stt_chunk_ms`), the
/// VAD and, when the call is recorded, the recording's caller side.
pub async fn run_reader<S: MediaSource>(
    mut source: S,
    format: AudioFormat,
    stt: mpsc::Sender<SttInput>,
    stt_chunk_ms: u32,
    mut vad: CascadeVad,
    events: mpsc::Sender<MediaEvent>,
    mut recording: Option<RecordingTap>,
) {
    let (mut feed, _) = vad_feed(format);
    let mut pcm: Vec<i16> = Vec::with_capacity(960);
    let mut stt = SttFeed {
        input: stt,
        chunker: SttChunker::new(format.bytes_per_ms(stt_chunk_ms)),
        frame_bytes: format.bytes_per_ms(crate::audio::frame::FRAME_MS).max(1),
        dropped: 0,
    };
    // The current utterance's end was already finalized at a pause.
    let mut finalized = false;
    loop {
        let Some(inbound) = source.next().await else {
            stt.flush();
            let _ = events.send(MediaEvent::Hangup).await;
            return;
        };
        let event = match inbound {
            Inbound::Audio(audio) => {
                if !audio.is_empty() {
                    decode(&mut feed, &audio, &mut pcm);
                }
                if let Some(tap) = &mut recording {
                    tap.record(&audio);
                }
                let vad_event = (!pcm.is_empty()).then(|| vad.process(&pcm)).flatten();
                stt.push(audio);
                if vad_event.is_some() {
                    // A change in the caller's voice: what was gathered goes now, so the STT
                    // hears an onset without waiting for the chunk, and a final asked for below
                    // follows the caller's last frame.
                    stt.flush();
                }
                match vad_event {
                    Some(VadEvent::Onset { .. }) => MediaEvent::Onset,
                    Some(VadEvent::OnsetWithdrawn) => MediaEvent::OnsetWithdrawn,
                    Some(VadEvent::SpeechStart { .. }) => {
                        finalized = false;
                        stt.speaking(true);
                        MediaEvent::SpeechStarted
                    }
                    Some(VadEvent::Pause { .. }) => {
                        finalized = stt.finalize();
                        MediaEvent::Paused
                    }
                    Some(VadEvent::Resume { .. }) => {
                        finalized = false;
                        MediaEvent::Resumed
                    }
                    Some(VadEvent::SpeechEnd { .. }) => {
                        if !finalized {
                            stt.finalize();
                        }
                        stt.speaking(false);
                        MediaEvent::SpeechStopped
                    }
                    None => continue,
                }
            }
            Inbound::Mark(name) => MediaEvent::Mark(name),
            Inbound::Dtmf(digit) => MediaEvent::Dtmf(digit),
            Inbound::Hangup => {
                stt.flush();
                let _ = events.send(MediaEvent::Hangup).await;
                // Keep reading (and dropping) until the far end closes: a socket dropped with
                // unread data is reset, and the far end would lose the close frame that says
                // how the call ended.
                while source.next().await.is_some() {}
                return;
            }
        };
        if events.send(event).await.is_err() {
            return;
        }
    }
}

/// The reader's side of the STT session's queue: audio in chunks, and the VAD's news.
struct SttFeed {
    input: mpsc::Sender<SttInput>,
    chunker: SttChunker,
    frame_bytes: usize,
    /// Frames dropped so far because the queue was full.
    dropped: u64,
}

impl SttFeed {
    fn push(&mut self, audio: bytes::Bytes) {
        if let Some(chunk) = self.chunker.push(audio) {
            self.send(chunk);
        }
    }

    /// Sends what was gathered, however little.
    fn flush(&mut self) {
        if let Some(chunk) = self.chunker.take() {
            self.send(chunk);
        }
    }

    /// The STT's queue is bounded: when it is full the STT link is stalled and its session is
    /// reconnecting; audio dropped here is counted, never waited for.
    fn send(&mut self, chunk: bytes::Bytes) {
        let frames = chunk.len().div_ceil(self.frame_bytes) as u64;
        if self.input.try_send(SttInput::Audio(chunk)).is_err() {
            let before = self.dropped;
            self.dropped += frames;
            metrics::counter!(crate::metrics::STT_FRAMES_DROPPED).increment(frames);
            if before == 0 || before / 500 != self.dropped / 500 {
                tracing::warn!(
                    dropped = self.dropped,
                    "stt queue full; caller audio dropped"
                );
            }
        }
    }

    /// Tells the STT session whether the caller speaks (what it keeps for a replay depends on
    /// it). Best effort: a full queue means the link is reconnecting, and the state is only a
    /// bound on memory.
    fn speaking(&mut self, speaking: bool) {
        self.flush();
        let _ = self.input.try_send(SttInput::Speaking(speaking));
    }

    /// Asks the STT for its final now, behind the caller's last audio. A full queue means the
    /// STT link is reconnecting: the provider's own endpointing then ends the turn. Answers
    /// whether the request was queued.
    fn finalize(&mut self) -> bool {
        self.flush();
        self.input.try_send(SttInput::Finalize).is_ok()
    }
}

/// Turns one frame of caller audio into PCM for the VAD, reusing `pcm`'s allocation.
fn decode(feed: &mut VadFeed, audio: &[u8], pcm: &mut Vec<i16>) {
    match feed {
        VadFeed::Mulaw => g711::decode_mulaw_into(audio, pcm),
        VadFeed::Alaw => g711::decode_alaw_into(audio, pcm),
        VadFeed::Pcm16 => {
            pcm.clear();
            pcm.extend(
                audio
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]])),
            );
        }
        VadFeed::Resampled(resampler, scratch) => {
            scratch.clear();
            scratch.extend(
                audio
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]])),
            );
            pcm.clear();
            resampler.push(scratch, |frame| pcm.extend_from_slice(frame));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::VecDeque;
    use std::sync::{Arc, Mutex};

    use super::*;
    use crate::audio::vad::VadConfig;

    /// What the STT's queue held, each with how many caller frames the reader had been given
    /// when it was seen.
    type Log = Arc<Mutex<Vec<(usize, SttInput)>>>;

    /// Caller frames from a queue, then the socket's end. Before it hands out each frame it
    /// takes what the reader queued for the STT so far, so the test knows what went out before
    /// which frame.
    struct Frames {
        frames: VecDeque<bytes::Bytes>,
        given: usize,
        stt: Arc<Mutex<mpsc::Receiver<SttInput>>>,
        log: Log,
    }

    impl Frames {
        fn take_queued(&self) {
            let mut stt = self.stt.lock().unwrap();
            while let Ok(input) = stt.try_recv() {
                self.log.lock().unwrap().push((self.given, input));
            }
        }
    }

    impl MediaSource for Frames {
        async fn next(&mut self) -> Option<Inbound> {
            self.take_queued();
            let frame = self.frames.pop_front()?;
            self.given += 1;
            Some(Inbound::Audio(frame))
        }
    }

    #[tokio::test]
    async fn a_turn_end_goes_to_the_stt_with_the_last_frame_and_nothing_is_held_back() {
        let clip = |name: &str| {
            crate::audio::wav::read(format!(
                "{}/audio/caller/{name}.wav",
                env!("CARGO_MANIFEST_DIR")
            ))
            .unwrap()
            .samples
        };
        // Two turns between silences; 200 ms chunks, so a turn's end rarely falls on a chunk's.
        let mut pcm = vec![0i16; 8000];
        pcm.extend_from_slice(&clip("book_table"));
        pcm.extend(std::iter::repeat_n(0i16, 12_000));
        pcm.extend_from_slice(&clip("tomorrow_at_seven"));
        pcm.extend(std::iter::repeat_n(0i16, 12_000));
        let mut mulaw = Vec::new();
        g711::encode_mulaw_into(&pcm[..pcm.len() / 160 * 160], &mut mulaw);
        let frames: VecDeque<bytes::Bytes> = mulaw
            .chunks(160)
            .map(bytes::Bytes::copy_from_slice)
            .collect();
        let frame_count = frames.len();

        let (stt_tx, stt_rx) = mpsc::channel(4096);
        let (events_tx, mut events_rx) = mpsc::channel(4096);
        let log: Log = Arc::default();
        let stt = Arc::new(Mutex::new(stt_rx));
        let source = Frames {
            frames,
            given: 0,
            stt: stt.clone(),
            log: log.clone(),
        };
        let vad = caller_vad(AudioFormat::MULAW_8K, VadConfig::default()).unwrap();
        run_reader(
            source,
            AudioFormat::MULAW_8K,
            stt_tx,
            200,
            vad,
            events_tx,
            None,
        )
        .await;
        // What the reader flushed when the socket ended.
        Frames {
            frames: VecDeque::new(),
            given: frame_count,
            stt,
            log: log.clone(),
        }
        .take_queued();

        let mut events = Vec::new();
        while let Ok(event) = events_rx.try_recv() {
            events.push(event);
        }
        assert!(
            events
                .iter()
                .any(|e| matches!(e, MediaEvent::SpeechStarted))
                && events
                    .iter()
                    .any(|e| matches!(e, MediaEvent::SpeechStopped)),
            "the VAD heard the turn: {events:?}"
        );

        let log = log.lock().unwrap();
        let mut sent = Vec::new();
        let (mut finals, mut starts) = (0, 0);
        for (given, input) in log.iter() {
            match input {
                SttInput::Audio(chunk) => {
                    assert!(chunk.len() <= 1600, "chunks of at most 200 ms");
                    sent.extend_from_slice(chunk);
                }
                // Everything the caller said up to the frame that ended the turn (or started
                // it) is already on the queue, ahead of the request.
                SttInput::Finalize => {
                    finals += 1;
                    assert_eq!(sent.len(), given * 160, "audio held back behind a final");
                }
                SttInput::Speaking(true) => {
                    starts += 1;
                    assert_eq!(sent.len(), given * 160, "audio held back behind an onset");
                }
                SttInput::Speaking(false) => {}
            }
        }
        assert!(
            finals >= 2 && starts >= 2,
            "finals {finals}, starts {starts}"
        );
        assert_eq!(sent.len(), frame_count * 160, "every frame reached the STT");
        assert_eq!(sent, mulaw, "in order, unchanged");
    }
}
