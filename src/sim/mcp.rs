//! A fake MCP server speaking the streamable-HTTP transport (MCP 2025-03-26 and later): one
//! JSON-RPC message per `POST /mcp`, answered as `application/json`. It checks what a real
//! server checks — the `Accept` header naming both JSON and SSE, a JSON body, `initialize` first,
//! the `Mcp-Session-Id` it issued on every later request (unknown: 404, missing: 400), the
//! negotiated `MCP-Protocol-Version` header, notifications answered 202 with no body — and
//! offers two tools: `get_order_status {order_number}` and `add {a, b}`. `GET /mcp` (a
//! server-to-client stream) is not offered (405), as the specification allows; `DELETE /mcp`
//! ends a session.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};

/// Protocol versions this fake speaks, newest first.
const VERSIONS: [&str; 3] = ["2025-06-18", "2025-03-26", "2024-11-05"];

/// What the fake saw, for tests.
#[derive(Debug, Default)]
struct Seen {
    sessions: HashSet<String>,
    /// Methods in the order they came (`initialize`, `tools/list`, `tools/call`, ...).
    methods: Vec<String>,
    /// Headers of each request named in `headers_of`, e.g. an API key.
    headers: Vec<HeaderMap>,
}

/// Steers and inspects a running fake.
#[derive(Debug, Clone, Default)]
pub struct McpFake {
    seen: Arc<Mutex<Seen>>,
}

impl McpFake {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn router(&self) -> Router {
        Router::new()
            .route(
                "/mcp",
                post(handle)
                    .get(|| async { StatusCode::METHOD_NOT_ALLOWED })
                    .delete(end_session),
            )
            .with_state(self.clone())
    }

    /// Every JSON-RPC method received, in order.
    pub fn methods(&self) -> Vec<String> {
        self.seen.lock().unwrap().methods.clone()
    }

    /// The headers of every request received.
    pub fn headers(&self) -> Vec<HeaderMap> {
        self.seen.lock().unwrap().headers.clone()
    }
}

fn rpc_error(id: &Value, code: i64, message: &str) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "error": {"code": code, "message": message}})
}

fn json_response(status: StatusCode, body: Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

async fn handle(State(fake): State<McpFake>, headers: HeaderMap, body: Bytes) -> Response {
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if !(accept.contains("application/json") && accept.contains("text/event-stream")) {
        return (
            StatusCode::NOT_ACCEPTABLE,
            "Not Acceptable: Client must accept both application/json and text/event-stream",
        )
            .into_response();
    }
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !is_json {
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "Content-Type must be application/json",
        )
            .into_response();
    }
    let Ok(message) = serde_json::from_slice::<Value>(&body) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            rpc_error(&Value::Null, -32700, "Parse error"),
        );
    };
    let method = message["method"].as_str().unwrap_or_default().to_owned();
    let id = message.get("id").cloned();
    {
        let mut seen = fake.seen.lock().unwrap();
        seen.methods.push(method.clone());
        seen.headers.push(headers.clone());
    }
    if method == "initialize" {
        let Some(id) = id else {
            return json_response(
                StatusCode::BAD_REQUEST,
                rpc_error(&Value::Null, -32600, "initialize must be a request"),
            );
        };
        let asked = message["params"]["protocolVersion"]
            .as_str()
            .unwrap_or_default();
        let version = VERSIONS
            .iter()
            .find(|v| **v == asked)
            .copied()
            .unwrap_or(VERSIONS[0]);
        let session = uuid::Uuid::new_v4().to_string();
        fake.seen.lock().unwrap().sessions.insert(session.clone());
        let result = json!({
            "jsonrpc": "2.0", "id": id,
            "result": {
                "protocolVersion": version,
                "capabilities": {"tools": {"listChanged": false}},
                "serverInfo": {"name": "voxbridge-sim-mcp", "version": "1.0.0"}
            }
        });
        return (
            [
                (header::CONTENT_TYPE, "application/json".to_owned()),
                (header::HeaderName::from_static("mcp-session-id"), session),
            ],
            result.to_string(),
        )
            .into_response();
    }
    // Everything after initialize belongs to a session.
    let Some(session) = headers.get("mcp-session-id").and_then(|v| v.to_str().ok()) else {
        return json_response(
            StatusCode::BAD_REQUEST,
            rpc_error(
                id.as_ref().unwrap_or(&Value::Null),
                -32000,
                "Bad Request: Mcp-Session-Id header is required",
            ),
        );
    };
    if !fake.seen.lock().unwrap().sessions.contains(session) {
        return json_response(
            StatusCode::NOT_FOUND,
            rpc_error(
                id.as_ref().unwrap_or(&Value::Null),
                -32001,
                "Session not found",
            ),
        );
    }
    if let Some(version) = headers
        .get("mcp-protocol-version")
        .and_then(|v| v.to_str().ok())
        && !VERSIONS.contains(&version)
    {
        return json_response(
            StatusCode::BAD_REQUEST,
            rpc_error(
                id.as_ref().unwrap_or(&Value::Null),
                -32000,
                &format!("Bad Request: Unsupported protocol version: {version}"),
            ),
        );
    }
    let Some(id) = id else {
        // A notification (`notifications/initialized`, cancellations): accepted, no body.
        return StatusCode::ACCEPTED.into_response();
    };
    let answer = match method.as_str() {
        "ping" => json!({"jsonrpc": "2.0", "id": id, "result": {}}),
        "tools/list" => json!({"jsonrpc": "2.0", "id": id, "result": {"tools": tools()}}),
        "tools/call" => call_tool(&id, &message["params"]),
        other => rpc_error(&id, -32601, &format!("Method not found: {other}")),
    };
    json_response(StatusCode::OK, answer)
}

