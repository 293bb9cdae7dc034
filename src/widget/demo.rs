//! The demo assistant: with `serve --sim` on an empty database, the first owner gets one, so the
//! demo page at `/` can place a call on the very first start without any set-up.

use crate::assistant::{Assistant, CartesiaVoice, TtsConfig};
use crate::store::{Store, StoreError, now_timestamp};

/// A Cartesia voice id (any UUID works with the sim's fake Cartesia).
pub const DEMO_VOICE_ID: &str = "a167e0f3-df7e-4277-976b-be2f952fa275";

/// The demo assistant of `owner_id`.
pub fn demo_assistant(owner_id: &str) -> Assistant {
    let now = now_timestamp();
    Assistant {
        id: uuid::Uuid::new_v4().to_string(),
        owner_id: owner_id.to_owned(),
        name: "Demo assistant".to_owned(),
        description: "Created by `voxbridge serve --sim` for the demo page".to_owned(),
        prompt: "You are a friendly assistant. Keep answers short.".to_owned(),
        tts: TtsConfig::Cartesia(CartesiaVoice {
            voice_id: DEMO_VOICE_ID.to_owned(),
            ..CartesiaVoice::default()
        }),
        start_instruction: Some("Hello {{name|there}}! How can I help you today?".to_owned()),
        end_call_url: None,
        // With the sim LLM this shows a call's analysis in its details with no accounts.
        settings: crate::assistant::CallSettings {
            analysis: crate::analysis::AnalysisSettings {
                summary: true,
                structured_data_schema: Some(serde_json::json!({
                    "type": "object",
                    "properties": {
                        "topic": {"type": ["string", "null"], "description": "What the caller wanted"},
                        "email": {"type": ["string", "null"], "format": "email"}
                    },
                    "required": ["topic", "email"]
                })),
                success_criteria: Some("The caller got an answer.".to_owned()),
            },
            ..Default::default()
        },
        tool_ids: Vec::new(),
        created_at: now.clone(),
        updated_at: now,
    }
}

/// Stores a demo assistant for the owner of `key`; answers its id (none for an unknown key).
pub async fn create_demo_assistant(store: &Store, key: &str) -> Result<Option<String>, StoreError> {
    let Some(owner) = store.owner_by_key(key).await? else {
        return Ok(None);
    };
    let assistant = demo_assistant(&owner.id);
    store.insert_assistant(&assistant).await?;
    Ok(Some(assistant.id))
}
