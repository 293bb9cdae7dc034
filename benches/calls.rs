//! Whole calls under load: 1 and 100 concurrent simulated Twilio calls against a `voxbridge
//! serve` child process, fakes at the reference delays (STT final 100 ms, LLM first token
//! 200 ms, TTS first byte 150 ms). Prints the load generator's table for each.
//!
//! `cargo bench --bench calls` (release build). Larger runs: `voxbridge loadtest --calls N`
//! (see the README's performance section). `VOXBRIDGE_BENCH_CALLS=1,100,500` picks the sizes.

use std::time::Duration;

use voxbridge::loadtest::{LoadTestOptions, ServerSpec, SttChoice, TtsChoice, run};
use voxbridge::sim::suite::SimOptions;

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing and wants no run.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let sizes: Vec<usize> = std::env::var("VOXBRIDGE_BENCH_CALLS")
        .ok()
        .map(|v| v.split(',').filter_map(|n| n.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![1, 100]);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    for calls in sizes {
        let options = LoadTestOptions {
            calls,
            ramp_per_sec: 50.0,
            duration: Duration::from_secs(20),
            turns: 3,
            server: ServerSpec::Spawn {
                exe: env!("CARGO_BIN_EXE_voxbridge").into(),
            },
            sim_url: None,
            delays: SimOptions::reference(),
            tts: TtsChoice::default(),
            stt: SttChoice::default(),
            provider: voxbridge::telephony::TrunkProvider::Twilio,
        };
        match runtime.block_on(run(&options)) {
            Ok(report) => println!("{}", report.table()),
            Err(e) => {
                eprintln!("calls bench ({calls} calls) failed: {e}");
                std::process::exit(1);
            }
        }
    }
}
