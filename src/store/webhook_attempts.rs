//! The history of a webhook delivery: one row per attempt the outbox worker made (when, how
//! long, what the receiver answered), so a call's inspector can show whether and how its report
//! arrived. A delivery row itself keeps only the count and the last error.

use sqlx::Row;

use super::{Store, StoreError};

/// One attempt to deliver a webhook.
#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord {
    pub delivery_id: String,
    /// 1 for the first attempt.
    pub attempt: i64,
    pub started_at: String,
    pub duration_ms: i64,
    /// The receiver's HTTP status, when it answered.
    pub status_code: Option<i64>,
    /// `delivered`, `retry` (failed, another attempt is due) or `failed` (for good).
    pub outcome: String,
    pub error: Option<String>,
}

impl Store {
    /// Records an attempt. A number already recorded is kept: only an attempt that outlived its
    /// lease could repeat one, and the first record of it stands.
    pub async fn record_webhook_attempt(&self, a: &AttemptRecord) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO webhook_attempts (delivery_id, attempt, started_at, duration_ms, \
             status_code, outcome, error) VALUES ($1, $2, $3, $4, $5, $6, $7) \
             ON CONFLICT (delivery_id, attempt) DO NOTHING",
        )
        .bind(&a.delivery_id)
        .bind(a.attempt)
        .bind(&a.started_at)
        .bind(a.duration_ms)
        .bind(a.status_code)
        .bind(&a.outcome)
        .bind(&a.error)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Every attempt of every delivery of a call, oldest first.
    pub async fn call_webhook_attempts(
        &self,
        call_id: &str,
    ) -> Result<Vec<AttemptRecord>, StoreError> {
        let rows = sqlx::query(
            "SELECT a.delivery_id, a.attempt, a.started_at, a.duration_ms, a.status_code, \
             a.outcome, a.error FROM webhook_attempts a \
             JOIN webhook_deliveries d ON d.id = a.delivery_id \
             WHERE d.call_id = $1 ORDER BY a.started_at, a.attempt",
        )
        .bind(call_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AttemptRecord {
                    delivery_id: r.try_get("delivery_id")?,
                    attempt: r.try_get("attempt")?,
                    started_at: r.try_get("started_at")?,
                    duration_ms: r.try_get("duration_ms")?,
                    status_code: r.try_get("status_code")?,
                    outcome: r.try_get("outcome")?,
                    error: r.try_get("error")?,
                })
            })
            .collect()
    }
}
