//! The recording task of one call: stamped frames from the two taps are decoded, mixed into
//! stereo (caller left, agent right) and written as a 16-bit WAV as the call goes, in batches
//! of half a second, on the blocking pool, so a slow disk never stalls a runtime thread. The
//! header is brought up to date every few seconds, so a process that dies mid-call leaves a
//! playable file up to then. A write that fails (a full disk) ends the recording, never the
//! call: the task stops, and the taps, finding it gone, stop offering frames.

use std::io::{Seek, Write};

use tokio::sync::mpsc;

use super::mixer::Mixer;
use super::tap::StampedFrame;
use crate::audio::{AudioFormat, Encoding, g711};

/// Audio held back for the later side's frames to join (the agent's are sent ahead of the
/// clock, the caller's arrive with jitter, and frames wait in the task's queue).
const HORIZON_MS: u64 = 500;
/// Mixed audio written at once.
const BATCH_MS: u64 = 500;
/// How often the header is rewritten so the file is valid up to there.
const CHECKPOINT_MS: u64 = 5000;

/// How a recording ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every frame that reached the task was written: this many samples per channel.
    Complete { samples: u64 },
    /// Writing failed (the file could not be created, or the disk filled up): the file holds
    /// what was written before.
    Failed { samples: u64, error: String },
}

/// Runs until both taps are dropped (the call's end), writing into what `open` creates.
pub async fn record<W, F>(
    mut frames: mpsc::Receiver<StampedFrame>,
    format: AudioFormat,
    open: F,
) -> Outcome
where
    W: Write + Seek + Send + 'static,
    F: FnOnce() -> std::io::Result<W> + Send + 'static,
{
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: format.sample_rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let opened = tokio::task::spawn_blocking(move || {
        let file = open().map_err(|e| e.to_string())?;
        hound::WavWriter::new(file, spec).map_err(|e| e.to_string())
    })
    .await;
    let writer = match opened {
        Ok(Ok(writer)) => writer,
        Ok(Err(error)) => return Outcome::Failed { samples: 0, error },
        Err(e) => {
            return Outcome::Failed {
                samples: 0,
                error: e.to_string(),
            };
        }
    };
    let rate = u64::from(format.sample_rate);
    let mut file = Batches {
        writer: Some(writer),
        batch: Vec::with_capacity((BATCH_MS * rate / 1000 * 2) as usize),
        batch_len: (BATCH_MS * rate / 1000 * 2) as usize,
        checkpoint_every: CHECKPOINT_MS * rate / 1000,
        since_checkpoint: 0,
    };
    let mut mixer = Mixer::new(HORIZON_MS * rate / 1000);
    let mut pcm: Vec<i16> = Vec::new();
    let mut piece: Vec<i16> = Vec::new();
    while let Some(frame) = frames.recv().await {
        decode(format.encoding, &frame.audio, &mut pcm);
        let due = frame.at.saturating_sub(mixer.horizon());
        if let Err(error) = file.write_until(&mut mixer, due, &mut piece).await {
            return failed(&mixer, error);
        }
        mixer.push(frame.side, frame.at, pcm.drain(..));
        let due = mixer.due();
        if let Err(error) = file.write_until(&mut mixer, due, &mut piece).await {
            return failed(&mixer, error);
        }
    }
    let end = mixer.end();
    if let Err(error) = file.write_until(&mut mixer, end, &mut piece).await {
        return failed(&mixer, error);
    }
    if let Err(error) = file.finish().await {
        return failed(&mixer, error);
    }
    Outcome::Complete {
        samples: mixer.written(),
    }
}

fn failed(mixer: &Mixer, error: String) -> Outcome {
    metrics::counter!(crate::metrics::RECORDINGS_FAILED).increment(1);
    Outcome::Failed {
        samples: mixer.written(),
        error,
    }
}

/// Mixed audio on its way to the file.
struct Batches<W: Write + Seek> {
    /// Lent to the blocking pool while a batch is written.
    writer: Option<hound::WavWriter<W>>,
    batch: Vec<i16>,
    batch_len: usize,
    checkpoint_every: u64,
    since_checkpoint: u64,
}

impl<W: Write + Seek + Send + 'static> Batches<W> {
    async fn write_until(
        &mut self,
        mixer: &mut Mixer,
        until: u64,
        piece: &mut Vec<i16>,
    ) -> Result<(), String> {
        while mixer.drain_before(until, piece) {
            self.batch.extend_from_slice(piece);
            if self.batch.len() >= self.batch_len {
                self.flush(false).await?;
            }
        }
        Ok(())
    }

    /// Writes the batch on the blocking pool; with `checkpoint` (or when one is due) the header
    /// is brought up to date too.
    async fn flush(&mut self, checkpoint: bool) -> Result<(), String> {
        let Some(mut writer) = self.writer.take() else {
            return Err("the recording already failed".to_owned());
        };
        self.since_checkpoint += (self.batch.len() / 2) as u64;
        let checkpoint = checkpoint || self.since_checkpoint >= self.checkpoint_every;
        if checkpoint {
            self.since_checkpoint = 0;
        }
        let batch = std::mem::take(&mut self.batch);
        let written = tokio::task::spawn_blocking(move || {
            let result = write_batch(&mut writer, &batch, checkpoint);
            (writer, batch, result)
        })
        .await;
        let (writer, mut batch, result) = written.map_err(|e| e.to_string())?;
        result.map_err(|e| e.to_string())?;
        batch.clear();
        self.batch = batch;
        self.writer = Some(writer);
        Ok(())
    }

    async fn finish(&mut self) -> Result<(), String> {
        self.flush(true).await?;
        let writer = self.writer.take().expect("flushed above");
        tokio::task::spawn_blocking(move || writer.finalize())
            .await
            .map_err(|e| e.to_string())?
            .map_err(|e| e.to_string())
    }
}

