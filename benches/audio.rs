//! Per-frame cost of the audio hot path: every figure is for one 20 ms frame unless named
//! otherwise. Run with `cargo bench --bench audio`; the README's "Performance" section lists
//! the figures measured on the project's machine.

use divan::{Bencher, black_box};
use voxbridge::audio::vad::silero::{self, Silero};
use voxbridge::audio::vad::{CascadeVad, Vad, VadConfig};
use voxbridge::audio::{Resampler, g711, wav};

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
    /// low noise (~52 % of frames are speech).
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

    /// Cascade VAD over the call mix, default config: average cost per 20 ms frame.
    #[divan::bench]
    fn cascade_call_mix(bencher: Bencher) {
        let audio = call_mix();
        let frames: Vec<&[i16]> = audio.chunks_exact(160).collect();
        let mut vad = CascadeVad::new(VadConfig::default(), 8000).expect("config");
        let mut next = frames.iter().cycle();
        bencher.bench_local(|| {
            black_box(vad.process(black_box(next.next().expect("cycle"))));
        });
    }

    /// The cheap path alone (energy detector, neural confirmation off), same stream.
    #[divan::bench]
    fn energy_only_call_mix(bencher: Bencher) {
        let audio = call_mix();
        let frames: Vec<&[i16]> = audio.chunks_exact(160).collect();
        let config = VadConfig {
            neural: false,
            ..VadConfig::default()
        };
        let mut vad = CascadeVad::new(config, 8000).expect("config");
        let mut next = frames.iter().cycle();
        bencher.bench_local(|| {
            black_box(vad.process(black_box(next.next().expect("cycle"))));
        });
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
