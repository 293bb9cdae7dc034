//! Setting a call up before any audio flows: the assistant's prompt, start instruction and (for
//! an outbound call) voicemail message are rendered with the call's metadata and built-ins, and a
//! one-time token is made for the media stream. Outbound, inbound and web calls all start here,
//! so they render texts the same way.

use std::time::Duration;

use serde_json::Value;

use crate::agent::template::{CallFacts, TemplateVars, render};
use crate::assistant::Assistant;
use crate::store::{CallStatus, Direction, NewCall, format_timestamp};
use crate::tokens::{random_token, token_hash};

/// What is known about a call before it exists.
#[derive(Debug, Clone)]
pub struct CallDraft<'a> {
    pub assistant: &'a Assistant,
    pub direction: Direction,
    pub trunk_id: Option<String>,
    pub from_number: Option<String>,
    pub to_number: Option<String>,
    /// The request's metadata (a JSON object; anything else renders built-ins only).
    pub metadata: Value,
    pub status: CallStatus,
    pub provider_call_sid: Option<String>,
    /// How long the media-stream token stays usable.
    pub token_ttl: Duration,
}

/// A call ready to be stored, and the token its media stream must present (shown only here).
#[derive(Debug, Clone)]
pub struct PreparedCall {
    pub call: NewCall,
    pub stream_token: String,
}

/// Renders the texts and makes the token.
pub fn prepare_call(draft: CallDraft<'_>) -> PreparedCall {
    let id = uuid::Uuid::new_v4().to_string();
    let now = time::OffsetDateTime::now_utc();
    let facts = CallFacts {
        call_id: id.clone(),
        to_number: draft.to_number.clone().unwrap_or_default(),
        from_number: draft.from_number.clone().unwrap_or_default(),
        now: Some(now),
    };
    let vars = TemplateVars::new(Some(&draft.metadata), &facts);
    let prompt = match draft.assistant.function() {
        // The function's instructions first; the assistant's own prompt adds to them.
        Some(function) => render(
            &format!("{}\n\n{}", function.prompt, draft.assistant.prompt),
            &vars,
        ),
        None => render(&draft.assistant.prompt, &vars),
    };
    let start = draft
        .assistant
        .start_instruction
        .as_deref()
        .map(|t| render(t, &vars));
    // Only an outbound call can reach an answering machine: elsewhere the message's
    // placeholders would be reported missing for a text nobody will hear.
    let voicemail = draft
        .assistant
        .settings
        .voicemail_message
        .as_deref()
        .filter(|_| draft.direction == Direction::Outbound)
        .map(|t| render(t, &vars));
    let mut missing = prompt.missing;
    let later = start.iter().chain(voicemail.iter());
    for key in later.flat_map(|s| s.missing.iter()) {
        if !missing.contains(key) {
            missing.push(key.clone());
        }
    }
    let stream_token = random_token("vst_");
    let expires = now + draft.token_ttl;
    PreparedCall {
        call: NewCall {
            id,
            owner_id: draft.assistant.owner_id.clone(),
            assistant_id: draft.assistant.id.clone(),
            trunk_id: draft.trunk_id,
            direction: draft.direction,
            from_number: draft.from_number,
            to_number: draft.to_number,
            status: draft.status,
            provider_call_sid: draft.provider_call_sid,
            metadata: if draft.metadata.is_object() {
                draft.metadata
            } else {
                Value::Object(Default::default())
            },
            rendered_prompt: prompt.text,
            rendered_start_instruction: start.map(|s| s.text),
            rendered_voicemail_message: voicemail.map(|s| s.text),
            missing_variables: missing,
            stream_token_hash: Some(token_hash(&stream_token)),
            stream_token_expires_at: Some(format_timestamp(expires)),
        },
        stream_token,
    }
}
