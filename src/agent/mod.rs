//! The agent core shared by every channel: the transport-free [`conversation`] (history, the
//! model's reply, tools, the cut to what was heard), prompt templating, phrase cutting for TTS,
//! and tools.

pub mod conversation;
pub mod interruption;
pub mod phrases;
pub mod template;
pub mod tools;
