//! MCP servers: an owner registers a Model Context Protocol server (streamable HTTP), and an
//! assistant that names it offers the server's tools to its model in calls and chats. The
//! protocol is spoken by the official Rust SDK (`rmcp`) over the egress client, so a server's URL
//! passes the same outbound-address policy as webhooks and HTTP tools.
//!
//! At the start of a call or chat the servers' tool lists are fetched in parallel, each within a
//! bound, and kept briefly per server; a server that fails or is slow costs the conversation its
//! tools, never the conversation. Tools are offered as `{server}__{tool}` so two servers (and the
//! owner's HTTP tools) cannot clash.

mod client;

pub use client::{McpConnector, McpToolset};

use std::collections::BTreeMap;

use serde_json::Value;

use crate::assistant::{is_sensitive_header, mask_secret};

/// A registered MCP server.
#[derive(Debug, Clone, PartialEq)]
pub struct McpServer {
    pub id: String,
    pub owner_id: String,
    pub name: String,
    /// The streamable-HTTP endpoint, e.g. `https://mcp.example.com/mcp`.
    pub url: String,
    /// Sent with every request (credentials, usually).
    pub headers: BTreeMap<String, String>,
    pub created_at: String,
    pub updated_at: String,
}

impl McpServer {
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
}

/// One tool of an MCP server, as offered to the model.
#[derive(Debug, Clone, PartialEq)]
pub struct McpTool {
    pub server_id: String,
    /// The name the model calls (`{server}__{tool}`).
    pub offered_name: String,
    /// The tool's own name on its server.
    pub name: String,
    pub description: String,
    /// The tool's input JSON Schema.
    pub parameters: Value,
}

/// The name under which `tool` of `server` is offered: `[A-Za-z0-9_-]`, at most 64 characters
/// (what OpenAI-compatible APIs accept), server first so two servers never clash.
pub fn offered_name(server: &str, tool: &str) -> String {
    let clean = |s: &str, max: usize| -> String {
        s.chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                    c
                } else {
                    '_'
                }
            })
            .take(max)
            .collect()
    };
    format!("{}__{}", clean(server, 20), clean(tool, 42))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offered_names_are_function_names() {
        assert_eq!(
            offered_name("orders", "get_order_status"),
            "orders__get_order_status"
        );
        let odd = offered_name("Google Calendar (work)", "events.list/v2");
        assert_eq!(
            odd, "Google_Calendar__wor__events_list_v2",
            "server part cut at 20"
        );
        assert!(crate::assistant::is_function_name(&odd));
        let long = offered_name(&"s".repeat(80), &"t".repeat(80));
        assert!(long.len() <= 64 && crate::assistant::is_function_name(&long));
    }
}
