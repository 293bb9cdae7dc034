//! MCP servers: owner-scoped, soft-deleted, their headers kept as JSON.

use std::collections::BTreeMap;

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError, now_timestamp};
use crate::mcp::McpServer;

const COLUMNS: &str = "id, owner_id, name, url, headers, created_at, updated_at";

impl Store {
    pub async fn insert_mcp_server(&self, m: &McpServer) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO mcp_servers (id, owner_id, name, url, headers, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&m.id)
        .bind(&m.owner_id)
        .bind(&m.name)
        .bind(&m.url)
        .bind(serde_json::to_string(&m.headers).expect("a string map serialises"))
        .bind(&m.created_at)
        .bind(&m.updated_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The owner's active MCP server with this id.
    pub async fn get_mcp_server(
        &self,
        owner_id: &str,
        id: &str,
    ) -> Result<Option<McpServer>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM mcp_servers WHERE id = $1 AND owner_id = $2 AND deleted_at IS NULL"
        );
        let row = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(id)
            .bind(owner_id)
            .fetch_optional(self.pool())
            .await?;
        row.as_ref().map(server_from_row).transpose()
    }

    /// The owner's active MCP servers, newest first.
    pub async fn list_mcp_servers(&self, owner_id: &str) -> Result<Vec<McpServer>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM mcp_servers WHERE owner_id = $1 AND deleted_at IS NULL \
             ORDER BY created_at DESC, id DESC"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(owner_id)
            .fetch_all(self.pool())
            .await?;
        rows.iter().map(server_from_row).collect()
    }

    /// Writes every field if the row is still active and still carries `read_updated_at`.
    pub async fn update_mcp_server(
        &self,
        m: &McpServer,
        read_updated_at: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE mcp_servers SET name = $1, url = $2, headers = $3, updated_at = $4 \
             WHERE id = $5 AND owner_id = $6 AND deleted_at IS NULL AND updated_at = $7",
        )
        .bind(&m.name)
        .bind(&m.url)
        .bind(serde_json::to_string(&m.headers).expect("a string map serialises"))
        .bind(&m.updated_at)
        .bind(&m.id)
        .bind(&m.owner_id)
        .bind(read_updated_at)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Marks the owner's active MCP server deleted. Answers false if there was none.
    pub async fn delete_mcp_server(&self, owner_id: &str, id: &str) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE mcp_servers SET deleted_at = $1 WHERE id = $2 AND owner_id = $3 \
             AND deleted_at IS NULL",
        )
        .bind(now_timestamp())
        .bind(id)
        .bind(owner_id)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Which of `ids` are not the owner's active MCP servers.
    pub async fn missing_mcp_servers(
        &self,
        owner_id: &str,
        ids: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let mut missing = Vec::new();
        for id in ids {
            if self.get_mcp_server(owner_id, id).await?.is_none() {
                missing.push(id.clone());
            }
        }
        Ok(missing)
    }

    /// The owner's active MCP servers among `ids`, in that order (deleted ones left out).
    pub async fn mcp_servers_by_ids(
        &self,
        owner_id: &str,
        ids: &[String],
    ) -> Result<Vec<McpServer>, StoreError> {
        let mut servers = Vec::with_capacity(ids.len());
        for id in ids {
            if let Some(server) = self.get_mcp_server(owner_id, id).await? {
                servers.push(server);
            }
        }
        Ok(servers)
    }
}

fn server_from_row(row: &AnyRow) -> Result<McpServer, StoreError> {
    let headers: String = row.try_get("headers")?;
    let headers: BTreeMap<String, String> = serde_json::from_str(&headers)
        .map_err(|e| StoreError::Corrupt(format!("mcp server headers: {e}")))?;
    Ok(McpServer {
        id: row.try_get("id")?,
        owner_id: row.try_get("owner_id")?,
        name: row.try_get("name")?,
        url: row.try_get("url")?,
        headers,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}
