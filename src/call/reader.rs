//! The transport reader of a call: every caller frame goes to the STT as it came (no transcoding
//! when the STT takes the transport's format) and through the local VAD; only the VAD's state
//! changes, marks, keys and the hang-up reach the agent. So the per-frame work of a call happens
//! here, in one task, without waking the agent 50 times a second.
//!
//! End of turn: when the VAD hears the caller pause for the end-of-turn silence (or stop), the
//! reader asks the STT for its final right away (`SttInput::Finalize`, on the same queue as the
//! audio, so it follows the caller's last frame) and then tells the agent, which answers the
//! turn when that final arrives instead of waiting for the provider's own endpointing.

use tokio::sync::mpsc;

use super::io::MediaEvent;
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

/// Reads the caller until the socket ends, feeding the STT, the VAD and, when the call is
/// recorded, the recording's caller side.
pub async fn run_reader<S: MediaSource>(
    mut source: S,
    format: AudioFormat,
    stt: mpsc::Sender<SttInput>,
    mut vad: CascadeVad,
    events: mpsc::Sender<MediaEvent>,
    mut recording: Option<RecordingTap>,
) {
    let (mut feed, _) = vad_feed(format);
    let mut pcm: Vec<i16> = Vec::with_capacity(960);
    let mut dropped: u64 = 0;
    // The current utterance's end was already finalized at a pause.
    let mut finalized = false;
    loop {
        let Some(inbound) = source.next().await else {
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
                // The STT's queue is bounded: when it is full the STT link is stalled and its
                // session is reconnecting; a frame dropped here is counted, never waited for.
                if stt.try_send(SttInput::Audio(audio)).is_err() {
                    dropped += 1;
                    metrics::counter!(crate::metrics::STT_FRAMES_DROPPED).increment(1);
                    if dropped == 1 || dropped.is_multiple_of(500) {
                        tracing::warn!(dropped, "stt queue full; caller audio dropped");
                    }
                }
                match (!pcm.is_empty()).then(|| vad.process(&pcm)).flatten() {
                    Some(VadEvent::Onset { .. }) => MediaEvent::Onset,
                    Some(VadEvent::OnsetWithdrawn) => MediaEvent::OnsetWithdrawn,
                    Some(VadEvent::SpeechStart { .. }) => {
                        finalized = false;
                        speaking(&stt, true);
                        MediaEvent::SpeechStarted
                    }
                    Some(VadEvent::Pause { .. }) => {
                        finalized = finalize(&stt);
                        MediaEvent::Paused
                    }
                    Some(VadEvent::Resume { .. }) => {
                        finalized = false;
                        MediaEvent::Resumed
                    }
                    Some(VadEvent::SpeechEnd { .. }) => {
                        if !finalized {
                            finalize(&stt);
                        }
                        speaking(&stt, false);
                        MediaEvent::SpeechStopped
                    }
                    None => continue,
                }
            }
            Inbound::Mark(name) => MediaEvent::Mark(name),
            Inbound::Dtmf(digit) => MediaEvent::Dtmf(digit),
            Inbound::Hangup => {
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

/// Tells the STT session whether the caller speaks (what it keeps for a replay depends on it).
/// Best effort: a full queue means the link is reconnecting, and the state is only a bound on
/// memory.
fn speaking(stt: &mpsc::Sender<SttInput>, speaking: bool) {
    let _ = stt.try_send(SttInput::Speaking(speaking));
}

/// Asks the STT for its final now. A full queue means the STT link is reconnecting: the
/// provider's own endpointing then ends the turn. Answers whether the request was queued.
fn finalize(stt: &mpsc::Sender<SttInput>) -> bool {
    stt.try_send(SttInput::Finalize).is_ok()
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
