//! Whole samples out of arbitrarily cut audio. Providers cut their streams where it suits them;
//! a PCM16 chunk may end in the middle of a sample. Downstream stages (framing, mixing, μ-law
//! encoding) work on whole samples, so the odd byte is held back and put in front of the next
//! chunk of the same turn.

use base64::Engine;
use base64::engine::general_purpose::STANDARD_PAD_INDIFFERENT;
use bytes::Bytes;

use crate::audio::Encoding;

/// The odd byte of one turn's PCM16 stream (always empty for 8-bit encodings).
#[derive(Debug, Default, Clone)]
pub(crate) struct SampleCarry {
    two_byte_samples: bool,
    pending: Option<u8>,
}

impl SampleCarry {
    pub(crate) fn new(encoding: Encoding) -> Self {
        Self {
            two_byte_samples: encoding.bytes_per_sample() == 2,
            pending: None,
        }
    }

    /// Decodes a base64 audio payload straight into the buffer that becomes the event's
    /// `Bytes` (one allocation, no copy), behind any byte held back from the previous chunk.
    pub(crate) fn decode_base64(&mut self, b64: &[u8]) -> Result<Bytes, base64::DecodeError> {
        let mut buf = Vec::with_capacity(b64.len() / 4 * 3 + 4);
        if let Some(byte) = self.pending {
            buf.push(byte);
        }
        STANDARD_PAD_INDIFFERENT.decode_vec(b64, &mut buf)?;
        self.pending = None;
        self.hold_back_odd_byte(&mut buf);
        Ok(Bytes::from(buf))
    }

    /// Whole samples of a raw chunk: without a held-back byte and with an even length the chunk
    /// passes through untouched; otherwise at most one copy joins the held-back byte.
    pub(crate) fn push(&mut self, chunk: Bytes) -> Bytes {
        if !self.two_byte_samples {
            return chunk;
        }
        match self.pending.take() {
            None if chunk.len().is_multiple_of(2) => chunk,
            None => {
                let cut = chunk.len() - 1;
                self.pending = Some(chunk[cut]);
                chunk.slice(..cut)
            }
            Some(byte) => {
                let mut buf = Vec::with_capacity(chunk.len() + 1);
                buf.push(byte);
                buf.extend_from_slice(&chunk);
                self.hold_back_odd_byte(&mut buf);
                Bytes::from(buf)
            }
        }
    }

    fn hold_back_odd_byte(&mut self, buf: &mut Vec<u8>) {
        if self.two_byte_samples && buf.len() % 2 == 1 {
            self.pending = buf.pop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn odd_pcm16_chunks_become_whole_samples() {
        let audio: Vec<u8> = (0u8..=20).collect();
        let mut carry = SampleCarry::new(Encoding::Pcm16);
        let mut out = Vec::new();
        for piece in [&audio[..3], &audio[3..4], &audio[4..9], &audio[9..]] {
            let b64 = STANDARD_PAD_INDIFFERENT.encode(piece);
            let whole = carry.decode_base64(b64.as_bytes()).unwrap();
            assert_eq!(whole.len() % 2, 0);
            out.extend_from_slice(&whole);
        }
        // 21 bytes: the last odd byte stays held back (half a sample).
        assert_eq!(out, audio[..20]);
    }

    #[test]
    fn raw_chunks_pass_through_when_even() {
        let mut carry = SampleCarry::new(Encoding::Pcm16);
        let chunk = Bytes::from_static(&[1, 2, 3, 4]);
        let out = carry.push(chunk.clone());
        assert_eq!(out.as_ptr(), chunk.as_ptr(), "no copy for an even chunk");
        assert_eq!(&carry.push(Bytes::from_static(&[5, 6, 7]))[..], &[5, 6]);
        assert_eq!(
            &carry.push(Bytes::from_static(&[8, 9, 10]))[..],
            &[7, 8, 9, 10]
        );
    }

    #[test]
    fn mulaw_has_no_carry() {
        let mut carry = SampleCarry::new(Encoding::Mulaw);
        assert_eq!(carry.push(Bytes::from_static(&[1, 2, 3])).len(), 3);
        let b64 = STANDARD_PAD_INDIFFERENT.encode([1u8, 2, 3]);
        assert_eq!(carry.decode_base64(b64.as_bytes()).unwrap().len(), 3);
    }

    #[test]
    fn bad_base64_keeps_the_carry() {
        let mut carry = SampleCarry::new(Encoding::Pcm16);
        let b64 = STANDARD_PAD_INDIFFERENT.encode([1u8, 2, 3]);
        assert_eq!(&carry.decode_base64(b64.as_bytes()).unwrap()[..], &[1, 2]);
        assert!(carry.decode_base64(b"!!not base64!!").is_err());
        let b64 = STANDARD_PAD_INDIFFERENT.encode([4u8]);
        assert_eq!(&carry.decode_base64(b64.as_bytes()).unwrap()[..], &[3, 4]);
    }
}
