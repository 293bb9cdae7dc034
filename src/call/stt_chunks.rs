//! Caller audio gathered into larger STT messages. A telephony stream brings a frame every 20 ms;
//! writing each to the STT socket as it comes costs a task wake-up, a WebSocket message and a
//! syscall per frame on our side, and as much again at the provider. Gathering `stt_chunk_ms`
//! of audio per message divides all of that (80 ms: by four) at the cost of the words arriving
//! up to one chunk later. The reader flushes the chunk at every change the VAD hears (an onset,
//! a pause, the end of speech) and before it asks for a final, so the end of a turn never waits
//! for a chunk to fill: only interim words do.

use bytes::{Bytes, BytesMut};

/// Bytes reserved at a time: several chunks share one allocation.
const BLOCK_BYTES: usize = 8 * 1024;

/// The audio of the chunk being gathered.
pub struct SttChunker {
    buffer: BytesMut,
    /// A chunk is sent once it holds this many bytes.
    target: usize,
}

impl SttChunker {
    /// Chunks of `target` bytes (at least one byte: 0 would send every frame alone, as 1 does).
    pub fn new(target: usize) -> Self {
        let target = target.max(1);
        Self {
            buffer: BytesMut::with_capacity(BLOCK_BYTES.max(target)),
            target,
        }
    }

    /// Adds a frame; answers the chunk when it is full. A frame that is a chunk by itself with
    /// nothing gathered before it (20 ms chunks) is answered as it came, without a copy.
    pub fn push(&mut self, audio: Bytes) -> Option<Bytes> {
        if self.buffer.is_empty() && audio.len() >= self.target {
            return Some(audio);
        }
        if self.buffer.capacity() - self.buffer.len() < audio.len() {
            self.buffer
                .reserve(BLOCK_BYTES.max(self.target + audio.len()));
        }
        self.buffer.extend_from_slice(&audio);
        (self.buffer.len() >= self.target).then(|| self.buffer.split().freeze())
    }

    /// The audio gathered so far, if any.
    pub fn take(&mut self) -> Option<Bytes> {
        (!self.buffer.is_empty()).then(|| self.buffer.split().freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(value: u8, len: usize) -> Bytes {
        Bytes::from(vec![value; len])
    }

    #[test]
    fn frames_become_chunks_of_the_target_size_in_order() {
        let mut chunker = SttChunker::new(480);
        let chunks: Vec<Bytes> = (0..7u8)
            .filter_map(|i| chunker.push(frame(i, 160)))
            .collect();
        assert_eq!(chunks.len(), 2);
        assert_eq!(&chunks[0][..], [[0u8; 160], [1; 160], [2; 160]].concat());
        assert_eq!(&chunks[1][..], [[3u8; 160], [4; 160], [5; 160]].concat());
        let rest = chunker.take().expect("one frame gathered");
        assert_eq!(&rest[..], [6u8; 160]);
        assert!(chunker.take().is_none(), "taken once");
    }

    #[test]
    fn a_frame_that_is_a_chunk_by_itself_passes_whole() {
        let mut chunker = SttChunker::new(160);
        let audio = frame(1, 160);
        let out = chunker.push(audio.clone()).expect("a chunk by itself");
        assert_eq!(out.as_ptr(), audio.as_ptr(), "not copied");
        assert!(chunker.take().is_none());
        // Behind a partial frame it is gathered, so the order holds.
        assert!(chunker.push(frame(1, 100)).is_none());
        assert_eq!(chunker.push(frame(2, 160)).expect("full").len(), 260);
    }

    #[test]
    fn chunks_stay_intact_while_the_buffer_is_reused() {
        let mut chunker = SttChunker::new(640);
        let mut chunks = Vec::new();
        for i in 0..40u8 {
            chunks.extend(chunker.push(frame(i, 320)));
        }
        assert_eq!(chunks.len(), 20);
        for (n, chunk) in chunks.iter().enumerate() {
            let first = 2 * n as u8;
            assert!(chunk[..320].iter().all(|&x| x == first));
            assert!(chunk[320..].iter().all(|&x| x == first + 1));
        }
    }
}
