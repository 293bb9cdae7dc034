//! Talking to MCP servers: their tool lists (kept briefly per server, so a burst of calls to one
//! assistant does not list a hundred times) and tool calls, one protocol session per server per
//! conversation, opened when first needed and closed with the conversation.

use std::collections::{BTreeMap, HashMap};
use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderName, HeaderValue};
use rmcp::ServiceExt;
use rmcp::model::{CallToolRequestParams, CallToolResult, ContentBlock};
use rmcp::service::{RoleClient, RunningService};
use rmcp::transport::StreamableHttpClientTransport;
use rmcp::transport::streamable_http_client::StreamableHttpClientTransportConfig;
use serde_json::{Value, json};
use tokio::sync::Mutex;

use super::{McpServer, McpTool, offered_name};
use crate::egress::EgressClient;

/// How long a server's tool list is reused.
const LIST_TTL: Duration = Duration::from_secs(60);
/// Longest wait for a server to connect and list its tools at the start of a conversation.
pub const LIST_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest wait for one tool call.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest tool result handed to the model.
const MAX_RESULT_BYTES: usize = 8 * 1024;

type Session = RunningService<RoleClient, ()>;
/// Tool lists by server id and version (`updated_at`), with when they were fetched.
type ToolLists = HashMap<(String, String), (Instant, Vec<McpTool>)>;

/// Connects to MCP servers through the egress client; shared by the whole server.
#[derive(Clone)]
pub struct McpConnector {
    egress: EgressClient,
    /// An edited server (a new `updated_at`) is listed anew.
    lists: Arc<Mutex<ToolLists>>,
}

impl std::fmt::Debug for McpConnector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpConnector").finish_non_exhaustive()
    }
}

impl McpConnector {
    pub fn new(egress: EgressClient) -> Self {
        Self {
            egress,
            lists: Arc::default(),
        }
    }

    /// The tools of `servers`, listed in parallel; a server that fails or takes longer than
    /// [`LIST_TIMEOUT`] is left out (logged), never an error of the conversation.
    pub async fn toolset(&self, servers: Vec<McpServer>) -> McpToolset {
        let listed = futures_util::future::join_all(servers.iter().map(|server| async move {
            match tokio::time::timeout(LIST_TIMEOUT, self.tools_of(server)).await {
                Ok(Ok(tools)) => tools,
                Ok(Err(why)) => {
                    tracing::warn!(server = server.name, why, "mcp server's tools not listed");
                    Vec::new()
                }
                Err(_) => {
                    tracing::warn!(
                        server = server.name,
                        "mcp server did not list its tools in time"
                    );
                    Vec::new()
                }
            }
        }))
        .await;
        McpToolset {
            connector: self.clone(),
            tools: listed.into_iter().flatten().collect(),
            servers: servers.into_iter().map(|s| (s.id.clone(), s)).collect(),
            sessions: Mutex::new(HashMap::new()),
        }
    }

    async fn tools_of(&self, server: &McpServer) -> Result<Vec<McpTool>, String> {
        let key = (server.id.clone(), server.updated_at.clone());
        if let Some((at, tools)) = self.lists.lock().await.get(&key)
            && at.elapsed() < LIST_TTL
        {
            return Ok(tools.clone());
        }
        let session = self.connect(server).await?;
        let listed = session
            .list_all_tools()
            .await
            .map_err(|e| format!("tools/list failed: {e}"));
        let _ = session.cancel().await;
        let tools: Vec<McpTool> = listed?
            .into_iter()
            .map(|tool| McpTool {
                server_id: server.id.clone(),
                offered_name: offered_name(&server.name, &tool.name),
                name: tool.name.to_string(),
                description: tool
                    .description
                    .as_deref()
                    .unwrap_or(tool.title.as_deref().unwrap_or_default())
                    .to_owned(),
                parameters: Value::Object((*tool.input_schema).clone()),
            })
            .collect();
        self.lists
            .lock()
            .await
            .insert(key, (Instant::now(), tools.clone()));
        Ok(tools)
    }

