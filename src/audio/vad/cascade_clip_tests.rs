//! The cascade VAD on the committed clips, whose speech edges `audio/edges.csv` knows.

use super::*;
use crate::audio::wav;

const ROOT: &str = env!("CARGO_MANIFEST_DIR");

/// Speech segments of `path` from `audio/edges.csv`, in ms.
fn truth(path: &str) -> Vec<(u64, u64)> {
    std::fs::read_to_string(format!("{ROOT}/audio/edges.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|line| {
            let mut fields = line.split(',');
            (fields.next()? == path).then(|| {
                (
                    fields.next().unwrap().parse().unwrap(),
                    fields.next().unwrap().parse().unwrap(),
                )
            })
        })
        .collect()
}

/// Runs a clip through a detector in 20 ms frames; returns every event with the stream
/// time (ms) of the frame that produced it.
fn events(path: &str, config: VadConfig) -> (Vec<(u64, VadEvent)>, VadStats) {
    let clip = wav::read(format!("{ROOT}/audio/{path}")).unwrap();
    let mut vad = CascadeVad::new(config, clip.sample_rate).unwrap();
    let frame = clip.sample_rate as usize / 50;
    // Trailing silence so a segment at the very end can close.
    let tail = vec![0i16; clip.sample_rate as usize];
    let mut events = Vec::new();
    for (i, chunk) in clip
        .samples
        .chunks(frame)
        .chain(tail.chunks(frame))
        .enumerate()
    {
        if let Some(event) = vad.process(chunk) {
            events.push((i as u64 * 20 + 20, event));
        }
    }
    (events, vad.stats())
}

/// Runs a clip through a detector in 20 ms frames; returns the speech segments it reports.
fn segments(path: &str, config: VadConfig) -> (Vec<(u64, u64)>, VadStats) {
    let (events, stats) = events(path, config);
    let mut found = Vec::new();
    let mut open = None;
    for (_, event) in events {
        match event {
            VadEvent::SpeechStart { at_ms } => open = Some(at_ms),
            VadEvent::SpeechEnd { at_ms } => found.push((open.take().unwrap(), at_ms)),
            _ => {}
        }
    }
    (found, stats)
}

/// Asserts that `found` has the same segments as `expected`, each edge within ±60 ms.
fn assert_edges(path: &str, found: &[(u64, u64)], expected: &[(u64, u64)]) {
    assert_eq!(
        found.len(),
        expected.len(),
        "{path}: found {found:?}, truth {expected:?}"
    );
    for (&(start, end), &(true_start, true_end)) in found.iter().zip(expected) {
        assert!(
            start.abs_diff(true_start) <= 60,
            "{path}: start {start} vs {true_start}"
        );
        assert!(
            end.abs_diff(true_end) <= 60,
            "{path}: end {end} vs {true_end}"
        );
    }
}

#[test]
fn finds_speech_edges_in_clean_and_noisy_speech() {
    for path in [
        "vad/speech_8k.wav",
        "vad/speech_16k.wav",
        "vad/noisy_speech_8k.wav",
        "vad/noisy_speech_16k.wav",
    ] {
        let (found, stats) = segments(path, VadConfig::default());
        assert_edges(path, &found, &truth(path));
        // The cascade asks the neural model twice per utterance (the early look at
        // `onset_ms` and the confirmation at `min_speech_ms`), not per frame.
        assert_eq!(stats.neural_runs, 4, "{path}: {stats:?}");
    }
}

#[test]
fn finds_caller_utterances() {
    for path in [
        "caller/book_table.wav",
        "caller/tomorrow_at_seven.wav",
        "caller/thank_you_goodbye.wav",
        "caller/backchannel_uh_huh.wav",
    ] {
        let (found, _) = segments(path, VadConfig::default());
        assert_edges(path, &found, &truth(path));
    }
}

#[test]
fn every_utterance_is_announced_at_its_onset_window_before_it_is_confirmed() {
    for path in [
        "caller/book_table.wav",
        "caller/tomorrow_at_seven.wav",
        "caller/thank_you_goodbye.wav",
        "caller/backchannel_uh_huh.wav",
        "vad/noisy_speech_8k.wav",
        "vad/noisy_speech_16k.wav",
    ] {
        let (events, _) = events(path, VadConfig::default());
        let mut announced = None;
        let mut starts = 0;
        for (now, event) in &events {
            match *event {
                VadEvent::Onset { at_ms } => {
                    // Said within the onset window and a frame of the sound's start.
                    assert!(
                        now - at_ms <= 80 + 20,
                        "{path}: onset {at_ms} said at {now}"
                    );
                    announced = Some(at_ms);
                }
                VadEvent::SpeechStart { at_ms } => {
                    assert_eq!(announced.take(), Some(at_ms), "{path}: {events:?}");
                    starts += 1;
                }
                VadEvent::OnsetWithdrawn => panic!("{path}: speech withdrawn: {events:?}"),
                _ => {}
            }
        }
        assert_eq!(starts, truth(path).len(), "{path}: {events:?}");
    }
}

