//! The per-call session: a few tasks joined by bounded channels (transport reader, transport
//! writer, the providers' own tasks) and one agent task that owns the call's state.

pub mod heard;
pub mod io;
pub mod providers;
pub mod recorder;
pub mod registry;
pub mod reply;
pub mod report;
pub mod session;
pub mod setup;
