//! The load generator behind `voxbridge loadtest` and `benches/calls.rs`: many simulated phone
//! calls against one server, through a provider's real inbound path (Twilio by default: signed
//! `/twilio/voice` webhook, TwiML, media WebSocket; `--provider` picks another, see
//! [`driver`]), with the fake providers at fixed delays; per turn it measures what
//! the caller hears (see [`measure`]) and, for a server on this machine, what each call costs in
//! CPU and memory.
//!
//! The generator runs on the same two cores as the server, so it watches itself too: every
//! caller records how late its 20 ms ticks ran, and a run whose callers fell behind says so
//! instead of blaming the server.

mod driver;
mod measure;
mod process;
mod progress;
mod report;
mod sampler;
mod script;
mod stats;
mod steadiness;
mod target;

pub use measure::{CallMeasures, measure};
pub use process::{ProcessSample, sample as sample_process};
pub use report::{GeneratorHealth, LoadReport, ServerUsage};
pub use script::{LoadScript, Utterance};
pub use stats::Summary;
pub use target::{ServerSpec, SttChoice, Target, TtsChoice};

use std::time::Duration;

use tokio::time::Instant;

use crate::sim::suite::{SimOptions, SimSuite};
use crate::telephony::TrunkProvider;

/// Most calls one run may place.
pub const MAX_CALLS: usize = 5000;
/// Longest call one run may hold.
pub const MAX_DURATION: Duration = Duration::from_secs(600);
/// Most turns per call.
pub const MAX_TURNS: usize = 20;

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadTestOptions {
    /// Concurrent calls.
    pub calls: usize,
    /// Calls started per second until all are placed.
    pub ramp_per_sec: f64,
    /// How long each call lasts (the caller hangs up then).
    pub duration: Duration,
    /// Caller utterances per call; the first talks over the greeting.
    pub turns: usize,
    pub server: ServerSpec,
    /// Fakes already running there (`voxbridge sim`); `None` starts them in this process.
    pub sim_url: Option<String>,
    /// The fakes' delays (what runs at `sim_url` must have been started with the same).
    pub delays: SimOptions,
    /// The assistant's voice and ears.
    pub tts: TtsChoice,
    pub stt: SttChoice,
    /// The telephony provider whose fake carries the calls.
    pub provider: TrunkProvider,
}

/// A run could not be made.
#[derive(Debug, thiserror::Error)]
pub enum LoadTestError {
    #[error("invalid load test: {0}")]
    Invalid(String),
    #[error("load test set-up failed: {0}")]
    Setup(String),
}

impl LoadTestOptions {
    fn validate(&self) -> Result<(), LoadTestError> {
        let invalid = |m: String| Err(LoadTestError::Invalid(m));
        if self.calls == 0 || self.calls > MAX_CALLS {
            return invalid(format!("calls must be 1..={MAX_CALLS}"));
        }
        if !(self.ramp_per_sec > 0.0 && self.ramp_per_sec.is_finite()) {
            return invalid("the ramp must be a positive number of calls per second".into());
        }
        if self.duration < Duration::from_secs(5) || self.duration > MAX_DURATION {
            return invalid(format!(
                "duration must be 5..={} seconds",
                MAX_DURATION.as_secs()
            ));
        }
        if self.turns == 0 || self.turns > MAX_TURNS {
            return invalid(format!("turns must be 1..={MAX_TURNS}"));
        }
        if let ServerSpec::External { urls, .. } = &self.server {
            if urls.is_empty() {
                return invalid("at least one server URL is needed".to_owned());
            }
            for url in urls {
                require_loopback(url)?;
            }
        }
        if let Some(url) = &self.sim_url {
            require_loopback(url)?;
        }
        Ok(())
    }
}

/// The generator only ever talks to this machine: it is a test tool, not a traffic cannon.
fn require_loopback(url: &str) -> Result<(), LoadTestError> {
    let parsed =
        url::Url::parse(url).map_err(|e| LoadTestError::Invalid(format!("bad URL {url}: {e}")))?;
    let loopback = match parsed.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(name)) => name == "localhost",
        None => false,
    };
    if loopback {
        Ok(())
    } else {
        Err(LoadTestError::Invalid(format!(
            "{url} is not on this machine; the load generator runs against loopback only"
        )))
    }
}

