//! Call recordings: with `assistant_recording`, a call is written as a two-channel WAV (caller
//! left, agent right) in `recordings_dir`, named by the call id, while it happens; kept
//! `recording_retention_days` and served by `GET /call/recording/{call_id}`.
//!
//! `tap.rs` is the per-frame end the reader and writer hold, `mixer.rs` aligns the two sides on
//! the call's clock, `wav_file.rs` is the task that writes the file. This file knows where the
//! recordings are and removes the old ones.

pub mod mixer;
pub mod tap;
pub mod wav_file;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::Instrument;

pub use mixer::Side;
pub use tap::RecordingTap;
pub use wav_file::Outcome;

use crate::audio::AudioFormat;

/// Frames that may wait for the recording task: about 0.6 s of both sides.
const QUEUE: usize = 64;
/// How often old recordings are looked for.
const SWEEP_EVERY: Duration = Duration::from_secs(3600);

/// Where recordings live, and for how long.
#[derive(Debug, Clone)]
pub struct Recordings {
    dir: PathBuf,
    retention: Option<Duration>,
}

/// A call's recording in progress: one tap per side and the task writing the file.
pub struct Recording {
    pub caller: RecordingTap,
    pub agent: RecordingTap,
    pub task: JoinHandle<Outcome>,
}

impl Recordings {
    /// `retention_days` 0 keeps recordings until someone deletes them.
    pub fn new(dir: impl Into<PathBuf>, retention_days: u32) -> Self {
        Self {
            dir: dir.into(),
            retention: (retention_days > 0)
                .then(|| Duration::from_secs(u64::from(retention_days) * 86_400)),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The file of a call's recording. Call ids are the server's own UUIDs, looked up in the
    /// store before a path is made from one.
    pub fn path_of(&self, call_id: &str) -> PathBuf {
        self.dir.join(format!("{call_id}.wav"))
    }

    /// Whether a call has a recording on this node.
    pub async fn exists(&self, call_id: &str) -> bool {
        tokio::fs::metadata(self.path_of(call_id))
            .await
            .is_ok_and(|m| m.is_file())
    }

    /// Starts recording a call whose audio (both sides) is in `format`, on a clock that
    /// started at `start`.
    pub fn start(&self, call_id: &str, format: AudioFormat, start: Instant) -> Recording {
        let (tx, rx) = mpsc::channel(QUEUE);
        let caller = RecordingTap::new(tx.clone(), Side::Caller, start, format);
        let agent = RecordingTap::new(tx, Side::Agent, start, format);
        let dir = self.dir.clone();
        let path = self.path_of(call_id);
        let open = move || {
            std::fs::create_dir_all(&dir)?;
            std::fs::File::create(&path)
        };
        let task = tokio::spawn(
            async move {
                let outcome = wav_file::record(rx, format, open).await;
                match &outcome {
                    Outcome::Complete { samples } => {
                        tracing::debug!(samples, "recording written");
                    }
                    Outcome::Failed { samples, error } => {
                        tracing::warn!(samples, error, "recording stopped; the call went on");
                    }
                }
                outcome
            }
            .in_current_span(),
        );
        Recording {
            caller,
            agent,
            task,
        }
    }

    /// Removes recordings older than the retention. Answers how many went.
    pub async fn sweep(&self) -> usize {
        let Some(retention) = self.retention else {
            return 0;
        };
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || sweep_dir(&dir, retention, SystemTime::now()))
            .await
            .unwrap_or(0)
    }

    /// Sweeps now and then every hour, for the life of the server.
    pub fn spawn_sweeper(self) -> Option<JoinHandle<()>> {
        self.retention?;
        Some(tokio::spawn(async move {
            let mut every = tokio::time::interval(SWEEP_EVERY);
            loop {
                every.tick().await;
                let removed = self.sweep().await;
                if removed > 0 {
                    tracing::info!(removed, "recordings past their retention removed");
                }
            }
        }))
    }
}

fn sweep_dir(dir: &Path, retention: Duration, now: SystemTime) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let mut removed = 0;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "wav") {
            continue;
        }
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|modified| now.duration_since(modified).unwrap_or_default() > retention);
        if old {
            match std::fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "old recording not removed")
                }
            }
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_wav_files_past_the_retention_go() {
        let dir = std::env::temp_dir().join(format!("voxbridge-sweep-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(&dir).unwrap();
        for name in ["a.wav", "b.wav", "notes.txt"] {
            std::fs::write(dir.join(name), b"x").unwrap();
        }
        let day = Duration::from_secs(86_400);
        assert_eq!(sweep_dir(&dir, day, SystemTime::now()), 0);
        let later = SystemTime::now() + 2 * day;
        assert_eq!(sweep_dir(&dir, day, later), 2);
        assert!(dir.join("notes.txt").exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn zero_days_keeps_everything() {
        assert!(Recordings::new("x", 0).retention.is_none());
        assert_eq!(
            Recordings::new("x", 2).retention,
            Some(Duration::from_secs(2 * 86_400))
        );
    }
}
