//! Pieces every JSON media-stream protocol needs (Twilio, Plivo, Exotel, Telnyx): base64 audio
//! decoded into a shared arena, so an inbound frame costs no allocation of its own, and a JSON
//! string escape for the frames we write by hand.

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

/// JSON-escapes a string we put between quotes. Stream ids and our mark names are plain ASCII;
/// this keeps a hostile value from breaking the frame anyway.
pub fn push_json_str(out: &mut String, s: &str) {
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
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
    fn strings_are_escaped() {
        let mut out = String::new();
        push_json_str(&mut out, "a\"b\\c\n");
        assert_eq!(out, r#"a\"b\\c\u000a"#);
    }
}
