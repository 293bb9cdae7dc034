//! The assistant: what a caller talks to. Its seed fields (name, prompt, voice, start instruction,
//! end-call webhook), the call settings beyond the seed, and the tools it may call. The REST layer
//! validates into these types; the store persists them; a live call reads them.

mod json_schema;
mod secret;
mod settings;
mod tool;
mod tts;
pub mod v1;

pub use json_schema::check_parameters_schema;
pub use secret::mask_secret;
pub use settings::{
    CallSettings, FirstMessageMode, LlmFallback, LlmSettings, MAX_CALL_DURATION_SECS,
    SILENCE_TIMEOUT_SECS, SttProvider, SttSettings, check_range, check_vad,
};
pub use tool::{
    BUILT_IN_TOOL_NAMES, HttpTool, TOOL_NAME_MAX_CHARS, TOOL_TIMEOUT_MS, ToolMethod,
    is_function_name, is_sensitive_header,
};
pub use tts::{
    CartesiaVoice, SARVAM_DEFAULT_LANGUAGE, SarvamVoice, TtsConfig, TtsFallback, TtsModel,
};

/// Longest `assistant_name`, in characters.
pub const NAME_MAX_CHARS: usize = 100;
/// Longest `assistant_start_instruction`, in characters.
pub const START_INSTRUCTION_MAX_CHARS: usize = 200;
/// Longest `assistant_voicemail_message`, in characters (about a minute of speech: a mailbox
/// records a few minutes at most, and nobody listens to more).
pub const VOICEMAIL_MESSAGE_MAX_CHARS: usize = 1000;

/// A stored assistant.
#[derive(Debug, Clone, PartialEq)]
pub struct Assistant {
    pub id: String,
    pub owner_id: String,
    pub name: String,
    pub description: String,
    pub prompt: String,
    pub tts: TtsConfig,
    pub start_instruction: Option<String>,
    pub end_call_url: Option<String>,
    pub settings: CallSettings,
    /// Attached tools, in the order the owner gave them.
    pub tool_ids: Vec<String>,
    pub created_at: String,
    pub updated_at: String,
}

impl Assistant {
    /// The built-in function this assistant plays, if any (see [`crate::conversations`]).
    pub fn function(&self) -> Option<&'static crate::conversations::functions::FunctionTemplate> {
        self.settings
            .function
            .as_deref()
            .and_then(crate::conversations::functions::function)
    }

    /// What to work out when a conversation ends: the assistant's own settings, with its
    /// function's case schema as the structured data when it names none of its own.
    pub fn analysis(&self) -> crate::analysis::AnalysisSettings {
        let mut analysis = self.settings.analysis.clone();
        if analysis.structured_data_schema.is_none()
            && let Some(function) = self.function()
        {
            analysis.structured_data_schema = Some(function.schema.clone());
        }
        analysis
    }
}