async fn end_session(State(fake): State<McpFake>, headers: HeaderMap) -> StatusCode {
    let Some(session) = headers.get("mcp-session-id").and_then(|v| v.to_str().ok()) else {
        return StatusCode::BAD_REQUEST;
    };
    if fake.seen.lock().unwrap().sessions.remove(session) {
        StatusCode::OK
    } else {
        StatusCode::NOT_FOUND
    }
}

fn tools() -> Value {
    json!([
        {
            "name": "get_order_status",
            "description": "Where an order is: its status and expected delivery.",
            "inputSchema": {
                "type": "object",
                "properties": {"order_number": {"type": "string", "description": "The order number"}},
                "required": ["order_number"]
            }
        },
        {
            "name": "add",
            "description": "Adds two numbers.",
            "inputSchema": {
                "type": "object",
                "properties": {"a": {"type": "number"}, "b": {"type": "number"}},
                "required": ["a", "b"]
            }
        }
    ])
}

fn call_tool(id: &Value, params: &Value) -> Value {
    let arguments = &params["arguments"];
    let text = match params["name"].as_str() {
        Some("get_order_status") => match arguments["order_number"].as_str() {
            Some(order) if !order.trim().is_empty() => {
                format!("Order {order} has shipped and arrives tomorrow.")
            }
            _ => {
                return json!({"jsonrpc": "2.0", "id": id, "result": {
                    "content": [{"type": "text", "text": "order_number is required"}],
                    "isError": true
                }});
            }
        },
        Some("add") => match (arguments["a"].as_f64(), arguments["b"].as_f64()) {
            (Some(a), Some(b)) => format!("{}", a + b),
            _ => {
                return json!({"jsonrpc": "2.0", "id": id, "result": {
                    "content": [{"type": "text", "text": "a and b must be numbers"}],
                    "isError": true
                }});
            }
        },
        other => {
            return rpc_error(
                id,
                -32602,
                &format!("Unknown tool: {}", other.unwrap_or("")),
            );
        }
    };
    json!({"jsonrpc": "2.0", "id": id, "result": {
        "content": [{"type": "text", "text": text}],
        "isError": false
    }})
}
