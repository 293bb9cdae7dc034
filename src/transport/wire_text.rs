//! Pieces every JSON media-stream protocol needs (Twilio, Plivo, Exotel, Telnyx): base64 audio
//! decoded into a shared arena, so an inbound frame costs no allocation of its own; the tally of
//! frames a decoder skipped (Vonage's binary stream keeps one too); the keypad check for DTMF
//! events; and a JSON string escape for the frames we write by hand.

use std::fmt::{Display, Write};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use bytes::{Bytes, BytesMut};

/// Decodes base64 payloads into blocks of one growing buffer; each frame is a `Bytes` view of
/// its block, so many frames share one allocation.
pub struct Base64Arena {
    arena: BytesMut,
    block: usize,
}

impl Base64Arena {
    /// An arena that reserves `block` bytes at a time.
    pub fn new(block: usize) -> Self {
        Self {
            arena: BytesMut::with_capacity(block),
            block,
        }
    }

    /// The payload's bytes; `Ok(None)` for an empty payload.
    pub fn decode(&mut self, payload: &str) -> Result<Option<Bytes>, base64::DecodeSliceError> {
        let max_len = payload.len() / 4 * 3 + 3;
        if self.arena.capacity() < max_len {
            self.arena.reserve(self.block.max(max_len));
        }
        self.arena.resize(max_len, 0);
        match STANDARD.decode_slice(payload.as_bytes(), &mut self.arena[..]) {
            Ok(0) => {
                self.arena.clear();
                Ok(None)
            }
            Ok(n) => {
                self.arena.truncate(n);
                Ok(Some(self.arena.split().freeze()))
            }
            Err(e) => {
                self.arena.clear();
                Err(e)
            }
        }
    }
}

impl Base64Arena {
    /// A media frame's audio, or `None` (counted in `skipped`) for an empty or broken payload:
    /// one bad frame is skipped, never the end of the call.
    pub fn decode_audio(&mut self, payload: &str, skipped: &mut SkippedFrames) -> Option<Bytes> {
        match self.decode(payload) {
            Ok(Some(audio)) => Some(audio),
            Ok(None) => {
                skipped.skip("empty media payload", &"");
                None
            }
            Err(e) => {
                skipped.skip("bad base64", &e);
                None
            }
        }
    }
}

/// Frames a stream's decoder skipped (malformed, oversized, out of order, unknown). The first
/// few are worth a log line each; after that one in a thousand, so a misbehaving peer cannot
/// flood the log.
#[derive(Debug)]
pub struct SkippedFrames {
    provider: &'static str,
    count: u64,
}

impl SkippedFrames {
    pub fn new(provider: &'static str) -> Self {
        Self { provider, count: 0 }
    }

    /// How many so far.
    pub fn count(&self) -> u64 {
        self.count
    }

    pub fn skip(&mut self, why: &str, detail: &dyn Display) {
        self.count += 1;
        if self.count <= 5 || self.count.is_multiple_of(1000) {
            tracing::warn!(
                provider = self.provider,
                skipped = self.count,
                why,
                %detail,
                "media frame skipped"
            );
        }
    }
}

/// The key of a DTMF event's `digit` (its first character), when it is one a phone's keypad has
/// (`0`–`9`, `*`, `#`).
pub fn keypad_digit(digit: &str) -> Option<char> {
    digit
        .chars()
        .next()
        .filter(|&d| d.is_ascii_digit() || d == '*' || d == '#')
}

/// JSON-escapes a string we put between quotes. Stream ids and our mark names are plain ASCII;
/// this keeps a hostile value from breaking the frame anyway.
pub fn push_json_str(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => {
                // Written in place: no temporary string, even for a hostile value.
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_decode_into_independent_views_and_bad_input_leaves_nothing() {
        let mut arena = Base64Arena::new(64);
        let a = arena.decode(&STANDARD.encode([1u8; 160])).unwrap().unwrap();
        let b = arena.decode(&STANDARD.encode([2u8; 160])).unwrap().unwrap();
        assert!(a.len() == 160 && a.iter().all(|&x| x == 1));
        assert!(b.len() == 160 && b.iter().all(|&x| x == 2));
        assert_eq!(arena.decode("").unwrap(), None);
        assert!(arena.decode("!!!not base64!!!").is_err());
        let c = arena.decode(&STANDARD.encode([3u8; 3])).unwrap().unwrap();
        assert_eq!(&c[..], [3, 3, 3], "nothing of the bad frame left behind");
    }

    #[test]
    fn bad_payloads_are_counted_not_fatal() {
        let mut arena = Base64Arena::new(64);
        let mut skipped = SkippedFrames::new("test");
        assert!(arena.decode_audio("", &mut skipped).is_none());
        assert!(arena.decode_audio("%%%", &mut skipped).is_none());
        assert_eq!(skipped.count(), 2);
        let audio = arena.decode_audio(&STANDARD.encode([7u8; 5]), &mut skipped);
        assert_eq!(audio.as_deref(), Some(&[7u8; 5][..]));
        assert_eq!(skipped.count(), 2);
    }

    #[test]
    fn only_keypad_keys_are_digits() {
        for key in ["0", "9", "*", "#"] {
            assert_eq!(keypad_digit(key), key.chars().next());
        }
        for bad in ["", "A", "x", "٣"] {
            assert_eq!(keypad_digit(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn strings_are_escaped() {
        let mut out = String::new();
        push_json_str(&mut out, "a\"b\\c\n");
        assert_eq!(out, r#"a\"b\\c\u000a"#);
    }
}
