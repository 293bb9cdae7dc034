//! The settings a live call needs beyond the seed's fields: which STT and LLM to use, who speaks
//! first, and the call's timeouts. Every one is optional in the API and has a documented default,
//! so an assistant created with only the seed's fields is complete.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::secret::mask_secret;
use crate::agent::end_of_turn::TurnSettings;
use crate::agent::interruption::InterruptionSettings;
use crate::agent::keypad::KeypadSettings;
use crate::analysis::AnalysisSettings;
use crate::audio::vad::VadConfig;
use crate::config::LlmConfig;
use crate::egress::AddressPolicy;
use crate::validation::{Violations, check_http_url, is_bcp47};

/// Speech-to-text provider for the caller's audio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum SttProvider {
    #[default]
    Deepgram,
    Sarvam,
}

/// `assistant_stt_config`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct SttSettings {
    /// `deepgram` (default) or `sarvam`.
    pub provider: SttProvider,
    /// Provider model; default `nova-3` for Deepgram, `saaras:v3` for Sarvam.
    pub model: Option<String>,
    /// Language of the caller; default `en` for Deepgram, `unknown` (auto-detect) for Sarvam.
    pub language: Option<String>,
}

impl SttSettings {
    pub fn effective_model(&self) -> &str {
        self.model.as_deref().unwrap_or(match self.provider {
            SttProvider::Deepgram => "nova-3",
            SttProvider::Sarvam => "saaras:v3",
        })
    }

    pub fn effective_language(&self) -> &str {
        self.language.as_deref().unwrap_or(match self.provider {
            SttProvider::Deepgram => "en",
            SttProvider::Sarvam => "unknown",
        })
    }
}

/// `assistant_llm_config`: any OpenAI-compatible Chat Completions endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LlmSettings {
    /// Base URL up to and including `/v1`; default: the server's `llm.base_url`.
    pub base_url: Option<String>,
    /// Model name; default: the server's `llm.model`.
    pub model: Option<String>,
    /// Sampling temperature, 0 to 2 (default 0.7).
    pub temperature: f32,
    /// Largest reply in tokens, 1 to 4096 (default 300: spoken replies are short).
    pub max_tokens: u32,
    /// Overrides the server's LLM key for this assistant. Never returned in full.
    pub api_key: Option<String>,
    /// How long one request may take to its first token, 1000 to 30000 ms (default 5000): a
    /// stalled model counts as failed, is asked again once, then the fallback is.
    pub first_token_timeout_ms: u32,
    /// Another model asked when this one fails before saying anything, twice (a timeout, a
    /// 5xx, a 429) or once (a refusal). Default: none.
    pub fallback: Option<LlmFallback>,
    /// Said when a reply fails for good before any of it was said, and the call goes on
    /// (default: "Sorry, I didn't catch that. Could you say it again?"). At most 300
    /// characters. A second failed reply in a row ends the call with `provider_error`.
    pub apology: Option<String>,
}

impl Default for LlmSettings {
    fn default() -> Self {
        Self {
            base_url: None,
            model: None,
            temperature: 0.7,
            max_tokens: 300,
            api_key: None,
            first_token_timeout_ms: FIRST_TOKEN_TIMEOUT_MS.2,
            fallback: None,
            apology: None,
        }
    }
}

/// `assistant_llm_config.fallback`: the model asked when the assistant's own fails. Its
/// `base_url` and `api_key` default to the server's and follow the same rules as the
/// assistant's own: another endpoint passes the egress policy and needs its own key.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize, ToSchema)]
#[serde(default, deny_unknown_fields)]
pub struct LlmFallback {
    /// Model name (required).
    pub model: String,
    /// Base URL up to and including `/v1`; default: the server's `llm.base_url`.
    pub base_url: Option<String>,
    /// Key for the fallback's endpoint. Never returned in full.
    pub api_key: Option<String>,
}

impl LlmFallback {
    /// As [`LlmSettings`], so the fallback resolves to an endpoint by the same rules.
    pub fn as_settings(&self) -> LlmSettings {
        LlmSettings {
            base_url: self.base_url.clone(),
            model: Some(self.model.clone()),
            api_key: self.api_key.clone(),
            ..LlmSettings::default()
        }
    }
}

