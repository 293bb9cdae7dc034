//! Whether the server stays flat under a steady load: over the stretch of a run where (nearly)
//! every call is live, after a warm-up, the slopes of its memory, open descriptors and threads,
//! fitted by least squares to the sampler's readings. A leak shows as a slope that does not
//! vanish as the run gets longer; a soak (`voxbridge loadtest` for ten minutes) reads it here.

use std::time::Duration;

use serde::Serialize;
use tokio::time::Instant;

use super::sampler::Sample;

/// Readings needed for a slope worth stating.
const MIN_READINGS: usize = 10;
/// Shortest stretch worth a slope.
const MIN_STRETCH: Duration = Duration::from_secs(30);

/// The server over the run's steady stretch.
#[derive(Debug, Clone, Serialize)]
pub struct Steadiness {
    /// The stretch, in seconds from the first reading.
    pub from_s: f64,
    pub to_s: f64,
    /// The fewest calls live in it.
    pub live_calls_min: u64,
    pub rss_mb_per_min: f64,
    pub open_fds_per_min: f64,
    pub threads_per_min: f64,
    /// At the stretch's start and end.
    pub rss_mb: (f64, f64),
    pub open_fds: (u64, u64),
    pub threads: (u64, u64),
}

/// The steady stretch: readings with at least 95 % of the peak of live calls, less their first
/// fifth (buffers growing to their working size, pools filling). `None` for a run too short.
pub fn steadiness(samples: &[Sample]) -> Option<Steadiness> {
    let origin = samples.first()?.at;
    let peak = samples.iter().filter_map(|s| s.live_calls).max()?;
    let floor = (peak * 95 / 100).max(1);
    let full: Vec<&Sample> = samples
        .iter()
        .filter(|s| s.server.is_some() && s.live_calls.is_some_and(|n| n >= floor))
        .collect();
    let (first, last) = (full.first()?.at, full.last()?.at);
    let start = first + (last - first) / 5;
    let window: Vec<&Sample> = full.into_iter().filter(|s| s.at >= start).collect();
    if window.len() < MIN_READINGS || last - start < MIN_STRETCH {
        return None;
    }
    let minutes = |at: Instant| (at - start).as_secs_f64() / 60.0;
    let slope_of =
        |value: &dyn Fn(&Sample) -> f64| slope(window.iter().map(|s| (minutes(s.at), value(s))));
    const MB: f64 = 1024.0 * 1024.0;
    let server = |s: &Sample| s.server.expect("filtered on server readings");
    let (head, tail) = (server(window[0]), server(window[window.len() - 1]));
    Some(Steadiness {
        from_s: (start - origin).as_secs_f64(),
        to_s: (last - origin).as_secs_f64(),
        live_calls_min: window
            .iter()
            .filter_map(|s| s.live_calls)
            .min()
            .unwrap_or(0),
        rss_mb_per_min: slope_of(&|s| server(s).rss_bytes as f64 / MB),
        open_fds_per_min: slope_of(&|s| server(s).open_fds as f64),
        threads_per_min: slope_of(&|s| server(s).threads as f64),
        rss_mb: (head.rss_bytes as f64 / MB, tail.rss_bytes as f64 / MB),
        open_fds: (head.open_fds, tail.open_fds),
        threads: (head.threads, tail.threads),
    })
}

/// Least-squares slope of `y` over `x` (0 when `x` does not vary).
fn slope(points: impl Iterator<Item = (f64, f64)>) -> f64 {
    let points: Vec<(f64, f64)> = points.collect();
    let n = points.len() as f64;
    if n < 2.0 {
        return 0.0;
    }
    let mean_x = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_y = points.iter().map(|p| p.1).sum::<f64>() / n;
    let (mut num, mut den) = (0.0, 0.0);
    for (x, y) in &points {
        num += (x - mean_x) * (y - mean_y);
        den += (x - mean_x) * (x - mean_x);
    }
    if den == 0.0 { 0.0 } else { num / den }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::loadtest::ProcessSample;

    fn reading(origin: Instant, secs: u64, live: u64, rss_mb: u64, fds: u64) -> Sample {
        Sample {
            at: origin + Duration::from_secs(secs),
            server: Some(ProcessSample {
                cpu: Duration::ZERO,
                rss_bytes: rss_mb * 1024 * 1024,
                threads: 3,
                open_fds: fds,
            }),
            generator: None,
            live_calls: Some(live),
            turns_answered: None,
            voice_to_voice_p95_ms: None,
        }
    }

    #[test]
    fn slopes_are_fitted_over_the_steady_stretch_only() {
        let origin = Instant::now();
        let mut samples = Vec::new();
        // Ramp up: memory grows with the calls, which is no leak.
        for s in 0..20 {
            samples.push(reading(origin, s, s * 10, 20 + s, 10 + s * 2));
        }
        // Steady: 200 calls; memory creeps 1 MB a minute, descriptors stay put.
        for s in 20..140 {
            samples.push(reading(origin, s, 200, 40 + (s - 20) / 60, 50));
        }
        // Ramp down.
        for s in 140..150 {
            samples.push(reading(origin, s, 0, 40, 10));
        }
        let steady = steadiness(&samples).expect("long enough");
        assert!(steady.from_s >= 40.0 && steady.from_s <= 45.0, "{steady:?}");
        assert_eq!(steady.to_s, 139.0);
        assert_eq!(steady.live_calls_min, 200);
        assert!((steady.rss_mb_per_min - 1.0).abs() < 0.3, "{steady:?}");
        assert_eq!(steady.open_fds_per_min, 0.0);
        assert_eq!(steady.threads_per_min, 0.0);
    }

    #[test]
    fn a_short_run_has_no_slope() {
        let origin = Instant::now();
        let samples: Vec<Sample> = (0..20).map(|s| reading(origin, s, 100, 30, 40)).collect();
        assert!(steadiness(&samples).is_none());
    }
}
