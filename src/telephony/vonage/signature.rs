//! How Vonage proves a Voice API webhook came from it ("signed webhooks"): an `Authorization:
//! Bearer <JWT>` signed HS256 with the account's signature secret, whose `payload_hash` claim is
//! the hex SHA-256 of the payload. Vonage's SDKs verify the token's signature
//! (`verifySignature(token, secret)`); its documentation adds the payload check, which is what
//! binds the token to this request, so both are required here, plus a fresh `iat`.
//!
//! The payload is the raw body of a POST. For a GET (an answer URL fetched with the default
//! method) Vonage's support article says the hash is over the query parameters as a JSON object,
//! in their order, with no whitespace: that is what is hashed for a request without a body.
//! A token older (or newer) than five minutes is refused, so a captured webhook cannot be
//! replayed later; with `api_key` set on the trunk, the token must also name that account.

use serde_json::Value;
use sha2::{Digest, Sha256};

use super::jwt;

/// How far a token's `iat` may be from our clock.
pub const TOLERANCE_SECS: i64 = 300;

/// What a webhook proves about itself.
pub struct Signed<'a> {
    /// The `Authorization` header.
    pub authorization: Option<&'a str>,
    /// The raw body (empty for a GET).
    pub body: &'a [u8],
    /// The query's fields, in order (hashed for a request without a body).
    pub query: &'a [(String, String)],
}

/// The hex SHA-256 Vonage puts in `payload_hash` for a request.
pub fn payload_hash(body: &[u8], query: &[(String, String)]) -> String {
    let digest = if body.is_empty() {
        // serde_json's map keeps insertion order only with `preserve_order`; the object is
        // written by hand so the order is the query's.
        let mut text = String::from("{");
        for (i, (k, v)) in query.iter().enumerate() {
            if i > 0 {
                text.push(',');
            }
            text.push_str(&Value::String(k.clone()).to_string());
            text.push(':');
            text.push_str(&Value::String(v.clone()).to_string());
        }
        text.push('}');
        Sha256::digest(text.as_bytes())
    } else {
        Sha256::digest(body)
    };
    digest.iter().map(|b| format!("{b:02x}")).collect()
}

/// True when the request carries a token signed with `signature_secret` for exactly this
/// payload, issued within [`TOLERANCE_SECS`] of `now_unix` (and for `api_key`, when given).
pub fn verify(
    request: &Signed<'_>,
    signature_secret: &str,
    api_key: Option<&str>,
    now_unix: i64,
) -> bool {
    let Some(token) = request
        .authorization
        .and_then(|h| h.trim().strip_prefix("Bearer "))
    else {
        return false;
    };
    let Some(claims) = jwt::verify_hs256(token, signature_secret) else {
        return false;
    };
    let fresh = claims
        .get("iat")
        .and_then(Value::as_i64)
        .is_some_and(|iat| (now_unix - iat).abs() <= TOLERANCE_SECS);
    let hash_ok = claims
        .get("payload_hash")
        .and_then(Value::as_str)
        .is_some_and(|claimed| {
            let actual = payload_hash(request.body, request.query);
            crate::telephony::twilio::signature::constant_time_eq(
                claimed.to_ascii_lowercase().as_bytes(),
                actual.as_bytes(),
            )
        });
    let account_ok =
        api_key.is_none_or(|key| claims.get("api_key").and_then(Value::as_str) == Some(key));
    fresh && hash_ok && account_ok
}

/// The `Authorization` value Vonage would send for a payload (for the fake and tests).
pub fn authorization(
    signature_secret: &str,
    api_key: &str,
    application_id: &str,
    body: &[u8],
    query: &[(String, String)],
    now_unix: i64,
) -> String {
    let claims = serde_json::json!({
        "iat": now_unix,
        "jti": uuid::Uuid::new_v4().to_string(),
        "iss": "Vonage",
        "payload_hash": payload_hash(body, query),
        "api_key": api_key,
        "application_id": application_id,
    });
    format!("Bearer {}", jwt::sign_hs256(&claims, signature_secret))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "a-signature-secret-of-32-chars!!";

    #[test]
    fn a_signed_post_verifies_and_a_changed_body_does_not() {
        let body = br#"{"status":"answered","uuid":"63f61863-4a51-4f6b-86e1-46edebcf9356"}"#;
        let auth = authorization(SECRET, "abcd1234", "app", body, &[], 1000);
        let signed = Signed {
            authorization: Some(&auth),
            body,
            query: &[],
        };
        assert!(verify(&signed, SECRET, None, 1000));
        assert!(verify(&signed, SECRET, Some("abcd1234"), 1200));
        assert!(!verify(&signed, SECRET, Some("ffff0000"), 1000));
        assert!(!verify(&signed, "another secret", None, 1000));
        assert!(!verify(&signed, SECRET, None, 1000 + 301));
        let altered = Signed {
            body: br#"{"status":"completed"}"#,
            ..signed
        };
        assert!(!verify(&altered, SECRET, None, 1000));
        let unsigned = Signed {
            authorization: None,
            ..signed
        };
        assert!(!verify(&unsigned, SECRET, None, 1000));
        let not_bearer = Signed {
            authorization: Some("Basic abc"),
            ..signed
        };
        assert!(!verify(&not_bearer, SECRET, None, 1000));
    }

    #[test]
    fn a_get_hashes_its_query_in_order() {
        let query = vec![
            ("to".to_owned(), "447700900000".to_owned()),
            ("from".to_owned(), "447700900001".to_owned()),
            (
                "uuid".to_owned(),
                "aaaaaaaa-bbbb-cccc-dddd-0123456789ab".to_owned(),
            ),
        ];
        // SHA-256 of {"to":"447700900000","from":"447700900001","uuid":"aaaaaaaa-bbbb-cccc-dddd-0123456789ab"}
        let text = r#"{"to":"447700900000","from":"447700900001","uuid":"aaaaaaaa-bbbb-cccc-dddd-0123456789ab"}"#;
        let expected: String = Sha256::digest(text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(payload_hash(b"", &query), expected);
        let auth = authorization(SECRET, "k", "app", b"", &query, 50);
        let signed = Signed {
            authorization: Some(&auth),
            body: b"",
            query: &query,
        };
        assert!(verify(&signed, SECRET, None, 50));
        let mut swapped = query.clone();
        swapped[0].1 = "447700900009".to_owned();
        let forged = Signed {
            query: &swapped,
            ..signed
        };
        assert!(!verify(&forged, SECRET, None, 50));
    }

    #[test]
    fn the_empty_body_hash_is_sha256_of_nothing_for_an_empty_query() {
        assert_eq!(
            payload_hash(b"", &[]),
            // SHA-256 of "{}".
            "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
        );
    }
}
