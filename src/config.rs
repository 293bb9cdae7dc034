//! Layered configuration: built-in defaults < optional `voxbridge.toml` < `VOXBRIDGE_*` environment.
//!
//! Every key is documented in the README's configuration table; keep the two in step. Nested keys
//! use `__` in environment variables (`VOXBRIDGE_DEEPGRAM__API_KEY`), so a flat key such as
//! `database_url` is simply `VOXBRIDGE_DATABASE_URL`.

use std::net::SocketAddr;
use std::path::Path;

use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

/// The whole server configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the HTTP/WebSocket server listens on.
    pub bind: SocketAddr,
    /// The URL at which telephony providers reach this server (behind a TLS proxy:
    /// `https://voice.example.com`). Media-stream URLs (`wss://…`) and webhook URLs are built
    /// from it, and Twilio signatures are checked against it. Empty: `http://<bind>`.
    pub public_url: String,
    /// `sqlite:<path>` (created on first start) or `postgres://user@host/db`.
    pub database_url: String,
    /// Largest pool of database connections.
    pub database_max_connections: u32,
    /// Largest accepted HTTP request body, in bytes.
    pub max_body_bytes: usize,
    /// `text` (human-readable) or `json` (one object per line).
    pub log_format: LogFormat,
    /// A tracing filter, e.g. `info` or `voxbridge=debug,info`.
    pub log_level: String,
    /// Email of the owner of the first API key created on an empty database.
    pub bootstrap_email: String,
    /// Calls one owner may have queued, ringing or in progress at once (more: 429).
    pub max_concurrent_calls_per_owner: u32,
    /// A started media stream that sends nothing for this long is a dead line: the call ends as
    /// the caller's hang-up (telephony providers send a frame every 20 ms, silence included).
    pub media_inactivity_secs: u64,
    /// Caller audio is sent to the STT in messages of this many milliseconds (20 to 250; 20
    /// sends each telephony frame as it comes). Fewer, larger messages cost less CPU here and
    /// at the provider; interim words arrive up to one chunk later. The end of a turn is not
    /// delayed: the chunk is flushed whenever the VAD hears the caller start, pause or stop.
    pub stt_chunk_ms: u32,
    /// How long an end-of-conversation webhook waits for the conversation's analysis before it
    /// goes out without it (`analysis_status: "timeout"`).
    pub analysis_timeout_secs: u64,
    /// A text chat nobody writes to for this long ends (`idle_timeout`), with its webhook.
    pub chat_idle_timeout_secs: u64,
    /// Where call recordings (`assistant_recording`) are written, one WAV per call. Relative
    /// paths are from the working directory.
    pub recordings_dir: String,
    /// Recordings older than this many days are removed (checked hourly); 0 keeps them.
    pub recording_retention_days: u32,
    /// On SIGTERM or Ctrl-C, live calls have this long to finish on their own (new calls are
    /// refused and `/readyz` answers 503 meanwhile); then they end politely (`server_shutdown`).
    pub drain_timeout_secs: u64,
    /// Limits of the HTTP server itself (slow and idle connections, how many at once).
    pub http: HttpLimits,
    /// Which addresses owner-chosen URLs (webhooks, tools, an assistant's LLM) may reach.
    pub egress: crate::egress::AddressPolicy,
    /// Deepgram streaming STT.
    pub deepgram: ProviderConfig,
    /// Sarvam STT and TTS.
    pub sarvam: ProviderConfig,
    /// Cartesia TTS.
    pub cartesia: CartesiaConfig,
    /// The default OpenAI-compatible LLM (assistants may name their own).
    pub llm: LlmConfig,
    /// Twilio's REST API (outbound calls, transfers, hang-ups). The same as
    /// `[telephony.twilio]`, kept for configurations written before it.
    pub twilio: TwilioConfig,
    /// Each telephony provider's REST API, by provider name (`[telephony.plivo] base_url = …`);
    /// a provider not named here uses its production URL.
    pub telephony: std::collections::BTreeMap<String, TelephonyEndpoint>,
    /// End-of-call webhook delivery.
    pub webhook: crate::webhook::WebhookSettings,
    /// How server processes sharing a database watch each other (heartbeats, lost nodes, relayed
    /// controls).
    pub cluster: crate::cluster::ClusterSettings,
    /// The conversations API.
    pub conversations: ConversationsConfig,
    /// The v1 assistant API (`/api/v1/assistant`): who the caller is.
    pub api_v1: ApiV1Config,
    /// The assistant builder (`/assistant_builder/invoke`).
    pub assistant_builder: AssistantBuilderConfig,
    /// The voice of assistants the server creates itself (the builder's voice assistants; the
    /// stored, unused voice of v1 assistants).
    pub default_voice: DefaultVoice,
}

