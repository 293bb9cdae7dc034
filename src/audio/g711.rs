//! G.711 μ-law and A-law (ITU-T G.711), the codecs of telephone audio. Encoding follows the
//! reference algorithm (bias 0x84 and clip 32635 for μ-law; segment search for A-law); decoding
//! uses 256-entry tables built at compile time, so a sample costs one load.

const MULAW_BIAS: i32 = 0x84;
const MULAW_CLIP: i32 = 32_635;

/// Encodes one PCM16 sample to a μ-law byte.
#[inline]
pub fn mulaw_encode(sample: i16) -> u8 {
    let mut pcm = i32::from(sample);
    let sign = if pcm < 0 {
        pcm = -pcm;
        0x80
    } else {
        0
    };
    pcm = pcm.min(MULAW_CLIP) + MULAW_BIAS;
    // Segment = position of the highest set bit above bit 7.
    let exponent = (31 - (pcm as u32).leading_zeros()).saturating_sub(7).min(7) as i32;
    let mantissa = (pcm >> (exponent + 3)) & 0x0F;
    !(sign | (exponent << 4) as u8 | mantissa as u8)
}

const fn mulaw_decode_const(byte: u8) -> i16 {
    let byte = !byte;
    let sign = byte & 0x80;
    let exponent = ((byte >> 4) & 0x07) as i32;
    let mantissa = (byte & 0x0F) as i32;
    let magnitude = (((mantissa << 3) + MULAW_BIAS) << exponent) - MULAW_BIAS;
    if sign != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

/// Encodes one PCM16 sample to an A-law byte.
#[inline]
pub fn alaw_encode(sample: i16) -> u8 {
    let mut pcm = i32::from(sample);
    let sign = if pcm >= 0 {
        0xD5
    } else {
        pcm = -pcm - 1;
        0x55
    };
    let pcm = pcm.min(32_767);
    let byte = if pcm < 256 {
        (pcm >> 4) as u8
    } else {
        let exponent = (31 - (pcm as u32).leading_zeros()) as i32 - 7;
        ((exponent << 4) | ((pcm >> (exponent + 3)) & 0x0F)) as u8
    };
    byte ^ sign
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

const fn table(alaw: bool) -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = if alaw {
            alaw_decode_const(i as u8)
        } else {
            mulaw_decode_const(i as u8)
        };
        i += 1;
    }
    t
}

static MULAW_TO_PCM: [i16; 256] = table(false);
static ALAW_TO_PCM: [i16; 256] = table(true);

/// Decodes one μ-law byte.
#[inline]
pub fn mulaw_decode(byte: u8) -> i16 {
    MULAW_TO_PCM[byte as usize]
}

/// Decodes one A-law byte.
#[inline]
pub fn alaw_decode(byte: u8) -> i16 {
    ALAW_TO_PCM[byte as usize]
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Vectors from the Twilio protocol notes (Sun/ITU reference algorithm).
    #[test]
    fn mulaw_matches_reference_vectors() {
        let vectors: [(i16, u8, i16); 9] = [
            (0, 0xFF, 0),
            (-1, 0x7F, 0),
            (100, 0xF2, 104),
            (-100, 0x72, -104),
            (1000, 0xCE, 988),
            (-1000, 0x4E, -988),
            (8000, 0xA0, 7932),
            (32767, 0x80, 32124),
            (-32768, 0x00, -32124),
        ];
        for (pcm, byte, back) in vectors {
            assert_eq!(mulaw_encode(pcm), byte, "encode {pcm}");
            assert_eq!(mulaw_decode(byte), back, "decode {byte:#04x}");
        }
    }

    #[test]
    fn every_code_round_trips() {
        for byte in 0..=255u8 {
            // 0x7F and 0xFF both decode to 0 ("negative zero"); 0 encodes as 0xFF.
            let expect = if byte == 0x7F { 0xFF } else { byte };
            assert_eq!(
                mulaw_encode(mulaw_decode(byte)),
                expect,
                "mulaw {byte:#04x}"
            );
            assert_eq!(alaw_encode(alaw_decode(byte)), byte, "alaw {byte:#04x}");
        }
    }

    #[test]
    fn alaw_matches_reference_values() {
        // ITU-T G.711 A-law: silence codes and full scale.
        assert_eq!(alaw_encode(0), 0xD5);
        assert_eq!(alaw_encode(-1), 0x55);
        assert_eq!(alaw_decode(0xD5), 8);
        assert_eq!(alaw_decode(0x55), -8);
        assert_eq!(alaw_encode(32767), 0xAA);
        assert_eq!(alaw_encode(-32768), 0x2A);
        assert_eq!(alaw_decode(0xAA), 32256);
    }
}
