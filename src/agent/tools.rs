//! The tools an agent offers its LLM: the built-ins voxbridge answers itself (`end_call`,
//! `transfer_call`), a linked catalog's product tools (`catalog/tools.rs`), the assistant's
//! HTTP tools and its MCP servers' tools, called with the model's arguments. Every
//! failure (unknown tool, bad arguments, timeout, HTTP error) becomes a result the model reads, so
//! a broken tool never breaks the call.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::assistant::{HttpTool, ToolMethod};
use crate::catalog::Product;
use crate::catalog::tools::{CatalogCall, CatalogTools};
use crate::egress::EgressClient;
use crate::llm::{ToolCall, ToolSpec};
use crate::mcp::{McpTool, McpToolset};
use crate::validation::is_e164;

/// Longest tool result handed back to the model (a web page would blow the context).
const MAX_RESULT_BYTES: usize = 8 * 1024;

/// What a tool call asks voxbridge to do.
#[derive(Debug, Clone)]
pub enum ToolAction {
    /// Hang up once what has been said is heard.
    EndCall { reason: String },
    /// Hand the live call to another number.
    Transfer { to: String },
    /// Press keys on the far end's keypad (an IVR), once what has been said is heard.
    SendDtmf { digits: String },
    /// Call an HTTP tool with these JSON arguments.
    Http {
        tool: Box<HttpTool>,
        arguments: Value,
    },
    /// Call a tool of an MCP server with these JSON arguments.
    Mcp {
        toolset: Arc<McpToolset>,
        tool: Box<McpTool>,
        arguments: Value,
    },
    /// Search the linked catalog, or show products from it.
    Catalog {
        catalog: Arc<CatalogTools>,
        call: CatalogCall,
    },
}

/// What a tool run elsewhere answered.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ToolOutput {
    /// What the model reads.
    pub content: String,
    /// Products to show the other side (`recommend_products`).
    pub recommended: Vec<Product>,
}

impl ToolOutput {
    fn text(content: String) -> Self {
        Self {
            content,
            recommended: Vec::new(),
        }
    }
}

impl ToolAction {
    /// Runs a tool answered elsewhere (HTTP, MCP, the catalog) and answers what the model
    /// should read; `None` for the built-ins, which the caller acts on itself.
    pub async fn run(self, egress: &EgressClient) -> Option<ToolOutput> {
        match self {
            ToolAction::Http { tool, arguments } => Some(ToolOutput::text(
                call_http_tool(egress, &tool, &arguments).await,
            )),
            ToolAction::Mcp {
                toolset,
                tool,
                arguments,
            } => Some(ToolOutput::text(toolset.call(&tool, arguments).await)),
            ToolAction::Catalog { catalog, call } => {
                let (content, recommended) = catalog.run(call).await;
                Some(ToolOutput {
                    content,
                    recommended,
                })
            }
            ToolAction::EndCall { .. }
            | ToolAction::Transfer { .. }
            | ToolAction::SendDtmf { .. } => None,
        }
    }
}

/// The tools of one call.
#[derive(Debug, Clone)]
pub struct Toolbox {
    http_tools: Vec<HttpTool>,
    mcp: Option<Arc<McpToolset>>,
    catalog: Option<Arc<CatalogTools>>,
    can_transfer: bool,
    can_end: bool,
}

impl Toolbox {
    /// `can_transfer` is false where the transport cannot move a call (the browser).
    pub fn new(http_tools: Vec<HttpTool>, can_transfer: bool) -> Self {
        Self {
            http_tools,
            mcp: None,
            catalog: None,
            can_transfer,
            can_end: true,
        }
    }

    /// Also offers the tools of these MCP servers.
    #[must_use]
    pub fn with_mcp(mut self, toolset: Arc<McpToolset>) -> Self {
        self.mcp = Some(toolset);
        self
    }

    /// Also offers a catalog's product tools (when there is a catalog).
    #[must_use]
    pub fn with_catalog(mut self, catalog: Option<CatalogTools>) -> Self {
        self.catalog = catalog.map(Arc::new);
        self
    }

