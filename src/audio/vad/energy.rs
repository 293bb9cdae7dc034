//! The cheap half of the cascade: frame energy against an adaptive noise floor.
//!
//! It runs on every frame of every call, so it is a handful of arithmetic per sample (about
//! 0.1 µs a 20 ms frame). It does not try to tell speech from other sounds — a cough, a door or
//! music pass it — it only finds the moments worth asking the neural model about, and it marks
//! where activity starts and stops, which is where speech edges are.
//!
//! Levels are measured after a 300 Hz high-pass (a 2nd-order Butterworth biquad): speech keeps
//! nearly all its energy there while hum, rumble and the low end of street or fan noise go,
//! which gains 3–4 dB of speech-to-noise on the noisy test clips and keeps word endings above
//! the floor.
//!
//! The floor follows the quietest recent frames: it drops at once to a quieter frame, moves
//! quickly toward frames within 3 dB of it and creeps up by 2.5 dB/s on louder ones, so a
//! steady noise (a fan, a line hum, a noisy street) is absorbed within a few seconds while
//! speech, which dips between words, stays above it.

/// Level treated as the quietest possible (digital silence), dBFS.
const FLOOR_MIN_DB: f32 = -90.0;
/// Frames below this level are never active, whatever the floor (quiet line hiss), dBFS.
const ABSOLUTE_MIN_DB: f32 = -55.0;
/// Frames spent learning the floor at the start of a stream.
const WARMUP_FRAMES: u32 = 10;
/// Upward creep of the floor on frames louder than noise, dB per frame (2.5 dB/s at 20 ms).
const RISE_DB: f32 = 0.05;
/// Frames within this much of the floor are noise and the floor follows them.
const NOISE_BAND_DB: f32 = 3.0;
/// Share of the margin that keeps an ongoing activity going.
const CONTINUE_MARGIN_SHARE: f32 = 0.5;
/// Share of the distance to a noise frame's level the floor moves each frame.
const FOLLOW_INACTIVE: f32 = 0.1;

/// High-pass corner, Hz.
const HIGH_PASS_HZ: f32 = 300.0;

/// Energy detector state for one stream: a few bytes.
#[derive(Debug, Clone)]
pub struct EnergyDetector {
    /// How far above the floor a frame must be to count as active, dB.
    margin_db: f32,
    high_pass: Biquad,
    floor_db: f32,
    frames: u32,
    last_level_db: f32,
    /// Smoothed recent level (about 100 ms), for [`EnergyDetector::treat_as_noise`].
    recent_db: f32,
}

impl EnergyDetector {
    /// A detector for audio at `sample_rate` (8000 or 16000 Hz in practice).
    pub fn new(margin_db: f32, sample_rate: u32) -> Self {
        Self {
            margin_db,
            high_pass: Biquad::high_pass(HIGH_PASS_HZ, sample_rate as f32),
            floor_db: FLOOR_MIN_DB,
            frames: 0,
            last_level_db: FLOOR_MIN_DB,
            recent_db: FLOOR_MIN_DB,
        }
    }

    pub fn reset(&mut self) {
        self.high_pass.clear();
        self.floor_db = FLOOR_MIN_DB;
        self.frames = 0;
        self.last_level_db = FLOOR_MIN_DB;
        self.recent_db = FLOOR_MIN_DB;
    }

    /// Says the current sound is background (the neural model rejected it): the floor jumps
    /// to just under its level instead of creeping up for seconds. A wrong call costs little:
    /// the floor drops again at the first quieter frame.
    pub fn treat_as_noise(&mut self) {
        self.floor_db = self.floor_db.max(self.recent_db - NOISE_BAND_DB);
    }

    /// The current noise floor, dBFS.
    pub fn floor_db(&self) -> f32 {
        self.floor_db
    }

    /// The last frame's level, dBFS.
    pub fn last_level_db(&self) -> f32 {
        self.last_level_db
    }

    /// Whether `frame` stands out from the noise floor; updates the floor. `continuing` says
    /// the previous frames were active: the margin is then lower (hysteresis), so the quiet
    /// ends of words ("-tion", a trailing "s") still count.
    pub fn process(&mut self, frame: &[i16], continuing: bool) -> bool {
        let level = self.high_pass.level_db(frame);
        self.last_level_db = level;
        self.recent_db += 0.2 * (level - self.recent_db);
        if self.frames < WARMUP_FRAMES {
            // Learn the floor from the quietest of the first frames.
            self.floor_db = if self.frames == 0 {
                level
            } else {
                self.floor_db.min(level)
            };
            self.frames += 1;
        }
        let margin = if continuing {
            self.margin_db * CONTINUE_MARGIN_SHARE
        } else {
            self.margin_db
        };
        let active = level > self.floor_db + margin && level > ABSOLUTE_MIN_DB;
        if level < self.floor_db {
            self.floor_db = level;
        } else if level < self.floor_db + NOISE_BAND_DB {
            self.floor_db += FOLLOW_INACTIVE * (level - self.floor_db);
        } else {
            // Louder than noise: maybe speech (even if below the margin), so only creep up.
            self.floor_db += RISE_DB;
        }
        active
    }
}

/// A 2nd-order IIR section (RBJ cookbook), transposed direct form II.
#[derive(Debug, Clone)]
struct Biquad {
    b: [f32; 3],
    a: [f32; 2],
    z: [f32; 2],
}

