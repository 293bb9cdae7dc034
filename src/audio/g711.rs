//! G.711 μ-law and A-law (ITU-T G.711), the codecs of telephone audio.
//!
//! Every phone call decodes 8000 and encodes up to 8000 samples a second, so both directions are
//! single table loads: decoding through a 256-entry table, encoding through a table indexed by
//! the sample rounded to G.711's linear resolution (14 bits for μ-law, 13 for A-law; 16 KiB and
//! 8 KiB, built at compile time). The tables come from the reference segment-search algorithm
//! (Sun/CCITT `g711.c`), and the 16-bit to 14/13-bit step rounds to nearest, as sox does: the
//! output is bit-exact with `sox` for every one of the 65 536 inputs and 256 codes (see the tests
//! against `audio/g711/`, made by `audio/make_assets.sh`).
//!
//! Note for readers of other implementations: the common "bias 0x84, clip 32635" 16-bit encoder
//! truncates instead of rounding, so it differs from sox (and from this module) in the last code
//! step for about 1 % of inputs, e.g. `-1` is `0x7F` there and `0xFF` here. Both decode with the
//! same tables.

/// μ-law magnitude clip in the 14-bit domain (G.711's top decision level).
const MULAW_CLIP: i32 = 8159;
/// μ-law bias in the 14-bit domain (0x84 >> 2).
const MULAW_BIAS: i32 = 33;
/// Upper ends of the 8 μ-law segments (14-bit domain, after the bias).
const MULAW_SEGMENT_END: [i32; 8] = [0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF, 0x1FFF];
/// Upper ends of the 8 A-law segments (13-bit domain).
const ALAW_SEGMENT_END: [i32; 8] = [0x1F, 0x3F, 0x7F, 0xFF, 0x1FF, 0x3FF, 0x7FF, 0xFFF];

const fn segment(value: i32, ends: &[i32; 8]) -> usize {
    let mut i = 0;
    while i < 8 {
        if value <= ends[i] {
            return i;
        }
        i += 1;
    }
    8
}

/// Reference μ-law encoder on a 14-bit sample (-8192..=8191): the segment search of G.711.
const fn mulaw_encode_14(sample: i32) -> u8 {
    let (magnitude, mask) = if sample < 0 {
        (-sample, 0x7Fu8)
    } else {
        (sample, 0xFFu8)
    };
    let magnitude = if magnitude > MULAW_CLIP {
        MULAW_CLIP
    } else {
        magnitude
    } + MULAW_BIAS;
    let seg = segment(magnitude, &MULAW_SEGMENT_END);
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    let code = ((seg as i32) << 4) | ((magnitude >> (seg + 1)) & 0x0F);
    (code as u8) ^ mask
}

/// Reference A-law encoder on a 13-bit sample (-4096..=4095).
const fn alaw_encode_13(sample: i32) -> u8 {
    let (magnitude, mask) = if sample >= 0 {
        (sample, 0xD5u8)
    } else {
        (-sample - 1, 0x55u8)
    };
    let seg = segment(magnitude, &ALAW_SEGMENT_END);
    if seg >= 8 {
        return 0x7F ^ mask;
    }
    let quant = if seg < 2 {
        (magnitude >> 1) & 0x0F
    } else {
        (magnitude >> seg) & 0x0F
    };
    (((seg as i32) << 4) | quant) as u8 ^ mask
}

/// 16-bit sample to its μ-law table index: rounded to 14 bits, offset to 0..=16383.
#[inline(always)]
const fn mulaw_index(sample: i16) -> usize {
    let rounded = (sample as i32 + 2) >> 2;
    let rounded = if rounded > 8191 { 8191 } else { rounded };
    (rounded + 8192) as usize
}

/// 16-bit sample to its A-law table index: rounded to 13 bits, offset to 0..=8191.
#[inline(always)]
const fn alaw_index(sample: i16) -> usize {
    let rounded = (sample as i32 + 4) >> 3;
    let rounded = if rounded > 4095 { 4095 } else { rounded };
    (rounded + 4096) as usize
}

