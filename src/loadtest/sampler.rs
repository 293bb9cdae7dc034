//! Samples, twice a second during a run, the server's CPU time and memory (when its processes
//! are on this machine; several nodes are summed), the generator's own, and from each node's
//! `/metrics` its live-call gauge and its voice-to-voice histogram (summed over the nodes: turns
//! answered so far, and their p95 as a dashboard would read it from the buckets). The latest
//! reading is also published for the progress line.

use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tokio::task::JoinHandle;
use tokio::time::Instant;

use super::process::{ProcessSample, sample};

const EVERY: Duration = Duration::from_millis(500);

/// One reading.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub at: Instant,
    pub server: Option<ProcessSample>,
    pub generator: Option<ProcessSample>,
    /// `voxbridge_live_calls` as the server reports it.
    pub live_calls: Option<u64>,
    /// Replies the server has started, by its own `voice_to_voice` stage.
    pub turns_answered: Option<u64>,
    /// The server's voice-to-voice p95 so far, interpolated within its histogram's buckets.
    pub voice_to_voice_p95_ms: Option<f64>,
}

/// A sampling task.
pub struct Sampler {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Vec<Sample>>,
    latest: watch::Receiver<Option<Sample>>,
}

impl Sampler {
    pub fn start(server_pids: Vec<u32>, metrics_urls: Vec<String>) -> Self {
        let (stop, mut stopped) = oneshot::channel();
        let (publish, latest) = watch::channel(None);
        let task = tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut samples = Vec::new();
            let mut ticker = tokio::time::interval(EVERY);
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = ticker.tick() => {}
                }
                let texts = futures_util::future::join_all(
                    metrics_urls.iter().map(|url| metrics_text(&http, url)),
                )
                .await;
                let texts: Vec<&str> = texts.iter().flatten().map(String::as_str).collect();
                let replies = merged(texts.iter().map(|t| stage_histogram(t, "voice_to_voice")));
                let live_calls = texts
                    .iter()
                    .filter_map(|t| parse_gauge(t, crate::metrics::LIVE_CALLS))
                    .reduce(|a, b| a + b);
                let reading = Sample {
                    at: Instant::now(),
                    server: summed(&server_pids),
                    generator: sample(None),
                    live_calls,
                    turns_answered: replies.last().map(|&(_, n)| n),
                    voice_to_voice_p95_ms: quantile(&replies, 0.95).map(|s| s * 1000.0),
                };
                publish.send_replace(Some(reading));
                samples.push(reading);
            }
            samples
        });
        Self { stop, task, latest }
    }

    /// The latest reading, as it changes.
    pub fn latest(&self) -> watch::Receiver<Option<Sample>> {
        self.latest.clone()
    }

    /// Stops sampling and answers every reading, one last one included.
    pub async fn stop(self) -> Vec<Sample> {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

/// The nodes' processes as one: CPU and memory summed; `None` when none can be read.
fn summed(pids: &[u32]) -> Option<ProcessSample> {
    pids.iter()
        .filter_map(|&pid| sample(Some(pid)))
        .reduce(|a, b| ProcessSample {
            cpu: a.cpu + b.cpu,
            rss_bytes: a.rss_bytes + b.rss_bytes,
            threads: a.threads + b.threads,
            open_fds: a.open_fds + b.open_fds,
        })
}

/// Histograms of several nodes (the same buckets) as one: counts summed per bound.
fn merged(histograms: impl Iterator<Item = Vec<(f64, u64)>>) -> Vec<(f64, u64)> {
    let mut total: Vec<(f64, u64)> = Vec::new();
    for histogram in histograms {
        for (bound, count) in histogram {
            match total.iter_mut().find(|(b, _)| *b == bound) {
                Some((_, n)) => *n += count,
                None => total.push((bound, count)),
            }
        }
    }
    total.sort_by(|a, b| a.0.total_cmp(&b.0));
    total
}

async fn metrics_text(http: &reqwest::Client, url: &str) -> Option<String> {
    http.get(url)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()
}

/// The cumulative buckets `(upper bound s, count)` of one stage of the server's latency
/// histogram, in order, `+Inf` last (as `f64::INFINITY`).
fn stage_histogram(text: &str, stage: &str) -> Vec<(f64, u64)> {
    let prefix = format!("{}_bucket{{", crate::metrics::STAGE_LATENCY);
    let stage = format!("stage=\"{stage}\"");
    let mut buckets: Vec<(f64, u64)> = text
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(&prefix)?;
            let (labels, value) = rest.split_once("} ")?;
            if !labels.split(',').any(|l| l == stage) {
                return None;
            }
            let le = labels.split(',').find_map(|l| l.strip_prefix("le=\""))?;
            let le = le.trim_end_matches('"');
            let bound = if le == "+Inf" {
                f64::INFINITY
            } else {
                le.parse().ok()?
            };
            Some((bound, value.trim().parse::<f64>().ok()? as u64))
        })
        .collect();
    buckets.sort_by(|a, b| a.0.total_cmp(&b.0));
    buckets
}

