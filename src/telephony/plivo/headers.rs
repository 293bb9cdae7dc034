//! Our call id and one-time stream token, carried in `<Stream extraHeaders>`. Plivo allows only
//! `[A-Za-z0-9]` in that attribute (keys and values), at most 512 bytes, while our call ids are
//! hyphenated UUIDs and our tokens base64url (`-`, `_`). Each value is therefore sent as the
//! lowercase hex of its bytes: alphanumeric, lossless, and small enough (a UUID is 72 hex
//! digits, a token 94; with the keys about 180 bytes). Plivo hands the string back in `start`
//! as `extra_headers`, joined by `,` in its XML docs and by `;` in its stream examples: both are
//! read.

/// The key of our call id (no `_`: keys are alphanumeric too).
pub const CALL_ID_KEY: &str = "callid";
/// The key of the one-time stream token.
pub const TOKEN_KEY: &str = "token";
/// Plivo's limit on the attribute.
pub const MAX_BYTES: usize = 512;

/// `callid=<hex>,token=<hex>`, or `None` if it would not fit Plivo's limit.
pub fn encode(call_id: &str, token: &str) -> Option<String> {
    let text = format!(
        "{CALL_ID_KEY}={},{TOKEN_KEY}={}",
        hex(call_id.as_bytes()),
        hex(token.as_bytes())
    );
    (text.len() <= MAX_BYTES).then_some(text)
}

/// Our call id and token from `extra_headers`, each `None` when missing or not our encoding.
pub fn decode(extra_headers: &str) -> (Option<String>, Option<String>) {
    let mut call_id = None;
    let mut token = None;
    for pair in extra_headers.split([',', ';']) {
        let Some((key, value)) = pair.split_once('=') else {
            continue;
        };
        // Plivo may prefix custom headers (`X-PH-`) on some paths; match the key's tail.
        let key = key.trim();
        let key = key.rsplit('-').next().unwrap_or(key);
        let slot = if key.eq_ignore_ascii_case(CALL_ID_KEY) {
            &mut call_id
        } else if key.eq_ignore_ascii_case(TOKEN_KEY) {
            &mut token
        } else {
            continue;
        };
        *slot = unhex(value.trim());
    }
    (call_id, token)
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[usize::from(b >> 4)] as char);
        out.push(DIGITS[usize::from(b & 15)] as char);
    }
    out
}

fn unhex(text: &str) -> Option<String> {
    if text.is_empty() || !text.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let bytes: Option<Vec<u8>> = text
        .as_bytes()
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect();
    String::from_utf8(bytes?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_ids_round_trip_as_alphanumerics_within_the_limit() {
        let call_id = "0d2f8d1c-7b5e-4c1a-9f00-123456789abc";
        let token = format!("vst_{}", "aB-_".repeat(11));
        let text = encode(call_id, &token).unwrap();
        assert!(text.len() <= MAX_BYTES, "{}", text.len());
        assert!(
            text.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'=' || b == b','),
            "{text}"
        );
        assert_eq!(
            decode(&text),
            (Some(call_id.to_owned()), Some(token.clone()))
        );
        // Plivo's `;`-joined form reads the same.
        assert_eq!(
            decode(&text.replace(',', ";")),
            (Some(call_id.to_owned()), Some(token))
        );
    }

    #[test]
    fn foreign_or_broken_values_are_none() {
        assert_eq!(decode(""), (None, None));
        assert_eq!(decode("userId=12345;sessionId=abc-xyz"), (None, None));
        assert_eq!(decode("callid=zz;token=123"), (None, None));
        assert_eq!(decode("callid=61;token"), (Some("a".into()), None));
        assert!(encode(&"x".repeat(300), "t").is_none());
    }
}
