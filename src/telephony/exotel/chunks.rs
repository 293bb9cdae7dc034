//! Exotel's size rules for the audio we send: a chunk is at least 100 ms and a whole multiple of
//! 20 ms, or it plays with gaps. The call's writer sends 20 ms frames; the sink gathers them here
//! (see `stream.rs` for what that costs in latency and how marks close a chunk early).

use bytes::{Bytes, BytesMut};

use crate::audio::AudioFormat;

/// The smallest chunk Exotel wants, in milliseconds.
pub const MIN_CHUNK_MS: u32 = 100;
/// Chunks are whole multiples of this many milliseconds.
pub const CHUNK_STEP_MS: u32 = 20;

/// What the sink batches: audio waiting to become a chunk. Separate from the socket so the
/// rules can be tested.
#[derive(Debug)]
pub struct ChunkBuffer {
    waiting: BytesMut,
    min_bytes: usize,
    step_bytes: usize,
}

impl ChunkBuffer {
    pub fn new(format: AudioFormat) -> Self {
        let step_bytes = format.bytes_per_ms(CHUNK_STEP_MS).max(2);
        Self {
            waiting: BytesMut::with_capacity(step_bytes * 10),
            min_bytes: format.bytes_per_ms(MIN_CHUNK_MS).max(step_bytes),
            step_bytes,
        }
    }

    /// Adds audio; answers a chunk once at least 100 ms (whole 20 ms steps) are waiting.
    pub fn push(&mut self, audio: &[u8]) -> Option<Bytes> {
        self.waiting.extend_from_slice(audio);
        if self.waiting.len() < self.min_bytes {
            return None;
        }
        let whole = self.waiting.len() / self.step_bytes * self.step_bytes;
        Some(self.waiting.split_to(whole).freeze())
    }

    /// Everything waiting, padded with silence to a whole 20 ms (before a mark or the close).
    pub fn flush(&mut self) -> Option<Bytes> {
        if self.waiting.is_empty() {
            return None;
        }
        let padded = self.waiting.len().div_ceil(self.step_bytes) * self.step_bytes;
        self.waiting.resize(padded, 0);
        Some(self.waiting.split().freeze())
    }

    /// Drops what is waiting (a clear).
    pub fn drop_waiting(&mut self) {
        self.waiting.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::Encoding;

    const PCM8K: AudioFormat = AudioFormat::new(Encoding::Pcm16, 8000);

    #[test]
    fn outbound_chunks_are_100_ms_and_whole_20_ms_steps() {
        let mut c = ChunkBuffer::new(PCM8K);
        let frame = [1u8; 320];
        for _ in 0..4 {
            assert!(c.push(&frame).is_none());
        }
        let chunk = c.push(&frame).unwrap();
        assert_eq!(chunk.len(), 1600);
        // A short frame is carried into the next chunk, never sent alone.
        assert!(c.push(&[2u8; 100]).is_none());
        for _ in 0..4 {
            assert!(c.push(&frame).is_none());
        }
        let chunk = c.push(&frame).unwrap();
        assert_eq!(chunk.len(), 1600, "whole 20 ms steps only");
        // The 100-byte remainder goes out before a mark, padded to 320 bytes with silence.
        let tail = c.flush().unwrap();
        assert_eq!(tail.len(), 320);
        assert!(tail[100..].iter().all(|&b| b == 0));
        assert!(c.flush().is_none());
        c.push(&frame);
        c.drop_waiting();
        assert!(c.flush().is_none());
        // 16 kHz: 640-byte steps, 3200-byte minimum.
        let mut c = ChunkBuffer::new(AudioFormat::PCM16_16K);
        for _ in 0..4 {
            assert!(c.push(&[0u8; 640]).is_none());
        }
        assert_eq!(c.push(&[0u8; 640]).unwrap().len(), 3200);
    }
}
