//! What the simulated caller says: μ-law 8 kHz mono, the format Twilio streams, held in `Bytes`
//! so two thousand callers saying the same clip share one buffer.

use std::path::Path;
use std::time::Duration;

use bytes::Bytes;

use crate::audio::g711::mulaw_encode;

/// Bytes of μ-law per millisecond at 8 kHz.
pub const BYTES_PER_MS: usize = 8;
/// One Twilio media frame: 20 ms.
pub const FRAME_BYTES: usize = 160;
/// μ-law silence.
pub const SILENCE: u8 = 0xFF;

/// Audio could not be loaded for the caller.
#[derive(Debug, thiserror::Error)]
pub enum CallerAudioError {
    #[error("cannot read WAV {path}: {source}")]
    Wav {
        path: String,
        #[source]
        source: hound::Error,
    },
    #[error(
        "WAV {path} is {channels} channel(s), {rate} Hz, {bits}-bit {format:?}: the caller needs \
         8000 Hz mono 16-bit PCM (resample it first, e.g. `sox in.wav -r 8000 -c 1 -b 16 out.wav`)"
    )]
    UnsupportedWav {
        path: String,
        channels: u16,
        rate: u32,
        bits: u16,
        format: hound::SampleFormat,
    },
}

/// A clip of caller audio, μ-law 8 kHz mono. Cheap to clone.
#[derive(Clone, PartialEq, Eq)]
pub struct CallerAudio(Bytes);

impl std::fmt::Debug for CallerAudio {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "CallerAudio({} ms)", self.duration().as_millis())
    }
}

impl CallerAudio {
    /// Raw μ-law bytes.
    pub fn from_mulaw(bytes: impl Into<Bytes>) -> Self {
        Self(bytes.into())
    }

    /// PCM16 samples at 8 kHz, encoded once here.
    pub fn from_pcm16(samples: &[i16]) -> Self {
        Self(
            samples
                .iter()
                .map(|&s| mulaw_encode(s))
                .collect::<Vec<_>>()
                .into(),
        )
    }

    /// An 8 kHz mono 16-bit PCM WAV file (no resampling is done: convert other files first).
    pub fn from_wav_file(path: impl AsRef<Path>) -> Result<Self, CallerAudioError> {
        let path = path.as_ref();
        let shown = path.display().to_string();
        let reader = hound::WavReader::open(path).map_err(|source| CallerAudioError::Wav {
            path: shown.clone(),
            source,
        })?;
        Self::from_wav_reader(reader, shown)
    }

    /// An 8 kHz mono 16-bit PCM WAV held in memory.
    pub fn from_wav_bytes(bytes: &[u8]) -> Result<Self, CallerAudioError> {
        let shown = "<memory>".to_owned();
        let reader = hound::WavReader::new(std::io::Cursor::new(bytes)).map_err(|source| {
            CallerAudioError::Wav {
                path: shown.clone(),
                source,
            }
        })?;
        Self::from_wav_reader(reader, shown)
    }

    fn from_wav_reader<R: std::io::Read>(
        reader: hound::WavReader<R>,
        path: String,
    ) -> Result<Self, CallerAudioError> {
        let spec = reader.spec();
        if spec.channels != 1
            || spec.sample_rate != 8000
            || spec.bits_per_sample != 16
            || spec.sample_format != hound::SampleFormat::Int
        {
            return Err(CallerAudioError::UnsupportedWav {
                path,
                channels: spec.channels,
                rate: spec.sample_rate,
                bits: spec.bits_per_sample,
                format: spec.sample_format,
            });
        }
        let mut out = Vec::with_capacity(reader.len() as usize);
        for sample in reader.into_samples::<i16>() {
            let sample = sample.map_err(|source| CallerAudioError::Wav {
                path: path.clone(),
                source,
            })?;
            out.push(mulaw_encode(sample));
        }
        Ok(Self(out.into()))
    }

    /// `duration` of digital silence.
    pub fn silence(duration: Duration) -> Self {
        Self(vec![SILENCE; duration.as_millis() as usize * BYTES_PER_MS].into())
    }

    /// A sine tone: a stand-in for speech where only its presence matters (energy-based VAD, a
    /// fake STT that reacts to non-silence).
    pub fn tone(hz: f32, duration: Duration, amplitude: i16) -> Self {
        let n = duration.as_millis() as usize * BYTES_PER_MS;
        let step = std::f32::consts::TAU * hz / 8000.0;
        Self(
            (0..n)
                .map(|i| mulaw_encode(((i as f32 * step).sin() * f32::from(amplitude)) as i16))
                .collect::<Vec<_>>()
                .into(),
        )
    }

    /// `text` in the TTS fakes' synthetic voice (voiced syllables, silent between words): speech
    /// as a VAD and an energy-listening fake STT hear it, where no recorded clip fits.
    pub fn synthetic_speech(text: &str) -> Self {
        use crate::sim::voice::{DEFAULT_MS_PER_CHAR, SampleEncoding, speak_all};
        Self(speak_all(text, SampleEncoding::Mulaw, 8000, DEFAULT_MS_PER_CHAR).into())
    }

    pub fn as_bytes(&self) -> &Bytes {
        &self.0
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn duration(&self) -> Duration {
        Duration::from_millis((self.0.len() / BYTES_PER_MS) as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(rate: u32, channels: u16, samples: &[i16]) -> Vec<u8> {
        let mut cursor = std::io::Cursor::new(Vec::new());
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut writer = hound::WavWriter::new(&mut cursor, spec).unwrap();
        for &s in samples {
            writer.write_sample(s).unwrap();
        }
        writer.finalize().unwrap();
        cursor.into_inner()
    }

    #[test]
    fn wavs_are_encoded_to_mulaw_without_their_header() {
        let audio = CallerAudio::from_wav_bytes(&wav(8000, 1, &[0, 1000, -1000, 8000])).unwrap();
        assert_eq!(audio.as_bytes().as_ref(), [0xFF, 0xCE, 0x4E, 0xA0]);
    }

    #[test]
    fn other_wav_formats_are_refused_with_advice() {
        let err = CallerAudio::from_wav_bytes(&wav(16000, 1, &[0; 4])).unwrap_err();
        assert!(err.to_string().contains("8000 Hz mono"), "{err}");
        assert!(CallerAudio::from_wav_bytes(&wav(8000, 2, &[0; 4])).is_err());
        assert!(CallerAudio::from_wav_bytes(b"RIFF....not a wav").is_err());
    }

    #[test]
    fn generated_clips_have_their_duration() {
        assert_eq!(CallerAudio::silence(Duration::from_millis(40)).len(), 320);
        let tone = CallerAudio::tone(440.0, Duration::from_millis(100), 8000);
        assert_eq!(tone.duration(), Duration::from_millis(100));
        assert!(tone.as_bytes().iter().any(|&b| b != SILENCE));
        // 65 ms a character, silent between words.
        let speech = CallerAudio::synthetic_speech("leave a message");
        assert_eq!(speech.duration(), Duration::from_millis(15 * 65));
        assert!(speech.as_bytes().iter().any(|&b| b != SILENCE));
        assert!(speech.as_bytes().contains(&SILENCE));
    }
}
