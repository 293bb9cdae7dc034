//! The unit of audio that moves between pipeline stages: PCM16 samples at a known rate.
//!
//! Everything inside voxbridge works on 20 ms frames (the telephony packet size: 160 μ-law bytes
//! at 8 kHz), so stages agree on timing without negotiating. A frame owns its samples so it can
//! cross a channel; producers that want to avoid an allocation per frame reuse a frame's buffer
//! with [`Frame::samples_mut`] / [`Frame::fill_from`] or hand out `&[i16]` directly (the
//! resampler does).

use super::g711;

/// Length of a frame unless said otherwise.
pub const FRAME_MS: u32 = 20;

/// Samples in `ms` milliseconds at `sample_rate` (rounded down).
pub const fn samples_for_ms(sample_rate: u32, ms: u32) -> usize {
    (sample_rate as u64 * ms as u64 / 1000) as usize
}

/// Mono PCM16 audio at a sample rate; 20 ms of it by default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    samples: Vec<i16>,
    sample_rate: u32,
}

impl Frame {
    /// Wraps samples (any length) at `sample_rate`.
    pub fn new(samples: Vec<i16>, sample_rate: u32) -> Self {
        Self {
            samples,
            sample_rate,
        }
    }

    /// A 20 ms frame of silence.
    pub fn silence(sample_rate: u32) -> Self {
        Self::silence_ms(sample_rate, FRAME_MS)
    }

    /// `ms` milliseconds of silence.
    pub fn silence_ms(sample_rate: u32, ms: u32) -> Self {
        Self::new(vec![0; samples_for_ms(sample_rate, ms)], sample_rate)
    }

    /// Decodes a μ-law payload (Twilio's 8 kHz media) into a new frame.
    pub fn from_mulaw(bytes: &[u8], sample_rate: u32) -> Self {
        let mut samples = Vec::with_capacity(bytes.len());
        g711::decode_mulaw_into(bytes, &mut samples);
        Self::new(samples, sample_rate)
    }

    /// Reads little-endian PCM16 bytes into a new frame (an odd trailing byte is ignored).
    pub fn from_pcm16_le(bytes: &[u8], sample_rate: u32) -> Self {
        let samples = bytes
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect();
        Self::new(samples, sample_rate)
    }

    /// Replaces the samples with `samples`, keeping the buffer (no allocation once it is big
    /// enough).
    pub fn fill_from(&mut self, samples: &[i16], sample_rate: u32) {
        self.samples.clear();
        self.samples.extend_from_slice(samples);
        self.sample_rate = sample_rate;
    }

    pub fn samples(&self) -> &[i16] {
        &self.samples
    }

    pub fn samples_mut(&mut self) -> &mut Vec<i16> {
        &mut self.samples
    }

    pub fn into_samples(self) -> Vec<i16> {
        self.samples
    }

    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    pub fn len(&self) -> usize {
        self.samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// Duration in whole milliseconds.
    pub fn duration_ms(&self) -> u32 {
        (self.samples.len() as u64 * 1000 / u64::from(self.sample_rate.max(1))) as u32
    }

    /// Encodes the samples as μ-law into `out` (cleared first).
    pub fn encode_mulaw_into(&self, out: &mut Vec<u8>) {
        g711::encode_mulaw_into(&self.samples, out);
    }

    /// Appends the samples as little-endian PCM16 bytes to `out`.
    pub fn write_pcm16_le(&self, out: &mut Vec<u8>) {
        out.reserve(self.samples.len() * 2);
        for s in &self.samples {
            out.extend_from_slice(&s.to_le_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twenty_ms_frames() {
        assert_eq!(Frame::silence(8000).len(), 160);
        assert_eq!(Frame::silence(16_000).len(), 320);
        assert_eq!(Frame::silence(22_050).len(), 441);
        assert_eq!(Frame::silence(44_100).duration_ms(), 20);
        assert_eq!(samples_for_ms(48_000, 20), 960);
    }

    #[test]
    fn codec_round_trips() {
        let frame = Frame::from_mulaw(&[0xFF, 0x80, 0x00], 8000);
        assert_eq!(frame.samples(), &[0, 32124, -32124]);
        let mut mulaw = Vec::new();
        frame.encode_mulaw_into(&mut mulaw);
        assert_eq!(mulaw, [0xFF, 0x80, 0x00]);
        let mut pcm = Vec::new();
        frame.write_pcm16_le(&mut pcm);
        assert_eq!(Frame::from_pcm16_le(&pcm, 8000), frame);
    }
}