    /// Opens a protocol session (the initialize handshake) with `server`.
    async fn connect(&self, server: &McpServer) -> Result<Session, String> {
        let url = url::Url::parse(&server.url).map_err(|e| format!("invalid url: {e}"))?;
        let http = self
            .egress
            .client_for(&url)
            .map_err(|refusal| refusal.to_string())?
            .clone();
        let headers = headers(&server.headers)?;
        let config = StreamableHttpClientTransportConfig::with_uri(server.url.clone())
            .custom_headers(headers);
        let transport = StreamableHttpClientTransport::with_client(http, config);
        ().serve(transport)
            .await
            .map_err(|e| format!("initialize failed: {e}"))
    }
}

fn headers(given: &BTreeMap<String, String>) -> Result<HashMap<HeaderName, HeaderValue>, String> {
    given
        .iter()
        .map(|(name, value)| {
            let name = HeaderName::from_str(name).map_err(|_| format!("bad header name {name}"))?;
            let value =
                HeaderValue::from_str(value).map_err(|_| format!("bad value for {name}"))?;
            Ok((name, value))
        })
        .collect()
}

/// The MCP tools of one conversation, and its sessions with their servers.
pub struct McpToolset {
    connector: McpConnector,
    tools: Vec<McpTool>,
    servers: HashMap<String, McpServer>,
    sessions: Mutex<HashMap<String, Arc<Session>>>,
}

impl std::fmt::Debug for McpToolset {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("McpToolset")
            .field("tools", &self.tools)
            .finish_non_exhaustive()
    }
}

impl McpToolset {
    /// A toolset with no tools (no servers, or none answered).
    pub fn empty(connector: McpConnector) -> Self {
        Self {
            connector,
            tools: Vec::new(),
            servers: HashMap::new(),
            sessions: Mutex::new(HashMap::new()),
        }
    }

    pub fn tools(&self) -> &[McpTool] {
        &self.tools
    }

    pub fn find(&self, offered_name: &str) -> Option<&McpTool> {
        self.tools.iter().find(|t| t.offered_name == offered_name)
    }

    /// Calls `tool` with the model's arguments; answers what the model should read (the
    /// tool's text, or `{"error": ...}`), within [`CALL_TIMEOUT`].
    pub async fn call(&self, tool: &McpTool, arguments: Value) -> String {
        match tokio::time::timeout(CALL_TIMEOUT, self.call_inner(tool, arguments)).await {
            Ok(Ok(result)) => result_text(result),
            Ok(Err(why)) => json!({ "error": why }).to_string(),
            Err(_) => json!({
                "error": format!("the tool did not answer within {} ms", CALL_TIMEOUT.as_millis())
            })
            .to_string(),
        }
    }

    async fn call_inner(&self, tool: &McpTool, arguments: Value) -> Result<CallToolResult, String> {
        let session = self.session(&tool.server_id).await?;
        let mut params = CallToolRequestParams::new(tool.name.clone());
        if let Value::Object(arguments) = arguments {
            params = params.with_arguments(arguments);
        }
        match session.call_tool(params).await {
            Ok(result) => Ok(result),
            Err(e) => {
                // The session may be broken: the next call opens a new one.
                self.sessions.lock().await.remove(&tool.server_id);
                Err(format!("the tool call failed: {e}"))
            }
        }
    }

    async fn session(&self, server_id: &str) -> Result<Arc<Session>, String> {
        let mut sessions = self.sessions.lock().await;
        if let Some(session) = sessions.get(server_id) {
            return Ok(Arc::clone(session));
        }
        let server = self
            .servers
            .get(server_id)
            .ok_or_else(|| "the tool's server is gone".to_owned())?;
        let session = Arc::new(self.connector.connect(server).await?);
        sessions.insert(server_id.to_owned(), Arc::clone(&session));
        Ok(session)
    }
}