    /// Without `end_call`: a conversation the model has no way (or need) to end.
    #[must_use]
    pub fn without_end_call(mut self) -> Self {
        self.can_end = false;
        self
    }

    /// No tools at all: a conversation that only talks (and cannot be ended by the model).
    pub fn none() -> Self {
        Self {
            http_tools: Vec::new(),
            mcp: None,
            catalog: None,
            can_transfer: false,
            can_end: false,
        }
    }

    /// Whether the model is offered a catalog's tools.
    pub fn has_catalog(&self) -> bool {
        self.catalog.is_some()
    }

    /// The function specs sent with every chat request.
    pub fn specs(&self) -> Vec<ToolSpec> {
        let mut specs = Vec::new();
        if self.can_end {
            specs.push(ToolSpec {
                name: "end_call".into(),
                description:
                    "End the call. Say goodbye first; the call ends once the caller has heard it."
                        .into(),
                parameters: json!({
                    "type": "object",
                    "properties": {"reason": {"type": "string", "description": "Why the call ends"}}
                }),
            });
        }
        if self.can_transfer {
            specs.push(ToolSpec {
                name: "transfer_call".into(),
                description: "Transfer the caller to another phone number, e.g. a human agent. Tell the caller first.".into(),
                parameters: json!({
                    "type": "object",
                    "properties": {"phone_number": {"type": "string", "description": "E.164 number, e.g. +15551234567"}},
                    "required": ["phone_number"]
                }),
            });
        }
        if self.can_transfer {
            specs.push(ToolSpec {
                name: "send_dtmf".into(),
                description: "Press keys on the phone keypad, e.g. to choose an option of an automated phone menu. The keys are played after what you say; then listen for what the menu says next.".into(),
                parameters: json!({
                    "type": "object",
                    "properties": {"digits": {"type": "string", "description": "Keys to press in order: 0-9, * and #, at most 32"}},
                    "required": ["digits"]
                }),
            });
        }
        if let Some(catalog) = &self.catalog {
            specs.extend(catalog.specs());
        }
        specs.extend(self.http_tools.iter().map(|t| ToolSpec {
            name: t.name.clone(),
            description: t.description.clone(),
            parameters: t.parameters.clone(),
        }));
        let mcp_tools = self.mcp.iter().flat_map(|m| m.tools());
        specs.extend(mcp_tools.map(|t| ToolSpec {
            name: t.offered_name.clone(),
            description: t.description.clone(),
            parameters: t.parameters.clone(),
        }));
        specs
    }

    /// What `call` asks for, or the error text to hand back to the model.
    pub fn resolve(&self, call: &ToolCall) -> Result<ToolAction, String> {
        let arguments: Value = if call.function.arguments.trim().is_empty() {
            json!({})
        } else {
            serde_json::from_str(&call.function.arguments)
                .map_err(|e| format!("arguments are not valid JSON: {e}"))?
        };
        if !arguments.is_object() {
            return Err("arguments must be a JSON object".into());
        }
        match call.function.name.as_str() {
            "end_call" if self.can_end => Ok(ToolAction::EndCall {
                reason: arguments["reason"]
                    .as_str()
                    .unwrap_or("assistant ended the call")
                    .to_owned(),
            }),
            "transfer_call" if self.can_transfer => {
                let to = arguments["phone_number"].as_str().unwrap_or_default();
                if is_e164(to) {
                    Ok(ToolAction::Transfer { to: to.to_owned() })
                } else {
                    Err(format!(
                        "phone_number must be an E.164 number like +15551234567, got {to:?}"
                    ))
                }
            }
            "send_dtmf" if self.can_transfer => {
                let digits = arguments["digits"].as_str().unwrap_or_default();
                let valid = !digits.is_empty()
                    && digits.len() <= 32
                    && digits.chars().all(crate::agent::keypad::is_key);
                if valid {
                    Ok(ToolAction::SendDtmf {
                        digits: digits.to_owned(),
                    })
                } else {
                    Err(format!(
                        "digits must be 1 to 32 keypad keys (0-9, * and #), got {digits:?}"
                    ))
                }
            }
            name => {
                let catalog = self
                    .catalog
                    .as_ref()
                    .and_then(|c| Some((c, c.resolve(name, &arguments)?)));
                if let Some((catalog, call)) = catalog {
                    return call.map(|call| ToolAction::Catalog {
                        catalog: Arc::clone(catalog),
                        call,
                    });
                }
                if let Some(t) = self.http_tools.iter().find(|t| t.name == name) {
                    return Ok(ToolAction::Http {
                        tool: Box::new(t.clone()),
                        arguments,
                    });
                }
                let mcp = self.mcp.as_ref().and_then(|m| Some((m, m.find(name)?)));
                match mcp {
                    Some((toolset, tool)) => Ok(ToolAction::Mcp {
                        toolset: Arc::clone(toolset),
                        tool: Box::new(tool.clone()),
                        arguments,
                    }),
                    None => Err(format!("there is no tool named {name:?}")),
                }
            }
        }
    }
}

