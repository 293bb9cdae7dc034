//! `/assistant/*`: create, list, details, update and (soft) delete voice assistants, as the
//! "Assistant Management" document specifies, plus the call settings beyond it.

use axum::extract::State;
use axum::response::Response;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use super::envelope::{Envelope, ok};
use super::error::ApiError;
use super::json::ApiJson;
use super::patch::{merge_patch, merged, not_null, nullable, typed, update_until_stored};
use super::path::ApiPath;
use crate::agent::end_of_turn::TurnSettings;
use crate::agent::interruption::InterruptionSettings;
use crate::agent::keypad::KeypadSettings;
use crate::analysis::AnalysisSettings;
use crate::assistant::{
    Assistant, CallSettings, FirstMessageMode, LlmSettings, MAX_CALL_DURATION_SECS, NAME_MAX_CHARS,
    SILENCE_TIMEOUT_SECS, START_INSTRUCTION_MAX_CHARS, SttSettings, TtsConfig, TtsFallback,
    TtsModel, VOICEMAIL_MESSAGE_MAX_CHARS, check_range, check_vad,
};
use crate::audio::vad::VadConfig;
use crate::config::Config;
use crate::store::now_timestamp;
use crate::validation::Violations;

/// Most tools one assistant may carry (each is sent to the LLM on every turn).
const MAX_TOOLS: usize = 32;

/// Body of `POST /assistant/create`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAssistant {
    /// 1-100 characters.
    #[schema(required = true)]
    pub assistant_name: Option<String>,
    /// Required, non-empty.
    #[schema(required = true)]
    pub assistant_description: Option<String>,
    /// The system prompt; may contain `{{key}}` / `{{key|default}}` placeholders.
    #[schema(required = true)]
    pub assistant_prompt: Option<String>,
    /// `cartesia` or `sarvam`.
    #[schema(required = true)]
    pub assistant_tts_model: Option<String>,
    /// Cartesia: `{voice_id, api_key?, model_id?, language?}`; Sarvam:
    /// `{speaker, target_language_code? (default bn-IN), api_key?, model?}`.
    #[schema(required = true, value_type = Object)]
    pub assistant_tts_config: Option<Value>,
    /// Spoken when the call starts; at most 200 characters; may contain placeholders.
    pub assistant_start_instruction: Option<String>,
    /// Absolute http(s) URL that receives the end-of-call report.
    pub assistant_end_call_url: Option<String>,
    /// Speech-to-text settings (default: Deepgram `nova-3`, `en`).
    #[schema(value_type = Option<SttSettings>)]
    pub assistant_stt_config: Option<Value>,
    /// LLM settings (default: the server's OpenAI-compatible endpoint and model), with the
    /// first-token timeout of a request, an optional `fallback` model asked when the model
    /// fails, and the `apology` said when a reply fails for good.
    #[schema(value_type = Option<LlmSettings>)]
    pub assistant_llm_config: Option<Value>,
    /// `assistant_speaks_first` (default) or `wait_for_caller`.
    pub assistant_first_message_mode: Option<FirstMessageMode>,
    /// Seconds of caller silence before the agent prompts, then hangs up (5-600, default 30).
    pub assistant_silence_timeout_secs: Option<u32>,
    /// Longest call in seconds (30-14400, default 1800).
    pub assistant_max_call_duration_secs: Option<u32>,
    /// Voice activity detection of the caller (barge-in): `min_speech_ms` (default 200),
    /// `onset_ms` (80: the agent stops this soon after the caller's first sound),
    /// `min_silence_ms` (500), `threshold` (0.5), `energy_margin_db` (7), `neural` (true).
    #[schema(value_type = Option<VadConfig>)]
    pub assistant_vad_config: Option<Value>,
    /// When caller speech interrupts the agent: `enabled` (true), `min_words` (1),
    /// `force_after_ms` (1500).
    #[schema(value_type = Option<InterruptionSettings>)]
    pub assistant_interruption_config: Option<Value>,
    /// When the caller's turn is over: `end_of_turn_silence_ms` (200) of silence heard by the
    /// VAD asks the STT for its final at once; speech within `continuation_grace_ms` (1000)
    /// before the reply is heard continues the same turn.
    #[schema(value_type = Option<TurnSettings>)]
    pub assistant_turn_config: Option<Value>,
    /// Keypad digits: `mode` `input` (collected into one entry that is the caller's turn) or
    /// `ignore`; an entry ends at `terminator` (`#`), `max_digits` (16) or `timeout_ms` (2000)
    /// after its last key.
    #[schema(value_type = Option<KeypadSettings>)]
    pub assistant_dtmf_config: Option<Value>,
    /// Record calls as two-channel WAVs (caller left, agent right, 16-bit PCM at the call's
    /// rate), served by `GET /call/recording/{call_id}` (default false).
    pub assistant_recording: Option<bool>,
    /// What to work out once each call ends: `summary` (bool), `structured_data_schema` (a JSON
    /// Schema object), `success_criteria` (text). Results appear in call details and the
    /// end-of-call webhook.
    #[schema(value_type = Option<AnalysisSettings>)]
    pub assistant_analysis: Option<Value>,
    /// A built-in function the assistant plays (`customer_support`): its instructions come
    /// before the prompt, and its case fields are the analysis' structured data.
    pub assistant_function: Option<String>,
    /// Ids of the caller's own active tools.
    pub tool_ids: Option<Vec<String>>,
    /// Ids of the caller's own MCP servers, whose tools the model is offered too.
    pub mcp_ids: Option<Vec<String>>,
    /// A business id of the caller's product catalogs (`/catalog/{business_id}/products`):
    /// calls and chats may search it (`search_products`), web calls also show products.
    pub assistant_catalog_business_id: Option<String>,
    /// Left on an answering machine that picks up an outbound call: at most 1000 characters;
    /// may contain placeholders. With it, outbound calls ask Twilio for answering-machine
    /// detection; at the machine's beep the agent stops, says this message and hangs up.
    pub assistant_voicemail_message: Option<String>,
    /// Another voice, `{"model": "cartesia" | "sarvam", "config": {…as assistant_tts_config}}`:
    /// what the assistant's own TTS fails to say after its one retry is said by this one, which
    /// then speaks for the rest of the call.
    #[schema(value_type = Option<Object>)]
    pub assistant_tts_fallback: Option<Value>,
}

