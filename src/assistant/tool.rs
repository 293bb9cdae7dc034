//! An HTTP tool: a function the LLM may call during a call, answered by the owner's endpoint.
//! The name, description and parameter schema go to the model; the endpoint (url, method,
//! headers, timeout) is how voxbridge calls it with the model's arguments.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::mask_secret;

/// Names the LLM calls that voxbridge answers itself; a user tool may not shadow them.
pub const BUILT_IN_TOOL_NAMES: [&str; 3] = ["end_call", "transfer_call", "send_dtmf"];
/// Longest function name OpenAI-compatible APIs accept.
pub const TOOL_NAME_MAX_CHARS: usize = 64;
/// Bounds of `tool_timeout_ms`: `(min, max, default)`.
pub const TOOL_TIMEOUT_MS: (u32, u32, u32) = (100, 30_000, 5_000);

/// HTTP methods a tool endpoint may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum ToolMethod {
    Get,
    #[default]
    Post,
    Put,
    Patch,
    Delete,
}

impl ToolMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            ToolMethod::Get => "GET",
            ToolMethod::Post => "POST",
            ToolMethod::Put => "PUT",
            ToolMethod::Patch => "PATCH",
            ToolMethod::Delete => "DELETE",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "GET" => ToolMethod::Get,
            "POST" => ToolMethod::Post,
            "PUT" => ToolMethod::Put,
            "PATCH" => ToolMethod::Patch,
            "DELETE" => ToolMethod::Delete,
            _ => return None,
        })
    }
}

/// A stored tool.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpTool {
    pub id: String,
    pub owner_id: String,
    pub name: String,
    pub description: String,
    pub parameters: Value,
    pub url: String,
    pub method: ToolMethod,
    pub headers: BTreeMap<String, String>,
    pub timeout_ms: u32,
    pub created_at: String,
    pub updated_at: String,
}

/// The characters an LLM function name allows: `[A-Za-z0-9_-]`, 1 to 64 of them.
pub fn is_function_name(name: &str) -> bool {
    (1..=TOOL_NAME_MAX_CHARS).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

/// Header names whose values are credentials and so are masked in responses.
pub fn is_sensitive_header(name: &str) -> bool {
    let name = name.to_ascii_lowercase();
    [
        "authorization",
        "cookie",
        "key",
        "token",
        "secret",
        "password",
        "signature",
    ]
    .iter()
    .any(|word| name.contains(word))
}

impl HttpTool {
    /// Headers as responses show them: credential values masked.
    pub fn public_headers(&self) -> BTreeMap<String, String> {
        self.headers
            .iter()
            .map(|(name, value)| {
                let shown = if is_sensitive_header(name) {
                    mask_secret(value)
                } else {
                    value.clone()
                };
                (name.clone(), shown)
            })
            .collect()
    }

    /// A masked header value sent back unchanged keeps the stored value.
    pub fn keep_masked_headers_from(
        headers: &mut BTreeMap<String, String>,
        stored: &BTreeMap<String, String>,
    ) {
        for (name, value) in headers.iter_mut() {
            if let Some(kept) = stored.get(name)
                && is_sensitive_header(name)
                && *value == mask_secret(kept)
            {
                value.clone_from(kept);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn function_names_follow_the_llm_rule() {
        assert!(is_function_name("get_weather"));
        assert!(is_function_name("book-table2"));
        assert!(!is_function_name(""));
        assert!(!is_function_name("get weather"));
        assert!(!is_function_name("météo"));
        assert!(!is_function_name(&"a".repeat(65)));
    }

    #[test]
    fn credentials_in_headers_are_masked() {
        assert!(is_sensitive_header("Authorization"));
        assert!(is_sensitive_header("X-Api-Key"));
        assert!(!is_sensitive_header("Content-Type"));
    }
}
