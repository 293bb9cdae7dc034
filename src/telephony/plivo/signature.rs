//! `X-Plivo-Signature-V3`: how Plivo proves a webhook came from it, and how the fake Plivo signs
//! what it sends. Computed as Plivo's SDKs compute it (`plivo-python`
//! `utils/signature_v3.py`, `plivo-node` `validateV3Signature`), because Plivo documents the
//! algorithm only through them:
//!
//! - the base is the URL without its query (`scheme://host/path`);
//! - the URL's query parameters, decoded, sorted by name (a repeated name once per value, values
//!   sorted), are appended as `?k=v&k=v` — for a POST with no query but with body parameters a
//!   bare `?` is appended;
//! - for a POST, the body parameters follow as `kv` pairs sorted the same way, with no
//!   separators, after a `.` when the URL had a query;
//! - the signature is base64(HMAC-SHA256(auth token, that string + `.` + the nonce from
//!   `X-Plivo-Signature-V3-Nonce`)).
//!
//! The header may list several signatures separated by commas (an account with more than one
//! token): any one of them matching is enough.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The header carrying the signature(s).
pub const SIGNATURE_HEADER: &str = "X-Plivo-Signature-V3";
/// The header carrying the nonce the signature covers.
pub const NONCE_HEADER: &str = "X-Plivo-Signature-V3-Nonce";

/// Whether a request is a POST (body parameters signed) or a GET (the query only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    Get,
    Post,
}