/// Body of `PATCH /assistant/update/{assistant_id}`: any subset of the create fields. A `null`
/// clears an optional field; nested configs merge over the stored ones (RFC 7396).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateAssistant {
    #[serde(default, deserialize_with = "nullable")]
    pub assistant_name: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub assistant_description: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub assistant_prompt: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub assistant_tts_model: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Object>)]
    pub assistant_tts_config: Option<Option<Value>>,
    #[serde(default, deserialize_with = "nullable")]
    pub assistant_start_instruction: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub assistant_end_call_url: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<SttSettings>)]
    pub assistant_stt_config: Option<Option<Value>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<LlmSettings>)]
    pub assistant_llm_config: Option<Option<Value>>,
    #[serde(default, deserialize_with = "nullable")]
    pub assistant_first_message_mode: Option<Option<FirstMessageMode>>,
    #[serde(default, deserialize_with = "nullable")]
    pub assistant_silence_timeout_secs: Option<Option<u32>>,
    #[serde(default, deserialize_with = "nullable")]
    pub assistant_max_call_duration_secs: Option<Option<u32>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<VadConfig>)]
    pub assistant_vad_config: Option<Option<Value>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<InterruptionSettings>)]
    pub assistant_interruption_config: Option<Option<Value>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<TurnSettings>)]
    pub assistant_turn_config: Option<Option<Value>>,
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<KeypadSettings>)]
    pub assistant_dtmf_config: Option<Option<Value>>,
    #[serde(default, deserialize_with = "nullable")]
    pub assistant_recording: Option<Option<bool>>,
    /// Merged over the stored settings, except `structured_data_schema`, which is replaced
    /// whole (merging two schemas would make a third nobody wrote).
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<AnalysisSettings>)]
    pub assistant_analysis: Option<Option<Value>>,
    #[serde(default, deserialize_with = "nullable")]
    pub assistant_function: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub tool_ids: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "nullable")]
    pub mcp_ids: Option<Option<Vec<String>>>,
    #[serde(default, deserialize_with = "nullable")]
    pub assistant_catalog_business_id: Option<Option<String>>,
    #[serde(default, deserialize_with = "nullable")]
    pub assistant_voicemail_message: Option<Option<String>>,
    /// `null` removes the fallback voice; an object replaces it (a masked key sent back keeps
    /// the stored one).
    #[serde(default, deserialize_with = "nullable")]
    #[schema(value_type = Option<Object>)]
    pub assistant_tts_fallback: Option<Option<Value>>,
}