/// Calls an HTTP tool and answers what the model should read: the response body (JSON or text,
/// truncated), or `{"error": ...}`. The URL is the owner's, so the request goes through the
/// egress client: an address the policy refuses is an error result, never a request.
pub async fn call_http_tool(egress: &EgressClient, tool: &HttpTool, arguments: &Value) -> String {
    let Ok(mut url) = url::Url::parse(&tool.url) else {
        return error_result("the tool's URL is invalid");
    };
    let http = match egress.client_for(&url) {
        Ok(http) => http,
        Err(refusal) => return error_result(&format!("the tool may not be called: {refusal}")),
    };
    let mut request = match tool.method {
        ToolMethod::Get => {
            for (key, value) in arguments.as_object().into_iter().flatten() {
                let value = value
                    .as_str()
                    .map_or_else(|| value.to_string(), str::to_owned);
                url.query_pairs_mut().append_pair(key, &value);
            }
            http.get(url)
        }
        ToolMethod::Post => http.post(url).json(arguments),
        ToolMethod::Put => http.put(url).json(arguments),
        ToolMethod::Patch => http.patch(url).json(arguments),
        ToolMethod::Delete => http.delete(url).json(arguments),
    };
    for (name, value) in &tool.headers {
        request = request.header(name, value);
    }
    let timeout = Duration::from_millis(u64::from(tool.timeout_ms));
    let response = match tokio::time::timeout(timeout, request.timeout(timeout).send()).await {
        Err(_) => {
            return error_result(&format!(
                "the tool did not answer within {} ms",
                tool.timeout_ms
            ));
        }
        Ok(Err(e)) if e.is_timeout() => {
            return error_result(&format!(
                "the tool did not answer within {} ms",
                tool.timeout_ms
            ));
        }
        Ok(Err(e)) => {
            return match EgressClient::refusal_of(&e) {
                Some(refusal) => error_result(&format!("the tool may not be called: {refusal}")),
                None => error_result(&format!("the tool could not be reached: {e}")),
            };
        }
        Ok(Ok(response)) => response,
    };
    let status = response.status();
    let body = match tokio::time::timeout(timeout, response.bytes()).await {
        Ok(Ok(body)) => body,
        Ok(Err(e)) => return error_result(&format!("the tool's answer could not be read: {e}")),
        Err(_) => {
            return error_result(&format!(
                "the tool did not answer within {} ms",
                tool.timeout_ms
            ));
        }
    };
    let text = truncate(&String::from_utf8_lossy(&body));
    if status.is_success() {
        if text.is_empty() {
            json!({"ok": true}).to_string()
        } else {
            text
        }
    } else {
        json!({"error": format!("the tool answered HTTP {}", status.as_u16()), "body": text})
            .to_string()
    }
}

fn error_result(message: &str) -> String {
    json!({ "error": message }).to_string()
}

