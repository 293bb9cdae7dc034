//! Percentiles of a sample set. The load generator sorts each set once at the end of a run: a
//! few million samples at most, so exact order statistics cost less than a histogram's error.

use serde::Serialize;

/// Order statistics of one measurement, in milliseconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Samples.
    pub n: usize,
    pub p50: f64,
    pub p95: f64,
    pub p99: f64,
    pub max: f64,
    pub mean: f64,
}

impl Summary {
    /// Summarises `samples` (reordered in place). Empty input gives all zeros and `n = 0`.
    pub fn of(samples: &mut [f64]) -> Self {
        if samples.is_empty() {
            return Self::default();
        }
        samples.sort_unstable_by(f64::total_cmp);
        let n = samples.len();
        // Nearest-rank: the smallest sample with at least p% of samples at or below it.
        let rank = |p: f64| samples[((p / 100.0 * n as f64).ceil() as usize).clamp(1, n) - 1];
        Self {
            n,
            p50: rank(50.0),
            p95: rank(95.0),
            p99: rank(99.0),
            max: samples[n - 1],
            mean: samples.iter().sum::<f64>() / n as f64,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let mut v: Vec<f64> = (1..=100).rev().map(f64::from).collect();
        let s = Summary::of(&mut v);
        assert_eq!(
            (s.n, s.p50, s.p95, s.p99, s.max),
            (100, 50.0, 95.0, 99.0, 100.0)
        );
        assert!((s.mean - 50.5).abs() < 1e-9);
        assert_eq!(Summary::of(&mut []).n, 0);
        assert_eq!(Summary::of(&mut [7.0]).p99, 7.0);
    }
}