/// `data` of a successful create.
#[derive(Debug, Serialize, ToSchema)]
pub struct AssistantCreated {
    pub assistant_id: String,
    pub assistant_name: String,
}

/// `data` of a successful update or delete.
#[derive(Debug, Serialize, ToSchema)]
pub struct AssistantId {
    pub assistant_id: String,
}

/// One element of `data` in `GET /assistant/list`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AssistantListItem {
    pub assistant_id: String,
    pub assistant_name: String,
    pub assistant_tts_model: String,
    pub assistant_created_by_email: String,
    pub assistant_created_at: String,
}

/// `data` of `GET /assistant/details/{assistant_id}`. Secrets are masked.
#[derive(Debug, Serialize, ToSchema)]
pub struct AssistantDetails {
    pub assistant_id: String,
    pub assistant_name: String,
    pub assistant_description: String,
    pub assistant_prompt: String,
    pub assistant_tts_model: TtsModel,
    #[schema(value_type = Object)]
    pub assistant_tts_config: Value,
    pub assistant_start_instruction: Option<String>,
    pub assistant_end_call_url: Option<String>,
    pub tool_ids: Vec<String>,
    pub mcp_ids: Vec<String>,
    pub assistant_created_at: String,
    pub assistant_updated_at: String,
    /// Effective STT settings (defaults filled in).
    pub assistant_stt_config: SttSettings,
    /// LLM settings; a null `base_url` or `model` means the server's default.
    pub assistant_llm_config: LlmSettings,
    pub assistant_first_message_mode: FirstMessageMode,
    pub assistant_silence_timeout_secs: u32,
    pub assistant_max_call_duration_secs: u32,
    pub assistant_vad_config: VadConfig,
    pub assistant_interruption_config: InterruptionSettings,
    pub assistant_turn_config: TurnSettings,
    pub assistant_dtmf_config: KeypadSettings,
    pub assistant_recording: bool,
    pub assistant_analysis: AnalysisSettings,
    pub assistant_function: Option<String>,
    pub assistant_catalog_business_id: Option<String>,
    /// Null: outbound calls ask for no answering-machine detection.
    pub assistant_voicemail_message: Option<String>,
    /// `{model, config}` with the key masked; null: no fallback voice.
    #[schema(value_type = Option<Object>)]
    pub assistant_tts_fallback: Option<Value>,
}

impl AssistantDetails {
    fn of(a: Assistant) -> Self {
        let stt = SttSettings {
            provider: a.settings.stt.provider,
            model: Some(a.settings.stt.effective_model().to_owned()),
            language: Some(a.settings.stt.effective_language().to_owned()),
        };
        Self {
            assistant_tts_model: a.tts.model(),
            assistant_tts_config: a.tts.to_public_json(),
            assistant_llm_config: a.settings.llm.to_public(),
            assistant_stt_config: stt,
            assistant_first_message_mode: a.settings.first_message_mode,
            assistant_silence_timeout_secs: a.settings.silence_timeout_secs,
            assistant_max_call_duration_secs: a.settings.max_call_duration_secs,
            assistant_vad_config: a.settings.vad,
            assistant_interruption_config: a.settings.interruption.clone(),
            assistant_turn_config: a.settings.turn,
            assistant_dtmf_config: a.settings.dtmf.clone(),
            assistant_recording: a.settings.recording,
            assistant_analysis: a.settings.analysis.clone(),
            assistant_function: a.settings.function.clone(),
            assistant_catalog_business_id: a.settings.catalog_business_id.clone(),
            assistant_voicemail_message: a.settings.voicemail_message.clone(),
            assistant_tts_fallback: a.settings.tts_fallback.as_ref().map(|f| f.to_public_json()),
            assistant_id: a.id,
            assistant_name: a.name,
            assistant_description: a.description,
            assistant_prompt: a.prompt,
            assistant_start_instruction: a.start_instruction,
            assistant_end_call_url: a.end_call_url,
            tool_ids: a.tool_ids,
            mcp_ids: a.settings.mcp_ids.clone(),
            assistant_created_at: a.created_at,
            assistant_updated_at: a.updated_at,
        }
    }
}

