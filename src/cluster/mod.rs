//! Several server processes on one PostgreSQL database behaving as one server. Each process is a
//! *node*: it heartbeats in the database and marks the calls whose sessions it runs
//! (`liveness.rs`), so when one dies the others end its calls as `server_lost` and send their
//! reports; and it listens for controls other nodes relay to the calls it holds (`relay.rs`), so a
//! REST action may land on any node. Limits and the webhook outbox are coordinated in the
//! database itself (`store/calls.rs`, `store/webhooks.rs`). On SQLite there is one node per
//! file; the heartbeat then only lets a restarted server end what a crashed one left running.

mod liveness;
mod relay;

pub use liveness::{SERVER_LOST, spawn_liveness};
pub use relay::{Relay, RelayError};

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// `[cluster]`: how nodes sharing a database watch each other.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClusterSettings {
    /// How often a node writes its heartbeat (and looks for lost nodes), in milliseconds.
    pub heartbeat_ms: u64,
    /// A node whose heartbeat is older than this is lost: its calls end as `server_lost`. Keep
    /// it several heartbeats long, and above the clock difference between nodes (heartbeats
    /// are stamped by each node's clock).
    pub node_timeout_ms: u64,
    /// How long a REST action on a call held by another node waits for that node to act on it
    /// before it answers 504.
    pub relay_timeout_ms: u64,
}

impl Default for ClusterSettings {
    fn default() -> Self {
        Self {
            heartbeat_ms: 2_000,
            node_timeout_ms: 10_000,
            relay_timeout_ms: 5_000,
        }
    }
}

impl ClusterSettings {
    pub fn heartbeat(&self) -> Duration {
        Duration::from_millis(self.heartbeat_ms.max(10))
    }

    pub fn node_timeout(&self) -> Duration {
        Duration::from_millis(
            self.node_timeout_ms
                .max(self.heartbeat_ms.saturating_mul(2)),
        )
    }

    pub fn relay_timeout(&self) -> Duration {
        Duration::from_millis(self.relay_timeout_ms)
    }
}

/// This process among the nodes sharing the database.
#[derive(Clone)]
pub struct Node {
    /// Fresh for every start, so a restarted process never mistakes its predecessor's calls or
    /// webhook claims for its own.
    pub id: Arc<str>,
    /// Reaches the other nodes (PostgreSQL only; on SQLite no other node can exist).
    pub relay: Option<Relay>,
}

impl Node {
    /// A node with a new id.
    pub fn new_id() -> Arc<str> {
        uuid::Uuid::now_v7().simple().to_string().into()
    }
}
