//! How secrets (provider API keys, auth tokens) appear in responses: never in full. The last four
//! characters stay visible so an operator can tell which key is configured.

/// `****abcd` for long secrets, `****` for short ones (showing 4 of 6 characters would leak).
pub fn mask_secret(secret: &str) -> String {
    let count = secret.chars().count();
    if count < 12 {
        return "****".to_owned();
    }
    let tail: String = secret.chars().skip(count - 4).collect();
    format!("****{tail}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_keep_only_a_short_tail() {
        assert_eq!(mask_secret("sk_live_1234567890abcd"), "****abcd");
        assert_eq!(mask_secret("short"), "****");
        assert_eq!(mask_secret(""), "****");
    }
}
