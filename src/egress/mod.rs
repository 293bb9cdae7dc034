//! Requests to URLs an API user chose: end-of-call webhooks, HTTP tools and an assistant's own
//! LLM endpoint. They share one [`AddressPolicy`] (which addresses may be reached) and one
//! [`EgressClient`] that applies it on the address actually connected to, follows no redirect
//! and uses no proxy. Requests to the server's own configured providers do not go through here:
//! the operator chose those.

mod address_policy;
mod client;

pub use address_policy::{AddressError, AddressPolicy};
pub use client::EgressClient;
