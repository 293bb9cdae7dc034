//! The fake STT providers' ears: audio bytes in, speech spans on the audio timeline out.
//!
//! A fake that answered on a timer would prove nothing about timing; one that listens does. The
//! detector decodes what a client sends (μ-law, A-law, PCM16), measures energy per 10 ms window,
//! and reports where speech starts and how long it has been silent since, all in milliseconds
//! of *audio* — so a caller streaming a WAV in real time gets provider-like timing, and a test
//! streaming faster than real time gets the same answers sooner.

use crate::audio::Encoding;
use crate::audio::g711::{alaw_decode, mulaw_decode};

/// Length of one analysis window.
pub const WINDOW_MS: u64 = 10;

/// How loud is speech, and for how long before it counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DetectorConfig {
    /// RMS amplitude (of 32767) above which a window is voiced. 500 ≈ −36 dBFS: well above a
    /// phone line's noise floor, well below speech.
    pub threshold_rms: u16,
    /// Voiced time in a row before speech is declared (clicks and pops are shorter).
    pub onset_ms: u32,
}

impl Default for DetectorConfig {
    fn default() -> Self {
        Self {
            threshold_rms: 500,
            onset_ms: 40,
        }
    }
}

/// What one window showed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Audio time at the end of the window.
    pub end_ms: u64,
    pub voiced: bool,
    /// Speech was declared in this window; it began at this audio time.
    pub onset_ms: Option<u64>,
}

/// A span of speech in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Span {
    pub start_ms: u64,
    /// End of the last voiced window.
    pub last_voiced_ms: u64,
}

/// Energy-based speech detector over a stream of encoded audio.
#[derive(Debug)]
pub struct SpeechDetector {
    encoding: Option<Encoding>,
    channels: u32,
    samples_per_window: u32,
    /// Mean-square threshold.
    threshold_sq: u64,
    onset_windows: u32,
    sum_sq: u64,
    in_window: u32,
    windows: u64,
    voiced_run: u32,
    span: Option<Span>,
    /// Odd byte of a PCM16 sample split across two messages.
    carry: Option<u8>,
    /// Channel of the next sample (only channel 0 is analysed).
    channel: u32,
}

impl SpeechDetector {
    /// `encoding: None` is audio the fake cannot decode (it hears silence).
    pub fn new(
        encoding: Option<Encoding>,
        sample_rate: u32,
        channels: u32,
        config: DetectorConfig,
    ) -> Self {
        let threshold = u64::from(config.threshold_rms);
        Self {
            encoding,
            channels: channels.max(1),
            samples_per_window: (sample_rate as u64 * WINDOW_MS / 1000).max(1) as u32,
            threshold_sq: threshold * threshold,
            onset_windows: (u64::from(config.onset_ms).div_ceil(WINDOW_MS)).max(1) as u32,
            sum_sq: 0,
            in_window: 0,
            windows: 0,
            voiced_run: 0,
            span: None,
            carry: None,
            channel: 0,
        }
    }

    /// Audio time analysed so far.
    pub fn now_ms(&self) -> u64 {
        self.windows * WINDOW_MS
    }

    /// The speech span in progress, if any.
    pub fn span(&self) -> Option<Span> {
        self.span
    }

    /// Silence since the end of the span's last voiced window (0 without a span).
    pub fn silence_ms(&self) -> u64 {
        self.span
            .map(|s| self.now_ms().saturating_sub(s.last_voiced_ms))
            .unwrap_or(0)
    }

    /// The consumer has closed the utterance: the next speech is a new onset.
    pub fn end_span(&mut self) {
        self.span = None;
        self.voiced_run = 0;
    }

    /// Decodes `bytes` and calls `on_window` for every completed window.
    pub fn push(&mut self, bytes: &[u8], mut on_window: impl FnMut(&mut Self, Window)) {
        let Some(encoding) = self.encoding else {
            // Undecodable audio still advances the timeline, as silence.
            return;
        };
        match encoding {
            Encoding::Mulaw => {
                for &b in bytes {
                    self.sample(mulaw_decode(b), &mut on_window);
                }
            }
            Encoding::Alaw => {
                for &b in bytes {
                    self.sample(alaw_decode(b), &mut on_window);
                }
            }
            Encoding::Pcm16 => {
                let mut rest = bytes;
                if let Some(low) = self.carry.take()
                    && let Some((&high, tail)) = rest.split_first()
                {
                    self.sample(i16::from_le_bytes([low, high]), &mut on_window);
                    rest = tail;
                }
                let mut pairs = rest.chunks_exact(2);
                for pair in &mut pairs {
                    self.sample(i16::from_le_bytes([pair[0], pair[1]]), &mut on_window);
                }
                self.carry = pairs.remainder().first().copied();
            }
        }
    }

