//! What the three v1 bodies — `CreateAdvancedAssistantRequest`, `UpdateAdvancedAssistantRequest`
//! and `UpdateAssistantConfigRequest` — may change, their rules (the seed's lengths and ranges;
//! the config update's own 3-500 system prompt), and how the changes land on an assistant:
//! the provider must be one the server knows, `extensionIds` the tenant's HTTP tools and
//! `mcpIds` its MCP servers; new support units rebuild the teams; a new provider without a model
//! takes that provider's default model rather than keeping a model it may not have.

use super::fields::{FieldName, Fields};
use super::wrapper::V1Error;
use crate::api::AppState;
use crate::assistant::v1::{AssistantType, V1Assistant, V1Profile, WorkflowType, build_teams};
use crate::assistant::{Assistant, CallSettings, FirstMessageMode, LlmSettings};
use crate::config::Config;
use crate::llm::providers::DEFAULT_PROVIDER;
use crate::store::now_timestamp;

const NAME: FieldName = ("name", "name");
const DESCRIPTION: FieldName = ("description", "description");
const SYSTEM_PROMPT: FieldName = ("systemPrompt", "system_prompt");
const PROVIDER: FieldName = ("provider", "provider");
const MODEL_NAME: FieldName = ("modelName", "model_name");
const TEMPERATURE: FieldName = ("temperature", "temperature");
const ASK_HUMAN: FieldName = ("askHuman", "ask_human");
const INTERRUPT: FieldName = ("interrupt", "interrupt");
const SUPPORT_UNITS: FieldName = ("supportUnits", "support_units");
const MCP_IDS: FieldName = ("mcpIds", "mcp_ids");
const EXTENSION_IDS: FieldName = ("extensionIds", "extension_ids");

/// Temperature of an assistant that names none.
const DEFAULT_TEMPERATURE: f32 = 0.7;
/// Longest reply of a v1 assistant's model, in tokens: written answers run longer than a
/// voice assistant's spoken ones.
const MAX_TOKENS: u32 = 1_024;

/// Which body is being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Form {
    Create,
    UpdateAdvanced,
    UpdateConfig,
}

impl Form {
    fn fields(self) -> &'static [FieldName] {
        const ALL: [FieldName; 11] = [
            NAME,
            DESCRIPTION,
            SYSTEM_PROMPT,
            PROVIDER,
            MODEL_NAME,
            TEMPERATURE,
            ASK_HUMAN,
            INTERRUPT,
            SUPPORT_UNITS,
            MCP_IDS,
            EXTENSION_IDS,
        ];
        const CONFIG: [FieldName; 6] = [
            SYSTEM_PROMPT,
            PROVIDER,
            MODEL_NAME,
            TEMPERATURE,
            ASK_HUMAN,
            INTERRUPT,
        ];
        match self {
            Form::Create | Form::UpdateAdvanced => &ALL,
            Form::UpdateConfig => &CONFIG,
        }
    }
}

/// The fields a body set; `None` leaves the stored value.
#[derive(Debug, Default)]
pub struct Changes {
    name: Option<String>,
    description: Option<String>,
    system_prompt: Option<String>,
    provider: Option<String>,
    model_name: Option<String>,
    temperature: Option<f32>,
    ask_human: Option<bool>,
    interrupt: Option<bool>,
    support_units: Option<Vec<WorkflowType>>,
    mcp_ids: Option<Vec<String>>,
    extension_ids: Option<Vec<String>>,
}

/// Reads and checks a body of `form` for the tenant `tenant_id`.
pub async fn read(
    state: &AppState,
    tenant_id: &str,
    form: Form,
    body: &[u8],
) -> Result<Changes, V1Error> {
    let mut f = Fields::parse(body, form.fields())?;
    let required = form == Form::Create;
    let text = |f: &mut Fields, field, min, max| {
        if required {
            f.required_text(field, min, max)
        } else {
            f.text(field, min, max)
        }
    };
    let mut changes = Changes::default();
    if form != Form::UpdateConfig {
        changes.name = text(&mut f, NAME, 3, 100);
        changes.description = text(&mut f, DESCRIPTION, 3, 5000);
    }
    let prompt_max = if form == Form::UpdateConfig {
        500
    } else {
        5000
    };
    changes.system_prompt = text(&mut f, SYSTEM_PROMPT, 3, prompt_max);
    changes.provider = f
        .text(PROVIDER, 3, 50)
        .map(|p| p.trim().to_ascii_lowercase());
    changes.model_name = f.text(MODEL_NAME, 1, 50);
    changes.temperature = f.number(TEMPERATURE, 0.0, 2.0).map(|t| t as f32);
    changes.ask_human = f.boolean(ASK_HUMAN);
    changes.interrupt = f.boolean(INTERRUPT);
    if form != Form::UpdateConfig {
        changes.support_units = f.workflow_types(SUPPORT_UNITS);
        changes.mcp_ids = f.ids(MCP_IDS);
        changes.extension_ids = f.ids(EXTENSION_IDS);
    }
    if let Some(provider) = &changes.provider
        && state.config.llm.named_provider(provider).is_none()
    {
        let known = state.config.llm.provider_names().join(", ");
        f.reject(
            PROVIDER,
            format!("Unknown provider '{provider}'; this server knows: {known}"),
        );
    }
    let store = &state.store;
    if let Some(ids) = &changes.mcp_ids {
        let missing = store.missing_mcp_servers(tenant_id, ids).await?;
        if !missing.is_empty() {
            f.reject(MCP_IDS, format!("Unknown MCP ids: {}", quoted(&missing)));
        }
    }
    if let Some(ids) = &changes.extension_ids {
        let missing = store.missing_tools(tenant_id, ids).await?;
        if !missing.is_empty() {
            f.reject(
                EXTENSION_IDS,
                format!("Unknown extension ids: {}", quoted(&missing)),
            );
        }
    }
    f.finish()?;
    Ok(changes)
}