#[test]
fn a_knock_is_announced_and_withdrawn() {
    // Energy only (the model would not take a tone for speech): 40 ms of sound, then
    // silence, is announced at 80 ms and withdrawn when the candidate dies.
    let config = VadConfig {
        neural: false,
        ..VadConfig::default()
    };
    let mut vad = CascadeVad::new(config, 8000).unwrap();
    let quiet = [0i16; 160];
    let loud: Vec<i16> = (0..160)
        .map(|n| ((n as f32 * 0.3).sin() * 8000.0) as i16)
        .collect();
    let mut events = Vec::new();
    for i in 0..60 {
        let frame = if (25..27).contains(&i) {
            &loud[..]
        } else {
            &quiet[..]
        };
        events.extend(vad.process(frame));
    }
    assert_eq!(
        events,
        [VadEvent::Onset { at_ms: 500 }, VadEvent::OnsetWithdrawn]
    );
}

#[test]
fn an_onset_window_as_long_as_min_speech_announces_nothing() {
    let config = VadConfig {
        onset_ms: 200,
        ..VadConfig::default()
    };
    let (events, stats) = events("caller/book_table.wav", config);
    assert!(
        !events
            .iter()
            .any(|(_, e)| matches!(e, VadEvent::Onset { .. })),
        "{events:?}"
    );
    assert_eq!(stats.neural_runs, 1);
}

#[test]
fn silence_and_low_noise_are_never_speech() {
    for path in [
        "vad/silence_8k.wav",
        "vad/silence_16k.wav",
        "vad/low_noise_8k.wav",
        "vad/low_noise_16k.wav",
    ] {
        for neural in [true, false] {
            let (found, stats) = segments(
                path,
                VadConfig {
                    neural,
                    ..VadConfig::default()
                },
            );
            assert!(found.is_empty(), "{path}: {found:?}");
            assert_eq!(
                stats.neural_runs, 0,
                "{path}: no candidate should reach the model"
            );
        }
    }
}

#[test]
fn a_cough_is_not_speech() {
    let (found, stats) = segments("caller/cough.wav", VadConfig::default());
    assert!(found.is_empty(), "{found:?}");
    assert_eq!(
        stats.neural_runs, 2,
        "the model was asked, early and at min_speech_ms"
    );
    // If the early look took its start for speech, that was withdrawn.
    let (events, _) = events("caller/cough.wav", VadConfig::default());
    let kinds: Vec<_> = events.iter().map(|(_, e)| *e).collect();
    assert!(
        kinds.is_empty()
            || matches!(
                kinds[..],
                [VadEvent::Onset { .. }, VadEvent::OnsetWithdrawn]
            ),
        "{kinds:?}"
    );
    // Energy alone would have barged in: the neural stage is what filters it.
    let energy_only = VadConfig {
        neural: false,
        ..VadConfig::default()
    };
    let (found, _) = segments("caller/cough.wav", energy_only);
    assert_eq!(found.len(), 1);
}

#[test]
fn a_sudden_steady_noise_is_not_speech_and_stops_costing() {
    // 1 s of quiet, then 8 s of white noise at about -30 dBFS (a fan, a car), 8 kHz.
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut noise = |amplitude: f64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        ((seed >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0) * amplitude
    };
    let audio: Vec<i16> = (0..9 * 8000)
        .map(|n| noise(if n < 8000 { 100.0 } else { 1800.0 }) as i16)
        .collect();
    let mut vad = CascadeVad::new(VadConfig::default(), 8000).unwrap();
    for frame in audio.chunks(160) {
        assert_eq!(vad.process(frame), None);
    }
    // The model is asked at the step, then less and less often while the floor adapts.
    let stats = vad.stats();
    assert!((1..=3).contains(&stats.neural_runs), "{stats:?}");
}

#[test]
fn speech_right_after_a_cough_is_found() {
    let cough = wav::read(format!("{ROOT}/audio/caller/cough.wav"))
        .unwrap()
        .samples;
    let speech = wav::read(format!("{ROOT}/audio/caller/book_table.wav"))
        .unwrap()
        .samples;
    // 300 ms of silence, the 250 ms cough, then at once the 2337 ms sentence.
    let audio: Vec<i16> = [&cough[..4400], &speech[2400..]].concat();
    let mut vad = CascadeVad::new(VadConfig::default(), 8000).unwrap();
    let mut events = Vec::new();
    for frame in audio
        .chunks(160)
        .chain([[0i16; 160]; 50].iter().map(|f| &f[..]))
    {
        events.extend(
            vad.process(frame)
                .filter(|e| !matches!(e, VadEvent::Onset { .. } | VadEvent::OnsetWithdrawn)),
        );
    }
    let [
        VadEvent::SpeechStart { at_ms: start },
        VadEvent::SpeechEnd { at_ms: end },
    ] = events[..]
    else {
        panic!("{events:?}");
    };
    assert!(start.abs_diff(550) <= 60, "start {start}");
    assert!(end.abs_diff(550 + 2337) <= 60, "end {end}");
}

#[test]
fn reset_restarts_stream_time() {
    let clip = wav::read(format!("{ROOT}/audio/caller/thank_you_goodbye.wav")).unwrap();
    let mut vad = CascadeVad::new(VadConfig::default(), 8000).unwrap();
    let mut starts = Vec::new();
    for _ in 0..2 {
        for chunk in clip.samples.chunks(160) {
            if let Some(VadEvent::SpeechStart { at_ms }) = vad.process(chunk) {
                starts.push(at_ms);
            }
        }
        assert!(vad.is_speaking());
        vad.reset();
        assert!(!vad.is_speaking());
    }
    assert_eq!(starts, [300, 300]);
}