/// A tool result as the model reads it: its text (JSON for structured content), truncated.
fn result_text(result: CallToolResult) -> String {
    let mut text: Vec<String> = result
        .content
        .iter()
        .filter_map(|block| match block {
            ContentBlock::Text(t) => Some(t.text.clone()),
            _ => None,
        })
        .collect();
    if text.is_empty()
        && let Some(structured) = &result.structured_content
    {
        text.push(structured.to_string());
    }
    let mut joined = text.join("\n");
    if joined.len() > MAX_RESULT_BYTES {
        let mut end = MAX_RESULT_BYTES;
        while !joined.is_char_boundary(end) {
            end -= 1;
        }
        joined.truncate(end);
    }
    if result.is_error == Some(true) {
        json!({ "error": joined }).to_string()
    } else if joined.is_empty() {
        json!({ "ok": true }).to_string()
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::egress::AddressPolicy;
    use crate::sim::mcp::McpFake;

    async fn fake() -> (McpFake, String) {
        let fake = McpFake::new();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/mcp", listener.local_addr().unwrap());
        let router = fake.router();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        (fake, url)
    }

    fn connector() -> McpConnector {
        McpConnector::new(
            EgressClient::new(AddressPolicy {
                allow_loopback: true,
                allow_private: false,
            })
            .unwrap(),
        )
    }

    fn server(url: &str) -> McpServer {
        McpServer {
            id: "m1".into(),
            owner_id: "o".into(),
            name: "orders".into(),
            url: url.into(),
            headers: [("X-Api-Key".to_owned(), "secret-123".to_owned())].into(),
            created_at: String::new(),
            updated_at: "v1".into(),
        }
    }

    #[tokio::test]
    async fn tools_are_listed_offered_and_called_through_one_session() {
        let (fake, url) = fake().await;
        let toolset = connector().toolset(vec![server(&url)]).await;
        let names: Vec<&str> = toolset
            .tools()
            .iter()
            .map(|t| t.offered_name.as_str())
            .collect();
        assert_eq!(names, ["orders__get_order_status", "orders__add"]);
        let tool = toolset.find("orders__get_order_status").unwrap().clone();
        assert_eq!(tool.parameters["required"], json!(["order_number"]));
        let answer = toolset
            .call(&tool, json!({"order_number": "7474839"}))
            .await;
        assert_eq!(answer, "Order 7474839 has shipped and arrives tomorrow.");
        let failed = toolset.call(&tool, json!({})).await;
        assert!(failed.contains("\"error\""), "{failed}");
        let methods = fake.methods();
        assert_eq!(methods[0], "initialize");
        assert!(methods.contains(&"notifications/initialized".to_owned()));
        assert!(methods.contains(&"tools/list".to_owned()));
        assert_eq!(
            methods.iter().filter(|m| *m == "initialize").count(),
            2,
            "one session to list, one for the conversation's calls: {methods:?}"
        );
        assert!(
            fake.headers()
                .iter()
                .all(|h| h.get("x-api-key").is_some_and(|v| v == "secret-123")),
            "the server's headers go with every request"
        );
    }

    #[tokio::test]
    async fn a_dead_or_refused_server_costs_only_its_tools() {
        let (_fake, url) = fake().await;
        let dead = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = listener.local_addr().unwrap();
            drop(listener);
            format!("http://{addr}/mcp")
        };
        let mut gone = server(&dead);
        gone.id = "m2".into();
        gone.name = "gone".into();
        let toolset = connector().toolset(vec![gone, server(&url)]).await;
        assert_eq!(toolset.tools().len(), 2, "the live server's tools remain");
        let refused = McpConnector::new(EgressClient::new(AddressPolicy::default()).unwrap())
            .toolset(vec![server(&url)])
            .await;
        assert!(refused.tools().is_empty(), "loopback is refused by default");
    }

    #[tokio::test]
    async fn a_tool_list_is_reused_briefly() {
        let (fake, url) = fake().await;
        let connector = connector();
        connector.toolset(vec![server(&url)]).await;
        connector.toolset(vec![server(&url)]).await;
        let lists = fake.methods().iter().filter(|m| *m == "tools/list").count();
        assert_eq!(lists, 1);
        let mut edited = server(&url);
        edited.updated_at = "v2".into();
        connector.toolset(vec![edited]).await;
        let lists = fake.methods().iter().filter(|m| *m == "tools/list").count();
        assert_eq!(lists, 2, "an edited server is listed anew");
    }
}