const fn mulaw_decode_const(byte: u8) -> i16 {
    let byte = !byte;
    let exponent = ((byte >> 4) & 0x07) as i32;
    let mantissa = (byte & 0x0F) as i32;
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    if byte & 0x80 != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

const fn alaw_decode_const(byte: u8) -> i16 {
    let byte = byte ^ 0x55;
    let exponent = ((byte >> 4) & 0x07) as i32;
    let mantissa = (byte & 0x0F) as i32;
    let magnitude = if exponent == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (exponent - 1)
    };
    if byte & 0x80 != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

static MULAW_TO_PCM: [i16; 256] = {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = mulaw_decode_const(i as u8);
        i += 1;
    }
    t
};

static ALAW_TO_PCM: [i16; 256] = {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = alaw_decode_const(i as u8);
        i += 1;
    }
    t
};

static PCM14_TO_MULAW: [u8; 16384] = {
    let mut t = [0u8; 16384];
    let mut i = 0;
    while i < 16384 {
        t[i] = mulaw_encode_14(i as i32 - 8192);
        i += 1;
    }
    t
};

static PCM13_TO_ALAW: [u8; 8192] = {
    let mut t = [0u8; 8192];
    let mut i = 0;
    while i < 8192 {
        t[i] = alaw_encode_13(i as i32 - 4096);
        i += 1;
    }
    t
};

/// Encodes one PCM16 sample to a μ-law byte.
#[inline]
pub fn mulaw_encode(sample: i16) -> u8 {
    PCM14_TO_MULAW[mulaw_index(sample)]
}

/// Decodes one μ-law byte.
#[inline]
pub fn mulaw_decode(byte: u8) -> i16 {
    MULAW_TO_PCM[byte as usize]
}

/// Encodes one PCM16 sample to an A-law byte.
#[inline]
pub fn alaw_encode(sample: i16) -> u8 {
    PCM13_TO_ALAW[alaw_index(sample)]
}

/// Decodes one A-law byte.
#[inline]
pub fn alaw_decode(byte: u8) -> i16 {
    ALAW_TO_PCM[byte as usize]
}

/// Encodes one sample with the segment search instead of the table: the "before" of the
/// benchmark, and the tables' cross-check.
#[doc(hidden)]
pub fn mulaw_encode_by_search(sample: i16) -> u8 {
    let rounded = ((i32::from(sample) + 2) >> 2).min(8191);
    mulaw_encode_14(rounded)
}

/// μ-law bytes to PCM16, slice to slice (`out` must be at least as long as `bytes`; the rest
/// is left untouched). The form for fixed frame buffers.
pub fn decode_mulaw(bytes: &[u8], out: &mut [i16]) {
    for (o, &b) in out.iter_mut().zip(bytes) {
        *o = mulaw_decode(b);
    }
}

/// PCM16 to μ-law bytes, slice to slice (`out` must be at least as long as `samples`).
pub fn encode_mulaw(samples: &[i16], out: &mut [u8]) {
    for (o, &s) in out.iter_mut().zip(samples) {
        *o = mulaw_encode(s);
    }
}

/// A-law bytes to PCM16, slice to slice.
pub fn decode_alaw(bytes: &[u8], out: &mut [i16]) {
    for (o, &b) in out.iter_mut().zip(bytes) {
        *o = alaw_decode(b);
    }
}

/// PCM16 to A-law bytes, slice to slice.
pub fn encode_alaw(samples: &[i16], out: &mut [u8]) {
    for (o, &s) in out.iter_mut().zip(samples) {
        *o = alaw_encode(s);
    }
}

/// Decodes μ-law bytes into `out` (cleared first; no allocation once it has the capacity).
pub fn decode_mulaw_into(bytes: &[u8], out: &mut Vec<i16>) {
    out.clear();
    out.extend(bytes.iter().map(|&b| mulaw_decode(b)));
}

/// Encodes PCM16 samples as μ-law into `out` (cleared first).
pub fn encode_mulaw_into(samples: &[i16], out: &mut Vec<u8>) {
    out.clear();
    out.extend(samples.iter().map(|&s| mulaw_encode(s)));
}

