//! Every telephony provider voxbridge speaks, by name. Adding a provider is its folder, one
//! variant and one line in each `match` below, and its fake in `src/sim`.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::provider::{MediaProtocol, TelephonyProvider};
use super::{exotel, plivo, telnyx, twilio, vonage};
use crate::config::Config;
use crate::validation::Violations;

/// The telephony provider behind a trunk, a call and a route (`/{provider}/voice`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TrunkProvider {
    Twilio,
    Plivo,
    Exotel,
    Telnyx,
    Vonage,
}

impl TrunkProvider {
    /// Every supported provider.
    pub const ALL: [TrunkProvider; 5] = [
        TrunkProvider::Twilio,
        TrunkProvider::Plivo,
        TrunkProvider::Exotel,
        TrunkProvider::Telnyx,
        TrunkProvider::Vonage,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            TrunkProvider::Twilio => "twilio",
            TrunkProvider::Plivo => "plivo",
            TrunkProvider::Exotel => "exotel",
            TrunkProvider::Telnyx => "telnyx",
            TrunkProvider::Vonage => "vonage",
        }
    }

    pub fn parse(value: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == value)
    }

    /// Parses `value`, recording why it is refused under `field`.
    pub fn parse_field(value: &str, field: &str, v: &mut Violations) -> Option<Self> {
        let provider = Self::parse(value);
        if provider.is_none() {
            v.add(field, format!("must be one of: {}", Self::names()));
        }
        provider
    }

    /// The supported names, for messages.
    pub fn names() -> String {
        Self::ALL.map(Self::as_str).join(", ")
    }

    /// Runs `visitor` with this provider's media protocol as a type, so what it builds (a
    /// call's reader and writer) is compiled for that protocol.
    pub fn with_media<V: MediaVisitor>(self, visitor: V) -> V::Output {
        match self {
            TrunkProvider::Twilio => visitor.visit::<twilio::TwilioMedia>(),
            TrunkProvider::Plivo => visitor.visit::<plivo::PlivoMedia>(),
            TrunkProvider::Exotel => visitor.visit::<exotel::ExotelMedia>(),
            TrunkProvider::Telnyx => visitor.visit::<telnyx::TelnyxMedia>(),
            TrunkProvider::Vonage => visitor.visit::<vonage::VonageMedia>(),
        }
    }
}

impl fmt::Display for TrunkProvider {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Code that is generic over a media protocol (see [`TrunkProvider::with_media`]).
pub trait MediaVisitor {
    type Output;
    fn visit<M: MediaProtocol>(self) -> Self::Output;
}

/// Each provider's control plane, built once per server with the shared HTTP client and the
/// configured base URLs.
#[derive(Clone)]
pub struct Telephony {
    providers: Arc<[Arc<dyn TelephonyProvider>]>,
}

impl Telephony {
    pub fn new(http: reqwest::Client, config: &Config) -> Self {
        let providers = TrunkProvider::ALL
            .map(|p| {
                let base_url = config.telephony_base_url(p.as_str());
                match p {
                    TrunkProvider::Twilio => {
                        Arc::new(twilio::Twilio::new(http.clone(), base_url.as_deref()))
                            as Arc<dyn TelephonyProvider>
                    }
                    TrunkProvider::Plivo => {
                        Arc::new(plivo::Plivo::new(http.clone(), base_url.as_deref()))
                    }
                    TrunkProvider::Exotel => {
                        Arc::new(exotel::Exotel::new(http.clone(), base_url.as_deref()))
                    }
                    TrunkProvider::Telnyx => {
                        Arc::new(telnyx::Telnyx::new(http.clone(), base_url.as_deref()))
                    }
                    TrunkProvider::Vonage => {
                        Arc::new(vonage::Vonage::new(http.clone(), base_url.as_deref()))
                    }
                }
            })
            .to_vec();
        Self {
            providers: providers.into(),
        }
    }

    /// The provider's control plane.
    pub fn get(&self, provider: TrunkProvider) -> &dyn TelephonyProvider {
        let index = TrunkProvider::ALL
            .iter()
            .position(|p| *p == provider)
            .expect("every provider is in ALL");
        self.providers[index].as_ref()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn providers_name_the_field_when_refused() {
        let mut v = Violations::new();
        assert_eq!(
            TrunkProvider::parse_field("twilio", "p", &mut v),
            Some(TrunkProvider::Twilio)
        );
        assert!(TrunkProvider::parse_field("Twilio", "p", &mut v).is_none());
        let errors = v.into_result().unwrap_err();
        assert_eq!(errors[0].field, "p");
        assert!(errors[0].message.starts_with("must be one of: twilio"));
    }

    #[test]
    fn every_provider_is_registered_under_its_name() {
        let telephony = Telephony::new(reqwest::Client::new(), &Config::default());
        for provider in TrunkProvider::ALL {
            assert_eq!(telephony.get(provider).name(), provider.as_str());
        }
    }
}
