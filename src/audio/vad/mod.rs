//! Voice activity detection: is the caller speaking? Decides barge-in.
pub mod silero;