/// `k=v&k=v`, names sorted, values of a repeated name sorted.
fn sorted_query(params: &mut [(String, String)]) -> String {
    params.sort_unstable();
    params
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// `kvkv`, sorted the same way.
fn sorted_params(params: &[(&str, &str)]) -> String {
    let mut sorted = params.to_vec();
    sorted.sort_unstable();
    let mut out = String::new();
    for (k, v) in sorted {
        out.push_str(k);
        out.push_str(v);
    }
    out
}

/// The string Plivo signs (before `.nonce`), or `None` for a URL that does not parse.
fn signing_base(method: Method, url: &str, body: &[(&str, &str)]) -> Option<String> {
    let parsed = url::Url::parse(url).ok()?;
    let mut base = format!("{}://{}", parsed.scheme(), parsed.host_str()?);
    if let Some(port) = parsed.port() {
        base.push_str(&format!(":{port}"));
    }
    base.push_str(parsed.path());
    let mut query: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
    let query = sorted_query(&mut query);
    match method {
        Method::Get => {
            if !query.is_empty() {
                base.push('?');
                base.push_str(&query);
            }
        }
        Method::Post => {
            let has_body = !body.is_empty();
            if !query.is_empty() || has_body {
                base.push('?');
                base.push_str(&query);
            }
            if !query.is_empty() && has_body {
                base.push('.');
            }
            base.push_str(&sorted_params(body));
        }
    }
    Some(base)
}

/// The V3 signature of a request to `url` with `body` parameters (none for a GET) and `nonce`.
pub fn compute_signature(
    auth_token: &str,
    method: Method,
    url: &str,
    body: &[(&str, &str)],
    nonce: &str,
) -> Option<String> {
    let base = signing_base(method, url, body)?;
    let mut mac =
        Hmac::<Sha256>::new_from_slice(auth_token.as_bytes()).expect("HMAC accepts any key length");
    mac.update(base.as_bytes());
    mac.update(b".");
    mac.update(nonce.as_bytes());
    Some(BASE64.encode(mac.finalize().into_bytes()))
}

/// True when one of the comma-separated `signatures` is Plivo's for this request.
pub fn validate_signature(
    auth_token: &str,
    method: Method,
    url: &str,
    body: &[(&str, &str)],
    nonce: &str,
    signatures: &str,
) -> bool {
    if nonce.is_empty() {
        return false;
    }
    let Some(expected) = compute_signature(auth_token, method, url, body, nonce) else {
        return false;
    };
    let mut valid = false;
    for candidate in signatures.split(',') {
        // Evaluate every candidate: which one matched must not show in the timing.
        valid |= constant_time_eq(expected.as_bytes(), candidate.trim().as_bytes());
    }
    valid
}

/// Compares in time that depends only on the lengths (public: a signature is 44 characters).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "ZDg2ZTY4MjM1ZGU1OGI3ZDYxYmNjMjI0MTI0NmY3";

    fn hmac_b64(message: &str) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(TOKEN.as_bytes()).unwrap();
        mac.update(message.as_bytes());
        BASE64.encode(mac.finalize().into_bytes())
    }

    #[test]
    fn post_with_query_and_body_signs_as_the_sdk_does() {
        // plivo-python: construct_post_url → "base?sorted query" + "." + "kv" pairs; then
        // "{base}.{nonce}".
        let url = "https://vb.example.com/plivo/voice?token=t1&call_id=c1";
        let body = [("To", "14155550100"), ("CallUUID", "u-1"), ("From", "1415")];
        let expected = hmac_b64(
            "https://vb.example.com/plivo/voice?call_id=c1&token=t1.CallUUIDu-1From1415To14155550100.12345",
        );
        assert_eq!(
            compute_signature(TOKEN, Method::Post, url, &body, "12345").as_deref(),
            Some(expected.as_str())
        );
        assert!(validate_signature(
            TOKEN,
            Method::Post,
            url,
            &body,
            "12345",
            &format!("bogus,{expected}")
        ));
    }

    #[test]
    fn post_without_query_has_a_bare_question_mark() {
        let url = "https://vb.example.com/plivo/voice";
        let body = [("B", "2"), ("A", "1")];
        let expected = hmac_b64("https://vb.example.com/plivo/voice?A1B2.n");
        assert_eq!(
            compute_signature(TOKEN, Method::Post, url, &body, "n").as_deref(),
            Some(expected.as_str())
        );
        // No body, no query: the URL alone.
        let expected = hmac_b64("https://vb.example.com/plivo/voice.n");
        assert_eq!(
            compute_signature(TOKEN, Method::Post, url, &[], "n").as_deref(),
            Some(expected.as_str())
        );
    }

    #[test]
    fn get_signs_the_sorted_query() {
        let url = "https://vb.example.com:8443/plivo/status?b=2&a=x%20y";
        let expected = hmac_b64("https://vb.example.com:8443/plivo/status?a=x y&b=2.n");
        assert_eq!(
            compute_signature(TOKEN, Method::Get, url, &[], "n").as_deref(),
            Some(expected.as_str())
        );
    }

    #[test]
    fn forged_or_incomplete_signatures_are_refused() {
        let url = "https://vb.example.com/plivo/voice";
        let body = [("CallUUID", "u-1")];
        let good = compute_signature(TOKEN, Method::Post, url, &body, "n").unwrap();
        assert!(validate_signature(
            TOKEN,
            Method::Post,
            url,
            &body,
            "n",
            &good
        ));
        assert!(!validate_signature(
            TOKEN,
            Method::Post,
            url,
            &body,
            "other",
            &good
        ));
        assert!(!validate_signature(
            TOKEN,
            Method::Post,
            url,
            &body,
            "",
            &good
        ));
        assert!(!validate_signature(
            "x",
            Method::Post,
            url,
            &body,
            "n",
            &good
        ));
        let tampered = [("CallUUID", "u-2")];
        assert!(!validate_signature(
            TOKEN,
            Method::Post,
            url,
            &tampered,
            "n",
            &good
        ));
        assert!(!validate_signature(
            TOKEN,
            Method::Post,
            "not a url",
            &body,
            "n",
            &good
        ));
        assert!(!validate_signature(
            TOKEN,
            Method::Post,
            url,
            &body,
            "n",
            ""
        ));
    }
}