/// `[api_v1]`: how the v1 assistant API knows its caller.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiV1Config {
    /// Accept `x-user-id` without an API key, as the seed describes. Only for a deployment
    /// whose own authenticating gateway sets (and strips from clients) `x-user-id` and
    /// `x-user-role`: the server then believes those headers from anyone who can reach it.
    pub trust_user_header: bool,
    /// With `trust_user_header`, the tenant of requests that bring no key (created on first
    /// use; empty: `bootstrap_email`). Its API keys chat with those users' assistants.
    pub tenant_email: String,
}

impl Config {
    /// The tenant of keyless v1 requests (see [`ApiV1Config::tenant_email`]).
    pub fn api_v1_tenant_email(&self) -> &str {
        if self.api_v1.tenant_email.trim().is_empty() {
            &self.bootstrap_email
        } else {
            &self.api_v1.tenant_email
        }
    }
}

/// `[assistant_builder]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AssistantBuilderConfig {
    /// The longest an invocation waits for the server's LLM (the prompt, and for `create` the
    /// assistant's name and texts) before answering 502.
    pub timeout_secs: u64,
}

impl Default for AssistantBuilderConfig {
    fn default() -> Self {
        Self { timeout_secs: 60 }
    }
}

/// `[default_voice]`: a TTS model and voice.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DefaultVoice {
    /// `cartesia` or `sarvam`.
    pub model: String,
    /// Cartesia: a voice id; Sarvam: a speaker.
    pub voice: String,
    /// The voice's language (empty: the provider's default).
    pub language: String,
}

impl Default for DefaultVoice {
    fn default() -> Self {
        Self {
            model: "cartesia".to_owned(),
            voice: crate::widget::demo::DEMO_VOICE_ID.to_owned(),
            language: String::new(),
        }
    }
}

impl DefaultVoice {
    /// The voice as an assistant's TTS configuration, or why the configuration cannot be one.
    pub fn tts(&self) -> Result<crate::assistant::TtsConfig, String> {
        use crate::assistant::{TtsConfig, TtsModel};
        let model = TtsModel::parse(&self.model).ok_or_else(|| {
            format!(
                "default_voice.model {:?} is not cartesia or sarvam",
                self.model
            )
        })?;
        let mut config = serde_json::Map::new();
        let voice_field = match model {
            TtsModel::Cartesia => "voice_id",
            TtsModel::Sarvam => "speaker",
        };
        config.insert(voice_field.to_owned(), self.voice.clone().into());
        if !self.language.is_empty() {
            let language_field = match model {
                TtsModel::Cartesia => "language",
                TtsModel::Sarvam => "target_language_code",
            };
            config.insert(language_field.to_owned(), self.language.clone().into());
        }
        let mut v = crate::validation::Violations::new();
        let tts = TtsConfig::parse(model, &config.into(), "default_voice", &mut v);
        match (tts, v.into_result()) {
            (Some(tts), Ok(())) => Ok(tts),
            (_, Err(errors)) => Err(errors
                .iter()
                .map(|e| format!("{} {}", e.field, e.message))
                .collect::<Vec<_>>()
                .join("; ")),
            (None, Ok(())) => Err("default_voice is not a voice".to_owned()),
        }
    }
}