    fn sample(&mut self, sample: i16, on_window: &mut impl FnMut(&mut Self, Window)) {
        // Only the first channel is listened to. No division per sample: this runs for every
        // sample of every call a load test places.
        if self.channels > 1 {
            let channel = self.channel;
            self.channel += 1;
            if self.channel == self.channels {
                self.channel = 0;
            }
            if channel != 0 {
                return;
            }
        }
        let s = i64::from(sample);
        self.sum_sq += (s * s) as u64;
        self.in_window += 1;
        if self.in_window < self.samples_per_window {
            return;
        }
        let voiced = self.sum_sq / u64::from(self.samples_per_window) > self.threshold_sq;
        self.sum_sq = 0;
        self.in_window = 0;
        self.windows += 1;
        let end_ms = self.now_ms();
        let mut onset_ms = None;
        if voiced {
            self.voiced_run += 1;
            match &mut self.span {
                Some(span) => span.last_voiced_ms = end_ms,
                None if self.voiced_run >= self.onset_windows => {
                    let start_ms = end_ms - u64::from(self.voiced_run) * WINDOW_MS;
                    self.span = Some(Span {
                        start_ms,
                        last_voiced_ms: end_ms,
                    });
                    onset_ms = Some(start_ms);
                }
                None => {}
            }
        } else {
            self.voiced_run = 0;
        }
        on_window(
            self,
            Window {
                end_ms,
                voiced,
                onset_ms,
            },
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::g711::mulaw_encode;

    /// `ms` of a 300 Hz tone (amplitude 8000) or silence, as μ-law 8 kHz.
    fn mulaw(ms: u32, loud: bool) -> Vec<u8> {
        (0..ms * 8)
            .map(|i| {
                let t = i as f32 / 8000.0;
                let s = if loud {
                    (8000.0 * (2.0 * std::f32::consts::PI * 300.0 * t).sin()) as i16
                } else {
                    0
                };
                mulaw_encode(s)
            })
            .collect()
    }

    #[test]
    fn finds_onset_and_measures_silence() {
        let mut d = SpeechDetector::new(Some(Encoding::Mulaw), 8000, 1, DetectorConfig::default());
        let mut onsets = Vec::new();
        let mut audio = mulaw(200, false);
        audio.extend(mulaw(300, true));
        audio.extend(mulaw(250, false));
        // Arbitrary message sizes: the timeline must not depend on them.
        for chunk in audio.chunks(137) {
            d.push(chunk, |_, w| {
                if let Some(at) = w.onset_ms {
                    onsets.push(at);
                }
            });
        }
        assert_eq!(onsets, vec![200]);
        assert_eq!(d.now_ms(), 750);
        let span = d.span().unwrap();
        assert_eq!(span.start_ms, 200);
        assert_eq!(span.last_voiced_ms, 500);
        assert_eq!(d.silence_ms(), 250);
        d.end_span();
        assert_eq!(d.silence_ms(), 0);
    }

    #[test]
    fn ignores_clicks_and_handles_split_pcm_samples() {
        let mut d =
            SpeechDetector::new(Some(Encoding::Pcm16), 16_000, 1, DetectorConfig::default());
        let click: Vec<u8> = (0..160).flat_map(|_| 20_000i16.to_le_bytes()).collect();
        let silence = vec![0u8; 3200];
        let mut stream = Vec::new();
        stream.extend(&click); // 10 ms: too short to be speech
        stream.extend(&silence);
        let mut onsets = 0;
        for chunk in stream.chunks(333) {
            d.push(chunk, |_, w| onsets += usize::from(w.onset_ms.is_some()));
        }
        assert_eq!(onsets, 0);
        assert_eq!(d.now_ms(), 110);
    }
}
