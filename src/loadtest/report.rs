//! A load test's results: per-turn latency percentiles, frame timing, what the server cost per
//! call, and whether the generator kept its own schedule. Printed as a table, written as JSON.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::sim::caller::{CallerEnd, LATE_TICK};
use crate::sim::suite::SimOptions;

use super::LoadTestOptions;
use super::measure::measure;
use super::sampler::Sample;
use super::script::LoadScript;
use super::stats::Summary;
use super::target::{SttChoice, TtsChoice};

/// Everything one run measured.
#[derive(Debug, Clone, Serialize)]
pub struct LoadReport {
    pub calls: usize,
    pub ramp_per_sec: f64,
    pub duration_s: f64,
    pub turns_per_call: usize,
    pub delays_ms: SimOptions,
    pub tts: TtsChoice,
    pub stt: SttChoice,
    /// Silence after the caller's speech at which the turn ends (counted as a setting, not as
    /// added latency): the earlier of the assistant's `end_of_turn_silence_ms`, at which our VAD
    /// asks the STT for its final, and the fake STT's own endpointing.
    pub endpointing_ms: u64,
    /// Calls whose media stream connected and ran to the caller's hang-up.
    pub completed: usize,
    /// Calls that failed, by what went wrong.
    pub failures: BTreeMap<String, usize>,
    /// Most calls the server reported live at once.
    pub peak_live_calls: Option<u64>,
    pub voice_to_voice_ms: Summary,
    pub added_ms: Summary,
    pub unanswered_turns: u64,
    pub barge_in_ms: Summary,
    pub barge_ins_missed: u64,
    /// A backchannel over the agent: its onset → the clear (the agent stopped at the sound).
    pub false_stop_ms: Summary,
    /// A backchannel over the agent: its end → the agent's audio again (it resumed).
    pub resumed_ms: Summary,
    /// A cough over the agent: its onset → the clear, in the calls where it stopped the agent.
    pub cough_stop_ms: Summary,
    /// Coughs over the agent, and how many of them stopped it (briefly).
    pub coughs_over_agent: u64,
    pub coughs_that_stopped: u64,
    /// Coughs and backchannels after which the agent's reply was lost (never went on before
    /// the caller spoke again, or was cut after it went on).
    pub wrongful_cuts: u64,
    pub frame_lateness_ms: Summary,
    pub frames: u64,
    /// Frames that arrived more than 20 ms behind the playout clock (an audible gap).
    pub late_frames: u64,
    /// Where late frames fell: ms from the start of their stretch of agent audio.
    pub late_frame_offsets_ms: Summary,
    pub calls_with_gaps: usize,
    pub server: Option<ServerUsage>,
    pub generator: GeneratorHealth,
    /// Seconds to place every call.
    pub ramp_s: f64,
    /// Seconds from the first call placed to the last one ended.
    pub wall_s: f64,
    /// The target: p95 added latency under 50 ms, no gaps, every call completed and answered.
    pub held: bool,
}

/// What the server cost, from `/proc` (a server on this machine only).
#[derive(Debug, Clone, Serialize)]
pub struct ServerUsage {
    /// The server's processes (one per node), whose figures are summed.
    pub pids: Vec<u32>,
    pub cpu_s: f64,
    pub cpu_s_per_call_minute: f64,
    pub rss_idle_mb: f64,
    pub rss_peak_mb: f64,
    /// (RSS at the peak of live calls − idle RSS) / live calls then.
    pub rss_per_call_kb: f64,
    /// Memory, descriptors and threads over the steady stretch (a run long enough for one).
    pub steady: Option<super::steadiness::Steadiness>,
}

/// Whether the load generator kept its 20 ms schedule.
#[derive(Debug, Clone, Serialize)]
pub struct GeneratorHealth {
    pub tick_lag_max_ms: f64,
    pub late_ticks: u64,
    pub ticks: u64,
    pub cpu_s: f64,
    /// The generator's CPU (callers, fakes, this report's sampling) per minute of call, on the
    /// same clock as the server's: what the machine spends measuring rather than being measured.
    pub cpu_s_per_call_minute: f64,
    /// More than 0.1 % of ticks were late by over 10 ms: the figures include the generator's
    /// own lag.
    pub fell_behind: bool,
}

