//! Structured outputs: ask the model for a JSON document that matches a JSON Schema, check the
//! answer with a maintained validator, and retry once with the validation errors. Post-call (and
//! post-chat) analysis is built on it: a summary, the owner's structured data and a success
//! verdict, stored with the conversation and sent in its end webhook. The same engine extracts
//! fields progressively while a chat goes on.

mod extract;
mod post_call;
mod settings;

pub use extract::{ExtractError, extract, response_format};
pub use post_call::{Analysis, AnalysisStatus, analyze};
pub use settings::{AnalysisSettings, check_schema};
