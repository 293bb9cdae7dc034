//! Per-frame cost of the audio hot path: every figure is for one 20 ms frame unless named
//! otherwise. Run with `cargo bench --bench audio`; the README's "Performance" section lists
//! the figures measured on the project's machine.

use divan::{AllocProfiler, Bencher, black_box};
use voxbridge::audio::vad::silero::{self, Silero};
use voxbridge::audio::vad::{CascadeVad, Vad, VadConfig};
use voxbridge::audio::{Resampler, g711, wav};

/// Counts allocations, so the output also shows that per-frame work allocates nothing and
/// what each per-call object costs in memory (the `construct` group).
#[global_allocator]
static ALLOC: AllocProfiler = AllocProfiler::system();

fn main() {
    divan::main();
}

fn clip(path: &str) -> Vec<i16> {
    wav::read(format!("{}/audio/{path}", env!("CARGO_MANIFEST_DIR")))
        .expect("committed asset")
        .samples
}

/// 20 ms of 8 kHz speech as μ-law, the payload of one Twilio media message.
fn mulaw_frame() -> Vec<u8> {
    let speech = clip("g711/speech_8k.wav");
    let mut out = Vec::new();
    g711::encode_mulaw_into(&speech[4000..4160], &mut out);
    out
}

mod codec {
    use super::*;

    /// μ-law decode then encode of one frame (160 samples), through the tables.
    #[divan::bench]
    fn mulaw_decode_encode(bencher: Bencher) {
        let input = mulaw_frame();
        let mut pcm = [0i16; 160];
        let mut output = [0u8; 160];
        bencher.bench_local(|| {
            g711::decode_mulaw(black_box(&input), &mut pcm);
            g711::encode_mulaw(black_box(&pcm), &mut output);
            black_box(&output);
        });
    }

    /// The same with the encoder's segment search instead of its table (the "before").
    #[divan::bench]
    fn mulaw_decode_encode_search(bencher: Bencher) {
        let input = mulaw_frame();
        let mut pcm = [0i16; 160];
        let mut output = [0u8; 160];
        bencher.bench_local(|| {
            g711::decode_mulaw(black_box(&input), &mut pcm);
            for (o, &s) in output.iter_mut().zip(black_box(&pcm)) {
                *o = g711::mulaw_encode_by_search(s);
            }
            black_box(&output);
        });
    }
}

mod resample {
    use super::*;

    fn bench_pair(bencher: Bencher, from: u32, to: u32) {
        let speech = clip("vad/speech_16k.wav");
        let mut source = Resampler::new(16_000, from).expect("rate");
        let mut input = Vec::new();
        source.push(&speech, |f| input.extend_from_slice(f));
        let frame = from as usize / 50;
        let mut resampler = Resampler::new(from, to).expect("rate");
        let mut frames = input.chunks_exact(frame).cycle();
        bencher.bench_local(|| {
            let chunk = frames.next().expect("cycle");
            resampler.push(black_box(chunk), |out| {
                black_box(out);
            });
        });
    }

    #[divan::bench]
    fn from_8k_to_16k(bencher: Bencher) {
        bench_pair(bencher, 8000, 16_000);
    }

    #[divan::bench]
    fn from_24k_to_8k(bencher: Bencher) {
        bench_pair(bencher, 24_000, 8000);
    }

    #[divan::bench]
    fn from_48k_to_16k(bencher: Bencher) {
        bench_pair(bencher, 48_000, 16_000);
    }
}

mod vad {
    use super::*;

    /// A realistic call stream at 8 kHz: caller turns with pauses, noisy speech, silence and
    /// low noise: 24.5 s, 42 % of it speech, 5 utterances, a cough.
    fn call_mix() -> Vec<i16> {
        [
            "caller/book_table.wav",
            "vad/low_noise_8k.wav",
            "caller/tomorrow_at_seven.wav",
            "vad/silence_8k.wav",
            "vad/noisy_speech_8k.wav",
            "caller/cough.wav",
            "caller/thank_you_goodbye.wav",
            "vad/low_noise_8k.wav",
        ]
        .iter()
        .flat_map(|path| clip(path))
        .collect()
    }

