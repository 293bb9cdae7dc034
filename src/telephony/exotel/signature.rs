//! How Exotel's requests are proven, since Exotel signs nothing. Three secrets, all derived from
//! the trunk's `stream_secret` option (never the API token, which must not travel in URLs):
//!
//! - the media socket: Exotel turns `wss://USER:PASS@host/…` into `Authorization: Basic` on the
//!   upgrade (its documented Voicebot authentication); we put the trunk's Account SID and
//!   `stream_secret` there, and check them on the upgrade;
//! - the Voicebot applet's https URL, which the owner configures in Exotel's flow: it carries
//!   `?secret=<stream_secret>` (Exotel calls the URL as configured, its call parameters
//!   appended);
//! - our status callback URL for a call we placed: `&sig=<hex HMAC-SHA256(stream_secret,
//!   call_id)>`, a per-call value, so a callback URL seen in a log proves nothing about any
//!   other call.
//!
//! These are bearer secrets over TLS, weaker than a signature over the body: anyone who sees a
//! request can replay it. The body of a status callback cannot be forged for a call whose URL
//! was not seen, and the media socket also needs the call's one-time token.

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// The query parameter of the applet URL.
pub const SECRET_PARAM: &str = "secret";
/// The query parameter of a per-call callback URL.
pub const SIG_PARAM: &str = "sig";

/// Compares in time that depends only on the lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The per-call callback secret of `call_id`.
pub fn call_sig(stream_secret: &str, call_id: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(stream_secret.as_bytes())
        .expect("HMAC accepts any key length");
    mac.update(b"exotel-callback:");
    mac.update(call_id.as_bytes());
    let mut out = String::with_capacity(64);
    for b in mac.finalize().into_bytes() {
        use std::fmt::Write;
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// Whether `sig` is the per-call secret of `call_id`.
pub fn verify_call_sig(stream_secret: &str, call_id: &str, sig: &str) -> bool {
    !stream_secret.is_empty()
        && constant_time_eq(call_sig(stream_secret, call_id).as_bytes(), sig.as_bytes())
}

/// Whether `secret` is the trunk's applet secret.
pub fn verify_secret(stream_secret: &str, secret: &str) -> bool {
    !stream_secret.is_empty() && constant_time_eq(stream_secret.as_bytes(), secret.as_bytes())
}

/// `Basic base64(user:password)`, as Exotel sends for credentials in the stream URL.
pub fn basic_authorization(user: &str, password: &str) -> String {
    format!("Basic {}", BASE64.encode(format!("{user}:{password}")))
}

/// Whether an upgrade's `Authorization` header carries `user:password`.
pub fn verify_basic(authorization: Option<&str>, user: &str, password: &str) -> bool {
    let Some(value) = authorization else {
        return false;
    };
    let Some(encoded) = value
        .strip_prefix("Basic ")
        .or_else(|| value.strip_prefix("basic "))
    else {
        return false;
    };
    let Ok(decoded) = BASE64.decode(encoded.trim()) else {
        return false;
    };
    let expected = format!("{user}:{password}");
    !password.is_empty() && constant_time_eq(expected.as_bytes(), &decoded)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_as_exotel_sends_them() {
        let header = basic_authorization("acme1", "s3cret");
        assert_eq!(header, "Basic YWNtZTE6czNjcmV0");
        assert!(verify_basic(Some(&header), "acme1", "s3cret"));
        assert!(!verify_basic(Some(&header), "acme1", "other"));
        assert!(!verify_basic(Some("Basic !!!"), "acme1", "s3cret"));
        assert!(!verify_basic(Some("Bearer x"), "acme1", "s3cret"));
        assert!(!verify_basic(None, "acme1", "s3cret"));
        assert!(!verify_basic(
            Some(&basic_authorization("acme1", "")),
            "acme1",
            ""
        ));
    }

    #[test]
    fn per_call_sigs_differ_per_call_and_secret() {
        let a = call_sig("secret-one", "call-1");
        assert_eq!(a.len(), 64);
        assert!(verify_call_sig("secret-one", "call-1", &a));
        assert!(!verify_call_sig("secret-one", "call-2", &a));
        assert!(!verify_call_sig("secret-two", "call-1", &a));
        assert!(!verify_call_sig("", "call-1", &a));
        assert!(verify_secret("abc", "abc"));
        assert!(!verify_secret("abc", "abd"));
        assert!(!verify_secret("", ""));
    }
}