fn not_found() -> ApiError {
    ApiError::NotFound("Assistant not found".to_owned())
}

fn parse_tts_model(value: &str, v: &mut Violations) -> Option<TtsModel> {
    let model = TtsModel::parse(value);
    if model.is_none() {
        v.add("assistant_tts_model", "must be one of: cartesia, sarvam");
    }
    model
}

/// Checks the rules every assistant must satisfy, whether just created or just patched. Blank
/// required texts are reported where the request is read ("is required" / "must not be empty").
fn check_assistant(a: &Assistant, config: &Config, v: &mut Violations) {
    if !a.name.trim().is_empty() {
        v.char_length("assistant_name", &a.name, 1, NAME_MAX_CHARS);
    }
    if let Some(text) = &a.start_instruction {
        v.char_length(
            "assistant_start_instruction",
            text,
            0,
            START_INSTRUCTION_MAX_CHARS,
        );
    }
    if let Some(text) = &a.settings.voicemail_message {
        v.char_length(
            "assistant_voicemail_message",
            text,
            0,
            VOICEMAIL_MESSAGE_MAX_CHARS,
        );
    }
    let egress = config.egress_policy();
    if let Some(url) = &a.end_call_url
        && let Err(why) = egress.check_url(url)
    {
        v.add("assistant_end_call_url", why);
    }
    a.settings.stt.validate("assistant_stt_config", v);
    a.settings
        .llm
        .validate("assistant_llm_config", &config.llm, egress, v);
    check_range(
        "assistant_silence_timeout_secs",
        a.settings.silence_timeout_secs,
        SILENCE_TIMEOUT_SECS,
        v,
    );
    check_range(
        "assistant_max_call_duration_secs",
        a.settings.max_call_duration_secs,
        MAX_CALL_DURATION_SECS,
        v,
    );
    check_vad(&a.settings.vad, "assistant_vad_config", v);
    a.settings
        .interruption
        .validate("assistant_interruption_config", v);
    a.settings.turn.validate("assistant_turn_config", v);
    a.settings.dtmf.validate("assistant_dtmf_config", v);
    a.settings.analysis.validate("assistant_analysis", v);
    if let Some(function) = &a.settings.function
        && crate::conversations::functions::function(function).is_none()
    {
        v.add(
            "assistant_function",
            format!(
                "must be one of: {}",
                crate::conversations::functions::function_names().join(", ")
            ),
        );
    }
    check_id_list("tool_ids", &a.tool_ids, v);
    check_id_list("mcp_ids", &a.settings.mcp_ids, v);
    if let Some(id) = &a.settings.catalog_business_id
        && !crate::catalog::is_business_id(id)
    {
        v.add(
            "assistant_catalog_business_id",
            crate::catalog::BUSINESS_ID_RULE,
        );
    }
}

fn check_id_list(field: &str, ids: &[String], v: &mut Violations) {
    if ids.len() > MAX_TOOLS {
        v.add(field, format!("must name at most {MAX_TOOLS}"));
    }
    for (i, id) in ids.iter().enumerate() {
        if ids[..i].contains(id) {
            v.add(format!("{field}[{i}]"), "is listed twice");
        }
    }
}