/// `[conversations]`: where completed cases go.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConversationsConfig {
    /// Receives each conversation's case once, when it becomes complete (signed and retried
    /// like every webhook; empty: not sent).
    pub case_webhook_url: String,
}

/// Where a provider is and the server's key for it. Base URLs are configurable so that tests,
/// benchmarks and demos point at the sim fakes; WebSocket URLs are derived from them.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProviderConfig {
    pub base_url: String,
    /// The server's key; empty means "not configured".
    #[serde(default)]
    pub api_key: String,
    /// Default model.
    #[serde(default)]
    pub model: String,
}

/// The server's LLM, and which other endpoints may receive its key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmConfig {
    pub base_url: String,
    #[serde(default)]
    pub api_key: String,
    #[serde(default)]
    pub model: String,
    /// Base URLs an assistant may name without bringing its own key: the operator vouches for
    /// them, so the server's key goes there and the egress policy does not apply (a local
    /// model server on a private address, say). `base_url` itself is always trusted.
    #[serde(default)]
    pub allowed_base_urls: Vec<String>,
    /// Named OpenAI-compatible providers (a v1 assistant's `provider`), beside the built-in
    /// ones; see [`crate::llm::providers`].
    #[serde(default)]
    pub providers: std::collections::BTreeMap<String, crate::llm::providers::NamedProvider>,
}

impl LlmConfig {
    /// Whether `base_url` is one the operator chose (the server's own or an allowed one), as
    /// opposed to one an API user chose.
    pub fn is_trusted_base_url(&self, base_url: &str) -> bool {
        let same =
            |a: &str, b: &str| a.trim().trim_end_matches('/') == b.trim().trim_end_matches('/');
        same(base_url, &self.base_url) || self.allowed_base_urls.iter().any(|u| same(base_url, u))
    }
}

/// Limits that keep slow or idle clients from holding the server's connections.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpLimits {
    /// A new connection must deliver its first request's headers within this time, else it is
    /// closed (slowloris).
    pub header_timeout_secs: u64,
    /// A keep-alive connection waiting for its next request (or a later request's headers) is
    /// closed after this long. Keep a reverse proxy's upstream keep-alive below it.
    pub idle_timeout_secs: u64,
    /// Connections served at once, upgraded sockets (media streams) included; further clients
    /// wait in the listen backlog until one closes.
    pub max_connections: usize,
    /// Threads that serve connections, each a single-threaded runtime: a connection, and every
    /// task of a call on it, stays on one (`core_threads.rs`). `0`: one per core.
    pub connection_threads: usize,
}

impl Default for HttpLimits {
    fn default() -> Self {
        Self {
            header_timeout_secs: 10,
            idle_timeout_secs: 75,
            max_connections: 10_000,
            connection_threads: 0,
        }
    }
}

/// Cartesia: a provider plus its API version header.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CartesiaConfig {
    pub base_url: String,
    #[serde(default)]
    pub api_key: String,
    #[serde(default)]
    pub model: String,
    /// The `Cartesia-Version` sent on every request.
    pub version: String,
}

/// Twilio's REST API.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TwilioConfig {
    pub base_url: String,
}

