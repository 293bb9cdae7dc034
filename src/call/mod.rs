//! The per-call session: a few tasks joined by bounded channels (transport reader, transport
//! writer, the providers' own tasks) and one agent task that owns the call's state.

pub mod first_frames;
pub mod heard;
pub mod io;
pub mod latency;
pub mod providers;
pub mod reader;
pub mod recorder;
pub mod registry;
pub mod report;
pub mod runner;
pub mod session;
pub mod setup;
pub mod speech;
pub mod stt_chunks;
pub mod timing;
pub mod transcript;
pub mod turns;
pub mod voicemail;
pub mod writer;

use std::sync::Arc;

use crate::config::Config;
use crate::store::Store;
use crate::webhook::Webhooks;

pub use registry::LiveCalls;

/// What every call needs from the server: the store, the config, one shared HTTP client for the
/// configured providers (its connection pool keeps LLM requests warm) and one for owner-chosen
/// URLs, the webhook sender and the live-call registry. Nothing here names a telephony provider:
/// their REST clients belong to the API layer that places and controls calls.
#[derive(Clone)]
pub struct CallServices {
    pub store: Store,
    pub config: Arc<Config>,
    pub http: reqwest::Client,
    /// For owner-chosen URLs (tools, an assistant's own LLM endpoint): the egress policy.
    pub egress: crate::egress::EgressClient,
    pub webhooks: Webhooks,
    pub live: LiveCalls,
    /// Where calls are recorded.
    pub recordings: crate::recording::Recordings,
    /// Lists and calls the tools of assistants' MCP servers (their lists kept briefly).
    pub mcp: crate::mcp::McpConnector,
    /// This process among the server processes sharing the database.
    pub node: crate::cluster::Node,
}

impl CallServices {
    /// Sends `control` to the call's session wherever it runs: on this node, or through the
    /// relay to the node holding it (answering once that node has told it). Answers whether the
    /// call was live.
    pub async fn control(
        &self,
        call: &crate::store::CallRecord,
        control: io::Control,
    ) -> Result<bool, crate::cluster::RelayError> {
        if self.live.send(&call.id, control) {
            return Ok(true);
        }
        match (&call.node_id, &self.node.relay) {
            (Some(node), Some(relay)) if **node != *self.node.id => {
                relay.send(node, &call.id, &control).await
            }
            _ => Ok(false),
        }
    }

    /// The public URL of a call's recording, if this node has one.
    pub async fn recording_url(&self, call_id: &str) -> Option<String> {
        self.recordings
            .exists(call_id)
            .await
            .then(|| format!("{}/call/recording/{call_id}", self.config.public_base_url()))
    }
}
