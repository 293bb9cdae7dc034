//! The cascade detector: energy on every frame, Silero to confirm candidate onsets.
//!
//! States: *silence* → (an active frame) → *candidate* → (it lasted `min_speech_ms`, and the
//! neural model agrees) → *speech* → (`min_silence_ms` without an active frame) → *silence*.
//! A fresh candidate that lasted `onset_ms` and that the model already takes for speech is
//! announced (`Onset`) before that, so a barge-in does not wait for `min_speech_ms`; it is
//! withdrawn (`OnsetWithdrawn`) if the candidate then dies or is rejected.
//! A candidate with a gap of more than [`CANDIDATE_GAP_MS`] dies without costing a neural run
//! (a click, a short knock). A candidate the model rejects (a cough, a door, music) lifts the
//! energy floor to its level and is asked about again only after a growing back-off, so a
//! steady non-speech sound stops costing model runs.
//!
//! Confirmation runs Silero with a fresh state over the candidate's audio from
//! [`PREROLL_MS`] before its onset up to now (at most [`MAX_ANALYSIS_MS`]), kept in a small ring
//! buffer; 8 kHz audio is first upsampled to the model's 16 kHz. Per call the detector holds
//! that ring (8 KiB at 8 kHz) and 1 KiB of model state; everything else is shared or per thread.

use std::cell::RefCell;

use super::energy::EnergyDetector;
use super::silero::{self, Silero};
use super::{Vad, VadConfig, VadError, VadEvent};
use crate::audio::resample::Resampler;

/// Audio before a candidate's onset given to the model, so it hears the onset in context.
pub const PREROLL_MS: u32 = 64;
/// Longest stretch of audio the model is given per confirmation (16 windows of 32 ms).
pub const MAX_ANALYSIS_MS: u32 = 512;
/// A candidate dies after this much inactivity.
pub const CANDIDATE_GAP_MS: u32 = 120;
/// Share of the analysed windows after the onset that must be speech to confirm.
const CONFIRM_SHARE: f32 = 0.5;
/// The early look's bar, as a share of the configured threshold: its first windows hear the
/// onset with little context, where the model is still unsure.
const EARLY_THRESHOLD_SHARE: f32 = 0.5;
/// A rejected candidate is looked at again after `min_speech_ms << min(rejections, this)`.
const MAX_BACKOFF_SHIFT: u32 = 3;

/// Counters for tuning and benchmarks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct VadStats {
    pub frames: u64,
    pub active_frames: u64,
    /// Confirmations attempted (candidates that reached `min_speech_ms`).
    pub neural_runs: u64,
    /// 32 ms windows the model evaluated.
    pub neural_windows: u64,
}

#[derive(Debug, Clone, Copy)]
enum State {
    Silence,
    Candidate {
        onset: u64,
        last_active: u64,
        check_at: u64,
        rejections: u32,
        /// The early look at `onset_ms`: not yet taken (`None`), or whether it said speech
        /// (and an `Onset` was reported).
        announced: Option<bool>,
    },
    Speech {
        last_active: u64,
        /// A `Pause` was reported for the current silence.
        paused: bool,
    },
}

/// See the module docs. Times inside are in samples since the stream start.
pub struct CascadeVad {
    config: VadConfig,
    sample_rate: u32,
    energy: EnergyDetector,
    history: History,
    silero: Silero,
    position: u64,
    state: State,
    stats: VadStats,
    /// Silence (ms) inside speech reported as a `Pause`; `None`: no pauses.
    pause_ms: Option<u32>,
}

impl CascadeVad {
    /// A detector for 8000 or 16000 Hz audio with `config` (validated).
    pub fn new(config: VadConfig, sample_rate: u32) -> Result<Self, VadError> {
        if sample_rate != 8000 && sample_rate != 16_000 {
            return Err(VadError::UnsupportedRate(sample_rate));
        }
        config.validate()?;
        Ok(Self {
            config,
            sample_rate,
            energy: EnergyDetector::new(config.energy_margin_db, sample_rate),
            history: History::new(ms_to_samples(MAX_ANALYSIS_MS, sample_rate) as usize),
            silero: Silero::new(),
            position: 0,
            state: State::Silence,
            stats: VadStats::default(),
            pause_ms: None,
        })
    }

    /// Also report a [`VadEvent::Pause`] when speech has been silent for `ms` (shorter than
    /// `min_silence_ms`; otherwise only `SpeechEnd` comes) and a [`VadEvent::Resume`] when it
    /// goes on after one. The call ends the caller's turn early at a pause.
    pub fn with_pause_after(mut self, ms: u32) -> Self {
        self.pause_ms = (ms < self.config.min_silence_ms).then_some(ms.max(20));
        self
    }

