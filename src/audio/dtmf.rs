//! DTMF tones, for pressing keys on the far end's IVR. Media streams (Twilio's included) have no
//! message that sends a key, but every IVR hears the tones in the call's audio, so the agent
//! plays them like speech: each key 100 ms of its two frequencies (ITU-T Q.23), then 80 ms of
//! silence, in the transport's format.

use bytes::Bytes;

use super::{AudioFormat, Encoding, g711};

/// How long each key sounds, and the silence after it (Q.24 asks for at least 40 ms each).
const TONE_MS: u32 = 100;
const GAP_MS: u32 = 80;
/// Amplitude of each of the two components (the sum stays below full scale).
const AMPLITUDE: f32 = 0.35 * 32767.0;

/// The (row, column) frequencies of a key, in Hz.
pub fn frequencies(key: char) -> Option<(f32, f32)> {
    let row = match key {
        '1' | '2' | '3' => 697.0,
        '4' | '5' | '6' => 770.0,
        '7' | '8' | '9' => 852.0,
        '*' | '0' | '#' => 941.0,
        _ => return None,
    };
    let column = match key {
        '1' | '4' | '7' | '*' => 1209.0,
        '2' | '5' | '8' | '0' => 1336.0,
        _ => 1477.0,
    };
    Some((row, column))
}

/// The tones of `keys` (anything that is not a keypad key is skipped) in `format`.
pub fn tones(keys: &str, format: AudioFormat) -> Bytes {
    let rate = format.sample_rate as f32;
    let per_ms = format.sample_rate as usize / 1000;
    let mut samples: Vec<i16> = Vec::new();
    for (low, high) in keys.chars().filter_map(frequencies) {
        for n in 0..per_ms * TONE_MS as usize {
            let t = n as f32 / rate;
            let value = AMPLITUDE
                * ((std::f32::consts::TAU * low * t).sin()
                    + (std::f32::consts::TAU * high * t).sin());
            samples.push(value as i16);
        }
        samples.extend(std::iter::repeat_n(0, per_ms * GAP_MS as usize));
    }
    let bytes = match format.encoding {
        Encoding::Mulaw => samples.iter().map(|&s| g711::mulaw_encode(s)).collect(),
        Encoding::Alaw => samples.iter().map(|&s| g711::alaw_encode(s)).collect(),
        Encoding::Pcm16 => samples
            .iter()
            .flat_map(|s| s.to_le_bytes())
            .collect::<Vec<u8>>(),
    };
    Bytes::from(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Power of `frequency` in `samples` (Goertzel).
    fn power(samples: &[f32], frequency: f32, rate: f32) -> f32 {
        let k = 2.0 * (std::f32::consts::TAU * frequency / rate).cos();
        let (mut s1, mut s2) = (0.0f32, 0.0f32);
        for &x in samples {
            let s = x + k * s1 - s2;
            s2 = s1;
            s1 = s;
        }
        s1 * s1 + s2 * s2 - k * s1 * s2
    }

    #[test]
    fn each_key_sounds_its_two_frequencies_then_falls_silent() {
        let audio = tones("5#x", AudioFormat::MULAW_8K);
        // Two keys (the `x` is skipped), 180 ms each at 8000 bytes a second.
        assert_eq!(audio.len(), 2 * 180 * 8);
        let decode = |range: std::ops::Range<usize>| -> Vec<f32> {
            audio[range]
                .iter()
                .map(|&b| f32::from(g711::mulaw_decode(b)))
                .collect()
        };
        let five = decode(0..800);
        let all = [697.0, 770.0, 852.0, 941.0, 1209.0, 1336.0, 1477.0];
        let loudest: Vec<f32> = {
            let mut p: Vec<(f32, f32)> =
                all.iter().map(|&f| (power(&five, f, 8000.0), f)).collect();
            p.sort_by(|a, b| b.0.total_cmp(&a.0));
            let mut two = vec![p[0].1, p[1].1];
            two.sort_by(f32::total_cmp);
            two
        };
        assert_eq!(loudest, [770.0, 1336.0], "5 is 770 + 1336 Hz");
        assert!(
            audio[800..1440]
                .iter()
                .all(|&b| g711::mulaw_decode(b).abs() < 16)
        );
        let pcm = tones("1", AudioFormat::PCM16_16K);
        assert_eq!(pcm.len(), 180 * 16 * 2);
    }
}
