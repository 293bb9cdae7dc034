//! `X-Twilio-Signature`: how Twilio proves a webhook came from it, and how the fake Twilio signs
//! the webhooks it sends. HMAC-SHA1, keyed with the account's Auth Token, over the exact URL Twilio
//! requested followed by every form parameter as `name` + `value`, names sorted (repeated names
//! once per value, values sorted), base64-encoded.
//!
//! Validation must use the public URL Twilio called (not the address behind a TLS proxy) and the
//! decoded form values as received. Twilio is inconsistent about writing the default port, so a
//! signature is accepted for the URL with or without it. Webhooks with a JSON body sign the URL
//! only; the body is covered by a `bodySHA256` query parameter instead.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;
use sha2::{Digest, Sha256};

/// The header carrying the signature.
pub const SIGNATURE_HEADER: &str = "X-Twilio-Signature";

/// The signature of a request to `url` with form `params` (pass none for GET requests and JSON
/// bodies: their data is in the URL).
pub fn compute_signature<K: AsRef<str>, V: AsRef<str>>(
    auth_token: &str,
    url: &str,
    params: &[(K, V)],
) -> String {
    let mut sorted: Vec<(&str, &str)> = params
        .iter()
        .map(|(k, v)| (k.as_ref(), v.as_ref()))
        .collect();
    // Sorting the pairs sorts by name, then the values of a repeated name: byte order, which for
    // UTF-8 is code-point order, as Twilio's own validators sort.
    sorted.sort_unstable();
    let mut mac =
        Hmac::<Sha1>::new_from_slice(auth_token.as_bytes()).expect("HMAC accepts any key length");
    mac.update(url.as_bytes());
    for (name, value) in sorted {
        mac.update(name.as_bytes());
        mac.update(value.as_bytes());
    }
    BASE64.encode(mac.finalize().into_bytes())
}

/// True when `signature` is Twilio's for a form request (or a GET, with no params) to `url`,
/// written with or without the scheme's default port.
pub fn validate_signature<K: AsRef<str>, V: AsRef<str>>(
    auth_token: &str,
    url: &str,
    params: &[(K, V)],
    signature: &str,
) -> bool {
    let mut valid = false;
    for candidate in url_variants(url).iter().flatten() {
        let expected = compute_signature(auth_token, candidate, params);
        // Evaluate every variant: which one matched must not show in the timing either.
        valid |= constant_time_eq(expected.as_bytes(), signature.trim().as_bytes());
    }
    valid
}

/// True when `signature` is Twilio's for a JSON-body webhook to `url`: the URL's `bodySHA256`
/// parameter is the hex SHA-256 of `body`, and the signature covers the URL with no params.
pub fn validate_json_body(auth_token: &str, url: &str, body: &[u8], signature: &str) -> bool {
    let Some(claimed) = query_param(url, "bodySHA256") else {
        return false;
    };
    let actual = hex_lower(&Sha256::digest(body));
    let hash_ok = constant_time_eq(actual.as_bytes(), claimed.to_ascii_lowercase().as_bytes());
    let signature_ok = validate_signature::<&str, &str>(auth_token, url, &[], signature);
    hash_ok & signature_ok
}

/// A URL carrying `bodySHA256` for `body`, as Twilio builds the URL of a JSON-body webhook.
pub fn url_with_body_sha256(url: &str, body: &[u8]) -> String {
    let hash = hex_lower(&Sha256::digest(body));
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}bodySHA256={hash}")
}

/// Compares in time that depends only on the lengths (which are public: a signature is always
/// 28 characters), never on where the first difference is.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    diff == 0
}

fn hex_lower(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

fn query_param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or(query);
    url::form_urlencoded::parse(query.as_bytes())
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.into_owned())
}