    pub fn config(&self) -> &VadConfig {
        &self.config
    }

    pub fn stats(&self) -> VadStats {
        self.stats
    }

    fn ms(&self, samples: u64) -> u64 {
        samples * 1000 / u64::from(self.sample_rate)
    }

    fn samples(&self, ms: u32) -> u64 {
        ms_to_samples(ms, self.sample_rate)
    }

    /// Asks the neural model whether the audio since `onset` is speech: at least
    /// `CONFIRM_SHARE` of the windows after the onset must be.
    fn confirm(&mut self, onset: u64) -> bool {
        let (speech, after_onset) = self.listen(onset, self.config.threshold);
        // Too little audio to judge (a very short min_speech_ms): trust the energy.
        after_onset == 0 || speech as f32 >= CONFIRM_SHARE * after_onset as f32
    }

    /// The early look at a fresh candidate: a window or two after the onset, not yet enough for
    /// a majority, so one window the model takes for speech is enough to announce it (an onset
    /// only holds the agent's audio, and is withdrawn if `confirm` later says no).
    fn sounds_like_speech(&mut self, onset: u64) -> bool {
        let (speech, after_onset) =
            self.listen(onset, EARLY_THRESHOLD_SHARE * self.config.threshold);
        after_onset == 0 || speech > 0
    }

    /// Runs the model over the audio since `onset` (with its preroll); answers how many windows
    /// after the onset it took for speech, of how many.
    fn listen(&mut self, onset: u64, threshold: f32) -> (usize, usize) {
        let start = onset.saturating_sub(self.samples(PREROLL_MS));
        let wanted = (self.position - start).min(self.history.len() as u64) as usize;
        let (older, newer) = self.history.last(wanted);
        // Windows that start at or after the onset (in 16 kHz samples from the segment's end).
        let onset_back = ((self.position - onset) * 16_000 / u64::from(self.sample_rate)) as usize;
        self.stats.neural_runs += 1;
        let silero = &mut self.silero;
        silero.reset();
        let (windows, speech, after_onset) = NEURAL.with(|cell| {
            let mut scratch = cell.borrow_mut();
            let scratch = scratch.get_or_insert_with(NeuralScratch::new);
            let audio = scratch.resample_to_16k(older, newer, self.sample_rate);
            let count = audio.len() / silero::WINDOW;
            let first = audio.len() - count * silero::WINDOW;
            let (mut speech, mut after_onset) = (0usize, 0usize);
            for i in 0..count {
                let from = first + i * silero::WINDOW;
                let Ok(window) =
                    <&[f32; silero::WINDOW]>::try_from(&audio[from..from + silero::WINDOW])
                else {
                    continue;
                };
                let p = silero.process(window);
                // Only windows mostly after the onset vote; earlier ones warm the model up.
                if audio.len() - from <= onset_back + silero::WINDOW / 2 {
                    after_onset += 1;
                    if p >= threshold {
                        speech += 1;
                    }
                }
            }
            (count, speech, after_onset)
        });
        self.stats.neural_windows += windows as u64;
        (speech, after_onset)
    }
}

impl Vad for CascadeVad {
    fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    fn process(&mut self, frame: &[i16]) -> Option<VadEvent> {
        let start = self.position;
        let end = start + frame.len() as u64;
        self.position = end;
        self.history.push(frame);
        let continuing = match self.state {
            State::Silence => false,
            State::Candidate { last_active, .. } | State::Speech { last_active, .. } => {
                last_active == start
            }
        };
        let active = self.energy.process(frame, continuing);
        self.stats.frames += 1;
        self.stats.active_frames += u64::from(active);

        match self.state {
            State::Silence => {
                if active {
                    self.state = State::Candidate {
                        onset: start,
                        last_active: end,
                        check_at: start + self.samples(self.config.min_speech_ms),
                        rejections: 0,
                        announced: None,
                    };
                    return self.check_candidate();
                }
                None
            }
            State::Candidate {
                ref mut last_active,
                announced,
                ..
            } => {
                if active {
                    *last_active = end;
                } else if end - *last_active > self.samples(CANDIDATE_GAP_MS) {
                    self.state = State::Silence;
                    return (announced == Some(true)).then_some(VadEvent::OnsetWithdrawn);
                }
                self.check_candidate()
            }
            State::Speech {
                last_active,
                paused,
            } => {
                if active {
                    self.state = State::Speech {
                        last_active: end,
                        paused: false,
                    };
                    return paused.then(|| VadEvent::Resume {
                        at_ms: self.ms(start),
                    });
                }
                if end - last_active >= self.samples(self.config.min_silence_ms) {
                    self.state = State::Silence;
                    return Some(VadEvent::SpeechEnd {
                        at_ms: self.ms(last_active),
                    });
                }
                let pause = self.pause_ms.map(|ms| self.samples(ms));
                if !paused && pause.is_some_and(|pause| end - last_active >= pause) {
                    self.state = State::Speech {
                        last_active,
                        paused: true,
                    };
                    return Some(VadEvent::Pause {
                        at_ms: self.ms(last_active),
                    });
                }
                None
            }
        }
    }