/// Where a telephony provider's REST API is.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TelephonyEndpoint {
    pub base_url: String,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bind: SocketAddr::from(([127, 0, 0, 1], 8080)),
            public_url: String::new(),
            database_url: "sqlite:voxbridge.db".to_owned(),
            database_max_connections: 16,
            max_body_bytes: 1024 * 1024,
            log_format: LogFormat::Text,
            log_level: "info".to_owned(),
            bootstrap_email: "admin@localhost".to_owned(),
            max_concurrent_calls_per_owner: 100,
            media_inactivity_secs: 20,
            stt_chunk_ms: 80,
            analysis_timeout_secs: 30,
            chat_idle_timeout_secs: 3600,
            recordings_dir: "recordings".to_owned(),
            recording_retention_days: 30,
            drain_timeout_secs: 30,
            http: HttpLimits::default(),
            egress: crate::egress::AddressPolicy::default(),
            deepgram: ProviderConfig {
                base_url: "https://api.deepgram.com".to_owned(),
                api_key: String::new(),
                model: "nova-3".to_owned(),
            },
            sarvam: ProviderConfig {
                base_url: "https://api.sarvam.ai".to_owned(),
                api_key: String::new(),
                model: "bulbul:v2".to_owned(),
            },
            cartesia: CartesiaConfig {
                base_url: "https://api.cartesia.ai".to_owned(),
                api_key: String::new(),
                model: "sonic-3".to_owned(),
                version: "2026-03-01".to_owned(),
            },
            llm: LlmConfig {
                base_url: "https://api.openai.com/v1".to_owned(),
                api_key: String::new(),
                model: "gpt-4o-mini".to_owned(),
                allowed_base_urls: Vec::new(),
                providers: Default::default(),
            },
            twilio: TwilioConfig {
                base_url: "https://api.twilio.com".to_owned(),
            },
            telephony: Default::default(),
            webhook: crate::webhook::WebhookSettings::default(),
            cluster: crate::cluster::ClusterSettings::default(),
            conversations: ConversationsConfig::default(),
            api_v1: ApiV1Config::default(),
            assistant_builder: AssistantBuilderConfig::default(),
            default_voice: DefaultVoice::default(),
        }
    }
}

