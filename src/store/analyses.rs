//! Analyses of finished conversations: their status (`pending` while the model works, then
//! `completed`, `invalid`, `failed` or `skipped`) and the document found.

use sqlx::Row;

use super::{Store, StoreError, now_timestamp};

/// A stored analysis.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredAnalysis {
    pub status: String,
    pub result: Option<serde_json::Value>,
    pub updated_at: String,
}

impl Store {
    /// Writes (or overwrites) the analysis of `conversation_id`.
    pub async fn set_analysis(
        &self,
        conversation_id: &str,
        status: &str,
        result: Option<&serde_json::Value>,
    ) -> Result<(), StoreError> {
        let now = now_timestamp();
        sqlx::query(
            "INSERT INTO analyses (conversation_id, status, result, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $4) ON CONFLICT (conversation_id) DO UPDATE SET \
             status = excluded.status, result = excluded.result, updated_at = excluded.updated_at",
        )
        .bind(conversation_id)
        .bind(status)
        .bind(result.map(serde_json::Value::to_string))
        .bind(&now)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// The analysis of `conversation_id`, if one was started.
    pub async fn analysis(
        &self,
        conversation_id: &str,
    ) -> Result<Option<StoredAnalysis>, StoreError> {
        let row = sqlx::query(
            "SELECT status, result, updated_at FROM analyses WHERE conversation_id = $1",
        )
        .bind(conversation_id)
        .fetch_optional(self.pool())
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let result: Option<String> = row.try_get("result")?;
        Ok(Some(StoredAnalysis {
            status: row.try_get("status")?,
            result: result.and_then(|text| serde_json::from_str(&text).ok()),
            updated_at: row.try_get("updated_at")?,
        }))
    }
}