    fn is_speaking(&self) -> bool {
        matches!(self.state, State::Speech { .. })
    }

    fn reset(&mut self) {
        self.energy.reset();
        self.history.clear();
        self.silero.reset();
        self.position = 0;
        self.state = State::Silence;
    }
}

impl CascadeVad {
    fn check_candidate(&mut self) -> Option<VadEvent> {
        let State::Candidate {
            onset,
            last_active,
            check_at,
            rejections,
            announced,
        } = self.state
        else {
            return None;
        };
        if self.position < check_at {
            // Only a fresh candidate is looked at early: one that was rejected before is a
            // steady sound, and the back-off exists so it stops costing model runs.
            let early = onset + self.samples(self.config.onset_ms);
            if announced.is_some() || rejections > 0 || self.position < early {
                return None;
            }
            // If the model hears no speech yet there is no announcement: `min_speech_ms`
            // decides, as without an early look.
            let speech = !self.config.neural || self.sounds_like_speech(onset);
            if let State::Candidate { announced, .. } = &mut self.state {
                *announced = Some(speech);
            }
            return speech.then(|| VadEvent::Onset {
                at_ms: self.ms(onset),
            });
        }
        if !self.config.neural || self.confirm(onset) {
            self.state = State::Speech {
                last_active,
                paused: false,
            };
            return Some(VadEvent::SpeechStart {
                at_ms: self.ms(onset),
            });
        }
        // Not speech: it is background, so the energy detector should stop flagging it; start
        // over from here and look again later.
        self.energy.treat_as_noise();
        let rejections = rejections + 1;
        let wait = self.samples(self.config.min_speech_ms) << rejections.min(MAX_BACKOFF_SHIFT);
        self.state = State::Candidate {
            onset: self.position,
            last_active,
            check_at: self.position + wait,
            rejections,
            announced: None,
        };
        (announced == Some(true)).then_some(VadEvent::OnsetWithdrawn)
    }
}

fn ms_to_samples(ms: u32, sample_rate: u32) -> u64 {
    u64::from(ms) * u64::from(sample_rate) / 1000
}

/// The most recent samples of the stream, for the neural model to look back at.
struct History {
    buffer: Box<[i16]>,
    /// Next write position.
    head: usize,
    filled: usize,
}

impl History {
    fn new(capacity: usize) -> Self {
        Self {
            buffer: vec![0; capacity].into_boxed_slice(),
            head: 0,
            filled: 0,
        }
    }

    fn len(&self) -> usize {
        self.filled
    }

    fn clear(&mut self) {
        self.head = 0;
        self.filled = 0;
    }

    fn push(&mut self, mut samples: &[i16]) {
        let capacity = self.buffer.len();
        if samples.len() > capacity {
            samples = &samples[samples.len() - capacity..];
        }
        let first = (capacity - self.head).min(samples.len());
        self.buffer[self.head..self.head + first].copy_from_slice(&samples[..first]);
        self.buffer[..samples.len() - first].copy_from_slice(&samples[first..]);
        self.head = (self.head + samples.len()) % capacity;
        self.filled = (self.filled + samples.len()).min(capacity);
    }

    /// The last `n` samples (n ≤ len) as two slices, oldest first.
    fn last(&self, n: usize) -> (&[i16], &[i16]) {
        let n = n.min(self.filled);
        let capacity = self.buffer.len();
        let start = (self.head + capacity - n) % capacity;
        if start + n <= capacity {
            (&self.buffer[start..start + n], &[])
        } else {
            (&self.buffer[start..], &self.buffer[..self.head])
        }
    }
}

/// Per-thread buffers for confirmations: the 8 → 16 kHz upsampler and the 16 kHz audio.
struct NeuralScratch {
    upsampler: Option<Resampler>,
    audio: Vec<f32>,
}

