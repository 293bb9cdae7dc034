//! Telephony providers seen from voxbridge's side: the owner's provider accounts (trunks), the
//! numbers routed to assistants, and one folder per provider behind one seam
//! ([`provider::TelephonyProvider`] for its control plane — webhooks, answer documents, placing,
//! ending and transferring calls — and [`provider::MediaProtocol`] for its media stream),
//! listed in [`registry`]. The call session never names a provider.

mod call_status;
pub mod exotel;
mod phone_number;
pub mod plivo;
pub mod provider;
pub mod registry;
mod sid;
pub mod telnyx;
mod trunk;
pub mod twilio;
pub mod vonage;

pub use call_status::{CallStatus, StatusCallbackEvent};
pub use phone_number::{InboundRoute, PhoneNumber};
pub use provider::{CallControl, TelephonyProvider};
pub use registry::{Telephony, TrunkProvider};
pub use sid::{is_sid, new_sid};
pub use trunk::{TRUNK_NAME_MAX_CHARS, Trunk, is_trunk_id, new_trunk_id};