fn truncate(text: &str) -> String {
    if text.len() <= MAX_RESULT_BYTES {
        return text.to_owned();
    }
    let mut end = MAX_RESULT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::llm::FunctionCall;

    fn call(name: &str, arguments: &str) -> ToolCall {
        ToolCall {
            id: "call_1".into(),
            kind: "function".into(),
            function: FunctionCall {
                name: name.into(),
                arguments: arguments.into(),
            },
        }
    }

    fn weather() -> HttpTool {
        HttpTool {
            id: "t1".into(),
            owner_id: "o".into(),
            name: "get_weather".into(),
            description: "Weather".into(),
            parameters: json!({"type": "object"}),
            url: "http://127.0.0.1:9/weather".into(),
            method: ToolMethod::Post,
            headers: Default::default(),
            timeout_ms: 500,
            created_at: String::new(),
            updated_at: String::new(),
        }
    }

    #[test]
    fn specs_list_builtins_and_http_tools() {
        let names: Vec<String> = Toolbox::new(vec![weather()], true)
            .specs()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(
            names,
            ["end_call", "transfer_call", "send_dtmf", "get_weather"]
        );
        let names: Vec<String> = Toolbox::new(vec![], false)
            .specs()
            .into_iter()
            .map(|s| s.name)
            .collect();
        assert_eq!(names, ["end_call"]);
    }

    #[test]
    fn calls_resolve_or_explain_why_not() {
        let tools = Toolbox::new(vec![weather()], true);
        assert!(matches!(
            tools.resolve(&call("end_call", "")),
            Ok(ToolAction::EndCall { reason }) if reason == "assistant ended the call"
        ));
        assert!(matches!(
            tools.resolve(&call("transfer_call", r#"{"phone_number":"+15551234567"}"#)),
            Ok(ToolAction::Transfer { to }) if to == "+15551234567"
        ));
        assert!(
            tools
                .resolve(&call("transfer_call", r#"{"phone_number":"555"}"#))
                .is_err()
        );
        assert!(matches!(
            tools.resolve(&call("get_weather", r#"{"city":"Paris"}"#)),
            Ok(ToolAction::Http { .. })
        ));
        assert!(
            tools
                .resolve(&call("get_weather", "{oops"))
                .unwrap_err()
                .contains("not valid JSON")
        );
        assert!(tools.resolve(&call("get_weather", "[1]")).is_err());
        assert!(
            tools
                .resolve(&call("launch_rockets", "{}"))
                .unwrap_err()
                .contains("no tool named")
        );
        let no_transfer = Toolbox::new(vec![], false);
        assert!(
            no_transfer
                .resolve(&call("transfer_call", r#"{"phone_number":"+15551234567"}"#))
                .is_err()
        );
    }

    fn egress(allow_loopback: bool) -> EgressClient {
        EgressClient::new(crate::egress::AddressPolicy {
            allow_loopback,
            allow_private: false,
        })
        .unwrap()
    }

    #[tokio::test]
    async fn unreachable_tools_answer_an_error_result() {
        let result = call_http_tool(&egress(true), &weather(), &json!({"city": "Paris"})).await;
        let parsed: Value = serde_json::from_str(&result).unwrap();
        let error = parsed["error"].as_str().unwrap();
        assert!(error.contains("could not be reached"), "{result}");
    }

    #[tokio::test]
    async fn tools_on_refused_addresses_are_never_called() {
        for url in [
            "http://127.0.0.1:9/weather",
            "http://[::ffff:127.0.0.1]:9/x",
            "http://169.254.169.254/latest/meta-data",
            "http://localhost:9/weather",
        ] {
            let tool = HttpTool {
                url: url.into(),
                ..weather()
            };
            let result = call_http_tool(&egress(false), &tool, &json!({})).await;
            assert!(result.contains("may not be called"), "{url}: {result}");
        }
    }

    #[test]
    fn long_results_are_truncated_on_a_char_boundary() {
        let text = "é".repeat(MAX_RESULT_BYTES);
        let out = truncate(&text);
        assert!(out.len() <= MAX_RESULT_BYTES + 3);
    }
}
