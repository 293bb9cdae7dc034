//! The outbox of end-of-call webhooks. A delivery is written in the same breath as the call's end
//! and removed from the due set only when the receiver acknowledged it (or gave up for good), so
//! pending deliveries survive a restart and resume.

use sqlx::Row;

use super::{Store, StoreError, now_timestamp};

/// A delivery waiting for (another) attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct PendingDelivery {
    pub id: String,
    pub call_id: String,
    pub url: String,
    pub payload: String,
    pub attempts: i64,
}

/// A delivery's state, as call details show it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliveryState {
    pub id: String,
    pub url: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: i64,
    pub last_error: Option<String>,
    pub delivered_at: Option<String>,
}

impl Store {
    /// Queues a delivery, due now.
    pub async fn enqueue_webhook(
        &self,
        id: &str,
        call_id: &str,
        url: &str,
        payload: &str,
    ) -> Result<(), StoreError> {
        self.enqueue_webhook_at(id, call_id, url, payload, &now_timestamp())
            .await
    }

    /// Queues a delivery held until `due` (a stored timestamp): written now, so a crash before
    /// then loses nothing, and sent as it stands at `due` unless released earlier with a new
    /// payload ([`Store::release_held_webhook`]).
    pub async fn enqueue_webhook_at(
        &self,
        id: &str,
        call_id: &str,
        url: &str,
        payload: &str,
        due: &str,
    ) -> Result<(), StoreError> {
        let now = now_timestamp();
        sqlx::query(
            "INSERT INTO webhook_deliveries (id, call_id, url, payload, status, attempts, \
             next_attempt_at, created_at) VALUES ($1, $2, $3, $4, 'pending', 0, $5, $6)",
        )
        .bind(id)
        .bind(call_id)
        .bind(url)
        .bind(payload)
        .bind(due)
        .bind(&now)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Replaces a held delivery's payload and makes it due now, if it has not been attempted
    /// yet. Answers false when it already went out (its hold expired first).
    pub async fn release_held_webhook(&self, id: &str, payload: &str) -> Result<bool, StoreError> {
        let now = now_timestamp();
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET payload = $1, next_attempt_at = $2              WHERE id = $3 AND status = 'pending' AND attempts = 0",
        )
        .bind(payload)
        .bind(&now)
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Pending deliveries due at `now`, oldest first.
    pub async fn due_webhooks(
        &self,
        now: &str,
        limit: i64,
    ) -> Result<Vec<PendingDelivery>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, call_id, url, payload, attempts FROM webhook_deliveries \
             WHERE status = 'pending' AND next_attempt_at <= $1 ORDER BY next_attempt_at LIMIT $2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(PendingDelivery {
                    id: r.try_get("id")?,
                    call_id: r.try_get("call_id")?,
                    url: r.try_get("url")?,
                    payload: r.try_get("payload")?,
                    attempts: r.try_get("attempts")?,
                })
            })
            .collect()
    }

    /// The receiver acknowledged the delivery.
    pub async fn webhook_delivered(&self, id: &str) -> Result<(), StoreError> {
        let now = now_timestamp();
        sqlx::query(
            "UPDATE webhook_deliveries SET status = 'delivered', attempts = attempts + 1, \
             delivered_at = $1, last_error = NULL WHERE id = $2",
        )
        .bind(&now)
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// An attempt failed: try again at `next_attempt_at`, or never (`None`: failed for good).
    pub async fn webhook_attempt_failed(
        &self,
        id: &str,
        error: &str,
        next_attempt_at: Option<&str>,
    ) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, last_error = $1, \
             status = CASE WHEN $2 IS NULL THEN 'failed' ELSE 'pending' END, \
             next_attempt_at = COALESCE($2, next_attempt_at) WHERE id = $3",
        )
        .bind(error)
        .bind(next_attempt_at)
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(())
    }

    /// Every delivery of a call, oldest first.
    pub async fn call_webhooks(&self, call_id: &str) -> Result<Vec<DeliveryState>, StoreError> {
        let rows = sqlx::query(
            "SELECT id, url, status, attempts, last_error, delivered_at FROM webhook_deliveries \
             WHERE call_id = $1 ORDER BY created_at",
        )
        .bind(call_id)
        .fetch_all(self.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DeliveryState {
                    id: r.try_get("id")?,
                    url: r.try_get("url")?,
                    status: r.try_get("status")?,
                    attempts: r.try_get("attempts")?,
                    last_error: r.try_get("last_error")?,
                    delivered_at: r.try_get("delivered_at")?,
                })
            })
            .collect()
    }

    /// A value of the server's own settings table (e.g. the generated webhook secret).
    pub async fn server_setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        let row = sqlx::query("SELECT value FROM server_settings WHERE key = $1")
            .bind(key)
            .fetch_optional(self.pool())
            .await?;
        Ok(row.map(|r| r.try_get("value")).transpose()?)
    }

    /// Sets a server setting unless it is already set; answers the value that holds.
    pub async fn init_server_setting(&self, key: &str, value: &str) -> Result<String, StoreError> {
        sqlx::query(
            "INSERT INTO server_settings (key, value) VALUES ($1, $2) ON CONFLICT (key) DO NOTHING",
        )
        .bind(key)
        .bind(value)
        .execute(self.pool())
        .await?;
        Ok(self
            .server_setting(key)
            .await?
            .unwrap_or_else(|| value.to_owned()))
    }
}