/// Decodes A-law bytes into `out` (cleared first).
pub fn decode_alaw_into(bytes: &[u8], out: &mut Vec<i16>) {
    out.clear();
    out.extend(bytes.iter().map(|&b| alaw_decode(b)));
}

/// Encodes PCM16 samples as A-law into `out` (cleared first).
pub fn encode_alaw_into(samples: &[i16], out: &mut Vec<u8>) {
    out.clear();
    out.extend(samples.iter().map(|&s| alaw_encode(s)));
}

/// Silence in μ-law (the code of 0).
pub const MULAW_SILENCE: u8 = 0xFF;
/// Silence in A-law (the code of 0).
pub const ALAW_SILENCE: u8 = 0xD5;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::wav;
    use std::path::Path;

    fn asset(name: &str) -> Vec<u8> {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("audio/g711")
            .join(name);
        std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn pcm16_le(bytes: &[u8]) -> Vec<i16> {
        bytes
            .chunks_exact(2)
            .map(|b| i16::from_le_bytes([b[0], b[1]]))
            .collect()
    }

    #[test]
    fn encoders_match_sox_for_every_input() {
        let sox_mulaw = asset("every_pcm16.ulaw");
        let sox_alaw = asset("every_pcm16.alaw");
        for (i, sample) in (i16::MIN..=i16::MAX).enumerate() {
            assert_eq!(mulaw_encode(sample), sox_mulaw[i], "μ-law of {sample}");
            assert_eq!(alaw_encode(sample), sox_alaw[i], "A-law of {sample}");
            assert_eq!(mulaw_encode_by_search(sample), sox_mulaw[i]);
        }
    }

    #[test]
    fn decoders_match_sox_for_every_code() {
        let mulaw = pcm16_le(&asset("every_code_ulaw.s16"));
        let alaw = pcm16_le(&asset("every_code_alaw.s16"));
        for code in 0..=255u8 {
            assert_eq!(
                mulaw_decode(code),
                mulaw[code as usize],
                "μ-law {code:#04x}"
            );
            assert_eq!(alaw_decode(code), alaw[code as usize], "A-law {code:#04x}");
        }
    }

    #[test]
    fn speech_encodes_like_sox() {
        let speech =
            wav::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("audio/g711/speech_8k.wav"))
                .expect("speech asset");
        assert_eq!(speech.sample_rate, 8000);
        let mut mulaw = vec![0u8; speech.samples.len()];
        encode_mulaw(&speech.samples, &mut mulaw);
        assert_eq!(mulaw, asset("speech_8k.ulaw"));
        let mut alaw = Vec::new();
        encode_alaw_into(&speech.samples, &mut alaw);
        assert_eq!(alaw, asset("speech_8k.alaw"));
    }

    #[test]
    fn known_values() {
        // ITU-T G.711 full scale and silence codes.
        assert_eq!(mulaw_encode(0), MULAW_SILENCE);
        assert_eq!(mulaw_encode(i16::MAX), 0x80);
        assert_eq!(mulaw_encode(i16::MIN), 0x00);
        assert_eq!(mulaw_encode(1000), 0xCE);
        assert_eq!(mulaw_decode(0xCE), 988);
        assert_eq!(mulaw_decode(0x80), 32124);
        assert_eq!(alaw_encode(0), ALAW_SILENCE);
        assert_eq!(alaw_encode(-8), 0x55);
        assert_eq!(alaw_encode(i16::MAX), 0xAA);
        assert_eq!(alaw_encode(i16::MIN), 0x2A);
        assert_eq!(alaw_decode(0xAA), 32256);
    }

    #[test]
    fn every_code_round_trips() {
        for byte in 0..=255u8 {
            // 0x7F and 0xFF both decode to 0 ("negative zero"); 0 encodes as 0xFF.
            let expect = if byte == 0x7F { 0xFF } else { byte };
            assert_eq!(mulaw_encode(mulaw_decode(byte)), expect, "{byte:#04x}");
            assert_eq!(alaw_encode(alaw_decode(byte)), byte, "{byte:#04x}");
        }
    }
}