/// Every id must be one of the caller's active tools, and every MCP id one of their MCP servers
/// (another owner's is "not found").
async fn check_tools_exist(
    state: &AppState,
    owner_id: &str,
    ids: &[String],
    mcp_ids: &[String],
) -> Result<(), ApiError> {
    let mut v = Violations::new();
    for id in &state.store.missing_tools(owner_id, ids).await? {
        let i = ids.iter().position(|x| x == id).unwrap_or_default();
        v.add(
            format!("tool_ids[{i}]"),
            format!("no active tool with id {id:?}"),
        );
    }
    for id in &state.store.missing_mcp_servers(owner_id, mcp_ids).await? {
        let i = mcp_ids.iter().position(|x| x == id).unwrap_or_default();
        v.add(
            format!("mcp_ids[{i}]"),
            format!("no MCP server with id {id:?}"),
        );
    }
    v.into_result().map_err(ApiError::Invalid)
}

/// An empty start instruction or webhook means "none".
fn none_if_blank(value: Option<String>) -> Option<String> {
    value.filter(|s| !s.trim().is_empty())
}

#[utoipa::path(
    post, path = "/assistant/create", operation_id = "assistant_create", tag = "assistants",
    request_body = CreateAssistant,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Assistant created successfully", body = Envelope<AssistantCreated>),
        (status = 400, description = "Invalid input data or mismatched TTS configuration", body = Envelope<Value>),
        (status = 401, description = "Invalid or missing Bearer token", body = Envelope<Value>),
        (status = 500, description = "Internal server error", body = Envelope<Value>),
    )
)]
pub async fn create(
    State(state): State<AppState>,
    Caller(owner): Caller,
    ApiJson(body): ApiJson<CreateAssistant>,
) -> Result<Response, ApiError> {
    let mut v = Violations::new();
    v.required_text("assistant_name", body.assistant_name.as_deref());
    v.required_text(
        "assistant_description",
        body.assistant_description.as_deref(),
    );
    v.required_text("assistant_prompt", body.assistant_prompt.as_deref());
    let model = match body.assistant_tts_model.as_deref() {
        None => {
            v.add("assistant_tts_model", "is required (cartesia or sarvam)");
            None
        }
        Some(m) => parse_tts_model(m, &mut v),
    };
    let tts = match (&body.assistant_tts_config, model) {
        (None | Some(Value::Null), _) => {
            v.add("assistant_tts_config", "is required");
            None
        }
        (Some(config), Some(model)) => {
            TtsConfig::parse(model, config, "assistant_tts_config", &mut v)
        }
        (Some(_), None) => None,
    };
    let mut settings = CallSettings::default();
    if let Some(stt) = body.assistant_stt_config {
        settings.stt = typed("assistant_stt_config", stt, &mut v).unwrap_or_default();
    }
    if let Some(llm) = body.assistant_llm_config {
        settings.llm = typed("assistant_llm_config", llm, &mut v).unwrap_or_default();
    }
    if let Some(vad) = body.assistant_vad_config {
        settings.vad = typed("assistant_vad_config", vad, &mut v).unwrap_or_default();
    }
    if let Some(interruption) = body.assistant_interruption_config {
        settings.interruption =
            typed("assistant_interruption_config", interruption, &mut v).unwrap_or_default();
    }
    if let Some(turn) = body.assistant_turn_config {
        settings.turn = typed("assistant_turn_config", turn, &mut v).unwrap_or_default();
    }
    if let Some(dtmf) = body.assistant_dtmf_config {
        settings.dtmf = typed("assistant_dtmf_config", dtmf, &mut v).unwrap_or_default();
    }
    if let Some(analysis) = body.assistant_analysis {
        settings.analysis = typed("assistant_analysis", analysis, &mut v).unwrap_or_default();
    }
    settings.function = none_if_blank(body.assistant_function);
    settings.mcp_ids = body.mcp_ids.unwrap_or_default();
    settings.catalog_business_id = none_if_blank(body.assistant_catalog_business_id);
    settings.voicemail_message = none_if_blank(body.assistant_voicemail_message);
    settings.tts_fallback = match &body.assistant_tts_fallback {
        None | Some(Value::Null) => None,
        Some(value) => TtsFallback::parse(value, "assistant_tts_fallback", &mut v),
    };
    settings.first_message_mode = body.assistant_first_message_mode.unwrap_or_default();
    settings.recording = body.assistant_recording.unwrap_or_default();
    settings.silence_timeout_secs = body
        .assistant_silence_timeout_secs
        .unwrap_or(SILENCE_TIMEOUT_SECS.2);
    settings.max_call_duration_secs = body
        .assistant_max_call_duration_secs
        .unwrap_or(MAX_CALL_DURATION_SECS.2);

    let now = now_timestamp();
    let assistant = Assistant {
        id: uuid::Uuid::new_v4().to_string(),
        owner_id: owner.id.clone(),
        name: body.assistant_name.unwrap_or_default(),
        description: body.assistant_description.unwrap_or_default(),
        prompt: body.assistant_prompt.unwrap_or_default(),
        // Without a valid voice a violation is already recorded; the placeholder only lets the
        // remaining rules be checked so that one answer lists every problem.
        tts: tts.unwrap_or_else(|| TtsConfig::Cartesia(Default::default())),
        start_instruction: none_if_blank(body.assistant_start_instruction),
        end_call_url: none_if_blank(body.assistant_end_call_url),
        settings,
        tool_ids: body.tool_ids.unwrap_or_default(),
        created_at: now.clone(),
        updated_at: now,
    };
    check_assistant(&assistant, &state.config, &mut v);
    v.into_result().map_err(ApiError::Invalid)?;
    check_tools_exist(
        &state,
        &owner.id,
        &assistant.tool_ids,
        &assistant.settings.mcp_ids,
    )
    .await?;
    state.store.insert_assistant(&assistant).await?;
    Ok(ok(
        "Assistant created successfully",
        AssistantCreated {
            assistant_id: assistant.id,
            assistant_name: assistant.name,
        },
    ))
}