impl Biquad {
    fn high_pass(corner_hz: f32, sample_rate: f32) -> Self {
        let w0 = 2.0 * std::f32::consts::PI * corner_hz / sample_rate;
        let alpha = w0.sin() / (2.0 * std::f32::consts::FRAC_1_SQRT_2);
        let cos = w0.cos();
        let a0 = 1.0 + alpha;
        Self {
            b: [
                (1.0 + cos) / 2.0 / a0,
                -(1.0 + cos) / a0,
                (1.0 + cos) / 2.0 / a0,
            ],
            a: [-2.0 * cos / a0, (1.0 - alpha) / a0],
            z: [0.0; 2],
        }
    }

    fn clear(&mut self) {
        self.z = [0.0; 2];
    }

    /// Filters `frame` and returns the level of the result, dBFS.
    fn level_db(&mut self, frame: &[i16]) -> f32 {
        if frame.is_empty() {
            return FLOOR_MIN_DB;
        }
        let [b0, b1, b2] = self.b;
        let [a1, a2] = self.a;
        let [mut z1, mut z2] = self.z;
        let mut power = 0.0f32;
        for &s in frame {
            let x = f32::from(s);
            let y = b0 * x + z1;
            z1 = b1 * x - a1 * y + z2;
            z2 = b2 * x - a2 * y;
            power += y * y;
        }
        // In digital silence the state decays into subnormal floats and settles there in a
        // ±1e-45 limit cycle, and arithmetic on subnormals costs ~100 cycles per operation on
        // many x86 cores (Intel's microcode assists): the whole VAD ran 6× slower on silence
        // there. Nothing under a millionth of one input step matters to a level, and from
        // there a frame cannot decay far enough to reach the subnormal range.
        let flush = |z: f32| if z.abs() < 1e-6 { 0.0 } else { z };
        self.z = [flush(z1), flush(z2)];
        let db = 10.0
            * (power / frame.len() as f32 / (32768.0 * 32768.0))
                .max(1e-12)
                .log10();
        db.max(FLOOR_MIN_DB)
    }
}

/// Level of a frame with its DC offset removed, dBFS (full-scale sine ≈ -3 dB).
pub fn level_db(frame: &[i16]) -> f32 {
    if frame.is_empty() {
        return FLOOR_MIN_DB;
    }
    // Eight independent lanes so the loop vectorises; f32 is exact enough for a level.
    let mut sum = [0.0f32; 8];
    let mut sum_sq = [0.0f32; 8];
    let chunks = frame.chunks_exact(8);
    let mut tail_sum = 0.0f32;
    let mut tail_sq = 0.0f32;
    for &s in chunks.remainder() {
        let x = f32::from(s);
        tail_sum += x;
        tail_sq += x * x;
    }
    for chunk in chunks {
        for i in 0..8 {
            let x = f32::from(chunk[i]);
            sum[i] += x;
            sum_sq[i] += x * x;
        }
    }
    let n = frame.len() as f32;
    let mean = (sum.iter().sum::<f32>() + tail_sum) / n;
    let power = (sum_sq.iter().sum::<f32>() + tail_sq) / n - mean * mean;
    let db = 10.0 * (power.max(1e-9) / (32768.0 * 32768.0)).log10();
    db.max(FLOOR_MIN_DB)
}

#[cfg(test)]
mod tests {

    #[test]
    fn the_high_pass_never_holds_subnormal_state_in_silence() {
        for rate in [8000.0, 16_000.0] {
            let mut filter = Biquad::high_pass(HIGH_PASS_HZ, rate);
            let loud: Vec<i16> = (0..160)
                .map(|n| ((n * 7919) % 20_000) as i16 - 10_000)
                .collect();
            filter.level_db(&loud);
            let silence = [0i16; 160];
            let mut seen = Vec::new();
            for _ in 0..500 {
                filter.level_db(&silence);
                seen.extend(filter.z);
            }
            let subnormal = seen.iter().filter(|z| z.is_subnormal()).count();
            let zero = seen.iter().filter(|z| **z == 0.0).count();
            assert_eq!(subnormal, 0, "{rate} Hz: {:?}", filter.z);
            assert!(zero > 0, "the state settles at zero");
        }
    }

    use super::*;

    #[test]
    fn levels() {
        assert_eq!(level_db(&[0; 160]), FLOOR_MIN_DB);
        assert_eq!(level_db(&[1000; 160]), FLOOR_MIN_DB, "DC is not sound");
        let sine: Vec<i16> = (0..160)
            .map(|n| ((n as f32 * 0.3).sin() * 32767.0) as i16)
            .collect();
        assert!((level_db(&sine) + 3.0).abs() < 0.5, "{}", level_db(&sine));
    }

    #[test]
    fn steady_noise_is_absorbed_and_a_loud_frame_stands_out() {
        let mut detector = EnergyDetector::new(9.0, 8000);
        let quiet: Vec<i16> = (0..160)
            .map(|n| if n % 4 < 2 { 300 } else { -300 })
            .collect();
        let loud: Vec<i16> = quiet.iter().map(|s| s * 10).collect();
        for _ in 0..20 {
            assert!(!detector.process(&quiet, false));
        }
        assert!(detector.process(&loud, false));
        assert!(!detector.process(&quiet, true));
    }
}