fn write_batch<W: Write + Seek>(
    writer: &mut hound::WavWriter<W>,
    batch: &[i16],
    checkpoint: bool,
) -> hound::Result<()> {
    if !batch.is_empty() {
        let mut samples = writer.get_i16_writer(batch.len() as u32);
        for &s in batch {
            samples.write_sample(s);
        }
        samples.flush()?;
    }
    if checkpoint {
        writer.flush()?;
    }
    Ok(())
}

fn decode(encoding: Encoding, audio: &[u8], pcm: &mut Vec<i16>) {
    match encoding {
        Encoding::Mulaw => g711::decode_mulaw_into(audio, pcm),
        Encoding::Alaw => g711::decode_alaw_into(audio, pcm),
        Encoding::Pcm16 => {
            pcm.clear();
            pcm.extend(
                audio
                    .chunks_exact(2)
                    .map(|b| i16::from_le_bytes([b[0], b[1]])),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{self, Cursor, SeekFrom};
    use std::sync::{Arc, Mutex};

    use bytes::Bytes;

    use super::*;
    use crate::recording::mixer::Side;

    /// A file in memory that can be read back after the task dropped its handle, and that
    /// fails every write past `limit` bytes, like a full disk.
    #[derive(Clone)]
    struct MemoryFile {
        data: Arc<Mutex<Cursor<Vec<u8>>>>,
        limit: usize,
    }

    impl MemoryFile {
        fn new(limit: usize) -> Self {
            Self {
                data: Arc::default(),
                limit,
            }
        }
        fn bytes(&self) -> Vec<u8> {
            self.data.lock().unwrap().get_ref().clone()
        }
    }

    impl Write for MemoryFile {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            let mut data = self.data.lock().unwrap();
            if data.position() as usize + buf.len() > self.limit {
                return Err(io::Error::new(io::ErrorKind::StorageFull, "disk full"));
            }
            data.write(buf)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Seek for MemoryFile {
        fn seek(&mut self, pos: SeekFrom) -> io::Result<u64> {
            self.data.lock().unwrap().seek(pos)
        }
    }

    fn frame(side: Side, at: u64, byte: u8) -> StampedFrame {
        StampedFrame {
            side,
            at,
            audio: Bytes::from(vec![byte; 160]),
        }
    }

    #[tokio::test]
    async fn caller_left_agent_right_on_one_clock() {
        let file = MemoryFile::new(usize::MAX);
        let (tx, rx) = mpsc::channel(64);
        let opened = file.clone();
        let task = tokio::spawn(record(rx, AudioFormat::MULAW_8K, move || Ok(opened)));
        // 2 s of caller audio; the agent speaks from 1 s to 1.5 s.
        for i in 0..100u64 {
            tx.send(frame(Side::Caller, i * 160, 0x00)).await.unwrap();
            if (50..75).contains(&i) {
                tx.send(frame(Side::Agent, i * 160, 0x80)).await.unwrap();
            }
        }
        drop(tx);
        assert_eq!(task.await.unwrap(), Outcome::Complete { samples: 16_000 });

        let mut reader = hound::WavReader::new(Cursor::new(file.bytes())).unwrap();
        let spec = reader.spec();
        assert_eq!(
            (spec.channels, spec.sample_rate, spec.bits_per_sample),
            (2, 8000, 16)
        );
        let samples: Vec<i16> = reader.samples::<i16>().map(Result::unwrap).collect();
        assert_eq!(samples.len(), 32_000);
        let (loud, quiet) = (g711::mulaw_decode(0x00), g711::mulaw_decode(0x80));
        for (i, pair) in samples.chunks(2).enumerate() {
            assert_eq!(pair[Side::Caller as usize], loud, "caller at {i}");
            let agent = if (8000..12_000).contains(&i) {
                quiet
            } else {
                0
            };
            assert_eq!(pair[Side::Agent as usize], agent, "agent at {i}");
        }
    }

    #[tokio::test]
    async fn a_full_disk_ends_the_recording_and_keeps_what_was_written() {
        // Room for the header and about one second of stereo audio at 8 kHz.
        let file = MemoryFile::new(44 + 40_000);
        let (tx, rx) = mpsc::channel(64);
        let opened = file.clone();
        let task = tokio::spawn(record(rx, AudioFormat::MULAW_8K, move || Ok(opened)));
        let mut refused_at = None;
        for i in 0..500u64 {
            if tx.send(frame(Side::Caller, i * 160, 0x10)).await.is_err() {
                refused_at = Some(i);
                break;
            }
        }
        let refused_at = refused_at.expect("the task stopped taking frames");
        assert!(refused_at < 500);
        let Outcome::Failed { samples, error } = task.await.unwrap() else {
            panic!("the recording failed")
        };
        assert!(error.contains("disk full"), "{error}");
        assert!(samples > 0);
        // Whatever the last checkpoint said, the file's start is intact audio.
        let bytes = file.bytes();
        assert_eq!(&bytes[..4], b"RIFF");
    }

    #[tokio::test]
    async fn a_file_that_cannot_be_created_fails_at_once() {
        let (_tx, rx) = mpsc::channel::<StampedFrame>(1);
        let outcome = record(rx, AudioFormat::MULAW_8K, || {
            Err::<MemoryFile, _>(io::Error::new(io::ErrorKind::PermissionDenied, "read-only"))
        })
        .await;
        assert!(matches!(outcome, Outcome::Failed { samples: 0, .. }));
    }
}
