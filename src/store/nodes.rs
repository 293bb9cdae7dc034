//! Server processes sharing the database (`nodes`), and which of them holds each live call
//! (`calls.node_id`). A node writes its heartbeat; a survivor takes the calls of a node whose
//! heartbeat stopped, one call per conditional update, so two survivors never both end (and
//! report) the same call, and a session that ends while being swept reports only once.

use sqlx::Row;

use super::{Store, StoreError, now_timestamp};

/// A call whose node stopped heartbeating while its session ran.
#[derive(Debug, Clone, PartialEq)]
pub struct OrphanedCall {
    pub call_id: String,
    pub node_id: String,
}

impl Store {
    /// Writes (or refreshes) this node's heartbeat.
    pub async fn node_heartbeat(&self, node: &str, address: &str) -> Result<(), StoreError> {
        let now = now_timestamp();
        sqlx::query(
            "INSERT INTO nodes (id, address, started_at, heartbeat_at) VALUES ($1, $2, $3, $3) \
             ON CONFLICT (id) DO UPDATE SET heartbeat_at = $3, address = $2",
        )
        .bind(node)
        .bind(address)
        .bind(&now)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Removes this node's row (a clean stop); calls it still held are then orphans.
    pub async fn remove_node(&self, node: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM nodes WHERE id = $1")
            .bind(node)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Nodes other than `node` whose last heartbeat is at or before `cutoff`.
    pub async fn stale_nodes(&self, node: &str, cutoff: &str) -> Result<Vec<String>, StoreError> {
        let rows = sqlx::query("SELECT id FROM nodes WHERE id <> $1 AND heartbeat_at <= $2")
            .bind(node)
            .bind(cutoff)
            .fetch_all(self.pool())
            .await?;
        rows.iter()
            .map(|r| r.try_get("id").map_err(StoreError::from))
            .collect()
    }

    /// Forgets a lost node, once its calls and claims were taken over.
    pub async fn forget_node(&self, node: &str, cutoff: &str) -> Result<(), StoreError> {
        sqlx::query("DELETE FROM nodes WHERE id = $1 AND heartbeat_at <= $2")
            .bind(node)
            .bind(cutoff)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Calls held by a node other than `node` that has no heartbeat after `cutoff` (stale, or
    /// gone from the table: stopped with calls it could not end).
    pub async fn orphaned_calls(
        &self,
        node: &str,
        cutoff: &str,
    ) -> Result<Vec<OrphanedCall>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, node_id FROM calls WHERE node_id IS NOT NULL AND node_id <> $1 \
             AND NOT EXISTS (SELECT 1 FROM nodes n WHERE n.id = calls.node_id \
                             AND n.heartbeat_at > $2) \
             LIMIT 500",
        )
        .bind(node)
        .bind(cutoff)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(OrphanedCall {
                    call_id: r.try_get("id")?,
                    node_id: r.try_get("node_id")?,
                })
            })
            .collect()
    }

    /// Marks the call as run by `node` (its session started there).
    pub async fn hold_call(&self, call_id: &str, node: &str) -> Result<(), StoreError> {
        sqlx::query("UPDATE calls SET node_id = $1, updated_at = $2 WHERE id = $3")
            .bind(node)
            .bind(now_timestamp())
            .bind(call_id)
            .execute(self.pool())
            .await?;
        Ok(())
    }

    /// Lets go of a call whose session ended on `node`. False when it was no longer held there
    /// (a survivor took it as lost and reported it).
    pub async fn release_call(&self, call_id: &str, node: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE calls SET node_id = NULL, updated_at = $1 WHERE id = $2 AND node_id = $3",
        )
        .bind(now_timestamp())
        .bind(call_id)
        .bind(node)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Ends a call its lost node still held: completed (unless a final status was already
    /// stored) with `reason` (unless one was already stored). False when another survivor, or
    /// the session itself, got there first.
    pub async fn end_orphaned_call(
        &self,
        orphan: &OrphanedCall,
        reason: &str,
    ) -> Result<bool, StoreError> {
        let now = now_timestamp();
        let done = sqlx::query(
            "UPDATE calls SET node_id = NULL, updated_at = $1, \
             status = CASE WHEN status_rank < 3 THEN 'completed' ELSE status END, \
             status_rank = 3, \
             ended_at = COALESCE(ended_at, $1), \
             end_reason = COALESCE(end_reason, $2) \
             WHERE id = $3 AND node_id = $4",
        )
        .bind(&now)
        .bind(reason)
        .bind(&orphan.call_id)
        .bind(&orphan.node_id)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }
}

impl Store {
    /// Sends a PostgreSQL notification (the nodes' relay; see `cluster/relay.rs`).
    pub async fn notify(&self, channel: &str, payload: &str) -> Result<(), StoreError> {
        sqlx::query("SELECT pg_notify($1, $2)")
            .bind(channel)
            .bind(payload)
            .execute(self.pool())
            .await?;
        Ok(())
    }
}
