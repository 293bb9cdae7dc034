//! A trunk: an owner's account at a telephony provider (credentials, provider-specific options
//! and a default caller ID). Outbound calls are placed through it and inbound calls to the
//! owner's numbers are verified against its secret. Each provider checks the shapes of its own
//! credentials (`TelephonyProvider::check_trunk`).

use std::fmt;

use super::registry::TrunkProvider;

/// Longest `trunk_name`, in characters.
pub const TRUNK_NAME_MAX_CHARS: usize = 100;

/// A stored trunk, secret included: it never leaves the server (see the REST layer's details
/// type, which has no token field) and `Debug` does not print it.
#[derive(Clone, PartialEq)]
pub struct Trunk {
    /// `ST_` + 32 lowercase hex digits.
    pub id: String,
    pub owner_id: String,
    pub name: String,
    pub provider: TrunkProvider,
    /// The provider account (Twilio: `AC…`).
    pub account_sid: String,
    /// The provider secret (Twilio: the account's Auth Token; it also signs webhooks).
    pub auth_token: String,
    /// What else a provider needs (a public key that verifies webhooks, an application id, …),
    /// as a JSON object; the provider names the keys that are secrets.
    pub options: serde_json::Map<String, serde_json::Value>,
    /// Caller ID for outbound calls when the request names none (E.164).
    pub default_caller_number: String,
    pub created_at: String,
    pub updated_at: String,
}

impl fmt::Debug for Trunk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Trunk")
            .field("id", &self.id)
            .field("owner_id", &self.owner_id)
            .field("name", &self.name)
            .field("provider", &self.provider)
            .field("account_sid", &self.account_sid)
            .field("auth_token", &"<redacted>")
            .field("options", &"<redacted>")
            .field("default_caller_number", &self.default_caller_number)
            .field("created_at", &self.created_at)
            .field("updated_at", &self.updated_at)
            .finish()
    }
}

/// A new trunk id: `ST_` and 32 lowercase hex digits.
pub fn new_trunk_id() -> String {
    format!("ST_{}", uuid::Uuid::new_v4().simple())
}

/// True for ids shaped like [`new_trunk_id`]'s.
pub fn is_trunk_id(value: &str) -> bool {
    value.strip_prefix("ST_").is_some_and(|hex| {
        hex.len() == 32
            && hex
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trunk_ids_look_like_the_seed() {
        let id = new_trunk_id();
        assert!(is_trunk_id(&id), "{id}");
        assert_eq!(id.len(), 35);
        assert!(!is_trunk_id("ST_ABCDEF00000000000000000000000000"));
        assert!(!is_trunk_id("ST_123"));
    }

    #[test]
    fn debug_hides_the_token() {
        let trunk = Trunk {
            id: new_trunk_id(),
            owner_id: "o".into(),
            name: "n".into(),
            provider: TrunkProvider::Twilio,
            account_sid: "AC0123456789abcdef0123456789abcdef".into(),
            auth_token: "feedfacefeedfacefeedfacefeedface".into(),
            options: Default::default(),
            default_caller_number: "+14155550100".into(),
            created_at: String::new(),
            updated_at: String::new(),
        };
        assert!(!format!("{trunk:?}").contains(&trunk.auth_token));
    }
}