thread_local! {
    static NEURAL: RefCell<Option<NeuralScratch>> = const { RefCell::new(None) };
}

impl NeuralScratch {
    fn new() -> Self {
        Self {
            upsampler: Resampler::new(8000, 16_000).ok(),
            audio: Vec::with_capacity(ms_to_samples(MAX_ANALYSIS_MS + 40, 16_000) as usize),
        }
    }

    /// The segment `older ‖ newer` at 16 kHz, full scale ±1.0, time-aligned.
    fn resample_to_16k(&mut self, older: &[i16], newer: &[i16], sample_rate: u32) -> &[f32] {
        self.audio.clear();
        let audio = &mut self.audio;
        match (sample_rate, self.upsampler.as_mut()) {
            (8000, Some(up)) => {
                up.reset();
                let mut skip = up.delay_samples();
                let mut take = |frame: &[i16]| {
                    let from = skip.min(frame.len());
                    skip -= from;
                    audio.extend(frame[from..].iter().map(|&s| f32::from(s) / 32768.0));
                };
                up.push(older, &mut take);
                up.push(newer, &mut take);
                up.flush(&mut take);
                audio.truncate((older.len() + newer.len()) * 2);
            }
            _ => audio.extend(older.iter().chain(newer).map(|&s| f32::from(s) / 32768.0)),
        }
        &self.audio
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn history_keeps_the_latest_samples() {
        let mut history = History::new(5);
        history.push(&[1, 2, 3]);
        assert_eq!(history.last(2), (&[2, 3][..], &[][..]));
        history.push(&[4, 5, 6, 7]);
        let (a, b) = history.last(5);
        assert_eq!([a, b].concat(), [3, 4, 5, 6, 7]);
        history.push(&[8, 9, 10, 11, 12, 13]);
        let (a, b) = history.last(9);
        assert_eq!([a, b].concat(), [9, 10, 11, 12, 13]);
    }

    /// A 20 ms frame at 8 kHz: a loud tone, or silence.
    fn frame(loud: bool) -> Vec<i16> {
        (0..160)
            .map(|i| {
                if loud {
                    ((i % 16) as i16 - 8) * 1500
                } else {
                    0
                }
            })
            .collect()
    }

    #[test]
    fn a_short_silence_inside_speech_is_a_pause_and_speech_after_it_a_resume() {
        let config = VadConfig {
            neural: false,
            ..VadConfig::default()
        };
        let mut vad = CascadeVad::new(config, 8000).unwrap().with_pause_after(200);
        let mut events = Vec::new();
        let mut feed = |vad: &mut CascadeVad, loud: bool, frames: usize| {
            for _ in 0..frames {
                if let Some(event) = vad.process(&frame(loud)) {
                    events.push(event);
                }
            }
        };
        feed(&mut vad, false, 25); // the energy floor settles
        feed(&mut vad, true, 30);
        feed(&mut vad, false, 15); // 300 ms: a pause, not the end
        feed(&mut vad, true, 10);
        feed(&mut vad, false, 30); // 600 ms: the end
        let kinds: Vec<&str> = events
            .iter()
            .map(|e| match e {
                VadEvent::Onset { .. } => "onset",
                VadEvent::OnsetWithdrawn => "withdrawn",
                VadEvent::SpeechStart { .. } => "start",
                VadEvent::Pause { .. } => "pause",
                VadEvent::Resume { .. } => "resume",
                VadEvent::SpeechEnd { .. } => "end",
            })
            .collect();
        assert_eq!(kinds, ["onset", "start", "pause", "resume", "pause", "end"]);
        let (VadEvent::Pause { at_ms: paused }, VadEvent::Resume { at_ms: resumed }) =
            (events[2], events[3])
        else {
            unreachable!()
        };
        // The tone stops at 1100 ms (the energy detector may hold one frame) and resumes at 1400.
        assert!((1100..=1120).contains(&paused), "{paused}");
        assert_eq!(resumed, 1400);
    }

    #[test]
    fn a_pause_as_long_as_the_end_silence_is_no_pause() {
        let vad = CascadeVad::new(VadConfig::default(), 8000)
            .unwrap()
            .with_pause_after(500);
        assert_eq!(vad.pause_ms, None);
    }

    #[test]
    fn rejects_other_rates() {
        assert_eq!(
            CascadeVad::new(VadConfig::default(), 44_100).err(),
            Some(VadError::UnsupportedRate(44_100))
        );
    }
}

#[cfg(test)]
#[path = "cascade_clip_tests.rs"]
mod clip_tests;