fn quoted(ids: &[String]) -> String {
    ids.iter()
        .map(|id| format!("'{id}'"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A new assistant of `kind` for `user_id` in the tenant, with the defaults of its kind: the
/// seed's general assistant, or an empty advanced one for a create's changes to fill.
pub fn fresh(
    config: &Config,
    tenant_id: &str,
    user_id: &str,
    kind: AssistantType,
) -> Result<V1Assistant, V1Error> {
    let tts = config
        .default_voice
        .tts()
        .map_err(|why| V1Error::internal(format!("default_voice: {why}")))?;
    let model = config
        .llm
        .named_provider(DEFAULT_PROVIDER)
        .map(|p| p.model)
        .unwrap_or_default();
    let general = kind == AssistantType::GeneralAssistant;
    let text = |general_text: &str| {
        if general {
            general_text.to_owned()
        } else {
            String::new()
        }
    };
    let now = now_timestamp();
    let main_unit = kind.main_unit();
    let support_units = if general {
        vec![WorkflowType::Ragbot, WorkflowType::Searchbot]
    } else {
        Vec::new()
    };
    Ok(V1Assistant {
        core: Assistant {
            id: uuid::Uuid::new_v4().to_string(),
            owner_id: tenant_id.to_owned(),
            name: text("General Assistant"),
            description: text("A helpful general assistant for everyday tasks and conversations."),
            prompt: text("You are a helpful, friendly, and knowledgeable general assistant."),
            tts,
            start_instruction: None,
            end_call_url: None,
            settings: CallSettings {
                llm: LlmSettings {
                    model: Some(model),
                    temperature: DEFAULT_TEMPERATURE,
                    max_tokens: MAX_TOKENS,
                    ..LlmSettings::default()
                },
                // A written chat starts with the user's message.
                first_message_mode: FirstMessageMode::WaitForCaller,
                llm_provider: Some(DEFAULT_PROVIDER.to_owned()),
                ..CallSettings::default()
            },
            tool_ids: Vec::new(),
            created_at: now.clone(),
            updated_at: now,
        },
        profile: V1Profile {
            user_id: user_id.to_owned(),
            assistant_type: kind,
            provider: DEFAULT_PROVIDER.to_owned(),
            ask_human: false,
            interrupt: false,
            main_unit,
            teams: build_teams(main_unit, &support_units, &[]),
            support_units,
        },
    })
}

/// Lands `changes` on `a` (a fresh one, or a copy of the stored one).
pub fn apply(config: &Config, changes: &Changes, a: &mut V1Assistant) {
    let (core, profile) = (&mut a.core, &mut a.profile);
    let set = |target: &mut String, value: &Option<String>| {
        if let Some(value) = value {
            target.clone_from(value);
        }
    };
    set(&mut core.name, &changes.name);
    set(&mut core.description, &changes.description);
    set(&mut core.prompt, &changes.system_prompt);
    let llm = &mut core.settings.llm;
    if let Some(provider) = &changes.provider
        && *provider != profile.provider
    {
        profile.provider.clone_from(provider);
        core.settings.llm_provider = Some(provider.clone());
        llm.model = config.llm.named_provider(provider).map(|p| p.model);
    }
    if let Some(model) = &changes.model_name {
        llm.model = Some(model.clone());
    }
    if let Some(temperature) = changes.temperature {
        llm.temperature = temperature;
    }
    if let Some(ask_human) = changes.ask_human {
        profile.ask_human = ask_human;
    }
    if let Some(interrupt) = changes.interrupt {
        profile.interrupt = interrupt;
    }
    if let Some(units) = &changes.support_units {
        profile.teams = build_teams(profile.main_unit, units, &profile.teams);
        profile.support_units.clone_from(units);
    }
    if let Some(ids) = &changes.mcp_ids {
        core.settings.mcp_ids.clone_from(ids);
    }
    if let Some(ids) = &changes.extension_ids {
        core.tool_ids.clone_from(ids);
    }
}

/// A new advanced assistant with these texts and every other field at its default (the
/// assistant builder's `"create": "v1"`); `None` when a text breaks the create rules.
pub fn advanced_from_texts(
    config: &Config,
    tenant_id: &str,
    user_id: &str,
    name: &str,
    description: &str,
    system_prompt: &str,
) -> Result<Option<V1Assistant>, V1Error> {
    let within = |text: &str, max: usize| (3..=max).contains(&text.chars().count());
    if !(within(name, 100) && within(description, 5000) && within(system_prompt, 5000)) {
        return Ok(None);
    }
    let mut assistant = fresh(config, tenant_id, user_id, AssistantType::AdvancedAssistant)?;
    assistant.core.name = name.to_owned();
    assistant.core.description = description.to_owned();
    assistant.core.prompt = system_prompt.to_owned();
    Ok(Some(assistant))
}
