//! Random bearer secrets (API keys, one-time media-stream tokens) and the hash under which they
//! are stored. Secrets are 256 random bits, so a plain SHA-256 is enough to store them: there is
//! nothing to brute-force, and a lookup is one indexed equality.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use sha2::{Digest, Sha256};

/// `prefix` followed by 256 random bits, base64url (43 characters).
pub fn random_token(prefix: &str) -> String {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).expect("the OS random source is available");
    format!("{prefix}{}", URL_SAFE_NO_PAD.encode(secret))
}

/// Lowercase hex SHA-256 of `token`: what is stored instead of the token.
pub fn token_hash(token: &str) -> String {
    let digest = Sha256::digest(token.as_bytes());
    let mut hex = String::with_capacity(64);
    for byte in digest {
        use std::fmt::Write;
        let _ = write!(hex, "{byte:02x}");
    }
    hex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_prefixed() {
        let a = random_token("vbx_");
        assert!(a.starts_with("vbx_"));
        assert_eq!(a.len(), 4 + 43);
        assert_ne!(a, random_token("vbx_"));
    }

    #[test]
    fn hash_is_hex_sha256() {
        assert_eq!(
            token_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
