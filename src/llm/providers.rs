//! Named LLM providers: what a v1 assistant's `provider` ("openai", "anthropic"...) means. Every
//! provider is an OpenAI-compatible Chat Completions endpoint chosen by the operator, never by an
//! API user: a few are built in (their public base URLs and a default model), `[llm.providers.*]`
//! adds or overrides them, and `openai` is the server's own `[llm]` endpoint unless overridden.
//! A name the server does not know is refused when an assistant is saved.
//!
//! Keys follow the rule of [`super::LlmEndpoint::resolve`]: a provider's own `api_key` goes to
//! its own base URL; the server's `llm.api_key` goes only to a base URL the operator trusts
//! (`llm.base_url` or `llm.allowed_base_urls`). A built-in provider without a configured key is
//! asked with none, and its refusal is what the chat reports.

use serde::{Deserialize, Serialize};

use super::LlmEndpoint;
use crate::config::LlmConfig;

/// `[llm.providers.<name>]`: an OpenAI-compatible endpoint the operator names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NamedProvider {
    /// Up to and including `/v1` (or the provider's equivalent).
    pub base_url: String,
    /// The operator's key for this provider; empty: none (or the server's, for a trusted URL).
    #[serde(default)]
    pub api_key: String,
    /// The model used when an assistant names none.
    #[serde(default)]
    pub model: String,
}

/// The provider a v1 assistant gets when it names none.
pub const DEFAULT_PROVIDER: &str = "openai";

/// Built-in providers: name, OpenAI-compatible base URL, default model. `openai` is absent on
/// purpose: it is the server's own `[llm]`.
const BUILT_IN: [(&str, &str, &str); 7] = [
    (
        "anthropic",
        "https://api.anthropic.com/v1",
        "claude-sonnet-4-5",
    ),
    (
        "gemini",
        "https://generativelanguage.googleapis.com/v1beta/openai",
        "gemini-2.0-flash",
    ),
    (
        "groq",
        "https://api.groq.com/openai/v1",
        "llama-3.3-70b-versatile",
    ),
    (
        "mistral",
        "https://api.mistral.ai/v1",
        "mistral-small-latest",
    ),
    ("deepseek", "https://api.deepseek.com/v1", "deepseek-chat"),
    (
        "together",
        "https://api.together.xyz/v1",
        "meta-llama/Llama-3.3-70B-Instruct-Turbo",
    ),
    (
        "openrouter",
        "https://openrouter.ai/api/v1",
        "openai/gpt-4o-mini",
    ),
];

impl LlmConfig {
    /// The endpoint of the provider called `name` (case-insensitive), or `None` if the server
    /// knows no such provider.
    pub fn named_provider(&self, name: &str) -> Option<NamedProvider> {
        let name = name.trim().to_ascii_lowercase();
        if let Some(configured) = self.providers.get(&name) {
            return Some(configured.clone());
        }
        if name == DEFAULT_PROVIDER {
            return Some(NamedProvider {
                base_url: self.base_url.clone(),
                api_key: self.api_key.clone(),
                model: self.model.clone(),
            });
        }
        BUILT_IN
            .iter()
            .find(|(known, _, _)| *known == name)
            .map(|(_, base_url, model)| NamedProvider {
                base_url: (*base_url).to_owned(),
                api_key: String::new(),
                model: (*model).to_owned(),
            })
    }

    /// Every provider name the server knows, sorted.
    pub fn provider_names(&self) -> Vec<String> {
        let mut names: Vec<String> = BUILT_IN
            .iter()
            .map(|(name, _, _)| (*name).to_owned())
            .chain([DEFAULT_PROVIDER.to_owned()])
            .chain(self.providers.keys().cloned())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    /// Where a request for `model` (empty: the provider's default) goes with provider `name`.
    pub fn provider_endpoint(&self, name: &str, model: Option<&str>) -> Option<LlmEndpoint> {
        let provider = self.named_provider(name)?;
        let api_key = if !provider.api_key.is_empty() {
            provider.api_key.clone()
        } else if self.is_trusted_base_url(&provider.base_url) {
            self.api_key.clone()
        } else {
            String::new()
        };
        Some(LlmEndpoint {
            model: model
                .filter(|m| !m.trim().is_empty())
                .map(str::to_owned)
                .unwrap_or(provider.model),
            base_url: provider.base_url,
            api_key,
            // The operator chose every provider's address.
            owner_chosen: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> LlmConfig {
        let mut config = crate::config::Config::default().llm;
        config.base_url = "http://127.0.0.1:9/v1".into();
        config.api_key = "sk-server".into();
        config.model = "server-model".into();
        config
    }

    #[test]
    fn openai_is_the_servers_own_endpoint() {
        let endpoint = server().provider_endpoint("OpenAI", None).unwrap();
        assert_eq!(endpoint.base_url, "http://127.0.0.1:9/v1");
        assert_eq!(endpoint.api_key, "sk-server");
        assert_eq!(endpoint.model, "server-model");
        let endpoint = server().provider_endpoint("openai", Some("gpt-4")).unwrap();
        assert_eq!(endpoint.model, "gpt-4");
    }

    #[test]
    fn the_server_key_never_goes_to_another_provider() {
        let endpoint = server().provider_endpoint("anthropic", None).unwrap();
        assert_eq!(endpoint.base_url, "https://api.anthropic.com/v1");
        assert_eq!(endpoint.api_key, "", "no key rather than the server's");
        let mut config = server();
        config.providers.insert(
            "anthropic".into(),
            NamedProvider {
                base_url: "https://api.anthropic.com/v1".into(),
                api_key: "sk-ant".into(),
                model: String::new(),
            },
        );
        assert_eq!(
            config.provider_endpoint("anthropic", None).unwrap().api_key,
            "sk-ant"
        );
        // An override of `openai` elsewhere does not take the server's key along.
        config.providers.insert(
            "openai".into(),
            NamedProvider {
                base_url: "https://proxy.example/v1".into(),
                api_key: String::new(),
                model: "m".into(),
            },
        );
        assert_eq!(
            config.provider_endpoint("openai", None).unwrap().api_key,
            ""
        );
    }

    #[test]
    fn unknown_providers_are_none() {
        assert!(server().named_provider("acme").is_none());
        assert!(server().provider_names().contains(&"groq".to_owned()));
    }
}