/// Runs one load test to its end.
pub async fn run(options: &LoadTestOptions) -> Result<LoadReport, LoadTestError> {
    options.validate()?;
    let script = LoadScript::new(options.turns);
    // Kept alive until the run ends when the fakes run here. Fakes started elsewhere
    // (`--sim-url`) hear their own script unless started with `voxbridge sim --loadtest-turns`
    // (the same turns): otherwise a cough may be taken for words.
    let (_suite, sim_url) = match &options.sim_url {
        Some(url) => (None, url.clone()),
        None => {
            let heard = Some(script.stt_script());
            let suite = SimSuite::start_scripted(([127, 0, 0, 1], 0).into(), options.delays, heard)
                .await
                .map_err(|e| LoadTestError::Setup(format!("the fakes did not start: {e}")))?;
            let url = suite.base_url.clone();
            (Some(suite), url)
        }
    };
    let max_calls = u32::try_from(options.calls + 16).unwrap_or(u32::MAX);
    let target = Target::start(&options.server, &sim_url, max_calls).await?;
    let http = reqwest::Client::new();
    let number = target
        .provision(&http, options.tts, options.stt, options.provider)
        .await?;
    let driver = driver::Driver::new(options.provider, &number, options.duration);

    let sampler = sampler::Sampler::start(
        target.pids.clone(),
        target
            .node_urls
            .iter()
            .map(|url| format!("{url}/metrics"))
            .collect(),
    );
    let placed = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let progress = progress::Progress::start(options.calls, placed.clone(), sampler.latest());
    // Let the sampler see the server idle before the first call.
    tokio::time::sleep(Duration::from_millis(600)).await;
    // The callers run on core threads, one runtime per core, as the server's calls do: a
    // caller's 20 ms ticks and its socket stay on one thread instead of waking a work-stealing
    // runtime's idle workers.
    let callers = crate::core_threads::CoreThreads::start(crate::core_threads::resolve_count(0))
        .map_err(|e| LoadTestError::Setup(format!("caller threads: {e}")))?;
    let t0 = Instant::now();
    let mut sids = Vec::with_capacity(options.calls);
    let mut failures = std::collections::BTreeMap::new();
    for i in 0..options.calls {
        tokio::time::sleep_until(t0 + Duration::from_secs_f64(i as f64 / options.ramp_per_sec))
            .await;
        placed.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // Round robin over the nodes, as a load balancer would.
        let node = &target.node_urls[i % target.node_urls.len()];
        // The fake provider starts the call's tasks (its caller among them) where it is rung.
        let _on_core_thread = callers.next_handle().enter();
        match driver.ring(
            node,
            format!("+1444{:07}", i),
            &number,
            script.caller_script(i),
        ) {
            Ok(sid) => sids.push(sid),
            Err(e) => *failures.entry(e).or_insert(0) += 1,
        }
    }
    let ramp = t0.elapsed();
    let mut calls = Vec::with_capacity(sids.len());
    let patience = options.duration + Duration::from_secs(60);
    for sid in &sids {
        match driver.wait(sid, patience).await {
            Some(call) => calls.push(call),
            None => {
                *failures
                    .entry("the call never ended".to_owned())
                    .or_insert(0) += 1
            }
        }
    }
    let wall = t0.elapsed();
    progress.stop();
    let samples = sampler.stop().await;
    let server_pids = target.pids.clone();
    drop(target);

    Ok(report::build(report::RunFacts {
        options,
        script: &script,
        // The turn ends at the earlier of our VAD's end-of-turn silence (it then asks the STT
        // for its final) and the STT's own endpointing; the assistant keeps the default.
        endpointing_ms: options.stt.endpointing_ms().min(u64::from(
            crate::agent::end_of_turn::TurnSettings::default().end_of_turn_silence_ms,
        )),
        calls: &calls,
        failures,
        samples: &samples,
        server_pids,
        ramp,
        wall,
    }))
}
