//! WAV files from providers that wrap their PCM (Sarvam's REST `audios[]`, a streamed `wav`
//! codec). The header is not always 44 bytes: writers add `LIST`, `fact` or other chunks before
//! `data`, so the RIFF chunks are walked (with hound for whole files) and the samples are sliced
//! out of the same buffer without copying.

use std::io::Cursor;

use bytes::Bytes;

use super::TtsError;

/// The PCM16 mono samples of a WAV file.
#[derive(Debug)]
pub(crate) struct WavPcm16 {
    pub(crate) sample_rate: u32,
    /// Little-endian PCM16, sliced out of the file's buffer.
    pub(crate) samples: Bytes,
}

/// Parses a complete WAV file holding 16-bit mono PCM.
pub(crate) fn parse_pcm16(file: Bytes) -> Result<WavPcm16, TtsError> {
    let mut cursor = Cursor::new(&file[..]);
    // The reader borrows the cursor; once it is gone the cursor sits on the first data byte.
    let (spec, samples) = {
        let reader = hound::WavReader::new(&mut cursor)
            .map_err(|e| TtsError::Protocol(format!("provider sent an unreadable WAV: {e}")))?;
        (reader.spec(), reader.len() as usize)
    };
    if spec.channels != 1
        || spec.bits_per_sample != 16
        || spec.sample_format != hound::SampleFormat::Int
    {
        return Err(TtsError::Protocol(format!(
            "provider sent a {}-channel {}-bit {:?} WAV; expected mono PCM16",
            spec.channels, spec.bits_per_sample, spec.sample_format
        )));
    }
    let data_len = samples * 2;
    let start = cursor.position() as usize;
    let end = start.saturating_add(data_len).min(file.len());
    let end = end - (end - start) % 2;
    Ok(WavPcm16 {
        sample_rate: spec.sample_rate,
        samples: file.slice(start..end),
    })
}

/// Length of the WAV header at the start of a streamed buffer (up to the first byte of `data`),
/// or `None` if the buffer does not start with a complete RIFF/WAVE header. Streamed WAVs carry
/// placeholder sizes, so only chunk ids and the sizes of the chunks before `data` are trusted.
pub(crate) fn streamed_header_len(buf: &[u8]) -> Option<usize> {
    if buf.len() < 12 || &buf[..4] != b"RIFF" || &buf[8..12] != b"WAVE" {
        return None;
    }
    let mut at = 12;
    while at + 8 <= buf.len() {
        let id = &buf[at..at + 4];
        let len = u32::from_le_bytes([buf[at + 4], buf[at + 5], buf[at + 6], buf[at + 7]]) as usize;
        if id == b"data" {
            return Some(at + 8);
        }
        // Chunks are padded to an even length.
        at = at.checked_add(8)?.checked_add(len + len % 2)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(rate: u32, samples: &[i16], extra: Option<(&[u8; 4], &[u8])>) -> Vec<u8> {
        let mut chunks = Vec::new();
        chunks.extend_from_slice(b"fmt ");
        chunks.extend_from_slice(&16u32.to_le_bytes());
        chunks.extend_from_slice(&1u16.to_le_bytes());
        chunks.extend_from_slice(&1u16.to_le_bytes());
        chunks.extend_from_slice(&rate.to_le_bytes());
        chunks.extend_from_slice(&(rate * 2).to_le_bytes());
        chunks.extend_from_slice(&2u16.to_le_bytes());
        chunks.extend_from_slice(&16u16.to_le_bytes());
        if let Some((id, body)) = extra {
            chunks.extend_from_slice(id);
            chunks.extend_from_slice(&(body.len() as u32).to_le_bytes());
            chunks.extend_from_slice(body);
            if body.len() % 2 == 1 {
                chunks.push(0);
            }
        }
        chunks.extend_from_slice(b"data");
        chunks.extend_from_slice(&((samples.len() * 2) as u32).to_le_bytes());
        for s in samples {
            chunks.extend_from_slice(&s.to_le_bytes());
        }
        let mut file = b"RIFF".to_vec();
        file.extend_from_slice(&((chunks.len() + 4) as u32).to_le_bytes());
        file.extend_from_slice(b"WAVE");
        file.extend_from_slice(&chunks);
        file
    }

    #[test]
    fn plain_header() {
        let file = wav(8000, &[1, -2, 3], None);
        assert_eq!(file.len(), 44 + 6);
        let pcm = parse_pcm16(Bytes::from(file)).unwrap();
        assert_eq!(pcm.sample_rate, 8000);
        assert_eq!(&pcm.samples[..], &[1, 0, 0xFE, 0xFF, 3, 0]);
    }

    #[test]
    fn extra_chunks_before_data_are_skipped() {
        let file = wav(
            22_050,
            &[7, 8],
            Some((b"LIST", b"INFOISFT\x06\x00\x00\x00lavf5\x00")),
        );
        let header = file.len() - 4;
        assert!(header > 44);
        let pcm = parse_pcm16(Bytes::from(file.clone())).unwrap();
        assert_eq!(pcm.sample_rate, 22_050);
        assert_eq!(&pcm.samples[..], &[7, 0, 8, 0]);
        assert_eq!(streamed_header_len(&file), Some(header));
    }

    #[test]
    fn stereo_or_garbage_is_a_protocol_error() {
        assert!(matches!(
            parse_pcm16(Bytes::from_static(b"not a wav file at all, sorry")),
            Err(TtsError::Protocol(_))
        ));
        let mut file = wav(8000, &[1, 2], None);
        file[22] = 2; // channels
        file[32] = 4; // block align
        assert!(matches!(
            parse_pcm16(Bytes::from(file)),
            Err(TtsError::Protocol(_))
        ));
    }

    #[test]
    fn streamed_headers() {
        let mut file = wav(8000, &[1, 2], None);
        // Streaming writers put placeholder sizes in RIFF and data.
        file[4..8].copy_from_slice(&u32::MAX.to_le_bytes());
        file[40..44].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(streamed_header_len(&file), Some(44));
        assert_eq!(streamed_header_len(&file[..30]), None);
        assert_eq!(streamed_header_len(b"\x01\x02\x03"), None);
    }
}