#[utoipa::path(
    get, path = "/assistant/list", operation_id = "assistant_list", tag = "assistants",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "List retrieved successfully", body = Envelope<Vec<AssistantListItem>>),
        (status = 401, description = "Invalid or missing Bearer token", body = Envelope<Value>),
        (status = 500, description = "Internal server error", body = Envelope<Value>),
    )
)]
pub async fn list(
    State(state): State<AppState>,
    Caller(owner): Caller,
) -> Result<Response, ApiError> {
    let items: Vec<AssistantListItem> = state
        .store
        .list_assistants(&owner.id)
        .await?
        .into_iter()
        .map(|a| AssistantListItem {
            assistant_id: a.id,
            assistant_name: a.name,
            assistant_tts_model: a.tts_model,
            assistant_created_by_email: a.created_by_email,
            assistant_created_at: a.created_at,
        })
        .collect();
    Ok(ok("Assistants retrieved successfully", items))
}

#[utoipa::path(
    get, path = "/assistant/details/{assistant_id}", operation_id = "assistant_details", tag = "assistants",
    params(("assistant_id" = String, Path, description = "The UUID of the assistant")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Assistant details retrieved", body = Envelope<AssistantDetails>),
        (status = 401, description = "Invalid or missing Bearer token", body = Envelope<Value>),
        (status = 404, description = "Assistant does not exist or is inactive", body = Envelope<Value>),
        (status = 500, description = "Internal server error", body = Envelope<Value>),
    )
)]
pub async fn details(
    State(state): State<AppState>,
    Caller(owner): Caller,
    ApiPath(id): ApiPath,
) -> Result<Response, ApiError> {
    let assistant = state
        .store
        .get_assistant(&owner.id, &id)
        .await?
        .ok_or_else(not_found)?;
    Ok(ok(
        "Assistant details retrieved successfully",
        AssistantDetails::of(assistant),
    ))
}