/// `(min, max, default)` of `assistant_llm_config.first_token_timeout_ms`. Five seconds is
/// already a long silence on a phone; the retry and the fallback each get as long again.
pub const FIRST_TOKEN_TIMEOUT_MS: (u32, u32, u32) = (1_000, 30_000, 5_000);
/// Longest `assistant_llm_config.apology`, in characters.
pub const APOLOGY_MAX_CHARS: usize = 300;

/// Who opens the conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum FirstMessageMode {
    /// The assistant speaks its start instruction as soon as the call connects (default).
    #[default]
    AssistantSpeaksFirst,
    /// The assistant waits for the caller to speak first.
    WaitForCaller,
}

/// Bounds of the numeric settings, shared by validation and the documentation.
pub const SILENCE_TIMEOUT_SECS: (u32, u32, u32) = (5, 600, 30);
pub const MAX_CALL_DURATION_SECS: (u32, u32, u32) = (30, 14_400, 1_800);

/// Everything an assistant stores besides the seed's fields.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CallSettings {
    pub stt: SttSettings,
    pub llm: LlmSettings,
    pub first_message_mode: FirstMessageMode,
    pub silence_timeout_secs: u32,
    pub max_call_duration_secs: u32,
    /// When the caller's voice counts as speech (barge-in starts here).
    pub vad: VadConfig,
    /// When caller speech over the agent interrupts it.
    pub interruption: InterruptionSettings,
    /// When the caller's turn is over.
    pub turn: TurnSettings,
    /// What keypad digits are for.
    pub dtmf: KeypadSettings,
    /// Record calls as two-channel WAVs (caller left, agent right).
    pub recording: bool,
    /// What to work out once a conversation ends.
    pub analysis: AnalysisSettings,
    /// A built-in function the assistant plays (`customer_support`): its instructions come
    /// before the assistant's prompt, and its case is the analysis' structured data.
    pub function: Option<String>,
    /// The owner's MCP servers whose tools the model is offered.
    pub mcp_ids: Vec<String>,
    /// A named LLM provider (a v1 assistant's `provider`): the operator's endpoint and key for
    /// it replace `llm.base_url`/`llm.api_key` (see [`crate::llm::providers`]).
    pub llm_provider: Option<String>,
    /// The owner's catalog (its business id) whose products the model may search in calls
    /// and chats, and show in web calls.
    pub catalog_business_id: Option<String>,
    /// Left on an answering machine that picks up an outbound call (with placeholders, rendered
    /// from the call's metadata); without it no answering-machine detection is asked for.
    pub voicemail_message: Option<String>,
    /// Another voice, for what the assistant's own TTS fails to say after its retry.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tts_fallback: Option<super::TtsFallback>,
}

impl Default for CallSettings {
    fn default() -> Self {
        Self {
            stt: SttSettings::default(),
            llm: LlmSettings::default(),
            first_message_mode: FirstMessageMode::default(),
            silence_timeout_secs: SILENCE_TIMEOUT_SECS.2,
            max_call_duration_secs: MAX_CALL_DURATION_SECS.2,
            vad: VadConfig::default(),
            interruption: InterruptionSettings::default(),
            turn: TurnSettings::default(),
            dtmf: KeypadSettings::default(),
            recording: false,
            analysis: AnalysisSettings::default(),
            function: None,
            mcp_ids: Vec::new(),
            llm_provider: None,
            catalog_business_id: None,
            voicemail_message: None,
            tts_fallback: None,
        }
    }
}

impl SttSettings {
    pub fn validate(&self, field: &str, v: &mut Violations) {
        if let Some(model) = &self.model
            && model.trim().is_empty()
        {
            v.add(format!("{field}.model"), "must not be empty when given");
        }
        if let Some(language) = &self.language
            && !(is_bcp47(language)
                || (self.provider == SttProvider::Sarvam && language == "unknown"))
        {
            v.add(
                format!("{field}.language"),
                "must be a BCP-47 language code such as \"en-US\"",
            );
        }
    }
}

