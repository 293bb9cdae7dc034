//! The two JSON Web Tokens of Vonage's Voice API, written out by hand over aws-lc-rs (already
//! built for rustls) instead of a JWT crate: the application token voxbridge signs for each REST
//! request (RS256 with the application's private key; claims `application_id`, `iat`, `jti`,
//! `exp`, as Vonage's SDKs write them), and the webhook token Vonage signs (HS256 with the
//! account's signature secret; claims `iat`, `jti`, `iss`, `payload_hash`, `api_key`,
//! `application_id`). Only these two algorithms are accepted where each is expected, so a token
//! cannot choose its own (`alg: none`, or HS256 keyed with a public key).

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeyPair as RsaKeyPair;
use aws_lc_rs::signature::RSA_PKCS1_SHA256;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

/// How long an application token lives (Vonage's SDKs default to 15 minutes).
pub const APPLICATION_TOKEN_SECS: i64 = 15 * 60;

/// Why a private key cannot sign.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum KeyError {
    #[error("is not a PEM private key (-----BEGIN PRIVATE KEY-----)")]
    NotPem,
    #[error("is not an RSA private key Vonage could have issued: {0}")]
    NotRsa(String),
}

/// An application's private key, parsed once.
pub struct ApplicationKey {
    key: RsaKeyPair,
}

impl std::fmt::Debug for ApplicationKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ApplicationKey(<redacted>)")
    }
}

impl ApplicationKey {
    /// Reads the PEM Vonage hands out (`private.key`: PKCS#8 `BEGIN PRIVATE KEY`); PKCS#1
    /// (`BEGIN RSA PRIVATE KEY`) is read too. A key pasted into JSON with literal `\n`s is
    /// accepted as well.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        let pem = pem.replace("\\n", "\n");
        let (label, der) = pem_body(&pem).ok_or(KeyError::NotPem)?;
        let key = match label.as_str() {
            "PRIVATE KEY" => RsaKeyPair::from_pkcs8(&der),
            "RSA PRIVATE KEY" => RsaKeyPair::from_der(&der),
            _ => return Err(KeyError::NotPem),
        }
        .map_err(|e| KeyError::NotRsa(e.to_string()))?;
        Ok(Self { key })
    }

    /// The application token for one request.
    pub fn application_token(&self, application_id: &str, now_unix: i64) -> String {
        let claims = json!({
            "application_id": application_id,
            "iat": now_unix,
            "jti": uuid::Uuid::new_v4().to_string(),
            "exp": now_unix + APPLICATION_TOKEN_SECS,
        });
        self.sign(&claims)
    }

    /// An RS256 token with `claims`.
    pub fn sign(&self, claims: &Value) -> String {
        let mut token = encode_part(&json!({"alg": "RS256", "typ": "JWT"}));
        token.push('.');
        token.push_str(&encode_part(claims));
        let mut signature = vec![0u8; self.key.public_modulus_len()];
        // Signing with a well-formed key cannot fail; an empty signature would only be refused.
        let _ = self.key.sign(
            &RSA_PKCS1_SHA256,
            &SystemRandom::new(),
            token.as_bytes(),
            &mut signature,
        );
        token.push('.');
        token.push_str(&URL_SAFE_NO_PAD.encode(signature));
        token
    }

    /// The public key (DER, SubjectPublicKeyInfo), for the fake Vonage to check tokens with.
    pub fn public_key_der(&self) -> Vec<u8> {
        use aws_lc_rs::encoding::AsDer;
        use aws_lc_rs::signature::KeyPair;
        self.key
            .public_key()
            .as_der()
            .map(|d| d.as_ref().to_vec())
            .unwrap_or_default()
    }

    /// A fresh key as PEM (for tests and the fake).
    pub fn generate_pem() -> String {
        use aws_lc_rs::encoding::AsDer;
        let key = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048)
            .expect("RSA key generation works");
        let der = key.as_der().expect("a generated key encodes");
        to_pem("PRIVATE KEY", der.as_ref())
    }
}

/// The label and decoded body of the first PEM block in `text`.
fn pem_body(text: &str) -> Option<(String, Vec<u8>)> {
    let begin = text.find("-----BEGIN ")?;
    let rest = &text[begin + 11..];
    let label_end = rest.find("-----")?;
    let label = rest[..label_end].to_owned();
    let body_start = label_end + 5;
    let end_marker = format!("-----END {label}-----");
    let body_end = rest.find(&end_marker)?;
    let body: String = rest[body_start..body_end]
        .chars()
        .filter(|c| !c.is_whitespace())
        .collect();
    Some((label, STANDARD.decode(body).ok()?))
}

/// `der` as PEM with `label`.
pub fn to_pem(label: &str, der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {label}-----\n");
    for line in body.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {label}-----\n"));
    pem
}

fn encode_part(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// A token split into its parts, the header and claims decoded.
pub struct Parsed<'a> {
    pub header: Value,
    pub claims: Value,
    /// `header.claims`, the signed text.
    pub signing_input: &'a str,
    pub signature: Vec<u8>,
}

