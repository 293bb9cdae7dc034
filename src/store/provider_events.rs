//! What a call's providers went through (`call_provider_events`): a retry, a fallback model, a
//! reply that failed for good, the apology said instead. One row per event, written off the
//! agent's loop by the call's recorder as it happens, served as `provider_events[]` of the
//! call's details. Times are milliseconds from the start of the call, on the transcript's clock.

use serde::{Deserialize, Serialize};
use sqlx::Row;
use utoipa::ToSchema;

use super::{Store, StoreError, now_timestamp};

/// One event of a provider's during a call.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProviderEvent {
    /// When it happened, in milliseconds from the call's start.
    pub at_ms: i64,
    /// `llm`.
    pub provider: String,
    /// `retry` (the model asked again after a failure), `fallback` (the assistant's fallback
    /// model asked), `failed` (the reply failed for good) or `apology` (the assistant's apology
    /// said instead of the reply).
    pub kind: String,
    /// The failure, and what was done about it.
    pub detail: Option<String>,
}

impl Store {
    /// Stores the call's event number `seq` (from 1, in the order they happened).
    pub async fn append_provider_event(
        &self,
        call_id: &str,
        seq: i64,
        event: &ProviderEvent,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO call_provider_events \
             (call_id, seq, at_ms, provider, kind, detail, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(call_id)
        .bind(seq)
        .bind(event.at_ms)
        .bind(&event.provider)
        .bind(&event.kind)
        .bind(event.detail.as_deref())
        .bind(now_timestamp())
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// A call's provider events, in order.
    pub async fn provider_events(&self, call_id: &str) -> Result<Vec<ProviderEvent>, StoreError> {
        let rows = sqlx::query(
            "SELECT at_ms, provider, kind, detail FROM call_provider_events \
             WHERE call_id = $1 ORDER BY seq",
        )
        .bind(call_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(ProviderEvent {
                    at_ms: r.try_get("at_ms")?,
                    provider: r.try_get("provider")?,
                    kind: r.try_get("kind")?,
                    detail: r.try_get("detail")?,
                })
            })
            .collect()
    }
}