/// The `q` quantile of cumulative buckets, interpolated linearly inside its bucket (as
/// Prometheus' `histogram_quantile` does); `None` without observations.
fn quantile(buckets: &[(f64, u64)], q: f64) -> Option<f64> {
    let total = buckets.last()?.1;
    if total == 0 {
        return None;
    }
    let rank = q * total as f64;
    let mut below = (0.0, 0u64);
    for &(bound, count) in buckets {
        if count as f64 >= rank {
            if bound.is_infinite() {
                return Some(below.0);
            }
            let within = (count - below.1) as f64;
            let share = if within > 0.0 {
                (rank - below.1 as f64) / within
            } else {
                1.0
            };
            return Some(below.0 + (bound - below.0) * share);
        }
        below = (bound, count);
    }
    None
}

fn parse_gauge(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|line| line.strip_prefix(name)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|v| v.max(0.0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_live_calls_gauge() {
        let text = "# TYPE voxbridge_live_calls gauge\nvoxbridge_live_calls 42\nvoxbridge_live_calls_x 1\n";
        assert_eq!(parse_gauge(text, "voxbridge_live_calls"), Some(42));
        assert_eq!(parse_gauge("", "voxbridge_live_calls"), None);
    }

    #[test]
    fn reads_a_stages_histogram_and_its_p95() {
        let text = "\
voxbridge_stage_latency_seconds_bucket{stage=\"stt_final\",le=\"0.5\"} 9
voxbridge_stage_latency_seconds_bucket{stage=\"voice_to_voice\",le=\"0.5\"} 0
voxbridge_stage_latency_seconds_bucket{stage=\"voice_to_voice\",le=\"0.75\"} 80
voxbridge_stage_latency_seconds_bucket{stage=\"voice_to_voice\",le=\"1\"} 100
voxbridge_stage_latency_seconds_bucket{stage=\"voice_to_voice\",le=\"+Inf\"} 100
";
        let buckets = stage_histogram(text, "voice_to_voice");
        assert_eq!(buckets.len(), 4);
        assert_eq!(buckets.last(), Some(&(f64::INFINITY, 100)));
        // Rank 95 lies 15 of 20 into (0.75, 1].
        let p95 = quantile(&buckets, 0.95).unwrap();
        assert!((p95 - 0.9375).abs() < 1e-9, "{p95}");
        assert_eq!(quantile(&stage_histogram("", "voice_to_voice"), 0.95), None);
    }

    #[test]
    fn nodes_histograms_add_up() {
        let a = vec![(0.5, 2), (1.0, 5), (f64::INFINITY, 5)];
        let b = vec![(0.5, 1), (1.0, 1), (f64::INFINITY, 3)];
        assert_eq!(
            merged([a, b].into_iter()),
            vec![(0.5, 3), (1.0, 6), (f64::INFINITY, 8)]
        );
    }
}
