//! The outbox of end-of-call webhooks. A delivery is written in the same breath as the call's end
//! and removed from the due set only when the receiver acknowledged it (or gave up for good), so
//! pending deliveries survive a restart and resume.
//!
//! Several server processes may share one database, so a worker claims the due deliveries it is
//! about to send (`claimed_by`, `lease_until`) in the statement that picks them; other workers
//! skip a claimed delivery until its lease expires, which is how a delivery left by a dead
//! process goes out from another one.

use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Backend, Store, StoreError, now_timestamp};

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
    /// yet and no worker holds it. Answers false when it already went out (its hold expired
    /// first) or is going out now.
    pub async fn release_held_webhook(&self, id: &str, payload: &str) -> Result<bool, StoreError> {
        let now = now_timestamp();
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET payload = $1, next_attempt_at = $2 \
             WHERE id = $3 AND status = 'pending' AND attempts = 0 \
             AND (lease_until IS NULL OR lease_until < $2)",
        )
        .bind(payload)
        .bind(&now)
        .bind(id)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Claims up to `limit` pending deliveries due at `now` that no live lease holds, oldest
    /// first, for `node` until `lease_until`; answers them.
    ///
    /// Picking and claiming are one statement, so two workers never get the same delivery: on
    /// PostgreSQL the rows are locked as they are picked and rows another worker is claiming are
    /// skipped (`FOR UPDATE SKIP LOCKED`); SQLite runs the statement under its one write lock.
    pub async fn claim_due_webhooks(
        &self,
        now: &str,
        lease_until: &str,
        node: &str,
        limit: i64,
    ) -> Result<Vec<PendingDelivery>, StoreError> {
        let lock = match self.backend() {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE webhook_deliveries SET lease_until = $1, claimed_by = $2 \
             WHERE id IN (SELECT id FROM webhook_deliveries \
                          WHERE status = 'pending' AND next_attempt_at <= $3 \
                          AND (lease_until IS NULL OR lease_until < $3) \
                          ORDER BY next_attempt_at LIMIT $4 {lock}) \
             RETURNING id, call_id, url, payload, attempts, next_attempt_at"
        );
        let rows = sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(lease_until)
            .bind(node)
            .bind(now)
            .bind(limit)
            .fetch_all(self.pool())
            .await?;
        // RETURNING keeps no order; the oldest go out first, as before claims.
        let mut claimed = rows
            .iter()
            .map(|r| {
                Ok((
                    r.try_get::<String, _>("next_attempt_at")?,
                    delivery_from_row(r)?,
                ))
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        claimed.sort_by(|a, b| a.0.cmp(&b.0));
        Ok(claimed.into_iter().map(|(_, d)| d).collect())
    }

    /// Gives back what `node` holds and has not finished (a worker stopping mid-attempt), so
    /// the next worker sends it at once instead of after the lease.
    pub async fn release_webhook_claims(&self, node: &str) -> Result<u64, StoreError> {
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET lease_until = NULL, claimed_by = NULL \
             WHERE claimed_by = $1 AND status = 'pending'",
        )
        .bind(node)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected())
    }

    /// The receiver acknowledged the delivery `node` claimed. Answers false when `node` no
    /// longer held it (its lease expired and another worker took it over).
    pub async fn webhook_delivered(&self, id: &str, node: &str) -> Result<bool, StoreError> {
        let now = now_timestamp();
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET status = 'delivered', attempts = attempts + 1, \
             delivered_at = $1, last_error = NULL, lease_until = NULL, claimed_by = NULL \
             WHERE id = $2 AND claimed_by = $3",
        )
        .bind(&now)
        .bind(id)
        .bind(node)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
    }

    /// An attempt by `node` failed: try again at `next_attempt_at`, or never (`None`: failed for
    /// good). Answers false when `node` no longer held the delivery; its outcome is then not
    /// written over the new holder's.
    pub async fn webhook_attempt_failed(
        &self,
        id: &str,
        node: &str,
        error: &str,
        next_attempt_at: Option<&str>,
    ) -> Result<bool, StoreError> {
        let done = sqlx::query(
            "UPDATE webhook_deliveries SET attempts = attempts + 1, last_error = $1, \
             status = CASE WHEN $2 IS NULL THEN 'failed' ELSE 'pending' END, \
             next_attempt_at = COALESCE($2, next_attempt_at), lease_until = NULL, \
             claimed_by = NULL WHERE id = $3 AND claimed_by = $4",
        )
        .bind(error)
        .bind(next_attempt_at)
        .bind(id)
        .bind(node)
        .execute(self.pool())
        .await?;
        Ok(done.rows_affected() == 1)
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

fn delivery_from_row(r: &AnyRow) -> Result<PendingDelivery, StoreError> {
    Ok(PendingDelivery {
        id: r.try_get("id")?,
        call_id: r.try_get("call_id")?,
        url: r.try_get("url")?,
        payload: r.try_get("payload")?,
        attempts: r.try_get("attempts")?,
    })
}