pub(super) struct RunFacts<'a> {
    pub options: &'a LoadTestOptions,
    pub script: &'a LoadScript,
    pub endpointing_ms: u64,
    pub calls: &'a [super::driver::DrivenCall],
    pub failures: BTreeMap<String, usize>,
    pub samples: &'a [Sample],
    pub server_pids: Vec<u32>,
    pub ramp: Duration,
    pub wall: Duration,
}

pub(super) fn build(facts: RunFacts<'_>) -> LoadReport {
    let options = facts.options;
    let mut failures = facts.failures;
    let mut v2v = Vec::new();
    let mut added = Vec::new();
    let mut barge = Vec::new();
    let (mut false_stops, mut resumes, mut wrongful_cuts) = (Vec::new(), Vec::new(), 0u64);
    let (mut cough_stops, mut coughs_over_agent) = (Vec::new(), 0u64);
    let mut lateness = Vec::new();
    let mut late_offsets = Vec::new();
    let (mut unanswered, mut missed, mut frames, mut late_frames) = (0u64, 0u64, 0u64, 0u64);
    let (mut completed, mut calls_with_gaps) = (0usize, 0usize);
    let (mut ticks, mut late_ticks) = (0u64, 0u64);
    let mut tick_lag_max = Duration::ZERO;
    let mut call_seconds = 0.0;
    for call in facts.calls {
        let Some(report) = &call.report else {
            *failures.entry(call.no_stream.clone()).or_insert(0) += 1;
            continue;
        };
        match &report.end {
            Some(CallerEnd::MaxDuration | CallerEnd::ScriptHangUp) => completed += 1,
            other => {
                let why = match other {
                    Some(CallerEnd::ConnectFailed(e)) => format!("connect failed: {e}"),
                    Some(CallerEnd::Transport(e)) => format!("socket broke: {e}"),
                    Some(CallerEnd::ServerClosed) => "server closed the stream early".to_owned(),
                    other => format!("ended: {other:?}"),
                };
                *failures.entry(why).or_insert(0) += 1;
            }
        }
        if let Some(connected) = report.connected_at {
            call_seconds += report.ended_at.saturating_sub(connected).as_secs_f64();
        }
        ticks += report.frames_sent;
        late_ticks += report.late_ticks;
        tick_lag_max = tick_lag_max.max(report.tick_lag_max);
        let m = measure(report, facts.script, &options.delays, facts.endpointing_ms);
        v2v.extend(m.voice_to_voice_ms);
        added.extend(m.added_ms);
        barge.extend(m.barge_in_ms);
        false_stops.extend(m.false_stop_ms);
        resumes.extend(m.resumed_ms);
        wrongful_cuts += u64::from(m.wrongful_cuts);
        cough_stops.extend(m.cough_stop_ms);
        coughs_over_agent += u64::from(m.coughed_over_agent);
        lateness.extend(m.frame_lateness_ms);
        late_offsets.extend(m.late_frame_offsets_ms);
        unanswered += u64::from(m.unanswered);
        missed += u64::from(m.barge_in_missed);
        frames += m.frames;
        late_frames += m.late_frames;
        calls_with_gaps += usize::from(m.late_frames > 0);
    }
    let server = server_usage(&facts.server_pids, facts.samples, call_seconds);
    let generator_cpu = cpu_between(facts.samples, |s| s.generator.map(|p| p.cpu));
    let fell_behind = late_ticks * 1000 > ticks.max(1);
    let added = Summary::of(&mut added);
    let held = failures.is_empty()
        && completed == options.calls
        && unanswered == 0
        && wrongful_cuts == 0
        && late_frames == 0
        && added.n > 0
        && added.p95 < 50.0;
    LoadReport {
        calls: options.calls,
        ramp_per_sec: options.ramp_per_sec,
        duration_s: options.duration.as_secs_f64(),
        turns_per_call: options.turns,
        delays_ms: options.delays,
        tts: options.tts,
        stt: options.stt,
        endpointing_ms: facts.endpointing_ms,
        completed,
        failures,
        peak_live_calls: facts.samples.iter().filter_map(|s| s.live_calls).max(),
        voice_to_voice_ms: Summary::of(&mut v2v),
        added_ms: added,
        unanswered_turns: unanswered,
        barge_in_ms: Summary::of(&mut barge),
        barge_ins_missed: missed,
        false_stop_ms: Summary::of(&mut false_stops),
        resumed_ms: Summary::of(&mut resumes),
        coughs_that_stopped: cough_stops.len() as u64,
        cough_stop_ms: Summary::of(&mut cough_stops),
        coughs_over_agent,
        wrongful_cuts,
        frame_lateness_ms: Summary::of(&mut lateness),
        frames,
        late_frames,
        late_frame_offsets_ms: Summary::of(&mut late_offsets),
        calls_with_gaps,
        server,
        generator: GeneratorHealth {
            tick_lag_max_ms: tick_lag_max.as_secs_f64() * 1000.0,
            late_ticks,
            ticks,
            cpu_s: generator_cpu.unwrap_or(0.0),
            cpu_s_per_call_minute: per_call_minute(generator_cpu.unwrap_or(0.0), call_seconds),
            fell_behind,
        },
        ramp_s: facts.ramp.as_secs_f64(),
        wall_s: facts.wall.as_secs_f64(),
        held,
    }
}