/// The URL as given, plus the same URL with the default port written out (when it had no port)
/// or left out (when it had the default port). Done on the string, not through a URL parser,
/// because parsers normalise (drop default ports, re-encode) and the signature is over the exact
/// text.
fn url_variants(url: &str) -> [Option<String>; 2] {
    let alternative = (|| {
        let scheme_end = url.find("://")?;
        let default_port = match url[..scheme_end].to_ascii_lowercase().as_str() {
            "https" | "wss" => "443",
            "http" | "ws" => "80",
            _ => return None,
        };
        let authority_start = scheme_end + 3;
        let authority_end = url[authority_start..]
            .find(['/', '?', '#'])
            .map_or(url.len(), |i| authority_start + i);
        let authority = &url[authority_start..authority_end];
        let host_start = authority.rfind('@').map_or(0, |i| i + 1);
        let host_port = &authority[host_start..];
        let port_colon = if host_port.starts_with('[') {
            host_port.find("]:").map(|i| i + 1)
        } else {
            host_port.rfind(':')
        };
        match port_colon {
            Some(colon) => {
                let port = &host_port[colon + 1..];
                (port == default_port).then(|| {
                    let colon_at = authority_start + host_start + colon;
                    format!("{}{}", &url[..colon_at], &url[authority_end..])
                })
            }
            None => Some(format!(
                "{}:{default_port}{}",
                &url[..authority_end],
                &url[authority_end..]
            )),
        }
    })();
    [Some(url.to_owned()), alternative]
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTOR_PARAMS: [(&str, &str); 5] = [
        ("CallSid", "CA1234567890ABCDE"),
        ("Caller", "+12349013030"),
        ("Digits", "1234"),
        ("From", "+12349013030"),
        ("To", "+18005551212"),
    ];

    #[test]
    fn first_vector_from_the_protocol_notes() {
        let url = "https://mycompany.com/myapp.php?foo=1&bar=2";
        assert_eq!(
            compute_signature("12345", url, &VECTOR_PARAMS),
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        );
        // Order of the received parameters does not matter.
        let mut shuffled = VECTOR_PARAMS;
        shuffled.reverse();
        assert!(validate_signature(
            "12345",
            url,
            &shuffled,
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
        assert!(!validate_signature(
            "12346",
            url,
            &shuffled,
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
        let tampered = [("CallSid", "CA1234567890ABCDF")];
        assert!(!validate_signature(
            "12345",
            url,
            &tampered,
            "0/KCTR6DLpKmkAf8muzZqo1nDgQ="
        ));
    }

    #[test]
    fn second_vector_from_the_protocol_notes() {
        let params = [
            ("AccountSid", "AC00000000000000000000000000000001"),
            ("CallDuration", "17"),
            ("CallSid", "CA00000000000000000000000000000002"),
            ("CallStatus", "completed"),
        ];
        let url = "https://example.com/voice/status";
        assert_eq!(
            compute_signature("test_auth_token", url, &params),
            "UoV8wVb8UC0P4efY4wUom8eFLXo="
        );
        assert!(validate_signature(
            "test_auth_token",
            url,
            &params,
            "UoV8wVb8UC0P4efY4wUom8eFLXo="
        ));
    }

    #[test]
    fn the_default_port_may_or_may_not_be_written() {
        let with_port = "https://mycompany.com:443/myapp.php?foo=1&bar=2";
        let without = "https://mycompany.com/myapp.php?foo=1&bar=2";
        let signed_without = compute_signature("12345", without, &VECTOR_PARAMS);
        let signed_with = compute_signature("12345", with_port, &VECTOR_PARAMS);
        assert_ne!(signed_with, signed_without);
        for url in [with_port, without] {
            for signature in [&signed_with, &signed_without] {
                assert!(
                    validate_signature("12345", url, &VECTOR_PARAMS, signature),
                    "{url}"
                );
            }
        }
        // Another port is another URL.
        let other = "https://mycompany.com:8443/myapp.php?foo=1&bar=2";
        assert!(!validate_signature(
            "12345",
            other,
            &VECTOR_PARAMS,
            &signed_without
        ));
        // http's default is 80.
        let plain = compute_signature("12345", "http://h.example/x", &VECTOR_PARAMS);
        assert!(validate_signature(
            "12345",
            "http://h.example:80/x",
            &VECTOR_PARAMS,
            &plain
        ));
    }

    #[test]
    fn url_variants_handle_userinfo_ipv6_and_bare_hosts() {
        assert_eq!(
            url_variants("https://u:p@h.example/x")[1].as_deref(),
            Some("https://u:p@h.example:443/x")
        );
        assert_eq!(
            url_variants("https://[::1]:443/x")[1].as_deref(),
            Some("https://[::1]/x")
        );
        assert_eq!(
            url_variants("https://[::1]/x")[1].as_deref(),
            Some("https://[::1]:443/x")
        );
        assert_eq!(
            url_variants("https://h.example?x=1")[1].as_deref(),
            Some("https://h.example:443?x=1")
        );
        assert_eq!(url_variants("http://127.0.0.1:8080/x")[1], None);
        assert_eq!(url_variants("not a url")[1], None);
    }

    #[test]
    fn repeated_names_sign_every_value_in_order() {
        // Reference computed independently (Python hmac) over
        // "https://example.com/cb" + "StatusCallbackEventanswered" + "StatusCallbackEventcompleted"
        // + "StatusCallbackEventinitiated" + "Toa".
        let params = [
            ("To", "a"),
            ("StatusCallbackEvent", "initiated"),
            ("StatusCallbackEvent", "completed"),
            ("StatusCallbackEvent", "answered"),
        ];
        assert_eq!(
            compute_signature("12345", "https://example.com/cb", &params),
            "5sDKtRLykNXKh2lNv9jlMIk7FJk="
        );
    }

    #[test]
    fn json_bodies_are_covered_by_body_sha256() {
        let body = br#"{"CallSid":"CA123","Status":"completed"}"#;
        let url = url_with_body_sha256("https://example.com/voice/events", body);
        assert_eq!(
            url,
            "https://example.com/voice/events?bodySHA256=\
             5d32534f33f1a2d4ced73fab1f48e7b50b670e1018d048bc8c6c6370af16aabd"
        );
        // Reference signature computed independently (Python hmac) over the URL alone.
        let signature = "hQS0siezaMWv2WKwOZz4gdGczJg=";
        assert!(validate_json_body("test_auth_token", &url, body, signature));
        assert!(!validate_json_body(
            "test_auth_token",
            &url,
            b"{}",
            signature
        ));
        assert!(!validate_json_body(
            "test_auth_token",
            "https://example.com/voice/events",
            body,
            signature
        ));
        assert!(!validate_json_body("other_token", &url, body, signature));
    }

    #[test]
    fn comparison_is_exact() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