/// Configuration could not be assembled from its layers.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration: {0}")]
pub struct ConfigError(#[from] Box<figment::Error>);

impl Config {
    /// The public base URL without a trailing slash (`http://<bind>` when not configured).
    pub fn public_base_url(&self) -> String {
        if self.public_url.is_empty() {
            format!("http://{}", self.bind)
        } else {
            self.public_url.trim_end_matches('/').to_owned()
        }
    }

    /// The REST base URL configured for a telephony provider, if any (`None`: its production
    /// URL). Twilio's may still be set in `[twilio]`.
    pub fn telephony_base_url(&self, provider: &str) -> Option<String> {
        match self.telephony.get(provider) {
            Some(endpoint) => Some(endpoint.base_url.clone()),
            None if provider == "twilio" => Some(self.twilio.base_url.clone()),
            None => None,
        }
    }

    /// [`public_base_url`](Self::public_base_url) with a WebSocket scheme (`https` → `wss`,
    /// `http` → `ws`): where media sockets are opened.
    pub fn public_ws_base_url(&self) -> String {
        let base = self.public_base_url();
        if let Some(rest) = base.strip_prefix("https://") {
            format!("wss://{rest}")
        } else if let Some(rest) = base.strip_prefix("http://") {
            format!("ws://{rest}")
        } else {
            base
        }
    }

    /// The policy for owner-chosen URLs: `[egress]`, widened by the older `webhook.allow_*`
    /// switches, which meant the same before tools and LLM endpoints were checked too.
    pub fn egress_policy(&self) -> crate::egress::AddressPolicy {
        crate::egress::AddressPolicy {
            allow_loopback: self.egress.allow_loopback || self.webhook.allow_loopback,
            allow_private: self.egress.allow_private || self.webhook.allow_private,
        }
    }

    /// Loads defaults, then `file` if it exists, then the environment.
    pub fn load(file: &Path) -> Result<Self, ConfigError> {
        refuse_unreadable_escapes()?;
        Self::figment(file)
            .extract()
            .map_err(|e| ConfigError(Box::new(e)))
    }

    fn figment(file: &Path) -> Figment {
        Figment::from(Serialized::defaults(Config::default()))
            .merge(Toml::file(file))
            // `VOXBRIDGE_CONFIG` names the file itself (a CLI option), not a key in it.
            .merge(Env::prefixed("VOXBRIDGE_").ignore(&["CONFIG"]).split("__"))
    }
}

/// figment 0.10 unescapes a quoted environment value by slicing it at a *character* count as if
/// it were a *byte* offset, so a non-ASCII character before a backslash escape makes it panic
/// (found by fuzzing `config_load`; fuzz/README.md). Such a value is refused here, before figment
/// reads it, with an error that names the variable.
fn refuse_unreadable_escapes() -> Result<(), ConfigError> {
    for (key, value) in std::env::vars_os() {
        let (Some(key), Some(value)) = (key.to_str(), value.to_str()) else {
            continue;
        };
        if !key.starts_with("VOXBRIDGE_") || !value.contains('"') {
            continue;
        }
        if let Some(last_escape) = value.rfind('\\')
            && !value[..last_escape].is_ascii()
        {
            return Err(ConfigError(Box::new(figment::Error::from(format!(
                "{key}: a quoted value with a non-ASCII character before a backslash escape \
                 cannot be read; write it without quotes or escapes, or put it in the config file"
            )))));
        }
    }
    Ok(())
}

#[cfg(test)]
// figment's Jail returns its own large error type; boxing it in tests would only add noise.
#[allow(clippy::result_large_err)]
mod tests {
    use super::*;

    #[test]
    fn layers_override_in_order() {
        figment::Jail::expect_with(|jail| {
            jail.create_file(
                "voxbridge.toml",
                "bind = \"127.0.0.1:9000\"\nlog_level = \"debug\"",
            )?;
            jail.set_env("VOXBRIDGE_LOG_LEVEL", "warn");
            let config = Config::load(Path::new("voxbridge.toml")).expect("config loads");
            assert_eq!(config.bind.port(), 9000, "file overrides default");
            assert_eq!(config.log_level, "warn", "environment overrides file");
            assert_eq!(config.database_url, "sqlite:voxbridge.db", "default kept");
            Ok(())
        });
    }

    #[test]
    fn nested_keys_come_from_double_underscore_variables() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("VOXBRIDGE_DEEPGRAM__API_KEY", "dg-key");
            jail.set_env("VOXBRIDGE_DEEPGRAM__BASE_URL", "http://127.0.0.1:9100");
            let config = Config::load(Path::new("absent.toml")).expect("config loads");
            assert_eq!(config.deepgram.api_key, "dg-key");
            assert_eq!(config.deepgram.base_url, "http://127.0.0.1:9100");
            assert_eq!(
                config.deepgram.model, "nova-3",
                "unset nested keys keep defaults"
            );
            Ok(())
        });
    }

    #[test]
    fn a_quoted_value_figment_cannot_unescape_is_an_error_not_a_panic() {
        figment::Jail::expect_with(|jail| {
            jail.set_env("VOXBRIDGE_LOG_LEVEL", "\"é\\n\"");
            let err = Config::load(Path::new("absent.toml")).expect_err("refused");
            assert!(err.to_string().contains("VOXBRIDGE_LOG_LEVEL"), "{err}");
            // Plain non-ASCII text, and escapes in ASCII text, still load.
            jail.set_env("VOXBRIDGE_LOG_LEVEL", "\"warn\\t\"");
            jail.set_env("VOXBRIDGE_BOOTSTRAP_EMAIL", "é@example.com");
            Config::load(Path::new("absent.toml")).expect("loads");
            Ok(())
        });
    }

    #[test]
    fn missing_file_means_defaults() {
        figment::Jail::expect_with(|_| {
            let config = Config::load(Path::new("absent.toml")).expect("config loads");
            assert_eq!(config.bind.port(), 8080);
            Ok(())
        });
    }

    #[test]
    fn unknown_key_is_an_error() {
        figment::Jail::expect_with(|jail| {
            jail.create_file("voxbridge.toml", "bnid = \"127.0.0.1:9000\"")?;
            let err = Config::load(Path::new("voxbridge.toml")).unwrap_err();
            assert!(err.to_string().contains("bnid"), "{err}");
            Ok(())
        });
    }
}
