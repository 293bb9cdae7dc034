//! The agent core shared by every channel: prompt templating, conversation history, phrase
//! cutting for TTS, and tools.

pub mod interruption;
pub mod phrases;
pub mod template;
pub mod tools;
