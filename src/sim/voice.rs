//! The synthetic voice the TTS fakes speak with. Silence or a pure tone would let broken audio
//! handling pass unnoticed (and cannot be told apart by ear in a demo), so the fakes produce a
//! voiced sound: a few harmonics of a ~150 Hz fundamental with a slow intonation drift, shaped
//! into syllables (~5 per second) inside words and silent between words. Each character of text
//! takes about 65 ms, a realistic speaking rate, so durations and word timestamps scale with the
//! text like a real service's. Rendering is incremental (a fake never holds a whole utterance in
//! memory) and uses lookup tables, so thousands of simulated calls stay cheap.

use std::collections::VecDeque;
use std::sync::LazyLock;

use crate::audio::g711;

/// Milliseconds of speech per character of text.
pub const DEFAULT_MS_PER_CHAR: u32 = 65;

const TABLE_SIZE: usize = 1024;
const FUNDAMENTAL_HZ: f64 = 150.0;
/// Peak amplitude: loud enough to hear and measure, far from clipping.
const AMPLITUDE: f32 = 9000.0;
/// Fade at word edges, so words start and end without clicks.
const EDGE_FADE_MS: u64 = 8;
/// Characters per syllable (with 65 ms characters: ~5 syllables a second).
const CHARS_PER_SYLLABLE: u64 = 3;

/// One period of the glottal-like waveform: harmonics with amplitudes falling as 1/k^1.2.
static VOICED_PERIOD: LazyLock<[f32; TABLE_SIZE]> = LazyLock::new(|| {
    let mut table = [0f32; TABLE_SIZE];
    let mut peak = 0f32;
    for (i, slot) in table.iter_mut().enumerate() {
        let x = i as f64 / TABLE_SIZE as f64;
        let v: f64 = (1..=6)
            .map(|k| (std::f64::consts::TAU * k as f64 * x).sin() / (k as f64).powf(1.2))
            .sum();
        *slot = v as f32;
        peak = peak.max(slot.abs());
    }
    for slot in &mut table {
        *slot /= peak;
    }
    table
});

static SINE: LazyLock<[f32; TABLE_SIZE]> = LazyLock::new(|| {
    let mut table = [0f32; TABLE_SIZE];
    for (i, slot) in table.iter_mut().enumerate() {
        *slot = (std::f64::consts::TAU * i as f64 / TABLE_SIZE as f64).sin() as f32;
    }
    table
});

fn lookup(table: &[f32; TABLE_SIZE], phase: f64) -> f32 {
    table[((phase.fract() * TABLE_SIZE as f64) as usize) % TABLE_SIZE]
}

/// A word of an utterance and where it sits, in samples from the utterance's start.
#[derive(Debug, Clone, PartialEq)]
pub struct SpokenWord {
    pub word: String,
    pub start: u64,
    pub end: u64,
}

/// One utterance being spoken: text is laid out on a timeline as it arrives and rendered in
/// pieces of any size.
#[derive(Debug)]
pub struct SyntheticVoice {
    sample_rate: u32,
    samples_per_char: u64,
    /// Voiced spans `[start, end)` not yet fully rendered.
    voiced: VecDeque<(u64, u64)>,
    laid_out: u64,
    rendered: u64,
    phase: f64,
}

impl SyntheticVoice {
    pub fn new(sample_rate: u32, ms_per_char: u32) -> Self {
        Self {
            sample_rate,
            samples_per_char: (u64::from(sample_rate) * u64::from(ms_per_char.max(1)) / 1000)
                .max(1),
            voiced: VecDeque::new(),
            laid_out: 0,
            rendered: 0,
            phase: 0.0,
        }
    }

    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Appends `text` to the utterance; returns its words with their place on the timeline.
    /// Letters and digits are voiced; spaces and punctuation are pauses.
    pub fn say(&mut self, text: &str) -> Vec<SpokenWord> {
        let mut words = Vec::new();
        let mut current: Option<SpokenWord> = None;
        for c in text.chars() {
            let start = self.laid_out;
            let end = start + self.samples_per_char;
            self.laid_out = end;
            if c.is_whitespace() {
                words.extend(current.take());
                continue;
            }
            let word = current.get_or_insert_with(|| SpokenWord {
                word: String::new(),
                start,
                end,
            });
            word.word.push(c);
            word.end = end;
            if c.is_alphanumeric() {
                match self.voiced.back_mut() {
                    Some(span) if span.1 == start => span.1 = end,
                    _ => self.voiced.push_back((start, end)),
                }
            }
        }
        words.extend(current);
        words
    }

    /// Samples laid out but not rendered yet.
    pub fn remaining(&self) -> u64 {
        self.laid_out - self.rendered
    }

    /// Samples rendered so far.
    pub fn rendered(&self) -> u64 {
        self.rendered
    }

    /// Samples of the whole utterance so far.
    pub fn laid_out(&self) -> u64 {
        self.laid_out
    }

