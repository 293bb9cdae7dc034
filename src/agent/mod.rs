//! The agent core shared by every channel: the transport-free [`conversation`] (history, the
//! model's reply, tools, the cut to what was heard), prompt templating, phrase cutting for TTS,
//! tools, and the turn-taking settings of voice calls.

pub mod conversation;
pub mod end_of_turn;
pub mod interruption;
pub mod keypad;
pub mod phrases;
pub mod template;
pub mod tools;
