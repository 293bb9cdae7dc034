//! WAV files in and out (via hound): test assets, filler sounds, call recordings.
//!
//! Only what the pipeline speaks is accepted: mono, 16-bit integer PCM. Anything else is a typed
//! error rather than a silent conversion, so a wrongly made asset is noticed when it is loaded.

use std::io::{Read, Seek, Write};
use std::path::Path;

/// A whole clip in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Wav {
    pub samples: Vec<i16>,
    pub sample_rate: u32,
}

impl Wav {
    /// Duration in whole milliseconds.
    pub fn duration_ms(&self) -> u64 {
        self.samples.len() as u64 * 1000 / u64::from(self.sample_rate.max(1))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WavError {
    #[error("WAV: {0}")]
    Format(#[from] hound::Error),
    #[error("WAV must be mono 16-bit PCM, found {channels} channel(s), {bits}-bit {format:?}")]
    Unsupported {
        channels: u16,
        bits: u16,
        format: hound::SampleFormat,
    },
}

/// Reads a mono 16-bit PCM WAV file.
pub fn read(path: impl AsRef<Path>) -> Result<Wav, WavError> {
    decode(hound::WavReader::open(path)?)
}

/// Reads a mono 16-bit PCM WAV from any reader (e.g. an in-memory `Cursor`).
pub fn read_from<R: Read>(reader: R) -> Result<Wav, WavError> {
    decode(hound::WavReader::new(reader)?)
}

fn decode<R: Read>(reader: hound::WavReader<R>) -> Result<Wav, WavError> {
    let spec = reader.spec();
    if spec.channels != 1
        || spec.bits_per_sample != 16
        || spec.sample_format != hound::SampleFormat::Int
    {
        return Err(WavError::Unsupported {
            channels: spec.channels,
            bits: spec.bits_per_sample,
            format: spec.sample_format,
        });
    }
    let samples = reader
        .into_samples::<i16>()
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Wav {
        samples,
        sample_rate: spec.sample_rate,
    })
}

fn spec(sample_rate: u32) -> hound::WavSpec {
    hound::WavSpec {
        channels: 1,
        sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    }
}

/// Writes mono 16-bit PCM samples to a WAV file.
pub fn write(path: impl AsRef<Path>, samples: &[i16], sample_rate: u32) -> Result<(), WavError> {
    let mut writer = hound::WavWriter::create(path, spec(sample_rate))?;
    write_samples(&mut writer, samples)
}

/// Writes mono 16-bit PCM samples as a WAV to any seekable writer (e.g. a `Cursor<Vec<u8>>`).
pub fn write_to<W: Write + Seek>(
    writer: W,
    samples: &[i16],
    sample_rate: u32,
) -> Result<(), WavError> {
    let mut writer = hound::WavWriter::new(writer, spec(sample_rate))?;
    write_samples(&mut writer, samples)
}

fn write_samples<W: Write + Seek>(
    writer: &mut hound::WavWriter<W>,
    samples: &[i16],
) -> Result<(), WavError> {
    let mut block = writer.get_i16_writer(samples.len() as u32);
    for &s in samples {
        block.write_sample(s);
    }
    block.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    #[test]
    fn round_trips_in_memory_and_on_disk() {
        let samples: Vec<i16> = (0..800)
            .map(|i| ((i * 97) % 20_000 - 10_000) as i16)
            .collect();
        let mut buffer = Cursor::new(Vec::new());
        write_to(&mut buffer, &samples, 8000).unwrap();
        let back = read_from(Cursor::new(buffer.into_inner())).unwrap();
        assert_eq!(
            back,
            Wav {
                samples: samples.clone(),
                sample_rate: 8000
            }
        );
        assert_eq!(back.duration_ms(), 100);

        let path = std::env::temp_dir().join(format!("voxbridge-wav-{}.wav", std::process::id()));
        write(&path, &samples, 16_000).unwrap();
        let back = read(&path).unwrap();
        std::fs::remove_file(&path).ok();
        assert_eq!(back.sample_rate, 16_000);
        assert_eq!(back.samples, samples);
    }

    #[test]
    fn rejects_stereo_and_garbage() {
        let mut buffer = Cursor::new(Vec::new());
        let stereo = hound::WavSpec {
            channels: 2,
            ..spec(8000)
        };
        let mut writer = hound::WavWriter::new(&mut buffer, stereo).unwrap();
        writer.write_sample(0i16).unwrap();
        writer.write_sample(0i16).unwrap();
        writer.finalize().unwrap();
        let err = read_from(Cursor::new(buffer.into_inner())).unwrap_err();
        assert!(
            matches!(err, WavError::Unsupported { channels: 2, .. }),
            "{err}"
        );
        assert!(matches!(
            read_from(&b"not a wav"[..]),
            Err(WavError::Format(_))
        ));
    }

    #[test]
    fn reads_committed_assets() {
        let wav = read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/audio/caller/book_table.wav"
        ))
        .unwrap();
        assert_eq!(wav.sample_rate, 8000);
        assert!(wav.duration_ms() > 2000);
    }
}
