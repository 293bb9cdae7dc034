//! HTTP tools. Like assistants they are soft-deleted and always read through their owner; a
//! deleted tool disappears from every assistant it was attached to.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Store, StoreError};
use crate::assistant::{HttpTool, ToolMethod};

impl Store {
    /// Stores a new tool. A name already used by another active tool of the owner is a unique
    /// violation (see [`StoreError::is_unique_violation`]).
    pub async fn insert_tool(&self, t: &HttpTool) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO tools (id, owner_id, name, description, parameters, endpoint_url, \
             endpoint_method, endpoint_headers, timeout_ms, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
        )
        .bind(&t.id)
        .bind(&t.owner_id)
        .bind(&t.name)
        .bind(&t.description)
        .bind(t.parameters.to_string())
        .bind(&t.url)
        .bind(t.method.as_str())
        .bind(serde_json::to_string(&t.headers).expect("a string map serialises"))
        .bind(i64::from(t.timeout_ms))
        .bind(&t.created_at)
        .bind(&t.updated_at)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The owner's active tool with this id.
    pub async fn get_tool(&self, owner_id: &str, id: &str) -> Result<Option<HttpTool>, StoreError> {
        let row = sqlx::query(
            "SELECT id, owner_id, name, description, parameters, endpoint_url, endpoint_method, \
             endpoint_headers, timeout_ms, created_at, updated_at FROM tools \
             WHERE id = $1 AND owner_id = $2 AND deleted_at IS NULL",
        )
        .bind(id)
        .bind(owner_id)
        .fetch_optional(self.pool())
        .await?;
        row.as_ref().map(tool_from_row).transpose()
    }

    /// The owner's active tools, newest first.
    pub async fn list_tools(&self, owner_id: &str) -> Result<Vec<HttpTool>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, owner_id, name, description, parameters, endpoint_url, endpoint_method, \
             endpoint_headers, timeout_ms, created_at, updated_at FROM tools \
             WHERE owner_id = $1 AND deleted_at IS NULL ORDER BY created_at DESC, id DESC",
        )
        .bind(owner_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter().map(tool_from_row).collect()
    }

    /// Writes every field of `t` if the row is still active and still carries `read_updated_at`.
    pub async fn update_tool(
        &self,
        t: &HttpTool,
        read_updated_at: &str,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE tools SET name = $1, description = $2, parameters = $3, endpoint_url = $4, \
             endpoint_method = $5, endpoint_headers = $6, timeout_ms = $7, updated_at = $8 \
             WHERE id = $9 AND owner_id = $10 AND deleted_at IS NULL AND updated_at = $11",
        )
        .bind(&t.name)
        .bind(&t.description)
        .bind(t.parameters.to_string())
        .bind(&t.url)
        .bind(t.method.as_str())
        .bind(serde_json::to_string(&t.headers).expect("a string map serialises"))
        .bind(i64::from(t.timeout_ms))
        .bind(&t.updated_at)
        .bind(&t.id)
        .bind(&t.owner_id)
        .bind(read_updated_at)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// Marks the owner's active tool deleted and detaches it from every assistant.
    pub async fn delete_tool(
        &self,
        owner_id: &str,
        id: &str,
        at: &str,
    ) -> Result<bool, StoreError> {
        let mut tx = self.pool().begin().await?;
        let done = sqlx::query(
            "UPDATE tools SET deleted_at = $1, updated_at = $1 \
             WHERE id = $2 AND owner_id = $3 AND deleted_at IS NULL",
        )
        .bind(at)
        .bind(id)
        .bind(owner_id)
        .execute(&mut *tx)
        .await?;
        if done.rows_affected() == 0 {
            return Ok(false);
        }
        sqlx::query("DELETE FROM assistant_tools WHERE tool_id = $1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(true)
    }

    /// Which of `ids` are not the owner's active tools (empty when all are).
    pub async fn missing_tools(
        &self,
        owner_id: &str,
        ids: &[String],
    ) -> Result<Vec<String>, StoreError> {
        let mut missing = Vec::new();
        for id in ids {
            let found = sqlx::query(
                "SELECT 1 AS found FROM tools WHERE id = $1 AND owner_id = $2 AND deleted_at IS NULL",
            )
            .bind(id)
            .bind(owner_id)
            .fetch_optional(self.pool())
            .await?;
            if found.is_none() {
                missing.push(id.clone());
            }
        }
        Ok(missing)
    }
}

fn tool_from_row(row: &AnyRow) -> Result<HttpTool, StoreError> {
    let id: String = row.try_get("id")?;
    let corrupt = |what: String| StoreError::Corrupt(format!("tool {id}: {what}"));
    let parameters: String = row.try_get("parameters")?;
    let headers: String = row.try_get("endpoint_headers")?;
    let method: String = row.try_get("endpoint_method")?;
    let timeout_ms: i64 = row.try_get("timeout_ms")?;
    Ok(HttpTool {
        owner_id: row.try_get("owner_id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        parameters: serde_json::from_str(&parameters).map_err(|e| corrupt(e.to_string()))?,
        url: row.try_get("endpoint_url")?,
        method: ToolMethod::parse(&method).ok_or_else(|| corrupt(format!("method {method}")))?,
        headers: serde_json::from_str(&headers).map_err(|e| corrupt(e.to_string()))?,
        timeout_ms: u32::try_from(timeout_ms).map_err(|e| corrupt(e.to_string()))?,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
        id,
    })
}
