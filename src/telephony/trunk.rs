//! A trunk: an owner's account at a telephony provider (credentials and a default caller ID).
//! Outbound calls are placed through it and inbound calls to the owner's numbers are verified
//! against its secret. Providers differ in what their credentials look like, so the provider is
//! an enum and each variant checks its own credential shapes. Only Twilio places and answers
//! calls today: another provider also needs its REST client, its call placement in
//! `api/outbound.rs` and its webhook and media routes.

use std::fmt;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::sid::is_sid;
use crate::validation::Violations;

/// Longest `trunk_name`, in characters.
pub const TRUNK_NAME_MAX_CHARS: usize = 100;

/// Providers whose names are recognised but not supported yet: asking for one gets a clearer
/// answer than "unknown provider".
const PLANNED_PROVIDERS: [&str; 2] = ["plivo", "exotel"];

/// The telephony provider behind a trunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TrunkProvider {
    Twilio,
}

impl TrunkProvider {
    /// Every supported provider.
    pub const ALL: [TrunkProvider; 1] = [TrunkProvider::Twilio];

    pub fn as_str(self) -> &'static str {
        match self {
            TrunkProvider::Twilio => "twilio",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == value)
    }

    /// Parses `value`, recording why it is refused under `field`.
    pub fn parse_field(value: &str, field: &str, v: &mut Violations) -> Option<Self> {
        let provider = Self::parse(value);
        if provider.is_none() {
            let supported = Self::ALL.map(Self::as_str).join(", ");
            if PLANNED_PROVIDERS.contains(&value) {
                v.add(
                    field,
                    format!("{value} is not supported yet; supported: {supported}"),
                );
            } else {
                v.add(field, format!("must be one of: {supported}"));
            }
        }
        provider
    }

    /// Checks the shapes of this provider's credentials, so a typo is a 400 now rather than a
    /// failed call later.
    pub fn check_credentials(
        self,
        account_sid: &str,
        auth_token: &str,
        (sid_field, token_field): (&str, &str),
        v: &mut Violations,
    ) {
        match self {
            TrunkProvider::Twilio => {
                if !account_sid.is_empty() && !is_sid("AC", account_sid) {
                    v.add(
                        sid_field,
                        "must be a Twilio Account SID: AC followed by 32 hex digits",
                    );
                }
                let hex32 =
                    auth_token.len() == 32 && auth_token.bytes().all(|b| b.is_ascii_hexdigit());
                if !auth_token.is_empty() && !hex32 {
                    v.add(token_field, "must be a Twilio Auth Token: 32 hex digits");
                }
            }
        }
    }
}

impl fmt::Display for TrunkProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

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
    fn providers_name_the_field_when_refused() {
        let mut v = Violations::new();
        assert_eq!(
            TrunkProvider::parse_field("twilio", "p", &mut v),
            Some(TrunkProvider::Twilio)
        );
        assert!(TrunkProvider::parse_field("plivo", "p", &mut v).is_none());
        assert!(TrunkProvider::parse_field("Twilio", "p", &mut v).is_none());
        let errors = v.into_result().unwrap_err();
        assert_eq!(errors[0].field, "p");
        assert!(errors[0].message.contains("not supported yet"));
        assert_eq!(errors[1].message, "must be one of: twilio");
    }

    #[test]
    fn twilio_credentials_are_checked() {
        let mut v = Violations::new();
        TrunkProvider::Twilio.check_credentials(
            "AC0123456789abcdef0123456789abcdef",
            "0123456789abcdef0123456789abcdef",
            ("sid", "token"),
            &mut v,
        );
        assert!(v.is_empty());
        TrunkProvider::Twilio.check_credentials("SK01", "secret", ("sid", "token"), &mut v);
        let fields: Vec<_> = v
            .into_result()
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect();
        assert_eq!(fields, ["sid", "token"]);
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
            default_caller_number: "+14155550100".into(),
            created_at: String::new(),
            updated_at: String::new(),
        };
        assert!(!format!("{trunk:?}").contains(&trunk.auth_token));
    }
}