#[utoipa::path(
    patch, path = "/assistant/update/{assistant_id}", operation_id = "assistant_update", tag = "assistants",
    params(("assistant_id" = String, Path, description = "The UUID of the assistant to update")),
    request_body = UpdateAssistant,
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Assistant updated successfully", body = Envelope<AssistantId>),
        (status = 400, description = "Invalid input data", body = Envelope<Value>),
        (status = 401, description = "Invalid or missing Bearer token", body = Envelope<Value>),
        (status = 404, description = "Assistant does not exist", body = Envelope<Value>),
        (status = 500, description = "Internal server error", body = Envelope<Value>),
    )
)]
pub async fn update(
    State(state): State<AppState>,
    Caller(owner): Caller,
    ApiPath(id): ApiPath,
    ApiJson(body): ApiJson<UpdateAssistant>,
) -> Result<Response, ApiError> {
    let (state, owner, id, body) = (&state, &owner, &id, &body);
    let updated = update_until_stored("assistant", || async move {
        let stored = state
            .store
            .get_assistant(&owner.id, id)
            .await?
            .ok_or_else(not_found)?;
        let updated = apply_update(&stored, body, &state.config)?;
        if updated.tool_ids != stored.tool_ids
            || updated.settings.mcp_ids != stored.settings.mcp_ids
        {
            check_tools_exist(
                state,
                &owner.id,
                &updated.tool_ids,
                &updated.settings.mcp_ids,
            )
            .await?;
        }
        let stored_now = state
            .store
            .update_assistant(&updated, &stored.updated_at)
            .await?;
        Ok(stored_now.then_some(updated))
    })
    .await?;
    Ok(ok(
        "Assistant updated successfully",
        AssistantId {
            assistant_id: updated.id,
        },
    ))
}