fn cpu_between(samples: &[Sample], cpu: impl Fn(&Sample) -> Option<Duration>) -> Option<f64> {
    let first = samples.iter().find_map(&cpu)?;
    let last = samples.iter().rev().find_map(&cpu)?;
    Some(last.saturating_sub(first).as_secs_f64())
}

/// CPU seconds per minute of call.
fn per_call_minute(cpu_s: f64, call_seconds: f64) -> f64 {
    if call_seconds > 0.0 {
        cpu_s / (call_seconds / 60.0)
    } else {
        0.0
    }
}

fn server_usage(pids: &[u32], samples: &[Sample], call_seconds: f64) -> Option<ServerUsage> {
    if pids.is_empty() {
        return None;
    }
    let readings: Vec<_> = samples.iter().filter(|s| s.server.is_some()).collect();
    let idle = readings.first()?.server?;
    let cpu_s = cpu_between(samples, |s| s.server.map(|p| p.cpu))?;
    let peak_rss = readings
        .iter()
        .filter_map(|s| s.server)
        .map(|p| p.rss_bytes)
        .max()?;
    // Memory per call where the most calls were live (latest such reading: by then every
    // call's buffers have grown to their working size).
    let busiest = readings
        .iter()
        .filter(|s| s.live_calls.is_some_and(|n| n > 0))
        .max_by_key(|s| (s.live_calls, s.at));
    let rss_per_call_kb = busiest.map_or(0.0, |s| {
        let live = s.live_calls.unwrap_or(1).max(1) as f64;
        let rss = s.server.map_or(0, |p| p.rss_bytes);
        rss.saturating_sub(idle.rss_bytes) as f64 / live / 1024.0
    });
    const MB: f64 = 1024.0 * 1024.0;
    Some(ServerUsage {
        pids: pids.to_vec(),
        cpu_s,
        cpu_s_per_call_minute: per_call_minute(cpu_s, call_seconds),
        rss_idle_mb: idle.rss_bytes as f64 / MB,
        rss_peak_mb: peak_rss as f64 / MB,
        rss_per_call_kb,
        steady: super::steadiness::steadiness(samples),
    })
}