    /// Appends up to `max` samples of the utterance to `out`.
    pub fn render(&mut self, max: usize, out: &mut Vec<i16>) {
        let count = (max as u64).min(self.remaining());
        let rate = f64::from(self.sample_rate);
        let fade = (u64::from(self.sample_rate) * EDGE_FADE_MS / 1000).max(1);
        let syllable = self.samples_per_char * CHARS_PER_SYLLABLE;
        out.reserve(count as usize);
        for i in self.rendered..self.rendered + count {
            while self.voiced.front().is_some_and(|&(_, end)| end <= i) {
                self.voiced.pop_front();
            }
            // Intonation: the pitch drifts ±8% at under 1 Hz.
            let drift = lookup(&SINE, 0.9 * i as f64 / rate);
            self.phase =
                (self.phase + FUNDAMENTAL_HZ * (1.0 + 0.08 * f64::from(drift)) / rate).fract();
            let sample = match self.voiced.front() {
                Some(&(start, end)) if start <= i => {
                    let edge = ((i - start).min(end - i) as f32 / fade as f32).min(1.0);
                    let x = ((i - start) % syllable) as f32 / syllable as f32;
                    let syllable_envelope = 0.3 + 0.7 * 4.0 * x * (1.0 - x);
                    lookup(&VOICED_PERIOD, self.phase) * AMPLITUDE * edge * syllable_envelope
                }
                _ => 0.0,
            };
            out.push(sample as i16);
        }
        self.rendered += count;
    }
}

/// How a fake writes samples on the wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SampleEncoding {
    /// Signed 16-bit little endian.
    Pcm16,
    /// 32-bit float little endian.
    F32,
    Mulaw,
    Alaw,
}

impl SampleEncoding {
    pub fn bytes_per_sample(self) -> usize {
        match self {
            SampleEncoding::Pcm16 => 2,
            SampleEncoding::F32 => 4,
            SampleEncoding::Mulaw | SampleEncoding::Alaw => 1,
        }
    }

    /// WAVE `fmt ` format tag and bits per sample.
    fn wav_format(self) -> (u16, u16) {
        match self {
            SampleEncoding::Pcm16 => (1, 16),
            SampleEncoding::F32 => (3, 32),
            SampleEncoding::Alaw => (6, 8),
            SampleEncoding::Mulaw => (7, 8),
        }
    }
}

/// Appends `samples` to `out` in `encoding`.
pub fn encode(samples: &[i16], encoding: SampleEncoding, out: &mut Vec<u8>) {
    out.reserve(samples.len() * encoding.bytes_per_sample());
    match encoding {
        SampleEncoding::Pcm16 => out.extend(samples.iter().flat_map(|s| s.to_le_bytes())),
        SampleEncoding::F32 => out.extend(
            samples
                .iter()
                .flat_map(|&s| (f32::from(s) / 32768.0).to_le_bytes()),
        ),
        SampleEncoding::Mulaw => out.extend(samples.iter().map(|&s| g711::mulaw_encode(s))),
        SampleEncoding::Alaw => out.extend(samples.iter().map(|&s| g711::alaw_encode(s))),
    }
}

/// A WAV header for `data_len` bytes of mono audio. With `list_chunk`, a `LIST/INFO` chunk sits
/// between `fmt ` and `data`, as some encoders write it (clients must not assume 44 bytes).
pub fn wav_header(
    encoding: SampleEncoding,
    sample_rate: u32,
    data_len: u32,
    list_chunk: bool,
) -> Vec<u8> {
    const LIST: &[u8] = b"INFOISFT\x0e\x00\x00\x00voxbridge sim\x00";
    let (format_tag, bits) = encoding.wav_format();
    let block_align = bits / 8;
    let list_len = if list_chunk { 8 + LIST.len() } else { 0 };
    let riff_len = 4 + (8 + 16) + list_len + 8 + data_len as usize;
    let mut h = Vec::with_capacity(12 + riff_len - data_len as usize);
    h.extend_from_slice(b"RIFF");
    h.extend_from_slice(&(riff_len.min(u32::MAX as usize) as u32).to_le_bytes());
    h.extend_from_slice(b"WAVE");
    h.extend_from_slice(b"fmt ");
    h.extend_from_slice(&16u32.to_le_bytes());
    h.extend_from_slice(&format_tag.to_le_bytes());
    h.extend_from_slice(&1u16.to_le_bytes());
    h.extend_from_slice(&sample_rate.to_le_bytes());
    h.extend_from_slice(&(sample_rate * u32::from(block_align)).to_le_bytes());
    h.extend_from_slice(&block_align.to_le_bytes());
    h.extend_from_slice(&bits.to_le_bytes());
    if list_chunk {
        h.extend_from_slice(b"LIST");
        h.extend_from_slice(&(LIST.len() as u32).to_le_bytes());
        h.extend_from_slice(LIST);
    }
    h.extend_from_slice(b"data");
    h.extend_from_slice(&data_len.to_le_bytes());
    h
}

/// A whole WAV file of `text` spoken by the synthetic voice.
pub fn wav_file(
    text: &str,
    encoding: SampleEncoding,
    sample_rate: u32,
    ms_per_char: u32,
    list_chunk: bool,
) -> Vec<u8> {
    let data = speak_all(text, encoding, sample_rate, ms_per_char);
    let mut file = wav_header(encoding, sample_rate, data.len() as u32, list_chunk);
    file.extend_from_slice(&data);
    file
}