/// The stored assistant with the PATCH applied and validated.
fn apply_update(
    stored: &Assistant,
    body: &UpdateAssistant,
    config: &Config,
) -> Result<Assistant, ApiError> {
    let mut v = Violations::new();
    let mut a = stored.clone();
    for (field, value, target) in [
        ("assistant_name", &body.assistant_name, &mut a.name),
        (
            "assistant_description",
            &body.assistant_description,
            &mut a.description,
        ),
        ("assistant_prompt", &body.assistant_prompt, &mut a.prompt),
    ] {
        if let Some(text) = not_null(field, value.clone(), &mut v) {
            v.required_text(field, Some(&text));
            *target = text;
        }
    }
    if let Some(text) = &body.assistant_start_instruction {
        a.start_instruction = none_if_blank(text.clone());
    }
    if let Some(url) = &body.assistant_end_call_url {
        a.end_call_url = none_if_blank(url.clone());
    }

    // The voice: a model and a config only make sense together, so whichever half is missing
    // from the request is taken from the stored assistant and checked against the new half.
    let new_model = not_null(
        "assistant_tts_model",
        body.assistant_tts_model.clone(),
        &mut v,
    )
    .and_then(|m| parse_tts_model(&m, &mut v));
    let new_config = not_null(
        "assistant_tts_config",
        body.assistant_tts_config.clone(),
        &mut v,
    );
    let model = new_model.unwrap_or(stored.tts.model());
    let model_changed = model != stored.tts.model();
    match new_config {
        Some(patch) if !model_changed => {
            let mut merged = serde_json::to_value(&stored.tts).expect("plain structs serialise");
            merge_patch(&mut merged, &patch);
            if let Some(mut tts) = TtsConfig::parse(model, &merged, "assistant_tts_config", &mut v) {
                tts.keep_masked_key_from(&stored.tts);
                a.tts = tts;
            }
        }
        Some(config) => {
            if let Some(tts) = TtsConfig::parse(model, &config, "assistant_tts_config", &mut v) {
                a.tts = tts;
            }
        }
        None if model_changed => v.add(
            "assistant_tts_config",
            format!(
                "must be given when assistant_tts_model changes: the stored configuration is for {}",
                stored.tts.model().as_str()
            ),
        ),
        None => {}
    }

    if let Some(patch) = &body.assistant_stt_config
        && let Some(stt) = merged(
            "assistant_stt_config",
            &stored.settings.stt,
            patch.as_ref(),
            &mut v,
        )
    {
        a.settings.stt = stt;
    }
    if let Some(patch) = &body.assistant_llm_config
        && let Some(mut llm) = merged(
            "assistant_llm_config",
            &stored.settings.llm,
            patch.as_ref(),
            &mut v,
        )
    {
        llm.keep_masked_key_from(&stored.settings.llm);
        a.settings.llm = llm;
    }
    if let Some(patch) = &body.assistant_vad_config
        && let Some(vad) = merged(
            "assistant_vad_config",
            &stored.settings.vad,
            patch.as_ref(),
            &mut v,
        )
    {
        a.settings.vad = vad;
    }
    if let Some(patch) = &body.assistant_interruption_config
        && let Some(interruption) = merged(
            "assistant_interruption_config",
            &stored.settings.interruption,
            patch.as_ref(),
            &mut v,
        )
    {
        a.settings.interruption = interruption;
    }
    if let Some(patch) = &body.assistant_turn_config
        && let Some(turn) = merged(
            "assistant_turn_config",
            &stored.settings.turn,
            patch.as_ref(),
            &mut v,
        )
    {
        a.settings.turn = turn;
    }
    if let Some(patch) = &body.assistant_dtmf_config
        && let Some(dtmf) = merged(
            "assistant_dtmf_config",
            &stored.settings.dtmf,
            patch.as_ref(),
            &mut v,
        )
    {
        a.settings.dtmf = dtmf;
    }
    if let Some(patch) = &body.assistant_analysis {
        let mut doc =
            serde_json::to_value(&stored.settings.analysis).expect("plain structs serialise");
        match patch {
            Some(patch) => {
                merge_patch(&mut doc, patch);
                if let Some(schema) = patch.get("structured_data_schema") {
                    doc["structured_data_schema"] = schema.clone();
                }
            }
            None => doc = Value::Object(Default::default()),
        }
        if let Some(analysis) = typed("assistant_analysis", doc, &mut v) {
            a.settings.analysis = analysis;
        }
    }
    if let Some(function) = &body.assistant_function {
        a.settings.function = none_if_blank(function.clone());
    }
    if let Some(mode) = body.assistant_first_message_mode {
        a.settings.first_message_mode = mode.unwrap_or_default();
    }
    if let Some(recording) = body.assistant_recording {
        a.settings.recording = recording.unwrap_or_default();
    }
    if let Some(secs) = body.assistant_silence_timeout_secs {
        a.settings.silence_timeout_secs = secs.unwrap_or(SILENCE_TIMEOUT_SECS.2);
    }
    if let Some(secs) = body.assistant_max_call_duration_secs {
        a.settings.max_call_duration_secs = secs.unwrap_or(MAX_CALL_DURATION_SECS.2);
    }
    if let Some(ids) = &body.mcp_ids {
        a.settings.mcp_ids = ids.clone().unwrap_or_default();
    }
    if let Some(id) = &body.assistant_catalog_business_id {
        a.settings.catalog_business_id = none_if_blank(id.clone());
    }
    if let Some(text) = &body.assistant_voicemail_message {
        a.settings.voicemail_message = none_if_blank(text.clone());
    }
    match &body.assistant_tts_fallback {
        None => {}
        Some(None) => a.settings.tts_fallback = None,
        Some(Some(value)) => {
            if let Some(mut fallback) = TtsFallback::parse(value, "assistant_tts_fallback", &mut v)
            {
                if let Some(stored) = &stored.settings.tts_fallback {
                    fallback.keep_masked_key_from(stored);
                }
                a.settings.tts_fallback = Some(fallback);
            }
        }
    }
    if let Some(ids) = &body.tool_ids {
        a.tool_ids = ids.clone().unwrap_or_default();
    }
    a.updated_at = now_timestamp();
    check_assistant(&a, config, &mut v);
    v.into_result().map_err(ApiError::Invalid)?;
    Ok(a)
}

#[utoipa::path(
    delete, path = "/assistant/delete/{assistant_id}", operation_id = "assistant_delete", tag = "assistants",
    params(("assistant_id" = String, Path, description = "The UUID of the assistant to delete")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "Assistant deleted successfully", body = Envelope<AssistantId>),
        (status = 401, description = "Invalid or missing Bearer token", body = Envelope<Value>),
        (status = 404, description = "Assistant does not exist or is already inactive", body = Envelope<Value>),
        (status = 500, description = "Internal server error", body = Envelope<Value>),
    )
)]
pub async fn delete(
    State(state): State<AppState>,
    Caller(owner): Caller,
    ApiPath(id): ApiPath,
) -> Result<Response, ApiError> {
    if !state
        .store
        .delete_assistant(&owner.id, &id, &now_timestamp())
        .await?
    {
        return Err(not_found());
    }
    Ok(ok(
        "Assistant deleted successfully",
        AssistantId { assistant_id: id },
    ))
}