impl LoadReport {
    /// The human-readable table.
    pub fn table(&self) -> String {
        let d = &self.delays_ms;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "voxbridge loadtest: {} calls (ramp {}/s, {} s each, {} turns); TTS {:?}, STT {:?} \
             (turn ends after {} ms of silence); fakes: STT final {} ms, LLM first token {} ms, TTS first byte {} \
             ms (Sarvam then {}× real time)",
            self.calls,
            self.ramp_per_sec,
            self.duration_s,
            self.turns_per_call,
            self.tts,
            self.stt,
            self.endpointing_ms,
            d.stt_final_ms,
            d.llm_first_token_ms,
            d.tts_first_byte_ms,
            d.sarvam_tts_times_real_time
        );
        let failed: usize = self.failures.values().sum();
        let _ = writeln!(
            out,
            "calls: {} completed, {} failed; peak live {}",
            self.completed,
            failed,
            self.peak_live_calls
                .map_or("unknown".to_owned(), |n| n.to_string())
        );
        for (why, n) in &self.failures {
            let _ = writeln!(out, "  {n} × {why}");
        }
        let _ = writeln!(
            out,
            "{:<20} {:>8} {:>9} {:>9} {:>9} {:>9}",
            "(ms)", "n", "p50", "p95", "p99", "max"
        );
        for (name, s) in [
            ("voice-to-voice", &self.voice_to_voice_ms),
            ("added latency", &self.added_ms),
            ("barge-in reaction", &self.barge_in_ms),
            ("uh-huh → stop", &self.false_stop_ms),
            ("uh-huh end → resume", &self.resumed_ms),
            ("cough → stop", &self.cough_stop_ms),
            ("frame lateness", &self.frame_lateness_ms),
        ] {
            let _ = writeln!(
                out,
                "{name:<20} {:>8} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
                s.n, s.p50, s.p95, s.p99, s.max
            );
        }
        let _ = writeln!(
            out,
            "gaps: {} late frames of {} in {} calls; unanswered turns {}; missed barge-ins {}; coughs over the agent {} (stopped it {}); wrongful cuts {}",
            self.late_frames,
            self.frames,
            self.calls_with_gaps,
            self.unanswered_turns,
            self.barge_ins_missed,
            self.coughs_over_agent,
            self.coughs_that_stopped,
            self.wrongful_cuts
        );
        match &self.server {
            Some(s) => {
                let nodes = match s.pids.len() {
                    1 => String::new(),
                    n => format!(" ({n} nodes together)"),
                };
                let _ = writeln!(
                    out,
                    "server{nodes}: {:.3} CPU s per call-minute; RSS {:.1} MB idle, {:.1} MB peak, {:.0} KB per live call",
                    s.cpu_s_per_call_minute, s.rss_idle_mb, s.rss_peak_mb, s.rss_per_call_kb
                );
                if let Some(st) = &s.steady {
                    let _ = writeln!(
                        out,
                        "steady stretch ({:.0}–{:.0} s, at least {} calls live): RSS {:+.2} MB/min ({:.1} → {:.1} MB), \
                         descriptors {:+.1}/min ({} → {}), threads {:+.2}/min ({} → {})",
                        st.from_s,
                        st.to_s,
                        st.live_calls_min,
                        st.rss_mb_per_min,
                        st.rss_mb.0,
                        st.rss_mb.1,
                        st.open_fds_per_min,
                        st.open_fds.0,
                        st.open_fds.1,
                        st.threads_per_min,
                        st.threads.0,
                        st.threads.1
                    );
                }
            }
            None => {
                let _ = writeln!(
                    out,
                    "server: CPU and memory not measured (not a local process)"
                );
            }
        }
        let g = &self.generator;
        let _ = writeln!(
            out,
            "generator: {:.1} CPU s ({:.3} per call-minute); max tick lag {:.1} ms; {} of {} ticks over {} ms late — {}",
            g.cpu_s,
            g.cpu_s_per_call_minute,
            g.tick_lag_max_ms,
            g.late_ticks,
            g.ticks,
            LATE_TICK.as_millis(),
            if g.fell_behind {
                "IT FELL BEHIND: the figures above include its own lag"
            } else {
                "kept its schedule"
            }
        );
        let _ = writeln!(
            out,
            "held (p95 added < 50 ms, no gaps, all completed): {}",
            if self.held { "yes" } else { "no" }
        );
        out
    }
}