    /// Runs a fresh detector over the whole call mix per iteration; divan's throughput
    /// column is frames per second, and the time divided by the frame count is the average
    /// cost per 20 ms frame (the model is loaded before timing).
    fn bench_mix(bencher: Bencher, config: VadConfig) {
        let audio = call_mix();
        let frames: Vec<&[i16]> = audio.chunks_exact(160).collect();
        CascadeVad::new(config, 8000)
            .expect("config")
            .process(&[0; 160]);
        let _ = Silero::new().process(&[0.0; silero::WINDOW]);
        bencher
            .counter(divan::counter::ItemsCount::new(frames.len()))
            .bench_local(|| {
                let mut vad = CascadeVad::new(config, 8000).expect("config");
                for frame in &frames {
                    black_box(vad.process(black_box(frame)));
                }
                vad.stats()
            });
    }

    /// Cascade VAD (energy on every frame, Silero on candidates), default config.
    #[divan::bench(sample_count = 30)]
    fn cascade_call_mix(bencher: Bencher) {
        bench_mix(bencher, VadConfig::default());
    }

    /// The same without the early look at onsets (`onset_ms` = `min_speech_ms`): the model
    /// runs once per candidate instead of twice. The difference is what an early barge-in
    /// costs.
    #[divan::bench(sample_count = 30)]
    fn cascade_call_mix_without_early_onset(bencher: Bencher) {
        bench_mix(
            bencher,
            VadConfig {
                onset_ms: 200,
                ..VadConfig::default()
            },
        );
    }

    /// The cheap path alone (neural confirmation off), same stream.
    #[divan::bench(sample_count = 30)]
    fn energy_only_call_mix(bencher: Bencher) {
        bench_mix(
            bencher,
            VadConfig {
                neural: false,
                ..VadConfig::default()
            },
        );
    }

    /// The neural path: one Silero step (512 samples = 32 ms at 16 kHz).
    #[divan::bench]
    fn silero_window(bencher: Bencher) {
        let speech = clip("vad/speech_16k.wav");
        let windows: Vec<[f32; silero::WINDOW]> = speech
            .chunks_exact(silero::WINDOW)
            .map(|c| std::array::from_fn(|i| f32::from(c[i]) / 32768.0))
            .collect();
        let mut model = Silero::new();
        let mut next = windows.iter().cycle();
        bencher.bench_local(|| {
            black_box(model.process(black_box(next.next().expect("cycle"))));
        });
    }
}

/// The JSON media stream's own per-frame work, before the audio reaches the VAD.
mod wire {
    use super::*;
    use base64::Engine;
    use voxbridge::telephony::twilio::stream::FrameDecoder;

    const SID: &str = "MZ18ad3ab5a668481ce02b83e7395059f0";
    const FRAMES: usize = 1000;

    /// One inbound Twilio `media` message (20 ms of μ-law, as Twilio sends it) parsed and its
    /// payload decoded into the socket's arena; the figure is per message.
    #[divan::bench]
    fn twilio_media_decode(bencher: Bencher) {
        let payload = base64::engine::general_purpose::STANDARD.encode(mulaw_frame());
        let frames: Vec<String> = (0..FRAMES)
            .map(|i| {
                let seq = i + 2;
                format!(
                    r#"{{"event":"media","sequenceNumber":"{seq}","media":{{"track":"inbound","chunk":"{i}","timestamp":"{}","payload":"{payload}"}},"streamSid":"{SID}"}}"#,
                    i * 20
                )
            })
            .collect();
        bencher
            .counter(divan::counter::ItemsCount::new(FRAMES))
            .with_inputs(|| FrameDecoder::new(SID.to_owned()))
            .bench_local_values(|mut decoder| {
                for frame in &frames {
                    black_box(decoder.decode(frame));
                }
            });
    }
}

/// What each per-call object allocates when created (see the "alloc" columns).
mod construct {
    use super::*;
    use voxbridge::audio::{AudioFormat, Pacer};

    #[divan::bench]
    fn resampler_8k_to_16k() -> Resampler {
        Resampler::new(8000, 16_000).expect("rate")
    }

    #[divan::bench]
    fn resampler_24k_to_8k() -> Resampler {
        Resampler::new(24_000, 8000).expect("rate")
    }

    #[divan::bench]
    fn cascade_vad_8k() -> CascadeVad {
        CascadeVad::new(VadConfig::default(), 8000).expect("config")
    }

    #[divan::bench]
    fn pacer_mulaw_2s() -> Pacer {
        Pacer::new(AudioFormat::MULAW_8K, 2000)
    }
}
