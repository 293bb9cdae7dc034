//! Samples, twice a second during a run, the server's CPU time and memory (when its process is
//! on this machine), the generator's own, and the server's live-call gauge from `/metrics`.

use std::time::Duration;

use tokio::sync::oneshot;
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
}

/// A sampling task.
pub struct Sampler {
    stop: oneshot::Sender<()>,
    task: JoinHandle<Vec<Sample>>,
}

impl Sampler {
    pub fn start(server_pid: Option<u32>, metrics_url: String) -> Self {
        let (stop, mut stopped) = oneshot::channel();
        let task = tokio::spawn(async move {
            let http = reqwest::Client::new();
            let mut samples = Vec::new();
            let mut ticker = tokio::time::interval(EVERY);
            loop {
                tokio::select! {
                    _ = &mut stopped => break,
                    _ = ticker.tick() => {}
                }
                let live_calls = live_calls(&http, &metrics_url).await;
                samples.push(Sample {
                    at: Instant::now(),
                    server: server_pid.and_then(|pid| sample(Some(pid))),
                    generator: sample(None),
                    live_calls,
                });
            }
            samples
        });
        Self { stop, task }
    }

    /// Stops sampling and answers every reading, one last one included.
    pub async fn stop(self) -> Vec<Sample> {
        let _ = self.stop.send(());
        self.task.await.unwrap_or_default()
    }
}

async fn live_calls(http: &reqwest::Client, url: &str) -> Option<u64> {
    let text = http
        .get(url)
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    parse_gauge(&text, crate::metrics::LIVE_CALLS)
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
}
