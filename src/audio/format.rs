//! How audio bytes are to be read: the encoding and the sample rate. Every stage that moves
//! audio (transports, STT, TTS) names its format with these types, so a pass-through (Twilio's
//! μ-law 8 kHz straight to Deepgram) is a comparison, not a convention.

use std::fmt;

/// Sample encoding of raw, headerless mono audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// G.711 μ-law, one byte per sample.
    Mulaw,
    /// G.711 A-law, one byte per sample.
    Alaw,
    /// Signed 16-bit little-endian PCM, two bytes per sample.
    Pcm16,
}

impl Encoding {
    pub fn bytes_per_sample(self) -> usize {
        match self {
            Encoding::Mulaw | Encoding::Alaw => 1,
            Encoding::Pcm16 => 2,
        }
    }
}

/// An encoding at a sample rate (always mono).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AudioFormat {
    pub encoding: Encoding,
    pub sample_rate: u32,
}

impl AudioFormat {
    /// Telephony's native format: G.711 μ-law at 8 kHz (Twilio, Plivo, Exotel).
    pub const MULAW_8K: AudioFormat = AudioFormat {
        encoding: Encoding::Mulaw,
        sample_rate: 8000,
    };
    pub const PCM16_16K: AudioFormat = AudioFormat {
        encoding: Encoding::Pcm16,
        sample_rate: 16_000,
    };

    pub const fn new(encoding: Encoding, sample_rate: u32) -> Self {
        Self {
            encoding,
            sample_rate,
        }
    }

    /// Bytes in `ms` milliseconds of audio.
    pub fn bytes_per_ms(self, ms: u32) -> usize {
        self.sample_rate as usize * ms as usize / 1000 * self.encoding.bytes_per_sample()
    }

    /// Milliseconds of audio in `bytes` bytes (rounded down).
    pub fn duration_ms(self, bytes: usize) -> u64 {
        let samples = bytes / self.encoding.bytes_per_sample();
        samples as u64 * 1000 / u64::from(self.sample_rate)
    }
}

impl fmt::Display for AudioFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = match self.encoding {
            Encoding::Mulaw => "mulaw",
            Encoding::Alaw => "alaw",
            Encoding::Pcm16 => "pcm16",
        };
        write!(f, "{name}@{}Hz", self.sample_rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn twenty_ms_sizes() {
        assert_eq!(AudioFormat::MULAW_8K.bytes_per_ms(20), 160);
        assert_eq!(AudioFormat::PCM16_16K.bytes_per_ms(20), 640);
        assert_eq!(
            AudioFormat::new(Encoding::Pcm16, 22_050).bytes_per_ms(20),
            882
        );
        assert_eq!(AudioFormat::MULAW_8K.duration_ms(8000), 1000);
    }
}