/// Splits and decodes a compact token; `None` if it is not one.
pub fn parse(token: &str) -> Option<Parsed<'_>> {
    let token = token.trim();
    let (signing_input, signature) = token.rsplit_once('.')?;
    let (header, claims) = signing_input.split_once('.')?;
    let decode = |part: &str| -> Option<Value> {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).ok()?).ok()
    };
    Some(Parsed {
        header: decode(header)?,
        claims: decode(claims)?,
        signing_input,
        signature: URL_SAFE_NO_PAD.decode(signature).ok()?,
    })
}

/// The claims of an HS256 token signed with `secret`; `None` for any other token.
pub fn verify_hs256(token: &str, secret: &str) -> Option<Value> {
    let parsed = parse(token)?;
    if parsed.header.get("alg").and_then(Value::as_str) != Some("HS256") {
        return None;
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).ok()?;
    mac.update(parsed.signing_input.as_bytes());
    // `verify_slice` compares in constant time.
    mac.verify_slice(&parsed.signature).ok()?;
    Some(parsed.claims)
}

/// An HS256 token with `claims` (how Vonage signs webhooks; for the fake and tests).
pub fn sign_hs256(claims: &Value, secret: &str) -> String {
    let mut token = encode_part(&json!({"alg": "HS256", "typ": "JWT"}));
    token.push('.');
    token.push_str(&encode_part(claims));
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    mac.update(token.as_bytes());
    token.push('.');
    token.push_str(&URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()));
    token
}

/// The claims of an RS256 token verified with `public_key_der` (SubjectPublicKeyInfo); the fake
/// Vonage checks application tokens with it.
pub fn verify_rs256(token: &str, public_key_der: &[u8]) -> Option<Value> {
    use aws_lc_rs::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};
    let parsed = parse(token)?;
    if parsed.header.get("alg").and_then(Value::as_str) != Some("RS256") {
        return None;
    }
    // aws-lc-rs reads the key as SubjectPublicKeyInfo or PKCS#1.
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public_key_der)
        .verify(parsed.signing_input.as_bytes(), &parsed.signature)
        .ok()?;
    Some(parsed.claims)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::LazyLock;

    static PEM: LazyLock<String> = LazyLock::new(ApplicationKey::generate_pem);

    #[test]
    fn application_tokens_carry_vonages_claims_and_verify() {
        let key = ApplicationKey::from_pem(&PEM).unwrap();
        let token = key.application_token("aaaaaaaa-bbbb-cccc-dddd-0123456789ab", 1_700_000_000);
        let claims = verify_rs256(&token, &key.public_key_der()).unwrap();
        assert_eq!(
            claims["application_id"],
            "aaaaaaaa-bbbb-cccc-dddd-0123456789ab"
        );
        assert_eq!(claims["iat"], 1_700_000_000);
        assert_eq!(claims["exp"], 1_700_000_000 + APPLICATION_TOKEN_SECS);
        assert!(claims["jti"].as_str().is_some_and(|j| j.len() == 36));
        let header = parse(&token).unwrap().header;
        assert_eq!(header, json!({"alg": "RS256", "typ": "JWT"}));
        // Another key's token does not verify.
        let other = ApplicationKey::from_pem(&ApplicationKey::generate_pem()).unwrap();
        assert!(verify_rs256(&other.application_token("x", 1), &key.public_key_der()).is_none());
    }

    #[test]
    fn keys_are_read_from_pem_in_either_form_and_json_escaped() {
        assert!(ApplicationKey::from_pem(&PEM.replace('\n', "\\n")).is_ok());
        assert_eq!(
            ApplicationKey::from_pem("not a key").unwrap_err(),
            KeyError::NotPem
        );
        let garbage = to_pem("PRIVATE KEY", b"not der at all");
        assert!(matches!(
            ApplicationKey::from_pem(&garbage),
            Err(KeyError::NotRsa(_))
        ));
    }

    #[test]
    fn hs256_tokens_verify_only_with_their_secret_and_algorithm() {
        // jwt.io's HS256 example, signed with "your-256-bit-secret": the vector every JWT
        // library (and so Vonage's SDKs) agrees on.
        let jwt_io = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c";
        let claims = verify_hs256(jwt_io, "your-256-bit-secret").unwrap();
        assert_eq!(claims["name"], "John Doe");
        assert!(verify_hs256(jwt_io, "another secret").is_none());
        let token = sign_hs256(&json!({"payload_hash": "ab"}), "s3cret");
        assert_eq!(
            verify_hs256(&token, "s3cret").unwrap()["payload_hash"],
            "ab"
        );
        // alg none, an RS256 header over an HMAC, and garbage are refused.
        let (_, rest) = token.split_once('.').unwrap();
        let none = format!("{}.{rest}", URL_SAFE_NO_PAD.encode(r#"{"alg":"none"}"#));
        assert!(verify_hs256(&none, "s3cret").is_none());
        assert!(verify_hs256("a.b.c", "s3cret").is_none());
        assert!(verify_hs256("", "s3cret").is_none());
    }
}
