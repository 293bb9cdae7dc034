//! A phone number the owner routes to an assistant through a trunk. Inbound calls are matched on
//! the number alone (the provider's webhook names only the called number), which is why an
//! active number belongs to exactly one owner.

use super::Trunk;

/// A stored phone number.
#[derive(Debug, Clone, PartialEq)]
pub struct PhoneNumber {
    pub id: String,
    pub owner_id: String,
    /// E.164.
    pub number: String,
    pub assistant_id: String,
    pub trunk_id: String,
    pub created_at: String,
    pub updated_at: String,
}

/// Where an inbound call to a number goes. Only built when the number, its assistant and its
/// trunk are all active, so holding one means the call may be answered.
#[derive(Debug, Clone, PartialEq)]
pub struct InboundRoute {
    pub phone_number_id: String,
    /// The called number, E.164.
    pub phone_number: String,
    pub owner_id: String,
    pub assistant_id: String,
    /// The trunk with its secret, to verify the webhook's signature and to act on the call.
    pub trunk: Trunk,
}
