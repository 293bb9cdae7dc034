//! Twilio-style resource identifiers: a two-letter type prefix and 32 lowercase hex digits
//! (`AC…` accounts, `CA…` calls, `MZ…` media streams). The fake Twilio mints them, the REST client
//! checks them before putting one in a URL path, so a malformed id can never reach another path.

/// A new random SID with `prefix` (`"CA"`, `"MZ"`, …).
pub fn new_sid(prefix: &str) -> String {
    format!("{prefix}{}", uuid::Uuid::new_v4().simple())
}

/// True when `value` is `prefix` followed by exactly 32 hex digits (either case: Twilio prints
/// lowercase, people paste whatever their console shows).
pub fn is_sid(prefix: &str, value: &str) -> bool {
    value
        .strip_prefix(prefix)
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sids_are_prefix_and_32_hex() {
        let sid = new_sid("CA");
        assert_eq!(sid.len(), 34);
        assert!(is_sid("CA", &sid));
        assert!(!is_sid("AC", &sid));
        assert!(is_sid("AC", "AC11111111111111111111111111111111"));
        assert!(is_sid("AC", "ACABCDEFabcdef11111111111111111111"));
        assert!(!is_sid("AC", "AC1111111111111111111111111111111"));
        assert!(!is_sid("AC", "AC111111111111111111111111111111111"));
        assert!(!is_sid("AC", "AC1111111111111111111111111111111g"));
        assert!(!is_sid("AC", "ac11111111111111111111111111111111"));
    }
}
