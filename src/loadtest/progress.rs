//! The live line a load test prints while it runs, on a terminal only (piped output and CI logs
//! stay quiet): time, calls placed and live, turns the server has answered and their p95 by its
//! own histogram, and the generator's late ticks — so a run that goes wrong is seen going wrong,
//! and a generator that cannot keep up says so before the report does.

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::sampler::Sample;
use crate::sim::caller::{LATE_TICKS, WORST_LATE_TICK_US};

const EVERY: Duration = Duration::from_secs(1);

/// The progress task; `placed` is counted by the run as it places calls.
pub struct Progress {
    task: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts printing if standard error is a terminal; otherwise does nothing.
    pub fn start(
        total: usize,
        placed: Arc<AtomicUsize>,
        latest: watch::Receiver<Option<Sample>>,
    ) -> Self {
        if !std::io::stderr().is_terminal() {
            return Self { task: None };
        }
        let (late_at_start, t0) = (LATE_TICKS.load(Ordering::Relaxed), Instant::now());
        let task = tokio::spawn(async move {
            let mut every = tokio::time::interval(EVERY);
            loop {
                every.tick().await;
                let sample = *latest.borrow();
                let line = line(
                    t0.elapsed(),
                    placed.load(Ordering::Relaxed),
                    total,
                    sample.as_ref(),
                    LATE_TICKS.load(Ordering::Relaxed) - late_at_start,
                    WORST_LATE_TICK_US.load(Ordering::Relaxed),
                );
                let mut err = std::io::stderr().lock();
                let _ = write!(err, "\r\x1b[2K{line}");
                let _ = err.flush();
            }
        });
        Self { task: Some(task) }
    }

    /// Stops printing and leaves the terminal on a fresh line for the report.
    pub fn stop(self) {
        if let Some(task) = self.task {
            task.abort();
            eprintln!();
        }
    }
}

fn line(
    elapsed: Duration,
    placed: usize,
    total: usize,
    sample: Option<&Sample>,
    late_ticks: u64,
    worst_late_us: u64,
) -> String {
    let or_dash = |v: Option<String>| v.unwrap_or_else(|| "–".to_owned());
    let live = or_dash(sample.and_then(|s| s.live_calls).map(|n| n.to_string()));
    let turns = or_dash(sample.and_then(|s| s.turns_answered).map(|n| n.to_string()));
    let p95 = or_dash(
        sample
            .and_then(|s| s.voice_to_voice_p95_ms)
            .map(|ms| format!("{ms:.0} ms")),
    );
    let generator = if late_ticks == 0 {
        "on time".to_owned()
    } else {
        format!(
            "{late_ticks} late ticks, worst {:.1} ms",
            worst_late_us as f64 / 1000.0
        )
    };
    format!(
        "{:>6.1} s  placed {placed}/{total}  live {live}  turns answered {turns}  voice-to-voice p95 ≈ {p95} (server)  generator {generator}",
        elapsed.as_secs_f64()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_line_says_what_is_known_and_dashes_the_rest() {
        let none = line(Duration::from_millis(1500), 3, 10, None, 0, 0);
        assert_eq!(
            none,
            "   1.5 s  placed 3/10  live –  turns answered –  voice-to-voice p95 ≈ – (server)  generator on time"
        );
        let sample = Sample {
            at: Instant::now(),
            server: None,
            generator: None,
            live_calls: Some(9),
            turns_answered: Some(27),
            voice_to_voice_p95_ms: Some(662.4),
        };
        let some = line(Duration::from_secs(20), 10, 10, Some(&sample), 4, 12_500);
        assert!(
            some.contains("live 9  turns answered 27  voice-to-voice p95 ≈ 662 ms")
                && some.ends_with("generator 4 late ticks, worst 12.5 ms"),
            "{some}"
        );
    }
}
