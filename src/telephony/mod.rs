//! Telephony providers seen from voxbridge's side: the owner's provider accounts (trunks) and the
//! numbers routed to assistants, and, per provider, what it takes to place, hang up and transfer
//! calls and to trust the webhooks it sends. The live media stream itself is the transport's job
//! (`transport/`); this module only deals with the provider's REST API and its control plane.

mod call_status;
mod phone_number;
mod sid;
mod trunk;
pub mod twilio_control;
pub mod twilio_rest;
pub mod twilio_signature;
pub mod twiml;

pub use call_status::{CallStatus, StatusCallbackEvent};
pub use phone_number::{InboundRoute, PhoneNumber};
pub use sid::{is_sid, new_sid};
pub use trunk::{TRUNK_NAME_MAX_CHARS, Trunk, TrunkProvider, is_trunk_id, new_trunk_id};