/// All of `text` as raw audio in `encoding`.
pub fn speak_all(
    text: &str,
    encoding: SampleEncoding,
    sample_rate: u32,
    ms_per_char: u32,
) -> Vec<u8> {
    let mut voice = SyntheticVoice::new(sample_rate, ms_per_char);
    voice.say(text);
    let mut samples = Vec::new();
    voice.render(voice.remaining() as usize, &mut samples);
    let mut out = Vec::new();
    encode(&samples, encoding, &mut out);
    out
}

/// Irregular chunk sizes, like a real service's: 20–120 ms, deterministic per seed.
#[derive(Debug, Clone)]
pub struct ChunkSizes {
    state: u64,
}

impl ChunkSizes {
    pub fn new(seed: u64) -> Self {
        Self {
            state: seed ^ 0x9E37_79B9_7F4A_7C15,
        }
    }

    fn next_u64(&mut self) -> u64 {
        // SplitMix64.
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Samples in the next chunk at `sample_rate`.
    pub fn next_samples(&mut self, sample_rate: u32) -> usize {
        let ms = 20 + self.next_u64() % 101;
        (u64::from(sample_rate) * ms / 1000).max(1) as usize
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }
}

/// A seed from any string (a context id), so a fake's chunking is reproducible.
pub fn seed_from(s: &str) -> u64 {
    s.bytes().fold(0xCBF2_9CE4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01B3)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rms(samples: &[i16]) -> f64 {
        (samples.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / samples.len() as f64).sqrt()
    }

    #[test]
    fn duration_scales_with_text() {
        let mut voice = SyntheticVoice::new(8000, DEFAULT_MS_PER_CHAR);
        voice.say("Hello there");
        assert_eq!(voice.remaining(), 11 * 520);
        voice.say(", friend");
        assert_eq!(voice.laid_out(), 19 * 520);
    }

    #[test]
    fn words_are_timed_and_voiced_between_pauses() {
        let mut voice = SyntheticVoice::new(16_000, DEFAULT_MS_PER_CHAR);
        let words = voice.say("Hi, you");
        let spc = 16 * 65;
        assert_eq!(
            words,
            vec![
                SpokenWord {
                    word: "Hi,".into(),
                    start: 0,
                    end: 3 * spc
                },
                SpokenWord {
                    word: "you".into(),
                    start: 4 * spc,
                    end: 7 * spc
                },
            ]
        );
        let mut samples = Vec::new();
        voice.render(usize::MAX, &mut samples);
        assert_eq!(samples.len() as u64, 7 * spc);
        let in_word = &samples[spc as usize / 2..(2 * spc) as usize];
        let in_gap = &samples[(3 * spc) as usize..(4 * spc) as usize];
        assert!(rms(in_word) > 1000.0, "voiced: {}", rms(in_word));
        assert_eq!(rms(in_gap), 0.0);
    }

    #[test]
    fn it_is_not_a_pure_tone() {
        // The first difference weights energy by frequency: for a pure tone at f0 its RMS ratio
        // is 2·sin(π·f0/rate); harmonics above f0 push the ratio well beyond that.
        let mut voice = SyntheticVoice::new(16_000, DEFAULT_MS_PER_CHAR);
        voice.say("aaaaaaaaaaaa");
        let mut samples = Vec::new();
        voice.render(usize::MAX, &mut samples);
        let diff: Vec<i16> = samples
            .windows(2)
            .map(|w| w[1].wrapping_sub(w[0]))
            .collect();
        let ratio = rms(&diff) / rms(&samples);
        let pure_tone_ratio = 2.0 * (std::f64::consts::PI * 150.0 / 16_000.0).sin();
        assert!(
            ratio > 1.5 * pure_tone_ratio,
            "{ratio} vs {pure_tone_ratio}"
        );
    }

    #[test]
    fn rendering_in_pieces_equals_rendering_at_once() {
        let mut a = SyntheticVoice::new(8000, 65);
        let mut b = SyntheticVoice::new(8000, 65);
        a.say("one two three");
        b.say("one two three");
        let mut whole = Vec::new();
        a.render(usize::MAX, &mut whole);
        let mut pieces = Vec::new();
        let mut sizes = ChunkSizes::new(7);
        while b.remaining() > 0 {
            b.render(sizes.next_samples(8000), &mut pieces);
        }
        assert_eq!(whole, pieces);
    }

    #[test]
    fn wav_header_sizes() {
        let file = wav_file("ab", SampleEncoding::Pcm16, 8000, 65, true);
        let data_len = 2 * 520 * 2;
        assert_eq!(&file[..4], b"RIFF");
        assert_eq!(
            u32::from_le_bytes(file[4..8].try_into().unwrap()) as usize,
            file.len() - 8
        );
        assert_eq!(
            &file[file.len() - data_len - 8..file.len() - data_len - 4],
            b"data"
        );
    }
}