impl LlmSettings {
    /// Checks the settings; `server` and `egress` decide where an own `base_url` (and the
    /// fallback's) may point, by the rules of [`check_endpoint`].
    pub fn validate(
        &self,
        field: &str,
        server: &LlmConfig,
        egress: AddressPolicy,
        v: &mut Violations,
    ) {
        check_endpoint(
            field,
            self.base_url.as_deref(),
            self.api_key.is_some(),
            server,
            egress,
            v,
        );
        if let Some(model) = &self.model
            && model.trim().is_empty()
        {
            v.add(format!("{field}.model"), "must not be empty when given");
        }
        check_range(
            &format!("{field}.first_token_timeout_ms"),
            self.first_token_timeout_ms,
            FIRST_TOKEN_TIMEOUT_MS,
            v,
        );
        if let Some(fallback) = &self.fallback {
            let field = format!("{field}.fallback");
            check_endpoint(
                &field,
                fallback.base_url.as_deref(),
                fallback.api_key.is_some(),
                server,
                egress,
                v,
            );
            if fallback.model.trim().is_empty() {
                v.add(format!("{field}.model"), "is required");
            }
            if let Some(key) = &fallback.api_key
                && key.trim().is_empty()
            {
                v.add(format!("{field}.api_key"), "must not be empty when given");
            }
        }
        if let Some(apology) = &self.apology {
            if apology.trim().is_empty() {
                v.add(format!("{field}.apology"), "must not be empty when given");
            } else if apology.chars().count() > APOLOGY_MAX_CHARS {
                v.add(
                    format!("{field}.apology"),
                    format!("must be at most {APOLOGY_MAX_CHARS} characters"),
                );
            }
        }
        if !(0.0..=2.0).contains(&self.temperature) {
            v.add(format!("{field}.temperature"), "must be between 0 and 2");
        }
        if !(1..=4096).contains(&self.max_tokens) {
            v.add(format!("{field}.max_tokens"), "must be between 1 and 4096");
        }
        if let Some(key) = &self.api_key
            && key.trim().is_empty()
        {
            v.add(format!("{field}.api_key"), "must not be empty when given");
        }
    }

    /// As responses show it: the api keys masked.
    pub fn to_public(&self) -> Self {
        let mut shown = self.clone();
        shown.api_key = shown.api_key.as_deref().map(mask_secret);
        if let Some(fallback) = shown.fallback.as_mut() {
            fallback.api_key = fallback.api_key.as_deref().map(mask_secret);
        }
        shown
    }

    /// A masked key sent back unchanged keeps the stored key (the fallback's too).
    pub fn keep_masked_key_from(&mut self, stored: &LlmSettings) {
        keep_masked(&mut self.api_key, stored.api_key.as_ref());
        if let (Some(sent), Some(kept)) = (self.fallback.as_mut(), stored.fallback.as_ref()) {
            keep_masked(&mut sent.api_key, kept.api_key.as_ref());
        }
    }
}

fn keep_masked(sent: &mut Option<String>, kept: Option<&String>) {
    if let (Some(shown), Some(kept)) = (sent.as_ref(), kept)
        && *shown == mask_secret(kept)
    {
        *sent = Some(kept.clone());
    }
}

/// Where an LLM endpoint named under `field` may point. A base URL the operator trusts (the
/// server's, or one in `llm.allowed_base_urls`) only has to be a URL. Any other is an
/// owner-chosen address: it must pass the egress policy, and it needs a key of its own, since
/// the server's key only goes where the operator configured it.
fn check_endpoint(
    field: &str,
    base_url: Option<&str>,
    has_key: bool,
    server: &LlmConfig,
    egress: AddressPolicy,
    v: &mut Violations,
) {
    let Some(base_url) = base_url else {
        return;
    };
    let checked = if server.is_trusted_base_url(base_url) {
        check_http_url(base_url).map(drop)
    } else {
        if !has_key {
            v.add(
                format!("{field}.api_key"),
                "is required when base_url is not the server's LLM endpoint (or one of \
                 llm.allowed_base_urls): the server's key is only sent where the operator \
                 configured it",
            );
        }
        egress.check_url(base_url).map(drop)
    };
    if let Err(why) = checked {
        v.add(format!("{field}.base_url"), why);
    }
}

/// Checks a numeric setting against its `(min, max, default)` bounds.
pub fn check_range(field: &str, value: u32, bounds: (u32, u32, u32), v: &mut Violations) {
    if !(bounds.0..=bounds.1).contains(&value) {
        v.add(
            field,
            format!("must be between {} and {}", bounds.0, bounds.1),
        );
    }
}

/// Checks VAD settings, naming the offending field under `field`.
pub fn check_vad(config: &VadConfig, field: &str, v: &mut Violations) {
    if let Err(crate::audio::vad::VadError::InvalidConfig(why)) = config.validate() {
        let (name, rule) = why.split_once(' ').unwrap_or((why, "is out of range"));
        v.add(format!("{field}.{name}"), rule.replace("..=", " to "));
    }
}
